//! Conversions between Erlang terms, JSON text and Python objects.
//!
//! * ETF ↔ Python is a fixed, symmetric mapping used for the frames the
//!   runtime builds: atom ↔ `str`, binary ↔ `bytes`, integer ↔ `int`,
//!   float ↔ `float`, tuple ↔ `tuple`, list ↔ `list`, map ↔ `dict`; in the
//!   Python → ETF direction `True`/`False` become the atoms `true`/`false`
//!   and `None` becomes `undefined`.
//! * JSON ↔ Python is done here in Rust (serde_json), so payloads never pass
//!   through Python's `json` module. Decoding keeps object key order.

use std::fmt;

use hornbeam_core::etf::{Term, MAX_ATOM_CHARS};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting accepted when encoding Python objects as JSON or terms.
pub const MAX_DEPTH: usize = 128;

// ---------------------------------------------------------------------------
// ETF -> Python
// ---------------------------------------------------------------------------

/// Converts a decoded term to a Python object (see the module docs).
pub fn term_to_py<'py>(py: Python<'py>, term: &Term) -> PyResult<Bound<'py, PyAny>> {
    Ok(match term {
        Term::Atom(a) => PyString::new(py, a).into_any(),
        Term::Int(i) => PyInt::new(py, *i).into_any(),
        Term::Float(f) => PyFloat::new(py, *f).into_any(),
        Term::Binary(b) => PyBytes::new(py, b).into_any(),
        Term::Tuple(items) => {
            let items = items
                .iter()
                .map(|t| term_to_py(py, t))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, items)?.into_any()
        }
        Term::List(items) => {
            let items = items
                .iter()
                .map(|t| term_to_py(py, t))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Term::Map(pairs) => {
            let dict = PyDict::new(py);
            for (k, v) in pairs {
                dict.set_item(term_to_py(py, k)?, term_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

// ---------------------------------------------------------------------------
// Python -> ETF
// ---------------------------------------------------------------------------

/// Converts a Python object built by the runtime into a term (see the module
/// docs). Anything else is a `TypeError`.
pub fn py_to_term(obj: &Bound<'_, PyAny>) -> PyResult<Term> {
    py_to_term_at(obj, MAX_DEPTH)
}

fn py_to_term_at(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Term> {
    if depth == 0 {
        return Err(PyValueError::new_err("term nested too deeply"));
    }
    if obj.is_none() {
        return Ok(Term::atom("undefined"));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Term::boolean(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str()?;
        if s.chars().count() > MAX_ATOM_CHARS {
            return Err(PyValueError::new_err(format!(
                "atom longer than {MAX_ATOM_CHARS} characters"
            )));
        }
        return Ok(Term::Atom(s.to_owned()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Term::Binary(b.as_bytes().to_vec()));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj
            .extract::<i64>()
            .map(Term::Int)
            .map_err(|_| PyValueError::new_err("integer outside the 64-bit signed range"));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(PyValueError::new_err(
                "NaN and infinities cannot be sent to Erlang",
            ));
        }
        return Ok(Term::Float(v));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let items = t
            .iter()
            .map(|i| py_to_term_at(&i, depth - 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Term::Tuple(items));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let items = l
            .iter()
            .map(|i| py_to_term_at(&i, depth - 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Term::List(items));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut pairs = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            pairs.push((py_to_term_at(&k, depth - 1)?, py_to_term_at(&v, depth - 1)?));
        }
        return Ok(Term::Map(pairs));
    }
    Err(PyTypeError::new_err(format!(
        "cannot send a {} to Erlang",
        type_name(obj)
    )))
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

// ---------------------------------------------------------------------------
// Python -> JSON
// ---------------------------------------------------------------------------

/// Why a Python value could not be written as JSON; `path` is built while
/// unwinding, innermost segment first.
#[derive(Debug)]
pub struct JsonError {
    pub kind: JsonErrorKind,
    pub message: String,
    path: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// A value of a type JSON cannot represent (`TypeError`).
    Type,
    /// A value of the right type that JSON cannot hold (`ValueError`).
    Value,
}

impl JsonError {
    fn new(kind: JsonErrorKind, message: String) -> JsonError {
        JsonError {
            kind,
            message,
            path: Vec::new(),
        }
    }

    fn at(mut self, segment: impl FnOnce() -> String) -> JsonError {
        self.path.push(segment());
        self
    }

    /// `$`, `$.user.tags[2]`, ...
    pub fn path(&self) -> String {
        let mut p = String::from("$");
        for seg in self.path.iter().rev() {
            p.push_str(seg);
        }
        p
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} (at {})", self.message, self.path())
        }
    }
}

impl From<JsonError> for PyErr {
    fn from(e: JsonError) -> PyErr {
        match e.kind {
            JsonErrorKind::Type => PyTypeError::new_err(e.to_string()),
            JsonErrorKind::Value => PyValueError::new_err(e.to_string()),
        }
    }
}

fn py_err_to_json(e: PyErr) -> JsonError {
    JsonError::new(JsonErrorKind::Value, e.to_string())
}

/// Appends the JSON text of `obj` to `out`. Accepts dict (and other
/// mappings) with `str` keys, list, tuple, str, int (64-bit), finite float,
/// bool and None.
pub fn py_to_json(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), JsonError> {
    write_json(obj, out, MAX_DEPTH)
}

/// [`py_to_json`] into a fresh buffer.
pub fn py_to_json_vec(obj: &Bound<'_, PyAny>) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::with_capacity(64);
    py_to_json(obj, &mut out)?;
    Ok(out)
}

fn write_str(s: &str, out: &mut Vec<u8>) -> Result<(), JsonError> {
    serde_json::to_writer(&mut *out, s)
        .map_err(|e| JsonError::new(JsonErrorKind::Value, e.to_string()))
}

fn write_json(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> Result<(), JsonError> {
    if depth == 0 {
        return Err(JsonError::new(
            JsonErrorKind::Value,
            format!("JSON nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    if obj.is_none() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
        return Ok(());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str().map_err(py_err_to_json)?;
        return write_str(s, out);
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            out.extend_from_slice(i.to_string().as_bytes());
            return Ok(());
        }
        if let Ok(u) = obj.extract::<u64>() {
            out.extend_from_slice(u.to_string().as_bytes());
            return Ok(());
        }
        return Err(JsonError::new(
            JsonErrorKind::Value,
            "integer does not fit in 64 bits".to_owned(),
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(JsonError::new(
                JsonErrorKind::Value,
                format!("float {v} is not allowed in JSON"),
            ));
        }
        return serde_json::to_writer(&mut *out, &v)
            .map_err(|e| JsonError::new(JsonErrorKind::Value, e.to_string()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        out.push(b'{');
        for (n, (k, v)) in d.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_key(&k, &v, out, depth)?;
        }
        out.push(b'}');
        return Ok(());
    }
    if let Ok(l) = obj.cast::<PyList>() {
        out.push(b'[');
        for (n, item) in l.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_json(&item, out, depth - 1).map_err(|e| e.at(|| format!("[{n}]")))?;
        }
        out.push(b']');
        return Ok(());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        out.push(b'[');
        for (n, item) in t.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_json(&item, out, depth - 1).map_err(|e| e.at(|| format!("[{n}]")))?;
        }
        out.push(b']');
        return Ok(());
    }
    // Other mappings (e.g. socket.assigns, a MappingProxyType).
    if obj.hasattr("items").unwrap_or(false) && obj.hasattr("__getitem__").unwrap_or(false) {
        let items = obj.call_method0("items").map_err(py_err_to_json)?;
        out.push(b'{');
        for (n, pair) in items.try_iter().map_err(py_err_to_json)?.enumerate() {
            let pair = pair.map_err(py_err_to_json)?;
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                pair.extract().map_err(|e: PyErr| py_err_to_json(e))?;
            if n > 0 {
                out.push(b',');
            }
            write_key(&k, &v, out, depth)?;
        }
        out.push(b'}');
        return Ok(());
    }
    Err(JsonError::new(
        JsonErrorKind::Type,
        format!("Object of type {} is not JSON serializable", type_name(obj)),
    ))
}

fn write_key(
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), JsonError> {
    let Ok(key) = k.cast::<PyString>() else {
        return Err(JsonError::new(
            JsonErrorKind::Type,
            format!("JSON object keys must be str, not {}", type_name(k)),
        ));
    };
    let key = key.to_str().map_err(py_err_to_json)?;
    write_str(key, out)?;
    out.push(b':');
    write_json(v, out, depth - 1).map_err(|e| e.at(|| path_segment(key)))
}

fn path_segment(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || c == '_') {
        format!(".{key}")
    } else {
        format!("[{key:?}]")
    }
}

// ---------------------------------------------------------------------------
// JSON -> Python
// ---------------------------------------------------------------------------

/// Parses JSON text straight into Python objects (objects become dicts in
/// document order). serde_json's recursion limit (128) applies.
pub fn json_to_py<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = PySeed { py }
        .deserialize(&mut de)
        .map_err(|e| PyValueError::new_err(format!("invalid JSON: {e}")))?;
    de.end()
        .map_err(|e| PyValueError::new_err(format!("invalid JSON: {e}")))?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct PySeed<'py> {
    py: Python<'py>,
}

fn de_err<E: serde::de::Error>(e: PyErr) -> E {
    E::custom(e)
}

impl<'de, 'py> DeserializeSeed<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.py.None().into_bound(self.py))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.py, v).to_owned().into_any())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(PyInt::new(self.py, v).into_any())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(PyInt::new(self.py, v).into_any())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.py, v).into_any())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.py, v).into_any())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.py);
        while let Some(item) = seq.next_element_seed(self)? {
            list.append(item).map_err(de_err)?;
        }
        Ok(list.into_any())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.py);
        while let Some(key) = map.next_key_seed(KeySeed { py: self.py })? {
            let value = map.next_value_seed(self)?;
            dict.set_item(key, value).map_err(de_err)?;
        }
        Ok(dict.into_any())
    }
}

/// Object keys: always strings in JSON.
struct KeySeed<'py> {
    py: Python<'py>,
}

impl<'de, 'py> DeserializeSeed<'de> for KeySeed<'py> {
    type Value = Bound<'py, PyString>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'py> Visitor<'de> for KeySeed<'py> {
    type Value = Bound<'py, PyString>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.py, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_py<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
        Python::initialize();
        Python::attach(f)
    }

    fn eval<'py>(py: Python<'py>, code: &std::ffi::CStr) -> Bound<'py, PyAny> {
        py.eval(code, None, None).expect("eval")
    }

    #[test]
    fn json_round_trip_keeps_key_order() {
        with_py(|py| {
            let text = br#"{"b":1,"a":[1,2.5,null,true,"\u00e9\n"],"c":{"z":{},"y":[]},"n":-9223372036854775808,"u":18446744073709551615}"#;
            let obj = json_to_py(py, text).expect("decode");
            let keys: Vec<String> = obj
                .call_method0("keys")
                .and_then(|k| k.try_iter()?.map(|k| k?.extract::<String>()).collect())
                .expect("keys");
            assert_eq!(keys, ["b", "a", "c", "n", "u"]);
            let again = py_to_json_vec(&obj).expect("encode");
            assert_eq!(
                std::str::from_utf8(&again).expect("utf8"),
                r#"{"b":1,"a":[1,2.5,null,true,"é\n"],"c":{"z":{},"y":[]},"n":-9223372036854775808,"u":18446744073709551615}"#
            );
        });
    }

    #[test]
    fn json_errors() {
        with_py(|py| {
            for bad in [&b"{"[..], b"[1,]", b"{} x", b"nul", b"\"\\ud800\""] {
                assert!(json_to_py(py, bad).is_err(), "{:?}", bad);
            }
            let deep = "[".repeat(200) + &"]".repeat(200);
            assert!(json_to_py(py, deep.as_bytes()).is_err());
        });
    }

    #[test]
    fn json_encode_errors_name_the_path() {
        with_py(|py| {
            let e = py_to_json_vec(&eval(py, c"{'user': {'tags': [1, {2}]}}")).unwrap_err();
            assert_eq!(e.kind, JsonErrorKind::Type);
            assert_eq!(e.path(), "$.user.tags[1]");
            assert!(e.to_string().contains("set"), "{e}");
            let e = py_to_json_vec(&eval(py, c"{1: 2}")).unwrap_err();
            assert!(e.to_string().contains("keys must be str"), "{e}");
            let e = py_to_json_vec(&eval(py, c"[float('nan')]")).unwrap_err();
            assert_eq!(e.kind, JsonErrorKind::Value);
            assert!(py_to_json_vec(&eval(py, c"2**64")).is_err());
            let mut deep = eval(py, c"[]");
            for _ in 0..200 {
                deep = pyo3::types::PyList::new(py, [deep])
                    .expect("list")
                    .into_any();
            }
            assert!(py_to_json_vec(&deep).is_err());
        });
    }

    #[test]
    fn json_accepts_tuples_and_mappings() {
        with_py(|py| {
            let obj = eval(
                py,
                c"__import__('types').MappingProxyType({'t': (1, 'x'), 'b': False})",
            );
            assert_eq!(
                py_to_json_vec(&obj).expect("encode"),
                br#"{"t":[1,"x"],"b":false}"#
            );
        });
    }

    #[test]
    fn terms_map_to_python_and_back() {
        with_py(|py| {
            let term = Term::tuple(vec![
                Term::atom("ok"),
                Term::Int(-5),
                Term::Float(1.5),
                Term::binary("bin"),
                Term::list(vec![Term::Int(1)]),
                Term::Map(vec![(Term::atom("k"), Term::binary("v"))]),
            ]);
            let obj = term_to_py(py, &term).expect("to py");
            assert_eq!(
                obj.repr().expect("repr").to_string(),
                "('ok', -5, 1.5, b'bin', [1], {'k': b'v'})"
            );
            assert_eq!(py_to_term(&obj).expect("to term"), term);
            let extra = eval(py, c"(True, False, None)");
            assert_eq!(
                py_to_term(&extra).expect("to term"),
                Term::tuple(vec![
                    Term::atom("true"),
                    Term::atom("false"),
                    Term::atom("undefined")
                ])
            );
            assert!(py_to_term(&eval(py, c"object()")).is_err());
            assert!(py_to_term(&eval(py, c"'a' * 300")).is_err());
            assert!(py_to_term(&eval(py, c"2**63")).is_err());
        });
    }
}
