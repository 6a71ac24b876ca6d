//! Telephone numbers: every number voxgate stores or looks up is E.164
//! (`+15551230001`), normalised with libphonenumber's metadata (the
//! `phonenumber` crate) and a default country for national formats.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;

/// A valid number in E.164 form (`+` and up to 15 digits).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct E164(String);

impl E164 {
    /// A number the store wrote after normalising it (not re-checked).
    pub(crate) fn trusted(e164: String) -> E164 {
        E164(e164)
    }

    /// The number as `+CC…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What libphonenumber's metadata says this number is.
    pub fn line_type(&self) -> LineType {
        match phonenumber::parse(None, &self.0) {
            Ok(n) => LineType::from_metadata(n.number_type(&phonenumber::metadata::DATABASE)),
            Err(_) => LineType::Unknown,
        }
    }

    /// The country calling code (`1`, `44`).
    pub fn calling_code(&self) -> Option<u16> {
        let n = phonenumber::parse(None, &self.0).ok()?;
        Some(n.country().code())
    }

    /// The ISO 3166 country of the number (`US`, `GB`), when the metadata
    /// places it in exactly one.
    pub fn country(&self) -> Option<String> {
        let n = phonenumber::parse(None, &self.0).ok()?;
        n.country().id().map(|id| format!("{id:?}"))
    }

    /// The ISO 3166 country of the number, or, when libphonenumber cannot
    /// place it (a number its plan calls invalid, e.g. a `+44` one too
    /// short), the main region of its calling code (`+44` → `GB`, `+1` →
    /// `US`); None for non-geographic codes (`+800`) and unparseable input.
    pub fn country_or_region(&self) -> Option<String> {
        self.country().or_else(|| {
            let code = self.calling_code()?;
            let regions = phonenumber::metadata::DATABASE.region(&code)?;
            let main = regions.first()?;
            // Non-geographic entities are `001`.
            (main.len() == 2 && main.bytes().all(|b| b.is_ascii_uppercase()))
                .then(|| main.to_string())
        })
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A country for numbers written in national format (`(555) 123-0001`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Country(country::Id);

impl Default for Country {
    fn default() -> Self {
        Country(country::Id::US)
    }
}

impl FromStr for Country {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .to_ascii_uppercase()
            .parse::<country::Id>()
            .map(Country)
            .map_err(|_| format!("`{s}` is not an ISO 3166 country code (e.g. US, GB, IN)"))
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Why a string is not a usable number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Nothing that reads as a phone number.
    #[error("`{0}` is not a phone number")]
    NotANumber(String),
    /// Parsed, but no such number exists in that country's numbering plan.
    #[error("`{number}` is not a valid number in {country}'s numbering plan")]
    Invalid {
        /// The input.
        number: String,
        /// The country it was read in (its own `+CC` or the default).
        country: String,
    },
}

/// `raw` in E.164: `+…` is read as international; anything else in
/// `default_country`'s national format. SIP user parts may carry visual
/// separators (`-`, `.`, spaces, parentheses) and a `;phone-context`-free
/// number only; `tel:`-style parameters are cut.
pub fn normalise(raw: &str, default_country: Country) -> Result<E164, NumberError> {
    let cleaned = raw.split(';').next().unwrap_or("").trim();
    if cleaned.is_empty()
        || !cleaned
            .chars()
            .all(|c| c.is_ascii_digit() || " +-.()/".contains(c))
        || !cleaned.chars().any(|c| c.is_ascii_digit())
    {
        return Err(NumberError::NotANumber(raw.to_string()));
    }
    // "00" international prefix (most of the world) is read as "+".
    let cleaned = match cleaned.strip_prefix("00") {
        Some(rest) if !cleaned.starts_with('+') && default_country.0 != country::Id::US => {
            format!("+{rest}")
        }
        _ => cleaned.to_string(),
    };
    let parsed = phonenumber::parse(Some(default_country.0), &cleaned)
        .map_err(|_| NumberError::NotANumber(raw.to_string()))?;
    if !phonenumber::is_valid(&parsed) {
        let country = parsed
            .country()
            .id()
            .map_or_else(|| default_country.to_string(), |id| format!("{id:?}"));
        return Err(NumberError::Invalid {
            number: raw.to_string(),
            country,
        });
    }
    let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
    Ok(E164(e164))
}

/// `raw` in E.164 for a lookup: like [`normalise`] but a number the
/// numbering plan does not know (`+1 555 …`) is still written in E.164,
/// since it can only miss (stored numbers are valid). `None`: not a number.
pub fn for_lookup(raw: &str, default_country: Country) -> Option<E164> {
    match normalise(raw, default_country) {
        Ok(n) => Some(n),
        Err(NumberError::Invalid { .. }) => {
            let cleaned = raw.split(';').next().unwrap_or("").trim();
            let parsed = phonenumber::parse(Some(default_country.0), cleaned).ok()?;
            Some(E164(
                parsed.format().mode(phonenumber::Mode::E164).to_string(),
            ))
        }
        Err(NumberError::NotANumber(_)) => None,
    }
}

/// What kind of line a number is; flows read it as `account.line_type` so
/// a code can go by voice to a landline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineType {
    /// A mobile phone: SMS reaches it.
    Mobile,
    /// A fixed line (landline): SMS usually does not.
    Landline,
    /// An internet telephony number.
    Voip,
    /// A toll-free number.
    TollFree,
    /// The metadata cannot tell (or says "fixed line or mobile").
    Unknown,
}

impl LineType {
    /// Every value, in the order flows see them documented.
    pub const ALL: [LineType; 5] = [
        LineType::Mobile,
        LineType::Landline,
        LineType::Voip,
        LineType::TollFree,
        LineType::Unknown,
    ];

    /// The name flows and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            LineType::Mobile => "mobile",
            LineType::Landline => "landline",
            LineType::Voip => "voip",
            LineType::TollFree => "toll_free",
            LineType::Unknown => "unknown",
        }
    }

    fn from_metadata(t: phonenumber::Type) -> LineType {
        use phonenumber::Type as T;
        match t {
            T::Mobile => LineType::Mobile,
            T::FixedLine => LineType::Landline,
            T::Voip => LineType::Voip,
            T::TollFree => LineType::TollFree,
            _ => LineType::Unknown,
        }
    }
}

impl FromStr for LineType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "fixed_line" | "fixed" => return Ok(LineType::Landline),
            "toll-free" | "tollfree" => return Ok(LineType::TollFree),
            _ => {}
        }
        LineType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not a line type (mobile, landline, voip, toll_free, unknown)")
            })
    }
}

impl fmt::Display for LineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Country {
        Country::default()
    }

    #[test]
    fn an_invalid_number_takes_its_calling_codes_main_region() {
        let short_uk = for_lookup("+44207946", us()).unwrap();
        assert!(
            normalise("+44207946", us()).is_err(),
            "invalid in the UK plan"
        );
        assert_eq!(short_uk.country(), None);
        assert_eq!(short_uk.country_or_region().as_deref(), Some("GB"));
        // A valid number keeps the country the metadata places it in.
        let valid_uk = for_lookup("+442079460123", us()).unwrap();
        assert_eq!(valid_uk.country_or_region().as_deref(), Some("GB"));
        // Non-geographic codes have no region.
        let intl = E164::trusted("+80012345".into());
        assert_eq!(intl.country_or_region(), None);
    }

    #[test]
    fn national_and_international_forms_meet_in_e164() {
        for raw in [
            "+1 650-253-0000",
            "(650) 253-0000",
            "6502530000",
            "+16502530000",
            "1-650-253-0000",
        ] {
            assert_eq!(
                normalise(raw, us()).unwrap().as_str(),
                "+16502530000",
                "{raw}"
            );
        }
        let gb: Country = "gb".parse().unwrap();
        assert_eq!(
            normalise("020 7946 0018", gb).unwrap().as_str(),
            "+442079460018"
        );
        assert_eq!(
            normalise("0044 20 7946 0018", gb).unwrap().as_str(),
            "+442079460018"
        );
        assert_eq!(
            normalise("07911 123456", gb).unwrap().as_str(),
            "+447911123456"
        );
    }

    #[test]
    fn garbage_and_impossible_numbers_are_refused_with_the_reason() {
        assert!(matches!(
            normalise("alice", us()),
            Err(NumberError::NotANumber(_))
        ));
        assert!(matches!(
            normalise("", us()),
            Err(NumberError::NotANumber(_))
        ));
        assert!(matches!(
            normalise("+1 555", us()),
            Err(NumberError::Invalid { .. })
        ));
        let e = normalise("123", us()).unwrap_err().to_string();
        assert!(e.contains("123"), "{e}");
        assert!("XX".parse::<Country>().is_err());
        assert_eq!(
            for_lookup("+1 555 123 0001", us()).unwrap().as_str(),
            "+15551230001"
        );
        assert_eq!(
            for_lookup("5551230001", us()).unwrap().as_str(),
            "+15551230001"
        );
        assert_eq!(for_lookup("anonymous", us()), None);
    }

    #[test]
    fn line_types_come_from_the_metadata() {
        let gb: Country = "GB".parse().unwrap();
        assert_eq!(
            normalise("07911 123456", gb).unwrap().line_type(),
            LineType::Mobile
        );
        assert_eq!(
            normalise("020 7946 0018", gb).unwrap().line_type(),
            LineType::Landline
        );
        assert_eq!(
            normalise("+1 800 555 0199", us()).unwrap().line_type(),
            LineType::TollFree
        );
        assert_eq!(
            "fixed_line".parse::<LineType>().unwrap(),
            LineType::Landline
        );
        assert!("fax".parse::<LineType>().is_err());
    }
}
