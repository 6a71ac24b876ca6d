//! `http:`: voxgate's own HTTP endpoint (SMS delivery receipts; metrics and
//! the operator console next). Absent: no HTTP server.
//!
//! ```yaml
//! http:
//!   listen: 127.0.0.1:8089               # where the server binds
//!   public_url: https://ivr.example.com  # how gateways reach it (through a proxy)
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

/// The HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address and port to bind.
    pub listen: SocketAddr,
    /// The URL the outside world reaches the server by, without a trailing
    /// `/`: callbacks are requested at, and signatures checked against,
    /// `{public_url}{path}`.
    pub public_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: String,
    public_url: String,
}

impl RawHttp {
    /// Check and convert; errors start with `http.`.
    pub(super) fn into_config(self) -> Result<HttpConfig, String> {
        let listen = self.listen.parse().map_err(|_| {
            format!(
                "http.listen: `{}` is not ADDR:PORT (e.g. 127.0.0.1:8089)",
                self.listen
            )
        })?;
        let u = self.public_url.trim_end_matches('/');
        let rest = u
            .strip_prefix("https://")
            .or_else(|| u.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(['?', '#', ' '])) {
            return Err(format!(
                "http.public_url: `{}` is not an http:// or https:// URL without query (e.g. https://ivr.example.com)",
                self.public_url
            ));
        }
        Ok(HttpConfig {
            listen,
            public_url: u.to_string(),
        })
    }
}
