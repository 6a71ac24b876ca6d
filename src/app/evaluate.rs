//! `voxgate evaluate-passphrases MANIFEST.tsv`: the passphrase check of
//! `verify_passphrase` run over a set of recordings, each heard as on a call
//! (telephone quality, endpointer, recogniser with the enrolled phrase as its
//! hint) and judged by the same matcher and confidence gate. Prints
//! true-accept and false-accept rates per set and condition, a sweep of the
//! confidence gate, and the CPU cost per check. Never prints a transcript.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::asr::recording::{hear_file, Simulated};
use crate::asr::{phrase, Heard};

/// One recording of the manifest.
struct Row {
    file: PathBuf,
    enrolled: String,
    genuine: bool,
    set: String,
    condition: String,
    kind: String,
}

/// What one check gave.
struct Checked {
    row: Row,
    /// Words matched the enrolled phrase (before the confidence gate).
    words_match: bool,
    /// Recogniser confidence (0 when nothing was heard).
    confidence: f32,
    cpu_ms: f64,
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
        if f.len() != 6 {
            bail!(
                "{}:{}: expected 6 tab-separated columns",
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
        rows.push(Row {
            file: dir.join(f[0]),
            enrolled: f[1].to_string(),
            genuine,
            set: f[3].to_string(),
            condition: f[4].to_string(),
            kind: f[5].to_string(),
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
}

fn pct(n: u32, d: u32) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1} %", 100.0 * f64::from(n) / f64::from(d))
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

/// Run the evaluation; `beam` 1 is greedy decoding.
pub fn evaluate(
    manifest: &Path,
    models: &Path,
    beam: usize,
    min_confidence: f32,
    hint: bool,
) -> anyhow::Result<ExitCode> {
    let rows = read_manifest(manifest)?;
    let opts = crate::asr::whisper::LoadOptions {
        replicas: 1,
        beam_size: beam.max(1),
        ..Default::default()
    };
    let engine = crate::asr::load_with(models, &opts)?;
    let mut checked = Vec::with_capacity(rows.len());
    for row in rows {
        let digits = phrase::is_digits(&row.enrolled);
        let spec = crate::call::RecognitionSpec {
            phrases: if digits || !hint {
                Vec::new()
            } else {
                vec![row.enrolled.clone()]
            },
            digits_only: digits,
            language: None,
            timers: crate::asr::Timers::RECORDING,
        };
        let cpu0 = super::process_cpu();
        let heard = hear_file(&*engine, &row.file, &spec).map_err(|e| anyhow::anyhow!(e))?;
        let cpu_ms = (super::process_cpu() - cpu0).as_secs_f64() * 1000.0;
        let (words_match, confidence) = match heard {
            Simulated::Heard {
                heard: Heard::Speech(r),
                ..
            } => (phrase::matches(&row.enrolled, &r.text), r.confidence),
            _ => (false, 0.0),
        };
        checked.push(Checked {
            row,
            words_match,
            confidence,
            cpu_ms,
        });
    }
    let accepted = |c: &Checked, gate: f32| c.words_match && c.confidence >= gate;

    println!(
        "beam {beam}, confidence gate {min_confidence}, enrolled phrase as hint: {hint}, {} checks",
        checked.len()
    );
    println!("\n| set | condition | genuine | true accept | impostors | false accept |");
    println!("|---|---|---|---|---|---|");
    let mut by: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut all = Tally::default();
    for c in &checked {
        let a = accepted(c, min_confidence);
        by.entry((c.row.set.clone(), c.row.condition.clone()))
            .or_default()
            .add(c.row.genuine, a);
        all.add(c.row.genuine, a);
    }
    for ((set, cond), t) in &by {
        println!(
            "| {set} | {cond} | {} | {} | {} | {} |",
            t.genuine,
            pct(t.true_accepts, t.genuine),
            t.impostors,
            pct(t.false_accepts, t.impostors)
        );
    }
    println!(
        "| all | all | {} | {} | {} | {} |",
        all.genuine,
        pct(all.true_accepts, all.genuine),
        all.impostors,
        pct(all.false_accepts, all.impostors)
    );

    println!("\n| impostor kind | checks | false accept |");
    println!("|---|---|---|");
    let mut kinds: BTreeMap<&str, Tally> = BTreeMap::new();
    for c in checked.iter().filter(|c| !c.row.genuine) {
        kinds
            .entry(c.row.kind.as_str())
            .or_default()
            .add(false, accepted(c, min_confidence));
    }
    for (k, t) in &kinds {
        println!(
            "| {k} | {} | {} |",
            t.impostors,
            pct(t.false_accepts, t.impostors)
        );
    }

    println!("\n| confidence gate | true accept | false accept |");
    println!("|---|---|---|");
    for g in [0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] {
        let mut t = Tally::default();
        for c in &checked {
            t.add(c.row.genuine, accepted(c, g));
        }
        println!(
            "| {g:.1} | {} | {} |",
            pct(t.true_accepts, t.genuine),
            pct(t.false_accepts, t.impostors)
        );
    }
    let mut cpu: Vec<f64> = checked.iter().map(|c| c.cpu_ms).collect();
    let (p50, p95) = (percentile(&mut cpu, 0.5), percentile(&mut cpu, 0.95));
    println!("\nCPU per check (endpointer + decode, one thread): p50 {p50:.0} ms, p95 {p95:.0} ms");
    let nonspeech_accepted = checked
        .iter()
        .filter(|c| c.row.set == "nonspeech" && accepted(c, 0.0))
        .count();
    println!("non-speech accepted at any gate: {nonspeech_accepted}");
    Ok(ExitCode::SUCCESS)
}
