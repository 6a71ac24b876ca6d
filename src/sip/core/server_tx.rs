//! Server transactions: the INVITE we answer (RFC 3261 17.2.1; its 2xx
//! retransmitted by us as the UAS core, 13.3.1.4) and the final responses to
//! the other requests, kept to answer their retransmissions (17.2.2).

use std::collections::BTreeMap;
use std::time::Instant;

use rsipstack::sip::Request;

use super::dialog::{Dialog, State};
use super::retransmit::Retransmit;
use super::{accepts_sdp, is_sdp, Core, CoreEvent, EndReason, Peer};
use crate::sip::msg::{self, build_response, header_param, via_param, ResponseParts};
use crate::sip::wire::ReplyContext;

/// How long an INVITE over UDP may wait for its answer before we send 100
/// Trying (RFC 3261 17.2.1: "unless it knows that the TU will generate a
/// provisional or final response within 200 ms").
const TRYING_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Where an INVITE server transaction stands.
#[derive(Debug)]
pub(super) enum InviteProgress {
    /// No final response yet: the application decides (180 may be out).
    Pending,
    /// 2xx sent: retransmitted until the ACK (a transaction of its own) comes.
    Accepted(Retransmit),
    /// Non-2xx final sent: retransmitted until the ACK of this transaction.
    Rejected(Retransmit),
}

impl InviteProgress {
    pub(super) fn is_pending(&self) -> bool {
        matches!(self, InviteProgress::Pending)
    }

    pub(super) fn retransmit(&self) -> Option<&Retransmit> {
        match self {
            InviteProgress::Pending => None,
            InviteProgress::Accepted(r) | InviteProgress::Rejected(r) => Some(r),
        }
    }

    pub(super) fn retransmit_mut(&mut self) -> Option<&mut Retransmit> {
        match self {
            InviteProgress::Pending => None,
            InviteProgress::Accepted(r) | InviteProgress::Rejected(r) => Some(r),
        }
    }
}

#[derive(Debug)]
pub(super) struct InviteTx {
    pub(super) branch: String,
    pub(super) ctx: ReplyContext,
    pub(super) peer: Peer,
    /// The last response sent (re-sent on a retransmitted INVITE).
    pub(super) last: Vec<u8>,
    pub(super) progress: InviteProgress,
    /// When to send the 100 Trying kept in `last`, unless a response goes
    /// out first (UDP, initial INVITE; see `handle_invite`).
    pub(super) trying_due: Option<Instant>,
    /// The 2xx is sent once, not retransmitted, and Timer H ends the dialog
    /// without a BYE ([`Core::accept_once`]).
    pub(super) once: bool,
}

/// Server transaction identity of a request (RFC 3261 17.2.3): the top Via's
/// branch *and* sent-by (with the method, kept beside it in the key). Requests
/// from different clients may reuse a branch (RFC 4475 messages do: `unksm2`,
/// `regbadct`, `bext01`, `badvers` all carry `z9hG4bKkdjuw`); they are
/// different transactions. None without a branch.
pub(super) fn server_txn_key(ctx: &ReplyContext) -> Option<String> {
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

impl Core {
    /// Reply outside any transaction state we keep (and cache it for retransmissions).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply(
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
                    data.clone(),
                    now + self.cfg.t1 * 64,
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

    pub(super) fn handle_invite(
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
            let ours_pending = self.reinvites.get(&call).is_some_and(|r| r.pending());
            if d.state != State::Confirmed || ours_pending {
                // RFC 3261 14.2: also while our own re-INVITE is pending (glare).
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
                progress: InviteProgress::Pending,
                trying_due: None,
                once: false,
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
                if let Some(inv) = self.dialogs.get_mut(&call).and_then(|d| d.invite.as_mut()) {
                    inv.trying_due = None;
                }
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
        for name in [
            "P-Asserted-Identity",
            "Privacy",
            "Identity",
            "User-Agent",
            "Diversion",
        ] {
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
        // RFC 3261 17.2.1: no 100 Trying is needed when the final answer
        // comes within 200 ms. Over UDP we wait that long for it: an answer
        // in time goes alone (one message fewer to a possibly forged
        // source), and a caller that got no provisional response keeps
        // retransmitting its INVITE until it hears the answer.
        let trying_due = if peer.reliable() {
            self.send(peer, trying.clone());
            None
        } else {
            Some(now + TRYING_AFTER)
        };
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
                progress: InviteProgress::Pending,
                trying_due,
                once: false,
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

    pub(super) fn handle_cancel(
        &mut self,
        now: Instant,
        peer: Peer,
        ctx: &ReplyContext,
        branch: &str,
    ) {
        let call = ctx.call_id.clone();
        let pending = self
            .dialogs
            .get(&call)
            .and_then(|d| d.invite.as_ref())
            .map(|i| (i.branch == branch, i.progress.is_pending()));
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
    pub(super) fn finish_invite(
        &mut self,
        now: Instant,
        call: &str,
        status: u16,
        reason: &str,
        headers: Vec<(&str, String)>,
    ) {
        self.finish_invite_with_body(now, call, status, reason, headers, None);
    }

    pub(super) fn finish_invite_with_body(
        &mut self,
        now: Instant,
        call: &str,
        status: u16,
        reason: &str,
        headers: Vec<(&str, String)>,
        body: Option<&[u8]>,
    ) {
        self.finish_invite_as(now, call, (status, reason), headers, body, false);
    }

    /// The final response; `once`: a 2xx sent once, unretransmitted.
    fn finish_invite_as(
        &mut self,
        now: Instant,
        call: &str,
        (status, reason): (u16, &str),
        mut headers: Vec<(&str, String)>,
        body: Option<&[u8]>,
        once: bool,
    ) {
        let (t1, t2) = (self.cfg.t1, self.cfg.t2);
        let contact_for = |p: &Peer| self.contact(p);
        let Some(d) = self.dialogs.get(call) else {
            return;
        };
        let Some(inv) = &d.invite else { return };
        if !inv.progress.is_pending() {
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
            inv.trying_due = None;
            inv.once = once && is_2xx;
            // Unretransmitted is what a reliable transport gets: only Timer H runs.
            let retx = Retransmit::start(now, t1, t2, peer.reliable() || inv.once);
            inv.progress = if is_2xx {
                InviteProgress::Accepted(retx)
            } else {
                InviteProgress::Rejected(retx)
            };
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
        if !inv.progress.is_pending() || d.state != State::Offered {
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
            inv.trying_due = None;
        }
        self.send(peer, data);
    }

    /// Answer the pending INVITE (initial or re-INVITE) with our SDP.
    pub fn accept(&mut self, now: Instant, call: &str, sdp_answer: &[u8]) {
        self.timers.touch(call);
        self.finish_invite_with_body(now, call, 200, "OK", vec![], Some(sdp_answer));
    }

    /// Answer the pending initial INVITE like [`Core::accept`], but send the
    /// 200 once, without the retransmissions of RFC 3261 13.3.1.4, and end
    /// the dialog at Timer H without a BYE if no ACK came. For a source that
    /// has shown it does not ACK (the endpoint decides, see `limits.no_ack_*`
    /// and `limits.unacked_retransmit_per_source`): each retransmitted 200 goes to
    /// an address that may be forged. A real caller that lost this 200 still
    /// gets it again by retransmitting its INVITE (no 100 Trying stopped it).
    pub fn accept_once(&mut self, now: Instant, call: &str, sdp_answer: &[u8]) {
        self.timers.touch(call);
        self.finish_invite_as(now, call, (200, "OK"), vec![], Some(sdp_answer), true);
    }

    /// Stop retransmitting the 200 of an answered, un-ACKed initial INVITE,
    /// as if it had been sent with [`Core::accept_once`]: its source has
    /// shown it does not ACK (the endpoint decides, see `limits.no_ack_*`).
    /// An INVITE retransmission still gets the 200 again; Timer H still
    /// ends the dialog, without a BYE. Nothing happens to other dialogs.
    pub fn stop_retransmitting(&mut self, call: &str) {
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        if d.state != State::Answered {
            return;
        }
        if let Some(inv) = d.invite.as_mut() {
            if let InviteProgress::Accepted(r) = &mut inv.progress {
                r.stop_resending();
                inv.once = true;
                self.timers.touch(call);
            }
        }
    }

    /// Reject the pending INVITE. For a re-INVITE the dialog lives on.
    pub fn reject(&mut self, now: Instant, call: &str, status: u16, reason: &str) {
        self.timers.touch(call);
        if let Some(d) = self.dialogs.get_mut(call) {
            if d.state == State::Offered {
                d.end_reason = Some(EndReason::Rejected(status));
            }
        }
        self.finish_invite(now, call, status, reason, vec![]);
    }
}
