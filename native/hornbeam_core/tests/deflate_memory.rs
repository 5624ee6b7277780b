//! Memory a permessage-deflate connection holds, measured: flate2 allocates
//! zlib's state through Rust's allocator, so a counting global allocator in
//! this test binary sees every byte. Run with `--nocapture` for the table
//! (README "Compression" quotes it).
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use hornbeam_core::permessage_deflate::{Deflater, Inflater};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn held() -> isize {
    HELD.load(Ordering::SeqCst)
}

const MSG: &[u8] =
    br#"[null,null,"room:lobby","new_msg",{"username":"alice","body":"the build is green again"}]"#;

/// Bytes a deflater / inflater keeps between messages, by window bits.
fn kept(bits: u8) -> (isize, isize) {
    let base = held();
    let mut d = Deflater::new(bits, 1, false, 0);
    let mut wire = Vec::new();
    d.compress(MSG, &mut wire);
    let deflate = held() - base;
    let mid = held();
    let mut i = Inflater::new(bits, false);
    let out = i.inflate(&wire, 1 << 20);
    assert_eq!(out.as_deref(), Ok(MSG));
    drop(out);
    let inflate = held() - mid;
    drop((d, i, wire));
    (deflate - 64, inflate) // less the wire buffer's capacity (64 bytes reserved)
}

#[test]
fn context_memory_is_bounded_and_released() {
    println!("| window bits | deflate context | inflate context |");
    println!("|---|---|---|");
    for bits in [9u8, 10, 12, 15] {
        let (d, i) = kept(bits);
        println!(
            "| {bits} | {:.1} KiB | {:.1} KiB |",
            d as f64 / 1024.0,
            i as f64 / 1024.0
        );
        // zlib's own formula: deflate (1 << (bits + 2)) + 128 KiB at memLevel 8
        // (flate2's fixed choice), inflate ~7 KiB + the window.
        assert!(
            d <= (1 << (bits + 2)) + 140 * 1024,
            "deflate {d} bytes at {bits} bits"
        );
        assert!(
            i <= (1 << bits) + 10 * 1024,
            "inflate {i} bytes at {bits} bits"
        );
    }
    // Without context takeover nothing is kept after a message; release()
    // drops a takeover context.
    let base = held();
    let mut d = Deflater::new(15, 1, true, 0);
    let mut i = Inflater::new(15, true);
    let mut wire = Vec::new();
    d.compress(MSG, &mut wire);
    assert!(i.inflate(&wire, 1 << 20).is_ok());
    drop(wire);
    assert_eq!(held() - base, 0, "no_context_takeover keeps nothing");
    let mut t = Deflater::new(15, 1, false, 0);
    let mut wire = Vec::new();
    t.compress(MSG, &mut wire);
    drop(wire);
    assert!(held() - base > 200 * 1024);
    t.release();
    assert_eq!(held() - base, 0, "release() frees the deflate context");
    drop((d, i, t));
}
