//! Codes by voice call and the channel fallback, over whole calls:
//! `voxgate serve` with a real SQLite account store, a fake Twilio
//! (`tests/twilio`) as its SMS gateway, a real local SMTP server (Debian
//! `python3-aiosmtpd`, `tests/smtp/sink.py`) and sipp as the phone a code
//! call rings (`codes_voice.trunk` points at it).
//!
//! * A landline account: the code is read out on a call to sipp
//!   (`uas_code_callee.xml`), whose media port is this test's RTP recorder;
//!   the digit prompts are found in the recording by their exact audio;
//!   the digits it heard are keyed into the inbound call (sipp) → `ok`.
//! * Nobody answers the code call (`uas_code_no_answer.xml`, CANCEL at the
//!   answer timeout) → the code goes by e-mail.
//! * The SMS gateway's signed receipt says `undelivered` (or no receipt
//!   comes within `codes.receipt_timeout`) → the code goes by e-mail.
//!
//! No code in the log, the events, the database or its WAL.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;
mod twilio;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::smtp::SmtpSink;
use common::*;
use serde_json::Value;
use twilio::{send_status_callback, FakeTwilio, Signing};
use voxgate::media::g711::Codec;
use voxgate::media::prompt::load_wav;
use voxgate::phone::{normalise, Country, LineType};
use voxgate::store::sealed::write_key_file;
use voxgate::store::{NewAccount, SecretKey, Store};

const TOKEN_ENV: &str = "VOXGATE_TEST_VOICE_CALLS_TWILIO_TOKEN";
const TOKEN: &str = "voice-calls-auth-token-0123456789";
/// The caller id of code calls (checked by the callee's scenario).
const CALLER_ID: &str = "+16505550100";

struct State {
    db: PathBuf,
    key_file: PathBuf,
}

/// A fresh store with accounts (id, phone, line type, e-mail).
fn state(name: &str, accounts: &[(&str, &str, LineType, &str)]) -> State {
    let dir = scratch(&format!("{name}-state"));
    let (db, key_file) = (dir.join("voxgate.db"), dir.join("secret.key"));
    write_key_file(&key_file, &SecretKey::generate()).unwrap();
    let store = Store::open(&db).unwrap();
    for (id, phone, line_type, email) in accounts {
        let acct = NewAccount {
            id: Some((*id).to_string()),
            phone: Some(normalise(phone, Country::default()).unwrap()),
            line_type: Some(*line_type),
            email: Some((*email).to_string()),
            ..NewAccount::default()
        };
        store.add(&acct, None).unwrap();
    }
    State { db, key_file }
}

/// `serve` with the code flows, SMS by the fake Twilio (its receipts on
/// `http_port`), e-mail by `smtp`, code calls through `trunk`.
fn serve(
    name: &str,
    st: &State,
    fake: &FakeTwilio,
    smtp: &SmtpSink,
    trunk: u16,
    http_port: u16,
) -> Voxgate {
    std::env::set_var(TOKEN_ENV, TOKEN);
    let config = format!(
        "listen: 127.0.0.1:{{port}}\ndatabase: \"{}\"\nsecret_key_file: \"{}\"\nroute_by_flow_name: true\n\
         http: {{ listen: 127.0.0.1:{http_port}, public_url: 'http://127.0.0.1:{http_port}/' }}\n\
         codes: {{ receipt_timeout: 5s }}\n\
         sms:\n  gateways:\n    tw: {}\n  brand_names: {{ '': 'Voxbank' }}\n\
         email:\n  smtp: {{ host: 127.0.0.1, port: {}, tls: none, timeout: 5s }}\n  from: 'Voxbank <codes@voxbank.example>'\n\
         rtp_timeout: 120s\n\
         codes_voice:\n  trunk: 127.0.0.1:{trunk}\n  from_user: '{CALLER_ID}'\n  answer_timeout: 5s\n  repeat: 2\n",
        st.db.display(),
        st.key_file.display(),
        fake.gateway_yaml(TOKEN_ENV, ", retries: 0"),
        smtp.port,
    );
    Voxgate::start(
        name,
        Options {
            flows: root().join("tests/flows_codes"),
            extra_config: &config,
        },
    )
}

/// sipp as the phone a code call rings, running `scenario` once on `port`.
fn phone(name: &str, scenario: &str, port: u16, keys: &[(&str, String)]) -> (Child, PathBuf) {
    let dir = scratch(&format!("{name}-phone"));
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(root().join("tests/sipp").join(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &free_port().to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "120s", "-timeout_error"])
        .args(["-trace_err", "-trace_msg"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    (cmd.spawn().expect("run sipp"), dir)
}

/// sipp's message trace (`-trace_msg`) of the phone's call.
fn messages(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

fn phone_passed(child: Child, dir: &Path, what: &str) {
    let out = child.wait_with_output().unwrap();
    let errs: String = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("errors"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        out.status.success(),
        "sipp as the phone ({what}) failed:\nstdout:\n{}\nstderr:\n{}\nerrors:\n{errs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A caller (sipp, `code_entry.xml`, with a timeout long enough for a
/// code call) from `from` to `flow` keying the code `code_of` returns.
fn call_entering(
    vg: &Voxgate,
    name: &str,
    flow: &str,
    from: &str,
    code_of: impl FnOnce() -> String,
) -> Vec<Value> {
    let dir = scratch(&format!("{name}-caller"));
    std::fs::write(dir.join("code.txt"), "").unwrap();
    let sink = RtpSink::new();
    let before = vg.read_events().len();
    std::thread::scope(|s| {
        let caller = s.spawn(|| {
            let mut cmd = Command::new("sipp");
            cmd.arg(vg.sip.to_string())
                .arg("-sf")
                .arg(root().join("tests/sipp/code_entry.xml"))
                .args(["-s", flow, "-i", "127.0.0.1", "-m", "1", "-l", "1"])
                .args(["-nostdin", "-timeout", "120s", "-timeout_error"])
                .args(["-p", &free_port().to_string()])
                .args(["-mp", &free_port().to_string()])
                .args(["-t", "u1", "-trace_err"])
                .arg("-error_file")
                .arg(dir.join("errors.log"))
                .args(["-key", "rtp_listen", &sink.port().to_string()])
                .args(["-key", "from_user", from])
                .current_dir(&dir)
                .stdin(Stdio::null());
            cmd.output().expect("run sipp")
        });
        let code = code_of();
        std::fs::write(dir.join("code.txt"), &code).unwrap();
        let out = caller.join().unwrap();
        vg.expect_sipp_ok(&out, "call keying the code it received");
    });
    vg.call_events_since(before)
}

fn outcome(evs: &[Value]) -> String {
    let ends = [
        "ok",
        "wrong",
        "used_up",
        "expired",
        "quiet",
        "limited",
        "send_err",
        "errored",
        "no_account",
    ];
    last_step_among(evs, &ends)
}

/// The `code_attempt` events as (channel, outcome, reason).
fn attempts(evs: &[Value]) -> Vec<(String, String, String)> {
    events_named(evs, "code_attempt")
        .iter()
        .map(|e| {
            let f = |k: &str| e["event"][k].as_str().unwrap_or("").to_string();
            (f("channel"), f("outcome"), f("reason"))
        })
        .collect()
}

/// The deliveries recorded: (channel, status, error, duration_ms).
fn deliveries(st: &State) -> Vec<(String, String, Option<String>, Option<i64>)> {
    let c = rusqlite::Connection::open(&st.db).unwrap();
    let mut q = c
        .prepare("SELECT channel, status, error, duration_ms FROM deliveries ORDER BY id")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// None of `codes` in the log, the events, the database or its WAL; none
/// of `numbers` in clear in the events.
fn assert_nowhere(vg: &Voxgate, st: &State, codes: &[String], numbers: &[&str]) {
    let wal = PathBuf::from(format!("{}-wal", st.db.display()));
    let log = vg.log();
    let events = std::fs::read_to_string(&vg.events).unwrap_or_default();
    for c in codes {
        for (what, text) in [
            ("log", &log),
            ("events", &events),
            ("database", &read_lossy(&st.db)),
            ("WAL", &read_lossy(&wal)),
        ] {
            assert!(!text.contains(c.as_str()), "the code {c} is in the {what}");
        }
    }
    for n in numbers {
        assert!(!events.contains(n), "the number {n} is in the events");
    }
}

/// The phone's media: records the PCMU voxgate sends and, like a real
/// phone, sends its own (silence) back every 20 ms once it knows where
/// voxgate's RTP comes from — voxgate sends only a trickle to a peer that
/// has not shown it is there (RTP consent).
struct Recorder {
    sock: UdpSocket,
}

impl Recorder {
    fn new() -> Recorder {
        let sock = (0..50)
            .find_map(|_| UdpSocket::bind(("127.0.0.1", free_port())).ok())
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Recorder { sock }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// The payloads of the PCMU packets (by sequence number) until `quiet`
    /// passes without any after the first (or `max` in all).
    fn record(&self, quiet: Duration, max: Duration) -> Vec<u8> {
        let start = Instant::now();
        let (mut last, mut next_send) = (Instant::now(), Instant::now());
        let mut peer = None;
        let mut got: Vec<(u16, Vec<u8>)> = Vec::new();
        let (mut seq, mut ts) = (1u16, 0u32);
        let mut buf = [0u8; 2048];
        while start.elapsed() < max {
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                if n > 12 && buf[1] & 0x7f == 0 {
                    got.push((u16::from_be_bytes([buf[2], buf[3]]), buf[12..n].to_vec()));
                    last = Instant::now();
                    peer = Some(from);
                }
            }
            if let Some(p) = peer {
                while next_send <= Instant::now() {
                    let mut pkt = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
                    pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                    pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                    pkt.extend([0xffu8; 160]);
                    let _ = self.sock.send_to(&pkt, p);
                    (seq, ts) = (seq.wrapping_add(1), ts.wrapping_add(160));
                    next_send += Duration::from_millis(20);
                }
                if last.elapsed() > quiet {
                    break;
                }
            } else {
                next_send = Instant::now();
            }
        }
        got.sort_by_key(|(s, _)| *s);
        got.into_iter().flat_map(|(_, p)| p).collect()
    }
}

/// The digits the callee heard, in the order heard: where the µ-law bytes of
/// each digit prompt (as voxgate encodes `prompts/digits/<d>.wav`) occur in
/// the recording. Exact and deterministic, where a recogniser listening to
/// synthetic digits is not: Whisper tiny, cutting the recording at its
/// pauses, heard seven digits ("8226623") in each reading of a six-digit
/// code on the CI machine. Whisper's ear is tested in `tests/whisper.rs`.
fn digits_in(heard: &[u8]) -> String {
    // 60 ms from each prompt's middle (in speech): shorter than a digit,
    // and no two digits' speech share 480 bytes.
    const NEEDLE: usize = 480;
    let mut found: Vec<(usize, char)> = Vec::new();
    for d in '0'..='9' {
        let wav = root().join(format!("prompts/digits/{d}.wav"));
        let ul = load_wav(&wav).unwrap().encode(Codec::Pcmu);
        assert!(ul.len() > 2 * NEEDLE, "{} is too short", wav.display());
        let mid = ul.len() / 2 - NEEDLE / 2;
        let needle = &ul[mid..mid + NEEDLE];
        found.extend(
            heard
                .windows(NEEDLE)
                .enumerate()
                .filter(|(_, w)| *w == needle)
                .map(|(at, _)| (at, d)),
        );
    }
    found.sort();
    found.into_iter().map(|(_, d)| d).collect()
}

#[test]
fn a_landline_hears_its_code_on_a_call_and_keys_in_what_was_heard() {
    const NUM: &str = "+16502530301";
    const MAIL: &str = "lana.landline@example.com";
    let st = state(
        "voice-landline",
        &[("ACC-V", NUM, LineType::Landline, MAIL)],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = SmtpSink::start("voice-landline", &[]);
    let trunk = free_port();
    let vg = serve("voice-landline", &st, &fake, &smtp, trunk, free_port());
    let recorder = Recorder::new();
    let (callee, callee_dir) = phone(
        "voice-landline",
        "uas_code_callee.xml",
        trunk,
        &[("rtp_listen", recorder.port().to_string())],
    );
    let mut heard = String::new();
    let evs = call_entering(&vg, "voice-landline", "code_voice", NUM, || {
        let audio = recorder.record(Duration::from_millis(1500), Duration::from_secs(90));
        heard = digits_in(&audio);
        eprintln!("the callee heard the digits {heard:?}");
        assert_eq!(heard.len(), 12, "two readings of six digits: {heard:?}");
        heard[..6].to_string()
    });
    phone_passed(callee, &callee_dir, "answering the code call");
    // The phone was called at the account's number, from our caller id,
    // through the trunk (the only address the call went to).
    let trace = messages(&callee_dir);
    assert!(
        trace.contains(&format!("INVITE sip:{NUM}@127.0.0.1:{trunk} SIP/2.0")),
        "{trace}"
    );
    assert!(trace.contains(&format!("<sip:{CALLER_ID}@")), "{trace}");
    assert_eq!(outcome(&evs), "ok", "heard {heard:?}\n{}", pretty(&evs));
    // Both readings of the code were the same six digits.
    let code = heard[..6].to_string();
    assert_eq!(heard[6..], code, "{heard:?}");
    assert_eq!(
        attempts(&evs),
        [
            (
                "sms".into(),
                "skipped".into(),
                "a landline cannot take a text message".into()
            ),
            ("voice".into(), "sent".into(), String::new()),
        ],
        "{}",
        pretty(&evs)
    );
    let sent = events_named(&evs, "code_sent");
    assert_eq!(sent[0]["event"]["channel"], "voice", "{}", pretty(&evs));
    assert_eq!(
        sent[0]["event"]["gateway"],
        format!("sip:127.0.0.1:{trunk}")
    );
    assert_eq!(
        events_named(&evs, "auth_passed")[0]["event"]["method"],
        "voice_code",
        "{}",
        pretty(&evs)
    );
    // The caller heard the holding prompt while the code call ran.
    assert!(fake.sent().is_empty(), "no SMS to a landline");
    let d = deliveries(&st);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].0.as_str(), d[0].1.as_str()), ("voice", "answered"));
    let talk = d[0].3.unwrap();
    assert!(talk > 10_000, "the call's length: {talk} ms");
    assert_nowhere(&vg, &st, &[code], &[NUM]);
}

#[test]
fn a_code_call_nobody_answers_falls_back_to_email() {
    const NUM: &str = "+16502530302";
    const MAIL: &str = "nora.noanswer@example.com";
    let st = state(
        "voice-noanswer",
        &[("ACC-N", NUM, LineType::Landline, MAIL)],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = SmtpSink::start("voice-noanswer", &[]);
    let trunk = free_port();
    let vg = serve("voice-noanswer", &st, &fake, &smtp, trunk, free_port());
    let (callee, callee_dir) = phone("voice-noanswer", "uas_code_no_answer.xml", trunk, &[]);
    let mut code = String::new();
    let evs = call_entering(&vg, "voice-noanswer", "code_voice", NUM, || {
        code = smtp.wait_code(MAIL, 1).0;
        code.clone()
    });
    phone_passed(callee, &callee_dir, "ringing until cancelled");
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!((a[1].0.as_str(), a[1].1.as_str()), ("voice", "failed"));
    assert!(a[1].2.starts_with("no answer"), "{a:?}");
    assert_eq!((a[2].0.as_str(), a[2].1.as_str()), ("email", "sent"));
    let d = deliveries(&st);
    let statuses: Vec<(&str, &str)> = d.iter().map(|x| (x.0.as_str(), x.1.as_str())).collect();
    assert_eq!(
        statuses,
        [("voice", "no_answer"), ("email", "sent")],
        "{d:?}"
    );
    assert_eq!(d[0].3, None, "no length for a call not answered");
    assert_nowhere(&vg, &st, &[code], &[NUM]);
}

#[test]
fn an_sms_the_carrier_did_not_deliver_falls_back_to_email() {
    const NUM: &str = "+16502530303";
    const MAIL: &str = "uma.undelivered@example.com";
    const NUM2: &str = "+16502530304";
    const MAIL2: &str = "tom.noreceipt@example.com";
    let st = state(
        "voice-receipts",
        &[
            ("ACC-U", NUM, LineType::Mobile, MAIL),
            ("ACC-T", NUM2, LineType::Mobile, MAIL2),
        ],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = SmtpSink::start("voice-receipts", &[]);
    let http = free_port();
    let vg = serve("voice-receipts", &st, &fake, &smtp, free_port(), http);

    // The gateway reports the SMS undelivered (a signed receipt).
    let mut code = String::new();
    let evs = call_entering(&vg, "voice-undelivered", "code_fallback", NUM, || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let sms = loop {
            if let Some(s) = fake.sent().into_iter().next() {
                break s;
            }
            assert!(Instant::now() < deadline, "no SMS sent");
            std::thread::sleep(Duration::from_millis(50));
        };
        let url = sms.status_callback.clone().expect("a status callback URL");
        assert_eq!(url, format!("http://127.0.0.1:{http}/sms/status/tw"));
        let params = [
            ("AccountSid", twilio::ACCOUNT_SID),
            ("ErrorCode", "30003"),
            ("MessageSid", sms.sid.as_str()),
            ("MessageStatus", "undelivered"),
            ("To", NUM),
        ];
        assert_eq!(
            send_status_callback(&url, Signing::With(TOKEN), &params),
            204
        );
        code = smtp.wait_code(MAIL, 1).0;
        code.clone()
    });
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_str()),
        ("sms", "failed"),
        "{a:?}"
    );
    assert_eq!(a[0].2, "delivery receipt: undelivered (30003)", "{a:?}");
    assert_eq!((a[1].0.as_str(), a[1].1.as_str()), ("email", "sent"));
    // The same code went both ways (same_code by default).
    let sms_body = &fake.sent()[0].body;
    assert!(sms_body.contains(&code), "the e-mailed code is the SMS's");

    // No receipt at all within codes.receipt_timeout (5 s).
    let mut code2 = String::new();
    let evs = call_entering(&vg, "voice-noreceipt", "code_fallback", NUM2, || {
        code2 = smtp.wait_code(MAIL2, 1).0;
        code2.clone()
    });
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_str()),
        ("sms", "failed"),
        "{a:?}"
    );
    assert_eq!(a[0].2, "no delivery receipt within 5 s", "{a:?}");
    assert_eq!((a[1].0.as_str(), a[1].1.as_str()), ("email", "sent"));

    let d = deliveries(&st);
    let statuses: Vec<(&str, &str)> = d.iter().map(|x| (x.0.as_str(), x.1.as_str())).collect();
    assert_eq!(
        statuses,
        [
            ("sms", "undelivered"),
            ("email", "sent"),
            ("sms", "queued"),
            ("email", "sent")
        ],
        "{d:?}"
    );
    assert_nowhere(&vg, &st, &[code, code2], &[NUM, NUM2]);
}

#[test]
fn a_caller_who_hangs_up_while_the_code_call_rings_leaves_it_cancelled() {
    const NUM: &str = "+16502530305";
    const MAIL: &str = "lea.leaves@example.com";
    let st = state("voice-leaves", &[("ACC-X", NUM, LineType::Landline, MAIL)]);
    let fake = FakeTwilio::start(TOKEN);
    let smtp = SmtpSink::start("voice-leaves", &[]);
    let trunk = free_port();
    let vg = serve("voice-leaves", &st, &fake, &smtp, trunk, free_port());
    let (callee, callee_dir) = phone("voice-leaves", "uas_code_no_answer.xml", trunk, &[]);
    let sink = RtpSink::new();
    // The caller hangs up 2.5 s after the answer: the code call (answer
    // timeout 5 s) is still ringing.
    let out = sipp(
        "caller_leaves_while_sending.xml",
        vg.sip,
        "code_voice",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", NUM.to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, "a caller who leaves during the send");
    // The code call is cancelled (the callee sees the CANCEL) and its
    // delivery recorded as such; no other channel is tried for nobody.
    phone_passed(callee, &callee_dir, "ringing until cancelled");
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = deliveries(&st);
        if !d.is_empty() || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].0.as_str(), d[0].1.as_str()), ("voice", "cancelled"));
    assert_eq!(
        d[0].2.as_deref(),
        Some("cancelled: the caller hung up while it rang")
    );
    assert_eq!(d[0].3, None, "no length for a call not answered");
    // Give a wrongly taken fallback time to show, then check none went.
    std::thread::sleep(Duration::from_millis(500));
    let mails = std::fs::read_dir(&smtp.folder).unwrap().count();
    assert_eq!(mails, 0, "an e-mail went to nobody");
    assert!(fake.sent().is_empty());
    let log = vg.log();
    assert!(log.contains("the caller hung up; cancelled"), "{log}");
}
