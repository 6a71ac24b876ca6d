//! End to end: blind transfer by REFER (RFC 3515) in `voxgate serve`. sipp
//! is the caller: it checks the REFER voxgate sends (the agent URI with the
//! flow's headers embedded in `Refer-To`, escaped; `Referred-By`), then
//! accepts or refuses it and reports the transfer's progress by NOTIFY.
//!
//! The test flows (`tests/flows_transfer/`) leave the transfer step's exit
//! as a step id in the call's events: `transferred`, `failed`, `broken`.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::UdpSocket;

use common::*;

fn start(name: &str) -> Voxgate {
    Voxgate::start(
        name,
        Options {
            flows: root().join("tests/flows_transfer"),
            // sipp sends no RTP: the call must not end for that meanwhile.
            extra_config: "rtp_timeout: 2m\n",
        },
    )
}

/// An even UDP port standing in for the caller's RTP (nothing reads it).
fn rtp_port() -> UdpSocket {
    (0..100)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .find(|s| s.local_addr().unwrap().port() % 2 == 0)
        .expect("an even RTP port")
}

/// One call from sipp running `scenario` to the flow `service`; the
/// scenario must pass. Returns the call's events.
fn call(vg: &Voxgate, scenario: &str, service: &str) -> Vec<serde_json::Value> {
    let rtp = rtp_port();
    let before = vg.read_events().len();
    let out = sipp(
        scenario,
        vg.sip,
        service,
        false,
        &[("rtp_listen", rtp.local_addr().unwrap().port().to_string())],
    );
    vg.expect_sipp_ok(&out, scenario);
    vg.call_events_since(before)
}

const ENDS: &[&str] = &["transferred", "failed", "broken"];

/// The `transfer_failed` event's status, and the reason the step logged.
fn failure(vg: &Voxgate, evs: &[serde_json::Value]) -> (Option<u64>, String) {
    let failed = events_named(evs, "transfer_failed");
    assert_eq!(failed.len(), 1, "{}", pretty(evs));
    let status = failed[0]["event"]["status"].as_u64();
    let log = vg.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("transfer failed"))
        .unwrap_or_else(|| panic!("no `transfer failed` line:\n{log}"));
    let reason = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("reason="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    (status, reason)
}

fn no_off_list_fields(vg: &Voxgate) {
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    assert_eq!(fields::events_file_problems(&raw), Vec::<String>::new());
    assert_eq!(fields::log_problems(&vg.log()), Vec::<String>::new());
}

/// 202, NOTIFY 100 then 200: the flow takes `success` and voxgate leaves
/// the call (sipp gets the BYE); sipp checked Refer-To and Referred-By.
#[test]
fn an_accepted_refer_with_a_2xx_sipfrag_transfers_and_hangs_up() {
    let vg = start("refer-accept");
    let evs = call(&vg, "refer_accept.xml", "transfer");
    assert_eq!(
        last_step_among(&evs, ENDS),
        "transferred",
        "{}",
        pretty(&evs)
    );
    let done = events_named(&evs, "transferred");
    assert_eq!(done.len(), 1, "{}", pretty(&evs));
    assert_eq!(done[0]["event"]["target"], "sip:agent@127.0.0.1:5099");
    assert!(vg.log().contains("REFER attempt ended"), "{}", vg.log());
    no_off_list_fields(&vg);
}

/// NOTIFY with `SIP/2.0 486 Busy Here`: `failure`, reason busy.
#[test]
fn a_busy_sipfrag_fails_the_transfer_as_busy() {
    let vg = start("refer-busy");
    let evs = call(&vg, "refer_busy.xml", "transfer");
    assert_eq!(last_step_among(&evs, ENDS), "failed", "{}", pretty(&evs));
    assert_eq!(failure(&vg, &evs), (Some(486), "busy".to_string()));
    no_off_list_fields(&vg);
}

/// The caller's side answers the REFER 603: `failure`, reason refused.
#[test]
fn a_refused_refer_fails_the_transfer_as_refused() {
    let vg = start("refer-decline");
    let evs = call(&vg, "refer_decline.xml", "transfer");
    assert_eq!(last_step_among(&evs, ENDS), "failed", "{}", pretty(&evs));
    assert_eq!(failure(&vg, &evs), (Some(603), "refused".to_string()));
    no_off_list_fields(&vg);
}

/// 202 and then silence: `failure`, reason no_answer, after the step's
/// timeout (2 s in the flow; not asserted, the machine may be slow).
#[test]
fn no_final_notify_within_the_timeout_is_no_answer() {
    let vg = start("refer-silent");
    let evs = call(&vg, "refer_silent.xml", "transfer_quick");
    assert_eq!(last_step_among(&evs, ENDS), "failed", "{}", pretty(&evs));
    assert_eq!(failure(&vg, &evs), (None, "no_answer".to_string()));
    no_off_list_fields(&vg);
}

/// The caller hangs up while the transfer runs: the flow ends as hung up
/// by the caller, no transfer outcome is claimed.
#[test]
fn a_caller_hanging_up_during_the_transfer_ends_the_flow() {
    let vg = start("refer-hangup");
    let evs = call(&vg, "refer_hangup.xml", "transfer_quick");
    assert_eq!(last_step_among(&evs, ENDS), "none", "{}", pretty(&evs));
    assert_eq!(
        events_named(&evs, "hung_up_by_caller").len(),
        1,
        "{}",
        pretty(&evs)
    );
    assert!(
        !evs.iter().any(|e| event_name(e).starts_with("transfer")),
        "{}",
        pretty(&evs)
    );
    no_off_list_fields(&vg);
}
