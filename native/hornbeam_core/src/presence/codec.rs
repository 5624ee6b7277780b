//! Binary wire format of [`Delta`], [`FullState`] and [`Clock`].
//!
//! They travel between nodes as Erlang binaries. Every message:
//!
//! ```text
//! message  = "HBPR" version:u8(=1) kind:u8 body        kind: 'D' | 'S' | 'C'
//! varint   = unsigned LEB128, at most 10 bytes, no overflow
//! str      = varint(len) UTF-8 bytes
//! replica  = str(node) varint(incarnation)
//! topics   = varint(n) str*                             table of topic names
//! entry    = varint(counter - previous counter, ≥ 1) varint(topic index)
//!            str(key) varint(owner) str(meta JSON object) str(phx_ref)
//!            (0x00 | 0x01 str(phx_ref_prev))
//! 'D' body = replica(origin) varint(start) varint(end - start)
//!            varint(n) varint(gap ≥ 1)*n               removed dots, ascending, ≤ start
//!            topics varint(n) entry*n                  counters in (start, end], from start
//! 'S' body = replica(sender) topics varint(n) section*n
//! section  = replica varint(ctx) varint(n) entry*n      counters ≤ ctx, from 0
//! 'C' body = replica(owner) varint(n) (replica varint(ctx))*n
//! ```
//!
//! Decoding checks everything (bounds, UTF-8, ordering, that every entry's
//! counter lies in what its message says it has seen, that metas are JSON
//! objects, no duplicate replicas, no trailing bytes) and returns a
//! [`DecodeError`] on anything else; it never panics and never allocates
//! more than the input's size suggests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::{Clock, Delta, Entry, FullState, Meta, ReplicaId, Section};

const MAGIC: &[u8; 4] = b"HBPR";
const VERSION: u8 = 1;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a value.
    Truncated,
    /// Not starting with the `HBPR` magic.
    BadMagic,
    UnsupportedVersion(u8),
    /// A message of another kind (`'D'`, `'S'`, `'C'`).
    WrongKind {
        expected: u8,
        found: u8,
    },
    /// A varint longer than 10 bytes or above `u64::MAX`.
    BadVarint,
    InvalidUtf8,
    /// A meta that is not a JSON object text.
    InvalidMeta,
    /// Well-formed but inconsistent content; what.
    Invalid(&'static str),
    TrailingBytes,
}

impl DecodeError {
    /// Stable name for logs and Erlang atoms.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::BadMagic => "bad_magic",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::WrongKind { .. } => "wrong_kind",
            DecodeError::BadVarint => "bad_varint",
            DecodeError::InvalidUtf8 => "invalid_utf8",
            DecodeError::InvalidMeta => "invalid_meta",
            DecodeError::Invalid(_) => "invalid",
            DecodeError::TrailingBytes => "trailing_bytes",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported presence format version {v}")
            }
            DecodeError::WrongKind { expected, found } => write!(
                f,
                "expected a presence message of kind {:?}, found {:?}",
                *expected as char, *found as char
            ),
            DecodeError::Invalid(what) => write!(f, "invalid presence message: {what}"),
            other => f.write_str(other.as_str()),
        }
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_varint(out, n as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_replica(out: &mut Vec<u8>, id: &ReplicaId) {
    put_str(out, &id.node);
    put_varint(out, id.incarnation);
}

fn header(kind: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind);
    out
}

/// Writes the topic table of `entries` and returns topic → index.
fn put_topics<'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = &'a Entry>,
) -> HashMap<&'a str, u64> {
    let mut index: HashMap<&str, u64> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    for e in entries {
        let next = names.len() as u64;
        index.entry(&e.topic).or_insert_with(|| {
            names.push(&e.topic);
            next
        });
    }
    put_len(out, names.len());
    for n in names {
        put_str(out, n);
    }
    index
}

fn put_entries(
    out: &mut Vec<u8>,
    entries: &BTreeMap<u64, Entry>,
    mut prev: u64,
    topics: &HashMap<&str, u64>,
) {
    put_len(out, entries.len());
    for (&c, e) in entries {
        put_varint(out, c.wrapping_sub(prev));
        prev = c;
        put_varint(out, topics.get(&*e.topic).copied().unwrap_or(0));
        put_str(out, &e.key);
        put_varint(out, e.owner);
        put_str(out, &e.meta.meta);
        put_str(out, &e.meta.phx_ref);
        match &e.meta.phx_ref_prev {
            Some(p) => {
                out.push(1);
                put_str(out, p);
            }
            None => out.push(0),
        }
    }
}

fn entries_size(entries: &BTreeMap<u64, Entry>) -> usize {
    entries
        .values()
        .map(|e| 24 + e.key.len() + e.meta.meta.len() + e.meta.phx_ref.len())
        .sum()
}

impl Delta {
    /// The wire form (see the module documentation of `codec`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = header(
            b'D',
            32 + self.origin.node.len() + entries_size(&self.entries),
        );
        put_replica(&mut out, &self.origin);
        put_varint(&mut out, self.start);
        put_varint(&mut out, self.end.saturating_sub(self.start));
        put_len(&mut out, self.removed.len());
        let mut prev = 0u64;
        for &c in &self.removed {
            put_varint(&mut out, c.wrapping_sub(prev));
            prev = c;
        }
        let topics = put_topics(&mut out, self.entries.values());
        put_entries(&mut out, &self.entries, self.start, &topics);
        out
    }

    /// Parses [`Delta::encode`]'s output; an error on anything else.
    pub fn decode(bytes: &[u8]) -> Result<Delta, DecodeError> {
        let mut r = Reader::new(bytes, b'D')?;
        let origin = r.replica()?;
        let start = r.varint()?;
        let end = start
            .checked_add(r.varint()?)
            .ok_or(DecodeError::Invalid("delta range overflows"))?;
        let n = r.count()?;
        let mut removed = Vec::with_capacity(n);
        let mut prev = 0u64;
        for _ in 0..n {
            let c = r.after(prev)?;
            if c > start {
                return Err(DecodeError::Invalid("removed dot inside the delta range"));
            }
            removed.push(c);
            prev = c;
        }
        let topics = r.topics()?;
        let entries = r.entries(start, &topics, |c| c <= end)?;
        r.finish()?;
        Ok(Delta {
            origin,
            start,
            end,
            removed,
            entries,
        })
    }
}

impl FullState {
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .sections
            .iter()
            .map(|s| 32 + entries_size(&s.entries))
            .sum();
        let mut out = header(b'S', 32 + size);
        put_replica(&mut out, &self.sender);
        let topics = put_topics(
            &mut out,
            self.sections.iter().flat_map(|s| s.entries.values()),
        );
        put_len(&mut out, self.sections.len());
        for s in &self.sections {
            put_replica(&mut out, &s.id);
            put_varint(&mut out, s.ctx);
            put_entries(&mut out, &s.entries, 0, &topics);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<FullState, DecodeError> {
        let mut r = Reader::new(bytes, b'S')?;
        let sender = r.replica()?;
        let topics = r.topics()?;
        let n = r.count()?;
        let mut sections = Vec::with_capacity(n);
        let mut nodes = HashSet::new();
        for _ in 0..n {
            let id = r.replica()?;
            if !nodes.insert(id.node.clone()) {
                return Err(DecodeError::Invalid("two sections for one node"));
            }
            let ctx = r.varint()?;
            let entries = r.entries(0, &topics, |c| c <= ctx)?;
            sections.push(Section { id, ctx, entries });
        }
        r.finish()?;
        Ok(FullState { sender, sections })
    }
}

impl Clock {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = header(b'C', 16 + 24 * self.entries.len());
        put_replica(&mut out, &self.replica);
        put_len(&mut out, self.entries.len());
        for (id, &c) in &self.entries {
            put_replica(&mut out, id);
            put_varint(&mut out, c);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Clock, DecodeError> {
        let mut r = Reader::new(bytes, b'C')?;
        let replica = r.replica()?;
        let mut entries = BTreeMap::new();
        for _ in 0..r.count()? {
            let id = r.replica()?;
            let c = r.varint()?;
            if entries.insert(id, c).is_some() {
                return Err(DecodeError::Invalid("replica twice in a clock"));
            }
        }
        r.finish()?;
        Ok(Clock { replica, entries })
    }
}

// ---------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], kind: u8) -> Result<Self, DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.byte()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let found = r.byte()?;
        if found != kind {
            return Err(DecodeError::WrongKind {
                expected: kind,
                found,
            });
        }
        Ok(r)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// A count of items that each take at least one byte.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// `prev + gap` with `gap ≥ 1`, no overflow.
    fn after(&mut self, prev: u64) -> Result<u64, DecodeError> {
        let gap = self.varint()?;
        if gap == 0 {
            return Err(DecodeError::Invalid("counters not strictly ascending"));
        }
        prev.checked_add(gap)
            .ok_or(DecodeError::Invalid("counter overflows"))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::InvalidUtf8)
    }

    fn replica(&mut self) -> Result<ReplicaId, DecodeError> {
        let node = self.str()?.to_owned();
        let incarnation = self.varint()?;
        Ok(ReplicaId { node, incarnation })
    }

    fn topics(&mut self) -> Result<Vec<Arc<str>>, DecodeError> {
        let n = self.count()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(Arc::from(self.str()?));
        }
        Ok(v)
    }

    fn entries(
        &mut self,
        mut prev: u64,
        topics: &[Arc<str>],
        allowed: impl Fn(u64) -> bool,
    ) -> Result<BTreeMap<u64, Entry>, DecodeError> {
        let n = self.count()?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let c = self.after(prev)?;
            prev = c;
            if !allowed(c) {
                return Err(DecodeError::Invalid(
                    "entry outside the dots its message has seen",
                ));
            }
            let topic = usize::try_from(self.varint()?)
                .ok()
                .and_then(|i| topics.get(i))
                .ok_or(DecodeError::Invalid("topic index out of range"))?
                .clone();
            let key: Arc<str> = Arc::from(self.str()?);
            let owner = self.varint()?;
            let meta_text = self.str()?;
            if !is_json_object(meta_text) {
                return Err(DecodeError::InvalidMeta);
            }
            let meta: Arc<str> = Arc::from(meta_text);
            let phx_ref: Arc<str> = Arc::from(self.str()?);
            let phx_ref_prev = match self.byte()? {
                0 => None,
                1 => Some(Arc::from(self.str()?)),
                _ => return Err(DecodeError::Invalid("bad phx_ref_prev flag")),
            };
            out.insert(
                c,
                Entry {
                    topic,
                    key,
                    owner,
                    meta: Meta {
                        meta,
                        phx_ref,
                        phx_ref_prev,
                    },
                },
            );
        }
        Ok(out)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// A syntactically valid JSON text whose value is an object. serde_json's
/// own recursion limit (128) bounds the stack.
fn is_json_object(text: &str) -> bool {
    let t = text.trim();
    t.starts_with('{')
        && t.ends_with('}')
        && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::State;
    use super::*;

    #[test]
    fn presence_codec_roundtrip_and_garbage() {
        let mut a = State::new(ReplicaId::new("a", 1));
        a.track("t", 1, "k", r#"{"n":"é"}"#).unwrap();
        a.track("u", 2, "k", "{}").unwrap();
        a.update("t", 1, "k", r#"{"n":2}"#).unwrap();
        let d = a.extract_delta();
        a.untrack("u", 2, "k").unwrap();
        let d2 = a.extract_delta();
        for d in [&d, &d2] {
            let bytes = d.encode();
            assert_eq!(Delta::decode(&bytes).as_ref(), Ok(d));
            for cut in 0..bytes.len() {
                assert!(Delta::decode(&bytes[..cut]).is_err());
            }
            assert_eq!(
                FullState::decode(&bytes),
                Err(DecodeError::WrongKind {
                    expected: b'S',
                    found: b'D'
                })
            );
        }
        let b = State::new(ReplicaId::new("b", 1));
        let fs = a.full_state_for(&b.clock());
        assert_eq!(FullState::decode(&fs.encode()), Ok(fs));
        let c = a.clock();
        assert_eq!(Clock::decode(&c.encode()), Ok(c));
        assert_eq!(
            Clock::decode(b"HBPR\x01C\x00\x00\x00\xff"),
            Err(DecodeError::TrailingBytes)
        );
        assert_eq!(
            Clock::decode(b"HBPR\x01C\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"),
            Err(DecodeError::BadVarint)
        );
        assert_eq!(Clock::decode(b"nope"), Err(DecodeError::BadMagic));
        assert!(!is_json_object("[1]") && !is_json_object("{") && is_json_object(" {} "));
    }
}
