//! Flow validator: checks a loaded [`Flow`] for mistakes a caller would hit.
//!
//! The loader guarantees the *shape* of a flow; this module checks what the
//! flow *does*: every exit goes somewhere real, every step is reachable, no
//! call can spin forever, every way a caller or a backend can fail is routed,
//! timers are humane, prompts exist, variables are set before they are read,
//! and secrets (codes, passphrases, PINs) never leave the engine.
//!
//! Exit semantics the checks assume (the interpreter implements the same):
//! - Input steps retry internally up to `tries`. When tries run out, the step
//!   takes the exit for the last outcome (`no_input`, `no_match`, `failure`)
//!   if the flow names it, otherwise `max_attempts`.
//! - `verify_code`: an expired code takes `expired` if named, else `failure`
//!   (and then `max_attempts` as above).
//! - `webhook`: a timeout takes `timeout` if named, else `error`.
//! - `transfer`: `success` is optional; without it the engine's part of the
//!   call ends once the transfer succeeds.
//!
//! Loop rules: a cycle is fine when it passes through an input step (a retry
//! menu waits for the caller each time round) and some hangup/transfer can be
//! reached from it. Flagged: any cycle made only of non-input steps (it would
//! spin or replay audio forever), and any cycle with no way to end the call.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::flow::diag::{self, Diagnostic};
use crate::flow::expr;
use crate::flow::load::{self, nearest, Loaded, Recovery};
use crate::flow::model::*;
#[cfg(test)]
use crate::flow::steps::unit::fmt_dur;
use crate::flow::steps::unit::{unit_of, Findings, Read, Sink, Written};

/// Where `validate` looks for things outside the flow file.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// Directory holding `<prompt>.wav` files.
    pub prompts_dir: PathBuf,
}

/// Variables the engine sets on every call.
pub const BUILTIN_VARS: &[&str] = &[
    "caller",
    "dialled",
    "call_id",
    "caller_trust",
    "caller.trust",
    "now",
    "last_exit",
    "attempts",
];
pub use crate::flow::steps::unit::AUTH_VARS;
/// Names that always hold secrets, whoever sets them; so does anything under `secret.`.
pub const RESERVED_SECRETS: &[&str] = &["code", "otp", "passphrase", "transcript"];

/// Steps that wait for the caller; a loop through one of them cannot spin.
fn waits_for_caller(k: &StepKind) -> bool {
    unit_of(k).waits_for_caller
}

/// Steps after which the engine's part of the call is over.
fn is_terminal(k: &StepKind) -> bool {
    unit_of(k).ends_call
}

struct V<'a> {
    flow: &'a Flow,
    /// What the loader guessed after load errors (empty for a clean load).
    rec: &'a Recovery,
    diags: Vec<Diagnostic>,
}

impl V<'_> {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(&self.flow.path, span, msg));
    }
}

fn what(step: &Step) -> String {
    format!("step `{}` ({})", step.id.value, step.kind.name())
}

/// Check a loaded flow. Returns every problem found (empty = fine to serve).
pub fn validate(flow: &Flow, opts: &ValidateOptions) -> Vec<Diagnostic> {
    validate_recovered(flow, opts, &Recovery::default())
}

/// [`validate`] a flow the lenient loader recovered after load errors: checks
/// whose outcome depends on what the loader had to guess (placeholder steps,
/// rejected exits) are skipped or made lenient, so no problem is reported
/// that is only a consequence of a load error.
pub fn validate_recovered(flow: &Flow, opts: &ValidateOptions, rec: &Recovery) -> Vec<Diagnostic> {
    let mut v = V {
        flow,
        rec,
        diags: Vec::new(),
    };
    if flow.steps.is_empty() {
        // Only after a load error (no usable `steps:`), which says it all.
        return v.diags;
    }
    check_targets(&mut v);
    check_graph(&mut v);
    for step in &flow.steps {
        let id = &step.id.value;
        if rec.placeholders.contains(id) {
            continue;
        }
        // Exits the loader rejected (misspelt, not of this kind, not a step
        // id) were reported; "has no `x` exit" would often restate them.
        let exits_unsure =
            rec.opaque.contains(id) || rec.hidden_edges.iter().any(|(from, _)| from == id);
        if !exits_unsure {
            check_exits(&mut v, step);
        }
        check_bounds(&mut v, step);
    }
    check_prompts(&mut v, opts);
    check_vars_and_secrets(&mut v);
    diag::sort(&mut v.diags);
    v.diags
}

/// Every problem of a leniently loaded flow: the load diagnostics and the
/// semantic ones, sorted by position. A semantic problem at the very place
/// of a load problem is left out (it restates it: a missing `target:` is
/// also an empty target).
pub fn check_loaded(loaded: &Loaded, opts: &ValidateOptions) -> Vec<Diagnostic> {
    let mut diags = loaded.diags.clone();
    if let Some(flow) = &loaded.flow {
        let taken: BTreeSet<Span> = loaded.diags.iter().map(|d| d.span).collect();
        diags.extend(
            validate_recovered(flow, opts, &loaded.recovery)
                .into_iter()
                .filter(|d| !taken.contains(&d.span)),
        );
    }
    diag::sort(&mut diags);
    diags
}

/// Load and validate files and directories (directories: every flow in them).
/// Returns the number of flow files looked at and all diagnostics. Flows with
/// load errors are still validated as far as they could be loaded, so one run
/// shows every problem.
pub fn validate_paths(paths: &[PathBuf], opts: &ValidateOptions) -> (usize, Vec<Diagnostic>) {
    let mut files = 0;
    let mut diags = Vec::new();
    for p in paths {
        if p.is_dir() {
            match load::load_dir_recovering(p) {
                Ok(all) => {
                    files += all.len();
                    for l in &all {
                        diags.extend(check_loaded(l, opts));
                    }
                }
                Err(d) => diags.push(d),
            }
        } else {
            files += 1;
            diags.extend(check_loaded(&load::load_file_recovering(p), opts));
        }
    }
    diag::sort(&mut diags);
    (files, diags)
}

fn suggest(v: &V, word: &str) -> String {
    nearest(word, v.flow.steps.iter().map(|s| s.id.value.as_str()))
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

fn check_targets(v: &mut V) {
    let flow = v.flow;
    if flow.step(&flow.start.value).is_none() {
        let hint = suggest(v, &flow.start.value);
        v.err(
            flow.start.span,
            format!(
                "`start` names `{}`, which is not a step{hint}",
                flow.start.value
            ),
        );
    }
    for step in &flow.steps {
        let placeholder = v.rec.placeholders.contains(&step.id.value);
        let w = if placeholder {
            format!("step `{}`", step.id.value)
        } else {
            what(step)
        };
        let mut refs: Vec<(String, &Spanned<StepId>)> = step
            .exits
            .iter()
            .map(|(e, t)| {
                let label = match (e, &step.kind) {
                    (Exit::Next, k) if !placeholder && unit_of(k).next_in_body => {
                        format!("`{}`", k.name())
                    }
                    (Exit::Next, _) => "`next`".to_string(),
                    _ => format!("exit `{}`", e.as_str()),
                };
                (label, t)
            })
            .collect();
        if let StepKind::Branch(b) = &step.kind {
            for (i, (_, t)) in b.cases.iter().enumerate() {
                refs.push((format!("case {} `goto`", i + 1), t));
            }
            refs.push(("`else`".to_string(), &b.otherwise));
        }
        for (label, t) in refs {
            if flow.step(&t.value).is_none() {
                let hint = suggest(v, &t.value);
                v.err(
                    t.span,
                    format!(
                        "{w}: {label} goes to `{}`, which is not a step{hint}",
                        t.value
                    ),
                );
            }
        }
    }
}

/// Step graph by index: edges to valid targets only. The second graph adds
/// the loader's hidden edges (targets under exits it rejected).
fn edges(flow: &Flow, rec: &Recovery) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let index: HashMap<&str, usize> = flow
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.value.as_str(), i))
        .collect();
    let real: Vec<Vec<usize>> = flow
        .steps
        .iter()
        .map(|s| {
            let mut out: Vec<usize> = s
                .targets()
                .iter()
                .filter_map(|t| index.get(t.value.as_str()).copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect();
    let mut all = real.clone();
    for (from, to) in &rec.hidden_edges {
        if let (Some(&f), Some(&t)) = (index.get(from.as_str()), index.get(to.as_str())) {
            if !all[f].contains(&t) {
                all[f].push(t);
            }
        }
    }
    (real, all)
}

/// Strongly connected components (iterative Kosaraju; flows can be large and
/// recursion depth must not depend on input). Only nodes with `keep[i]` take part.
fn sccs(adj: &[Vec<usize>], keep: &[bool]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for root in 0..n {
        if seen[root] || !keep[root] {
            continue;
        }
        seen[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some(&mut (node, ref mut i)) = stack.last_mut() {
            if let Some(&next) = adj[node].get(*i) {
                *i += 1;
                if keep[next] && !seen[next] {
                    seen[next] = true;
                    stack.push((next, 0));
                }
            } else {
                order.push(node);
                stack.pop();
            }
        }
    }
    let mut radj = vec![Vec::new(); n];
    for (u, outs) in adj.iter().enumerate() {
        for &w in outs {
            if keep[u] && keep[w] {
                radj[w].push(u);
            }
        }
    }
    let mut comp = vec![usize::MAX; n];
    let mut out = Vec::new();
    for &root in order.iter().rev() {
        if comp[root] != usize::MAX {
            continue;
        }
        let id = out.len();
        let mut members = vec![root];
        comp[root] = id;
        let mut stack = vec![root];
        while let Some(u) = stack.pop() {
            for &w in &radj[u] {
                if comp[w] == usize::MAX {
                    comp[w] = id;
                    members.push(w);
                    stack.push(w);
                }
            }
        }
        members.sort_unstable();
        out.push(members);
    }
    out
}

fn is_cycle(adj: &[Vec<usize>], members: &[usize]) -> bool {
    members.len() > 1 || adj[members[0]].contains(&members[0])
}

fn names(flow: &Flow, members: &[usize]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = members
        .iter()
        .take(SHOWN)
        .map(|&i| format!("`{}`", flow.steps[i].id.value))
        .collect();
    if members.len() > SHOWN {
        s.push(format!("… ({} more)", members.len() - SHOWN));
    }
    s.join(", ")
}

fn check_graph(v: &mut V) {
    let flow = v.flow;
    let rec = v.rec;
    let n = flow.steps.len();
    // Cycles are looked for on the real edges only; reachability and ways out
    // also follow hidden edges (an exit the loader rejected still shows where
    // the author meant to go), so neither reports a mere consequence of a
    // load error.
    let (adj, adj_all) = edges(flow, rec);
    let placeholder: Vec<bool> = flow
        .steps
        .iter()
        .map(|s| rec.placeholders.contains(&s.id.value))
        .collect();
    let opaque: Vec<bool> = flow
        .steps
        .iter()
        .map(|s| rec.opaque.contains(&s.id.value))
        .collect();

    // Reachability from start.
    let mut reached = vec![false; n];
    if let Some(start) = flow
        .steps
        .iter()
        .position(|s| s.id.value == flow.start.value)
    {
        let mut q = VecDeque::from([start]);
        reached[start] = true;
        while let Some(u) = q.pop_front() {
            for &w in &adj_all[u] {
                if !reached[w] {
                    reached[w] = true;
                    q.push_back(w);
                }
            }
        }
        // A reached step whose exits could not all be read may lead anywhere.
        let unknown = rec.reach_unknown || (0..n).any(|i| reached[i] && opaque[i]);
        for (i, s) in flow.steps.iter().enumerate() {
            if !reached[i] && !unknown {
                v.err(
                    s.span,
                    format!(
                        "step `{}` is never reached from the start step `{}`; route to it or remove it",
                        s.id.value, flow.start.value
                    ),
                );
            }
        }
    }

    // Loops that never wait for the caller: cycles among non-waiting steps.
    // A placeholder's kind is unknown: it may wait for the caller.
    let non_waiting: Vec<bool> = flow
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| !placeholder[i] && !waits_for_caller(&s.kind))
        .collect();
    for c in sccs(&adj, &non_waiting) {
        if is_cycle(&adj, &c) {
            let first = &flow.steps[c[0]];
            v.err(
                first.span,
                format!(
                    "steps {} form a loop that never waits for the caller, so a call could spin in it forever; put an input step (collect_digits, recognize, verify_*) in the loop or give it a way out",
                    names(flow, &c)
                ),
            );
        }
    }

    // Loops with no way out: no hangup/transfer reachable from them.
    let mut can_end = vec![false; n];
    let mut radj = vec![Vec::new(); n];
    for (u, outs) in adj_all.iter().enumerate() {
        for &w in outs {
            radj[w].push(u);
        }
    }
    // Placeholders may end the call, opaque steps may lead to one that does.
    let mut q: VecDeque<usize> = (0..n)
        .filter(|&i| placeholder[i] || opaque[i] || is_terminal(&flow.steps[i].kind))
        .collect();
    for &i in &q {
        can_end[i] = true;
    }
    while let Some(u) = q.pop_front() {
        for &w in &radj[u] {
            if !can_end[w] {
                can_end[w] = true;
                q.push_back(w);
            }
        }
    }
    for c in sccs(&adj, &vec![true; n]) {
        if is_cycle(&adj, &c) && !can_end[c[0]] {
            let first = &flow.steps[c[0]];
            v.err(
                first.span,
                format!(
                    "steps {} form a loop with no way out: no hangup or transfer step can be reached from them; route one of their exits to a step that ends the call",
                    names(flow, &c)
                ),
            );
        }
    }
}

/// Exits that must be routed, with the fallback that may stand in for each
/// (all declared by the kind's unit).
fn check_exits(v: &mut V, step: &Step) {
    let has = |e: Exit| step.exits.contains_key(&e);
    let w = what(step);
    let u = unit_of(&step.kind);
    if u.needs_next && !has(Exit::Next) {
        let msg = format!(
            "{w} has no `next:`; the call would stop here with nothing to do — \
             add `next: <step>` or end the flow with a `hangup` step"
        );
        v.err(step.span, msg);
    }
    for &e in u.required {
        if !has(e) {
            v.err(
                step.span,
                format!(
                    "{w} has no `{}` exit; add `{}: <step>` under `on:`",
                    e.as_str(),
                    e.as_str()
                ),
            );
        }
    }
    // Caller outcomes that may fall back to max_attempts.
    for &(e, when) in u.fallbacks {
        if !has(e) && !has(Exit::MaxAttempts) {
            v.err(
                step.span,
                format!(
                    "{w} does not say where to go when {when} ({}); add `{}: <step>` or `max_attempts: <step>` under `on:`",
                    e.as_str(),
                    e.as_str()
                ),
            );
        }
    }
    for m in (u.check_exits)(step) {
        v.err(step.span, format!("{w} {m}"));
    }
    if u.calls_backend && !has(Exit::Error) {
        v.err(
            step.span,
            format!("{w} has no `error` exit; when the backend is unavailable the call would have nowhere to go — add `error: <step>` under `on:`"),
        );
    }
}

/// Timers and counts outside the bounds a kind's unit checks are almost
/// always typos (5m for 5s) and make calls hang or fail for real callers.
fn check_bounds(v: &mut V, step: &Step) {
    let mut f = Findings {
        what: what(step),
        found: Vec::new(),
    };
    (unit_of(&step.kind).check_fields)(step, &mut f);
    for (span, msg) in f.found {
        v.err(span, msg);
    }
}

/// Every prompt a step may play, with its field name.
fn step_prompts(step: &Step) -> Vec<(&'static str, &PromptRef)> {
    (unit_of(&step.kind).prompts)(&step.kind)
}

fn check_prompts(v: &mut V, opts: &ValidateOptions) {
    let flow = v.flow;
    let dir_ok = opts.prompts_dir.is_dir();
    let mut reported_dir = false;
    for step in &flow.steps {
        for (field, p) in step_prompts(step) {
            let name = p.value.trim();
            if expr::template_vars(name).is_ok_and(|vars| !vars.is_empty()) {
                continue; // chosen at run time
            }
            let rel = Path::new(name);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                v.err(
                    p.span,
                    format!("{}: prompt `{name}` in `{field}` must be a plain name under the prompts directory (no `..`, no leading `/`)", what(step)),
                );
                continue;
            }
            if !dir_ok {
                if !reported_dir {
                    reported_dir = true;
                    v.err(
                        p.span,
                        format!(
                            "prompts directory {} does not exist, so prompt `{name}` cannot be found; create it or pass the right directory",
                            opts.prompts_dir.display()
                        ),
                    );
                }
                continue;
            }
            let file = opts.prompts_dir.join(format!("{name}.wav"));
            if !file.is_file() {
                v.err(
                    p.span,
                    format!(
                        "{}: prompt `{name}` in `{field}` has no audio file; expected {}",
                        what(step),
                        file.display()
                    ),
                );
            }
        }
    }
}

fn step_reads(step: &Step) -> Vec<Read<'_>> {
    let mut out: Vec<Read> = step_prompts(step)
        .into_iter()
        .map(|(field, t)| Read {
            label: format!("prompt `{}` in `{field}`", t.value),
            t,
            sink: Sink::Spoken,
        })
        .collect();
    out.extend((unit_of(&step.kind).reads)(&step.kind));
    out
}

/// What the flow can set, as exact names and as prefixes (`account.` …).
struct Settable {
    exact: BTreeSet<String>,
    prefixes: BTreeSet<String>,
    /// After a load error that hides which variables exist.
    any: bool,
}

impl Settable {
    fn contains(&self, name: &str) -> bool {
        self.any
            || self.exact.contains(name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

fn settable(flow: &Flow, rec: &Recovery) -> Settable {
    let mut exact: BTreeSet<String> = BUILTIN_VARS.iter().map(|s| s.to_string()).collect();
    let mut prefixes = BTreeSet::new();
    exact.extend(flow.vars.keys().cloned());
    exact.extend(rec.maybe_set.iter().cloned());
    prefixes.extend(rec.maybe_prefixes.iter().cloned());
    for step in &flow.steps {
        for w in (unit_of(&step.kind).writes)(&step.kind) {
            match w {
                Written::Exact(n) => {
                    exact.insert(n);
                }
                Written::Prefix(p) => {
                    prefixes.insert(p);
                }
            }
        }
    }
    Settable {
        exact,
        prefixes,
        any: rec.vars_unknown,
    }
}

fn secret_vars(flow: &Flow) -> BTreeMap<String, String> {
    // name → why it is secret
    let mut out = BTreeMap::new();
    for step in &flow.steps {
        if let StepKind::CollectDigits(c) = &step.kind {
            if c.secret {
                out.insert(
                    c.into.value.clone(),
                    format!("collected with `secret: true` in step `{}`", step.id.value),
                );
            }
        }
    }
    out
}

fn is_secret(name: &str, marked: &BTreeMap<String, String>) -> bool {
    RESERVED_SECRETS.contains(&name) || name.starts_with("secret.") || marked.contains_key(name)
}

fn check_vars_and_secrets(v: &mut V) {
    let flow = v.flow;
    let set = settable(flow, v.rec);
    let marked = secret_vars(flow);
    let candidates: Vec<String> = set.exact.iter().cloned().collect();
    let unset_msg = |name: &str| {
        let hint = nearest(name, candidates.iter().map(String::as_str))
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        let extra = if name.starts_with("account.") {
            " (`account.*` is set by a `lookup_caller` step, and this flow has none)"
        } else if name.starts_with("auth.") {
            " (`auth.*` is set by verify_passphrase/verify_code/verify_totp steps)"
        } else {
            ""
        };
        format!("which nothing in this flow sets{extra}{hint}")
    };

    for (name, t) in &flow.vars {
        if let Ok(vars) = expr::template_vars(&t.value) {
            for r in vars {
                if !set.contains(&r) {
                    v.err(
                        t.span,
                        format!("`vars.{name}` reads variable `{r}`, {}", unset_msg(&r)),
                    );
                }
            }
        }
    }

    for step in &flow.steps {
        let w = what(step);
        for read in step_reads(step) {
            let Ok(vars) = expr::template_vars(&read.t.value) else {
                continue; // the loader reported it
            };
            for r in vars {
                if !set.contains(&r) {
                    v.err(
                        read.t.span,
                        format!(
                            "{w}: {} reads variable `{r}`, {}",
                            read.label,
                            unset_msg(&r)
                        ),
                    );
                }
                if !is_secret(&r, &marked) {
                    continue;
                }
                let into = match read.sink {
                    Sink::Internal => continue,
                    Sink::Spoken => "into what the caller hears; secrets must never be spoken back",
                    Sink::TransferHeader => "into transfer headers; secrets must never leave the engine",
                    Sink::TransferTarget => "into the transfer target; secrets must never leave the engine",
                    Sink::WebhookUrl => "into the webhook URL; secrets must never leave the engine",
                    Sink::WebhookHeader => "into webhook headers; secrets must never leave the engine",
                    Sink::WebhookBody => "into the webhook body; secrets must never leave the engine",
                    Sink::SetValue => "into a plain variable, where it would be logged; secrets must stay in their own variable",
                };
                let why = marked
                    .get(&r)
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                v.err(
                    read.t.span,
                    format!("{w}: {} puts secret variable `{r}`{why} {into}", read.label),
                );
            }
        }
        if let StepKind::Branch(b) = &step.kind {
            for (cond, _) in &b.cases {
                let Ok(c) = expr::Condition::parse(&cond.value) else {
                    continue;
                };
                for r in c.vars() {
                    if !set.contains(&r) {
                        v.err(
                            cond.span,
                            format!(
                                "{w}: condition {:?} reads variable `{r}`, {}",
                                cond.value,
                                unset_msg(&r)
                            ),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::load::load_flow_str;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    static N: AtomicUsize = AtomicUsize::new(0);

    /// A fresh temp dir with `welcome.wav`, `menu.wav`, `enter.wav`, `digits/5.wav`.
    fn prompts_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "flowcheck-prompts-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(d.join("digits")).unwrap();
        for f in ["welcome.wav", "menu.wav", "enter.wav", "digits/5.wav"] {
            std::fs::write(d.join(f), b"RIFF").unwrap();
        }
        d
    }

    fn check(yaml: &str) -> Vec<String> {
        let flow = load_flow_str(Path::new("t.yaml"), yaml).unwrap_or_else(|d| {
            panic!(
                "flow did not load:\n{}",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let dir = prompts_dir();
        let out = validate(
            &flow,
            &ValidateOptions {
                prompts_dir: dir.clone(),
            },
        )
        .iter()
        .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
        .collect();
        let _ = std::fs::remove_dir_all(dir);
        out
    }

    fn has(errors: &[String], needle: &str) {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "no error contains {needle:?}; got:\n{}",
            errors.join("\n")
        );
    }

    fn clean(yaml: &str) {
        let e = check(yaml);
        assert!(e.is_empty(), "expected no errors, got:\n{}", e.join("\n"));
    }

    const GOOD: &str = r##"
vars: { brand: "Example" }
steps:
  greet:
    play: [welcome]
    next: lookup
  lookup:
    lookup_caller: {}
    on: { found: ask, not_found: ask, error: agent }
  ask:
    collect_digits: { prompts: [enter], into: pin, secret: true, min: 4, max: 4 }
    on: { success: route, max_attempts: agent }
  route:
    branch:
      - if: 'account.status == "locked" || !exists(pin)'
        goto: agent
      - else: send
  send:
    send_code: {}
    on: { success: code, rate_limited: agent, error: agent }
  code:
    verify_code: { prompts: [enter] }
    on: { success: mark, failure: ask, max_attempts: agent, error: agent }
  mark:
    set: { result: "${auth.result}" }
    next: agent
  agent:
    transfer: { target: "sip:agents@127.0.0.1:5080", headers: { X-Auth: "${auth.result}", X-Account: "${account.id}", X-Brand: "${brand}" } }
    on: { failure: bye, error: bye }
  bye:
    hangup: {}
"##;

    #[test]
    fn good_flow_is_clean() {
        clean(GOOD);
    }

    #[test]
    fn dangling_targets_suggest_nearest() {
        let e = check(
            "start: gret\nsteps:\n  greet: { play: [welcome], next: by }\n  bye: { hangup: {} }\n",
        );
        has(
            &e,
            "1:8: `start` names `gret`, which is not a step; did you mean `greet`?",
        );
        has(&e, "3:35: step `greet` (play): `next` goes to `by`, which is not a step; did you mean `bye`?");
        let e = check("steps:\n  a: { goto: nowhere_at_all }\n");
        has(
            &e,
            "step `a` (goto): `goto` goes to `nowhere_at_all`, which is not a step",
        );
        assert!(!e.iter().any(|l| l.contains("did you mean")), "{e:?}");
        let e = check("steps:\n  a:\n    branch:\n      - if: x\n        goto: bb\n      - else: cc\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (branch): case 1 `goto` goes to `bb`, which is not a step; did you mean `b`?",
        );
        has(
            &e,
            "step `a` (branch): `else` goes to `cc`, which is not a step",
        );
        let e = check("steps:\n  a:\n    lookup_caller: {}\n    on: { found: bye, not_found: bye, error: byee }\n  bye: { hangup: {} }\n");
        has(&e, "step `a` (lookup_caller): exit `error` goes to `byee`, which is not a step; did you mean `bye`?");
    }

    #[test]
    fn unreachable_steps() {
        let e = check("steps:\n  a: { hangup: {} }\n  b: { play: [welcome], next: a }\n");
        assert_eq!(
            e,
            ["3:3: step `b` is never reached from the start step `a`; route to it or remove it"]
        );
    }

    #[test]
    fn loops_without_waiting() {
        let e = check(
            "steps:\n  a: { play: [welcome], next: b }\n  b: { goto: a }\n  c: { hangup: {} }\n",
        );
        has(&e, "2:3: steps `a`, `b` form a loop that never waits for the caller, so a call could spin in it forever");
        // Self-loop.
        let e = check("steps:\n  a: { set: { x: '1' }, next: a }\n");
        has(&e, "steps `a` form a loop that never waits for the caller");
        // A loop through an input step is fine (retry menus), as long as it has a way out.
        clean("steps:\n  a: { play: [welcome], next: b }\n  b:\n    collect_digits: {}\n    on: { success: c, no_input: a, no_match: a }\n  c: { hangup: {} }\n");
        // But an input loop must not hide a non-waiting sub-loop.
        let e = check("steps:\n  a: { goto: b }\n  b:\n    branch:\n      - if: x\n        goto: a\n      - else: c\n  c:\n    collect_digits: {}\n    on: { success: d, max_attempts: a }\n  d: { hangup: {} }\n");
        has(
            &e,
            "steps `a`, `b` form a loop that never waits for the caller",
        );
    }

    #[test]
    fn loops_with_no_way_out() {
        let e = check("steps:\n  a: { play: [welcome], next: b }\n  b:\n    collect_digits: {}\n    on: { success: a, no_input: a, no_match: a }\n");
        has(&e, "2:3: steps `a`, `b` form a loop with no way out: no hangup or transfer step can be reached from them");
        assert!(!e.iter().any(|l| l.contains("never waits")), "{e:?}");
    }

    #[test]
    fn input_steps_route_every_outcome() {
        let e = check(
            "steps:\n  a:\n    collect_digits: {}\n    on: { no_input: b }\n  b: { hangup: {} }\n",
        );
        has(&e, "2:3: step `a` (collect_digits) has no `success` exit; add `success: <step>` under `on:`");
        has(&e, "step `a` (collect_digits) does not say where to go when the digits do not fit (no_match); add `no_match: <step>` or `max_attempts: <step>` under `on:`");
        assert!(!e.iter().any(|l| l.contains("(no_input)")), "{e:?}");
        let e = check("steps:\n  a:\n    recognize: {}\n    on: { success: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (recognize) does not say where to go when the caller says nothing (no_input)",
        );
        has(&e, "step `a` (recognize) does not say where to go when the caller is not understood (no_match)");
        let e = check("steps:\n  a:\n    verify_passphrase: {}\n    on: { success: b, no_input: b, error: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (verify_passphrase) does not say where to go when the passphrase does not match (failure)");
        let e = check("steps:\n  a:\n    verify_totp: {}\n    on: { success: b, failure: b, error: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (verify_totp) does not say where to go when the caller enters nothing (no_input)");
        let e = check("steps:\n  a:\n    verify_code: {}\n    on: { success: b, no_input: b, error: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (verify_code) does not say where to go when the code has expired; add `expired: <step>` (or `failure:`)");
        // max_attempts covers every caller outcome.
        clean("steps:\n  a:\n    verify_code: {}\n    on: { success: b, max_attempts: b, error: b }\n  b: { hangup: {} }\n");
    }

    #[test]
    fn backend_steps_need_error() {
        let e = check("steps:\n  a:\n    lookup_caller: {}\n    on: { found: b, not_found: b }\n  b: { hangup: {} }\n");
        assert_eq!(e, ["2:3: step `a` (lookup_caller) has no `error` exit; when the backend is unavailable the call would have nowhere to go — add `error: <step>` under `on:`"]);
        let e = check("steps:\n  a:\n    webhook: { url: 'http://127.0.0.1/x' }\n    on: { success: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (webhook) has no `failure` exit");
        has(&e, "step `a` (webhook) has no `error` exit");
        let e = check("steps:\n  a:\n    send_code: { to: '+1555' }\n    on: { success: b, error: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (send_code) has no `rate_limited` exit; add `rate_limited: <step>` under `on:`");
        let e = check("steps:\n  a:\n    transfer: { target: 'sip:a@b' }\n    on: { success: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (transfer) has no `failure` exit");
        has(&e, "step `a` (transfer) has no `error` exit");
        // collect_digits is local: no error exit needed.
        clean("steps:\n  a:\n    collect_digits: {}\n    on: { success: b, max_attempts: b }\n  b: { hangup: {} }\n");
    }

    #[test]
    fn step_without_way_forward() {
        let e = check("steps:\n  a:\n    play: [welcome]\n");
        has(
            &e,
            "2:3: step `a` (play) has no `next:`; the call would stop here with nothing to do",
        );
        let e = check("steps:\n  a: { set: { x: '1' } }\n");
        has(&e, "step `a` (set) has no `next:`");
    }

    #[test]
    fn missing_prompts() {
        let e = check("steps:\n  a: { play: [welcome, nope, digits/5, '${caller}'], next: b }\n  b: { hangup: {} }\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "2:24: step `a` (play): prompt `nope` in `prompts` has no audio file; expected "
            ),
            "{e:?}"
        );
        assert!(e[0].ends_with("nope.wav"), "{e:?}");
        let e = check("steps:\n  a:\n    collect_digits: { prompts: [enter], no_input_prompts: [gone] }\n    on: { success: b, max_attempts: b }\n  b: { hangup: {} }\n");
        has(&e, "prompt `gone` in `no_input_prompts` has no audio file");
        let e = check("steps:\n  a: { play: ['../secret'], next: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "prompt `../secret` in `prompts` must be a plain name under the prompts directory",
        );
    }

    #[test]
    fn missing_prompts_dir_reported_once() {
        let flow = load_flow_str(
            Path::new("t.yaml"),
            "steps:\n  a: { play: [welcome, menu], next: b }\n  b: { hangup: {} }\n",
        )
        .unwrap();
        let d = validate(
            &flow,
            &ValidateOptions {
                prompts_dir: PathBuf::from("/nonexistent/prompts"),
            },
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "prompts directory /nonexistent/prompts does not exist, so prompt `welcome` cannot be found; create it or pass the right directory");
    }

    #[test]
    fn timer_bounds() {
        let e = check("steps:\n  a:\n    collect_digits: { first_digit_timeout: 90s, inter_digit_timeout: 500ms, tries: 0, min: 5, max: 4 }\n    on: { success: b, max_attempts: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (collect_digits): `first_digit_timeout` is 90s; it must be between 1s and 60s");
        has(&e, "step `a` (collect_digits): `inter_digit_timeout` is 500ms; it must be between 1s and 30s");
        has(
            &e,
            "step `a` (collect_digits): `tries` is 0; it must be between 1 and 10",
        );
        has(
            &e,
            "step `a` (collect_digits): `min` (5) is greater than `max` (4)",
        );
        let e = check("steps:\n  a:\n    collect_digits: { max: 65, min: 0 }\n    on: { success: b, max_attempts: b }\n  b: { hangup: {} }\n");
        has(&e, "`max` is 65; it must be at most 64");
        has(&e, "`min` is 0; it must be at least 1");
        let e = check("steps:\n  a:\n    recognize: { no_input_timeout: 61s, end_of_speech_timeout: 100ms, max_duration: 3m, min_confidence: 1.5, tries: 11 }\n    on: { success: b, max_attempts: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "`no_input_timeout` is 61s; it must be between 1s and 60s",
        );
        has(
            &e,
            "`end_of_speech_timeout` is 100ms; it must be between 200ms and 5s",
        );
        has(&e, "`max_duration` is 3m; it must be between 1s and 2m");
        has(&e, "`min_confidence` is 1.5; it must be between 0 and 1");
        has(&e, "`tries` is 11; it must be between 1 and 10");
        let e = check("steps:\n  a:\n    verify_passphrase: { incomplete_timeout: 6s }\n    on: { success: b, failure: b, no_input: b, max_attempts: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "`incomplete_timeout` is 6s; it must be between 200ms and 5s",
        );
        let e = check("steps:\n  a:\n    send_code: { ttl: 20m, length: 3, language: english }\n    on: { success: b, rate_limited: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (send_code): `ttl` is 20m; it must be between 30s and 15m",
        );
        has(
            &e,
            "step `a` (send_code): `length` is 3; it must be between 4 and 10",
        );
        has(
            &e,
            "language `english` is not a language tag (e.g. `en`, `es`, `fr-CA`)",
        );
        let e = check("steps:\n  a:\n    verify_totp: { window: 4 }\n    on: { success: b, max_attempts: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (verify_totp): `window` is 4; it must be between 0 and 3",
        );
        let e = check("steps:\n  a:\n    transfer: { target: 'sip:a@b', timeout: 0 }\n    on: { failure: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (transfer): `timeout` is 0s; it must be between 1s and 2m",
        );
        let e = check("steps:\n  a:\n    webhook: { url: 'http://x/', timeout: 121s }\n    on: { success: b, failure: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (webhook): `timeout` is 121s; it must be between 1s and 2m",
        );
    }

    #[test]
    fn transfer_target_and_webhook_url() {
        let e = check("steps:\n  a:\n    transfer: { target: '' }\n    on: { failure: b, error: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (transfer): `target` is empty; give a SIP URI");
        // A bare lower-case name is an agent group; anything else must be a URI.
        clean("steps:\n  a:\n    transfer: { target: 'agents' }\n    on: { failure: b, error: b }\n  b: { hangup: {} }\n");
        let e = check("steps:\n  a:\n    transfer: { target: 'agents@pbx' }\n    on: { failure: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (transfer): `target` \"agents@pbx\" is neither a SIP URI nor an agent group",
        );
        let e = check("steps:\n  a:\n    webhook: { url: 'ftp://x/' }\n    on: { success: b, failure: b, error: b }\n  b: { hangup: {} }\n");
        has(
            &e,
            "step `a` (webhook): `url` \"ftp://x/\" must start with http:// or https://",
        );
    }

    #[test]
    fn variables_read_but_never_set() {
        let e = check("steps:\n  a:\n    collect_digits: { into: entered_number }\n    on: { success: b, max_attempts: b }\n  b:\n    say: { value: '${enterd_number}' }\n    next: c\n  c: { hangup: {} }\n");
        has(&e, "6:19: step `b` (say): `value` reads variable `enterd_number`, which nothing in this flow sets; did you mean `entered_number`?");
        let e = check("steps:\n  a:\n    say: { value: '${account.phone}' }\n    next: c\n  c: { hangup: {} }\n");
        has(&e, "reads variable `account.phone`, which nothing in this flow sets (`account.*` is set by a `lookup_caller` step, and this flow has none)");
        let e = check("steps:\n  a:\n    branch:\n      - if: 'auth.result == \"passed\"'\n        goto: c\n      - else: c\n  c: { hangup: {} }\n");
        has(&e, "step `a` (branch): condition \"auth.result == \\\"passed\\\"\" reads variable `auth.result`, which nothing in this flow sets (`auth.*` is set by");
        let e = check("vars: { greeting: 'hi ${nme}' }\nsteps:\n  c: { hangup: {} }\n");
        has(
            &e,
            "`vars.greeting` reads variable `nme`, which nothing in this flow sets",
        );
        // Built-ins, webhook prefixes, send_code and set keys count as set.
        clean("steps:\n  a:\n    webhook: { url: 'http://h/?n=${caller}&d=${dialled}&i=${call_id}&t=${caller_trust}&w=${now}&l=${last_exit}&x=${attempts}' }\n    on: { success: b, failure: b, error: b }\n  b:\n    set: { greeting: '${a.name}' }\n    next: s\n  s:\n    send_code: { to: '+1555' }\n    on: { success: c, rate_limited: c, error: c }\n  c:\n    say: { value: '${greeting}${code.sent_to}' }\n    next: d\n  d: { hangup: {} }\n");
    }

    #[test]
    fn secrets_never_leave() {
        let e = check("steps:\n  a:\n    transfer: { target: 'sip:a@b', headers: { X-Debug: '${code}' } }\n    on: { failure: b, error: b }\n  b: { hangup: {} }\n");
        has(&e, "step `a` (transfer): header X-Debug puts secret variable `code` into transfer headers; secrets must never leave the engine");
        let e = check("steps:\n  p:\n    collect_digits: { into: pin, secret: true }\n    on: { success: w, max_attempts: w }\n  w:\n    webhook: { url: 'http://h/?p=${pin}', headers: { X-P: '${pin}' }, body: { otp: '${otp}' } }\n    on: { success: s, failure: s, error: s }\n  s:\n    set: { copy: '${pin}' }\n    next: y\n  y:\n    say: { value: '${pin}' }\n    next: q\n  q: { play: ['${secret.x}'], next: z }\n  z: { hangup: {} }\n");
        has(&e, "step `w` (webhook): `url` puts secret variable `pin` (collected with `secret: true` in step `p`) into the webhook URL; secrets must never leave the engine");
        has(&e, "step `w` (webhook): header X-P puts secret variable `pin` (collected with `secret: true` in step `p`) into webhook headers");
        has(
            &e,
            "step `w` (webhook): body field `otp` puts secret variable `otp` into the webhook body",
        );
        has(&e, "step `s` (set): `copy` puts secret variable `pin` (collected with `secret: true` in step `p`) into a plain variable, where it would be logged");
        has(&e, "step `y` (say): `value` puts secret variable `pin` (collected with `secret: true` in step `p`) into what the caller hears; secrets must never be spoken back");
        has(&e, "step `q` (play): prompt `${secret.x}` in `prompts` puts secret variable `secret.x` into what the caller hears");
        // A secret used internally (branch, lookup) is fine, and a non-secret into is fine.
        clean("steps:\n  p:\n    collect_digits: { into: pin, secret: false }\n    on: { success: w, max_attempts: w }\n  w:\n    say: { value: '${pin}' }\n    next: z\n  z: { hangup: {} }\n");
    }

    #[test]
    fn validate_paths_files_and_dirs() {
        let dir = prompts_dir();
        let flows = dir.join("flows");
        std::fs::create_dir_all(&flows).unwrap();
        std::fs::write(
            flows.join("a.yaml"),
            "steps:\n  a: { play: [welcome], next: b }\n  b: { hangup: {} }\n",
        )
        .unwrap();
        std::fs::write(
            flows.join("b.yaml"),
            "steps:\n  a: { play: [welcome], next: zz }\n",
        )
        .unwrap();
        std::fs::write(flows.join("a.test.yaml"), "whatever: 1\n").unwrap();
        std::fs::write(flows.join("c.yml"), "steps: [\n").unwrap();
        let opts = ValidateOptions {
            prompts_dir: dir.clone(),
        };
        let (n, d) = validate_paths(std::slice::from_ref(&flows), &opts);
        assert_eq!(n, 3);
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter().any(|t| t.ends_with(
                "b.yaml:2:31: step `a` (play): `next` goes to `zz`, which is not a step"
            )),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("c.yml:") && t.contains("YAML syntax error")),
            "{text:#?}"
        );
        let (n, d) = validate_paths(&[flows.join("a.yaml"), flows.join("missing.yaml")], &opts);
        assert_eq!(n, 2);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.starts_with("cannot read flow file"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn big_flows_do_not_overflow() {
        // A 20k-step chain: graph checks must be iterative.
        let mut y = String::from("steps:\n");
        for i in 0..20_000 {
            y.push_str(&format!("  s{i}: {{ goto: s{} }}\n", i + 1));
        }
        y.push_str("  s20000: { hangup: {} }\n");
        let flow = load_flow_str(Path::new("big.yaml"), &y).unwrap();
        let d = validate(
            &flow,
            &ValidateOptions {
                prompts_dir: PathBuf::from("."),
            },
        );
        assert!(d.is_empty(), "{:?}", d.first());
    }

    #[test]
    fn never_panics_on_any_loaded_flow() {
        // Truncations and corruptions of a good flow: whatever loads must validate
        // without panicking (dangling targets, empty graphs, odd prompts).
        let chars: Vec<char> = GOOD.chars().collect();
        let mut tried = 0;
        for cut in 0..chars.len() {
            for variant in 0..2 {
                let text: String = if variant == 0 {
                    chars[..cut].iter().collect()
                } else {
                    let mut c = chars.clone();
                    c[cut] = 'z';
                    c.into_iter().collect()
                };
                if let Ok(flow) = load_flow_str(Path::new("t.yaml"), &text) {
                    tried += 1;
                    let _ = validate(
                        &flow,
                        &ValidateOptions {
                            prompts_dir: PathBuf::from("/nonexistent"),
                        },
                    );
                }
            }
        }
        assert!(tried > 50, "only {tried} variants loaded");
    }

    /// Lenient load + validate, as `voxgate validate` does: `line:col: message`.
    fn all(yaml: &str) -> Vec<String> {
        let dir = prompts_dir();
        let loaded = load::load_flow_recovering(Path::new("t.yaml"), yaml);
        let out = check_loaded(
            &loaded,
            &ValidateOptions {
                prompts_dir: dir.clone(),
            },
        )
        .iter()
        .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
        .collect();
        let _ = std::fs::remove_dir_all(dir);
        out
    }

    #[test]
    fn load_and_semantic_errors_in_one_run() {
        let yaml = "steps:\n  greet:\n    play: [welcome]\n    next: ask\n  ask:\n    collect_digits: { prompts: [enter], into: pin, tries: three }\n    on: { success: speak, max_attempts: nowhere }\n  speak:\n    say: { value: \"${pn}\" }\n    next: bye\n  bye: { hangup: {} }\n";
        assert_eq!(all(yaml), [
            "6:59: step `ask` (collect_digits): `tries` must be a whole number, got \"three\"",
            "7:41: step `ask` (collect_digits): exit `max_attempts` goes to `nowhere`, which is not a step",
            "9:19: step `speak` (say): `value` reads variable `pn`, which nothing in this flow sets; did you mean `pin`?",
        ]);
        // `serve` still refuses it, with the load errors only.
        let d = load::load_flow_str(Path::new("t.yaml"), yaml).unwrap_err();
        assert_eq!(d.len(), 1, "{d:?}");
        let (flow, d) = load::load_flow_lenient(Path::new("t.yaml"), yaml);
        assert_eq!(d.len(), 1);
        let flow = flow.unwrap();
        let StepKind::CollectDigits(c) = &flow.step("ask").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            c.input.tries.value, 3,
            "bad field falls back to its default"
        );
    }

    #[test]
    fn unknown_step_kind_causes_no_cascade() {
        // `menu` is a placeholder: it is a real step for `next: menu`, its
        // targets keep `route` reachable, and `choice` (its `into`) counts as
        // set; the unrelated unreachable `lost` is still reported.
        let yaml = "steps:\n  greet:\n    play: [welcome]\n    next: menu\n  menu:\n    colect_digits: { prompts: [enter], into: choice }\n    on: { success: route, max_attempts: bye }\n  route:\n    say: { value: \"${choice}\" }\n    next: bye\n  bye: { hangup: {} }\n  lost: { play: [welcome], next: bye }\n";
        assert_eq!(all(yaml), [
            "6:5: step `menu`: unknown step kind `colect_digits` (did you mean `collect_digits`?); expected one of play, say, collect_digits, recognize, lookup_caller, verify_passphrase, send_code, verify_code, verify_totp, transfer, webhook, set, branch, goto, hangup",
            "12:3: step `lost` is never reached from the start step `greet`; route to it or remove it",
        ]);
        // Its own targets are still checked.
        let e = all("steps:\n  a: { plya: [welcome], next: bey }\n  bye: { hangup: {} }\n");
        assert_eq!(e, [
            "2:8: step `a`: unknown step kind `plya` (did you mean `play`?); expected one of play, say, collect_digits, recognize, lookup_caller, verify_passphrase, send_code, verify_code, verify_totp, transfer, webhook, set, branch, goto, hangup",
            "2:31: step `a`: `next` goes to `bey`, which is not a step; did you mean `bye`?",
            "3:3: step `bye` is never reached from the start step `a`; route to it or remove it",
        ]);
    }

    #[test]
    fn broken_steps_cause_no_cascade() {
        // Two kinds, a step that is not a mapping (its way out is unknown, so
        // nothing after it is called unreachable), a transfer without target
        // (not also "target is empty").
        let yaml = "steps:\n  a:\n    play: [welcome]\n    say: { value: x }\n    next: b\n  b: oops\n  c:\n    transfer: {}\n    on: { failure: d, error: d }\n  d: { hangup: {} }\n";
        assert_eq!(all(yaml), [
            "4:5: step `a` has 2 step kinds (`play`, `say`); a step does exactly one thing — split it into separate steps",
            "6:3: step `b` must be a mapping with one step kind (play, say, collect_digits, recognize, lookup_caller, verify_passphrase, send_code, verify_code, verify_totp, transfer, webhook, set, branch, goto, hangup) and `next`/`on`, got \"oops\"",
            "8:5: step `c` (transfer) needs `target:` (a SIP URI such as \"sip:agents@10.0.0.5:5060\")",
        ]);
    }

    #[test]
    fn rejected_exits_cause_no_cascade() {
        // A misspelt exit or `next:` is reported once: not also "no `success`
        // exit", "no `next:`" or "`c` is never reached".
        let yaml = "steps:\n  a:\n    collect_digits: { prompts: [enter] }\n    on: { sucess: b, max_attempts: c }\n  b: { play: [welcome], nxt: c }\n  c: { hangup: {} }\n";
        assert_eq!(all(yaml), [
            "4:11: step `a` (collect_digits): unknown exit `sucess` (did you mean `success`?); it has: success, no_input, no_match, max_attempts, error",
            "5:25: step `b` (play): unknown key `nxt` (did you mean `next`?); a step has one kind key plus next, on, description",
        ]);
        // An exit the kind does not have still leads where the author meant.
        let e = all("steps:\n  a: { play: [welcome], on: { success: b } }\n  b: { hangup: {} }\n");
        assert_eq!(
            e,
            ["2:31: step `a` (play) has no exit `success`; it has: next"]
        );
    }

    #[test]
    fn bad_branch_condition_still_checks_targets() {
        let yaml = "steps:\n  a:\n    branch:\n      - if: 'x = 1'\n        goto: nowhere\n      - else: b\n  b: { hangup: {} }\n";
        assert_eq!(all(yaml), [
            "4:13: step `a` (branch): condition \"x = 1\": unexpected `=` (use `==` to compare) at column 3; expected a name, a quoted string, a number, `(`, `!` or `exists(...)`",
            "5:15: step `a` (branch): case 1 `goto` goes to `nowhere`, which is not a step",
        ]);
        // No `else`: the cases' targets still count, and nothing else is said.
        let e = all("steps:\n  a:\n    branch:\n      - if: 'x == 1'\n        goto: b\n  b: { hangup: {} }\n");
        assert_eq!(e, ["3:5: step `a` (branch) has no `- else: <step>` case; add one so every call has somewhere to go"]);
    }

    #[test]
    fn lenient_loading_edge_cases() {
        // Not a mapping / not YAML: no flow at all.
        let (f, d) = load::load_flow_lenient(Path::new("t.yaml"), "- a\n- b\n");
        assert!(f.is_none() && d.len() == 1, "{d:?}");
        let (f, d) = load::load_flow_lenient(Path::new("t.yaml"), "steps: [\n");
        assert!(f.is_none() && d.len() == 1, "{d:?}");
        // No usable steps: only the load error.
        assert_eq!(
            all("vars: { a: '${nope}' }\nsteps: {}\n"),
            ["2:8: `steps` is empty; a flow needs at least one step"]
        );
        // A bad `start`: reachability is unknown, so not reported.
        let e = all("start: [a]\nsteps:\n  a: { hangup: {} }\n  b: { hangup: {} }\n");
        assert_eq!(e, ["1:8: `start` must be text, got a list"]);
        // A duplicate step id's targets keep their steps reachable.
        let e = all("steps:\n  a: { goto: b }\n  b: { hangup: {} }\n  a: { goto: c }\n  c: { hangup: {} }\n");
        assert_eq!(
            e,
            ["4:3: duplicate step id `a` (first defined on line 2); step ids must be unique"]
        );
        // A bad template stays a template error, not also a bad URL.
        let e = all("steps:\n  a:\n    webhook: { url: '${oops' }\n    on: { success: b, failure: b, error: b }\n  b: { hangup: {} }\n");
        assert_eq!(e.len(), 1, "{e:#?}");
        has(&e, "`url`: `${` at column 1 has no closing `}`");
    }

    #[test]
    fn misspelt_fields_cause_no_cascade() {
        // `var:`/`int:` still say which variables exist, `strat:` leaves the
        // start unknown (so `e` is not called unreachable).
        let yaml = "var: { brand: x }\nstrat: b\nsteps:\n  a: { play: [welcome], next: b }\n  b:\n    collect_digits: { prompts: [enter], int: pin }\n    on: { success: c, max_attempts: c }\n  c: { say: { value: \"${brand}${pin}${nme}\" }, next: d }\n  d: { hangup: {} }\n  e: { hangup: {} }\n";
        assert_eq!(all(yaml), [
            "1:1: the flow file: unknown field `var` (did you mean `vars`?); allowed fields: flow, description, start, max_duration, vars, steps",
            "2:1: the flow file: unknown field `strat` (did you mean `start`?); allowed fields: flow, description, start, max_duration, vars, steps",
            "6:41: step `b` (collect_digits): unknown field `int` (did you mean `into`?); allowed fields: prompts, min, max, terminator, first_digit_timeout, inter_digit_timeout, tries, no_input_prompts, invalid_prompts, barge_in, pattern, into, secret",
            "8:22: step `c` (say): `value` reads variable `nme`, which nothing in this flow sets; did you mean `now`?",
        ]);
        // `vars:` that is not a mapping: any variable may have been meant.
        let e = all(
            "vars: [a]\nsteps:\n  c: { say: { value: '${a}' }, next: d }\n  d: { hangup: {} }\n",
        );
        assert_eq!(
            e,
            ["1:7: `vars` must be a mapping of name: value, got a list"]
        );
    }

    #[test]
    fn lenient_never_panics() {
        let chars: Vec<char> = GOOD.chars().collect();
        let opts = ValidateOptions {
            prompts_dir: PathBuf::from("/nonexistent"),
        };
        let mut flows = 0;
        for cut in 0..chars.len() {
            for variant in 0..3 {
                let text: String = match variant {
                    0 => chars[..cut].iter().collect(),
                    1 => {
                        let mut c = chars.clone();
                        c[cut] = 'z';
                        c.into_iter().collect()
                    }
                    _ => {
                        let mut c = chars.clone();
                        c[cut] = ['{', ':', '-', '"', '\n', ' ', '['][cut % 7];
                        c.into_iter().collect()
                    }
                };
                let l = load::load_flow_recovering(Path::new("t.yaml"), &text);
                flows += usize::from(l.flow.is_some());
                let d = check_loaded(&l, &opts);
                let pos: Vec<Span> = d.iter().map(|d| d.span).collect();
                assert!(pos.windows(2).all(|w| w[0] <= w[1]), "sorted: {d:?}");
            }
        }
        assert!(flows > 100, "only {flows} variants recovered");
    }

    #[test]
    fn validate_paths_reports_load_and_semantic_errors_together() {
        let dir = prompts_dir();
        let flows = dir.join("flows");
        std::fs::create_dir_all(&flows).unwrap();
        std::fs::write(
            flows.join("a.yaml"),
            "steps:\n  a:\n    collect_digits: { prompts: [enter], tries: x }\n    on: { success: zz, max_attempts: b }\n  b: { hangup: {} }\n",
        )
        .unwrap();
        std::fs::write(
            flows.join("b.yaml"),
            "flow: a\nsteps:\n  s: { hangup: {}, nxt: s }\n",
        )
        .unwrap();
        let opts = ValidateOptions {
            prompts_dir: dir.clone(),
        };
        let (n, d) = validate_paths(std::slice::from_ref(&flows), &opts);
        assert_eq!(n, 2);
        let text: Vec<String> = d
            .iter()
            .map(|d| {
                let f = d.path.file_name().unwrap().to_string_lossy();
                format!("{f}:{}:{}: {}", d.span.line, d.span.col, d.message)
            })
            .collect();
        let dup = format!(
            "b.yaml:1:1: flow name `a` is also used by {}; flow names must be unique",
            flows.join("a.yaml").display()
        );
        assert_eq!(text, [
            "a.yaml:3:48: step `a` (collect_digits): `tries` must be a whole number, got \"x\"",
            "a.yaml:4:20: step `a` (collect_digits): exit `success` goes to `zz`, which is not a step",
            dup.as_str(),
            "b.yaml:3:20: step `s` (hangup): unknown key `nxt` (did you mean `next`?); a step has one kind key plus next, on, description",
        ]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn fmt_durations() {
        assert_eq!(fmt_dur(Duration::from_millis(800)), "800ms");
        assert_eq!(fmt_dur(Duration::from_secs(90)), "90s");
        assert_eq!(fmt_dur(Duration::from_secs(60)), "60s");
        assert_eq!(fmt_dur(Duration::from_secs(120)), "2m");
        assert_eq!(fmt_dur(Duration::from_millis(1500)), "1500ms");
    }
}
