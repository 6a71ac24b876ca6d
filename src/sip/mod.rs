//! SIP signalling: bytes → parsed messages (`wire`), transactions and
//! dialogs (`core`, sans-IO), SDP offer/answer (`sdp`), the application's
//! side of each dialog (`handler`) and the socket edge (`endpoint`).
//! rsipstack's message model is used only inside this module. Signalling
//! only: nothing here knows about media, calls or flows (`call::setup`
//! implements [`handler::DialogHandler`] and builds the calls).

mod bucket;
pub mod core;
pub mod datagram_rate;
pub mod endpoint;
pub mod handler;
pub mod limits;
pub mod log_limit;
pub mod msg;
pub mod sdp;
pub mod sockbuf;
pub mod start_line;
pub mod stats;
mod tcp;
pub mod wire;
