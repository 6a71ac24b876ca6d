//! The Korean Vosk engine on telephone audio (docs/vosk.md): model load time,
//! RSS added by one replica, CPU per check, and accept rates over espeak-ng
//! Korean (10 phrases × 3 voices, band-passed, A-law round-tripped), every
//! clip checked against every phrase. Run:
//! `cargo bench --no-default-features --features mkl,vosk --bench vosk_korean`
//! (scripts/fetch-vosk first).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use voxgate::asr::vosk::VoskEngine;
use voxgate::asr::{Heard, Hints};

const PHRASES: &[&str] = &[
    "하얀 말",
    "푸른 하늘",
    "사과 나무",
    "검은 고양이",
    "안녕하세요",
    "대한민국 서울",
    "우리 집 강아지",
    "빨간 자동차",
    "맛있는 김치",
    "행복한 하루",
];
const VOICES: &[&[&str]] = &[
    &["-v", "ko", "-s", "130"],
    &["-v", "ko+f2", "-s", "140"],
    &["-v", "ko+m3", "-s", "120", "-p", "40"],
];

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn clip(dir: &Path, i: usize, voice: &[&str], text: &str) -> Vec<i16> {
    let (raw, al, pcm) = (
        dir.join(format!("{i}.raw.wav")),
        dir.join(format!("{i}.al.wav")),
        dir.join(format!("{i}.wav")),
    );
    assert!(Command::new("espeak-ng")
        .args(voice)
        .arg("-w")
        .arg(&raw)
        .arg(text)
        .status()
        .unwrap()
        .success());
    assert!(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-e", "a-law"])
        .arg(&al)
        .args(["sinc", "300-3400"])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("sox")
        .arg(&al)
        .args(["-e", "signed", "-b", "16"])
        .arg(&pcm)
        .status()
        .unwrap()
        .success());
    let mut r = hound::WavReader::open(&pcm).unwrap();
    r.samples::<i16>().map(Result::unwrap).collect()
}

fn main() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vosk-ko");
    let dir = std::env::temp_dir().join(format!("voxgate-vosk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut clips = Vec::new();
    for (p, text) in PHRASES.iter().enumerate() {
        for v in VOICES {
            let i = clips.len();
            clips.push((p, clip(&dir, i, v, text)));
        }
    }
    let rss0 = rss_kib();
    let t = Instant::now();
    let e = VoskEngine::load(&model, "ko", 1).unwrap();
    e.preload().unwrap();
    println!(
        "model load: {:.2} s, RSS +{} MiB",
        t.elapsed().as_secs_f64(),
        (rss_kib() - rss0) / 1024
    );
    let (mut ta, mut fa, mut gen, mut imp) = (0, 0, 0, 0);
    let mut cpu = Vec::new();
    let mut audio = 0.0;
    for (said, pcm) in &clips {
        for (enrolled, phrase) in PHRASES.iter().enumerate() {
            let hints = Hints {
                phrases: vec![phrase.to_string()],
                language: Some("ko".into()),
                ..Hints::default()
            };
            let c0 = cpu_secs();
            let d = e.decode(pcm, &hints).unwrap();
            cpu.push(cpu_secs() - c0);
            audio += pcm.len() as f64 / 8000.0;
            let ok = matches!(d.heard(), Heard::Speech(r) if voxgate::asr::phrase::matches(phrase, &r.text));
            if *said == enrolled {
                gen += 1;
                ta += usize::from(ok)
            } else {
                imp += 1;
                fa += usize::from(ok)
            }
        }
    }
    cpu.sort_by(|a, b| a.total_cmp(b));
    let total: f64 = cpu.iter().sum();
    println!(
        "checks: {} ({:.1} s of audio), CPU per check p50 {:.3} s p95 {:.3} s, {:.2} x real time",
        cpu.len(),
        audio,
        cpu[cpu.len() / 2],
        cpu[cpu.len() * 95 / 100],
        audio / total
    );
    println!("true accept {ta}/{gen}, false accept {fa}/{imp}");
    println!("RSS after: {} MiB", rss_kib() / 1024);
}
