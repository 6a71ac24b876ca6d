//! Media under attack (issue 16): RTP only from the caller, media only to a
//! caller that consents, nothing for an INVITE that is never ACKed. The
//! attacker is a socket on 127.0.0.2 (all of 127/8 is loopback on Linux).
//! The un-ACKed INVITE waits for Timer H (32 s), so it lives in this binary
//! of its own, alongside the shorter tests.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn demo_with(extra_config: &'static str) -> Options<'static> {
    Options {
        flows: root().join("flows"),
        extra_config,
    }
}

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

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// µ-law of one sample (G.711).
fn ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = (s + 0x84).min(0x7FFF);
    let exp = (0..8).rev().find(|e| s & (0x80 << e) != 0).unwrap_or(0);
    let mant = (s >> (exp + 3)) & 0x0F;
    !(sign | (exp << 4) as u8 | mant as u8)
}

/// A caller (sipp, 127.0.0.1) keys `12#` while a third party on 127.0.0.2
/// sprays key presses (RFC 4733 on both negotiated payload types, and the
/// tones in-band) and audio at the call's RTP port: the flow sees the
/// caller's digits only, and none of the call's RTP goes to the attacker.
#[test]
fn a_third_party_can_neither_inject_digits_nor_take_the_audio() {
    let vg = Voxgate::start("attack", demo_with(""));
    let sink = RtpSink::new();
    let port = sink.port();
    let collector =
        std::thread::spawn(move || sink.collect(Duration::from_secs(3), Duration::from_secs(40)));
    let attacker = UdpSocket::bind("127.0.0.2:0").expect("a second loopback address");
    attacker.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sipp_thread = {
        let sip = vg.sip;
        std::thread::spawn(move || {
            sipp(
                "dtmf_play.xml",
                sip,
                "demo",
                false,
                &[("rtp_listen", port.to_string()), ("dtmf", "12#".into())],
            )
        })
    };
    let target = SocketAddr::from(([127, 0, 0, 1], answered_rtp_port(&vg)));
    let spray = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut sent, mut got, mut seq, mut n) = (0u64, 0u64, 100u16, 0u32);
            let mut buf = [0u8; 2048];
            // Key 6 in-band: 770 + 1477 Hz.
            let tone: Vec<u8> = (0..160)
                .map(|i| {
                    let t = i as f32 / 8000.0;
                    let v = 6000.0
                        * ((std::f32::consts::TAU * 770.0 * t).sin()
                            + (std::f32::consts::TAU * 1477.0 * t).sin());
                    ulaw(v as i16)
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                // A new key press every 200 ms: 6 on PT 96, 9 on PT 101.
                let press = n / 20;
                let ts = 10_000 + press * 1600;
                let dur = ((n % 20) as u16 + 1) * 160;
                let end = if n % 20 >= 17 { 0x80 } else { 0 };
                for (pt, code) in [(96u8, 6u8), (101, 9)] {
                    let d = dur.to_be_bytes();
                    let ev = rtp(pt, seq, ts, 0xBAD, &[code, end | 10, d[0], d[1]]);
                    sent += attacker.send_to(&ev, target).is_ok() as u64;
                }
                let audio = rtp(0, seq, n * 160, 0xBAD0, &tone);
                sent += attacker.send_to(&audio, target).is_ok() as u64;
                seq = seq.wrapping_add(1);
                n += 1;
                while attacker.recv_from(&mut buf).is_ok() {
                    got += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (sent, got)
        })
    };
    let out = sipp_thread.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (sprayed, stolen) = spray.join().unwrap();
    vg.expect_sipp_ok(&out, "caller keying 12# under attack");
    let evs = vg.wait_call_end();
    let digits: Vec<_> = events_named(&evs, "digits")
        .iter()
        .map(|e| e["event"]["digits"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(digits, vec!["12"], "events:\n{}", pretty(&evs));
    assert!(sprayed > 100, "the attack ran: {sprayed} packets");
    assert_eq!(stolen, 0, "none of the call's RTP went to the attacker");
    let heard = collector.join().unwrap();
    assert!(heard.len() >= 50, "the caller heard the prompt");
    // The end-of-call line counts what was dropped.
    let log = vg.log();
    let dropped: u64 = log
        .lines()
        .filter(|l| l.contains("call ended"))
        .find_map(|l| l.split("dropped_foreign=").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no drop count in the log:\n{log}"));
    assert!(dropped > 50, "{dropped} of {sprayed} dropped");
    eprintln!("attacker sent {sprayed} packets; {dropped} dropped, 0 answered");
}

/// A raw INVITE from 127.0.0.1 whose SDP names `media` (the victim).
fn invite(from: SocketAddr, to: SocketAddr, media: SocketAddr, call_id: &str) -> String {
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        ip = media.ip(),
        port = media.port()
    );
    format!(
        "INVITE sip:demo@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:t@{from}>;tag=1\r\nTo: <sip:demo@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:t@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// An INVITE that is never ACKed, its SDP naming a victim: no RTP reaches
/// the victim, no flow starts, and the dialog is gone after Timer H (a BYE
/// for it then gets 481). Answered at once, it gets no 100 Trying; its 200
/// is retransmitted (RFC 3261 13.3.1.4), but a second INVITE from the same
/// source while the first is un-ACKed gets its 200 once, and no BYE
/// (`limits.unacked_retransmit_per_source: 1`). Prints the bytes voxgate
/// sent per byte received.
#[test]
fn an_invite_never_acked_gets_no_media_and_is_gone_after_timer_h() {
    let vg = Voxgate::start(
        "no-ack",
        demo_with("limits:\n  unacked_retransmit_per_source: 1\n"),
    );
    let sig = UdpSocket::bind("127.0.0.1:0").unwrap();
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    sig.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    victim.set_nonblocking(true).unwrap();
    let call_id = "never-acked";
    let inv = invite(
        sig.local_addr().unwrap(),
        vg.sip,
        victim.local_addr().unwrap(),
        call_id,
    );
    sig.send_to(inv.as_bytes(), vg.sip).unwrap();
    let start = Instant::now();
    let second = "never-acked-2";
    let inv2 = invite(
        sig.local_addr().unwrap(),
        vg.sip,
        victim.local_addr().unwrap(),
        second,
    );
    let mut second_sent = false;
    let (mut sip_out, mut rtp_out, mut oks) = (0usize, 0usize, 0);
    let (mut oks2, mut tryings, mut byes, mut byes2) = (0, 0, 0, 0);
    let mut to_header = None;
    let mut buf = [0u8; 8192];
    // Timer H is 64×T1 = 32 s; look until 36 s.
    while start.elapsed() < Duration::from_secs(36) {
        if !second_sent && start.elapsed() > Duration::from_millis(200) {
            sig.send_to(inv2.as_bytes(), vg.sip).unwrap();
            second_sent = true;
        }
        if let Ok((n, _)) = sig.recv_from(&mut buf) {
            sip_out += n;
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let of_second = text.contains(&format!("Call-ID: {second}\r\n"));
            if text.starts_with("SIP/2.0 100") {
                tryings += 1;
            } else if text.starts_with("BYE ") {
                if of_second {
                    byes2 += 1;
                } else {
                    byes += 1;
                }
            } else if text.starts_with("SIP/2.0 200") && of_second {
                oks2 += 1;
            } else if text.starts_with("SIP/2.0 200") {
                oks += 1;
                to_header = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                    .map(str::to_string);
            }
        }
        while let Ok((n, _)) = victim.recv_from(&mut buf) {
            rtp_out += n;
        }
    }
    let bytes_in = inv.len() + inv2.len();
    let ratio = (sip_out + rtp_out) as f64 / bytes_in as f64;
    eprintln!(
        "2 un-ACKed INVITEs from one source: {bytes_in} bytes in; {sip_out} bytes of SIP ({oks} + {oks2} × 200 OK, {tryings} × 100, {byes} + {byes2} BYE) and {rtp_out} bytes of RTP out: {ratio:.1} bytes out per byte in",
    );
    // The first: its 200 retransmitted T1, 2T1… up to T2 until Timer H (11 in
    // all by the RFC's schedule), then one BYE.
    assert!(oks >= 8, "200 retransmitted: {oks}; log:\n{}", vg.log());
    assert_eq!(byes, 1, "one BYE at Timer H");
    assert_eq!(oks2, 1, "the second source's 200 went once");
    assert_eq!(byes2, 0, "no BYE for a 200 sent once");
    assert_eq!(tryings, 0, "answered at once: no 100 Trying");
    assert_eq!(rtp_out, 0, "no RTP to an address that never ACKed");
    let evs = vg.read_events();
    assert!(
        events_named(&evs, "flow_started").is_empty(),
        "no flow for an un-ACKed call:\n{}",
        pretty(&evs)
    );
    // The dialog is gone: a BYE in it is answered 481.
    let local = sig.local_addr().unwrap();
    let bye = format!(
        "BYE sip:voxgate@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbye-late\r\nMax-Forwards: 70\r\nFrom: <sip:t@{local}>;tag=1\r\n{}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        to_header.unwrap(),
        to = vg.sip
    );
    sig.send_to(bye.as_bytes(), vg.sip).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        assert!(Instant::now() < deadline, "no answer to the BYE");
        if let Ok((n, _)) = sig.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains("CSeq: 2 BYE") {
                break text.lines().next().unwrap_or("").to_string();
            }
        }
    };
    assert!(status.starts_with("SIP/2.0 481"), "{status}");
}

/// A caller that ACKs but never sends RTP, its SDP naming an address that
/// never answers, gets at most the consent trickle (one packet a second)
/// until rtp_timeout ends the call.
#[test]
fn an_sdp_naming_a_silent_address_gets_only_the_consent_trickle() {
    let vg = Voxgate::start("silent-victim", demo_with("rtp_timeout: 4s"));
    let sink = RtpSink::new();
    let port = sink.port();
    let collector = std::thread::spawn(move || {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while start.elapsed() < Duration::from_secs(12) {
            if let Ok((n, _)) = sink.sock.recv_from(&mut buf) {
                got.push((start.elapsed(), n));
            }
        }
        got
    });
    let out = sipp(
        "silent.xml",
        vg.sip,
        "demo",
        false,
        &[("rtp_listen", port.to_string())],
    );
    vg.expect_sipp_ok(&out, "silent caller");
    assert!(vg.log().contains("no RTP from the caller"), "{}", vg.log());
    let got = collector.join().unwrap();
    eprintln!("silent address received {} packets: {got:?}", got.len());
    assert!(!got.is_empty(), "the trickle reaches it (NAT bindings)");
    assert!(
        got.len() <= 8,
        "at most about one a second for 4 s: {}",
        got.len()
    );
}
