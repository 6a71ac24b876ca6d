//! Twilio's (or a compatible provider's) Messages API, and the signature
//! on its status callbacks.
//!
//! A send is `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//! with the form fields `To`, `From` (or `MessagingServiceSid`), `Body` and,
//! when voxgate's HTTP endpoint is configured, `StatusCallback`
//! (`{public_url}/sms/status/{gateway}`), authenticated with HTTP basic auth
//! `AccountSid:AuthToken`. A 2xx answer's JSON `sid` and `status` become the
//! [`SmsAccepted`]; a 5xx, a network error or a timed-out attempt is retried
//! with backoff; a 4xx is an error carrying Twilio's `code` and `message`
//! (digit runs scrubbed), never the body.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use sha1::Sha1;
use zeroize::Zeroizing;

use super::retry::{classify, exchange, scrub, with_retries, Attempt};
use super::{SmsAccepted, SmsBuildError, SmsGateway, SmsMessage};
use crate::backends::webhook_http::http_client;
use crate::backends::{BoxFut, ServiceError};
use crate::config::sms::{RetryPolicy, TwilioConfig, TwilioSender};
use crate::store::deliveries::DeliveryStatus;

/// The Messages API path under `base_url`.
pub fn messages_path(account_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Messages.json")
}

/// The path status callbacks of gateway `name` are asked to.
pub fn status_path(name: &str) -> String {
    format!("/sms/status/{name}")
}

/// A Twilio gateway, ready to send.
pub struct TwilioGateway {
    name: String,
    client: reqwest::Client,
    url: String,
    account_sid: String,
    token: Zeroizing<String>,
    sender: TwilioSender,
    status_callback: Option<String>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for TwilioGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioGateway")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("status_callback", &self.status_callback)
            .finish_non_exhaustive()
    }
}

impl TwilioGateway {
    /// The gateway `name` of `cfg`, its token read with `env` (the process
    /// environment in `serve`). `public_url`: voxgate's HTTP endpoint, for
    /// `StatusCallback`.
    pub fn new(
        name: &str,
        cfg: &TwilioConfig,
        public_url: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SmsBuildError> {
        let err = |reason: String| SmsBuildError::Gateway {
            gateway: name.to_string(),
            reason,
        };
        let token = env(&cfg.auth_token_env)
            .filter(|t| !t.is_empty())
            .map(Zeroizing::new)
            .ok_or_else(|| {
                err(format!(
                    "environment variable `{}` (auth_token_env) is not set",
                    cfg.auth_token_env
                ))
            })?;
        let client = http_client().map_err(err)?;
        Ok(TwilioGateway {
            name: name.to_string(),
            client,
            url: format!("{}{}", cfg.base_url, messages_path(&cfg.account_sid)),
            account_sid: cfg.account_sid.clone(),
            token,
            sender: cfg.sender.clone(),
            status_callback: public_url.map(|u| format!("{u}{}", status_path(name))),
            retry: cfg.retry,
        })
    }

    /// The request form (it holds the code: zeroized when dropped).
    fn form(&self, msg: &SmsMessage) -> Zeroizing<String> {
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("To", msg.to.as_str());
        match &self.sender {
            TwilioSender::From(from) => f.append_pair("From", from),
            TwilioSender::MessagingService(sid) => f.append_pair("MessagingServiceSid", sid),
        };
        f.append_pair("Body", &msg.body);
        if let Some(cb) = &self.status_callback {
            f.append_pair("StatusCallback", cb);
        }
        Zeroizing::new(f.finish())
    }

    async fn attempt(&self, form: &str) -> Attempt<SmsAccepted> {
        let req = self
            .client
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(self.token.as_str()))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(form.to_string());
        let answer = exchange(req, &self.retry, &self.name).await;
        classify(answer, &self.name, |a| {
            let json: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
            if (200..300).contains(&a.status) {
                let sid = json.get("sid").and_then(|s| s.as_str()).map(str::to_string);
                if sid.is_none() {
                    return Err(ServiceError::Failed(format!(
                        "SMS gateway `{}`: HTTP {} answer without a `sid`",
                        self.name, a.status
                    )));
                }
                let status = json
                    .get("status")
                    .and_then(|s| s.as_str())
                    .and_then(DeliveryStatus::parse)
                    .unwrap_or(DeliveryStatus::Queued);
                return Ok(SmsAccepted {
                    message_id: sid,
                    status,
                });
            }
            let code = json.get("code").and_then(|c| c.as_i64());
            let message = json.get("message").and_then(|m| m.as_str()).map(scrub);
            let detail = match (code, message) {
                (Some(c), Some(m)) => format!(": Twilio error {c}: {m}"),
                (Some(c), None) => format!(": Twilio error {c}"),
                (None, Some(m)) => format!(": {m}"),
                (None, None) => String::new(),
            };
            Err(ServiceError::Failed(format!(
                "SMS gateway `{}`: HTTP {}{detail}",
                self.name, a.status
            )))
        })
    }
}

impl SmsGateway for TwilioGateway {
    fn send<'a>(&'a self, msg: &'a SmsMessage) -> BoxFut<'a, Result<SmsAccepted, ServiceError>> {
        Box::pin(async move {
            let form = self.form(msg);
            let r = with_retries(&self.retry, &self.name, || self.attempt(&form)).await;
            match &r {
                Ok(a) => {
                    tracing::debug!(gateway = %self.name, message_id = ?a.message_id, "SMS accepted")
                }
                Err(e) => tracing::debug!(gateway = %self.name, error = %e, "SMS not accepted"),
            }
            r
        })
    }

    fn verify_receipt(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> Option<bool> {
        Some(verify_signature(
            self.token.as_bytes(),
            url,
            params,
            signature,
        ))
    }
}

/// The string Twilio signs: the URL, then each parameter's name and value,
/// sorted by name (then value).
fn signed_text(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut text = url.as_bytes().to_vec();
    for (k, v) in sorted {
        text.extend_from_slice(k.as_bytes());
        text.extend_from_slice(v.as_bytes());
    }
    text
}

fn mac(token: &[u8], url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(token)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(&signed_text(url, params));
    m
}

/// `X-Twilio-Signature` of a request to `url` with the POST `params`:
/// base64(HMAC-SHA1(auth token, url + sorted names and values)).
pub fn signature(token: &[u8], url: &str, params: &[(String, String)]) -> String {
    data_encoding::BASE64.encode(&mac(token, url, params).finalize().into_bytes())
}

/// Whether `header` is the signature of that request, compared in
/// constant time; a header that is not base64 is wrong.
pub fn verify_signature(
    token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: &str,
) -> bool {
    let Ok(sig) = data_encoding::BASE64.decode(header.trim().as_bytes()) else {
        return false;
    };
    mac(token, url, params).verify_slice(&sig).is_ok()
}

/// Parameter pairs of a form-encoded body.
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Twilio's status-callback fields voxgate reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCallback {
    /// `MessageSid`.
    pub message_sid: String,
    /// `MessageStatus` (or `SmsStatus`), as sent.
    pub status: String,
    /// `ErrorCode`, when present and not empty.
    pub error_code: Option<String>,
}

impl StatusCallback {
    /// The fields from a callback's parameters; `None` without a sid or status.
    pub fn from_params(params: &[(String, String)]) -> Option<Self> {
        let map: BTreeMap<&str, &str> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sid = map.get("MessageSid").or(map.get("SmsSid"))?;
        let status = map.get("MessageStatus").or(map.get("SmsStatus"))?;
        Some(StatusCallback {
            message_sid: sid.to_string(),
            status: status.to_string(),
            error_code: map
                .get("ErrorCode")
                .filter(|e| !e.is_empty())
                .map(|e| e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example of Twilio's request-validation documentation (twilio-php
    /// docs/usage/validation.rst): auth token 12345, this URL and these
    /// parameters sign to `RSOYDt4T1cUTdK1PDd93/VVr8B8=`.
    #[test]
    fn twilio_documentation_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signed_text(url, &params),
            b"https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212".to_vec()
        );
        let sig = signature(b"12345", url, &params);
        assert_eq!(sig, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(verify_signature(b"12345", url, &params, &sig));
        assert!(!verify_signature(b"12346", url, &params, &sig));
        assert!(!verify_signature(
            b"12345",
            "https://mycompany.com/myapp.php",
            &params,
            &sig
        ));
        let mut changed = params.clone();
        changed[2].1 = "1235".into();
        assert!(!verify_signature(b"12345", url, &changed, &sig));
        assert!(!verify_signature(b"12345", url, &params, "not base64!"));
        assert!(!verify_signature(b"12345", url, &params, ""));
    }

    /// The SMS request of twilio-ruby's spec/util/request_validator_spec.rb.
    #[test]
    fn twilio_ruby_sms_vector() {
        let params = p(&[
            ("ToState", "CA"),
            ("FromState", "CA"),
            ("AccountSid", "ACba8bc05eacf94afdae398e642c9cc32d"),
            ("SmsMessageSid", "SM2003cbd5e6a3701999aa3e5f20ff2787"),
            ("Body", "Orly"),
            ("From", "+14159354345"),
            ("FromCity", "SAN FRANCISCO"),
            ("SmsStatus", "received"),
            ("FromZip", "94107"),
            ("FromCountry", "US"),
            ("To", "+14158141819"),
            ("ToCity", "SAN FRANCISCO"),
            ("ToZip", "94105"),
            ("ToCountry", "US"),
            ("ApiVersion", "2010-04-01"),
            ("SmsSid", "SM2003cbd5e6a3701999aa3e5f20ff2787"),
        ]);
        let url = "http://twiliotests.heroku.com/validate/sms";
        assert!(verify_signature(
            b"2bd9e9638872de601313dc77410d3b23",
            url,
            &params,
            "mxeiv65lEe0b8L6LdVw2jgJi8yw="
        ));
    }

    #[test]
    fn parameters_are_sorted_whatever_their_order() {
        let a = p(&[("b", "2"), ("a", "1")]);
        let b = p(&[("a", "1"), ("b", "2")]);
        assert_eq!(signature(b"t", "u", &a), signature(b"t", "u", &b));
    }

    #[test]
    fn callback_fields() {
        let cb = StatusCallback::from_params(&form_params(
            b"MessageSid=SM1&MessageStatus=delivered&ErrorCode=&AccountSid=AC1",
        ))
        .unwrap();
        assert_eq!(cb.message_sid, "SM1");
        assert_eq!(cb.status, "delivered");
        assert_eq!(cb.error_code, None);
        let cb = StatusCallback::from_params(&form_params(
            b"SmsSid=SM2&SmsStatus=undelivered&ErrorCode=30003",
        ))
        .unwrap();
        assert_eq!(cb.error_code.as_deref(), Some("30003"));
        assert!(StatusCallback::from_params(&form_params(b"MessageStatus=sent")).is_none());
    }
}
