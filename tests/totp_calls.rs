//! Authenticator-app codes over whole calls: accounts are enrolled with a
//! known base32 secret through the `voxgate accounts` CLI, `voxgate serve`
//! runs the test flow (`tests/flows_totp/totp.yaml`), and sipp calls from the
//! account's number and keys (RFC 4733) the code `oathtool` prints for the
//! secret. The code passes once; the same code again is refused as already
//! used; wrong codes counted across calls lock the account's TOTP; a SHA-256,
//! 8-digit enrolment passes with its own code; a caller without an account
//! is refused without a check. Neither the secret (base32 or raw) nor a
//! keyed code appears in the database, its WAL, the log or the events.
//!
//! The codes come from `oathtool` (Debian `oathtool`; scripts/test.sh
//! installs it), which also cross-checks the library's codes.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;
use voxgate::backends::totp::code_at;
use voxgate::store::{TotpAlgorithm, TotpParams};

/// Real, valid numbers (libphonenumber refuses 555 area codes).
const NUM_A: &str = "+16502530000";
const NUM_B: &str = "+16502530001";
/// Valid, but on file nowhere.
const NUM_UNKNOWN: &str = "+16502530009";

/// 20 random bytes, as base32 (what an authenticator app is given).
fn new_secret() -> (Vec<u8>, String) {
    let raw: Vec<u8> = (0..20).map(|_| rand::random::<u8>()).collect();
    let b32 = data_encoding::BASE32_NOPAD.encode(&raw);
    (raw, b32)
}

fn oathtool(args: &[&str]) -> String {
    let out = Command::new("oathtool")
        .args(args)
        .output()
        .expect("run oathtool (apt-get install oathtool; scripts/test.sh does)");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The code `oathtool` gives now for `b32` under `alg` with `digits`.
fn oath_now(b32: &str, alg: &str, digits: u32) -> String {
    oathtool(&[
        &format!("--totp={alg}"),
        "-d",
        &digits.to_string(),
        "-b",
        b32,
    ])
}

/// `voxgate accounts …` on the test's store; the secret goes in through the
/// environment (never an argument). Returns stdout.
fn accounts(state: &Path, args: &[&str], secret_env: Option<&str>) -> String {
    let mut cmd = Command::new(bin());
    cmd.arg("accounts")
        .args(args)
        .arg("--database")
        .arg(state.join("accounts.db"))
        .arg("--key-file")
        .arg(state.join("secret.key"))
        .current_dir(state);
    if let Some(s) = secret_env {
        cmd.env("VG_TEST_TOTP", s);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "accounts {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An even UDP port standing in for the caller's RTP (nothing reads it);
/// kept bound for the call.
fn rtp_port() -> UdpSocket {
    (0..100)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .find(|s| s.local_addr().unwrap().port() % 2 == 0)
        .expect("an even RTP port")
}

/// One call from `from` keying `code` then `#` (`None`: keying nothing, for
/// a call the flow ends before asking); returns this call's events (calls
/// on one voxgate run one after the other).
fn call(vg: &Voxgate, from: &str, code: Option<&str>) -> Vec<Value> {
    let rtp = rtp_port();
    let dir = scratch("totp-sipp");
    let before = vg.read_events().len();
    let mut keys = vec![
        ("rtp_listen", rtp.local_addr().unwrap().port().to_string()),
        ("from_user", from.to_string()),
    ];
    let scenario = match code {
        Some(c) => {
            keys.push(("dtmf", format!("{c}#")));
            "identity_dtmf.xml"
        }
        None => {
            keys.push(("identity", "X-Identity: none".to_string()));
            "identity.xml"
        }
    };
    let out = sipp_in(&dir, scenario, vg.sip, "totp", false, &keys);
    // Not `expect_sipp_ok`'s message: sipp's output holds the keyed code.
    assert!(out.status.success(), "sipp: the call from {from} failed");
    // A deadline, not a timing claim.
    let all = vg.wait_events("the call to end", Duration::from_secs(60), |evs| {
        evs.iter()
            .skip(before)
            .any(|e| event_name(e).starts_with("hung_up"))
    });
    all[before..].to_vec()
}

/// The exit `verify_totp` left by, as the step id the flow went to.
fn outcome(evs: &[Value]) -> String {
    evs.iter()
        .find(|e| event_name(e) == "step_left" && e["event"]["step"] == "code")
        .and_then(|e| e["event"]["exit"].as_str())
        .unwrap_or_else(|| panic!("verify_totp never left:\n{}", pretty(evs)))
        .to_string()
}

/// The call's one auth event: its name and reason (method TOTP).
fn auth_of(evs: &[Value]) -> (String, String) {
    let auths: Vec<&Value> = evs
        .iter()
        .filter(|e| event_name(e).starts_with("auth_"))
        .collect();
    assert_eq!(auths.len(), 1, "one auth event:\n{}", pretty(evs));
    let ev = &auths[0]["event"];
    assert_eq!(ev["method"], "totp", "{ev}");
    (
        event_name(auths[0]).to_string(),
        ev["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// A 6-digit code valid at no step within ±3 of now for `raw` (SHA-1).
fn wrong_code(raw: &[u8]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let near: Vec<String> = (0..=12)
        .map(|i| code_at(raw, TotpParams::default(), now - 180 + i * 30).to_string())
        .collect();
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// Whether `hay` holds `needle` with no ASCII digit right before or after
/// it (codes inside longer numbers, such as ids, are not codes).
fn holds_code(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle
            && !(i > 0 && hay[i - 1].is_ascii_digit())
            && !hay
                .get(i + needle.len())
                .is_some_and(|b| b.is_ascii_digit())
    })
}

/// The store's files, the log and the events hold neither the secrets
/// (base32, either case, or raw) nor any code keyed; and every event field
/// and log key is on the allow-lists.
fn assert_nothing_leaked(vg: &Voxgate, state: &Path, secrets: &[(&[u8], &str)], codes: &[&str]) {
    let raw_events = std::fs::read_to_string(&vg.events).unwrap();
    let log = vg.log();
    let mut off_list = fields::events_file_problems(&raw_events);
    off_list.extend(fields::log_problems(&log));
    assert!(
        off_list.is_empty(),
        "fields off the allow-lists:\n{}",
        off_list.join("\n")
    );
    let mut files: Vec<(String, Vec<u8>)> = ["accounts.db", "accounts.db-wal", "accounts.db-shm"]
        .iter()
        .filter_map(|f| {
            std::fs::read(state.join(f))
                .ok()
                .map(|b| (f.to_string(), b))
        })
        .collect();
    assert!(files.len() >= 2, "the database and its WAL exist");
    files.push(("the events".into(), raw_events.into_bytes()));
    // The log's timestamps are not what we look for: from the level on.
    let body: String = log
        .lines()
        .map(|l| l.split_once('Z').map_or(l, |(_, rest)| rest))
        .collect::<Vec<_>>()
        .join("\n");
    files.push(("the log".into(), body.into_bytes()));
    for (name, bytes) in &files {
        let lower = bytes.to_ascii_lowercase();
        for (raw, b32) in secrets {
            assert!(
                !lower
                    .windows(b32.len())
                    .any(|w| w == b32.to_ascii_lowercase().as_bytes()),
                "a base32 secret in {name}"
            );
            assert!(
                !bytes.windows(raw.len()).any(|w| w == *raw),
                "a raw secret in {name}"
            );
        }
        for c in codes {
            assert!(!holds_code(bytes, c.as_bytes()), "a keyed code in {name}");
        }
    }
}

fn state_dir(name: &str) -> PathBuf {
    scratch(&format!("{name}-state"))
}

fn start(name: &str, state: &Path) -> Voxgate {
    let config = format!(
        "database: \"{}\"\nsecret_key_file: \"{}\"\ntotp: {{ max_failures: 2, lockout_window: 1h }}\n",
        state.join("accounts.db").display(),
        state.join("secret.key").display()
    );
    Voxgate::start(
        name,
        Options {
            flows: root().join("tests/flows_totp"),
            extra_config: &config,
        },
    )
}

#[test]
fn oathtool_codes_pass_once_replays_fail_and_wrong_codes_lock() {
    let state = state_dir("totp-calls");
    let (raw_a, b32_a) = new_secret();
    let (raw_b, b32_b) = new_secret();
    accounts(
        &state,
        &[
            "add",
            "--id",
            "totp_a",
            "--phone",
            NUM_A,
            "--totp-secret-env",
            "VG_TEST_TOTP",
        ],
        Some(&b32_a),
    );
    accounts(
        &state,
        &[
            "add",
            "--id",
            "totp_b",
            "--phone",
            NUM_B,
            "--totp-secret-env",
            "VG_TEST_TOTP",
            "--totp-algorithm",
            "sha256",
            "--totp-digits",
            "8",
        ],
        Some(&b32_b),
    );
    let shown: Value = serde_json::from_str(&accounts(
        &state,
        &["show", "totp_b", "--format", "json"],
        None,
    ))
    .unwrap();
    assert_eq!(
        (
            &shown["totp"],
            &shown["totp_algorithm"],
            &shown["totp_digits"]
        ),
        (&"set".into(), &"SHA256".into(), &8.into())
    );
    let vg = start("totp-calls", &state);
    let mut keyed = Vec::new();

    // The code oathtool computes passes.
    let code = oath_now(&b32_a, "sha1", 6);
    keyed.push(code.clone());
    let evs = call(&vg, NUM_A, Some(&code));
    assert_eq!(outcome(&evs), "success", "{}", pretty(&evs));
    assert_eq!(auth_of(&evs).0, "auth_passed");

    // The same code again is refused: already used (one failure).
    let evs = call(&vg, NUM_A, Some(&code));
    assert_ne!(outcome(&evs), "success", "{}", pretty(&evs));
    assert_eq!(
        auth_of(&evs),
        ("auth_failed".to_string(), "code already used".to_string())
    );

    // A wrong code (the second failure).
    let wrong = wrong_code(&raw_a);
    keyed.push(wrong.clone());
    let evs = call(&vg, NUM_A, Some(&wrong));
    assert_ne!(outcome(&evs), "success", "{}", pretty(&evs));
    assert_eq!(
        auth_of(&evs),
        ("auth_failed".to_string(), "wrong code".to_string())
    );

    // Two failures within the hour: locked, even for the current code.
    let code = oath_now(&b32_a, "sha1", 6);
    keyed.push(code.clone());
    let evs = call(&vg, NUM_A, Some(&code));
    assert_eq!(outcome(&evs), "failure", "{}", pretty(&evs));
    assert_eq!(
        auth_of(&evs),
        (
            "auth_locked".to_string(),
            "too many wrong codes for the account".to_string()
        )
    );

    // Another account, SHA-256 with 8 digits: its own code passes (the
    // lockout is per account).
    let code_b = oath_now(&b32_b, "sha256", 8);
    assert_eq!(code_b.len(), 8);
    keyed.push(code_b.clone());
    let evs = call(&vg, NUM_B, Some(&code_b));
    assert_eq!(outcome(&evs), "success", "{}", pretty(&evs));
    assert_eq!(auth_of(&evs).0, "auth_passed");

    // A caller on file nowhere is refused at once, without a check.
    let evs = call(&vg, NUM_UNKNOWN, None);
    assert_eq!(outcome(&evs), "failure", "{}", pretty(&evs));
    assert_eq!(
        auth_of(&evs),
        (
            "auth_failed".to_string(),
            "no account identified for an authenticator code".to_string()
        )
    );

    let codes: Vec<&str> = keyed.iter().map(String::as_str).collect();
    let secrets = [(&raw_a[..], b32_a.as_str()), (&raw_b[..], b32_b.as_str())];
    // While serve runs (the WAL holds the latest writes) and after it stops.
    assert_nothing_leaked(&vg, &state, &secrets, &codes);
    let events = vg.events.clone();
    let (clean, log) = vg.terminate();
    assert!(clean, "voxgate exits cleanly");
    assert!(!log.to_lowercase().contains(&b32_a.to_lowercase()));
    for c in &codes {
        assert!(!holds_code(
            std::fs::read(&events).unwrap().as_slice(),
            c.as_bytes()
        ));
    }
}

#[test]
fn library_codes_match_oathtool() {
    let cases = [
        (TotpAlgorithm::Sha1, "sha1", 6),
        (TotpAlgorithm::Sha1, "sha1", 8),
        (TotpAlgorithm::Sha256, "sha256", 7),
        (TotpAlgorithm::Sha256, "sha256", 8),
        (TotpAlgorithm::Sha512, "sha512", 6),
        (TotpAlgorithm::Sha512, "sha512", 8),
    ];
    for (algorithm, name, digits) in cases {
        for _ in 0..3 {
            let raw: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
            let hex = data_encoding::HEXLOWER.encode(&raw);
            let t = rand::random::<u32>() as u64;
            let want = oathtool(&[
                &format!("--totp={name}"),
                "-d",
                &digits.to_string(),
                "-N",
                &format!("@{t}"),
                &hex,
            ]);
            let got = code_at(&raw, TotpParams { algorithm, digits }, t);
            assert_eq!(*got, want, "{name} {digits} digits at {t}");
        }
    }
    // And oathtool agrees with RFC 6238 Appendix B for the SHA-512 seed.
    let seed = b"1234567890123456789012345678901234567890123456789012345678901234";
    assert_eq!(
        oathtool(&[
            "--totp=sha512",
            "-d",
            "8",
            "-N",
            "@1111111109",
            &data_encoding::HEXLOWER.encode(seed),
        ]),
        "25091201"
    );
}

#[test]
fn enrolment_with_totp_generate_carries_algorithm_and_digits() {
    let state = state_dir("totp-generate");
    let out = accounts(
        &state,
        &[
            "add",
            "--phone",
            NUM_A,
            "--totp-generate",
            "--totp-algorithm",
            "sha512",
            "--totp-digits",
            "7",
        ],
        None,
    );
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI in the output"));
    assert!(
        uri.contains("algorithm=SHA512") && uri.contains("digits=7"),
        "{}",
        uri.split('?').next().unwrap_or("")
    );
    let list = accounts(&state, &["list"], None);
    assert!(list.contains("SHA512/7"), "{list}");
    let export = accounts(&state, &["export"], None);
    let mut lines = export.lines();
    let header = lines.next().unwrap();
    assert!(
        header.contains("totp,totp_algorithm,totp_digits"),
        "{header}"
    );
    assert!(lines.next().unwrap().contains("set,SHA512,7"), "{export}");
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    assert!(
        !list.contains(secret) && !export.contains(secret),
        "no secret in list or export"
    );

    // update changes the parameters; import takes them as columns.
    accounts(
        &state,
        &[
            "update",
            NUM_A,
            "--totp-algorithm",
            "sha256",
            "--totp-digits",
            "8",
        ],
        None,
    );
    let shown: Value = serde_json::from_str(&accounts(
        &state,
        &["show", NUM_A, "--format", "json"],
        None,
    ))
    .unwrap();
    assert_eq!(
        (&shown["totp_algorithm"], &shown["totp_digits"]),
        (&"SHA256".into(), &8.into())
    );
    let (_, b32) = new_secret();
    let csv = state.join("in.csv");
    std::fs::write(
        &csv,
        format!("phone,totp_secret,totp_algorithm,totp_digits\n{NUM_B},{b32},sha512,7\n"),
    )
    .unwrap();
    accounts(&state, &["import", csv.to_str().unwrap()], None);
    let shown = accounts(&state, &["show", NUM_B], None);
    assert!(
        shown.contains("SHA512")
            && shown
                .lines()
                .any(|l| l.split_whitespace().eq(["totp_digits", "7"])),
        "{shown}"
    );
    assert!(!shown.contains(&b32));
}
