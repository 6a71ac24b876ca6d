//! The SIP edge: sockets (UDP and TCP on one address), the [`Core`] state
//! machine, and the application decisions for each call (routing, SDP,
//! media, flow task). Everything async lives here and in the per-call
//! tasks; the protocol logic is in `core`, `wire` and `sdp`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use super::core::{is_sdp, Core, CoreConfig, CoreEvent, Link, Output, Peer};
use super::rtp_ports::RtpPorts;
use super::sdp::{self, LocalMedia};
use super::wire::{self, Inbound, Rejection, StreamFramer, Transport};
use crate::call::sip::{CallControl, SipCall};
use crate::call::CallInfo;
use crate::media::dtmf::info::parse_info;
use crate::media::g711::Codec;
use crate::media::prompt::PromptCache;
use crate::media::session::{MediaCommand, MediaEvent, MediaParams, MediaSession, SessionConfig};

/// Runs one answered call to its end (the flow, or a built-in handler).
pub trait CallRunner: Send + Sync + 'static {
    /// The flow serving this dialled user, or None → 404.
    fn route(&self, dialled: &str) -> Option<String>;
    fn run(
        &self,
        flow: String,
        call: SipCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub listen: SocketAddr,
    /// Address written into SDP and Contact. None (listening on 0.0.0.0 or ::
    /// without public_ip): per caller, our address on the route to it.
    pub advertised_ip: Option<IpAddr>,
    pub rtp: crate::config::PortRange,
    pub session: SessionConfig,
    pub max_call_duration: Duration,
    pub shutdown_grace: Duration,
    /// Send 180 and wait this long before answering (0 = answer at once).
    pub ring_time: Duration,
    /// Where media sessions run (a runtime of their own, see `app`).
    pub media: tokio::runtime::Handle,
    /// Speech decoders shared by all calls (None: no model installed).
    pub speech: Option<crate::asr::SpeechPool>,
}

enum LoopMsg {
    Tcp {
        conn: u64,
        from: SocketAddr,
        data: Vec<u8>,
    },
    TcpBad {
        conn: u64,
        from: SocketAddr,
        error: wire::FramingError,
    },
    TcpOpen {
        conn: u64,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    TcpClosed {
        conn: u64,
    },
    Control(CallControl),
    CallDone {
        call: String,
    },
    /// Ring time is over: answer with this SDP.
    Answer {
        call: String,
        sdp: String,
    },
}

struct CallHandle {
    events: mpsc::UnboundedSender<MediaEvent>,
    media: mpsc::UnboundedSender<MediaCommand>,
    rtp_port: u16,
    /// Our address in this call's SDP.
    media_ip: IpAddr,
    /// Late offer: what we offered, until the caller's answer (in the ACK) comes.
    late_offer: Option<LocalMedia>,
    params: MediaParams,
    sdp_version: u64,
    session_id: u64,
}

pub struct Endpoint {
    cfg: EndpointConfig,
    core: Core,
    udp: Arc<UdpSocket>,
    tcp_writers: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    calls: HashMap<String, CallHandle>,
    ports: Arc<RtpPorts>,
    prompts: Arc<PromptCache>,
    runner: Arc<dyn CallRunner>,
    tx: mpsc::UnboundedSender<LoopMsg>,
    rx: mpsc::UnboundedReceiver<LoopMsg>,
    control_tx: mpsc::UnboundedSender<CallControl>,
    /// Peer IP → our address on the route to it (advertised_ip None only).
    route_cache: HashMap<IpAddr, IpAddr>,
}

/// Bound sockets, ready to serve (tests bind port 0 and read the address).
pub struct Bound {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

pub async fn bind(listen: SocketAddr) -> std::io::Result<Bound> {
    let udp = UdpSocket::bind(listen).await?;
    let addr = udp.local_addr()?;
    let tcp = TcpListener::bind(addr).await?;
    Ok(Bound { udp, tcp })
}

impl Endpoint {
    pub fn new(
        cfg: EndpointConfig,
        bound: Bound,
        prompts: Arc<PromptCache>,
        runner: Arc<dyn CallRunner>,
    ) -> std::io::Result<(Self, TcpListener)> {
        let local = bound.udp.local_addr()?;
        let sent_by =
            SocketAddr::new(cfg.advertised_ip.unwrap_or(local.ip()), local.port()).to_string();
        let core = Core::new(CoreConfig {
            sent_by,
            ..Default::default()
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (control_tx, mut control_rx) = mpsc::unbounded_channel();
        let fwd = tx.clone();
        tokio::spawn(async move {
            while let Some(c) = control_rx.recv().await {
                if fwd.send(LoopMsg::Control(c)).is_err() {
                    break;
                }
            }
        });
        let ports = Arc::new(RtpPorts::new(cfg.rtp));
        Ok((
            Self {
                cfg,
                core,
                udp: Arc::new(bound.udp),
                tcp_writers: HashMap::new(),
                calls: HashMap::new(),
                ports,
                prompts,
                runner,
                tx,
                rx,
                control_tx,
                route_cache: HashMap::new(),
            },
            bound.tcp,
        ))
    }

    /// Serve until `shutdown` flips to true, then drain: new calls get 503,
    /// running calls get `shutdown_grace` to finish, the rest are hung up.
    pub async fn run(mut self, tcp: TcpListener, mut shutdown: watch::Receiver<bool>) {
        spawn_tcp_acceptor(tcp, self.tx.clone());
        let mut buf = vec![0u8; 65_535];
        let mut drain_deadline: Option<Instant> = None;
        let mut hung_up_all = false;
        loop {
            self.flush();
            if let Some(d) = drain_deadline {
                if self.calls.is_empty() && self.core.call_count() == 0 {
                    info!("all calls finished; stopping");
                    break;
                }
                if Instant::now() >= d {
                    if !hung_up_all {
                        hung_up_all = true;
                        warn!(
                            calls = self.calls.len(),
                            "shutdown grace over; hanging up remaining calls"
                        );
                        let ids: Vec<String> = self.calls.keys().cloned().collect();
                        let now = Instant::now().into_std();
                        for id in ids {
                            self.core.hangup(now, &id);
                        }
                        self.flush();
                        drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                    } else {
                        break;
                    }
                }
            }
            let timer = self.core.next_deadline().map(Instant::from_std);
            let drain_timer = drain_deadline;
            let wake = match (timer, drain_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => {
                    match r {
                        Ok((n, from)) => {
                            let data = buf[..n].to_vec();
                            self.on_bytes(Peer { link: Link::Udp, addr: from }, &data, Transport::Udp);
                        }
                        Err(e) => debug!(error = %e, "udp receive error"),
                    }
                }
                Some(msg) = self.rx.recv() => self.on_loop_msg(msg),
                _ = sleep_opt(wake) => {
                    self.core.handle_timeout(Instant::now().into_std());
                }
                r = shutdown.changed(), if drain_deadline.is_none() => {
                    if r.is_err() || *shutdown.borrow() {
                        info!(calls = self.calls.len(), grace = ?self.cfg.shutdown_grace, "shutting down: refusing new calls, letting running calls finish");
                        self.core.stop_accepting();
                        drain_deadline = Some(Instant::now() + self.cfg.shutdown_grace);
                    }
                }
            }
        }
    }

    fn on_loop_msg(&mut self, msg: LoopMsg) {
        match msg {
            LoopMsg::Tcp { conn, from, data } => self.on_bytes(
                Peer {
                    link: Link::Tcp(conn),
                    addr: from,
                },
                &data,
                Transport::Tcp,
            ),
            LoopMsg::TcpBad { conn, from, error } => {
                info!(%from, %error, "closing TCP connection after a framing error");
                if let Some(ctx) = error.reply_context() {
                    let reason = format!("Bad Request: {error}");
                    let peer = Peer {
                        link: Link::Tcp(conn),
                        addr: from,
                    };
                    self.core.reply_malformed(
                        Instant::now().into_std(),
                        peer,
                        ctx,
                        error.status(),
                        &reason,
                    );
                    self.flush();
                }
                // Dropping the writer closes the connection once queued replies are out.
                self.tcp_writers.remove(&conn);
            }
            LoopMsg::TcpOpen { conn, writer } => {
                self.tcp_writers.insert(conn, writer);
            }
            LoopMsg::TcpClosed { conn } => {
                self.tcp_writers.remove(&conn);
            }
            LoopMsg::Control(CallControl::Hangup { call }) => {
                self.core.hangup(Instant::now().into_std(), &call);
            }
            LoopMsg::Answer { call, sdp } => {
                self.core
                    .accept(Instant::now().into_std(), &call, sdp.as_bytes());
            }
            LoopMsg::CallDone { call } => {
                if let Some(h) = self.calls.remove(&call) {
                    self.ports.release(h.rtp_port);
                }
                // A flow that ended without hanging up still must not leave a dialog behind.
                self.core.hangup(Instant::now().into_std(), &call);
            }
        }
    }

    /// Our address as `peer` sees it: the configured one, or (listening on
    /// the unspecified address) the source address the kernel picks on the
    /// route to the peer. A connected UDP socket tells without sending
    /// anything; results are cached per peer IP.
    fn local_ip_for(&mut self, peer: IpAddr) -> IpAddr {
        if let Some(ip) = self.cfg.advertised_ip {
            return ip;
        }
        // An IPv4 caller on a dual-stack [::] socket shows up as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        if let Some(ip) = self.route_cache.get(&peer) {
            return *ip;
        }
        let unspecified: IpAddr = if peer.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let ip = std::net::UdpSocket::bind((unspecified, 0))
            .and_then(|s| s.connect((peer, 9)).map(|_| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip())
            .unwrap_or(self.cfg.listen.ip());
        if self.route_cache.len() >= 4096 {
            // Evict one entry, not all: running calls keep theirs.
            if let Some(k) = self.route_cache.keys().next().copied() {
                self.route_cache.remove(&k);
            }
        }
        self.route_cache.insert(peer, ip);
        let port = self
            .udp
            .local_addr()
            .map_or(self.cfg.listen.port(), |a| a.port());
        let sent_by = SocketAddr::new(ip, port).to_string();
        self.core.set_sent_by_for(peer, sent_by);
        ip
    }

    fn on_bytes(&mut self, peer: Peer, data: &[u8], transport: Transport) {
        let now = Instant::now().into_std();
        match wire::parse_message(data, transport) {
            Ok(Inbound::Request(req)) => match wire::reply_context(data) {
                Some(ctx) => self.core.handle_request(now, peer, &req, &ctx),
                None => {
                    debug!(from = %peer.addr, "request without the headers needed to answer it; dropped")
                }
            },
            Ok(Inbound::Response(resp)) => self.core.handle_response(now, &resp),
            Err(Rejection::Reply {
                status,
                reason,
                ctx,
            }) => {
                info!(from = %peer.addr, status, %reason, "rejecting malformed request");
                self.core.reply_malformed(now, peer, &ctx, status, &reason);
            }
            Err(Rejection::Drop { why }) => {
                debug!(from = %peer.addr, %why, "dropping malformed message")
            }
        }
    }

    /// Execute what the core asked for.
    fn flush(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { to, data } => self.transmit(to, data),
                Output::Event(ev) => self.on_core_event(ev),
            }
        }
    }

    fn transmit(&self, to: Peer, data: Vec<u8>) {
        match to.link {
            Link::Udp => {
                if let Err(e) = self.udp.try_send_to(&data, to.addr) {
                    debug!(to = %to.addr, error = %e, "udp send failed");
                }
            }
            Link::Tcp(conn) => match self.tcp_writers.get(&conn) {
                Some(w) => {
                    let _ = w.send(data);
                }
                // RFC 3261 18.2.2 would open a new connection; to stay on
                // addresses we have seen, we don't dial the peer's ephemeral port.
                None => debug!(to = %to.addr, "TCP connection gone; message not sent"),
            },
        }
    }

    fn on_core_event(&mut self, ev: CoreEvent) {
        let now = Instant::now().into_std();
        match ev {
            CoreEvent::NewCall {
                call,
                dialled,
                caller,
                offer,
                peer,
                headers,
            } => self.on_new_call(call, dialled, caller, offer, peer, headers),
            CoreEvent::ReOffer {
                call,
                content_type,
                offer,
            } => {
                let Some(h) = self.calls.get_mut(&call) else {
                    self.core
                        .reject(now, &call, 481, "Call/Transaction Does Not Exist");
                    return;
                };
                if offer.is_empty() {
                    self.core.reject(
                        now,
                        &call,
                        488,
                        "Not Acceptable Here: re-INVITE without an SDP offer is not supported",
                    );
                    return;
                }
                if !content_type.as_deref().is_some_and(is_sdp) {
                    self.core.reject(now, &call, 415, "Unsupported Media Type");
                    return;
                }
                h.sdp_version += 1;
                let local = LocalMedia {
                    ip: h.media_ip,
                    port: h.rtp_port,
                    codecs: vec![Codec::Pcmu, Codec::Pcma],
                    session_id: h.session_id,
                    session_version: h.sdp_version,
                };
                match sdp::answer(&offer, &local) {
                    Ok(neg) => {
                        let params = media_params(&neg);
                        info!(%call, codec = neg.codec.name(), dtmf_pts = ?neg.dtmf_pts, hold = neg.on_hold, "re-INVITE accepted");
                        let _ = h.media.send(MediaCommand::Update(params.clone()));
                        h.params = params;
                        self.core.accept(now, &call, neg.answer.as_bytes());
                    }
                    Err(e) => self.core.reject(now, &call, e.status(), &e.to_string()),
                }
            }
            CoreEvent::Confirmed { call, answer } => {
                let Some(h) = self.calls.get_mut(&call) else {
                    return;
                };
                if let Some(local) = h.late_offer.take() {
                    // The ACK carries the caller's answer to our offer; read it
                    // as the offerer would (their codec, their DTMF PTs, their
                    // address and direction).
                    match sdp::answer(&answer, &local) {
                        Ok(n) => {
                            let params = media_params(&n);
                            info!(%call, codec = n.codec.name(), "late offer answered in the ACK");
                            h.params = params.clone();
                            let _ = h.media.send(MediaCommand::Update(params));
                        }
                        Err(e) => {
                            warn!(%call, reason = %e, "the ACK carries no usable SDP answer to our offer; ending the call");
                            let _ = h.events.send(MediaEvent::Hangup);
                            self.core.hangup(now, &call);
                            return;
                        }
                    }
                }
                let _ = h.events.send(MediaEvent::Confirmed);
            }
            CoreEvent::Cancelled { call }
            | CoreEvent::RemoteHangup { call }
            | CoreEvent::Ended { call, .. } => {
                if let Some(h) = self.calls.get(&call) {
                    let _ = h.events.send(MediaEvent::Hangup);
                }
            }
            CoreEvent::Info {
                call,
                content_type,
                body,
            } => {
                let Some(h) = self.calls.get(&call) else {
                    return;
                };
                match parse_info(&content_type, &body) {
                    Ok((digit, dur)) => {
                        let _ = h.media.send(MediaCommand::InfoDigit(digit, dur));
                    }
                    Err(e) => debug!(%call, error = %e, "INFO without a usable DTMF body"),
                }
            }
        }
    }

    fn on_new_call(
        &mut self,
        call: String,
        dialled: Option<String>,
        caller: String,
        offer: Vec<u8>,
        peer: Peer,
        headers: std::collections::BTreeMap<String, String>,
    ) {
        // Content-Type and Accept were checked by the core (RFC 3261 8.2.3) before routing.
        let now = Instant::now().into_std();
        let dialled = dialled.unwrap_or_default();
        let Some(flow) = self.runner.route(&dialled) else {
            info!(%call, %dialled, "no flow serves this number");
            self.core.reject(now, &call, 404, "Not Found");
            return;
        };
        // No offer in the INVITE (late offer): we offer in the 200 and the
        // caller answers in the ACK.
        let late_offer = offer.is_empty();
        let media_ip = self.local_ip_for(peer.addr.ip());
        // Bound where SIP listens: the unspecified address when we advertise
        // per caller, so audio arrives on whichever interface it routes to.
        let bind_ip = match self.cfg.advertised_ip {
            Some(ip) => ip,
            None if self.cfg.listen.ip().is_unspecified() => match media_ip {
                IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            },
            None => self.cfg.listen.ip(),
        };
        let Some((sock, port)) = self.ports.allocate(bind_ip) else {
            warn!(%call, "no free RTP port; rejecting call");
            self.core
                .reject(now, &call, 503, "Service Unavailable: no media port free");
            return;
        };
        let session_id: u64 = rand::random::<u32>() as u64;
        let local = LocalMedia {
            ip: media_ip,
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            session_id,
            session_version: 1,
        };
        let (params, body, codec) = if late_offer {
            // Nothing is sent until the answer says where and how.
            let params = MediaParams {
                codec: Codec::Pcmu,
                codec_pt: Codec::Pcmu.payload_type(),
                dtmf_pts: vec![LATE_OFFER_DTMF_PT],
                remote: None,
                send: false,
                expect_rtp: false,
            };
            (params, sdp::offer(&local, LATE_OFFER_DTMF_PT), "offered")
        } else {
            match sdp::answer(&offer, &local) {
                Ok(n) => (media_params(&n), n.answer, n.codec.name()),
                Err(e) => {
                    info!(%call, status = e.status(), reason = %e, "SDP offer refused");
                    self.ports.release(port);
                    self.core.reject(now, &call, e.status(), &e.to_string());
                    return;
                }
            }
        };
        // Registered with the media runtime's reactor inside the session task.
        let sock = match sock.set_nonblocking(true).map(|_| sock) {
            Ok(s) => s,
            Err(e) => {
                warn!(%call, error = %e, "cannot use RTP socket");
                self.ports.release(port);
                self.core
                    .reject(now, &call, 500, "Server Internal Error: media socket");
                return;
            }
        };
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let session = MediaSession::new(
            sock,
            params.clone(),
            self.cfg.session.clone(),
            self.prompts.clone(),
            ev_tx.clone(),
            media_rx,
        );
        let info = CallInfo {
            call_id: call.clone(),
            caller: caller.clone(),
            dialled: dialled.clone(),
            headers,
        };
        let sip_call = SipCall::new(
            info,
            media_tx.clone(),
            ev_rx,
            self.control_tx.clone(),
            self.prompts.clone(),
        )
        .with_speech(self.cfg.speech.clone());
        self.calls.insert(
            call.clone(),
            CallHandle {
                events: ev_tx,
                media: media_tx.clone(),
                rtp_port: port,
                media_ip,
                late_offer: late_offer.then(|| local.clone()),
                params,
                sdp_version: 1,
                session_id,
            },
        );
        info!(%call, %dialled, %caller, %flow, from = %peer.addr, codec, rtp_port = port, "answering call");
        let span = tracing::info_span!("call", id = %call);
        let runner = self.runner.clone();
        let done = self.tx.clone();
        let max = self.cfg.max_call_duration;
        let call_id = call.clone();
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
                    info!(
                        sent = stats.packets_sent,
                        received = stats.packets_received,
                        lost = stats.frames_lost,
                        digits = stats.digits,
                        "call ended"
                    );
                }
                let _ = done.send(LoopMsg::CallDone { call: call_id });
            }
            .instrument(span),
        );
        if self.cfg.ring_time.is_zero() {
            self.core.accept(now, &call, body.as_bytes());
        } else {
            self.core.ring(now, &call);
            let tx = self.tx.clone();
            let ring = self.cfg.ring_time;
            let sdp = body;
            tokio::spawn(async move {
                tokio::time::sleep(ring).await;
                let _ = tx.send(LoopMsg::Answer { call, sdp });
            });
        }
    }
}

/// Telephone-event payload type in our late-offer SDP.
const LATE_OFFER_DTMF_PT: u8 = 101;

fn media_params(neg: &sdp::Negotiated) -> MediaParams {
    MediaParams {
        codec: neg.codec,
        codec_pt: neg.codec_pt,
        dtmf_pts: neg.dtmf_pts.clone(),
        remote: neg.remote_rtp,
        send: neg.local_direction.sends(),
        expect_rtp: neg.local_direction.receives() && !neg.on_hold,
    }
}

async fn sleep_opt(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending::<()>().await,
    }
}

/// A message that started arriving must be complete within this (Timer F scale).
const TCP_PARTIAL_TIMEOUT: Duration = Duration::from_secs(32);
/// Connections with no traffic at all are closed after this.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

fn spawn_tcp_acceptor(listener: TcpListener, tx: mpsc::UnboundedSender<LoopMsg>) {
    tokio::spawn(async move {
        let mut next_id: u64 = 1;
        loop {
            let Ok((stream, from)) = listener.accept().await else {
                continue;
            };
            let conn = next_id;
            next_id += 1;
            let (mut rd, mut wr) = stream.into_split();
            let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
            if tx.send(LoopMsg::TcpOpen { conn, writer: wtx }).is_err() {
                return;
            }
            tokio::spawn(async move {
                while let Some(data) = wrx.recv().await {
                    if wr.write_all(&data).await.is_err() {
                        break;
                    }
                }
            });
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut framer = StreamFramer::new();
                let mut buf = vec![0u8; 16 * 1024];
                'read: loop {
                    // A half-received message must complete soon; an idle connection may
                    // stay a while (dispatchers and phones reuse them), not forever.
                    let idle = if framer.buffered() > 0 {
                        TCP_PARTIAL_TIMEOUT
                    } else {
                        TCP_IDLE_TIMEOUT
                    };
                    let n = match tokio::time::timeout(idle, rd.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => n,
                        Err(_) => {
                            debug!(%from, "closing idle or stalled TCP connection");
                            break;
                        }
                    };
                    framer.push(&buf[..n]);
                    while let Some(m) = framer.next_message() {
                        match m {
                            Ok(data) => {
                                if tx.send(LoopMsg::Tcp { conn, from, data }).is_err() {
                                    break 'read;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(LoopMsg::TcpBad {
                                    conn,
                                    from,
                                    error: e,
                                });
                                break 'read;
                            }
                        }
                    }
                }
                let _ = tx.send(LoopMsg::TcpClosed { conn });
            });
        }
    });
}
