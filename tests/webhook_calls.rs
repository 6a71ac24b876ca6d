//! End to end: a sipp call into `voxgate serve` runs a flow whose `webhook`
//! step calls a local HTTP server (127.0.0.1), then branches on the answer.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;
mod http_server;

use std::time::Duration;

use common::*;
use http_server::{Response, Server};
use serde_json::json;

fn flow(name: &str, url: &str) -> String {
    format!(
        r#"flow: {name}
start: crm
steps:
  crm:
    webhook:
      url: "{url}"
      method: post
      headers: {{ X-Api-Key: "test-key" }}
      body: {{ caller: "${{caller}}", dialled: "${{dialled}}" }}
      timeout: 3s
      into: crm
    on: {{ success: route, failure: failed, timeout: bye, error: bye }}
  route:
    branch:
      - if: 'crm.account.tier == "gold"'
        goto: gold
      - else: bye
  failed:
    branch:
      - if: 'crm.status == 404'
        goto: unknown
      - else: bye
  gold:
    play: [goodbye]
    next: bye
  unknown:
    play: [goodbye]
    next: bye
  bye:
    hangup: {{}}
"#
    )
}

fn call_flow(vg: &Voxgate, service: &str) -> Vec<serde_json::Value> {
    let sink = RtpSink::new();
    let out = sipp(
        "silent.xml",
        vg.sip,
        service,
        false,
        &[("rtp_listen", sink.port().to_string())],
    );
    vg.expect_sipp_ok(&out, "call");
    vg.wait_call_end()
}

fn entered(evs: &[serde_json::Value]) -> Vec<String> {
    events_named(evs, "step_entered")
        .iter()
        .map(|e| e["event"]["step"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn serve_calls_the_webhook_and_branches_on_its_answer() {
    let srv = Server::start(|req| {
        if req.path.starts_with("/crm/") {
            Response::json(
                200,
                json!({ "account": { "tier": "gold", "id": 42 }, "name": "Ada" }),
            )
        } else {
            Response::text(404, "no such account")
        }
    });
    let flows = scratch("webhook-flows");
    std::fs::write(
        flows.join("hook.yaml"),
        flow("hook", &srv.url("/crm/${caller}?src=sip")),
    )
    .unwrap();
    std::fs::write(
        flows.join("hook404.yaml"),
        flow("hook404", &srv.url("/missing/${caller}")),
    )
    .unwrap();
    let vg = Voxgate::start(
        "webhook-e2e",
        Options {
            flows,
            extra_config: "",
        },
    );

    // 200 with a JSON object → success → branch on crm.account.tier.
    let evs = call_flow(&vg, "hook");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let q = &reqs[0];
    assert_eq!(q.method, "POST");
    // Template values are percent-encoded: the plus survives any server's decoding.
    assert_eq!(q.path, "/crm/%2B15551230001", "caller number in the URL");
    assert_eq!(q.query, "src=sip");
    assert_eq!(q.header("x-api-key"), Some("test-key"));
    assert_eq!(q.json()["caller"], "+15551230001");
    assert_eq!(q.json()["dialled"], "hook");
    let ok = events_named(&evs, "webhook_ok");
    assert_eq!(ok.len(), 1, "{}", pretty(&evs));
    assert_eq!(ok[0]["event"]["status"], 200);
    assert!(
        evs.iter().any(|e| event_name(e) == "step_left"
            && e["event"]["step"] == "crm"
            && e["event"]["exit"] == "success"),
        "{}",
        pretty(&evs)
    );
    assert_eq!(
        entered(&evs),
        ["crm", "route", "gold", "bye"],
        "{}",
        pretty(&evs)
    );

    // 404 → failure, with crm.status = 404 for the flow to branch on.
    let before = evs.len();
    let _ = call_flow(&vg, "hook404");
    let all = vg.wait_events("the second call to end", Duration::from_secs(30), |evs| {
        evs.iter()
            .filter(|e| event_name(e).starts_with("hung_up"))
            .count()
            >= 2
    });
    let evs = &all[before..];
    let q = &srv.requests()[1];
    assert_eq!(q.path, "/missing/%2B15551230001");
    let failed = events_named(evs, "webhook_failed");
    assert_eq!(failed.len(), 1, "{}", pretty(evs));
    assert_eq!(failed[0]["event"]["status"], 404);
    assert_eq!(
        entered(evs),
        ["crm", "failed", "unknown", "bye"],
        "{}",
        pretty(evs)
    );
}
