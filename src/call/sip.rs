//! [`CallChannel`] over a live SIP dialog and its media session.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    CallChannel, CallError, CallInfo, CallInput, RecognitionSpec, TransferOutcome, TransferRequest,
};
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
        }
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

    async fn start_recognition(&mut self, _spec: &RecognitionSpec) -> Result<(), CallError> {
        Err(CallError::Unsupported(
            "speech recognition",
            "no speech recogniser is configured in this build (see the speech recognition issue)"
                .into(),
        ))
    }

    async fn stop_recognition(&mut self) {}

    async fn next_input(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<CallInput>, CallError> {
        if self.gone {
            return Err(CallError::HungUp);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ev = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.events.recv()).await {
                    Ok(ev) => ev,
                    Err(_) => return Ok(None),
                },
                None => self.events.recv().await,
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
