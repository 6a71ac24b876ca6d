//! Sans-IO SIP user-agent core: transactions and dialogs for the calls we
//! answer.
//!
//! Laid out as ezk's `sip-core`: server transactions (`server_tx`: the
//! INVITE we answer, the response cache of the others), client transactions
//! (`client_tx`: the requests we send inside a dialog) and dialogs
//! (`dialog`) side by side, sharing one retransmission timer
//! (`retransmit`). This file holds the [`Core`] they all extend, its inputs
//! and outputs and the request dispatch.
//!
//! Input: parsed requests/responses with the peer they came from, the
//! current time, and the application's decisions (answer, reject, hang up).
//! Output: bytes to send to a [`Peer`] and [`CoreEvent`]s; `next_deadline`
//! tells the I/O loop when to call [`Core::handle_timeout`]. No sockets, no
//! clocks: tests drive it with simulated time.
//!
//! Replies always go to the address a request came from (never to a host
//! named in Via or Contact), so a hostile or fictional header can't make us
//! send traffic elsewhere or resolve names.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsipstack::sip::{Method, Request};

use super::msg::{self, via_param};
use super::wire::ReplyContext;

mod client_tx;
mod dialog;
mod refer;
mod reinvite;
mod response_cache;
mod retransmit;
mod server_tx;
mod timers;
mod uac;

use dialog::{Dialog, State};
pub use refer::{refer_to, ReferError, ReferEvent};
pub use reinvite::ReInviteError;
use response_cache::ResponseCache;
use retransmit::Tick;
use server_tx::{server_txn_key, InviteProgress};
use timers::Timers;
pub use uac::{check_outbound, DialError, LegUpdate, Outbound};

/// Which transport (and, for TCP, which connection) a peer is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// The shared UDP socket: unreliable, so what we send is retransmitted
    /// until answered (RFC 3261 17).
    Udp,
    /// One accepted TCP connection, by the endpoint's connection number; reliable,
    /// so nothing is retransmitted and replies must go back on this connection.
    Tcp(u64),
}

/// Where a message came from and where its replies go: the transport and the
/// packet's source address (never an address taken from Via or Contact).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport (and TCP connection) to answer on.
    pub link: Link,
    /// The source address and port of the packet or connection.
    pub addr: SocketAddr,
}

impl Peer {
    fn reliable(&self) -> bool {
        matches!(self.link, Link::Tcp(_))
    }
}

/// Call handle: the SIP Call-ID (we are a UAS; one dialog per Call-ID).
pub type CallRef = String;

/// Settings of a [`Core`]; `Default` is a loopback address and the RFC timer values.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Our address as written in Via/Contact (`127.0.0.1:5060`).
    pub sent_by: String,
    /// RTT estimate T1 (RFC 3261 17.1.1.1, default 500 ms): the first
    /// retransmission interval; transactions give up after 64×T1.
    pub t1: Duration,
    /// T2 (default 4 s): the cap on the doubling retransmission interval
    /// (RFC 3261 13.3.1.4, 17.1.2.2).
    pub t2: Duration,
    /// Bytes of cached final responses at most (oldest evicted first).
    pub response_cache_bytes: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            sent_by: "127.0.0.1:5060".into(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            response_cache_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why a dialog ended, carried by [`CoreEvent::Ended`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// We sent BYE and it completed (or timed out).
    LocalHangup,
    /// The caller never ACKed our 200 (Timer H).
    NoAck,
    /// The caller cancelled before answer.
    Cancelled,
    /// We rejected the call.
    Rejected(u16),
}

/// What happened to a call, for the application; taken from [`Output::Event`].
/// A call's last event is [`CoreEvent::RemoteHangup`] (the caller's BYE) or
/// [`CoreEvent::Ended`] (everything else; it follows a `Cancelled` once the
/// 487 is acknowledged).
#[derive(Clone, Debug, PartialEq)]
pub enum CoreEvent {
    /// A new call wants an answer: call `accept` or `reject`.
    NewCall {
        /// The Call-ID: the handle for every later call on this dialog.
        call: CallRef,
        /// The user part of the Request-URI (the number dialled), if it has one.
        dialled: Option<String>,
        /// The user part of the From URI, `anonymous` when it has none. Not
        /// authenticated: anyone can write any From.
        caller: String,
        /// The INVITE body: the SDP offer, or empty for a late offer (the
        /// caller then answers in its ACK, see [`CoreEvent::Confirmed`]).
        offer: Vec<u8>,
        /// Where the INVITE came from.
        peer: Peer,
        /// The identity-related headers present (P-Asserted-Identity, Identity,
        /// User-Agent, Diversion), keyed by lower-case name, values verbatim.
        headers: BTreeMap<String, String>,
    },
    /// A re-INVITE inside a dialog: call `accept` (new answer) or `reject` (488…).
    ReOffer {
        /// The dialog's Call-ID.
        call: CallRef,
        /// The re-INVITE's Content-Type, if any; the application must refuse
        /// a body that is not SDP (see [`is_sdp`]).
        content_type: Option<String>,
        /// The new SDP offer; empty when the caller asks us to offer.
        offer: Vec<u8>,
    },
    /// ACK for our 200: media may flow both ways. `answer` is the ACK's SDP
    /// (the caller's answer when the INVITE had no offer; else usually empty).
    Confirmed {
        /// The dialog's Call-ID.
        call: CallRef,
        /// The ACK body (SDP or empty).
        answer: Vec<u8>,
    },
    /// CANCEL before answer; the call is gone.
    Cancelled {
        /// The dialog's Call-ID.
        call: CallRef,
    },
    /// The caller sent BYE.
    RemoteHangup {
        /// The dialog's Call-ID.
        call: CallRef,
    },
    /// INFO inside the dialog (DTMF relay).
    Info {
        /// The dialog's Call-ID.
        call: CallRef,
        /// The INFO's Content-Type (`application/dtmf-relay`, `application/dtmf`…),
        /// empty when absent; the application decides what it understands.
        content_type: String,
        /// The INFO body, verbatim (already answered with 200).
        body: Vec<u8>,
    },
    /// Progress of a REFER we sent on this dialog ([`Core::refer`]).
    Refer {
        /// The dialog's Call-ID.
        call: CallRef,
        /// What happened to the REFER or its subscription.
        event: ReferEvent,
    },
    /// The dialog is gone for good; release the call's resources.
    Ended {
        /// The dialog's Call-ID; no later event names it.
        call: CallRef,
        /// What ended it.
        reason: EndReason,
    },
    /// The final answer to a re-INVITE we sent ([`Core::reinvite`]),
    /// already ACKed; 408 when nothing answered before Timer B.
    ReAnswer {
        /// The dialog's Call-ID.
        call: CallRef,
        /// The final status.
        status: u16,
        /// The response's SDP (empty if it had none).
        sdp: Vec<u8>,
    },
    /// A call we placed ([`Core::dial`]) before its dialog exists.
    Leg {
        /// The leg's Call-ID.
        call: CallRef,
        /// What happened.
        event: LegUpdate,
    },
}

/// One thing the I/O loop must do, taken from [`Core::poll_output`] in order.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes (one whole SIP message) to the peer, on its link.
    Transmit {
        /// The peer: for a reply, the source of the request it answers.
        to: Peer,
        /// The serialised message.
        data: Vec<u8>,
    },
    /// Tell the application.
    Event(CoreEvent),
}

/// The sans-IO SIP state of every call we answer: feed it requests, responses,
/// time and decisions; drain [`Core::poll_output`] after each.
pub struct Core {
    cfg: CoreConfig,
    dialogs: HashMap<CallRef, Dialog>,
    /// Final responses to non-INVITE requests, re-sent on retransmission (UDP),
    /// keyed by [`server_txn_key`].
    responses: ResponseCache,
    out: VecDeque<Output>,
    accepting: bool,
    /// Peer IP → our host:port as that peer reaches us (see `set_sent_by_for`).
    route_local: HashMap<std::net::IpAddr, String>,
    /// Calls we placed, until their final response is settled (`uac`).
    legs: HashMap<CallRef, uac::Leg>,
    /// The REFER (transfer) of each dialog that has one (`refer`).
    refers: HashMap<CallRef, refer::Refer>,
    /// The re-INVITE we sent on each dialog that has one (`reinvite`).
    reinvites: HashMap<CallRef, reinvite::ReInvite>,
    /// Each call's next deadline, earliest first (`timers`).
    timers: Timers,
}

/// Whether a Content-Type value names SDP (`application/sdp`, any case,
/// parameters ignored).
pub fn is_sdp(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

/// Whether an Accept header admits an SDP answer.
fn accepts_sdp(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|m| {
            let m = m
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            m == "application/sdp" || m == "application/*" || m == "*/*"
        })
}

/// Option tags we implement (RFC 3261 8.2.2.3: anything else in Require → 420).
const SUPPORTED: &[&str] = &[];

impl Core {
    /// A core with no calls, taking new ones.
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            responses: ResponseCache::new(cfg.response_cache_bytes),
            cfg,
            dialogs: HashMap::new(),
            out: VecDeque::new(),
            accepting: true,
            route_local: HashMap::new(),
            legs: HashMap::new(),
            refers: HashMap::new(),
            reinvites: HashMap::new(),
            timers: Timers::default(),
        }
    }

    /// Stop taking new calls (SIGTERM): new INVITEs get 503.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Dialogs alive, answered or not (shutdown waits for this to reach 0).
    pub fn call_count(&self) -> usize {
        self.dialogs.len() + self.uac_pending()
    }

    /// The next thing to send or report, oldest first; call until `None` after
    /// every input, before waiting for the next one.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Our address as `peer` must see it: the configured one, or the one the
    /// edge found routes to that peer (listening on 0.0.0.0 without public_ip).
    fn sent_by(&self, peer: &Peer) -> &str {
        self.route_local
            .get(&peer.addr.ip().to_canonical())
            .map_or(self.cfg.sent_by.as_str(), String::as_str)
    }

    /// Tell the core which of our addresses `peer_ip` reaches (host:port).
    pub fn set_sent_by_for(&mut self, peer_ip: std::net::IpAddr, sent_by: String) {
        // Bounded: a flood of sources must not grow it forever.
        if self.route_local.len() >= 4096 && !self.route_local.contains_key(&peer_ip) {
            if let Some(k) = self.route_local.keys().next().copied() {
                self.route_local.remove(&k);
            }
        }
        self.route_local.insert(peer_ip, sent_by);
    }

    fn contact(&self, peer: &Peer) -> String {
        match peer.link {
            Link::Udp => format!("sip:voxgate@{}", self.sent_by(peer)),
            Link::Tcp(_) => format!("sip:voxgate@{};transport=tcp", self.sent_by(peer)),
        }
    }

    fn send(&mut self, to: Peer, data: Vec<u8>) {
        self.out.push_back(Output::Transmit { to, data });
    }

    fn emit(&mut self, ev: CoreEvent) {
        self.out.push_back(Output::Event(ev));
    }

    /// Feed a request that passed [`crate::sip::wire::parse_message`], with its
    /// raw headers from [`crate::sip::wire::reply_context`] and the peer it came from.
    /// Retransmissions are absorbed here (cached responses are re-sent).
    pub fn handle_request(&mut self, now: Instant, peer: Peer, req: &Request, ctx: &ReplyContext) {
        self.timers.touch(&ctx.call_id);
        let method = req.method;
        let method_name = method.to_string();
        let branch = ctx
            .vias
            .first()
            .and_then(|v| via_param(v, "branch"))
            .unwrap_or("")
            .to_string();

        match method {
            Method::Ack => return self.handle_ack(now, ctx, &branch, &req.body),
            Method::Cancel => return self.handle_cancel(now, peer, ctx, &branch),
            _ => {}
        }
        if method != Method::Invite {
            let key = server_txn_key(ctx).unwrap_or_default();
            if let Some(c) = self.responses.get(&(key, method_name.clone())) {
                let data = c.to_vec();
                self.send(peer, data);
                return;
            }
        }
        // RFC 3261 8.2.2.3: we implement no extensions a request may require.
        let unsupported: Vec<String> = msg::header_values(&req.headers, "Require")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            self.reply(
                now,
                peer,
                ctx,
                &method_name,
                420,
                "Bad Extension",
                vec![("Unsupported", list)],
            );
            return;
        }
        match method {
            Method::Invite => self.handle_invite(now, peer, req, ctx, branch),
            Method::Bye => {
                let call = ctx.call_id.clone();
                match self.dialog_for(&call, ctx) {
                    Some(d) => {
                        let cancelled_invite =
                            d.invite.as_ref().is_some_and(|i| i.progress.is_pending());
                        self.reply(now, peer, ctx, "BYE", 200, "OK", vec![]);
                        if cancelled_invite {
                            // RFC 3261 15.1.2: BYE during a pending re-INVITE terminates it with 487.
                            self.finish_invite(now, &call, 487, "Request Terminated", vec![]);
                        }
                        self.dialogs.remove(&call);
                        self.emit(CoreEvent::RemoteHangup { call });
                    }
                    None => self.reply(
                        now,
                        peer,
                        ctx,
                        "BYE",
                        481,
                        "Call/Transaction Does Not Exist",
                        vec![],
                    ),
                }
            }
            Method::Options => {
                let headers = vec![
                    ("Allow", msg::ALLOW.to_string()),
                    (
                        "Accept",
                        "application/sdp, application/dtmf-relay, application/dtmf".to_string(),
                    ),
                ];
                let status = if self.accepting {
                    (200, "OK")
                } else {
                    (503, "Service Unavailable")
                };
                self.reply(now, peer, ctx, "OPTIONS", status.0, status.1, headers);
            }
            Method::Info => {
                let call = ctx.call_id.clone();
                if self.dialog_for(&call, ctx).is_none() {
                    self.reply(
                        now,
                        peer,
                        ctx,
                        "INFO",
                        481,
                        "Call/Transaction Does Not Exist",
                        vec![],
                    );
                    return;
                }
                let ctype = msg::req_header(req, "Content-Type")
                    .unwrap_or("")
                    .to_string();
                self.reply(now, peer, ctx, "INFO", 200, "OK", vec![]);
                self.emit(CoreEvent::Info {
                    call,
                    content_type: ctype,
                    body: req.body.clone(),
                });
            }
            Method::Notify => self.handle_notify(now, peer, req, ctx),
            _ => {
                // Methods we know but do not serve (REGISTER, SUBSCRIBE, MESSAGE, UPDATE, REFER…).
                self.reply(
                    now,
                    peer,
                    ctx,
                    &method_name,
                    405,
                    "Method Not Allowed",
                    vec![("Allow", msg::ALLOW.to_string())],
                );
            }
        }
    }

    /// When [`Core::handle_timeout`] must next be called (a retransmission or a
    /// transaction timer); `None` when nothing is pending. Changes after every
    /// input, so ask again each time round the loop. Costs the calls the
    /// inputs since the last question touched, not all calls (`timers`).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.update_timers();
        let next = self
            .timers
            .next()
            .into_iter()
            .chain(self.responses.next_expiry())
            .min();
        #[cfg(test)]
        assert_eq!(next, self.scan_deadline(), "timer heap out of step");
        next
    }

    /// Recompute the deadlines of the calls touched since the last time.
    fn update_timers(&mut self) {
        for call in self.timers.take_dirty() {
            if !self.dialogs.contains_key(&call) {
                // A dialog gone takes its REFER and re-INVITE along.
                self.refers.remove(&call);
                self.reinvites.remove(&call);
            }
            let deadline = self.call_deadline(&call);
            self.timers.set(&call, deadline);
        }
    }

    /// The earliest timer of one call: its dialog's INVITE and BYE
    /// transactions, its REFER, its re-INVITE and the leg we placed.
    fn call_deadline(&self, call: &str) -> Option<Instant> {
        let d = self.dialogs.get(call);
        let invite = d.and_then(|d| {
            d.invite
                .as_ref()
                .and_then(|i| i.progress.retransmit())
                .map(|r| r.next_deadline())
        });
        let bye = d.and_then(|d| d.bye.as_ref().map(|b| b.retx.next_deadline()));
        let trying = d
            .and_then(|d| d.invite.as_ref())
            .and_then(|i| i.progress.is_pending().then_some(i.trying_due).flatten());
        let refer = self.refers.get(call).and_then(|r| r.next_deadline());
        let reinvite = self.reinvites.get(call).and_then(|r| r.next_deadline());
        [
            invite,
            bye,
            trying,
            refer,
            reinvite,
            self.leg_deadline(call),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The deadline as the scan over every call found it before the heap:
    /// tests check the heap against it after every input.
    #[cfg(test)]
    fn scan_deadline(&self) -> Option<Instant> {
        let calls = self
            .dialogs
            .keys()
            .chain(self.refers.keys())
            .chain(self.reinvites.keys())
            .chain(self.legs.keys());
        calls
            .filter_map(|c| self.call_deadline(c))
            .chain(self.responses.next_expiry())
            .min()
    }

    /// Run the timers due at `now`: retransmit, or give up on transactions
    /// (which ends their dialogs). Calling it early or late is harmless;
    /// only the calls with a deadline by `now` are visited.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.update_timers();
        self.responses.expire(now);
        for call in self.timers.pop_due(now) {
            self.refer_timeout(now, &call);
            self.reinvite_timeout(now, &call);
            self.uac_timeout(now, &call);
            self.dialog_timeout(now, &call);
            self.timers.touch(&call);
        }
        self.update_timers();
    }

    /// The INVITE (Timers G/H) and BYE (E/F) timers of one dialog.
    fn dialog_timeout(&mut self, now: Instant, call: &str) {
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        let mut sends = Vec::new();
        let mut expired_invite = None;
        let mut expired_bye = false;
        let mut quiet = false;
        if let Some(inv) = d.invite.as_mut() {
            if inv.progress.is_pending() && inv.trying_due.is_some_and(|t| now >= t) {
                // No answer within 200 ms: the 100 Trying held back goes now.
                inv.trying_due = None;
                sends.push((inv.peer, inv.last.clone()));
            }
            quiet = inv.once;
            let accepted = matches!(inv.progress, InviteProgress::Accepted(_));
            if let Some(r) = inv.progress.retransmit_mut() {
                match r.on_timeout(now) {
                    Tick::GiveUp => expired_invite = Some(accepted),
                    Tick::Resend => sends.push((inv.peer, inv.last.clone())),
                    Tick::Wait => {}
                }
            }
        }
        if let Some(b) = d.bye.as_mut() {
            match b.retx.on_timeout(now) {
                Tick::GiveUp => expired_bye = true,
                Tick::Resend => sends.push((d.peer, b.data.clone())),
                Tick::Wait => {}
            }
        }
        for (to, data) in sends {
            self.send(to, data);
        }
        let call = call.to_string();
        if let Some(accepted) = expired_invite {
            if let Some(d) = self.dialogs.get_mut(&call) {
                d.invite = None;
                if accepted && d.state == State::Answered {
                    // Timer H: the caller never confirmed. RFC 3261 13.3.1.4 says
                    // end it with BYE; we send it once, unretransmitted, and the
                    // dialog is gone now: the INVITE's source may be forged, and
                    // eleven BYEs to it would make us an amplifier. A 200 sent
                    // once (`accept_once`: a source not ACKing others) ends
                    // without one (a SHOULD there, and one more reflection).
                    d.state = State::Confirmed;
                    if !quiet {
                        self.send_bye(now, &call);
                    }
                    self.dialogs.remove(&call);
                    self.emit(CoreEvent::Ended {
                        call: call.clone(),
                        reason: EndReason::NoAck,
                    });
                } else if d.state == State::Closing {
                    let reason = d.end_reason.clone().unwrap_or(EndReason::Rejected(0));
                    self.dialogs.remove(&call);
                    self.emit(CoreEvent::Ended {
                        call: call.clone(),
                        reason,
                    });
                }
            }
        }
        if expired_bye {
            if let Some(d) = self.dialogs.remove(&call) {
                let reason = d.end_reason.unwrap_or(EndReason::LocalHangup);
                self.emit(CoreEvent::Ended { call, reason });
            }
        }
    }
}

#[cfg(test)]
mod tests;
