//! `verify_passphrase`: the caller speaks their passphrase; the backend judges it.
//! Locked or not enrolled: `failure` at once, without listening.
//! The transcript is a secret: it goes to the verifier only, never to events or variables.

use std::sync::Mutex;
use std::time::Duration;

use crate::asr::speculate::{Complete, EarlyAnswer};
use crate::asr::IncompleteWait;
use crate::backends::{Enrolment, PassphraseSubject, PassphraseVerdict};
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
    /// Whose passphrase: the account found, else the caller number.
    who: PassphraseSubject,
    /// The latest refusal (`no_match` or `low_confidence`), for the reason
    /// when the tries run out.
    last_refusal: Mutex<Option<PassphraseVerdict>>,
}

/// How the tries ended when they ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verified {
    /// The passphrase matched.
    Matched,
    /// The factor is locked: no further try.
    Locked,
}

impl<C: CallChannel> InputTries<C> for Passphrase {
    type Got = Listened;
    type Done = Verified;

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

    async fn judge(
        &self,
        ctx: &mut Ctx<'_, C>,
        heard: Listened,
    ) -> Result<Attempt<Verified>, Abort> {
        let r = match heard {
            Listened::NoSpeech => return Ok(Attempt::Miss(Miss::NoInput)),
            Listened::Speech(r) => r,
        };
        let now = ctx.clock();
        let verdict = match ctx
            .services
            .passphrase
            .verify(&self.who, &r.text, r.confidence, now)
            .await
        {
            Ok(v) => v,
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
            matched: verdict == PassphraseVerdict::Match,
            words: r.text.split_whitespace().count(),
        });
        Ok(match verdict {
            PassphraseVerdict::Match => Attempt::Done(Verified::Matched),
            // Locked by another call's failures since this step began: stop now.
            PassphraseVerdict::Locked => Attempt::Done(Verified::Locked),
            v => {
                if let Ok(mut last) = self.last_refusal.lock() {
                    *last = Some(v);
                }
                Attempt::Miss(Miss::Wrong)
            }
        })
    }
}

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &VerifyPassphrase,
) -> Result<Flowing, Abort> {
    let who = ctx.state.passphrase_subject();
    let now = ctx.clock();
    let enrolment = match ctx.services.passphrase.enrolment(&who, now).await {
        Ok(e) => e,
        Err(e) => {
            let m = format!("passphrase verifier: {e}");
            auth(ctx, AuthOutcome::Error, &m);
            return Err(Abort::Fail(m));
        }
    };
    // The enrolled phrase is the recogniser's hint (digits mode for a digit
    // string); it stays inside the engine, like the transcript.
    let (phrases, digits, complete) = match enrolment {
        Enrolment::Ready { hint, digits } => {
            let phrases = if digits || hint.is_empty() {
                Vec::new()
            } else {
                vec![hint.to_string()]
            };
            // A whole answer, decided on at the caller's first pause: the
            // enrolled number of digits, or exactly the enrolled phrase.
            let complete = if digits {
                Complete::Digits(crate::asr::phrase::tokens(&hint).len())
            } else {
                Complete::Phrase(hint)
            };
            (phrases, digits, complete)
        }
        Enrolment::Locked => return Ok(refuse(ctx, "locked")),
        Enrolment::NotEnrolled => return Ok(refuse(ctx, "not_enrolled")),
    };
    let mut spec = spec(&step.timers, phrases, digits, step.language.clone());
    // Wait longer for the rest of an answer the audio cannot hold yet (a
    // caller pausing between digits on a noisy line).
    spec.timers.incomplete = Some(IncompleteWait {
        answer: complete.length(),
        timeout: step.incomplete_timeout.value,
    });
    // A digit answer's length, so a caller who says numbers ("nineteen
    // eighty six") is read again as numbers (`asr::whisper`).
    spec.digit_answer = digits.then(|| complete.length().units);
    // A matched word phrase is confirmed by the second model when installed
    // (`asr::confirm`), on the speculative and the final decode alike.
    spec.confirm = true;
    // When configured (`passphrase.speculate_after`). Measured with Whisper
    // (the default language) only: a Vosk engine loads a model per decoding
    // thread on first use, and a speculative decode there made the Korean
    // call test miss its answer.
    if let (Some(after), None) = (ctx.services.speculate_after, &step.language) {
        spec.early = Some(EarlyAnswer { after, complete });
    }
    let tries = Passphrase {
        spec,
        who,
        last_refusal: Mutex::new(None),
    };
    let prompts = RetryPrompts {
        main: &step.prompts,
        no_input: &step.no_input_prompts,
        invalid: &step.retry_prompts,
    };
    match retry(ctx, step.tries.value, prompts, &tries).await? {
        Retried::Done(Verified::Matched) => {
            auth(ctx, AuthOutcome::Passed, "matched");
            Ok(Flowing::Exit(Exit::Success))
        }
        Retried::Done(Verified::Locked) => Ok(refuse(ctx, "locked")),
        Retried::Exhausted { last, exit } => {
            let (outcome, reason) = match last {
                Some(Miss::Wrong) | Some(Miss::Invalid) => (
                    AuthOutcome::Failed,
                    tries
                        .last_refusal
                        .lock()
                        .ok()
                        .and_then(|l| *l)
                        .map_or("no_match", PassphraseVerdict::reason),
                ),
                Some(Miss::NoInput) | None => (AuthOutcome::NoInput, "no_input"),
            };
            auth(ctx, outcome, reason);
            Ok(Flowing::Exit(exit))
        }
    }
}

/// Fail at once, without listening: `failure` with the reason (`locked`,
/// `not_enrolled`), so the flow falls back to another factor.
fn refuse<C: CallChannel>(ctx: &mut Ctx<'_, C>, reason: &str) -> Flowing {
    auth(ctx, AuthOutcome::Failed, reason);
    Flowing::Exit(Exit::Failure)
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
            f.dur_in(
                "incomplete_timeout",
                &p.incomplete_timeout,
                Duration::from_millis(200),
                Duration::from_secs(5),
            );
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
        incomplete_timeout: r.duration_or(
            "incomplete_timeout",
            0,
            u64::try_from(IncompleteWait::DEFAULT_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        ),
        tries,
        no_input_prompts: r.prompts("no_input_prompts"),
        retry_prompts: r.prompts("retry_prompts"),
        language: r.string("language").map(|s| s.value),
    }))
}
