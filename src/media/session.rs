//! One tokio task per call gluing the RTP socket, the 20 ms ticker and the
//! pure media cores (pacing, jitter buffer, G.711, DTMF detectors).
//!
//! It plays prompts, turns every DTMF method into one de-duplicated digit
//! stream and watches for media silence (RTP timeout). Commands come in on a
//! channel; digits and playback completion go out as [`MediaEvent`]s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dtmf::inband::InbandDetector;
use super::dtmf::merge::DigitMerger;
use super::dtmf::rfc4733::Rfc4733Receiver;
use super::dtmf::{Digit, DigitEvent, DigitSource};
use super::g711::{self, Codec};
use super::prompt::PromptCache;
use super::rtp_rx::{self, Frame, JitterBuffer};
use super::rtp_tx::TxStream;
use super::stats;
use crate::asr::endpoint::{EndpointEvent, Endpointer, LineFloor};
use crate::asr::Timers;

/// Packets read per 20 ms tick at most (a normal call has 1–2, DTMF bursts a few more).
const MAX_PACKETS_PER_TICK: usize = 32;

/// Calls start their 20 ms ticks only on these boundaries (counted from one
/// process-wide origin), so at most 20 / TICK_PHASE wake-ups serve every call
/// instead of one per call: timers coalesce, the media thread wakes less
/// often and sends in batches. Each call still sends every 20 ms exactly.
const TICK_PHASE: Duration = Duration::from_millis(5);

/// A prompt ended (or was stopped) while listening and nobody has spoken
/// yet: the no-input time starts now.
fn restart_no_input(listening: &mut Option<(Timers, Endpointer, u64)>, now: std::time::Instant) {
    if let Some((cfg, ep, _)) = listening.as_mut() {
        if !ep.speech_started() {
            // Keep what it learnt of the line's noise during the prompt.
            *ep = Endpointer::on_line(*cfg, now, ep.noise_floor_db());
        }
    }
}

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

/// What was negotiated in SDP, as media needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaParams {
    pub codec: Codec,
    pub codec_pt: u8,
    /// Every telephone-event payload type the offer listed.
    pub dtmf_pts: Vec<u8>,
    /// Where to send before we have seen the peer's RTP (from SDP).
    pub remote: Option<SocketAddr>,
    /// False on hold / recvonly answers: we keep time but send nothing.
    pub send: bool,
    /// False while the peer sends nothing on purpose (hold): no RTP timeout.
    pub expect_rtp: bool,
}

#[derive(Debug)]
pub enum MediaCommand {
    /// Play these prompt names in order, replacing what plays.
    Play(Vec<String>),
    Stop,
    /// re-INVITE changed codec, telephone-event PT, address or direction.
    Update(MediaParams),
    /// A digit that arrived by SIP INFO: merged with the RTP ones.
    InfoDigit(Digit, Option<u32>),
    /// Listen for speech: voice activity and the recognition timers. The
    /// number tags this listening's events so stale ones can be told apart.
    StartListening(Timers, u64),
    StopListening,
    Shutdown,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    Digit {
        digit: char,
        source: DigitSource,
    },
    PlaybackDone,
    /// No RTP for the configured time.
    RtpTimeout,
    /// A prompt could not be played (missing or unreadable).
    PromptError {
        name: String,
        error: String,
    },
    /// Voice activity began (speech barge-in); tagged as its listening.
    SpeechStarted(u64),
    /// The caller finished speaking: this audio (8 kHz) is to be recognised.
    Utterance(u64, Vec<i16>),
    /// Nobody spoke within the no-input time.
    NoSpeech(u64),
    /// Signalling: the caller ACKed our answer.
    Confirmed,
    /// Signalling: the call is gone (BYE, CANCEL, no ACK).
    Hangup,
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

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub rtp_timeout: Duration,
    pub inband_dtmf: bool,
    pub jitter_frames: usize,
}

/// Statistics logged when the call ends.
#[derive(Clone, Debug, Default)]
pub struct MediaStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub frames_lost: u64,
    pub digits: u64,
}

/// One report of a key press from any method: delivered once per press.
fn offer_digit(
    merger: &mut DigitMerger,
    stats: &mut MediaStats,
    events: &mpsc::UnboundedSender<MediaEvent>,
    ev: DigitEvent,
) {
    if let Some(ev) = merger.offer(ev) {
        stats.digits += 1;
        let _ = events.send(MediaEvent::Digit {
            digit: ev.digit.as_char(),
            source: ev.source,
        });
    }
}

struct Playback {
    queue: std::collections::VecDeque<Arc<[u8]>>,
    current: Option<(Arc<[u8]>, usize)>,
    /// Next frame starts a talkspurt (marker bit).
    fresh: bool,
}

impl Playback {
    /// Next 20 ms frame, or None when the queue is exhausted.
    fn next_frame(&mut self) -> Option<&[u8]> {
        loop {
            match &self.current {
                Some((data, off)) if *off < data.len() => break,
                _ => {
                    let next = self.queue.pop_front()?;
                    self.current = Some((next, 0));
                }
            }
        }
        let (data, off) = self.current.as_mut()?;
        let start = *off;
        let end = (start + 160).min(data.len());
        *off = end;
        Some(&data[start..end])
    }
}

pub struct MediaSession {
    /// Non-blocking; becomes a tokio socket on the runtime that runs the session.
    socket: std::net::UdpSocket,
    params: MediaParams,
    cfg: SessionConfig,
    prompts: Arc<PromptCache>,
    events: mpsc::UnboundedSender<MediaEvent>,
    commands: mpsc::UnboundedReceiver<MediaCommand>,
}

impl MediaSession {
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

    pub async fn run(self) -> MediaStats {
        let socket = match UdpSocket::from_std(self.socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot register the RTP socket; no media on this call");
                let _ = self.events.send(MediaEvent::RtpTimeout);
                return MediaStats::default();
            }
        };
        Running {
            socket,
            params: self.params,
            cfg: self.cfg,
            prompts: self.prompts,
            events: self.events,
            commands: self.commands,
        }
        .run()
        .await
    }
}

/// A session whose socket is registered with the current runtime.
struct Running {
    socket: UdpSocket,
    params: MediaParams,
    cfg: SessionConfig,
    prompts: Arc<PromptCache>,
    events: mpsc::UnboundedSender<MediaEvent>,
    commands: mpsc::UnboundedReceiver<MediaCommand>,
}

impl Running {
    async fn run(mut self) -> MediaStats {
        let mut stats = MediaStats::default();
        let start = Instant::from_std(tick_phase(Instant::now().into_std()));
        let ssrc: u32 = rand::random();
        let mut tx = TxStream::new(
            ssrc,
            self.params.codec_pt,
            start.into_std(),
            rand::random(),
            rand::random(),
        );
        let mut jitter = JitterBuffer::new(self.cfg.jitter_frames.max(1));
        let mut rfc4733 = Rfc4733Receiver::new(8000);
        let mut inband = InbandDetector::new();
        let mut merger = DigitMerger::new(Duration::from_millis(250));
        let mut playback: Option<Playback> = None;
        let mut remote = self.params.remote;
        let mut last_rx = Instant::now();
        let mut rtp_timed_out = false;
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(256);
        let mut pcm: Vec<i16> = Vec::with_capacity(160);
        let silence = [self.params.codec.silence_byte(); 160];
        let mut silence_frame = silence.to_vec();
        let mut last_send: Option<std::time::Instant> = None;
        let mut listening: Option<(Timers, Endpointer, u64)> = None;
        // The line's noise level, learnt while nobody listens (from the
        // frames decoded for in-band DTMF anyway).
        let mut line_floor = LineFloor::default();

        // One timer for the whole call, re-armed only when the deadline moves:
        // a fresh `sleep_until` per loop turn (i.e. per received packet too)
        // registered and dropped a timer entry 100 times a second per call.
        let ticker = tokio::time::sleep_until(Instant::from_std(tx.next_deadline()));
        tokio::pin!(ticker);
        loop {
            let deadline = Instant::from_std(tx.next_deadline());
            if ticker.deadline() != deadline {
                ticker.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    match cmd {
                        MediaCommand::Shutdown => break,
                        MediaCommand::Stop => {
                            playback = None;
                            restart_no_input(&mut listening, Instant::now().into_std());
                        }
                        MediaCommand::StartListening(cfg, tag) => {
                            // The caller's no-input time starts when the prompt
                            // ends; until then only voice activity counts.
                            let first = if playback.is_some() {
                                cfg.while_prompting()
                            } else {
                                cfg
                            };
                            let ep = Endpointer::on_line(first, Instant::now().into_std(), line_floor.floor_db());
                            listening = Some((cfg, ep, tag));
                        }
                        MediaCommand::StopListening => listening = None,
                        MediaCommand::Play(names) => {
                            let mut queue = std::collections::VecDeque::new();
                            for name in names {
                                match self.prompts.encoded(&name, self.params.codec) {
                                    Ok(data) => queue.push_back(data),
                                    Err(e) => {
                                        let _ = self.events.send(MediaEvent::PromptError { name: name.clone(), error: e.to_string() });
                                    }
                                }
                            }
                            playback = Some(Playback { queue, current: None, fresh: true });
                        }
                        MediaCommand::Update(p) => {
                            if p.codec != self.params.codec {
                                silence_frame = vec![p.codec.silence_byte(); 160];
                                // The prompt was encoded for the old codec; the
                                // flow must not wait for it forever.
                                if playback.take().is_some() {
                                    let _ = self.events.send(MediaEvent::PlaybackDone);
                                    restart_no_input(&mut listening, Instant::now().into_std());
                                }
                            }
                            tx.set_payload_type(p.codec_pt);
                            if p.remote.is_some() && p.remote != self.params.remote {
                                remote = p.remote;
                            }
                            self.params = p;
                            last_rx = Instant::now();
                        }
                        MediaCommand::InfoDigit(d, dur) => {
                            let ev = DigitEvent { digit: d, source: DigitSource::SipInfo, at: Instant::now().into_std(), duration_ms: dur };
                            offer_digit(&mut merger, &mut stats, &self.events, ev);
                        }
                    }
                }
                _ = &mut ticker => {
                    let now = Instant::now();
                    // Sending is the time-critical part: first.
                    // Send side: a prompt frame, or silence to keep timing and NAT bindings.
                    let mut marker = false;
                    let mut done = false;
                    let payload: &[u8] = match playback.as_mut() {
                        Some(p) => {
                            marker = p.fresh;
                            p.fresh = false;
                            match p.next_frame() {
                                Some(f) if f.len() == 160 => f,
                                Some(f) => {
                                    // A prompt's short last frame: pad with silence; the
                                    // playback ends only if no other prompt is queued.
                                    let n = f.len();
                                    silence_frame[..n].copy_from_slice(f);
                                    silence_frame[n..].copy_from_slice(&silence[n..]);
                                    done = p.queue.is_empty();
                                    &silence_frame
                                }
                                None => {
                                    done = true;
                                    &silence
                                }
                            }
                        }
                        None => &silence,
                    };
                    out.clear();
                    tx.build_packet(now.into_std(), payload, marker, &mut out);
                    if done {
                        silence_frame.copy_from_slice(&silence);
                        playback = None;
                        let _ = self.events.send(MediaEvent::PlaybackDone);
                        restart_no_input(&mut listening, now.into_std());
                    }
                    if self.params.send {
                        if let Some(to) = remote {
                            // UDP sends do not block in practice; a full buffer drops the frame.
                            if self.socket.try_send_to(&out, to).is_ok() {
                                stats.packets_sent += 1;
                                stats::record_send(&mut last_send, now.into_std());
                            }
                        }
                    }
                    // Then everything that arrived since the last tick, in one go:
                    // one wake-up per 20 ms instead of one per packet.
                    // Bounded, so a flood cannot starve the sending of other calls.
                    for _ in 0..MAX_PACKETS_PER_TICK {
                        let (len, src) = match self.socket.try_recv_from(&mut buf) {
                            Ok(r) => r,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            // ICMP errors from earlier sends surface here once each.
                            Err(_) => continue,
                        };
                        let Ok(pkt) = rtp_rx::parse(&buf[..len]) else { continue };
                        stats.packets_received += 1;
                        stats::record_received();
                        last_rx = now;
                        rtp_timed_out = false;
                        if self.params.dtmf_pts.contains(&pkt.payload_type) {
                            if let Some(ev) = rfc4733.on_packet(now.into_std(), pkt.ssrc, pkt.sequence, pkt.timestamp, pkt.marker, pkt.payload) {
                                offer_digit(&mut merger, &mut stats, &self.events, ev);
                            }
                        } else if pkt.payload_type == self.params.codec_pt {
                            // Symmetric RTP: answer where the caller's audio really comes from.
                            remote = Some(src);
                            jitter.push_rtp(now.into_std(), &pkt);
                        }
                    }
                    // Receive side: one playout frame per tick.
                    let mut heard: Vec<EndpointEvent> = Vec::new();
                    if let Some(frame) = jitter.pop(now.into_std()) {
                        if self.cfg.inband_dtmf || listening.is_some() {
                            pcm.clear();
                            match &frame {
                                Frame::Audio { payload, .. } => g711::decode(self.params.codec, payload, &mut pcm),
                                Frame::Lost { .. } => {
                                    stats.frames_lost += 1;
                                    stats::record_lost();
                                    pcm.resize(160, 0);
                                }
                            }
                            if self.cfg.inband_dtmf {
                                for ev in inband.push(now.into_std(), &pcm) {
                                    offer_digit(&mut merger, &mut stats, &self.events, ev);
                                }
                            }
                            match listening.as_mut() {
                                Some((_, ep, _)) => heard.extend(ep.push(now.into_std(), &pcm)),
                                None => line_floor.observe(&pcm),
                            }
                        } else if matches!(frame, Frame::Lost { .. }) {
                            stats.frames_lost += 1;
                            stats::record_lost();
                        }
                    }
                    // Timers run without audio too (hold, lost stream), and
                    // one frame may have produced more than one event.
                    let tag = listening.as_ref().map_or(0, |l| l.2);
                    if let Some((_, ep, _)) = listening.as_mut() {
                        while let Some(ev) = ep.poll(now.into_std()) {
                            heard.push(ev);
                        }
                    }
                    for ev in heard {
                        let out = match ev {
                            EndpointEvent::SpeechStarted => MediaEvent::SpeechStarted(tag),
                            EndpointEvent::Utterance(u) => MediaEvent::Utterance(tag, u.pcm),
                            EndpointEvent::NoInput => MediaEvent::NoSpeech(tag),
                        };
                        if !matches!(out, MediaEvent::SpeechStarted(_)) {
                            listening = None;
                        }
                        let _ = self.events.send(out);
                        if listening.is_none() {
                            break;
                        }
                    }
                    rfc4733.poll(now.into_std());
                    if self.params.expect_rtp && !rtp_timed_out && now.duration_since(last_rx) >= self.cfg.rtp_timeout {
                        rtp_timed_out = true;
                        let _ = self.events.send(MediaEvent::RtpTimeout);
                    }
                }
            }
        }
        stats
    }
}

#[cfg(test)]
mod listening_tests {
    use super::*;
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
            send: false,
            expect_rtp: false,
        };
        let cfg = SessionConfig {
            rtp_timeout: Duration::from_secs(30),
            inband_dtmf: false,
            jitter_frames: 3,
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
