//! `limits:`: what one source, and everyone together, may ask of `serve`
//! (issue 16): UDP datagrams per source before parsing and new INVITEs per
//! source (token buckets, like Kamailio's pike), dialogs per source and in all, TCP connections and their
//! messages, socket buffers and the response cache. The decisions are made
//! in `sip::limits` and `sip::tcp`; the numbers are configuration, so they
//! live here, below both.
//!
//! ```yaml
//! limits:
//!   datagram_rate: 2000        # UDP datagrams per second per source, checked before parsing (0 = off)
//!   invite_rate: 10            # new INVITEs per second per source (refill)
//!   invite_burst: 20           # …and how many at once
//!   calls_per_source: 50
//!   unacked_per_source: 10
//!   max_calls: 1000            # all sources; at most the RTP range's even ports
//!   max_unacked: 200
//!   retry_after: 10s
//!   refusals_per_interval: 5   # 503s per source per interval, then silence
//!   no_ack_after: 4s           # a 200 un-ACKed this long is a strike against its source
//!   no_ack_strikes: 1          # strikes within no_ack_hold before its 200s go once (0 = off)
//!   no_ack_hold: 60s
//!   interval: 10s              # summary log lines and the refusal budget
//!   sip_recv_buffer: 4194304   # bytes
//!   rtp_recv_buffer: 262144
//!   response_cache_bytes: 16777216
//!   tcp: { idle_timeout: 60s, message_timeout: 10s, max_header_bytes: 16384,
//!          max_headers: 100, max_body_bytes: 32768, connections_per_source: 32,
//!          max_connections: 512, write_queue_bytes: 1048576 }
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::parse_duration;

/// sip::wire::MAX_MESSAGE_SIZE (config sits below sip): no single message is larger.
const MAX_MESSAGE: usize = 64 * 1024;

/// Limits on TCP connections and the messages on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// A connection with no traffic and no dialog on it is closed after this.
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte (a fixed
    /// deadline: one byte every few seconds does not extend it).
    pub message_timeout: Duration,
    /// The header section (up to the blank line) may not be longer.
    pub max_header_bytes: usize,
    /// Nor have more header lines.
    pub max_headers: usize,
    /// Content-Length above this is refused (413) before the body is read.
    pub max_body_bytes: usize,
    /// Open connections from one address.
    pub connections_per_source: u32,
    /// Open connections in all.
    pub max_connections: u32,
    /// Bytes queued for a peer that does not read; beyond, it is closed.
    pub write_queue_bytes: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            idle_timeout: Duration::from_secs(60),
            message_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 32 * 1024,
            connections_per_source: 32,
            max_connections: 512,
            write_queue_bytes: 1024 * 1024,
        }
    }
}

/// Per-source and global limits (`limits:`).
#[derive(Clone, Debug, PartialEq)]
pub struct LimitsConfig {
    /// UDP datagrams per second one source may send, checked before the
    /// parser (`sip::datagram_rate`; the bucket holds one second's worth);
    /// 0 = off. Trusted peers are exempt.
    pub datagram_rate: u32,
    /// New INVITEs per second one source may send, on average.
    pub invite_rate: f64,
    /// New INVITEs one source may send at once (the bucket's size).
    pub invite_burst: u32,
    /// Dialogs one source may hold at once.
    pub calls_per_source: u32,
    /// Dialogs one source may hold that are answered but not yet ACKed.
    pub unacked_per_source: u32,
    /// Un-ACKed dialogs of one source whose 200 OK is retransmitted (RFC
    /// 3261 13.3.1.4); a source holding this many gets its next 200s once,
    /// unretransmitted (`Core::accept_once`). Off by default (1,000,000):
    /// under heavy packet loss a real caller whose ACKs are lost loses
    /// calls (bench/README.md, "INVITE flood"); the `no_ack_*` rule below
    /// is the one on by default.
    pub unacked_retransmit_per_source: u32,
    /// A 200 OK still un-ACKed this long after it was first sent (through
    /// its retransmissions at T1, 2T1, 4T1…) is a strike against its source.
    pub no_ack_after: Duration,
    /// Strikes within `no_ack_hold` after which a source is shown not to
    /// ACK: the 200s of its un-ACKed dialogs stop being retransmitted and
    /// its next 200s go once, until `no_ack_hold` passes with no new strike
    /// or it ACKs a 200 (only the owner of the address sees the To tag an
    /// ACK needs). 0 = off.
    pub no_ack_strikes: u32,
    /// How long strikes count, and how long a source stays on "answer once"
    /// after its last strike.
    pub no_ack_hold: Duration,
    /// Dialogs in all; never more than the RTP ports, so an admitted call
    /// always finds one.
    pub max_calls: u32,
    /// Un-ACKed dialogs in all (a flood from forged sources fills this, not the ports).
    pub max_unacked: u32,
    /// The `Retry-After` of a 503 for a limit.
    pub retry_after: Duration,
    /// 503s one source gets per interval; after that its new INVITEs are dropped unanswered.
    pub refusals_per_interval: u32,
    /// The refusal budget's period, and how often repeated warnings are summarised.
    pub interval: Duration,
    /// SO_RCVBUF asked for on the SIP UDP socket (bytes; 0 = the kernel's default).
    pub sip_recv_buffer: usize,
    /// SO_RCVBUF asked for on each RTP socket (bytes; 0 = the kernel's default).
    pub rtp_recv_buffer: usize,
    /// Bytes of cached final responses (answers to retransmissions) at most.
    pub response_cache_bytes: usize,
    /// TCP connections.
    pub tcp: TcpLimits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            // A caller's call is a handful of datagrams; 2,000/s is ~300
            // new calls a second from one address, and keeps a flood of
            // SIP-looking datagrams (~100 µs each to parse) to a fifth of
            // the SIP thread.
            datagram_rate: 2000,
            invite_rate: 10.0,
            invite_burst: 20,
            calls_per_source: 50,
            unacked_per_source: 10,
            unacked_retransmit_per_source: 1_000_000,
            no_ack_after: Duration::from_secs(4),
            no_ack_strikes: 1,
            no_ack_hold: Duration::from_secs(60),
            max_calls: 1000,
            max_unacked: 200,
            retry_after: Duration::from_secs(10),
            refusals_per_interval: 5,
            interval: Duration::from_secs(10),
            sip_recv_buffer: 4 * 1024 * 1024,
            rtp_recv_buffer: 256 * 1024,
            response_cache_bytes: 16 * 1024 * 1024,
            tcp: TcpLimits::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    datagram_rate: Option<u32>,
    invite_rate: Option<f64>,
    invite_burst: Option<u32>,
    calls_per_source: Option<u32>,
    unacked_per_source: Option<u32>,
    unacked_retransmit_per_source: Option<u32>,
    no_ack_after: Option<String>,
    no_ack_strikes: Option<u32>,
    no_ack_hold: Option<String>,
    max_calls: Option<u32>,
    max_unacked: Option<u32>,
    retry_after: Option<String>,
    refusals_per_interval: Option<u32>,
    interval: Option<String>,
    sip_recv_buffer: Option<usize>,
    rtp_recv_buffer: Option<usize>,
    response_cache_bytes: Option<usize>,
    tcp: Option<RawTcp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    idle_timeout: Option<String>,
    message_timeout: Option<String>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_body_bytes: Option<usize>,
    connections_per_source: Option<u32>,
    max_connections: Option<u32>,
    write_queue_bytes: Option<usize>,
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: Option<T>,
    default: T,
    lo: T,
    hi: T,
) -> Result<T, String> {
    let v = v.unwrap_or(default);
    if v < lo || v > hi {
        return Err(format!("limits.{name}: {v} is outside {lo}..{hi}"));
    }
    Ok(v)
}

fn dur(
    name: &str,
    v: Option<String>,
    default: Duration,
    min: Duration,
) -> Result<Duration, String> {
    let d = match v {
        None => default,
        Some(s) => parse_duration(&s).map_err(|e| format!("limits.{name}: {e}"))?,
    };
    if d < min {
        return Err(format!("limits.{name}: at least {min:?}"));
    }
    Ok(d)
}

impl RawLimits {
    /// Check and convert; `rtp_ports` is how many RTP ports the range holds
    /// (max_calls may not exceed it). Errors start with `limits.`.
    pub(super) fn into_config(self, rtp_ports: u32) -> Result<LimitsConfig, String> {
        let d = LimitsConfig::default();
        let invite_rate = self.invite_rate.unwrap_or(d.invite_rate);
        if !(invite_rate > 0.0 && invite_rate <= 100_000.0) {
            return Err(format!(
                "limits.invite_rate: {invite_rate} is outside 0..100000 (INVITEs per second per source)"
            ));
        }
        let max_calls = self.max_calls.unwrap_or(d.max_calls.min(rtp_ports));
        if max_calls == 0 || max_calls > rtp_ports {
            return Err(format!(
                "limits.max_calls: {max_calls} must be 1..{rtp_ports} (each call holds one of the {rtp_ports} RTP ports of rtp_ports)"
            ));
        }
        let t = self.tcp.unwrap_or(RawTcp {
            idle_timeout: None,
            message_timeout: None,
            max_header_bytes: None,
            max_headers: None,
            max_body_bytes: None,
            connections_per_source: None,
            max_connections: None,
            write_queue_bytes: None,
        });
        let dt = d.tcp;
        let max_message = MAX_MESSAGE;
        let tcp = TcpLimits {
            idle_timeout: dur(
                "tcp.idle_timeout",
                t.idle_timeout,
                dt.idle_timeout,
                Duration::from_millis(100),
            )?,
            message_timeout: dur(
                "tcp.message_timeout",
                t.message_timeout,
                dt.message_timeout,
                Duration::from_millis(100),
            )?,
            max_header_bytes: within(
                "tcp.max_header_bytes",
                t.max_header_bytes,
                dt.max_header_bytes,
                256,
                max_message,
            )?,
            max_headers: within("tcp.max_headers", t.max_headers, dt.max_headers, 8, 10_000)?,
            max_body_bytes: within(
                "tcp.max_body_bytes",
                t.max_body_bytes,
                dt.max_body_bytes,
                0,
                max_message,
            )?,
            connections_per_source: within(
                "tcp.connections_per_source",
                t.connections_per_source,
                dt.connections_per_source,
                1,
                1_000_000,
            )?,
            max_connections: within(
                "tcp.max_connections",
                t.max_connections,
                dt.max_connections,
                1,
                1_000_000,
            )?,
            write_queue_bytes: within(
                "tcp.write_queue_bytes",
                t.write_queue_bytes,
                dt.write_queue_bytes,
                max_message,
                1 << 30,
            )?,
        };
        Ok(LimitsConfig {
            datagram_rate: within(
                "datagram_rate",
                self.datagram_rate,
                d.datagram_rate,
                0,
                10_000_000,
            )?,
            invite_rate,
            invite_burst: within(
                "invite_burst",
                self.invite_burst,
                d.invite_burst,
                1,
                1_000_000,
            )?,
            calls_per_source: within(
                "calls_per_source",
                self.calls_per_source,
                d.calls_per_source,
                1,
                1_000_000,
            )?,
            unacked_per_source: within(
                "unacked_per_source",
                self.unacked_per_source,
                d.unacked_per_source,
                1,
                1_000_000,
            )?,
            unacked_retransmit_per_source: within(
                "unacked_retransmit_per_source",
                self.unacked_retransmit_per_source,
                d.unacked_retransmit_per_source,
                0,
                1_000_000,
            )?,
            no_ack_after: dur(
                "no_ack_after",
                self.no_ack_after,
                d.no_ack_after,
                Duration::from_millis(500),
            )?,
            no_ack_strikes: within(
                "no_ack_strikes",
                self.no_ack_strikes,
                d.no_ack_strikes,
                0,
                1_000_000,
            )?,
            no_ack_hold: dur(
                "no_ack_hold",
                self.no_ack_hold,
                d.no_ack_hold,
                Duration::from_secs(1),
            )?,
            max_calls,
            max_unacked: within(
                "max_unacked",
                self.max_unacked,
                d.max_unacked.min(max_calls),
                1,
                max_calls,
            )?,
            retry_after: dur(
                "retry_after",
                self.retry_after,
                d.retry_after,
                Duration::from_secs(1),
            )?,
            refusals_per_interval: within(
                "refusals_per_interval",
                self.refusals_per_interval,
                d.refusals_per_interval,
                0,
                1_000_000,
            )?,
            interval: dur(
                "interval",
                self.interval,
                d.interval,
                Duration::from_millis(100),
            )?,
            sip_recv_buffer: within(
                "sip_recv_buffer",
                self.sip_recv_buffer,
                d.sip_recv_buffer,
                0,
                1 << 30,
            )?,
            rtp_recv_buffer: within(
                "rtp_recv_buffer",
                self.rtp_recv_buffer,
                d.rtp_recv_buffer,
                0,
                1 << 30,
            )?,
            response_cache_bytes: within(
                "response_cache_bytes",
                self.response_cache_bytes,
                d.response_cache_bytes,
                max_message,
                4 << 30,
            )?,
            tcp,
        })
    }
}

impl LimitsConfig {
    /// The defaults for a range of `rtp_ports` ports (max_calls and
    /// max_unacked never above it).
    pub fn for_ports(rtp_ports: u32) -> Self {
        let d = Self::default();
        let max_calls = d.max_calls.min(rtp_ports).max(1);
        LimitsConfig {
            max_calls,
            max_unacked: d.max_unacked.min(max_calls),
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    #[test]
    fn limits_read_default_and_check_their_bounds() {
        let c = Config::parse("v.yaml", "rtp_ports: 30000-30099\n").unwrap();
        // 50 even ports: max_calls and max_unacked follow the range.
        assert_eq!((c.limits.max_calls, c.limits.max_unacked), (50, 50));
        let c = Config::parse(
            "v.yaml",
            "limits:\n  invite_rate: 0.5\n  max_calls: 40\n  tcp:\n    idle_timeout: 2s\n    connections_per_source: 4\n",
        )
        .unwrap();
        assert_eq!(c.limits.invite_rate, 0.5);
        assert_eq!(c.limits.datagram_rate, 2000, "the default");
        assert_eq!(c.limits.max_calls, 40);
        let off = Config::parse("v.yaml", "limits:\n  datagram_rate: 0\n").unwrap();
        assert_eq!(off.limits.datagram_rate, 0);
        assert_eq!(c.limits.tcp.idle_timeout, Duration::from_secs(2));
        assert_eq!(c.limits.tcp.connections_per_source, 4);
        assert_eq!(c.limits.tcp.max_headers, TcpLimits::default().max_headers);

        let err = |yaml: &str| Config::parse("v.yaml", yaml).unwrap_err().to_string();
        assert_eq!(
            err("limits:\n  datagram_rate: 20000000\n"),
            "v.yaml:2:18: limits.datagram_rate: 20000000 is outside 0..10000000"
        );
        assert_eq!(
            err("rtp_ports: 30000-30099\nlimits:\n  max_calls: 51\n"),
            "v.yaml:3:14: limits.max_calls: 51 must be 1..50 (each call holds one of the 50 RTP ports of rtp_ports)"
        );
        assert!(err("limits:\n  invite_rate: 0\n").contains("limits.invite_rate: 0 is outside"));
        assert!(err("limits:\n  tcp:\n    idle_timeout: soon\n")
            .starts_with("v.yaml:3:19: limits.tcp.idle_timeout: `soon` is not a duration"));
        // Unknown keys are refused with their place in the file.
        let e = Config::parse("v.yaml", "limits:\n  tcp:\n    idle: 5s\n").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { line: 3, .. }), "{e}");
        assert!(e.to_string().starts_with("v.yaml:3:"), "{e}");
    }

    #[test]
    fn the_no_ack_rule_is_on_by_default_and_the_shipped_config_says_so() {
        let d = LimitsConfig::default();
        assert_eq!(
            (d.no_ack_after, d.no_ack_strikes, d.no_ack_hold),
            (Duration::from_secs(4), 1, Duration::from_secs(60))
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("voxgate.yaml");
        let c = Config::load(&path).unwrap();
        assert_eq!(
            (
                c.limits.no_ack_after,
                c.limits.no_ack_strikes,
                c.limits.no_ack_hold
            ),
            (d.no_ack_after, d.no_ack_strikes, d.no_ack_hold)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for key in ["no_ack_after: 4s", "no_ack_strikes: 1", "no_ack_hold: 60s"] {
            assert!(text.contains(key), "voxgate.yaml documents {key}");
        }
        let c = Config::parse(
            "v.yaml",
            "limits:\n  no_ack_after: 8s\n  no_ack_strikes: 0\n  no_ack_hold: 5m\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.limits.no_ack_after,
                c.limits.no_ack_strikes,
                c.limits.no_ack_hold
            ),
            (Duration::from_secs(8), 0, Duration::from_secs(300))
        );
        let e = Config::parse("v.yaml", "limits:\n  no_ack_after: 100ms\n").unwrap_err();
        assert!(
            e.to_string().contains("limits.no_ack_after: at least"),
            "{e}"
        );
    }
}
