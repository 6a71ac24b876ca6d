//! What calls leave behind for operators: a record per call in the store
//! and the Prometheus metrics, both folded from the call's events.
//!
//! A call gets a [`CallTap`] when its flow starts; every event of the call
//! goes through [`CallTap::event`] (a fold in memory and a few atomic
//! increments), and when the call ends the finished record is handed to
//! the one record writer ([`writer`]) without waiting. Sits over the store
//! and reads the media layer's global counters; `web` serves the metrics.

pub mod active;
pub mod fold;
pub mod metrics;
pub mod writer;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use active::{ActiveCall, ActiveCalls};
pub use fold::{Accumulator, CallStart};
pub use metrics::{LabelledCounters, Metrics};
pub use writer::{RecordQueue, RecordWriter};

use crate::config::RecordsConfig;
use crate::events::Event;
use crate::phone::Country;

/// The process's telemetry: the metrics and, when records are on, the
/// queue to the record writer.
#[derive(Debug)]
pub struct Telemetry {
    metrics: Arc<Metrics>,
    records: Option<RecordQueue>,
    mask_caller: bool,
    default_country: Country,
    active: Arc<ActiveCalls>,
}

impl Telemetry {
    /// Metrics into `metrics`, records (if any) into `records`.
    pub fn new(
        metrics: Arc<Metrics>,
        records: Option<RecordQueue>,
        cfg: &RecordsConfig,
        default_country: Country,
    ) -> Telemetry {
        Telemetry {
            metrics,
            records,
            mask_caller: cfg.mask_caller,
            default_country,
            active: Arc::new(ActiveCalls::default()),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The record queue, when records are written.
    pub fn records(&self) -> Option<&RecordQueue> {
        self.records.as_ref()
    }

    /// The calls in progress (the console shows them).
    pub fn active(&self) -> &Arc<ActiveCalls> {
        &self.active
    }

    /// A call's flow starts: count it active and begin its record.
    pub fn call(self: &Arc<Self>, start: CallStart) -> CallTap {
        self.metrics.call_started();
        let call_id = start.call_id.clone();
        let (brand, flow, started_at) =
            (start.brand.clone(), start.flow.clone(), start.started_at_ms);
        let acc = Accumulator::new(start, self.mask_caller, self.default_country);
        self.active.begin(ActiveCall {
            call_id: call_id.clone(),
            caller_masked: acc.caller_masked().to_string(),
            brand,
            flow,
            step: String::new(),
            started_at,
        });
        if let Some(q) = &self.records {
            // Marked open now, so a crash still leaves a record for it.
            q.open(acc.opening());
        }
        CallTap {
            acc: Some(acc),
            hub: self.clone(),
            call_id,
            events: Vec::new(),
        }
    }
}

/// One call's view of the telemetry; ends the call's record when finished
/// or dropped (so a call that panics or is cancelled still leaves its record
/// and the active-calls gauge stays right).
#[derive(Debug)]
pub struct CallTap {
    hub: Arc<Telemetry>,
    acc: Option<Accumulator>,
    call_id: String,
    /// The call's events and their times (ms), for its stored timeline
    /// (only when records are written; at most the store's cap).
    events: Vec<(i64, Event)>,
}

impl CallTap {
    /// The caller's ACK confirmed the answer at `at`.
    pub fn answered(&mut self, at: SystemTime) {
        if let Some(a) = &mut self.acc {
            a.answered(ms(at));
        }
    }

    /// The caller left before the call was confirmed.
    pub fn caller_gone(&mut self) {
        if let Some(a) = &mut self.acc {
            a.caller_gone();
        }
    }

    /// Fold one event of the call in (cheap; called on the call's task).
    pub fn event(&mut self, ev: &Event) {
        self.hub.metrics.event(ev);
        if let Event::StepEntered { step, .. } = ev {
            self.hub.active.step(&self.call_id, step);
        }
        if let Some(a) = &mut self.acc {
            a.fold(ev);
        }
        if self.hub.records.is_some() && self.events.len() < crate::store::timeline::MAX_EVENTS {
            self.events.push((ms(SystemTime::now()), ev.clone()));
        }
    }

    /// The call ended: count it and queue its record.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        let Some(acc) = self.acc.take() else {
            return;
        };
        self.hub.active.end(&self.call_id);
        let rec = acc.finish(ms(SystemTime::now()));
        self.hub.metrics.call_ended(&rec.flow, rec.outcome.as_str());
        if let Some(q) = &self.hub.records {
            q.push_with_events(rec, std::mem::take(&mut self.events));
        }
    }
}

impl Drop for CallTap {
    fn drop(&mut self) {
        self.end();
    }
}

/// Milliseconds since the epoch.
fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
