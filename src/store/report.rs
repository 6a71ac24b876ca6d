//! Aggregates over the call records: the authentication funnel in total,
//! by method and by day (UTC). `voxgate report` prints them; the operator
//! console will show the same queries. They read the per-day totals
//! (`call_days`) kept with the records, so their cost grows with days and
//! dimensions, not with calls.

use rusqlite::types::Value;

use super::records::CallOutcome;
use super::{Store, StoreError};

/// Which records a report covers; every `None` is "all".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportFilter {
    /// Calls that started on this UTC day or later (days since
    /// 1970-01-01; `ms.div_euclid(DAY_MS)`).
    pub from_day: Option<i64>,
    /// Calls that started before this UTC day (excluded).
    pub to_day: Option<i64>,
    /// The caller's country: an ISO 3166 code (`US`) or a calling code
    /// (`+44` or `44`).
    pub country: Option<String>,
    /// The route's brand.
    pub brand: Option<String>,
    /// The flow.
    pub flow: Option<String>,
    /// The channel the deciding code went by (`sms`, `voice`, `email`):
    /// calls whose deciding method is `{channel}_code`.
    pub channel: Option<String>,
    /// The funnel outcome (`passed`, …).
    pub outcome: Option<CallOutcome>,
}

/// A span the funnel is folded by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// UTC days (`YYYY-MM-DD`).
    Day,
    /// UTC months (`YYYY-MM`).
    Month,
    /// UTC years (`YYYY`).
    Year,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 3] = [Period::Day, Period::Month, Period::Year];

    /// Stable spelling (`day`, `month`, `year`).
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// The period spelt `s`.
    pub fn parse(s: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Calls per funnel outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Funnel {
    /// A verification passed.
    pub passed: u64,
    /// Verifications concluded, none passed.
    pub failed: u64,
    /// The caller hung up before any verification concluded.
    pub abandoned: u64,
    /// Handed to an agent without a pass.
    pub transferred: u64,
    /// No verification in the flow.
    pub no_auth: u64,
}

impl Funnel {
    /// All calls counted.
    pub fn total(&self) -> u64 {
        self.passed + self.failed + self.abandoned + self.transferred + self.no_auth
    }

    /// Count `n` calls of `outcome`.
    pub fn add(&mut self, outcome: CallOutcome, n: u64) {
        match outcome {
            CallOutcome::Passed => self.passed += n,
            CallOutcome::Failed => self.failed += n,
            CallOutcome::Abandoned => self.abandoned += n,
            CallOutcome::Transferred => self.transferred += n,
            CallOutcome::NoAuth => self.no_auth += n,
        }
    }

    /// The count of `outcome`.
    pub fn get(&self, outcome: CallOutcome) -> u64 {
        match outcome {
            CallOutcome::Passed => self.passed,
            CallOutcome::Failed => self.failed,
            CallOutcome::Abandoned => self.abandoned,
            CallOutcome::Transferred => self.transferred,
            CallOutcome::NoAuth => self.no_auth,
        }
    }
}

/// The funnel of a filter's calls, whole and broken down.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Every call.
    pub total: Funnel,
    /// By the deciding verification's method (`none` for calls without one).
    pub by_method: Vec<(String, Funnel)>,
    /// By the UTC day the call started (`YYYY-MM-DD`), oldest first.
    pub by_day: Vec<(String, Funnel)>,
}

impl Report {
    /// The funnel by `period`, oldest first: the days folded into their
    /// month or year (a UTC day never straddles either boundary).
    pub fn by_period(&self, period: Period) -> Vec<(String, Funnel)> {
        let keep = match period {
            Period::Day => return self.by_day.clone(),
            Period::Month => 7,
            Period::Year => 4,
        };
        let mut out: Vec<(String, Funnel)> = Vec::new();
        for (day, f) in &self.by_day {
            let key = day.get(..keep).unwrap_or(day);
            match out.last_mut() {
                Some((k, acc)) if k == key => {
                    for o in CallOutcome::ALL {
                        acc.add(o, f.get(o));
                    }
                }
                _ => out.push((key.to_string(), *f)),
            }
        }
        out
    }
}

impl Store {
    /// How many calls `filter` selects (from the day totals, so as cheap as
    /// the funnel; the console pages its call list by it).
    pub fn count_calls(&self, filter: &ReportFilter) -> Result<u64, StoreError> {
        let (clause, args) = where_clause(filter);
        self.with(|c| {
            let n: i64 = c.query_row(
                &format!("SELECT coalesce(sum(calls), 0) FROM call_days {clause}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
    }

    /// The funnel of the calls `filter` selects.
    pub fn report(&self, filter: &ReportFilter) -> Result<Report, StoreError> {
        let (clause, args) = where_clause(filter);
        let mut report = Report::default();
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT method, day, outcome, sum(calls)
                 FROM call_days {clause}
                 GROUP BY 1, 2, 3"
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut methods = std::collections::BTreeMap::<String, Funnel>::new();
            let mut days = std::collections::BTreeMap::<i64, Funnel>::new();
            for row in rows {
                let (method, day, outcome, n) = row?;
                let outcome = CallOutcome::parse(&outcome).unwrap_or(CallOutcome::NoAuth);
                let n = n.max(0) as u64;
                report.total.add(outcome, n);
                methods.entry(method).or_default().add(outcome, n);
                days.entry(day).or_default().add(outcome, n);
            }
            report.by_method = methods.into_iter().collect();
            report.by_day = days.into_iter().map(|(d, f)| (utc_day(d), f)).collect();
            Ok(())
        })?;
        Ok(report)
    }
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (a real date), else `None`.
pub fn civil_day(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` of day `days` since 1970-01-01 (H. Hinnant's
/// civil-from-days).
pub fn utc_day(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `WHERE …` over the day totals for `filter` (empty when it selects
/// everything) and its values.
fn where_clause(filter: &ReportFilter) -> (String, Vec<Value>) {
    filter_clause(filter, Table::Days)
}

/// Which table a filter's clause is for: the day totals or the records
/// themselves (the console's call list), which name two columns otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    /// `call_days`.
    Days,
    /// `call_records`.
    Records,
}

/// `WHERE …` for `filter` over `table`, and its values: one filter, one
/// meaning, whether the funnel or the call list reads it.
pub(crate) fn filter_clause(filter: &ReportFilter, table: Table) -> (String, Vec<Value>) {
    let (day_from, day_to, method) = match table {
        Table::Days => ("day >= ?", "day < ?", "method = ?"),
        Table::Records => ("started_at >= ?", "started_at < ?", "auth_method = ?"),
    };
    let day = |d: i64| match table {
        Table::Days => d,
        Table::Records => d.saturating_mul(super::records::DAY_MS),
    };
    let mut conds = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut push = |cond: &str, v: Value| {
        args.push(v);
        conds.push(cond.replace('?', &format!("?{}", args.len())));
    };
    if let Some(f) = filter.from_day {
        push(day_from, Value::Integer(day(f)));
    }
    if let Some(t) = filter.to_day {
        push(day_to, Value::Integer(day(t)));
    }
    if let Some(cc) = &filter.country {
        let cc = cc.trim();
        match cc.strip_prefix('+') {
            Some(code) => push("calling_code = ?", Value::Text(code.to_string())),
            None if cc.chars().all(|c| c.is_ascii_digit()) => {
                push("calling_code = ?", Value::Text(cc.to_string()))
            }
            None => push("country = ?", Value::Text(cc.to_ascii_uppercase())),
        }
    }
    if let Some(b) = &filter.brand {
        push("brand = ?", Value::Text(b.clone()));
    }
    if let Some(f) = &filter.flow {
        push("flow = ?", Value::Text(f.clone()));
    }
    if let Some(ch) = &filter.channel {
        push(method, Value::Text(format!("{ch}_code")));
    }
    if let Some(o) = filter.outcome {
        push("outcome = ?", Value::Text(o.as_str().to_string()));
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!("WHERE {}", conds.join(" AND ")), args)
    }
}
