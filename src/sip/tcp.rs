//! SIP over TCP: the acceptor, one reader task and one writer task per
//! connection, and their limits (issue 16 item 5).
//!
//! * Connections per source and in all are capped; over a cap the new
//!   connection is closed at once.
//! * Running out of descriptors (EMFILE/ENFILE) makes accept back off
//!   (10 ms doubling to 1 s) instead of spinning.
//! * A message must be complete `message_timeout` after its first byte: a
//!   fixed deadline, so a sender of one byte every few seconds is closed.
//! * A connection that is silent for `idle_timeout` is closed unless a
//!   dialog still uses it (the endpoint counts them: our BYE must go back
//!   on it, and a call can be silent for minutes).
//! * The header section, its line count and the body are capped by the
//!   framer ([`StreamFramer::with_limits`]).
//! * What we queue for a peer that does not read is capped in bytes
//!   ([`TcpWriter::send`] refuses, and the endpoint closes the connection).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::wire::{FrameLimits, FramingError, StreamFramer};
use crate::config::TcpLimits;

/// What the TCP tasks tell the endpoint's loop.
#[derive(Debug)]
pub(super) enum TcpEvent {
    /// A connection was accepted: how to write to it.
    Open {
        /// The connection number (`Link::Tcp`).
        conn: u64,
        /// Its writer.
        writer: TcpWriter,
    },
    /// A complete message.
    Message {
        /// The connection number.
        conn: u64,
        /// The peer.
        from: SocketAddr,
        /// The message bytes.
        data: Vec<u8>,
    },
    /// The stream broke the framing rules; the connection is being closed.
    Bad {
        /// The connection number.
        conn: u64,
        /// The peer.
        from: SocketAddr,
        /// What was wrong.
        error: FramingError,
    },
    /// The connection is gone.
    Closed {
        /// The connection number.
        conn: u64,
    },
    /// New connections refused over a cap, or accept failures, since the last report.
    Refused {
        /// The source refused most recently.
        from: Option<SocketAddr>,
        /// Which cap or error.
        why: &'static str,
    },
}

/// The writing half of a connection as the endpoint holds it: a queue
/// bounded in bytes, and the count of dialogs that still need it.
#[derive(Clone, Debug)]
pub(super) struct TcpWriter {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    cap: usize,
    /// Dialogs on this connection (the reader does not close it for idleness while > 0).
    pub(super) dialogs: Arc<AtomicUsize>,
}

impl TcpWriter {
    /// Queue `data`; false (nothing queued) when the peer has not taken
    /// `write_queue_bytes` of earlier writes, or the connection is gone.
    pub(super) fn send(&self, data: Vec<u8>) -> bool {
        let len = data.len();
        if self.queued.load(Ordering::Relaxed) + len > self.cap {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.tx.send(data).is_ok()
    }
}

/// Open connections per source address and in all.
#[derive(Default)]
struct ConnCount {
    per_source: HashMap<IpAddr, u32>,
    total: u32,
}

/// Gives a connection's slot back when its reader ends.
struct Slot {
    counts: Arc<Mutex<ConnCount>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_source.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_source.remove(&self.ip);
                }
            }
        }
    }
}

fn frame_limits(l: &TcpLimits) -> FrameLimits {
    FrameLimits {
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_body_bytes: l.max_body_bytes,
    }
}

/// Whether an accept error means "out of descriptors or memory": wait before the next try.
fn is_resource_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accept connections until the loop's receiver is gone.
pub(super) fn spawn_acceptor(
    listener: TcpListener,
    limits: TcpLimits,
    tx: mpsc::UnboundedSender<TcpEvent>,
) {
    tokio::spawn(async move {
        let counts = Arc::new(Mutex::new(ConnCount::default()));
        let mut next_id: u64 = 1;
        let mut backoff = Duration::ZERO;
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(a) => {
                    backoff = Duration::ZERO;
                    a
                }
                Err(e) => {
                    // Without a pause, EMFILE makes accept fail at once, forever:
                    // a busy loop that starves everything else.
                    let resource = is_resource_error(&e);
                    backoff = if resource {
                        (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
                    } else {
                        Duration::from_millis(1)
                    };
                    let why = if resource {
                        "accept failed: out of descriptors or memory"
                    } else {
                        "accept failed"
                    };
                    debug!(error = %e, ?backoff, "TCP accept failed");
                    if tx.send(TcpEvent::Refused { from: None, why }).is_err() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let ip = from.ip().to_canonical();
            let over = match counts.lock() {
                Ok(mut c) => {
                    let mine = c.per_source.get(&ip).copied().unwrap_or(0);
                    if c.total >= limits.max_connections {
                        Some("TCP connections in all (limits.tcp.max_connections)")
                    } else if mine >= limits.connections_per_source {
                        Some("TCP connections per source (limits.tcp.connections_per_source)")
                    } else {
                        c.total += 1;
                        c.per_source.insert(ip, mine + 1);
                        None
                    }
                }
                Err(_) => Some("TCP connection table unavailable"),
            };
            if let Some(why) = over {
                drop(stream); // closed at once: no descriptor held for it
                if tx
                    .send(TcpEvent::Refused {
                        from: Some(from),
                        why,
                    })
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let slot = Slot {
                counts: counts.clone(),
                ip,
            };
            let conn = next_id;
            next_id += 1;
            let (mut rd, mut wr) = stream.into_split();
            let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
            let queued = Arc::new(AtomicUsize::new(0));
            let dialogs = Arc::new(AtomicUsize::new(0));
            let writer = TcpWriter {
                tx: wtx,
                queued: queued.clone(),
                cap: limits.write_queue_bytes,
                dialogs: dialogs.clone(),
            };
            if tx.send(TcpEvent::Open { conn, writer }).is_err() {
                return;
            }
            tokio::spawn(async move {
                while let Some(data) = wrx.recv().await {
                    let len = data.len();
                    let ok = wr.write_all(&data).await.is_ok();
                    queued.fetch_sub(len, Ordering::Relaxed);
                    if !ok {
                        break;
                    }
                }
            });
            let tx = tx.clone();
            tokio::spawn(async move {
                read_loop(conn, from, &mut rd, limits, &dialogs, &tx).await;
                drop(slot);
                let _ = tx.send(TcpEvent::Closed { conn });
            });
        }
    });
}

/// Read and frame one connection's messages until it closes, breaks the
/// rules or times out.
async fn read_loop(
    conn: u64,
    from: SocketAddr,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    limits: TcpLimits,
    dialogs: &AtomicUsize,
    tx: &mpsc::UnboundedSender<TcpEvent>,
) {
    let mut framer = StreamFramer::with_limits(frame_limits(&limits));
    let mut buf = vec![0u8; 16 * 1024];
    // When the message being received must be complete (fixed from its first byte).
    let mut message_deadline: Option<Instant> = None;
    loop {
        let deadline = match message_deadline {
            Some(d) => d,
            None => Instant::now() + limits.idle_timeout,
        };
        let n = match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) if message_deadline.is_some() => {
                debug!(%from, "closing TCP connection: message not complete in time");
                return;
            }
            Err(_) if dialogs.load(Ordering::Relaxed) > 0 => continue,
            Err(_) => {
                debug!(%from, "closing idle TCP connection");
                return;
            }
        };
        framer.push(&buf[..n]);
        let mut got_message = false;
        while let Some(m) = framer.next_message() {
            match m {
                Ok(data) => {
                    got_message = true;
                    if tx.send(TcpEvent::Message { conn, from, data }).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = tx.send(TcpEvent::Bad { conn, from, error });
                    return;
                }
            }
        }
        // Keep-alive CRLFs are consumed by the framer: only a real partial message counts.
        message_deadline = match (framer.buffered() > 0, message_deadline) {
            (false, _) => None,
            (true, Some(d)) if !got_message => Some(d),
            (true, _) => Some(Instant::now() + limits.message_timeout),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_queue_is_bounded_in_bytes() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let w = TcpWriter {
            tx,
            queued: queued.clone(),
            cap: 1000,
            dialogs: Arc::new(AtomicUsize::new(0)),
        };
        let sent = (0..20).take_while(|_| w.send(vec![0; 300])).count();
        assert_eq!(sent, 3, "300-byte messages under a 1000-byte cap");
        // The writer task takes one out: room for one more.
        let taken = rx.try_recv().map(|d| d.len()).unwrap_or(0);
        queued.fetch_sub(taken, Ordering::Relaxed);
        assert!(w.send(vec![0; 300]));
        assert!(!w.send(vec![0; 300]));
        drop(rx);
        queued.store(0, Ordering::Relaxed);
        assert!(!w.send(vec![1]), "a closed connection takes nothing");
    }
}
