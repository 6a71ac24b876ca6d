//! Delivery receipts end to end: a real `voxgate serve` with `http:` and a
//! Twilio gateway; a delivery row written into its database first, then
//! status callbacks POSTed to its HTTP endpoint — signed (recorded, with
//! history), unsigned or wrongly signed (403, nothing recorded), for an
//! unknown message (404) or gateway (404), with an unknown status (400),
//! too large (413). Loopback only.

// Integration tests: helpers may unwrap and share `pub` items.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;
mod twilio;

use common::{free_port, Options, Voxgate};
use twilio::{send_status_callback, FakeTwilio, Signing};
use voxgate::store::deliveries::{DeliveryStatus, NewDelivery};
use voxgate::store::Store;

const TOKEN_ENV: &str = "VOXGATE_TEST_RECEIPTS_TOKEN";
const TOKEN: &str = "receipts-token-5f2b9c";

/// `serve` reads the gateway's token from the environment it inherits.
fn set_token_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var(TOKEN_ENV, TOKEN));
}

struct Setup {
    vg: Voxgate,
    store: Store,
    base: String,
    fake: FakeTwilio,
    /// The `sms:`/`http:` part of serve's config.
    config: String,
}

fn start(name: &str) -> Setup {
    set_token_env();
    let fake = FakeTwilio::start(TOKEN);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let extra = format!(
        // The harness puts SIP on `{{port}}`; our own `listen:` in `http:`
        // would otherwise replace its SIP listen line.
        "listen: 127.0.0.1:{{port}}\nhttp: {{ listen: 127.0.0.1:{port}, public_url: '{base}/' }}\nsms:\n  gateways:\n    tw: {}\n    hook: {{ type: webhook, url: 'http://127.0.0.1:9/x', body: '{{\"to\":\"{{to}}\",\"b\":\"{{body}}\"}}' }}\n  default: tw\n",
        fake.gateway_yaml(TOKEN_ENV, "")
    );
    let vg = Voxgate::start(
        name,
        Options {
            flows: common::root().join("flows"),
            extra_config: &extra,
        },
    );
    let store = Store::open(&vg.dir.join("state/voxgate.db")).unwrap();
    Setup {
        vg,
        store,
        base,
        fake,
        config: extra.replace("{port}", "5060"),
    }
}

fn add(store: &Store, sid: &str) {
    store
        .add_delivery(&NewDelivery {
            code_id: Some("code-1"),
            channel: "sms",
            gateway: "tw",
            message_id: Some(sid),
            to_masked: "+1415•••0123",
            status: DeliveryStatus::Queued,
            error: None,
            at_ms: 1_000,
        })
        .unwrap();
}

fn statuses(store: &Store, sid: &str) -> (String, Vec<String>) {
    let d = store.delivery_by_message("tw", sid).unwrap().unwrap();
    (d.status, d.history.into_iter().map(|(s, _)| s).collect())
}

/// The log once it holds `needle` (the log is copied to its file by a
/// thread, so a line can lag its request a little).
fn wait_log(vg: &Voxgate, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = vg.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `{needle}` in the log:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn signed_receipts_are_recorded_with_history() {
    let s = start("receipts-signed");
    let sid = "SM0000000000000000000000000000a001";
    add(&s.store, sid);
    let url = format!("{}/sms/status/tw", s.base);
    let cb = |status: &'static str, err: &'static str| {
        vec![
            ("AccountSid", twilio::ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("ErrorCode", err),
            ("From", "+15005550006"),
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("SmsSid", sid),
            ("SmsStatus", status),
            ("To", "+14155550123"),
        ]
    };
    assert_eq!(
        send_status_callback(&url, Signing::With(TOKEN), &cb("sent", "")),
        204
    );
    assert_eq!(
        statuses(&s.store, sid),
        ("sent".into(), vec!["queued".into(), "sent".into()])
    );
    assert_eq!(
        send_status_callback(&url, Signing::With(TOKEN), &cb("undelivered", "30003")),
        204
    );
    let d = s.store.delivery_by_message("tw", sid).unwrap().unwrap();
    assert_eq!(d.status, "undelivered");
    assert_eq!(d.error.as_deref(), Some("30003"));
    assert_eq!(d.history.len(), 3);
    assert!(d.updated_at > 1_000, "the receipt's time is recorded");

    // An unknown status, signed: 400 and nothing recorded.
    assert_eq!(
        send_status_callback(&url, Signing::With(TOKEN), &cb("teleported", "")),
        400
    );
    assert_eq!(statuses(&s.store, sid).1.len(), 3);

    let log = wait_log(&s.vg, "delivery status recorded");
    assert!(log.contains("HTTP endpoint ready"), "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged");
    let (_, log) = s.vg.terminate();
    assert!(!log.contains(TOKEN));
}

/// The round trip: the gateway (built from serve's own config) sends
/// through the fake Twilio, which records the `StatusCallback` it was given;
/// a receipt signed for exactly that URL is taken by serve.
#[test]
fn a_receipt_to_the_gateways_status_callback_url_is_taken() {
    let s = start("receipts-roundtrip");
    let cfg = voxgate::config::Config::parse("serve.yaml", &s.config).unwrap();
    let sms = voxgate::backends::sms::build_with_env(&cfg.sms, &|n| {
        (n == TOKEN_ENV).then(|| TOKEN.to_string())
    })
    .unwrap();
    let (gateway, gw) = sms.gateway_for("").unwrap();
    let msg = voxgate::backends::sms::SmsMessage {
        to: voxgate::phone::normalise("+14155550123", Default::default()).unwrap(),
        body: zeroize::Zeroizing::new("Your code is 271828".into()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let accepted = rt.block_on(gw.send(&msg)).unwrap();
    let sid = accepted.message_id.unwrap();
    s.store
        .add_delivery(&NewDelivery {
            code_id: None,
            channel: "sms",
            gateway,
            message_id: Some(&sid),
            to_masked: "+1415•••0123",
            status: accepted.status,
            error: None,
            at_ms: 1_000,
        })
        .unwrap();
    let sent = s.fake.sent();
    let callback = sent[0].status_callback.clone().unwrap();
    assert_eq!(callback, format!("{}/sms/status/tw", s.base));
    let params = [
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "delivered"),
        ("AccountSid", twilio::ACCOUNT_SID),
    ];
    assert_eq!(
        send_status_callback(&callback, Signing::With(TOKEN), &params),
        204
    );
    assert_eq!(
        statuses(&s.store, &sid),
        (
            "delivered".into(),
            vec!["queued".into(), "delivered".into()]
        )
    );
}

#[test]
fn unsigned_and_wrongly_signed_receipts_are_refused() {
    let s = start("receipts-refused");
    let sid = "SM0000000000000000000000000000b002";
    add(&s.store, sid);
    let url = format!("{}/sms/status/tw", s.base);
    let params = [("MessageSid", sid), ("MessageStatus", "delivered")];
    assert_eq!(send_status_callback(&url, Signing::Unsigned, &params), 403);
    assert_eq!(send_status_callback(&url, Signing::Wrong, &params), 403);
    // Signed for another URL (another gateway's path): wrong here.
    let other = twilio::sign(TOKEN, &format!("{}/sms/status/hook", s.base), &params);
    assert_eq!(
        twilio::post_raw(
            &url,
            Some(&other),
            b"MessageSid=SM0000000000000000000000000000b002&MessageStatus=delivered"
        ),
        403
    );
    // A parameter changed after signing.
    let sig = twilio::sign(TOKEN, &url, &params);
    assert_eq!(
        twilio::post_raw(
            &url,
            Some(&sig),
            b"MessageSid=SM0000000000000000000000000000b002&MessageStatus=failed"
        ),
        403
    );
    assert_eq!(
        statuses(&s.store, sid),
        ("queued".into(), vec!["queued".into()]),
        "nothing recorded"
    );
    // The same callback signed right is taken.
    assert_eq!(
        send_status_callback(&url, Signing::With(TOKEN), &params),
        204
    );
    assert_eq!(statuses(&s.store, sid).0, "delivered");
    wait_log(&s.vg, "delivery receipt refused");
}

#[test]
fn unknown_message_gateway_and_oversized_bodies() {
    let s = start("receipts-unknown");
    let url = format!("{}/sms/status/tw", s.base);
    let params = [
        ("MessageSid", "SMffffffffffffffffffffffffffffffff"),
        ("MessageStatus", "delivered"),
    ];
    assert_eq!(
        send_status_callback(&url, Signing::With(TOKEN), &params),
        404
    );
    // No such gateway; a webhook gateway sends no receipts.
    for g in ["nope", "hook"] {
        let u = format!("{}/sms/status/{g}", s.base);
        assert_eq!(
            send_status_callback(&u, Signing::With(TOKEN), &params),
            404,
            "{g}"
        );
    }
    let big = vec![b'a'; 64 * 1024];
    assert_eq!(twilio::post_raw(&url, Some("x"), &big), 413);
}
