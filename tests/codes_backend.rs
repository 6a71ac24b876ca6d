//! The code service `serve` uses (`StoreCodes`) on a real SQLite file, with
//! time given as the call's clock (virtual here: no sleeps): a code goes out
//! through the brand's gateway in the brand's template, verifies once,
//! expires after its TTL (then a resend works), survives a reopen of the
//! file, and a gateway failure leaves no live code behind. The gateway here
//! records messages in memory; the real HTTP gateways have their own tests.

#![allow(clippy::unwrap_used, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use voxgate::backends::codes::StoreCodes;
use voxgate::backends::sms::{Sms, SmsAccepted, SmsGateway, SmsMessage, Templates};
use voxgate::backends::{
    BoxFut, CodeChannel, CodeCheck, CodeEntry, CodeRequest, CodeService, CodeSubject, CodeTarget,
    SendAttempt, SendLimit, SendResult, ServiceError,
};
use voxgate::config::CodePolicy;
use voxgate::phone::{normalise, Country};
use voxgate::store::deliveries::DeliveryStatus;
use voxgate::store::{SecretKey, Store};

#[derive(Default)]
struct Outbox {
    sent: Mutex<Vec<(String, String)>>,
    fail: Mutex<bool>,
}

struct MemoryGateway(Arc<Outbox>);

impl SmsGateway for MemoryGateway {
    fn send<'a>(&'a self, msg: &'a SmsMessage) -> BoxFut<'a, Result<SmsAccepted, ServiceError>> {
        Box::pin(async move {
            if *self.0.fail.lock().unwrap() {
                return Err(ServiceError::Failed("gateway answered 503".into()));
            }
            let mut v = self.0.sent.lock().unwrap();
            v.push((msg.to.as_str().to_string(), msg.body.to_string()));
            Ok(SmsAccepted {
                message_id: Some(format!("SM{}", v.len())),
                status: DeliveryStatus::Queued,
            })
        })
    }
}

struct Fixture {
    codes: StoreCodes,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(tag: &str, policy: CodePolicy) -> Fixture {
    let dir = std::env::temp_dir().join(format!("vg-codes-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("v.db")).unwrap());
    let key = SecretKey::generate();
    let outbox = Arc::new(Outbox::default());
    let mut gws: BTreeMap<String, Arc<dyn SmsGateway>> = BTreeMap::new();
    gws.insert("main".into(), Arc::new(MemoryGateway(outbox.clone())));
    let templates = Templates::new(
        [(
            "acme".to_string(),
            "en".to_string(),
            "{brand}: your code is {code}, valid {minutes} min.".to_string(),
        )],
        BTreeMap::from([("acme".to_string(), "Acme Bank".to_string())]),
    );
    let sms = Arc::new(Sms::new(
        gws,
        Some("main".into()),
        BTreeMap::new(),
        templates,
    ));
    Fixture {
        codes: StoreCodes::new(store.clone(), &key, policy, sms),
        store,
        outbox,
        _dir: TempDir(dir),
    }
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn request(account: &str, now: SystemTime) -> CodeRequest {
    CodeRequest {
        call_id: "call-1".into(),
        subject: CodeSubject::Account(account.into()),
        caller: Some(normalise("+16502530009", Country::default()).unwrap()),
        targets: vec![CodeTarget {
            channel: CodeChannel::Sms,
            to: normalise("+16502530001", Country::default())
                .unwrap()
                .to_string(),
        }],
        brand: "acme".into(),
        language: "en".into(),
        length: 6,
        ttl: Duration::from_secs(60),
        max_attempts: 3,
        resend_cooldown: Duration::from_secs(30),
        now,
        caller_left: Default::default(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn verify(f: &Fixture, account: &str, code: &str, now: SystemTime) -> CodeCheck {
    let subject = CodeSubject::Account(account.into());
    rt().block_on(f.codes.verify(CodeEntry {
        call_id: "call-2",
        subject: &subject,
        entered: code,
        now,
    }))
    .unwrap()
}

fn last_code(f: &Fixture) -> String {
    let sent = f.outbox.sent.lock().unwrap();
    let body = &sent.last().unwrap().1;
    body.split("code is ").nth(1).unwrap()[..6].to_string()
}

#[test]
fn a_code_goes_out_in_the_brand_template_and_verifies_once() {
    let f = fixture("once", CodePolicy::default());
    let r = rt().block_on(f.codes.send(&request("A", t(0)))).unwrap();
    assert_eq!(
        r,
        SendResult::Sent {
            channel: CodeChannel::Sms,
            to_masked: "+1650•••0001".into(),
            gateway: "main".into(),
            message_id: Some("SM1".into()),
            attempts: vec![SendAttempt {
                channel: CodeChannel::Sms,
                to_masked: "+1650•••0001".into(),
                gateway: "main".into(),
                message_id: Some("SM1".into()),
                error: None,
            }],
        }
    );
    let (to, body) = f.outbox.sent.lock().unwrap()[0].clone();
    assert_eq!(to, "+16502530001");
    assert!(body.starts_with("Acme Bank: your code is "), "{body}");
    assert!(body.ends_with(", valid 1 min."), "{body}");
    let code = last_code(&f);
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    // The delivery is recorded under the gateway's message id, masked.
    let d = f.store.delivery_by_message("main", "SM1").unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.channel.as_str()), ("queued", "sms"));
    assert_eq!(d.to_masked, "+1650•••0001");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(verify(&f, "A", wrong, t(5)), CodeCheck::Wrong);
    assert_eq!(verify(&f, "A", &code, t(6)), CodeCheck::Ok);
    assert_eq!(verify(&f, "A", &code, t(7)), CodeCheck::NotSent);
}

#[test]
fn after_its_ttl_a_code_is_expired_and_a_resend_works() {
    let f = fixture("expiry", CodePolicy::default());
    rt().block_on(f.codes.send(&request("A", t(0)))).unwrap();
    let first = last_code(&f);
    // Within the cooldown nothing is sent: the caller enters the live code.
    assert_eq!(
        rt().block_on(f.codes.send(&request("A", t(10)))).unwrap(),
        SendResult::StillValid
    );
    assert_eq!(f.outbox.sent.lock().unwrap().len(), 1);
    assert_eq!(verify(&f, "A", &first, t(61)), CodeCheck::Expired);
    let again = rt().block_on(f.codes.send(&request("A", t(62)))).unwrap();
    assert!(matches!(again, SendResult::Sent { .. }), "{again:?}");
    let second = last_code(&f);
    assert_eq!(verify(&f, "A", &second, t(70)), CodeCheck::Ok);
}

#[test]
fn a_gateway_failure_is_an_error_and_leaves_no_live_code() {
    let f = fixture("gwfail", CodePolicy::default());
    *f.outbox.fail.lock().unwrap() = true;
    let r = rt().block_on(f.codes.send(&request("A", t(0)))).unwrap();
    let SendResult::Undeliverable { attempts } = r else {
        panic!("{r:?}")
    };
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].error.as_deref().unwrap().contains("503"),
        "{attempts:?}"
    );
    // Not "still valid": nobody has that code, so the next send goes out.
    *f.outbox.fail.lock().unwrap() = false;
    let r = rt().block_on(f.codes.send(&request("A", t(1)))).unwrap();
    assert!(matches!(r, SendResult::Sent { .. }), "{r:?}");
}

#[test]
fn the_destination_limit_refuses_the_nth_send() {
    let mut p = CodePolicy::default();
    p.per_destination.hour = 2;
    let f = fixture("limit", p);
    let mut req = request("A", t(0));
    req.resend_cooldown = Duration::ZERO;
    for i in 0..2 {
        req.now = t(i);
        let r = rt().block_on(f.codes.send(&req)).unwrap();
        assert!(matches!(r, SendResult::Sent { .. }), "{r:?}");
    }
    req.now = t(2);
    assert_eq!(
        rt().block_on(f.codes.send(&req)).unwrap(),
        SendResult::RateLimited(SendLimit::DestinationHourly)
    );
    assert_eq!(f.outbox.sent.lock().unwrap().len(), 2);
}

#[test]
fn a_code_without_a_gateway_is_unavailable() {
    let dir = std::env::temp_dir().join(format!("vg-codes-nogw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _d = TempDir(dir.clone());
    let store = Arc::new(Store::open(&dir.join("v.db")).unwrap());
    let codes = StoreCodes::new(
        store,
        &SecretKey::generate(),
        CodePolicy::default(),
        Arc::new(Sms::default()),
    );
    let e = rt().block_on(codes.send(&request("A", t(0)))).unwrap_err();
    assert!(matches!(e, ServiceError::Unavailable(_)), "{e:?}");
}

#[test]
fn voxgate_codes_shows_a_code_without_it_and_cancel_lets_a_new_one_go() {
    let f = fixture("cli", CodePolicy::default());
    rt().block_on(f.codes.send(&request("ACC-9", t(0))))
        .unwrap();
    let code = last_code(&f);
    let db = f.store.path().to_path_buf();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .arg("codes")
            .args(args)
            .arg("--database")
            .arg(&db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let shown = run(&["show", "--account", "ACC-9"]);
    assert!(
        shown.contains("live") && shown.contains("+1650•••0001"),
        "{shown}"
    );
    assert!(shown.contains("2027-01-15T08:00:00Z"), "{shown}");
    assert!(!shown.contains(&code), "the code is shown: {shown}");
    assert_eq!(
        run(&["cancel", "--account", "ACC-9"]).trim(),
        "cancelled 1 live code(s)"
    );
    assert_eq!(verify(&f, "ACC-9", &code, t(5)), CodeCheck::NotSent);
    // Within the cooldown, but nothing is live: a new code goes out.
    let r = rt()
        .block_on(f.codes.send(&request("ACC-9", t(6))))
        .unwrap();
    assert!(matches!(r, SendResult::Sent { .. }), "{r:?}");
    assert!(run(&["show", "--account", "ACC-9"]).contains("cancelled"));
    // Neither or both of --account/--number is a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["codes", "show", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn email_target(to: &str) -> CodeTarget {
    CodeTarget {
        channel: CodeChannel::Email,
        to: to.into(),
    }
}

#[test]
fn a_channel_without_a_gateway_is_a_failed_try_and_the_next_one_goes() {
    let f = fixture("no-email", CodePolicy::default());
    let mut req = request("A", t(0));
    req.targets.insert(0, email_target("alice@example.com"));
    let r = rt().block_on(f.codes.send(&req)).unwrap();
    let SendResult::Sent {
        channel, attempts, ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(channel, CodeChannel::Sms);
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].to_masked, "a•••@example.com");
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("no e-mail channel is configured")
    );
    assert_eq!(attempts[1].error, None);
    assert_eq!(f.outbox.sent.lock().unwrap().len(), 1);
    // Both tries are deliveries of the one code.
    let sent = f.store.delivery_by_message("main", "SM1").unwrap().unwrap();
    let all = f
        .store
        .deliveries_of_code(sent.code_id.as_deref().unwrap())
        .unwrap();
    let rows: Vec<_> = all
        .iter()
        .map(|d| (d.channel.as_str(), d.status.as_str(), d.to_masked.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("email", "failed", "a•••@example.com"),
            ("sms", "queued", "+1650•••0001")
        ]
    );
}

#[test]
fn when_every_channel_fails_each_try_is_recorded_and_no_code_is_live() {
    use voxgate::config::email::{EmailConfig, SmtpConfig, SmtpTls};
    let Fixture {
        codes,
        store,
        outbox,
        _dir,
    } = fixture("all-fail", CodePolicy::default());
    // A port nothing listens on: the relay cannot be reached.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = EmailConfig {
        smtp: SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username_env: None,
            password_env: None,
            timeout: Duration::from_secs(2),
            ca_file: None,
        },
        from: "codes@example.com".into(),
        same_code: true,
        templates: BTreeMap::new(),
        brand_names: BTreeMap::new(),
    };
    let email = voxgate::backends::email::build(&cfg).unwrap();
    let codes = codes.with_email(Some(Arc::new(email)));
    *outbox.fail.lock().unwrap() = true;
    let mut req = request("A", t(0));
    req.targets.push(email_target("alice@example.com"));
    let r = rt().block_on(codes.send(&req)).unwrap();
    let SendResult::Undeliverable { attempts } = r else {
        panic!("{r:?}")
    };
    let tried: Vec<_> = attempts
        .iter()
        .map(|a| (a.channel, a.gateway.as_str(), a.error.is_some()))
        .collect();
    assert_eq!(
        tried,
        [
            (CodeChannel::Sms, "main", true),
            (CodeChannel::Email, "smtp:127.0.0.1", true)
        ]
    );
    assert!(!attempts[1].error.as_deref().unwrap().contains("alice"));
    assert_eq!(
        store.code_states().unwrap(),
        [("undelivered".to_string(), 1)]
    );
    // Nobody has that code: the next send goes out at once.
    *outbox.fail.lock().unwrap() = false;
    let r = rt().block_on(codes.send(&request("A", t(1)))).unwrap();
    assert!(matches!(r, SendResult::Sent { .. }), "{r:?}");
}
