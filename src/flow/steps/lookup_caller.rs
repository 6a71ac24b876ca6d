//! `lookup_caller`: find the account for a number. The engine keeps it in the
//! call state; flows read its fields as `account.<field>`.

use std::time::Instant;

use tracing::info;

use crate::backends::LookupQuery;
use crate::call::identity::ANONYMOUS;
use crate::call::CallChannel;
use crate::events::{Event, LookupResult};
use crate::flow::model::{Exit, LookupCaller};
use crate::phone;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &LookupCaller,
) -> Result<Flowing, Abort> {
    let (number, _) = ctx
        .scope()
        .render_internal(&step.number.value)
        .map_err(|e| Abort::Fail(format!("number: {e}")))?;
    // A withheld caller ID has no account: no query is made for it.
    if number.trim().is_empty() || number == ANONYMOUS {
        info!(
            step = ctx.id(),
            "no caller number to look up (withheld); no lookup made"
        );
        return Ok(not_found(ctx, "", 0));
    }
    let Some(e164) = phone::for_lookup(&number, ctx.services.default_country) else {
        info!(
            step = ctx.id(),
            "the number to look up is not a phone number; no lookup made"
        );
        return Ok(not_found(ctx, "", 0));
    };
    let info = ctx.call.info();
    let query = LookupQuery {
        number: e164,
        brand: info.brand.clone(),
        directory: info.directory.clone(),
    };
    let directory = query.directory.as_deref().unwrap_or("default").to_string();
    let started = Instant::now();
    let answer = ctx.services.directory.lookup(&query).await;
    let micros = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
    match answer {
        Ok(Some(account)) => {
            ctx.state.found_account(account);
            emit(ctx, LookupResult::Found, &directory, micros);
            Ok(Flowing::Exit(Exit::Found))
        }
        Ok(None) => Ok(not_found(ctx, &directory, micros)),
        Err(e) => {
            ctx.state.forget_account();
            emit(ctx, LookupResult::Error, &directory, micros);
            Err(Abort::Fail(format!("caller directory: {e}")))
        }
    }
}

/// No account: a second lookup that misses (a keyed number) must not leave
/// the first one's account in `account.*`.
fn not_found<C: CallChannel>(ctx: &mut Ctx<'_, C>, directory: &str, micros: u64) -> Flowing {
    ctx.state.forget_account();
    emit(ctx, LookupResult::NotFound, directory, micros);
    Flowing::Exit(Exit::NotFound)
}

fn emit<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: LookupResult, directory: &str, micros: u64) {
    let ev = Event::Lookup {
        step: ctx.id().to_string(),
        outcome,
        trust: ctx.state.trust().as_str(),
        directory: directory.to_string(),
        micros,
    };
    ctx.emit(ev);
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
