//! One self-describing unit per step kind: what the loader, the validator,
//! the interpreter and the JSON Schema test need to know about a kind, declared
//! once in the kind's own file (`steps/<kind>.rs`, as `UNIT`) and gathered in
//! [`UNITS`](super::UNITS).
//!
//! A unit says its name, how its body is read ([`Build`]: through a
//! [`FieldReader`] that records which fields the kind knows, so the list of
//! fields is never written twice), which exits it can take, which must be
//! routed and which caller outcomes may fall back to `max_attempts`, whether
//! it waits for the caller, calls a backend or ends the call, the prompts it
//! may play, the templates it renders and where they go, the variables it
//! sets, and the bounds of its own fields.
//!
//! Adding a step kind: write `steps/<kind>.rs` (its `UNIT`, its build and its
//! `run`), add the kind's struct and `StepKind` variant in `model.rs`, list
//! the unit in [`UNITS`](super::UNITS) and its `run` in
//! [`run_step`](super::run_step), then its schema (`docs/flow.schema.json`,
//! checked against the unit by a test) and its section in `docs/flows.md`.
//! Adding a field to a kind: read it in the kind's build (and describe it in
//! the schema and the doc); unknown-field messages and the schema test pick
//! it up from there.

use std::time::Duration;

use crate::flow::load::{BuildFn, FieldReader};
use crate::flow::model::{
    DigitInput, Exit, PromptRef, Span, Spanned, SpeechTimers, Step, StepKind, Template,
};

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
    /// The body itself names the next step (`goto: <step>`), so a `next:`
    /// beside it is an error.
    pub(crate) next_in_body: bool,
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
    /// Every prompt it may play, with its field name.
    pub(crate) prompts: fn(&StepKind) -> Vec<(&'static str, &PromptRef)>,
    /// Templates it renders besides prompts, and where each goes.
    pub(crate) reads: fn(&StepKind) -> Vec<Read<'_>>,
    /// Variables it sets.
    pub(crate) writes: fn(&StepKind) -> Vec<Written>,
    /// Bounds and other checks of its own fields.
    pub(crate) check_fields: fn(&Step, &mut Findings),
    /// What a step of this kind whose body could not be built may set, from
    /// its raw `into:` (or step id) and keys: the validator then does not
    /// report reads of those as "never set" (no cascades after load errors).
    pub(crate) guess_writes: fn(into: &str, keys: &[String]) -> Vec<Written>,
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
            next_in_body: false,
            fallbacks: &[],
            waits_for_caller: false,
            calls_backend: false,
            ends_call: false,
            check_exits: no_check,
            prompts: no_prompts,
            reads: no_reads,
            writes: no_writes,
            check_fields: no_field_checks,
            guess_writes: |_, _| Vec::new(),
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

// ---------------------------------------------------------------------------
// What units tell the validator: prompts, reads, writes, field checks
// ---------------------------------------------------------------------------

/// Variables set by verify_passphrase / verify_code / verify_totp.
pub const AUTH_VARS: &[&str] = &["auth.result", "auth.method", "auth.reason"];

/// Where a template's value goes, for the secrets rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sink {
    /// Stays inside the engine (lookups, send_code destination, flow vars).
    Internal,
    /// Spoken to the caller.
    Spoken,
    TransferHeader,
    TransferTarget,
    WebhookUrl,
    WebhookHeader,
    WebhookBody,
    /// Copied into another (non-secret) variable.
    SetValue,
}

/// A template a step renders, besides its prompts.
pub(crate) struct Read<'a> {
    /// How to name the place in a message: "`value`", "header X-Debug".
    pub(crate) label: String,
    pub(crate) t: &'a Template,
    pub(crate) sink: Sink,
}

impl<'a> Read<'a> {
    pub(crate) fn new(label: impl Into<String>, t: &'a Template, sink: Sink) -> Self {
        Read {
            label: label.into(),
            t,
            sink,
        }
    }
}

/// A variable (or family) a step sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Exact(String),
    /// Everything starting with this (`account.`).
    Prefix(String),
}

/// Problems a unit finds in its own fields, with the helpers bounds use.
pub(crate) struct Findings {
    /// "step `x` (kind)".
    pub(crate) what: String,
    pub(crate) found: Vec<(Span, String)>,
}

impl Findings {
    pub(crate) fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.found.push((span, msg.into()));
    }

    pub(crate) fn dur_in(
        &mut self,
        field: &str,
        d: &Spanned<Duration>,
        lo: Duration,
        hi: Duration,
    ) {
        if d.value < lo || d.value > hi {
            let msg = format!(
                "{}: `{field}` is {}; it must be between {} and {}",
                self.what,
                fmt_dur(d.value),
                fmt_dur(lo),
                fmt_dur(hi)
            );
            self.err(d.span, msg);
        }
    }

    pub(crate) fn int_in(&mut self, field: &str, n: &Spanned<u32>, lo: u32, hi: u32) {
        if n.value < lo || n.value > hi {
            let msg = format!(
                "{}: `{field}` is {}; it must be between {lo} and {hi}",
                self.what, n.value
            );
            self.err(n.span, msg);
        }
    }

    /// Bounds of the digit input fields (collect_digits, verify_code, verify_totp).
    pub(crate) fn digits_in(&mut self, step: &Step, d: &DigitInput) {
        let s = Duration::from_secs;
        self.dur_in("first_digit_timeout", &d.first_digit_timeout, s(1), s(60));
        self.dur_in("inter_digit_timeout", &d.inter_digit_timeout, s(1), s(30));
        self.int_in("tries", &d.tries, 1, 10);
        let w = self.what.clone();
        if d.min > d.max {
            self.err(
                step.span,
                format!("{w}: `min` ({}) is greater than `max` ({})", d.min, d.max),
            );
        }
        if d.min == 0 {
            self.err(step.span, format!("{w}: `min` is 0; it must be at least 1"));
        }
        if d.max > 64 {
            self.err(
                step.span,
                format!("{w}: `max` is {}; it must be at most 64", d.max),
            );
        }
    }

    /// Bounds of the speech timers (recognize, verify_passphrase).
    pub(crate) fn speech_in(&mut self, t: &SpeechTimers) {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        self.dur_in("no_input_timeout", &t.no_input_timeout, s(1), s(60));
        self.dur_in(
            "end_of_speech_timeout",
            &t.end_of_speech_timeout,
            ms(200),
            s(5),
        );
        self.dur_in("max_duration", &t.max_duration, s(1), s(120));
    }
}

/// `500ms`, `5s`, `2m` as the validator prints durations.
pub(crate) fn fmt_dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms >= 120_000 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The prompts of a digit input, with their field names.
pub(crate) fn digit_prompts(input: &DigitInput) -> Vec<(&'static str, &PromptRef)> {
    let mut out: Vec<(&'static str, &PromptRef)> = Vec::new();
    out.extend(input.prompts.iter().map(|x| ("prompts", x)));
    out.extend(
        input
            .no_input_prompts
            .iter()
            .map(|x| ("no_input_prompts", x)),
    );
    out.extend(input.invalid_prompts.iter().map(|x| ("invalid_prompts", x)));
    out
}

/// Tagged prompt lists (`("prompts", &step.prompts)`, …), flattened.
pub(crate) fn tagged<'a>(
    lists: &[(&'static str, &'a [PromptRef])],
) -> Vec<(&'static str, &'a PromptRef)> {
    lists
        .iter()
        .flat_map(|(name, l)| l.iter().map(move |p| (*name, p)))
        .collect()
}

/// What a broken verify step may have set.
pub(crate) fn auth_guessed(_: &str, _: &[String]) -> Vec<Written> {
    vec![Written::Prefix("auth.".into())]
}

/// A broken input step may have set its `into`.
pub(crate) fn into_guessed(into: &str, _: &[String]) -> Vec<Written> {
    vec![Written::Exact(into.to_string())]
}

/// The `auth.*` variables, for the verify steps.
pub(crate) fn auth_written(_: &StepKind) -> Vec<Written> {
    AUTH_VARS
        .iter()
        .map(|s| Written::Exact(s.to_string()))
        .collect()
}

pub(crate) fn no_prompts(_: &StepKind) -> Vec<(&'static str, &PromptRef)> {
    Vec::new()
}

pub(crate) fn no_reads(_: &StepKind) -> Vec<Read<'_>> {
    Vec::new()
}

pub(crate) fn no_writes(_: &StepKind) -> Vec<Written> {
    Vec::new()
}

pub(crate) fn no_field_checks(_: &Step, _: &mut Findings) {}
