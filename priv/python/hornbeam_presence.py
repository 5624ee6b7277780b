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

A presence belongs to the socket's channel: leave, disconnect or a crash of
that channel removes it. Clients get ``presence_state`` when they join and
``presence_diff`` for every change (Phoenix's shapes, so phoenix.js and
``Hornbeam.Presence`` both sync from them).
"""

from __future__ import annotations

import base64
from typing import Any, Dict, Mapping, Optional

from hornbeam_channels import ErlangError, Socket, call

__all__ = ["Presence"]

Metas = Dict[str, Any]


class Presence:
    """Presence of one topic."""

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
        self._write("presence_track", socket, key, meta)

    def update(self, socket: Socket, key: str, meta: Mapping[str, Any]) -> None:
        """Replace the meta of a key this channel tracks (clients see the new
        meta with ``phx_ref_prev``). Raises ValueError if it is not tracked."""
        self._write("presence_update", socket, key, meta)

    def untrack(self, socket: Socket, key: str) -> None:
        """Stop tracking ``key`` for this socket's channel."""
        self._write("presence_untrack", socket, key, None)

    def list(self) -> Dict[str, Metas]:
        """Everyone on the topic: ``{key: {"metas": [meta, ...]}}``."""
        result = call("presence_list", {"topic": self.topic})
        return result if isinstance(result, dict) else {}

    def get(self, key: str) -> Optional[Metas]:
        """``{"metas": [...]}`` of one key, or None."""
        return call("presence_get", {"topic": self.topic, "key": key})

    def _write(self, op: str, socket: Socket, key: str, meta: Optional[Mapping[str, Any]]) -> None:
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
        try:
            call(op, args)
        except ErlangError as e:
            raise ValueError(str(e)) from None

    def __repr__(self) -> str:
        return f"Presence({self.topic!r})"
