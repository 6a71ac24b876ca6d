//! voxgate: an IVR voice-flow engine for phone authentication — a SIP UAS
//! with its own RTP media, call flows written in YAML, and on-device speech
//! recognition (Whisper).
//!
//! The modules, top to bottom (`docs/architecture.md` draws them;
//! `tests/layers.rs` fails when a module imports one above it):
//! - `app`: the CLI subcommands (`serve`, `validate`, `test`).
//! - `call`: the `CallChannel` a flow talks to, and the live SIP call behind
//!   it (dialog, media session, speech).
//! - `flow`: the YAML model, checks run before a caller hears a flow
//!   (`validate`), the interpreter and its steps, and `voxgate test`; it sees
//!   a call only through `call::CallChannel`.
//! - `backends`: what steps call (caller directory, codes, TOTP, passphrase,
//!   webhooks): the traits, the "unavailable" stand-ins and the real ones.
//! - `store`: the embedded SQLite database (accounts), secrets sealed at rest.
//! - `sip`: signalling only: wire → core (transactions, dialogs) → endpoint.
//! - `media` (RTP, G.711, DTMF, prompts) and `asr` (voice activity, Whisper):
//!   below `call`, never importing it.
//! - `events` (the one event vocabulary every consumer shares, free of
//!   secrets), `config`, `duration` (the one duration parser) and
//!   `linewriter`: the bottom.
//! - `telemetry`: call records and Prometheus metrics, folded from each
//!   call's events (over the store; `web` serves the metrics).

pub mod app;
pub mod asr;
pub mod backends;
pub mod call;
pub mod config;
pub mod duration;
pub mod events;
pub mod flow;
pub mod linewriter;
pub mod media;
pub mod phone;
pub mod sip;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod yaml;
