//! Out of descriptors (issue 16 item 5): `serve` raises its soft
//! RLIMIT_NOFILE to the hard limit at start and says so; when TCP peers take
//! every descriptor left, accept backs off instead of spinning (EMFILE fails
//! at once, forever, in a loop without a pause), SIP over UDP is still
//! answered, and once the idle connections close a call over TCP succeeds.
//! One test in its own binary: it lowers this process's own soft limit so
//! `serve` inherits it.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The soft and hard RLIMIT_NOFILE of `pid` (from /proc; "unlimited" is u64::MAX).
fn nofile(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(3)
        .take(2)
        .map(|v| v.parse().unwrap_or(u64::MAX))
        .collect();
    (n[0], n[1])
}

fn prlimit(pid: u32, spec: &str) {
    let st = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={spec}")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(st.success(), "prlimit --nofile={spec} on {pid}");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// User + system CPU time of `pid`, in clock ticks (/proc/<pid>/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn wait_log(vg: &Voxgate, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = vg.log();
        if log.lines().any(&pred) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {what} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn options_udp(to: SocketAddr, n: usize) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:ping@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfd{n}\r\nFrom: <sip:p@{local}>;tag=1\r\nTo: <sip:ping@{to}>\r\nCall-ID: fd-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 4096];
    for _ in 0..6 {
        sock.send_to(msg.as_bytes(), to).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return buf[..n].starts_with(b"SIP/2.0 200");
        }
    }
    false
}

/// A new TCP connection whose OPTIONS is answered 200 within `within`.
fn options_tcp(to: SocketAddr, within: Duration) -> Result<(), String> {
    let msg = format!(
        "OPTIONS sip:ping@{to} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKfdtcp\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:ping@{to}>\r\nCall-ID: fd-tcp\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut s = TcpStream::connect(to).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    if buf[..n].starts_with(b"SIP/2.0 200") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&buf[..n]).into())
    }
}

#[test]
fn out_of_descriptors_accept_backs_off_and_calls_resume() {
    // serve inherits a soft limit below the hard one, and raises it.
    let me = std::process::id();
    let (_, hard) = nofile(me);
    let soft = 512.min(hard);
    prlimit(me, &format!("{soft}:"));
    let vg = Voxgate::start(
        "emfile",
        Options {
            flows: root().join("flows"),
            // The per-source cap would close our connections before the
            // descriptors ran out: lift it, so only the descriptors limit.
            extra_config:
                "limits:\n  tcp:\n    connections_per_source: 100000\n    max_connections: 100000\n",
        },
    );
    let pid = vg.pid();
    let log = wait_log(&vg, "descriptor limit report", |l| {
        l.contains("descriptor limit (RLIMIT_NOFILE)")
    });
    let (started_with, _) = nofile(pid);
    if hard > soft {
        assert_eq!(started_with, hard, "soft limit raised to the hard one");
        assert!(
            log.contains(&format!("before={soft}")),
            "the log says what it was:\n{log}"
        );
    }

    // Leave serve a few descriptors, and take them with idle connections.
    let spare = 12;
    let limit = open_fds(pid) + spare;
    prlimit(pid, &format!("{limit}:{limit}"));
    let mut idle = Vec::new();
    for _ in 0..spare + 40 {
        // Past what serve can accept these wait in the listen backlog.
        match TcpStream::connect(vg.sip) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    wait_log(&vg, "accept back-off", |l| {
        l.contains("TCP accept failed: out of descriptors or memory; backing off")
    });
    assert!(open_fds(pid) >= limit - 2, "descriptors taken");

    // No busy loop: CPU time over 2 s while EMFILE persists stays low.
    let hz = clock_ticks_per_second();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(2));
    let cpu = (cpu_ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64();
    eprintln!(
        "out of descriptors ({limit}, {} connections): serve used {:.1} % of a core",
        idle.len(),
        cpu * 100.0
    );
    assert!(
        cpu < 0.5,
        "{:.0} % of a core while accept fails: a busy loop?",
        cpu * 100.0
    );
    // UDP is still served meanwhile.
    assert!(options_udp(vg.sip, 1), "OPTIONS over UDP unanswered");

    // The idle peers leave; serve accepts again and a call over TCP works.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match options_tcp(vg.sip, Duration::from_secs(3)) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "TCP not served again after the connections closed: {e}\n{}",
                vg.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let sink = RtpSink::new();
    let out = sipp(
        "caller_bye.xml",
        vg.sip,
        "demo",
        true,
        &[("rtp_listen", sink.port().to_string())],
    );
    vg.expect_sipp_ok(&out, "a TCP call after the descriptors came back");
    let log = vg.log();
    let backoffs = log
        .lines()
        .filter(|l| l.contains("TCP accept failed: out of descriptors or memory; backing off"))
        .count();
    assert!(
        backoffs <= 3,
        "{backoffs} back-off lines: one per interval, not per failure:\n{log}"
    );
}
