//! Speculative decoding: answer before the end-of-speech timer runs out.
//!
//! Whisper costs a decode per utterance, started only when the turn ends
//! (800 ms of silence by default), so the caller waits for the timer *and*
//! the decode. Instead, once the endpointer reports a short pause
//! ([`super::endpoint::EndpointEvent::Pause`], ~200 ms, whose audio is the
//! exact cut the turn ends with if the caller stays silent), that audio is
//! decoded at once while the timer goes on:
//! - the caller speaks again: the speculative answer is dropped (a later
//!   pause may start another);
//! - the answer is [`Complete`] (the whole expected phrase; a digit string
//!   of the expected length): the turn is decided now;
//! - otherwise the turn ends on its timer as before, and the speculative
//!   answer is reused when the final audio is the same, else decoded again.
//!
//! The decision is made on the same audio by the same match rule as without
//! speculation; only its time changes. [`Speculation`] is that state
//! machine, sans-IO: the caller submits decodes and feeds back answers.

use std::time::Duration;

use zeroize::Zeroizing;

use super::{phrase, Heard};

/// The default pause before a speculative decode: the endpointer's silent
/// tail, so the pause's audio already is the final cut.
pub const DEFAULT_AFTER: Duration = Duration::from_millis(200);

/// When a speculative transcript is a whole answer, safe to decide on
/// before the end-of-speech timer. Never a prefix of the answer.
#[derive(Clone, PartialEq)]
pub enum Complete {
    /// Exactly this many digits (filler before and after aside), right or
    /// wrong: a digit passphrase of this length was said in full.
    Digits(usize),
    /// Exactly this phrase after normalisation ([`phrase::matches`]); a
    /// secret: not shown by `Debug`.
    Phrase(Zeroizing<String>),
}

impl std::fmt::Debug for Complete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Complete::Digits(n) => write!(f, "Digits({n})"),
            Complete::Phrase(_) => f.write_str("Phrase(..)"),
        }
    }
}

impl Complete {
    /// Whether `heard` is a whole answer by this rule.
    pub fn is_complete(&self, heard: &Heard) -> bool {
        let Heard::Speech(r) = heard else {
            return false;
        };
        match self {
            Complete::Digits(n) => phrase::is_digits_of_len(&r.text, *n),
            Complete::Phrase(p) => phrase::matches(p, &r.text),
        }
    }
}

/// Speculation asked of a recognition: when to decode, and what answer is
/// complete enough to decide on.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyAnswer {
    /// Silence after speech before the speculative decode starts (at least
    /// the endpointer's 200 ms tail is waited for anyway).
    pub after: Duration,
    /// What makes the speculative answer final.
    pub complete: Complete,
}

enum State {
    /// No pause since the caller last spoke.
    Idle,
    /// A decode of `pcm` is under way.
    Decoding { pcm: Vec<i16> },
    /// `pcm` was decoded to an answer that is not complete: kept in case
    /// the turn ends on this same audio.
    Heard { pcm: Vec<i16>, answer: Heard },
    /// The turn ended on the audio being decoded: its answer is the result.
    Awaiting,
    /// The turn is decided (or handed to a fresh decode).
    Over,
}

/// What to do with a speculative answer.
#[derive(Debug, PartialEq)]
pub enum OnAnswer {
    /// This is the turn's result: decide now (the listening can stop).
    Decide(Heard),
    /// Not yet: kept for the end of the turn.
    Keep,
    /// Stale (the caller spoke again since): dropped.
    Drop,
}

/// What to do when the turn ends on its timer.
#[derive(Debug, PartialEq)]
pub enum OnFinal {
    /// The speculative answer is of this very audio: the result.
    Use(Heard),
    /// The speculative decode under way is of this audio: wait for it.
    Await,
    /// Decode the final audio as without speculation.
    Decode,
}

/// One listening turn's speculation; see the module docs. Its `Debug`
/// shows counts only: the answers held are transcripts (secrets).
pub struct Speculation {
    complete: Complete,
    state: State,
    /// Speculative decodes started this turn.
    started: u32,
    /// One of them gave the turn's result.
    used: bool,
}

impl std::fmt::Debug for Speculation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speculation")
            .field("started", &self.started)
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl Speculation {
    /// A turn whose answers are judged complete by `complete`.
    pub fn new(complete: Complete) -> Self {
        Speculation {
            complete,
            state: State::Idle,
            started: 0,
            used: false,
        }
    }

    /// The caller paused on `pcm`: decode it now (the caller submits it and
    /// drops any decode still under way — its answer would be stale).
    pub fn pause(&mut self, pcm: &[i16]) {
        if matches!(self.state, State::Awaiting | State::Over) {
            return;
        }
        self.started += 1;
        self.state = State::Decoding { pcm: pcm.to_vec() };
    }

    /// The caller spoke again, or the speculative decode failed or was
    /// refused: what the pause gave is no answer.
    pub fn resumed(&mut self) {
        if !matches!(self.state, State::Awaiting | State::Over) {
            self.state = State::Idle;
        }
    }

    /// Whether a speculative decode is under way (its answer is awaited).
    pub fn decoding(&self) -> bool {
        matches!(self.state, State::Decoding { .. } | State::Awaiting)
    }

    /// The answer of the speculative decode under way.
    pub fn answer(&mut self, answer: Heard) -> OnAnswer {
        match std::mem::replace(&mut self.state, State::Over) {
            State::Awaiting => {
                self.used = true;
                OnAnswer::Decide(answer)
            }
            State::Decoding { pcm } => {
                if self.complete.is_complete(&answer) {
                    self.used = true;
                    OnAnswer::Decide(answer)
                } else {
                    self.state = State::Heard { pcm, answer };
                    OnAnswer::Keep
                }
            }
            other => {
                self.state = other;
                OnAnswer::Drop
            }
        }
    }

    /// The turn ended (end-of-speech timer or maximum) with `pcm`.
    pub fn finish(&mut self, pcm: &[i16]) -> OnFinal {
        match std::mem::replace(&mut self.state, State::Over) {
            State::Heard { pcm: p, answer } if p == pcm => {
                self.used = true;
                OnFinal::Use(answer)
            }
            State::Decoding { pcm: p } if p == pcm => {
                self.state = State::Awaiting;
                OnFinal::Await
            }
            _ => OnFinal::Decode,
        }
    }

    /// Decodes this turn cost beyond the one a turn without speculation
    /// makes: speculative ones whose answer was not used (when one was
    /// used, no final decode ran).
    pub fn extra_decodes(&self) -> u32 {
        self.started - u32::from(self.used)
    }

    /// Whether a speculative decode gave the turn's result.
    pub fn used(&self) -> bool {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::SpeechResult;

    fn said(text: &str) -> Heard {
        Heard::Speech(SpeechResult {
            text: text.into(),
            confidence: 0.9,
        })
    }

    fn digits(n: usize) -> Speculation {
        Speculation::new(Complete::Digits(n))
    }

    fn phrase(p: &str) -> Speculation {
        Speculation::new(Complete::Phrase(Zeroizing::new(p.into())))
    }

    #[test]
    fn a_complete_answer_decides_at_once() {
        let mut s = digits(4);
        s.pause(&[1, 2, 3]);
        assert!(s.decoding());
        assert_eq!(s.answer(said("4 2 7 1")), OnAnswer::Decide(said("4 2 7 1")));
        assert!(s.used());
        assert_eq!(s.extra_decodes(), 0);
        // The turn's own end (if the media still reports it) decodes nothing.
        let mut s = phrase("purple elephant dance");
        s.pause(&[5; 10]);
        let heard = said("Purple elephant dance.");
        assert_eq!(s.answer(heard.clone()), OnAnswer::Decide(heard));
    }

    #[test]
    fn a_wrong_digit_string_of_the_right_length_is_complete_too() {
        // Waiting would judge the same audio the same way: a no-match.
        let mut s = digits(4);
        s.pause(&[1]);
        assert_eq!(
            s.answer(said("uh 9 9 9 9")),
            OnAnswer::Decide(said("uh 9 9 9 9"))
        );
    }

    #[test]
    fn a_prefix_is_not_complete_and_waits_for_the_timer() {
        let mut s = digits(6);
        s.pause(&[1, 2]);
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        let mut s = phrase("purple elephant dance");
        s.pause(&[1, 2]);
        assert_eq!(s.answer(said("purple elephant")), OnAnswer::Keep);
        // Nor is a wrong phrase, nor no speech.
        let mut s = phrase("purple elephant dance");
        s.pause(&[1, 2]);
        assert_eq!(s.answer(said("purple elephants dance")), OnAnswer::Keep);
        let mut s = digits(4);
        s.pause(&[1, 2]);
        assert_eq!(s.answer(Heard::Nothing), OnAnswer::Keep);
        // Too many digits is no whole answer of this length either.
        let mut s = digits(4);
        s.pause(&[1, 2]);
        assert_eq!(s.answer(said("1 2 3 4 5")), OnAnswer::Keep);
    }

    #[test]
    fn a_kept_answer_is_reused_when_the_turn_ends_on_the_same_audio() {
        let mut s = phrase("purple elephant dance");
        s.pause(&[1, 2, 3]);
        assert_eq!(s.answer(said("purple elephant")), OnAnswer::Keep);
        assert_eq!(s.finish(&[1, 2, 3]), OnFinal::Use(said("purple elephant")));
        assert!(s.used());
        assert_eq!(s.extra_decodes(), 0);
    }

    #[test]
    fn other_final_audio_is_decoded_again() {
        let mut s = digits(6);
        s.pause(&[1, 2, 3]);
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        // Speech came back without a Resumed seen (e.g. cut by the maximum).
        assert_eq!(s.finish(&[1, 2, 3, 4]), OnFinal::Decode);
        assert!(!s.used());
        assert_eq!(s.extra_decodes(), 1);
    }

    #[test]
    fn resuming_drops_the_answer_and_a_later_pause_starts_again() {
        let mut s = digits(6);
        s.pause(&[1, 2, 3]);
        s.resumed();
        assert!(!s.decoding());
        // The first decode's answer arrives late: stale, even if complete.
        assert_eq!(s.answer(said("5 7 2 4 7 8")), OnAnswer::Drop);
        s.pause(&[1, 2, 3, 4, 5]);
        assert_eq!(
            s.answer(said("5 7 2 4 7 8")),
            OnAnswer::Decide(said("5 7 2 4 7 8"))
        );
        assert_eq!(s.extra_decodes(), 1);
    }

    #[test]
    fn a_resume_after_a_kept_answer_means_a_fresh_decode_at_the_end() {
        let mut s = digits(6);
        s.pause(&[1, 2, 3]);
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        s.resumed();
        assert_eq!(s.finish(&[1, 2, 3]), OnFinal::Decode);
    }

    #[test]
    fn the_end_during_a_decode_of_the_same_audio_awaits_it() {
        let mut s = phrase("silver maple rover");
        s.pause(&[7; 8]);
        assert_eq!(s.finish(&[7; 8]), OnFinal::Await);
        assert!(s.decoding());
        // Whatever it says is the result now: the same audio, the same
        // verdict as a decode started at the end.
        assert_eq!(
            s.answer(said("silver maple")),
            OnAnswer::Decide(said("silver maple"))
        );
        assert_eq!(s.extra_decodes(), 0);
        // No second result.
        assert_eq!(s.answer(said("x")), OnAnswer::Drop);
    }

    #[test]
    fn the_end_during_a_decode_of_other_audio_decodes_again() {
        let mut s = digits(4);
        s.pause(&[7; 8]);
        assert_eq!(s.finish(&[7; 9]), OnFinal::Decode);
        assert_eq!(s.answer(said("1 2 3 4")), OnAnswer::Drop);
        assert_eq!(s.extra_decodes(), 1);
    }

    #[test]
    fn the_phrase_stays_out_of_debug() {
        let mut s = phrase("purple elephant dance");
        assert!(!format!("{s:?}").contains("purple"));
        s.pause(&[1]);
        assert_eq!(s.answer(said("purple elephant")), OnAnswer::Keep);
        assert!(!format!("{s:?}").contains("purple"));
    }
}
