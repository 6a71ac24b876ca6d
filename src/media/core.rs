//! The media of one call leg as a sans-IO state machine (str0m style).
//!
//! [`MediaCore`] owns pacing, the jitter buffer, G.711, the three DTMF
//! methods and their merger, prompt playback, the speech endpointer and the
//! RTP timeout. It never reads a clock or touches a socket: the caller feeds
//! it time and input through `handle_*` and executes what
//! [`MediaCore::poll_output`] returns (a packet to send, an event for the
//! call, or the time of the next tick), so every behaviour is testable on
//! simulated time. [`super::session`] is the thin socket loop around it.
//!
//! One tick (every 20 ms, at [`Output::Timeout`]) has two halves so the
//! time-critical send goes out before any receive work:
//! 1. [`MediaCore::handle_tick`]: the prompt frame (or silence) for this slot
//!    becomes an [`Output::Transmit`];
//! 2. the packets that arrived since the last tick go in with
//!    [`MediaCore::handle_rtp`], one wake-up per 20 ms instead of one per
//!    packet;
//! 3. [`MediaCore::handle_playout`]: one frame is played out of the jitter
//!    buffer into the in-band detector and the endpointer, timers fire.
//!
//! # A bridge (transfer) fits without another loop
//!
//! The core is one leg. A B2BUA bridge is two cores, each with its own
//! socket, task and pacing, given the two ends of one
//! [`super::bridge::pair`] with [`MediaCommand::Bridge`]. In the playout
//! half a bridged leg queues the frame it played out (decoded) and each
//! digit it received for the other leg; in its send half the other leg takes
//! one queued frame and sends it in its own codec in place of silence, and
//! re-sends queued digits as RFC 4733 events on its own payload type (or
//! in-band tones). So relaying keeps the 20 ms pacing, the single timer and
//! the statistics of each leg as they are, and the session loop is
//! unchanged. What one slot sends, first match wins: a relayed digit, the
//! prompt of a `Play`, the other leg's audio, ringback, silence.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bridge::{self, BridgeEnd, PcmFrame, RelayDigit};
use super::dtmf::inband::InbandDetector;
use super::dtmf::merge::DigitMerger;
use super::dtmf::rfc4733::Rfc4733Receiver;
use super::dtmf::{Digit, DigitEvent, DigitSource};
use super::g711::{self, Codec};
use super::interarrival::{Arrival, Interarrival};
use super::prompt::PromptCache;
use super::rtp_rx::{self, Frame, JitterBuffer};
use super::rtp_tx::TxStream;
use super::source::{RtpSource, SourceGuard, Verdict};
use super::stats;
use crate::asr::endpoint::{EndpointEvent, Endpointer, LineFloor};
use crate::asr::Timers;

/// Bytes of one 20 ms G.711 frame.
const FRAME_BYTES: usize = 160;

/// Before the peer has sent any RTP (no media consent yet), at most one
/// packet per this interval goes to the SDP address: enough to open a NAT
/// binding or wake a caller that waits for media, too little to use voxgate
/// as a reflector (RFC 7675's reasoning, without ICE).
pub const CONSENT_TRICKLE: Duration = Duration::from_secs(1);

/// What was negotiated in SDP, as media needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaParams {
    /// The audio codec both directions use (prompts are encoded in it).
    pub codec: Codec,
    /// RTP payload type of `codec` as negotiated (we send with it, and only
    /// packets of this type are audio).
    pub codec_pt: u8,
    /// Every telephone-event payload type the offer listed.
    pub dtmf_pts: Vec<u8>,
    /// Where to send before we have seen the peer's RTP (from SDP).
    pub remote: Option<SocketAddr>,
    /// The address the call was signalled from: RTP is accepted from it
    /// and from `remote`'s address (see [`RtpSource`]).
    pub signalled: Option<IpAddr>,
    /// False on hold / recvonly answers: we keep time but send nothing.
    pub send: bool,
    /// False while the peer sends nothing on purpose (hold): no RTP timeout.
    pub expect_rtp: bool,
}

/// Media settings of the service (from the configuration).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// No RTP for this long (while RTP is expected) → [`MediaEvent::RtpTimeout`],
    /// once per silence.
    pub rtp_timeout: Duration,
    /// Also detect DTMF tones in the caller's audio (costs decoding every
    /// frame even when nobody listens).
    pub inband_dtmf: bool,
    /// Jitter buffer capacity in 20 ms frames (clamped to 1..=500);
    /// playout starts once half of it is filled.
    pub jitter_frames: usize,
    /// Whose RTP is accepted and whether media waits for consent.
    pub rtp_source: RtpSource,
}

/// What the call asks of its media.
#[derive(Debug)]
pub enum MediaCommand {
    /// Play these prompt names in order, replacing what plays.
    Play(Vec<String>),
    /// Cut the prompts short. No [`MediaEvent::PlaybackDone`] follows; a
    /// listening that waited for the prompt starts its no-input time now.
    Stop,
    /// re-INVITE changed codec, telephone-event PT, address or direction.
    Update(MediaParams),
    /// A digit that arrived by SIP INFO, with its duration in ms if the body
    /// gave one: merged with the RTP ones.
    InfoDigit(Digit, Option<u32>),
    /// Listen for speech: voice activity and the recognition timers. The
    /// number tags this listening's events so stale ones can be told apart.
    StartListening(Timers, u64),
    /// For the listening with this tag: report each pause of this much
    /// silence after speech ([`MediaEvent::Pause`]) for a speculative decode.
    Speculate(u64, Duration),
    /// For the listening with this tag: the pause whose cut was this many
    /// samples long is being decoded speculatively; the turn waits for its
    /// answer ([`Endpointer::pause_decoding`]).
    PauseDecoding(u64, usize),
    /// For the listening with this tag: that decode answered; `true`: it
    /// heard less than the whole answer, so the turn waits for the rest
    /// ([`Endpointer::pause_heard`]).
    PauseHeard(u64, usize, bool),
    /// Stop listening; the turn's pending events are not reported.
    StopListening,
    /// The caller ACKed our answer: RTP may be sent from now on (none is
    /// before), and the RTP timeout (which bounds the consent trickle)
    /// counts from here.
    Confirmed,
    /// End the leg: the socket loop stops after this round.
    Shutdown,
    /// Join this leg to another (see [`super::bridge`]): from the next tick
    /// the other leg's audio goes out here in place of silence and
    /// ringback, and its digits are re-sent here; this leg's audio and
    /// digits go to it. Ends ringback; a prompt still playing finishes
    /// first (send `Stop` to cut it), and a `Play` while bridged goes out in
    /// place of the relayed audio until it ends. Replaces an earlier bridge.
    Bridge(BridgeEnd),
    /// Leave the bridge: back to silence and prompts. A digit being re-sent
    /// is finished (its end packets still go out).
    Unbridge,
    /// Play ringback (440+480 Hz, 2 s on, 4 s off) in place of silence
    /// until `Stop`, a `Play` or a `Bridge`. Replaces a prompt that plays,
    /// without [`MediaEvent::PlaybackDone`] (as a new `Play` does).
    Ringback,
}

/// What the media tells the call (and, for the last two, what signalling
/// tells it on the same channel).
#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    /// One key press, reported once however many methods carried it.
    Digit {
        /// `0-9 * # A-D` (upper-case), from [`Digit::as_char`].
        digit: char,
        /// The method of the copy that was delivered (the first one).
        source: DigitSource,
    },
    /// The prompts of the last `Play` finished playing (or were dropped
    /// because a re-INVITE changed the codec); not sent after `Stop`.
    PlaybackDone,
    /// No RTP for the configured time.
    RtpTimeout,
    /// A prompt could not be played (missing or unreadable).
    PromptError {
        /// The prompt name given to `Play`.
        name: String,
        /// Why it could not be loaded or encoded.
        error: String,
    },
    /// Voice activity began (speech barge-in); tagged as its listening.
    SpeechStarted(u64),
    /// The caller finished speaking: this audio (8 kHz) is to be recognised.
    Utterance(u64, Vec<i16>),
    /// Nobody spoke within the no-input time.
    NoSpeech(u64),
    /// Speculating: the caller paused; this audio is the utterance if they
    /// stay silent. The listening goes on.
    Pause(u64, Vec<i16>),
    /// Speculating: the caller spoke again after a pause.
    Resumed(u64),
    /// Signalling: the caller ACKed our answer.
    Confirmed,
    /// Signalling: the call is gone (BYE, CANCEL, no ACK).
    Hangup,
}

/// Statistics logged when the call ends.
#[derive(Clone, Debug, Default)]
pub struct MediaStats {
    /// RTP packets handed to the socket ([`MediaCore::transmitted`]).
    pub packets_sent: u64,
    /// Parseable RTP packets received, of any payload type.
    pub packets_received: u64,
    /// Frames played out as lost (a sequence number that never arrived in
    /// time).
    pub frames_lost: u64,
    /// Key presses delivered to the call (after de-duplication).
    pub digits: u64,
    /// Datagrams dropped unread because they came from an address that is
    /// not the call's (see [`RtpSource`]).
    pub packets_dropped: u64,
    /// RTP packets of a payload type the call did not negotiate (neither
    /// its codec nor its telephone-event), dropped undecoded.
    pub packets_unnegotiated: u64,
    /// RFC 3550 interarrival jitter of the audio received, in ms (None
    /// before two audio packets came).
    pub jitter_ms: Option<f64>,
    /// Bridged: frames this leg played out and queued for the other leg.
    pub relay_frames_out: u64,
    /// Bridged: frames of the other leg taken from the queue at this leg's
    /// ticks (sent, unless a prompt or a relayed digit had the slot).
    pub relay_frames_in: u64,
    /// Bridged: frames for this leg dropped from its queue (full, or a
    /// lasting backlog trimmed), so latency cannot grow.
    pub relay_dropped: u64,
    /// Bridged: ticks that found no frame of the other leg queued (it
    /// played nothing out, or its frame came after this tick): silence.
    pub relay_empty: u64,
    /// Bridged: digits this leg received and queued for the other leg.
    pub relay_digits_out: u64,
    /// Digits of the other leg this leg re-sent (RFC 4733 or in-band).
    pub relay_digits_in: u64,
}

/// One RTP packet to send now.
#[derive(Debug, PartialEq)]
pub struct Transmit<'a> {
    /// The peer: from SDP until its own RTP shows where it really is.
    pub to: SocketAddr,
    /// The whole RTP packet (header and payload).
    pub data: &'a [u8],
}

/// What the core asks its caller to do, in order.
#[derive(Debug, PartialEq)]
pub enum Output<'a> {
    /// Send this packet, then report success with [`MediaCore::transmitted`].
    Transmit(Transmit<'a>),
    /// Tell the call.
    Event(MediaEvent),
    /// Nothing more until this time: then call [`MediaCore::handle_tick`].
    /// Always the last output of a round.
    Timeout(Instant),
}

/// Prompts queued by one `Play`.
struct Playback {
    queue: VecDeque<Arc<[u8]>>,
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
        let end = (start + FRAME_BYTES).min(data.len());
        *off = end;
        Some(&data[start..end])
    }
}

/// RFC 4733 event volume (−10 dBm0) of re-sent digits.
const EVENT_VOLUME: u8 = 10;
/// A re-sent digit whose duration is unknown lasts this long…
const DIGIT_DEFAULT_MS: u32 = 100;
/// …and one whose duration is known is held within these bounds.
const DIGIT_MIN_MS: u32 = 60;
const DIGIT_MAX_MS: u32 = 500;
/// End packets of an event (RFC 4733 2.5.1.4: the final packet three times).
const EVENT_END_PACKETS: u32 = 3;
/// Silence after an in-band digit, so the next one is a new press.
const INBAND_GAP_FRAMES: u32 = 3;

/// How a relayed digit goes out on this leg.
#[derive(Clone, Copy, Debug)]
enum DigitMethod {
    /// Telephone-events on this payload type; the event's timestamp once
    /// its first packet went out.
    Rfc4733 { pt: u8, ts: Option<u32> },
    /// Tone pair in the audio (the leg negotiated no telephone-event).
    Inband,
}

/// A digit of the other leg being re-sent, one packet per tick.
struct DigitOut {
    digit: bridge::RelayDigit,
    method: DigitMethod,
    /// Frames of tone / event updates (before the end packets or the gap).
    frames: u32,
    /// Ticks spent on it so far.
    sent: u32,
}

/// What the last tick sent: a marker starts each new talkspurt.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Silence,
    Prompt,
    Relay,
    Ringback,
    Digit,
}

/// A listening turn: its timers, its endpointer and the tag of its events.
struct Listening {
    timers: Timers,
    endpointer: Endpointer,
    tag: u64,
    /// Pauses reported after this silence ([`MediaCommand::Speculate`]).
    speculate: Option<Duration>,
}

/// The media of one call leg; see the module docs.
pub struct MediaCore {
    params: MediaParams,
    cfg: SessionConfig,
    prompts: Arc<PromptCache>,
    tx: TxStream,
    jitter: JitterBuffer,
    rfc4733: Rfc4733Receiver,
    inband: InbandDetector,
    merger: DigitMerger,
    playback: Option<Playback>,
    /// Where we send: from SDP, then where the caller's audio comes from.
    remote: Option<SocketAddr>,
    /// Which sources are the call's, and whether the peer has consented.
    guard: SourceGuard,
    /// The ACK came: sending is allowed.
    confirmed: Option<Instant>,
    /// The last packet sent before consent (the trickle).
    last_trickle: Option<Instant>,
    last_rx: Instant,
    rtp_timed_out: bool,
    listening: Option<Listening>,
    /// The line's noise level, learnt while nobody listens (from the
    /// frames decoded for in-band DTMF anyway).
    line_floor: LineFloor,
    stats: MediaStats,
    last_send: Option<Instant>,
    /// The packet of the last tick, built at `packet_at`.
    packet: Vec<u8>,
    packet_at: Instant,
    /// Where that packet still has to go (None: handed out, or not sent).
    transmit: Option<SocketAddr>,
    events: VecDeque<MediaEvent>,
    /// Scratch: decoded audio of one frame.
    pcm: Vec<i16>,
    /// Scratch: a prompt's short last frame padded with silence.
    padded: [u8; FRAME_BYTES],
    stopped: bool,
    /// The other leg, while bridged.
    bridge: Option<BridgeEnd>,
    /// Scratch: the frame taken from the other leg, or generated (tones).
    relay_pcm: PcmFrame,
    /// The last good frame relayed out (repeated once for a lost frame).
    relay_last: PcmFrame,
    /// Lost frames in a row played out while bridged.
    lost_run: u32,
    /// Ringback plays; its position in the cadence (samples).
    ringback: Option<u32>,
    /// A digit of the other leg being re-sent.
    digit_out: Option<DigitOut>,
    /// What the last tick sent.
    last_slot: Slot,
    /// A telephone-event on a payload type the call did not negotiate was
    /// warned about (once per call: a flood must not flood the log).
    warned_unnegotiated: bool,
    /// The inbound audio's interarrival jitter.
    interarrival: Interarrival,
    /// The leg's start: origin of read times when a datagram has no stamp.
    started: Instant,
}

impl MediaCore {
    /// A leg whose first packet is due at `start` (and whose RTP timeout
    /// counts from it).
    pub fn new(
        start: Instant,
        params: MediaParams,
        cfg: SessionConfig,
        prompts: Arc<PromptCache>,
    ) -> Self {
        let tx = TxStream::new(
            rand::random(),
            params.codec_pt,
            start,
            rand::random(),
            rand::random(),
        );
        Self {
            jitter: JitterBuffer::new(cfg.jitter_frames.max(1)),
            remote: params.remote,
            guard: SourceGuard::new(
                cfg.rtp_source,
                params.signalled,
                params.remote.map(|r| r.ip()),
            ),
            confirmed: None,
            last_trickle: None,
            params,
            cfg,
            prompts,
            tx,
            rfc4733: Rfc4733Receiver::new(8000),
            inband: InbandDetector::new(),
            merger: DigitMerger::new(Duration::from_millis(250)),
            playback: None,
            last_rx: start,
            rtp_timed_out: false,
            listening: None,
            line_floor: LineFloor::default(),
            stats: MediaStats::default(),
            last_send: None,
            packet: Vec::with_capacity(256),
            packet_at: start,
            transmit: None,
            events: VecDeque::with_capacity(8),
            pcm: Vec::with_capacity(FRAME_BYTES),
            padded: [0; FRAME_BYTES],
            stopped: false,
            bridge: None,
            relay_pcm: [0; FRAME_BYTES],
            relay_last: [0; FRAME_BYTES],
            lost_run: 0,
            ringback: None,
            digit_out: None,
            last_slot: Slot::Silence,
            warned_unnegotiated: false,
            // G.711's RTP clock (both codecs).
            interarrival: Interarrival::new(8000),
            started: start,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &MediaStats {
        &self.stats
    }

    /// Whether the peer has sent RTP we accepted (media consent), or the
    /// mode needs none.
    pub fn consented(&self) -> bool {
        !self.cfg.rtp_source.needs_consent() || self.guard.heard()
    }

    /// The next output; None once the core has shut down (the loop ends).
    /// Packets first, then events, then [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        // Handed out once: a failed send is not retried.
        if let Some(to) = self.transmit.take() {
            return Some(Output::Transmit(Transmit {
                to,
                data: &self.packet,
            }));
        }
        if let Some(ev) = self.events.pop_front() {
            return Some(Output::Event(ev));
        }
        if self.stopped {
            return None;
        }
        Some(Output::Timeout(self.tx.next_deadline()))
    }

    /// The last [`Output::Transmit`] went out (counted in the statistics and
    /// the send-interval histogram at its tick's time).
    pub fn transmitted(&mut self) {
        self.stats.packets_sent += 1;
        if let (Some(prev), Some(end)) = (self.last_send, self.bridge.as_ref()) {
            end.record_send(self.packet_at.saturating_duration_since(prev));
        }
        stats::record_send(&mut self.last_send, self.packet_at);
    }

    /// A command of the call.
    pub fn handle_command(&mut self, now: Instant, cmd: MediaCommand) {
        match cmd {
            MediaCommand::Shutdown => self.stopped = true,
            MediaCommand::Confirmed => {
                if self.confirmed.is_none() {
                    self.confirmed = Some(now);
                    self.last_rx = now;
                    self.rtp_timed_out = false;
                }
            }
            MediaCommand::Stop => {
                self.playback = None;
                self.ringback = None;
                self.restart_no_input(now);
            }
            MediaCommand::Bridge(end) => {
                self.bridge = Some(end);
                self.ringback = None;
                self.lost_run = 0;
            }
            MediaCommand::Unbridge => self.bridge = None,
            MediaCommand::Ringback => {
                self.playback = None;
                if self.ringback.is_none() {
                    self.ringback = Some(0);
                }
            }
            MediaCommand::StartListening(timers, tag) => {
                // The caller's no-input time starts when the prompt ends;
                // until then only voice activity counts.
                let first = if self.playback.is_some() {
                    timers.while_prompting()
                } else {
                    timers
                };
                let endpointer = Endpointer::on_line(first, now, self.line_floor.floor_db());
                self.listening = Some(Listening {
                    timers,
                    endpointer,
                    tag,
                    speculate: None,
                });
            }
            MediaCommand::Speculate(tag, after) => {
                if let Some(l) = self.listening.as_mut().filter(|l| l.tag == tag) {
                    l.endpointer.speculate_after(after);
                    l.speculate = Some(after);
                }
            }
            MediaCommand::PauseDecoding(tag, cut_len) => {
                if let Some(l) = self.listening.as_mut().filter(|l| l.tag == tag) {
                    l.endpointer.pause_decoding(cut_len);
                }
            }
            MediaCommand::PauseHeard(tag, cut_len, short) => {
                if let Some(l) = self.listening.as_mut().filter(|l| l.tag == tag) {
                    l.endpointer.pause_heard(cut_len, short);
                }
            }
            MediaCommand::StopListening => self.listening = None,
            MediaCommand::Play(names) => {
                self.ringback = None;
                let mut queue = VecDeque::with_capacity(names.len());
                for name in names {
                    match self.prompts.encoded(&name, self.params.codec) {
                        Ok(data) => queue.push_back(data),
                        Err(e) => self.events.push_back(MediaEvent::PromptError {
                            error: e.to_string(),
                            name,
                        }),
                    }
                }
                self.playback = Some(Playback {
                    queue,
                    current: None,
                    fresh: true,
                });
            }
            MediaCommand::Update(p) => {
                // The prompt was encoded for the old codec; the flow must not
                // wait for it forever.
                if p.codec != self.params.codec && self.playback.take().is_some() {
                    self.playback_done(now);
                }
                self.tx.set_payload_type(p.codec_pt);
                if p.remote.is_some() && p.remote != self.params.remote {
                    self.remote = p.remote;
                    self.guard.rearm(p.remote.map(|r| r.ip()));
                }
                self.params = p;
                self.last_rx = now;
            }
            MediaCommand::InfoDigit(digit, duration_ms) => self.offer_digit(DigitEvent {
                digit,
                source: DigitSource::SipInfo,
                at: now,
                duration_ms,
            }),
        }
    }

    /// First half of a tick, due at [`Output::Timeout`]: the frame of this
    /// 20 ms slot becomes the packet to send: a relayed digit, the prompt,
    /// the other leg's audio, ringback or silence (which keeps timing and
    /// NAT bindings), first match wins.
    pub fn handle_tick(&mut self, now: Instant) {
        // Bridged: one frame of the other leg leaves its queue every tick,
        // whatever this slot sends, so the queue never holds more than the
        // timing difference of the two legs.
        let relayed = self.take_relayed(now);
        self.packet.clear();
        self.packet_at = now;
        if self.digit_out.is_none() {
            self.next_digit();
        }
        if self.digit_tick(now) {
            self.transmit = self.destination(now);
            return;
        }
        let silence = self.params.codec.silence_byte();
        let mut marker = false;
        let mut done = false;
        let mut slot = Slot::Silence;
        let payload: &[u8] = match self.playback.as_mut() {
            Some(p) => {
                slot = Slot::Prompt;
                marker = p.fresh;
                p.fresh = false;
                match p.next_frame() {
                    Some(f) if f.len() == FRAME_BYTES => f,
                    Some(f) => {
                        // A prompt's short last frame: pad with silence; the
                        // playback ends only if no other prompt is queued.
                        let n = f.len();
                        self.padded[..n].copy_from_slice(f);
                        self.padded[n..].fill(silence);
                        done = p.queue.is_empty();
                        &self.padded
                    }
                    None => {
                        done = true;
                        self.padded.fill(silence);
                        &self.padded
                    }
                }
            }
            None if relayed => {
                slot = Slot::Relay;
                encode_frame(self.params.codec, &self.relay_pcm, &mut self.padded);
                &self.padded
            }
            None => match self.ringback {
                Some(pos) => {
                    slot = Slot::Ringback;
                    self.ringback = Some(bridge::ringback_frame(pos, &mut self.relay_pcm));
                    encode_frame(self.params.codec, &self.relay_pcm, &mut self.padded);
                    &self.padded
                }
                None => {
                    self.padded.fill(silence);
                    &self.padded
                }
            },
        };
        if slot != Slot::Prompt && slot != Slot::Silence {
            marker = slot != self.last_slot;
        }
        self.last_slot = slot;
        self.tx.build_packet(now, payload, marker, &mut self.packet);
        if done {
            self.playback = None;
            self.playback_done(now);
        }
        self.transmit = self.destination(now);
    }

    /// Bridged: the other leg's oldest queued frame into `relay_pcm`;
    /// whether there was one.
    fn take_relayed(&mut self, now: Instant) -> bool {
        let Some(end) = self.bridge.as_mut() else {
            return false;
        };
        let popped = end.pop_frame(now, &mut self.relay_pcm);
        self.stats.relay_dropped += popped.dropped;
        if popped.frame {
            self.stats.relay_frames_in += 1;
        } else {
            self.stats.relay_empty += 1;
        }
        popped.frame
    }

    /// Starts re-sending the next digit the other leg queued, if any.
    fn next_digit(&mut self) {
        let Some(digit) = self.bridge.as_ref().and_then(BridgeEnd::pop_digit) else {
            return;
        };
        let ms = digit
            .duration_ms
            .unwrap_or(DIGIT_DEFAULT_MS)
            .clamp(DIGIT_MIN_MS, DIGIT_MAX_MS);
        let method = match self.params.dtmf_pts.first() {
            Some(&pt) => DigitMethod::Rfc4733 { pt, ts: None },
            None => DigitMethod::Inband,
        };
        self.stats.relay_digits_in += 1;
        self.digit_out = Some(DigitOut {
            digit,
            method,
            frames: ms.div_ceil(20),
            sent: 0,
        });
    }

    /// This slot's packet for the digit being re-sent, if one is: an RFC
    /// 4733 update (marker on the first, one timestamp for the event, the
    /// duration growing by a frame each), then three end packets; or a
    /// frame of the tone pair, then a short silence.
    fn digit_tick(&mut self, now: Instant) -> bool {
        let Some(d) = self.digit_out.as_mut() else {
            return false;
        };
        let i = d.sent;
        d.sent += 1;
        let finished = match &mut d.method {
            DigitMethod::Rfc4733 { pt, ts } => {
                let end = i >= d.frames;
                let frames = (i + 1).min(d.frames);
                let duration = u16::try_from(frames * bridge::FRAME_SAMPLES as u32)
                    .unwrap_or(u16::MAX)
                    .to_be_bytes();
                let payload = [
                    d.digit.digit.event_code(),
                    if end { 0x80 } else { 0 } | EVENT_VOLUME,
                    duration[0],
                    duration[1],
                ];
                *ts = Some(self.tx.build_event_packet(
                    now,
                    *pt,
                    *ts,
                    i == 0,
                    &payload,
                    &mut self.packet,
                ));
                i + 1 >= d.frames + EVENT_END_PACKETS
            }
            DigitMethod::Inband => {
                let tone = i < d.frames;
                if tone {
                    bridge::dtmf_frame(
                        d.digit.digit,
                        i * bridge::FRAME_SAMPLES as u32,
                        &mut self.relay_pcm,
                    );
                } else {
                    self.relay_pcm.fill(0);
                }
                encode_frame(self.params.codec, &self.relay_pcm, &mut self.padded);
                self.tx
                    .build_packet(now, &self.padded, i == 0, &mut self.packet);
                i + 1 >= d.frames + INBAND_GAP_FRAMES
            }
        };
        if finished {
            self.digit_out = None;
        }
        self.last_slot = Slot::Digit;
        true
    }

    /// Where this tick's packet goes, if anywhere: nothing before the ACK;
    /// after it, every packet once the peer consented, else one per
    /// [`CONSENT_TRICKLE`] for at most the RTP timeout.
    fn destination(&mut self, now: Instant) -> Option<SocketAddr> {
        let confirmed = self.confirmed?;
        let to = self.remote.filter(|_| self.params.send)?;
        if self.consented() {
            return Some(to);
        }
        let within = now.saturating_duration_since(confirmed) < self.cfg.rtp_timeout;
        let due = self
            .last_trickle
            .is_none_or(|t| now.saturating_duration_since(t) >= CONSENT_TRICKLE);
        if within && due {
            self.last_trickle = Some(now);
            return Some(to);
        }
        None
    }

    /// One datagram that arrived on the leg's socket from `from` (feed the
    /// ones of a tick between its two halves, with the tick's time).
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.handle_rtp_at(now, None, from, datagram);
    }

    /// [`MediaCore::handle_rtp`] with the kernel's receive time of the
    /// datagram (since the Unix epoch), which the jitter estimate uses
    /// instead of the tick's time when there is one.
    pub fn handle_rtp_at(
        &mut self,
        now: Instant,
        stamp: Option<Duration>,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        // Judged by source before a byte of it is read.
        if self.guard.judge(from) == Verdict::Drop {
            self.stats.packets_dropped = self.guard.dropped();
            return;
        }
        let Ok(pkt) = rtp_rx::parse(datagram) else {
            return;
        };
        self.guard.consent();
        self.stats.packets_received += 1;
        stats::record_received();
        self.last_rx = now;
        self.rtp_timed_out = false;
        if self.params.dtmf_pts.contains(&pkt.payload_type) {
            if let Some(ev) = self.rfc4733.on_packet(
                now,
                pkt.ssrc,
                pkt.sequence,
                pkt.timestamp,
                pkt.marker,
                pkt.payload,
            ) {
                self.offer_digit(ev);
            }
            // It used a sequence number of the stream: not a loss.
            self.jitter.pass(&pkt);
        } else if pkt.payload_type == self.params.codec_pt {
            // Symmetric RTP: answer where the caller's audio really comes
            // from (in `latch` mode, where it first came from).
            self.remote = self.guard.audio_from(self.remote, from);
            self.jitter.push_rtp(now, &pkt);
            // Audio only: an RFC 4733 event repeats its start timestamp.
            let arrival = match stamp {
                Some(at) => Arrival::Kernel(at),
                None => Arrival::Read(now.saturating_duration_since(self.started)),
            };
            self.interarrival.packet(pkt.ssrc, pkt.timestamp, arrival);
            self.stats.jitter_ms = self.interarrival.jitter_ms();
        } else {
            self.unnegotiated(&pkt);
        }
    }

    /// A packet of a payload type the call did not negotiate: dropped
    /// undecoded (a key press on it would bypass what the SDP agreed), its
    /// sequence number passed over, and a telephone-event warned about once.
    fn unnegotiated(&mut self, pkt: &rtp_rx::RtpHeaderInfo<'_>) {
        self.stats.packets_unnegotiated += 1;
        self.jitter.pass(pkt);
        if !self.warned_unnegotiated && looks_like_telephone_event(pkt) {
            self.warned_unnegotiated = true;
            let negotiated = match self.params.dtmf_pts.as_slice() {
                [] => "none".to_string(),
                pts => pts.iter().map(u8::to_string).collect::<Vec<_>>().join(", "),
            };
            tracing::warn!(
                "telephone-event packets on payload type {}, which the call did not negotiate (its telephone-event: {negotiated}): dropped; warned once per call",
                pkt.payload_type
            );
        }
    }

    /// Second half of a tick: one frame out of the jitter buffer into the
    /// in-band detector and the endpointer; the listening timers and the RTP
    /// timeout fire.
    pub fn handle_playout(&mut self, now: Instant) {
        if let Some(frame) = self.jitter.pop(now) {
            let lost = matches!(frame, Frame::Lost { .. });
            if lost {
                self.stats.frames_lost += 1;
                stats::record_lost();
            }
            // Decoding costs: only when someone needs the audio.
            if self.cfg.inband_dtmf || self.listening.is_some() || self.bridge.is_some() {
                self.pcm.clear();
                match &frame {
                    Frame::Audio { payload, .. } => {
                        g711::decode(self.params.codec, payload, &mut self.pcm)
                    }
                    Frame::Lost { .. } | Frame::Skipped { .. } => self.pcm.resize(FRAME_BYTES, 0),
                }
                self.relay_out(now, lost);
                if self.cfg.inband_dtmf {
                    for ev in self.inband.push(now, &self.pcm) {
                        self.offer_digit(ev);
                    }
                }
                match self.listening.as_mut() {
                    Some(l) => {
                        if let Some(ev) = l.endpointer.push(now, &self.pcm) {
                            self.heard(ev);
                        }
                    }
                    None => self.line_floor.observe(&self.pcm),
                }
            }
        }
        // Timers run without audio too (hold, lost stream), and one frame
        // may have produced more than one event.
        while let Some(ev) = self.listening.as_mut().and_then(|l| l.endpointer.poll(now)) {
            self.heard(ev);
        }
        self.rfc4733.poll(now);
        // Before the ACK the flow does not run: nothing to time out.
        if self.params.expect_rtp
            && self.confirmed.is_some()
            && !self.rtp_timed_out
            && now.saturating_duration_since(self.last_rx) >= self.cfg.rtp_timeout
        {
            self.rtp_timed_out = true;
            self.events.push_back(MediaEvent::RtpTimeout);
        }
    }

    /// Bridged: the frame just played out (in `pcm`) goes to the other leg.
    /// A lost frame is covered by the last good one, once, then silence.
    fn relay_out(&mut self, now: Instant, lost: bool) {
        // Nobody reads a queue whose other end is gone (that leg unbridged
        // or ended): queueing into it would only count drops.
        let Some(end) = self.bridge.as_ref().filter(|e| e.peer_connected()) else {
            return;
        };
        if lost {
            self.lost_run += 1;
            if self.lost_run > 1 {
                self.relay_last.fill(0);
            }
            end.push_frame(now, &self.relay_last);
        } else {
            self.lost_run = 0;
            let n = self.pcm.len().min(FRAME_BYTES);
            self.relay_last[..n].copy_from_slice(&self.pcm[..n]);
            self.relay_last[n..].fill(0);
            end.push_frame(now, &self.pcm);
        }
        self.stats.relay_frames_out += 1;
    }

    /// One report of a key press from any method: delivered once per press.
    fn offer_digit(&mut self, ev: DigitEvent) {
        if let Some(ev) = self.merger.offer(ev) {
            self.stats.digits += 1;
            if let Some(end) = self.bridge.as_ref() {
                let relay = RelayDigit {
                    digit: ev.digit,
                    duration_ms: ev.duration_ms,
                };
                if end.push_digit(relay) {
                    self.stats.relay_digits_out += 1;
                }
            }
            self.events.push_back(MediaEvent::Digit {
                digit: ev.digit.as_char(),
                source: ev.source,
            });
        }
    }

    /// What the endpointer heard; a final event ends the listening.
    fn heard(&mut self, ev: EndpointEvent) {
        let Some(l) = self.listening.as_ref() else {
            return;
        };
        let tag = l.tag;
        let ev = match ev {
            EndpointEvent::SpeechStarted => MediaEvent::SpeechStarted(tag),
            EndpointEvent::Utterance(u) => MediaEvent::Utterance(tag, u.pcm),
            EndpointEvent::NoInput => MediaEvent::NoSpeech(tag),
            EndpointEvent::Pause(u) => MediaEvent::Pause(tag, u.pcm),
            EndpointEvent::Resumed => MediaEvent::Resumed(tag),
        };
        if !matches!(
            ev,
            MediaEvent::SpeechStarted(_) | MediaEvent::Pause(..) | MediaEvent::Resumed(_)
        ) {
            self.listening = None;
        }
        self.events.push_back(ev);
    }

    /// The prompts ended (or had to be dropped): tell the call, and the
    /// no-input time of a listening that waited for them starts now.
    fn playback_done(&mut self, now: Instant) {
        self.events.push_back(MediaEvent::PlaybackDone);
        self.restart_no_input(now);
    }

    /// A prompt ended (or was stopped) while listening and nobody has spoken
    /// yet: the no-input time starts now.
    fn restart_no_input(&mut self, now: Instant) {
        if let Some(l) = self.listening.as_mut() {
            if !l.endpointer.speech_started() {
                // Keep what it learnt of the line's noise during the prompt.
                l.endpointer = Endpointer::on_line(l.timers, now, l.endpointer.noise_floor_db());
                if let Some(after) = l.speculate {
                    l.endpointer.speculate_after(after);
                }
            }
        }
    }
}

/// One frame of linear PCM into `out` in `codec`, without allocating.
/// Whether an RTP packet has the shape of an RFC 4733 telephone-event: a
/// dynamic payload type carrying one 4-byte event block for a DTMF event
/// (0-16). Shape only: the payload type was not negotiated for it.
fn looks_like_telephone_event(pkt: &rtp_rx::RtpHeaderInfo<'_>) -> bool {
    (96..=127).contains(&pkt.payload_type)
        && pkt.payload.len() == 4
        && pkt.payload.first().is_some_and(|e| *e <= 16)
}

fn encode_frame(codec: Codec, pcm: &PcmFrame, out: &mut [u8; FRAME_BYTES]) {
    match codec {
        Codec::Pcmu => {
            for (o, &x) in out.iter_mut().zip(pcm) {
                *o = g711::linear_to_ulaw(x);
            }
        }
        Codec::Pcma => {
            for (o, &x) in out.iter_mut().zip(pcm) {
                *o = g711::linear_to_alaw(x);
            }
        }
    }
}

/// The core on simulated time: no sockets, no tokio, no clock read.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::prompt::PromptAudio;
    use std::f32::consts::TAU;

    const PEER: &str = "127.0.0.1:40000";
    const MOVED: &str = "127.0.0.1:40002";
    const DTMF_PT: u8 = 101;

    fn peer() -> SocketAddr {
        PEER.parse().unwrap()
    }

    fn params() -> MediaParams {
        MediaParams {
            codec: Codec::Pcmu,
            codec_pt: 0,
            dtmf_pts: vec![DTMF_PT],
            remote: Some(peer()),
            signalled: Some(peer().ip()),
            send: true,
            expect_rtp: true,
        }
    }

    /// The media of before `rtp_source` (sources and consent unchecked):
    /// what the tests of pacing, DTMF and listening assume.
    fn cfg() -> SessionConfig {
        SessionConfig {
            rtp_timeout: Duration::from_secs(1),
            inband_dtmf: true,
            jitter_frames: 3,
            rtp_source: RtpSource::Any,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timers(no_input: u64) -> Timers {
        Timers {
            no_input_timeout: ms(no_input),
            end_of_speech_timeout: ms(800),
            max_duration: Duration::from_secs(10),
            incomplete: None,
        }
    }

    /// A sent packet, parsed.
    #[derive(Debug)]
    struct Sent {
        to: SocketAddr,
        at: Duration,
        seq: u16,
        ts: u32,
        marker: bool,
        pt: u8,
        payload: Vec<u8>,
    }

    /// A call leg on a simulated clock and a far end that sends audio.
    struct Sim {
        core: MediaCore,
        t0: Instant,
        now: Instant,
        sent: Vec<Sent>,
        events: Vec<(Duration, MediaEvent)>,
        peer_seq: u16,
        peer_ts: u32,
    }

    impl Sim {
        fn new(params: MediaParams, cfg: SessionConfig, prompts: Arc<PromptCache>) -> Sim {
            let mut sim = Sim::unconfirmed(params, cfg, prompts);
            sim.core.handle_command(sim.now, MediaCommand::Confirmed);
            sim
        }

        /// A leg whose call has not been ACKed yet.
        fn unconfirmed(params: MediaParams, cfg: SessionConfig, prompts: Arc<PromptCache>) -> Sim {
            let t0 = Instant::now();
            Sim {
                core: MediaCore::new(t0, params, cfg, prompts),
                t0,
                now: t0,
                sent: Vec::new(),
                events: Vec::new(),
                peer_seq: 1000,
                peer_ts: 50_000,
            }
        }

        fn with_prompt(pcm: Vec<i16>) -> Sim {
            let prompts = Arc::new(PromptCache::new("/nonexistent"));
            prompts.insert_audio("p", PromptAudio::from_pcm(pcm));
            Sim::new(params(), cfg(), prompts)
        }

        fn at(&self) -> Duration {
            self.now - self.t0
        }

        /// Executes the outputs like the socket loop; returns the deadline.
        fn drain(&mut self) -> Option<Instant> {
            loop {
                match self.core.poll_output()? {
                    Output::Transmit(t) => {
                        let p = rtp_rx::parse(t.data).expect("we send valid RTP");
                        self.sent.push(Sent {
                            to: t.to,
                            at: self.now - self.t0,
                            seq: p.sequence,
                            ts: p.timestamp,
                            marker: p.marker,
                            pt: p.payload_type,
                            payload: p.payload.to_vec(),
                        });
                        self.core.transmitted();
                    }
                    Output::Event(ev) => self.events.push((self.now - self.t0, ev)),
                    Output::Timeout(at) => return Some(at),
                }
            }
        }

        fn command(&mut self, cmd: MediaCommand) {
            self.core.handle_command(self.now, cmd);
            self.drain();
        }

        /// One tick at the core's deadline with these datagrams arriving.
        fn tick_with(&mut self, incoming: &[Vec<u8>]) {
            self.tick_from(peer(), incoming);
        }

        fn tick_from(&mut self, from: SocketAddr, incoming: &[Vec<u8>]) {
            let at = self.drain().expect("running");
            assert!(at >= self.now, "deadlines never go back");
            self.now = at;
            self.core.handle_tick(at);
            self.drain();
            for d in incoming {
                self.core.handle_rtp(at, from, d);
            }
            self.core.handle_playout(at);
            self.drain();
        }

        fn tick(&mut self) {
            self.tick_with(&[]);
        }

        /// One tick with a frame of the far end's audio.
        fn tick_audio(&mut self, pcm: &[i16]) {
            let pkt = self.audio_packet(pcm);
            self.tick_with(&[pkt]);
        }

        fn audio_packet(&mut self, pcm: &[i16]) -> Vec<u8> {
            self.audio_packet_as(Codec::Pcmu, pcm)
        }

        /// The far end's audio in `codec` (on its static payload type).
        fn audio_packet_as(&mut self, codec: Codec, pcm: &[i16]) -> Vec<u8> {
            let mut payload = Vec::new();
            g711::encode(codec, pcm, &mut payload);
            let p = rtp(codec.payload_type(), self.peer_seq, self.peer_ts, &payload);
            self.peer_seq = self.peer_seq.wrapping_add(1);
            self.peer_ts = self.peer_ts.wrapping_add(160);
            p
        }

        fn events(&self) -> Vec<MediaEvent> {
            self.events.iter().map(|(_, e)| e.clone()).collect()
        }

        fn when(&self, wanted: &MediaEvent) -> Option<Duration> {
            self.events
                .iter()
                .find(|(_, e)| e == wanted)
                .map(|(t, _)| *t)
        }

        fn digits(&self) -> Vec<(char, DigitSource)> {
            self.events
                .iter()
                .filter_map(|(_, e)| match e {
                    MediaEvent::Digit { digit, source } => Some((*digit, *source)),
                    _ => None,
                })
                .collect()
        }
    }

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// An RFC 4733 telephone-event packet.
    fn event_packet(seq: u16, ts: u32, code: u8, end: bool, duration: u16) -> Vec<u8> {
        let d = duration.to_be_bytes();
        rtp(
            DTMF_PT,
            seq,
            ts,
            &[code, if end { 0x80 } else { 0 } | 10, d[0], d[1]],
        )
    }

    fn tone(f1: f32, f2: f32, frames: usize) -> Vec<i16> {
        (0..frames * 160)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (6000.0 * ((TAU * f1 * t).sin() + (TAU * f2 * t).sin())) as i16
            })
            .collect()
    }

    /// Vowel-like audio: 140 Hz with its harmonics, well above the line.
    fn voice(frames: usize) -> Vec<i16> {
        (0..frames * 160)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let s: f32 = (1..=17)
                    .map(|k| (TAU * 140.0 * k as f32 * t).sin() / k as f32)
                    .sum();
                (3000.0 * s) as i16
            })
            .collect()
    }

    const SILENCE: [i16; 160] = [0; 160];

    #[test]
    fn prompts_are_paced_in_20_ms_frames_with_continuous_seq_and_ts() {
        // 6.5 frames: the last one is padded with silence.
        let pcm: Vec<i16> = (0..1040).map(|i| ((i % 50) * 200 - 5000) as i16).collect();
        let mut encoded = Vec::new();
        g711::encode(Codec::Pcmu, &pcm, &mut encoded);
        let mut sim = Sim::with_prompt(pcm);
        sim.command(MediaCommand::Play(vec!["p".into()]));
        for _ in 0..10 {
            sim.tick();
        }
        assert_eq!(sim.sent.len(), 10);
        for (i, p) in sim.sent.iter().enumerate() {
            assert_eq!(p.at, ms(20 * i as u64), "packet {i} on its slot");
            assert_eq!(p.to, peer());
            assert_eq!(p.payload.len(), 160);
            assert_eq!(p.marker, i == 0, "marker only on the talkspurt start");
            if i > 0 {
                let prev = &sim.sent[i - 1];
                assert_eq!(p.seq, prev.seq.wrapping_add(1));
                assert_eq!(p.ts, prev.ts.wrapping_add(160));
            }
        }
        let sent: Vec<u8> = sim.sent[..7]
            .iter()
            .flat_map(|p| p.payload.clone())
            .collect();
        assert_eq!(&sent[..1040], &encoded[..]);
        let silence = Codec::Pcmu.silence_byte();
        assert!(sent[1040..].iter().all(|&b| b == silence), "padding");
        assert!(sim.sent[7..].iter().all(|p| p.payload == [silence; 160]));
        // Done with the tick that sent the last frame, once.
        assert_eq!(sim.events(), vec![MediaEvent::PlaybackDone]);
        assert_eq!(sim.when(&MediaEvent::PlaybackDone), Some(ms(120)));
        assert_eq!(sim.core.stats().packets_sent, 10);
    }

    #[test]
    fn hold_keeps_time_but_sends_nothing_and_prompt_errors_are_reported() {
        let prompts = Arc::new(PromptCache::new("/nonexistent"));
        let mut sim = Sim::new(
            MediaParams {
                send: false,
                ..params()
            },
            cfg(),
            prompts,
        );
        sim.command(MediaCommand::Play(vec!["missing".into()]));
        assert!(matches!(
            &sim.events()[..],
            [MediaEvent::PromptError { name, .. }] if name == "missing"
        ));
        for _ in 0..5 {
            sim.tick();
        }
        assert!(sim.sent.is_empty());
        assert_eq!(sim.at(), ms(80), "ticks still every 20 ms");
        // The empty playback ends at its first tick.
        assert_eq!(sim.when(&MediaEvent::PlaybackDone), Some(ms(0)));
    }

    /// Key 4 sent the way phones do: the audio stops while RFC 4733 packets
    /// on `pt` take its sequence numbers (three end packets), then audio.
    fn key_four_in_sequence(sim: &mut Sim, pt: u8) {
        let ts = sim.peer_ts;
        for i in 0..8u16 {
            let mut ev = event_packet(sim.peer_seq, ts, 4, i >= 5, 160 * (i.min(5) + 1));
            ev[1] = pt;
            sim.peer_seq = sim.peer_seq.wrapping_add(1);
            sim.tick_with(&[ev]);
        }
        sim.peer_ts = sim.peer_ts.wrapping_add(8 * 160);
    }

    #[test]
    fn jitter_follows_kernel_stamps_of_audio_and_ignores_events() {
        let mut sim = Sim::new(params(), cfg(), Arc::new(PromptCache::new("/nonexistent")));
        assert_eq!(sim.core.stats().jitter_ms, None);
        // Sent every 20 ms; the kernel saw them alternately 0 and 6 ms late,
        // while the ticks read them all at once (their time must not count).
        let base = Duration::from_secs(1_700_000_000);
        for i in 0..200u64 {
            let pkt = sim.audio_packet(&SILENCE);
            let late = if i % 2 == 1 { 6 } else { 0 };
            let stamp = base + Duration::from_millis(20 * i + late);
            sim.core.handle_rtp_at(sim.now, Some(stamp), peer(), &pkt);
            if i % 50 == 0 {
                // A key press on the stream: its repeated timestamp is no jitter.
                let (seq, ts) = (sim.peer_seq, sim.peer_ts);
                for k in 0..3u16 {
                    let ev = event_packet(seq.wrapping_add(k), ts, 4, false, 160 * (k + 1));
                    sim.core.handle_rtp_at(
                        sim.now,
                        Some(stamp + Duration::from_millis(20 * u64::from(k))),
                        peer(),
                        &ev,
                    );
                }
                sim.peer_seq = sim.peer_seq.wrapping_add(3);
            }
        }
        let j = sim.core.stats().jitter_ms.unwrap();
        assert!((j - 6.0).abs() < 0.01, "{j}");
    }

    #[test]
    fn telephone_events_in_the_audio_sequence_are_not_counted_lost() {
        let mut sim = Sim::new(params(), cfg(), Arc::new(PromptCache::new("/nonexistent")));
        for _ in 0..10 {
            sim.tick_audio(&SILENCE);
        }
        key_four_in_sequence(&mut sim, DTMF_PT);
        for _ in 0..20 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(sim.digits(), vec![('4', DigitSource::Rfc4733)]);
        assert_eq!(
            sim.core.stats().frames_lost,
            0,
            "8 event packets are not 8 lost frames"
        );
        // A real gap still counts: two audio packets never sent.
        sim.peer_seq = sim.peer_seq.wrapping_add(2);
        for _ in 0..10 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(sim.core.stats().frames_lost, 2);
        assert_eq!(sim.core.stats().packets_unnegotiated, 0);
    }

    #[test]
    fn telephone_events_on_a_payload_type_not_negotiated_are_dropped_and_warned_once() {
        let mut sim = Sim::new(params(), cfg(), Arc::new(PromptCache::new("/nonexistent")));
        for _ in 0..10 {
            sim.tick_audio(&SILENCE);
        }
        // The call negotiated 101; a far end (or an attacker on the caller's
        // address) keys on 96: no digit, and its sequence numbers no loss.
        key_four_in_sequence(&mut sim, 96);
        assert!(sim.core.warned_unnegotiated);
        key_four_in_sequence(&mut sim, 100);
        for _ in 0..20 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(sim.digits(), vec![]);
        assert_eq!(sim.core.stats().packets_unnegotiated, 16);
        assert_eq!(sim.core.stats().frames_lost, 0);
        // Comfort noise (static 13) is not telephone-event-shaped: no warning.
        let mut quiet = Sim::new(params(), cfg(), Arc::new(PromptCache::new("/nonexistent")));
        quiet.tick_with(&[rtp(13, 1, 0, &[40])]);
        assert_eq!(quiet.core.stats().packets_unnegotiated, 1);
        assert!(!quiet.core.warned_unnegotiated);
    }

    #[test]
    fn digits_from_all_three_methods_are_delivered_once_per_press() {
        let mut sim = Sim::with_prompt(vec![0; 160]);
        for _ in 0..5 {
            sim.tick_audio(&SILENCE);
        }
        // Key 5 pressed: RFC 4733 and in-band audio at once, and SIP INFO.
        let five = tone(770.0, 1336.0, 6);
        let ts = sim.peer_ts;
        for (i, frame) in five.chunks(160).enumerate() {
            let audio = sim.audio_packet(frame);
            let seq = 9000 + i as u16;
            let ev = event_packet(seq, ts, 5, false, 160 * (i as u16 + 1));
            sim.tick_with(&[audio, ev]);
            if i == 1 {
                sim.command(MediaCommand::InfoDigit(
                    Digit::from_char('5').unwrap(),
                    None,
                ));
            }
        }
        for i in 0..3 {
            let end = event_packet(9010 + i, ts, 5, true, 960);
            let audio = sim.audio_packet(&SILENCE);
            sim.tick_with(&[audio, end]);
        }
        for _ in 0..25 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(sim.digits(), vec![('5', DigitSource::Rfc4733)]);

        // Key 8 by SIP INFO alone.
        sim.command(MediaCommand::InfoDigit(
            Digit::from_char('8').unwrap(),
            Some(100),
        ));
        for _ in 0..25 {
            sim.tick_audio(&SILENCE);
        }
        // Key 3 only in-band, well away from the signalled ones.
        for frame in tone(697.0, 1477.0, 6).chunks(160) {
            sim.tick_audio(frame);
        }
        for _ in 0..10 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(
            sim.digits(),
            vec![
                ('5', DigitSource::Rfc4733),
                ('8', DigitSource::SipInfo),
                ('3', DigitSource::Inband)
            ]
        );
        assert_eq!(sim.core.stats().digits, 3);
    }

    #[test]
    fn pauses_are_reported_for_speculation_also_after_the_prompt_ends() {
        let mut sim = Sim::with_prompt(vec![1000; 8000]); // 1 s
        sim.command(MediaCommand::Play(vec!["p".into()]));
        sim.command(MediaCommand::StartListening(timers(500), 7));
        sim.command(MediaCommand::Speculate(7, Duration::from_millis(200)));
        // Another listening's tag changes nothing.
        sim.command(MediaCommand::Speculate(6, Duration::from_millis(20)));
        // The prompt ends (the endpointer restarts its no-input time).
        for _ in 0..60 {
            sim.tick_audio(&SILENCE);
        }
        assert!(sim.when(&MediaEvent::PlaybackDone).is_some());
        for frame in voice(30).chunks(160) {
            sim.tick_audio(frame);
        }
        for _ in 0..60 {
            sim.tick_audio(&SILENCE);
        }
        let evs = sim.events();
        let pause = evs
            .iter()
            .position(|e| matches!(e, MediaEvent::Pause(7, _)));
        let end = evs
            .iter()
            .position(|e| matches!(e, MediaEvent::Utterance(7, _)));
        let (Some(p), Some(u)) = (pause, end) else {
            panic!("a pause and an utterance: {evs:?}")
        };
        assert!(p < u, "{evs:?}");
        let (MediaEvent::Pause(_, a), MediaEvent::Utterance(_, b)) = (&evs[p], &evs[u]) else {
            unreachable!()
        };
        assert_eq!(a, b, "the pause's audio is the utterance");
        assert!(!evs.iter().any(|e| matches!(e, MediaEvent::Resumed(_))));
    }

    #[test]
    fn speech_barge_in_is_heard_while_the_prompt_plays() {
        let mut sim = Sim::with_prompt(vec![1000; 8000]); // 1 s
        sim.command(MediaCommand::Play(vec!["p".into()]));
        sim.command(MediaCommand::StartListening(timers(500), 7));
        for _ in 0..5 {
            sim.tick_audio(&SILENCE);
        }
        for frame in voice(30).chunks(160) {
            sim.tick_audio(frame);
        }
        let started = sim
            .when(&MediaEvent::SpeechStarted(7))
            .expect("voice activity reported");
        assert!(started < ms(1000), "during the prompt: {started:?}");
        assert_eq!(sim.when(&MediaEvent::PlaybackDone), None);
        // The flow stops the prompt; the caller pauses: the utterance ends.
        sim.command(MediaCommand::Stop);
        for _ in 0..50 {
            sim.tick_audio(&SILENCE);
        }
        let utterances: Vec<_> = sim
            .events()
            .into_iter()
            .filter_map(|e| match e {
                MediaEvent::Utterance(tag, pcm) => Some((tag, pcm.len())),
                _ => None,
            })
            .collect();
        assert_eq!(utterances.len(), 1, "{:?}", sim.events());
        assert_eq!(utterances[0].0, 7);
        assert!(utterances[0].1 >= 30 * 160, "the whole phrase");
        // The listening ended with it: no no-input afterwards.
        assert_eq!(sim.when(&MediaEvent::NoSpeech(7)), None);
    }

    #[test]
    fn no_input_counts_from_the_end_of_the_prompt() {
        // 1 s, 50 whole frames: the last is sent at 980 ms, and the slot
        // after it (1000 ms) finds the queue empty.
        let mut sim = Sim::with_prompt(vec![1000; 8000]);
        sim.command(MediaCommand::Play(vec!["p".into()]));
        sim.command(MediaCommand::StartListening(timers(500), 3));
        for _ in 0..100 {
            sim.tick_audio(&SILENCE);
        }
        let done = sim.when(&MediaEvent::PlaybackDone).expect("prompt ends");
        assert_eq!(done, ms(1000));
        let no_input = sim.when(&MediaEvent::NoSpeech(3)).expect("no input");
        assert!(
            no_input >= done + ms(500) && no_input <= done + ms(520),
            "{no_input:?}"
        );
        assert_eq!(sim.events().len(), 2);
    }

    #[test]
    fn stopping_the_prompt_starts_the_no_input_time() {
        let mut sim = Sim::with_prompt(vec![1000; 40_000]); // 5 s
        sim.command(MediaCommand::Play(vec!["p".into()]));
        sim.command(MediaCommand::StartListening(timers(500), 4));
        for _ in 0..15 {
            sim.tick_audio(&SILENCE);
        }
        assert!(sim.events().is_empty(), "nothing while the prompt plays");
        let stopped = sim.at();
        sim.command(MediaCommand::Stop);
        for _ in 0..40 {
            sim.tick_audio(&SILENCE);
        }
        let no_input = sim.when(&MediaEvent::NoSpeech(4)).expect("no input");
        assert!(
            no_input >= stopped + ms(500) && no_input <= stopped + ms(520),
            "{no_input:?}"
        );
        assert_eq!(
            sim.when(&MediaEvent::PlaybackDone),
            None,
            "stopped, not done"
        );
    }

    #[test]
    fn no_input_without_a_prompt_counts_from_the_start_and_stale_listening_is_silent() {
        let mut sim = Sim::with_prompt(vec![0; 160]);
        sim.command(MediaCommand::StartListening(timers(300), 1));
        sim.tick();
        sim.command(MediaCommand::StopListening);
        sim.command(MediaCommand::StartListening(timers(300), 2));
        for _ in 0..30 {
            sim.tick();
        }
        assert_eq!(sim.events(), vec![MediaEvent::NoSpeech(2)]);
        assert!(sim.when(&MediaEvent::NoSpeech(2)).unwrap() <= ms(320));
    }

    #[test]
    fn rtp_timeout_fires_once_per_silence_and_not_on_hold() {
        let mut sim = Sim::with_prompt(vec![0; 160]);
        for _ in 0..10 {
            sim.tick_audio(&SILENCE);
        }
        let last_rx = sim.at();
        for _ in 0..100 {
            sim.tick();
        }
        assert_eq!(sim.events(), vec![MediaEvent::RtpTimeout]);
        let at = sim.when(&MediaEvent::RtpTimeout).unwrap();
        assert_eq!(at, last_rx + Duration::from_secs(1));
        // The stream comes back and stops again: a second timeout.
        sim.tick_audio(&SILENCE);
        for _ in 0..60 {
            sim.tick();
        }
        assert_eq!(sim.events().len(), 2);

        // On hold the peer sends nothing on purpose.
        let mut sim = Sim::with_prompt(vec![0; 160]);
        sim.command(MediaCommand::Update(MediaParams {
            expect_rtp: false,
            ..params()
        }));
        for _ in 0..100 {
            sim.tick();
        }
        assert!(sim.events().is_empty());
    }

    #[test]
    fn replies_go_where_the_callers_audio_comes_from() {
        let mut sim = Sim::with_prompt(vec![0; 160]);
        sim.tick();
        assert_eq!(sim.sent[0].to, peer());
        let pkt = sim.audio_packet(&SILENCE);
        sim.tick_from(MOVED.parse().unwrap(), &[pkt]);
        sim.tick();
        assert_eq!(sim.sent[2].to, MOVED.parse::<SocketAddr>().unwrap());
        assert_eq!(sim.core.stats().packets_received, 1);
        // Garbage on the port is not RTP and changes nothing.
        sim.tick_from(peer(), &[vec![0x00, 0x01, 0x02]]);
        sim.tick();
        assert_eq!(sim.sent[4].to, MOVED.parse::<SocketAddr>().unwrap());
        assert_eq!(sim.core.stats().packets_received, 1);
    }

    const ATTACKER: &str = "127.0.0.2:40000";

    fn latch_cfg() -> SessionConfig {
        SessionConfig {
            rtp_timeout: Duration::from_secs(5),
            rtp_source: RtpSource::Latch,
            ..cfg()
        }
    }

    #[test]
    fn nothing_is_sent_before_the_ack_and_a_silent_peer_gets_a_trickle_then_a_timeout() {
        let prompts = Arc::new(PromptCache::new("/nonexistent"));
        let mut sim = Sim::unconfirmed(params(), latch_cfg(), prompts);
        for _ in 0..500 {
            sim.tick();
        }
        assert!(sim.sent.is_empty(), "no RTP before the ACK");
        sim.command(MediaCommand::Confirmed);
        let acked = sim.at();
        // 10 s of a peer that never sends: one packet a second for the
        // RTP timeout (5 s), then the call is ended as for rtp_timeout.
        for _ in 0..500 {
            sim.tick();
        }
        let times: Vec<Duration> = sim.sent.iter().map(|p| p.at - acked).collect();
        assert_eq!(times.len(), 5, "{times:?}");
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= CONSENT_TRICKLE, "{times:?}");
        }
        assert!(sim.sent.iter().all(|p| p.to == peer()));
        assert_eq!(sim.events(), vec![MediaEvent::RtpTimeout]);
        assert_eq!(sim.when(&MediaEvent::RtpTimeout), Some(acked + ms(5000)));
    }

    #[test]
    fn the_peers_first_rtp_gives_consent_and_full_rate_media() {
        let mut sim = Sim::new(params(), latch_cfg(), Arc::new(PromptCache::new("/x")));
        for _ in 0..100 {
            sim.tick();
        }
        let trickle = sim.sent.len();
        assert!((2..=3).contains(&trickle), "the trickle: {trickle}");
        // A stranger's RTP is no consent.
        let pkt = sim.audio_packet(&SILENCE);
        sim.tick_from(ATTACKER.parse().unwrap(), &[pkt]);
        for _ in 0..10 {
            sim.tick();
        }
        assert!(sim.sent.len() <= trickle + 1, "still the trickle");
        // The peer's is: every tick sends from then on.
        let pkt = sim.audio_packet(&SILENCE);
        sim.tick_with(&[pkt]);
        let before = sim.sent.len();
        for _ in 0..10 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(sim.sent.len(), before + 10);
        assert_eq!(sim.core.stats().packets_dropped, 1);
    }

    #[test]
    fn a_third_party_can_neither_key_digits_nor_move_the_audio() {
        let mut sim = Sim::new(params(), latch_cfg(), Arc::new(PromptCache::new("/x")));
        // The caller streams from another port than its SDP says: latched.
        let caller: SocketAddr = MOVED.parse().unwrap();
        for _ in 0..5 {
            let pkt = sim.audio_packet(&SILENCE);
            sim.tick_from(caller, &[pkt]);
        }
        let latched = sim.sent.len();
        // An attacker on another address sprays a whole key press of 6
        // (RFC 4733 and in-band tones) and audio at the port.
        let attacker: SocketAddr = ATTACKER.parse().unwrap();
        let six = tone(770.0, 1477.0, 8);
        for (i, frame) in six.chunks(160).enumerate() {
            let audio = sim.audio_packet(frame);
            let ev = event_packet(7000 + i as u16, 99_000, 6, i >= 5, 160 * (i as u16 + 1));
            sim.tick_from(attacker, &[audio, ev]);
        }
        for _ in 0..30 {
            let pkt = sim.audio_packet(&SILENCE);
            sim.tick_from(caller, &[pkt]);
        }
        assert!(sim.digits().is_empty(), "{:?}", sim.digits());
        assert!(
            sim.sent[latched..].iter().all(|p| p.to == caller),
            "audio never moved"
        );
        assert!(sim.sent.iter().all(|p| p.to != attacker));
        assert_eq!(sim.core.stats().packets_dropped, 16);
        // The caller's own key press still counts.
        for (i, frame) in tone(697.0, 1209.0, 6).chunks(160).enumerate() {
            let audio = sim.audio_packet(frame);
            let ev = event_packet(8000 + i as u16, 120_000, 1, i >= 4, 160 * (i as u16 + 1));
            sim.tick_from(caller, &[audio, ev]);
        }
        for _ in 0..30 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(sim.digits(), vec![('1', DigitSource::Rfc4733)]);
    }

    #[test]
    fn a_re_invite_with_new_sdp_moves_the_latch() {
        let mut sim = Sim::new(params(), latch_cfg(), Arc::new(PromptCache::new("/x")));
        let pkt = sim.audio_packet(&SILENCE);
        sim.tick_with(&[pkt]);
        let elsewhere: SocketAddr = "127.0.0.3:41000".parse().unwrap();
        let pkt = sim.audio_packet(&SILENCE);
        sim.tick_from(elsewhere, &[pkt]);
        assert_eq!(sim.core.stats().packets_dropped, 1);
        sim.command(MediaCommand::Update(MediaParams {
            remote: Some(elsewhere),
            ..params()
        }));
        sim.tick();
        assert_eq!(sim.sent.last().unwrap().to, elsewhere);
        let pkt = sim.audio_packet(&SILENCE);
        sim.tick_from(elsewhere, &[pkt]);
        assert_eq!(sim.core.stats().packets_dropped, 1, "accepted now");
        // The old address is no longer the call's... unless it signalled it.
        let pkt = sim.audio_packet(&SILENCE);
        sim.tick_from("127.0.0.4:1".parse().unwrap(), &[pkt]);
        assert_eq!(sim.core.stats().packets_dropped, 2);
    }

    #[test]
    fn a_codec_change_ends_the_playback_and_shutdown_ends_the_core() {
        let mut sim = Sim::with_prompt(vec![1000; 8000]);
        sim.command(MediaCommand::Play(vec!["p".into()]));
        sim.tick();
        sim.command(MediaCommand::Update(MediaParams {
            codec: Codec::Pcma,
            codec_pt: 8,
            ..params()
        }));
        assert_eq!(sim.events(), vec![MediaEvent::PlaybackDone]);
        sim.tick();
        let last = sim.sent.last().unwrap();
        assert_eq!(last.payload, [Codec::Pcma.silence_byte(); 160]);
        assert_eq!(sim.sent[1].seq, sim.sent[0].seq.wrapping_add(1));
        sim.core.handle_command(sim.now, MediaCommand::Shutdown);
        assert!(sim.core.poll_output().is_none());
    }

    // ---- The bridge (issue 17): two cores joined by media::bridge::pair ----

    /// Leg B's telephone-event payload type, unlike A's.
    const B_DTMF_PT: u8 = 96;

    fn pcma_params() -> MediaParams {
        MediaParams {
            codec: Codec::Pcma,
            codec_pt: 8,
            dtmf_pts: vec![B_DTMF_PT],
            ..params()
        }
    }

    /// Power at `freq` as a share of the frame's energy (1.0: a pure sine).
    fn tone_share(pcm: &[i16], freq: f32) -> f32 {
        let coeff = 2.0 * (TAU * freq / 8000.0).cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        let mut energy = 0.0f32;
        for &v in pcm {
            let v = f32::from(v);
            energy += v * v;
            let s = v + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        if energy == 0.0 {
            return 0.0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * power / (pcm.len() as f32 * energy)
    }

    fn decoded(codec: Codec, p: &Sent) -> Vec<i16> {
        let mut pcm = Vec::new();
        g711::decode(codec, &p.payload, &mut pcm);
        pcm
    }

    fn sine(freq: f32, frames: usize) -> Vec<i16> {
        (0..frames * 160)
            .map(|i| (8000.0 * (TAU * freq * i as f32 / 8000.0).sin()) as i16)
            .collect()
    }

    /// Leg A (PCMU, telephone-event 101) bridged to leg B (its own params),
    /// on one simulated clock: each round ticks A, then B.
    struct Pair {
        a: Sim,
        b: Sim,
    }

    impl Pair {
        fn new(b: MediaParams) -> Pair {
            let prompts = Arc::new(PromptCache::new("/nonexistent"));
            prompts.insert_audio("p", PromptAudio::from_pcm(vec![3000; 1600]));
            let mut a = Sim::new(params(), cfg(), Arc::clone(&prompts));
            let mut b = Sim::new(b, cfg(), prompts);
            let (ea, eb) = bridge::pair();
            a.command(MediaCommand::Bridge(ea));
            b.command(MediaCommand::Bridge(eb));
            Pair { a, b }
        }

        fn round(&mut self, into_a: &[Vec<u8>], into_b: &[Vec<u8>]) {
            self.a.tick_with(into_a);
            self.b.tick_with(into_b);
        }

        /// `frames` rounds of this audio into A and silence into B.
        fn audio_into_a(&mut self, pcm: &[i16]) {
            let codec = self.b.core.params.codec;
            for frame in pcm.chunks(160) {
                let a = self.a.audio_packet(frame);
                let b = self.b.audio_packet_as(codec, &SILENCE);
                self.round(&[a], &[b]);
            }
        }

        fn silence(&mut self, rounds: usize) {
            self.audio_into_a(&vec![0; rounds * 160]);
        }
    }

    #[test]
    fn a_tone_crosses_the_bridge_both_ways_and_is_transcoded() {
        let mut pair = Pair::new(pcma_params());
        // 1 kHz into A (PCMU) comes out of B (PCMA, PT 8).
        pair.audio_into_a(&sine(1000.0, 50));
        let b_out = &pair.b.sent[10..];
        assert!(b_out.iter().all(|p| p.pt == 8 && p.payload.len() == 160));
        for p in b_out {
            let share = tone_share(&decoded(Codec::Pcma, p), 1000.0);
            assert!(share > 0.9, "B sends A's tone: share {share} at {:?}", p.at);
        }
        // Continuous sequence and timestamps on B's own stream.
        for w in pair.b.sent.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
            assert_eq!(w[1].ts, w[0].ts.wrapping_add(160));
        }
        // Added delay: at most a frame or two behind A's jitter buffer.
        let first = pair
            .b
            .sent
            .iter()
            .position(|p| tone_share(&decoded(Codec::Pcma, p), 1000.0) > 0.5)
            .unwrap();
        assert!(first <= 3, "first tone frame out of B at slot {first}");

        // 600 Hz into B (PCMA) comes out of A (PCMU, PT 0).
        let a_before = pair.a.sent.len();
        for frame in sine(600.0, 50).chunks(160) {
            let a = pair.a.audio_packet(&SILENCE);
            let b = pair.b.audio_packet_as(Codec::Pcma, frame);
            pair.round(&[a], &[b]);
        }
        let a_out = &pair.a.sent[a_before + 10..];
        for p in a_out {
            assert_eq!(p.pt, 0);
            let share = tone_share(&decoded(Codec::Pcmu, p), 600.0);
            assert!(share > 0.9, "A sends B's tone: share {share}");
        }
        let (a, b) = (pair.a.core.stats(), pair.b.core.stats());
        assert_eq!(a.relay_frames_out, b.relay_frames_in + b.relay_dropped);
        // B's last frame waits for A's next tick (A ticks first each round).
        assert_eq!(b.relay_frames_out, a.relay_frames_in + a.relay_dropped + 1);
        assert_eq!(a.relay_dropped + b.relay_dropped, 0, "lock-step: no drops");
        assert!(a.relay_frames_out >= 98, "{a:?}");
    }

    /// B's packets of one re-sent event: (marker, ts, code, end, duration).
    fn events_of(sent: &[Sent], pt: u8) -> Vec<(bool, u32, u8, bool, u16)> {
        sent.iter()
            .filter(|p| p.pt == pt)
            .map(|p| {
                let e = &p.payload;
                (
                    p.marker,
                    p.ts,
                    e[0],
                    e[1] & 0x80 != 0,
                    u16::from_be_bytes([e[2], e[3]]),
                )
            })
            .collect()
    }

    /// One proper RFC 4733 event of `code` lasting `frames` 20 ms frames.
    fn assert_event(packets: &[(bool, u32, u8, bool, u16)], code: u8, frames: u16) {
        assert_eq!(packets.len(), usize::from(frames) + 3, "{packets:?}");
        let ts = packets[0].1;
        for (i, &(marker, t, c, end, dur)) in packets.iter().enumerate() {
            assert_eq!(marker, i == 0, "marker on the first only: {packets:?}");
            assert_eq!(t, ts, "one timestamp for the event");
            assert_eq!(c, code);
            let i = i as u16;
            assert_eq!(end, i >= frames, "three end packets last");
            assert_eq!(dur, 160 * (i + 1).min(frames), "duration grows");
        }
    }

    #[test]
    fn digits_into_a_go_out_of_b_as_rfc4733_on_bs_payload_type() {
        let mut pair = Pair::new(pcma_params());
        pair.silence(5);
        // Key 5 by RFC 4733 on A's PT 101.
        let ts = pair.a.peer_ts;
        for i in 0..8u16 {
            let audio = pair.a.audio_packet(&SILENCE);
            let ev = event_packet(9000 + i, ts, 5, i >= 5, 160 * (i.min(4) + 1));
            let b = pair.b.audio_packet_as(Codec::Pcma, &SILENCE);
            pair.round(&[audio, ev], &[b]);
        }
        pair.silence(20);
        let five = events_of(&pair.b.sent, B_DTMF_PT);
        assert_event(&five, 5, 5);
        assert!(pair.b.sent.iter().all(|p| p.pt == 8 || p.pt == B_DTMF_PT));
        assert!(events_of(&pair.b.sent, DTMF_PT).is_empty(), "not A's PT");
        // Its packets sit in B's stream: sequence continuous, audio resumes
        // after the event on B's own slot clock.
        for w in pair.b.sent.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        }
        let last_ev = pair.b.sent.iter().rposition(|p| p.pt == B_DTMF_PT).unwrap();
        let next = &pair.b.sent[last_ev + 1];
        assert_eq!(next.pt, 8);
        assert!(next.ts > five[0].1 + 160 * 5);
        // A still reports it to its call.
        assert_eq!(pair.a.digits(), vec![('5', DigitSource::Rfc4733)]);
        assert!(pair.b.digits().is_empty());

        // Key 3 only in-band into A: re-sent as an RFC 4733 event too.
        let before = pair.b.sent.len();
        pair.audio_into_a(&tone(697.0, 1477.0, 6));
        pair.silence(25);
        assert_event(&events_of(&pair.b.sent[before..], B_DTMF_PT), 3, 5);
        assert_eq!(pair.a.digits()[1], ('3', DigitSource::Inband));
        let (a, b) = (pair.a.core.stats(), pair.b.core.stats());
        assert_eq!((a.relay_digits_out, b.relay_digits_in), (2, 2));
    }

    #[test]
    fn an_info_digit_keeps_its_duration_and_a_leg_without_telephone_event_gets_tones() {
        let mut pair = Pair::new(MediaParams {
            dtmf_pts: vec![],
            ..pcma_params()
        });
        pair.silence(5);
        pair.a.command(MediaCommand::InfoDigit(
            Digit::from_char('9').unwrap(),
            Some(200),
        ));
        pair.silence(30);
        // Decode what B sent and listen to it as a receiver would.
        let mut det = InbandDetector::new();
        let mut heard = Vec::new();
        let t0 = Instant::now();
        let mut tone_frames = 0;
        for (i, p) in pair.b.sent.iter().enumerate() {
            assert_eq!(p.pt, 8, "audio only");
            let pcm = decoded(Codec::Pcma, p);
            if pcm.iter().any(|&s| s.abs() > 1000) {
                tone_frames += 1;
            }
            heard.extend(det.push(t0 + ms(20 * i as u64), &pcm));
        }
        let keys: Vec<char> = heard.iter().map(|e| e.digit.as_char()).collect();
        assert_eq!(keys, vec!['9']);
        assert_eq!(tone_frames, 10, "200 ms of tone");
    }

    #[test]
    fn ringback_is_440_and_480_hz_two_seconds_on_four_off_until_stopped() {
        let mut sim = Sim::with_prompt(vec![1000; 1600]);
        sim.command(MediaCommand::Ringback);
        for _ in 0..320 {
            sim.tick_audio(&SILENCE);
        }
        let pcm: Vec<Vec<i16>> = sim.sent.iter().map(|p| decoded(Codec::Pcmu, p)).collect();
        for (i, f) in pcm[..100].iter().enumerate() {
            let (a, b) = (tone_share(f, 440.0), tone_share(f, 480.0));
            // Two equal tones share the energy, each about half.
            // (160 samples cannot quite separate tones 40 Hz apart.)
            assert!(a > 0.3 && b > 0.3, "frame {i}: {a} {b}");
            assert!(tone_share(f, 1000.0) < 0.02 && tone_share(f, 620.0) < 0.05);
        }
        assert!(sim.sent[0].marker && !sim.sent[1].marker);
        assert!(pcm[100..300].iter().flatten().all(|&s| s == 0), "off-phase");
        assert!(tone_share(&pcm[300], 440.0) > 0.3, "the next ring");
        // A Play ends it; when the prompt ends, silence (no ringback).
        sim.command(MediaCommand::Play(vec!["p".into()]));
        for _ in 0..20 {
            sim.tick_audio(&SILENCE);
        }
        assert_eq!(sim.events(), vec![MediaEvent::PlaybackDone]);
        assert!(sim.sent.last().unwrap().payload.iter().all(|&b| b == 0xFF));
        // Stop ends it too.
        sim.command(MediaCommand::Ringback);
        sim.tick_audio(&SILENCE);
        assert!(tone_share(&decoded(Codec::Pcmu, sim.sent.last().unwrap()), 440.0) > 0.3);
        sim.command(MediaCommand::Stop);
        sim.tick_audio(&SILENCE);
        assert!(sim.sent.last().unwrap().payload.iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn the_queue_is_bounded_and_a_stalled_leg_does_not_add_latency() {
        let mut pair = Pair::new(pcma_params());
        pair.silence(5);
        // B stalls for 200 ms while A keeps playing out frames.
        for frame in sine(1000.0, 10).chunks(160) {
            let a = pair.a.audio_packet(frame);
            pair.a.tick_with(&[a]);
        }
        // B catches up (its missed slots come back to back), then lock-step.
        for _ in 0..10 {
            let b = pair.b.audio_packet_as(Codec::Pcma, &SILENCE);
            pair.b.tick_with(&[b]);
        }
        assert!(
            pair.b.core.stats().relay_dropped >= 6,
            "bounded at 4 frames"
        );
        pair.silence(40);
        let (a, b) = (pair.a.core.stats(), pair.b.core.stats());
        let queued = a.relay_frames_out - b.relay_frames_in - b.relay_dropped;
        assert!(queued <= 1, "backlog {queued}: {a:?} {b:?}");
    }

    #[test]
    fn a_prompt_while_bridged_takes_the_slots_then_unbridge_returns_to_silence() {
        let mut pair = Pair::new(pcma_params());
        pair.silence(3);
        pair.b.command(MediaCommand::Play(vec!["p".into()]));
        pair.audio_into_a(&sine(1000.0, 30));
        let b_pcm: Vec<Vec<i16>> = pair
            .b
            .sent
            .iter()
            .map(|p| decoded(Codec::Pcma, p))
            .collect();
        // The prompt (a constant level, 10 frames) first, then A's tone.
        assert!(b_pcm[3..13].iter().all(|f| f.iter().all(|&s| s > 2000)));
        assert!(b_pcm[16..].iter().all(|f| tone_share(f, 1000.0) > 0.9));
        assert_eq!(pair.b.events(), vec![MediaEvent::PlaybackDone]);

        pair.b.command(MediaCommand::Unbridge);
        let out_before = pair.a.core.stats().relay_frames_out;
        let sent_before = pair.b.sent.len();
        pair.audio_into_a(&sine(1000.0, 20));
        assert!(pair.b.sent[sent_before..]
            .iter()
            .all(|p| p.payload == [Codec::Pcma.silence_byte(); 160]));
        // A still holds its end but its peer left: it queues nothing more.
        assert_eq!(pair.a.core.stats().relay_frames_out, out_before);
        pair.a.command(MediaCommand::Unbridge);
        // Prompts play as before.
        pair.b.command(MediaCommand::Play(vec!["p".into()]));
        pair.silence(12);
        assert_eq!(
            pair.b.events(),
            vec![MediaEvent::PlaybackDone, MediaEvent::PlaybackDone]
        );
    }

    #[test]
    fn a_lost_frame_is_covered_once_then_silence() {
        let mut pair = Pair::new(pcma_params());
        pair.audio_into_a(&sine(1000.0, 10));
        // Two packets of A's stream go missing.
        pair.a.peer_seq = pair.a.peer_seq.wrapping_add(2);
        pair.a.peer_ts = pair.a.peer_ts.wrapping_add(320);
        pair.audio_into_a(&sine(1000.0, 10));
        assert_eq!(pair.a.core.stats().frames_lost, 2);
        let pcm: Vec<Vec<i16>> = pair
            .b
            .sent
            .iter()
            .map(|p| decoded(Codec::Pcma, p))
            .collect();
        let quiet: Vec<usize> = (0..pcm.len())
            // A-law has no zero: silence decodes to ±8.
            .filter(|&i| i > 5 && pcm[i].iter().all(|&s| s.abs() <= 8))
            .collect();
        assert_eq!(quiet.len(), 1, "one repeated, one silent: {quiet:?}");
    }
}
