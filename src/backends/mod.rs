//! Backends the steps need, as dyn-safe async traits.
//!
//! Every method returns a boxed `Send` future ([`BoxFut`]) so real backends
//! can do network I/O on the call's tokio task while `Services` stays a plain
//! struct of trait objects. Two implementations exist for each: the
//! "unavailable" one below (every call fails with a clear reason, so a step
//! takes its `error` exit — never a pretended success) and the scripted
//! stubs in `testing`. Code generation, TTLs and attempt counting belong to
//! the code backend; steps only prompt, collect and map results to exits.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::phone::E164;

pub mod caller_left;
pub mod codes;
pub mod directory;
pub mod email;
pub mod handoff;
pub mod passphrase;
pub mod sms;
pub mod totp;
pub mod voice;
pub mod webhook_http;

/// `send_code`'s `channels:`; `verify_code` later checks with the channel
/// really used (kept in engine state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeChannel {
    /// A text message to `to`.
    Sms,
    /// Read out on a call back / this call (landlines).
    Voice,
    /// An e-mail to the account's address.
    Email,
}

impl CodeChannel {
    /// Stable spelling in flows, events, deliveries and `code.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeChannel::Sms => "sms",
            CodeChannel::Voice => "voice",
            CodeChannel::Email => "email",
        }
    }
}

/// One channel a code may go by, with its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeTarget {
    /// The channel.
    pub channel: CodeChannel,
    /// The destination: a number in E.164 (SMS, voice) or an e-mail address.
    pub to: String,
}

impl CodeTarget {
    /// The destination as events and deliveries show it (a number by
    /// [`crate::events::mask_number`], an address by
    /// [`crate::events::mask_email`]).
    pub fn masked(&self) -> String {
        match self.channel {
            CodeChannel::Email => crate::events::mask_email(&self.to),
            CodeChannel::Sms | CodeChannel::Voice => crate::events::mask_number(&self.to),
        }
    }
}

/// One try at handing a code to a channel (events and `send_code`'s report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendAttempt {
    /// The channel tried.
    pub channel: CodeChannel,
    /// The destination, masked.
    pub to_masked: String,
    /// The gateway (or SMTP relay) asked; "" when none is configured.
    pub gateway: String,
    /// The gateway's message id, when it gave one.
    pub message_id: Option<String>,
    /// `None`: taken; else why not (never a secret, never the address).
    pub error: Option<String>,
}

/// A boxed `Send` future borrowing from the backend and its arguments.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fields of an account (become `account.<field>` variables).
pub type Account = BTreeMap<String, String>;

/// Why a backend call did not produce an answer; the step takes `error`
/// (or `timeout` where it has one). The text goes to the log and the `error`
/// event, so it must never carry a secret.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ServiceError {
    /// The backend is not configured on this server.
    #[error("{0}")]
    Unavailable(String),
    /// The backend did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The backend answered or failed in a way that is not a result (I/O,
    /// protocol, a malformed answer); holds the cause.
    #[error("{0}")]
    Failed(String),
}

/// What `lookup_caller` asks the directory: a number in the call's brand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupQuery {
    /// The number, normalised to E.164.
    pub number: E164,
    /// The call's brand (from its route); "" when the route names none.
    pub brand: String,
    /// The directory the call's route names; `None`: the configured default.
    pub directory: Option<String>,
}

/// Caller directory: number → account.
pub trait Directory: Send + Sync {
    /// `Ok(None)` = no account for this number in this brand. Must answer
    /// (or fail) within the directory's own timeout: a caller waits on it.
    fn lookup<'a>(
        &'a self,
        query: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>>;
}

/// Whose code: pending codes are filed under the account `lookup_caller`
/// found, so a caller whose call dropped (or whose server restarted) can
/// call again and enter the code already sent; without an account, under
/// the number the code went to (for `verify_code`: the caller's number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeSubject {
    /// The account's id.
    Account(String),
    /// No account: the number.
    Number(String),
}

impl CodeSubject {
    /// The stored key (`acct:<id>` or `num:<number>`, so the two never meet).
    pub fn key(&self) -> String {
        match self {
            CodeSubject::Account(id) => format!("acct:{id}"),
            CodeSubject::Number(n) => format!("num:{n}"),
        }
    }

    /// The account id, when the subject is an account.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            CodeSubject::Account(id) => Some(id),
            CodeSubject::Number(_) => None,
        }
    }
}

/// A request to send a one-time code.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeRequest {
    /// The call asking (recorded with the code; not its key).
    pub call_id: String,
    /// Whose code it is.
    pub subject: CodeSubject,
    /// The caller's number for the per-caller send limits; `None` when
    /// withheld (the limits then count the destination only).
    pub caller: Option<E164>,
    /// Where and how to deliver it, in order of preference: when a channel
    /// fails to take the code, the next is tried (with the same code or a
    /// new one, as the server's config says). `verify_code` later reports
    /// the channel that took it as its method. The first target's
    /// destination is the one the per-destination limits count.
    pub targets: Vec<CodeTarget>,
    /// The call's brand ("" = none): picks the gateway and the message template.
    pub brand: String,
    /// Language of the message template (`en` unless the step says).
    pub language: String,
    /// Digits to generate (4–10).
    pub length: u32,
    /// How long the code stays valid from sending.
    pub ttl: Duration,
    /// Wrong entries the backend allows before it burns the code.
    pub max_attempts: u32,
    /// Least time between two sends to a subject: within it a live code is
    /// not sent again ([`SendResult::StillValid`]).
    pub resend_cooldown: Duration,
    /// The call's clock ([`crate::call::CallInfo::answered_at`] + elapsed):
    /// the TTL and cooldown count from here, not from a clock of the backend's.
    pub now: SystemTime,
    /// Set when the caller hangs up during the send: a code call is torn
    /// down (`cancelled`) and no further channel is tried.
    pub caller_left: caller_left::CallerLeft,
}

/// Why a send was refused by an abuse limit (events and `auth.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendLimit {
    /// Sends to this destination in the last hour.
    DestinationHourly,
    /// Sends to this destination in the last day.
    DestinationDaily,
    /// Sends asked by this caller number in the last hour.
    CallerHourly,
    /// Sends asked by this caller number in the last day.
    CallerDaily,
}

impl SendLimit {
    /// Stable spelling in events.
    pub fn as_str(self) -> &'static str {
        match self {
            SendLimit::DestinationHourly => "destination_hourly",
            SendLimit::DestinationDaily => "destination_daily",
            SendLimit::CallerHourly => "caller_hourly",
            SendLimit::CallerDaily => "caller_daily",
        }
    }
}

/// What [`CodeService::send`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// A code was generated, stored and handed to a channel's gateway.
    Sent {
        /// The channel that took it.
        channel: CodeChannel,
        /// Its destination, masked.
        to_masked: String,
        /// The gateway's name in the config.
        gateway: String,
        /// The gateway's message id, when it gave one.
        message_id: Option<String>,
        /// Every try, in order, the one that took the code last.
        attempts: Vec<SendAttempt>,
    },
    /// No channel took the code (each try says why); it is not live.
    Undeliverable {
        /// Every try, in order.
        attempts: Vec<SendAttempt>,
    },
    /// A live code went to this subject within the resend cooldown: none
    /// was sent now, the caller enters that one.
    StillValid,
    /// Refused by an abuse limit; no code sent.
    RateLimited(SendLimit),
    /// Too many wrong codes for the account in the lockout window.
    Locked,
}

/// What `verify_code` hands the backend.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeEntry<'a> {
    /// The call entering it.
    pub call_id: &'a str,
    /// Whose code is checked.
    pub subject: &'a CodeSubject,
    /// The digits keyed in: a secret, never logged.
    pub entered: &'a str,
    /// The call's clock, as in [`CodeRequest::now`].
    pub now: SystemTime,
}

/// What [`CodeService::verify`] found for an entered code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code, in time; the backend consumed it.
    Ok,
    /// Wrong code; more attempts allowed by the backend.
    Wrong,
    /// Wrong code and the backend burnt it (attempts used up).
    Exhausted,
    /// The code's `ttl` has passed.
    Expired,
    /// No code is pending for the subject.
    NotSent,
    /// Too many wrong codes for the account in the lockout window.
    Locked,
}

/// One-time codes: generation, storage, delivery, TTLs, attempt counting
/// and abuse limits all live here; the steps only prompt, collect and map
/// results to exits.
pub trait CodeService: Send + Sync {
    /// Generate, store and deliver a code for `req.subject` (or decline, see
    /// [`SendResult`]).
    fn send<'a>(&'a self, req: &'a CodeRequest) -> BoxFut<'a, Result<SendResult, ServiceError>>;
    /// Check an entered code against the codes pending for its subject.
    fn verify<'a>(&'a self, entry: CodeEntry<'a>) -> BoxFut<'a, Result<CodeCheck, ServiceError>>;
}

/// What [`TotpVerifier::verify`] found for an entered code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpCheck {
    /// The code of a time step within the window, newer than any accepted
    /// before; now recorded as used.
    Accepted,
    /// Not the code of any step within the window (counts towards the lockout).
    Wrong,
    /// The code of a step already used (or older than one used): refused,
    /// and counted like a wrong code.
    Replayed,
    /// Too many wrong codes for the account in the lockout window; the
    /// code was not judged.
    Locked,
    /// No such account, or it has no TOTP secret.
    NotEnrolled,
}

/// Authenticator-app codes (RFC 6238 TOTP).
pub trait TotpVerifier: Send + Sync {
    /// Judge `code` for account `account_id` within `window` 30-second steps
    /// either side of `now` (the call's clock: answered at + elapsed, virtual
    /// in tests). The code is a secret: implementations must not log it.
    fn verify<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
        window: u32,
        now: SystemTime,
    ) -> BoxFut<'a, Result<TotpCheck, ServiceError>>;
}

/// Whose passphrase a `verify_passphrase` checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassphraseSubject {
    /// The account `lookup_caller` found (the store's key).
    pub account_id: Option<String>,
    /// The account's number when found, else the caller's.
    pub number: String,
}

/// What is enrolled for a subject, before the caller speaks.
#[derive(Debug)]
pub enum Enrolment {
    /// A passphrase: its text is the recogniser's hint (a secret: never
    /// logged, never in an event), `digits` selects digits mode.
    Ready {
        /// The enrolled phrase.
        hint: zeroize::Zeroizing<String>,
        /// The phrase is a digit string.
        digits: bool,
    },
    /// No passphrase is enrolled for the subject (or no account was found).
    NotEnrolled,
    /// Too many failures in the lockout window: the factor is locked.
    Locked,
}

/// The verdict on one utterance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassphraseVerdict {
    /// The whole utterance is the phrase, heard with enough confidence.
    Match,
    /// The utterance is not the phrase.
    NoMatch,
    /// The words match but the recogniser was not sure enough.
    LowConfidence,
    /// The factor is locked for the account (now or by this failure's count
    /// reaching the limit before the check ran).
    Locked,
}

impl PassphraseVerdict {
    /// The failure reason flows read as `auth.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            PassphraseVerdict::Match => "matched",
            PassphraseVerdict::NoMatch => "no_match",
            PassphraseVerdict::LowConfidence => "low_confidence",
            PassphraseVerdict::Locked => "locked",
        }
    }
}

/// Spoken passphrases, checked against what is enrolled for a subject.
pub trait PassphraseVerifier: Send + Sync {
    /// What is enrolled for `subject` at `now` (the call's clock).
    fn enrolment<'a>(
        &'a self,
        subject: &'a PassphraseSubject,
        now: SystemTime,
    ) -> BoxFut<'a, Result<Enrolment, ServiceError>>;
    /// Judge `transcript` (what the recogniser heard, with its
    /// `confidence`) against `subject`'s passphrase at `now`; failures count
    /// towards the lockout. The transcript is a secret: implementations must
    /// not log it.
    fn verify<'a>(
        &'a self,
        subject: &'a PassphraseSubject,
        transcript: &'a str,
        confidence: f32,
        now: SystemTime,
    ) -> BoxFut<'a, Result<PassphraseVerdict, ServiceError>>;
}

/// One rendered `webhook` call. Header values may carry API keys: never log them.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRequest {
    /// Absolute `http://` / `https://` URL, template values already percent-encoded.
    pub url: String,
    /// `true`: POST with `body` as JSON; `false`: GET without a body.
    pub post: bool,
    /// Extra request headers (name, rendered value), in flow order.
    pub headers: Vec<(String, String)>,
    /// The JSON object to POST (values are strings).
    pub body: serde_json::Map<String, serde_json::Value>,
    /// Limit for the whole exchange, connecting to the last body byte.
    pub timeout: Duration,
}

/// An HTTP answer, whatever its status; the step maps 2xx to `success`.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookResponse {
    /// The HTTP status code.
    pub status: u16,
    /// For 2xx, the answer's JSON object; `null` for other statuses (not read).
    pub body: serde_json::Value,
}

/// HTTP calls for the `webhook` step ([`crate::backends::webhook_http::HttpWebhook`] in `serve`).
pub trait WebhookClient: Send + Sync {
    /// Any HTTP status is `Ok`; `Err(ServiceError::Timeout)` when
    /// `req.timeout` passed, `Err(Failed)` for I/O errors and unusable 2xx bodies.
    fn call<'a>(
        &'a self,
        req: &'a WebhookRequest,
    ) -> BoxFut<'a, Result<WebhookResponse, ServiceError>>;
}

/// Everything the steps can call.
pub struct Services {
    /// For `lookup_caller`.
    pub directory: Box<dyn Directory>,
    /// For `send_code` and `verify_code`.
    pub codes: Box<dyn CodeService>,
    /// For `verify_totp`.
    pub totp: Box<dyn TotpVerifier>,
    /// For `verify_passphrase`.
    pub passphrase: Box<dyn PassphraseVerifier>,
    /// For `webhook`.
    pub webhook: Box<dyn WebhookClient>,
    /// For `transfer`: agent groups and the context sent to the agent.
    pub handoff: handoff::Handoff,
    /// Country for numbers a flow gives in national format (`lookup_caller`).
    pub default_country: crate::phone::Country,
    /// `passphrase.speculate_after`: how long a pause `verify_passphrase`
    /// decodes at (None: only at the end of speech).
    pub speculate_after: Option<std::time::Duration>,
}

impl Services {
    /// Every backend fails with "no … is configured": steps using them take
    /// their `error` exit (with a `tracing::warn!` from the step).
    pub fn unavailable() -> Self {
        Services {
            directory: Box::new(Unavailable("no caller directory is configured")),
            codes: Box::new(Unavailable("no one-time-code service is configured")),
            totp: Box::new(Unavailable("no TOTP verifier is configured")),
            passphrase: Box::new(Unavailable("no passphrase verifier is configured")),
            webhook: Box::new(Unavailable("no webhook client is configured")),
            handoff: handoff::Handoff::default(),
            default_country: crate::phone::Country::default(),
            speculate_after: None,
        }
    }
}

/// A backend that is not there; carries the reason it reports.
#[derive(Clone, Copy, Debug)]
pub struct Unavailable(pub &'static str);

impl Unavailable {
    fn fail<'a, T: Send + 'a>(&self) -> BoxFut<'a, Result<T, ServiceError>> {
        let reason = self.0.to_string();
        Box::pin(async move { Err(ServiceError::Unavailable(reason)) })
    }
}

impl Directory for Unavailable {
    fn lookup<'a>(
        &'a self,
        _: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        self.fail()
    }
}

impl CodeService for Unavailable {
    fn send<'a>(&'a self, _: &'a CodeRequest) -> BoxFut<'a, Result<SendResult, ServiceError>> {
        self.fail()
    }
    fn verify<'a>(&'a self, _: CodeEntry<'a>) -> BoxFut<'a, Result<CodeCheck, ServiceError>> {
        self.fail()
    }
}

impl TotpVerifier for Unavailable {
    fn verify<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u32,
        _: SystemTime,
    ) -> BoxFut<'a, Result<TotpCheck, ServiceError>> {
        self.fail()
    }
}

impl PassphraseVerifier for Unavailable {
    fn enrolment<'a>(
        &'a self,
        _: &'a PassphraseSubject,
        _: SystemTime,
    ) -> BoxFut<'a, Result<Enrolment, ServiceError>> {
        self.fail()
    }
    fn verify<'a>(
        &'a self,
        _: &'a PassphraseSubject,
        _: &'a str,
        _: f32,
        _: SystemTime,
    ) -> BoxFut<'a, Result<PassphraseVerdict, ServiceError>> {
        self.fail()
    }
}

impl WebhookClient for Unavailable {
    fn call<'a>(
        &'a self,
        _: &'a WebhookRequest,
    ) -> BoxFut<'a, Result<WebhookResponse, ServiceError>> {
        self.fail()
    }
}
