//! Engine-level tests: every step kind's exits, timers, barge-in, hang-ups,
//! runaway guards and secrecy, driven by the scripted call.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backends::Services;
use crate::call::CallInfo;
use crate::events::{Event, VecSink};
use crate::flow::engine::{run_flow, Disposition, FlowOutcome, MAX_TRANSITIONS};
use crate::flow::load::load_flow_str;
use crate::flow::model::Flow;
use crate::flow::testing::block_on;
use crate::flow::testing::scripted::{Action, CallLog, ScriptedCall, TransferFixture};
use crate::flow::testing::stubs::{
    CodeStub, DirectoryStub, PassphraseStub, SendMode, TotpStub, WebhookStub,
};

fn flow(yaml: &str) -> Flow {
    match load_flow_str(Path::new("t.yaml"), yaml) {
        Ok(f) => f,
        Err(d) => panic!("test flow does not load: {d:?}"),
    }
}

fn digits(s: &str) -> Action {
    Action::Digits {
        digits: s.into(),
        gap: Duration::from_millis(100),
    }
}

fn say(s: &str, confidence: f32) -> Action {
    Action::Say {
        text: s.into(),
        confidence,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Run {
    out: FlowOutcome,
    events: Vec<Event>,
    log: CallLog,
}

impl Run {
    fn names(&self) -> Vec<&'static str> {
        self.events.iter().map(Event::name).collect()
    }
    fn json(&self) -> String {
        self.events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }
    fn left(&self, step: &str) -> Vec<&str> {
        self.out
            .transitions
            .iter()
            .filter(|t| t.from == step)
            .map(|t| t.exit.as_str())
            .collect()
    }
}

/// Build services for a test; `None` entries stay unavailable.
#[derive(Default)]
struct Fx {
    directory: Option<DirectoryStub>,
    passphrase: Option<PassphraseStub>,
    codes: Option<(SendMode, bool)>,
    totp: Option<TotpStub>,
    /// A TOTP verifier other than the stub (takes precedence over `totp`).
    totp_with: Option<Box<dyn crate::backends::TotpVerifier>>,
    webhook: Option<WebhookStub>,
    transfer: TransferFixture,
    caller: Option<&'static str>,
}

fn run_with(f: &Flow, script: Vec<Action>, fx: Fx) -> Run {
    let info = CallInfo {
        answered_at: crate::flow::testing::runner::test_epoch(),
        call_id: "c-1".into(),
        caller: fx.caller.unwrap_or("+15551230001").into(),
        dialled: "t".into(),
        headers: BTreeMap::new(),
        ..Default::default()
    };
    let mut call = ScriptedCall::new(info, script).with_transfer(fx.transfer);
    let mut s = Services::unavailable();
    if let Some(d) = fx.directory {
        s.directory = Box::new(d);
    }
    if let Some(p) = fx.passphrase {
        s.passphrase = Box::new(p);
    }
    if let Some((mode, verify_fails)) = fx.codes {
        s.codes = Box::new(CodeStub::new(mode, verify_fails, call.script_vars()));
    }
    if let Some(t) = fx.totp {
        s.totp = Box::new(t);
    }
    if let Some(t) = fx.totp_with {
        s.totp = t;
    }
    if let Some(w) = fx.webhook {
        s.webhook = Box::new(w);
    }
    let mut sink = VecSink::new();
    let out = block_on(run_flow(f, &mut call, &s, &mut sink)).expect("run completes");
    Run {
        out,
        events: sink.events,
        log: call.log,
    }
}

fn run(f: &Flow, script: Vec<Action>) -> Run {
    run_with(f, script, Fx::default())
}

fn alice() -> DirectoryStub {
    let mut acc = BTreeMap::new();
    acc.insert("id".to_string(), "ACC-1".to_string());
    acc.insert("phone".to_string(), "+15551230001".to_string());
    acc.insert("dob".to_string(), "19800131".to_string());
    let mut accounts = BTreeMap::new();
    accounts.insert("+15551230001".to_string(), Some(acc));
    DirectoryStub {
        accounts,
        fail: false,
    }
}

const COLLECT: &str = r##"
flow: t
start: ask
steps:
  ask:
    collect_digits: { prompts: [p], min: 2, max: 4, terminator: "#", first_digit_timeout: 5s, inter_digit_timeout: 3s, tries: 2, no_input_prompts: [ni], invalid_prompts: [bad], pattern: "[0-9]+", into: got }
    on: { success: ok, no_input: quiet, no_match: wrong }
  ok: { hangup: {} }
  quiet: { hangup: {} }
  wrong: { hangup: {} }
"##;

#[test]
fn collect_terminator_ends_entry_and_is_not_kept() {
    let r = run(&flow(COLLECT), vec![digits("12#")]);
    assert_eq!(r.out.path, ["ask", "ok"]);
    assert_eq!(r.out.vars["got"], "12");
    assert_eq!(r.left("ask"), ["success"]);
    assert_eq!(r.out.disposition, Disposition::Ended { step: "ok".into() });
}

#[test]
fn collect_max_digits_end_entry_without_terminator() {
    let r = run(&flow(COLLECT), vec![digits("98765")]);
    assert_eq!(r.out.vars["got"], "9876");
    // Digits typed at once barge into the prompt.
    assert_eq!(r.log.barge_ins, 1);
    // Ended right after the 4th key: no inter-digit timeout waited.
    assert!(r.out.elapsed < secs(1), "{:?}", r.out.elapsed);
}

#[test]
fn collect_inter_digit_timeout_ends_entry() {
    let r = run(&flow(COLLECT), vec![Action::Silence(secs(2)), digits("55")]);
    assert_eq!(r.out.vars["got"], "55");
    // prompt 1 s, keys at 2.0 s and 2.1 s, then 3 s inter-digit timeout.
    assert_eq!(r.out.elapsed, Duration::from_millis(5100));
    assert_eq!(r.log.barge_ins, 0);
}

#[test]
fn collect_first_digit_timeout_and_tries_give_no_input() {
    let r = run(&flow(COLLECT), vec![]);
    assert_eq!(r.out.path, ["ask", "quiet"]);
    assert_eq!(r.log.prompts, ["p", "ni", "p"]);
    // try 1: 1 s prompt + 5 s; try 2: 2 s prompts + 5 s.
    assert_eq!(r.out.elapsed, secs(13));
    assert_eq!(r.out.vars["attempts"], "2");
}

#[test]
fn collect_too_short_and_pattern_mismatch_give_no_match() {
    let r = run(&flow(COLLECT), vec![digits("1#"), digits("1*2#")]);
    assert_eq!(r.out.path, ["ask", "wrong"]);
    assert_eq!(r.log.prompts, ["p", "bad", "p"]);
    assert!(!r.out.vars.contains_key("got"));
}

#[test]
fn collect_without_specific_exits_takes_max_attempts() {
    let f = flow(
        r##"
flow: t
start: ask
steps:
  ask:
    collect_digits: { prompts: [p], min: 3, max: 3, tries: 2, into: got }
    on: { success: ok, max_attempts: out }
  ok: { hangup: {} }
  out: { hangup: {} }
"##,
    );
    assert_eq!(run(&f, vec![]).out.path, ["ask", "out"]);
    assert_eq!(
        run(&f, vec![digits("1"), digits("2")]).out.path,
        ["ask", "out"]
    );
    assert_eq!(run(&f, vec![digits("123")]).out.path, ["ask", "ok"]);
}

#[test]
fn collect_without_barge_in_drops_keys_during_the_prompt() {
    let f = flow(
        r##"
flow: t
start: ask
steps:
  ask:
    collect_digits: { prompts: [p1, p2], min: 1, max: 4, terminator: "#", barge_in: false, tries: 1, into: got }
    on: { success: ok, no_input: quiet }
  ok: { hangup: {} }
  quiet: { hangup: {} }
"##,
    );
    // "1#" lands while the 2 s prompt plays and is dropped; "7#" after it counts.
    let r = run(
        &f,
        vec![digits("1#"), Action::Silence(secs(3)), digits("7#")],
    );
    assert_eq!(r.log.barge_ins, 0);
    assert_eq!(r.out.vars["got"], "7");
}

/// Digits collected into a name that always holds a secret (`code`, `otp`,
/// `passphrase`, `secret.*`) stay out of events even without `secret: true`.
#[test]
fn digits_into_a_secret_name_are_withheld_from_events() {
    for into in ["code", "otp", "passphrase", "secret.pin"] {
        let f = flow(&format!(
            "flow: t\nstart: ask\nsteps:\n  ask:\n    collect_digits: {{ prompts: [p], min: 4, max: 4, into: {into} }}\n    on: {{ success: done }}\n  done: {{ hangup: {{}} }}\n"
        ));
        let r = run(&f, vec![digits("9157")]);
        assert_eq!(r.out.path, ["ask", "done"], "{into}");
        let json = r.json();
        assert!(json.contains("\"count\":4"), "{into}: {json}");
        assert!(!json.contains("9157"), "{into}: digits leaked: {json}");
        assert_eq!(r.out.vars[into], "***", "{into}");
    }
}

#[test]
fn secret_digits_never_reach_events_or_vars_output() {
    let f = flow(
        r##"
flow: t
start: pin
steps:
  pin:
    collect_digits: { prompts: [p], min: 4, max: 4, secret: true, into: pin }
    on: { success: check }
  check:
    branch:
      - if: 'pin == "4321"'
        goto: good
      - else: bad
  good: { set: { secret.copy: "x${pin}" }, next: tell }
  tell: { say: { value: "${secret.copy}" }, next: bad }
  bad: { hangup: {} }
"##,
    );
    let r = run(&f, vec![digits("4321")]);
    // The branch could compare the secret…
    assert_eq!(r.out.path[..3], ["pin", "check", "good"]);
    assert_eq!(r.left("check"), ["if#1"]);
    // …but saying a value derived from it is refused (say has no error exit → flow error).
    match &r.out.disposition {
        Disposition::Error { step, message } => {
            assert_eq!(step, "tell");
            assert!(message.contains("secret"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.out.vars["pin"], "***");
    assert_eq!(r.out.vars["secret.copy"], "***");
    assert!(!r.json().contains("4321"), "{}", r.json());
    assert!(r.events.iter().any(|e| matches!(
        e,
        Event::Digits {
            count: 4,
            digits: None,
            ..
        }
    )));
    assert!(!r.log.prompts.iter().any(|p| p.contains("digits/")));
}

#[test]
fn copying_a_secret_into_a_plain_variable_is_refused() {
    let f = flow(
        r##"
flow: t
start: pin
steps:
  pin:
    collect_digits: { prompts: [p], min: 4, max: 4, secret: true, into: pin }
    on: { success: copy }
  copy: { set: { plain: "${pin}" }, next: bye }
  bye: { hangup: {} }
"##,
    );
    let r = run(&f, vec![digits("4321")]);
    assert!(
        matches!(&r.out.disposition, Disposition::Error { step, message } if step == "copy" && message.contains("refusing to copy a secret")),
        "{:?}",
        r.out.disposition
    );
    assert!(!r.out.vars.contains_key("plain"));
}

#[test]
fn play_barge_in_keeps_keys_for_the_next_collect() {
    let f = flow(
        r##"
flow: t
start: hello
steps:
  hello: { play: [a, b, c], next: ask }
  ask:
    collect_digits: { prompts: [p], min: 1, max: 2, into: got }
    on: { success: ok }
  ok: { hangup: {} }
"##,
    );
    let r = run(
        &f,
        vec![Action::Silence(Duration::from_millis(1500)), digits("42")],
    );
    assert_eq!(r.out.vars["got"], "42");
    // The 3-prompt play was cut at 1.5 s and the collect prompt skipped.
    assert_eq!(r.log.prompts, ["a", "b", "c"]);
    assert_eq!(r.log.barge_ins, 1);
}

#[test]
fn play_without_barge_in_runs_to_the_end() {
    let f = flow(
        r##"
flow: t
start: hello
steps:
  hello: { play: { prompts: [a, b], barge_in: false }, next: bye }
  bye: { hangup: {} }
"##,
    );
    let r = run(&f, vec![digits("9")]);
    assert_eq!(r.log.barge_ins, 0);
    assert_eq!(r.out.elapsed, secs(2));
}

#[test]
fn say_speaks_digits_numbers_and_last_digits() {
    let f = flow(
        r##"
flow: t
start: one
vars: { n: "2015", phone: "+15551230001", keys: "4*#" }
steps:
  one: { say: { value: "${keys}", as: digits }, next: two }
  two: { say: { value: "${n}", as: number, before: [is], after: [end] }, next: three }
  three: { say: { value: "${phone}", as: last_digits, count: 2 }, next: bye }
  bye: { hangup: {} }
"##,
    );
    let r = run(&f, vec![]);
    assert_eq!(
        r.log.prompts,
        [
            "digits/4",
            "digits/star",
            "digits/pound",
            "is",
            "numbers/2",
            "numbers/thousand",
            "numbers/15",
            "end",
            "digits/0",
            "digits/1"
        ]
    );
}

const RECOGNIZE: &str = r##"
flow: t
start: ask
steps:
  ask:
    recognize: { prompts: [q], phrases: [checking, savings], min_confidence: 0.6, tries: 2, no_input_timeout: 4s, no_input_prompts: [ni], no_match_prompts: [nm], into: acct }
    on: { success: ok, no_input: quiet, no_match: wrong }
  ok: { hangup: {} }
  quiet: { hangup: {} }
  wrong: { hangup: {} }
"##;

#[test]
fn recognize_matches_a_phrase_with_speech_barge_in() {
    let r = run(&flow(RECOGNIZE), vec![say("Savings!", 0.9)]);
    assert_eq!(r.out.path, ["ask", "ok"]);
    assert_eq!(r.out.vars["acct"], "savings");
    assert_eq!(r.log.barge_ins, 1);
    assert!(r.names().contains(&"recognition"));
}

#[test]
fn recognize_low_confidence_or_unknown_phrase_is_no_match() {
    let r = run(
        &flow(RECOGNIZE),
        vec![say("savings", 0.3), say("pizza", 0.99)],
    );
    assert_eq!(r.out.path, ["ask", "wrong"]);
    assert_eq!(r.log.prompts, ["q", "nm", "q"]);
}

#[test]
fn recognize_silence_is_no_input() {
    let r = run(&flow(RECOGNIZE), vec![]);
    assert_eq!(r.out.path, ["ask", "quiet"]);
    // try 1: 1 s prompt + 4 s; try 2: 2 s prompts + 4 s.
    assert_eq!(r.out.elapsed, secs(11));
}

const LOOKUP: &str = r##"
flow: t
start: look
steps:
  look:
    lookup_caller: {}
    on: { found: yes, not_found: no, error: err }
  yes: { hangup: {} }
  no: { hangup: {} }
  err: { hangup: {} }
"##;

#[test]
fn lookup_found_not_found_error() {
    let f = flow(LOOKUP);
    let r = run_with(
        &f,
        vec![],
        Fx {
            directory: Some(alice()),
            ..Fx::default()
        },
    );
    assert_eq!(r.out.path, ["look", "yes"]);
    assert_eq!(r.out.vars["account.id"], "ACC-1");
    let r = run_with(
        &f,
        vec![],
        Fx {
            directory: Some(alice()),
            caller: Some("+1999"),
            ..Fx::default()
        },
    );
    assert_eq!(r.out.path, ["look", "no"]);
    // No directory configured: the error exit, with the reason — never a pretended success.
    let r = run(&f, vec![]);
    assert_eq!(r.out.path, ["look", "err"]);
    assert!(r.events.iter().any(|e| matches!(e, Event::Error { message, .. } if message.contains("no caller directory is configured"))));
}

const PASSPHRASE: &str = r##"
flow: t
start: look
steps:
  look: { lookup_caller: {}, on: { found: pp } }
  pp:
    verify_passphrase: { prompts: [say_it], tries: 2, no_input_timeout: 3s, retry_prompts: [again] }
    on: { success: ok, failure: bad, no_input: quiet, error: err }
  ok: { hangup: {} }
  bad: { hangup: {} }
  quiet: { hangup: {} }
  err: { hangup: {} }
"##;

fn phrases() -> PassphraseStub {
    let mut p = BTreeMap::new();
    p.insert(
        "+15551230001".to_string(),
        "purple elephant dance".to_string(),
    );
    PassphraseStub {
        phrases: p,
        fail: false,
    }
}

#[test]
fn passphrase_success_failure_no_input_error_and_no_transcript_leaks() {
    let f = flow(PASSPHRASE);
    let fx = || Fx {
        directory: Some(alice()),
        passphrase: Some(phrases()),
        ..Fx::default()
    };
    let r = run_with(&f, vec![say("purple elephant dance", 0.9)], fx());
    assert_eq!(r.out.path, ["look", "pp", "ok"]);
    assert!(r.names().contains(&"auth_passed"));
    assert!(!r.json().contains("elephant"));

    let r = run_with(
        &f,
        vec![say("purple elephant", 0.9), say("green tiger", 0.9)],
        fx(),
    );
    assert_eq!(r.out.path, ["look", "pp", "bad"]);
    assert_eq!(r.log.prompts, ["say_it", "again", "say_it"]);
    assert!(r.names().contains(&"auth_failed"));
    assert!(!r.json().contains("tiger") && !r.json().contains("elephant"));
    assert!(!r.out.vars.values().any(|v| v.contains("tiger")));

    let r = run_with(&f, vec![], fx());
    assert_eq!(r.out.path, ["look", "pp", "quiet"]);
    assert!(r.names().contains(&"auth_no_input"));

    let mut broken = fx();
    broken.passphrase = Some(PassphraseStub {
        phrases: BTreeMap::new(),
        fail: true,
    });
    let r = run_with(&f, vec![say("purple elephant dance", 0.9)], broken);
    assert_eq!(r.out.path, ["look", "pp", "err"]);
    assert!(r.names().contains(&"auth_error"));
}

const CODES: &str = r##"
flow: t
start: look
steps:
  look: { lookup_caller: {}, on: { found: send } }
  send:
    send_code: { channel: sms, to: "${account.phone}", length: 6, ttl: 60s, max_attempts: 2 }
    on: { success: code, rate_limited: limited, error: send_err }
  code:
    verify_code: { prompts: [enter], tries: 3, first_digit_timeout: 4s, invalid_prompts: [wrong] }
    on: { success: ok, failure: bad, expired: old, no_input: quiet, error: err }
  ok: { hangup: {} }
  bad: { hangup: {} }
  old: { hangup: {} }
  quiet: { hangup: {} }
  err: { hangup: {} }
  limited: { hangup: {} }
  send_err: { hangup: {} }
"##;

fn code_fx(mode: SendMode, verify_fails: bool) -> Fx {
    Fx {
        directory: Some(alice()),
        codes: Some((mode, verify_fails)),
        ..Fx::default()
    }
}

/// Alice on a landline, with `email` when given.
fn landline_alice(email: Option<&str>) -> Fx {
    let mut d = alice();
    if let Some(Some(acc)) = d.accounts.get_mut("+15551230001") {
        acc.insert("line_type".into(), "landline".into());
        if let Some(e) = email {
            acc.insert("email".into(), e.into());
        }
    }
    Fx {
        directory: Some(d),
        codes: Some((SendMode::Ok, false)),
        ..Fx::default()
    }
}

#[test]
fn send_code_skips_what_the_account_cannot_take() {
    let f = flow(&CODES.replace("channel: sms", "channels: [sms, email]"));
    let r = run_with(
        &f,
        vec![digits("${sent_code}")],
        landline_alice(Some("alice@example.com")),
    );
    assert_eq!(r.out.path, ["look", "send", "code", "ok"]);
    assert!(r.events.iter().any(|e| matches!(e,
        Event::CodeAttempt { channel: "sms", outcome: "skipped", reason: Some(why), .. }
            if why == "a landline cannot take a text message")));
    assert!(r.events.iter().any(|e| matches!(e,
        Event::CodeSent { channel: "email", to_masked, .. } if to_masked == "a•••@example.com")));
    assert!(r.events.iter().any(|e| matches!(
        e,
        Event::Auth {
            method: crate::events::AuthMethod::EmailCode,
            ..
        }
    )));
    assert!(!r.json().contains("alice@example.com"));

    // Nothing it can take: `error`, each channel's reason in the event.
    let r = run_with(&f, vec![], landline_alice(None));
    assert_eq!(r.out.path, ["look", "send", "send_err"]);
    assert!(r.events.iter().any(|e| matches!(e,
        Event::CodeSent { reason: Some(why), .. }
            if why.contains("sms: a landline") && why.contains("email: no e-mail address on file"))));
}

#[test]
fn send_code_exits_and_masked_destination() {
    let f = flow(CODES);
    let r = run_with(
        &f,
        vec![digits("${sent_code}")],
        code_fx(SendMode::Ok, false),
    );
    assert_eq!(r.out.path, ["look", "send", "code", "ok"]);
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, Event::CodeSent { to_masked, .. } if to_masked == "+1555•••0001")));
    assert!(!r.json().contains("+15551230001"));
    let r = run_with(&f, vec![], code_fx(SendMode::RateLimited, false));
    assert_eq!(r.out.path, ["look", "send", "limited"]);
    let r = run_with(&f, vec![], code_fx(SendMode::Error, false));
    assert_eq!(r.out.path, ["look", "send", "send_err"]);
}

#[test]
fn verify_code_wrong_codes_burn_it_and_code_never_leaks() {
    let f = flow(CODES);
    // max_attempts 2 at the backend: the second wrong code burns it (before tries run out).
    let r = run_with(
        &f,
        vec![digits("000000"), digits("000000")],
        code_fx(SendMode::Ok, false),
    );
    assert_eq!(r.out.path, ["look", "send", "code", "bad"]);
    assert_eq!(r.log.prompts, ["enter", "wrong", "enter"]);
    assert!(!r.json().contains("000000"));
}

#[test]
fn verify_code_expiry_no_input_and_error() {
    let f = flow(CODES);
    let r = run_with(
        &f,
        vec![Action::Advance(secs(61)), digits("${sent_code}")],
        code_fx(SendMode::Ok, false),
    );
    assert_eq!(r.out.path, ["look", "send", "code", "old"]);
    assert!(r.names().contains(&"auth_expired"));

    let r = run_with(&f, vec![], code_fx(SendMode::Ok, false));
    assert_eq!(r.out.path, ["look", "send", "code", "quiet"]);
    assert_eq!(r.out.elapsed, secs(15));

    let r = run_with(
        &f,
        vec![digits("${sent_code}")],
        code_fx(SendMode::Ok, true),
    );
    assert_eq!(r.out.path, ["look", "send", "code", "err"]);
}

#[test]
fn verify_totp_exits() {
    let f = flow(
        r##"
flow: t
start: look
steps:
  look: { lookup_caller: {}, on: { found: t1, not_found: t1 } }
  t1:
    verify_totp: { prompts: [enter], tries: 2, first_digit_timeout: 2s }
    on: { success: ok, failure: bad, no_input: quiet, error: err }
  ok: { hangup: {} }
  bad: { hangup: {} }
  quiet: { hangup: {} }
  err: { hangup: {} }
"##,
    );
    let stub = |fail, locked, not_enrolled| TotpStub {
        valid: vec!["123456".into()],
        fail,
        locked,
        not_enrolled,
        ..TotpStub::default()
    };
    let totp = |t: TotpStub| Fx {
        directory: Some(alice()),
        totp: Some(t),
        ..Fx::default()
    };
    let r = run_with(&f, vec![digits("123456")], totp(stub(false, false, false)));
    assert_eq!(r.out.path, ["look", "t1", "ok"]);
    let r = run_with(
        &f,
        vec![digits("654321"), digits("12")],
        totp(stub(false, false, false)),
    );
    assert_eq!(r.out.path, ["look", "t1", "bad"]);
    assert!(!r.json().contains("654321"));
    assert!(r.json().contains("wrong code"), "{}", r.json());
    assert_eq!(
        run_with(&f, vec![], totp(stub(false, false, false)))
            .out
            .path,
        ["look", "t1", "quiet"]
    );
    assert_eq!(
        run_with(&f, vec![digits("123456")], totp(stub(true, false, false)))
            .out
            .path,
        ["look", "t1", "err"]
    );
    // Accepted once; the same code again (the stub remembers) is refused
    // as replayed on every try.
    let once = stub(false, false, false);
    once.used.lock().unwrap().push("123456".into());
    let r = run_with(&f, vec![digits("123456"), digits("123456")], totp(once));
    assert_eq!(r.out.path, ["look", "t1", "bad"]);
    assert!(
        r.json().contains(super::verify_totp::REPLAYED),
        "{}",
        r.json()
    );
    assert!(!r.json().contains("123456"));
    // Locked: `failure` at the first code, with the locked outcome.
    let r = run_with(&f, vec![digits("123456")], totp(stub(false, true, false)));
    assert_eq!(r.out.path, ["look", "t1", "bad"]);
    assert_eq!(r.left("t1"), ["failure"]);
    let j = r.json();
    assert!(
        j.contains("\"locked\"") && j.contains(super::verify_totp::LOCKED),
        "{j}"
    );
    // No secret for the account: `failure` at once.
    let r = run_with(
        &f,
        vec![digits("123456"), digits("123456")],
        totp(stub(false, false, true)),
    );
    assert_eq!(r.out.path, ["look", "t1", "bad"]);
    assert!(r.json().contains(super::verify_totp::NOT_ENROLLED));
    // A caller without an account is never checked (the verifier would
    // accept the code), and is not asked for one.
    let r = run_with(
        &f,
        vec![digits("123456")],
        Fx {
            directory: Some(alice()),
            totp: Some(stub(false, false, false)),
            caller: Some("+15559990000"),
            ..Fx::default()
        },
    );
    assert_eq!(r.out.path, ["look", "t1", "bad"]);
    assert!(r.json().contains(super::verify_totp::NO_ACCOUNT));
    assert!(r.log.prompts.is_empty(), "{:?}", r.log.prompts);
}

/// Records the `now` it is asked at; accepts nothing.
struct ClockedTotp(std::sync::Arc<std::sync::Mutex<Vec<std::time::SystemTime>>>);

impl crate::backends::TotpVerifier for ClockedTotp {
    fn verify<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u32,
        now: std::time::SystemTime,
    ) -> crate::backends::BoxFut<
        'a,
        Result<crate::backends::TotpCheck, crate::backends::ServiceError>,
    > {
        self.0.lock().unwrap().push(now);
        Box::pin(std::future::ready(Ok(crate::backends::TotpCheck::Wrong)))
    }
}

#[test]
fn backends_get_the_calls_clock_not_their_own() {
    let f = flow(
        r##"
flow: t
start: look
steps:
  look: { lookup_caller: {}, on: { found: t1 } }
  t1:
    verify_totp: { prompts: [enter], tries: 2, first_digit_timeout: 5s }
    on: { success: ok, failure: bad, no_input: bad, error: bad }
  ok: { hangup: {} }
  bad: { hangup: {} }
"##,
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let fx = Fx {
        directory: Some(alice()),
        totp_with: Some(Box::new(ClockedTotp(seen.clone()))),
        ..Fx::default()
    };
    let r = run_with(
        &f,
        vec![
            Action::Advance(secs(90)),
            digits("111111"),
            Action::Advance(secs(120)),
            digits("222222"),
        ],
        fx,
    );
    assert_eq!(r.out.path, ["look", "t1", "bad"]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let epoch = crate::flow::testing::runner::test_epoch();
    // Virtual time: answered at the test epoch, then the script's waits
    // (plus the prompt and key gaps), never the machine's clock.
    let first = seen[0].duration_since(epoch).unwrap();
    let second = seen[1].duration_since(epoch).unwrap();
    assert!(first >= secs(90) && first < secs(100), "{first:?}");
    assert!(
        second >= first + secs(120) && second < first + secs(130),
        "{second:?}"
    );
}

const TRANSFER: &str = r##"
flow: t
start: x
vars: { who: gold }
steps:
  x:
    transfer: { target: "sip:agents@example.com", headers: { X-Tier: "${who}" } }
    on: { failure: busy, error: broken }
  busy: { hangup: {} }
  broken: { hangup: {} }
"##;

#[test]
fn transfer_success_failure_error() {
    let f = flow(TRANSFER);
    let r = run(&f, vec![]);
    assert_eq!(
        r.out.disposition,
        Disposition::Transferred {
            step: "x".into(),
            target: "sip:agents@example.com".into()
        }
    );
    // The engine's context first, then the flow's own header.
    let h = &r.log.transfers[0].headers;
    assert_eq!(h.last(), Some(&("X-Tier".to_string(), "gold".to_string())));
    let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("X-Auth-Result"), Some("none"));
    assert_eq!(get("X-Account-Id"), Some("none"));
    assert!(get("User-to-User").is_some_and(|v| v.ends_with(";encoding=hex;purpose=isdn-uui")));
    let r = run_with(
        &f,
        vec![],
        Fx {
            transfer: TransferFixture::Failed(Some(486)),
            ..Fx::default()
        },
    );
    assert_eq!(r.out.path, ["x", "busy"]);
    assert!(r.events.iter().any(|e| matches!(
        e,
        Event::Transfer {
            status: Some(486),
            ..
        }
    )));
    let r = run_with(
        &f,
        vec![],
        Fx {
            transfer: TransferFixture::Error,
            ..Fx::default()
        },
    );
    assert_eq!(r.out.path, ["x", "broken"]);
}

#[test]
fn transfer_refuses_a_secret_header() {
    let f = flow(
        r##"
flow: t
start: pin
steps:
  pin:
    collect_digits: { prompts: [p], min: 4, max: 4, secret: true, into: pin }
    on: { success: x }
  x:
    transfer: { target: "sip:agents@example.com", headers: { X-Pin: "${pin}" } }
    on: { error: broken }
  broken: { hangup: {} }
"##,
    );
    let r = run(&f, vec![digits("1234")]);
    assert_eq!(r.out.path, ["pin", "x", "broken"]);
    assert!(r.log.transfers.is_empty());
    assert!(!r.json().contains("1234"));
}

const WEBHOOK: &str = r##"
flow: t
start: w
steps:
  w:
    webhook: { url: "http://crm/${caller}", body: { n: "${caller}" }, into: crm }
    on: { success: ok, failure: bad, timeout: slow, error: err }
  ok: { hangup: {} }
  bad: { hangup: {} }
  slow: { hangup: {} }
  err: { hangup: {} }
"##;

fn hook(status: u16, timeout: bool, fail: bool) -> Fx {
    Fx {
        webhook: Some(WebhookStub {
            status,
            body: serde_json::json!({ "tier": "gold", "limits": { "daily": 500 } }),
            timeout,
            fail,
            requests: Arc::new(Mutex::new(Vec::new())),
        }),
        ..Fx::default()
    }
}

#[test]
fn webhook_exits_and_answer_variables() {
    let f = flow(WEBHOOK);
    let r = run_with(&f, vec![], hook(200, false, false));
    assert_eq!(r.out.path, ["w", "ok"]);
    assert_eq!(r.out.vars["crm.tier"], "gold");
    assert_eq!(r.out.vars["crm.limits.daily"], "500");
    assert_eq!(
        run_with(&f, vec![], hook(503, false, false)).out.path,
        ["w", "bad"]
    );
    assert_eq!(
        run_with(&f, vec![], hook(200, true, false)).out.path,
        ["w", "slow"]
    );
    assert_eq!(
        run_with(&f, vec![], hook(200, false, true)).out.path,
        ["w", "err"]
    );
    assert_eq!(run(&f, vec![]).out.path, ["w", "err"]);
}

#[test]
fn goto_set_and_branch_else() {
    let f = flow(
        r##"
flow: t
start: a
steps:
  a: { set: { status: locked, greeting: "hi ${caller}" }, next: b }
  b: { goto: c }
  c:
    branch:
      - if: 'status == "active"'
        goto: d
      - else: e
  d: { hangup: {} }
  e: { hangup: {} }
"##,
    );
    let r = run(&f, vec![]);
    assert_eq!(r.out.path, ["a", "b", "c", "e"]);
    assert_eq!(r.left("c"), ["else"]);
    assert_eq!(r.out.vars["greeting"], "hi +15551230001");
    assert_eq!(r.out.vars["last_exit"], "next");
    assert_eq!(r.log.engine_hangups, 1);
    assert!(r.names().contains(&"hung_up_by_engine"));
}

#[test]
fn runaway_loop_is_stopped() {
    let f = flow(
        r##"
flow: t
start: a
steps:
  a: { goto: b }
  b: { goto: a }
"##,
    );
    let r = run(&f, vec![]);
    assert_eq!(r.out.path.len(), MAX_TRANSITIONS);
    assert!(
        matches!(&r.out.disposition, Disposition::Error { message, .. } if message.contains("runaway"))
    );
    assert_eq!(r.log.engine_hangups, 1);
}

#[test]
fn max_duration_ends_a_long_call() {
    let f = flow(
        r##"
flow: t
start: ask
max_duration: 20s
steps:
  ask:
    collect_digits: { prompts: [p], tries: 1, first_digit_timeout: 8s, into: x }
    on: { success: ask, no_input: ask }
"##,
    );
    let r = run(&f, vec![]);
    assert_eq!(r.out.elapsed, secs(20));
    assert!(
        matches!(&r.out.disposition, Disposition::Error { message, .. } if message.contains("max_duration"))
    );
    assert_eq!(r.names().last(), Some(&"hung_up_by_engine"));
}

#[test]
fn caller_hang_up_mid_step_ends_cleanly() {
    let r = run(&flow(COLLECT), vec![digits("1"), Action::Hangup]);
    assert_eq!(
        r.out.disposition,
        Disposition::HungUpByCaller { step: "ask".into() }
    );
    assert_eq!(r.log.engine_hangups, 0);
    assert_eq!(r.names().last(), Some(&"hung_up_by_caller"));
    let r = run(&flow(RECOGNIZE), vec![Action::Hangup]);
    assert_eq!(
        r.out.disposition,
        Disposition::HungUpByCaller { step: "ask".into() }
    );
}

#[test]
fn a_hang_up_mid_entry_reports_the_entrys_length_not_its_digits() {
    let r = run(&flow(COLLECT), vec![digits("127"), Action::Hangup]);
    let n = r.names();
    assert_eq!(n[n.len() - 2..], ["digits_abandoned", "hung_up_by_caller"]);
    assert!(r.events.contains(&Event::DigitsAbandoned {
        step: "ask".into(),
        count: 3
    }));
    let json = serde_json::to_string(&r.events[r.events.len() - 2]).unwrap();
    assert_eq!(
        json,
        r#"{"event":"digits_abandoned","step":"ask","count":3}"#
    );
    // Nothing keyed, or an entry already finished: no abandoned entry.
    let r = run(&flow(COLLECT), vec![Action::Hangup]);
    assert!(!r.names().contains(&"digits_abandoned"));
    let r = run(&flow(RECOGNIZE), vec![digits("12"), Action::Hangup]);
    assert!(!r.names().contains(&"digits_abandoned"));
}

#[test]
fn end_of_flow_without_next_hangs_up() {
    let f = flow(
        r##"
flow: t
start: a
steps:
  a: { play: [bye] }
"##,
    );
    let r = run(&f, vec![]);
    assert_eq!(r.out.disposition, Disposition::Ended { step: "a".into() });
    assert_eq!(r.log.engine_hangups, 1);
}

#[test]
fn unnamed_exit_is_a_flow_error() {
    let f = flow(
        r##"
flow: t
start: look
steps:
  look: { lookup_caller: {}, on: { found: done } }
  done: { hangup: {} }
"##,
    );
    let r = run_with(
        &f,
        vec![],
        Fx {
            directory: Some(alice()),
            caller: Some("+1999"),
            ..Fx::default()
        },
    );
    assert!(
        matches!(&r.out.disposition, Disposition::Error { message, .. } if message.contains("exit `not_found` which has no target"))
    );
    // A failure with no `error` exit is a flow error with the failure's own reason.
    let r = run(&f, vec![]);
    assert!(
        matches!(&r.out.disposition, Disposition::Error { message, .. } if message.contains("no caller directory is configured"))
    );
}

#[test]
fn run_flow_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let f = flow(LOOKUP);
    let mut call = ScriptedCall::new(CallInfo::default(), vec![]);
    let s = Services::unavailable();
    let mut sink = VecSink::new();
    let fut = run_flow(&f, &mut call, &s, &mut sink);
    assert_send(&fut);
}

#[test]
fn expired_code_without_expired_exit_is_a_failure() {
    let f = flow(
        r##"
flow: t
start: look
steps:
  look: { lookup_caller: {}, on: { found: send } }
  send: { send_code: { ttl: 30s }, on: { success: code } }
  code:
    verify_code: { prompts: [enter] }
    on: { success: ok, failure: bad, no_input: bad, error: bad }
  ok: { hangup: {} }
  bad: { hangup: {} }
"##,
    );
    let r = run_with(
        &f,
        vec![Action::Advance(secs(31)), digits("${sent_code}")],
        code_fx(SendMode::Ok, false),
    );
    assert_eq!(r.out.path, ["look", "send", "code", "bad"]);
    assert_eq!(r.out.vars["auth.result"], "expired");
    assert_eq!(r.out.vars["auth.method"], "sms_code");
}

#[test]
fn webhook_timeout_without_timeout_exit_takes_error() {
    let f = flow(
        r##"
flow: t
start: w
steps:
  w:
    webhook: { url: "http://crm/x" }
    on: { success: ok, failure: ok, error: err }
  ok: { hangup: {} }
  err: { hangup: {} }
"##,
    );
    let r = run_with(&f, vec![], hook(200, true, false));
    assert_eq!(r.out.path, ["w", "err"]);
    assert!(r.names().contains(&"webhook_timeout"));
}

#[test]
fn unavailable_services_explain_themselves() {
    let s = Services::unavailable();
    let req = crate::backends::WebhookRequest {
        url: "u".into(),
        post: true,
        headers: vec![],
        body: serde_json::Map::new(),
        timeout: secs(1),
    };
    let errs = [
        block_on(s.directory.lookup(&crate::backends::LookupQuery {
            number: crate::phone::for_lookup("+16502530000", Default::default()).unwrap(),
            brand: String::new(),
            directory: None,
        }))
        .unwrap()
        .unwrap_err()
        .to_string(),
        block_on(s.codes.verify(crate::backends::CodeEntry {
            call_id: "c",
            subject: &crate::backends::CodeSubject::Number("+1555".into()),
            entered: "1",
            now: std::time::UNIX_EPOCH,
        }))
        .unwrap()
        .unwrap_err()
        .to_string(),
        block_on(s.totp.verify("a", "1", 1, std::time::UNIX_EPOCH))
            .unwrap()
            .unwrap_err()
            .to_string(),
        block_on(s.passphrase.verify(
            &crate::backends::PassphraseSubject {
                account_id: None,
                number: "a".into(),
            },
            "b",
            1.0,
            std::time::UNIX_EPOCH,
        ))
        .unwrap()
        .unwrap_err()
        .to_string(),
        block_on(s.webhook.call(&req))
            .unwrap()
            .unwrap_err()
            .to_string(),
    ];
    for (e, what) in errs.iter().zip([
        "caller directory",
        "one-time-code",
        "TOTP",
        "passphrase",
        "webhook",
    ]) {
        assert!(e.contains(what) && e.contains("is configured"), "{e}");
    }
}

#[test]
fn auth_variables_follow_the_last_verification() {
    let f = flow(PASSPHRASE);
    let r = run_with(
        &f,
        vec![say("purple elephant dance", 0.9)],
        Fx {
            directory: Some(alice()),
            passphrase: Some(phrases()),
            ..Fx::default()
        },
    );
    assert_eq!(r.out.vars["auth.result"], "passed");
    assert_eq!(r.out.vars["auth.method"], "passphrase");
}

#[test]
fn transfer_success_exit_runs_bookkeeping_and_stays_transferred() {
    let f = flow(
        r##"
flow: t
start: x
steps:
  x:
    transfer: { target: "sip:agents@example.com" }
    on: { success: note, failure: bye, error: bye }
  note: { set: { handed_over: "yes" }, next: bye }
  bye: { hangup: {} }
"##,
    );
    let r = run(&f, vec![]);
    assert_eq!(r.out.path, ["x", "note", "bye"]);
    assert_eq!(r.out.vars["handed_over"], "yes");
    assert_eq!(r.out.disposition.name(), "transferred");
    let r = run_with(
        &f,
        vec![],
        Fx {
            transfer: TransferFixture::Failed(None),
            ..Fx::default()
        },
    );
    assert_eq!(r.out.disposition.name(), "ended");
}

#[test]
fn vars_debug_output_masks_secrets() {
    let mut v = crate::flow::vars::Vars::new();
    v.set("pin", "97531", true).unwrap();
    assert!(!format!("{v:?}").contains("97531"));
}

/// A step whose id is not a variable name still writes under its id by
/// default, so an id like `caller-lookup` is refused at load like `into: caller`.
#[test]
fn default_into_from_any_step_id_is_checked_against_reserved_names() {
    let yaml = "flow: t\nstart: caller-lookup\nsteps:\n  caller-lookup:\n    webhook: { url: 'http://127.0.0.1:9/x' }\n    on: { success: done, failure: done, timeout: done, error: done }\n  done: { hangup: {} }\n";
    let Err(diags) = load_flow_str(Path::new("t.yaml"), yaml) else {
        panic!("a default into under `caller*` loaded");
    };
    let text = format!("{diags:?}");
    assert!(text.contains("caller"), "{text}");
}
