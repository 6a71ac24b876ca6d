//! `voxgate report`: the authentication funnel from the call records, in
//! total, by method and by day, as text, CSV or JSON. Dates are UTC days
//! (`--from` and `--to` both included); the records store UTC times.

use std::process::ExitCode;

use anyhow::{bail, Context};

use super::accounts::{load_config, StoreArgs};
use crate::store::records::CallOutcome;
use crate::store::report::{Funnel, Report, ReportFilter};
use crate::store::Store;

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned tables for people.
    Text,
    /// `section,key,calls,passed,failed,abandoned,transferred,no_auth` rows.
    Csv,
    /// One JSON object.
    Json,
}

/// The `report` command line.
#[derive(Clone, Debug)]
pub struct ReportArgs {
    /// First UTC day (`YYYY-MM-DD`), included.
    pub from: Option<String>,
    /// Last UTC day (`YYYY-MM-DD`), included.
    pub to: Option<String>,
    /// ISO country (`US`) or calling code (`+44`).
    pub country: Option<String>,
    /// Brand.
    pub brand: Option<String>,
    /// Flow.
    pub flow: Option<String>,
    /// The deciding code's channel (`sms`, `voice`, `email`).
    pub channel: Option<String>,
    /// Output format.
    pub format: ReportFormat,
}

/// Print the report `args` asks for from the database of `store`.
pub fn report(store: &StoreArgs, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let filter = filter_of(args)?;
    let cfg = load_config(store)?;
    if !cfg.database.exists() {
        bail!(
            "{}: no database (serve creates it; pass --config or --database)",
            cfg.database.display()
        );
    }
    let db = Store::open(&cfg.database)?;
    let rep = db
        .report(&filter)
        .with_context(|| format!("reading call records from {}", cfg.database.display()))?;
    print!("{}", render(&rep, args.format));
    Ok(ExitCode::SUCCESS)
}

/// The store filter of the command line, dates checked.
pub fn filter_of(args: &ReportArgs) -> anyhow::Result<ReportFilter> {
    let from = args
        .from
        .as_deref()
        .map(|d| {
            day_start_ms(d)
                .map(|ms| ms / DAY_MS)
                .with_context(|| format!("--from {d}"))
        })
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|d| {
            day_start_ms(d)
                .map(|ms| ms / DAY_MS + 1)
                .with_context(|| format!("--to {d}"))
        })
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            bail!("--from is after --to");
        }
    }
    if let Some(c) = &args.country {
        let c = c.trim();
        let digits = c.strip_prefix('+').unwrap_or(c);
        let iso = c.len() == 2 && c.chars().all(|x| x.is_ascii_alphabetic());
        let code = (1..=3).contains(&digits.len()) && digits.chars().all(|x| x.is_ascii_digit());
        if !iso && !code {
            bail!("--country {c}: give an ISO 3166 code (US, GB) or a calling code (+1, +44)");
        }
    }
    if let Some(ch) = &args.channel {
        if !CHANNELS.contains(&ch.as_str()) {
            bail!("--channel {ch}: give one of {}", CHANNELS.join(", "));
        }
    }
    Ok(ReportFilter {
        from_day: from,
        to_day: to,
        country: args.country.clone(),
        brand: args.brand.clone(),
        flow: args.flow.clone(),
        channel: args.channel.clone(),
        outcome: None,
    })
}

const DAY_MS: i64 = 86_400_000;

/// The channels a code goes by (the `--channel` values).
pub const CHANNELS: [&str; 3] = ["sms", "voice", "email"];

/// Milliseconds at 00:00 UTC of `YYYY-MM-DD`.
pub fn day_start_ms(s: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("`{s}` is not a date; write YYYY-MM-DD (a UTC day)");
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => bail!("`{s}`: month {m} does not exist"),
    };
    if d == 0 || d > days_in {
        bail!("`{s}`: day {d} does not exist in that month");
    }
    Ok(days_from_civil(y, m, d) * DAY_MS)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The report as `format` prints it.
pub fn render(rep: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Text => text(rep),
        ReportFormat::Csv => csv(rep),
        ReportFormat::Json => json(rep),
    }
}

fn row(key: &str, f: &Funnel, width: usize) -> String {
    let mut s = format!("  {key:<width$} {:>7}", f.total());
    for o in CallOutcome::ALL {
        s.push_str(&format!(" {:>11}", f.get(o)));
    }
    s.push('\n');
    s
}

fn header(first: &str, width: usize) -> String {
    let mut s = format!("  {first:<width$} {:>7}", "calls");
    for o in CallOutcome::ALL {
        s.push_str(&format!(" {:>11}", o.as_str()));
    }
    s.push('\n');
    s
}

fn text(rep: &Report) -> String {
    let t = &rep.total;
    let mut out = format!("calls: {}", t.total());
    for o in CallOutcome::ALL {
        out.push_str(&format!(", {} {}", o.as_str(), t.get(o)));
    }
    out.push('\n');
    if t.total() == 0 {
        return out;
    }
    let w = rep
        .by_method
        .iter()
        .map(|(m, _)| m.len())
        .max()
        .unwrap_or(0)
        .max(10);
    out.push_str("\nby method\n");
    out.push_str(&header("method", w));
    for (m, f) in &rep.by_method {
        out.push_str(&row(m, f, w));
    }
    out.push_str("\nby day (UTC)\n");
    out.push_str(&header("day", 10));
    for (d, f) in &rep.by_day {
        out.push_str(&row(d, f, 10));
    }
    out
}

fn csv(rep: &Report) -> String {
    let mut out = String::from("section,key,calls");
    for o in CallOutcome::ALL {
        out.push(',');
        out.push_str(o.as_str());
    }
    out.push('\n');
    let line = |section: &str, key: &str, f: &Funnel| {
        let mut s = format!("{section},{},{}", csv_field(key), f.total());
        for o in CallOutcome::ALL {
            s.push_str(&format!(",{}", f.get(o)));
        }
        s.push('\n');
        s
    };
    out.push_str(&line("total", "", &rep.total));
    for (m, f) in &rep.by_method {
        out.push_str(&line("method", m, f));
    }
    for (d, f) in &rep.by_day {
        out.push_str(&line("day", d, f));
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn json(rep: &Report) -> String {
    let funnel = |f: &Funnel| {
        let mut m = serde_json::Map::new();
        m.insert("calls".into(), f.total().into());
        for o in CallOutcome::ALL {
            m.insert(o.as_str().into(), f.get(o).into());
        }
        m
    };
    let keyed = |k: &str, rows: &[(String, Funnel)]| -> Vec<serde_json::Value> {
        rows.iter()
            .map(|(key, f)| {
                let mut m = funnel(f);
                m.insert(k.into(), key.clone().into());
                serde_json::Value::Object(m)
            })
            .collect()
    };
    let v = serde_json::json!({
        "total": funnel(&rep.total),
        "by_method": keyed("method", &rep.by_method),
        "by_day": keyed("day", &rep.by_day),
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests;
