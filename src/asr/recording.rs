//! A recording heard as a call would hear it: cut to telephone quality
//! (8 kHz, G.711 µ-law round trip, as it would arrive over RTP), fed frame by
//! frame through the same endpointer a live call uses, on a simulated clock,
//! and the utterance the endpointer cuts out decoded by a speech engine.
//! Used by flow tests (`audio:` lines) and `voxgate recognize`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::endpoint::{EndpointEvent, Endpointer};
use super::speculate::{OnAnswer, OnFinal, Speculation};
use super::{Heard, RecognitionSpec, SpeechEngine, Timers};
use crate::media::g711::{self, Codec};
use crate::media::prompt;

/// What the caller's recording produced, in time from when it started.
#[derive(Clone, Debug, PartialEq)]
pub enum Simulated {
    /// Voice activity at `started`, result at `ended`.
    Heard {
        /// When the endpointer confirmed speech.
        started: Duration,
        /// When the utterance ended (end-of-speech silence or the maximum
        /// duration), i.e. when a live call would have the result.
        ended: Duration,
        /// What the engine decoded from the utterance.
        heard: Heard,
    },
    /// The endpointer found no speech in the recording: the recogniser's own
    /// no-input timer decides.
    Silent,
}

/// When voice activity starts in the recording `path` (None: no voice).
pub fn voice_onset(path: &Path) -> Result<Option<Duration>, String> {
    let pcm = phone_audio(path)?;
    let t0 = Instant::now();
    let mut ep = Endpointer::new(Timers::VOICE_ONSET, t0);
    for (i, frame) in pcm.chunks(160).enumerate() {
        let at = Duration::from_millis(20 * i as u64);
        let mut evs: Vec<EndpointEvent> = ep.push(t0 + at, frame).into_iter().collect();
        while let Some(ev) = ep.poll(t0 + at) {
            evs.push(ev);
        }
        if evs
            .iter()
            .any(|e| matches!(e, EndpointEvent::SpeechStarted))
        {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// The recording as it arrives over the phone: 8 kHz, µ-law there and back.
pub fn phone_audio(path: &Path) -> Result<Vec<i16>, String> {
    let audio = prompt::load_wav(path).map_err(|e| format!("audio `{}`: {e}", path.display()))?;
    let mut ulaw = Vec::new();
    g711::encode(Codec::Pcmu, audio.pcm(), &mut ulaw);
    let mut pcm = Vec::with_capacity(ulaw.len());
    g711::decode(Codec::Pcmu, &ulaw, &mut pcm);
    Ok(pcm)
}

/// Play `path` into a recognition with `spec` and decode what it cuts out.
/// With `spec.early` the turn speculates as a call does ([`super::speculate`],
/// pauses gated as in `serve`), each decode taken as instant: the verdict
/// is the one a call with an idle decoder reaches (a pause heard short of
/// the answer makes the turn wait for the rest, so the audio decided on can
/// be longer than without speculation).
pub fn hear_file(
    engine: &dyn SpeechEngine,
    path: &Path,
    spec: &RecognitionSpec,
) -> Result<Simulated, String> {
    let pcm = phone_audio(path)?;
    let duration = Duration::from_millis(pcm.len() as u64 / 8);
    let decode = |pcm: &[i16]| {
        engine
            .recognize(pcm, &spec.hints())
            .map_err(|e| format!("audio `{}`: {e}", path.display()))
    };

    let t0 = Instant::now();
    // The recording starts at once; the flow's own timer covers silence.
    let mut ep = Endpointer::new(spec.timers, t0);
    let mut speculation = spec.early.as_ref().map(|e| {
        ep.speculate_after(e.after);
        Speculation::new(e.complete.clone())
    });
    let mut started = None;
    let silence = [0i16; 160];
    let frames = pcm.chunks(160).chain(std::iter::repeat(&silence[..]));
    // Long enough for every timer to fire after the recording.
    let limit = duration + spec.timers.no_input_timeout + spec.timers.longest_end_of_speech();
    for (i, frame) in frames.enumerate() {
        let at = Duration::from_millis(20 * i as u64);
        if at > limit + Duration::from_secs(1) {
            break;
        }
        let mut events: Vec<EndpointEvent> = ep.push(t0 + at, frame).into_iter().collect();
        while let Some(ev) = ep.poll(t0 + at) {
            events.push(ev);
        }
        let heard_at = |started: Option<Duration>, heard| Simulated::Heard {
            started: started.unwrap_or(at),
            ended: at + Duration::from_millis(20),
            heard,
        };
        for ev in events {
            match ev {
                EndpointEvent::SpeechStarted => started = Some(at),
                EndpointEvent::Pause(u) => {
                    let Some(m) = speculation.as_mut() else {
                        continue;
                    };
                    if !m.pause(&u.pcm) {
                        continue;
                    }
                    // A failed decode is no answer, as on a call.
                    let Ok(heard) = decode(&u.pcm) else {
                        m.resumed();
                        continue;
                    };
                    match m.answer(heard) {
                        OnAnswer::Decide(heard) => return Ok(heard_at(started, heard)),
                        OnAnswer::Keep => {
                            if let Some((cut_len, short)) = m.kept() {
                                ep.pause_heard(cut_len, short);
                            }
                        }
                        OnAnswer::Drop => {}
                    }
                }
                EndpointEvent::Resumed => {
                    if let Some(m) = speculation.as_mut() {
                        m.resumed();
                    }
                }
                EndpointEvent::NoInput => return Ok(Simulated::Silent),
                EndpointEvent::Utterance(u) => {
                    let heard = match speculation.as_mut().map(|m| m.finish(&u.pcm)) {
                        Some(OnFinal::Use(heard)) => heard,
                        // Decodes are instant here: none is under way.
                        Some(OnFinal::Await | OnFinal::Decode) | None => decode(&u.pcm)?,
                    };
                    return Ok(heard_at(started, heard));
                }
            }
        }
    }
    Ok(Simulated::Silent)
}
