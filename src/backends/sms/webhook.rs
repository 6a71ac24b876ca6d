//! A generic JSON webhook gateway: `POST url` with configured headers
//! (values may take `${env.NAME}`, for API keys) and a JSON body template
//! whose `{to}` and `{body}` are filled in JSON-escaped. A 2xx answer is
//! accepted, its message id read at the configured JSON pointer (an answer
//! without one is still a send: logged, no id recorded); a 5xx, a
//! network error or a timed-out attempt is retried with backoff; a 4xx is an
//! error naming only the status.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use zeroize::Zeroizing;

use super::retry::{classify, exchange, with_retries, Attempt};
use super::{SmsAccepted, SmsBuildError, SmsGateway, SmsMessage};
use crate::backends::directory::http::resolve_env;
use crate::backends::webhook_http::http_client;
use crate::backends::{BoxFut, ServiceError};
use crate::config::sms::{render_body, RetryPolicy, WebhookSmsConfig};
use crate::store::deliveries::DeliveryStatus;

/// A webhook gateway, ready to send.
pub struct WebhookGateway {
    name: String,
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    body: String,
    message_id: Option<String>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for WebhookGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookGateway")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl WebhookGateway {
    /// The gateway `name` of `cfg`, header values' `${env.NAME}` read with
    /// `env` (the process environment in `serve`).
    pub fn new(
        name: &str,
        cfg: &WebhookSmsConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SmsBuildError> {
        let err = |reason: String| SmsBuildError::Gateway {
            gateway: name.to_string(),
            reason,
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &cfg.headers {
            let n = HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| err(format!("headers: `{k}` is not a valid HTTP header name")))?;
            let resolved =
                Zeroizing::new(resolve_env(v, env).map_err(|e| err(format!("headers.{k}: {e}")))?);
            // The value may be a credential: never echo it.
            let mut hv = HeaderValue::from_str(&resolved).map_err(|_| {
                err(format!(
                    "headers.{k}: the value is not a valid HTTP header value (control characters?)"
                ))
            })?;
            hv.set_sensitive(true);
            headers.insert(n, hv);
        }
        Ok(WebhookGateway {
            name: name.to_string(),
            client: http_client().map_err(err)?,
            url: cfg.url.clone(),
            headers,
            body: cfg.body.clone(),
            message_id: cfg.message_id.clone(),
            retry: cfg.retry,
        })
    }

    async fn attempt(&self, body: &str) -> Attempt<SmsAccepted> {
        let req = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body.to_string());
        let answer = exchange(req, &self.retry, &self.name).await;
        classify(answer, &self.name, |a| {
            if !(200..300).contains(&a.status) {
                return Err(ServiceError::Failed(format!(
                    "SMS gateway `{}`: HTTP {}",
                    self.name, a.status
                )));
            }
            let message_id = match &self.message_id {
                None => None,
                Some(ptr) => {
                    // Not JSON: `null`, so the pointer finds nothing (below).
                    let json: serde_json::Value =
                        serde_json::from_slice(&a.body).unwrap_or_default();
                    match json.pointer(ptr) {
                        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                        _ => {
                            // Accepted all the same: the message is on its way.
                            tracing::warn!(gateway = %self.name, pointer = %ptr, "SMS accepted, but the answer has no message id there");
                            None
                        }
                    }
                }
            };
            Ok(SmsAccepted {
                message_id,
                status: DeliveryStatus::Queued,
            })
        })
    }
}

impl SmsGateway for WebhookGateway {
    fn send<'a>(&'a self, msg: &'a SmsMessage) -> BoxFut<'a, Result<SmsAccepted, ServiceError>> {
        Box::pin(async move {
            let body = Zeroizing::new(render_body(&self.body, msg.to.as_str(), &msg.body));
            let r = with_retries(&self.retry, &self.name, || self.attempt(&body)).await;
            match &r {
                Ok(a) => {
                    tracing::debug!(gateway = %self.name, message_id = ?a.message_id, "SMS accepted")
                }
                Err(e) => tracing::debug!(gateway = %self.name, error = %e, "SMS not accepted"),
            }
            r
        })
    }
}
