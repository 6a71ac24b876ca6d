//! What the HTTP gateways share: one exchange with a time limit, and the
//! retry loop (exponential backoff after 5xx answers, network errors and
//! timed-out attempts; never after a 4xx).

use std::future::Future;
use std::time::Instant;

use tracing::debug;

use crate::backends::ServiceError;
use crate::config::sms::RetryPolicy;

/// Largest answer body read from a gateway.
pub(super) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What one attempt came to.
pub(super) enum Attempt<T> {
    /// A result, good or bad, not worth another attempt.
    Done(Result<T, ServiceError>),
    /// Worth another attempt (5xx, network error, timeout).
    Retry(ServiceError),
}

/// An HTTP answer: status and (bounded) body.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

/// Send `req` and read the answer within `policy.timeout` (a body over
/// [`MAX_ANSWER_BYTES`] is dropped, not read). `Err` is a network error or
/// timeout (retryable); its text names `gateway`, never the request.
pub(super) async fn exchange(
    req: reqwest::RequestBuilder,
    policy: &RetryPolicy,
    gateway: &str,
) -> Result<Answer, ServiceError> {
    let limit = policy.timeout;
    let work = async {
        let mut resp = req
            .timeout(limit)
            .send()
            .await
            .map_err(|e| net(&e, gateway))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| net(&e, gateway))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                // Not a network error: the request arrived (a retry could
                // send the message twice). The judge sees no body.
                debug!(gateway, status, "SMS gateway answer too large; not read");
                return Ok(Answer {
                    status,
                    body: Vec::new(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(timeout(gateway, limit)),
    }
}

fn timeout(gateway: &str, limit: std::time::Duration) -> ServiceError {
    ServiceError::Timeout(format!(
        "SMS gateway `{gateway}` did not answer within {} ms",
        limit.as_millis()
    ))
}

/// A reqwest error as a [`ServiceError`]: the cause, without the URL (it
/// may carry credentials in a webhook's query).
fn net(e: &reqwest::Error, gateway: &str) -> ServiceError {
    if e.is_timeout() {
        return ServiceError::Timeout(format!("SMS gateway `{gateway}` did not answer in time"));
    }
    let mut cause = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    let kind = if e.is_connect() {
        "cannot connect"
    } else {
        "network error"
    };
    if cause.is_empty() {
        ServiceError::Failed(format!("SMS gateway `{gateway}`: {kind}"))
    } else {
        ServiceError::Failed(format!("SMS gateway `{gateway}`: {kind}: {cause}"))
    }
}

/// Run `attempt` until it is done or `policy.retries` retries are spent,
/// waiting `policy.backoff` (doubled each time) between attempts. An
/// attempt whose `exchange` failed (network, timeout) is retried.
pub(super) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    gateway: &str,
    mut attempt: F,
) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut backoff = policy.backoff;
    let mut n: u32 = 0;
    loop {
        let started = Instant::now();
        match attempt().await {
            Attempt::Done(r) => return r,
            Attempt::Retry(e) => {
                if n >= policy.retries {
                    return Err(e);
                }
                n += 1;
                debug!(
                    gateway,
                    attempt = n,
                    ms = started.elapsed().as_millis() as u64,
                    error = %e,
                    "SMS send failed; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
    }
}

/// Classify an exchange: network errors retry; 5xx retry; everything
/// else goes to `judge`.
pub(super) fn classify<T>(
    r: Result<Answer, ServiceError>,
    gateway: &str,
    judge: impl FnOnce(Answer) -> Result<T, ServiceError>,
) -> Attempt<T> {
    match r {
        Err(e) => Attempt::Retry(e),
        Ok(a) if a.status >= 500 => Attempt::Retry(ServiceError::Failed(format!(
            "SMS gateway `{gateway}`: HTTP {}",
            a.status
        ))),
        Ok(a) => Attempt::Done(judge(a)),
    }
}

/// `text` from a gateway with every run of 4 or more digits replaced by
/// `…`, and cut to 200 characters: an error message must not carry a code
/// (or a full number) into logs and events.
pub(super) fn scrub(text: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 4 {
            out.push('…');
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars().take(200) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_codes_and_numbers() {
        assert_eq!(
            scrub("The 'To' number +15005550001 is not valid; code 123456\n"),
            "The 'To' number +… is not valid; code … "
        );
        assert_eq!(scrub("error 21 at 3"), "error 21 at 3");
    }
}
