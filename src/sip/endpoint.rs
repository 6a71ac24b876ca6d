//! The SIP edge: sockets (UDP and TCP on one address) around the [`Core`]
//! state machine. Signalling only: what each call means (routing, SDP
//! answer, media) is the [`DialogHandler`]'s business. Everything async of
//! signalling lives here; the protocol logic is in `core`, `wire` and `sdp`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::core::ReferEvent;
use super::core::{is_sdp, Core, CoreConfig, CoreEvent, Link, Output, Peer};
use super::handler::{AfterAck, Command, Decision, DialogHandler, NewDialog, SipHandle};
use super::wire::{self, Inbound, Rejection, StreamFramer, Transport};

/// Signalling settings of the endpoint.
#[derive(Clone, Debug)]
pub struct SipConfig {
    /// Where UDP and TCP listen (one address for both; [`bind`] takes it).
    /// Its IP is also the fallback Via/Contact address when the route to a
    /// caller cannot be found.
    pub listen: SocketAddr,
    /// Address written into Via and Contact. None (listening on 0.0.0.0 or
    /// :: without public_ip): per caller, our address on the route to it.
    pub advertised_ip: Option<IpAddr>,
    /// After shutdown is asked for, how long running calls may go on before
    /// they are hung up (new calls get 503 meanwhile).
    pub shutdown_grace: Duration,
    /// Send 180 and wait this long before answering (0 = answer at once).
    pub ring_time: Duration,
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
    /// Ring time is over: answer with this SDP.
    Answer {
        call: String,
        sdp: String,
    },
}

/// The SIP endpoint: owns the sockets and the [`Core`], and hands each
/// dialog's decisions to the handler `H`. Built by [`Endpoint::new`], driven by
/// [`Endpoint::run`].
pub struct Endpoint<H> {
    cfg: SipConfig,
    core: Core,
    udp: Arc<UdpSocket>,
    tcp_writers: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    /// Calls the handler answered and has not released yet.
    held: HashSet<String>,
    handler: H,
    tx: mpsc::UnboundedSender<LoopMsg>,
    rx: mpsc::UnboundedReceiver<LoopMsg>,
    handle: SipHandle,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Peer IP → our address on the route to it (advertised_ip None only).
    route_cache: HashMap<IpAddr, IpAddr>,
    /// Where each running REFER's progress goes, by Call-ID.
    refers: HashMap<String, mpsc::UnboundedSender<ReferEvent>>,
}

/// Bound sockets, ready to serve (tests bind port 0 and read the address).
pub struct Bound {
    /// The UDP socket, bound to the listen address.
    pub udp: UdpSocket,
    /// The TCP listener, on the same address and port as `udp`.
    pub tcp: TcpListener,
}

/// Bind UDP on `listen`, then TCP on the port UDP got (so port 0 gives both
/// the same free port).
pub async fn bind(listen: SocketAddr) -> std::io::Result<Bound> {
    let udp = UdpSocket::bind(listen).await?;
    let addr = udp.local_addr()?;
    let tcp = TcpListener::bind(addr).await?;
    Ok(Bound { udp, tcp })
}

impl<H: DialogHandler> Endpoint<H> {
    /// `handler` is built here because it needs the way back in (a [`SipHandle`]).
    pub fn new(
        cfg: SipConfig,
        bound: Bound,
        handler: impl FnOnce(SipHandle) -> H,
    ) -> std::io::Result<(Self, TcpListener)> {
        let local = bound.udp.local_addr()?;
        let sent_by =
            SocketAddr::new(cfg.advertised_ip.unwrap_or(local.ip()), local.port()).to_string();
        let core = Core::new(CoreConfig {
            sent_by,
            ..Default::default()
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (command_tx, commands) = mpsc::unbounded_channel();
        let handle = SipHandle { tx: command_tx };
        Ok((
            Self {
                cfg,
                core,
                udp: Arc::new(bound.udp),
                tcp_writers: HashMap::new(),
                held: HashSet::new(),
                handler: handler(handle.clone()),
                tx,
                rx,
                handle,
                commands,
                route_cache: HashMap::new(),
                refers: HashMap::new(),
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
                if self.held.is_empty() && self.core.call_count() == 0 {
                    info!("all calls finished; stopping");
                    break;
                }
                if Instant::now() >= d {
                    if !hung_up_all {
                        hung_up_all = true;
                        warn!(
                            calls = self.held.len(),
                            "shutdown grace over; hanging up remaining calls"
                        );
                        let ids: Vec<String> = self.held.iter().cloned().collect();
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
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                _ = sleep_opt(wake) => {
                    self.core.handle_timeout(Instant::now().into_std());
                }
                r = shutdown.changed(), if drain_deadline.is_none() => {
                    if r.is_err() || *shutdown.borrow() {
                        info!(calls = self.held.len(), grace = ?self.cfg.shutdown_grace, "shutting down: refusing new calls, letting running calls finish");
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
            LoopMsg::Answer { call, sdp } => {
                self.core
                    .accept(Instant::now().into_std(), &call, sdp.as_bytes());
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Hangup { call } => {
                self.core.hangup(Instant::now().into_std(), &call);
            }
            Command::Release { call } => {
                if self.held.remove(&call) {
                    self.handler.released(&call);
                }
                // A flow that ended without hanging up still must not leave a dialog behind.
                self.core.hangup(Instant::now().into_std(), &call);
            }
            Command::Refer {
                call,
                target,
                headers,
                events,
            } => self.refer(call, &target, &headers, events.0),
        }
    }

    /// Send REFER for a call the handler holds; when nothing was sent the
    /// sink is dropped, which the caller sees as a closed channel.
    fn refer(
        &mut self,
        call: String,
        target: &str,
        headers: &[(String, String)],
        events: mpsc::UnboundedSender<ReferEvent>,
    ) {
        if !self.held.contains(&call) {
            return;
        }
        match self
            .core
            .refer(Instant::now().into_std(), &call, target, headers)
        {
            Ok(()) => {
                info!(%call, %target, headers = headers.len(), "REFER sent");
                self.refers.insert(call, events);
            }
            Err(e) => warn!(%call, error = %e, "REFER not sent"),
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
            } => {
                let local_ip = self.local_ip_for(peer.addr.ip());
                self.on_new_dialog(NewDialog {
                    call,
                    dialled,
                    caller,
                    offer,
                    peer: peer.addr,
                    local_ip,
                    headers,
                });
            }
            CoreEvent::ReOffer {
                call,
                content_type,
                offer,
            } => {
                if !self.held.contains(&call) {
                    self.core
                        .reject(now, &call, 481, "Call/Transaction Does Not Exist");
                    return;
                }
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
                match self.handler.re_offered(&call, &offer) {
                    Decision::Answer { sdp } => self.core.accept(now, &call, sdp.as_bytes()),
                    Decision::Reject { status, reason } => {
                        self.core.reject(now, &call, status, &reason)
                    }
                }
            }
            CoreEvent::Confirmed { call, answer } => {
                if !self.held.contains(&call) {
                    return;
                }
                if self.handler.confirmed(&call, &answer) == AfterAck::HangUp {
                    self.core.hangup(now, &call);
                }
            }
            CoreEvent::Refer { call, event } => {
                info!(%call, refer = ?event, "REFER progress");
                let last = !matches!(event, ReferEvent::Accepted(_) | ReferEvent::Progress(_));
                if let Some(tx) = self.refers.get(&call) {
                    let _ = tx.send(event);
                }
                if last {
                    self.refers.remove(&call);
                }
            }
            CoreEvent::Cancelled { call }
            | CoreEvent::RemoteHangup { call }
            | CoreEvent::Ended { call, .. } => {
                self.refers.remove(&call);
                if self.held.contains(&call) {
                    self.handler.dialog_ended(&call);
                }
            }
            CoreEvent::Info {
                call,
                content_type,
                body,
            } => {
                if self.held.contains(&call) {
                    self.handler.info(&call, &content_type, &body);
                }
            }
        }
    }

    fn on_new_dialog(&mut self, dialog: NewDialog) {
        let now = Instant::now().into_std();
        let call = dialog.call.clone();
        match self.handler.offered(dialog, &self.handle) {
            Decision::Reject { status, reason } => self.core.reject(now, &call, status, &reason),
            Decision::Answer { sdp } => {
                self.held.insert(call.clone());
                if self.cfg.ring_time.is_zero() {
                    self.core.accept(now, &call, sdp.as_bytes());
                } else {
                    self.core.ring(now, &call);
                    let tx = self.tx.clone();
                    let ring = self.cfg.ring_time;
                    tokio::spawn(async move {
                        tokio::time::sleep(ring).await;
                        let _ = tx.send(LoopMsg::Answer { call, sdp });
                    });
                }
            }
        }
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
