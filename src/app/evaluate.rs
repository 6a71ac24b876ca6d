//! `voxgate evaluate-passphrases MANIFEST.tsv`: the passphrase check of
//! `verify_passphrase` run over a set of recordings, each heard as on a call
//! (telephone quality, endpointer, recogniser with the enrolled phrase as its
//! hint) and judged by the same matcher and confidence gate. Prints
//! true-accept and false-accept rates per set and condition, a sweep of the
//! confidence gate, the gate calibrated on the manifest's `train` split and
//! judged on its `test` split, the no-speech gate's margins, and the CPU
//! cost per check. Never prints or writes a transcript.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use std::sync::Mutex;
use zeroize::Zeroizing;

use crate::asr::answer::AnswerLength;
use crate::asr::recording::{hear_file, Simulated};
use crate::asr::speculate::{Complete, EarlyAnswer, DEFAULT_AFTER};
use crate::asr::whisper::{Transcript, WhisperEngine};
use crate::asr::{phrase, AsrError, Heard, Hints, IncompleteWait, SpeechEngine, SpeechResult};

/// What to run and how to judge (the command line's options).
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Speech models directory.
    pub models: PathBuf,
    /// Beam width (1 = greedy).
    pub beam: usize,
    /// The confidence gate of word passphrases to report (as
    /// `passphrase.min_confidence`).
    pub min_confidence: f32,
    /// The gate of digit passphrases (`passphrase.min_confidence_digits`).
    pub min_confidence_digits: f32,
    /// The enrolled word phrase as the recogniser's hint.
    pub hint: bool,
    /// Encode the short window spliced onto a silent one's encoding
    /// instead of the whole 30 s.
    pub short_window: bool,
    /// Only these sets (empty: all).
    pub sets: Vec<String>,
    /// Only these conditions (empty: all).
    pub conditions: Vec<String>,
    /// Per-check numbers to this TSV.
    pub dump: Option<PathBuf>,
    /// Measure decision latency with and without speculative decoding
    /// instead of the accept rates ([`latency`]).
    pub latency: bool,
    /// The pause before a speculative decode (None: the default).
    pub speculate_after: Option<std::time::Duration>,
    /// When tiny.en's words match a word phrase, decode the utterance
    /// again with Whisper base (`models/whisper-base`), with and without
    /// the phrase as its hint, and report the cascade ([`confirm`]).
    pub confirm: bool,
    /// With `latency`: also speculate at every pause (no gating), to compare.
    pub every_pause: bool,
    /// The end-of-speech wait while the audio cannot hold the enrolled
    /// passphrase (`verify_passphrase`'s `incomplete_timeout`); None: off.
    pub incomplete_timeout: Option<std::time::Duration>,
}

mod confirm;

mod latency;

/// One recording of the manifest.
struct Row {
    file: PathBuf,
    enrolled: String,
    genuine: bool,
    set: String,
    condition: String,
    kind: String,
    /// `train` (thresholds are fitted on it) or `test` (reported).
    split: String,
}

/// What one check gave.
struct Checked {
    row: Row,
    /// The enrolled phrase is a digit string (its own gate).
    digits: bool,
    /// The endpointer cut out an utterance and the decoder ran.
    heard: bool,
    /// Words matched the enrolled phrase (before any gate).
    words_match: bool,
    /// Words between what was heard and the phrase (0 when nothing was heard
    /// and the phrase is empty; the phrase's length when nothing was heard).
    word_edits: usize,
    /// Recogniser confidence (0 when nothing was heard).
    confidence: f32,
    /// Whisper's no-speech probability (1 when nothing was heard).
    no_speech: f32,
    cpu_ms: f64,
    /// The second model's opinions (with `--confirm`, when tiny.en's words
    /// matched a word phrase).
    second: Option<confirm::Second>,
}

/// The confidence gates of word and digit passphrases.
#[derive(Clone, Copy, Debug)]
struct Gates {
    words: f32,
    digits: f32,
}

impl Gates {
    fn both(g: f32) -> Gates {
        Gates {
            words: g,
            digits: g,
        }
    }
}

impl Checked {
    fn accepted(&self, gates: Gates, no_speech_gate: f32) -> bool {
        let gate = if self.digits {
            gates.digits
        } else {
            gates.words
        };
        self.heard
            && self.no_speech <= no_speech_gate
            && self.words_match
            && self.confidence >= gate
    }
}

/// The engine as `serve` runs it, but keeping the last transcript's numbers
/// (the no-speech gate is applied here afterwards, so it can be swept).
struct Recording {
    engine: WhisperEngine,
    last: Mutex<Option<Transcript>>,
    /// The utterance last decoded (for the second model).
    pcm: Mutex<Vec<i16>>,
}

impl SpeechEngine for Recording {
    fn name(&self) -> &str {
        "whisper (evaluation)"
    }
    fn speaks(&self, language: Option<&str>) -> bool {
        self.engine.speaks(language)
    }
    fn recognize(&self, pcm_8k: &[i16], hints: &Hints) -> Result<Heard, AsrError> {
        let t = self.engine.transcribe(pcm_8k, hints)?;
        let heard = Heard::Speech(SpeechResult {
            text: t.text.clone(),
            confidence: t.confidence,
        });
        if let Ok(mut last) = self.last.lock() {
            *last = Some(t);
        }
        if let Ok(mut pcm) = self.pcm.lock() {
            pcm.clear();
            pcm.extend_from_slice(pcm_8k);
        }
        Ok(heard)
    }
}

fn read_manifest(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 && f.len() != 7 {
            bail!(
                "{}:{}: expected 6 or 7 tab-separated columns",
                path.display(),
                n + 1
            );
        }
        let genuine = match f[2] {
            "accept" => true,
            "reject" => false,
            o => bail!(
                "{}:{}: expect `{o}`: accept or reject",
                path.display(),
                n + 1
            ),
        };
        let split = f.get(6).copied().unwrap_or("test");
        if split != "train" && split != "test" {
            bail!(
                "{}:{}: split `{split}`: train or test",
                path.display(),
                n + 1
            );
        }
        rows.push(Row {
            file: dir.join(f[0]),
            enrolled: f[1].to_string(),
            genuine,
            set: f[3].to_string(),
            condition: f[4].to_string(),
            kind: f[5].to_string(),
            split: split.to_string(),
        });
    }
    Ok(rows)
}

#[derive(Default)]
struct Tally {
    genuine: u32,
    true_accepts: u32,
    impostors: u32,
    false_accepts: u32,
}

impl Tally {
    fn add(&mut self, genuine: bool, accepted: bool) {
        if genuine {
            self.genuine += 1;
            self.true_accepts += u32::from(accepted);
        } else {
            self.impostors += 1;
            self.false_accepts += u32::from(accepted);
        }
    }
    fn of<'a>(checks: impl Iterator<Item = &'a Checked>, gate: Gates, ns: f32) -> Tally {
        let mut t = Tally::default();
        for c in checks {
            t.add(c.row.genuine, c.accepted(gate, ns));
        }
        t
    }
    fn ta(&self) -> f64 {
        ratio(self.true_accepts, self.genuine)
    }
    fn fa(&self) -> f64 {
        ratio(self.false_accepts, self.impostors)
    }
}

fn ratio(n: u32, d: u32) -> f64 {
    if d == 0 {
        0.0
    } else {
        f64::from(n) / f64::from(d)
    }
}

fn pct(n: u32, d: u32) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1} % ({n}/{d})", 100.0 * f64::from(n) / f64::from(d))
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Target per attempt (issue 14): false accepts at most this share.
const FA_TARGET: f64 = 0.005;

/// The confidence gate fitted on `checks`: the most true accepts with false
/// accepts ≤ [`FA_TARGET`] and no non-speech accepted; the middle of the
/// range of gates that reach it. None if no gate meets the limits.
fn calibrate(checks: &[&Checked], ns: f32) -> Option<f32> {
    let gates: Vec<f32> = (0..100).map(|g| g as f32 / 100.0).collect();
    let ok: Vec<(f32, u32)> = gates
        .iter()
        .filter_map(|&g| {
            let g = Gates::both(g);
            let t = Tally::of(checks.iter().copied(), g, ns);
            let nonspeech = checks
                .iter()
                .any(|c| c.row.set == "nonspeech" && c.accepted(g, ns));
            (t.fa() <= FA_TARGET && !nonspeech).then_some((g.words, t.true_accepts))
        })
        .collect();
    let best = ok.iter().map(|&(_, n)| n).max()?;
    let at_best: Vec<f32> = ok
        .iter()
        .filter(|&&(_, n)| n == best)
        .map(|&(g, _)| g)
        .collect();
    let (lo, hi) = (at_best[0], at_best[at_best.len() - 1]);
    Some(((lo + hi) / 2.0 * 100.0).round() / 100.0)
}

fn table(title: &str, checks: &[&Checked], gate: Gates, ns: f32) {
    println!("\n{title}\n");
    println!("| set | condition | true accept | false accept |");
    println!("|---|---|---|---|");
    let mut by: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
    for c in checks {
        by.entry((c.row.set.as_str(), c.row.condition.as_str()))
            .or_default()
            .add(c.row.genuine, c.accepted(gate, ns));
    }
    let mut sets: BTreeMap<&str, Tally> = BTreeMap::new();
    for c in checks {
        sets.entry(c.row.set.as_str())
            .or_default()
            .add(c.row.genuine, c.accepted(gate, ns));
    }
    for ((set, cond), t) in &by {
        println!(
            "| {set} | {cond} | {} | {} |",
            pct(t.true_accepts, t.genuine),
            pct(t.false_accepts, t.impostors)
        );
    }
    for (set, t) in &sets {
        println!(
            "| **{set}** | all | {} | {} |",
            pct(t.true_accepts, t.genuine),
            pct(t.false_accepts, t.impostors)
        );
    }
    let all = Tally::of(checks.iter().copied(), gate, ns);
    println!(
        "| **all** | all | {} | {} |",
        pct(all.true_accepts, all.genuine),
        pct(all.false_accepts, all.impostors)
    );
}

fn dump(path: &Path, checked: &[Checked]) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::from(
        "file\tset\tcondition\tkind\tsplit\tgenuine\theard\twords_match\tconfidence\tno_speech\tcpu_ms\tmode\tword_edits\tconfirm_hint_match\tconfirm_hint_conf\tconfirm_hint_cpu_ms\tconfirm_plain_match\tconfirm_plain_conf\tconfirm_plain_cpu_ms\n",
    );
    for c in checked {
        let name = c
            .row
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.4}\t{:.4}\t{:.1}\t{}\t{}\t{}",
            name.unwrap_or_default(),
            c.row.set,
            c.row.condition,
            c.row.kind,
            c.row.split,
            u8::from(c.row.genuine),
            u8::from(c.heard),
            u8::from(c.words_match),
            c.confidence,
            c.no_speech,
            c.cpu_ms,
            if c.digits { "digits" } else { "words" },
            c.word_edits,
            confirm::dump_columns(c.second.as_ref())
        );
    }
    std::fs::write(path, out).with_context(|| format!("{}", path.display()))
}

/// What `verify_passphrase` asks the recogniser for `row` (the enrolled
/// phrase as hint unless `--no-hint`; digits mode for a digit string).
fn spec_for(row: &Row, o: &EvalOptions) -> crate::call::RecognitionSpec {
    let digits = phrase::is_digits(&row.enrolled);
    // As verify_passphrase sets it: the enrolled answer's length.
    let answer = if digits {
        AnswerLength::digits(phrase::tokens(&row.enrolled).len())
    } else {
        AnswerLength::phrase(&row.enrolled)
    };
    let incomplete = o
        .incomplete_timeout
        .map(|timeout| IncompleteWait { answer, timeout });
    crate::call::RecognitionSpec {
        phrases: if digits || !o.hint {
            Vec::new()
        } else {
            vec![row.enrolled.clone()]
        },
        digits_only: digits,
        language: None,
        timers: crate::asr::Timers {
            incomplete,
            ..crate::asr::Timers::RECORDING
        },
        // Speculating as verify_passphrase does: a pause heard short of the
        // answer makes the turn wait for the rest, which can change what is
        // decided on (decodes are taken as instant here; --latency times them).
        early: Some(EarlyAnswer {
            after: o.speculate_after.unwrap_or(DEFAULT_AFTER),
            complete: if digits {
                Complete::Digits(answer.units)
            } else {
                Complete::Phrase(Zeroizing::new(row.enrolled.clone()))
            },
        }),
        // The evaluation runs the second model itself (both hints, timed).
        confirm: false,
        digit_answer: digits.then_some(answer.units),
    }
}

/// Run the evaluation over the manifest's recordings.
pub fn evaluate(manifest: &Path, o: &EvalOptions) -> anyhow::Result<ExitCode> {
    let rows: Vec<Row> = read_manifest(manifest)?
        .into_iter()
        .filter(|r| o.sets.is_empty() || o.sets.contains(&r.set))
        .filter(|r| o.conditions.is_empty() || o.conditions.contains(&r.condition))
        .collect();
    let opts = crate::asr::whisper::LoadOptions {
        replicas: 1,
        beam_size: o.beam.max(1),
        short_window: o.short_window,
        ..Default::default()
    };
    let dir = o.models.join(crate::asr::WHISPER_DIR);
    let engine = Recording {
        engine: WhisperEngine::load_with(&dir, &opts)?,
        last: Mutex::new(None),
        pcm: Mutex::new(Vec::new()),
    };
    let second = if o.confirm {
        let started = std::time::Instant::now();
        let rss0 = confirm::rss_kib();
        let c = crate::asr::confirm::Confirmer::load(&o.models, &opts)?.with_context(|| {
            format!(
                "--confirm: no {} in {} (scripts/fetch-whisper base)",
                crate::asr::confirm::CONFIRM_DIR,
                o.models.display()
            )
        })?;
        println!(
            "second model: whisper base loaded in {} ms, RSS +{} MiB",
            started.elapsed().as_millis(),
            confirm::rss_kib().saturating_sub(rss0) / 1024
        );
        Some(c)
    } else {
        None
    };
    if o.latency {
        return latency::run(&rows, &engine.engine, o);
    }
    let mut checked = Vec::with_capacity(rows.len());
    for row in rows {
        let digits = phrase::is_digits(&row.enrolled);
        let spec = spec_for(&row, o);
        if let Ok(mut last) = engine.last.lock() {
            *last = None;
        }
        let cpu0 = super::process_cpu();
        let heard = hear_file(&engine, &row.file, &spec).map_err(|e| anyhow::anyhow!(e))?;
        let cpu_ms = (super::process_cpu() - cpu0).as_secs_f64() * 1000.0;
        let last = engine.last.lock().ok().and_then(|mut l| l.take());
        let (heard, words_match, word_edits, confidence, no_speech) = match (heard, last) {
            (
                Simulated::Heard {
                    heard: Heard::Speech(r),
                    ..
                },
                Some(t),
            ) => (
                true,
                phrase::matches(&row.enrolled, &r.text),
                phrase::word_edits(&row.enrolled, &r.text),
                t.confidence,
                t.no_speech_prob,
            ),
            _ => (false, false, phrase::tokens(&row.enrolled).len(), 0.0, 1.0),
        };
        let second = match &second {
            Some(c) if heard && words_match && !digits => {
                let pcm = engine.pcm.lock().map(|p| p.clone()).unwrap_or_default();
                Some(confirm::Second::of(c, &pcm, &row.enrolled)?)
            }
            _ => None,
        };
        checked.push(Checked {
            row,
            digits,
            heard,
            words_match,
            word_edits,
            confidence,
            no_speech,
            cpu_ms,
            second,
        });
    }
    if let Some(path) = &o.dump {
        dump(path, &checked)?;
    }
    let ns = engine.engine.no_speech_gate();
    let gate = Gates {
        words: o.min_confidence,
        digits: o.min_confidence_digits,
    };
    let train: Vec<&Checked> = checked.iter().filter(|c| c.row.split == "train").collect();
    let test: Vec<&Checked> = checked.iter().filter(|c| c.row.split == "test").collect();
    let all: Vec<&Checked> = checked.iter().collect();

    println!(
        "beam {}, enrolled phrase as hint: {}, encoder window: {}, no-speech gate {ns}, speculating after {} ms as serve does (decodes instant), {} checks ({} train, {} test)",
        o.beam,
        o.hint,
        if o.short_window { "short, spliced" } else { "30 s" },
        o.speculate_after.unwrap_or(DEFAULT_AFTER).as_millis(),
        checked.len(),
        train.len(),
        test.len()
    );
    table(
        &format!(
            "Test split, confidence gates {} (words) and {} (digits), as configured:",
            gate.words, gate.digits
        ),
        &test,
        gate,
        ns,
    );
    // One gate per kind of passphrase, each fitted on its own train rows.
    let fit = |digits: bool| {
        let rows: Vec<&Checked> = train
            .iter()
            .copied()
            .filter(|c| c.digits == digits)
            .collect();
        if rows.is_empty() {
            None
        } else {
            calibrate(&rows, ns)
        }
    };
    match (fit(false), fit(true)) {
        (Some(words), Some(digits)) => {
            let g = Gates { words, digits };
            let t = Tally::of(train.iter().copied(), g, ns);
            println!(
                "\nGates fitted on the train split (most true accepts with false accept ≤ {:.1} % and no non-speech): words {words:.2}, digits {digits:.2} (train: {} / {})",
                FA_TARGET * 100.0,
                pct(t.true_accepts, t.genuine),
                pct(t.false_accepts, t.impostors)
            );
            table(
                &format!("Test split, gates {words:.2} (words) and {digits:.2} (digits), fitted on train:"),
                &test,
                g,
                ns,
            );
        }
        _ => println!("\nNo train split for both kinds, or no gate meets the limits: none fitted."),
    }

    println!("\n| impostor kind (all splits) | checks | false accept as configured |");
    println!("|---|---|---|");
    let mut kinds: BTreeMap<&str, Tally> = BTreeMap::new();
    for c in checked.iter().filter(|c| !c.row.genuine) {
        kinds
            .entry(c.row.kind.as_str())
            .or_default()
            .add(false, c.accepted(gate, ns));
    }
    for (k, t) in &kinds {
        println!(
            "| {k} | {} | {} |",
            t.impostors,
            pct(t.false_accepts, t.impostors)
        );
    }

    println!("\n| confidence gate | train true / false accept | test true / false accept |");
    println!("|---|---|---|");
    for g in [0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] {
        let a = Tally::of(train.iter().copied(), Gates::both(g), ns);
        let b = Tally::of(test.iter().copied(), Gates::both(g), ns);
        println!(
            "| {g:.1} | {:.1} / {:.2} % | {:.1} / {:.2} % |",
            100.0 * a.ta(),
            100.0 * a.fa(),
            100.0 * b.ta(),
            100.0 * b.fa()
        );
    }

    // The no-speech gate: how close speech and non-speech come to it.
    let mut speech_ns: Vec<f64> = all
        .iter()
        .filter(|c| c.row.genuine && c.heard && c.words_match)
        .map(|c| f64::from(c.no_speech))
        .collect();
    let mut noise_ns: Vec<f64> = all
        .iter()
        .filter(|c| c.row.set == "nonspeech" && c.heard)
        .map(|c| f64::from(c.no_speech))
        .collect();
    noise_ns.sort_by(f64::total_cmp);
    let nonspeech_total = all.iter().filter(|c| c.row.set == "nonspeech").count();
    println!(
        "\nNo-speech probability: genuine recognised right (n={}) p50 {:.2}, p95 {:.2}, max {:.2}; non-speech reaching the decoder {} of {}: min {:.2}",
        speech_ns.len(),
        percentile(&mut speech_ns, 0.5),
        percentile(&mut speech_ns, 0.95),
        speech_ns.last().copied().unwrap_or(0.0),
        noise_ns.len(),
        nonspeech_total,
        noise_ns.first().copied().unwrap_or(f64::NAN),
    );
    let lost = all
        .iter()
        .filter(|c| c.row.genuine && c.heard && c.words_match && c.no_speech > ns)
        .count();
    println!("genuine with the right words dropped by the no-speech gate: {lost}");
    let nonspeech_accepted = all
        .iter()
        .filter(|c| c.row.set == "nonspeech" && c.accepted(Gates::both(0.0), 1.0))
        .count();
    println!("non-speech accepted at any gate (no gates at all): {nonspeech_accepted}");

    let mut cpu: Vec<f64> = checked.iter().map(|c| c.cpu_ms).collect();
    let (p50, p95) = (percentile(&mut cpu, 0.5), percentile(&mut cpu, 0.95));
    println!("CPU per check (endpointer + decode, one thread): p50 {p50:.0} ms, p95 {p95:.0} ms");
    if second.is_some() {
        confirm::report(&checked, gate, ns);
    }
    Ok(ExitCode::SUCCESS)
}
