//! `codes_voice:` — codes read out on an outbound call to the number on
//! file (landlines), through one configured trunk.
//!
//! ```yaml
//! codes_voice:
//!   trunk: 192.0.2.10:5060      # IP:port (or IP) of the trunk / outbound proxy;
//!                               # every INVITE, CANCEL, ACK and BYE goes there only
//!   from_user: "+16505550100"   # our From user (the caller id the callee sees)
//!   answer_timeout: 30s         # ringing longer is "no answer" (CANCEL)
//!   max_duration: 60s           # an answered call is hung up after this
//!   repeat: 2                   # the code is read this many times (1..3)
//!   per_destination: { hour: 3, day: 6 }   # outbound calls to one number
//!   same_code: true             # fallback to voice: the code that failed to go (false: a new one)
//! ```
//!
//! The trunk is an IP literal so no name is ever resolved (and nothing the
//! caller sent decides where a call goes): the number dialled is the one
//! the flow's `to` gives (the account's), the address is this one.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::codes::SendLimits;
use super::parse_duration;

/// The `codes_voice:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceConfig {
    /// The only address outbound code calls are sent to.
    pub trunk: SocketAddr,
    /// Our From user: a caller id (digits, `+`) or a name token.
    pub from_user: String,
    /// Ringing longer than this is "no answer": the call is cancelled.
    pub answer_timeout: Duration,
    /// An answered call is hung up after this, whatever plays.
    pub max_duration: Duration,
    /// How many times the code is read (1..3; default 2).
    pub repeat: u32,
    /// Outbound code calls to one number, per hour and per day.
    pub per_destination: SendLimits,
    /// A fallback to voice reads the code that failed to go (else a new one).
    pub same_code: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVoice {
    trunk: String,
    from_user: Option<String>,
    answer_timeout: Option<String>,
    max_duration: Option<String>,
    repeat: Option<u32>,
    per_destination: Option<RawLimits>,
    same_code: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    hour: Option<u32>,
    day: Option<u32>,
}

/// `IP:port` or a bare IP (port 5060); never a name (no DNS).
fn trunk_addr(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5060))
}

fn dur(v: Option<String>, dflt: u64, name: &str, min: u64, max: u64) -> Result<Duration, String> {
    let d = match v {
        Some(s) => parse_duration(&s).map_err(|e| format!("codes_voice.{name}: {e}"))?,
        None => Duration::from_secs(dflt),
    };
    if d < Duration::from_secs(min) || d > Duration::from_secs(max) {
        return Err(format!(
            "codes_voice.{name}: {} s is outside {min}..{max} s",
            d.as_secs()
        ));
    }
    Ok(d)
}

impl RawVoice {
    pub(super) fn into_config(self) -> Result<VoiceConfig, String> {
        let trunk = trunk_addr(&self.trunk).ok_or_else(|| {
            format!(
                "codes_voice.trunk: `{}` is not an IP address with an optional port (no host names: nothing is resolved)",
                self.trunk
            )
        })?;
        let from_user = self.from_user.unwrap_or_else(|| "voxgate".into());
        let token_ok = !from_user.is_empty()
            && from_user.len() <= 64
            && from_user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c));
        if !token_ok {
            return Err(format!(
                "codes_voice.from_user: `{from_user}` must be 1-64 letters, digits, `+`, `-`, `_` or `.`"
            ));
        }
        let repeat = self.repeat.unwrap_or(2);
        if !(1..=3).contains(&repeat) {
            return Err(format!("codes_voice.repeat: {repeat} is outside 1..3"));
        }
        let d = SendLimits { hour: 3, day: 6 };
        let per_destination = match self.per_destination {
            None => d,
            Some(r) => SendLimits {
                hour: r.hour.unwrap_or(d.hour),
                day: r.day.unwrap_or(d.day),
            },
        };
        if per_destination.hour == 0 || per_destination.day == 0 {
            return Err("codes_voice.per_destination: a limit of 0 would call no one".into());
        }
        if per_destination.hour > per_destination.day {
            return Err(format!(
                "codes_voice.per_destination: hour ({}) is above day ({})",
                per_destination.hour, per_destination.day
            ));
        }
        Ok(VoiceConfig {
            trunk,
            from_user,
            answer_timeout: dur(self.answer_timeout, 30, "answer_timeout", 5, 120)?,
            max_duration: dur(self.max_duration, 60, "max_duration", 10, 300)?,
            repeat,
            per_destination,
            same_code: self.same_code.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(y: &str) -> Result<VoiceConfig, String> {
        let raw: RawVoice = serde_saphyr::from_str(y).map_err(|e| e.to_string())?;
        raw.into_config()
    }

    #[test]
    fn defaults_and_limits() {
        let c = parse("trunk: 127.0.0.1").unwrap();
        assert_eq!(c.trunk, "127.0.0.1:5060".parse().unwrap());
        assert_eq!((c.repeat, c.same_code), (2, true));
        assert_eq!(c.answer_timeout, Duration::from_secs(30));
        assert_eq!(c.per_destination, SendLimits { hour: 3, day: 6 });
        let c = parse("{ trunk: '[::1]:5080', from_user: '+16505550100', answer_timeout: 10s, repeat: 3, per_destination: { hour: 1 } }").unwrap();
        assert_eq!(c.trunk, "[::1]:5080".parse().unwrap());
        assert_eq!(c.per_destination, SendLimits { hour: 1, day: 6 });
    }

    #[test]
    fn refuses_names_and_bad_values() {
        for (y, want) in [
            ("trunk: sip.example.com:5060", "no host names"),
            ("{ trunk: 127.0.0.1, repeat: 0 }", "repeat: 0"),
            ("{ trunk: 127.0.0.1, from_user: 'a b' }", "from_user"),
            ("{ trunk: 127.0.0.1, answer_timeout: 1s }", "answer_timeout"),
            (
                "{ trunk: 127.0.0.1, per_destination: { hour: 9, day: 2 } }",
                "above day",
            ),
            (
                "{ trunk: 127.0.0.1, per_destination: { day: 0 } }",
                "limit of 0",
            ),
        ] {
            let e = parse(y).unwrap_err();
            assert!(e.contains(want), "{y}: {e}");
        }
    }
}
