//! On-device speech recognition: a speech endpointer (voice activity and
//! the recognition timers) in front of a decoder that turns one utterance of
//! 8 kHz telephone audio into text.
//!
//! The path of a live recognition: the media session feeds decoded frames to
//! [`endpoint::Endpointer`]; a finished utterance goes to the [`SpeechPool`]
//! (decoder threads off the media and signalling runtimes); the result comes
//! back to the flow as `CallInput::Speech`. The scripted test caller runs the
//! same endpointer and engine over an audio file on its virtual clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod answer;
pub mod bursts;
pub mod by_language;
pub mod confirm;
pub mod endpoint;
pub mod mel;
pub mod phrase;
mod pool;
pub mod recording;
pub mod simulate;
pub mod spec;
pub mod speculate;
pub mod stats;
pub mod vosk;
pub mod whisper;
pub mod window;

pub use pool::{load_at_decoder_priority, SpeechPool, DECODER_NICE};
pub use spec::{IncompleteWait, RecognitionSpec, Timers};

/// A final recognition result.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeechResult {
    /// Transcript (a secret when recognising a passphrase: never logged).
    pub text: String,
    /// 0.0 – 1.0.
    pub confidence: f32,
}

/// What a recognition listens for (from the flow step).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hints {
    /// Expected phrases (may steer the decoder; matching is the step's job).
    pub phrases: Vec<String>,
    /// Only digits can be the answer.
    pub digits_only: bool,
    /// The step's language tag (None = the default, English): picks the
    /// engine when several are loaded ([`by_language::ByLanguage`]).
    pub language: Option<String>,
    /// The phrase is a secret to check (a passphrase): when a second model
    /// is installed it must hear a matched word phrase too ([`confirm`]).
    pub confirm: bool,
    /// With `digits_only`: the answer has exactly this many digits (a digit
    /// passphrase; its length, never its digits). An engine that hears
    /// another count may try again reading numbers ("nineteen eighty six").
    pub digit_answer: Option<usize>,
}

/// What the engine made of one utterance.
#[derive(Clone, Debug, PartialEq)]
pub enum Heard {
    /// Words: the transcript and how sure the decoder is of it.
    Speech(SpeechResult),
    /// Sound, but the decoder judged it not to be speech (cough, line noise).
    Nothing,
}

/// Why a speech engine could not be loaded or an utterance not recognised.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// The model in `dir` is missing or unreadable (at start-up).
    #[error("speech model in {dir}: {reason}")]
    Model {
        /// The model's folder.
        dir: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The decoder failed on this utterance.
    #[error("decoding failed: {0}")]
    Decode(String),
    /// Every decoder's queue is full (the number is the pool's thread
    /// count): refused at once, so the caller hears a re-prompt instead of
    /// waiting.
    #[error("all {0} speech decoders are busy; utterance dropped")]
    Busy(usize),
    /// The step asked for a language the loaded engine does not speak.
    #[error("no speech model for language `{0}` is installed")]
    Language(String),
}

/// A decoder for whole utterances. Blocking: run it on decoder threads.
pub trait SpeechEngine: Send + Sync {
    /// Short name for logs ("whisper tiny.en").
    fn name(&self) -> &str;
    /// Whether this engine understands `language` (None = the default).
    fn speaks(&self, language: Option<&str>) -> bool;
    /// Decode one utterance of 8 kHz mono PCM (what the endpointer cut
    /// out). Blocks for the whole decode.
    fn recognize(&self, pcm_8k: &[i16], hints: &Hints) -> Result<Heard, AsrError>;
    /// Get ready for `language` now (a model loaded on first use is loaded
    /// here), so the first caller does not wait for it. Blocking.
    fn prepare(&self, language: Option<&str>) -> Result<(), AsrError> {
        let _ = language;
        Ok(())
    }
}

impl std::fmt::Debug for dyn SpeechEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Folder under `models/` holding Whisper tiny.en in CTranslate2 format.
pub const WHISPER_DIR: &str = "whisper-tiny.en";

/// Load the default English engine from `models_dir`.
pub fn load_default(models_dir: &Path) -> Result<Arc<dyn SpeechEngine>, AsrError> {
    load_with(models_dir, &whisper::LoadOptions::default())
}

/// [`load_default`] with explicit decoder options (the evaluation compares
/// beam widths).
pub fn load_with(
    models_dir: &Path,
    opts: &whisper::LoadOptions,
) -> Result<Arc<dyn SpeechEngine>, AsrError> {
    let dir = models_dir.join(WHISPER_DIR);
    let engine = whisper::WhisperEngine::load_with(&dir, opts)?;
    Ok(Arc::new(engine))
}

/// What `serve` decodes with: Whisper for English (required), then a Vosk
/// engine for each `models/vosk-<lang>/` folder when this voxgate is built
/// with Vosk, each with room for `threads` decoding threads (one model per
/// thread, loaded on first use). A Vosk folder that cannot be used is
/// logged and skipped. With `confirm`, Whisper's word passphrases are
/// confirmed by Whisper base ([`confirm`]), which must then be installed.
/// `short_window`: Whisper encodes the short window (`window.rs`).
pub fn load_serving(
    models_dir: &Path,
    threads: usize,
    confirm: bool,
    short_window: bool,
) -> Result<Arc<dyn SpeechEngine>, AsrError> {
    let mut whisper = load_with(
        models_dir,
        &whisper::LoadOptions {
            short_window,
            ..whisper::LoadOptions::default()
        },
    )?;
    if confirm {
        whisper = confirmed(whisper, models_dir)?;
    }
    let mut engines = vec![whisper];
    for (lang, dir) in vosk::installed(models_dir) {
        match vosk::VoskEngine::load(&dir, &lang, threads) {
            Ok(e) => engines.push(Arc::new(e)),
            Err(e) => tracing::warn!(error = %e, "speech in this language is off"),
        }
    }
    if engines.len() == 1 {
        return Ok(engines.remove(0));
    }
    Ok(Arc::new(by_language::ByLanguage::new(engines)))
}

/// `first` with its word passphrases confirmed by Whisper base
/// (`passphrase.confirm: whisper-base`). Asked for but not installed or not
/// loadable: an error, so the check fails closed (the step takes `error`)
/// rather than quietly running without the confirmation.
fn confirmed(
    first: Arc<dyn SpeechEngine>,
    models_dir: &Path,
) -> Result<Arc<dyn SpeechEngine>, AsrError> {
    let started = std::time::Instant::now();
    let second = confirm::Confirmer::load(models_dir, &whisper::LoadOptions::default())?
        .ok_or_else(|| AsrError::Model {
            dir: models_dir.join(confirm::CONFIRM_DIR),
            reason: "passphrase.confirm asks for Whisper base, which is not installed (scripts/fetch-whisper base)".into(),
        })?;
    tracing::info!(
        load_ms = started.elapsed().as_millis() as u64,
        "word passphrases confirmed by whisper base"
    );
    Ok(Arc::new(confirm::Confirmed::new(
        first,
        second,
        confirm::SHIPPED_HINT,
    )))
}
