//! How strong a passphrase must be to be enrolled (`passphrase.enrolment:`).
//!
//! A passphrase is said aloud and guessed against a lockout of a few
//! failures a day, so the guesses a stranger tries first are refused: too
//! few digits or words, fewer than three different digits, a repeated block
//! of digits, a run of consecutive digits, the account's own phone number (a
//! caller ID is not a secret). The reasons name the rule, never the
//! passphrase.

use thiserror::Error;

use crate::asr::phrase;
use crate::config::EnrolmentRules;
use crate::phone::E164;

/// Why a passphrase is refused. No variant holds the passphrase or any part of it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Weak {
    /// Nothing is left once spaces, punctuation and filler are cut.
    #[error("the passphrase has no words or digits beyond filler")]
    Empty,
    /// Filler before or after it ("uh", "please"): a caller's filler is
    /// cut from what was heard, so an enrolled one would have to be said.
    #[error("the passphrase begins or ends with filler (such as \"uh\" or \"please\"); enrol it without")]
    Filler,
    /// A digit string shorter than the rules ask.
    #[error("a digit passphrase needs at least {min} digits (this one has {have})")]
    FewDigits {
        /// Digits it has.
        have: usize,
        /// Digits the rules ask for.
        min: u32,
    },
    /// Fewer than three different digits (000000, 101010).
    #[error("the passphrase has fewer than 3 different digits")]
    FewDifferent,
    /// A block of three digits repeated (123123); a block of two has two
    /// different digits, which [`Weak::FewDifferent`] refuses first.
    #[error("the passphrase repeats a block of digits")]
    Repeated,
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
/// `phone` (E.164), under `rules`. Judged as a check reads it: number words
/// are digits ("four two" is 42), a phrase with digits and words is judged
/// by its words, and filler before or after it is refused (a caller's
/// filler is cut from what was heard, so an enrolled one would have to be
/// said; "123456 please" would also be stored as a word phrase).
pub fn check(passphrase: &str, phone: Option<&E164>, rules: &EnrolmentRules) -> Result<(), Weak> {
    let core = phrase::words_without_fillers(passphrase);
    if core.is_empty() {
        return Err(Weak::Empty);
    }
    if core.len() != phrase::tokens(passphrase).len() {
        return Err(Weak::Filler);
    }
    let is_digit = |w: &String| w.len() == 1 && w.as_bytes()[0].is_ascii_digit();
    let mut words: Vec<&str> = core
        .iter()
        .filter(|w| !is_digit(w))
        .map(String::as_str)
        .collect();
    if words.is_empty() {
        return check_digits(&core.concat(), phone, rules);
    }
    if !rules.words {
        return Err(Weak::WordsRefused);
    }
    words.sort_unstable();
    words.dedup();
    if words.len() < rules.min_words as usize {
        return Err(Weak::FewWords {
            have: words.len(),
            min: rules.min_words,
        });
    }
    Ok(())
}

/// Whether an enrolled `passphrase` is a digit string that comes from
/// `phone` (the [`Weak::PhoneNumber`] rule alone): what changing an
/// account's number re-judges, so that the number a caller rings from is
/// never the secret that proves who they are.
pub fn from_phone(passphrase: &str, phone: &E164) -> bool {
    let core = phrase::words_without_fillers(passphrase);
    let all_digits = core
        .iter()
        .all(|w| w.len() == 1 && w.as_bytes()[0].is_ascii_digit());
    !core.is_empty() && all_digits && from_number(&core.concat(), phone)
}

fn check_digits(digits: &str, phone: Option<&E164>, rules: &EnrolmentRules) -> Result<(), Weak> {
    let d = digits.as_bytes();
    if d.len() < rules.min_digits as usize {
        return Err(Weak::FewDigits {
            have: d.len(),
            min: rules.min_digits,
        });
    }
    let mut different = d.to_vec();
    different.sort_unstable();
    different.dedup();
    // One digit repeated, or two (101010, 111112): far fewer strings.
    if different.len() < 3 {
        return Err(Weak::FewDifferent);
    }
    // A block of three digits repeated: 123123, 908908.
    if d.len() >= 6 && d.iter().enumerate().all(|(i, &c)| c == d[i % 3]) {
        return Err(Weak::Repeated);
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
    // 0 follows 9 on a keypad: 890123 is a run too.
    if step(true) || step(false) {
        return Err(Weak::Run);
    }
    if let Some(phone) = phone {
        if from_number(digits, phone) {
            return Err(Weak::PhoneNumber);
        }
    }
    Ok(())
}

/// Whether `digits` come from the number: inside it, written
/// internationally or nationally (0 and the national number), or holding
/// six of its digits in a row.
fn from_number(digits: &str, phone: &E164) -> bool {
    let international: String = phone
        .as_str()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let mut forms = vec![international.clone()];
    if let Some(cc) = phone.calling_code() {
        if let Some(national) = international.strip_prefix(&cc.to_string()) {
            forms.push(format!("0{national}"));
        }
    }
    const RUN: usize = 6;
    forms.iter().any(|f| {
        f.contains(digits)
            || (f.len() >= RUN && (0..=f.len() - RUN).any(|i| digits.contains(&f[i..i + RUN])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EnrolmentRules {
        EnrolmentRules::default()
    }

    fn us() -> E164 {
        E164::trusted("+16502530001".into())
    }

    #[test]
    fn strong_digits_and_words_are_taken() {
        for p in [
            "863989",
            "4 8 1 3 2 7",
            "eight six three nine eight nine",
            "white horse",
            "white horse 42",
            "112233",
        ] {
            assert_eq!(check(p, Some(&us()), &rules()), Ok(()), "{p}");
        }
        assert_eq!(check("purple elephant dance", None, &rules()), Ok(()));
    }

    #[test]
    fn guessable_digit_strings_are_refused() {
        let r = rules();
        let phone = us();
        let c = |p: &str| check(p, Some(&phone), &r);
        assert_eq!(c("4242"), Err(Weak::FewDigits { have: 4, min: 6 }));
        assert_eq!(c("000000"), Err(Weak::FewDifferent));
        assert_eq!(
            c("seven seven seven seven seven seven"),
            Err(Weak::FewDifferent)
        );
        assert_eq!(c("101010"), Err(Weak::FewDifferent));
        assert_eq!(c("111112"), Err(Weak::FewDifferent));
        assert_eq!(c("121312"), Ok(()));
        assert_eq!(c("123123"), Err(Weak::Repeated));
        assert_eq!(c("12312312"), Err(Weak::Repeated));
        assert_eq!(c("908908"), Err(Weak::Repeated));
        assert_eq!(c("121212"), Err(Weak::FewDifferent));
        assert_eq!(c("123456"), Err(Weak::Run));
        assert_eq!(c("890123"), Err(Weak::Run));
        assert_eq!(c("654321"), Err(Weak::Run));
        assert_eq!(c("210987"), Err(Weak::Run));
        assert_eq!(c("123457"), Ok(()), "one step missing: not a run");
        // Filler around a passphrase is refused: a caller's is cut, so an
        // enrolled one would have to be said (and would hide a weak core).
        assert_eq!(c("123456 please"), Err(Weak::Filler));
        assert_eq!(c("uh 863989"), Err(Weak::Filler));
        assert_eq!(c("uh my passphrase is white horse"), Err(Weak::Filler));
        // The caller ID's digits: inside it, or six of them in a row.
        assert_eq!(c("2530001"), Err(Weak::PhoneNumber));
        assert_eq!(c("650253"), Err(Weak::PhoneNumber));
        assert_eq!(c("65025309"), Err(Weak::PhoneNumber));
        assert_eq!(c("650254"), Ok(()));
        // Written nationally (0 and the national number).
        let uk = E164::trusted("+447700900123".into());
        assert_eq!(check("07700900123", Some(&uk), &r), Err(Weak::PhoneNumber));
        assert_eq!(check("077009", Some(&uk), &r), Err(Weak::PhoneNumber));
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
    fn a_number_change_meets_a_passphrase_from_the_new_number() {
        let new = us();
        assert!(from_phone("6502530001", &new));
        assert!(from_phone("six five oh two five three", &new));
        assert!(!from_phone("863989", &new));
        assert!(!from_phone("purple elephant dance", &new));
        assert!(!from_phone("", &new));
    }

    #[test]
    fn word_phrases_need_different_words_and_may_be_refused() {
        let r = rules();
        // One word however written; digits are not words of the secret;
        // plurals are one word.
        for one in ["hello", "Hello, hello!", "hello 42", "wave waves"] {
            assert_eq!(
                check(one, None, &r),
                Err(Weak::FewWords { have: 1, min: 2 }),
                "{one}"
            );
        }
        assert_eq!(check("hello please", None, &r), Err(Weak::Filler));
        assert_eq!(check(" ,.! ", None, &r), Err(Weak::Empty));
        assert_eq!(check("uh um", None, &r), Err(Weak::Empty));
        let digits_only = EnrolmentRules {
            words: false,
            ..rules()
        };
        assert_eq!(
            check("white horse", None, &digits_only),
            Err(Weak::WordsRefused)
        );
        assert_eq!(check("863989", None, &digits_only), Ok(()));
        assert_eq!(
            check("863989 please", None, &digits_only),
            Err(Weak::Filler)
        );
    }
}
