//! `console:`: the operator console (docs/console.md). Absent or
//! `enabled: false`: no console.
//!
//! ```yaml
//! console:
//!   enabled: true
//!   listen: 127.0.0.1:8090     # loopback by default: put a TLS proxy in front to reach it
//!   session_ttl: 8h            # a login lasts this long
//!   login_attempts: 5          # failed logins per minute, per client address and per name
//!   secure_cookie: false       # true: the cookie is sent over HTTPS only (behind a TLS proxy)
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{self, Dialect};

/// The console's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Serve it (default true when the section is present).
    pub enabled: bool,
    /// Where it binds (default 127.0.0.1:8090).
    pub listen: SocketAddr,
    /// How long a login lasts (default 8 h).
    pub session_ttl: Duration,
    /// Failed logins allowed per minute per client address and per name
    /// (default 5); more are refused with 429 until the minute passes.
    pub login_attempts: u32,
    /// Mark the session cookie `Secure` (HTTPS only).
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            session_ttl: Duration::from_secs(8 * 3600),
            login_attempts: 5,
            secure_cookie: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    enabled: Option<bool>,
    listen: Option<String>,
    session_ttl: Option<String>,
    login_attempts: Option<u32>,
    secure_cookie: Option<bool>,
}

impl RawConsole {
    /// Check and convert; errors start with `console.`.
    pub(super) fn into_config(self) -> Result<ConsoleConfig, String> {
        let d = ConsoleConfig::default();
        let listen = match self.listen {
            None => d.listen,
            Some(l) => l.parse().map_err(|_| {
                format!("console.listen: `{l}` is not ADDR:PORT (e.g. 127.0.0.1:8090)")
            })?,
        };
        let session_ttl = match self.session_ttl {
            None => d.session_ttl,
            Some(s) => duration::parse(&s, Dialect::Lenient)
                .map_err(|e| format!("console.session_ttl: {e}"))?,
        };
        if session_ttl < Duration::from_secs(1) || session_ttl > Duration::from_secs(30 * 86_400) {
            return Err("console.session_ttl: give 1s to 30 days".into());
        }
        let login_attempts = self.login_attempts.unwrap_or(d.login_attempts);
        if !(1..=1000).contains(&login_attempts) {
            return Err(format!(
                "console.login_attempts: {login_attempts} is outside 1..1000"
            ));
        }
        Ok(ConsoleConfig {
            enabled: self.enabled.unwrap_or(true),
            listen,
            session_ttl,
            login_attempts,
            secure_cookie: self.secure_cookie.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(y: &str) -> Result<ConsoleConfig, String> {
        let r: RawConsole = serde_saphyr::from_str(y).map_err(|e| e.to_string())?;
        r.into_config()
    }

    #[test]
    fn defaults_bind_loopback_and_bounds_are_checked() {
        let c = raw("enabled: true\n").unwrap();
        assert_eq!(c, ConsoleConfig::default());
        let c = raw("listen: 0.0.0.0:9000\nsession_ttl: 30m\nlogin_attempts: 3\n").unwrap();
        assert_eq!(c.session_ttl, Duration::from_secs(1800));
        assert_eq!(c.listen.port(), 9000);
        assert!(raw("listen: nowhere\n")
            .unwrap_err()
            .contains("console.listen"));
        assert!(raw("session_ttl: 90d\n")
            .unwrap_err()
            .contains("session_ttl"));
        assert!(raw("login_attempts: 0\n")
            .unwrap_err()
            .contains("login_attempts"));
        assert!(raw("colour: red\n").is_err());
    }
}
