//! `play`: play prompts to the end (digit barge-in keeps the key as type-ahead).

use crate::call::CallChannel;
use crate::flow::model::{Exit, Play};

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Play,
) -> Result<Flowing, Abort> {
    let prompts = ctx.render_prompts(&step.prompts)?;
    ctx.play_to_end(&prompts, step.barge_in).await?;
    Ok(Flowing::Exit(Exit::Next))
}

// --- the unit: how a `play` step is read and what it may do ---

use crate::flow::load::{FieldReader, Val};
use crate::flow::model::{BargeIn as UnitBargeIn, Play as UnitPlay, StepKind};

use super::unit::{tagged, Build, Unit};

pub(crate) const UNIT: Unit = Unit {
    prompts: |k| match k {
        StepKind::Play(p) => tagged(&[("prompts", &p.prompts)]),
        _ => Vec::new(),
    },
    exits: &[Exit::Next],
    required: &[],
    needs_next: true,
    ..Unit::new("play", Build::Reader(build))
};

const BARGE_IN: UnitBargeIn = UnitBargeIn {
    digits: true,
    speech: false,
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    // Short form: `play: [welcome, menu]` (or one name).
    let body = r.body();
    if matches!(body.val, Val::Seq(_) | Val::Str(_)) {
        let prompts = r.node_prompts(body, "play");
        return Some(StepKind::Play(UnitPlay {
            prompts,
            barge_in: BARGE_IN,
        }));
    }
    if !r.mapping() {
        return None;
    }
    let n_before = r.diag_count();
    let prompts = r.prompts("prompts");
    // A bad `prompts:` was reported already; "plays nothing" would repeat it.
    let prompts_ok = r.diag_count() == n_before;
    let barge_in = r.barge_in("barge_in", BARGE_IN);
    if prompts.is_empty() && prompts_ok {
        let msg = format!("{} plays nothing; give `prompts: [name, …]`", r.what());
        r.err(r.span(), msg);
    }
    Some(StepKind::Play(UnitPlay { prompts, barge_in }))
}
