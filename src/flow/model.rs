//! Typed flow model: what a flow YAML file means once loaded.
//!
//! Every name a diagnostic may point at carries a [`Span`], so `validate`
//! and `serve` can say `file:line:col` for dangling targets, bad prompts and
//! the like long after parsing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::yaml::Span;

/// A value with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value as loaded (already typed: a duration, a count, a name).
    pub value: T,
    /// Where the value was written, for diagnostics about it.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Pair `value` with the place it was written.
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

/// Step ids are the keys of the `steps:` mapping.
pub type StepId = String;

/// A string that may contain `${var}` / `${account.field}` references.
pub type Template = Spanned<String>;

/// A prompt name: a file stem under `prompts/` (`welcome` → `prompts/welcome.wav`,
/// `digits/5` → `prompts/digits/5.wav`); may be a template (`${greeting}`).
pub type PromptRef = Spanned<String>;

/// One loaded flow file: what the interpreter runs and the validator checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// `flow:` — the flow's name (defaults to the file stem).
    pub name: String,
    /// The file it was loaded from; every diagnostic about the flow names it.
    pub path: PathBuf,
    /// `description:` — free text for people; the engine ignores it.
    pub description: Option<String>,
    /// `start:` — first step (defaults to the first step in file order).
    pub start: Spanned<StepId>,
    /// `vars:` — initial variable values.
    pub vars: BTreeMap<String, Template>,
    /// `max_duration:` — hard cap on call length inside this flow.
    pub max_duration: Option<Duration>,
    /// Steps in file order.
    pub steps: Vec<Step>,
}

impl Flow {
    /// The step with id `id`, if the flow has one (a linear search: flows are small).
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.value == id)
    }

    /// The languages its speech steps name (`language:`), each once, in
    /// file order: what `serve` readies its speech models for.
    pub fn speech_languages(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for step in &self.steps {
            let language = match &step.kind {
                StepKind::Recognize(r) => r.language.as_deref(),
                StepKind::VerifyPassphrase(v) => v.language.as_deref(),
                _ => None,
            };
            if let Some(l) = language.filter(|l| !out.contains(l)) {
                out.push(l);
            }
        }
        out
    }
}

/// One entry under `steps:`: its kind with the kind's fields, and its exits.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's key under `steps:`, unique in the flow.
    pub id: Spanned<StepId>,
    /// What the step does, with its fields.
    pub kind: StepKind,
    /// `next: x` is stored as `Exit::Next`; `on: {success: a, no_input: b}` as the named exits.
    pub exits: BTreeMap<Exit, Spanned<StepId>>,
    /// Position of the step's key.
    pub span: Span,
}

/// Named ways out of a step. Which ones a kind may have is `StepKind::exits()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
/// YAML spelling: [`Exit::as_str`]; what each means for a kind is in
/// `docs/flows.md`.
pub enum Exit {
    /// `next:` — the one way on of `play`, `say`, `set` and `goto`.
    Next,
    /// The step did what it is for (digits fit, code right, transfer done, 2xx answer).
    Success,
    /// The caller or the service answered, but wrongly (wrong code, non-2xx, transfer refused).
    Failure,
    /// The caller pressed or said nothing in time.
    NoInput,
    /// The caller's entry or speech did not fit what the step expects.
    NoMatch,
    /// Tries ran out and the last outcome's own exit is not named.
    MaxAttempts,
    /// A backend or internal failure; in production an unavailable backend takes it.
    Error,
    /// `lookup_caller` found an account.
    Found,
    /// `lookup_caller` found no account.
    NotFound,
    /// `verify_code`: the code's `ttl` passed.
    Expired,
    /// `send_code`: refused by a server abuse limit, or the account is locked for codes.
    RateLimited,
    /// `webhook`: no complete answer within its `timeout`.
    Timeout,
}

impl Exit {
    /// Every exit, in documentation order. Which exits a kind has is its
    /// unit's business (`steps::unit`).
    pub const ALL: [Exit; 12] = [
        Exit::Next,
        Exit::Success,
        Exit::Failure,
        Exit::NoInput,
        Exit::NoMatch,
        Exit::MaxAttempts,
        Exit::Error,
        Exit::Found,
        Exit::NotFound,
        Exit::Expired,
        Exit::RateLimited,
        Exit::Timeout,
    ];

    /// The YAML spelling (`no_input`, `max_attempts`, …), also used in events
    /// and test files.
    pub fn as_str(self) -> &'static str {
        match self {
            Exit::Next => "next",
            Exit::Success => "success",
            Exit::Failure => "failure",
            Exit::NoInput => "no_input",
            Exit::NoMatch => "no_match",
            Exit::MaxAttempts => "max_attempts",
            Exit::Error => "error",
            Exit::Found => "found",
            Exit::NotFound => "not_found",
            Exit::Expired => "expired",
            Exit::RateLimited => "rate_limited",
            Exit::Timeout => "timeout",
        }
    }

    /// The exit spelled `s` in YAML; `None` for anything else (the caller
    /// reports it with a "did you mean").
    pub fn parse(s: &str) -> Option<Exit> {
        Some(match s {
            "next" => Exit::Next,
            "success" => Exit::Success,
            "failure" => Exit::Failure,
            "no_input" => Exit::NoInput,
            "no_match" => Exit::NoMatch,
            "max_attempts" => Exit::MaxAttempts,
            "error" => Exit::Error,
            "found" => Exit::Found,
            "not_found" => Exit::NotFound,
            "expired" => Exit::Expired,
            "rate_limited" => Exit::RateLimited,
            "timeout" => Exit::Timeout,
            _ => return None,
        })
    }
}

/// What may interrupt a prompt (`barge_in: true` sets both). Defaults differ
/// per kind; see each kind's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BargeIn {
    /// A key press stops the prompt (and counts as type-ahead for the next digit input).
    pub digits: bool,
    /// The caller's voice stops the prompt.
    pub speech: bool,
}

/// A step's kind key and its fields. The per-kind behaviour (fields, exits,
/// `run`) lives in `flow::steps::<kind>`.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// `play`: play prompts.
    Play(Play),
    /// `say`: speak a value as digits or a number.
    Say(Say),
    /// `collect_digits`: read DTMF into a variable.
    CollectDigits(CollectDigits),
    /// `recognize`: speech input into a variable.
    Recognize(Recognize),
    /// `lookup_caller`: find the caller's account (sets the engine's `account.*`).
    LookupCaller(LookupCaller),
    /// `verify_passphrase`: voice passphrase check (sets `auth.*`).
    VerifyPassphrase(VerifyPassphrase),
    /// `send_code`: send a one-time code (sets `code.*`).
    SendCode(SendCode),
    /// `verify_code`: check the one-time code `send_code` sent (sets `auth.*`).
    VerifyCode(VerifyCode),
    /// `verify_totp`: check an authenticator-app code (sets `auth.*`).
    VerifyTotp(VerifyTotp),
    /// `transfer`: hand the call to an agent.
    Transfer(Transfer),
    /// `webhook`: call an HTTP service, its JSON answer into variables.
    Webhook(Webhook),
    /// `set`: set flow variables.
    Set(Set),
    /// `branch`: go to the first case whose condition holds.
    Branch(Branch),
    /// `goto: <step>`: the target is kept as the step's `next` exit. Also the
    /// loader's placeholder for a step whose kind could not be built.
    Goto,
    /// `hangup`: end the call from our side.
    Hangup(Hangup),
}

impl StepKind {
    /// The YAML key of this kind.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Play(_) => "play",
            StepKind::Say(_) => "say",
            StepKind::CollectDigits(_) => "collect_digits",
            StepKind::Recognize(_) => "recognize",
            StepKind::LookupCaller(_) => "lookup_caller",
            StepKind::VerifyPassphrase(_) => "verify_passphrase",
            StepKind::SendCode(_) => "send_code",
            StepKind::VerifyCode(_) => "verify_code",
            StepKind::VerifyTotp(_) => "verify_totp",
            StepKind::Transfer(_) => "transfer",
            StepKind::Webhook(_) => "webhook",
            StepKind::Set(_) => "set",
            StepKind::Branch(_) => "branch",
            StepKind::Goto => "goto",
            StepKind::Hangup(_) => "hangup",
        }
    }
}

/// `play` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Play {
    /// Played in order; at least one.
    pub prompts: Vec<PromptRef>,
    /// Default: digits only.
    pub barge_in: BargeIn,
}

/// `say`'s `as:` — how a value becomes prompts (`digits/<d>`, number words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SayAs {
    /// Each character spoken alone: "1234" → one two three four.
    Digits,
    /// A cardinal number: "42" → forty two.
    Number,
    /// The last N digits of a value (phone numbers); N is `count:` (1–255).
    LastDigits(u8),
}

/// `say` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Say {
    /// What to speak; rendered at run time.
    pub value: Template,
    /// `as:` (default digits).
    pub say_as: SayAs,
    /// Prompts before and after the value ("your number ends in" … ).
    pub before: Vec<PromptRef>,
    /// Played after the value.
    pub after: Vec<PromptRef>,
    /// Default: digits only.
    pub barge_in: BargeIn,
}

/// Shared by every step that reads digits (collect_digits, verify_code, verify_totp).
#[derive(Clone, Debug, PartialEq)]
/// Bounds are checked by the validator (`docs/flows.md` lists them).
pub struct DigitInput {
    /// Played at each try before listening.
    pub prompts: Vec<PromptRef>,
    /// Fewest digits that make an entry (≥ 1, ≤ `max`).
    pub min: u32,
    /// Most digits; reaching it ends the entry without a terminator (≤ 64).
    pub max: u32,
    /// The key that ends an entry early (`0`–`9`, `*`, `#`); not part of the entry.
    pub terminator: Option<char>,
    /// Silence allowed before the first key, counted from the end of the prompts (1s–60s).
    pub first_digit_timeout: Spanned<Duration>,
    /// Silence allowed between keys before the entry is taken as finished (1s–30s).
    pub inter_digit_timeout: Spanned<Duration>,
    /// Tries before the step gives up (1–10).
    pub tries: Spanned<u32>,
    /// Played before a retry after silence.
    pub no_input_prompts: Vec<PromptRef>,
    /// Played before a retry after a wrong entry.
    pub invalid_prompts: Vec<PromptRef>,
    /// Interrupt the prompt on the first key press (default true).
    pub barge_in: bool,
}

/// `collect_digits` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectDigits {
    /// Prompts, bounds, timers and tries.
    pub input: DigitInput,
    /// Anchored regex the digits must match.
    pub pattern: Option<Spanned<String>>,
    /// Variable that receives the digits (default: the step id); never an
    /// engine-owned name.
    pub into: Spanned<String>,
    /// Treat the digits as a secret: never logged, never put in records or prompts.
    pub secret: bool,
}

/// Timers of speech input (our own endpointing), with the spans the
/// validator's range errors point at.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeechTimers {
    /// Silence allowed before speech starts, counted from the end of the prompts.
    pub no_input_timeout: Spanned<Duration>,
    /// Silence after speech that ends the utterance.
    pub end_of_speech_timeout: Spanned<Duration>,
    /// Longest utterance; longer speech is cut and decoded as it is.
    pub max_duration: Spanned<Duration>,
}

impl SpeechTimers {
    /// The recogniser's timers: the one conversion (spans stay here).
    pub fn to_asr(&self) -> crate::asr::Timers {
        crate::asr::Timers {
            no_input_timeout: self.no_input_timeout.value,
            end_of_speech_timeout: self.end_of_speech_timeout.value,
            max_duration: self.max_duration.value,
            incomplete: None,
        }
    }
}

/// `recognize` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognize {
    /// Played at each try; with speech barge-in, listening starts with them.
    pub prompts: Vec<PromptRef>,
    /// Expected phrases; empty = free text. A result must equal one as a
    /// whole (case and punctuation ignored), never merely contain it.
    pub phrases: Vec<Spanned<String>>,
    /// Keep only the digits of the transcript; a result without digits is no match.
    pub digits_only: bool,
    /// Language hint for the recogniser (`None`: the engine's default); a
    /// language the model cannot do takes `error`.
    pub language: Option<String>,
    /// Endpointing timers.
    pub timers: SpeechTimers,
    /// Lowest confidence (0–1) a result needs to count.
    pub min_confidence: Spanned<f32>,
    /// Tries before the step gives up (1–10).
    pub tries: Spanned<u32>,
    /// Played before a retry after silence.
    pub no_input_prompts: Vec<PromptRef>,
    /// Played before a retry after a result that did not count.
    pub no_match_prompts: Vec<PromptRef>,
    /// Default: digits and speech.
    pub barge_in: BargeIn,
    /// Variable that receives the text (the phrase as written in the flow when
    /// `phrases` matched; default: the step id); never an engine-owned name.
    pub into: Spanned<String>,
}

/// `lookup_caller` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupCaller {
    /// Number to look up (default `${caller}`).
    pub number: Template,
}

/// `verify_passphrase` fields. The subject is taken from the engine's state
/// (the account's phone, else the caller), never from the flow.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyPassphrase {
    /// Played at each try before listening.
    pub prompts: Vec<PromptRef>,
    /// Endpointing timers.
    pub timers: SpeechTimers,
    /// Silence that ends the turn while what was said cannot yet hold the
    /// enrolled passphrase, or a speculative decode of it heard less
    /// (200ms–5s, default 1.5s; no effect at or under
    /// `end_of_speech_timeout`): `asr::IncompleteWait`.
    pub incomplete_timeout: Spanned<Duration>,
    /// Tries before the step gives up (1–10).
    pub tries: Spanned<u32>,
    /// Played before a retry after silence.
    pub no_input_prompts: Vec<PromptRef>,
    /// Played before a retry after a passphrase that did not match.
    pub retry_prompts: Vec<PromptRef>,
    /// Language the caller speaks (e.g. `ko`); None = the default
    /// (English, Whisper). Other languages need a Vosk model.
    pub language: Option<String>,
}

pub use crate::backends::CodeChannel;

/// `send_code` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct SendCode {
    /// How the code may reach the caller, in order of preference (default
    /// `[sms]`; `channel: x` is `channels: [x]`). A channel the account
    /// cannot take is skipped; one whose gateway fails, the next is tried.
    pub channels: Spanned<Vec<CodeChannel>>,
    /// Destination number for SMS and voice (default `${account.phone}`);
    /// e-mail goes to `${account.email}`.
    pub to: Template,
    /// Digits in the code (4–10).
    pub length: Spanned<u32>,
    /// How long the code is valid (30s–15m); after it `verify_code` takes `expired`.
    pub ttl: Spanned<Duration>,
    /// Wrong entries allowed before the code is burnt (1–10).
    pub max_attempts: Spanned<u32>,
    /// Least time between two sends to the same account or number
    /// (0–15m); within it a live code is not sent again (the caller enters
    /// the one already sent).
    pub resend_cooldown: Spanned<Duration>,
    /// Language of the message template (default `en`).
    pub language: Spanned<String>,
    /// Played to the caller while the send takes time (a code call
    /// ringing and being read out, an SMS receipt awaited), repeated with
    /// pauses until the send is done; none: silence.
    pub hold: Vec<PromptRef>,
}

/// `verify_code` fields: digit input only; the code, its key and channel come
/// from the engine's state. The entered code is never stored in a variable.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyCode {
    /// Prompts, bounds (default 6 digits), timers and tries.
    pub input: DigitInput,
}

/// `verify_totp` fields. The subject is the found account's id, else the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyTotp {
    /// Prompts, bounds, timers and tries.
    pub input: DigitInput,
    /// Accepted 30-second time steps either side of now (clock drift; 0–3).
    pub window: Spanned<u32>,
}

/// `transfer`'s `mode:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    /// Blind transfer by REFER only.
    Refer,
    /// Call the agent and bridge media.
    Bridge,
    /// REFER, falling back to the bridge when refused or failed (default).
    ReferThenBridge,
}

/// `transfer` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    /// Where to: a `sip:`, `sips:` or `tel:` URI once rendered; never empty.
    pub target: Template,
    /// Extra SIP headers to the agent (X-… and User-to-User), values are
    /// templates; no secrets.
    pub headers: Vec<(Spanned<String>, Template)>,
    /// Default: REFER, then the bridge.
    pub mode: TransferMode,
    /// How long to wait for the transfer to succeed or fail (1s–120s).
    pub timeout: Spanned<Duration>,
}

/// `webhook`'s `method:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    /// No request body (`body` is ignored).
    Get,
    /// `body` sent as a JSON object of strings (the default).
    Post,
}

/// `webhook` fields. Secrets may not appear in the URL, headers or body.
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    /// `http://` or `https://`; values rendered into it are percent-encoded.
    pub url: Template,
    /// Default: POST.
    pub method: HttpMethod,
    /// Extra request headers; values are templates.
    pub headers: Vec<(Spanned<String>, Template)>,
    /// JSON object body: keys → templates.
    pub body: Vec<(Spanned<String>, Template)>,
    /// Whole-exchange limit (connect to last body byte; 1s–120s).
    pub timeout: Spanned<Duration>,
    /// Prefix for variables taken from the JSON answer (`crm` → `crm.field`;
    /// default: the step id); never an engine-owned prefix.
    pub into: Spanned<String>,
}

/// `set` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Set {
    /// Variable name → template, in file order; names are never engine-owned.
    pub vars: Vec<(Spanned<String>, Template)>,
}

/// `branch` fields: a list of `- if: <condition>` / `goto:` cases and a final `- else:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    /// `if:` condition source and its `goto:` target, in order.
    pub cases: Vec<(Spanned<String>, Spanned<StepId>)>,
    /// `else:` target.
    pub otherwise: Spanned<StepId>,
}

/// `hangup` fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Hangup {
    /// Why, for the log line only (`hangup: done`); the caller hears nothing.
    pub reason: Option<String>,
}

impl Step {
    /// Every step id this step can continue to (exits and branch targets).
    pub fn targets(&self) -> Vec<&Spanned<StepId>> {
        let mut out: Vec<&Spanned<StepId>> = self.exits.values().collect();
        if let StepKind::Branch(b) = &self.kind {
            out.extend(b.cases.iter().map(|(_, t)| t));
            out.push(&b.otherwise);
        }
        out
    }
}
