//! RFC 4733 (ex RFC 2833) telephone-event receiver.
//!
//! Why this exists: real senders omit the marker bit, send long events as a
//! stream of growing-duration updates, repeat the end packet three times,
//! lose the first packets, reorder, or switch payload type mid-call. The
//! receiver therefore identifies an event only by `(ssrc, rtp timestamp)` and
//! reports each event exactly once, on the first packet that reaches us.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Digit, DigitEvent, DigitSource};

/// One decoded telephone-event payload block (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0-15 are DTMF digits; higher codes are other tones).
    pub event: u8,
    /// E bit: this is (one of the repeated) final packet(s) of the event.
    pub end: bool,
    /// Power level in -dBm0 (0..=63, so 10 means -10 dBm0).
    pub volume: u8,
    /// Duration so far, in RTP clock units (samples).
    pub duration: u16,
}

/// Decodes the first 4-byte block of a telephone-event payload.
///
/// Returns `None` for payloads shorter than 4 bytes. Extra bytes (padding or
/// additional blocks, RFC 4733 §2.5.1.5) are ignored: the first block always
/// describes the event identified by the RTP timestamp.
pub fn parse_payload(payload: &[u8]) -> Option<TelephoneEvent> {
    let block = payload.get(..4)?;
    Some(TelephoneEvent {
        event: block[0],
        end: block[1] & 0x80 != 0,
        volume: block[1] & 0x3f,
        duration: u16::from_be_bytes([block[2], block[3]]),
    })
}

/// How long per-event state is kept after its last packet. Retransmitted end
/// packets arrive within tens of milliseconds; 10 s is generous.
const STATE_TTL: Duration = Duration::from_secs(10);
/// Upper bound on remembered events, so random SSRCs cannot grow memory.
const MAX_EVENTS: usize = 32;
/// A segment whose duration reached this is "about to overflow" and may be
/// continued by a new segment with a new timestamp (RFC 4733 §2.5.1.3).
const LONG_SEGMENT_MIN: u32 = 0xF000;

#[derive(Debug, Clone, Copy)]
struct EventState {
    ssrc: u32,
    ts: u32,
    code: u8,
    ended: bool,
    max_duration: u32,
    last_seen: Instant,
}

/// Turns telephone-event RTP packets into one [`DigitEvent`] per key press.
///
/// Feed it every packet whose payload type is *any* negotiated
/// telephone-event PT; a PT change mid-call then needs no special handling.
#[derive(Debug, Clone)]
pub struct Rfc4733Receiver {
    clock_rate: u32,
    /// Recently seen events, oldest first.
    events: VecDeque<EventState>,
}

impl Default for Rfc4733Receiver {
    /// 8 kHz, the telephone-event clock used with narrow-band codecs.
    fn default() -> Self {
        Self::new(8000)
    }
}

impl Rfc4733Receiver {
    /// `clock_rate` is the telephone-event RTP clock (from the SDP rtpmap),
    /// needed to convert durations to milliseconds.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            events: VecDeque::new(),
        }
    }

    /// Updates the clock rate (e.g. after a re-INVITE negotiated 48 kHz).
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.clock_rate = clock_rate.max(1);
    }

    /// Processes one RTP packet; returns a digit on the first packet of a new
    /// event and `None` for updates, repeated ends, duplicates, non-digit
    /// events and malformed payloads. The marker bit and sequence number are
    /// accepted for completeness but deliberately not relied on: the marker
    /// is often missing and only the timestamp identifies an event.
    pub fn on_packet(
        &mut self,
        now: Instant,
        ssrc: u32,
        _seq: u16,
        rtp_ts: u32,
        _marker: bool,
        payload: &[u8],
    ) -> Option<DigitEvent> {
        let ev = parse_payload(payload)?;
        let digit = Digit::from_event_code(ev.event)?;
        self.poll(now);
        let duration = u32::from(ev.duration);

        // Update / repeated end / reordered packet of a known event.
        if let Some(st) = self
            .events
            .iter_mut()
            .find(|s| s.ssrc == ssrc && s.ts == rtp_ts && s.code == ev.event)
        {
            st.ended |= ev.end;
            st.max_duration = st.max_duration.max(duration);
            st.last_seen = now;
            return None;
        }

        let mut report = true;
        if let Some(latest) = self.events.iter().rev().find(|s| s.ssrc == ssrc) {
            let delta = rtp_ts.wrapping_sub(latest.ts);
            let ahead = (delta as i32) > 0;
            if ahead
                && !latest.ended
                && latest.code == ev.event
                && latest.max_duration >= LONG_SEGMENT_MIN
                && delta >= latest.max_duration
                && delta <= 0xFFFF + self.clock_rate / 50
            {
                // Continuation segment of a > 65535-sample event: same press.
                report = false;
            } else if !ahead
                && delta != 0
                && delta.wrapping_neg() <= self.clock_rate.saturating_mul(10)
            {
                // A packet older than the newest event of this stream that we
                // never saw: reporting it now would deliver digits out of order.
                return None;
            }
        }

        self.events.push_back(EventState {
            ssrc,
            ts: rtp_ts,
            code: ev.event,
            ended: ev.end,
            max_duration: duration,
            last_seen: now,
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        if !report {
            return None;
        }
        let dur =
            Duration::from_micros(u64::from(duration) * 1_000_000 / u64::from(self.clock_rate));
        Some(DigitEvent {
            digit,
            source: DigitSource::Rfc4733,
            // The packet's duration says how long the key has been down.
            at: now.checked_sub(dur).unwrap_or(now),
            duration_ms: ev
                .end
                .then(|| (u64::from(duration) * 1000 / u64::from(self.clock_rate)) as u32),
        })
    }

    /// Forgets events not heard of for a while. Called from `on_packet`;
    /// call it from a timer too if memory should be released on idle calls.
    pub fn poll(&mut self, now: Instant) {
        self.events
            .retain(|s| now.saturating_duration_since(s.last_seen) < STATE_TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, (u8::from(end) << 7) | (volume & 0x3f), d[0], d[1]]
    }

    /// Drives a receiver with packets spaced 20 ms apart; returns the digits.
    struct Sim {
        rx: Rfc4733Receiver,
        t0: Instant,
        ms: u64,
        seq: u16,
        out: Vec<DigitEvent>,
    }

    impl Sim {
        fn new() -> Self {
            Self {
                rx: Rfc4733Receiver::default(),
                t0: Instant::now(),
                ms: 0,
                seq: 0,
                out: Vec::new(),
            }
        }
        fn now(&self) -> Instant {
            self.t0 + Duration::from_millis(self.ms)
        }
        fn send(&mut self, ssrc: u32, ts: u32, marker: bool, payload: &[u8]) {
            self.seq = self.seq.wrapping_add(1);
            let now = self.now();
            if let Some(ev) = self.rx.on_packet(now, ssrc, self.seq, ts, marker, payload) {
                self.out.push(ev);
            }
            self.ms += 20;
        }
        /// A textbook event: updates every 160 samples then 3 end packets.
        fn press(&mut self, ssrc: u32, ts: u32, code: u8, updates: u16, marker: bool) {
            for i in 1..=updates {
                self.send(ssrc, ts, marker && i == 1, &pl(code, false, 10, i * 160));
            }
            for _ in 0..3 {
                self.send(ssrc, ts, false, &pl(code, true, 10, (updates + 1) * 160));
            }
        }
        fn digits(&self) -> String {
            self.out.iter().map(|e| e.digit.as_char()).collect()
        }
    }

    #[test]
    fn parses_fields() {
        let ev = parse_payload(&[11, 0x80 | 0x25, 0x01, 0x40, 0xff]).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 11,
                end: true,
                volume: 0x25,
                duration: 320
            }
        );
        let ev = parse_payload(&[3, 0x4a, 0xff, 0xff]).unwrap();
        assert!(!ev.end, "R bit must not be read as E");
        assert_eq!(ev.volume, 10);
        assert_eq!(ev.duration, 65535);
        assert_eq!(parse_payload(&[1, 2, 3]), None);
    }

    #[test]
    fn normal_event_reported_once_on_first_packet() {
        let mut s = Sim::new();
        s.press(1, 1000, 5, 3, true);
        assert_eq!(s.digits(), "5");
        let ev = s.out[0];
        assert_eq!(ev.source, DigitSource::Rfc4733);
        assert_eq!(ev.duration_ms, None);
        // First packet arrived at t0 with 160 samples (20 ms) already elapsed.
        assert_eq!(s.t0.checked_sub(Duration::from_millis(20)), Some(ev.at));
    }

    #[test]
    fn missing_marker_bit_still_detected() {
        let mut s = Sim::new();
        s.press(1, 1000, 1, 3, false);
        s.press(1, 5000, 2, 3, false);
        assert_eq!(s.digits(), "12");
        // The opposite bug: marker set on every packet of one event.
        for i in 1..=4 {
            s.send(1, 9000, true, &pl(3, i == 4, 10, i * 160));
        }
        assert_eq!(s.digits(), "123");
    }

    #[test]
    fn long_event_with_growing_duration_is_one_digit() {
        let mut s = Sim::new();
        // 5 s = 40000 samples at 8 kHz, 250 updates.
        s.press(7, 123_456, 9, 250, true);
        assert_eq!(s.digits(), "9");
    }

    #[test]
    fn very_long_event_split_into_segments_is_one_digit() {
        let mut s = Sim::new();
        // First segment runs to the 16-bit limit (no E bit), then a new
        // segment starts at ts + 65535 as RFC 4733 §2.5.1.3 prescribes.
        for i in 1..=409u32 {
            s.send(7, 0, i == 1, &pl(4, false, 10, (i * 160).min(65535) as u16));
        }
        s.send(7, 0, false, &pl(4, false, 10, 65535));
        for i in 1..=50u16 {
            s.send(7, 65535, false, &pl(4, false, 10, i * 160));
        }
        for _ in 0..3 {
            s.send(7, 65535, false, &pl(4, true, 10, 8160));
        }
        assert_eq!(s.digits(), "4");
        // A real new press afterwards is still reported.
        s.press(7, 200_000, 4, 3, true);
        assert_eq!(s.digits(), "44");
    }

    #[test]
    fn only_end_packets_still_one_digit_with_duration() {
        let mut s = Sim::new();
        for _ in 0..3 {
            s.send(1, 8000, false, &pl(11, true, 10, 800));
        }
        assert_eq!(s.digits(), "#");
        assert_eq!(s.out[0].duration_ms, Some(100));
        assert_eq!(
            s.t0.checked_sub(Duration::from_millis(100)),
            Some(s.out[0].at)
        );
    }

    #[test]
    fn same_digit_twice_is_two_digits() {
        let mut s = Sim::new();
        s.press(1, 1000, 3, 4, true);
        s.press(1, 2600, 3, 4, true);
        assert_eq!(s.digits(), "33");
    }

    #[test]
    fn duplicates_and_reordering_are_ignored() {
        let mut s = Sim::new();
        // Event A (ts 1000) and B (ts 3000), with A's late packets mixed in.
        s.send(1, 1000, true, &pl(1, false, 10, 160));
        s.send(1, 1000, false, &pl(1, true, 10, 480));
        s.send(1, 1000, false, &pl(1, false, 10, 320)); // late update
        s.send(1, 3000, false, &pl(2, false, 10, 160));
        s.send(1, 1000, false, &pl(1, true, 10, 480)); // late end of A
        s.send(1, 3000, false, &pl(2, false, 10, 160)); // exact duplicate
        s.send(1, 3000, false, &pl(2, true, 10, 480));
        s.send(1, 3000, false, &pl(2, true, 10, 480));
        // A stale packet of an unseen older event must not appear out of order.
        s.send(1, 2000, false, &pl(8, true, 10, 480));
        assert_eq!(s.digits(), "12");
    }

    #[test]
    fn timestamp_wrap() {
        let mut s = Sim::new();
        s.press(1, u32::MAX - 100, 6, 3, true);
        s.press(1, 700, 6, 3, true);
        // Retransmitted end of the pre-wrap event after the wrap.
        s.send(1, u32::MAX - 100, false, &pl(6, true, 10, 640));
        s.press(1, 1500, 0, 3, false);
        assert_eq!(s.digits(), "660");
    }

    #[test]
    fn payload_type_change_same_ssrc_and_new_ssrc() {
        let mut s = Sim::new();
        // PT 101 -> PT 96: the caller feeds both to the same receiver.
        s.press(1, 1000, 1, 3, true);
        s.press(1, 3000, 2, 3, true);
        // Re-INVITE to a new media stream: new SSRC, unrelated timestamps.
        s.press(99, 40, 3, 3, true);
        s.press(99, 2000, 3, 3, true);
        // A new SSRC whose timestamps are "older" than the previous stream's.
        s.press(5, 10, 4, 3, true);
        assert_eq!(s.digits(), "12334");
    }

    #[test]
    fn garbage_is_ignored_without_panic() {
        let mut s = Sim::new();
        s.send(1, 0, true, &[]);
        s.send(1, 0, true, &[5]);
        s.send(1, 0, true, &[5, 0, 1]);
        s.send(1, 0, true, &pl(16, false, 10, 160)); // flash: not a digit
        s.send(1, 0, true, &[255, 255, 255, 255]);
        assert_eq!(s.digits(), "");
        // The junk did not poison the state for the next real event.
        s.send(1, 0, true, &pl(5, false, 10, 160));
        assert_eq!(s.digits(), "5");
        // Pseudo-random payloads: must not panic, digits only from 0-15.
        let mut x: u32 = 0x1234_5678;
        for i in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let b = x.to_be_bytes();
            let len = (x % 7) as usize;
            let ev = s.rx.on_packet(
                s.now(),
                x & 3,
                i as u16,
                x >> 3,
                x & 1 == 0,
                &b[..len.min(4)],
            );
            if let Some(ev) = ev {
                assert!(ev.digit.event_code() < 16);
            }
        }
    }

    #[test]
    fn state_expires_and_is_bounded() {
        let mut s = Sim::new();
        for i in 0..100u32 {
            s.press(i, i * 10, 1, 1, true);
        }
        assert_eq!(s.out.len(), 100);
        assert!(s.rx.events.len() <= MAX_EVENTS);
        s.ms += 60_000;
        s.rx.poll(s.now());
        assert!(s.rx.events.is_empty());
    }

    #[test]
    fn wideband_clock_rate_duration() {
        let mut rx = Rfc4733Receiver::new(48_000);
        let t0 = Instant::now();
        let ev = rx
            .on_packet(t0, 1, 1, 0, true, &pl(2, true, 10, 4800))
            .unwrap();
        assert_eq!(ev.duration_ms, Some(100));
    }
}
