//! RTP and RFC 4733: the input is a run of datagrams (2-byte big-endian
//! length, then the bytes); each is parsed, telephone-events go to the
//! RFC 4733 receiver, the rest to the jitter buffer (or its skip list),
//! and playout runs after each, on a clock that the input advances.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../../src/media/rtp_rx.rs"]
mod rtp_rx;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../../src/media/dtmf/mod.rs"]
mod dtmf;

use std::time::{Duration, Instant};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let t0 = Instant::now();
        let mut now = t0;
        let mut jb = rtp_rx::JitterBuffer::new(usize::from(data.first().copied().unwrap_or(3)));
        let mut te = dtmf::rfc4733::Rfc4733Receiver::new(8000);
        let mut rest = data.get(1..).unwrap_or(&[]);
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            rest = &rest[2..];
            let pkt = &rest[..len.min(rest.len())];
            rest = &rest[pkt.len()..];
            let _ = dtmf::rfc4733::parse_payload(pkt);
            if let Ok(p) = rtp_rx::parse(pkt) {
                match p.payload_type {
                    101 => {
                        let _ =
                            te.on_packet(now, p.ssrc, p.sequence, p.timestamp, p.marker, p.payload);
                        jb.pass(&p);
                    }
                    0 | 8 => jb.push_rtp(now, &p),
                    _ => jb.pass(&p),
                }
            }
            now += Duration::from_millis(u64::from(len as u8 % 41));
            te.poll(now);
            let _ = jb.pop(now);
        }
        let _ = jb.stats();
    });
}
