"""Dispatch of worker calls to channel handlers and to the HTTP app, and
validation of what the handlers return. Used by hornbeam_worker; not a
public API.

The worker calls :func:`init` once, then :func:`startup` (the ASGI lifespan
startup, on the loop), then, from its reader thread, :func:`dispatch` for
every ``{call, Id, Kind, Args}`` frame (:func:`dispatch_batch` for a burst),
and schedules :func:`notify` on :data:`loop` for every ``{notify, Id, Msg}``
one; :func:`shutdown` when it stops. ``def`` handlers and WSGI apps run on
the worker's thread pool (:data:`pool`, hornbeam_pool), ``async def``
handlers and ASGI apps on the loop: blocking code never stalls the loop.
HTTP calls (kind ``http``) go to :data:`http` (hornbeam_asgi /
hornbeam_wsgi). :func:`add_sync_handler_hook` wraps every sync call (e.g.
Django's database connection handling). Frames are plain
Python values that the worker maps to Erlang terms: ``str`` is an atom,
``bytes`` a binary, tuples/lists/dicts/ints as themselves. Payloads, assigns
and reasons travel as JSON text (bytes); a binary frame's payload, and a
handler's ``bytes`` response, as ``('binary', bytes)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import logging
import sys
import time
import traceback
from typing import Any, Callable, ContextManager, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple

import hornbeam_channels as hc
import hornbeam_django
from hornbeam_pool import DEFAULT_MAX_QUEUED, DEFAULT_THREADS, HandlerPool

try:
    import _hornbeam  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - outside the worker
    _hornbeam = None

#: The worker's event loop (set by init): runs ``async def`` handlers and
#: ASGI apps.
loop: Optional[asyncio.AbstractEventLoop] = None

#: The worker's thread pool (set by init): runs ``def`` handlers and WSGI
#: apps, never on the loop's thread.
pool: Optional[HandlerPool] = None

#: Loaded ``app`` object ("module:attr" of the init config).
app: Any = None

#: What serves HTTP calls: a hornbeam_asgi.AsgiHandler or
#: hornbeam_wsgi.WsgiHandler, when there is an app and the init config names
#: a ``worker_class`` (the worker always does).
http: Any = None

Result = Any  # a tuple or atom (str) as described above
#: Calls a burst starts on the loop after routing all of them (dispatch_batch).
Later = List[Tuple[Callable[..., None], Tuple[Any, ...]]]


def _default_sink(call_id: int, result: Result) -> None:
    if _hornbeam is None:
        raise RuntimeError(hc.NOT_IN_WORKER)
    _hornbeam.result(call_id, result)


def _default_http_event(call_id: int, event: Any) -> None:
    if _hornbeam is None:
        raise RuntimeError(hc.NOT_IN_WORKER)
    _hornbeam.http(call_id, event)


def _default_progress(state: str, call_id: int) -> None:
    if _hornbeam is not None:
        _hornbeam.progress(call_id, state)


def _default_log(level: str, message: str) -> None:
    if _hornbeam is not None:
        _hornbeam.log(level, message)
    else:
        print(f"[{level}] {message}", file=sys.stderr)


#: Where results go (replaced in tests).
sink: Callable[[int, Result], None] = _default_sink
#: Where log lines go (replaced in tests).
log: Callable[[str, str], None] = _default_log
#: Where ``{http, Id, Event}`` frames go (replaced in tests).
http_event: Callable[[int, Any], None] = _default_http_event
#: Where ``{queued, Id}`` / ``{started, Id}`` frames go (replaced in tests):
#: a call waits for a pool thread / a waiting call started running.
progress: Callable[[str, int], None] = _default_progress

_tasks: Set["asyncio.Task[None]"] = set()  # running handler tasks (strong references)


# ---------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------


class _ErlangLogHandler(logging.Handler):
    """Forwards Python logging to Erlang's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno >= logging.ERROR:
                level = "error"
            elif record.levelno >= logging.WARNING:
                level = "warning"
            elif record.levelno >= logging.INFO:
                level = "info"
            else:
                level = "debug"
            log(level, f"{record.name}: {self.format(record)}")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _text(v: Any) -> Optional[str]:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, str) and v != "undefined":
        return v
    return None


def init(config: Mapping[str, Any]) -> Result:
    """Import the app and channel modules. Returns ``('init_ok', info)``,
    ``('init_error', module, message, traceback)`` when a module cannot be
    imported, or ``('app_error', spec, message)`` when ``module:attr`` names
    nothing to serve.

    A module without the attribute is served as channels only when some
    module registered channels (the shape the channel docs show); ``info``
    then says ``http: False`` and Erlang logs the one-line notice."""
    global loop, app, http, pool
    http = None
    app = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if pool is not None:
        pool.shutdown()
    try:
        pool = HandlerPool(_positive(config, "threads", DEFAULT_THREADS, 1),
                           _positive(config, "max_queued_calls", DEFAULT_MAX_QUEUED, 0),
                           on_queued=lambda call_id: progress("queued", call_id),
                           on_started=lambda call_id: progress("started", call_id),
                           log=lambda level, message: log(level, message),
                           report_after=_positive(config, "queued_report_ms", 100, 1) / 1000,
                           hold=_hornbeam.hold if _hornbeam is not None and sink is _default_sink
                           else None)
    except ValueError as e:
        return _init_error("hornbeam_runtime", e)
    root = logging.getLogger()
    if _hornbeam is not None and not any(isinstance(h, _ErlangLogHandler) for h in root.handlers):
        root.addHandler(_ErlangLogHandler())
        if root.level == logging.WARNING:  # untouched default
            root.setLevel(logging.INFO)

    modules = [m for m in (_text(x) for x in config.get("channel_modules") or []) if m]
    app_spec = _text(config.get("app"))
    try:
        # Before any user module: channel modules may import Django models.
        hornbeam_django.setup()
    except BaseException as e:  # noqa: BLE001
        return _init_error(hornbeam_django.settings_module() or "django", e)
    app_found = False
    if app_spec:
        mod_name, _, attr = app_spec.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except BaseException as e:  # noqa: BLE001 - reported to Erlang
            return _init_error(mod_name, e)
        app, app_found = _attribute(module, attr)
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001
            return _init_error(name, e)
    if app_spec and not app_found:
        if not hc.channels():
            return _app_error(app_spec, f"module {mod_name!r} has no attribute {attr!r} and no "
                                        "channels are registered: nothing to serve")
    elif app_spec and "worker_class" in config:
        if not callable(app):
            return _app_error(app_spec, f"{app_spec} is a {type(app).__name__}, not a callable "
                                        "ASGI/WSGI app")
        try:
            http = _http_handler(app, app_spec, config)
        except BaseException as e:  # noqa: BLE001
            return _init_error(app_spec.partition(":")[0], e)
    if hornbeam_django.ready():
        # Django's DB connections closed around every def handler, as
        # Channels' database_sync_to_async does; apps without Django skip it.
        add_sync_handler_hook(hornbeam_django.sync_handler_hook)
    return ("init_ok", info())


def _attribute(module: Any, path: str) -> Tuple[Any, bool]:
    """``module.a.b`` for the path ``a.b``, and whether it exists."""
    obj = module
    for part in filter(None, path.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return None, False
    return obj, True


def _positive(config: Mapping[str, Any], key: str, default: int, least: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{key} must be an integer >= {least}, not {value!r}")
    return value


def _http_handler(app_obj: Any, spec: str, config: Mapping[str, Any]) -> Any:
    worker_class = _text(config.get("worker_class")) or "asgi"
    lifespan = _text(config.get("lifespan")) or "auto"
    root_path = _text(config.get("root_path")) or ""
    sinks = dict(event=lambda i, e: http_event(i, e), result=lambda i, r: sink(i, r),
                 log=lambda level, m: log(level, m))
    if worker_class == "wsgi":
        import hornbeam_wsgi
        return hornbeam_wsgi.WsgiHandler(app_obj, loop, root_path=root_path, **sinks)
    if worker_class != "asgi":
        raise ValueError(f"worker_class must be asgi or wsgi, not {worker_class!r}")
    if lifespan not in ("auto", "on", "off"):
        raise ValueError(f"lifespan must be auto, on or off, not {lifespan!r}")
    _warn_if_wsgi(app_obj, spec)
    import hornbeam_asgi
    assert loop is not None  # init made it before the handler
    return hornbeam_asgi.AsgiHandler(app_obj, loop, root_path=root_path, lifespan=lifespan, **sinks)


def _warn_if_wsgi(app_obj: Any, spec: str) -> None:
    """A callable of two parameters that is not async is most likely WSGI."""
    try:
        fn = app_obj if inspect.isfunction(app_obj) or inspect.ismethod(app_obj) else app_obj.__call__
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) == 2 and not inspect.iscoroutinefunction(fn):
            log("warning", f"the app {spec} takes 2 arguments and is not async: it looks like a "
                           "WSGI app; serve it with worker_class => wsgi")
    except (TypeError, ValueError, AttributeError):
        pass


def startup() -> Any:
    """Run the HTTP app's startup (the ASGI lifespan) on the loop. Returns
    None, or ``('startup_failed', message)``."""
    if http is None or loop is None:
        return None
    try:
        failed = loop.run_until_complete(http.startup())
    except BaseException as e:  # noqa: BLE001
        log("error", f"hornbeam_runtime: startup failed:\n{traceback.format_exc()}")
        failed = f"{type(e).__name__}: {e}"
    if failed is None:
        return None
    return ("startup_failed", str(failed).encode("utf-8", "replace"))


def shutdown() -> None:
    """Run the HTTP app's shutdown (the ASGI lifespan), then stop the loop
    (scheduled on the loop by the worker when it stops)."""
    if pool is not None:
        pool.shutdown()
    if loop is None:
        return
    if http is None:
        loop.stop()
        return

    async def run() -> None:
        try:
            await http.shutdown()
        except BaseException:  # noqa: BLE001
            log("error", f"hornbeam_runtime: shutdown failed:\n{traceback.format_exc()}")

    task = loop.create_task(run())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    task.add_done_callback(lambda _t: loop.stop() if loop is not None else None)


def notify(call_id: int, msg: Any) -> None:
    """News from Erlang for a running call (on the loop)."""
    try:
        if http is not None:
            http.notify(call_id, msg)
    except BaseException:  # noqa: BLE001 - a bug here must not kill the loop
        log("error", f"hornbeam_runtime: notify failed:\n{traceback.format_exc()}")


def info() -> Dict[str, Any]:
    """What init reports: the registered channels, on_connect, and whether
    there is an HTTP app (False: channels only)."""
    return {
        "channels": [
            {"pattern": ch.pattern.encode(), "events": [e.encode() for e in ch.event_handlers],
             "intercepts": [e.encode() for e in ch.out_handlers]}
            for ch in hc.channels().values()
        ],
        "on_connect": hc.connect_handler() is not None,
        "http": http is not None,
    }


def _init_error(module: str, e: BaseException) -> Result:
    message = f"{type(e).__name__}: {e}"
    return ("init_error", module.encode(), message.encode(), _user_traceback(e).encode())


def _app_error(spec: str, message: str) -> Result:
    return ("app_error", spec.encode(), message.encode())


def _user_traceback(e: BaseException) -> str:
    """The traceback without the frames of this module and of importlib,
    which every import error would otherwise start with; empty when no
    frame is left (a module that is not there at all)."""
    te = traceback.TracebackException(type(e), e, e.__traceback__)
    frames = [f for f in te.stack
              if f.filename != __file__ and not f.filename.startswith("<frozen importlib")
              and not f.filename.endswith(("importlib/__init__.py", "importlib\\__init__.py"))]
    if not frames and e.__cause__ is None and e.__context__ is None:
        return ""
    te.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------


class Invalid(Exception):
    """A handler returned something that is not one of its return forms."""


def dispatch(call_id: int, kind: str, args: Mapping[str, Any]) -> None:
    """Route one call; called by the worker's reader thread (or any thread)
    and never blocks. A ``def`` handler or a WSGI request goes to the
    :data:`pool`, an ``async def`` handler or an ASGI request to the loop.
    The result is always sent, exactly once: ``overloaded`` at once when the
    pool's queue is full."""
    _dispatch_guarded(call_id, kind, args, None)


def dispatch_batch(calls: Any) -> None:
    """Route a burst of ``(call_id, kind, args)`` calls (one frame or one
    read of the worker): the ones for the loop are started there with one
    wakeup."""
    later: List[Tuple[Callable[..., None], Tuple[Any, ...]]] = []
    for call_id, kind, args in calls:
        _dispatch_guarded(call_id, kind, args, later)
    if later:
        _on_loop(_run_later, later)


def _dispatch_guarded(call_id: int, kind: str, args: Mapping[str, Any], later: Optional[Later]) -> None:
    try:
        _dispatch(call_id, kind, args, later)
    except BaseException as e:  # noqa: BLE001 - a bug here must not kill the reader
        log("error", f"hornbeam_runtime: {kind} call failed:\n{traceback.format_exc()}")
        sink(call_id, ("crash", f"{type(e).__name__}: {e}".encode()))


def _run_later(later: List[Tuple[Callable[..., None], Tuple[Any, ...]]]) -> None:
    """Start calls on the loop; each ``fn_args`` begins with the call id."""
    for fn, fn_args in later:
        try:
            fn(*fn_args)
        except BaseException as e:  # noqa: BLE001 - the caller must get an answer
            log("error", f"hornbeam_runtime: cannot start a call on the loop:\n{traceback.format_exc()}")
            sink(fn_args[0], ("crash", f"{type(e).__name__}: {e}".encode()))


def _on_loop(fn: Callable[..., None], *fn_args: Any) -> None:
    if loop is None:
        raise RuntimeError("hornbeam_runtime.init was not called")
    loop.call_soon_threadsafe(fn, *fn_args)


def _dispatch(call_id: int, kind: str, args: Mapping[str, Any], later: Optional[Later]) -> None:
    if kind == "http":
        if http is None:
            sink(call_id, ("invalid", b"this worker has no HTTP app"))
        elif getattr(http, "threaded", False):  # WSGI: a blocking app
            run = functools.partial(_run_wsgi, call_id, http.app, http.exchange(call_id, args))
            if not _submit(call_id, "http", run):
                http.forget(call_id)
        elif later is not None:
            later.append((http.handle, (call_id, args)))
        else:
            _on_loop(_run_later, [(http.handle, (call_id, args))])
        return
    prepared = _prepare(kind, args)
    if not isinstance(prepared, Prepared):
        sink(call_id, prepared)
        return
    if _is_async(prepared.handler):
        if later is not None:
            later.append((_run_async, (call_id, prepared)))
        else:
            _on_loop(_run_later, [(_run_async, (call_id, prepared))])
        return
    _submit(call_id, kind, functools.partial(_run_sync, call_id, kind, prepared))


def submit_event(call_id: int, fn: Callable[..., Any], payload: Any, socket: hc.Socket) -> None:
    """The worker's fast path for a client event whose handler is a ``def``:
    the worker (in Rust) has found ``fn`` and built ``payload`` and
    ``socket`` itself, skipping :func:`dispatch`'s conversions; this queues
    the call on the pool as :func:`_dispatch` would."""
    _submit(call_id, "event", functools.partial(_run_event, call_id, fn, payload, socket))


def _run_event(call_id: int, fn: Callable[..., Any], payload: Any, socket: hc.Socket) -> None:
    """:func:`_run_sync` for a client event, with the usual case (no hooks, a
    tuple or None returned) taken straight: this runs on every round trip,
    and the general path's Prepared, closures and frames cost a third more."""
    if _sync_hooks:
        _run_sync(call_id, "event",
                  Prepared(fn, (payload, socket), lambda value: _event_result(value, socket), _crash))
        return
    token = hc.current_call.set(call_id)
    try:
        try:
            value = fn(payload, socket)
        except BaseException as e:  # noqa: BLE001
            _send(call_id, hc.handler_name(fn), _crashed(hc.handler_name(fn), e, _crash))
            return
        if value is None or value.__class__ is tuple:
            try:
                _send(call_id, fn, _event_result(value, socket))
                return
            except (Invalid, TypeError, ValueError):
                pass  # not a valid return: _finish words and logs the error
        _complete_sync(call_id, fn, value, lambda v: _event_result(v, socket), _crash)
    finally:
        hc.current_call.reset(token)


def _submit(call_id: int, kind: str, run: Callable[[], None]) -> bool:
    """Run ``run`` on the pool; answer ``overloaded`` (and return False)
    when the queue is full."""
    if pool is None:
        raise RuntimeError("hornbeam_runtime.init was not called")
    if pool.submit(call_id, run):
        return True
    _log_overload(kind)
    sink(call_id, "overloaded")
    return False


_overload_log = {"at": -1e9, "refused": 0}


def _log_overload(kind: str) -> None:
    """One warning per second at most while calls are refused (a flood of
    log frames would only add to the overload)."""
    _overload_log["refused"] += 1
    now = time.monotonic()
    if now - _overload_log["at"] >= 1.0 and pool is not None:
        log("warning", f"hornbeam_runtime: refused {_overload_log['refused']} call(s) (last: {kind}): "
                       f"{pool.max_queued} calls already wait for one of the {pool.threads} handler "
                       "threads (max_queued_calls)")
        _overload_log["at"] = now
        _overload_log["refused"] = 0


_async_handlers: Dict[Any, bool] = {}


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is an ``async def`` (cached: handlers are few)."""
    try:
        return _async_handlers[fn]
    except KeyError:
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None))
        _async_handlers[fn] = is_async
        return is_async
    except TypeError:  # unhashable callable
        return inspect.iscoroutinefunction(fn)


# --- sync handlers: on a pool thread -----------------------------------------

#: ``hook(kind, handler)`` context managers wrapped, in order, around every
#: sync handler call and WSGI request on its pool thread (see
#: :func:`add_sync_handler_hook`).
SyncHook = Callable[[str, Callable[..., Any]], ContextManager[Any]]
_sync_hooks: List[SyncHook] = []


def add_sync_handler_hook(hook: SyncHook) -> None:
    """Wrap every sync handler call in ``hook(kind, handler)``, a context
    manager entered on the pool thread just before the handler runs and
    exited just after it (``kind`` is join, event, leave, connect or http;
    ``handler`` the function, or the WSGI app). This is the one place where
    per-call resource handling belongs, e.g. closing Django's database
    connections around each handler the way ``database_sync_to_async`` does.
    An exception raised by a hook counts as one raised by the handler.
    Hooks do not wrap ``async def`` handlers or ASGI apps."""
    if not callable(hook):
        raise TypeError(f"a sync handler hook must be callable, got {hook!r}")
    if hook not in _sync_hooks:
        _sync_hooks.append(hook)


def remove_sync_handler_hook(hook: SyncHook) -> None:
    """Undo :func:`add_sync_handler_hook`."""
    if hook in _sync_hooks:
        _sync_hooks.remove(hook)


def _with_hooks(kind: str, handler: Callable[..., Any], run: Callable[[], Any]) -> Any:
    """``run()`` inside every sync handler hook (the one place where a sync
    call is wrapped)."""
    with contextlib.ExitStack() as stack:
        for hook in list(_sync_hooks):
            stack.enter_context(hook(kind, handler))
        return run()


def _run_sync(call_id: int, kind: str, prepared: "Prepared") -> None:
    """Run a sync handler (on a pool thread, no event loop running) and send
    its result. Emits it makes are sent from this thread before the result,
    so Erlang applies them first."""
    fn, fn_args, finish, crash_result = prepared
    token = hc.current_call.set(call_id)
    try:
        try:
            if _sync_hooks:
                value = _with_hooks(kind, fn, functools.partial(fn, *fn_args))
            else:
                value = fn(*fn_args)
        except BaseException as e:  # noqa: BLE001
            _send(call_id, hc.handler_name(fn), _crashed(hc.handler_name(fn), e, crash_result))
            return
        _complete_sync(call_id, fn, value, finish, crash_result)
    finally:
        hc.current_call.reset(token)


def _complete_sync(call_id: int, fn: Callable[..., Any], value: Any, finish: Callable[[Any], Result],
                   crash_result: Callable[[str], Result]) -> None:
    """Send what a sync handler returned (with current_call still set)."""
    if value is None or value.__class__ is tuple or not inspect.isawaitable(value):
        _send(call_id, fn, _finish(fn, value, finish))
        return
    # a def that returned an awaitable: await it on the loop (the task
    # copies this context, current_call included)
    _on_loop(_start_task, call_id, hc.handler_name(fn), value, finish, crash_result)


def _run_wsgi(call_id: int, app_obj: Callable[..., Any], run: Callable[[], None]) -> None:
    """Serve a WSGI request (on a pool thread); ``run`` sends its result."""
    ran = False

    def serve() -> None:
        nonlocal ran
        ran = True
        run()

    try:
        if _sync_hooks:
            _with_hooks("http", app_obj, serve)
        else:
            serve()
    except BaseException as e:  # noqa: BLE001 - a hook failed
        log("error", f"hornbeam_runtime: a sync handler hook failed around a WSGI request:\n"
                     f"{traceback.format_exc()}")
        if not ran:
            sink(call_id, ("crash", f"{type(e).__name__}: {e}".encode()))


def _send(call_id: int, name: Any, result: Result) -> None:
    """Send a result; if it cannot be sent (not encodable), a crash instead:
    the caller must get an answer."""
    try:
        sink(call_id, result)
    except Exception as e:  # noqa: BLE001
        if not isinstance(name, str):
            name = hc.handler_name(name)
        log("error", f"hornbeam_runtime: cannot send the result of {name}:\n{traceback.format_exc()}")
        sink(call_id, ("crash", f"{type(e).__name__}: {e}".encode()))


# --- async handlers: on the loop -----------------------------------------------


def _run_async(call_id: int, prepared: "Prepared") -> None:
    """Start an ``async def`` handler as a task (on the loop thread)."""
    fn, fn_args, finish, crash_result = prepared
    token = hc.current_call.set(call_id)
    try:
        try:
            value = fn(*fn_args)
        except BaseException as e:  # noqa: BLE001
            _send(call_id, fn, _crashed(hc.handler_name(fn), e, crash_result))
            return
        if value is None or value.__class__ is tuple or not inspect.isawaitable(value):
            _send(call_id, fn, _finish(fn, value, finish))
            return
        _start_task(call_id, hc.handler_name(fn), value, finish, crash_result)
    finally:
        hc.current_call.reset(token)


def _start_task(call_id: int, name: str, aw: Any, finish: Callable[[Any], Result],
                crash_result: Callable[[str], Result]) -> None:
    if loop is None:
        raise RuntimeError("hornbeam_runtime.init was not called")
    task = loop.create_task(_await(call_id, name, aw, finish, crash_result))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _await(call_id: int, name: str, aw: Any, finish: Callable[[Any], Result],
                 crash_result: Callable[[str], Result]) -> None:
    try:
        value = await aw
    except BaseException as e:  # noqa: BLE001 - includes CancelledError
        result = _crashed(name, e, crash_result)
    else:
        result = _finish(name, value, finish)
    _send(call_id, name, result)


def _crashed(name: str, e: BaseException, crash_result: Callable[[str], Result]) -> Result:
    trace = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    log("error", f"handler {name} raised {type(e).__name__}: {e}\n{trace}")
    return crash_result(f"handler {name} raised {type(e).__name__}: {e}")


def _finish(name: Any, value: Any, finish: Callable[[Any], Result]) -> Result:
    """``name`` is the handler's name, or the handler (named only if needed)."""
    try:
        return finish(value)
    except (Invalid, TypeError, ValueError) as e:
        if not isinstance(name, str):
            name = hc.handler_name(name)
        message = f"handler {name} returned an invalid value: {e}"
        log("error", message)
        return ("invalid", message.encode())


class Prepared(NamedTuple):
    """A call ready to run: the handler, its arguments, and how to turn its
    return value (or its exception message) into a result."""

    handler: Callable[..., Any]
    args: Tuple[Any, ...]
    finish: Callable[[Any], Result]
    crash: Callable[[str], Result]


def _crash(message: str) -> Result:
    return ("crash", message.encode())


def _prepare(kind: str, args: Mapping[str, Any]) -> Any:
    if kind == "event":  # the hot path first
        return _prepare_event(args)
    if kind == "join":
        return _prepare_join(args)
    if kind == "leave":
        return _prepare_leave(args)
    if kind == "out":
        return _prepare_out(args)
    if kind == "info":
        return _prepare_info(args)
    if kind == "connect":
        return _prepare_connect(args)
    return ("invalid", f"unknown call kind {kind!r}".encode())


def _channel_for(args: Mapping[str, Any]) -> Optional[hc.Channel]:
    pattern = args.get("pattern")
    if isinstance(pattern, bytes):
        pattern = pattern.decode("utf-8", "replace")
    return hc.channels().get(pattern) if isinstance(pattern, str) else None


def _str(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")


def _decode(v: Any, default: Any) -> Any:
    return hc.json_decode(v) if isinstance(v, (bytes, str)) and v else default


def _payload(v: Any) -> Any:
    """A client's payload: ``bytes`` for a binary frame (``('binary', b)`` from
    Erlang), else the decoded JSON (``{}`` when empty)."""
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "binary" and isinstance(v[1], bytes):
        return v[1]
    return _decode(v, {})


def _prepare_join(args: Mapping[str, Any]) -> Any:
    ch = _channel_for(args)
    if ch is None or ch.join_handler is None:
        return ("no_handler", f"no join handler for {_str(args.get('pattern'))}".encode())
    socket = hc.Socket._from_wire(args.get("socket") or {})
    topic = _str(args.get("topic"))
    topic_params = {_str(k): _str(v) for k, v in (args.get("topic_params") or {}).items()}
    params = _payload(args.get("payload"))
    return Prepared(ch.join_handler, (topic, topic_params, params, socket),
                      lambda value: _join_result(value, socket), _crash)


def _prepare_event(args: Mapping[str, Any]) -> Any:
    ch = _channel_for(args)
    event = _str(args.get("event"))
    fn = ch.event_handlers.get(event) if ch is not None else None
    if fn is None:
        return ("no_handler", f"no handler for event {event!r} on {_str(args.get('pattern'))}".encode())
    socket = hc.Socket._from_wire(args.get("socket") or {})
    payload = _payload(args.get("payload"))
    return Prepared(fn, (payload, socket), lambda value: _event_result(value, socket), _crash)


def _prepare_out(args: Mapping[str, Any]) -> Any:
    ch = _channel_for(args)
    event = _str(args.get("event"))
    fn = ch.out_handlers.get(event) if ch is not None else None
    if fn is None:
        return ("no_handler", f"no intercept for event {event!r} on {_str(args.get('pattern'))}".encode())
    socket = hc.Socket._from_wire(args.get("socket") or {})
    payload = _payload(args.get("payload"))
    return Prepared(fn, (payload, socket), lambda value: _out_result(value, socket), _crash)


def _prepare_info(args: Mapping[str, Any]) -> Any:
    ch = _channel_for(args)
    if ch is None or ch.info_handler is None:
        return ("no_handler", f"no on_info handler for {_str(args.get('pattern'))}".encode())
    socket = hc.Socket._from_wire(args.get("socket") or {})
    broadcast = args.get("broadcast")
    if isinstance(broadcast, tuple) and len(broadcast) == 3:
        topic, event, payload = broadcast
        message: Any = hc.Broadcast(_str(topic), _str(event), _payload(payload))
    else:
        message = _decode(args.get("message"), None)
    return Prepared(ch.info_handler, (message, socket), lambda value: _info_result(value, socket), _crash)


def _prepare_leave(args: Mapping[str, Any]) -> Any:
    ch = _channel_for(args)
    if ch is None or ch.leave_handler is None:
        return "ok"
    socket = hc.Socket._from_wire(args.get("socket") or {})
    return Prepared(ch.leave_handler, (_str(args.get("topic")), socket), lambda _value: "ok", _crash)


def _prepare_connect(args: Mapping[str, Any]) -> Any:
    fn = hc.connect_handler()
    if fn is None:
        return "no_handler"
    params = _decode(args.get("params"), {})
    connect_info = _decode(args.get("connect_info"), {})
    return Prepared(fn, (params, connect_info), _connect_result, _crash)


# ---------------------------------------------------------------------------
# return-value validation
# ---------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _response(value: Any, what: str) -> Any:
    """JSON of a response/reason: a dict; None is {}; a str is {"reason": str}.
    ``bytes`` go back as ``('binary', b)``: a Phoenix binary reply."""
    if isinstance(value, (bytes, bytearray)):
        return ("binary", bytes(value))
    if value is None:
        value = {}
    elif isinstance(value, str):
        value = {"reason": value}
    elif value.__class__ is not dict and not isinstance(value, Mapping):  # (dict first: the usual case, and cheap)
        raise Invalid(f"the {what} must be a dict, got {_describe(value)}")
    return hc.json_encode(value)


def _socket(value: Any) -> hc.Socket:
    if not isinstance(value, hc.Socket):
        raise Invalid(f"expected a Socket, got {_describe(value)}")
    return value


def _join_result(value: Any, socket: hc.Socket) -> Result:
    if isinstance(value, tuple):
        if len(value) == 3 and value[0] == "ok":
            new = _socket(value[2])
            return ("ok", _response(value[1], "response"), new._assigns_payload())
        if len(value) == 2 and value[0] == "ok":
            return ("ok", _response(value[1], "response"), socket._assigns_payload())
        if len(value) == 2 and value[0] == "error":
            return ("error", _response(value[1], "reason"))
    raise Invalid(f"{_describe(value)}; expected ('ok', response, socket), ('ok', response) "
                  "or ('error', reason)")


def _reply_status(value: Any) -> Tuple[str, Any]:
    if isinstance(value, tuple) and len(value) == 2 and value[0] in ("ok", "error"):
        return value[0], value[1]
    if value in ("ok", "error"):
        return value, None
    return "ok", value


def _event_result(value: Any, socket: hc.Socket) -> Result:
    if value is None:
        return ("noreply", socket._assigns_payload())
    if isinstance(value, tuple) and value:
        tag = value[0]
        if tag == "reply" and len(value) in (2, 3):
            status, resp = _reply_status(value[1])
            new = _socket(value[2]) if len(value) == 3 else socket
            return ("reply", status, _response(resp, "response"), new._assigns_payload())
        if tag == "noreply" and len(value) == 2:
            return ("noreply", _socket(value[1])._assigns_payload())
        if tag == "stop" and len(value) == 3:
            new = _socket(value[2])
            return ("stop", hc.json_encode(value[1]), new._assigns_payload())
    raise Invalid(f"{_describe(value)}; expected ('reply', response, socket), ('reply', response), "
                  "('noreply', socket), ('stop', reason, socket) or None")


def _out_result(value: Any, socket: hc.Socket) -> Result:
    if value is None:
        return ("noreply", socket._assigns_payload())
    if isinstance(value, tuple) and value:
        if value[0] == "push" and len(value) == 3:
            new = _socket(value[2])
            return ("push", _payload_out(value[1]), new._assigns_payload())
        if value[0] == "noreply" and len(value) == 2:
            return ("noreply", _socket(value[1])._assigns_payload())
    raise Invalid(f"{_describe(value)}; expected ('push', payload, socket), ('noreply', socket) or None")


def _payload_out(value: Any) -> Any:
    """A pushed payload: a dict, or ``bytes`` (a binary frame)."""
    if isinstance(value, (bytes, bytearray)):
        return ("binary", bytes(value))
    if not isinstance(value, Mapping):
        raise Invalid(f"the payload must be a dict or bytes, got {_describe(value)}")
    return hc.json_encode(value)


def _info_result(value: Any, socket: hc.Socket) -> Result:
    if value is None:
        return ("noreply", socket._assigns_payload())
    if isinstance(value, tuple) and value:
        if value[0] == "noreply" and len(value) == 2:
            return ("noreply", _socket(value[1])._assigns_payload())
        if value[0] == "stop" and len(value) == 3:
            new = _socket(value[2])
            return ("stop", hc.json_encode(value[1]), new._assigns_payload())
    raise Invalid(f"{_describe(value)}; expected ('noreply', socket), ('stop', reason, socket) or None")


def _connect_result(value: Any) -> Result:
    if isinstance(value, tuple) and len(value) in (2, 3) and value[0] == "ok":
        assigns = value[1] if value[1] is not None else {}
        if not isinstance(assigns, Mapping):
            raise Invalid(f"the assigns must be a dict, got {_describe(assigns)}")
        for k, v in assigns.items():
            hc._check_assign(k, v)
        if len(value) == 2:
            return ("ok", hc.json_encode(assigns))
        return ("ok", hc.json_encode(assigns), _socket_id(value[2]))
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "error":
        return ("error", _response(value[1], "reason"))
    raise Invalid(f"{_describe(value)}; expected ('ok', assigns), ('ok', assigns, socket_id) "
                  "or ('error', reason)")


def _socket_id(value: Any) -> Optional[bytes]:
    """The socket id of ``('ok', assigns, socket_id)``: a non-empty str of at
    most 255 bytes (UTF-8), or None."""
    if value is None:
        return None
    if isinstance(value, str) and value:
        encoded = value.encode()
        if len(encoded) <= 255:
            return encoded
    raise Invalid(f"the socket id must be a non-empty str of at most 255 bytes or None, "
                  f"got {_describe(value)}")


# ---------------------------------------------------------------------------
# erl_call futures
# ---------------------------------------------------------------------------


def resolve(future: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    """Complete a ``call_async`` future with Erlang's answer. Called by the
    worker's reader thread: the future is completed on its own loop."""
    future.get_loop().call_soon_threadsafe(_complete, future, ok, value)


def _complete(future: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(hc.ErlangError(value))
