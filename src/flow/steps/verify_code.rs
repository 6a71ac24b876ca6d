//! `verify_code`: the caller keys in the code sent by `send_code`.
//!
//! Each try's digits go to the code backend: ok → `success`; wrong → retry
//! with the invalid prompts; burnt by the backend → `failure`; expired →
//! `expired` (else `failure`, else `max_attempts`, as the flow names them); entries shorter than `min` count as wrong without asking the
//! backend. Entered digits are always secret.

use crate::backends::{CodeCheck, CodeEntry, CodeSubject};
use crate::call::CallChannel;
use crate::events::{AuthMethod, AuthOutcome};
use crate::flow::model::{Exit, PromptRef, VerifyCode};

use super::input::{collect_once, retry, Attempt, Entry, InputTries, Miss, Retried, RetryPrompts};
use super::{Abort, Ctx, Flowing};

/// The method is the channel the pending code went out on (SMS when none was sent).
fn auth<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: AuthOutcome, reason: &str) {
    let method = ctx.state.code().map_or(AuthMethod::SmsCode, |c| c.method());
    ctx.record_auth(method, outcome, reason);
}

struct Code<'s> {
    step: &'s VerifyCode,
    /// This call.
    call_id: String,
    /// Whose code is checked (from engine state, never from a variable).
    subject: CodeSubject,
}

impl<C: CallChannel> InputTries<C> for Code<'_> {
    type Got = Entry;
    type Done = Exit;

    async fn collect(&self, ctx: &mut Ctx<'_, C>, prompts: &[PromptRef]) -> Result<Entry, Abort> {
        collect_once(ctx, &self.step.input, prompts, None, true).await
    }

    async fn judge(&self, ctx: &mut Ctx<'_, C>, entry: Entry) -> Result<Attempt<Exit>, Abort> {
        let digits = match entry {
            Entry::NoInput => return Ok(Attempt::Miss(Miss::NoInput)),
            Entry::Invalid => return Ok(Attempt::Miss(Miss::Wrong)),
            Entry::Digits(d) => d,
        };
        let now = ctx.clock();
        let entry = CodeEntry {
            call_id: &self.call_id,
            subject: &self.subject,
            entered: &digits,
            now,
        };
        match ctx.services.codes.verify(entry).await {
            Ok(CodeCheck::Ok) => {
                auth(ctx, AuthOutcome::Passed, "code accepted");
                Ok(Attempt::Done(Exit::Success))
            }
            Ok(CodeCheck::Wrong) => Ok(Attempt::Miss(Miss::Wrong)),
            Ok(CodeCheck::Exhausted) => {
                auth(ctx, AuthOutcome::Failed, "code attempts used up");
                Ok(Attempt::Done(Exit::Failure))
            }
            Ok(CodeCheck::Expired) => {
                auth(ctx, AuthOutcome::Expired, "code expired");
                // Without an `expired` exit an expired code is a failure.
                let exit = [Exit::Expired, Exit::Failure]
                    .into_iter()
                    .find(|e| ctx.has_exit(*e))
                    .unwrap_or(Exit::MaxAttempts);
                Ok(Attempt::Done(exit))
            }
            Ok(CodeCheck::Locked) => {
                auth(
                    ctx,
                    AuthOutcome::Locked,
                    "too many wrong codes for the account",
                );
                Ok(Attempt::Done(Exit::Failure))
            }
            Ok(CodeCheck::NotSent) => {
                let m = "no code is pending for this caller".to_string();
                auth(ctx, AuthOutcome::Error, &m);
                Err(Abort::Fail(m))
            }
            Err(e) => {
                let m = format!("code service: {e}");
                auth(ctx, AuthOutcome::Error, &m);
                Err(Abort::Fail(m))
            }
        }
    }
}

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &VerifyCode,
) -> Result<Flowing, Abort> {
    let input = &step.input;
    let tries = Code {
        step,
        call_id: ctx.state.call_id().to_string(),
        subject: ctx.state.code_subject(),
    };
    match retry(ctx, input.tries.value, RetryPrompts::digits(input), &tries).await? {
        Retried::Done(exit) => Ok(Flowing::Exit(exit)),
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

// --- the unit: how a `verify_code` step is read and what it may do ---

use crate::flow::load::FieldReader;
use crate::flow::model::{Step, StepKind};

use super::unit::{auth_guessed, auth_written, digit_prompts, Build, Unit};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: auth_guessed,
    prompts: |k| match k {
        StepKind::VerifyCode(c) => digit_prompts(&c.input),
        _ => Vec::new(),
    },
    writes: auth_written,
    check_fields: |step, f| {
        if let StepKind::VerifyCode(c) = &step.kind {
            f.digits_in(step, &c.input);
        }
    },
    exits: &[
        Exit::Success,
        Exit::Failure,
        Exit::Expired,
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
    check_exits: expired_routed,
    ..Unit::new("verify_code", Build::Reader(build))
};

/// An expired code takes `expired`, else `failure`, else `max_attempts`.
fn expired_routed(step: &Step) -> Vec<String> {
    let has = |e: Exit| step.exits.contains_key(&e);
    if has(Exit::Expired) || has(Exit::Failure) || has(Exit::MaxAttempts) {
        return Vec::new();
    }
    vec!["does not say where to go when the code has expired; add `expired: <step>` (or `failure:`) under `on:`".into()]
}

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    Some(StepKind::VerifyCode(VerifyCode {
        input: r.digit_input(Some(6)),
    }))
}
