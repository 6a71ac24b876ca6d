//! `verify_code`: the caller keys in the code sent by `send_code`.
//!
//! Each try's digits go to the code backend: ok → `success`; wrong → retry
//! with the invalid prompts; burnt by the backend → `failure`; expired →
//! `expired` (else `failure`, else `max_attempts`, as the flow names them); entries shorter than `min` count as wrong without asking the
//! backend. Entered digits are always secret.

use crate::call::CallChannel;
use crate::events::{AuthMethod, AuthOutcome};
use crate::flow::model::{Exit, VerifyCode};
use crate::flow::services::CodeCheck;

use super::input::{collect_once, Entry, Miss, Tries};
use super::{Abort, Ctx, Flowing};

/// The method is the channel the pending code went out on (SMS when none was sent).
fn auth<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: AuthOutcome, reason: &str) {
    let method = ctx.state.code().map_or(AuthMethod::SmsCode, |c| c.method());
    ctx.record_auth(method, outcome, reason);
}

pub async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &VerifyCode,
) -> Result<Flowing, Abort> {
    let input = &step.input;
    let call_id = ctx.state.call_id().to_string();
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
        match ctx.services.codes.verify(&call_id, &digits).await {
            Ok(CodeCheck::Ok) => {
                auth(ctx, AuthOutcome::Passed, "code accepted");
                return Ok(Flowing::Exit(Exit::Success));
            }
            Ok(CodeCheck::Wrong) => tries.miss(Miss::Wrong),
            Ok(CodeCheck::Exhausted) => {
                auth(ctx, AuthOutcome::Failed, "code attempts used up");
                return Ok(Flowing::Exit(Exit::Failure));
            }
            Ok(CodeCheck::Expired) => {
                auth(ctx, AuthOutcome::Expired, "code expired");
                // Without an `expired` exit an expired code is a failure.
                let exit = [Exit::Expired, Exit::Failure]
                    .into_iter()
                    .find(|e| ctx.has_exit(*e))
                    .unwrap_or(Exit::MaxAttempts);
                return Ok(Flowing::Exit(exit));
            }
            Ok(CodeCheck::NotSent) => {
                let m = "no code was sent on this call".to_string();
                auth(ctx, AuthOutcome::Error, &m);
                return Err(Abort::Fail(m));
            }
            Err(e) => {
                let m = format!("code service: {e}");
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
