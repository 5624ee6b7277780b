"""WSGI (PEP 3333) serving for hornbeam. Used by hornbeam_runtime; not a
public API.

A request arrives like an ASGI one (see hornbeam_asgi): one ``{call, Id,
http, Args}`` frame with the whole body. The app runs on the worker's thread
pool (hornbeam_pool, the same threads as sync channel handlers: WSGI apps
block), so requests of one worker overlap while they wait on I/O. The
answer uses the same frames as ASGI:

* a list or tuple iterable, or an iterable whose first piece is as long as
  the ``Content-Length`` the app gave, is one complete response: the result
  ``("response", status, headers, body)``;
* any other iterable is streamed: ``{http, Id, ("start", ...)}``, then
  ``("body", piece, True)`` per non-empty piece (with the same flow control
  as ASGI), ``("body", b"", False)``, and the result ``"ok"``.

``close()`` of the iterable is always called. An exception gives
``("crash", message)`` (traceback logged); ``start_response`` with
``exc_info`` re-raises once the headers went out, as PEP 3333 says.
"""

from __future__ import annotations

import collections
import io
import threading
import traceback
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from hornbeam_asgi import WINDOW_BYTES, WINDOW_CHUNKS, Event, Headers, Log, Result, _text

class _Errors:
    """``wsgi.errors``: a text stream whose lines go to the server log."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._buf = ""
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            self._buf += s
            *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line:
                self._log("error", f"wsgi.errors: {line}")
        return len(s)

    def writelines(self, seq: Any) -> None:
        for s in seq:
            self.write(s)

    def flush(self) -> None:
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest:
            self._log("error", f"wsgi.errors: {rest}")


def environ(args: Mapping[str, Any], root_path: str, errors: Any) -> Dict[str, Any]:
    """The WSGI environ of a request given by Erlang.

    Header names with ``_`` are left out (they would be indistinguishable
    from ``-`` ones in ``HTTP_*`` keys); repeated headers are joined with
    ``,``. ``CONTENT_LENGTH`` is the length of the (de-chunked) body whenever
    the request has one."""
    body = args.get("body") or b""
    server = args.get("server") or (b"127.0.0.1", 0)
    client = args.get("client") or (b"", 0)
    env: Dict[str, Any] = {
        "REQUEST_METHOD": _text(args.get("method") or b"GET"),
        "SCRIPT_NAME": root_path,
        "PATH_INFO": _text(args.get("path") or b"/"),
        "QUERY_STRING": _text(args.get("query") or b""),
        "SERVER_NAME": _text(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + _text(args.get("http_version") or b"1.1"),
        "REMOTE_ADDR": _text(client[0]),
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": _text(args.get("scheme") or b"http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name_b, value_b in args.get("headers") or ():
        name = _text(name_b)
        value = _text(value_b)
        if name == "content-type":
            env["CONTENT_TYPE"] = value
        elif name == "content-length":
            env["CONTENT_LENGTH"] = value
        elif "_" in name:
            continue
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            env[key] = env[key] + "," + value if key in env else value
    if body or "CONTENT_LENGTH" in env:
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def _status(status: Any) -> int:
    if not isinstance(status, str):
        raise TypeError(f"the WSGI status must be a str like '200 OK', got {status!r}")
    try:
        code = int(status.split(" ", 1)[0])
    except ValueError:
        raise ValueError(f"malformed WSGI status {status!r}") from None
    if not 200 <= code <= 599:
        raise ValueError(f"the WSGI status must be in 200..599, got {status!r}")
    return code


def _headers(headers: Any) -> Headers:
    out: Headers = []
    for item in headers:
        try:
            name, value = item
            out.append((name.encode("latin-1"), value.encode("latin-1")))
        except (TypeError, ValueError, AttributeError, UnicodeEncodeError):
            raise TypeError(f"a WSGI header must be a (str, str) pair of latin-1 text, got {item!r}") from None
    return out


def _content_length(headers: Headers) -> Optional[int]:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Exchange:
    """One request served by a WSGI app, in a pool thread."""

    def __init__(self, handler: "WsgiHandler", call_id: int, args: Mapping[str, Any]) -> None:
        self.handler = handler
        self.call_id = call_id
        self.args = args
        self.disconnected = False
        self._status: Optional[Tuple[int, Headers]] = None
        self._headers_sent = False
        self._cond = threading.Condition()
        self._sizes: Deque[int] = collections.deque()
        self._unacked = 0
        self._acked = 0

    # --- start_response / write ----------------------------------------------

    def start_response(self, status: str, headers: List[Tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self._headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self._status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        self._status = (_status(status), _headers(headers))
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write`` callable: sends ``data`` at once."""
        self._piece(data)

    # --- streaming -----------------------------------------------------------

    def _send_start(self) -> None:
        if self._status is None:
            raise AssertionError("the WSGI app sent a body before calling start_response")
        if not self._headers_sent:
            self._headers_sent = True
            status, headers = self._status
            self.handler.event(self.call_id, ("start", status, headers))

    def _piece(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a WSGI app must yield bytes, not {type(data).__name__}")
        if self.disconnected:
            return
        self._send_start()
        if not data:
            return
        self.handler.event(self.call_id, ("body", bytes(data), True))
        with self._cond:
            self._sizes.append(len(data))
            self._unacked += len(data)
            while not self.disconnected and (self._unacked > WINDOW_BYTES
                                             or len(self._sizes) > WINDOW_CHUNKS):
                self._cond.wait()

    def notify(self, msg: Any) -> None:
        with self._cond:
            if msg == "disconnect":
                self.disconnected = True
            elif isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "ack":
                while self._acked < int(msg[1]) and self._sizes:
                    self._unacked -= self._sizes.popleft()
                    self._acked += 1
            self._cond.notify_all()

    # --- the app ---------------------------------------------------------------

    def run(self) -> None:
        h = self.handler
        try:
            result = self._call()
        except BaseException as e:  # noqa: BLE001 - reported to Erlang and logged
            trace = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            message = f"{type(e).__name__}: {e}"
            h.log("error", f"WSGI app raised {message} on {self._describe()}\n{trace}")
            result = ("crash", message.encode("utf-8", "replace"))
        finally:
            h.exchanges.pop(self.call_id, None)
        h.result(self.call_id, result)

    def _call(self) -> Any:
        h = self.handler
        env = environ(self.args, h.root_path, h.errors)
        iterable = h.app(env, self.start_response)
        try:
            if isinstance(iterable, (list, tuple)):
                body = b"".join(bytes(p) for p in iterable)
                if self._headers_sent:  # write() was used
                    self._piece(body)
                    return self._end()
                if self._status is None:
                    raise AssertionError("the WSGI app returned without calling start_response")
                status, headers = self._status
                return ("response", status, headers, body)
            length = None
            for piece in iterable:
                if self.disconnected:
                    break
                if not self._headers_sent and self._status is not None:
                    if length is None:
                        length = _content_length(self._status[1])
                    if length is not None and len(piece) == length:
                        status, headers = self._status
                        return ("response", status, headers, bytes(piece))
                self._piece(piece)
            if not self._headers_sent:
                if self._status is None:
                    raise AssertionError("the WSGI app returned without calling start_response")
                status, headers = self._status
                return ("response", status, headers, b"")
            return self._end()
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    def _end(self) -> str:
        if not self.disconnected:
            self.handler.event(self.call_id, ("body", b"", False))
        return "ok"

    def _describe(self) -> str:
        return f"{_text(self.args.get('method') or b'?')} {_text(self.args.get('raw_path') or b'?')}"


class WsgiHandler:
    """Serves the HTTP calls of one worker with a WSGI app. The runtime runs
    each request's :meth:`exchange` on its thread pool."""

    #: the app blocks: hornbeam_runtime runs it on the pool, not the loop
    threaded = True

    def __init__(self, app: Callable[..., Any], loop: Any, *, root_path: str = "",
                 event: Event, result: Result, log: Log) -> None:
        self.app = app
        self.loop = loop
        self.root_path = root_path.rstrip("/")
        self.event = event
        self.result = result
        self.log = log
        self.errors = _Errors(log)
        self.exchanges: Dict[int, Exchange] = {}

    def exchange(self, call_id: int, args: Mapping[str, Any]) -> Callable[[], None]:
        """Register a request; returns what serves it (on a pool thread)."""
        ex = Exchange(self, call_id, args)
        self.exchanges[call_id] = ex
        return ex.run

    def forget(self, call_id: int) -> None:
        """The request will not run (the pool refused it)."""
        self.exchanges.pop(call_id, None)

    def notify(self, call_id: int, msg: Any) -> None:
        ex = self.exchanges.get(call_id)
        if ex is not None:
            ex.notify(msg)

    async def startup(self) -> Optional[str]:
        return None

    async def shutdown(self) -> None:
        return None
