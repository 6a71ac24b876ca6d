//! SIP signalling: bytes → parsed messages (`wire`), transactions and
//! dialogs (`core`, sans-IO), SDP offer/answer (`sdp`), and the socket edge
//! (`endpoint`). rsipstack's message model is used only inside this module.

pub mod core;
pub mod endpoint;
pub mod msg;
pub mod rtp_ports;
pub mod sdp;
pub mod wire;
