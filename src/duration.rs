//! The one parser for human durations: `500ms`, `5s`, `2m`, `1h`, or a bare
//! number of seconds (`5`, `0.5`).
//!
//! Two dialects share it. Flows are strict (no `min`, no space before the
//! unit) so a flow file reads one way everywhere; the server config and
//! flow test files also take `min` and `5 s`, as they always have. Ranges
//! are the caller's business (a flow timer, a config limit).

use std::time::Duration;

use thiserror::Error;

/// Which spellings are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Flow files: `ms`, `s`, `m`, `h` right after the number.
    Flow,
    /// Config and test files: also `min`, and spaces before the unit.
    Lenient,
}

/// Why a duration was refused; callers add the field name and location.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DurationError {
    /// The part before the unit is empty or not a decimal number.
    #[error("not a number")]
    NotANumber,
    /// A unit the dialect does not accept (e.g. `min` in a flow); holds the unit as written.
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
    /// Beyond what a `Duration` can hold (or not finite).
    #[error("too large")]
    TooLarge,
}

/// Parse `s` (trimmed) in `dialect`. Never negative.
pub fn parse(s: &str, dialect: Dialect) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| DurationError::NotANumber)?;
    let unit = match dialect {
        Dialect::Flow => unit,
        Dialect::Lenient => unit.trim(),
    };
    let secs = match (unit, dialect) {
        ("ms", _) => n / 1000.0,
        ("" | "s", _) => n,
        ("m", _) | ("min", Dialect::Lenient) => n * 60.0,
        ("h", _) => n * 3600.0,
        (other, _) => return Err(DurationError::UnknownUnit(other.to_string())),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| DurationError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects() {
        for d in [Dialect::Flow, Dialect::Lenient] {
            assert_eq!(parse("500ms", d), Ok(Duration::from_millis(500)));
            assert_eq!(parse("1.5s", d), Ok(Duration::from_millis(1500)));
            assert_eq!(parse(" 2m ", d), Ok(Duration::from_secs(120)));
            assert_eq!(parse("7", d), Ok(Duration::from_secs(7)));
            assert_eq!(parse("-1s", d), Err(DurationError::NotANumber));
            assert_eq!(parse("5S", d), Err(DurationError::UnknownUnit("S".into())));
        }
        assert_eq!(
            parse("2min", Dialect::Lenient),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(parse("5 s", Dialect::Lenient), Ok(Duration::from_secs(5)));
        assert!(parse("2min", Dialect::Flow).is_err());
        assert!(parse("5 s", Dialect::Flow).is_err());
    }
}
