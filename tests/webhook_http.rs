//! `HttpWebhook` (the webhook client `serve` uses) against a real HTTP server
//! on 127.0.0.1: request shape, answer → result mapping, limits, timeouts.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod http_server;

use std::time::{Duration, Instant};

use http_server::{Response, Server};
use serde_json::json;
use voxgate::backends::webhook_http::{HttpWebhook, MAX_ANSWER_BYTES, MAX_VARIABLES};
use voxgate::backends::{ServiceError, WebhookClient, WebhookRequest, WebhookResponse};

fn call(req: WebhookRequest) -> Result<WebhookResponse, ServiceError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = HttpWebhook::new().expect("client");
        client.call(&req).await
    })
}

fn post(url: String) -> WebhookRequest {
    let mut body = serde_json::Map::new();
    body.insert("caller".into(), json!("+15551230001"));
    body.insert("lang".into(), json!("en"));
    WebhookRequest {
        url,
        post: true,
        headers: vec![("X-Api-Key".into(), "k-123".into())],
        body,
        timeout: Duration::from_secs(3),
    }
}

fn get(url: String) -> WebhookRequest {
    WebhookRequest {
        post: false,
        ..post(url)
    }
}

fn failed(r: Result<WebhookResponse, ServiceError>) -> String {
    match r {
        Err(ServiceError::Failed(m)) => m,
        other => panic!("expected Err(Failed), got {other:?}"),
    }
}

#[test]
fn post_sends_json_body_headers_and_query_and_returns_the_object() {
    let srv = Server::start(|_| Response::json(200, json!({ "tier": "gold", "open": true })));
    let r = call(post(srv.url("/crm/+15551230001?src=ivr&x=1"))).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({ "tier": "gold", "open": true }));

    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let q = &reqs[0];
    assert_eq!(q.method, "POST");
    assert_eq!(q.path, "/crm/+15551230001");
    assert_eq!(q.query, "src=ivr&x=1");
    assert_eq!(q.header("x-api-key"), Some("k-123"));
    assert_eq!(q.header("content-type"), Some("application/json"));
    assert_eq!(q.header("accept"), Some("application/json"));
    assert_eq!(
        q.header("user-agent"),
        Some(concat!("voxgate/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(q.json(), json!({ "caller": "+15551230001", "lang": "en" }));
}

#[test]
fn get_sends_no_body() {
    let srv = Server::start(|_| Response::json(200, json!({ "ok": "yes" })));
    let r = call(get(srv.url("/lookup?n=1"))).unwrap();
    assert_eq!(r.body, json!({ "ok": "yes" }));
    let q = &srv.requests()[0];
    assert_eq!(q.method, "GET");
    assert_eq!(q.path, "/lookup");
    assert_eq!(q.query, "n=1");
    assert!(q.body.is_empty());
    assert_eq!(q.header("content-type"), None);
    assert_eq!(q.header("x-api-key"), Some("k-123"));
}

#[test]
fn nested_json_object_is_returned_whole() {
    let answer = json!({ "account": { "tier": "gold", "limits": { "daily": 500 } }, "tags": ["a", "b"], "n": null });
    let a = answer.clone();
    let srv = Server::start(move |_| Response::json(201, a.clone()));
    let r = call(post(srv.url("/n"))).unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.body, answer);
}

#[test]
fn not_found_and_server_error_are_http_answers_not_errors() {
    for status in [404u16, 500, 503, 302] {
        let srv = Server::start(move |_| Response::text(status, "nope"));
        let r = call(post(srv.url("/x"))).unwrap();
        assert_eq!(r.status, status, "status {status} reaches the step");
        assert_eq!(r.body, serde_json::Value::Null);
    }
}

#[test]
fn slow_answer_beyond_the_timeout_is_a_timeout() {
    let srv = Server::start(|_| Response {
        delay: Duration::from_secs(3),
        ..Response::json(200, json!({ "late": "yes" }))
    });
    let started = Instant::now();
    let r = call(WebhookRequest {
        timeout: Duration::from_millis(500),
        ..post(srv.url("/slow"))
    });
    let took = started.elapsed();
    assert!(
        matches!(r, Err(ServiceError::Timeout(_))),
        "expected a timeout, got {r:?}"
    );
    assert!(took < Duration::from_secs(2), "gave up in time ({took:?})");
}

#[test]
fn connection_refused_is_an_error_with_the_reason() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = failed(call(post(format!("http://127.0.0.1:{port}/x"))));
    eprintln!("reason: {m}");
    assert!(m.contains("cannot connect"), "{m}");
    assert!(m.to_lowercase().contains("refused"), "{m}");
}

#[test]
fn invalid_json_is_an_error() {
    let srv = Server::start(|_| Response::text(200, "<html>oops</html>"));
    let m = failed(call(post(srv.url("/x"))));
    assert!(m.contains("not JSON"), "{m}");
}

#[test]
fn json_that_is_not_an_object_is_an_error() {
    let srv = Server::start(|_| Response::json(200, json!([1, 2, 3])));
    let m = failed(call(post(srv.url("/x"))));
    assert!(m.contains("an array but a JSON object is expected"), "{m}");
}

#[test]
fn oversized_answer_is_an_error_with_or_without_content_length() {
    let big = "x".repeat(MAX_ANSWER_BYTES + 10);
    for chunked in [false, true] {
        let b = big.clone();
        let srv = Server::start(move |_| Response {
            chunked,
            ..Response::json(200, json!({ "blob": b.clone() }))
        });
        let m = failed(call(post(srv.url("/big"))));
        assert!(m.contains("larger than 64 KiB"), "chunked={chunked}: {m}");
    }
}

#[test]
fn too_many_variables_is_an_error() {
    let mut obj = serde_json::Map::new();
    for i in 0..=MAX_VARIABLES {
        obj.insert(format!("f{i}"), json!(i));
    }
    let answer = serde_json::Value::Object(obj);
    let srv = Server::start(move |_| Response::json(200, answer.clone()));
    let m = failed(call(post(srv.url("/many"))));
    assert!(m.contains("at most 100"), "{m}");
}

#[test]
fn invalid_header_name_is_an_error_without_sending() {
    let srv = Server::start(|_| Response::json(200, json!({})));
    let m = failed(call(WebhookRequest {
        headers: vec![("Bad Header".into(), "secret-ish".into())],
        ..post(srv.url("/x"))
    }));
    assert!(m.contains("`Bad Header`"), "{m}");
    assert!(!m.contains("secret-ish"), "header values never appear: {m}");
    assert!(srv.requests().is_empty());
}

// ---------------------------------------------------------------------------
// A CRM answer cannot change engine-owned authentication state
// ---------------------------------------------------------------------------

mod crm_cannot_spoof {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::http_server::{Response, Server};
    use serde_json::json;
    use voxgate::backends::webhook_http::HttpWebhook;
    use voxgate::backends::{
        BoxFut, CodeCheck, CodeEntry, CodeRequest, CodeService, SendResult, ServiceError, Services,
        TotpCheck, TotpVerifier, Unavailable,
    };
    use voxgate::call::CallInfo;
    use voxgate::events::VecSink;
    use voxgate::flow::engine::run_flow;
    use voxgate::flow::load::{load_flow_lenient, load_flow_str};
    use voxgate::flow::testing::stubs::DirectoryStub;
    use voxgate::flow::testing::{Action, ScriptedCall};

    /// Every key a backend was asked about.
    type Seen = Arc<Mutex<Vec<String>>>;

    /// Records the code key and destination; every entered code is wrong.
    struct RecordingCodes(Seen);
    impl CodeService for RecordingCodes {
        fn send<'a>(
            &'a self,
            req: &'a CodeRequest,
        ) -> BoxFut<'a, Result<SendResult, ServiceError>> {
            self.0
                .lock()
                .unwrap()
                .push(format!("send {} to {}", req.call_id, req.targets[0].to));
            Box::pin(async {
                Ok(SendResult::Sent {
                    channel: voxgate::backends::CodeChannel::Sms,
                    to_masked: String::new(),
                    gateway: "test".into(),
                    message_id: None,
                    attempts: Vec::new(),
                })
            })
        }
        fn verify<'a>(
            &'a self,
            entry: CodeEntry<'a>,
        ) -> BoxFut<'a, Result<CodeCheck, ServiceError>> {
            self.0
                .lock()
                .unwrap()
                .push(format!("verify {}", entry.call_id));
            Box::pin(async { Ok(CodeCheck::Wrong) })
        }
    }

    /// Records the subject; every code is wrong.
    struct RecordingTotp(Seen);
    impl TotpVerifier for RecordingTotp {
        fn verify<'a>(
            &'a self,
            subject: &'a str,
            _code: &'a str,
            _window: u32,
            _now: std::time::SystemTime,
        ) -> BoxFut<'a, Result<TotpCheck, ServiceError>> {
            self.0.lock().unwrap().push(format!("totp {subject}"));
            Box::pin(async { Ok(TotpCheck::Wrong) })
        }
    }

    /// The flow under test; `into` is where the CRM answer goes.
    fn flow(url: &str, into: &str) -> String {
        let crm_headers = if into == "crm" {
            "        X-Crm-Auth: \"${crm.auth.result}\"\n        X-Crm-Account: \"${crm.account.id}\"\n"
        } else {
            ""
        };
        format!(
            r#"flow: crm_spoof
start: lookup
steps:
  lookup:
    lookup_caller: {{}}
    on: {{ found: crm, not_found: bye, error: bye }}
  crm:
    webhook: {{ url: "{url}", method: post, body: {{ caller: "${{caller}}" }}, into: {into} }}
    on: {{ success: send, failure: bye, timeout: bye, error: bye }}
  send:
    send_code: {{ channel: sms, to: "${{account.phone}}" }}
    on: {{ success: code, rate_limited: bye, error: bye }}
  code:
    verify_code: {{ prompts: [enter_code], tries: 1 }}
    on: {{ success: totp, failure: totp, expired: totp, no_input: totp, error: totp }}
  totp:
    verify_totp: {{ prompts: [enter_totp], tries: 1 }}
    on: {{ success: recheck, failure: recheck, no_input: recheck, error: recheck }}
  recheck:
    webhook: {{ url: "{url}", method: post, body: {{ caller: "${{caller}}" }}, into: {into} }}
    on: {{ success: agent, failure: bye, timeout: bye, error: bye }}
  agent:
    transfer:
      target: "sip:agents@127.0.0.1:5080"
      headers:
        X-Auth-Result: "${{auth.result}}"
        X-Auth-Method: "${{auth.method}}"
        X-Account-Id: "${{account.id}}"
        X-Caller: "${{caller}}"
        X-Trust: "${{caller.trust}}"
        X-Code-Channel: "${{code.channel}}"
{crm_headers}    on: {{ failure: bye, error: bye }}
  bye: {{ hangup: {{}} }}
"#
        )
    }

    struct Ran {
        out: voxgate::flow::engine::FlowOutcome,
        headers: BTreeMap<String, String>,
        seen: Vec<String>,
        requests: usize,
    }

    /// Run `flow` with a real CRM on 127.0.0.1 whose answer tries to pose as
    /// engine state, a known account, and wrong codes entered.
    fn run(flow: &voxgate::flow::model::Flow, srv: &Server) -> Ran {
        let seen: Seen = Arc::default();
        let mut accounts = BTreeMap::new();
        let mut acc = BTreeMap::new();
        acc.insert("id".to_string(), "ACC-1".to_string());
        acc.insert("phone".to_string(), "+15551230001".to_string());
        accounts.insert("+15551230001".to_string(), Some(acc));
        let services = Services {
            directory: Box::new(DirectoryStub {
                accounts,
                fail: false,
            }),
            codes: Box::new(RecordingCodes(seen.clone())),
            totp: Box::new(RecordingTotp(seen.clone())),
            passphrase: Box::new(Unavailable("no passphrase")),
            webhook: Box::new(HttpWebhook::new().expect("client")),
            handoff: Default::default(),
            default_country: Default::default(),
            speculate_after: None,
        };
        let info = CallInfo {
            call_id: "call-1".into(),
            caller: "+15551230001".into(),
            dialled: "bank".into(),
            ..Default::default()
        };
        let digits = |d: &str| Action::Digits {
            digits: d.into(),
            gap: std::time::Duration::from_millis(100),
        };
        let mut call = ScriptedCall::new(info, vec![digits("000000"), digits("111111")]);
        let mut sink = VecSink::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(run_flow(flow, &mut call, &services, &mut sink));
        assert_eq!(
            out.path,
            ["lookup", "crm", "send", "code", "totp", "recheck", "agent"],
            "{out:?}"
        );
        let headers = call.log.transfers[0].headers.iter().cloned().collect();
        let seen = seen.lock().unwrap().clone();
        Ran {
            out,
            headers,
            seen,
            requests: srv.requests().len(),
        }
    }

    /// What must hold whatever the CRM answered.
    fn engine_outcome_holds(r: &Ran) {
        // Asked before the verifications (subjects) and after them (results).
        assert_eq!(r.requests, 2, "the CRM was really asked");
        // Backends got their subject and code key from the engine, not the answer.
        assert_eq!(
            r.seen,
            ["send call-1 to +15551230001", "verify call-1", "totp ACC-1"]
        );
        // The outcome is the engine's: both verifications failed.
        let h = |n: &str| r.headers[n].as_str();
        assert_eq!(h("X-Auth-Result"), "failed");
        assert_eq!(h("X-Auth-Method"), "totp");
        assert_eq!(h("X-Account-Id"), "ACC-1");
        assert_eq!(h("X-Caller"), "+15551230001");
        assert_eq!(h("X-Trust"), "from_header");
        assert_eq!(h("X-Code-Channel"), "sms");
        let v = &r.out.vars;
        assert_eq!(v["auth.result"], "failed");
        assert_eq!(v["auth.method"], "totp");
        assert_eq!(v["account.id"], "ACC-1");
        assert_eq!(v["account.phone"], "+15551230001");
        assert_eq!(v["caller"], "+15551230001");
        assert_eq!(v["caller_trust"], "from_header");
        assert_eq!(v["call_id"], "call-1");
        assert_eq!(v["dialled"], "bank");
        assert_eq!(v["code.channel"], "sms");
    }

    fn spoofing_crm() -> Server {
        // Everything an attacker-controlled (or just buggy) CRM could try.
        Server::start(|_| {
            Response::json(
                200,
                json!({
                    "auth": { "result": "passed", "method": "totp" },
                    "auth.result": "passed",
                    "result": "passed",
                    "account": { "id": "EVIL-9", "phone": "+19990000000" },
                    "id": "EVIL-9",
                    "phone": "+19990000000",
                    "caller": "+19990000000",
                    "caller_trust": "high",
                    "code": { "channel": "voice" },
                    "channel": "voice",
                    "call_id": "someone-elses-call",
                    "dialled": "admin"
                }),
            )
        })
    }

    #[test]
    fn a_crm_answer_with_auth_account_and_caller_keys_changes_no_outcome() {
        let srv = spoofing_crm();
        let yaml = flow(&srv.url("/crm"), "crm");
        let flow = load_flow_str(Path::new("crm_spoof.yaml"), &yaml)
            .unwrap_or_else(|d| panic!("flow loads: {d:?}"));
        let r = run(&flow, &srv);
        engine_outcome_holds(&r);
        // The answer is still there, under its own prefix only.
        assert_eq!(r.headers["X-Crm-Auth"], "passed");
        assert_eq!(r.headers["X-Crm-Account"], "EVIL-9");
        assert_eq!(r.out.vars["crm.caller"], "+19990000000");
        assert_eq!(r.out.vars["crm.call_id"], "someone-elses-call");
        assert!(!r.out.vars.contains_key("crm"), "{:?}", r.out.vars);
    }

    /// The loader refuses `into: auth` / `into: account`; were a flow run
    /// anyway, the engine still keeps the answer out of its state.
    #[test]
    fn engine_state_holds_even_if_a_refused_prefix_ran() {
        for into in ["auth", "account", "code", "caller"] {
            let srv = spoofing_crm();
            let yaml = flow(&srv.url("/crm"), into);
            let (flow, diags) = load_flow_lenient(Path::new("crm_spoof.yaml"), &yaml);
            assert_eq!(diags.len(), 2, "both webhooks refused: {diags:#?}");
            let r = run(&flow.expect("flow loads leniently"), &srv);
            engine_outcome_holds(&r);
        }
    }

    #[test]
    fn a_flow_cannot_name_engine_state_as_the_answers_prefix() {
        let yaml = flow("http://127.0.0.1:9/x", "auth");
        let diags = load_flow_str(Path::new("crm_spoof.yaml"), &yaml).unwrap_err();
        let msgs: Vec<String> = diags.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(
            msgs[0].starts_with("crm_spoof.yaml:8:")
                && msgs[0].contains("`into: auth` would write everything under `auth.`"),
            "{msgs:#?}"
        );
    }
}
