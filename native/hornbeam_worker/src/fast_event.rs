//! The reader's fast path for the hottest call: a client event whose
//! handler is a `def`.
//!
//! `hornbeam_runtime.dispatch` would turn the call's whole argument map into
//! Python dicts, then find the handler, build the `Socket` and decode the
//! payload in Python: about two thirds of the worker's time per round trip.
//! Here the reader does those steps on the decoded term, in Rust, and hands
//! the handler, payload and socket to `hornbeam_runtime.submit_event`, which
//! queues the call on the pool exactly as `dispatch` does.
//!
//! Anything unusual (no such channel or handler, an `async def` handler, a
//! payload that is not valid JSON, a malformed argument map) is left to
//! `dispatch`, which owns the error answers: the fast path only ever
//! declines, it never answers a call itself.

use std::collections::HashMap;
use std::sync::Mutex;

use hornbeam_core::etf::{self, Term};
use pyo3::prelude::*;
use pyo3::type_object::PyTypeCheck;
use pyo3::types::{PyBytes, PyDict, PyString, PyType};
use pyo3::{ffi, intern};

use crate::convert::json_to_py;

/// The Python objects the fast path needs, looked up once after init.
pub struct FastEvent {
    /// `hornbeam_channels._channels`: pattern -> Channel (mutated in place).
    channels: Py<PyDict>,
    /// `hornbeam_runtime._async_handlers`: the cache of `_is_async`.
    async_cache: Py<PyDict>,
    is_async: Py<PyAny>,
    socket_type: Py<PyType>,
    /// `object.__new__`, which makes a Socket without running `__init__`.
    object_new: Py<PyAny>,
    /// `hornbeam_channels._UNSET`: a socket field not decoded yet.
    unset: Py<PyAny>,
    submit_event: Py<PyAny>,
    /// The fixed fields of the sockets seen in compact calls, by key.
    fixed: Mutex<HashMap<i64, Fixed>>,
}

/// What `hornbeam_channels.Socket._from_wire` defaults to.
const EMPTY_OBJECT: &[u8] = b"{}";
const NULL: &[u8] = b"null";
/// Sockets whose fixed fields are kept; past this the cache starts over.
const MAX_FIXED: usize = 16_384;

impl FastEvent {
    /// Looks the objects up; `None` (the fast path stays off) if the
    /// runtime does not have them.
    pub fn new(py: Python<'_>, runtime: &Bound<'_, PyModule>) -> Option<FastEvent> {
        let channels_mod = py.import("hornbeam_channels").ok()?;
        let object = attr::<PyType>(&py.import("builtins").ok()?, "object")?;
        Some(FastEvent {
            channels: attr(&channels_mod, "_channels")?,
            async_cache: attr(runtime, "_async_handlers")?,
            is_async: attr(runtime, "_is_async")?,
            object_new: object.bind(py).getattr("__new__").ok()?.unbind(),
            socket_type: attr(&channels_mod, "Socket")?,
            unset: attr(&channels_mod, "_UNSET")?,
            submit_event: attr(runtime, "submit_event")?,
            fixed: Mutex::new(HashMap::new()),
        })
    }

    /// Queues call `id` if it takes the fast path: `Ok(true)`. `Ok(false)`:
    /// it does not, and nothing was done. `Err`: `submit_event` raised (a
    /// bug; the caller answers the call with a crash).
    pub fn try_submit(&self, py: Python<'_>, id: i64, args: &Term) -> PyResult<bool> {
        let Some((handler, payload, socket)) = self.prepare(py, args) else {
            return Ok(false);
        };
        self.submit_event
            .call1(py, (id, handler, payload, socket))?;
        Ok(true)
    }

    fn prepare<'py>(
        &self,
        py: Python<'py>,
        args: &Term,
    ) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let call = EventCall::parse(args)?;
        let pattern = std::str::from_utf8(call.pattern).ok()?;
        let event = std::str::from_utf8(call.event).ok()?;
        let channel = self.channels.bind(py).get_item(pattern).ok()??;
        let handlers = channel
            .getattr("event_handlers")
            .ok()?
            .cast_into::<PyDict>()
            .ok()?;
        let handler = handlers.get_item(event).ok()??;
        if self.handler_is_async(py, &handler)? {
            return None;
        }
        let payload = payload(py, call.payload)?;
        let socket = match call.socket {
            SocketWire::Map(wire) => {
                let fixed = Fixed::from_wire(py, wire)?;
                self.socket(py, &fixed, wire.get("assigns"))
            }
            SocketWire::Compact {
                key,
                fixed,
                assigns,
            } => {
                let mut cache = self.fixed.lock().unwrap_or_else(|p| p.into_inner());
                if !cache.contains_key(&key) {
                    let wire = etf::decode(fixed).ok()?;
                    let entry = Fixed::from_wire(py, &wire)?;
                    if cache.len() >= MAX_FIXED {
                        // sockets of closed channels are not announced: start over
                        cache.clear();
                    }
                    cache.insert(key, entry);
                }
                self.socket(py, cache.get(&key)?, Some(assigns))
            }
        };
        Some((handler, payload, socket.ok()?))
    }

    fn handler_is_async(&self, py: Python<'_>, handler: &Bound<'_, PyAny>) -> Option<bool> {
        if let Ok(Some(cached)) = self.async_cache.bind(py).get_item(handler) {
            return cached.is_truthy().ok();
        }
        self.is_async
            .call1(py, (handler,))
            .ok()?
            .bind(py)
            .is_truthy()
            .ok()
    }

    /// `Socket._from_wire`, without its Python calls: the fixed fields and
    /// the assigns' JSON text (`{}` when absent or empty).
    fn socket<'py>(
        &self,
        py: Python<'py>,
        fixed: &Fixed,
        assigns: Option<&Term>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let socket = self
            .object_new
            .call1(py, (self.socket_type.bind(py),))?
            .into_bound(py);
        let unset = self.unset.bind(py);
        let assigns = json_or(py, assigns, EMPTY_OBJECT);
        let slots = [
            (intern!(py, "_id"), fixed.id.bind(py)),
            (intern!(py, "_topic"), fixed.topic.bind(py)),
            (intern!(py, "_channel"), fixed.channel.bind(py)),
            (intern!(py, "_assigns"), unset),
            (intern!(py, "_assigns_json"), &assigns),
            (intern!(py, "_params"), unset),
            (intern!(py, "_params_json"), fixed.params_json.bind(py)),
            (intern!(py, "_join_ref"), unset),
            (intern!(py, "_join_ref_json"), fixed.join_ref_json.bind(py)),
        ];
        for (name, value) in slots {
            set_slot(&socket, name, value)?;
        }
        Ok(socket)
    }
}

/// A client event's call, in either shape Erlang sends it.
struct EventCall<'a> {
    pattern: &'a [u8],
    event: &'a [u8],
    payload: &'a Term,
    socket: SocketWire<'a>,
}

enum SocketWire<'a> {
    /// `socket => #{topic, join_ref, params, channel, id, assigns}`.
    Map(&'a Term),
    /// The compact form's socket: the fixed fields encoded once per channel
    /// (`fixed`, named by `key`) and the assigns of this call.
    Compact {
        key: i64,
        fixed: &'a [u8],
        assigns: &'a Term,
    },
}

impl<'a> EventCall<'a> {
    /// `#{pattern, event, payload, socket}`, or the compact
    /// `{Pattern, Event, Payload, Assigns, SocketKey, SocketFixed}`.
    fn parse(args: &'a Term) -> Option<EventCall<'a>> {
        match args {
            Term::Map(_) => {
                let socket = args.get("socket")?;
                socket.as_map()?;
                Some(EventCall {
                    pattern: args.get("pattern")?.as_binary()?,
                    event: args.get("event")?.as_binary()?,
                    payload: args.get("payload")?,
                    socket: SocketWire::Map(socket),
                })
            }
            Term::Tuple(items) => match items.as_slice() {
                [Term::Binary(pattern), Term::Binary(event), payload, assigns, Term::Int(key), Term::Binary(fixed)] => {
                    Some(EventCall {
                        pattern,
                        event,
                        payload,
                        socket: SocketWire::Compact {
                            key: *key,
                            fixed,
                            assigns,
                        },
                    })
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The compact form of an event call turned into the map form
/// `hornbeam_runtime.dispatch` takes (for the calls the fast path declines);
/// any other term as it is. `Err` for a compact call whose fixed socket
/// fields do not decode.
pub fn expand(args: Term) -> Result<Term, String> {
    let Term::Tuple(items) = &args else {
        return Ok(args);
    };
    let [pattern, event, payload, assigns, Term::Int(_), Term::Binary(fixed)] = items.as_slice()
    else {
        return Ok(args);
    };
    let Ok(Term::Map(mut socket)) = etf::decode(fixed) else {
        return Err("the socket's fixed fields do not decode".to_owned());
    };
    socket.push((Term::atom("assigns"), assigns.clone()));
    Ok(Term::atom_map([
        ("pattern", pattern.clone()),
        ("event", event.clone()),
        ("payload", payload.clone()),
        ("socket", Term::Map(socket)),
    ]))
}

/// A socket's fields that do not change while its channel lives, as the
/// Python objects a `Socket` holds.
struct Fixed {
    id: Py<PyAny>,
    topic: Py<PyAny>,
    channel: Py<PyAny>,
    params_json: Py<PyAny>,
    join_ref_json: Py<PyAny>,
}

impl Fixed {
    fn from_wire(py: Python<'_>, wire: &Term) -> Option<Fixed> {
        wire.as_map()?;
        let text = |key: &str| match wire.get(key) {
            Some(Term::Binary(b)) => {
                Some(PyString::new(py, &String::from_utf8_lossy(b)).into_any())
            }
            Some(Term::Atom(a)) => Some(PyString::new(py, a).into_any()),
            _ => None,
        };
        let topic = text("topic")
            .filter(|t| t.is_truthy().unwrap_or(false))
            .unwrap_or_else(|| PyString::new(py, "").into_any());
        let channel = match wire.get("channel") {
            Some(Term::Binary(b)) => PyBytes::new(py, b).into_any(),
            _ => py.None().into_bound(py),
        };
        Some(Fixed {
            id: text("id").map_or_else(|| py.None(), Bound::unbind),
            topic: topic.unbind(),
            channel: channel.unbind(),
            params_json: json_or(py, wire.get("params"), EMPTY_OBJECT).unbind(),
            join_ref_json: json_or(py, wire.get("join_ref"), NULL).unbind(),
        })
    }
}

/// `_json_or`: non-empty JSON text as bytes, else `default`.
fn json_or<'py>(py: Python<'py>, value: Option<&Term>, default: &[u8]) -> Bound<'py, PyAny> {
    match value {
        Some(Term::Binary(b)) if !b.is_empty() => PyBytes::new(py, b).into_any(),
        _ => PyBytes::new(py, default).into_any(),
    }
}

/// `module.name`, if it is a `T`.
fn attr<T: PyTypeCheck>(module: &Bound<'_, PyModule>, name: &str) -> Option<Py<T>> {
    module
        .getattr(name)
        .ok()?
        .cast_into::<T>()
        .ok()
        .map(Bound::unbind)
}

/// A client's payload as `hornbeam_runtime._payload` makes it: `bytes` for
/// `{binary, Bytes}`, the decoded JSON text, `{}` for empty text. `None`
/// (decline) for invalid JSON: `dispatch` reports it.
fn payload<'py>(py: Python<'py>, wire: &Term) -> Option<Bound<'py, PyAny>> {
    match wire {
        Term::Binary(b) if b.is_empty() => Some(PyDict::new(py).into_any()),
        Term::Binary(b) => json_to_py(py, b).ok(),
        Term::Tuple(items) => match items.as_slice() {
            [tag, Term::Binary(b)] if tag.is_atom("binary") => Some(PyBytes::new(py, b).into_any()),
            _ => None,
        },
        _ => None,
    }
}

/// `object.__setattr__(obj, name, value)`: the Socket class refuses
/// attribute writes through its own `__setattr__` (it is immutable for
/// handlers), so its slots are set the way `_from_wire` sets them.
fn set_slot(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    // SAFETY: the three pointers are live, owned by Bound values that outlive
    // the call, and the GIL is held (Bound proves it).
    let rc = unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PyErr::fetch(obj.py()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Term {
        Term::atom_map([
            ("topic", Term::binary("room:1")),
            ("join_ref", Term::binary("\"1\"")),
        ])
    }

    #[test]
    fn a_compact_event_call_expands_to_the_map_form() {
        let compact = Term::tuple(vec![
            Term::binary("room:*"),
            Term::binary("ping"),
            Term::binary("{}"),
            Term::binary("{\"n\":1}"),
            Term::Int(7),
            Term::binary(etf::encode(&fixed()).unwrap()),
        ]);
        let expanded = expand(compact).unwrap();
        assert_eq!(expanded.get("pattern"), Some(&Term::binary("room:*")));
        assert_eq!(expanded.get("event"), Some(&Term::binary("ping")));
        assert_eq!(expanded.get("payload"), Some(&Term::binary("{}")));
        let socket = expanded.get("socket").unwrap();
        assert_eq!(socket.get("topic"), Some(&Term::binary("room:1")));
        assert_eq!(socket.get("assigns"), Some(&Term::binary("{\"n\":1}")));
    }

    #[test]
    fn other_args_are_left_alone_and_undecodable_fixed_fields_are_an_error() {
        let map = Term::atom_map([("pattern", Term::binary("room:*"))]);
        assert_eq!(expand(map.clone()).unwrap(), map);
        let short = Term::tuple(vec![Term::binary("room:*")]);
        assert_eq!(expand(short.clone()).unwrap(), short);
        let torn = Term::tuple(vec![
            Term::binary("room:*"),
            Term::binary("ping"),
            Term::binary("{}"),
            Term::binary("{}"),
            Term::Int(7),
            Term::binary(b"\x83garbage"),
        ]);
        assert!(expand(torn).is_err());
    }
}
