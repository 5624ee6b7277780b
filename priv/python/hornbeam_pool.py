"""The thread pool of one hornbeam worker: where every sync (``def``) handler
and the WSGI app run, so that blocking code (a database query, an HTTP call,
``time.sleep``) never stalls the asyncio loop that runs ``async def``
handlers. Used by hornbeam_runtime; not a public API.

* ``threads`` threads take jobs first come, first served. A job submitted
  while every thread is busy waits in a queue of at most ``max_queued``
  jobs; beyond that :meth:`HandlerPool.submit` refuses it at once (the caller
  answers ``overloaded``) instead of letting it wait past its timeout.
* Erlang times a call's *execution*, not its wait: a job that has to wait
  is reported with ``on_queued(call_id)`` (its timer stops) and, once a
  thread takes it, ``on_started(call_id)`` (its timer starts again). A job
  that finds a free thread is reported with neither: no extra frames on the
  hot path.
* At most one idle thread is being woken at a time, and a thread that
  has just woken wakes the next one if more jobs wait: a burst of quick jobs
  is run by one thread holding the GIL (no convoy of threads woken for
  nothing), while jobs that block (and release the GIL) spread over the
  threads as fast as they start.
* Threads are daemons: a worker that exits does not wait for a handler
  stuck in a blocking call (Erlang kills such a worker anyway).
"""

from __future__ import annotations

import collections
import threading
import traceback
from typing import Callable, Deque, List, NamedTuple, Optional, Tuple

#: Default number of threads per worker (measured; see src/python/README.md).
DEFAULT_THREADS = 16
#: Default bound on jobs waiting for a thread, per worker.
DEFAULT_MAX_QUEUED = 1024

Notify = Callable[[int], None]
Log = Callable[[str, str], None]
Hold = Callable[[bool], None]


class _Job(NamedTuple):
    call_id: int
    run: Callable[[], None]
    queued: bool


class HandlerPool:
    """``threads`` threads running submitted jobs, with a bounded wait queue."""

    def __init__(self, threads: int, max_queued: int, *, on_queued: Notify, on_started: Notify,
                 log: Log, hold: Optional[Hold] = None, name: str = "hornbeam-handler") -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, not {threads!r}")
        if not isinstance(max_queued, int) or max_queued < 0:
            raise ValueError(f"max_queued_calls must be a non-negative integer, not {max_queued!r}")
        self.threads = threads
        self.max_queued = max_queued
        self._on_queued = on_queued
        self._on_started = on_started
        self._log = log
        self._hold = hold
        self._cond = threading.Condition(threading.Lock())
        self._jobs: Deque[_Job] = collections.deque()
        self._running = 0
        self._waiting = 0  # jobs in _jobs that found no free thread
        self._idle = 0  # threads waiting for a job
        self._waking = False  # an idle thread was notified and has not woken yet
        self._closed = False
        self._threads: List[threading.Thread] = []
        for i in range(threads):
            t = threading.Thread(target=self._work, name=f"{name}-{i + 1}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def waiting(self) -> int:
        """Jobs waiting for a thread now."""
        return self._waiting

    def submit(self, call_id: int, run: Callable[[], None]) -> bool:
        """Run ``run()`` on a pool thread. Returns False, without running it,
        when ``max_queued`` jobs already wait (or the pool is shut down)."""
        with self._cond:
            if self._closed:
                return False
            free = self.threads - self._running - len(self._jobs)
            queued = free <= 0
            if queued:
                if self._waiting >= self.max_queued:
                    return False
                self._waiting += 1
                # reported before a thread can take it, so "queued" always
                # reaches Erlang before "started"
                self._on_queued(call_id)
            self._jobs.append(_Job(call_id, run, queued))
            self._wake_one()
        return True

    def _wake_one(self) -> None:
        # (with the lock held)
        if self._idle and not self._waking:
            self._waking = True
            self._cond.notify()

    def shutdown(self) -> None:
        """Stop taking jobs; idle threads exit, busy ones after their job."""
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._waiting = 0
            self._waking = True  # no more single wakeups: everyone goes
            self._cond.notify_all()

    def _take(self, finished: bool, holding: bool) -> Tuple[Optional[_Job], bool]:
        """The next job (None once shut down) and whether this thread now
        holds its frames back. ``finished``: this thread has just finished a
        job (one lock round per job). While jobs keep coming (a burst) the
        thread holds its frames so the burst's results are written
        together; it releases them before it waits for work (and the worker
        writes a frame held over 1 ms itself, in case a job blocks)."""
        with self._cond:
            if finished:
                self._running -= 1
            if holding and not self._jobs:
                holding = self._set_hold(False)
            woke = False
            while not self._jobs:
                if self._closed:
                    return None, holding
                self._idle += 1
                self._cond.wait()
                self._idle -= 1
                self._waking = False
                woke = True
            job = self._jobs.popleft()
            self._running += 1
            if job.queued:
                self._waiting -= 1
            if self._jobs:
                if woke:
                    # just woken and more work waits: wake one more thread
                    # (a busy thread that keeps taking jobs wakes nobody, so
                    # quick jobs stay on one thread; jobs that block pass
                    # the GIL on and the wakeups cascade)
                    self._wake_one()
                if not holding:
                    holding = self._set_hold(True)
            return job, holding

    def _set_hold(self, on: bool) -> bool:
        if self._hold is None:
            return False
        self._hold(on)
        return on

    def _work(self) -> None:
        job, holding = self._take(False, False)
        while job is not None:
            try:
                if job.queued:
                    self._on_started(job.call_id)
                job.run()
            except BaseException:  # noqa: BLE001 - jobs report their own errors; a thread must not die
                self._log("error", f"hornbeam_pool: a job failed:\n{traceback.format_exc()}")
            job, holding = self._take(True, holding)
