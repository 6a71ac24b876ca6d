//! `verify_passphrase`: the caller speaks their passphrase; the backend judges it.
//! The transcript is a secret: it goes to the verifier only, never to events or variables.

use crate::call::CallChannel;
use crate::events::{AuthMethod, AuthOutcome, Event};
use crate::flow::model::{BargeIn, Exit, VerifyPassphrase};

use super::input::{listen_once, spec, Listened, Miss, Tries};
use super::{Abort, Ctx, Flowing};

fn auth<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: AuthOutcome, reason: &str) {
    ctx.record_auth(AuthMethod::Passphrase, outcome, reason);
}

pub async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &VerifyPassphrase,
) -> Result<Flowing, Abort> {
    let spec = spec(&step.timers, Vec::new(), false, None);
    let barge_in = BargeIn {
        digits: false,
        speech: true,
    };
    // Who the passphrase belongs to: the account's phone, else the caller number.
    let who = ctx.state.passphrase_subject().to_string();
    let mut tries = Tries::new(step.tries.value);
    while tries.start_try() {
        let prompts: Vec<_> = tries
            .prompts(&step.prompts, &step.no_input_prompts, &step.retry_prompts)
            .into_iter()
            .cloned()
            .collect();
        let heard = match listen_once(ctx, &prompts, &spec, barge_in).await {
            Err(Abort::Fail(m)) => {
                auth(ctx, AuthOutcome::Error, &m);
                return Err(Abort::Fail(m));
            }
            other => other?,
        };
        ctx.set_attempts(tries.used());
        let r = match heard {
            Listened::NoSpeech => {
                tries.miss(Miss::NoInput);
                continue;
            }
            Listened::Speech(r) => r,
        };
        let matched = match ctx.services.passphrase.verify(&who, &r.text).await {
            Ok(m) => m,
            Err(e) => {
                let m = format!("passphrase verifier: {e}");
                auth(ctx, AuthOutcome::Error, &m);
                return Err(Abort::Fail(m));
            }
        };
        let id = ctx.id().to_string();
        ctx.emit(Event::Recognition {
            step: id,
            confidence: r.confidence,
            matched,
            words: r.text.split_whitespace().count(),
        });
        if matched {
            auth(ctx, AuthOutcome::Passed, "passphrase matched");
            return Ok(Flowing::Exit(Exit::Success));
        }
        tries.miss(Miss::Wrong);
    }
    let exit = tries.exhausted_exit(ctx);
    let (outcome, reason) = match tries.last() {
        Some(Miss::Wrong) | Some(Miss::Invalid) => {
            (AuthOutcome::Failed, "passphrase did not match")
        }
        Some(Miss::NoInput) | None => (AuthOutcome::NoInput, "no speech"),
    };
    auth(ctx, outcome, reason);
    Ok(Flowing::Exit(exit))
}
