//! Calls in progress, so a crash cannot lose them: when a call's flow starts
//! its record as it stands then is kept in `meta` under `open_call:<id>`,
//! and the same transaction that writes the finished record removes it. A
//! process killed mid-call (`kill -9`, power loss) leaves the marker; the
//! next start closes each one as a record with `hangup_by = server_restart`
//! (ended at that start, `abandoned` unless the start record said more).
//! In `meta` (key/value), not a table of its own: no migration for a
//! handful of short-lived rows.

use rusqlite::params;
use serde_json::{json, Value};

use super::records::{CallOutcome, CallRecord};
use super::{Store, StoreError};

/// Key prefix of the markers in `meta`.
const PREFIX: &str = "open_call:";

/// `hangup_by` of a call the process did not live to end.
pub const SERVER_RESTART: &str = "server_restart";

/// The marker key of `call_id`.
pub(crate) fn key(call_id: &str) -> String {
    format!("{PREFIX}{call_id}")
}

/// What the marker keeps: the record's fields known at the start.
fn marker(r: &CallRecord) -> Value {
    json!({
        "started_at": r.started_at,
        "answered_at": r.answered_at,
        "caller_masked": r.caller_masked,
        "country": r.country,
        "calling_code": r.calling_code,
        "dialled": r.dialled,
        "brand": r.brand,
        "flow": r.flow,
    })
}

/// The closing record of an open call from its marker.
fn closing(call_id: &str, v: &Value, ended_at: i64) -> CallRecord {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let started_at = v["started_at"].as_i64().unwrap_or(ended_at);
    CallRecord {
        call_id: call_id.to_string(),
        started_at,
        answered_at: v["answered_at"].as_i64(),
        ended_at: ended_at.max(started_at),
        caller_masked: s("caller_masked"),
        country: s("country"),
        calling_code: s("calling_code"),
        dialled: s("dialled"),
        brand: s("brand"),
        flow: s("flow"),
        steps: 0,
        path: String::new(),
        outcome: CallOutcome::Abandoned,
        auth_method: None,
        auth_result: None,
        methods: Vec::new(),
        lookup: None,
        codes_sent: 0,
        code_send: None,
        transfer_result: None,
        transfer_agent: None,
        hangup_by: Some(SERVER_RESTART.to_string()),
    }
}

impl Store {
    /// Mark `records` (calls whose flow just started) open, in one
    /// transaction.
    pub fn open_calls(&self, records: &[CallRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?;
                for r in records {
                    st.execute(params![key(&r.call_id), marker(r).to_string().into_bytes()])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Close every call left open by an earlier run (at start, before any
    /// call): a record each, ended at `now_ms`, `hangup_by = server_restart`;
    /// returns their call ids. A marker that cannot be read is removed.
    pub fn close_open_calls(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let open: Vec<(String, Vec<u8>)> = self.with(|c| {
            let mut st = c.prepare("SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2")?;
            let rows = st.query_map(params![PREFIX, "open_call;"], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for (k, v) in open {
            let id = k.strip_prefix(PREFIX).unwrap_or(&k).to_string();
            match serde_json::from_slice::<Value>(&v) {
                Ok(m) if m.is_object() => records.push(closing(&id, &m, now_ms)),
                _ => unreadable.push(k),
            }
        }
        // Writing the record removes its marker (same transaction).
        self.insert_call_records(&records)?;
        self.with(|c| {
            for k in &unreadable {
                c.execute("DELETE FROM meta WHERE key = ?1", params![k])?;
            }
            Ok(())
        })?;
        Ok(records.into_iter().map(|r| r.call_id).collect())
    }

    /// How many calls are marked open (tests, diagnostics).
    pub fn open_call_count(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM meta WHERE key >= ?1 AND key < ?2",
                params![PREFIX, "open_call;"],
                |r| r.get(0),
            )?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    fn started(id: &str, at: i64) -> CallRecord {
        let mut r = closing(id, &json!({ "started_at": at, "flow": "bank" }), at);
        r.outcome = CallOutcome::NoAuth;
        r.hangup_by = None;
        r.caller_masked = "+1•••0001".into();
        r
    }

    #[test]
    fn open_calls_left_by_a_crash_are_closed_at_the_next_start() {
        let d = TempDir::new("open-calls");
        let path = d.file("v.db");
        {
            let s = Store::open(&path).unwrap();
            s.open_calls(&[
                started("a", 1_000),
                started("b", 2_000),
                started("c", 3_000),
            ])
            .unwrap();
            // `a` ends normally: its record removes its marker.
            let mut a = started("a", 1_000);
            a.ended_at = 1_500;
            a.hangup_by = Some("caller".into());
            s.insert_call_records(&[a]).unwrap();
            assert_eq!(s.open_call_count().unwrap(), 2);
        }
        // The process died; the next start closes b and c.
        let s = Store::open(&path).unwrap();
        let mut closed = s.close_open_calls(9_000).unwrap();
        closed.sort();
        assert_eq!(closed, ["b", "c"]);
        assert_eq!(s.open_call_count().unwrap(), 0);
        let recs = s.call_records().unwrap();
        assert_eq!(recs.len(), 3);
        let b = recs.iter().find(|r| r.call_id == "b").unwrap();
        assert_eq!(b.hangup_by.as_deref(), Some(SERVER_RESTART));
        assert_eq!(b.outcome, CallOutcome::Abandoned);
        assert_eq!((b.started_at, b.ended_at), (2_000, 9_000));
        assert_eq!(
            (b.flow.as_str(), b.caller_masked.as_str()),
            ("bank", "+1•••0001")
        );
        let a = recs.iter().find(|r| r.call_id == "a").unwrap();
        assert_eq!(a.hangup_by.as_deref(), Some("caller"));
        // Nothing left: a second start closes nothing.
        assert!(s.close_open_calls(10_000).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_marker_is_removed_and_other_meta_is_untouched() {
        let d = TempDir::new("open-calls-junk");
        let s = Store::open(&d.file("v.db")).unwrap();
        s.with(|c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('open_call:x', X'FF00'), ('other', X'01')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        assert!(s.close_open_calls(1).unwrap().is_empty());
        assert_eq!(s.open_call_count().unwrap(), 0);
        let other: i64 = s
            .with(|c| {
                Ok(
                    c.query_row("SELECT count(*) FROM meta WHERE key = 'other'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .unwrap();
        assert_eq!(other, 1);
    }
}
