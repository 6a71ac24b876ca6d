//! Datagrams per source address, checked before a UDP datagram is parsed
//! (`limits.datagram_rate`), as Kamailio's pike checks every request.
//!
//! Parsing a SIP-looking datagram costs the SIP thread ~100 µs (more with
//! folded headers); one source sending 20,000 a second saturates it, and the
//! kernel then drops other callers' INVITEs and ACKs with the flood. A token
//! bucket per address sheds such a source for the price of a hash lookup.
//! The INVITE limits in `limits.rs` still judge what gets through.
//!
//! Sans-IO: the caller passes `now`. Trusted peers are exempt (a proxy
//! carries many callers). The table holds at most [`MAX_SOURCES`] addresses;
//! idle ones (bucket full again) are dropped when it fills, and a source
//! that finds it full of busy ones passes unchecked: failing open keeps a
//! flood from many forged addresses from locking real callers out, which a
//! bucket shared by the overflow would do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::bucket::TokenBucket;

/// Addresses tracked at most (~48 bytes each).
pub const MAX_SOURCES: usize = 65_536;

/// Token buckets of datagrams by source address.
#[derive(Debug)]
pub struct DatagramRate {
    /// Datagrams per second (the refill) and the bucket's size: one
    /// second's worth, so a burst of retransmissions passes.
    rate: f64,
    buckets: HashMap<IpAddr, TokenBucket>,
    exempt: Vec<ipnet::IpNet>,
    /// The last sweep of idle buckets (at most one a second).
    swept: Option<Instant>,
}

impl DatagramRate {
    /// `rate` datagrams per second per address; 0 turns the check off.
    pub fn new(rate: u32, exempt: Vec<ipnet::IpNet>) -> Self {
        DatagramRate {
            rate: f64::from(rate),
            buckets: HashMap::new(),
            exempt,
            swept: None,
        }
    }

    /// Whether a datagram from `ip` may be parsed now (and count it).
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let ip = ip.to_canonical();
        if self.exempt.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_SOURCES {
            self.sweep(now);
            if self.buckets.len() >= MAX_SOURCES {
                return true;
            }
        }
        let rate = self.rate;
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::full(now, rate))
            .take(now, rate, rate)
    }

    /// Forget the addresses whose bucket has refilled (idle a second or
    /// more); at most once a second, so a full table costs one scan a second.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        let rate = self.rate;
        self.buckets.retain(|_, b| !b.is_full(now, rate, rate));
    }

    /// Addresses tracked.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_source_gets_a_second_s_worth_at_once_then_the_rate_and_others_are_untouched() {
        let t0 = Instant::now();
        let mut r = DatagramRate::new(100, Vec::new());
        let passed = (0..1000).filter(|_| r.allow(t0, ip(1))).count();
        assert_eq!(passed, 100, "the bucket: one second's worth");
        assert!(r.allow(t0, ip(2)), "another address has its own bucket");
        // Half a second later: half a second's refill.
        let t1 = t0 + Duration::from_millis(500);
        let passed = (0..1000).filter(|_| r.allow(t1, ip(1))).count();
        assert_eq!(passed, 50);
        // Idle long enough, full again but never more than the bucket.
        let t2 = t1 + Duration::from_secs(10);
        let passed = (0..1000).filter(|_| r.allow(t2, ip(1))).count();
        assert_eq!(passed, 100);
    }

    #[test]
    fn off_exempt_and_ipv4_mapped_addresses() {
        let t0 = Instant::now();
        let mut off = DatagramRate::new(0, Vec::new());
        assert!((0..10_000).all(|_| off.allow(t0, ip(1))));
        assert_eq!(off.sources(), 0);
        let mut r = DatagramRate::new(1, vec!["10.0.0.0/24".parse().unwrap()]);
        assert!((0..10_000).all(|_| r.allow(t0, ip(7))), "a trusted peer");
        // ::ffff:10.1.0.1 is 10.1.0.1: one bucket, not two.
        let v4: IpAddr = "10.1.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.0.1".parse().unwrap();
        assert!(r.allow(t0, v4));
        assert!(!r.allow(t0, mapped));
    }

    #[test]
    fn a_full_table_forgets_idle_sources_and_otherwise_fails_open() {
        let t0 = Instant::now();
        let mut r = DatagramRate::new(1, Vec::new());
        for n in 0..MAX_SOURCES as u32 {
            assert!(r.allow(t0, ip(n)));
        }
        assert_eq!(r.sources(), MAX_SOURCES);
        // Every bucket is busy (just emptied): a new source passes unchecked,
        // and is not tracked, so it is never refused while the table is full.
        let newcomer = ip(MAX_SOURCES as u32 + 1);
        assert!((0..10).all(|_| r.allow(t0, newcomer)));
        assert_eq!(r.sources(), MAX_SOURCES);
        // Two seconds on, every bucket has refilled: the sweep forgets them
        // and the newcomer gets a bucket of its own.
        let t1 = t0 + Duration::from_secs(2);
        assert!(r.allow(t1, newcomer));
        assert!(!r.allow(t1, newcomer));
        assert_eq!(r.sources(), 1);
    }
}
