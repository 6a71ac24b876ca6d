//! Code calls (`codes_voice`): the call layer's side of
//! [`crate::backends::voice::VoiceCaller`]. A code call is an outbound leg
//! like a bridged transfer's agent leg ([`Dialer`]: its own RTP port and
//! media session, every request to the configured trunk only), but nobody
//! is bridged to it: once answered it plays the script the code backend
//! wrote and hangs up.
//!
//! The script names the code's digits: it is never logged, and neither is
//! the number dialled (only the leg's Call-ID and the outcome are).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::bridge::{media_event, AgentLeg, Dialer};
use crate::backends::voice::{CallResult, VoiceCall, VoiceCaller, VoiceReport};
use crate::backends::BoxFut;
use crate::media::g711::Codec;
use crate::media::session::{MediaCommand, MediaEvent};
use crate::sip::handler::LegEvent;

/// Places code calls through one trunk.
pub struct CodeCaller {
    dialer: Dialer,
    trunk: SocketAddr,
}

impl CodeCaller {
    /// Code calls with `dialer`'s SIP handle, ports and media, every
    /// request sent to `trunk`.
    pub(super) fn new(mut dialer: Dialer, trunk: SocketAddr) -> Self {
        dialer.proxy = Some(trunk);
        CodeCaller { dialer, trunk }
    }
}

/// The result a final non-2xx status means.
fn refused(status: Option<u16>) -> CallResult {
    match status {
        Some(486 | 600 | 603) => CallResult::Busy,
        Some(408 | 480 | 487) => CallResult::NoAnswer,
        Some(s) => CallResult::Failed(format!("refused by the trunk ({s})")),
        None => CallResult::Failed("the trunk did not answer the INVITE".into()),
    }
}

/// Wait (at most 5 s) for the leg's last event after our CANCEL or BYE.
async fn wait_end(leg: &mut AgentLeg) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = leg.events.recv().await {
            if matches!(ev, LegEvent::Ended | LegEvent::Failed { .. }) {
                break;
            }
        }
    })
    .await;
}

impl CodeCaller {
    async fn run(&self, c: &VoiceCall) -> VoiceReport {
        let target = format!("sip:{}@{}", c.to, self.trunk);
        let mut report = VoiceReport {
            result: CallResult::Failed(String::new()),
            status: None,
            call_id: None,
            talk: Duration::ZERO,
        };
        let mut leg = match self.dialer.place(&target, &c.from_user, &[], Codec::Pcmu) {
            Ok(l) => l,
            Err(e) => {
                report.result = CallResult::Failed(format!("the call could not be placed: {e}"));
                return report;
            }
        };
        report.call_id = Some(leg.call.clone());
        info!(leg = %leg.call, trunk = %self.trunk, "placing a code call");
        // Ringing, until answered, refused or the answer timeout.
        let answer_by = Instant::now() + c.answer_timeout;
        loop {
            tokio::select! {
                ev = leg.events.recv() => match ev {
                    Some(LegEvent::Progress { .. }) => {}
                    Some(LegEvent::Answered { sdp }) => {
                        if let Err(e) = self.dialer.start_media(&mut leg, &sdp) {
                            warn!(leg = %leg.call, error = %e, "unusable SDP answer to a code call; hanging up");
                            self.dialer.sip.hangup(leg.call.clone());
                            wait_end(&mut leg).await;
                            leg.finish().await;
                            report.result = CallResult::Failed(format!("unusable SDP answer: {e}"));
                            return report;
                        }
                        break;
                    }
                    Some(LegEvent::Failed { status }) => {
                        report.status = status;
                        report.result = refused(status);
                        leg.finish().await;
                        info!(leg = %report.call_id.as_deref().unwrap_or(""), status = ?status, "code call not answered");
                        return report;
                    }
                    Some(LegEvent::Ended) | None => {
                        report.result = CallResult::Failed("the call ended before it was answered".into());
                        leg.finish().await;
                        return report;
                    }
                },
                // The caller left: CANCEL (a 487 follows, ours as above).
                () = c.caller_left.wait() => {
                    self.dialer.sip.hangup(leg.call.clone());
                    wait_end(&mut leg).await;
                    leg.finish().await;
                    report.result = CallResult::Cancelled { answered: false };
                    info!(leg = %report.call_id.as_deref().unwrap_or(""), "code call: the caller hung up; cancelled");
                    return report;
                }
                _ = tokio::time::sleep_until(answer_by) => {
                    // CANCEL; the 487 that follows is ours, not the callee's.
                    self.dialer.sip.hangup(leg.call.clone());
                    wait_end(&mut leg).await;
                    leg.finish().await;
                    report.result = CallResult::NoAnswer;
                    info!(leg = %report.call_id.as_deref().unwrap_or(""), "code call: no answer in time; cancelled");
                    return report;
                }
            }
        }
        let answered = Instant::now();
        leg.command(MediaCommand::Play(c.script.to_vec()));
        let end = answered + c.max_duration;
        let mut heard_all = false;
        let mut callee_left = false;
        let mut caller_left = false;
        loop {
            let (events, media) = leg.receivers();
            tokio::select! {
                ev = events.recv() => {
                    if matches!(ev, None | Some(LegEvent::Ended | LegEvent::Failed { .. })) {
                        callee_left = true;
                        break;
                    }
                }
                ev = media_event(media) => match ev {
                    Some(MediaEvent::PlaybackDone) => {
                        heard_all = true;
                        break;
                    }
                    // Never the prompt's name: it may be one of the code's digits.
                    Some(MediaEvent::PromptError { .. }) => {
                        warn!(leg = %leg.call, "a prompt of the code call could not be played; hanging up");
                        break;
                    }
                    None | Some(MediaEvent::RtpTimeout) => break,
                    Some(_) => {}
                },
                () = c.caller_left.wait() => {
                    caller_left = true;
                    break;
                }
                _ = tokio::time::sleep_until(end) => break,
            }
        }
        report.talk = answered.elapsed();
        if !callee_left {
            self.dialer.sip.hangup(leg.call.clone());
            wait_end(&mut leg).await;
        }
        leg.finish().await;
        report.result = if caller_left {
            CallResult::Cancelled { answered: true }
        } else {
            CallResult::Answered { heard_all }
        };
        info!(
            leg = %report.call_id.as_deref().unwrap_or(""),
            heard_all,
            talk_ms = report.talk.as_millis() as u64,
            "code call ended"
        );
        report
    }
}

impl VoiceCaller for CodeCaller {
    fn call<'a>(&'a self, call: &'a VoiceCall) -> BoxFut<'a, VoiceReport> {
        Box::pin(self.run(call))
    }
}
