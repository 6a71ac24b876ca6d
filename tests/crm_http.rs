//! `HttpDirectory` (a CRM over HTTP as the caller directory) against a real
//! HTTP server on 127.0.0.1: request shape, answer → account mapping,
//! retries, the overall timeout, the cache, and chains of directories.

// Integration tests: helpers may unwrap (a failure should panic with the value).
#![allow(clippy::unwrap_used, unreachable_pub)]

mod http_server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_server::{Response, Server};
use serde_json::json;
use voxgate::backends::directory::http::HttpDirectory;
use voxgate::backends::directory::Chain;
use voxgate::backends::{Account, Directory, LookupQuery, ServiceError};
use voxgate::config::{HttpDirectoryConfig, HttpMethod};
use voxgate::phone::{self, Country};

const NUMBER: &str = "+14155550123";

fn query(brand: &str) -> LookupQuery {
    LookupQuery {
        number: phone::for_lookup(NUMBER, Country::default()).unwrap(),
        brand: brand.into(),
        directory: Some("crm".into()),
    }
}

fn cfg(url: String) -> HttpDirectoryConfig {
    HttpDirectoryConfig {
        url,
        method: HttpMethod::Get,
        body: None,
        headers: BTreeMap::new(),
        timeout: Duration::from_secs(3),
        retries: 2,
        retry_backoff: Duration::from_millis(20),
        fields: [
            ("id", "/customer/id"),
            ("name", "/customer/name"),
            ("tier", "/customer/tier"),
            ("vip", "/customer/vip"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect(),
        cache_ttl: None,
    }
}

fn dir(c: &HttpDirectoryConfig) -> HttpDirectory {
    HttpDirectory::new(c, Country::default()).unwrap()
}

fn found_answer() -> Response {
    Response::json(
        200,
        json!({ "customer": { "id": 42, "name": "Ann Example", "tier": "gold", "vip": true } }),
    )
}

fn failed(r: Result<Option<Account>, ServiceError>) -> String {
    match r {
        Err(ServiceError::Failed(m)) => m,
        other => panic!("expected Err(Failed), got {other:?}"),
    }
}

/// A handler answering `first` for the first `n` requests, then `then`.
fn first_n_then(
    n: usize,
    first: Response,
    then: Response,
) -> impl Fn(&http_server::Request) -> Response + Send + Sync + 'static {
    let seen = Arc::new(AtomicUsize::new(0));
    move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < n {
            first.clone()
        } else {
            then.clone()
        }
    }
}

#[tokio::test]
async fn found_maps_fields_and_sends_env_resolved_headers() {
    std::env::set_var("VOXGATE_CRM_HTTP_TEST_TOKEN_7F3A", "tok-found-123");
    let srv = Server::start(|_| found_answer());
    let mut c = cfg(srv.url("/api/customers?phone=${number}&brand=${brand}"));
    c.headers.insert(
        "Authorization".into(),
        "Bearer ${env.VOXGATE_CRM_HTTP_TEST_TOKEN_7F3A}".into(),
    );
    c.headers.insert("X-Source".into(), "ivr".into());
    let a = dir(&c).lookup(&query("acme co")).await.unwrap().unwrap();
    assert_eq!(
        a,
        Account::from(
            [
                ("id", "42"),
                ("name", "Ann Example"),
                ("tier", "gold"),
                ("vip", "true"),
                ("phone", NUMBER),
                ("brand", "acme co"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        )
    );

    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let q = &reqs[0];
    assert_eq!(q.method, "GET");
    assert_eq!(q.path, "/api/customers");
    assert_eq!(q.query, "phone=%2B14155550123&brand=acme%20co");
    assert_eq!(q.header("authorization"), Some("Bearer tok-found-123"));
    assert_eq!(q.header("x-source"), Some("ivr"));
    assert_eq!(q.header("accept"), Some("application/json"));
    assert!(q.body.is_empty());
}

#[tokio::test]
async fn a_missing_env_variable_fails_the_build_naming_it() {
    let mut c = cfg("http://127.0.0.1:9/x".into());
    c.headers.insert(
        "Authorization".into(),
        "Bearer ${env.VOXGATE_CRM_HTTP_TEST_SURELY_UNSET_91B2}".into(),
    );
    let e = HttpDirectory::new(&c, Country::default()).err().unwrap();
    assert!(e.contains("VOXGATE_CRM_HTTP_TEST_SURELY_UNSET_91B2"), "{e}");
    assert!(e.contains("Authorization"), "{e}");
}

#[tokio::test]
async fn the_crm_phone_and_brand_win_when_given() {
    let srv = Server::start(|_| {
        Response::json(
            200,
            json!({ "id": "c-1", "phone": "(415) 555-0199", "brand": "other" }),
        )
    });
    let mut c = cfg(srv.url("/c/${number}"));
    c.fields = [("id", "/id"), ("phone", "/phone"), ("brand", "/brand")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let a = dir(&c).lookup(&query("acme")).await.unwrap().unwrap();
    assert_eq!(a["id"], "c-1");
    assert_eq!(a["phone"], "+14155550199", "normalised to E.164");
    assert_eq!(a["brand"], "other");
    assert_eq!(srv.requests()[0].path, "/c/%2B14155550123");
}

#[tokio::test]
async fn not_found_is_none() {
    let srv = Server::start(|_| Response::text(404, "no such customer"));
    let r = dir(&cfg(srv.url("/c/${number}")))
        .lookup(&query("acme"))
        .await;
    assert_eq!(r, Ok(None));
    assert_eq!(srv.requests().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn null_answer_is_none() {
    let srv = Server::start(|_| Response::json(200, serde_json::Value::Null));
    let r = dir(&cfg(srv.url("/c/${number}")))
        .lookup(&query("acme"))
        .await;
    assert_eq!(r, Ok(None));
}

#[tokio::test]
async fn server_error_is_retried_then_found() {
    let srv = Server::start(first_n_then(1, Response::text(500, "boom"), found_answer()));
    let a = dir(&cfg(srv.url("/c/${number}")))
        .lookup(&query("acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a["id"], "42");
    assert_eq!(srv.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_beyond_the_retries_are_an_error() {
    let srv = Server::start(|_| Response::text(503, "down"));
    let m = failed(
        dir(&cfg(srv.url("/c/${number}")))
            .lookup(&query("acme"))
            .await,
    );
    assert!(m.contains("HTTP 503 from 127.0.0.1"), "{m}");
    assert_eq!(srv.requests().len(), 3, "one attempt and two retries");
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let srv = Server::start(|_| Response::text(400, "bad"));
    let m = failed(
        dir(&cfg(srv.url("/c/${number}")))
            .lookup(&query("acme"))
            .await,
    );
    assert!(m.contains("HTTP 400"), "{m}");
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    use std::io::{Read, Write};
    // The first connection is closed without an answer; the second is answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                drop(conn);
                continue;
            }
            let body = r#"{"customer":{"id":"r-1"}}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let a = dir(&cfg(format!("http://{addr}/c/${{number}}")))
        .lookup(&query("acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a["id"], "r-1");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_refused_is_an_error_without_the_number() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = failed(
        dir(&cfg(format!("http://127.0.0.1:{port}/c/${{number}}")))
            .lookup(&query("acme"))
            .await,
    );
    assert!(m.contains("cannot connect"), "{m}");
    assert!(
        !m.contains("4155550123"),
        "the number is not in errors: {m}"
    );
}

#[tokio::test]
async fn slow_answer_past_the_timeout_is_a_timeout() {
    let srv = Server::start(|_| Response {
        delay: Duration::from_secs(3),
        ..found_answer()
    });
    let mut c = cfg(srv.url("/c/${number}"));
    c.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let r = dir(&c).lookup(&query("acme")).await;
    let took = started.elapsed();
    assert!(
        matches!(&r, Err(ServiceError::Timeout(_))),
        "expected a timeout, got {r:?}"
    );
    assert!(took < 2 * c.timeout, "gave up in time ({took:?})");
}

#[tokio::test]
async fn garbage_answers_are_errors() {
    for (answer, what) in [
        (Response::text(200, "<html>oops</html>"), "not JSON"),
        (Response::json(200, json!([1, 2])), "an array"),
        (
            Response::json(200, json!({ "customer": {} })),
            "no account id",
        ),
    ] {
        let srv = Server::start(move |_| answer.clone());
        let m = failed(
            dir(&cfg(srv.url("/c/${number}")))
                .lookup(&query("acme"))
                .await,
        );
        assert!(m.contains("garbage") && m.contains(what), "{m}");
        assert_eq!(srv.requests().len(), 1, "garbage is not retried");
    }
}

#[tokio::test]
async fn post_sends_the_rendered_body() {
    let srv = Server::start(|_| Response::json(200, json!({ "customer": { "id": "p-7" } })));
    let mut c = cfg(srv.url("/search"));
    c.method = HttpMethod::Post;
    let mut body = serde_json::Map::new();
    body.insert("phone".into(), json!("${number}"));
    body.insert(
        "filter".into(),
        json!({ "brand": "${brand}", "active": true }),
    );
    c.body = Some(body);
    let a = dir(&c).lookup(&query("acme & co")).await.unwrap().unwrap();
    assert_eq!(a["id"], "p-7");
    let q = &srv.requests()[0];
    assert_eq!(q.method, "POST");
    assert_eq!(q.path, "/search");
    assert_eq!(q.header("content-type"), Some("application/json"));
    assert_eq!(
        q.json(),
        json!({ "phone": NUMBER, "filter": { "brand": "acme & co", "active": true } })
    );
}

#[tokio::test]
async fn cache_serves_answers_until_the_ttl() {
    let srv = Server::start(|_| found_answer());
    let mut c = cfg(srv.url("/c/${number}"));
    c.cache_ttl = Some(Duration::from_millis(300));
    let d = dir(&c);
    let first = d.lookup(&query("acme")).await.unwrap();
    let second = d.lookup(&query("acme")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(srv.requests().len(), 1, "the second lookup is cached");

    d.lookup(&query("other")).await.unwrap();
    assert_eq!(srv.requests().len(), 2, "another brand is another key");

    tokio::time::sleep(Duration::from_millis(400)).await;
    d.lookup(&query("acme")).await.unwrap();
    assert_eq!(srv.requests().len(), 3, "asked again after the ttl");
}

#[tokio::test]
async fn cache_keeps_not_found_but_not_errors() {
    let srv = Server::start(|_| Response::text(404, ""));
    let mut c = cfg(srv.url("/c/${number}"));
    c.cache_ttl = Some(Duration::from_secs(60));
    let d = dir(&c);
    assert_eq!(d.lookup(&query("acme")).await, Ok(None));
    assert_eq!(d.lookup(&query("acme")).await, Ok(None));
    assert_eq!(srv.requests().len(), 1);

    let srv = Server::start(|_| Response::text(400, ""));
    let mut c = cfg(srv.url("/c/${number}"));
    c.cache_ttl = Some(Duration::from_secs(60));
    let d = dir(&c);
    failed(d.lookup(&query("acme")).await);
    failed(d.lookup(&query("acme")).await);
    assert_eq!(srv.requests().len(), 2, "errors are not cached");
}

#[tokio::test]
async fn chain_asks_the_next_crm_after_not_found() {
    let missing = Server::start(|_| Response::text(404, ""));
    let having = Server::start(|_| found_answer());
    let chain = Chain::new(vec![
        (
            "first".into(),
            Arc::new(dir(&cfg(missing.url("/c/${number}")))) as Arc<dyn Directory>,
        ),
        (
            "second".into(),
            Arc::new(dir(&cfg(having.url("/c/${number}")))) as Arc<dyn Directory>,
        ),
    ]);
    let a = chain.lookup(&query("acme")).await.unwrap().unwrap();
    assert_eq!(a["id"], "42");
    assert_eq!(missing.requests().len(), 1);
    assert_eq!(having.requests().len(), 1);
}

#[tokio::test]
async fn chain_asks_the_next_crm_after_a_failing_one() {
    let broken = Server::start(|_| Response::text(500, "always"));
    let having = Server::start(|_| found_answer());
    let mut broken_cfg = cfg(broken.url("/c/${number}"));
    broken_cfg.retries = 1;
    let chain = Chain::new(vec![
        (
            "broken".into(),
            Arc::new(dir(&broken_cfg)) as Arc<dyn Directory>,
        ),
        (
            "second".into(),
            Arc::new(dir(&cfg(having.url("/c/${number}")))) as Arc<dyn Directory>,
        ),
    ]);
    let a = chain.lookup(&query("acme")).await.unwrap().unwrap();
    assert_eq!(a["id"], "42");
    assert_eq!(broken.requests().len(), 2, "one attempt and one retry");
    assert_eq!(having.requests().len(), 1);
}
