//! A token bucket, sans-IO: `rate` tokens a second up to `burst`. Used by
//! the per-source checks (`datagram_rate`, the INVITE rate in `limits`);
//! rate and burst stay with the caller (one configuration for a table of
//! buckets), so a bucket is 24 bytes.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(super) struct TokenBucket {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens at `now`.
    pub(super) fn full(now: Instant, burst: f64) -> Self {
        TokenBucket {
            tokens: burst,
            refilled: now,
        }
    }

    /// Refill up to `now`, then take a token if there is one (whether there was).
    pub(super) fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens = self.level(now, rate, burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled by `now`: its source has been idle
    /// long enough to be forgotten without changing any later answer.
    pub(super) fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.level(now, rate, burst) >= burst
    }

    fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_and_full_again_when_idle() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(t0, 3.0);
        assert!((0..3).all(|_| b.take(t0, 2.0, 3.0)));
        assert!(!b.take(t0, 2.0, 3.0));
        assert!(!b.is_full(t0, 2.0, 3.0));
        // 2 a second: one more after half a second, none in between.
        assert!(!b.take(t0 + Duration::from_millis(400), 2.0, 3.0));
        assert!(b.take(t0 + Duration::from_millis(600), 2.0, 3.0));
        assert!(!b.take(t0 + Duration::from_millis(700), 2.0, 3.0));
        // Refilled to the burst, never above it.
        let later = t0 + Duration::from_secs(60);
        assert!(b.is_full(later, 2.0, 3.0));
        assert!((0..3).all(|_| b.take(later, 2.0, 3.0)));
        assert!(!b.take(later, 2.0, 3.0));
    }

    #[test]
    fn a_clock_read_out_of_order_never_adds_tokens() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(t0 + Duration::from_secs(1), 1.0);
        assert!(b.take(t0 + Duration::from_secs(1), 1.0, 1.0));
        assert!(!b.take(t0, 1.0, 1.0));
    }
}
