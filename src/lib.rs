//! voxgate: an IVR voice-flow engine for phone authentication.
//!
//! The path of a call: `sip` (wire → core → endpoint) → `call` (the
//! `CallChannel` a flow talks to) → `flow` (model, validation, engine,
//! steps) → `media` (RTP, G.711, DTMF, prompts). `events` is the one event
//! vocabulary every consumer shares.

pub mod app;
pub mod asr;
pub mod call;
pub mod config;
pub mod events;
pub mod flow;
pub mod linewriter;
pub mod media;
pub mod sip;
