//! What the SIP edge asks of the application, and how the application
//! talks back.
//!
//! The endpoint is signalling only: for each dialog it hands the offer and
//! the in-dialog events to a [`DialogHandler`] (implemented by
//! `call::setup`, which allocates the RTP port, answers the SDP and builds
//! the media session) and acts on the [`Decision`]. Later requests from a
//! running call (hang up, "I am done") come back through a [`SipHandle`].
//! Dependencies point from the application to here, never the other way.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use tokio::sync::mpsc;

use super::core::check_outbound;
pub use super::core::DialError;
pub use super::core::ReferEvent;

/// A new INVITE that passed the signalling checks (Require, Content-Type,
/// Accept, shutdown): the application decides whether and how to answer.
#[derive(Clone, Debug)]
pub struct NewDialog {
    /// SIP Call-ID: names the call in every later callback and command.
    pub call: String,
    /// User part of the Request-URI, if any.
    pub dialled: Option<String>,
    /// User part of From ("anonymous" without one).
    pub caller: String,
    /// SDP offer of the INVITE; empty for a late offer (we offer in the 200).
    pub offer: Vec<u8>,
    /// Where the INVITE came from.
    pub peer: SocketAddr,
    /// Our address as this caller reaches us (configured, or on the route to it).
    pub local_ip: IpAddr,
    /// Selected request headers (lower-case names).
    pub headers: BTreeMap<String, String>,
}

/// The application's answer to an offer (initial INVITE or re-INVITE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer 200 with this SDP (after ringing, for a new call with a ring time).
    Answer {
        /// The SDP answer (or, for a late offer, our offer), sent as the 200's body.
        sdp: String,
    },
    /// Re-INVITE only: answered later through [`SipHandle::answer_reoffer`]
    /// (a B2BUA asks the other leg first); the re-INVITE stays pending
    /// until then. Refused with 500 where it does not apply.
    Later,
    /// Final response with this status and reason phrase.
    Reject {
        /// A final, non-2xx status (300–699), e.g. 404 or 488; the core sends it
        /// as given. For a re-INVITE the dialog goes on with the old session.
        status: u16,
        /// The reason phrase; anything but printable ASCII becomes `?` on the wire.
        reason: String,
    },
}

/// What to do after the ACK of our 200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAck {
    /// The call goes on.
    Proceed,
    /// The ACK made the call unusable (late offer without a usable answer): BYE.
    HangUp,
}

/// Application side of the dialogs. Called on the endpoint's loop, so each
/// method must return quickly (spawn anything that waits).
///
/// A call the handler answered stays the handler's until it calls
/// [`SipHandle::release`]; callbacks other than `offered` come only for such calls.
pub trait DialogHandler: Send + 'static {
    /// A new call: route it and answer (or refuse) its offer.
    fn offered(&mut self, dialog: NewDialog, sip: &SipHandle) -> Decision;
    /// A re-INVITE with an SDP offer (hold, codec or address change).
    fn re_offered(&mut self, call: &str, offer: &[u8]) -> Decision;
    /// The ACK of our 200 arrived; `answer` is its SDP (late offer) or empty.
    fn confirmed(&mut self, call: &str, answer: &[u8]) -> AfterAck;
    /// INFO inside the dialog (DTMF relay).
    fn info(&mut self, call: &str, content_type: &str, body: &[u8]);
    /// The dialog ended from the far side (BYE, CANCEL, timeout).
    fn dialog_ended(&mut self, call: &str);
    /// The application released the call (see [`SipHandle::release`]): drop
    /// what it holds; the endpoint ends the dialog if it still exists.
    fn released(&mut self, call: &str);
}

/// A request from the application to the endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Send BYE (or 480 before the answer).
    Hangup {
        /// The call's SIP Call-ID.
        call: String,
    },
    /// The call's task is over: free it and end any dialog left.
    Release {
        /// The call's SIP Call-ID.
        call: String,
    },
    /// Place an outbound call (see [`SipHandle::dial`]).
    Dial {
        /// The new leg's Call-ID.
        call: String,
        /// What to dial.
        dial: Dial,
        /// Where the leg's events go.
        events: LegEvents,
    },
    /// Send a re-INVITE with this offer on the call's dialog.
    ReInvite {
        /// The call's SIP Call-ID.
        call: String,
        /// Our SDP offer.
        sdp: String,
        /// Where its answer goes.
        answer: ReAnswerSink,
    },
    /// Answer a re-INVITE the handler left for later ([`Decision::Later`]).
    AnswerReOffer {
        /// The call's SIP Call-ID.
        call: String,
        /// The answer (`Later` again is refused with 500).
        decision: Decision,
    },
    /// Send REFER on the call's dialog (blind transfer, RFC 3515).
    Refer {
        /// The call's SIP Call-ID.
        call: String,
        /// The `Refer-To` target URI (`sip:`, `sips:` or `tel:`).
        target: String,
        /// Headers embedded in the `Refer-To` URI for the agent.
        headers: Vec<(String, String)>,
        /// Where the REFER's progress goes.
        events: ReferSink,
    },
}

/// An outbound call the application places ([`SipHandle::dial`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dial {
    /// The Request-URI and our To (`sip:agent@pbx.example`).
    pub target: String,
    /// The only address this leg's requests go to (INVITE, ACK, CANCEL,
    /// BYE): the configured agent or outbound proxy, never one taken from
    /// the agent's messages. UDP.
    pub next_hop: SocketAddr,
    /// The user part of our From: `<sip:{from_user}@{our address}>`.
    pub from_user: String,
    /// Extra headers of the INVITE (X-headers, User-to-User…): names must
    /// be tokens, values free of CR/LF, and not one the SIP layer writes
    /// (Via, From, To, Call-ID, CSeq, Contact, Route, Content-*…).
    pub headers: Vec<(String, String)>,
    /// Our SDP offer (write its address with [`SipHandle::local_ip_for`]).
    pub sdp: String,
}

/// What happens to an outbound leg, in order: any `Progress`, then
/// `Answered`, `Failed` or `Ended`; after `Answered`, `Ended`. `Failed` and
/// `Ended` are last. Once the application hung up (CANCEL or BYE) the last
/// event is always `Ended`, whatever the agent answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegEvent {
    /// A provisional response (180 ringing, 183 session progress).
    Progress {
        /// The status code (101–199).
        status: u16,
        /// Early media: the response's SDP answer, if it has one.
        sdp: Option<Vec<u8>>,
    },
    /// The agent answered (2xx, ACKed): media may flow.
    Answered {
        /// The agent's SDP answer.
        sdp: Vec<u8>,
    },
    /// The call did not connect.
    Failed {
        /// The agent's final status (486 busy, 404, 603…, ACKed); `None`
        /// when nothing answered the INVITE (Timer B: unreachable).
        status: Option<u16>,
    },
    /// The agent sent BYE, or our BYE or CANCEL completed.
    Ended,
}

/// The sender of a leg's events, comparable so [`Command`] stays `Eq`
/// (two are equal when they feed the same channel).
#[derive(Clone, Debug)]
pub struct LegEvents(pub mpsc::UnboundedSender<LegEvent>);

impl PartialEq for LegEvents {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }
}

impl Eq for LegEvents {}

/// Where one REFER's progress goes; dropped (closing the channel) when
/// nothing more can come: after a last event, when the dialog ends, or
/// when the REFER could not be sent.
#[derive(Clone, Debug)]
pub struct ReferSink(pub mpsc::UnboundedSender<ReferEvent>);

impl PartialEq for ReferSink {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }
}

impl Eq for ReferSink {}

/// The final answer to a re-INVITE we sent ([`SipHandle::reinvite`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReAnswer {
    /// The final status: 2xx accepted (already ACKed); 408 when nothing
    /// answered; 491 when an INVITE transaction was pending on the dialog;
    /// 481 when there is no such dialog.
    pub status: u16,
    /// The answer's SDP (empty without one).
    pub sdp: Vec<u8>,
}

/// Where a re-INVITE's answer goes; comparable like [`LegEvents`].
#[derive(Clone, Debug)]
pub struct ReAnswerSink(pub mpsc::UnboundedSender<ReAnswer>);

impl PartialEq for ReAnswerSink {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }
}

impl Eq for ReAnswerSink {}

/// Clonable way back into the endpoint's loop from call tasks.
#[derive(Clone, Debug)]
pub struct SipHandle {
    pub(super) tx: mpsc::UnboundedSender<Command>,
    /// How to find our address as a peer sees it (for outbound offers).
    pub(super) local: LocalAddr,
}

/// What [`SipHandle::local_ip_for`] needs: the configured address if any,
/// else the listen address as the fallback of the route lookup.
#[derive(Clone, Copy, Debug)]
pub(super) struct LocalAddr {
    pub(super) advertised: Option<IpAddr>,
    pub(super) fallback: IpAddr,
}

/// The source address the kernel picks on the route to `peer` (a connected
/// UDP socket tells without sending anything), `fallback` if there is none.
pub(super) fn route_source_ip(peer: IpAddr, fallback: IpAddr) -> IpAddr {
    let unspecified: IpAddr = if peer.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    std::net::UdpSocket::bind((unspecified, 0))
        .and_then(|s| s.connect((peer, 9)).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(fallback)
}

impl SipHandle {
    /// A handle whose commands arrive on the returned receiver (tests of
    /// handlers, without an endpoint).
    #[cfg(test)]
    pub(crate) fn channel() -> (SipHandle, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let local = LocalAddr {
            advertised: None,
            fallback: std::net::Ipv4Addr::LOCALHOST.into(),
        };
        (SipHandle { tx, local }, rx)
    }

    /// End the call from our side.
    pub fn hangup(&self, call: String) {
        let _ = self.tx.send(Command::Hangup { call });
    }

    /// The call is over for the application (its task ended).
    pub fn release(&self, call: String) {
        let _ = self.tx.send(Command::Release { call });
    }

    /// Place an outbound call: INVITE `dial.target` via `dial.next_hop`.
    /// Returns the new leg's Call-ID (generated here), the handle for
    /// [`SipHandle::hangup`] (CANCEL before the answer, BYE after) and the
    /// name re-INVITEs and INFO from the agent carry to
    /// [`DialogHandler::re_offered`] and [`DialogHandler::info`]. What
    /// happens to the leg arrives on `events`. Refused at once, with nothing
    /// sent, when the target, `from_user`, a header or the offer is unusable.
    pub fn dial(
        &self,
        dial: Dial,
        events: mpsc::UnboundedSender<LegEvent>,
    ) -> Result<String, DialError> {
        check_outbound(
            &dial.target,
            &dial.from_user,
            &dial.headers,
            dial.sdp.as_bytes(),
        )?;
        let call = format!("{}@voxgate", crate::sip::msg::random_token(24));
        let cmd = Command::Dial {
            call: call.clone(),
            dial,
            events: LegEvents(events),
        };
        if let Err(mpsc::error::SendError(Command::Dial { events, .. })) = self.tx.send(cmd) {
            // No endpoint any more: the leg fails as if nothing answered.
            let _ = events.0.send(LegEvent::Failed { status: None });
        }
        Ok(call)
    }

    /// Our IP address as `peer` reaches us: the configured `public_ip`, or
    /// the source address on the route to it. What an SDP offer to an agent
    /// at `peer` must carry in `c=` (and what our Via/Contact will say).
    pub fn local_ip_for(&self, peer: SocketAddr) -> IpAddr {
        match self.local.advertised {
            Some(ip) => ip,
            None => route_source_ip(peer.ip().to_canonical(), self.local.fallback),
        }
    }

    /// Send a re-INVITE with `sdp` on `call` (a call the handler holds or a
    /// leg we placed); its final answer arrives on `answer` (closed without
    /// one if the dialog ends first).
    pub fn reinvite(&self, call: String, sdp: String, answer: mpsc::UnboundedSender<ReAnswer>) {
        let _ = self.tx.send(Command::ReInvite {
            call,
            sdp,
            answer: ReAnswerSink(answer),
        });
    }

    /// Answer the re-INVITE of `call` that [`DialogHandler::re_offered`]
    /// left for later.
    pub fn answer_reoffer(&self, call: String, decision: Decision) {
        let _ = self.tx.send(Command::AnswerReOffer { call, decision });
    }

    /// REFER the caller of `call` to `target`, `headers` embedded in the
    /// `Refer-To` URI; the REFER's progress arrives on `events`, which is
    /// closed once nothing more can come (see [`ReferSink`]).
    pub fn refer(
        &self,
        call: String,
        target: String,
        headers: Vec<(String, String)>,
        events: mpsc::UnboundedSender<ReferEvent>,
    ) {
        let _ = self.tx.send(Command::Refer {
            call,
            target,
            headers,
            events: ReferSink(events),
        });
    }
}
