//! `goto`: continue at the step named by its `next` exit.

use crate::call::CallChannel;
use crate::flow::model::Exit;

use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(_ctx: &mut Ctx<'_, C>) -> Result<Flowing, Abort> {
    Ok(Flowing::Exit(Exit::Next))
}
