//! Spoken passphrases over whole calls: sipp calls `voxgate serve` from a
//! number on file in a real SQLite account store (seeded, with sealed
//! passphrases, through the library before serve starts) and streams
//! recorded caller speech (flows/callers) as PCMU RTP; the on-device
//! recogniser (Whisper tiny.en) hears it and `verify_passphrase` judges it
//! against the enrolled phrase. The right phrase passes, a near miss, noise
//! and silence do not, a digit passphrase spoken as words passes, and
//! failures counted across calls lock the account's passphrase. Nothing the
//! caller said and no enrolled phrase reaches an event or a log line.
//!
//! The test flow (`tests/flows_passphrase/pass.yaml`) leaves the step's exit
//! in the events as a step id: `ok`, `failed`, `silent`, `exhausted`,
//! `errored`.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Real, valid numbers (libphonenumber refuses 555 area codes).
const NUM_PHRASE: &str = "+16502530000";
const NUM_DIGITS: &str = "+16502530001";
const NUM_DIGIT_WORDS: &str = "+16502530002";
const NUM_LOCKED: &str = "+16502530003";
const NUM_OTHER: &str = "+16502530004";
const NUM_HUMAN: &str = "+16502530005";
const NUM_REPEATS: &str = "+16502530006";
const NUM_NUMBERS: &str = "+16502530007";
const NUM_HUMAN_WORDS: &str = "+16502530008";
const NUM_TENS: &str = "+16502530009";

/// The real-voice digit passphrase (Allison Smith's recorded digits).
const HUMAN_DIGITS: &str = "30742";

/// One with a digit repeated: Whisper, allowed tokens of several digits,
/// wrote it as a number and repeated a digit ("8639899").
const REPEATS_DIGITS: &str = "863989";

/// One a caller says as numbers, "nineteen fourteen three": Allison's
/// recordings of 19, 14 and 3. Decoded one digit a token it came out short.
/// (Five digits, so the leak check cannot meet it as a timing.)
const NUMBERS_DIGITS: &str = "19143";
const NUMBERS_SAID: &[&str] = &["19", "14", "3"];

/// One said as numbers with a pause inside each ("sixty ... five, eighty
/// ... three, ninety ... seven"): the decoder writes the parts apart, "60 5
/// 80 3 90 7", which read as six digits only as the numbers they are.
const TENS_DIGITS: &str = "658397";
const TENS_SAID: &[&str] = &["60", "5", "80", "3", "90", "7"];

const PHRASE: &str = "purple elephant dance";

/// A word phrase in Allison's voice: her recordings of "alpha", "tango"
/// (the phonetic alphabet) and "monday", paths under her digits folder.
const HUMAN_WORDS: &str = "alpha tango monday";
const HUMAN_WORDS_SAID: &[&str] = &["../phonetic/a_p", "../phonetic/t_p", "day-1"];

/// Words of the enrolled phrases and of what the callers say: none may
/// appear in an event or a log line (compared lower-case).
const SECRET_WORDS: &[&str] = &[
    "purple",
    "elephant",
    "dance",
    "green",
    "giraffe",
    "four two seven one",
    "three zero seven four two",
    "eight six three nine eight nine",
    "tango",
];

fn models() -> PathBuf {
    let m = root().join("models");
    assert!(
        m.join("whisper-tiny.en/model.bin").exists(),
        "the speech model is missing: run scripts/fetch-whisper (scripts/test.sh does)"
    );
    m
}

/// `serve` on the test flow with the speech model, an account store at a
/// path of our own seeded with `accounts` (id, phone, passphrase) sealed
/// under a key written where serve reads it; `extra` is more config.
fn start(name: &str, extra: &str, accounts: &[(&str, &str, &str)]) -> Voxgate {
    start_flows(name, "tests/flows_passphrase", extra, accounts)
}

/// [`start`] on the flows in `flows` (under the repository root).
fn start_flows(name: &str, flows: &str, extra: &str, accounts: &[(&str, &str, &str)]) -> Voxgate {
    serve_with_passphrases(name, flows, &models(), extra, accounts)
}

/// `secs` of µ-law silence.
fn silence(secs: f32, out: &Path) {
    sox(
        &["-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw"],
        out,
        &["trim", "0", &secs.to_string()],
    );
}

/// What the caller streams: 2.5 s of silence (the prompt plays meanwhile),
/// the recording `wav` from flows/callers (none: only silence), 2 s of
/// silence, as raw µ-law in `dir/caller.ulaw`.
fn caller_audio(dir: &Path, wav: Option<&str>) {
    let (lead, tail) = (dir.join("lead.ulaw"), dir.join("tail.ulaw"));
    silence(2.5, &lead);
    silence(if wav.is_some() { 2.0 } else { 8.0 }, &tail);
    let mut all = std::fs::read(&lead).unwrap();
    if let Some(wav) = wav {
        let said = dir.join("said.ulaw");
        let src = root().join("flows/callers").join(wav);
        sox(
            &[
                src.to_str().unwrap(),
                "-r",
                "8000",
                "-c",
                "1",
                "-e",
                "u-law",
                "-t",
                "raw",
            ],
            &said,
            &[],
        );
        all.extend(std::fs::read(&said).unwrap());
    }
    all.extend(std::fs::read(&tail).unwrap());
    std::fs::write(dir.join("caller.ulaw"), all).unwrap();
}

/// One call from `from` saying `wav` (none: silence); returns this call's
/// events (calls on one voxgate run one after the other).
fn call(vg: &Voxgate, from: &str, wav: Option<&str>) -> Vec<Value> {
    let dir = scratch("passphrase-sipp");
    caller_audio(&dir, wav);
    let evs = passphrase_call(
        vg,
        &dir,
        from,
        &format!("call from {from} saying {wav:?}"),
        Duration::from_secs(60),
    );
    // What the recogniser made of it, for the record (`--nocapture`).
    for r in events_named(&evs, "recognition") {
        eprintln!(
            "{from} saying {wav:?}: confidence {} words {} matched {}",
            r["event"]["confidence"], r["event"]["words"], r["event"]["matched"]
        );
    }
    evs
}

/// The steps the call entered, in order.
fn entered(evs: &[Value]) -> Vec<String> {
    events_named(evs, "step_entered")
        .iter()
        .map(|e| e["event"]["step"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The exit `verify_passphrase` left by.
fn exit_of_passphrase(evs: &[Value]) -> String {
    evs.iter()
        .find(|e| event_name(e) == "step_left" && e["event"]["step"] == "passphrase")
        .and_then(|e| e["event"]["exit"].as_str())
        .unwrap_or_else(|| panic!("the passphrase step never left:\n{}", pretty(evs)))
        .to_string()
}

/// The call's one auth event: its name and reason.
fn auth_of(evs: &[Value]) -> (String, String) {
    let auths: Vec<&Value> = evs
        .iter()
        .filter(|e| event_name(e).starts_with("auth_"))
        .collect();
    assert_eq!(auths.len(), 1, "one auth event:\n{}", pretty(evs));
    let ev = &auths[0]["event"];
    assert_eq!(ev["method"], "passphrase", "{ev}");
    assert_eq!(ev["step"], "passphrase", "{ev}");
    (
        event_name(auths[0]).to_string(),
        ev["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// The call went lookup → passphrase → `end` → bye, the passphrase step
/// leaving by `exit`, with the auth event `auth` and reason `reason`.
fn assert_outcome(evs: &[Value], exit: &str, end: &str, auth: &str, reason: &str, what: &str) {
    assert_eq!(
        entered(evs),
        ["lookup", "passphrase", end, "bye"],
        "{what}:\n{}",
        pretty(evs)
    );
    assert_eq!(exit_of_passphrase(evs), exit, "{what}:\n{}", pretty(evs));
    assert_eq!(
        auth_of(evs),
        (auth.to_string(), reason.to_string()),
        "{what}:\n{}",
        pretty(evs)
    );
    assert!(
        events_named(evs, "error").is_empty(),
        "{what}: no step failed:\n{}",
        pretty(evs)
    );
}

/// The call passed the passphrase: `success`, `auth_passed` / `matched`.
fn assert_passed(evs: &[Value], what: &str) {
    assert_outcome(evs, "success", "ok", "auth_passed", "matched", what);
}

/// The one recognition event of a call that listened and heard speech.
fn recognition(evs: &[Value], what: &str) -> Value {
    let recs = events_named(evs, "recognition");
    assert_eq!(recs.len(), 1, "{what}: one recognition:\n{}", pretty(evs));
    recs[0]["event"].clone()
}

/// Real human speech: Allison Smith's recorded digits from Debian's
/// `asterisk-core-sounds-en-wav` (scripts/test.sh installs it), each cut to
/// its voice and joined with 250-350 ms pauses, band-passed to the telephone
/// band over a faint noise floor, as `dir/name.wav`.
fn allison_says(digits: &str, dir: &Path, name: &str) -> PathBuf {
    let joined = allison_joined(digits, dir, name, |i| 250 + 50 * (i % 3), &["norm", "-6"]);
    with_noise_floor(&joined, dir, name)
}

/// sox `synth` arguments of mains hum on a bad line: 50 Hz and its odd
/// harmonics, as in the evaluation set's hum condition.
const MAINS_HUM: &[&str] = &[
    "sine", "50", "sine", "150", "sine", "250", "remix", "1-3", "vol", "-24dB",
];

/// Allison's digits at her recordings' own level (about 14 dB quieter than
/// [`allison_says`]), 400 ms apart, on a line with mains hum: 50 Hz and its
/// odd harmonics at 150 and 250 Hz, louder than her quieter digits (the
/// evaluation set's hum condition, `bench/passphrase/make_set.py`).
fn allison_over_hum(digits: &str, dir: &Path, name: &str) -> PathBuf {
    let joined = allison_joined(digits, dir, name, |_| 400, &[]);
    let mixed = mixed_with(&joined, MAINS_HUM, &dir.join(format!("{name}-mixed.wav")));
    with_noise_floor(&mixed, dir, name)
}

/// Allison's digits, each cut to its voice, `pause_ms(i)` after the i-th,
/// band-passed to the telephone band and padded, then `level` (sox effects).
fn allison_joined(
    digits: &str,
    dir: &Path,
    name: &str,
    pause_ms: impl Fn(usize) -> usize,
    level: &[&str],
) -> PathBuf {
    let names: Vec<String> = digits.chars().map(String::from).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    allison_words(&names, dir, name, pause_ms, level)
}

/// [`allison_joined`] for any of her recordings in `digits/` by name
/// ("13", "40", "oh").
fn allison_words(
    words: &[&str],
    dir: &Path,
    name: &str,
    pause_ms: impl Fn(usize) -> usize,
    level: &[&str],
) -> PathBuf {
    let sounds = allison_digits();
    let mut parts = Vec::new();
    for (i, d) in words.iter().enumerate() {
        let cut = dir.join(format!("{name}-d{i}.wav"));
        let src = sounds.join(format!("{d}.wav"));
        sox(
            &[src.to_str().unwrap()],
            &cut,
            &[
                "silence", "1", "0.01", "-45d", "reverse", "silence", "1", "0.01", "-45d",
                "reverse", "pad", "0.03", "0.03",
            ],
        );
        parts.push(cut);
        let gap = dir.join(format!("{name}-g{i}.wav"));
        sox(
            &["-n", "-r", "8000", "-c", "1", "-b", "16"],
            &gap,
            &["trim", "0", &format!("{:.3}", pause_ms(i) as f64 / 1000.0)],
        );
        parts.push(gap);
    }
    parts.pop(); // no pause after the last digit
    let joined = dir.join(format!("{name}-joined.wav"));
    let inputs: Vec<&str> = parts.iter().map(|p| p.to_str().unwrap()).collect();
    let mut effects = vec!["sinc", "300-3400", "pad", "0.4", "0.3"];
    effects.extend_from_slice(level);
    sox(&inputs, &joined, &effects);
    joined
}

/// `wav` over a -60 dBFS noise floor (a line is never digitally silent).
fn with_noise_floor(wav: &Path, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.wav"));
    mixed_with(wav, &["whitenoise", "vol", "-60dB"], &out)
}

/// `wav` mixed with a line sound as long as it (`synth` arguments after the
/// length), written to `out` at 8 kHz.
fn mixed_with(wav: &Path, synth: &[&str], out: &Path) -> PathBuf {
    let len = std::process::Command::new("soxi")
        .arg("-D")
        .arg(wav)
        .output()
        .unwrap();
    let len = String::from_utf8(len.stdout).unwrap();
    let line = out.with_extension("line.wav");
    let mut effects = vec!["synth", len.trim()];
    effects.extend_from_slice(synth);
    sox(
        &["-n", "-r", "8000", "-c", "1", "-b", "16"],
        &line,
        &effects,
    );
    let (wav, line_s) = (wav.to_str().unwrap(), line.to_str().unwrap());
    sox(
        &["-m", wav, line_s, "-r", "8000", "-c", "1", "-b", "16"],
        out,
        &[],
    );
    out.to_path_buf()
}

/// A digit run `4271` as the recogniser or a careless log might write it
/// ("4271", "427 1", "4-2-7-1"), not part of a longer number or a decimal.
fn digits_4271() -> regex::Regex {
    regex::Regex::new(r"(?:^|[^0-9.])4[ ,.-]*2[ ,.-]*7[ ,.-]*1(?:[^0-9]|$)").unwrap()
}

/// Everything voxgate wrote about the calls so far: every event field and
/// log key on the allow-lists, and no word of a phrase (enrolled or heard)
/// anywhere in the events file or the log.
fn assert_nothing_leaked(vg: &Voxgate) {
    assert_no_digit_run(vg, &digits_4271());
    assert_no_digit_run(vg, &digit_run(HUMAN_DIGITS));
    assert_no_digit_run(vg, &digit_run(REPEATS_DIGITS));
    assert_no_digit_run(vg, &digit_run(NUMBERS_DIGITS));
    assert_no_digit_run(vg, &digit_run(TENS_DIGITS));
    // ... and as the decoder wrote it, "60 5 80 3 90 7".
    assert_no_digit_run(vg, &digit_run("605803907"));
    assert_no_digit_run(vg, &digit_run("30748"));

    let raw = std::fs::read_to_string(&vg.events).unwrap();
    let log = vg.log();
    let mut off_list = fields::events_file_problems(&raw);
    off_list.extend(fields::log_problems(&log));
    assert!(
        off_list.is_empty(),
        "fields off the allow-lists:\n{}",
        off_list.join("\n")
    );
    let (raw_l, log_l) = (raw.to_lowercase(), log.to_lowercase());
    for w in SECRET_WORDS {
        assert!(!raw_l.contains(w), "`{w}` in the events file");
        assert!(!log_l.contains(w), "`{w}` in the log");
    }
}

/// `digits` as a run, written any of the ways [`digits_4271`] knows.
fn digit_run(digits: &str) -> regex::Regex {
    let run: Vec<String> = digits.chars().map(|c| c.to_string()).collect();
    regex::Regex::new(&format!(
        r"(?:^|[^0-9.]){}(?:[^0-9]|$)",
        run.join("[ ,.-]*")
    ))
    .unwrap()
}

/// No event and no log line (past its timestamp) holds the digit run.
fn assert_no_digit_run(vg: &Voxgate, digits: &regex::Regex) {
    let raw = std::fs::read_to_string(&vg.events).unwrap();
    let log = vg.log();
    // Not what we look for: the log's timestamps (read from the level on)
    // and the ports of socket addresses in events and logs (the tests draw
    // ports from 30000 up, where 30742 and 30748 are: most likely what made
    // a fresh machine's CI run fail here, on a log line we did not keep).
    let address =
        regex::Regex::new(r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]*\]|localhost):\d+").unwrap();
    let scrub = |s: &str| address.replace_all(s, "ADDR").into_owned();
    let body = |l: &str| scrub(l.split_once('Z').map_or(l, |(_, rest)| rest));
    for (n, line) in raw.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            !digits.is_match(&scrub(&v["event"].to_string())),
            "the digit passphrase in events line {}",
            n + 1
        );
    }
    for (n, line) in log.lines().enumerate() {
        let line = body(line);
        assert!(
            !digits.is_match(&line),
            "the digit passphrase in log line {}: {line}",
            n + 1
        );
    }
}

#[test]
fn spoken_passphrases_are_judged_over_rtp() {
    let http = free_port();
    let vg = start(
        "passphrase-calls",
        // An `http: { listen: … }` line means common's SIP `listen:` must be ours.
        &format!(
            "listen: 127.0.0.1:{{port}}\nhttp: {{ listen: 127.0.0.1:{http}, public_url: 'http://127.0.0.1:{http}' }}\n"
        ),
        &[
            ("acct_phrase", NUM_PHRASE, PHRASE),
            ("acct_digits", NUM_DIGITS, "4271"),
            ("acct_digit_words", NUM_DIGIT_WORDS, "four two seven one"),
        ],
    );

    // A near miss: "Green giraffe." is speech, heard, and not the phrase.
    let evs = call(&vg, NUM_PHRASE, Some("wrong_passphrase.wav"));
    assert_outcome(
        &evs,
        "failure",
        "failed",
        "auth_failed",
        "no_match",
        "wrong phrase",
    );
    let rec = recognition(&evs, "wrong phrase");
    assert_eq!(rec["matched"], false, "{rec}");
    assert!(rec["words"].as_u64().unwrap() >= 1, "{rec}");

    // Line noise: whatever the recogniser makes of it, never a pass.
    let evs = call(&vg, NUM_PHRASE, Some("line_noise.wav"));
    assert_ne!(
        exit_of_passphrase(&evs),
        "success",
        "noise:\n{}",
        pretty(&evs)
    );
    assert!(
        events_named(&evs, "auth_passed").is_empty(),
        "{}",
        pretty(&evs)
    );
    assert!(
        !entered(&evs).contains(&"ok".to_string()),
        "{}",
        pretty(&evs)
    );
    assert!(
        events_named(&evs, "recognition")
            .iter()
            .all(|r| r["event"]["matched"] == false),
        "{}",
        pretty(&evs)
    );

    // Silence: the caller says nothing.
    let evs = call(&vg, NUM_PHRASE, None);
    assert_outcome(
        &evs,
        "no_input",
        "silent",
        "auth_no_input",
        "no_input",
        "silence",
    );
    assert!(
        events_named(&evs, "recognition").is_empty(),
        "{}",
        pretty(&evs)
    );

    // The genuine phrase passes (one or two failures above stay under the
    // lockout).
    let evs = call(&vg, NUM_PHRASE, Some("purple_elephant_dance.wav"));
    assert_passed(&evs, "genuine phrase");
    let rec = recognition(&evs, "genuine phrase");
    assert_eq!(rec["matched"], true, "{rec}");
    assert_eq!(rec["words"], 3, "{rec}");
    assert!(rec["confidence"].as_f64().unwrap() >= 0.5, "{rec}");

    // A digit passphrase, enrolled as digits and as number words, spoken as
    // "four two seven one" (digits mode for the recogniser).
    for (from, what) in [
        (NUM_DIGITS, "digits enrolled"),
        (NUM_DIGIT_WORDS, "number words enrolled"),
    ] {
        let evs = call(&vg, from, Some("account_4271.wav"));
        assert_passed(&evs, what);
        assert_eq!(recognition(&evs, what)["matched"], true);
    }

    // Every utterance decoded above is in the decoders' latency histogram
    // (wrong phrase, genuine phrase, two digit strings; noise may add some).
    let (status, _, body) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    let sample = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
    };
    let decoded = sample("voxgate_recognition_seconds_count");
    assert!(decoded >= 4.0, "{body}");
    assert!(sample("voxgate_recognition_seconds_sum") > 0.0, "{body}");
    assert_eq!(sample("voxgate_asr_queue_depth"), 0.0);

    assert_nothing_leaked(&vg);
}

#[test]
fn failures_across_calls_lock_the_passphrase() {
    // The default policy: five failures within 24 h lock.
    let vg = start(
        "passphrase-lockout",
        "",
        &[
            ("acct_locked", NUM_LOCKED, PHRASE),
            ("acct_other", NUM_OTHER, PHRASE),
        ],
    );
    for n in 1..=5 {
        let evs = call(&vg, NUM_LOCKED, Some("wrong_passphrase.wav"));
        let what = format!("wrong phrase, call {n}");
        assert_outcome(&evs, "failure", "failed", "auth_failed", "no_match", &what);
        assert_eq!(recognition(&evs, &what)["matched"], false);
    }
    // The sixth call says the right phrase: locked, at once, without listening.
    let speech_lines = vg.log().matches("speech recognised").count();
    let evs = call(&vg, NUM_LOCKED, Some("purple_elephant_dance.wav"));
    assert_outcome(
        &evs,
        "failure",
        "failed",
        "auth_failed",
        "locked",
        "right phrase, locked",
    );
    assert!(
        events_named(&evs, "recognition").is_empty(),
        "nothing was recognised:\n{}",
        pretty(&evs)
    );
    assert!(
        events_named(&evs, "barge_in").is_empty(),
        "{}",
        pretty(&evs)
    );
    assert_eq!(
        vg.log().matches("speech recognised").count(),
        speech_lines,
        "the recogniser did not run for the locked call"
    );
    // The lockout is the account's: another account's caller passes.
    let evs = call(&vg, NUM_OTHER, Some("purple_elephant_dance.wav"));
    assert_passed(&evs, "another account");

    assert_nothing_leaked(&vg);
}

#[test]
fn real_voices_and_near_misses_over_rtp() {
    let vg = start(
        "passphrase-human",
        "",
        &[
            ("acct_human", NUM_HUMAN, HUMAN_DIGITS),
            ("acct_repeats", NUM_REPEATS, REPEATS_DIGITS),
            ("acct_numbers", NUM_NUMBERS, NUMBERS_DIGITS),
            ("acct_tens", NUM_TENS, TENS_DIGITS),
            ("acct_human_words", NUM_HUMAN_WORDS, HUMAN_WORDS),
            ("acct_phrase2", NUM_PHRASE, PHRASE),
        ],
    );
    let dir = scratch("passphrase-human-audio");

    // A near miss in a real voice: one digit changed.
    let near = allison_says("30748", &dir, "near");
    let evs = call(&vg, NUM_HUMAN, Some(near.to_str().unwrap()));
    assert_outcome(
        &evs,
        "failure",
        "failed",
        "auth_failed",
        "no_match",
        "one digit changed",
    );
    assert_eq!(recognition(&evs, "one digit changed")["matched"], false);

    // A near miss in words: one word dropped ("purple elephant").
    let evs = call(&vg, NUM_PHRASE, Some("purple_elephant.wav"));
    assert_outcome(
        &evs,
        "failure",
        "failed",
        "auth_failed",
        "no_match",
        "one word dropped",
    );

    // Mains hum alone (50 Hz with its odd harmonics): never a pass.
    let hum = dir.join("hum-raw.wav");
    sox(
        &["-n", "-r", "8000", "-c", "1", "-b", "16"],
        &hum,
        &[["synth", "3"].as_slice(), MAINS_HUM].concat(),
    );
    let hum = with_noise_floor(&hum, &dir, "hum");
    let evs = call(&vg, NUM_HUMAN, Some(hum.to_str().unwrap()));
    assert_ne!(
        exit_of_passphrase(&evs),
        "success",
        "hum:\n{}",
        pretty(&evs)
    );
    assert!(
        events_named(&evs, "auth_passed").is_empty(),
        "{}",
        pretty(&evs)
    );

    // The genuine passphrase in a real human voice passes.
    let said = allison_says(HUMAN_DIGITS, &dir, "genuine");
    let evs = call(&vg, NUM_HUMAN, Some(said.to_str().unwrap()));
    assert_passed(&evs, "real voice, right digits");
    assert_eq!(recognition(&evs, "real voice")["matched"], true);

    // Digits next to a repeated one, in her voice: decoded one digit a
    // token, not as the number "8639899".
    let said = allison_says(REPEATS_DIGITS, &dir, "repeats");
    let evs = call(&vg, NUM_REPEATS, Some(said.to_str().unwrap()));
    assert_passed(&evs, "real voice, a repeated digit");

    // A caller who says the digits as numbers, "nineteen fourteen three":
    // one digit a token the decoder heard too few digits, so it reads the
    // answer again allowing numbers.
    let said = allison_words(NUMBERS_SAID, &dir, "numbers", |_| 300, &["norm", "-6"]);
    let said = with_noise_floor(&said, &dir, "numbers");
    let evs = call(&vg, NUM_NUMBERS, Some(said.to_str().unwrap()));
    assert_passed(&evs, "real voice, the digits said as numbers");

    // The same with a short pause inside each number, "sixty ... five":
    // the decoder writes "60 5", which is sixty-five, not 6 0 5.
    let said = allison_words(
        TENS_SAID,
        &dir,
        "tens",
        |i| if i % 2 == 0 { 120 } else { 350 },
        &["norm", "-6"],
    );
    let said = with_noise_floor(&said, &dir, "tens");
    let evs = call(&vg, NUM_TENS, Some(said.to_str().unwrap()));
    assert_passed(&evs, "real voice, numbers with a pause inside");

    // A caller who stops for a second after two of the five digits (reading
    // them off a card): two digits cannot hold the enrolled five, so the
    // turn waits `incomplete_timeout` (1.5 s) rather than ending on the
    // 800 ms end-of-speech timer, and hears the rest.
    let said = allison_joined(
        HUMAN_DIGITS,
        &dir,
        "paused",
        |i| if i == 1 { 1000 } else { 300 },
        &["norm", "-6"],
    );
    let said = with_noise_floor(&said, &dir, "paused");
    let evs = call(&vg, NUM_HUMAN, Some(said.to_str().unwrap()));
    assert_passed(&evs, "real voice, a second's pause after two digits");

    // A word phrase in her voice with a second's pause after two of its
    // three words: "alpha tango" already spans the phrase's least length,
    // so the audio alone would end the turn on the 800 ms timer; the
    // speculative decode of the pause heard fewer syllables than the
    // phrase has, so the turn waits `incomplete_timeout` and hears "monday".
    let said = allison_words(
        HUMAN_WORDS_SAID,
        &dir,
        "words-paused",
        |i| if i == 1 { 1000 } else { 300 },
        &["norm", "-6"],
    );
    let said = with_noise_floor(&said, &dir, "words-paused");
    let evs = call(&vg, NUM_HUMAN_WORDS, Some(said.to_str().unwrap()));
    assert_passed(&evs, "real voice, a second's pause after two words");

    // The same on a bad line, hum louder than her quieter digits: the
    // endpointer measures level above the telephone band's lower edge, so
    // the hum's harmonics do not hold its noise floor up and end the turn
    // before the last digit (with a 100 Hz cut-off it heard "3074").
    let said = allison_over_hum(HUMAN_DIGITS, &dir, "hum-genuine");
    let evs = call(&vg, NUM_HUMAN, Some(said.to_str().unwrap()));
    assert_passed(&evs, "real voice over mains hum, right digits");

    assert_nothing_leaked(&vg);
}

/// Seconds since midnight of an event's `ts` (RFC 3339, UTC, milliseconds).
fn ts_secs(ev: &Value) -> f64 {
    let ts = ev["ts"].as_str().unwrap_or_else(|| panic!("no ts: {ev}"));
    let (date, time) = ts.split_once('T').unwrap();
    let day = voxgate::store::report::civil_day(date).unwrap_or_else(|| panic!("date: {ts}"));
    let hms: Vec<f64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse().unwrap())
        .collect();
    // Whole days too: a call across midnight UTC must not go negative.
    day as f64 * 86_400.0 + hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
}

/// Speculative decoding over a whole call: with a 5 s end-of-speech timer
/// the right phrase is decided at the caller's first pause. An ordering,
/// not a speed: the caller's audio starts after the call's first event, so
/// the timer cannot end before that event + the lead-in + the speech + 5 s;
/// the decision must come before (it would come after without speculation).
#[test]
fn a_whole_passphrase_is_decided_before_the_end_of_speech_timer() {
    let vg = start_flows(
        "passphrase-early",
        "tests/flows_passphrase_early",
        "listen: 127.0.0.1:{port}\npassphrase: { speculate_after: 200ms }\n",
        &[("acct_phrase", NUM_PHRASE, PHRASE)],
    );
    let dir = scratch("passphrase-early-sipp");
    // 2.5 s lead-in, the phrase cut at its last sound over -45 dBFS (the
    // endpointer's floor is lower: its last speech frame is no earlier),
    // 3 s of silence (then RTP stops).
    let (lead, said, tail) = (
        dir.join("lead.ulaw"),
        dir.join("said.ulaw"),
        dir.join("tail.ulaw"),
    );
    silence(2.5, &lead);
    silence(3.0, &tail);
    let src = root().join("flows/callers/purple_elephant_dance.wav");
    sox(
        &[
            src.to_str().unwrap(),
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            "u-law",
            "-t",
            "raw",
        ],
        &said,
        &["reverse", "silence", "1", "0.01", "-45d", "reverse"],
    );
    let mut all = std::fs::read(&lead).unwrap();
    let said = std::fs::read(&said).unwrap();
    let speech_end = (all.len() + said.len()) as f64 / 8000.0;
    all.extend(said);
    all.extend(std::fs::read(&tail).unwrap());
    std::fs::write(dir.join("caller.ulaw"), all).unwrap();
    let evs = passphrase_call(
        &vg,
        &dir,
        NUM_PHRASE,
        "the phrase with a 5 s end-of-speech timer",
        Duration::from_secs(60),
    );
    assert_passed(&evs, "early decision");
    let first = ts_secs(&evs[0]);
    let rec = events_named(&evs, "recognition");
    assert_eq!(rec.len(), 1, "{}", pretty(&evs));
    let decided = ts_secs(rec[0]) - first;
    assert!(
        decided < speech_end + 5.0,
        "decided {decided:.1} s after the call's first event; the timer ends no earlier than {:.1} s:\n{}",
        speech_end + 5.0,
        pretty(&evs)
    );
    assert_nothing_leaked(&vg);
}

/// `passphrase.confirm: whisper-base`: a similar-sounding near miss that
/// Whisper tiny.en, hinted with the enrolled phrase, hears as the phrase
/// ("purple elephant dense"; tests/confirm.rs shows tiny.en's answer) is
/// refused because Whisper base does not hear the phrase in it; the genuine
/// phrase still passes. Both with the decode at the end of the turn and
/// with speculative decoding (the confirmation sits under both).
#[test]
fn with_confirmation_a_similar_sounding_near_miss_is_refused() {
    assert!(
        models().join("whisper-base/model.bin").exists(),
        "Whisper base is missing: run scripts/fetch-whisper base (scripts/test.sh does)"
    );
    for (name, passphrase) in [
        ("passphrase-confirm", "{ confirm: whisper-base }"),
        (
            "passphrase-confirm-early",
            "{ confirm: whisper-base, speculate_after: 200ms }",
        ),
    ] {
        let vg = start(
            name,
            &format!("passphrase: {passphrase}\n"),
            &[("acct_confirm", NUM_PHRASE, PHRASE)],
        );
        assert!(
            vg.log()
                .contains("word passphrases confirmed by whisper base"),
            "{name}: serve did not load the second model:\n{}",
            vg.log()
        );
        let evs = call(&vg, NUM_PHRASE, Some("purple_elephant_dense.wav"));
        assert_outcome(
            &evs,
            "failure",
            "failed",
            "auth_failed",
            "no_match",
            &format!("{name}: similar-sounding near miss"),
        );
        assert_eq!(recognition(&evs, name)["matched"], false);

        let evs = call(&vg, NUM_PHRASE, Some("purple_elephant_dance.wav"));
        assert_passed(&evs, &format!("{name}: genuine phrase"));
        assert_eq!(recognition(&evs, name)["matched"], true);
        assert_nothing_leaked(&vg);
        // The near miss's word stays out of the events and the log too.
        let (raw, log) = (
            std::fs::read_to_string(&vg.events).unwrap().to_lowercase(),
            vg.log().to_lowercase(),
        );
        assert!(!raw.contains("dense") && !log.contains("dense"), "{name}");
    }
}
