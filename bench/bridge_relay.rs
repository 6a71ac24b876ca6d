//! The bridge's media relay on the cores alone, without sockets
//! (bench/README.md, "Bridge relay bench"): `cargo bench --bench bridge_relay`.
//!
//! PAIRS (env, default 500) bridged leg pairs, one PCMU and one PCMA, are
//! driven on simulated time for SECONDS (default 10) of 20 ms frames: each
//! slot every leg sends (handle_tick + its packet), takes one RTP packet of
//! its far end (handle_rtp) and plays a frame out (handle_playout), which
//! crosses to the other leg, is transcoded and goes out there. The same is
//! then run with the legs not bridged (two IVR legs sending silence), so the
//! difference is what relaying costs. Prints CPU time per pair per second of
//! audio, the share of one core 500 pairs take, and the queue's own cost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use voxgate::media::bridge;
use voxgate::media::core::{MediaCommand, MediaCore, MediaParams, Output, SessionConfig};
use voxgate::media::g711::{self, Codec};
use voxgate::media::prompt::PromptCache;
use voxgate::media::source::RtpSource;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn leg(t0: Instant, codec: Codec, port: u16, prompts: &Arc<PromptCache>) -> MediaCore {
    let peer: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let params = MediaParams {
        codec,
        codec_pt: codec.payload_type(),
        dtmf_pts: vec![101],
        remote: Some(peer),
        signalled: Some(peer.ip()),
        send: true,
        expect_rtp: true,
    };
    let cfg = SessionConfig {
        rtp_timeout: Duration::from_secs(30),
        // As `serve` runs by default.
        inband_dtmf: true,
        jitter_frames: 3,
        rtp_source: RtpSource::Latch,
    };
    let mut core = MediaCore::new(t0, params, cfg, Arc::clone(prompts));
    core.handle_command(t0, MediaCommand::Confirmed);
    core
}

/// A far end's stream: one 20 ms packet of speech-like audio per slot.
struct FarEnd {
    from: SocketAddr,
    packets: Vec<Vec<u8>>,
    seq: u16,
}

impl FarEnd {
    fn new(codec: Codec, port: u16) -> Self {
        // 50 frames of a varying two-tone signal, cycled (not DTMF).
        let packets = (0..50u32)
            .map(|n| {
                let pcm: Vec<i16> = (0..160u32)
                    .map(|i| {
                        let t = (n * 160 + i) as f32 / 8000.0;
                        let f = 300.0 + 20.0 * n as f32;
                        (4000.0 * (std::f32::consts::TAU * f * t).sin()
                            + 1500.0 * (std::f32::consts::TAU * 2.3 * f * t).sin())
                            as i16
                    })
                    .collect();
                let mut p = vec![0x80, codec.payload_type(), 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
                g711::encode(codec, &pcm, &mut p);
                p
            })
            .collect();
        Self {
            from: SocketAddr::from(([127, 0, 0, 1], port)),
            packets,
            seq: 0,
        }
    }

    fn next(&mut self) -> &[u8] {
        let i = usize::from(self.seq) % self.packets.len();
        let seq = self.seq;
        let ts = u32::from(seq) * 160;
        let p = &mut self.packets[i];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        p
    }
}

/// CPU time of this thread (the machine is shared: wall time would count
/// other processes).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Carries out a core's outputs as the session loop does (minus the socket).
fn drain(core: &mut MediaCore, sent: &mut u64) {
    while let Some(out) = core.poll_output() {
        match out {
            Output::Transmit(t) => {
                std::hint::black_box(t.data);
                *sent += 1;
                core.transmitted();
            }
            Output::Event(_) => {}
            Output::Timeout(_) => return,
        }
    }
}

/// Runs `pairs` leg pairs for `slots` 20 ms slots; CPU seconds and packets sent.
fn run(pairs: usize, slots: u32, bridged: bool) -> (Duration, u64, u64) {
    let prompts = Arc::new(PromptCache::new("/nonexistent"));
    let t0 = Instant::now();
    let mut legs: Vec<(MediaCore, FarEnd)> = Vec::with_capacity(pairs * 2);
    for i in 0..pairs {
        let port = 10_000 + 2 * i as u16;
        let mut a = leg(t0, Codec::Pcmu, port, &prompts);
        let mut b = leg(t0, Codec::Pcma, port + 1, &prompts);
        if bridged {
            let (ea, eb) = bridge::pair();
            a.handle_command(t0, MediaCommand::Bridge(ea));
            b.handle_command(t0, MediaCommand::Bridge(eb));
        }
        legs.push((a, FarEnd::new(Codec::Pcmu, port)));
        legs.push((b, FarEnd::new(Codec::Pcma, port + 1)));
    }
    let mut sent = 0;
    let start = thread_cpu();
    for slot in 0..slots {
        let now = t0 + Duration::from_millis(20 * u64::from(slot));
        // Send halves first (as the session does), then receive + playout.
        for (core, _) in legs.iter_mut() {
            core.handle_tick(now);
            drain(core, &mut sent);
        }
        for (core, far) in legs.iter_mut() {
            let from = far.from;
            core.handle_rtp(now, from, far.next());
            core.handle_playout(now);
            drain(core, &mut sent);
        }
    }
    let cpu = thread_cpu() - start;
    let relayed: u64 = legs.iter().map(|(c, _)| c.stats().relay_frames_in).sum();
    (cpu, sent, relayed)
}

fn main() {
    let pairs = env("PAIRS", 500);
    let seconds = env("SECONDS", 10) as u32;
    let slots = seconds * 50;
    println!("bridge relay bench: {pairs} pairs (PCMU <-> PCMA), {seconds} s of 20 ms frames, inband_dtmf on");
    // Warm-up (page faults, the ringback/tone tables, branch predictors).
    run(pairs.min(50), 50, true);
    let (cpu_b, sent_b, relayed) = run(pairs, slots, true);
    let (cpu_i, sent_i, _) = run(pairs, slots, false);
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / (pairs as f64 * f64::from(seconds));
    let (pb, pi) = (per(cpu_b), per(cpu_i));
    println!(
        "bridged: {:.2} s CPU, {sent_b} packets sent, {relayed} frames relayed ({:.1}% of slots)",
        cpu_b.as_secs_f64(),
        100.0 * relayed as f64 / (2.0 * pairs as f64 * f64::from(slots))
    );
    println!(
        "two IVR legs: {:.2} s CPU, {sent_i} packets sent",
        cpu_i.as_secs_f64()
    );
    println!(
        "per bridged pair: {pb:.1} us CPU per second of audio ({:.3}% of a core); \
         two unbridged legs: {pi:.1} us; the relay adds {:.1} us",
        pb / 1e4,
        pb - pi
    );
    println!(
        "500 bridged pairs: {:.1}% of one core in the media cores (sockets and wake-ups not included)",
        pb * 500.0 / 1e4
    );

    // The queue alone: one push and one pop of a 20 ms frame.
    let (a, mut b) = bridge::pair();
    let frame = [0i16; 160];
    let n = 2_000_000u32;
    let now = Instant::now();
    let start = thread_cpu();
    let mut out = [0i16; 160];
    for _ in 0..n {
        a.push_frame(now, &frame);
        std::hint::black_box(b.pop_frame(now, &mut out));
    }
    println!(
        "queue: {:.0} ns per frame (push + pop, uncontended Mutex)",
        (thread_cpu() - start).as_nanos() as f64 / f64::from(n)
    );
}
