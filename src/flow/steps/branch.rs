//! `branch`: the first `if` whose condition holds wins, else `else`.
//! Conditions may compare secrets; only the chosen label is recorded.

use crate::call::CallChannel;
use crate::flow::expr::Condition;
use crate::flow::model::Branch;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Branch,
) -> Result<Flowing, Abort> {
    for (i, (cond, target)) in step.cases.iter().enumerate() {
        let parsed = Condition::parse(&cond.value)
            .map_err(|e| Abort::Fail(format!("condition `{}`: {e}", cond.value)))?;
        let holds = ctx
            .scope()
            .eval(&parsed)
            .map_err(|e| Abort::Fail(format!("condition `{}`: {e}", cond.value)))?;
        if holds {
            return Ok(Flowing::Goto {
                target: target.value.clone(),
                label: format!("if#{}", i + 1),
            });
        }
    }
    Ok(Flowing::Goto {
        target: step.otherwise.value.clone(),
        label: "else".into(),
    })
}

// --- the unit: how a `branch` step is read and what it may do ---

use crate::flow::load::{FieldReader, Val};
use crate::flow::model::{Spanned, StepId, StepKind};

use super::unit::{Build, Unit};

/// No exits: the cases are the targets.
pub(crate) const UNIT: Unit = Unit::new("branch", Build::Reader(build));

/// Keys of one case.
const CASE_FIELDS: &[&str] = &["if", "goto", "else"];

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    for f in CASE_FIELDS {
        r.declare(f);
    }
    let sid = r.sid().to_string();
    let span = r.span();
    let body = r.body();
    let Val::Seq(items) = &body.val else {
        if r.recording() {
            return None;
        }
        let msg = format!("step `{sid}` (branch) must be a list of cases: `- if: <condition>` with `goto: <step>`, ending with `- else: <step>`; got {}", body.shown());
        r.err(body.span, msg);
        return None;
    };
    let mut cases = Vec::new();
    let mut otherwise: Option<Spanned<StepId>> = None;
    // An `else:` that was given but is not a step id (reported already).
    let mut bad_else = false;
    let what = format!("step `{sid}` (branch)");
    for item in items {
        let Some(f) = r.node_fields(item, &format!("{what} case"), CASE_FIELDS) else {
            continue;
        };
        if otherwise.is_some() {
            r.err(
                item.span,
                format!("{what}: a case after `else` is never tried; move `else` to the end"),
            );
            continue;
        }
        match (f.get("if"), f.get("goto"), f.get("else")) {
            (None, None, Some(e)) => match r.node_string(e, "else") {
                Some(t) => otherwise = Some(t),
                None => {
                    bad_else = true;
                    r.rec().opaque.insert(sid.clone());
                }
            },
            (Some(c), Some(g), None) => {
                let cond = r.node_string(c, "if");
                let Some(target) = r.node_string(g, "goto") else {
                    r.rec().opaque.insert(sid.clone());
                    continue;
                };
                let Some(cond) = cond else {
                    r.rec().hidden_edges.push((sid.clone(), target.value));
                    continue;
                };
                // A bad condition is reported and kept as written (the
                // validator skips conditions that do not parse), so its
                // target is still checked.
                if let Err(e) = Condition::parse(&cond.value) {
                    r.err(
                        cond.span,
                        format!("{what}: condition {:?}: {e}", cond.value),
                    );
                }
                cases.push((cond, target));
            }
            (Some(_), None, None) => {
                r.err(item.span, format!("{what}: case has `if:` but no `goto:`"))
            }
            (None, Some(_), None) => r.err(
                item.span,
                format!(
                    "{what}: case has `goto:` but no `if:`; use `- else: <step>` for the default"
                ),
            ),
            _ => r.err(
                item.span,
                format!("{what}: each case is either `if:` + `goto:` or a lone `else:`"),
            ),
        }
    }
    let Some(otherwise) = otherwise else {
        if !bad_else {
            r.err(
                span,
                format!(
                    "{what} has no `- else: <step>` case; add one so every call has somewhere to go"
                ),
            );
        }
        for (_, t) in cases {
            r.rec().hidden_edges.push((sid.clone(), t.value));
        }
        return None;
    };
    Some(StepKind::Branch(Branch { cases, otherwise }))
}
