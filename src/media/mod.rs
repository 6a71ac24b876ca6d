//! Media: pure cores (G.711, RTP pacing and receive, jitter buffer, DTMF,
//! prompts) and the per-call session task that glues them to a socket.

pub mod dtmf;
pub mod g711;
pub mod prompt;
pub mod resample;
pub mod rtp_rx;
pub mod rtp_tx;
pub mod session;
pub mod stats;
