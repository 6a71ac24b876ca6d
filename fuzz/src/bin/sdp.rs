//! SDP offer/answer: any offer gets an answer or an error with a SIP status.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../../src/sip/sdp.rs"]
mod sdp_answer;

use std::net::{IpAddr, Ipv4Addr};

fn main() {
    let local = sdp_answer::LocalMedia {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 20000,
        codecs: vec![sdp_answer::PCMU, sdp_answer::PCMA],
        session_id: 1,
        session_version: 1,
    };
    afl::fuzz!(|data: &[u8]| {
        match sdp_answer::answer(data, &local) {
            Ok(_) => {}
            Err(e) => {
                let _ = e.status();
            }
        }
    });
}
