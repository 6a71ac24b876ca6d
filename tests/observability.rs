//! What the probes of issue 16 could not see (item 7), in a whole call: a
//! timestamp on every `--events` line, the length of a digit entry the
//! caller hung up in the middle of, telephone-events on a payload type the
//! call did not negotiate dropped with one warning, and an end-of-call
//! `lost` that counts only real gaps (telephone-events share the audio's
//! sequence numbers). sipp signals; the test is the caller's RTP.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

/// The RTP port voxgate took for the call it answered (from its log).
fn answered_rtp_port(vg: &Voxgate) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = vg.log();
        if let Some(port) = log
            .lines()
            .filter(|l| l.contains("answering call"))
            .find_map(|l| l.split("rtp_port=").nth(1))
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
        {
            return port;
        }
        assert!(Instant::now() < deadline, "no call answered:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The caller's RTP: one SSRC, one sequence space for audio and events.
struct Caller {
    sock: UdpSocket,
    to: SocketAddr,
    seq: u16,
    ts: u32,
}

impl Caller {
    fn send(&mut self, pt: u8, ts: u32, payload: &[u8]) {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x00C0_FFEEu32.to_be_bytes());
        p.extend_from_slice(payload);
        self.sock.send_to(&p, self.to).unwrap();
        self.seq = self.seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
    }

    /// `frames` of µ-law silence.
    fn audio(&mut self, frames: usize) {
        for _ in 0..frames {
            let ts = self.ts;
            self.send(0, ts, &[0xFF; 160]);
            self.ts = self.ts.wrapping_add(160);
        }
    }

    /// One key press as phones send it: the audio pauses while 8 RFC 4733
    /// packets (5 updates, 3 ends) on `pt` take its sequence numbers.
    fn key(&mut self, pt: u8, code: u8) {
        let ts = self.ts;
        for i in 0..8u16 {
            let end = if i >= 5 { 0x80 } else { 0 };
            let d = (160 * (i.min(5) + 1)).to_be_bytes();
            self.send(pt, ts, &[code, end | 10, d[0], d[1]]);
        }
        self.ts = self.ts.wrapping_add(8 * 160);
    }
}

/// `key=` of the "call ended" log line.
fn ended(log: &str, key: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("call ended"))
        .find_map(|l| l.split(&format!("{key}=")).nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the call-ended line:\n{log}"))
}

#[test]
fn a_call_abandoned_mid_entry_is_visible_timestamped_and_counts_only_real_losses() {
    let vg = Voxgate::start(
        "observe",
        Options {
            flows: root().join("tests/flows_observe"),
            extra_config: "",
        },
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_listen = sock.local_addr().unwrap().port();
    let sipp_thread = {
        let sip = vg.sip;
        std::thread::spawn(move || {
            sipp(
                "caller_bye_late.xml",
                sip,
                "observe",
                false,
                &[("rtp_listen", rtp_listen.to_string())],
            )
        })
    };
    let to = SocketAddr::from(([127, 0, 0, 1], answered_rtp_port(&vg)));
    let mut caller = Caller {
        sock,
        to,
        seq: 40_000,
        ts: 7_000,
    };
    caller.audio(10);
    // Key 5 on PT 96, which this call (offer `0 101`) did not negotiate;
    // twice, for the one warning.
    caller.key(96, 5);
    caller.audio(5);
    caller.key(96, 5);
    caller.audio(5);
    // Keys 1 and 2 on the negotiated 101, in the audio's sequence space.
    caller.key(101, 1);
    caller.audio(5);
    caller.key(101, 2);
    caller.audio(5);
    // A real gap: two audio packets never sent.
    caller.seq = caller.seq.wrapping_add(2);
    caller.audio(10);
    let out = sipp_thread.join().unwrap();
    vg.expect_sipp_ok(&out, "caller hanging up mid-entry");
    let evs = vg.wait_call_end();

    // The entry had 2 keys (the two on PT 96 never counted) when the
    // caller hung up: its length, never its digits.
    let abandoned = events_named(&evs, "digits_abandoned");
    assert_eq!(abandoned.len(), 1, "events:\n{}", pretty(&evs));
    assert_eq!(abandoned[0]["event"]["count"], 2);
    assert_eq!(abandoned[0]["event"]["step"], "ask");
    assert!(events_named(&evs, "digits").is_empty());
    assert_eq!(events_named(&evs, "hung_up_by_caller").len(), 1);

    // Every line: RFC 3339, UTC, milliseconds, in order.
    let stamp = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").unwrap();
    let stamps: Vec<&str> = evs.iter().map(|e| e["ts"].as_str().unwrap_or("")).collect();
    for s in &stamps {
        assert!(stamp.is_match(s), "`{s}` is not RFC 3339 with milliseconds");
    }
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    assert_eq!(fields::events_file_problems(&raw), Vec::<String>::new());

    let log = vg.log_with("call ended");
    let warned = log
        .lines()
        .filter(|l| l.contains("did not negotiate"))
        .count();
    assert_eq!(warned, 1, "one warning per call:\n{log}");
    assert_eq!(ended(&log, "unnegotiated"), 16);
    // 32 event packets took sequence numbers; only the 2 skipped are lost.
    assert_eq!(ended(&log, "lost"), 2, "{log}");
    assert_eq!(fields::log_problems(&log), Vec::<String>::new());
}
