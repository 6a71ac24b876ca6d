//! `transfer:` — where agents are, how voxgate reaches them, and what
//! context travels with a transferred call (headers, User-to-User, the
//! signed assertion). A flow names a target; the server decides where its
//! packets may go, so a value a flow renders can never send SIP elsewhere.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::parse_duration;

/// How a group's agents are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupOrder {
    /// Always from the first.
    Sequential,
    /// Each transfer starts at the agent after the one the last started at.
    RoundRobin,
}

/// A named list of agents (`transfer.groups.<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentGroup {
    /// `sip:` URIs, in order.
    pub targets: Vec<String>,
    /// Sequential (default) or round-robin.
    pub order: GroupOrder,
    /// How long one agent may ring (or a REFER take) before the next;
    /// `None`: the step's `timeout`.
    pub attempt_timeout: Option<Duration>,
}

/// Which context headers go to the agent, by their configured names;
/// `None` leaves one out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextHeaders {
    /// `passed`, `failed`, `locked`, `none` (`auth.result`).
    pub auth_result: Option<String>,
    /// The method of the last verification (`auth.method`).
    pub auth_method: Option<String>,
    /// Every verification tried, `method:outcome` comma-separated.
    pub methods: Option<String>,
    /// The account found by `lookup_caller` (`none` without one).
    pub account: Option<String>,
    /// How far the caller ID is trusted (`caller.trust`).
    pub trust: Option<String>,
    /// The route's brand (left out when the route has none).
    pub brand: Option<String>,
    /// voxgate's call id, to find the call's records.
    pub call_id: Option<String>,
}

impl Default for ContextHeaders {
    fn default() -> Self {
        let h = |s: &str| Some(s.to_string());
        ContextHeaders {
            auth_result: h("X-Auth-Result"),
            auth_method: h("X-Auth-Method"),
            methods: h("X-Auth-Methods"),
            account: h("X-Account-Id"),
            trust: h("X-Caller-Trust"),
            brand: h("X-Brand"),
            call_id: h("X-Voxgate-Call-Id"),
        }
    }
}

/// The RFC 7433 `User-to-User` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UuiConfig {
    /// The `purpose` parameter (default `isdn-uui`).
    pub purpose: String,
}

/// The signature algorithm of the assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    /// Ed25519 (JWS `EdDSA`), key derived from the server's secret key; the
    /// agent side verifies with `voxgate keys public`.
    EdDsa,
    /// HMAC-SHA-256 (`HS256`) with a shared secret from the environment.
    Hs256,
}

/// The signed, short-lived assertion (a JWT) for the agent desktop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionConfig {
    /// `EdDSA` (default) or `HS256`.
    pub algorithm: AssertionAlgorithm,
    /// The header that carries it (default `X-Voxgate-Assertion`).
    pub header: String,
    /// Lifetime, at most 60 s (default 30 s).
    pub ttl: Duration,
    /// `iss` (default `voxgate`).
    pub issuer: String,
    /// `aud`, if the agent side checks one.
    pub audience: Option<String>,
    /// For HS256: the environment variable holding the shared secret.
    pub secret_env: Option<String>,
}

/// The `transfer:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferConfig {
    /// Every agent INVITE goes to this address (the Request-URI stays the
    /// target); without it, the target URI's own IP address and port (never
    /// a name: voxgate makes no DNS lookups for targets).
    pub outbound_proxy: Option<SocketAddr>,
    /// A bridged call ends after this long (default 4 h).
    pub max_bridge: Duration,
    /// Agent groups a flow's `target` may name.
    pub groups: BTreeMap<String, AgentGroup>,
    /// Context headers (default names `X-Auth-Result` …).
    pub context: ContextHeaders,
    /// `User-to-User` with the result; `None`: not sent.
    pub uui: Option<UuiConfig>,
    /// The signed assertion; `None`: not sent (the default).
    pub assertion: Option<AssertionConfig>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            outbound_proxy: None,
            max_bridge: Duration::from_secs(4 * 3600),
            groups: BTreeMap::new(),
            context: ContextHeaders::default(),
            uui: Some(UuiConfig {
                purpose: "isdn-uui".into(),
            }),
            assertion: None,
        }
    }
}

/// Whether `name` can name a group in a flow (`target: agents`): the same
/// spelling the validator accepts for a bare target.
pub fn is_group_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Whether a header name is an RFC 3261 token (and so safe on the wire).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransfer {
    outbound_proxy: Option<String>,
    max_bridge: Option<String>,
    groups: Option<BTreeMap<String, RawGroup>>,
    context: Option<BTreeMap<String, Option<String>>>,
    uui: Option<RawUui>,
    assertion: Option<RawAssertion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    targets: Vec<String>,
    order: Option<String>,
    attempt_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawUui {
    On(bool),
    Full { purpose: Option<String> },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAssertion {
    algorithm: Option<String>,
    header: Option<String>,
    ttl: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    secret_env: Option<String>,
}

/// A target URI a group may list: `sip:`/`sips:` with an IP literal host
/// (no DNS for targets) — unless an outbound proxy routes everything (which
/// also allows `tel:`).
pub fn check_target(uri: &str, proxied: bool) -> Result<(), String> {
    let tel = uri.starts_with("tel:");
    if !(uri.starts_with("sip:") || uri.starts_with("sips:") || tel) {
        return Err(format!("`{uri}` is not a sip: URI"));
    }
    if tel && !proxied {
        return Err(format!(
            "`{uri}`: a tel: target needs transfer.outbound_proxy (a trunk that routes numbers)"
        ));
    }
    if uri
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'<' || b == b'>')
    {
        return Err(format!("`{uri}` has spaces or control characters"));
    }
    if !proxied && target_addr(uri).is_none() {
        return Err(format!(
            "`{uri}` must name an IP address and port (voxgate resolves no names for targets), or set transfer.outbound_proxy"
        ));
    }
    Ok(())
}

/// The socket address a `sip:user@1.2.3.4:5080;params` URI names (port 5060
/// when absent); `None` for a host name or anything unparsable.
pub fn target_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let rest = rest.split([';', '?']).next()?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Some(a);
    }
    // Without a port: a bare IPv4 or a bracketed IPv6.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5060))
}

impl RawTransfer {
    pub(super) fn into_config(self) -> Result<TransferConfig, String> {
        let mut c = TransferConfig::default();
        if let Some(p) = self.outbound_proxy {
            c.outbound_proxy = Some(p.parse().map_err(|_| {
                format!("transfer.outbound_proxy: `{p}` is not IP:PORT (e.g. 10.0.0.2:5060)")
            })?);
        }
        if let Some(m) = self.max_bridge {
            c.max_bridge = parse_duration(&m).map_err(|e| format!("transfer.max_bridge: {e}"))?;
            if c.max_bridge < Duration::from_secs(10) {
                return Err("transfer.max_bridge: under 10s would cut every bridged call".into());
            }
        }
        let proxied = c.outbound_proxy.is_some();
        for (name, g) in self.groups.unwrap_or_default() {
            if !is_group_name(&name) {
                return Err(format!(
                    "transfer.groups.{name}: a group name is lower-case letters, digits, _ and - (it is written bare as a flow's `target`)"
                ));
            }
            if g.targets.is_empty() {
                return Err(format!("transfer.groups.{name}: `targets` is empty"));
            }
            for t in &g.targets {
                check_target(t, proxied).map_err(|e| format!("transfer.groups.{name}: {e}"))?;
            }
            let order = match g.order.as_deref() {
                None | Some("sequential") => GroupOrder::Sequential,
                Some("round_robin") => GroupOrder::RoundRobin,
                Some(o) => {
                    return Err(format!(
                        "transfer.groups.{name}.order: `{o}` is not `sequential` or `round_robin`"
                    ))
                }
            };
            let attempt_timeout = match g.attempt_timeout {
                Some(t) => {
                    let d = parse_duration(&t)
                        .map_err(|e| format!("transfer.groups.{name}.attempt_timeout: {e}"))?;
                    if d < Duration::from_secs(1) || d > Duration::from_secs(120) {
                        return Err(format!(
                            "transfer.groups.{name}.attempt_timeout: {t} is outside 1s..120s"
                        ));
                    }
                    Some(d)
                }
                None => None,
            };
            c.groups.insert(
                name,
                AgentGroup {
                    targets: g.targets,
                    order,
                    attempt_timeout,
                },
            );
        }
        if let Some(ctx) = self.context {
            for (key, name) in ctx {
                if let Some(n) = &name {
                    if !is_header_name(n) {
                        return Err(format!(
                            "transfer.context.{key}: `{n}` is not a header name"
                        ));
                    }
                }
                let slot = match key.as_str() {
                    "auth_result" => &mut c.context.auth_result,
                    "auth_method" => &mut c.context.auth_method,
                    "methods" => &mut c.context.methods,
                    "account" => &mut c.context.account,
                    "trust" => &mut c.context.trust,
                    "brand" => &mut c.context.brand,
                    "call_id" => &mut c.context.call_id,
                    other => {
                        return Err(format!(
                            "transfer.context.{other}: unknown; the context headers are auth_result, auth_method, methods, account, trust, brand, call_id"
                        ))
                    }
                };
                *slot = name;
            }
        }
        match self.uui {
            None | Some(RawUui::On(true)) => {}
            Some(RawUui::On(false)) => c.uui = None,
            Some(RawUui::Full { purpose }) => {
                let purpose = purpose.unwrap_or_else(|| "isdn-uui".into());
                if !is_header_name(&purpose) {
                    return Err(format!("transfer.uui.purpose: `{purpose}` is not a token"));
                }
                c.uui = Some(UuiConfig { purpose });
            }
        }
        if let Some(a) = self.assertion {
            let algorithm = match a.algorithm.as_deref() {
                None | Some("EdDSA") | Some("eddsa") => AssertionAlgorithm::EdDsa,
                Some("HS256") | Some("hs256") => AssertionAlgorithm::Hs256,
                Some(o) => {
                    return Err(format!(
                        "transfer.assertion.algorithm: `{o}` is not EdDSA or HS256"
                    ))
                }
            };
            let ttl = match a.ttl {
                Some(t) => {
                    parse_duration(&t).map_err(|e| format!("transfer.assertion.ttl: {e}"))?
                }
                None => Duration::from_secs(30),
            };
            if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(60) {
                return Err(
                    "transfer.assertion.ttl: must be 1s..60s (a short-lived assertion)".into(),
                );
            }
            let header = a.header.unwrap_or_else(|| "X-Voxgate-Assertion".into());
            if !is_header_name(&header) {
                return Err(format!(
                    "transfer.assertion.header: `{header}` is not a header name"
                ));
            }
            if algorithm == AssertionAlgorithm::Hs256 && a.secret_env.is_none() {
                return Err("transfer.assertion: HS256 needs `secret_env`, the environment variable holding the shared secret".into());
            }
            c.assertion = Some(AssertionConfig {
                algorithm,
                header,
                ttl,
                issuer: a.issuer.unwrap_or_else(|| "voxgate".into()),
                audience: a.audience,
                secret_env: a.secret_env,
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_addresses() {
        assert_eq!(
            target_addr("sip:agents@127.0.0.1:5080"),
            Some("127.0.0.1:5080".parse().unwrap())
        );
        assert_eq!(
            target_addr("sip:10.0.0.5;transport=udp"),
            Some("10.0.0.5:5060".parse().unwrap())
        );
        assert_eq!(
            target_addr("sip:a@[::1]:5080"),
            Some("[::1]:5080".parse().unwrap())
        );
        assert_eq!(target_addr("sip:agents@pbx.example.com"), None);
        assert!(check_target("sip:agents@pbx.example.com", false).is_err());
        assert!(check_target("sip:agents@pbx.example.com", true).is_ok());
        assert!(check_target("tel:+1555", false).is_err());
        assert!(check_target("tel:+1555", true).is_ok());
        assert!(check_target("http://x", true).is_err());
    }

    #[test]
    fn group_names() {
        assert!(is_group_name("agents"));
        assert!(is_group_name("front_desk-2"));
        assert!(!is_group_name("Agents"));
        assert!(!is_group_name("sip:x"));
        assert!(!is_group_name(""));
    }
}
