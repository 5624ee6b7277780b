//! WebSocket frame decoder: arbitrary bytes in arbitrary chunks.
//! The body lives in `hornbeam_core::ws_frame::fuzz_decode`, which the property
//! tests also call. Run from `native/hornbeam_core`:
//! `cargo fuzz run frame_decoder` (nightly, or `RUSTC_BOOTSTRAP=1` on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hornbeam_core::ws_frame::fuzz_decode(data);
});
