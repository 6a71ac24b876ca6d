//! SIP over TCP framing: the input is fed to the stream framer in chunks
//! whose sizes come from the input itself (so splits land everywhere), and
//! every framed message goes on to the parser.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../../src/sip/wire.rs"]
mod wire;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&split, rest)) = data.split_first() else {
            return;
        };
        let mut framer = wire::StreamFramer::new();
        let step = usize::from(split % 64) + 1;
        for chunk in rest.chunks(step) {
            framer.push(chunk);
            let _ = framer.take_pings();
            while let Some(m) = framer.next_message() {
                match m {
                    Ok(msg) => {
                        let _ = wire::parse_message(&msg, wire::Transport::Tcp);
                    }
                    Err(e) => {
                        let _ = e.status();
                        let _ = e.reply_context();
                    }
                }
            }
            if framer.is_failed() {
                break;
            }
        }
        let _ = framer.buffered();
    });
}
