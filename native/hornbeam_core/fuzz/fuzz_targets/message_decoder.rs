#![no_main]
//! Fuzz the channel message decoder: never panics, agrees with a full
//! serde_json parse, and every decoded message re-encodes and decodes to the
//! same parts. Run: `cargo fuzz run message_decoder` (nightly) from
//! `native/hornbeam_core`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hornbeam_core::message::fuzz_decode(data));
