//! Sans-IO SIP user-agent server core: transactions and dialogs for the
//! calls we answer.
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

use rsipstack::sip::{Method, Request, Response};

use super::msg::{
    self, build_request, build_response, header_param, via_param, RequestParts, ResponseParts,
};
use super::wire::ReplyContext;

/// Which transport (and, for TCP, which connection) a peer is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    Udp,
    Tcp(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub link: Link,
    pub addr: SocketAddr,
}

impl Peer {
    fn reliable(&self) -> bool {
        matches!(self.link, Link::Tcp(_))
    }
}

/// Call handle: the SIP Call-ID (we are a UAS; one dialog per Call-ID).
pub type CallRef = String;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Our address as written in Via/Contact (`127.0.0.1:5060`).
    pub sent_by: String,
    pub t1: Duration,
    pub t2: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            sent_by: "127.0.0.1:5060".into(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

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

#[derive(Clone, Debug, PartialEq)]
pub enum CoreEvent {
    /// A new call wants an answer: call `accept` or `reject`.
    NewCall {
        call: CallRef,
        dialled: Option<String>,
        caller: String,
        offer: Vec<u8>,
        peer: Peer,
        headers: BTreeMap<String, String>,
    },
    /// A re-INVITE inside a dialog: call `accept` (new answer) or `reject` (488…).
    ReOffer {
        call: CallRef,
        content_type: Option<String>,
        offer: Vec<u8>,
    },
    /// ACK for our 200: media may flow both ways. `answer` is the ACK's SDP
    /// (the caller's answer when the INVITE had no offer; else usually empty).
    Confirmed { call: CallRef, answer: Vec<u8> },
    /// CANCEL before answer; the call is gone.
    Cancelled { call: CallRef },
    /// The caller sent BYE.
    RemoteHangup { call: CallRef },
    /// INFO inside the dialog (DTMF relay).
    Info {
        call: CallRef,
        content_type: String,
        body: Vec<u8>,
    },
    /// The dialog is gone for good; release the call's resources.
    Ended { call: CallRef, reason: EndReason },
}

#[derive(Debug)]
pub enum Output {
    Transmit { to: Peer, data: Vec<u8> },
    Event(CoreEvent),
}

#[derive(Debug)]
struct Retx {
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
struct InviteTx {
    branch: String,
    ctx: ReplyContext,
    peer: Peer,
    last: Vec<u8>,
    /// Set once a final response went out; retransmitted until ACK.
    final_sent: Option<(bool /*2xx*/, Retx)>,
}

#[derive(Debug)]
struct ClientTx {
    branch: String,
    data: Vec<u8>,
    retx: Retx,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum State {
    /// Waiting for the application to answer.
    Offered,
    /// 200 sent, waiting for ACK.
    Answered,
    Confirmed,
    /// BYE sent.
    Terminating,
    /// Rejected/cancelled: only absorbing the ACK of our final response.
    Closing,
}

#[derive(Debug)]
struct Dialog {
    local_tag: String,
    /// Their From (our To in requests we send).
    remote: String,
    /// Their To plus our tag (our From in requests we send).
    local: String,
    remote_target: String,
    route_set: Vec<String>,
    peer: Peer,
    remote_cseq: u32,
    local_cseq: u32,
    state: State,
    invite: Option<InviteTx>,
    bye: Option<ClientTx>,
    /// The app hung up before the ACK came: send BYE once it does.
    bye_after_ack: bool,
    end_reason: Option<EndReason>,
}

struct CachedResponse {
    data: Vec<u8>,
    expires: Instant,
}

/// Server transaction identity of a request (RFC 3261 17.2.3): the top Via's
/// branch *and* sent-by (with the method, kept beside it in the key). Requests
/// from different clients may reuse a branch (RFC 4475 messages do: `unksm2`,
/// `regbadct`, `bext01`, `badvers` all carry `z9hG4bKkdjuw`); they are
/// different transactions. None without a branch.
fn server_txn_key(ctx: &ReplyContext) -> Option<String> {
    let via = ctx.vias.first()?;
    let branch = via_param(via, "branch")?;
    let sent_by: String = via
        .split(';')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some(format!("{branch} {}", sent_by.to_ascii_lowercase()))
}

pub struct Core {
    cfg: CoreConfig,
    dialogs: HashMap<CallRef, Dialog>,
    /// Final responses to non-INVITE requests, re-sent on retransmission (UDP),
    /// keyed by [`server_txn_key`].
    responses: HashMap<(String, String), CachedResponse>,
    out: VecDeque<Output>,
    accepting: bool,
    /// Peer IP → our host:port as that peer reaches us (see `set_sent_by_for`).
    route_local: HashMap<std::net::IpAddr, String>,
}

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
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            cfg,
            dialogs: HashMap::new(),
            responses: HashMap::new(),
            out: VecDeque::new(),
            accepting: true,
            route_local: HashMap::new(),
        }
    }

    /// Stop taking new calls (SIGTERM): new INVITEs get 503.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    pub fn call_count(&self) -> usize {
        self.dialogs.len()
    }

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

    /// Reply outside any transaction state we keep (and cache it for retransmissions).
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        now: Instant,
        peer: Peer,
        ctx: &ReplyContext,
        method: &str,
        status: u16,
        reason: &str,
        headers: Vec<(&str, String)>,
    ) {
        let tag = if status > 100 && header_param(&ctx.to, "tag").is_none() {
            Some(msg::random_token(10))
        } else {
            None
        };
        let data = build_response(
            ctx,
            status,
            reason,
            &ResponseParts {
                to_tag: tag.as_deref(),
                source: Some(peer.addr),
                headers,
                ..Default::default()
            },
        );
        if !peer.reliable() && status >= 200 {
            if let Some(key) = server_txn_key(ctx) {
                self.responses.insert(
                    (key, method.to_string()),
                    CachedResponse {
                        data: data.clone(),
                        expires: now + self.cfg.t1 * 64,
                    },
                );
            }
        }
        self.send(peer, data);
    }

    /// Answer a request the wire layer found malformed (400 & co).
    pub fn reply_malformed(
        &mut self,
        now: Instant,
        peer: Peer,
        ctx: &ReplyContext,
        status: u16,
        reason: &str,
    ) {
        let method = ctx.cseq.split_whitespace().nth(1).unwrap_or("").to_string();
        // Tell the peer what we do speak when we refuse a method (RFC 3261 8.2.1).
        let headers = if matches!(status, 405 | 501) {
            vec![("Allow", msg::ALLOW.to_string())]
        } else {
            vec![]
        };
        self.reply(now, peer, ctx, &method, status, reason, headers);
    }

    pub fn handle_request(&mut self, now: Instant, peer: Peer, req: &Request, ctx: &ReplyContext) {
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
                let data = c.data.clone();
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
                            d.invite.as_ref().is_some_and(|i| i.final_sent.is_none());
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
            Method::Notify => {
                let call = ctx.call_id.clone();
                if self.dialog_for(&call, ctx).is_none() {
                    self.reply(
                        now,
                        peer,
                        ctx,
                        "NOTIFY",
                        481,
                        "Call/Transaction Does Not Exist",
                        vec![],
                    );
                } else {
                    self.reply(now, peer, ctx, "NOTIFY", 200, "OK", vec![]);
                }
            }
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

    /// The dialog a request with a To tag belongs to.
    fn dialog_for(&self, call: &str, ctx: &ReplyContext) -> Option<&Dialog> {
        let tag = header_param(&ctx.to, "tag")?;
        self.dialogs
            .get(call)
            .filter(|d| d.local_tag == tag && d.state != State::Closing)
    }

    fn handle_invite(
        &mut self,
        now: Instant,
        peer: Peer,
        req: &Request,
        ctx: &ReplyContext,
        branch: String,
    ) {
        let call = ctx.call_id.clone();
        let cseq: u32 = ctx
            .cseq
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let ctype = msg::req_header(req, "Content-Type").map(str::to_string);

        if header_param(&ctx.to, "tag").is_some() {
            // re-INVITE
            let Some(d) = self
                .dialogs
                .get_mut(&call)
                .filter(|d| Some(d.local_tag.as_str()) == header_param(&ctx.to, "tag"))
            else {
                self.reply(
                    now,
                    peer,
                    ctx,
                    "INVITE",
                    481,
                    "Call/Transaction Does Not Exist",
                    vec![],
                );
                return;
            };
            if let Some(inv) = &d.invite {
                if inv.branch == branch {
                    let data = inv.last.clone();
                    self.send(peer, data);
                    return;
                }
                self.reply(
                    now,
                    peer,
                    ctx,
                    "INVITE",
                    500,
                    "Server Internal Error: previous INVITE still pending",
                    vec![("Retry-After", "1".into())],
                );
                return;
            }
            if d.state != State::Confirmed {
                self.reply(now, peer, ctx, "INVITE", 491, "Request Pending", vec![]);
                return;
            }
            if cseq <= d.remote_cseq {
                self.reply(
                    now,
                    peer,
                    ctx,
                    "INVITE",
                    500,
                    "Server Internal Error: CSeq out of order",
                    vec![],
                );
                return;
            }
            d.remote_cseq = cseq;
            if let Some(c) = msg::req_header(req, "Contact") {
                d.remote_target = msg::addr_uri(c).to_string();
            }
            let trying = build_response(
                ctx,
                100,
                "Trying",
                &ResponseParts {
                    source: Some(peer.addr),
                    ..Default::default()
                },
            );
            d.invite = Some(InviteTx {
                branch,
                ctx: ctx.clone(),
                peer,
                last: trying,
                final_sent: None,
            });
            self.emit(CoreEvent::ReOffer {
                call,
                content_type: ctype,
                offer: req.body.clone(),
            });
            return;
        }

        if let Some(d) = self.dialogs.get(&call) {
            if d.invite.as_ref().is_some_and(|i| i.branch == branch) {
                let data = d
                    .invite
                    .as_ref()
                    .map(|i| i.last.clone())
                    .unwrap_or_default();
                self.send(peer, data);
            } else {
                // RFC 3261 8.2.2.2: same Call-ID, new transaction, no tag → merged request.
                self.reply(now, peer, ctx, "INVITE", 482, "Loop Detected", vec![]);
            }
            return;
        }
        if !self.accepting {
            self.reply(
                now,
                peer,
                ctx,
                "INVITE",
                503,
                "Service Unavailable: shutting down",
                vec![("Retry-After", "30".into())],
            );
            return;
        }
        // RFC 3261 8.2.3: content we cannot handle is refused before any routing.
        if !req.body.is_empty() && !ctype.as_deref().is_some_and(is_sdp) {
            self.reply(
                now,
                peer,
                ctx,
                "INVITE",
                415,
                "Unsupported Media Type",
                vec![("Accept", "application/sdp".into())],
            );
            return;
        }
        if let Some(accept) = msg::req_header(req, "Accept") {
            if !accepts_sdp(accept) {
                self.reply(
                    now,
                    peer,
                    ctx,
                    "INVITE",
                    406,
                    "Not Acceptable: our answer is application/sdp",
                    vec![],
                );
                return;
            }
        }
        // RFC 2543 INVITEs may lack Contact (RFC 4475 3.4.1, inv2543: accept them);
        // RFC 2543 then sends in-dialog requests to the From URI.
        let contact = msg::req_header(req, "Contact").unwrap_or(&ctx.from);
        let dialled = msg::uri_user(&req.uri.to_string()).map(str::to_string);
        let caller = msg::uri_user(msg::addr_uri(&ctx.from))
            .unwrap_or("anonymous")
            .to_string();
        let mut headers = BTreeMap::new();
        for name in ["P-Asserted-Identity", "Identity", "User-Agent", "Diversion"] {
            if let Some(v) = msg::req_header(req, name) {
                headers.insert(name.to_ascii_lowercase(), v.to_string());
            }
        }
        let local_tag = msg::random_token(12);
        let trying = build_response(
            ctx,
            100,
            "Trying",
            &ResponseParts {
                source: Some(peer.addr),
                ..Default::default()
            },
        );
        self.send(peer, trying.clone());
        let d = Dialog {
            local: format!("{};tag={}", ctx.to, local_tag),
            local_tag,
            remote: ctx.from.clone(),
            remote_target: msg::addr_uri(contact).to_string(),
            route_set: msg::header_values(&req.headers, "Record-Route")
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_string())
                .collect(),
            peer,
            remote_cseq: cseq,
            local_cseq: 1,
            state: State::Offered,
            invite: Some(InviteTx {
                branch,
                ctx: ctx.clone(),
                peer,
                last: trying,
                final_sent: None,
            }),
            bye: None,
            bye_after_ack: false,
            end_reason: None,
        };
        self.dialogs.insert(call.clone(), d);
        self.emit(CoreEvent::NewCall {
            call,
            dialled,
            caller,
            offer: req.body.clone(),
            peer,
            headers,
        });
    }

    fn handle_ack(&mut self, _now: Instant, ctx: &ReplyContext, branch: &str, body: &[u8]) {
        let call = ctx.call_id.clone();
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        let Some(inv) = &d.invite else { return };
        let Some((is_2xx, _)) = &inv.final_sent else {
            return;
        };
        let is_2xx = *is_2xx;
        if !is_2xx && inv.branch != branch {
            return; // ACK for a non-2xx is in the INVITE's transaction
        }
        d.invite = None;
        match d.state {
            State::Answered => {
                d.state = State::Confirmed;
                let bye_now = d.bye_after_ack;
                self.emit(CoreEvent::Confirmed {
                    call: call.clone(),
                    answer: body.to_vec(),
                });
                if bye_now {
                    self.send_bye(_now, &call);
                }
            }
            State::Closing => {
                let reason = d.end_reason.clone().unwrap_or(EndReason::Rejected(0));
                self.dialogs.remove(&call);
                self.emit(CoreEvent::Ended { call, reason });
            }
            _ => {}
        }
    }

    fn handle_cancel(&mut self, now: Instant, peer: Peer, ctx: &ReplyContext, branch: &str) {
        let call = ctx.call_id.clone();
        let pending = self
            .dialogs
            .get(&call)
            .and_then(|d| d.invite.as_ref())
            .map(|i| (i.branch == branch, i.final_sent.is_none()));
        match pending {
            Some((true, still_pending)) => {
                self.reply(now, peer, ctx, "CANCEL", 200, "OK", vec![]);
                if still_pending {
                    let initial = self
                        .dialogs
                        .get(&call)
                        .is_some_and(|d| d.state == State::Offered);
                    self.finish_invite(now, &call, 487, "Request Terminated", vec![]);
                    if initial {
                        if let Some(d) = self.dialogs.get_mut(&call) {
                            d.end_reason = Some(EndReason::Cancelled);
                        }
                        self.emit(CoreEvent::Cancelled { call });
                    }
                }
            }
            _ => self.reply(
                now,
                peer,
                ctx,
                "CANCEL",
                481,
                "Call/Transaction Does Not Exist",
                vec![],
            ),
        }
    }

    /// Send the final response of the pending INVITE transaction.
    fn finish_invite(
        &mut self,
        now: Instant,
        call: &str,
        status: u16,
        reason: &str,
        headers: Vec<(&str, String)>,
    ) {
        self.finish_invite_with_body(now, call, status, reason, headers, None);
    }

    fn finish_invite_with_body(
        &mut self,
        now: Instant,
        call: &str,
        status: u16,
        reason: &str,
        mut headers: Vec<(&str, String)>,
        body: Option<&[u8]>,
    ) {
        let t1 = self.cfg.t1;
        let contact_for = |p: &Peer| self.contact(p);
        let Some(d) = self.dialogs.get(call) else {
            return;
        };
        let Some(inv) = &d.invite else { return };
        if inv.final_sent.is_some() {
            return;
        }
        let contact = contact_for(&inv.peer);
        let is_2xx = (200..300).contains(&status);
        if is_2xx {
            headers.push(("Allow", msg::ALLOW.to_string()));
        }
        let data = build_response(
            &inv.ctx,
            status,
            reason,
            &ResponseParts {
                to_tag: Some(&d.local_tag),
                source: Some(inv.peer.addr),
                contact: is_2xx.then_some(contact.as_str()),
                headers,
                body: body.map(|b| ("application/sdp", b)),
            },
        );
        let peer = inv.peer;
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        let initial = d.state == State::Offered;
        if let Some(inv) = d.invite.as_mut() {
            inv.last = data.clone();
            let next = (!peer.reliable()).then(|| now + t1);
            inv.final_sent = Some((
                is_2xx,
                Retx {
                    next,
                    interval: t1,
                    give_up: now + t1 * 64,
                },
            ));
        }
        if initial {
            d.state = if is_2xx {
                State::Answered
            } else {
                State::Closing
            };
        }
        self.send(peer, data);
    }

    /// 180 Ringing for the pending initial INVITE (ring before answering).
    pub fn ring(&mut self, _now: Instant, call: &str) {
        let Some(d) = self.dialogs.get(call) else {
            return;
        };
        let Some(inv) = &d.invite else { return };
        if inv.final_sent.is_some() || d.state != State::Offered {
            return;
        }
        let contact = self.contact(&inv.peer);
        let data = build_response(
            &inv.ctx,
            180,
            "Ringing",
            &ResponseParts {
                to_tag: Some(&d.local_tag),
                source: Some(inv.peer.addr),
                contact: Some(&contact),
                ..Default::default()
            },
        );
        let peer = inv.peer;
        if let Some(inv) = self.dialogs.get_mut(call).and_then(|d| d.invite.as_mut()) {
            inv.last = data.clone();
        }
        self.send(peer, data);
    }

    /// Answer the pending INVITE (initial or re-INVITE) with our SDP.
    pub fn accept(&mut self, now: Instant, call: &str, sdp_answer: &[u8]) {
        self.finish_invite_with_body(now, call, 200, "OK", vec![], Some(sdp_answer));
    }

    /// Reject the pending INVITE. For a re-INVITE the dialog lives on.
    pub fn reject(&mut self, now: Instant, call: &str, status: u16, reason: &str) {
        if let Some(d) = self.dialogs.get_mut(call) {
            if d.state == State::Offered {
                d.end_reason = Some(EndReason::Rejected(status));
            }
        }
        self.finish_invite(now, call, status, reason, vec![]);
    }

    /// End the call from our side.
    pub fn hangup(&mut self, now: Instant, call: &str) {
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        match d.state {
            State::Offered => {
                d.end_reason = Some(EndReason::LocalHangup);
                self.finish_invite(now, call, 480, "Temporarily Unavailable", vec![]);
            }
            // RFC 3261 15: no BYE before the ACK of our 2xx arrives (or never arrives).
            State::Answered => d.bye_after_ack = true,
            State::Confirmed => self.send_bye(now, call),
            State::Terminating | State::Closing => {}
        }
    }

    fn send_bye(&mut self, now: Instant, call: &str) {
        let t1 = self.cfg.t1;
        let Some(d) = self.dialogs.get(call) else {
            return;
        };
        let sent_by = self.sent_by(&d.peer).to_string();
        let contact = self.contact(&d.peer);
        let branch = format!("z9hG4bK{}", msg::random_token(16));
        let transport = if d.peer.reliable() { "TCP" } else { "UDP" };
        let cseq = d.local_cseq + 1;
        let data = build_request(&RequestParts {
            method: "BYE",
            request_uri: &d.remote_target,
            via_transport: transport,
            via_sent_by: &sent_by,
            branch: &branch,
            from: &d.local,
            to: &d.remote,
            call_id: call,
            cseq,
            contact: Some(&contact),
            routes: &d.route_set,
            headers: vec![],
            body: None,
        });
        let peer = d.peer;
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        d.local_cseq = cseq;
        d.state = State::Terminating;
        d.invite = None;
        d.bye = Some(ClientTx {
            branch,
            data: data.clone(),
            retx: Retx {
                next: (!peer.reliable()).then(|| now + t1),
                interval: t1,
                give_up: now + t1 * 64,
            },
        });
        self.send(peer, data);
    }

    pub fn handle_response(&mut self, _now: Instant, resp: &Response) {
        let Some(via) = msg::resp_header(resp, "Via") else {
            return;
        };
        let Some(branch) = via_param(via, "branch") else {
            return;
        };
        let Some(call) = msg::resp_header(resp, "Call-ID").map(str::to_string) else {
            return;
        };
        let status = u16::from(resp.status_code.clone());
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        let Some(bye) = d.bye.as_mut() else { return };
        if bye.branch != branch {
            return;
        }
        if status < 200 {
            bye.retx.next = None; // provisional: stop retransmitting, keep Timer F
            return;
        }
        self.dialogs.remove(&call);
        self.emit(CoreEvent::Ended {
            call,
            reason: EndReason::LocalHangup,
        });
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        let mut consider = |t: Instant| best = Some(best.map_or(t, |b: Instant| b.min(t)));
        for d in self.dialogs.values() {
            if let Some((_, r)) = d.invite.as_ref().and_then(|i| i.final_sent.as_ref()) {
                if let Some(n) = r.next {
                    consider(n);
                }
                consider(r.give_up);
            }
            if let Some(b) = &d.bye {
                if let Some(n) = b.retx.next {
                    consider(n);
                }
                consider(b.retx.give_up);
            }
        }
        if let Some(min) = self.responses.values().map(|c| c.expires).min() {
            consider(min);
        }
        best
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let t2 = self.cfg.t2;
        self.responses.retain(|_, c| c.expires > now);
        let mut sends = Vec::new();
        let mut expired_invites = Vec::new();
        let mut expired_byes = Vec::new();
        for (call, d) in self.dialogs.iter_mut() {
            if let Some(inv) = d.invite.as_mut() {
                if let Some((is_2xx, r)) = inv.final_sent.as_mut() {
                    if now >= r.give_up {
                        expired_invites.push((call.clone(), *is_2xx));
                    } else if let Some(n) = r.next {
                        if now >= n {
                            sends.push((inv.peer, inv.last.clone()));
                            r.interval = (r.interval * 2).min(t2);
                            r.next = Some(now + r.interval);
                        }
                    }
                }
            }
            if let Some(b) = d.bye.as_mut() {
                if now >= b.retx.give_up {
                    expired_byes.push(call.clone());
                } else if let Some(n) = b.retx.next {
                    if now >= n {
                        sends.push((d.peer, b.data.clone()));
                        b.retx.interval = (b.retx.interval * 2).min(t2);
                        b.retx.next = Some(now + b.retx.interval);
                    }
                }
            }
        }
        for (to, data) in sends {
            self.send(to, data);
        }
        for (call, is_2xx) in expired_invites {
            let Some(d) = self.dialogs.get_mut(&call) else {
                continue;
            };
            d.invite = None;
            if is_2xx && d.state == State::Answered {
                // Timer H: the caller never confirmed; RFC 3261 13.3.1.4 says end it with BYE.
                d.state = State::Confirmed;
                d.end_reason = Some(EndReason::NoAck);
                self.send_bye(now, &call);
                if let Some(d) = self.dialogs.get_mut(&call) {
                    d.end_reason = Some(EndReason::NoAck);
                }
            } else if d.state == State::Closing {
                let reason = d.end_reason.clone().unwrap_or(EndReason::Rejected(0));
                self.dialogs.remove(&call);
                self.emit(CoreEvent::Ended { call, reason });
            }
        }
        for call in expired_byes {
            let reason = self
                .dialogs
                .get(&call)
                .and_then(|d| d.end_reason.clone())
                .unwrap_or(EndReason::LocalHangup);
            self.dialogs.remove(&call);
            self.emit(CoreEvent::Ended { call, reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::wire::{self, Inbound, Transport};

    fn peer() -> Peer {
        Peer {
            link: Link::Udp,
            addr: "127.0.0.1:5070".parse().unwrap(),
        }
    }

    fn req(text: &str) -> (Request, ReplyContext) {
        let raw = text.replace('\n', "\r\n");
        let Ok(Inbound::Request(r)) = wire::parse_message(raw.as_bytes(), Transport::Udp) else {
            panic!("test request did not parse: {text}")
        };
        (
            r,
            wire::reply_context(raw.as_bytes()).expect("reply context"),
        )
    }

    const SDP: &str =
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";

    fn invite(branch: &str, to_tag: Option<&str>, cseq: u32) -> String {
        let to = match to_tag {
            Some(t) => format!("<sip:bank@127.0.0.1>;tag={t}"),
            None => "<sip:bank@127.0.0.1>".into(),
        };
        format!(
            "INVITE sip:bank@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch={branch};rport\nFrom: <sip:+15551230001@192.0.2.7>;tag=abc\nTo: {to}\nCall-ID: call-1@test\nCSeq: {cseq} INVITE\nContact: <sip:alice@192.0.2.7:5070>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {}\n\n{}",
            SDP.replace('\n', "\r\n").len(),
            SDP
        )
    }

    fn in_dialog(method: &str, branch: &str, tag: &str, cseq: u32) -> String {
        format!(
            "{method} sip:voxgate@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch={branch}\nFrom: <sip:+15551230001@192.0.2.7>;tag=abc\nTo: <sip:bank@127.0.0.1>;tag={tag}\nCall-ID: call-1@test\nCSeq: {cseq} {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
        )
    }

    fn drain(core: &mut Core) -> (Vec<(Peer, String)>, Vec<CoreEvent>) {
        let mut sent = vec![];
        let mut evs = vec![];
        while let Some(o) = core.poll_output() {
            match o {
                Output::Transmit { to, data } => sent.push((to, String::from_utf8(data).unwrap())),
                Output::Event(e) => evs.push(e),
            }
        }
        (sent, evs)
    }

    fn status(s: &str) -> u16 {
        s[8..11].parse().unwrap()
    }

    fn to_tag(resp: &str) -> String {
        let to = resp.lines().find(|l| l.starts_with("To:")).unwrap();
        header_param(&to[3..], "tag").unwrap().to_string()
    }

    /// INVITE → 100 + NewCall; accept → 200; returns the local tag.
    fn answered(core: &mut Core, t0: Instant) -> String {
        let (r, c) = req(&invite("z9hG4bK1", None, 1));
        core.handle_request(t0, peer(), &r, &c);
        let (sent, evs) = drain(core);
        assert_eq!(sent.len(), 1);
        assert_eq!(status(&sent[0].1), 100);
        assert!(
            matches!(&evs[0], CoreEvent::NewCall { dialled: Some(d), caller, .. } if d == "bank" && caller == "+15551230001")
        );
        core.accept(t0, "call-1@test", b"v=0\r\n");
        let (sent, _) = drain(core);
        assert_eq!(status(&sent[0].1), 200);
        assert!(sent[0].1.contains("Contact: <sip:voxgate@127.0.0.1:5060>"));
        assert!(sent[0].1.contains(";received=127.0.0.1"), "{}", sent[0].1);
        to_tag(&sent[0].1)
    }

    #[test]
    fn replies_go_to_packet_source_not_via_host() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let (r, c) = req(&invite("z9hG4bK1", None, 1));
        core.handle_request(t0, peer(), &r, &c);
        let (sent, _) = drain(&mut core);
        assert!(sent.iter().all(|(p, _)| *p == peer()));
    }

    #[test]
    fn ok_retransmitted_with_doubling_until_ack() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = answered(&mut core, t0);
        let mut t = t0;
        let mut gaps = vec![];
        let mut last = t0;
        for _ in 0..6 {
            t = core.next_deadline().unwrap();
            core.handle_timeout(t);
            let (sent, _) = drain(&mut core);
            assert_eq!(sent.len(), 1);
            assert_eq!(status(&sent[0].1), 200);
            gaps.push((t - last).as_millis());
            last = t;
        }
        assert_eq!(gaps, vec![500, 1000, 2000, 4000, 4000, 4000]);
        let (r, c) = req(&in_dialog("ACK", "z9hG4bK2", &tag, 1));
        core.handle_request(t, peer(), &r, &c);
        let (sent, evs) = drain(&mut core);
        assert!(sent.is_empty());
        assert_eq!(
            evs,
            vec![CoreEvent::Confirmed {
                answer: Vec::new(),
                call: "call-1@test".into()
            }]
        );
        assert!(core.next_deadline().is_none(), "no timers once confirmed");
    }

    #[test]
    fn no_ack_ends_call_with_bye_after_timer_h() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        answered(&mut core, t0);
        let mut bye = None;
        while let Some(t) = core.next_deadline() {
            core.handle_timeout(t);
            let (sent, evs) = drain(&mut core);
            if let Some((_, b)) = sent.iter().find(|(_, s)| s.starts_with("BYE ")) {
                assert!(t - t0 >= Duration::from_secs(32));
                bye.get_or_insert(b.clone());
            }
            if let Some(CoreEvent::Ended { reason, .. }) = evs.first() {
                assert_eq!(*reason, EndReason::NoAck);
                break;
            }
        }
        let bye = bye.expect("BYE sent");
        assert!(
            bye.starts_with("BYE sip:alice@192.0.2.7:5070 SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(bye.contains("CSeq: 2 BYE"));
    }

    #[test]
    fn bye_from_caller_gets_200_and_event() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = answered(&mut core, t0);
        let (r, c) = req(&in_dialog("ACK", "z9hG4bK2", &tag, 1));
        core.handle_request(t0, peer(), &r, &c);
        drain(&mut core);
        let (r, c) = req(&in_dialog("BYE", "z9hG4bK3", &tag, 2));
        core.handle_request(t0, peer(), &r, &c);
        let (sent, evs) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 200);
        assert_eq!(
            evs,
            vec![CoreEvent::RemoteHangup {
                call: "call-1@test".into()
            }]
        );
        // Retransmitted BYE: same answer from the cache, no second event.
        core.handle_request(t0, peer(), &r, &c);
        let (sent2, evs) = drain(&mut core);
        assert_eq!(sent2[0].1, sent[0].1);
        assert!(evs.is_empty());
        assert_eq!(core.call_count(), 0);
    }

    #[test]
    fn cancel_before_answer_gives_200_and_487() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let (r, c) = req(&invite("z9hG4bK1", None, 1));
        core.handle_request(t0, peer(), &r, &c);
        drain(&mut core);
        let cancel = "CANCEL sip:bank@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK1\nFrom: <sip:+15551230001@192.0.2.7>;tag=abc\nTo: <sip:bank@127.0.0.1>\nCall-ID: call-1@test\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n";
        let (r, c) = req(cancel);
        core.handle_request(t0, peer(), &r, &c);
        let (sent, evs) = drain(&mut core);
        let codes: Vec<u16> = sent.iter().map(|(_, s)| status(s)).collect();
        assert_eq!(codes, vec![200, 487]);
        assert!(sent[0].1.contains("CSeq: 1 CANCEL"));
        assert!(sent[1].1.contains("CSeq: 1 INVITE"));
        assert_eq!(
            evs,
            vec![CoreEvent::Cancelled {
                call: "call-1@test".into()
            }]
        );
        // Application answering late must not resurrect it.
        core.accept(t0, "call-1@test", b"v=0");
        assert!(drain(&mut core).0.is_empty());
        let tag = to_tag(&sent[1].1);
        let (r, c) = req(&in_dialog("ACK", "z9hG4bK1", &tag, 1));
        core.handle_request(t0, peer(), &r, &c);
        let (_, evs) = drain(&mut core);
        assert!(matches!(
            evs.as_slice(),
            [CoreEvent::Ended {
                reason: EndReason::Cancelled,
                ..
            }]
        ));
        assert_eq!(core.call_count(), 0);
    }

    #[test]
    fn reject_retransmits_until_ack_then_forgets() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let (r, c) = req(&invite("z9hG4bK1", None, 1));
        core.handle_request(t0, peer(), &r, &c);
        drain(&mut core);
        core.reject(t0, "call-1@test", 404, "Not Found");
        let (sent, _) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 404);
        let t1 = core.next_deadline().unwrap();
        core.handle_timeout(t1);
        assert_eq!(status(&drain(&mut core).0[0].1), 404);
        // A retransmitted INVITE gets the same final response.
        let (r2, c2) = req(&invite("z9hG4bK1", None, 1));
        core.handle_request(t1, peer(), &r2, &c2);
        assert_eq!(status(&drain(&mut core).0[0].1), 404);
        let tag = to_tag(&sent[0].1);
        let (r, c) = req(&in_dialog("ACK", "z9hG4bK1", &tag, 1));
        core.handle_request(t1, peer(), &r, &c);
        let (_, evs) = drain(&mut core);
        assert!(matches!(
            evs.as_slice(),
            [CoreEvent::Ended {
                reason: EndReason::Rejected(404),
                ..
            }]
        ));
        assert_eq!(core.call_count(), 0);
    }

    #[test]
    fn reinvite_offers_and_keeps_dialog_on_reject() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = answered(&mut core, t0);
        let (r, c) = req(&in_dialog("ACK", "z9hG4bK2", &tag, 1));
        core.handle_request(t0, peer(), &r, &c);
        drain(&mut core);
        let (r, c) = req(&invite("z9hG4bK5", Some(&tag), 2));
        core.handle_request(t0, peer(), &r, &c);
        let (_, evs) = drain(&mut core);
        assert!(matches!(&evs[0], CoreEvent::ReOffer { .. }));
        core.reject(t0, "call-1@test", 488, "Not Acceptable Here");
        let (sent, _) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 488);
        let (r, c) = req(&in_dialog("ACK", "z9hG4bK5", &tag, 2));
        core.handle_request(t0, peer(), &r, &c);
        let (_, evs) = drain(&mut core);
        assert!(evs.is_empty());
        assert_eq!(core.call_count(), 1);
        // Out-of-order CSeq is refused.
        let (r, c) = req(&invite("z9hG4bK6", Some(&tag), 2));
        core.handle_request(t0, peer(), &r, &c);
        assert_eq!(status(&drain(&mut core).0[0].1), 500);
        // Our BYE carries the next local CSeq and ends the dialog on 200.
        core.hangup(t0, "call-1@test");
        let (sent, _) = drain(&mut core);
        assert!(sent[0].1.starts_with("BYE "));
    }

    #[test]
    fn options_info_and_unknown_dialogs() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let opt = "OPTIONS sip:voxgate@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKo\nFrom: <sip:ds@192.0.2.9>;tag=k\nTo: <sip:voxgate@127.0.0.1>\nCall-ID: opt-1\nCSeq: 7 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n";
        let (r, c) = req(opt);
        core.handle_request(t0, peer(), &r, &c);
        let (sent, _) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 200);
        assert!(sent[0].1.contains("Allow: INVITE"));
        let (r, c) = req(&in_dialog("BYE", "z9hG4bK9", "nope", 2));
        core.handle_request(t0, peer(), &r, &c);
        assert_eq!(status(&drain(&mut core).0[0].1), 481);
        let (r, c) = req(&in_dialog("INFO", "z9hG4bK10", "nope", 2));
        core.handle_request(t0, peer(), &r, &c);
        assert_eq!(status(&drain(&mut core).0[0].1), 481);
        // In a dialog, INFO is answered and handed up.
        let tag = answered(&mut core, t0);
        let info = format!(
            "INFO sip:voxgate@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKi\nFrom: <sip:+15551230001@192.0.2.7>;tag=abc\nTo: <sip:bank@127.0.0.1>;tag={tag}\nCall-ID: call-1@test\nCSeq: 3 INFO\nContent-Type: application/dtmf-relay\nContent-Length: 22\n\nSignal=5\r\nDuration=160"
        );
        let (r, c) = req(&info);
        core.handle_request(t0, peer(), &r, &c);
        let (sent, evs) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 200);
        assert!(
            matches!(&evs[0], CoreEvent::Info { content_type, body, .. } if content_type == "application/dtmf-relay" && body.starts_with(b"Signal=5"))
        );
    }

    #[test]
    fn rfc2543_invite_without_contact_is_accepted() {
        // RFC 4475 3.4.1 (inv2543): no Contact; the From URI is the remote target.
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let inv =
            invite("z9hG4bK2543", None, 1).replace("Contact: <sip:alice@192.0.2.7:5070>\n", "");
        assert!(!inv.contains("Contact"));
        let (r, c) = req(&inv);
        core.handle_request(t0, peer(), &r, &c);
        let (sent, evs) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 100);
        assert!(matches!(&evs[0], CoreEvent::NewCall { .. }), "{evs:?}");
    }

    #[test]
    fn same_branch_from_another_sent_by_is_another_transaction() {
        // RFC 3261 17.2.3: branch, sent-by and method identify a server transaction.
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let opt = |host: &str, extra: &str| {
            format!("OPTIONS sip:voxgate@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {host};branch=z9hG4bKkdjuw\nFrom: <sip:ds@{host}>;tag=k\nTo: <sip:voxgate@127.0.0.1>\nCall-ID: opt-{host}\nCSeq: 7 OPTIONS\nMax-Forwards: 70\n{extra}Content-Length: 0\n\n")
        };
        let (r, c) = req(&opt("192.0.2.9", "Require: foo\n"));
        core.handle_request(t0, peer(), &r, &c);
        assert_eq!(status(&drain(&mut core).0[0].1), 420);
        // A retransmission gets the cached answer ...
        let (r, c) = req(&opt("192.0.2.9", "Require: foo\n"));
        core.handle_request(t0, peer(), &r, &c);
        assert_eq!(status(&drain(&mut core).0[0].1), 420);
        // ... another client reusing the branch gets its own.
        let (r, c) = req(&opt("192.0.2.10", ""));
        core.handle_request(t0, peer(), &r, &c);
        assert_eq!(status(&drain(&mut core).0[0].1), 200);
    }

    #[test]
    fn draining_refuses_new_calls_and_require_gets_420() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let with_require = invite("z9hG4bK1", None, 1).replace(
            "Max-Forwards: 70\n",
            "Max-Forwards: 70\nRequire: 100rel, foo\n",
        );
        let (r, c) = req(&with_require);
        core.handle_request(t0, peer(), &r, &c);
        let (sent, evs) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 420);
        assert!(sent[0].1.contains("Unsupported: 100rel, foo"));
        assert!(evs.is_empty());
        core.stop_accepting();
        let (r, c) = req(&invite("z9hG4bK2", None, 1).replace("call-1@test", "call-2@test"));
        core.handle_request(t0, peer(), &r, &c);
        let (sent, evs) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 503);
        assert!(evs.is_empty());
    }

    #[test]
    fn hangup_before_ack_waits_for_ack() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = answered(&mut core, t0);
        core.hangup(t0, "call-1@test");
        assert!(drain(&mut core).0.is_empty(), "no BYE before ACK");
        let (r, c) = req(&in_dialog("ACK", "z9hG4bK2", &tag, 1));
        core.handle_request(t0, peer(), &r, &c);
        let (sent, _) = drain(&mut core);
        assert!(sent[0].1.starts_with("BYE "));
        // 200 for our BYE ends the dialog.
        let branch = via_param(
            sent[0].1.lines().find(|l| l.starts_with("Via:")).unwrap(),
            "branch",
        )
        .unwrap()
        .to_string();
        let ok = format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: <sip:bank@127.0.0.1>;tag={tag}\r\nTo: <sip:+15551230001@192.0.2.7>;tag=abc\r\nCall-ID: call-1@test\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
        let Ok(Inbound::Response(resp)) = wire::parse_message(ok.as_bytes(), Transport::Udp) else {
            panic!()
        };
        core.handle_response(t0, &resp);
        let (_, evs) = drain(&mut core);
        assert!(matches!(
            evs.as_slice(),
            [CoreEvent::Ended {
                reason: EndReason::LocalHangup,
                ..
            }]
        ));
        assert_eq!(core.call_count(), 0);
    }
}
