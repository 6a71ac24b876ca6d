//! Step implementations, one file per step kind.
//!
//! A step gets a [`Ctx`] (the call, the backends, the variables, the event
//! sink and its own [`Step`]) and returns how the flow continues
//! ([`Flowing`]) or why the run must stop ([`Abort`]). Every wait goes through
//! [`Ctx::next_input`], which enforces the flow's `max_duration` and turns a
//! caller hang-up into [`Abort::HungUp`], so no step can forget either.
//! [`Abort::Fail`] is a step-level failure (backend error, bad template,
//! missing prompt): [`run_step`] turns it into an `Error` event and the step's
//! `error` exit when the flow names one, else it is a flow error carrying the
//! failure's own message.

use std::collections::VecDeque;
use std::time::Duration;

use crate::backends::Services;
use crate::call::{CallChannel, CallError, CallInput, DigitSource};
use crate::events::{AuthMethod, AuthOutcome, BargeInBy, Event, EventSink};
use crate::flow::model::{BargeIn, Exit, PromptRef, Step, StepKind};
use crate::flow::state::CallState;
use crate::flow::vars::{Scope, Vars};

pub mod branch;
pub mod collect_digits;
pub mod goto;
pub mod hangup;
pub mod input;
pub mod lookup_caller;
pub mod play;
pub mod recognize;
pub mod say;
pub mod send_code;
pub mod set;
pub mod transfer;
pub(crate) mod unit;
pub mod verify_code;
pub mod verify_passphrase;
pub mod verify_totp;
pub mod webhook;

/// Every step kind's unit, in documentation order. Loader, validator and the
/// JSON-Schema test loop over this table.
pub(crate) const UNITS: &[&unit::Unit] = &[
    &play::UNIT,
    &say::UNIT,
    &collect_digits::UNIT,
    &recognize::UNIT,
    &lookup_caller::UNIT,
    &verify_passphrase::UNIT,
    &send_code::UNIT,
    &verify_code::UNIT,
    &verify_totp::UNIT,
    &transfer::UNIT,
    &webhook::UNIT,
    &set::UNIT,
    &branch::UNIT,
    &goto::UNIT,
    &hangup::UNIT,
];

/// How the flow continues after a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Flowing {
    /// Follow this named exit of the step.
    Exit(Exit),
    /// Jump straight to a step (branch targets).
    Goto {
        /// The step id to continue at.
        target: String,
        /// Coverage label: `if#1`, `if#2`, …, `else`.
        label: String,
    },
    /// The engine hung up (hangup step).
    Hangup,
    /// The call now belongs to the transfer target.
    Transferred {
        /// The rendered target URI the call went to.
        target: String,
    },
}

/// Why a step cannot continue normally.
#[derive(Clone, Debug, PartialEq)]
pub enum Abort {
    /// The caller hung up.
    HungUp,
    /// `max_duration` of the flow ran out.
    MaxDuration,
    /// The call itself failed.
    Call(String),
    /// The step failed; take its `error` exit if it has one.
    Fail(String),
}

impl Abort {
    /// Map a call error: hang-up aborts, prompt/unsupported features fail the
    /// step, anything else is a broken call.
    pub fn from_call(e: CallError) -> Abort {
        match e {
            CallError::HungUp => Abort::HungUp,
            CallError::Prompt(..) | CallError::Unsupported(..) => Abort::Fail(e.to_string()),
            CallError::Failed(m) => Abort::Call(m),
        }
    }
}

/// Everything a step may touch.
pub struct Ctx<'a, C: CallChannel> {
    /// The live (or scripted) call; steps reach it only through the `Ctx`
    /// helpers when a wait is involved, so the deadline and hang-up apply.
    pub call: &'a mut C,
    /// The backends (directory, codes, TOTP, passphrase, webhook).
    pub services: &'a Services,
    /// Where the step's events go; never give it a secret.
    pub sink: &'a mut dyn EventSink,
    /// The flow's own variables.
    pub vars: &'a mut Vars,
    /// What the engine knows about the call; flows only read it.
    pub state: &'a mut CallState,
    /// The step being run (its id, exits and kind-specific fields).
    pub step: &'a Step,
    /// Absolute call time at which the flow's `max_duration` runs out.
    pub deadline: Option<Duration>,
    /// Digits pressed during a barge-in prompt, kept for the next digit collection.
    pub typeahead: &'a mut VecDeque<(char, DigitSource)>,
}

impl<C: CallChannel> Ctx<'_, C> {
    /// The running step's id, for events and logs.
    pub fn id(&self) -> &str {
        &self.step.id.value
    }

    /// Note that the caller cut the prompt short (an event; the prompt is
    /// already stopped).
    fn barged_in(&mut self, by: BargeInBy) {
        let step = self.id().to_string();
        self.emit(Event::BargeIn { step, by });
    }

    /// The call's wall clock: when it was answered plus the time since (the
    /// virtual time in `voxgate test`). Backends get this, never a clock of
    /// their own, so code TTLs and TOTP steps are testable on virtual time.
    pub fn clock(&self) -> std::time::SystemTime {
        self.call.info().answered_at + self.call.elapsed()
    }

    /// Send an event to the run's sink.
    pub fn emit(&mut self, ev: Event) {
        self.sink.emit(ev);
    }

    /// What templates and conditions of this step read.
    pub fn scope(&self) -> Scope<'_> {
        Scope::new(self.state, self.vars)
    }

    /// Whether the flow names this exit for the step (optional exits such as
    /// `error` or `expired` change what a step does when they are absent).
    pub fn has_exit(&self, e: Exit) -> bool {
        self.step.exits.contains_key(&e)
    }

    /// Wait for the next input, bounded by `timeout` and the flow deadline.
    /// A hang-up (as input or as error) becomes [`Abort::HungUp`].
    pub async fn next_input(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<CallInput>, Abort> {
        let mut capped = false;
        let timeout = match self.deadline {
            Some(deadline) => {
                let left = deadline.saturating_sub(self.call.elapsed());
                if left.is_zero() {
                    return Err(Abort::MaxDuration);
                }
                match timeout {
                    Some(t) if t < left => Some(t),
                    _ => {
                        capped = true;
                        Some(left)
                    }
                }
            }
            None => timeout,
        };
        match self.call.next_input(timeout).await {
            Ok(Some(CallInput::HungUp)) => Err(Abort::HungUp),
            Ok(None) if capped => Err(Abort::MaxDuration),
            Ok(other) => Ok(other),
            Err(e) => Err(Abort::from_call(e)),
        }
    }

    /// Render prompt references (templates allowed, secrets refused).
    pub fn render_prompts(&self, prompts: &[PromptRef]) -> Result<Vec<String>, Abort> {
        prompts
            .iter()
            .map(|p| {
                self.scope()
                    .render_public(&p.value)
                    .map_err(|e| Abort::Fail(format!("prompt `{}`: {e}", p.value)))
            })
            .collect()
    }

    /// Start rendered prompts and return at once; the caller waits for
    /// `PlaybackDone` itself (see [`Ctx::play_to_end`] for the usual case).
    pub async fn play(&mut self, prompts: &[String]) -> Result<(), Abort> {
        self.call.play(prompts).await.map_err(Abort::from_call)
    }

    /// Play prompts to the end. With `barge_in_digits` a key press stops the
    /// playback and is kept as type-ahead for the next digit collection;
    /// without it key presses during the prompt are dropped.
    pub async fn play_to_end(
        &mut self,
        prompts: &[String],
        barge_in: BargeIn,
    ) -> Result<(), Abort> {
        if prompts.is_empty() {
            return Ok(());
        }
        self.play(prompts).await?;
        // Speech barge-in needs only voice activity, no recogniser.
        let voice = barge_in.speech && self.call.start_voice_detection().await.is_ok();
        let res = self.wait_playback(barge_in, voice).await;
        if voice {
            self.call.stop_recognition().await;
        }
        res
    }

    async fn wait_playback(&mut self, barge_in: BargeIn, voice: bool) -> Result<(), Abort> {
        loop {
            match self.next_input(None).await? {
                Some(CallInput::PlaybackDone) => return Ok(()),
                Some(CallInput::Digit { digit, source }) if barge_in.digits => {
                    self.call.stop_playback().await;
                    self.typeahead.push_back((digit, source));
                    self.barged_in(BargeInBy::Digit);
                    return Ok(());
                }
                // The caller talks over the prompt: stop it (the words are
                // not recognised; the next input step listens afresh).
                Some(CallInput::SpeechStarted) if voice => {
                    self.call.stop_playback().await;
                    self.barged_in(BargeInBy::Speech);
                    return Ok(());
                }
                // Other inputs (digits without barge-in, stray speech events) are ignored.
                Some(_) => {}
                None => return Err(Abort::Call("no input and no timeout while playing".into())),
            }
        }
    }

    /// Emit an `Auth` event and record the attempt in the call state (read
    /// back as `auth.result`, `auth.method`, `auth.reason`).
    pub fn record_auth(&mut self, method: AuthMethod, outcome: AuthOutcome, reason: &str) {
        self.state.record_auth(method, outcome, reason);
        let step = self.id().to_string();
        self.emit(Event::Auth {
            step,
            method,
            outcome,
            reason: reason.to_string(),
        });
    }

    /// Record the attempts used by an input step in `attempts`.
    pub fn set_attempts(&mut self, n: u32) {
        self.vars.set_attempts(n);
    }
}

/// Run one step and map step failures to its `error` exit.
pub async fn run_step<C: CallChannel>(ctx: &mut Ctx<'_, C>) -> Result<Flowing, Abort> {
    let step = ctx.step;
    let res = match &step.kind {
        StepKind::Play(s) => play::run(ctx, s).await,
        StepKind::Say(s) => say::run(ctx, s).await,
        StepKind::CollectDigits(s) => collect_digits::run(ctx, s).await,
        StepKind::Recognize(s) => recognize::run(ctx, s).await,
        StepKind::LookupCaller(s) => lookup_caller::run(ctx, s).await,
        StepKind::VerifyPassphrase(s) => verify_passphrase::run(ctx, s).await,
        StepKind::SendCode(s) => send_code::run(ctx, s).await,
        StepKind::VerifyCode(s) => verify_code::run(ctx, s).await,
        StepKind::VerifyTotp(s) => verify_totp::run(ctx, s).await,
        StepKind::Transfer(s) => transfer::run(ctx, s).await,
        StepKind::Webhook(s) => webhook::run(ctx, s).await,
        StepKind::Set(s) => set::run(ctx, s).await,
        StepKind::Branch(s) => branch::run(ctx, s).await,
        StepKind::Goto => goto::run(ctx).await,
        StepKind::Hangup(s) => hangup::run(ctx, s).await,
    };
    match res {
        // Only when the flow names an `error` exit; otherwise the failure
        // itself (not "no target for error") is the flow error.
        Err(Abort::Fail(message)) if step.exits.contains_key(&Exit::Error) => {
            tracing::warn!(step = %step.id.value, %message, "step failed; taking its error exit");
            ctx.emit(Event::Error {
                step: step.id.value.clone(),
                message,
            });
            Ok(Flowing::Exit(Exit::Error))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
