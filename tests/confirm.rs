//! The second model that confirms word passphrases (`asr::confirm`):
//! Whisper base (multilingual, its prompt names English) on telephone
//! audio, and the cascade tiny.en → base on a similar-sounding near miss
//! that tiny.en, hinted with the enrolled phrase, hears as the phrase.
//! Needs both models: scripts/fetch-whisper and scripts/fetch-whisper base
//! (scripts/test.sh installs them); a missing model fails these tests.

// Integration tests: helpers may unwrap (a failure should panic with the value).
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use voxgate::asr::confirm::{ConfirmHint, Confirmed, Confirmer, SHIPPED_HINT};
use voxgate::asr::whisper::{DecodeOptions, LoadOptions, WhisperModel};
use voxgate::asr::{phrase, Heard, Hints, SpeechEngine};

const PHRASE: &str = "purple elephant dance";
/// A piper-voice caller saying a similar-sounding near miss of [`PHRASE`]
/// (flows/callers/callers.tsv).
const NEAR_MISS: &str = "purple_elephant_dense.wav";

fn models() -> PathBuf {
    let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for (dir, how) in [
        ("whisper-tiny.en", "scripts/fetch-whisper"),
        ("whisper-base", "scripts/fetch-whisper base"),
    ] {
        assert!(
            m.join(dir).join("model.bin").is_file(),
            "no {dir} in {}: run {how}",
            m.display()
        );
    }
    m
}

/// A caller recording of flows/callers (8 kHz mono).
fn caller(name: &str) -> Vec<i16> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("flows/callers")
        .join(name);
    let mut r = hound::WavReader::open(p).unwrap();
    assert_eq!(r.spec().sample_rate, 8000);
    r.samples::<i16>().map(Result::unwrap).collect()
}

fn one() -> LoadOptions {
    LoadOptions {
        replicas: 1,
        ..LoadOptions::default()
    }
}

fn text(h: &Heard) -> &str {
    match h {
        Heard::Speech(r) => &r.text,
        Heard::Nothing => "",
    }
}

#[test]
fn whisper_base_is_multilingual_and_transcribes_english() {
    // As the confirmer loads it: the whole 30 s window.
    let full = LoadOptions {
        short_window: false,
        ..one()
    };
    let base = WhisperModel::load_with(&models().join("whisper-base"), &full).unwrap();
    assert!(base.is_multilingual());
    let tiny = WhisperModel::load_with(&models().join("whisper-tiny.en"), &one()).unwrap();
    assert!(!tiny.is_multilingual());
    // Unprompted: English words, not a translation or another language.
    let t = base
        .transcribe_8k(
            &caller("purple_elephant_dance.wav"),
            &DecodeOptions::default(),
        )
        .unwrap();
    assert!(phrase::matches(PHRASE, &t.text), "heard {:?}", t.text);
    assert!(t.no_speech_prob < 0.5, "{t:?}");
}

#[test]
fn the_second_model_refuses_a_near_miss_that_tiny_hears_as_the_phrase() {
    let m = models();
    let tiny: Arc<dyn SpeechEngine> = Arc::new(
        voxgate::asr::whisper::WhisperEngine::load_with(&m.join("whisper-tiny.en"), &one())
            .unwrap(),
    );
    let second = Confirmer::load(&m, &one()).unwrap().expect("whisper-base");
    let engine = Confirmed::new(tiny.clone(), second, SHIPPED_HINT);
    let check = Hints {
        phrases: vec![PHRASE.into()],
        confirm: true,
        ..Hints::default()
    };
    let near = caller(NEAR_MISS);

    // tiny.en alone, hinted, hears the near miss as the phrase: the false
    // accept the confirmation is for.
    let alone = tiny.recognize(&near, &check).unwrap();
    assert!(
        phrase::matches(PHRASE, text(&alone)),
        "tiny.en heard {alone:?}"
    );
    // Confirmed: refused.
    let confirmed = engine.recognize(&near, &check).unwrap();
    assert!(
        !phrase::matches(PHRASE, text(&confirmed)),
        "confirmed {confirmed:?}"
    );
    // A recognition that does not ask for confirmation (a menu) is tiny.en's.
    let menu = Hints {
        confirm: false,
        ..check.clone()
    };
    assert_eq!(engine.recognize(&near, &menu).unwrap(), alone);

    // The genuine phrase is confirmed: tiny.en's answer unchanged.
    let genuine = caller("purple_elephant_dance.wav");
    let first = tiny.recognize(&genuine, &check).unwrap();
    assert!(phrase::matches(PHRASE, text(&first)), "{first:?}");
    assert_eq!(engine.recognize(&genuine, &check).unwrap(), first);
}

#[test]
fn both_hints_are_heard_by_the_second_model() {
    let m = models();
    let second = Confirmer::load(&m, &one()).unwrap().expect("whisper-base");
    let genuine = caller("purple_elephant_dance.wav");
    for hint in [ConfirmHint::Phrase, ConfirmHint::Plain] {
        let t = second.hear(&genuine, PHRASE, hint).unwrap();
        assert!(Confirmer::agrees(&t, PHRASE), "{hint:?}: {:?}", t.text);
        let t = second
            .hear(&caller("wrong_passphrase.wav"), PHRASE, hint)
            .unwrap();
        assert!(!Confirmer::agrees(&t, PHRASE), "{hint:?}: {:?}", t.text);
    }
}
