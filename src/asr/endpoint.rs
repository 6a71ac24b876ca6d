//! Sans-IO speech endpointer for 8 kHz telephone audio.
//!
//! Feed 20 ms frames with [`Endpointer::push`], call [`Endpointer::poll`] at
//! [`Endpointer::next_deadline`] so timers fire even when RTP stops. Time is
//! always passed in, never read, so tests run on simulated clocks.
//!
//! Per 160-sample frame (DC removed):
//! * energy in dB re 1 LSB², measured after a 300 Hz high-pass (DC, mains
//!   hum at 50/60 Hz and its harmonics are not speech; a hum at a
//!   speech-like level kept the noise floor up so that quieter words of a
//!   digit string were lost and the turn ended early), compared with an
//!   adaptive noise floor (falls fast, rises slowly) plus a margin, and an
//!   absolute minimum level;
//! * a DTMF check (Goertzel at the 8 DTMF frequencies): a dual tone holding
//!   most of the energy is a key press, not speech;
//! * a voicing check (normalised autocorrelation peak at a 60–400 Hz pitch lag,
//!   low-frequency dominated): white noise, hum, clicks and comfort noise are
//!   not periodic in that range, vowels are.
//!
//! A frame is active at floor + 10 dB, or floor + 6 dB when voiced. Speech
//! starts when, within 500 ms and without a 200 ms gap, at least 7 frames
//! (140 ms) are active and at least 3 of them voiced. A candidate voiced
//! enough but too short (a soft first word in noise) is remembered: a
//! candidate whose first active frame comes within 600 ms of its last one
//! begins where it began, and so on along a chain at most 2 s (and a quarter
//! of the maximum duration) long; confirmation still counts only its own
//! frames. In speech, the
//! end-of-speech timer restarts on voiced frames or runs of two active ones,
//! so a lone click in a pause does not prolong the turn.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Timers;

/// Samples per second this module expects.
pub const SAMPLE_RATE: u64 = 8000;
const FRAME: usize = 160;
const FRAME_DUR: Duration = Duration::from_millis(20);
/// Audio kept before the detected start, so soft onsets are not clipped.
const PRE_ROLL: u64 = 2400;
/// Silence kept after the last speech frame.
const TAIL: u64 = 1600;

/// Below this (RMS 100 ≈ -50 dBFS) nothing is speech: digital silence, hiss.
const MIN_DB: f32 = 40.0;
/// A frame must be this far above the noise floor to count...
const MARGIN_DB: f32 = 10.0;
/// ...or this far if it is also voiced: periodicity is evidence enough, and
/// it keeps syllable edges at 10-15 dB SNR.
const VOICED_MARGIN_DB: f32 = 6.0;
/// Start as if on a quiet line; the threshold then equals MIN_DB.
const INIT_FLOOR_DB: f32 = 30.0;
/// Per-frame fraction of the gap closed when the floor falls (fast).
const FLOOR_DOWN: f32 = 0.3;
/// Rise for inactive frames and long unvoiced runs: a noise step is
/// absorbed within about a second.
const FLOOR_UP: f32 = 0.1;
const FLOOR_UP_CAP_DB: f32 = 1.0;
/// Rise for the first frames of an active unvoiced run: fricatives and
/// bursts (< 200 ms) must not lift the floor over the rest of the word.
const FLOOR_UP_SHORT_RUN_CAP_DB: f32 = 0.1;
const SHORT_RUN_FRAMES: u32 = 10;
/// Rise for voiced frames: slow, so long speech does not lift the floor.
const FLOOR_UP_VOICED: f32 = 0.01;
const FLOOR_UP_VOICED_CAP_DB: f32 = 0.05;

/// Active frames needed to confirm speech: 140 ms, the ~150 ms minimum
/// rounded down so a short "two" at 25 dB SNR still counts.
const MIN_SPEECH_FRAMES: u32 = 7;
/// Voiced frames needed among them: noise bursts have none.
const MIN_VOICED_FRAMES: u32 = 3;
/// Inactive frames that end a candidate (200 ms: longer than a plosive
/// closure or a short gap between words, whose weak edges noise may hide).
const CAND_GAP_FRAMES: u32 = 10;
/// A candidate that has not confirmed within this many frames is dropped.
const CAND_MAX_FRAMES: u64 = 25;
/// A candidate voiced enough but too short, ended by a gap, is where the
/// next candidate begins if that one's first active frame comes within this
/// long after its last: in noise a soft first word ("sixty" at 15 dB over
/// the floor) is too short to confirm on its own, and its audio was lost
/// ("5 80" heard for "sixty five eighty"). 600 ms is longer than a pause
/// between words, and counts carry nothing over, so what is not speech
/// stays not speech.
const ONSET_BRIDGE: u64 = 4800;
/// A chain of such onsets reaches back at most this far (and a quarter of
/// `max_duration`, which counts from the chain's start).
const ONSET_LOOKBACK: u64 = 16_000;

/// Pitch lags 20..=133 samples = 400..60 Hz.
const LAG_MIN: usize = 20;
const LAG_MAX: usize = 133;
/// Normalised autocorrelation needed at the pitch peak.
const PERIODIC_MIN: f32 = 0.5;
/// First-difference energy over energy: ~2 for white noise, 4 at Nyquist,
/// well below 1 for voiced speech whose energy sits under 1 kHz.
const DIFF_RATIO_MAX: f32 = 1.0;
/// Share of frame energy in the best low + high DTMF frequency.
const DTMF_SHARE: f32 = 0.7;
/// Each of the two tones must carry at least this share (twist limit).
const DTMF_MIN_EACH: f32 = 0.1;
const DTMF_LOW: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const DTMF_HIGH: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// What [`Endpointer::push`] and [`Endpointer::poll`] report; after a
/// final event the turn is over and the endpointer reports nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Emitted once, when speech is confirmed (for barge-in).
    SpeechStarted,
    /// Final: the audio to recognise.
    Utterance(Utterance),
    /// Final: nobody spoke.
    NoInput,
    /// Only with [`Endpointer::speculate_after`]: the caller has paused
    /// long enough that the turn may be over. The audio is the utterance the
    /// turn ends with if they stay silent (same cut: pre-roll, speech, tail),
    /// so a decode of it now can answer early; the turn goes on.
    Pause(Utterance),
    /// The caller spoke again after a [`EndpointEvent::Pause`]: what that
    /// pause's audio gave is not the answer. Another pause may follow.
    Resumed,
}

/// The audio of one spoken turn, ready for a decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// 8 kHz PCM: up to 300 ms before the detected start (that of a soft
    /// first word that did not confirm speech on its own, if one came just
    /// before), up to 200 ms of silence after the last speech frame.
    pub pcm: Vec<i16>,
    /// The caller was still talking when `max_duration` ran out: the end of
    /// what they said may be missing.
    pub cut_by_max_duration: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct FrameClass {
    energy_db: f32,
    /// Above threshold and not a DTMF tone.
    active: bool,
    /// Active and pitch-periodic.
    voiced: bool,
    tonal: bool,
}

/// The line's noise level while nobody listens, from frame energy alone
/// (cheap: no voicing or DTMF checks): falls fast to quiet frames, rises
/// slowly. It seeds each new [`Endpointer`] via [`Endpointer::on_line`].
#[derive(Debug, Clone)]
pub struct LineFloor {
    floor_db: f32,
    prev_db: f32,
}

impl Default for LineFloor {
    fn default() -> Self {
        LineFloor {
            floor_db: INIT_FLOOR_DB,
            prev_db: 0.0,
        }
    }
}

/// Rise per frame of [`LineFloor`]: steady noise is learnt in about a second
/// of prompt; talk keeps falling back to its pauses.
const LINE_FLOOR_UP_CAP_DB: f32 = 0.5;

impl LineFloor {
    /// One decoded frame of the caller's audio (any length).
    pub fn observe(&mut self, frame: &[i16]) {
        if frame.is_empty() {
            return;
        }
        let n = frame.len() as f64;
        let (sum, sq) = frame.iter().fold((0.0f64, 0.0f64), |(s, q), &v| {
            let v = f64::from(v);
            (s + v, q + v * v)
        });
        let e = ((sq - sum * sum / n).max(0.0) / n) as f32;
        let db = 10.0 * (e + 1.0).log10();
        // Two quiet frames to fall, as in the endpointer (one lost packet
        // must not drop the floor).
        let down_target = db.max(self.prev_db);
        self.prev_db = db;
        let f = self.floor_db;
        if down_target < f {
            self.floor_db = (f + FLOOR_DOWN * (down_target - f)).max(INIT_FLOOR_DB);
        } else if db > f {
            self.floor_db = f + ((db - f) * FLOOR_UP).min(LINE_FLOOR_UP_CAP_DB);
        }
    }

    /// The noise floor learnt so far, in dB re 1 LSB² (the unit of
    /// [`Endpointer::on_line`]); starts at a quiet line's 30 dB.
    pub fn floor_db(&self) -> f32 {
        self.floor_db
    }
}

/// Cut-off of the analysis high-pass: the telephone band's lower edge
/// (G.712), under which a line carries mains hum and its odd harmonics
/// (150/250 Hz, 180 Hz: 24 and 18 dB down) but little of a voice. At
/// 100 Hz the harmonics held the floor up and a real voice's digit string
/// ended after three or four digits (`bench/README.md`, hum).
const HIGH_PASS_HZ: f32 = 300.0;

/// One second-order section (transposed direct form II).
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    z: [f32; 2],
}

impl Biquad {
    /// RBJ high-pass at `fc` with quality `q`, for [`SAMPLE_RATE`].
    fn high_pass(fc: f32, q: f32) -> Biquad {
        let w0 = std::f32::consts::TAU * fc / SAMPLE_RATE as f32;
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        let b0 = (1.0 + cos) / 2.0 / a0;
        Biquad {
            b: [b0, -2.0 * b0, b0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    fn run(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// 4th-order Butterworth high-pass at [`HIGH_PASS_HZ`] (two sections),
/// in front of the level measurement (not of the voicing check: hum
/// harmonics without their fundamental look voiced).
#[derive(Debug, Clone, Copy)]
struct HighPass([Biquad; 2]);

impl HighPass {
    fn new() -> HighPass {
        HighPass([
            Biquad::high_pass(HIGH_PASS_HZ, 0.541_196_1),
            Biquad::high_pass(HIGH_PASS_HZ, 1.306_563),
        ])
    }

    fn run(&mut self, x: f32) -> f32 {
        let y = self.0[0].run(x);
        self.0[1].run(y)
    }
}

/// Frame features plus the adaptive noise floor.
#[derive(Debug, Clone)]
struct Analyzer {
    hp: HighPass,
    prev: [i16; FRAME],
    floor_db: f32,
    prev_db: f32,
    /// Consecutive active unvoiced frames.
    unvoiced_run: u32,
}

impl Analyzer {
    fn new() -> Self {
        Analyzer {
            hp: HighPass::new(),
            prev: [0; FRAME],
            floor_db: INIT_FLOOR_DB,
            prev_db: 0.0,
            unvoiced_run: 0,
        }
    }

    fn threshold_db(&self) -> f32 {
        MIN_DB.max(self.floor_db + MARGIN_DB)
    }

    fn analyze(&mut self, cur: &[i16; FRAME]) -> FrameClass {
        let hp = &mut self.hp;
        // Variance of this frame alone, as it is and high-passed: the window
        // mean may differ from the frame's after a loud burst, which would
        // fake energy in silence.
        let mut raw = (0.0f64, 0.0f64);
        let mut filtered = (0.0f64, 0.0f64);
        for &v in cur.iter() {
            let x = f64::from(v);
            let y = f64::from(hp.run(f32::from(v)));
            raw = (raw.0 + x, raw.1 + x * x);
            filtered = (filtered.0 + y, filtered.1 + y * y);
        }
        let var = |(s, q): (f64, f64)| (q - s * s / FRAME as f64).max(0.0) as f32;
        let e_raw = var(raw);
        // The lower of the two: hum is gone from the filtered one, and the
        // filter's own ringing after an abrupt stop is not in the raw one.
        let e = var(filtered).min(e_raw);
        let w = window(&self.prev, cur);
        self.prev = *cur;
        let cur = &w[FRAME..];
        let energy_db = 10.0 * (e / FRAME as f32 + 1.0).log10();
        let floor = self.floor_db;
        let maybe = energy_db >= MIN_DB && energy_db >= floor + VOICED_MARGIN_DB;
        // The costly checks only run on loud frames; silence stays cheap.
        let tonal = maybe && is_dtmf(cur, e_raw);
        let voiced = maybe && !tonal && periodicity(&w) >= PERIODIC_MIN;
        let active = voiced || (!tonal && energy_db >= self.threshold_db());
        self.unvoiced_run = if active && !voiced {
            self.unvoiced_run.saturating_add(1)
        } else {
            0
        };
        self.update_floor(energy_db, voiced, tonal, self.unvoiced_run);
        FrameClass {
            energy_db,
            active,
            voiced,
            tonal,
        }
    }

    fn update_floor(&mut self, db: f32, voiced: bool, tonal: bool, unvoiced_run: u32) {
        // Falling needs two quiet frames, so one lost/zeroed packet on a
        // noisy line does not drop the floor and make the noise "speech".
        let down_target = db.max(self.prev_db);
        self.prev_db = db;
        if tonal {
            return; // key presses are short; they say nothing about noise
        }
        let f = self.floor_db;
        if down_target < f {
            self.floor_db = f + FLOOR_DOWN * (down_target - f);
        } else if db > f {
            let (rate, cap) = if voiced {
                (FLOOR_UP_VOICED, FLOOR_UP_VOICED_CAP_DB)
            } else if (1..=SHORT_RUN_FRAMES).contains(&unvoiced_run) {
                (FLOOR_UP, FLOOR_UP_SHORT_RUN_CAP_DB)
            } else {
                (FLOOR_UP, FLOOR_UP_CAP_DB)
            };
            self.floor_db = f + ((db - f) * rate).min(cap);
        }
    }
}

/// Previous and current frame as f32 with the 40 ms mean removed (DC offset
/// on a line is not sound).
fn window(prev: &[i16; FRAME], cur: &[i16; FRAME]) -> [f32; 2 * FRAME] {
    let sum: i64 = prev.iter().chain(cur.iter()).map(|&s| i64::from(s)).sum();
    let mean = sum as f32 / (2 * FRAME) as f32;
    let mut w = [0.0f32; 2 * FRAME];
    for (d, &s) in w.iter_mut().zip(prev.iter().chain(cur.iter())) {
        *d = f32::from(s) - mean;
    }
    w
}

fn frame_energy(x: &[f32]) -> f32 {
    x.iter().map(|v| v * v).sum()
}

/// Best normalised autocorrelation at a local peak within the pitch lags,
/// 0 when the frame is dominated by high frequencies (noise, fricatives).
/// `w` is previous + current frame; correlation runs over the current one.
fn periodicity(w: &[f32; 2 * FRAME]) -> f32 {
    let cur = &w[FRAME..];
    let e0 = f64::from(frame_energy(cur));
    if e0 <= 0.0 {
        return 0.0;
    }
    let diff: f32 = w[FRAME - 1..]
        .windows(2)
        .map(|p| (p[1] - p[0]).powi(2))
        .sum();
    if f64::from(diff) > f64::from(DIFF_RATIO_MAX) * e0 {
        return 0.0;
    }
    let mut prefix = [0.0f64; 2 * FRAME + 1];
    for (i, &v) in w.iter().enumerate() {
        prefix[i + 1] = prefix[i] + f64::from(v * v);
    }
    let mut r = [0.0f32; LAG_MAX - LAG_MIN + 3];
    for (slot, lag) in r.iter_mut().zip(LAG_MIN - 1..=LAG_MAX + 1) {
        let past = &w[FRAME - lag..2 * FRAME - lag];
        let num: f32 = cur.iter().zip(past).map(|(a, b)| a * b).sum();
        let ek = prefix[2 * FRAME - lag] - prefix[FRAME - lag];
        if ek > 0.0 {
            *slot = (f64::from(num) / (e0 * ek).sqrt()) as f32;
        }
    }
    // Only interior peaks: a low hum correlates at short lags without one.
    r.windows(3)
        .filter(|t| t[1] > t[0] && t[1] >= t[2])
        .map(|t| t[1])
        .fold(0.0, f32::max)
}

/// Power at `freq` relative to what a full-frame sine of the same energy gives.
fn goertzel_share(x: &[f32], energy: f32, freq: f32) -> f32 {
    let coeff = 2.0 * (2.0 * std::f32::consts::PI * freq / SAMPLE_RATE as f32).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power / (x.len() as f32 * energy)
}

/// True when one low and one high DTMF frequency hold most of the energy.
fn is_dtmf(x: &[f32], energy: f32) -> bool {
    if energy <= 0.0 {
        return false;
    }
    let best = |fs: &[f32; 4]| {
        fs.iter()
            .map(|&f| goertzel_share(x, energy, f))
            .fold(0.0, f32::max)
    };
    let (lo, hi) = (best(&DTMF_LOW), best(&DTMF_HIGH));
    lo + hi >= DTMF_SHARE && lo.min(hi) >= DTMF_MIN_EACH
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    start_idx: u64,
    start_time: Instant,
    active: u32,
    voiced: u32,
    span: u64,
    gap: u32,
    last_active_time: Instant,
    last_active_idx: u64,
    /// Its own first active frame (`start_*` may be an onset's).
    own_start_idx: u64,
    own_start_time: Instant,
}

/// A soft start that speech may yet follow ([`ONSET_BRIDGE`]): where its
/// chain began, where the latest voiced candidate in it began, and that
/// one's last active frame.
#[derive(Debug, Clone, Copy)]
struct Onset {
    start_idx: u64,
    start_time: Instant,
    latest_idx: u64,
    latest_time: Instant,
    last_active_idx: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Waiting(Option<Candidate>),
    Speech {
        start_idx: u64,
        start_time: Instant,
        last_speech_idx: u64,
        last_speech_time: Instant,
        prev_active: bool,
        /// A pause was reported for this `last_speech_idx`.
        paused: bool,
        /// The end-of-speech timer came due on audio that could not hold the
        /// answer: the turn waits [`super::spec::IncompleteWait::timeout`] instead, until
        /// the caller speaks again.
        incomplete: bool,
        /// This silence's audio is being decoded speculatively, or its decode
        /// heard less than the whole answer ([`Endpointer::pause_decoding`],
        /// [`Endpointer::pause_heard`]): the turn waits as when `incomplete`
        /// until released or the caller speaks again.
        held: bool,
    },
    Done,
}

/// Speech endpointer for one recognition turn.
#[derive(Debug, Clone)]
pub struct Endpointer {
    cfg: Timers,
    no_input_deadline: Option<Instant>,
    max_samples: u64,
    cand_max_frames: u64,
    /// [`ONSET_LOOKBACK`] within the `max_duration` memory bound.
    onset_lookback: u64,
    /// Only while waiting: the last dropped voiced candidate, if recent.
    onset: Option<Onset>,
    analyzer: Analyzer,
    acc: [i16; FRAME],
    acc_len: usize,
    /// Retained audio; `audio[0]` is stream sample `audio_start`.
    audio: VecDeque<i16>,
    audio_start: u64,
    received: u64,
    phase: Phase,
    events: VecDeque<EndpointEvent>,
    queued_at: Option<Instant>,
    /// Report [`EndpointEvent::Pause`] after this much trailing silence.
    speculate_after: Option<Duration>,
}

/// The span of speech in an utterance of `samples` samples cut before its
/// end (an [`EndpointEvent::Pause`]'s, or one ended by its timer): first
/// speech frame to last, pauses between included — the cut less its pre-roll
/// and silent tail.
pub fn speech_span(samples: usize) -> Duration {
    let speech = (samples as u64).saturating_sub(PRE_ROLL + TAIL);
    Duration::from_micros(speech * 1_000_000 / SAMPLE_RATE)
}

fn add(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d) // None = never (e.g. Duration::MAX as "no limit")
}

fn min_deadline(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Endpointer {
    /// A turn starting at `now` on a line of unknown noise (assumed quiet);
    /// the no-input timer runs from `now`.
    pub fn new(cfg: Timers, now: Instant) -> Self {
        let max_samples =
            u64::try_from(cfg.max_duration.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000)
                .unwrap_or(u64::MAX);
        Endpointer {
            cfg,
            no_input_deadline: add(now, cfg.no_input_timeout),
            max_samples,
            // Keeps candidate audio within the max_duration memory bound.
            cand_max_frames: CAND_MAX_FRAMES.min(max_samples / FRAME as u64),
            // Speech that starts at an onset has most of max_duration left,
            // and the audio kept while a candidate runs on an onset stays
            // within the memory bound.
            onset_lookback: ONSET_LOOKBACK
                .min(max_samples / 4)
                .min(max_samples.saturating_sub(CAND_MAX_FRAMES * FRAME as u64)),
            onset: None,
            analyzer: Analyzer::new(),
            acc: [0; FRAME],
            acc_len: 0,
            audio: VecDeque::new(),
            audio_start: 0,
            received: 0,
            phase: Phase::Waiting(None),
            events: VecDeque::new(),
            queued_at: None,
            speculate_after: None,
        }
    }

    /// Also report [`EndpointEvent::Pause`] once `after` of silence follows
    /// speech (and [`EndpointEvent::Resumed`] if speech comes back), for a
    /// speculative decode. The pause waits at least for the utterance's
    /// silent tail (200 ms) to be in, so its audio is the final cut.
    pub fn speculate_after(&mut self, after: Duration) {
        self.speculate_after = Some(after);
    }

    /// Like [`Endpointer::new`] on a line whose noise level is already known
    /// (from [`LineFloor`] or an earlier listening): steady line noise is not
    /// taken for speech from the first frame.
    pub fn on_line(cfg: Timers, now: Instant, floor_db: f32) -> Self {
        let mut ep = Self::new(cfg, now);
        if floor_db.is_finite() {
            ep.analyzer.floor_db = floor_db.max(INIT_FLOOR_DB);
        }
        ep
    }

    /// The current noise-floor estimate (dB re 1 LSB²).
    pub fn noise_floor_db(&self) -> f32 {
        self.analyzer.floor_db
    }

    /// Feed one 20 ms frame (160 samples; other lengths are re-framed)
    /// received at `now`.
    pub fn push(&mut self, now: Instant, frame: &[i16]) -> Option<EndpointEvent> {
        // A deadline that passed before this frame arrived wins over its audio.
        self.check_timers(now, true);
        let mut rest = frame;
        while !rest.is_empty() && !matches!(self.phase, Phase::Done) {
            let mut take = rest.len().min(FRAME - self.acc_len);
            if let Phase::Speech { start_idx, .. } = self.phase {
                let room = start_idx
                    .saturating_add(self.max_samples)
                    .saturating_sub(self.received);
                take = take.min(usize::try_from(room).unwrap_or(usize::MAX));
            }
            self.acc[self.acc_len..self.acc_len + take].copy_from_slice(&rest[..take]);
            self.audio.extend(&rest[..take]);
            self.acc_len += take;
            self.received += take as u64;
            rest = &rest[take..];
            if self.acc_len == FRAME {
                self.acc_len = 0;
                self.on_frame(now);
            }
            if let Phase::Speech { start_idx, .. } = self.phase {
                if self.received - start_idx >= self.max_samples {
                    let cut = self.still_talking(now);
                    self.finish_utterance(now, cut);
                }
            }
        }
        self.check_timers(now, false);
        self.events.pop_front()
    }

    /// Fires timers; call at `next_deadline` even if frames stop coming.
    pub fn poll(&mut self, now: Instant) -> Option<EndpointEvent> {
        self.check_timers(now, false);
        self.events.pop_front()
    }

    /// When `poll` must next be called; None when done. An event still
    /// queued is due at once. The end-of-speech deadline of a turn that
    /// cannot yet hold its answer may, when polled, only re-arm the longer
    /// incomplete wait (no event): the next deadline is then that wait's;
    /// a held turn's deadline is that wait's until it is released.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.events.is_empty() {
            return self.queued_at;
        }
        match self.phase {
            Phase::Waiting(cand) => self.waiting_deadline(cand),
            Phase::Speech {
                start_time,
                last_speech_time,
                last_speech_idx,
                paused,
                incomplete,
                held,
                ..
            } => min_deadline(
                min_deadline(
                    add(
                        last_speech_time,
                        self.end_of_speech_wait(incomplete || held),
                    ),
                    add(start_time, self.cfg.max_duration),
                ),
                self.pause_deadline(last_speech_time, last_speech_idx, paused),
            ),
            Phase::Done => None,
        }
    }

    /// Silence after speech that ends the turn: the incomplete wait once
    /// the audio was found unable to hold the answer, or while the turn is
    /// held (never shorter than the usual timer).
    fn end_of_speech_wait(&self, longer: bool) -> Duration {
        match self.cfg.incomplete {
            Some(w) if longer => w.timeout.max(self.cfg.end_of_speech_timeout),
            _ => self.cfg.end_of_speech_timeout,
        }
    }

    /// Whether a turn ending on its maximum now cuts the caller off: not
    /// when they have been silent through the usual end-of-speech timer
    /// and only the incomplete wait ran into the maximum.
    fn still_talking(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Speech {
                last_speech_time,
                incomplete,
                held,
                ..
            } if incomplete || held => {
                add(last_speech_time, self.cfg.end_of_speech_timeout).is_some_and(|t| t > now)
            }
            _ => true,
        }
    }

    /// The end-of-speech timer came due: whether the turn should wait
    /// longer because its audio cannot yet hold the whole answer.
    fn wait_for_the_rest(&self) -> bool {
        self.cfg.incomplete.is_some_and(|w| {
            w.timeout > self.cfg.end_of_speech_timeout && !w.answer.can_hold(&self.cut())
        })
    }

    /// The pause whose cut was `cut_len` samples long is being decoded
    /// speculatively: the turn does not end on `end_of_speech_timeout`
    /// before [`Self::pause_heard`] (at most the incomplete wait), so what
    /// the decode hears decides how long the turn waits however busy the
    /// decoder is. A stale report (the caller has spoken since: the cut is
    /// longer now) is ignored; without an incomplete wait it changes nothing.
    pub fn pause_decoding(&mut self, cut_len: usize) {
        self.hold(cut_len, true);
    }

    /// The speculative decode of that pause answered. `short`: it heard
    /// fewer units than the answer (a caller pausing mid-phrase), and the
    /// turn, while the caller stays silent, waits the incomplete wait for
    /// the rest: audio alone misses this when a slow caller's first words
    /// already span the answer's least length. Otherwise the turn is
    /// released to its usual timer (ending at once if that has run out).
    /// Only the count heard decides, never what: the wait shows the caller
    /// nothing the answer's length does not.
    pub fn pause_heard(&mut self, cut_len: usize, short: bool) {
        self.hold(cut_len, short);
    }

    fn hold(&mut self, cut_len: usize, on: bool) {
        if self.cut_len() != Some(cut_len) {
            return;
        }
        if let Phase::Speech { held, .. } = &mut self.phase {
            *held = on;
        }
    }

    /// When a pause is due to be reported (None: not speculating, already
    /// reported for this silence, or its tail not in yet: then the pause's
    /// audio is the cut the turn would end with, and frames that stop
    /// coming lead to no pause).
    fn pause_deadline(
        &self,
        last_speech_time: Instant,
        last_speech_idx: u64,
        paused: bool,
    ) -> Option<Instant> {
        match self.speculate_after {
            Some(after) if !paused && self.received >= last_speech_idx + TAIL => {
                add(last_speech_time, after)
            }
            _ => None,
        }
    }

    /// When the caller last spoke in this turn (None before speech is
    /// confirmed and once the turn is over).
    pub fn last_speech_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Speech {
                last_speech_time, ..
            } => Some(last_speech_time),
            _ => None,
        }
    }

    /// Voice activity has been confirmed (or the turn is over).
    pub fn speech_started(&self) -> bool {
        !matches!(self.phase, Phase::Waiting(_))
    }

    /// True once the final event has been returned.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.events.is_empty()
    }

    #[cfg(test)]
    fn buffered_samples(&self) -> usize {
        self.audio.len()
    }

    #[cfg(test)]
    fn floor_db(&self) -> f32 {
        self.noise_floor_db()
    }

    /// NoInput waits for a voiced candidate already under way, so a caller
    /// who starts just before the timeout is not cut off; bounded by the gap.
    fn waiting_deadline(&self, cand: Option<Candidate>) -> Option<Instant> {
        match cand {
            Some(c) if c.voiced > 0 => {
                let gap_end = add(c.last_active_time, FRAME_DUR * (CAND_GAP_FRAMES + 1));
                match (self.no_input_deadline, gap_end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                }
            }
            _ => self.no_input_deadline,
        }
    }

    fn check_timers(&mut self, now: Instant, strict: bool) {
        let due = |d: Option<Instant>| d.is_some_and(|d| if strict { d < now } else { d <= now });
        match self.phase {
            Phase::Waiting(cand) => {
                if due(self.waiting_deadline(cand)) {
                    self.finish(now, EndpointEvent::NoInput);
                }
            }
            Phase::Speech {
                start_time,
                last_speech_time,
                last_speech_idx,
                paused,
                mut incomplete,
                held,
                ..
            } => {
                if due(self.pause_deadline(last_speech_time, last_speech_idx, paused)) {
                    if let Phase::Speech { paused, .. } = &mut self.phase {
                        *paused = true;
                    }
                    let pcm = self.cut();
                    self.queue(
                        now,
                        EndpointEvent::Pause(Utterance {
                            pcm,
                            cut_by_max_duration: false,
                        }),
                    );
                }
                if !incomplete
                    && due(add(last_speech_time, self.cfg.end_of_speech_timeout))
                    && self.wait_for_the_rest()
                {
                    incomplete = true;
                    if let Phase::Speech { incomplete: i, .. } = &mut self.phase {
                        *i = true;
                    }
                }
                let eos = add(
                    last_speech_time,
                    self.end_of_speech_wait(incomplete || held),
                );
                let max = add(start_time, self.cfg.max_duration);
                let max_first = match (max, eos) {
                    (Some(m), Some(e)) => m < e,
                    (m, _) => m.is_some(),
                };
                if max_first && due(max) {
                    let cut = self.still_talking(now);
                    self.finish_utterance(now, cut);
                } else if due(eos) {
                    self.finish_utterance(now, false);
                }
            }
            Phase::Done => {}
        }
    }

    fn on_frame(&mut self, now: Instant) {
        let fc = self.analyzer.analyze(&self.acc);
        let frame_end = self.received;
        match self.phase {
            Phase::Waiting(cand) => self.on_waiting_frame(now, fc, frame_end, cand),
            Phase::Speech {
                ref mut last_speech_idx,
                ref mut last_speech_time,
                ref mut prev_active,
                ref mut paused,
                ref mut incomplete,
                ref mut held,
                ..
            } => {
                // A lone unvoiced blip (click, pop) in a pause does not
                // restart the end-of-speech timer.
                let resumed = fc.active && (fc.voiced || *prev_active);
                if resumed {
                    *last_speech_idx = frame_end;
                    *last_speech_time = now;
                    // Judged again at the next silence.
                    *incomplete = false;
                    *held = false;
                }
                *prev_active = fc.active;
                if resumed && std::mem::take(paused) {
                    self.queue(now, EndpointEvent::Resumed);
                }
            }
            Phase::Done => {}
        }
    }

    fn on_waiting_frame(
        &mut self,
        now: Instant,
        fc: FrameClass,
        frame_end: u64,
        mut cand: Option<Candidate>,
    ) {
        if fc.tonal {
            // Partial-tone frames around a key press look like voiced
            // audio; forget them with the tone.
            cand = None;
            self.onset = None;
        } else if fc.active {
            let onset = self.onset;
            let c = cand.get_or_insert_with(|| {
                let idx = frame_end - FRAME as u64;
                let time = now.checked_sub(FRAME_DUR).unwrap_or(now);
                // Continues a recent soft start: begins where it began.
                let (start_idx, start_time) =
                    onset.map_or((idx, time), |o| (o.start_idx, o.start_time));
                Candidate {
                    start_idx,
                    start_time,
                    active: 0,
                    voiced: 0,
                    span: 0,
                    gap: 0,
                    last_active_time: now,
                    last_active_idx: frame_end,
                    own_start_idx: idx,
                    own_start_time: time,
                }
            });
            c.active += 1;
            c.voiced += u32::from(fc.voiced);
            c.gap = 0;
            c.last_active_time = now;
            c.last_active_idx = frame_end;
        } else if let Some(c) = &mut cand {
            c.gap += 1;
            if c.gap > CAND_GAP_FRAMES {
                self.remember_onset(c);
                cand = None;
            }
        }
        if let Some(c) = &mut cand {
            c.span += 1;
            if c.active >= MIN_SPEECH_FRAMES && c.voiced >= MIN_VOICED_FRAMES {
                self.phase = Phase::Speech {
                    start_idx: c.start_idx,
                    start_time: c.start_time,
                    last_speech_idx: frame_end,
                    last_speech_time: now,
                    prev_active: fc.active,
                    paused: false,
                    incomplete: false,
                    held: false,
                };
                self.onset = None;
                self.queue(now, EndpointEvent::SpeechStarted);
                return;
            }
            if c.span >= self.cand_max_frames {
                // Too long to be a word that was too short: noise, or the
                // floor catching up with a noisy line.
                cand = None;
            }
        }
        // A soft start too long ago to belong to what comes next is
        // forgotten; a chain too long starts again at its latest link.
        if let Some(o) = &mut self.onset {
            if frame_end.saturating_sub(o.start_idx) > self.onset_lookback {
                o.start_idx = o.latest_idx;
                o.start_time = o.latest_time;
            }
            if frame_end.saturating_sub(o.last_active_idx) > ONSET_BRIDGE
                || frame_end.saturating_sub(o.start_idx) > self.onset_lookback
            {
                self.onset = None;
            }
        }
        if cand.is_none() {
            // Only the pre-roll is needed while nothing is going on (and
            // the audio of a soft start that speech may yet follow).
            let keep_from = frame_end
                .min(self.onset.map_or(u64::MAX, |o| o.start_idx))
                .saturating_sub(PRE_ROLL);
            if keep_from > self.audio_start {
                self.audio.drain(..(keep_from - self.audio_start) as usize);
                self.audio_start = keep_from;
            }
        }
        self.phase = Phase::Waiting(cand);
    }

    /// A candidate ended by a gap before it confirmed: if it was voiced as
    /// speech is, only too short, remember where it (or the chain it
    /// continued) began, for speech that may follow at once. One that was
    /// not (a click, a breath) leaves an earlier onset as it was.
    fn remember_onset(&mut self, c: &Candidate) {
        if c.voiced >= MIN_VOICED_FRAMES {
            self.onset = Some(Onset {
                start_idx: c.start_idx,
                start_time: c.start_time,
                latest_idx: c.own_start_idx,
                latest_time: c.own_start_time,
                last_active_idx: c.last_active_idx,
            });
        }
    }

    fn finish_utterance(&mut self, now: Instant, cut_by_max_duration: bool) {
        if let Phase::Speech { .. } = self.phase {
            let pcm = self.cut();
            self.finish(
                now,
                EndpointEvent::Utterance(Utterance {
                    pcm,
                    cut_by_max_duration,
                }),
            );
        }
    }

    /// Where [`Self::cut`] lies now: the silence owed for a missing
    /// pre-roll, and the stream samples `begin..end` (None outside speech).
    fn cut_bounds(&self) -> Option<(u64, u64, u64)> {
        let Phase::Speech {
            start_idx,
            last_speech_idx,
            ..
        } = self.phase
        else {
            return None;
        };
        let begin = start_idx.saturating_sub(PRE_ROLL).max(self.audio_start);
        let end = (last_speech_idx + TAIL).min(self.received).max(begin);
        // Speech from the very first sample (barge-in at once, a clip cut
        // at its onset) gets its missing pre-roll as silence: Whisper
        // drops the first word of audio that starts at it (measured
        // "72478" for "5 7 2 4 7 8"; right with the lead-in).
        let missing = PRE_ROLL.saturating_sub(start_idx.saturating_sub(begin));
        Some((missing, begin, end))
    }

    /// The length of [`Self::cut`] now (None outside speech).
    fn cut_len(&self) -> Option<usize> {
        let (missing, begin, end) = self.cut_bounds()?;
        usize::try_from(missing + (end - begin)).ok()
    }

    /// The utterance as it stands: pre-roll, speech, up to [`TAIL`] after
    /// the last speech frame (empty outside speech).
    fn cut(&self) -> Vec<i16> {
        let Some((missing, begin, end)) = self.cut_bounds() else {
            return Vec::new();
        };
        std::iter::repeat_n(0, missing as usize)
            .chain(
                self.audio
                    .range((begin - self.audio_start) as usize..(end - self.audio_start) as usize)
                    .copied(),
            )
            .collect()
    }

    fn finish(&mut self, now: Instant, ev: EndpointEvent) {
        self.phase = Phase::Done;
        self.audio = VecDeque::new();
        self.queue(now, ev);
    }

    fn queue(&mut self, now: Instant, ev: EndpointEvent) {
        self.events.push_back(ev);
        self.queued_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::answer::AnswerLength;
    use crate::asr::IncompleteWait;

    // ---- signal generators (deterministic) ----

    const SR: f32 = SAMPLE_RATE as f32;
    const TAU: f32 = 2.0 * std::f32::consts::PI;

    fn n_of(ms: u64) -> usize {
        (ms * SAMPLE_RATE / 1000) as usize
    }

    fn to_i16(x: f32) -> i16 {
        x.round().clamp(-32768.0, 32767.0) as i16
    }

    /// RMS for a level in dB re 1 LSB² (as the module measures).
    fn rms_of_db(db: f32) -> f32 {
        10f32.powf(db / 20.0)
    }

    struct Lcg(u64);
    impl Lcg {
        /// Uniform in [-1, 1).
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    fn silence(ms: u64) -> Vec<i16> {
        vec![0; n_of(ms)]
    }

    fn white(ms: u64, rms: f32, seed: u64) -> Vec<i16> {
        let mut g = Lcg(seed);
        // Uniform [-1,1) has RMS 1/sqrt(3).
        let a = rms * 3f32.sqrt();
        (0..n_of(ms)).map(|_| to_i16(g.next() * a)).collect()
    }

    /// Brown (integrated white) noise: strong low frequencies, smooth, so
    /// its autocorrelation can pass for voicing.
    fn brown(ms: u64, rms: f32, seed: u64) -> Vec<i16> {
        let mut g = Lcg(seed);
        let mut y = 0.0f32;
        let raw: Vec<f32> = (0..n_of(ms))
            .map(|_| {
                y = 0.98 * y + g.next();
                y
            })
            .collect();
        let r = (raw.iter().map(|v| v * v).sum::<f32>() / raw.len() as f32).sqrt();
        raw.iter().map(|v| to_i16(v * rms / r)).collect()
    }

    /// Steady brown line noise: a fresh endpointer may take it for speech;
    /// one seeded with the line's floor (learnt during a prompt) does not,
    /// and still hears speech over it.
    #[test]
    fn a_known_line_floor_keeps_line_noise_out_and_speech_in() {
        let noise = brown(6000, 1000.0, 11);
        let mut line = LineFloor::default();
        for f in noise[..n_of(2000)].chunks(160) {
            line.observe(f);
        }
        let floor = line.floor_db();
        assert!(floor > 50.0, "floor not learnt: {floor}");
        let t0 = Instant::now();
        // Without the line's floor the same noise starts "speech".
        let mut fresh = Endpointer::new(std_cfg(), t0);
        let fooled = noise.chunks(160).enumerate().any(|(i, f)| {
            matches!(
                fresh.push(t0 + Duration::from_millis(20 * i as u64), f),
                Some(EndpointEvent::SpeechStarted)
            )
        });
        assert!(
            fooled,
            "this noise no longer fools a fresh endpointer; the test proves nothing"
        );
        let mut ep = Endpointer::on_line(std_cfg(), t0, floor);
        let mut started = false;
        for (i, f) in noise[n_of(2000)..].chunks(160).enumerate() {
            let at = t0 + Duration::from_millis(20 * i as u64);
            started |= matches!(ep.push(at, f), Some(EndpointEvent::SpeechStarted));
        }
        assert!(!started, "line noise taken for speech");
        // Speech 15 dB above the noise, on the same line.
        let speech = speech_like(1500, floor + 15.0, 3);
        let mixed: Vec<i16> = speech
            .iter()
            .zip(brown(1500, 1000.0, 12))
            .map(|(a, b)| a.saturating_add(b))
            .collect();
        let mut ep = Endpointer::on_line(std_cfg(), t0, floor);
        let heard = mixed.chunks(160).enumerate().any(|(i, f)| {
            matches!(
                ep.push(t0 + Duration::from_millis(20 * i as u64), f),
                Some(EndpointEvent::SpeechStarted)
            )
        });
        assert!(heard, "speech over line noise missed");
    }

    fn hum(ms: u64, amp: f32) -> Vec<i16> {
        (0..n_of(ms))
            .map(|i| {
                let t = i as f32 / SR;
                to_i16(
                    amp * ((TAU * 50.0 * t).sin()
                        + 0.3 * (TAU * 150.0 * t).sin()
                        + 0.1 * (TAU * 100.0 * t).sin()),
                )
            })
            .collect()
    }

    fn tones(ms: u64, f1: f32, f2: f32, amp: f32) -> Vec<i16> {
        (0..n_of(ms))
            .map(|i| {
                let t = i as f32 / SR;
                to_i16(amp * ((TAU * f1 * t).sin() + (TAU * f2 * t).sin()))
            })
            .collect()
    }

    fn click(ms: u64, at_ms: u64, amp: i16) -> Vec<i16> {
        let mut v = silence(ms);
        let i = n_of(at_ms);
        v[i] = amp;
        v[i + 1] = -amp / 2;
        v
    }

    /// Voiced-speech stand-in: gliding 120-200 Hz harmonic series, 1/k
    /// amplitudes up to 3.4 kHz, 4 Hz syllable envelope; `peak_db` is the
    /// level of the loudest frames.
    fn speech_like(ms: u64, peak_db: f32, seed: u64) -> Vec<i16> {
        let n = n_of(ms);
        let mut g = Lcg(seed);
        let phase0 = g.next() * 3.0;
        let mut phase = 0.0f32;
        let norm: f32 = (1..=17).map(|k| 1.0 / (k * k) as f32).sum::<f32>().sqrt();
        let amp = rms_of_db(peak_db) * 2f32.sqrt() / norm;
        (0..n)
            .map(|i| {
                let t = i as f32 / SR;
                let f0 = 160.0 + 40.0 * (TAU * 1.3 * t + phase0).sin();
                phase += TAU * f0 / SR;
                let mut s = 0.0;
                let mut k = 1;
                while k as f32 * f0 < 3400.0 {
                    s += (k as f32 * phase).sin() / k as f32;
                    k += 1;
                }
                // Syllables: starts from zero, 250 ms period.
                let env = 0.5 * (1.0 - (TAU * 4.0 * t).cos());
                to_i16(amp * env * s)
            })
            .collect()
    }

    fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
        let n = a.len().max(b.len());
        (0..n)
            .map(|i| {
                let x = i32::from(*a.get(i).unwrap_or(&0)) + i32::from(*b.get(i).unwrap_or(&0));
                x.clamp(-32768, 32767) as i16
            })
            .collect()
    }

    fn cat(parts: &[&[i16]]) -> Vec<i16> {
        parts.concat()
    }

    fn prompts_dir() -> std::path::PathBuf {
        if let Ok(d) = std::env::var("VOXGATE_PROMPTS") {
            return d.into();
        }
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts")
    }

    /// Reads a prompt as 8 kHz mono (downmix, naive decimation if needed).
    fn read_wav(path: &std::path::Path) -> Vec<i16> {
        let mut r = hound::WavReader::open(path).unwrap();
        let spec = r.spec();
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let shift = spec.bits_per_sample.saturating_sub(16);
        let raw: Vec<i32> = r.samples::<i32>().map(|s| s.unwrap() >> shift).collect();
        let ch = spec.channels as usize;
        let mono: Vec<i32> = raw
            .chunks(ch)
            .map(|c| c.iter().sum::<i32>() / ch as i32)
            .collect();
        let step = (spec.sample_rate / SAMPLE_RATE as u32).max(1) as usize;
        mono.chunks(step)
            .map(|c| (c.iter().sum::<i32>() / c.len() as i32) as i16)
            .collect()
    }

    fn all_prompts() -> Vec<(String, Vec<i16>)> {
        fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "wav")
                    // The code call's pause (0.4 s of silence) is no speech.
                    && !p.ends_with("voice/pause.wav")
                {
                    out.push(p);
                }
            }
        }
        let mut paths = Vec::new();
        walk(&prompts_dir(), &mut paths);
        paths.sort();
        paths
            .into_iter()
            .map(|p| (p.display().to_string(), read_wav(&p)))
            .collect()
    }

    /// Plain harmonic burst with flat envelope (for exact-length speech).
    fn voiced_burst(ms: u64, db: f32) -> Vec<i16> {
        let norm: f32 = (1..=17).map(|k| 1.0 / (k * k) as f32).sum::<f32>().sqrt();
        let amp = rms_of_db(db) * 2f32.sqrt() / norm;
        (0..n_of(ms))
            .map(|i| {
                let t = i as f32 / SR;
                let s: f32 = (1..=17)
                    .map(|k| (TAU * 140.0 * k as f32 * t).sin() / k as f32)
                    .sum();
                to_i16(amp * s)
            })
            .collect()
    }

    // ---- driver ----

    fn cfg(no_input_ms: u64, eos_ms: u64, max_ms: u64) -> Timers {
        Timers {
            no_input_timeout: Duration::from_millis(no_input_ms),
            end_of_speech_timeout: Duration::from_millis(eos_ms),
            max_duration: Duration::from_millis(max_ms),
            incomplete: None,
        }
    }

    fn std_cfg() -> Timers {
        cfg(5000, 800, 15000)
    }

    fn t_of(samples: usize) -> Duration {
        Duration::from_micros(samples as u64 * 125)
    }

    #[derive(Debug, Default)]
    struct Outcome {
        started_at: Option<Duration>,
        final_at: Option<Duration>,
        utterance: Option<Utterance>,
        no_input: bool,
    }

    impl Outcome {
        fn pcm(&self) -> &[i16] {
            &self.utterance.as_ref().expect("no utterance").pcm
        }
    }

    /// Feeds `sig` in chunks of `chunks` (cycled) at real-time arrival
    /// times; when `poll` is set, polls at `next_deadline` like an event loop
    /// would. After the signal, polls until done. Checks the invariants.
    fn drive_with(cfg: Timers, sig: &[i16], chunks: &[usize], poll: bool) -> Outcome {
        let base = Instant::now();
        let mut ep = Endpointer::new(cfg, base);
        let bound = PRE_ROLL.saturating_add(ep.max_samples.max(FRAME as u64));
        let mut out = Outcome::default();
        let record = |ev: EndpointEvent, at: Instant, out: &mut Outcome| {
            let t = at - base;
            assert!(out.final_at.is_none(), "event {ev:?} after final");
            match ev {
                EndpointEvent::SpeechStarted => {
                    assert!(out.started_at.is_none(), "SpeechStarted twice");
                    out.started_at = Some(t);
                }
                EndpointEvent::Utterance(u) => {
                    assert!(out.started_at.is_some(), "utterance without start");
                    out.final_at = Some(t);
                    out.utterance = Some(u);
                }
                EndpointEvent::NoInput => {
                    out.final_at = Some(t);
                    out.no_input = true;
                }
                EndpointEvent::Pause(_) | EndpointEvent::Resumed => {
                    panic!("{ev:?} without speculate_after")
                }
            }
        };
        let mut pos = 0;
        let mut ci = 0;
        while pos < sig.len() {
            let end = (pos + chunks[ci % chunks.len()]).min(sig.len());
            ci += 1;
            let now = base + t_of(end);
            // Event-loop timeout: poll deadlines that come before the frame.
            while let Some(d) = ep.next_deadline().filter(|&d| poll && d < now) {
                match ep.poll(d) {
                    Some(ev) => record(ev, d, &mut out),
                    None => break,
                }
            }
            if let Some(ev) = ep.push(now, &sig[pos..end]) {
                record(ev, now, &mut out);
            }
            assert!(ep.buffered_samples() as u64 <= bound, "memory bound");
            pos = end;
        }
        for _ in 0..10 {
            let Some(d) = ep.next_deadline() else { break };
            if let Some(ev) = ep.poll(d) {
                record(ev, d, &mut out);
            }
        }
        assert!(ep.is_done(), "not done after draining deadlines");
        assert!(ep.next_deadline().is_none());
        assert!(out.final_at.is_some());
        let later = base + t_of(sig.len()) + Duration::from_secs(100);
        assert_eq!(ep.push(later, &speech_like(500, 70.0, 1)), None);
        assert_eq!(ep.poll(later), None);
        out
    }

    fn drive(cfg: Timers, sig: &[i16]) -> Outcome {
        drive_with(cfg, sig, &[FRAME], true)
    }

    /// Where `pcm` sits in `sig` (the utterance must be an exact slice).
    fn find_slice(sig: &[i16], pcm: &[i16]) -> usize {
        assert!(!pcm.is_empty());
        (0..=sig.len() - pcm.len())
            .find(|&i| sig[i..i + pcm.len()] == *pcm)
            .expect("utterance is not a slice of the input")
    }

    fn ms(d: Duration) -> i64 {
        d.as_millis() as i64
    }

    fn samples_ms(n: usize) -> i64 {
        (n as u64 * 1000 / SAMPLE_RATE) as i64
    }

    /// First and last 5 ms window with RMS >= 100 (the "real sound").
    fn sound_span(sig: &[i16]) -> (usize, usize) {
        sound_span_above(sig, 100.0)
    }

    /// Same, for sound that stands `min_rms` out (10 dB over a noise).
    fn sound_span_above(sig: &[i16], min_rms: f64) -> (usize, usize) {
        let loud: Vec<usize> = sig
            .chunks(40)
            .enumerate()
            .filter(|(_, c)| {
                c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64
                    >= min_rms * min_rms
            })
            .map(|(i, _)| i * 40)
            .collect();
        (loud[0], loud[loud.len() - 1] + 40)
    }

    // ---- frame features ----

    fn frames_of(sig: &[i16]) -> Vec<FrameClass> {
        let mut a = Analyzer::new();
        sig.chunks_exact(FRAME)
            .map(|f| a.analyze(f.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn energy_of_digital_silence_is_zero_db() {
        let fc = frames_of(&silence(100));
        assert!(fc.iter().all(|f| f.energy_db == 0.0 && !f.active));
    }

    #[test]
    fn voicing_cue_separates_speech_from_noise_and_hum() {
        let frame_w = |sig: &[i16], at: usize| {
            let p: [i16; FRAME] = sig[at - FRAME..at].try_into().unwrap();
            let c: [i16; FRAME] = sig[at..at + FRAME].try_into().unwrap();
            periodicity(&window(&p, &c))
        };
        let v = voiced_burst(200, 65.0);
        assert!(frame_w(&v, 800) > 0.9);
        let n = white(200, 1000.0, 7);
        assert!(frame_w(&n, 800) < PERIODIC_MIN);
        let h = hum(200, 3000.0);
        assert!(frame_w(&h, 800) < PERIODIC_MIN);
        let nyq: Vec<i16> = (0..400)
            .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        assert_eq!(frame_w(&nyq, 160), 0.0);
    }

    /// Justifies the voicing cue: loud white noise passes the energy test
    /// for long enough to confirm speech on energy alone, yet never voices.
    #[test]
    fn white_noise_would_start_speech_on_energy_alone() {
        let fc = frames_of(&cat(&[&silence(500), &white(2000, 1000.0, 3)]));
        let active = fc.iter().filter(|f| f.active).count() as u32;
        assert!(active >= 2 * MIN_SPEECH_FRAMES, "active {active}");
        assert!(fc.iter().all(|f| !f.voiced));
    }

    #[test]
    fn all_dtmf_pairs_are_tonal_and_speech_is_not() {
        for &lo in &DTMF_LOW {
            for &hi in &DTMF_HIGH {
                let fc = frames_of(&tones(100, lo, hi, 5000.0));
                assert!(fc[1..].iter().all(|f| f.tonal && !f.active), "{lo}+{hi}");
                // Twisted (high group 6 dB louder) and over noise still count.
                let twisted: Vec<i16> = tones(100, lo, lo, 2000.0)
                    .iter()
                    .zip(tones(100, hi, hi, 4000.0))
                    .map(|(a, b)| a / 2 + b / 2)
                    .collect();
                let noisy = mix(&twisted, &white(100, 150.0, 9));
                assert!(
                    frames_of(&noisy)[1..].iter().all(|f| f.tonal),
                    "{lo}+{hi} noisy"
                );
            }
        }
        let tonal = |sig: &[i16]| frames_of(sig).iter().filter(|f| f.tonal).count();
        assert_eq!(tonal(&speech_like(5000, 70.0, 4)), 0);
        for (name, pcm) in all_prompts() {
            assert_eq!(tonal(&pcm), 0, "{name}");
        }
    }

    #[test]
    fn floor_tracks_noise_up_slowly_and_down_fast() {
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        let mut t = base;
        let mut feed = |ep: &mut Endpointer, sig: &[i16]| {
            for f in sig.chunks(FRAME) {
                t += FRAME_DUR;
                ep.push(t, f);
            }
        };
        feed(&mut ep, &white(300, 1000.0, 1)); // 60 dB
        let after_300ms = ep.floor_db();
        assert!(after_300ms < 50.0, "rose too fast: {after_300ms}");
        feed(&mut ep, &white(2700, 1000.0, 2));
        assert!((ep.floor_db() - 60.0).abs() < 3.0, "{}", ep.floor_db());
        feed(&mut ep, &silence(100));
        assert!(ep.floor_db() < 30.0, "fell too slowly: {}", ep.floor_db());
    }

    #[test]
    fn single_zeroed_frame_does_not_drop_floor() {
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        let noise = white(3000, 1000.0, 5);
        let mut t = base;
        for f in noise.chunks(FRAME) {
            t += FRAME_DUR;
            ep.push(t, f);
        }
        let before = ep.floor_db();
        t += FRAME_DUR;
        ep.push(t, &[0; FRAME]);
        assert!((ep.floor_db() - before).abs() < 0.5);
    }

    // ---- no input ----

    #[test]
    fn no_input_fires_exactly_at_deadline_via_poll() {
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        let d = base + Duration::from_secs(5);
        assert_eq!(ep.next_deadline(), Some(d));
        assert_eq!(ep.poll(base), None);
        assert_eq!(ep.poll(d - Duration::from_nanos(1)), None);
        assert!(!ep.is_done());
        assert_eq!(ep.poll(d), Some(EndpointEvent::NoInput));
        assert!(ep.is_done());
        assert_eq!(ep.next_deadline(), None);
        assert_eq!(ep.poll(d + Duration::from_secs(1)), None);
        assert_eq!(ep.push(d, &speech_like(1000, 70.0, 1)), None);
    }

    #[test]
    fn no_input_on_silent_frames_without_polling() {
        let out = drive_with(std_cfg(), &silence(6000), &[FRAME], false);
        assert!(out.no_input && out.started_at.is_none());
        assert_eq!(out.final_at, Some(Duration::from_secs(5)));
    }

    #[test]
    fn steady_noises_alone_are_not_speech() {
        let cases: Vec<(&str, Vec<i16>)> = vec![
            ("low white noise", white(6000, 60.0, 11)),
            ("quiet hiss just under the minimum", white(6000, 90.0, 12)),
            ("loud white noise from the start", white(6000, 1500.0, 13)),
            (
                "loud noise switching on",
                cat(&[&silence(1000), &white(5000, 1500.0, 14)]),
            ),
            ("50 Hz hum", hum(6000, 4000.0)),
            (
                "hum over noise",
                mix(&hum(6000, 3000.0), &white(6000, 300.0, 15)),
            ),
            ("full-scale noise", white(6000, 18000.0, 16)),
        ];
        for (name, sig) in cases {
            let out = drive(std_cfg(), &sig);
            assert!(out.no_input && out.started_at.is_none(), "{name}: {out:?}");
            assert_eq!(out.final_at, Some(Duration::from_secs(5)), "{name}");
        }
    }

    #[test]
    fn dtmf_key_presses_are_not_speech() {
        let keys = [
            (697., 1209.),
            (770., 1336.),
            (852., 1477.),
            (941., 1633.),
            (697., 1336.),
        ];
        let mut sig = silence(1013); // not frame-aligned: partial-tone frames
        for round in 0..3 {
            for &(lo, hi) in &keys {
                sig.extend(tones(100 + 20 * round, lo, hi, 6000.0));
                sig.extend(silence(70 + 30 * round));
            }
        }
        sig.extend(tones(1000, 941.0, 1477.0, 6000.0)); // long press
        sig.extend(silence(5000));
        let out = drive(std_cfg(), &sig);
        assert!(out.no_input && out.started_at.is_none(), "{out:?}");
    }

    #[test]
    fn clicks_and_pops_are_not_speech() {
        let mut sig = silence(6000);
        for k in 0..20 {
            let at = n_of(300 + 150 * k);
            sig[at] = if k % 2 == 0 { i16::MAX } else { i16::MIN };
            sig[at + 1] = -(sig[at] / 2);
        }
        // Pop: 15 ms decaying low-frequency burst.
        for i in 0..n_of(15) {
            let t = i as f32 / SR;
            sig[n_of(4000) + i] = to_i16(20000.0 * (-t * 300.0).exp() * (TAU * 300.0 * t).sin());
        }
        let out = drive(std_cfg(), &sig);
        assert!(out.no_input && out.started_at.is_none(), "{out:?}");
        let single = drive(std_cfg(), &click(6000, 2000, 30000));
        assert!(single.no_input && single.started_at.is_none());
    }

    #[test]
    fn short_speech_is_ignored_and_no_input_timer_keeps_running() {
        let sig = cat(&[&silence(1000), &voiced_burst(120, 70.0), &silence(5000)]);
        let out = drive(std_cfg(), &sig);
        assert!(out.no_input && out.started_at.is_none(), "{out:?}");
        assert_eq!(out.final_at, Some(Duration::from_secs(5)));
        // Two short bursts far apart do not add up either.
        let sig = cat(&[
            &silence(1000),
            &voiced_burst(120, 70.0),
            &silence(300),
            &voiced_burst(120, 70.0),
            &silence(5000),
        ]);
        assert!(drive(std_cfg(), &sig).no_input);
    }

    #[test]
    fn a_short_word_is_speech() {
        let sig = cat(&[&silence(1000), &voiced_burst(200, 70.0), &silence(2000)]);
        let out = drive(std_cfg(), &sig);
        assert!(out.utterance.is_some(), "{out:?}");
        assert_eq!(ms(out.started_at.unwrap()), 1140);
    }

    /// Where the utterance of `out` begins in `sig`, in ms (pre-roll off).
    fn begins_at(sig: &[i16], out: &Outcome) -> i64 {
        samples_ms(find_slice(sig, out.pcm()) + PRE_ROLL as usize)
    }

    /// A soft word (100 ms, voiced) at 1 s, `between`, then `speech_ms` of
    /// speech and 2 s of silence.
    fn soft_word_then_speech(between: &[&[i16]], speech_ms: u64) -> Vec<i16> {
        let mut sig = cat(&[&silence(1000), &voiced_burst(100, 70.0)]);
        for part in between {
            sig.extend_from_slice(part);
        }
        sig.extend(speech_like(speech_ms, 70.0, 3));
        sig.extend(silence(2000));
        sig
    }

    /// The utterance of `sig` begins within 100 ms of the first sound after
    /// `from_ms`: nothing before it was kept.
    fn begins_at_sound_after(sig: &[i16], from_ms: u64) {
        let out = drive(std_cfg(), sig);
        let (on, _) = sound_span(&sig[n_of(from_ms)..]);
        let b = begins_at(sig, &out);
        assert!(
            (b - samples_ms(on + n_of(from_ms))).abs() <= 100,
            "begins at {b}"
        );
    }

    /// `n` voiced blips of 100 ms, 400 ms apart, after 500 ms of silence.
    fn blips(n: usize) -> Vec<i16> {
        let blip = cat(&[&voiced_burst(100, 70.0), &silence(300)]);
        let mut sig = silence(500);
        for _ in 0..n {
            sig.extend_from_slice(&blip);
        }
        sig
    }

    #[test]
    fn a_soft_first_word_just_before_speech_is_kept() {
        // Too short to confirm on its own (as "sixty" in noise was), then a
        // word that confirms: the utterance starts at the soft one.
        for gap_ms in [300, 500] {
            let sig = soft_word_then_speech(&[&silence(gap_ms)], 1000);
            let out = drive(std_cfg(), &sig);
            assert_eq!(begins_at(&sig, &out), 1000, "gap {gap_ms}: {out:?}");
            // Speech is still confirmed by the second word alone.
            assert!(ms(out.started_at.unwrap()) > 1100 + gap_ms as i64);
        }
        // A sound a second before is not part of what the caller says.
        begins_at_sound_after(&soft_word_then_speech(&[&silence(1000)], 1000), 2000);
        // Nor is an unvoiced one (a click, a breath of noise).
        let sig = cat(&[
            &silence(1000),
            &white(100, 3000.0, 4),
            &silence(300),
            &speech_like(1000, 70.0, 3),
            &silence(2000),
        ]);
        begins_at_sound_after(&sig, 1400);
        // A click between the soft word and the speech does not lose it...
        let sig =
            soft_word_then_speech(&[&silence(250), &white(60, 3000.0, 5), &silence(250)], 1000);
        assert_eq!(begins_at(&sig, &drive(std_cfg(), &sig)), 1000);
        // ...a key press does.
        let sig = soft_word_then_speech(
            &[
                &silence(100),
                &tones(100, 770.0, 1336.0, 6000.0),
                &silence(300),
            ],
            1000,
        );
        begins_at_sound_after(&sig, 1600);
    }

    #[test]
    fn a_soft_start_leaves_the_turn_most_of_its_max_duration() {
        // max_duration 2 s, counted from the soft word (the onset may reach
        // back at most 500 ms): the turn ends at its own silence.
        let sig = soft_word_then_speech(&[&silence(300)], 600);
        let out = drive(cfg(5000, 800, 2000), &sig);
        let u = out.utterance.as_ref().expect("an utterance");
        assert!(!u.cut_by_max_duration, "{:?}", out.final_at);
        assert_eq!(begins_at(&sig, &out), 1000);
    }

    #[test]
    fn a_long_chain_of_soft_sounds_starts_again_at_its_latest() {
        // Voiced blips every 400 ms for 3.2 s, then speech: the utterance
        // keeps the last of them, not all 3.2 s (at most 2 s back).
        let mut sig = blips(8);
        let speech_at = samples_ms(sig.len());
        sig.extend(speech_like(1000, 70.0, 3));
        sig.extend(silence(2000));
        let b = begins_at(&sig, &drive(std_cfg(), &sig));
        assert!(b <= speech_at - 400, "begins at {b}, speech at {speech_at}");
        assert!(
            b >= speech_at - 2400,
            "begins at {b}, speech at {speech_at}"
        );
    }

    #[test]
    fn soft_sounds_in_a_row_never_add_up_to_speech() {
        // Voiced blips every 400 ms for 4 s, each a candidate of its own
        // (300 ms apart): each continues the one before, none confirms, and
        // the audio kept stays bounded (`drive` checks).
        let mut sig = blips(10);
        sig.extend(silence(5000));
        let out = drive(cfg(5000, 800, 1500), &sig);
        assert!(out.no_input, "started at {:?}", out.started_at);
    }

    #[test]
    fn speech_just_before_no_input_deadline_is_not_cut_off() {
        let sig = cat(&[&silence(4940), &voiced_burst(600, 70.0), &silence(2000)]);
        let out = drive(std_cfg(), &sig);
        assert!(!out.no_input, "{out:?}");
        assert!(out.started_at.unwrap() > Duration::from_secs(5));
        // Energy-only noise at the deadline is not waited for.
        let sig = cat(&[&silence(4900), &white(2000, 1500.0, 2)]);
        let out = drive(std_cfg(), &sig);
        assert_eq!(out.final_at, Some(Duration::from_secs(5)));
    }

    #[test]
    fn no_input_deferral_is_bounded_when_frames_stop() {
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        let sig = cat(&[&silence(4900), &voiced_burst(80, 70.0)]);
        let mut t = base;
        for f in sig.chunks(FRAME) {
            t += FRAME_DUR;
            assert_eq!(ep.push(t, f), None);
        }
        let d = ep.next_deadline().unwrap();
        assert_eq!(d, t + FRAME_DUR * (CAND_GAP_FRAMES + 1));
        assert!(d > base + Duration::from_secs(5));
        assert_eq!(ep.poll(base + Duration::from_secs(5)), None);
        assert_eq!(ep.poll(d), Some(EndpointEvent::NoInput));
    }

    #[test]
    fn unlimited_timeouts_do_not_overflow() {
        let c = Timers {
            no_input_timeout: Duration::MAX,
            end_of_speech_timeout: Duration::from_millis(500),
            max_duration: Duration::MAX,
            incomplete: None,
        };
        let base = Instant::now();
        let mut ep = Endpointer::new(c, base);
        assert_eq!(ep.next_deadline(), None);
        assert_eq!(ep.poll(base + Duration::from_secs(3600)), None);
        let sig = cat(&[&voiced_burst(500, 70.0), &silence(1000)]);
        let out = drive(c, &sig);
        assert!(out.utterance.is_some());
    }

    // ---- utterances ----

    #[test]
    fn speech_then_silence_gives_one_utterance() {
        let sig = cat(&[&silence(1000), &speech_like(1500, 70.0, 1), &silence(3000)]);
        let out = drive(std_cfg(), &sig);
        let (on, off) = sound_span(&sig);
        let started = ms(out.started_at.unwrap());
        assert!(
            (140..=300).contains(&(started - samples_ms(on))),
            "started {started}"
        );
        let b = find_slice(&sig, out.pcm());
        let detected = samples_ms(b + PRE_ROLL as usize);
        assert!(
            (detected - samples_ms(on)).abs() <= 100,
            "detected {detected} on {on}"
        );
        let end = samples_ms(b + out.pcm().len());
        assert!(
            (end - (samples_ms(off) + 200)).abs() <= 100,
            "pcm end {end}"
        );
        let fin = ms(out.final_at.unwrap());
        assert!((fin - (samples_ms(off) + 800)).abs() <= 100, "final {fin}");
        assert!(!out.utterance.as_ref().unwrap().cut_by_max_duration);
    }

    #[test]
    fn pauses_shorter_than_timeout_do_not_split() {
        let word = speech_like(600, 70.0, 2);
        let sig = cat(&[
            &silence(1000),
            &word,
            &silence(600),
            &word,
            &silence(700),
            &word,
            &silence(3000),
        ]);
        let out = drive(std_cfg(), &sig);
        let pcm_ms = samples_ms(out.pcm().len());
        // 300 pre-roll + 600+600+600+700+600 + ~200 tail.
        assert!(pcm_ms >= 3500, "{pcm_ms}");
        let (_, off) = sound_span(&sig);
        assert!((ms(out.final_at.unwrap()) - (samples_ms(off) + 800)).abs() <= 100);
    }

    #[test]
    fn pause_longer_than_timeout_ends_the_utterance() {
        let word = speech_like(1000, 70.0, 3);
        let sig = cat(&[&silence(1000), &word, &silence(1200), &word, &silence(2000)]);
        let out = drive(std_cfg(), &sig);
        let (_, off) = sound_span(&sig[..n_of(2000)]);
        assert!((ms(out.final_at.unwrap()) - (samples_ms(off) + 800)).abs() <= 100);
        assert!(samples_ms(out.pcm().len()) <= 300 + 1000 + 200 + 20);
    }

    #[test]
    fn click_or_dtmf_in_a_pause_does_not_extend_the_utterance() {
        let speech = speech_like(1000, 70.0, 4);
        let mut tail = silence(3000);
        tail[n_of(400)] = 30000;
        let sig = cat(&[&silence(1000), &speech, &tail]);
        let dtmf_tail = cat(&[
            &silence(300),
            &tones(100, 697.0, 1209.0, 6000.0),
            &silence(80),
            &tones(100, 770.0, 1336.0, 6000.0),
            &silence(80),
            &tones(100, 852.0, 1477.0, 6000.0),
            &silence(2000),
        ]);
        let sig2 = cat(&[&silence(1000), &speech, &dtmf_tail]);
        for s in [sig, sig2] {
            let out = drive(std_cfg(), &s);
            let (_, off) = sound_span(&s[..n_of(2000)]);
            assert!((ms(out.final_at.unwrap()) - (samples_ms(off) + 800)).abs() <= 100);
        }
    }

    #[test]
    fn max_duration_cuts_long_speech() {
        let sig = cat(&[
            &silence(1000),
            &speech_like(10_000, 70.0, 5),
            &silence(1000),
        ]);
        let out = drive(cfg(5000, 800, 3000), &sig);
        let u = out.utterance.as_ref().unwrap();
        assert!(u.cut_by_max_duration);
        assert_eq!(u.pcm.len() as u64, PRE_ROLL + 3 * SAMPLE_RATE);
        let b = find_slice(&sig, &u.pcm);
        let start = t_of(b + PRE_ROLL as usize);
        assert_eq!(out.final_at, Some(start + Duration::from_secs(3)));
    }

    #[test]
    fn memory_stays_bounded_over_a_minute_of_speech() {
        // drive() asserts buffered <= pre-roll + max at every push.
        let sig = speech_like(60_000, 70.0, 6);
        let out = drive(cfg(5000, 800, 5000), &sig);
        assert!(out.utterance.unwrap().cut_by_max_duration);
        // Also with a max shorter than the candidate window.
        let out = drive(
            cfg(5000, 800, 200),
            &cat(&[&silence(1000), &sig[..n_of(3000)]]),
        );
        let u = out.utterance.unwrap();
        assert!(u.cut_by_max_duration);
        assert_eq!(u.pcm.len() as u64, PRE_ROLL + 1600);
    }

    /// Every event with its time, speculating after `after`, polling at
    /// each deadline like an event loop.
    fn events_speculating(sig: &[i16], after: Duration) -> Vec<(Duration, EndpointEvent)> {
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        ep.speculate_after(after);
        let mut out = Vec::new();
        let mut t = base;
        let frames = sig
            .chunks(FRAME)
            .chain(std::iter::repeat(&[0i16; FRAME][..]));
        for f in frames.take(sig.len() / FRAME + 500) {
            while let Some(d) = ep.next_deadline().filter(|&d| d < t + FRAME_DUR) {
                match ep.poll(d) {
                    Some(ev) => out.push((d - base, ev)),
                    None => break,
                }
            }
            t += FRAME_DUR;
            if let Some(ev) = ep.push(t, f) {
                out.push((t - base, ev));
            }
            while let Some(ev) = ep.poll(t) {
                out.push((t - base, ev));
            }
            if ep.is_done() {
                break;
            }
        }
        out
    }

    #[test]
    fn a_pause_reports_the_cut_the_turn_ends_with() {
        let sig = cat(&[&silence(500), &voiced_burst(1000, 70.0), &silence(3000)]);
        let evs = events_speculating(&sig, Duration::from_millis(200));
        let kinds: Vec<&str> = evs
            .iter()
            .map(|(_, e)| match e {
                EndpointEvent::SpeechStarted => "start",
                EndpointEvent::Pause(_) => "pause",
                EndpointEvent::Resumed => "resumed",
                EndpointEvent::Utterance(_) => "utterance",
                EndpointEvent::NoInput => "none",
            })
            .collect();
        assert_eq!(kinds, ["start", "pause", "utterance"]);
        let (EndpointEvent::Pause(p), EndpointEvent::Utterance(u)) = (&evs[1].1, &evs[2].1) else {
            panic!("{evs:?}")
        };
        assert_eq!(p.pcm, u.pcm, "the pause's audio is the final cut");
        // The pause comes 200 ms after the last speech frame, the end 800 ms.
        assert_eq!(ms(evs[1].0), 1500 + 200);
        assert_eq!(ms(evs[2].0), 1500 + 800);
    }

    #[test]
    fn speech_after_a_pause_is_reported_and_a_later_pause_follows() {
        let sig = cat(&[
            &silence(500),
            &voiced_burst(1000, 70.0),
            &silence(400),
            &voiced_burst(600, 70.0),
            &silence(3000),
        ]);
        let evs = events_speculating(&sig, Duration::from_millis(200));
        let kinds: Vec<&str> = evs
            .iter()
            .map(|(_, e)| match e {
                EndpointEvent::SpeechStarted => "start",
                EndpointEvent::Pause(_) => "pause",
                EndpointEvent::Resumed => "resumed",
                EndpointEvent::Utterance(_) => "utterance",
                EndpointEvent::NoInput => "none",
            })
            .collect();
        assert_eq!(kinds, ["start", "pause", "resumed", "pause", "utterance"]);
        let pcm = |i: usize| match &evs[i].1 {
            EndpointEvent::Pause(u) | EndpointEvent::Utterance(u) => u.pcm.clone(),
            e => panic!("{e:?}"),
        };
        assert!(
            pcm(1).len() < pcm(4).len(),
            "the first pause held part of it"
        );
        assert_eq!(pcm(3), pcm(4));
    }

    #[test]
    fn a_pause_shorter_than_the_tail_waits_for_the_tail() {
        let sig = cat(&[&silence(500), &voiced_burst(1000, 70.0), &silence(3000)]);
        let evs = events_speculating(&sig, Duration::from_millis(60));
        let (at, EndpointEvent::Pause(p)) = &evs[1] else {
            panic!("{evs:?}")
        };
        assert_eq!(ms(*at), 1500 + 200);
        let EndpointEvent::Utterance(u) = &evs[2].1 else {
            panic!("{evs:?}")
        };
        assert_eq!(p.pcm, u.pcm);
    }

    #[test]
    fn speech_at_the_very_start_gets_its_pre_roll_as_silence() {
        let sig = cat(&[&voiced_burst(800, 70.0), &silence(2000)]);
        let out = drive(std_cfg(), &sig);
        let (lead, speech) = out.pcm().split_at(PRE_ROLL as usize);
        assert!(lead.iter().all(|&s| s == 0));
        assert_eq!(find_slice(&sig, speech), 0);
        assert_eq!(speech.len(), n_of(1000));
    }

    #[test]
    fn speech_over_moderate_noise_is_detected_and_ends() {
        for (noise_rms, speech_db) in [(300.0, 72.0), (300.0, 65.0), (1000.0, 75.0)] {
            let speech = speech_like(1500, speech_db, 7);
            let noise = white(8000, noise_rms, 8);
            let clean = cat(&[&silence(2500), &speech, &silence(4000)]);
            let sig = mix(&clean, &noise);
            let out = drive(std_cfg(), &sig);
            assert!(out.utterance.is_some(), "{noise_rms} {speech_db}: {out:?}");
            let (on, off) = sound_span(&clean);
            let b = find_slice(&sig, out.pcm());
            let detected = samples_ms(b + PRE_ROLL as usize);
            assert!(
                (detected - samples_ms(on)).abs() <= 100,
                "{noise_rms}: start {detected}"
            );
            let fin = ms(out.final_at.unwrap());
            assert!(
                (fin - (samples_ms(off) + 800)).abs() <= 150,
                "{noise_rms}: final {fin}"
            );
        }
    }

    #[test]
    fn quiet_speech_right_after_loud_noise_is_detected() {
        let sig = cat(&[
            &white(2000, 1500.0, 9),
            &silence(200),
            &speech_like(1000, 58.0, 10),
            &silence(2000),
        ]);
        let out = drive(std_cfg(), &sig);
        let b = find_slice(&sig, out.pcm());
        let (on, _) = sound_span(&sig[n_of(2100)..]);
        let detected = samples_ms(b + PRE_ROLL as usize);
        assert!(
            (detected - samples_ms(on + n_of(2100))).abs() <= 100,
            "{detected}"
        );
    }

    #[test]
    fn frames_stopping_mid_speech_end_at_the_eos_deadline() {
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        let sig = cat(&[&silence(500), &voiced_burst(1000, 70.0)]);
        let mut t = base;
        let mut started = false;
        for f in sig.chunks(FRAME) {
            t += FRAME_DUR;
            started |= ep.push(t, f) == Some(EndpointEvent::SpeechStarted);
        }
        assert!(started);
        let d = ep.next_deadline().unwrap();
        assert_eq!(d, t + Duration::from_millis(800));
        assert_eq!(ep.poll(d - Duration::from_nanos(1)), None);
        match ep.poll(d) {
            Some(EndpointEvent::Utterance(u)) => {
                assert!(!u.cut_by_max_duration);
                assert_eq!(u.pcm.len(), n_of(300 + 1000));
            }
            other => panic!("{other:?}"),
        }
        assert!(ep.is_done());
        assert_eq!(ep.next_deadline(), None);
    }

    /// `digits` voiced bursts of 350 ms, 300 ms apart, after 500 ms of
    /// silence: a caller reading digits.
    fn digits_said(digits: usize) -> Vec<i16> {
        let mut sig = silence(500);
        for i in 0..digits {
            if i > 0 {
                sig.extend(silence(300));
            }
            sig.extend(voiced_burst(350, 65.0));
        }
        sig
    }

    fn waiting_for(digits: usize, incomplete_ms: u64) -> Timers {
        Timers {
            incomplete: Some(IncompleteWait {
                answer: AnswerLength::digits(digits),
                timeout: Duration::from_millis(incomplete_ms),
            }),
            ..std_cfg()
        }
    }

    #[test]
    fn a_turn_that_cannot_hold_the_answer_waits_longer_for_the_rest() {
        // Two of six digits, a 1.2 s pause, the other four: one utterance
        // with the incomplete wait (1.5 s), two turns without it.
        let sig = cat(&[
            &digits_said(2),
            &silence(1200),
            &digits_said(4)[n_of(500)..],
        ]);
        let heard = cat(&[&sig, &silence(3000)]);
        let out = drive(waiting_for(6, 1500), &heard);
        let (first, last) = sound_span(&sig);
        let at = find_slice(&heard, out.pcm());
        assert!(
            at <= first && at + out.pcm().len() >= last,
            "the whole answer"
        );
        // The rest could hold the answer: the usual 800 ms ended the turn.
        assert_eq!(
            ms(out.final_at.unwrap()) / 20,
            (samples_ms(last) + 800) / 20
        );
        let cut = drive(std_cfg(), &heard);
        assert!(cut.pcm().len() < n_of(2000), "ended after two digits");
    }

    #[test]
    fn a_caller_who_stops_short_is_decided_after_the_incomplete_wait() {
        // Silence (ms, in 20 ms frames) from the last digit's sound to the
        // end of the turn, for `said` digits of a six-digit answer.
        let decided_after = |said: usize, wait_ms: u64| {
            let sig = digits_said(said);
            let (_, last) = sound_span(&sig);
            let out = drive(waiting_for(6, wait_ms), &cat(&[&sig, &silence(3000)]));
            ms(out.final_at.unwrap()) / 20 - samples_ms(last) / 20
        };
        assert_eq!(decided_after(2, 1500), 1500 / 20);
        // The whole answer said: no extra wait.
        assert_eq!(decided_after(6, 1500), 800 / 20);
        // A wait no longer than end_of_speech_timeout changes nothing.
        assert_eq!(decided_after(2, 700), 800 / 20);
    }

    #[test]
    fn a_wait_that_runs_into_max_duration_did_not_cut_the_caller_off() {
        let cfg = Timers {
            max_duration: Duration::from_millis(2000),
            ..waiting_for(6, 1500)
        };
        let out = drive(cfg, &cat(&[&digits_said(2), &silence(3000)]));
        let u = out.utterance.as_ref().unwrap();
        assert!(!u.cut_by_max_duration, "silent since the last digit");
        // Ended by the maximum, after the usual timer and before the wait.
        let (_, last) = sound_span(&digits_said(2));
        let at = ms(out.final_at.unwrap());
        assert!(at <= ms(out.started_at.unwrap()) + 2000, "{at}");
        assert!(
            at > samples_ms(last) + 800 && at < samples_ms(last) + 1500,
            "{at}"
        );
    }

    #[test]
    fn the_incomplete_wait_is_a_deadline_a_silent_line_reaches() {
        // Frames stop after two digits: next_deadline moves from the 800 ms
        // timer to the 1.5 s one, and polling there ends the turn.
        let base = Instant::now();
        let mut ep = Endpointer::new(waiting_for(4, 1500), base);
        let sig = cat(&[&digits_said(2), &silence(200)]);
        let mut t = base;
        for f in sig.chunks(FRAME) {
            t += FRAME_DUR;
            ep.push(t, f);
        }
        let last = ep.last_speech_at().unwrap();
        let d = ep.next_deadline().unwrap();
        assert_eq!(d, last + Duration::from_millis(800));
        assert_eq!(ep.poll(d), None);
        let d = ep.next_deadline().unwrap();
        assert_eq!(d, last + Duration::from_millis(1500));
        assert!(matches!(ep.poll(d), Some(EndpointEvent::Utterance(_))));
        assert!(ep.is_done());
    }

    #[test]
    fn a_pause_being_decoded_holds_the_turn_and_a_short_answer_keeps_it() {
        // Six digits said (audio that can hold a six-digit answer), then
        // silence; the pause is being decoded speculatively.
        let base = Instant::now();
        let start = || {
            let mut ep = Endpointer::new(waiting_for(6, 1500), base);
            ep.speculate_after(Duration::from_millis(200));
            let mut t = base;
            let mut pause = None;
            for f in cat(&[&digits_said(6), &silence(300)]).chunks(FRAME) {
                t += FRAME_DUR;
                if let Some(EndpointEvent::Pause(u)) = ep.push(t, f) {
                    pause = Some(u.pcm.len());
                }
            }
            let len = pause.expect("a pause reported");
            // A stale report (another cut) changes nothing.
            ep.pause_decoding(len + 1);
            (ep, t, len)
        };
        let (mut ep, _, _) = start();
        let last = ep.last_speech_at().unwrap();
        let eos = last + Duration::from_millis(800);
        let wait = last + Duration::from_millis(1500);
        assert_eq!(ep.next_deadline(), Some(eos));
        assert!(matches!(ep.poll(eos), Some(EndpointEvent::Utterance(_))));

        // Held past the usual timer while decoding; heard short: held on.
        let (mut ep, _, len) = start();
        ep.pause_decoding(len);
        assert_eq!(ep.next_deadline(), Some(wait));
        assert_eq!(ep.poll(eos), None, "held");
        ep.pause_heard(len, true);
        assert_eq!(ep.next_deadline(), Some(wait));
        assert!(matches!(ep.poll(wait), Some(EndpointEvent::Utterance(_))));

        // Heard the whole length after the usual timer: ends at once.
        let (mut ep, _, len) = start();
        ep.pause_decoding(len);
        let later = eos + Duration::from_millis(300);
        assert_eq!(ep.poll(later), None);
        ep.pause_heard(len, false);
        assert_eq!(ep.next_deadline(), Some(eos));
        assert!(matches!(ep.poll(later), Some(EndpointEvent::Utterance(_))));

        // The caller speaks again: judged afresh at the next silence.
        let (mut ep, mut t, len) = start();
        ep.pause_decoding(len);
        ep.pause_heard(len, true);
        for f in cat(&[&voiced_burst(350, 65.0), &silence(300)]).chunks(FRAME) {
            t += FRAME_DUR;
            ep.push(t, f);
        }
        let last = ep.last_speech_at().unwrap();
        let d = ep.next_deadline().unwrap();
        assert_eq!(d, last + Duration::from_millis(800));
        assert!(matches!(ep.poll(d), Some(EndpointEvent::Utterance(_))));
    }

    #[test]
    fn late_frame_after_a_missed_deadline_does_not_revive_speech() {
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        let sig = cat(&[&silence(500), &voiced_burst(1000, 70.0)]);
        let mut t = base;
        for f in sig.chunks(FRAME) {
            t += FRAME_DUR;
            ep.push(t, f);
        }
        // Nobody polled; speech arrives after the deadline.
        t += Duration::from_secs(2);
        match ep.push(t, &voiced_burst(20, 70.0)) {
            Some(EndpointEvent::Utterance(u)) => assert_eq!(u.pcm.len(), n_of(1300)),
            other => panic!("{other:?}"),
        }
        assert!(ep.is_done());
    }

    #[test]
    fn eos_between_frames_fires_on_the_next_push() {
        let sig = cat(&[&silence(500), &voiced_burst(1000, 70.0), &silence(2000)]);
        let out = drive_with(cfg(5000, 810, 15000), &sig, &[FRAME], false);
        assert_eq!(ms(out.final_at.unwrap()), 1500 + 820);
        let out = drive_with(cfg(5000, 810, 15000), &sig, &[FRAME], true);
        assert_eq!(ms(out.final_at.unwrap()), 1500 + 810);
    }

    #[test]
    fn next_deadline_tracks_each_stage() {
        let c = cfg(5000, 800, 4000);
        let base = Instant::now();
        let mut ep = Endpointer::new(c, base);
        let sig = cat(&[&silence(1000), &voiced_burst(1000, 70.0), &silence(1000)]);
        let mut t = base;
        let mut start: Option<Instant> = None;
        let mut last_speech = base;
        for (i, f) in sig.chunks(FRAME).enumerate() {
            t += FRAME_DUR;
            let ev = ep.push(t, f);
            let in_speech = (50..100).contains(&i);
            if in_speech {
                last_speech = t;
            }
            match ev {
                Some(EndpointEvent::SpeechStarted) => start = Some(t),
                Some(EndpointEvent::Utterance(_)) => {
                    assert_eq!(t, last_speech + Duration::from_millis(800));
                    assert_eq!(ep.next_deadline(), None);
                    return;
                }
                other => assert_eq!(other, None),
            }
            let expect = match start {
                None => base + Duration::from_secs(5),
                Some(_) => {
                    let speech_start = base + Duration::from_millis(1000);
                    (last_speech + Duration::from_millis(800))
                        .min(speech_start + Duration::from_secs(4))
                }
            };
            assert_eq!(ep.next_deadline(), Some(expect), "frame {i}");
        }
        panic!("no utterance");
    }

    #[test]
    fn queued_final_is_due_immediately() {
        // max shorter than confirmation: SpeechStarted and the cut come in
        // the same push; the cut waits in the queue.
        let base = Instant::now();
        let mut ep = Endpointer::new(cfg(5000, 800, 140), base);
        let sig = voiced_burst(400, 70.0);
        let mut t = base;
        for f in sig.chunks(FRAME) {
            t += FRAME_DUR;
            if ep.push(t, f) == Some(EndpointEvent::SpeechStarted) {
                assert_eq!(ep.next_deadline(), Some(t));
                assert!(!ep.is_done());
                match ep.poll(t) {
                    Some(EndpointEvent::Utterance(u)) => assert!(u.cut_by_max_duration),
                    other => panic!("{other:?}"),
                }
                assert!(ep.is_done());
                return;
            }
        }
        panic!("no speech");
    }

    #[test]
    fn odd_frame_lengths_give_the_same_utterance() {
        let sig = cat(&[&silence(1000), &speech_like(1500, 70.0, 11), &silence(2000)]);
        let regular = drive(std_cfg(), &sig);
        for chunks in [
            &[1usize, 7, 97, 160, 333, 1000, 13][..],
            &[80],
            &[240],
            &[3],
        ] {
            let odd = drive_with(std_cfg(), &sig, chunks, true);
            assert_eq!(odd.pcm(), regular.pcm(), "{chunks:?}");
            let d = ms(odd.final_at.unwrap()) - ms(regular.final_at.unwrap());
            assert!(d.abs() <= 130, "{chunks:?}: {d}");
        }
        // Empty pushes are harmless.
        let base = Instant::now();
        let mut ep = Endpointer::new(std_cfg(), base);
        assert_eq!(ep.push(base, &[]), None);
    }

    #[test]
    fn extreme_samples_do_not_panic() {
        let alt: Vec<i16> = (0..n_of(3000))
            .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let square: Vec<i16> = (0..n_of(3000))
            .map(|i| {
                if (i / 20) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        for sig in [vec![i16::MIN; n_of(6000)], vec![i16::MAX; n_of(6000)], alt] {
            let out = drive_with(std_cfg(), &sig, &[FRAME, 1, 333], true);
            assert!(out.no_input, "{:?}", &sig[..2]);
        }
        // A full-scale square wave at 200 Hz is periodic and "voiced":
        // nothing more can be said about it; it must just not panic.
        let _ = drive(std_cfg(), &cat(&[&square, &silence(2000)]));
        // Hard-clipped loud speech is still speech.
        let clipped = speech_like(1500, 100.0, 12);
        let out = drive(std_cfg(), &cat(&[&silence(500), &clipped, &silence(2000)]));
        assert!(out.utterance.is_some());
    }

    // ---- real recorded prompts ----

    #[test]
    fn real_prompts_are_detected_with_accurate_start_and_end() {
        let prompts = all_prompts();
        assert!(
            prompts.len() >= 10,
            "prompts not found in {:?}",
            prompts_dir()
        );
        // Known limit at 25 dB SNR (noise RMS 300): TTS "six" has an 80 ms
        // vowel and fricatives only 6-8 dB over the noise, under the 140 ms
        // minimum; "sixteen" is then caught from "teen" (the pre-roll still
        // holds most of "six").
        let known = |name: &str, noise: f32| {
            noise >= 300.0
                && ["digits/6.wav", "numbers/6.wav", "numbers/16.wav"]
                    .iter()
                    .any(|k| name.ends_with(k))
        };
        let mut failures = Vec::new();
        for noise_rms in [0.0f32, 100.0, 300.0] {
            for (name, p) in &prompts {
                if let Err(e) = check_prompt(p, noise_rms) {
                    if !known(name, noise_rms) {
                        failures.push(format!("{name} noise {noise_rms}: {e}"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// One prompt after 1 s lead-in, with white noise of `noise_rms`.
    fn check_prompt(p: &[i16], noise_rms: f32) -> Result<(), String> {
        let clean = cat(&[&silence(1000), p, &silence(3000)]);
        let sig = mix(&clean, &white(clean.len() as u64 / 8, noise_rms, 21));
        let out = drive(std_cfg(), &sig);
        let Some(u) = &out.utterance else {
            return Err("not detected".into());
        };
        // Sound that stands 10 dB out of the noise.
        let (on, off) = sound_span_above(&clean, (f64::from(noise_rms) * 3.16).max(100.0));
        let b = find_slice(&sig, &u.pcm);
        let detected = samples_ms(b + PRE_ROLL as usize);
        if (detected - samples_ms(on)).abs() > 100 {
            return Err(format!("start {detected} vs sound {}", samples_ms(on)));
        }
        if b + u.pcm.len() < off {
            return Err("utterance misses the end".into());
        }
        let fin = ms(out.final_at.unwrap());
        let prompt_end = samples_ms(n_of(1000) + p.len());
        if fin < samples_ms(off) + 800 - 200 || fin > prompt_end + 800 + 40 {
            return Err(format!(
                "final {fin}, sound off {}, prompt end {prompt_end}",
                samples_ms(off)
            ));
        }
        let started = ms(out.started_at.unwrap()) - samples_ms(on);
        if !(0..=400).contains(&started) {
            return Err(format!("SpeechStarted +{started} ms"));
        }
        Ok(())
    }

    #[test]
    fn real_prompts_joined_by_short_pauses_stay_one_utterance() {
        let dir = prompts_dir();
        let a = read_wav(&dir.join("bank/enter_phone.wav"));
        let b = read_wav(&dir.join("clinic/closed.wav"));
        let c = read_wav(&dir.join("digits/8.wav"));
        let sig = cat(&[
            &silence(700),
            &a,
            &silence(500),
            &b,
            &silence(400),
            &c,
            &silence(3000),
        ]);
        let out = drive(std_cfg(), &sig);
        let (_, off) = sound_span(&sig);
        assert!(ms(out.final_at.unwrap()) >= samples_ms(off) + 650);
        let start = find_slice(&sig, out.pcm());
        assert!(start + out.pcm().len() >= off);
        // With a pause longer than the timeout only the first is taken.
        let sig = cat(&[&silence(700), &a, &silence(1500), &b, &silence(3000)]);
        let out = drive(std_cfg(), &sig);
        assert!(find_slice(&sig, out.pcm()) + out.pcm().len() < n_of(700) + a.len() + n_of(300));
    }

    /// cargo test --release -- --ignored --nocapture cpu_cost
    #[test]
    #[ignore]
    fn cpu_cost_per_frame() {
        let speech = speech_like(20_000, 70.0, 1);
        let quiet = silence(20_000);
        for (name, sig) in [("speech", &speech), ("silence", &quiet)] {
            let mut a = Analyzer::new();
            let frames: Vec<[i16; FRAME]> = sig
                .chunks_exact(FRAME)
                .map(|f| f.try_into().unwrap())
                .collect();
            let t = std::time::Instant::now();
            let mut n = 0;
            for _ in 0..20 {
                for f in &frames {
                    n += a.analyze(std::hint::black_box(f)).voiced as usize;
                }
            }
            let per = t.elapsed() / (20 * frames.len()) as u32;
            println!("{name}: {per:?} per 20 ms frame ({n})");
        }
    }

    #[test]
    #[ignore]
    fn explore_prompt_features() {
        for (name, pcm) in all_prompts() {
            let noise = std::env::var("NOISE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let pcm = mix(&pcm, &white(pcm.len() as u64 / 8, noise, 21));
            let mut a = Analyzer::new();
            let (mut act, mut voi, mut ton) = (0, 0, 0);
            let mut line = String::new();
            for f in pcm.chunks_exact(FRAME) {
                let fc = a.analyze(f.try_into().unwrap());
                act += fc.active as u32;
                voi += fc.voiced as u32;
                ton += fc.tonal as u32;
                line.push(if fc.tonal {
                    'T'
                } else if fc.voiced {
                    'V'
                } else if fc.active {
                    'a'
                } else {
                    '.'
                });
            }
            println!("{name}: active {act} voiced {voi} tonal {ton} {line}");
        }
    }
}
