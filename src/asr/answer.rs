//! How much speech a whole answer takes, judged from the audio alone
//! before anything is decoded: a digit passphrase of n digits, a phrase of
//! n syllables. Speculation decodes a pause only when its audio can hold the
//! answer ([`super::speculate`]); the endpointer waits longer for the end of
//! a turn whose audio cannot yet ([`super::spec::IncompleteWait`]). Rough on
//! purpose and never a verdict: a wrong judgement moves *when* a turn is
//! decoded, not what it decides.

use std::time::Duration;

use super::{bursts, endpoint, phrase};

/// The least span of speech (first sound to last, pauses between included)
/// a digit takes: a fast caller reading digits says ~4 a second; this
/// allows ~6.
const MIN_PER_DIGIT: Duration = Duration::from_millis(160);

/// The same for a syllable of a word phrase (fast speech is ~6–7
/// syllables a second; this allows 10).
const MIN_PER_SYLLABLE: Duration = Duration::from_millis(100);

/// A digit answer's audio holds at most max(1, floor(length / this)) digits
/// per burst of sound ([`bursts`]). A caller pausing between digits says
/// one per burst (a slow, distinct digit takes up to ~560 ms: Allison's
/// recorded digits in bench/passphrase.sh, p90 520 ms, so one such burst
/// counts 1); digits run together take ~300 ms each or more. A caller
/// faster than this within a burst is counted short.
const BURST_PER_DIGIT: Duration = Duration::from_millis(290);

/// Bursts holding this share of the digits are enough: one digit's burst
/// may swallow the next one's weak start.
const BURSTS_SHARE: f64 = 0.9;

/// What a whole answer is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Digits of a digit string.
    Digit,
    /// Syllables of a word phrase ([`syllables`]).
    Syllable,
}

/// The length of a whole answer: a count, never its content (the answer
/// may be a secret; its length is what a caller's timing shows anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerLength {
    /// How many units.
    pub units: usize,
    /// Of what.
    pub unit: Unit,
}

impl AnswerLength {
    /// A digit string of `n` digits.
    pub fn digits(n: usize) -> Self {
        AnswerLength {
            units: n,
            unit: Unit::Digit,
        }
    }

    /// The phrase `text`, by its syllables.
    pub fn phrase(text: &str) -> Self {
        AnswerLength {
            units: syllables(text),
            unit: Unit::Syllable,
        }
    }

    /// The least span of speech the whole answer takes.
    pub fn min_span(&self) -> Duration {
        let per = match self.unit {
            Unit::Digit => MIN_PER_DIGIT,
            Unit::Syllable => MIN_PER_SYLLABLE,
        };
        per.saturating_mul(u32::try_from(self.units).unwrap_or(u32::MAX))
    }

    /// Whether the bursts of sound in `pcm` can hold the answer: for
    /// digits, [`BURST_PER_DIGIT`] each; words run together, so a phrase
    /// has no bursts to count (true).
    pub fn bursts_can_hold(&self, pcm: &[i16]) -> bool {
        match self.unit {
            Unit::Digit => {
                let unit = BURST_PER_DIGIT.as_secs_f64();
                let most: f64 = bursts::bursts(pcm)
                    .iter()
                    .map(|b| (b.as_secs_f64() / unit).floor().max(1.0))
                    .sum();
                most >= BURSTS_SHARE * self.units as f64
            }
            Unit::Syllable => true,
        }
    }

    /// Whether an endpointer cut `pcm` (pre-roll, speech, tail) can hold
    /// the whole answer: its speech spans [`AnswerLength::min_span`] and its
    /// bursts can hold it.
    pub fn can_hold(&self, pcm: &[i16]) -> bool {
        endpoint::speech_span(pcm.len()) >= self.min_span() && self.bursts_can_hold(pcm)
    }
}

/// Syllables of English text, roughly: groups of vowels per word (a final
/// silent `e` aside), a digit one each, at least one per word. Used for
/// a phrase's expected length only, on the phrase and on what was heard
/// alike; an error shifts when a pause is decoded, never a verdict.
pub fn syllables(text: &str) -> usize {
    phrase::tokens(text)
        .iter()
        .map(|w| {
            let b = w.as_bytes();
            if b.iter().all(u8::is_ascii_digit) {
                return b.len();
            }
            let vowel = |c: &u8| b"aeiouy".contains(c);
            let mut groups = 0;
            let mut prev = false;
            for c in b {
                let v = vowel(c);
                if v && !prev {
                    groups += 1;
                }
                prev = v;
            }
            // "dance", "horse": the final e is silent; "the", "free" keep it.
            if groups > 1 && b.ends_with(b"e") && !b.ends_with(b"ee") && !b.ends_with(b"le") {
                groups -= 1;
            }
            groups.max(1)
        })
        .sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An endpointer cut of bursts of sound (`ms` long each) with 300 ms
    /// pauses, after a 300 ms pre-roll and before a 200 ms tail.
    pub(crate) fn spoken(bursts: &[usize]) -> Vec<i16> {
        let mut pcm = vec![0i16; 300 * 8];
        for (i, &ms) in bursts.iter().enumerate() {
            if i > 0 {
                pcm.extend(vec![0i16; 300 * 8]);
            }
            pcm.extend((0..ms * 8).map(|k| (8000.0 * (k as f64 * 0.3).sin()) as i16));
        }
        pcm.extend(vec![0i16; 200 * 8]);
        pcm
    }

    /// An endpointer cut with `ms` of speech span and no sound (a phrase is
    /// judged by its span alone).
    pub(crate) fn cut(ms: usize) -> Vec<i16> {
        vec![0; (300 + ms + 200) * 8]
    }

    #[test]
    fn digits_are_held_by_enough_span_and_bursts() {
        let six = AnswerLength::digits(6);
        // Six digits take at least 6 x 160 ms of speech.
        assert!(!six.can_hold(&spoken(&[900])));
        // Three bursts of up to 560 ms hold three digits, not six.
        assert!(!six.can_hold(&spoken(&[400, 560, 300])));
        // Six of them, or fewer and longer ones, can.
        assert!(six.can_hold(&spoken(&[300, 400, 250, 450, 300, 300])));
        assert!(six.can_hold(&spoken(&[1200, 1000])));
        assert!(six.can_hold(&spoken(&[2300])));
    }

    #[test]
    fn a_phrase_is_held_by_the_span_of_its_syllables() {
        // purple (2) elephant (3) dance (1): at least 600 ms.
        let p = AnswerLength::phrase("Purple elephant dance.");
        assert_eq!(p.units, 6);
        assert!(!p.can_hold(&cut(550)));
        assert!(p.can_hold(&cut(650)));
    }

    #[test]
    fn syllables_are_counted_roughly_right() {
        for (text, n) in [
            ("purple elephant dance", 6),
            ("white horse", 2),
            ("silver maple rover", 6),
            ("the free yellow", 4),
            ("4 2 7 1", 4),
            ("", 0),
        ] {
            assert_eq!(syllables(text), n, "{text}");
        }
    }
}
