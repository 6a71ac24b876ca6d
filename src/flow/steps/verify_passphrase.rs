//! `verify_passphrase`: the caller speaks their passphrase; the backend judges it.
//! The transcript is a secret: it goes to the verifier only, never to events or variables.

use crate::call::CallChannel;
use crate::call::RecognitionSpec;
use crate::events::{AuthMethod, AuthOutcome, Event};
use crate::flow::model::{BargeIn, Exit, PromptRef, VerifyPassphrase};

use super::input::{
    listen_once, retry, spec, Attempt, InputTries, Listened, Miss, Retried, RetryPrompts,
};
use super::{Abort, Ctx, Flowing};

fn auth<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: AuthOutcome, reason: &str) {
    ctx.record_auth(AuthMethod::Passphrase, outcome, reason);
}

struct Passphrase {
    spec: RecognitionSpec,
    /// Who the passphrase belongs to: the account's phone, else the caller number.
    who: String,
}

impl<C: CallChannel> InputTries<C> for Passphrase {
    type Got = Listened;
    type Done = ();

    async fn collect(
        &self,
        ctx: &mut Ctx<'_, C>,
        prompts: &[PromptRef],
    ) -> Result<Listened, Abort> {
        let barge_in = BargeIn {
            digits: false,
            speech: true,
        };
        match listen_once(ctx, prompts, &self.spec, barge_in).await {
            Err(Abort::Fail(m)) => {
                auth(ctx, AuthOutcome::Error, &m);
                Err(Abort::Fail(m))
            }
            other => other,
        }
    }

    async fn judge(&self, ctx: &mut Ctx<'_, C>, heard: Listened) -> Result<Attempt<()>, Abort> {
        let r = match heard {
            Listened::NoSpeech => return Ok(Attempt::Miss(Miss::NoInput)),
            Listened::Speech(r) => r,
        };
        let matched = match ctx.services.passphrase.verify(&self.who, &r.text).await {
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
            return Ok(Attempt::Done(()));
        }
        Ok(Attempt::Miss(Miss::Wrong))
    }
}

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &VerifyPassphrase,
) -> Result<Flowing, Abort> {
    let tries = Passphrase {
        spec: spec(&step.timers, Vec::new(), false, None),
        who: ctx.state.passphrase_subject().to_string(),
    };
    let prompts = RetryPrompts {
        main: &step.prompts,
        no_input: &step.no_input_prompts,
        invalid: &step.retry_prompts,
    };
    match retry(ctx, step.tries.value, prompts, &tries).await? {
        Retried::Done(()) => Ok(Flowing::Exit(Exit::Success)),
        Retried::Exhausted { last, exit } => {
            let (outcome, reason) = match last {
                Some(Miss::Wrong) | Some(Miss::Invalid) => {
                    (AuthOutcome::Failed, "passphrase did not match")
                }
                Some(Miss::NoInput) | None => (AuthOutcome::NoInput, "no speech"),
            };
            auth(ctx, outcome, reason);
            Ok(Flowing::Exit(exit))
        }
    }
}

// --- the unit: how a `verify_passphrase` step is read and what it may do ---

use crate::flow::load::FieldReader;
use crate::flow::model::StepKind;

use super::unit::{auth_guessed, auth_written, tagged, Build, Unit};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: auth_guessed,
    prompts: |k| match k {
        StepKind::VerifyPassphrase(p) => tagged(&[
            ("prompts", &p.prompts),
            ("no_input_prompts", &p.no_input_prompts),
            ("retry_prompts", &p.retry_prompts),
        ]),
        _ => Vec::new(),
    },
    writes: auth_written,
    check_fields: |step, f| {
        if let StepKind::VerifyPassphrase(p) = &step.kind {
            f.speech_in(&p.timers);
            f.int_in("tries", &p.tries, 1, 10);
        }
    },
    exits: &[
        Exit::Success,
        Exit::Failure,
        Exit::NoInput,
        Exit::MaxAttempts,
        Exit::Error,
    ],
    required: &[Exit::Success],
    fallbacks: &[
        (Exit::NoInput, "the caller says nothing"),
        (Exit::Failure, "the passphrase does not match"),
    ],
    waits_for_caller: true,
    calls_backend: true,
    ..Unit::new("verify_passphrase", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    let prompts = r.prompts("prompts");
    let tries = r.uint_or("tries", 2);
    Some(StepKind::VerifyPassphrase(VerifyPassphrase {
        prompts,
        timers: r.speech_timers(10),
        tries,
        no_input_prompts: r.prompts("no_input_prompts"),
        retry_prompts: r.prompts("retry_prompts"),
    }))
}
