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

use hornbeam_core::etf::Term;
use pyo3::prelude::*;
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
}

/// What `hornbeam_channels.Socket._from_wire` defaults to.
const EMPTY_OBJECT: &[u8] = b"{}";
const NULL: &[u8] = b"null";

impl FastEvent {
    /// Looks the objects up; `None` (the fast path stays off) if the
    /// runtime does not have them.
    pub fn new(py: Python<'_>, runtime: &Bound<'_, PyModule>) -> Option<FastEvent> {
        let channels_mod = py.import("hornbeam_channels").ok()?;
        Some(FastEvent {
            channels: channels_mod
                .getattr("_channels")
                .ok()?
                .cast_into::<PyDict>()
                .ok()?
                .unbind(),
            async_cache: runtime
                .getattr("_async_handlers")
                .ok()?
                .cast_into::<PyDict>()
                .ok()?
                .unbind(),
            is_async: runtime.getattr("_is_async").ok()?.unbind(),
            object_new: py
                .import("builtins")
                .ok()?
                .getattr("object")
                .ok()?
                .getattr("__new__")
                .ok()?
                .unbind(),
            socket_type: channels_mod
                .getattr("Socket")
                .ok()?
                .cast_into::<PyType>()
                .ok()?
                .unbind(),
            unset: channels_mod.getattr("_UNSET").ok()?.unbind(),
            submit_event: runtime.getattr("submit_event").ok()?.unbind(),
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
        let pattern = std::str::from_utf8(args.get("pattern")?.as_binary()?).ok()?;
        let event = std::str::from_utf8(args.get("event")?.as_binary()?).ok()?;
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
        let payload = payload(py, args.get("payload")?)?;
        let socket = self.socket(py, args.get("socket")?).ok()?;
        Some((handler, payload, socket))
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

    /// `Socket._from_wire(map)`, without its Python calls.
    fn socket<'py>(&self, py: Python<'py>, wire: &Term) -> PyResult<Bound<'py, PyAny>> {
        if wire.as_map().is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "socket is not a map",
            ));
        }
        let socket = self
            .object_new
            .call1(py, (self.socket_type.bind(py),))?
            .into_bound(py);
        let unset = self.unset.bind(py);
        let none = py.None().into_bound(py);
        let text = |key: &str| match wire.get(key) {
            Some(Term::Binary(b)) => PyString::new(py, &String::from_utf8_lossy(b)).into_any(),
            Some(Term::Atom(a)) => PyString::new(py, a).into_any(),
            _ => none.clone(),
        };
        let json_or = |key: &str, default: &[u8]| match wire.get(key) {
            Some(Term::Binary(b)) if !b.is_empty() => PyBytes::new(py, b).into_any(),
            _ => PyBytes::new(py, default).into_any(),
        };
        let topic = match wire.get("topic") {
            Some(Term::Binary(b)) if !b.is_empty() => text("topic"),
            Some(Term::Atom(a)) if !a.is_empty() => text("topic"),
            _ => PyString::new(py, "").into_any(),
        };
        let channel = match wire.get("channel") {
            Some(Term::Binary(b)) => PyBytes::new(py, b).into_any(),
            _ => none.clone(),
        };
        set_slot(&socket, intern!(py, "_id"), &text("id"))?;
        set_slot(&socket, intern!(py, "_topic"), &topic)?;
        set_slot(&socket, intern!(py, "_channel"), &channel)?;
        set_slot(&socket, intern!(py, "_assigns"), unset)?;
        set_slot(
            &socket,
            intern!(py, "_assigns_json"),
            &json_or("assigns", EMPTY_OBJECT),
        )?;
        set_slot(&socket, intern!(py, "_params"), unset)?;
        set_slot(
            &socket,
            intern!(py, "_params_json"),
            &json_or("params", EMPTY_OBJECT),
        )?;
        set_slot(&socket, intern!(py, "_join_ref"), unset)?;
        set_slot(
            &socket,
            intern!(py, "_join_ref_json"),
            &json_or("join_ref", NULL),
        )?;
        Ok(socket)
    }
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
