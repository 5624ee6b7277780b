"""Presence: who is on a topic, replicated across the cluster.

    from hornbeam_presence import Presence

    @room.on_join
    def join(topic, topic_params, params, socket):
        socket = socket.assign("username", params["username"])
        Presence(topic).track(socket, f"user:{params['username']}",
                              {"username": params["username"], "status": "online"})
        return ("ok", {}, socket)

    Presence("room:lobby").list()
    # {"user:alice": {"metas": [{"username": "alice", "status": "online", "phx_ref": "..."}]}}

In ``async def`` handlers await the ``*_async`` forms instead
(``await Presence(topic).track_async(socket, key, meta)``, ``list_async()``,
...): the plain forms block their thread, which is right on the thread pool
that runs ``def`` handlers and refused (RuntimeError) on the event loop.

A presence belongs to the socket's channel: leave, disconnect or a crash of
that channel removes it. Clients get ``presence_state`` when they join and
``presence_diff`` for every change (Phoenix's shapes, so phoenix.js and
``Hornbeam.Presence`` both sync from them).
"""

from __future__ import annotations

import base64
from typing import Any, Dict, Mapping, Optional

from hornbeam_channels import ErlangError, Socket, call, call_async, refuse_on_event_loop

__all__ = ["Presence"]

Metas = Dict[str, Any]


class Presence:
    """Presence of one topic.

    Every method waits for Erlang. The plain forms (``track``, ``update``,
    ``untrack``, ``list``, ``get``) block their thread: use them in ``def``
    handlers (they run on the worker's thread pool); on the event loop they
    raise RuntimeError. In ``async def`` handlers await the ``*_async``
    forms (``track_async``, ``update_async``, ``untrack_async``,
    ``list_async``, ``get_async``), which never block the loop."""

    __slots__ = ("topic",)

    def __init__(self, topic: str) -> None:
        if not isinstance(topic, str) or not topic:
            raise ValueError("Presence needs a topic string, e.g. Presence(socket.topic)")
        self.topic = topic

    def track(self, socket: Socket, key: str, meta: Mapping[str, Any]) -> None:
        """Track ``key`` with ``meta`` for this socket's channel. Tracking the
        same key twice from one channel raises ValueError, and so does going
        over a presence limit (``max_presence_meta_size``,
        ``max_presences_per_socket``, ``max_presences_per_topic``); the
        message names the limit."""
        self._write("presence_track", socket, key, meta, "track_async")

    def update(self, socket: Socket, key: str, meta: Mapping[str, Any]) -> None:
        """Replace the meta of a key this channel tracks (clients see the new
        meta with ``phx_ref_prev``). Raises ValueError if it is not tracked."""
        self._write("presence_update", socket, key, meta, "update_async")

    def untrack(self, socket: Socket, key: str) -> None:
        """Stop tracking ``key`` for this socket's channel."""
        self._write("presence_untrack", socket, key, None, "untrack_async")

    def list(self) -> Dict[str, Metas]:
        """Everyone on the topic: ``{key: {"metas": [meta, ...]}}``."""
        refuse_on_event_loop("Presence.list()", "await Presence(topic).list_async()")
        return _as_list(call("presence_list", {"topic": self.topic}))

    def get(self, key: str) -> Optional[Metas]:
        """``{"metas": [...]}`` of one key, or None."""
        refuse_on_event_loop("Presence.get()", "await Presence(topic).get_async(key)")
        return _as_entry(call("presence_get", {"topic": self.topic, "key": key}))

    async def track_async(self, socket: Socket, key: str, meta: Mapping[str, Any]) -> None:
        """:meth:`track` for ``async def`` handlers."""
        await self._write_async("presence_track", socket, key, meta)

    async def update_async(self, socket: Socket, key: str, meta: Mapping[str, Any]) -> None:
        """:meth:`update` for ``async def`` handlers."""
        await self._write_async("presence_update", socket, key, meta)

    async def untrack_async(self, socket: Socket, key: str) -> None:
        """:meth:`untrack` for ``async def`` handlers."""
        await self._write_async("presence_untrack", socket, key, None)

    async def list_async(self) -> Dict[str, Metas]:
        """:meth:`list` for ``async def`` handlers."""
        return _as_list(await call_async("presence_list", {"topic": self.topic}))

    async def get_async(self, key: str) -> Optional[Metas]:
        """:meth:`get` for ``async def`` handlers."""
        return _as_entry(await call_async("presence_get", {"topic": self.topic, "key": key}))

    def _write(self, op: str, socket: Socket, key: str, meta: Optional[Mapping[str, Any]],
               async_form: str) -> None:
        args = self._write_args(socket, key, meta)
        refuse_on_event_loop(f"Presence.{op[len('presence_'):]}()",
                             f"await Presence(topic).{async_form}(...)")
        try:
            call(op, args)
        except ErlangError as e:
            raise ValueError(str(e)) from None

    async def _write_async(self, op: str, socket: Socket, key: str,
                           meta: Optional[Mapping[str, Any]]) -> None:
        args = self._write_args(socket, key, meta)
        try:
            await call_async(op, args)
        except ErlangError as e:
            raise ValueError(str(e)) from None

    def _write_args(self, socket: Socket, key: str, meta: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        if not isinstance(socket, Socket) or socket._channel is None:
            raise ValueError("Presence needs the handler's socket (it binds the presence to its channel)")
        if not isinstance(key, str) or not key:
            raise ValueError("a presence key must be a non-empty string")
        if meta is not None and not isinstance(meta, Mapping):
            raise ValueError("a presence meta must be a dict")
        args: Dict[str, Any] = {
            "channel": base64.b64encode(socket._channel).decode("ascii"),
            "topic": self.topic,
            "key": key,
        }
        if meta is not None:
            args["meta"] = dict(meta)
        return args

    def __repr__(self) -> str:
        return f"Presence({self.topic!r})"


def _as_list(result: Any) -> Dict[str, Metas]:
    return result if isinstance(result, dict) else {}


def _as_entry(result: Any) -> Optional[Metas]:
    return result if isinstance(result, dict) else None
