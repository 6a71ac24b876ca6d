//! `lookup_caller`: find the account for a number. The engine keeps it in the
//! call state; flows read its fields as `account.<field>`.

use crate::call::CallChannel;
use crate::flow::model::{Exit, LookupCaller};

use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &LookupCaller,
) -> Result<Flowing, Abort> {
    let (number, _) = ctx
        .scope()
        .render_internal(&step.number.value)
        .map_err(|e| Abort::Fail(format!("number: {e}")))?;
    match ctx.services.directory.lookup(&number).await {
        Ok(Some(account)) => {
            ctx.state.found_account(account);
            Ok(Flowing::Exit(Exit::Found))
        }
        Ok(None) => Ok(Flowing::Exit(Exit::NotFound)),
        Err(e) => Err(Abort::Fail(format!("caller directory: {e}"))),
    }
}
