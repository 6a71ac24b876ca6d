//! The media half of a B2BUA bridge: two call legs, each with its own
//! [`super::core::MediaCore`], socket, task and 20 ms pacing, joined by a
//! pair of bounded queues.
//!
//! [`pair`] makes the two [`BridgeEnd`]s; each goes to one leg as
//! [`super::core::MediaCommand::Bridge`]. While bridged, every frame a leg
//! plays out of its jitter buffer (decoded to linear PCM, so PCMU↔PCMA
//! transcoding falls out) is queued for the other leg, which sends it at its
//! next tick, in its own codec, payload type, sequence and timestamp, in
//! place of its silence. Digits the leg receives (after the merger) are
//! queued the same way and re-sent by the other leg as RFC 4733 events on its
//! own telephone-event payload type (or as in-band tones when it negotiated
//! none).
//!
//! Why queues shared by the two cores rather than a channel through the
//! session loops: a leg's core pushes in its playout half and pops in the
//! next send half of the other leg, with no extra wake-up, allocation or
//! task hop; the cores stay free of clocks and sockets (time is still an
//! argument), so two bridged cores run on simulated time in one test. The
//! queue is a fixed ring under a `Mutex`: the two legs touch it once per
//! 20 ms each, so it is practically never contended (an uncontended lock is
//! one atomic exchange; `bench/bridge_relay.rs` measures the whole relay).
//!
//! Latency cannot grow: the ring holds [`QUEUE_FRAMES`] frames and drops the
//! oldest when full, and a backlog that persists (a late tick of the other
//! leg delivered several frames at once) is trimmed by one frame, both
//! counted in [`super::core::MediaStats::relay_dropped`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::dtmf::Digit;

/// Samples of one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// One frame of linear PCM (8 kHz, 20 ms).
pub type PcmFrame = [i16; FRAME_SAMPLES];

/// Frames a direction of the bridge holds at most (80 ms); the oldest is
/// dropped when a new one arrives at a full queue.
pub const QUEUE_FRAMES: usize = 4;

/// Digits waiting to be re-sent at most; more are dropped (a burst that
/// long is no key press).
pub const DIGIT_QUEUE: usize = 16;

/// A backlog of two or more frames left after this many consecutive sends
/// loses one frame: the other leg delivered a burst (a late tick) and the
/// extra latency would otherwise stay for the rest of the call.
const TRIM_AFTER_TICKS: u32 = 10;

/// One key press to re-send on the other leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayDigit {
    /// The key.
    pub digit: Digit,
    /// How long it was held, if the receiving method knew it when it was
    /// reported (SIP INFO usually does, RFC 4733 and in-band report early).
    pub duration_ms: Option<u32>,
}

/// One direction: frames and digits from the producing leg to the consuming
/// one.
struct Lane {
    frames: [PcmFrame; QUEUE_FRAMES],
    /// When each frame was queued (for the relay-wait histogram).
    stamps: [Option<Instant>; QUEUE_FRAMES],
    head: usize,
    len: usize,
    /// Frames dropped at a full queue, not yet reported to the consumer.
    dropped: u64,
    digits: std::collections::VecDeque<RelayDigit>,
}

impl Lane {
    fn new() -> Self {
        Self {
            frames: [[0; FRAME_SAMPLES]; QUEUE_FRAMES],
            stamps: [None; QUEUE_FRAMES],
            head: 0,
            len: 0,
            dropped: 0,
            digits: std::collections::VecDeque::with_capacity(DIGIT_QUEUE),
        }
    }

    fn drop_oldest(&mut self) {
        self.head = (self.head + 1) % QUEUE_FRAMES;
        self.len -= 1;
        self.dropped += 1;
    }
}

/// One leg's end of a bridge: what it sends to the other leg and what the
/// other leg sent to it. Made in twos by [`pair`]; hand each to its leg with
/// [`super::core::MediaCommand::Bridge`]. Dropping it (or
/// [`super::core::MediaCommand::Unbridge`]) ends the relay in both
/// directions for this leg; the other leg then finds nothing queued, sends
/// silence, and stops queueing for it.
pub struct BridgeEnd {
    /// Which of the pair: 0 for the first end [`pair`] returns (the
    /// caller's, in a transfer), 1 for the second (the agent's).
    side: usize,
    out: Arc<Mutex<Lane>>,
    inbound: Arc<Mutex<Lane>>,
    /// Consecutive pops that left a backlog of two or more frames.
    backlog_ticks: u32,
}

impl fmt::Debug for BridgeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeEnd")
            .field("peer_connected", &self.peer_connected())
            .finish_non_exhaustive()
    }
}

/// Two ends of one bridge: give one to each leg.
pub fn pair() -> (BridgeEnd, BridgeEnd) {
    let a_to_b = Arc::new(Mutex::new(Lane::new()));
    let b_to_a = Arc::new(Mutex::new(Lane::new()));
    (
        BridgeEnd {
            side: 0,
            out: Arc::clone(&a_to_b),
            inbound: Arc::clone(&b_to_a),
            backlog_ticks: 0,
        },
        BridgeEnd {
            side: 1,
            out: b_to_a,
            inbound: a_to_b,
            backlog_ticks: 0,
        },
    )
}

/// A poisoned lock only means the other leg's task panicked mid-push; the
/// ring's indices are updated after the copy, so its data is still sound.
fn lock(lane: &Mutex<Lane>) -> MutexGuard<'_, Lane> {
    lane.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one [`BridgeEnd::pop_frame`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Popped {
    /// A frame was copied out.
    pub frame: bool,
    /// Frames lost in this direction since the last pop (full queue or
    /// backlog trim).
    pub dropped: u64,
}

impl BridgeEnd {
    /// This leg sent a packet `interval` after its previous one: counted
    /// in its side's send-interval histogram ([`RelaySnapshot::send`]).
    pub fn record_send(&self, interval: Duration) {
        let us = interval.as_micros() as u64;
        RELAY.send[self.side][crate::media::stats::bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the other leg still holds its end.
    pub fn peer_connected(&self) -> bool {
        Arc::strong_count(&self.inbound) > 1
    }

    /// Queue one played-out frame for the other leg (dropping the oldest
    /// queued one when full). The core calls it; public for benches.
    pub fn push_frame(&self, now: Instant, pcm: &[i16]) {
        let mut lane = lock(&self.out);
        if lane.len == QUEUE_FRAMES {
            lane.drop_oldest();
            RELAY.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let slot = (lane.head + lane.len) % QUEUE_FRAMES;
        let n = pcm.len().min(FRAME_SAMPLES);
        lane.frames[slot][..n].copy_from_slice(&pcm[..n]);
        lane.frames[slot][n..].fill(0);
        lane.stamps[slot] = Some(now);
        lane.len += 1;
        RELAY.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Take the oldest frame the other leg queued into `out`. The core
    /// calls it; public for benches.
    pub fn pop_frame(&mut self, now: Instant, out: &mut PcmFrame) -> Popped {
        let mut lane = lock(&self.inbound);
        let mut popped = Popped::default();
        if lane.len > 0 {
            let head = lane.head;
            out.copy_from_slice(&lane.frames[head]);
            if let Some(at) = lane.stamps[head].take() {
                record_wait(now.saturating_duration_since(at));
            }
            lane.head = (head + 1) % QUEUE_FRAMES;
            lane.len -= 1;
            popped.frame = true;
        }
        // A backlog that stays is latency added for good: trim it.
        if lane.len >= 2 {
            self.backlog_ticks += 1;
            if self.backlog_ticks >= TRIM_AFTER_TICKS {
                lane.drop_oldest();
                RELAY.dropped.fetch_add(1, Ordering::Relaxed);
                self.backlog_ticks = 0;
            }
        } else {
            self.backlog_ticks = 0;
        }
        popped.dropped = std::mem::take(&mut lane.dropped);
        popped
    }

    /// Queue a digit for the other leg; false when its queue is full.
    pub(crate) fn push_digit(&self, digit: RelayDigit) -> bool {
        let mut lane = lock(&self.out);
        if lane.digits.len() >= DIGIT_QUEUE {
            return false;
        }
        lane.digits.push_back(digit);
        true
    }

    /// The next digit the other leg received, if any.
    pub(crate) fn pop_digit(&self) -> Option<RelayDigit> {
        lock(&self.inbound).digits.pop_front()
    }
}

/// Width of one relay-wait histogram bucket, in microseconds.
pub const WAIT_BUCKET_US: u64 = 500;
/// Relay-wait buckets below the overflow bucket (0.5 ms each: 0–100 ms).
pub const WAIT_BUCKETS: usize = 200;

/// Process-wide relay counters (all bridges), for benches and metrics:
/// frames relayed, frames dropped, and how long frames waited in the queue
/// (the latency the bridge adds on top of each leg's jitter buffer).
pub struct RelayStats {
    frames: AtomicU64,
    dropped: AtomicU64,
    wait: [AtomicU64; WAIT_BUCKETS + 1],
    /// Send intervals of bridged legs, by side (first end of [`pair`],
    /// second end), in the buckets of [`crate::media::stats`].
    send: [[AtomicU64; SEND_BUCKETS]; 2],
    /// The snapshot of the last [`RelayStats::report`].
    last: Mutex<Option<RelaySnapshot>>,
}

const SEND_BUCKETS: usize = crate::media::stats::BUCKETS + 1;

/// The process's relay counters.
pub static RELAY: RelayStats = RelayStats {
    frames: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    wait: [const { AtomicU64::new(0) }; WAIT_BUCKETS + 1],
    send: [const { [const { AtomicU64::new(0) }; SEND_BUCKETS] }; 2],
    last: Mutex::new(None),
};

fn record_wait(d: Duration) {
    let bucket = ((d.as_micros() as u64 / WAIT_BUCKET_US) as usize).min(WAIT_BUCKETS);
    RELAY.wait[bucket].fetch_add(1, Ordering::Relaxed);
}

impl RelayStats {
    /// Counters as they are now.
    pub fn snapshot(&self) -> RelaySnapshot {
        RelaySnapshot {
            frames: self.frames.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            wait: self
                .wait
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            send: [0, 1].map(|i| {
                self.send[i]
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed))
                    .collect()
            }),
        }
    }

    /// The counters since the previous report (or the start), as
    /// `frames=.. dropped=.. wait_p50_ms=.. …` for `serve`'s SIGUSR1 log.
    pub fn report(&self) -> String {
        let now = self.snapshot();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let window = match last.as_ref() {
            Some(l) => now.since(l),
            None => now.clone(),
        };
        *last = Some(now);
        window.summary()
    }
}

/// The relay counters at one moment (or the difference of two).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RelaySnapshot {
    /// Frames queued for another leg, all bridges.
    pub frames: u64,
    /// Frames dropped from a queue (full, or a backlog trimmed).
    pub dropped: u64,
    /// Histogram of the time frames waited in the queue:
    /// [`WAIT_BUCKETS`] buckets of 0.5 ms, then one overflow bucket.
    pub wait: Vec<u64>,
    /// Send intervals of bridged legs: the first ends of [`pair`] (the
    /// callers' legs), then the second (the agents'); buckets as
    /// [`crate::media::stats::Snapshot::send_interval`].
    pub send: [Vec<u64>; 2],
}

impl RelaySnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RelaySnapshot) -> RelaySnapshot {
        RelaySnapshot {
            frames: self.frames.saturating_sub(earlier.frames),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            wait: self
                .wait
                .iter()
                .zip(earlier.wait.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            send: [0, 1].map(|i| {
                self.send[i]
                    .iter()
                    .zip(earlier.send[i].iter().chain(std::iter::repeat(&0)))
                    .map(|(a, b)| a.saturating_sub(*b))
                    .collect()
            }),
        }
    }

    /// The `p`-th percentile of side `side`'s send interval in ms (as
    /// [`crate::media::stats::Snapshot::send_interval_percentile_ms`]).
    pub fn send_percentile_ms(&self, side: usize, p: f64) -> Option<f64> {
        crate::media::stats::Snapshot {
            send_interval: self.send.get(side)?.clone(),
            ..Default::default()
        }
        .send_interval_percentile_ms(p)
    }

    /// `frames=.. dropped=.. wait_p50_ms=.. wait_p99_ms=.. caller_send_p50_ms=..
    /// caller_send_p99_ms=.. agent_send_p50_ms=.. agent_send_p99_ms=..`
    /// (callers: the first ends of [`pair`]; `-` when nothing was measured).
    pub fn summary(&self) -> String {
        let ms = |v: Option<f64>| match v {
            None => "-".to_string(),
            Some(v) if v.is_infinite() => ">max".to_string(),
            Some(v) => format!("{v:.1}"),
        };
        format!(
            "frames={} dropped={} wait_p50_ms={} wait_p99_ms={} caller_send_p50_ms={} caller_send_p99_ms={} agent_send_p50_ms={} agent_send_p99_ms={}",
            self.frames,
            self.dropped,
            ms(self.wait_percentile_ms(50.0)),
            ms(self.wait_percentile_ms(99.0)),
            ms(self.send_percentile_ms(0, 50.0)),
            ms(self.send_percentile_ms(0, 99.0)),
            ms(self.send_percentile_ms(1, 50.0)),
            ms(self.send_percentile_ms(1, 99.0)),
        )
    }

    /// The `p`-th percentile (0 < p ≤ 100) of the queue wait in ms (upper
    /// bucket edge, nearest rank); infinite in the overflow bucket, None
    /// when nothing was relayed.
    pub fn wait_percentile_ms(&self, p: f64) -> Option<f64> {
        let total: u64 = self.wait.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.wait.iter().enumerate() {
            seen += n;
            if seen >= rank {
                if i >= WAIT_BUCKETS {
                    return Some(f64::INFINITY);
                }
                return Some((i as u64 + 1) as f64 * WAIT_BUCKET_US as f64 / 1000.0);
            }
        }
        Some(f64::INFINITY)
    }
}

/// The row and column frequencies of a key (for in-band re-sending).
pub(crate) fn dtmf_freqs(digit: Digit) -> (f32, f32) {
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (r, c) = match digit.as_char() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        _ => (3, 3),
    };
    (ROWS[r], COLS[c])
}

/// Ringback cadence: tone on for this long…
pub const RINGBACK_ON: Duration = Duration::from_secs(2);
/// …then off for this long (North American ringback, ANSI T1.401).
pub const RINGBACK_OFF: Duration = Duration::from_secs(4);
/// The two ringback frequencies (Hz), each at about −19 dBm0.
pub const RINGBACK_FREQS: (f32, f32) = (440.0, 480.0);

/// 440 and 480 Hz both complete whole cycles in 200 samples (25 ms), so one
/// table of 200 samples is the whole tone.
const RINGBACK_PERIOD: usize = 200;

/// One 200-sample period of the ringback tone, built once.
fn ringback_period() -> &'static [i16; RINGBACK_PERIOD] {
    static TABLE: std::sync::OnceLock<[i16; RINGBACK_PERIOD]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        // −19 dBm0 per tone: 22 706 (0 dBm0 peak) × 10^(−19/20).
        let amp = 22_706.0 * 10f32.powf(-19.0 / 20.0);
        let mut t = [0i16; RINGBACK_PERIOD];
        for (i, s) in t.iter_mut().enumerate() {
            let x = i as f32 / 8000.0;
            let v = (std::f32::consts::TAU * RINGBACK_FREQS.0 * x).sin()
                + (std::f32::consts::TAU * RINGBACK_FREQS.1 * x).sin();
            *s = (amp * v) as i16;
        }
        t
    })
}

/// Samples of one whole ringback cadence.
const RINGBACK_CYCLE: u32 = ((RINGBACK_ON.as_millis() + RINGBACK_OFF.as_millis()) * 8) as u32;
const RINGBACK_ON_SAMPLES: u32 = (RINGBACK_ON.as_millis() * 8) as u32;

/// The ringback frame starting `pos` samples into the cadence, into `out`;
/// returns the position of the next frame.
pub(crate) fn ringback_frame(pos: u32, out: &mut PcmFrame) -> u32 {
    let table = ringback_period();
    for (i, s) in out.iter_mut().enumerate() {
        let p = pos + i as u32;
        *s = if p % RINGBACK_CYCLE < RINGBACK_ON_SAMPLES {
            table[p as usize % RINGBACK_PERIOD]
        } else {
            0
        };
    }
    (pos + FRAME_SAMPLES as u32) % RINGBACK_CYCLE
}

/// One frame of a DTMF tone pair (about −8 dBm0 per tone), sample `start`
/// of the tone onwards, into `out`.
pub(crate) fn dtmf_frame(digit: Digit, start: u32, out: &mut PcmFrame) {
    let (lo, hi) = dtmf_freqs(digit);
    let amp = 22_706.0 * 10f32.powf(-8.0 / 20.0);
    for (i, s) in out.iter_mut().enumerate() {
        let x = (start + i as u32) as f32 / 8000.0;
        let v = (std::f32::consts::TAU * lo * x).sin() + (std::f32::consts::TAU * hi * x).sin();
        *s = (amp * v) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_intervals_are_counted_by_side() {
        let before = RELAY.snapshot();
        let (a, b) = pair();
        a.record_send(Duration::from_millis(20));
        b.record_send(Duration::from_millis(35));
        b.record_send(Duration::from_millis(35));
        let w = RELAY.snapshot().since(&before);
        // Other tests may send meanwhile: at least ours are there, each on its side.
        assert!(w.send[0][crate::media::stats::bucket_of(20_000)] >= 1);
        assert!(w.send[1][crate::media::stats::bucket_of(35_000)] >= 2);
        assert!(
            w.summary().contains("agent_send_p99_ms="),
            "{}",
            w.summary()
        );
    }

    fn frame(v: i16) -> PcmFrame {
        [v; FRAME_SAMPLES]
    }

    #[test]
    fn frames_cross_in_order_and_a_full_queue_drops_the_oldest() {
        let (a, mut b) = pair();
        let t = Instant::now();
        for v in 1..=6 {
            a.push_frame(t, &frame(v));
        }
        let mut out = frame(0);
        let p = b.pop_frame(t, &mut out);
        assert!(p.frame);
        assert_eq!(p.dropped, 2, "6 pushed into 4 places");
        assert_eq!(out[0], 3, "the oldest went");
        for v in 4..=6 {
            assert!(b.pop_frame(t, &mut out).frame);
            assert_eq!(out[0], v);
        }
        assert_eq!(b.pop_frame(t, &mut out), Popped::default());
        // Nothing crossed the other way.
        let mut a = a;
        assert!(!a.pop_frame(t, &mut out).frame);
    }

    #[test]
    fn a_lasting_backlog_is_trimmed() {
        let (a, mut b) = pair();
        let t = Instant::now();
        // A burst of three, then one in one out: two stay queued.
        for _ in 0..3 {
            a.push_frame(t, &frame(1));
        }
        let mut out = frame(0);
        let mut dropped = 0;
        for _ in 0..TRIM_AFTER_TICKS + 2 {
            a.push_frame(t, &frame(1));
            dropped += b.pop_frame(t, &mut out).dropped;
        }
        // The trim is reported with the next pop.
        dropped += b.pop_frame(t, &mut out).dropped;
        assert_eq!(dropped, 1);
    }

    #[test]
    fn digits_cross_and_the_peer_is_seen_to_leave() {
        let (a, b) = pair();
        let d = RelayDigit {
            digit: Digit::from_char('7').unwrap(),
            duration_ms: None,
        };
        assert!(a.push_digit(d));
        assert_eq!(b.pop_digit(), Some(d));
        assert_eq!(b.pop_digit(), None);
        for _ in 0..DIGIT_QUEUE {
            assert!(b.push_digit(d));
        }
        assert!(!b.push_digit(d), "bounded");
        assert!(a.peer_connected());
        drop(b);
        assert!(!a.peer_connected());
    }

    #[test]
    fn ringback_is_on_for_2_s_then_off_for_4_s() {
        let mut pos = 0;
        let mut out = frame(0);
        let mut energy = Vec::new();
        for _ in 0..600 {
            pos = ringback_frame(pos, &mut out);
            energy.push(out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>());
        }
        assert!(energy[..100].iter().all(|&e| e > 1e6));
        assert!(energy[100..300].iter().all(|&e| e == 0.0));
        assert!(energy[300..400].iter().all(|&e| e > 1e6), "next cycle");
    }
}
