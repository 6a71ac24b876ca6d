//! A cheap look at a datagram's first line before the full SIP parse
//! (issue 16): under a flood of random bytes the parser's ~100 µs per
//! datagram saturated the SIP thread; a datagram that does not even start
//! like SIP is dropped here for the cost of scanning one line.
//!
//! Deliberately lenient, so every message the parser would answer still
//! reaches it (RFC 4475's torture tests keep their answers): a request line
//! is a method token, whitespace, anything, and a last word starting with
//! `SIP/` (any version: `SIP/7.0` must get its 505; extra or trailing
//! whitespace and spaces inside the Request-URI get their 400 from the
//! parser); a status line starts with `SIP/`, a version, whitespace and a
//! digit. Leading CRLFs (RFC 3261 7.5) are skipped; a datagram of nothing
//! but CRLFs (a keepalive) passes on, as before, to be dropped quietly.

/// The first line may be this long at most (a Request-URI longer than this
/// is not one we would serve; the parser's own message cap is larger).
const MAX_START_LINE: usize = 8 * 1024;

/// RFC 3261 25.1 `token` characters (a method name).
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn starts_with_sip_version(word: &[u8]) -> bool {
    word.len() > 4 && word[..4].eq_ignore_ascii_case(b"SIP/")
}

/// Whether `buf` starts like a SIP message (or is only CRLFs); false: drop
/// it without parsing.
pub fn plausible(buf: &[u8]) -> bool {
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let buf = &buf[skip..];
    if buf.is_empty() {
        return true; // a keepalive: the parser's quiet drop handles it
    }
    let window = &buf[..buf.len().min(MAX_START_LINE)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return false; // no line end at all: no header section either
    };
    let line = window[..end].strip_suffix(b"\r").unwrap_or(&window[..end]);
    if line
        .iter()
        .any(|&b| b == 0 || (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return false;
    }
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return false;
    };
    if starts_with_sip_version(first) {
        // Status line: SIP/x.y SP 3DIGIT SP reason.
        return words
            .next()
            .is_some_and(|code| code.first().is_some_and(u8::is_ascii_digit));
    }
    if !first.iter().all(|&b| token_char(b)) {
        return false;
    }
    // Request line: METHOD SP Request-URI SP SIP-Version (the URI may hold
    // stray whitespace the parser refuses with 400).
    let rest: Vec<&[u8]> = words.collect();
    rest.len() >= 2 && rest.last().is_some_and(|v| starts_with_sip_version(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_pass_garbage_does_not() {
        for ok in [
            &b"INVITE sip:bob@example.com SIP/2.0\r\nVia: x\r\n\r\n"[..],
            b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\n",
            b"SIP/2.0 200 OK\r\n",
            b"SIP/2.0 100 \r\n",
            b"OPTIONS sip:t.watson@example.org SIP/7.0\r\n", // badvers: 505 from the parser
            b"INVITE  sip:user@example.com  SIP/2.0\r\n",    // lwsstart
            b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n", // trws
            b"INVITE sip:user@example.com; lr SIP/2.0\r\n",  // lwsruri: 400
            b"NEWMETHOD sip:a@b sip/2.0\n",
            b"\r\n\r\n",
            b"",
        ] {
            assert!(plausible(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"INVITE sip:bob@example.com SIP/2.0", // no line end
            b"INVITE\r\n",
            b"INVITE sip:bob@example.com\r\n",
            b"INV\x00TE sip:b SIP/2.0\r\n",
            b"SIP/2.0 abc\r\n",
            b"<xml> sip:a SIP/2.0\r\n",
            b"   \r\n",
        ] {
            assert!(!plausible(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn random_bytes_are_almost_all_shed() {
        // A xorshift stream: deterministic "random" datagrams of 1..1400 bytes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut passed = 0;
        for _ in 0..10_000 {
            let len = 1 + (next() % 1400) as usize;
            let buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            passed += usize::from(plausible(&buf));
        }
        assert_eq!(passed, 0);
    }
}
