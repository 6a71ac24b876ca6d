//! Receive side: a panic-free RTP parser and an audio jitter buffer.
//!
//! Both are sans-IO: the caller feeds datagrams and the current time, and
//! pops one frame per 20 ms playout tick.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Fixed RTP header length (RFC 3550 §5.1).
const FIXED_HEADER: usize = 12;

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet too short: {len} bytes, need at least 12")]
    TooShort {
        /// The datagram's length in bytes.
        len: usize,
    },
    /// Version field is not 2 (e.g. STUN or garbage on the media port).
    #[error("unsupported RTP version {0}, expected 2")]
    BadVersion(u8),
    /// CSRC list runs past the end of the packet.
    #[error("RTP CSRC list ({count} entries) truncated in {len}-byte packet")]
    TruncatedCsrc {
        /// The CC field: CSRC entries (4 bytes each) the header claims.
        count: u8,
        /// The packet's length in bytes.
        len: usize,
    },
    /// Header extension runs past the end of the packet.
    #[error("RTP header extension truncated in {len}-byte packet")]
    TruncatedExtension {
        /// The packet's length in bytes.
        len: usize,
    },
    /// Padding count is zero or larger than the payload area.
    #[error("invalid RTP padding length {padding} with only {available} bytes after header")]
    BadPadding {
        /// The last byte of the packet: the padding count it declares.
        padding: u8,
        /// Bytes after the header (payload plus padding).
        available: usize,
    },
}

/// Borrowed view of a parsed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeaderInfo<'a> {
    /// Always 2 for a successfully parsed packet.
    pub version: u8,
    /// Marker bit (start of talkspurt for audio).
    pub marker: bool,
    /// 7-bit payload type.
    pub payload_type: u8,
    /// 16-bit sequence number (wraps).
    pub sequence: u16,
    /// Media timestamp (8 kHz units for G.711).
    pub timestamp: u32,
    /// Synchronisation source; a change means a new stream.
    pub ssrc: u32,
    /// Number of CSRC entries that were skipped.
    pub csrc_count: u8,
    /// Header extension (profile id, data) if present.
    pub extension: Option<(u16, &'a [u8])>,
    /// Payload with CSRCs, extension and padding removed.
    pub payload: &'a [u8],
}

/// Parses an RTP packet without panicking on any input.
///
/// The header walk is rtp-rs's `RtpReader` (bounds-checked CSRC, extension
/// and padding); this wrapper only maps its errors and copies the fields out.
pub fn parse(packet: &[u8]) -> Result<RtpHeaderInfo<'_>, RtpError> {
    use rtp_rs::{RtpReader, RtpReaderError};
    let len = packet.len();
    let r = RtpReader::new(packet).map_err(|e| match e {
        RtpReaderError::BufferTooShort(len) => RtpError::TooShort { len },
        RtpReaderError::UnsupportedVersion(v) => RtpError::BadVersion(v),
        RtpReaderError::HeadersTruncated { .. } => {
            let count = packet[0] & 0x0F;
            if FIXED_HEADER + 4 * usize::from(count) > len {
                RtpError::TruncatedCsrc { count, len }
            } else if packet[0] & 0x10 != 0 {
                RtpError::TruncatedExtension { len }
            } else {
                RtpError::BadPadding {
                    padding: packet[len - 1],
                    available: 0,
                }
            }
        }
        RtpReaderError::PaddingLengthInvalid(padding) => {
            let count = packet[0] & 0x0F;
            let available = len.saturating_sub(FIXED_HEADER + 4 * usize::from(count));
            RtpError::BadPadding { padding, available }
        }
    })?;
    Ok(RtpHeaderInfo {
        version: r.version(),
        marker: r.mark(),
        payload_type: r.payload_type(),
        sequence: u16::from(r.sequence_number()),
        timestamp: r.timestamp(),
        ssrc: r.ssrc(),
        csrc_count: r.csrc_count(),
        extension: r.extension(),
        payload: r.payload(),
    })
}

/// Frame duration the playout clock assumes.
const FRAME_DURATION: Duration = Duration::from_millis(20);
/// A forward jump larger than this is treated as a stream restart (RFC 3550 A.1).
const MAX_DROPOUT: i64 = 3000;
/// A backward jump larger than this is treated as a stream restart.
const MAX_MISORDER: i64 = 100;
/// Upper bound on the configurable depth (10 s), keeps memory bounded.
pub const MAX_CAPACITY: usize = 500;
/// Default buffer depth in frames (60 ms).
pub const DEFAULT_CAPACITY: usize = 3;
/// Non-audio sequence numbers remembered ahead of playout (an event flood
/// cannot grow the set beyond this).
const MAX_SKIPPED: usize = 1024;

/// One playout slot returned by [`JitterBuffer::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A received packet, in sequence order.
    Audio {
        /// RTP sequence number.
        seq: u16,
        /// RTP timestamp (8 kHz units for G.711).
        ts: u32,
        /// The codec payload, as received.
        payload: Vec<u8>,
    },
    /// Packet `seq` never arrived in time; play one frame of concealment/silence.
    Lost {
        /// The sequence number that is missing.
        seq: u16,
    },
    /// Sequence number `seq` went to a packet of the stream that is not
    /// audio (an RFC 4733 telephone-event shares the sequence space): one
    /// frame of concealment/silence, but not a loss.
    Skipped {
        /// The sequence number the non-audio packet used.
        seq: u16,
    },
}

/// Counters for diagnostics and RTCP receiver reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Every packet handed to `push`.
    pub received: u64,
    /// Sequence numbers passed over without audio (Lost markers and skips),
    /// not counting those a non-audio packet of the stream used
    /// ([`JitterBuffer::pass`]).
    pub lost: u64,
    /// Sequence numbers used by non-audio packets of the stream (played
    /// as [`Frame::Skipped`] or passed over, never counted as lost).
    pub skipped: u64,
    /// Packets whose sequence number was already buffered.
    pub duplicates: u64,
    /// Packets that arrived after their slot was played or skipped.
    pub late: u64,
    /// Packets that arrived with a lower sequence than one already seen.
    pub reordered: u64,
    /// Buffered frames discarded because the buffer exceeded its capacity.
    pub overflow: u64,
    /// Resets caused by SSRC change or a confirmed sequence jump.
    pub resets: u64,
    /// Packets discarded as isolated, unconfirmed sequence jumps.
    pub out_of_range: u64,
    /// Times playout found the buffer empty and went back to prefilling.
    pub underruns: u64,
}

#[derive(Debug)]
struct Entry {
    ts: u32,
    payload: Vec<u8>,
    arrival: Instant,
}

#[derive(Debug)]
struct PendingJump {
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
    arrival: Instant,
}

/// Reordering audio jitter buffer with a fixed depth in frames.
///
/// Playout starts once `prefill` frames are buffered (or the oldest has
/// waited `prefill * 20 ms`, so a lone packet still plays). At most
/// `capacity` frames are held; beyond that playout skips forward. While playing,
/// each `pop` yields the next sequence number, or `Lost` when it is missing
/// but later frames are already waiting. If the buffer runs dry, playout
/// pauses and prefills again; missed sequence numbers are then skipped
/// silently (the caller already played silence for those ticks).
#[derive(Debug)]
pub struct JitterBuffer {
    capacity: usize,
    prefill: usize,
    frames: BTreeMap<u64, Entry>,
    /// Highest extended sequence seen; reference for extending new ones.
    highest: Option<u64>,
    /// Next extended sequence to play.
    next: u64,
    /// Lowest extended sequence still accepted: everything below was played
    /// or skipped. Equals `next` except while prefilling a new stream.
    floor: u64,
    playing: bool,
    ssrc: Option<u32>,
    pending_jump: Option<PendingJump>,
    /// Extended sequence numbers of non-audio packets not yet played past.
    others: BTreeSet<u64>,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        JitterBuffer::new(DEFAULT_CAPACITY)
    }
}

impl JitterBuffer {
    /// Creates a buffer holding up to `capacity` frames (clamped to 1..=500).
    ///
    /// Playout starts after `ceil(capacity / 2)` frames so the remaining
    /// room absorbs bursts; see [`JitterBuffer::set_prefill`].
    pub fn new(capacity: usize) -> JitterBuffer {
        JitterBuffer {
            capacity: capacity.clamp(1, MAX_CAPACITY),
            prefill: capacity.clamp(1, MAX_CAPACITY).div_ceil(2),
            frames: BTreeMap::new(),
            highest: None,
            next: 0,
            floor: 0,
            playing: false,
            ssrc: None,
            pending_jump: None,
            others: BTreeSet::new(),
            stats: JitterStats::default(),
        }
    }

    /// Maximum number of buffered frames.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets how many frames (or frame durations of waiting) must accumulate
    /// before playout starts; clamped to `1..=capacity`.
    pub fn set_prefill(&mut self, frames: usize) {
        self.prefill = frames.clamp(1, self.capacity);
    }

    /// Frames accumulated before playout starts.
    pub fn prefill(&self) -> usize {
        self.prefill
    }

    /// Number of frames currently buffered.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Counters since creation (not cleared by resets).
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Drops all state about the current stream (e.g. new remote SDP).
    pub fn reset(&mut self) {
        self.frames.clear();
        self.highest = None;
        self.next = 0;
        self.floor = 0;
        self.playing = false;
        self.ssrc = None;
        self.pending_jump = None;
        self.others.clear();
    }

    /// A packet of the stream that is not audio (a telephone-event on the
    /// audio's SSRC) used `packet.sequence`: playout passes over that number
    /// without counting it lost. Packets of another SSRC, before the stream
    /// started or far from it say nothing about this stream's gaps.
    pub fn pass(&mut self, packet: &RtpHeaderInfo<'_>) {
        let Some(highest) = self.highest else {
            return;
        };
        if self.ssrc.is_some_and(|s| s != packet.ssrc) {
            return;
        }
        let delta = i64::from(packet.sequence.wrapping_sub(highest as u16) as i16);
        if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&delta) {
            return;
        }
        let ext = highest.saturating_add_signed(delta);
        if ext < self.floor || self.frames.contains_key(&ext) {
            return;
        }
        if ext > highest {
            self.highest = Some(ext);
        }
        self.others.insert(ext);
        while self.others.len() > MAX_SKIPPED {
            self.others.pop_first();
        }
    }

    /// Counts the gap `[from, to)` that playout passes over: non-audio
    /// sequence numbers in it are skips, the rest are losses.
    fn pass_over(&mut self, from: u64, to: u64) {
        if to <= from {
            return;
        }
        let keep = self.others.split_off(&to);
        let passed = self.others.range(from..).count() as u64;
        self.others = keep;
        self.stats.skipped += passed;
        self.stats.lost += (to - from) - passed;
    }

    /// Pushes a parsed packet, resetting first if the SSRC changed.
    pub fn push_rtp(&mut self, now: Instant, packet: &RtpHeaderInfo<'_>) {
        if self.ssrc.is_some_and(|s| s != packet.ssrc) {
            self.restart();
        }
        self.ssrc = Some(packet.ssrc);
        self.push(
            now,
            packet.sequence,
            packet.timestamp,
            packet.payload.to_vec(),
        );
    }

    /// Inserts one received packet.
    pub fn push(&mut self, now: Instant, seq: u16, ts: u32, payload: Vec<u8>) {
        self.stats.received += 1;
        let Some(highest) = self.highest else {
            self.start_stream(now, seq, ts, payload);
            return;
        };
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&delta) {
            // Accept a jump only once the next packet confirms it, so a single
            // corrupt sequence number cannot flush the buffer.
            let confirmed = self
                .pending_jump
                .as_ref()
                .is_some_and(|p| p.seq.wrapping_add(1) == seq);
            if confirmed {
                let first = self.pending_jump.take();
                self.restart();
                if let Some(p) = first {
                    self.start_stream(p.arrival, p.seq, p.ts, p.payload);
                }
                self.insert(now, seq, ts, payload);
            } else {
                if self.pending_jump.is_some() {
                    self.stats.out_of_range += 1;
                }
                self.pending_jump = Some(PendingJump {
                    seq,
                    ts,
                    payload,
                    arrival: now,
                });
            }
            return;
        }
        if self.pending_jump.take().is_some() {
            self.stats.out_of_range += 1;
        }
        self.insert(now, seq, ts, payload);
    }

    /// Returns the frame for the current 20 ms playout tick, if any.
    ///
    /// `None` means nothing to play (prefilling, or the stream paused); the
    /// caller should play silence without advancing the sequence.
    pub fn pop(&mut self, now: Instant) -> Option<Frame> {
        if !self.playing {
            let first = *self.frames.first_key_value()?.0;
            let oldest = self.frames.values().map(|e| e.arrival).min()?;
            let waited = now.saturating_duration_since(oldest);
            let ready =
                self.frames.len() >= self.prefill || waited >= FRAME_DURATION * self.prefill as u32;
            if !ready {
                return None;
            }
            if first > self.next {
                // Gap accumulated while paused: already covered by silence.
                self.pass_over(self.next, first);
            }
            self.next = first;
            self.playing = true;
        }
        let Some(entry) = self.frames.first_entry() else {
            self.playing = false;
            self.stats.underruns += 1;
            return None;
        };
        let seq = self.next;
        self.next += 1;
        self.floor = self.next;
        let other = self.others.remove(&seq);
        if *entry.key() == seq {
            let e = entry.remove();
            Some(Frame::Audio {
                seq: seq as u16,
                ts: e.ts,
                payload: e.payload,
            })
        } else if other {
            self.stats.skipped += 1;
            Some(Frame::Skipped { seq: seq as u16 })
        } else {
            self.stats.lost += 1;
            Some(Frame::Lost { seq: seq as u16 })
        }
    }

    fn restart(&mut self) {
        let had_stream = self.highest.is_some();
        let stats = self.stats;
        self.reset();
        self.stats = stats;
        if had_stream {
            self.stats.resets += 1;
        }
    }

    fn start_stream(&mut self, now: Instant, seq: u16, ts: u32, payload: Vec<u8>) {
        // Offset by 2^32 so extended sequences can move backwards without underflow.
        let ext = (1u64 << 32) + u64::from(seq);
        self.highest = Some(ext);
        self.next = ext;
        self.playing = false;
        self.frames.insert(
            ext,
            Entry {
                ts,
                payload,
                arrival: now,
            },
        );
    }

    fn insert(&mut self, now: Instant, seq: u16, ts: u32, payload: Vec<u8>) {
        let Some(highest) = self.highest else {
            self.start_stream(now, seq, ts, payload);
            return;
        };
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        let ext = highest.saturating_add_signed(delta);
        if ext < self.floor {
            self.stats.late += 1;
            return;
        }
        if ext < self.next {
            // Still prefilling: an earlier packet arrived after a later one.
            self.next = ext;
        }
        if self.frames.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        if ext < highest {
            self.stats.reordered += 1;
        } else {
            self.highest = Some(ext);
        }
        self.frames.insert(
            ext,
            Entry {
                ts,
                payload,
                arrival: now,
            },
        );
        self.enforce_capacity();
    }

    /// Keeps at most `capacity` frames by moving playout forward: first over
    /// missing sequence numbers, then by discarding the oldest audio.
    fn enforce_capacity(&mut self) {
        while self.frames.len() > self.capacity {
            let Some(first) = self.frames.first_entry() else {
                return;
            };
            let first_seq = *first.key();
            if first_seq > self.next {
                self.pass_over(self.next, first_seq);
                self.next = first_seq;
            } else {
                first.remove();
                self.stats.overflow += 1;
                self.next = first_seq + 1;
            }
            self.floor = self.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::{Pad, RtpPacketBuilder, Seq};

    fn header(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    /// Packet with 2 CSRCs, a 2-word extension and 3 bytes of padding.
    fn complex_packet() -> Vec<u8> {
        let mut p = header(0x1234, 0xAABB_CCDD, 0x0102_0304);
        p[0] = 0x80 | 0x20 | 0x10 | 2;
        p[1] = 0x80 | 8;
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        p.extend_from_slice(&[0xBE, 0xDE, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        p.extend_from_slice(&[9, 8, 7, 6, 5]); // payload
        p.extend_from_slice(&[0, 0, 3]); // padding, count includes itself
        p
    }

    #[test]
    fn parses_plain_packet() {
        let mut p = header(7, 160, 42);
        p.extend_from_slice(&[1, 2, 3]);
        let h = parse(&p).expect("valid");
        assert_eq!(h.version, 2);
        assert!(!h.marker);
        assert_eq!(
            (h.payload_type, h.sequence, h.timestamp, h.ssrc),
            (0, 7, 160, 42)
        );
        assert_eq!(h.csrc_count, 0);
        assert_eq!(h.extension, None);
        assert_eq!(h.payload, &[1, 2, 3]);
        // Header-only packet has an empty payload.
        assert_eq!(parse(&p[..12]).expect("valid").payload, &[] as &[u8]);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        let p = complex_packet();
        let h = parse(&p).expect("valid");
        assert!(h.marker);
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 0xAABB_CCDD);
        assert_eq!(h.ssrc, 0x0102_0304);
        assert_eq!(h.csrc_count, 2);
        assert_eq!(h.extension, Some((0xBEDE, &[1u8, 2, 3, 4, 5, 6, 7, 8][..])));
        assert_eq!(h.payload, &[9, 8, 7, 6, 5]);
    }

    #[test]
    fn agrees_with_rtp_rs_builder() {
        let ext = [1u8, 2, 3, 4];
        let bytes = RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(99)
            .sequence(Seq::from(65535))
            .timestamp(12345)
            .marked(true)
            .add_csrc(5)
            .extension(0x1000, &ext)
            .padded(Pad::round_to(4))
            .payload(&[1, 2, 3, 4, 5])
            .build()
            .expect("build");
        let h = parse(&bytes).expect("valid");
        assert_eq!((h.sequence, h.timestamp, h.ssrc), (65535, 12345, 99));
        assert!(h.marker);
        assert_eq!(h.csrc_count, 1);
        assert_eq!(h.extension, Some((0x1000, &ext[..])));
        assert_eq!(h.payload, &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(parse(&[]), Err(RtpError::TooShort { len: 0 }));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort { len: 11 }));
        for v in [0u8, 1, 3] {
            let mut p = header(1, 1, 1);
            p[0] = v << 6;
            assert_eq!(parse(&p), Err(RtpError::BadVersion(v)));
        }
        let mut p = header(1, 1, 1);
        p[0] |= 1;
        assert_eq!(
            parse(&p),
            Err(RtpError::TruncatedCsrc { count: 1, len: 12 })
        );
        let mut p = header(1, 1, 1);
        p[0] |= 0x10;
        p.extend_from_slice(&[0, 0, 0, 1, 0xAA]); // claims 1 word, has 1 byte
        assert_eq!(parse(&p), Err(RtpError::TruncatedExtension { len: 17 }));
        let mut p = header(1, 1, 1);
        p[0] |= 0x20;
        p.extend_from_slice(&[1, 2, 0]);
        assert_eq!(
            parse(&p),
            Err(RtpError::BadPadding {
                padding: 0,
                available: 3
            })
        );
        *p.last_mut().expect("non-empty") = 4;
        assert_eq!(
            parse(&p),
            Err(RtpError::BadPadding {
                padding: 4,
                available: 3
            })
        );
        // Padding flag on a header-only packet.
        let mut p = header(1, 1, 1);
        p[0] |= 0x20;
        assert!(matches!(parse(&p), Err(RtpError::BadPadding { .. })));
        // Error messages carry context.
        assert!(RtpError::TooShort { len: 3 }
            .to_string()
            .contains("3 bytes"));
    }

    #[test]
    fn every_truncation_is_handled() {
        let p = complex_packet();
        for n in 0..p.len() {
            let r = parse(&p[..n]);
            if n < 12 + 8 + 12 {
                assert!(r.is_err(), "prefix {n} must not parse");
            }
            if let Ok(h) = r {
                assert!(h.payload.len() <= n);
            }
        }
        assert!(parse(&p).is_ok());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut lcg: u64 = 0x1234_5678;
        let mut next = || {
            lcg = lcg
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (lcg >> 33) as u8
        };
        let mut ok = 0;
        for _ in 0..50_000 {
            let len = usize::from(next()) % 80;
            let mut buf: Vec<u8> = (0..len).map(|_| next()).collect();
            if let Some(b) = buf.first_mut() {
                *b = (*b & 0x3F) | 0x80; // force version 2 so deeper paths run
            }
            if let Ok(h) = parse(&buf) {
                ok += 1;
                let range = buf.as_ptr_range();
                assert!(h.payload.is_empty() || range.contains(&h.payload.as_ptr()));
                assert!(h.payload.len() + 12 <= buf.len());
            }
        }
        assert!(ok > 1000, "random input should sometimes parse ({ok})");
    }

    // ---- jitter buffer ----

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn payload(seq: u16) -> Vec<u8> {
        seq.to_be_bytes().to_vec()
    }

    fn push(jb: &mut JitterBuffer, now: Instant, seq: u16) {
        jb.push(now, seq, u32::from(seq).wrapping_mul(160), payload(seq));
    }

    /// Pops one frame, describing it as Some(Ok(seq)) audio or Some(Err(seq)) lost.
    fn pop(jb: &mut JitterBuffer, now: Instant) -> Option<Result<u16, u16>> {
        jb.pop(now).map(|f| match f {
            Frame::Audio {
                seq,
                ts,
                payload: p,
            } => {
                assert_eq!(ts, u32::from(seq).wrapping_mul(160));
                assert_eq!(p, payload(seq));
                Ok(seq)
            }
            Frame::Lost { seq } | Frame::Skipped { seq } => Err(seq),
        })
    }

    #[test]
    fn default_capacity_is_three() {
        assert_eq!(JitterBuffer::default().capacity(), 3);
        assert_eq!(JitterBuffer::default().prefill(), 2);
        let mut jb = JitterBuffer::new(4);
        jb.set_prefill(9);
        assert_eq!(jb.prefill(), 4);
        jb.set_prefill(0);
        assert_eq!(jb.prefill(), 1);
        assert_eq!(JitterBuffer::new(0).capacity(), 1);
        assert_eq!(JitterBuffer::new(usize::MAX).capacity(), MAX_CAPACITY);
    }

    #[test]
    fn prefills_then_plays_in_order() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        jb.set_prefill(3);
        assert_eq!(pop(&mut jb, t0), None);
        push(&mut jb, t0, 10);
        assert_eq!(pop(&mut jb, ms(t0, 1)), None, "prefilling");
        push(&mut jb, ms(t0, 20), 11);
        assert_eq!(pop(&mut jb, ms(t0, 21)), None, "prefilling");
        push(&mut jb, ms(t0, 40), 12);
        assert_eq!(jb.len(), 3);
        assert_eq!(pop(&mut jb, ms(t0, 41)), Some(Ok(10)));
        assert_eq!(pop(&mut jb, ms(t0, 61)), Some(Ok(11)));
        assert_eq!(pop(&mut jb, ms(t0, 81)), Some(Ok(12)));
        assert_eq!(pop(&mut jb, ms(t0, 101)), None, "underrun");
        let s = jb.stats();
        assert_eq!((s.received, s.lost, s.underruns), (3, 0, 1));
    }

    #[test]
    fn lone_packet_plays_after_waiting_depth() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        push(&mut jb, t0, 5);
        assert_eq!(pop(&mut jb, ms(t0, 39)), None);
        assert_eq!(pop(&mut jb, ms(t0, 40)), Some(Ok(5)));
    }

    #[test]
    fn reorders_packets() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        push(&mut jb, t0, 1);
        push(&mut jb, t0, 3);
        push(&mut jb, t0, 2);
        let out: Vec<_> = (0..3).map(|_| pop(&mut jb, t0)).collect();
        assert_eq!(out, vec![Some(Ok(1)), Some(Ok(2)), Some(Ok(3))]);
        assert_eq!(jb.stats().reordered, 1);
    }

    #[test]
    fn earlier_packet_arriving_second_during_prefill_is_played_first() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        push(&mut jb, t0, 101);
        push(&mut jb, t0, 100);
        push(&mut jb, t0, 102);
        assert_eq!(pop(&mut jb, t0), Some(Ok(100)));
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn loss_yields_lost_marker() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        for s in [1, 2, 3] {
            push(&mut jb, t0, s);
        }
        assert_eq!(pop(&mut jb, t0), Some(Ok(1)));
        push(&mut jb, t0, 5);
        assert_eq!(pop(&mut jb, t0), Some(Ok(2)));
        push(&mut jb, t0, 6);
        assert_eq!(pop(&mut jb, t0), Some(Ok(3)));
        assert_eq!(pop(&mut jb, t0), Some(Err(4)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(5)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(6)));
        assert_eq!(jb.stats().lost, 1);
        // Packet 4 finally arrives: too late.
        push(&mut jb, t0, 4);
        assert_eq!(jb.stats().late, 1);
        assert!(jb.is_empty());
    }

    /// A non-audio packet of the stream (a telephone-event) on `seq`.
    fn pass(jb: &mut JitterBuffer, seq: u16) {
        let mut p = header(seq, 0, 7);
        p[1] = 101;
        p.extend_from_slice(&[1, 0, 0, 160]);
        jb.pass(&parse(&p).expect("valid"));
    }

    #[test]
    fn sequence_numbers_of_other_packets_are_skipped_not_lost() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8);
        jb.set_prefill(2);
        for s in [1, 2, 3] {
            push(&mut jb, t0, s);
        }
        pass(&mut jb, 4);
        push(&mut jb, t0, 6);
        assert_eq!(pop(&mut jb, t0), Some(Ok(1)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(2)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(3)));
        assert_eq!(jb.pop(t0), Some(Frame::Skipped { seq: 4 }));
        assert_eq!(jb.pop(t0), Some(Frame::Lost { seq: 5 }));
        assert_eq!(pop(&mut jb, t0), Some(Ok(6)));
        assert_eq!((jb.stats().lost, jb.stats().skipped), (1, 1));
        // Paused (buffer dry) while events use 7..=9, then 10, 12 arrive:
        // the skipped numbers are passed over, 11 is a loss when played.
        assert_eq!(pop(&mut jb, t0), None);
        for s in [7, 8, 9] {
            pass(&mut jb, s);
        }
        push(&mut jb, t0, 10);
        push(&mut jb, t0, 12);
        assert_eq!(pop(&mut jb, t0), Some(Ok(10)));
        assert_eq!(jb.pop(t0), Some(Frame::Lost { seq: 11 }));
        assert_eq!((jb.stats().lost, jb.stats().skipped), (2, 4));
        // Another SSRC's packet says nothing about this stream.
        jb.ssrc = Some(7);
        let mut p = header(13, 0, 8);
        p[1] = 101;
        jb.pass(&parse(&p).expect("valid"));
        assert!(jb.others.is_empty());
    }

    #[test]
    fn an_event_flood_cannot_grow_the_skip_set() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        push(&mut jb, t0, 1);
        for s in 0..5000u16 {
            pass(&mut jb, 2u16.wrapping_add(s % 3000));
        }
        assert!(jb.others.len() <= MAX_SKIPPED);
    }

    #[test]
    fn duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        push(&mut jb, t0, 1);
        push(&mut jb, t0, 1);
        push(&mut jb, t0, 2);
        push(&mut jb, t0, 3);
        assert_eq!(jb.len(), 3);
        assert_eq!(jb.stats().duplicates, 1);
        assert_eq!(pop(&mut jb, t0), Some(Ok(1)));
        push(&mut jb, t0, 1); // duplicate of an already played packet
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.received), (1, 1, 5));
    }

    #[test]
    fn wraps_at_65535() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        let arrivals = [65533u16, 65534, 0, 65535, 1, 3, 2, 4];
        let mut out = Vec::new();
        for (i, &s) in arrivals.iter().enumerate() {
            let now = ms(t0, 20 * i as u64);
            push(&mut jb, now, s);
            if i >= 2 {
                out.push(pop(&mut jb, now));
            }
        }
        while let Some(f) = pop(&mut jb, ms(t0, 1000)) {
            out.push(Some(f));
        }
        let expected: Vec<_> = [65533u16, 65534, 65535, 0, 1, 2, 3, 4]
            .iter()
            .map(|&s| Some(Ok(s)))
            .collect();
        assert_eq!(out, expected);
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.reordered, s.resets), (0, 0, 2, 0));
    }

    #[test]
    fn lost_marker_across_wrap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(2);
        push(&mut jb, t0, 65534);
        push(&mut jb, t0, 65535);
        assert_eq!(pop(&mut jb, t0), Some(Ok(65534)));
        push(&mut jb, t0, 1);
        assert_eq!(pop(&mut jb, t0), Some(Ok(65535)));
        assert_eq!(pop(&mut jb, t0), Some(Err(0)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(1)));
    }

    #[test]
    fn overflow_discards_oldest() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        for s in 0..10 {
            push(&mut jb, t0, s);
        }
        assert_eq!(jb.len(), 3);
        assert_eq!(jb.stats().overflow, 7);
        assert_eq!(pop(&mut jb, t0), Some(Ok(7)));
        push(&mut jb, t0, 3); // discarded earlier: late now
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn overflow_skips_missing_before_discarding_audio() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        for s in [1, 2, 3] {
            push(&mut jb, t0, s);
        }
        for _ in 0..3 {
            assert!(matches!(pop(&mut jb, t0), Some(Ok(_))));
        }
        // 4..=10 lost in a burst, then audio resumes quickly.
        for s in 11..15 {
            push(&mut jb, t0, s);
        }
        assert_eq!(jb.len(), 3);
        let s = jb.stats();
        assert_eq!((s.lost, s.overflow), (7, 1));
        assert_eq!(pop(&mut jb, t0), Some(Ok(12)));
    }

    #[test]
    fn underrun_then_resume_skips_gap_silently() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(2);
        jb.set_prefill(2);
        push(&mut jb, t0, 1);
        push(&mut jb, t0, 2);
        assert_eq!(pop(&mut jb, t0), Some(Ok(1)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(2)));
        assert_eq!(pop(&mut jb, t0), None);
        // Outage: 3..=9 never arrive; stream resumes at 10.
        push(&mut jb, ms(t0, 200), 10);
        assert_eq!(pop(&mut jb, ms(t0, 200)), None, "prefilling again");
        push(&mut jb, ms(t0, 220), 11);
        assert_eq!(pop(&mut jb, ms(t0, 220)), Some(Ok(10)));
        assert_eq!(jb.stats().lost, 7);
        // An old packet from before the outage is late, not replayed.
        push(&mut jb, ms(t0, 230), 2);
        push(&mut jb, ms(t0, 230), 5);
        assert_eq!(jb.stats().late, 2);
        assert_eq!(pop(&mut jb, ms(t0, 240)), Some(Ok(11)));
    }

    #[test]
    fn single_stray_jump_is_ignored() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        push(&mut jb, t0, 100);
        push(&mut jb, t0, 101);
        push(&mut jb, t0, 40_000); // corrupt sequence number
        push(&mut jb, t0, 102);
        let s = jb.stats();
        assert_eq!((s.resets, s.out_of_range), (0, 1));
        let out: Vec<_> = (0..3).map(|_| pop(&mut jb, t0)).collect();
        assert_eq!(out, vec![Some(Ok(100)), Some(Ok(101)), Some(Ok(102))]);
    }

    #[test]
    fn confirmed_jump_resets_stream() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        for s in [1000, 1001, 1002] {
            push(&mut jb, t0, s);
        }
        assert_eq!(pop(&mut jb, t0), Some(Ok(1000)));
        // A backwards step within the misorder window is just late.
        push(&mut jb, t0, 950);
        assert_eq!((jb.stats().late, jb.stats().resets), (1, 0));
        // Sender restarted with a new random sequence (backwards jump).
        push(&mut jb, t0, 7);
        push(&mut jb, t0, 8);
        push(&mut jb, t0, 9);
        assert_eq!(jb.stats().resets, 1);
        assert_eq!(pop(&mut jb, t0), Some(Ok(7)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(8)));
        assert_eq!(pop(&mut jb, t0), Some(Ok(9)));
        // Forward jump as well.
        push(&mut jb, t0, 20_000);
        push(&mut jb, t0, 20_001);
        assert_eq!(jb.stats().resets, 2);
        assert_eq!(pop(&mut jb, ms(t0, 100)), Some(Ok(20_000)));
    }

    #[test]
    fn ssrc_change_resets() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::default();
        let pkt = |seq: u16, ssrc: u32| {
            let mut p = header(seq, u32::from(seq) * 160, ssrc);
            p.extend_from_slice(&payload(seq));
            p
        };
        let a1 = pkt(500, 1);
        let a2 = pkt(501, 1);
        let b1 = pkt(502, 2);
        for p in [&a1, &a2, &b1] {
            jb.push_rtp(t0, &parse(p).expect("valid"));
        }
        assert_eq!(jb.stats().resets, 1);
        assert_eq!(jb.len(), 1, "old stream discarded");
        assert_eq!(pop(&mut jb, ms(t0, 60)), Some(Ok(502)));
    }

    #[test]
    fn simulated_network_with_jitter_delivers_everything() {
        let t0 = Instant::now();
        // 120 ms capacity, 60 ms playout delay: absorbs 35 ms of jitter.
        let mut jb = JitterBuffer::new(6);
        let mut lcg: u32 = 99;
        let mut rand = || {
            lcg = lcg.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (lcg >> 16) % 1000
        };
        // Sender: one packet per 20 ms starting at seq 65000 (wraps), with
        // 0..35 ms network jitter, 2% loss and 1% duplication.
        let mut arrivals: Vec<(u64, u16)> = Vec::new();
        let mut dropped = 0;
        for i in 0..1000u64 {
            let seq = 65000u16.wrapping_add(i as u16);
            let r = rand();
            // First and last packets always arrive so the range is known.
            if r < 20 && i != 0 && i != 999 {
                dropped += 1;
                continue;
            }
            let at = i * 20 + u64::from(rand() % 36);
            arrivals.push((at, seq));
            if r >= 990 {
                arrivals.push((at + 5, seq));
            }
        }
        arrivals.sort();
        let mut out = Vec::new();
        let mut next_arrival = 0;
        // Playout clock ticks every 20 ms, offset by 1 ms.
        for tick in 0..1100u64 {
            let now_ms = tick * 20 + 1;
            while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now_ms {
                let (at, seq) = arrivals[next_arrival];
                push(&mut jb, ms(t0, at), seq);
                next_arrival += 1;
            }
            if let Some(f) = pop(&mut jb, ms(t0, now_ms)) {
                out.push(f);
            }
        }
        // Output is strictly increasing (wrap-aware) with no repeats; gaps are
        // only allowed where playout re-buffered after an underrun.
        let seqs: Vec<u16> = out.iter().map(|f| f.unwrap_or_else(|s| s)).collect();
        assert_eq!(seqs.first(), Some(&65000));
        assert_eq!(seqs.last(), Some(&65000u16.wrapping_add(999)));
        let mut silent_skips = 0u64;
        for w in seqs.windows(2) {
            let step = w[1].wrapping_sub(w[0]);
            assert!((1..100).contains(&step), "disorder in {w:?}");
            silent_skips += u64::from(step - 1);
        }
        let lost_markers = out.iter().filter(|f| f.is_err()).count() as u64;
        let audio = out.len() as u64 - lost_markers;
        let s = jb.stats();
        assert_eq!(s.lost, lost_markers + silent_skips);
        assert_eq!(
            audio + s.lost + s.late + s.overflow,
            1000,
            "every seq accounted: {s:?}"
        );
        assert!(s.duplicates > 0 && s.reordered > 0);
        // Only real losses plus a little jitter beyond the 60 ms depth.
        assert!(
            s.lost >= dropped && s.lost + s.late <= dropped + 20,
            "{s:?}"
        );
        assert!(s.underruns <= 2 && s.overflow <= 2, "{s:?}");
        assert_eq!(s.resets, 0);
    }
}
