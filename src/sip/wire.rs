//! SIP wire layer: raw bytes in, a parsed [`rsipstack::sip`] message or a precise
//! [`Rejection`] out.
//!
//! Why this exists: rsipstack's transport silently drops whatever its parser rejects,
//! and its parser is lenient where RFC 3261 / RFC 4475 demand a rejection (it ignores
//! lines without a colon, treats a bad Content-Length as 0, accepts any amount of
//! whitespace in the Request-Line, never looks inside To/From/Via, ...). We own the
//! socket, so every datagram or framed stream message goes through [`parse_message`]
//! first: it validates the syntax rsipstack does not, and only then hands the bytes to
//! rsipstack's parser to build the message model.
//!
//! Decisions that are not obvious from the API:
//! * A malformed request is answered ([`Rejection::Reply`]) whenever a Via and a CSeq
//!   can be recovered: that is all a client needs to match the response to its
//!   transaction (RFC 3261 17.1.3). Missing From/To/Call-ID are left empty in the
//!   [`ReplyContext`] (RFC 4475 3.3.1 `insuf` expects a 400 although they are absent).
//! * A malformed ACK is never answered (RFC 3261 17: ACK gets no response) and a
//!   malformed response is always dropped.
//! * rsipstack's [`rsipstack::sip::Method`] is a closed enum, so a well-formed request
//!   with an extension method cannot be represented: it is answered here with
//!   `501 Not Implemented`, the answer RFC 3261 8.2.1 requires for unknown methods.
//! * Max-Forwards: 0 is accepted: we are an endpoint, and RFC 4475 3.3.11 says an
//!   endpoint processes such a request normally (only proxies answer 483).
//!
//! The RFC 4475 outcome table lives in `docs/rfc4475.md` and in the conformance test
//! at the bottom of this file.

use rsipstack::sip::{Request, Response, SipMessage};

/// Largest message accepted on a stream or datagram (bytes, headers + body).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The transport a message arrived on; it changes how Content-Length is enforced
/// (RFC 3261 18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram is one message; a missing Content-Length means "to the end".
    Udp,
    /// A framed stream message; Content-Length is mandatory.
    Tcp,
}

/// A syntactically valid message, parsed by rsipstack (body already cut to
/// Content-Length).
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A request, for [`crate::sip::core::Core::handle_request`].
    Request(Request),
    /// A response, for [`crate::sip::core::Core::handle_response`].
    Response(Response),
}

/// Enough of a broken request to answer it (RFC 3261 8.2.6.2: copy Via, From, To,
/// Call-ID, CSeq). Values are raw header values, one per logical (unfolded) header
/// line. `from`, `to` and `call_id` are empty when the request lacked them; the caller
/// omits empty ones from the reply. `vias` is never empty and `cseq` never empty.
/// Values are copied verbatim even when malformed, so send the reply to the packet's
/// source address and port rather than trusting the top Via's sent-by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyContext {
    /// Every Via header line's value, top first, copied back in this order.
    pub vias: Vec<String>,
    /// The From value, tag included.
    pub from: String,
    /// The To value, tag included if the request had one.
    pub to: String,
    /// The Call-ID value.
    pub call_id: String,
    /// The CSeq value (`<number> <METHOD>`).
    pub cseq: String,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A request we can answer: status + a single-line printable-ASCII reason phrase
    /// that says exactly what is wrong.
    Reply {
        /// 400 for syntax; 413, 416, 501 or 505 where RFC 3261 names another.
        status: u16,
        /// The reason phrase to send.
        reason: String,
        /// The headers to copy into the reply.
        ctx: ReplyContext,
    },
    /// Drop silently (malformed responses, ACKs, requests without Via/CSeq).
    Drop {
        /// What was wrong, for a debug log; sanitised like a reason phrase.
        why: String,
    },
}

/// Stream framing failures. After an error the stream cannot be resynchronised: the
/// caller answers (if `reply_context()` is some) and closes the connection; the
/// framer returns `None` from then on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A stream message's headers ended without Content-Length (RFC 3261 18.3).
    #[error("missing Content-Length (mandatory on stream transports)")]
    MissingContentLength {
        /// The headers to answer with, when they could be recovered.
        ctx: Option<ReplyContext>,
    },
    /// Content-Length was there but unusable (non-numeric, negative, conflicting…).
    #[error("invalid Content-Length: {detail}")]
    InvalidContentLength {
        /// What exactly is wrong with it.
        detail: MessageError,
        /// The headers to answer with, when they could be recovered.
        ctx: Option<ReplyContext>,
    },
    /// The message (or its header section, still unterminated) outgrew the limit.
    #[error("message larger than {limit} bytes")]
    TooLarge {
        /// The limit, [`MAX_MESSAGE_SIZE`].
        limit: usize,
        /// The headers to answer with, when they could be recovered.
        ctx: Option<ReplyContext>,
    },
    /// More header lines than [`FrameLimits::max_headers`] before the blank line.
    #[error("more than {limit} header lines")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
        /// The headers to answer with, when they could be recovered.
        ctx: Option<ReplyContext>,
    },
}

/// Limits a [`StreamFramer`] enforces beyond [`MAX_MESSAGE_SIZE`] (issue 16:
/// a stream peer must not make us buffer a huge header section or body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Bytes of the header section, up to and including the blank line.
    pub max_header_bytes: usize,
    /// Header lines (the start line included).
    pub max_headers: usize,
    /// Content-Length at most.
    pub max_body_bytes: usize,
}

impl FramingError {
    /// Headers to answer the offending request with, when they were complete.
    pub fn reply_context(&self) -> Option<&ReplyContext> {
        match self {
            Self::MissingContentLength { ctx }
            | Self::InvalidContentLength { ctx, .. }
            | Self::TooLarge { ctx, .. }
            | Self::TooManyHeaders { ctx, .. } => ctx.as_ref(),
        }
    }

    /// The status to answer with before closing (413 for size, else 400).
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// What is wrong with a message, in the words its 400 (or other) reason phrase
/// uses: the Display text goes on the wire, so it is printable ASCII and any
/// quoted piece of the message is already sanitised.
///
/// Payloads: a `String` is the offending piece of the message, sanitised (for
/// `Unparseable`, rsipstack's error text); a `&'static str` names where it was
/// found (`To`, `Via`…). The status to answer with is [`MessageError::status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A problem found inside a part of the message (`... in To`, `... in Via`).
    #[error("{error} in {place}")]
    In {
        /// The problem.
        error: Box<MessageError>,
        /// The header or element it is in.
        place: &'static str,
    },
    /// A NUL byte in a header value (RFC 3261 25.1 allows no control
    /// characters but tab there); holds the header's name.
    #[error("NUL byte in header {0}")]
    NulInHeader(String),
    /// A `<` inside `<>` in a name-addr (RFC 3261 25.1).
    #[error("nested '<'")]
    NestedAngle,
    /// A `>` with no `<` before it.
    #[error("'>' without '<'")]
    UnopenedAngle,
    /// A `<` never closed.
    #[error("'<' without '>'")]
    UnclosedAngle,
    /// A quoted string without its closing `"`.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A URI with no `scheme:`; holds the text.
    #[error("URI without scheme '{0}'")]
    UriWithoutScheme(String),
    /// A scheme that is not `ALPHA *(ALPHA / DIGIT / + - .)` (RFC 3986 3.1); holds it.
    #[error("malformed URI scheme '{0}'")]
    UriScheme(String),
    /// Nothing after `scheme:`; holds the scheme.
    #[error("empty URI after scheme '{0}'")]
    EmptyUri(String),
    /// `%` without two characters after it (RFC 3261 19.1.2).
    #[error("truncated %-escape in URI")]
    TruncatedEscape,
    /// `%` not followed by two hex digits.
    #[error("malformed %-escape in URI")]
    MalformedEscape,
    /// Whitespace inside a URI.
    #[error("whitespace in URI")]
    WhitespaceInUri,
    /// A character no URI may hold unescaped; holds it.
    #[error("illegal character '{0}' in URI")]
    UriCharacter(String),
    /// A `;` with no parameter after it; holds where.
    #[error("empty parameter in {0}")]
    EmptyParam(&'static str),
    /// A parameter name that is not a token (RFC 3261 25.1 `generic-param`).
    #[error("malformed parameter name '{name}' in {place}")]
    ParamName {
        /// The name as written.
        name: String,
        /// The header it is in.
        place: &'static str,
    },
    /// A parameter value that is neither a token (`:`, `[`, `]` allowed, for
    /// hosts) nor one quoted string.
    #[error("malformed value of parameter '{name}' in {place}")]
    ParamValue {
        /// The parameter's name.
        name: String,
        /// The header it is in.
        place: &'static str,
    },
    /// Text between a quoted display name and its `<`; holds where.
    #[error("text after quoted display name in {0}")]
    TextAfterDisplayName(&'static str),
    /// A display name with characters a token may not hold, left unquoted.
    #[error("display name with '{character}' must be quoted in {place}")]
    UnquotedDisplayName {
        /// The first character that needs quoting.
        character: String,
        /// The header it is in.
        place: &'static str,
    },
    /// A header that must have a value is empty; holds which.
    #[error("empty {0} value")]
    EmptyValue(&'static str),
    /// Whitespace around the URI inside `<>`; holds where.
    #[error("whitespace inside <> in {0}")]
    WhitespaceInAngles(&'static str),
    /// After `>` only `;params` may follow; holds where.
    #[error("unexpected text after '>' in {0}")]
    TextAfterAngle(&'static str),
    /// A quoted display name not followed by `<URI>`; holds where.
    #[error("quoted display name without <URI> in {0}")]
    QuotedNameWithoutUri(&'static str),
    /// An addr-spec with `?` or `,` outside `<>` (RFC 3261 20.10); holds where.
    #[error("URI containing '?' or ',' must be enclosed in <> in {0}")]
    UnenclosedUri(&'static str),
    /// A bare display name with no URI; holds where.
    #[error("display name without <URI> in {0}")]
    NameWithoutUri(&'static str),
    /// Via's sent-protocol is not `SIP/2.0/<transport>` (RFC 3261 20.42).
    #[error("malformed Via sent-protocol")]
    ViaProtocol,
    /// A `[` IPv6 reference without its `]`.
    #[error("unterminated IPv6 reference")]
    UnterminatedIpv6,
    /// The text inside `[]` is not an IPv6 address.
    #[error("malformed IPv6 reference")]
    Ipv6,
    /// After `]` only `:port` may follow.
    #[error("text after IPv6 reference")]
    TextAfterIpv6,
    /// A host with characters other than letters, digits, `-` and `.`; holds it.
    #[error("malformed host '{0}'")]
    Host(String),
    /// A port that is not 1–5 digits up to 65535; holds it.
    #[error("malformed port '{0}'")]
    Port(String),
    /// Date must be in GMT (RFC 3261 20.17; RFC 4475 3.1.2.12 `baddate`); holds the zone.
    #[error("Date time zone '{0}' is not GMT")]
    DateZone(String),
    /// Date is not an RFC 1123 date.
    #[error("malformed Date")]
    Date,
    /// CSeq is not `number SP method`.
    #[error("malformed CSeq")]
    CSeq,
    /// The CSeq number is not all digits.
    #[error("non-numeric CSeq sequence number")]
    CSeqNumber,
    /// The CSeq number is 2^31 or more (RFC 3261 8.1.1.5).
    #[error("CSeq sequence number exceeds 2^31-1")]
    CSeqTooLarge,
    /// The CSeq method is not a token.
    #[error("malformed CSeq method")]
    CSeqMethod,
    /// The CSeq method differs from the Request-Line's (RFC 3261 8.1.1.5).
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch {
        /// The CSeq's method.
        cseq: String,
        /// The Request-Line's method.
        method: String,
    },
    /// A negative Content-Length.
    #[error("negative Content-Length")]
    NegativeContentLength,
    /// Content-Length is not a decimal number; holds it.
    #[error("non-numeric Content-Length '{0}'")]
    ContentLengthNotNumeric(String),
    /// Content-Length does not fit in 64 bits.
    #[error("Content-Length too large")]
    ContentLengthTooLarge,
    /// Several Content-Length headers with different values.
    #[error("multiple conflicting Content-Length values")]
    ConflictingContentLength,
    /// Framing: Content-Length headers disagree (the framer's own wording).
    #[error("multiple conflicting values")]
    ConflictingValues,
    /// A stream message without Content-Length (RFC 3261 18.3).
    #[error("missing Content-Length (mandatory on TCP)")]
    NoContentLengthOnTcp,
    /// Content-Length promises more bytes than the message holds (RFC 3261 18.3).
    #[error("Content-Length {declared} exceeds body of {available} bytes")]
    ContentLengthBeyondBody {
        /// Content-Length, bytes.
        declared: u64,
        /// Bytes after the header section.
        available: usize,
    },
    /// The start line or headers are not UTF-8.
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    /// A CR or LF alone in the start line: lines end in CRLF only (RFC 3261 7).
    #[error("bare CR or LF in start line")]
    BareCrLfInStartLine,
    /// A CR or LF alone in the header section.
    #[error("bare CR or LF in header section")]
    BareCrLfInHeaders,
    /// The first header line starts with whitespace: folding with nothing to
    /// fold into (RFC 3261 7.3.1).
    #[error("header section starts with a continuation line")]
    LeadingContinuation,
    /// A header line without `:`; holds the line.
    #[error("header line without colon '{0}'")]
    NoColon(String),
    /// A header name that is not a token; holds it.
    #[error("malformed header name '{0}'")]
    HeaderName(String),
    /// The header section never ends with an empty line.
    #[error("missing empty line after header section")]
    NoEmptyLine,
    /// A header that must appear once appears more often (RFC 3261 7.3.1); holds which.
    #[error("multiple {0} headers")]
    Multiple(&'static str),
    /// Call-ID, CSeq, From, To or Via absent (RFC 3261 8.1.1); lists those missing.
    #[error("missing {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// Call-ID empty or not printable ASCII without spaces (RFC 3261 20.8).
    #[error("malformed Call-ID")]
    CallId,
    /// Max-Forwards is not a number 0–255 (RFC 3261 20.22); holds it.
    #[error("Max-Forwards '{0}' is not 0-255")]
    MaxForwards(String),
    /// Whitespace before or after the Request-Line (RFC 3261 7.1: exactly
    /// `Method SP URI SP Version`; RFC 4475 3.1.2.10 `trws`).
    #[error("leading or trailing whitespace in Request-Line")]
    RequestLineEdgeWhitespace,
    /// A tab where the Request-Line allows one SP only.
    #[error("tab in Request-Line")]
    RequestLineTab,
    /// More than one SP between Request-Line elements (RFC 4475 3.1.2.9 `lwsstart`).
    #[error("multiple spaces between Request-Line elements")]
    RequestLineSpaces,
    /// The Request-URI contains whitespace (RFC 4475 3.1.2.8 `lwsruri`).
    #[error("whitespace in Request-URI")]
    WhitespaceInRequestUri,
    /// The Request-Line has no SIP-Version.
    #[error("Request-Line without SIP-Version")]
    NoVersion,
    /// The Request-Line does not have three elements.
    #[error("malformed Request-Line")]
    RequestLine,
    /// The method is not a token; holds it.
    #[error("malformed method '{0}'")]
    Method(String),
    /// The SIP-Version is not `SIP/<digits>.<digits>`; holds it.
    #[error("malformed SIP-Version '{0}'")]
    Version(String),
    /// The Request-URI is written inside `<>` (RFC 4475 3.1.2.7 `ltgtruri`).
    #[error("Request-URI enclosed in <>")]
    RequestUriInAngles,
    /// The Request-URI has no valid `scheme:`.
    #[error("Request-URI without scheme")]
    RequestUriWithoutScheme,
    /// A SIP Request-URI with `?headers` (RFC 3261 19.1.1 table 1: not allowed
    /// there; RFC 4475 3.1.2.11 `escruri`).
    #[error("escaped headers in Request-URI")]
    RequestUriHeaders,
    /// A response whose first line does not start with `SIP/2.0 ` (RFC 3261 7.2).
    #[error("Status-Line does not start with SIP/2.0")]
    StatusLinePrefix,
    /// The status code is not three digits.
    #[error("status code is not 3 digits")]
    StatusDigits,
    /// No SP between the status code and the reason phrase.
    #[error("no SP after status code")]
    StatusSpace,
    /// The status code does not parse as a number.
    #[error("bad status code")]
    StatusCode,
    /// A status code outside 100–699; holds it.
    #[error("status code {0} out of range")]
    StatusRange(u16),
    /// A control character in the Reason-Phrase.
    #[error("control character in Reason-Phrase")]
    ReasonControl,
    /// Validated as a request, but rsipstack read a response.
    #[error("not a request")]
    NotARequest,
    /// Validated as a response, but rsipstack read a request.
    #[error("not a response")]
    NotAResponse,
    /// Passed our checks but rsipstack's parser refused it; holds rsipstack's message.
    #[error("unparseable: {0}")]
    Unparseable(String),
    /// A response over the size limit (requests get [`MessageError::TooLarge`]).
    #[error("too large")]
    ResponseTooLarge,
    // Requests only, each with a status of its own (see `status`).
    /// A request over [`MAX_MESSAGE_SIZE`]: answered 413 (RFC 3261 21.4.11); holds its size.
    #[error("{0} bytes exceeds {MAX_MESSAGE_SIZE}")]
    TooLarge(usize),
    /// A Request-URI scheme other than `sip`, `sips` or `tel`: answered 416
    /// (RFC 3261 8.2.2.1); holds it.
    #[error("scheme '{0}'")]
    UnsupportedScheme(String),
    /// A well-formed method we do not know (case-sensitive, RFC 3261 7.1):
    /// answered 501 (RFC 3261 21.5.2); holds it.
    #[error("method {0}")]
    UnknownMethod(String),
    /// A SIP-Version other than `SIP/2.0`: answered 505 (RFC 3261 21.5.6); holds it.
    #[error("{0} is not supported")]
    UnsupportedVersion(String),
}

impl MessageError {
    /// The status a request with this problem is answered with.
    pub fn status(&self) -> u16 {
        match self {
            MessageError::TooLarge(_) => 413,
            MessageError::UnsupportedScheme(_) => 416,
            MessageError::UnknownMethod(_) => 501,
            MessageError::UnsupportedVersion(_) => 505,
            _ => 400,
        }
    }

    /// This problem, found inside `place`.
    fn within(self, place: &'static str) -> MessageError {
        MessageError::In {
            error: Box::new(self),
            place,
        }
    }
}

// ---------------------------------------------------------------------------------
// Lexical helpers
// ---------------------------------------------------------------------------------

/// RFC 3261 `token` characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Characters allowed unescaped somewhere in a SIP/absolute URI (unreserved,
/// reserved, and the IPv6 brackets).
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$,[]".contains(&b)
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Make text safe for a reason phrase: printable ASCII, one line, bounded length.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(80)
        .collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Split `s` on `sep` outside quoted strings and `<...>`; errors on an unterminated
/// quoted string or unbalanced angle brackets (RFC 4475 `quotbal`, `ltgtruri`-like).
fn split_top(s: &str, sep: u8) -> Result<Vec<&str>, MessageError> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let (mut in_q, mut in_angle, mut start, mut i) = (false, false, 0usize, 0usize);
    while i < b.len() {
        let c = b[i];
        if in_q {
            if c == b'\\' {
                i += 1; // quoted-pair: skip the escaped byte
            } else if c == b'"' {
                in_q = false;
            }
        } else if c == b'"' {
            in_q = true;
        } else if c == b'<' {
            if in_angle {
                return Err(MessageError::NestedAngle);
            }
            in_angle = true;
        } else if c == b'>' {
            if !in_angle {
                return Err(MessageError::UnopenedAngle);
            }
            in_angle = false;
        } else if c == sep && !in_angle {
            parts.push(&s[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    if in_q {
        return Err(MessageError::UnterminatedQuote);
    }
    if in_angle {
        return Err(MessageError::UnclosedAngle);
    }
    parts.push(&s[start.min(s.len())..]);
    Ok(parts)
}

/// A URI as it may appear in a header or the Request-URI: `scheme ":" rest` with
/// only URI characters and well-formed %HH escapes (no whitespace).
fn check_uri(uri: &str) -> Result<(), MessageError> {
    let colon = uri
        .find(':')
        .ok_or_else(|| MessageError::UriWithoutScheme(sanitize(uri)))?;
    let scheme = &uri[..colon];
    let sb = scheme.as_bytes();
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(MessageError::UriScheme(sanitize(scheme)));
    }
    if colon + 1 >= uri.len() {
        return Err(MessageError::EmptyUri(sanitize(scheme)));
    }
    let b = uri.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if i + 2 >= b.len() {
                return Err(MessageError::TruncatedEscape);
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return Err(MessageError::MalformedEscape);
            }
            i += 3;
            continue;
        }
        if is_wsp(c) {
            return Err(MessageError::WhitespaceInUri);
        }
        if !is_uri_byte(c) {
            return Err(MessageError::UriCharacter(sanitize(
                &(c as char).to_string(),
            )));
        }
        i += 1;
    }
    Ok(())
}

/// `*( SEMI generic-param )` after the leading semicolon was removed: every
/// parameter is a token, optionally `= token/host/quoted-string` (LWS allowed around
/// `=`). Empty parameters (`;;`) are rejected (RFC 4475 `badinv01`).
fn check_params(s: &str, what: &'static str) -> Result<(), MessageError> {
    for p in split_top(s, b';').map_err(|e| e.within(what))? {
        let p = p.trim();
        if p.is_empty() {
            return Err(MessageError::EmptyParam(what));
        }
        let (name, value) = match p.find('=') {
            Some(eq) => (p[..eq].trim(), Some(p[eq + 1..].trim())),
            None => (p, None),
        };
        if !is_token(name) {
            return Err(MessageError::ParamName {
                name: sanitize(name),
                place: what,
            });
        }
        if let Some(v) = value {
            let ok = if v.starts_with('"') {
                quoted_string_is_whole(v)
            } else {
                !v.is_empty() && v.bytes().all(|b| is_token_byte(b) || b":[]".contains(&b))
            };
            if !ok {
                return Err(MessageError::ParamValue {
                    name: sanitize(name),
                    place: what,
                });
            }
        }
    }
    Ok(())
}

/// Display name: empty, one quoted-string, or tokens separated by LWS (RFC 4475
/// `baddn`: "Bell, Alexander" must be quoted).
fn check_display_name(d: &str, what: &'static str) -> Result<(), MessageError> {
    if d.is_empty() {
        return Ok(());
    }
    if d.starts_with('"') {
        // split_top already verified quote balance; require one string and nothing else.
        if !quoted_string_is_whole(d) {
            return Err(MessageError::TextAfterDisplayName(what));
        }
        return Ok(());
    }
    if let Some(bad) = d.bytes().find(|&b| !(is_token_byte(b) || is_wsp(b))) {
        return Err(MessageError::UnquotedDisplayName {
            character: sanitize(&(bad as char).to_string()),
            place: what,
        });
    }
    Ok(())
}

/// True when `d` (starting with a quote) is exactly one quoted-string.
fn quoted_string_is_whole(d: &str) -> bool {
    let b = d.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i == b.len() - 1,
            _ => i += 1,
        }
    }
    false
}

/// One `name-addr / addr-spec` element with its header parameters (To, From,
/// Contact, Route, ...).
fn check_name_addr(elem: &str, what: &'static str, allow_star: bool) -> Result<(), MessageError> {
    let e = elem.trim();
    if e.is_empty() {
        return Err(MessageError::EmptyValue(what));
    }
    if allow_star && e == "*" {
        return Ok(());
    }
    // first '<' outside quotes
    let b = e.as_bytes();
    let (mut in_q, mut i, mut lt) = (false, 0usize, None);
    while i < b.len() {
        match b[i] {
            b'\\' if in_q => i += 1,
            b'"' => in_q = !in_q,
            b'<' if !in_q => {
                lt = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    if in_q {
        return Err(MessageError::UnterminatedQuote.within(what));
    }
    match lt {
        Some(lt) => {
            check_display_name(e[..lt].trim(), what)?;
            let gt = e[lt + 1..]
                .find('>')
                .map(|g| g + lt + 1)
                .ok_or_else(|| MessageError::UnclosedAngle.within(what))?;
            let uri = &e[lt + 1..gt];
            if uri.bytes().any(is_wsp) {
                return Err(MessageError::WhitespaceInAngles(what));
            }
            check_uri(uri).map_err(|m| m.within(what))?;
            let rest = e[gt + 1..].trim_start();
            if rest.is_empty() {
                return Ok(());
            }
            match rest.strip_prefix(';') {
                Some(params) => check_params(params, what),
                None => Err(MessageError::TextAfterAngle(what)),
            }
        }
        None => {
            if e.contains('"') {
                return Err(MessageError::QuotedNameWithoutUri(what));
            }
            if e.contains('>') {
                return Err(MessageError::UnopenedAngle.within(what));
            }
            let (uri, params) = match e.find(';') {
                Some(s) => (e[..s].trim(), Some(&e[s + 1..])),
                None => (e, None),
            };
            if uri.contains('?') || uri.contains(',') {
                return Err(MessageError::UnenclosedUri(what));
            }
            if uri.bytes().any(is_wsp) {
                return Err(MessageError::NameWithoutUri(what));
            }
            check_uri(uri).map_err(|m| m.within(what))?;
            match params {
                Some(p) => check_params(p, what),
                None => Ok(()),
            }
        }
    }
}

/// Via: `sent-protocol LWS sent-by *(SEMI via-params)`, comma lists allowed, LWS
/// allowed around '/' and ':' (RFC 4475 `wsinv`), empty elements rejected (`badinv01`).
fn check_via(value: &str) -> Result<(), MessageError> {
    for elem in split_top(value, b',').map_err(|e| e.within("Via"))? {
        let elem = elem.trim();
        if elem.is_empty() {
            return Err(MessageError::EmptyValue("Via"));
        }
        let (proto_by, params) = match elem.find(';') {
            Some(s) => (&elem[..s], Some(&elem[s + 1..])),
            None => (elem, None),
        };
        let parts: Vec<&str> = proto_by.splitn(3, '/').collect();
        if parts.len() != 3 {
            return Err(MessageError::ViaProtocol);
        }
        let (name, version) = (parts[0].trim(), parts[1].trim());
        let rest = parts[2].trim_start();
        let split = rest.find([' ', '\t']).unwrap_or(rest.len());
        let (transport, sent_by) = (&rest[..split], rest[split..].trim());
        if !name.eq_ignore_ascii_case("SIP") || !is_token(version) || !is_token(transport) {
            return Err(MessageError::ViaProtocol);
        }
        let sent_by: String = {
            // LWS is legal around the ':' of sent-by
            let mut s = String::new();
            for (i, piece) in sent_by.split(':').enumerate() {
                if i > 0 {
                    s.push(':');
                }
                s.push_str(piece.trim());
            }
            s
        };
        check_host_port(&sent_by).map_err(|m| m.within("Via sent-by"))?;
        if let Some(p) = params {
            check_params(p, "Via")?;
        }
    }
    Ok(())
}

fn check_host_port(s: &str) -> Result<(), MessageError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let close = v6.find(']').ok_or(MessageError::UnterminatedIpv6)?;
        let addr = &v6[..close];
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return Err(MessageError::Ipv6);
        }
        let after = &v6[close + 1..];
        match after.strip_prefix(':') {
            Some(p) => ("v6", Some(p)),
            None if after.is_empty() => ("v6", None),
            None => return Err(MessageError::TextAfterIpv6),
        }
    } else {
        match s.find(':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(MessageError::Host(sanitize(host)));
    }
    if let Some(p) = port {
        if p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535)
        {
            return Err(MessageError::Port(sanitize(p)));
        }
    }
    Ok(())
}

/// RFC 1123 date in GMT as RFC 3261 20.17 requires (RFC 4475 `baddate`).
fn check_date(v: &str) -> Result<(), MessageError> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let f: Vec<&str> = v.split(' ').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if f.len() == 6 && f[5] != "GMT" {
        return Err(MessageError::DateZone(sanitize(f[5])));
    }
    let time_ok = |t: &str| {
        let p: Vec<&str> = t.split(':').collect();
        p.len() == 3 && p.iter().all(|x| digits(x, 2))
    };
    let ok = f.len() == 6
        && f[0].len() == 4
        && f[0].ends_with(',')
        && DAYS.contains(&&f[0][..3])
        && digits(f[1], 2)
        && MONTHS.contains(&f[2])
        && digits(f[3], 4)
        && time_ok(f[4]);
    if ok {
        Ok(())
    } else {
        Err(MessageError::Date)
    }
}

/// `CSeq: 1*DIGIT LWS Method`, number < 2^31 (RFC 3261 8.1.1.5; RFC 4475 `scalar02`).
fn parse_cseq(v: &str) -> Result<(u32, &str), MessageError> {
    let mut it = v.split([' ', '\t']).filter(|s| !s.is_empty());
    let (num, method) = match (it.next(), it.next(), it.next()) {
        (Some(n), Some(m), None) => (n, m),
        _ => return Err(MessageError::CSeq),
    };
    if !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MessageError::CSeqNumber);
    }
    let n = num
        .parse::<u64>()
        .ok()
        .filter(|&n| n < (1 << 31))
        .ok_or(MessageError::CSeqTooLarge)?;
    if !is_token(method) {
        return Err(MessageError::CSeqMethod);
    }
    Ok((n as u32, method))
}

/// Content-Length value: `1*DIGIT`.
fn parse_content_length(v: &str) -> Result<u64, MessageError> {
    let v = v.trim();
    if let Some(rest) = v.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MessageError::NegativeContentLength);
        }
    }
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MessageError::ContentLengthNotNumeric(sanitize(v)));
    }
    v.parse::<u64>()
        .map_err(|_| MessageError::ContentLengthTooLarge)
}

// ---------------------------------------------------------------------------------
// Header section
// ---------------------------------------------------------------------------------

/// One logical header line: canonical lower-case name (compact forms expanded) and
/// unfolded, trimmed value.
#[derive(Debug)]
struct RawHeader {
    name: String,
    value: String,
}

struct Head {
    start_line: String,
    headers: Vec<RawHeader>,
    /// Offset of the body, `None` when the empty line ending the headers is missing.
    body_start: Option<usize>,
}

impl Head {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_str())
    }
    fn first<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }
}

/// Expand RFC 3261 7.3.3 compact forms (plus the common RFC 3265/3515/4028 ones).
fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let full = match lower.as_str() {
        "i" => "call-id",
        "f" => "from",
        "t" => "to",
        "v" => "via",
        "l" => "content-length",
        "m" => "contact",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "u" => "allow-events",
        "x" => "session-expires",
        _ => return lower,
    };
    full.to_string()
}

/// Split the header section. `strict` reports the first syntax problem; lenient mode
/// (for [`reply_context`]) skips what it cannot read.
fn split_head(buf: &[u8], strict: bool) -> Result<Head, MessageError> {
    let (head_end, body_start) = match find_bytes(buf, b"\r\n\r\n") {
        Some(p) => (p, Some(p + 4)),
        None => {
            let mut end = buf.len();
            if buf.ends_with(b"\r\n") {
                end -= 2;
            }
            (end, None)
        }
    };
    let raw = &buf[..head_end];
    let text = match std::str::from_utf8(raw) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) if strict => return Err(MessageError::NotUtf8),
        Err(_) => String::from_utf8_lossy(raw),
    };
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or("").to_string();
    if strict && (start_line.contains('\r') || start_line.contains('\n')) {
        return Err(MessageError::BareCrLfInStartLine);
    }
    let mut headers: Vec<RawHeader> = Vec::new();
    for line in lines {
        if strict && (line.contains('\r') || line.contains('\n')) {
            return Err(MessageError::BareCrLfInHeaders);
        }
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(h) => {
                    let cont = line.trim_matches([' ', '\t']);
                    if !cont.is_empty() {
                        if !h.value.is_empty() {
                            h.value.push(' ');
                        }
                        h.value.push_str(cont);
                    }
                }
                None if strict => return Err(MessageError::LeadingContinuation),
                None => {}
            }
            continue;
        }
        let Some(colon) = line.find(':') else {
            if strict {
                return Err(MessageError::NoColon(sanitize(line)));
            }
            continue;
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !is_token(name) {
            if strict {
                return Err(MessageError::HeaderName(sanitize(name)));
            }
            continue;
        }
        headers.push(RawHeader {
            name: canonical_name(name),
            value: line[colon + 1..].trim_matches([' ', '\t']).to_string(),
        });
    }
    Ok(Head {
        start_line,
        headers,
        body_start,
    })
}

fn strip_leading_crlf(buf: &[u8]) -> &[u8] {
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    &buf[skip..]
}

/// Leniently extract the headers needed to answer a request (RFC 3261 8.2.6.2).
/// `None` when no Via or no CSeq can be found: such a request cannot be answered.
pub fn reply_context(buf: &[u8]) -> Option<ReplyContext> {
    let buf = strip_leading_crlf(buf);
    let head = split_head(buf, false).ok()?;
    let vias: Vec<String> = head
        .all("via")
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    let cseq = head.first("cseq").filter(|v| !v.is_empty())?.to_string();
    if vias.is_empty() {
        return None;
    }
    let get = |n: &str| head.first(n).unwrap_or("").to_string();
    Some(ReplyContext {
        vias,
        from: get("from"),
        to: get("to"),
        call_id: get("call-id"),
        cseq,
    })
}

// ---------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------

/// Checks shared by requests and responses: mandatory headers, CSeq, Via,
/// name-addr syntax, Date, Max-Forwards, Content-Length. Returns the CSeq method and
/// the Content-Length, if any.
fn check_headers(head: &Head) -> Result<(String, Option<u64>), MessageError> {
    let mut missing = Vec::new();
    for (name, label) in [
        ("call-id", "Call-ID"),
        ("cseq", "CSeq"),
        ("from", "From"),
        ("to", "To"),
        ("via", "Via"),
    ] {
        let n = head.all(name).count();
        if n == 0 {
            missing.push(label);
        } else if n > 1 && name != "via" {
            return Err(MessageError::Multiple(label));
        }
    }
    if !missing.is_empty() {
        return Err(MessageError::Missing(missing));
    }
    let (_, method) = parse_cseq(head.first("cseq").unwrap_or(""))?;
    let call_id = head.first("call-id").unwrap_or("");
    if call_id.is_empty() || !call_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MessageError::CallId);
    }
    for h in &head.headers {
        if has_bare_nul(&h.value) {
            return Err(MessageError::NulInHeader(sanitize(&h.name)));
        }
        match h.name.as_str() {
            "via" => check_via(&h.value)?,
            "to" | "from" | "reply-to" => check_name_addr(&h.value, label(&h.name), false)?,
            "contact" | "route" | "record-route" => {
                let parts = split_top(&h.value, b',').map_err(|e| e.within(label(&h.name)))?;
                let star = h.name == "contact" && parts.len() == 1;
                for p in parts {
                    check_name_addr(p, label(&h.name), star)?;
                }
            }
            "date" => check_date(&h.value)?,
            "max-forwards" => {
                let v = &h.value;
                if v.is_empty()
                    || !v.bytes().all(|b| b.is_ascii_digit())
                    || v.parse::<u16>().map_or(true, |n| n > 255)
                {
                    return Err(MessageError::MaxForwards(sanitize(v)));
                }
            }
            _ => {}
        }
    }
    let mut content_length: Option<u64> = None;
    for v in head.all("content-length") {
        let n = parse_content_length(v)?;
        match content_length {
            Some(prev) if prev != n => return Err(MessageError::ConflictingContentLength),
            _ => content_length = Some(n),
        }
    }
    Ok((method.to_string(), content_length))
}

/// A NUL byte outside a quoted-pair (`"\\<NUL>"` inside a quoted string is
/// legal, RFC 3261 25.1 and RFC 4475 `intmeth`).
fn has_bare_nul(v: &str) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for b in v.bytes() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            0 => return true,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => {}
        }
    }
    false
}

fn label(name: &str) -> &'static str {
    match name {
        "to" => "To",
        "from" => "From",
        "reply-to" => "Reply-To",
        "contact" => "Contact",
        "route" => "Route",
        "record-route" => "Record-Route",
        _ => "header",
    }
}

/// `Method SP Request-URI SP SIP-Version`, exactly single spaces (RFC 4475
/// `lwsstart`, `trws`, `lwsruri`, `ltgtruri`, `escruri`, `badvers`, `unkscm`).
/// Returns the method.
fn check_request_line(line: &str) -> Result<&str, MessageError> {
    if line.starts_with([' ', '\t']) || line.ends_with([' ', '\t']) {
        return Err(MessageError::RequestLineEdgeWhitespace);
    }
    if line.contains('\t') {
        return Err(MessageError::RequestLineTab);
    }
    if line.contains("  ") {
        return Err(MessageError::RequestLineSpaces);
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let (method, uri, version) = match parts.as_slice() {
        [m, u, v] => (*m, *u, *v),
        [_, _, .., last] if looks_like_version(last) => {
            return Err(MessageError::WhitespaceInRequestUri)
        }
        [_, _] => return Err(MessageError::NoVersion),
        _ => return Err(MessageError::RequestLine),
    };
    if !is_token(method) {
        return Err(MessageError::Method(sanitize(method)));
    }
    if !looks_like_version(version) {
        return Err(MessageError::Version(sanitize(version)));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(MessageError::UnsupportedVersion(sanitize(version)));
    }
    if uri.starts_with('<') {
        return Err(MessageError::RequestUriInAngles);
    }
    let scheme = uri.find(':').map(|c| &uri[..c]).unwrap_or("");
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(MessageError::RequestUriWithoutScheme);
    }
    let known = ["sip", "sips", "tel"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    if !known {
        return Err(MessageError::UnsupportedScheme(sanitize(scheme)));
    }
    check_uri(uri).map_err(|m| m.within("Request-URI"))?;
    if !scheme.eq_ignore_ascii_case("tel") {
        // '@' ends the userinfo; '?' after it starts URI headers, forbidden here.
        let rest = &uri[scheme.len() + 1..];
        let host_part = rest.rfind('@').map_or(rest, |a| &rest[a + 1..]);
        if host_part.contains('?') {
            return Err(MessageError::RequestUriHeaders);
        }
        let host_port = host_part.split(';').next().unwrap_or("");
        check_host_port(host_port).map_err(|m| m.within("Request-URI"))?;
    }
    Ok(method)
}

fn looks_like_version(v: &str) -> bool {
    let Some(rest) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &v[4..])
    else {
        return false;
    };
    let mut it = rest.split('.');
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// `SIP/2.0 SP 3DIGIT SP Reason-Phrase`, code 100..=699.
fn check_status_line(line: &str) -> Result<(), MessageError> {
    let rest = line
        .strip_prefix("SIP/2.0 ")
        .ok_or(MessageError::StatusLinePrefix)?;
    let b = rest.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits != 3 {
        return Err(MessageError::StatusDigits);
    }
    if b.len() > 3 && b[3] != b' ' {
        return Err(MessageError::StatusSpace);
    }
    let code: u16 = rest[..3].parse().map_err(|_| MessageError::StatusCode)?;
    if !(100..=699).contains(&code) {
        return Err(MessageError::StatusRange(code));
    }
    if rest.chars().any(|c| c.is_control() && c != '\t') {
        return Err(MessageError::ReasonControl);
    }
    Ok(())
}

/// Work out the body (RFC 3261 18.3): UDP truncates to Content-Length and rejects a
/// Content-Length beyond the datagram; missing Content-Length means "rest of datagram"
/// on UDP and is an error on TCP.
fn body_of(
    buf: &[u8],
    body_start: usize,
    cl: Option<u64>,
    transport: Transport,
) -> Result<&[u8], MessageError> {
    let avail = &buf[body_start.min(buf.len())..];
    match cl {
        None if transport == Transport::Tcp => Err(MessageError::NoContentLengthOnTcp),
        None => Ok(avail),
        Some(n) if n > avail.len() as u64 => Err(MessageError::ContentLengthBeyondBody {
            declared: n,
            available: avail.len(),
        }),
        Some(n) => Ok(&avail[..n as usize]),
    }
}

fn reason_for(error: &MessageError) -> String {
    let phrase = match error.status() {
        400 => "Bad Request",
        413 => "Message Too Large",
        416 => "Unsupported URI Scheme",
        483 => "Too Many Hops",
        501 => "Not Implemented",
        505 => "Version Not Supported",
        _ => "Error",
    };
    sanitize(&format!("{phrase}: {error}"))
}

/// Parse one datagram (UDP) or one framed stream message (TCP, from
/// [`StreamFramer`]) into a validated message, or say precisely why not.
// The Err side is no bigger than a parsed Request; boxing would only add an allocation
// to the reject path, and the signature is the agreed API.
#[allow(clippy::result_large_err)]
pub fn parse_message(buf: &[u8], transport: Transport) -> Result<Inbound, Rejection> {
    let buf = strip_leading_crlf(buf);
    if buf.is_empty() {
        return Err(Rejection::Drop {
            why: "empty message (keep-alive)".into(),
        });
    }
    if buf.starts_with(b"SIP/") {
        return parse_response(buf, transport).map_err(|why| Rejection::Drop {
            why: sanitize(&format!("malformed response: {why}")),
        });
    }
    let reject = |e: MessageError| -> Rejection {
        let ctx = reply_context(buf);
        let is_ack = buf.starts_with(b"ACK ")
            || ctx
                .as_ref()
                .is_some_and(|c| c.cseq.split_whitespace().nth(1) == Some("ACK"));
        let reason = reason_for(&e);
        match ctx {
            Some(ctx) if !is_ack => Rejection::Reply {
                status: e.status(),
                reason,
                ctx,
            },
            _ => Rejection::Drop {
                why: sanitize(&format!("{reason} (unanswerable)")),
            },
        }
    };
    parse_request(buf, transport).map_err(reject)
}

fn parse_request(buf: &[u8], transport: Transport) -> Result<Inbound, MessageError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(MessageError::TooLarge(buf.len()));
    }
    let head = split_head(buf, true)?;
    let method = check_request_line(&head.start_line)?;
    let (cseq_method, cl) = check_headers(&head)?;
    if cseq_method != method {
        return Err(MessageError::CSeqMismatch {
            cseq: sanitize(&cseq_method),
            method: sanitize(method),
        });
    }
    let body_start = head.body_start.ok_or(MessageError::NoEmptyLine)?;
    let body = body_of(buf, body_start, cl, transport)?;
    if method.parse::<rsipstack::sip::Method>().is_err()
        || !rsipstack::sip::Method::all()
            .iter()
            .any(|m| m.to_string() == method)
    {
        // Methods are case-sensitive (RFC 3261 7.1); rsipstack matches any case.
        return Err(MessageError::UnknownMethod(sanitize(method)));
    }
    match SipMessage::try_from(&buf[..body_start]) {
        Ok(SipMessage::Request(mut req)) => {
            req.body = body.to_vec();
            Ok(Inbound::Request(req))
        }
        Ok(SipMessage::Response(_)) => Err(MessageError::NotARequest),
        Err(e) => Err(MessageError::Unparseable(e.to_string())),
    }
}

fn parse_response(buf: &[u8], transport: Transport) -> Result<Inbound, MessageError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(MessageError::ResponseTooLarge);
    }
    let head = split_head(buf, true)?;
    check_status_line(&head.start_line)?;
    let (_, cl) = check_headers(&head)?;
    let body_start = head.body_start.ok_or(MessageError::NoEmptyLine)?;
    let body = body_of(buf, body_start, cl, transport)?;
    match SipMessage::try_from(&buf[..body_start]) {
        Ok(SipMessage::Response(mut resp)) => {
            resp.body = body.to_vec();
            Ok(Inbound::Response(resp))
        }
        Ok(SipMessage::Request(_)) => Err(MessageError::NotAResponse),
        Err(e) => Err(MessageError::Unparseable(e.to_string())),
    }
}

// ---------------------------------------------------------------------------------
// Stream framing
// ---------------------------------------------------------------------------------

/// TCP stream framing (RFC 3261 18.3): skips CRLF keep-alives (RFC 5626 4.4.1),
/// finds the end of the header section, and uses the mandatory Content-Length to cut
/// the body. Messages beyond [`MAX_MESSAGE_SIZE`] are an error, so a peer cannot make
/// us buffer without bound.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    failed: bool,
    /// CRLFs skipped since the last message start (two make one RFC 5626 ping).
    crlf_run: usize,
    pings: usize,
    limits: Option<FrameLimits>,
    /// Bytes of the current message already searched for the blank line
    /// without finding it, and the line feeds among them: each push scans
    /// only what is new, so a sender trickling one byte per segment costs
    /// linear, not quadratic, work.
    scanned: usize,
    lines: usize,
    /// Once the header section is parsed: the whole message's length.
    total: Option<usize>,
}

impl StreamFramer {
    /// A framer for one new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer that also enforces `limits` (header bytes and lines before
    /// the blank line, body size).
    pub fn with_limits(limits: FrameLimits) -> Self {
        Self {
            limits: Some(limits),
            ..Self::default()
        }
    }

    /// Append received bytes (ignored once the framer has failed).
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// True after a [`FramingError`]: the connection should be closed.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Number of RFC 5626 CRLFCRLF keep-alive pings skipped since the last call; the
    /// caller answers each with a CRLF pong (RFC 5626 4.4.1).
    pub fn take_pings(&mut self) -> usize {
        std::mem::take(&mut self.pings)
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `None` if more bytes are needed, or an error after
    /// which the framer yields nothing more.
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, FramingError>> {
        if self.failed {
            return None;
        }
        let mut skip = 0;
        loop {
            let rest = &self.buf[skip..];
            if rest.starts_with(b"\r\n") {
                skip += 2;
                self.crlf_run += 1;
                if self.crlf_run == 2 {
                    self.pings += 1;
                    self.crlf_run = 0;
                }
            } else if rest.starts_with(b"\n") {
                skip += 1; // tolerate a bare LF between messages (RFC 3261 7.5)
            } else {
                break;
            }
        }
        if skip > 0 {
            self.buf.drain(..skip);
            self.restart();
        }
        if self.buf.is_empty() || self.buf == b"\r" {
            return None; // keep-alive only, or half a CRLF: wait
        }
        self.crlf_run = 0;
        let total = match self.total {
            Some(total) => total,
            None => match self.frame_head()? {
                Ok(total) => total,
                Err(e) => return Some(Err(e)),
            },
        };
        if self.buf.len() < total {
            return None;
        }
        let msg = self.buf.drain(..total).collect();
        self.restart();
        Some(Ok(msg))
    }

    /// Forget the scan of a message that has been taken or skipped.
    fn restart(&mut self) {
        self.scanned = 0;
        self.lines = 0;
        self.total = None;
    }

    /// Look for the end of the header section in what arrived since the last
    /// call; `None` while it has not arrived, else the message's length.
    fn frame_head(&mut self) -> Option<Result<usize, FramingError>> {
        // The blank line may straddle the old and new bytes.
        let from = self.scanned.saturating_sub(3);
        let sep = find_bytes(&self.buf[from..], b"\r\n\r\n").map(|i| from + i);
        let end = sep.map_or(self.buf.len(), |s| s + 4);
        self.lines += self.buf[self.scanned.min(end)..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.scanned = end;
        if let Some(l) = self.limits {
            // Checked before the blank line arrives, so a header section
            // that never ends is refused as soon as it is too big.
            if end > l.max_header_bytes {
                let limit = l.max_header_bytes;
                return Some(Err(self.fail(|ctx| FramingError::TooLarge { limit, ctx })));
            }
            if self.lines > l.max_headers + 1 {
                let limit = l.max_headers;
                return Some(Err(
                    self.fail(|ctx| FramingError::TooManyHeaders { limit, ctx })
                ));
            }
        }
        let Some(sep) = sep else {
            if self.buf.len() > MAX_MESSAGE_SIZE {
                return Some(Err(self.fail(|ctx| FramingError::TooLarge {
                    limit: MAX_MESSAGE_SIZE,
                    ctx,
                })));
            }
            return None;
        };
        let body_start = sep + 4;
        let head = match split_head(&self.buf[..body_start], false) {
            Ok(h) => h,
            Err(detail) => {
                return Some(Err(
                    self.fail(|ctx| FramingError::InvalidContentLength { detail, ctx })
                ))
            }
        };
        let mut cl: Option<u64> = None;
        for v in head.all("content-length") {
            match parse_content_length(v) {
                Ok(n) if cl.is_some_and(|p| p != n) => {
                    let detail = MessageError::ConflictingValues;
                    return Some(Err(
                        self.fail(|ctx| FramingError::InvalidContentLength { detail, ctx })
                    ));
                }
                Ok(n) => cl = Some(n),
                Err(detail) => {
                    return Some(Err(
                        self.fail(|ctx| FramingError::InvalidContentLength { detail, ctx })
                    ))
                }
            }
        }
        let Some(cl) = cl else {
            return Some(Err(
                self.fail(|ctx| FramingError::MissingContentLength { ctx })
            ));
        };
        if let Some(l) = self.limits.filter(|l| cl > l.max_body_bytes as u64) {
            let limit = l.max_body_bytes;
            return Some(Err(self.fail(|ctx| FramingError::TooLarge { limit, ctx })));
        }
        let total = (body_start as u64).saturating_add(cl);
        if total > MAX_MESSAGE_SIZE as u64 {
            return Some(Err(self.fail(|ctx| FramingError::TooLarge {
                limit: MAX_MESSAGE_SIZE,
                ctx,
            })));
        }
        self.total = Some(total as usize);
        Some(Ok(total as usize))
    }

    fn fail(&mut self, make: impl FnOnce(Option<ReplyContext>) -> FramingError) -> FramingError {
        let ctx = if self.buf.starts_with(b"SIP/") {
            None // never answer a response
        } else {
            reply_context(&self.buf)
        };
        self.failed = true;
        self.buf = Vec::new();
        self.restart();
        make(ctx)
    }
}

#[cfg(test)]
mod tests {
    //! RFC 4475 conformance plus robustness tests.
    //!
    //! Application-layer answers for messages the wire layer accepts (`Ok`) — the
    //! layer above must apply these:
    //!
    //! | file | RFC 4475 | app layer answers |
    //! |---|---|---|
    //! | wsinv, esc01, longreq, lwsdisp, transports, semiuri | 3.1.1 | process normally (INVITE/OPTIONS; 404 for unknown users) |
    //! | escnull, cparam01, cparam02, regescrt, regaut01, unksm2, dblreq | 3.1.1/3.3 | REGISTER: 405 Method Not Allowed (we are not a registrar) |
    //! | dblreq (TCP only) | 3.1.1.8 | the trailing INVITE frames as a 2nd message and is processed; the remaining noise is a framing error (close) |
    //! | mpart01 | 3.1.1.11 | MESSAGE: 405 (or 415 if MESSAGE is ever supported) |
    //! | unreason, noreason, bcast | 3.1.1.12/13, 3.3.10 | responses: to the transaction layer; bcast: discard if top Via is not ours, never send to 255.255.255.255 |
    //! | badbranch | 3.2.1 | treat branch "z9hG4bK" as RFC 2543 style (match transactions the old way); OPTIONS -> 200 |
    //! | bext01 | 3.3.5 | 420 Bad Extension with `Unsupported: nothingSupportsThis, nothingSupportsThisEither` |
    //! | invut | 3.3.6 | 415 Unsupported Media Type with `Accept: application/sdp` |
    //! | sdp01 | 3.3.15 | 406 Not Acceptable (400 also allowed) |
    //! | inv2543 | 3.4.1 | process normally (RFC 2543: no branch, no Max-Forwards, no From tag) |
    use super::*;
    use std::path::PathBuf;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance/rfc4475");

    /// Outcome of one message (UDP) or one `next_message` step (TCP).
    #[derive(Debug, Clone, PartialEq)]
    enum Out {
        Req,
        Resp,
        Reply(u16),
        Drop,
        /// Framing error kind: "no-cl", "bad-cl", "too-large".
        FrameErr(&'static str),
        /// Framer still waiting for bytes the file does not contain.
        Incomplete,
    }
    use Out::*;

    struct Case {
        file: &'static str,
        section: &'static str,
        rfc: &'static str,
        udp: Out,
        tcp: &'static [Out],
        app: &'static str,
    }

    const fn c(
        file: &'static str,
        section: &'static str,
        rfc: &'static str,
        udp: Out,
        tcp: &'static [Out],
        app: &'static str,
    ) -> Case {
        Case {
            file,
            section,
            rfc,
            udp,
            tcp,
            app,
        }
    }

    const R400: &[Out] = &[Reply(400)];
    const REQ: &[Out] = &[Req];

    fn cases() -> Vec<Case> {
        vec![
            c("wsinv", "3.1.1.1", "valid: parse despite wild whitespace/folding", Req, REQ, "INVITE: normal processing"),
            c("intmeth", "3.1.1.2", "valid; unknown method -> 501", Reply(501), &[Reply(501)], "- (wire layer answers 501: rsipstack Method cannot hold extension methods)"),
            c("esc01", "3.1.1.3", "valid; escapes must be handled", Req, REQ, "INVITE: normal processing (404 if user unknown)"),
            c("escnull", "3.1.1.4", "valid; %00 in URIs", Req, REQ, "REGISTER: 405 (not a registrar)"),
            c("esc02", "3.1.1.5", "valid; method RE%47IST%45R is unknown -> 501", Reply(501), &[Reply(501)], "- (wire layer answers 501)"),
            c("lwsdisp", "3.1.1.6", "valid; display name without LWS", Req, REQ, "OPTIONS: 200"),
            c("longreq", "3.1.1.7", "valid; very long values", Req, REQ, "INVITE: normal processing"),
            c("dblreq", "3.1.1.8", "valid; UDP: process REGISTER, ignore trailing bytes", Req, &[Req, Req, FrameErr("no-cl")], "REGISTER: 405; TCP: the noise frames as an INVITE (CL 150 < its 155-byte body) then 'C' without Content-Length -> close"),
            c("semiuri", "3.1.1.9", "valid; ';' in user part", Req, REQ, "OPTIONS: 200 (or 404 for unknown user)"),
            c("transports", "3.1.1.10", "valid; unknown Via transports", Req, REQ, "OPTIONS: 200"),
            c("mpart01", "3.1.1.11", "valid; multipart binary body", Req, REQ, "MESSAGE: 405"),
            c("unreason", "3.1.1.12", "valid response, UTF-8 reason", Resp, &[Resp], "to transaction layer"),
            c("noreason", "3.1.1.13", "valid response, empty reason", Resp, &[Resp], "to transaction layer"),
            c("badinv01", "3.1.2.1", "invalid separators in Via/Contact -> 400", Reply(400), R400, "-"),
            c("clerr", "3.1.2.2", "Content-Length larger than message -> 400 (UDP)", Reply(400), &[Incomplete], "- (TCP: framer waits for the body; idle timeout closes)"),
            c("ncl", "3.1.2.3", "negative Content-Length -> 400", Reply(400), &[FrameErr("bad-cl")], "- (TCP: framing error -> 400 from ctx, close)"),
            c("scalar02", "3.1.2.4", "CSeq > 2^32-1 -> 400", Reply(400), R400, "-"),
            c("scalarlg", "3.1.2.5", "response with overlarge scalars: discard", Drop, &[Drop], "-"),
            c("quotbal", "3.1.2.6", "unterminated quote in To -> 400", Reply(400), R400, "-"),
            c("ltgtruri", "3.1.2.7", "<> around Request-URI -> 400", Reply(400), R400, "-"),
            c("lwsruri", "3.1.2.8", "LWS in Request-URI -> 400", Reply(400), R400, "-"),
            c("lwsstart", "3.1.2.9", "multiple SP in Request-Line -> 400", Reply(400), R400, "-"),
            c("trws", "3.1.2.10", "trailing SP in Request-Line -> 400", Reply(400), R400, "-"),
            c("escruri", "3.1.2.11", "escaped headers in Request-URI -> 400", Reply(400), R400, "-"),
            c("baddate", "3.1.2.12", "Date not in GMT -> 400", Reply(400), R400, "-"),
            c("regbadct", "3.1.2.13", "addr-spec with '?' not in <> -> 400", Reply(400), R400, "-"),
            c("badaspec", "3.1.2.14", "spaces inside <addr-spec> -> 400", Reply(400), R400, "-"),
            c("baddn", "3.1.2.15", "unquoted non-token display name -> 400", Reply(400), &[Incomplete], "- (file lacks the final CRLF: TCP never frames it)"),
            c("badvers", "3.1.2.16", "SIP/7.0 -> 505", Reply(505), &[Reply(505)], "-"),
            c("mismatch01", "3.1.2.17", "CSeq method mismatch -> 400", Reply(400), R400, "-"),
            c("mismatch02", "3.1.2.18", "unknown method + CSeq mismatch -> 501 or 400", Reply(400), R400, "-"),
            c("bigcode", "3.1.2.19", "response code 4294967301: discard", Drop, &[Drop], "-"),
            c("badbranch", "3.2.1", "branch is only the magic cookie: RFC 2543 matching", Req, REQ, "OPTIONS: 200; match transaction RFC 2543 style"),
            c("insuf", "3.3.1", "missing Call-ID/From/To -> 400", Reply(400), R400, "-"),
            c("unkscm", "3.3.2", "unknown Request-URI scheme -> 416", Reply(416), &[Reply(416)], "-"),
            c("novelsc", "3.3.3", "soap.beep Request-URI: proxy forwards, UAS 416", Reply(416), &[Reply(416)], "-"),
            c("unksm2", "3.3.4", "unknown schemes in To/From/Contact: must parse", Req, REQ, "REGISTER: 405 (a registrar would answer 400: AOR not sip/sips)"),
            c("bext01", "3.3.5", "Require/Proxy-Require unknown -> 420", Req, REQ, "420 Bad Extension + Unsupported"),
            c("invut", "3.3.6", "unknown Content-Type -> 415", Req, REQ, "415 Unsupported Media Type + Accept: application/sdp"),
            c("regaut01", "3.3.7", "unknown auth scheme: must parse", Req, REQ, "REGISTER: 405 (registrar: 401)"),
            c("multi01", "3.3.8", "duplicate single-value headers -> 400", Reply(400), R400, "-"),
            c("mcl01", "3.3.9", "multiple Content-Length -> 400", Reply(400), &[FrameErr("bad-cl")], "- (TCP: framing error -> 400 from ctx, close)"),
            c("bcast", "3.3.10", "response with broadcast Via: accept, never send to broadcast", Resp, &[Resp], "discard (top Via not ours); never send to 255.255.255.255"),
            c("zeromf", "3.3.11", "Max-Forwards 0: proxy 483, endpoint processes normally", Req, REQ, "OPTIONS: 200 (we are an endpoint)"),
            c("cparam01", "3.3.12", "REGISTER, unknownparam is a contact param", Req, REQ, "REGISTER: 405"),
            c("cparam02", "3.3.13", "REGISTER, unknownparam is a URI param", Req, REQ, "REGISTER: 405"),
            c("regescrt", "3.3.14", "REGISTER with escaped header in <Contact>: valid", Req, REQ, "REGISTER: 405"),
            c("sdp01", "3.3.15", "Accept without application/sdp -> 406 (or 400)", Req, REQ, "406 Not Acceptable"),
            c("inv2543", "3.4.1", "RFC 2543 INVITE: accept", Req, &[FrameErr("no-cl")], "INVITE: normal processing (TCP: no Content-Length -> 400 from ctx, close)"),
            c("test", "(extra)", "README says simple INVITE; it lacks SIP-Version, Via and CSeq", Drop, &[Drop], "- (unanswerable: no Via/CSeq)"),
        ]
    }

    fn read(file: &str) -> Vec<u8> {
        let p = PathBuf::from(DIR).join(format!("{file}.dat"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn outcome(r: &Result<Inbound, Rejection>) -> Out {
        match r {
            Ok(Inbound::Request(_)) => Req,
            Ok(Inbound::Response(_)) => Resp,
            Err(Rejection::Reply { status, .. }) => Reply(*status),
            Err(Rejection::Drop { .. }) => Drop,
        }
    }

    fn frame_kind(e: &FramingError) -> &'static str {
        match e {
            FramingError::MissingContentLength { .. } => "no-cl",
            FramingError::InvalidContentLength { .. } => "bad-cl",
            FramingError::TooLarge { .. } => "too-large",
            FramingError::TooManyHeaders { .. } => "too-many-headers",
        }
    }

    #[test]
    fn framer_limits_header_bytes_lines_and_body_before_the_end() {
        let limits = FrameLimits {
            max_header_bytes: 1024,
            max_headers: 20,
            max_body_bytes: 100,
        };
        let fits = format!("{MINIMAL}Content-Length: 2\r\n\r\nhi");
        let mut f = StreamFramer::with_limits(limits);
        f.push(fits.as_bytes());
        assert_eq!(f.next_message(), Some(Ok(fits.into_bytes())));
        // A header section that never ends is refused once it is too big.
        let mut f = StreamFramer::with_limits(limits);
        f.push(format!("{MINIMAL}X-Pad: {}\r\n", "a".repeat(1100)).as_bytes());
        let err = f.next_message().unwrap().unwrap_err();
        assert_eq!((frame_kind(&err), err.status()), ("too-large", 413));
        // Many short lines, blank line not yet there.
        let mut f = StreamFramer::with_limits(limits);
        f.push(format!("{MINIMAL}{}", "X: y\r\n".repeat(30)).as_bytes());
        let err = f.next_message().unwrap().unwrap_err();
        assert_eq!((frame_kind(&err), err.status()), ("too-many-headers", 400));
        // A body announced over the cap is refused before it is read.
        let mut f = StreamFramer::with_limits(limits);
        f.push(format!("{MINIMAL}Content-Length: 101\r\n\r\n").as_bytes());
        let err = f.next_message().unwrap().unwrap_err();
        assert_eq!((frame_kind(&err), err.status()), ("too-large", 413));
        assert!(err.reply_context().is_some());
    }

    /// Run a byte stream through the framer (in `chunk`-sized pushes) and parse each
    /// framed message over TCP.
    fn tcp_outcomes(data: &[u8], chunk: usize) -> Vec<Out> {
        let mut f = StreamFramer::new();
        let mut outs = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            f.push(piece);
            while let Some(r) = f.next_message() {
                outs.push(match r {
                    Ok(msg) => outcome(&parse_message(&msg, Transport::Tcp)),
                    Err(e) => FrameErr(frame_kind(&e)),
                });
            }
        }
        if f.buffered() > 0 {
            outs.push(Incomplete);
        }
        outs
    }

    fn assert_reason_ok(file: &str, r: &Result<Inbound, Rejection>) {
        if let Err(Rejection::Reply { reason, ctx, .. }) = r {
            assert!(
                !reason.is_empty() && reason.bytes().all(|b| (b' '..=b'~').contains(&b)),
                "{file}: reason not printable single-line ASCII: {reason:?}"
            );
            assert!(
                !ctx.vias.is_empty() && !ctx.cseq.is_empty(),
                "{file}: {ctx:?}"
            );
        }
    }

    #[test]
    fn rfc4475_every_file_has_the_expected_outcome_over_udp_and_tcp() {
        let cases = cases();
        let mut on_disk: Vec<String> = std::fs::read_dir(DIR)
            .expect("conformance dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".dat").map(str::to_string))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = cases.iter().map(|c| c.file.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "table must cover exactly the .dat files");
        assert_eq!(cases.len(), 50);

        let mut failures = Vec::new();
        for case in &cases {
            let data = read(case.file);
            let udp = parse_message(&data, Transport::Udp);
            assert_reason_ok(case.file, &udp);
            if outcome(&udp) != case.udp {
                failures.push(format!(
                    "{} UDP: expected {:?}, got {:?}",
                    case.file, case.udp, udp
                ));
            }
            for chunk in [data.len(), 1, 7] {
                let tcp = tcp_outcomes(&data, chunk);
                if tcp != case.tcp {
                    failures.push(format!(
                        "{} TCP(chunk {chunk}): expected {:?}, got {:?}",
                        case.file, case.tcp, tcp
                    ));
                }
            }
            if std::env::var_os("RFC4475_TABLE").is_some() {
                println!(
                    "| {} | {} | {} | UDP: {:?}; TCP: {:?} | {} |",
                    case.file, case.section, case.rfc, case.udp, case.tcp, case.app
                );
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn reason_of(file: &str) -> String {
        match parse_message(&read(file), Transport::Udp) {
            Err(Rejection::Reply { reason, .. }) => reason,
            other => panic!("{file}: expected Reply, got {other:?}"),
        }
    }

    #[test]
    fn reasons_say_exactly_what_is_wrong() {
        let body = |f: &str| {
            let d = read(f);
            d.len() - find_bytes(&d, b"\r\n\r\n").unwrap() - 4
        };
        assert_eq!(
            reason_of("clerr"),
            format!(
                "Bad Request: Content-Length 9999 exceeds body of {} bytes",
                body("clerr")
            )
        );
        assert_eq!(reason_of("ncl"), "Bad Request: negative Content-Length");
        assert_eq!(reason_of("insuf"), "Bad Request: missing Call-ID, From, To");
        assert_eq!(
            reason_of("mismatch01"),
            "Bad Request: CSeq method INVITE does not match request method OPTIONS"
        );
        assert_eq!(
            reason_of("badvers"),
            "Version Not Supported: SIP/7.0 is not supported"
        );
        assert_eq!(
            reason_of("unkscm"),
            "Unsupported URI Scheme: scheme 'nobodyKnowsThisScheme'"
        );
        assert_eq!(
            reason_of("intmeth").split(':').next(),
            Some("Not Implemented")
        );
        assert_eq!(
            reason_of("scalar02"),
            "Bad Request: CSeq sequence number exceeds 2^31-1"
        );
        assert_eq!(
            reason_of("quotbal"),
            "Bad Request: unterminated quoted string in To"
        );
        assert_eq!(
            reason_of("ltgtruri"),
            "Bad Request: Request-URI enclosed in <>"
        );
        assert_eq!(
            reason_of("lwsruri"),
            "Bad Request: whitespace in Request-URI"
        );
        assert_eq!(
            reason_of("lwsstart"),
            "Bad Request: multiple spaces between Request-Line elements"
        );
        assert_eq!(
            reason_of("trws"),
            "Bad Request: leading or trailing whitespace in Request-Line"
        );
        assert_eq!(
            reason_of("escruri"),
            "Bad Request: escaped headers in Request-URI"
        );
        assert_eq!(
            reason_of("baddate"),
            "Bad Request: Date time zone 'EST' is not GMT"
        );
        assert_eq!(
            reason_of("badaspec"),
            "Bad Request: whitespace inside <> in To"
        );
        assert_eq!(
            reason_of("multi01"),
            "Bad Request: multiple Call-ID headers"
        );
        assert_eq!(
            reason_of("mcl01"),
            "Bad Request: multiple conflicting Content-Length values"
        );
        assert_eq!(reason_of("badinv01"), "Bad Request: empty parameter in Via");
        assert!(reason_of("regbadct").contains("must be enclosed in <> in Contact"));
        assert!(reason_of("baddn").contains("must be quoted in From"));
    }

    #[test]
    fn reply_context_copies_the_raw_unfolded_headers() {
        let ctx = reply_context(&read("insuf")).expect("Via and CSeq present");
        assert_eq!(
            ctx.vias,
            vec!["SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf"]
        );
        assert_eq!(ctx.cseq, "193942 INVITE");
        assert_eq!(
            (ctx.from.as_str(), ctx.to.as_str(), ctx.call_id.as_str()),
            ("", "", "")
        );

        // wsinv: compact forms, folding, two Via lines.
        let ctx = reply_context(&read("wsinv")).unwrap();
        assert_eq!(ctx.cseq, "0009 INVITE");
        assert_eq!(
            ctx.to,
            "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"
        );
        assert_eq!(
            ctx.from,
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8"
        );
        assert_eq!(ctx.vias.len(), 2);
        assert_eq!(ctx.vias[0], "SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw");
        assert!(ctx.vias[1].starts_with("SIP  / 2.0  / TCP"));
        assert!(reply_context(b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n").is_none());
    }

    fn request(file: &str) -> Request {
        match parse_message(&read(file), Transport::Udp) {
            Ok(Inbound::Request(r)) => r,
            other => panic!("{file}: {other:?}"),
        }
    }

    #[test]
    fn accepted_messages_carry_the_right_body_and_headers() {
        use rsipstack::sip::{Header, Method};
        let r = request("wsinv");
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.body.len(), 150);
        assert!(r.body.starts_with(b"v=0\r\n"));
        // short forms reach rsipstack as the right typed variants
        let r = request("esc01");
        assert!(r.headers.iter().any(|h| matches!(h, Header::CallId(_))));
        assert!(r
            .headers
            .iter()
            .any(|h| matches!(h, Header::ContentType(_))));
        // dblreq on UDP: Content-Length 0 wins over the trailing INVITE
        let r = request("dblreq");
        assert_eq!(r.method, Method::Register);
        assert!(r.body.is_empty());
        // inv2543 on UDP: no Content-Length, body is the rest of the datagram
        let data = read("inv2543");
        let r = request("inv2543");
        assert_eq!(r.body, &data[find_bytes(&data, b"\r\n\r\n").unwrap() + 4..]);
        assert_eq!(request("mpart01").body.len(), 553);
        match parse_message(&read("unreason"), Transport::Udp) {
            Ok(Inbound::Response(resp)) => {
                assert_eq!(u16::from(resp.status_code.clone()), 200);
                assert_eq!(resp.body.len(), 154);
            }
            other => panic!("{other:?}"),
        }
    }

    const MINIMAL: &str = "OPTIONS sip:ivr@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n\
        f: <sip:a@example.com>;tag=1\r\nt: <sip:ivr@example.com>\r\n\
        i: abc@192.0.2.1\r\nCSeq: 1 OPTIONS\r\n";

    #[test]
    fn udp_truncates_to_content_length_and_tcp_requires_it() {
        let msg = format!("{MINIMAL}l: 3\r\n\r\nabcdef");
        match parse_message(msg.as_bytes(), Transport::Udp) {
            Ok(Inbound::Request(r)) => assert_eq!(r.body, b"abc"),
            other => panic!("{other:?}"),
        }
        let msg = format!("{MINIMAL}\r\nxyz");
        match parse_message(msg.as_bytes(), Transport::Udp) {
            Ok(Inbound::Request(r)) => assert_eq!(r.body, b"xyz"),
            other => panic!("{other:?}"),
        }
        match parse_message(msg.as_bytes(), Transport::Tcp) {
            Err(Rejection::Reply {
                status: 400,
                reason,
                ..
            }) => {
                assert!(reason.contains("missing Content-Length"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        for (cl, want) in [
            ("abc", "non-numeric"),
            ("-1", "negative"),
            ("99999999999999999999999", "too large"),
        ] {
            let msg = format!("{MINIMAL}Content-Length: {cl}\r\n\r\n");
            match parse_message(msg.as_bytes(), Transport::Udp) {
                Err(Rejection::Reply {
                    status: 400,
                    reason,
                    ..
                }) => assert!(reason.contains(want), "{reason}"),
                other => panic!("{cl}: {other:?}"),
            }
        }
        // same value twice is not a conflict
        let msg = format!("{MINIMAL}Content-Length: 0\r\nl: 0\r\n\r\n");
        assert_eq!(outcome(&parse_message(msg.as_bytes(), Transport::Udp)), Req);
    }

    #[test]
    fn malformed_ack_is_never_answered_and_keepalives_are_dropped() {
        let msg = "ACK sip:ivr@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                   CSeq: 1 ACK\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(
            outcome(&parse_message(msg.as_bytes(), Transport::Udp)),
            Drop
        );
        assert_eq!(outcome(&parse_message(b"\r\n\r\n", Transport::Udp)), Drop);
        let ok = format!("\r\n\r\n{MINIMAL}\r\n");
        assert_eq!(outcome(&parse_message(ok.as_bytes(), Transport::Udp)), Req);
        // methods are case-sensitive: "options" is an unknown method
        let lower = MINIMAL.replace("OPTIONS", "options");
        let lower = format!("{lower}\r\n");
        assert_eq!(
            outcome(&parse_message(lower.as_bytes(), Transport::Udp)),
            Reply(501)
        );
        // a folded line before any header is illegal
        let folded = MINIMAL.replacen("\r\nVia", "\r\n Via", 1) + "\r\n";
        assert_eq!(
            outcome(&parse_message(folded.as_bytes(), Transport::Udp)),
            Drop
        );
    }

    #[test]
    fn framer_skips_keepalives_splits_pipelined_messages_and_limits_size() {
        let one = format!("{MINIMAL}Content-Length: 2\r\n\r\nhi");
        let stream = format!("\r\n\r\n{one}\r\n\r\n{one}{one}");
        assert_eq!(tcp_outcomes(stream.as_bytes(), 3), vec![Req, Req, Req]);
        let mut f = StreamFramer::new();
        f.push(stream.as_bytes());
        assert_eq!(f.next_message(), Some(Ok(one.clone().into_bytes())));
        assert_eq!(f.take_pings(), 1);
        assert_eq!(f.take_pings(), 0);
        // a ping split across reads is still one ping; a lone CRLF (pong) is none
        let mut f = StreamFramer::new();
        for piece in ["\r", "\n\r", "\n", "\r\n"] {
            f.push(piece.as_bytes());
            assert_eq!(f.next_message(), None);
        }
        assert_eq!(f.take_pings(), 1);

        let mut f = StreamFramer::new();
        f.push(format!("{MINIMAL}Content-Length: 70000\r\n\r\n").as_bytes());
        let err = f.next_message().unwrap().unwrap_err();
        assert_eq!((frame_kind(&err), err.status()), ("too-large", 413));
        assert!(err.reply_context().is_some());
        assert!(f.is_failed());
        f.push(one.as_bytes());
        assert_eq!(
            f.next_message(),
            None,
            "a failed stream yields nothing more"
        );

        let mut f = StreamFramer::new();
        f.push(&vec![b'A'; MAX_MESSAGE_SIZE + 1]);
        assert_eq!(
            f.next_message().map(|r| r.map_err(|e| frame_kind(&e))),
            Some(Err("too-large"))
        );
    }

    /// Everything a framer yields for `stream` pushed in `chunk`-byte reads:
    /// messages (or error kinds) in order, and the pings.
    fn framed(stream: &[u8], chunk: usize, limits: Option<FrameLimits>) -> (Vec<String>, usize) {
        let mut f = limits.map_or_else(StreamFramer::new, StreamFramer::with_limits);
        let (mut out, mut pings) = (Vec::new(), 0);
        for piece in stream.chunks(chunk) {
            f.push(piece);
            while let Some(m) = f.next_message() {
                out.push(match m {
                    Ok(msg) => String::from_utf8_lossy(&msg).into_owned(),
                    Err(e) => format!("error {}", frame_kind(&e)),
                });
            }
            pings += f.take_pings();
        }
        (out, pings)
    }

    #[test]
    fn the_framer_scans_incrementally_and_frames_every_split_as_the_whole() {
        // The blank line, the body and the pings land across reads at every
        // offset; the remembered scan position must not change what is framed.
        let one = format!("{MINIMAL}Content-Length: 5\r\n\r\nhello");
        let empty = format!("{MINIMAL}Content-Length: 0\r\n\r\n");
        let stream = format!("\r\n\r\n{one}{empty}\r\n\r\n{one}\r\n{empty}");
        let whole = framed(stream.as_bytes(), stream.len(), None);
        assert_eq!(whole.0, vec![one.clone(), empty.clone(), one, empty]);
        assert_eq!(whole.1, 2);
        for chunk in 1..=17 {
            assert_eq!(
                framed(stream.as_bytes(), chunk, None),
                whole,
                "chunk {chunk}"
            );
        }
        // Limits trip at the same point however the header section arrives.
        let limits = FrameLimits {
            max_header_bytes: 300,
            max_headers: 12,
            max_body_bytes: 4,
        };
        let long = format!(
            "{MINIMAL}Subject: {}\r\nContent-Length: 0\r\n\r\n",
            "x".repeat(300)
        );
        let many = format!(
            "{MINIMAL}{}Content-Length: 0\r\n\r\n",
            "A: b\r\n".repeat(12)
        );
        let body = format!("{MINIMAL}Content-Length: 5\r\n\r\nhello");
        for (stream, kind) in [
            (&long, "error too-large"),
            (&many, "error too-many-headers"),
            (&body, "error too-large"),
        ] {
            let fits = format!("{MINIMAL}Content-Length: 0\r\n\r\n");
            let stream = format!("{fits}{stream}{fits}");
            for chunk in [stream.len(), 1, 2, 3, 5, 64] {
                let (out, _) = framed(stream.as_bytes(), chunk, Some(limits));
                assert_eq!(out, vec![fits.clone(), kind.to_string()], "chunk {chunk}");
            }
        }
    }

    #[test]
    fn a_nul_byte_in_a_header_value_is_a_400() {
        let msg = "OPTIONS sip:ivr@h SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bKn\r\n\
                   From: <sip:a@h>;tag=1\r\nTo: <sip:ivr@h>\r\nCall-ID: nul@h\r\n\
                   CSeq: 1 OPTIONS\r\nSubject: hi\0there\r\nContent-Length: 0\r\n\r\n";
        match parse_message(msg.as_bytes(), Transport::Udp) {
            Err(Rejection::Reply { status, reason, .. }) => {
                assert_eq!(status, 400);
                assert_eq!(reason, "Bad Request: NUL byte in header subject");
            }
            other => panic!("{other:?}"),
        }
        let clean = msg.replace('\0', " ");
        assert!(parse_message(clean.as_bytes(), Transport::Udp).is_ok());
        // Escaped in a quoted string it is a legal quoted-pair.
        assert!(!has_bare_nul("\"a\\\0b\" <sip:a@h>"));
        assert!(has_bare_nul("\"a\0b\" <sip:a@h>"));
    }

    #[test]
    fn everyday_messages_from_real_user_agents_are_accepted() {
        let msgs = [
            "INVITE sip:+15551234567@[2001:db8::1]:5060;transport=udp SIP/2.0\r\n\
             Via: SIP/2.0/UDP [2001:db8::2]:5062;rport;branch=z9hG4bK.Xy1\r\n\
             Via: SIP/2.0/TCP 10.0.0.1:5060;received=192.0.2.9;branch=z9hG4bK-2\r\n\
             Max-Forwards: 70\r\n\
             From: \"Alice (mobile)\" <sip:alice@example.com>;tag=a1\r\n\
             To: Bob Smith <sip:+15551234567@example.com;user=phone>\r\n\
             Call-ID: 3c26=f0b+/ab@pc33\r\n\
             CSeq: 2147483647 INVITE\r\n\
             Contact: <sip:alice@10.0.0.1:5062;ob>;+sip.instance=\"<urn:uuid:0b7c-1f>\";expires=3600;q=0.5\r\n\
             Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
             Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
             Supported: replaces, timer\r\n\
             Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n\
             User-Agent: Linphone/5.0 (belle-sip/4.5)\r\n\
             Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
            "BYE tel:+15551234567 SIP/2.0\r\nv: SIP/2.0/TLS h.example.com:5061;branch=z9hG4bK3\r\n\
             f: <tel:+15550000000>;tag=x\r\nt: <sips:ivr@example.com>;tag=y\r\ni: b@h\r\n\
             CSeq: 3 BYE\r\nl: 0\r\n\r\n",
            "REGISTER sips:example.com SIP/2.0\r\nVia: SIP/2.0/TCP h:5060;branch=z9hG4bK4\r\n\
             From: <sip:u@example.com>;tag=1\r\nTo: <sip:u@example.com>\r\nCall-ID: r@h\r\n\
             CSeq: 9 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
        ];
        for m in msgs {
            let r = parse_message(m.as_bytes(), Transport::Udp);
            assert_eq!(outcome(&r), Req, "{m}\n{r:?}");
            assert_eq!(tcp_outcomes(m.as_bytes(), 5), vec![Req], "{m}");
        }
        let resp = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                    Record-Route: <sip:p1.example.com;lr>\r\nFrom: <sip:a@b>;tag=1\r\n\
                    To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            outcome(&parse_message(resp.as_bytes(), Transport::Udp)),
            Resp
        );
        // and the same response with a 2-digit code is dropped
        let bad = resp.replace("180", "18");
        assert_eq!(
            outcome(&parse_message(bad.as_bytes(), Transport::Udp)),
            Drop
        );
    }

    /// Tiny deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Properties every outcome must have, whatever the input.
    fn check_invariants(input: &[u8], r: &Result<Inbound, Rejection>) {
        assert_reason_ok("fuzz", r);
        match r {
            Ok(Inbound::Request(req)) => assert!(req.body.len() <= input.len()),
            Ok(Inbound::Response(resp)) => assert!(resp.body.len() <= input.len()),
            Err(Rejection::Reply { status, .. }) => {
                assert!([400, 413, 416, 483, 501, 505].contains(status), "{status}")
            }
            Err(Rejection::Drop { .. }) => {}
        }
    }

    #[test]
    fn never_panics_on_truncations_and_mutations() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        const SPICE: &[u8] = b"\r\n \t:;,<>\"\\%@?=/0-\x00\xff\xc3";
        let mut runs = 0usize;
        for case in cases() {
            let data = read(case.file);
            for cut in 0..=data.len() {
                let r = parse_message(&data[..cut], Transport::Udp);
                check_invariants(&data[..cut], &r);
                let _ = parse_message(&data[..cut], Transport::Tcp);
                let _ = reply_context(&data[..cut]);
                runs += 1;
            }
            for _ in 0..300 {
                let mut m = data.clone();
                for _ in 0..1 + rng.below(4) {
                    let pos = rng.below(m.len() + 1);
                    match rng.below(4) {
                        0 if pos < m.len() => m[pos] = SPICE[rng.below(SPICE.len())],
                        1 if pos < m.len() => {
                            m.remove(pos);
                        }
                        2 => m.insert(pos, SPICE[rng.below(SPICE.len())]),
                        _ if pos < m.len() => m[pos] = rng.next() as u8,
                        _ => m.push(b'\n'),
                    }
                }
                let r = parse_message(&m, Transport::Udp);
                check_invariants(&m, &r);
                let chunk = 1 + rng.below(64);
                let _ = tcp_outcomes(&m, chunk);
                runs += 1;
            }
        }
        assert!(runs > 20_000, "fuzz ran {runs} inputs");
    }
}
