//! The core driven with simulated time.

use super::*;
use crate::sip::msg::header_param;
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

/// INVITE → NewCall (the 100 Trying held back 200 ms); accept → 200;
/// returns the local tag.
fn answered(core: &mut Core, t0: Instant) -> String {
    let (r, c) = req(&invite("z9hG4bK1", None, 1));
    core.handle_request(t0, peer(), &r, &c);
    let (sent, evs) = drain(core);
    assert!(sent.is_empty(), "no 100 Trying before 200 ms: {sent:?}");
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
fn no_ack_ends_call_with_one_bye_at_timer_h() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    answered(&mut core, t0);
    let mut byes = Vec::new();
    let mut ended = None;
    let mut oks = 0;
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
        let (sent, evs) = drain(&mut core);
        oks += sent
            .iter()
            .filter(|(_, s)| s.starts_with("SIP/2.0 200"))
            .count();
        byes.extend(
            sent.iter()
                .filter(|(_, s)| s.starts_with("BYE "))
                .map(|(_, b)| (t - t0, b.clone())),
        );
        if let Some(CoreEvent::Ended { reason, .. }) = evs.first() {
            assert_eq!(*reason, EndReason::NoAck);
            ended = Some(t - t0);
        }
    }
    // Torn down at Timer H (64×T1), with one BYE and nothing after it.
    assert_eq!(ended, Some(Duration::from_secs(32)));
    assert_eq!(byes.len(), 1, "one BYE, not retransmitted");
    assert_eq!(byes[0].0, Duration::from_secs(32));
    assert!(oks <= 10, "the 200's retransmissions: {oks}");
    assert_eq!(core.call_count(), 0);
    let bye = byes[0].1.clone();
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
    let inv = invite("z9hG4bK2543", None, 1).replace("Contact: <sip:alice@192.0.2.7:5070>\n", "");
    assert!(!inv.contains("Contact"));
    let (r, c) = req(&inv);
    core.handle_request(t0, peer(), &r, &c);
    let (_, evs) = drain(&mut core);
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

/// Many un-ACKed dialogs: their 200 OK retransmissions and Timer H come in
/// deadline order from the timer heap, and a dialog the caller ended
/// (BYE) leaves nothing behind that fires.
#[test]
fn many_dialogs_timers_fire_in_order_and_removed_dialog_stays_silent() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let n = 300u64;
    let mut tags = HashMap::new();
    // Started 1 ms apart, so every timer of call i precedes call i+1's.
    for i in 0..n {
        let at = t0 + Duration::from_millis(i);
        let id = format!("many-{i}@test");
        let (r, c) = req(&invite(&format!("z9hG4bKm{i}"), None, 1).replace("call-1@test", &id));
        core.handle_request(at, peer(), &r, &c);
        core.accept(at, &id, b"v=0\r\n");
        let (sent, _) = drain(&mut core);
        assert_eq!(status(&sent[0].1), 200);
        tags.insert(id, to_tag(&sent[0].1));
    }
    // The caller of many-7 hangs up before ACKing: the dialog goes now.
    let gone = "many-7@test";
    let (r, c) = req(&in_dialog("BYE", "z9hG4bKbye7", &tags[gone], 2).replace("call-1@test", gone));
    core.handle_request(t0 + Duration::from_millis(n), peer(), &r, &c);
    let (sent, evs) = drain(&mut core);
    assert_eq!(status(&sent[0].1), 200);
    assert!(matches!(&evs[0], CoreEvent::RemoteHangup { call } if call == gone));

    let call_of = |msg: &str| {
        msg.lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap()
            .to_string()
    };
    let mut resends: Vec<(Duration, String)> = vec![];
    let mut ended = vec![];
    let mut last = t0;
    while let Some(t) = core.next_deadline() {
        assert!(t >= last, "deadlines go forward");
        last = t;
        core.handle_timeout(t);
        let (sent, evs) = drain(&mut core);
        for (_, m) in sent {
            if m.starts_with("SIP/2.0 200") {
                resends.push((t - t0, call_of(&m)));
            }
        }
        for e in evs {
            if let CoreEvent::Ended { call, reason } = e {
                assert_eq!(reason, EndReason::NoAck);
                ended.push(call);
            }
        }
    }
    // Each live dialog: 10 re-sends (T1 doubling to T2 until 64·T1), in start order.
    assert_eq!(resends.len() as u64, 10 * (n - 1));
    assert!(
        resends.iter().all(|(_, c)| c != gone),
        "removed dialog re-sent its 200"
    );
    let expect: Vec<String> = (0..n)
        .filter(|i| *i != 7)
        .map(|i| format!("many-{i}@test"))
        .collect();
    assert_eq!(
        ended, expect,
        "Timer H in start order, removed dialog absent"
    );
    // The first re-send of every call, T1 after its start, in start order.
    let firsts: Vec<&(Duration, String)> = resends.iter().take(n as usize - 1).collect();
    for (k, (at, call)) in firsts.iter().enumerate() {
        let i = if k < 7 { k as u64 } else { k as u64 + 1 };
        assert_eq!(call, &format!("many-{i}@test"));
        assert_eq!(*at, Duration::from_millis(500 + i));
    }
    assert_eq!(core.call_count(), 0);
}

/// RFC 3261 17.2.1: over UDP the 100 Trying waits 200 ms for the answer; an
/// answer in time goes alone, a slower one follows the 100 sent at 200 ms,
/// and a retransmitted INVITE is answered with the 100 at once (only once).
#[test]
fn trying_only_when_the_answer_is_not_immediate() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let (r, c) = req(&invite("z9hG4bK1", None, 1));
    core.handle_request(t0, peer(), &r, &c);
    assert!(drain(&mut core).0.is_empty());
    assert_eq!(core.next_deadline(), Some(t0 + Duration::from_millis(200)));
    core.handle_timeout(t0 + Duration::from_millis(200));
    let (sent, _) = drain(&mut core);
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].1), 100);
    assert_eq!(core.next_deadline(), None, "the 100 goes once");

    // A retransmission before 200 ms gets the 100 now, and no second one later.
    let mut core = Core::new(CoreConfig::default());
    core.handle_request(t0, peer(), &r, &c);
    drain(&mut core);
    core.handle_request(t0 + Duration::from_millis(50), peer(), &r, &c);
    let (sent, _) = drain(&mut core);
    assert_eq!(status(&sent[0].1), 100);
    assert_eq!(core.next_deadline(), None);
    core.accept(t0 + Duration::from_millis(300), "call-1@test", b"v=0\r\n");
    let (sent, _) = drain(&mut core);
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].1), 200);

    // Over TCP the 100 goes at once (nothing is retransmitted there).
    let mut core = Core::new(CoreConfig::default());
    let tcp = Peer {
        link: Link::Tcp(1),
        ..peer()
    };
    let (r, c) = req(&invite("z9hG4bK1", None, 1).replace("UDP", "TCP"));
    core.handle_request(t0, tcp, &r, &c);
    let (sent, _) = drain(&mut core);
    assert_eq!(status(&sent[0].1), 100);
}

/// `accept_once`: the 200 goes once (again only for a retransmitted INVITE),
/// and Timer H ends the dialog with no BYE.
#[test]
fn accept_once_sends_the_200_once_and_no_bye_at_timer_h() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let (r, c) = req(&invite("z9hG4bK1", None, 1));
    core.handle_request(t0, peer(), &r, &c);
    drain(&mut core);
    core.accept_once(t0, "call-1@test", b"v=0\r\n");
    let (sent, _) = drain(&mut core);
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].1), 200);
    // The caller's INVITE retransmission gets the same 200.
    core.handle_request(t0 + Duration::from_millis(500), peer(), &r, &c);
    let (again, _) = drain(&mut core);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, sent[0].1);
    let mut later = vec![];
    let mut evs = vec![];
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
        let (s, e) = drain(&mut core);
        later.extend(s);
        evs.extend(e);
    }
    assert!(later.is_empty(), "nothing re-sent, no BYE: {later:?}");
    assert!(
        matches!(
            &evs[..],
            [CoreEvent::Ended {
                reason: EndReason::NoAck,
                ..
            }]
        ),
        "{evs:?}"
    );
    assert_eq!(core.call_count(), 0);
}

/// `stop_retransmitting`: a 200 retransmitted so far stops; an INVITE
/// retransmission still gets it, and Timer H ends the dialog with no BYE.
#[test]
fn stop_retransmitting_silences_an_answered_dialog_until_timer_h() {
    let mut core = Core::new(CoreConfig::default());
    let t0 = Instant::now();
    let (r, c) = req(&invite("z9hG4bK1", None, 1));
    core.handle_request(t0, peer(), &r, &c);
    drain(&mut core);
    core.accept(t0, "call-1@test", b"v=0\r\n");
    let (sent, _) = drain(&mut core);
    assert_eq!(status(&sent[0].1), 200);
    // Retransmitted at T1 as RFC 3261 13.3.1.4 says…
    let t1 = core.next_deadline().unwrap();
    core.handle_timeout(t1);
    let (again, _) = drain(&mut core);
    assert_eq!(again.len(), 1, "{again:?}");
    // …until the endpoint says the source does not ACK.
    core.stop_retransmitting("call-1@test");
    core.stop_retransmitting("no-such-call");
    core.handle_request(t1 + Duration::from_millis(10), peer(), &r, &c);
    let (answer, _) = drain(&mut core);
    assert_eq!(answer.len(), 1, "an INVITE retransmission is answered");
    let mut later = vec![];
    let mut evs = vec![];
    while let Some(t) = core.next_deadline() {
        core.handle_timeout(t);
        let (s, e) = drain(&mut core);
        later.extend(s);
        evs.extend(e);
    }
    assert!(later.is_empty(), "nothing re-sent, no BYE: {later:?}");
    assert!(
        matches!(
            &evs[..],
            [CoreEvent::Ended {
                reason: EndReason::NoAck,
                ..
            }]
        ),
        "{evs:?}"
    );
}
