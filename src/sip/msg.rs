//! Small helpers to read header values and write SIP messages as text.
//!
//! We write responses ourselves from the raw header values of the request
//! (RFC 3261 8.2.6.2 says copy Via, From, To, Call-ID and CSeq) so that what
//! we answer is byte-for-byte what the peer sent, even for requests our
//! parser found odd.

use std::fmt::Write as _;

use rsipstack::sip::{Headers, Request, Response};

use super::wire::ReplyContext;

/// Our Allow header value: the methods we accept, sent with OPTIONS, 405 and
/// 501 answers (RFC 3261 8.2.1, 11.2).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, NOTIFY";
/// Our Server (in responses) and User-Agent (in requests) header value.
pub const SERVER: &str = concat!("voxgate/", env!("CARGO_PKG_VERSION"));

/// All values of a header (canonical or compact name, case-insensitive).
pub fn header_values<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |h| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value())
}

/// The first value of a header (canonical or compact name, case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &'a str) -> Option<&'a str> {
    header_values(headers, name).next()
}

/// The first value of a request's header; see [`header`].
pub fn req_header<'a>(req: &'a Request, name: &'a str) -> Option<&'a str> {
    header(&req.headers, name)
}

/// The first value of a response's header; see [`header`].
pub fn resp_header<'a>(resp: &'a Response, name: &'a str) -> Option<&'a str> {
    header(&resp.headers, name)
}

/// The part of a header value after the name-addr (outside quotes and `<>`),
/// where header parameters such as `tag` live.
fn header_params_part(value: &str) -> &str {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    let bytes = value.as_bytes();
    let mut has_angle = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => {
                in_angle = true;
                has_angle = true;
            }
            b'>' if !in_quotes && in_angle => {
                return &value[i + 1..];
            }
            b';' if !in_quotes && !in_angle && !has_angle => return &value[i..],
            _ => {}
        }
    }
    ""
}

/// A header parameter (`tag`, `branch`, `rport`…), case-insensitive name.
/// `Some("")` for a parameter without value.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    header_params_part(value)
        .split(';')
        .skip(1)
        .map(str::trim)
        .find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().trim_matches('"'))
        })
}

/// Via params live after the sent-by; no name-addr there.
pub fn via_param<'a>(via: &'a str, name: &str) -> Option<&'a str> {
    via.split(';').skip(1).map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The URI inside a name-addr (`"A" <sip:a@b>;tag=1` → `sip:a@b`), or the addr-spec.
pub fn addr_uri(value: &str) -> &str {
    if let (Some(l), Some(r)) = (value.find('<'), value.rfind('>')) {
        if l < r {
            return value[l + 1..r].trim();
        }
    }
    value.split(';').next().unwrap_or("").trim()
}

/// User part of a SIP/tel URI (`sip:+1555@host` → `+1555`).
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':').map(|(_, r)| r)?;
    if uri.len() >= 4 && uri[..4].eq_ignore_ascii_case("tel:") {
        return Some(rest.split(';').next().unwrap_or(rest));
    }
    let at = rest.find('@')?;
    let user = &rest[..at];
    Some(
        user.split(';')
            .next()
            .unwrap_or(user)
            .split(':')
            .next()
            .unwrap_or(user),
    )
}

/// Reason phrases are ours or the parser's: keep them one printable line.
fn clean_reason(reason: &str) -> String {
    reason
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

/// Extra pieces of a response beyond the copied headers.
#[derive(Default)]
pub struct ResponseParts<'a> {
    /// Our dialog tag, added to To unless the request's To already has one.
    pub to_tag: Option<&'a str>,
    /// Top Via gets `received`/`rport` filled (RFC 3581) from this source.
    pub source: Option<std::net::SocketAddr>,
    /// Our Contact URI, written inside `<>`.
    pub contact: Option<&'a str>,
    /// Further headers (name, value), written in order, values verbatim.
    pub headers: Vec<(&'a str, String)>,
    /// Content-Type and body; `None` writes `Content-Length: 0`.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// A response to the request `ctx` was taken from: its Via, From, To,
/// Call-ID and CSeq copied verbatim (empty ones left out), our Server, and
/// `parts`; the top Via gets `received`/`rport` from `parts.source`. Any text
/// may be passed as `reason`: all but printable ASCII becomes `?`, and it is
/// cut to 200 characters.
pub fn build_response(
    ctx: &ReplyContext,
    status: u16,
    reason: &str,
    parts: &ResponseParts<'_>,
) -> Vec<u8> {
    let mut s = String::with_capacity(512);
    let _ = write!(s, "SIP/2.0 {} {}\r\n", status, clean_reason(reason));
    for (i, via) in ctx.vias.iter().enumerate() {
        if i == 0 {
            let _ = write!(s, "Via: {}\r\n", top_via_with_received(via, parts.source));
        } else {
            let _ = write!(s, "Via: {via}\r\n");
        }
    }
    // Broken requests may lack these; an empty header would be worse than none.
    if !ctx.from.is_empty() {
        let _ = write!(s, "From: {}\r\n", ctx.from);
    }
    match parts.to_tag {
        _ if ctx.to.is_empty() => {}
        Some(tag) if header_param(&ctx.to, "tag").is_none() => {
            let _ = write!(s, "To: {};tag={}\r\n", ctx.to, tag);
        }
        _ => {
            let _ = write!(s, "To: {}\r\n", ctx.to);
        }
    }
    if !ctx.call_id.is_empty() {
        let _ = write!(s, "Call-ID: {}\r\n", ctx.call_id);
    }
    let _ = write!(s, "CSeq: {}\r\n", ctx.cseq);
    if let Some(c) = parts.contact {
        let _ = write!(s, "Contact: <{c}>\r\n");
    }
    for (k, v) in &parts.headers {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    let _ = write!(s, "Server: {SERVER}\r\n");
    finish(s, parts.body)
}

/// RFC 3581: fill `rport` (when asked) and `received` with where the packet
/// really came from. We reply to that address anyway; this tells the peer.
fn top_via_with_received(via: &str, source: Option<std::net::SocketAddr>) -> String {
    let Some(src) = source else {
        return via.to_string();
    };
    let mut parts: Vec<String> = via.split(';').map(|p| p.to_string()).collect();
    let mut has_received = false;
    for p in parts.iter_mut().skip(1) {
        let key = p
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if key == "rport" {
            *p = format!("rport={}", src.port());
        } else if key == "received" {
            has_received = true;
        }
    }
    if !has_received {
        parts.push(format!("received={}", src.ip()));
    }
    parts.join(";")
}

/// A request we originate inside a dialog (BYE, REFER, NOTIFY).
/// Values are written verbatim: the caller passes well-formed header values.
pub struct RequestParts<'a> {
    /// The method name, also written into CSeq.
    pub method: &'a str,
    /// The dialog's remote target (the peer's Contact URI, RFC 3261 12.2.1.1).
    pub request_uri: &'a str,
    /// Via transport token: `UDP` or `TCP`.
    pub via_transport: &'a str,
    /// Our host:port as the peer reaches us.
    pub via_sent_by: &'a str,
    /// Via branch, starting with the `z9hG4bK` magic cookie (RFC 3261 8.1.1.7).
    pub branch: &'a str,
    /// From: our side of the dialog, with our tag.
    pub from: &'a str,
    /// To: the remote side, with its tag.
    pub to: &'a str,
    /// The dialog's Call-ID.
    pub call_id: &'a str,
    /// Our next local CSeq number.
    pub cseq: u32,
    /// Our Contact URI, written inside `<>`.
    pub contact: Option<&'a str>,
    /// The dialog's route set, one Route header each, in order.
    pub routes: &'a [String],
    /// Further headers (name, value), written in order.
    pub headers: Vec<(&'a str, String)>,
    /// Content-Type and body; `None` writes `Content-Length: 0`.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// The request as bytes: Via (with `rport`, RFC 3581), Max-Forwards 70,
/// Routes, From/To/Call-ID/CSeq, Contact, `headers`, User-Agent and body.
pub fn build_request(p: &RequestParts<'_>) -> Vec<u8> {
    let mut s = String::with_capacity(512);
    let _ = write!(s, "{} {} SIP/2.0\r\n", p.method, p.request_uri);
    let _ = write!(
        s,
        "Via: SIP/2.0/{} {};branch={};rport\r\n",
        p.via_transport, p.via_sent_by, p.branch
    );
    s.push_str("Max-Forwards: 70\r\n");
    for r in p.routes {
        let _ = write!(s, "Route: {r}\r\n");
    }
    let _ = write!(
        s,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
        p.from, p.to, p.call_id, p.cseq, p.method
    );
    if let Some(c) = p.contact {
        let _ = write!(s, "Contact: <{c}>\r\n");
    }
    for (k, v) in &p.headers {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    let _ = write!(s, "User-Agent: {SERVER}\r\n");
    finish(s, p.body)
}

/// Content headers, the blank line and the body.
fn finish(mut s: String, body: Option<(&str, &[u8])>) -> Vec<u8> {
    match body {
        Some((ctype, body)) => {
            let _ = write!(
                s,
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut out = s.into_bytes();
            out.extend_from_slice(body);
            out
        }
        None => {
            s.push_str("Content-Length: 0\r\n\r\n");
            s.into_bytes()
        }
    }
}

/// Random token for tags and branches.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_outside_angle_brackets_only() {
        assert_eq!(
            header_param("\"A;tag=x\" <sip:a@b;tag=y>;tag=z", "tag"),
            Some("z")
        );
        assert_eq!(header_param("<sip:a@b;tag=y>", "tag"), None);
        assert_eq!(header_param("sip:a@b;tag=q", "tag"), Some("q"));
        assert_eq!(header_param("sip:a@b", "tag"), None);
    }

    #[test]
    fn uri_and_user() {
        assert_eq!(
            addr_uri("\"Bob\" <sip:bob@h:5060;transport=tcp>;tag=1"),
            "sip:bob@h:5060;transport=tcp"
        );
        assert_eq!(uri_user("sip:bank@127.0.0.1"), Some("bank"));
        assert_eq!(
            uri_user("sip:+15551230001;phone-context=x@h"),
            Some("+15551230001")
        );
        assert_eq!(uri_user("sip:u:pw@h"), Some("u"));
        assert_eq!(uri_user("tel:+1555;x=y"), Some("+1555"));
        assert_eq!(uri_user("sip:host.only"), None);
    }

    #[test]
    fn response_copies_headers_and_adds_tag_and_received() {
        let ctx = ReplyContext {
            vias: vec![
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport".into(),
                "SIP/2.0/UDP p;branch=z9hG4bK0".into(),
            ],
            from: "<sip:a@x>;tag=f".into(),
            to: "<sip:bank@y>".into(),
            call_id: "c1".into(),
            cseq: "1 INVITE".into(),
        };
        let parts = ResponseParts {
            to_tag: Some("t9"),
            source: Some("127.0.0.1:4000".parse().unwrap()),
            ..Default::default()
        };
        let text = String::from_utf8(build_response(&ctx, 486, "Busy\r\nX: y", &parts)).unwrap();
        assert!(text.starts_with("SIP/2.0 486 Busy??X: y\r\n"), "{text}");
        assert!(text.contains(
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=4000;received=127.0.0.1\r\n"
        ));
        assert!(text.contains("Via: SIP/2.0/UDP p;branch=z9hG4bK0\r\n"));
        assert!(text.contains("To: <sip:bank@y>;tag=t9\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }
}
