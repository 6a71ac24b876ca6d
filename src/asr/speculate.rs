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
//! The decision is made by the same match rule as without speculation, and
//! on the same audio but in one case: while a pause is being decoded the
//! turn does not end on its usual timer, and an answer with fewer units
//! than the whole one (a caller pausing mid-answer) makes it wait the
//! incomplete wait for the rest ([`Speculation::kept`],
//! [`super::endpoint::Endpointer::pause_heard`]): a caller who goes on is
//! then decided on all they said. [`Speculation`] is that state machine,
//! sans-IO: the caller submits decodes and feeds back answers.
//!
//! A decode costs as much as the turn's own, so a pause is decoded only when
//! its audio can hold the whole answer ([`Gating::Plausible`]): callers pause
//! between digits, and decoding each of those pauses multiplied the CPU of a
//! check by ~4 (bench/README.md, "Speculative decoding"). A skipped pause
//! ends on its timer, as without speculation (the audio's own incomplete
//! wait aside).

use std::time::Duration;

use zeroize::Zeroizing;

use super::answer::{syllables, AnswerLength};
use super::{endpoint, phrase, Heard};

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
    /// How long a whole answer is (digits; syllables of a phrase).
    pub fn length(&self) -> AnswerLength {
        match self {
            Complete::Digits(n) => AnswerLength::digits(*n),
            Complete::Phrase(p) => AnswerLength::phrase(p),
        }
    }

    /// Units in what was heard, counted as [`Complete::length`] counts
    /// the answer's (0 for no speech).
    fn units(&self, heard: &Heard) -> usize {
        let Heard::Speech(r) = heard else {
            return 0;
        };
        match self {
            Complete::Digits(_) => phrase::tokens(&r.text)
                .iter()
                .filter(|w| w.len() == 1 && w.as_bytes()[0].is_ascii_digit())
                .count(),
            Complete::Phrase(_) => syllables(&r.text),
        }
    }

    /// Whether `heard` is a whole answer by this rule.
    pub fn is_complete(&self, heard: &Heard) -> bool {
        let Heard::Speech(r) = heard else {
            return false;
        };
        match self {
            Complete::Digits(n) => phrase::is_digits_of_len(&r.text, *n) && !ends_open(&r.text),
            Complete::Phrase(p) => phrase::matches(p, &r.text),
        }
    }
}

/// Whether a digit answer ends in a number a caller may still be saying:
/// "sixty" (60) or "nineteen hundred" (1900), written so when numbers are
/// allowed, can go on ("sixty-one") after a pause. Such an answer is not
/// whole at a pause: the turn's end decides it. Measured: the set's
/// impostors that said the enrolled 189260 with its last digit changed,
/// "... sixty one", were accepted at the pause before "one" (bench/README.md).
/// Digits said one by one come out one a token ("6 0"), which is whole; so
/// is a number ending in ten ("nineteen ten"), which cannot go on.
fn ends_open(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .rfind(|t| !t.is_empty())
        .is_some_and(|t| t.len() >= 2 && t.ends_with('0') && !t.ends_with("10"))
}

/// Once a pause was decoded to part of the answer, a later pause is decoded
/// only if at the caller's own pace so far its audio holds at least this
/// share of the answer: a caller may speed up a little, not double.
const PACE_SHARE: f64 = 0.9;

/// Speculative decodes per turn at most: a caller talking in bursts must
/// not keep a decoder busy; past it the turn ends on its timer.
pub const MAX_DECODES: u32 = 3;

/// Which pauses are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Every pause (before the gating was measured; the evaluation
    /// compares against it).
    EveryPause,
    /// Only a pause whose audio can hold the whole answer: long enough for
    /// the expected units ([`AnswerLength::can_hold`]), and
    /// after part of the answer was heard, near the whole of it at the
    /// caller's own pace ([`PACE_SHARE`]); at most [`MAX_DECODES`] a turn.
    Plausible,
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
    Decoding { pcm: Vec<i16>, span: Duration },
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
    gating: Gating,
    state: State,
    /// The last part-answer: its span of speech and the units heard in it
    /// (at least one): the caller's pace.
    pace: Option<(Duration, usize)>,
    /// Speculative decodes started this turn.
    started: u32,
    /// Pauses not decoded (their audio could not hold the answer).
    skipped: u32,
    /// One of them gave the turn's result.
    used: bool,
}

impl std::fmt::Debug for Speculation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speculation")
            .field("gating", &self.gating)
            .field("started", &self.started)
            .field("skipped", &self.skipped)
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl Speculation {
    /// A turn whose answers are judged complete by `complete`, decoding
    /// only plausible pauses ([`Gating::Plausible`]).
    pub fn new(complete: Complete) -> Self {
        Self::with_gating(complete, Gating::Plausible)
    }

    /// A turn with the given gating of pauses.
    pub fn with_gating(complete: Complete, gating: Gating) -> Self {
        Speculation {
            complete,
            gating,
            state: State::Idle,
            pace: None,
            started: 0,
            skipped: 0,
            used: false,
        }
    }

    /// The caller paused on `pcm` (an endpointer cut: pre-roll, speech,
    /// tail). True: decode it now (the caller submits it and drops any
    /// decode still under way — its answer would be stale). False: not
    /// worth a decode; the turn ends on its timer unless a later pause is.
    #[must_use]
    pub fn pause(&mut self, pcm: &[i16]) -> bool {
        if matches!(self.state, State::Awaiting | State::Over) {
            return false;
        }
        let span = endpoint::speech_span(pcm.len());
        if self.gating == Gating::Plausible && !self.plausible(span, pcm) {
            self.skipped += 1;
            self.state = State::Idle;
            return false;
        }
        self.started += 1;
        self.state = State::Decoding {
            pcm: pcm.to_vec(),
            span,
        };
        true
    }

    /// Whether `span` of speech can hold the whole answer (see
    /// [`Gating::Plausible`]).
    fn plausible(&self, span: Duration, pcm: &[i16]) -> bool {
        if self.started >= MAX_DECODES {
            return false;
        }
        let length = self.complete.length();
        if span < length.min_span() {
            return false;
        }
        match self.pace {
            Some((heard_span, units)) if !heard_span.is_zero() => {
                let at_pace = span.as_secs_f64() / heard_span.as_secs_f64() * units as f64;
                at_pace >= PACE_SHARE * length.units as f64
            }
            _ => length.bursts_can_hold(pcm),
        }
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
            State::Decoding { pcm, span } => {
                if self.complete.is_complete(&answer) {
                    self.used = true;
                    OnAnswer::Decide(answer)
                } else {
                    let units = self.complete.units(&answer);
                    if units > 0 {
                        self.pace = Some((span, units));
                    }
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

    /// The length of the cut being decoded (None: no decode under way),
    /// for [`super::endpoint::Endpointer::pause_decoding`].
    pub fn decoding_cut(&self) -> Option<usize> {
        match &self.state {
            State::Decoding { pcm, .. } => Some(pcm.len()),
            _ => None,
        }
    }

    /// The kept answer's cut length, and whether it holds fewer units than
    /// the whole answer (digits; syllables of a phrase; nothing heard at
    /// all), for [`super::endpoint::Endpointer::pause_heard`]: the caller
    /// may have paused mid-answer. None when no answer is kept.
    pub fn kept(&self) -> Option<(usize, bool)> {
        match &self.state {
            State::Heard { pcm, answer } => Some((
                pcm.len(),
                self.complete.units(answer) < self.complete.length().units,
            )),
            _ => None,
        }
    }

    /// The turn ended (end-of-speech timer or maximum) with `pcm`.
    pub fn finish(&mut self, pcm: &[i16]) -> OnFinal {
        match std::mem::replace(&mut self.state, State::Over) {
            State::Heard { pcm: p, answer } if p == pcm => {
                self.used = true;
                OnFinal::Use(answer)
            }
            State::Decoding { pcm: p, .. } if p == pcm => {
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

    /// Pauses left undecoded by the gating.
    pub fn skipped(&self) -> u32 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::answer::tests::{cut, spoken};
    use crate::asr::SpeechResult;

    fn said(text: &str) -> Heard {
        Heard::Speech(SpeechResult {
            text: text.into(),
            confidence: 0.9,
        })
    }

    // The state machine itself: every pause decoded (the gating has its
    // own tests below).
    fn digits(n: usize) -> Speculation {
        Speculation::with_gating(Complete::Digits(n), Gating::EveryPause)
    }

    fn phrase(p: &str) -> Speculation {
        Speculation::with_gating(
            Complete::Phrase(Zeroizing::new(p.into())),
            Gating::EveryPause,
        )
    }

    #[test]
    fn a_complete_answer_decides_at_once() {
        let mut s = digits(4);
        assert!(s.pause(&[1, 2, 3]));
        assert!(s.decoding());
        assert_eq!(s.answer(said("4 2 7 1")), OnAnswer::Decide(said("4 2 7 1")));
        assert!(s.used());
        assert_eq!(s.extra_decodes(), 0);
        // The turn's own end (if the media still reports it) decodes nothing.
        let mut s = phrase("purple elephant dance");
        assert!(s.pause(&[5; 10]));
        let heard = said("Purple elephant dance.");
        assert_eq!(s.answer(heard.clone()), OnAnswer::Decide(heard));
    }

    #[test]
    fn a_wrong_digit_string_of_the_right_length_is_complete_too() {
        // Waiting would judge the same audio the same way: a no-match.
        let mut s = digits(4);
        assert!(s.pause(&[1]));
        assert_eq!(
            s.answer(said("uh 9 9 9 9")),
            OnAnswer::Decide(said("uh 9 9 9 9"))
        );
    }

    #[test]
    fn a_number_that_may_go_on_is_not_a_whole_answer() {
        // "eighteen ninety-two sixty" may still become "... sixty-one".
        let mut s = digits(6);
        assert!(s.pause(&[1, 2]));
        assert_eq!(s.answer(said("18 92 60")), OnAnswer::Keep);
        let mut s = digits(6);
        assert!(s.pause(&[1, 2]));
        assert_eq!(s.answer(said("1892 60.")), OnAnswer::Keep);
        // Digits one by one, a number that cannot go on, or no tens at the end: whole.
        for whole in ["1 8 9 2 6 0", "18 92 61", "18 92 6 0", "1892 10", "18 1910"] {
            let mut s = digits(6);
            assert!(s.pause(&[1, 2]));
            assert!(
                matches!(s.answer(said(whole)), OnAnswer::Decide(_)),
                "{whole}"
            );
        }
    }

    #[test]
    fn a_prefix_is_not_complete_and_waits_for_the_timer() {
        let mut s = digits(6);
        assert!(s.pause(&[1, 2]));
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        let mut s = phrase("purple elephant dance");
        assert!(s.pause(&[1, 2]));
        assert_eq!(s.answer(said("purple elephant")), OnAnswer::Keep);
        // Nor is a wrong phrase, nor no speech.
        let mut s = phrase("purple elephant dance");
        assert!(s.pause(&[1, 2]));
        assert_eq!(s.answer(said("purple elephant dense")), OnAnswer::Keep);
        let mut s = digits(4);
        assert!(s.pause(&[1, 2]));
        assert_eq!(s.answer(Heard::Nothing), OnAnswer::Keep);
        // Too many digits is no whole answer of this length either.
        let mut s = digits(4);
        assert!(s.pause(&[1, 2]));
        assert_eq!(s.answer(said("1 2 3 4 5")), OnAnswer::Keep);
    }

    #[test]
    fn a_kept_answer_says_its_cut_and_whether_it_is_short() {
        let mut s = digits(4);
        let pcm = spoken(&[300, 300, 300, 300]);
        assert!(s.pause(&pcm));
        assert_eq!((s.decoding_cut(), s.kept()), (Some(pcm.len()), None));
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        assert_eq!(
            (s.decoding_cut(), s.kept()),
            (None, Some((pcm.len(), true)))
        );
        s.resumed();
        assert_eq!(s.kept(), None);
        // A wrong answer of the whole length is not short.
        let mut s = phrase("purple elephant dance");
        assert!(s.pause(&cut(900)));
        assert_eq!(s.answer(said("purple elephant dense")), OnAnswer::Keep);
        assert_eq!(s.kept(), Some((cut(900).len(), false)));
        let mut s = phrase("purple elephant dance");
        assert!(s.pause(&cut(900)));
        assert_eq!(s.answer(said("purple elephant")), OnAnswer::Keep);
        assert_eq!(s.kept(), Some((cut(900).len(), true)));
    }

    #[test]
    fn a_kept_answer_is_reused_when_the_turn_ends_on_the_same_audio() {
        let mut s = phrase("purple elephant dance");
        assert!(s.pause(&[1, 2, 3]));
        assert_eq!(s.answer(said("purple elephant")), OnAnswer::Keep);
        assert_eq!(s.finish(&[1, 2, 3]), OnFinal::Use(said("purple elephant")));
        assert!(s.used());
        assert_eq!(s.extra_decodes(), 0);
    }

    #[test]
    fn other_final_audio_is_decoded_again() {
        let mut s = digits(6);
        assert!(s.pause(&[1, 2, 3]));
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        // Speech came back without a Resumed seen (e.g. cut by the maximum).
        assert_eq!(s.finish(&[1, 2, 3, 4]), OnFinal::Decode);
        assert!(!s.used());
        assert_eq!(s.extra_decodes(), 1);
    }

    #[test]
    fn resuming_drops_the_answer_and_a_later_pause_starts_again() {
        let mut s = digits(6);
        assert!(s.pause(&[1, 2, 3]));
        s.resumed();
        assert!(!s.decoding());
        // The first decode's answer arrives late: stale, even if complete.
        assert_eq!(s.answer(said("5 7 2 4 7 8")), OnAnswer::Drop);
        assert!(s.pause(&[1, 2, 3, 4, 5]));
        assert_eq!(
            s.answer(said("5 7 2 4 7 8")),
            OnAnswer::Decide(said("5 7 2 4 7 8"))
        );
        assert_eq!(s.extra_decodes(), 1);
    }

    #[test]
    fn a_resume_after_a_kept_answer_means_a_fresh_decode_at_the_end() {
        let mut s = digits(6);
        assert!(s.pause(&[1, 2, 3]));
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        s.resumed();
        assert_eq!(s.finish(&[1, 2, 3]), OnFinal::Decode);
    }

    #[test]
    fn the_end_during_a_decode_of_the_same_audio_awaits_it() {
        let mut s = phrase("silver maple rover");
        assert!(s.pause(&[7; 8]));
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
        assert!(s.pause(&[7; 8]));
        assert_eq!(s.finish(&[7; 9]), OnFinal::Decode);
        assert_eq!(s.answer(said("1 2 3 4")), OnAnswer::Drop);
        assert_eq!(s.extra_decodes(), 1);
    }

    #[test]
    fn the_phrase_stays_out_of_debug() {
        let mut s = phrase("purple elephant dance");
        assert!(!format!("{s:?}").contains("purple"));
        assert!(s.pause(&[1]));
        assert_eq!(s.answer(said("purple elephant")), OnAnswer::Keep);
        assert!(!format!("{s:?}").contains("purple"));
    }

    #[test]
    fn a_pause_that_cannot_hold_the_answer_is_not_decoded() {
        let six = || Speculation::new(Complete::Digits(6));
        // Six digits take at least 6 x 160 ms of speech.
        let mut s = six();
        assert!(!s.pause(&spoken(&[900])));
        assert!(!s.decoding());
        assert_eq!(s.skipped(), 1);
        // The turn then ends on its timer and is decoded as without.
        assert_eq!(s.finish(&spoken(&[900])), OnFinal::Decode);
        assert_eq!(s.extra_decodes(), 0);
        // Three bursts of up to 560 ms hold three digits, not six: a caller
        // pausing between digits, half-way.
        assert!(!six().pause(&spoken(&[400, 560, 300])));
        // Six of them, or fewer and longer ones, can.
        assert!(six().pause(&spoken(&[300, 400, 250, 450, 300, 300])));
        assert!(six().pause(&spoken(&[1200, 1000])));
        assert!(six().pause(&spoken(&[2300])));
    }

    #[test]
    fn after_part_of_the_answer_the_callers_own_pace_decides() {
        let mut s = Speculation::new(Complete::Digits(6));
        assert!(s.pause(&spoken(&[2300])));
        // Three digits in 2.3 s: ~770 ms a digit.
        assert_eq!(s.answer(said("5 7 2")), OnAnswer::Keep);
        s.resumed();
        // 3.5 s holds 4.6 at that pace: not decoded (its bursts would be).
        assert!(!s.pause(&spoken(&[3500])));
        s.resumed();
        // 4.2 s holds 5.5: near enough to six to be worth a decode.
        assert!(s.pause(&spoken(&[4200])));
        assert_eq!(
            s.answer(said("5 7 2 4 7 8")),
            OnAnswer::Decide(said("5 7 2 4 7 8"))
        );
        assert_eq!((s.extra_decodes(), s.skipped()), (1, 1));
    }

    #[test]
    fn a_part_answer_of_no_digits_gives_no_pace() {
        let mut s = Speculation::new(Complete::Digits(4));
        assert!(s.pause(&spoken(&[1800])));
        assert_eq!(s.answer(Heard::Nothing), OnAnswer::Keep);
        s.resumed();
        // Still judged by its bursts.
        assert!(s.pause(&spoken(&[1800])));
        assert!(!s.pause(&spoken(&[400, 400])));
    }

    #[test]
    fn no_more_than_max_decodes_a_turn() {
        let mut s = Speculation::new(Complete::Digits(4));
        for i in 0..MAX_DECODES as usize {
            assert!(s.pause(&spoken(&[1800 + 100 * i])), "pause {i}");
            assert_eq!(s.answer(Heard::Nothing), OnAnswer::Keep);
            s.resumed();
        }
        assert!(!s.pause(&spoken(&[5000])));
        assert_eq!(s.finish(&spoken(&[5000])), OnFinal::Decode);
        assert_eq!(s.extra_decodes(), MAX_DECODES);
        // Without the gating, every pause is decoded.
        let mut s = digits(4);
        for i in 0..=MAX_DECODES as usize {
            assert!(s.pause(&cut(10 * i)));
            s.resumed();
        }
    }

    #[test]
    fn a_phrase_needs_the_span_of_its_syllables() {
        // purple (2) elephant (3) dance (1): at least 600 ms.
        let p = || Complete::Phrase(Zeroizing::new("Purple elephant dance.".into()));
        let mut s = Speculation::new(p());
        assert!(!s.pause(&cut(550)));
        let mut s = Speculation::new(p());
        assert!(s.pause(&cut(650)));
        // "purple" heard in 650 ms: the whole phrase needs ~2 s at that pace.
        assert_eq!(s.answer(said("purple")), OnAnswer::Keep);
        s.resumed();
        assert!(!s.pause(&cut(1200)));
        assert!(s.pause(&cut(1800)));
    }
}
