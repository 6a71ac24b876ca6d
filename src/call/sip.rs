//! [`CallChannel`] over a live SIP dialog and its media session.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::bridge::{media_event, AgentLeg, Dialer, PlaceError};
use super::hold::{self, CallerSdp, HoldOffer, HoldRelay, LegSdp, Side};
use super::{
    CallChannel, CallError, CallInfo, CallInput, RecognitionSpec, TransferFailure, TransferMode,
    TransferOutcome, TransferPath, TransferRequest,
};
use crate::asr::speculate::{OnAnswer, OnFinal, Speculation};
use crate::asr::{AsrError, Heard, Hints, SpeechPool, Timers};
use crate::media::g711::Codec;
use crate::media::prompt::PromptCache;
use crate::media::session::{MediaCommand, MediaEvent};
use crate::sip::handler::{LegEvent, ReferEvent};

/// What the call asks of the SIP side.
#[derive(Debug)]
pub enum CallControl {
    /// Send BYE on this dialog.
    Hangup {
        /// The call id ([`CallInfo::call_id`]) of the dialog.
        call: String,
    },
    /// Send REFER on this dialog (blind transfer).
    Refer {
        /// The call id ([`CallInfo::call_id`]) of the dialog.
        call: String,
        /// The agent's URI, for `Refer-To`.
        target: String,
        /// Headers embedded in the `Refer-To` URI.
        headers: Vec<(String, String)>,
        /// Where the REFER's progress goes; closed when nothing more comes.
        events: mpsc::UnboundedSender<ReferEvent>,
    },
}

/// How one REFER attempt ended.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// The caller's side reported a 2xx sipfrag: the agent has the call.
    Done,
    /// The caller's side refused the REFER itself (its final status).
    Refused(u16),
    /// The transfer failed with this sipfrag status.
    Failed(u16),
    /// No final sipfrag within the attempt timeout (or the subscription
    /// ended without one, or the REFER went unanswered).
    NoFinal,
}

/// Statuses that say the caller's side does not do REFER at all: no other
/// target would fare better.
fn refer_unsupported(status: u16) -> bool {
    matches!(status, 405 | 420 | 501)
}

/// The [`CallChannel`] of one answered SIP call: prompts, digits and speech
/// through its media session, hang-up through the SIP side. Built by
/// `call::setup`; the flow owns it for the call's life.
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
    /// Places the agent leg of a bridged transfer, with the caller leg's
    /// codec (offered first); None: bridging is not possible on this call.
    dialer: Option<(Dialer, Codec, CallerSdp)>,
    listening: Listening,
    /// Tag of the last listening started; events of earlier ones are stale.
    listen_tag: u64,
}

/// What the call listens for now.
#[derive(Debug)]
enum Listening {
    Off,
    /// Voice detection only (speech barge-in): no recognition follows.
    Voice {
        tag: u64,
    },
    /// A recognition waiting for the caller's utterance.
    Recognising {
        tag: u64,
        hints: Hints,
        /// Decoding at pauses, when the recognition asked for it.
        speculating: Option<Speculating>,
    },
    /// The utterance is with a decoder since `since`.
    Decoding {
        result: oneshot::Receiver<Result<Heard, AsrError>>,
        since: Instant,
    },
}

/// A recognition's speculative decoding (see `asr::speculate`).
#[derive(Debug)]
struct Speculating {
    machine: Speculation,
    /// The speculative decode under way, and since when.
    result: Option<(oneshot::Receiver<Result<Heard, AsrError>>, Instant)>,
}

impl SipCall {
    /// A call answered now; `media`/`events` are its media session's command
    /// and event channels, `control` reaches the SIP side. No speech until
    /// [`Self::with_speech`].
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
            dialer: None,
            listening: Listening::Off,
            listen_tag: 0,
        }
    }

    /// Let a `transfer` bridge: place agent legs through `dialer`, offering
    /// the caller leg's codec first.
    pub fn with_dialer(mut self, dialer: Dialer, caller_codec: Codec, sdp: CallerSdp) -> Self {
        self.dialer = Some((dialer, caller_codec, sdp));
        self
    }

    /// Let `recognize` use these decoders.
    pub fn with_speech(mut self, pool: Option<SpeechPool>) -> Self {
        self.speech = pool;
        self
    }

    /// Wait for the ACK of our 200 before talking, so the first words are
    /// not lost and an INVITE that is never ACKed (a forged source) runs
    /// nothing; false if the call ended first or no ACK came within `limit`
    /// (the dialog layer ends an un-ACKed call at Timer H, 64×T1, first).
    pub async fn wait_confirmed(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(MediaEvent::Confirmed)) => {
                    // The call's clock starts here, wall and monotonic
                    // together, so `answered_at + elapsed()` is the real time.
                    self.answered = Instant::now();
                    self.info.answered_at = std::time::SystemTime::now();
                    return true;
                }
                Ok(Some(MediaEvent::Hangup)) | Ok(None) => {
                    self.gone = true;
                    return false;
                }
                Ok(Some(_)) => continue,
                Err(_) => {
                    self.gone = true;
                    return false;
                }
            }
        }
    }

    /// The far end is gone or we hung up: every further request fails with
    /// [`CallError::HungUp`].
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// REFER the caller to each target in turn until one takes the call;
    /// our leg is hung up (BYE, RFC 5589) once the caller's side reports
    /// the agent's 2xx.
    async fn refer_targets(&mut self, req: &TransferRequest) -> Result<TransferOutcome, CallError> {
        let mut failed = TransferOutcome::Failed {
            status: None,
            reason: TransferFailure::NoAnswer,
        };
        for target in &req.targets {
            let attempt = self.refer_once(target, req).await?;
            tracing::info!(%target, attempt = ?attempt, "REFER attempt ended");
            failed = match attempt {
                Attempt::Done => {
                    self.hangup().await;
                    return Ok(TransferOutcome::Transferred {
                        target: target.clone(),
                        path: TransferPath::Referred,
                    });
                }
                Attempt::Refused(status) => {
                    let failed = TransferOutcome::Failed {
                        status: Some(status),
                        reason: TransferFailure::Refused,
                    };
                    if refer_unsupported(status) {
                        return Ok(failed);
                    }
                    failed
                }
                Attempt::Failed(status) => TransferOutcome::Failed {
                    status: Some(status),
                    reason: TransferFailure::from_status(status),
                },
                Attempt::NoFinal => TransferOutcome::Failed {
                    status: None,
                    reason: TransferFailure::NoAnswer,
                },
            };
        }
        Ok(failed)
    }

    /// One REFER to `target`, followed until a final sipfrag, its
    /// refusal, or `req.attempt_timeout`.
    async fn refer_once(
        &mut self,
        target: &str,
        req: &TransferRequest,
    ) -> Result<Attempt, CallError> {
        // A target or header name that cannot be written into Refer-To is
        // the flow's mistake, not the caller's: the step's error exit.
        if let Err(e) = crate::sip::core::refer_to(target, &req.headers) {
            return Err(CallError::Unsupported("transfer", e.to_string()));
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.control
            .send(CallControl::Refer {
                call: self.info.call_id.clone(),
                target: target.to_string(),
                headers: req.headers.clone(),
                events: tx,
            })
            .map_err(|_| CallError::HungUp)?;
        let deadline = Instant::now() + req.attempt_timeout;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ReferEvent::Accepted(_) | ReferEvent::Progress(_)) => {}
                    Some(ReferEvent::Final(s)) if (200..300).contains(&s) => return Ok(Attempt::Done),
                    Some(ReferEvent::Final(s)) => return Ok(Attempt::Failed(s)),
                    Some(ReferEvent::Refused(s)) => return Ok(Attempt::Refused(s)),
                    Some(ReferEvent::TimedOut | ReferEvent::Terminated) => return Ok(Attempt::NoFinal),
                    // Closed without a last event: the dialog ended (its
                    // hang-up comes as a media event) or nothing was sent.
                    None => {
                        return match tokio::time::timeout(Duration::from_millis(200), self.wait_gone()).await {
                            Ok(()) => Err(CallError::HungUp),
                            Err(_) => Err(CallError::Failed(format!("REFER to {target} could not be sent"))),
                        };
                    }
                },
                ev = self.events.recv() => {
                    // Keys pressed meanwhile are not for this step.
                    if matches!(ev, None | Some(MediaEvent::Hangup | MediaEvent::RtpTimeout)) {
                        self.gone = true;
                        return Err(CallError::HungUp);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Ok(Attempt::NoFinal),
            }
        }
    }

    /// Until the far end is gone (a hang-up among the media events).
    async fn wait_gone(&mut self) {
        while let Some(ev) = self.events.recv().await {
            if matches!(ev, MediaEvent::Hangup | MediaEvent::RtpTimeout) {
                break;
            }
        }
        self.gone = true;
    }

    /// Call the agent ourselves and relay the media (B2BUA): each target in
    /// turn, ringback (or the agent's early media) to the caller while it
    /// rings, CANCEL at the attempt timeout or when the caller hangs up;
    /// once answered, both legs relay until either hangs up (the other gets
    /// BYE) or `max_bridge` passes.
    async fn bridge(&mut self, req: &TransferRequest) -> Result<TransferOutcome, CallError> {
        let Some((dialer, codec, caller_sdp)) = self.dialer.clone() else {
            return Err(CallError::Unsupported(
                "bridge",
                "this call cannot place an agent leg".into(),
            ));
        };
        let _ = self.media.send(MediaCommand::Stop);
        self.stop_recognition().await;
        // The agent sees the caller's number as our From user when it is one.
        let from_user = if self.info.caller.is_empty() || self.info.caller == "anonymous" {
            "anonymous".to_string()
        } else {
            self.info.caller.clone()
        };
        let mut failed = TransferOutcome::Failed {
            status: None,
            reason: TransferFailure::NoAnswer,
        };
        for target in &req.targets {
            let mut leg = match dialer.place(target, &from_user, &req.headers, codec) {
                Ok(l) => l,
                Err(PlaceError::NoPort) => {
                    tracing::warn!(%target, "no RTP port for the agent leg");
                    failed = TransferOutcome::Failed {
                        status: None,
                        reason: TransferFailure::Unreachable,
                    };
                    continue;
                }
                Err(e) => return Err(CallError::Unsupported("transfer", e.to_string())),
            };
            tracing::info!(%target, leg = %leg.call, "calling the agent");
            let _ = self.media.send(MediaCommand::Ringback);
            match self.ring(&dialer, &mut leg, req.attempt_timeout).await {
                Ok(Rung::Answered) => {}
                Ok(Rung::Failed(outcome)) => {
                    let _ = self.media.send(MediaCommand::Unbridge);
                    let _ = self.media.send(MediaCommand::Stop);
                    leg.finish().await;
                    tracing::info!(%target, outcome = ?outcome, "agent attempt failed");
                    failed = outcome;
                    continue;
                }
                Err(e) => {
                    leg.finish().await;
                    return Err(e);
                }
            }
            tracing::info!(%target, leg = %leg.call, "bridged");
            self.relay(&dialer, &caller_sdp, &mut leg, req.max_bridge)
                .await;
            let _ = self.media.send(MediaCommand::Unbridge);
            leg.finish().await;
            if !self.gone {
                self.hangup().await;
            }
            return Ok(TransferOutcome::Transferred {
                target: target.clone(),
                path: TransferPath::Bridged,
            });
        }
        let _ = self.media.send(MediaCommand::Stop);
        Ok(failed)
    }

    /// While the agent's phone rings: until it answers (media bridged),
    /// refuses, times out (CANCEL) or the caller hangs up (CANCEL, HungUp).
    async fn ring(
        &mut self,
        dialer: &Dialer,
        leg: &mut AgentLeg,
        timeout: Duration,
    ) -> Result<Rung, CallError> {
        let deadline = Instant::now() + timeout;
        let mut bridged = false;
        loop {
            tokio::select! {
                ev = leg.events.recv() => match ev {
                    Some(LegEvent::Progress { sdp: Some(sdp), .. }) if !bridged => {
                        // Early media (183): the caller hears the agent's side.
                        if dialer.start_media(leg, &sdp).is_ok() {
                            self.join(leg);
                            bridged = true;
                        }
                    }
                    Some(LegEvent::Progress { .. }) => {}
                    Some(LegEvent::Answered { sdp }) => match dialer.start_media(leg, &sdp) {
                        Ok(()) => {
                            if !bridged {
                                self.join(leg);
                            }
                            return Ok(Rung::Answered);
                        }
                        Err(e) => {
                            tracing::warn!(leg = %leg.call, error = %e, "unusable SDP answer from the agent; hanging up its leg");
                            dialer.sip.hangup(leg.call.clone());
                            wait_leg_end(leg).await;
                            return Ok(Rung::Failed(TransferOutcome::Failed {
                                status: None,
                                reason: TransferFailure::Refused,
                            }));
                        }
                    },
                    Some(LegEvent::Failed { status }) => {
                        return Ok(Rung::Failed(TransferOutcome::Failed {
                            status,
                            reason: status.map_or(TransferFailure::Unreachable, TransferFailure::from_status),
                        }))
                    }
                    Some(LegEvent::Ended) | None => {
                        return Ok(Rung::Failed(TransferOutcome::Failed {
                            status: None,
                            reason: TransferFailure::NoAnswer,
                        }))
                    }
                },
                ev = self.events.recv() => {
                    if matches!(ev, None | Some(MediaEvent::Hangup | MediaEvent::RtpTimeout)) {
                        // The caller gave up while the agent rang: CANCEL.
                        self.gone = true;
                        dialer.sip.hangup(leg.call.clone());
                        wait_leg_end(leg).await;
                        return Err(CallError::HungUp);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    dialer.sip.hangup(leg.call.clone());
                    wait_leg_end(leg).await;
                    return Ok(Rung::Failed(TransferOutcome::Failed {
                        status: None,
                        reason: TransferFailure::NoAnswer,
                    }));
                }
            }
        }
    }

    /// Connect the caller's media and the agent leg's.
    fn join(&mut self, leg: &AgentLeg) {
        let (ours, theirs) = crate::media::bridge::pair();
        let _ = self.media.send(MediaCommand::Bridge(ours));
        leg.command(MediaCommand::Bridge(theirs));
    }

    /// The bridged call, until one side hangs up (the other gets BYE) or
    /// `max` passes (both get BYE). Either leg's re-INVITE (hold, resume)
    /// is passed to the other ([`super::hold`]).
    async fn relay(
        &mut self,
        dialer: &Dialer,
        caller_sdp: &CallerSdp,
        leg: &mut AgentLeg,
        max: Duration,
    ) {
        let end = Instant::now() + max;
        let call = leg.call.clone();
        let (hold_tx, mut holds) = mpsc::unbounded_channel();
        dialer
            .holds
            .register(&self.info.call_id, Side::Caller, hold_tx.clone());
        dialer.holds.register(&call, Side::Agent, hold_tx);
        let mut passing: Option<HoldRelay> = None;
        let mut agent_gone = false;
        loop {
            let (events, media) = leg.receivers();
            tokio::select! {
                ev = events.recv() => {
                    if matches!(ev, None | Some(LegEvent::Ended | LegEvent::Failed { .. })) {
                        tracing::info!(leg = %call, "the agent hung up");
                        agent_gone = true;
                        break;
                    }
                }
                ev = media_event(media) => {
                    if matches!(ev, None | Some(MediaEvent::RtpTimeout)) {
                        tracing::info!(leg = %call, "no RTP from the agent; ending the bridge");
                        break;
                    }
                }
                ev = self.events.recv() => {
                    if matches!(ev, None | Some(MediaEvent::Hangup | MediaEvent::RtpTimeout)) {
                        self.gone = true;
                        break;
                    }
                }
                Some(offer) = holds.recv() => {
                    let from_call = match offer.from {
                        Side::Caller => self.info.call_id.clone(),
                        Side::Agent => call.clone(),
                    };
                    if passing.is_some() {
                        // One at a time: the other side retries (14.1).
                        hold::refuse_offer(&dialer.sip, &from_call, 491);
                        continue;
                    }
                    let (Some(from), Some(to)) = (
                        self.leg_sdp(dialer, caller_sdp, &call, offer.from),
                        self.leg_sdp(dialer, caller_sdp, &call, offer.from.other()),
                    ) else {
                        hold::refuse_offer(&dialer.sip, &from_call, 500);
                        continue;
                    };
                    let HoldOffer { from: side, offer } = offer;
                    passing = HoldRelay::start(&dialer.sip, side, from, offer, to);
                }
                ans = answered(&mut passing) => {
                    if let Some(p) = passing.take() {
                        p.finish(&dialer.sip, ans);
                    }
                }
                _ = tokio::time::sleep_until(end) => {
                    tracing::info!(?max, "the bridge reached transfer.max_bridge; hanging up both legs");
                    break;
                }
            }
        }
        dialer.holds.unregister(&self.info.call_id);
        dialer.holds.unregister(&call);
        // Re-INVITEs still waiting get their answer before the BYEs.
        if let Some(p) = passing.take() {
            p.abandon(&dialer.sip);
        }
        holds.close();
        while let Ok(offer) = holds.try_recv() {
            let from_call = match offer.from {
                Side::Caller => self.info.call_id.clone(),
                Side::Agent => call.clone(),
            };
            hold::refuse_offer(&dialer.sip, &from_call, 500);
        }
        if !agent_gone {
            dialer.sip.hangup(call);
            wait_leg_end(leg).await;
        }
    }

    /// One leg's SDP handles for the bridge's re-offers.
    fn leg_sdp(
        &self,
        dialer: &Dialer,
        caller: &CallerSdp,
        agent: &str,
        side: Side,
    ) -> Option<LegSdp> {
        match side {
            Side::Caller => Some(LegSdp {
                call: self.info.call_id.clone(),
                media: self.media.clone(),
                local: caller.next(),
                peer_ip: caller.peer_ip,
                dtmf_pt: caller.dtmf_pt,
            }),
            Side::Agent => dialer.legs.leg_sdp(agent),
        }
    }

    /// Nothing can be asked of a call whose far end is gone.
    fn live(&self) -> Result<(), CallError> {
        if self.gone {
            Err(CallError::HungUp)
        } else {
            Ok(())
        }
    }

    /// Start a new listening with these timers; `state` is what it listens
    /// for, given its tag.
    fn listen(
        &mut self,
        timers: Timers,
        state: impl FnOnce(u64) -> Listening,
    ) -> Result<(), CallError> {
        self.listen_tag += 1;
        self.listening = state(self.listen_tag);
        self.media
            .send(MediaCommand::StartListening(timers, self.listen_tag))
            .map_err(|_| CallError::HungUp)
    }

    /// A speculative decode answered: the turn's result if it is complete
    /// (the listening ends here), else kept for the end of the turn.
    fn on_speculated(
        &mut self,
        (res, since): (Result<Heard, AsrError>, Instant),
    ) -> Option<CallInput> {
        let Listening::Recognising {
            speculating: Some(s),
            ..
        } = &mut self.listening
        else {
            return None;
        };
        let tag = self.listen_tag;
        let Ok(heard) = res else {
            // A failed guess costs nothing: the end of the turn decodes.
            if let Some(cut_len) = s.machine.decoding_cut() {
                let _ = self
                    .media
                    .send(MediaCommand::PauseHeard(tag, cut_len, false));
            }
            s.machine.resumed();
            return None;
        };
        match s.machine.answer(heard) {
            OnAnswer::Decide(heard) => {
                let _ = self.media.send(MediaCommand::StopListening);
                self.listen_tag += 1;
                self.listening = Listening::Off;
                tracing::debug!("decided at a pause, before the end-of-speech timer");
                Some(recognised(Ok(heard), Some(since)))
            }
            OnAnswer::Keep => {
                if let Some((cut_len, short)) = s.machine.kept() {
                    let _ = self
                        .media
                        .send(MediaCommand::PauseHeard(tag, cut_len, short));
                }
                None
            }
            OnAnswer::Drop => None,
        }
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
            MediaEvent::SpeechStarted(tag) => match self.listening {
                Listening::Voice { tag: t } | Listening::Recognising { tag: t, .. } if t == tag => {
                    Some(CallInput::SpeechStarted)
                }
                _ => None,
            },
            MediaEvent::Pause(tag, pcm) => {
                let Listening::Recognising {
                    tag: t,
                    hints,
                    speculating: Some(s),
                } = &mut self.listening
                else {
                    return None;
                };
                if *t != tag {
                    return None;
                }
                let pool = self.speech.as_ref()?;
                // A decode still under way is of older audio: dropped (a
                // queued one is then skipped by the pool).
                if !s.machine.pause(&pcm) {
                    // Its audio cannot hold the answer: not worth a decode.
                    s.result = None;
                    return None;
                }
                let cut_len = pcm.len();
                s.result = match pool.submit(pcm, hints.clone()) {
                    Ok(rx) => {
                        // The turn waits for this answer (at most the
                        // incomplete wait), however busy the decoders are.
                        let _ = self.media.send(MediaCommand::PauseDecoding(tag, cut_len));
                        Some((rx, Instant::now()))
                    }
                    Err(e) => {
                        // Busy: the turn is decoded at its end, as without.
                        tracing::debug!(error = %e, "no speculative decode");
                        s.machine.resumed();
                        None
                    }
                };
                None
            }
            MediaEvent::Resumed(tag) => {
                if let Listening::Recognising {
                    tag: t,
                    speculating: Some(s),
                    ..
                } = &mut self.listening
                {
                    if *t == tag {
                        s.machine.resumed();
                        s.result = None;
                    }
                }
                None
            }
            MediaEvent::NoSpeech(tag) => match self.listening {
                Listening::Recognising { tag: t, .. } if t == tag => {
                    self.listening = Listening::Off;
                    Some(CallInput::NoSpeech)
                }
                _ => None,
            },
            MediaEvent::Utterance(tag, pcm) => {
                let (hints, speculating) =
                    match std::mem::replace(&mut self.listening, Listening::Off) {
                        Listening::Recognising {
                            tag: t,
                            hints,
                            speculating,
                        } if t == tag => (hints, speculating),
                        other => {
                            self.listening = other;
                            return None;
                        }
                    };
                if let Some(mut s) = speculating {
                    match s.machine.finish(&pcm) {
                        // The pause's audio was the whole turn.
                        OnFinal::Use(heard) => return Some(recognised(Ok(heard), None)),
                        OnFinal::Await => {
                            if let Some((result, since)) = s.result.take() {
                                self.listening = Listening::Decoding { result, since };
                                return None;
                            }
                        }
                        OnFinal::Decode => {}
                    }
                }
                let pool = self.speech.as_ref()?;
                let secs = pcm.len() as f32 / 8000.0;
                match pool.submit(pcm, hints) {
                    Ok(result) => {
                        tracing::debug!(utterance_s = secs, "end of speech; decoding");
                        self.listening = Listening::Decoding {
                            result,
                            since: Instant::now(),
                        };
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
        self.live()?;
        // A branded call hears `<brand>/<name>` where the brand has its own.
        let prompts: Vec<String> = prompts
            .iter()
            .map(|p| self.prompts.for_brand(&self.info.brand, p))
            .collect();
        for p in &prompts {
            if let Err(e) = self.prompts.audio(p) {
                return Err(CallError::Prompt(p.clone(), e.to_string()));
            }
        }
        self.media
            .send(MediaCommand::Play(prompts))
            .map_err(|_| CallError::HungUp)
    }

    async fn stop_playback(&mut self) {
        let _ = self.media.send(MediaCommand::Stop);
    }

    async fn start_recognition(&mut self, spec: &RecognitionSpec) -> Result<(), CallError> {
        self.live()?;
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
        self.listen(spec.timers, |tag| Listening::Recognising {
            tag,
            hints: spec.hints(),
            speculating: spec.early.as_ref().map(|e| Speculating {
                machine: Speculation::new(e.complete.clone()),
                result: None,
            }),
        })?;
        if let Some(e) = &spec.early {
            self.media
                .send(MediaCommand::Speculate(self.listen_tag, e.after))
                .map_err(|_| CallError::HungUp)?;
        }
        Ok(())
    }

    async fn start_voice_detection(&mut self) -> Result<(), CallError> {
        self.live()?;
        self.listen(Timers::VOICE_ONSET, |tag| Listening::Voice { tag })
    }

    async fn stop_recognition(&mut self) {
        if matches!(
            self.listening,
            Listening::Voice { .. } | Listening::Recognising { .. }
        ) {
            let _ = self.media.send(MediaCommand::StopListening);
        }
        // Whatever that listening still has in flight is stale now.
        self.listen_tag += 1;
        self.listening = Listening::Off;
    }

    async fn next_input(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<CallInput>, CallError> {
        self.live()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ev = tokio::select! {
                // Media events first: a `Resumed` already queued must drop
                // a speculative answer that arrives with it.
                biased;
                ev = self.events.recv() => ev,
                (res, since, speculative) = decoded(&mut self.listening) => {
                    if !speculative {
                        self.listening = Listening::Off;
                        return Ok(Some(recognised(res, Some(since))));
                    }
                    if let Some(input) = self.on_speculated((res, since)) {
                        return Ok(Some(input));
                    }
                    continue;
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
        self.live()?;
        if req.mode == TransferMode::Bridge {
            return self.bridge(req).await;
        }
        // The caller hears nothing of ours while the transfer runs; the
        // media keeps going so the call stays usable if it fails.
        let _ = self.media.send(MediaCommand::Stop);
        self.stop_recognition().await;
        let outcome = self.refer_targets(req).await?;
        match (&outcome, req.mode) {
            (TransferOutcome::Failed { status, reason }, TransferMode::ReferThenBridge) => {
                tracing::info!(?status, reason = reason.as_str(), "REFER failed; bridging");
                self.bridge(req).await
            }
            _ => Ok(outcome),
        }
    }

    fn ended_by_caller(&self) -> bool {
        self.gone && !self.hung_up
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

/// How ringing an agent ended.
enum Rung {
    /// Answered; the media is bridged.
    Answered,
    /// Not connected (the leg is over).
    Failed(TransferOutcome),
}

/// The other leg's answer to the re-INVITE being passed on (None: its
/// dialog ended); pending forever when none is.
async fn answered(passing: &mut Option<HoldRelay>) -> Option<crate::sip::handler::ReAnswer> {
    match passing {
        Some(p) => p.answer.recv().await,
        None => std::future::pending().await,
    }
}

/// Until the agent leg's last event (our CANCEL or BYE completed), at most
/// a few seconds: the SIP layer ends the leg at its own timers anyway.
async fn wait_leg_end(leg: &mut AgentLeg) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = leg.events.recv().await {
            if matches!(ev, LegEvent::Ended | LegEvent::Failed { .. }) {
                break;
            }
        }
    })
    .await;
}

/// The running decode's result and when it started; pending forever when
/// nothing is decoding.
/// What a flow sees of a decode's result, logged without the words (they
/// may be an account number or a passphrase); `since`: when the decode
/// was queued (None: decoded earlier, at a pause).
fn recognised(res: Result<Heard, AsrError>, since: Option<Instant>) -> CallInput {
    let decode_ms = since.map_or(0, |s| s.elapsed().as_millis() as u64);
    match &res {
        Ok(Heard::Speech(r)) => tracing::info!(
            decode_ms,
            confidence = r.confidence,
            words = r.text.split_whitespace().count(),
            "speech recognised"
        ),
        Ok(Heard::Nothing) => tracing::info!(decode_ms, "sound, but no speech"),
        Err(e) => tracing::warn!(decode_ms, error = %e, "speech recognition failed"),
    }
    match res {
        Ok(Heard::Speech(r)) => CallInput::Speech(r),
        Ok(Heard::Nothing) => CallInput::NoSpeech,
        Err(e) => CallInput::RecognitionFailed(e.to_string()),
    }
}

/// The answer of the decode under way (pending forever when none is), when
/// it was queued, and whether it is a speculative one (then it is taken
/// out of the listening).
async fn decoded(listening: &mut Listening) -> (Result<Heard, AsrError>, Instant, bool) {
    match listening {
        Listening::Decoding { result, since } => (
            result
                .await
                .unwrap_or_else(|_| Err(AsrError::Decode("the decoder thread stopped".into()))),
            *since,
            false,
        ),
        Listening::Recognising {
            speculating:
                Some(Speculating {
                    result: Some((rx, since)),
                    ..
                }),
            ..
        } => {
            let since = *since;
            let res = rx
                .await
                .unwrap_or_else(|_| Err(AsrError::Decode("the decoder thread stopped".into())));
            if let Listening::Recognising {
                speculating: Some(s),
                ..
            } = listening
            {
                s.result = None;
            }
            (res, since, true)
        }
        _ => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::{SpeechEngine, SpeechResult};
    use crate::call::CallInfo;

    /// Answers with the utterance's length.
    struct Length;

    impl SpeechEngine for Length {
        fn name(&self) -> &str {
            "length"
        }
        fn speaks(&self, _: Option<&str>) -> bool {
            true
        }
        fn recognize(&self, pcm: &[i16], hints: &Hints) -> Result<Heard, AsrError> {
            Ok(Heard::Speech(SpeechResult {
                text: format!("{} {}", pcm.len(), hints.digits_only),
                confidence: 0.9,
            }))
        }
    }

    fn call() -> (
        SipCall,
        mpsc::UnboundedReceiver<MediaCommand>,
        mpsc::UnboundedSender<MediaEvent>,
    ) {
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (control_tx, _control_rx) = mpsc::unbounded_channel();
        let prompts = std::sync::Arc::new(PromptCache::new("/nonexistent"));
        let pool = SpeechPool::new(std::sync::Arc::new(Length), 1, 2);
        let call = SipCall::new(CallInfo::default(), media_tx, ev_rx, control_tx, prompts)
            .with_speech(Some(pool));
        (call, media_rx, ev_tx)
    }

    fn spec() -> RecognitionSpec {
        RecognitionSpec {
            phrases: vec![],
            digits_only: true,
            language: None,
            timers: Timers {
                no_input_timeout: Duration::from_secs(5),
                end_of_speech_timeout: Duration::from_millis(800),
                max_duration: Duration::from_secs(10),
                incomplete: None,
            },
            early: None,
            confirm: false,
            digit_answer: None,
        }
    }

    async fn started(media: &mut mpsc::UnboundedReceiver<MediaCommand>) -> (Timers, u64) {
        match media.recv().await {
            Some(MediaCommand::StartListening(t, tag)) => (t, tag),
            other => panic!("expected StartListening, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn events_of_an_earlier_listening_are_stale() {
        let (mut c, mut media, ev) = call();
        let soon = Some(Duration::from_millis(50));

        c.start_voice_detection().await.unwrap();
        let (timers, voice) = started(&mut media).await;
        assert_eq!(timers, Timers::VOICE_ONSET);
        ev.send(MediaEvent::SpeechStarted(voice)).unwrap();
        assert_eq!(c.next_input(soon).await, Ok(Some(CallInput::SpeechStarted)));
        // Voice detection has no no-input and recognises nothing.
        ev.send(MediaEvent::NoSpeech(voice)).unwrap();
        ev.send(MediaEvent::Utterance(voice, vec![0; 160])).unwrap();
        assert_eq!(c.next_input(soon).await, Ok(None));

        c.stop_recognition().await;
        assert!(matches!(
            media.recv().await,
            Some(MediaCommand::StopListening)
        ));
        c.start_recognition(&spec()).await.unwrap();
        let (timers, recognition) = started(&mut media).await;
        assert_eq!(timers, spec().timers);
        assert_ne!(recognition, voice);
        // What the voice detection still had in flight answers nothing.
        ev.send(MediaEvent::SpeechStarted(voice)).unwrap();
        ev.send(MediaEvent::NoSpeech(voice)).unwrap();
        ev.send(MediaEvent::Utterance(recognition, vec![0; 800]))
            .unwrap();
        let heard = c.next_input(Some(Duration::from_secs(5))).await;
        assert_eq!(
            heard,
            Ok(Some(CallInput::Speech(SpeechResult {
                text: "800 true".into(),
                confidence: 0.9
            })))
        );
        // Decoded: a late no-input of the same listening is stale too.
        ev.send(MediaEvent::NoSpeech(recognition)).unwrap();
        assert_eq!(c.next_input(soon).await, Ok(None));
    }

    fn transfer_req(mode: TransferMode, targets: &[&str]) -> TransferRequest {
        TransferRequest {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            headers: vec![("X-Auth-Result".into(), "passed".into())],
            mode,
            attempt_timeout: Duration::from_secs(5),
            max_bridge: Duration::from_secs(60),
        }
    }

    /// A SIP side that answers each REFER with the next script of events.
    fn sip_side(
        mut control: mpsc::UnboundedReceiver<CallControl>,
        scripts: Vec<Vec<ReferEvent>>,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        tokio::spawn(async move {
            let mut seen = vec![];
            let mut open = vec![];
            let mut scripts = scripts.into_iter();
            while let Some(c) = control.recv().await {
                match c {
                    CallControl::Refer { target, events, .. } => {
                        seen.push(format!("REFER {target}"));
                        for ev in scripts.next().unwrap_or_default() {
                            let _ = events.send(ev);
                        }
                        // Open, as the endpoint keeps it, until the call ends.
                        open.push(events);
                    }
                    CallControl::Hangup { .. } => seen.push("BYE".into()),
                }
            }
            seen
        })
    }

    fn call_with_sip(
        scripts: Vec<Vec<ReferEvent>>,
    ) -> (
        SipCall,
        mpsc::UnboundedSender<MediaEvent>,
        tokio::task::JoinHandle<Vec<String>>,
    ) {
        let (media_tx, _media_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let prompts = std::sync::Arc::new(PromptCache::new("/nonexistent"));
        let call = SipCall::new(CallInfo::default(), media_tx, ev_rx, control_tx, prompts);
        (call, ev_tx, sip_side(control_rx, scripts))
    }

    #[tokio::test]
    async fn refer_tries_targets_in_order_and_hangs_up_after_a_2xx_sipfrag() {
        use ReferEvent::*;
        let (mut c, _ev, sip) = call_with_sip(vec![
            vec![Accepted(202), Progress(100), Final(486)],
            vec![Refused(603)],
            vec![Progress(100), Accepted(202), Final(200)],
        ]);
        let out = c
            .transfer(&transfer_req(
                TransferMode::Refer,
                &["sip:a@h", "sip:b@h", "sip:c@h"],
            ))
            .await;
        assert_eq!(
            out,
            Ok(TransferOutcome::Transferred {
                target: "sip:c@h".into(),
                path: TransferPath::Referred
            })
        );
        assert!(c.is_gone());
        drop(c);
        assert_eq!(
            sip.await.unwrap(),
            ["REFER sip:a@h", "REFER sip:b@h", "REFER sip:c@h", "BYE"]
        );
    }

    #[tokio::test]
    async fn refer_failures_map_to_reasons_and_fall_back_to_the_bridge() {
        use ReferEvent::*;
        // The last target's failure is the outcome.
        let (mut c, _ev, _sip) = call_with_sip(vec![vec![Final(486)], vec![Final(404)]]);
        let out = c
            .transfer(&transfer_req(TransferMode::Refer, &["sip:a@h", "sip:b@h"]))
            .await;
        assert_eq!(
            out,
            Ok(TransferOutcome::Failed {
                status: Some(404),
                reason: TransferFailure::NotFound
            })
        );
        // A caller's side without REFER: the other targets are not tried.
        let (mut c, _ev, sip) = call_with_sip(vec![vec![Refused(501)]]);
        let out = c
            .transfer(&transfer_req(TransferMode::Refer, &["sip:a@h", "sip:b@h"]))
            .await;
        assert_eq!(
            out,
            Ok(TransferOutcome::Failed {
                status: Some(501),
                reason: TransferFailure::Refused
            })
        );
        drop(c);
        assert_eq!(sip.await.unwrap(), ["REFER sip:a@h"]);
        // The subscription ends without a final status: no answer; then
        // refer_then_bridge asks the bridge, which is not built yet.
        let (mut c, _ev, _sip) = call_with_sip(vec![vec![Accepted(202), Terminated]]);
        let out = c
            .transfer(&transfer_req(TransferMode::ReferThenBridge, &["sip:a@h"]))
            .await;
        assert!(
            matches!(out, Err(CallError::Unsupported("bridge", _))),
            "{out:?}"
        );
        let (mut c, _ev, sip) = call_with_sip(vec![]);
        let out = c
            .transfer(&transfer_req(TransferMode::Bridge, &["sip:a@h"]))
            .await;
        assert!(
            matches!(out, Err(CallError::Unsupported("bridge", _))),
            "{out:?}"
        );
        drop(c);
        assert!(sip.await.unwrap().is_empty(), "no REFER in bridge mode");
    }

    #[tokio::test]
    async fn the_caller_hanging_up_during_a_refer_is_a_hang_up() {
        let (mut c, ev, _sip) = call_with_sip(vec![vec![ReferEvent::Accepted(202)]]);
        ev.send(MediaEvent::Hangup).unwrap();
        let out = c
            .transfer(&transfer_req(TransferMode::Refer, &["sip:a@h"]))
            .await;
        assert_eq!(out, Err(CallError::HungUp));
        assert!(c.is_gone());
    }

    #[tokio::test]
    async fn no_final_sipfrag_within_the_attempt_timeout_is_no_answer() {
        let (mut c, _ev, _sip) = call_with_sip(vec![vec![ReferEvent::Accepted(202)]]);
        let mut req = transfer_req(TransferMode::Refer, &["sip:a@h"]);
        req.attempt_timeout = Duration::from_millis(50);
        let out = c.transfer(&req).await;
        assert_eq!(
            out,
            Ok(TransferOutcome::Failed {
                status: None,
                reason: TransferFailure::NoAnswer
            })
        );
    }

    /// Like `Length`, counting its decodes.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl SpeechEngine for Counted {
        fn name(&self) -> &str {
            "counted"
        }
        fn speaks(&self, _: Option<&str>) -> bool {
            true
        }
        fn recognize(&self, pcm: &[i16], hints: &Hints) -> Result<Heard, AsrError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Length.recognize(pcm, hints)
        }
    }

    /// A recognition speculating at pauses: "9600 true" is the whole answer
    /// (9600 samples: 1.2 s, 0.7 s of it speech, long enough for its
    /// syllables).
    async fn speculating() -> (
        SipCall,
        mpsc::UnboundedReceiver<MediaCommand>,
        mpsc::UnboundedSender<MediaEvent>,
        u64,
        std::sync::Arc<Counted>,
    ) {
        let (c, mut media, ev) = call();
        let engine = std::sync::Arc::new(Counted(Default::default()));
        let mut c = c.with_speech(Some(SpeechPool::new(engine.clone(), 1, 2)));
        let spec = RecognitionSpec {
            early: Some(crate::asr::speculate::EarlyAnswer {
                after: Duration::from_millis(200),
                complete: crate::asr::speculate::Complete::Phrase(zeroize::Zeroizing::new(
                    "9600 true".into(),
                )),
            }),
            ..spec()
        };
        c.start_recognition(&spec).await.unwrap();
        let (_, tag) = started(&mut media).await;
        match media.recv().await {
            Some(MediaCommand::Speculate(t, after)) => {
                assert_eq!((t, after), (tag, Duration::from_millis(200)))
            }
            other => panic!("expected Speculate, got {other:?}"),
        }
        (c, media, ev, tag, engine)
    }

    fn said(text: &str) -> Option<CallInput> {
        Some(CallInput::Speech(SpeechResult {
            text: text.into(),
            confidence: 0.9,
        }))
    }

    #[tokio::test]
    async fn a_complete_answer_at_a_pause_decides_before_the_turn_ends() {
        let (mut c, mut media, ev, tag, engine) = speculating().await;
        ev.send(MediaEvent::Pause(tag, vec![0; 9600])).unwrap();
        let long = Some(Duration::from_secs(5));
        assert_eq!(c.next_input(long).await, Ok(said("9600 true")));
        // The media held the turn for the decode; then the listening is
        // over: the media stops it, its end is stale.
        assert!(matches!(
            media.recv().await,
            Some(MediaCommand::PauseDecoding(t, 9600)) if t == tag
        ));
        assert!(matches!(
            media.recv().await,
            Some(MediaCommand::StopListening)
        ));
        ev.send(MediaEvent::Utterance(tag, vec![0; 9600])).unwrap();
        let soon = Some(Duration::from_millis(100));
        assert_eq!(c.next_input(soon).await, Ok(None));
        assert_eq!(engine.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_incomplete_answer_waits_for_the_turn_and_is_reused() {
        let (mut c, mut media, ev, tag, engine) = speculating().await;
        ev.send(MediaEvent::Pause(tag, vec![0; 8800])).unwrap();
        // "8800 true" is no whole answer: nothing yet.
        let soon = Some(Duration::from_millis(300));
        assert_eq!(c.next_input(soon).await, Ok(None));
        // The media held the turn for the decode, then heard: as many
        // syllables as "9600 true", so not short (released).
        assert!(matches!(
            media.recv().await,
            Some(MediaCommand::PauseDecoding(t, 8800)) if t == tag
        ));
        assert!(matches!(
            media.recv().await,
            Some(MediaCommand::PauseHeard(t, 8800, false)) if t == tag
        ));
        ev.send(MediaEvent::Utterance(tag, vec![0; 8800])).unwrap();
        let long = Some(Duration::from_secs(5));
        assert_eq!(c.next_input(long).await, Ok(said("8800 true")));
        // The same audio: not decoded twice.
        assert_eq!(engine.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn speech_after_a_pause_drops_its_answer_even_a_complete_one() {
        let (mut c, _media, ev, tag, _engine) = speculating().await;
        ev.send(MediaEvent::Pause(tag, vec![0; 9600])).unwrap();
        ev.send(MediaEvent::Resumed(tag)).unwrap();
        let soon = Some(Duration::from_millis(300));
        assert_eq!(c.next_input(soon).await, Ok(None));
        // The turn ends on more audio: that is decoded and is the result.
        ev.send(MediaEvent::Utterance(tag, vec![0; 12000])).unwrap();
        let long = Some(Duration::from_secs(5));
        assert_eq!(c.next_input(long).await, Ok(said("12000 true")));
    }

    #[tokio::test]
    async fn a_pause_too_short_for_the_answer_is_not_decoded() {
        let (mut c, _media, ev, tag, engine) = speculating().await;
        // 0.2 s, no speech span at all: cannot hold "9600 true".
        ev.send(MediaEvent::Pause(tag, vec![0; 1600])).unwrap();
        let soon = Some(Duration::from_millis(300));
        assert_eq!(c.next_input(soon).await, Ok(None));
        assert_eq!(engine.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The turn's end is decoded as without speculation.
        ev.send(MediaEvent::Utterance(tag, vec![0; 1600])).unwrap();
        let long = Some(Duration::from_secs(5));
        assert_eq!(c.next_input(long).await, Ok(said("1600 true")));
        assert_eq!(engine.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_input_ends_a_recognition_once() {
        let (mut c, mut media, ev) = call();
        c.start_recognition(&spec()).await.unwrap();
        let (_, tag) = started(&mut media).await;
        ev.send(MediaEvent::NoSpeech(tag)).unwrap();
        ev.send(MediaEvent::NoSpeech(tag)).unwrap();
        let soon = Some(Duration::from_millis(50));
        assert_eq!(c.next_input(soon).await, Ok(Some(CallInput::NoSpeech)));
        assert_eq!(c.next_input(soon).await, Ok(None));
        // Nothing listens any more: stopping sends nothing to the media.
        c.stop_recognition().await;
        assert!(media.try_recv().is_err());
    }
}
