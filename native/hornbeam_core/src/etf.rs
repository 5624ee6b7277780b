//! Erlang External Term Format (the bytes of `term_to_binary/1`), for the
//! Python worker port: every `{packet,4}` frame between the VM and
//! `hornbeam_worker` is one encoded term.
//!
//! Only the subset the port protocol needs is supported:
//!
//! | tag | name              | decode            | encode                      |
//! |-----|-------------------|-------------------|-----------------------------|
//! |  97 | SMALL_INTEGER_EXT | `Int`             | `Int` in `0..=255`          |
//! |  98 | INTEGER_EXT       | `Int`             | `Int` in `i32` range        |
//! | 110 | SMALL_BIG_EXT     | `Int` (≤ 8 bytes, must fit `i64`) | other `Int` |
//! |  70 | NEW_FLOAT_EXT     | `Float` (finite)  | `Float` (finite only)       |
//! | 118 | ATOM_UTF8_EXT     | `Atom`            | atoms of ≥ 256 bytes        |
//! | 119 | SMALL_ATOM_UTF8_EXT | `Atom`          | atoms of < 256 bytes        |
//! | 100 | ATOM_EXT (latin1) | `Atom`            | —  (OTP ≤ 25 sends these)   |
//! | 115 | SMALL_ATOM_EXT (latin1) | `Atom`      | —                           |
//! | 109 | BINARY_EXT        | `Binary`          | `Binary`                    |
//! | 104 | SMALL_TUPLE_EXT   | `Tuple`           | tuples of < 256 elements    |
//! | 105 | LARGE_TUPLE_EXT   | `Tuple`           | larger tuples               |
//! | 106 | NIL_EXT           | `List(vec![])`    | empty `List`                |
//! | 108 | LIST_EXT          | `List` (proper)   | non-empty `List`            |
//! | 107 | STRING_EXT        | `List` of `Int`   | —                           |
//! | 116 | MAP_EXT           | `Map`             | `Map`                       |
//!
//! Everything else (pids, refs, funs, compressed terms, improper lists,
//! bigger integers, ...) is an [`EtfError`]. Decoding never panics and never
//! allocates more than the input can justify; nesting is limited to
//! [`DEFAULT_MAX_DEPTH`] (or the depth given to [`decode_with_depth`]).

use std::fmt;

/// The version byte that starts every encoded term.
pub const VERSION: u8 = 131;
/// Default nesting limit of [`decode`] and [`encode`].
pub const DEFAULT_MAX_DEPTH: usize = 256;
/// Longest atom the VM accepts, in characters.
pub const MAX_ATOM_CHARS: usize = 255;

const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const NEW_FLOAT_EXT: u8 = 70;
const ATOM_EXT: u8 = 100;
const SMALL_ATOM_EXT: u8 = 115;
const SMALL_TUPLE_EXT: u8 = 104;
const LARGE_TUPLE_EXT: u8 = 105;
const NIL_EXT: u8 = 106;
const STRING_EXT: u8 = 107;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const MAP_EXT: u8 = 116;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;
const COMPRESSED: u8 = 80;

/// A decoded Erlang term (the subset listed in the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Atom(String),
    Int(i64),
    Float(f64),
    Binary(Vec<u8>),
    Tuple(Vec<Term>),
    /// A proper list; `List(vec![])` is `[]`.
    List(Vec<Term>),
    /// Key/value pairs in the order they were decoded or given.
    Map(Vec<(Term, Term)>),
}

/// Why some bytes could not be decoded, or a term could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtfError {
    /// The input ended in the middle of a term.
    UnexpectedEof,
    /// The first byte was not 131.
    BadVersion(u8),
    /// A compressed term (tag 80); the worker protocol never compresses.
    Compressed,
    /// A tag outside the supported subset (pid, ref, fun, port, ...).
    UnsupportedTag(u8),
    /// An integer outside the `i64` range.
    IntegerTooLarge,
    /// NaN or an infinity: not representable in Erlang.
    NonFiniteFloat,
    /// An atom that is not valid UTF-8, or longer than the VM allows.
    BadAtom,
    /// A list whose tail is not `[]`.
    ImproperList,
    /// Nesting deeper than the limit.
    TooDeep,
    /// Bytes left over after the term.
    TrailingBytes(usize),
    /// A length that does not fit in 32 bits (encode only).
    TooLong,
}

impl fmt::Display for EtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtfError::UnexpectedEof => write!(f, "unexpected end of term"),
            EtfError::BadVersion(v) => write!(f, "bad version byte {v} (expected 131)"),
            EtfError::Compressed => write!(f, "compressed terms are not supported"),
            EtfError::UnsupportedTag(t) => write!(f, "unsupported term tag {t}"),
            EtfError::IntegerTooLarge => write!(f, "integer outside the 64-bit signed range"),
            EtfError::NonFiniteFloat => write!(f, "float is NaN or infinite"),
            EtfError::BadAtom => write!(f, "atom is not valid UTF-8 or is too long"),
            EtfError::ImproperList => write!(f, "improper list"),
            EtfError::TooDeep => write!(f, "term nested too deeply"),
            EtfError::TrailingBytes(n) => write!(f, "{n} trailing bytes after term"),
            EtfError::TooLong => write!(f, "length does not fit in 32 bits"),
        }
    }
}

impl std::error::Error for EtfError {}

// ---------------------------------------------------------------------------
// Constructors and accessors
// ---------------------------------------------------------------------------

impl Term {
    /// `Term::atom("ok")`.
    pub fn atom(name: &str) -> Term {
        Term::Atom(name.to_owned())
    }

    /// A binary from anything byte-like (`&str`, `&[u8]`, `Vec<u8>`, ...).
    pub fn binary(bytes: impl AsRef<[u8]>) -> Term {
        Term::Binary(bytes.as_ref().to_vec())
    }

    pub fn tuple(items: Vec<Term>) -> Term {
        Term::Tuple(items)
    }

    pub fn list(items: Vec<Term>) -> Term {
        Term::List(items)
    }

    /// A map with atom keys: `Term::atom_map([("ok", Term::Int(1))])`.
    pub fn atom_map<'a>(pairs: impl IntoIterator<Item = (&'a str, Term)>) -> Term {
        Term::Map(pairs.into_iter().map(|(k, v)| (Term::atom(k), v)).collect())
    }

    /// The atoms `true` / `false`.
    pub fn boolean(b: bool) -> Term {
        Term::atom(if b { "true" } else { "false" })
    }

    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// True when the term is the atom `name`.
    pub fn is_atom(&self, name: &str) -> bool {
        self.as_atom() == Some(name)
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Term::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_float(&self) -> Option<f64> {
        match self {
            Term::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            Term::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// A binary holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_binary().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Term]> {
        match self {
            Term::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Term, Term)]> {
        match self {
            Term::Map(m) => Some(m),
            _ => None,
        }
    }

    /// `true` / `false` atoms as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_atom() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        }
    }

    /// The value under the atom key `key` of a map (first match).
    pub fn get(&self, key: &str) -> Option<&Term> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.is_atom(key))
            .map(|(_, v)| v)
    }

    /// Encodes with [`encode`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, EtfError> {
        encode(self)
    }
}

impl From<i64> for Term {
    fn from(i: i64) -> Term {
        Term::Int(i)
    }
}

impl From<f64> for Term {
    fn from(f: f64) -> Term {
        Term::Float(f)
    }
}

impl From<bool> for Term {
    fn from(b: bool) -> Term {
        Term::boolean(b)
    }
}

impl From<Vec<u8>> for Term {
    fn from(b: Vec<u8>) -> Term {
        Term::Binary(b)
    }
}

impl From<&[u8]> for Term {
    fn from(b: &[u8]) -> Term {
        Term::Binary(b.to_vec())
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Decodes one complete term (version byte included); trailing bytes are an
/// error.
pub fn decode(bytes: &[u8]) -> Result<Term, EtfError> {
    decode_with_depth(bytes, DEFAULT_MAX_DEPTH)
}

/// [`decode`] with an explicit nesting limit (a scalar at top level is depth
/// 1; `max_depth == 0` rejects everything).
pub fn decode_with_depth(bytes: &[u8], max_depth: usize) -> Result<Term, EtfError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(EtfError::BadVersion(version));
    }
    let term = r.term(max_depth)?;
    let rest = bytes.len() - r.pos;
    if rest != 0 {
        return Err(EtfError::TrailingBytes(rest));
    }
    Ok(term)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EtfError> {
        if n > self.remaining() {
            return Err(EtfError::UnexpectedEof);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, EtfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, EtfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, EtfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A capacity hint that the remaining input can justify: every element
    /// takes at least `min_size` bytes.
    fn capacity(&self, n: usize, min_size: usize) -> usize {
        n.min(self.remaining() / min_size.max(1))
    }

    fn term(&mut self, depth: usize) -> Result<Term, EtfError> {
        if depth == 0 {
            return Err(EtfError::TooDeep);
        }
        let tag = self.u8()?;
        match tag {
            SMALL_INTEGER_EXT => Ok(Term::Int(i64::from(self.u8()?))),
            INTEGER_EXT => {
                let b = self.take(4)?;
                Ok(Term::Int(i64::from(i32::from_be_bytes([
                    b[0], b[1], b[2], b[3],
                ]))))
            }
            SMALL_BIG_EXT => {
                let n = usize::from(self.u8()?);
                let sign = self.u8()?;
                let digits = self.take(n)?;
                big_to_i64(sign, digits).map(Term::Int)
            }
            LARGE_BIG_EXT => Err(EtfError::IntegerTooLarge),
            NEW_FLOAT_EXT => {
                let b = self.take(8)?;
                let f = f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                if f.is_finite() {
                    Ok(Term::Float(f))
                } else {
                    Err(EtfError::NonFiniteFloat)
                }
            }
            ATOM_UTF8_EXT => {
                let n = usize::from(self.u16()?);
                let b = self.take(n)?;
                utf8_atom(b)
            }
            SMALL_ATOM_UTF8_EXT => {
                let n = usize::from(self.u8()?);
                let b = self.take(n)?;
                utf8_atom(b)
            }
            ATOM_EXT => {
                let n = usize::from(self.u16()?);
                Ok(latin1_atom(self.take(n)?))
            }
            SMALL_ATOM_EXT => {
                let n = usize::from(self.u8()?);
                Ok(latin1_atom(self.take(n)?))
            }
            BINARY_EXT => {
                let n = self.u32()? as usize;
                Ok(Term::Binary(self.take(n)?.to_vec()))
            }
            SMALL_TUPLE_EXT => {
                let n = usize::from(self.u8()?);
                self.elements(n, depth).map(Term::Tuple)
            }
            LARGE_TUPLE_EXT => {
                let n = self.u32()? as usize;
                self.elements(n, depth).map(Term::Tuple)
            }
            NIL_EXT => Ok(Term::List(Vec::new())),
            STRING_EXT => {
                let n = usize::from(self.u16()?);
                let b = self.take(n)?;
                Ok(Term::List(
                    b.iter().map(|&c| Term::Int(i64::from(c))).collect(),
                ))
            }
            LIST_EXT => {
                let n = self.u32()? as usize;
                let items = self.elements(n, depth)?;
                // the tail must be [] (NIL_EXT); anything else is improper
                match self.u8()? {
                    NIL_EXT => Ok(Term::List(items)),
                    _ => Err(EtfError::ImproperList),
                }
            }
            MAP_EXT => {
                let n = self.u32()? as usize;
                let mut pairs = Vec::with_capacity(self.capacity(n, 2));
                for _ in 0..n {
                    let k = self.term(depth - 1)?;
                    let v = self.term(depth - 1)?;
                    pairs.push((k, v));
                }
                Ok(Term::Map(pairs))
            }
            COMPRESSED => Err(EtfError::Compressed),
            other => Err(EtfError::UnsupportedTag(other)),
        }
    }

    fn elements(&mut self, n: usize, depth: usize) -> Result<Vec<Term>, EtfError> {
        let mut items = Vec::with_capacity(self.capacity(n, 1));
        for _ in 0..n {
            items.push(self.term(depth - 1)?);
        }
        Ok(items)
    }
}

/// latin1: every byte is the code point of the same value.
fn latin1_atom(bytes: &[u8]) -> Term {
    Term::Atom(bytes.iter().map(|&c| char::from(c)).collect())
}

fn utf8_atom(bytes: &[u8]) -> Result<Term, EtfError> {
    std::str::from_utf8(bytes)
        .map(|s| Term::Atom(s.to_owned()))
        .map_err(|_| EtfError::BadAtom)
}

/// Little-endian magnitude `digits` with sign byte `sign` (0 = +) to i64.
fn big_to_i64(sign: u8, digits: &[u8]) -> Result<i64, EtfError> {
    let mut magnitude: u64 = 0;
    for (i, &d) in digits.iter().enumerate() {
        if i >= 8 {
            // non-normalised encodings may carry high zero bytes
            if d != 0 {
                return Err(EtfError::IntegerTooLarge);
            }
            continue;
        }
        magnitude |= u64::from(d) << (8 * i);
    }
    if sign == 0 {
        i64::try_from(magnitude).map_err(|_| EtfError::IntegerTooLarge)
    } else if magnitude <= i64::MAX as u64 {
        Ok(-(magnitude as i64))
    } else if magnitude == i64::MAX as u64 + 1 {
        Ok(i64::MIN)
    } else {
        Err(EtfError::IntegerTooLarge)
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Encodes `term` (version byte included), as `term_to_binary/1` would,
/// with the depth limit [`DEFAULT_MAX_DEPTH`].
pub fn encode(term: &Term) -> Result<Vec<u8>, EtfError> {
    let mut out = Vec::with_capacity(64);
    encode_into(term, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `term` (version byte included) to `out`. On error
/// `out` may hold a partial encoding.
pub fn encode_into(term: &Term, out: &mut Vec<u8>) -> Result<(), EtfError> {
    out.push(VERSION);
    write_term(term, out, DEFAULT_MAX_DEPTH)
}

fn len_u32(n: usize) -> Result<[u8; 4], EtfError> {
    u32::try_from(n)
        .map(u32::to_be_bytes)
        .map_err(|_| EtfError::TooLong)
}

fn write_term(term: &Term, out: &mut Vec<u8>, depth: usize) -> Result<(), EtfError> {
    if depth == 0 {
        return Err(EtfError::TooDeep);
    }
    match term {
        Term::Int(i) => write_int(*i, out),
        Term::Float(f) => {
            if !f.is_finite() {
                return Err(EtfError::NonFiniteFloat);
            }
            out.push(NEW_FLOAT_EXT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Term::Atom(a) => {
            if a.chars().count() > MAX_ATOM_CHARS {
                return Err(EtfError::BadAtom);
            }
            if a.len() < 256 {
                out.push(SMALL_ATOM_UTF8_EXT);
                out.push(a.len() as u8);
            } else {
                // ≤ 255 chars of ≤ 4 bytes each, so the length fits in u16
                out.push(ATOM_UTF8_EXT);
                out.extend_from_slice(&(a.len() as u16).to_be_bytes());
            }
            out.extend_from_slice(a.as_bytes());
        }
        Term::Binary(b) => {
            out.push(BINARY_EXT);
            out.extend_from_slice(&len_u32(b.len())?);
            out.extend_from_slice(b);
        }
        Term::Tuple(items) => {
            if items.len() < 256 {
                out.push(SMALL_TUPLE_EXT);
                out.push(items.len() as u8);
            } else {
                out.push(LARGE_TUPLE_EXT);
                out.extend_from_slice(&len_u32(items.len())?);
            }
            for item in items {
                write_term(item, out, depth - 1)?;
            }
        }
        Term::List(items) => {
            if items.is_empty() {
                out.push(NIL_EXT);
            } else {
                out.push(LIST_EXT);
                out.extend_from_slice(&len_u32(items.len())?);
                for item in items {
                    write_term(item, out, depth - 1)?;
                }
                out.push(NIL_EXT);
            }
        }
        Term::Map(pairs) => {
            out.push(MAP_EXT);
            out.extend_from_slice(&len_u32(pairs.len())?);
            for (k, v) in pairs {
                write_term(k, out, depth - 1)?;
                write_term(v, out, depth - 1)?;
            }
        }
    }
    Ok(())
}

fn write_int(i: i64, out: &mut Vec<u8>) {
    if (0..=255).contains(&i) {
        out.push(SMALL_INTEGER_EXT);
        out.push(i as u8);
    } else if let Ok(small) = i32::try_from(i) {
        out.push(INTEGER_EXT);
        out.extend_from_slice(&small.to_be_bytes());
    } else {
        let sign = u8::from(i < 0);
        let mut magnitude = i.unsigned_abs();
        let mut digits = Vec::with_capacity(8);
        while magnitude > 0 {
            digits.push((magnitude & 0xff) as u8);
            magnitude >>= 8;
        }
        out.push(SMALL_BIG_EXT);
        out.push(digits.len() as u8);
        out.push(sign);
        out.extend_from_slice(&digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(t: Term) {
        let bytes = encode(&t).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), t);
    }

    #[test]
    fn known_encodings_from_the_vm() {
        // term_to_binary({call, 1, join, #{}}) in OTP 25 (ATOM_EXT atoms)
        let otp25 = [
            131, 104, 4, 100, 0, 4, 99, 97, 108, 108, 97, 1, 100, 0, 4, 106, 111, 105, 110, 116, 0,
            0, 0, 0,
        ];
        // the same in OTP 26+ (SMALL_ATOM_UTF8_EXT), which is also what we write
        let bytes = [
            131, 104, 4, 119, 4, 99, 97, 108, 108, 97, 1, 119, 4, 106, 111, 105, 110, 116, 0, 0, 0,
            0,
        ];
        let t = decode(&bytes).unwrap();
        assert_eq!(decode(&otp25).unwrap(), t);
        assert_eq!(
            decode(&[131, 115, 2, b'o', b'k']).unwrap(),
            Term::atom("ok")
        );
        assert_eq!(
            t,
            Term::tuple(vec![
                Term::atom("call"),
                Term::Int(1),
                Term::atom("join"),
                Term::Map(vec![])
            ])
        );
        assert_eq!(encode(&t).unwrap(), bytes);
        // term_to_binary(<<"hi">>)
        assert_eq!(
            decode(&[131, 109, 0, 0, 0, 2, b'h', b'i']).unwrap(),
            Term::binary("hi")
        );
        // term_to_binary("ab") is STRING_EXT
        assert_eq!(
            decode(&[131, 107, 0, 2, b'a', b'b']).unwrap(),
            Term::list(vec![Term::Int(97), Term::Int(98)])
        );
        // term_to_binary(-1), term_to_binary(1 bsl 40), term_to_binary(1.5)
        assert_eq!(
            decode(&[131, 98, 255, 255, 255, 255]).unwrap(),
            Term::Int(-1)
        );
        assert_eq!(
            decode(&[131, 110, 6, 0, 0, 0, 0, 0, 0, 1]).unwrap(),
            Term::Int(1 << 40)
        );
        assert_eq!(
            decode(&[131, 70, 63, 248, 0, 0, 0, 0, 0, 0]).unwrap(),
            Term::Float(1.5)
        );
        // ATOM_EXT latin1 'é'
        assert_eq!(decode(&[131, 100, 0, 1, 0xe9]).unwrap(), Term::atom("é"));
    }

    #[test]
    fn integers_round_trip_at_the_edges() {
        for i in [
            0,
            255,
            256,
            -1,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN) - 1,
            i64::MAX,
            i64::MIN,
        ] {
            rt(Term::Int(i));
        }
    }

    #[test]
    fn bigs_outside_i64_are_errors() {
        // 2^63 (positive)
        let mut b = vec![131, 110, 8, 0];
        b.extend_from_slice(&(1u64 << 63).to_le_bytes());
        assert_eq!(decode(&b), Err(EtfError::IntegerTooLarge));
        // -2^63 is fine
        b[3] = 1;
        assert_eq!(decode(&b), Ok(Term::Int(i64::MIN)));
        // 9 bytes with a non-zero top byte
        assert_eq!(
            decode(&[131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(EtfError::IntegerTooLarge)
        );
        assert_eq!(
            decode(&[131, 111, 0, 0, 0, 1, 0, 1]),
            Err(EtfError::IntegerTooLarge)
        );
    }

    #[test]
    fn errors() {
        assert_eq!(decode(&[]), Err(EtfError::UnexpectedEof));
        assert_eq!(decode(&[130, 106]), Err(EtfError::BadVersion(130)));
        assert_eq!(decode(&[131, 80, 0, 0, 0, 1, 1]), Err(EtfError::Compressed));
        assert_eq!(decode(&[131, 106, 0]), Err(EtfError::TrailingBytes(1)));
        // [1 | 2]
        assert_eq!(
            decode(&[131, 108, 0, 0, 0, 1, 97, 1, 97, 2]),
            Err(EtfError::ImproperList)
        );
        // a pid (NEW_PID_EXT)
        assert_eq!(decode(&[131, 88, 0]), Err(EtfError::UnsupportedTag(88)));
        // a list claiming 4 billion elements in a 10-byte input
        assert_eq!(
            decode(&[131, 108, 255, 255, 255, 255, 106]),
            Err(EtfError::UnexpectedEof)
        );
        assert_eq!(
            decode(&[131, 108, 255, 255, 255, 255, 97, 1]),
            Err(EtfError::UnexpectedEof)
        );
        // NaN
        assert_eq!(
            decode(&[131, 70, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
            Err(EtfError::NonFiniteFloat)
        );
        assert_eq!(
            encode(&Term::Float(f64::NAN)),
            Err(EtfError::NonFiniteFloat)
        );
        assert_eq!(encode(&Term::Atom("a".repeat(256))), Err(EtfError::BadAtom));
        // invalid UTF-8 atom
        assert_eq!(decode(&[131, 119, 1, 0xff]), Err(EtfError::BadAtom));
    }

    #[test]
    fn depth_is_limited() {
        let mut bytes = vec![131];
        for _ in 0..10_000 {
            bytes.extend_from_slice(&[104, 1]);
        }
        bytes.push(106);
        assert_eq!(decode(&bytes), Err(EtfError::TooDeep));
        let mut t = Term::List(vec![]);
        for _ in 0..DEFAULT_MAX_DEPTH {
            t = Term::List(vec![t]);
        }
        assert_eq!(encode(&t), Err(EtfError::TooDeep));
        assert_eq!(
            decode_with_depth(&[131, 104, 1, 106], 1),
            Err(EtfError::TooDeep)
        );
        assert!(decode_with_depth(&[131, 104, 1, 106], 2).is_ok());
    }

    #[test]
    fn accessors() {
        let m = Term::atom_map([("id", Term::Int(3)), ("name", Term::binary("x"))]);
        assert_eq!(m.get("id").and_then(Term::as_int), Some(3));
        assert_eq!(m.get("name").and_then(Term::as_str), Some("x"));
        assert_eq!(m.get("nope"), None);
        assert_eq!(Term::from(true).as_bool(), Some(true));
        assert!(Term::atom("ok").is_atom("ok"));
        rt(m);
        rt(Term::Atom("ü".repeat(255)));
        rt(Term::Tuple((0..300).map(Term::Int).collect()));
    }
}
