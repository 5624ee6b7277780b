//! Phoenix V2 channel message codec: `[join_ref, ref, topic, event, payload]`.
//!
//! * `join_ref` and `ref` are JSON strings, integers (i64 range) or `null`,
//!   and are echoed back exactly as they came ([`Ref`]): a string `"5"` stays a
//!   string, an integer `5` stays an integer.
//! * `topic` and `event` are JSON strings; they are borrowed from the input
//!   when they contain no escape sequence.
//! * `payload` is any JSON value and stays raw: [`Incoming::payload`] is the
//!   exact text of the payload (surrounding whitespace trimmed), so Erlang can
//!   forward it without decoding it.
//!
//! [`decode`] makes a single serde pass over the frame with no
//! `serde_json::Value` (plus one UTF-8 check and one linear depth scan). Only
//! when the frame is bad does it re-read the text to name the problem
//! precisely. Checks, first failure wins:
//!
//! | order | condition | error |
//! |---|---|---|
//! | 1 | bytes are not UTF-8 | [`MessageError::InvalidUtf8`] |
//! | 2 | payload nesting deeper than `max_depth` (whole text deeper than `max_depth + 1`) | [`MessageError::TooDeep`] |
//! | 3 | not a JSON text | [`MessageError::InvalidJson`] |
//! | 4 | not an array | [`MessageError::NotAnArray`] |
//! | 5 | array length ≠ 5 | [`MessageError::WrongLength`] |
//! | 6 | join_ref not null / string / i64 integer | [`MessageError::BadJoinRef`] |
//! | 7 | ref not null / string / i64 integer | [`MessageError::BadRef`] |
//! | 8 | topic not a string | [`MessageError::BadTopic`] |
//! | 9 | event not a string | [`MessageError::BadEvent`] |
//!
//! Refs that are floats (`1.0`, `1e3`, also `-0`, which JSON parsers treat as
//! a float), booleans, arrays, objects, or integers outside the i64 range are
//! refused. A topic/event whose `\u` escapes form a lone UTF-16 surrogate
//! cannot be a Rust string and is refused as `BadTopic`/`BadEvent`; the raw
//! payload is not decoded, so such escapes (and numbers like `1e400`) pass
//! through it untouched.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::json;

/// A `join_ref` or `ref`, kept in the JSON type it arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Null,
    Int(i64),
    Str(String),
}

/// A decoded client message, borrowing from the frame bytes.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub join_ref: Ref,
    pub r#ref: Ref,
    pub topic: Cow<'a, str>,
    pub event: Cow<'a, str>,
    /// Raw JSON text of the payload exactly as sent (outer whitespace trimmed).
    pub payload: &'a [u8],
}

/// Why a text frame is not a valid channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Not valid JSON; serde_json's message including line and column.
    InvalidJson(String),
    InvalidUtf8,
    NotAnArray,
    /// The array has this many elements instead of 5.
    WrongLength(usize),
    BadJoinRef,
    BadRef,
    BadTopic,
    BadEvent,
    /// The payload nests arrays/objects deeper than `max_depth`.
    TooDeep {
        max_depth: usize,
    },
}

impl MessageError {
    /// Stable machine-readable name (used as the Erlang atom / log tag).
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageError::InvalidJson(_) => "invalid_json",
            MessageError::InvalidUtf8 => "invalid_utf8",
            MessageError::NotAnArray => "not_an_array",
            MessageError::WrongLength(_) => "wrong_length",
            MessageError::BadJoinRef => "bad_join_ref",
            MessageError::BadRef => "bad_ref",
            MessageError::BadTopic => "bad_topic",
            MessageError::BadEvent => "bad_event",
            MessageError::TooDeep { .. } => "too_deep",
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::InvalidJson(msg) => write!(f, "message is not valid JSON: {msg}"),
            MessageError::InvalidUtf8 => f.write_str("message is not valid UTF-8"),
            MessageError::NotAnArray => {
                f.write_str("message must be a JSON array [join_ref, ref, topic, event, payload]")
            }
            MessageError::WrongLength(n) => {
                let s = if *n == 1 { "" } else { "s" };
                write!(f, "message must be a 5-element array, got {n} element{s}")
            }
            MessageError::BadJoinRef => {
                f.write_str("join_ref (element 1) must be null, a string or an integer")
            }
            MessageError::BadRef => {
                f.write_str("ref (element 2) must be null, a string or an integer")
            }
            MessageError::BadTopic => f.write_str("topic (element 3) must be a string"),
            MessageError::BadEvent => f.write_str("event (element 4) must be a string"),
            MessageError::TooDeep { max_depth } => {
                write!(
                    f,
                    "payload nesting exceeds the maximum depth of {max_depth}"
                )
            }
        }
    }
}

impl std::error::Error for MessageError {}

// ---------------------------------------------------------------- decoding

/// Decode one text frame. `max_depth` limits the nesting of the payload
/// (`{}` has depth 1); see the module doc for the order of checks.
pub fn decode(bytes: &[u8], max_depth: usize) -> Result<Incoming<'_>, MessageError> {
    let text = std::str::from_utf8(bytes).map_err(|_| MessageError::InvalidUtf8)?;
    // The outer array adds one level; refs/topic/event cannot nest in a
    // valid message, so the whole-text depth bounds the payload depth.
    if json::depth(bytes) > max_depth.saturating_add(1) {
        return Err(MessageError::TooDeep { max_depth });
    }
    let stage = Cell::new(Stage::Start);
    let mut de = serde_json::Deserializer::from_str(text);
    let result = (&mut de)
        .deserialize_seq(MessageVisitor { stage: &stage })
        .and_then(|msg| de.end().map(|()| msg));
    result.map_err(|err| classify(text, stage.get(), &err))
}

/// Which element the single-pass decoder was reading when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    JoinRef,
    Ref,
    Topic,
    Event,
    Payload,
    Trailing,
}

/// Slow path, only for bad frames: name the first problem in check order.
fn classify(text: &str, stage: Stage, err: &serde_json::Error) -> MessageError {
    // IgnoredAny validation is iterative inside serde_json (no recursion limit).
    if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
        return MessageError::InvalidJson(e.to_string());
    }
    match serde_json::from_str::<Vec<IgnoredAny>>(text) {
        Err(_) => MessageError::NotAnArray,
        Ok(items) if items.len() != 5 => MessageError::WrongLength(items.len()),
        Ok(_) => match stage {
            Stage::JoinRef => MessageError::BadJoinRef,
            Stage::Ref => MessageError::BadRef,
            Stage::Topic => MessageError::BadTopic,
            Stage::Event => MessageError::BadEvent,
            // Unreachable for valid 5-element arrays; keep serde's words.
            Stage::Start | Stage::Payload | Stage::Trailing => {
                MessageError::InvalidJson(err.to_string())
            }
        },
    }
}

struct MessageVisitor<'s> {
    stage: &'s Cell<Stage>,
}

impl<'de> Visitor<'de> for MessageVisitor<'_> {
    type Value = Incoming<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array [join_ref, ref, topic, event, payload]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let stage = self.stage;
        stage.set(Stage::JoinRef);
        let Some(RefDe(join_ref)) = seq.next_element()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        stage.set(Stage::Ref);
        let Some(RefDe(r#ref)) = seq.next_element()? else {
            return Err(de::Error::invalid_length(1, &self));
        };
        stage.set(Stage::Topic);
        let Some(CowStr(topic)) = seq.next_element()? else {
            return Err(de::Error::invalid_length(2, &self));
        };
        stage.set(Stage::Event);
        let Some(CowStr(event)) = seq.next_element()? else {
            return Err(de::Error::invalid_length(3, &self));
        };
        stage.set(Stage::Payload);
        let Some(payload) = seq.next_element::<&'de RawValue>()? else {
            return Err(de::Error::invalid_length(4, &self));
        };
        stage.set(Stage::Trailing);
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(6, &self));
        }
        Ok(Incoming {
            join_ref,
            r#ref,
            topic,
            event,
            payload: payload.get().as_bytes(),
        })
    }
}

/// `Ref` deserializer: null, string, or an integer that fits i64.
struct RefDe(Ref);

impl<'de> Deserialize<'de> for RefDe {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RefVisitor)
    }
}

struct RefVisitor;

impl<'de> Visitor<'de> for RefVisitor {
    type Value = RefDe;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a string or an integer")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RefDe, E> {
        Ok(RefDe(Ref::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<RefDe, E> {
        Ok(RefDe(Ref::Null))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RefDe, E> {
        Ok(RefDe(Ref::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RefDe, E> {
        match i64::try_from(v) {
            Ok(v) => Ok(RefDe(Ref::Int(v))),
            Err(_) => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RefDe, E> {
        Ok(RefDe(Ref::Str(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RefDe, E> {
        Ok(RefDe(Ref::Str(v)))
    }
}

/// A string borrowed from the input when it has no escapes.
struct CowStr<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CowStrVisitor)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = CowStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Owned(v)))
    }
}

// ---------------------------------------------------------------- encoding

/// Encode an outgoing message. `payload` is raw JSON spliced in without
/// re-encoding: the caller guarantees it is one valid JSON value.
pub fn encode(join_ref: &Ref, r#ref: &Ref, topic: &str, event: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimate(join_ref, r#ref, topic, event) + payload.len());
    encode_into(&mut out, join_ref, r#ref, topic, event, payload);
    out
}

/// Like [`encode`], appending to `out` (which is not cleared).
pub fn encode_into(
    out: &mut Vec<u8>,
    join_ref: &Ref,
    r#ref: &Ref,
    topic: &str,
    event: &str,
    payload: &[u8],
) {
    out.reserve(estimate(join_ref, r#ref, topic, event) + payload.len());
    write_head(out, join_ref, r#ref, topic, event);
    out.extend_from_slice(payload);
    out.push(b']');
}

/// Reply to a client push:
/// `[join_ref, ref, topic, "phx_reply", {"status": status, "response": response}]`.
/// `response` is raw JSON spliced in as is.
pub fn encode_reply(
    join_ref: &Ref,
    r#ref: &Ref,
    topic: &str,
    status: &str,
    response: &[u8],
) -> Vec<u8> {
    const EVENT: &str = "phx_reply";
    let mut out = Vec::with_capacity(
        estimate(join_ref, r#ref, topic, EVENT) + status.len() + response.len() + 28,
    );
    write_head(&mut out, join_ref, r#ref, topic, EVENT);
    out.extend_from_slice(b"{\"status\":");
    write_str(&mut out, status);
    out.extend_from_slice(b",\"response\":");
    out.extend_from_slice(response);
    out.extend_from_slice(b"}]");
    out
}

fn estimate(join_ref: &Ref, r#ref: &Ref, topic: &str, event: &str) -> usize {
    let ref_len = |r: &Ref| match r {
        Ref::Null => 4,
        Ref::Int(_) => 20,
        Ref::Str(s) => s.len() + 2,
    };
    ref_len(join_ref) + ref_len(r#ref) + topic.len() + event.len() + 10
}

/// Writes `[join_ref,ref,"topic","event",`.
fn write_head(out: &mut Vec<u8>, join_ref: &Ref, r#ref: &Ref, topic: &str, event: &str) {
    out.push(b'[');
    write_ref(out, join_ref);
    out.push(b',');
    write_ref(out, r#ref);
    out.push(b',');
    write_str(out, topic);
    out.push(b',');
    write_str(out, event);
    out.push(b',');
}

fn write_ref(out: &mut Vec<u8>, r: &Ref) {
    match r {
        Ref::Null => out.extend_from_slice(b"null"),
        Ref::Int(n) => write_i64(out, *n),
        Ref::Str(s) => write_str(out, s),
    }
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    // 20 bytes hold "-9223372036854775808".
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        pos -= 1;
        buf[pos] = b'-';
    }
    out.extend_from_slice(&buf[pos..]);
}

/// Writes `s` as a JSON string literal: escapes `"`, `\` and the control
/// characters U+0000–U+001F (short forms where JSON has them, `\u00XX`
/// otherwise); everything else, including non-ASCII, is copied as UTF-8.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

// ---------------------------------------------------------------- fuzzing

/// Body of the `message_decoder` fuzz target (also run by the proptests).
///
/// Decodes `data` with [`json::DEFAULT_MAX_DEPTH`] and checks it against an
/// oracle built from [`json::parse`]; if it decodes, encodes it again and
/// checks that decoding the result gives back every part. Panics (on
/// purpose) only when one of these invariants is broken.
pub fn fuzz_decode(data: &[u8]) {
    let max_depth = json::DEFAULT_MAX_DEPTH;
    let decoded = decode(data, max_depth);
    check_against_oracle(data, max_depth, &decoded);

    let Ok(msg) = decoded else { return };
    let bytes = encode(
        &msg.join_ref,
        &msg.r#ref,
        &msg.topic,
        &msg.event,
        msg.payload,
    );
    let again = match decode(&bytes, max_depth) {
        Ok(again) => again,
        Err(e) => panic!(
            "re-encoded message does not decode: {e}: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(again.join_ref, msg.join_ref, "join_ref round trip");
    assert_eq!(again.r#ref, msg.r#ref, "ref round trip");
    assert_eq!(again.topic, msg.topic, "topic round trip");
    assert_eq!(again.event, msg.event, "event round trip");
    assert_eq!(again.payload, msg.payload, "payload round trip");
}

/// What [`decode`] must answer, derived from a full `serde_json::Value` parse.
fn check_against_oracle(
    data: &[u8],
    max_depth: usize,
    decoded: &Result<Incoming<'_>, MessageError>,
) {
    use serde_json::Value;

    let ref_of = |v: &Value| -> Option<Ref> {
        match v {
            Value::Null => Some(Ref::Null),
            Value::String(s) => Some(Ref::Str(s.clone())),
            Value::Number(n) => n.as_i64().map(Ref::Int),
            _ => None,
        }
    };

    let parsed = json::parse(data, max_depth + 1);
    let expected: Result<&[Value], MessageError> = match &parsed {
        Err(json::JsonError::InvalidUtf8) => Err(MessageError::InvalidUtf8),
        Err(json::JsonError::TooDeep { .. }) => Err(MessageError::TooDeep { max_depth }),
        Err(json::JsonError::Invalid(msg)) => {
            // serde_json's Value parser is stricter than its skipping
            // validator (used for the raw payload) about out-of-range numbers
            // and unpaired surrogate escapes; those may legitimately differ.
            if msg.contains("number out of range")
                || msg.contains("surrogate")
                || msg.contains("hex escape")
            {
                return;
            }
            Err(MessageError::InvalidJson(String::new()))
        }
        Ok(Value::Array(items)) if items.len() == 5 => {
            if ref_of(&items[0]).is_none() {
                Err(MessageError::BadJoinRef)
            } else if ref_of(&items[1]).is_none() {
                Err(MessageError::BadRef)
            } else if !items[2].is_string() {
                Err(MessageError::BadTopic)
            } else if !items[3].is_string() {
                Err(MessageError::BadEvent)
            } else {
                Ok(items.as_slice())
            }
        }
        Ok(Value::Array(items)) => Err(MessageError::WrongLength(items.len())),
        Ok(_) => Err(MessageError::NotAnArray),
    };

    match (&expected, decoded) {
        (Ok(items), Ok(msg)) => {
            assert_eq!(
                ref_of(&items[0]).as_ref(),
                Some(&msg.join_ref),
                "join_ref vs oracle"
            );
            assert_eq!(
                ref_of(&items[1]).as_ref(),
                Some(&msg.r#ref),
                "ref vs oracle"
            );
            assert_eq!(items[2].as_str(), Some(&*msg.topic), "topic vs oracle");
            assert_eq!(items[3].as_str(), Some(&*msg.event), "event vs oracle");
            match json::parse(msg.payload, max_depth) {
                Ok(payload) => assert_eq!(payload, items[4], "payload vs oracle"),
                Err(e) => panic!("raw payload does not parse on its own: {e}"),
            }
        }
        (Err(MessageError::InvalidJson(_)), Err(MessageError::InvalidJson(_))) => {}
        (Err(want), Err(got)) => assert_eq!(want, got, "error vs oracle"),
        (want, got) => panic!("decode disagrees with oracle: want {want:?}, got {got:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Incoming<'_> {
        match decode(s.as_bytes(), json::DEFAULT_MAX_DEPTH) {
            Ok(m) => m,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err(s: &[u8]) -> MessageError {
        match decode(s, json::DEFAULT_MAX_DEPTH) {
            Ok(m) => panic!("{:?} decoded to {m:?}", String::from_utf8_lossy(s)),
            Err(e) => e,
        }
    }

    #[test]
    fn decodes_phoenix_join() {
        let m = ok(r#"["1","1","room:lobby","phx_join",{"token":"x"}]"#);
        assert_eq!(m.join_ref, Ref::Str("1".into()));
        assert_eq!(m.r#ref, Ref::Str("1".into()));
        assert_eq!(m.topic, "room:lobby");
        assert_eq!(m.event, "phx_join");
        assert_eq!(m.payload, br#"{"token":"x"}"#);
    }

    #[test]
    fn refs_keep_their_json_type() {
        let m = ok(r#"[5, "5", "t", "e", null]"#);
        assert_eq!(m.join_ref, Ref::Int(5));
        assert_eq!(m.r#ref, Ref::Str("5".into()));
        let m = ok(r#"[null, -9223372036854775808, "t", "e", 1]"#);
        assert_eq!(m.join_ref, Ref::Null);
        assert_eq!(m.r#ref, Ref::Int(i64::MIN));
        let m = ok(r#"[9223372036854775807, 0, "t", "e", 1]"#);
        assert_eq!(m.join_ref, Ref::Int(i64::MAX));
        let out = encode(&m.join_ref, &Ref::Str("5".into()), "t", "e", b"{}");
        assert_eq!(out, br#"[9223372036854775807,"5","t","e",{}]"#);
    }

    #[test]
    fn bad_refs_are_refused() {
        for bad in [
            "1.5",
            "1.0",
            "1e3",
            "-0",
            "true",
            "[]",
            "{}",
            "[1]",
            "9223372036854775808",
            "-9223372036854775809",
            "1e400",
        ] {
            assert_eq!(
                err(format!(r#"[{bad}, 1, "t", "e", {{}}]"#).as_bytes()),
                MessageError::BadJoinRef,
                "{bad}"
            );
            assert_eq!(
                err(format!(r#"[1, {bad}, "t", "e", {{}}]"#).as_bytes()),
                MessageError::BadRef,
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_topic_and_event() {
        for bad in ["1", "null", "[]", "{}", "true", r#""\ud800""#] {
            assert_eq!(
                err(format!(r#"[1, 1, {bad}, "e", {{}}]"#).as_bytes()),
                MessageError::BadTopic,
                "{bad}"
            );
            assert_eq!(
                err(format!(r#"[1, 1, "t", {bad}, {{}}]"#).as_bytes()),
                MessageError::BadEvent,
                "{bad}"
            );
        }
    }

    #[test]
    fn topic_borrowed_without_escapes_owned_with() {
        let m = ok(r#"[null,null,"room:é","ev\"nt",{}]"#);
        assert!(matches!(m.topic, Cow::Borrowed("room:é")));
        assert!(matches!(m.event, Cow::Owned(ref s) if s == "ev\"nt"));
    }

    #[test]
    fn payload_is_raw_and_trimmed() {
        let m = ok("[null,null,\"t\",\"e\",  {\"a\" : [1, 2.50, \"\\u00e9\"]}  \n]");
        assert_eq!(m.payload, br#"{"a" : [1, 2.50, "\u00e9"]}"#);
        let m = ok(r#"[null,null,"t","e",1e400]"#);
        assert_eq!(m.payload, b"1e400");
    }

    #[test]
    fn not_an_array() {
        for s in [r#"{"a":1}"#, "1", "\"x\"", "null", "{}"] {
            assert_eq!(err(s.as_bytes()), MessageError::NotAnArray, "{s}");
        }
    }

    #[test]
    fn wrong_length_counts_elements() {
        assert_eq!(err(b"[]"), MessageError::WrongLength(0));
        assert_eq!(err(br#"[1,2,"t"]"#), MessageError::WrongLength(3));
        assert_eq!(err(br#"[1.5]"#), MessageError::WrongLength(1));
        assert_eq!(
            err(br#"[1,2,"t","e",{},6,7]"#),
            MessageError::WrongLength(7)
        );
        assert_eq!(
            MessageError::WrongLength(3).to_string(),
            "message must be a 5-element array, got 3 elements"
        );
    }

    #[test]
    fn invalid_json_beats_shape_errors() {
        for s in [
            "",
            "[",
            r#"[1.5, 1, "t", "e", {}"#,
            r#"[1,1,"t","e",{}] x"#,
            r#"[1,1,"t","e",{},]"#,
            "[1,1,'t','e',{}]",
        ] {
            let e = err(s.as_bytes());
            assert_eq!(e.as_str(), "invalid_json", "{s}: {e}");
        }
        match err(b"[1,\n2,") {
            MessageError::InvalidJson(msg) => assert!(msg.contains("line 2"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(err(b"[1,1,\"\xff\",\"e\",{}]"), MessageError::InvalidUtf8);
        assert_eq!(err(b"\xc3"), MessageError::InvalidUtf8);
    }

    #[test]
    fn too_deep_limits_payload_depth() {
        let msg = |d: usize| format!("[1,1,\"t\",\"e\",{}{}]", "[".repeat(d), "]".repeat(d));
        assert!(decode(msg(3).as_bytes(), 3).is_ok());
        assert_eq!(
            decode(msg(4).as_bytes(), 3).unwrap_err(),
            MessageError::TooDeep { max_depth: 3 }
        );
        assert!(decode(msg(500).as_bytes(), 500).is_ok());
        let deep = vec![b'['; 10_000];
        assert_eq!(
            err(&deep),
            MessageError::TooDeep {
                max_depth: json::DEFAULT_MAX_DEPTH
            }
        );
    }

    #[test]
    fn encode_escapes_strings() {
        let out = encode(
            &Ref::Null,
            &Ref::Int(-12),
            "a\"b\\c",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}é/",
            b"[]",
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"[null,-12,"a\"b\\c","\n\r\t\b\f\u0000\u001fé/",[]]"#
        );
        let m = ok(std::str::from_utf8(&out).unwrap());
        assert_eq!(m.topic, "a\"b\\c");
        assert_eq!(m.event, "\n\r\t\u{8}\u{c}\u{0}\u{1f}é/");
    }

    #[test]
    fn encode_into_appends() {
        let mut out = b"xx".to_vec();
        encode_into(&mut out, &Ref::Str("1".into()), &Ref::Null, "t", "e", b"{}");
        assert_eq!(out, br#"xx["1",null,"t","e",{}]"#);
    }

    #[test]
    fn encode_reply_shape() {
        let out = encode_reply(
            &Ref::Str("1".into()),
            &Ref::Int(2),
            "room:1",
            "ok",
            br#"{"a":1}"#,
        );
        assert_eq!(
            out,
            br#"["1",2,"room:1","phx_reply",{"status":"ok","response":{"a":1}}]"#
        );
        let m = ok(std::str::from_utf8(&out).unwrap());
        assert_eq!(m.event, "phx_reply");
    }

    #[test]
    fn write_i64_extremes() {
        for v in [0, 1, -1, 9, 10, -10, i64::MAX, i64::MIN, 1234567890] {
            let mut out = Vec::new();
            write_i64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn error_names() {
        let all = [
            (MessageError::InvalidJson("x".into()), "invalid_json"),
            (MessageError::InvalidUtf8, "invalid_utf8"),
            (MessageError::NotAnArray, "not_an_array"),
            (MessageError::WrongLength(1), "wrong_length"),
            (MessageError::BadJoinRef, "bad_join_ref"),
            (MessageError::BadRef, "bad_ref"),
            (MessageError::BadTopic, "bad_topic"),
            (MessageError::BadEvent, "bad_event"),
            (MessageError::TooDeep { max_depth: 1 }, "too_deep"),
        ];
        for (e, name) in all {
            assert_eq!(e.as_str(), name);
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            MessageError::WrongLength(1).to_string(),
            "message must be a 5-element array, got 1 element"
        );
    }

    #[test]
    fn fuzz_decode_smoke() {
        for s in [
            &br#"["1","2","room:lobby","new_msg",{"body":"hi"}]"#[..],
            br#"[1.5,1,"t","e",{}]"#,
            b"[1,1,\"\\ud800\",\"e\",{}]",
            b"[1,1,\"t\",\"e\",\"\\ud800\"]",
            b"[1,1,\"t\",\"e\",1e400]",
            b"[1e400,1,\"t\",\"e\",{}]",
            b"\xff",
            b"",
            b"[[[[",
        ] {
            fuzz_decode(s);
        }
    }
}
