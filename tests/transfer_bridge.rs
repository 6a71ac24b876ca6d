//! End to end: a bridged transfer (B2BUA) in `voxgate serve`. sipp is the
//! caller and, on a port of its own, the agent of the flow's agent group:
//! voxgate calls the agent itself, relays media and digits both ways, and
//! ends the caller's leg when the agent hangs up. The agent's scenario checks
//! the context on the INVITE (X-Auth-Result, User-to-User, the signed
//! assertion) and logs the assertion, which the test then verifies with
//! `voxgate keys verify` (and sees a tampered copy refused).

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::*;

const ENDS: &[&str] = &["transferred", "failed", "broken"];

/// sipp as an agent running `scenario` once on a port of its own.
fn agent(name: &str, scenario: &str) -> (Child, SocketAddr, PathBuf) {
    agent_keys(name, scenario, &[])
}

/// [`agent`] with sipp `-key`s.
fn agent_keys(name: &str, scenario: &str, keys: &[(&str, String)]) -> (Child, SocketAddr, PathBuf) {
    let dir = scratch(&format!("bridge-agent-{name}"));
    let port = free_port();
    let mut cmd = Command::new("sipp");
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    let child = cmd
        .arg("-sf")
        .arg(root().join("tests/sipp").join(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &free_port().to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .args(["-trace_err", "-trace_logs"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sipp (apt-get install sip-tester)");
    (child, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

fn agent_passed(child: Child, dir: &PathBuf, what: &str) {
    let out = child.wait_with_output().unwrap();
    let errs: String = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("errors"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        out.status.success(),
        "sipp as the agent ({what}) failed:\nstdout:\n{}\nstderr:\n{}\nerrors:\n{errs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the agent's scenario logged after `ASSERTION `.
fn logged_assertion(dir: &PathBuf) -> String {
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        if e.file_name().to_string_lossy().ends_with("_logs.log") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            if let Some(t) = text.lines().find_map(|l| l.split("ASSERTION ").nth(1)) {
                return t.trim().to_string();
            }
        }
    }
    panic!("the agent logged no assertion in {}", dir.display());
}

fn start(name: &str, agents: &[SocketAddr]) -> Voxgate {
    start_with(name, agents, "", "")
}

/// [`start`] with more settings of the group (`attempt_timeout: 2s, `)
/// and of `transfer:` (`  max_bridge: 10s\n`).
fn start_with(name: &str, agents: &[SocketAddr], group: &str, transfer: &str) -> Voxgate {
    let targets: Vec<String> = agents
        .iter()
        .map(|a| format!("\"sip:agent@{a}\""))
        .collect();
    let extra = format!(
        "rtp_timeout: 2m\ntransfer:\n  groups:\n    agents: {{ {group}targets: [{}] }}\n  assertion: {{ algorithm: EdDSA, ttl: 30s }}\n{transfer}",
        targets.join(", ")
    );
    Voxgate::start(
        name,
        Options {
            flows: root().join("tests/flows_bridge"),
            extra_config: Box::leak(extra.into_boxed_str()),
        },
    )
}

/// An even UDP port standing in for the caller's RTP.
fn rtp_port() -> UdpSocket {
    (0..100)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .find(|s| s.local_addr().unwrap().port() % 2 == 0)
        .expect("an even RTP port")
}

/// The caller: sipp in a folder holding its tone (2 s of 1 kHz, u-law).
fn caller(vg: &Voxgate, rtp: &UdpSocket) -> std::process::Output {
    caller_with(vg, rtp, "bridge_caller.xml")
}

/// [`caller`] running `scenario`.
fn caller_with(vg: &Voxgate, rtp: &UdpSocket, scenario: &str) -> std::process::Output {
    let dir = scratch("bridge-caller");
    let st = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw"])
        .arg(dir.join("tone.ulaw"))
        .args(["synth", "2", "sine", "1000", "vol", "0.5"])
        .status()
        .expect("sox");
    assert!(st.success());
    sipp_in(
        &dir,
        scenario,
        vg.sip,
        "bridge",
        false,
        &[("rtp_listen", rtp.local_addr().unwrap().port().to_string())],
    )
}

/// The value of `key=` in the last log line containing `what`.
fn logged(log: &str, what: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no `{what}` line:\n{log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap()
}

/// The agent answers (PCMA, the caller speaks PCMU): media and digits are
/// relayed both ways, the context arrives with a verifiable assertion, and
/// the agent hanging up ends the caller's leg with our BYE.
#[test]
fn a_bridged_transfer_relays_media_and_digits_and_carries_the_context() {
    let (child, addr, dir) = agent("answer", "uas_bridge.xml");
    let vg = start("bridge-answer", &[addr]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = caller(&vg, &rtp);
    vg.expect_sipp_ok(&out, "bridge_caller.xml");
    agent_passed(child, &dir, "answer");
    let evs = vg.call_events_since(before);
    assert_eq!(
        last_step_among(&evs, ENDS),
        "transferred",
        "{}",
        pretty(&evs)
    );
    let done = events_named(&evs, "transferred");
    assert_eq!(done[0]["event"]["via"], "bridge", "{}", pretty(&evs));
    // Wait for the agent leg's closing line, then read its relay counts.
    let mut log = vg.log();
    for _ in 0..50 {
        if log.contains("agent leg ended") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = vg.log();
    }
    // Audio went both ways through the relay (the agent's pcap toward the
    // caller, the caller's toward the agent), transcoded PCMU <-> PCMA.
    assert!(logged(&log, "agent leg ended", "relayed_out") > 0, "{log}");
    assert!(logged(&log, "agent leg ended", "relayed_in") > 0, "{log}");
    // The caller's `#` left on the agent leg as RFC 4733, the agent's `1`
    // on the caller's.
    assert!(
        logged(&log, "agent leg ended", "digits_relayed_out") >= 1,
        "{log}"
    );
    assert!(
        logged(&log, "agent leg ended", "digits_relayed_in") >= 1,
        "{log}"
    );
    // The assertion verifies with the server's public key; a tampered one does not.
    let token = logged_assertion(&dir);
    let cfg = vg.dir.join("voxgate.yaml");
    let ok = Command::new(bin())
        .args(["keys", "verify", "--config"])
        .arg(&cfg)
        .arg(&token)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(claims["auth_result"], "none");
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 60);
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}x", parts[2]);
    parts[2] = &forged;
    let bad = Command::new(bin())
        .args(["keys", "verify", "--config"])
        .arg(&cfg)
        .arg(parts.join("."))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    assert_eq!(fields::events_file_problems(&raw), Vec::<String>::new());
    assert_eq!(fields::log_problems(&vg.log()), Vec::<String>::new());
}

/// The first agent is busy (486), the second answers: the group falls
/// through in order and the call is bridged to the second.
#[test]
fn a_busy_agent_falls_through_to_the_next_in_the_group() {
    let (busy, busy_addr, busy_dir) = agent("busy", "uas_busy.xml");
    let (child, addr, dir) = agent("second", "uas_bridge.xml");
    let vg = start("bridge-fallthrough", &[busy_addr, addr]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = caller(&vg, &rtp);
    vg.expect_sipp_ok(&out, "bridge_caller.xml");
    agent_passed(busy, &busy_dir, "busy");
    agent_passed(child, &dir, "second");
    let evs = vg.call_events_since(before);
    let done = events_named(&evs, "transferred");
    assert_eq!(done.len(), 1, "{}", pretty(&evs));
    assert!(vg.log().contains("agent attempt failed"), "{}", vg.log());
}

/// The caller hangs up while the agent's phone rings: voxgate CANCELs the
/// agent leg (the agent's scenario requires the CANCEL and ACKs its 487),
/// and the flow ends as hung up by the caller, claiming no transfer.
#[test]
fn a_caller_hanging_up_while_the_agent_rings_cancels_the_agent_leg() {
    let (child, addr, dir) = agent("cancel", "uas_ring_cancel.xml");
    let vg = start("bridge-cancel", &[addr]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = sipp(
        "caller_bye.xml",
        vg.sip,
        "bridge",
        false,
        &[("rtp_listen", rtp.local_addr().unwrap().port().to_string())],
    );
    vg.expect_sipp_ok(&out, "caller_bye.xml");
    agent_passed(child, &dir, "CANCEL expected");
    let evs = vg.call_events_since(before);
    assert_eq!(last_step_among(&evs, ENDS), "none", "{}", pretty(&evs));
    assert!(
        events_named(&evs, "transferred").is_empty(),
        "{}",
        pretty(&evs)
    );
    assert_eq!(
        events_named(&evs, "hung_up_by_caller").len(),
        1,
        "{}",
        pretty(&evs)
    );
}

/// `refer_then_bridge` (the default mode): the caller's side refuses the
/// REFER with 603, so voxgate calls the agent itself and bridges; the agent
/// hanging up ends the caller's leg with our BYE.
#[test]
fn a_refused_refer_falls_back_to_the_bridge() {
    let (child, addr, dir) = agent("fallback", "uas_bridge.xml");
    let vg = start("bridge-fallback", &[addr]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = sipp(
        "silent.xml",
        vg.sip,
        "fallback",
        false,
        &[("rtp_listen", rtp.local_addr().unwrap().port().to_string())],
    );
    vg.expect_sipp_ok(&out, "silent.xml");
    agent_passed(child, &dir, "fallback");
    let evs = vg.call_events_since(before);
    let done = events_named(&evs, "transferred");
    assert_eq!(done.len(), 1, "{}", pretty(&evs));
    assert_eq!(done[0]["event"]["via"], "bridge", "{}", pretty(&evs));
    let log = vg.log();
    assert!(log.contains("REFER failed; bridging"), "{log}");
}

/// Hold passed through the B2BUA: the agent's re-INVITE (a=sendonly)
/// reaches the caller as voxgate's own re-INVITE with a=sendonly (the
/// caller's scenario requires it and answers recvonly), the caller's
/// recvonly comes back to the agent (its scenario requires it), each leg's
/// media follows (nothing sent to the agent while it holds), and the
/// resume (sendrecv) goes the same way.
#[test]
fn hold_from_the_agent_is_passed_to_the_caller_and_answered_back() {
    let (child, addr, dir) = agent("hold", "uas_hold.xml");
    let vg = start("bridge-hold", &[addr]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = caller_with(&vg, &rtp, "bridge_hold_caller.xml");
    vg.expect_sipp_ok(&out, "bridge_hold_caller.xml");
    agent_passed(child, &dir, "hold and resume");
    let evs = vg.call_events_since(before);
    assert_eq!(
        last_step_among(&evs, ENDS),
        "transferred",
        "{}",
        pretty(&evs)
    );
    let log = vg.log();
    let answered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("re-INVITE answered through the bridge"))
        .collect();
    assert_eq!(answered.len(), 2, "{log}");
    // Hold: we told the agent recvonly (so its leg sends nothing); resume: sendrecv.
    assert!(answered[0].contains("from=\"agent\""), "{log}");
    assert!(answered[0].contains("direction=\"recvonly\""), "{log}");
    assert!(answered[1].contains("direction=\"sendrecv\""), "{log}");
    assert_eq!(fields::log_problems(&log), Vec::<String>::new());
}

/// The agent's 183 with SDP: its early media reaches the caller before it
/// answers (the agent leg's media starts at the 183 and relays while the
/// agent's phone still rings).
#[test]
fn the_agents_early_media_reaches_the_caller_before_the_answer() {
    let (child, addr, dir) = agent("early", "uas_early.xml");
    let vg = start("bridge-early", &[addr]);
    let rtp = rtp_port();
    let out = caller(&vg, &rtp);
    vg.expect_sipp_ok(&out, "bridge_caller.xml");
    agent_passed(child, &dir, "early media");
    let mut log = vg.log();
    for _ in 0..50 {
        if log.contains("agent leg ended") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = vg.log();
    }
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no `{what}` in:\n{log}"))
    };
    assert!(
        at("agent leg media started") < at("outbound leg answered"),
        "{log}"
    );
    // 2 s of the agent's audio before its 200: ≈ 100 frames relayed to
    // the caller before the answer, more after.
    assert!(
        logged(&log, "agent leg ended", "relayed_out") >= 80,
        "{log}"
    );
}

/// `transfer.max_bridge`: a bridge nobody ends is cut there, with BYE to
/// both legs (each sipp requires voxgate's BYE).
#[test]
fn max_bridge_ends_both_legs_with_bye() {
    let (child, addr, dir) = agent("max", "uas_wait_bye.xml");
    let vg = start_with("bridge-max", &[addr], "", "  max_bridge: 10s\n");
    let rtp = rtp_port();
    let out = caller(&vg, &rtp);
    vg.expect_sipp_ok(&out, "bridge_caller.xml");
    agent_passed(child, &dir, "BYE at max_bridge");
    assert!(
        vg.log().contains("the bridge reached transfer.max_bridge"),
        "{}",
        vg.log()
    );
}

/// The first agent of the group rings past the group's `attempt_timeout`:
/// voxgate CANCELs it (its scenario requires the CANCEL) and the second
/// agent answers.
#[test]
fn an_agent_ringing_past_the_attempt_timeout_is_cancelled_and_the_next_answers() {
    let (ringing, ringing_addr, ringing_dir) = agent("noanswer", "uas_ring_cancel.xml");
    let (child, addr, dir) = agent("after-noanswer", "uas_bridge.xml");
    let vg = start_with(
        "bridge-noanswer",
        &[ringing_addr, addr],
        "attempt_timeout: 2s, ",
        "",
    );
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = caller(&vg, &rtp);
    vg.expect_sipp_ok(&out, "bridge_caller.xml");
    agent_passed(ringing, &ringing_dir, "CANCEL at the attempt timeout");
    agent_passed(child, &dir, "second agent");
    let evs = vg.call_events_since(before);
    assert_eq!(
        events_named(&evs, "transferred").len(),
        1,
        "{}",
        pretty(&evs)
    );
    assert!(vg.log().contains("agent attempt failed"), "{}", vg.log());
}

/// Power of `freq` Hz over the whole of `pcm` (Goertzel), relative to
/// the signal's energy: near 1 for a pure tone at `freq`.
fn tone_share(pcm: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
    for &x in pcm {
        let x = f64::from(x);
        let s0 = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        2.0 * power / (energy * pcm.len() as f64)
    }
}

/// RTP packets arriving at `sock` until `stop` is set: (payload type, payload).
fn capture(
    sock: UdpSocket,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(u8, Vec<u8>)>> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let mut got = vec![];
        let mut buf = [0u8; 2048];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = sock.recv(&mut buf) {
                if n > 12 {
                    got.push((buf[1] & 0x7f, buf[12..n].to_vec()));
                }
            }
        }
        got
    })
}

/// Once the scenario running in `dir` wrote voxgate's RTP port to
/// `vport.txt`, send a `freq` Hz tone there from `sock` (RTP, `pt`) every
/// 20 ms until `stop`: voxgate's RTP for that leg latches to `sock`.
fn send_tone(
    sock: UdpSocket,
    dir: PathBuf,
    pt: u8,
    freq: f64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use voxgate::media::g711::{encode, Codec};
    std::thread::spawn(move || {
        let file = dir.join("vport.txt");
        let port = loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if let Some(p) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
            {
                break p;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let codec = if pt == 8 { Codec::Pcma } else { Codec::Pcmu };
        let mut n: u32 = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // After 2 s, the caller's side keys `5` in band (770 + 1336 Hz,
            // 120 ms between silences); the agent's side only talks.
            let inband = pt == 0 && (100..106).contains(&n);
            let quiet = pt == 0 && (90..116).contains(&n) && !inband;
            let pcm: Vec<i16> = (0..160)
                .map(|i| {
                    let t = f64::from(n * 160 + i) / 8000.0;
                    let sine = |f: f64| (2.0 * std::f64::consts::PI * f * t).sin();
                    if inband {
                        (6000.0 * (sine(770.0) + sine(1336.0))) as i16
                    } else if quiet {
                        0
                    } else {
                        (8000.0 * sine(freq)) as i16
                    }
                })
                .collect();
            let mut pkt = vec![0x80, pt];
            pkt.extend_from_slice(&(n as u16).to_be_bytes());
            pkt.extend_from_slice(&(n * 160).to_be_bytes());
            pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            let mut payload = vec![];
            encode(codec, &pcm, &mut payload);
            pkt.extend_from_slice(&payload);
            let _ = sock.send_to(&pkt, ("127.0.0.1", port));
            n += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
}

/// Whether the audio packets of `pt` in `got` carry a tone at `freq`:
/// most 20 ms frames (of those with sound) are dominated by it.
fn tone_heard(got: &[(u8, Vec<u8>)], pt: u8, freq: f64) -> (usize, usize) {
    use voxgate::media::g711::{decode, Codec};
    let codec = if pt == 8 { Codec::Pcma } else { Codec::Pcmu };
    let (mut loud, mut toned) = (0, 0);
    for (_, payload) in got.iter().filter(|(p, _)| *p == pt) {
        let mut pcm = vec![];
        decode(codec, payload, &mut pcm);
        if pcm.iter().map(|&x| i64::from(x).abs()).max().unwrap_or(0) < 1000 {
            continue;
        }
        loud += 1;
        if tone_share(&pcm, freq) > 0.5 {
            toned += 1;
        }
    }
    (loud, toned)
}

/// Media really flows both ways, heard at each end: the caller's 1 kHz
/// tone (PCMU) arrives at the agent's RTP address transcoded to PCMA, the
/// agent's 600 Hz tone (PCMA) at the caller's in PCMU; and the caller's
/// digits keyed by SIP INFO (7) and in band (5) arrive at the agent as
/// RFC 4733 events on the agent's telephone-event payload type. The test's own sockets are both
/// legs' media (named in the SDPs, and the tones' source, so voxgate's RTP
/// latches to them): the test hears exactly what voxgate sends each leg.
#[test]
fn tones_cross_the_bridge_both_ways_and_info_and_inband_digits_reach_the_agent_as_rfc4733() {
    let caller_rtp = rtp_port();
    let agent_rtp = rtp_port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let at_agent = capture(agent_rtp.try_clone().unwrap(), stop.clone());
    let at_caller = capture(caller_rtp.try_clone().unwrap(), stop.clone());
    let (child, addr, dir) = agent_keys(
        "probe",
        "uas_probe.xml",
        &[(
            "rtp_listen",
            agent_rtp.local_addr().unwrap().port().to_string(),
        )],
    );
    let agent_tone = send_tone(
        agent_rtp.try_clone().unwrap(),
        dir.clone(),
        8,
        600.0,
        stop.clone(),
    );
    let vg = start("bridge-probe", &[addr]);
    let caller_dir = scratch("bridge-probe-caller");
    let caller_tone = send_tone(
        caller_rtp.try_clone().unwrap(),
        caller_dir.clone(),
        0,
        1000.0,
        stop.clone(),
    );
    let out = sipp_in(
        &caller_dir,
        "bridge_probe_caller.xml",
        vg.sip,
        "bridge",
        false,
        &[(
            "rtp_listen",
            caller_rtp.local_addr().unwrap().port().to_string(),
        )],
    );
    vg.expect_sipp_ok(&out, "bridge_probe_caller.xml");
    agent_passed(child, &dir, "probe");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    agent_tone.join().unwrap();
    caller_tone.join().unwrap();
    let at_agent = at_agent.join().unwrap();
    let at_caller = at_caller.join().unwrap();
    let (loud, toned) = tone_heard(&at_agent, 8, 1000.0);
    assert!(
        loud >= 25 && toned * 10 >= loud * 8,
        "at the agent: {toned} of {loud} loud PCMA frames hold 1 kHz"
    );
    let (loud, toned) = tone_heard(&at_caller, 0, 600.0);
    assert!(
        loud >= 25 && toned * 10 >= loud * 8,
        "at the caller: {toned} of {loud} loud PCMU frames hold 600 Hz"
    );
    // RFC 4733 on the agent's PT 101: event 7, an end packet among them.
    let events: Vec<&Vec<u8>> = at_agent
        .iter()
        .filter(|(pt, p)| *pt == 101 && p.len() >= 4)
        .map(|(_, p)| p)
        .collect();
    assert!(!events.is_empty(), "no RFC 4733 packet reached the agent");
    // 7 keyed by SIP INFO, 5 in band: both re-sent as RFC 4733.
    assert!(events.iter().all(|p| p[0] == 7 || p[0] == 5), "{events:?}");
    assert!(events.iter().any(|p| p[0] == 7), "{events:?}");
    assert!(events.iter().any(|p| p[0] == 5), "{events:?}");
    assert!(
        events.iter().any(|p| p[1] & 0x80 != 0),
        "no end packet: {events:?}"
    );
    // And nothing of it in the caller's direction (the caller keyed it).
    assert!(!at_caller.iter().any(|(pt, _)| *pt == 101));
}

/// A real softphone as the agent: baresip answers by itself
/// (`answermode=auto`), sends a 440 Hz tone and hangs up when its time is
/// up; voxgate relays both ways and the agent's hang-up ends the caller's
/// leg with our BYE.
#[test]
fn baresip_answers_as_the_agent_and_audio_is_relayed_both_ways() {
    let dir = scratch("bridge-baresip");
    let st = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(dir.join("in.wav"))
        .args(["synth", "20", "sine", "440", "vol", "0.3"])
        .status()
        .expect("sox");
    assert!(st.success());
    let sip_port = free_port();
    let rtp = free_port();
    let config = format!(
        "sip_listen\t127.0.0.1:{sip_port}\nmodule_path\t/usr/lib/baresip/modules\nmodule\tg711.so\nmodule\taufile.so\nmodule\tsndfile.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\naudio_player\taufile,/dev/null\naudio_source\taufile,{}\naudio_alert\taufile,/dev/null\nsnd_path\t{}\nrtp_ports\t{rtp}-{}\n",
        dir.join("in.wav").display(),
        dir.display(),
        rtp + 3
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:agent@127.0.0.1:{sip_port}>;regint=0;audio_codecs=PCMA;answermode=auto\n"),
    )
    .unwrap();
    let baresip = Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        // One non-loopback IPv4 address for its media: the test network
        // namespace's veth (10.254.254.1).
        .args(["-4", "-t", "10"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baresip (apt-get install baresip-core)");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let agent = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let vg = start("bridge-baresip", &[agent]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = caller(&vg, &rtp);
    let agent_out = baresip.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&agent_out.stdout);
    vg.expect_sipp_ok(&out, "bridge_caller.xml");
    assert!(
        stdout.contains("Call established"),
        "baresip output:\n{stdout}"
    );
    let evs = vg.call_events_since(before);
    let done = events_named(&evs, "transferred");
    assert_eq!(done.len(), 1, "{}", pretty(&evs));
    assert_eq!(done[0]["event"]["via"], "bridge", "{}", pretty(&evs));
    let mut log = vg.log();
    for _ in 0..50 {
        if log.contains("agent leg ended") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = vg.log();
    }
    assert!(logged(&log, "agent leg ended", "relayed_out") > 0, "{log}");
    assert!(logged(&log, "agent leg ended", "relayed_in") > 0, "{log}");
}

/// Hold from the caller's side: its re-INVITE (a=sendonly) reaches the
/// agent as voxgate's own with a=sendonly (the agent's scenario requires
/// it and answers recvonly), the agent's recvonly comes back to the caller
/// (its scenario requires it); then the resume the same way.
#[test]
fn hold_from_the_caller_is_passed_to_the_agent_and_answered_back() {
    let (child, addr, dir) = agent("held", "uas_held.xml");
    let vg = start("bridge-held", &[addr]);
    let rtp = rtp_port();
    let out = caller_with(&vg, &rtp, "bridge_holding_caller.xml");
    vg.expect_sipp_ok(&out, "bridge_holding_caller.xml");
    agent_passed(child, &dir, "held and resumed by the caller");
    let log = vg.log();
    let answered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("re-INVITE answered through the bridge"))
        .collect();
    assert_eq!(answered.len(), 2, "{log}");
    assert!(answered[0].contains("from=\"caller\""), "{log}");
    assert!(answered[0].contains("direction=\"recvonly\""), "{log}");
    assert!(answered[1].contains("direction=\"sendrecv\""), "{log}");
}

/// `refer_then_bridge`: the caller's side accepts the REFER but reports
/// the transfer failed (NOTIFY with a 486 sipfrag), so voxgate bridges to
/// the agent itself; the agent hanging up ends the caller's leg.
#[test]
fn a_failed_refer_sipfrag_falls_back_to_the_bridge() {
    let (child, addr, dir) = agent("sipfrag-fallback", "uas_bridge.xml");
    let vg = start("bridge-sipfrag-fallback", &[addr]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = sipp(
        "refer_busy_then_bridge.xml",
        vg.sip,
        "fallback",
        false,
        &[("rtp_listen", rtp.local_addr().unwrap().port().to_string())],
    );
    vg.expect_sipp_ok(&out, "refer_busy_then_bridge.xml");
    agent_passed(child, &dir, "after a failed REFER");
    let evs = vg.call_events_since(before);
    let done = events_named(&evs, "transferred");
    assert_eq!(done.len(), 1, "{}", pretty(&evs));
    assert_eq!(done[0]["event"]["via"], "bridge", "{}", pretty(&evs));
    assert!(vg.log().contains("REFER failed; bridging"), "{}", vg.log());
}

/// The caller hangs up during the bridge: voxgate's BYE ends the agent's
/// leg (the agent's scenario requires it).
#[test]
fn a_caller_hanging_up_during_the_bridge_sends_bye_to_the_agent() {
    let (child, addr, dir) = agent("caller-bye", "uas_wait_bye.xml");
    let vg = start("bridge-caller-bye", &[addr]);
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = sipp(
        "caller_bye.xml",
        vg.sip,
        "bridge",
        false,
        &[("rtp_listen", rtp.local_addr().unwrap().port().to_string())],
    );
    vg.expect_sipp_ok(&out, "caller_bye.xml");
    agent_passed(child, &dir, "BYE after the caller's");
    let evs = vg.call_events_since(before);
    assert_eq!(
        events_named(&evs, "transferred").len(),
        1,
        "{}",
        pretty(&evs)
    );
    // The flow's `hangup` after the transfer must not claim the engine ended
    // a call the caller had already left.
    assert_eq!(
        events_named(&evs, "hung_up_by_caller").len(),
        1,
        "{}",
        pretty(&evs)
    );
    assert!(
        events_named(&evs, "hung_up_by_engine").is_empty(),
        "{}",
        pretty(&evs)
    );
}
