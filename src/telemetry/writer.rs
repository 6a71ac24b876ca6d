//! The one task that writes call records: calls hand their finished record
//! to a bounded queue (never waiting), the writer takes them in batches and
//! writes each batch on tokio's blocking pool. A full queue drops the
//! record, counts it (`voxgate_records_dropped_total`) and logs it: a slow
//! disk must never stall a call or its RTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::metrics::Metrics;
use crate::events::Event;
use crate::store::records::CallRecord;
use crate::store::timeline::{CallEvent, Timeline, MAX_EVENTS};
use crate::store::Store;

/// Records waiting to be written, at most.
pub const QUEUE: usize = 4096;
/// Records written in one transaction, at most.
const BATCH: usize = 256;

enum Msg {
    /// A call's flow started: mark it open (`store::open_calls`), so a
    /// crash before its end still leaves a record at the next start.
    Open(Box<CallRecord>),
    /// The record and the call's events with their times (ms), turned into
    /// its timeline here, off the call's task.
    Record(Box<CallRecord>, Vec<(i64, Event)>),
    Flush(oneshot::Sender<()>),
}

/// The calls' end of the queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct RecordQueue {
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
    dropped: Arc<AtomicU64>,
}

/// The writer's end: run it once with [`RecordWriter::run`].
#[derive(Debug)]
pub struct RecordWriter {
    rx: mpsc::Receiver<Msg>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Open(r) => write!(f, "Open({})", r.call_id),
            Msg::Record(r, _) => write!(f, "Record({})", r.call_id),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// A queue of `capacity` records into `store`.
pub fn queue(
    capacity: usize,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
) -> (RecordQueue, RecordWriter) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        RecordQueue {
            tx,
            metrics: metrics.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        },
        RecordWriter { rx, store, metrics },
    )
}

impl RecordQueue {
    /// Hand `rec` to the writer without waiting; when the queue is full (or
    /// the writer gone) the record is dropped, counted and logged.
    pub fn push(&self, rec: CallRecord) {
        self.push_with_events(rec, Vec::new());
    }

    /// [`RecordQueue::push`] with the call's events (and when each
    /// happened, ms), stored as its timeline.
    pub fn push_with_events(&self, rec: CallRecord, events: Vec<(i64, Event)>) {
        let call_id = rec.call_id.clone();
        if self
            .tx
            .try_send(Msg::Record(Box::new(rec), events))
            .is_err()
        {
            self.metrics.record_dropped(1);
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(call = %call_id, dropped_total = total, "call record dropped: the record writer's queue is full");
        }
    }

    /// Mark the call of `start` (its record as it stands when the flow
    /// starts) open, without waiting; a full queue skips the mark (the call
    /// is then only lost to a crash, as before).
    pub fn open(&self, start: CallRecord) {
        if self.tx.try_send(Msg::Open(Box::new(start))).is_err() {
            debug!("open-call mark skipped: the record writer's queue is full");
        }
    }

    /// Wait (up to `limit`) until every record queued before now is written.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_err() {
            return false;
        }
        tokio::time::timeout(limit, wait)
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl RecordWriter {
    /// Write records as they come until every queue end is dropped.
    pub async fn run(mut self) {
        let mut batch: Vec<CallRecord> = Vec::with_capacity(BATCH);
        let mut timelines: Vec<(String, Vec<(i64, Event)>)> = Vec::new();
        let mut opens: Vec<CallRecord> = Vec::new();
        let mut flushes = Vec::new();
        while let Some(first) = self.rx.recv().await {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Open(r) => opens.push(*r),
                    Msg::Record(r, events) => {
                        if !events.is_empty() {
                            timelines.push((r.call_id.clone(), events));
                        }
                        batch.push(*r)
                    }
                    Msg::Flush(done) => flushes.push(done),
                }
                if batch.len() + opens.len() < BATCH {
                    next = self.rx.try_recv().ok();
                }
            }
            if !opens.is_empty() {
                // Before the batch's records: a call that began and ended
                // within one batch is marked, then unmarked by its record.
                let opened = std::mem::take(&mut opens);
                let store = self.store.clone();
                let done = tokio::task::spawn_blocking(move || store.open_calls(&opened)).await;
                if let Ok(Err(e)) = done {
                    warn!(error = %e, "marking calls open failed; a crash would lose their records");
                }
            }
            if !batch.is_empty() {
                let records = std::mem::take(&mut batch);
                let n = records.len() as u64;
                let events = std::mem::take(&mut timelines);
                let store = self.store.clone();
                let done = tokio::task::spawn_blocking(move || {
                    store.insert_call_records(&records)?;
                    // After the records: a timeline never outlives its
                    // record's purge. Losing one loses only the console's view.
                    let timelines: Vec<Timeline> = events.into_iter().map(timeline).collect();
                    if let Err(e) = store.insert_timelines(&timelines) {
                        warn!(error = %e, "writing call timelines failed; they are lost");
                    }
                    Ok::<(), crate::store::StoreError>(())
                })
                .await;
                match done {
                    Ok(Ok(())) => {
                        self.metrics.record_written(n);
                        debug!(records = n, "call records written");
                    }
                    Ok(Err(e)) => {
                        self.metrics.record_dropped(n);
                        warn!(records = n, error = %e, "writing call records failed; they are lost");
                    }
                    Err(e) => {
                        self.metrics.record_dropped(n);
                        warn!(records = n, error = %e, "writing call records failed; they are lost");
                    }
                }
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// A call's events as its stored timeline: each event's own JSON fields
/// (what `--events` writes for it), its name apart.
fn timeline((call_id, events): (String, Vec<(i64, Event)>)) -> Timeline {
    let events = events
        .into_iter()
        .take(MAX_EVENTS)
        .map(|(at, ev)| {
            let mut fields = match serde_json::to_value(&ev) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            fields.remove("event");
            CallEvent {
                at,
                kind: ev.name().to_string(),
                details: serde_json::Value::Object(fields).to_string(),
            }
        })
        .collect();
    Timeline { call_id, events }
}

/// Delete records older than `retention_days`, at start and then hourly,
/// on the blocking pool.
pub async fn purge_loop(store: Arc<Store>, retention_days: u32) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let s = store.clone();
        let before = crate::store::now_ms() - i64::from(retention_days) * 86_400_000;
        match tokio::task::spawn_blocking(move || s.purge_call_records(before)).await {
            Ok(Ok(n)) if n > 0 => debug!(records = n, retention_days, "purged old call records"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "purging call records failed"),
            Err(e) => warn!(error = %e, "purging call records failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::CallOutcome;

    fn record(id: &str) -> CallRecord {
        CallRecord {
            call_id: id.into(),
            started_at: crate::store::now_ms(),
            answered_at: None,
            ended_at: crate::store::now_ms(),
            caller_masked: "+1•••0001".into(),
            country: "US".into(),
            calling_code: "1".into(),
            dialled: "bank".into(),
            brand: String::new(),
            flow: "bank".into(),
            steps: 1,
            path: "hello".into(),
            outcome: CallOutcome::NoAuth,
            auth_method: None,
            auth_result: None,
            methods: Vec::new(),
            lookup: None,
            codes_sent: 0,
            code_send: None,
            transfer_result: None,
            transfer_agent: None,
            hangup_by: Some("engine".into()),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_never_waits() {
        let dir = std::env::temp_dir().join(format!(
            "vg-writer-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let store = Arc::new(Store::open(&dir.join("w.db")).unwrap());
        let metrics = Arc::new(Metrics::new());
        let (q, w) = queue(2, store.clone(), metrics.clone());
        // The writer is not running yet: the third record finds the queue full.
        for id in ["a", "b", "c"] {
            q.push(record(id));
        }
        let text = metrics.encode().unwrap();
        assert!(text.contains("voxgate_records_dropped_total 1\n"), "{text}");
        tokio::spawn(w.run());
        assert!(q.flush(Duration::from_secs(10)).await);
        let ids: Vec<String> = store
            .call_records()
            .unwrap()
            .into_iter()
            .map(|r| r.call_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let text = metrics.encode().unwrap();
        assert!(text.contains("voxgate_records_written_total 2\n"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
