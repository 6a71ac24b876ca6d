//! Codes by e-mail over whole calls: `voxgate serve` with a real SQLite
//! account store, a fake Twilio (`tests/twilio`) as its SMS gateway and a
//! real local SMTP server (Debian `python3-aiosmtpd`, `tests/smtp/sink.py`)
//! as its e-mail relay. The flow (`tests/flows_codes/code_email.yaml`) asks
//! for `channels: [sms, email]`: a landline account skips SMS, a gateway
//! that answers 4xx or 5xx falls back to e-mail with the same code; the
//! test reads the code from the received mail and sipp keys it → `ok`. A
//! recipient the relay refuses is the step's `error`, with the reply code.
//! No code in the log, the events, the database or its WAL; no address in
//! clear in the events or the log.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;
mod twilio;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::smtp::SmtpSink;
use common::*;
use serde_json::Value;
use twilio::FakeTwilio;
use voxgate::phone::{normalise, Country, LineType};
use voxgate::store::sealed::write_key_file;
use voxgate::store::{NewAccount, SecretKey, Store};

const TOKEN_ENV: &str = "VOXGATE_TEST_EMAIL_CALLS_TWILIO_TOKEN";
const TOKEN: &str = "email-calls-auth-token-0123456789";
const USER_ENV: &str = "VOXGATE_TEST_EMAIL_CALLS_SMTP_USER";
const PASS_ENV: &str = "VOXGATE_TEST_EMAIL_CALLS_SMTP_PASSWORD";
const USER: &str = "voxgate-relay-user";
/// The relay's password: required by the sink, never in voxgate's log.
const PASSWORD: &str = "smtp-relay-password-5f1e9c";

fn set_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var(TOKEN_ENV, TOKEN);
        std::env::set_var(USER_ENV, USER);
        std::env::set_var(PASS_ENV, PASSWORD);
    });
}

/// How the local relay runs: plain, or TLS with a certificate, and the
/// password it requires.
struct SinkOpts<'a> {
    /// `("starttls" | "implicit", cert chain, key)`; `None`: plain SMTP.
    tls: Option<(&'a str, &'a Path, &'a Path)>,
    password: &'a str,
}

/// The local relay, plain SMTP with AUTH.
fn smtp(name: &str) -> SmtpSink {
    smtp_with(
        name,
        SinkOpts {
            tls: None,
            password: PASSWORD,
        },
    )
}

fn smtp_with(name: &str, opts: SinkOpts<'_>) -> SmtpSink {
    let (cert, key) = opts.tls.map_or((String::new(), String::new()), |t| {
        (t.1.display().to_string(), t.2.display().to_string())
    });
    let mut env = vec![("SINK_USER", USER), ("SINK_PASSWORD", opts.password)];
    if let Some((mode, _, _)) = opts.tls {
        env.extend([
            ("SINK_TLS", mode),
            ("SINK_CERT", cert.as_str()),
            ("SINK_KEY", key.as_str()),
        ]);
    }
    SmtpSink::start(name, &env)
}

struct State {
    db: PathBuf,
    key_file: PathBuf,
}

/// A fresh store with accounts (id, phone, line type, e-mail).
fn state(name: &str, accounts: &[(&str, &str, Option<LineType>, Option<&str>)]) -> State {
    let dir = scratch(&format!("{name}-state"));
    let (db, key_file) = (dir.join("voxgate.db"), dir.join("secret.key"));
    write_key_file(&key_file, &SecretKey::generate()).unwrap();
    let store = Store::open(&db).unwrap();
    for (id, phone, line_type, email) in accounts {
        let acct = NewAccount {
            id: Some((*id).to_string()),
            phone: Some(normalise(phone, Country::default()).unwrap()),
            line_type: *line_type,
            email: email.map(str::to_string),
            ..NewAccount::default()
        };
        store.add(&acct, None).unwrap();
    }
    State { db, key_file }
}

/// `serve` on the code flows, the fake Twilio for SMS, `smtp` for e-mail.
fn serve(name: &str, st: &State, fake: &FakeTwilio, smtp: &SmtpSink) -> Voxgate {
    serve_with(name, st, fake, smtp, true)
}

/// [`serve`], a fallback sending the same code or (`same_code: false`) a new one.
fn serve_with(
    name: &str,
    st: &State,
    fake: &FakeTwilio,
    smtp: &SmtpSink,
    same_code: bool,
) -> Voxgate {
    serve_smtp(name, st, fake, smtp, "tls: none", same_code)
}

/// [`serve`] with `tls` (the `email.smtp` keys on TLS) for the relay.
fn serve_smtp(
    name: &str,
    st: &State,
    fake: &FakeTwilio,
    smtp: &SmtpSink,
    tls: &str,
    same_code: bool,
) -> Voxgate {
    set_env();
    let config = format!(
        "listen: 127.0.0.1:{{port}}\ndatabase: \"{}\"\nsecret_key_file: \"{}\"\nroute_by_flow_name: true\nsms:\n  gateways:\n    tw: {}\n  brand_names: {{ '': 'Voxbank' }}\nemail:\n  smtp: {{ host: 127.0.0.1, port: {}, {tls}, timeout: 5s, username_env: {USER_ENV}, password_env: {PASS_ENV} }}\n  from: 'Voxbank <codes@voxbank.example>'\n  same_code: {same_code}\n  brand_names: {{ '': 'Voxbank' }}\n  templates:\n    '*': {{ en: {{ subject: 'Your {{brand}} code', text: 'Your {{brand}} code is {{code}}. It expires in {{minutes}} min.' }} }}\n",
        st.db.display(),
        st.key_file.display(),
        fake.gateway_yaml(TOKEN_ENV, ", retries: 1, retry_backoff: 10ms"),
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

/// A call from `from` that keys the code `code_of` returns while it waits.
fn call_entering(
    vg: &Voxgate,
    name: &str,
    from: &str,
    code_of: impl FnOnce() -> String,
) -> Vec<Value> {
    call_entering_code(vg, name, "code_email", from, code_of).0
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

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// None of `codes` in the log, the events, the database or its WAL, and
/// none of `addresses` in the log or the events.
fn assert_nowhere(vg: &Voxgate, st: &State, codes: &[String], addresses: &[&str]) {
    let wal = PathBuf::from(format!("{}-wal", st.db.display()));
    let log = vg.log();
    let events = std::fs::read_to_string(&vg.events).unwrap_or_default();
    let files = [
        ("log", &log),
        ("events", &events),
        ("database", &read_lossy(&st.db)),
        ("WAL", &read_lossy(&wal)),
    ];
    for c in codes {
        for (what, text) in &files {
            assert!(!text.contains(c.as_str()), "the code {c} is in the {what}");
        }
    }
    for (what, text) in &files {
        assert!(
            !text.contains(PASSWORD),
            "the SMTP password is in the {what}"
        );
    }
    for a in addresses {
        for (what, text) in &files[..2] {
            assert!(!text.contains(a), "the address {a} is in the {what}");
        }
    }
}

#[test]
fn a_landline_gets_its_code_by_email_and_keys_it_in() {
    const NUM: &str = "+16502530201";
    const MAIL: &str = "alice.landline@example.com";
    let st = state(
        "email-landline",
        &[("ACC-L", NUM, Some(LineType::Landline), Some(MAIL))],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = smtp("email-landline");
    let vg = serve("email-landline", &st, &fake, &smtp);

    let mut code = String::new();
    let mut mail = String::new();
    let evs = call_entering(&vg, "email-landline", NUM, || {
        (code, mail) = smtp.wait_code(MAIL, 1);
        code.clone()
    });
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    assert_eq!(
        attempts(&evs),
        [
            (
                "sms".into(),
                "skipped".into(),
                "a landline cannot take a text message".into()
            ),
            ("email".into(), "sent".into(), String::new()),
        ],
        "{}",
        pretty(&evs)
    );
    let sent = events_named(&evs, "code_sent");
    assert_eq!(sent[0]["event"]["channel"], "email", "{}", pretty(&evs));
    assert_eq!(sent[0]["event"]["to_masked"], "a•••@example.com");
    assert_eq!(sent[0]["event"]["gateway"], "smtp:127.0.0.1");
    let passed = events_named(&evs, "auth_passed");
    assert_eq!(
        passed[0]["event"]["method"],
        "email_code",
        "{}",
        pretty(&evs)
    );
    assert!(fake.sent().is_empty(), "no SMS to a landline");

    // The mail: the brand's subject, the code in the text only.
    assert!(mail.contains("Subject: Your Voxbank code"), "{mail}");
    assert!(
        mail.contains("From: Voxbank <codes@voxbank.example>"),
        "{mail}"
    );
    assert!(mail.contains("expires in 5 min"), "{mail}");
    let headers = mail.split("\r\n\r\n").next().unwrap();
    assert!(
        !headers.contains(&code),
        "the code is in a header: {headers}"
    );

    // The delivery is recorded with the address masked.
    let text = read_lossy(&st.db) + &read_lossy(&PathBuf::from(format!("{}-wal", st.db.display())));
    assert!(
        text.contains("a•••@example.com"),
        "no masked delivery recorded"
    );
    assert_nowhere(&vg, &st, &[code], &[MAIL]);
}

#[test]
fn a_gateway_that_fails_falls_back_to_email_with_the_same_code() {
    const NUM4: &str = "+16502530202";
    const MAIL4: &str = "bob4xx@example.com";
    const NUM5: &str = "+16502530203";
    const MAIL5: &str = "carol5xx@example.com";
    let st = state(
        "email-fallback",
        &[
            ("ACC-4", NUM4, Some(LineType::Mobile), Some(MAIL4)),
            ("ACC-5", NUM5, Some(LineType::Mobile), Some(MAIL5)),
        ],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = smtp("email-fallback");
    let vg = serve("email-fallback", &st, &fake, &smtp);

    // A 4xx: not retried, the e-mail goes out.
    fake.reject_next(
        1,
        400,
        21612,
        "The 'To' phone number is not currently reachable via SMS.",
    );
    let mut code4 = String::new();
    let evs = call_entering(&vg, "email-4xx", NUM4, || {
        code4 = smtp.wait_code(MAIL4, 1).0;
        code4.clone()
    });
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(a.len(), 2, "{}", pretty(&evs));
    assert_eq!((a[0].0.as_str(), a[0].1.as_str()), ("sms", "failed"));
    assert!(a[0].2.contains("21612"), "{a:?}");
    assert_eq!((a[1].0.as_str(), a[1].1.as_str()), ("email", "sent"));
    assert_eq!(
        events_named(&evs, "code_sent")[0]["event"]["channel"],
        "email"
    );

    // A 5xx on every try (one retry): the e-mail goes out.
    fake.fail_next(2, 503);
    let mut code5 = String::new();
    let evs = call_entering(&vg, "email-5xx", NUM5, || {
        code5 = smtp.wait_code(MAIL5, 1).0;
        code5.clone()
    });
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_str()),
        ("sms", "failed"),
        "{a:?}"
    );
    assert!(a[0].2.contains("503"), "{a:?}");
    assert_eq!((a[1].0.as_str(), a[1].1.as_str()), ("email", "sent"));
    assert!(fake.sent().is_empty(), "{:?}", fake.sent());

    assert_nowhere(&vg, &st, &[code4, code5], &[MAIL4, MAIL5]);
}

#[test]
fn a_refused_recipient_is_the_steps_error_with_the_reply_code() {
    const NUM: &str = "+16502530204";
    const MAIL: &str = "bounce.me@example.com";
    let st = state(
        "email-refused",
        &[("ACC-R", NUM, Some(LineType::Landline), Some(MAIL))],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = smtp("email-refused");
    let vg = serve("email-refused", &st, &fake, &smtp);

    let sink = RtpSink::new();
    let before = vg.read_events().len();
    let out = sipp(
        "identity.xml",
        vg.sip,
        "code_email",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", NUM.to_string()),
            ("identity", "X-Identity: none".to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, "a call whose code cannot go");
    let evs = vg.call_events_since(before);
    assert_eq!(outcome(&evs), "send_err", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(a[0].1, "skipped", "{a:?}");
    assert_eq!((a[1].0.as_str(), a[1].1.as_str()), ("email", "failed"));
    assert_eq!(
        a[1].2, "refused by the SMTP relay: 550 (permanent)",
        "{a:?}"
    );
    let err = events_named(&evs, "code_send_error");
    let reason = err[0]["event"]["reason"].as_str().unwrap();
    assert!(reason.contains("550"), "{reason}");
    assert!(smtp.received().is_empty());
    assert_nowhere(&vg, &st, &[], &[MAIL]);
}

#[test]
fn with_same_code_false_the_fallback_sends_a_new_code() {
    const NUM: &str = "+16502530205";
    const MAIL: &str = "dave.newcode@example.com";
    let st = state(
        "email-new",
        &[("ACC-N", NUM, Some(LineType::Mobile), Some(MAIL))],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = smtp("email-new");
    let vg = serve_with("email-new", &st, &fake, &smtp, false);
    fake.reject_next(1, 400, 21610, "Attempt to send to unsubscribed recipient");
    let mut code = String::new();
    let evs = call_entering(&vg, "email-new", NUM, || {
        code = smtp.wait_code(MAIL, 1).0;
        code.clone()
    });
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(
        (a[0].1.as_str(), a[1].1.as_str()),
        ("failed", "sent"),
        "{a:?}"
    );
    // Two codes drawn: the one the gateway refused is not live, the e-mailed
    // one was used up by the entry.
    let store = Store::open(&st.db).unwrap();
    let states = store.code_states().unwrap();
    let n = |s: &str| states.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    assert_eq!((n("undelivered"), n("used")), (1, 1), "{states:?}");
    assert_nowhere(&vg, &st, &[code], &[MAIL]);
}

/// A private CA and a relay certificate it signed (for 127.0.0.1 and
/// localhost), made with the openssl CLI in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI runs (Debian's openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki(name: &str) -> Pki {
    let dir = scratch(&format!("{name}-pki"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    // Each CA its own name, as two real CAs have.
    let subject = format!("/CN=voxgate test relay CA {name}");
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&dir, &ca);
    let mut csr = vec!["req", "-new"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "relay.key",
        "-out",
        "relay.csr",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ]);
    openssl(&dir, &csr);
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "relay.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-copy_extensions",
            "copy",
            "-out",
            "relay.pem",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("relay.pem"),
        key: dir.join("relay.key"),
    }
}

/// The deliveries recorded: (channel, status, error).
fn deliveries(st: &State) -> Vec<(String, String, Option<String>)> {
    let c = rusqlite::Connection::open(&st.db).unwrap();
    let mut q = c
        .prepare("SELECT channel, status, error FROM deliveries ORDER BY id")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A landline account's code by e-mail through a relay speaking `mode`
/// (STARTTLS or implicit TLS) with a certificate from a private CA that
/// voxgate trusts only through `ca_file`, with AUTH: it arrives over TLS,
/// authenticated, and keyed in it passes.
fn code_over_tls(mode: &str, num: &str, mail_to: &str) {
    let name = format!("email-{mode}");
    let st = state(
        &name,
        &[("ACC-T", num, Some(LineType::Landline), Some(mail_to))],
    );
    let pki = pki(&name);
    let fake = FakeTwilio::start(TOKEN);
    let smtp = smtp_with(
        &name,
        SinkOpts {
            tls: Some((mode, &pki.cert, &pki.key)),
            password: PASSWORD,
        },
    );
    let tls = format!("tls: {mode}, ca_file: '{}'", pki.ca.display());
    let vg = serve_smtp(&name, &st, &fake, &smtp, &tls, true);

    let mut code = String::new();
    let mut mail = String::new();
    let evs = call_entering(&vg, &name, num, || {
        (code, mail) = smtp.wait_code(mail_to, 1);
        code.clone()
    });
    assert_eq!(outcome(&evs), "ok", "{}", pretty(&evs));
    assert_eq!(
        attempts(&evs)[1],
        ("email".into(), "sent".into(), String::new()),
        "{}",
        pretty(&evs)
    );
    // The relay saw TLS and the configured user (the sink requires both:
    // STARTTLS before AUTH and mail, or TLS from the first byte).
    assert!(mail.contains("\r\nX-Tls: TLSv1."), "{mail}");
    assert!(mail.contains(&format!("\r\nX-Auth: {USER}\r\n")), "{mail}");
    assert_eq!(
        deliveries(&st),
        [("email".into(), "sent".into(), None)],
        "{}",
        pretty(&evs)
    );
    assert_nowhere(&vg, &st, &[code], &[mail_to]);
}

#[test]
fn a_code_by_starttls_with_auth_arrives_and_is_keyed_in() {
    code_over_tls("starttls", "+16502530211", "tess.starttls@example.com");
}

#[test]
fn a_code_by_implicit_tls_arrives_and_is_keyed_in() {
    code_over_tls("implicit", "+16502530212", "ivan.smtps@example.com");
}

/// The code of the first SMS request the fake received (accepted or not).
fn code_in_sms_request(fake: &FakeTwilio) -> String {
    let req = fake.requests().into_iter().next().expect("an SMS request");
    let body = form_urlencoded::parse(&req.body)
        .find(|(k, _)| k == "Body")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {body:?}"))
        .to_string()
}

/// A mobile account whose SMS the gateway refuses: the same code goes to
/// the e-mail fallback, which fails as `relay` makes it fail; the call takes
/// the step's error exit, the delivery is `failed` with `reason`, and that
/// code (read from the refused SMS request) is nowhere.
fn email_fallback_fails(
    name: &str,
    num: &str,
    mail_to: &str,
    opts: SinkOpts<'_>,
    tls: &str,
) -> Vec<(String, String, Option<String>)> {
    let st = state(
        name,
        &[("ACC-F", num, Some(LineType::Mobile), Some(mail_to))],
    );
    let fake = FakeTwilio::start(TOKEN);
    let smtp = smtp_with(name, opts);
    let vg = serve_smtp(name, &st, &fake, &smtp, tls, true);
    fake.reject_next(
        1,
        400,
        21612,
        "The 'To' phone number is not currently reachable via SMS.",
    );

    let sink = RtpSink::new();
    let before = vg.read_events().len();
    let out = sipp(
        "identity.xml",
        vg.sip,
        "code_email",
        false,
        &[
            ("rtp_listen", sink.port().to_string()),
            ("from_user", num.to_string()),
            ("identity", "X-Identity: none".to_string()),
        ],
    );
    vg.expect_sipp_ok(&out, "a call whose code cannot go");
    let evs = vg.call_events_since(before);
    assert_eq!(outcome(&evs), "send_err", "{}", pretty(&evs));
    let a = attempts(&evs);
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_str()),
        ("sms", "failed"),
        "{a:?}"
    );
    assert_eq!(
        (a[1].0.as_str(), a[1].1.as_str()),
        ("email", "failed"),
        "{a:?}"
    );
    let d = deliveries(&st);
    assert_eq!(d.last().map(|d| d.1.as_str()), Some("failed"), "{d:?}");
    assert_eq!(
        d.last().and_then(|d| d.2.clone()),
        Some(a[1].2.clone()),
        "{d:?}"
    );
    let err = events_named(&evs, "code_send_error");
    assert!(!err.is_empty(), "{}", pretty(&evs));
    assert!(smtp.received().is_empty(), "the relay took a message");
    let code = code_in_sms_request(&fake);
    assert_nowhere(&vg, &st, &[code], &[mail_to]);
    d
}

#[test]
fn a_relay_whose_certificate_is_not_trusted_gets_no_code() {
    let name = "email-untrusted";
    // The relay's certificate comes from another CA than the one voxgate
    // is told to trust.
    let trusted = pki("email-untrusted-ours");
    let rogue = pki("email-untrusted-rogue");
    let d = email_fallback_fails(
        name,
        "+16502530213",
        "ursula.untrusted@example.com",
        SinkOpts {
            tls: Some(("starttls", &rogue.cert, &rogue.key)),
            password: PASSWORD,
        },
        &format!("tls: starttls, ca_file: '{}'", trusted.ca.display()),
    );
    let why = d.last().unwrap().2.clone().unwrap();
    assert!(
        why == "SMTP: connection failed: invalid peer certificate: UnknownIssuer",
        "{why}"
    );
}

#[test]
fn a_relay_that_refuses_auth_gets_no_code() {
    let name = "email-noauth";
    let pki = pki(name);
    let d = email_fallback_fails(
        name,
        "+16502530214",
        "nora.noauth@example.com",
        SinkOpts {
            tls: Some(("implicit", &pki.cert, &pki.key)),
            password: "another-password-than-voxgates",
        },
        &format!("tls: implicit, ca_file: '{}'", pki.ca.display()),
    );
    assert_eq!(
        d.last().unwrap().2.as_deref(),
        Some("refused by the SMTP relay: 535 (permanent)"),
        "{d:?}"
    );
}
