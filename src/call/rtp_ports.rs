//! RTP port allocation from the configured range: a free list, so taking
//! and giving back a port costs the same with 5 calls or 5,000 (a scan of
//! the range was most of the SIP thread's time in an INVITE flood).

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::config::PortRange;

struct State {
    /// Even ports not in use, the longest free first (a port just released
    /// is reused last, so a late packet of its old call finds no one).
    free: VecDeque<u16>,
    in_use: HashSet<u16>,
}

/// Hands out even ports (RTP convention; odd = RTCP) and takes them back.
pub struct RtpPorts {
    state: Mutex<State>,
    /// SO_RCVBUF asked for on each socket (0: the kernel's default).
    recv_buffer: usize,
}

impl RtpPorts {
    /// Ports `range.first..=range.last` (inclusive); an odd `first` starts
    /// at the next even port. Nothing is bound until [`Self::allocate`].
    pub fn new(range: PortRange) -> Self {
        let first_even = range.first + (range.first % 2);
        let free = (first_even..=range.last).step_by(2).collect();
        Self {
            state: Mutex::new(State {
                free,
                in_use: HashSet::new(),
            }),
            recv_buffer: 0,
        }
    }

    /// Ask for a receive buffer of `bytes` on every socket (a garbage flood
    /// at a call's port must not push the caller's packets out).
    pub fn with_recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// Bind the next free even port on `ip`; None when the range is
    /// exhausted (or every free port is taken by someone else).
    pub fn allocate(&self, ip: IpAddr) -> Option<(UdpSocket, u16)> {
        let mut st = self.state.lock().ok()?;
        // A port another process holds goes to the back; each is tried once.
        for _ in 0..st.free.len() {
            let port = st.free.pop_front()?;
            match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(sock) => {
                    st.in_use.insert(port);
                    drop(st);
                    self.size_buffer(&sock);
                    return Some((sock, port));
                }
                Err(_) => st.free.push_back(port),
            }
        }
        None
    }

    fn size_buffer(&self, sock: &UdpSocket) {
        if self.recv_buffer == 0 {
            return;
        }
        // Said once per process, not per call.
        static REPORTED: AtomicBool = AtomicBool::new(false);
        let (granted, capped) = crate::sip::sockbuf::try_enlarge(sock, self.recv_buffer);
        if !REPORTED.swap(true, Ordering::Relaxed) {
            if capped {
                tracing::warn!(
                    asked = self.recv_buffer,
                    granted,
                    "RTP receive buffers capped by the kernel (raise net.core.rmem_max, or run with CAP_NET_ADMIN)"
                );
            } else {
                tracing::info!(granted, "RTP receive buffers set");
            }
        }
    }

    /// Give `port` back once its socket is dropped; unknown ports are ignored.
    pub fn release(&self, port: u16) {
        if let Ok(mut st) = self.state.lock() {
            if st.in_use.remove(&port) {
                st.free.push_back(port);
            }
        }
    }

    /// Ports allocated and not yet released (what tests check for leaks).
    pub fn in_use(&self) -> usize {
        self.state.lock().map(|s| s.in_use.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_reused_after_release() {
        let ports = RtpPorts::new(PortRange {
            first: 31001,
            last: 31006,
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (a, pa) = ports.allocate(ip).unwrap();
        let (b, pb) = ports.allocate(ip).unwrap();
        let (c, pc) = ports.allocate(ip).unwrap();
        assert_eq!((pa, pb, pc), (31002, 31004, 31006));
        assert!(ports.allocate(ip).is_none(), "range holds three even ports");
        drop(b);
        ports.release(pb);
        ports.release(pb); // twice: still one free port
        let (_d, pd) = ports.allocate(ip).unwrap();
        assert_eq!(pd, 31004);
        assert!(ports.allocate(ip).is_none());
        assert_eq!(ports.in_use(), 3);
        drop((a, c));
    }

    #[test]
    fn a_port_held_elsewhere_is_skipped_and_kept() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other = UdpSocket::bind((ip, 31102)).unwrap();
        let ports = RtpPorts::new(PortRange {
            first: 31102,
            last: 31105,
        })
        .with_recv_buffer(64 * 1024);
        let (_s, p) = ports.allocate(ip).unwrap();
        assert_eq!(p, 31104);
        assert!(ports.allocate(ip).is_none());
        drop(other);
        assert_eq!(ports.allocate(ip).map(|x| x.1), Some(31102));
    }
}
