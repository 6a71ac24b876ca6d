//! One tokio task per call: the socket loop around the leg's
//! [`MediaCore`]. It feeds the core commands, ticks and datagrams and
//! executes its outputs (send a packet, pass on an event, sleep until the
//! next tick); everything the media does is decided in the core.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::core::{MediaCore, Output};
use super::prompt::PromptCache;
#[cfg(target_os = "linux")]
use super::rx_time;

pub use super::core::{MediaCommand, MediaEvent, MediaParams, MediaStats, SessionConfig};

/// Packets read per 20 ms tick at most. A normal call has 1–2; the cap is
/// far above that so the socket is drained each tick even under a garbage
/// flood (at 32 a flood of 20k packets/s left the caller's own packets in
/// an overflowing kernel buffer), and still bounds one call's turn: packets
/// from anyone but the peer are dropped by the core before any decoding.
const MAX_PACKETS_PER_TICK: usize = 4096;

/// Calls start their 20 ms ticks only on these boundaries (counted from one
/// process-wide origin), so at most 20 / TICK_PHASE wake-ups serve every call
/// instead of one per call: timers coalesce, the media thread wakes less
/// often and sends in batches. Each call still sends every 20 ms exactly.
const TICK_PHASE: Duration = Duration::from_millis(5);

/// The first tick boundary at or after `now`.
fn tick_phase(now: std::time::Instant) -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| now);
    let since = now.saturating_duration_since(origin).as_nanos();
    let phase = TICK_PHASE.as_nanos();
    let slots = since.div_ceil(phase);
    let offset = u64::try_from(slots * phase).unwrap_or(u64::MAX);
    origin + Duration::from_nanos(offset)
}

#[cfg(test)]
mod phase_tests {
    use super::*;

    #[test]
    fn ticks_start_on_shared_boundaries() {
        let t0 = std::time::Instant::now();
        let a = tick_phase(t0);
        assert!(a >= t0 && a - t0 < TICK_PHASE);
        for ms in [1u64, 3, 5, 7, 12, 19, 20, 37] {
            let t = t0 + Duration::from_millis(ms);
            let p = tick_phase(t);
            assert!(p >= t && p - t < TICK_PHASE, "{ms} ms");
            // Two calls' phases differ by a whole number of boundaries.
            assert_eq!((p - a).as_nanos() % TICK_PHASE.as_nanos(), 0, "{ms} ms");
        }
    }
}

/// The media task of one call leg: its RTP socket, its [`MediaCore`] and
/// the channels to the call. Build it with [`MediaSession::new`], then spawn
/// [`MediaSession::run`].
pub struct MediaSession {
    /// Bound; the session makes it non-blocking and reads it on its ticks.
    socket: std::net::UdpSocket,
    params: MediaParams,
    cfg: SessionConfig,
    prompts: Arc<PromptCache>,
    events: mpsc::UnboundedSender<MediaEvent>,
    commands: mpsc::UnboundedReceiver<MediaCommand>,
}

impl MediaSession {
    /// A session on `socket` (already bound, and set non-blocking by the
    /// caller); events go to `events`, commands come from `commands`.
    pub fn new(
        socket: std::net::UdpSocket,
        params: MediaParams,
        cfg: SessionConfig,
        prompts: Arc<PromptCache>,
        events: mpsc::UnboundedSender<MediaEvent>,
        commands: mpsc::UnboundedReceiver<MediaCommand>,
    ) -> Self {
        Self {
            socket,
            params,
            cfg,
            prompts,
            events,
            commands,
        }
    }

    /// Run the leg until [`MediaCommand::Shutdown`] or until the command
    /// channel closes; returns the leg's statistics. Must run inside a tokio
    /// runtime with a timer (the socket itself stays out of its epoll set). Ticks start on a
    /// process-wide 5 ms phase so the timers of all calls coalesce.
    pub async fn run(mut self) -> MediaStats {
        // The socket is read only on ticks, never awaited: it stays a plain
        // non-blocking socket, out of the runtime's epoll set, so the
        // caller's packets (50 a second per call) do not wake the media
        // thread between ticks. Registered, every arrival woke it to mark
        // readiness nobody waited for.
        let socket = self.socket;
        if let Err(e) = socket.set_nonblocking(true) {
            tracing::error!(error = %e, "cannot make the RTP socket non-blocking; no media on this call");
            let _ = self.events.send(MediaEvent::RtpTimeout);
            return MediaStats::default();
        }
        // Kernel receive times, for the jitter (best effort).
        #[cfg(target_os = "linux")]
        rx_time::enable(std::os::fd::AsRawFd::as_raw_fd(&socket));
        let start = tick_phase(std::time::Instant::now());
        let mut core = MediaCore::new(start, self.params, self.cfg, self.prompts);
        let mut buf = [0u8; 2048];
        // One timer for the whole call, re-armed only when the deadline moves:
        // a fresh `sleep_until` per loop turn (i.e. per received packet too)
        // registered and dropped a timer entry 100 times a second per call.
        let ticker = tokio::time::sleep_until(Instant::from_std(start));
        tokio::pin!(ticker);
        while let Some(deadline) = execute(&mut core, &socket, &self.events) {
            let deadline = Instant::from_std(deadline);
            if ticker.deadline() != deadline {
                ticker.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let cmd = cmd.unwrap_or(MediaCommand::Shutdown);
                    core.handle_command(std::time::Instant::now(), cmd);
                }
                _ = &mut ticker => {
                    let now = std::time::Instant::now();
                    // Sending is the time-critical part: first.
                    core.handle_tick(now);
                    if execute(&mut core, &socket, &self.events).is_none() {
                        break;
                    }
                    // Then everything that arrived since the last tick, in one go.
                    // Bounded, so a flood cannot starve the sending of other calls.
                    for _ in 0..MAX_PACKETS_PER_TICK {
                        match recv(&socket, &mut buf) {
                            Ok((len, from, stamp)) => {
                                core.handle_rtp_at(now, stamp, from, &buf[..len])
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            // ICMP errors from earlier sends surface here once each.
                            Err(_) => continue,
                        }
                    }
                    core.handle_playout(now);
                }
            }
        }
        core.stats().clone()
    }
}

/// One waiting datagram, with the kernel's receive time when it has one.
fn recv(
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, std::net::SocketAddr, Option<Duration>)> {
    #[cfg(target_os = "linux")]
    {
        rx_time::recv_from(std::os::fd::AsRawFd::as_raw_fd(socket), buf)
    }
    #[cfg(not(target_os = "linux"))]
    {
        socket.recv_from(buf).map(|(n, from)| (n, from, None))
    }
}

/// Carry out the core's outputs; its next deadline, or None once it stopped.
fn execute(
    core: &mut MediaCore,
    socket: &std::net::UdpSocket,
    events: &mpsc::UnboundedSender<MediaEvent>,
) -> Option<std::time::Instant> {
    loop {
        match core.poll_output()? {
            Output::Transmit(t) => {
                // UDP sends do not block in practice; a full buffer drops the frame.
                if socket.send_to(t.data, t.to).is_ok() {
                    core.transmitted();
                }
            }
            Output::Event(ev) => {
                let _ = events.send(ev);
            }
            Output::Timeout(at) => return Some(at),
        }
    }
}

#[cfg(test)]
mod listening_tests {
    use super::*;
    use crate::asr::Timers;
    use crate::media::g711::Codec;

    fn session() -> (
        mpsc::UnboundedSender<MediaCommand>,
        mpsc::UnboundedReceiver<MediaEvent>,
    ) {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let prompts = Arc::new(PromptCache::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        ));
        let params = MediaParams {
            codec: Codec::Pcmu,
            codec_pt: 0,
            dtmf_pts: vec![101],
            remote: None,
            signalled: None,
            send: false,
            expect_rtp: false,
        };
        let cfg = SessionConfig {
            rtp_timeout: Duration::from_secs(30),
            inband_dtmf: false,
            jitter_frames: 3,
            rtp_source: Default::default(),
        };
        let s = MediaSession::new(sock, params, cfg, prompts, ev_tx, cmd_rx);
        tokio::spawn(s.run());
        (cmd_tx, ev_rx)
    }

    fn listen(no_input: Duration, tag: u64) -> MediaCommand {
        MediaCommand::StartListening(
            Timers {
                no_input_timeout: no_input,
                end_of_speech_timeout: Duration::from_millis(800),
                max_duration: Duration::from_secs(10),
                incomplete: None,
            },
            tag,
        )
    }

    /// Listening from the start of a 5.6 s prompt with a 1 s no-input time
    /// (speech barge-in): the caller gets the whole prompt plus 1 s.
    #[tokio::test]
    async fn no_input_counts_from_the_end_of_the_prompt() {
        let (cmd, mut ev) = session();
        cmd.send(MediaCommand::Play(vec!["bank/enter_phone".into()]))
            .unwrap();
        cmd.send(listen(Duration::from_secs(1), 7)).unwrap();
        let first = ev.recv().await.unwrap();
        assert_eq!(first, MediaEvent::PlaybackDone);
        assert_eq!(ev.recv().await.unwrap(), MediaEvent::NoSpeech(7));
        cmd.send(MediaCommand::Shutdown).unwrap();
    }

    /// A prompt stopped by a key press starts the no-input time too.
    #[tokio::test]
    async fn stopping_the_prompt_starts_the_no_input_time() {
        let (cmd, mut ev) = session();
        cmd.send(MediaCommand::Play(vec!["bank/enter_phone".into()]))
            .unwrap();
        cmd.send(listen(Duration::from_millis(500), 3)).unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Still nothing: the prompt plays, no-input has not started.
        assert!(ev.try_recv().is_err());
        let stopped = tokio::time::Instant::now();
        cmd.send(MediaCommand::Stop).unwrap();
        assert_eq!(ev.recv().await.unwrap(), MediaEvent::NoSpeech(3));
        // Well before the prompt's own end (5.6 s).
        assert!(stopped.elapsed() < Duration::from_secs(3));
        cmd.send(MediaCommand::Shutdown).unwrap();
    }
}

/// Two real sessions bridged on loopback sockets (issue 17): a caller and an
/// agent exchange audio and a key press through them.
#[cfg(test)]
mod bridge_tests {
    use super::*;
    use crate::media::bridge;
    use crate::media::g711::{self, Codec};
    use crate::media::source::RtpSource;
    use std::f32::consts::TAU;

    fn leg(
        peer: std::net::SocketAddr,
        codec: Codec,
        dtmf_pts: Vec<u8>,
    ) -> (
        std::net::SocketAddr,
        mpsc::UnboundedSender<MediaCommand>,
        tokio::task::JoinHandle<MediaStats>,
    ) {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let addr = sock.local_addr().unwrap();
        let (ev_tx, _ev_rx) = mpsc::unbounded_channel();
        // The events receiver is dropped: sends to it fail quietly.
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let params = MediaParams {
            codec,
            codec_pt: codec.payload_type(),
            dtmf_pts,
            remote: Some(peer),
            signalled: Some(peer.ip()),
            send: true,
            expect_rtp: true,
        };
        let cfg = SessionConfig {
            rtp_timeout: Duration::from_secs(30),
            inband_dtmf: false,
            jitter_frames: 3,
            rtp_source: RtpSource::Any,
        };
        let prompts = Arc::new(PromptCache::new("/nonexistent"));
        let s = MediaSession::new(sock, params, cfg, prompts, ev_tx, cmd_rx);
        cmd_tx.send(MediaCommand::Confirmed).unwrap();
        (addr, cmd_tx, tokio::spawn(s.run()))
    }

    fn share(pcm: &[i16], freq: f32) -> f32 {
        let coeff = 2.0 * (TAU * freq / 8000.0).cos();
        let (mut s1, mut s2, mut e) = (0.0f32, 0.0f32, 0.0f32);
        for &v in pcm {
            let v = f32::from(v);
            e += v * v;
            let s = v + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        if e == 0.0 {
            return 0.0;
        }
        2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (pcm.len() as f32 * e)
    }

    fn packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// What one far end received: audio frames (decoded) and events (pt, payload).
    type Heard = (Vec<Vec<i16>>, Vec<(u8, Vec<u8>)>);

    /// A far end: sends `freq` in `codec` every 20 ms (and, if asked, key 5
    /// as RFC 4733 on PT 101 from frame 40), collects what comes back.
    async fn far_end(
        sock: tokio::net::UdpSocket,
        to: std::net::SocketAddr,
        codec: Codec,
        freq: f32,
        key: bool,
    ) -> Heard {
        let mut heard: Heard = (Vec::new(), Vec::new());
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut buf = [0u8; 2048];
        for n in 0..75u16 {
            tick.tick().await;
            let pcm: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (u32::from(n) * 160 + i) as f32 / 8000.0;
                    (8000.0 * (TAU * freq * t).sin()) as i16
                })
                .collect();
            let mut payload = Vec::new();
            g711::encode(codec, &pcm, &mut payload);
            let ts = u32::from(n) * 160;
            sock.send_to(&packet(codec.payload_type(), n, ts, &payload), to)
                .await
                .unwrap();
            if key && (40..48).contains(&n) {
                let end = n >= 45;
                let dur = (160 * (n.min(44) - 39)).to_be_bytes();
                let ev = [5, if end { 0x80 } else { 0 } | 10, dur[0], dur[1]];
                sock.send_to(&packet(101, 1000 + n, 40 * 160, &ev), to)
                    .await
                    .unwrap();
            }
            while let Ok((len, _)) = sock.try_recv_from(&mut buf) {
                let p = crate::media::rtp_rx::parse(&buf[..len]).unwrap();
                if p.payload_type == codec.payload_type() {
                    let mut pcm = Vec::new();
                    g711::decode(codec, p.payload, &mut pcm);
                    heard.0.push(pcm);
                } else {
                    heard.1.push((p.payload_type, p.payload.to_vec()));
                }
            }
        }
        heard
    }

    #[tokio::test]
    async fn two_sessions_relay_audio_both_ways_and_a_digit_on_loopback() {
        let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let agent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (a_addr, a_cmd, a_task) = leg(caller.local_addr().unwrap(), Codec::Pcmu, vec![101]);
        let (b_addr, b_cmd, b_task) = leg(agent.local_addr().unwrap(), Codec::Pcma, vec![96]);
        let (ea, eb) = bridge::pair();
        a_cmd.send(MediaCommand::Bridge(ea)).unwrap();
        b_cmd.send(MediaCommand::Bridge(eb)).unwrap();
        let caller = tokio::spawn(far_end(caller, a_addr, Codec::Pcmu, 1000.0, true));
        let agent = tokio::spawn(far_end(agent, b_addr, Codec::Pcma, 600.0, false));
        let (at_caller, at_agent) = (caller.await.unwrap(), agent.await.unwrap());
        a_cmd.send(MediaCommand::Shutdown).unwrap();
        b_cmd.send(MediaCommand::Shutdown).unwrap();
        let (a, b) = (a_task.await.unwrap(), b_task.await.unwrap());

        let toned =
            |frames: &[Vec<i16>], f: f32| frames.iter().filter(|p| share(p, f) > 0.9).count();
        // 1.5 s each way; allow for start-up and the digit's slots.
        assert!(
            toned(&at_agent.0, 1000.0) >= 40,
            "agent hears the caller: {b:?}"
        );
        assert!(
            toned(&at_caller.0, 600.0) >= 40,
            "caller hears the agent: {a:?}"
        );
        // Key 5 reaches the agent as telephone-events on its PT 96.
        let events: Vec<&(u8, Vec<u8>)> = at_agent.1.iter().collect();
        assert!(!events.is_empty(), "no events at the agent");
        assert!(events.iter().all(|(pt, e)| *pt == 96 && e[0] == 5));
        assert_eq!(events.iter().filter(|(_, e)| e[1] & 0x80 != 0).count(), 3);
        assert!(at_caller.1.is_empty(), "nothing keyed back to the caller");
        assert_eq!((a.relay_digits_out, b.relay_digits_in), (1, 1));
        assert!(
            a.relay_frames_out >= 60 && b.relay_frames_in >= 60,
            "{a:?} {b:?}"
        );
    }
}
