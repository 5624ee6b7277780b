//! State shared by the reader, the writer, the Python thread and
//! the `_hornbeam` module functions.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hornbeam_core::etf::{self, Term};
use once_cell::sync::OnceCell;
use pyo3::prelude::*;

use crate::fast_event::FastEvent;

/// What the writer task receives.
pub enum Out {
    /// One encoded term (version byte included, no length prefix).
    Frame(Vec<u8>),
    /// A thread starts holding its frames back in this buffer (see
    /// `Shared::hold`); from now on the writer also writes the ones held
    /// longer than `HOLD_LIMIT`.
    Hold(Arc<Held>),
    /// Write what the buffer holds; `true`: its thread stopped holding.
    Release(Arc<Held>, bool),
    /// Flush stdout, then acknowledge.
    Flush(mpsc::Sender<()>),
}

/// How long a held frame may wait before the writer writes it anyway: the
/// thread holding it may have gone on to a handler that blocks.
pub const HOLD_LIMIT: Duration = Duration::from_millis(1);

/// Frames a thread holds back, in order, with the time each was sent.
#[derive(Default)]
pub struct Held {
    frames: Mutex<VecDeque<(Instant, Vec<u8>)>>,
}

impl Held {
    /// Takes the frames held since before `now - HOLD_LIMIT` (all of them
    /// without `now`), oldest first.
    pub fn take(&self, now: Option<Instant>) -> Vec<Vec<u8>> {
        let mut q = lock(&self.frames);
        let n = match now {
            None => q.len(),
            Some(now) => q
                .iter()
                .take_while(|(t, _)| now.saturating_duration_since(*t) >= HOLD_LIMIT)
                .count(),
        };
        q.drain(..n).map(|(_, f)| f).collect()
    }
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
    /// The reader's own routing of `def` event handlers (see
    /// `fast_event.rs`); `None` if the runtime lacks what it needs.
    pub fast_event: Option<FastEvent>,
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
    /// Frames held back while this thread runs a burst of calls (see
    /// `Shared::hold`): written together, so a burst of results costs one
    /// writer wakeup instead of one each.
    static HELD: std::cell::RefCell<Option<Arc<Held>>> = const { std::cell::RefCell::new(None) };
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
                let bytes = HELD.with(|h| match h.borrow().as_ref() {
                    Some(held) => {
                        lock(&held.frames).push_back((Instant::now(), bytes));
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

    /// `hold(true)`: from now on, frames sent by this thread are kept back
    /// (no writer wakeup each); `hold(false)`: write what was kept, in
    /// order, and stop holding. The writer learns of the buffer through the
    /// channel, after every frame this thread sent before, and writes held
    /// frames older than `HOLD_LIMIT` itself: a thread that holds and then
    /// blocks delays its frames by at most that much, and a thread's frames
    /// are always written in the order it sent them.
    pub fn hold(&self, on: bool) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if on {
                if h.is_none() {
                    let held = Arc::new(Held::default());
                    let _ = self.out.send(Out::Hold(held.clone()));
                    *h = Some(held);
                }
            } else if let Some(held) = h.take() {
                let _ = self.out.send(Out::Release(held, true));
            }
        });
    }

    /// Writes what this thread holds back, and goes on holding (before it
    /// blocks waiting for Erlang).
    pub fn release_held(&self) {
        HELD.with(|h| {
            if let Some(held) = h.borrow().as_ref() {
                let _ = self.out.send(Out::Release(held.clone(), false));
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_frames_leave_in_order_and_only_stale_ones_without_a_release() {
        let held = Held::default();
        let t0 = Instant::now();
        {
            let mut q = lock(&held.frames);
            q.push_back((t0, b"old".to_vec()));
            q.push_back((t0 + HOLD_LIMIT, b"new".to_vec()));
        }
        // the writer's check at t0 + HOLD_LIMIT: only the first is stale
        assert_eq!(held.take(Some(t0 + HOLD_LIMIT)), vec![b"old".to_vec()]);
        assert!(held.take(Some(t0 + HOLD_LIMIT)).is_empty());
        lock(&held.frames).push_back((t0 + HOLD_LIMIT, b"newer".to_vec()));
        // a release takes everything, oldest first
        assert_eq!(held.take(None), vec![b"new".to_vec(), b"newer".to_vec()]);
    }
}
