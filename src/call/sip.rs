//! [`CallChannel`] over a live SIP dialog and its media session.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{
    CallChannel, CallError, CallInfo, CallInput, RecognitionSpec, TransferOutcome, TransferRequest,
};
use crate::asr::endpoint::EndpointConfig;
use crate::asr::{AsrError, Heard, Hints, SpeechPool};
use crate::media::prompt::PromptCache;
use crate::media::session::{MediaCommand, MediaEvent};

/// What the call asks of the SIP side.
#[derive(Debug)]
pub enum CallControl {
    Hangup { call: String },
}

pub struct SipCall {
    info: CallInfo,
    answered: Instant,
    media: mpsc::UnboundedSender<MediaCommand>,
    events: mpsc::UnboundedReceiver<MediaEvent>,
    control: mpsc::UnboundedSender<CallControl>,
    prompts: std::sync::Arc<PromptCache>,
    /// The far end is gone (BYE/CANCEL/RTP timeout seen); nothing more to do.
    gone: bool,
    /// We already asked for BYE.
    hung_up: bool,
    /// Decoders for `recognize`; None when no speech model is installed.
    speech: Option<SpeechPool>,
    /// Hints of the running recognition.
    listening: Option<Hints>,
    /// Voice detection only (speech barge-in): no recognition follows.
    voice_only: bool,
    /// Tag of the current listening; events of earlier ones are stale.
    listen_tag: u64,
    /// An utterance being decoded, and since when.
    decoding: Option<oneshot::Receiver<Result<Heard, AsrError>>>,
    decode_started: Instant,
}

impl SipCall {
    pub fn new(
        info: CallInfo,
        media: mpsc::UnboundedSender<MediaCommand>,
        events: mpsc::UnboundedReceiver<MediaEvent>,
        control: mpsc::UnboundedSender<CallControl>,
        prompts: std::sync::Arc<PromptCache>,
    ) -> Self {
        Self {
            info,
            answered: Instant::now(),
            media,
            events,
            control,
            prompts,
            gone: false,
            hung_up: false,
            speech: None,
            listening: None,
            voice_only: false,
            listen_tag: 0,
            decoding: None,
            decode_started: Instant::now(),
        }
    }

    /// Let `recognize` use these decoders.
    pub fn with_speech(mut self, pool: Option<SpeechPool>) -> Self {
        self.speech = pool;
        self
    }

    /// Wait for the ACK of our 200 before talking, so the first words are
    /// not lost; false if the call ended first.
    pub async fn wait_confirmed(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(MediaEvent::Confirmed)) => {
                    self.answered = Instant::now();
                    return true;
                }
                Ok(Some(MediaEvent::Hangup)) | Ok(None) => {
                    self.gone = true;
                    return false;
                }
                Ok(Some(_)) => continue,
                // No ACK yet: start anyway; the dialog layer ends the call if it never comes.
                Err(_) => return true,
            }
        }
    }

    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Translate media/signalling events into what a flow sees.
    fn translate(&mut self, ev: MediaEvent) -> Option<CallInput> {
        match ev {
            MediaEvent::Digit { digit, source } => Some(CallInput::Digit { digit, source }),
            MediaEvent::PlaybackDone => Some(CallInput::PlaybackDone),
            MediaEvent::RtpTimeout => {
                tracing::warn!(
                    "no RTP from the caller for the configured rtp_timeout; ending the call"
                );
                Some(CallInput::HungUp)
            }
            MediaEvent::PromptError { name, error } => {
                tracing::error!(prompt = %name, %error, "prompt cannot be played");
                None
            }
            // Events of an earlier listening (queued before it was stopped)
            // must not answer this one.
            MediaEvent::SpeechStarted(tag) => (tag == self.listen_tag
                && (self.listening.is_some() || self.voice_only))
                .then_some(CallInput::SpeechStarted),
            MediaEvent::NoSpeech(tag) => {
                if tag != self.listen_tag {
                    return None;
                }
                self.listening.take().map(|_| CallInput::NoSpeech)
            }
            MediaEvent::Utterance(tag, pcm) => {
                if tag != self.listen_tag {
                    return None;
                }
                let hints = self.listening.take()?;
                let pool = self.speech.as_ref()?;
                let secs = pcm.len() as f32 / 8000.0;
                match pool.submit(pcm, hints) {
                    Ok(rx) => {
                        tracing::debug!(utterance_s = secs, "end of speech; decoding");
                        self.decoding = Some(rx);
                        self.decode_started = Instant::now();
                        None
                    }
                    // Overload: the caller hears the no-input re-prompt rather
                    // than being sent away.
                    Err(e @ AsrError::Busy(_)) => {
                        tracing::warn!(error = %e, "speech decoders busy; treating the utterance as no input");
                        Some(CallInput::NoSpeech)
                    }
                    Err(e) => Some(CallInput::RecognitionFailed(e.to_string())),
                }
            }
            MediaEvent::Confirmed => None,
            MediaEvent::Hangup => {
                self.gone = true;
                Some(CallInput::HungUp)
            }
        }
    }
}

impl CallChannel for SipCall {
    fn info(&self) -> &CallInfo {
        &self.info
    }

    fn elapsed(&self) -> Duration {
        self.answered.elapsed()
    }

    async fn play(&mut self, prompts: &[String]) -> Result<(), CallError> {
        if self.gone {
            return Err(CallError::HungUp);
        }
        for p in prompts {
            if let Err(e) = self.prompts.audio(p) {
                return Err(CallError::Prompt(p.clone(), e.to_string()));
            }
        }
        self.media
            .send(MediaCommand::Play(prompts.to_vec()))
            .map_err(|_| CallError::HungUp)
    }

    async fn stop_playback(&mut self) {
        let _ = self.media.send(MediaCommand::Stop);
    }

    async fn start_recognition(&mut self, spec: &RecognitionSpec) -> Result<(), CallError> {
        if self.gone {
            return Err(CallError::HungUp);
        }
        let Some(pool) = &self.speech else {
            return Err(CallError::Unsupported(
                "speech recognition",
                "no speech model is installed (run scripts/fetch-whisper, or set models_dir)"
                    .into(),
            ));
        };
        if !pool.engine().speaks(spec.language.as_deref()) {
            return Err(CallError::Unsupported(
                "speech recognition",
                AsrError::Language(spec.language.clone().unwrap_or_default()).to_string(),
            ));
        }
        self.decoding = None;
        self.voice_only = false;
        self.listen_tag += 1;
        self.listening = Some(Hints {
            phrases: spec.phrases.clone(),
            digits_only: spec.digits_only,
        });
        self.media
            .send(MediaCommand::StartListening(
                EndpointConfig {
                    no_input_timeout: spec.no_input_timeout,
                    end_of_speech_timeout: spec.end_of_speech_timeout,
                    max_duration: spec.max_duration,
                },
                self.listen_tag,
            ))
            .map_err(|_| CallError::HungUp)
    }

    async fn start_voice_detection(&mut self) -> Result<(), CallError> {
        if self.gone {
            return Err(CallError::HungUp);
        }
        self.listening = None;
        self.decoding = None;
        self.voice_only = true;
        self.listen_tag += 1;
        // Only the start of speech matters; a short max keeps the buffered audio small.
        self.media
            .send(MediaCommand::StartListening(
                EndpointConfig {
                    no_input_timeout: Duration::MAX,
                    end_of_speech_timeout: Duration::from_secs(1),
                    max_duration: Duration::from_secs(1),
                },
                self.listen_tag,
            ))
            .map_err(|_| CallError::HungUp)
    }

    async fn stop_recognition(&mut self) {
        if self.listening.take().is_some() || self.voice_only {
            let _ = self.media.send(MediaCommand::StopListening);
        }
        // Whatever that listening still has in flight is stale now.
        self.listen_tag += 1;
        self.voice_only = false;
        self.decoding = None;
    }

    async fn next_input(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<CallInput>, CallError> {
        if self.gone {
            return Err(CallError::HungUp);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ev = tokio::select! {
                ev = self.events.recv() => ev,
                res = decoded(&mut self.decoding) => {
                    self.decoding = None;
                    let decode_ms = self.decode_started.elapsed().as_millis() as u64;
                    // Never the words themselves: they may be an account number.
                    match &res {
                        Ok(Heard::Speech(r)) => tracing::info!(decode_ms, confidence = r.confidence, words = r.text.split_whitespace().count(), "speech recognised"),
                        Ok(Heard::Nothing) => tracing::info!(decode_ms, "sound, but no speech"),
                        Err(e) => tracing::warn!(decode_ms, error = %e, "speech recognition failed"),
                    }
                    return Ok(Some(match res {
                        Ok(Heard::Speech(r)) => CallInput::Speech(r),
                        Ok(Heard::Nothing) => CallInput::NoSpeech,
                        Err(e) => CallInput::RecognitionFailed(e.to_string()),
                    }));
                }
                _ = sleep_until_opt(deadline) => return Ok(None),
            };
            let Some(ev) = ev else {
                self.gone = true;
                return Ok(Some(CallInput::HungUp));
            };
            if let Some(input) = self.translate(ev) {
                if input == CallInput::HungUp {
                    self.gone = true;
                }
                return Ok(Some(input));
            }
        }
    }

    async fn transfer(&mut self, req: &TransferRequest) -> Result<TransferOutcome, CallError> {
        Err(CallError::Unsupported(
            "transfer",
            format!(
                "transfer to {} is not implemented yet in serve (see the transfer issue)",
                req.target
            ),
        ))
    }

    async fn hangup(&mut self) {
        if !self.hung_up && !self.gone {
            self.hung_up = true;
            let _ = self.control.send(CallControl::Hangup {
                call: self.info.call_id.clone(),
            });
        }
        self.gone = true;
    }
}

/// The running decode's result; pending forever when nothing is decoding.
async fn decoded(
    rx: &mut Option<oneshot::Receiver<Result<Heard, AsrError>>>,
) -> Result<Heard, AsrError> {
    match rx {
        Some(rx) => rx
            .await
            .unwrap_or_else(|_| Err(AsrError::Decode("the decoder thread stopped".into()))),
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
