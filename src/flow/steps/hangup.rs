//! `hangup`: end the call from our side.

use crate::call::CallChannel;
use crate::events::{Event, HangupBy};
use crate::flow::model::Hangup;

use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(ctx: &mut Ctx<'_, C>, step: &Hangup) -> Result<Flowing, Abort> {
    if let Some(reason) = &step.reason {
        tracing::info!(step = %ctx.id(), %reason, "flow hangs up");
    }
    ctx.call.hangup().await;
    let id = ctx.id().to_string();
    ctx.emit(Event::HungUp {
        by: HangupBy::Engine,
        step: id,
    });
    Ok(Flowing::Hangup)
}
