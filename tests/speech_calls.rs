//! Speech over a real call: sipp streams recorded caller speech as PCMU RTP
//! into the shipped `speech` flow; voxgate's endpointer and the on-device
//! recogniser (Whisper tiny.en, installed by scripts/fetch-whisper) must
//! hear the account number and the "yes"; voice alone must stop a prompt.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn models() -> std::path::PathBuf {
    let m = root().join("models");
    assert!(
        m.join("whisper-tiny.en/model.bin").exists(),
        "the speech model is missing: run scripts/fetch-whisper (scripts/test.sh does)"
    );
    m
}

fn ulaw(name: &str, out: &std::path::Path) {
    let src = root().join("flows/callers").join(name);
    let src = src.to_str().unwrap();
    sox(
        &[src, "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw"],
        out,
        &[],
    );
}

/// voxgate with the shipped flows and the installed speech model.
fn start(name: &str) -> Voxgate {
    let cfg = format!("models_dir: {}\n", models().display());
    Voxgate::start(
        name,
        Options {
            flows: root().join("flows"),
            extra_config: &cfg,
        },
    )
}

#[test]
fn spoken_number_and_yes_over_rtp() {
    let vg = start("speech");
    let dir = scratch("speech-audio");
    ulaw("account_4271.wav", &dir.join("number.ulaw"));
    ulaw("yes.wav", &dir.join("answer.ulaw"));
    let sink = RtpSink::new();
    let out = sipp_in(
        &dir,
        "speech.xml",
        vg.sip,
        "speech",
        false,
        &[("rtp_listen", sink.port().to_string())],
    );
    vg.expect_sipp_ok(&out, "speech call");
    let evs = vg.wait_call_end();
    let recs = events_named(&evs, "recognition");
    assert_eq!(recs.len(), 2, "events:\n{}", pretty(&evs));
    assert!(
        recs.iter().all(|r| r["event"]["matched"] == true),
        "events:\n{}",
        pretty(&evs)
    );
    let entered: Vec<&str> = events_named(&evs, "step_entered")
        .iter()
        .filter_map(|e| e["event"]["step"].as_str())
        .collect();
    assert!(entered.contains(&"thanks"), "path {entered:?}");
    // What the caller said stays in the call: not in events, not in logs.
    // Every event field and log key is one the allow-lists know, so a new
    // field that could carry a transcript fails here by name…
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    let log = vg.log();
    let mut off_list = fields::events_file_problems(&raw);
    off_list.extend(fields::log_problems(&log));
    assert!(
        off_list.is_empty(),
        "fields off the allow-lists:\n{}",
        off_list.join("\n")
    );
    // …and the words themselves appear nowhere: the digits as the recogniser
    // writes them ("427 1", "4271.") and as the flow keeps them ("4271"); and
    // the confirmation word.
    for secret in ["4271", "427 1", "427-1", "\"yes\"", "text="] {
        assert!(!raw.contains(secret), "`{secret}` in events:\n{raw}");
        assert!(!log.contains(secret), "`{secret}` in the log");
    }
}

/// Speech barge-in on a `say` step over a live call: the caller talks while
/// the number is read back; voice activity alone (no recogniser) stops it.
#[test]
fn talking_over_the_read_back_stops_it() {
    let vg = start("speech-bargein");
    let dir = scratch("speech-bargein-audio");
    ulaw("account_4271.wav", &dir.join("number.ulaw"));
    // About six seconds of talking, whenever the read-back starts.
    let talk = dir.join("talk.ulaw");
    let parts: Vec<std::path::PathBuf> = [
        "yes_please.wav",
        "account_90210.wav",
        "yes_please.wav",
        "purple_elephant_dance.wav",
    ]
    .iter()
    .enumerate()
    .map(|(i, f)| {
        let p = dir.join(format!("t{i}.ulaw"));
        ulaw(f, &p);
        p
    })
    .collect();
    let mut all = Vec::new();
    for p in &parts {
        all.extend(std::fs::read(p).unwrap());
    }
    std::fs::write(&talk, all).unwrap();
    let sink = RtpSink::new();
    let out = sipp_in(
        &dir,
        "speech_bargein.xml",
        vg.sip,
        "speech",
        false,
        &[("rtp_listen", sink.port().to_string())],
    );
    vg.expect_sipp_ok(&out, "barge-in call");
    // The prompt stopped because the caller spoke: a barge-in event by speech.
    vg.wait_events(
        "a speech barge-in on read_back",
        Duration::from_secs(10),
        |evs| {
            events_named(evs, "barge_in")
                .iter()
                .any(|e| e["event"]["step"] == "read_back" && e["event"]["by"] == "speech")
        },
    );
}

/// The allow-lists themselves: a field or key they do not know fails by name.
#[test]
fn allow_lists_refuse_unknown_fields_by_name() {
    let ok = json!({"event": "recognition", "step": "ask", "confidence": 0.9, "matched": true, "words": 3});
    assert!(fields::event_problems(&ok).is_empty());
    let leak = json!({"event": "recognition", "step": "ask", "words": 3, "text": "4271"});
    let p = fields::event_problems(&leak);
    assert!(p.len() == 1 && p[0].contains("`text`"), "{p:?}");
    let p = fields::event_problems(&json!({"event": "transcript", "step": "ask"}));
    assert!(p.len() == 1 && p[0].contains("`transcript`"), "{p:?}");
    let line = json!({"call_id": "c1", "event": ok, "heard": "yes"}).to_string();
    let p = fields::events_file_problems(&line);
    assert!(p.len() == 1 && p[0].contains("`heard`"), "{p:?}");

    let log = "2026-01-01T00:00:00.000000Z  INFO call{id=c1}: voxgate::call::sip: speech recognised decode_ms=412 confidence=0.91 words=3\n\
               2026-01-01T00:00:00.000000Z  INFO call{id=c1}: voxgate::app: {\"event\":\"digits\",\"step\":\"pin\",\"count\":4,\"source\":\"rfc4733\"} event=digits\n";
    assert_eq!(fields::log_problems(log), Vec::<String>::new());
    let log = "2026-01-01T00:00:00.000000Z DEBUG call{id=c1}: voxgate::call::sip: heard text=\"427 1\" words=2\n\
               2026-01-01T00:00:00.000000Z  INFO call{id=c1}: voxgate::app: {\"event\":\"digits\",\"step\":\"pin\",\"value\":\"4271\"} event=digits\n";
    let p = fields::log_problems(log);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("line 1") && p[0].contains("`text`"), "{p:?}");
    assert!(p[1].contains("line 2") && p[1].contains("`value`"), "{p:?}");
    assert!(
        !p.iter().any(|m| m.contains("427")),
        "never the secret itself: {p:?}"
    );
}
