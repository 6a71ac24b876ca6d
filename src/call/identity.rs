//! Who is calling and how far to believe it: the caller ID from the From
//! header, a P-Asserted-Identity only from a trusted peer, and privacy.
//!
//! Anyone can write any From header, and anyone can add a
//! P-Asserted-Identity; only the carrier's own network (the trusted peers,
//! RFC 3325's "trust domain") may assert one. A PAI from elsewhere is
//! ignored (with a log line), never believed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tracing::info;

use crate::sip::msg;

/// What `caller` is when the caller withheld or has no number.
pub const ANONYMOUS: &str = "anonymous";

/// How far the caller's number can be believed (`caller.trust`; test specs
/// name it as `trust: pai_trusted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerTrust {
    /// A P-Asserted-Identity from a trusted peer: the network vouches for it.
    PaiTrusted,
    /// Only the From header: anyone can put anything there.
    FromHeader,
    /// Withheld (`Privacy: id`, `anonymous`…) or empty: no number at all.
    Anonymous,
}

impl CallerTrust {
    /// What flows read as `caller.trust` / `caller_trust`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerTrust::PaiTrusted => "pai_trusted",
            CallerTrust::FromHeader => "from_header",
            CallerTrust::Anonymous => "anonymous",
        }
    }

    /// Read back from [`as_str`](Self::as_str) (test specs name a trust).
    pub fn parse(s: &str) -> Option<CallerTrust> {
        [
            CallerTrust::PaiTrusted,
            CallerTrust::FromHeader,
            CallerTrust::Anonymous,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// The caller as decided for one INVITE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerId {
    /// The number or user (`anonymous` when withheld).
    pub caller: String,
    /// How far to believe it.
    pub trust: CallerTrust,
}

/// Decide the caller of an INVITE from `from_user` (the From URI's user),
/// its identity `headers` (lower-case names: `p-asserted-identity`,
/// `privacy`), the packet's `source` and the `trusted` peers.
pub fn identify(
    from_user: &str,
    headers: &BTreeMap<String, String>,
    source: IpAddr,
    trusted: &[ipnet::IpNet],
) -> CallerId {
    let anonymous = CallerId {
        caller: ANONYMOUS.to_string(),
        trust: CallerTrust::Anonymous,
    };
    let privacy_id = headers.get("privacy").is_some_and(|p| {
        p.split([';', ',']).any(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "id" | "user" | "header"
            )
        })
    });
    let source = canonical(source);
    let from_trusted = trusted.iter().any(|n| n.contains(&source));
    if let Some(pai) = headers.get("p-asserted-identity") {
        if from_trusted {
            // A trusted network may assert an identity and still ask us to
            // keep it private: then the flow gets no number.
            if privacy_id {
                return anonymous;
            }
            // Several identities (sip: and tel:) may be listed: the first with a user.
            if let Some(user) = pai.split(',').find_map(|v| pai_user(v.trim())) {
                if !is_withheld(&user) {
                    return CallerId {
                        caller: user,
                        trust: CallerTrust::PaiTrusted,
                    };
                }
                return anonymous;
            }
        } else {
            info!(%source, "P-Asserted-Identity from a peer not in trusted_peers; ignored");
        }
    }
    if privacy_id || is_withheld(from_user) {
        return anonymous;
    }
    CallerId {
        caller: from_user.to_string(),
        trust: CallerTrust::FromHeader,
    }
}

/// The user of a `sip:`/`sips:` or `tel:` identity.
fn pai_user(value: &str) -> Option<String> {
    let uri = msg::addr_uri(value);
    if let Some(tel) = uri.strip_prefix("tel:") {
        let number = tel.split(';').next().unwrap_or("");
        return (!number.is_empty()).then(|| number.to_string());
    }
    msg::uri_user(uri).map(str::to_string)
}

/// Withheld or missing caller IDs, as carriers write them.
fn is_withheld(user: &str) -> bool {
    let u = user.trim().to_ascii_lowercase();
    u.is_empty()
        || matches!(
            u.as_str(),
            "anonymous" | "unavailable" | "restricted" | "unknown" | "private" | "withheld"
        )
}

/// An IPv4 peer on a dual-stack socket shows up as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn nets() -> Vec<ipnet::IpNet> {
        vec![
            "127.0.0.2/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn from_header_by_default() {
        let id = identify("+15551230001", &h(&[]), ip("127.0.0.1"), &nets());
        assert_eq!(id.caller, "+15551230001");
        assert_eq!(id.trust, CallerTrust::FromHeader);
    }

    #[test]
    fn pai_believed_only_from_trusted_peers() {
        let pai = h(&[(
            "p-asserted-identity",
            "\"Ada\" <sip:+15551230002@carrier.example>",
        )]);
        let t = identify("+15551230001", &pai, ip("127.0.0.2"), &nets());
        assert_eq!(
            (t.caller.as_str(), t.trust),
            ("+15551230002", CallerTrust::PaiTrusted)
        );
        let t = identify("+15551230001", &pai, ip("::ffff:10.1.2.3"), &nets());
        assert_eq!(t.trust, CallerTrust::PaiTrusted);
        let u = identify("+15551230001", &pai, ip("127.0.0.1"), &nets());
        assert_eq!(
            (u.caller.as_str(), u.trust),
            ("+15551230001", CallerTrust::FromHeader)
        );
        let none = identify("+15551230001", &pai, ip("127.0.0.2"), &[]);
        assert_eq!(none.trust, CallerTrust::FromHeader);
        let tel = h(&[(
            "p-asserted-identity",
            "<tel:+15551230003;cpc=ordinary>, <sip:x@y>",
        )]);
        assert_eq!(
            identify("a", &tel, ip("127.0.0.2"), &nets()).caller,
            "+15551230003"
        );
    }

    #[test]
    fn privacy_and_withheld_numbers_are_anonymous() {
        for (from, hs) in [
            ("anonymous", h(&[])),
            ("", h(&[])),
            ("Restricted", h(&[])),
            ("unavailable", h(&[])),
            ("+15551230001", h(&[("privacy", "id")])),
            ("+15551230001", h(&[("privacy", "user; critical")])),
        ] {
            let id = identify(from, &hs, ip("127.0.0.1"), &nets());
            assert_eq!(
                (id.caller.as_str(), id.trust),
                (ANONYMOUS, CallerTrust::Anonymous),
                "{from} {hs:?}"
            );
        }
        let hidden = h(&[
            ("p-asserted-identity", "<sip:+15551230002@c>"),
            ("privacy", "id"),
        ]);
        assert_eq!(
            identify("x", &hidden, ip("127.0.0.2"), &nets()).trust,
            CallerTrust::Anonymous
        );
        // Privacy: none hides nothing.
        let shown = identify(
            "+15551230001",
            &h(&[("privacy", "none")]),
            ip("127.0.0.1"),
            &nets(),
        );
        assert_eq!(shown.trust, CallerTrust::FromHeader);
        assert_eq!(
            CallerTrust::parse("pai_trusted"),
            Some(CallerTrust::PaiTrusted)
        );
    }
}
