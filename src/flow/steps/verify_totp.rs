//! `verify_totp`: the caller keys in an authenticator-app code. Digits are secret.
//!
//! The subject is the account `lookup_caller` found (never the caller's
//! number): without one, `failure` at once, without asking. Each try's
//! digits go to the TOTP verifier: accepted → `success`; wrong or already
//! used (replayed) → retry, then `failure` / `max_attempts`; locked for the
//! account or not enrolled → `failure` at once.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backends::TotpCheck;
use crate::call::CallChannel;
use crate::events::{AuthMethod, AuthOutcome};
use crate::flow::model::{Exit, PromptRef, VerifyTotp};

use super::input::{collect_once, retry, Attempt, Entry, InputTries, Miss, Retried, RetryPrompts};
use super::{Abort, Ctx, Flowing};

fn auth<C: CallChannel>(ctx: &mut Ctx<'_, C>, outcome: AuthOutcome, reason: &str) {
    ctx.record_auth(AuthMethod::Totp, outcome, reason);
}

/// `auth.reason` when the caller has no account to check against.
pub const NO_ACCOUNT: &str = "no account identified for an authenticator code";
/// `auth.reason` when the account has no TOTP secret.
pub const NOT_ENROLLED: &str = "no authenticator app enrolled for the account";
/// `auth.reason` when the last code was one already used.
pub const REPLAYED: &str = "code already used";
/// `auth.reason` when the factor is locked for the account.
pub const LOCKED: &str = "too many wrong codes for the account";

struct Totp<'s> {
    step: &'s VerifyTotp,
    /// Whose secret: the account `lookup_caller` found.
    account_id: String,
    /// The last miss was a code already used.
    replayed: AtomicBool,
}

impl<C: CallChannel> InputTries<C> for Totp<'_> {
    type Got = Entry;
    type Done = Exit;

    async fn collect(&self, ctx: &mut Ctx<'_, C>, prompts: &[PromptRef]) -> Result<Entry, Abort> {
        collect_once(ctx, &self.step.input, prompts, None, true).await
    }

    async fn judge(&self, ctx: &mut Ctx<'_, C>, entry: Entry) -> Result<Attempt<Exit>, Abort> {
        self.replayed.store(false, Ordering::Relaxed);
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
            .verify(&self.account_id, &digits, window, now)
            .await
        {
            Ok(TotpCheck::Accepted) => {
                auth(ctx, AuthOutcome::Passed, "totp accepted");
                Ok(Attempt::Done(Exit::Success))
            }
            Ok(TotpCheck::Wrong) => Ok(Attempt::Miss(Miss::Wrong)),
            Ok(TotpCheck::Replayed) => {
                self.replayed.store(true, Ordering::Relaxed);
                Ok(Attempt::Miss(Miss::Wrong))
            }
            Ok(TotpCheck::Locked) => {
                auth(ctx, AuthOutcome::Locked, LOCKED);
                Ok(Attempt::Done(Exit::Failure))
            }
            Ok(TotpCheck::NotEnrolled) => {
                auth(ctx, AuthOutcome::Failed, NOT_ENROLLED);
                Ok(Attempt::Done(Exit::Failure))
            }
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
    let Some(account_id) = ctx.state.totp_subject().map(str::to_string) else {
        auth(ctx, AuthOutcome::Failed, NO_ACCOUNT);
        return Ok(Flowing::Exit(Exit::Failure));
    };
    let input = &step.input;
    let tries = Totp {
        step,
        account_id,
        replayed: AtomicBool::new(false),
    };
    match retry(ctx, input.tries.value, RetryPrompts::digits(input), &tries).await? {
        Retried::Done(exit) => Ok(Flowing::Exit(exit)),
        Retried::Exhausted { last, exit } => {
            let (outcome, reason) = match last {
                Some(Miss::NoInput) | None => (AuthOutcome::NoInput, "no code entered"),
                _ if tries.replayed.load(Ordering::Relaxed) => (AuthOutcome::Failed, REPLAYED),
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
