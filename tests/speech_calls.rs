//! Speech over a real call: sipp streams recorded caller speech as PCMU RTP
//! into the shipped `speech` flow; voxgate's endpointer and the on-device
//! recogniser (Whisper tiny.en, installed by scripts/fetch-whisper) must
//! hear the account number and the "yes"; voice alone must stop a prompt.

mod common;

use common::*;

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
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    // The digits as the recogniser writes them ("427 1", "4271.") and as
    // the flow keeps them ("4271"); and the confirmation word.
    let log = vg.log();
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
    let log = vg.log();
    assert!(
        log.lines()
            .any(|l| l.contains("step=read_back") && l.contains("spoke over the prompt")),
        "no speech barge-in on read_back:\n{log}"
    );
}
