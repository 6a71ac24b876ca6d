//! A scripted caller on a virtual clock.
//!
//! Time only moves inside `next_input`: it jumps to the next thing that
//! happens (a scripted key press, the end of a prompt, a recogniser timer) or
//! to the timeout, whichever is first. Nothing ever sleeps.
//!
//! Timing model (deliberately simple, documented so tests can rely on it):
//! - every prompt takes [`ScriptedCall::prompt_duration`] (1 s by default;
//!   WAV lengths are not read); `PlaybackDone` follows the last one;
//! - script actions run in order, one at a time, and only while the engine
//!   listens (`next_input`); an action starts once the previous action's
//!   inputs have all been delivered:
//!   - `digits` — keys at the moment the action starts, then every `gap`
//!     (default 100 ms); keys during a prompt barge in; `${sent_code}` is
//!     rendered when the action starts (after `send_code` ran);
//!   - `say` — waits until a recognition is running, then `SpeechStarted` at
//!     once and the `Speech` result [`SPEECH_DURATION`] later;
//!   - `silence: d` — the caller does nothing for `d` (engine timers run);
//!   - `advance: d` — the clock jumps `d` at once (engine timers do not fire
//!     in between: "the caller took a minute to read the SMS");
//!   - `wait: prompt` — wait until that prompt starts (after the previous
//!     action was performed); following keys then barge into it;
//!   - `hangup` — the caller hangs up; every later call operation fails with
//!     `CallError::HungUp`.
//! - the recogniser reports `NoSpeech` when nobody spoke within its
//!   `no_input_timeout`, counted from the end of the prompt playing when it
//!   started;
//! - when the script is used up the caller is silent forever; a wait with no
//!   timeout and nothing scheduled, or a clock past [`ScriptedCall::time_cap`],
//!   fails the call with a message naming the cause (so a test never hangs).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::speech::{hear_file, voice_onset, Simulated, SpeechModels};
use crate::asr::Heard;
use crate::call::{
    CallChannel, CallError, CallInfo, CallInput, DigitSource, RecognitionSpec, SpeechResult,
    TransferFailure, TransferOutcome, TransferPath, TransferRequest,
};
use crate::flow::expr;

/// Time from the start of a scripted utterance to its recognition result.
pub const SPEECH_DURATION: Duration = Duration::from_secs(1);

/// Shared virtual time (the code stub reads it for expiry).
#[derive(Clone, Debug, Default)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    /// Virtual time since the call started.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }

    fn set(&self, d: Duration) {
        self.0.store(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

/// Values scripts may use as `${name}` (the code stub sets `sent_code`).
pub type ScriptVars = Arc<Mutex<BTreeMap<String, String>>>;

/// One thing the scripted caller does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Press keys (`digits: "1234#"`).
    Digits {
        /// The keys, `${name}` templates allowed (rendered when the action
        /// starts).
        digits: String,
        /// Time between two keys (100 ms unless the script says `gap:`).
        gap: Duration,
    },
    /// Say something to the scripted recogniser (`say: text`).
    Say {
        /// The transcript the recogniser reports.
        text: String,
        /// Its confidence, 0.0 – 1.0 (0.95 unless the script gives one).
        confidence: f32,
    },
    /// Speak a recording, heard by the real recogniser (see `speech`).
    Audio(PathBuf),
    /// Do nothing for this long; engine timers run meanwhile.
    Silence(Duration),
    /// Jump the clock this far at once; engine timers do not fire in between.
    Advance(Duration),
    /// Wait until this prompt starts playing (after the previous action);
    /// the next actions then happen while it plays.
    WaitPrompt(String),
    /// Hang up; every later call operation fails with `CallError::HungUp`.
    Hangup,
}

/// How a transfer request is answered.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum TransferFixture {
    /// The target takes the call.
    #[default]
    Transferred,
    /// The target refuses, with this SIP status if any (`transfer_fails:`).
    Failed(Option<u16>),
    /// The call cannot transfer at all (`CallError::Unsupported`).
    Error,
}

/// What the engine did to the call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallLog {
    /// Every prompt started, in order.
    pub prompts: Vec<String>,
    /// Every transfer requested, in order (whatever the fixture answered).
    pub transfers: Vec<TransferRequest>,
    /// How often the engine hung up (a flow should do it at most once).
    pub engine_hangups: u32,
    /// Playbacks stopped before their end.
    pub barge_ins: u32,
    /// Every recognition started (not those refused by a failing recogniser).
    pub recognitions: Vec<RecognitionSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Playback,
    Script,
    Recognizer,
}

#[derive(Clone, Debug)]
struct Pending {
    at: Duration,
    seq: u64,
    origin: Origin,
    input: CallInput,
}

/// A `CallChannel` driven by a script of [`Action`]s on a [`VirtualClock`]
/// (the timing model is in the module docs). Build with [`ScriptedCall::new`]
/// and the `with_*` methods; read [`ScriptedCall::log`] after the run.
pub struct ScriptedCall {
    info: CallInfo,
    clock: VirtualClock,
    script: VecDeque<Action>,
    /// The next script action may start at this time.
    ready_at: Duration,
    /// Index into `log.prompts` when the last action was performed.
    mark: usize,
    pending: Vec<Pending>,
    seq: u64,
    playback_end: Option<Duration>,
    recognizing: bool,
    /// The running recognition's request (for `audio` lines).
    spec: Option<RecognitionSpec>,
    speech: Option<Arc<SpeechModels>>,
    /// Recognitions from this one on (1-based) cannot start, as in serve
    /// without a model (`fail: [recognizer]` = from the first).
    recognizer_fails_at: Option<u32>,
    /// Voice detection runs (speech barge-in on a prompt), no recognition.
    voice_detecting: bool,
    speaking: bool,
    hung_up: bool,
    vars: ScriptVars,
    transfer: TransferFixture,
    known_prompts: Option<BTreeSet<String>>,
    /// How long every prompt plays (1 s by default).
    pub prompt_duration: Duration,
    /// Virtual time after which the call fails, so a flow that loops forever
    /// ends the test (24 h by default).
    pub time_cap: Duration,
    /// What the engine did so far.
    pub log: CallLog,
}

impl ScriptedCall {
    /// A call with `info` that performs `script` in order; transfers succeed,
    /// the recogniser is scripted (`say`) and any prompt name plays.
    pub fn new(info: CallInfo, script: Vec<Action>) -> Self {
        ScriptedCall {
            info,
            clock: VirtualClock::default(),
            script: script.into(),
            ready_at: Duration::ZERO,
            mark: 0,
            pending: Vec::new(),
            seq: 0,
            playback_end: None,
            recognizing: false,
            spec: None,
            speech: None,
            recognizer_fails_at: None,
            voice_detecting: false,
            speaking: false,
            hung_up: false,
            vars: ScriptVars::default(),
            transfer: TransferFixture::default(),
            known_prompts: None,
            prompt_duration: Duration::from_secs(1),
            time_cap: Duration::from_secs(24 * 3600),
            log: CallLog::default(),
        }
    }

    /// A handle on the call's clock, for stubs that need time (code expiry).
    pub fn clock(&self) -> VirtualClock {
        self.clock.clone()
    }

    /// A handle on the `${name}` values scripts render (the code stub writes
    /// `sent_code` here).
    pub fn script_vars(&self) -> ScriptVars {
        self.vars.clone()
    }

    /// How transfer requests are answered.
    pub fn with_transfer(mut self, t: TransferFixture) -> Self {
        self.transfer = t;
        self
    }

    /// Where `audio` script lines find the speech engine.
    pub fn with_speech(mut self, models: Arc<SpeechModels>) -> Self {
        self.speech = Some(models);
        self
    }

    /// Recognitions from the `from`-th on (1-based) fail to start, as in
    /// `serve` without a model; `None` keeps the recogniser working.
    pub fn with_recognizer_failing(mut self, from: Option<u32>) -> Self {
        self.recognizer_fails_at = from;
        self
    }

    /// Refuse prompts not in this set (`CallError::Prompt`), like a missing WAV.
    pub fn with_known_prompts(mut self, names: BTreeSet<String>) -> Self {
        self.known_prompts = Some(names);
        self
    }

    /// Script actions not performed when the run ended.
    pub fn unused_script(&self) -> usize {
        self.script.len()
    }

    /// The next script action not yet performed.
    pub fn next_action(&self) -> Option<&Action> {
        self.script.front()
    }

    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn schedule(&mut self, at: Duration, origin: Origin, input: CallInput) {
        self.seq += 1;
        self.pending.push(Pending {
            at,
            seq: self.seq,
            origin,
            input,
        });
    }

    fn drop_origin(&mut self, origin: Origin) {
        self.pending.retain(|p| p.origin != origin);
    }

    fn drop_speech(&mut self) {
        self.pending.retain(|p| {
            !matches!(
                p.input,
                CallInput::Speech(_) | CallInput::SpeechStarted | CallInput::NoSpeech
            )
        });
    }

    /// Start script actions that are due; stops at an action that must wait.
    fn activate(&mut self) -> Result<(), CallError> {
        loop {
            let now = self.now();
            if self.ready_at > now || self.pending.iter().any(|p| p.origin == Origin::Script) {
                return Ok(());
            }
            let Some(action) = self.script.front().cloned() else {
                return Ok(());
            };
            match action {
                Action::Digits { digits, gap } => {
                    let vars = self.vars.lock().map(|m| m.clone()).unwrap_or_default();
                    let keys = expr::render(&digits, &|n| vars.get(n).cloned()).map_err(|e| {
                        CallError::Failed(format!(
                            "script digits `{digits}`: {e} (was a code sent before this point?)"
                        ))
                    })?;
                    let mut at = now;
                    for k in keys.chars() {
                        self.schedule(
                            at,
                            Origin::Script,
                            CallInput::Digit {
                                digit: k,
                                source: DigitSource::Script,
                            },
                        );
                        at += gap;
                    }
                    self.ready_at = at;
                }
                Action::Say { .. } | Action::Audio(_)
                    if !self.recognizing && self.voice_detecting && !self.speaking =>
                {
                    // Talking over a prompt with speech barge-in: the prompt
                    // stops, the words are lost (nobody is recognising).
                    let onset = match &action {
                        Action::Audio(path) => voice_onset(path).map_err(CallError::Failed)?,
                        _ => Some(Duration::ZERO),
                    };
                    if let Some(at) = onset {
                        self.speaking = true;
                        self.schedule(now + at, Origin::Script, CallInput::SpeechStarted);
                    }
                }
                Action::Say { text, confidence } => {
                    if !self.recognizing || self.speaking {
                        return Ok(());
                    }
                    self.speaking = true;
                    self.drop_origin(Origin::Recognizer);
                    self.schedule(now, Origin::Script, CallInput::SpeechStarted);
                    self.schedule(
                        now + SPEECH_DURATION,
                        Origin::Script,
                        CallInput::Speech(SpeechResult { text, confidence }),
                    );
                }
                Action::Audio(path) => {
                    if !self.recognizing || self.speaking {
                        return Ok(());
                    }
                    let Some(spec) = self.spec.clone() else {
                        return Ok(());
                    };
                    let engine = match &self.speech {
                        Some(m) => m.engine().map_err(CallError::Failed)?,
                        None => {
                            return Err(CallError::Failed(
                                "no speech engine is available to this test run".into(),
                            ))
                        }
                    };
                    match hear_file(&*engine, &path, &spec).map_err(CallError::Failed)? {
                        Simulated::Heard {
                            started,
                            ended,
                            heard,
                        } => {
                            self.speaking = true;
                            self.drop_origin(Origin::Recognizer);
                            self.schedule(now + started, Origin::Script, CallInput::SpeechStarted);
                            let input = match heard {
                                Heard::Speech(r) => CallInput::Speech(r),
                                Heard::Nothing => CallInput::NoSpeech,
                            };
                            self.schedule(now + ended, Origin::Script, input);
                        }
                        // No voice in it: the recogniser's no-input timer decides.
                        Simulated::Silent => {}
                    }
                }
                Action::Silence(d) => self.ready_at = now + d,
                Action::Advance(d) => self.clock.set(now + d),
                Action::WaitPrompt(name) => {
                    if !self.log.prompts[self.mark.min(self.log.prompts.len())..].contains(&name) {
                        return Ok(());
                    }
                }
                Action::Hangup => self.schedule(now, Origin::Script, CallInput::HungUp),
            }
            self.script.pop_front();
            self.mark = self.log.prompts.len();
        }
    }
}

impl CallChannel for ScriptedCall {
    fn info(&self) -> &CallInfo {
        &self.info
    }

    fn elapsed(&self) -> Duration {
        self.now()
    }

    fn play(&mut self, prompts: &[String]) -> impl Future<Output = Result<(), CallError>> + Send {
        let res = (|| {
            if self.hung_up {
                return Err(CallError::HungUp);
            }
            if let Some(known) = &self.known_prompts {
                if let Some(missing) = prompts.iter().find(|p| !known.contains(*p)) {
                    return Err(CallError::Prompt(
                        missing.clone(),
                        "not listed in prompts/prompts.tsv".into(),
                    ));
                }
            }
            self.drop_origin(Origin::Playback);
            self.log.prompts.extend(prompts.iter().cloned());
            let end = self.now() + self.prompt_duration * prompts.len() as u32;
            self.playback_end = Some(end);
            self.schedule(end, Origin::Playback, CallInput::PlaybackDone);
            Ok(())
        })();
        async move { res }
    }

    fn stop_playback(&mut self) -> impl Future<Output = ()> + Send {
        if self.pending.iter().any(|p| p.origin == Origin::Playback) {
            self.log.barge_ins += 1;
        }
        self.drop_origin(Origin::Playback);
        self.playback_end = None;
        async {}
    }

    fn start_recognition(
        &mut self,
        spec: &RecognitionSpec,
    ) -> impl Future<Output = Result<(), CallError>> + Send {
        let res = if self.hung_up {
            Err(CallError::HungUp)
        } else if self
            .recognizer_fails_at
            .is_some_and(|n| self.log.recognitions.len() + 1 >= n as usize)
        {
            Err(CallError::Unsupported(
                "speech recognition",
                "scripted recogniser failure".into(),
            ))
        } else {
            self.log.recognitions.push(spec.clone());
            self.recognizing = true;
            self.spec = Some(spec.clone());
            self.speaking = false;
            self.drop_speech();
            let from = self.playback_end.unwrap_or_default().max(self.now());
            self.schedule(
                from + spec.timers.no_input_timeout,
                Origin::Recognizer,
                CallInput::NoSpeech,
            );
            Ok(())
        };
        async move { res }
    }

    fn start_voice_detection(&mut self) -> impl Future<Output = Result<(), CallError>> + Send {
        let res = if self.hung_up {
            Err(CallError::HungUp)
        } else {
            self.voice_detecting = true;
            self.speaking = false;
            Ok(())
        };
        async move { res }
    }

    fn stop_recognition(&mut self) -> impl Future<Output = ()> + Send {
        self.voice_detecting = false;
        self.recognizing = false;
        self.speaking = false;
        self.drop_speech();
        async {}
    }

    // The trait's signature spelled out, as the other methods here.
    #[allow(clippy::manual_async_fn)]
    fn next_input(
        &mut self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Option<CallInput>, CallError>> + Send {
        // Lazily, on the first poll: `select!` creates every branch's future
        // before polling any, so a wait that loses (send_code's hold loop,
        // whose send is ready at once) must not have taken an input — the
        // script's digits would be lost with the dropped future.
        async move { self.next_input_now(timeout) }
    }

    fn transfer(
        &mut self,
        req: &TransferRequest,
    ) -> impl Future<Output = Result<TransferOutcome, CallError>> + Send {
        let res = if self.hung_up {
            Err(CallError::HungUp)
        } else {
            self.log.transfers.push(req.clone());
            match &self.transfer {
                TransferFixture::Transferred => Ok(TransferOutcome::Transferred {
                    target: req.targets.first().cloned().unwrap_or_default(),
                    path: TransferPath::Referred,
                }),
                TransferFixture::Failed(status) => Ok(TransferOutcome::Failed {
                    status: *status,
                    reason: status.map_or(TransferFailure::NoAnswer, TransferFailure::from_status),
                }),
                TransferFixture::Error => Err(CallError::Unsupported(
                    "transfer",
                    "scripted transfer error".into(),
                )),
            }
        };
        async move { res }
    }

    fn hangup(&mut self) -> impl Future<Output = ()> + Send {
        self.log.engine_hangups += 1;
        self.hung_up = true;
        async {}
    }
}

impl ScriptedCall {
    fn next_input_now(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<CallInput>, CallError> {
        if self.hung_up {
            return Err(CallError::HungUp);
        }
        let deadline = timeout.map(|t| self.now() + t);
        loop {
            self.activate()?;
            let now = self.now();
            if now > self.time_cap {
                return Err(CallError::Failed(format!(
                    "virtual time passed the test cap of {}s",
                    self.time_cap.as_secs()
                )));
            }
            let next_event = self
                .pending
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| (p.at, p.seq))
                .map(|(i, p)| (i, p.at));
            let script_waiting = !self.script.is_empty()
                && self.ready_at > now
                && !self.pending.iter().any(|p| p.origin == Origin::Script);
            let next_ready = script_waiting.then_some(self.ready_at);
            let event_first = match (next_event, next_ready) {
                (Some((_, at)), Some(r)) => at <= r,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let t = match (next_event, next_ready) {
                (Some((_, at)), Some(r)) => Some(at.min(r)),
                (Some((_, at)), None) => Some(at),
                (None, r) => r,
            };
            match (t, deadline) {
                (Some(t), d) if d.is_none_or(|d| t <= d) => {
                    self.clock.set(now.max(t));
                    if !event_first {
                        continue;
                    }
                    let Some((i, _)) = next_event else { continue };
                    let p = self.pending.remove(i);
                    match &p.input {
                        CallInput::PlaybackDone => self.playback_end = None,
                        CallInput::Speech(_) | CallInput::NoSpeech => {
                            self.recognizing = false;
                            self.speaking = false;
                        }
                        CallInput::HungUp => self.hung_up = true,
                        _ => {}
                    }
                    return Ok(Some(p.input));
                }
                (_, Some(d)) => {
                    self.clock.set(d.max(now));
                    return Ok(None);
                }
                (_, None) => {
                    let what = match self.script.front() {
                        Some(Action::Say { .. } | Action::Audio(_)) => {
                            " (the script wants to speak but no recognition is running)"
                        }
                        _ => "",
                    };
                    return Err(CallError::Failed(format!(
                        "the flow waits for input with no timeout and nothing will ever arrive{what}"
                    )));
                }
            }
        }
    }
}
