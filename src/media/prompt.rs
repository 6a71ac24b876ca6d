//! Prompt audio: WAV loading (any format hound reads), downmix, band-limited
//! resampling to 8 kHz (`media::resample`), and a cache of per-codec encodings split into frames.
//!
//! Prompts are decoded once at 8 kHz mono and encoded once per codec, so the
//! per-call RTP path only copies 160-byte frames out of a shared `Arc<[u8]>`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use thiserror::Error;

use super::g711::{self, Codec};
use super::resample::resample;

/// Output sample rate of every prompt (G.711 narrowband).
pub const SAMPLE_RATE: u32 = 8000;
/// Bytes (= samples) per 20 ms G.711 frame.
pub const FRAME_BYTES: usize = 160;
/// Input sample rates outside this range are rejected as unsupported; it
/// bounds the resampler's filter length and table size.
const MIN_INPUT_RATE: u32 = 1000;
const MAX_INPUT_RATE: u32 = 384_000;

/// Why a prompt could not be loaded; always names the file or prompt.
#[derive(Debug, Error)]
pub enum PromptError {
    /// No file for this prompt name.
    #[error("prompt file {}: not found", .path.display())]
    Missing {
        /// The prompt file.
        path: PathBuf,
    },
    /// The file exists but could not be opened or read.
    #[error("prompt file {}: cannot read: {source}", .path.display())]
    Io {
        /// The prompt file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The header is not RIFF/WAVE or is cut short.
    #[error("prompt file {}: not a valid WAV file: {reason}", .path.display())]
    NotWav {
        /// The prompt file.
        path: PathBuf,
        /// What the WAV reader objected to.
        reason: String,
    },
    /// A valid WAV we cannot play: an encoding other than integer PCM or
    /// 32-bit float, no channels, or a sample rate outside 1–384 kHz.
    #[error("prompt file {}: unsupported WAV format: {reason}", .path.display())]
    Unsupported {
        /// The prompt file.
        path: PathBuf,
        /// Which format property is unsupported.
        reason: String,
    },
    /// The header is fine but the samples cannot be read.
    #[error("prompt file {}: corrupt audio data: {reason}", .path.display())]
    Corrupt {
        /// The prompt file.
        path: PathBuf,
        /// The WAV reader's error.
        reason: String,
    },
    /// A well-formed WAV without samples (it would play as nothing).
    #[error("prompt file {}: contains no audio samples", .path.display())]
    Empty {
        /// The prompt file.
        path: PathBuf,
    },
    /// A name that could escape the prompt directory (`..`, absolute,
    /// hidden segments, backslashes).
    #[error("invalid prompt name {name:?}: use file stems, optionally in sub-folders (digits/5)")]
    InvalidName {
        /// The name as given (not a path: it was refused before joining).
        name: String,
    },
    /// The prompt directory could not be listed (at preload).
    #[error("prompt directory {}: cannot list: {source}", .path.display())]
    Directory {
        /// The prompt directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Decoded prompt: 8 kHz mono 16-bit PCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptAudio {
    pcm: Vec<i16>,
}

impl PromptAudio {
    /// Wraps samples that are already 8 kHz mono.
    pub fn from_pcm(pcm: Vec<i16>) -> PromptAudio {
        PromptAudio { pcm }
    }

    /// The 8 kHz mono samples.
    pub fn pcm(&self) -> &[i16] {
        &self.pcm
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.pcm.len()
    }

    /// True if there are no samples.
    pub fn is_empty(&self) -> bool {
        self.pcm.is_empty()
    }

    /// Playing time at 8 kHz.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.pcm.len() as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    /// Encodes all samples with `codec` (one byte per sample).
    pub fn encode(&self, codec: Codec) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pcm.len());
        g711::encode(codec, &self.pcm, &mut out);
        out
    }
}

/// Loads a WAV file in any layout hound supports (8/16/24/32-bit integer or
/// 32-bit float, any channel count, any rate in 1–384 kHz) as 8 kHz mono.
pub fn load_wav(path: &Path) -> Result<PromptAudio, PromptError> {
    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => PromptError::Missing {
            path: path.to_path_buf(),
        },
        _ => PromptError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let reader = hound::WavReader::new(BufReader::new(file)).map_err(|e| header_error(path, e))?;
    let spec = reader.spec();
    let unsupported = |reason: String| PromptError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    if spec.channels == 0 {
        return Err(unsupported("zero channels".into()));
    }
    if !(MIN_INPUT_RATE..=MAX_INPUT_RATE).contains(&spec.sample_rate) {
        return Err(unsupported(format!(
            "sample rate {} Hz outside {MIN_INPUT_RATE}..={MAX_INPUT_RATE}",
            spec.sample_rate
        )));
    }
    let channels = usize::from(spec.channels);
    let mono = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => downmix(
            path,
            channels,
            reader.into_samples::<f32>().map(|s| s.map(f64::from)),
        )?,
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            downmix(
                path,
                channels,
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| f64::from(v) * scale)),
            )?
        }
        (format, bits) => {
            return Err(unsupported(format!("{bits}-bit {format:?} samples")));
        }
    };
    if mono.is_empty() {
        return Err(PromptError::Empty {
            path: path.to_path_buf(),
        });
    }
    let resampled = resample(&mono, spec.sample_rate, SAMPLE_RATE);
    Ok(PromptAudio {
        pcm: resampled.iter().map(|&v| to_i16(v)).collect(),
    })
}

fn header_error(path: &Path, e: hound::Error) -> PromptError {
    let path = path.to_path_buf();
    match e {
        // hound reports short reads as `Other` ("Failed to read enough bytes.").
        hound::Error::IoError(source)
            if matches!(
                source.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::Other
            ) =>
        {
            PromptError::NotWav {
                path,
                reason: format!("truncated header ({source})"),
            }
        }
        hound::Error::IoError(source) => PromptError::Io { path, source },
        hound::Error::FormatError(reason) => PromptError::NotWav {
            path,
            reason: reason.into(),
        },
        hound::Error::Unsupported => PromptError::Unsupported {
            path,
            reason: "encoding not supported (only PCM integer and 32-bit float)".into(),
        },
        other => PromptError::Unsupported {
            path,
            reason: other.to_string(),
        },
    }
}

/// Averages interleaved channels into mono, failing on unreadable samples.
fn downmix(
    path: &Path,
    channels: usize,
    samples: impl Iterator<Item = Result<f64, hound::Error>>,
) -> Result<Vec<f64>, PromptError> {
    let mut mono = Vec::new();
    let mut acc = 0.0;
    let mut n = 0;
    for sample in samples {
        let v = sample.map_err(|e| PromptError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        acc += if v.is_finite() { v } else { 0.0 };
        n += 1;
        if n == channels {
            mono.push(acc / channels as f64);
            acc = 0.0;
            n = 0;
        }
    }
    Ok(mono)
}

/// Converts a normalised sample (full scale ±1.0) to i16 with saturation.
fn to_i16(v: f64) -> i16 {
    // Float-to-int `as` saturates and maps NaN to 0, so this cannot panic.
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Number of 160-byte frames needed for `encoded_len` bytes.
pub fn frame_count(encoded_len: usize) -> usize {
    encoded_len.div_ceil(FRAME_BYTES)
}

/// Iterator over 20 ms frames of an encoded prompt; the last frame is padded
/// with the codec's silence byte. Owns its `Arc`, so it can live in a task.
#[derive(Debug, Clone)]
pub struct Frames {
    data: Arc<[u8]>,
    pos: usize,
    silence: u8,
}

/// Splits encoded audio into 160-byte frames, padding the last one.
pub fn frames(data: Arc<[u8]>, codec: Codec) -> Frames {
    Frames {
        data,
        pos: 0,
        silence: codec.silence_byte(),
    }
}

impl Iterator for Frames {
    type Item = [u8; FRAME_BYTES];

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..).filter(|r| !r.is_empty())?;
        let n = rest.len().min(FRAME_BYTES);
        let mut frame = [self.silence; FRAME_BYTES];
        frame[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = frame_count(self.data.len().saturating_sub(self.pos));
        (n, Some(n))
    }
}

impl ExactSizeIterator for Frames {}

#[derive(Debug)]
struct CachedPrompt {
    audio: Arc<PromptAudio>,
    pcmu: OnceLock<Arc<[u8]>>,
    pcma: OnceLock<Arc<[u8]>>,
}

/// Prompts of one directory, keyed by file stem (`welcome` → `welcome.wav`).
///
/// Each file is decoded once and encoded at most once per codec; results are
/// shared as `Arc`s. Safe to share between threads.
#[derive(Debug)]
pub struct PromptCache {
    dir: PathBuf,
    entries: Mutex<HashMap<String, Arc<CachedPrompt>>>,
}

impl PromptCache {
    /// Creates an empty cache for `dir`; files load lazily on first use.
    pub fn new(dir: impl Into<PathBuf>) -> PromptCache {
        PromptCache {
            dir: dir.into(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The prompt a call of `brand` plays for `name`: `<brand>/<name>` when
    /// the brand has its own recording (cached, or a file in the brand's
    /// folder), else `name`. No brand: `name`.
    pub fn for_brand(&self, brand: &str, name: &str) -> String {
        if brand.is_empty() {
            return name.to_string();
        }
        let branded = format!("{brand}/{name}");
        if validate_name(&branded).is_err() {
            return name.to_string();
        }
        let known =
            self.lock().contains_key(&branded) || self.dir.join(format!("{branded}.wav")).is_file();
        if known {
            branded
        } else {
            name.to_string()
        }
    }

    /// Directory the prompts are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every `*.wav` in the directory (so bad files fail at startup)
    /// and returns how many prompts are cached.
    pub fn preload_all(&self) -> Result<usize, PromptError> {
        let dir_err = |source| PromptError::Directory {
            path: self.dir.clone(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(dir_err)? {
            let path = entry.map_err(dir_err)?.path();
            let is_wav = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            if is_wav && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if self.lock().contains_key(name) {
                continue;
            }
            let audio = load_wav(&path)?;
            self.insert(name, audio);
        }
        Ok(self.lock().len())
    }

    /// Decoded audio of prompt `name`, loading it on first use.
    pub fn audio(&self, name: &str) -> Result<Arc<PromptAudio>, PromptError> {
        Ok(self.entry(name)?.audio.clone())
    }

    /// Prompt `name` encoded with `codec`; encoded once, then shared.
    pub fn encoded(&self, name: &str, codec: Codec) -> Result<Arc<[u8]>, PromptError> {
        let entry = self.entry(name)?;
        let slot = match codec {
            Codec::Pcmu => &entry.pcmu,
            Codec::Pcma => &entry.pcma,
        };
        Ok(slot
            .get_or_init(|| Arc::from(entry.audio.encode(codec)))
            .clone())
    }

    /// Frame iterator over prompt `name` encoded with `codec`.
    pub fn frames(&self, name: &str, codec: Codec) -> Result<Frames, PromptError> {
        Ok(frames(self.encoded(name, codec)?, codec))
    }

    /// Names of the prompts loaded so far, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// Adds prompt `name` from audio in memory (tests of the media core).
    #[cfg(test)]
    pub(crate) fn insert_audio(&self, name: &str, audio: PromptAudio) {
        self.insert(name, audio);
    }

    fn entry(&self, name: &str) -> Result<Arc<CachedPrompt>, PromptError> {
        validate_name(name)?;
        if let Some(e) = self.lock().get(name) {
            return Ok(e.clone());
        }
        // Load without holding the lock; if two callers race, the first wins.
        let audio = load_wav(&self.dir.join(format!("{name}.wav")))?;
        Ok(self.insert(name, audio))
    }

    fn insert(&self, name: &str, audio: PromptAudio) -> Arc<CachedPrompt> {
        self.lock()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(CachedPrompt {
                    audio: Arc::new(audio),
                    pcmu: OnceLock::new(),
                    pcma: OnceLock::new(),
                })
            })
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<CachedPrompt>>> {
        // The map is always consistent between statements, so poisoning is harmless.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Rejects names that could escape the prompt directory. Sub-folders
/// (`digits/5`) are fine; every segment must be a plain, non-hidden stem.
fn validate_name(name: &str) -> Result<(), PromptError> {
    let bad = name.is_empty()
        || name.contains(['\\', '\0', ':'])
        || name.contains("..")
        || name
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.'));
    if bad {
        Err(PromptError::InvalidName {
            name: name.to_string(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Unique temporary directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "voxgate-prompt-test-{}-{tag}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn path(&self, file: &str) -> PathBuf {
            self.0.join(file)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    enum Fmt {
        Int(u16),
        Float,
    }

    /// Writes `frames` frames; `f(frame, channel)` gives a sample in ±1.0.
    fn write_wav(
        path: &Path,
        rate: u32,
        channels: u16,
        fmt: Fmt,
        frames: usize,
        f: impl Fn(usize, usize) -> f64,
    ) {
        let (bits, format) = match fmt {
            Fmt::Int(b) => (b, hound::SampleFormat::Int),
            Fmt::Float => (32, hound::SampleFormat::Float),
        };
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create wav");
        for i in 0..frames {
            for c in 0..usize::from(channels) {
                let v = f(i, c);
                match format {
                    hound::SampleFormat::Float => w.write_sample(v as f32),
                    hound::SampleFormat::Int => {
                        let max = f64::from(1u32 << (bits - 1));
                        let s = (v * max).round().clamp(-max, max - 1.0) as i32;
                        w.write_sample(s)
                    }
                }
                .expect("write sample");
            }
        }
        w.finalize().expect("finalize wav");
    }

    fn sine(freq: f64, rate: u32, amp: f64) -> impl Fn(usize, usize) -> f64 {
        move |i, _| amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()
    }

    /// Middle part of a signal, away from filter edge effects.
    fn middle(pcm: &[i16]) -> &[i16] {
        &pcm[200..pcm.len() - 200]
    }

    fn zero_crossings(pcm: &[i16]) -> usize {
        pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    fn rms(pcm: &[i16]) -> f64 {
        let sum: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / pcm.len() as f64).sqrt()
    }

    fn peak(pcm: &[i16]) -> i32 {
        pcm.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0)
    }

    fn load_sine(rate: u32, freq: f64, fmt: Fmt, channels: u16) -> PromptAudio {
        let dir = TempDir::new("sine");
        let path = dir.path("tone.wav");
        write_wav(
            &path,
            rate,
            channels,
            fmt,
            rate as usize,
            sine(freq, rate, 0.5),
        );
        load_wav(&path).expect("load")
    }

    #[test]
    fn loads_8k_16bit_exactly() {
        let dir = TempDir::new("exact");
        let path = dir.path("a.wav");
        let samples = [0i16, 1000, -1000, 32767, -32768, 5];
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for s in samples {
            w.write_sample(s).expect("write");
        }
        w.finalize().expect("finalize");
        let audio = load_wav(&path).expect("load");
        assert_eq!(audio.pcm(), &samples);
        assert_eq!(audio.len(), 6);
        assert_eq!(audio.duration(), Duration::from_micros(750));
    }

    #[test]
    fn all_sample_formats_scale_to_same_level() {
        let dir = TempDir::new("formats");
        for (i, fmt) in [
            Fmt::Int(8),
            Fmt::Int(16),
            Fmt::Int(24),
            Fmt::Int(32),
            Fmt::Float,
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path(&format!("f{i}.wav"));
            write_wav(&path, 8000, 1, fmt, 4, |n, _| [0.5, -0.5, 0.0, -1.0][n]);
            let audio = load_wav(&path).expect("load");
            assert_eq!(audio.pcm(), &[16384, -16384, 0, -32768], "format #{i}");
        }
    }

    #[test]
    fn float_out_of_range_and_nan_are_sanitised() {
        let dir = TempDir::new("float");
        let path = dir.path("f.wav");
        write_wav(&path, 8000, 1, Fmt::Float, 4, |n, _| {
            [1.5, -3.0, f64::NAN, f64::INFINITY][n]
        });
        let audio = load_wav(&path).expect("load");
        assert_eq!(audio.pcm(), &[32767, -32768, 0, 0]);
    }

    #[test]
    fn downmixes_any_channel_count() {
        let dir = TempDir::new("mix");
        let stereo = dir.path("stereo.wav");
        write_wav(&stereo, 8000, 2, Fmt::Int(16), 3, |_, c| [0.5, 0.0][c]);
        assert_eq!(load_wav(&stereo).expect("load").pcm(), &[8192; 3]);
        let quad = dir.path("quad.wav");
        write_wav(&quad, 8000, 4, Fmt::Float, 2, |_, c| {
            [0.5, 0.25, -0.25, 0.5][c]
        });
        assert_eq!(load_wav(&quad).expect("load").pcm(), &[8192; 2]);
        // Opposite-phase channels cancel.
        let anti = dir.path("anti.wav");
        write_wav(&anti, 8000, 2, Fmt::Int(16), 2, |_, c| [0.5, -0.5][c]);
        assert_eq!(load_wav(&anti).expect("load").pcm(), &[0, 0]);
    }

    #[test]
    fn resampled_lengths() {
        let dir = TempDir::new("len");
        for (rate, frames, expect) in [
            (16000, 16000, 8000),
            (22050, 22050, 8000),
            (44100, 44100, 8000),
            (48000, 4801, 801),
            (22050, 11025, 4000),
            (22050, 1001, 364), // ceil(1001 * 160 / 441)
            (11025, 11025, 8000),
            (8000, 123, 123),
        ] {
            let path = dir.path(&format!("l{rate}-{frames}.wav"));
            write_wav(&path, rate, 1, Fmt::Int(16), frames, |_, _| 0.1);
            let audio = load_wav(&path).expect("load");
            assert_eq!(audio.len(), expect, "{rate} Hz x {frames}");
        }
    }

    #[test]
    fn one_khz_sine_keeps_frequency_and_amplitude() {
        for (rate, fmt, ch) in [
            (16000, Fmt::Int(16), 1),
            (22050, Fmt::Int(16), 1),
            (44100, Fmt::Int(24), 2),
            (44100, Fmt::Float, 1),
            (48000, Fmt::Int(16), 1),
            (11025, Fmt::Int(16), 1),
        ] {
            let audio = load_sine(rate, 1000.0, fmt, ch);
            assert_eq!(audio.len(), 8000, "{rate}");
            let mid = middle(audio.pcm());
            // 1 kHz at 8 kHz: two zero crossings per 8 samples.
            let expected = mid.len() as f64 / 4.0;
            let zc = zero_crossings(mid) as f64;
            assert!((zc - expected).abs() <= 2.0, "{rate}: {zc} vs {expected}");
            let amp = 0.5 * 32768.0;
            let p = f64::from(peak(mid));
            assert!((p - amp).abs() < amp * 0.02, "{rate}: peak {p}");
            let r = rms(mid);
            assert!(
                (r - amp / 2f64.sqrt()).abs() < amp * 0.02,
                "{rate}: rms {r}"
            );
        }
    }

    #[test]
    fn passband_edge_is_kept() {
        let audio = load_sine(22050, 3000.0, Fmt::Int(16), 1);
        let r = rms(middle(audio.pcm()));
        let full = 0.5 * 32768.0 / 2f64.sqrt();
        assert!(
            r > full * 0.89,
            "3 kHz must stay within 1 dB: {r} vs {full}"
        );
    }

    #[test]
    fn tones_near_and_above_nyquist_are_attenuated() {
        let full = 0.5 * 32768.0 / 2f64.sqrt();
        for (rate, freq, max_ratio) in [
            (22050, 3950.0, 0.01),
            (22050, 4100.0, 0.002),
            (22050, 5000.0, 0.002), // would alias to 3 kHz
            (22050, 9000.0, 0.002),
            (44100, 7000.0, 0.002),
            (16000, 4500.0, 0.002),
        ] {
            let audio = load_sine(rate, freq, Fmt::Int(16), 1);
            let r = rms(middle(audio.pcm()));
            assert!(
                r < full * max_ratio,
                "{freq} Hz from {rate} Hz: rms {r} vs {full}"
            );
        }
    }

    #[test]
    fn resampler_handles_rates_without_small_ratio() {
        // 44 056 Hz: gcd 8, so 1001 exact phases; falls back to 512 phases.
        let audio = load_sine(44056, 1000.0, Fmt::Int(16), 1);
        assert_eq!(audio.len(), 8000);
        let mid = middle(audio.pcm());
        let zc = zero_crossings(mid) as f64;
        assert!((zc - mid.len() as f64 / 4.0).abs() <= 2.0);
        assert!((f64::from(peak(mid)) - 16384.0).abs() < 16384.0 * 0.02);
    }

    #[test]
    fn missing_file_error_names_path() {
        let dir = TempDir::new("missing");
        let path = dir.path("nope.wav");
        let err = load_wav(&path).expect_err("missing");
        assert!(matches!(err, PromptError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.wav"), "{err}");
    }

    #[test]
    fn non_wav_and_truncated_files_are_rejected() {
        let dir = TempDir::new("bad");
        let text = dir.path("text.wav");
        std::fs::write(&text, b"this is not a riff file at all, just text").expect("write");
        let err = load_wav(&text).expect_err("not wav");
        assert!(matches!(err, PromptError::NotWav { .. }), "{err:?}");
        assert!(err.to_string().contains("text.wav"));

        let tiny = dir.path("tiny.wav");
        std::fs::write(&tiny, b"RIFF").expect("write");
        let err = load_wav(&tiny).expect_err("tiny");
        assert!(matches!(err, PromptError::NotWav { .. }), "{err:?}");

        let empty = dir.path("empty.wav");
        std::fs::write(&empty, b"").expect("write");
        assert!(load_wav(&empty).is_err());

        // Valid header, data chunk cut short in the middle of the samples.
        let good = dir.path("good.wav");
        write_wav(&good, 8000, 1, Fmt::Int(16), 100, |_, _| 0.25);
        let bytes = std::fs::read(&good).expect("read");
        for cut in [bytes.len() - 1, 50, 44, 30, 12] {
            let cut_path = dir.path(&format!("cut{cut}.wav"));
            std::fs::write(&cut_path, &bytes[..cut]).expect("write");
            let r = load_wav(&cut_path);
            assert!(r.is_err(), "cut at {cut} must fail: {r:?}");
        }
    }

    #[test]
    fn zero_samples_is_an_error() {
        let dir = TempDir::new("zero");
        let path = dir.path("zero.wav");
        write_wav(&path, 8000, 1, Fmt::Int(16), 0, |_, _| 0.0);
        let err = load_wav(&path).expect_err("empty");
        assert!(matches!(err, PromptError::Empty { .. }), "{err:?}");
    }

    /// Hand-made WAV with the given format tag, 8 kHz mono 8-bit.
    fn raw_wav(format_tag: u16, rate: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&format_tag.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes()); // channels
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes()); // byte rate
        v.extend_from_slice(&1u16.to_le_bytes()); // block align
        v.extend_from_slice(&8u16.to_le_bytes()); // bits
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn unsupported_encodings_and_rates_are_reported() {
        let dir = TempDir::new("unsup");
        let ulaw = dir.path("ulaw.wav");
        std::fs::write(&ulaw, raw_wav(7, 8000, &[0xFF; 8])).expect("write");
        let err = load_wav(&ulaw).expect_err("µ-law WAV unsupported by hound");
        assert!(
            matches!(
                err,
                PromptError::Unsupported { .. } | PromptError::NotWav { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("ulaw.wav"));

        let slow = dir.path("slow.wav");
        std::fs::write(&slow, raw_wav(1, 10, &[0x80; 8])).expect("write");
        let err = load_wav(&slow).expect_err("rate too low");
        assert!(matches!(err, PromptError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("10 Hz"), "{err}");

        // The same hand-made header with PCM and a sane rate loads fine.
        let pcm = dir.path("pcm.wav");
        std::fs::write(&pcm, raw_wav(1, 8000, &[0x80, 0xC0])).expect("write");
        assert_eq!(load_wav(&pcm).expect("load").pcm(), &[0, 16384]);
    }

    #[test]
    fn frames_pad_last_frame_with_silence() {
        let data: Arc<[u8]> = Arc::from(vec![1u8; 330]);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let it = frames(data.clone(), codec);
            assert_eq!(it.len(), 3);
            let all: Vec<_> = it.collect();
            assert_eq!(all.len(), 3);
            assert!(all[0].iter().chain(all[1].iter()).all(|&b| b == 1));
            assert!(all[2][..10].iter().all(|&b| b == 1));
            assert!(all[2][10..].iter().all(|&b| b == codec.silence_byte()));
        }
        assert_eq!(frames(Arc::from(Vec::new()), Codec::Pcmu).count(), 0);
        assert_eq!(frames(Arc::from(vec![0u8; 320]), Codec::Pcmu).count(), 2);
        assert_eq!(frame_count(0), 0);
        assert_eq!(frame_count(1), 1);
        assert_eq!(frame_count(160), 1);
        assert_eq!(frame_count(161), 2);
        let mut it = frames(data, Codec::Pcmu);
        it.next();
        assert_eq!(it.len(), 2);
    }

    #[test]
    fn cache_loads_and_encodes_once() {
        let dir = TempDir::new("cache");
        write_wav(
            &dir.path("welcome.wav"),
            16000,
            1,
            Fmt::Int(16),
            3200,
            sine(440.0, 16000, 0.3),
        );
        write_wav(&dir.path("bye.WAV"), 8000, 2, Fmt::Float, 100, |_, _| 0.1);
        std::fs::write(dir.path("notes.txt"), b"ignored").expect("write");
        let cache = PromptCache::new(&dir.0);
        assert_eq!(cache.dir(), dir.0.as_path());
        assert_eq!(cache.preload_all().expect("preload"), 2);
        assert_eq!(
            cache.names(),
            vec!["bye".to_string(), "welcome".to_string()]
        );

        let a1 = cache.audio("welcome").expect("audio");
        let a2 = cache.audio("welcome").expect("audio");
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(a1.len(), 1600);

        let u1 = cache.encoded("welcome", Codec::Pcmu).expect("pcmu");
        let u2 = cache.encoded("welcome", Codec::Pcmu).expect("pcmu");
        let a = cache.encoded("welcome", Codec::Pcma).expect("pcma");
        assert!(Arc::ptr_eq(&u1, &u2), "encoded once");
        assert!(!Arc::ptr_eq(&u1, &a));
        assert_eq!(u1.len(), 1600);
        assert_ne!(&u1[..], &a[..]);
        let mut decoded = Vec::new();
        g711::decode(Codec::Pcmu, &u1, &mut decoded);
        for (d, s) in decoded.iter().zip(a1.pcm()) {
            assert!((i32::from(*d) - i32::from(*s)).abs() <= 300);
        }

        let fr: Vec<_> = cache.frames("bye", Codec::Pcma).expect("frames").collect();
        assert_eq!(fr.len(), 1);
        assert!(fr[0][100..].iter().all(|&b| b == 0xD5));
    }

    #[test]
    fn a_brand_hears_its_own_prompt_where_it_has_one() {
        let dir = TempDir::new("brand");
        std::fs::create_dir_all(dir.path("acme")).expect("mkdir");
        write_wav(
            &dir.path("welcome.wav"),
            8000,
            1,
            Fmt::Int(16),
            160,
            |_, _| 0.1,
        );
        write_wav(&dir.path("bye.wav"), 8000, 1, Fmt::Int(16), 160, |_, _| 0.1);
        write_wav(
            &dir.path("acme/welcome.wav"),
            8000,
            1,
            Fmt::Int(16),
            320,
            |_, _| 0.2,
        );
        let cache = PromptCache::new(&dir.0);
        assert_eq!(cache.for_brand("acme", "welcome"), "acme/welcome");
        assert_eq!(cache.for_brand("acme", "bye"), "bye");
        assert_eq!(cache.for_brand("globex", "welcome"), "welcome");
        assert_eq!(cache.for_brand("", "welcome"), "welcome");
        assert_eq!(cache.for_brand("..", "welcome"), "welcome");
        assert_eq!(cache.audio("acme/welcome").expect("branded").len(), 320);
    }

    #[test]
    fn cache_loads_lazily_and_reports_errors() {
        let dir = TempDir::new("lazy");
        let cache = PromptCache::new(&dir.0);
        assert!(cache.names().is_empty());
        let err = cache.audio("later").expect_err("not there yet");
        assert!(matches!(err, PromptError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("later.wav"));
        // Appears afterwards: missing results are not cached.
        write_wav(&dir.path("later.wav"), 8000, 1, Fmt::Int(16), 10, |_, _| {
            0.0
        });
        assert_eq!(cache.audio("later").expect("now there").len(), 10);
        assert_eq!(cache.names(), vec!["later".to_string()]);

        for bad in [
            "",
            "../etc/passwd",
            "/etc/passwd",
            "a//b",
            "a/.b",
            "a\\b",
            ".hidden",
            "x..y",
            "c:evil",
        ] {
            let err = cache.encoded(bad, Codec::Pcmu).expect_err("invalid");
            assert!(
                matches!(err, PromptError::InvalidName { .. }),
                "{bad}: {err:?}"
            );
        }

        std::fs::write(dir.path("broken.wav"), b"garbage").expect("write");
        let err = cache.preload_all().expect_err("bad file fails preload");
        assert!(err.to_string().contains("broken.wav"), "{err}");

        let gone = PromptCache::new(dir.path("no-such-dir"));
        assert!(matches!(
            gone.preload_all(),
            Err(PromptError::Directory { .. })
        ));
    }
}
