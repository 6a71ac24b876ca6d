//! Speech from audio files in flow tests, through the real recogniser.
//!
//! A script line `audio: caller/account.wav` plays that file as the caller's
//! voice through `asr::recording` (telephone quality, the live endpointer,
//! the installed engine), so the test sees the real timing (speech start,
//! end of speech) and the real transcript. This module only finds the engine.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::asr::{self, SpeechEngine};

pub use crate::asr::recording::{hear_file, voice_onset, Simulated};

/// The speech engine for tests, loaded on first use (most tests need none).
#[derive(Debug)]
pub struct SpeechModels {
    dir: PathBuf,
    engine: OnceLock<Result<Arc<dyn SpeechEngine>, String>>,
}

impl SpeechModels {
    /// `dir` is the models directory (`--models`); nothing is read yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpeechModels {
            dir: dir.into(),
            engine: OnceLock::new(),
        }
    }

    /// The engine, loaded on the first call; the outcome (including a load
    /// error, which says how to install a model) is cached for later calls.
    pub fn engine(&self) -> Result<Arc<dyn SpeechEngine>, String> {
        self.engine
            .get_or_init(|| {
                asr::load_default(&self.dir).map_err(|e| {
                    format!("{e} (install it with scripts/fetch-whisper, or pass --models DIR)")
                })
            })
            .clone()
    }
}
