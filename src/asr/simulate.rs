//! One listening turn played in simulated real time, with or without
//! speculative decoding ([`super::speculate`]): audio frames arrive every
//! 20 ms, the endpointer runs as on a call, and each decode takes the time
//! it really took (measured by the caller's clock, e.g. CPU time: one core
//! per decode) during which the audio goes on. Gives when the turn was
//! decided after the caller's last speech and how many decodes it cost —
//! what `evaluate-passphrases` reports as decision latency.

use std::time::{Duration, Instant};

use super::endpoint::{EndpointEvent, Endpointer};
use super::speculate::{EarlyAnswer, Gating, OnAnswer, OnFinal, Speculation};
use super::{AsrError, Heard, RecognitionSpec, SpeechEngine};

/// What one simulated turn gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Timed {
    /// The turn's result (None: no speech).
    pub heard: Option<Heard>,
    /// From the end of the caller's speech (the last speech frame) to the
    /// result (zero without speech).
    pub latency: Duration,
    /// Decodes run, speculative ones included.
    pub decodes: u32,
    /// A speculative answer decided before the end-of-speech timer.
    pub early: bool,
    /// Pauses the speculation's gating left undecoded.
    pub skipped: u32,
}

/// A decode and how long it took by `clock`.
fn timed_decode(
    engine: &dyn SpeechEngine,
    pcm: &[i16],
    spec: &RecognitionSpec,
    clock: &mut dyn FnMut() -> Duration,
) -> Result<(Heard, Duration), AsrError> {
    let t0 = clock();
    let heard = engine.recognize(pcm, &spec.hints())?;
    Ok((heard, clock().saturating_sub(t0)))
}

/// Play `pcm` (8 kHz, telephone quality) into a turn with `spec`'s timers,
/// speculating per `early` with its gating of pauses (None: decode at the
/// end of the turn only).
pub fn turn(
    engine: &dyn SpeechEngine,
    pcm: &[i16],
    spec: &RecognitionSpec,
    early: Option<(&EarlyAnswer, Gating)>,
    clock: &mut dyn FnMut() -> Duration,
) -> Result<Timed, AsrError> {
    let t0 = Instant::now();
    let mut ep = Endpointer::new(spec.timers, t0);
    let mut spec_machine = early.map(|(e, gating)| {
        ep.speculate_after(e.after);
        Speculation::with_gating(e.complete.clone(), gating)
    });
    let skipped = |m: &Option<Speculation>| m.as_ref().map_or(0, Speculation::skipped);
    // The speculative answer and when it is ready.
    let mut pending: Option<(Duration, Heard)> = None;
    let mut decodes = 0;
    let mut last_speech = Duration::ZERO;
    let silence = [0i16; 160];
    let frames = pcm.chunks(160).chain(std::iter::repeat(&silence[..]));
    let limit = Duration::from_millis(pcm.len() as u64 / 8)
        + spec.timers.no_input_timeout
        + spec.timers.longest_end_of_speech()
        + Duration::from_secs(1);
    let done = |heard, decided: Duration, last_speech: Duration, decodes, early, skipped| Timed {
        heard: Some(heard),
        latency: decided.saturating_sub(last_speech),
        decodes,
        early,
        skipped,
    };
    for (i, frame) in frames.enumerate() {
        let at = Duration::from_millis(20 * i as u64);
        if at > limit {
            break;
        }
        // A speculative answer that is ready before this frame.
        if let (Some(m), Some((ready, _))) = (spec_machine.as_mut(), pending.as_ref()) {
            if *ready <= at {
                let (ready, heard) = pending.take().expect("checked");
                match m.answer(heard) {
                    OnAnswer::Decide(h) => {
                        let skipped = m.skipped();
                        return Ok(done(h, ready, last_speech, decodes, true, skipped));
                    }
                    OnAnswer::Keep => {
                        if let Some((cut_len, short)) = m.kept() {
                            ep.pause_heard(cut_len, short);
                        }
                    }
                    OnAnswer::Drop => {}
                }
            }
        }
        let mut events: Vec<EndpointEvent> = ep.push(t0 + at, frame).into_iter().collect();
        while let Some(ev) = ep.poll(t0 + at) {
            events.push(ev);
        }
        if let Some(t) = ep.last_speech_at() {
            last_speech = t.saturating_duration_since(t0);
        }
        for ev in events {
            match ev {
                EndpointEvent::SpeechStarted => {}
                EndpointEvent::NoInput => {
                    return Ok(Timed {
                        heard: None,
                        latency: Duration::ZERO,
                        decodes,
                        early: false,
                        skipped: skipped(&spec_machine),
                    })
                }
                EndpointEvent::Pause(u) => {
                    if let Some(m) = spec_machine.as_mut() {
                        if m.pause(&u.pcm) {
                            ep.pause_decoding(u.pcm.len());
                            decodes += 1;
                            let (heard, took) = timed_decode(engine, &u.pcm, spec, clock)?;
                            pending = Some((at + took, heard));
                        } else {
                            // Any decode under way is of older audio.
                            pending = None;
                        }
                    }
                }
                EndpointEvent::Resumed => {
                    if let Some(m) = spec_machine.as_mut() {
                        m.resumed();
                    }
                    pending = None;
                }
                EndpointEvent::Utterance(u) => {
                    if u.cut_by_max_duration {
                        last_speech = at;
                    }
                    let outcome = match spec_machine.as_mut() {
                        Some(m) => m.finish(&u.pcm),
                        None => OnFinal::Decode,
                    };
                    let skipped = skipped(&spec_machine);
                    match outcome {
                        OnFinal::Use(h) => {
                            return Ok(done(h, at, last_speech, decodes, false, skipped))
                        }
                        OnFinal::Await => {
                            let (ready, heard) = pending.take().ok_or_else(|| {
                                AsrError::Decode("no speculative decode to await".into())
                            })?;
                            return Ok(done(
                                heard,
                                ready.max(at),
                                last_speech,
                                decodes,
                                false,
                                skipped,
                            ));
                        }
                        OnFinal::Decode => {
                            decodes += 1;
                            let (heard, took) = timed_decode(engine, &u.pcm, spec, clock)?;
                            return Ok(done(
                                heard,
                                at + took,
                                last_speech,
                                decodes,
                                false,
                                skipped,
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(Timed {
        heard: None,
        latency: Duration::ZERO,
        decodes,
        early: false,
        skipped: skipped(&spec_machine),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::speculate::{Complete, DEFAULT_AFTER, MAX_DECODES};
    use crate::asr::{Hints, SpeechResult, Timers};

    /// "Hears" a `1` for each burst of sound (runs of loud 20 ms frames
    /// apart by 100 ms or more): a deterministic stand-in for a decoder.
    struct Bursts;

    impl SpeechEngine for Bursts {
        fn name(&self) -> &str {
            "bursts"
        }
        fn speaks(&self, _: Option<&str>) -> bool {
            true
        }
        fn recognize(&self, pcm: &[i16], _: &Hints) -> Result<Heard, AsrError> {
            let (mut n, mut quiet) = (0, 5);
            for f in pcm.chunks(160) {
                let e = f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64;
                if e.sqrt() > 1000.0 {
                    if quiet >= 5 {
                        n += 1;
                    }
                    quiet = 0;
                } else {
                    quiet += 1;
                }
            }
            Ok(Heard::Speech(SpeechResult {
                text: vec!["1"; n].join(" "),
                confidence: 0.9,
            }))
        }
    }

    fn silence(ms: usize) -> Vec<i16> {
        vec![0; ms * 8]
    }

    /// A vowel-like burst (140 Hz with harmonics) the endpointer takes as speech.
    fn burst(ms: usize) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let s: f32 = (1..=12)
                    .map(|k| (std::f32::consts::TAU * 140.0 * k as f32 * t).sin() / k as f32)
                    .sum();
                (4000.0 * s) as i16
            })
            .collect()
    }

    fn spec() -> RecognitionSpec {
        RecognitionSpec {
            phrases: Vec::new(),
            digits_only: true,
            language: None,
            timers: Timers::RECORDING,
            early: None,
            confirm: false,
            digit_answer: None,
        }
    }

    /// The turn with and without speculation (every pause decoded: the
    /// simulation itself; the gating has its own test), each decode taking
    /// 50 ms.
    fn both(sig: &[i16], digits: usize) -> (Timed, Timed) {
        let early = EarlyAnswer {
            after: DEFAULT_AFTER,
            complete: Complete::Digits(digits),
        };
        let mut t = Duration::ZERO;
        let mut clock = move || {
            t += Duration::from_millis(50);
            t
        };
        let with = turn(
            &Bursts,
            sig,
            &spec(),
            Some((&early, Gating::EveryPause)),
            &mut clock,
        )
        .unwrap();
        let without = turn(&Bursts, sig, &spec(), None, &mut clock).unwrap();
        (with, without)
    }

    fn cat(parts: &[Vec<i16>]) -> Vec<i16> {
        parts.concat()
    }

    #[test]
    fn a_whole_answer_is_decided_at_the_first_pause_with_the_same_result() {
        let sig = cat(&[
            silence(500),
            burst(300),
            silence(150),
            burst(300),
            silence(150),
            burst(300),
            silence(3000),
        ]);
        let (with, without) = both(&sig, 3);
        assert_eq!(with.heard, without.heard);
        assert_eq!(
            with.heard,
            Some(Heard::Speech(SpeechResult {
                text: "1 1 1".into(),
                confidence: 0.9
            }))
        );
        assert!(with.early && !without.early);
        assert_eq!((with.decodes, without.decodes), (1, 1));
        // 200 ms pause + 50 ms decode against 800 ms timer + 50 ms decode.
        assert_eq!(with.latency, Duration::from_millis(250));
        assert_eq!(without.latency, Duration::from_millis(850));
    }

    #[test]
    fn a_mid_answer_pause_is_incomplete_and_the_caller_goes_on() {
        // Two digits, a 500 ms pause (longer than the speculation's 200 ms,
        // shorter than the 800 ms timer), the third.
        let sig = cat(&[
            silence(500),
            burst(300),
            silence(150),
            burst(300),
            silence(500),
            burst(300),
            silence(3000),
        ]);
        let (with, without) = both(&sig, 3);
        assert_eq!(with.heard, without.heard);
        assert!(with.early);
        // The pause's decode ("1 1") was paid for and dropped.
        assert_eq!(with.decodes, 2);
        assert!(with.latency < without.latency);
    }

    #[test]
    fn an_incomplete_answer_waits_for_the_timer_and_reuses_the_decode() {
        let sig = cat(&[
            silence(500),
            burst(300),
            silence(150),
            burst(300),
            silence(3000),
        ]);
        let (with, without) = both(&sig, 3);
        assert_eq!(with.heard, without.heard);
        assert!(!with.early);
        assert_eq!(with.decodes, 1, "the pause's decode is the turn's");
        // Decided when the timer ends: the decode was done long before.
        assert_eq!(with.latency, Duration::from_millis(800));
        assert_eq!(without.latency, Duration::from_millis(850));
    }

    #[test]
    fn the_same_results_over_many_pause_patterns() {
        for gap in [100, 200, 240, 300, 500, 700, 780, 900] {
            for n in 1..=4 {
                let mut parts = vec![silence(400)];
                for i in 0..n {
                    if i > 0 {
                        parts.push(silence(gap));
                    }
                    parts.push(burst(250));
                }
                parts.push(silence(3000));
                let sig = cat(&parts);
                for digits in 1..=4 {
                    let (with, without) = both(&sig, digits);
                    // An early decision is only ever on a whole answer
                    // heard before the caller went on: with a pause shorter
                    // than the timer, the caller's later words are not in
                    // it. So compare only where the whole turn fits.
                    if with.early && n > digits {
                        continue;
                    }
                    assert_eq!(with.heard, without.heard, "gap {gap} n {n} digits {digits}");
                    assert!(with.latency <= without.latency);
                }
            }
        }
    }

    #[test]
    fn pauses_that_cannot_hold_the_answer_are_not_decoded() {
        // Six digits with a 300 ms pause after each: every pause is a
        // speculation point, but only those near the whole answer are worth
        // a decode.
        let mut parts = vec![silence(400)];
        for i in 0..6 {
            if i > 0 {
                parts.push(silence(300));
            }
            parts.push(burst(250));
        }
        parts.push(silence(3000));
        let sig = cat(&parts);
        let early = EarlyAnswer {
            after: DEFAULT_AFTER,
            complete: Complete::Digits(6),
        };
        let mut t = Duration::ZERO;
        let mut clock = move || {
            t += Duration::from_millis(50);
            t
        };
        let mut run = |g| turn(&Bursts, &sig, &spec(), g, &mut clock).unwrap();
        let every = run(Some((&early, Gating::EveryPause)));
        let gated = run(Some((&early, Gating::Plausible)));
        let off = run(None);
        assert_eq!(gated.heard, off.heard);
        assert_eq!(every.heard, off.heard);
        assert_eq!(every.decodes, 6, "one per pause");
        assert!(gated.decodes <= MAX_DECODES, "{gated:?}");
        assert!(gated.skipped >= 3, "{gated:?}");
        assert_eq!(gated.decodes + gated.skipped, 6);
        // And the last pause was still decoded: decided early all the same.
        assert!(gated.early && every.early);
        assert_eq!(gated.latency, every.latency);
    }
}
