//! Call assembly: what a SIP dialog becomes on our side.
//!
//! The SIP endpoint hands each new dialog to [`CallSetup`] (its
//! [`DialogHandler`]), which routes it to a flow, takes an RTP port,
//! answers the SDP offer (or offers, for a late offer), builds the media
//! session and the [`SipCall`] the flow talks to, and runs both until the
//! call ends. Later offers (hold, codec or address changes), the ACK's
//! answer and INFO digits reach the media session from here too.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn, Instrument};

use super::bridge::{AgentLegs, Dialer};
use super::hold::{CallerSdp, HoldOffers};
use super::rtp_ports::RtpPorts;
use super::sip::{CallControl, SipCall};
use super::{identity, CallInfo};
use crate::config::PortRange;
use crate::media::dtmf::info::parse_info;
use crate::media::g711::Codec;
use crate::media::prompt::PromptCache;
use crate::media::session::{MediaCommand, MediaEvent, MediaParams, MediaSession, SessionConfig};
use crate::sip::handler::{AfterAck, Decision, DialogHandler, NewDialog, SipHandle};
use crate::sip::sdp::{self, Encoding, LocalMedia};

/// Runs one answered call to its end (the flow, or a built-in handler).
pub trait CallRunner: Send + Sync + 'static {
    /// The flow serving this dialled user, or None → 404.
    fn route(&self, dialled: &str) -> Option<crate::config::Route>;
    /// Run flow `flow` (a name [`Self::route`] gave) on `call` until it ends;
    /// the caller bounds it by `max_call_duration` and tears down the media
    /// and the dialog after it returns.
    fn run(&self, flow: String, call: SipCall) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// How calls are assembled.
#[derive(Clone, Debug)]
pub struct SetupConfig {
    /// Where SIP listens: RTP sockets bind to the same address.
    pub listen_ip: IpAddr,
    /// Address configured for SDP (public_ip, or the listen address); None:
    /// the address on the route to each caller, bound on the unspecified one.
    pub advertised_ip: Option<IpAddr>,
    /// RTP ports to take one even port per call from (see [`RtpPorts`]).
    pub rtp: PortRange,
    /// SO_RCVBUF asked for on each RTP socket (bytes; 0 = the kernel's default).
    pub rtp_recv_buffer: usize,
    /// Settings every call's media session starts with.
    pub session: SessionConfig,
    /// A call still running after this is hung up (BYE), whatever the flow does.
    pub max_call_duration: Duration,
    /// Where media sessions run (a runtime of their own, see `app`).
    pub media: tokio::runtime::Handle,
    /// Speech decoders shared by all calls (None: no model installed).
    pub speech: Option<crate::asr::SpeechPool>,
    /// Sources whose P-Asserted-Identity is believed.
    pub trusted_peers: Vec<ipnet::IpNet>,
    /// `transfer.outbound_proxy`: where bridged transfers send their INVITE.
    pub outbound_proxy: Option<std::net::SocketAddr>,
}

/// Codecs we answer with, in no particular order (the offer's order wins).
const CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

/// Telephone-event payload type in our late-offer SDP.
const LATE_OFFER_DTMF_PT: u8 = 101;

/// Our side of one call, while its task runs.
struct CallMedia {
    events: mpsc::UnboundedSender<MediaEvent>,
    media: mpsc::UnboundedSender<MediaCommand>,
    rtp_port: u16,
    /// Our address in this call's SDP.
    media_ip: IpAddr,
    /// Where the call was signalled from (its RTP may come from there).
    peer_ip: IpAddr,
    /// Late offer: what we offered, until the caller's answer (in the ACK) comes.
    late_offer: Option<LocalMedia>,
    /// Shared with the call's bridge, which also writes SDP on this leg.
    sdp_version: Arc<std::sync::atomic::AtomicU64>,
    session_id: u64,
}

impl CallMedia {
    /// Our media description with the next session version.
    fn next_local_media(&self) -> LocalMedia {
        let version = self
            .sdp_version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        LocalMedia {
            ip: self.media_ip,
            port: self.rtp_port,
            codecs: our_encodings(),
            session_id: self.session_id,
            session_version: version,
        }
    }
}

/// The [`DialogHandler`] that turns dialogs into running calls.
pub struct CallSetup {
    cfg: SetupConfig,
    ports: Arc<RtpPorts>,
    /// Agent legs of bridged transfers (their re-INVITEs and INFO).
    legs: AgentLegs,
    /// Bridged calls (either leg), whose re-INVITEs the bridge passes on.
    holds: HoldOffers,
    prompts: Arc<PromptCache>,
    runner: Arc<dyn CallRunner>,
    calls: HashMap<String, CallMedia>,
    control_tx: mpsc::UnboundedSender<CallControl>,
}

impl CallSetup {
    /// Outbound legs (agents, code calls) from the same RTP ports, prompts
    /// and media runtime as the calls, every INVITE to `proxy`.
    fn dialer(&self, sip: SipHandle, proxy: Option<std::net::SocketAddr>) -> Dialer {
        Dialer {
            sip,
            ports: self.ports.clone(),
            listen_ip: self.cfg.listen_ip,
            advertised_ip: self.cfg.advertised_ip,
            session: self.cfg.session.clone(),
            prompts: self.prompts.clone(),
            media_rt: self.cfg.media.clone(),
            legs: self.legs.clone(),
            proxy,
            holds: self.holds.clone(),
        }
    }

    /// The code caller (`codes_voice`) of this server: outbound legs from
    /// the same RTP ports and media runtime as the calls, through `trunk`.
    pub fn code_caller(
        &self,
        sip: SipHandle,
        trunk: std::net::SocketAddr,
    ) -> super::code_call::CodeCaller {
        super::code_call::CodeCaller::new(self.dialer(sip, Some(trunk)), trunk)
    }

    /// Must run inside a tokio runtime (it forwards the calls' hang-ups to `sip`).
    pub fn new(
        cfg: SetupConfig,
        prompts: Arc<PromptCache>,
        runner: Arc<dyn CallRunner>,
        sip: SipHandle,
    ) -> Self {
        let (control_tx, mut control_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(c) = control_rx.recv().await {
                match c {
                    CallControl::Hangup { call } => sip.hangup(call),
                    CallControl::Refer {
                        call,
                        target,
                        headers,
                        events,
                    } => sip.refer(call, target, headers, events),
                }
            }
        });
        Self {
            ports: Arc::new(RtpPorts::new(cfg.rtp).with_recv_buffer(cfg.rtp_recv_buffer)),
            legs: AgentLegs::default(),
            holds: HoldOffers::default(),
            cfg,
            prompts,
            runner,
            calls: HashMap::new(),
            control_tx,
        }
    }

    /// Where this call's RTP socket binds: where SIP listens, or the
    /// unspecified address when we advertise per caller, so audio arrives
    /// on whichever interface it routes to.
    fn bind_ip(&self, media_ip: IpAddr) -> IpAddr {
        match self.cfg.advertised_ip {
            Some(ip) => ip,
            None if self.cfg.listen_ip.is_unspecified() => match media_ip {
                IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            },
            None => self.cfg.listen_ip,
        }
    }

    /// Spawn the call's task: the media session on the media runtime, the
    /// flow here, bounded by max_call_duration; release the call at the end.
    fn spawn_call(
        &self,
        call: String,
        flow: String,
        session: MediaSession,
        sip_call: SipCall,
        media_tx: mpsc::UnboundedSender<MediaCommand>,
        sip: SipHandle,
    ) {
        let span = tracing::info_span!("call", id = %call);
        let runner = self.runner.clone();
        let max = self.cfg.max_call_duration;
        let media_rt = self.cfg.media.clone();
        tokio::spawn(
            async move {
                let media = media_rt.spawn(session.run().in_current_span());
                let run = runner.run(flow, sip_call);
                if tokio::time::timeout(max, run).await.is_err() {
                    warn!(?max, "call reached max_call_duration; hanging up");
                }
                let _ = media_tx.send(MediaCommand::Shutdown);
                if let Ok(stats) = media.await {
                    // One observation per call that received audio.
                    if let Some(j) = stats.jitter_ms {
                        crate::media::stats::record_call_jitter(j);
                    }
                    info!(
                        sent = stats.packets_sent,
                        received = stats.packets_received,
                        lost = stats.frames_lost,
                        jitter_ms = stats.jitter_ms.map(|j| (j * 100.0).round() / 100.0),
                        digits = stats.digits,
                        dropped_foreign = stats.packets_dropped,
                        unnegotiated = stats.packets_unnegotiated,
                        "call ended"
                    );
                }
                sip.release(call);
            }
            .instrument(span),
        );
    }
}

fn reject(status: u16, reason: impl Into<String>) -> Decision {
    Decision::Reject {
        status,
        reason: reason.into(),
    }
}

fn refusal(e: &sdp::SdpError) -> Decision {
    reject(e.status(), e.to_string())
}

/// A media codec as SDP names it.
pub(super) fn encoding(c: Codec) -> Encoding {
    Encoding {
        name: c.name(),
        static_pt: c.payload_type(),
    }
}

fn our_encodings() -> Vec<Encoding> {
    CODECS.into_iter().map(encoding).collect()
}

/// What the media session needs of a negotiation with a caller signalling
/// from `signalled`. None only if SDP chose an encoding we did not list,
/// which `sdp::answer` never does.
pub(super) fn media_params(neg: &sdp::Negotiated, signalled: IpAddr) -> Option<MediaParams> {
    let codec = CODECS.into_iter().find(|c| encoding(*c) == neg.codec)?;
    Some(MediaParams {
        codec,
        codec_pt: neg.codec_pt,
        dtmf_pts: neg.dtmf_pts.clone(),
        remote: neg.remote_rtp,
        signalled: Some(signalled),
        send: neg.local_direction.sends(),
        expect_rtp: neg.local_direction.receives() && !neg.on_hold,
    })
}

/// The refusal for a negotiation `media_params` cannot use.
fn unusable_codec() -> Decision {
    reject(488, "Not Acceptable Here: no common codec")
}

impl DialogHandler for CallSetup {
    fn offered(&mut self, dialog: NewDialog, sip: &SipHandle) -> Decision {
        let NewDialog {
            call,
            dialled,
            caller,
            offer,
            peer,
            local_ip: media_ip,
            headers,
        } = dialog;
        // Content-Type and Accept were checked by the SIP core (RFC 3261 8.2.3) before routing.
        let dialled = dialled.unwrap_or_default();
        let Some(route) = self.runner.route(&dialled) else {
            info!(%call, %dialled, "no flow serves this number");
            return reject(404, "Not Found");
        };
        // No offer in the INVITE (late offer): we offer in the 200 and the
        // caller answers in the ACK.
        let late_offer = offer.is_empty();
        let Some((sock, port)) = self.ports.allocate(self.bind_ip(media_ip)) else {
            warn!(%call, "no free RTP port; rejecting call");
            return reject(503, "Service Unavailable: no media port free");
        };
        let session_id: u64 = rand::random::<u32>() as u64;
        let local = LocalMedia {
            ip: media_ip,
            port,
            codecs: our_encodings(),
            session_id,
            session_version: 1,
        };
        let (params, body, codec_name) = if late_offer {
            // Nothing is sent until the answer says where and how.
            let params = MediaParams {
                codec: Codec::Pcmu,
                codec_pt: Codec::Pcmu.payload_type(),
                dtmf_pts: vec![LATE_OFFER_DTMF_PT],
                remote: None,
                signalled: Some(peer.ip()),
                send: false,
                expect_rtp: false,
            };
            (params, sdp::offer(&local, LATE_OFFER_DTMF_PT), "offered")
        } else {
            match sdp::answer(&offer, &local) {
                Ok(n) => match media_params(&n, peer.ip()) {
                    Some(params) => (params, n.answer, n.codec.name),
                    None => {
                        self.ports.release(port);
                        return unusable_codec();
                    }
                },
                Err(e) => {
                    info!(%call, status = e.status(), reason = %e, "SDP offer refused");
                    self.ports.release(port);
                    return refusal(&e);
                }
            }
        };
        // Registered with the media runtime's reactor inside the session task.
        let sock = match sock.set_nonblocking(true).map(|_| sock) {
            Ok(s) => s,
            Err(e) => {
                warn!(%call, error = %e, "cannot use RTP socket");
                self.ports.release(port);
                return reject(500, "Server Internal Error: media socket");
            }
        };
        let caller_codec = params.codec;
        let caller_dtmf_pt = params
            .dtmf_pts
            .first()
            .copied()
            .unwrap_or(LATE_OFFER_DTMF_PT);
        let sdp_version = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let session = MediaSession::new(
            sock,
            params,
            self.cfg.session.clone(),
            self.prompts.clone(),
            ev_tx.clone(),
            media_rx,
        );
        let id = identity::identify(&caller, &headers, peer.ip(), &self.cfg.trusted_peers);
        let caller = id.caller;
        let info = CallInfo {
            answered_at: std::time::SystemTime::now(),
            call_id: call.clone(),
            caller: caller.clone(),
            trust: id.trust,
            brand: route.brand.clone(),
            directory: route.lookup.clone(),
            dialled: dialled.clone(),
            headers,
        };
        let flow = route.flow;
        let (trust, brand) = (info.trust.as_str(), route.brand);
        let sip_call = SipCall::new(
            info,
            media_tx.clone(),
            ev_rx,
            self.control_tx.clone(),
            self.prompts.clone(),
        )
        .with_speech(self.cfg.speech.clone())
        .with_dialer(
            self.dialer(sip.clone(), self.cfg.outbound_proxy),
            caller_codec,
            CallerSdp {
                local: LocalMedia {
                    codecs: {
                        let mut c = our_encodings();
                        c.sort_by_key(|e| *e != encoding(caller_codec));
                        c
                    },
                    ..local.clone()
                },
                version: sdp_version.clone(),
                peer_ip: peer.ip(),
                dtmf_pt: caller_dtmf_pt,
            },
        );
        self.calls.insert(
            call.clone(),
            CallMedia {
                events: ev_tx,
                media: media_tx.clone(),
                rtp_port: port,
                media_ip,
                peer_ip: peer.ip(),
                late_offer: late_offer.then(|| local.clone()),
                sdp_version,
                session_id,
            },
        );
        info!(%call, %dialled, %caller, trust, %brand, %flow, from = %peer, codec = codec_name, rtp_port = port, "answering call");
        self.spawn_call(call, flow, session, sip_call, media_tx, sip.clone());
        Decision::Answer { sdp: body }
    }

    fn re_offered(&mut self, call: &str, offer: &[u8]) -> Decision {
        // A leg of a bridge: its bridge asks the other leg first.
        if self.holds.forward(call, offer) {
            return Decision::Later;
        }
        let Some(h) = self.calls.get_mut(call) else {
            // An agent leg of a bridge (hold from the agent's side): answered
            // here, its media follows; the caller's leg keeps its own.
            let Some(leg) = self.legs.bump_version(call) else {
                return reject(481, "Call/Transaction Does Not Exist");
            };
            return match sdp::answer(offer, &leg.local) {
                Ok(neg) => match media_params(&neg, leg.peer_ip) {
                    Some(params) => {
                        info!(%call, hold = neg.on_hold, "agent re-INVITE accepted");
                        let _ = leg.media.send(MediaCommand::Update(params));
                        Decision::Answer { sdp: neg.answer }
                    }
                    None => unusable_codec(),
                },
                Err(e) => refusal(&e),
            };
        };
        match sdp::answer(offer, &h.next_local_media()) {
            Ok(neg) => {
                let Some(params) = media_params(&neg, h.peer_ip) else {
                    return unusable_codec();
                };
                info!(%call, codec = neg.codec.name, dtmf_pts = ?neg.dtmf_pts, hold = neg.on_hold, "re-INVITE accepted");
                let _ = h.media.send(MediaCommand::Update(params));
                Decision::Answer { sdp: neg.answer }
            }
            Err(e) => refusal(&e),
        }
    }

    fn confirmed(&mut self, call: &str, answer: &[u8]) -> AfterAck {
        let Some(h) = self.calls.get_mut(call) else {
            return AfterAck::Proceed;
        };
        if let Some(local) = h.late_offer.take() {
            // The ACK carries the caller's answer to our offer; read it as
            // the offerer would (their codec, their DTMF PTs, their address
            // and direction).
            let peer_ip = h.peer_ip;
            match sdp::answer(answer, &local).map(|n| (media_params(&n, peer_ip), n)) {
                Ok((Some(params), n)) => {
                    info!(%call, codec = n.codec.name, "late offer answered in the ACK");
                    let _ = h.media.send(MediaCommand::Update(params));
                }
                Ok((None, _)) => {
                    warn!(%call, "the ACK's SDP answer names no codec we offered; ending the call");
                    let _ = h.events.send(MediaEvent::Hangup);
                    return AfterAck::HangUp;
                }
                Err(e) => {
                    warn!(%call, reason = %e, "the ACK carries no usable SDP answer to our offer; ending the call");
                    let _ = h.events.send(MediaEvent::Hangup);
                    return AfterAck::HangUp;
                }
            }
        }
        // Media may flow now (none is sent before the ACK), and the flow starts.
        let _ = h.media.send(MediaCommand::Confirmed);
        let _ = h.events.send(MediaEvent::Confirmed);
        AfterAck::Proceed
    }

    fn info(&mut self, call: &str, content_type: &str, body: &[u8]) {
        let media = match self.calls.get(call) {
            Some(h) => h.media.clone(),
            None => match self.legs.get(call) {
                Some(leg) => leg.media,
                None => return,
            },
        };
        match parse_info(content_type, body) {
            Ok((digit, dur)) => {
                let _ = media.send(MediaCommand::InfoDigit(digit, dur));
            }
            Err(e) => debug!(%call, error = %e, "INFO without a usable DTMF body"),
        }
    }

    fn dialog_ended(&mut self, call: &str) {
        if let Some(h) = self.calls.get(call) {
            let _ = h.events.send(MediaEvent::Hangup);
        }
    }

    fn released(&mut self, call: &str) {
        if let Some(h) = self.calls.remove(call) {
            self.ports.release(h.rtp_port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::handler::Command;

    /// Serves "bank" with a flow that ends at once.
    struct Bank;

    impl CallRunner for Bank {
        fn route(&self, dialled: &str) -> Option<crate::config::Route> {
            (dialled == "bank").then(|| crate::config::Route::to_flow("demo"))
        }
        fn run(&self, _flow: String, call: SipCall) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move { drop(call) })
        }
    }

    fn setup(sip: SipHandle, first_port: u16) -> CallSetup {
        let cfg = SetupConfig {
            listen_ip: "127.0.0.1".parse().unwrap(),
            advertised_ip: Some("127.0.0.1".parse().unwrap()),
            rtp: PortRange {
                first: first_port,
                last: first_port + 3,
            },
            rtp_recv_buffer: 0,
            session: SessionConfig {
                rtp_timeout: Duration::from_secs(30),
                inband_dtmf: false,
                jitter_frames: 3,
                rtp_source: Default::default(),
            },
            max_call_duration: Duration::from_secs(5),
            media: tokio::runtime::Handle::current(),
            speech: None,
            trusted_peers: Vec::new(),
            outbound_proxy: None,
        };
        CallSetup::new(
            cfg,
            Arc::new(PromptCache::new("prompts")),
            Arc::new(Bank),
            sip,
        )
    }

    fn dialog(call: &str, dialled: &str, offer: &str) -> NewDialog {
        NewDialog {
            call: call.into(),
            dialled: Some(dialled.into()),
            caller: "+15551230001".into(),
            offer: offer.replace('\n', "\r\n").into_bytes(),
            peer: "127.0.0.1:5070".parse().unwrap(),
            local_ip: "127.0.0.1".parse().unwrap(),
            headers: Default::default(),
        }
    }

    const OFFER: &str =
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 8 101\na=rtpmap:101 telephone-event/8000\n";

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Answer { .. } => 200,
            Decision::Reject { status, .. } => *status,
            Decision::Later => 0,
        }
    }

    #[tokio::test]
    async fn unrouted_and_unacceptable_offers_are_refused_without_keeping_a_port() {
        let (sip, _rx) = SipHandle::channel();
        let mut s = setup(sip.clone(), 31102);
        assert_eq!(status(&s.offered(dialog("a", "nobody", OFFER), &sip)), 404);
        let video = OFFER.replace("m=audio 4000 RTP/AVP 8 101", "m=video 4000 RTP/AVP 96");
        assert_eq!(status(&s.offered(dialog("b", "bank", &video), &sip)), 488);
        assert_eq!(s.ports.in_use(), 0);
        assert!(s.calls.is_empty());
    }

    #[tokio::test]
    async fn an_answered_call_takes_a_port_follows_re_offers_and_is_released() {
        let (sip, mut rx) = SipHandle::channel();
        let mut s = setup(sip.clone(), 31106);
        let Decision::Answer { sdp } = s.offered(dialog("c", "bank", OFFER), &sip) else {
            panic!("call refused")
        };
        assert!(sdp.contains("m=audio 31106 RTP/AVP 8 101\r\n"), "{sdp}");
        assert_eq!(s.ports.in_use(), 1);
        // Hold: answered from the same port with a new o= version.
        let hold = OFFER.replace("t=0 0\n", "t=0 0\na=sendonly\n");
        let Decision::Answer { sdp } = s.re_offered("c", hold.replace('\n', "\r\n").as_bytes())
        else {
            panic!("re-INVITE refused")
        };
        assert!(
            sdp.contains("a=recvonly") && sdp.contains(" 2 IN IP4 127.0.0.1"),
            "{sdp}"
        );
        assert_eq!(status(&s.re_offered("c", b"v=1\r\n")), 400);
        assert_eq!(status(&s.re_offered("unknown", OFFER.as_bytes())), 481);
        assert_eq!(s.confirmed("c", b""), AfterAck::Proceed);
        // The flow ends at once: the call task releases the call.
        let released = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(
            released.ok().flatten(),
            Some(Command::Release { call: "c".into() })
        );
        s.released("c");
        assert_eq!(s.ports.in_use(), 0);
    }

    #[tokio::test]
    async fn a_late_offer_is_offered_and_a_useless_answer_in_the_ack_hangs_up() {
        let (sip, _rx) = SipHandle::channel();
        let mut s = setup(sip.clone(), 31110);
        let Decision::Answer { sdp } = s.offered(dialog("d", "bank", ""), &sip) else {
            panic!("late offer refused")
        };
        assert!(sdp.contains("m=audio 31110 RTP/AVP 0 8 101\r\n"), "{sdp}");
        assert_eq!(s.confirmed("d", b"not sdp"), AfterAck::HangUp);
    }

    #[test]
    fn every_codec_round_trips_through_its_sdp_encoding() {
        for c in CODECS {
            let n = sdp::answer(
                format!(
                    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {}\r\n",
                    c.payload_type()
                )
                .as_bytes(),
                &LocalMedia {
                    ip: "192.0.2.2".parse().unwrap(),
                    port: 30000,
                    codecs: our_encodings(),
                    session_id: 1,
                    session_version: 1,
                },
            )
            .expect("answer");
            assert_eq!(
                media_params(&n, "192.0.2.1".parse().unwrap()).map(|p| p.codec),
                Some(c)
            );
        }
    }
}
