//! voxgate's SIP client side against a real peer: the endpoint runs in this
//! test binary (there is no CLI to dial yet) and places calls to sipp acting
//! as the agent (tests/sipp/uas_*.xml): answered then our BYE, busy, ringing
//! then our CANCEL, the agent putting us on hold and hanging up first. Loopback only; every test
//! has its own ports; nothing asserts timings.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::sync::{mpsc, watch};
use voxgate::sip::endpoint::{bind, Endpoint, SipConfig};
use voxgate::sip::handler::{
    AfterAck, Decision, Dial, DialError, DialogHandler, LegEvent, NewDialog, SipHandle,
};

/// Takes no inbound calls; answers the agent's re-INVITEs with a fixed SDP.
struct Agentside;

impl DialogHandler for Agentside {
    fn offered(&mut self, _: NewDialog, _: &SipHandle) -> Decision {
        Decision::Reject {
            status: 603,
            reason: "Decline".into(),
        }
    }
    fn re_offered(&mut self, _: &str, _: &[u8]) -> Decision {
        Decision::Answer { sdp: offer() }
    }
    fn confirmed(&mut self, _: &str, _: &[u8]) -> AfterAck {
        AfterAck::Proceed
    }
    fn info(&mut self, _: &str, _: &str, _: &[u8]) {}
    fn dialog_ended(&mut self, _: &str) {}
    fn released(&mut self, _: &str) {}
}

fn offer() -> String {
    "v=0\r\no=voxgate 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n".into()
}

/// Our endpoint on a loopback port of its own; keep the sender alive.
async fn endpoint() -> (SipHandle, watch::Sender<bool>) {
    let bound = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let listen = bound.udp.local_addr().unwrap();
    let cfg = SipConfig {
        listen,
        advertised_ip: None,
        shutdown_grace: Duration::from_secs(1),
        ring_time: Duration::ZERO,
        limits: Default::default(),
        exempt: Vec::new(),
    };
    let mut handle = None;
    let (ep, tcp) = Endpoint::new(cfg, bound, |h| {
        handle = Some(h);
        Agentside
    })
    .unwrap();
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(ep.run(tcp, shutdown));
    (handle.unwrap(), stop)
}

/// sipp as the agent, running `scenario` once on a port of its own.
fn agent(scenario: &str) -> (Child, SocketAddr, std::path::PathBuf) {
    let dir = scratch(&format!("uac-{}", scenario.trim_end_matches(".xml")));
    let port = free_port();
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(root().join("tests/sipp").join(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &free_port().to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(dir.join("errors.log"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sipp (apt-get install sip-tester)");
    (child, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// sipp must finish its scenario successfully.
async fn agent_passed(child: Child, dir: std::path::PathBuf, what: &str) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let errs = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "sipp as the agent ({what}) failed:\nstdout:\n{}\nstderr:\n{}\nerrors:\n{errs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dial_to(next_hop: SocketAddr) -> Dial {
    Dial {
        target: format!("sip:agent@{next_hop}"),
        next_hop,
        from_user: "ivr".into(),
        headers: vec![("X-Auth-Result".into(), "passed".into())],
        sdp: offer(),
    }
}

/// The leg's next event (a lost one would hang the test: bounded wait).
async fn next(rx: &mut mpsc::UnboundedReceiver<LegEvent>) -> LegEvent {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("no leg event within a minute")
        .expect("events channel closed")
}

/// Dial sipp running `scenario`; returns the leg's Call-ID and its events.
async fn dial(
    sip: &SipHandle,
    next_hop: SocketAddr,
) -> (String, mpsc::UnboundedReceiver<LegEvent>) {
    // sipp binds its port some time after it starts: an INVITE before that
    // meets a closed port, and the ICMP error fails the leg at once (a fixed
    // 300 ms wait did so in a CI run on a loaded machine).
    let port = next_hop.port();
    tokio::task::spawn_blocking(move || wait_udp_bound(port))
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let call = sip.dial(dial_to(next_hop), tx).unwrap();
    (call, rx)
}

#[tokio::test]
async fn answered_then_our_bye() {
    let (sip, _stop) = endpoint().await;
    let (child, addr, dir) = agent("uas_answer.xml");
    assert_eq!(
        sip.local_ip_for(addr),
        std::net::IpAddr::from([127, 0, 0, 1])
    );
    let (call, mut rx) = dial(&sip, addr).await;
    assert_eq!(
        next(&mut rx).await,
        LegEvent::Progress {
            status: 180,
            sdp: None
        }
    );
    let LegEvent::Answered { sdp } = next(&mut rx).await else {
        panic!("not answered")
    };
    assert!(String::from_utf8_lossy(&sdp).contains("m=audio "));
    sip.hangup(call);
    assert_eq!(next(&mut rx).await, LegEvent::Ended);
    agent_passed(child, dir, "answer, then our BYE").await;
}

#[tokio::test]
async fn busy_agent_fails_with_486() {
    let (sip, _stop) = endpoint().await;
    let (child, addr, dir) = agent("uas_busy.xml");
    let (_, mut rx) = dial(&sip, addr).await;
    assert_eq!(next(&mut rx).await, LegEvent::Failed { status: Some(486) });
    agent_passed(child, dir, "486, ACKed").await;
}

#[tokio::test]
async fn ringing_then_our_cancel() {
    let (sip, _stop) = endpoint().await;
    let (child, addr, dir) = agent("uas_ring_cancel.xml");
    let (call, mut rx) = dial(&sip, addr).await;
    assert!(matches!(
        next(&mut rx).await,
        LegEvent::Progress { status: 180, .. }
    ));
    sip.hangup(call);
    assert_eq!(next(&mut rx).await, LegEvent::Ended);
    agent_passed(child, dir, "180, our CANCEL, 487 ACKed").await;
}

/// The agent's re-INVITE (hold) is answered through `DialogHandler::re_offered`
/// and its INFO gets 200 (sipp fails on anything else), then its BYE ends the leg.
#[tokio::test]
async fn agent_holds_sends_info_and_hangs_up_first() {
    let (sip, _stop) = endpoint().await;
    let (child, addr, dir) = agent("uas_agent_bye.xml");
    let (_, mut rx) = dial(&sip, addr).await;
    assert!(matches!(
        next(&mut rx).await,
        LegEvent::Progress { status: 180, .. }
    ));
    assert!(matches!(next(&mut rx).await, LegEvent::Answered { .. }));
    assert_eq!(next(&mut rx).await, LegEvent::Ended);
    agent_passed(child, dir, "answer, hold, INFO, then the agent's BYE").await;
}

#[tokio::test]
async fn unusable_dials_are_refused_before_sending() {
    let (sip, _stop) = endpoint().await;
    let next_hop = SocketAddr::from(([127, 0, 0, 1], 9));
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut d = dial_to(next_hop);
    d.headers = vec![("X-Context".into(), "a\r\nVia: SIP/2.0/UDP evil".into())];
    assert_eq!(
        sip.dial(d, tx.clone()),
        Err(DialError::HeaderValue("X-Context".into()))
    );
    let mut d = dial_to(next_hop);
    d.headers = vec![("Bad Name".into(), "x".into())];
    assert!(matches!(sip.dial(d, tx), Err(DialError::HeaderName(_))));
}
