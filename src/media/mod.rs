//! Media: pure cores (G.711, RTP pacing and receive, jitter buffer, DTMF,
//! prompts), the sans-IO [`core::MediaCore`] of one call leg that joins them,
//! the per-call session task that glues it to a socket, and the relay that
//! joins two legs into a bridge ([`bridge`]).

pub mod bridge;
pub mod core;
pub mod dtmf;
pub mod g711;
pub mod interarrival;
pub mod prompt;
pub mod resample;
pub mod rtp_rx;
pub mod rtp_tx;
#[cfg(target_os = "linux")]
pub mod rx_time;
pub mod session;
pub mod source;
pub mod stats;
