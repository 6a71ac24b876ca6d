//! The re-INVITE we send inside a confirmed dialog (RFC 3261 14.1): a new
//! offer on an established call, for a B2BUA passing one leg's hold or
//! resume to the other. An INVITE client transaction (17.1.1: Timer A
//! re-sends over UDP until a response, Timer B gives up at 64·T1), the ACK
//! of its 2xx (13.2.2.4, re-sent when the 2xx is) or of a non-2xx (the
//! transaction's own branch), and the answer reported as
//! [`CoreEvent::ReAnswer`].
//!
//! One at a time per dialog, and never while the peer's own re-INVITE is
//! pending on it: glare answers 491 (14.1, 14.2) either way.

use std::time::Instant;

use rsipstack::sip::Response;

use super::client_tx::ClientTx;
use super::dialog::State;
use super::retransmit::Tick;
use super::{Core, CoreEvent, Peer};
use crate::sip::msg::{self, build_request, via_param, RequestParts};

/// Why [`Core::reinvite`] sent nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReInviteError {
    /// No such call, or not a confirmed dialog.
    #[error("no confirmed dialog {0}")]
    NoDialog(String),
    /// An INVITE transaction (ours or the peer's) is still pending on it.
    #[error("an INVITE transaction is still pending on {0}")]
    Pending(String),
    /// The offer is empty.
    #[error("the SDP offer is empty")]
    NoOffer,
}

/// Our re-INVITE of one dialog, from sending until its ACK is no longer
/// needed.
#[derive(Debug)]
pub(super) struct ReInvite {
    cseq: u32,
    /// The INVITE, while no final response came (Timers A and B).
    tx: Option<ClientTx>,
    peer: Peer,
    /// The ACK of the final response, re-sent when it is retransmitted.
    ack: Option<Vec<u8>>,
    /// When the ACK is forgotten (64·T1 after the final response).
    linger: Option<Instant>,
}

impl ReInvite {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.tx
            .as_ref()
            .map(|t| t.retx.next_deadline())
            .or(self.linger)
    }

    /// Still waiting for a final response.
    pub(super) fn pending(&self) -> bool {
        self.tx.is_some()
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
    /// Send a re-INVITE with `sdp` on the confirmed dialog `call`; the
    /// answer comes as [`CoreEvent::ReAnswer`] (status 408 when nothing
    /// answered before Timer B).
    pub fn reinvite(&mut self, now: Instant, call: &str, sdp: &[u8]) -> Result<(), ReInviteError> {
        self.timers.touch(call);
        if sdp.is_empty() {
            return Err(ReInviteError::NoOffer);
        }
        let Some(d) = self
            .dialogs
            .get(call)
            .filter(|d| d.state == State::Confirmed)
        else {
            return Err(ReInviteError::NoDialog(call.to_string()));
        };
        if d.invite.is_some() || self.reinvites.get(call).is_some_and(ReInvite::pending) {
            return Err(ReInviteError::Pending(call.to_string()));
        }
        let headers = vec![("Allow", msg::ALLOW.to_string())];
        let body = Some(("application/sdp", sdp));
        let Some((mut tx, peer, cseq)) = self.in_dialog_request(now, call, "INVITE", headers, body)
        else {
            return Err(ReInviteError::NoDialog(call.to_string()));
        };
        // 17.1.1.2: Timer A doubles without the T2 cap, Timer B is 64·T1.
        tx.retx = super::retransmit::Retransmit::start(
            now,
            self.cfg.t1,
            self.cfg.t1 * 64,
            peer.reliable(),
        );
        let data = tx.data.clone();
        self.reinvites.insert(
            call.to_string(),
            ReInvite {
                cseq,
                tx: Some(tx),
                peer,
                ack: None,
                linger: None,
            },
        );
        self.send(peer, data);
        Ok(())
    }

    /// A response to a re-INVITE we sent; false when it answers something else.
    pub(super) fn reinvite_response(&mut self, now: Instant, resp: &Response) -> bool {
        let Some(call) = msg::resp_header(resp, "Call-ID").map(str::to_string) else {
            return false;
        };
        let Some(r) = self.reinvites.get_mut(&call) else {
            return false;
        };
        let Some((num, method)) = cseq_of(resp) else {
            return false;
        };
        if method != "INVITE" || num != r.cseq {
            return false;
        }
        let status = u16::from(resp.status_code.clone());
        let Some(tx) = r.tx.as_mut() else {
            // A retransmitted final response: its ACK again.
            if status >= 200 {
                if let Some(ack) = r.ack.clone() {
                    let peer = r.peer;
                    self.send(peer, ack);
                }
            }
            return true;
        };
        let branch = msg::resp_header(resp, "Via")
            .and_then(|v| via_param(v, "branch"))
            .unwrap_or("");
        if branch != tx.branch {
            return true;
        }
        if status < 200 {
            tx.retx.stop_resending();
            return true;
        }
        let tx_branch = tx.branch.clone();
        r.tx = None;
        let (cseq, peer) = (r.cseq, r.peer);
        let Some(d) = self.dialogs.get(&call) else {
            self.reinvites.remove(&call);
            return true;
        };
        // 2xx: the ACK is a transaction of its own (new branch), to the
        // remote target; non-2xx: part of the INVITE's (same branch).
        let branch = if (200..300).contains(&status) {
            format!("z9hG4bK{}", msg::random_token(16))
        } else {
            tx_branch
        };
        let sent_by = self.sent_by(&peer).to_string();
        let ack = build_request(&RequestParts {
            method: "ACK",
            request_uri: &d.remote_target,
            via_transport: if peer.reliable() { "TCP" } else { "UDP" },
            via_sent_by: &sent_by,
            branch: &branch,
            from: &d.local,
            to: &d.remote,
            call_id: &call,
            cseq,
            contact: None,
            routes: &d.route_set,
            headers: vec![],
            body: None,
        });
        let linger = now + self.cfg.t1 * 64;
        if let Some(r) = self.reinvites.get_mut(&call) {
            r.ack = Some(ack.clone());
            r.linger = Some(linger);
        }
        self.send(peer, ack);
        let sdp = msg::resp_header(resp, "Content-Type")
            .filter(|ct| super::is_sdp(ct))
            .map(|_| resp.body.clone())
            .unwrap_or_default();
        self.emit(CoreEvent::ReAnswer { call, status, sdp });
        true
    }

    /// Timers A and B of `call`'s re-INVITE; forgetting its ACK.
    pub(super) fn reinvite_timeout(&mut self, now: Instant, call: &str) {
        let Some(r) = self.reinvites.get_mut(call) else {
            return;
        };
        if let Some(tx) = r.tx.as_mut() {
            match tx.retx.on_timeout(now) {
                Tick::Resend => {
                    let (to, data) = (r.peer, tx.data.clone());
                    self.send(to, data);
                }
                Tick::GiveUp => {
                    self.reinvites.remove(call);
                    self.emit(CoreEvent::ReAnswer {
                        call: call.to_string(),
                        status: 408,
                        sdp: Vec::new(),
                    });
                }
                Tick::Wait => {}
            }
        } else if r.linger.is_some_and(|t| now >= t) {
            self.reinvites.remove(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CoreConfig, Link, Output};
    use super::*;
    use crate::sip::wire::{self, Inbound, Transport};

    fn peer() -> Peer {
        Peer {
            link: Link::Udp,
            addr: "127.0.0.1:5070".parse().unwrap(),
        }
    }

    fn drain(core: &mut Core) -> (Vec<String>, Vec<CoreEvent>) {
        let (mut sent, mut events) = (vec![], vec![]);
        while let Some(o) = core.poll_output() {
            match o {
                Output::Transmit { data, .. } => sent.push(String::from_utf8(data).unwrap()),
                Output::Event(e) => events.push(e),
            }
        }
        (sent, events)
    }

    fn request(core: &mut Core, now: Instant, text: &str) {
        let raw = text.replace('\n', "\r\n");
        let Ok(Inbound::Request(req)) = wire::parse_message(raw.as_bytes(), Transport::Udp) else {
            panic!("unparsable request")
        };
        let ctx = wire::reply_context(raw.as_bytes()).unwrap();
        core.handle_request(now, peer(), &req, &ctx);
    }

    fn response(core: &mut Core, now: Instant, text: &str) {
        let raw = text.replace('\n', "\r\n");
        let Ok(Inbound::Response(resp)) = wire::parse_message(raw.as_bytes(), Transport::Udp)
        else {
            panic!("unparsable response")
        };
        core.handle_response(now, &resp);
    }

    fn header<'a>(msg: &'a str, name: &str) -> &'a str {
        msg.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or("")
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    /// A confirmed dialog with the caller at 127.0.0.1:5070.
    fn confirmed(core: &mut Core, t0: Instant) -> String {
        request(
            core,
            t0,
            &format!("INVITE sip:bank@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKinv1\nFrom: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bank@127.0.0.1>\nCall-ID: hold1\nCSeq: 1 INVITE\nContact: <sip:alice@127.0.0.1:5070>\nContent-Type: application/sdp\nContent-Length: {}\n\n{OFFER}", OFFER.len()),
        );
        drain(core);
        core.accept(t0, "hold1", OFFER.as_bytes());
        let (sent, _) = drain(core);
        let tag = header(&sent[0], "To")
            .split("tag=")
            .nth(1)
            .unwrap()
            .to_string();
        request(
            core,
            t0,
            &format!("ACK sip:bank@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKack1\nFrom: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bank@127.0.0.1>;tag={tag}\nCall-ID: hold1\nCSeq: 1 ACK\nContent-Length: 0\n\n"),
        );
        drain(core);
        tag
    }

    fn answer(invite: &str, status: &str, body: &str) -> String {
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\n".to_string()
        };
        format!(
            "SIP/2.0 {status}\nVia: {}\nFrom: {}\nTo: {}\nCall-ID: hold1\nCSeq: {}\nContact: <sip:alice@127.0.0.1:5070>\n{ct}Content-Length: {}\n\n{body}",
            header(invite, "Via"),
            header(invite, "From"),
            header(invite, "To"),
            header(invite, "CSeq"),
            body.len()
        )
    }

    #[test]
    fn a_re_invite_is_retransmitted_acked_and_answered() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        confirmed(&mut core, t0);
        core.reinvite(
            t0,
            "hold1",
            OFFER.replace("t=0 0", "t=0 0\r\na=sendonly").as_bytes(),
        )
        .unwrap();
        let (sent, _) = drain(&mut core);
        let invite = sent[0].clone();
        assert!(
            invite.starts_with("INVITE sip:alice@127.0.0.1:5070 SIP/2.0"),
            "{invite}"
        );
        assert_eq!(header(&invite, "CSeq"), "2 INVITE");
        assert!(invite.contains("a=sendonly"), "{invite}");
        // A second one, or glare with theirs, must wait.
        assert_eq!(
            core.reinvite(t0, "hold1", OFFER.as_bytes()),
            Err(ReInviteError::Pending("hold1".into()))
        );
        // Timer A: re-sent at T1.
        core.handle_timeout(t0 + std::time::Duration::from_millis(500));
        let (sent, _) = drain(&mut core);
        assert_eq!(sent, vec![invite.clone()]);
        // Their re-INVITE crossing ours gets 491.
        let tag = header(&invite, "From")
            .split("tag=")
            .nth(1)
            .unwrap()
            .to_string();
        request(
            &mut core,
            t0,
            &format!("INVITE sip:bank@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKglare\nFrom: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bank@127.0.0.1>;tag={tag}\nCall-ID: hold1\nCSeq: 2 INVITE\nContact: <sip:alice@127.0.0.1:5070>\nContent-Type: application/sdp\nContent-Length: {}\n\n{OFFER}", OFFER.len()),
        );
        let (sent, events) = drain(&mut core);
        assert!(sent[0].starts_with("SIP/2.0 491"), "{sent:?}");
        assert!(events.is_empty(), "{events:?}");
        // 200: ACKed on a new branch, the answer reported.
        let ok = answer(&invite, "200 OK", "v=0");
        response(&mut core, t0, &ok);
        let (sent, events) = drain(&mut core);
        assert!(
            sent[0].starts_with("ACK sip:alice@127.0.0.1:5070"),
            "{sent:?}"
        );
        assert_eq!(header(&sent[0], "CSeq"), "2 ACK");
        assert_ne!(header(&sent[0], "Via"), header(&invite, "Via"));
        assert_eq!(
            events,
            vec![CoreEvent::ReAnswer {
                call: "hold1".into(),
                status: 200,
                sdp: b"v=0".to_vec()
            }]
        );
        // The 200 again: the same ACK, no second event.
        response(&mut core, t0, &ok);
        let (again, events) = drain(&mut core);
        assert_eq!(again, sent);
        assert!(events.is_empty());
        // Our later BYE takes the next CSeq.
        core.hangup(t0, "hold1");
        let (sent, _) = drain(&mut core);
        assert_eq!(header(&sent[0], "CSeq"), "3 BYE");
    }

    #[test]
    fn a_refused_or_unanswered_re_invite_reports_its_status() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        confirmed(&mut core, t0);
        core.reinvite(t0, "hold1", OFFER.as_bytes()).unwrap();
        let (sent, _) = drain(&mut core);
        response(
            &mut core,
            t0,
            &answer(&sent[0], "488 Not Acceptable Here", ""),
        );
        let (acks, events) = drain(&mut core);
        // The ACK of a non-2xx is in the INVITE's transaction.
        assert_eq!(header(&acks[0], "Via"), header(&sent[0], "Via"));
        assert!(matches!(
            &events[..],
            [CoreEvent::ReAnswer { status: 488, .. }]
        ));
        // Nothing answers the next one: 408 at Timer B.
        core.reinvite(t0, "hold1", OFFER.as_bytes()).unwrap();
        drain(&mut core);
        let mut now = t0;
        let mut events = vec![];
        while let Some(t) = core.next_deadline() {
            if t > t0 + std::time::Duration::from_secs(40) {
                break;
            }
            now = now.max(t);
            core.handle_timeout(now);
            events.extend(drain(&mut core).1);
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, CoreEvent::ReAnswer { status: 408, .. })),
            "{events:?}"
        );
        assert!(core.reinvite(t0, "nobody", OFFER.as_bytes()).is_err());
    }
}
