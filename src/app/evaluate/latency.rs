//! `evaluate-passphrases --latency`: when each check is decided after the
//! caller's last word, with and without speculative decoding
//! (`asr::speculate`; optionally also decoding every pause, as before its
//! gating), and what it costs in decodes and CPU. Every recording is played
//! through the endpointer in simulated real time (`asr::simulate`); a decode
//! takes the CPU time it really took (one core per decode, as the speech
//! pool gives each). The verdicts with and without speculation are
//! compared. Never prints a transcript.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{percentile, EvalOptions, Row};
use crate::asr::simulate::{turn, Timed};
use crate::asr::speculate::{EarlyAnswer, Gating, DEFAULT_AFTER};
use crate::asr::{phrase, Heard, SpeechEngine};

/// One way of running a turn, and what it gave.
struct Run {
    timed: Timed,
    cpu_ms: f64,
    accepted: bool,
}

/// One recording judged each way.
struct Checked {
    file: String,
    set: String,
    condition: String,
    genuine: bool,
    off: Run,
    gated: Run,
    every: Option<Run>,
}

fn accepted(t: &Timed, enrolled: &str, gate: f32) -> bool {
    matches!(&t.heard, Some(Heard::Speech(r)) if phrase::matches(enrolled, &r.text) && r.confidence >= gate)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// "p50 / p95 / max" of the latencies of `runs`.
fn latencies<'a>(runs: impl Iterator<Item = &'a Run>) -> String {
    let mut v: Vec<f64> = runs.map(|r| ms(r.timed.latency)).collect();
    if v.is_empty() {
        return "-".into();
    }
    let max = v.iter().copied().fold(0.0, f64::max);
    format!(
        "{:.0} / {:.0} / {:.0} ms",
        percentile(&mut v, 0.5),
        percentile(&mut v, 0.95),
        max
    )
}

/// Run the rows each way and print the tables.
pub(super) fn run(
    rows: &[Row],
    engine: &dyn SpeechEngine,
    o: &EvalOptions,
) -> anyhow::Result<ExitCode> {
    let mut clock = || super::super::process_cpu();
    let mut all = Vec::with_capacity(rows.len());
    for row in rows {
        let digits = phrase::is_digits(&row.enrolled);
        let spec = super::spec_for(row, o);
        // As verify_passphrase asks for it.
        let early = spec
            .early
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the evaluation's spec speculates"))?;
        let gate = if digits {
            o.min_confidence_digits
        } else {
            o.min_confidence
        };
        let pcm = crate::asr::recording::phone_audio(&row.file).map_err(anyhow::Error::msg)?;
        let mut one = |early: Option<(&EarlyAnswer, Gating)>| -> anyhow::Result<Run> {
            let c0 = clock();
            let timed = turn(engine, &pcm, &spec, early, &mut clock)?;
            let cpu_ms = ms(clock().saturating_sub(c0));
            let accepted = accepted(&timed, &row.enrolled, gate);
            Ok(Run {
                timed,
                cpu_ms,
                accepted,
            })
        };
        let off = one(None)?;
        let gated = one(Some((&early, Gating::Plausible)))?;
        let every = if o.every_pause {
            Some(one(Some((&early, Gating::EveryPause)))?)
        } else {
            None
        };
        all.push(Checked {
            file: row
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            set: row.set.clone(),
            condition: row.condition.clone(),
            genuine: row.genuine,
            off,
            gated,
            every,
        });
    }
    if let Some(path) = &o.dump {
        dump(path, &all)?;
    }
    println!(
        "Decision latency after the end of speech (last speech frame to verdict; decodes take their CPU time, one core each), encoder window: {}, speculation after {} ms, end-of-speech timer {} ms, incomplete wait {}, {} checks\n",
        if o.short_window { "short, spliced" } else { "30 s" },
        o.speculate_after.unwrap_or(DEFAULT_AFTER).as_millis(),
        crate::asr::Timers::RECORDING.end_of_speech_timeout.as_millis(),
        o.incomplete_timeout
            .map_or("off".to_string(), |t| format!("{} ms", t.as_millis())),
        all.len()
    );
    let every = o.every_pause;
    println!(
        "| set | genuine decided | latency p50 / p95 / max, without | with speculation (gated) |{} decided early | verdicts differing |",
        if every { " every pause |" } else { "" }
    );
    println!(
        "|---|---:|---:|---:|{}---:|---:|",
        if every { "---:|" } else { "" }
    );
    let mut by: BTreeMap<&str, Vec<&Checked>> = BTreeMap::new();
    for b in &all {
        by.entry(b.set.as_str()).or_default().push(b);
    }
    by.insert("all", all.iter().collect());
    for (set, bs) in &by {
        let genuine: Vec<&&Checked> = bs
            .iter()
            .filter(|b| b.genuine && b.off.timed.heard.is_some() && b.gated.timed.heard.is_some())
            .collect();
        let early = genuine.iter().filter(|b| b.gated.timed.early).count();
        let differ = |f: fn(&Checked) -> Option<&Run>| {
            bs.iter()
                .filter(|b| f(b).is_some_and(|r| r.accepted != b.off.accepted))
                .count()
        };
        let every_col = if every {
            format!(
                " {} ({}/{} early) |",
                latencies(genuine.iter().filter_map(|b| b.every.as_ref())),
                genuine
                    .iter()
                    .filter(|b| b.every.as_ref().is_some_and(|r| r.timed.early))
                    .count(),
                genuine.len()
            )
        } else {
            String::new()
        };
        println!(
            "| {set} | {} | {} | {} |{every_col} {early}/{} | {}/{}{} |",
            genuine.len(),
            latencies(genuine.iter().map(|b| &b.off)),
            latencies(genuine.iter().map(|b| &b.gated)),
            genuine.len(),
            differ(|b| Some(&b.gated)),
            bs.len(),
            if every {
                format!(" (every pause: {})", differ(|b| b.every.as_ref()))
            } else {
                String::new()
            }
        );
    }
    println!(
        "\nVerdicts differ where a pause's decode heard less than the answer and the turn waited the incomplete wait for the rest (speculation only), or a caller went on after the whole answer."
    );
    // The callers who get in: how long they wait (a misheard caller is
    // not complete before the timer, and hears a re-prompt anyway).
    let passed: Vec<&Checked> = all
        .iter()
        .filter(|b| b.genuine && b.off.accepted && b.gated.accepted)
        .collect();
    println!(
        "\nGenuine and accepted both ways ({}): latency without {}, with speculation {}",
        passed.len(),
        latencies(passed.iter().map(|b| &b.off)),
        latencies(passed.iter().map(|b| &b.gated)),
    );
    let decodes = |f: &dyn Fn(&Checked) -> Option<&Run>| -> (u32, usize) {
        let runs: Vec<&Run> = all.iter().filter_map(f).collect();
        (runs.iter().map(|r| r.timed.decodes).sum(), runs.len())
    };
    let (d_off, _) = decodes(&|b| Some(&b.off));
    let (d_gated, _) = decodes(&|b| Some(&b.gated));
    let skipped: u32 = all.iter().map(|b| b.gated.timed.skipped).sum();
    let extra = all
        .iter()
        .filter(|b| b.gated.timed.decodes > b.off.timed.decodes)
        .count();
    print!(
        "Decodes: {d_off} without speculation, {d_gated} with ({extra} of {} checks paid extra decodes; {skipped} pauses not decoded)",
        all.len()
    );
    if every {
        let (d_every, _) = decodes(&|b| b.every.as_ref());
        print!(", {d_every} decoding every pause");
    }
    println!();
    let cpu = |f: &dyn Fn(&Checked) -> Option<&Run>| {
        let mut v: Vec<f64> = all.iter().filter_map(f).map(|r| r.cpu_ms).collect();
        let m = mean(&v);
        (percentile(&mut v, 0.5), percentile(&mut v, 0.95), m)
    };
    let (a50, a95, am) = cpu(&|b| Some(&b.off));
    let (b50, b95, bm) = cpu(&|b| Some(&b.gated));
    print!(
        "CPU per check (endpointer + decodes, one thread): without p50 {a50:.0} ms, p95 {a95:.0} ms, mean {am:.0} ms; with speculation p50 {b50:.0} ms ({:.2}x), p95 {b95:.0} ms, mean {bm:.0} ms ({:.2}x)",
        b50 / a50.max(f64::MIN_POSITIVE),
        bm / am.max(f64::MIN_POSITIVE)
    );
    if every {
        let (c50, c95, cm) = cpu(&|b| b.every.as_ref());
        print!("; every pause p50 {c50:.0} ms, p95 {c95:.0} ms, mean {cm:.0} ms");
    }
    println!();
    let count = |genuine: bool, f: fn(&Checked) -> bool| {
        all.iter().filter(|b| b.genuine == genuine && f(b)).count()
    };
    println!(
        "Accepted (gates {} words, {} digits; no split): genuine {} without, {} with; impostors {} without, {} with",
        o.min_confidence,
        o.min_confidence_digits,
        count(true, |b| b.off.accepted),
        count(true, |b| b.gated.accepted),
        count(false, |b| b.off.accepted),
        count(false, |b| b.gated.accepted),
    );
    Ok(ExitCode::SUCCESS)
}

/// One line per check and way (numbers only, never a transcript).
fn dump(path: &std::path::Path, all: &[Checked]) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::from(
        "file\tset\tcondition\tgenuine\tmode\theard\tlatency_ms\tdecodes\tskipped\tearly\tcpu_ms\taccepted\n",
    );
    for c in all {
        let runs = [
            ("off", Some(&c.off)),
            ("gated", Some(&c.gated)),
            ("every", c.every.as_ref()),
        ];
        for (mode, run) in runs {
            let Some(r) = run else { continue };
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{mode}\t{}\t{:.0}\t{}\t{}\t{}\t{:.1}\t{}",
                c.file,
                c.set,
                c.condition,
                u8::from(c.genuine),
                u8::from(r.timed.heard.is_some()),
                ms(r.timed.latency),
                r.timed.decodes,
                r.timed.skipped,
                u8::from(r.timed.early),
                r.cpu_ms,
                u8::from(r.accepted)
            );
        }
    }
    std::fs::write(path, out).with_context(|| format!("{}", path.display()))
}
