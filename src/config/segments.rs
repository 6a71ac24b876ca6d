//! SMS length: which encoding a text needs (GSM-7 or UCS-2) and how many
//! segments it takes (3GPP TS 23.038 alphabet; 160/153 septets or 70/67
//! UTF-16 units per segment, single/concatenated).

/// The GSM 03.38 basic character set (one septet each; ESC left out).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table (ESC + one septet: two each).
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// How a text is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsEncoding {
    /// The GSM 7-bit default alphabet (with its extension table).
    Gsm7,
    /// UCS-2 (UTF-16 units; anything outside GSM-7).
    Ucs2,
}

impl SmsEncoding {
    /// `GSM-7` / `UCS-2`.
    pub fn as_str(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "GSM-7",
            SmsEncoding::Ucs2 => "UCS-2",
        }
    }

    /// Units in one message alone, and per segment of a concatenated one.
    fn capacity(self) -> (usize, usize) {
        match self {
            SmsEncoding::Gsm7 => (160, 153),
            SmsEncoding::Ucs2 => (70, 67),
        }
    }
}

/// A text's encoding, its length in that encoding's units (septets or
/// UTF-16 units) and its number of segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmsLength {
    /// The encoding the text needs.
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    /// Segments (at least 1).
    pub segments: usize,
}

/// Septets of `c` in GSM-7, `None` when GSM-7 cannot carry it.
fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Measure `text` as a phone would send it.
pub fn measure(text: &str) -> SmsLength {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    let (encoding, sizes) = match gsm {
        Some(s) => (SmsEncoding::Gsm7, s),
        None => (
            SmsEncoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
        ),
    };
    let units: usize = sizes.iter().sum();
    let (single, multi) = encoding.capacity();
    let segments = if units <= single {
        1
    } else {
        // An escape pair or a surrogate pair is never split between two
        // segments: pack greedily.
        let mut segments = 1;
        let mut used = 0;
        for s in sizes {
            if used + s > multi {
                segments += 1;
                used = 0;
            }
            used += s;
        }
        segments
    };
    SmsLength {
        encoding,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_limits() {
        let m = measure(&"a".repeat(160));
        assert_eq!(
            (m.encoding, m.units, m.segments),
            (SmsEncoding::Gsm7, 160, 1)
        );
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(measure(&"a".repeat(306)).segments, 2);
        assert_eq!(measure(&"a".repeat(307)).segments, 3);
        assert_eq!(measure("").segments, 1);
    }

    #[test]
    fn extension_chars_count_two_and_are_not_split() {
        let m = measure(&"€".repeat(80));
        assert_eq!(
            (m.encoding, m.units, m.segments),
            (SmsEncoding::Gsm7, 160, 1)
        );
        assert_eq!(measure(&"€".repeat(81)).segments, 2);
        // 152 septets then an escape pair: the pair moves to segment 2.
        let t = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(measure(&t).units, 164);
        assert_eq!(measure(&t).segments, 2);
        let t = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(measure(&t).units, 306);
        assert_eq!(measure(&t).segments, 3);
    }

    #[test]
    fn ucs2_limits() {
        let m = measure(&"ж".repeat(70));
        assert_eq!(
            (m.encoding, m.units, m.segments),
            (SmsEncoding::Ucs2, 70, 1)
        );
        assert_eq!(measure(&"ж".repeat(71)).segments, 2);
        assert_eq!(measure(&"ж".repeat(134)).segments, 2);
        assert_eq!(measure(&"ж".repeat(135)).segments, 3);
        // One character outside GSM-7 makes the whole text UCS-2.
        let t = format!("{}ç", "a".repeat(69));
        assert_eq!(measure(&t).encoding, SmsEncoding::Ucs2);
        // Emoji are surrogate pairs: two units.
        assert_eq!(measure("🙂").units, 2);
        assert_eq!(measure(&"🙂".repeat(35)).segments, 1);
        assert_eq!(measure(&"🙂".repeat(36)).segments, 2);
    }

    #[test]
    fn gsm_basic_set_is_complete() {
        // 128 code points minus ESC.
        assert_eq!(GSM_BASIC.chars().count(), 127);
        assert_eq!(GSM_EXTENSION.chars().count(), 10);
        // Ç (capital) is in the basic set; ç is not.
        assert_eq!(measure("Ç").encoding, SmsEncoding::Gsm7);
        assert_eq!(measure("ç").encoding, SmsEncoding::Ucs2);
    }
}
