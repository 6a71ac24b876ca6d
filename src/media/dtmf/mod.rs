//! Sans-IO DTMF cores: RFC 4733 telephone-event receiver, in-band Goertzel
//! detector, SIP INFO body parser and a cross-source merger.
//!
//! Why: every signalling path has its own failure modes (missing marker bits,
//! repeated end packets, the same press arriving in-band *and* out-of-band).
//! These modules turn each path into [`DigitEvent`]s and [`merge::DigitMerger`]
//! guarantees that one key press becomes exactly one digit.

use std::fmt;
use std::time::Instant;

pub mod inband;
pub mod info;
pub mod merge;
pub mod rfc4733;

/// A DTMF key: one of `0-9 * # A B C D` (always stored upper-case).
///
/// A newtype instead of a bare `char` so invalid keys cannot reach the IVR
/// flow logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digit(char);

/// RFC 4733 event codes 0..=15 in order.
const EVENT_CHARS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

impl Digit {
    /// Accepts `0-9 * # A-D` (and lower-case `a-d`); anything else is `None`.
    pub fn from_char(c: char) -> Option<Digit> {
        let c = c.to_ascii_uppercase();
        EVENT_CHARS.contains(&c).then_some(Digit(c))
    }

    /// Maps an RFC 4733 telephone-event code (0-9, 10 = `*`, 11 = `#`,
    /// 12-15 = `A-D`); codes above 15 (flash, tones) are not digits.
    pub fn from_event_code(code: u8) -> Option<Digit> {
        EVENT_CHARS.get(usize::from(code)).map(|&c| Digit(c))
    }

    /// The key as a character (`'0'..='9'`, `'*'`, `'#'`, `'A'..='D'`).
    pub fn as_char(self) -> char {
        self.0
    }

    /// The RFC 4733 event code of this key (0..=15).
    pub fn event_code(self) -> u8 {
        // The constructor guarantees membership; the fallback is unreachable.
        EVENT_CHARS.iter().position(|&c| c == self.0).unwrap_or(0) as u8
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a key press reached us: the merger uses it to tell duplicates of one
/// press apart from genuine repeated presses, and the flow reports it.
///
/// The one definition for every layer above (`crate::call` re-exports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    /// RTP telephone-event (RFC 4733 / RFC 2833).
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    SipInfo,
    /// Tones detected in the audio itself.
    Inband,
    /// Pressed by the scripted test caller (flow tests): no media involved.
    Script,
}

impl DigitSource {
    /// The name used in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::SipInfo => "sip_info",
            DigitSource::Inband => "inband",
            DigitSource::Script => "script",
        }
    }
}

/// One key press as reported by one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitEvent {
    /// The key pressed.
    pub digit: Digit,
    /// The method that carried this report.
    pub source: DigitSource,
    /// Best estimate of when the key press *started* (used for de-duplication).
    pub at: Instant,
    /// Duration if the source knew it when reporting (digits are reported as
    /// early as possible, so this is often `None`).
    pub duration_ms: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_from_char_and_code_roundtrip() {
        for code in 0u8..16 {
            let d = Digit::from_event_code(code).expect("valid code");
            assert_eq!(d.event_code(), code);
            assert_eq!(Digit::from_char(d.as_char()), Some(d));
        }
        assert_eq!(Digit::from_event_code(16), None);
        assert_eq!(Digit::from_event_code(255), None);
        assert_eq!(Digit::from_char('a').map(Digit::as_char), Some('A'));
        assert_eq!(Digit::from_event_code(10).map(Digit::as_char), Some('*'));
        assert_eq!(Digit::from_event_code(11).map(Digit::as_char), Some('#'));
        for bad in ['E', 'e', ' ', 'x', '+', '\u{0}', 'é'] {
            assert_eq!(Digit::from_char(bad), None, "{bad:?}");
        }
        assert_eq!(
            Digit::from_char('#').map(|d| d.to_string()),
            Some("#".into())
        );
    }
}
