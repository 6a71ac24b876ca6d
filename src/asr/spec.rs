//! What one listening turn is asked to do: its timers and, for a
//! recognition, what to listen for. Defined here, where the endpointer and
//! the decoders use them; `crate::call` re-exports them for the flows.

use std::time::Duration;

use super::answer::AnswerLength;
use super::speculate::EarlyAnswer;
use super::Hints;

/// The three timers of one listening turn (our own endpointing).
///
/// The one definition: the endpointer runs them, a live call hands them to
/// the media session, a recording is cut with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// No speech started within this → no input.
    pub no_input_timeout: Duration,
    /// This much silence after speech → the utterance ends.
    pub end_of_speech_timeout: Duration,
    /// Speech longer than this is cut → the utterance ends.
    pub max_duration: Duration,
    /// A longer end-of-speech wait while what was said cannot yet hold the
    /// whole answer; None: `end_of_speech_timeout` alone.
    pub incomplete: Option<IncompleteWait>,
}

/// The end-of-speech wait of a turn whose audio cannot yet hold the whole
/// expected answer (VoiceXML's `incompletetimeout`, MRCP's
/// Speech-Incomplete-Timeout): a caller reading a digit passphrase pauses
/// between digits, and on a noisy line the weak edges of a digit ("eigh-t",
/// "s-even") are lost, so a 450 ms pause measured 840 ms and ended the turn
/// after two of six digits (bench/README.md, "Waiting for the rest of the
/// answer"). Judged from the audio alone ([`AnswerLength::can_hold`]),
/// before anything is decoded; once it can hold the answer, the usual
/// `end_of_speech_timeout` applies — unless a speculative decode of the
/// pause heard fewer units than the answer
/// ([`super::endpoint::Endpointer::pause_heard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncompleteWait {
    /// How long the whole answer is.
    pub answer: AnswerLength,
    /// Silence after speech that ends the turn while the audio cannot hold it.
    pub timeout: Duration,
}

impl IncompleteWait {
    /// `verify_passphrase`'s `incomplete_timeout` when a flow does not set it.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1500);
}

impl Timers {
    /// Voice detection only (speech barge-in on a prompt): no-input never
    /// fires, and a short maximum keeps the buffered audio small since only
    /// the start of speech matters.
    pub const VOICE_ONSET: Timers = Timers {
        no_input_timeout: Duration::MAX,
        end_of_speech_timeout: Duration::from_secs(1),
        max_duration: Duration::from_secs(1),
        incomplete: None,
    };

    /// A recording heard from the command line (`recognize`,
    /// `evaluate-passphrases`): a flow's defaults, with room for long strings.
    pub const RECORDING: Timers = Timers {
        no_input_timeout: Duration::from_secs(5),
        end_of_speech_timeout: Duration::from_millis(800),
        max_duration: Duration::from_secs(15),
        incomplete: None,
    };

    /// The longest silence after speech that can end the turn: the
    /// incomplete wait when it is longer than `end_of_speech_timeout`.
    pub fn longest_end_of_speech(&self) -> Duration {
        self.incomplete
            .map_or(self.end_of_speech_timeout, |w| w.timeout)
            .max(self.end_of_speech_timeout)
    }

    /// The same turn while a prompt still plays: the caller's no-input time
    /// starts only when the prompt ends (or is stopped).
    pub fn while_prompting(self) -> Timers {
        Timers {
            no_input_timeout: Duration::MAX,
            ..self
        }
    }
}

/// What speech recognition should listen for (from a flow step).
#[derive(Clone, Debug, PartialEq)]
pub struct RecognitionSpec {
    /// Expected phrases, passed to the decoder as [`Hints::phrases`].
    pub phrases: Vec<String>,
    /// Only digits can be the answer ([`Hints::digits_only`]).
    pub digits_only: bool,
    /// Language tag asked for (e.g. `en-GB`); None = the engine's default.
    /// The call refuses the turn if the engine does not speak it.
    pub language: Option<String>,
    /// How long to wait for speech, for its end, and for the whole utterance.
    pub timers: Timers,
    /// Decode speculatively at a pause and decide at once on a complete
    /// answer ([`super::speculate`]); None: decode when the turn ends.
    pub early: Option<EarlyAnswer>,
    /// A passphrase check: a matched word phrase is confirmed by the second
    /// model when installed ([`Hints::confirm`]).
    pub confirm: bool,
    /// A digit answer's length ([`Hints::digit_answer`]).
    pub digit_answer: Option<usize>,
}

impl RecognitionSpec {
    /// What the decoder is told to expect.
    pub fn hints(&self) -> Hints {
        Hints {
            phrases: self.phrases.clone(),
            digits_only: self.digits_only,
            language: self.language.clone(),
            confirm: self.confirm,
            digit_answer: self.digit_answer,
        }
    }
}
