//! Crash and restart (issue 16 item 8): `kill -9` a `serve` with a call in
//! progress, start it again on the same ports at once, place a call that
//! succeeds, and find a closing record (`hangup_by = server_restart`) for
//! the call the crash cut. Prints how long the restart took.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use voxgate::store::Store;

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `sip` answers an OPTIONS with 200 within 100 ms.
fn answers(sip: SocketAddr, sock: &UdpSocket, n: u32) -> bool {
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:ping@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-restart-{n}\r\nFrom: <sip:probe@{local}>;tag=1\r\nTo: <sip:ping@{sip}>\r\nCall-ID: restart-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let _ = sock.send_to(msg.as_bytes(), sip);
    let mut buf = [0u8; 4096];
    matches!(sock.recv_from(&mut buf), Ok((len, _)) if buf[..len].starts_with(b"SIP/2.0 200"))
}

/// `voxgate serve` on `dir`'s config (the one `Voxgate::start` wrote).
fn serve_again(dir: &Path) -> Reaped {
    Reaped(
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(dir.join("voxgate.yaml"))
            .arg("--events")
            .arg(dir.join("events2.jsonl"))
            .env("VOXGATE_LOG", "info,rsipstack=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("voxgate2.log")).unwrap())
            .spawn()
            .expect("spawn voxgate again"),
    )
}

#[test]
fn kill_9_mid_call_then_restart_on_the_same_ports_and_close_the_cut_call() {
    let state = scratch("crash-state");
    let db = state.join("v.db");
    let config = format!(
        "database: \"{}\"\nsecret_key_file: \"{}\"\n",
        db.display(),
        state.join("secret.key").display()
    );
    let vg = Voxgate::start(
        "crash",
        Options {
            flows: root().join("flows"),
            extra_config: Box::leak(config.into_boxed_str()),
        },
    );
    let sip = vg.sip;
    // A call in progress: sipp stays 4 s after the ACK (killed at the end).
    let sipp_dir = scratch("crash-sipp");
    let sink = RtpSink::new();
    let _caller = Reaped(
        Command::new("sipp")
            .arg(sip.to_string())
            .arg("-sf")
            .arg(root().join("tests/sipp/long_call.xml"))
            .args(["-s", "demo", "-i", "127.0.0.1", "-m", "1", "-nostdin"])
            .args([
                "-p",
                &free_port().to_string(),
                "-mp",
                &free_port().to_string(),
            ])
            .args(["-key", "rtp_listen", &sink.port().to_string()])
            .current_dir(&sipp_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp"),
    );
    vg.wait_events("the call's flow to start", Duration::from_secs(20), |evs| {
        !events_named(evs, "flow_started").is_empty()
    });
    let cut = vg.read_events()[0]["call_id"].as_str().unwrap().to_string();
    // Its start reached the store (the open-call mark is written off the call's task).
    let store = Store::open(&db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.open_call_count().unwrap() == 0 {
        assert!(Instant::now() < deadline, "the call was never marked open");
        std::thread::sleep(Duration::from_millis(20));
    }

    let status = Command::new("kill")
        .args(["-9", &vg.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    let dir = vg.dir.clone();
    // Reap it (so its ports are certainly closed) without waiting on Drop.
    drop(vg);
    let started = Instant::now();
    let _again = serve_again(&dir);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut n = 0;
    while !answers(sip, &probe, n) {
        n += 1;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no answer on the same port after the restart:\n{}",
            std::fs::read_to_string(dir.join("voxgate2.log")).unwrap_or_default()
        );
    }
    let ready = started.elapsed();
    eprintln!(
        "restart after kill -9: ready on the same SIP port {} ms after the new process was spawned ({} ms after the kill)",
        ready.as_millis(),
        killed.elapsed().as_millis()
    );

    // The call the crash cut has its closing record.
    let recs = store.call_records().unwrap();
    let closed = recs
        .iter()
        .find(|r| r.call_id == cut)
        .unwrap_or_else(|| panic!("no record for the cut call {cut}: {recs:?}"));
    assert_eq!(closed.hangup_by.as_deref(), Some("server_restart"));
    assert_eq!(closed.flow, "demo");
    assert_eq!(store.open_call_count().unwrap(), 0);
    let log2 = std::fs::read_to_string(dir.join("voxgate2.log")).unwrap();
    assert!(log2.contains("did not end"), "{log2}");

    // A new call on the restarted server, same ports, succeeds.
    let sink = RtpSink::new();
    let out = sipp(
        "dtmf_play.xml",
        sip,
        "demo",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("dtmf", "12#".into()),
        ],
    );
    assert!(
        out.status.success(),
        "call after restart failed: {}\n{log2}",
        String::from_utf8_lossy(&out.stdout)
    );
    let events2 = dir.join("events2.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let raw = std::fs::read_to_string(&events2).unwrap_or_default();
        if raw.contains("hung_up_by") {
            assert!(raw.contains(r#""digits":"12""#), "{raw}");
            break;
        }
        assert!(Instant::now() < deadline, "the new call did not end: {raw}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
