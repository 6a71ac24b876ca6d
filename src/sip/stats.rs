//! Process-wide SIP counters, always on and cheap: one relaxed atomic add per
//! message sent. The endpoint counts every response it puts on the wire
//! (retransmissions included) by class, so `/metrics` can show 5xx storms
//! (overload, limits) and 4xx (bad requests, refused calls) as they happen.

use std::sync::atomic::{AtomicU64, Ordering};

/// Response classes counted: 1xx … 6xx.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// Global SIP counters of this process.
pub struct SipStats {
    responses: [AtomicU64; 6],
}

/// The process's one set of counters: the endpoint adds to it.
pub static STATS: SipStats = SipStats {
    responses: [const { AtomicU64::new(0) }; 6],
};

impl SipStats {
    /// Count `data` if it is a response (`SIP/2.0 NNN …`); requests and
    /// anything else are left alone.
    pub fn count_sent(&self, data: &[u8]) {
        if let Some(i) = response_class(data) {
            self.responses[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Responses sent so far, by class, as `(class, count)`.
    pub fn responses_by_class(&self) -> Vec<(&'static str, u64)> {
        CLASSES
            .iter()
            .zip(self.responses.iter())
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Index into [`CLASSES`] of a serialised response's status, if it is one.
fn response_class(data: &[u8]) -> Option<usize> {
    let rest = data.strip_prefix(b"SIP/2.0 ")?;
    match rest.first()? {
        d @ b'1'..=b'6' => Some(usize::from(d - b'1')),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_by_class_and_requests_not_at_all() {
        assert_eq!(response_class(b"SIP/2.0 200 OK\r\n"), Some(1));
        assert_eq!(response_class(b"SIP/2.0 100 Trying\r\n"), Some(0));
        assert_eq!(
            response_class(b"SIP/2.0 503 Service Unavailable\r\n"),
            Some(4)
        );
        assert_eq!(response_class(b"SIP/2.0 603 Decline\r\n"), Some(5));
        assert_eq!(response_class(b"INVITE sip:a@b SIP/2.0\r\n"), None);
        assert_eq!(response_class(b"SIP/2.0 700 Odd\r\n"), None);
        assert_eq!(response_class(b""), None);
        let s = SipStats {
            responses: [const { AtomicU64::new(0) }; 6],
        };
        s.count_sent(b"SIP/2.0 486 Busy Here\r\n\r\n");
        s.count_sent(b"SIP/2.0 404 Not Found\r\n\r\n");
        s.count_sent(b"BYE sip:a@b SIP/2.0\r\n\r\n");
        let by = s.responses_by_class();
        assert_eq!(by[3], ("4xx", 2));
        assert_eq!(by.iter().map(|(_, n)| n).sum::<u64>(), 2);
    }
}
