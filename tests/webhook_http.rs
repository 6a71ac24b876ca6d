//! `HttpWebhook` (the webhook client `serve` uses) against a real HTTP server
//! on 127.0.0.1: request shape, answer → result mapping, limits, timeouts.

mod http_server;

use std::time::{Duration, Instant};

use http_server::{Response, Server};
use serde_json::json;
use voxgate::flow::services::{ServiceError, WebhookClient, WebhookRequest, WebhookResponse};
use voxgate::flow::webhook_http::{HttpWebhook, MAX_ANSWER_BYTES, MAX_VARIABLES};

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
