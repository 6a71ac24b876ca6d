//! End-to-end calls against a real `voxgate serve`: sipp (UDP and TCP) and
//! baresip as callers, digits by every DTMF method, CANCEL, BYE, re-INVITE,
//! RTP checks on what the caller hears, shutdown and media timeout.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The shipped flows with extra config lines.
fn demo_with(extra_config: &'static str) -> Options<'static> {
    Options {
        flows: root().join("flows"),
        extra_config,
    }
}

/// One sipp call whose SDP points voxgate's RTP at a sink nobody reads.
fn call(vg: &Voxgate, scenario: &str, service: &str) -> std::process::Output {
    let sink = RtpSink::new();
    sipp(
        scenario,
        vg.sip,
        service,
        false,
        &[("rtp_listen", sink.port().to_string())],
    )
}

fn demo() -> Options<'static> {
    demo_with("")
}

/// The digits the demo flow's `ask` step collected, per call.
fn collected(evs: &[serde_json::Value]) -> Vec<String> {
    events_named(evs, "digits")
        .iter()
        .map(|e| e["event"]["digits"].as_str().unwrap_or("").to_string())
        .collect()
}

/// How long a sink waits for more RTP: longer than the consent trickle's
/// one-second gaps, which come before a caller's first RTP packet.
const QUIET: Duration = Duration::from_millis(1600);

/// What voxgate sent to the caller once the caller's own RTP gave consent:
/// before it (these callers wait 1.2 s before keying) only the trickle, at
/// most one packet a second; after it one stream, 20 ms frames, monotonic,
/// with the prompt's audio in it.
fn check_prompt_stream(pkts: &[RtpPacket]) {
    let start = pkts
        .windows(2)
        .rposition(|w| w[1].seq.wrapping_sub(w[0].seq) != 1)
        .map_or(0, |i| i + 1);
    let (trickle, pkts) = pkts.split_at(start);
    assert!(
        trickle.len() <= 3,
        "before the caller's RTP only the consent trickle: {} packets",
        trickle.len()
    );
    for w in trickle.windows(2) {
        assert!(w[1].at.duration_since(w[0].at) >= Duration::from_millis(800));
    }
    assert!(
        pkts.len() >= 50,
        "expected at least a second of RTP, got {} packets",
        pkts.len()
    );
    assert!(pkts.iter().all(|p| p.pt == 0), "all PCMU");
    let ssrc = pkts[0].ssrc;
    assert!(pkts.iter().all(|p| p.ssrc == ssrc), "one SSRC");
    for w in pkts.windows(2) {
        let dseq = w[1].seq.wrapping_sub(w[0].seq);
        let dts = w[1].ts.wrapping_sub(w[0].ts);
        assert_eq!(dseq, 1, "consecutive sequence numbers (loopback, no loss)");
        assert_eq!(
            dts, 160,
            "timestamp advances 160 samples (20 ms at 8 kHz) per packet"
        );
        assert_eq!(w[1].payload.len(), 160, "20 ms of G.711");
    }
    assert!(
        pkts[0].marker || pkts.iter().any(|p| p.marker),
        "marker bit on talkspurt start"
    );
    // Prompt audio, not just silence (µ-law silence is 0xFF/0x7F).
    let loud = pkts
        .iter()
        .filter(|p| {
            p.payload
                .iter()
                .any(|&b| b != 0xFF && b != 0x7F && b != 0xFE && b != 0x7E)
        })
        .count();
    assert!(
        loud > 25,
        "caller heard the prompt: {loud} non-silent packets"
    );
    let span = pkts
        .last()
        .unwrap()
        .at
        .duration_since(pkts[0].at)
        .as_secs_f64();
    eprintln!(
        "RTP: {} packets over {:.2} s = {:.1} packets/s (informational)",
        pkts.len(),
        span,
        (pkts.len() - 1) as f64 / span.max(0.001)
    );
}

fn play_dtmf_call(tcp: bool) {
    let vg = Voxgate::start(
        if tcp {
            "play-dtmf-tcp"
        } else {
            "play-dtmf-udp"
        },
        demo(),
    );
    let sink = RtpSink::new();
    let port = sink.port();
    let collector = std::thread::spawn(move || sink.collect(QUIET, Duration::from_secs(30)));
    let out = sipp(
        "dtmf_play.xml",
        vg.sip,
        "demo",
        tcp,
        &[("rtp_listen", port.to_string()), ("dtmf", "12#".into())],
    );
    vg.expect_sipp_ok(&out, "play_dtmf");
    let evs = vg.wait_call_end();
    assert_eq!(collected(&evs), vec!["12"], "events:\n{}", pretty(&evs));
    let d = events_named(&evs, "digits")[0];
    assert_eq!(d["event"]["source"], "rfc4733");
    let pkts = collector.join().unwrap();
    check_prompt_stream(&pkts);
    assert!(
        events_named(&evs, "hung_up_by_engine").len() == 1,
        "voxgate ended the call with BYE"
    );
}

#[test]
fn udp_call_hears_prompt_and_keys_rfc4733_digits_pt96() {
    play_dtmf_call(false);
}

#[test]
fn tcp_call_hears_prompt_and_keys_rfc4733_digits_pt96() {
    play_dtmf_call(true);
}

#[test]
fn rfc4733_digits_from_shipped_pcaps_pt101() {
    let vg = Voxgate::start("pcap", demo());
    let out = call(&vg, "dtmf_pcap.xml", "demo");
    vg.expect_sipp_ok(&out, "pcap");
    let evs = vg.wait_call_end();
    assert_eq!(collected(&evs), vec!["12"], "events:\n{}", pretty(&evs));
}

#[test]
fn sip_info_digits_both_content_types() {
    let vg = Voxgate::start("info", demo());
    let out = call(&vg, "dtmf_info.xml", "demo");
    vg.expect_sipp_ok(&out, "info");
    let evs = vg.wait_call_end();
    assert_eq!(collected(&evs), vec!["78"], "events:\n{}", pretty(&evs));
    assert_eq!(
        events_named(&evs, "digits")[0]["event"]["source"],
        "sip_info"
    );
}

#[test]
fn inband_tones_in_pcmu_audio() {
    let vg = Voxgate::start("inband", demo());
    let dir = scratch("inband-audio");
    make_dtmf_ulaw("45#", &dir.join("tones.ulaw"));
    let sink = RtpSink::new();
    let out = sipp_in(
        &dir,
        "dtmf_inband.xml",
        vg.sip,
        "demo",
        false,
        &[("rtp_listen", sink.port().to_string())],
    );
    vg.expect_sipp_ok(&out, "inband");
    let evs = vg.wait_call_end();
    assert_eq!(collected(&evs), vec!["45"], "events:\n{}", pretty(&evs));
    assert_eq!(events_named(&evs, "digits")[0]["event"]["source"], "inband");
}

#[test]
fn reinvite_moves_telephone_event_payload_type() {
    let vg = Voxgate::start("reinvite", demo());
    let out = call(&vg, "reinvite_pt.xml", "demo");
    vg.expect_sipp_ok(&out, "re-INVITE");
    let evs = vg.wait_call_end();
    // "1" arrived on PT 101 (first offer), "2#" on PT 96 (only after the re-INVITE).
    assert_eq!(collected(&evs), vec!["12"], "events:\n{}", pretty(&evs));
    assert!(vg.log().contains("re-INVITE accepted"), "{}", vg.log());
}

#[test]
fn cancel_before_answer_gets_487() {
    let vg = Voxgate::start("cancel", demo_with("ring_time: 3s"));
    let out = sipp(
        "cancel.xml",
        vg.sip,
        "demo",
        false,
        &[("rtp_listen", "9".into())],
    );
    vg.expect_sipp_ok(&out, "CANCEL");
    // The flow never starts for a cancelled call.
    std::thread::sleep(Duration::from_millis(500));
    assert!(events_named(&vg.read_events(), "flow_started").is_empty());
}

#[test]
fn caller_hangs_up_with_bye() {
    let vg = Voxgate::start("bye", demo());
    let out = call(&vg, "caller_bye.xml", "demo");
    vg.expect_sipp_ok(&out, "BYE");
    let evs = vg.wait_call_end();
    assert_eq!(
        events_named(&evs, "hung_up_by_caller").len(),
        1,
        "events:\n{}",
        pretty(&evs)
    );
    assert!(events_named(&evs, "hung_up_by_engine").is_empty());
}

#[test]
fn unknown_number_gets_404_and_no_dialog() {
    let vg = Voxgate::start("404", demo());
    let out = sipp(
        "not_found.xml",
        vg.sip,
        "nobody-here",
        false,
        &[("rtp_listen", "9".into())],
    );
    vg.expect_sipp_ok(&out, "404");
    assert!(vg.read_events().is_empty());
}

#[test]
fn no_rtp_from_caller_ends_call() {
    let vg = Voxgate::start("rtp-timeout", demo_with("rtp_timeout: 1s"));
    let out = call(&vg, "silent.xml", "demo");
    vg.expect_sipp_ok(&out, "silent caller");
    let evs = vg.wait_call_end();
    assert!(vg.log().contains("no RTP from the caller"), "{}", vg.log());
    // Ended long before the demo's own no-input handling (two 5 s tries) would.
    assert!(events_named(&evs, "digits").is_empty());
}

#[test]
fn sigterm_refuses_new_calls_and_lets_running_ones_finish() {
    let vg = Voxgate::start("sigterm", demo());
    let sink = RtpSink::new();
    let target = vg.sip;
    let port = sink.port();
    let running = std::thread::spawn(move || {
        sipp(
            "long_call.xml",
            target,
            "demo",
            false,
            &[("rtp_listen", port.to_string())],
        )
    });
    vg.wait_events("the first call to start", Duration::from_secs(10), |evs| {
        !events_named(evs, "flow_started").is_empty()
    });
    Command::new("kill")
        .arg("-TERM")
        .arg(vg.pid().to_string())
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A new call now is refused with 503.
    let refused = sipp(
        "refused_503.xml",
        target,
        "demo",
        false,
        &[("rtp_listen", "9".into())],
    );
    vg.expect_sipp_ok(&refused, "503 during shutdown");
    let out = running.join().unwrap();
    vg.expect_sipp_ok(&out, "call running through shutdown");
    let (clean, log) = vg.terminate();
    assert!(clean, "exit 0 after draining:\n{log}");
    assert!(log.contains("shutting down"), "{log}");
}

/// A real softphone: baresip dials the demo line, sends a tone, records what it hears.
#[test]
fn baresip_places_a_real_call_and_hears_the_prompt() {
    let vg = Voxgate::start("baresip", demo());
    let dir = scratch("baresip");
    sox(
        &["-n", "-r", "8000", "-c", "1", "-b", "16"],
        &dir.join("in.wav"),
        &["synth", "20", "sine", "440", "vol", "0.1"],
    );
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
        format!("<sip:caller@127.0.0.1:{sip_port}>;regint=0;audio_codecs=PCMU\n"),
    )
    .unwrap();
    let out = Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        // baresip wants one non-loopback IPv4 address for its media; in the
        // test network namespace that is a dummy interface scripts/test.sh adds.
        .args(["-4", "-e", &format!("/dial sip:demo@{}", vg.sip), "-t", "7"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("baresip (apt-get install baresip-core)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Call established"),
        "baresip output:\n{stdout}"
    );
    let evs = vg.wait_call_end();
    assert_eq!(events_named(&evs, "flow_started").len(), 1);
    assert_eq!(
        events_named(&evs, "hung_up_by_caller").len(),
        1,
        "baresip hung up after 7 s:\n{}",
        pretty(&evs)
    );
    // What baresip decoded: the prompt's speech, not silence.
    let dump = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip's decoded-audio dump");
    let stat = Command::new("sox")
        .arg(&dump)
        .args(["-n", "stat"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stat.stderr);
    let rms: f64 = text
        .lines()
        .find(|l| l.starts_with("RMS     amplitude"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .expect("sox stat RMS");
    assert!(
        rms > 0.02,
        "baresip heard speech (RMS {rms}); sox stat:\n{text}"
    );
}

fn copy_flows(to: &std::path::Path) {
    for e in std::fs::read_dir(root().join("flows")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn flows_reload_on_change_and_a_broken_edit_keeps_the_old_version() {
    let flows = scratch("reload-flows");
    copy_flows(&flows);
    let vg = Voxgate::start(
        "reload",
        Options {
            flows: flows.clone(),
            extra_config: "",
        },
    );
    // Not served yet.
    let out = sipp(
        "not_found.xml",
        vg.sip,
        "extra",
        false,
        &[("rtp_listen", "9".into())],
    );
    vg.expect_sipp_ok(&out, "404 before the new flow exists");
    // A broken edit is refused with its location; the running flows stay.
    std::fs::write(
        flows.join("broken.yaml"),
        "flow: broken\nsteps:\n  a:\n    plya: [welcome]\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !vg.log().contains("flow reload refused") {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal logged:\n{}",
            vg.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        vg.log().contains("broken.yaml:4:5"),
        "diagnostic with file:line:col:\n{}",
        vg.log()
    );
    let out = call(&vg, "caller_bye.xml", "demo");
    vg.expect_sipp_ok(&out, "demo still served");
    // Fix it and add a flow: both are picked up without a restart.
    std::fs::remove_file(flows.join("broken.yaml")).unwrap();
    let demo = std::fs::read_to_string(flows.join("demo.yaml"))
        .unwrap()
        .replace("flow: demo", "flow: extra");
    std::fs::write(flows.join("extra.yaml"), demo).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let sink = RtpSink::new();
        let out = sipp(
            "dtmf_play.xml",
            vg.sip,
            "extra",
            false,
            &[
                ("rtp_listen", sink.port().to_string()),
                ("dtmf", "9#".into()),
            ],
        );
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new flow never served:\n{}",
            vg.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let evs = vg.wait_events("the extra flow's digits", Duration::from_secs(20), |evs| {
        collected(evs).contains(&"9".to_string())
    });
    assert!(events_named(&evs, "flow_started")
        .iter()
        .any(|e| e["event"]["flow"] == "extra"));
}

/// Backends that do not exist yet take their `error` exit with an error event; nothing pretends success.
/// The caller is on file (the account store is real) without a passphrase,
/// so the flow gets past the lookup and the passphrase (`not_enrolled`) to
/// the code and transfer steps, whose backends are missing.
#[test]
fn bank_flow_in_serve_takes_error_exits_without_backends() {
    let db = scratch("bank-unavailable-db").join("accounts.db");
    let store = voxgate::store::Store::open(&db).unwrap();
    store
        .add(
            &voxgate::store::NewAccount {
                id: Some("ACC-1".into()),
                // silent.xml's From; a 555 number is no valid one, so it goes
                // in as a lookup would write it.
                phone: voxgate::phone::for_lookup("+15551230001", Default::default()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    drop(store);
    // The silent caller sends no RTP: keep rtp_timeout past the flow's end.
    let extra = format!("database: \"{}\"\nrtp_timeout: 2m\n", db.display());
    let vg = Voxgate::start(
        "bank-unavailable",
        Options {
            flows: root().join("flows"),
            extra_config: &extra,
        },
    );
    let out = call(&vg, "silent.xml", "bank");
    vg.expect_sipp_ok(&out, "bank call");
    let evs = vg.wait_call_end();
    assert!(
        evs.iter().any(|e| event_name(e) == "step_left"
            && e["event"]["step"] == "lookup"
            && e["event"]["exit"] == "found"),
        "the caller is found in the store:\n{}",
        pretty(&evs)
    );
    assert!(
        evs.iter().any(|e| event_name(e) == "auth_failed"
            && e["event"]["step"] == "passphrase"
            && e["event"]["reason"] == "not_enrolled"),
        "no passphrase is enrolled for the account: failure at once:\n{}",
        pretty(&evs)
    );
    assert!(
        evs.iter().any(|e| event_name(e) == "step_left"
            && e["event"]["step"] == "send"
            && e["event"]["exit"] == "error"),
        "the code step has no backend yet:\n{}",
        pretty(&evs)
    );
    assert!(
        evs.iter()
            .any(|e| event_name(e) == "step_left" && e["event"]["exit"] == "error"),
        "some step took its error exit:\n{}",
        pretty(&evs)
    );
    assert!(
        !evs.iter()
            .any(|e| event_name(e) == "auth_passed" || event_name(e) == "transfer_succeeded"),
        "{}",
        pretty(&evs)
    );
    assert!(
        events_named(&evs, "error")
            .iter()
            .any(|e| e["event"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("is configured"))),
        "a clear error event names the missing backend:\n{}",
        pretty(&evs)
    );
}

#[test]
fn max_call_duration_ends_the_call() {
    let vg = Voxgate::start("max-duration", demo_with("max_call_duration: 2s"));
    // The caller stays silent; the demo flow alone would wait ~15 s for digits.
    let out = call(&vg, "silent.xml", "demo");
    vg.expect_sipp_ok(&out, "silent caller gets BYE");
    assert!(vg.log().contains("max_call_duration"), "{}", vg.log());
}

/// A minimal INVITE with a PCMU offer from `from` to `to`.
fn raw_invite(from: std::net::SocketAddr, to: std::net::SocketAddr, call_id: &str) -> String {
    let ip = from.ip();
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let sdp = format!(
        "v=0\r\no=t 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    format!(
        "INVITE sip:demo@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:t@{from}>;tag=1\r\nTo: <sip:demo@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:t@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The 200 OK's SDP connection address and Contact for an INVITE from `from_ip`.
fn answer_addresses(vg: &Voxgate, from_ip: &str, to_ip: &str, call_id: &str) -> (String, String) {
    let sock = std::net::UdpSocket::bind((from_ip, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = std::net::SocketAddr::new(to_ip.parse().unwrap(), vg.sip.port());
    let inv = raw_invite(sock.local_addr().unwrap(), to, call_id);
    let mut buf = [0u8; 8192];
    for _ in 0..20 {
        sock.send_to(inv.as_bytes(), to).unwrap();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.starts_with("SIP/2.0 200") {
                let c = text
                    .lines()
                    .find(|l| l.starts_with("c="))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let contact = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("contact:"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                return (c, contact);
            }
        }
    }
    panic!("no 200 OK for {call_id} from {from_ip}; log:\n{}", vg.log());
}

#[test]
fn listening_on_any_address_advertises_the_route_to_each_caller() {
    let vg = Voxgate::start("any-address", demo_with("listen: 0.0.0.0:{port}"));
    let (c, contact) = answer_addresses(&vg, "127.0.0.1", "127.0.0.1", "any-lo");
    assert_eq!(c, "c=IN IP4 127.0.0.1");
    assert!(contact.contains("@127.0.0.1:"), "{contact}");
    // Inside the test network namespace (scripts/test.sh) the veth address
    // exists: a caller there must be given that address, not loopback.
    if std::net::UdpSocket::bind("10.254.254.1:0").is_ok() {
        let (c, contact) = answer_addresses(&vg, "10.254.254.1", "10.254.254.1", "any-veth");
        assert_eq!(c, "c=IN IP4 10.254.254.1");
        assert!(contact.contains("@10.254.254.1:"), "{contact}");
    } else {
        eprintln!("no 10.254.254.1 here (not in the test namespace): loopback part only");
    }
}

#[test]
fn late_offer_invite_without_sdp_is_answered_in_the_ack() {
    let vg = Voxgate::start("late-offer", demo());
    let sink = RtpSink::new();
    let port = sink.port();
    let collector = std::thread::spawn(move || sink.collect(QUIET, Duration::from_secs(30)));
    let out = sipp(
        "late_offer.xml",
        vg.sip,
        "demo",
        false,
        &[("rtp_listen", port.to_string())],
    );
    vg.expect_sipp_ok(&out, "late offer");
    let evs = vg.wait_call_end();
    assert_eq!(collected(&evs), vec!["12"], "events:\n{}", pretty(&evs));
    assert!(
        vg.log().contains("late offer answered in the ACK"),
        "{}",
        vg.log()
    );
    // Audio goes where the ACK's answer said.
    check_prompt_stream(&collector.join().unwrap());
}

#[test]
fn ipv6_call_on_loopback_gets_an_ipv6_answer_and_digits() {
    let vg = Voxgate::start("ipv6", demo_with("listen: \"[::1]:{port}\""));
    let (c, contact) = answer_addresses(&vg, "::1", "::1", "v6-raw");
    assert_eq!(c, "c=IN IP6 ::1");
    assert!(contact.contains("@[::1]:"), "{contact}");
    // A whole call over IPv6: sipp keys digits with play_dtmf.
    let sink = RtpSink::new_v6();
    let out = sipp(
        "dtmf_play.xml",
        vg.sip,
        "demo",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("dtmf", "7#".into()),
        ],
    );
    vg.expect_sipp_ok(&out, "IPv6 play_dtmf");
    // sipp succeeded, so voxgate's BYE came; its digits are in the events.
    let evs = vg.wait_events("the digits", Duration::from_secs(10), |evs| {
        !events_named(evs, "digits").is_empty()
    });
    assert_eq!(
        events_named(&evs, "digits")[0]["event"]["digits"],
        "7",
        "events:\n{}",
        pretty(&evs)
    );
}
