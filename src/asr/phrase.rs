//! Comparing what a caller said with an enrolled passphrase.
//!
//! Both sides are normalised the same way: case and punctuation go, number
//! words become digits ("four two" and "42" both read `4 2`, "oh" is zero,
//! "double five" is `5 5`, "forty two" is `4 2`), digit runs split into
//! single digits, and filler before and after ("uh", "my passphrase is",
//! "please") is cut from what was heard; a plural's `s` and a longer word's
//! `-ee`/`-y` ending are one spelling when the two are compared ([`spelling`]).
//! A passphrase matches only when the whole normalised
//! utterance equals the whole normalised phrase — never "contains".

/// Words spoken before the passphrase that carry nothing; longest first.
const LEADING_FILLERS: &[&[&str]] = &[
    &["my", "pass", "phrase", "is"],
    &["my", "passphrase", "is"],
    &["the", "passphrase", "is"],
    &["my", "password", "is"],
    &["my", "pass", "code", "is"],
    &["my", "passcode", "is"],
    &["it", "s"],
    &["it", "is"],
    &["its"],
    &["uh"],
    &["uhm"],
    &["um"],
    &["umm"],
    &["er"],
    &["erm"],
    &["ah"],
    &["hmm"],
    &["mm"],
    &["so"],
    &["well"],
    &["okay"],
    &["ok"],
    &["yes"],
];

/// Words spoken after the passphrase that carry nothing.
const TRAILING_FILLERS: &[&[&str]] = &[
    &["thank", "you"],
    &["thanks"],
    &["please"],
    &["uh"],
    &["um"],
    &["er"],
    &["ah"],
];

fn unit(w: &str) -> Option<u8> {
    Some(match w {
        "zero" | "oh" | "o" | "nought" | "naught" => 0,
        "one" | "won" => 1,
        "two" | "to" | "too" => 2,
        "three" => 3,
        "four" | "for" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" | "ate" => 8,
        "nine" => 9,
        _ => return None,
    })
}

fn teen(w: &str) -> Option<u8> {
    Some(match w {
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        _ => return None,
    })
}

fn tens(w: &str) -> Option<u8> {
    Some(match w {
        "twenty" => 2,
        "thirty" => 3,
        "forty" | "fourty" => 4,
        "fifty" => 5,
        "sixty" => 6,
        "seventy" => 7,
        "eighty" => 8,
        "ninety" => 9,
        _ => return None,
    })
}

/// Lower-case alphanumeric words; apostrophes join (`it's` → `its`), every
/// other non-alphanumeric character separates.
fn words(s: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_alphanumeric() {
            cleaned.extend(c.to_lowercase());
        } else if c == '\'' || c == '’' {
            // "it's" → "its"
        } else {
            cleaned.push(' ');
        }
    }
    cleaned.split_whitespace().map(str::to_string).collect()
}

/// One spelling for the forms of an English word a recogniser writes as it
/// pleases and a caller may not sound: a plural's `s` (before a word starting
/// with s or n it is not heard: Allison's "charlie seconds number" came out
/// "second" in all four takes; "ocean waves", "winter gardens") and the
/// `-ee` / `-ie` / `-ey` / consonant + `-y` ending of a longer word ("yankee"
/// was written "yanky" in three of four takes; "Charley", "Charlie"). Applied
/// to both sides when they are compared ([`keys`]), never to what a grammar
/// is built from ([`tokens`]). Kept short of pairs that sound apart: a plural
/// needs five letters ("news" / "new", "hers" / "her" stay two words), the
/// ending four letters before it ("July" / "Julie", "ally" / "alley", "Mary"
/// / "Marie" stay apart); a few rare pairs still meet (trusty / trustee).
/// A word that would become a filler stays as it is ("wells" is not "well",
/// which a caller's words are cut of). Words other than plain ASCII letters
/// (other scripts, digits) are kept as they are.
fn spelling(w: &str) -> String {
    if w.len() < 5 || !w.bytes().all(|b| b.is_ascii_lowercase()) {
        return w.to_string();
    }
    let mut s = w.to_string();
    if s.ends_with('s') && !(s.ends_with("ss") || s.ends_with("us") || s.ends_with("is")) {
        if s.ends_with("ies") {
            s.truncate(s.len() - 3);
            s.push('y');
        } else if ["sses", "xes", "ches", "shes", "zzes"]
            .iter()
            .any(|e| s.ends_with(e))
        {
            s.truncate(s.len() - 2);
        } else {
            s.pop();
        }
    }
    let vowel = |b: u8| b"aeiouy".contains(&b);
    let b = s.as_bytes();
    let n = b.len();
    let ending = if s.ends_with("ee") || s.ends_with("ie") || s.ends_with("ey") {
        2
    } else if n >= 2 && b[n - 1] == b'y' && !vowel(b[n - 2]) {
        1
    } else {
        0
    };
    if ending > 0 && n - ending >= 4 {
        s.truncate(n - ending);
        s.push('i');
    }
    let filler = LEADING_FILLERS
        .iter()
        .chain(TRAILING_FILLERS)
        .any(|f| f.contains(&s.as_str()));
    if filler && s != w {
        return w.to_string();
    }
    s
}

/// [`tokens`] with one [`spelling`] per word: what comparisons read.
fn keys(s: &str) -> Vec<String> {
    tokens(s).iter().map(|w| spelling(w)).collect()
}

/// The words of a phrase as it would be matched ([`keys`]), less filler
/// before and after it as a caller's words are cut (the longest cut): what
/// `accounts` judges a new passphrase's strength on.
pub fn words_without_fillers(s: &str) -> Vec<String> {
    let k = keys(s);
    let start = starts(&k).into_iter().max().unwrap_or(0);
    let end = ends(&k)
        .into_iter()
        .filter(|&e| e >= start)
        .min()
        .unwrap_or(k.len());
    k[start..end].to_vec()
}

/// A numbers-mode transcript ("40 5 80 5", "40, 5, 80, 5.") read as the
/// numbers a caller said, written apart by spaces: a tens number written
/// apart from the unit after it (20-90, then one digit 1-9) is one number,
/// "45 85". A short pause inside "forty five" makes the decoder write the
/// parts apart (a space or a comma), which would otherwise read as 4 0 5.
/// Full stops and dashes only separate ("40.5", "40-5" stay 40 5). Only for
/// the decode that allows numbers (`whisper.rs`), never for an enrolled
/// phrase or a decode one digit a token: there "40 5" is what was typed or
/// said, 4 0 5. "40 0", "40 58", "10 5", "400 5" stay apart.
pub fn numbers_read(text: &str) -> String {
    // Each number, and whether a pause (space, comma) comes before it.
    let mut nums: Vec<(&str, bool)> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',') {
        let parts = word.split(|c: char| !c.is_ascii_digit());
        for (k, n) in parts.filter(|n| !n.is_empty()).enumerate() {
            nums.push((n, k == 0));
        }
    }
    let tens = |w: &str| matches!(w.as_bytes(), [b'2'..=b'9', b'0']);
    let unit = |w: &str| matches!(w.as_bytes(), [b'1'..=b'9']);
    let mut out: Vec<String> = Vec::with_capacity(nums.len());
    let mut i = 0;
    while i < nums.len() {
        match nums.get(i + 1) {
            Some(&(next, true)) if tens(nums[i].0) && unit(next) => {
                out.push(format!("{}{next}", &nums[i].0[..1]));
                i += 2;
            }
            _ => {
                out.push(nums[i].0.to_string());
                i += 1;
            }
        }
    }
    out.join(" ")
}

/// Number words to digits, digit runs split: every digit its own token.
fn digits_split(ws: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ws.len());
    let mut i = 0;
    let push_digits = |out: &mut Vec<String>, n: u32| {
        for c in n.to_string().chars() {
            out.push(c.to_string());
        }
    };
    while i < ws.len() {
        let w = ws[i].as_str();
        let next = ws.get(i + 1).map(String::as_str);
        if w.chars().all(|c| c.is_ascii_digit()) {
            for c in w.chars() {
                out.push(c.to_string());
            }
        } else if let (true, Some(d)) = (w == "double" || w == "triple", next.and_then(unit)) {
            let times = if w == "double" { 2 } else { 3 };
            for _ in 0..times {
                out.push(d.to_string());
            }
            i += 1;
        } else if let Some(t) = tens(w) {
            match next.and_then(unit).filter(|u| *u > 0) {
                Some(u) => {
                    push_digits(&mut out, u32::from(t) * 10 + u32::from(u));
                    i += 1;
                }
                None => push_digits(&mut out, u32::from(t) * 10),
            }
        } else if let Some(n) = teen(w) {
            push_digits(&mut out, u32::from(n));
        } else if let Some(u) = unit(w) {
            out.push(u.to_string());
        } else {
            out.push(w.to_string());
        }
        i += 1;
    }
    out
}

/// The tokens of `s`: lower-case words, number words as digits, every
/// digit its own token. Fillers stay (see [`matches`]).
pub fn tokens(s: &str) -> Vec<String> {
    digits_split(words(s))
}

/// Every position `toks` can start at after cutting leading fillers.
fn starts(toks: &[String]) -> Vec<usize> {
    let mut found = vec![0];
    let mut i = 0;
    while i < found.len() {
        let at = found[i];
        for f in LEADING_FILLERS {
            let end = at + f.len();
            if end <= toks.len()
                && toks[at..end]
                    .iter()
                    .zip(f.iter())
                    .all(|(a, b)| *a == spelling(b))
                && !found.contains(&end)
            {
                found.push(end);
            }
        }
        i += 1;
    }
    found
}

/// Every position `toks` can end at after cutting trailing fillers.
fn ends(toks: &[String]) -> Vec<usize> {
    let mut found = vec![toks.len()];
    let mut i = 0;
    while i < found.len() {
        let at = found[i];
        for f in TRAILING_FILLERS {
            if let Some(start) = at.checked_sub(f.len()) {
                if toks[start..at]
                    .iter()
                    .zip(f.iter())
                    .all(|(a, b)| *a == spelling(b))
                    && !found.contains(&start)
                {
                    found.push(start);
                }
            }
        }
        i += 1;
    }
    found
}

/// Whether a phrase is a digit string once normalised (then the recogniser
/// listens in digits mode).
pub fn is_digits(phrase: &str) -> bool {
    let t = tokens(phrase);
    !t.is_empty()
        && t.iter()
            .all(|w| w.len() == 1 && w.as_bytes()[0].is_ascii_digit())
}

/// Whether `heard` says exactly `enrolled`: the whole utterance, less filler
/// before and after it, equals the whole phrase. Filler is cut from what was
/// heard only, so a phrase made of filler words is not matched by less of it.
pub fn matches(enrolled: &str, heard: &str) -> bool {
    let e = keys(enrolled);
    if e.is_empty() {
        return false;
    }
    let h = keys(heard);
    if h.len() < e.len() {
        return false;
    }
    let ends = ends(&h);
    starts(&h)
        .into_iter()
        .any(|s| ends.iter().any(|&end| end >= s && h[s..end] == e[..]))
}

/// Whether `heard`, less filler before and after it (as in [`matches`]),
/// is exactly `n` digits: a digit answer of the expected length, right or
/// wrong (what a speculative decode needs to know that the caller is done).
pub fn is_digits_of_len(heard: &str, n: usize) -> bool {
    let h = tokens(heard);
    let digit = |w: &String| w.len() == 1 && w.as_bytes()[0].is_ascii_digit();
    let ends = ends(&h);
    n > 0
        && starts(&h).into_iter().any(|s| {
            ends.iter()
                .any(|&end| end >= s && end - s == n && h[s..end].iter().all(digit))
        })
}

/// How many words `heard` is from `enrolled` (insertions, deletions and
/// substitutions of tokens), filler before and after cut as in [`matches`]:
/// 0 exactly when they match. A number an evaluation may keep, never the words.
pub fn word_edits(enrolled: &str, heard: &str) -> usize {
    let e = keys(enrolled);
    let h = keys(heard);
    let ends = ends(&h);
    starts(&h)
        .into_iter()
        .flat_map(|s| {
            ends.iter()
                .filter(move |&&end| end >= s)
                .map(move |&end| (s, end))
        })
        .map(|(s, end)| levenshtein(&e, &h[s..end]))
        .min()
        .unwrap_or(e.len().max(h.len()))
}

fn levenshtein(a: &[String], b: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let next = (diag + usize::from(x != y))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_a_recogniser_chooses_freely_are_one_word() {
        for (a, b) in [
            ("charlie seconds number", "Charlie second number"),
            ("blue ocean wave", "blue ocean waves"),
            ("frozen winter garden", "frozen winter gardens"),
            ("yankee million sunday", "yanky million sunday"),
            ("charlie", "Charley"),
            ("red berries", "red berry"),
            ("glass boxes", "glass box"),
            ("golden prizes", "golden prize"),
            ("purple elephant dance", "purple elephants dance"),
        ] {
            assert!(matches(a, b), "{a} / {b}");
            assert!(matches(b, a), "{b} / {a}");
        }
        // Words that sound apart stay apart.
        for (a, b) in [
            ("tuesday hotel", "thursday hotel"),
            ("hotel alpha", "hello alpha"),
            ("million june", "billion june"),
            ("green tree", "green try"),
            ("july", "julie"),
            ("ally", "alley"),
            ("mary", "marie"),
            ("news", "new"),
            ("hers", "her"),
            ("hope", "hop"),
            ("glass", "glas"),
            ("money", "many"),
        ] {
            assert!(!matches(a, b), "{a} / {b}");
            assert!(!matches(b, a), "{b} / {a}");
        }
        // A word that would become a filler is not cut as one.
        assert!(!matches("fargo bank", "wells fargo bank"));
        // Fillers are cut in either form.
        assert!(matches("white horse", "white horse thanks"));
        assert!(matches("white horse", "uh white horse thank you"));
        // Every filler word is its own spelling: the lists need no keys.
        for f in LEADING_FILLERS.iter().chain(TRAILING_FILLERS) {
            for w in *f {
                assert_eq!(spelling(w), *w);
            }
        }
        // What grammars are built from keeps the words as written.
        assert_eq!(tokens("blue ocean waves"), vec!["blue", "ocean", "waves"]);
        assert_eq!(keys("fours 42 사과"), vec!["four", "4", "2", "사과"]);
    }

    #[test]
    fn a_phrase_less_its_fillers() {
        assert_eq!(
            words_without_fillers("uh my passphrase is white horses please"),
            vec!["white", "horse"]
        );
        assert_eq!(
            words_without_fillers("123456 please"),
            vec!["1", "2", "3", "4", "5", "6"]
        );
        assert_eq!(words_without_fillers("uh um"), Vec::<String>::new());
    }

    #[test]
    fn a_digit_answer_of_a_given_length() {
        assert!(is_digits_of_len("4 2 7 1", 4));
        assert!(is_digits_of_len("uh, four two seven one please", 4));
        assert!(is_digits_of_len("4271", 4));
        assert!(!is_digits_of_len("4 2 7", 4));
        assert!(!is_digits_of_len("4 2 7 1 5", 4));
        assert!(!is_digits_of_len("4 2 banana 7 1", 4));
        assert!(!is_digits_of_len("", 0));
    }

    #[test]
    fn word_edits_count_words_between_phrase_and_utterance() {
        assert_eq!(word_edits("white horse", "uh, White horse."), 0);
        assert_eq!(word_edits("silver maple river", "silver maple rover"), 1);
        assert_eq!(word_edits("silver maple river", "maple silver river"), 2);
        assert_eq!(word_edits("2 4 6 2", "two four six"), 1);
        assert_eq!(word_edits("white horse", ""), 2);
        assert_eq!(word_edits("", "white"), 1);
    }

    #[test]
    fn words_and_digits_meet() {
        assert_eq!(tokens("Four two seven one."), ["4", "2", "7", "1"]);
        assert_eq!(tokens("4271"), ["4", "2", "7", "1"]);
        assert_eq!(tokens("427 1"), ["4", "2", "7", "1"]);
        assert_eq!(tokens("four-two, seven; one!"), ["4", "2", "7", "1"]);
        assert_eq!(tokens("oh five double nine"), ["0", "5", "9", "9"]);
        assert_eq!(tokens("forty two seventy one"), ["4", "2", "7", "1"]);
        assert_eq!(tokens("twenty"), ["2", "0"]);
        assert_eq!(tokens("nineteen eighty"), ["1", "9", "8", "0"]);
        // What was typed or said one digit a token keeps its digits.
        assert_eq!(tokens("40 5"), ["4", "0", "5"]);
        assert!(is_digits("2 4 6 2") && is_digits("two four six two"));
        assert!(!is_digits("white horse") && !is_digits(""));
    }

    #[test]
    fn a_numbers_decode_reads_a_tens_number_and_its_unit_as_one() {
        assert_eq!(numbers_read("40 5 80 5"), "45 85");
        assert_eq!(numbers_read("30 70 4 0 7"), "30 74 0 7");
        assert_eq!(numbers_read("60 5 80 3 90 7"), "65 83 97");
        // As the decoder punctuates numbers said apart.
        assert_eq!(numbers_read("40, 5, 80, 5."), "45 85");
        assert_eq!(numbers_read("0, 2, 90."), "0 2 90");
        assert_eq!(numbers_read("876-5-0"), "876 5 0");
        // A full stop or a dash inside is not a pause: "forty point five".
        assert_eq!(numbers_read("40.5 80-5"), "40 5 80 5");
        assert_eq!(numbers_read("-40 5"), "45");
        // Only a tens number and one digit 1-9 after it.
        for apart in ["40 0", "40 58", "10 5", "400 5", "4 0 5", "45 85", "40"] {
            assert_eq!(numbers_read(apart), apart);
        }
        // The enrolled 4585 is matched by the numbers read, not by "40 5 8 5"
        // as such: the enrolled side and a decode one digit a token keep 4 0 5.
        assert!(matches("4585", &numbers_read("40 5 80 5")));
        assert!(!matches("4585", "40 5 8 5"));
    }

    #[test]
    fn fillers_before_and_after_are_cut() {
        for said in [
            "Purple elephant dance.",
            "uh, purple elephant dance",
            "My passphrase is purple elephant dance, thank you.",
            "Um. It's purple elephant dance please",
            "okay so purple elephant dance",
        ] {
            assert!(matches("purple elephant dance", said), "{said}");
        }
        assert!(matches("2462", "uh my passcode is two four six two"));
    }

    #[test]
    fn only_the_whole_phrase_matches() {
        let p = "purple elephant dance";
        for said in [
            "purple elephant",
            "purple elephant dance party",
            "the purple elephant dance",
            "elephant purple dance",
            "purple elephant dense",
            "",
            "uh",
        ] {
            assert!(!matches(p, said), "{said}");
        }
        // A plural is the same word (`spelling`): its s is often not heard.
        assert!(matches(p, "purple elephants dance"));
        assert!(!matches("2462", "246"));
        assert!(!matches("2462", "2642"));
        assert!(!matches("2462", "24622"));
        // A phrase that is only filler can never be matched by filler.
        assert!(!matches("", ""));
        // Filler words inside the phrase stay, and less of them is no match.
        assert!(matches("well well well", "well well well"));
        assert!(matches("well well well", "uh, well well well"));
        assert!(!matches("well well well", "well"));
        assert!(!matches("well well well", "well well"));
    }
}
