//! Whisper log-mel front end, in pure Rust.
//!
//! Reproduces OpenAI Whisper's `log_mel_spectrogram` for one 30 s window:
//! 16 kHz audio zero-padded (or cut) to 30 s, reflect-centred STFT with a
//! 400-point periodic Hann window and hop 160, power spectrum, 80 Slaney-scale
//! mel bands with Slaney area normalisation (librosa's default, which is what
//! Whisper's `mel_filters.npz` holds), log10 floored at 1e-10, dynamic range
//! limited to 8 (= 80 dB) below the window's maximum, then `(x + 4) / 4`.
//!
//! The FFT comes from `realfft` (a real-input wrapper over `rustfft`): pure
//! Rust, no C toolchain or system library, handles the non-power-of-two size
//! 400 exactly, and returns only the 201 non-negative-frequency bins we need.

use std::sync::{Arc, OnceLock};

use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate the model expects.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT size / window length (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames (10 ms).
pub const HOP: usize = 160;
/// Number of mel bands of the tiny/base/small/medium models.
pub const N_MELS: usize = 80;
/// Frames in one 30 s window.
pub const N_FRAMES: usize = 3000;
/// Samples in one 30 s window.
pub const N_SAMPLES: usize = N_FRAMES * HOP;

const N_BINS: usize = N_FFT / 2 + 1;

/// One triangular mel filter, stored sparsely (most of its 201 weights are 0).
struct Band {
    first_bin: usize,
    weights: Vec<f32>,
}

/// Precomputed window, filterbank and FFT plan; build once, share freely.
pub struct MelFrontEnd {
    window: Vec<f32>,
    bands: Vec<Band>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl Default for MelFrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl MelFrontEnd {
    /// Builds the window, the filterbank and the FFT plan; costly enough
    /// that callers share one via [`MelFrontEnd::shared`].
    pub fn new() -> Self {
        // Periodic Hann (torch.hann_window default): divide by N, not N - 1.
        let window = (0..N_FFT)
            .map(|n| {
                let x = 2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64;
                (0.5 - 0.5 * x.cos()) as f32
            })
            .collect();
        let bands = slaney_filterbank(SAMPLE_RATE as f64, N_FFT, N_MELS)
            .into_iter()
            .map(|row| {
                let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                Band {
                    first_bin: first,
                    weights: row[first..=last].iter().map(|&w| w as f32).collect(),
                }
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        MelFrontEnd { window, bands, fft }
    }

    /// A process-wide instance, so callers need not carry one around.
    pub fn shared() -> &'static MelFrontEnd {
        static FE: OnceLock<MelFrontEnd> = OnceLock::new();
        FE.get_or_init(MelFrontEnd::new)
    }

    /// Log-mel features of `audio` (16 kHz mono, nominal range ±1), row-major
    /// `[N_MELS][N_FRAMES]` as the model's `[1, 80, 3000]` input wants.
    /// Audio longer than 30 s is cut to its first 30 s; empty input is fine.
    pub fn log_mel(&self, audio: &[f32]) -> Vec<f32> {
        // Pad to 30 s before the STFT (as Whisper does), then reflect-pad by
        // N_FFT/2 each side for the centred frames.
        let n = audio.len().min(N_SAMPLES);
        let pad = N_FFT / 2;
        let mut padded = vec![0.0f32; N_SAMPLES + 2 * pad];
        padded[pad..pad + n].copy_from_slice(&audio[..n]);
        for i in 1..=pad {
            padded[pad - i] = padded[pad + i];
            padded[pad + N_SAMPLES - 1 + i] = padded[pad + N_SAMPLES - 1 - i];
        }

        let mut mel = vec![0.0f32; N_MELS * N_FRAMES];
        let mut work = self.work();
        let mut col = [0.0f32; N_MELS];
        // STFT of length N_SAMPLES gives N_FRAMES + 1 frames; Whisper drops the last.
        for t in 0..N_FRAMES {
            let samples = &padded[t * HOP..t * HOP + N_FFT];
            // A frame of digital zero (the padding after a short utterance:
            // most of the window) has no energy in any band; its values are
            // known without its FFT (`zero_frames_need_no_fft`).
            if samples.iter().all(|&x| x == 0.0) {
                col = [SILENT_BAND; N_MELS];
            } else {
                self.bands(samples, &mut work, &mut col);
            }
            for (m, &v) in col.iter().enumerate() {
                mel[m * N_FRAMES + t] = v;
            }
        }

        let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let floor = max - 8.0;
        for v in &mut mel {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        mel
    }
}

/// A band's log10 energy when the frame is digital zero.
const SILENT_BAND: f32 = -10.0;

/// The buffers one frame's FFT works in.
struct Work {
    frame: Vec<f32>,
    spec: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    power: Vec<f32>,
}

impl MelFrontEnd {
    fn work(&self) -> Work {
        Work {
            frame: self.fft.make_input_vec(),
            spec: self.fft.make_output_vec(),
            scratch: self.fft.make_scratch_vec(),
            power: vec![0.0f32; N_BINS],
        }
    }

    /// The log10 band energies of one frame of `N_FFT` samples.
    fn bands(&self, samples: &[f32], w: &mut Work, out: &mut [f32; N_MELS]) {
        for ((f, &x), &win) in w.frame.iter_mut().zip(samples).zip(&self.window) {
            *f = x * win;
        }
        self.fft
            .process_with_scratch(&mut w.frame, &mut w.spec, &mut w.scratch)
            .expect("buffer sizes come from the plan");
        for (p, c) in w.power.iter_mut().zip(&w.spec) {
            *p = c.norm_sqr();
        }
        for (o, band) in out.iter_mut().zip(&self.bands) {
            let e: f32 = band
                .weights
                .iter()
                .zip(&w.power[band.first_bin..])
                .map(|(w, p)| w * p)
                .sum();
            *o = e.max(1e-10).log10();
        }
    }
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney: linear below 1 kHz, logarithmic above (librosa htk=False).
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= MIN_LOG_HZ {
        min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
    } else {
        F_SP * m
    }
}

/// librosa.filters.mel(sr, n_fft, n_mels) with fmin 0, fmax sr/2, norm="slaney".
fn slaney_filterbank(sr: f64, n_fft: usize, n_mels: usize) -> Vec<Vec<f64>> {
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * sr / n_fft as f64).collect();
    let (mel_lo, mel_hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|i| {
            let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
            let enorm = 2.0 / (hi - lo);
            fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - lo) / (mid - lo);
                    let upper = (hi - f) / (hi - mid);
                    lower.min(upper).max(0.0) * enorm
                })
                .collect()
        })
        .collect()
}

/// Centre frequency (Hz) of mel band `m`; for tests and diagnostics.
pub fn band_centre_hz(m: usize) -> f64 {
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    mel_to_hz(lo + (hi - lo) * (m + 1) as f64 / (N_MELS + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, secs: f64, amp: f64) -> Vec<f32> {
        let n = (secs * SAMPLE_RATE as f64) as usize;
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / SAMPLE_RATE as f64).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn shape_is_80_by_3000() {
        let fe = MelFrontEnd::new();
        assert_eq!(fe.log_mel(&sine(440.0, 1.0, 0.5)).len(), N_MELS * N_FRAMES);
        assert_eq!(fe.log_mel(&[]).len(), N_MELS * N_FRAMES);
        // Longer than 30 s is cut, not a panic.
        assert_eq!(
            fe.log_mel(&vec![0.1; N_SAMPLES + 12_345]).len(),
            N_MELS * N_FRAMES
        );
    }

    #[test]
    fn zero_frames_need_no_fft() {
        let fe = MelFrontEnd::new();
        let mut col = [0.0f32; N_MELS];
        fe.bands(&[0.0; N_FFT], &mut fe.work(), &mut col);
        assert!(col.iter().all(|&v| v == SILENT_BAND), "{col:?}");
    }

    #[test]
    fn silence_is_constant_floor() {
        // log10(1e-10) = -10, max = -10, so every value is (-10 + 4) / 4.
        let mel = MelFrontEnd::new().log_mel(&vec![0.0; 16_000]);
        assert!(mel.iter().all(|&v| v == -1.5), "silence must map to -1.5");
    }

    #[test]
    fn sine_1khz_peaks_in_right_band() {
        let mel = MelFrontEnd::new().log_mel(&sine(1000.0, 2.0, 0.5));
        let t = 100; // a frame well inside the tone
        let col: Vec<f32> = (0..N_MELS).map(|m| mel[m * N_FRAMES + t]).collect();
        let best = (0..N_MELS)
            .max_by(|&a, &b| col[a].total_cmp(&col[b]))
            .unwrap();
        // The band whose centre is nearest 1 kHz, or its neighbour (the tone
        // falls between two centres).
        let nearest = (0..N_MELS)
            .min_by(|&a, &b| {
                (band_centre_hz(a) - 1000.0)
                    .abs()
                    .total_cmp(&(band_centre_hz(b) - 1000.0).abs())
            })
            .unwrap();
        assert!(
            best.abs_diff(nearest) <= 1,
            "peak in band {best}, 1 kHz is band {nearest}"
        );
        // The tone's band is the window's maximum: (max + 4) / 4, and far
        // bands sit at the floor 8 below it.
        let max = mel.iter().copied().fold(f32::MIN, f32::max);
        assert!((col[best] - max).abs() < 0.05);
        assert!(
            (col[N_MELS - 1] - (max - 2.0)).abs() < 1e-6,
            "top band at floor"
        );
        // After the tone ends (2 s) everything is at the floor.
        assert!((mel[40 * N_FRAMES + 2500] - (max - 2.0)).abs() < 1e-6);
    }

    fn read_f32(path: &str) -> Vec<f32> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn filterbank_matches_whisper_assets() {
        // tests/data/asr/mel_filters_80.f32 = "mel_80" of Whisper's
        // assets/mel_filters.npz (ref/mel_ref.py dumps it).
        let want = read_f32("tests/data/asr/mel_filters_80.f32");
        let got = slaney_filterbank(16_000.0, 400, 80);
        let err = got
            .iter()
            .flatten()
            .zip(&want)
            .map(|(&g, &w)| (g as f32 - w).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "filterbank max abs error {err}");
    }

    #[test]
    fn matches_numpy_reference_on_speech() {
        // tests/data/asr/account16k.wav: piper TTS through an 8 kHz mu-law round
        // trip, upsampled by sox; reference from ref/mel_ref.py (float64).
        let mut r = hound::WavReader::open(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/asr/account16k.wav"),
        )
        .unwrap();
        let audio: Vec<f32> = r
            .samples::<i16>()
            .map(|s| s.unwrap() as f32 / 32768.0)
            .collect();
        let want = read_f32("tests/data/asr/account16k.mel.f32");
        let got = MelFrontEnd::new().log_mel(&audio);
        assert_eq!(got.len(), want.len());
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        eprintln!("log-mel max abs error vs numpy: {err:e}");
        assert!(err < 1e-3, "max abs error {err}");
    }
}
