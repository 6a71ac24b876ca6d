//! In-band DTMF detector for 8 kHz 16-bit PCM.
//!
//! Why: some callers (and some gateways) only send tones in the audio. The
//! detector must find real key presses at low levels and with frequency
//! error, yet stay quiet on speech and music ("talk-off"), because a false
//! digit in an authentication flow is worse than a missed one.
//!
//! Method, per 102-sample window advanced by 51 samples (6.4 ms):
//! 1. Rectangular-window DFT (Goertzel-equivalent) at the 8 DTMF
//!    frequencies; pick the strongest row and column tone; each must beat
//!    the other tones of its group by `REL_PEAK_DB` (6 dB).
//! 2. Frequency check: the phase advance of a Hann-windowed DFT between two
//!    consecutive windows gives each tone's real frequency (computed only
//!    for the two picked tones, from the samples of both windows); accept within
//!    `FREQ_TOL` (2.5 %) (between Q.24's "must accept" 1.5 % and "must reject"
//!    3.5 %). Magnitude alone cannot separate 1.5 % from 3.5 % with a
//!    102-sample window; the phase can.
//! 3. Re-estimate both tones' amplitude at the measured frequencies, then
//!    check minimum level, twist (normal ≤ 8 dB, reverse ≤ 4 dB), that the
//!    two tones explain almost all of the window energy (speech has many
//!    other components), and that the residual has no strong second
//!    harmonic of either tone (voiced speech / music).
//! 4. A digit is confirmed after [`CONFIRM_HITS`] consecutive identical hits
//!    and released after [`RELEASE_MISSES`] non-matching windows, so one
//!    press yields one event and a new press needs a pause.

use std::f64::consts::PI;
use std::time::{Duration, Instant};

use super::{Digit, DigitEvent, DigitSource};

const FS: f64 = 8000.0;
/// Window length in samples (12.75 ms), the classic DTMF Goertzel block.
const N: usize = 102;
/// Window advance in samples; half the window so the phase step between
/// windows is unambiguous for frequency errors up to ±78 Hz.
const HOP: usize = 51;
const SAMPLE: Duration = Duration::from_micros(125);
const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Strongest tone of a group must exceed the others by this much.
const REL_PEAK_DB: f64 = 6.0;
/// Accepted relative frequency error per tone.
const FREQ_TOL: f64 = 0.025;
/// Minimum level per tone, in dBm0 (0 dBm0 sine ≈ 22 706 peak in 16 bit).
const MIN_TONE_DBM0: f64 = -38.0;
const DBM0_PEAK: f64 = 22_706.0;
/// Column tone stronger than row tone ("normal twist") limit.
const MAX_NORMAL_TWIST_DB: f64 = 8.0;
/// Row tone stronger than column tone ("reverse twist") limit.
const MAX_REVERSE_TWIST_DB: f64 = 4.0;
/// Energy not explained by the two tones, relative to the window energy.
const MAX_RESIDUAL: f64 = 0.1;
/// Second harmonic must be this far below its fundamental.
const MIN_HARMONIC_REJECT_DB: f64 = 15.0;
/// Consecutive hits needed: 3 windows span 204 samples (25.5 ms of tone).
pub const CONFIRM_HITS: u32 = 3;
/// Consecutive misses that end a digit (≈ 32 ms): bridges dropouts of
/// ~10 ms inside one press, while a 40 ms pause yields ≥ 7 misses.
pub const RELEASE_MISSES: u32 = 5;
/// A time jump larger than this between pushes is treated as a gap.
const RESYNC: Duration = Duration::from_millis(60);

type C = (f64, f64);

fn cmul_conj(a: C, b: C) -> C {
    (a.0 * b.0 + a.1 * b.1, a.1 * b.0 - a.0 * b.1)
}

fn omega(f: f64) -> f64 {
    2.0 * PI * f / FS
}

/// DFTs of `x` at two angular frequencies, via rotating phasors (the two
/// recurrences are interleaved only for speed; each is computed exactly as
/// a single-frequency rotating-phasor DFT would). The phasors `(cos, sin)`
/// used at each sample are stored in `ph_a` / `ph_b`.
fn dft2(x: &[f64; N], wa: f64, wb: f64, ph_a: &mut [C; N], ph_b: &mut [C; N]) -> (C, C) {
    let (sa, ca) = wa.sin_cos();
    let (sb, cb) = wb.sin_cos();
    let (mut c1, mut s1) = (1.0f64, 0.0f64);
    let (mut c2, mut s2) = (1.0f64, 0.0f64);
    let (mut re1, mut im1, mut re2, mut im2) = (0.0, 0.0, 0.0, 0.0);
    for ((&v, pa), pb) in x.iter().zip(ph_a.iter_mut()).zip(ph_b.iter_mut()) {
        *pa = (c1, s1);
        *pb = (c2, s2);
        re1 += v * c1;
        im1 -= v * s1;
        re2 += v * c2;
        im2 -= v * s2;
        let n1 = c1 * ca - s1 * sa;
        s1 = s1 * ca + c1 * sa;
        c1 = n1;
        let n2 = c2 * cb - s2 * sb;
        s2 = s2 * cb + c2 * sb;
        c2 = n2;
    }
    ((re1, im1), (re2, im2))
}

/// Result of analysing one window, kept for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Hit(Digit),
    Quiet,
    Rejected,
}

/// Streaming DTMF detector; feed it all received audio of one call leg.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    /// cos/sin tables of the 8 tones over one window, sample-major
    /// (`cos[n][k]`) so the main loop updates all 8 bins per sample, which
    /// keeps 16 independent accumulators in flight (and vectorises).
    cos: [[f64; 8]; N],
    sin: [[f64; 8]; N],
    hann: [f64; N],
    buf: Vec<f64>,
    /// Time of `buf[0]`.
    buf_t0: Option<Instant>,
    /// The last two analysed windows (double buffer): `wins[slot]` is the
    /// most recent one. The Hann-windowed DFT is only needed for the two
    /// picked tones, so it is computed on demand from the samples of the
    /// current and the previous window instead of for all 8 bins each time.
    wins: [[f64; N]; 2],
    slot: usize,
    /// `wins[slot]` holds the previous, adjacent window and it passed the
    /// energy gate (the condition under which its phase may be used).
    prev_ok: bool,
    /// `10^(MIN_TONE_DBM0/20)·DBM0_PEAK`, `10^(REL_PEAK_DB/10)` and
    /// `10^(-MIN_HARMONIC_REJECT_DB/20)`, computed once.
    min_amp: f64,
    peak_ratio: f64,
    harm_limit: f64,
    cand: Option<Digit>,
    cand_hits: u32,
    cand_start: Option<Instant>,
    active: Option<Digit>,
    misses: u32,
    /// Windows rejected by the validity checks after passing the energy gate.
    rejected_windows: u64,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    /// Creates a detector for one audio stream (tables are per instance,
    /// ~15 KB, plus two windows, so no global state is needed).
    pub fn new() -> Self {
        let mut cos = [[0.0; 8]; N];
        let mut sin = [[0.0; 8]; N];
        for (k, f) in ROWS.iter().chain(COLS.iter()).enumerate() {
            let w = omega(*f);
            for (n, (c, s)) in cos.iter_mut().zip(sin.iter_mut()).enumerate() {
                (s[k], c[k]) = (w * n as f64).sin_cos();
            }
        }
        let mut hann = [0.0; N];
        for (n, h) in hann.iter_mut().enumerate() {
            *h = 0.5 - 0.5 * (2.0 * PI * n as f64 / N as f64).cos();
        }
        Self {
            cos,
            sin,
            hann,
            buf: Vec::with_capacity(4 * N),
            buf_t0: None,
            wins: [[0.0; N]; 2],
            slot: 0,
            prev_ok: false,
            min_amp: DBM0_PEAK * 10f64.powf(MIN_TONE_DBM0 / 20.0),
            peak_ratio: 10f64.powf(REL_PEAK_DB / 10.0),
            harm_limit: 10f64.powf(-MIN_HARMONIC_REJECT_DB / 20.0),
            cand: None,
            cand_hits: 0,
            cand_start: None,
            active: None,
            misses: 0,
            rejected_windows: 0,
        }
    }

    /// Feeds PCM (8 kHz, mono) whose first sample was captured at `now`.
    /// Returns the digits confirmed in this chunk, each once per press;
    /// `at` is the estimated tone start.
    ///
    /// Chunks are assumed contiguous; `now` is only used to place events in
    /// time and to detect gaps (a jump of more than 60 ms from the expected
    /// time restarts the analysis window). Pass media time (derived from the
    /// RTP timestamp) rather than arrival time if the network is jittery.
    pub fn push(&mut self, now: Instant, pcm: &[i16]) -> Vec<DigitEvent> {
        let mut out = Vec::new();
        if pcm.is_empty() {
            return out;
        }
        let expected = self
            .buf_t0
            .map(|t0| t0 + SAMPLE * u32::try_from(self.buf.len()).unwrap_or(u32::MAX));
        let contiguous = expected.is_some_and(|e| {
            let gap = if e > now { e - now } else { now - e };
            gap <= RESYNC
        });
        if !contiguous {
            // First chunk or a gap in the stream: old samples are not
            // adjacent to the new ones, so they cannot share a window.
            self.buf.clear();
            self.prev_ok = false;
        }
        if self.buf.is_empty() {
            self.buf_t0 = Some(now);
        }
        self.buf.extend(pcm.iter().map(|&s| f64::from(s)));

        let mut pos = 0;
        let mut t = self.buf_t0.unwrap_or(now);
        while self.buf.len() - pos >= N {
            let slot = self.slot ^ 1;
            self.wins[slot].copy_from_slice(&self.buf[pos..pos + N]);
            let verdict = self.analyze(slot);
            self.slot = slot;
            if let Some(ev) = self.track(verdict, t) {
                out.push(ev);
            }
            pos += HOP;
            t += SAMPLE * HOP as u32;
        }
        self.buf.drain(..pos);
        self.buf_t0 = Some(t);
        out
    }

    /// Number of windows that had enough energy but failed a validity
    /// check (useful to monitor talk-off pressure).
    pub fn rejected_windows(&self) -> u64 {
        self.rejected_windows
    }

    fn track(&mut self, verdict: Verdict, t: Instant) -> Option<DigitEvent> {
        let hit = match verdict {
            Verdict::Hit(d) => Some(d),
            Verdict::Rejected => {
                self.rejected_windows += 1;
                None
            }
            Verdict::Quiet => None,
        };
        if hit.is_some() && hit == self.active {
            self.misses = 0;
            return None;
        }
        if self.active.is_some() {
            self.misses += 1;
            if self.misses >= RELEASE_MISSES {
                self.active = None;
            }
        }
        let Some(d) = hit else {
            self.cand = None;
            self.cand_hits = 0;
            return None;
        };
        if self.cand == Some(d) {
            self.cand_hits += 1;
        } else {
            self.cand = Some(d);
            self.cand_hits = 1;
            self.cand_start = Some(t);
        }
        if self.active.is_none() && self.cand_hits >= CONFIRM_HITS {
            self.active = Some(d);
            self.misses = 0;
            return Some(DigitEvent {
                digit: d,
                source: DigitSource::Inband,
                at: self.cand_start.unwrap_or(t),
                duration_ms: None,
            });
        }
        None
    }

    /// Hann-windowed DFTs at tone bins `a` and `b` of the windows `x` and
    /// `y` (same arithmetic, in the same order, as a per-bin loop).
    fn hann_dfts(&self, x: &[f64; N], y: &[f64; N], a: usize, b: usize) -> [C; 4] {
        let mut acc = [(0.0f64, 0.0f64); 4];
        let tables = self.cos.iter().zip(&self.sin).zip(&self.hann);
        for ((&u, &v), ((c, s), &w)) in x.iter().zip(y).zip(tables) {
            let (hu, hv) = (u * w, v * w);
            acc[0].0 += hu * c[a];
            acc[0].1 -= hu * s[a];
            acc[1].0 += hu * c[b];
            acc[1].1 -= hu * s[b];
            acc[2].0 += hv * c[a];
            acc[2].1 -= hv * s[a];
            acc[3].0 += hv * c[b];
            acc[3].1 -= hv * s[b];
        }
        acc
    }

    /// Analyses `self.wins[slot]`; `self.wins[slot ^ 1]` is the previous
    /// window (usable if `self.prev_ok`).
    fn analyze(&mut self, slot: usize) -> Verdict {
        let x = &self.wins[slot & 1];
        let prev_ok = self.prev_ok;
        let min_amp = self.min_amp;
        // Two tones of at least min_amp carry at least min_amp² of power.
        let gate = min_amp * min_amp;
        // Most windows of a call are silence or quiet: check the energy
        // before the eight DFTs, which are the detector's main cost. This
        // fast estimate (6 partial sums) differs from the exact in-order sum
        // below by far less than 1e-9 relative, so it only decides windows
        // that are clearly quiet; the exact sum decides the rest.
        let mut part = [0.0f64; 6];
        for ch in x.chunks_exact(6) {
            for (p, &v) in part.iter_mut().zip(ch) {
                *p += v * v;
            }
        }
        if part.iter().sum::<f64>() / (N as f64) < gate * (1.0 - 1e-9) {
            self.prev_ok = false;
            return Verdict::Quiet;
        }

        // Rectangular DFT powers of the 8 tones (all bins per sample), and
        // the exact window energy, summed in sample order.
        let mut energy = 0.0f64;
        let mut re = [0.0f64; 8];
        let mut im = [0.0f64; 8];
        for ((&v, c), s) in x.iter().zip(&self.cos).zip(&self.sin) {
            energy += v * v;
            for (((r, i), &c), &s) in re.iter_mut().zip(im.iter_mut()).zip(c).zip(s) {
                *r += v * c;
                *i -= v * s;
            }
        }
        if energy / (N as f64) < gate {
            self.prev_ok = false;
            return Verdict::Quiet;
        }
        self.prev_ok = true;
        let mut rect = [0.0f64; 8];
        for ((p, &r), &i) in rect.iter_mut().zip(&re).zip(&im) {
            *p = r * r + i * i;
        }

        let ratio = self.peak_ratio;
        let pick = |off: usize| -> Option<usize> {
            let group = &rect[off..off + 4];
            let (best, &pb) = group.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
            let dominant = group
                .iter()
                .enumerate()
                .all(|(i, &p)| i == best || pb >= ratio * p);
            dominant.then_some(best)
        };
        let (Some(r), Some(c)) = (pick(0), pick(4)) else {
            return Verdict::Rejected;
        };
        if !prev_ok {
            return Verdict::Rejected;
        }
        let prev = &self.wins[(slot & 1) ^ 1];
        let [hr, hc, pr, pc] = self.hann_dfts(x, prev, r, c + 4);

        // Measured frequency from the phase advance over one hop.
        let measure = |cur: C, prev: C, nominal: f64| -> Option<f64> {
            let (re, im) = cmul_conj(cur, prev);
            let w0 = omega(nominal);
            let mut d = im.atan2(re) - w0 * HOP as f64;
            d = (d + PI).rem_euclid(2.0 * PI) - PI;
            let w = w0 + d / HOP as f64;
            let f = w * FS / (2.0 * PI);
            ((f - nominal).abs() <= FREQ_TOL * nominal).then_some(w)
        };
        let (Some(wr), Some(wc)) = (measure(hr, pr, ROWS[r]), measure(hc, pc, COLS[c])) else {
            return Verdict::Rejected;
        };

        // Complex amplitudes at the measured frequencies.
        let scale = |v: C| (v.0 / N as f64, v.1 / N as f64);
        let mut ph_r = [(0.0f64, 0.0f64); N];
        let mut ph_c = [(0.0f64, 0.0f64); N];
        let (dr, dc) = dft2(x, wr, wc, &mut ph_r, &mut ph_c);
        let (cr, cc) = (scale(dr), scale(dc));
        let amp = |v: C| 2.0 * (v.0 * v.0 + v.1 * v.1).sqrt();
        let (ar, ac) = (amp(cr), amp(cc));
        if ar < min_amp || ac < min_amp {
            return Verdict::Rejected;
        }
        let twist_db = 20.0 * (ac / ar).log10();
        if twist_db > MAX_NORMAL_TWIST_DB || -twist_db > MAX_REVERSE_TWIST_DB {
            return Verdict::Rejected;
        }

        // Residual after removing both tones: speech, noise, harmonics.
        // The tones are synthesised from the phasors of the DFT above and
        // the residual's DFT at each tone's second harmonic is accumulated
        // on the fly (double-angle phasors), so no trig per sample is needed.
        let mut res_energy = 0.0f64;
        let mut h_r = (0.0f64, 0.0f64);
        let mut h_c = (0.0f64, 0.0f64);
        for ((&v, &(rc, rs)), &(ccos, csin)) in x.iter().zip(&ph_r).zip(&ph_c) {
            let tr = 2.0 * (cr.0 * rc - cr.1 * rs);
            let tc = 2.0 * (cc.0 * ccos - cc.1 * csin);
            let e = v - tr - tc;
            res_energy += e * e;
            h_r.0 += e * (rc * rc - rs * rs);
            h_r.1 -= e * (2.0 * rc * rs);
            h_c.0 += e * (ccos * ccos - csin * csin);
            h_c.1 -= e * (2.0 * ccos * csin);
        }
        if res_energy > MAX_RESIDUAL * energy {
            return Verdict::Rejected;
        }
        for (w, a, h) in [(wr, ar, h_r), (wc, ac, h_c)] {
            if 2.0 * w < PI && amp(scale(h)) > a * self.harm_limit {
                return Verdict::Rejected;
            }
        }
        match Digit::from_char(KEYS[r][c]) {
            Some(d) => Verdict::Hit(d),
            None => Verdict::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift noise so tests are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Approximately Gaussian, unit variance (sum of 12 uniforms).
        fn gauss(&mut self) -> f64 {
            (0..12).map(|_| self.next_f64()).sum::<f64>() - 6.0
        }
    }

    fn amp_dbm0(dbm0: f64) -> f64 {
        DBM0_PEAK * 10f64.powf(dbm0 / 20.0)
    }

    fn key_pos(c: char) -> (usize, usize) {
        for (r, row) in KEYS.iter().enumerate() {
            if let Some(col) = row.iter().position(|&k| k == c) {
                return (r, col);
            }
        }
        panic!("not a key {c}");
    }

    #[derive(Clone, Copy)]
    struct Spec {
        dbm0: f64,
        /// Column level minus row level, dB.
        twist_db: f64,
        row_dev: f64,
        col_dev: f64,
        tone_ms: usize,
        pause_ms: usize,
        snr_db: Option<f64>,
    }

    const BASE: Spec = Spec {
        dbm0: -10.0,
        twist_db: 0.0,
        row_dev: 0.0,
        col_dev: 0.0,
        tone_ms: 50,
        pause_ms: 50,
        snr_db: None,
    };

    /// Renders `keys` as tone/pause sequence (with leading/trailing silence).
    fn render(keys: &str, s: Spec, seed: u64) -> Vec<f64> {
        let mut out = vec![0.0; 8 * 30];
        let mut rng = Rng(seed | 1);
        for k in keys.chars() {
            let (r, c) = key_pos(k);
            let fr = ROWS[r] * (1.0 + s.row_dev);
            let fc = COLS[c] * (1.0 + s.col_dev);
            let ar = amp_dbm0(s.dbm0 - s.twist_db / 2.0);
            let ac = amp_dbm0(s.dbm0 + s.twist_db / 2.0);
            let (pr, pc) = (rng.next_f64() * 2.0 * PI, rng.next_f64() * 2.0 * PI);
            for n in 0..s.tone_ms * 8 {
                let t = n as f64 / FS;
                out.push(ar * (2.0 * PI * fr * t + pr).sin() + ac * (2.0 * PI * fc * t + pc).sin());
            }
            out.extend(std::iter::repeat_n(0.0, s.pause_ms * 8));
        }
        out.extend(std::iter::repeat_n(0.0, 8 * 30));
        if let Some(snr) = s.snr_db {
            // Noise relative to the power of one tone pair at nominal level.
            let sig = (amp_dbm0(s.dbm0 - s.twist_db / 2.0).powi(2)
                + amp_dbm0(s.dbm0 + s.twist_db / 2.0).powi(2))
                / 2.0;
            let sigma = (sig / 10f64.powf(snr / 10.0)).sqrt();
            for v in out.iter_mut() {
                *v += sigma * rng.gauss();
            }
        }
        out
    }

    fn to_i16(x: &[f64]) -> Vec<i16> {
        x.iter()
            .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    /// Runs the detector over `pcm` in chunks of `chunk` samples.
    fn detect(pcm: &[i16], chunk: usize) -> Vec<DigitEvent> {
        let mut det = InbandDetector::new();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (i, part) in pcm.chunks(chunk).enumerate() {
            let now = t0 + SAMPLE * (i * chunk) as u32;
            out.extend(det.push(now, part));
        }
        out
    }

    fn digits(pcm: &[i16], chunk: usize) -> String {
        detect(pcm, chunk)
            .iter()
            .map(|e| e.digit.as_char())
            .collect()
    }

    const ALL: &str = "123A456B789C*0#D";

    #[test]
    fn detects_all_16_digits_nominal() {
        let pcm = to_i16(&render(ALL, BASE, 1));
        assert_eq!(digits(&pcm, 160), ALL);
    }

    #[test]
    fn event_time_is_tone_start() {
        let pcm = to_i16(&render("5", BASE, 2));
        let t0 = Instant::now();
        let mut det = InbandDetector::new();
        let evs: Vec<_> = pcm
            .chunks(160)
            .enumerate()
            .flat_map(|(i, c)| det.push(t0 + SAMPLE * (i as u32 * 160), c))
            .collect();
        assert_eq!(evs.len(), 1);
        let start = t0 + Duration::from_millis(30);
        let err = if evs[0].at > start {
            evs[0].at - start
        } else {
            start - evs[0].at
        };
        assert!(err <= Duration::from_millis(15), "{err:?}");
        assert_eq!(evs[0].source, DigitSource::Inband);
    }

    #[test]
    fn detection_matrix_levels_deviation_twist_noise_chunking() {
        let mut total = 0;
        let mut failures = Vec::new();
        let chunks = [160usize, 1, 37, 333];
        let mut seed = 10;
        for dbm0 in [-10.0, -20.0, -30.0] {
            for (rd, cd) in [
                (0.0, 0.0),
                (0.015, 0.015),
                (-0.015, -0.015),
                (0.015, -0.015),
                (-0.015, 0.015),
            ] {
                for twist in [0.0, 6.0, -3.0] {
                    for snr in [None, Some(20.0)] {
                        for (tone, pause) in [(40, 40), (50, 40)] {
                            seed += 1;
                            let s = Spec {
                                dbm0,
                                twist_db: twist,
                                row_dev: rd,
                                col_dev: cd,
                                tone_ms: tone,
                                pause_ms: pause,
                                snr_db: snr,
                            };
                            let keys = "1234567890*#ABCD";
                            let pcm = to_i16(&render(keys, s, seed));
                            let chunk = chunks[seed as usize % chunks.len()];
                            total += 1;
                            let got = digits(&pcm, chunk);
                            if got != keys {
                                failures.push(format!(
                                    "{dbm0} dBm0 dev {rd}/{cd} twist {twist} snr {snr:?} {tone}/{pause} ms chunk {chunk}: {got}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        eprintln!(
            "detection matrix: {}/{total} sequences exact",
            total - failures.len()
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn detects_low_level_minus_35_dbm0() {
        let s = Spec {
            dbm0: -35.0,
            ..BASE
        };
        let pcm = to_i16(&render(ALL, s, 3));
        assert_eq!(digits(&pcm, 160), ALL);
        let s = Spec {
            dbm0: -35.0,
            snr_db: Some(20.0),
            ..BASE
        };
        assert_eq!(digits(&to_i16(&render(ALL, s, 4)), 160), ALL);
    }

    #[test]
    fn mu_law_round_trip_still_detected() {
        let s = Spec {
            snr_db: Some(25.0),
            ..BASE
        };
        let pcm: Vec<i16> = to_i16(&render(ALL, s, 5))
            .into_iter()
            .map(|v| mulaw_decode(mulaw_encode(v)))
            .collect();
        assert_eq!(digits(&pcm, 160), ALL);
        let s = Spec {
            dbm0: -30.0,
            ..BASE
        };
        let pcm: Vec<i16> = to_i16(&render(ALL, s, 6))
            .into_iter()
            .map(|v| mulaw_decode(mulaw_encode(v)))
            .collect();
        assert_eq!(digits(&pcm, 160), ALL);
    }

    /// Minimal G.711 µ-law codec for the round-trip test.
    fn mulaw_encode(s: i16) -> u8 {
        let sign = if s < 0 { 0x80u8 } else { 0 };
        let mag = (i32::from(s).abs().min(32635) + 0x84) as u32;
        let exp = (31 - mag.leading_zeros()).saturating_sub(7).min(7);
        let mant = (mag >> (exp + 3)) & 0x0f;
        !(sign | (exp as u8) << 4 | mant as u8)
    }

    fn mulaw_decode(u: u8) -> i16 {
        let u = !u;
        let exp = u32::from((u >> 4) & 7);
        let mant = i32::from(u & 0x0f);
        let mag = (((mant << 3) + 0x84) << exp) - 0x84;
        if u & 0x80 != 0 {
            -mag as i16
        } else {
            mag as i16
        }
    }

    #[test]
    fn mulaw_codec_sanity() {
        for v in [-32000i16, -1000, -10, 0, 10, 1000, 32000] {
            let r = mulaw_decode(mulaw_encode(v));
            assert!(
                (i32::from(r) - i32::from(v)).abs() <= i32::from(v).abs() / 16 + 8,
                "{v} {r}"
            );
        }
    }

    #[test]
    fn one_event_per_long_press_and_repeat_needs_pause() {
        let s = Spec {
            tone_ms: 2000,
            pause_ms: 100,
            snr_db: Some(20.0),
            ..BASE
        };
        assert_eq!(digits(&to_i16(&render("55", s, 7)), 160), "55");
        // Same key twice with a 10 ms gap is not a new press.
        let mut x = render(
            "5",
            Spec {
                tone_ms: 200,
                pause_ms: 0,
                ..BASE
            },
            8,
        );
        x.truncate(x.len() - 8 * 30);
        x.extend(std::iter::repeat_n(0.0, 80));
        x.extend(
            render(
                "5",
                Spec {
                    tone_ms: 200,
                    pause_ms: 0,
                    ..BASE
                },
                9,
            )
            .into_iter()
            .skip(8 * 30),
        );
        assert_eq!(digits(&to_i16(&x), 160), "5");
    }

    #[test]
    fn rejects_out_of_spec_tones() {
        let cases: Vec<(&str, Spec)> = vec![
            (
                "row +3.5%",
                Spec {
                    row_dev: 0.035,
                    ..BASE
                },
            ),
            (
                "row -3.5%",
                Spec {
                    row_dev: -0.035,
                    ..BASE
                },
            ),
            (
                "col +3.5%",
                Spec {
                    col_dev: 0.035,
                    ..BASE
                },
            ),
            (
                "col -3.5%",
                Spec {
                    col_dev: -0.035,
                    ..BASE
                },
            ),
            (
                "both +5%",
                Spec {
                    row_dev: 0.05,
                    col_dev: 0.05,
                    ..BASE
                },
            ),
            (
                "normal twist 10 dB",
                Spec {
                    twist_db: 10.0,
                    ..BASE
                },
            ),
            (
                "reverse twist 6 dB",
                Spec {
                    twist_db: -6.0,
                    ..BASE
                },
            ),
            (
                "too quiet -45 dBm0",
                Spec {
                    dbm0: -45.0,
                    ..BASE
                },
            ),
            (
                "too short 15 ms",
                Spec {
                    tone_ms: 15,
                    ..BASE
                },
            ),
        ];
        let mut bad = Vec::new();
        for (name, s) in cases {
            let got = digits(&to_i16(&render(ALL, s, 11)), 160);
            if !got.is_empty() {
                bad.push(format!("{name}: {got}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    fn sines(parts: &[(f64, f64)], samples: usize) -> Vec<f64> {
        (0..samples)
            .map(|n| {
                let t = n as f64 / FS;
                parts
                    .iter()
                    .map(|&(f, a)| a * (2.0 * PI * f * t).sin())
                    .sum()
            })
            .collect()
    }

    #[test]
    fn rejects_single_tones_out_of_band_pairs_and_harmonics() {
        let a = amp_dbm0(-10.0);
        let mut signals: Vec<(String, Vec<f64>)> = Vec::new();
        for f in ROWS
            .iter()
            .chain(COLS.iter())
            .chain([1000.0, 2100.0, 440.0].iter())
        {
            signals.push((format!("single {f}"), sines(&[(*f, a)], 8000)));
        }
        for (fr, fc) in [
            (600.0, 1209.0),
            (697.0, 1100.0),
            (697.0, 1800.0),
            (1000.0, 1336.0),
            (697.0, 770.0),
            (1209.0, 1336.0),
        ] {
            signals.push((format!("pair {fr}+{fc}"), sines(&[(fr, a), (fc, a)], 8000)));
        }
        // Valid pair plus 2nd harmonics at -12 dB: passes the residual test
        // on energy but is rejected by the harmonic check.
        let h = a * 10f64.powf(-12.0 / 20.0);
        signals.push((
            "pair with -12 dB harmonics".into(),
            sines(&[(770.0, a), (1336.0, a), (1540.0, h), (2672.0, h)], 8000),
        ));
        let mut bad = Vec::new();
        for (name, x) in &signals {
            let got = digits(&to_i16(x), 160);
            if !got.is_empty() {
                bad.push(format!("{name}: {got}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        // Control: the same pair with -25 dB harmonics is a valid digit.
        let h = a * 10f64.powf(-25.0 / 20.0);
        let x = sines(&[(770.0, a), (1336.0, a), (1540.0, h), (2672.0, h)], 8000);
        assert_eq!(digits(&to_i16(&x), 160), "5");
    }

    /// Speech-like signal: glottal harmonics of a gliding pitch, shaped by
    /// moving formants, with syllable-rate amplitude modulation and noise.
    fn speech_like(seed: u64, seconds: f64) -> Vec<f64> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let n = (seconds * FS) as usize;
        let f0_base = 85.0 + 170.0 * rng.next_f64();
        let f0_rate = 0.5 + 3.0 * rng.next_f64();
        let f0_depth = 0.1 + 0.3 * rng.next_f64();
        let syl_rate = 3.0 + 3.0 * rng.next_f64();
        let formants: Vec<(f64, f64, f64)> = (0..3)
            .map(|i| {
                let base = [500.0, 1500.0, 2500.0][i] * (0.7 + 0.6 * rng.next_f64());
                (base, 0.2 + 0.3 * rng.next_f64(), 0.5 + 2.0 * rng.next_f64())
            })
            .collect();
        let level = amp_dbm0(-15.0 + 10.0 * rng.next_f64());
        let mut phases = vec![0.0f64; 60];
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = i as f64 / FS;
            let f0 = f0_base * (1.0 + f0_depth * (2.0 * PI * f0_rate * t).sin());
            let env = (0.5 - 0.5 * (2.0 * PI * syl_rate * t).cos()).powf(0.7);
            let mut v = 0.0;
            for (k, ph) in phases.iter_mut().enumerate() {
                let fk = f0 * (k + 1) as f64;
                if fk > 3800.0 {
                    break;
                }
                *ph += 2.0 * PI * fk / FS;
                let mut gain = 0.0;
                for (j, &(fb, depth, rate)) in formants.iter().enumerate() {
                    let fc = fb * (1.0 + depth * (2.0 * PI * rate * t + j as f64).sin());
                    let bw = 80.0 + 40.0 * j as f64;
                    gain += [1.0, 0.5, 0.25][j] / (1.0 + ((fk - fc) / bw).powi(2));
                }
                v += gain * ph.sin() / (k + 1) as f64;
            }
            out.push(level * env * (v + 0.02 * rng.gauss()));
        }
        out
    }

    #[test]
    fn quiet_on_speech_like_signals() {
        let signals = 60;
        let mut false_digits = 0;
        let mut rejected = 0;
        for seed in 0..signals {
            let pcm = to_i16(&speech_like(seed, 3.0));
            let mut det = InbandDetector::new();
            let t0 = Instant::now();
            for (i, c) in pcm.chunks(160).enumerate() {
                false_digits += det.push(t0 + SAMPLE * (i as u32 * 160), c).len();
            }
            rejected += det.rejected_windows();
        }
        eprintln!(
            "speech-like: {false_digits} false digits in {signals} x 3 s signals ({rejected} windows rejected by checks)"
        );
        assert_eq!(false_digits, 0);
    }

    #[test]
    fn quiet_on_noise_and_music_like_chords() {
        let mut rng = Rng(77);
        let mut false_digits = 0;
        let mut count = 0;
        for level in [-40.0, -25.0, -10.0, 0.0] {
            let sigma = amp_dbm0(level) / 2f64.sqrt();
            let x: Vec<f64> = (0..16000).map(|_| sigma * rng.gauss()).collect();
            false_digits += digits(&to_i16(&x), 160).len();
            count += 1;
        }
        // Music-like: equal-tempered triads with harmonics, many roots.
        for root in 0..36 {
            let f = 220.0 * 2f64.powf(root as f64 / 12.0);
            let mut parts = Vec::new();
            for ratio in [1.0, 2f64.powf(4.0 / 12.0), 2f64.powf(7.0 / 12.0)] {
                for h in 1..=4 {
                    let fh = f * ratio * h as f64;
                    if fh < 3800.0 {
                        parts.push((fh, amp_dbm0(-15.0) / h as f64));
                    }
                }
            }
            false_digits += digits(&to_i16(&sines(&parts, 8000)), 160).len();
            count += 1;
        }
        eprintln!("noise/music: {false_digits} false digits in {count} signals");
        assert_eq!(false_digits, 0);
    }

    #[test]
    fn digits_mixed_with_speech_before_and_after() {
        let mut x = speech_like(3, 1.0);
        x.extend(render(
            "159#",
            Spec {
                snr_db: Some(20.0),
                ..BASE
            },
            12,
        ));
        x.extend(speech_like(4, 1.0));
        assert_eq!(digits(&to_i16(&x), 160), "159#");
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut det = InbandDetector::new();
        let t0 = Instant::now();
        assert!(det.push(t0, &[]).is_empty());
        let loud: Vec<i16> = (0..4000)
            .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        assert!(det.push(t0, &loud).is_empty());
        // Time going backwards / jumping forward is handled as a resync.
        assert!(det.push(t0, &[0; 10]).is_empty());
        assert!(det
            .push(t0 + Duration::from_secs(3600), &[1; 500])
            .is_empty());
    }

    /// Throughput micro-benchmark (prints only, never asserts timings):
    /// `cargo test --release --lib media::dtmf::inband::tests::bench_windows -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_windows_per_second() {
        let speech = to_i16(&speech_like(42, 10.0));
        let s = Spec {
            snr_db: Some(20.0),
            ..BASE
        };
        let mut tones = Vec::new();
        while tones.len() < 80_000 {
            tones.extend(to_i16(&render(ALL, s, 99 + tones.len() as u64)));
        }
        tones.truncate(80_000);
        for (name, pcm) in [("speech-like 10 s", &speech), ("DTMF 10 s", &tones)] {
            let windows_per_pass = (pcm.len() - N) / HOP + 1;
            let mut passes = 0u64;
            let mut events = 0usize;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                let mut det = InbandDetector::new();
                let t0 = Instant::now();
                for (i, c) in pcm.chunks(160).enumerate() {
                    events += det.push(t0 + SAMPLE * (i as u32 * 160), c).len();
                }
                passes += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            let wps = (passes as f64 * windows_per_pass as f64) / secs;
            eprintln!(
                "bench {name}: {wps:.0} windows/s ({:.0} x real time per core, {} events/pass)",
                wps / (FS / HOP as f64),
                events as u64 / passes
            );
        }
    }
}
