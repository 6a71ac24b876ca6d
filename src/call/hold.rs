//! Hold passed through a bridge (B2BUA): a re-INVITE from either leg is
//! not answered on the spot but re-offered to the other leg by voxgate,
//! with voxgate's own SDP (its address and port on that leg) and the
//! direction mirrored (the holder's `sendonly` becomes our `sendonly`
//! toward the other leg, `c=0.0.0.0` too); the other leg's answer decides
//! ours (its `recvonly` becomes our `recvonly`), and each leg's media
//! follows its own negotiation, so no audio goes to a leg that said it
//! receives none.
//!
//! `CallSetup` forwards the re-INVITEs of bridged calls here
//! ([`HoldOffers`]) and answers them later (`Decision::Later`); the
//! bridge's loop (`SipCall::relay`) drives one [`HoldRelay`] at a time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::setup::media_params;
use crate::media::session::MediaCommand;
use crate::sip::handler::{Decision, ReAnswer, SipHandle};
use crate::sip::sdp::{self, LocalMedia};

/// Which leg of a bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// The call voxgate answered.
    Caller,
    /// The leg voxgate placed to the agent.
    Agent,
}

impl Side {
    pub(super) fn other(self) -> Side {
        match self {
            Side::Caller => Side::Agent,
            Side::Agent => Side::Caller,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Agent => "agent",
        }
    }
}

/// A re-INVITE of a bridged leg, for the bridge to pass on.
#[derive(Debug)]
pub(super) struct HoldOffer {
    pub(super) from: Side,
    pub(super) offer: Vec<u8>,
}

/// Bridged calls by Call-ID (either leg's): where their re-INVITEs go.
#[derive(Clone, Default)]
pub(super) struct HoldOffers(Arc<Mutex<HashMap<String, Bridged>>>);

/// A bridged leg: which side it is, and its bridge's inbox.
type Bridged = (Side, mpsc::UnboundedSender<HoldOffer>);

impl HoldOffers {
    pub(super) fn register(&self, call: &str, side: Side, tx: mpsc::UnboundedSender<HoldOffer>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(call.to_string(), (side, tx));
        }
    }

    pub(super) fn unregister(&self, call: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(call);
        }
    }

    /// Hand `offer` to the bridge `call` is in; false when it is in none.
    pub(super) fn forward(&self, call: &str, offer: &[u8]) -> bool {
        let Some((side, tx)) = self.0.lock().ok().and_then(|m| m.get(call).cloned()) else {
            return false;
        };
        tx.send(HoldOffer {
            from: side,
            offer: offer.to_vec(),
        })
        .is_ok()
    }
}

/// The SDP side of the caller's leg, shared with `CallSetup` (which
/// answers the caller's re-INVITEs outside a bridge): the session version
/// must grow with every SDP we write on the leg, whoever writes it.
#[derive(Clone, Debug)]
pub struct CallerSdp {
    pub(super) local: LocalMedia,
    pub(super) version: Arc<AtomicU64>,
    pub(super) peer_ip: IpAddr,
    /// The caller's telephone-event payload type (ours in re-offers).
    pub(super) dtmf_pt: u8,
}

impl CallerSdp {
    /// Our media description with the next session version.
    pub(super) fn next(&self) -> LocalMedia {
        let mut l = self.local.clone();
        l.session_version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        l
    }
}

/// What the bridge needs of one leg to offer or answer on it.
pub(super) struct LegSdp {
    pub(super) call: String,
    pub(super) media: mpsc::UnboundedSender<MediaCommand>,
    /// Our media description, its session version already bumped.
    pub(super) local: LocalMedia,
    pub(super) peer_ip: IpAddr,
    pub(super) dtmf_pt: u8,
}

/// One re-INVITE being passed on: offered to the other leg, waiting for
/// its answer.
pub(super) struct HoldRelay {
    from: LegSdp,
    from_side: Side,
    offer: Vec<u8>,
    to: LegSdp,
    /// The other leg's answer.
    pub(super) answer: mpsc::UnboundedReceiver<ReAnswer>,
}

/// Answer a leg's re-INVITE now, without the other leg.
fn refuse(sip: &SipHandle, call: &str, status: u16, reason: impl Into<String>) {
    sip.answer_reoffer(
        call.to_string(),
        Decision::Reject {
            status,
            reason: reason.into(),
        },
    );
}

impl HoldRelay {
    /// Pass `offer` from leg `from` on to leg `to`: None when it was
    /// answered at once (refused: unusable offer).
    pub(super) fn start(
        sip: &SipHandle,
        from_side: Side,
        from: LegSdp,
        offer: Vec<u8>,
        to: LegSdp,
    ) -> Option<HoldRelay> {
        let neg = match sdp::answer(&offer, &from.local) {
            Ok(n) => n,
            Err(e) => {
                refuse(sip, &from.call, e.status(), e.to_string());
                return None;
            }
        };
        if media_params(&neg, from.peer_ip).is_none() {
            refuse(sip, &from.call, 488, "Not Acceptable Here: no common codec");
            return None;
        }
        // What we answer the holder (recvonly to its sendonly, or to its
        // c=0.0.0.0), seen from the other leg's side: what we offer there.
        let dir = neg.local_direction.answer_to();
        let body = sdp::offer_directed(&to.local, to.dtmf_pt, dir);
        let (tx, rx) = mpsc::unbounded_channel();
        info!(
            from = from_side.as_str(),
            leg = %from.call,
            direction = dir.as_attr(),
            hold = neg.on_hold,
            "re-INVITE passed to the other leg"
        );
        sip.reinvite(to.call.clone(), body, tx);
        Some(HoldRelay {
            from,
            from_side,
            offer,
            to,
            answer: rx,
        })
    }

    /// The other leg answered (None: its dialog ended first): follow its
    /// answer on its media, answer the holder within it, follow ours.
    pub(super) fn finish(self, sip: &SipHandle, answer: Option<ReAnswer>) {
        let ans = match answer {
            Some(a) if (200..300).contains(&a.status) => a,
            // The offer's own refusal (488, 491…) means the same to the
            // holder; a dead or silent leg (481, 408) is our failure.
            Some(a) if (400..700).contains(&a.status) && !matches!(a.status, 408 | 481) => {
                return self.fail(sip, Some(a.status));
            }
            _ => return self.fail(sip, None),
        };
        // Read the other leg's answer as its offerer: its codec, address
        // and direction (recvonly: it takes our audio and sends none).
        let theirs = match sdp::answer(&ans.sdp, &self.to.local) {
            Ok(n) => n,
            Err(e) => {
                warn!(leg = %self.to.call, error = %e, "unusable SDP in the answer to our re-INVITE");
                return self.fail(sip, Some(488));
            }
        };
        let Some(to_params) = media_params(&theirs, self.to.peer_ip) else {
            return self.fail(sip, Some(488));
        };
        let _ = self.to.media.send(MediaCommand::Update(to_params));
        let ours = match sdp::answer_within(&self.offer, &self.from.local, theirs.remote_direction)
        {
            Ok(n) => n,
            Err(e) => return refuse(sip, &self.from.call, e.status(), e.to_string()),
        };
        let Some(from_params) = media_params(&ours, self.from.peer_ip) else {
            return refuse(
                sip,
                &self.from.call,
                488,
                "Not Acceptable Here: no common codec",
            );
        };
        info!(
            from = self.from_side.as_str(),
            leg = %self.from.call,
            answered = theirs.remote_direction.as_attr(),
            direction = ours.local_direction.as_attr(),
            "re-INVITE answered through the bridge"
        );
        let _ = self.from.media.send(MediaCommand::Update(from_params));
        sip.answer_reoffer(self.from.call, Decision::Answer { sdp: ours.answer });
    }

    /// The other leg refused (or could not be asked): so do we, and both
    /// sessions stay as they were.
    fn fail(self, sip: &SipHandle, status: Option<u16>) {
        let status = status.unwrap_or(500);
        warn!(leg = %self.to.call, status, "the other leg did not take the re-INVITE");
        refuse(
            sip,
            &self.from.call,
            status,
            "the other leg of the bridge refused the offer",
        );
    }

    /// The bridge ends with this still pending: the holder gets an answer.
    pub(super) fn abandon(self, sip: &SipHandle) {
        refuse(
            sip,
            &self.from.call,
            500,
            "Server Internal Error: bridge ended",
        );
    }
}

/// Answer `offer` from a leg whose bridge has ended (or that is busy
/// passing another one on).
pub(super) fn refuse_offer(sip: &SipHandle, call: &str, status: u16) {
    let reason = if status == 491 {
        "Request Pending"
    } else {
        "Server Internal Error: bridge ended"
    };
    refuse(sip, call, status, reason);
}
