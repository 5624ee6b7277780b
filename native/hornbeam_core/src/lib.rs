//! Byte logic of Hornbeam, free of any Erlang or Python symbol so that
//! `cargo test` links it on its own.
//!
//! * [`ws_frame`]  — RFC 6455 server-side frame decoder/encoder.
//! * [`permessage_deflate`] — RFC 7692 message compression (zlib via flate2).
//! * [`message`]   — Phoenix V2 `[join_ref, ref, topic, event, payload]` codec.
//! * [`json`]      — depth-limited JSON parsing shared by the NIF's term conversion.
//! * [`router`]    — compiled topic patterns (`room:*`, `chat:{id}`).
//! * [`etf`]       — Erlang external term format, for the Python worker port.
//! * [`presence`]  — the presence CRDT (delta-state, Phoenix.Tracker-style).

pub mod etf;
pub mod json;
pub mod message;
pub mod permessage_deflate;
pub mod presence;
pub mod router;
pub mod ws_frame;
