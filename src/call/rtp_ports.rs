//! RTP port allocation from the configured range.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;

use crate::config::PortRange;

/// Hands out even ports (RTP convention; odd = RTCP) and takes them back.
pub struct RtpPorts {
    range: PortRange,
    state: Mutex<(BTreeSet<u16>, u16)>,
}

impl RtpPorts {
    /// Ports `range.first..=range.last` (inclusive); an odd `first` starts
    /// at the next even port. Nothing is bound until [`Self::allocate`].
    pub fn new(range: PortRange) -> Self {
        let first_even = range.first + (range.first % 2);
        Self {
            range,
            state: Mutex::new((BTreeSet::new(), first_even)),
        }
    }

    /// Bind the next free even port on `ip`; None when the range is exhausted.
    pub fn allocate(&self, ip: IpAddr) -> Option<(UdpSocket, u16)> {
        let mut st = self.state.lock().ok()?;
        let first_even = self.range.first + (self.range.first % 2);
        let count = (self.range.last.saturating_sub(first_even)) / 2 + 1;
        for _ in 0..count {
            let port = st.1;
            st.1 = if port.saturating_add(2) > self.range.last {
                first_even
            } else {
                port + 2
            };
            if st.0.contains(&port) {
                continue;
            }
            if let Ok(sock) = UdpSocket::bind(SocketAddr::new(ip, port)) {
                st.0.insert(port);
                return Some((sock, port));
            }
        }
        None
    }

    /// Give `port` back once its socket is dropped; unknown ports are ignored.
    pub fn release(&self, port: u16) {
        if let Ok(mut st) = self.state.lock() {
            st.0.remove(&port);
        }
    }

    /// Ports allocated and not yet released (what tests check for leaks).
    pub fn in_use(&self) -> usize {
        self.state.lock().map(|s| s.0.len()).unwrap_or(0)
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
        let (_d, pd) = ports.allocate(ip).unwrap();
        assert_eq!(pd, 31004);
        drop((a, c));
    }
}
