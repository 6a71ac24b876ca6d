//! End to end: sipp calls into `voxgate serve` whose flow looks the caller up
//! in a real SQLite account store (seeded through the library before serve
//! starts): by the From user, by a P-Asserted-Identity from a trusted peer
//! (and not from any other), never for a withheld number, by a number keyed
//! in by DTMF, and per brand when one number is on file in several brands.
//!
//! The test flows (`tests/flows_lookup/`) leave a trail of step ids in the
//! call's events: `found_<account id>` or `no_account`, then
//! `trust_<caller.trust>`.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;
mod http_server;

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use common::*;
use voxgate::phone::{normalise, Country};
use voxgate::store::{NewAccount, Store};

/// Real, valid numbers (libphonenumber refuses 555 area codes).
const NUM_A: &str = "+16502530000";
const NUM_B: &str = "+16502530001";
const NUM_UK: &str = "+442079460018";
/// Valid, but on file nowhere.
const NUM_UNKNOWN: &str = "+16502530009";

/// The one log line an ignored P-Asserted-Identity leaves.
const PAI_IGNORED: &str = "P-Asserted-Identity from a peer not in trusted_peers; ignored";

/// A header line that says nothing about identity (the scenario needs one).
const NO_IDENTITY: &str = "X-Identity: none";

/// Add accounts `(id, brand, phone)` to the database at `db`, through the library.
fn seed(db: &Path, accounts: &[(&str, &str, &str)]) {
    let store = Store::open(db).unwrap();
    for (id, brand, phone) in accounts {
        let acct = NewAccount {
            id: Some((*id).to_string()),
            brand: (*brand).to_string(),
            phone: Some(normalise(phone, Country::default()).unwrap()),
            name: Some(format!("Test {id}")),
            ..NewAccount::default()
        };
        assert_eq!(store.add(&acct, None).unwrap(), *id);
    }
}

/// `serve` on the test flows with a database seeded with `accounts` before it
/// starts; `extra` is more config.
fn start(name: &str, extra: &str, accounts: &[(&str, &str, &str)]) -> Voxgate {
    let db = scratch(&format!("{name}-db")).join("accounts.db");
    seed(&db, accounts);
    let config = format!("database: \"{}\"\n{extra}", db.display());
    Voxgate::start(
        name,
        Options {
            flows: root().join("tests/flows_lookup"),
            extra_config: &config,
        },
    )
}

/// An even UDP port on `ip` standing in for the caller's RTP (nothing reads
/// it: the flows play nothing); kept bound for the call.
fn rtp_port(ip: &str) -> UdpSocket {
    (0..100)
        .map(|_| UdpSocket::bind((ip, 0)).unwrap())
        .find(|s| s.local_addr().unwrap().port() % 2 == 0)
        .expect("an even RTP port")
}

/// One call to `service` from sipp bound to `local_ip`, with From user
/// `from_user` and the INVITE header line `identity`; returns this call's
/// events (calls on one voxgate run one after the other).
fn call(
    vg: &Voxgate,
    service: &str,
    local_ip: &str,
    from_user: &str,
    identity: &str,
) -> Vec<serde_json::Value> {
    let rtp = rtp_port(local_ip);
    let dir = scratch("lookup-sipp");
    let keys = [
        ("rtp_listen", rtp.local_addr().unwrap().port().to_string()),
        ("from_user", from_user.to_string()),
        ("identity", identity.to_string()),
    ];
    this_call(vg, || {
        let out = sipp_from(
            &dir,
            "identity.xml",
            vg.sip,
            service,
            false,
            local_ip,
            &keys,
        );
        vg.expect_sipp_ok(&out, &format!("call from {from_user} ({identity})"));
    })
}

/// The events of the one call `place` makes, up to its hang-up.
fn this_call(vg: &Voxgate, place: impl FnOnce()) -> Vec<serde_json::Value> {
    let before = vg.read_events().len();
    place();
    // A deadline, not a timing claim: the shipped flows' calls run ~30 s.
    let all = vg.wait_events("the call to end", Duration::from_secs(60), |evs| {
        evs.iter()
            .skip(before)
            .any(|e| event_name(e).starts_with("hung_up"))
    });
    all[before..].to_vec()
}

/// The steps the call entered, in order.
fn entered(evs: &[serde_json::Value]) -> Vec<String> {
    events_named(evs, "step_entered")
        .iter()
        .map(|e| e["event"]["step"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The exit the step `step` left by (its first visit).
fn exit_of(evs: &[serde_json::Value], step: &str) -> String {
    evs.iter()
        .find(|e| event_name(e) == "step_left" && e["event"]["step"] == step)
        .and_then(|e| e["event"]["exit"].as_str())
        .unwrap_or_else(|| panic!("step `{step}` never left:\n{}", pretty(evs)))
        .to_string()
}

/// The path of the `lookup` flow: the account found (`found_<id>`) or
/// `no_account`, then the caller's trust (`trust_<trust>`).
fn lookup_path(outcome: &str, trust: &str) -> Vec<String> {
    let mut p = vec!["lookup"];
    if outcome != "no_account" {
        p.push("which");
    }
    p.extend([outcome, "trust", trust, "bye"]);
    p.into_iter().map(str::to_string).collect()
}

/// Assert the call took the `lookup` flow's path for `outcome` and `trust`.
fn assert_path(evs: &[serde_json::Value], outcome: &str, trust: &str, what: &str) {
    assert_eq!(
        entered(evs),
        lookup_path(outcome, trust),
        "{what}:\n{}",
        pretty(evs)
    );
    let exit = if outcome == "no_account" {
        "not_found"
    } else {
        "found"
    };
    assert_eq!(exit_of(evs, "lookup"), exit, "{what}:\n{}", pretty(evs));
    assert!(
        events_named(evs, "error").is_empty(),
        "{what}: no step failed:\n{}",
        pretty(evs)
    );
}

#[test]
fn known_caller_is_found_by_the_from_header() {
    // `state_dir:` only: the database is `<state_dir>/voxgate.db`.
    let state = scratch("from-state");
    seed(
        &state.join("voxgate.db"),
        &[("acct_a", "", NUM_A), ("acct_uk", "", NUM_UK)],
    );
    let config = format!("state_dir: \"{}\"\n", state.display());
    let vg = Voxgate::start(
        "lookup-from",
        Options {
            flows: root().join("tests/flows_lookup"),
            extra_config: &config,
        },
    );
    assert!(
        vg.log().contains("accounts=2"),
        "serve opened the seeded store:\n{}",
        vg.log()
    );

    let evs = call(&vg, "lookup", "127.0.0.1", NUM_A, NO_IDENTITY);
    assert_path(&evs, "found_acct_a", "trust_from_header", "From +1 650…");
    // National format: normalised with the default country (US).
    let evs = call(&vg, "lookup", "127.0.0.1", "6502530000", NO_IDENTITY);
    assert_path(&evs, "found_acct_a", "trust_from_header", "From 650… (US)");
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_UK, NO_IDENTITY);
    assert_path(&evs, "found_acct_uk", "trust_from_header", "From +44…");
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_UNKNOWN, NO_IDENTITY);
    assert_path(&evs, "no_account", "trust_from_header", "unknown From");
}

#[test]
fn asserted_identity_from_a_trusted_peer_is_looked_up() {
    let vg = start(
        "lookup-pai-trusted",
        "trusted_peers: [127.0.0.2/32]\n",
        &[("acct_a", "", NUM_A), ("acct_b", "", NUM_B)],
    );
    // The From is on file nowhere; the carrier asserts account B's number.
    let evs = call(
        &vg,
        "lookup",
        "127.0.0.2",
        NUM_UNKNOWN,
        &format!("P-Asserted-Identity: \"Bob\" <sip:{NUM_B}@carrier.example;user=phone>"),
    );
    assert_path(
        &evs,
        "found_acct_b",
        "trust_pai_trusted",
        "trusted sip: PAI",
    );
    // A tel: identity with visual separators, From = another known account:
    // the asserted identity wins.
    let evs = call(
        &vg,
        "lookup",
        "127.0.0.2",
        NUM_A,
        "P-Asserted-Identity: <tel:+1-650-253-0001>",
    );
    assert_path(
        &evs,
        "found_acct_b",
        "trust_pai_trusted",
        "trusted tel: PAI",
    );
    assert!(
        !vg.log().contains(PAI_IGNORED),
        "a trusted peer's PAI is not ignored:\n{}",
        vg.log()
    );
    assert!(
        vg.log().contains("trust=\"pai_trusted\""),
        "the answering log line says the trust:\n{}",
        vg.log()
    );
}

#[test]
fn asserted_identity_from_an_untrusted_peer_is_ignored() {
    let vg = start(
        "lookup-pai-untrusted",
        "trusted_peers: [127.0.0.2/32]\n",
        &[("acct_a", "", NUM_A), ("acct_b", "", NUM_B)],
    );
    let pai = format!("P-Asserted-Identity: <sip:{NUM_B}@carrier.example>");
    // From 127.0.0.1 (not trusted): the unknown From is looked up, not the PAI.
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_UNKNOWN, &pai);
    assert_path(&evs, "no_account", "trust_from_header", "untrusted PAI");
    assert!(
        vg.log().contains(PAI_IGNORED) && vg.log().contains("source=127.0.0.1"),
        "the log says the PAI was ignored:\n{}",
        vg.log()
    );
    // And a known From is found as itself, whatever the PAI claims.
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_A, &pai);
    assert_path(
        &evs,
        "found_acct_a",
        "trust_from_header",
        "untrusted PAI, known From",
    );
}

#[test]
fn withheld_caller_ids_find_no_account() {
    let vg = start(
        "lookup-anonymous",
        "",
        &[("acct_a", "", NUM_A), ("acct_plain", "", "+16502530002")],
    );
    let evs = call(&vg, "lookup", "127.0.0.1", "anonymous", NO_IDENTITY);
    assert_path(&evs, "no_account", "trust_anonymous", "From anonymous");
    // A known number that asks for privacy is not looked up either.
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_A, "Privacy: id");
    assert_path(&evs, "no_account", "trust_anonymous", "Privacy: id");
    let withheld = vg
        .log()
        .matches("no caller number to look up (withheld)")
        .count();
    assert_eq!(withheld, 2, "no query for either call:\n{}", vg.log());
    // The same number without privacy is on file (the calls above could
    // otherwise pass on a broken store).
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_A, "Privacy: none");
    assert_path(&evs, "found_acct_a", "trust_from_header", "Privacy: none");
}

#[test]
fn unknown_caller_keys_a_known_number() {
    let vg = start(
        "lookup-keyed",
        "",
        &[("acct_a", "", NUM_A), ("acct_b", "", NUM_B)],
    );
    let rtp = rtp_port("127.0.0.1");
    let dir = scratch("lookup-keyed-sipp");
    let evs = this_call(&vg, || {
        let out = sipp_in(
            &dir,
            "identity_dtmf.xml",
            vg.sip,
            "keyed",
            false,
            &[
                ("rtp_listen", rtp.local_addr().unwrap().port().to_string()),
                ("from_user", NUM_UNKNOWN.to_string()),
                ("dtmf", "6502530001#".to_string()),
            ],
        );
        vg.expect_sipp_ok(&out, "keyed call");
    });
    assert_eq!(
        entered(&evs),
        [
            "lookup",
            "ask_number",
            "lookup_entered",
            "which",
            "found_acct_b",
            "bye"
        ],
        "{}",
        pretty(&evs)
    );
    assert_eq!(exit_of(&evs, "lookup"), "not_found");
    assert_eq!(exit_of(&evs, "lookup_entered"), "found");
    let digits = events_named(&evs, "digits");
    assert_eq!(digits.len(), 1, "{}", pretty(&evs));
    assert_eq!(digits[0]["event"]["digits"], "6502530001");
}

#[test]
fn each_brand_finds_its_own_account_for_one_number() {
    let routes = "routes:\n  \"18005550100\": { flow: lookup, brand: acme }\n  \"18005550101\": { flow: lookup, brand: globex }\n";
    let vg = start(
        "lookup-brands",
        routes,
        &[
            ("acct_acme", "acme", NUM_A),
            ("acct_globex", "globex", NUM_A),
            ("acct_a", "", NUM_A),
            ("acct_b", "acme", NUM_B),
        ],
    );
    let evs = call(&vg, "18005550100", "127.0.0.1", NUM_A, NO_IDENTITY);
    assert_path(&evs, "found_acct_acme", "trust_from_header", "acme line");
    let evs = call(&vg, "18005550101", "127.0.0.1", NUM_A, NO_IDENTITY);
    assert_path(
        &evs,
        "found_acct_globex",
        "trust_from_header",
        "globex line",
    );
    // B is on file in acme only: globex's line does not find it.
    let evs = call(&vg, "18005550101", "127.0.0.1", NUM_B, NO_IDENTITY);
    assert_path(
        &evs,
        "no_account",
        "trust_from_header",
        "acme's number on globex",
    );
    let evs = call(&vg, "18005550100", "127.0.0.1", NUM_B, NO_IDENTITY);
    assert_path(
        &evs,
        "found_acct_b",
        "trust_from_header",
        "acme's number on acme",
    );
    // The flow reached by name has no brand: the brandless account.
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_A, NO_IDENTITY);
    assert_path(&evs, "found_acct_a", "trust_from_header", "no brand");
}

/// The shipped flows, served as `scripts/serve.sh` serves them, find real
/// accounts: a known bank caller reaches the passphrase step (which takes
/// `error` honestly until the passphrase backend lands), a known clinic
/// patient reaches the choice of date of birth or authenticator code, and an
/// unknown caller is asked for a number (bank) or sent to the front desk
/// (clinic). The lookup event carries the outcome and the latency.
#[test]
fn shipped_flows_find_real_accounts() {
    let db = scratch("shipped-db").join("accounts.db");
    seed(&db, &[("ACC-7", "", NUM_A)]);
    let config = format!("database: \"{}\"\n", db.display());
    let vg = Voxgate::start(
        "lookup-shipped",
        Options {
            flows: root().join("flows"),
            extra_config: &config,
        },
    );
    let evs = call(&vg, "bank", "127.0.0.1", NUM_A, NO_IDENTITY);
    assert_eq!(exit_of(&evs, "lookup"), "found", "{}", pretty(&evs));
    let steps = entered(&evs);
    assert!(steps.contains(&"passphrase".to_string()), "{steps:?}");
    assert!(!steps.contains(&"ask_number".to_string()), "{steps:?}");
    let lookup = events_named(&evs, "lookup");
    assert_eq!(lookup.len(), 1, "{}", pretty(&evs));
    assert_eq!(lookup[0]["event"]["outcome"], "found");
    assert_eq!(lookup[0]["event"]["trust"], "from_header");
    assert!(lookup[0]["event"]["micros"].as_u64().is_some());

    let evs = call(&vg, "clinic", "127.0.0.1", NUM_A, NO_IDENTITY);
    assert_eq!(exit_of(&evs, "lookup"), "found", "{}", pretty(&evs));
    assert!(
        entered(&evs).contains(&"choose".to_string()),
        "{}",
        pretty(&evs)
    );
    let evs = call(&vg, "clinic", "127.0.0.1", NUM_UNKNOWN, NO_IDENTITY);
    assert_eq!(exit_of(&evs, "lookup"), "not_found", "{}", pretty(&evs));
    assert!(!entered(&evs).contains(&"choose".to_string()));
    // No secret and no field outside the allow-list in events or log.
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    assert_eq!(fields::events_file_problems(&raw), Vec::<String>::new());
    assert_eq!(fields::log_problems(&vg.log()), Vec::<String>::new());
}

/// A CRM over HTTP as the directory, through whole calls: found, 404 (not
/// found), 500 then found on the retry, garbage and an answer slower than the
/// timeout (both the step's `error` exit, the slow one without waiting for it).
#[test]
fn a_crm_over_http_answers_lookups_in_serve() {
    use http_server::{Response, Server};
    use std::sync::atomic::{AtomicU32, Ordering};
    let flaky = std::sync::Arc::new(AtomicU32::new(0));
    let f = flaky.clone();
    let crm = Server::start(move |req| {
        let n = req
            .query
            .strip_prefix("n=")
            .unwrap_or("")
            .replace("%2B", "+");
        let found = |id: &str| {
            Response::json(
                200,
                serde_json::json!({ "customer": { "id": id, "name": "CRM" } }),
            )
        };
        match n.as_str() {
            NUM_A => found("acct_a"),
            NUM_B if f.fetch_add(1, Ordering::SeqCst) == 0 => Response::text(500, "busy"),
            NUM_B => found("acct_b"),
            NUM_UK => {
                let mut r = found("acct_uk");
                r.delay = Duration::from_secs(5);
                r
            }
            "+16502530002" => Response::text(200, "<html>not json</html>"),
            _ => Response::text(404, "no such customer"),
        }
    });
    let config = format!(
        "lookup: crm\ndirectories:\n  crm:\n    type: http\n    url: \"{}?n=${{number}}\"\n    timeout: 1s\n    retries: 2\n    retry_backoff: 50ms\n    fields: {{ id: /customer/id, name: /customer/name }}\n",
        crm.url("/customers")
    );
    let vg = start("lookup-crm", &config, &[]);
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_A, NO_IDENTITY);
    assert_path(&evs, "found_acct_a", "trust_from_header", "CRM found");
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_UNKNOWN, NO_IDENTITY);
    assert_path(&evs, "no_account", "trust_from_header", "CRM 404");
    let evs = call(&vg, "lookup", "127.0.0.1", NUM_B, NO_IDENTITY);
    assert_path(
        &evs,
        "found_acct_b",
        "trust_from_header",
        "CRM 500 then 200",
    );
    assert_eq!(flaky.load(Ordering::SeqCst), 2, "one retry after the 500");
    for (number, what) in [("+16502530002", "garbage"), (NUM_UK, "slow")] {
        let evs = call(&vg, "lookup", "127.0.0.1", number, NO_IDENTITY);
        assert_eq!(
            exit_of(&evs, "lookup"),
            "error",
            "{what}:\n{}",
            pretty(&evs)
        );
        assert!(
            entered(&evs).contains(&"lookup_failed".to_string()),
            "{what}"
        );
        let ev = &events_named(&evs, "lookup")[0]["event"];
        assert_eq!(ev["outcome"], "error", "{what}");
        // The slow CRM answers after 5 s; the step did not wait for it.
        assert!(ev["micros"].as_u64().unwrap() < 4_000_000, "{what}: {ev}");
    }
    assert!(
        vg.log().contains("caller directory"),
        "the reason is logged"
    );
}
