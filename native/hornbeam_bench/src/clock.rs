//! One monotonic clock for the whole process: publishers stamp payloads with
//! it and receivers (in the same process) subtract.

use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Starts the clock (idempotent); call once early in `main`.
pub fn init() {
    let _ = BASE.get_or_init(Instant::now);
}

/// Microseconds since [`init`].
pub fn now_us() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}
