//! The SIP edge: sockets (UDP and TCP on one address) around the [`Core`]
//! state machine. Signalling only: what each call means (routing, SDP
//! answer, media) is the [`DialogHandler`]'s business. Everything async of
//! signalling lives here; the protocol logic is in `core`, `wire` and `sdp`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::core::ReferEvent;
use super::core::{is_sdp, Core, CoreConfig, CoreEvent, LegUpdate, Link, Outbound, Output, Peer};
use super::handler::{
    route_source_ip, AfterAck, Command, Decision, Dial, DialogHandler, LegEvent, LegEvents,
    LocalAddr, NewDialog, ReAnswer, SipHandle,
};
use super::limits::{Limits, Verdict};
use super::log_limit::LogLimiter;
use super::tcp::{self, TcpEvent, TcpWriter};
use super::wire::{self, Inbound, Rejection, Transport};
use crate::config::LimitsConfig;

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
    /// Per-source and global limits, socket buffers, TCP (`limits:`).
    pub limits: LimitsConfig,
    /// Sources held only to the global limits (trusted proxies carry many callers).
    pub exempt: Vec<ipnet::IpNet>,
}

enum LoopMsg {
    /// Ring time is over: answer with this SDP.
    Answer { call: String, sdp: String },
}

/// The SIP endpoint: owns the sockets and the [`Core`], and hands each
/// dialog's decisions to the handler `H`. Built by [`Endpoint::new`], driven by
/// [`Endpoint::run`].
pub struct Endpoint<H> {
    cfg: SipConfig,
    core: Core,
    udp: Arc<UdpSocket>,
    tcp_writers: HashMap<u64, TcpWriter>,
    /// Call-ID → the TCP connection its dialog uses (kept open while it lives).
    tcp_calls: HashMap<String, u64>,
    tcp_tx: mpsc::UnboundedSender<TcpEvent>,
    tcp_rx: mpsc::UnboundedReceiver<TcpEvent>,
    /// Admission of new INVITEs per source and in all.
    limits: Limits,
    /// Repeated warnings per source, summarised.
    log_limit: LogLimiter,
    /// Datagrams per source, before parsing (`limits.datagram_rate`).
    datagram_rate: super::datagram_rate::DatagramRate,
    /// Calls the handler answered and has not released yet.
    held: HashSet<String>,
    handler: H,
    tx: mpsc::UnboundedSender<LoopMsg>,
    rx: mpsc::UnboundedReceiver<LoopMsg>,
    handle: SipHandle,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Peer IP → our address on the route to it (advertised_ip None only).
    route_cache: HashMap<IpAddr, IpAddr>,
    /// Outbound legs ([`SipHandle::dial`]) and where their events go, until
    /// their last event.
    legs: HashMap<String, LegEvents>,
    /// Where each running REFER's progress goes, by Call-ID.
    refers: HashMap<String, mpsc::UnboundedSender<ReferEvent>>,
    /// Where the answer of each re-INVITE we sent goes.
    reinvites: HashMap<String, mpsc::UnboundedSender<ReAnswer>>,
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
    // With port 0 the kernel picks a free UDP port, but the same number can be
    // taken on TCP (another socket's ephemeral port): pick again a few times.
    let tries = if listen.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(listen).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok(Bound { udp, tcp }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
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
            response_cache_bytes: cfg.limits.response_cache_bytes,
            ..Default::default()
        });
        super::sockbuf::enlarge_recv_buffer(&bound.udp, cfg.limits.sip_recv_buffer, "SIP UDP");
        let (tx, rx) = mpsc::unbounded_channel();
        let (tcp_tx, tcp_rx) = mpsc::unbounded_channel();
        let limits = Limits::new(cfg.limits.clone(), cfg.exempt.clone());
        let datagram_rate =
            super::datagram_rate::DatagramRate::new(cfg.limits.datagram_rate, cfg.exempt.clone());
        let log_limit = LogLimiter::new(cfg.limits.interval);
        let (command_tx, commands) = mpsc::unbounded_channel();
        let handle = SipHandle {
            tx: command_tx,
            local: LocalAddr {
                advertised: cfg.advertised_ip,
                fallback: cfg.listen.ip(),
            },
        };
        Ok((
            Self {
                cfg,
                core,
                udp: Arc::new(bound.udp),
                tcp_writers: HashMap::new(),
                tcp_calls: HashMap::new(),
                tcp_tx,
                tcp_rx,
                limits,
                log_limit,
                datagram_rate,
                held: HashSet::new(),
                handler: handler(handle.clone()),
                tx,
                rx,
                handle,
                commands,
                route_cache: HashMap::new(),
                legs: HashMap::new(),
                refers: HashMap::new(),
                reinvites: HashMap::new(),
            },
            bound.tcp,
        ))
    }

    /// Serve until `shutdown` flips to true, then drain: new calls get 503,
    /// running calls get `shutdown_grace` to finish, the rest are hung up.
    pub async fn run(mut self, tcp: TcpListener, mut shutdown: watch::Receiver<bool>) {
        tcp::spawn_acceptor(tcp, self.cfg.limits.tcp, self.tcp_tx.clone());
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
                        let ids: Vec<String> =
                            self.held.iter().chain(self.legs.keys()).cloned().collect();
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
            let summaries = [self.limits.next_deadline(), self.log_limit.next_deadline()]
                .into_iter()
                .flatten()
                .min()
                .map(Instant::from_std);
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => {
                    match r {
                        Ok((n, from)) => {
                            self.on_bytes(Peer { link: Link::Udp, addr: from }, &buf[..n], Transport::Udp);
                        }
                        Err(e) => debug!(error = %e, "udp receive error"),
                    }
                }
                Some(msg) = self.rx.recv() => self.on_loop_msg(msg),
                Some(ev) = self.tcp_rx.recv() => self.on_tcp(ev),
                _ = sleep_opt(summaries) => self.write_summaries(),
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
            LoopMsg::Answer { call, sdp } => self.answer(&call, &sdp),
        }
    }

    fn on_tcp(&mut self, ev: TcpEvent) {
        match ev {
            TcpEvent::Message { conn, from, data } => self.on_bytes(
                Peer {
                    link: Link::Tcp(conn),
                    addr: from,
                },
                &data,
                Transport::Tcp,
            ),
            TcpEvent::Bad { conn, from, error } => {
                let now = Instant::now().into_std();
                let detail = error.to_string();
                if self
                    .log_limit
                    .allow(now, from.ip(), "TCP framing error", &detail)
                {
                    info!(%from, %error, "closing TCP connection after a framing error");
                }
                if let Some(ctx) = error.reply_context() {
                    let reason = format!("Bad Request: {error}");
                    let peer = Peer {
                        link: Link::Tcp(conn),
                        addr: from,
                    };
                    self.core
                        .reply_malformed(now, peer, ctx, error.status(), &reason);
                    self.flush();
                }
                // Dropping the writer closes the connection once queued replies are out.
                self.tcp_writers.remove(&conn);
            }
            TcpEvent::Open { conn, writer } => {
                self.tcp_writers.insert(conn, writer);
            }
            TcpEvent::Closed { conn } => {
                self.tcp_writers.remove(&conn);
            }
            TcpEvent::Refused { from, why } => {
                let now = Instant::now().into_std();
                let ip = from.map_or(IpAddr::from([0, 0, 0, 0]), |f| f.ip());
                if self.log_limit.allow(now, ip, why, why) {
                    match from {
                        Some(from) => warn!(%from, "TCP connection refused: over the cap on {why}"),
                        None => warn!("TCP {why}; backing off"),
                    }
                }
            }
        }
    }

    /// The summaries of refused INVITEs and of repeated warnings, at the
    /// end of each interval: a few lines, however big the flood.
    fn write_summaries(&mut self) {
        let now = Instant::now().into_std();
        // The same deadline: strikes against sources that do not ACK.
        let silenced = self.limits.take_silenced(now);
        if !silenced.is_empty() {
            debug!(
                calls = silenced.len(),
                "200 OK no longer retransmitted: un-ACKed past limits.no_ack_after"
            );
        }
        for call in silenced {
            self.core.stop_retransmitting(&call);
        }
        let secs = self.limits.interval().as_secs_f64();
        for s in self.limits.take_summaries(now) {
            let source = s
                .source
                .map_or_else(|| "other sources".to_string(), |ip| ip.to_string());
            warn!(
                %source,
                refused = s.refused,
                dropped = s.dropped,
                "{} new INVITEs from {source} over the limit on {} in the last {secs} s: {} answered 503, {} dropped unanswered{}",
                s.refused + s.dropped,
                s.limit.as_str(),
                s.refused,
                s.dropped,
                if s.more_sources > 0 {
                    format!(" (and {} more sources)", s.more_sources)
                } else {
                    String::new()
                }
            );
        }
        let secs = self.log_limit.interval().as_secs_f64();
        let (lines, untracked) = self.log_limit.take_summaries(now);
        for s in lines {
            warn!(
                source = %s.source,
                "{} more {} from {} in the last {secs} s: '{}'…",
                s.count, s.kind, s.source, s.example
            );
        }
        if untracked > 0 {
            warn!("{untracked} more warnings from other sources in the last {secs} s");
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
            Command::Dial { call, dial, events } => self.on_dial(call, dial, events),
            Command::ReInvite { call, sdp, answer } => self.reinvite(call, &sdp, answer.0),
            Command::AnswerReOffer { call, decision } => {
                let now = Instant::now().into_std();
                match decision {
                    Decision::Answer { sdp } => self.core.accept(now, &call, sdp.as_bytes()),
                    Decision::Reject { status, reason } => {
                        self.core.reject(now, &call, status, &reason)
                    }
                    Decision::Later => self.core.reject(now, &call, 500, "Server Internal Error"),
                }
            }
            Command::Refer {
                call,
                target,
                headers,
                events,
            } => self.refer(call, &target, &headers, events.0),
        }
    }

    fn on_dial(&mut self, call: String, dial: Dial, events: LegEvents) {
        // Also tells the core which of our addresses Via/Contact/From carry.
        self.local_ip_for(dial.next_hop.ip());
        let peer = Peer {
            link: Link::Udp,
            addr: dial.next_hop,
        };
        let out = Outbound {
            target: dial.target,
            from_user: dial.from_user,
            headers: dial.headers,
            sdp: dial.sdp.into_bytes(),
        };
        match self.core.dial(Instant::now().into_std(), &call, peer, &out) {
            Ok(()) => {
                info!(%call, to = %dial.next_hop, "dialling");
                self.legs.insert(call, events);
            }
            Err(e) => {
                warn!(%call, error = %e, "outbound call refused");
                let _ = events.0.send(LegEvent::Failed { status: None });
            }
        }
    }

    /// Pass a leg's event on; its last one forgets the leg.
    fn leg_event(&mut self, call: &str, event: LegEvent) {
        let last = matches!(event, LegEvent::Failed { .. } | LegEvent::Ended);
        let Some(tx) = self.legs.get(call) else {
            return;
        };
        let _ = tx.0.send(event);
        if last {
            self.legs.remove(call);
        }
    }

    /// Send a re-INVITE on a call the handler holds or a leg we placed;
    /// when it cannot be sent, `answer` hears why at once.
    fn reinvite(&mut self, call: String, sdp: &str, answer: mpsc::UnboundedSender<ReAnswer>) {
        use super::core::ReInviteError;
        if !self.held.contains(&call) && !self.legs.contains_key(&call) {
            let _ = answer.send(ReAnswer {
                status: 481,
                sdp: Vec::new(),
            });
            return;
        }
        match self
            .core
            .reinvite(Instant::now().into_std(), &call, sdp.as_bytes())
        {
            Ok(()) => {
                info!(%call, "re-INVITE sent");
                self.reinvites.insert(call, answer);
            }
            Err(e) => {
                warn!(%call, error = %e, "re-INVITE not sent");
                let status = match e {
                    ReInviteError::Pending(_) => 491,
                    ReInviteError::NoDialog(_) => 481,
                    ReInviteError::NoOffer => 400,
                };
                let _ = answer.send(ReAnswer {
                    status,
                    sdp: Vec::new(),
                });
            }
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
        let ip = route_source_ip(peer, self.cfg.listen.ip());
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
        // UDP only: a connection's source cannot be forged and its framer
        // bounds it; a datagram is counted before anything is parsed.
        if transport == Transport::Udp && !self.datagram_rate.allow(now, peer.addr.ip()) {
            if self.log_limit.allow(
                now,
                peer.addr.ip(),
                "datagrams over limits.datagram_rate",
                "dropped unparsed",
            ) {
                warn!(from = %peer.addr, limit = self.cfg.limits.datagram_rate, "datagrams over limits.datagram_rate: dropped unparsed");
            }
            return;
        }
        // UDP only: the TCP framer has already found a start line and headers.
        if transport == Transport::Udp && !super::start_line::plausible(data) {
            if self.log_limit.allow(
                now,
                peer.addr.ip(),
                "non-SIP datagrams",
                "first line is not a SIP request or status line",
            ) {
                debug!(from = %peer.addr, "datagram does not start like SIP; dropped unparsed");
            }
            return;
        }
        match wire::parse_message(data, transport) {
            Ok(Inbound::Request(req)) => match wire::reply_context(data) {
                Some(ctx) => {
                    if req.method == rsipstack::sip::Method::Invite && !self.admit(now, peer, &ctx)
                    {
                        return;
                    }
                    self.core.handle_request(now, peer, &req, &ctx)
                }
                None => {
                    if self.log_limit.allow(
                        now,
                        peer.addr.ip(),
                        "unanswerable requests",
                        "without the headers needed to answer it",
                    ) {
                        debug!(from = %peer.addr, "request without the headers needed to answer it; dropped")
                    }
                }
            },
            Ok(Inbound::Response(resp)) => self.core.handle_response(now, &resp),
            Err(Rejection::Reply {
                status,
                reason,
                ctx,
            }) => {
                if self
                    .log_limit
                    .allow(now, peer.addr.ip(), "malformed requests", &reason)
                {
                    info!(from = %peer.addr, status, %reason, "rejecting malformed request");
                }
                self.core.reply_malformed(now, peer, &ctx, status, &reason);
            }
            Err(Rejection::Drop { why }) => {
                if self.log_limit.allow(
                    now,
                    peer.addr.ip(),
                    "malformed messages dropped",
                    &why.to_string(),
                ) {
                    debug!(from = %peer.addr, %why, "dropping malformed message")
                }
            }
        }
    }

    /// Per-source and global limits on new INVITEs (those outside a dialog
    /// we know; retransmissions and re-INVITEs pass). False: answered 503
    /// or dropped here.
    fn admit(&mut self, now: std::time::Instant, peer: Peer, ctx: &wire::ReplyContext) -> bool {
        if self.limits.knows(&ctx.call_id) || super::msg::header_param(&ctx.to, "tag").is_some() {
            return true;
        }
        match self.limits.check_invite(now, peer.addr.ip()) {
            Verdict::Admit => true,
            Verdict::Drop => false,
            Verdict::Refuse { limit, retry_after } => {
                // Stateless and uncached: a retransmission meets the limits again.
                let tag = super::msg::random_token(10);
                let data = super::msg::build_response(
                    ctx,
                    503,
                    &format!("Service Unavailable: over the limit on {}", limit.as_str()),
                    &super::msg::ResponseParts {
                        to_tag: Some(&tag),
                        source: Some(peer.addr),
                        headers: vec![("Retry-After", retry_after.to_string())],
                        ..Default::default()
                    },
                );
                self.transmit(peer, data);
                false
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

    fn transmit(&mut self, to: Peer, data: Vec<u8>) {
        super::stats::STATS.count_sent(&data);
        match to.link {
            Link::Udp => {
                if let Err(e) = self.udp.try_send_to(&data, to.addr) {
                    debug!(to = %to.addr, error = %e, "udp send failed");
                }
            }
            Link::Tcp(conn) => match self.tcp_writers.get(&conn) {
                Some(w) => {
                    if !w.send(data) {
                        // A peer that does not read its replies: close it rather than queue without end.
                        debug!(to = %to.addr, "TCP write queue full; closing the connection");
                        self.tcp_writers.remove(&conn);
                    }
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
                let connected = matches!(peer.link, Link::Tcp(_));
                self.limits
                    .dialog_started(now, &call, peer.addr.ip(), connected);
                if let Link::Tcp(conn) = peer.link {
                    if let Some(w) = self.tcp_writers.get(&conn) {
                        w.dialogs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.tcp_calls.insert(call.clone(), conn);
                    }
                }
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
                if !self.held.contains(&call) && !self.legs.contains_key(&call) {
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
                    // Pending until the handler's SipHandle::answer_reoffer.
                    Decision::Later => {}
                }
            }
            CoreEvent::ReAnswer { call, status, sdp } => {
                info!(%call, status, "re-INVITE answered");
                if let Some(tx) = self.reinvites.remove(&call) {
                    let _ = tx.send(ReAnswer { status, sdp });
                }
            }
            CoreEvent::Confirmed { call, answer } => {
                self.limits.dialog_confirmed(&call);
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
                self.reinvites.remove(&call);
                self.limits.dialog_ended(&call);
                if let Some(conn) = self.tcp_calls.remove(&call) {
                    if let Some(w) = self.tcp_writers.get(&conn) {
                        w.dialogs.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                if self.legs.contains_key(&call) {
                    info!(%call, "outbound leg ended");
                    self.leg_event(&call, LegEvent::Ended);
                } else if self.held.contains(&call) {
                    self.handler.dialog_ended(&call);
                }
            }
            CoreEvent::Info {
                call,
                content_type,
                body,
            } => {
                if self.held.contains(&call) || self.legs.contains_key(&call) {
                    self.handler.info(&call, &content_type, &body);
                }
            }
            CoreEvent::Leg { call, event } => {
                let event = match event {
                    LegUpdate::Progress { status, sdp } => LegEvent::Progress { status, sdp },
                    LegUpdate::Answered { sdp } => {
                        info!(%call, "outbound leg answered");
                        LegEvent::Answered { sdp }
                    }
                    LegUpdate::Failed { status } => {
                        info!(%call, status = ?status, "outbound leg failed");
                        LegEvent::Failed { status }
                    }
                };
                self.leg_event(&call, event);
            }
        }
    }

    /// Send the 200 OK: retransmitted until the ACK, or once for a source
    /// that has shown it does not ACK ([`Limits::answer_once`]).
    fn answer(&mut self, call: &str, sdp: &str) {
        let now = Instant::now().into_std();
        if self.limits.answer_once(now, call) {
            self.core.accept_once(now, call, sdp.as_bytes());
        } else {
            self.core.accept(now, call, sdp.as_bytes());
        }
    }

    fn on_new_dialog(&mut self, dialog: NewDialog) {
        let now = Instant::now().into_std();
        let call = dialog.call.clone();
        match self.handler.offered(dialog, &self.handle) {
            Decision::Reject { status, reason } => self.core.reject(now, &call, status, &reason),
            Decision::Later => self.core.reject(now, &call, 500, "Server Internal Error"),
            Decision::Answer { sdp } => {
                self.held.insert(call.clone());
                if self.cfg.ring_time.is_zero() {
                    self.answer(&call, &sdp);
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
