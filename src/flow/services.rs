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
use std::time::Duration;

use thiserror::Error;

use crate::flow::model::CodeChannel;

/// A boxed `Send` future borrowing from the backend and its arguments.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fields of an account (become `account.<field>` variables).
pub type Account = BTreeMap<String, String>;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ServiceError {
    /// The backend is not configured on this server.
    #[error("{0}")]
    Unavailable(String),
    /// The backend did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

/// Caller directory: number → account.
pub trait Directory: Send + Sync {
    /// `Ok(None)` = no account for this number.
    fn lookup<'a>(&'a self, number: &'a str) -> BoxFut<'a, Result<Option<Account>, ServiceError>>;
}

/// A request to send a one-time code.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeRequest {
    /// Codes are keyed by call: one pending code per call.
    pub call_id: String,
    pub channel: CodeChannel,
    pub to: String,
    pub length: u32,
    pub ttl: Duration,
    pub max_attempts: u32,
    pub resend_cooldown: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendResult {
    Sent,
    RateLimited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    Ok,
    /// Wrong code; more attempts allowed by the backend.
    Wrong,
    /// Wrong code and the backend burnt it (attempts used up).
    Exhausted,
    Expired,
    /// No code was sent on this call.
    NotSent,
}

pub trait CodeService: Send + Sync {
    fn send<'a>(&'a self, req: &'a CodeRequest) -> BoxFut<'a, Result<SendResult, ServiceError>>;
    fn verify<'a>(
        &'a self,
        call_id: &'a str,
        entered: &'a str,
    ) -> BoxFut<'a, Result<CodeCheck, ServiceError>>;
}

pub trait TotpVerifier: Send + Sync {
    /// `subject` is `account.id` when known, else the caller number.
    fn verify<'a>(
        &'a self,
        subject: &'a str,
        code: &'a str,
        window: u32,
    ) -> BoxFut<'a, Result<bool, ServiceError>>;
}

pub trait PassphraseVerifier: Send + Sync {
    /// `subject` is `account.phone` when known, else the caller number.
    /// The transcript is a secret: implementations must not log it.
    fn verify<'a>(
        &'a self,
        subject: &'a str,
        transcript: &'a str,
    ) -> BoxFut<'a, Result<bool, ServiceError>>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRequest {
    pub url: String,
    pub post: bool,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Map<String, serde_json::Value>,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

pub trait WebhookClient: Send + Sync {
    /// `Err(ServiceError::Timeout)` when `req.timeout` passed.
    fn call<'a>(
        &'a self,
        req: &'a WebhookRequest,
    ) -> BoxFut<'a, Result<WebhookResponse, ServiceError>>;
}

/// Everything the steps can call.
pub struct Services {
    pub directory: Box<dyn Directory>,
    pub codes: Box<dyn CodeService>,
    pub totp: Box<dyn TotpVerifier>,
    pub passphrase: Box<dyn PassphraseVerifier>,
    pub webhook: Box<dyn WebhookClient>,
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
    fn lookup<'a>(&'a self, _: &'a str) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        self.fail()
    }
}

impl CodeService for Unavailable {
    fn send<'a>(&'a self, _: &'a CodeRequest) -> BoxFut<'a, Result<SendResult, ServiceError>> {
        self.fail()
    }
    fn verify<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFut<'a, Result<CodeCheck, ServiceError>> {
        self.fail()
    }
}

impl TotpVerifier for Unavailable {
    fn verify<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u32,
    ) -> BoxFut<'a, Result<bool, ServiceError>> {
        self.fail()
    }
}

impl PassphraseVerifier for Unavailable {
    fn verify<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFut<'a, Result<bool, ServiceError>> {
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
