//! Several engines behind one: each utterance goes to the first engine that
//! speaks the step's language (Whisper for English and for steps that name
//! none, a Vosk model per other language).

use std::sync::Arc;

use super::{AsrError, Heard, Hints, SpeechEngine};

/// The engines a server loaded, in order of preference.
pub struct ByLanguage {
    engines: Vec<Arc<dyn SpeechEngine>>,
    name: String,
}

impl ByLanguage {
    /// `engines` in order of preference (the default-language one first).
    pub fn new(engines: Vec<Arc<dyn SpeechEngine>>) -> ByLanguage {
        let name = engines
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(" + ");
        ByLanguage { engines, name }
    }

    fn pick(&self, language: Option<&str>) -> Option<&Arc<dyn SpeechEngine>> {
        self.engines.iter().find(|e| e.speaks(language))
    }
}

impl SpeechEngine for ByLanguage {
    fn name(&self) -> &str {
        &self.name
    }

    fn speaks(&self, language: Option<&str>) -> bool {
        self.pick(language).is_some()
    }

    fn recognize(&self, pcm_8k: &[i16], hints: &Hints) -> Result<Heard, AsrError> {
        match self.pick(hints.language.as_deref()) {
            Some(e) => e.recognize(pcm_8k, hints),
            None => Err(AsrError::Language(
                hints.language.clone().unwrap_or_default(),
            )),
        }
    }

    fn prepare(&self, language: Option<&str>) -> Result<(), AsrError> {
        match self.pick(language) {
            Some(e) => e.prepare(language),
            None => Err(AsrError::Language(language.unwrap_or_default().into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::SpeechResult;

    struct Named(&'static str, &'static str);

    impl SpeechEngine for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn speaks(&self, language: Option<&str>) -> bool {
            language.unwrap_or("en").starts_with(self.1)
        }
        fn recognize(&self, _: &[i16], _: &Hints) -> Result<Heard, AsrError> {
            Ok(Heard::Speech(SpeechResult {
                text: self.0.into(),
                confidence: 1.0,
            }))
        }
    }

    fn heard(e: &ByLanguage, language: Option<&str>) -> Result<Heard, AsrError> {
        let hints = Hints {
            language: language.map(str::to_string),
            ..Hints::default()
        };
        e.recognize(&[], &hints)
    }

    #[test]
    fn each_utterance_goes_to_the_engine_of_its_language() {
        let e = ByLanguage::new(vec![Arc::new(Named("w", "en")), Arc::new(Named("v", "ko"))]);
        assert_eq!(e.name(), "w + v");
        assert!(e.speaks(None) && e.speaks(Some("ko-KR")) && !e.speaks(Some("fr")));
        let text = |l| match heard(&e, l) {
            Ok(Heard::Speech(r)) => r.text,
            other => panic!("{other:?}"),
        };
        assert_eq!(text(None), "w");
        assert_eq!(text(Some("ko")), "v");
        assert!(matches!(heard(&e, Some("fr")), Err(AsrError::Language(l)) if l == "fr"));
    }
}
