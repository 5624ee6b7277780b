//! JSON text <-> Erlang terms, for the few places Erlang needs a payload's
//! value (presence metas, join params of Erlang channels). Objects become maps
//! with binary keys, arrays lists, strings binaries, numbers integers/floats,
//! and `true`/`false`/`null` atoms; the reverse also accepts atom and integer
//! map keys and other atoms as strings.

use rustler::{Atom, Binary, Encoder, Env, NewBinary, NifResult, Term, TermType};
use serde_json::Value;

use super::atoms;

/// Deepest Erlang term `encode` walks before answering `{error, {not_json, too_deep}}`,
/// so a pathological term cannot overflow the scheduler's stack.
const MAX_ENCODE_DEPTH: usize = 512;

pub fn decode<'a>(env: Env<'a>, input: Term<'a>, max_depth: usize) -> NifResult<Term<'a>> {
    let bytes = Binary::from_iolist(input)?;
    match hornbeam_core::json::parse(bytes.as_slice(), max_depth) {
        Ok(value) => Ok((atoms::ok(), value_to_term(env, &value)?).encode(env)),
        Err(e) => {
            let reason = Atom::from_str(env, e.as_str())?;
            let text = e.to_string();
            Ok((atoms::error(), reason, new_binary(env, text.as_bytes())).encode(env))
        }
    }
}

fn new_binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut out = NewBinary::new(env, bytes.len());
    out.as_mut_slice().copy_from_slice(bytes);
    Binary::from(out).to_term(env)
}

fn value_to_term<'a>(env: Env<'a>, value: &Value) -> NifResult<Term<'a>> {
    Ok(match value {
        Value::Null => atoms::null().encode(env),
        Value::Bool(b) => b.encode(env),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.encode(env)
            } else if let Some(u) = n.as_u64() {
                u.encode(env)
            } else {
                n.as_f64().unwrap_or(0.0).encode(env)
            }
        }
        Value::String(s) => new_binary(env, s.as_bytes()),
        Value::Array(items) => {
            let terms = items
                .iter()
                .map(|v| value_to_term(env, v))
                .collect::<NifResult<Vec<_>>>()?;
            terms.encode(env)
        }
        Value::Object(map) => {
            let mut keys = Vec::with_capacity(map.len());
            let mut values = Vec::with_capacity(map.len());
            for (k, v) in map {
                keys.push(new_binary(env, k.as_bytes()));
                values.push(value_to_term(env, v)?);
            }
            Term::map_from_term_arrays(env, &keys, &values)?
        }
    })
}

pub fn encode<'a>(env: Env<'a>, term: Term<'a>) -> NifResult<Term<'a>> {
    let mut out = Vec::with_capacity(64);
    match write_term(&mut out, term, 0) {
        Ok(()) => Ok((atoms::ok(), new_binary(env, &out)).encode(env)),
        Err(bad) => Ok((atoms::error(), (atoms::not_json(), bad)).encode(env)),
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_term<'a>(out: &mut Vec<u8>, term: Term<'a>, depth: usize) -> Result<(), Term<'a>> {
    if depth > MAX_ENCODE_DEPTH {
        return Err(term);
    }
    match term.get_type() {
        TermType::Atom => {
            let name = term.atom_to_string().map_err(|_| term)?;
            match name.as_str() {
                "null" | "true" | "false" => out.extend_from_slice(name.as_bytes()),
                // Elixir's nil is the atom `nil`: it means null there.
                "nil" => out.extend_from_slice(b"null"),
                other => write_str(out, other),
            }
        }
        TermType::Binary => {
            let b: Binary = term.decode().map_err(|_| term)?;
            let s = std::str::from_utf8(b.as_slice()).map_err(|_| term)?;
            write_str(out, s);
        }
        TermType::Integer => {
            if let Ok(i) = term.decode::<i64>() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Ok(u) = term.decode::<u64>() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(term);
            }
        }
        TermType::Float => {
            let f: f64 = term.decode().map_err(|_| term)?;
            let _ = serde_json::to_writer(&mut *out, &f);
        }
        TermType::List => {
            out.push(b'[');
            let mut first = true;
            let mut rest = term;
            loop {
                // `list_get_cell` fails on `[]` (the end) and on an improper tail.
                let Ok((head, tail)) = rest.list_get_cell() else {
                    if rest.get_type() == TermType::List {
                        break;
                    }
                    return Err(term);
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                write_term(out, head, depth + 1)?;
                rest = tail;
            }
            out.push(b']');
        }
        TermType::Map => {
            out.push(b'{');
            let iter = rustler::types::map::MapIterator::new(term).ok_or(term)?;
            let mut first = true;
            for (k, v) in iter {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_key(out, k)?;
                out.push(b':');
                write_term(out, v, depth + 1)?;
            }
            out.push(b'}');
        }
        _ => return Err(term),
    }
    Ok(())
}

fn write_key<'a>(out: &mut Vec<u8>, key: Term<'a>) -> Result<(), Term<'a>> {
    match key.get_type() {
        TermType::Binary => {
            let b: Binary = key.decode().map_err(|_| key)?;
            let s = std::str::from_utf8(b.as_slice()).map_err(|_| key)?;
            write_str(out, s);
        }
        TermType::Atom => {
            let name = key.atom_to_string().map_err(|_| key)?;
            write_str(out, &name);
        }
        TermType::Integer => {
            let i: i64 = key.decode().map_err(|_| key)?;
            write_str(out, &i.to_string());
        }
        _ => return Err(key),
    }
    Ok(())
}
