//! `rtp_source`: whose RTP a call accepts (the decisions are made in
//! `media::source`; the mode is configuration, so it lives here, below media).

/// Whose RTP (and RTCP, which arrives on the same socket) a call accepts
/// (`rtp_source` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RtpSource {
    /// Only from the signalling address or the SDP address (any port); the
    /// first accepted packet latches its address: later packets from the
    /// other one are dropped, and the first audio packet's address and port
    /// become where our RTP goes for good (until a re-INVITE's new SDP).
    #[default]
    Latch,
    /// Only from the signalling address or the SDP address (any port), both
    /// for the whole call; our RTP follows the latest accepted audio source.
    Address,
    /// From anyone, our RTP following the latest audio source, and no media
    /// consent (the behaviour before `rtp_source` existed): only for
    /// networks that rewrite media addresses in ways the other modes refuse.
    Any,
}

impl RtpSource {
    /// The configuration's spelling of each mode.
    pub const NAMES: [&'static str; 3] = ["latch", "address", "any"];

    /// The mode named `s` (`latch`, `address`, `any`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "latch" => Some(Self::Latch),
            "address" => Some(Self::Address),
            "any" => Some(Self::Any),
            _ => None,
        }
    }

    /// Whether this mode withholds full-rate RTP until the peer has sent
    /// some (media consent); `any` does not.
    pub fn needs_consent(self) -> bool {
        !matches!(self, Self::Any)
    }
}
