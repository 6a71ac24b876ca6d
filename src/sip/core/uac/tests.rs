//! Outbound legs driven with simulated time: the agent's responses and
//! requests are written by hand, as sipp or a PBX would send them.

use std::time::{Duration, Instant};

use rsipstack::sip::{Request, Response};

use super::*;
use crate::sip::core::{CoreConfig, Link, Output};
use crate::sip::wire::{self, Inbound, ReplyContext, Transport};

const CALL: &str = "leg-1@voxgate";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// The dialled next hop: every request must go here.
fn agent() -> Peer {
    Peer {
        link: Link::Udp,
        addr: "192.0.2.50:5070".parse().unwrap(),
    }
}

fn outbound() -> Outbound {
    Outbound {
        target: "sip:agent@192.0.2.50:5070".into(),
        from_user: "ivr".into(),
        headers: vec![("X-Auth-Result".into(), "passed".into())],
        sdp: SDP.into(),
    }
}

fn drain(core: &mut Core) -> (Vec<String>, Vec<CoreEvent>) {
    let mut sent = vec![];
    let mut evs = vec![];
    while let Some(o) = core.poll_output() {
        match o {
            Output::Transmit { to, data } => {
                assert_eq!(to, agent(), "a request went somewhere else");
                sent.push(String::from_utf8(data).unwrap());
            }
            Output::Event(e) => evs.push(e),
        }
    }
    (sent, evs)
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

fn start_line(msg: &str) -> &str {
    msg.lines().next().unwrap()
}

/// Dial and return the INVITE sent.
fn dialled(core: &mut Core, t0: Instant, peer: Peer) -> String {
    core.dial(t0, CALL, peer, &outbound()).unwrap();
    let mut sent = vec![];
    while let Some(o) = core.poll_output() {
        let Output::Transmit { data, .. } = o else {
            panic!("an event on dialling")
        };
        sent.push(String::from_utf8(data).unwrap());
    }
    assert_eq!(sent.len(), 1);
    sent.remove(0)
}

/// The agent's response to `req` (our INVITE or CANCEL).
fn response(req: &str, status: u16, to_tag: Option<&str>, extra: &str, body: &str) -> Response {
    let to = match to_tag {
        Some(t) => format!("{};tag={t}", header(req, "To")),
        None => header(req, "To").to_string(),
    };
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    let text = format!(
        "SIP/2.0 {status} Whatever\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        header(req, "Via"),
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
        body.len()
    );
    match wire::parse_message(text.as_bytes(), Transport::Udp) {
        Ok(Inbound::Response(r)) => r,
        _ => panic!("test response did not parse: {text}"),
    }
}

/// A request from the agent inside the dialog (`our_from` is our From, with our tag).
fn from_agent(method: &str, cseq: u32, our_from: &str) -> (Request, ReplyContext) {
    let body = if method == "INVITE" { SDP } else { "" };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let text = format!(
        "{method} sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKag{cseq}\r\nFrom: <sip:agent@192.0.2.50:5070>;tag=agent1\r\nTo: {our_from}\r\nCall-ID: {CALL}\r\nCSeq: {cseq} {method}\r\nContact: <sip:agent@192.0.2.50:5070>\r\nMax-Forwards: 70\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(Inbound::Request(r)) = wire::parse_message(text.as_bytes(), Transport::Udp) else {
        panic!("test request did not parse: {text}")
    };
    (r, wire::reply_context(text.as_bytes()).unwrap())
}

const OK_EXTRA: &str = "Contact: <sip:agent@10.9.9.9:5999>\r\nRecord-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n";

/// Dial, 180, 200: returns the INVITE and the ACK.
fn answered(core: &mut Core, t0: Instant) -> (String, String) {
    let inv = dialled(core, t0, agent());
    core.handle_response(t0, &response(&inv, 180, Some("agent1"), "", ""));
    let (sent, evs) = drain(core);
    assert!(sent.is_empty());
    assert_eq!(
        evs,
        vec![CoreEvent::Leg {
            call: CALL.into(),
            event: LegUpdate::Progress {
                status: 180,
                sdp: None
            }
        }]
    );
    core.handle_response(t0, &response(&inv, 200, Some("agent1"), OK_EXTRA, SDP));
    let (sent, evs) = drain(core);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        evs,
        vec![CoreEvent::Leg {
            call: CALL.into(),
            event: LegUpdate::Answered {
                sdp: SDP.as_bytes().to_vec()
            }
        }]
    );
    (inv, sent[0].clone())
}

#[test]
fn invite_carries_our_identity_headers_and_offer() {
    let mut core = Core::new(CoreConfig::default());
    let inv = dialled(&mut core, Instant::now(), agent());
    assert_eq!(start_line(&inv), "INVITE sip:agent@192.0.2.50:5070 SIP/2.0");
    assert!(header(&inv, "From").starts_with("<sip:ivr@127.0.0.1:5060>;tag="));
    assert_eq!(header(&inv, "To"), "<sip:agent@192.0.2.50:5070>");
    assert_eq!(header(&inv, "Contact"), "<sip:voxgate@127.0.0.1:5060>");
    assert!(header(&inv, "Via").starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"));
    assert_eq!(header(&inv, "CSeq"), "1 INVITE");
    assert_eq!(header(&inv, "X-Auth-Result"), "passed");
    assert_eq!(header(&inv, "Content-Type"), "application/sdp");
    assert!(inv.ends_with(SDP));
    assert_eq!(core.call_count(), 1);
}

#[test]
fn answered_call_acks_each_2xx_and_ends_with_our_bye() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let (inv, ack) = answered(&mut core, t0);
    // The ACK goes to the next hop, with the agent's Contact as Request-URI
    // and its Record-Route reversed as Route.
    assert_eq!(start_line(&ack), "ACK sip:agent@10.9.9.9:5999 SIP/2.0");
    assert_eq!(header(&ack, "CSeq"), "1 ACK");
    assert!(header(&ack, "To").ends_with(";tag=agent1"));
    let routes: Vec<&str> = ack
        .lines()
        .filter_map(|l| l.strip_prefix("Route: "))
        .collect();
    assert_eq!(routes, vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
    assert_ne!(
        via_param(header(&ack, "Via"), "branch"),
        via_param(header(&inv, "Via"), "branch"),
        "the ACK of a 2xx is a transaction of its own"
    );
    // A retransmitted 200: the same ACK again, no second event.
    let t1 = t0 + Duration::from_millis(500);
    core.handle_response(t1, &response(&inv, 200, Some("agent1"), OK_EXTRA, SDP));
    let (sent, evs) = drain(&mut core);
    assert_eq!(sent, vec![ack.clone()]);
    assert!(evs.is_empty());
    // Our hang-up: BYE to the next hop, CSeq 2.
    core.hangup(t1, CALL);
    let (sent, _) = drain(&mut core);
    assert_eq!(sent.len(), 1);
    let bye = &sent[0];
    assert_eq!(start_line(bye), "BYE sip:agent@10.9.9.9:5999 SIP/2.0");
    assert_eq!(header(bye, "CSeq"), "2 BYE");
    assert_eq!(header(bye, "From"), header(&inv, "From"));
    core.handle_response(t1, &response(bye, 200, None, "", ""));
    let (_, evs) = drain(&mut core);
    assert_eq!(
        evs,
        vec![CoreEvent::Ended {
            call: CALL.into(),
            reason: EndReason::LocalHangup
        }]
    );
    assert_eq!(core.call_count(), 0);
    // The leg lingers only to re-ACK; then nothing is left.
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
    }
    assert!(drain(&mut core).0.is_empty());
}

#[test]
fn bye_reinvite_and_info_from_the_agent() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let (inv, _) = answered(&mut core, t0);
    let ours = header(&inv, "From").to_string();
    // Hold: a re-INVITE is offered to the application, answered by accept.
    let (r, c) = from_agent("INVITE", 1, &ours);
    core.handle_request(t0, agent(), &r, &c);
    let (_, evs) = drain(&mut core);
    assert!(
        matches!(&evs[..], [CoreEvent::ReOffer { call, offer, .. }] if call == CALL && offer == SDP.as_bytes())
    );
    core.accept(t0, CALL, b"v=0\r\n");
    let (sent, _) = drain(&mut core);
    assert!(sent[0].starts_with("SIP/2.0 200"));
    let (r, c) = from_agent("ACK", 1, &ours);
    core.handle_request(t0, agent(), &r, &c);
    drain(&mut core);
    let (r, c) = from_agent("INFO", 2, &ours);
    core.handle_request(t0, agent(), &r, &c);
    let (sent, evs) = drain(&mut core);
    assert!(sent[0].starts_with("SIP/2.0 200"));
    assert!(matches!(&evs[..], [CoreEvent::Info { call, .. }] if call == CALL));
    let (r, c) = from_agent("BYE", 3, &ours);
    core.handle_request(t0, agent(), &r, &c);
    let (sent, evs) = drain(&mut core);
    assert!(sent[0].starts_with("SIP/2.0 200"));
    assert_eq!(evs, vec![CoreEvent::RemoteHangup { call: CALL.into() }]);
    assert_eq!(core.call_count(), 0);
}

#[test]
fn busy_is_acked_in_the_transaction_and_reported() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = dialled(&mut core, t0, agent());
    let busy = response(&inv, 486, Some("agent1"), "", "");
    core.handle_response(t0, &busy);
    let (sent, evs) = drain(&mut core);
    assert_eq!(sent.len(), 1);
    let ack = &sent[0];
    assert_eq!(start_line(ack), "ACK sip:agent@192.0.2.50:5070 SIP/2.0");
    assert_eq!(header(ack, "Via"), header(&inv, "Via"), "same branch");
    assert_eq!(header(ack, "CSeq"), "1 ACK");
    assert!(header(ack, "To").ends_with(";tag=agent1"));
    assert_eq!(
        evs,
        vec![CoreEvent::Leg {
            call: CALL.into(),
            event: LegUpdate::Failed { status: Some(486) }
        }]
    );
    assert_eq!(core.call_count(), 0);
    // Retransmitted 486: ACKed again, reported once.
    core.handle_response(t0, &busy);
    let (sent, evs) = drain(&mut core);
    assert_eq!(sent, vec![ack.clone()]);
    assert!(evs.is_empty());
    // No INVITE retransmission after the final response; Timer D then forgets.
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
    }
    let (sent, evs) = drain(&mut core);
    assert!(sent.is_empty() && evs.is_empty());
    core.handle_response(t0, &busy);
    assert!(drain(&mut core).0.is_empty(), "forgotten legs send nothing");
}

#[test]
fn ringing_then_cancel_gets_487_acked() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = dialled(&mut core, t0, agent());
    core.handle_response(t0, &response(&inv, 180, Some("agent1"), "", ""));
    drain(&mut core);
    assert_eq!(
        core.next_deadline(),
        None,
        "ringing: the application times it"
    );
    let t1 = t0 + Duration::from_secs(20);
    core.hangup(t1, CALL);
    let (sent, evs) = drain(&mut core);
    assert!(evs.is_empty());
    let cancel = sent[0].clone();
    assert_eq!(
        start_line(&cancel),
        "CANCEL sip:agent@192.0.2.50:5070 SIP/2.0"
    );
    assert_eq!(header(&cancel, "Via"), header(&inv, "Via"));
    assert_eq!(header(&cancel, "CSeq"), "1 CANCEL");
    assert_eq!(header(&cancel, "To"), header(&inv, "To"));
    // Unanswered CANCEL is retransmitted (Timer E).
    let t = core.next_deadline().unwrap();
    assert_eq!(t - t1, Duration::from_millis(500));
    core.handle_timeout(t);
    assert_eq!(drain(&mut core).0, vec![cancel.clone()]);
    core.hangup(t, CALL); // twice: no second CANCEL
    assert!(drain(&mut core).0.is_empty());
    core.handle_response(t, &response(&cancel, 200, Some("agent1"), "", ""));
    core.handle_response(t, &response(&inv, 487, Some("agent1"), "", ""));
    let (sent, evs) = drain(&mut core);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        start_line(&sent[0]),
        "ACK sip:agent@192.0.2.50:5070 SIP/2.0"
    );
    assert_eq!(
        evs,
        vec![CoreEvent::Ended {
            call: CALL.into(),
            reason: EndReason::LocalHangup
        }]
    );
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = dialled(&mut core, t0, agent());
    core.hangup(t0, CALL);
    assert!(drain(&mut core).0.is_empty(), "RFC 3261 9.1: no CANCEL yet");
    core.handle_response(t0, &response(&inv, 100, None, "", ""));
    let (sent, evs) = drain(&mut core);
    assert!(evs.is_empty());
    assert!(start_line(&sent[0]).starts_with("CANCEL "));
    // No final response at all: over 64·T1 after the CANCEL.
    let mut ended = vec![];
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
        ended.extend(drain(&mut core).1);
    }
    assert_eq!(
        ended,
        vec![CoreEvent::Ended {
            call: CALL.into(),
            reason: EndReason::LocalHangup
        }]
    );
    assert_eq!(core.call_count(), 0);
}

#[test]
fn hangup_with_nothing_heard_ends_at_timer_b() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    dialled(&mut core, t0, agent());
    core.hangup(t0, CALL);
    let mut evs = vec![];
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
        let (sent, e) = drain(&mut core);
        assert!(sent.iter().all(|s| s.starts_with("INVITE ")));
        evs.extend(e);
    }
    assert_eq!(
        evs,
        vec![CoreEvent::Ended {
            call: CALL.into(),
            reason: EndReason::LocalHangup
        }]
    );
}

#[test]
fn timer_a_doubles_then_timer_b_fails_unreachable() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = dialled(&mut core, t0, agent());
    let mut resent = vec![];
    let mut failed = None;
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
        let (sent, evs) = drain(&mut core);
        for s in sent {
            assert_eq!(s, inv);
            resent.push((t - t0).as_millis());
        }
        if !evs.is_empty() {
            assert_eq!(
                evs,
                vec![CoreEvent::Leg {
                    call: CALL.into(),
                    event: LegUpdate::Failed { status: None }
                }]
            );
            failed = Some((t - t0).as_millis());
        }
    }
    assert_eq!(resent, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(failed, Some(32_000));
    assert_eq!(core.call_count(), 0);
}

#[test]
fn over_tcp_nothing_is_retransmitted() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let tcp = Peer {
        link: Link::Tcp(7),
        ..agent()
    };
    let inv = dialled(&mut core, t0, tcp);
    assert!(header(&inv, "Via").starts_with("SIP/2.0/TCP "));
    let t = core.next_deadline().unwrap();
    assert_eq!(t - t0, Duration::from_secs(32));
    core.handle_timeout(t);
    let mut sent = vec![];
    let mut evs = vec![];
    while let Some(o) = core.poll_output() {
        match o {
            Output::Transmit { data, .. } => sent.push(data),
            Output::Event(e) => evs.push(e),
        }
    }
    assert!(sent.is_empty());
    assert!(matches!(
        &evs[..],
        [CoreEvent::Leg {
            event: LegUpdate::Failed { status: None },
            ..
        }]
    ));
}

#[test]
fn answer_racing_the_cancel_is_acked_then_byed() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = dialled(&mut core, t0, agent());
    core.handle_response(t0, &response(&inv, 180, Some("agent1"), "", ""));
    core.hangup(t0, CALL);
    drain(&mut core);
    core.handle_response(t0, &response(&inv, 200, Some("agent1"), OK_EXTRA, SDP));
    let (sent, evs) = drain(&mut core);
    assert!(evs.is_empty(), "never Answered once we hung up: {evs:?}");
    assert_eq!(sent.len(), 2);
    assert!(sent[0].starts_with("ACK sip:agent@10.9.9.9:5999 "));
    assert!(sent[1].starts_with("BYE sip:agent@10.9.9.9:5999 "));
    let bye = sent[1].clone();
    core.handle_response(t0, &response(&bye, 200, None, "", ""));
    let (_, evs) = drain(&mut core);
    assert_eq!(
        evs,
        vec![CoreEvent::Ended {
            call: CALL.into(),
            reason: EndReason::LocalHangup
        }]
    );
}

#[test]
fn early_media_183_carries_its_sdp() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = dialled(&mut core, t0, agent());
    core.handle_response(t0, &response(&inv, 183, Some("agent1"), "", SDP));
    let (sent, evs) = drain(&mut core);
    assert!(sent.is_empty());
    assert_eq!(
        evs,
        vec![CoreEvent::Leg {
            call: CALL.into(),
            event: LegUpdate::Progress {
                status: 183,
                sdp: Some(SDP.as_bytes().to_vec())
            }
        }]
    );
    // Proceeding: the INVITE is not retransmitted any more.
    assert_eq!(core.next_deadline(), None);
}

#[test]
fn bad_responses_are_ignored_or_end_the_leg() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = dialled(&mut core, t0, agent());
    // Wrong CSeq number, and another branch: not our transaction.
    let wrong = inv.replace("CSeq: 1 INVITE", "CSeq: 9 INVITE");
    core.handle_response(t0, &response(&wrong, 486, Some("x"), "", ""));
    let other = inv.replace(";branch=z9hG4bK", ";branch=z9hG4bKforged");
    core.handle_response(t0, &response(&other, 486, Some("x"), "", ""));
    let (sent, evs) = drain(&mut core);
    assert!(sent.is_empty() && evs.is_empty());
    // A 2xx without a To tag cannot make a dialog: the leg ends.
    core.handle_response(t0, &response(&inv, 200, None, "", SDP));
    let (_, evs) = drain(&mut core);
    assert_eq!(
        evs,
        vec![CoreEvent::Leg {
            call: CALL.into(),
            event: LegUpdate::Failed { status: None }
        }]
    );
    assert_eq!(core.call_count(), 0);
}

#[test]
fn dial_refuses_what_would_break_the_message() {
    let ok = outbound();
    let check = |o: &Outbound| check_outbound(&o.target, &o.from_user, &o.headers, &o.sdp);
    assert_eq!(check(&ok), Ok(()));
    let with = |f: &dyn Fn(&mut Outbound)| {
        let mut o = outbound();
        f(&mut o);
        check(&o)
    };
    assert_eq!(
        with(&|o| o.target = "sip:a@b\r\nX: y".into()),
        Err(DialError::Target)
    );
    assert_eq!(
        with(&|o| o.target = "http://a".into()),
        Err(DialError::Target)
    );
    assert_eq!(
        with(&|o| o.from_user = "a b".into()),
        Err(DialError::FromUser)
    );
    assert_eq!(
        with(&|o| o.from_user = "a@b".into()),
        Err(DialError::FromUser)
    );
    assert_eq!(
        with(&|o| o.headers = vec![("X Bad".into(), "v".into())]),
        Err(DialError::HeaderName("X Bad".into()))
    );
    assert_eq!(
        with(&|o| o.headers = vec![("X-A".into(), "v\r\nVia: evil".into())]),
        Err(DialError::HeaderValue("X-A".into()))
    );
    assert_eq!(
        with(&|o| o.headers = vec![("route".into(), "<sip:evil>".into())]),
        Err(DialError::ReservedHeader("route".into()))
    );
    assert_eq!(with(&|o| o.sdp.clear()), Err(DialError::NoOffer));
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    dialled(&mut core, t0, agent());
    assert_eq!(
        core.dial(t0, CALL, agent(), &ok),
        Err(DialError::CallIdInUse)
    );
    core.stop_accepting();
    assert_eq!(
        core.dial(t0, "other", agent(), &ok),
        Err(DialError::ShuttingDown)
    );
}

#[test]
fn a_second_fork_answering_is_acked_and_byed() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let (inv, _) = answered(&mut core, t0);
    let second = response(&inv, 200, Some("fork2"), OK_EXTRA, SDP);
    core.handle_response(t0, &second);
    let (sent, evs) = drain(&mut core);
    assert!(evs.is_empty(), "still the first agent's call: {evs:?}");
    assert_eq!(sent.len(), 2);
    assert!(sent[0].starts_with("ACK ") && header(&sent[0], "To").ends_with(";tag=fork2"));
    assert!(sent[1].starts_with("BYE ") && header(&sent[1], "To").ends_with(";tag=fork2"));
    // Its retransmission: only the ACK again.
    core.handle_response(t0, &second);
    assert_eq!(drain(&mut core).0, vec![sent[0].clone()]);
    assert_eq!(core.call_count(), 1);
}
