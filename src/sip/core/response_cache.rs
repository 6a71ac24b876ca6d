//! The final responses to non-INVITE requests, kept 64·T1 to answer their
//! retransmissions (RFC 3261 17.2.2), bounded in bytes (issue 16 item 5):
//! 6,000 OPTIONS with 60 KB of Via each once grew it to 370 MB. At the cap
//! the oldest entries go first; a retransmission that finds its answer gone
//! is simply handled again.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Server transaction key ([`super::server_tx::server_txn_key`]) and method.
pub(super) type Key = (String, String);

struct Cached {
    data: Vec<u8>,
    expires: Instant,
    /// Insertion number: an older queue entry for a replaced key is stale.
    seq: u64,
}

/// Responses by transaction, in insertion (= expiry) order.
pub(super) struct ResponseCache {
    map: HashMap<Key, Cached>,
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    cap: usize,
    seq: u64,
}

impl ResponseCache {
    /// Empty, holding at most `cap` bytes of responses.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            cap,
            seq: 0,
        }
    }

    /// The cached response of `key`, if any.
    pub(super) fn get(&self, key: &Key) -> Option<&[u8]> {
        self.map.get(key).map(|c| c.data.as_slice())
    }

    /// Keep `data` for `key` until `expires` (every entry lives as long, so
    /// insertion order is expiry order); evicts the oldest beyond the cap.
    pub(super) fn insert(&mut self, key: Key, data: Vec<u8>, expires: Instant) {
        if data.len() > self.cap {
            return;
        }
        self.seq += 1;
        self.bytes += data.len();
        self.order.push_back((key.clone(), self.seq));
        let old = self.map.insert(
            key,
            Cached {
                data,
                expires,
                seq: self.seq,
            },
        );
        if let Some(old) = old {
            self.bytes -= old.data.len();
        }
        while self.bytes > self.cap {
            if !self.pop_oldest() {
                break;
            }
        }
    }

    /// Remove the oldest live entry; false when there is none.
    fn pop_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|c| c.seq == seq) {
                if let Some(c) = self.map.remove(&key) {
                    self.bytes -= c.data.len();
                }
                return true;
            }
        }
        false
    }

    /// Forget what expired by `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((key, seq)) = self.order.front() {
            match self.map.get(key) {
                Some(c) if c.seq == *seq && c.expires > now => break,
                // Live and expired: remove it with its bytes.
                Some(c) if c.seq == *seq => {
                    self.pop_oldest();
                }
                // A stale queue entry of a replaced or removed key.
                _ => {
                    self.order.pop_front();
                }
            }
        }
        if self.map.is_empty() && self.order.capacity() > 1024 {
            // Give the memory of a past flood back.
            self.map.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    /// When the oldest entry expires.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.order
            .iter()
            .find_map(|(k, seq)| self.map.get(k).filter(|c| c.seq == *seq))
            .map(|c| c.expires)
    }

    /// Bytes held (tests).
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(i: usize) -> Key {
        (format!("z9hG4bK{i} host"), "OPTIONS".into())
    }

    #[test]
    fn bounded_in_bytes_oldest_first_and_expiring() {
        let t0 = Instant::now();
        let mut c = ResponseCache::new(1000);
        for i in 0..50 {
            c.insert(
                key(i),
                vec![b'x'; 100],
                t0 + Duration::from_secs(32) + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(c.bytes(), 1000);
        assert!(c.get(&key(39)).is_none());
        assert!(c.get(&key(40)).is_some() && c.get(&key(49)).is_some());
        // Replacing a key does not count it twice.
        c.insert(key(45), vec![b'y'; 100], t0 + Duration::from_secs(33));
        assert_eq!(c.bytes(), 1000);
        assert_eq!(c.get(&key(45)), Some(&[b'y'; 100][..]));
        // Larger than the whole cache: not kept.
        c.insert(key(99), vec![0; 2000], t0);
        assert!(c.get(&key(99)).is_none());
        assert_eq!(c.next_expiry(), Some(t0 + Duration::from_millis(32_040)));
        c.expire(t0 + Duration::from_secs(40));
        assert_eq!(c.bytes(), 0);
        assert_eq!(c.next_expiry(), None);
    }
}
