//! `hornbeam_worker`: the Python worker port of Hornbeam.
//!
//! Erlang opens this binary with `{packet, 4}`; every frame is one
//! `term_to_binary/1` term (see `src/python/README.md` for the protocol).
//!
//! Threads (plain std threads, and the Python threads of the handler pool):
//! * main: the reader. Blocks on stdin for a frame, decodes it, and for a
//!   call takes the GIL to convert it to Python objects and hand it to
//!   `hornbeam_runtime.dispatch`, which routes it without blocking: a `def`
//!   handler (or a WSGI request) to the runtime's thread pool, an
//!   `async def` one (or an ASGI request) to the loop with
//!   `call_soon_threadsafe`. All frames already buffered go under one GIL
//!   acquisition, and the calls among them go together to
//!   `hornbeam_runtime.dispatch_batch` (one loop wakeup per burst). Erlang
//!   may send a burst as one `{calls, [{Id, Kind, Args}, ...]}` frame.
//!   A client event whose handler is a `def` skips `dispatch`: the reader
//!   finds the handler and builds the payload and `Socket` itself
//!   (`fast_event.rs`) and queues it with `hornbeam_runtime.submit_event`.
//!   `erl_reply` frames wake the waiting `_hornbeam.call` without the GIL.
//! * `python`: owns the asyncio event loop. Runs `hornbeam_runtime.init`,
//!   then `loop.run_forever()`; `async def` handlers run as tasks, so
//!   several async calls overlap. No handler ever blocks it.
//! * the runtime's handler threads (`hornbeam_pool`, `threads` of them):
//!   run `def` handlers and WSGI apps; they may block (a database query,
//!   a synchronous `erl_call`) without stalling the loop or each other.
//! * `writer`: the single writer of stdout. Everything (results, emits,
//!   logs, erl_calls) is queued on one channel and written length-prefixed,
//!   the frames of one round as one packet (`bundle.rs`), flushing when the
//!   queue is empty; an emit queued before a result (by
//!   the same thread: a handler runs on one thread) is written before it.
//!   A handler thread running a burst of calls holds its frames back
//!   (`_hornbeam.hold`) so the burst costs one writer wakeup; the writer
//!   writes held frames itself once they are `HOLD_LIMIT` old, so a handler
//!   that blocks after a quick one never delays the quick one's reply.
//!
//! (An earlier version read and wrote through tokio tasks; the extra
//! thread hops of `tokio::fs` and a separate submitter thread doubled the
//! round-trip latency, so the worker uses blocking I/O threads instead.)
//!
//! Closing stdin, or a `{stop}` frame, runs `hornbeam_runtime.shutdown` on
//! the loop (the ASGI lifespan shutdown of an HTTP app, then the loop
//! stops) and exits with status 0 (after at most `SHUTDOWN_GRACE`). The
//! real stdin and
//! stdout are kept for the protocol only: Python sees `/dev/null` as fd 0 and
//! stderr as fd 1, so a stray `print()` cannot corrupt a frame.

mod bundle;
mod convert;
mod fast_event;
mod hbmod;
mod interpreter;
mod state;

use std::fs::File;
use std::io;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hornbeam_core::etf::{self, Term};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use std::io::{Read, Write};

use crate::bundle::Bundle;
use crate::convert::{json_to_py, py_to_term, term_to_py};
use crate::fast_event::FastEvent;
use crate::state::{
    event_loop, shared, Held, Job, LoopRef, Out, Pending, Reply, Shared, HOLD_LIMIT,
};

/// Frames larger than this are a protocol error (the VM never sends them).
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// The read buffer keeps at most this much memory between frames.
const KEEP_BUFFER: usize = 1024 * 1024;
/// How long a stopping worker waits for the writer to flush.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a stopping worker waits for the loop to wind down (the lifespan
/// shutdown of an ASGI app runs then; Erlang bounds it with its own timer).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    if std::env::args().nth(1).as_deref() == Some("--python-version") {
        print!("{}", interpreter::describe());
        return 0;
    }
    let (proto_in, proto_out) = match protocol_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("hornbeam_worker: cannot set up stdin/stdout: {e}");
            return 2;
        }
    };
    let (out_tx, out_rx) = mpsc::channel();
    let st = Shared::install(out_tx);

    use crate::hbmod::hornbeam_native;
    pyo3::append_to_inittab!(hornbeam_native);
    if let Err(e) = interpreter::initialize_from_env() {
        eprintln!("hornbeam_worker: {e}");
        return 2;
    }
    Python::initialize();
    if let Err(e) = Python::attach(isolate_std_fds) {
        eprintln!("hornbeam_worker: cannot redirect fds 0/1: {e}");
    }

    let (init_tx, init_rx) = mpsc::channel::<Term>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("python".into())
        .spawn(move || python_main(init_rx, done_tx))
        .and_then(|_| {
            std::thread::Builder::new()
                .name("writer".into())
                .spawn(move || writer(proto_out, out_rx))
        });
    if let Err(e) = spawned {
        eprintln!("hornbeam_worker: cannot start threads: {e}");
        return 2;
    }

    reader(proto_in, init_tx, st);

    // stdin closed or {stop}: shut the runtime down (lifespan shutdown,
    // then the loop stops), give it a moment, flush, leave.
    let futures = st.close();
    Python::attach(|py| {
        for future in futures {
            let reply = Reply::Error("the hornbeam worker is shutting down".to_owned());
            run_job(py, Job::Resolve { future, reply });
        }
        if let Some(lr) = event_loop() {
            let _ = lr
                .call_soon_threadsafe
                .call1(py, (lr.shutdown.clone_ref(py),));
        }
    });
    let _ = done_rx.recv_timeout(SHUTDOWN_GRACE);
    flush(st);
    0
}

/// Duplicates fds 0 and 1 (close-on-exec) for the protocol.
fn protocol_files() -> io::Result<(File, File)> {
    use std::os::fd::AsFd;
    let input = io::stdin().as_fd().try_clone_to_owned()?;
    let output = io::stdout().as_fd().try_clone_to_owned()?;
    Ok((File::from(input), File::from(output)))
}

/// Points fd 0 at /dev/null and fd 1 at stderr, for everything but the
/// protocol (Python's `print`, C extensions, child processes).
fn isolate_std_fds(py: Python<'_>) -> PyResult<()> {
    py.run(
        c"import os, sys\n\
          _fd = os.open(os.devnull, os.O_RDONLY)\n\
          os.dup2(_fd, 0)\n\
          os.close(_fd)\n\
          os.dup2(2, 1)\n\
          del _fd\n\
          sys.argv = ['hornbeam_worker']\n",
        None,
        None,
    )
}

fn flush(st: &Shared) {
    let (ack_tx, ack_rx) = mpsc::channel();
    st.flush(ack_tx);
    let _ = ack_rx.recv_timeout(STOP_GRACE);
}

// ---------------------------------------------------------------------------
// stdin / stdout
// ---------------------------------------------------------------------------

fn reader(file: File, init_tx: mpsc::Sender<Term>, st: &'static Shared) {
    let mut input = io::BufReader::with_capacity(64 * 1024, file);
    let mut init_tx = Some(init_tx);
    let mut jobs = Vec::new();
    // one buffer for every frame: a fresh one per burst frame (kilobytes)
    // made glibc consolidate its free lists on every read
    let mut body = Vec::new();
    loop {
        // Block for one frame, then take every complete frame already
        // buffered, so a burst of calls costs one GIL acquisition.
        loop {
            match read_frame(&mut input, &mut body) {
                Ok(true) => match etf::decode(&body) {
                    Ok(term) => {
                        if handle_frame(term, &mut init_tx, &mut jobs, st) == Flow::Stop {
                            run_jobs(&mut jobs);
                            return;
                        }
                    }
                    Err(e) => st.log("error", &format!("undecodable frame from Erlang: {e}")),
                },
                Ok(false) => {
                    run_jobs(&mut jobs);
                    return;
                }
                Err(e) => {
                    st.log("error", &format!("worker stdin: {e}"));
                    return;
                }
            }
            if !frame_buffered(input.buffer()) {
                break;
            }
        }
        run_jobs(&mut jobs);
    }
}

fn run_jobs(jobs: &mut Vec<Job>) {
    if !jobs.is_empty() {
        Python::attach(|py| {
            let mut calls = Vec::new();
            for job in jobs.drain(..) {
                match job {
                    Job::Call { id, kind, args } => calls.push((id, kind, args)),
                    other => {
                        // keep the order: calls before this job go first
                        schedule_calls(py, &mut calls);
                        run_job(py, other);
                    }
                }
            }
            schedule_calls(py, &mut calls);
        });
    }
}

/// Hands every call of `calls` to `hornbeam_runtime.dispatch_batch` (or
/// `dispatch` for one), here on the reader thread: the runtime routes sync
/// handlers to its thread pool and async ones to the loop (one wakeup for
/// the burst), and never blocks.
fn schedule_calls(py: Python<'_>, calls: &mut Vec<(i64, String, Term)>) {
    if calls.is_empty() {
        return;
    }
    let Some(st) = shared() else { return };
    let Some(lr) = event_loop() else {
        for (id, _, _) in calls.drain(..) {
            send_result(st, id, crash("the worker is not initialised"));
        }
        return;
    };
    // events go the fast way when they can; what it declines goes to
    // dispatch with the other calls, in the map form
    let mut declined = Vec::with_capacity(calls.len());
    for (id, kind, args) in calls.drain(..) {
        if kind != "event" {
            declined.push((id, kind, args));
            continue;
        }
        if let Some(fast) = &lr.fast_event {
            if submitted_fast(py, st, fast, id, &args) {
                continue;
            }
        }
        match fast_event::expand(args) {
            Ok(args) => declined.push((id, kind, args)),
            Err(e) => send_result(st, id, crash(&format!("malformed event call: {e}"))),
        }
    }
    *calls = declined;
    if calls.len() == 1 {
        if let Some((id, kind, args)) = calls.pop() {
            run_job(py, Job::Call { id, kind, args });
        }
        return;
    }
    let batch = PyList::empty(py);
    for (id, kind, args) in calls.drain(..) {
        let item = term_to_py(py, &args).and_then(|args| batch.append((id, kind, args)));
        if let Err(e) = item {
            send_result(st, id, crash(&format!("cannot schedule the call: {e}")));
        }
    }
    if let Err(e) = lr.dispatch_batch.call1(py, (batch.clone(),)) {
        // dispatch_batch answers every call itself; this is a bug in it
        st.log(
            "error",
            &format!("hornbeam_runtime.dispatch_batch failed: {e}"),
        );
        for item in batch.iter() {
            if let Ok((id, _, _)) = item.extract::<(i64, Bound<'_, PyAny>, Bound<'_, PyAny>)>() {
                send_result(st, id, crash(&format!("cannot schedule the call: {e}")));
            }
        }
    }
}

/// Whether call `id` went the fast way (see `fast_event.rs`); a call that
/// failed on the way there is answered with a crash and counts as gone.
fn submitted_fast(py: Python<'_>, st: &Shared, fast: &FastEvent, id: i64, args: &Term) -> bool {
    match fast.try_submit(py, id, args) {
        Ok(taken) => taken,
        Err(e) => {
            st.log(
                "error",
                &format!("hornbeam_runtime.submit_event failed: {e}"),
            );
            send_result(st, id, crash(&format!("cannot schedule the call: {e}")));
            true
        }
    }
}

/// Whether the reader goes on after a frame.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Reads one `{packet, 4}` frame into `body`; `false` at a clean end of
/// input.
fn read_frame(input: &mut impl Read, body: &mut Vec<u8>) -> io::Result<bool> {
    let mut header = [0u8; 4];
    if let Err(e) = input.read_exact(&mut header) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(false)
        } else {
            Err(e)
        };
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    body.clear();
    body.resize(len, 0);
    input.read_exact(body)?;
    if body.capacity() > KEEP_BUFFER && len <= KEEP_BUFFER {
        // an occasional huge frame (an HTTP body) does not pin its memory
        body.shrink_to(KEEP_BUFFER);
    }
    Ok(true)
}

/// Whether `buf` starts with a complete frame.
fn frame_buffered(buf: &[u8]) -> bool {
    match buf {
        [a, b, c, d, rest @ ..] => rest.len() >= u32::from_be_bytes([*a, *b, *c, *d]) as usize,
        _ => false,
    }
}

fn handle_frame(
    term: Term,
    init_tx: &mut Option<mpsc::Sender<Term>>,
    jobs: &mut Vec<Job>,
    st: &Shared,
) -> Flow {
    let Term::Tuple(items) = term else {
        st.log("warning", "ignoring a frame that is not a tuple");
        return Flow::Continue;
    };
    let tag = items
        .first()
        .and_then(Term::as_atom)
        .unwrap_or("")
        .to_owned();
    let mut it = items.into_iter().skip(1);
    match (tag.as_str(), it.next(), it.next(), it.next(), it.next()) {
        ("call", Some(Term::Int(id)), Some(Term::Atom(kind)), Some(args), None) => {
            jobs.push(Job::Call { id, kind, args });
        }
        ("call", Some(Term::Int(id)), _, _, _) => {
            send_result(st, id, crash("malformed call frame"));
        }
        // `{calls, [{Id, Kind, Args}, ...]}`: a burst of calls in one frame
        ("calls", Some(Term::List(calls)), None, None, None) => {
            for call in calls {
                let Term::Tuple(parts) = call else {
                    st.log("warning", "ignoring a malformed entry of a calls frame");
                    continue;
                };
                let mut parts = parts.into_iter();
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(Term::Int(id)), Some(Term::Atom(kind)), Some(args), None) => {
                        jobs.push(Job::Call { id, kind, args });
                    }
                    (Some(Term::Int(id)), ..) => {
                        send_result(st, id, crash("malformed call frame"));
                    }
                    _ => st.log("warning", "ignoring a malformed entry of a calls frame"),
                }
            }
        }
        ("notify", Some(Term::Int(id)), Some(msg), None, None) => {
            jobs.push(Job::Notify { id, msg });
        }
        ("stop", None, None, None, None) => return Flow::Stop,
        ("init", Some(config @ Term::Map(_)), None, None, None) => match init_tx.take() {
            Some(tx) => {
                let _ = tx.send(config);
            }
            None => st.log("warning", "ignoring a second init frame"),
        },
        ("erl_reply", Some(Term::Int(id)), Some(reply), None, None) => {
            let reply = match reply {
                Term::Tuple(r) => match r.as_slice() {
                    [ok, Term::Binary(json)] if ok.is_atom("ok") => Reply::Ok(json.clone()),
                    [err, msg] if err.is_atom("error") => Reply::Error(
                        msg.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("{msg:?}")),
                    ),
                    _ => Reply::Error("malformed erl_reply".to_owned()),
                },
                _ => Reply::Error("malformed erl_reply".to_owned()),
            };
            match u64::try_from(id).ok().and_then(|id| st.take_pending(id)) {
                Some(Pending::Sync(tx)) => {
                    let _ = tx.send(reply);
                }
                Some(Pending::Async(future)) => jobs.push(Job::Resolve { future, reply }),
                None => st.log("warning", &format!("erl_reply {id} has no waiting caller")),
            }
        }
        (tag, ..) => st.log("warning", &format!("ignoring unknown frame {tag:?}")),
    }
    Flow::Continue
}

fn crash(message: &str) -> Term {
    Term::tuple(vec![Term::atom("crash"), Term::binary(message)])
}

fn send_result(st: &Shared, id: i64, result: Term) {
    st.send(&Term::tuple(vec![
        Term::atom("result"),
        Term::Int(id),
        result,
    ]));
}

fn writer(file: File, rx: mpsc::Receiver<Out>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, file);
    // the round's frames, written as one packet (see bundle.rs)
    let mut bundle = Bundle::default();
    // buffers of threads that hold their frames back (see Shared::hold)
    let mut holders: Vec<Arc<Held>> = Vec::new();
    loop {
        let first = if holders.is_empty() {
            match rx.recv() {
                Ok(msg) => Some(msg),
                Err(_) => return,
            }
        } else {
            // wake up in time to write frames held too long
            match rx.recv_timeout(HOLD_LIMIT) {
                Ok(msg) => Some(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut acks = Vec::new();
        let mut next = first;
        // write everything queued, then flush once
        while let Some(msg) = next.take() {
            match msg {
                Out::Frame(bytes) => bundled(&mut bundle, &mut out, bytes),
                Out::Hold(held) => holders.push(held),
                Out::Release(held, done) => {
                    for bytes in held.take(None) {
                        bundled(&mut bundle, &mut out, bytes);
                    }
                    if done {
                        holders.retain(|h| !Arc::ptr_eq(h, &held));
                    }
                }
                Out::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        let now = Instant::now();
        for held in &holders {
            for bytes in held.take(Some(now)) {
                bundled(&mut bundle, &mut out, bytes);
            }
        }
        if let Err(e) = bundle.write(&mut out).and_then(|()| out.flush()) {
            stdout_gone(e);
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

fn bundled(bundle: &mut Bundle, out: &mut impl Write, frame: Vec<u8>) {
    if let Err(e) = bundle.push(out, frame) {
        stdout_gone(e);
    }
}

fn stdout_gone(e: io::Error) -> ! {
    // The VM closed our stdout: nobody is listening any more.
    eprintln!("hornbeam_worker: stdout closed ({e}); exiting");
    std::process::exit(1)
}

/// Runs one job with the GIL held.
fn run_job(py: Python<'_>, job: Job) {
    let Some(st) = shared() else { return };
    let Some(lr) = event_loop() else {
        if let Job::Call { id, .. } = job {
            send_result(st, id, crash("the worker is not initialised"));
        }
        return;
    };
    match job {
        Job::Call { id, kind, args } => {
            let scheduled =
                term_to_py(py, &args).and_then(|args| lr.dispatch.call1(py, (id, kind, args)));
            if let Err(e) = scheduled {
                send_result(st, id, crash(&format!("cannot schedule the call: {e}")));
            }
        }
        Job::Notify { id, msg } => {
            let scheduled = term_to_py(py, &msg).and_then(|msg| {
                lr.call_soon_threadsafe
                    .call1(py, (lr.notify.clone_ref(py), id, msg))
            });
            if let Err(e) = scheduled {
                st.log(
                    "error",
                    &format!("cannot schedule a notify for call {id}: {e}"),
                );
            }
        }
        Job::Resolve { future, reply } => {
            let (ok, value) = match reply {
                Reply::Ok(json) => match json_to_py(py, &json) {
                    Ok(v) => (true, v),
                    Err(e) => (false, PyString::new(py, &e.to_string()).into_any()),
                },
                Reply::Error(msg) => (false, PyString::new(py, &msg).into_any()),
            };
            // `resolve` completes the future on its own loop, thread-safely
            let resolved = lr.resolve.call1(py, (future, ok, value));
            if let Err(e) = resolved {
                st.log("error", &format!("cannot complete an erl_call future: {e}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The Python thread
// ---------------------------------------------------------------------------

fn python_main(init_rx: mpsc::Receiver<Term>, done: mpsc::Sender<()>) {
    if let Ok(config) = init_rx.recv() {
        let started = Python::attach(|py| match run_python(py, &config) {
            Ok(started) => started,
            Err(e) => {
                let (message, trace) = describe(py, &e);
                if let Some(st) = shared() {
                    st.log(
                        "error",
                        &format!("python runtime failed: {message}\n{trace}"),
                    );
                }
                true
            }
        });
        if let Some(st) = shared() {
            if started && !st.is_closing() {
                // The loop ended on its own: calls could no longer run.
                st.log(
                    "error",
                    "the asyncio loop stopped unexpectedly; worker exits",
                );
                flush(st);
                std::process::exit(3);
            }
        }
    }
    let _ = done.send(());
}

/// Imports the runtime, runs init and, if it succeeded, the loop. Returns
/// whether the loop was started.
fn run_python(py: Python<'_>, config: &Term) -> PyResult<bool> {
    let Some(st) = shared() else { return Ok(false) };
    if let Some(id) = config.get("worker_id").and_then(Term::as_int) {
        st.worker_id.store(
            u64::try_from(id).unwrap_or(0),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
    if let Some(paths) = config.get("pythonpath").and_then(Term::as_list) {
        let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
        for (i, p) in paths.iter().enumerate() {
            match p.as_str() {
                Some(p) => sys_path.insert(i, p)?,
                None => st.log("warning", &format!("ignoring pythonpath entry {p:?}")),
            }
        }
    }
    let init_result = py.import("hornbeam_runtime").and_then(|rt| {
        let result = rt.call_method1("init", (term_to_py(py, config)?,))?;
        Ok((rt, py_to_term(&result)?))
    });
    let (rt, result) = match init_result {
        Ok(ok) => ok,
        Err(e) => {
            let (message, trace) = describe(py, &e);
            st.send(&Term::tuple(vec![
                Term::atom("init_error"),
                Term::binary("hornbeam_runtime"),
                Term::binary(message),
                Term::binary(trace),
            ]));
            return Ok(false);
        }
    };
    if !result
        .as_tuple()
        .and_then(<[Term]>::first)
        .is_some_and(|t| t.is_atom("init_ok"))
    {
        st.send(&result);
        return Ok(false);
    }
    let event_loop = rt.getattr("loop")?;
    let lr = LoopRef {
        call_soon_threadsafe: event_loop.getattr("call_soon_threadsafe")?.unbind(),
        shutdown: rt.getattr("shutdown")?.unbind(),
        dispatch: rt.getattr("dispatch")?.unbind(),
        dispatch_batch: rt.getattr("dispatch_batch")?.unbind(),
        notify: rt.getattr("notify")?.unbind(),
        resolve: rt.getattr("resolve")?.unbind(),
        fast_event: FastEvent::new(py, &rt),
    };
    state::set_loop(lr);
    // The ASGI lifespan startup runs on the loop (so async erl_calls made
    // by it are answered); `None` or `{startup_failed, Message}`.
    let startup = rt.call_method0("startup")?;
    if !startup.is_none() {
        st.send(&py_to_term(&startup)?);
        return Ok(false);
    }
    // Only now may Erlang send calls.
    st.send(&result);
    event_loop.call_method0("run_forever")?;
    Ok(true)
}

/// `"TypeName: message"` and the formatted traceback of a Python error.
fn describe(py: Python<'_>, e: &PyErr) -> (String, String) {
    let message = format!(
        "{}: {}",
        e.get_type(py)
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".into()),
        e.value(py)
    );
    let trace = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", (e.value(py),)))
        .and_then(|lines| {
            let lines: Vec<String> = lines.extract()?;
            Ok(lines.concat())
        })
        .unwrap_or_else(|_| message.clone());
    (message, trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_frames_become_jobs_and_stop_ends_the_reader() {
        let (tx, _rx) = mpsc::channel();
        let st = Shared::install(tx);
        let mut init_tx = None;
        let mut jobs = Vec::new();
        let notify = Term::tuple(vec![
            Term::atom("notify"),
            Term::Int(7),
            Term::tuple(vec![Term::atom("ack"), Term::Int(3)]),
        ]);
        assert!(handle_frame(notify, &mut init_tx, &mut jobs, st) == Flow::Continue);
        match jobs.as_slice() {
            [Job::Notify { id: 7, msg }] => {
                assert!(msg.as_tuple().is_some_and(|t| t[0].is_atom("ack")));
            }
            _ => panic!("expected one notify job"),
        }
        let calls = Term::tuple(vec![
            Term::atom("calls"),
            Term::List(vec![
                Term::tuple(vec![Term::Int(8), Term::atom("event"), Term::Map(vec![])]),
                Term::tuple(vec![Term::Int(9), Term::atom("leave"), Term::Map(vec![])]),
            ]),
        ]);
        assert!(handle_frame(calls, &mut init_tx, &mut jobs, st) == Flow::Continue);
        assert!(matches!(
            jobs.as_slice(),
            [
                Job::Notify { .. },
                Job::Call { id: 8, .. },
                Job::Call { id: 9, .. }
            ]
        ));
        jobs.truncate(1);
        let stop = Term::tuple(vec![Term::atom("stop")]);
        assert!(handle_frame(stop, &mut init_tx, &mut jobs, st) == Flow::Stop);
        let bad_stop = Term::tuple(vec![Term::atom("stop"), Term::Int(1)]);
        assert!(handle_frame(bad_stop, &mut init_tx, &mut jobs, st) == Flow::Continue);
        assert_eq!(jobs.len(), 1);
    }
}
