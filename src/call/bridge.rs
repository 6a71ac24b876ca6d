//! The agent leg of a bridged transfer (B2BUA): voxgate calls the agent
//! itself, with its own RTP port and media session, and the two sessions
//! relay audio and digits to each other (`media::bridge`).
//!
//! [`Dialer`] is what a call needs to place that leg: the SIP handle, the
//! RTP port pool and the media runtime it shares with inbound calls. The
//! agent's re-INVITEs (hold) and INFO digits reach the leg through
//! [`AgentLegs`], which `CallSetup` consults for Call-IDs it did not answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

use super::hold::{HoldOffers, LegSdp};
use super::rtp_ports::RtpPorts;
use super::setup::{encoding, media_params};
use crate::media::g711::Codec;
use crate::media::prompt::PromptCache;
use crate::media::session::{MediaCommand, MediaEvent, MediaSession, MediaStats, SessionConfig};
use crate::sip::handler::{Dial, LegEvent, SipHandle};
use crate::sip::sdp::{self, LocalMedia};

/// Telephone-event payload type we offer agents.
const AGENT_DTMF_PT: u8 = 101;

/// The next event of a leg's media; pending forever without media.
pub(super) async fn media_event(
    rx: Option<&mut mpsc::UnboundedReceiver<MediaEvent>>,
) -> Option<MediaEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The media of agent legs by their Call-ID, for the agent's in-dialog
/// requests (re-INVITE, INFO) that arrive through the dialog handler.
#[derive(Clone, Default)]
pub struct AgentLegs(Arc<Mutex<HashMap<String, LegMedia>>>);

/// What an agent's in-dialog request needs of its leg.
#[derive(Clone)]
pub(super) struct LegMedia {
    pub(super) media: mpsc::UnboundedSender<MediaCommand>,
    pub(super) local: LocalMedia,
    pub(super) peer_ip: IpAddr,
}

impl AgentLegs {
    pub(super) fn get(&self, call: &str) -> Option<LegMedia> {
        self.0.lock().ok()?.get(call).cloned()
    }

    fn insert(&self, call: &str, leg: LegMedia) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(call.to_string(), leg);
        }
    }

    pub(super) fn bump_version(&self, call: &str) -> Option<LegMedia> {
        let mut m = self.0.lock().ok()?;
        let leg = m.get_mut(call)?;
        leg.local.session_version += 1;
        Some(leg.clone())
    }

    /// What the bridge needs to offer or answer on the agent leg `call`
    /// (the next session version taken).
    pub(super) fn leg_sdp(&self, call: &str) -> Option<LegSdp> {
        let leg = self.bump_version(call)?;
        Some(LegSdp {
            call: call.to_string(),
            media: leg.media,
            local: leg.local,
            peer_ip: leg.peer_ip,
            dtmf_pt: AGENT_DTMF_PT,
        })
    }

    fn remove(&self, call: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(call);
        }
    }
}

/// What a call needs to place an agent leg.
#[derive(Clone)]
pub struct Dialer {
    pub(super) sip: SipHandle,
    pub(super) ports: Arc<RtpPorts>,
    /// Where SIP listens (RTP binds there unless we advertise per peer).
    pub(super) listen_ip: IpAddr,
    pub(super) advertised_ip: Option<IpAddr>,
    pub(super) session: SessionConfig,
    pub(super) prompts: Arc<PromptCache>,
    pub(super) media_rt: tokio::runtime::Handle,
    pub(super) legs: AgentLegs,
    /// `transfer.outbound_proxy`: every agent INVITE goes there.
    pub(super) proxy: Option<SocketAddr>,
    /// Where bridged legs' re-INVITEs go (hold passed through).
    pub(super) holds: HoldOffers,
}

/// Why an agent leg could not be placed at all (nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The target names no address and no outbound proxy is configured.
    #[error("{0}: no IP address and port in the target and no transfer.outbound_proxy")]
    NoRoute(String),
    /// Every RTP port is in use.
    #[error("no free RTP port for the agent leg")]
    NoPort,
    /// The SIP layer refused the dial (a header, the target).
    #[error("{0}")]
    Refused(String),
}

/// A placed agent leg, until it ends.
pub(super) struct AgentLeg {
    /// The leg's SIP Call-ID.
    pub(super) call: String,
    /// What happens to it.
    pub(super) events: mpsc::UnboundedReceiver<LegEvent>,
    port: u16,
    local: LocalMedia,
    next_hop: SocketAddr,
    /// The socket until the media session takes it.
    sock: Option<std::net::UdpSocket>,
    media: Option<LegSession>,
    legs: AgentLegs,
    ports: Arc<RtpPorts>,
    sip: SipHandle,
    /// [`AgentLeg::finish`] ran; otherwise dropping the leg (the call's
    /// task cut short, e.g. by max_call_duration) hangs the agent up.
    finished: bool,
}

struct LegSession {
    commands: mpsc::UnboundedSender<MediaCommand>,
    events: mpsc::UnboundedReceiver<MediaEvent>,
    task: tokio::task::JoinHandle<MediaStats>,
}

impl Dialer {
    /// Place a call to `target` with `headers`, offering `first` as the
    /// preferred codec (the caller's, so no transcoding when the agent
    /// takes it) then the other G.711 law, and telephone-event.
    pub(super) fn place(
        &self,
        target: &str,
        from_user: &str,
        headers: &[(String, String)],
        first: Codec,
    ) -> Result<AgentLeg, PlaceError> {
        let next_hop = self
            .proxy
            .or_else(|| crate::config::transfer::target_addr(target))
            .ok_or_else(|| PlaceError::NoRoute(target.to_string()))?;
        let media_ip = self.sip.local_ip_for(next_hop);
        let bind_ip = match self.advertised_ip {
            Some(ip) => ip,
            None if self.listen_ip.is_unspecified() => match media_ip {
                IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            },
            None => self.listen_ip,
        };
        let (sock, port) = self.ports.allocate(bind_ip).ok_or(PlaceError::NoPort)?;
        let other = match first {
            Codec::Pcmu => Codec::Pcma,
            Codec::Pcma => Codec::Pcmu,
        };
        let local = LocalMedia {
            ip: media_ip,
            port,
            codecs: vec![encoding(first), encoding(other)],
            session_id: rand::random::<u32>() as u64,
            session_version: 1,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let dial = Dial {
            target: target.to_string(),
            next_hop,
            from_user: from_user.to_string(),
            headers: headers.to_vec(),
            sdp: sdp::offer(&local, AGENT_DTMF_PT),
        };
        let call = match self.sip.dial(dial, tx) {
            Ok(c) => c,
            Err(e) => {
                self.ports.release(port);
                return Err(PlaceError::Refused(e.to_string()));
            }
        };
        Ok(AgentLeg {
            call,
            events: rx,
            port,
            local,
            next_hop,
            sock: Some(sock),
            media: None,
            legs: self.legs.clone(),
            ports: self.ports.clone(),
            sip: self.sip.clone(),
            finished: false,
        })
    }

    /// Start (or, for an early-media session, update) the leg's media from
    /// the agent's SDP answer; Err when it is unusable.
    pub(super) fn start_media(&self, leg: &mut AgentLeg, answer: &[u8]) -> Result<(), String> {
        let neg = sdp::answer(answer, &leg.local).map_err(|e| e.to_string())?;
        let params = media_params(&neg, leg.next_hop.ip())
            .ok_or_else(|| "the agent's answer names no codec we offered".to_string())?;
        // Later offers to the agent (hold passed through) keep its codec first.
        let mut local = leg.local.clone();
        local.codecs.sort_by_key(|c| *c != neg.codec);
        if let Some(m) = &leg.media {
            let _ = m.commands.send(MediaCommand::Update(params));
            self.legs.insert(
                &leg.call,
                LegMedia {
                    media: m.commands.clone(),
                    local,
                    peer_ip: leg.next_hop.ip(),
                },
            );
            return Ok(());
        }
        let sock = leg
            .sock
            .take()
            .ok_or_else(|| "the leg's socket is gone".to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let session = MediaSession::new(
            sock,
            params,
            self.session.clone(),
            self.prompts.clone(),
            ev_tx,
            cmd_rx,
        );
        let span = tracing::info_span!("agent_leg", leg = %leg.call);
        let task = self.media_rt.spawn(session.run().instrument(span));
        // The agent answered (or sent early media): RTP may go to it now.
        let _ = cmd_tx.send(MediaCommand::Confirmed);
        self.legs.insert(
            &leg.call,
            LegMedia {
                media: cmd_tx.clone(),
                local,
                peer_ip: leg.next_hop.ip(),
            },
        );
        info!(leg = %leg.call, codec = neg.codec.name, "agent leg media started");
        leg.media = Some(LegSession {
            commands: cmd_tx,
            events: ev_rx,
            task,
        });
        Ok(())
    }
}

impl AgentLeg {
    /// Send a command to the leg's media, if it has started.
    pub(super) fn command(&self, c: MediaCommand) {
        if let Some(m) = &self.media {
            let _ = m.commands.send(c);
        }
    }

    /// The leg's SIP events and its media's events (None before media),
    /// to wait on both at once.
    pub(super) fn receivers(
        &mut self,
    ) -> (
        &mut mpsc::UnboundedReceiver<LegEvent>,
        Option<&mut mpsc::UnboundedReceiver<MediaEvent>>,
    ) {
        (&mut self.events, self.media.as_mut().map(|m| &mut m.events))
    }

    /// Stop the leg's media, free its port and forget it.
    pub(super) async fn finish(mut self) {
        self.finished = true;
        self.legs.remove(&self.call);
        if let Some(m) = self.media.take() {
            let _ = m.commands.send(MediaCommand::Shutdown);
            match m.task.await {
                Ok(stats) => info!(
                    leg = %self.call,
                    sent = stats.packets_sent,
                    received = stats.packets_received,
                    lost = stats.frames_lost,
                    relayed_out = stats.relay_frames_out,
                    relayed_in = stats.relay_frames_in,
                    digits_relayed_out = stats.relay_digits_out,
                    digits_relayed_in = stats.relay_digits_in,
                    "agent leg ended"
                ),
                Err(e) => warn!(leg = %self.call, error = %e, "agent leg media task failed"),
            }
        }
        self.ports.release(self.port);
    }
}

impl Drop for AgentLeg {
    /// A leg dropped unfinished (its call's task was cut short): the agent
    /// is hung up (CANCEL or BYE; harmless when already over), its media
    /// stopped and its port returned, so no agent is left on a dead call.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        warn!(leg = %self.call, "agent leg dropped before it ended; hanging it up");
        self.sip.hangup(self.call.clone());
        if let Some(m) = self.media.take() {
            let _ = m.commands.send(MediaCommand::Shutdown);
        }
        self.legs.remove(&self.call);
        self.ports.release(self.port);
    }
}
