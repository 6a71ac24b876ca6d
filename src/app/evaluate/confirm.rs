//! `evaluate-passphrases --confirm`: the word checks tiny.en accepts,
//! confirmed by Whisper base (`asr::confirm`), with the phrase as its hint
//! and without; true/false accept per set and split with and without the
//! confirmation, a gate on the second model's confidence, and CPU. Numbers
//! only: no transcript.

use std::collections::BTreeMap;

use crate::asr::confirm::{ConfirmHint, Confirmer, SHIPPED_HINT};

use super::{pct, percentile, Checked, Gates, Tally};

/// One opinion of the second model.
#[derive(Clone, Copy, Debug)]
pub(super) struct Opinion {
    /// It heard the enrolled phrase (whole-utterance match).
    matches: bool,
    confidence: f32,
    cpu_ms: f64,
}

/// The second model's opinions on one utterance, with and without the hint.
#[derive(Clone, Copy, Debug)]
pub(super) struct Second {
    hint: Opinion,
    plain: Opinion,
}

impl Second {
    /// Decode `pcm` twice with the second model.
    pub(super) fn of(c: &Confirmer, pcm: &[i16], enrolled: &str) -> anyhow::Result<Second> {
        let one = |hint: ConfirmHint| -> anyhow::Result<Opinion> {
            let cpu0 = crate::app::process_cpu();
            let t = c.hear(pcm, enrolled, hint)?;
            let cpu_ms = (crate::app::process_cpu() - cpu0).as_secs_f64() * 1000.0;
            Ok(Opinion {
                matches: Confirmer::agrees(&t, enrolled),
                confidence: t.confidence,
                cpu_ms,
            })
        };
        Ok(Second {
            hint: one(ConfirmHint::Phrase)?,
            plain: one(ConfirmHint::Plain)?,
        })
    }

    fn opinion(&self, hint: ConfirmHint) -> Opinion {
        match hint {
            ConfirmHint::Phrase => self.hint,
            ConfirmHint::Plain => self.plain,
        }
    }
}

/// The dump's six confirmation columns (empty when it did not run).
pub(super) fn dump_columns(s: Option<&Second>) -> String {
    match s {
        None => "\t\t\t\t\t".into(),
        Some(s) => format!(
            "{}\t{:.4}\t{:.1}\t{}\t{:.4}\t{:.1}",
            u8::from(s.hint.matches),
            s.hint.confidence,
            s.hint.cpu_ms,
            u8::from(s.plain.matches),
            s.plain.confidence,
            s.plain.cpu_ms
        ),
    }
}

/// Resident set size of this process in KiB (0 if unknown).
pub(super) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// How a word check is judged.
#[derive(Clone, Copy)]
enum Cascade {
    /// tiny.en alone, as shipped before.
    Alone,
    /// tiny.en, then the second model told `hint`, at or above `gate`.
    Confirmed(ConfirmHint, f32),
}

fn accepted(c: &Checked, how: Cascade, gates: Gates, ns: f32) -> bool {
    if !c.accepted(gates, ns) {
        return false;
    }
    match how {
        Cascade::Alone => true,
        Cascade::Confirmed(hint, gate) => c.second.is_some_and(|s| {
            let o = s.opinion(hint);
            o.matches && o.confidence >= gate
        }),
    }
}

fn tally<'a>(checks: impl Iterator<Item = &'a Checked>, how: Cascade, g: Gates, ns: f32) -> Tally {
    let mut t = Tally::default();
    for c in checks {
        t.add(c.row.genuine, accepted(c, how, g, ns));
    }
    t
}

fn cell(t: &Tally) -> String {
    format!(
        "{} / {}",
        pct(t.true_accepts, t.genuine),
        pct(t.false_accepts, t.impostors)
    )
}

/// Print the cascade's tables for the word checks of `checked`.
pub(super) fn report(checked: &[Checked], gates: Gates, ns: f32) {
    let words: Vec<&Checked> = checked
        .iter()
        .filter(|c| !c.digits && c.row.set != "nonspeech")
        .collect();
    let hows = [
        ("tiny.en alone", Cascade::Alone),
        (
            "+ base, phrase as hint",
            Cascade::Confirmed(ConfirmHint::Phrase, 0.0),
        ),
        (
            "+ base, no hint",
            Cascade::Confirmed(ConfirmHint::Plain, 0.0),
        ),
    ];
    println!(
        "\nWord passphrases confirmed by whisper base (words gate {}), true accept / false accept:\n",
        gates.words
    );
    println!(
        "| split | set | {} |",
        hows.iter().map(|h| h.0).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(hows.len()));
    for split in ["train", "test"] {
        let mut sets: BTreeMap<&str, Vec<&Checked>> = BTreeMap::new();
        for c in words.iter().filter(|c| c.row.split == split) {
            sets.entry(c.row.set.as_str()).or_default().push(*c);
        }
        let all: Vec<&Checked> = sets.values().flatten().copied().collect();
        for (set, rows) in sets.iter().map(|(s, r)| (*s, r)).chain([("all", &all)]) {
            let cells: Vec<String> = hows
                .iter()
                .map(|(_, how)| cell(&tally(rows.iter().copied(), *how, gates, ns)))
                .collect();
            println!("| {split} | {set} | {} |", cells.join(" | "));
        }
    }

    println!("\nBy condition, test split, confirmed as shipped ({SHIPPED_HINT:?}):\n");
    println!("| set | condition | tiny.en alone | confirmed |");
    println!("|---|---|---|---|");
    let mut by: BTreeMap<(&str, &str), Vec<&Checked>> = BTreeMap::new();
    for c in words.iter().filter(|c| c.row.split == "test") {
        by.entry((c.row.set.as_str(), c.row.condition.as_str()))
            .or_default()
            .push(*c);
    }
    for ((set, cond), rows) in &by {
        let a = tally(rows.iter().copied(), Cascade::Alone, gates, ns);
        let b = tally(
            rows.iter().copied(),
            Cascade::Confirmed(SHIPPED_HINT, 0.0),
            gates,
            ns,
        );
        println!("| {set} | {cond} | {} | {} |", cell(&a), cell(&b));
    }

    println!("\nGate on the second model's confidence (word sets together):\n");
    println!("| hint | gate | train TA / FA | test TA / FA |");
    println!("|---|---|---|---|");
    for hint in [ConfirmHint::Phrase, ConfirmHint::Plain] {
        for g in [0.0f32, 0.3, 0.5, 0.6, 0.7, 0.8] {
            let how = Cascade::Confirmed(hint, g);
            let split = |s: &str| {
                tally(
                    words.iter().copied().filter(|c| c.row.split == s),
                    how,
                    gates,
                    ns,
                )
            };
            println!(
                "| {hint:?} | {g:.1} | {} | {} |",
                cell(&split("train")),
                cell(&split("test"))
            );
        }
    }

    let ran: Vec<&Second> = words.iter().filter_map(|c| c.second.as_ref()).collect();
    println!(
        "\nThe second model ran on {} of {} word checks (tiny.en's words matched).",
        ran.len(),
        words.len()
    );
    for hint in [ConfirmHint::Phrase, ConfirmHint::Plain] {
        let mut alone: Vec<f64> = ran.iter().map(|s| s.opinion(hint).cpu_ms).collect();
        let mut per_check: Vec<f64> = words
            .iter()
            .map(|c| c.cpu_ms + c.second.map_or(0.0, |s| s.opinion(hint).cpu_ms))
            .collect();
        println!(
            "CPU, {hint:?}: confirmation alone p50 {:.0} ms, p95 {:.0} ms; per word check with it p50 {:.0} ms, p95 {:.0} ms",
            percentile(&mut alone, 0.5),
            percentile(&mut alone, 0.95),
            percentile(&mut per_check, 0.5),
            percentile(&mut per_check, 0.95)
        );
    }
    let mut tiny: Vec<f64> = words.iter().map(|c| c.cpu_ms).collect();
    println!(
        "CPU per word check, tiny.en alone: p50 {:.0} ms, p95 {:.0} ms",
        percentile(&mut tiny, 0.5),
        percentile(&mut tiny, 0.95)
    );
}
