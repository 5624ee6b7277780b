//! State shared by the reader, the writer, the Python thread and
//! the `_hornbeam` module functions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};

use hornbeam_core::etf::{self, Term};
use once_cell::sync::OnceCell;
use pyo3::prelude::*;

/// What the writer task receives.
pub enum Out {
    /// One encoded term (version byte included, no length prefix).
    Frame(Vec<u8>),
    /// Several frames in order (a batch of calls' results and emits).
    Frames(Vec<Vec<u8>>),
    /// Flush stdout, then acknowledge.
    Flush(mpsc::Sender<()>),
}

/// Erlang's answer to an `erl_call`.
pub enum Reply {
    /// JSON text of the result.
    Ok(Vec<u8>),
    Error(String),
}

/// Who waits for an `erl_call` answer.
pub enum Pending {
    /// `_hornbeam.call`: a thread blocked (without the GIL) on this channel.
    Sync(mpsc::Sender<Reply>),
    /// `_hornbeam.call_async`: an asyncio future, completed on the loop.
    Async(Py<PyAny>),
}

/// Work triggered by a frame from Erlang that needs the GIL.
pub enum Job {
    Call {
        id: i64,
        kind: String,
        args: Term,
    },
    /// `{notify, Id, Msg}`: news for a running call (an HTTP exchange's
    /// `disconnect` or flow-control `{ack, Seq}`); no result.
    Notify {
        id: i64,
        msg: Term,
    },
    Resolve {
        future: Py<PyAny>,
        reply: Reply,
    },
}

/// The running asyncio loop and the runtime functions the reader calls.
pub struct LoopRef {
    /// The loop's `call_soon_threadsafe` (for notify and shutdown).
    pub call_soon_threadsafe: Py<PyAny>,
    /// `hornbeam_runtime.shutdown`: runs the ASGI lifespan shutdown (if
    /// any), then stops the loop.
    pub shutdown: Py<PyAny>,
    /// `hornbeam_runtime.dispatch(id, kind, args)`: routes one call to the
    /// thread pool or the loop; called on the reader thread, never blocks.
    pub dispatch: Py<PyAny>,
    /// `hornbeam_runtime.dispatch_batch`: routes a list of `(id, kind,
    /// args)` calls, one loop wakeup for all the calls of a read burst.
    pub dispatch_batch: Py<PyAny>,
    pub notify: Py<PyAny>,
    /// `hornbeam_runtime.resolve(future, ok, value)`: completes a
    /// `call_async` future on its own loop; callable from any thread.
    pub resolve: Py<PyAny>,
}

pub struct Shared {
    out: mpsc::Sender<Out>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_erl_call: AtomicU64,
    closing: AtomicBool,
    pub worker_id: AtomicU64,
}

static SHARED: OnceCell<Shared> = OnceCell::new();

thread_local! {
    /// Frames held back while this thread runs a batch of calls (see
    /// `Shared::hold`): written as one writer message at the end, so a burst
    /// of results costs one writer wakeup instead of one each.
    static HELD: std::cell::RefCell<Option<Vec<Vec<u8>>>> = const { std::cell::RefCell::new(None) };
}
static LOOP: OnceCell<LoopRef> = OnceCell::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind;
    // carry on with it rather than poisoning the whole worker.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn install(out: mpsc::Sender<Out>) -> &'static Shared {
        SHARED.get_or_init(|| Shared {
            out,
            pending: Mutex::new(HashMap::new()),
            next_erl_call: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            worker_id: AtomicU64::new(0),
        })
    }

    /// Encodes `term` and queues it for stdout. Encoding errors are logged.
    pub fn send(&self, term: &Term) {
        match etf::encode(term) {
            Ok(bytes) => {
                let bytes = HELD.with(|h| match h.borrow_mut().as_mut() {
                    Some(held) => {
                        held.push(bytes);
                        None
                    }
                    None => Some(bytes),
                });
                if let Some(bytes) = bytes {
                    // The receiver only goes away at exit; nothing to do then.
                    let _ = self.out.send(Out::Frame(bytes));
                }
            }
            Err(e) => eprintln!("hornbeam_worker: cannot encode frame: {e}"),
        }
    }

    /// `hold(true)`: from now on, frames sent by this thread are kept back;
    /// `hold(false)`: send what was kept (in order) and stop holding.
    pub fn hold(&self, on: bool) {
        let held = HELD.with(|h| {
            let mut h = h.borrow_mut();
            if on {
                h.get_or_insert_with(Vec::new);
                None
            } else {
                h.take()
            }
        });
        self.send_held(held);
    }

    /// Sends what this thread holds back, and goes on holding (before it
    /// blocks waiting for Erlang).
    pub fn release_held(&self) {
        self.send_held(HELD.with(|h| h.borrow_mut().as_mut().map(std::mem::take)));
    }

    fn send_held(&self, held: Option<Vec<Vec<u8>>>) {
        if let Some(frames) = held.filter(|f| !f.is_empty()) {
            let _ = self.out.send(Out::Frames(frames));
        }
    }

    pub fn flush(&self, ack: mpsc::Sender<()>) {
        let _ = self.out.send(Out::Flush(ack));
    }

    /// Sends `{log, Level, Message}`.
    pub fn log(&self, level: &str, message: &str) {
        self.send(&Term::tuple(vec![
            Term::atom("log"),
            Term::atom(level),
            Term::binary(message),
        ]));
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Marks the worker as closing and fails every waiting synchronous
    /// `erl_call`; returns the futures of the asynchronous ones.
    pub fn close(&self) -> Vec<Py<PyAny>> {
        self.closing.store(true, Ordering::SeqCst);
        let drained: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        let mut futures = Vec::new();
        for p in drained {
            match p {
                // dropping the sender wakes the blocked thread with an error
                Pending::Sync(tx) => drop(tx),
                Pending::Async(future) => futures.push(future),
            }
        }
        futures
    }

    /// Registers a waiter and returns its call id.
    pub fn register(&self, waiter: Pending) -> u64 {
        let id = self.next_erl_call.fetch_add(1, Ordering::SeqCst);
        lock(&self.pending).insert(id, waiter);
        id
    }

    pub fn unregister(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    pub fn take_pending(&self, id: u64) -> Option<Pending> {
        lock(&self.pending).remove(&id)
    }
}

pub fn shared() -> Option<&'static Shared> {
    SHARED.get()
}

pub fn set_loop(l: LoopRef) -> bool {
    LOOP.set(l).is_ok()
}

pub fn event_loop() -> Option<&'static LoopRef> {
    LOOP.get()
}
