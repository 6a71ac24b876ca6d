//! `set`: assign variables from templates. A value built from a secret may only
//! go into a secret variable (`secret.*` and the reserved names); copying it
//! into a plain variable is refused, as the validator does statically.

use crate::call::CallChannel;
use crate::flow::model::{Exit, Set};
use crate::flow::vars::is_reserved_secret;

use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(ctx: &mut Ctx<'_, C>, step: &Set) -> Result<Flowing, Abort> {
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
