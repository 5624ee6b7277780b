//! permessage-deflate (RFC 7692) message compression, on zlib through `flate2`.
//!
//! * [`Deflater`] compresses the payload of one outgoing message into the
//!   bytes of a frame with RSV1 set: raw DEFLATE, flushed with `Z_SYNC_FLUSH`,
//!   the trailing `00 00 ff ff` removed (§7.2.1). [`Deflater::frame`] takes a
//!   complete server frame as `hornbeam_protocol` encoded it and rewrites it.
//! * [`Inflater`] undoes that for a message from the client (§7.2.2): appends
//!   `00 00 ff ff` and inflates, never producing (or allocating) more than the
//!   caller's bound, so a "zip bomb" costs at most that bound.
//!
//! # Context takeover and memory
//!
//! With context takeover a side keeps its LZ77 window between messages, so a
//! message can point back into earlier ones (chat messages repeat their JSON
//! keys and topic). zlib's deflate state at 15 window bits and memLevel 8 is
//! about 256 KiB + 5 KiB, inflate about 7 KiB + the 32 KiB window. Both
//! contexts here are allocated at their first message, not at the handshake,
//! and without takeover (`no_context_takeover`) they are dropped after each
//! message, so an idle connection holds none. The server may also drop its
//! deflate context between any two messages ([`Deflater::release`]): a fresh
//! deflate stream never refers back, and the client's inflater does not care;
//! the client's context cannot be dropped unless `client_no_context_takeover`
//! was agreed.
//!
//! Window bits are 9-15: zlib refuses 8 for raw deflate, so a client that asks
//! `server_max_window_bits=8` gets that offer declined (the handshake code
//! does that).

use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// zlib contexts alive in this process (deflate, inflate): what idle
/// connections hold is read from here (tests, `ws_deflate_contexts/0`).
static LIVE_DEFLATE: AtomicUsize = AtomicUsize::new(0);
static LIVE_INFLATE: AtomicUsize = AtomicUsize::new(0);

/// How many deflate and inflate contexts are allocated now, process-wide.
pub fn live_contexts() -> (usize, usize) {
    (
        LIVE_DEFLATE.load(Ordering::Relaxed),
        LIVE_INFLATE.load(Ordering::Relaxed),
    )
}

/// A zlib deflate context, counted in [`live_contexts`].
struct DeflateCtx(Compress);

impl DeflateCtx {
    fn new(level: u32, bits: u8) -> Self {
        LIVE_DEFLATE.fetch_add(1, Ordering::Relaxed);
        DeflateCtx(Compress::new_with_window_bits(
            Compression::new(level),
            false,
            bits,
        ))
    }
}

impl Drop for DeflateCtx {
    fn drop(&mut self) {
        LIVE_DEFLATE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A zlib inflate context, counted in [`live_contexts`].
struct InflateCtx(Decompress);

impl InflateCtx {
    fn new(bits: u8) -> Self {
        LIVE_INFLATE.fetch_add(1, Ordering::Relaxed);
        InflateCtx(Decompress::new_with_window_bits(false, bits))
    }
}

impl Drop for InflateCtx {
    fn drop(&mut self) {
        LIVE_INFLATE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The four bytes every `Z_SYNC_FLUSH` ends with, removed on the wire (§7.2.1).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest window zlib accepts for raw deflate.
pub const MIN_WINDOW_BITS: u8 = 9;
/// The DEFLATE maximum (32 KiB window).
pub const MAX_WINDOW_BITS: u8 = 15;

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// Compresses outgoing messages of one connection.
pub struct Deflater {
    ctx: Option<DeflateCtx>,
    window_bits: u8,
    level: u32,
    no_context_takeover: bool,
    /// Payloads shorter than this go out uncompressed (RSV1 clear).
    threshold: usize,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("allocated", &self.ctx.is_some())
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Deflater {
    /// A deflater with a window of `window_bits` (clamped to 9-15), zlib
    /// `level` (0-9), and no context yet.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool, threshold: usize) -> Self {
        Deflater {
            ctx: None,
            window_bits: clamp_bits(window_bits),
            level: level.min(9),
            no_context_takeover,
            threshold,
        }
    }

    /// Whether a zlib context is allocated now.
    pub fn is_allocated(&self) -> bool {
        self.ctx.is_some()
    }

    /// Drops the context (the next message starts a fresh stream).
    pub fn release(&mut self) {
        self.ctx = None;
    }

    /// Appends the compressed form of `payload` (without the sync tail) to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() {
            // An empty stored block (§7.2.3.6). zlib would write nothing for
            // a sync flush right after another one, and an empty payload
            // plus the tail the client appends is not a valid block.
            out.push(0x00);
            return;
        }
        let (level, bits) = (self.level, self.window_bits);
        let ctx = &mut self
            .ctx
            .get_or_insert_with(|| DeflateCtx::new(level, bits))
            .0;
        let start = out.len();
        let mut input = payload;
        loop {
            // Room for incompressible input plus block overhead, at least.
            out.reserve(input.len() / 2 + 64);
            let before_in = ctx.total_in();
            let before_out = out.len();
            // Errors only on misuse of the stream (never on data): stop and
            // send what was produced; a broken stream makes the client close.
            if ctx.compress_vec(input, out, FlushCompress::Sync).is_err() {
                break;
            }
            let used = usize::try_from(ctx.total_in() - before_in).unwrap_or(input.len());
            input = input.get(used..).unwrap_or_default();
            // Done when all input is in and the flush fitted (spare room left).
            if input.is_empty() && out.len() < out.capacity() && out.len() > before_out {
                break;
            }
            if input.is_empty() && out.len() == before_out {
                break;
            }
        }
        if out.len() >= start + 4 && out.get(out.len() - 4..) == Some(&SYNC_TAIL[..]) {
            out.truncate(out.len() - 4);
        }
        if self.no_context_takeover {
            self.ctx = None;
        }
    }

    /// The frame to send instead of `frame` (one complete, unmasked server
    /// frame): its payload compressed, RSV1 set. `None` when it must or
    /// should go as it is: a control frame, a continuation, a payload under
    /// the threshold, or bytes that are not exactly one frame.
    pub fn frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let (&b0, rest) = frame.split_first()?;
        let opcode = b0 & 0x0F;
        if b0 & 0xF0 != 0x80 || !(opcode == 0x1 || opcode == 0x2) {
            return None;
        }
        let (&b1, rest) = rest.split_first()?;
        if b1 & 0x80 != 0 {
            return None;
        }
        let (len, payload) = match b1 {
            126 => {
                let (l, p) = rest.split_first_chunk::<2>()?;
                (usize::from(u16::from_be_bytes(*l)), p)
            }
            127 => {
                let (l, p) = rest.split_first_chunk::<8>()?;
                (usize::try_from(u64::from_be_bytes(*l)).ok()?, p)
            }
            n => (usize::from(n), rest),
        };
        if len != payload.len() || len < self.threshold {
            return None;
        }
        let mut body = Vec::with_capacity(len / 2 + 16);
        self.compress(payload, &mut body);
        let op = if opcode == 0x1 {
            crate::ws_frame::OpCode::Text
        } else {
            crate::ws_frame::OpCode::Binary
        };
        let mut out = Vec::with_capacity(body.len() + 10);
        crate::ws_frame::encode_header(op, body.len(), &mut out);
        if let Some(first) = out.first_mut() {
            *first |= 0x40;
        }
        out.extend_from_slice(&body);
        Some(out)
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the bound (close 1009).
    TooLarge,
    /// Not valid DEFLATE data (close 1007).
    Corrupt,
}

/// Inflates the client's compressed messages on one connection.
pub struct Inflater {
    ctx: Option<InflateCtx>,
    window_bits: u8,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("allocated", &self.ctx.is_some())
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

/// Output grows by at most this much per step, so a bound is never overshot
/// by more than nothing (the last step is cut to the bound + 1).
const INFLATE_STEP: usize = 64 * 1024;

impl Inflater {
    /// An inflater for a client that compresses with at most `window_bits`
    /// (clamped to 9-15; a smaller window inflates fine in a bigger one).
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Inflater {
            ctx: None,
            window_bits: clamp_bits(window_bits),
            no_context_takeover,
        }
    }

    /// Whether a zlib context is allocated now.
    pub fn is_allocated(&self) -> bool {
        self.ctx.is_some()
    }

    /// Inflates one message (its frames' payloads, concatenated), producing at
    /// most `max` bytes: one byte more is [`InflateError::TooLarge`], and the
    /// output buffer never grows past `max + 1`. After an error the context
    /// is gone (the connection is closed anyway).
    pub fn inflate(&mut self, compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        let bits = self.window_bits;
        let ctx = &mut self.ctx.get_or_insert_with(|| InflateCtx::new(bits)).0;
        let mut out = Vec::new();
        let result = feed(ctx, compressed, &mut out, max).and_then(|ended| {
            if ended {
                Ok(true)
            } else {
                feed(ctx, &SYNC_TAIL, &mut out, max)
            }
        });
        match result {
            Ok(ended) => {
                // A final block (BFINAL) ends the stream: the next message
                // starts a new one.
                if ended || self.no_context_takeover {
                    self.ctx = None;
                }
                Ok(out)
            }
            Err(e) => {
                self.ctx = None;
                Err(e)
            }
        }
    }
}

/// Feeds `input` to `ctx`, appending output to `out` within `max`. `Ok(true)`
/// when the DEFLATE stream ended (a final block).
fn feed(
    ctx: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<bool, InflateError> {
    loop {
        if out.len() == out.capacity() {
            if out.len() > max {
                return Err(InflateError::TooLarge);
            }
            let room = max
                .saturating_add(1)
                .saturating_sub(out.len())
                .min(INFLATE_STEP);
            out.reserve_exact(room);
        }
        let before_in = ctx.total_in();
        let before_out = out.len();
        let status = ctx
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > max {
            return Err(InflateError::TooLarge);
        }
        let used = usize::try_from(ctx.total_in() - before_in).unwrap_or(input.len());
        input = input.get(used..).unwrap_or_default();
        let produced = out.len() - before_out;
        match status {
            Status::StreamEnd => return Ok(true),
            // Output space left over: zlib has written all it can for now.
            _ if input.is_empty() && out.len() < out.capacity() => return Ok(false),
            _ if used == 0 && produced == 0 && out.len() < out.capacity() => {
                return Err(InflateError::Corrupt)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(d: &mut Deflater, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        d.compress(payload, &mut out);
        out
    }

    #[test]
    fn rfc7692_hello_example() {
        // §7.2.3.1: "Hello" compressed with no context is c2 4d 29 c8 c9 07 00 ...
        let mut d = Deflater::new(15, 6, true, 0);
        let c = deflate(&mut d, b"Hello");
        assert_eq!(c, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        // ... and the frame the RFC shows decodes: "Hello" in one compressed block.
        let mut i = Inflater::new(15, false);
        assert_eq!(
            i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100),
            Ok(b"Hello".to_vec())
        );
    }

    #[test]
    fn rfc7692_frame_bytes() {
        // §7.2.3.1 shows the whole frame: c1 07 f2 48 cd c9 c9 07 00.
        let mut d = Deflater::new(15, 6, true, 0);
        let frame = crate::ws_frame::encode(crate::ws_frame::OpCode::Text, b"Hello");
        assert_eq!(
            d.frame(&frame),
            Some(vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        );
    }

    #[test]
    fn rfc7692_context_takeover_example() {
        // §7.2.3.2: the second "Hello" with the window of the first is f2 00 11 00 00.
        let mut d = Deflater::new(15, 6, false, 0);
        assert_eq!(
            deflate(&mut d, b"Hello"),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        assert_eq!(deflate(&mut d, b"Hello"), [0xf2, 0x00, 0x11, 0x00, 0x00]);
        let mut i = Inflater::new(15, false);
        assert_eq!(
            i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100)
                .as_deref(),
            Ok(&b"Hello"[..])
        );
        assert_eq!(
            i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100).as_deref(),
            Ok(&b"Hello"[..])
        );
        // Without takeover the inflater forgot the window: the back-reference is invalid.
        let mut fresh = Inflater::new(15, true);
        assert_eq!(
            fresh
                .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100)
                .as_deref(),
            Ok(&b"Hello"[..])
        );
        assert!(fresh.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100).is_err());
    }

    #[test]
    fn rfc7692_uncompressed_block_and_bfinal() {
        // §7.2.3.3: a stored block; §7.2.3.4: a block with BFINAL set.
        let mut i = Inflater::new(15, false);
        assert_eq!(
            i.inflate(
                &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00],
                100
            )
            .as_deref(),
            Ok(&b"Hello"[..])
        );
        assert_eq!(
            i.inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], 100)
                .as_deref(),
            Ok(&b"Hello"[..])
        );
        // After a final block the next message is a new stream.
        assert_eq!(
            i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100)
                .as_deref(),
            Ok(&b"Hello"[..])
        );
    }

    #[test]
    fn round_trip_with_and_without_takeover_all_window_bits() {
        let msgs: Vec<Vec<u8>> = (0..50)
            .map(|n| {
                format!(
                    "[null,null,\"room:lobby\",\"new_msg\",{{\"body\":\"message {n} {}\"}}]",
                    "x".repeat(n * 37)
                )
                .into_bytes()
            })
            .chain([
                Vec::new(),
                vec![0u8; 200_000],
                (0..=255u8).cycle().take(70_000).collect(),
            ])
            .collect();
        for bits in 9..=15 {
            for takeover in [true, false] {
                let mut d = Deflater::new(bits, 6, !takeover, 0);
                let mut i = Inflater::new(bits, !takeover);
                let mut wire = 0;
                for m in &msgs {
                    let c = deflate(&mut d, m);
                    wire += c.len();
                    let back = i.inflate(&c, 1 << 20);
                    assert!(
                        back.as_deref() == Ok(&m[..]),
                        "bits {bits} takeover {takeover} len {} -> {:?}",
                        m.len(),
                        back.map(|b| b.len())
                    );
                }
                assert!(wire < msgs.iter().map(Vec::len).sum::<usize>());
                assert_eq!(d.is_allocated(), takeover);
                assert_eq!(i.is_allocated(), takeover);
            }
        }
    }

    #[test]
    fn context_takeover_makes_repeated_messages_smaller() {
        let msg =
            br#"[null,null,"room:lobby","new_msg",{"user":"alice","body":"hello everybody"}]"#;
        let mut with = Deflater::new(15, 6, false, 0);
        let mut without = Deflater::new(15, 6, true, 0);
        let first = deflate(&mut with, msg).len();
        let second = deflate(&mut with, msg).len();
        let alone = deflate(&mut without, msg).len();
        assert_eq!(alone, first);
        assert_eq!(deflate(&mut without, msg).len(), alone);
        assert!(second * 3 < alone, "takeover {second} bytes vs {alone}");
    }

    #[test]
    fn released_deflater_still_decodes_with_a_takeover_inflater() {
        let mut d = Deflater::new(15, 6, false, 0);
        let mut i = Inflater::new(15, false);
        for n in 0..10 {
            let m = format!("message number {n} message number {n}");
            let c = deflate(&mut d, m.as_bytes());
            assert_eq!(i.inflate(&c, 1000), Ok(m.into_bytes()));
            if n % 3 == 0 {
                d.release();
            }
        }
    }

    #[test]
    fn bomb_is_bounded() {
        // 10 MiB of zeros compresses to ~10 KiB; with a 1 MiB bound it is
        // refused, and the output buffer never grew past the bound + 1.
        let mut d = Deflater::new(15, 9, true, 0);
        let bomb = deflate(&mut d, &vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000);
        let mut i = Inflater::new(15, false);
        assert_eq!(i.inflate(&bomb, 1 << 20), Err(InflateError::TooLarge));
        assert!(!i.is_allocated());
        // Exactly at the bound passes, one byte over does not.
        let exact = deflate(&mut d, &vec![7u8; 1000]);
        assert_eq!(i.inflate(&exact, 1000).map(|v| v.len()), Ok(1000));
        assert_eq!(i.inflate(&exact, 999), Err(InflateError::TooLarge));
        assert_eq!(i.inflate(&exact, 0), Err(InflateError::TooLarge));
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut i = Inflater::new(15, false);
        assert_eq!(
            i.inflate(&[0xff, 0xff, 0xff, 0xff, 0xff], 1000),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn frame_skips_control_small_and_malformed_frames() {
        use crate::ws_frame::{encode, OpCode};
        let mut d = Deflater::new(15, 6, false, 32);
        assert_eq!(
            d.frame(&encode(
                OpCode::Ping,
                b"0123456789012345678901234567890123456789"
            )),
            None
        );
        assert_eq!(d.frame(&encode(OpCode::Text, b"short")), None);
        assert_eq!(d.frame(b""), None);
        let mut two = encode(OpCode::Text, &[b'a'; 40]);
        two.extend(encode(OpCode::Text, &[b'a'; 40]));
        assert_eq!(d.frame(&two), None);
        let big = vec![b'z'; 70_000];
        let f = d.frame(&encode(OpCode::Binary, &big)).unwrap_or_default();
        assert_eq!(f.first(), Some(&0xc2));
        let body = f.get(2..).unwrap_or_default();
        assert_eq!(Inflater::new(15, false).inflate(body, 1 << 20), Ok(big));
    }
}
