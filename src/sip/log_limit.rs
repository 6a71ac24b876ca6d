//! Bounded logs (issue 16 item 4): a warning that repeats per source and
//! kind is written once per interval, and what followed it is summarised
//! in one line at the interval's end ("412 more malformed requests from
//! 127.0.0.9 in the last 10 s: 'missing Call-ID'"). A flood of bad packets
//! then costs a few lines per source and interval, not one per packet.
//!
//! Sans-IO: the caller passes the time in and writes the lines itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// (source, kind) pairs tracked at most per interval; beyond, the rest
/// are only counted (one line says how many were not itemised).
const MAX_KEYS: usize = 1024;
/// Summary lines per interval at most (the biggest counts first).
const MAX_SUMMARIES: usize = 10;

#[derive(Debug)]
struct Entry {
    /// Occurrences after the first in this interval (not yet written).
    suppressed: u64,
    /// The first suppressed occurrence's detail, as an example.
    example: String,
}

/// One summary line's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSummary {
    /// The source the occurrences came from.
    pub source: IpAddr,
    /// What kind of warning (`malformed request`, …).
    pub kind: &'static str,
    /// How many were not written one by one.
    pub count: u64,
    /// The detail of one of them.
    pub example: String,
}

/// Rate limiter and summariser of repeated warnings.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    entries: HashMap<(IpAddr, &'static str), Entry>,
    /// Occurrences of pairs beyond [`MAX_KEYS`] (and lines beyond
    /// [`MAX_SUMMARIES`]) in this interval.
    untracked: u64,
    interval_end: Option<Instant>,
}

impl LogLimiter {
    /// Summaries every `interval`.
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            entries: HashMap::new(),
            untracked: 0,
            interval_end: None,
        }
    }

    /// A warning of `kind` from `source`: true when it should be written
    /// now (the first of its pair in this interval); otherwise it is
    /// counted for the summary.
    pub fn allow(
        &mut self,
        now: Instant,
        source: IpAddr,
        kind: &'static str,
        detail: &str,
    ) -> bool {
        if self.interval_end.is_none() {
            self.interval_end = Some(now + self.interval);
        }
        let key = (source.to_canonical(), kind);
        let full = self.entries.len() >= MAX_KEYS;
        match self.entries.get_mut(&key) {
            Some(e) => {
                if e.suppressed == 0 {
                    e.example = clip(detail);
                }
                e.suppressed += 1;
                false
            }
            None if full => {
                self.untracked += 1;
                false
            }
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        suppressed: 0,
                        example: String::new(),
                    },
                );
                true
            }
        }
    }

    /// When [`Self::take_summaries`] next has something to say.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.interval_end
    }

    /// The interval summaries cover.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// At an interval's end: one summary per pair that repeated (at most
    /// [`MAX_SUMMARIES`]) and how many occurrences were left out of them;
    /// then a fresh interval. Empty before the end.
    pub fn take_summaries(&mut self, now: Instant) -> (Vec<LogSummary>, u64) {
        if self.interval_end.is_none_or(|end| now < end) {
            return (Vec::new(), 0);
        }
        let mut out: Vec<LogSummary> = self
            .entries
            .drain()
            .filter(|(_, e)| e.suppressed > 0)
            .map(|((source, kind), e)| LogSummary {
                source,
                kind,
                count: e.suppressed,
                example: e.example,
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.count));
        let mut untracked = std::mem::take(&mut self.untracked);
        untracked += out.iter().skip(MAX_SUMMARIES).map(|s| s.count).sum::<u64>();
        out.truncate(MAX_SUMMARIES);
        if self.entries.capacity() > 4 * MAX_KEYS {
            self.entries.shrink_to_fit();
        }
        self.interval_end = None; // the next occurrence starts the next interval
        (out, untracked)
    }
}

/// An example detail, short and on one line.
fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_line_then_one_summary_per_source_and_kind() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let a: IpAddr = "127.0.0.9".parse().unwrap();
        let b: IpAddr = "127.0.0.10".parse().unwrap();
        let written = (0..413)
            .filter(|i| l.allow(t0, a, "malformed request", &format!("missing Call-ID {i}")))
            .count();
        assert_eq!(written, 1);
        assert!(l.allow(t0, b, "malformed request", "x"));
        assert!(l.allow(t0, a, "TCP framing error", "x"));
        assert_eq!(l.take_summaries(t0 + Duration::from_secs(9)).0, vec![]);
        let (s, untracked) = l.take_summaries(t0 + Duration::from_secs(10));
        assert_eq!(untracked, 0);
        assert_eq!(
            s,
            vec![LogSummary {
                source: a,
                kind: "malformed request",
                count: 412,
                example: "missing Call-ID 1".into(),
            }]
        );
        // A new interval: the first occurrence is written again.
        assert!(l.allow(t0 + Duration::from_secs(11), a, "malformed request", "y"));
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(21)));
    }

    #[test]
    fn many_sources_stay_bounded() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let mut written = 0;
        for i in 0..5000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            for _ in 0..3 {
                written += l.allow(t0, ip, "malformed request", "bad\r\nline") as usize;
            }
        }
        assert_eq!(written, MAX_KEYS);
        let (s, untracked) = l.take_summaries(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), MAX_SUMMARIES);
        assert_eq!(s[0].example, "bad  line");
        assert_eq!(
            untracked,
            (5000 - MAX_KEYS as u64) * 3 + (MAX_KEYS - MAX_SUMMARIES) as u64 * 2
        );
    }
}
