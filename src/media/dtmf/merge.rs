//! Cross-source de-duplication: one key press becomes exactly one digit even
//! when it arrives via RFC 4733, SIP INFO and in-band audio at once.
//!
//! Rules:
//! * An event duplicates an already delivered one if it has the same digit,
//!   comes from a *different* source and starts within `window` of it. Each
//!   delivered press can absorb at most one event per other source, so a
//!   fast double press seen by two sources still yields two digits.
//! * Events from the same source are never suppressed (the source already
//!   de-duplicates, e.g. RFC 4733 by timestamp).
//! * Once the call has shown RFC 4733 or INFO digits, an in-band detection
//!   within `window` of any signalled digit is dropped even if its digit
//!   differs: it is a talk-off or the audio copy of the relayed tone.
//!   In-band alone (no signalled digits) is delivered normally.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Digit, DigitEvent, DigitSource};

/// Default coincidence window, measured between press start times.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(250);
const MAX_REMEMBERED: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Press {
    digit: Digit,
    at: Instant,
    /// Bit per [`DigitSource`] that has reported this press.
    sources: u8,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    source: DigitSource,
    at: Instant,
}

fn bit(s: DigitSource) -> u8 {
    match s {
        DigitSource::Rfc4733 => 1,
        DigitSource::SipInfo => 2,
        DigitSource::Inband => 4,
        DigitSource::Script => 8,
    }
}

fn apart(a: Instant, b: Instant) -> Duration {
    if a > b {
        a - b
    } else {
        b - a
    }
}

/// Per-call digit de-duplicator (see module docs for the policy).
#[derive(Debug, Clone)]
pub struct DigitMerger {
    window: Duration,
    delivered: VecDeque<Press>,
    /// Every RFC 4733 / INFO event offered, delivered or not.
    signalled: VecDeque<Seen>,
}

impl Default for DigitMerger {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl DigitMerger {
    /// `window`: how far apart (press start to press start) two reports of
    /// the same digit from different sources may be and still count as one.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            delivered: VecDeque::new(),
            signalled: VecDeque::new(),
        }
    }

    /// True once any RFC 4733 or SIP INFO digit was seen on this call.
    pub fn has_signalled_digits(&self) -> bool {
        !self.signalled.is_empty()
    }

    /// Returns the event to deliver to the flow, or `None` if it is another
    /// copy of a press already delivered.
    pub fn offer(&mut self, ev: DigitEvent) -> Option<DigitEvent> {
        let window = self.window;
        let src = bit(ev.source);

        if ev.source == DigitSource::Inband
            && self.signalled.iter().any(|s| apart(s.at, ev.at) <= window)
        {
            return None;
        }
        if ev.source != DigitSource::Inband {
            // Keep one marker per signalled event for the in-band policy.
            self.signalled.push_back(Seen {
                source: ev.source,
                at: ev.at,
            });
            while self.signalled.len() > MAX_REMEMBERED {
                self.signalled.pop_front();
            }
        }

        if let Some(p) = self
            .delivered
            .iter_mut()
            .find(|p| p.digit == ev.digit && p.sources & src == 0 && apart(p.at, ev.at) <= window)
        {
            p.sources |= src;
            return None;
        }
        self.delivered.push_back(Press {
            digit: ev.digit,
            at: ev.at,
            sources: src,
        });
        while self.delivered.len() > MAX_REMEMBERED {
            self.delivered.pop_front();
        }
        Some(ev)
    }

    /// Which sources contributed to signalled markers (diagnostics).
    pub fn signalled_sources(&self) -> impl Iterator<Item = DigitSource> + '_ {
        self.signalled.iter().map(|s| s.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DigitSource::*;

    struct T {
        m: DigitMerger,
        t0: Instant,
        out: String,
    }

    impl T {
        fn new() -> Self {
            Self {
                m: DigitMerger::default(),
                t0: Instant::now(),
                out: String::new(),
            }
        }
        /// Offers `c` from `src` whose press started at `ms`; returns delivered?
        fn offer(&mut self, ms: u64, src: DigitSource, c: char) -> bool {
            let ev = DigitEvent {
                digit: Digit::from_char(c).unwrap(),
                source: src,
                at: self.t0 + Duration::from_millis(ms),
                duration_ms: None,
            };
            match self.m.offer(ev) {
                Some(d) => {
                    assert_eq!(d, ev);
                    self.out.push(c);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn one_press_three_sources_one_digit_any_order() {
        let orders = [
            [Rfc4733, Inband, SipInfo],
            [Inband, Rfc4733, SipInfo],
            [SipInfo, Inband, Rfc4733],
            [Inband, SipInfo, Rfc4733],
        ];
        for order in orders {
            let mut t = T::new();
            for (i, src) in order.into_iter().enumerate() {
                t.offer(1000 + 40 * i as u64, src, '5');
            }
            assert_eq!(t.out, "5", "{order:?}");
        }
    }

    #[test]
    fn same_source_never_suppressed() {
        let mut t = T::new();
        assert!(t.offer(0, Rfc4733, '1'));
        assert!(t.offer(100, Rfc4733, '1'));
        assert!(t.offer(5000, Inband, '2'));
        assert!(t.offer(5100, Inband, '2'));
        assert_eq!(t.out, "1122");
    }

    #[test]
    fn different_digits_are_not_suppressed() {
        let mut t = T::new();
        assert!(t.offer(0, SipInfo, '1'));
        assert!(t.offer(50, Rfc4733, '2'));
        assert_eq!(t.out, "12");
    }

    #[test]
    fn fast_double_press_seen_by_two_sources_is_two_digits() {
        let mut t = T::new();
        t.offer(0, Rfc4733, '7');
        t.offer(10, SipInfo, '7');
        t.offer(150, Rfc4733, '7');
        t.offer(170, SipInfo, '7');
        assert_eq!(t.out, "77");
    }

    #[test]
    fn window_boundary_and_configurable() {
        let mut t = T::new();
        t.offer(0, Rfc4733, '3');
        assert!(!t.offer(250, SipInfo, '3'), "inside default window");
        assert!(t.offer(600, SipInfo, '3'), "outside window: new press");

        let mut t = T::new();
        t.m = DigitMerger::new(Duration::from_millis(100));
        t.offer(0, Rfc4733, '3');
        assert!(t.offer(150, SipInfo, '3'));
    }

    #[test]
    fn late_signalled_event_with_earlier_start_is_matched() {
        let mut t = T::new();
        // In-band confirms first; RFC 4733 packet arrives later but its
        // start estimate is earlier than the in-band one.
        assert!(t.offer(1040, Inband, '9'));
        assert!(!t.offer(1000, Rfc4733, '9'));
        assert_eq!(t.out, "9");
    }

    #[test]
    fn inband_talk_off_dropped_once_signalled() {
        let mut t = T::new();
        assert!(!t.m.has_signalled_digits());
        // In-band only call so far: works alone.
        assert!(t.offer(0, Inband, '1'));
        assert!(t.offer(400, Inband, '2'));
        // Signalled digit appears; an in-band misdetection of another digit
        // during it is dropped, as is its in-band copy.
        assert!(t.offer(1000, Rfc4733, '4'));
        assert!(t.m.has_signalled_digits());
        assert!(!t.offer(1030, Inband, '4'));
        assert!(!t.offer(1100, Inband, '1'));
        // In-band far from any signalled digit is still delivered.
        assert!(t.offer(3000, Inband, '6'));
        assert_eq!(t.out, "1246");
        assert_eq!(t.m.signalled_sources().collect::<Vec<_>>(), vec![Rfc4733]);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = T::new();
        for i in 0..1000u64 {
            t.offer(i * 300, SipInfo, '0');
        }
        assert_eq!(t.out.len(), 1000);
        assert!(t.m.delivered.len() <= MAX_REMEMBERED);
        assert!(t.m.signalled.len() <= MAX_REMEMBERED);
    }
}
