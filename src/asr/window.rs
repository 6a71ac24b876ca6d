//! The short encoder window: Whisper's encoder always costs a whole 30 s
//! window (~0.45 s of CPU for tiny.en), however short the utterance. We encode
//! only max(5 s, utterance + 1 s) of log-mel and splice its output in front of
//! the cached encoder output of a silent 30 s window, so the decoder still
//! sees its 1500 positions. That silent window sits at the utterance's own
//! padding level ([`floor_level`]; one encoding cached per [`LEVEL_STEP`],
//! digital silence's at load): at −1.5 for every utterance, Whisper's
//! no-speech probability of genuine speech rose and more right answers were
//! gated out (bench/README.md, "Short encoder window, variants"). Plain truncation — handing
//! the decoder fewer positions — makes Whisper loop ("2 1 9 9 9 9…"); the
//! splice was measured to keep the exact-transcript count (asr.md).
//!
//! ct2rs exposes the encoder (`Whisper::encode`) and accepts an encoder
//! output in `generate`, but has no accessor for a `StorageView`'s values:
//! [`encoder_output`] reads them through CTranslate2's own exported
//! `StorageView::data<float>() const`.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, PoisonError, RwLock};

use ct2rs::sys::StorageView;

use super::mel::{HOP, N_FRAMES, N_MELS};

/// Encoder positions of a full window (its two convolutions halve the frames).
pub const POSITIONS: usize = N_FRAMES / 2;
/// The shortest window encoded: 5 s of mel frames.
const MIN_FRAMES: usize = 500;
/// Frames of padding kept after the audio (1 s): the model expects to see the
/// speech end.
const TAIL_FRAMES: usize = 100;

/// Mel frames to encode for `samples_16k` samples of 16 kHz audio:
/// max(5 s, audio + 1 s), even (the encoder halves it), at most 30 s.
pub fn frames_for(samples_16k: usize) -> usize {
    let f = (samples_16k.div_ceil(HOP) + TAIL_FRAMES).clamp(MIN_FRAMES, N_FRAMES);
    f + f % 2
}

/// The log-mel level of the padding after the audio in a full window: the
/// front end clamps every value at the window's maximum − 8 (log10), so the
/// zero padding sits at the minimum. −1.5 for silence; for speech it follows
/// the utterance's loudness.
pub fn floor_level(mel: &[f32]) -> f32 {
    mel.iter().copied().fold(f32::INFINITY, f32::min).max(-1.5)
}

/// Width of the level steps the silent tails are cached at.
pub const LEVEL_STEP: f32 = 0.05;

/// Encoder outputs of silent 30 s windows (every mel value at one level),
/// one per level step seen: the tail a short window is spliced onto should
/// be what Whisper's own padding after *this* utterance encodes to.
#[derive(Default)]
pub struct Tails {
    by_step: RwLock<HashMap<i32, Arc<Vec<f32>>>>,
}

impl Tails {
    /// The tail for `level` (rounded to [`LEVEL_STEP`]), encoded by `encode`
    /// (given the rounded level) the first time that step is asked for.
    pub fn get<E>(
        &self,
        level: f32,
        encode: impl FnOnce(f32) -> Result<Vec<f32>, E>,
    ) -> Result<Arc<Vec<f32>>, E> {
        let step = (level / LEVEL_STEP).round() as i32;
        if let Some(t) = self
            .by_step
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&step)
        {
            return Ok(Arc::clone(t));
        }
        // Two decodes may encode the same step at once: the same values.
        let t = Arc::new(encode(step as f32 * LEVEL_STEP)?);
        self.by_step
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(step, Arc::clone(&t));
        Ok(t)
    }
}

/// The first `frames` frames of a row-major `[N_MELS][N_FRAMES]` log-mel, as
/// a row-major `[N_MELS][frames]` one.
pub fn first_frames(mel: &[f32], frames: usize) -> Vec<f32> {
    let frames = frames.min(N_FRAMES);
    mel.chunks_exact(N_FRAMES)
        .take(N_MELS)
        .flat_map(|row| &row[..frames])
        .copied()
        .collect()
}

extern "C" {
    // `const float* ctranslate2::StorageView::data<float>() const` (Itanium
    // C++ ABI: `this` is the only, first argument). CTranslate2 instantiates
    // and exports it, in the static (ruy) build and the shared (PyPI) one.
    #[link_name = "_ZNK11ctranslate211StorageView4dataIfEEPKT_v"]
    fn ct2_storage_view_data_f32(view: *const c_void) -> *const f32;
}

/// The values of an encoder output: `encode(features, to_cpu = true)` of a
/// model loaded with int8 compute on the CPU, whose encoder output is float32
/// in host memory (the only kind this is called on: `data<float>()` throws on
/// any other type, which would abort the process).
pub fn encoder_output(view: &StorageView<'_>) -> Vec<f32> {
    let n = usize::try_from(view.size()).unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    // A cxx reference to an opaque C++ type is the address of the C++ object.
    let this = std::ptr::from_ref(&**view).cast::<c_void>();
    // SAFETY: `this` is a live ctranslate2::StorageView (borrowed for this
    // call) holding `n` float32 values on the CPU (see above); the slice is
    // copied before the borrow ends.
    unsafe {
        let data = ct2_storage_view_data_f32(this);
        if data.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(data, n).to_vec()
    }
}

/// `head` (the encoder output of a short window, `[1, k, d]`) over the first
/// positions of `silent` (a full window's, `[1, POSITIONS, d]`). None when
/// the shapes do not fit.
pub fn splice(silent: &[f32], head: &[f32]) -> Option<Vec<f32>> {
    if head.len() > silent.len() || silent.len() % POSITIONS != 0 {
        return None;
    }
    let d = silent.len() / POSITIONS;
    if d == 0 || head.len() % d != 0 {
        return None;
    }
    let mut out = silent.to_vec();
    out[..head.len()].copy_from_slice(head);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_five_seconds_or_the_audio_plus_one() {
        assert_eq!(frames_for(0), 500);
        assert_eq!(frames_for(16_000), 500); // 1 s of audio
        assert_eq!(frames_for(16_000 * 4), 500); // 4 s + 1 s
        assert_eq!(frames_for(16_000 * 6), 700); // 6 s + 1 s
        assert_eq!(frames_for(16_000 * 6 + 1), 702); // a partial frame, made even
        assert_eq!(frames_for(16_000 * 40), N_FRAMES);
    }

    #[test]
    fn first_frames_keeps_each_bands_start() {
        let mel: Vec<f32> = (0..N_MELS * N_FRAMES).map(|i| i as f32).collect();
        let short = first_frames(&mel, 4);
        assert_eq!(short.len(), N_MELS * 4);
        assert_eq!(&short[..4], &[0.0, 1.0, 2.0, 3.0]);
        let f = N_FRAMES as f32;
        assert_eq!(&short[4..8], &[f, f + 1.0, f + 2.0, f + 3.0]);
    }

    #[test]
    fn floor_is_the_padding_level_and_tails_are_cached_by_step() {
        assert_eq!(floor_level(&[-0.7, 0.4, -0.7, 1.2]), -0.7);
        assert_eq!(floor_level(&[-3.0]), -1.5);
        let tails = Tails::default();
        let mut encoded = Vec::new();
        let mut get = |level: f32| {
            tails
                .get(level, |l| {
                    encoded.push(l);
                    Ok::<_, ()>(vec![l])
                })
                .unwrap()
        };
        assert_eq!(*get(-0.71), vec![-0.7]);
        assert_eq!(*get(-0.69), vec![-0.7]); // same step: not encoded again
        assert_eq!(*get(-0.8), vec![-0.8]);
        assert_eq!(encoded.len(), 2);
    }

    #[test]
    fn splice_replaces_the_head_only() {
        let silent = vec![1.0f32; POSITIONS * 2];
        let out = splice(&silent, &[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(&out[..5], &[5.0, 6.0, 7.0, 8.0, 1.0]);
        assert_eq!(out.len(), silent.len());
        assert!(splice(&silent, &[1.0; 3]).is_none()); // not whole positions
        assert!(splice(&[0.0; 7], &[]).is_none()); // not a full window
    }
}
