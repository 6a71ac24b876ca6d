//! `lookup_caller`: find the account for a number. The engine keeps it in the
//! call state; flows read its fields as `account.<field>`.

use crate::call::CallChannel;
use crate::flow::model::{Exit, LookupCaller};

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
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

// --- the unit: how a `lookup_caller` step is read and what it may do ---

use crate::flow::load::FieldReader;
use crate::flow::model::{Spanned, StepKind};

use super::unit::{Build, Read, Sink, Unit, Written};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: |_, _| vec![Written::Prefix("account.".into())],
    reads: |k| match k {
        StepKind::LookupCaller(l) => vec![Read::new("`number`", &l.number, Sink::Internal)],
        _ => Vec::new(),
    },
    writes: |_| vec![Written::Prefix("account.".into())],
    exits: &[Exit::Found, Exit::NotFound, Exit::Error],
    required: &[Exit::Found, Exit::NotFound],
    calls_backend: true,
    ..Unit::new("lookup_caller", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    let span = r.span();
    let number = r
        .template("number")
        .unwrap_or_else(|| Spanned::new("${caller}".into(), span));
    Some(StepKind::LookupCaller(LookupCaller { number }))
}
