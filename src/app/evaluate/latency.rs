//! `evaluate-passphrases --latency`: when each check is decided after the
//! caller's last word, with and without speculative decoding
//! (`asr::speculate`), and what it costs in decodes and CPU. Every recording
//! is played through the endpointer in simulated real time
//! (`asr::simulate`); a decode takes the CPU time it really took (one core
//! per decode, as the speech pool gives each). The verdicts with and
//! without speculation are compared. Never prints a transcript.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{percentile, EvalOptions, Row};
use crate::asr::simulate::{turn, Timed};
use crate::asr::speculate::{Complete, EarlyAnswer, DEFAULT_AFTER};
use crate::asr::{phrase, Heard, SpeechEngine};

/// One recording judged both ways.
struct Both {
    set: String,
    genuine: bool,
    off: Timed,
    on: Timed,
    cpu_off_ms: f64,
    cpu_on_ms: f64,
    accepted_off: bool,
    accepted_on: bool,
}

fn accepted(t: &Timed, enrolled: &str, gate: f32) -> bool {
    matches!(&t.heard, Some(Heard::Speech(r)) if phrase::matches(enrolled, &r.text) && r.confidence >= gate)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Run the rows both ways and print the tables.
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
        let early = EarlyAnswer {
            after: o.speculate_after.unwrap_or(DEFAULT_AFTER),
            complete: if digits {
                Complete::Digits(phrase::tokens(&row.enrolled).len())
            } else {
                Complete::Phrase(Zeroizing::new(row.enrolled.clone()))
            },
        };
        let pcm = crate::asr::recording::phone_audio(&row.file).map_err(anyhow::Error::msg)?;
        let c0 = clock();
        let off = turn(engine, &pcm, &spec, None, &mut clock)?;
        let c1 = clock();
        let on = turn(engine, &pcm, &spec, Some(&early), &mut clock)?;
        let c2 = clock();
        let gate = if digits {
            o.min_confidence_digits
        } else {
            o.min_confidence
        };
        all.push(Both {
            set: row.set.clone(),
            genuine: row.genuine,
            accepted_off: accepted(&off, &row.enrolled, gate),
            accepted_on: accepted(&on, &row.enrolled, gate),
            off,
            on,
            cpu_off_ms: ms(c1.saturating_sub(c0)),
            cpu_on_ms: ms(c2.saturating_sub(c1)),
        });
    }
    println!(
        "Decision latency after the end of speech (last speech frame to verdict; decodes take their CPU time, one core each), encoder window: {}, speculation after {} ms, end-of-speech timer {} ms, {} checks\n",
        if o.short_window { "short, spliced" } else { "30 s" },
        o.speculate_after.unwrap_or(DEFAULT_AFTER).as_millis(),
        crate::asr::Timers::RECORDING.end_of_speech_timeout.as_millis(),
        all.len()
    );
    println!("| set | genuine decided | latency p50 / p95 / max, without | with speculation | decided early | verdicts differing |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut by: BTreeMap<&str, Vec<&Both>> = BTreeMap::new();
    for b in &all {
        by.entry(b.set.as_str()).or_default().push(b);
    }
    by.insert("all", all.iter().collect());
    for (set, bs) in &by {
        let genuine: Vec<&&Both> = bs
            .iter()
            .filter(|b| b.genuine && b.off.heard.is_some() && b.on.heard.is_some())
            .collect();
        let lat = |f: fn(&Both) -> &Timed| {
            let mut v: Vec<f64> = genuine.iter().map(|b| ms(f(b).latency)).collect();
            let max = v.iter().copied().fold(0.0, f64::max);
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                percentile(&mut v, 0.5),
                percentile(&mut v, 0.95),
                max
            )
        };
        let early = genuine.iter().filter(|b| b.on.early).count();
        let differ = bs
            .iter()
            .filter(|b| b.accepted_off != b.accepted_on)
            .count();
        println!(
            "| {set} | {} | {} | {} | {early}/{} | {differ}/{} |",
            genuine.len(),
            lat(|b| &b.off),
            lat(|b| &b.on),
            genuine.len(),
            bs.len()
        );
    }
    let decodes_off: u32 = all.iter().map(|b| b.off.decodes).sum();
    let decodes_on: u32 = all.iter().map(|b| b.on.decodes).sum();
    let extra = all.iter().filter(|b| b.on.decodes > b.off.decodes).count();
    let mut cpu_off: Vec<f64> = all.iter().map(|b| b.cpu_off_ms).collect();
    let mut cpu_on: Vec<f64> = all.iter().map(|b| b.cpu_on_ms).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "\nDecodes: {decodes_off} without speculation, {decodes_on} with ({extra} of {} checks paid extra decodes)",
        all.len()
    );
    println!(
        "CPU per check (endpointer + decodes, one thread): without p50 {:.0} ms, p95 {:.0} ms, mean {:.0} ms; with speculation p50 {:.0} ms, p95 {:.0} ms, mean {:.0} ms",
        percentile(&mut cpu_off, 0.5),
        percentile(&mut cpu_off, 0.95),
        mean(&cpu_off),
        percentile(&mut cpu_on, 0.5),
        percentile(&mut cpu_on, 0.95),
        mean(&cpu_on),
    );
    let accepted_off = all.iter().filter(|b| b.genuine && b.accepted_off).count();
    let accepted_on = all.iter().filter(|b| b.genuine && b.accepted_on).count();
    let fa_off = all.iter().filter(|b| !b.genuine && b.accepted_off).count();
    let fa_on = all.iter().filter(|b| !b.genuine && b.accepted_on).count();
    println!(
        "Accepted (gates {} words, {} digits; no split): genuine {accepted_off} without, {accepted_on} with; impostors {fa_off} without, {fa_on} with",
        o.min_confidence, o.min_confidence_digits
    );
    Ok(ExitCode::SUCCESS)
}
