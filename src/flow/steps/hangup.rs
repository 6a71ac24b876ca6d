//! `hangup`: end the call from our side.

use crate::call::CallChannel;
use crate::events::{Event, HangupBy};
use crate::flow::model::Hangup;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Hangup,
) -> Result<Flowing, Abort> {
    if let Some(reason) = &step.reason {
        tracing::info!(step = %ctx.id(), %reason, "flow hangs up");
    }
    // The caller may have left already (a bridged transfer they ended).
    let by = if ctx.call.ended_by_caller() {
        HangupBy::Caller
    } else {
        HangupBy::Engine
    };
    ctx.call.hangup().await;
    let id = ctx.id().to_string();
    ctx.emit(Event::HungUp { by, step: id });
    Ok(Flowing::Hangup)
}

// --- the unit: how a `hangup` step is read and what it may do ---

use crate::flow::load::{FieldReader, Val};
use crate::flow::model::StepKind;

use super::unit::{Build, Unit};

pub(crate) const UNIT: Unit = Unit {
    ends_call: true,
    ..Unit::new("hangup", Build::Reader(build))
};

/// `hangup: {}`, `hangup: { reason: done }` or `hangup: done`.
fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if let Val::Str(s) = &r.body().val {
        return Some(StepKind::Hangup(Hangup {
            reason: Some(s.clone()),
        }));
    }
    if !r.mapping() {
        return None;
    }
    let reason = r.string("reason").map(|s| s.value);
    Some(StepKind::Hangup(Hangup { reason }))
}
