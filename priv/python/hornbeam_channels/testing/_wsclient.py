"""A small Phoenix V2 WebSocket client in the standard library only (RFC
6455 client framing over a plain socket), for end-to-end tests against a
real server. Not for production: one blocking socket, no TLS, no
reconnects.

    client = PhoenixClient.connect("ws://127.0.0.1:8000/ws", {"token": "ana"})
    reply = client.join("room:lobby", {"username": "ana"})   # {"status": "ok", "response": {...}}
    ref = client.push("room:lobby", "new_msg", {"body": "hi"})
    client.reply(ref)                                        # the phx_reply payload
    client.expect("room:lobby", "new_msg")                   # the next such message's payload
    client.close()
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import socket
import struct
import time
import urllib.parse
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Seconds a client waits for a frame before giving up (named so tests on a
#: loaded machine can raise it).
DEFAULT_TIMEOUT = 10.0


class HandshakeError(Exception):
    """The server refused the WebSocket upgrade (``status``: its HTTP status)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"WebSocket upgrade refused with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class ConnectionClosed(Exception):
    """The server closed the WebSocket (``code``: the close code, or None)."""

    def __init__(self, code: Optional[int], reason: str = "") -> None:
        super().__init__(f"the WebSocket was closed (code {code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class ChannelMessage(NamedTuple):
    """One Phoenix V2 message: ``[join_ref, ref, topic, event, payload]``."""

    join_ref: Optional[str]
    ref: Optional[str]
    topic: str
    event: str
    payload: Any


class WebSocket:
    """RFC 6455 client framing: masked text frames out, text frames in
    (fragments joined, pings answered)."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self._sock = sock
        self._buf = buffered
        self.closed: Optional[ConnectionClosed] = None

    @classmethod
    def open(cls, url: str, timeout: float = DEFAULT_TIMEOUT,
             headers: Optional[Mapping[str, str]] = None) -> "WebSocket":
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"expected a ws:// URL, got {url!r}")
        port = parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.hostname}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head, rest = b"", b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise HandshakeError(0, head)
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        got = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if ":" in h)}
        if status != 101:
            sock.close()
            raise HandshakeError(status, rest)
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        if got.get("sec-websocket-accept") != accept:
            sock.close()
            raise HandshakeError(status, b"bad Sec-WebSocket-Accept")
        return cls(sock, rest)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode("utf-8"))

    def _send(self, opcode: int, data: bytes) -> None:
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self._sock.sendall(head + mask + masked)

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no WebSocket frame before the timeout") from None
            if not chunk:
                self.closed = ConnectionClosed(None, "the connection was dropped")
                raise self.closed
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _frame(self, deadline: float) -> Tuple[bool, int, bytes]:
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
        mask = self._read(4, deadline) if b1 & 0x80 else b""
        data = self._read(n, deadline)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data

    def recv_text(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The next text message; raises ConnectionClosed or TimeoutError."""
        if self.closed is not None:
            raise self.closed
        deadline = time.monotonic() + timeout
        pieces: List[bytes] = []
        while True:
            fin, opcode, data = self._frame(deadline)
            if opcode == 0x8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                self.closed = ConnectionClosed(code, data[2:].decode("utf-8", "replace"))
                try:
                    self._send(0x8, data[:2])
                except OSError:
                    pass
                raise self.closed
            if opcode == 0x9:
                self._send(0xA, data)
                continue
            if opcode == 0xA:
                continue
            pieces.append(data)
            if fin:
                return b"".join(pieces).decode("utf-8")

    def close(self, code: int = 1000) -> None:
        if self.closed is None:
            try:
                self._send(0x8, struct.pack("!H", code))
            except OSError:
                pass
            self.closed = ConnectionClosed(code, "closed by the client")
        self._sock.close()


class PhoenixClient:
    """Phoenix V2 JSON messages over :class:`WebSocket`. Messages that no
    call waited for are kept, in order, for :meth:`expect`."""

    def __init__(self, ws: WebSocket, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.ws = ws
        self.timeout = timeout
        self._refs = itertools.count(1)
        self._join_refs: Dict[str, str] = {}
        self._inbox: List[ChannelMessage] = []

    @classmethod
    def connect(cls, url: str, params: Optional[Mapping[str, str]] = None,
                timeout: float = DEFAULT_TIMEOUT, headers: Optional[Mapping[str, str]] = None) -> "PhoenixClient":
        """Open ``url`` (``ws://host:port/ws``) with connect ``params`` in the
        query string and ``vsn=2.0.0``, as phoenix.js does."""
        query = urllib.parse.urlencode({**(params or {}), "vsn": "2.0.0"})
        return cls(WebSocket.open(f"{url}?{query}", timeout, headers), timeout)

    def send(self, topic: str, event: str, payload: Any, join_ref: Optional[str] = None) -> str:
        ref = str(next(self._refs))
        self.ws.send_text(json.dumps([join_ref or self._join_refs.get(topic), ref, topic, event, payload]))
        return ref

    def join(self, topic: str, payload: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Join ``topic``; returns the ``phx_reply`` payload (``status``, ``response``)."""
        join_ref = str(next(self._refs))
        self._join_refs[topic] = join_ref
        ref = self.send(topic, "phx_join", dict(payload or {}), join_ref=join_ref)
        return self.reply(ref)

    def push(self, topic: str, event: str, payload: Optional[Mapping[str, Any]] = None) -> str:
        """Send an event on a joined topic; returns its ref (see :meth:`reply`)."""
        return self.send(topic, event, dict(payload or {}))

    def leave(self, topic: str) -> Dict[str, Any]:
        return self.reply(self.send(topic, "phx_leave", {}))

    def receive(self, timeout: Optional[float] = None) -> ChannelMessage:
        """The next message (kept ones first)."""
        if self._inbox:
            return self._inbox.pop(0)
        return self._read(timeout)

    def _read(self, timeout: Optional[float]) -> ChannelMessage:
        join_ref, ref, topic, event, payload = json.loads(self.ws.recv_text(timeout or self.timeout))
        return ChannelMessage(join_ref, ref, topic, event, payload)

    def expect(self, topic: str, event: str, timeout: Optional[float] = None) -> Any:
        """The payload of the next ``event`` on ``topic`` (earlier ones are
        kept for later calls); TimeoutError lists what came instead."""
        return self._wait(lambda m: m.topic == topic and m.event == event, f"{event!r} on {topic!r}", timeout)

    def reply(self, ref: str, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The ``phx_reply`` payload for ``ref``."""
        payload: Dict[str, Any] = self._wait(lambda m: m.ref == ref and m.event == "phx_reply",
                                             f"the reply to ref {ref}", timeout)
        return payload

    def _wait(self, wanted: Any, what: str, timeout: Optional[float]) -> Any:
        for i, m in enumerate(self._inbox):
            if wanted(m):
                return self._inbox.pop(i).payload
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                m = self._read(left)
            except TimeoutError:
                seen = "; ".join(f"{m.event} on {m.topic}" for m in self._inbox) or "nothing"
                raise TimeoutError(f"waited for {what}; received {seen}") from None
            if wanted(m):
                return m.payload
            self._inbox.append(m)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "PhoenixClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
