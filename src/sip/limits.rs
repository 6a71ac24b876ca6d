//! Admission of new INVITEs, per source and in all (issue 16 item 3), the
//! way Kamailio's pike does it: a token bucket of new INVITEs per source
//! address, caps on the dialogs (and on the un-ACKed dialogs) one source
//! holds, and global caps sized so every admitted call finds an RTP port.
//!
//! Over a limit a source gets 503 with Retry-After; one that keeps going
//! after `refusals_per_interval` of them is dropped silently (answering a
//! flood is amplification too). What was refused is reported as one
//! summary per source and interval, never one line per INVITE.
//!
//! Sans-IO: the caller passes the time in; the endpoint tells it when
//! dialogs start, are ACKed and end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::LimitsConfig;

/// Sources tracked at most; beyond, new sources share one entry (a flood of
/// forged addresses must not grow memory: the global caps still hold).
const MAX_SOURCES: usize = 65_536;
/// Summary lines per interval at most; the rest are counted in one more.
const MAX_SUMMARIES: usize = 10;

/// Which limit refused an INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The source's token bucket is empty.
    Rate,
    /// The source holds `calls_per_source` dialogs.
    SourceCalls,
    /// The source holds `unacked_per_source` un-ACKed dialogs.
    SourceUnacked,
    /// `max_calls` dialogs in all.
    Calls,
    /// `max_unacked` un-ACKed dialogs in all.
    Unacked,
}

impl Limit {
    /// How the limit is named in logs and in the 503's reason phrase.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Rate => "INVITE rate per source",
            Limit::SourceCalls => "calls per source",
            Limit::SourceUnacked => "un-ACKed calls per source",
            Limit::Calls => "calls in all",
            Limit::Unacked => "un-ACKed calls in all",
        }
    }
}

/// What to do with a new INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the core take it.
    Admit,
    /// Answer 503 with this Retry-After (seconds).
    Refuse {
        /// Which limit.
        limit: Limit,
        /// Seconds for the Retry-After header.
        retry_after: u32,
    },
    /// Say nothing: the source ignored our 503s.
    Drop,
}

/// One line's worth: what a source had refused over the last interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The source (None: the sources beyond the tracking cap, together).
    pub source: Option<IpAddr>,
    /// INVITEs answered 503.
    pub refused: u64,
    /// INVITEs dropped unanswered.
    pub dropped: u64,
    /// The last limit that refused one.
    pub limit: Limit,
    /// Further sources with refusals, not listed one by one (on the last line only).
    pub more_sources: usize,
}

#[derive(Debug)]
struct Source {
    tokens: f64,
    refilled: Instant,
    calls: u32,
    unacked: u32,
    /// 503s sent in the current interval (the budget before silence).
    refusals: u32,
    refused: u64,
    dropped: u64,
    limit: Limit,
}

impl Source {
    fn new(now: Instant, burst: u32) -> Self {
        Source {
            tokens: f64::from(burst),
            refilled: now,
            calls: 0,
            unacked: 0,
            refusals: 0,
            refused: 0,
            dropped: 0,
            limit: Limit::Rate,
        }
    }
}

/// The admission state of every source.
#[derive(Debug)]
pub struct Limits {
    cfg: LimitsConfig,
    /// `None` is the shared entry of the sources beyond [`MAX_SOURCES`].
    sources: HashMap<Option<IpAddr>, Source>,
    /// Live dialogs: Call-ID → (source key, ACKed yet).
    dialogs: HashMap<String, (Option<IpAddr>, bool)>,
    unacked: u32,
    interval_end: Option<Instant>,
    /// Sources exempt from the per-source limits (trusted proxies carry many callers).
    exempt: Vec<ipnet::IpNet>,
}

impl Limits {
    /// Nothing admitted yet; `exempt` sources are held only to the global caps.
    pub fn new(cfg: LimitsConfig, exempt: Vec<ipnet::IpNet>) -> Self {
        Limits {
            cfg,
            sources: HashMap::new(),
            dialogs: HashMap::new(),
            unacked: 0,
            interval_end: None,
            exempt,
        }
    }

    /// Whether `call` is a dialog we track (its INVITE retransmissions pass).
    pub fn knows(&self, call: &str) -> bool {
        self.dialogs.contains_key(call)
    }

    /// Dialogs alive (what the global cap counts).
    pub fn calls(&self) -> usize {
        self.dialogs.len()
    }

    fn key(&self, ip: IpAddr) -> Option<IpAddr> {
        let ip = ip.to_canonical();
        if self.sources.contains_key(&Some(ip)) || self.sources.len() < MAX_SOURCES {
            Some(ip)
        } else {
            None
        }
    }

    /// A new INVITE (not a retransmission, not inside a dialog) from `ip`.
    pub fn check_invite(&mut self, now: Instant, ip: IpAddr) -> Verdict {
        // Intervals end only in take_summaries, so each summary covers one.
        if self.interval_end.is_none() {
            self.interval_end = Some(now + self.cfg.interval);
        }
        let exempt = self.exempt.iter().any(|n| n.contains(&ip.to_canonical()));
        let key = self.key(ip);
        let (rate, burst) = (self.cfg.invite_rate, self.cfg.invite_burst);
        let global = if self.dialogs.len() >= self.cfg.max_calls as usize {
            Some(Limit::Calls)
        } else if self.unacked >= self.cfg.max_unacked {
            Some(Limit::Unacked)
        } else {
            None
        };
        let src = self
            .sources
            .entry(key)
            .or_insert_with(|| Source::new(now, burst));
        let elapsed = now.saturating_duration_since(src.refilled).as_secs_f64();
        src.tokens = (src.tokens + elapsed * rate).min(f64::from(burst));
        src.refilled = now;
        // Every attempt costs a token, refused or not: a source that keeps
        // trying stays over its rate.
        let had_token = src.tokens >= 1.0;
        if had_token {
            src.tokens -= 1.0;
        }
        let limit = global.or(if exempt {
            None
        } else if !had_token {
            Some(Limit::Rate)
        } else if src.calls >= self.cfg.calls_per_source {
            Some(Limit::SourceCalls)
        } else if src.unacked >= self.cfg.unacked_per_source {
            Some(Limit::SourceUnacked)
        } else {
            None
        });
        let Some(limit) = limit else {
            return Verdict::Admit;
        };
        src.limit = limit;
        if src.refusals >= self.cfg.refusals_per_interval {
            src.dropped += 1;
            return Verdict::Drop;
        }
        src.refusals += 1;
        src.refused += 1;
        Verdict::Refuse {
            limit,
            retry_after: self.cfg.retry_after.as_secs().clamp(1, u64::from(u32::MAX)) as u32,
        }
    }

    /// The core took the INVITE: a dialog `call` from `ip` now exists.
    pub fn dialog_started(&mut self, now: Instant, call: &str, ip: IpAddr) {
        if self.dialogs.contains_key(call) {
            return;
        }
        let key = self.key(ip);
        let burst = self.cfg.invite_burst;
        let src = self
            .sources
            .entry(key)
            .or_insert_with(|| Source::new(now, burst));
        src.calls += 1;
        src.unacked += 1;
        self.unacked += 1;
        self.dialogs.insert(call.to_string(), (key, false));
    }

    /// Whether `call`'s 200 OK should go once, unretransmitted: its source
    /// already holds `unacked_retransmit_per_source` other un-ACKed
    /// dialogs (a source that does not ACK is likely not the one whose
    /// address it wrote). Exempt sources (trusted peers) always get
    /// retransmissions.
    pub fn answer_once(&self, call: &str) -> bool {
        let Some((key, _)) = self.dialogs.get(call) else {
            return false;
        };
        if key.is_some_and(|ip| self.exempt.iter().any(|n| n.contains(&ip))) {
            return false;
        }
        self.sources.get(key).is_some_and(|src| {
            // This dialog is counted among the source's un-ACKed ones.
            src.unacked.saturating_sub(1) >= self.cfg.unacked_retransmit_per_source
        })
    }

    /// The caller ACKed `call`'s 200.
    pub fn dialog_confirmed(&mut self, call: &str) {
        let Some((key, acked)) = self.dialogs.get_mut(call) else {
            return;
        };
        if *acked {
            return;
        }
        *acked = true;
        let key = *key;
        self.unacked = self.unacked.saturating_sub(1);
        if let Some(src) = self.sources.get_mut(&key) {
            src.unacked = src.unacked.saturating_sub(1);
        }
    }

    /// `call` is gone (BYE, CANCEL, Timer H, rejected…).
    pub fn dialog_ended(&mut self, call: &str) {
        let Some((key, acked)) = self.dialogs.remove(call) else {
            return;
        };
        if !acked {
            self.unacked = self.unacked.saturating_sub(1);
        }
        if let Some(src) = self.sources.get_mut(&key) {
            src.calls = src.calls.saturating_sub(1);
            if !acked {
                src.unacked = src.unacked.saturating_sub(1);
            }
        }
    }

    /// When [`Self::take_summaries`] has something to say at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.interval_end
    }

    /// At the end of an interval, what each source had refused in it (at
    /// most [`MAX_SUMMARIES`] lines, the biggest first); then a new interval
    /// (every source's refusal budget back), and the sources that hold
    /// nothing and whose bucket is full again are forgotten.
    pub fn take_summaries(&mut self, now: Instant) -> Vec<Summary> {
        if self.interval_end.is_none_or(|end| now < end) {
            return Vec::new();
        }
        let mut out: Vec<Summary> = self
            .sources
            .iter()
            .filter(|(_, s)| s.refused + s.dropped > 0)
            .map(|(k, s)| Summary {
                source: *k,
                refused: s.refused,
                dropped: s.dropped,
                limit: s.limit,
                more_sources: 0,
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.refused + s.dropped));
        let more = out.len().saturating_sub(MAX_SUMMARIES);
        out.truncate(MAX_SUMMARIES);
        if let Some(last) = out.last_mut() {
            last.more_sources = more;
        }
        let (rate, burst) = (self.cfg.invite_rate, f64::from(self.cfg.invite_burst));
        self.sources.retain(|_, s| {
            s.refused = 0;
            s.dropped = 0;
            s.refusals = 0;
            let tokens = s.tokens + now.saturating_duration_since(s.refilled).as_secs_f64() * rate;
            s.calls > 0 || tokens < burst
        });
        if self.sources.capacity() > 4 * self.sources.len().max(1024) {
            self.sources.shrink_to_fit();
        }
        self.interval_end = Some(now + self.cfg.interval);
        if self.sources.is_empty() && self.dialogs.is_empty() {
            self.interval_end = None; // nothing to report: no wake-ups when idle
        }
        out
    }

    /// The configured interval (summary lines say what they cover).
    pub fn interval(&self) -> Duration {
        self.cfg.interval
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            invite_rate: 2.0,
            invite_burst: 4,
            calls_per_source: 3,
            unacked_per_source: 2,
            max_calls: 10,
            max_unacked: 6,
            retry_after: Duration::from_secs(7),
            refusals_per_interval: 2,
            interval: Duration::from_secs(10),
            ..LimitsConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admit(l: &mut Limits, now: Instant, call: &str, from: &str) -> Verdict {
        let v = l.check_invite(now, ip(from));
        if v == Verdict::Admit {
            l.dialog_started(now, call, ip(from));
        }
        v
    }

    #[test]
    fn a_burst_over_the_bucket_gets_503_then_silence_and_one_summary() {
        let t0 = Instant::now();
        let mut l = Limits::new(
            LimitsConfig {
                calls_per_source: 100,
                unacked_per_source: 100,
                max_calls: 100,
                max_unacked: 100,
                ..cfg()
            },
            vec![],
        );
        let verdicts: Vec<Verdict> = (0..10)
            .map(|i| admit(&mut l, t0, &format!("c{i}"), "127.0.0.2"))
            .collect();
        assert!(verdicts[..4].iter().all(|v| *v == Verdict::Admit));
        let refuse = Verdict::Refuse {
            limit: Limit::Rate,
            retry_after: 7,
        };
        assert_eq!(&verdicts[4..6], &[refuse, refuse]);
        assert!(verdicts[6..].iter().all(|v| *v == Verdict::Drop));
        // Another source is not affected.
        assert_eq!(admit(&mut l, t0, "other", "127.0.0.1"), Verdict::Admit);
        assert!(l.take_summaries(t0 + Duration::from_secs(5)).is_empty());
        let s = l.take_summaries(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].source, s[0].refused, s[0].dropped, s[0].limit),
            (Some(ip("127.0.0.2")), 2, 4, Limit::Rate)
        );
        // Next interval: the bucket refilled (2/s) and the refusal budget is back.
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(admit(&mut l, t1, "later", "127.0.0.2"), Verdict::Admit);
        assert!(l.take_summaries(t1 + Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut l = Limits::new(cfg(), vec![]);
        for i in 0..4 {
            let v = l.check_invite(t0, ip("10.0.0.1"));
            assert_eq!(v, Verdict::Admit, "{i}");
        }
        assert_ne!(l.check_invite(t0, ip("10.0.0.1")), Verdict::Admit);
        // 0.5 s at 2/s is one token.
        assert_eq!(
            l.check_invite(t0 + Duration::from_millis(500), ip("10.0.0.1")),
            Verdict::Admit
        );
    }

    #[test]
    fn unacked_and_concurrent_dialogs_per_source() {
        let t0 = Instant::now();
        let mut l = Limits::new(cfg(), vec![]);
        let mut t = t0;
        let mut next = |l: &mut Limits, call: &str| {
            t += Duration::from_secs(1);
            admit(l, t, call, "192.0.2.7")
        };
        assert_eq!(next(&mut l, "a"), Verdict::Admit);
        assert_eq!(next(&mut l, "b"), Verdict::Admit);
        assert!(matches!(
            next(&mut l, "c"),
            Verdict::Refuse {
                limit: Limit::SourceUnacked,
                ..
            }
        ));
        l.dialog_confirmed("a");
        l.dialog_confirmed("a"); // an ACK retransmission counts once
        assert_eq!(next(&mut l, "c"), Verdict::Admit);
        l.dialog_confirmed("b");
        assert!(matches!(
            next(&mut l, "d"),
            Verdict::Refuse {
                limit: Limit::SourceCalls,
                ..
            }
        ));
        l.dialog_ended("a");
        l.dialog_ended("a");
        assert_eq!(next(&mut l, "d"), Verdict::Admit);
        assert_eq!(l.calls(), 3);
        assert!(l.knows("d") && !l.knows("a"));
    }

    #[test]
    fn global_caps_hold_for_exempt_and_forged_sources() {
        let t0 = Instant::now();
        let mut l = Limits::new(cfg(), vec!["10.9.0.0/16".parse().unwrap()]);
        // One address per INVITE (forged sources): the per-source limits never
        // trigger, the global un-ACKed cap does.
        for i in 0..6 {
            assert_eq!(
                admit(&mut l, t0, &format!("f{i}"), &format!("198.51.100.{i}")),
                Verdict::Admit
            );
        }
        assert!(matches!(
            admit(&mut l, t0, "f6", "198.51.100.6"),
            Verdict::Refuse {
                limit: Limit::Unacked,
                ..
            }
        ));
        for i in 0..6 {
            l.dialog_confirmed(&format!("f{i}"));
        }
        // A trusted proxy is held to the global caps only.
        for i in 0..4 {
            assert_eq!(
                admit(&mut l, t0, &format!("p{i}"), "10.9.1.1"),
                Verdict::Admit
            );
        }
        assert!(matches!(
            admit(&mut l, t0, "p4", "10.9.1.1"),
            Verdict::Refuse {
                limit: Limit::Calls,
                ..
            }
        ));
    }

    #[test]
    fn summaries_are_bounded_and_idle_sources_forgotten() {
        let t0 = Instant::now();
        let mut l = Limits::new(
            LimitsConfig {
                invite_burst: 1,
                ..cfg()
            },
            vec![],
        );
        for i in 0..50u8 {
            let from = format!("203.0.113.{i}");
            l.check_invite(t0, ip(&from));
            for _ in 0..=i {
                l.check_invite(t0, ip(&from));
            }
        }
        let s = l.take_summaries(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), MAX_SUMMARIES);
        assert_eq!(s[0].source, Some(ip("203.0.113.49")));
        assert_eq!(s[MAX_SUMMARIES - 1].more_sources, 40);
        // Every bucket is full again after 10 s at 2/s: all forgotten, no more wake-ups.
        assert!(l.sources.is_empty());
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn answer_once_for_a_source_already_holding_unacked_dialogs() {
        let t0 = Instant::now();
        let cfg = LimitsConfig {
            unacked_per_source: 10,
            calls_per_source: 10,
            unacked_retransmit_per_source: 1,
            ..cfg()
        };
        let mut l = Limits::new(cfg, vec!["10.0.0.0/8".parse().unwrap()]);
        l.dialog_started(t0, "a", ip("192.0.2.1"));
        assert!(
            !l.answer_once("a"),
            "the first un-ACKed dialog is retransmitted"
        );
        l.dialog_started(t0, "b", ip("192.0.2.1"));
        assert!(l.answer_once("b"));
        l.dialog_started(t0, "c", ip("192.0.2.2"));
        assert!(!l.answer_once("c"), "another source is not affected");
        l.dialog_confirmed("a");
        l.dialog_started(t0, "d", ip("192.0.2.1"));
        assert!(l.answer_once("d"), "b is still un-ACKed");
        l.dialog_ended("b");
        assert!(!l.answer_once("d"));
        l.dialog_started(t0, "e", ip("10.1.2.3"));
        l.dialog_started(t0, "f", ip("10.1.2.3"));
        assert!(
            !l.answer_once("f"),
            "trusted peers always get retransmissions"
        );
        assert!(!l.answer_once("unknown"));
    }
}
