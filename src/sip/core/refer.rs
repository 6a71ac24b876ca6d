//! Blind transfer (RFC 3515): the REFER we send inside a dialog we answered,
//! and the implicit `refer` subscription it creates, whose NOTIFYs carry
//! the transfer's progress as `message/sipfrag` status lines.
//!
//! One REFER per dialog at a time: a new one replaces the last, and NOTIFYs
//! naming the old subscription (`Event: refer;id=<old CSeq>`) get 481, which
//! tells the notifier to stop (RFC 6665 4.1.3). The REFER goes where every
//! request of the dialog goes: to the address its INVITE came from.

use std::time::Instant;

use rsipstack::sip::{Request, Response};

use super::client_tx::ClientTx;
use super::dialog::State;
use super::retransmit::Tick;
use super::{Core, CoreEvent, Peer};
use crate::sip::msg::{self, header_param, via_param};
use crate::sip::wire::ReplyContext;

/// How a REFER we sent is getting on, for the application; carried by
/// [`CoreEvent::Refer`]. After `Refused`, `TimedOut`, `Final` or
/// `Terminated` nothing more comes for that REFER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferEvent {
    /// The caller's side accepted the REFER (202, or another 2xx).
    Accepted(u16),
    /// The caller's side refused the REFER (the final status, ≥ 300).
    Refused(u16),
    /// No final response to the REFER within Timer F (64·T1), and no NOTIFY.
    TimedOut,
    /// A NOTIFY reported a provisional status (`SIP/2.0 180 Ringing` → 180).
    Progress(u16),
    /// A NOTIFY reported a final status of the transfer (2xx: the agent
    /// has the caller; ≥ 300: it failed).
    Final(u16),
    /// The subscription ended (`Subscription-State: terminated`) without a
    /// final status.
    Terminated,
}

/// Why [`Core::refer`] sent nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferError {
    /// No such call, or it is not (or no longer) an ACKed dialog.
    #[error("no confirmed dialog {0}")]
    NoDialog(String),
    /// The target cannot be written into `Refer-To`.
    #[error("transfer target {0:?} is not a usable sip:, sips: or tel: URI")]
    BadTarget(String),
    /// A header name that is not a SIP token.
    #[error("header name {0:?} is not a SIP token")]
    BadHeader(String),
}

/// Where the subscription a REFER created stands.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Sub {
    /// Waiting for NOTIFYs (it exists from the first NOTIFY or the 2xx on).
    Open,
    /// A final sipfrag came: later NOTIFYs still get 200, report nothing.
    Done,
}

/// The REFER of one dialog: its client transaction while it runs, then the
/// subscription.
#[derive(Debug)]
pub(super) struct Refer {
    /// The REFER's CSeq number: the subscription's `id` (RFC 3515 2.4.6).
    cseq: u32,
    /// The client transaction, until its final response or Timer F.
    tx: Option<ClientTx>,
    peer: Peer,
    /// A NOTIFY came (possibly before the 202, RFC 6665 4.1.2.4): the
    /// subscription exists whatever becomes of the transaction.
    notified: bool,
    sub: Sub,
}

impl Refer {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.tx.as_ref().map(|t| t.retx.next_deadline())
    }
}

/// RFC 3261 25.1 `hnv-unreserved` and `unreserved`: what may stand
/// unescaped in a URI header name or value.
fn hnv_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&b)
}

/// `%XX`-escape everything else (RFC 3261 25.1 `escaped`).
fn escape_hnv(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if hnv_char(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3261 25.1 `token` characters (header names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// The `Refer-To` value: `<target?Name=value&…>`, names and values escaped
/// so that no header text can end the URI or the header line. A `tel:`
/// URI has no header part (RFC 3966), so its headers are left off.
pub fn refer_to(target: &str, headers: &[(String, String)]) -> Result<String, ReferError> {
    let t = target.trim();
    let scheme_ok = ["sip:", "sips:", "tel:"]
        .iter()
        .any(|p| t.len() > p.len() && t[..p.len()].eq_ignore_ascii_case(p));
    // Nothing that would end the name-addr or the line.
    if !scheme_ok
        || t.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>\"".contains(&b))
    {
        return Err(ReferError::BadTarget(target.to_string()));
    }
    if let Some((name, _)) = headers.iter().find(|(n, _)| !is_token(n)) {
        return Err(ReferError::BadHeader(name.clone()));
    }
    let mut uri = t.to_string();
    if !t[..4].eq_ignore_ascii_case("tel:") {
        for (i, (n, v)) in headers.iter().enumerate() {
            let sep = if i == 0 && !t.contains('?') { '?' } else { '&' };
            uri.push(sep);
            uri.push_str(&escape_hnv(n));
            uri.push('=');
            uri.push_str(&escape_hnv(v));
        }
    }
    Ok(format!("<{uri}>"))
}

/// The status code of a `message/sipfrag` body's first line
/// (`SIP/2.0 180 Ringing`); None when it is no status line.
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    let status: u16 = code.parse().ok()?;
    (100..700).contains(&status).then_some(status)
}

fn is_sipfrag(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("message/sipfrag"))
}

impl Core {
    /// Send REFER on the confirmed dialog `call`: `Refer-To` the `target`
    /// with `headers` embedded, `Referred-By` our URI in the dialog.
    /// Progress comes as [`CoreEvent::Refer`]; a REFER still running on
    /// this dialog is forgotten.
    pub fn refer(
        &mut self,
        now: Instant,
        call: &str,
        target: &str,
        headers: &[(String, String)],
    ) -> Result<(), ReferError> {
        self.timers.touch(call);
        let refer_to = refer_to(target, headers)?;
        let Some(d) = self
            .dialogs
            .get(call)
            .filter(|d| d.state == State::Confirmed)
        else {
            return Err(ReferError::NoDialog(call.to_string()));
        };
        // Our URI in this dialog (the To of their INVITE), without the tag.
        let referred_by = format!("<{}>", msg::addr_uri(&d.local));
        let headers = vec![("Refer-To", refer_to), ("Referred-By", referred_by)];
        let Some((tx, peer, cseq)) = self.in_dialog_request(now, call, "REFER", headers, None)
        else {
            return Err(ReferError::NoDialog(call.to_string()));
        };
        let data = tx.data.clone();
        self.refers.insert(
            call.to_string(),
            Refer {
                cseq,
                tx: Some(tx),
                peer,
                notified: false,
                sub: Sub::Open,
            },
        );
        self.send(peer, data);
        Ok(())
    }

    fn emit_refer(&mut self, call: &str, event: ReferEvent) {
        self.emit(CoreEvent::Refer {
            call: call.to_string(),
            event,
        });
    }

    /// A response to a REFER we sent; false when it answers something else.
    pub(super) fn refer_response(&mut self, resp: &Response) -> bool {
        let (Some(call), Some(branch)) = (
            msg::resp_header(resp, "Call-ID"),
            msg::resp_header(resp, "Via").and_then(|v| via_param(v, "branch")),
        ) else {
            return false;
        };
        let Some(r) = self.refers.get_mut(call) else {
            return false;
        };
        let Some(tx) = r.tx.as_mut().filter(|t| t.branch == branch) else {
            return false;
        };
        let status = u16::from(resp.status_code.clone());
        if status < 200 {
            tx.retx.stop_resending(); // provisional: keep Timer F only
            return true;
        }
        r.tx = None;
        let call = call.to_string();
        if status < 300 {
            self.emit_refer(&call, ReferEvent::Accepted(status));
        } else {
            // No subscription: NOTIFYs that raced the refusal get 481 now.
            self.refers.remove(&call);
            self.emit_refer(&call, ReferEvent::Refused(status));
        }
        true
    }

    /// REFER retransmissions and Timer F of `call`'s REFER.
    pub(super) fn refer_timeout(&mut self, now: Instant, call: &str) {
        let Some(r) = self.refers.get_mut(call) else {
            return;
        };
        let Some(tx) = r.tx.as_mut() else { return };
        match tx.retx.on_timeout(now) {
            Tick::Resend => {
                let (to, data) = (r.peer, tx.data.clone());
                self.send(to, data);
            }
            Tick::GiveUp => {
                r.tx = None;
                // A NOTIFY already proved the subscription; its
                // outcome comes by NOTIFY, not by this transaction.
                if !r.notified {
                    self.refers.remove(call);
                    self.emit_refer(call, ReferEvent::TimedOut);
                }
            }
            Tick::Wait => {}
        }
    }

    /// A NOTIFY from the caller: the progress of our REFER, if it names
    /// that subscription; answered 200, or 481/489/415/400 with why.
    pub(super) fn handle_notify(
        &mut self,
        now: Instant,
        peer: Peer,
        req: &Request,
        ctx: &ReplyContext,
    ) {
        let call = ctx.call_id.clone();
        let reply = |core: &mut Core, status: u16, reason: &str, headers: Vec<(&str, String)>| {
            core.reply(now, peer, ctx, "NOTIFY", status, reason, headers);
        };
        // Only the caller itself may report on its dialog.
        let in_dialog = self
            .dialog_for(&call, ctx)
            .is_some_and(|d| d.peer.addr.ip() == peer.addr.ip());
        let Some(r) = self.refers.get(&call).filter(|_| in_dialog) else {
            return reply(self, 481, "Subscription Does Not Exist", vec![]);
        };
        let event = msg::req_header(req, "Event").unwrap_or("");
        let package = event.split(';').next().unwrap_or("").trim();
        if !package.eq_ignore_ascii_case("refer") {
            return reply(
                self,
                489,
                "Bad Event",
                vec![("Allow-Events", "refer".into())],
            );
        }
        if header_param(event, "id").is_some_and(|id| id != r.cseq.to_string()) {
            return reply(self, 481, "Subscription Does Not Exist", vec![]);
        }
        let ctype = msg::req_header(req, "Content-Type").unwrap_or("");
        if !is_sipfrag(ctype) {
            return reply(
                self,
                415,
                "Unsupported Media Type",
                vec![("Accept", "message/sipfrag".into())],
            );
        }
        let Some(status) = sipfrag_status(&req.body) else {
            return reply(
                self,
                400,
                "Bad Request: body is not a sipfrag status line",
                vec![],
            );
        };
        let state = msg::req_header(req, "Subscription-State").unwrap_or("");
        let terminated = state
            .split(';')
            .next()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("terminated"));
        reply(self, 200, "OK", vec![]);
        let Some(r) = self.refers.get_mut(&call) else {
            return;
        };
        r.notified = true;
        let open = r.sub == Sub::Open;
        if status >= 200 || terminated {
            r.sub = Sub::Done;
        }
        // Nothing more will come once terminated; a late 202 still reports
        // Accepted, so the transaction is kept while it runs.
        if terminated && r.tx.is_none() {
            self.refers.remove(&call);
        }
        if !open {
            return;
        }
        if status >= 200 {
            self.emit_refer(&call, ReferEvent::Final(status));
        } else {
            self.emit_refer(&call, ReferEvent::Progress(status));
            if terminated {
                self.emit_refer(&call, ReferEvent::Terminated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{CoreConfig, Link, Output};
    use super::*;
    use crate::sip::wire::{self, Inbound, Transport};

    const CALL: &str = "call-r@test";

    fn peer() -> Peer {
        Peer {
            link: Link::Udp,
            addr: "192.0.2.7:5070".parse().unwrap(),
        }
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

    fn request(core: &mut Core, now: Instant, from: Peer, text: &str) {
        let raw = text.replace('\n', "\r\n");
        let Ok(Inbound::Request(r)) = wire::parse_message(raw.as_bytes(), Transport::Udp) else {
            panic!("test request did not parse: {text}")
        };
        let ctx = wire::reply_context(raw.as_bytes()).unwrap();
        core.handle_request(now, from, &r, &ctx);
    }

    fn response(core: &mut Core, now: Instant, text: &str) {
        let raw = text.replace('\n', "\r\n");
        let Ok(Inbound::Response(r)) = wire::parse_message(raw.as_bytes(), Transport::Udp) else {
            panic!("test response did not parse: {text}")
        };
        core.handle_response(now, &r);
    }

    fn status(s: &str) -> u16 {
        s[8..11].parse().unwrap()
    }

    fn header<'a>(msg: &'a str, name: &str) -> &'a str {
        msg.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
            .unwrap_or_else(|| panic!("no {name} in {msg}"))
    }

    /// An answered, ACKed call; returns our tag.
    fn confirmed(core: &mut Core, t0: Instant) -> String {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let inv = format!("INVITE sip:bank@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKinv\nFrom: <sip:+15551230001@192.0.2.7>;tag=abc\nTo: <sip:bank@127.0.0.1>\nCall-ID: {CALL}\nCSeq: 1 INVITE\nContact: <sip:alice@192.0.2.7:5070>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}", sdp.len());
        request(core, t0, peer(), &inv);
        drain(core);
        core.accept(t0, CALL, b"v=0\r\n");
        let (sent, _) = drain(core);
        let tag = header_param(header(&sent[0].1, "To"), "tag")
            .unwrap()
            .to_string();
        request(core, t0, peer(), &format!("ACK sip:voxgate@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKack\nFrom: <sip:+15551230001@192.0.2.7>;tag=abc\nTo: <sip:bank@127.0.0.1>;tag={tag}\nCall-ID: {CALL}\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n"));
        drain(core);
        tag
    }

    /// A REFER sent on the confirmed call; returns it.
    fn referred(core: &mut Core, t0: Instant) -> String {
        let headers = vec![("X-Auth-Result".to_string(), "passed".to_string())];
        core.refer(t0, CALL, "sip:agent@10.0.0.5:5080", &headers)
            .unwrap();
        let (sent, evs) = drain(core);
        assert!(evs.is_empty());
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, peer(), "REFER goes where the INVITE came from");
        sent[0].1.clone()
    }

    fn answer(core: &mut Core, now: Instant, refer: &str, code: u16, reason: &str) {
        let resp = format!(
            "SIP/2.0 {code} {reason}\nVia: {}\nFrom: {}\nTo: {};tag=abc\nCall-ID: {CALL}\nCSeq: {}\nContent-Length: 0\n\n",
            header(refer, "Via"),
            header(refer, "From"),
            msg::addr_uri(header(refer, "To")),
            header(refer, "CSeq"),
        );
        response(core, now, &resp);
    }

    fn notify_text(
        tag: &str,
        cseq: u32,
        event: &str,
        state: &str,
        ctype: &str,
        body: &str,
    ) -> String {
        format!(
            "NOTIFY sip:voxgate@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKn{cseq}\nFrom: <sip:+15551230001@192.0.2.7>;tag=abc\nTo: <sip:bank@127.0.0.1>;tag={tag}\nCall-ID: {CALL}\nCSeq: {cseq} NOTIFY\nMax-Forwards: 70\nEvent: {event}\nSubscription-State: {state}\nContent-Type: {ctype}\nContent-Length: {}\n\n{body}",
            body.len()
        )
    }

    /// A NOTIFY with this sipfrag; returns our answer's status and the events.
    fn notify(
        core: &mut Core,
        now: Instant,
        tag: &str,
        cseq: u32,
        state: &str,
        frag: &str,
    ) -> (u16, Vec<CoreEvent>) {
        let text = notify_text(
            tag,
            cseq,
            "refer",
            state,
            "message/sipfrag;version=2.0",
            frag,
        );
        request(core, now, peer(), &text);
        let (sent, evs) = drain(core);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, peer());
        (status(&sent[0].1), evs)
    }

    fn ev(event: ReferEvent) -> Vec<CoreEvent> {
        vec![CoreEvent::Refer {
            call: CALL.into(),
            event,
        }]
    }

    #[test]
    fn refer_is_accepted_and_notifies_lead_to_a_final_status() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = confirmed(&mut core, t0);
        let refer = referred(&mut core, t0);
        assert!(
            refer.starts_with("REFER sip:alice@192.0.2.7:5070 SIP/2.0\r\n"),
            "{refer}"
        );
        assert_eq!(header(&refer, "CSeq"), "2 REFER");
        assert_eq!(
            header(&refer, "Refer-To"),
            "<sip:agent@10.0.0.5:5080?X-Auth-Result=passed>"
        );
        assert_eq!(header(&refer, "Referred-By"), "<sip:bank@127.0.0.1>");
        assert!(header(&refer, "From").contains(&format!("tag={tag}")));
        assert!(header(&refer, "To").contains("tag=abc"));
        assert_eq!(header(&refer, "Contact"), "<sip:voxgate@127.0.0.1:5060>");
        answer(&mut core, t0, &refer, 202, "Accepted");
        assert_eq!(drain(&mut core).1, ev(ReferEvent::Accepted(202)));
        assert!(core.next_deadline().is_none(), "transaction over");
        let (st, evs) = notify(
            &mut core,
            t0,
            &tag,
            2,
            "active;expires=60",
            "SIP/2.0 100 Trying\r\n",
        );
        assert_eq!((st, evs), (200, ev(ReferEvent::Progress(100))));
        let (st, evs) = notify(
            &mut core,
            t0,
            &tag,
            3,
            "active;expires=60",
            "SIP/2.0 180 Ringing\r\n",
        );
        assert_eq!((st, evs), (200, ev(ReferEvent::Progress(180))));
        let (st, evs) = notify(
            &mut core,
            t0,
            &tag,
            4,
            "terminated;reason=noresource",
            "SIP/2.0 200 OK\r\n",
        );
        assert_eq!((st, evs), (200, ev(ReferEvent::Final(200))));
        // The subscription is over: another NOTIFY names none.
        let (st, evs) = notify(&mut core, t0, &tag, 5, "active", "SIP/2.0 200 OK\r\n");
        assert_eq!((st, evs), (481, vec![]));
        // Our BYE follows with the next CSeq.
        core.hangup(t0, CALL);
        let (sent, _) = drain(&mut core);
        assert_eq!(header(&sent[0].1, "CSeq"), "3 BYE");
    }

    #[test]
    fn a_failed_sipfrag_is_final_and_refusal_reports_the_status() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = confirmed(&mut core, t0);
        let refer = referred(&mut core, t0);
        answer(&mut core, t0, &refer, 202, "Accepted");
        drain(&mut core);
        let (st, evs) = notify(
            &mut core,
            t0,
            &tag,
            2,
            "terminated",
            "SIP/2.0 486 Busy Here\r\n",
        );
        assert_eq!((st, evs), (200, ev(ReferEvent::Final(486))));
        // A second REFER on the same dialog, refused.
        let refer = referred(&mut core, t0);
        assert_eq!(header(&refer, "CSeq"), "3 REFER");
        answer(&mut core, t0, &refer, 100, "Trying");
        assert!(drain(&mut core).1.is_empty());
        answer(&mut core, t0, &refer, 603, "Decline");
        assert_eq!(drain(&mut core).1, ev(ReferEvent::Refused(603)));
        // No subscription came of it.
        let (st, evs) = notify(&mut core, t0, &tag, 3, "active", "SIP/2.0 100 Trying");
        assert_eq!((st, evs), (481, vec![]));
        assert!(core.refers.is_empty());
    }

    #[test]
    fn refer_is_retransmitted_until_timer_f() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        confirmed(&mut core, t0);
        let refer = referred(&mut core, t0);
        let mut resent = vec![];
        let mut timed_out = None;
        while let Some(t) = core.next_deadline() {
            core.handle_timeout(t);
            let (sent, evs) = drain(&mut core);
            for (to, data) in sent {
                assert_eq!(to, peer());
                assert_eq!(data, refer, "the same REFER, byte for byte");
                resent.push((t - t0).as_millis());
            }
            if evs == ev(ReferEvent::TimedOut) {
                timed_out = Some(t - t0);
            }
        }
        assert_eq!(
            resent,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(timed_out, Some(Duration::from_secs(32)));
        assert_eq!(core.call_count(), 1, "the call goes on");
    }

    #[test]
    fn a_notify_before_the_202_is_progress_and_keeps_the_subscription() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = confirmed(&mut core, t0);
        let refer = referred(&mut core, t0);
        let (st, evs) = notify(&mut core, t0, &tag, 2, "active", "SIP/2.0 100 Trying");
        assert_eq!((st, evs), (200, ev(ReferEvent::Progress(100))));
        let t1 = t0 + Duration::from_millis(600);
        core.handle_timeout(t1);
        assert_eq!(drain(&mut core).0.len(), 1, "REFER still retransmitted");
        answer(&mut core, t1, &refer, 202, "Accepted");
        assert_eq!(drain(&mut core).1, ev(ReferEvent::Accepted(202)));
        let (st, evs) = notify(&mut core, t1, &tag, 3, "terminated", "SIP/2.0 200 OK");
        assert_eq!((st, evs), (200, ev(ReferEvent::Final(200))));
        // The 202 lost instead: Timer F says nothing, the NOTIFYs decide.
        let refer = referred(&mut core, t1);
        let (st, _) = notify(&mut core, t1, &tag, 4, "active", "SIP/2.0 180 Ringing");
        assert_eq!(st, 200);
        let mut evs = vec![];
        while let Some(t) = core.next_deadline() {
            core.handle_timeout(t);
            evs.extend(drain(&mut core).1);
        }
        assert!(evs.is_empty(), "{evs:?}");
        let _ = refer;
        let (st, evs) = notify(&mut core, t1, &tag, 5, "terminated", "SIP/2.0 180 Ringing");
        assert_eq!(st, 200);
        assert_eq!(
            evs,
            [ev(ReferEvent::Progress(180)), ev(ReferEvent::Terminated)].concat()
        );
    }

    #[test]
    fn bad_notifies_get_a_status_not_a_panic() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        let tag = confirmed(&mut core, t0);
        // No REFER yet: no subscription.
        let (st, _) = notify(&mut core, t0, &tag, 2, "active", "SIP/2.0 100 Trying");
        assert_eq!(st, 481);
        let refer = referred(&mut core, t0);
        answer(&mut core, t0, &refer, 202, "Accepted");
        drain(&mut core);
        let send = |core: &mut Core, from: Peer, text: String| {
            request(core, t0, from, &text);
            let (sent, evs) = drain(core);
            assert!(evs.is_empty(), "{evs:?}");
            status(&sent[0].1)
        };
        let frag = "message/sipfrag";
        let mut n = 10;
        let mut next = || {
            n += 1;
            n
        };
        assert_eq!(
            send(
                &mut core,
                peer(),
                notify_text(&tag, next(), "refer", "active", frag, "hello")
            ),
            400
        );
        assert_eq!(
            send(
                &mut core,
                peer(),
                notify_text(
                    &tag,
                    next(),
                    "refer",
                    "active",
                    frag,
                    "INVITE sip:a@b SIP/2.0"
                )
            ),
            400
        );
        assert_eq!(
            send(
                &mut core,
                peer(),
                notify_text(
                    &tag,
                    next(),
                    "refer",
                    "active",
                    "text/plain",
                    "SIP/2.0 200 OK"
                )
            ),
            415
        );
        assert_eq!(
            send(
                &mut core,
                peer(),
                notify_text(&tag, next(), "presence", "active", frag, "SIP/2.0 200 OK")
            ),
            489
        );
        assert_eq!(
            send(
                &mut core,
                peer(),
                notify_text(
                    &tag,
                    next(),
                    "refer;id=99",
                    "active",
                    frag,
                    "SIP/2.0 200 OK"
                )
            ),
            481
        );
        assert_eq!(
            send(
                &mut core,
                peer(),
                notify_text("wrong", next(), "refer", "active", frag, "SIP/2.0 200 OK")
            ),
            481
        );
        // Another host cannot report on the caller's dialog.
        let stranger = Peer {
            link: Link::Udp,
            addr: "198.51.100.1:5060".parse().unwrap(),
        };
        assert_eq!(
            send(
                &mut core,
                stranger,
                notify_text(&tag, next(), "refer", "active", frag, "SIP/2.0 200 OK")
            ),
            481
        );
        // The right one, with the subscription's id, still counts.
        let (st, evs) = notify(
            &mut core,
            t0,
            &tag,
            next(),
            "active",
            "SIP/2.0 183 Session Progress",
        );
        assert_eq!((st, evs), (200, ev(ReferEvent::Progress(183))));
    }

    #[test]
    fn refer_needs_a_confirmed_dialog() {
        let mut core = Core::new(CoreConfig::default());
        let t0 = Instant::now();
        assert_eq!(
            core.refer(t0, "nope", "sip:a@b", &[]),
            Err(ReferError::NoDialog("nope".into()))
        );
        confirmed(&mut core, t0);
        assert!(matches!(
            core.refer(t0, CALL, "sip:a@b>", &[]),
            Err(ReferError::BadTarget(_))
        ));
        assert!(drain(&mut core).0.is_empty());
        core.hangup(t0, CALL);
        drain(&mut core);
        assert!(
            core.refer(t0, CALL, "sip:a@b", &[]).is_err(),
            "not while hanging up"
        );
    }

    #[test]
    fn refer_to_embeds_escaped_headers() {
        let h = vec![
            ("X-Auth-Result".to_string(), "passed".to_string()),
            ("User-to-User".to_string(), "56a3;encoding=hex".to_string()),
            ("X-Note".to_string(), "a b&c=d>\r\nX: y".to_string()),
        ];
        assert_eq!(
            refer_to("sip:agent@10.0.0.5:5080", &h).unwrap(),
            "<sip:agent@10.0.0.5:5080?X-Auth-Result=passed&User-to-User=56a3%3Bencoding%3Dhex&X-Note=a%20b%26c%3Dd%3E%0D%0AX:%20y>"
        );
        assert_eq!(
            refer_to("sip:a@h?Foo=1", &h[..1]).unwrap(),
            "<sip:a@h?Foo=1&X-Auth-Result=passed>"
        );
        assert_eq!(
            refer_to("tel:+15551234567", &h).unwrap(),
            "<tel:+15551234567>"
        );
        assert!(matches!(
            refer_to("sip:a@h>;x", &h),
            Err(ReferError::BadTarget(_))
        ));
        assert!(matches!(
            refer_to("http://x", &h),
            Err(ReferError::BadTarget(_))
        ));
        assert!(matches!(
            refer_to("sip:a@h", &[("Bad Name".into(), "v".into())]),
            Err(ReferError::BadHeader(_))
        ));
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 180 Ringing\r\n"), Some(180));
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK"), Some(200));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 486 Busy Here\r\nVia: x\r\n"),
            Some(486)
        );
        assert_eq!(sipfrag_status(b"INVITE sip:a@b SIP/2.0\r\n"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 99 Odd"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 1800 x"), None);
        assert_eq!(sipfrag_status(b""), None);
        assert_eq!(sipfrag_status(&[0xff, 0xfe]), None);
    }
}
