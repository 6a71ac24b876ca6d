//! `codes:` — how one-time codes are resent, limited and locked. These are
//! the server's rules, not a flow's: a flow cannot loosen an abuse limit.

use std::time::Duration;

use serde::Deserialize;

use super::parse_duration;

/// Sends allowed per hour and per day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendLimits {
    /// Sends in any 60 minutes.
    pub hour: u32,
    /// Sends in any 24 hours.
    pub day: u32,
}

/// What a resend does to the code sent before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// The earlier code is cancelled: only the newest one works.
    New,
    /// The earlier code stays valid (until its own expiry) beside the new one.
    Keep,
}

/// The `codes:` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodePolicy {
    /// What a resend does to the previous code (default `new`).
    pub resend: Resend,
    /// Sends to one destination number (default 5 an hour, 10 a day).
    pub per_destination: SendLimits,
    /// Sends asked for by one caller number (default 5 an hour, 20 a day).
    pub per_caller: SendLimits,
    /// Wrong codes per account within `lockout_window`, across calls, that
    /// lock codes for the account (default 10).
    pub max_failures: u32,
    /// The lockout window (default 24 h).
    pub lockout_window: Duration,
    /// How long `send_code` waits for an SMS delivery receipt before it
    /// tries the step's next channel (`None`, the default: it does not wait;
    /// a code sent by SMS with no channel after it is never waited for).
    pub receipt_timeout: Option<Duration>,
}

impl Default for CodePolicy {
    fn default() -> Self {
        CodePolicy {
            resend: Resend::New,
            per_destination: SendLimits { hour: 5, day: 10 },
            per_caller: SendLimits { hour: 5, day: 20 },
            max_failures: 10,
            lockout_window: Duration::from_secs(24 * 3600),
            receipt_timeout: None,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCodes {
    resend: Option<String>,
    per_destination: Option<RawLimits>,
    per_caller: Option<RawLimits>,
    max_failures: Option<u32>,
    lockout_window: Option<String>,
    receipt_timeout: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    hour: Option<u32>,
    day: Option<u32>,
}

fn limits(raw: Option<RawLimits>, dflt: SendLimits, name: &str) -> Result<SendLimits, String> {
    let Some(r) = raw else { return Ok(dflt) };
    let l = SendLimits {
        hour: r.hour.unwrap_or(dflt.hour),
        day: r.day.unwrap_or(dflt.day),
    };
    if l.hour == 0 || l.day == 0 {
        return Err(format!(
            "codes.{name}: a limit of 0 would send no code at all"
        ));
    }
    if l.hour > l.day {
        return Err(format!(
            "codes.{name}: hour ({}) is above day ({})",
            l.hour, l.day
        ));
    }
    Ok(l)
}

impl RawCodes {
    pub(super) fn into_policy(self) -> Result<CodePolicy, String> {
        let d = CodePolicy::default();
        let resend = match self.resend.as_deref() {
            None | Some("new") => Resend::New,
            Some("keep") => Resend::Keep,
            Some(o) => return Err(format!("codes.resend: `{o}` is not `new` or `keep`")),
        };
        let max_failures = self.max_failures.unwrap_or(d.max_failures);
        if max_failures == 0 || max_failures > 100 {
            return Err(format!(
                "codes.max_failures: {max_failures} is outside 1..100"
            ));
        }
        let lockout_window = match self.lockout_window {
            Some(w) => parse_duration(&w).map_err(|e| format!("codes.lockout_window: {e}"))?,
            None => d.lockout_window,
        };
        let receipt_timeout = match self.receipt_timeout {
            None => None,
            Some(t) => {
                let d = parse_duration(&t).map_err(|e| format!("codes.receipt_timeout: {e}"))?;
                if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
                    return Err(format!(
                        "codes.receipt_timeout: {} s is outside 1..300 s (the caller waits on the line)",
                        d.as_secs()
                    ));
                }
                Some(d)
            }
        };
        Ok(CodePolicy {
            receipt_timeout,
            resend,
            per_destination: limits(self.per_destination, d.per_destination, "per_destination")?,
            per_caller: limits(self.per_caller, d.per_caller, "per_caller")?,
            max_failures,
            lockout_window,
        })
    }
}
