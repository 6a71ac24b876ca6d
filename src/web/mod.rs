//! voxgate's HTTP endpoint (`http:` in the config): SMS delivery receipts
//! and Prometheus `/metrics`; the operator console joins the same router
//! later.
//!
//! An app-level layer: it may use the store and the backends. Each group of
//! routes lives in its own module with a `routes()` that [`router`] merges;
//! all share [`WebState`]. Request bodies are capped at [`MAX_BODY_BYTES`]
//! (413 above). Nothing here logs a token, a signature or a message text.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;

use crate::backends::sms::Sms;
use crate::store::Store;
use crate::telemetry::Metrics;

pub mod console;
mod metrics;
mod receipts;

/// Largest request body accepted (a status callback is well under 2 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the handlers share; cheap to clone.
#[derive(Clone, Debug)]
pub struct WebState {
    /// The store receipts are recorded in.
    pub store: Arc<Store>,
    /// The SMS gateways (they check their receipts' signatures).
    pub sms: Arc<Sms>,
    /// `http.public_url`, without a trailing `/`: the URL a request was
    /// sent to is this followed by its path and query.
    pub public_url: String,
    /// Where events about codes (delivery receipts) go; `None`: nowhere.
    pub events: Option<Arc<dyn EventLines>>,
    /// The process's metrics (`GET /metrics`; receipts count into them).
    pub metrics: Arc<Metrics>,
}

/// The `--events` stream as the web layer writes to it: one JSON line per
/// event, with the call it belongs to when known.
pub trait EventLines: Send + Sync + std::fmt::Debug {
    /// Write `ev` for `call_id`.
    fn emit(&self, call_id: Option<&str>, ev: &crate::events::Event);
}

/// Every route, with the body limit.
pub fn router(state: WebState) -> Router {
    Router::new()
        .merge(receipts::routes())
        .merge(metrics::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serve [`router`] on `listener` until the runtime stops (or accepting
/// fails for good).
pub async fn serve(listener: TcpListener, state: WebState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}
