//! `play`: play prompts to the end (digit barge-in keeps the key as type-ahead).

use crate::call::CallChannel;
use crate::flow::model::{Exit, Play};

use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(ctx: &mut Ctx<'_, C>, step: &Play) -> Result<Flowing, Abort> {
    let prompts = ctx.render_prompts(&step.prompts)?;
    ctx.play_to_end(&prompts, step.barge_in).await?;
    Ok(Flowing::Exit(Exit::Next))
}
