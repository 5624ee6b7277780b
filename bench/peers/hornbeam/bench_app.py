"""The benchmark's application logic as a Python channel module ("hornbeam-python").

The same logic as every peer in bench/peers:

* join ``room:*``: ok; the reply says whether presence is available;
  a join payload ``{"presence_key": K}`` tracks K on the topic when it is;
* ``ping`` / ``new_msg``: reply with the payload;
* ``publish``: broadcast ``msg`` with the payload to the topic, reply ``{}``;
* ``block``: the "blocking" scenario's handler: sleep 5 ms (a stand-in for
  a DB query or an HTTP call), then reply with the payload.

Served by bench/run.py as::

    bin/hornbeam run bench_app:app --pythonpath bench/peers/hornbeam \\
        --channel-module bench_app --bind 127.0.0.1:PORT
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Dict

from hornbeam_channels import broadcast, channel

try:  # the Python presence API is being written alongside this benchmark
    from hornbeam_presence import Presence  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the build
    Presence = None

room = channel("room:*")


@room.on_join
def join(topic, topic_params, params, socket):
    key = params.get("presence_key") if isinstance(params, dict) else None
    if key is None:
        return ("ok", {"presence": Presence is not None}, socket)
    if Presence is None:
        return ("ok", {"presence": False}, socket)
    try:
        Presence(topic).track(socket, str(key), {})
    except ValueError as e:
        if "presence_not_started" in str(e):  # built but not wired in yet
            return ("ok", {"presence": False}, socket)
        raise
    return ("ok", {"presence": True}, socket)


@room.on("ping")
def ping(payload, socket):
    return ("reply", payload, socket)


@room.on("new_msg")
def new_msg(payload, socket):
    return ("reply", payload, socket)


#: How long the ``block`` handler blocks (the same in every peer).
BLOCK_SECONDS = 0.005


@room.on("block")
def block(payload, socket):
    time.sleep(BLOCK_SECONDS)
    return ("reply", payload, socket)


@room.on("publish")
def publish(payload, socket):
    broadcast(socket.topic, "msg", payload)
    return ("reply", {}, socket)


Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]


async def app(scope: Dict[str, Any], receive: Receive, send: Send) -> None:
    """A plain ASGI app (the CLI wants one): 404 for every HTTP request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"not found\n"})
