"""ASGI 3 serving for hornbeam: one HTTP exchange per request, and the
lifespan protocol. Used by hornbeam_runtime; not a public API.

Erlang owns the connection. A request arrives as one ``{call, Id, http,
Args}`` frame with the whole body (the connection process has already read
it); the app gets it back in ``http.request`` messages of at most
:data:`BODY_CHUNK` bytes. What the app sends goes back as:

* ``("response", status, headers, body)`` as the *result* of the call when
  the app completed its response and returned within the same loop step (the
  common case: one frame per request);
* otherwise ``{http, Id, Event}`` frames while the app runs —
  ``("start", status, headers)``, ``("body", data, more)``, or
  ``("response", status, headers, body)`` for a complete response whose app
  goes on running (e.g. background tasks) — and the result ``"ok"`` when it
  returns;
* ``("crash", message)`` when the app raised, ``("invalid", message)`` when it
  broke the protocol (returned without a response, sent a body before the
  start, ...). The traceback is logged here; the client gets a 500 (or, once
  the response has started, a closed connection).

Erlang's notifications for a running exchange: ``"disconnect"`` (the client
went away: :meth:`receive` returns ``http.disconnect``, :meth:`send` becomes a
no-op) and ``("ack", n)`` (the connection has taken the first ``n`` body
pieces). A streamed ``send`` waits while more than :data:`WINDOW_BYTES` bytes
or :data:`WINDOW_CHUNKS` pieces are not yet acknowledged, so a slow client
slows the app down instead of filling the VM's memory.
"""

from __future__ import annotations

import asyncio
import collections
import traceback
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Set, Tuple

#: Largest piece of a request body in one ``http.request`` message.
BODY_CHUNK = 64 * 1024
#: Flow control of streamed responses (see the module docs).
WINDOW_BYTES = 1024 * 1024
WINDOW_CHUNKS = 256

ASGI_HTTP = {"version": "3.0", "spec_version": "2.3"}
ASGI_LIFESPAN = {"version": "3.0", "spec_version": "2.0"}

Headers = List[Tuple[bytes, bytes]]
Event = Callable[[int, Any], None]
Result = Callable[[int, Any], None]
Log = Callable[[str, str], None]


class ProtocolError(RuntimeError):
    """The app sent a message that is not allowed at this point."""


def _bytes(v: Any, what: str) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{what} must be bytes, not {type(v).__name__}")


def response_headers(headers: Any) -> Headers:
    """Validated response headers: a list of (name, value) byte pairs."""
    out: Headers = []
    for item in headers if headers is not None else ():
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"a response header must be a (name, value) pair, got {item!r}") from None
        out.append((_bytes(name, "a header name"), _bytes(value, "a header value")))
    return out


def status_code(status: Any) -> int:
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise ValueError(f"the response status must be an int in 200..599, got {status!r}")
    return status


def _text(v: Any, encoding: str = "latin-1") -> str:
    return v.decode(encoding, "replace") if isinstance(v, bytes) else str(v)


def _addr(v: Any) -> Optional[Tuple[str, int]]:
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return (_text(v[0]), int(v[1]))
    return None


def http_scope(args: Mapping[str, Any], root_path: str, state: Dict[str, Any]) -> Dict[str, Any]:
    """The ASGI ``http`` scope of a request given by Erlang.

    ``path`` and ``raw_path`` include ``root_path`` (as uvicorn does since
    0.26; Starlette strips it again when routing)."""
    path = args.get("path") or b"/"
    raw_path = args.get("raw_path") or path
    return {
        "type": "http",
        "asgi": ASGI_HTTP,
        "http_version": _text(args.get("http_version") or b"1.1"),
        "method": _text(args.get("method") or b"GET"),
        "scheme": _text(args.get("scheme") or b"http"),
        "path": root_path + path.decode("utf-8", "replace"),
        "raw_path": root_path.encode("utf-8") + raw_path,
        "query_string": args.get("query") or b"",
        "root_path": root_path,
        "headers": list(args.get("headers") or ()),
        "client": _addr(args.get("client")),
        "server": _addr(args.get("server")),
        "state": dict(state),
    }


class Exchange:
    """One request served by an ASGI app: its ``receive`` and ``send``."""

    def __init__(self, handler: "AsgiHandler", call_id: int, args: Mapping[str, Any]) -> None:
        self.handler = handler
        self.call_id = call_id
        self.args = args
        body = args.get("body") or b""
        self._body: bytes = body if isinstance(body, bytes) else bytes(body)
        self._offset = 0
        self._body_done = False
        self.started = False  # http.response.start received
        self.complete = False  # the last body piece received
        self.disconnected = False
        self._start: Optional[Tuple[int, Headers]] = None  # start not yet sent to Erlang
        self._final: Optional[Tuple[int, Headers, bytes]] = None  # whole response not yet sent
        self._wake: Optional[asyncio.Event] = None  # disconnect or response complete
        # flow control
        self._sizes: Deque[int] = collections.deque()
        self._unacked = 0
        self._acked = 0
        self._sent = 0
        self._writable: Optional[asyncio.Event] = None

    # --- receive ---------------------------------------------------------

    async def receive(self) -> Dict[str, Any]:
        if not self._body_done:
            start = self._offset
            end = min(len(self._body), start + BODY_CHUNK)
            chunk = self._body if (start == 0 and end == len(self._body)) else self._body[start:end]
            self._offset = end
            self._body_done = end >= len(self._body)
            return {"type": "http.request", "body": chunk, "more_body": not self._body_done}
        if not (self.complete or self.disconnected):
            if self._wake is None:
                self._wake = asyncio.Event()
            await self._wake.wait()
        return {"type": "http.disconnect"}

    # --- send --------------------------------------------------------------

    async def send(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise ProtocolError("http.response.start sent twice")
            status = status_code(message["status"])
            headers = response_headers(message.get("headers"))
            self.started = True
            if not self.disconnected:
                self._start = (status, headers)
            return
        if kind != "http.response.body":
            raise ProtocolError(f"unexpected ASGI message {kind!r} in an http scope")
        if not self.started:
            raise ProtocolError("http.response.body sent before http.response.start")
        if self.complete:
            raise ProtocolError("http.response.body sent after the response was complete")
        body = _bytes(message.get("body", b""), "the response body")
        more = bool(message.get("more_body", False))
        if not more:
            self._completed()
        if self.disconnected:
            return
        if self._start is not None:
            status, headers = self._start
            self._start = None
            if not more:
                # The whole response: sent with the result if the app returns
                # in this loop step, else by _flush on the next one.
                self._final = (status, headers, body)
                self.handler.loop.call_soon(self._flush)
                return
            self.handler.event(self.call_id, ("start", status, headers))
        if more and not body:
            return
        self.handler.event(self.call_id, ("body", body, more))
        if more:
            self._sent += 1
            self._sizes.append(len(body))
            self._unacked += len(body)
            while not self.disconnected and (self._unacked > WINDOW_BYTES
                                             or len(self._sizes) > WINDOW_CHUNKS):
                if self._writable is None:
                    self._writable = asyncio.Event()
                self._writable.clear()
                await self._writable.wait()

    def _completed(self) -> None:
        self.complete = True
        if self._wake is not None:
            self._wake.set()

    def _flush(self) -> None:
        """Send a complete response that is still held back."""
        if self._final is not None:
            status, headers, body = self._final
            self._final = None
            self.handler.event(self.call_id, ("response", status, headers, body))

    # --- notifications from Erlang -------------------------------------------

    def notify(self, msg: Any) -> None:
        if msg == "disconnect":
            self.disconnected = True
            self._start = None
            self._final = None
            for ev in (self._wake, self._writable):
                if ev is not None:
                    ev.set()
        elif isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "ack":
            self.ack(int(msg[1]))

    def ack(self, seq: int) -> None:
        while self._acked < seq and self._sizes:
            self._unacked -= self._sizes.popleft()
            self._acked += 1
        if self._writable is not None:
            self._writable.set()

    # --- the app -------------------------------------------------------------

    async def run(self) -> None:
        h = self.handler
        try:
            await h.app(http_scope(self.args, h.root_path, h.state), self.receive, self.send)
        except BaseException as e:  # noqa: BLE001 - reported to Erlang and logged
            trace = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            message = f"{type(e).__name__}: {e}"
            h.log("error", f"ASGI app raised {message} on {self._describe()}\n{trace}")
            result: Any = ("crash", message.encode("utf-8", "replace"))
        else:
            if self._final is not None:
                status, headers, body = self._final
                self._final = None
                result = ("response", status, headers, body)
            elif self.complete or self.disconnected:
                result = "ok"
            elif not self.started:
                result = self._invalid("the ASGI app returned without starting a response")
            else:
                result = self._invalid("the ASGI app returned without completing its response")
        finally:
            h.exchanges.pop(self.call_id, None)
        if result != "ok" and result[0] != "response":
            self._flush()  # a completed response goes out before the error
        h.result(self.call_id, result)

    def _invalid(self, message: str) -> Tuple[str, bytes]:
        self.handler.log("error", f"{message} ({self._describe()})")
        return ("invalid", message.encode())

    def _describe(self) -> str:
        method = _text(self.args.get("method") or b"?")
        path = _text(self.args.get("raw_path") or b"?")
        return f"{method} {path}"


class Lifespan:
    """The lifespan protocol for one app instance (one per worker).

    ``mode`` is ``"auto"`` (an app that raises before answering the startup
    does not support lifespan: logged, and serving goes on), ``"on"`` (such an
    exception fails the startup) or ``"off"`` (never run)."""

    def __init__(self, app: Callable[..., Any], mode: str, log: Log) -> None:
        self.app = app
        self.mode = mode
        self.log = log
        self.state: Dict[str, Any] = {}
        self._queue: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._answered = False  # startup.complete/failed received
        self._failed: Optional[str] = None
        self._shutdown_failed: Optional[str] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self.running = False  # the app supports lifespan and has not finished it

    async def startup(self) -> Optional[str]:
        """Runs the startup; returns an error message if it failed."""
        if self.mode == "off":
            return None
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._queue.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        return self._failed

    async def shutdown(self) -> None:
        if not self.running or self._task is None or self._task.done():
            return
        await self._queue.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self._shutdown_failed is not None:
            self.log("error", f"ASGI lifespan shutdown failed: {self._shutdown_failed}")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_LIFESPAN, "state": self.state}
        self.running = True
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as e:  # noqa: BLE001
            message = f"{type(e).__name__}: {e}"
            trace = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            if self._answered:
                if self._failed is None:
                    self.log("error", f"ASGI lifespan raised {message}\n{trace}")
            elif self.mode == "auto":
                self.log("info", f"ASGI 'lifespan' protocol appears unsupported ({message})")
            else:
                self.log("error", f"ASGI lifespan startup raised {message}\n{trace}")
                self._failed = message
        finally:
            self.running = False
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Dict[str, Any]:
        return await self._queue.get()

    async def _send(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._answered = True
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._answered = True
            self._failed = str(message.get("message") or "lifespan.startup.failed")
            self.log("error", f"ASGI lifespan startup failed: {self._failed}")
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._shutdown_failed = str(message.get("message") or "lifespan.shutdown.failed")
            self._shutdown_done.set()
        else:
            raise ProtocolError(f"unexpected ASGI message {kind!r} in a lifespan scope")


class AsgiHandler:
    """Serves the HTTP calls of one worker with an ASGI 3 app."""

    def __init__(self, app: Callable[..., Any], loop: asyncio.AbstractEventLoop, *,
                 root_path: str = "", lifespan: str = "auto",
                 event: Event, result: Result, log: Log) -> None:
        self.app = app
        self.loop = loop
        self.root_path = root_path.rstrip("/")
        self.event = event
        self.result = result
        self.log = log
        self.lifespan = Lifespan(app, lifespan, log)
        self.exchanges: Dict[int, Exchange] = {}
        self._tasks: Set["asyncio.Task[Any]"] = set()

    @property
    def state(self) -> Dict[str, Any]:
        return self.lifespan.state

    def handle(self, call_id: int, args: Mapping[str, Any]) -> None:
        """Start serving one request (on the loop)."""
        ex = Exchange(self, call_id, args)
        self.exchanges[call_id] = ex
        task = self.loop.create_task(ex.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def notify(self, call_id: int, msg: Any) -> None:
        ex = self.exchanges.get(call_id)
        if ex is not None:
            ex.notify(msg)

    async def startup(self) -> Optional[str]:
        return await self.lifespan.startup()

    async def shutdown(self) -> None:
        await self.lifespan.shutdown()
