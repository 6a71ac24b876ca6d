//! Which datagrams a call's RTP socket takes, and where its RTP may go.
//!
//! Sans-IO like the rest of the media core: [`SourceGuard`] is told the
//! call's addresses (the one that signalled the call and the one its SDP
//! names) and judges each datagram's source before anything is parsed or
//! decoded; [`MediaCore`](super::core::MediaCore) asks it where to send.
//!
//! The threat: anyone who can reach the RTP port range can spray RFC 4733
//! events (key presses in a stranger's call) or audio (which, with naive
//! symmetric RTP, moves where the call's audio goes). The modes
//! ([`RtpSource`]) trade robustness against that for tolerance of odd
//! networks; `latch` is the default.
//!
//! Ports are never checked against the SDP: sipp, SBCs and NATs send from
//! other ports than the ones they announce (sipp's pcap playback even from
//! the capture's port).

use std::net::{IpAddr, SocketAddr};

pub use crate::config::rtp_source::RtpSource;

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// From the peer: parse and use it.
    Accept,
    /// From someone else: drop it unread (counted).
    Drop,
}

/// The source decisions of one call leg; see the module docs.
#[derive(Clone, Debug)]
pub struct SourceGuard {
    mode: RtpSource,
    /// The address the call was signalled from, if known.
    signalled: Option<IpAddr>,
    /// The SDP's connection address, if any.
    sdp: Option<IpAddr>,
    /// `latch`: the address of the first accepted packet.
    latched_ip: Option<IpAddr>,
    /// `latch`: where the first accepted audio came from (our RTP goes there).
    latched_to: Option<SocketAddr>,
    /// Datagrams refused so far.
    dropped: u64,
    /// RTP accepted from the peer at least once.
    heard: bool,
}

/// IPv4-mapped IPv6 sources (a dual-stack socket) compare as IPv4.
fn canon(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl SourceGuard {
    /// A guard for a call signalled from `signalled` whose SDP names `sdp`.
    pub fn new(mode: RtpSource, signalled: Option<IpAddr>, sdp: Option<IpAddr>) -> Self {
        Self {
            mode,
            signalled: signalled.map(canon),
            sdp: sdp.map(canon),
            latched_ip: None,
            latched_to: None,
            dropped: 0,
            heard: false,
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> RtpSource {
        self.mode
    }

    /// A new SDP address or port (re-INVITE, or the late offer's answer in
    /// the ACK): the allowed addresses are the signalling one and the new
    /// SDP's, and the latch is released so the media may move; consent
    /// already given stays.
    pub fn rearm(&mut self, sdp: Option<IpAddr>) {
        self.sdp = sdp.map(canon);
        self.latched_ip = None;
        self.latched_to = None;
    }

    /// Whether `ip` is one of the call's addresses.
    fn allowed(&self, ip: IpAddr) -> bool {
        Some(ip) == self.signalled || Some(ip) == self.sdp
    }

    /// Judge a datagram from `from` before anything of it is read: counts
    /// drops; in `latch` mode the first accepted address is latched.
    pub fn judge(&mut self, from: SocketAddr) -> Verdict {
        let ip = canon(from.ip());
        let ok = match self.mode {
            RtpSource::Any => true,
            RtpSource::Address => self.allowed(ip),
            RtpSource::Latch => match self.latched_ip {
                Some(l) => l == ip,
                None => self.allowed(ip),
            },
        };
        if !ok {
            self.dropped += 1;
            return Verdict::Drop;
        }
        if self.mode == RtpSource::Latch {
            self.latched_ip.get_or_insert(ip);
        }
        Verdict::Accept
    }

    /// An accepted audio packet of the call's codec came from `from`: where
    /// our RTP goes now, given the current destination `current` (symmetric
    /// RTP; in `latch` mode the first audio source, for good).
    pub fn audio_from(
        &mut self,
        current: Option<SocketAddr>,
        from: SocketAddr,
    ) -> Option<SocketAddr> {
        match self.mode {
            RtpSource::Latch => Some(*self.latched_to.get_or_insert(from)),
            RtpSource::Address | RtpSource::Any => Some(from),
        }
        .or(current)
    }

    /// Datagrams dropped as coming from someone else.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// An accepted datagram turned out to be RTP: the peer consents to
    /// media (RFC 7675's reasoning: it sends, so it wants it).
    pub fn consent(&mut self) {
        self.heard = true;
    }

    /// Whether the peer has sent RTP we accepted (media consent).
    pub fn heard(&self) -> bool {
        self.heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn latch_takes_the_first_of_the_call_addresses_on_any_port_and_keeps_it() {
        let mut g = SourceGuard::new(RtpSource::Latch, ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(g.judge(sa("10.0.0.9:4000")), Verdict::Drop);
        assert!(!g.heard(), "a stranger gives no consent");
        // The SDP address, from another port than announced: accepted, latched.
        assert_eq!(g.judge(sa("10.0.0.2:5555")), Verdict::Accept);
        g.consent();
        assert!(g.heard());
        assert_eq!(
            g.audio_from(Some(sa("10.0.0.2:4000")), sa("10.0.0.2:5555")),
            Some(sa("10.0.0.2:5555"))
        );
        // Same address, other port (a DTMF player): accepted, does not move.
        assert_eq!(g.judge(sa("10.0.0.2:7777")), Verdict::Accept);
        assert_eq!(
            g.audio_from(Some(sa("10.0.0.2:5555")), sa("10.0.0.2:7777")),
            Some(sa("10.0.0.2:5555"))
        );
        // The signalling address is refused once the SDP one is latched.
        assert_eq!(g.judge(sa("10.0.0.1:4000")), Verdict::Drop);
        assert_eq!(g.judge(sa("10.0.0.9:4000")), Verdict::Drop);
        assert_eq!(g.dropped(), 3);
    }

    #[test]
    fn latch_waits_for_audio_to_choose_the_destination_and_a_new_sdp_releases_it() {
        let mut g = SourceGuard::new(RtpSource::Latch, ip("10.0.0.1"), ip("10.0.0.1"));
        // A telephone-event first (pcap playback from port 0): accepted,
        // and (not being audio) it does not choose the destination.
        assert_eq!(g.judge(sa("10.0.0.1:0")), Verdict::Accept);
        assert_eq!(
            g.audio_from(None, sa("10.0.0.1:4000")),
            Some(sa("10.0.0.1:4000"))
        );
        assert_eq!(g.judge(sa("10.0.0.3:6000")), Verdict::Drop);
        g.rearm(ip("10.0.0.3"));
        assert_eq!(g.judge(sa("10.0.0.3:6000")), Verdict::Accept);
        assert_eq!(
            g.audio_from(Some(sa("10.0.0.1:4000")), sa("10.0.0.3:6000")),
            Some(sa("10.0.0.3:6000"))
        );
    }

    #[test]
    fn a_new_sdp_port_on_the_same_address_releases_the_latched_destination() {
        let mut g = SourceGuard::new(RtpSource::Latch, ip("10.0.0.1"), ip("10.0.0.1"));
        assert_eq!(g.judge(sa("10.0.0.1:4000")), Verdict::Accept);
        assert_eq!(
            g.audio_from(None, sa("10.0.0.1:4000")),
            Some(sa("10.0.0.1:4000"))
        );
        g.rearm(ip("10.0.0.1"));
        assert_eq!(g.judge(sa("10.0.0.1:5000")), Verdict::Accept);
        assert_eq!(
            g.audio_from(None, sa("10.0.0.1:5000")),
            Some(sa("10.0.0.1:5000"))
        );
    }

    #[test]
    fn address_accepts_both_call_addresses_all_call_and_any_accepts_everyone() {
        let mut g = SourceGuard::new(RtpSource::Address, ip("10.0.0.1"), ip("10.0.0.2"));
        assert_eq!(g.judge(sa("10.0.0.2:1")), Verdict::Accept);
        assert_eq!(g.judge(sa("10.0.0.1:2")), Verdict::Accept);
        assert_eq!(
            g.audio_from(Some(sa("10.0.0.2:1")), sa("10.0.0.1:2")),
            Some(sa("10.0.0.1:2"))
        );
        assert_eq!(g.judge(sa("10.0.0.3:2")), Verdict::Drop);
        assert_eq!(g.dropped(), 1);

        let mut g = SourceGuard::new(RtpSource::Any, ip("10.0.0.1"), None);
        assert_eq!(g.judge(sa("192.0.2.1:9")), Verdict::Accept);
        assert_eq!(g.dropped(), 0);
    }

    #[test]
    fn mapped_ipv6_sources_match_their_ipv4_address() {
        let mut g = SourceGuard::new(RtpSource::Latch, ip("127.0.0.1"), None);
        assert_eq!(g.judge(sa("[::ffff:127.0.0.1]:9")), Verdict::Accept);
    }

    #[test]
    fn modes_parse_from_their_names() {
        for n in RtpSource::NAMES {
            assert!(RtpSource::parse(n).is_some(), "{n}");
        }
        assert_eq!(RtpSource::parse("strict"), None);
        assert!(!RtpSource::Any.needs_consent());
        assert!(RtpSource::Latch.needs_consent());
    }
}
