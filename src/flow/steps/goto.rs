//! `goto`: continue at the step named by its `next` exit.

use crate::call::CallChannel;
use crate::flow::model::Exit;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(_ctx: &mut Ctx<'_, C>) -> Result<Flowing, Abort> {
    Ok(Flowing::Exit(Exit::Next))
}

// --- the unit: how a `goto` step is read and what it may do ---

use crate::flow::load::FieldReader;
use crate::flow::model::StepKind;

use super::unit::{Build, Unit};

/// `goto: <step>`: the target is its `next` exit (the loader puts it there).
pub(crate) const UNIT: Unit = Unit {
    exits: &[Exit::Next],
    next_in_body: true,
    ..Unit::new("goto", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    let body = r.body();
    if body.scalar_text().is_none_or(|t| t.is_empty()) {
        if r.recording() {
            return None;
        }
        let msg = format!(
            "{}: `goto` must name a step id, got {}",
            r.what(),
            body.shown()
        );
        r.err(body.span, msg);
        return None;
    }
    Some(StepKind::Goto)
}
