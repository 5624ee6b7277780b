"""The in-memory server of the test kit: runs channel handlers the way the
worker does (hornbeam_runtime's dispatch and return-value checks), routes
topics like the server's router, keeps assigns and presence the way the
channel and tracker processes do, and records what each client would
receive, so tests can assert on it. No Erlang, no sockets; handlers run in
the calling thread (on a helper thread only where the caller runs an event
loop and the handler must not).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import importlib
import inspect
import itertools
from collections import deque
from typing import Any, Callable, Coroutine, Deque, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple, Union

import hornbeam_channels as hc
import hornbeam_runtime as rt

from ._presence import Diff, Meta, PresenceError, Presences, PresenceTable
from ._router import Route, Router

Payload = Any  # a dict of JSON, or bytes for a binary frame

#: Matches any payload or response in the ``assert_*`` methods (compare
#: single values with ``unittest.mock.ANY`` inside an expected dict).
ANY_PAYLOAD: Any = object()

DEFAULT_CONNECT_INFO: Mapping[str, Any] = {
    "peer": {"address": "127.0.0.1", "port": 0}, "origin": None, "headers": {}}


class ConnectRefused(Exception):
    """``on_connect`` answered ``('error', reason)`` (the server answers 403)."""

    def __init__(self, reason: Payload) -> None:
        super().__init__(f"on_connect refused the connection: {reason!r}")
        self.reason = reason


class JoinRefused(Exception):
    """The join was refused: ``('error', reason)`` from on_join, or the
    server's own reasons (``{"reason": "unmatched topic"}``)."""

    def __init__(self, topic: str, reason: Payload) -> None:
        super().__init__(f"join of {topic!r} refused: {reason!r}")
        self.topic = topic
        self.reason = reason


class InvalidReturnValue(Exception):
    """A handler returned something that is not one of its return forms (the
    server logs this message and answers ``handler returned an invalid
    value``)."""


class ChannelClosed(Exception):
    """The channel was left, stopped or crashed; it takes no more pushes."""


class Message(NamedTuple):
    """A frame the client received on a channel, or a broadcast on a topic."""

    topic: str
    event: str
    payload: Payload


class Reply(NamedTuple):
    """The answer to a push: ``status`` is ``"ok"`` or ``"error"``."""

    status: str
    response: Payload


_NOREPLY = "noreply"
_STOPPED = "stopped"


class _Pending(NamedTuple):
    event: str
    outcome: Union[Reply, str]  # a Reply, _NOREPLY or _STOPPED


def _roundtrip(value: Any, what: str) -> Any:
    """``value`` as the other side of the wire sees it (JSON-checked the way
    the worker's encoder checks it; ``bytes`` travel as a binary frame)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return hc.json_decode(hc.json_encode(value))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON-compatible: {e}") from None


def _response(response: Any) -> Any:
    """A reply's response: ``bytes`` for a binary reply, else decoded JSON."""
    if isinstance(response, tuple) and len(response) == 2 and response[0] == "binary":
        return response[1]
    return hc.json_decode(response)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")  # the worker's words
    return value


def _matches(actual: Any, expected: Any) -> bool:
    return expected is ANY_PAYLOAD or actual == expected


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


class _Backend:
    """What ``hornbeam_channels`` calls instead of the worker's ``_hornbeam``
    module while a kit is open: emits and Erlang calls."""

    def __init__(self, kit: "ChannelKit") -> None:
        self._kit = kit

    def emit(self, kind: str, *args: Any, call_id: int = 0) -> None:
        kit = self._kit
        if kind == "broadcast" and len(args) == 3:
            topic, event, payload = args
            kit._broadcast(_text(topic, "topic"), _text(event, "event"),
                           _roundtrip(payload, "broadcast payload"), None)
        elif kind == "broadcast_from" and len(args) == 4:
            token, topic, event, payload = args
            kit._broadcast(_text(topic, "topic"), _text(event, "event"),
                           _roundtrip(payload, "broadcast payload"), kit._channel_by_token(token))
        elif kind == "push" and len(args) == 3:
            token, event, payload = args
            message_event, data = _text(event, "event"), _roundtrip(payload, "push payload")
            target = kit._channel_by_token(token)
            if target is not None and target.closed is None:  # a push to a gone channel is dropped
                target._receive(Message(target.topic, message_event, data))
        elif kind in ("subscribe", "unsubscribe") and len(args) == 2:
            token, topic = args
            target = kit._channel_by_token(token)
            topic = _text(topic, "topic")
            if target is not None and topic != target.topic:  # the server refuses its own topic
                if kind == "subscribe":
                    target._subscriptions.add(topic)
                else:
                    target._subscriptions.discard(topic)
        elif kind == "send" and len(args) == 2:
            token, message = args
            target = kit._channel_by_token(token)
            if target is not None:
                kit._later(target, "info", {"message": hc.json_encode(message)})
                kit._drain_if_idle()
        elif kind == "disconnect" and len(args) == 1:
            kit._disconnect(_text(args[0], "socket_id"))
        else:
            raise TypeError(f"unknown emit {kind!r} with {len(args)} arguments")

    def call(self, name: str, args: Any) -> Any:
        return self._kit._erl_call(name, _roundtrip(args, "the arguments"))

    async def call_async(self, name: str, args: Any) -> Any:
        return self.call(name, args)


class ChannelKit:
    """An in-memory hornbeam for the channels registered in this process.

    ``ChannelKit("chat")`` imports ``chat`` (like ``--channel-module chat``;
    importing it yourself works too) and routes joins to every channel
    registered so far. While the kit is open, ``broadcast``, ``push`` and
    ``Presence`` calls (from handlers or from the test) go to it. Use it as
    a context manager, or call :meth:`close`.
    """

    def __init__(self, *channel_modules: str) -> None:
        for name in channel_modules:
            importlib.import_module(name)
        self._router = Router(list(hc.channels()))
        self._presence = PresenceTable()
        self._channels: Dict[int, "ChannelSocket"] = {}  # alive: joining or joined
        self._numbers = itertools.count(1)
        self._broadcasts = _Inbox("broadcast")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        # What channel processes would handle after the running call:
        # intercepted broadcasts and on_info messages, in arrival order.
        self._mailbox: Deque[Tuple["ChannelSocket", str, Dict[str, Any]]] = deque()
        self._draining = False
        self._connections: List["Connection"] = []  # open ones
        self._disconnects: List[str] = []
        # handler calls under way (nested: a handler's Presence call);
        # queued on_info/intercept work and disconnects wait for them
        self._running = 0
        self._previous_backend = hc._set_test_backend(_Backend(self))

    # -- public ---------------------------------------------------------------

    def connect(self, params: Optional[Mapping[str, Any]] = None,
                connect_info: Optional[Mapping[str, Any]] = None) -> "Connection":
        """Open a connection: runs ``@on_connect(params, connect_info)``
        (when registered). Raises :class:`ConnectRefused` on
        ``('error', reason)``; the handler's own exceptions propagate."""
        self._check_open()
        params = dict(params or {})
        info = dict(DEFAULT_CONNECT_INFO if connect_info is None else connect_info)
        args = {"params": hc.json_encode(params), "connect_info": hc.json_encode(info)}
        result = self._run("connect", args)
        socket_id: Optional[str] = None
        if result == "no_handler":
            assigns: Payload = {}
        elif result[0] == "ok":
            assigns = hc.json_decode(result[1])
            if len(result) == 3 and result[2] is not None:  # ('ok', assigns, socket_id)
                socket_id = result[2].decode()
        else:
            raise ConnectRefused(hc.json_decode(result[1]))
        conn = Connection(self, f"{next(self._numbers):016X}", params, assigns, socket_id)
        self._connections.append(conn)
        return conn

    def presence_list(self, topic: str) -> Presences:
        """``Presence(topic).list()``: ``{key: {"metas": [...]}}``."""
        return self._presence.list(topic)

    def presence_get(self, topic: str, key: str) -> Optional[Dict[str, List[Meta]]]:
        """``Presence(topic).get(key)``: ``{"metas": [...]}`` or None."""
        return self._presence.get(topic, key)

    def assert_broadcast(self, topic: str, event: str, payload: Any = ANY_PAYLOAD) -> Payload:
        """Assert that ``event`` was broadcast on ``topic`` (by any handler,
        joined or not); returns its payload and consumes it."""
        return self._broadcasts.take(event, payload, topic=topic)

    def refute_broadcast(self, topic: str, event: str, payload: Any = ANY_PAYLOAD) -> None:
        self._broadcasts.refute(event, payload, topic=topic)

    def close(self) -> None:
        """Close every connection (runs on_leave) and stop routing emits here."""
        if self._closed:
            return
        for ch in list(self._channels.values()):
            ch._end("disconnect", None)
        self._closed = True
        if hc._test_backend is not None and getattr(hc._test_backend, "_kit", None) is self:
            hc._set_test_backend(self._previous_backend)
        if self._loop is not None:
            self._loop.close()

    def __enter__(self) -> "ChannelKit":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running handlers -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ChannelKit is closed")

    def _run(self, kind: str, args: Mapping[str, Any]) -> Any:
        """One worker call through hornbeam_runtime, placed like the worker
        places it: an ``async def`` handler on an event loop, a ``def`` one
        off any event loop and inside the sync handler hooks
        (``hornbeam_runtime.add_sync_handler_hook``). The handler's
        exceptions propagate; an invalid return value raises
        InvalidReturnValue."""
        self._running += 1
        try:
            return self._run_one(kind, args)
        finally:
            self._running -= 1
            if self._running == 0:
                self._apply_disconnects()

    def _run_one(self, kind: str, args: Mapping[str, Any]) -> Any:
        prepared = rt._prepare(kind, args)
        if not isinstance(prepared, rt.Prepared):
            return prepared
        self._running += 1
        try:
            return self._run_prepared(kind, prepared)
        finally:
            self._running -= 1

    def _run_prepared(self, kind: str, prepared: "rt.Prepared") -> Any:
        fn, fn_args, finish, _crash = prepared
        if rt._is_async(fn):
            value = self._on_loop(fn(*fn_args))
        else:
            value = self._off_loop(functools.partial(rt._with_hooks, kind, fn, functools.partial(fn, *fn_args)))
            if inspect.isawaitable(value):  # a def that returned an awaitable
                value = self._on_loop(value)
        result = rt._finish(fn, value, finish)
        if isinstance(result, tuple) and result[0] == "invalid":
            raise InvalidReturnValue(result[1].decode("utf-8", "replace"))
        return result

    @staticmethod
    def _loop_running() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def _off_loop(self, run: Callable[[], Any]) -> Any:
        """``run()`` on a thread without a running event loop (blocking
        calls such as ``Presence.list()`` refuse to run on one)."""
        if not self._loop_running():
            return run()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(run).result()

    def _on_loop(self, aw: Any) -> Any:
        """Await ``aw`` on the kit's event loop (on a thread of its own when
        the caller already runs a loop, e.g. an async test)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        loop = self._loop

        async def wait() -> Any:
            return await aw

        coro: Coroutine[Any, Any, Any] = wait()
        if not self._loop_running():
            return loop.run_until_complete(coro)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(loop.run_until_complete, coro).result()

    # -- channels, pub/sub, presence --------------------------------------------

    def _route(self, topic: str) -> Optional[Route]:
        return self._router.match(topic)

    def _channel_by_token(self, token: Any) -> Optional["ChannelSocket"]:
        if isinstance(token, bytes) and token.startswith(b"hornbeam-kit:"):
            try:
                return self._channels.get(int(token[len(b"hornbeam-kit:"):]))
            except ValueError:
                return None
        return None

    def _broadcast(self, topic: str, event: str, payload: Payload,
                   exclude: Optional["ChannelSocket"]) -> None:
        message = Message(topic, event, payload)
        self._broadcasts.add(message)
        wire = ("binary", payload) if isinstance(payload, bytes) else hc.json_encode(payload)
        for ch in list(self._channels.values()):
            if topic in ch._subscriptions and ch is not exclude:
                self._later(ch, "info", {"broadcast": (topic.encode(), event.encode(), wire)})
            if ch.topic != topic:
                continue
            ch._broadcasts.add(message)  # seen on the topic, like a subscribed test
            if not ch.joined or ch.closed is not None or ch is exclude:  # left: unsubscribed
                continue
            if ch._intercepts:
                # through its channel process, in order with the ones it intercepts
                self._later(ch, "out", {"event": event.encode(), "payload": wire})
            else:
                ch._receive(message)
        self._drain_if_idle()

    def _later(self, ch: "ChannelSocket", kind: str, args: Dict[str, Any]) -> None:
        self._mailbox.append((ch, kind, args))

    def _drain_if_idle(self) -> None:
        """Deliver what channel processes would handle next, unless a
        handler is running (its channel's assigns are not settled yet)."""
        if self._running == 0:
            self._drain()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._mailbox:
                ch, kind, args = self._mailbox.popleft()
                if ch.closed is None:
                    ch._handle(kind, args)
        finally:
            self._draining = False

    def _disconnect(self, socket_id: str) -> None:
        """``disconnect(socket_id)``: every open connection with that id
        closes once the handler calls in progress returned (on the server
        the socket closes before the calling handler's reply is written)."""
        self._disconnects.append(socket_id)
        if self._running == 0:
            self._apply_disconnects()

    def _apply_disconnects(self) -> None:
        while self._disconnects:
            socket_id = self._disconnects.pop(0)
            for conn in [c for c in self._connections if c.socket_id == socket_id]:
                conn._close("disconnected")

    def _presence_diffs(self, diffs: List[Diff]) -> None:
        for d in diffs:
            self._broadcast(d.topic, "presence_diff", _roundtrip(d.payload, "diff"), None)

    def _erl_call(self, name: str, args: Any) -> Any:
        """``hornbeam_python_calls:handle/2`` for the kit: presence and echo."""
        if name == "echo":
            return args
        if not name.startswith("presence_") or not isinstance(args, dict):
            raise hc.ErlangError(f"unknown erl_call {name}")
        op, topic, key = name[len("presence_"):], args.get("topic"), args.get("key")
        if op == "list" and isinstance(topic, str):
            return self._presence.list(topic)
        if op == "get" and isinstance(topic, str) and isinstance(key, str):
            return self._presence.get(topic, key)
        if op not in ("track", "update", "untrack") or not isinstance(topic, str) \
                or not isinstance(key, str):
            raise hc.ErlangError(f"bad arguments for presence_{op}")
        try:
            owner = self._channel_by_token(base64.b64decode(args.get("channel") or ""))
        except ValueError:
            owner = None
        if owner is None:  # (a closing channel is alive until its on_leave returned)
            raise hc.ErlangError("the socket does not belong to a live channel")
        meta = args.get("meta") or {}
        try:
            if op == "track":
                diff = self._presence.track(owner.number, topic, key, meta)
            elif op == "update":
                diff = self._presence.update(owner.number, topic, key, meta)
            else:
                diff = self._presence.untrack(owner.number, topic, key)
        except PresenceError as e:
            raise hc.ErlangError(str(e)) from None
        self._presence_diffs([diff])
        return None


class _Inbox:
    """Messages not yet asserted, in arrival order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.messages: List[Message] = []

    def add(self, message: Message) -> None:
        self.messages.append(message)

    def _find(self, event: str, payload: Any, topic: Optional[str]) -> Optional[int]:
        for i, m in enumerate(self.messages):
            if m.event == event and (topic is None or m.topic == topic) and _matches(m.payload, payload):
                return i
        return None

    def _describe(self, topic: Optional[str]) -> str:
        seen = [m for m in self.messages if topic is None or m.topic == topic]
        what = "the client received" if self.kind == "push" else "broadcasts"
        if not seen:
            return f"{what}: nothing (that was not asserted already)"
        return f"{what} (not asserted yet):\n" + "\n".join(
            f"  {m.event!r} {_show(m.payload)}" for m in seen)

    def take(self, event: str, payload: Any, topic: Optional[str] = None) -> Payload:
        i = self._find(event, payload, topic)
        if i is None:
            want = f"{self.kind} {event!r}" + ("" if payload is ANY_PAYLOAD else f" with {_show(payload)}")
            where = "" if topic is None else f" on {topic!r}"
            raise AssertionError(f"expected a {want}{where}; {self._describe(topic)}")
        return self.messages.pop(i).payload

    def refute(self, event: str, payload: Any, topic: Optional[str] = None) -> None:
        i = self._find(event, payload, topic)
        if i is not None:
            m = self.messages[i]
            raise AssertionError(f"unexpected {self.kind} {m.event!r} {_show(m.payload)}"
                                 + ("" if topic is None else f" on {topic!r}"))


class Connection:
    """One client connection (a WebSocket, in the server): joins topics."""

    def __init__(self, kit: ChannelKit, conn_id: str, params: Payload, assigns: Payload,
                 socket_id: Optional[str] = None) -> None:
        self.kit = kit
        self.id = conn_id
        #: the id on_connect returned (``('ok', assigns, socket_id)``), or None: ``socket.id``
        self.socket_id = socket_id
        #: None while open; "closed" (:meth:`close`) or "disconnected" (``disconnect(socket_id)``)
        self.closed: Optional[str] = None
        #: the connect params, as handlers see them in ``socket.params``
        self.params = params
        #: what on_connect assigned (every channel of this connection starts with it)
        self.assigns = assigns
        self._refs = itertools.count(1)
        self._joined: Dict[str, "ChannelSocket"] = {}

    def join(self, topic: str, payload: Optional[Mapping[str, Any]] = None) -> Tuple[Payload, "ChannelSocket"]:
        """Join ``topic``: runs its channel's on_join with ``payload``.
        Returns ``(reply, channel_socket)``; raises :class:`JoinRefused`
        when the handler (or routing) refuses. A second join of a topic
        replaces the first channel (on_leave runs for it, as in the server).
        """
        self.kit._check_open()
        if self.closed is not None:
            raise ChannelClosed(f"the connection is closed ({self.closed})")
        join_ref = str(next(self._refs))
        data = _roundtrip(dict(payload or {}), "the join payload")
        route = self.kit._route(topic)
        if route is None or hc.channels().get(route.pattern) is None:
            raise JoinRefused(topic, {"reason": "unmatched topic"})
        old = self._joined.pop(topic, None)
        if old is not None:
            old._end("duplicate_join", Message(topic, "phx_close", {}))
        ch = ChannelSocket(self, next(self.kit._numbers), topic, route, join_ref, self.assigns)
        self.kit._channels[ch.number] = ch
        args = {"pattern": route.pattern.encode(), "topic": topic.encode(),
                "topic_params": {k.encode(): v.encode() for k, v in route.topic_params.items()},
                "payload": hc.json_encode(data), "socket": ch._wire()}
        try:
            result = self.kit._run("join", args)
        except BaseException:
            ch._forget()
            raise
        if result[0] == "no_handler":
            ch._forget()
            raise JoinRefused(topic, {"reason": "join crashed"})
        if result[0] == "error":
            ch._forget()
            raise JoinRefused(topic, hc.json_decode(result[1]))
        _, reply_json, assigns_json = result
        ch._assigns_json = assigns_json
        ch.joined = True
        self._joined[topic] = ch
        # as the server: subscribed before the reply, presence_state after it
        ch._receive(Message(topic, "presence_state", self.kit.presence_list(topic)))
        reply: Payload = hc.json_decode(reply_json)
        self.kit._drain_if_idle()
        return reply, ch

    def close(self) -> None:
        """The client goes away: every channel ends (on_leave runs)."""
        self._close("closed")

    def _close(self, why: str) -> None:
        if self.closed is None:
            self.closed = why
        if self in self.kit._connections:
            self.kit._connections.remove(self)
        for ch in list(self._joined.values()):
            ch._end("disconnect", None)
        self._joined.clear()

    def _dropped(self, ch: "ChannelSocket") -> None:
        if self._joined.get(ch.topic) is ch:
            del self._joined[ch.topic]


class ChannelSocket:
    """A joined channel, seen from its client: push events to it, then
    assert on the replies, pushes and broadcasts it got.

    ``assert_*`` find the first matching message not yet asserted, consume
    it and return its payload; ``payload`` is compared with ``==`` (use
    ``unittest.mock.ANY`` inside it for values such as ``phx_ref``).
    """

    def __init__(self, conn: Connection, number: int, topic: str, route: Route, join_ref: str,
                 assigns: Payload) -> None:
        self.connection = conn
        self.number = number
        self.topic = topic
        self.pattern = route.pattern
        self.topic_params = route.topic_params
        self.join_ref = join_ref
        self.joined = False
        #: None while open; then "leave", "stop", "crashed", "disconnect" or "duplicate_join"
        self.closed: Optional[str] = None
        self._assigns_json = hc.json_encode(assigns)
        self._pushes = _Inbox("push")
        self._broadcasts = _Inbox("broadcast")
        self._replies: Dict[str, _Pending] = {}
        self._subscriptions: Set[str] = set()
        channel = hc.channels().get(route.pattern)
        self._intercepts = set(channel.out_handlers) if channel is not None else set()

    # -- what the handlers keep -------------------------------------------------

    @property
    def assigns(self) -> Payload:
        """The channel's assigns as the channel process keeps them."""
        value: Payload = hc.json_decode(self._assigns_json)
        return value

    @property
    def socket(self) -> hc.Socket:
        """A handler's view of this channel (for ``Presence(...).track`` from
        the test itself)."""
        return hc.Socket._from_wire(self._wire())

    # -- acting as the client ----------------------------------------------------

    def push(self, event: str, payload: Union[Mapping[str, Any], bytes, None] = None) -> str:
        """Send ``event`` to the channel; runs its handler. Returns the ref
        to give to :meth:`assert_reply`. An exception of the handler
        propagates after the channel crashed (on_leave ran, its presences
        left, the client got ``phx_error``)."""
        self._check_open()
        ref = str(next(self.connection._refs))
        # bytes: a binary frame, as the server hands it to the worker
        wire: Any = (("binary", bytes(payload)) if isinstance(payload, (bytes, bytearray))
                     else hc.json_encode(_roundtrip(dict(payload or {}), "the payload")))
        args = {"pattern": self.pattern.encode(), "event": event.encode(),
                "payload": wire, "socket": self._wire()}
        try:
            result = self.connection.kit._run("event", args)
        except InvalidReturnValue:
            self._replies[ref] = _Pending(event, Reply("error", {"reason": "handler returned an invalid value"}))
            raise
        except BaseException:
            # the server logs an on_leave failure here; the handler's error is the news
            with contextlib.suppress(Exception):
                self._end("crashed", Message(self.topic, "phx_error", {"reason": "channel_crash"}))
            raise
        tag = result[0]
        if tag == "reply":
            _, status, response, self._assigns_json = result
            self._replies[ref] = _Pending(event, Reply(status, _response(response)))
        elif tag == "noreply":
            self._assigns_json = result[1]
            self._replies[ref] = _Pending(event, _NOREPLY)
        elif tag == "stop":
            self._assigns_json = result[2]
            self._replies[ref] = _Pending(event, _STOPPED)
            self._end("stop", Message(self.topic, "phx_close", {}))
        else:  # no_handler: the server answers an error and the channel lives on
            self._replies[ref] = _Pending(event, Reply("error", {"reason": "unhandled event"}))
        self.connection.kit._drain_if_idle()
        return ref

    def leave(self) -> None:
        """Leave the channel: runs on_leave, its presences leave."""
        self._check_open()
        self._end("leave", Message(self.topic, "phx_close", {}))

    def send(self, message: Any) -> None:
        """Send ``message`` to the channel process, as
        ``hornbeam_channels.send(socket, message)`` or an Erlang ``!`` does:
        ``@room.on_info`` runs with it."""
        self._check_open()
        kit = self.connection.kit
        kit._later(self, "info", {"message": hc.json_encode(_roundtrip(message, "the message"))})
        kit._drain_if_idle()

    @property
    def subscriptions(self) -> List[str]:
        """The topics this channel subscribed to with ``subscribe``."""
        return sorted(self._subscriptions)

    # -- assertions ---------------------------------------------------------------

    def assert_reply(self, ref: str, status: str = "ok", response: Any = ANY_PAYLOAD) -> Payload:
        """Assert the push ``ref`` was answered with ``status`` (and
        ``response``); returns the response."""
        pending = self._replies.get(ref)
        if pending is None:
            raise AssertionError(f"no push with ref {ref!r} on {self.topic!r} (refs: {sorted(self._replies)})")
        want = f"a {status} reply" + ("" if response is ANY_PAYLOAD else f" {_show(response)}")
        outcome = pending.outcome
        if outcome == _NOREPLY:
            raise AssertionError(f"expected {want} to {pending.event!r}; the handler did not reply (noreply)")
        if outcome == _STOPPED:
            raise AssertionError(f"expected {want} to {pending.event!r}; the handler stopped the channel")
        assert isinstance(outcome, Reply)
        if outcome.status != status or not _matches(outcome.response, response):
            raise AssertionError(f"expected {want} to {pending.event!r}; got a {outcome.status} reply "
                                 f"{_show(outcome.response)}")
        return outcome.response

    def reply(self, ref: str) -> Optional[Reply]:
        """The reply to the push ``ref`` (without asserting on it), or None
        when the handler did not reply (noreply or stop)."""
        pending = self._replies.get(ref)
        if pending is None:
            raise KeyError(f"no push with ref {ref!r} on {self.topic!r}")
        return pending.outcome if isinstance(pending.outcome, Reply) else None

    def refute_reply(self, ref: str) -> None:
        """Assert the push ``ref`` got no reply (noreply, or a stop)."""
        pending = self._replies.get(ref)
        if pending is None:
            raise AssertionError(f"no push with ref {ref!r} on {self.topic!r}")
        if isinstance(pending.outcome, Reply):
            raise AssertionError(f"unexpected {pending.outcome.status} reply to {pending.event!r}: "
                                 f"{_show(pending.outcome.response)}")

    def assert_push(self, event: str, payload: Any = ANY_PAYLOAD) -> Payload:
        """Assert this channel's client received ``event``: a ``push`` to
        it, a broadcast on its topic, ``presence_state`` / ``presence_diff``,
        ``phx_close`` / ``phx_error``."""
        return self._pushes.take(event, payload)

    def refute_push(self, event: str, payload: Any = ANY_PAYLOAD) -> None:
        self._pushes.refute(event, payload)

    def assert_broadcast(self, event: str, payload: Any = ANY_PAYLOAD) -> Payload:
        """Assert ``event`` was broadcast on this channel's topic since the
        join began (from any handler, ``broadcast_from`` included)."""
        return self._broadcasts.take(event, payload)

    def refute_broadcast(self, event: str, payload: Any = ANY_PAYLOAD) -> None:
        self._broadcasts.refute(event, payload)

    @property
    def received(self) -> List[Message]:
        """What the client received and no assertion consumed yet."""
        return list(self._pushes.messages)

    def __repr__(self) -> str:
        state = "joined" if self.joined and not self.closed else (self.closed or "joining")
        return f"<ChannelSocket {self.topic!r} {state} assigns={self.assigns!r}>"

    # -- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        self.connection.kit._check_open()
        if self.closed is not None:
            raise ChannelClosed(f"the channel {self.topic!r} is closed ({self.closed})")

    def _wire(self) -> Dict[str, Any]:
        conn = self.connection
        wire: Dict[str, Any] = {
            "topic": self.topic.encode(),
            "join_ref": hc.json_encode(self.join_ref), "assigns": self._assigns_json,
            "params": hc.json_encode(conn.params), "channel": b"hornbeam-kit:%d" % self.number}
        if conn.socket_id is not None:  # socket.id (absent: None, as from the server)
            wire["id"] = conn.socket_id.encode()
        return wire

    def _receive(self, message: Message) -> None:
        self._pushes.add(message)

    def _handle(self, kind: str, args: Dict[str, Any]) -> None:
        """What the channel process does with an intercepted broadcast
        (``out``: ``@room.intercept``, or the frame as it is for an event
        not intercepted) or a message (``info``: ``@room.on_info``)."""
        if kind == "out" and args["event"].decode() not in self._intercepts:
            payload = args["payload"]
            self._receive(Message(self.topic, args["event"].decode(),
                                  payload[1] if isinstance(payload, tuple) else hc.json_decode(payload)))
            return
        call = {"pattern": self.pattern.encode(), "socket": self._wire(), **args}
        try:
            result = self.connection.kit._run(kind, call)
        except InvalidReturnValue:
            raise  # the server logs it and drops the message; the test hears of it
        except BaseException:
            with contextlib.suppress(Exception):
                self._end("crashed", Message(self.topic, "phx_error", {"reason": "channel_crash"}))
            raise
        tag = result[0]
        if tag == "push":
            _, payload, self._assigns_json = result
            self._receive(Message(self.topic, args["event"].decode(), _response(payload)))
        elif tag == "noreply":
            self._assigns_json = result[1]
        elif tag == "stop":
            self._assigns_json = result[2]
            self._end("stop", Message(self.topic, "phx_close", {}))
        # no_handler (no on_info): the server drops the message

    def _forget(self) -> None:
        """A join that did not succeed: the channel process just ends."""
        self.closed = "refused"
        kit = self.connection.kit
        kit._channels.pop(self.number, None)
        kit._presence_diffs(kit._presence.untrack_owner(self.number))

    def _end(self, reason: str, last: Optional[Message]) -> None:
        """The channel process ends: on_leave runs, presences leave."""
        if self.closed is not None:
            return
        self.closed = reason
        kit = self.connection.kit
        self.connection._dropped(self)
        if last is not None:
            self._receive(last)
        try:
            kit._run("leave", {"pattern": self.pattern.encode(), "topic": self.topic.encode(),
                               "reason": reason.encode(), "socket": self._wire()})
        finally:
            kit._channels.pop(self.number, None)
            kit._presence_diffs(kit._presence.untrack_owner(self.number))


__all__ = ["ANY_PAYLOAD", "ChannelClosed", "ChannelKit", "ChannelSocket", "ConnectRefused",
           "Connection", "InvalidReturnValue", "JoinRefused", "Message", "Reply"]
