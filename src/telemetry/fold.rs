//! One call's events folded into its [`CallRecord`].

use crate::events::{mask_number, AuthOutcome, Event, HangupBy, SendOutcome, TransferResult};
use crate::phone::{self, Country};
use crate::store::records::{CallOutcome, CallRecord, MethodRecord};

/// Longest `path` kept; longer ones end in `…`.
const MAX_PATH: usize = 400;
/// Most reasons kept per method.
const MAX_REASONS: usize = 5;
/// Longest transfer target kept.
const MAX_AGENT: usize = 200;

/// What is known of a call when its flow starts.
#[derive(Clone, Debug, Default)]
pub struct CallStart {
    /// voxgate's call id.
    pub call_id: String,
    /// The caller as identified (a number, a SIP user or `anonymous`).
    pub caller: String,
    /// The dialled number.
    pub dialled: String,
    /// The route's brand.
    pub brand: String,
    /// The flow routed to.
    pub flow: String,
    /// When the call reached its flow (ms since the epoch).
    pub started_at_ms: i64,
}

/// A call's record in the making.
#[derive(Debug)]
pub struct Accumulator {
    rec: CallRecord,
    /// Steps entered, consecutive repeats folded: (step, times).
    path: Vec<(String, u32)>,
    passed: bool,
    concluded: bool,
    transferred: bool,
    caller_hung_up: bool,
}

impl Accumulator {
    /// The caller as the record keeps it (masked).
    pub fn caller_masked(&self) -> &str {
        &self.rec.caller_masked
    }

    /// Start the record of the call `start`; the caller's number is masked
    /// here (`mask_caller`: country code and last 4 digits only) and never
    /// kept whole.
    pub fn new(start: CallStart, mask_caller: bool, default_country: Country) -> Accumulator {
        let (caller_masked, country, calling_code) =
            caller_fields(&start.caller, mask_caller, default_country);
        Accumulator {
            rec: CallRecord {
                call_id: start.call_id,
                started_at: start.started_at_ms,
                answered_at: None,
                ended_at: start.started_at_ms,
                caller_masked,
                country,
                calling_code,
                dialled: start.dialled,
                brand: start.brand,
                flow: start.flow,
                steps: 0,
                path: String::new(),
                outcome: CallOutcome::NoAuth,
                auth_method: None,
                auth_result: None,
                methods: Vec::new(),
                lookup: None,
                codes_sent: 0,
                code_send: None,
                transfer_result: None,
                transfer_agent: None,
                hangup_by: None,
            },
            path: Vec::new(),
            passed: false,
            concluded: false,
            transferred: false,
            caller_hung_up: false,
        }
    }

    /// The record as it stands at the call's start (what a crash would
    /// leave of it: `store::open_calls`).
    pub fn opening(&self) -> CallRecord {
        self.rec.clone()
    }

    /// The flow's name as the record has it.
    pub fn flow(&self) -> &str {
        &self.rec.flow
    }

    /// The caller's ACK confirmed the answer at `at_ms`.
    pub fn answered(&mut self, at_ms: i64) {
        self.rec.answered_at = Some(at_ms);
    }

    /// The caller hung up before the call was confirmed.
    pub fn caller_gone(&mut self) {
        self.caller_hung_up = true;
        self.rec
            .hangup_by
            .get_or_insert_with(|| "caller".to_string());
    }

    /// Fold one event in.
    pub fn fold(&mut self, ev: &Event) {
        let r = &mut self.rec;
        match ev {
            Event::FlowStarted { flow } => r.flow = flow.clone(),
            Event::StepEntered { step, .. } => {
                r.steps += 1;
                match self.path.last_mut() {
                    Some((s, n)) if s == step => *n += 1,
                    _ => self.path.push((step.clone(), 1)),
                }
            }
            Event::Auth {
                method,
                outcome,
                reason,
                ..
            } => {
                self.concluded = true;
                let (m, res) = (method.as_str(), outcome.as_str());
                if !self.passed {
                    r.auth_method = Some(m.to_string());
                    r.auth_result = Some(res.to_string());
                }
                if *outcome == AuthOutcome::Passed {
                    self.passed = true;
                }
                let entry = match r.methods.iter_mut().position(|x| x.method == m) {
                    Some(i) => &mut r.methods[i],
                    None => {
                        r.methods.push(MethodRecord {
                            method: m.to_string(),
                            attempts: 0,
                            result: String::new(),
                            reasons: Vec::new(),
                        });
                        let last = r.methods.len() - 1;
                        &mut r.methods[last]
                    }
                };
                entry.attempts += 1;
                entry.result = res.to_string();
                if *outcome != AuthOutcome::Passed
                    && !reason.is_empty()
                    && entry.reasons.len() < MAX_REASONS
                {
                    entry.reasons.push(reason.clone());
                }
            }
            Event::CodeSent { outcome, .. } => {
                if *outcome == SendOutcome::Sent {
                    r.codes_sent += 1;
                }
                r.code_send = Some(outcome.as_str().to_string());
            }
            Event::Transfer {
                target, outcome, ..
            } => {
                if *outcome == TransferResult::Transferred {
                    self.transferred = true;
                }
                r.transfer_result = Some(outcome.as_str().to_string());
                r.transfer_agent = Some(target.chars().take(MAX_AGENT).collect());
            }
            Event::Lookup { outcome, .. } => r.lookup = Some(outcome.as_str().to_string()),
            Event::HungUp { by, .. } => {
                self.caller_hung_up = *by == HangupBy::Caller;
                r.hangup_by = Some(by.as_str().to_string());
            }
            _ => {}
        }
    }

    /// The funnel outcome so far (see [`CallOutcome`] for the precedence).
    pub fn outcome(&self) -> CallOutcome {
        if self.passed {
            CallOutcome::Passed
        } else if self.transferred {
            CallOutcome::Transferred
        } else if self.concluded {
            CallOutcome::Failed
        } else if self.caller_hung_up {
            CallOutcome::Abandoned
        } else {
            CallOutcome::NoAuth
        }
    }

    /// The finished record of a call that ended at `ended_at_ms`.
    pub fn finish(mut self, ended_at_ms: i64) -> CallRecord {
        self.rec.outcome = self.outcome();
        self.rec.ended_at = ended_at_ms;
        self.rec.path = compact_path(&self.path);
        self.rec
    }
}

/// `a>b×2>c`, capped at [`MAX_PATH`] characters.
fn compact_path(path: &[(String, u32)]) -> String {
    let mut out = String::new();
    for (i, (step, n)) in path.iter().enumerate() {
        let part = if *n > 1 {
            format!("{step}×{n}")
        } else {
            step.clone()
        };
        if out.chars().count() + part.chars().count() + 1 > MAX_PATH {
            out.push('…');
            break;
        }
        if i > 0 {
            out.push('>');
        }
        out.push_str(&part);
    }
    out
}

/// The caller masked, its ISO country and its calling code.
fn caller_fields(caller: &str, mask: bool, default_country: Country) -> (String, String, String) {
    let Some(n) = phone::for_lookup(caller, default_country) else {
        let masked = if caller == "anonymous" || caller.is_empty() {
            "anonymous".to_string()
        } else {
            mask_number(caller)
        };
        return (masked, String::new(), String::new());
    };
    // An invalid number with a known calling code still gets that code's
    // region, so `--country GB` finds it as `--country +44` does.
    let country = n.country_or_region().unwrap_or_default();
    let code = n.calling_code().map(|c| c.to_string()).unwrap_or_default();
    let masked = if mask {
        let digits: Vec<char> = n.as_str().chars().filter(char::is_ascii_digit).collect();
        let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
        if code.is_empty() {
            format!("•••{tail}")
        } else {
            format!("+{code}•••{tail}")
        }
    } else {
        mask_number(n.as_str())
    };
    (masked, country, code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::AuthMethod;

    fn start(caller: &str) -> CallStart {
        CallStart {
            call_id: "c1".into(),
            caller: caller.into(),
            dialled: "bank".into(),
            brand: "acme".into(),
            flow: "bank".into(),
            started_at_ms: 1_000,
        }
    }

    fn entered(step: &str) -> Event {
        Event::StepEntered {
            step: step.into(),
            kind: "play",
        }
    }

    fn auth(method: AuthMethod, outcome: AuthOutcome, reason: &str) -> Event {
        Event::Auth {
            step: "v".into(),
            method,
            outcome,
            reason: reason.into(),
        }
    }

    #[test]
    fn callers_are_masked_to_country_code_and_last_digits() {
        let us = Country::default();
        assert_eq!(
            caller_fields("+16502530001", true, us),
            ("+1•••0001".into(), "US".into(), "1".into())
        );
        assert_eq!(
            caller_fields("+442079460123", true, us),
            ("+44•••0123".into(), "GB".into(), "44".into())
        );
        // Too short for the UK plan: the calling code's region all the same.
        assert_eq!(
            caller_fields("+44207946", true, us),
            ("+44•••7946".into(), "GB".into(), "44".into())
        );
        assert_eq!(caller_fields("+15550100", true, us).1, "US");
        assert_eq!(caller_fields("+16502530001", false, us).0, "+1650•••0001");
        assert_eq!(caller_fields("anonymous", true, us).0, "anonymous");
        assert_eq!(caller_fields("alice", true, us).0, "•••ce");
    }

    #[test]
    fn a_failed_then_passed_call_folds_into_one_record() {
        let mut a = Accumulator::new(start("+16502530001"), true, Country::default());
        a.answered(1_100);
        for ev in [
            Event::FlowStarted {
                flow: "bank".into(),
            },
            entered("hello"),
            entered("code"),
            Event::CodeSent {
                step: "code".into(),
                channel: "sms",
                to_masked: "+1650•••0001".into(),
                outcome: SendOutcome::Sent,
                reason: None,
                gateway: Some("tw".into()),
                message_id: Some("SM1".into()),
            },
            entered("verify"),
            auth(AuthMethod::SmsCode, AuthOutcome::Failed, "wrong code"),
            entered("verify"),
            auth(AuthMethod::SmsCode, AuthOutcome::Passed, "ok"),
            entered("bye"),
            Event::HungUp {
                by: HangupBy::Engine,
                step: "bye".into(),
            },
        ] {
            a.fold(&ev);
        }
        let r = a.finish(5_000);
        assert_eq!(r.outcome, CallOutcome::Passed);
        assert_eq!(r.path, "hello>code>verify×2>bye");
        assert_eq!(r.steps, 5);
        assert_eq!(r.codes_sent, 1);
        assert_eq!(r.auth_method.as_deref(), Some("sms_code"));
        assert_eq!(r.auth_result.as_deref(), Some("passed"));
        assert_eq!(
            r.methods,
            vec![MethodRecord {
                method: "sms_code".into(),
                attempts: 2,
                result: "passed".into(),
                reasons: vec!["wrong code".into()],
            }]
        );
        assert_eq!(r.hangup_by.as_deref(), Some("engine"));
        assert_eq!((r.answered_at, r.ended_at), (Some(1_100), 5_000));
    }

    #[test]
    fn outcomes_follow_their_precedence() {
        let run = |evs: Vec<Event>| {
            let mut a = Accumulator::new(start("+16502530001"), true, Country::default());
            evs.iter().for_each(|e| a.fold(e));
            a.outcome()
        };
        let caller_gone = || Event::HungUp {
            by: HangupBy::Caller,
            step: "x".into(),
        };
        assert_eq!(run(vec![caller_gone()]), CallOutcome::Abandoned);
        assert_eq!(run(vec![]), CallOutcome::NoAuth);
        assert_eq!(
            run(vec![
                auth(AuthMethod::Totp, AuthOutcome::Locked, "locked"),
                caller_gone()
            ]),
            CallOutcome::Failed
        );
        assert_eq!(
            run(vec![
                auth(AuthMethod::Totp, AuthOutcome::Failed, "wrong code"),
                Event::Transfer {
                    step: "t".into(),
                    target: "sip:agent@example.com".into(),
                    outcome: TransferResult::Transferred,
                    status: None,
                    detail: Some("refer"),
                }
            ]),
            CallOutcome::Transferred
        );
        let long: Vec<(String, u32)> = (0..200).map(|i| (format!("step{i}"), 1)).collect();
        let p = compact_path(&long);
        assert!(p.ends_with('…') && p.chars().count() <= MAX_PATH + 1, "{p}");
    }
}
