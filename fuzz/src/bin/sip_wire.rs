//! SIP wire parser: one datagram (UDP) and the same bytes as a framed TCP
//! message. Any input must give a message or a rejection, never a panic.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../../src/sip/wire.rs"]
mod wire;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = wire::parse_message(data, wire::Transport::Udp);
        let _ = wire::parse_message(data, wire::Transport::Tcp);
        let _ = wire::reply_context(data);
    });
}
