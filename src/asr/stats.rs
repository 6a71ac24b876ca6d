//! Process-wide speech-decoder counters, always on and cheap (relaxed
//! atomics): how many utterances wait for a decoder thread, how many were
//! refused because every decoder was busy, and how long each took from being
//! queued to its answer — the part of a caller's wait after the endpointer's
//! silence timer that voxgate itself adds. Read by `/metrics` at scrape time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in milliseconds (then +Inf).
pub const LATENCY_BOUNDS_MS: [u64; 12] =
    [25, 50, 100, 200, 300, 400, 600, 800, 1000, 1500, 2500, 5000];

/// Global decoder counters of this process.
pub struct AsrStats {
    queued: AtomicI64,
    busy: AtomicU64,
    /// One count per bound of [`LATENCY_BOUNDS_MS`], then +Inf.
    latency: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_us: AtomicU64,
}

/// The process's one set of counters: the decoder pool adds to it.
pub static STATS: AsrStats = AsrStats {
    queued: AtomicI64::new(0),
    busy: AtomicU64::new(0),
    latency: [const { AtomicU64::new(0) }; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_us: AtomicU64::new(0),
};

/// The counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Utterances waiting for a decoder thread now.
    pub queued: u64,
    /// Utterances refused because the queue was full, so far.
    pub busy: u64,
    /// Per bucket (not cumulative): counts for each bound, then +Inf.
    pub latency: Vec<u64>,
    /// Sum of all latencies, in seconds.
    pub latency_sum: f64,
}

impl AsrStats {
    pub(super) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn refused(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// An utterance answered `took` after it was queued.
    pub(super) fn answered(&self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Counters as they are now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            // Never negative: a decrement may be seen before its increment.
            queued: u64::try_from(self.queued.load(Ordering::Relaxed)).unwrap_or(0),
            busy: self.busy.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            latency_sum: self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let s = AsrStats {
            queued: AtomicI64::new(0),
            busy: AtomicU64::new(0),
            latency: [const { AtomicU64::new(0) }; LATENCY_BOUNDS_MS.len() + 1],
            latency_sum_us: AtomicU64::new(0),
        };
        s.answered(Duration::from_millis(10));
        s.answered(Duration::from_millis(400));
        s.answered(Duration::from_millis(401));
        s.answered(Duration::from_secs(9));
        s.queued();
        s.queued();
        s.dequeued();
        s.refused();
        let snap = s.snapshot();
        assert_eq!(snap.latency[0], 1);
        assert_eq!(snap.latency[5], 1, "400 ms is within the 400 ms bucket");
        assert_eq!(snap.latency[6], 1);
        assert_eq!(snap.latency[LATENCY_BOUNDS_MS.len()], 1, "+Inf");
        assert_eq!(snap.latency.iter().sum::<u64>(), 4);
        assert!((snap.latency_sum - 9.811).abs() < 1e-6);
        assert_eq!((snap.queued, snap.busy), (1, 1));
    }
}
