//! Load generator for Hornbeam and its peer servers.
//!
//! One binary, `hornbeam_bench`, runs one scenario against one server and
//! prints one JSON object on stdout. It speaks three wire protocols
//! ([`proto::Proto`]): Phoenix V2 (Hornbeam), Socket.IO v4 over a WebSocket
//! (python-socketio, socket.io on Node) and a plain JSON protocol (Python
//! `websockets`, Django Channels, the raw tokio fan-out server). Every server
//! runs the same application logic; see `bench/README.md`.
//!
//! The scenarios live in [`scenarios`]; connection set-up in [`conn`];
//! percentiles in [`stats`]; `/proc` readings (server RSS and CPU) in
//! [`procfs`].

pub mod args;
pub mod clock;
pub mod conn;
pub mod procfs;
pub mod proto;
pub mod scenarios;
pub mod stats;
