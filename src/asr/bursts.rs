//! Bursts of sound in an utterance: runs of loud 20 ms frames apart by
//! short quiet gaps. A caller reading digits with pauses says one or a few
//! per burst, so the bursts bound how many digits a turn's audio can hold
//! before anything is decoded ([`super::answer`]: speculation decodes a
//! pause only if it can, the endpointer waits longer while it cannot).
//! Cheap (frame energy only) and rough: a wrong count only moves *when* a
//! turn is decoded, never what it decides.

use std::time::Duration;

/// 20 ms at 8 kHz.
const FRAME: usize = 160;

/// Quiet shorter than this inside a burst (a stop's closure, a breath
/// between two quick words) does not split it.
const MIN_GAP_FRAMES: usize = 6;

/// A frame is loud when this far above the utterance's quiet level…
const ABOVE_FLOOR_DB: f64 = 9.0;

/// …and no further than this below its loudest frame.
const BELOW_PEAK_DB: f64 = 30.0;

fn frame_db(f: &[i16]) -> f64 {
    let e = f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len().max(1) as f64;
    10.0 * (e + 1.0).log10()
}

/// The duration of each burst in `pcm` (8 kHz), first to last loud frame.
pub fn bursts(pcm: &[i16]) -> Vec<Duration> {
    let db: Vec<f64> = pcm.chunks(FRAME).map(frame_db).collect();
    if db.is_empty() {
        return Vec::new();
    }
    // The cut's pre-roll and tail are quiet: its quietest frame is the
    // line (a percentile would be speech in a long utterance). Leading frames
    // of digital zero are not counted: they are the endpointer's padding (a
    // cut whose speech starts at its first sample gets its pre-roll as
    // zeros), and at 0 dB they let line noise pass as sound: a noisy
    // six-digit turn cut after two digits counted as one 1.96 s burst, "six
    // digits". A line that is digital silence between words still has its
    // zeros in the pauses and the tail.
    let padding = pcm
        .chunks(FRAME)
        .take_while(|f| f.iter().all(|&s| s == 0))
        .count();
    let floor = db[padding..].iter().copied().fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    let peak = db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let threshold = (floor + ABOVE_FLOOR_DB).max(peak - BELOW_PEAK_DB);
    let mut out = Vec::new();
    // (first loud frame, last loud frame) of the burst under way.
    let mut run: Option<(usize, usize)> = None;
    for (i, &d) in db.iter().enumerate() {
        if d < threshold || d <= floor {
            continue;
        }
        run = match run {
            Some((a, b)) if i - b <= MIN_GAP_FRAMES => Some((a, i)),
            Some((a, b)) => {
                out.push(frames(b + 1 - a));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        out.push(frames(b + 1 - a));
    }
    out
}

fn frames(n: usize) -> Duration {
    Duration::from_millis(20 * n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| (8000.0 * (i as f64 * 0.3).sin()) as i16)
            .collect()
    }

    fn quiet(ms: usize) -> Vec<i16> {
        (0..ms * 8).map(|i| ((i * 7919) % 41) as i16 - 20).collect()
    }

    #[test]
    fn bursts_apart_by_pauses_are_counted_with_their_length() {
        let pcm = [
            quiet(300),
            tone(400),
            quiet(300),
            tone(200),
            quiet(60),
            tone(200),
            quiet(200),
        ]
        .concat();
        // The 60 ms gap does not split the second burst.
        assert_eq!(
            bursts(&pcm),
            vec![Duration::from_millis(400), Duration::from_millis(460)]
        );
    }

    #[test]
    fn padding_of_digital_zero_is_not_the_lines_level() {
        // Line noise 20 dB under two 300 ms digits, the cut padded with
        // 300 ms of zeros: still two bursts, the noise between them quiet.
        let noise = |ms: usize| -> Vec<i16> {
            (0..ms * 8)
                .map(|i| ((i * 7919 + 13) % 401) as i16 - 200)
                .collect()
        };
        let loud = |ms: usize| -> Vec<i16> { tone(ms).iter().map(|&s| s / 4).collect() };
        let pcm = [
            vec![0; 300 * 8],
            noise(100),
            loud(300),
            noise(600),
            loud(300),
            noise(200),
        ]
        .concat();
        assert_eq!(
            bursts(&pcm),
            vec![Duration::from_millis(300), Duration::from_millis(300)]
        );
    }

    #[test]
    fn silence_has_no_bursts() {
        assert!(bursts(&quiet(500)).is_empty());
        assert!(bursts(&[]).is_empty());
        assert!(bursts(&vec![0; 4000]).is_empty());
    }
}
