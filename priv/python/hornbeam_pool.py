"""The thread pool of one hornbeam worker: where every sync (``def``) handler
and the WSGI app run, so that blocking code (a database query, an HTTP call,
``time.sleep``) never stalls the asyncio loop that runs ``async def``
handlers. Used by hornbeam_runtime; not a public API.

* ``threads`` threads take jobs first come, first served. A job submitted
  while every thread is busy waits in a queue of at most ``max_queued``
  jobs; beyond that :meth:`HandlerPool.submit` refuses it at once (the caller
  answers ``overloaded``) instead of letting it wait past its timeout.
* Erlang times a call's *execution*, not its wait: a job that has waited
  for a thread longer than ``report_after`` seconds is reported with
  ``on_queued(call_id)`` (its timer stops) and, once a thread takes it,
  ``on_started(call_id)`` (its timer starts again). A watchdog thread,
  awake only while jobs wait, makes the report; a job taken sooner is
  reported with neither. (Reporting every job that found no free thread at
  once cost a third of the round-trip rate under load: two more frames per
  call for Erlang to handle, for waits of microseconds.)
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
import time
import traceback
from typing import Callable, Deque, List, Optional

_monotonic = time.monotonic

#: Default number of threads per worker (measured; see src/python/README.md).
DEFAULT_THREADS = 16
#: Default bound on jobs waiting for a thread, per worker.
DEFAULT_MAX_QUEUED = 1024
#: Default wait (seconds) after which a job still waiting is reported queued.
DEFAULT_REPORT_AFTER = 0.1

Notify = Callable[[int], None]
Log = Callable[[str, str], None]
Hold = Callable[[bool], None]


class _Job:
    """A submitted job. ``counted``: it found no free thread (it counts
    toward ``max_queued``); ``reported``: ``on_queued`` was sent for it."""

    __slots__ = ("call_id", "run", "at", "counted", "reported")

    def __init__(self, call_id: int, run: Callable[[], None], at: float, counted: bool) -> None:
        self.call_id = call_id
        self.run = run
        self.at = at
        self.counted = counted
        self.reported = False


class HandlerPool:
    """``threads`` threads running submitted jobs, with a bounded wait queue."""

    def __init__(self, threads: int, max_queued: int, *, on_queued: Notify, on_started: Notify,
                 log: Log, hold: Optional[Hold] = None, name: str = "hornbeam-handler",
                 report_after: float = DEFAULT_REPORT_AFTER) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, not {threads!r}")
        if not isinstance(max_queued, int) or max_queued < 0:
            raise ValueError(f"max_queued_calls must be a non-negative integer, not {max_queued!r}")
        if not isinstance(report_after, (int, float)) or report_after <= 0:
            raise ValueError(f"report_after must be a positive number of seconds, not {report_after!r}")
        self.threads = threads
        self.max_queued = max_queued
        self.report_after = float(report_after)
        self._on_queued = on_queued
        self._on_started = on_started
        self._log = log
        self._hold = hold
        # A plain lock and one wake-up lock per idle thread rather than a
        # threading.Condition: Condition.wait allocates a lock and runs a
        # page of Python per wait, on the path of every burst.
        self._lock = threading.Lock()
        self._idle: List[threading.Lock] = []  # wake-up locks (held) of idle threads
        self._jobs: Deque[_Job] = collections.deque()
        self._running = 0
        self._waiting = 0  # jobs in _jobs that found no free thread
        self._waking = False  # an idle thread was notified and has not woken yet
        self._closed = False
        # the watchdog sleeps on this lock (held) until a job is queued
        self._watching = False
        self._watch_wake = threading.Lock()
        self._watch_wake.acquire()
        self._threads: List[threading.Thread] = []
        for i in range(threads):
            t = threading.Thread(target=self._work, name=f"{name}-{i + 1}", daemon=True)
            t.start()
            self._threads.append(t)
        threading.Thread(target=self._watch, name=f"{name}-watchdog", daemon=True).start()

    @property
    def waiting(self) -> int:
        """Jobs waiting for a thread now."""
        return self._waiting

    def submit(self, call_id: int, run: Callable[[], None]) -> bool:
        """Run ``run()`` on a pool thread. Returns False, without running it,
        when ``max_queued`` jobs already wait (or the pool is shut down)."""
        with self._lock:
            if self._closed:
                return False
            free = self.threads - self._running - len(self._jobs)
            counted = free <= 0
            if counted:
                if self._waiting >= self.max_queued:
                    return False
                self._waiting += 1
            self._jobs.append(_Job(call_id, run, _monotonic(), counted))
            self._wake_one()
            if not self._watching:
                self._watching = True
                self._watch_wake.release()
        return True

    def _wake_one(self) -> None:
        # (with the lock held)
        if self._idle and not self._waking:
            self._waking = True
            self._idle.pop().release()

    def shutdown(self) -> None:
        """Stop taking jobs; idle threads exit, busy ones after their job."""
        with self._lock:
            self._closed = True
            self._jobs.clear()
            self._waiting = 0
            self._waking = True  # no more single wakeups: everyone goes
            while self._idle:
                self._idle.pop().release()
            if not self._watching:
                self._watching = True
                self._watch_wake.release()

    def _watch(self) -> None:
        """Report jobs that have waited ``report_after`` (oldest first; the
        queue is in submission order, so the scan stops at the first young
        one). Reports are made with the lock held, so a thread that takes a
        reported job sends "started" after "queued". Sleeps on
        ``_watch_wake`` while no job waits."""
        while True:
            self._watch_wake.acquire()
            while True:
                time.sleep(self.report_after / 2)
                with self._lock:
                    if self._closed:
                        return
                    if not self._jobs:
                        self._watching = False
                        break
                    due = _monotonic() - self.report_after
                    for job in self._jobs:
                        if job.at > due:
                            break
                        if not job.reported:
                            job.reported = True
                            self._on_queued(job.call_id)

    def _work(self) -> None:
        """A pool thread: take the next job (first come, first served), run
        it, repeat; sleep on this thread's own wake-up lock while there is
        none. One lock round per job, with the loop's state in locals: this
        is the path of every sync call.

        While jobs keep coming (a burst) the thread holds its frames back so
        the burst's results are written together; it releases them before
        it waits for work (and the worker writes a frame held over 1 ms
        itself, in case a job blocks). A thread that has just woken and
        finds more jobs waiting wakes one more thread (a busy thread that
        keeps taking jobs wakes nobody, so quick jobs stay on one thread;
        jobs that block pass the GIL on and the wakeups cascade)."""
        wake = threading.Lock()
        wake.acquire()
        lock = self._lock
        jobs = self._jobs
        idle = self._idle
        hold = self._hold
        on_started = self._on_started
        holding = False
        lock.acquire()
        while True:
            woke = False
            while not jobs:
                if holding:
                    holding = False
                    hold(False)  # type: ignore[misc]  # (holding implies a hold function)
                if self._closed:
                    lock.release()
                    return
                idle.append(wake)
                lock.release()
                wake.acquire()  # until a submit (or shutdown) releases it
                lock.acquire()
                self._waking = False
                woke = True
            job = jobs.popleft()
            self._running += 1
            if job.counted:
                self._waiting -= 1
            if jobs:
                if woke:
                    self._wake_one()
                if not holding and hold is not None:
                    holding = True
                    hold(True)
            lock.release()
            try:
                if job.reported:
                    on_started(job.call_id)
                job.run()
            except BaseException:  # noqa: BLE001 - jobs report their own errors; a thread must not die
                self._log("error", f"hornbeam_pool: a job failed:\n{traceback.format_exc()}")
            lock.acquire()
            self._running -= 1
