//! A spoken Korean passphrase over a whole call: sipp calls `voxgate serve`
//! from a number on file in a real SQLite account store whose passphrase is
//! Korean, and streams espeak-ng Korean as PCMU RTP; the step asks for
//! `language: ko`, so the Vosk model (models/vosk-ko, scripts/fetch-vosk)
//! hears it rather than Whisper. The enrolled phrase passes, another phrase
//! and noise do not, and no word of either reaches an event or the log.
//! Built only with the `vosk` feature. Helpers follow tests/passphrase_calls.rs.
#![cfg(feature = "vosk")]
// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

const NUM_KO: &str = "+16502530010";
/// "White horse", as in the IntelePeer demo.
const PHRASE: &str = "하얀 말";
/// "Black cat": another phrase.
const OTHER: &str = "검은 고양이";

fn models() -> PathBuf {
    let m = root().join("models");
    assert!(
        m.join("vosk-ko/am/final.mdl").exists() && m.join("whisper-tiny.en/model.bin").exists(),
        "speech models missing: run scripts/fetch-whisper and scripts/fetch-vosk (scripts/test.sh does)"
    );
    m
}

/// `serve` on the Korean test flow with an account store holding one
/// account whose passphrase is [`PHRASE`], sealed under a key of its own.
fn start(name: &str) -> Voxgate {
    serve_with_passphrases(
        name,
        "tests/flows_passphrase_ko",
        &models(),
        "",
        &[("acct_ko", NUM_KO, PHRASE)],
    )
}

/// What the caller says.
enum Says {
    /// espeak-ng's Korean voice saying this, band-passed to the phone band.
    Korean(&'static str),
    /// 2 s of white noise at -20 dBFS, band-passed.
    Noise,
}

/// 2.5 s of silence (the prompt plays), what the caller says, 2 s of
/// silence, as raw µ-law in `dir/caller.ulaw`.
fn caller_audio(dir: &Path, says: &Says) {
    let lead = dir.join("lead.ulaw");
    let tail = dir.join("tail.ulaw");
    let said = dir.join("said.ulaw");
    let ulaw = ["-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw"];
    for (f, secs) in [(&lead, "2.5"), (&tail, "2")] {
        let mut a = vec!["-n"];
        a.extend(ulaw);
        sox(&a, f, &["trim", "0", secs]);
    }
    match says {
        Says::Korean(text) => {
            let wav = dir.join("espeak.wav");
            let ok = std::process::Command::new("espeak-ng")
                .args(["-v", "ko+f2", "-s", "140", "-w"])
                .arg(&wav)
                .arg(text)
                .status()
                .unwrap()
                .success();
            assert!(ok, "espeak-ng failed");
            let mut a = vec![wav.to_str().unwrap()];
            a.extend(ulaw);
            sox(&a, &said, &["sinc", "300-3400"]);
        }
        Says::Noise => {
            let mut a = vec!["-n"];
            a.extend(ulaw);
            sox(
                &a,
                &said,
                &[
                    "synth",
                    "2",
                    "whitenoise",
                    "vol",
                    "-20dB",
                    "sinc",
                    "300-3400",
                ],
            );
        }
    }
    let mut all = std::fs::read(&lead).unwrap();
    all.extend(std::fs::read(&said).unwrap());
    all.extend(std::fs::read(&tail).unwrap());
    std::fs::write(dir.join("caller.ulaw"), all).unwrap();
}

/// One call saying `says`; returns this call's events.
fn call(vg: &Voxgate, says: &Says) -> Vec<Value> {
    let dir = scratch("vosk-sipp");
    caller_audio(&dir, says);
    passphrase_call(
        vg,
        &dir,
        NUM_KO,
        "a Korean passphrase call",
        Duration::from_secs(90),
    )
}

/// The exit `verify_passphrase` left by and the auth event's reason.
fn outcome(evs: &[Value]) -> (String, String) {
    let exit = evs
        .iter()
        .find(|e| event_name(e) == "step_left" && e["event"]["step"] == "passphrase")
        .and_then(|e| e["event"]["exit"].as_str())
        .unwrap_or_else(|| panic!("the passphrase step never left:\n{}", pretty(evs)))
        .to_string();
    let reason = evs
        .iter()
        .find(|e| event_name(e).starts_with("auth_"))
        .and_then(|e| e["event"]["reason"].as_str())
        .unwrap_or("")
        .to_string();
    (exit, reason)
}

#[test]
fn a_korean_passphrase_is_judged_by_vosk_over_rtp() {
    let vg = start("vosk-calls");
    // The flow speaks Korean: its model was loaded before the first call
    // (loaded on first use, it kept that caller waiting for seconds and,
    // on a loaded machine, past the step's safety net: no_input).
    let log = vg.log();
    assert!(
        log.lines().any(
            |l| l.contains("speech model ready for a language the flows use") && l.contains("ko")
        ),
        "{log}"
    );

    // espeak-ng's Korean sits at the edge of the reject path (bench: 4 of
    // 30 such phrases accepted), and where the listening starts in the
    // caller's audio moves by a few tens of ms from call to call: this
    // phrase was refused in 1 of 10 runs. A caller refused once calls
    // again (the lockout allows 5): the second call must pass.
    let mut evs = call(&vg, &Says::Korean(PHRASE));
    if outcome(&evs) == ("failure".into(), "no_match".into()) {
        eprintln!("the enrolled phrase was refused once; calling again");
        evs = call(&vg, &Says::Korean(PHRASE));
    }
    assert_eq!(
        outcome(&evs),
        ("success".into(), "matched".into()),
        "the enrolled phrase:\n{}",
        pretty(&evs)
    );
    assert!(events_named(&evs, "error").is_empty(), "{}", pretty(&evs));

    let evs = call(&vg, &Says::Korean(OTHER));
    assert_eq!(
        outcome(&evs),
        ("failure".into(), "no_match".into()),
        "another phrase:\n{}",
        pretty(&evs)
    );

    let evs = call(&vg, &Says::Noise);
    assert_ne!(outcome(&evs).0, "success", "noise:\n{}", pretty(&evs));

    // Nothing said or enrolled reaches the events or the log.
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    let log = vg.log();
    let mut off_list = fields::events_file_problems(&raw);
    off_list.extend(fields::log_problems(&log));
    assert!(
        off_list.is_empty(),
        "off the allow-lists:\n{}",
        off_list.join("\n")
    );
    for w in PHRASE.split(' ').chain(OTHER.split(' ')) {
        assert!(!raw.contains(w), "`{w}` in the events file");
        assert!(!log.contains(w), "`{w}` in the log");
    }
    let (clean, _) = vg.terminate();
    assert!(clean, "voxgate did not stop cleanly");
}
