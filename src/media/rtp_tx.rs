//! Outgoing RTP stream pacing as a sans-IO core.
//!
//! The caller owns the clock and the socket: it sleeps until
//! [`TxStream::next_deadline`], then calls [`TxStream::build_packet`] and
//! sends the bytes. Deadlines are absolute (`start + n * 20 ms`) so timer
//! jitter never accumulates into drift.

use std::time::{Duration, Instant};

/// Duration of one audio frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Samples per 20 ms frame at 8 kHz (also the RTP timestamp step).
pub const SAMPLES_PER_FRAME: u32 = 160;
/// If the caller is later than this, we skip frames instead of bursting.
pub const MAX_LATENESS: Duration = Duration::from_millis(200);
/// Size of the fixed RTP header we emit (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

const FRAME_NANOS: u128 = 20_000_000;

/// Pacing and header state for one outgoing RTP stream (one SSRC).
#[derive(Debug, Clone)]
pub struct TxStream {
    ssrc: u32,
    payload_type: u8,
    start: Instant,
    next_seq: u16,
    initial_ts: u32,
    /// Index of the next frame slot; its deadline is `start + frame * 20 ms`.
    frame: u64,
    packets_sent: u64,
    frames_skipped: u64,
}

impl TxStream {
    /// Creates a stream whose first packet is due at `start`.
    ///
    /// `payload_type` is masked to 7 bits (the RTP field width).
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        start: Instant,
        initial_seq: u16,
        initial_ts: u32,
    ) -> TxStream {
        TxStream {
            ssrc,
            payload_type: payload_type & 0x7F,
            start,
            next_seq: initial_seq,
            initial_ts,
            frame: 0,
            packets_sent: 0,
            frames_skipped: 0,
        }
    }

    /// When the next packet is due.
    pub fn next_deadline(&self) -> Instant {
        self.start + frame_offset(self.frame)
    }

    /// Changes the payload type (codec switch after re-INVITE); masked to 7 bits.
    /// Sequence and timestamp continue unchanged, as RFC 3550 requires.
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type & 0x7F;
    }

    /// Current payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// SSRC of this stream.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// RTP timestamp of the next frame slot (before any late skip).
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp_of(self.frame)
    }

    /// Packets built so far (for RTCP sender reports).
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Frame slots skipped because the caller was late, or by [`TxStream::resync`].
    pub fn frames_skipped(&self) -> u64 {
        self.frames_skipped
    }

    /// Realigns the schedule to `now` without sending, e.g. after a silence
    /// period in which no packets were sent, so the next talkspurt does not
    /// burst to catch up. Timestamps advance by the elapsed time.
    pub fn resync(&mut self, now: Instant) {
        let current = self.frame_at(now);
        if current > self.frame {
            self.frames_skipped += current - self.frame;
            self.frame = current;
        }
    }

    /// Appends one RTP packet for the current frame slot to `out`.
    ///
    /// If `now` is more than [`MAX_LATENESS`] past the deadline, the slots
    /// that were missed are skipped (timestamp jumps by the elapsed time,
    /// sequence still +1) so the receiver sees a gap rather than a burst.
    /// Calling early is allowed; the packet keeps its scheduled timestamp.
    pub fn build_packet(
        &mut self,
        now: Instant,
        payload: &[u8],
        talkspurt_start: bool,
        out: &mut Vec<u8>,
    ) {
        self.write(now, self.payload_type, None, talkspurt_start, payload, out);
    }

    /// Appends one packet of another payload type for the current frame slot
    /// (RFC 4733 telephone-events): same SSRC, the sequence continues, and
    /// the timestamp is `event_ts` (every packet of one event carries the
    /// event's start), or this slot's for the first packet (`None`).
    /// Returns the timestamp used. Lateness is handled as in
    /// [`TxStream::build_packet`].
    pub fn build_event_packet(
        &mut self,
        now: Instant,
        payload_type: u8,
        event_ts: Option<u32>,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> u32 {
        self.write(now, payload_type & 0x7F, event_ts, marker, payload, out)
    }

    fn write(
        &mut self,
        now: Instant,
        payload_type: u8,
        ts: Option<u32>,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> u32 {
        if now.saturating_duration_since(self.next_deadline()) > MAX_LATENESS {
            self.resync(now);
        }
        let ts = ts.unwrap_or_else(|| self.timestamp_of(self.frame));
        out.reserve(RTP_HEADER_LEN + payload.len());
        out.push(0x80); // V=2, no padding, no extension, CC=0
        out.push(if marker { 0x80 } else { 0 } | payload_type);
        out.extend_from_slice(&self.next_seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.frame += 1;
        self.packets_sent += 1;
        ts
    }

    fn timestamp_of(&self, frame: u64) -> u32 {
        // Truncation to u32 is the intended modulo-2^32 RTP timestamp wrap.
        self.initial_ts
            .wrapping_add((frame.wrapping_mul(u64::from(SAMPLES_PER_FRAME))) as u32)
    }

    /// Index of the frame slot whose 20 ms interval contains `now`.
    fn frame_at(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(elapsed / FRAME_NANOS).unwrap_or(u64::MAX)
    }
}

fn frame_offset(frame: u64) -> Duration {
    // 2^64 * 20 ms overflows u64 nanos only after ~584 years of streaming.
    Duration::from_nanos(frame.saturating_mul(FRAME_NANOS as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::RtpReader;

    struct Pkt {
        seq: u16,
        ts: u32,
        marker: bool,
        pt: u8,
        ssrc: u32,
        payload: Vec<u8>,
    }

    /// Parses with the independent rtp-rs reader to cross-check our header.
    fn parse(bytes: &[u8]) -> Pkt {
        let r = RtpReader::new(bytes).expect("valid rtp");
        assert_eq!(r.version(), 2);
        assert_eq!(r.csrc_count(), 0);
        assert!(r.padding().is_none());
        assert!(r.extension().is_none());
        Pkt {
            seq: u16::from(r.sequence_number()),
            ts: r.timestamp(),
            marker: r.mark(),
            pt: r.payload_type(),
            ssrc: r.ssrc(),
            payload: r.payload().to_vec(),
        }
    }

    fn send(tx: &mut TxStream, now: Instant, marker: bool) -> Pkt {
        let mut out = Vec::new();
        tx.build_packet(now, &[0xFF; 160], marker, &mut out);
        assert_eq!(out.len(), RTP_HEADER_LEN + 160);
        parse(&out)
    }

    #[test]
    fn header_fields_are_encoded() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(0xDEAD_BEEF, 8, t0, 1000, 5000);
        let mut out = vec![0xAA];
        tx.build_packet(t0, &[1, 2, 3], true, &mut out);
        assert_eq!(out[0], 0xAA, "existing bytes kept");
        let p = parse(&out[1..]);
        assert_eq!(p.seq, 1000);
        assert_eq!(p.ts, 5000);
        assert!(p.marker);
        assert_eq!(p.pt, 8);
        assert_eq!(p.ssrc, 0xDEAD_BEEF);
        assert_eq!(p.payload, vec![1, 2, 3]);
        assert_eq!(tx.packets_sent(), 1);
    }

    #[test]
    fn fifty_packets_per_simulated_second() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(1, 0, t0, 0, 0);
        let mut count = 0;
        while tx.next_deadline() < t0 + Duration::from_secs(1) {
            let now = tx.next_deadline();
            send(&mut tx, now, false);
            count += 1;
        }
        assert_eq!(count, 50);
        assert_eq!(tx.next_deadline(), t0 + Duration::from_secs(1));
        assert_eq!(tx.next_timestamp(), 8000);
    }

    #[test]
    fn jittery_caller_does_not_drift() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(1, 0, t0, 0, 0);
        // Deterministic pseudo-random wake-up lateness of 0..19 ms.
        let mut lcg: u32 = 12345;
        for i in 0..3000u32 {
            lcg = lcg.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let late = Duration::from_millis(u64::from((lcg >> 16) % 20));
            let deadline = tx.next_deadline();
            assert_eq!(deadline, t0 + FRAME_DURATION * i);
            let p = send(&mut tx, deadline + late, false);
            assert_eq!(p.ts, i * 160);
        }
        assert_eq!(tx.next_deadline(), t0 + Duration::from_secs(60));
        assert_eq!(tx.frames_skipped(), 0);
    }

    #[test]
    fn seq_and_ts_wrap_monotonically() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(7, 0, t0, 65533, u32::MAX - 319);
        let mut prev = send(&mut tx, t0, true);
        for _ in 0..10 {
            let now = tx.next_deadline();
            let p = send(&mut tx, now, false);
            assert_eq!(p.seq, prev.seq.wrapping_add(1));
            assert_eq!(p.ts, prev.ts.wrapping_add(160));
            prev = p;
        }
        assert_eq!(prev.seq, 65533u16.wrapping_add(10));
        assert_eq!(prev.ts, (u32::MAX - 319).wrapping_add(1600));
    }

    #[test]
    fn marker_only_on_talkspurt_start() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(7, 0, t0, 0, 0);
        let markers: Vec<bool> = (0..10)
            .map(|i| {
                let now = tx.next_deadline();
                send(&mut tx, now, i == 0 || i == 6).marker
            })
            .collect();
        let expected: Vec<bool> = (0..10).map(|i| i == 0 || i == 6).collect();
        assert_eq!(markers, expected);
    }

    #[test]
    fn moderately_late_caller_catches_up_without_skipping() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(7, 0, t0, 0, 0);
        send(&mut tx, t0, true);
        // Woken 200 ms late (exactly the limit): no skip, caller may catch up.
        let now = t0 + FRAME_DURATION + MAX_LATENESS;
        for i in 1..=11u32 {
            assert!(tx.next_deadline() <= now);
            let p = send(&mut tx, now, false);
            assert_eq!(p.ts, i * 160);
        }
        assert!(tx.next_deadline() > now);
        assert_eq!(tx.frames_skipped(), 0);
    }

    #[test]
    fn very_late_caller_skips_forward() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(7, 0, t0, 100, 1000);
        for _ in 0..10 {
            let now = tx.next_deadline();
            send(&mut tx, now, false);
        }
        // Next slot is frame 10 at 200 ms; caller wakes at 700 ms.
        let now = t0 + Duration::from_millis(705);
        let p = send(&mut tx, now, false);
        assert_eq!(p.seq, 110, "sequence stays contiguous");
        assert_eq!(p.ts, 1000 + 35 * 160, "timestamp reflects elapsed time");
        assert_eq!(tx.frames_skipped(), 25);
        assert_eq!(tx.next_deadline(), t0 + Duration::from_millis(720));
        // Back on schedule: exactly one packet per slot from here.
        let p = {
            let d = tx.next_deadline();
            send(&mut tx, d, false)
        };
        assert_eq!((p.seq, p.ts), (111, 1000 + 36 * 160));
    }

    #[test]
    fn resync_after_silence_avoids_burst() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(7, 0, t0, 0, 0);
        send(&mut tx, t0, true);
        // 100 ms of silence (below the late limit), then a new talkspurt.
        let now = t0 + Duration::from_millis(120);
        tx.resync(now);
        let p = send(&mut tx, now, true);
        assert_eq!(p.ts, 6 * 160);
        assert_eq!(p.seq, 1);
        assert_eq!(tx.next_deadline(), t0 + Duration::from_millis(140));
        // Resync in the past or present slot is a no-op.
        tx.resync(t0);
        assert_eq!(tx.next_deadline(), t0 + Duration::from_millis(140));
    }

    #[test]
    fn event_packets_keep_the_event_timestamp_and_the_sequence() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(7, 0, t0, 10, 1000);
        send(&mut tx, t0, false);
        let mut out = Vec::new();
        let d = tx.next_deadline();
        let ts = tx.build_event_packet(d, 101, None, true, &[5, 10, 0, 160], &mut out);
        assert_eq!(ts, 1160);
        let p = parse(&out);
        assert_eq!((p.pt, p.seq, p.ts, p.marker), (101, 11, 1160, true));
        out.clear();
        let d = tx.next_deadline();
        tx.build_event_packet(d, 101, Some(ts), false, &[5, 10, 1, 64], &mut out);
        let p = parse(&out);
        assert_eq!((p.pt, p.seq, p.ts, p.marker), (101, 12, 1160, false));
        assert_eq!(p.ssrc, 7);
        // Audio resumes on its own slot clock.
        let d = tx.next_deadline();
        let p = send(&mut tx, d, false);
        assert_eq!((p.pt, p.seq, p.ts), (0, 13, 1480));
    }

    #[test]
    fn payload_type_change_keeps_sequence() {
        let t0 = Instant::now();
        let mut tx = TxStream::new(7, 0, t0, 10, 0);
        assert_eq!(send(&mut tx, t0, false).pt, 0);
        tx.set_payload_type(8);
        let p = {
            let d = tx.next_deadline();
            send(&mut tx, d, false)
        };
        assert_eq!((p.pt, p.seq, p.ts), (8, 11, 160));
        tx.set_payload_type(0xFF);
        assert_eq!(
            tx.payload_type(),
            0x7F,
            "masked to 7 bits, marker untouched"
        );
        assert!(
            !{
                let d = tx.next_deadline();
                send(&mut tx, d, false)
            }
            .marker
        );
    }
}
