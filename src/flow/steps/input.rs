//! Shared caller input: digit collection (FreeSWITCH `play_and_get_digits`
//! semantics) and one round of speech listening.
//!
//! Digits, one try:
//! 1. type-ahead digits (pressed during an earlier barge-in prompt) count first
//!    and skip the prompt;
//! 2. the prompt plays; with `barge_in` the first key stops it and counts,
//!    without it keys pressed during the prompt are dropped;
//! 3. then the first-digit timeout (nothing yet) or the inter-digit timeout
//!    (some digits) runs; a timeout ends the entry;
//! 4. the terminator ends the entry (and is not part of it); reaching `max`
//!    digits ends it too;
//! 5. empty entry → no input; fewer than `min` or not matching the pattern →
//!    invalid.
//!
//! Tries: a failed try is followed (if tries remain) by the `no_input_prompts`
//! or `invalid_prompts` and then the main prompts again. When tries run out the
//! step takes the specific exit for the last failure (`no_input`, `no_match`,
//! or `failure` for wrong codes) if it names it, else `max_attempts`.

use std::time::Duration;

use regex::Regex;

use crate::call::{CallChannel, CallInput, DigitSource, RecognitionSpec, SpeechResult};
use crate::events::Event;
use crate::flow::model::{BargeIn, DigitInput, Exit, PromptRef, SpeechTimers};

use super::{Abort, Ctx};

/// Result of one try of digit entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A complete entry that passed the `min` length and the pattern (the
    /// terminator is not part of it). May be a secret: never log it.
    Digits(String),
    /// Not a single key before the first-digit timeout.
    NoInput,
    /// Keys were pressed, but too few or not matching the pattern.
    Invalid,
}

/// Why a try failed (decides retry prompts and the exhausted exit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// Nothing entered or said in time — `no_input`.
    NoInput,
    /// Too short/long or pattern mismatch (collect_digits) — `no_match`.
    Invalid,
    /// A complete entry the backend rejected (codes, passphrase) — `failure`.
    Wrong,
}

/// Counts tries and picks prompts and the exhausted exit.
#[derive(Clone, Debug)]
pub struct Tries {
    total: u32,
    used: u32,
    last: Option<Miss>,
}

impl Tries {
    /// `total` tries in all; 0 counts as 1 (a step always gets one try).
    pub fn new(total: u32) -> Self {
        Tries {
            total: total.max(1),
            used: 0,
            last: None,
        }
    }

    /// Start the next try, if any remain.
    pub fn start_try(&mut self) -> bool {
        if self.used >= self.total {
            return false;
        }
        self.used += 1;
        true
    }

    /// Tries started so far (what `attempts` reads).
    pub fn used(&self) -> u32 {
        self.used
    }

    /// How the latest try failed; `None` before any miss.
    pub fn last(&self) -> Option<Miss> {
        self.last
    }

    /// Record how the current try failed (picks the next retry prompts).
    pub fn miss(&mut self, m: Miss) {
        self.last = Some(m);
    }

    /// Prompts for the current try: retry prompts for the last miss, then the main ones.
    pub fn prompts<'p>(
        &self,
        main: &'p [PromptRef],
        no_input: &'p [PromptRef],
        invalid: &'p [PromptRef],
    ) -> Vec<&'p PromptRef> {
        let lead: &[PromptRef] = match self.last {
            None => &[],
            Some(Miss::NoInput) => no_input,
            Some(Miss::Invalid) | Some(Miss::Wrong) => invalid,
        };
        lead.iter().chain(main.iter()).collect()
    }

    /// Exit once tries are used up.
    pub fn exhausted_exit<C: CallChannel>(&self, ctx: &Ctx<'_, C>) -> Exit {
        let specific = match self.last {
            Some(Miss::NoInput) | None => Exit::NoInput,
            Some(Miss::Invalid) => Exit::NoMatch,
            Some(Miss::Wrong) => Exit::Failure,
        };
        if ctx.has_exit(specific) {
            specific
        } else {
            Exit::MaxAttempts
        }
    }
}

/// What one judged try came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt<T> {
    /// The step is done with this value.
    Done(T),
    /// The try failed this way; retry if tries remain.
    Miss(Miss),
}

/// How the try loop ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Retried<T> {
    /// A try succeeded with this value.
    Done(T),
    /// Tries ran out: the last miss and the exit it leads to.
    Exhausted {
        /// How the final try failed (`None` only if no try ran).
        last: Option<Miss>,
        /// `no_input`, `no_match` or `failure` when the flow names it, else
        /// `max_attempts`.
        exit: Exit,
    },
}

/// A step's prompts: the main ones and those played before a retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPrompts<'p> {
    /// Played on every try, after any retry prompt.
    pub main: &'p [PromptRef],
    /// Played before the main prompts after a try with no input.
    pub no_input: &'p [PromptRef],
    /// After an invalid entry or a wrong answer (`invalid_prompts`,
    /// `no_match_prompts`, `retry_prompts`).
    pub invalid: &'p [PromptRef],
}

/// One input step's tries, as the shared loop ([`retry`]) drives them.
pub(crate) trait InputTries<C: CallChannel> {
    /// What one try collects (an entry, a transcript).
    type Got;
    /// What a successful try yields.
    type Done;
    /// Play `prompts` and collect the caller's answer.
    async fn collect(
        &self,
        ctx: &mut Ctx<'_, C>,
        prompts: &[PromptRef],
    ) -> Result<Self::Got, Abort>;
    /// Decide what the answer means (may ask a backend).
    async fn judge(
        &self,
        ctx: &mut Ctx<'_, C>,
        got: Self::Got,
    ) -> Result<Attempt<Self::Done>, Abort>;
}

/// The try loop every input step shares (`collect_digits`, `recognize`,
/// `verify_code`, `verify_totp`, `verify_passphrase`): up to `total` tries,
/// each collects with the prompts for that try (the retry prompts for the
/// last miss first), records `attempts`, then judges what was collected.
/// An `Err` from either ends the step at once.
pub(crate) async fn retry<C: CallChannel, S: InputTries<C>>(
    ctx: &mut Ctx<'_, C>,
    total: u32,
    prompts: RetryPrompts<'_>,
    step: &S,
) -> Result<Retried<S::Done>, Abort> {
    let mut tries = Tries::new(total);
    while tries.start_try() {
        let for_try: Vec<PromptRef> = tries
            .prompts(prompts.main, prompts.no_input, prompts.invalid)
            .into_iter()
            .cloned()
            .collect();
        let got = step.collect(ctx, &for_try).await?;
        ctx.set_attempts(tries.used());
        match step.judge(ctx, got).await? {
            Attempt::Done(v) => return Ok(Retried::Done(v)),
            Attempt::Miss(m) => tries.miss(m),
        }
    }
    Ok(Retried::Exhausted {
        last: tries.last(),
        exit: tries.exhausted_exit(ctx),
    })
}

impl<'p> RetryPrompts<'p> {
    /// The prompts of a digit input (`prompts`, `no_input_prompts`, `invalid_prompts`).
    pub fn digits(input: &'p DigitInput) -> Self {
        RetryPrompts {
            main: &input.prompts,
            no_input: &input.no_input_prompts,
            invalid: &input.invalid_prompts,
        }
    }
}

/// Compile a step's pattern anchored at both ends.
pub fn anchored(pattern: &str) -> Result<Regex, Abort> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| Abort::Fail(format!("bad pattern `{pattern}`: {e}")))
}

/// One try of digit entry. Emits a `Digits` event for any non-empty entry
/// (digit values only when `secret` is false).
pub async fn collect_once<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    input: &DigitInput,
    prompts: &[PromptRef],
    pattern: Option<&Regex>,
    secret: bool,
) -> Result<Entry, Abort> {
    let mut buf = String::new();
    let res = collect_into(ctx, input, prompts, pattern, secret, &mut buf).await;
    if matches!(res, Err(Abort::HungUp)) && !buf.is_empty() {
        // Only the length: the digits may be a secret, and were not entered.
        let step = ctx.id().to_string();
        let count = buf.chars().count();
        ctx.emit(Event::DigitsAbandoned { step, count });
    }
    res
}

/// [`collect_once`] with the entry so far in `buf`, so a hang-up can say
/// how long the abandoned entry was.
async fn collect_into<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    input: &DigitInput,
    prompts: &[PromptRef],
    pattern: Option<&Regex>,
    secret: bool,
    buf: &mut String,
) -> Result<Entry, Abort> {
    let rendered = ctx.render_prompts(prompts)?;
    let mut source = DigitSource::Script;
    let mut finished = false;

    // Pushes one key; returns true when the entry is complete.
    let push = |buf: &mut String, d: char| -> bool {
        if Some(d) == input.terminator {
            return true;
        }
        buf.push(d);
        buf.chars().count() as u32 >= input.max.max(1)
    };

    while let Some((d, src)) = ctx.typeahead.pop_front() {
        source = src;
        if push(buf, d) {
            finished = true;
            break;
        }
    }

    if buf.is_empty() && !finished && !rendered.is_empty() {
        ctx.play(&rendered).await?;
        loop {
            match ctx.next_input(None).await? {
                Some(CallInput::PlaybackDone) => break,
                Some(CallInput::Digit { digit, source: src }) if input.barge_in => {
                    ctx.call.stop_playback().await;
                    source = src;
                    finished = push(buf, digit);
                    break;
                }
                Some(_) => {}
                None => return Err(Abort::Call("no input and no timeout while playing".into())),
            }
        }
    }

    while !finished {
        let timeout = if buf.is_empty() {
            input.first_digit_timeout.value
        } else {
            input.inter_digit_timeout.value
        };
        match ctx.next_input(Some(timeout)).await? {
            None => break,
            Some(CallInput::Digit { digit, source: src }) => {
                source = src;
                finished = push(buf, digit);
            }
            Some(_) => {}
        }
    }

    if buf.is_empty() {
        return Ok(Entry::NoInput);
    }
    let count = buf.chars().count();
    let id = ctx.id().to_string();
    ctx.emit(Event::Digits {
        step: id,
        count,
        source: source.as_str(),
        digits: if secret { None } else { Some(buf.clone()) },
    });
    let too_short = (count as u32) < input.min;
    let mismatch = pattern.is_some_and(|re| !re.is_match(buf));
    if too_short || mismatch {
        Ok(Entry::Invalid)
    } else {
        Ok(Entry::Digits(buf.clone()))
    }
}

/// What one round of listening produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Listened {
    /// The recogniser's result (may be a secret, e.g. a passphrase).
    Speech(SpeechResult),
    /// Nobody spoke before the recogniser's no-input timer (or the safety
    /// net behind it) ran out.
    NoSpeech,
}

/// Play prompts and listen once. With speech barge-in recognition starts with
/// the prompt and voice activity stops it; otherwise recognition starts when
/// the prompt ends. Keys pressed are ignored (they stop the prompt only with
/// digit barge-in). Stale type-ahead is dropped.
pub async fn listen_once<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    prompts: &[PromptRef],
    spec: &RecognitionSpec,
    barge_in: BargeIn,
) -> Result<Listened, Abort> {
    ctx.typeahead.clear();
    let rendered = ctx.render_prompts(prompts)?;
    let mut playing = !rendered.is_empty();
    if playing {
        ctx.play(&rendered).await?;
    }
    let mut recognizing = false;
    if !playing || barge_in.speech {
        start(ctx, spec).await?;
        recognizing = true;
    }
    // Safety net in case a recogniser never reports: all its timers plus slack.
    let safety = spec.timers.no_input_timeout
        + spec.timers.max_duration
        + spec.timers.end_of_speech_timeout
        + Duration::from_secs(1);
    loop {
        // Counted from the end of the prompt, like the recogniser's own timers.
        let timeout = if recognizing && !playing {
            Some(safety)
        } else {
            None
        };
        match ctx.next_input(timeout).await? {
            None => {
                if playing {
                    ctx.call.stop_playback().await;
                }
                ctx.call.stop_recognition().await;
                return Ok(Listened::NoSpeech);
            }
            Some(CallInput::PlaybackDone) => {
                playing = false;
                if !recognizing {
                    start(ctx, spec).await?;
                    recognizing = true;
                }
            }
            Some(CallInput::SpeechStarted) => {
                if playing && barge_in.speech {
                    ctx.call.stop_playback().await;
                    playing = false;
                }
            }
            Some(CallInput::Digit { .. }) => {
                if playing && barge_in.digits {
                    ctx.call.stop_playback().await;
                    playing = false;
                    if !recognizing {
                        start(ctx, spec).await?;
                        recognizing = true;
                    }
                }
            }
            Some(CallInput::Speech(r)) => {
                if playing {
                    ctx.call.stop_playback().await;
                }
                ctx.call.stop_recognition().await;
                return Ok(Listened::Speech(r));
            }
            Some(CallInput::NoSpeech) => {
                if playing {
                    ctx.call.stop_playback().await;
                }
                ctx.call.stop_recognition().await;
                return Ok(Listened::NoSpeech);
            }
            Some(CallInput::RecognitionFailed(why)) => {
                if playing {
                    ctx.call.stop_playback().await;
                }
                ctx.call.stop_recognition().await;
                return Err(Abort::Fail(format!("speech recognition: {why}")));
            }
            Some(CallInput::HungUp) => return Err(Abort::HungUp),
        }
    }
}

async fn start<C: CallChannel>(ctx: &mut Ctx<'_, C>, spec: &RecognitionSpec) -> Result<(), Abort> {
    ctx.call
        .start_recognition(spec)
        .await
        .map_err(|e| match Abort::from_call(e) {
            Abort::Fail(m) => Abort::Fail(format!("speech recognition: {m}")),
            other => other,
        })
}

/// Recognition parameters from step timers.
pub fn spec(
    timers: &SpeechTimers,
    phrases: Vec<String>,
    digits_only: bool,
    language: Option<String>,
) -> RecognitionSpec {
    RecognitionSpec {
        phrases,
        digits_only,
        language,
        timers: timers.to_asr(),
        early: None,
        confirm: false,
        digit_answer: None,
    }
}
