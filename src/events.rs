//! The event vocabulary of a call: what happened, never a secret.
//!
//! Records, metrics, logs and test assertions all consume these events, so
//! this module sits at the bottom of the module tree and imports nothing from
//! the flow engine. Every event has a stable [`Event::name`] (outcome-bearing
//! events carry the outcome in the name, e.g. `auth_passed`, so a test can say
//! `events: [auth_passed]`) and serialises as one flat JSON object whose
//! `event` field is that name.
//!
//! Privacy rules enforced by construction:
//! - [`Event::Digits`] carries the digit values only when the step is not
//!   secret (`digits: None` otherwise);
//! - [`Event::Recognition`] never carries a transcript (callers say account
//!   numbers and names as well as passphrases): only its length in words;
//! - [`Event::CodeSent`] and [`Event::CodeAttempt`] carry the destination
//!   masked ([`mask_number`], [`mask_email`]).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// How a verification was performed; the `method` of an [`Event::Auth`]
/// and the value flows read as `auth.method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A spoken passphrase, judged by the passphrase verifier backend
    /// (`verify_passphrase`).
    Passphrase,
    /// A one-time code sent by SMS and keyed in by the caller (`verify_code`).
    SmsCode,
    /// A one-time code read out in a voice call and keyed in by the caller
    /// (`verify_code` after a `send_code` with `channel: voice`).
    VoiceCode,
    /// A one-time code sent by e-mail and keyed in by the caller
    /// (`verify_code` after a `send_code` whose e-mail channel took the code).
    EmailCode,
    /// A time-based one-time password from the caller's authenticator app
    /// (`verify_totp`).
    Totp,
}

impl AuthMethod {
    /// Stable spelling used in JSON events and in the `auth.method` variable.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Passphrase => "passphrase",
            AuthMethod::SmsCode => "sms_code",
            AuthMethod::VoiceCode => "voice_code",
            AuthMethod::EmailCode => "email_code",
            AuthMethod::Totp => "totp",
        }
    }
}

/// Result of a verification attempt (final for the step: retries are
/// inside the step). Flows read it as `auth.result`; [`Event::name`] puts it
/// in the event name (`auth_passed`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthOutcome {
    /// The caller proved who they are.
    Passed,
    /// Wrong answers on every allowed try, or the code backend burnt the
    /// code (its attempts used up).
    Failed,
    /// The one-time code's time to live had run out when it was checked.
    Expired,
    /// The factor is locked for the account (too many failures across calls).
    Locked,
    /// The caller entered or said nothing within the step's timeouts.
    NoInput,
    /// The check could not be made (backend missing or failing, decoder
    /// busy); says nothing about the caller.
    Error,
}

impl AuthOutcome {
    /// Stable spelling used in JSON events and in the `auth.result` variable.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Passed => "passed",
            AuthOutcome::Failed => "failed",
            AuthOutcome::Expired => "expired",
            AuthOutcome::Locked => "locked",
            AuthOutcome::NoInput => "no_input",
            AuthOutcome::Error => "error",
        }
    }
}

/// Result of asking the code backend to send a one-time code
/// (`send_code`); the `outcome` of an [`Event::CodeSent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendOutcome {
    /// The backend accepted the code for delivery (not a proof of receipt).
    Sent,
    /// A live code went out within `resend_cooldown`: none was sent now;
    /// the step takes `success` (the caller enters that code).
    StillValid,
    /// An abuse limit refused the send (the event's `reason` says which);
    /// the step takes its `rate_limited` exit.
    RateLimited,
    /// Too many wrong codes for the account; the step takes `rate_limited`.
    Locked,
    /// The backend is missing or failed; the step takes its `error` exit.
    Error,
}

impl SendOutcome {
    /// Stable spelling used in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::StillValid => "still_valid",
            SendOutcome::RateLimited => "rate_limited",
            SendOutcome::Locked => "locked",
            SendOutcome::Error => "error",
        }
    }
}

/// Result of a transfer attempt (`transfer`); the `outcome` of an
/// [`Event::Transfer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferResult {
    /// The target has the call; this leg no longer belongs to the flow.
    Transferred,
    /// The target refused or did not answer (SIP status in the event when
    /// there was one); the step takes its `failure` exit.
    Failed,
    /// The transfer could not be attempted (unsupported on this call, call
    /// failure); the step takes its `error` exit.
    Error,
}

impl TransferResult {
    /// Stable spelling used in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferResult::Transferred => "transferred",
            TransferResult::Failed => "failed",
            TransferResult::Error => "error",
        }
    }
}

/// Result of a webhook call (`webhook`); the `outcome` of an
/// [`Event::Webhook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookResult {
    /// A 2xx answer; its JSON body was stored under the step's `into`.
    Ok,
    /// A non-2xx answer; only its status was stored (`<into>.status`).
    Failed,
    /// No answer within the step's `timeout`.
    Timeout,
    /// Transport error (connection refused, bad URL, unreadable answer).
    Error,
}

impl WebhookResult {
    /// Stable spelling used in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Ok => "ok",
            WebhookResult::Failed => "failed",
            WebhookResult::Timeout => "timeout",
            WebhookResult::Error => "error",
        }
    }
}

/// What a caller lookup found; the `outcome` of an [`Event::Lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookupResult {
    /// An account for the number.
    Found,
    /// No account (or no number to look up: withheld, not a number).
    NotFound,
    /// The directory failed or timed out.
    Error,
}

impl LookupResult {
    /// Stable spelling used in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Found => "found",
            LookupResult::NotFound => "not_found",
            LookupResult::Error => "error",
        }
    }
}

/// Who ended the call; the `by` of an [`Event::HungUp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HangupBy {
    /// The caller hung up (or the call was torn down under the flow).
    Caller,
    /// The flow ended the call: a `hangup` step, a `next` exit with no
    /// target, or a flow error.
    Engine,
}

impl HangupBy {
    /// Stable spelling used in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            HangupBy::Caller => "caller",
            HangupBy::Engine => "engine",
        }
    }
}

/// What cut a prompt short; the `by` of an [`Event::BargeIn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BargeInBy {
    /// A key press (kept as type-ahead for the next digit collection).
    Digit,
    /// The caller started talking (voice activity; nothing is recognised).
    Speech,
}

impl BargeInBy {
    /// Stable spelling used in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            BargeInBy::Digit => "digit",
            BargeInBy::Speech => "speech",
        }
    }
}

/// One thing that happened during a flow run.
///
/// Every `step` field is the id of the step the event belongs to, as written
/// in the flow (empty for an error before the first step ran).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The flow began running on a call; always the first event of a run.
    FlowStarted {
        /// The flow's `name`.
        flow: String,
    },
    /// A step began.
    StepEntered {
        /// Step id.
        step: String,
        /// The step's kind as spelled in YAML (`collect_digits`, …).
        kind: &'static str,
    },
    /// A step finished and the flow moved on (or ended).
    StepLeft {
        /// Step id.
        step: String,
        /// Exit name (`success`, `next`, …) or `goto` for branches.
        exit: String,
    },
    /// An input step finished collecting a digit string.
    Digits {
        /// Step id.
        step: String,
        /// How many digits were entered (also when they are withheld).
        count: usize,
        /// How the last digit arrived: `rfc4733`, `sip_info`, `inband` or
        /// `script` (a `voxgate test` caller).
        source: &'static str,
        /// The digits themselves; `None` when the step is secret.
        digits: Option<String>,
    },
    /// The recogniser returned a result for a `recognize` or
    /// `verify_passphrase` try. Never carries the transcript.
    Recognition {
        /// Step id.
        step: String,
        /// The recogniser's confidence, 0.0 – 1.0.
        confidence: f32,
        /// Whether the try counted: for `recognize`, confidence high enough
        /// and (when the step lists phrases) one of them; for
        /// `verify_passphrase`, the verifier's verdict.
        matched: bool,
        /// Words heard (the words themselves stay in the call).
        words: usize,
    },
    /// A verification step reached its final outcome; also sets
    /// `auth.result`, `auth.method` and `auth.reason` for the flow.
    Auth {
        /// Step id.
        step: String,
        /// How the caller was checked.
        method: AuthMethod,
        /// What the check concluded.
        outcome: AuthOutcome,
        /// A fixed human-readable explanation (`wrong code`, `code expired`,
        /// a backend error): never the code, passphrase or transcript.
        reason: String,
    },
    /// A `send_code` step asked the code backend to send a one-time code.
    CodeSent {
        /// Step id.
        step: String,
        /// `sms` or `voice`.
        channel: &'static str,
        /// The destination masked by [`mask_number`]; the full number is
        /// never in an event.
        to_masked: String,
        /// What the backend answered.
        outcome: SendOutcome,
        /// Which limit refused it (`rate_limited`) or why it failed
        /// (`error`); never a secret.
        reason: Option<String>,
        /// The gateway that took the message (`sent`).
        gateway: Option<String>,
        /// The gateway's message id (`sent`), which delivery receipts name.
        message_id: Option<String>,
    },
    /// One try of a `send_code` at one channel: taken, failed or skipped
    /// (before the step's [`Event::CodeSent`], which names the channel that
    /// took the code). Never the code, never a destination in clear.
    CodeAttempt {
        /// Step id.
        step: String,
        /// `sms`, `voice` or `email`.
        channel: &'static str,
        /// The destination masked (`""` when the account has none).
        to_masked: String,
        /// `sent`, `failed` or `skipped`.
        outcome: &'static str,
        /// Why it failed or was skipped.
        reason: Option<String>,
        /// The gateway (or SMTP relay) asked.
        gateway: Option<String>,
        /// The gateway's message id, when it gave one.
        message_id: Option<String>,
    },
    /// A gateway reported where a code's message is (a delivery receipt,
    /// after or during the call that sent it; not tied to a step).
    CodeDelivery {
        /// The gateway's name in the config.
        gateway: String,
        /// The gateway's message id (as in the `code_sent` event).
        message_id: String,
        /// `queued`, `sent`, `delivered`, `undelivered` or `failed`.
        status: &'static str,
        /// The gateway's error code, when it gave one (e.g. Twilio's 30003).
        error: Option<String>,
    },
    /// A `transfer` step tried to hand the call to an agent.
    Transfer {
        /// Step id.
        step: String,
        /// The rendered target URI (a public render: no secret can be in it).
        target: String,
        /// How the attempt ended.
        outcome: TransferResult,
        /// The SIP status the target answered with, when it answered.
        status: Option<u16>,
        /// How it reached the agent (`refer`, `bridge`) when transferred;
        /// why not (`busy`, `not_found`, `no_answer`, `unreachable`,
        /// `refused`) when it failed.
        detail: Option<&'static str>,
    },
    /// A `webhook` step called its HTTP backend.
    Webhook {
        /// Step id.
        step: String,
        /// How the call ended.
        outcome: WebhookResult,
        /// The HTTP status, when an answer came.
        status: Option<u16>,
    },
    /// A step failed. Either the step took its `error` exit, or (when it has
    /// none, or the engine itself failed) the flow ends and a `HungUp` by the
    /// engine follows.
    Error {
        /// Step id.
        step: String,
        /// What went wrong, for the operator. Built from step, backend and
        /// call errors, which must never carry a secret (code, passphrase,
        /// transcript).
        message: String,
    },
    /// `lookup_caller` looked for the caller's account.
    Lookup {
        /// Step id.
        step: String,
        /// What came of it.
        outcome: LookupResult,
        /// How far the caller ID was trusted (`caller.trust`).
        trust: &'static str,
        /// The directory asked; empty when no query was made (withheld
        /// caller, not a number).
        directory: String,
        /// How long the directory took, in microseconds (0 without a query).
        micros: u64,
    },
    /// The caller cut a prompt short and the prompt stopped.
    BargeIn {
        /// Step id.
        step: String,
        /// A key press or speech.
        by: BargeInBy,
    },
    /// The caller hung up in the middle of a digit entry: how many keys
    /// the abandoned entry had (never which), just before the
    /// `hung_up_by_caller`, so an entry given up is visible.
    DigitsAbandoned {
        /// Step id.
        step: String,
        /// Keys pressed in the entry (at least one).
        count: usize,
    },
    /// The call ended while the flow ran.
    HungUp {
        /// Who hung up.
        by: HangupBy,
        /// The step running when the call ended.
        step: String,
    },
}

impl Event {
    /// Stable name, used as the `event` field in JSON and in test `events:` lists.
    pub fn name(&self) -> &'static str {
        match self {
            Event::FlowStarted { .. } => "flow_started",
            Event::StepEntered { .. } => "step_entered",
            Event::StepLeft { .. } => "step_left",
            Event::Digits { .. } => "digits",
            Event::Recognition { .. } => "recognition",
            Event::Auth { outcome, .. } => match outcome {
                AuthOutcome::Passed => "auth_passed",
                AuthOutcome::Failed => "auth_failed",
                AuthOutcome::Expired => "auth_expired",
                AuthOutcome::Locked => "auth_locked",
                AuthOutcome::NoInput => "auth_no_input",
                AuthOutcome::Error => "auth_error",
            },
            Event::CodeSent { outcome, .. } => match outcome {
                SendOutcome::Sent => "code_sent",
                SendOutcome::StillValid => "code_still_valid",
                SendOutcome::RateLimited => "code_rate_limited",
                SendOutcome::Locked => "code_locked",
                SendOutcome::Error => "code_send_error",
            },
            Event::CodeDelivery { .. } => "code_delivery",
            Event::CodeAttempt { .. } => "code_attempt",
            Event::Transfer { outcome, .. } => match outcome {
                TransferResult::Transferred => "transferred",
                TransferResult::Failed => "transfer_failed",
                TransferResult::Error => "transfer_error",
            },
            Event::Webhook { outcome, .. } => match outcome {
                WebhookResult::Ok => "webhook_ok",
                WebhookResult::Failed => "webhook_failed",
                WebhookResult::Timeout => "webhook_timeout",
                WebhookResult::Error => "webhook_error",
            },
            Event::Error { .. } => "error",
            Event::BargeIn { .. } => "barge_in",
            Event::DigitsAbandoned { .. } => "digits_abandoned",
            Event::Lookup { .. } => "lookup",
            Event::HungUp { by, .. } => match by {
                HangupBy::Caller => "hung_up_by_caller",
                HangupBy::Engine => "hung_up_by_engine",
            },
        }
    }

    /// The step the event belongs to, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::FlowStarted { .. } => None,
            Event::StepEntered { step, .. }
            | Event::StepLeft { step, .. }
            | Event::Digits { step, .. }
            | Event::Recognition { step, .. }
            | Event::Auth { step, .. }
            | Event::CodeSent { step, .. }
            | Event::CodeAttempt { step, .. }
            | Event::Transfer { step, .. }
            | Event::Webhook { step, .. }
            | Event::Error { step, .. }
            | Event::BargeIn { step, .. }
            | Event::DigitsAbandoned { step, .. }
            | Event::Lookup { step, .. }
            | Event::HungUp { step, .. } => Some(step),
            Event::CodeDelivery { .. } => None,
        }
    }
}

/// Flat JSON object: `{"event": name(), ...fields}`; `None` fields are omitted.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event", self.name())?;
        match self {
            Event::FlowStarted { flow } => m.serialize_entry("flow", flow)?,
            Event::StepEntered { step, kind } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("kind", kind)?;
            }
            Event::StepLeft { step, exit } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("exit", exit)?;
            }
            Event::Digits {
                step,
                count,
                source,
                digits,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("count", count)?;
                m.serialize_entry("source", source)?;
                if let Some(d) = digits {
                    m.serialize_entry("digits", d)?;
                }
            }
            Event::Recognition {
                step,
                confidence,
                matched,
                words,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("confidence", confidence)?;
                m.serialize_entry("matched", matched)?;
                m.serialize_entry("words", words)?;
            }
            Event::Auth {
                step,
                method,
                outcome,
                reason,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("method", method.as_str())?;
                m.serialize_entry("outcome", outcome.as_str())?;
                m.serialize_entry("reason", reason)?;
            }
            Event::CodeSent {
                step,
                channel,
                to_masked,
                outcome,
                reason,
                gateway,
                message_id,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("channel", channel)?;
                m.serialize_entry("to_masked", to_masked)?;
                m.serialize_entry("outcome", outcome.as_str())?;
                for (k, v) in [
                    ("reason", reason),
                    ("gateway", gateway),
                    ("message_id", message_id),
                ] {
                    if let Some(v) = v {
                        m.serialize_entry(k, v)?;
                    }
                }
            }
            Event::CodeAttempt {
                step,
                channel,
                to_masked,
                outcome,
                reason,
                gateway,
                message_id,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("channel", channel)?;
                m.serialize_entry("to_masked", to_masked)?;
                m.serialize_entry("outcome", outcome)?;
                for (k, v) in [
                    ("reason", reason),
                    ("gateway", gateway),
                    ("message_id", message_id),
                ] {
                    if let Some(v) = v {
                        m.serialize_entry(k, v)?;
                    }
                }
            }
            Event::CodeDelivery {
                gateway,
                message_id,
                status,
                error,
            } => {
                m.serialize_entry("gateway", gateway)?;
                m.serialize_entry("message_id", message_id)?;
                m.serialize_entry("status", status)?;
                if let Some(e) = error {
                    m.serialize_entry("error", e)?;
                }
            }
            Event::Transfer {
                step,
                target,
                outcome,
                status,
                detail,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("target", target)?;
                m.serialize_entry("outcome", outcome.as_str())?;
                if let Some(st) = status {
                    m.serialize_entry("status", st)?;
                }
                match (outcome, detail) {
                    (TransferResult::Transferred, Some(d)) => m.serialize_entry("via", d)?,
                    (_, Some(d)) => m.serialize_entry("reason", d)?,
                    _ => {}
                }
            }
            Event::Webhook {
                step,
                outcome,
                status,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("outcome", outcome.as_str())?;
                if let Some(st) = status {
                    m.serialize_entry("status", st)?;
                }
            }
            Event::Error { step, message } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("message", message)?;
            }
            Event::BargeIn { step, by } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("by", by.as_str())?;
            }
            Event::DigitsAbandoned { step, count } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("count", count)?;
            }
            Event::Lookup {
                step,
                outcome,
                trust,
                directory,
                micros,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("outcome", outcome.as_str())?;
                m.serialize_entry("trust", trust)?;
                m.serialize_entry("directory", directory)?;
                m.serialize_entry("micros", micros)?;
            }
            Event::HungUp { by, step } => {
                m.serialize_entry("by", by.as_str())?;
                m.serialize_entry("step", step)?;
            }
        }
        m.end()
    }
}

/// Where events go. `Send` so a sink can live in the call's tokio task.
pub trait EventSink: Send {
    /// Take one event, in the order they happened. Must not block for
    /// long: it is called on the task that runs the call.
    fn emit(&mut self, ev: Event);
}

/// Collects events in memory (tests, records written at call end).
#[derive(Clone, Debug, Default)]
pub struct VecSink {
    /// Every event emitted so far, oldest first.
    pub events: Vec<Event>,
}

impl VecSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The [`Event::name`] of each event, in order (what a test's
    /// `events:` list is compared with).
    pub fn names(&self) -> Vec<&'static str> {
        self.events.iter().map(Event::name).collect()
    }
}

impl EventSink for VecSink {
    fn emit(&mut self, ev: Event) {
        self.events.push(ev);
    }
}

/// Mask a phone number for logs: keep a `+`, the first 4 and last 4 digits.
/// `+15551230001` → `+1555•••0001`; short numbers keep only their last 2 digits.
pub fn mask_number(n: &str) -> String {
    let chars: Vec<char> = n.chars().collect();
    let plus = chars.first() == Some(&'+');
    let body: Vec<char> = chars.iter().copied().filter(|c| *c != '+').collect();
    let prefix = if plus { "+" } else { "" };
    if body.len() >= 10 {
        let head: String = body[..4].iter().collect();
        let tail: String = body[body.len() - 4..].iter().collect();
        format!("{prefix}{head}•••{tail}")
    } else if body.len() > 2 {
        let tail: String = body[body.len() - 2..].iter().collect();
        format!("{prefix}•••{tail}")
    } else {
        "•••".to_string()
    }
}

/// Mask an e-mail address for events and records: the first character of
/// the local part and the whole domain. `alice@example.com` →
/// `a•••@example.com`; anything without an `@` → `•••`.
pub fn mask_email(a: &str) -> String {
    let a = a.trim();
    match a.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        _ => "•••".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_email_addresses() {
        assert_eq!(mask_email("alice@example.com"), "a•••@example.com");
        assert_eq!(mask_email(" b@x.org "), "b•••@x.org");
        assert_eq!(mask_email("élodie@exemple.fr"), "é•••@exemple.fr");
        assert_eq!(mask_email("odd\"@\"quoted@example.com"), "o•••@example.com");
        assert_eq!(mask_email("nobody"), "•••");
        assert_eq!(mask_email("@example.com"), "•••");
        assert!(!mask_email("alice@example.com").contains("alice"));
    }

    #[test]
    fn masks_numbers() {
        assert_eq!(mask_number("+15551230001"), "+1555•••0001");
        assert_eq!(mask_number("5551230001"), "5551•••0001");
        assert_eq!(mask_number("12345"), "•••45");
        assert_eq!(mask_number("1"), "•••");
    }

    #[test]
    fn json_has_event_name_and_omits_secret_digits() {
        let ev = Event::Digits {
            step: "pin".into(),
            count: 4,
            source: "rfc4733",
            digits: None,
        };
        let j = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            j,
            r#"{"event":"digits","step":"pin","count":4,"source":"rfc4733"}"#
        );
        let ev = Event::Auth {
            step: "code".into(),
            method: AuthMethod::SmsCode,
            outcome: AuthOutcome::Expired,
            reason: "code expired".into(),
        };
        assert_eq!(ev.name(), "auth_expired");
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["method"], "sms_code");
        assert_eq!(v["event"], "auth_expired");
    }
}
