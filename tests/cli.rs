//! The command line as an operator and a flow author meet it: exit codes and
//! the exact shape of error messages.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(root())
        .output()
        .expect("run voxgate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn validate_accepts_the_shipped_flows() {
    let (code, text) = run(&["validate", "flows", "--prompts", "prompts"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("4 flow file(s) OK"), "{text}");
}

#[test]
fn validate_reports_file_line_col_and_fails() {
    let dir = scratch("cli-validate");
    std::fs::write(
        dir.join("dangling.yaml"),
        "flow: dangling\nsteps:\n  greet:\n    play: [goodbye]\n    next: nowhere\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("typed.yaml"),
        "flow: typed\nsteps:\n  ask:\n    collect_digits: { prompts: [goodbye], tries: three }\n    on: { success: bye }\n  bye:\n    hangup: {}\n",
    )
    .unwrap();
    let (code, text) = run(&["validate", dir.to_str().unwrap(), "--prompts", "prompts"]);
    assert_ne!(code, 0, "{text}");
    let d = dir.display().to_string();
    assert!(
        text.contains(&format!("{d}/dangling.yaml:5:11:")) && text.contains("nowhere"),
        "dangling `next` is located:\n{text}"
    );
    assert!(
        text.contains(&format!("{d}/typed.yaml:4:"))
            && text.contains("`tries` must be a whole number"),
        "wrong type is located:\n{text}"
    );
    assert!(text.contains("problem(s) in 2 flow file(s)"), "{text}");

    // One file with a load error and a semantic error: both in one run.
    std::fs::write(
        dir.join("both.yaml"),
        "flow: both\nsteps:\n  greet:\n    play: [goodbye]\n    next: nowhere\n  ask:\n    collect_digits: { prompts: [goodbye], tries: three }\n    on: { success: greet }\n",
    )
    .unwrap();
    let (code, text) = run(&[
        "validate",
        dir.join("both.yaml").to_str().unwrap(),
        "--prompts",
        "prompts",
    ]);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("both.yaml:5:11:") && text.contains("both.yaml:7:"),
        "both problems reported:\n{text}"
    );
}

#[test]
fn validate_refuses_writes_to_engine_owned_names_in_one_pass() {
    let dir = scratch("cli-reserved");
    let f = dir.join("spoof.yaml");
    std::fs::write(
        &f,
        "flow: spoof\nvars: { account.id: none }\nsteps:\n  crm:\n    webhook: { url: 'http://127.0.0.1:9/x', into: auth }\n    on: { success: mark, failure: mark, error: mark }\n  mark:\n    set: { caller_trust: high }\n    next: bye\n  bye:\n    hangup: {}\n",
    )
    .unwrap();
    let (code, text) = run(&["validate", f.to_str().unwrap(), "--prompts", "prompts"]);
    assert_ne!(code, 0, "{text}");
    let tail = "is read-only to flows (reserved: auth.*, account.*, code.*, caller*, call.*, call_id, dialled, transfer.*, header.*)";
    let p = f.display();
    for line in [
        format!("{p}:2:9: `vars`: cannot write `account.id`: `account.*` is set by the lookup_caller step and {tail}"),
        format!("{p}:5:51: step `crm` (webhook): `into: auth` would write everything under `auth.`, but `auth.*` is set by the verify_passphrase, verify_code and verify_totp steps and {tail}; choose another prefix such as `crm`"),
        format!("{p}:8:12: step `mark` (set): cannot write `caller_trust`: `caller*` is set by the call (its caller ID and how far it is trusted) and {tail}"),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("3 problem(s) in 1 flow file(s)"), "{text}");
}

#[test]
fn flow_tests_pass_and_a_wrong_expectation_fails() {
    let (code, text) = run(&["test", "flows"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("0 failed"), "{text}");
    // A test that expects the wrong path must fail and make the command fail.
    let dir = scratch("cli-test");
    std::fs::copy(root().join("flows/demo.yaml"), dir.join("demo.yaml")).unwrap();
    std::fs::write(
        dir.join("demo.test.yaml"),
        "flow: demo.yaml\ntests:\n  - name: wrong on purpose\n    script:\n      - digits: \"12#\"\n    expect:\n      path: [welcome, goodbye]\n",
    )
    .unwrap();
    let (code, text) = run(&["test", dir.to_str().unwrap()]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("FAIL wrong on purpose"), "{text}");
}

#[test]
fn serve_refuses_invalid_flows_and_bad_config() {
    let dir = scratch("cli-serve");
    std::fs::write(
        dir.join("bad.yaml"),
        "flow: bad\nsteps:\n  a:\n    plya: [welcome]\n",
    )
    .unwrap();
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{}\nrtp_ports: 21000-21099\nflows_dir: {}\nprompts_dir: {}\n",
            free_port(),
            dir.display(),
            root().join("prompts").display()
        ),
    )
    .unwrap();
    let (code, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        text.contains("bad.yaml:4:5:") && text.contains("not starting"),
        "{text}"
    );

    std::fs::write(&cfg, "listen: 127.0.0.1:5060\nlisen: typo\n").unwrap();
    let (code, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        text.contains("c.yaml:2:") && text.contains("lisen"),
        "{text}"
    );

    // RTP ports inside the kernel's ephemeral range would collide with outgoing sockets.
    let (lo, _) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse::<u32>().ok())
                .map(|lo| (lo, 0))
        })
        .unwrap_or((32768, 0));
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{}\nrtp_ports: {}-{}\nflows_dir: {}\n",
            free_port(),
            lo + 100,
            lo + 200,
            root().join("flows").display()
        ),
    )
    .unwrap();
    let (code, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(text.contains("ephemeral"), "{text}");

    let (code, text) = run(&["serve", "--listen", "nowhere"]);
    assert_ne!(code, 0);
    assert!(
        text.contains("--listen") && text.contains("ADDR:PORT"),
        "{text}"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let (code, text) = run(&["servee"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("serve"), "suggests the right one:\n{text}");
}

#[test]
fn recognize_hears_recordings_as_a_call_would() {
    let models = root().join("models");
    assert!(
        models.join("whisper-tiny.en/model.bin").exists(),
        "run scripts/fetch-whisper"
    );
    let m = models.to_str().unwrap();
    let yes = root().join("flows/callers/yes.wav");
    let noise = root().join("flows/callers/line_noise.wav");
    let (code, text) = run(&[
        "recognize",
        "--models",
        m,
        "--phrases",
        "yes,no",
        yes.to_str().unwrap(),
        noise.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("yes.wav: \"yes\""), "{text}");
    assert!(text.contains("line_noise.wav: no "), "{text}");
    let (code, text) = run(&[
        "recognize",
        "--models",
        "/nonexistent",
        yes.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("missing model.bin"), "{text}");

    // A digit answer of a given length, as a digit passphrase is heard:
    // Allison's "nineteen", one digit a token, comes out short ("9"); told
    // that two digits are expected, it is decoded again reading numbers.
    let nineteen = allison_digits().join("19.wav");
    let heard = |extra: &[&str]| {
        let mut args = vec!["recognize", "--models", m];
        args.extend_from_slice(extra);
        args.push(nineteen.to_str().unwrap());
        let (code, text) = run(&args);
        assert_eq!(code, 0, "{text}");
        text
    };
    let digits = heard(&["--digits"]);
    assert!(!digits.contains("19.wav: \"19\""), "{digits}");
    let counted = heard(&["--digit-count", "2"]);
    assert!(counted.contains("19.wav: \"19\""), "{counted}");
    let (code, text) = run(&["recognize", "--digit-count", "0", yes.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("0 is not in 1..=64"), "{text}");
}
