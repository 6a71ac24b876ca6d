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
//! A 200 OK that is never ACKed is RFC 3261's amplifier (issue 16 item 2):
//! retransmitted for 32 s to an address anyone can write in a UDP INVITE,
//! ~15 bytes out per byte in. A real caller's ACK comes within a second, or
//! after a retransmission or two on a lossy path; so a source whose 200 is
//! still un-ACKed `no_ack_after` (4 s, four copies) later has shown it does
//! not ACK: the 200s of its un-ACKed dialogs stop being retransmitted and
//! its next ones go once, for `no_ack_hold` after its last such strike or
//! until it ACKs. A caller with one late ACK is untouched; only the first
//! few seconds of a reflector's dialogs are retransmitted.
//!
//! Sans-IO: the caller passes the time in; the endpoint tells it when
//! dialogs start, are answered, ACKed and end, and asks at
//! [`Limits::next_deadline`] which dialogs to silence.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
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
    invites: TokenBucket,
    calls: u32,
    unacked: u32,
    /// 503s sent in the current interval (the budget before silence).
    refusals: u32,
    refused: u64,
    dropped: u64,
    limit: Limit,
    /// Un-ACKed 200s of this source that reached `no_ack_after`, since `struck`.
    strikes: u32,
    /// The last strike (strikes older than `no_ack_hold` are forgotten).
    struck: Option<Instant>,
}

impl Source {
    fn new(now: Instant, burst: u32) -> Self {
        Source {
            invites: TokenBucket::full(now, f64::from(burst)),
            calls: 0,
            unacked: 0,
            refusals: 0,
            refused: 0,
            dropped: 0,
            limit: Limit::Rate,
            strikes: 0,
            struck: None,
        }
    }

    /// Whether this source has shown it does not ACK (its 200s go once).
    fn not_acking(&self, now: Instant, cfg: &LimitsConfig) -> bool {
        cfg.no_ack_strikes > 0
            && self.strikes >= cfg.no_ack_strikes
            && self
                .struck
                .is_some_and(|t| now.saturating_duration_since(t) < cfg.no_ack_hold)
    }

    fn strike(&mut self, now: Instant, hold: Duration) {
        if self
            .struck
            .is_none_or(|t| now.saturating_duration_since(t) >= hold)
        {
            self.strikes = 0;
        }
        self.strikes = self.strikes.saturating_add(1);
        self.struck = Some(now);
    }
}

/// A live dialog, as admission sees it.
#[derive(Debug)]
struct Dialog {
    /// Its source's key in `sources`.
    key: Option<IpAddr>,
    acked: bool,
    /// When its un-ACKed 200 is a strike (set when answered).
    due: Option<Instant>,
    /// Its 200 goes (or now goes) once: not to be silenced again.
    quiet: bool,
    /// Never answered once, never a strike: from a trusted peer (judged by
    /// its own address, not by `key`: past MAX_SOURCES a trusted peer shares
    /// the `None` entry with others), or over a connection (TCP, TLS), whose
    /// source cannot be forged, so its missing ACK says nothing of spoofing
    /// and its 200s cannot be reflected at anyone.
    exempt: bool,
}

/// The admission state of every source.
#[derive(Debug)]
pub struct Limits {
    cfg: LimitsConfig,
    /// `None` is the shared entry of the sources beyond [`MAX_SOURCES`].
    sources: HashMap<Option<IpAddr>, Source>,
    /// Live dialogs by Call-ID.
    dialogs: HashMap<String, Dialog>,
    /// Answered dialogs in the order their strike falls due (one
    /// `no_ack_after` for all, so a queue); stale entries (ACKed, ended)
    /// are skipped when they come up. At most the answers of the last
    /// `no_ack_after`, which the admission limits bound.
    watch: VecDeque<(Instant, String)>,
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
            watch: VecDeque::new(),
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
        // Every attempt costs a token, refused or not: a source that keeps
        // trying stays over its rate.
        let had_token = src.invites.take(now, rate, f64::from(burst));
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

    /// The core took the INVITE: a dialog `call` from `ip` now exists;
    /// `connected`: it came over a connection (TCP, TLS), not a datagram.
    pub fn dialog_started(&mut self, now: Instant, call: &str, ip: IpAddr, connected: bool) {
        if self.dialogs.contains_key(call) {
            return;
        }
        let key = self.key(ip);
        let exempt = connected || self.is_exempt(Some(ip));
        let burst = self.cfg.invite_burst;
        let src = self
            .sources
            .entry(key)
            .or_insert_with(|| Source::new(now, burst));
        src.calls += 1;
        src.unacked += 1;
        self.unacked += 1;
        self.dialogs.insert(
            call.to_string(),
            Dialog {
                key,
                acked: false,
                due: None,
                quiet: false,
                exempt,
            },
        );
    }

    fn is_exempt(&self, key: Option<IpAddr>) -> bool {
        key.is_some_and(|ip| self.exempt.iter().any(|n| n.contains(&ip)))
    }

    /// `call`'s 200 OK goes out now: whether it should go once,
    /// unretransmitted. So it goes when its source has shown it does not
    /// ACK (`no_ack_*`), or already holds `unacked_retransmit_per_source`
    /// other un-ACKed dialogs; a source that does not ACK is likely not
    /// the one whose address it wrote. Exempt sources (trusted peers)
    /// always get retransmissions. From now on, an un-ACKed 200 counts
    /// towards a strike.
    pub fn answer_once(&mut self, now: Instant, call: &str) -> bool {
        let Some(d) = self.dialogs.get(call) else {
            return false;
        };
        let key = d.key;
        if d.exempt {
            return false;
        }
        let once = self.sources.get(&key).is_some_and(|src| {
            // This dialog is counted among the source's un-ACKed ones.
            src.unacked.saturating_sub(1) >= self.cfg.unacked_retransmit_per_source
                || src.not_acking(now, &self.cfg)
        });
        if let Some(d) = self.dialogs.get_mut(call) {
            d.quiet |= once;
            // The shared entry of the sources past MAX_SOURCES is never
            // struck: one of them not ACKing says nothing of the others.
            if d.due.is_none() && !d.acked && key.is_some() && self.cfg.no_ack_strikes > 0 {
                let due = now + self.cfg.no_ack_after;
                d.due = Some(due);
                self.watch.push_back((due, call.to_string()));
            }
        }
        once
    }

    /// Strikes that fell due by `now`: the un-ACKed dialogs whose 200 should
    /// stop being retransmitted now (`Core::stop_retransmitting`), those of
    /// every source that has just shown, or still shows, it does not ACK.
    pub fn take_silenced(&mut self, now: Instant) -> Vec<String> {
        let mut struck: Vec<Option<IpAddr>> = Vec::new();
        while let Some((due, _)) = self.watch.front() {
            if *due > now {
                break;
            }
            let Some((due, call)) = self.watch.pop_front() else {
                break;
            };
            let Some(d) = self.dialogs.get(&call) else {
                continue; // ended
            };
            if d.acked || d.due != Some(due) {
                continue; // ACKed in time, or another dialog under a reused Call-ID
            }
            let key = d.key;
            if let Some(src) = self.sources.get_mut(&key) {
                src.strike(now, self.cfg.no_ack_hold);
                if src.not_acking(now, &self.cfg) && !struck.contains(&key) {
                    struck.push(key);
                }
            }
        }
        if struck.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (call, d) in self.dialogs.iter_mut() {
            // Answered ones only: a dialog not yet answered is judged when
            // its 200 goes (`answer_once`).
            if !d.acked && !d.quiet && !d.exempt && d.due.is_some() && struck.contains(&d.key) {
                d.quiet = true;
                out.push(call.clone());
            }
        }
        out
    }

    /// The caller ACKed `call`'s 200: it owns its address, so its source
    /// is no longer held to have shown it does not ACK.
    pub fn dialog_confirmed(&mut self, call: &str) {
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        if d.acked {
            return;
        }
        d.acked = true;
        let key = d.key;
        self.unacked = self.unacked.saturating_sub(1);
        if let Some(src) = self.sources.get_mut(&key) {
            src.unacked = src.unacked.saturating_sub(1);
            src.strikes = 0;
            src.struck = None;
        }
    }

    /// `call` is gone (BYE, CANCEL, Timer H, rejected…).
    pub fn dialog_ended(&mut self, call: &str) {
        let Some(Dialog { key, acked, .. }) = self.dialogs.remove(call) else {
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

    /// When [`Self::take_summaries`] or [`Self::take_silenced`] has
    /// something to say at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        let strike = self.watch.front().map(|(due, _)| *due);
        match (self.interval_end, strike) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// At the end of an interval, what each source had refused in it (at
    /// most [`MAX_SUMMARIES`] lines, the biggest first); then a new interval
    /// (every source's refusal budget back), and the sources that hold
    /// nothing, whose bucket is full again and whose strikes are over
    /// `no_ack_hold` old are forgotten.
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
        let hold = self.cfg.no_ack_hold;
        self.sources.retain(|_, s| {
            s.refused = 0;
            s.dropped = 0;
            s.refusals = 0;
            let striking = s
                .struck
                .is_some_and(|t| now.saturating_duration_since(t) < hold);
            s.calls > 0 || !s.invites.is_full(now, rate, burst) || striking
        });
        if self.sources.capacity() > 4 * self.sources.len().max(1024) {
            self.sources.shrink_to_fit();
        }
        self.interval_end = Some(now + self.cfg.interval);
        if self.watch.capacity() > 4 * self.watch.len().max(1024) {
            self.watch.shrink_to_fit();
        }
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
            l.dialog_started(now, call, ip(from), false);
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
            no_ack_strikes: 0,
            ..cfg()
        };
        let mut l = Limits::new(cfg, vec!["10.0.0.0/8".parse().unwrap()]);
        l.dialog_started(t0, "a", ip("192.0.2.1"), false);
        assert!(
            !l.answer_once(t0, "a"),
            "the first un-ACKed dialog is retransmitted"
        );
        l.dialog_started(t0, "b", ip("192.0.2.1"), false);
        assert!(l.answer_once(t0, "b"));
        l.dialog_started(t0, "c", ip("192.0.2.2"), false);
        assert!(!l.answer_once(t0, "c"), "another source is not affected");
        l.dialog_confirmed("a");
        l.dialog_started(t0, "d", ip("192.0.2.1"), false);
        assert!(l.answer_once(t0, "d"), "b is still un-ACKed");
        l.dialog_ended("b");
        assert!(!l.answer_once(t0, "d"));
        l.dialog_started(t0, "e", ip("10.1.2.3"), false);
        l.dialog_started(t0, "f", ip("10.1.2.3"), false);
        assert!(
            !l.answer_once(t0, "f"),
            "trusted peers always get retransmissions"
        );
        assert!(!l.answer_once(t0, "unknown"));
        // With no_ack_strikes 0 nothing is watched.
        assert!(l.take_silenced(t0 + Duration::from_secs(60)).is_empty());
        assert!(l.watch.is_empty());
    }

    /// The default trigger: limits as shipped, per-source caps wide open.
    fn no_ack_limits() -> Limits {
        let cfg = LimitsConfig {
            unacked_per_source: 100,
            calls_per_source: 100,
            max_calls: 1000,
            max_unacked: 1000,
            ..LimitsConfig::default()
        };
        assert_eq!(cfg.no_ack_after, Duration::from_secs(4));
        assert_eq!(cfg.no_ack_strikes, 1);
        Limits::new(cfg, vec!["10.0.0.0/8".parse().unwrap()])
    }

    fn answer(l: &mut Limits, now: Instant, call: &str, from: &str) -> bool {
        l.dialog_started(now, call, ip(from), false);
        l.answer_once(now, call)
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn a_source_with_no_unacked_history_keeps_full_retransmissions() {
        let t0 = Instant::now();
        let mut l = no_ack_limits();
        // Two calls at once from one caller (unacked_retransmit_per_source
        // is off by default): both retransmitted.
        assert!(!answer(&mut l, t0, "a", "192.0.2.1"));
        assert!(!answer(&mut l, t0, "b", "192.0.2.1"));
        // One ACK comes late, after two retransmissions, the other at once:
        // no strike, nothing silenced.
        l.dialog_confirmed("b");
        l.dialog_confirmed("a");
        let t1 = t0 + Duration::from_secs(3);
        assert!(l.take_silenced(t1).is_empty());
        assert!(!answer(&mut l, t1, "c", "192.0.2.1"));
        // a's and b's strikes were due at 4 s (stale now, skipped), c's at 7 s.
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(4)));
        assert!(l.take_silenced(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(l.next_deadline(), Some(t1 + Duration::from_secs(4)));
        l.dialog_confirmed("c");
        assert!(l.take_silenced(t1 + Duration::from_secs(10)).is_empty());
        assert!(!answer(
            &mut l,
            t1 + Duration::from_secs(10),
            "d",
            "192.0.2.1"
        ));
    }

    #[test]
    fn after_an_unacked_200_a_source_is_answered_once_until_it_acks() {
        let t0 = Instant::now();
        let mut l = no_ack_limits();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A reflector: one INVITE a second, never ACKed.
        for i in 0..4 {
            assert!(!answer(&mut l, at(i), &format!("f{i}"), "198.51.100.9"));
        }
        // A real caller on another address, ACKing.
        assert!(!answer(&mut l, at(1), "real", "192.0.2.1"));
        l.dialog_confirmed("real");
        assert_eq!(l.next_deadline(), Some(at(4)));
        assert!(l.take_silenced(at(3)).is_empty());
        // f0's 200 is 4 s old, un-ACKed: all four stop being retransmitted.
        assert_eq!(sorted(l.take_silenced(at(4))), vec!["f0", "f1", "f2", "f3"]);
        // f1…f3 falling due add strikes but silence nothing more.
        assert!(l.take_silenced(at(7)).is_empty());
        // Its next 200s go once; the real caller's do not.
        assert!(answer(&mut l, at(8), "f8", "198.51.100.9"));
        assert!(!answer(&mut l, at(8), "real2", "192.0.2.1"));
        l.dialog_confirmed("real2");
        assert!(l.take_silenced(at(12)).is_empty(), "f8 was quiet already");
        // Timer H ends them; the source is still held.
        for c in ["f0", "f1", "f2", "f3", "f8"] {
            l.dialog_ended(c);
        }
        l.take_summaries(at(40));
        assert!(answer(&mut l, at(40), "f40", "198.51.100.9"));
        // An ACK (it owns its address after all) restores retransmissions.
        l.dialog_confirmed("f40");
        assert!(!answer(&mut l, at(41), "f41", "198.51.100.9"));
    }

    #[test]
    fn the_hold_expires_and_idle_struck_sources_are_then_forgotten() {
        let t0 = Instant::now();
        let mut l = no_ack_limits();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(admit(&mut l, at(0), "f0", "198.51.100.9"), Verdict::Admit);
        assert!(!l.answer_once(at(0), "f0"));
        assert_eq!(l.take_silenced(at(4)), vec!["f0"]);
        l.dialog_ended("f0"); // Timer H
                              // Held through the interval ends while its strike is younger than no_ack_hold…
        l.take_summaries(at(40));
        assert_eq!(l.sources.len(), 1);
        assert!(answer(&mut l, at(50), "f50", "198.51.100.9"));
        l.dialog_ended("f50");
        // …f50's own strike never fell due (it ended first): 60 s after the
        // last strike the source is forgotten and answered in full again.
        l.take_summaries(at(65));
        assert!(l.sources.is_empty(), "{:?}", l.sources);
        assert!(!answer(&mut l, at(66), "f66", "198.51.100.9"));
        l.dialog_ended("f66");
        // A trusted peer never strikes.
        assert!(!answer(&mut l, at(70), "p", "10.1.2.3"));
        assert!(l.take_silenced(at(80)).is_empty());
        assert!(!answer(&mut l, at(80), "p2", "10.1.2.3"));
    }

    #[test]
    fn several_strikes_can_be_required() {
        let t0 = Instant::now();
        let cfg = LimitsConfig {
            no_ack_strikes: 2,
            ..no_ack_limits().cfg
        };
        let mut l = Limits::new(cfg, vec![]);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!answer(&mut l, at(0), "a", "192.0.2.1"));
        assert!(l.take_silenced(at(4)).is_empty(), "one strike of two");
        assert!(!answer(&mut l, at(5), "b", "192.0.2.1"));
        assert_eq!(sorted(l.take_silenced(at(9))), vec!["a", "b"]);
        // Strikes further apart than no_ack_hold do not add up.
        let mut l = Limits::new(l.cfg.clone(), vec![]);
        assert!(!answer(&mut l, at(0), "a", "192.0.2.1"));
        assert!(l.take_silenced(at(4)).is_empty());
        assert!(!answer(&mut l, at(70), "b", "192.0.2.1"));
        assert!(l.take_silenced(at(74)).is_empty());
    }

    #[test]
    fn past_the_source_cap_nobody_is_struck_and_trusted_peers_keep_retransmissions() {
        let t0 = Instant::now();
        let mut l = no_ack_limits();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Fill the table with forged sources (11.0.0.0/16), each holding a
        // live dialog.
        for i in 0..MAX_SOURCES as u32 {
            l.dialog_started(
                t0,
                &format!("x{i}"),
                IpAddr::from(std::net::Ipv4Addr::from(0x0B00_0000 + i)),
                false,
            );
        }
        // Past the cap: a reflector, a trusted peer, a real caller share `None`.
        assert!(!answer(&mut l, at(1), "refl", "198.51.100.9"));
        assert!(!answer(&mut l, at(1), "trusted", "10.1.2.3"));
        assert!(!answer(&mut l, at(2), "real", "192.0.2.77"));
        // The reflector's 200 goes un-ACKed 4 s: the shared entry is not struck.
        assert!(l.take_silenced(at(6)).is_empty());
        assert!(!answer(&mut l, at(7), "trusted2", "10.1.2.3"));
        assert!(!answer(&mut l, at(7), "real2", "192.0.2.77"));
    }

    #[test]
    fn a_dialog_not_yet_answered_is_not_silenced_with_its_source() {
        let t0 = Instant::now();
        let mut l = no_ack_limits();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!answer(&mut l, at(0), "f0", "198.51.100.9"));
        // Still ringing when the strike falls due.
        l.dialog_started(at(1), "ringing", ip("198.51.100.9"), false);
        assert_eq!(l.take_silenced(at(4)), vec!["f0"]);
        // Answered now: it goes once, as its source is struck.
        assert!(l.answer_once(at(5), "ringing"));
    }

    #[test]
    fn a_caller_over_a_connection_never_strikes_nor_is_answered_once() {
        let t0 = Instant::now();
        let mut l = no_ack_limits();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A TCP caller that never ACKs: no strike against its address…
        l.dialog_started(at(0), "tcp", ip("198.51.100.9"), true);
        assert!(!l.answer_once(at(0), "tcp"));
        assert!(l.take_silenced(at(5)).is_empty());
        assert!(!answer(&mut l, at(6), "udp", "198.51.100.9"), "not struck");
        // …and once its address is struck by a datagram INVITE that was not
        // ACKed, its own 200s over the connection still go in full.
        l.dialog_started(at(7), "tcp1", ip("198.51.100.9"), true);
        assert!(!l.answer_once(at(7), "tcp1"));
        assert_eq!(l.take_silenced(at(10)), vec!["udp"], "not tcp1");
        l.dialog_started(at(11), "tcp2", ip("198.51.100.9"), true);
        assert!(!l.answer_once(at(11), "tcp2"));
        assert!(answer(&mut l, at(11), "udp2", "198.51.100.9"), "struck");
    }

    #[test]
    fn forged_sources_cannot_grow_the_tables() {
        let t0 = Instant::now();
        let mut l = no_ack_limits();
        // Every INVITE from another forged address, each never ACKed.
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let from = IpAddr::from(std::net::Ipv4Addr::from(0xC633_0000 + i));
            let call = format!("x{i}");
            l.dialog_started(t0, &call, from, false);
            l.answer_once(t0, &call);
            l.dialog_ended(&call);
        }
        assert!(l.sources.len() <= MAX_SOURCES + 1);
        // Stale watch entries go when due.
        assert!(l.take_silenced(t0 + Duration::from_secs(4)).is_empty());
        assert!(l.watch.is_empty());
    }
}
