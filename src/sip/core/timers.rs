//! The next deadline of every call, in a min-heap (issue 16 item 2): the
//! loop asks for the earliest one after every packet, and an INVITE flood
//! leaves thousands of dialogs with a 200 OK retransmission timer each, so
//! scanning them all per packet made the SIP thread's work grow with the
//! number of dialogs.
//!
//! A call's timers (its dialog's INVITE and BYE transactions, its REFER,
//! re-INVITE and placed leg) are summed up as one deadline per Call-ID.
//! Inputs only mark the call they name as changed ([`Timers::touch`]); the
//! core recomputes those calls' deadlines before the loop next asks. A
//! superseded heap entry is not removed but skipped (lazy deletion: each
//! entry carries the generation it was pushed with, and only the call's
//! current generation counts), and the heap is rebuilt when stale entries
//! outnumber live ones.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use super::CallRef;

#[derive(Default)]
pub(super) struct Timers {
    /// (deadline, generation, call), earliest first; stale entries included.
    heap: BinaryHeap<Reverse<(Instant, u64, CallRef)>>,
    /// Each call's current deadline and the generation of its live entry.
    at: HashMap<CallRef, (Instant, u64)>,
    generation: u64,
    /// Calls an input touched since their deadlines were last computed.
    dirty: Vec<CallRef>,
}

impl Timers {
    /// `call`'s timers may have changed: recompute its deadline before the
    /// next question.
    pub(super) fn touch(&mut self, call: &str) {
        // Duplicates are harmless: setting an unchanged deadline is a no-op.
        self.dirty.push(call.to_string());
    }

    /// The calls touched since the last call, for recomputing.
    pub(super) fn take_dirty(&mut self) -> Vec<CallRef> {
        std::mem::take(&mut self.dirty)
    }

    /// Set `call`'s deadline (None: no timer).
    pub(super) fn set(&mut self, call: &str, deadline: Option<Instant>) {
        match deadline {
            None => {
                self.at.remove(call);
            }
            Some(t) => {
                if self.at.get(call).is_some_and(|(cur, _)| *cur == t) {
                    return;
                }
                self.generation += 1;
                self.at.insert(call.to_string(), (t, self.generation));
                self.heap
                    .push(Reverse((t, self.generation, call.to_string())));
            }
        }
        self.prune();
    }

    fn live(&self, generation: u64, call: &str) -> bool {
        self.at.get(call).is_some_and(|(_, g)| *g == generation)
    }

    /// Keep a live entry on top (so `next` needs no `&mut`), and the heap
    /// from growing with superseded entries.
    fn prune(&mut self) {
        while let Some(Reverse((_, g, c))) = self.heap.peek() {
            if self.live(*g, c) {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.at.len() + 64 {
            self.heap = self
                .at
                .iter()
                .map(|(c, (t, g))| Reverse((*t, *g, c.clone())))
                .collect();
        }
    }

    /// The earliest deadline of any call.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The calls whose deadline is `now` or earlier, earliest first; each is
    /// forgotten until it is set again.
    pub(super) fn pop_due(&mut self, now: Instant) -> Vec<CallRef> {
        let mut due = Vec::new();
        while let Some(Reverse((t, g, c))) = self.heap.peek() {
            if *t > now {
                break;
            }
            let live = self.live(*g, c);
            if let Some(Reverse((_, _, c))) = self.heap.pop() {
                if live {
                    self.at.remove(&c);
                    due.push(c);
                }
            }
        }
        self.prune();
        due
    }

    /// Calls with a deadline (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }

    /// Heap entries, stale ones included (tests).
    #[cfg(test)]
    pub(super) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_skips_superseded_and_removed() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for i in 0..1000u64 {
            // Reverse order of insertion, so the heap does the sorting.
            t.set(&format!("c{i}"), Some(t0 + Duration::from_millis(1000 - i)));
        }
        // c999 moves later (its old entry is stale), c998 is removed.
        t.set("c999", Some(t0 + Duration::from_millis(5000)));
        t.set("c998", None);
        assert_eq!(t.len(), 999);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(3)));
        let due = t.pop_due(t0 + Duration::from_millis(1000));
        let expect: Vec<String> = (0..998).rev().map(|i| format!("c{i}")).collect();
        assert_eq!(due, expect);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(5000)));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(5000)), vec!["c999"]);
        assert_eq!(t.next(), None);
        assert!(t.pop_due(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn heap_does_not_grow_with_rescheduling() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for round in 0..1000u64 {
            for i in 0..10 {
                t.set(
                    &format!("c{i}"),
                    Some(t0 + Duration::from_millis(round * 10 + i)),
                );
            }
        }
        assert_eq!(t.len(), 10);
        assert!(t.heap_len() <= 2 * 10 + 64 + 1, "{}", t.heap_len());
    }
}
