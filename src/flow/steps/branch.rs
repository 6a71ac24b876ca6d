//! `branch`: the first `if` whose condition holds wins, else `else`.
//! Conditions may compare secrets; only the chosen label is recorded.

use crate::call::CallChannel;
use crate::flow::expr::Condition;
use crate::flow::model::Branch;

use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(ctx: &mut Ctx<'_, C>, step: &Branch) -> Result<Flowing, Abort> {
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
