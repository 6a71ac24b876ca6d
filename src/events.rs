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
//! - [`Event::CodeSent`] carries the destination masked ([`mask_number`]).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// How a verification was performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    Passphrase,
    SmsCode,
    VoiceCode,
    Totp,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Passphrase => "passphrase",
            AuthMethod::SmsCode => "sms_code",
            AuthMethod::VoiceCode => "voice_code",
            AuthMethod::Totp => "totp",
        }
    }
}

/// Result of a verification attempt (final for the step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthOutcome {
    Passed,
    Failed,
    Expired,
    NoInput,
    Error,
}

impl AuthOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Passed => "passed",
            AuthOutcome::Failed => "failed",
            AuthOutcome::Expired => "expired",
            AuthOutcome::NoInput => "no_input",
            AuthOutcome::Error => "error",
        }
    }
}

/// Result of asking the code backend to send a one-time code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendOutcome {
    Sent,
    RateLimited,
    Error,
}

impl SendOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::RateLimited => "rate_limited",
            SendOutcome::Error => "error",
        }
    }
}

/// Result of a transfer attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferResult {
    Transferred,
    Failed,
    Error,
}

impl TransferResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferResult::Transferred => "transferred",
            TransferResult::Failed => "failed",
            TransferResult::Error => "error",
        }
    }
}

/// Result of a webhook call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookResult {
    Ok,
    Failed,
    Timeout,
    Error,
}

impl WebhookResult {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Ok => "ok",
            WebhookResult::Failed => "failed",
            WebhookResult::Timeout => "timeout",
            WebhookResult::Error => "error",
        }
    }
}

/// Who ended the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HangupBy {
    Caller,
    Engine,
}

impl HangupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupBy::Caller => "caller",
            HangupBy::Engine => "engine",
        }
    }
}

/// One thing that happened during a flow run.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    FlowStarted {
        flow: String,
    },
    StepEntered {
        step: String,
        kind: &'static str,
    },
    StepLeft {
        step: String,
        /// Exit name (`success`, `next`, …) or `goto` for branches.
        exit: String,
    },
    Digits {
        step: String,
        count: usize,
        source: &'static str,
        /// `None` when the step is secret.
        digits: Option<String>,
    },
    Recognition {
        step: String,
        confidence: f32,
        matched: bool,
        /// Words heard (the words themselves stay in the call).
        words: usize,
    },
    Auth {
        step: String,
        method: AuthMethod,
        outcome: AuthOutcome,
        reason: String,
    },
    CodeSent {
        step: String,
        channel: &'static str,
        to_masked: String,
        outcome: SendOutcome,
    },
    Transfer {
        step: String,
        target: String,
        outcome: TransferResult,
        status: Option<u16>,
    },
    Webhook {
        step: String,
        outcome: WebhookResult,
        status: Option<u16>,
    },
    Error {
        step: String,
        message: String,
    },
    HungUp {
        by: HangupBy,
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
                AuthOutcome::NoInput => "auth_no_input",
                AuthOutcome::Error => "auth_error",
            },
            Event::CodeSent { outcome, .. } => match outcome {
                SendOutcome::Sent => "code_sent",
                SendOutcome::RateLimited => "code_rate_limited",
                SendOutcome::Error => "code_send_error",
            },
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
            | Event::Transfer { step, .. }
            | Event::Webhook { step, .. }
            | Event::Error { step, .. }
            | Event::HungUp { step, .. } => Some(step),
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
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("channel", channel)?;
                m.serialize_entry("to_masked", to_masked)?;
                m.serialize_entry("outcome", outcome.as_str())?;
            }
            Event::Transfer {
                step,
                target,
                outcome,
                status,
            } => {
                m.serialize_entry("step", step)?;
                m.serialize_entry("target", target)?;
                m.serialize_entry("outcome", outcome.as_str())?;
                if let Some(st) = status {
                    m.serialize_entry("status", st)?;
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
    fn emit(&mut self, ev: Event);
}

/// Collects events in memory (tests, records written at call end).
#[derive(Clone, Debug, Default)]
pub struct VecSink {
    pub events: Vec<Event>,
}

impl VecSink {
    pub fn new() -> Self {
        Self::default()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
