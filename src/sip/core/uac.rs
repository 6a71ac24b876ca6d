//! Calls we place: the outbound INVITE client transaction (RFC 3261
//! 17.1.1), its CANCEL (9.1) and the dialog its 2xx creates (13.2.2.4).
//!
//! Until a final response a leg lives here (`Core::legs`). A 2xx turns it
//! into an ordinary [`Dialog`] in `Core::dialogs`, so everything after the
//! answer (BYE either way, re-INVITE, INFO, our BYE's retransmission) is
//! the code the calls we answer already use; the leg stays behind only to
//! re-send the ACK when the 2xx is retransmitted (13.2.2.4), or the ACK of
//! a non-2xx final (Timer D).
//!
//! Every request of a leg (INVITE, ACK, CANCEL, and through the dialog's
//! `peer` BYE too) goes to the `Peer` the application dialled (the agent or
//! the outbound proxy), never to an address from the agent's Contact,
//! Record-Route or Via: those only fill the Request-URI and Route headers,
//! as RFC 3261 12.2.1.1 says, so the agent cannot steer our traffic.

use std::time::Instant;

use rsipstack::sip::Response;
use tracing::{debug, warn};

use super::client_tx::ClientTx;
use super::dialog::{Dialog, State};
use super::retransmit::{Retransmit, Tick};
use super::{is_sdp, Core, CoreEvent, EndReason, Peer};
use crate::sip::msg::{self, build_request, header_param, via_param, RequestParts};

/// An outbound call as the core takes it; checked by [`check_outbound`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The Request-URI (`sip:agent@host`), also our To.
    pub target: String,
    /// The user part of our From (`<sip:{from_user}@{our address}>`).
    pub from_user: String,
    /// Extra headers (name, value), written in order after ours.
    pub headers: Vec<(String, String)>,
    /// Our SDP offer, the INVITE's body.
    pub sdp: Vec<u8>,
}

/// Why a dial was refused before anything was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The target is not a single `sip:`/`sips:` URI.
    #[error("target is not a sip: or sips: URI without spaces, quotes or <>")]
    Target,
    /// The From user is empty or holds characters a SIP user part may not.
    #[error("from_user is empty or not a valid SIP user part")]
    FromUser,
    /// A header name is not an RFC 3261 token.
    #[error("header name {0:?} is not a token")]
    HeaderName(String),
    /// A header the SIP layer writes itself (Via, From, To, CSeq…).
    #[error("header {0} is written by the SIP layer")]
    ReservedHeader(String),
    /// A header value holds CR, LF or another control character.
    #[error("value of header {0} holds CR, LF or a control character")]
    HeaderValue(String),
    /// The SDP offer is empty (late offer is not supported when we dial).
    #[error("the SDP offer is empty")]
    NoOffer,
    /// The endpoint is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The Call-ID names a call that already exists.
    #[error("Call-ID already in use")]
    CallIdInUse,
}

/// Headers we write ourselves: an application value would duplicate or
/// contradict them (and Route/Via would steer the request).
const RESERVED: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "contact",
    "m",
    "max-forwards",
    "route",
    "record-route",
    "content-length",
    "l",
    "content-type",
    "c",
    "user-agent",
];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Check what the application asks to dial; everything else in the INVITE
/// is ours. Values go on the wire verbatim, so nothing may break a line.
pub fn check_outbound(
    target: &str,
    from_user: &str,
    headers: &[(String, String)],
    sdp: &[u8],
) -> Result<(), DialError> {
    let scheme_ok = target.len() > 4
        && (target[..4].eq_ignore_ascii_case("sip:")
            || target
                .get(..5)
                .is_some_and(|s| s.eq_ignore_ascii_case("sips:")));
    if !scheme_ok
        || target
            .bytes()
            .any(|b| b.is_ascii_control() || b" <>\"".contains(&b))
    {
        return Err(DialError::Target);
    }
    // Unreserved, escaped and the user-unreserved marks of RFC 3261 25.1.
    let user_ok = !from_user.is_empty()
        && from_user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/".contains(&b));
    if !user_ok {
        return Err(DialError::FromUser);
    }
    for (name, value) in headers {
        if !is_token(name) {
            return Err(DialError::HeaderName(name.clone()));
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(DialError::ReservedHeader(name.clone()));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(DialError::HeaderValue(name.clone()));
        }
    }
    if sdp.is_empty() {
        return Err(DialError::NoOffer);
    }
    Ok(())
}

/// What happened to a leg before its dialog exists, carried by
/// [`CoreEvent::Leg`]. After the answer the leg's end is the dialog's:
/// [`CoreEvent::RemoteHangup`] or [`CoreEvent::Ended`]; a leg the
/// application hung up before an answer also ends with `Ended`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegUpdate {
    /// A provisional response (not 100): 180 ringing, 183 with early media.
    Progress {
        /// The status code (101–199).
        status: u16,
        /// The SDP of the response (early media), if it carries one.
        sdp: Option<Vec<u8>>,
    },
    /// 2xx: the dialog is confirmed and our ACK is out.
    Answered {
        /// The 2xx's SDP answer (empty if the agent sent none).
        sdp: Vec<u8>,
    },
    /// The call did not connect; the leg is over (no `Ended` follows).
    Failed {
        /// The final status (ACKed), or `None` when nothing answered before
        /// Timer B (unreachable).
        status: Option<u16>,
    },
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// INVITE sent, nothing heard: retransmit (UDP) until Timer B.
    Calling,
    /// A provisional response came: wait for the final one (no timer of ours).
    Proceeding,
    /// A final response came (or we gave up): only re-ACK retransmissions.
    Done,
}

#[derive(Debug)]
pub(super) struct Leg {
    peer: Peer,
    target: String,
    local_tag: String,
    /// Our From, with our tag.
    from: String,
    /// Our To as sent (no tag).
    to: String,
    cseq: u32,
    branch: String,
    sent_by: String,
    invite: Vec<u8>,
    phase: Phase,
    /// Timers A and B, while Calling.
    retx: Option<Retransmit>,
    /// The application hung up: CANCEL once allowed; the last event is `Ended`.
    hangup: bool,
    cancel: Option<ClientTx>,
    /// RFC 3261 9.1: with no final response 64·T1 after the CANCEL, stop waiting.
    cancel_give_up: Option<Instant>,
    /// The To tag of the final response we ACKed, and that ACK.
    ack: Option<(String, Vec<u8>)>,
    /// That final response was a 2xx.
    answered: bool,
    /// 2xx from other forks (To tags) after ours: ACKed and ended with one
    /// BYE each (13.2.2.4); their ACKs, re-sent on retransmission.
    forks: Vec<(String, Vec<u8>)>,
    /// When a Done leg is forgotten.
    linger: Option<Instant>,
}

impl Leg {
    fn deadline(&self) -> Option<Instant> {
        [
            self.retx.as_ref().map(Retransmit::next_deadline),
            self.cancel.as_ref().map(|c| c.retx.next_deadline()),
            self.cancel_give_up,
            self.linger,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn transport(&self) -> &'static str {
        if self.peer.reliable() {
            "TCP"
        } else {
            "UDP"
        }
    }
}

/// `12 INVITE` → (12, "INVITE").
fn cseq_of(resp: &Response) -> Option<(u32, String)> {
    let v = msg::resp_header(resp, "CSeq")?;
    let mut it = v.split_whitespace();
    let n = it.next()?.parse().ok()?;
    Some((n, it.next()?.to_string()))
}

impl Core {
    /// Place a call: send the INVITE for `call` (a fresh Call-ID) to `to`,
    /// the only address any request of this leg will go to. Events come as
    /// [`CoreEvent::Leg`], then those of the dialog; [`Core::hangup`] cancels
    /// or ends it.
    pub fn dial(
        &mut self,
        now: Instant,
        call: &str,
        to: Peer,
        out: &Outbound,
    ) -> Result<(), DialError> {
        self.timers.touch(call);
        check_outbound(&out.target, &out.from_user, &out.headers, &out.sdp)?;
        if !self.accepting {
            return Err(DialError::ShuttingDown);
        }
        if call.is_empty() || self.dialogs.contains_key(call) || self.legs.contains_key(call) {
            return Err(DialError::CallIdInUse);
        }
        let sent_by = self.sent_by(&to).to_string();
        let contact = self.contact(&to);
        let local_tag = msg::random_token(12);
        let branch = format!("z9hG4bK{}", msg::random_token(16));
        let mut leg = Leg {
            peer: to,
            target: out.target.clone(),
            from: format!("<sip:{}@{}>;tag={}", out.from_user, sent_by, local_tag),
            local_tag,
            to: format!("<{}>", out.target),
            cseq: 1,
            branch,
            sent_by,
            invite: Vec::new(),
            phase: Phase::Calling,
            // INVITE's Timer A doubles without the T2 cap (17.1.1.2).
            retx: Some(Retransmit::start(
                now,
                self.cfg.t1,
                self.cfg.t1 * 64,
                to.reliable(),
            )),
            hangup: false,
            cancel: None,
            cancel_give_up: None,
            ack: None,
            answered: false,
            forks: Vec::new(),
            linger: None,
        };
        let mut headers: Vec<(&str, String)> = vec![("Allow", msg::ALLOW.to_string())];
        headers.extend(out.headers.iter().map(|(k, v)| (k.as_str(), v.clone())));
        leg.invite = build_request(&RequestParts {
            method: "INVITE",
            request_uri: &leg.target,
            via_transport: leg.transport(),
            via_sent_by: &leg.sent_by,
            branch: &leg.branch,
            from: &leg.from,
            to: &leg.to,
            call_id: call,
            cseq: leg.cseq,
            contact: Some(&contact),
            routes: &[],
            headers,
            body: Some(("application/sdp", &out.sdp)),
        });
        let data = leg.invite.clone();
        self.legs.insert(call.to_string(), leg);
        self.send(to, data);
        Ok(())
    }

    /// Legs still waiting for a final response (counted as calls).
    pub(super) fn uac_pending(&self) -> usize {
        self.legs
            .values()
            .filter(|l| l.phase != Phase::Done)
            .count()
    }

    /// The next timer of the leg `call`, if we placed it.
    pub(super) fn leg_deadline(&self, call: &str) -> Option<Instant> {
        self.legs.get(call).and_then(Leg::deadline)
    }

    /// Hang up a leg with no final response yet: CANCEL now if a provisional
    /// response came, else as soon as one does (RFC 3261 9.1). False when
    /// `call` is not such a leg (the dialog's hang-up applies).
    pub(super) fn uac_hangup(&mut self, now: Instant, call: &str) -> bool {
        let Some(leg) = self.legs.get_mut(call) else {
            return false;
        };
        if leg.phase == Phase::Done {
            return false;
        }
        leg.hangup = true;
        if leg.phase == Phase::Proceeding {
            self.send_cancel(now, call);
        }
        true
    }

    fn send_cancel(&mut self, now: Instant, call: &str) {
        let (t1, t2) = (self.cfg.t1, self.cfg.t2);
        let Some(leg) = self.legs.get_mut(call) else {
            return;
        };
        if leg.cancel.is_some() || leg.cancel_give_up.is_some() {
            return;
        }
        // 9.1: Request-URI, Call-ID, From, To, CSeq number and the top Via
        // (so its branch) are the INVITE's.
        let data = build_request(&RequestParts {
            method: "CANCEL",
            request_uri: &leg.target,
            via_transport: leg.transport(),
            via_sent_by: &leg.sent_by,
            branch: &leg.branch,
            from: &leg.from,
            to: &leg.to,
            call_id: call,
            cseq: leg.cseq,
            contact: None,
            routes: &[],
            headers: vec![],
            body: None,
        });
        leg.cancel = Some(ClientTx {
            branch: leg.branch.clone(),
            data: data.clone(),
            retx: Retransmit::start(now, t1, t2, leg.peer.reliable()),
        });
        leg.cancel_give_up = Some(now + t1 * 64);
        let peer = leg.peer;
        self.send(peer, data);
    }

    /// A response for one of our legs' INVITE or CANCEL transactions. False
    /// when it is not (BYE and the rest go to the dialog's code).
    pub(super) fn uac_response(&mut self, now: Instant, resp: &Response) -> bool {
        let Some(call) = msg::resp_header(resp, "Call-ID").map(str::to_string) else {
            return false;
        };
        let Some(leg) = self.legs.get_mut(&call) else {
            return false;
        };
        let Some((num, method)) = cseq_of(resp) else {
            debug!(%call, "response without a usable CSeq; ignored");
            return true;
        };
        if method != "INVITE" && method != "CANCEL" {
            return false;
        }
        let branch = msg::resp_header(resp, "Via")
            .and_then(|v| via_param(v, "branch"))
            .unwrap_or("");
        if branch != leg.branch || num != leg.cseq {
            debug!(%call, "response to a transaction that is not ours; ignored");
            return true;
        }
        let status = u16::from(resp.status_code.clone());
        if method == "CANCEL" {
            if let Some(c) = leg.cancel.as_mut() {
                if status < 200 {
                    c.retx.stop_resending();
                } else {
                    // The CANCEL is done; the INVITE's 487 (or answer) still comes.
                    leg.cancel = None;
                }
            }
            return true;
        }
        match status {
            100..=199 => self.uac_provisional(now, &call, status, resp),
            200..=299 => self.uac_answered(now, &call, status, resp),
            _ => self.uac_refused(now, &call, status, resp),
        }
        true
    }

    fn uac_provisional(&mut self, now: Instant, call: &str, status: u16, resp: &Response) {
        let Some(leg) = self.legs.get_mut(call) else {
            return;
        };
        if leg.phase == Phase::Done {
            return;
        }
        leg.phase = Phase::Proceeding;
        // 17.1.1.2: stop retransmitting; Timer B does not run in Proceeding
        // (how long it may ring is the application's timeout).
        leg.retx = None;
        let hangup = leg.hangup;
        if hangup {
            self.send_cancel(now, call);
            return;
        }
        if status > 100 {
            let sdp = sdp_body(resp);
            self.emit(CoreEvent::Leg {
                call: call.to_string(),
                event: LegUpdate::Progress { status, sdp },
            });
        }
    }

    fn uac_answered(&mut self, now: Instant, call: &str, status: u16, resp: &Response) {
        let t1 = self.cfg.t1;
        let Some(leg) = self.legs.get_mut(call) else {
            return;
        };
        let to = msg::resp_header(resp, "To").unwrap_or("").to_string();
        let Some(tag) = header_param(&to, "tag").filter(|t| !t.is_empty()) else {
            if leg.phase != Phase::Done {
                warn!(%call, status, "the agent answered without a To tag; ending the outbound leg");
                leg.phase = Phase::Done;
                leg.retx = None;
                leg.linger = Some(now);
                let event = if leg.hangup {
                    CoreEvent::Ended {
                        call: call.to_string(),
                        reason: EndReason::LocalHangup,
                    }
                } else {
                    CoreEvent::Leg {
                        call: call.to_string(),
                        event: LegUpdate::Failed { status: None },
                    }
                };
                self.emit(event);
            }
            return;
        };
        if let Some((acked, ack)) = &leg.ack {
            // A retransmitted 2xx: its ACK again (13.2.2.4).
            let again = if acked == tag {
                Some(ack.clone())
            } else {
                leg.forks
                    .iter()
                    .find(|(t, _)| t == tag)
                    .map(|(_, a)| a.clone())
            };
            if let Some(data) = again {
                let peer = leg.peer;
                self.send(peer, data);
            } else if leg.answered {
                // Another fork answered too: we talk to the first one only.
                debug!(%call, status, "2xx from a second fork: ACK and BYE");
                let (target, route_set, ack) = ack_of_2xx(leg, call, &to, resp);
                let bye = build_request(&RequestParts {
                    method: "BYE",
                    request_uri: &target,
                    via_transport: leg.transport(),
                    via_sent_by: &leg.sent_by,
                    branch: &format!("z9hG4bK{}", msg::random_token(16)),
                    from: &leg.from,
                    to: &to,
                    call_id: call,
                    cseq: leg.cseq + 1,
                    contact: None,
                    routes: &route_set,
                    headers: vec![],
                    body: None,
                });
                leg.forks.push((tag.to_string(), ack.clone()));
                let peer = leg.peer;
                self.send(peer, ack);
                self.send(peer, bye);
            } else {
                debug!(%call, status, "2xx after a refusal; ignored");
            }
            return;
        }
        let (remote_target, route_set, ack) = ack_of_2xx(leg, call, &to, resp);
        leg.ack = Some((tag.to_string(), ack.clone()));
        leg.answered = true;
        leg.phase = Phase::Done;
        leg.retx = None;
        leg.cancel_give_up = None;
        leg.linger = Some(now + t1 * 64);
        let hangup = leg.hangup;
        let dialog = Dialog {
            local_tag: leg.local_tag.clone(),
            remote: to.clone(),
            local: leg.from.clone(),
            remote_target,
            route_set,
            peer: leg.peer,
            remote_cseq: 0,
            local_cseq: leg.cseq,
            state: State::Confirmed,
            invite: None,
            bye: None,
            bye_after_ack: false,
            end_reason: None,
        };
        let peer = leg.peer;
        self.dialogs.insert(call.to_string(), dialog);
        self.send(peer, ack);
        if hangup {
            // The answer crossed our CANCEL: ACK it, then end it (15, 9.1).
            self.send_bye(now, call);
        } else {
            self.emit(CoreEvent::Leg {
                call: call.to_string(),
                event: LegUpdate::Answered {
                    sdp: resp.body.clone(),
                },
            });
        }
    }

    fn uac_refused(&mut self, now: Instant, call: &str, status: u16, resp: &Response) {
        let t1 = self.cfg.t1;
        let Some(leg) = self.legs.get_mut(call) else {
            return;
        };
        let to = msg::resp_header(resp, "To").unwrap_or(&leg.to).to_string();
        let tag = header_param(&to, "tag").unwrap_or("").to_string();
        if let Some((acked, ack)) = &leg.ack {
            if *acked == tag {
                let (peer, data) = (leg.peer, ack.clone());
                self.send(peer, data);
            }
            return;
        }
        // 17.1.1.3: the ACK of a non-2xx is part of the INVITE transaction:
        // same branch and Request-URI, the response's To.
        let ack = build_request(&RequestParts {
            method: "ACK",
            request_uri: &leg.target,
            via_transport: leg.transport(),
            via_sent_by: &leg.sent_by,
            branch: &leg.branch,
            from: &leg.from,
            to: &to,
            call_id: call,
            cseq: leg.cseq,
            contact: None,
            routes: &[],
            headers: vec![],
            body: None,
        });
        leg.ack = Some((tag, ack.clone()));
        leg.phase = Phase::Done;
        leg.retx = None;
        leg.cancel = None;
        leg.cancel_give_up = None;
        // Timer D: absorb retransmitted finals over UDP; nothing to absorb over TCP.
        leg.linger = Some(if leg.peer.reliable() {
            now
        } else {
            now + t1 * 64
        });
        let (peer, hangup) = (leg.peer, leg.hangup);
        self.send(peer, ack);
        let event = if hangup {
            CoreEvent::Ended {
                call: call.to_string(),
                reason: EndReason::LocalHangup,
            }
        } else {
            CoreEvent::Leg {
                call: call.to_string(),
                event: LegUpdate::Failed {
                    status: Some(status),
                },
            }
        };
        self.emit(event);
    }

    /// Timers A and B, the CANCEL's E and F, and forgetting the leg `call`
    /// once finished.
    pub(super) fn uac_timeout(&mut self, now: Instant, call: &str) {
        let Some(leg) = self.legs.get_mut(call) else {
            return;
        };
        let mut sends = Vec::new();
        let mut ended = None;
        let mut forget = false;
        if let Some(r) = leg.retx.as_mut() {
            match r.on_timeout(now) {
                Tick::Resend => sends.push((leg.peer, leg.invite.clone())),
                Tick::GiveUp => {
                    // Timer B: nothing answered at all.
                    leg.retx = None;
                    leg.phase = Phase::Done;
                    leg.linger = Some(now);
                    ended = Some(leg.hangup);
                }
                Tick::Wait => {}
            }
        }
        if let Some(c) = leg.cancel.as_mut() {
            match c.retx.on_timeout(now) {
                Tick::Resend => sends.push((leg.peer, c.data.clone())),
                Tick::GiveUp => leg.cancel = None,
                Tick::Wait => {}
            }
        }
        if leg.phase != Phase::Done && leg.cancel_give_up.is_some_and(|t| now >= t) {
            // 9.1: no final response 64·T1 after our CANCEL: over.
            leg.phase = Phase::Done;
            leg.cancel = None;
            leg.linger = Some(now);
            ended = Some(true);
        }
        if leg.phase == Phase::Done && leg.linger.is_some_and(|t| now >= t) {
            forget = true;
        }
        for (to, data) in sends {
            self.send(to, data);
        }
        if forget || ended.is_some() {
            self.legs.remove(call);
        }
        if let Some(hangup) = ended {
            let call = call.to_string();
            let event = if hangup {
                CoreEvent::Ended {
                    call,
                    reason: EndReason::LocalHangup,
                }
            } else {
                CoreEvent::Leg {
                    call,
                    event: LegUpdate::Failed { status: None },
                }
            };
            self.emit(event);
        }
    }
}

/// The remote target a 2xx sets (12.1.2): its Contact, else the target.
fn remote_target_of(leg: &Leg, resp: &Response) -> String {
    msg::resp_header(resp, "Contact")
        .map(msg::addr_uri)
        .filter(|u| !u.is_empty())
        .unwrap_or(&leg.target)
        .to_string()
}

/// The remote target and route set a 2xx sets, and its ACK (13.2.2.4: a
/// transaction of its own, sent like any in-dialog request).
fn ack_of_2xx(leg: &Leg, call: &str, to: &str, resp: &Response) -> (String, Vec<String>, Vec<u8>) {
    let remote_target = remote_target_of(leg, resp);
    // 12.1.2: the UAC's route set is the Record-Route in reverse order.
    let mut route_set: Vec<String> = msg::header_values(&resp.headers, "Record-Route")
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    route_set.reverse();
    let ack = build_request(&RequestParts {
        method: "ACK",
        request_uri: &remote_target,
        via_transport: leg.transport(),
        via_sent_by: &leg.sent_by,
        branch: &format!("z9hG4bK{}", msg::random_token(16)),
        from: &leg.from,
        to,
        call_id: call,
        cseq: leg.cseq,
        contact: None,
        routes: &route_set,
        headers: vec![],
        body: None,
    });
    (remote_target, route_set, ack)
}

/// The body of a response if it is SDP.
fn sdp_body(resp: &Response) -> Option<Vec<u8>> {
    let ct = msg::resp_header(resp, "Content-Type")?;
    (is_sdp(ct) && !resp.body.is_empty()).then(|| resp.body.clone())
}

#[cfg(test)]
mod tests;
