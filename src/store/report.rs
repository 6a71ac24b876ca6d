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

impl Store {
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

/// `WHERE …` for `filter` (empty when it selects everything) and its values.
fn where_clause(filter: &ReportFilter) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut push = |cond: &str, v: Value| {
        args.push(v);
        conds.push(cond.replace('?', &format!("?{}", args.len())));
    };
    if let Some(f) = filter.from_day {
        push("day >= ?", Value::Integer(f));
    }
    if let Some(t) = filter.to_day {
        push("day < ?", Value::Integer(t));
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
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!("WHERE {}", conds.join(" AND ")), args)
    }
}
