//! `POST /sms/status/{gateway}`: a gateway's delivery receipt (Twilio's
//! form-encoded status callback: `MessageSid`, `MessageStatus`,
//! `ErrorCode`, …).
//!
//! - unknown gateway, or one that sends no receipts → 404;
//! - `X-Twilio-Signature` missing or wrong (checked by the gateway against
//!   the public URL and the form, in constant time) → 403, nothing recorded;
//! - no `MessageSid`/`MessageStatus`, or a status voxgate does not know → 400;
//! - a message no delivery row names → 404;
//! - recorded (with its time, on the blocking pool) → 204.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use tracing::{info, warn};

use super::WebState;
use crate::backends::sms::twilio::{form_params, StatusCallback};
use crate::events::Event;
use crate::store::deliveries::DeliveryStatus;

/// The signature header.
const SIGNATURE: &str = "x-twilio-signature";

/// The receipt routes.
pub(super) fn routes() -> Router<WebState> {
    Router::new().route("/sms/status/{gateway}", post(status_callback))
}

async fn status_callback(
    State(state): State<WebState>,
    Path(gateway): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(gw) = state.sms.gateway(&gateway) else {
        return (StatusCode::NOT_FOUND, "no such gateway\n");
    };
    let params = form_params(&body);
    let url = format!(
        "{}{}",
        state.public_url,
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    );
    let signature = headers
        .get(SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match gw.verify_receipt(&url, &params, signature) {
        None => return (StatusCode::NOT_FOUND, "this gateway sends no receipts\n"),
        Some(false) => {
            warn!(
                gateway = %gateway,
                signed = !signature.is_empty(),
                "delivery receipt refused: missing or wrong signature"
            );
            return (StatusCode::FORBIDDEN, "bad signature\n");
        }
        Some(true) => {}
    }
    let Some(cb) = StatusCallback::from_params(&params) else {
        return (
            StatusCode::BAD_REQUEST,
            "MessageSid and MessageStatus are required\n",
        );
    };
    let Some(status) = DeliveryStatus::parse(&cb.status) else {
        warn!(gateway = %gateway, status = %cb.status.chars().take(32).collect::<String>(), "delivery receipt with an unknown status");
        return (StatusCode::BAD_REQUEST, "unknown MessageStatus\n");
    };
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let store = state.store.clone();
    let (gw_name, sid, error) = (
        gateway.clone(),
        cb.message_sid.clone(),
        cb.error_code.clone(),
    );
    let recorded = tokio::task::spawn_blocking(move || {
        store.record_delivery_status(&gw_name, &sid, status, error.as_deref(), at_ms)
    })
    .await;
    match recorded {
        Ok(Ok(Some(rec))) => {
            info!(gateway = %gateway, message_id = %cb.message_sid, status = status.as_str(), error_code = ?cb.error_code, "delivery status recorded");
            state.metrics.delivery(&gateway, status.as_str());
            if let Some(events) = &state.events {
                events.emit(
                    rec.call_id.as_deref(),
                    &Event::CodeDelivery {
                        gateway: gateway.clone(),
                        message_id: cb.message_sid.clone(),
                        status: status.as_str(),
                        error: cb.error_code.clone(),
                    },
                );
            }
            (StatusCode::NO_CONTENT, "")
        }
        Ok(Ok(None)) => {
            warn!(gateway = %gateway, message_id = %cb.message_sid, "delivery receipt for an unknown message");
            (StatusCode::NOT_FOUND, "no such message\n")
        }
        Ok(Err(e)) => {
            warn!(gateway = %gateway, error = %e, "delivery receipt not recorded");
            (StatusCode::INTERNAL_SERVER_ERROR, "not recorded\n")
        }
        Err(e) => {
            warn!(gateway = %gateway, error = %e, "delivery receipt task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "not recorded\n")
        }
    }
}
