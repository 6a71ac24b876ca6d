//! Socket receive buffers (issue 16 item 5): the kernel's default (about
//! 200 KB) overflows within milliseconds under a datagram flood, and the
//! caller's packets are dropped with the attacker's. We ask for more and
//! say what the kernel granted (it caps SO_RCVBUF at net.core.rmem_max
//! unless we may force it).

use std::os::fd::AsRawFd;

use tracing::{info, warn};

fn set(fd: i32, opt: i32, bytes: usize) -> bool {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a descriptor we own, with a c_int option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// The receive buffer the kernel gives `sock` now (bytes; Linux reports
/// twice what was asked, its bookkeeping included).
pub fn recv_buffer(sock: &impl AsRawFd) -> usize {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a c_int we own, with its size.
    let ok = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        ) == 0
    };
    if ok {
        usize::try_from(v).unwrap_or(0)
    } else {
        0
    }
}

/// Ask for a receive buffer of `bytes` on `sock` (0: leave the default),
/// forcing past the system cap where we are allowed to. Returns what the
/// kernel granted, in the units asked (half of what Linux reports), and
/// whether it is less than asked.
pub fn try_enlarge(sock: &impl AsRawFd, bytes: usize) -> (usize, bool) {
    if bytes == 0 {
        return (recv_buffer(sock) / 2, false);
    }
    let fd = sock.as_raw_fd();
    if !set(fd, libc::SO_RCVBUFFORCE, bytes) {
        set(fd, libc::SO_RCVBUF, bytes);
    }
    let got = recv_buffer(sock) / 2;
    (got, got < bytes)
}

/// [`try_enlarge`] and say so in the log (`what` names the socket).
pub fn enlarge_recv_buffer(sock: &impl AsRawFd, bytes: usize, what: &str) {
    if bytes == 0 {
        return;
    }
    match try_enlarge(sock, bytes) {
        (got, true) => warn!(
            asked = bytes,
            granted = got,
            "{what} receive buffer capped by the kernel (raise net.core.rmem_max, or run with CAP_NET_ADMIN)"
        ),
        (got, false) => info!(granted = got, "{what} receive buffer set"),
    }
}
