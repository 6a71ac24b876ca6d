//! Calls in progress, for the operator console: a small shared map fed by
//! the calls' own telemetry taps (flow start, each step entered, end). It
//! holds the caller only masked, the flow, the current step and the start.

use std::collections::HashMap;
use std::sync::Mutex;

/// A call in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveCall {
    /// voxgate's call id.
    pub call_id: String,
    /// The caller, masked as in the records.
    pub caller_masked: String,
    /// The route's brand.
    pub brand: String,
    /// The flow running.
    pub flow: String,
    /// The step it is in ("" before the first).
    pub step: String,
    /// When the flow started (ms since the epoch).
    pub started_at: i64,
}

/// The registry; one per process, shared.
#[derive(Debug, Default)]
pub struct ActiveCalls {
    calls: Mutex<HashMap<String, ActiveCall>>,
}

impl ActiveCalls {
    /// A call's flow started.
    pub fn begin(&self, call: ActiveCall) {
        if let Ok(mut m) = self.calls.lock() {
            m.insert(call.call_id.clone(), call);
        }
    }

    /// Call `call_id` entered `step`.
    pub fn step(&self, call_id: &str, step: &str) {
        if let Ok(mut m) = self.calls.lock() {
            if let Some(c) = m.get_mut(call_id) {
                step.clone_into(&mut c.step);
            }
        }
    }

    /// Call `call_id` ended.
    pub fn end(&self, call_id: &str) {
        if let Ok(mut m) = self.calls.lock() {
            m.remove(call_id);
        }
    }

    /// Every call in progress, oldest first.
    pub fn snapshot(&self) -> Vec<ActiveCall> {
        let mut v: Vec<ActiveCall> = self
            .calls
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| (a.started_at, &a.call_id).cmp(&(b.started_at, &b.call_id)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_come_move_and_go() {
        let a = ActiveCalls::default();
        a.begin(ActiveCall {
            call_id: "c1".into(),
            caller_masked: "+1•••0001".into(),
            brand: String::new(),
            flow: "bank".into(),
            step: String::new(),
            started_at: 5,
        });
        a.step("c1", "ask_code");
        a.step("nope", "x");
        assert_eq!(a.snapshot()[0].step, "ask_code");
        a.end("c1");
        assert!(a.snapshot().is_empty());
    }
}
