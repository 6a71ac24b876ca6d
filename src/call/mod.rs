//! The one door between a flow and a live call.
//!
//! The flow engine drives a call only through [`CallChannel`]; the SIP/RTP
//! call and the scripted test caller both implement it, so every flow runs
//! offline in tests exactly as it runs on the phone network. The trait is
//! deliberately low level (start a prompt, wait for the next input with a
//! deadline): timeouts, retries and barge-in policy live once, in the steps.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

// Each type lives in the layer that produces it; re-exported here because
// the flows meet them as part of the call.
pub use crate::asr::{RecognitionSpec, SpeechResult};
pub use crate::media::dtmf::DigitSource;
pub use identity::CallerTrust;

/// Facts about the call known at answer time.
#[derive(Clone, Debug)]
pub struct CallInfo {
    /// Wall-clock time the call was answered. Backends that need the time
    /// (code TTLs, TOTP steps) get `answered_at + elapsed()`, never a clock
    /// of their own, so the virtual clock of `voxgate test` drives them too.
    pub answered_at: SystemTime,
    /// Our call id (also in every log line of the call).
    pub call_id: String,
    /// Caller number/user (From or trusted P-Asserted-Identity;
    /// `anonymous` when withheld): see [`identity::identify`].
    pub caller: String,
    /// How far `caller` can be believed.
    pub trust: CallerTrust,
    /// The brand of the dialled number's route ("" for none).
    pub brand: String,
    /// The directory the route names for lookups; `None`: the default.
    pub directory: Option<String>,
    /// Dialled user part of the Request-URI.
    pub dialled: String,
    /// Selected request headers the flow may read (lower-case names).
    pub headers: BTreeMap<String, String>,
}

impl Default for CallInfo {
    fn default() -> Self {
        CallInfo {
            answered_at: SystemTime::UNIX_EPOCH,
            call_id: String::new(),
            caller: String::new(),
            trust: CallerTrust::FromHeader,
            brand: String::new(),
            directory: None,
            dialled: String::new(),
            headers: BTreeMap::new(),
        }
    }
}

/// Something that happened on the call.
#[derive(Clone, Debug, PartialEq)]
pub enum CallInput {
    /// One key press (already de-duplicated across DTMF methods).
    Digit {
        /// `0`–`9`, `*`, `#` or `A`–`D`.
        digit: char,
        /// The DTMF method that delivered it first.
        source: DigitSource,
    },
    /// The prompts started by the last `play` have all been sent.
    PlaybackDone,
    /// Voice activity started (speech barge-in).
    SpeechStarted,
    /// Final recognition result of the running recognition.
    Speech(SpeechResult),
    /// Recognition ended without speech (its own no-input timer).
    NoSpeech,
    /// The recogniser could not produce a result (decoder busy or failed).
    RecognitionFailed(String),
    /// The caller hung up (or the call was torn down).
    HungUp,
}

/// How a transfer reaches the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    /// Blind: REFER the caller to the agent and follow the NOTIFY progress;
    /// a refused or failed REFER is a failure.
    Refer,
    /// voxgate calls the agent itself (B2BUA) and relays media both ways.
    Bridge,
    /// REFER first; a REFER refused (405, 501, 603…), timed out or ending
    /// in a failed sipfrag falls back to the bridge.
    ReferThenBridge,
}

/// What a `transfer` step asks of the call, its templates already rendered
/// and its agent group resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferRequest {
    /// The agents' `sip:`/`sips:`/`tel:` URIs, tried in this order (a
    /// round-robin group arrives already rotated); never empty.
    pub targets: Vec<String>,
    /// SIP headers for the agent (X-… context, User-to-User, the signed
    /// assertion): on the bridged INVITE as headers, on REFER embedded in
    /// the `Refer-To` URI. Never secrets.
    pub headers: Vec<(String, String)>,
    /// REFER, bridge, or REFER falling back to the bridge.
    pub mode: TransferMode,
    /// How long one target may take to answer (or a REFER to report a
    /// final sipfrag) before the next is tried.
    pub attempt_timeout: Duration,
    /// A bridged call is ended (BYE to both legs) after this long.
    pub max_bridge: Duration,
}

/// How a transfer that succeeded reached the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferPath {
    /// The caller's side accepted our REFER and reported a 2xx sipfrag.
    Referred,
    /// We called the agent and bridged the media until one side hung up
    /// (or the bridge's maximum duration).
    Bridged,
}

/// Why a transfer failed: the flow's `transfer.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferFailure {
    /// 486 Busy Here / 600 Busy Everywhere.
    Busy,
    /// 404, 410, 484, 604: no such agent.
    NotFound,
    /// Nobody answered within the attempt timeout.
    NoAnswer,
    /// No answer at all from the agent's address (no provisional either).
    Unreachable,
    /// Any other final refusal (403, 480, 488, 503, 603…), or the caller's
    /// side refused the REFER in `refer` mode.
    Refused,
}

impl TransferFailure {
    /// The reason as flows and records see it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferFailure::Busy => "busy",
            TransferFailure::NotFound => "not_found",
            TransferFailure::NoAnswer => "no_answer",
            TransferFailure::Unreachable => "unreachable",
            TransferFailure::Refused => "refused",
        }
    }

    /// The failure a final non-2xx SIP status means.
    pub fn from_status(status: u16) -> Self {
        match status {
            486 | 600 => TransferFailure::Busy,
            404 | 410 | 484 | 604 => TransferFailure::NotFound,
            408 | 480 => TransferFailure::NoAnswer,
            _ => TransferFailure::Refused,
        }
    }
}

/// How a transfer ended (an error of the call itself is a [`CallError`]).
#[derive(Clone, Debug, PartialEq)]
pub enum TransferOutcome {
    /// The agent had the call; this leg is done.
    Transferred {
        /// The target that took it.
        target: String,
        /// By REFER or by our bridge.
        path: TransferPath,
    },
    /// Every target refused or failed.
    Failed {
        /// The last final SIP status (or sipfrag status); None when there
        /// was none (timeout, unreachable).
        status: Option<u16>,
        /// The flow's `transfer.reason`.
        reason: TransferFailure,
    },
}

/// Why the call could not do what the flow asked. The steps map them
/// (`Abort::from_call`): a hang-up ends the flow, `Unsupported` and `Prompt`
/// fail the step (its `error` exit), `Failed` is a broken call.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallError {
    /// The far end is gone; nothing more can be asked of the call.
    #[error("caller hung up")]
    HungUp,
    /// A feature (named by the first field) this kind of call lacks, e.g.
    /// `recognize` without a speech model; the second field says why.
    #[error("{0} is not available on this call: {1}")]
    Unsupported(&'static str, String),
    /// A prompt (named by the first field) could not be played.
    #[error("prompt {0}: {1}")]
    Prompt(String, String),
    /// The call itself broke (or, in tests, the script cannot go on).
    #[error("call failed: {0}")]
    Failed(String),
}

/// A live (or scripted) call as the flow engine sees it.
///
/// Futures are `Send` so one tokio task can run each call.
pub trait CallChannel: Send {
    /// What was known when the call was answered; fixed for the call.
    fn info(&self) -> &CallInfo;

    /// Time since the call was answered (virtual in tests).
    fn elapsed(&self) -> Duration;

    /// Start playing prompts in order (replacing anything playing);
    /// `CallInput::PlaybackDone` follows when the last frame is sent.
    fn play(&mut self, prompts: &[String]) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Stop playback at once (barge-in).
    fn stop_playback(&mut self) -> impl Future<Output = ()> + Send;

    /// Start listening for speech; results arrive as `CallInput::Speech`/`NoSpeech`.
    fn start_recognition(
        &mut self,
        spec: &RecognitionSpec,
    ) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Watch for the caller starting to talk, without recognising anything
    /// (speech barge-in on prompts): `CallInput::SpeechStarted` when they
    /// do. Ended by `stop_recognition`.
    fn start_voice_detection(&mut self) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Stop listening (recognition or voice detection).
    fn stop_recognition(&mut self) -> impl Future<Output = ()> + Send;

    /// Wait for the next input, at most `timeout` (None = no limit).
    /// `Ok(None)` means the timeout passed with no input.
    fn next_input(
        &mut self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Option<CallInput>, CallError>> + Send;

    /// Hand the call to an agent and wait for the outcome (at most
    /// `req.timeout`); after `Transferred` this leg is done.
    fn transfer(
        &mut self,
        req: &TransferRequest,
    ) -> impl Future<Output = Result<TransferOutcome, CallError>> + Send;

    /// End the call from our side (BYE).
    fn hangup(&mut self) -> impl Future<Output = ()> + Send;

    /// Whether the caller's side already ended the call (BYE, lost media)
    /// before we hung up: after a bridged transfer the flow may still run
    /// bookkeeping steps, and a `hangup` then must not claim the engine did.
    fn ended_by_caller(&self) -> bool {
        false
    }
}

pub mod bridge;
pub mod code_call;
pub mod hold;
pub mod identity;
pub mod rtp_ports;
pub mod setup;
pub mod sip;
