//! `verify_totp`: the caller keys in an authenticator-app code. Digits are secret.

use crate::call::CallChannel;
use crate::events::{AuthMethod, AuthOutcome};
use crate::flow::model::{Exit, PromptRef, VerifyTotp};

use super::input::{collect_once, retry, Attempt, Entry, InputTries, Miss, Retried, RetryPrompts};
use super::{Abort, Ctx, Flowing};

fn auth<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: AuthOutcome, reason: &str) {
    ctx.record_auth(AuthMethod::Totp, outcome, reason);
}

struct Totp<'s> {
    step: &'s VerifyTotp,
    /// Whose secret: the account's id when the caller is known, else the caller number.
    subject: String,
}

impl<C: CallChannel> InputTries<C> for Totp<'_> {
    type Got = Entry;
    type Done = ();

    async fn collect(&self, ctx: &mut Ctx<'_, C>, prompts: &[PromptRef]) -> Result<Entry, Abort> {
        collect_once(ctx, &self.step.input, prompts, None, true).await
    }

    async fn judge(&self, ctx: &mut Ctx<'_, C>, entry: Entry) -> Result<Attempt<()>, Abort> {
        let digits = match entry {
            Entry::NoInput => return Ok(Attempt::Miss(Miss::NoInput)),
            Entry::Invalid => return Ok(Attempt::Miss(Miss::Wrong)),
            Entry::Digits(d) => d,
        };
        let window = self.step.window.value;
        let now = ctx.clock();
        match ctx
            .services
            .totp
            .verify(&self.subject, &digits, window, now)
            .await
        {
            Ok(true) => {
                auth(ctx, AuthOutcome::Passed, "totp accepted");
                Ok(Attempt::Done(()))
            }
            Ok(false) => Ok(Attempt::Miss(Miss::Wrong)),
            Err(e) => {
                let m = format!("totp verifier: {e}");
                auth(ctx, AuthOutcome::Error, &m);
                Err(Abort::Fail(m))
            }
        }
    }
}

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &VerifyTotp,
) -> Result<Flowing, Abort> {
    let input = &step.input;
    let tries = Totp {
        step,
        subject: ctx.state.totp_subject().to_string(),
    };
    match retry(ctx, input.tries.value, RetryPrompts::digits(input), &tries).await? {
        Retried::Done(()) => Ok(Flowing::Exit(Exit::Success)),
        Retried::Exhausted { last, exit } => {
            let (outcome, reason) = match last {
                Some(Miss::NoInput) | None => (AuthOutcome::NoInput, "no code entered"),
                _ => (AuthOutcome::Failed, "wrong code"),
            };
            auth(ctx, outcome, reason);
            Ok(Flowing::Exit(exit))
        }
    }
}

// --- the unit: how a `verify_totp` step is read and what it may do ---

use crate::flow::load::FieldReader;
use crate::flow::model::StepKind;

use super::unit::{auth_guessed, auth_written, digit_prompts, Build, Unit};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: auth_guessed,
    prompts: |k| match k {
        StepKind::VerifyTotp(t) => digit_prompts(&t.input),
        _ => Vec::new(),
    },
    writes: auth_written,
    check_fields: |step, f| {
        if let StepKind::VerifyTotp(t) = &step.kind {
            f.digits_in(step, &t.input);
            f.int_in("window", &t.window, 0, 3);
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
        (Exit::NoInput, "the caller enters nothing"),
        (Exit::Failure, "the code is wrong"),
    ],
    waits_for_caller: true,
    calls_backend: true,
    ..Unit::new("verify_totp", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    Some(StepKind::VerifyTotp(VerifyTotp {
        input: r.digit_input(Some(6)),
        window: r.uint_or("window", 1),
    }))
}
