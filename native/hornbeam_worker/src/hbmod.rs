//! The native module `_hornbeam`, registered in the interpreter's inittab
//! before Python starts. `hornbeam_channels` / `hornbeam_runtime` are thin
//! Python over these functions.

use pyo3::prelude::*;

pyo3::create_exception!(
    _hornbeam,
    ErlangError,
    pyo3::exceptions::PyRuntimeError,
    "An erl_call answered {error, Message}, or could not be made."
);

#[pymodule(name = "_hornbeam")]
pub mod hornbeam_native {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;

    use hornbeam_core::etf::Term;
    use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyString, PyTuple};

    use super::ErlangError;
    use crate::convert::{json_to_py, py_to_json_vec, py_to_term, type_name};
    use crate::state::{shared, Pending, Reply, Shared};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("ErlangError", m.py().get_type::<ErlangError>())?;
        Ok(())
    }

    fn state() -> PyResult<&'static Shared> {
        shared().ok_or_else(|| PyRuntimeError::new_err("the hornbeam worker is not running"))
    }

    fn text(args: &Bound<'_, PyTuple>, i: usize, what: &str) -> PyResult<Term> {
        let item = args.get_item(i)?;
        match item.cast::<PyString>() {
            Ok(s) => Ok(Term::binary(s.to_str()?)),
            Err(_) => Err(PyTypeError::new_err(format!(
                "{what} must be a str, not {}",
                type_name(&item)
            ))),
        }
    }

    fn token(args: &Bound<'_, PyTuple>, i: usize) -> PyResult<Term> {
        let item = args.get_item(i)?;
        match item.cast::<PyBytes>() {
            Ok(b) => Ok(Term::binary(b.as_bytes())),
            Err(_) => Err(PyTypeError::new_err(
                "the channel token must be bytes (use a Socket given to a handler)",
            )),
        }
    }

    /// JSON text of a dict, or `{binary, Bytes}` for `bytes` (sent to the
    /// client as a Phoenix binary frame).
    fn payload(args: &Bound<'_, PyTuple>, i: usize) -> PyResult<Term> {
        let item = args.get_item(i)?;
        match item.cast::<PyBytes>() {
            Ok(b) => Ok(Term::tuple(vec![
                Term::atom("binary"),
                Term::binary(b.as_bytes()),
            ])),
            Err(_) => Ok(Term::Binary(py_to_json_vec(&item)?)),
        }
    }

    /// `emit(kind, *args, call_id=0)`: a side effect applied by Erlang before
    /// the result of call `call_id`.
    ///
    /// * `emit("broadcast", topic, event, payload)`
    /// * `emit("broadcast_from", channel_token, topic, event, payload)`
    /// * `emit("push", channel_token, event, payload)`
    /// * `emit("subscribe", channel_token, topic)`, `emit("unsubscribe", channel_token, topic)`
    /// * `emit("send", channel_token, message)`: any JSON value, for `@room.on_info`
    /// * `emit("disconnect", socket_id)`
    #[pyfunction]
    #[pyo3(signature = (kind, *args, call_id = 0))]
    fn emit(kind: &str, args: &Bound<'_, PyTuple>, call_id: i64) -> PyResult<()> {
        let arity = |n: usize| -> PyResult<()> {
            if args.len() == n {
                Ok(())
            } else {
                Err(PyTypeError::new_err(format!(
                    "emit({kind:?}, ...) takes {n} arguments after the kind, got {}",
                    args.len()
                )))
            }
        };
        let effect = match kind {
            "broadcast" => {
                arity(3)?;
                Term::tuple(vec![
                    Term::atom("broadcast"),
                    text(args, 0, "topic")?,
                    text(args, 1, "event")?,
                    payload(args, 2)?,
                ])
            }
            "broadcast_from" => {
                arity(4)?;
                Term::tuple(vec![
                    Term::atom("broadcast_from"),
                    token(args, 0)?,
                    text(args, 1, "topic")?,
                    text(args, 2, "event")?,
                    payload(args, 3)?,
                ])
            }
            "push" => {
                arity(3)?;
                Term::tuple(vec![
                    Term::atom("push"),
                    token(args, 0)?,
                    text(args, 1, "event")?,
                    payload(args, 2)?,
                ])
            }
            "subscribe" | "unsubscribe" => {
                arity(2)?;
                Term::tuple(vec![
                    Term::atom(kind),
                    token(args, 0)?,
                    text(args, 1, "topic")?,
                ])
            }
            "send" => {
                arity(2)?;
                let message = Term::Binary(py_to_json_vec(&args.get_item(1)?)?);
                Term::tuple(vec![Term::atom("send"), token(args, 0)?, message])
            }
            "disconnect" => {
                arity(1)?;
                Term::tuple(vec![Term::atom("disconnect"), text(args, 0, "socket_id")?])
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown emit kind {other:?} (broadcast, broadcast_from, push, subscribe, \
                     unsubscribe, send, disconnect)"
                )))
            }
        };
        state()?.send(&Term::tuple(vec![
            Term::atom("emit"),
            Term::Int(call_id),
            effect,
        ]));
        Ok(())
    }

    /// `result(call_id, term)`: sends `{result, CallId, Term}`; `term` uses the
    /// runtime's mapping (str → atom, bytes → binary, ...).
    #[pyfunction]
    fn result(call_id: i64, term: &Bound<'_, PyAny>) -> PyResult<()> {
        let term = py_to_term(term)?;
        state()?.send(&Term::tuple(vec![
            Term::atom("result"),
            Term::Int(call_id),
            term,
        ]));
        Ok(())
    }

    /// `http(call_id, event)`: sends `{http, CallId, Event}`, one step of the
    /// HTTP response of call `call_id` while the app is still running
    /// (`("start", status, headers)`, `("body", data, more)` or
    /// `("response", status, headers, body)`; see `src/python/README.md`).
    /// Safe to call from any thread (WSGI apps run in a thread pool).
    #[pyfunction]
    fn http(call_id: i64, event: &Bound<'_, PyAny>) -> PyResult<()> {
        let event = py_to_term(event)?;
        state()?.send(&Term::tuple(vec![
            Term::atom("http"),
            Term::Int(call_id),
            event,
        ]));
        Ok(())
    }

    /// `progress(call_id, state)`: sends `{queued, CallId}` (the call waits
    /// for a handler thread: Erlang stops its timer) or `{started, CallId}`
    /// (a waiting call started running: its timer starts).
    #[pyfunction]
    fn progress(call_id: i64, what: &str) -> PyResult<()> {
        let tag = match what {
            "queued" | "started" => what,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown call state {other:?} (queued, started)"
                )))
            }
        };
        state()?.send(&Term::tuple(vec![Term::atom(tag), Term::Int(call_id)]));
        Ok(())
    }

    fn erl_call_frame(id: u64, name: &str, args: Vec<u8>) -> Term {
        Term::tuple(vec![
            Term::atom("erl_call"),
            Term::Int(i64::try_from(id).unwrap_or(i64::MAX)),
            Term::binary(name),
            Term::Binary(args),
        ])
    }

    /// `call(name, args)`: a synchronous call into Erlang
    /// (`hornbeam_python_calls:handle/2`). Blocks the calling Python code,
    /// with the GIL released, until the answer arrives.
    #[pyfunction]
    fn call<'py>(
        py: Python<'py>,
        name: &str,
        args: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let st = state()?;
        if st.is_closing() {
            return Err(ErlangError::new_err("the hornbeam worker is shutting down"));
        }
        let json = py_to_json_vec(args)?;
        let (tx, rx) = mpsc::channel();
        let id = st.register(Pending::Sync(tx));
        st.send(&erl_call_frame(id, name, json));
        // results held back by a batch must go out before we wait
        st.release_held();
        match py.detach(move || rx.recv()) {
            Ok(Reply::Ok(json)) => json_to_py(py, &json),
            Ok(Reply::Error(message)) => Err(ErlangError::new_err(message)),
            Err(_) => {
                st.unregister(id);
                Err(ErlangError::new_err("the hornbeam worker is shutting down"))
            }
        }
    }

    /// `call_async(name, args)`: like `call`, but returns an asyncio future of
    /// the running loop instead of blocking it.
    #[pyfunction]
    fn call_async<'py>(
        py: Python<'py>,
        name: &str,
        args: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let st = state()?;
        let json = py_to_json_vec(args)?;
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let future = event_loop.call_method0("create_future")?;
        if st.is_closing() {
            future.call_method1(
                "set_exception",
                (ErlangError::new_err("the hornbeam worker is shutting down").into_value(py),),
            )?;
            return Ok(future);
        }
        let id = st.register(Pending::Async(future.clone().unbind()));
        st.send(&erl_call_frame(id, name, json));
        Ok(future)
    }

    /// `hold(on)`: keep this thread's frames back (`True`) until `hold(False)`,
    /// which has them written in order in one go (a handler thread does it
    /// while it runs a burst of calls). Frames held longer than
    /// `HOLD_LIMIT` (1 ms) are written anyway.
    #[pyfunction]
    fn hold(on: bool) -> PyResult<()> {
        state()?.hold(on);
        Ok(())
    }

    /// `log(level, message)`: `level` is error, warning, info or debug.
    #[pyfunction]
    fn log(level: &str, message: &str) -> PyResult<()> {
        let level = match level {
            "error" | "critical" => "error",
            "warning" | "warn" => "warning",
            "info" => "info",
            "debug" => "debug",
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown log level {other:?} (error, warning, info, debug)"
                )))
            }
        };
        state()?.log(level, message);
        Ok(())
    }

    /// JSON text (bytes) of a JSON-compatible Python value.
    #[pyfunction]
    fn json_encode<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py_to_json_vec(obj)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Python value of JSON text given as bytes or str.
    #[pyfunction]
    fn json_decode<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(b) = data.cast::<PyBytes>() {
            return json_to_py(py, b.as_bytes());
        }
        if let Ok(s) = data.cast::<PyString>() {
            return json_to_py(py, s.to_str()?.as_bytes());
        }
        Err(PyTypeError::new_err(format!(
            "json_decode takes bytes or str, not {}",
            type_name(data)
        )))
    }

    /// The `worker_id` given by Erlang at init.
    #[pyfunction]
    fn worker_id() -> PyResult<u64> {
        Ok(state()?.worker_id.load(Ordering::SeqCst))
    }
}
