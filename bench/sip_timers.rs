//! The SIP core's cost per packet and per timer wake against the number of
//! live dialogs, without sockets (bench/README.md, "SIP timers bench"):
//! `cargo bench --bench sip_timers`.
//!
//! For each count of dialogs (env `DIALOGS`, default `10 10000`) that many
//! INVITEs are answered and never ACKed, so every dialog has a 200 OK
//! retransmission timer running (the state an INVITE flood leaves). Then:
//! - **per packet**: PACKETS (default 20,000) out-of-dialog OPTIONS, each
//!   handled as the endpoint's loop handles one (`handle_request`, drain the
//!   outputs, ask `next_deadline` for the next wake);
//! - **per wake**: time advanced from deadline to deadline as the loop's
//!   sleep would, `handle_timeout` + drain + `next_deadline` each time, for
//!   WAKES (default 2,000) wakes.
//!
//! Prints µs per packet and per wake; the work per packet should not grow
//! with the number of dialogs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use voxgate::sip::core::{Core, CoreConfig, Link, Peer};
use voxgate::sip::wire::{self, Inbound, Transport};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn invite(i: usize) -> String {
    format!(
        "INVITE sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKinv{i}\r\nFrom: <sip:+1555@192.0.2.7>;tag=a{i}\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: flood-{i}@bench\r\nCSeq: 1 INVITE\r\nContact: <sip:c@192.0.2.7:5070>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

fn options(i: usize) -> String {
    format!(
        "OPTIONS sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.8:5070;branch=z9hG4bKopt{i}\r\nFrom: <sip:probe@192.0.2.8>;tag=o{i}\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: opt-{i}@bench\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn feed(core: &mut Core, now: Instant, peer: Peer, text: &str) {
    let raw = text.as_bytes();
    let (Ok(Inbound::Request(r)), Some(ctx)) = (
        wire::parse_message(raw, Transport::Udp),
        wire::reply_context(raw),
    ) else {
        eprintln!("bench request did not parse");
        std::process::exit(1);
    };
    core.handle_request(now, peer, &r, &ctx);
}

fn drain(core: &mut Core) -> usize {
    let mut n = 0;
    while core.poll_output().is_some() {
        n += 1;
    }
    n
}

/// A core with `n` answered, never ACKed INVITEs started over 1 s from `t0`.
fn flooded(n: usize, t0: Instant, peer: Peer) -> Core {
    let mut core = Core::new(CoreConfig::default());
    // Spread the dialogs' start over 1 s so their timers don't coincide.
    for i in 0..n {
        let at = t0 + Duration::from_micros((i as u64 * 1_000_000) / n.max(1) as u64);
        feed(&mut core, at, peer, &invite(i));
        core.accept(at, &format!("flood-{i}@bench"), SDP.as_bytes());
        drain(&mut core);
        core.next_deadline();
    }
    core
}

fn main() {
    let counts: Vec<usize> = std::env::var("DIALOGS")
        .unwrap_or_else(|_| "10 10000".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let packets = env("PACKETS", 20_000);
    let wakes = env("WAKES", 2_000);
    let peer = Peer {
        link: Link::Udp,
        addr: SocketAddr::from(([192, 0, 2, 7], 5070)),
    };
    println!("| dialogs | µs per packet | µs per timer wake | re-sends per wake |");
    println!("|---:|---:|---:|---:|");
    for n in counts {
        let t0 = Instant::now();
        let mut core = flooded(n, t0, peer);
        let now = t0 + Duration::from_secs(1);
        // Parsing is the same whatever the dialogs: keep it out of the timing.
        let reqs: Vec<_> = (0..packets)
            .map(|i| {
                let text = options(i);
                let raw = text.as_bytes();
                match (
                    wire::parse_message(raw, Transport::Udp),
                    wire::reply_context(raw),
                ) {
                    (Ok(Inbound::Request(r)), Some(ctx)) => (r, ctx),
                    _ => {
                        eprintln!("bench OPTIONS did not parse");
                        std::process::exit(1);
                    }
                }
            })
            .collect();
        let probe = Peer {
            link: Link::Udp,
            addr: SocketAddr::from(([192, 0, 2, 8], 5070)),
        };
        let start = Instant::now();
        let mut wake = None;
        for (r, ctx) in &reqs {
            core.handle_request(now, probe, r, ctx);
            drain(&mut core);
            wake = core.next_deadline();
        }
        let per_packet = start.elapsed().as_secs_f64() * 1e6 / packets.max(1) as f64;
        std::hint::black_box(wake);

        // The wakes on a core of its own: the OPTIONS' cached answers would
        // all expire in one wake and swamp the dialogs' timers.
        let mut core = flooded(n, t0, peer);
        let start = Instant::now();
        let mut sent = 0;
        let mut done = 0;
        while done < wakes {
            let Some(t) = core.next_deadline() else { break };
            core.handle_timeout(t);
            sent += drain(&mut core);
            done += 1;
        }
        let per_wake = start.elapsed().as_secs_f64() * 1e6 / done.max(1) as f64;
        println!(
            "| {n} | {per_packet:.2} | {per_wake:.2} | {:.2} |",
            sent as f64 / done.max(1) as f64
        );
    }
}
