//! What the operator console lists beside the funnel: calls page by page
//! under the same filter as the funnel (`report::ReportFilter`), one call's
//! record, code deliveries, and the fraud signals. Only masked numbers and
//! fixed words come out: the tables hold nothing secret.

use rusqlite::types::Value;
use rusqlite::OptionalExtension;

use super::records::{record_of, CallRecord, DAY_MS, RECORD_COLUMNS};
use super::report::{filter_clause, ReportFilter, Table};
use super::{Store, StoreError};

/// Which code deliveries a list covers; every `None` is "all".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Made on this UTC day or later (days since the epoch).
    pub from_day: Option<i64>,
    /// Made before this UTC day.
    pub to_day: Option<i64>,
    /// `sms`, `voice`, `email`.
    pub channel: Option<String>,
    /// The latest status (`delivered`, …).
    pub status: Option<String>,
    /// The destination's calling code, digits only (`44`): the masked
    /// destination keeps its leading digits, and calling codes are
    /// prefix-free, so a prefix match is exact.
    pub calling_code: Option<String>,
}

/// A delivery row as the console lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Made (ms).
    pub created_at: i64,
    /// Channel.
    pub channel: String,
    /// Gateway name.
    pub gateway: String,
    /// Destination, masked.
    pub to_masked: String,
    /// Latest status.
    pub status: String,
    /// The gateway's error code, if any.
    pub error: Option<String>,
    /// From made to the latest status (ms).
    pub took_ms: i64,
}

/// Counts that look like fraud, over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FraudSignals {
    /// Masked callers with at least the threshold of failed calls, most
    /// first (a masked number can stand for several real ones).
    pub repeated_failures: Vec<(String, u64)>,
    /// Callers (full numbers: the caller masks them) who had codes sent to
    /// at least the threshold of distinct numbers (the last day only:
    /// sends are kept a day for the abuse limits).
    pub many_destinations: Vec<(String, u64)>,
    /// Accounts with at least the threshold of failed checks of a factor,
    /// with the factor.
    pub lockouts: Vec<(String, String, u64)>,
    /// Calls whose code send or verification was refused as locked.
    pub locked_calls: u64,
}

impl Store {
    /// One page of the calls `filter` selects, newest first.
    pub fn list_calls(
        &self,
        filter: &ReportFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let (clause, mut args) = filter_clause(filter, Table::Records);
        args.push(Value::Integer(i64::from(limit)));
        args.push(Value::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
        let n = args.len();
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM call_records {clause}
                 ORDER BY started_at DESC, call_id DESC LIMIT ?{} OFFSET ?{n}",
                n - 1
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), record_of)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The record of call `call_id`.
    pub fn call_record(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM call_records WHERE call_id = ?1"),
                [call_id],
                record_of,
            )
            .optional()?)
        })
    }

    /// One page of the deliveries `filter` selects, newest first, and how
    /// many it selects in all.
    pub fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<DeliveryRow>, u64), StoreError> {
        let mut conds = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let mut push = |cond: &str, v: Value| {
            args.push(v);
            conds.push(cond.replace('?', &format!("?{}", args.len())));
        };
        if let Some(f) = filter.from_day {
            push("created_at >= ?", Value::Integer(f.saturating_mul(DAY_MS)));
        }
        if let Some(t) = filter.to_day {
            push("created_at < ?", Value::Integer(t.saturating_mul(DAY_MS)));
        }
        if let Some(ch) = &filter.channel {
            push("channel = ?", Value::Text(ch.clone()));
        }
        if let Some(s) = &filter.status {
            push("status = ?", Value::Text(s.clone()));
        }
        if let Some(cc) = &filter.calling_code {
            let digits: String = cc.chars().filter(char::is_ascii_digit).collect();
            push(
                "substr(to_masked, 1, length(?)) = ?",
                Value::Text(format!("+{digits}")),
            );
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        self.with(|c| {
            let total: i64 = c.query_row(
                &format!("SELECT count(*) FROM deliveries {clause}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            let mut page_args = args.clone();
            page_args.push(Value::Integer(i64::from(limit)));
            page_args.push(Value::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
            let n = page_args.len();
            let mut st = c.prepare(&format!(
                "SELECT created_at, channel, gateway, to_masked, status, error, updated_at
                 FROM deliveries {clause} ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{n}",
                n - 1
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(page_args.iter()), |r| {
                let created: i64 = r.get(0)?;
                let updated: i64 = r.get(6)?;
                Ok(DeliveryRow {
                    created_at: created,
                    channel: r.get(1)?,
                    gateway: r.get(2)?,
                    to_masked: r.get(3)?,
                    status: r.get(4)?,
                    error: r.get(5)?,
                    took_ms: updated - created,
                })
            })?;
            Ok((rows.collect::<Result<_, _>>()?, total.max(0) as u64))
        })
    }

    /// The fraud signals since `since_ms`: anything counted at least
    /// `threshold` times, at most `limit` of each.
    pub fn fraud_signals(
        &self,
        since_ms: i64,
        threshold: u32,
        limit: u32,
    ) -> Result<FraudSignals, StoreError> {
        self.with(|c| {
            let pairs = |sql: &str, since: i64| -> Result<Vec<(String, u64)>, StoreError> {
                let mut st = c.prepare(sql)?;
                let rows = st.query_map(rusqlite::params![since, threshold, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            };
            let repeated_failures = pairs(
                "SELECT caller_masked, count(*) FROM call_records
                 WHERE outcome = 'failed' AND started_at >= ?1
                 GROUP BY caller_masked HAVING count(*) >= ?2 ORDER BY 2 DESC, 1 LIMIT ?3",
                since_ms,
            )?;
            let many_destinations = pairs(
                "SELECT caller, count(DISTINCT destination) FROM code_sends
                 WHERE at >= ?1 AND caller != ''
                 GROUP BY caller HAVING count(DISTINCT destination) >= ?2 ORDER BY 2 DESC, 1 LIMIT ?3",
                since_ms,
            )?;
            let mut st = c.prepare(
                "SELECT account_id, factor, count(*) FROM auth_failures WHERE at >= ?1
                 GROUP BY 1, 2 HAVING count(*) >= ?2 ORDER BY 3 DESC, 1 LIMIT ?3",
            )?;
            // auth_failures counts in seconds.
            let lockouts = st
                .query_map(rusqlite::params![since_ms / 1000, threshold, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
                })?
                .collect::<Result<_, _>>()?;
            let locked_calls: i64 = c.query_row(
                "SELECT count(*) FROM call_records WHERE started_at >= ?1
                 AND (code_send = 'locked' OR auth_result = 'locked')",
                [since_ms],
                |r| r.get(0),
            )?;
            Ok(FraudSignals {
                repeated_failures,
                many_destinations,
                lockouts,
                locked_calls: locked_calls.max(0) as u64,
            })
        })
    }
}
