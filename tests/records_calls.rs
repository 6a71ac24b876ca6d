//! Call records and `/metrics` over whole calls: `voxgate serve` with a real
//! SQLite store, codes through a fake Twilio (`tests/twilio`), sipp as the
//! caller. Three calls — one keys the code it received (passed), one keys a
//! wrong code (failed), one from a number on file nowhere (no account, no
//! authentication) — leave exactly three records that match their events;
//! no code and no full number is in the records table; `GET /metrics`,
//! read by a strict parser of the text format, counts the same calls,
//! authentications, sends, the signed delivery receipt, lookups and RTP.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;
mod twilio;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use twilio::{send_status_callback, FakeTwilio, Signing};
use voxgate::phone::{normalise, Country};
use voxgate::store::records::{CallOutcome, CallRecord};
use voxgate::store::sealed::write_key_file;
use voxgate::store::{NewAccount, SecretKey, Store};

const TOKEN_ENV: &str = "VOXGATE_TEST_RECORDS_TWILIO_TOKEN";
const TOKEN: &str = "records-calls-auth-token-0123456789";
const NUM_A: &str = "+16502530201";
const NUM_B: &str = "+16502530202";
/// Valid, on file nowhere.
const NUM_UK: &str = "+442079460018";

fn serve(name: &str, db: &std::path::Path, fake: &FakeTwilio, http: u16) -> Voxgate {
    std::env::set_var(TOKEN_ENV, TOKEN);
    let dir = db.parent().unwrap();
    let config = format!(
        "listen: 127.0.0.1:{{port}}\ndatabase: \"{}\"\nsecret_key_file: \"{}\"\nroute_by_flow_name: true\nhttp: {{ listen: 127.0.0.1:{http}, public_url: 'http://127.0.0.1:{http}' }}\nrecords: {{ mask_caller: true, retention_days: 30 }}\nsms:\n  gateways:\n    tw: {}\n",
        db.display(),
        dir.join("secret.key").display(),
        fake.gateway_yaml(TOKEN_ENV, ""),
    );
    Voxgate::start(
        name,
        Options {
            flows: root().join("tests/flows_codes"),
            extra_config: &config,
        },
    )
}

fn wait_code(fake: &FakeTwilio, to: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = fake.sent().into_iter().find(|m| m.to == to) {
            return m
                .body
                .split_whitespace()
                .map(|w| w.trim_end_matches('.'))
                .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
                .unwrap()
                .to_string();
        }
        assert!(Instant::now() < deadline, "no SMS to {to}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The records once there are `n`, by call id.
fn wait_records(db: &std::path::Path, n: usize) -> BTreeMap<String, CallRecord> {
    let store = Store::open(db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recs = store.call_records().unwrap();
        if recs.len() >= n {
            return recs.into_iter().map(|r| (r.call_id.clone(), r)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} records after 20 s, expected {n}",
            recs.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A strict reader of the Prometheus/OpenMetrics text format: every line is
/// a `# HELP`, `# TYPE`, `# UNIT` or `# EOF` comment or a sample
/// `name{label="value",…} number`; every sample belongs to a family whose
/// TYPE came first (histograms and counters by their suffixes); label values
/// are quoted with `\\`, `\"` and `\n` escapes; `# EOF` ends it. Returns
/// sample → value, the sample keyed as `name{a="x",b="y"}` (labels sorted).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", i + 1);
        assert!(!eof, "text after # EOF at {}", at());
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts
                .next()
                .unwrap_or_else(|| panic!("bare comment at {}", at()));
            assert!(valid_name(name), "bad metric name at {}", at());
            match kind {
                "TYPE" => {
                    let t = parts.next().unwrap_or_default();
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "info",
                            "unknown",
                            "stateset",
                            "gaugehistogram"
                        ]
                        .contains(&t),
                        "unknown type at {}",
                        at()
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "TYPE twice at {}",
                        at()
                    );
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment at {}", at()),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value at {}", at()));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value at {}", at())),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((n, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels at {}", at()));
                (
                    n,
                    parse_labels(inner).unwrap_or_else(|e| panic!("{e} at {}", at())),
                )
            }
        };
        assert!(valid_name(name), "bad sample name at {}", at());
        let family = types.keys().find(|f| {
            let t = &types[*f];
            name == f.as_str()
                || (t == "counter" && name == format!("{f}_total"))
                || (t == "histogram"
                    && ["_bucket", "_sum", "_count", "_created"]
                        .iter()
                        .any(|s| name == format!("{f}{s}")))
        });
        assert!(family.is_some(), "sample without a TYPE at {}", at());
        let mut labels = labels;
        labels.sort();
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{name}{{{}}}", l.join(","))
        };
        assert!(
            samples.insert(key, value).is_none(),
            "sample twice at {}",
            at()
        );
    }
    assert!(eof, "no # EOF at the end");
    samples
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !valid_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        out.push((name.to_string(), value));
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.is_empty() {
            return Err("labels not separated by ,".into());
        }
    }
    Ok(out)
}

fn step_ids(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .filter(|e| event_name(e) == "step_entered")
        .map(|e| e["event"]["step"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn records_and_metrics_match_the_calls_made() {
    let dir = scratch("records-state");
    let db = dir.join("voxgate.db");
    write_key_file(&dir.join("secret.key"), &SecretKey::generate()).unwrap();
    {
        let store = Store::open(&db).unwrap();
        for (id, phone) in [("ACC-A", NUM_A), ("ACC-B", NUM_B)] {
            let acct = NewAccount {
                id: Some(id.to_string()),
                phone: Some(normalise(phone, Country::default()).unwrap()),
                ..NewAccount::default()
            };
            store.add(&acct, None).unwrap();
        }
    }
    let fake = FakeTwilio::start(TOKEN);
    let http = free_port();
    let vg = serve("records", &db, &fake, http);

    // Before any call: every family there, nothing counted.
    let (status, ctype, body) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let m0 = parse_metrics(&body);
    assert_eq!(m0["voxgate_active_calls"], 0.0);

    // 1. A keys the code it received.
    let sipp_dir = scratch("records-sipp");
    std::fs::write(sipp_dir.join("code.txt"), "").unwrap();
    let sink = RtpSink::new();
    let (sip, port, d) = (vg.sip, sink.port(), sipp_dir.clone());
    let caller = std::thread::spawn(move || {
        sipp_in(
            &d,
            "code_entry.xml",
            sip,
            "code",
            false,
            &[
                ("rtp_listen", port.to_string()),
                ("from_user", NUM_A.to_string()),
            ],
        )
    });
    let code_a = wait_code(&fake, NUM_A);
    std::fs::write(sipp_dir.join("code.txt"), &code_a).unwrap();
    vg.expect_sipp_ok(&caller.join().unwrap(), "A keying its code");
    let ev_a = vg.call_events_since(0);
    assert_eq!(
        events_named(&ev_a, "auth_passed").len(),
        1,
        "{}",
        pretty(&ev_a)
    );

    // Its signed delivery receipt.
    let msg = fake.sent().into_iter().find(|m| m.to == NUM_A).unwrap();
    let params = [
        ("MessageSid", msg.sid.as_str()),
        ("MessageStatus", "delivered"),
        ("AccountSid", twilio::ACCOUNT_SID),
    ];
    let ok = send_status_callback(
        &msg.status_callback.clone().unwrap(),
        Signing::With(TOKEN),
        &params,
    );
    assert!((200..300).contains(&ok), "receipt answered {ok}");

    // 2. B keys a wrong code.
    let n = vg.read_events().len();
    let sink = RtpSink::new();
    // B talks (a PCMA pcap) before keying: its inbound audio has a jitter.
    let out = sipp(
        "identity_dtmf_talking.xml",
        vg.sip,
        "code",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", NUM_B.to_string()),
            ("dtmf", "999999".to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, "B keying a wrong code");
    let ev_b = vg.call_events_since(n);
    let code_b = wait_code(&fake, NUM_B);
    if code_b == "999999" {
        return; // one chance in a million: the "wrong" code was right
    }
    assert_eq!(
        events_named(&ev_b, "auth_failed").len(),
        1,
        "{}",
        pretty(&ev_b)
    );

    // 3. A number on file nowhere: no account, no authentication.
    let n = vg.read_events().len();
    let sink = RtpSink::new();
    let out = sipp(
        "identity.xml",
        vg.sip,
        "code",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", NUM_UK.to_string()),
            ("identity", "X-Identity: none".to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, "a caller on file nowhere");
    let ev_uk = vg.call_events_since(n);
    assert!(
        step_ids(&ev_uk).contains(&"no_account".to_string()),
        "{}",
        pretty(&ev_uk)
    );

    // Three records, one per call, matching its events.
    let recs = wait_records(&db, 3);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let rec_of = |evs: &[Value]| recs[evs[0]["call_id"].as_str().unwrap()].clone();
    let (a, b, uk) = (rec_of(&ev_a), rec_of(&ev_b), rec_of(&ev_uk));
    for (r, evs) in [(&a, &ev_a), (&b, &ev_b), (&uk, &ev_uk)] {
        assert_eq!(r.flow, "code");
        assert_eq!(r.dialled, "code");
        assert_eq!(r.brand, "");
        assert_eq!(r.steps as usize, step_ids(evs).len(), "{r:#?}");
        assert!(r.path.starts_with("lookup>"), "{}", r.path);
        assert!(r.path.ends_with(">bye"), "{}", r.path);
        assert_eq!(r.hangup_by.as_deref(), Some("engine"));
        let answered = r.answered_at.expect("answered");
        assert!(r.started_at <= answered && answered <= r.ended_at, "{r:#?}");
        assert!(r.ended_at - r.started_at < 60_000, "{r:#?}");
    }
    assert_eq!(a.path, "lookup>send>code>ok>bye");
    assert_eq!(a.outcome, CallOutcome::Passed);
    assert_eq!(
        (a.auth_method.as_deref(), a.auth_result.as_deref()),
        (Some("sms_code"), Some("passed"))
    );
    assert_eq!(a.methods.len(), 1);
    assert_eq!(
        (a.methods[0].attempts, a.methods[0].result.as_str()),
        (1, "passed")
    );
    assert_eq!(
        (a.codes_sent, a.code_send.as_deref(), a.lookup.as_deref()),
        (1, Some("sent"), Some("found"))
    );
    assert_eq!(
        (
            a.caller_masked.as_str(),
            a.country.as_str(),
            a.calling_code.as_str()
        ),
        ("+1•••0201", "US", "1")
    );
    assert_eq!(b.outcome, CallOutcome::Failed);
    assert_eq!(b.methods[0].reasons, vec!["wrong code".to_string()]);
    assert_eq!(b.caller_masked, "+1•••0202");
    assert_eq!(uk.outcome, CallOutcome::NoAuth);
    assert_eq!(
        (uk.lookup.as_deref(), uk.codes_sent, uk.auth_method.clone()),
        (Some("not_found"), 0, None)
    );
    assert_eq!(
        (
            uk.caller_masked.as_str(),
            uk.country.as_str(),
            uk.calling_code.as_str()
        ),
        ("+44•••0018", "GB", "44")
    );

    // The secret scan: every column of every record, as the database holds it.
    let dump: String = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut st = c.prepare("SELECT * FROM call_records").unwrap();
        let cols = st.column_count();
        let rows = st
            .query_map([], |r| {
                (0..cols)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        rows.map(|r| r.unwrap().join("|"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(dump.lines().count() == 3, "{dump}");
    for secret in [&code_a, &code_b] {
        assert!(
            !dump.contains(secret.as_str()),
            "a code in the records:\n{dump}"
        );
    }
    for num in [NUM_A, NUM_B, NUM_UK] {
        let national = &num[num.len() - 10..];
        assert!(
            !dump.contains(national),
            "a full number {num} in the records:\n{dump}"
        );
        assert!(
            !dump.contains(&num[num.len() - 7..]),
            "most of {num} in the records:\n{dump}"
        );
    }

    // /metrics counts the same.
    let (_, _, body) = http_get(http, "/metrics");
    let m = parse_metrics(&body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
    assert_eq!(get("voxgate_active_calls"), 0.0);
    assert_eq!(
        get(r#"voxgate_calls_total{flow="code",outcome="passed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"voxgate_calls_total{flow="code",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"voxgate_calls_total{flow="code",outcome="no_auth"}"#),
        1.0
    );
    let calls: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("voxgate_calls_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(calls, 3.0, "{body}");
    assert_eq!(
        get(r#"voxgate_authentications_total{method="sms_code",result="passed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"voxgate_authentications_total{method="sms_code",result="failed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"voxgate_code_sends_total{channel="sms",outcome="sent"}"#),
        2.0
    );
    assert_eq!(
        get(r#"voxgate_code_deliveries_total{gateway="tw",status="delivered"}"#),
        1.0
    );
    assert_eq!(get(r#"voxgate_hangups_total{by="engine"}"#), 3.0);
    assert_eq!(
        get(r#"voxgate_lookup_seconds_count{directory="default",result="found"}"#),
        2.0
    );
    assert_eq!(
        get(r#"voxgate_lookup_seconds_count{directory="default",result="not_found"}"#),
        1.0
    );
    assert_eq!(
        get(r#"voxgate_lookup_seconds_bucket{directory="default",le="+Inf",result="found"}"#),
        2.0
    );
    assert_eq!(get("voxgate_records_written_total"), 3.0);
    assert_eq!(get("voxgate_records_dropped_total"), 0.0);
    // The media layer's global counters, folded in.
    assert!(get("voxgate_rtp_packets_sent_total") > 50.0, "{body}");
    assert!(get("voxgate_rtp_packets_received_total") > 0.0, "{body}");
    let intervals = get("voxgate_rtp_send_interval_seconds_count");
    assert!(intervals > 50.0, "{body}");
    assert_eq!(
        get(r#"voxgate_rtp_send_interval_seconds_bucket{le="+Inf"}"#),
        intervals
    );
    assert!(
        get(r#"voxgate_rtp_send_interval_seconds_bucket{le="0.025"}"#) > 0.9 * intervals,
        "{body}"
    );

    // Each call's RFC 3550 jitter at its end, one observation per call
    // that received audio: B's (A only keyed RFC 4733 events, the third
    // call was silent). Observed when the call's media stops, just after
    // its record: wait for it.
    let mut body = body;
    for _ in 0..100 {
        if body.contains("voxgate_rtp_jitter_seconds_count 1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        body = http_get(http, "/metrics").2;
    }
    let m = parse_metrics(&body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
    let jitter_calls = get("voxgate_rtp_jitter_seconds_count");
    assert_eq!(jitter_calls, 1.0, "{body}");
    assert_eq!(
        get(r#"voxgate_rtp_jitter_seconds_bucket{le="+Inf"}"#),
        jitter_calls
    );
    // Loopback delivers a paced pcap evenly: well under 20 ms.
    assert_eq!(
        get(r#"voxgate_rtp_jitter_seconds_bucket{le="0.02"}"#),
        jitter_calls,
        "{body}"
    );
    assert!(get("voxgate_rtp_jitter_seconds_sum") < 0.02, "{body}");
    // The call's end logs it too.
    let logs = vg.log_with("call ended");
    assert!(
        logs.lines()
            .any(|l| l.contains("call ended") && l.contains("jitter_ms")),
        "{logs}"
    );

    // SIP responses by class, counted where they leave: every call got a
    // 200 OK to its INVITE (and voxgate's BYEs were answered by sipp, not
    // counted here); answered at once over UDP, none needed a 100 Trying
    // (RFC 3261 17.2.1), so 1xx stays below 2xx.
    assert!(
        get(r#"voxgate_sip_responses_total{class="1xx"}"#)
            < get(r#"voxgate_sip_responses_total{class="2xx"}"#),
        "{body}"
    );
    assert!(
        get(r#"voxgate_sip_responses_total{class="2xx"}"#) >= 3.0,
        "{body}"
    );
    assert_eq!(get(r#"voxgate_sip_responses_total{class="5xx"}"#), 0.0);
    // No flow here listens for speech: the decoders saw nothing.
    assert_eq!(get("voxgate_recognition_seconds_count"), 0.0);
    assert_eq!(get("voxgate_asr_queue_depth"), 0.0);

    // `--events` kept working alongside: every call's events are in the file.
    let all = vg.read_events();
    let ids: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|e| e["call_id"].as_str()).collect();
    for r in recs.values() {
        assert!(ids.contains(r.call_id.as_str()));
    }
    let (clean, _) = vg.terminate();
    assert!(clean);

    // `voxgate report` reads the same records.
    let cfg: PathBuf = dir.join("report.yaml");
    std::fs::write(&cfg, format!("database: \"{}\"\n", db.display())).unwrap();
    let out = std::process::Command::new(bin())
        .args(["report", "--format", "csv", "--country", "US", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.lines().any(|l| l == "total,,2,1,1,0,0,0"), "{csv}");
    let out = std::process::Command::new(bin())
        .args(["report", "--from", "2026-02-30", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--from 2026-02-30") && err.contains("does not exist"),
        "{err}"
    );
}
