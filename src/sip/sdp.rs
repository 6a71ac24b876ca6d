//! RFC 3264 offer/answer for voxgate's audio-only UAS.
//!
//! This module is pure: it takes the bytes of a remote SDP offer plus our
//! local media description and produces either the negotiated parameters
//! (including the full answer text) or an [`SdpError`] that already carries
//! the SIP status code and reason phrase to reject the INVITE with.
//!
//! Parsing is delegated to the `sdp` crate (webrtc-rs); everything above the
//! line grammar (codec choice, DTMF, direction, hold) is done here because the
//! crate's helpers are geared towards WebRTC/JSEP rather than plain SIP.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sdp::description::common::{Attribute, ConnectionInformation};
use sdp::description::media::MediaDescription;
use sdp::description::session::SessionDescription;

/// An 8 kHz mono audio encoding as SDP names it: its rtpmap name and its
/// static payload type (RFC 3551). SDP needs no more of a codec than this;
/// the media layer maps it to its own coder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// rtpmap encoding name (compared case-insensitively).
    pub name: &'static str,
    /// Static payload type (used when the offer has no rtpmap for it).
    pub static_pt: u8,
}

/// G.711 µ-law (RFC 3551, PT 0).
pub const PCMU: Encoding = Encoding {
    name: "PCMU",
    static_pt: 0,
};
/// G.711 A-law (RFC 3551, PT 8).
pub const PCMA: Encoding = Encoding {
    name: "PCMA",
    static_pt: 8,
};

/// Offers larger than this are rejected before parsing: a telephony offer is
/// well under 2 KiB, so anything this big is abuse or a broken peer.
pub const MAX_OFFER_LEN: usize = 16 * 1024;

/// Upper bound on the reason phrase detail, so a hostile offer cannot make us
/// emit an arbitrarily long SIP status line.
const MAX_REASON_DETAIL: usize = 160;

/// Packetisation we use when the offer says nothing usable.
const DEFAULT_PTIME_MS: u32 = 20;

/// telephone-event PT used by [`offer`] when the caller passes a PT outside
/// the dynamic range (101 is what most SIP stacks use).
const FALLBACK_DTMF_PT: u8 = 101;

/// Our side of the media session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address we receive RTP on (goes into `o=` and `c=`).
    pub ip: IpAddr,
    /// RTP port we receive on.
    pub port: u16,
    /// Codecs we can handle; the offerer's order decides which one wins.
    pub codecs: Vec<Encoding>,
    /// `o=` session id; keep it stable for the dialog.
    pub session_id: u64,
    /// `o=` version; bump it whenever our SDP changes (RFC 3264 8).
    pub session_version: u64,
}

/// Media direction attribute (RFC 3264 5.1 / 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Always from the point of view of the side that wrote the SDP.
pub enum Direction {
    /// Media both ways (the default when no attribute is given).
    SendRecv,
    /// The writer only sends (e.g. a caller putting us on hold with music).
    SendOnly,
    /// The writer only receives.
    RecvOnly,
    /// No media either way (hold).
    Inactive,
}

impl Direction {
    /// Attribute name as written in SDP (`a=<name>`).
    pub fn as_attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answerer must use for an offered direction
    /// (RFC 3264 6.1): the mirror image, so both sides agree who sends.
    pub fn answer_to(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// True if the side using this direction transmits RTP.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True if the side using this direction expects to receive RTP.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction that sends only if both do and receives only if both
    /// do (an answer held within what another leg agreed to).
    pub fn within(self, other: Direction) -> Direction {
        match (
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        ) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Same direction with sending removed; used when we have nowhere to
    /// send to (hold address, hostname) so the answer does not promise RTP.
    fn without_send(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            Direction::SendOnly | Direction::Inactive => Direction::Inactive,
        }
    }

    fn from_attr(key: &str) -> Option<Direction> {
        match key {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// Result of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Codec both directions use (one of `LocalMedia::codecs`).
    pub codec: Encoding,
    /// PT the offerer used for `codec` (may be dynamic); we echo it.
    pub codec_pt: u8,
    /// Every telephone-event/8000 PT in the offer, in offer order; RFC 4733
    /// packets arriving on any of them are accepted as DTMF.
    pub dtmf_pts: Vec<u8>,
    /// The telephone-event PT echoed in the answer (first in the offer);
    /// we send DTMF with this one.
    pub answer_dtmf_pt: Option<u8>,
    /// Packetisation to send with: the offer's `a=ptime` if it is 10..=60
    /// and a multiple of 10, otherwise 20.
    pub ptime_ms: u32,
    /// Direction the offerer declared for the accepted stream.
    pub remote_direction: Direction,
    /// Direction in our answer (RFC 3264 6.1 mirror, minus sending when
    /// `remote_rtp` is `None`).
    pub local_direction: Direction,
    /// Where to send RTP; `None` for `c=0.0.0.0`/`::`, port 0, or a
    /// hostname (we never resolve names); a multicast address is refused (488).
    pub remote_rtp: Option<SocketAddr>,
    /// Peer put us on hold (sendonly, inactive, unspecified address or
    /// disabled stream).
    pub on_hold: bool,
    /// Full SDP answer, CRLF line endings.
    pub answer: String,
}

/// Why an offer was rejected; maps onto the SIP final response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not SDP we can read: reject with 400.
    #[error("Bad SDP: {0}")]
    Bad(String),
    /// Well-formed, but nothing we can accept: reject with 488.
    #[error("Not Acceptable Here: {0}")]
    NotAcceptable(String),
}

impl SdpError {
    /// SIP status code to answer the INVITE with.
    pub fn status(&self) -> u16 {
        match self {
            SdpError::Bad(_) => 400,
            SdpError::NotAcceptable(_) => 488,
        }
    }

    fn bad(detail: impl std::fmt::Display) -> Self {
        SdpError::Bad(sanitize_reason(&detail.to_string()))
    }

    fn not_acceptable(detail: impl std::fmt::Display) -> Self {
        SdpError::NotAcceptable(sanitize_reason(&detail.to_string()))
    }
}

/// Keep the reason phrase safe for a SIP status line: the detail may echo
/// peer-supplied bytes, so strip anything that is not printable ASCII (CR/LF
/// would otherwise let a peer inject header lines) and cap the length.
fn sanitize_reason(detail: &str) -> String {
    let mut out: String = detail
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON_DETAIL)
        .collect();
    if detail.chars().count() > MAX_REASON_DETAIL {
        out.push_str("...");
    }
    out
}

/// What we learned about one offered format.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RtpMap {
    pt: u8,
    name: String,
    clock: u32,
    channels: Option<u32>,
}

/// Parse `a=rtpmap:<pt> <name>/<clock>[/<channels>]`; malformed ones are
/// ignored rather than failing the whole offer (robustness principle).
fn parse_rtpmap(value: &str) -> Option<RtpMap> {
    let mut fields = value.split_whitespace();
    let pt = fields.next()?.parse::<u8>().ok()?;
    let mut enc = fields.next()?.split('/');
    let name = enc.next()?.to_owned();
    let clock = enc.next()?.parse::<u32>().ok()?;
    let channels = match enc.next() {
        Some(c) => Some(c.parse::<u32>().ok()?),
        None => None,
    };
    Some(RtpMap {
        pt,
        name,
        clock,
        channels,
    })
}

fn rtpmaps(md: &MediaDescription) -> Vec<RtpMap> {
    md.attributes
        .iter()
        .filter(|a| a.key == "rtpmap")
        .filter_map(|a| a.value.as_deref().and_then(parse_rtpmap))
        .collect()
}

/// Offered payload types in m= order; non-numeric or out-of-range formats
/// are skipped (they cannot be RTP payload types).
fn offered_pts(md: &MediaDescription) -> Vec<u8> {
    md.media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| *pt <= 127)
        .collect()
}

/// Map a PT to one of our codecs: the rtpmap wins when present (a peer may
/// remap a static PT), otherwise the RFC 3551 static assignment applies.
fn codec_for(pt: u8, maps: &[RtpMap], ours: &[Encoding]) -> Option<Encoding> {
    match maps.iter().find(|m| m.pt == pt) {
        Some(m) => {
            let mono = matches!(m.channels, None | Some(1));
            if m.clock != 8000 || !mono {
                None
            } else {
                ours.iter()
                    .find(|e| m.name.eq_ignore_ascii_case(e.name))
                    .copied()
            }
        }
        None => ours.iter().find(|e| e.static_pt == pt).copied(),
    }
}

/// First codec in the offer's order that we also support.
fn pick_codec(md: &MediaDescription, local: &LocalMedia) -> Option<(Encoding, u8)> {
    let maps = rtpmaps(md);
    offered_pts(md)
        .into_iter()
        .find_map(|pt| codec_for(pt, &maps, &local.codecs).map(|c| (c, pt)))
}

/// All telephone-event/8000 PTs listed on the m= line, offer order, deduped.
fn dtmf_pts(md: &MediaDescription) -> Vec<u8> {
    let maps = rtpmaps(md);
    let mut out: Vec<u8> = Vec::new();
    for pt in offered_pts(md) {
        let is_dtmf = maps.iter().any(|m| {
            m.pt == pt && m.clock == 8000 && m.name.eq_ignore_ascii_case("telephone-event")
        });
        if is_dtmf && !out.contains(&pt) {
            out.push(pt);
        }
    }
    out
}

/// Plain RTP/AVP only: SAVP/AVPF etc. would require SRTP or feedback we do
/// not implement, and RFC 3264 forbids answering with a different proto.
fn is_rtp_avp(md: &MediaDescription) -> bool {
    matches!(md.media_name.protos.as_slice(), [a, b] if a == "RTP" && b == "AVP")
}

fn is_usable_audio(md: &MediaDescription) -> bool {
    md.media_name.media == "audio" && is_rtp_avp(md)
}

fn port_of(md: &MediaDescription) -> u16 {
    // The crate parsed the port as u16 before widening it to isize, so this
    // conversion only fails if the crate changes; treat that as "disabled".
    u16::try_from(md.media_name.port.value).unwrap_or(0)
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().find_map(|a| Direction::from_attr(&a.key))
}

fn ptime_of(attrs: &[Attribute]) -> Option<u32> {
    attrs
        .iter()
        .find(|a| a.key == "ptime")
        .and_then(|a| a.value.as_deref())
        .and_then(|v| v.trim().parse::<u32>().ok())
}

/// Remote IP from a c= line: `Ok(None)` for a hostname (or a multicast group
/// `addr/ttl` we will not use; `Err` if the line has no address at all.
fn connection_ip(conn: &ConnectionInformation) -> Result<Option<IpAddr>, SdpError> {
    let Some(addr) = conn.address.as_ref() else {
        return Err(SdpError::bad("c= line without address"));
    };
    let text = addr.address.as_str();
    let ip = match conn.address_type.as_str() {
        "IP4" => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        "IP6" => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    };
    Ok(ip)
}

/// Whether a c= address is a multicast group written with its TTL or count
/// (`224.2.1.1/127`, `ff15::101/3`), which does not parse as an address.
fn is_multicast_text(conn: &ConnectionInformation) -> bool {
    let Some(addr) = conn.address.as_ref() else {
        return false;
    };
    let host = addr.address.split('/').next().unwrap_or("");
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_multicast())
        || conn
            .address
            .as_ref()
            .is_some_and(|a| a.ttl.is_some() || a.range.is_some())
}

/// Human-readable summary of what was offered, for the 488 reason phrase and
/// logs, e.g. `audio RTP/AVP G729/8000 telephone-event/8000`.
fn describe_offer(desc: &SessionDescription) -> String {
    let mut parts: Vec<String> = Vec::new();
    for md in &desc.media_descriptions {
        let maps = rtpmaps(md);
        let mut s = format!("{} {}", md.media_name.media, md.media_name.protos.join("/"));
        for f in &md.media_name.formats {
            let named = f
                .parse::<u8>()
                .ok()
                .and_then(|pt| maps.iter().find(|m| m.pt == pt))
                .map(|m| format!("{}/{}", m.name, m.clock));
            let label = match (named, f.as_str()) {
                (Some(n), _) => n,
                (None, "0") => "PCMU".to_owned(),
                (None, "8") => "PCMA".to_owned(),
                (None, "3") => "GSM".to_owned(),
                (None, "9") => "G722".to_owned(),
                (None, "18") => "G729".to_owned(),
                (None, other) => format!("PT{other}"),
            };
            s.push(' ');
            s.push_str(&label);
        }
        parts.push(s);
    }
    parts.join(", ")
}

/// Fail early with a clear message for a non-zero `v=`; the crate would
/// only report "SdpInvalidSyntax: 1".
fn check_version(offer: &[u8]) -> Result<(), SdpError> {
    let first = offer
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty());
    if let Some(line) = first {
        if let Some(v) = line.strip_prefix(b"v=") {
            if v.trim_ascii() != b"0" {
                return Err(SdpError::bad(format!(
                    "unsupported version v={}",
                    String::from_utf8_lossy(v)
                )));
            }
        }
    }
    Ok(())
}

fn addr_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// v=/o=/s=/c=/t= block shared by offers and answers.
fn write_session_header(out: &mut String, local: &LocalMedia) {
    let at = addr_type(local.ip);
    // Writing into a String cannot fail, so the fmt::Result is ignored.
    let _ = write!(
        out,
        "v=0\r\no=voxgate {} {} IN {at} {ip}\r\ns=voxgate\r\nc=IN {at} {ip}\r\nt=0 0\r\n",
        local.session_id,
        local.session_version,
        ip = local.ip,
    );
}

/// Audio m= section advertising `codecs` (pt, name) and optional DTMF.
fn write_audio_section(
    out: &mut String,
    port: u16,
    codecs: &[(u8, &str)],
    dtmf_pt: Option<u8>,
    ptime_ms: u32,
    dir: Direction,
) {
    let _ = write!(out, "m=audio {port} RTP/AVP");
    for (pt, _) in codecs {
        let _ = write!(out, " {pt}");
    }
    if let Some(pt) = dtmf_pt {
        let _ = write!(out, " {pt}");
    }
    out.push_str("\r\n");
    for (pt, name) in codecs {
        let _ = write!(out, "a=rtpmap:{pt} {name}/8000\r\n");
    }
    if let Some(pt) = dtmf_pt {
        let _ = write!(
            out,
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
        );
    }
    let _ = write!(out, "a=ptime:{ptime_ms}\r\na={}\r\n", dir.as_attr());
}

/// m= line rejecting an offered stream (RFC 3264 6: same m= count, port 0).
/// Formats are echoed but filtered to printable tokens, since they come from
/// the peer; the RFC only requires at least one to be present.
fn write_rejected_section(out: &mut String, md: &MediaDescription) {
    let formats: Vec<&str> = md
        .media_name
        .formats
        .iter()
        .map(String::as_str)
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_graphic()))
        .collect();
    let formats = if formats.is_empty() {
        "0".to_owned()
    } else {
        formats.join(" ")
    };
    let _ = write!(
        out,
        "m={} 0 {} {formats}\r\n",
        md.media_name.media,
        md.media_name.protos.join("/")
    );
}

/// Answer a remote SDP offer (RFC 3264 section 6) as an audio-only UAS.
///
/// Accepts the first audio RTP/AVP stream with a codec we support (a stream
/// with a non-zero port is preferred over a disabled one); every other m=
/// line is answered with port 0. Errors carry the SIP status to reject with.
pub fn answer(offer: &[u8], local: &LocalMedia) -> Result<Negotiated, SdpError> {
    answer_within(offer, local, Direction::SendRecv)
}

/// [`answer`], our direction also held [`Direction::within`] `allowed`
/// (a B2BUA answering one leg's hold as the other leg answered it).
pub fn answer_within(
    offer: &[u8],
    local: &LocalMedia,
    allowed: Direction,
) -> Result<Negotiated, SdpError> {
    if offer.len() > MAX_OFFER_LEN {
        return Err(SdpError::bad(format!(
            "offer too large ({} bytes)",
            offer.len()
        )));
    }
    check_version(offer)?;
    let desc = SessionDescription::unmarshal(&mut Cursor::new(offer)).map_err(SdpError::bad)?;
    if desc.media_descriptions.is_empty() {
        return Err(SdpError::bad("no m= line"));
    }

    // Pick the stream: first usable audio stream that is not disabled,
    // else the first usable disabled one (answered with port 0, see below).
    let mut chosen: Option<(usize, Encoding, u8)> = None;
    for (idx, md) in desc.media_descriptions.iter().enumerate() {
        if !is_usable_audio(md) {
            continue;
        }
        if let Some((codec, pt)) = pick_codec(md, local) {
            let enabled = port_of(md) != 0;
            let have_disabled = chosen.is_some();
            if enabled || !have_disabled {
                chosen = Some((idx, codec, pt));
            }
            if enabled {
                break;
            }
        }
    }
    let Some((chosen_idx, codec, codec_pt)) = chosen else {
        let has_audio = desc
            .media_descriptions
            .iter()
            .any(|m| m.media_name.media == "audio");
        let what = if has_audio {
            "no common codec"
        } else {
            "no audio stream"
        };
        return Err(SdpError::not_acceptable(format!(
            "{what}; offered {}",
            describe_offer(&desc)
        )));
    };
    let Some(md) = desc.media_descriptions.get(chosen_idx) else {
        return Err(SdpError::bad("internal: chosen stream vanished"));
    };

    // Media-level c= overrides session-level (RFC 4566 5.7).
    let Some(conn) = md
        .connection_information
        .as_ref()
        .or(desc.connection_information.as_ref())
    else {
        return Err(SdpError::bad("no c= line for audio stream"));
    };
    let remote_ip = connection_ip(conn)?;
    // Multicast media (RFC 4566 c= with a group address) is not a phone
    // call, and answering it would send our RTP to a whole group.
    if remote_ip.is_some_and(|ip| ip.is_multicast()) || is_multicast_text(conn) {
        return Err(SdpError::not_acceptable("multicast connection address"));
    }
    let remote_port = port_of(md);
    let disabled = remote_port == 0;
    let unspecified = remote_ip.is_some_and(|ip| ip.is_unspecified());
    let remote_rtp = match remote_ip {
        Some(ip) if !disabled && !unspecified => Some(SocketAddr::new(ip, remote_port)),
        _ => None,
    };

    // Media-level direction overrides session-level (RFC 3264 5.1).
    let remote_direction = direction_of(&md.attributes)
        .or_else(|| direction_of(&desc.attributes))
        .unwrap_or(Direction::SendRecv);
    let mut local_direction = remote_direction.answer_to().within(allowed);
    if disabled {
        local_direction = Direction::Inactive;
    } else if remote_rtp.is_none() {
        local_direction = local_direction.without_send();
    }
    let on_hold = disabled
        || unspecified
        || matches!(remote_direction, Direction::SendOnly | Direction::Inactive);

    let ptime_ms = ptime_of(&md.attributes)
        .or_else(|| ptime_of(&desc.attributes))
        .filter(|p| (10..=60).contains(p) && p % 10 == 0)
        .unwrap_or(DEFAULT_PTIME_MS);

    let dtmf = dtmf_pts(md);
    let answer_dtmf_pt = dtmf.first().copied();

    let mut text = String::with_capacity(512);
    write_session_header(&mut text, local);
    for (idx, m) in desc.media_descriptions.iter().enumerate() {
        if idx == chosen_idx {
            let port = if disabled { 0 } else { local.port };
            write_audio_section(
                &mut text,
                port,
                &[(codec_pt, codec.name)],
                answer_dtmf_pt,
                ptime_ms,
                local_direction,
            );
        } else {
            write_rejected_section(&mut text, m);
        }
    }

    Ok(Negotiated {
        codec,
        codec_pt,
        dtmf_pts: dtmf,
        answer_dtmf_pt,
        ptime_ms,
        remote_direction,
        local_direction,
        remote_rtp,
        on_hold,
        answer: text,
    })
}

/// Build an SDP offer for an outbound leg: our codecs in preference order
/// (PCMU and PCMA if `local.codecs` is empty) plus telephone-event on
/// `dtmf_pt`. A `dtmf_pt` outside the dynamic range 96..=127 would collide
/// with static assignments, so it is replaced by 101.
pub fn offer(local: &LocalMedia, dtmf_pt: u8) -> String {
    offer_directed(local, dtmf_pt, Direction::SendRecv)
}

/// [`offer`] with this direction (a re-offer putting the peer on hold,
/// or taking it off).
pub fn offer_directed(local: &LocalMedia, dtmf_pt: u8, dir: Direction) -> String {
    let dtmf_pt = if (96..=127).contains(&dtmf_pt) {
        dtmf_pt
    } else {
        FALLBACK_DTMF_PT
    };
    let mut codecs: Vec<(u8, &str)> = Vec::new();
    let wanted: &[Encoding] = if local.codecs.is_empty() {
        &[PCMU, PCMA]
    } else {
        &local.codecs
    };
    for c in wanted {
        let entry = (c.static_pt, c.name);
        if !codecs.contains(&entry) {
            codecs.push(entry);
        }
    }
    let mut text = String::with_capacity(512);
    write_session_header(&mut text, local);
    write_audio_section(
        &mut text,
        local.port,
        &codecs,
        Some(dtmf_pt),
        DEFAULT_PTIME_MS,
        dir,
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            port: 30000,
            codecs: vec![PCMU, PCMA],
            session_id: 4242,
            session_version: 1,
        }
    }

    /// Turn a readable `\n` fixture into the CRLF form peers send.
    fn crlf(s: &str) -> Vec<u8> {
        s.lines()
            .map(|l| format!("{}\r\n", l.trim()))
            .collect::<String>()
            .into_bytes()
    }

    fn ok(offer: &str) -> Negotiated {
        match answer(&crlf(offer), &local()) {
            Ok(n) => n,
            Err(e) => panic!("offer rejected: {e} ({})", e.status()),
        }
    }

    fn err(offer: &[u8]) -> SdpError {
        match answer(offer, &local()) {
            Ok(n) => panic!("offer unexpectedly accepted:\n{}", n.answer),
            Err(e) => e,
        }
    }

    fn parse(text: &str) -> SessionDescription {
        match SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes())) {
            Ok(d) => d,
            Err(e) => panic!("sdp crate rejects our SDP: {e}\n{text}"),
        }
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("test literal"))
    }

    const SIPP: &str = "v=0
        o=user1 53655765 2353687637 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 6000 RTP/AVP 0 96 101
        a=rtpmap:0 PCMU/8000
        a=rtpmap:96 telephone-event/8000
        a=fmtp:96 0-15
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15";

    const ASTERISK: &str = "v=0
        o=- 1700000000 1700000000 IN IP4 192.0.2.10
        s=Asterisk
        c=IN IP4 192.0.2.10
        t=0 0
        m=audio 17094 RTP/AVP 8 0 3 101
        a=rtpmap:8 PCMA/8000
        a=rtpmap:0 PCMU/8000
        a=rtpmap:3 GSM/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-16
        a=ptime:20
        a=maxptime:140
        a=sendrecv";

    const BARESIP: &str = "v=0
        o=- 1813567512 2803406046 IN IP4 10.0.0.5
        s=-
        c=IN IP4 10.0.0.5
        t=0 0
        m=audio 10262 RTP/AVP 96 9 0 8 101 102
        b=AS:128
        a=rtpmap:96 opus/48000/2
        a=fmtp:96 stereo=1;sprop-stereo=1
        a=rtpmap:9 G722/8000
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15
        a=rtpmap:102 telephone-event/16000
        a=fmtp:102 0-15
        a=rtcp-rsize
        a=ptime:20
        a=sendrecv
        a=label:1
        a=ssrc:3340577373 cname:3aa1c7e3-8c1e-4e1e-9a7c-1dc2b5cb2a3e";

    #[test]
    fn late_offer_round_trip() {
        let l = local();
        let o = offer(&l, 101);
        assert!(o.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"), "{o}");
        assert!(
            o.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"),
            "{o}"
        );
        assert!(o.contains("a=sendrecv\r\n"), "{o}");
        // The caller picks PCMA and keeps telephone-event; reading its answer
        // gives the media parameters.
        let ans = "v=0\r\no=c 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let n = answer(ans.as_bytes(), &l).unwrap();
        assert_eq!(n.codec, PCMA);
        assert_eq!(n.dtmf_pts, vec![101]);
        assert_eq!(n.remote_rtp, Some("192.0.2.9:7000".parse().unwrap()));
        assert_eq!(n.local_direction, Direction::SendRecv);
    }

    #[test]
    fn sipp_offer_exact_answer() {
        let n = ok(SIPP);
        assert_eq!(n.codec, PCMU);
        assert_eq!(n.codec_pt, 0);
        assert_eq!(n.dtmf_pts, vec![96, 101]);
        assert_eq!(n.answer_dtmf_pt, Some(96));
        assert_eq!(n.ptime_ms, 20);
        assert_eq!(n.remote_direction, Direction::SendRecv);
        assert_eq!(n.local_direction, Direction::SendRecv);
        assert_eq!(n.remote_rtp, sa("127.0.0.1:6000"));
        assert!(!n.on_hold);
        assert_eq!(
            n.answer,
            "v=0\r\n\
             o=voxgate 4242 1 IN IP4 203.0.113.7\r\n\
             s=voxgate\r\n\
             c=IN IP4 203.0.113.7\r\n\
             t=0 0\r\n\
             m=audio 30000 RTP/AVP 0 96\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:96 telephone-event/8000\r\n\
             a=fmtp:96 0-16\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
    }

    #[test]
    fn asterisk_offer_uses_offerers_codec_order() {
        // We list PCMU first, but RFC 3264 lets the offerer's order decide.
        let n = ok(ASTERISK);
        assert_eq!(n.codec, PCMA);
        assert_eq!(n.codec_pt, 8);
        assert_eq!(n.dtmf_pts, vec![101]);
        assert_eq!(n.remote_rtp, sa("192.0.2.10:17094"));
        assert!(n.answer.contains("m=audio 30000 RTP/AVP 8 101\r\n"));
        assert!(n.answer.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(!n.answer.contains("GSM"));
    }

    #[test]
    fn baresip_offer_skips_opus_g722_and_wideband_dtmf() {
        let n = ok(BARESIP);
        assert_eq!(n.codec, PCMU);
        assert_eq!(n.codec_pt, 0);
        assert_eq!(
            n.dtmf_pts,
            vec![101],
            "telephone-event/16000 must be ignored"
        );
        assert_eq!(n.answer_dtmf_pt, Some(101));
        assert_eq!(n.remote_rtp, sa("10.0.0.5:10262"));
        assert!(n.answer.contains("m=audio 30000 RTP/AVP 0 101\r\n"));
        assert!(!n.answer.contains("102"));
    }

    #[test]
    fn local_codec_restriction_is_respected() {
        let mut l = local();
        l.codecs = vec![PCMA];
        let n = answer(&crlf(SIPP.replace(" 0 96", " 0 8 96").as_str()), &l).expect("pcma");
        assert_eq!(n.codec, PCMA);
        l.codecs.clear();
        assert_eq!(
            answer(&crlf(SIPP), &l).map(|_| ()).unwrap_err().status(),
            488
        );
    }

    #[test]
    fn pcma_only_without_dtmf() {
        let n = ok("v=0
            o=- 1 1 IN IP4 198.51.100.2
            s=-
            c=IN IP4 198.51.100.2
            t=0 0
            m=audio 4000 RTP/AVP 8");
        assert_eq!(n.codec, PCMA);
        assert_eq!(n.codec_pt, 8);
        assert!(n.dtmf_pts.is_empty());
        assert_eq!(n.answer_dtmf_pt, None);
        assert!(n.answer.contains("m=audio 30000 RTP/AVP 8\r\n"));
        assert!(!n.answer.contains("telephone-event"));
        assert!(!n.answer.contains("fmtp"));
    }

    #[test]
    fn dynamic_pt_pcmu_by_name_case_insensitive() {
        let n = ok("v=0
            o=- 1 1 IN IP4 198.51.100.2
            s=-
            c=IN IP4 198.51.100.2
            t=0 0
            m=audio 4000 RTP/AVP 97 101
            a=rtpmap:97 pcmu/8000/1
            a=rtpmap:101 Telephone-Event/8000");
        assert_eq!(n.codec, PCMU);
        assert_eq!(n.codec_pt, 97);
        assert_eq!(n.dtmf_pts, vec![101]);
        assert!(n.answer.contains("m=audio 30000 RTP/AVP 97 101\r\n"));
        assert!(n.answer.contains("a=rtpmap:97 PCMU/8000\r\n"));
    }

    #[test]
    fn rtpmap_overrides_static_pt_meaning() {
        // PT 0 remapped to something else must not be taken as PCMU.
        let e = err(&crlf(
            "v=0
            o=- 1 1 IN IP4 198.51.100.2
            s=-
            c=IN IP4 198.51.100.2
            t=0 0
            m=audio 4000 RTP/AVP 0
            a=rtpmap:0 G729/8000",
        ));
        assert_eq!(e.status(), 488);
        // Wrong clock or stereo PCMU is not our codec either.
        let e = err(&crlf(
            "v=0
            o=- 1 1 IN IP4 198.51.100.2
            s=-
            c=IN IP4 198.51.100.2
            t=0 0
            m=audio 4000 RTP/AVP 97 98
            a=rtpmap:97 PCMU/16000
            a=rtpmap:98 PCMA/8000/2",
        ));
        assert_eq!(e.status(), 488);
    }

    fn with_ptime(p: &str) -> u32 {
        ok(&format!("{ASTERISK}\na=ptime:{p}").replace("a=ptime:20\n", "")).ptime_ms
    }

    #[test]
    fn ptime_rules() {
        let n = ok(&ASTERISK.replace("a=ptime:20", "a=ptime:30"));
        assert_eq!(n.ptime_ms, 30);
        assert!(n.answer.contains("a=ptime:30\r\n"));
        assert_eq!(with_ptime("10"), 10);
        assert_eq!(with_ptime("60"), 60);
        for bad in ["25", "0", "5", "70", "abc", "-20", "20.5"] {
            assert_eq!(with_ptime(bad), 20, "ptime {bad}");
        }
        // No ptime at all -> 20.
        assert_eq!(ok(SIPP).ptime_ms, 20);
    }

    fn with_dir(dir: &str) -> Negotiated {
        ok(&ASTERISK.replace("a=sendrecv", dir))
    }

    #[test]
    fn direction_sendonly_is_hold() {
        let n = with_dir("a=sendonly");
        assert_eq!(n.remote_direction, Direction::SendOnly);
        assert_eq!(n.local_direction, Direction::RecvOnly);
        assert!(n.on_hold);
        assert_eq!(n.remote_rtp, sa("192.0.2.10:17094"));
        assert!(n.answer.ends_with("a=recvonly\r\n"));
    }

    #[test]
    fn direction_recvonly_is_not_hold() {
        let n = with_dir("a=recvonly");
        assert_eq!(n.local_direction, Direction::SendOnly);
        assert!(!n.on_hold);
        assert!(n.answer.ends_with("a=sendonly\r\n"));
    }

    #[test]
    fn direction_inactive() {
        let n = with_dir("a=inactive");
        assert_eq!(n.remote_direction, Direction::Inactive);
        assert_eq!(n.local_direction, Direction::Inactive);
        assert!(n.on_hold);
        assert!(n.answer.ends_with("a=inactive\r\n"));
    }

    #[test]
    fn session_level_direction_applies_unless_media_overrides() {
        let base = "v=0
            o=- 1 1 IN IP4 198.51.100.2
            s=-
            c=IN IP4 198.51.100.2
            t=0 0
            a=sendonly
            m=audio 4000 RTP/AVP 0";
        let n = ok(base);
        assert_eq!(n.remote_direction, Direction::SendOnly);
        assert!(n.on_hold);
        let n = ok(&format!("{base}\na=sendrecv"));
        assert_eq!(n.remote_direction, Direction::SendRecv);
        assert!(!n.on_hold);
    }

    #[test]
    fn rfc2543_hold_with_zero_address() {
        let n = ok(&ASTERISK.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0"));
        assert!(n.on_hold);
        assert_eq!(n.remote_rtp, None);
        assert_eq!(n.remote_direction, Direction::SendRecv);
        // Nowhere to send: we must not promise to.
        assert_eq!(n.local_direction, Direction::RecvOnly);
        assert!(n.answer.contains("m=audio 30000 "));
    }

    #[test]
    fn disabled_audio_stream_answers_port_zero() {
        let n = ok(&ASTERISK.replace("m=audio 17094", "m=audio 0"));
        assert!(n.on_hold);
        assert_eq!(n.remote_rtp, None);
        assert_eq!(n.local_direction, Direction::Inactive);
        assert!(n.answer.contains("m=audio 0 RTP/AVP 8 101\r\n"));
    }

    #[test]
    fn hostname_connection_is_not_resolved() {
        let n = ok(&ASTERISK.replace("c=IN IP4 192.0.2.10", "c=IN IP4 pbx.example.com"));
        assert_eq!(n.remote_rtp, None);
        assert!(!n.on_hold);
        assert_eq!(n.local_direction, Direction::RecvOnly);
    }

    #[test]
    fn media_level_connection_overrides_session_level() {
        let n = ok(&format!("{SIPP}\nc=IN IP4 192.0.2.99"));
        assert_eq!(n.remote_rtp, sa("192.0.2.99:6000"));
    }

    #[test]
    fn ipv6_offer_and_ipv6_local() {
        let offer = crlf(
            "v=0
            o=- 5 5 IN IP6 2001:db8::10
            s=-
            c=IN IP6 2001:db8::10
            t=0 0
            m=audio 5004 RTP/AVP 0 101
            a=rtpmap:101 telephone-event/8000",
        );
        let mut l = local();
        l.ip = "2001:db8::1".parse().expect("literal");
        let n = answer(&offer, &l).expect("ipv6 offer");
        assert_eq!(n.remote_rtp, sa("[2001:db8::10]:5004"));
        assert!(n.answer.contains("o=voxgate 4242 1 IN IP6 2001:db8::1\r\n"));
        assert!(n.answer.contains("c=IN IP6 2001:db8::1\r\n"));
        parse(&n.answer);
        // "::" is the IPv6 spelling of the hold address.
        let held = String::from_utf8_lossy(&offer).replace("c=IN IP6 2001:db8::10", "c=IN IP6 ::");
        let n = answer(held.as_bytes(), &l).expect("ipv6 hold");
        assert!(n.on_hold);
        assert_eq!(n.remote_rtp, None);
    }

    #[test]
    fn reinvite_changes_telephone_event_pt() {
        let first = ok(ASTERISK);
        assert_eq!(first.answer_dtmf_pt, Some(101));
        let re = ASTERISK
            .replace("1700000000 1700000000", "1700000000 1700000001")
            .replace(" 101\n", " 96\n")
            .replace("a=rtpmap:101 ", "a=rtpmap:96 ")
            .replace("a=fmtp:101 ", "a=fmtp:96 ");
        let mut l = local();
        l.session_version = 2;
        let second = answer(&crlf(&re), &l).expect("re-INVITE");
        assert_eq!(second.dtmf_pts, vec![96]);
        assert_eq!(second.answer_dtmf_pt, Some(96));
        assert!(second.answer.contains("m=audio 30000 RTP/AVP 8 96\r\n"));
        assert!(second.answer.contains("a=fmtp:96 0-16\r\n"));
        assert!(second.answer.contains("o=voxgate 4242 2 IN IP4"));
        assert!(!second.answer.contains("101"));
    }

    #[test]
    fn extra_streams_are_rejected_with_port_zero() {
        let offer = format!(
            "{ASTERISK}
            m=video 17096 RTP/AVP 96
            a=rtpmap:96 H264/90000
            m=audio 17098 RTP/AVP 0
            m=image 17100 udptl t38"
        );
        let n = ok(&offer);
        assert_eq!(n.remote_rtp, sa("192.0.2.10:17094"));
        let d = parse(&n.answer);
        let ports: Vec<(String, isize)> = d
            .media_descriptions
            .iter()
            .map(|m| (m.media_name.media.clone(), m.media_name.port.value))
            .collect();
        let want: Vec<(String, isize)> = vec![
            ("audio".into(), 30000),
            ("video".into(), 0),
            ("audio".into(), 0),
            ("image".into(), 0),
        ];
        assert_eq!(ports, want);
        assert!(n.answer.contains("m=video 0 RTP/AVP 96\r\n"));
        assert!(n.answer.contains("m=image 0 udptl t38\r\n"));
    }

    #[test]
    fn first_usable_audio_stream_wins_over_unusable_ones() {
        // An SRTP stream, then a disabled one, then a plain one.
        let n = ok("v=0
            o=- 1 1 IN IP4 198.51.100.2
            s=-
            c=IN IP4 198.51.100.2
            t=0 0
            m=audio 4000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
            m=audio 0 RTP/AVP 0
            m=audio 4002 RTP/AVP 8 0");
        assert_eq!(n.remote_rtp, sa("198.51.100.2:4002"));
        assert_eq!(n.codec, PCMA);
        let d = parse(&n.answer);
        let ports: Vec<isize> = d
            .media_descriptions
            .iter()
            .map(|m| m.media_name.port.value)
            .collect();
        assert_eq!(ports, vec![0, 0, 30000]);
        assert!(!n.answer.contains("crypto"));
    }

    #[test]
    fn not_acceptable_cases_are_488() {
        let cases = [
            (
                "G729 only",
                SIPP.replace("RTP/AVP 0 96 101", "RTP/AVP 18")
                    .replace("a=rtpmap:0 PCMU/8000", ""),
            ),
            ("SRTP", SIPP.replace("RTP/AVP", "RTP/SAVP")),
            ("AVPF", SIPP.replace("RTP/AVP", "RTP/AVPF")),
            (
                "video only",
                "v=0
                o=- 1 1 IN IP4 198.51.100.2
                s=-
                c=IN IP4 198.51.100.2
                t=0 0
                m=video 4000 RTP/AVP 96
                a=rtpmap:96 VP8/90000"
                    .to_owned(),
            ),
            (
                "dtmf only",
                SIPP.replace("RTP/AVP 0 96 101", "RTP/AVP 96 101"),
            ),
        ];
        for (name, offer) in cases {
            let e = err(&crlf(&offer));
            assert_eq!(e.status(), 488, "{name}: {e}");
            assert!(matches!(e, SdpError::NotAcceptable(_)), "{name}");
        }
        let e = err(&crlf(&cases_g729()));
        assert_eq!(
            e.to_string(),
            "Not Acceptable Here: no common codec; offered audio RTP/AVP G729 telephone-event/8000"
        );
        let e = err(&crlf(
            "v=0
            o=- 1 1 IN IP4 198.51.100.2
            s=-
            c=IN IP4 198.51.100.2
            t=0 0
            m=video 4000 RTP/AVP 96",
        ));
        assert!(
            e.to_string()
                .starts_with("Not Acceptable Here: no audio stream; offered video"),
            "{e}"
        );
    }

    fn cases_g729() -> String {
        "v=0
        o=- 1 1 IN IP4 198.51.100.2
        s=-
        c=IN IP4 198.51.100.2
        t=0 0
        m=audio 4000 RTP/AVP 18 101
        a=rtpmap:101 telephone-event/8000"
            .to_owned()
    }

    #[test]
    fn bad_sdp_cases_are_400() {
        let no_m =
            "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n";
        let no_c =
            "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("not sdp", b"hello world".to_vec()),
            ("version 1", SIPP.replace("v=0", "v=1").into_bytes()),
            ("no m=", no_m.as_bytes().to_vec()),
            ("no c=", no_c.as_bytes().to_vec()),
            (
                "c= without address",
                crlf(&SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4")),
            ),
            (
                "bad port",
                crlf(&SIPP.replace("m=audio 6000", "m=audio 70000")),
            ),
            (
                "bad o=",
                crlf(&SIPP.replace("o=user1 53655765", "o=user1 x")),
            ),
            ("too large", vec![b'a'; MAX_OFFER_LEN + 1]),
            (
                "invalid utf-8",
                [b"v=0\r\no=".as_slice(), &[0xff, 0xfe], b"\r\n"].concat(),
            ),
        ];
        for (name, offer) in cases {
            let e = err(&offer);
            assert_eq!(e.status(), 400, "{name}: {e}");
            assert!(e.to_string().starts_with("Bad SDP: "), "{name}: {e}");
        }
        assert_eq!(
            err(SIPP.replace("v=0", "v=1").as_bytes()).to_string(),
            "Bad SDP: unsupported version v=1"
        );
        assert_eq!(err(no_m.as_bytes()).to_string(), "Bad SDP: no m= line");
    }

    #[test]
    fn reason_phrase_is_sanitized_and_bounded() {
        let long = format!("v=0\r\n{}\r\n", "x\x01\r\n=".repeat(200));
        let e = err(long.as_bytes());
        let text = e.to_string();
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?}");
        let e = err(format!("v=9{}\r\n", "9".repeat(500)).as_bytes());
        assert!(e.to_string().len() <= "Bad SDP: ".len() + MAX_REASON_DETAIL + 3);
        assert!(e.to_string().ends_with("..."));
    }

    #[test]
    fn lf_only_line_endings_are_accepted() {
        let offer: String = SIPP.lines().map(|l| format!("{}\n", l.trim())).collect();
        let n = answer(offer.as_bytes(), &local()).expect("LF-only");
        assert_eq!(n.codec, PCMU);
    }

    #[test]
    fn answers_reparse_with_sdp_crate() {
        for offer in [SIPP, ASTERISK, BARESIP] {
            let n = ok(offer);
            assert!(n.answer.ends_with("\r\n"));
            assert!(
                !n.answer.replace("\r\n", "").contains('\n'),
                "bare LF in answer"
            );
            let d = parse(&n.answer);
            assert_eq!(d.origin.username, "voxgate");
            assert_eq!(d.origin.session_id, 4242);
            assert_eq!(d.media_descriptions.len(), 1);
            let m = &d.media_descriptions[0];
            assert_eq!(m.media_name.port.value, 30000);
            assert_eq!(
                m.media_name.protos,
                vec!["RTP".to_owned(), "AVP".to_owned()]
            );
            assert_eq!(m.media_name.formats[0], n.codec_pt.to_string());
            assert_eq!(m.attribute("ptime"), Some(Some("20")));
            assert!(m.has_attribute("sendrecv"));
            // Feeding our answer back as an offer must negotiate the same thing.
            let again = answer(n.answer.as_bytes(), &local()).expect("answer re-offered");
            assert_eq!(again.codec, n.codec);
            assert_eq!(again.answer_dtmf_pt, n.answer_dtmf_pt);
            assert_eq!(again.remote_rtp, sa("203.0.113.7:30000"));
        }
    }

    #[test]
    fn offer_round_trip() {
        let text = offer(&local(), 101);
        assert_eq!(
            text,
            "v=0\r\n\
             o=voxgate 4242 1 IN IP4 203.0.113.7\r\n\
             s=voxgate\r\n\
             c=IN IP4 203.0.113.7\r\n\
             t=0 0\r\n\
             m=audio 30000 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        parse(&text);
        let n = answer(text.as_bytes(), &local()).expect("own offer");
        assert_eq!(n.codec, PCMU);
        assert_eq!(n.dtmf_pts, vec![101]);
    }

    #[test]
    fn a_multicast_connection_address_is_refused_with_488() {
        for c in ["224.2.1.1", "224.2.1.1/127", "239.255.0.1/16/3"] {
            let o = format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            );
            let e = answer(o.as_bytes(), &local()).expect_err(c);
            assert_eq!(e.status(), 488, "{c}: {e}");
            assert!(e.to_string().contains("multicast"), "{e}");
        }
        let o = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ff15::101\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            answer(o.as_bytes(), &local()).map_err(|e| e.status()).err(),
            Some(488)
        );
    }

    #[test]
    fn offer_fixes_bad_dtmf_pt_and_empty_codecs() {
        let mut l = local();
        l.codecs = vec![PCMA, PCMA];
        let text = offer(&l, 8);
        assert!(text.contains("m=audio 30000 RTP/AVP 8 101\r\n"), "{text}");
        l.codecs.clear();
        let text = offer(&l, 96);
        assert!(text.contains("m=audio 30000 RTP/AVP 0 8 96\r\n"), "{text}");
    }

    /// xorshift64*: deterministic so a failing input is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            // n is small and non-zero at every call site.
            (self.next() % n as u64) as usize
        }
    }

    fn check_no_panic(input: &[u8]) {
        match answer(input, &local()) {
            Ok(n) => {
                parse(&n.answer);
            }
            Err(e) => {
                assert!(matches!(e.status(), 400 | 488));
                assert!(e.to_string().bytes().all(|b| (0x20..0x7f).contains(&b)));
            }
        }
    }

    #[test]
    fn never_panics_on_truncation_garbage_or_mutation() {
        let offers: Vec<Vec<u8>> = [SIPP, ASTERISK, BARESIP].iter().map(|o| crlf(o)).collect();
        let mut accepted_truncations = 0;
        for o in &offers {
            for cut in 0..=o.len() {
                check_no_panic(&o[..cut]);
                if answer(&o[..cut], &local()).is_ok() {
                    accepted_truncations += 1;
                }
            }
        }
        // Truncating after a complete m= line still yields a valid offer.
        assert!(accepted_truncations > 0);

        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let alphabet = b"v=0oscmtaIN P4 6RTP/AVP:\r\n0123456789.-/x";
        for _ in 0..10_000 {
            let len = rng.below(300);
            let raw: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
            check_no_panic(&raw);
            let sdpish: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            check_no_panic(&sdpish);
        }
        for _ in 0..10_000 {
            let mut o = offers[rng.below(offers.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(o.len());
                o[i] = match rng.below(3) {
                    0 => (rng.next() & 0xff) as u8,
                    1 => alphabet[rng.below(alphabet.len())],
                    _ => b'\n',
                };
            }
            check_no_panic(&o);
        }
    }
}
