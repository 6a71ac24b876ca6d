//! Dialogs (RFC 3261 12): the state of each call we answered, and the
//! requests that act on it as a whole (ACK, our hang-up and its BYE).

use std::time::Instant;

use super::client_tx::ClientTx;
use super::retransmit::Retransmit;
use super::server_tx::{InviteProgress, InviteTx};
use super::{Core, CoreEvent, EndReason, Peer};
use crate::sip::msg::{self, build_request, header_param, RequestParts};
use crate::sip::wire::ReplyContext;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum State {
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
pub(super) struct Dialog {
    pub(super) local_tag: String,
    /// Their From (our To in requests we send).
    pub(super) remote: String,
    /// Their To plus our tag (our From in requests we send).
    pub(super) local: String,
    pub(super) remote_target: String,
    pub(super) route_set: Vec<String>,
    pub(super) peer: Peer,
    pub(super) remote_cseq: u32,
    pub(super) local_cseq: u32,
    pub(super) state: State,
    pub(super) invite: Option<InviteTx>,
    pub(super) bye: Option<ClientTx>,
    /// The app hung up before the ACK came: send BYE once it does.
    pub(super) bye_after_ack: bool,
    pub(super) end_reason: Option<EndReason>,
}

impl Core {
    /// The dialog a request with a To tag belongs to.
    pub(super) fn dialog_for(&self, call: &str, ctx: &ReplyContext) -> Option<&Dialog> {
        let tag = header_param(&ctx.to, "tag")?;
        self.dialogs
            .get(call)
            .filter(|d| d.local_tag == tag && d.state != State::Closing)
    }

    pub(super) fn handle_ack(
        &mut self,
        now: Instant,
        ctx: &ReplyContext,
        branch: &str,
        body: &[u8],
    ) {
        let call = ctx.call_id.clone();
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        let Some(inv) = &d.invite else { return };
        let is_2xx = match inv.progress {
            InviteProgress::Pending => return,
            InviteProgress::Accepted(_) => true,
            InviteProgress::Rejected(_) => false,
        };
        if !is_2xx && inv.branch != branch {
            return; // ACK for a non-2xx is in the INVITE's transaction
        }
        d.invite = None;
        match d.state {
            State::Answered => {
                d.state = State::Confirmed;
                let byenow = d.bye_after_ack;
                self.emit(CoreEvent::Confirmed {
                    call: call.clone(),
                    answer: body.to_vec(),
                });
                if byenow {
                    self.send_bye(now, &call);
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

    /// End the call from our side.
    pub fn hangup(&mut self, now: Instant, call: &str) {
        self.timers.touch(call);
        if self.uac_hangup(now, call) {
            return; // a leg we placed, not answered yet: CANCEL
        }
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

    /// Build a request inside `call`'s dialog (our From/To, its remote
    /// target and route set, the next CSeq, which it takes), as a client
    /// transaction ready to send to the dialog's peer; None without the dialog.
    pub(super) fn in_dialog_request(
        &mut self,
        now: Instant,
        call: &str,
        method: &str,
        headers: Vec<(&str, String)>,
        body: Option<(&str, &[u8])>,
    ) -> Option<(ClientTx, Peer, u32)> {
        let (t1, t2) = (self.cfg.t1, self.cfg.t2);
        let d = self.dialogs.get(call)?;
        let sent_by = self.sent_by(&d.peer).to_string();
        let contact = self.contact(&d.peer);
        let branch = format!("z9hG4bK{}", msg::random_token(16));
        let transport = if d.peer.reliable() { "TCP" } else { "UDP" };
        let cseq = d.local_cseq + 1;
        let data = build_request(&RequestParts {
            method,
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
            headers,
            body,
        });
        let peer = d.peer;
        if let Some(d) = self.dialogs.get_mut(call) {
            d.local_cseq = cseq;
        }
        let tx = ClientTx {
            branch,
            data,
            retx: Retransmit::start(now, t1, t2, peer.reliable()),
        };
        Some((tx, peer, cseq))
    }

    pub(super) fn send_bye(&mut self, now: Instant, call: &str) {
        let Some((tx, peer, _)) = self.in_dialog_request(now, call, "BYE", vec![], None) else {
            return;
        };
        let data = tx.data.clone();
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        d.state = State::Terminating;
        d.invite = None;
        d.bye = Some(tx);
        self.send(peer, data);
    }
}
