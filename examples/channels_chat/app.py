"""The channels chat example: `make run`, then open http://127.0.0.1:8000.

Serve it yourself with:

    bin/hornbeam run app:app --pythonpath examples/channels_chat --channel-module app
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict

from hornbeam_channels import broadcast_from, channel
from hornbeam_presence import Presence

log = logging.getLogger("chat")
STATUSES = ("online", "away", "busy")

INDEX_HTML = (Path(__file__).parent / "index.html").read_bytes()

room = channel("room:*")


@room.on_join
def join_room(topic, topic_params, params, socket):
    username = (params.get("username") or "").strip()
    if not username:
        return ("error", {"reason": "username required"})
    socket = socket.assign("username", username)
    # One presence per tab: two tabs of one user are two metas under one key.
    Presence(topic).track(socket, f"user:{username}", {"username": username, "status": "online"})
    return ("ok", {"room_id": topic_params["room_id"]}, socket)


@room.on("new_msg")
async def new_msg(payload, socket):
    body = str(payload.get("body", "")).strip()
    if not body:
        return ("reply", ("error", {"reason": "empty message"}), socket)
    broadcast_from(socket, "new_msg", {"username": socket.assigns["username"], "body": body})
    return ("reply", {"status": "ok"}, socket)


@room.on("update_status")
def update_status(payload, socket):
    status = payload.get("status")
    if status not in STATUSES:
        return ("reply", ("error", {"reason": f"status must be one of {', '.join(STATUSES)}"}), socket)
    username = socket.assigns["username"]
    Presence(socket.topic).update(socket, f"user:{username}", {"username": username, "status": status})
    return ("reply", {"status": status}, socket)


@room.on_leave
def leave_room(topic, socket):
    # The presence leaves with the channel; this is for the server log.
    log.info("%s left %s", socket.assigns.get("username"), topic)


Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]


async def app(scope: Dict[str, Any], receive: Receive, send: Send) -> None:
    """A plain ASGI app: the chat page at /, 404 elsewhere."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] in ("/", "/index.html"):
        status, body, ctype = 200, INDEX_HTML, b"text/html; charset=utf-8"
    else:
        status, body, ctype = 404, b"not found\n", b"text/plain"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
