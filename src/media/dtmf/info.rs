//! SIP INFO DTMF body parsing (`application/dtmf-relay`, `application/dtmf`).
//!
//! Why: some trunks only relay DTMF via SIP INFO, and their bodies vary in
//! case, whitespace, line endings and how `*`/`#` are spelled. Parsing is
//! lenient about form but strict about the digit itself.

use thiserror::Error;

use super::Digit;

/// Why an INFO body could not be turned into a digit. The `Display` text is
/// meant to be usable as a SIP reason phrase; [`InfoError::status_code`]
/// picks 415 or 400.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InfoError {
    /// A `Content-Type` other than the two DTMF ones (answered 415); holds
    /// the header as received.
    #[error(
        "unsupported DTMF content type {0:?} (expected application/dtmf-relay or application/dtmf)"
    )]
    UnsupportedContentType(String),
    /// The body is empty or only whitespace.
    #[error("empty DTMF body")]
    EmptyBody,
    /// The body is not UTF-8 text.
    #[error("DTMF body is not valid UTF-8")]
    NotUtf8,
    /// An `application/dtmf-relay` body without a `Signal=` line.
    #[error("dtmf-relay body has no Signal= line")]
    MissingSignal,
    /// The signal is not a DTMF key or event code 0–15; holds at most its
    /// first 32 characters (it is the caller's text).
    #[error("invalid DTMF signal {0:?} (expected 0-9, *, #, A-D or 10/11)")]
    InvalidSignal(String),
}

impl InfoError {
    /// SIP status to answer the INFO with: 415 for content types we do not
    /// understand, 400 for malformed bodies.
    pub fn status_code(&self) -> u16 {
        match self {
            InfoError::UnsupportedContentType(_) => 415,
            _ => 400,
        }
    }
}

/// Parses a DTMF INFO body; returns the digit and the duration in ms if the
/// body carried a valid one.
///
/// A malformed `Duration=` is ignored rather than rejected: the key press is
/// what matters to the IVR flow.
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<(Digit, Option<u32>), InfoError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let relay = match mime.as_str() {
        "application/dtmf-relay" => true,
        "application/dtmf" => false,
        _ => {
            return Err(InfoError::UnsupportedContentType(
                content_type.trim().to_owned(),
            ))
        }
    };
    let text = std::str::from_utf8(body).map_err(|_| InfoError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(InfoError::EmptyBody);
    }
    if !relay {
        return Ok((parse_signal(text)?, None));
    }

    let mut signal = None;
    let mut duration = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("signal") && signal.is_none() {
            signal = Some(parse_signal(value)?);
        } else if key.eq_ignore_ascii_case("duration") && duration.is_none() {
            duration = value.trim().parse::<u32>().ok();
        }
    }
    let digit = signal.ok_or(InfoError::MissingSignal)?;
    Ok((digit, duration))
}

/// `5`, `*`, `#`, `A`-`D` (any case), or numeric event codes such as `10`/`11`.
fn parse_signal(raw: &str) -> Result<Digit, InfoError> {
    let v = raw.trim();
    let invalid = || InfoError::InvalidSignal(v.chars().take(32).collect());
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c).ok_or_else(invalid),
        _ => v
            .parse::<u8>()
            .ok()
            .and_then(Digit::from_event_code)
            .ok_or_else(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ct: &str, body: &str) -> (char, Option<u32>) {
        let (d, dur) = parse_info(ct, body.as_bytes()).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        (d.as_char(), dur)
    }

    #[test]
    fn dtmf_relay_variants() {
        let ct = "application/dtmf-relay";
        assert_eq!(ok(ct, "Signal=5\r\nDuration=160\r\n"), ('5', Some(160)));
        assert_eq!(ok(ct, "signal = 5\nduration= 250"), ('5', Some(250)));
        assert_eq!(ok(ct, "SIGNAL=*\r\nDURATION=100"), ('*', Some(100)));
        assert_eq!(ok(ct, "Signal=#"), ('#', None));
        assert_eq!(ok(ct, "Signal=10\r\nDuration=160"), ('*', Some(160)));
        assert_eq!(ok(ct, "Signal=11"), ('#', None));
        assert_eq!(ok(ct, "Signal=d\r\n"), ('D', None));
        assert_eq!(
            ok(ct, "  Duration=90\r\n\tSignal=\t0 \r\n"),
            ('0', Some(90))
        );
        assert_eq!(ok(ct, "Signal=7\r\nDuration=abc"), ('7', None));
        assert_eq!(ok(ct, "Foo=bar\r\nSignal=B"), ('B', None));
    }

    #[test]
    fn content_type_case_and_parameters() {
        assert_eq!(
            ok("Application/DTMF-Relay; charset=utf-8", "Signal=3"),
            ('3', None)
        );
        assert_eq!(ok(" application/dtmf ", " 9\r\n"), ('9', None));
        assert_eq!(ok("APPLICATION/DTMF;foo=bar", "#"), ('#', None));
        assert_eq!(ok("application/dtmf", "11"), ('#', None));
    }

    #[test]
    fn errors() {
        let relay = "application/dtmf-relay";
        let e = parse_info("text/plain", b"Signal=1").unwrap_err();
        assert_eq!(e.status_code(), 415);
        assert!(e.to_string().contains("text/plain"));
        assert_eq!(parse_info("", b"1").unwrap_err().status_code(), 415);
        assert_eq!(parse_info(relay, b"").unwrap_err(), InfoError::EmptyBody);
        assert_eq!(
            parse_info(relay, b" \r\n").unwrap_err(),
            InfoError::EmptyBody
        );
        assert_eq!(
            parse_info(relay, b"Duration=160").unwrap_err(),
            InfoError::MissingSignal
        );
        assert_eq!(
            parse_info(relay, b"garbage\x01\x02").unwrap_err(),
            InfoError::MissingSignal
        );
        assert_eq!(
            parse_info(relay, &[0xff, 0xfe]).unwrap_err(),
            InfoError::NotUtf8
        );
        for bad in [
            "Signal=",
            "Signal=E",
            "Signal=16",
            "Signal=12345",
            "Signal=55",
        ] {
            let e = parse_info(relay, bad.as_bytes()).unwrap_err();
            assert!(matches!(e, InfoError::InvalidSignal(_)), "{bad}: {e:?}");
            assert_eq!(e.status_code(), 400);
        }
        assert!(matches!(
            parse_info("application/dtmf", b"12x").unwrap_err(),
            InfoError::InvalidSignal(_)
        ));
        // Reason phrase stays short even for huge garbage.
        let huge = format!("Signal={}", "x".repeat(10_000));
        let msg = parse_info(relay, huge.as_bytes()).unwrap_err().to_string();
        assert!(msg.len() < 200, "{}", msg.len());
    }
}
