//! One-time codes over whole calls: `voxgate serve` with a real SQLite
//! account store sends codes through a fake Twilio (a real local HTTP server
//! speaking the Messages API, `tests/twilio`); sipp keys in by RFC 4733 the
//! code the gateway received. The right code passes and its signed delivery
//! receipt is recorded; wrong codes count across calls and across a
//! `kill -9` of serve (a code sent before the crash still verifies after
//! it); the send limit refuses the Nth call; a gateway's 4xx is the step's
//! `error`. No code reaches the log, the events or the database in clear.
//!
//! Test flows (`tests/flows_codes/`): `code` sends (or finds a code still
//! valid from an earlier call) and takes one entry; `code_now` only sends.
//! Their exits are left in the events as step ids.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;
mod twilio;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use twilio::{send_status_callback, FakeTwilio, Signing};
use voxgate::phone::{normalise, Country};
use voxgate::store::sealed::write_key_file;
use voxgate::store::{NewAccount, SecretKey, Store};

const TOKEN_ENV: &str = "VOXGATE_TEST_CODE_CALLS_TWILIO_TOKEN";
const TOKEN: &str = "code-calls-auth-token-0123456789";

fn set_token_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var(TOKEN_ENV, TOKEN));
}

/// A state folder (database and key) that outlives one serve process.
struct State {
    db: PathBuf,
    key_file: PathBuf,
}

/// A fresh store with one account per (id, phone).
fn state(name: &str, accounts: &[(&str, &str)]) -> State {
    let dir = scratch(&format!("{name}-state"));
    let (db, key_file) = (dir.join("voxgate.db"), dir.join("secret.key"));
    write_key_file(&key_file, &SecretKey::generate()).unwrap();
    let store = Store::open(&db).unwrap();
    for (id, phone) in accounts {
        let acct = NewAccount {
            id: Some((*id).to_string()),
            phone: Some(normalise(phone, Country::default()).unwrap()),
            ..NewAccount::default()
        };
        store.add(&acct, None).unwrap();
    }
    State { db, key_file }
}

/// `serve` on the code flows with `state`, the fake as its SMS gateway,
/// its HTTP endpoint on `http_port`, and `extra` config.
fn serve(name: &str, st: &State, fake: &FakeTwilio, http_port: u16, extra: &str) -> Voxgate {
    set_token_env();
    let config = format!(
        "listen: 127.0.0.1:{{port}}\ndatabase: \"{}\"\nsecret_key_file: \"{}\"\nroute_by_flow_name: true\nhttp: {{ listen: 127.0.0.1:{http_port}, public_url: 'http://127.0.0.1:{http_port}' }}\nsms:\n  gateways:\n    tw: {}\n  brand_names: {{ '': 'Voxbank' }}\n{extra}",
        st.db.display(),
        st.key_file.display(),
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

/// The step the flow ended in (`result` set by the test flow's last steps).
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

fn auth_reason(evs: &[Value]) -> String {
    evs.iter()
        .find(|e| event_name(e).starts_with("auth_"))
        .map(|e| e["event"]["reason"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A call from `from` to `flow` that keys `dtmf` (sipp's play_dtmf).
fn call_keying(vg: &Voxgate, flow: &str, from: &str, dtmf: &str) -> Vec<Value> {
    let sink = RtpSink::new();
    let before = vg.read_events().len();
    let out = sipp(
        "identity_dtmf.xml",
        vg.sip,
        flow,
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", from.to_string()),
            ("dtmf", dtmf.to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, &format!("call from {from} keying {dtmf}"));
    vg.call_events_since(before)
}

/// A call from `from` to `flow` that stays silent until voxgate hangs up.
fn call_silent(vg: &Voxgate, flow: &str, from: &str) -> Vec<Value> {
    let sink = RtpSink::new();
    let before = vg.read_events().len();
    let out = sipp(
        "identity.xml",
        vg.sip,
        flow,
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", from.to_string()),
            ("identity", "X-Identity: none".to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, &format!("silent call from {from}"));
    vg.call_events_since(before)
}

/// The code in the newest message the fake received for `to`.
fn wait_code(fake: &FakeTwilio, to: &str, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sent: Vec<_> = fake.sent().into_iter().filter(|m| m.to == to).collect();
        if sent.len() >= nth {
            let body = &sent[nth - 1].body;
            let code: String = body
                .split_whitespace()
                .map(|w| w.trim_end_matches('.'))
                .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
                .unwrap_or_else(|| panic!("no 6-digit code in {body:?}"))
                .to_string();
            return code;
        }
        assert!(
            Instant::now() < deadline,
            "no SMS to {to} arrived: {:?}",
            fake.sent()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A code that is surely not `code`.
fn other_than(code: &str) -> String {
    if code == "000000" { "111111" } else { "000000" }.to_string()
}

/// None of `secrets` in the log, the events, the database or its WAL.
fn assert_nowhere(vg: &Voxgate, st: &State, secrets: &[String]) {
    let wal = PathBuf::from(format!("{}-wal", st.db.display()));
    let files: Vec<(String, String)> = vec![
        ("log".into(), vg.log()),
        (
            "events".into(),
            std::fs::read_to_string(&vg.events).unwrap_or_default(),
        ),
        ("database".into(), read_lossy(&st.db)),
        ("WAL".into(), read_lossy(&wal)),
    ];
    for s in secrets {
        for (what, text) in &files {
            assert!(!text.contains(s.as_str()), "the code {s} is in the {what}");
        }
    }
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

#[test]
fn the_code_the_gateway_received_passes_and_its_receipt_is_recorded() {
    const NUM: &str = "+16502530101";
    let st = state("codes-pass", &[("ACC-P", NUM)]);
    let fake = FakeTwilio::start(TOKEN);
    let http = free_port();
    let vg = serve("codes-pass", &st, &fake, http, "");

    // sipp waits for the code the gateway received, then keys it.
    let (evs, code) =
        call_entering_code(&vg, "codes-pass", "code", NUM, || wait_code(&fake, NUM, 1));
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    let sent = events_named(&evs, "code_sent");
    assert_eq!(sent.len(), 1, "{}", pretty(&evs));
    assert_eq!(sent[0]["event"]["gateway"], "tw");
    assert_eq!(sent[0]["event"]["to_masked"], "+1650•••0101");
    assert_eq!(events_named(&evs, "auth_passed").len(), 1);

    // The message: the brand's name, the code, its lifetime; a status callback.
    let msg = fake.sent().into_iter().find(|m| m.to == NUM).unwrap();
    assert!(
        msg.body.contains("Voxbank") && msg.body.contains("5 min"),
        "{}",
        msg.body
    );
    let callback = msg.status_callback.clone().expect("a StatusCallback URL");
    assert_eq!(callback, format!("http://127.0.0.1:{http}/sms/status/tw"));
    assert_eq!(sent[0]["event"]["message_id"], msg.sid.as_str());

    // Twilio's signed receipt is recorded; an unsigned one is refused.
    let params = [
        ("MessageSid", msg.sid.as_str()),
        ("MessageStatus", "delivered"),
        ("AccountSid", twilio::ACCOUNT_SID),
    ];
    assert_eq!(
        send_status_callback(&callback, Signing::Unsigned, &params),
        403
    );
    let ok = send_status_callback(&callback, Signing::With(TOKEN), &params);
    assert!((200..300).contains(&ok), "signed receipt answered {ok}");
    let store = Store::open(&st.db).unwrap();
    let d = store.delivery_by_message("tw", &msg.sid).unwrap().unwrap();
    assert_eq!(d.status, "delivered");
    let history: Vec<&str> = d.history.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(history, ["queued", "delivered"]);
    // And it is an event of the call that sent the code.
    let evs = vg.wait_events("the delivery event", Duration::from_secs(10), |evs| {
        !events_named(evs, "code_delivery").is_empty()
    });
    let delivery = events_named(&evs, "code_delivery")[0];
    assert_eq!(delivery["event"]["status"], "delivered");
    assert_eq!(delivery["event"]["message_id"], msg.sid.as_str());
    assert_eq!(delivery["call_id"], sent[0]["call_id"]);
    assert_nowhere(&vg, &st, &[code]);
}

#[test]
fn wrong_codes_count_across_calls_and_a_kill_9_and_a_code_survives_it() {
    const B: &str = "+16502530102";
    const C: &str = "+16502530103";
    let st = state("codes-crash", &[("ACC-B", B), ("ACC-C", C)]);
    let fake = FakeTwilio::start(TOKEN);
    let vg = serve("codes-crash-1", &st, &fake, free_port(), "");

    // B: one wrong entry; C: two. Each call sends (or finds) the code first.
    let evs = call_keying(&vg, "code", B, "999999");
    let code_b = wait_code(&fake, B, 1);
    if code_b == "999999" {
        // One chance in a million: that entry was right; nothing to test.
        return;
    }
    assert_eq!(outcome(&evs), "wrong", "{}", pretty(&evs));
    assert_eq!(auth_reason(&evs), "wrong code");
    let evs = call_keying(&vg, "code", C, "000000");
    let code_c = wait_code(&fake, C, 1);
    let wrong_c = other_than(&code_c);
    if code_c == "000000" {
        return; // one chance in a million, as above
    }
    assert_eq!(outcome(&evs), "wrong", "{}", pretty(&evs));
    let evs = call_keying(&vg, "code", C, &wrong_c);
    assert_eq!(outcome(&evs), "wrong", "{}", pretty(&evs));
    // The second call found C's code still valid: no second SMS.
    assert_eq!(
        events_named(&evs, "code_still_valid").len(),
        1,
        "{}",
        pretty(&evs)
    );
    assert_eq!(fake.sent().iter().filter(|m| m.to == C).count(), 1);

    // kill -9 (Drop sends SIGKILL), then a new serve on the same state.
    let log1 = vg.log();
    drop(vg);
    let vg = serve("codes-crash-2", &st, &fake, free_port(), "");
    // B's code, sent before the crash, still verifies.
    let evs = call_keying(&vg, "code", B, &code_b);
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    assert_eq!(events_named(&evs, "code_still_valid").len(), 1);
    // C's third wrong entry in all burns the code: the count survived.
    let evs = call_keying(&vg, "code", C, &wrong_c);
    assert_eq!(outcome(&evs), "wrong", "{}", pretty(&evs));
    assert_eq!(
        auth_reason(&evs),
        "code attempts used up",
        "{}",
        pretty(&evs)
    );
    assert_eq!(fake.sent().len(), 2, "no code was sent again");
    assert!(!log1.contains(&code_b) && !log1.contains(&code_c));
    assert_nowhere(&vg, &st, &[code_b, code_c]);
}

#[test]
fn the_send_limit_refuses_the_nth_call_and_a_gateway_4xx_is_an_error() {
    const D: &str = "+16502530104";
    let st = state("codes-limit", &[("ACC-D", D)]);
    let fake = FakeTwilio::start(TOKEN);
    let vg = serve(
        "codes-limit",
        &st,
        &fake,
        free_port(),
        "codes: { per_destination: { hour: 2, day: 5 } }\n",
    );
    for _ in 0..2 {
        let evs = call_silent(&vg, "code_now", D);
        assert_eq!(events_named(&evs, "code_sent").len(), 1, "{}", pretty(&evs));
    }
    let evs = call_silent(&vg, "code_now", D);
    assert_eq!(outcome(&evs), "limited", "{}", pretty(&evs));
    let limited = events_named(&evs, "code_rate_limited");
    assert_eq!(limited.len(), 1, "{}", pretty(&evs));
    assert_eq!(limited[0]["event"]["reason"], "destination_hourly");
    assert_eq!(fake.sent().len(), 2);

    // A gateway that refuses (4xx) is not retried: the step's `error`.
    const E: &str = "+16502530105";
    let store = Store::open(&st.db).unwrap();
    store
        .add(
            &NewAccount {
                id: Some("ACC-E".into()),
                phone: Some(normalise(E, Country::default()).unwrap()),
                ..NewAccount::default()
            },
            None,
        )
        .unwrap();
    let requests_before = fake.requests().len();
    fake.reject_next(
        1,
        400,
        21211,
        "The 'To' number is not a valid phone number.",
    );
    let evs = call_silent(&vg, "code_now", E);
    assert_eq!(outcome(&evs), "send_err", "{}", pretty(&evs));
    let err = events_named(&evs, "code_send_error");
    assert!(
        err[0]["event"]["reason"]
            .as_str()
            .unwrap()
            .contains("21211"),
        "{}",
        pretty(&evs)
    );
    assert_eq!(
        fake.requests().len(),
        requests_before + 1,
        "a 4xx is not retried"
    );
}

#[test]
fn the_shipped_bank_flow_falls_back_from_the_passphrase_to_an_sms_code() {
    const NUM: &str = "+16502530106";
    let st = state("codes-bank", &[("ACC-BANK", NUM)]);
    let fake = FakeTwilio::start(TOKEN);
    set_token_env();
    let config = format!(
        "listen: 127.0.0.1:{{port}}\ndatabase: \"{}\"\nsecret_key_file: \"{}\"\nmodels_dir: \"{}\"\nroute_by_flow_name: true\nsms:\n  gateways:\n    tw: {}\n",
        st.db.display(),
        st.key_file.display(),
        root().join("models").display(),
        fake.gateway_yaml(TOKEN_ENV, ""),
    );
    let vg = Voxgate::start(
        "codes-bank",
        Options {
            flows: root().join("flows"),
            extra_config: &config,
        },
    );
    // The caller says nothing at the passphrase (no passphrase is enrolled
    // anyway), then keys the code the SMS brought.
    let (evs, code) =
        call_entering_code(&vg, "codes-bank", "bank", NUM, || wait_code(&fake, NUM, 1));
    let path: Vec<&str> = evs
        .iter()
        .filter(|e| event_name(e) == "step_entered")
        .filter_map(|e| e["event"]["step"].as_str())
        .collect();
    for step in ["lookup", "passphrase", "send", "code_sent", "code", "agent"] {
        assert!(path.contains(&step), "{step} not in {path:?}");
    }
    let passed = events_named(&evs, "auth_passed");
    assert_eq!(passed.len(), 1, "{}", pretty(&evs));
    assert_eq!(passed[0]["event"]["method"], "sms_code");
    // The SMS: 60 s lifetime, one message.
    let msgs = fake.sent();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].body.contains("1 min"), "{}", msgs[0].body);
    assert_nowhere(&vg, &st, &[code]);
}
