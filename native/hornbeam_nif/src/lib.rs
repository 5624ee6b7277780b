//! Rustler glue between the Erlang module `hornbeam_nif` and `hornbeam_core`.
//!
//! Every function here converts terms, calls the core and converts back; the
//! logic (and its tests) live in `hornbeam_core`. Nothing here may panic on
//! input: bad terms come back as `{error, ...}` or `badarg`.

mod json_term;
mod presence;

use std::sync::Mutex;

use hornbeam_core::message::{self, Ref};
use hornbeam_core::permessage_deflate::{Deflater, Inflater};
use hornbeam_core::router::{Match, Router};
use hornbeam_core::ws_frame::{self, Decoder, Message, OpCode, Pending};
use rustler::{Atom, Binary, Encoder, Env, NewBinary, NifResult, Resource, ResourceArc, Term};

mod atoms {
    rustler::atoms! {
        ok, error, nomatch, null, text, binary, ping, pong, close, none,
        topic_too_long, not_json, duplicate_capture, empty_pattern, empty_segment, bad_segment,
        up, down, nothing, frame, fragments,
    }
}

// --- WebSocket frames -----------------------------------------------------

/// An incremental frame decoder owned by one connection process. The mutex
/// is uncontended (one owner); it is there because resources must be Sync.
struct WsDecoder(Mutex<Decoder>);

#[rustler::resource_impl]
impl Resource for WsDecoder {}

#[rustler::nif]
fn ws_decoder_new(max_frame_size: usize) -> ResourceArc<WsDecoder> {
    ResourceArc::new(WsDecoder(Mutex::new(Decoder::new(max_frame_size))))
}

/// A decoder for a permessage-deflate connection: RSV1 messages are inflated
/// (client window `window_bits`, context dropped after each message with
/// `no_context_takeover`), within `max_frame_size`.
#[rustler::nif]
fn ws_decoder_new_deflate(
    max_frame_size: usize,
    window_bits: u8,
    no_context_takeover: bool,
) -> ResourceArc<WsDecoder> {
    let inflater = Inflater::new(window_bits, no_context_takeover);
    ResourceArc::new(WsDecoder(Mutex::new(Decoder::with_inflater(
        max_frame_size,
        inflater,
    ))))
}

/// The outgoing half of permessage-deflate for one connection, owned by its
/// process (uncontended mutex, as for the decoder).
struct WsDeflater(Mutex<Deflater>);

#[rustler::resource_impl]
impl Resource for WsDeflater {}

#[rustler::nif]
fn ws_deflater_new(
    window_bits: u8,
    level: u32,
    no_context_takeover: bool,
    threshold: usize,
) -> ResourceArc<WsDeflater> {
    ResourceArc::new(WsDeflater(Mutex::new(Deflater::new(
        window_bits,
        level,
        no_context_takeover,
        threshold,
    ))))
}

#[rustler::nif]
fn nif_ws_deflate<'a>(
    env: Env<'a>,
    deflater: ResourceArc<WsDeflater>,
    frame: Term<'a>,
) -> NifResult<Term<'a>> {
    ws_deflate(env, deflater, frame)
}

/// `nif_ws_deflate` on a dirty CPU scheduler, for frames over 64 KiB.
#[rustler::nif(schedule = "DirtyCpu")]
fn nif_ws_deflate_dirty<'a>(
    env: Env<'a>,
    deflater: ResourceArc<WsDeflater>,
    frame: Term<'a>,
) -> NifResult<Term<'a>> {
    ws_deflate(env, deflater, frame)
}

/// The compressed frame (RSV1) for one complete server frame, or the frame
/// itself when it stays as it is (control frame, under the threshold).
fn ws_deflate<'a>(
    env: Env<'a>,
    deflater: ResourceArc<WsDeflater>,
    frame: Term<'a>,
) -> NifResult<Term<'a>> {
    let bytes = Binary::from_iolist(frame)?;
    let mut guard = deflater.0.lock().map_err(|_| rustler::Error::BadArg)?;
    Ok(match guard.frame(bytes.as_slice()) {
        Some(out) => bin(env, &out),
        None => bytes.to_term(env),
    })
}

/// Drops the deflate context (an idle connection then holds none); the next
/// message starts a fresh DEFLATE stream, which every client accepts.
#[rustler::nif]
fn ws_deflater_release(deflater: ResourceArc<WsDeflater>) -> NifResult<Atom> {
    let mut guard = deflater.0.lock().map_err(|_| rustler::Error::BadArg)?;
    guard.release();
    Ok(atoms::ok())
}

/// `{Deflate, Inflate}`: zlib contexts allocated now in this VM (all
/// connections), for memory checks and tests.
#[rustler::nif]
fn ws_deflate_contexts() -> (usize, usize) {
    hornbeam_core::permessage_deflate::live_contexts()
}

fn bin<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut out = NewBinary::new(env, bytes.len());
    out.as_mut_slice().copy_from_slice(bytes);
    Binary::from(out).to_term(env)
}

fn ws_message_term<'a>(env: Env<'a>, message: &Message) -> Term<'a> {
    match message {
        Message::Text(b) => (atoms::text(), bin(env, b)).encode(env),
        Message::Binary(b) => (atoms::binary(), bin(env, b)).encode(env),
        Message::Ping(b) => (atoms::ping(), bin(env, b)).encode(env),
        Message::Pong(b) => (atoms::pong(), bin(env, b)).encode(env),
        Message::Close(None) => (atoms::close(), atoms::none()).encode(env),
        Message::Close(Some((code, reason))) => {
            (atoms::close(), (*code, bin(env, reason))).encode(env)
        }
    }
}

#[rustler::nif]
fn nif_ws_decode<'a>(
    env: Env<'a>,
    decoder: ResourceArc<WsDecoder>,
    bytes: Binary<'a>,
) -> NifResult<Term<'a>> {
    ws_decode(env, decoder, bytes)
}

/// `nif_ws_decode` on a dirty CPU scheduler, for chunks over 64 KiB (the
/// Erlang side chooses): unmasking and UTF-8 checks of a 1 MiB message take
/// about 2 ms here.
#[rustler::nif(schedule = "DirtyCpu")]
fn nif_ws_decode_dirty<'a>(
    env: Env<'a>,
    decoder: ResourceArc<WsDecoder>,
    bytes: Binary<'a>,
) -> NifResult<Term<'a>> {
    ws_decode(env, decoder, bytes)
}

fn ws_decode<'a>(
    env: Env<'a>,
    decoder: ResourceArc<WsDecoder>,
    bytes: Binary<'a>,
) -> NifResult<Term<'a>> {
    let mut guard = decoder.0.lock().map_err(|_| rustler::Error::BadArg)?;
    let (messages, failure) = guard.decode(bytes.as_slice());
    let terms: Vec<Term<'a>> = messages.iter().map(|m| ws_message_term(env, m)).collect();
    Ok(match failure {
        None => (atoms::ok(), terms).encode(env),
        Some(e) => {
            let reason = Atom::from_str(env, e.as_str())?;
            (atoms::error(), terms, reason, e.close_code()).encode(env)
        }
    })
}

#[rustler::nif]
fn ws_buffered(decoder: ResourceArc<WsDecoder>) -> NifResult<usize> {
    let guard = decoder.0.lock().map_err(|_| rustler::Error::BadArg)?;
    Ok(guard.buffered_len())
}

/// `nothing | frame | fragments': what the decoder holds of a message that
/// has not fully arrived.
#[rustler::nif]
fn ws_pending(decoder: ResourceArc<WsDecoder>) -> NifResult<Atom> {
    let guard = decoder.0.lock().map_err(|_| rustler::Error::BadArg)?;
    Ok(match guard.pending() {
        Pending::Nothing => atoms::nothing(),
        Pending::Frame => atoms::frame(),
        Pending::Fragments => atoms::fragments(),
    })
}

fn opcode(atom: Atom) -> NifResult<OpCode> {
    if atom == atoms::text() {
        Ok(OpCode::Text)
    } else if atom == atoms::binary() {
        Ok(OpCode::Binary)
    } else if atom == atoms::ping() {
        Ok(OpCode::Ping)
    } else if atom == atoms::pong() {
        Ok(OpCode::Pong)
    } else {
        Err(rustler::Error::BadArg)
    }
}

#[rustler::nif]
fn ws_encode<'a>(env: Env<'a>, op: Atom, payload: Term<'a>) -> NifResult<Term<'a>> {
    let op = opcode(op)?;
    let payload = Binary::from_iolist(payload)?;
    if matches!(op, OpCode::Ping | OpCode::Pong) && payload.len() > 125 {
        return Err(rustler::Error::BadArg);
    }
    let mut out = Vec::with_capacity(payload.len() + 10);
    ws_frame::encode_header(op, payload.len(), &mut out);
    out.extend_from_slice(payload.as_slice());
    Ok(bin(env, &out))
}

#[rustler::nif]
fn ws_encode_close<'a>(env: Env<'a>, code: u16, reason: Term<'a>) -> NifResult<Term<'a>> {
    let reason = Binary::from_iolist(reason)?;
    let reason = std::str::from_utf8(reason.as_slice()).map_err(|_| rustler::Error::BadArg)?;
    Ok(bin(env, &ws_frame::encode_close(code, reason)))
}

// --- Channel messages -------------------------------------------------------

fn ref_term<'a>(env: Env<'a>, r: &Ref) -> Term<'a> {
    match r {
        Ref::Null => atoms::null().encode(env),
        Ref::Int(i) => i.encode(env),
        Ref::Str(s) => bin(env, s.as_bytes()),
    }
}

fn term_ref(term: Term) -> NifResult<Ref> {
    if let Ok(i) = term.decode::<i64>() {
        return Ok(Ref::Int(i));
    }
    if let Ok(b) = term.decode::<Binary>() {
        let s = std::str::from_utf8(b.as_slice()).map_err(|_| rustler::Error::BadArg)?;
        return Ok(Ref::Str(s.to_owned()));
    }
    if let Ok(a) = term.decode::<Atom>() {
        if a == atoms::null() {
            return Ok(Ref::Null);
        }
    }
    Err(rustler::Error::BadArg)
}

/// A binary for `part`: a sub-binary of `whole` when `part` points into it
/// (no copy), else a fresh binary.
fn slice_term<'a>(env: Env<'a>, whole: &Binary<'a>, part: &[u8]) -> NifResult<Term<'a>> {
    let base = whole.as_slice().as_ptr() as usize;
    let start = part.as_ptr() as usize;
    if start >= base && start + part.len() <= base + whole.len() {
        Ok(whole.make_subbinary(start - base, part.len())?.to_term(env))
    } else {
        Ok(bin(env, part))
    }
}

#[rustler::nif]
fn nif_msg_decode<'a>(env: Env<'a>, input: Binary<'a>, max_depth: usize) -> NifResult<Term<'a>> {
    msg_decode(env, input, max_depth)
}

/// `nif_msg_decode` on a dirty CPU scheduler, for messages over 64 KiB.
#[rustler::nif(schedule = "DirtyCpu")]
fn nif_msg_decode_dirty<'a>(
    env: Env<'a>,
    input: Binary<'a>,
    max_depth: usize,
) -> NifResult<Term<'a>> {
    msg_decode(env, input, max_depth)
}

fn msg_decode<'a>(env: Env<'a>, input: Binary<'a>, max_depth: usize) -> NifResult<Term<'a>> {
    match message::decode(input.as_slice(), max_depth) {
        Ok(m) => {
            let topic = slice_term(env, &input, m.topic.as_bytes())?;
            let event = slice_term(env, &input, m.event.as_bytes())?;
            let payload = slice_term(env, &input, m.payload)?;
            let parts = (
                ref_term(env, &m.join_ref),
                ref_term(env, &m.r#ref),
                topic,
                event,
                payload,
            );
            Ok((atoms::ok(), parts).encode(env))
        }
        Err(e) => {
            let reason = Atom::from_str(env, e.as_str())?;
            Ok((atoms::error(), reason, bin(env, e.to_string().as_bytes())).encode(env))
        }
    }
}

struct OutgoingParts<'a> {
    join_ref: Ref,
    r#ref: Ref,
    topic: Binary<'a>,
    event: Binary<'a>,
    payload: Binary<'a>,
}

fn outgoing<'a>(
    join_ref: Term<'a>,
    r#ref: Term<'a>,
    topic: Term<'a>,
    event: Term<'a>,
    payload: Term<'a>,
) -> NifResult<OutgoingParts<'a>> {
    Ok(OutgoingParts {
        join_ref: term_ref(join_ref)?,
        r#ref: term_ref(r#ref)?,
        topic: Binary::from_iolist(topic)?,
        event: Binary::from_iolist(event)?,
        payload: Binary::from_iolist(payload)?,
    })
}

fn encode_message(parts: &OutgoingParts, out: &mut Vec<u8>) -> NifResult<()> {
    let topic = std::str::from_utf8(parts.topic.as_slice()).map_err(|_| rustler::Error::BadArg)?;
    let event = std::str::from_utf8(parts.event.as_slice()).map_err(|_| rustler::Error::BadArg)?;
    message::encode_into(
        out,
        &parts.join_ref,
        &parts.r#ref,
        topic,
        event,
        parts.payload.as_slice(),
    );
    Ok(())
}

#[rustler::nif]
fn msg_encode<'a>(
    env: Env<'a>,
    join_ref: Term<'a>,
    r#ref: Term<'a>,
    topic: Term<'a>,
    event: Term<'a>,
    payload: Term<'a>,
) -> NifResult<Term<'a>> {
    let parts = outgoing(join_ref, r#ref, topic, event, payload)?;
    let mut out =
        Vec::with_capacity(parts.payload.len() + parts.topic.len() + parts.event.len() + 32);
    encode_message(&parts, &mut out)?;
    Ok(bin(env, &out))
}

#[rustler::nif]
fn msg_encode_frame<'a>(
    env: Env<'a>,
    join_ref: Term<'a>,
    r#ref: Term<'a>,
    topic: Term<'a>,
    event: Term<'a>,
    payload: Term<'a>,
) -> NifResult<Term<'a>> {
    let parts = outgoing(join_ref, r#ref, topic, event, payload)?;
    let mut msg =
        Vec::with_capacity(parts.payload.len() + parts.topic.len() + parts.event.len() + 32);
    encode_message(&parts, &mut msg)?;
    let mut out = Vec::with_capacity(msg.len() + 10);
    ws_frame::encode_header(OpCode::Text, msg.len(), &mut out);
    out.extend_from_slice(&msg);
    Ok(bin(env, &out))
}

// --- JSON -------------------------------------------------------------------

#[rustler::nif]
fn nif_json_decode<'a>(env: Env<'a>, input: Term<'a>, max_depth: usize) -> NifResult<Term<'a>> {
    json_term::decode(env, input, max_depth)
}

/// Same as `nif_json_decode`, on a dirty CPU scheduler: the Erlang side picks
/// it for inputs over 64 KiB, where building the terms can exceed 1 ms.
#[rustler::nif(schedule = "DirtyCpu")]
fn nif_json_decode_dirty<'a>(
    env: Env<'a>,
    input: Term<'a>,
    max_depth: usize,
) -> NifResult<Term<'a>> {
    json_term::decode(env, input, max_depth)
}

#[rustler::nif]
fn json_encode<'a>(env: Env<'a>, term: Term<'a>) -> NifResult<Term<'a>> {
    json_term::encode(env, term)
}

// --- Topic router -----------------------------------------------------------

struct CompiledRouter(Router);

#[rustler::resource_impl]
impl Resource for CompiledRouter {}

#[rustler::nif]
fn router_new<'a>(
    env: Env<'a>,
    patterns: Vec<Binary<'a>>,
    max_topic_len: usize,
) -> NifResult<Term<'a>> {
    let mut strings = Vec::with_capacity(patterns.len());
    for p in &patterns {
        strings.push(std::str::from_utf8(p.as_slice()).map_err(|_| rustler::Error::BadArg)?);
    }
    match Router::compile(&strings, max_topic_len) {
        Ok(router) => Ok((atoms::ok(), ResourceArc::new(CompiledRouter(router))).encode(env)),
        Err(e) => {
            use hornbeam_core::router::RouterError as E;
            let (kind, pattern) = match &e {
                E::EmptyPattern { pattern } => (atoms::empty_pattern(), pattern),
                E::EmptySegment { pattern } => (atoms::empty_segment(), pattern),
                E::BadSegment { pattern, .. } => (atoms::bad_segment(), pattern),
                E::DuplicateCapture { pattern, .. } => (atoms::duplicate_capture(), pattern),
            };
            let detail = (
                kind,
                bin(env, pattern.as_bytes()),
                bin(env, e.to_string().as_bytes()),
            );
            Ok((atoms::error(), detail).encode(env))
        }
    }
}

#[rustler::nif]
fn router_match<'a>(
    env: Env<'a>,
    router: ResourceArc<CompiledRouter>,
    topic: Binary<'a>,
) -> NifResult<Term<'a>> {
    let Ok(topic) = std::str::from_utf8(topic.as_slice()) else {
        return Ok(atoms::nomatch().encode(env));
    };
    Ok(match router.0.match_topic(topic) {
        Match::Matched { pattern_id, params } => {
            let keys: Vec<Term> = params.iter().map(|(k, _)| bin(env, k.as_bytes())).collect();
            let values: Vec<Term> = params.iter().map(|(_, v)| bin(env, v.as_bytes())).collect();
            let map = Term::map_from_term_arrays(env, &keys, &values)?;
            (atoms::ok(), pattern_id, map).encode(env)
        }
        Match::NoMatch => atoms::nomatch().encode(env),
        Match::TopicTooLong => (atoms::error(), atoms::topic_too_long()).encode(env),
    })
}

rustler::init!("hornbeam_nif");
