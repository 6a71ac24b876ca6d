//! The cost of reading one RTP datagram, with and without the kernel's
//! receive stamp (bench/README.md, "RTP receive bench"):
//! `cargo bench --bench rtp_recv`.
//!
//! A media session reads each packet with `recvmsg` and `SO_TIMESTAMPNS`
//! (`media::rx_time`, for the jitter metric) where it used `recv_from`
//! before. Both ways are timed here on loopback: BATCH (default 64)
//! 172-byte datagrams are queued, then drained and timed, ROUNDS times
//! (default 5,000), alternating the two ways so a busy machine hurts both
//! alike. Prints ns per datagram read for each.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use voxgate::media::rx_time;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Queue `batch` datagrams on `rx`, then time reading them all with `read`.
fn round(
    tx: &UdpSocket,
    rx: &UdpSocket,
    batch: usize,
    read: &mut dyn FnMut(&UdpSocket, &mut [u8]) -> std::io::Result<usize>,
) -> Duration {
    let pkt = [0x80u8; 172];
    for _ in 0..batch {
        tx.send(&pkt).expect("send on loopback");
    }
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut got = 0;
    while got < batch {
        match read(rx, &mut buf) {
            Ok(n) => {
                assert_eq!(n, pkt.len());
                got += 1;
            }
            // Loopback queues synchronously; this only spins on a hiccup.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    start.elapsed()
}

fn pair(stamped: bool) -> (UdpSocket, UdpSocket) {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_nonblocking(true).expect("non-blocking");
    if stamped {
        assert!(rx_time::enable(rx.as_raw_fd()), "SO_TIMESTAMPNS refused");
    }
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    tx.connect(rx.local_addr().expect("addr")).expect("connect");
    (tx, rx)
}

fn main() {
    let batch = env("BATCH", 64);
    let rounds = env("ROUNDS", 5_000);
    let (plain_tx, plain_rx) = pair(false);
    let (stamp_tx, stamp_rx) = pair(true);
    let mut plain = |s: &UdpSocket, b: &mut [u8]| s.recv_from(b).map(|(n, _)| n);
    let mut stamps = 0usize;
    let mut stamped = |s: &UdpSocket, b: &mut [u8]| {
        rx_time::recv_from(s.as_raw_fd(), b).map(|(n, _, t)| {
            stamps += usize::from(t.is_some());
            n
        })
    };
    let (mut t_plain, mut t_stamped) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        t_plain.push(round(&plain_tx, &plain_rx, batch, &mut plain));
        t_stamped.push(round(&stamp_tx, &stamp_rx, batch, &mut stamped));
    }
    let per = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i].as_nanos() as f64 / batch as f64
    };
    println!("rtp_recv: {rounds} rounds of {batch} datagrams of 172 bytes on loopback");
    for (name, v) in [
        ("recv_from (no stamp)", &mut t_plain),
        ("recvmsg + SO_TIMESTAMPNS", &mut t_stamped),
    ] {
        let mean = v.iter().sum::<Duration>().as_nanos() as f64 / (v.len() * batch) as f64;
        println!(
            "{name:26} ns per datagram: mean {mean:.0}, p50 {:.0}, p90 {:.0}",
            per(v, 0.5),
            per(v, 0.9)
        );
    }
    println!(
        "stamped reads carrying a stamp: {stamps} of {}",
        rounds * batch
    );
}
