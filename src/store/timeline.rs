//! Each call's event timeline (`call_events`, migration 11): the events the
//! call emitted, in order, with their time, for the console's call page.
//!
//! Only what an event carries is stored, as the event's own JSON fields;
//! the events are privacy-safe by construction (word counts, masked
//! numbers, never a code, passphrase or transcript). Written by the record
//! writer after the call's record, purged with it.

use rusqlite::params;

use super::{Store, StoreError};

/// Events kept per call, at most (a looping flow cannot grow a call's
/// timeline without bound; the record still counts every step).
pub const MAX_EVENTS: usize = 500;

/// One event of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    /// When it happened (ms since the Unix epoch).
    pub at: i64,
    /// The event's name (`step_entered`, `auth_failed`, …).
    pub kind: String,
    /// Its fields as a JSON object (without the name).
    pub details: String,
}

/// One call's events, in the order they happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// voxgate's call id.
    pub call_id: String,
    /// The events, oldest first (at most [`MAX_EVENTS`]).
    pub events: Vec<CallEvent>,
}

impl Store {
    /// Write the timelines in one transaction; a call's events already
    /// stored are left as they are.
    pub fn insert_timelines(&self, timelines: &[Timeline]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO call_events (call_id, seq, at, kind, details)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (call_id, seq) DO NOTHING",
                )?;
                for t in timelines {
                    for (seq, e) in t.events.iter().take(MAX_EVENTS).enumerate() {
                        st.execute(params![t.call_id, seq as i64, e.at, e.kind, e.details])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// A call's events, in order (empty when none were stored).
    pub fn call_events(&self, call_id: &str) -> Result<Vec<CallEvent>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT at, kind, details FROM call_events WHERE call_id = ?1 ORDER BY seq",
            )?;
            let rows = st.query_map(params![call_id], |r| {
                Ok(CallEvent {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    details: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{CallOutcome, CallRecord};

    fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "vg-timeline-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        (Store::open(&dir.join("t.db")).unwrap(), dir)
    }

    fn ev(at: i64, kind: &str) -> CallEvent {
        CallEvent {
            at,
            kind: kind.into(),
            details: r#"{"step":"s"}"#.into(),
        }
    }

    fn record(id: &str, started_at: i64) -> CallRecord {
        CallRecord {
            call_id: id.into(),
            started_at,
            answered_at: None,
            ended_at: started_at + 1000,
            caller_masked: "+1•••0001".into(),
            country: "US".into(),
            calling_code: "1".into(),
            dialled: "bank".into(),
            brand: String::new(),
            flow: "bank".into(),
            steps: 1,
            path: "s".into(),
            outcome: CallOutcome::NoAuth,
            auth_method: None,
            auth_result: None,
            methods: Vec::new(),
            lookup: None,
            codes_sent: 0,
            code_send: None,
            transfer_result: None,
            transfer_agent: None,
            hangup_by: None,
        }
    }

    #[test]
    fn timelines_come_back_in_order_and_go_with_their_records() {
        let (s, dir) = store();
        s.insert_call_records(&[record("old", 1_000), record("new", 5_000)])
            .unwrap();
        let t = |id: &str, base: i64| Timeline {
            call_id: id.into(),
            events: vec![
                ev(base, "flow_started"),
                ev(base + 5, "step_entered"),
                ev(base + 5, "step_left"),
            ],
        };
        s.insert_timelines(&[t("old", 1_000), t("new", 5_000)])
            .unwrap();
        // Written twice (a retried batch): still once.
        s.insert_timelines(&[t("new", 5_000)]).unwrap();
        let kinds: Vec<String> = s
            .call_events("new")
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["flow_started", "step_entered", "step_left"]);
        assert_eq!(s.call_events("nobody").unwrap(), []);
        // The retention that purges a record purges its timeline.
        assert_eq!(s.purge_call_records(2_000).unwrap(), 1);
        assert_eq!(s.call_events("old").unwrap(), []);
        assert_eq!(s.call_events("new").unwrap().len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_timeline_is_capped() {
        let (s, dir) = store();
        let events = (0..MAX_EVENTS as i64 + 20)
            .map(|i| ev(i, "step_entered"))
            .collect();
        s.insert_timelines(&[Timeline {
            call_id: "loop".into(),
            events,
        }])
        .unwrap();
        assert_eq!(s.call_events("loop").unwrap().len(), MAX_EVENTS);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
