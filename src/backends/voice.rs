//! Codes by voice: an outbound call to the number on file (a landline
//! cannot take a text), through the one configured trunk, that reads an
//! introduction and the code digit by digit, `repeat` times, and hangs up.
//!
//! The backend decides what is said ([`Voice::script`]) and judges the
//! per-destination call limits; placing the call is the call layer's
//! ([`VoiceCaller`], implemented by `call::code_call` and handed in by
//! `serve` through a [`CallerSlot`] once SIP is up), so `backends` never
//! depends on `call` or `sip`.
//!
//! The script names one prompt per digit, so it is as secret as the code:
//! it is wiped after the call and never logged.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use zeroize::Zeroizing;

use super::BoxFut;
use crate::config::voice::VoiceConfig;

/// One outbound code call.
pub struct VoiceCall {
    /// The number to call, E.164 (`+16505550101`): the Request-URI's user.
    pub to: String,
    /// Our From user (the caller id).
    pub from_user: String,
    /// Prompt names to play once answered, in order (the code among them).
    pub script: Zeroizing<Vec<String>>,
    /// Ringing longer than this is no answer (the call is cancelled).
    pub answer_timeout: Duration,
    /// An answered call is hung up after this.
    pub max_duration: Duration,
    /// The inbound caller hung up: cancel or hang up this call.
    pub caller_left: super::caller_left::CallerLeft,
}

/// How a code call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// Answered; `heard_all`: the whole script played before either side
    /// hung up.
    Answered {
        /// Every prompt of the script was sent.
        heard_all: bool,
    },
    /// The callee was busy (486, 600, 603).
    Busy,
    /// Nobody answered within the answer timeout (or 408, 480).
    NoAnswer,
    /// The call could not be placed or was refused; why (no number, no secret).
    Failed(String),
    /// The inbound caller hung up first, so we cancelled the call (ringing)
    /// or hung it up (answered, `heard_all` false or true).
    Cancelled {
        /// It had been answered.
        answered: bool,
    },
}

/// What a code call did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceReport {
    /// How it ended.
    pub result: CallResult,
    /// The final SIP status, when one came.
    pub status: Option<u16>,
    /// The outbound leg's SIP Call-ID (the delivery's message id).
    pub call_id: Option<String>,
    /// From answer to hang-up (zero when not answered).
    pub talk: Duration,
}

/// Places code calls (the call layer implements it).
pub trait VoiceCaller: Send + Sync {
    /// Call `call.to` through the trunk, play the script once answered, hang
    /// up. Never fails as such: every outcome is a [`VoiceReport`].
    fn call<'a>(&'a self, call: &'a VoiceCall) -> BoxFut<'a, VoiceReport>;
}

/// Where `serve` puts the [`VoiceCaller`] once the SIP endpoint exists
/// (the code service is built before it).
#[derive(Clone, Default)]
pub struct CallerSlot(Arc<OnceLock<Arc<dyn VoiceCaller>>>);

impl CallerSlot {
    /// Install the caller (a second call is ignored).
    pub fn set(&self, caller: Arc<dyn VoiceCaller>) {
        let _ = self.0.set(caller);
    }

    /// The caller, once installed.
    pub fn get(&self) -> Option<Arc<dyn VoiceCaller>> {
        self.0.get().cloned()
    }
}

/// The voice channel `StoreCodes` uses.
pub struct Voice {
    /// `codes_voice:`.
    pub cfg: VoiceConfig,
    /// The call layer's caller.
    pub caller: CallerSlot,
    /// Where prompts are looked up (a brand's own wording when present).
    prompts_dir: PathBuf,
}

/// A short silence between the parts of the script and between digits
/// (`prompts/voice/pause.wav`, 0.4 s), so each digit is heard on its own.
pub const PAUSE: &str = "voice/pause";

impl Voice {
    /// The channel for `cfg`, its prompts under `prompts_dir`.
    pub fn new(cfg: VoiceConfig, caller: CallerSlot, prompts_dir: PathBuf) -> Self {
        Voice {
            cfg,
            caller,
            prompts_dir,
        }
    }

    /// `part` (`intro`, `code_is`, `again`, `goodbye`) in the brand's own
    /// wording (`<brand>/voice_<part>`, and in the language when not
    /// English: `<brand>/<lang>/voice_<part>`) when that prompt exists, else
    /// the shared `voice/<part>` (`voice/<lang>/<part>`).
    fn part(&self, brand: &str, language: &str, part: &str) -> String {
        let mut names = Vec::new();
        let lang = language.split('-').next().unwrap_or("en");
        if !brand.is_empty() {
            if lang != "en" {
                names.push(format!("{brand}/{lang}/voice_{part}"));
            }
            names.push(format!("{brand}/voice_{part}"));
        }
        if lang != "en" {
            names.push(format!("voice/{lang}/{part}"));
        }
        let exists = |n: &String| self.prompts_dir.join(format!("{n}.wav")).is_file();
        names
            .into_iter()
            .find(exists)
            .unwrap_or_else(|| format!("voice/{part}"))
    }

    /// The digit `d` in the language (`digits/<lang>/<d>`) when that prompt
    /// exists, else the shared English `digits/<d>`.
    fn digit(&self, language: &str, d: char) -> String {
        let lang = language.split('-').next().unwrap_or("en");
        if lang != "en" {
            let name = format!("digits/{lang}/{d}");
            if self.prompts_dir.join(format!("{name}.wav")).is_file() {
                return name;
            }
        }
        format!("digits/{d}")
    }

    /// What the callee hears: the introduction, then the code digit by
    /// digit (`digits/<d>`, in the language when recorded), `repeat` times,
    /// with pauses, then goodbye.
    pub fn script(&self, brand: &str, language: &str, code: &str) -> Zeroizing<Vec<String>> {
        // 0.4 s between digits, 1.2 s between the parts: each reading of
        // the code is heard (and recognised) as one run of digits.
        let mut s = Zeroizing::new(Vec::new());
        let long = |s: &mut Vec<String>| s.extend([PAUSE, PAUSE, PAUSE].map(String::from));
        s.push(self.part(brand, language, "intro"));
        long(&mut s);
        for round in 0..self.cfg.repeat {
            let lead = if round == 0 { "code_is" } else { "again" };
            s.push(self.part(brand, language, lead));
            long(&mut s);
            for (i, d) in code.chars().filter(char::is_ascii_digit).enumerate() {
                if i > 0 {
                    s.push(PAUSE.to_string());
                }
                s.push(self.digit(language, d));
            }
            long(&mut s);
        }
        s.push(self.part(brand, language, "goodbye"));
        s
    }

    /// The call for `code` to `to`.
    pub fn call_for(&self, to: &str, brand: &str, language: &str, code: &str) -> VoiceCall {
        VoiceCall {
            to: to.to_string(),
            from_user: self.cfg.from_user.clone(),
            script: self.script(brand, language, code),
            answer_timeout: self.cfg.answer_timeout,
            max_duration: self.cfg.max_duration,
            caller_left: Default::default(),
        }
    }

    /// The trunk as deliveries name it (`sip:IP:port`).
    pub fn gateway(&self) -> String {
        format!("sip:{}", self.cfg.trunk)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::SendLimits;

    fn voice(dir: PathBuf, repeat: u32) -> Voice {
        Voice::new(
            VoiceConfig {
                trunk: "127.0.0.1:5060".parse().unwrap(),
                from_user: "voxgate".into(),
                answer_timeout: Duration::from_secs(30),
                max_duration: Duration::from_secs(60),
                repeat,
                per_destination: SendLimits { hour: 3, day: 6 },
                same_code: true,
            },
            CallerSlot::default(),
            dir,
        )
    }

    #[test]
    fn the_script_reads_each_digit_repeat_times_with_pauses() {
        let v = voice(PathBuf::from("/nonexistent"), 2);
        let s = v.script("acme", "en", "407");
        let digits: Vec<&str> = s
            .iter()
            .filter(|p| p.starts_with("digits/"))
            .map(String::as_str)
            .collect();
        assert_eq!(
            digits,
            ["digits/4", "digits/0", "digits/7", "digits/4", "digits/0", "digits/7"]
        );
        assert_eq!(s[0], "voice/intro");
        assert_eq!(s.last().unwrap(), "voice/goodbye");
        assert!(s.contains(&"voice/again".to_string()));
        // Every digit is followed by a pause.
        for (i, p) in s.iter().enumerate() {
            if p.starts_with("digits/") {
                assert_eq!(s[i + 1], PAUSE);
            }
        }
        assert_eq!(
            voice(PathBuf::from("/nonexistent"), 1)
                .script("", "en", "12")
                .iter()
                .filter(|p| p.starts_with("digits/"))
                .count(),
            2
        );
    }

    #[test]
    fn a_spanish_call_reads_the_shipped_spanish_prompts_and_digits() {
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let v = voice(shipped.clone(), 1);
        let s = v.script("", "es-MX", "40");
        assert_eq!(s[0], "voice/es/intro");
        assert!(s.contains(&"voice/es/code_is".to_string()), "{s:?}");
        assert_eq!(s.last().map(String::as_str), Some("voice/es/goodbye"));
        let digits: Vec<&String> = s.iter().filter(|p| p.starts_with("digits/")).collect();
        assert_eq!(digits, ["digits/es/4", "digits/es/0"]);
        for p in s.iter() {
            assert!(
                shipped.join(format!("{p}.wav")).is_file(),
                "{p} not shipped"
            );
        }
        // A language without recordings falls back to English throughout.
        let s = v.script("", "fr", "4");
        assert_eq!(s[0], "voice/intro");
        assert!(s.contains(&"digits/4".to_string()), "{s:?}");
    }

    #[test]
    fn a_brands_own_prompt_wins_when_it_exists() {
        let dir = std::env::temp_dir().join(format!("voxgate-voice-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("acme")).unwrap();
        std::fs::write(dir.join("acme/voice_intro.wav"), b"RIFF").unwrap();
        let v = voice(dir.clone(), 1);
        let s = v.script("acme", "en", "1");
        assert_eq!(s[0], "acme/voice_intro");
        assert_eq!(v.script("other", "en", "1")[0], "voice/intro");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
