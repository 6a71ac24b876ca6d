//! `set`: assign variables from templates. A value built from a secret may only
//! go into a secret variable (`secret.*` and the reserved names); copying it
//! into a plain variable is refused, as the validator does statically.

use crate::call::CallChannel;
use crate::flow::model::{Exit, Set};
use crate::flow::vars::is_reserved_secret;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Set,
) -> Result<Flowing, Abort> {
    for (name, t) in &step.vars {
        let (value, secret) = ctx
            .scope()
            .render_internal(&t.value)
            .map_err(|e| Abort::Fail(format!("set `{}`: {e}", name.value)))?;
        if secret && !is_reserved_secret(&name.value) {
            return Err(Abort::Fail(format!(
                "set `{}`: refusing to copy a secret into a plain variable (use `secret.{}`)",
                name.value, name.value
            )));
        }
        ctx.vars
            .set(&name.value, &value, secret)
            .map_err(|e| Abort::Fail(format!("set `{}`: {e}", name.value)))?;
    }
    Ok(Flowing::Exit(Exit::Next))
}

// --- the unit: how a `set` step is read and what it may do ---

use crate::flow::load::{FieldReader, Val};
use crate::flow::model::StepKind;

use super::unit::{Build, Read, Sink, Unit, Written};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: |_, keys| keys.iter().map(|k| Written::Exact(k.clone())).collect(),
    reads: |k| match k {
        StepKind::Set(s) => s
            .vars
            .iter()
            .map(|(k, val)| Read::new(format!("`{}`", k.value), val, Sink::SetValue))
            .collect(),
        _ => Vec::new(),
    },
    writes: |k| match k {
        StepKind::Set(s) => s
            .vars
            .iter()
            .map(|(k, _)| Written::Exact(k.value.clone()))
            .collect(),
        _ => Vec::new(),
    },
    exits: &[Exit::Next],
    needs_next: true,
    ..Unit::new("set", Build::Reader(build))
};

/// `set:` takes any variable names as keys (so it declares no fields).
fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    let body = r.body();
    if !matches!(body.val, Val::Map(_)) {
        let msg = format!(
            "{} must be a mapping of variable: value (e.g. {{ tries_left: 2 }}), got {}",
            r.what(),
            body.shown()
        );
        r.err(body.span, msg);
        return None;
    }
    let vars = r.node_template_map(body, "set");
    for (k, _) in &vars {
        if !r.is_var_name(&k.value) {
            let msg = format!(
                "{}: `{}` is not a variable name; use letters, digits, `_` and dots",
                r.what(),
                k.value
            );
            r.err(k.span, msg);
        }
    }
    r.refuse_engine_writes(&vars);
    Some(StepKind::Set(Set { vars }))
}
