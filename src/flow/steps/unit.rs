//! One self-describing unit per step kind: what the loader, the validator,
//! the interpreter and the JSON Schema test need to know about a kind, declared
//! once in the kind's own file (`steps/<kind>.rs`, as `UNIT`) and gathered in
//! [`UNITS`](super::UNITS).
//!
//! A unit says its name, how its body is read ([`Build`]: through a
//! [`FieldReader`] that records which fields the kind knows, so the list of
//! fields is never written twice), which exits it can take, which must be
//! routed and which caller outcomes may fall back to `max_attempts`, whether
//! it waits for the caller or calls a backend, and any check of its own.

use crate::flow::load::{BuildFn, FieldReader};
use crate::flow::model::{Exit, Step, StepKind};

/// How a kind's body becomes a [`StepKind`].
#[derive(Clone, Copy)]
pub(crate) enum Build {
    /// Read through a [`FieldReader`]; the fields it reads are the fields the
    /// kind accepts. `None`: the body is unusable (reported already).
    Reader(BuildFn),
}

/// Everything the engine's parts know about one step kind.
pub(crate) struct Unit {
    /// The YAML key (`collect_digits`).
    pub(crate) name: &'static str,
    pub(crate) build: Build,
    /// Exits the kind can take, in documentation order.
    pub(crate) exits: &'static [Exit],
    /// Exits the validator requires (`next:` is required when this is `[Next]`
    /// and `needs_next` says so).
    pub(crate) required: &'static [Exit],
    /// `next:` must be given (the step has nothing else to do after).
    pub(crate) needs_next: bool,
    /// Caller outcomes that may be routed by name or through `max_attempts`,
    /// with the situation for the message ("the caller enters nothing").
    pub(crate) fallbacks: &'static [(Exit, &'static str)],
    /// A loop through it cannot spin: it waits for the caller.
    pub(crate) waits_for_caller: bool,
    /// It asks a backend, which may be down: it must route `error`.
    pub(crate) calls_backend: bool,
    /// The engine's part of the call is over after it (hangup, transfer).
    pub(crate) ends_call: bool,
    /// Checks of its own beyond the above: messages about `step`'s exits
    /// (each follows "step `x` (kind) ").
    pub(crate) check_exits: fn(&Step) -> Vec<String>,
}

/// No checks of its own.
pub(crate) fn no_check(_: &Step) -> Vec<String> {
    Vec::new()
}

impl Unit {
    /// A unit with no exits, no requirements and no backend; kinds override
    /// what applies to them.
    pub(crate) const fn new(name: &'static str, build: Build) -> Unit {
        Unit {
            name,
            build,
            exits: &[],
            required: &[],
            needs_next: false,
            fallbacks: &[],
            waits_for_caller: false,
            calls_backend: false,
            ends_call: false,
            check_exits: no_check,
        }
    }

    /// The fields the kind accepts, in the order it reads them (its build run
    /// on an empty body, recording).
    pub(crate) fn fields(&self) -> Vec<&'static str> {
        match self.build {
            Build::Reader(build) => FieldReader::record(self.name, build),
        }
    }
}

/// The unit of a kind by YAML key.
pub(crate) fn unit(name: &str) -> Option<&'static Unit> {
    super::UNITS.iter().copied().find(|u| u.name == name)
}

/// The unit of a built step kind.
pub(crate) fn unit_of(kind: &StepKind) -> &'static Unit {
    // Every StepKind variant has a unit (checked by a test).
    unit(kind.name()).unwrap_or(&super::goto::UNIT)
}
