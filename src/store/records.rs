//! Call records: one row per call (`call_records`, migration 8), folded from
//! the call's events and written once at its end, off the call's task.
//!
//! A record holds what an operator or a fraud team needs about a call and
//! nothing secret: the caller's number only masked, never a code,
//! passphrase, transcript or full number. Times are milliseconds since the
//! Unix epoch (UTC).

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// How a call ended for the authentication funnel.
///
/// Precedence when a call has several: passed, then transferred, then
/// failed, then abandoned; `no_auth` when the flow never asked the caller
/// to prove anything and the caller did not hang up on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallOutcome {
    /// A verification step concluded `passed`.
    Passed,
    /// Handed to an agent without a pass.
    Transferred,
    /// Every verification that concluded did not pass (wrong, expired,
    /// locked, no input, error).
    Failed,
    /// The caller hung up before any verification concluded.
    Abandoned,
    /// The flow ended with no verification (an information-only flow).
    NoAuth,
}

impl CallOutcome {
    /// Every outcome, in report order.
    pub const ALL: [CallOutcome; 5] = [
        CallOutcome::Passed,
        CallOutcome::Failed,
        CallOutcome::Abandoned,
        CallOutcome::Transferred,
        CallOutcome::NoAuth,
    ];

    /// Stable spelling (database, reports, metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Passed => "passed",
            CallOutcome::Transferred => "transferred",
            CallOutcome::Failed => "failed",
            CallOutcome::Abandoned => "abandoned",
            CallOutcome::NoAuth => "no_auth",
        }
    }

    /// The outcome spelt `s`, if any.
    pub fn parse(s: &str) -> Option<CallOutcome> {
        CallOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One authentication method used in a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodRecord {
    /// `passphrase`, `sms_code`, `voice_code` or `totp`.
    pub method: String,
    /// Verification steps of this method that concluded.
    pub attempts: u32,
    /// The last one's result (`passed`, `failed`, `expired`, …).
    pub result: String,
    /// The fixed explanations of the results that were not a pass, in order
    /// (`wrong code`, …; never a secret), at most a few.
    pub reasons: Vec<String>,
}

/// One call's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// voxgate's call id.
    pub call_id: String,
    /// When the call reached its flow (ms).
    pub started_at: i64,
    /// When the caller's ACK confirmed the answer (ms); `None`: never.
    pub answered_at: Option<i64>,
    /// When the call ended (ms).
    pub ended_at: i64,
    /// The caller's number masked (`+1•••0001`), or `anonymous`.
    pub caller_masked: String,
    /// ISO 3166 country of the caller's number (`US`), or empty.
    pub country: String,
    /// The caller number's country calling code without `+` (`1`), or empty.
    pub calling_code: String,
    /// The dialled number (ours; not a caller's).
    pub dialled: String,
    /// The route's brand ("" for none).
    pub brand: String,
    /// The flow that ran.
    pub flow: String,
    /// Steps entered.
    pub steps: u32,
    /// The steps entered, as `a>b>c×2>d` (repeats folded, capped).
    pub path: String,
    /// The funnel outcome.
    pub outcome: CallOutcome,
    /// The method of the deciding verification (the pass, else the last).
    pub auth_method: Option<String>,
    /// Its result.
    pub auth_result: Option<String>,
    /// Every method used, with attempts and reasons.
    pub methods: Vec<MethodRecord>,
    /// The caller lookup's result (`found`, `not_found`, `error`).
    pub lookup: Option<String>,
    /// One-time codes handed to a gateway in this call.
    pub codes_sent: u32,
    /// The last `send_code` outcome (`sent`, `still_valid`, `rate_limited`,
    /// `locked`, `error`).
    pub code_send: Option<String>,
    /// The last transfer's result (`transferred`, `failed`, `error`).
    pub transfer_result: Option<String>,
    /// The agent (target URI) of the last transfer.
    pub transfer_agent: Option<String>,
    /// Who hung up: `caller` or `engine`.
    pub hangup_by: Option<String>,
}

impl Store {
    /// Write `records` in one transaction, counting each in its day's
    /// totals (`call_days`); a call already recorded is left as it is.
    pub fn insert_call_records(&self, records: &[CallRecord]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO call_records (call_id, started_at, answered_at, ended_at,
                        caller_masked, country, calling_code, dialled, brand, flow, steps, path,
                        outcome, auth_method, auth_result, methods, lookup, codes_sent, code_send,
                        transfer_result, transfer_agent, hangup_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                        ?16, ?17, ?18, ?19, ?20, ?21, ?22)
                     ON CONFLICT (call_id) DO NOTHING",
                )?;
                let mut day = tx.prepare_cached(
                    "INSERT INTO call_days (day, brand, flow, country, calling_code, method, outcome, calls)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)
                     ON CONFLICT DO UPDATE SET calls = calls + 1",
                )?;
                for r in records {
                    let methods = serde_json::to_string(&r.methods).unwrap_or_else(|_| "[]".into());
                    let added = st.execute(params![
                        r.call_id,
                        r.started_at,
                        r.answered_at,
                        r.ended_at,
                        r.caller_masked,
                        r.country,
                        r.calling_code,
                        r.dialled,
                        r.brand,
                        r.flow,
                        r.steps,
                        r.path,
                        r.outcome.as_str(),
                        r.auth_method,
                        r.auth_result,
                        methods,
                        r.lookup,
                        r.codes_sent,
                        r.code_send,
                        r.transfer_result,
                        r.transfer_agent,
                        r.hangup_by,
                    ])?;
                    // The call is no longer open (store::open_calls).
                    tx.execute(
                        "DELETE FROM meta WHERE key = ?1",
                        params![super::open_calls::key(&r.call_id)],
                    )?;
                    if added == 1 {
                        day.execute(params![
                            r.started_at.div_euclid(DAY_MS),
                            r.brand,
                            r.flow,
                            r.country,
                            r.calling_code,
                            r.auth_method.as_deref().unwrap_or("none"),
                            r.outcome.as_str(),
                        ])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Delete the records of calls that started before `before_ms` (and
    /// their event timelines), the
    /// day totals of whole days before it, and the code deliveries (with
    /// their status history) made before it; returns how many call records.
    pub fn purge_call_records(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            // Their timelines first, found through the records' start index.
            tx.execute(
                "DELETE FROM call_events WHERE call_id IN
                 (SELECT call_id FROM call_records WHERE started_at < ?1)",
                params![before_ms],
            )?;
            let n = tx.execute(
                "DELETE FROM call_records WHERE started_at < ?1",
                params![before_ms],
            )?;
            tx.execute(
                "DELETE FROM call_days WHERE day < ?1",
                params![before_ms.div_euclid(DAY_MS)],
            )?;
            tx.execute(
                "DELETE FROM delivery_statuses WHERE delivery_id IN
                 (SELECT id FROM deliveries WHERE created_at < ?1)",
                params![before_ms],
            )?;
            tx.execute(
                "DELETE FROM deliveries WHERE created_at < ?1",
                params![before_ms],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    /// Every record, oldest first (tests and small exports).
    pub fn call_records(&self) -> Result<Vec<CallRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM call_records ORDER BY started_at, call_id"
            ))?;
            let rows = st.query_map([], record_of)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

/// The columns a [`CallRecord`] is read from, in its field order.
pub(super) const RECORD_COLUMNS: &str =
    "call_id, started_at, answered_at, ended_at, caller_masked, country,
    calling_code, dialled, brand, flow, steps, path, outcome, auth_method, auth_result, methods,
    lookup, codes_sent, code_send, transfer_result, transfer_agent, hangup_by";

pub(super) fn record_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRecord> {
    let outcome: String = r.get(12)?;
    let methods: String = r.get(15)?;
    Ok(CallRecord {
        call_id: r.get(0)?,
        started_at: r.get(1)?,
        answered_at: r.get(2)?,
        ended_at: r.get(3)?,
        caller_masked: r.get(4)?,
        country: r.get(5)?,
        calling_code: r.get(6)?,
        dialled: r.get(7)?,
        brand: r.get(8)?,
        flow: r.get(9)?,
        steps: r.get(10)?,
        path: r.get(11)?,
        outcome: CallOutcome::parse(&outcome).unwrap_or(CallOutcome::NoAuth),
        auth_method: r.get(13)?,
        auth_result: r.get(14)?,
        methods: serde_json::from_str(&methods).unwrap_or_default(),
        lookup: r.get(16)?,
        codes_sent: r.get(17)?,
        code_send: r.get(18)?,
        transfer_result: r.get(19)?,
        transfer_agent: r.get(20)?,
        hangup_by: r.get(21)?,
    })
}
