"""Hornbeam channels: Phoenix-style channel handlers in Python.

    from hornbeam_channels import channel, broadcast, on_connect

    room = channel("room:*")

    @room.on_join
    def join(topic, topic_params, params, socket):
        return ("ok", {}, socket.assign("user", params.get("user")))

    @room.on("new_msg")
    async def new_msg(payload, socket):
        broadcast(socket.topic, "new_msg", {"body": payload["body"]})
        return ("reply", {"ok": True}, socket)

Return values
-------------
* join:  ``('ok', response, socket)`` | ``('ok', response)`` | ``('error', reason)``
* event: ``('reply', response, socket)`` | ``('reply', response)`` |
  ``('reply', ('error', response), socket)`` | ``('noreply', socket)`` |
  ``('stop', reason, socket)`` | ``None`` (no reply)
* intercept: ``('push', payload, socket)`` | ``('noreply', socket)`` | ``None``
* on_info: ``('noreply', socket)`` | ``('stop', reason, socket)`` | ``None``
* leave: anything (ignored); exceptions are logged.
* on_connect: ``('ok', assigns)`` | ``('ok', assigns, socket_id)`` | ``('error', reason)``;
  ``socket_id`` (a str such as ``"user:42"``, or None) is ``socket.id`` in every
  channel of the connection, and :func:`disconnect` closes every socket with it.

Responses and reasons are dicts (a ``str`` reason becomes ``{"reason": ...}``;
``None`` becomes ``{}``). Handlers may be ``def`` or ``async def``: a ``def``
handler runs on the worker's thread pool (blocking code is fine there), an
``async def`` one on the worker's event loop (it must not block: use
``await call_async(...)`` and the ``*_async`` forms of Presence). Anything
else is logged as an invalid return value, and exceptions are logged with
their traceback; the client only sees Phoenix's generic error.

This module imports without the worker (for tests and IDEs); then
``broadcast``, ``broadcast_from``, ``push`` and ``call`` raise RuntimeError,
unless a :class:`hornbeam_channels.testing.ChannelKit` is open: the test kit
runs handlers in-process and receives them.
"""

from __future__ import annotations

import asyncio as _asyncio
import contextvars
import inspect
import json as _json
import math
from types import MappingProxyType
from typing import (Any, Awaitable, Callable, Dict, List, Literal, Mapping, NamedTuple, Optional, Tuple, TypeVar,
                    Union)

try:  # the native module exists only inside hornbeam_worker
    import _hornbeam  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _hornbeam = None

__all__ = [
    "Broadcast",
    "Channel",
    "ConnectResult",
    "ErlangError",
    "EventResult",
    "InfoResult",
    "JoinResult",
    "OutResult",
    "Response",
    "Socket",
    "broadcast",
    "broadcast_from",
    "call",
    "call_async",
    "channel",
    "channels",
    "disconnect",
    "on_connect",
    "push",
    "refuse_on_event_loop",
    "send",
    "subscribe",
    "unsubscribe",
]

JSON = Any
F = TypeVar("F", bound=Callable[..., Any])
MaybeAwaitable = Union[Any, Awaitable[Any]]

# Return forms of handlers, for annotating them (``-> JoinResult``); the
# runtime checks the same forms (hornbeam_runtime).
#: A response or reason: a dict, a str (``{"reason": str}``) or None (``{}``).
Response = Union[Mapping[str, Any], str, None]
JoinResult = Union[Tuple[Literal["ok"], Response, "Socket"], Tuple[Literal["ok"], Response],
                   Tuple[Literal["error"], Response]]
#: ``('reply', resp, socket)`` where resp may be ``('ok' | 'error', resp)``; None is noreply.
EventResult = Optional[Union[Tuple[Literal["reply"], Any, "Socket"], Tuple[Literal["reply"], Any],
                             Tuple[Literal["noreply"], "Socket"], Tuple[Literal["stop"], Any, "Socket"]]]
#: What an ``@room.intercept`` handler returns: the payload its client gets, or nothing.
OutResult = Optional[Union[Tuple[Literal["push"], Any, "Socket"], Tuple[Literal["noreply"], "Socket"]]]
#: What an ``@room.on_info`` handler returns (None is noreply).
InfoResult = Optional[Union[Tuple[Literal["noreply"], "Socket"], Tuple[Literal["stop"], Any, "Socket"]]]
ConnectResult = Union[Tuple[Literal["ok"], Optional[Mapping[str, Any]]],
                      Tuple[Literal["ok"], Optional[Mapping[str, Any]], Optional[str]],
                      Tuple[Literal["error"], Response]]

NOT_IN_WORKER = "not running inside a hornbeam worker"

if _hornbeam is not None:
    ErlangError = _hornbeam.ErlangError
else:

    class ErlangError(RuntimeError):  # type: ignore[no-redef]
        """An Erlang call answered with an error."""


# The id of the worker call being handled (0 outside a call); emits carry it
# so Erlang applies them before that call's reply. asyncio tasks copy it.
current_call: contextvars.ContextVar[int] = contextvars.ContextVar("hornbeam_call", default=0)


# ---------------------------------------------------------------------------
# JSON (in Rust inside the worker; the json module outside, same rules)
# ---------------------------------------------------------------------------


def check_json(value: Any, where: str = "value") -> None:
    """Raise TypeError/ValueError unless ``value`` is JSON-compatible:
    dict (str keys), list, str, int, float (finite), bool or None."""
    stack = [(value, where, 0)]
    while stack:
        v, path, depth = stack.pop()
        if depth > 128:
            raise ValueError(f"{path}: nested deeper than 128 levels")
        if v is None or isinstance(v, (str, bool)):
            continue
        if isinstance(v, int):
            if not -(2**63) <= v < 2**64:
                raise ValueError(f"{path}: integer does not fit in 64 bits")
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"{path}: {v} is not allowed in JSON")
            continue
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise TypeError(f"{path}: keys must be str, not {type(k).__name__}")
                stack.append((item, f"{path}[{k!r}]", depth + 1))
            continue
        if isinstance(v, list):
            for i, item in enumerate(v):
                stack.append((item, f"{path}[{i}]", depth + 1))
            continue
        raise TypeError(f"{path}: {type(v).__name__} is not JSON-compatible")


def json_encode(value: Any) -> bytes:
    if _hornbeam is not None:
        encoded: bytes = _hornbeam.json_encode(value)
        return encoded
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    check_json(_lists(value))
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _lists(value: Any) -> Any:
    # tuples are JSON arrays, as in the worker's encoder
    if isinstance(value, tuple):
        return [_lists(v) for v in value]
    if isinstance(value, list):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def json_decode(data: Union[bytes, str]) -> Any:
    if _hornbeam is not None:
        return _hornbeam.json_decode(data)
    return _json.loads(data)


# ---------------------------------------------------------------------------
# Socket
# ---------------------------------------------------------------------------

_UNSET: Any = object()
_osa = object.__setattr__
_new_socket = object.__new__


class Socket:
    """An immutable view of the channel's state. ``assign`` and
    ``merge_assigns`` return new sockets; return the new socket from the
    handler to keep the change.

    Assign values must be JSON-compatible (the channel process keeps them
    between calls, and any worker may run the next event). Treat nested
    values as read-only."""

    __slots__ = ("_id", "_topic", "_channel", "_assigns", "_assigns_json", "_params", "_params_json",
                 "_join_ref", "_join_ref_json")
    # (set through object.__setattr__: the class refuses attribute writes)
    _id: Optional[str]
    _topic: str
    _channel: Optional[bytes]  # the channel process's token; None outside a handler
    _assigns: Any  # a dict, or _UNSET until decoded from _assigns_json
    _assigns_json: Optional[bytes]
    _params: Any  # like _assigns
    _params_json: Optional[bytes]
    _join_ref: Any  # the JSON value, or _UNSET until decoded
    _join_ref_json: Optional[bytes]

    def __init__(
        self,
        id: Optional[str] = None,
        topic: str = "",
        join_ref: Any = None,
        assigns: Optional[Mapping[str, Any]] = None,
        params: Optional[Mapping[str, Any]] = None,
    ) -> None:
        assigns = dict(assigns or {})
        for k, v in assigns.items():
            _check_assign(k, v)
        self._set(id=id, topic=topic, channel=None, assigns=assigns, assigns_json=None,
                  params=dict(params or {}), params_json=None, join_ref=join_ref, join_ref_json=None)

    def _set(self, **fields: Any) -> None:
        for k, v in fields.items():
            object.__setattr__(self, "_" + k, v)

    @classmethod
    def _from_wire(cls, sock: Mapping[str, Any]) -> "Socket":
        """Build from the map Erlang sends (binaries; JSON text for assigns,
        params and join_ref, decoded on first use)."""
        # (on every call: plain slot stores, no keyword dict)
        s = _new_socket(cls)
        get = sock.get
        _osa(s, "_id", _text(get("id")))
        _osa(s, "_topic", _text(get("topic")) or "")
        channel = get("channel")
        _osa(s, "_channel", channel if channel.__class__ is bytes else None)
        _osa(s, "_assigns", _UNSET)
        _osa(s, "_assigns_json", _json_or(get("assigns"), b"{}"))
        _osa(s, "_params", _UNSET)
        _osa(s, "_params_json", _json_or(get("params"), b"{}"))
        _osa(s, "_join_ref", _UNSET)
        _osa(s, "_join_ref_json", _json_or(get("join_ref"), b"null"))
        return s

    def _replace(self, assigns: Dict[str, Any]) -> "Socket":
        s = Socket.__new__(Socket)
        s._set(id=self._id, topic=self._topic, channel=self._channel,
               assigns=assigns, assigns_json=None,
               params=self._params, params_json=self._params_json,
               join_ref=self._join_ref, join_ref_json=self._join_ref_json)
        return s

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Socket is immutable: use socket.assign(key, value), which returns a new socket")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Socket is immutable")

    def _assigns_dict(self) -> Dict[str, Any]:
        if self._assigns is _UNSET:
            decoded = json_decode(self._assigns_json or b"{}")
            object.__setattr__(self, "_assigns", decoded if isinstance(decoded, dict) else {})
        assigns: Dict[str, Any] = self._assigns
        return assigns

    @property
    def assigns(self) -> Mapping[str, Any]:
        """Read-only mapping of the channel's assigns."""
        return MappingProxyType(self._assigns_dict())

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def id(self) -> Optional[str]:
        """The socket id that ``on_connect`` returned (``('ok', assigns, id)``),
        or None; :func:`disconnect` closes every socket with it."""
        return self._id

    @property
    def join_ref(self) -> Any:
        if self._join_ref is _UNSET:
            object.__setattr__(self, "_join_ref", json_decode(self._join_ref_json or b"null"))
        return self._join_ref

    @property
    def params(self) -> Mapping[str, Any]:
        """The connect params of the WebSocket."""
        if self._params is _UNSET:
            decoded = json_decode(self._params_json or b"{}")
            object.__setattr__(self, "_params", decoded if isinstance(decoded, dict) else {})
        return MappingProxyType(self._params)

    def assign(self, key: str, value: Any) -> "Socket":
        """A new socket with ``assigns[key] = value``."""
        _check_assign(key, value)
        assigns = dict(self._assigns_dict())
        assigns[key] = value
        return self._replace(assigns)

    def merge_assigns(self, values: Mapping[str, Any]) -> "Socket":
        """A new socket with every key of ``values`` assigned."""
        for k, v in values.items():
            _check_assign(k, v)
        assigns = dict(self._assigns_dict())
        assigns.update(values)
        return self._replace(assigns)

    def _assigns_payload(self) -> bytes:
        """JSON text of the assigns (the original bytes when unchanged)."""
        if self._assigns_json is not None and self._assigns is _UNSET:
            return self._assigns_json
        return json_encode(self._assigns_dict())

    def __repr__(self) -> str:
        return f"Socket(id={self._id!r}, topic={self._topic!r}, assigns={self._assigns_dict()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Socket):
            return NotImplemented
        return (self._id, self._topic, self._channel, self._assigns_dict()) == (
            other._id, other._topic, other._channel, other._assigns_dict())

    __hash__ = None  # type: ignore[assignment]


def _check_assign(key: Any, value: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"assign key must be a str, not {type(key).__name__} ({key!r})")
    try:
        check_json(value, where=key)
    except (TypeError, ValueError) as e:
        raise TypeError(f"assign {key!r}: value is not JSON-compatible: {e}") from None


def _text(b: Any) -> Optional[str]:
    if isinstance(b, str):
        return b
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return None


def _json_or(b: Any, default: bytes) -> bytes:
    return b if isinstance(b, bytes) and b else default


# ---------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------


def handler_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_arity(fn: Callable[..., Any], n: int, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} handler must be callable, got {fn!r}")
    try:
        inspect.signature(fn).bind(*([None] * n))
    except TypeError:
        raise TypeError(f"{what} handler {handler_name(fn)} must accept {n} positional arguments") from None
    except ValueError:  # no signature (builtins): trust it
        pass


class Broadcast(NamedTuple):
    """What ``@room.on_info`` gets for a broadcast on a topic the channel
    subscribed to with :func:`subscribe` (``payload`` is ``bytes`` for a
    binary broadcast)."""

    topic: str
    event: str
    payload: Any


class Channel:
    """Handlers of one topic pattern; create with :func:`channel`."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.join_handler: Optional[Callable[..., MaybeAwaitable]] = None
        self.leave_handler: Optional[Callable[..., MaybeAwaitable]] = None
        self.info_handler: Optional[Callable[..., MaybeAwaitable]] = None
        self.event_handlers: Dict[str, Callable[..., MaybeAwaitable]] = {}
        self.out_handlers: Dict[str, Callable[..., MaybeAwaitable]] = {}

    def on_join(self, fn: F) -> F:
        """``fn(topic, topic_params, params, socket)``."""
        if self.join_handler is not None:
            raise ValueError(f"channel {self.pattern!r} already has a join handler "
                             f"({handler_name(self.join_handler)})")
        _check_arity(fn, 4, "join")
        self.join_handler = fn
        return fn

    def on(self, event: str) -> Callable[[F], F]:
        """``fn(payload, socket)`` for the client event ``event``."""
        if not isinstance(event, str) or not event:
            raise ValueError("event name must be a non-empty str")
        if event.startswith("phx_"):
            raise ValueError(f"{event!r} is reserved by the protocol; use on_join / on_leave")

        def register(fn: F) -> F:
            if event in self.event_handlers:
                raise ValueError(f"channel {self.pattern!r} already handles {event!r} "
                                 f"({handler_name(self.event_handlers[event])})")
            _check_arity(fn, 2, f"{event!r}")
            self.event_handlers[event] = fn
            return fn

        return register

    def on_leave(self, fn: F) -> F:
        """``fn(topic, socket)``; the return value is ignored."""
        if self.leave_handler is not None:
            raise ValueError(f"channel {self.pattern!r} already has a leave handler "
                             f"({handler_name(self.leave_handler)})")
        _check_arity(fn, 2, "leave")
        self.leave_handler = fn
        return fn

    def intercept(self, *events: str) -> Callable[[F], F]:
        """``fn(payload, socket)`` runs for each subscriber of this channel
        on this node before a broadcast of one of ``events`` reaches its
        client, and returns what that client gets: ``('push', payload,
        socket)`` or ``('noreply', socket)`` (Phoenix's ``intercept`` +
        ``handle_out``). Once a channel intercepts anything, every broadcast
        to its topic goes through its channel process (in order); see the
        README for the cost."""
        if not events:
            raise ValueError("intercept needs at least one event name")
        for event in events:
            if not isinstance(event, str) or not event:
                raise ValueError("event name must be a non-empty str")
            if event.startswith("phx_"):
                raise ValueError(f"{event!r} is reserved by the protocol")
            if event in self.out_handlers:
                raise ValueError(f"channel {self.pattern!r} already intercepts {event!r} "
                                 f"({handler_name(self.out_handlers[event])})")

        def register(fn: F) -> F:
            _check_arity(fn, 2, f"intercept {events!r}")
            for event in events:
                self.out_handlers[event] = fn
            return fn

        return register

    def on_info(self, fn: F) -> F:
        """``fn(message, socket)`` for what is sent to the channel process:
        a :class:`Broadcast` on a topic subscribed with :func:`subscribe`,
        the message of :func:`send`, or a JSON-compatible Erlang term sent
        with ``!``. Nothing reaches the client unless ``fn`` pushes."""
        if self.info_handler is not None:
            raise ValueError(f"channel {self.pattern!r} already has an on_info handler "
                             f"({handler_name(self.info_handler)})")
        _check_arity(fn, 2, "on_info")
        self.info_handler = fn
        return fn

    @property
    def events(self) -> List[str]:
        return list(self.event_handlers)

    @property
    def intercepts(self) -> List[str]:
        return list(self.out_handlers)

    def __repr__(self) -> str:
        return f"Channel({self.pattern!r}, events={self.events!r})"


_channels: Dict[str, Channel] = {}
_connect_handler: Optional[Callable[..., MaybeAwaitable]] = None


def channel(pattern: str) -> Channel:
    """Register a channel for a topic pattern (``"room:*"``, ``"room:lobby"``,
    ``"chat:{id}"``). Registering the same pattern twice is a ValueError."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("channel pattern must be a non-empty str")
    if pattern in _channels:
        raise ValueError(f"channel {pattern!r} is already registered")
    ch = Channel(pattern)
    _channels[pattern] = ch
    return ch


def channels() -> Mapping[str, Channel]:
    """The registered channels, by pattern (read-only)."""
    return MappingProxyType(_channels)


def on_connect(fn: F) -> F:
    """``fn(params, connect_info) -> ('ok', assigns) | ('ok', assigns, socket_id)
    | ('error', reason)``: accepts or refuses a connection (a WebSocket, or a
    long-poll session: ``connect_info["transport"]`` says which) before any
    channel is joined. ``socket_id`` (a non-empty str of at most 255 bytes,
    or None) names the connection for :func:`disconnect`, e.g.
    ``"user:42"``."""
    global _connect_handler
    if _connect_handler is not None:
        raise ValueError(f"on_connect is already registered ({handler_name(_connect_handler)})")
    _check_arity(fn, 2, "on_connect")
    _connect_handler = fn
    return fn


def connect_handler() -> Optional[Callable[..., MaybeAwaitable]]:
    return _connect_handler


def _reset() -> None:
    """Forget every channel and the on_connect handler (tests only)."""
    global _connect_handler
    _channels.clear()
    _connect_handler = None


# ---------------------------------------------------------------------------
# Side effects
# ---------------------------------------------------------------------------


# What stands in for the worker outside it: the in-memory server of
# hornbeam_channels.testing while a ChannelKit is open, else nothing.
_test_backend: Any = None


def _set_test_backend(backend: Any) -> Any:
    """Install ``backend`` (or None) as the target of emits and Erlang calls
    made outside the worker; returns the one it replaces (the test kit)."""
    global _test_backend
    previous, _test_backend = _test_backend, backend
    return previous


def _native() -> Any:
    if _hornbeam is not None:
        return _hornbeam
    if _test_backend is not None:
        return _test_backend
    raise RuntimeError(NOT_IN_WORKER)


def _check_payload(payload: Any) -> None:
    # bytes go to the client as a Phoenix binary frame (an ArrayBuffer in JS)
    if not isinstance(payload, (Mapping, bytes)):
        raise TypeError(f"payload must be a dict or bytes, not {type(payload).__name__}")


def _channel_of(socket: Socket) -> bytes:
    if not isinstance(socket, Socket):
        raise TypeError(f"expected a Socket, got {type(socket).__name__}")
    if socket._channel is None:
        raise ValueError("this socket does not belong to a channel process (it was not given to a handler)")
    return socket._channel


def broadcast(topic: str, event: str, payload: Union[Mapping[str, Any], bytes]) -> None:
    """Send ``event`` to every subscriber of ``topic`` on every node.

    Never blocks (the message is queued for Erlang, which delivers it before
    the reply of the calling handler), so it is safe in ``def`` and
    ``async def`` handlers alike."""
    _check_payload(payload)
    _native().emit("broadcast", topic, event, payload, call_id=current_call.get())


def broadcast_from(socket: Socket, event: str, payload: Union[Mapping[str, Any], bytes]) -> None:
    """Like :func:`broadcast` on ``socket.topic``, except to ``socket`` itself.
    Never blocks."""
    _check_payload(payload)
    native = _native()
    native.emit("broadcast_from", _channel_of(socket), socket.topic, event, payload,
                call_id=current_call.get())


def push(socket: Socket, event: str, payload: Union[Mapping[str, Any], bytes]) -> None:
    """Send ``event`` to this socket's client only (before the handler's
    reply). Never blocks."""
    _check_payload(payload)
    native = _native()
    native.emit("push", _channel_of(socket), event, payload, call_id=current_call.get())


def subscribe(socket: Socket, topic: str) -> None:
    """Make the channel process of ``socket`` receive the broadcasts to
    ``topic`` (another topic than its own): each one reaches
    ``@room.on_info`` as a :class:`Broadcast`, not the client. Lasts until
    :func:`unsubscribe` or the channel's end; subscribing twice is
    subscribing once. Never blocks."""
    _topic(topic)
    native = _native()
    native.emit("subscribe", _channel_of(socket), topic, call_id=current_call.get())


def unsubscribe(socket: Socket, topic: str) -> None:
    """Undo :func:`subscribe`. Never blocks."""
    _topic(topic)
    native = _native()
    native.emit("unsubscribe", _channel_of(socket), topic, call_id=current_call.get())


def send(socket: Socket, message: Any) -> None:
    """Send ``message`` (JSON-compatible) to the channel process of
    ``socket``: its ``@room.on_info`` gets it after the running handler.
    Never blocks."""
    check_json(message, "message")
    native = _native()
    native.emit("send", _channel_of(socket), message, call_id=current_call.get())


def _topic(topic: Any) -> str:
    if not isinstance(topic, str) or not topic:
        raise TypeError(f"topic must be a non-empty str, not {topic!r}")
    return topic


def disconnect(socket_id: str) -> None:
    """Close every WebSocket whose ``on_connect`` returned ``socket_id``, on
    every node (log a user out everywhere). Their channels run ``on_leave``
    as on any close; the clients reconnect, and ``on_connect`` decides
    again. Never blocks: callable from ``def`` and ``async def`` handlers
    and from any thread of the worker."""
    if not isinstance(socket_id, str) or not socket_id or len(socket_id.encode()) > 255:
        raise ValueError(f"socket_id must be a non-empty str of at most 255 bytes, got {socket_id!r}")
    _native().emit("disconnect", socket_id, call_id=current_call.get())


def refuse_on_event_loop(what: str, instead: str) -> None:
    """Raise RuntimeError if the calling thread runs an asyncio event loop:
    ``what`` waits for Erlang and would stall every ``async def`` handler of
    the worker; ``instead`` names the awaitable form to use."""
    if _asyncio._get_running_loop() is not None:
        raise RuntimeError(f"{what} waits for Erlang and would block the event loop that runs "
                           f"async handlers; in an async def handler use {instead}")


def call(name: str, args: Any = None) -> Any:
    """Call the Erlang function registered as ``name`` and wait for its
    answer. Blocks the calling thread: use it in ``def`` handlers (they run
    on the worker's thread pool); in an ``async def`` handler it raises
    RuntimeError, use :func:`call_async` there. Raises ErlangError on an
    error answer."""
    refuse_on_event_loop(f"call({name!r})", f"await call_async({name!r}, ...)")
    return _native().call(name, args)


async def call_async(name: str, args: Any = None) -> Any:
    """Like :func:`call`, awaitable: waits without blocking the event loop
    (for ``async def`` handlers). Raises ErlangError on an error answer."""
    return await _native().call_async(name, args)
