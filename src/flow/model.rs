//! Typed flow model: what a flow YAML file means once loaded.
//!
//! Every name a diagnostic may point at carries a [`Span`], so `validate`
//! and `serve` can say `file:line:col` for dangling targets, bad prompts and
//! the like long after parsing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// 1-based position in the source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub line: u32,
    pub col: u32,
}

/// A value with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
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

#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// `flow:` — the flow's name (defaults to the file stem).
    pub name: String,
    pub path: PathBuf,
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
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.value == id)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub id: Spanned<StepId>,
    pub kind: StepKind,
    /// `next: x` is stored as `Exit::Next`; `on: {success: a, no_input: b}` as the named exits.
    pub exits: BTreeMap<Exit, Spanned<StepId>>,
    /// Position of the step's key.
    pub span: Span,
}

/// Named ways out of a step. Which ones a kind may have is `StepKind::exits()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exit {
    Next,
    Success,
    Failure,
    NoInput,
    NoMatch,
    MaxAttempts,
    Error,
    Found,
    NotFound,
    Expired,
    RateLimited,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BargeIn {
    pub digits: bool,
    pub speech: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    Play(Play),
    Say(Say),
    CollectDigits(CollectDigits),
    Recognize(Recognize),
    LookupCaller(LookupCaller),
    VerifyPassphrase(VerifyPassphrase),
    SendCode(SendCode),
    VerifyCode(VerifyCode),
    VerifyTotp(VerifyTotp),
    Transfer(Transfer),
    Webhook(Webhook),
    Set(Set),
    Branch(Branch),
    Goto,
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

#[derive(Clone, Debug, PartialEq)]
pub struct Play {
    pub prompts: Vec<PromptRef>,
    pub barge_in: BargeIn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SayAs {
    /// Each character spoken alone: "1234" → one two three four.
    Digits,
    /// A cardinal number: "42" → forty two.
    Number,
    /// The last N digits of a value (phone numbers).
    LastDigits(u8),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Say {
    pub value: Template,
    pub say_as: SayAs,
    /// Prompts before and after the value ("your number ends in" … ).
    pub before: Vec<PromptRef>,
    pub after: Vec<PromptRef>,
    pub barge_in: BargeIn,
}

/// Shared by every step that reads digits (collect_digits, verify_code, verify_totp).
#[derive(Clone, Debug, PartialEq)]
pub struct DigitInput {
    pub prompts: Vec<PromptRef>,
    pub min: u32,
    pub max: u32,
    pub terminator: Option<char>,
    pub first_digit_timeout: Spanned<Duration>,
    pub inter_digit_timeout: Spanned<Duration>,
    pub tries: Spanned<u32>,
    pub no_input_prompts: Vec<PromptRef>,
    pub invalid_prompts: Vec<PromptRef>,
    /// Interrupt the prompt on the first key press (default true).
    pub barge_in: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CollectDigits {
    pub input: DigitInput,
    /// Anchored regex the digits must match.
    pub pattern: Option<Spanned<String>>,
    /// Variable that receives the digits.
    pub into: Spanned<String>,
    /// Treat the digits as a secret: never logged, never put in records or prompts.
    pub secret: bool,
}

/// Timers of speech input (our own endpointing).
#[derive(Clone, Debug, PartialEq)]
pub struct SpeechTimers {
    pub no_input_timeout: Spanned<Duration>,
    pub end_of_speech_timeout: Spanned<Duration>,
    pub max_duration: Spanned<Duration>,
}

impl SpeechTimers {
    /// The recogniser's timers: the one conversion (spans stay here).
    pub fn to_asr(&self) -> crate::asr::Timers {
        crate::asr::Timers {
            no_input_timeout: self.no_input_timeout.value,
            end_of_speech_timeout: self.end_of_speech_timeout.value,
            max_duration: self.max_duration.value,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Recognize {
    pub prompts: Vec<PromptRef>,
    /// Expected phrases; empty = free text.
    pub phrases: Vec<Spanned<String>>,
    pub digits_only: bool,
    pub language: Option<String>,
    pub timers: SpeechTimers,
    pub min_confidence: Spanned<f32>,
    pub tries: Spanned<u32>,
    pub no_input_prompts: Vec<PromptRef>,
    pub no_match_prompts: Vec<PromptRef>,
    pub barge_in: BargeIn,
    pub into: Spanned<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LookupCaller {
    /// Number to look up (default `${caller}`).
    pub number: Template,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyPassphrase {
    pub prompts: Vec<PromptRef>,
    pub timers: SpeechTimers,
    pub tries: Spanned<u32>,
    pub no_input_prompts: Vec<PromptRef>,
    pub retry_prompts: Vec<PromptRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeChannel {
    Sms,
    /// Read out on a call back / this call (landlines).
    Voice,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SendCode {
    pub channel: CodeChannel,
    /// Destination number (default `${account.phone}`).
    pub to: Template,
    pub length: Spanned<u32>,
    pub ttl: Spanned<Duration>,
    /// Wrong entries allowed before the code is burnt.
    pub max_attempts: Spanned<u32>,
    pub resend_cooldown: Spanned<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyCode {
    pub input: DigitInput,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyTotp {
    pub input: DigitInput,
    /// Accepted time steps either side of now (clock drift).
    pub window: Spanned<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    /// Blind transfer by REFER; fall back to bridging if refused.
    Refer,
    /// Call the agent and bridge media.
    Bridge,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    pub target: Template,
    /// Extra SIP headers to the agent (X-… and User-to-User), values are templates.
    pub headers: Vec<(Spanned<String>, Template)>,
    pub mode: TransferMode,
    pub timeout: Spanned<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub url: Template,
    pub method: HttpMethod,
    pub headers: Vec<(Spanned<String>, Template)>,
    /// JSON object body: keys → templates.
    pub body: Vec<(Spanned<String>, Template)>,
    pub timeout: Spanned<Duration>,
    /// Prefix for variables taken from the JSON answer (`crm` → `crm.field`).
    pub into: Spanned<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Set {
    pub vars: Vec<(Spanned<String>, Template)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    /// `if:` condition source and its `goto:` target, in order.
    pub cases: Vec<(Spanned<String>, Spanned<StepId>)>,
    /// `else:` target.
    pub otherwise: Spanned<StepId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hangup {
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
