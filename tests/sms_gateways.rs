//! SMS gateways against real local HTTP servers: the Twilio gateway against
//! the fake Twilio (form, basic auth, parsing, retries on 5xx, none on 4xx,
//! timeouts), the JSON webhook gateway against the tiny test server.
//! Loopback only; no timing assertions (retries are counted in requests).

// Integration tests: helpers may unwrap and share `pub` items.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod twilio;

use std::time::Duration;

use twilio::{http_server, FakeTwilio};
use voxgate::backends::sms::{build_with_env, Sms, SmsMessage};
use voxgate::backends::ServiceError;
use voxgate::config::Config;
use voxgate::phone::{normalise, Country};
use voxgate::store::deliveries::DeliveryStatus;
use zeroize::Zeroizing;

const TOKEN: &str = "tok-0123456789abcdef";

/// The `sms:` section of `yaml` built, `TW_TOKEN` = [`TOKEN`], `K` = `key-1`.
fn build(yaml: &str) -> Sms {
    let cfg = Config::parse("test.yaml", yaml).unwrap();
    build_with_env(&cfg.sms, &|n| match n {
        "TW_TOKEN" => Some(TOKEN.to_string()),
        "K" => Some("key-1".to_string()),
        _ => None,
    })
    .unwrap()
}

fn msg(to: &str, body: &str) -> SmsMessage {
    SmsMessage {
        to: normalise(to, Country::default()).unwrap(),
        body: Zeroizing::new(body.to_string()),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A config with one Twilio gateway `tw` at `fake`; `extra` adds gateway fields.
fn twilio_yaml(fake: &FakeTwilio, extra: &str, http: bool) -> String {
    let http = if http {
        "http: { listen: 127.0.0.1:0, public_url: 'https://ivr.example.com/' }\n"
    } else {
        ""
    };
    format!(
        "{http}sms:\n  gateways:\n    tw: {}\n",
        fake.gateway_yaml("TW_TOKEN", extra)
    )
}

#[test]
fn twilio_send_posts_the_form_with_basic_auth_and_reads_the_sid() {
    let fake = FakeTwilio::start(TOKEN);
    let sms = build(&twilio_yaml(&fake, "", true));
    let (name, gw) = sms.gateway_for("acme").unwrap();
    assert_eq!(name, "tw");
    let body = "Your code is 123456 & it's yours";
    let accepted = rt().block_on(gw.send(&msg("+14155550123", body))).unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(accepted.message_id.as_deref(), Some(sent[0].sid.as_str()));
    assert!(sent[0].sid.starts_with("SM"));
    assert_eq!(accepted.status, DeliveryStatus::Queued);
    assert_eq!(sent[0].to, "+14155550123");
    assert_eq!(sent[0].from.as_deref(), Some("+15005550006"));
    assert_eq!(sent[0].body, body);
    assert_eq!(
        sent[0].status_callback.as_deref(),
        Some("https://ivr.example.com/sms/status/tw")
    );
    let req = &fake.requests()[0];
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(req.header("authorization").unwrap().starts_with("Basic "));
}

#[test]
fn twilio_without_http_endpoint_asks_no_callback_and_messaging_service() {
    let fake = FakeTwilio::start(TOKEN);
    let yaml = format!(
        "sms:\n  gateways:\n    tw: {{ type: twilio, base_url: '{}', account_sid: {}, auth_token_env: TW_TOKEN, messaging_service_sid: MG0001 }}\n",
        fake.base_url(),
        fake.account_sid
    );
    let sms = build(&yaml);
    let gw = sms.gateway("tw").unwrap();
    rt().block_on(gw.send(&msg("+14155550123", "code 1234")))
        .unwrap();
    let sent = fake.sent();
    assert_eq!(sent[0].status_callback, None);
    assert_eq!(sent[0].from, None);
    assert_eq!(sent[0].messaging_service_sid.as_deref(), Some("MG0001"));
}

#[test]
fn twilio_wrong_token_is_a_4xx_error() {
    let fake = FakeTwilio::start("another-token");
    let sms = build(&twilio_yaml(
        &fake,
        ", retries: 3, retry_backoff: 1ms",
        false,
    ));
    let gw = sms.gateway("tw").unwrap();
    let e = rt()
        .block_on(gw.send(&msg("+14155550123", "code 424242")))
        .unwrap_err();
    assert_eq!(
        e,
        ServiceError::Failed("SMS gateway `tw`: HTTP 401: Twilio error 20003: Authenticate".into())
    );
    assert_eq!(fake.requests().len(), 1, "no retry after a 4xx");
    assert!(fake.sent().is_empty());
}

#[test]
fn twilio_retries_5xx_then_succeeds() {
    let fake = FakeTwilio::start(TOKEN);
    let sms = build(&twilio_yaml(
        &fake,
        ", retries: 2, retry_backoff: 1ms",
        false,
    ));
    let gw = sms.gateway("tw").unwrap();
    fake.fail_next(2, 503);
    let a = rt()
        .block_on(gw.send(&msg("+14155550123", "code 1111")))
        .unwrap();
    assert_eq!(fake.requests().len(), 3, "two 503s, then the 201");
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(a.message_id.as_deref(), Some(fake.sent()[0].sid.as_str()));
}

#[test]
fn twilio_gives_up_after_its_retries() {
    let fake = FakeTwilio::start(TOKEN);
    let sms = build(&twilio_yaml(
        &fake,
        ", retries: 2, retry_backoff: 1ms",
        false,
    ));
    let gw = sms.gateway("tw").unwrap();
    fake.fail_next(10, 500);
    let e = rt()
        .block_on(gw.send(&msg("+14155550123", "code 2222")))
        .unwrap_err();
    assert_eq!(e, ServiceError::Failed("SMS gateway `tw`: HTTP 500".into()));
    assert_eq!(fake.requests().len(), 3, "1 attempt + 2 retries");
}

#[test]
fn twilio_4xx_carries_code_and_message_never_the_body() {
    let fake = FakeTwilio::start(TOKEN);
    let sms = build(&twilio_yaml(
        &fake,
        ", retries: 3, retry_backoff: 1ms",
        false,
    ));
    let gw = sms.gateway("tw").unwrap();
    fake.reject_next(
        5,
        400,
        21211,
        "The 'To' number +14155550123 is not a valid phone number. Body: code 987654",
    );
    let e = rt()
        .block_on(gw.send(&msg("+14155550123", "Your code is 987654")))
        .unwrap_err()
        .to_string();
    assert_eq!(fake.requests().len(), 1, "no retry after a 4xx");
    assert!(
        e.contains("HTTP 400: Twilio error 21211: The 'To' number"),
        "{e}"
    );
    assert!(!e.contains("987654"), "{e}");
    assert!(!e.contains("14155550123"), "{e}");
}

#[test]
fn twilio_attempt_timeout_is_retried_then_reported() {
    let fake = FakeTwilio::start(TOKEN);
    let sms = build(&twilio_yaml(
        &fake,
        ", timeout: 200ms, retries: 1, retry_backoff: 1ms",
        false,
    ));
    let gw = sms.gateway("tw").unwrap();
    fake.answer_slowly(Duration::from_secs(2));
    let e = rt()
        .block_on(gw.send(&msg("+14155550123", "code 3333")))
        .unwrap_err();
    assert!(matches!(e, ServiceError::Timeout(_)), "{e:?}");
    assert!(e.to_string().contains("`tw`"), "{e}");
    // The fake records a request before it waits: both attempts reached it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.requests().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn twilio_network_error_is_retried() {
    // A port nothing listens on: connection refused each time.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = format!(
        "sms:\n  gateways:\n    tw: {{ type: twilio, base_url: 'http://127.0.0.1:{port}', account_sid: {}, auth_token_env: TW_TOKEN, from: x, retries: 2, retry_backoff: 1ms }}\n",
        twilio::ACCOUNT_SID
    );
    let sms = build(&yaml);
    let e = rt()
        .block_on(
            sms.gateway("tw")
                .unwrap()
                .send(&msg("+14155550123", "code 4444")),
        )
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("SMS gateway `tw`: cannot connect"), "{e}");
}

#[test]
fn missing_token_variable_is_a_start_up_error() {
    let fake = FakeTwilio::start(TOKEN);
    let cfg = Config::parse("t.yaml", &twilio_yaml(&fake, "", false)).unwrap();
    let e = build_with_env(&cfg.sms, &|_| None).unwrap_err().to_string();
    assert_eq!(
        e,
        "sms.gateways.tw: environment variable `TW_TOKEN` (auth_token_env) is not set"
    );
}

fn webhook_yaml(url: &str, extra: &str) -> String {
    format!(
        "sms:\n  default: hook\n  gateways:\n    hook:\n      type: webhook\n      url: '{url}'\n      headers: {{ X-Api-Key: '${{env.K}}' }}\n      body: '{{\"to\": \"{{to}}\", \"text\": \"{{body}}\", \"sender\": \"Acme\"}}'\n      message_id: /result/id\n      retry_backoff: 1ms\n{extra}"
    )
}

#[test]
fn webhook_posts_the_json_body_and_reads_the_id() {
    let server = http_server::Server::start(|_| {
        http_server::Response::json(200, serde_json::json!({ "result": { "id": "m-77" } }))
    });
    let sms = build(&webhook_yaml(&server.url("/send"), ""));
    let (name, gw) = sms.gateway_for("").unwrap();
    assert_eq!(name, "hook");
    let text = "Code \"55\"\nthen \\ ünïcode";
    let a = rt().block_on(gw.send(&msg("+14155550123", text))).unwrap();
    assert_eq!(a.message_id.as_deref(), Some("m-77"));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/send");
    assert_eq!(reqs[0].header("x-api-key"), Some("key-1"));
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(
        reqs[0].json(),
        serde_json::json!({ "to": "+14155550123", "text": text, "sender": "Acme" })
    );
}

#[test]
fn webhook_retries_5xx_not_4xx() {
    let server = http_server::Server::start(|_| http_server::Response::text(502, "bad gateway"));
    let sms = build(&webhook_yaml(&server.url("/send"), "      retries: 3\n"));
    let e = rt()
        .block_on(
            sms.gateway("hook")
                .unwrap()
                .send(&msg("+14155550123", "c 1")),
        )
        .unwrap_err();
    assert_eq!(
        e,
        ServiceError::Failed("SMS gateway `hook`: HTTP 502".into())
    );
    assert_eq!(server.requests().len(), 4);

    let server = http_server::Server::start(|_| {
        http_server::Response::json(422, serde_json::json!({ "error": "code 123456 rejected" }))
    });
    let sms = build(&webhook_yaml(&server.url("/send"), "      retries: 3\n"));
    let e = rt()
        .block_on(
            sms.gateway("hook")
                .unwrap()
                .send(&msg("+14155550123", "c 123456")),
        )
        .unwrap_err();
    assert_eq!(
        e,
        ServiceError::Failed("SMS gateway `hook`: HTTP 422".into())
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn webhook_2xx_without_an_id_is_still_a_send() {
    let server = http_server::Server::start(|_| http_server::Response::text(202, "queued"));
    let sms = build(&webhook_yaml(&server.url("/send"), "      retries: 3\n"));
    let a = rt()
        .block_on(
            sms.gateway("hook")
                .unwrap()
                .send(&msg("+14155550123", "c 1")),
        )
        .unwrap();
    assert_eq!(a.message_id, None);
    assert_eq!(server.requests().len(), 1, "sent once, not retried");
}

#[test]
fn webhook_timeout() {
    let server = http_server::Server::start(|_| {
        let mut r = http_server::Response::json(200, serde_json::json!({ "result": { "id": 1 } }));
        r.delay = Duration::from_secs(2);
        r
    });
    let sms = build(&webhook_yaml(
        &server.url("/send"),
        "      retries: 0\n      timeout: 150ms\n",
    ));
    let e = rt()
        .block_on(
            sms.gateway("hook")
                .unwrap()
                .send(&msg("+14155550123", "c 1")),
        )
        .unwrap_err();
    assert!(matches!(e, ServiceError::Timeout(_)), "{e:?}");
}

#[test]
fn templates_and_brands_come_from_the_config() {
    let fake = FakeTwilio::start(TOKEN);
    let yaml = format!(
        "sms:\n  brands: {{ globex: tw2 }}\n  default: tw\n  brand_names: {{ acme: Acme Bank }}\n  templates:\n    '*': {{ en: '{{brand}}: {{code}} ({{minutes}} min)' }}\n    acme: {{ de: '{{brand}}-Code {{code}}, {{seconds}} s' }}\n  gateways:\n    tw: {}\n    tw2: {}\n",
        fake.gateway_yaml("TW_TOKEN", ""),
        fake.gateway_yaml("TW_TOKEN", "")
    );
    let sms = build(&yaml);
    assert_eq!(sms.gateway_for("globex").unwrap().0, "tw2");
    assert_eq!(sms.gateway_for("acme").unwrap().0, "tw");
    let t = &sms.templates;
    let ttl = Duration::from_secs(90);
    assert_eq!(
        t.render("acme", "en", "123456", ttl).as_str(),
        "Acme Bank: 123456 (2 min)"
    );
    assert_eq!(
        t.render("acme", "de", "123456", ttl).as_str(),
        "Acme Bank-Code 123456, 90 s"
    );
    assert_eq!(
        t.render("", "fr", "42", ttl).as_str(),
        "voxgate: 42 (2 min)"
    );
}
