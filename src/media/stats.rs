//! Process-wide RTP counters for load measurement, always on and cheap:
//! one relaxed atomic add per packet, no locks.
//!
//! Every media session feeds the global [`STATS`]: packets sent and received,
//! frames the jitter buffer gave up on, and a histogram of the real interval
//! between two consecutive sends of the same call (0.1 ms buckets up to
//! 60 ms, plus one overflow bucket). [`Snapshot`]s taken at two moments can be
//! subtracted to describe a window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Width of one histogram bucket, in microseconds.
pub const BUCKET_US: u64 = 100;
/// Buckets below the overflow bucket (0.1 ms each: 0–60 ms).
pub const BUCKETS: usize = 600;

/// Upper bounds (ms) of the buckets of calls' jitter at their end; one
/// overflow bucket follows.
pub const JITTER_BOUNDS_MS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 80.0, 120.0, 200.0];

/// Global RTP counters of this process.
pub struct RtpStats {
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    /// Calls' interarrival jitter at their end: one count per call in its
    /// [`JITTER_BOUNDS_MS`] bucket (then overflow), and the sum in µs.
    jitter: [AtomicU64; JITTER_BOUNDS_MS.len() + 1],
    jitter_sum_us: AtomicU64,
    /// `BUCKETS` regular buckets, then overflow (≥ 60 ms).
    send_interval: [AtomicU64; BUCKETS + 1],
}

/// The process's one set of counters: the media cores add to it, `serve`
/// logs its snapshots.
pub static STATS: RtpStats = RtpStats::new();

impl RtpStats {
    const fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            jitter: [const { AtomicU64::new(0) }; JITTER_BOUNDS_MS.len() + 1],
            jitter_sum_us: AtomicU64::new(0),
            send_interval: [const { AtomicU64::new(0) }; BUCKETS + 1],
        }
    }

    /// Counters as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let mut hist = vec![0u64; BUCKETS + 1];
        for (h, a) in hist.iter_mut().zip(self.send_interval.iter()) {
            *h = a.load(Ordering::Relaxed);
        }
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            send_interval: hist,
            call_jitter: self
                .jitter
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            call_jitter_sum_us: self.jitter_sum_us.load(Ordering::Relaxed),
        }
    }
}

/// Bucket of a call's jitter in ms ([`JITTER_BOUNDS_MS`], then overflow).
pub fn jitter_bucket_of(ms: f64) -> usize {
    JITTER_BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(JITTER_BOUNDS_MS.len())
}

/// A call ended with this interarrival jitter (ms) on its inbound audio.
pub fn record_call_jitter(ms: f64) {
    let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
    STATS.jitter[jitter_bucket_of(ms)].fetch_add(1, Ordering::Relaxed);
    STATS
        .jitter_sum_us
        .fetch_add((ms * 1000.0).round() as u64, Ordering::Relaxed);
}

/// Bucket index of an interval in microseconds.
pub fn bucket_of(interval_us: u64) -> usize {
    ((interval_us / BUCKET_US) as usize).min(BUCKETS)
}

/// One RTP packet went out at `now`; `last` is this call's previous send.
#[inline]
pub fn record_send(last: &mut Option<Instant>, now: Instant) {
    STATS.sent.fetch_add(1, Ordering::Relaxed);
    if let Some(prev) = last.replace(now) {
        let us = now.saturating_duration_since(prev).as_micros() as u64;
        STATS.send_interval[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }
}

/// One RTP packet came in.
#[inline]
pub fn record_received() {
    STATS.received.fetch_add(1, Ordering::Relaxed);
}

/// The jitter buffer played out a lost frame.
#[inline]
pub fn record_lost() {
    STATS.lost.fetch_add(1, Ordering::Relaxed);
}

/// The counters at one moment (or the difference of two moments).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// RTP packets sent, all calls.
    pub sent: u64,
    /// RTP packets received, all calls.
    pub received: u64,
    /// Lost frames played out, all calls.
    pub lost: u64,
    /// Histogram of the time between consecutive sends of a call:
    /// [`BUCKETS`] buckets of 0.1 ms, then one overflow bucket (≥ 60 ms).
    pub send_interval: Vec<u64>,
    /// Calls' jitter at their end, per [`JITTER_BOUNDS_MS`] bucket (not
    /// cumulative), then the overflow bucket.
    pub call_jitter: Vec<u64>,
    /// The sum of those calls' jitter, in µs.
    pub call_jitter_sum_us: u64,
}

impl Snapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut hist = self.send_interval.clone();
        for (h, e) in hist.iter_mut().zip(earlier.send_interval.iter()) {
            *h = h.saturating_sub(*e);
        }
        Snapshot {
            sent: self.sent.saturating_sub(earlier.sent),
            received: self.received.saturating_sub(earlier.received),
            lost: self.lost.saturating_sub(earlier.lost),
            send_interval: hist,
            call_jitter: self
                .call_jitter
                .iter()
                .zip(earlier.call_jitter.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            call_jitter_sum_us: self
                .call_jitter_sum_us
                .saturating_sub(earlier.call_jitter_sum_us),
        }
    }

    /// Number of send intervals recorded.
    pub fn intervals(&self) -> u64 {
        self.send_interval.iter().sum()
    }

    /// Intervals of at least `ms` milliseconds (bucket resolution).
    pub fn intervals_at_least_ms(&self, ms: f64) -> u64 {
        let from = bucket_of((ms * 1000.0) as u64);
        self.send_interval.iter().skip(from).sum()
    }

    /// The `p`-th percentile (0 < p ≤ 100) of the send interval in ms, as the
    /// upper edge of the bucket holding it (nearest-rank method);
    /// `f64::INFINITY` when it falls in the overflow bucket, None when empty.
    pub fn send_interval_percentile_ms(&self, p: f64) -> Option<f64> {
        let total = self.intervals();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, n) in self.send_interval.iter().enumerate() {
            seen += n;
            if seen >= rank {
                if i >= BUCKETS {
                    return Some(f64::INFINITY);
                }
                return Some((i as u64 + 1) as f64 * BUCKET_US as f64 / 1000.0);
            }
        }
        Some(f64::INFINITY)
    }

    /// `sent=.. received=.. lost=.. send_interval_p50_ms=.. p99_ms=.. …`
    pub fn summary(&self) -> String {
        let pct = |p: f64| match self.send_interval_percentile_ms(p) {
            None => "-".to_string(),
            Some(v) if v.is_infinite() => format!(">{}", BUCKETS as u64 * BUCKET_US / 1000),
            Some(v) => format!("{v:.1}"),
        };
        format!(
            "sent={} received={} lost={} send_interval_p50_ms={} p99_ms={} p999_ms={} intervals={} over_30ms={}",
            self.sent,
            self.received,
            self.lost,
            pct(50.0),
            pct(99.0),
            pct(99.9),
            self.intervals(),
            self.intervals_at_least_ms(30.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(points: &[(usize, u64)]) -> Snapshot {
        let mut s = Snapshot {
            send_interval: vec![0; BUCKETS + 1],
            ..Snapshot::default()
        };
        for &(b, n) in points {
            s.send_interval[b] = n;
        }
        s
    }

    #[test]
    fn buckets_are_tenths_of_a_millisecond_with_overflow() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(99), 0);
        assert_eq!(bucket_of(100), 1);
        assert_eq!(bucket_of(20_000), 200);
        assert_eq!(bucket_of(59_999), 599);
        assert_eq!(bucket_of(60_000), BUCKETS);
        assert_eq!(bucket_of(u64::MAX), BUCKETS);
    }

    #[test]
    fn percentiles_use_nearest_rank_and_bucket_upper_edge() {
        // 98 intervals of 20.0–20.1 ms, one of 25.0–25.1 ms, one of 40.0–40.1 ms.
        let s = hist(&[(200, 98), (250, 1), (400, 1)]);
        assert_eq!(s.intervals(), 100);
        assert_eq!(s.send_interval_percentile_ms(50.0), Some(20.1));
        assert_eq!(s.send_interval_percentile_ms(98.0), Some(20.1));
        assert_eq!(s.send_interval_percentile_ms(99.0), Some(25.1));
        assert_eq!(s.send_interval_percentile_ms(100.0), Some(40.1));
        assert_eq!(s.intervals_at_least_ms(30.0), 1);
        assert_eq!(s.intervals_at_least_ms(25.0), 2);
    }

    #[test]
    fn percentile_in_overflow_is_infinite_and_empty_is_none() {
        assert_eq!(hist(&[]).send_interval_percentile_ms(50.0), None);
        let s = hist(&[(200, 1), (BUCKETS, 3)]);
        assert_eq!(s.send_interval_percentile_ms(50.0), Some(f64::INFINITY));
        assert_eq!(s.send_interval_percentile_ms(25.0), Some(20.1));
        assert!(s.summary().contains("send_interval_p50_ms=>60"));
    }

    #[test]
    fn window_is_the_difference_of_two_snapshots() {
        let mut a = hist(&[(200, 10)]);
        a.sent = 11;
        a.received = 5;
        let mut b = hist(&[(200, 30), (300, 2)]);
        b.sent = 43;
        b.received = 9;
        b.lost = 1;
        let w = b.since(&a);
        assert_eq!((w.sent, w.received, w.lost), (32, 4, 1));
        assert_eq!(w.intervals(), 22);
        assert_eq!(w.send_interval_percentile_ms(99.0), Some(30.1));
    }

    #[test]
    fn call_jitter_lands_in_its_bucket() {
        assert_eq!(jitter_bucket_of(0.0), 0);
        assert_eq!(jitter_bucket_of(1.0), 0);
        assert_eq!(jitter_bucket_of(1.5), 1);
        assert_eq!(jitter_bucket_of(20.0), 4);
        assert_eq!(jitter_bucket_of(200.0), 9);
        assert_eq!(jitter_bucket_of(200.1), JITTER_BOUNDS_MS.len());
        let before = STATS.snapshot();
        record_call_jitter(7.5);
        let w = STATS.snapshot().since(&before);
        // Other tests may record concurrently: at least our own effect.
        assert!(w.call_jitter[3] >= 1);
        assert!(w.call_jitter_sum_us >= 7500);
    }

    #[test]
    fn record_send_counts_intervals_between_consecutive_sends() {
        let before = STATS.snapshot();
        let t0 = Instant::now();
        let mut last = None;
        record_send(&mut last, t0);
        record_send(&mut last, t0 + std::time::Duration::from_micros(20_050));
        let w = STATS.snapshot().since(&before);
        // Other tests may send concurrently: check at least our own effect.
        assert!(w.sent >= 2);
        assert!(w.send_interval[200] >= 1);
        assert_eq!(last, Some(t0 + std::time::Duration::from_micros(20_050)));
    }
}
