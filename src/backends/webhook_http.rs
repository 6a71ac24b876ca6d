//! The real [`WebhookClient`] `voxgate serve` uses: HTTP/1.1 over one shared,
//! pooled `reqwest` client (rustls for `https://`).
//!
//! What the step sees (see docs/flows.md, "webhook"):
//! - any HTTP status comes back as `Ok(WebhookResponse)`; the step maps 2xx to
//!   `success` and the rest to `failure`. A non-2xx answer's body is not read
//!   (`body` is `null`). Redirects are not followed: a 3xx is a `failure`.
//! - a 2xx answer must be a JSON object of at most [`MAX_ANSWER_BYTES`] bytes
//!   that yields at most [`MAX_VARIABLES`] variables once flattened (nested
//!   objects flatten, everything else — strings, numbers, booleans, arrays,
//!   nulls — is one variable); anything else is `Err(Failed)` → `error`.
//! - no complete answer within the step's `timeout` (connecting, sending and
//!   reading the body included) is `Err(Timeout)`.
//! - connection refused, DNS, TLS and protocol errors are `Err(Failed)` with
//!   the cause.
//!
//! Requests, headers and answers are never logged above `debug`, and even
//! then only sizes and statuses: header values may carry API keys.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};

use crate::backends::{BoxFut, ServiceError, WebhookClient, WebhookRequest, WebhookResponse};

/// Largest 2xx answer body accepted.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most variables one answer may set.
pub const MAX_VARIABLES: usize = 100;

/// `User-Agent` of every webhook request.
pub const USER_AGENT: &str = concat!("voxgate/", env!("CARGO_PKG_VERSION"));

/// Webhook client over HTTP(S). Cheap to share: one connection pool for all calls.
#[derive(Clone, Debug)]
pub struct HttpWebhook {
    client: reqwest::Client,
}

/// The HTTP client voxgate's outbound requests share the settings of: no
/// proxy (environment variables are ignored), no redirects (a redirect could
/// carry an API key to another host), `User-Agent: voxgate/<version>`,
/// pooled connections.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
}

impl HttpWebhook {
    /// A client with no proxy (environment variables are ignored), no
    /// redirects, `User-Agent: voxgate/<version>`, and pooled connections.
    pub fn new() -> Result<Self, ServiceError> {
        let client = http_client().map_err(ServiceError::Failed)?;
        Ok(HttpWebhook { client })
    }

    async fn call_inner(&self, req: &WebhookRequest) -> Result<WebhookResponse, ServiceError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &req.headers {
            let n = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                ServiceError::Failed(format!("header `{name}` is not a valid HTTP header name"))
            })?;
            // The value may be a credential: never echo it.
            let v = HeaderValue::from_str(value).map_err(|_| {
                ServiceError::Failed(format!(
                    "the value of header `{name}` is not a valid HTTP header value (control characters?)"
                ))
            })?;
            headers.insert(n, v);
        }
        let builder = if req.post {
            self.client.post(&req.url).json(&req.body)
        } else {
            self.client.get(&req.url)
        };
        let started = std::time::Instant::now();
        let mut resp = builder
            .headers(headers)
            .timeout(req.timeout)
            .send()
            .await
            .map_err(|e| map_err(&e, req.timeout))?;
        let status = resp.status().as_u16();
        tracing::debug!(
            status,
            ms = started.elapsed().as_millis() as u64,
            "webhook answered"
        );
        if !resp.status().is_success() {
            return Ok(WebhookResponse {
                status,
                body: serde_json::Value::Null,
            });
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_big(status));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| map_err(&e, req.timeout))? {
            if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_big(status));
            }
            buf.extend_from_slice(&chunk);
        }
        let body: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| {
            ServiceError::Failed(format!(
                "HTTP {status} answer is not JSON ({e}); a JSON object is expected"
            ))
        })?;
        if !body.is_object() {
            return Err(ServiceError::Failed(format!(
                "HTTP {status} answer is JSON {} but a JSON object is expected",
                kind(&body)
            )));
        }
        let n = count_variables(&body);
        if n > MAX_VARIABLES {
            return Err(ServiceError::Failed(format!(
                "HTTP {status} answer would set {n} variables; at most {MAX_VARIABLES} are allowed"
            )));
        }
        tracing::debug!(
            status,
            bytes = buf.len(),
            variables = n,
            "webhook answer accepted"
        );
        Ok(WebhookResponse { status, body })
    }
}

impl WebhookClient for HttpWebhook {
    fn call<'a>(
        &'a self,
        req: &'a WebhookRequest,
    ) -> BoxFut<'a, Result<WebhookResponse, ServiceError>> {
        Box::pin(async move {
            // reqwest's per-request timeout covers the body too; this outer one
            // is a backstop so the step never waits longer than it asked.
            match tokio::time::timeout(req.timeout, self.call_inner(req)).await {
                Ok(r) => r,
                Err(_) => Err(timed_out(req.timeout)),
            }
        })
    }
}

fn timed_out(t: Duration) -> ServiceError {
    ServiceError::Timeout(format!("no complete answer within {}ms", t.as_millis()))
}

fn too_big(status: u16) -> ServiceError {
    ServiceError::Failed(format!(
        "HTTP {status} answer is larger than {} KiB",
        MAX_ANSWER_BYTES / 1024
    ))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Variables the step's flattening makes from `v`: one per non-object leaf.
pub fn count_variables(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => m.values().map(count_variables).sum(),
        _ => 1,
    }
}

fn map_err(e: &reqwest::Error, timeout: Duration) -> ServiceError {
    if e.is_timeout() {
        return timed_out(timeout);
    }
    let what = if e.is_builder() {
        "invalid request"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    ServiceError::Failed(format!("{what}: {}", chain(e)))
}

/// The error and its causes, without the URL (which may carry caller data) and
/// without repeating a cause that is already part of the previous message.
pub(crate) fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let mut s = err.to_string();
        if let Some(i) = s.find(" for url (") {
            s.truncate(i);
        }
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}
