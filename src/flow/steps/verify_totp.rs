//! `verify_totp`: the caller keys in an authenticator-app code. Digits are secret.

use crate::call::CallChannel;
use crate::events::{AuthMethod, AuthOutcome};
use crate::flow::model::{Exit, VerifyTotp};

use super::input::{collect_once, Entry, Miss, Tries};
use super::{Abort, Ctx, Flowing};

fn auth<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: AuthOutcome, reason: &str) {
    ctx.record_auth(AuthMethod::Totp, outcome, reason);
}

pub async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &VerifyTotp,
) -> Result<Flowing, Abort> {
    let input = &step.input;
    // Whose secret: the account's id when the caller is known, else the caller number.
    let subject = ctx.state.totp_subject().to_string();
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
        let entry = collect_once(ctx, input, &prompts, None, true).await?;
        ctx.set_attempts(tries.used());
        let digits = match entry {
            Entry::NoInput => {
                tries.miss(Miss::NoInput);
                continue;
            }
            Entry::Invalid => {
                tries.miss(Miss::Wrong);
                continue;
            }
            Entry::Digits(d) => d,
        };
        match ctx
            .services
            .totp
            .verify(&subject, &digits, step.window.value)
            .await
        {
            Ok(true) => {
                auth(ctx, AuthOutcome::Passed, "totp accepted");
                return Ok(Flowing::Exit(Exit::Success));
            }
            Ok(false) => tries.miss(Miss::Wrong),
            Err(e) => {
                let m = format!("totp verifier: {e}");
                auth(ctx, AuthOutcome::Error, &m);
                return Err(Abort::Fail(m));
            }
        }
    }
    let (outcome, reason) = match tries.last() {
        Some(Miss::NoInput) | None => (AuthOutcome::NoInput, "no code entered"),
        _ => (AuthOutcome::Failed, "wrong code"),
    };
    auth(ctx, outcome, reason);
    Ok(Flowing::Exit(tries.exhausted_exit(ctx)))
}
