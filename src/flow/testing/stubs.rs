//! Scripted backends for tests. Each is configured from a test case; a
//! backend a test does not configure is "unavailable" like in `serve`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::backends::{
    Account, BoxFut, CodeCheck, CodeEntry, CodeRequest, CodeService, Directory, Enrolment,
    LookupQuery, PassphraseSubject, PassphraseVerdict, PassphraseVerifier, SendLimit, SendResult,
    ServiceError, TotpCheck, TotpVerifier, WebhookClient, WebhookRequest, WebhookResponse,
};

use super::scripted::ScriptVars;

fn ready<'a, T: Send + 'a>(v: T) -> BoxFut<'a, T> {
    Box::pin(async move { v })
}

fn scripted_error(what: &str) -> ServiceError {
    ServiceError::Failed(format!("{what} failed (scripted)"))
}

/// Number → account (`None`: lookups of that number fail); `fail` makes every lookup an error.
pub struct DirectoryStub {
    /// Keyed by the number as looked up (E.164); a number not listed has no account.
    pub accounts: BTreeMap<String, Option<Account>>,
    /// Every lookup fails with a backend error (`fail: [directory]`).
    pub fail: bool,
}

impl Directory for DirectoryStub {
    fn lookup<'a>(
        &'a self,
        query: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        match self.accounts.get(query.number.as_str()) {
            _ if self.fail => ready(Err(scripted_error("caller directory"))),
            Some(None) => ready(Err(scripted_error("caller directory"))),
            Some(Some(a)) => ready(Ok(Some(a.clone()))),
            None => ready(Ok(None)),
        }
    }
}

/// How [`CodeStub`] answers a send request (`codes: { send: … }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SendMode {
    /// The code is sent (and published as `${sent_code}`).
    #[default]
    Ok,
    /// The service refuses: too many codes for this caller.
    RateLimited,
    /// The service fails with a backend error.
    Error,
}

struct PendingCode {
    code: String,
    expires_at: SystemTime,
    attempts_left: u32,
}

/// Generates deterministic codes, enforces TTL (on the call's clock, which
/// the steps pass in: virtual in tests) and attempts,
/// and publishes the last code as `${sent_code}` for the script.
pub struct CodeStub {
    /// How every send is answered.
    pub send_mode: SendMode,
    /// Every verification fails with a backend error (`codes: { verify: error }`).
    pub verify_fails: bool,
    script_vars: ScriptVars,
    pending: Mutex<BTreeMap<String, PendingCode>>,
    sent: Arc<AtomicU32>,
}

impl CodeStub {
    /// `script_vars` receives `sent_code` on each send. Expiry is decided by
    /// the `now` each call passes in, the call's own clock.
    pub fn new(send_mode: SendMode, verify_fails: bool, script_vars: ScriptVars) -> Self {
        CodeStub {
            send_mode,
            verify_fails,
            script_vars,
            pending: Mutex::new(BTreeMap::new()),
            sent: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Counter of codes actually sent (shared handle).
    pub fn sent_counter(&self) -> Arc<AtomicU32> {
        self.sent.clone()
    }

    /// A code of `len` digits that differs per send and never starts with 0
    /// (so scripts can use e.g. `000000` as a surely wrong code).
    fn make_code(n: u32, len: u32) -> String {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(n).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let mut s = String::new();
        for i in 0..len.max(1) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = if i == 0 { 1 + x % 9 } else { x % 10 };
            s.push(char::from(b'0' + d as u8));
        }
        s
    }
}

impl CodeService for CodeStub {
    fn send<'a>(&'a self, req: &'a CodeRequest) -> BoxFut<'a, Result<SendResult, ServiceError>> {
        match self.send_mode {
            SendMode::Error => return ready(Err(scripted_error("code service"))),
            SendMode::RateLimited => {
                return ready(Ok(SendResult::RateLimited(SendLimit::DestinationHourly)))
            }
            SendMode::Ok => {}
        }
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let code = Self::make_code(n, req.length);
        if let Ok(mut v) = self.script_vars.lock() {
            v.insert("sent_code".into(), code.clone());
        }
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                req.subject.key(),
                PendingCode {
                    code,
                    expires_at: req.now + req.ttl,
                    attempts_left: req.max_attempts.max(1),
                },
            );
        }
        let Some(first) = req.targets.first() else {
            return ready(Err(ServiceError::Unavailable("no channel".into())));
        };
        let attempt = crate::backends::SendAttempt {
            channel: first.channel,
            to_masked: first.masked(),
            gateway: "stub".into(),
            message_id: Some(format!("stub-{n}")),
            error: None,
        };
        ready(Ok(SendResult::Sent {
            channel: first.channel,
            to_masked: first.masked(),
            gateway: "stub".into(),
            message_id: Some(format!("stub-{n}")),
            attempts: vec![attempt],
        }))
    }

    fn verify<'a>(&'a self, entry: CodeEntry<'a>) -> BoxFut<'a, Result<CodeCheck, ServiceError>> {
        let (key, entered, now) = (entry.subject.key(), entry.entered, entry.now);
        let call_id = key.as_str();
        if self.verify_fails {
            return ready(Err(scripted_error("code service")));
        }
        let Ok(mut map) = self.pending.lock() else {
            return ready(Err(ServiceError::Failed("code stub state poisoned".into())));
        };
        let res = match map.get_mut(call_id) {
            None => CodeCheck::NotSent,
            Some(p) if now >= p.expires_at => {
                map.remove(call_id);
                CodeCheck::Expired
            }
            Some(p) if p.code == entered => {
                map.remove(call_id);
                CodeCheck::Ok
            }
            Some(p) => {
                p.attempts_left = p.attempts_left.saturating_sub(1);
                if p.attempts_left == 0 {
                    map.remove(call_id);
                    CodeCheck::Exhausted
                } else {
                    CodeCheck::Wrong
                }
            }
        };
        ready(Ok(res))
    }
}

/// Accepts each listed code once, for any account: the same code again is
/// [`TotpCheck::Replayed`], any other [`TotpCheck::Wrong`].
#[derive(Default)]
pub struct TotpStub {
    /// The accepted codes; the time window is ignored.
    pub valid: Vec<String>,
    /// Every verification fails with a backend error (`fail: [totp]`).
    pub fail: bool,
    /// Every account is locked (`totp: { locked: true }`).
    pub locked: bool,
    /// No account has a TOTP secret (`totp: { enrolled: false }`).
    pub not_enrolled: bool,
    /// Codes accepted so far (replay protection across the test's calls).
    pub used: std::sync::Mutex<Vec<String>>,
}

impl TotpVerifier for TotpStub {
    fn verify<'a>(
        &'a self,
        _account_id: &'a str,
        code: &'a str,
        _window: u32,
        _now: SystemTime,
    ) -> BoxFut<'a, Result<TotpCheck, ServiceError>> {
        if self.fail {
            return ready(Err(scripted_error("totp verifier")));
        }
        if self.not_enrolled {
            return ready(Ok(TotpCheck::NotEnrolled));
        }
        if self.locked {
            return ready(Ok(TotpCheck::Locked));
        }
        if !self.valid.iter().any(|v| v == code) {
            return ready(Ok(TotpCheck::Wrong));
        }
        let Ok(mut used) = self.used.lock() else {
            return ready(Err(scripted_error("totp verifier")));
        };
        if used.iter().any(|u| u == code) {
            return ready(Ok(TotpCheck::Replayed));
        }
        used.push(code.to_string());
        ready(Ok(TotpCheck::Accepted))
    }
}

/// Subject (phone number) → passphrase; compared ignoring case and punctuation.
pub struct PassphraseStub {
    /// Subject → the passphrase as enrolled; unknown subjects never match.
    pub phrases: BTreeMap<String, String>,
    /// Every verification fails with a backend error (`fail: [passphrase]`).
    pub fail: bool,
}

impl PassphraseVerifier for PassphraseStub {
    fn enrolment<'a>(
        &'a self,
        subject: &'a PassphraseSubject,
        _: SystemTime,
    ) -> BoxFut<'a, Result<Enrolment, ServiceError>> {
        if self.fail {
            return ready(Err(scripted_error("passphrase verifier")));
        }
        // An unknown subject still listens (and never matches), as a
        // directory-less test expects.
        let hint = self
            .phrases
            .get(&subject.number)
            .cloned()
            .unwrap_or_default();
        let digits = crate::asr::phrase::is_digits(&hint);
        ready(Ok(Enrolment::Ready {
            hint: zeroize::Zeroizing::new(hint),
            digits,
        }))
    }

    fn verify<'a>(
        &'a self,
        subject: &'a PassphraseSubject,
        transcript: &'a str,
        confidence: f32,
        _: SystemTime,
    ) -> BoxFut<'a, Result<PassphraseVerdict, ServiceError>> {
        if self.fail {
            return ready(Err(scripted_error("passphrase verifier")));
        }
        let matched = self
            .phrases
            .get(&subject.number)
            .is_some_and(|p| crate::asr::phrase::matches(p, transcript));
        let policy = crate::config::PassphrasePolicy::default();
        ready(Ok(match matched {
            true if confidence >= policy.min_confidence => PassphraseVerdict::Match,
            true => PassphraseVerdict::LowConfidence,
            false => PassphraseVerdict::NoMatch,
        }))
    }
}

/// Answers every call the same way and records the requests.
pub struct WebhookStub {
    /// HTTP status of every answer.
    pub status: u16,
    /// JSON body of every answer (`null` sets no fields).
    pub body: serde_json::Value,
    /// Answer with a timeout error instead (checked after `fail`).
    pub timeout: bool,
    /// Answer with a transport error instead (`fail: [webhook]`).
    pub fail: bool,
    /// Every request received, in order, recorded even when failing; keep a
    /// clone of the handle to inspect them after the run.
    pub requests: Arc<Mutex<Vec<WebhookRequest>>>,
}

impl WebhookClient for WebhookStub {
    fn call<'a>(
        &'a self,
        req: &'a WebhookRequest,
    ) -> BoxFut<'a, Result<WebhookResponse, ServiceError>> {
        if let Ok(mut r) = self.requests.lock() {
            r.push(req.clone());
        }
        if self.fail {
            return ready(Err(scripted_error("webhook")));
        }
        if self.timeout {
            return ready(Err(ServiceError::Timeout(format!(
                "{} (scripted)",
                req.url
            ))));
        }
        ready(Ok(WebhookResponse {
            status: self.status,
            body: self.body.clone(),
        }))
    }
}
