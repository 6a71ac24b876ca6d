//! How strong a passphrase must be to be enrolled (`passphrase.enrolment:`).
//!
//! A passphrase is said aloud and guessed against a lockout of a few
//! failures a day, so the guesses a stranger tries first are refused: too
//! few digits or words, one digit repeated, a run of consecutive digits, the
//! account's own phone number (a caller ID is not a secret). The reasons
//! name the rule, never the passphrase.

use thiserror::Error;

use crate::asr::phrase;
use crate::config::EnrolmentRules;

/// Why a passphrase is refused. No variant holds the passphrase or any part of it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Weak {
    /// Nothing is left once spaces and punctuation are cut.
    #[error("the passphrase has no words or digits")]
    Empty,
    /// A digit string shorter than the rules ask.
    #[error("a digit passphrase needs at least {min} digits (this one has {have})")]
    FewDigits {
        /// Digits it has.
        have: usize,
        /// Digits the rules ask for.
        min: u32,
    },
    /// Every digit the same.
    #[error("the passphrase repeats one digit")]
    OneDigit,
    /// Each digit one more, or one less, than the one before (1234, 9876).
    #[error("the passphrase is a run of consecutive digits")]
    Run,
    /// The digits appear in the account's phone number.
    #[error("the passphrase is part of the account's phone number, which callers' IDs show")]
    PhoneNumber,
    /// Word passphrases are not taken here.
    #[error(
        "word passphrases are refused here (passphrase.enrolment.words: refuse); enrol digits"
    )]
    WordsRefused,
    /// Fewer different words than the rules ask.
    #[error("a word passphrase needs at least {min} different words (this one has {have})")]
    FewWords {
        /// Different words it has.
        have: usize,
        /// Different words the rules ask for.
        min: u32,
    },
}

/// Whether `passphrase` may be enrolled for an account whose phone number is
/// `phone` (E.164 or any text: only its digits count), under `rules`.
/// Normalised as a check normalises it ("four two" is the digits 42).
pub fn check(passphrase: &str, phone: Option<&str>, rules: &EnrolmentRules) -> Result<(), Weak> {
    let tokens = phrase::tokens(passphrase);
    if tokens.is_empty() {
        return Err(Weak::Empty);
    }
    if phrase::is_digits(passphrase) {
        let digits: String = tokens.concat();
        let d = digits.as_bytes();
        if d.len() < rules.min_digits as usize {
            return Err(Weak::FewDigits {
                have: d.len(),
                min: rules.min_digits,
            });
        }
        if d.iter().all(|&c| c == d[0]) {
            return Err(Weak::OneDigit);
        }
        let step = |up: bool| {
            d.windows(2).all(|w| {
                let (a, b) = (w[0] - b'0', w[1] - b'0');
                if up {
                    b == (a + 1) % 10
                } else {
                    a == (b + 1) % 10
                }
            })
        };
        if step(true) || step(false) {
            return Err(Weak::Run);
        }
        let own: String = phone
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if own.contains(&digits) {
            return Err(Weak::PhoneNumber);
        }
        return Ok(());
    }
    if !rules.words {
        return Err(Weak::WordsRefused);
    }
    let mut different: Vec<&str> = tokens.iter().map(String::as_str).collect();
    different.sort_unstable();
    different.dedup();
    if different.len() < rules.min_words as usize {
        return Err(Weak::FewWords {
            have: different.len(),
            min: rules.min_words,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EnrolmentRules {
        EnrolmentRules::default()
    }

    #[test]
    fn strong_digits_and_words_are_taken() {
        for p in [
            "863989",
            "4 8 1 3 2 7",
            "eight six three nine eight nine",
            "white horse",
        ] {
            assert_eq!(check(p, Some("+16502530001"), &rules()), Ok(()), "{p}");
        }
        assert_eq!(check("purple elephant dance", None, &rules()), Ok(()));
    }

    #[test]
    fn guessable_digit_strings_are_refused() {
        let r = rules();
        assert_eq!(
            check("4242", None, &r),
            Err(Weak::FewDigits { have: 4, min: 6 })
        );
        assert_eq!(check("000000", None, &r), Err(Weak::OneDigit));
        assert_eq!(
            check("seven seven seven seven seven seven", None, &r),
            Err(Weak::OneDigit)
        );
        assert_eq!(check("123456", None, &r), Err(Weak::Run));
        assert_eq!(check("890123", None, &r), Err(Weak::Run));
        assert_eq!(check("654321", None, &r), Err(Weak::Run));
        assert_eq!(check("210987", None, &r), Err(Weak::Run));
        // Not a run: one step missing.
        assert_eq!(check("123457", None, &r), Ok(()));
        // The caller ID's digits, whole or in part.
        assert_eq!(
            check("2530001", Some("+16502530001"), &r),
            Err(Weak::PhoneNumber)
        );
        assert_eq!(
            check("650253", Some("+1 650 253 0001"), &r),
            Err(Weak::PhoneNumber)
        );
        assert_eq!(check("650254", Some("+16502530001"), &r), Ok(()));
        let longer = EnrolmentRules {
            min_digits: 8,
            ..rules()
        };
        assert_eq!(
            check("863989", None, &longer),
            Err(Weak::FewDigits { have: 6, min: 8 })
        );
    }

    #[test]
    fn word_phrases_need_different_words_and_may_be_refused() {
        let r = rules();
        assert_eq!(
            check("hello", None, &r),
            Err(Weak::FewWords { have: 1, min: 2 })
        );
        assert_eq!(
            check("Hello, hello!", None, &r),
            Err(Weak::FewWords { have: 1, min: 2 })
        );
        assert_eq!(check(" ,.! ", None, &r), Err(Weak::Empty));
        let digits_only = EnrolmentRules {
            words: false,
            ..rules()
        };
        assert_eq!(
            check("white horse", None, &digits_only),
            Err(Weak::WordsRefused)
        );
        assert_eq!(check("863989", None, &digits_only), Ok(()));
    }

    #[test]
    fn reasons_never_hold_the_passphrase() {
        let r = rules();
        for p in ["4242", "000000", "123456", "2530001", "hello"] {
            let e = check(p, Some("+16502530001"), &r).unwrap_err().to_string();
            assert!(!e.contains(p), "{e}");
        }
    }
}
