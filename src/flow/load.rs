//! Flow loader: YAML text → typed [`Flow`], or every problem found on the way.
//!
//! YAML crate choice: `serde-saphyr`. Its `Spanned<T>` wrapper gives the
//! line/column of any value, so we deserialize the whole document into a
//! small span-carrying tree (`Node`) and then build the typed model by hand.
//! Walking a tree ourselves (instead of `#[derive(Deserialize)]` on the model)
//! is what lets us collect *all* mistakes in one pass — serde stops at the
//! first — and word each message for flow authors rather than for Rust types.
//! Options used: `strict_booleans` (so a key `on:` or `no:` stays a string, as
//! YAML 1.2 says), duplicate keys passed through (so we can report duplicate
//! step ids with both positions), leading-zero numbers kept as strings (phone
//! numbers like `0123…`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration;
use crate::flow::diag::{self, Diagnostic};
use crate::flow::expr;
use crate::flow::model::*;
use crate::flow::state::{reserved_list, reserved_owner, Reserved};
use crate::flow::steps::unit::{unit, unit_of, Build, Written};
use crate::flow::steps::UNITS;
use crate::yaml::to_span;
pub(crate) use crate::yaml::{Node, Val};

// ---------------------------------------------------------------------------
// Field tables: the single source of truth for which keys each kind accepts.
// The JSON-schema test compares docs/flow.schema.json against these.
// ---------------------------------------------------------------------------

/// Top-level keys of a flow file.
pub const FLOW_FIELDS: &[&str] = &[
    "flow",
    "description",
    "start",
    "max_duration",
    "vars",
    "steps",
];
/// Keys a step may have besides its one kind key.
pub const STEP_COMMON_FIELDS: &[&str] = &["next", "on", "description"];

/// Every step kind's name, in documentation order (from the units).
pub(crate) fn kind_list() -> Vec<&'static str> {
    UNITS.iter().map(|u| u.name).collect()
}

fn kind_names() -> String {
    kind_list().join(", ")
}

// ---------------------------------------------------------------------------
// Loader context
// ---------------------------------------------------------------------------

/// Edit distance, for "did you mean" suggestions.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        // Also never "correct" a word into something it shares nothing with.
        .filter(|(d, c)| *d <= limit && *d < word.chars().count().max(c.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    nearest(word, candidates.iter().copied())
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// The loader's state while it walks one file (steps run with `steps::Ctx`).
struct Loader<'p> {
    path: &'p Path,
    diags: Vec<Diagnostic>,
    /// "step `x` (kind)" while building a step, so field messages say where they are.
    scope: String,
    /// What had to be guessed to keep going after an error.
    rec: Recovery,
}

/// What the lenient loader had to guess after load errors, so the validator
/// can check the rest of the flow without reporting mere consequences of
/// those errors (a step with an unknown kind is not "missing exits", a step
/// reached only through a rejected exit is not "unreachable", …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovery {
    /// Steps whose kind could not be built (unknown kind, several kinds, not a
    /// mapping, unusable body). They stay in `Flow::steps` as placeholders
    /// (`StepKind::Goto` carrying the exits as written) so targets naming them
    /// are not dangling; kind-specific checks skip them.
    pub placeholders: BTreeSet<StepId>,
    /// Steps whose way out is partly unknown (an exit or `on:` that was not a
    /// step id): they may lead anywhere.
    pub opaque: BTreeSet<StepId>,
    /// Targets written under a rejected exit (`from`, `to`): they count for
    /// reachability and ways out, but are not checked as targets.
    pub hidden_edges: Vec<(StepId, StepId)>,
    /// Exact variable names that placeholder steps or misspelt fields may
    /// set, so reading them is not reported as "never set".
    pub maybe_set: BTreeSet<String>,
    /// Likewise for whole families: prefixes ending in `.` (`crm.`).
    pub maybe_prefixes: BTreeSet<String>,
    /// `start` could not be read or a step was dropped whole: which steps are
    /// reachable is unknown.
    pub reach_unknown: bool,
    /// `vars:` could not be read: any variable may be set.
    pub vars_unknown: bool,
}

/// Everything lenient loading found: the best-effort flow, the load
/// diagnostics, and what was guessed.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// `None` only when the file can't be read, isn't YAML, or isn't a mapping.
    pub flow: Option<Flow>,
    /// Load diagnostics, sorted by position.
    pub diags: Vec<Diagnostic>,
    /// What was guessed to get `flow`; the validator needs it to avoid cascades.
    pub recovery: Recovery,
}

/// A mapping's entries by key, after unknown/duplicate keys were reported.
pub(crate) struct Fields<'n> {
    entries: Vec<(String, &'n Node, Span)>,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find(|e| e.0 == name).map(|e| e.1)
    }
}

impl Loader<'_> {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(self.path, span, msg));
    }

    /// A field-level error, prefixed with the current step.
    fn ferr(&mut self, span: Span, msg: impl Into<String>) {
        let msg = msg.into();
        let msg = if self.scope.is_empty() {
            msg
        } else {
            format!("{}: {msg}", self.scope)
        };
        self.diags.push(Diagnostic::new(self.path, span, msg));
    }

    /// A misspelt field was reported; note what it meant to say, so the
    /// validator does not also report what that field would have provided.
    fn note_misspelt(&mut self, name: &str, value: &Node, allowed: &[&str]) {
        match nearest(name, allowed.iter().copied()) {
            // `int: pin` for `into: pin`: `pin` may be set.
            Some("into") => {
                if let Some(v) = value.scalar_text() {
                    self.rec.maybe_prefixes.insert(format!("{v}."));
                    self.rec.maybe_set.insert(v);
                }
            }
            // `var:` for `vars:`: its names may be set.
            Some("vars") if allowed == FLOW_FIELDS => match &value.val {
                Val::Map(m) => self
                    .rec
                    .maybe_set
                    .extend(m.iter().filter_map(|(k, _)| k.scalar_text())),
                _ => self.rec.vars_unknown = true,
            },
            // `strat:` for `start:`: the start step is unknown.
            Some("start") if allowed == FLOW_FIELDS => self.rec.reach_unknown = true,
            _ => {}
        }
    }

    /// Check a mapping's keys against `allowed` and index them. `what` names
    /// the place for messages (e.g. "step `greet` (play)").
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let entries = match &node.val {
            Val::Map(m) => m,
            Val::Null => return Some(Fields { entries: vec![] }),
            _ => {
                self.err(
                    node.span,
                    format!(
                        "{what} must be a mapping of fields ({}), got {}",
                        allowed.join(", "),
                        node.shown()
                    ),
                );
                return None;
            }
        };
        let mut out: Vec<(String, &'n Node, Span)> = Vec::new();
        for (k, v) in entries {
            let Some(name) = k.scalar_text() else {
                self.err(
                    k.span,
                    format!("{what}: a key must be a plain name, got {}", k.shown()),
                );
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                self.err(
                    k.span,
                    format!(
                        "{what}: unknown field `{name}`{}; allowed fields: {}",
                        did_you_mean(&name, allowed),
                        allowed.join(", ")
                    ),
                );
                self.note_misspelt(&name, v, allowed);
                continue;
            }
            if let Some(prev) = out.iter().find(|e| e.0 == name) {
                let line = prev.2.line;
                self.err(
                    k.span,
                    format!("{what}: field `{name}` is given twice (first on line {line})"),
                );
                continue;
            }
            out.push((name, v, k.span));
        }
        Some(Fields { entries: out })
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<Spanned<String>> {
        match node.scalar_text() {
            Some(s) => Some(Spanned::new(s, node.span)),
            None => {
                self.ferr(
                    node.span,
                    format!("`{field}` must be text, got {}", node.shown()),
                );
                None
            }
        }
    }

    /// A template string; `${…}` syntax is checked here so typos surface at load.
    fn template(&mut self, node: &Node, field: &str) -> Option<Template> {
        let t = self.string(node, field)?;
        if let Err(e) = expr::template_vars(&t.value) {
            self.ferr(node.span, format!("`{field}`: {e}"));
            return None;
        }
        Some(t)
    }

    /// Like [`Loader::template`], but keeps going: a bad template is reported and
    /// kept as written (checks that parse templates skip it), a non-text value
    /// becomes an empty string.
    fn template_or_raw(&mut self, node: &Node, field: &str) -> Template {
        match self.string(node, field) {
            Some(t) => {
                if let Err(e) = expr::template_vars(&t.value) {
                    self.ferr(node.span, format!("`{field}`: {e}"));
                }
                t
            }
            None => Spanned::new(String::new(), node.span),
        }
    }

    fn uint(&mut self, node: &Node, field: &str) -> Option<Spanned<u32>> {
        let parsed = match &node.val {
            Val::Int(n) => u32::try_from(*n).ok(),
            Val::Str(s) => s.trim().parse::<u32>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.ferr(
                node.span,
                format!("`{field}` must be a whole number, got {}", node.shown()),
            );
        }
        parsed.map(|n| Spanned::new(n, node.span))
    }

    fn float(&mut self, node: &Node, field: &str) -> Option<Spanned<f32>> {
        let parsed = match &node.val {
            Val::Int(n) => Some(*n as f32),
            Val::Float(f) => Some(*f as f32),
            Val::Str(s) => s.trim().parse::<f32>().ok(),
            _ => None,
        };
        match parsed {
            Some(f) if f.is_finite() => Some(Spanned::new(f, node.span)),
            _ => {
                self.ferr(
                    node.span,
                    format!(
                        "`{field}` must be a number such as 0.5, got {}",
                        node.shown()
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match &node.val {
            Val::Bool(b) => Some(*b),
            _ => {
                self.ferr(
                    node.span,
                    format!("`{field}` must be true or false, got {}", node.shown()),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, field: &str) -> Option<Spanned<Duration>> {
        let parsed = match &node.val {
            Val::Int(n) if *n >= 0 => u64::try_from(*n).ok().map(Duration::from_secs),
            Val::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e9 => {
                Some(Duration::from_secs_f64(*f))
            }
            Val::Str(s) => parse_duration(s),
            _ => None,
        };
        if parsed.is_none() {
            self.ferr(
                node.span,
                format!(
                    "`{field}`: {} is not a duration; write e.g. 500ms, 5s, 2m",
                    node.shown()
                ),
            );
        }
        parsed.map(|d| Spanned::new(d, node.span))
    }

    /// A list of prompt names; a single name is accepted as a one-item list.
    fn prompts(&mut self, node: &Node, field: &str) -> Vec<PromptRef> {
        match &node.val {
            Val::Null => vec![],
            Val::Seq(items) => items
                .iter()
                .filter_map(|n| {
                    let t = self.template(n, field)?;
                    if t.value.trim().is_empty() {
                        self.ferr(n.span, format!("`{field}`: empty prompt name"));
                        return None;
                    }
                    Some(t)
                })
                .collect(),
            Val::Str(_) => self.template(node, field).into_iter().collect(),
            _ => {
                self.ferr(
                    node.span,
                    format!(
                        "`{field}` must be a list of prompt names like [welcome, menu], got {}",
                        node.shown()
                    ),
                );
                vec![]
            }
        }
    }

    /// A mapping of names to templates (headers, body, set, vars), in file order.
    fn template_map(&mut self, node: &Node, field: &str) -> Vec<(Spanned<String>, Template)> {
        let entries = match &node.val {
            Val::Map(m) => m,
            Val::Null => return vec![],
            _ => {
                self.ferr(
                    node.span,
                    format!(
                        "`{field}` must be a mapping of name: value, got {}",
                        node.shown()
                    ),
                );
                return vec![];
            }
        };
        let mut out: Vec<(Spanned<String>, Template)> = Vec::new();
        for (k, v) in entries {
            let Some(name) = k.scalar_text() else {
                self.ferr(
                    k.span,
                    format!("`{field}`: a key must be a plain name, got {}", k.shown()),
                );
                continue;
            };
            if let Some(prev) = out.iter().find(|(n, _)| n.value == name) {
                let line = prev.0.span.line;
                self.ferr(
                    k.span,
                    format!("`{field}`: `{name}` is given twice (first on line {line})"),
                );
                continue;
            }
            let label = format!("{field}.{name}");
            let t = self.template_or_raw(v, &label);
            out.push((Spanned::new(name, k.span), t));
        }
        out
    }

    fn barge_in(&mut self, node: &Node, default: BargeIn) -> BargeIn {
        match &node.val {
            Val::Bool(b) => BargeIn {
                digits: *b,
                speech: *b,
            },
            Val::Map(_) => {
                let mut out = default;
                if let Some(f) = self.fields(node, "`barge_in`", &["digits", "speech"]) {
                    if let Some(n) = f.get("digits") {
                        out.digits = self.boolean(n, "barge_in.digits").unwrap_or(out.digits);
                    }
                    if let Some(n) = f.get("speech") {
                        out.speech = self.boolean(n, "barge_in.speech").unwrap_or(out.speech);
                    }
                }
                out
            }
            _ => {
                self.ferr(
                    node.span,
                    format!("`barge_in` must be true, false or {{ digits: true, speech: false }}, got {}", node.shown()),
                );
                default
            }
        }
    }

    /// Parse a one-of-these-words field (`as`, `mode`, `method`, `channel`).
    fn choice<T: Copy>(&mut self, node: &Node, field: &str, options: &[(&str, T)]) -> Option<T> {
        let text = node.scalar_text().unwrap_or_default();
        if let Some((_, v)) = options
            .iter()
            .find(|(n, _)| *n == text.to_ascii_lowercase())
        {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.ferr(
            node.span,
            format!(
                "`{field}` must be one of {}, got {}",
                names.join(", "),
                node.shown()
            ),
        );
        None
    }
}

/// Flow durations: `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds
/// (`5`, `0.5`), below 10⁹ s ([`duration::Dialect::Flow`]: no `min`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    duration::parse(s, duration::Dialect::Flow)
        .ok()
        .filter(|d| d.as_secs() < 1_000_000_000)
}

// ---------------------------------------------------------------------------
// Field reader: how a step kind's unit reads its body
// ---------------------------------------------------------------------------

/// A kind's build, as its unit declares it.
pub(crate) type BuildFn = fn(&mut FieldReader<'_, '_, '_>) -> Option<StepKind>;

/// Reads one step kind's body for its unit ([`crate::flow::steps::unit`]).
/// Every field the unit asks for is recorded, so the kind's list of fields is
/// what its build reads: unknown-field and "did you mean" messages, the
/// JSON-Schema test and the "belongs inside the kind" hint all use that list.
/// A bad field is reported here and falls back to its default, so the rest of
/// the step is still checked (one pass, no cascades).
pub(crate) struct FieldReader<'l, 'p, 'n> {
    ld: &'l mut Loader<'p>,
    body: &'n Node,
    sid: String,
    kind: &'static str,
    span: Span,
    what: String,
    build: BuildFn,
    /// Fields asked for so far.
    known: Vec<&'static str>,
    /// The build asked for a mapping of fields (so unknown keys are checked).
    fields_kind: bool,
    /// Recording a kind's field list: nothing is reported.
    recording: bool,
}

impl<'n> FieldReader<'_, '_, 'n> {
    /// The fields `build` reads, in order (run on an empty body).
    pub(crate) fn record(kind: &'static str, build: BuildFn) -> Vec<&'static str> {
        let mut ld = Loader {
            path: Path::new(""),
            diags: Vec::new(),
            scope: String::new(),
            rec: Recovery::default(),
        };
        let null = Node {
            val: Val::Null,
            span: Span::default(),
        };
        let mut r = FieldReader {
            ld: &mut ld,
            body: &null,
            sid: String::new(),
            kind,
            span: Span::default(),
            what: String::new(),
            build,
            known: Vec::new(),
            fields_kind: false,
            recording: true,
        };
        build(&mut r);
        r.known
    }

    /// The step id.
    pub(crate) fn sid(&self) -> &str {
        &self.sid
    }

    /// Where the kind key is (defaults and whole-step errors point here).
    pub(crate) fn span(&self) -> Span {
        self.span
    }

    /// "step `x` (kind)", for messages.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    /// The body as written, for kinds that are not a mapping of fields.
    pub(crate) fn body(&self) -> &'n Node {
        self.body
    }

    /// Declare a field this kind knows without reading it through `get`.
    pub(crate) fn declare(&mut self, name: &'static str) {
        if !self.known.contains(&name) {
            self.known.push(name);
        }
    }

    /// The body must be a mapping of fields (or empty); reports it if not.
    /// Unknown and repeated fields are checked once the build is done.
    pub(crate) fn mapping(&mut self) -> bool {
        self.fields_kind = true;
        if matches!(self.body.val, Val::Map(_) | Val::Null) {
            return true;
        }
        let allowed = Self::record(self.kind, self.build);
        let msg = format!(
            "{} must be a mapping of fields ({}), got {}",
            self.what,
            allowed.join(", "),
            self.body.shown()
        );
        self.err(self.body.span, msg);
        false
    }

    /// A field's node (the first one given; repeats are reported later).
    pub(crate) fn get(&mut self, name: &'static str) -> Option<&'n Node> {
        self.declare(name);
        let Val::Map(m) = &self.body.val else {
            return None;
        };
        m.iter()
            .find(|(k, _)| k.scalar_text().as_deref() == Some(name))
            .map(|(_, v)| v)
    }

    pub(crate) fn err(&mut self, span: Span, msg: impl Into<String>) {
        if !self.recording {
            self.ld.err(span, msg);
        }
    }

    /// A field-level error, prefixed with the step.
    pub(crate) fn ferr(&mut self, span: Span, msg: impl Into<String>) {
        if !self.recording {
            self.ld.ferr(span, msg);
        }
    }

    /// Diagnostics so far (to tell whether reading a field reported anything).
    pub(crate) fn diag_count(&self) -> usize {
        self.ld.diags.len()
    }

    /// What the loader guessed, for kinds that route (branch).
    pub(crate) fn rec(&mut self) -> &mut Recovery {
        &mut self.ld.rec
    }

    pub(crate) fn prompts(&mut self, name: &'static str) -> Vec<PromptRef> {
        match self.get(name) {
            Some(n) => self.ld.prompts(n, name),
            None => Vec::new(),
        }
    }

    /// Prompts written as the whole body (`play: [a, b]`).
    pub(crate) fn node_prompts(&mut self, node: &Node, field: &str) -> Vec<PromptRef> {
        self.ld.prompts(node, field)
    }

    pub(crate) fn node_string(&mut self, node: &Node, field: &str) -> Option<Spanned<String>> {
        self.ld.string(node, field)
    }

    /// Recording the field list: no body was given, nothing is reported.
    pub(crate) fn recording(&self) -> bool {
        self.recording
    }

    pub(crate) fn node_template_map(
        &mut self,
        node: &Node,
        field: &str,
    ) -> Vec<(Spanned<String>, Template)> {
        self.ld.template_map(node, field)
    }

    pub(crate) fn is_var_name(&self, s: &str) -> bool {
        is_var_name(s)
    }

    /// Refuse writes to engine-owned names (`set:` keys).
    pub(crate) fn refuse_engine_writes(&mut self, names: &[(Spanned<String>, Template)]) {
        if !self.recording {
            let what = self.what.clone();
            check_writable_names(self.ld, &what, names);
        }
    }

    /// A mapping other than the body (a branch case), checked against `allowed`.
    pub(crate) fn node_fields<'m>(
        &mut self,
        node: &'m Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'m>> {
        self.ld.fields(node, what, allowed)
    }

    pub(crate) fn string(&mut self, name: &'static str) -> Option<Spanned<String>> {
        let n = self.get(name)?;
        self.ld.string(n, name)
    }

    pub(crate) fn template(&mut self, name: &'static str) -> Option<Template> {
        let n = self.get(name)?;
        self.ld.template(n, name)
    }

    /// A field that must be given: missing is reported as
    /// "{what} needs `name:` {example}" and read as empty.
    pub(crate) fn required_template(&mut self, name: &'static str, example: &str) -> Template {
        match self.get(name) {
            Some(n) => self.ld.template_or_raw(n, name),
            None => {
                let msg = format!("{} needs `{name}:` {example}", self.what);
                self.err(self.span, msg);
                Spanned::new(String::new(), self.span)
            }
        }
    }

    pub(crate) fn uint(&mut self, name: &'static str) -> Option<Spanned<u32>> {
        let n = self.get(name)?;
        self.ld.uint(n, name)
    }

    pub(crate) fn uint_or(&mut self, name: &'static str, default: u32) -> Spanned<u32> {
        let span = self.span;
        self.uint(name).unwrap_or(Spanned::new(default, span))
    }

    pub(crate) fn float_or(&mut self, name: &'static str, default: f32) -> Spanned<f32> {
        let span = self.span;
        match self.get(name) {
            Some(n) => self.ld.float(n, name),
            None => None,
        }
        .unwrap_or(Spanned::new(default, span))
    }

    pub(crate) fn boolean(&mut self, name: &'static str) -> Option<bool> {
        let n = self.get(name)?;
        self.ld.boolean(n, name)
    }

    pub(crate) fn duration_or(
        &mut self,
        name: &'static str,
        secs: u64,
        millis: u64,
    ) -> Spanned<Duration> {
        let span = self.span;
        match self.get(name) {
            Some(n) => self.ld.duration(n, name),
            None => None,
        }
        .unwrap_or_else(|| dur(secs, millis, span))
    }

    pub(crate) fn template_map(&mut self, name: &'static str) -> Vec<(Spanned<String>, Template)> {
        match self.get(name) {
            Some(n) => self.ld.template_map(n, name),
            None => Vec::new(),
        }
    }

    /// A one-of-these-words field (`as`, `mode`, `method`, `channel`).
    pub(crate) fn choice<T: Copy>(
        &mut self,
        name: &'static str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let n = self.get(name)?;
        self.ld.choice(n, name, options)
    }

    /// A list of one-of-these-words (`channels: [sms, email]`), each at most
    /// once; `None` when absent (or unusable: reported).
    pub(crate) fn choice_list<T: Copy + PartialEq>(
        &mut self,
        name: &'static str,
        options: &[(&str, T)],
    ) -> Option<Spanned<Vec<T>>> {
        let n = self.get(name)?;
        let Val::Seq(items) = &n.val else {
            self.ferr(
                n.span,
                format!("`{name}` must be a list, got {}", n.shown()),
            );
            return None;
        };
        if items.is_empty() {
            self.ferr(n.span, format!("`{name}` must name at least one"));
            return None;
        }
        let mut out = Vec::new();
        for item in items {
            let v = self.ld.choice(item, name, options)?;
            if out.contains(&v) {
                self.ferr(
                    item.span,
                    format!("`{name}`: {} is listed twice", item.shown()),
                );
                return None;
            }
            out.push(v);
        }
        Some(Spanned::new(out, n.span))
    }

    pub(crate) fn barge_in(&mut self, name: &'static str, default: BargeIn) -> BargeIn {
        match self.get(name) {
            Some(n) => self.ld.barge_in(n, default),
            None => default,
        }
    }

    /// `into:`, defaulting to the step id; `prefix`: the step writes under
    /// `into.` (webhook) rather than into the variable itself. Writes to
    /// engine-owned names are refused here.
    pub(crate) fn into(&mut self, prefix: bool) -> Spanned<String> {
        let given = match self.get("into") {
            Some(n) => self.ld.string(n, "into"),
            None => None,
        };
        match given {
            Some(s) if is_var_name(&s.value) => {
                if let Some(msg) = into_refusal(&s, true, prefix) {
                    self.ferr(s.span, msg);
                }
                s
            }
            Some(s) => {
                self.ferr(
                    s.span,
                    format!("`into`: `{}` is not a variable name; use letters, digits, `_` and dots (e.g. entered_number)", s.value),
                );
                s
            }
            None => {
                // The step id is the default target whatever it looks like:
                // `caller-lookup` would write under `caller*` at run time.
                let s = Spanned::new(self.sid.clone(), self.span);
                if let Some(msg) = into_refusal(&s, false, prefix) {
                    self.ferr(s.span, msg);
                }
                s
            }
        }
    }

    /// Input fields shared by collect_digits, verify_code and verify_totp:
    /// prompts, min, max, terminator, first_digit_timeout,
    /// inter_digit_timeout, tries, no_input_prompts, invalid_prompts, barge_in.
    pub(crate) fn digit_input(&mut self, default_len: Option<u32>) -> DigitInput {
        let (dmin, dmax) = default_len.map_or((1, 20), |n| (n, n));
        let prompts = self.prompts("prompts");
        let min = self.uint("min").map_or(dmin, |s| s.value);
        let max = self.uint("max").map_or(dmax, |s| s.value);
        let terminator = self.get("terminator").and_then(|n| {
            let t = n.scalar_text().unwrap_or_default();
            let mut chars = t.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
                _ => {
                    self.ferr(
                        n.span,
                        format!(
                            "`terminator` must be one key: a digit, * or # (quote it: \"#\"), got {}",
                            n.shown()
                        ),
                    );
                    None
                }
            }
        });
        DigitInput {
            prompts,
            min,
            max,
            terminator,
            first_digit_timeout: self.duration_or("first_digit_timeout", 5, 0),
            inter_digit_timeout: self.duration_or("inter_digit_timeout", 3, 0),
            tries: self.uint_or("tries", 3),
            no_input_prompts: self.prompts("no_input_prompts"),
            invalid_prompts: self.prompts("invalid_prompts"),
            barge_in: self.boolean("barge_in").unwrap_or(true),
        }
    }

    /// no_input_timeout (5s), end_of_speech_timeout (800ms), max_duration.
    pub(crate) fn speech_timers(&mut self, max_secs: u64) -> SpeechTimers {
        SpeechTimers {
            no_input_timeout: self.duration_or("no_input_timeout", 5, 0),
            end_of_speech_timeout: self.duration_or("end_of_speech_timeout", 0, 800),
            max_duration: self.duration_or("max_duration", max_secs, 0),
        }
    }

    /// After the build: unknown and repeated fields of a mapping body.
    fn finish(self) {
        if !self.fields_kind || self.recording || !matches!(self.body.val, Val::Map(_)) {
            return;
        }
        let allowed = Self::record(self.kind, self.build);
        let what = self.what.clone();
        // Reports exactly what `Loader::fields` reports for these fields.
        let _ = self.ld.fields(self.body, &what, &allowed);
    }
}

// ---------------------------------------------------------------------------
// Flow building
// ---------------------------------------------------------------------------

fn yaml_error_message(e: &serde_saphyr::Error) -> String {
    // Display carries a "line X column Y:" prefix and a source snippet; keep
    // only the message, as our Diagnostic prints the position itself.
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    let msg = match first.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(i) if rest[..i].contains("column") => &rest[i + 2..],
            _ => first,
        },
        None => first,
    };
    format!("YAML syntax error: {msg}")
}

/// Load one flow from text. `path` is used for messages and the default name.
/// Any diagnostic means the flow must not be served.
pub fn load_flow_str(path: &Path, text: &str) -> Result<Flow, Vec<Diagnostic>> {
    strict(path, load_flow_recovering(path, text))
}

/// Load one flow file. An unreadable file is a diagnostic at 1:1.
pub fn load_flow(path: &Path) -> Result<Flow, Vec<Diagnostic>> {
    strict(path, load_file_recovering(path))
}

fn strict(path: &Path, l: Loaded) -> Result<Flow, Vec<Diagnostic>> {
    match l.flow {
        Some(f) if l.diags.is_empty() => Ok(f),
        _ if l.diags.is_empty() => Err(vec![Diagnostic::new(
            path,
            Span { line: 1, col: 1 },
            "flow could not be loaded",
        )]),
        _ => Err(l.diags),
    }
}

/// Load as much of a flow as possible: every load problem is reported and the
/// bad field falls back to its default (or the step to a placeholder), so the
/// semantic checks can still run. The flow is `None` only when the text is
/// not YAML or not a mapping. For `voxgate validate`; never serve the result
/// when there is any diagnostic.
pub fn load_flow_lenient(path: &Path, text: &str) -> (Option<Flow>, Vec<Diagnostic>) {
    let l = load_flow_recovering(path, text);
    (l.flow, l.diags)
}

/// [`load_flow_lenient`] from a file, with what was guessed.
pub fn load_file_recovering(path: &Path) -> Loaded {
    match crate::config::textfile::read_capped(path, crate::config::textfile::MAX_FLOW_BYTES) {
        Ok(text) => load_flow_recovering(path, &text),
        Err(e) => Loaded {
            flow: None,
            diags: vec![Diagnostic::new(
                path,
                Span { line: 1, col: 1 },
                format!("cannot read flow file: {e}"),
            )],
            recovery: Recovery::default(),
        },
    }
}

/// [`load_flow_lenient`], with what was guessed (see [`Recovery`]).
pub fn load_flow_recovering(path: &Path, text: &str) -> Loaded {
    let mut ctx = Loader {
        path,
        diags: Vec::new(),
        scope: String::new(),
        rec: Recovery::default(),
    };
    let mut opts = serde_saphyr::Options::default();
    opts.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    opts.strict_booleans = true;
    opts.leading_zero_numbers_as_strings = true;
    let root: Node = match serde_saphyr::from_str_with_options::<Option<Node>>(text, opts) {
        Ok(Some(n)) => n,
        Ok(None) => {
            ctx.err(
                Span { line: 1, col: 1 },
                "the file is empty; a flow needs at least `steps:`",
            );
            return ctx.finish(None);
        }
        Err(e) => {
            let span = e
                .location()
                .map(to_span)
                .unwrap_or(Span { line: 1, col: 1 });
            ctx.err(span, yaml_error_message(&e));
            return ctx.finish(None);
        }
    };
    let flow = build_flow(&mut ctx, &root);
    ctx.finish(flow)
}

impl Loader<'_> {
    fn finish(mut self, flow: Option<Flow>) -> Loaded {
        diag::sort(&mut self.diags);
        Loaded {
            flow,
            diags: self.diags,
            recovery: self.rec,
        }
    }
}

/// Whether a file name is a flow (`*.yaml`/`*.yml`, but not a `*.test.yaml` test).
pub fn is_flow_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with(".test.yaml")
        && !name.ends_with(".test.yml")
}

/// The flow files of a directory (not recursive), in file-name order.
fn flow_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            Diagnostic::new(
                dir,
                Span { line: 1, col: 1 },
                format!("cannot read flow directory: {e}"),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_flow_file(p))
        .collect();
    paths.sort();
    Ok(paths)
}

/// A flow named like one loaded before it: the diagnostic to report.
fn duplicate_name(f: &Flow, earlier: &[&Flow]) -> Option<Diagnostic> {
    let other = earlier.iter().find(|o| o.name == f.name)?;
    Some(Diagnostic::new(
        &f.path,
        Span { line: 1, col: 1 },
        format!(
            "flow name `{}` is also used by {}; flow names must be unique",
            f.name,
            other.path.display()
        ),
    ))
}

/// Load every flow in a directory (not recursive), in file-name order.
/// Two files declaring the same flow name are reported too.
pub fn load_dir(dir: &Path) -> (Vec<Flow>, Vec<Diagnostic>) {
    let mut flows: Vec<Flow> = Vec::new();
    let mut diags = Vec::new();
    let paths = match flow_files(dir) {
        Ok(p) => p,
        Err(d) => return (flows, vec![d]),
    };
    for p in paths {
        match load_flow(&p) {
            Ok(f) => {
                if let Some(d) = duplicate_name(&f, &flows.iter().collect::<Vec<_>>()) {
                    diags.push(d);
                    continue;
                }
                flows.push(f);
            }
            Err(mut d) => diags.append(&mut d),
        }
    }
    (flows, diags)
}

/// [`load_dir`], leniently: every flow file with what could be loaded of it.
/// Flows that failed to load still take part in the flow-name check; a
/// duplicate name is added to that flow's diagnostics.
pub fn load_dir_recovering(dir: &Path) -> Result<Vec<Loaded>, Diagnostic> {
    let mut out: Vec<Loaded> = Vec::new();
    for p in flow_files(dir)? {
        let mut l = load_file_recovering(&p);
        if let Some(f) = &l.flow {
            let earlier: Vec<&Flow> = out.iter().filter_map(|o| o.flow.as_ref()).collect();
            if let Some(d) = duplicate_name(f, &earlier) {
                l.diags.push(d);
                diag::sort(&mut l.diags);
            }
        }
        out.push(l);
    }
    Ok(out)
}

fn build_flow(ctx: &mut Loader, root: &Node) -> Option<Flow> {
    let top = ctx.fields(root, "the flow file", FLOW_FIELDS)?;
    let default_name = ctx
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("flow")
        .to_string();
    let name = top
        .get("flow")
        .and_then(|n| ctx.string(n, "flow"))
        .map_or(default_name, |s| s.value);
    let description = top
        .get("description")
        .and_then(|n| ctx.string(n, "description"))
        .map(|s| s.value);
    let max_duration = top
        .get("max_duration")
        .and_then(|n| ctx.duration(n, "max_duration"))
        .map(|d| d.value);
    if top
        .get("vars")
        .is_some_and(|n| !matches!(n.val, Val::Map(_) | Val::Null))
    {
        ctx.rec.vars_unknown = true;
    }
    let vars = top
        .get("vars")
        .map(|n| ctx.template_map(n, "vars"))
        .unwrap_or_default();
    check_writable_names(ctx, "`vars`", &vars);
    let vars: BTreeMap<String, Template> = vars.into_iter().map(|(k, v)| (k.value, v)).collect();

    let mut steps: Vec<Step> = Vec::new();
    let mut seen_ids: Vec<(String, u32)> = Vec::new();
    match top.get("steps") {
        None => ctx.err(root.span, "the flow has no `steps:`; add a mapping of step ids to steps"),
        Some(n) => match &n.val {
            Val::Map(entries) if !entries.is_empty() => {
                for (k, v) in entries {
                    let Some(id) = k.scalar_text() else {
                        ctx.err(k.span, format!("a step id must be a plain name, got {}", k.shown()));
                        ctx.rec.reach_unknown = true;
                        continue;
                    };
                    if let Some((_, line)) = seen_ids.iter().find(|(s, _)| *s == id) {
                        ctx.err(k.span, format!("duplicate step id `{id}` (first defined on line {line}); step ids must be unique"));
                        // Its targets still count as ways the flow goes.
                        for t in raw_targets(v) {
                            ctx.rec.hidden_edges.push((id.clone(), t));
                        }
                        continue;
                    }
                    seen_ids.push((id.clone(), k.span.line));
                    steps.push(build_step(ctx, Spanned::new(id, k.span), v));
                }
            }
            Val::Map(_) | Val::Null => ctx.err(n.span, "`steps` is empty; a flow needs at least one step"),
            _ => ctx.err(
                n.span,
                format!("`steps` must be a mapping of step id → step (e.g. `greet: {{ play: [welcome], next: menu }}`), got {}", n.shown()),
            ),
        },
    }

    let first = || {
        steps.first().map_or_else(
            || Spanned::new(String::new(), root.span),
            |f| Spanned::new(f.id.value.clone(), f.id.span),
        )
    };
    let start = match top.get("start") {
        Some(n) => ctx.string(n, "start").unwrap_or_else(|| {
            ctx.rec.reach_unknown = true;
            first()
        }),
        None => first(),
    };
    Some(Flow {
        name,
        path: ctx.path.to_path_buf(),
        description,
        start,
        vars,
        max_duration,
        steps,
    })
}

/// Step ids a raw step mapping names (`next`, `goto`, `on`, branch cases),
/// for steps that could not be built.
fn raw_targets(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    let Val::Map(entries) = &node.val else {
        return out;
    };
    for (k, v) in entries {
        let key = k.scalar_text().unwrap_or_default();
        out.extend(key_targets(&key, v));
    }
    out
}

/// Step ids named by one key of a raw step mapping.
fn key_targets(key: &str, v: &Node) -> Vec<String> {
    let mut out = Vec::new();
    {
        match key {
            "next" | "goto" => out.extend(v.scalar_text()),
            "on" => {
                if let Val::Map(m) = &v.val {
                    out.extend(m.iter().filter_map(|(_, t)| t.scalar_text()));
                }
            }
            "branch" => {
                if let Val::Seq(items) = &v.val {
                    for item in items {
                        if let Val::Map(m) = &item.val {
                            out.extend(
                                m.iter()
                                    .filter(|(k, _)| {
                                        matches!(k.scalar_text().as_deref(), Some("goto" | "else"))
                                    })
                                    .filter_map(|(_, t)| t.scalar_text()),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Variables a step of `kind` (possibly misspelt) might set, for a placeholder.
fn note_maybe_set(ctx: &mut Loader, sid: &str, kind: &str, body: &Node) {
    let all_kinds = kind_list();
    let guess = if all_kinds.contains(&kind) {
        Some(kind)
    } else {
        nearest(kind, all_kinds.iter().copied())
    };
    let into = match &body.val {
        Val::Map(m) => m
            .iter()
            .find(|(k, _)| k.scalar_text().as_deref() == Some("into"))
            .and_then(|(_, v)| v.scalar_text()),
        _ => None,
    }
    .unwrap_or_else(|| sid.to_string());
    let keys: Vec<String> = match &body.val {
        Val::Map(m) => m.iter().filter_map(|(k, _)| k.scalar_text()).collect(),
        _ => Vec::new(),
    };
    let rec = &mut ctx.rec;
    let writes = match guess.and_then(unit) {
        Some(u) => (u.guess_writes)(&into, &keys),
        // Not even a likely kind: its keys, its `into` and anything under it.
        None => {
            let mut w: Vec<Written> = keys.into_iter().map(Written::Exact).collect();
            w.push(Written::Exact(into.clone()));
            w.push(Written::Prefix(format!("{into}.")));
            w
        }
    };
    for w in writes {
        match w {
            Written::Exact(n) => {
                rec.maybe_set.insert(n);
            }
            Written::Prefix(p) => {
                rec.maybe_prefixes.insert(p);
            }
        }
    }
}

/// A step whose kind could not be built: its id and exits, nothing else.
fn placeholder(
    ctx: &mut Loader,
    id: Spanned<StepId>,
    exits: BTreeMap<Exit, Spanned<StepId>>,
) -> Step {
    ctx.rec.placeholders.insert(id.value.clone());
    Step {
        span: id.span,
        id,
        kind: StepKind::Goto,
        exits,
    }
}

fn build_step(ctx: &mut Loader, id: Spanned<StepId>, node: &Node) -> Step {
    let entries = match &node.val {
        Val::Map(m) => m,
        _ => {
            ctx.err(
                id.span,
                format!(
                    "step `{}` must be a mapping with one step kind ({}) and `next`/`on`, got {}",
                    id.value,
                    kind_names(),
                    node.shown()
                ),
            );
            ctx.rec.opaque.insert(id.value.clone());
            return placeholder(ctx, id, BTreeMap::new());
        }
    };
    let sid = id.value.clone();
    let mut kinds: Vec<(&str, &Node, Span)> = Vec::new();
    let mut next: Option<&Node> = None;
    let mut on: Option<&Node> = None;
    let mut unknown: Vec<(String, Span, &Node)> = Vec::new();
    let mut seen: Vec<(String, u32)> = Vec::new();
    for (k, v) in entries {
        let Some(key) = k.scalar_text() else {
            ctx.err(
                k.span,
                format!(
                    "step `{sid}`: a key must be a plain name, got {}",
                    k.shown()
                ),
            );
            continue;
        };
        if let Some((_, line)) = seen.iter().find(|(s, _)| *s == key) {
            ctx.err(
                k.span,
                format!("step `{sid}`: `{key}` is given twice (first on line {line})"),
            );
            for t in key_targets(&key, v) {
                ctx.rec.hidden_edges.push((sid.clone(), t));
            }
            continue;
        }
        seen.push((key.clone(), k.span.line));
        match key.as_str() {
            "next" => next = Some(v),
            "on" => on = Some(v),
            "description" => {
                ctx.string(v, "description");
            }
            _ => match unit(&key) {
                Some(u) => kinds.push((u.name, v, k.span)),
                None => unknown.push((key, k.span, v)),
            },
        }
    }

    let all_kinds = kind_list();
    for (key, span, value) in &unknown {
        if kinds.is_empty() {
            ctx.err(
                *span,
                format!(
                    "step `{sid}`: unknown step kind `{key}`{}; expected one of {}",
                    did_you_mean(key, &all_kinds),
                    kind_names()
                ),
            );
        } else {
            let kind = kinds[0].0;
            let fields = unit(kind).map(|u| u.fields()).unwrap_or_default();
            let hint = if fields.contains(&key.as_str()) {
                format!("; `{key}` belongs inside `{kind}:` — indent it under the kind")
            } else {
                did_you_mean(key, STEP_COMMON_FIELDS)
            };
            ctx.err(
                *span,
                format!(
                    "step `{sid}` ({kind}): unknown key `{key}`{hint}; a step has one kind key plus next, on, description"
                ),
            );
            // A misspelt `next:`/`on:` still shows where the step goes.
            if let Some(meant) = nearest(key, ["next", "on"]) {
                let targets = key_targets(meant, value);
                if targets.is_empty() {
                    ctx.rec.opaque.insert(sid.clone());
                }
                for t in targets {
                    ctx.rec.hidden_edges.push((sid.clone(), t));
                }
            }
        }
    }
    // The one kind of this step, when there is exactly one.
    let mut the_kind: Option<(&str, &Node, Span)> = None;
    if kinds.len() > 1 {
        let names: Vec<String> = kinds.iter().map(|k| format!("`{}`", k.0)).collect();
        ctx.err(
            kinds[1].2,
            format!(
                "step `{sid}` has {} step kinds ({}); a step does exactly one thing — split it into separate steps",
                kinds.len(),
                names.join(", ")
            ),
        );
        for &(k, body, _) in &kinds {
            note_maybe_set(ctx, &sid, k, body);
        }
    } else if let Some(&k) = kinds.first() {
        the_kind = Some(k);
    } else if unknown.is_empty() {
        ctx.err(
            id.span,
            format!("step `{sid}` has no step kind; add one of {}", kind_names()),
        );
    } else {
        for (k, _, body) in &unknown {
            note_maybe_set(ctx, &sid, k, body);
        }
    }
    let kind_name = the_kind.map_or("", |k| k.0);

    let kind = the_kind.and_then(|(kind_name, body, kind_span)| {
        let k = build_kind(ctx, &sid, kind_name, body, kind_span);
        if k.is_none() {
            note_maybe_set(ctx, &sid, kind_name, body);
        }
        k
    });

    let mut exits: BTreeMap<Exit, Spanned<StepId>> = BTreeMap::new();
    let next_in_body = the_kind
        .and_then(|k| unit(k.0))
        .is_some_and(|u| u.next_in_body);
    if let Some((_, body, _)) = the_kind.filter(|_| next_in_body) {
        match body.scalar_text().filter(|t| !t.is_empty()) {
            Some(t) => {
                exits.insert(Exit::Next, Spanned::new(t, body.span));
            }
            None => {
                ctx.rec.opaque.insert(sid.clone());
            }
        }
    }
    // Which exits may be given; `None` when the kind is unknown (any may be).
    let allowed: Option<&[Exit]> = match (&kind, the_kind) {
        (Some(k), _) => Some(unit_of(k).exits),
        (None, Some((name, _, _))) => unit(name).map(|u| u.exits),
        (None, None) => None,
    };
    let has = || match allowed {
        Some([]) => "it has: none (it ends the call or picks its own target)".to_string(),
        Some(a) => format!(
            "it has: {}",
            a.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
        ),
        None => format!("exits are {}", Exit::ALL.map(Exit::as_str).join(", ")),
    };
    let kind_label = if kind_name.is_empty() {
        String::new()
    } else {
        format!(" ({kind_name})")
    };
    let mut add_exit = |ctx: &mut Loader, exit: Exit, key_span: Span, target: &Node| {
        if allowed.is_some_and(|a| !a.contains(&exit)) {
            ctx.err(
                key_span,
                format!(
                    "step `{sid}`{kind_label} has no exit `{}`; {}",
                    exit.as_str(),
                    has()
                ),
            );
            match target.scalar_text() {
                Some(t) => ctx.rec.hidden_edges.push((sid.clone(), t)),
                None => {
                    ctx.rec.opaque.insert(sid.clone());
                }
            }
            return;
        }
        let Some(t) = target.scalar_text().filter(|t| !t.is_empty()) else {
            ctx.err(
                target.span,
                format!(
                    "step `{sid}`: exit `{}` must name a step id, got {}",
                    exit.as_str(),
                    target.shown()
                ),
            );
            ctx.rec.opaque.insert(sid.clone());
            return;
        };
        if exits.contains_key(&exit) {
            ctx.err(
                key_span,
                format!("step `{sid}`: exit `{}` is given twice", exit.as_str()),
            );
            ctx.rec.hidden_edges.push((sid.clone(), t));
            return;
        }
        exits.insert(exit, Spanned::new(t, target.span));
    };
    if let Some(n) = next {
        if next_in_body {
            ctx.err(
                n.span,
                format!("step `{sid}` ({kind_name}): `{kind_name}:` already names the next step; remove `next:`"),
            );
            if let Some(t) = n.scalar_text() {
                ctx.rec.hidden_edges.push((sid.clone(), t));
            }
        } else {
            // Point at the `next` key: the value position is the target.
            add_exit(ctx, Exit::Next, n.span, n);
        }
    }
    if let Some(n) = on {
        match &n.val {
            Val::Map(m) => {
                let all_exits = Exit::ALL.map(Exit::as_str);
                for (k, v) in m {
                    let name = k.scalar_text().unwrap_or_default();
                    match Exit::parse(&name) {
                        Some(Exit::Next) => {
                            ctx.err(
                                k.span,
                                format!(
                                    "step `{sid}`: write `next:` beside the kind, not inside `on:`"
                                ),
                            );
                            ctx.rec
                                .hidden_edges
                                .extend(v.scalar_text().map(|t| (sid.clone(), t)));
                        }
                        Some(e) => add_exit(ctx, e, k.span, v),
                        None => {
                            ctx.err(
                                k.span,
                                format!(
                                    "step `{sid}`{kind_label}: unknown exit `{name}`{}; {}",
                                    did_you_mean(&name, &all_exits),
                                    has()
                                ),
                            );
                            match v.scalar_text() {
                                Some(t) => ctx.rec.hidden_edges.push((sid.clone(), t)),
                                None => {
                                    ctx.rec.opaque.insert(sid.clone());
                                }
                            }
                        }
                    }
                }
            }
            _ => {
                ctx.err(
                    n.span,
                    format!("step `{sid}`: `on` must be a mapping of exit → step id (e.g. {{ success: next_step }}), got {}", n.shown()),
                );
                ctx.rec.opaque.insert(sid.clone());
            }
        }
    }

    match kind {
        Some(kind) => Step {
            span: id.span,
            id,
            kind,
            exits,
        },
        None => placeholder(ctx, id, exits),
    }
}

fn dur(secs: u64, millis: u64, span: Span) -> Spanned<Duration> {
    Spanned::new(
        Duration::from_secs(secs) + Duration::from_millis(millis),
        span,
    )
}

fn is_var_name(s: &str) -> bool {
    expr::template_vars(&format!("${{{s}}}")).is_ok_and(|v| v.len() == 1 && v[0] == s)
}

/// Why engine state may not be written, for the end of every refusal.
fn read_only(r: &Reserved) -> String {
    format!(
        "`{}` is set by {} and is read-only to flows (reserved: {})",
        r.pattern,
        r.owner,
        reserved_list()
    )
}

/// `set:` and `vars:` keys: a write to a name the engine owns is refused.
fn check_writable_names(ctx: &mut Loader, what: &str, names: &[(Spanned<String>, Template)]) {
    for (k, _) in names {
        if let Some(r) = reserved_owner(&k.value) {
            let msg = format!("{what}: cannot write `{}`: {}", k.value, read_only(r));
            ctx.err(k.span, msg);
        }
    }
}

/// What an input step's or a webhook's `into:` writes: the variable itself,
/// or (`prefix`) everything under `into.`; the refusal when that is engine
/// state. `given`: written as `into:` (else it is the step id).
fn into_refusal(into: &Spanned<String>, given: bool, prefix: bool) -> Option<String> {
    let written = if prefix {
        format!("{}.", into.value)
    } else {
        into.value.clone()
    };
    let r = reserved_owner(&written)?;
    let (shown, other) = if prefix {
        (
            format!("everything under `{written}`"),
            "prefix such as `crm`",
        )
    } else {
        (format!("`{written}`"), "variable name")
    };
    Some(if given {
        format!(
            "`into: {}` would write {shown}, but {}; choose another {other}",
            into.value,
            read_only(r)
        )
    } else {
        format!(
            "without `into:` this step writes {shown} (named after the step id), but {}; add `into:` with another {other}",
            read_only(r)
        )
    })
}

fn build_kind(
    ctx: &mut Loader,
    sid: &str,
    kind: &str,
    body: &Node,
    span: Span,
) -> Option<StepKind> {
    let u = unit(kind)?;
    let what = format!("step `{sid}` ({kind})");
    ctx.scope = what.clone();
    let Build::Reader(build) = u.build;
    let mut r = FieldReader {
        ld: ctx,
        body,
        sid: sid.to_string(),
        kind: u.name,
        span,
        what,
        build,
        known: Vec::new(),
        fields_kind: false,
        recording: false,
    };
    // Field-level errors are reported and their fields fall back to
    // defaults, so the validator can still check the rest of the step.
    let k = build(&mut r);
    r.finish();
    ctx.scope.clear();
    k
}

/// Render a list of diagnostics one per line, for CLIs and test failure output.
pub fn render_diagnostics(diags: &[Diagnostic]) -> String {
    let mut s = String::new();
    for d in diags {
        let _ = writeln!(s, "{d}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Flow, Vec<Diagnostic>> {
        load_flow_str(Path::new("flows/bank.yaml"), text)
    }

    fn ok(text: &str) -> Flow {
        load(text).unwrap_or_else(|d| panic!("unexpected errors:\n{}", render_diagnostics(&d)))
    }

    #[test]
    fn speech_languages_are_the_speech_steps_languages_once_each() {
        let f = ok(concat!(
            "steps:\n",
            "  a: { verify_passphrase: { language: ko }, on: { success: b, failure: b, no_input: b, max_attempts: b, error: b } }\n",
            "  b: { recognize: { language: es, into: said }, on: { success: c, no_match: c, no_input: c, error: c } }\n",
            "  c: { verify_passphrase: { language: ko }, on: { success: d, failure: d, no_input: d, max_attempts: d, error: d } }\n",
            "  d: { recognize: { into: other }, on: { success: e, no_match: e, no_input: e, error: e } }\n",
            "  e: { hangup: {} }\n",
        ));
        assert_eq!(f.speech_languages(), ["ko", "es"]);
    }

    /// All diagnostics as `line:col: message` lines.
    fn errs(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(d) => d
                .iter()
                .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
                .collect(),
        }
    }

    fn has(errors: &[String], needle: &str) {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "no error contains {needle:?}; got:\n{}",
            errors.join("\n")
        );
    }

    const FULL: &str = r##"
flow: bank
description: Bank authentication line
start: greet
max_duration: 10m
vars: { brand: "Example Bank", zero: 0123 }
steps:
  greet:
    play: [welcome]
    next: intro
  intro:
    description: the menu
    play: { prompts: [welcome, menu], barge_in: { digits: true, speech: false } }
    next: lookup
  lookup:
    lookup_caller: {}
    on: { found: passphrase, not_found: ask_number, error: agent }
  ask_number:
    collect_digits:
      prompts: [enter_phone]
      min: 10
      max: 11
      terminator: "#"
      first_digit_timeout: 5s
      inter_digit_timeout: 3
      tries: 3
      no_input_prompts: [no_input]
      invalid_prompts: [invalid_entry]
      pattern: "^[0-9]{10,11}$"
      into: entered_number
      secret: false
      barge_in: true
    on: { success: readback, no_input: agent, no_match: agent, max_attempts: agent, error: agent }
  readback:
    say: { value: "${entered_number}", as: last_digits, count: 4, before: [number_ends_in], after: [] }
    next: speak
  speak:
    recognize: { prompts: [say_account], phrases: ["checking", "savings"], digits_only: false, language: en, no_input_timeout: 5s, end_of_speech_timeout: 800ms, max_duration: 15s, min_confidence: 0.5, tries: 2, no_input_prompts: [a], no_match_prompts: [b], barge_in: {digits: true, speech: true}, into: choice }
    on: { success: passphrase, no_input: agent, no_match: agent, max_attempts: agent, error: agent }
  passphrase:
    verify_passphrase: { prompts: [say_passphrase], tries: 2, no_input_timeout: 5s, end_of_speech_timeout: 800ms, incomplete_timeout: 1500ms, max_duration: 10s, no_input_prompts: [x], retry_prompts: [y] }
    on: { success: send, failure: agent, no_input: agent, max_attempts: agent, error: agent }
  send:
    send_code: { channel: sms, to: "${account.phone}", length: 6, ttl: 60s, max_attempts: 3, resend_cooldown: 30s }
    on: { success: code, rate_limited: agent, error: agent }
  code:
    verify_code: { prompts: [enter_code], terminator: "#", tries: 3 }
    on: { success: totp, failure: agent, expired: send, no_input: agent, max_attempts: agent, error: agent }
  totp:
    verify_totp: { prompts: [enter_totp], window: 1 }
    on: { success: crm, failure: agent, no_input: agent, max_attempts: agent, error: agent }
  agent:
    transfer: { target: "sip:agents@127.0.0.1:5080", mode: refer, timeout: 30s, headers: { X-Auth-Result: "${auth.result}", X-Account: "${account.id}" } }
    on: { success: bye, failure: bye, error: bye }
  crm:
    webhook: { url: "http://127.0.0.1:8080/crm?n=${caller}", method: post, timeout: 3s, headers: { X-Key: abc }, body: { caller: "${caller}" }, into: crm }
    on: { success: mark, failure: mark, timeout: mark, error: mark }
  mark:
    set: { result: passed, tries_left: "2", n: 5 }
    next: route
  route:
    branch:
      - if: 'account.status == "locked" && caller_trust != "high"'
        goto: bye
      - else: jump
  jump:
    goto: bye
  bye:
    hangup: {}
"##;

    #[test]
    fn full_example_loads_with_values_and_defaults() {
        let f = ok(FULL);
        assert_eq!(f.name, "bank");
        assert_eq!(f.description.as_deref(), Some("Bank authentication line"));
        assert_eq!(f.start.value, "greet");
        assert_eq!(f.start.span, Span { line: 4, col: 8 });
        assert_eq!(f.max_duration, Some(Duration::from_secs(600)));
        assert_eq!(f.vars["brand"].value, "Example Bank");
        assert_eq!(f.vars["zero"].value, "0123", "leading zeros kept");
        let ids: Vec<&str> = f.steps.iter().map(|s| s.id.value.as_str()).collect();
        assert_eq!(
            ids,
            [
                "greet",
                "intro",
                "lookup",
                "ask_number",
                "readback",
                "speak",
                "passphrase",
                "send",
                "code",
                "totp",
                "agent",
                "crm",
                "mark",
                "route",
                "jump",
                "bye"
            ]
        );
        let greet = f.step("greet").unwrap();
        assert_eq!(greet.span, Span { line: 8, col: 3 });
        assert_eq!(greet.exits[&Exit::Next].value, "intro");
        assert_eq!(greet.exits[&Exit::Next].span, Span { line: 10, col: 11 });
        let StepKind::Play(p) = &greet.kind else {
            panic!()
        };
        assert_eq!(p.prompts[0].value, "welcome");
        assert_eq!(p.prompts[0].span, Span { line: 9, col: 12 });
        assert_eq!(
            p.barge_in,
            BargeIn {
                digits: true,
                speech: false
            }
        );

        let StepKind::LookupCaller(l) = &f.step("lookup").unwrap().kind else {
            panic!()
        };
        assert_eq!(l.number.value, "${caller}");

        let StepKind::CollectDigits(c) = &f.step("ask_number").unwrap().kind else {
            panic!()
        };
        assert_eq!((c.input.min, c.input.max), (10, 11));
        assert_eq!(c.input.terminator, Some('#'));
        assert_eq!(c.input.inter_digit_timeout.value, Duration::from_secs(3));
        assert_eq!(c.pattern.as_ref().unwrap().value, "^[0-9]{10,11}$");
        assert_eq!(c.into.value, "entered_number");

        let StepKind::Say(s) = &f.step("readback").unwrap().kind else {
            panic!()
        };
        assert_eq!(s.say_as, SayAs::LastDigits(4));

        let StepKind::Recognize(r) = &f.step("speak").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            r.timers.end_of_speech_timeout.value,
            Duration::from_millis(800)
        );
        assert_eq!(r.phrases.len(), 2);
        assert_eq!(r.language.as_deref(), Some("en"));

        let StepKind::VerifyCode(v) = &f.step("code").unwrap().kind else {
            panic!()
        };
        assert_eq!((v.input.min, v.input.max), (6, 6));
        assert_eq!(f.step("code").unwrap().exits[&Exit::Expired].value, "send");

        let StepKind::Transfer(t) = &f.step("agent").unwrap().kind else {
            panic!()
        };
        assert_eq!(t.headers[0].0.value, "X-Auth-Result");
        assert_eq!(t.mode, TransferMode::Refer);

        let StepKind::Webhook(w) = &f.step("crm").unwrap().kind else {
            panic!()
        };
        assert_eq!(w.body[0].1.value, "${caller}");
        assert_eq!(w.into.value, "crm");

        let StepKind::Set(set) = &f.step("mark").unwrap().kind else {
            panic!()
        };
        assert_eq!(set.vars[2].1.value, "5");

        let route = f.step("route").unwrap();
        let StepKind::Branch(b) = &route.kind else {
            panic!()
        };
        assert_eq!(b.cases[0].1.value, "bye");
        assert_eq!(b.otherwise.value, "jump");
        assert!(route.exits.is_empty());
        assert_eq!(route.targets().len(), 2);

        let jump = f.step("jump").unwrap();
        assert_eq!(jump.kind, StepKind::Goto);
        assert_eq!(jump.exits[&Exit::Next].value, "bye");
        assert_eq!(
            f.step("bye").unwrap().kind,
            StepKind::Hangup(Hangup { reason: None })
        );
    }

    #[test]
    fn defaults() {
        let f = ok(r#"
steps:
  a: { collect_digits: {}, on: { success: z } }
  b: { recognize: {}, on: { success: z } }
  c: { send_code: {}, on: { success: z } }
  d: { verify_totp: {}, on: { success: z } }
  e: { transfer: { target: "sip:x@y" }, on: { success: z } }
  f: { webhook: { url: "http://h/" }, on: { success: z } }
  g: { verify_passphrase: {}, on: { success: z } }
  h: { say: { value: "1" }, next: z }
  z: { hangup: { reason: done } }
"#);
        assert_eq!(f.name, "bank", "defaults to file stem");
        assert_eq!(f.start.value, "a", "defaults to first step");
        let StepKind::CollectDigits(c) = &f.step("a").unwrap().kind else {
            panic!()
        };
        assert_eq!((c.input.min, c.input.max, c.input.tries.value), (1, 20, 3));
        assert_eq!(c.input.first_digit_timeout.value, Duration::from_secs(5));
        assert_eq!(c.input.inter_digit_timeout.value, Duration::from_secs(3));
        assert!(c.input.barge_in);
        assert!(!c.secret);
        assert_eq!(c.into.value, "a");
        let StepKind::Recognize(r) = &f.step("b").unwrap().kind else {
            panic!()
        };
        assert_eq!(r.timers.no_input_timeout.value, Duration::from_secs(5));
        assert_eq!(
            r.timers.end_of_speech_timeout.value,
            Duration::from_millis(800)
        );
        assert_eq!(r.timers.max_duration.value, Duration::from_secs(15));
        assert_eq!(r.min_confidence.value, 0.5);
        assert_eq!(r.tries.value, 2);
        let StepKind::SendCode(s) = &f.step("c").unwrap().kind else {
            panic!()
        };
        assert_eq!(s.channels.value, vec![CodeChannel::Sms]);
        assert_eq!(s.to.value, "${account.phone}");
        assert_eq!(s.length.value, 6);
        assert_eq!(s.ttl.value, Duration::from_secs(60));
        assert_eq!(s.max_attempts.value, 3);
        assert_eq!(s.resend_cooldown.value, Duration::from_secs(30));
        let StepKind::VerifyTotp(t) = &f.step("d").unwrap().kind else {
            panic!()
        };
        assert_eq!((t.input.min, t.input.max, t.window.value), (6, 6, 1));
        let StepKind::Transfer(t) = &f.step("e").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            (t.mode, t.timeout.value),
            (TransferMode::ReferThenBridge, Duration::from_secs(30))
        );
        let StepKind::Webhook(w) = &f.step("f").unwrap().kind else {
            panic!()
        };
        assert_eq!(w.method, HttpMethod::Post);
        assert_eq!(w.timeout.value, Duration::from_secs(3));
        assert_eq!(w.into.value, "f", "webhook into defaults to step id");
        let StepKind::VerifyPassphrase(p) = &f.step("g").unwrap().kind else {
            panic!()
        };
        assert_eq!(p.timers.max_duration.value, Duration::from_secs(10));
        assert_eq!(p.tries.value, 2);
        let StepKind::Say(s) = &f.step("h").unwrap().kind else {
            panic!()
        };
        assert_eq!(s.say_as, SayAs::Digits);
        assert_eq!(
            f.step("z").unwrap().kind,
            StepKind::Hangup(Hangup {
                reason: Some("done".into())
            })
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        for bad in ["5 sec", "", "s", "5x", "-1s", "1e99s", "..s", "5S"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_step_kind_suggests_nearest() {
        let e = errs("steps:\n  greet:\n    plya: [welcome]\n    next: x\n");
        assert_eq!(
            e,
            ["3:5: step `greet`: unknown step kind `plya` (did you mean `play`?); expected one of play, say, collect_digits, recognize, lookup_caller, verify_passphrase, send_code, verify_code, verify_totp, transfer, webhook, set, branch, goto, hangup"]
        );
    }

    #[test]
    fn unknown_field_lists_allowed() {
        let e = errs("steps:\n  a:\n    play: { prompts: [x], bargein: true }\n    next: a\n");
        assert_eq!(
            e,
            ["3:27: step `a` (play): unknown field `bargein` (did you mean `barge_in`?); allowed fields: prompts, barge_in"]
        );
        let e = errs("steps:\n  a:\n    play: [x]\n    tries: 3\n    next: a\n");
        has(&e, "4:5: step `a` (play): unknown key `tries`; a step has one kind key plus next, on, description");
        let e =
            errs("steps:\n  a:\n    collect_digits: {}\n    tries: 3\n    on: { success: a }\n");
        has(&e, "unknown key `tries`; `tries` belongs inside `collect_digits:` — indent it under the kind");
        let e = errs("flw: x\nsteps: { a: { hangup: {} } }\n");
        has(&e, "1:1: the flow file: unknown field `flw` (did you mean `flow`?); allowed fields: flow, description, start, max_duration, vars, steps");
    }

    #[test]
    fn wrong_types() {
        let e = errs("steps:\n  a:\n    collect_digits: { tries: three, secret: yes, min: -1, barge_in: 1 }\n    on: { success: a }\n");
        has(
            &e,
            "step `a` (collect_digits): `tries` must be a whole number, got \"three\"",
        );
        has(&e, "`secret` must be true or false, got \"yes\"");
        has(&e, "`min` must be a whole number, got -1");
        has(&e, "`barge_in` must be true or false, got 1");
        let e = errs("steps:\n  a:\n    recognize: { min_confidence: high, phrases: x, barge_in: maybe }\n    on: { success: a }\n");
        has(
            &e,
            "`min_confidence` must be a number such as 0.5, got \"high\"",
        );
        has(
            &e,
            "`phrases` must be a list like [\"checking\", \"savings\"], got \"x\"",
        );
        has(
            &e,
            "`barge_in` must be true, false or { digits: true, speech: false }, got \"maybe\"",
        );
        let e = errs("steps:\n  a:\n    play: { prompts: { a: b } }\n    next: a\n");
        has(
            &e,
            "`prompts` must be a list of prompt names like [welcome, menu], got a mapping",
        );
        let e = errs("steps:\n  a:\n    transfer: { target: x, mode: blind, headers: [a] }\n    on: { success: a }\n");
        has(
            &e,
            "`mode` must be one of refer, bridge, refer_then_bridge, got \"blind\"",
        );
        has(&e, "`headers` must be a mapping of name: value, got a list");
        let e = errs("steps:\n  a:\n    say: { value: x, as: words }\n    next: a\n");
        has(
            &e,
            "`as` must be one of digits, number, last_digits, got \"words\"",
        );
        let e = errs("steps:\n  a:\n    say: { value: x, as: digits, count: 3 }\n    next: a\n");
        has(&e, "`count` only applies to `as: last_digits`");
        let e = errs(
            "steps:\n  a:\n    collect_digits: { terminator: \"##\" }\n    on: { success: a }\n",
        );
        has(
            &e,
            "`terminator` must be one key: a digit, * or # (quote it: \"#\"), got \"##\"",
        );
        let e = errs("steps:\n  a:\n    play: 5\n    next: a\n");
        has(
            &e,
            "step `a` (play) must be a mapping of fields (prompts, barge_in), got 5",
        );
    }

    #[test]
    fn bad_durations() {
        let e = errs("steps:\n  a:\n    collect_digits: { first_digit_timeout: 5 sec, inter_digit_timeout: [1] }\n    on: { success: a }\n");
        has(&e, "3:44: step `a` (collect_digits): `first_digit_timeout`: \"5 sec\" is not a duration; write e.g. 500ms, 5s, 2m");
        has(
            &e,
            "`inter_digit_timeout`: a list is not a duration; write e.g. 500ms, 5s, 2m",
        );
        let e = errs("max_duration: forever\nsteps: { a: { hangup: {} } }\n");
        has(&e, "1:15: `max_duration`: \"forever\" is not a duration");
    }

    #[test]
    fn kind_count() {
        let e = errs("steps:\n  a:\n    play: [x]\n    say: { value: y }\n    next: b\n");
        has(&e, "4:5: step `a` has 2 step kinds (`play`, `say`); a step does exactly one thing — split it into separate steps");
        let e = errs("steps:\n  a:\n    next: b\n");
        has(&e, "2:3: step `a` has no step kind; add one of play, say,");
        let e = errs("steps:\n  a: hello\n");
        has(
            &e,
            "2:3: step `a` must be a mapping with one step kind (play, say,",
        );
    }

    #[test]
    fn exits_checked_against_kind() {
        let e = errs("steps:\n  greet:\n    play: [x]\n    on: { success: greet }\n");
        assert_eq!(
            e,
            ["4:11: step `greet` (play) has no exit `success`; it has: next"]
        );
        let e = errs("steps:\n  a:\n    collect_digits: {}\n    next: a\n");
        has(&e, "step `a` (collect_digits) has no exit `next`; it has: success, no_input, no_match, max_attempts, error");
        let e = errs("steps:\n  a:\n    collect_digits: {}\n    on: { sucess: a }\n");
        has(&e, "step `a` (collect_digits): unknown exit `sucess` (did you mean `success`?); it has: success, no_input");
        let e = errs("steps:\n  a:\n    hangup: {}\n    next: a\n");
        has(&e, "step `a` (hangup) has no exit `next`; it has: none");
        let e = errs("steps:\n  a:\n    goto: b\n    next: c\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (goto): `goto:` already names the next step; remove `next:`",
        );
        let e = errs("steps:\n  a:\n    play: [x]\n    on: { next: a }\n");
        has(&e, "write `next:` beside the kind, not inside `on:`");
        let e = errs("steps:\n  a:\n    play: [x]\n    next: [a]\n");
        has(&e, "step `a`: exit `next` must name a step id, got a list");
        let e = errs("steps:\n  a:\n    lookup_caller: {}\n    on: [found]\n");
        has(&e, "`on` must be a mapping of exit → step id");
        // Exits are checked even when the kind's own fields are wrong.
        let e = errs("steps:\n  a:\n    play: { prompts: 3 }\n    on: { success: a }\n");
        has(&e, "has no exit `success`");
    }

    #[test]
    fn no_cascades_inside_the_loader() {
        // A bad `prompts:` is not also "plays nothing"; a bad `else:` is not
        // also "no else"; both steps stay, so `b` is a real step.
        let e = errs("steps:\n  a:\n    play: { prompts: 3 }\n    next: b\n  b:\n    branch:\n      - else: [a]\n");
        assert_eq!(
            e,
            [
                "3:22: step `a` (play): `prompts` must be a list of prompt names like [welcome, menu], got 3",
                "7:15: step `b` (branch): `else` must be text, got a list",
            ]
        );
        // A bad `as:` is not also "`count` only applies to last_digits".
        let e =
            errs("steps:\n  a:\n    say: { value: x, as: last_digit, count: 4 }\n    next: a\n");
        assert_eq!(
            e,
            ["3:26: step `a` (say): `as` must be one of digits, number, last_digits, got \"last_digit\""]
        );
        let (flow, d) = load_flow_lenient(Path::new("t.yaml"), "steps:\n  a:\n    play: { prompts: 3 }\n    next: b\n  b:\n    branch:\n      - else: [a]\n");
        assert_eq!(d.len(), 2);
        let ids: Vec<String> = flow
            .unwrap()
            .steps
            .iter()
            .map(|s| s.id.value.clone())
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn yaml_syntax_error_has_position() {
        let e = errs("steps:\n  a: [1, 2\n  b: c\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("3:4: YAML syntax error: "), "{e:?}");
        assert!(
            !e[0].contains("line 3"),
            "position not repeated in text: {e:?}"
        );
        let e = errs("a: b: c\n");
        assert_eq!(
            e,
            ["1:5: YAML syntax error: mapping values are not allowed in this context"]
        );
    }

    #[test]
    fn duplicates() {
        let e = errs("steps:\n  a: { hangup: {} }\n  a: { hangup: {} }\n");
        assert_eq!(
            e,
            ["3:3: duplicate step id `a` (first defined on line 2); step ids must be unique"]
        );
        let e =
            errs("steps:\n  a:\n    collect_digits: { min: 1, min: 2 }\n    on: { success: a }\n");
        has(&e, "field `min` is given twice (first on line 3)");
        let e = errs("steps:\n  a:\n    play: [x]\n    next: a\n    next: a\n");
        has(&e, "5:5: step `a`: `next` is given twice (first on line 4)");
        let e = errs("steps:\n  a:\n    set: { x: 1, x: 2 }\n    next: a\n");
        has(&e, "`set`: `x` is given twice");
    }

    #[test]
    fn bad_regex() {
        let e = errs(
            "steps:\n  a:\n    collect_digits: { pattern: \"[0-9\" }\n    on: { success: a }\n",
        );
        has(&e, "3:32: step `a` (collect_digits): `pattern`: \"[0-9\" is not a valid regular expression: unclosed character class");
    }

    #[test]
    fn templates_and_conditions_checked() {
        let e = errs("steps:\n  a:\n    say: { value: \"${oops\" }\n    next: a\n");
        has(&e, "`value`: `${` at column 1 has no closing `}`");
        let e = errs("steps:\n  a:\n    transfer: { target: x, headers: { X-A: \"${a b}\" } }\n    on: { success: a }\n");
        has(
            &e,
            "`headers.X-A`: `a b` at column 3 is not a variable name",
        );
        let e = errs(
            "steps:\n  a:\n    branch:\n      - if: 'a = 1'\n        goto: a\n      - else: a\n",
        );
        has(&e, "4:13: step `a` (branch): condition \"a = 1\": unexpected `=` (use `==` to compare) at column 3");
        let e = errs("steps:\n  a:\n    branch:\n      - if: 'a'\n        goto: a\n");
        has(&e, "step `a` (branch) has no `- else: <step>` case");
        let e =
            errs("steps:\n  a:\n    branch:\n      - else: a\n      - if: b\n        goto: a\n");
        has(&e, "a case after `else` is never tried");
        let e = errs("steps:\n  a:\n    branch:\n      - if: b\n      - else: a\n");
        has(&e, "case has `if:` but no `goto:`");
        let e = errs("steps:\n  a:\n    branch: { if: b }\n");
        has(&e, "step `a` (branch) must be a list of cases");
        let e = errs("steps:\n  a:\n    set: { \"bad name\": 1 }\n    next: a\n");
        has(&e, "`bad name` is not a variable name");
        let e =
            errs("steps:\n  a:\n    collect_digits: { into: \"x y\" }\n    on: { success: a }\n");
        has(&e, "`into`: `x y` is not a variable name");
    }

    #[test]
    fn required_fields() {
        let e = errs("steps:\n  a:\n    transfer: {}\n    on: { success: a }\n");
        has(&e, "3:5: step `a` (transfer) needs `target:`");
        let e = errs("steps:\n  a:\n    webhook: {}\n    on: { success: a }\n");
        has(&e, "step `a` (webhook) needs `url:`");
        let e = errs("steps:\n  a:\n    say: {}\n    next: a\n");
        has(&e, "step `a` (say) needs `value:`");
        let e = errs("steps:\n  a:\n    play: {}\n    next: a\n");
        has(&e, "step `a` (play) plays nothing");
        let e = errs("steps:\n  a:\n    goto: {}\n");
        has(&e, "`goto` must name a step id, got a mapping");
    }

    #[test]
    fn file_level_errors() {
        assert_eq!(
            errs(""),
            ["1:1: the file is empty; a flow needs at least `steps:`"]
        );
        has(&errs("flow: x\n"), "the flow has no `steps:`");
        has(&errs("steps: {}\n"), "`steps` is empty");
        has(
            &errs("steps: [a, b]\n"),
            "`steps` must be a mapping of step id → step",
        );
        has(
            &errs("- a\n- b\n"),
            "the flow file must be a mapping of fields (flow, description",
        );
        has(&errs("a\n---\nb\n"), "YAML syntax error");
    }

    const RESERVED_TAIL: &str =
        "(reserved: auth.*, account.*, code.*, caller*, call.*, call_id, dialled, transfer.*, header.*)";

    /// Errors of a flow that is fine but for the lines given.
    fn errs_with(lines: &str) -> Vec<String> {
        errs(&format!("{lines}  end: {{ hangup: {{}} }}\n"))
    }

    #[test]
    fn reserved_write_by_set() {
        let e = errs_with("steps:\n  s:\n    set: { ok: x, auth.result: passed, caller_trust: high }\n    next: end\n");
        assert_eq!(
            e,
            [
                format!("3:19: step `s` (set): cannot write `auth.result`: `auth.*` is set by the verify_passphrase, verify_code and verify_totp steps and is read-only to flows {RESERVED_TAIL}"),
                format!("3:40: step `s` (set): cannot write `caller_trust`: `caller*` is set by the call (its caller ID and how far it is trusted) and is read-only to flows {RESERVED_TAIL}"),
            ]
        );
    }

    #[test]
    fn reserved_write_by_vars() {
        let e = errs_with("vars:\n  brand: x\n  account.id: none\n  code.channel: voice\n  code: '1'\nsteps:\n  s: { play: [x], next: end }\n");
        assert_eq!(
            e,
            [
                format!("3:3: `vars`: cannot write `account.id`: `account.*` is set by the lookup_caller step and is read-only to flows {RESERVED_TAIL}"),
                format!("4:3: `vars`: cannot write `code.channel`: `code.*` is set by the send_code step and is read-only to flows {RESERVED_TAIL}"),
            ]
        );
    }

    #[test]
    fn reserved_write_by_webhook_into() {
        for (into, under, who) in [
            (
                "auth",
                "auth.",
                "`auth.*` is set by the verify_passphrase, verify_code and verify_totp steps",
            ),
            (
                "account",
                "account.",
                "`account.*` is set by the lookup_caller step",
            ),
            ("code", "code.", "`code.*` is set by the send_code step"),
            (
                "caller",
                "caller.",
                "`caller*` is set by the call (its caller ID and how far it is trusted)",
            ),
            ("call", "call.", "`call.*` is set by the call"),
            (
                "header",
                "header.",
                "`header.*` is set by the call's SIP headers",
            ),
        ] {
            let e = errs_with(&format!("steps:\n  w:\n    webhook: {{ url: 'http://127.0.0.1/x', into: {into} }}\n    on: {{ success: end, failure: end, error: end }}\n"));
            assert_eq!(
                e,
                [format!("3:49: step `w` (webhook): `into: {into}` would write everything under `{under}`, but {who} and is read-only to flows {RESERVED_TAIL}; choose another prefix such as `crm`")],
            );
        }
        // Without `into:` the step id is the prefix.
        let e = errs_with("steps:\n  auth:\n    webhook: { url: 'http://127.0.0.1/x' }\n    on: { success: end, failure: end, error: end }\n");
        assert_eq!(
            e,
            [format!("3:5: step `auth` (webhook): without `into:` this step writes everything under `auth.` (named after the step id), but `auth.*` is set by the verify_passphrase, verify_code and verify_totp steps and is read-only to flows {RESERVED_TAIL}; add `into:` with another prefix such as `crm`")]
        );
        // A prefix that merely starts like a reserved one is fine.
        ok("steps:\n  w:\n    webhook: { url: 'http://127.0.0.1/x', into: authority }\n    on: { success: end, failure: end, error: end }\n  end: { hangup: {} }\n");
    }

    #[test]
    fn reserved_write_by_collect_digits_into() {
        let e = errs_with("steps:\n  c:\n    collect_digits: { prompts: [x], into: dialled }\n    on: { success: end, no_input: end, no_match: end }\n  caller_number:\n    collect_digits: { prompts: [x] }\n    on: { success: end, no_input: end, no_match: end }\n");
        assert_eq!(
            e,
            [
                format!("3:43: step `c` (collect_digits): `into: dialled` would write `dialled`, but `dialled` is set by the call and is read-only to flows {RESERVED_TAIL}; choose another variable name"),
                format!("6:5: step `caller_number` (collect_digits): without `into:` this step writes `caller_number` (named after the step id), but `caller*` is set by the call (its caller ID and how far it is trusted) and is read-only to flows {RESERVED_TAIL}; add `into:` with another variable name"),
            ]
        );
        // `code` is the flow's own (secret) variable; only `code.*` is the engine's.
        ok("steps:\n  code:\n    collect_digits: { prompts: [x] }\n    on: { success: end, no_input: end, no_match: end }\n  end: { hangup: {} }\n");
    }

    #[test]
    fn reserved_write_by_recognize_into() {
        let e = errs_with("steps:\n  r:\n    recognize: { prompts: [x], into: auth.method }\n    on: { success: end, no_input: end, no_match: end, error: end }\n");
        assert_eq!(
            e,
            [format!("3:38: step `r` (recognize): `into: auth.method` would write `auth.method`, but `auth.*` is set by the verify_passphrase, verify_code and verify_totp steps and is read-only to flows {RESERVED_TAIL}; choose another variable name")]
        );
    }

    #[test]
    fn every_reserved_write_in_one_pass() {
        let e = errs_with("vars: { call_id: x }\nsteps:\n  s:\n    set: { account.name: Eve }\n    next: w\n  w:\n    webhook: { url: 'http://127.0.0.1/x', into: account }\n    on: { success: c, failure: c, error: c }\n  c:\n    collect_digits: { prompts: [x], into: caller }\n    on: { success: r, no_input: r, no_match: r }\n  r:\n    recognize: { prompts: [x], into: code.sent_to }\n    on: { success: end, no_input: end, no_match: end, error: end }\n");
        let at: Vec<&str> = e.iter().map(|l| l.split(": ").next().unwrap()).collect();
        assert_eq!(at, ["1:9", "4:12", "7:49", "10:43", "13:38"], "{e:#?}");
    }

    #[test]
    fn collects_many_errors_in_one_pass() {
        let e = errs(
            "steps:\n  a:\n    plya: [x]\n  b:\n    collect_digits: { tries: x }\n    on: { success: a }\n  b: { hangup: {} }\n  c:\n    play: [x]\n    on: { found: a }\n",
        );
        assert!(e.len() >= 4, "{e:#?}");
        // sorted by position
        let lines: Vec<u32> = e
            .iter()
            .map(|l| l.split(':').next().unwrap().parse().unwrap())
            .collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{e:#?}");
    }

    #[test]
    fn yaml_11_booleans_do_not_eat_keys() {
        // `on`, `no`, `y` are plain strings in YAML 1.2; `on:` must work as the exits key.
        let f = ok("steps:\n  y:\n    play: [no]\n    next: n\n  n: { hangup: {} }\n");
        let StepKind::Play(p) = &f.step("y").unwrap().kind else {
            panic!()
        };
        assert_eq!(p.prompts[0].value, "no");
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut samples: Vec<String> = vec![
            "\0".into(),
            "{{{{".into(),
            "steps: &a [*a]".into(),
            "steps:\n  a: &x { play: [x], next: *x }".into(),
            "!!binary AAAA".into(),
            "steps: { a: { play: [x], next: 1e999 } }".into(),
            "steps: { 1: { goto: 2 }, 2: { hangup: } }".into(),
            "steps: { a: { branch: [ null, 3, [], { if: '(((' , goto: a }, { else: null } ] } }"
                .into(),
            "\u{feff}steps: {}".into(),
            "steps:\n\t- a".into(),
            format!("{}x{}", "[".repeat(5000), "]".repeat(5000)),
        ];
        // Every prefix of the full example (truncated files).
        for cut in (0..FULL.len()).step_by(7) {
            if FULL.is_char_boundary(cut) {
                samples.push(FULL[..cut].to_string());
            }
        }
        // Garble: swap characters around.
        let bytes: Vec<char> = FULL.chars().collect();
        for i in (0..bytes.len()).step_by(13) {
            let mut b = bytes.clone();
            b[i] = ['{', ':', '-', '"', '\n', ' '][i % 6];
            samples.push(b.into_iter().collect());
        }
        for s in &samples {
            let _ = load_flow_str(Path::new("g.yaml"), s);
        }
    }

    #[test]
    fn load_flow_io_error_and_dir() {
        let dir = std::env::temp_dir().join(format!("flowcheck-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let e = load_flow(&missing).unwrap_err();
        assert_eq!(e[0].span, Span { line: 1, col: 1 });
        assert!(
            e[0].message.starts_with("cannot read flow file: "),
            "{}",
            e[0]
        );

        std::fs::write(dir.join("a.yaml"), "steps: { s: { hangup: {} } }\n").unwrap();
        std::fs::write(dir.join("b.yml"), "flow: a\nsteps: { s: { hangup: {} } }\n").unwrap();
        std::fs::write(dir.join("c.yaml"), "steps: { s: { plya: {} } }\n").unwrap();
        std::fs::write(dir.join("a.test.yaml"), "not: a flow\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let (flows, diags) = load_dir(&dir);
        let names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(diags.len(), 2, "{}", render_diagnostics(&diags));
        assert!(diags[0].path.ends_with("b.yml"), "{}", diags[0]);
        assert!(
            diags[0]
                .message
                .starts_with("flow name `a` is also used by "),
            "{}",
            diags[0]
        );
        assert!(
            diags[0]
                .message
                .ends_with("a.yaml; flow names must be unique"),
            "{}",
            diags[0]
        );
        assert!(diags[1].message.contains("unknown step kind `plya`"));
        let (_, d) = load_dir(&dir.join("nope"));
        assert!(d[0].message.starts_with("cannot read flow directory"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nearest_suggestions() {
        assert_eq!(nearest("plya", ["play", "say"]), Some("play"));
        assert_eq!(nearest("zzzzzz", ["play", "say"]), None);
        assert_eq!(nearest("zz", ["a"]), None);
        assert_eq!(nearest("bb", ["b"]), Some("b"));
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    /// docs/flow.schema.json must describe exactly what the loader accepts, so a
    /// YAML language server neither rejects valid flows nor misses fields.
    #[test]
    fn json_schema_matches_loader_tables() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flow.schema.json");
        let text = std::fs::read_to_string(&path).expect("docs/flow.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        let sorted = |v: &[&str]| -> Vec<String> {
            let mut k: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(keys(&schema["properties"]), sorted(FLOW_FIELDS));
        let defs = &schema["$defs"];
        let step_refs: Vec<&str> = schema["$defs"]["step"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["$ref"].as_str())
            .collect();
        assert_eq!(step_refs.len(), UNITS.len());
        for u in UNITS {
            let kind = &u.name;
            let fields = u.fields();
            assert!(
                step_refs.contains(&format!("#/$defs/step_{kind}").as_str()),
                "{kind}"
            );
            let step = &defs[format!("step_{kind}")];
            let props = keys(&step["properties"]);
            assert!(props.contains(&kind.to_string()), "{kind}");
            assert!(props.contains(&"description".to_string()), "{kind}");
            for p in &props {
                assert!(
                    p == kind || STEP_COMMON_FIELDS.contains(&p.as_str()),
                    "step_{kind} has unexpected key {p}"
                );
            }
            let exits = u.exits;
            // `goto:` itself names the next step; a `next:` beside it is an error.
            let takes_next = exits.contains(&Exit::Next) && !u.next_in_body;
            assert_eq!(props.contains(&"next".to_string()), takes_next, "{kind}");
            let on: Vec<&str> = exits
                .iter()
                .filter(|e| **e != Exit::Next)
                .map(|e| e.as_str())
                .collect();
            assert_eq!(
                keys(&step["properties"]["on"]["properties"]),
                sorted(&on),
                "{kind} exits"
            );
            let body = &defs[format!("kind_{kind}")];
            let field_keys = match *kind {
                "play" => keys(&body["oneOf"][0]["properties"]),
                "branch" => {
                    let mut k: Vec<String> = body["items"]["oneOf"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|c| keys(&c["properties"]))
                        .collect();
                    k.sort();
                    k
                }
                "hangup" => keys(&body["oneOf"][2]["properties"]),
                _ => keys(&body["properties"]),
            };
            assert_eq!(field_keys, sorted(&fields), "fields of {kind}");
        }
        // Every built kind finds its own unit.
        let flow = ok(FULL);
        let mut seen = std::collections::BTreeSet::new();
        for step in &flow.steps {
            assert_eq!(unit_of(&step.kind).name, step.kind.name());
            seen.insert(step.kind.name());
        }
        assert_eq!(seen.len(), UNITS.len(), "FULL uses every kind");
    }

    #[test]
    fn json_schema_refuses_the_engine_owned_names_the_loader_refuses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flow.schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let re = |def: &str| {
            let p = schema["$defs"][def]["not"]["pattern"].as_str().unwrap();
            regex::Regex::new(p).unwrap()
        };
        let (name, prefix) = (re("writable_name"), re("writable_prefix"));
        for n in [
            "auth",
            "auth.result",
            "account.id",
            "code",
            "code.channel",
            "caller",
            "caller_trust",
            "caller.trust",
            "callers",
            "call",
            "call.id",
            "call_id",
            "call_ids",
            "dialled",
            "dialled_no",
            "header.x",
            "headers",
            "crm",
            "crm.auth.result",
            "authority",
            "result",
        ] {
            assert_eq!(name.is_match(n), reserved_owner(n).is_some(), "name {n}");
            let under = format!("{n}.");
            assert_eq!(
                prefix.is_match(n),
                reserved_owner(&under).is_some(),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn send_code_channels_in_order_and_channel_as_a_list_of_one() {
        let f = ok(r#"
steps:
  a: { send_code: { channels: [sms, email, voice] }, on: { success: b, rate_limited: z } }
  b: { send_code: { channel: email }, on: { success: z, rate_limited: z } }
  z: { hangup: {} }
"#);
        let chans = |id: &str| match &f.step(id).unwrap().kind {
            StepKind::SendCode(s) => s.channels.value.clone(),
            _ => panic!(),
        };
        assert_eq!(
            chans("a"),
            [CodeChannel::Sms, CodeChannel::Email, CodeChannel::Voice]
        );
        assert_eq!(chans("b"), [CodeChannel::Email]);
        for (body, want) in [
            (
                "{ channels: [sms, sms] }",
                "`channels`: \"sms\" is listed twice",
            ),
            ("{ channels: [] }", "`channels` must name at least one"),
            ("{ channels: sms }", "`channels` must be a list"),
            (
                "{ channels: [fax] }",
                "`channels` must be one of sms, voice, email, got \"fax\"",
            ),
            (
                "{ channel: sms, channels: [email] }",
                "`channel` or `channels`, not both",
            ),
        ] {
            let e = errs(&format!(
                "steps:\n  a: {{ send_code: {body}, on: {{ success: z, rate_limited: z }} }}\n  z: {{ hangup: {{}} }}\n"
            ));
            assert!(e.iter().any(|m| m.contains(want)), "{body}: {e:?}");
        }
    }

    #[test]
    fn field_tables_cover_every_kind() {
        let names = kind_list();
        for k in names.iter() {
            assert!(
                !unit(k).unwrap().exits.is_empty() || ["branch", "hangup"].contains(k),
                "{k}"
            );
        }
        assert_eq!(names.len(), 15);
        // The field lists the units read, as they were written in the tables before.
        let digit = "prompts min max terminator first_digit_timeout inter_digit_timeout tries no_input_prompts invalid_prompts barge_in";
        for (kind, fields) in [
            ("play", "prompts barge_in".to_string()),
            ("say", "value as count before after barge_in".into()),
            ("collect_digits", format!("{digit} pattern into secret")),
            ("recognize", "prompts phrases digits_only language no_input_timeout end_of_speech_timeout max_duration min_confidence tries no_input_prompts no_match_prompts barge_in into".into()),
            ("lookup_caller", "number".into()),
            ("verify_passphrase", "prompts tries no_input_timeout end_of_speech_timeout max_duration incomplete_timeout no_input_prompts retry_prompts language".into()),
            ("send_code", "channel channels to length ttl max_attempts resend_cooldown language hold".into()),
            ("verify_code", digit.into()),
            ("verify_totp", format!("{digit} window")),
            ("transfer", "target mode timeout headers".into()),
            ("webhook", "url method timeout headers body into".into()),
            ("set", String::new()),
            ("branch", "if goto else".into()),
            ("goto", String::new()),
            ("hangup", "reason".into()),
        ] {
            assert_eq!(unit(kind).unwrap().fields().join(" "), fields, "{kind}");
        }
    }
}
