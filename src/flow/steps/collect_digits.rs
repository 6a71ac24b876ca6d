//! `collect_digits`: read digits into a variable (see `input` for the semantics).
//! With `secret: true` the digits are never in events and the variable is masked.

use crate::call::CallChannel;
use crate::flow::model::{CollectDigits, Exit};

use super::input::{anchored, collect_once, Entry, Miss, Tries};
use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &CollectDigits,
) -> Result<Flowing, Abort> {
    let pattern = step
        .pattern
        .as_ref()
        .map(|p| anchored(&p.value))
        .transpose()?;
    let input = &step.input;
    let mut tries = Tries::new(input.tries.value);
    while tries.start_try() {
        let prompts: Vec<_> = tries
            .prompts(
                &input.prompts,
                &input.no_input_prompts,
                &input.invalid_prompts,
            )
            .into_iter()
            .cloned()
            .collect();
        let entry = collect_once(ctx, input, &prompts, pattern.as_ref(), step.secret).await?;
        ctx.set_attempts(tries.used());
        match entry {
            Entry::Digits(d) => {
                ctx.vars
                    .set(&step.into.value, &d, step.secret)
                    .map_err(|e| Abort::Fail(e.to_string()))?;
                return Ok(Flowing::Exit(Exit::Success));
            }
            Entry::NoInput => tries.miss(Miss::NoInput),
            Entry::Invalid => tries.miss(Miss::Invalid),
        }
    }
    Ok(Flowing::Exit(tries.exhausted_exit(ctx)))
}
