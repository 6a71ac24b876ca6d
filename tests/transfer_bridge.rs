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
    let dir = scratch(&format!("bridge-agent-{name}"));
    let port = free_port();
    let child = Command::new("sipp")
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
    let targets: Vec<String> = agents
        .iter()
        .map(|a| format!("\"sip:agent@{a}\""))
        .collect();
    let extra = format!(
        "rtp_timeout: 2m\ntransfer:\n  groups:\n    agents: {{ targets: [{}] }}\n  assertion: {{ algorithm: EdDSA, ttl: 30s }}\n",
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
