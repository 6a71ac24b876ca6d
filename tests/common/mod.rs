//! Shared harness for integration tests: start a real `voxgate serve` on
//! loopback ports of its own, drive it with real peers (sipp, baresip, raw
//! sockets), and read the call events it writes as JSON lines.
#![allow(dead_code)]

pub mod fields;
pub mod http;
pub mod smtp;
#[allow(unused_imports)] // Not every test binary fetches a page.
pub use http::http_get;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The voxgate under test: this build, or `VOXGATE_BIN` (to measure another
/// build, e.g. an older one, with the same tests).
pub fn bin() -> PathBuf {
    std::env::var_os("VOXGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_voxgate")))
}

/// Allison's recorded digits and numbers (`digits/NAME.wav`) from Debian's
/// `asterisk-core-sounds-en-wav`, which scripts/test.sh installs. The
/// package puts her voice under en_US_f_Allison; the `en` link to it comes
/// from asterisk's own packages, which need not be here.
pub fn allison_digits() -> PathBuf {
    ["en", "en_US_f_Allison"]
        .map(|d| {
            Path::new("/usr/share/asterisk/sounds")
                .join(d)
                .join("digits")
        })
        .into_iter()
        .find(|d| d.join("0.wav").exists())
        .expect("asterisk-core-sounds-en-wav is missing (scripts/test.sh installs it)")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU16 = AtomicU16::new(0);
    let d = std::env::temp_dir().join(format!(
        "voxgate-test-{}-{}-{}",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Waits (up to 20 s) until something on this host has bound UDP `port`,
/// read from /proc/net/udp{,6} without touching the port: a peer spawned
/// just now (sipp) binds it some time after it starts, later on a loaded
/// machine than any fixed sleep allows.
pub fn wait_udp_bound(port: u16) {
    let suffix = format!(":{port:04X}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bound = ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| a.ends_with(&suffix))
                })
            })
        });
        if bound {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing bound UDP port {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port free for both UDP and TCP right now, even (sipp wants an
/// even media port), below the kernel's ephemeral range where it can: a port
/// from that range can be taken between this probe and the server's bind by
/// any outgoing connection's local end (an SMTP sink once lost its port so,
/// errno 98). Successive calls in one process walk the range four apart, so
/// tests running alongside never draw the same port (or sipp's -mp + 1..3).
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Above serve's default rtp_ports (20000-29999, which a config without
    // its own must not overlap with its SIP port) and so above every test's
    // RTP range (rtp_range).
    const LOW: u16 = 30_000;
    let high = ephemeral_low().unwrap_or(0);
    if high >= LOW + 400 {
        let slots = (high - LOW) / 4;
        // Scrambled, so processes started one after another do not walk
        // the same ports.
        let start = (std::process::id().wrapping_mul(0x9E37_79B1) % u32::from(slots)) as u16;
        for _ in 0..slots {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW + (start.wrapping_add(n) % slots) * 4;
            if UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
            {
                return port;
            }
        }
    }
    // No room below the ephemeral range: probe in it.
    for _ in 0..200 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && port % 2 == 0 {
            return port;
        }
    }
    panic!("no free port");
}

/// The lowest port the kernel hands to outgoing connections.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Each test gets its own RTP range (tests in one binary run in parallel),
/// within 20000..29040, below free_port()'s ports.
fn rtp_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
    let base = 20000 + ((std::process::id() % 40) * 200 + n * 40) % 9000;
    let base = base as u16;
    (base, base + 39)
}

/// `serve` on `flows` (under the repo) with the speech models in `models`,
/// an account store at a path of its own seeded with `accounts` (id, phone,
/// passphrase) sealed under a key written where serve reads it; `extra` is
/// more config (`{port}` is the SIP port).
pub fn serve_with_passphrases(
    name: &str,
    flows: &str,
    models: &Path,
    extra: &str,
    accounts: &[(&str, &str, &str)],
) -> Voxgate {
    use voxgate::phone::{normalise, Country};
    use voxgate::store::sealed::write_key_file;
    use voxgate::store::{NewAccount, SecretKey, Store};
    let state = scratch(&format!("{name}-state"));
    let (db, key_file) = (state.join("accounts.db"), state.join("secret.key"));
    let key = SecretKey::generate();
    write_key_file(&key_file, &key).unwrap();
    let store = Store::open(&db).unwrap();
    for (id, phone, phrase) in accounts {
        let acct = NewAccount {
            id: Some((*id).to_string()),
            phone: Some(normalise(phone, Country::default()).unwrap()),
            passphrase: Some(zeroize::Zeroizing::new((*phrase).to_string())),
            ..NewAccount::default()
        };
        assert_eq!(store.add(&acct, Some(&key)).unwrap(), *id);
    }
    drop(store);
    let config = format!(
        "models_dir: \"{}\"\ndatabase: \"{}\"\nsecret_key_file: \"{}\"\n{extra}",
        models.display(),
        db.display(),
        key_file.display()
    );
    Voxgate::start(
        name,
        Options {
            flows: root().join(flows),
            extra_config: &config,
        },
    )
}

pub struct Voxgate {
    child: Child,
    pub sip: SocketAddr,
    pub events: PathBuf,
    pub dir: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

pub struct Options<'a> {
    pub flows: PathBuf,
    pub extra_config: &'a str,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            flows: root().join("tests/flows"),
            extra_config: "",
        }
    }
}

impl Voxgate {
    pub fn start(name: &str, opts: Options<'_>) -> Voxgate {
        // free_port's port is free when it returns, not when voxgate binds
        // it: another test's socket can take it in between. Then voxgate
        // exits at start-up with EADDRINUSE; start again on another port.
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::try_start(name, &opts) {
                Ok(vg) => return vg,
                Err(log) if tries < 5 && log.contains("Address already in use") => {
                    eprintln!("voxgate's port was taken before it bound it; again");
                }
                Err(log) => panic!("{log}"),
            }
        }
    }

    fn try_start(name: &str, opts: &Options<'_>) -> Result<Voxgate, String> {
        let dir = scratch(name);
        let port = free_port();
        let (lo, hi) = rtp_range();
        // `{port}` in extra_config is the SIP port; an own `listen:` replaces ours.
        let extra = opts.extra_config.replace("{port}", &port.to_string());
        let listen = if extra.contains("listen:") {
            String::new()
        } else {
            format!("listen: 127.0.0.1:{port}\n")
        };
        let cfg = format!(
            "{listen}rtp_ports: {lo}-{hi}\nflows_dir: {}\nprompts_dir: {}\nshutdown_grace: 5s\n{extra}\n",
            opts.flows.display(),
            root().join("prompts").display(),
        );
        let cfg_path = dir.join("voxgate.yaml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let events = dir.join("events.jsonl");
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .arg("--events")
            .arg(&events)
            .env("VOXGATE_LOG", "debug,rsipstack=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn voxgate");
        let err = child.stderr.take().unwrap();
        let log_path = dir.join("voxgate.log");
        // Copy the log to a file line by line so tests can read it while voxgate runs.
        let stderr = std::thread::spawn(move || {
            use std::io::Write;
            let mut all = String::new();
            let mut file = std::fs::File::create(&log_path).ok();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        // Where to reach it: our listen line's address (any-address → loopback).
        let sip: SocketAddr = extra
            .lines()
            .find_map(|l| l.trim().strip_prefix("listen:"))
            .map(|v| {
                v.trim()
                    .trim_matches('"')
                    .replace("0.0.0.0", "127.0.0.1")
                    .replace("[::]", "[::1]")
            })
            .unwrap_or_else(|| format!("127.0.0.1:{port}"))
            .parse()
            .unwrap();
        let mut vg = Voxgate {
            child,
            sip,
            events,
            dir,
            stderr: Some(stderr),
        };
        vg.wait_ready()?;
        Ok(vg)
    }

    /// OPTIONS until it answers (the health probe a dispatcher would use);
    /// what went wrong when voxgate exited instead.
    fn wait_ready(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind(if self.sip.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        })
        .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                return Err(format!("voxgate exited during start-up ({status}):\n{log}"));
            }
            let local = sock.local_addr().unwrap();
            let msg = format!(
                "OPTIONS sip:ping@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{n}\r\nFrom: <sip:probe@{local}>;tag=1\r\nTo: <sip:ping@{sip}>\r\nCall-ID: ready-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                sip = self.sip,
                n = Instant::now().elapsed().as_nanos()
            );
            let _ = sock.send_to(msg.as_bytes(), self.sip);
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return Ok(());
                }
            }
        }
        panic!("voxgate did not answer OPTIONS within 20 s");
    }

    /// The sipp run must have passed; otherwise show its output and our log.
    pub fn expect_sipp_ok(&self, out: &Output, what: &str) {
        assert!(
            out.status.success(),
            "sipp {what} failed: {}\n{}\nvoxgate log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Events up to the end of a call (a hang-up by either side).
    pub fn wait_call_end(&self) -> Vec<serde_json::Value> {
        self.wait_events("the call to end", Duration::from_secs(30), |evs| {
            evs.iter().any(|e| event_name(e).starts_with("hung_up"))
        })
    }

    /// The events of the call that starts after the first `before` events,
    /// once it has hung up (calls on one voxgate run one after another).
    /// The events of the one call made after the first `before` events, once
    /// it has ended. Only that call's: a late event of an earlier call (a
    /// delivery receipt's `code_delivery`) may land after `before` too.
    pub fn call_events_since(&self, before: usize) -> Vec<serde_json::Value> {
        let call_of = |evs: &[serde_json::Value]| -> Option<String> {
            let later = || evs.iter().skip(before);
            later()
                .find(|e| event_name(e) == "flow_started")
                .or_else(|| later().find(|e| event_name(e).starts_with("hung_up")))
                .and_then(|e| e["call_id"].as_str().map(str::to_string))
        };
        let all = self.wait_events("the call to end", Duration::from_secs(60), |evs| {
            call_of(evs).is_some_and(|id| {
                evs.iter().skip(before).any(|e| {
                    e["call_id"].as_str() == Some(id.as_str())
                        && event_name(e).starts_with("hung_up")
                })
            })
        });
        let id = call_of(&all);
        all[before..]
            .iter()
            .filter(|e| e["call_id"].as_str() == id.as_deref())
            .cloned()
            .collect()
    }

    pub fn read_events(&self) -> Vec<serde_json::Value> {
        let Ok(f) = std::fs::File::open(&self.events) else {
            return vec![];
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// Wait until `pred` holds on the events so far (or panic with them).
    pub fn wait_events<F: Fn(&[serde_json::Value]) -> bool>(
        &self,
        what: &str,
        timeout: Duration,
        pred: F,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let evs = self.read_events();
            if pred(&evs) {
                return evs;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; events so far:\n{}\nlog:\n{}",
                    pretty(&evs),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("voxgate.log"))
            .unwrap_or_else(|_| "(log not yet written)".into())
    }

    /// The log once a line contains `needle` (up to 20 s): a line written
    /// after the event a test waited for (the "call ended" summary) reaches
    /// the file through a copying thread, a little later.
    pub fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.lines().any(|l| l.contains(needle)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait; returns exit success and the log.
    pub fn terminate(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status.is_some_and(|s| s.success()), log)
    }
}

impl Drop for Voxgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn pretty(evs: &[serde_json::Value]) -> String {
    evs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Name of an event line (`{"call_id":…, "event": {"event": NAME, …}}`).
pub fn event_name(ev: &serde_json::Value) -> &str {
    ev["event"]["event"].as_str().unwrap_or("")
}

pub fn events_named<'a>(evs: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    evs.iter().filter(|e| event_name(e) == name).collect()
}

/// Run one sipp scenario from tests/sipp against voxgate; returns its output.
pub fn sipp(
    scenario: &str,
    target: SocketAddr,
    service: &str,
    tcp: bool,
    keys: &[(&str, String)],
) -> Output {
    let dir = scratch(&format!("sipp-{}", scenario.trim_end_matches(".xml")));
    sipp_in(&dir, scenario, target, service, tcp, keys)
}

/// Like [`sipp`], run in `dir` (scenario files like audio are looked up there).
pub fn sipp_in(
    dir: &Path,
    scenario: &str,
    target: SocketAddr,
    service: &str,
    tcp: bool,
    keys: &[(&str, String)],
) -> Output {
    let local = if target.is_ipv6() { "::1" } else { "127.0.0.1" };
    sipp_from(dir, scenario, target, service, tcp, local, keys)
}

/// Like [`sipp_in`], with sipp bound to `local_ip` (`-i`): its SIP packets
/// come from that address, e.g. `127.0.0.2` for a second peer (all of
/// 127/8 is loopback on Linux).
pub fn sipp_from(
    dir: &Path,
    scenario: &str,
    target: SocketAddr,
    service: &str,
    tcp: bool,
    local_ip: &str,
    keys: &[(&str, String)],
) -> Output {
    // sipp binds -mp and the three ports above it (RTCP, video RTP/RTCP);
    // free_port() probes only one, so a test running alongside can hold one
    // of the others. sipp then stops before creating its call: run it again
    // on other ports (nothing was sent, so the test sees one clean call).
    for _ in 0..4 {
        let out = sipp_once(dir, scenario, target, service, tcp, local_ip, keys);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success()
            || !(stderr.contains("Unable to bind") && stderr.contains("errno = 98"))
        {
            return out;
        }
        eprintln!("sipp could not bind its ports (taken by a parallel test); retrying");
    }
    sipp_once(dir, scenario, target, service, tcp, local_ip, keys)
}

fn sipp_once(
    dir: &Path,
    scenario: &str,
    target: SocketAddr,
    service: &str,
    tcp: bool,
    local_ip: &str,
    keys: &[(&str, String)],
) -> Output {
    let mut cmd = Command::new("sipp");
    cmd.arg(target.to_string())
        .arg("-sf")
        .arg(root().join("tests/sipp").join(scenario))
        .args([
            "-s",
            service,
            "-i",
            local_ip,
            "-m",
            "1",
            "-l",
            "1",
            "-nostdin",
            "-timeout",
            "40s",
            "-timeout_error",
        ])
        .args([
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ])
        .args(["-t", if tcp { "t1" } else { "u1" }])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(dir.join("errors.log"))
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    let out = cmd.output().expect("run sipp (apt-get install sip-tester)");
    if !out.status.success() {
        let errs = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
        eprintln!(
            "sipp {scenario} failed:\nstdout:\n{}\nstderr:\n{}\nerrors:\n{errs}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A UDP socket standing in for the caller's RTP port: collects what voxgate sends.
pub struct RtpSink {
    pub sock: UdpSocket,
}

#[derive(Debug, Clone)]
pub struct RtpPacket {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub at: Instant,
}

impl RtpSink {
    pub fn new() -> RtpSink {
        // free_port() only probes: a test running alongside may take the
        // port before we bind it, so try again.
        let sock = (0..50)
            .find_map(|_| UdpSocket::bind(("127.0.0.1", free_port())).ok())
            .expect("no free even UDP port for the RTP sink");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        RtpSink { sock }
    }

    /// A sink on ::1 (IPv6 calls).
    pub fn new_v6() -> RtpSink {
        let sock = UdpSocket::bind(("::1", 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        RtpSink { sock }
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Collect packets until `quiet` passes with nothing received (or `max` total).
    pub fn collect(&self, quiet: Duration, max: Duration) -> Vec<RtpPacket> {
        let start = Instant::now();
        let mut last = Instant::now();
        let mut out = vec![];
        let mut buf = [0u8; 2048];
        while start.elapsed() < max {
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 12 => {
                    last = Instant::now();
                    out.push(RtpPacket {
                        pt: buf[1] & 0x7f,
                        marker: buf[1] & 0x80 != 0,
                        seq: u16::from_be_bytes([buf[2], buf[3]]),
                        ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                        payload: buf[12..n].to_vec(),
                        at: last,
                    });
                }
                _ => {
                    if !out.is_empty() && last.elapsed() > quiet {
                        break;
                    }
                }
            }
        }
        out
    }
}

/// Telephone-quality in-band DTMF: each digit 100 ms of its two tones, 100 ms pause, µ-law raw.
pub fn make_dtmf_ulaw(digits: &str, path: &Path) {
    let freqs = |d: char| -> (u32, u32) {
        let rows = [697, 770, 852, 941];
        let cols = [1209, 1336, 1477, 1633];
        let keys = ["123A", "456B", "789C", "*0#D"];
        for (r, k) in keys.iter().enumerate() {
            if let Some(c) = k.find(d) {
                return (rows[r], cols[c]);
            }
        }
        panic!("not a DTMF digit: {d}")
    };
    let dir = path.parent().unwrap();
    let mut parts = vec![];
    // Lead-in silence so the jitter buffer and detector settle.
    let sil = dir.join("sil.raw");
    sox(
        &["-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw"],
        &sil,
        &["trim", "0", "0.3"],
    );
    parts.push(sil.clone());
    for (i, d) in digits.chars().enumerate() {
        let (lo, hi) = freqs(d);
        let tone = dir.join(format!("t{i}.raw"));
        sox(
            &["-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw"],
            &tone,
            &[
                "synth",
                "0.1",
                "sine",
                &lo.to_string(),
                "sine",
                &hi.to_string(),
                "remix",
                "-",
                "vol",
                "0.5",
            ],
        );
        parts.push(tone);
        parts.push(sil.clone());
    }
    let mut all = vec![];
    for p in parts {
        all.extend(std::fs::read(p).unwrap());
    }
    std::fs::write(path, all).unwrap();
}

pub fn sox(input: &[&str], out: &Path, effects: &[&str]) {
    let st = Command::new("sox")
        .args(input)
        .arg(out)
        .args(effects)
        .status()
        .expect("sox (apt-get install sox)");
    assert!(st.success(), "sox failed for {}", out.display());
}

/// The last of `ends` the call's flow entered (test flows leave their exit
/// as a step id); "none" when it entered none of them.
pub fn last_step_among(evs: &[serde_json::Value], ends: &[&str]) -> String {
    evs.iter()
        .filter(|e| event_name(e) == "step_entered")
        .filter_map(|e| e["event"]["step"].as_str())
        .rfind(|s| ends.contains(s))
        .unwrap_or("none")
        .to_string()
}

/// A sipp call from `from` to `flow` that keys a one-time code the test
/// learns only after the call has asked for it (tests/sipp/code_entry.xml
/// polls `code.txt` in its folder): `code_of` runs while the call waits
/// and returns the code, which is then written there. Returns the call's
/// events and the code.
pub fn call_entering_code(
    vg: &Voxgate,
    name: &str,
    flow: &str,
    from: &str,
    code_of: impl FnOnce() -> String,
) -> (Vec<serde_json::Value>, String) {
    let dir = scratch(&format!("{name}-sipp"));
    std::fs::write(dir.join("code.txt"), "").unwrap();
    let sink = RtpSink::new();
    let before = vg.read_events().len();
    let code = std::thread::scope(|s| {
        let caller = s.spawn(|| {
            sipp_in(
                &dir,
                "code_entry.xml",
                vg.sip,
                flow,
                false,
                &[
                    ("rtp_listen", sink.port().to_string()),
                    ("from_user", from.to_string()),
                ],
            )
        });
        let code = code_of();
        std::fs::write(dir.join("code.txt"), &code).unwrap();
        let out = caller.join().unwrap();
        vg.expect_sipp_ok(&out, "call keying the code it received");
        code
    });
    (vg.call_events_since(before), code)
}

/// One `passphrase.xml` call from `from` whose caller audio (`caller.ulaw`)
/// is already in `dir`; waits up to `wait` for it to hang up and returns
/// this call's events (calls on one voxgate run one after the other).
pub fn passphrase_call(
    vg: &Voxgate,
    dir: &Path,
    from: &str,
    what: &str,
    wait: Duration,
) -> Vec<serde_json::Value> {
    let sink = RtpSink::new();
    let before = vg.read_events().len();
    let out = sipp_in(
        dir,
        "passphrase.xml",
        vg.sip,
        "pass",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", from.to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, what);
    let all = vg.wait_events("the call to end", wait, |evs| {
        evs.iter()
            .skip(before)
            .any(|e| event_name(e).starts_with("hung_up"))
    });
    all[before..].to_vec()
}
