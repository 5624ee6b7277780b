"""python-socketio on uvicorn (ASGI): a peer server of the Hornbeam benchmark.

Same application logic as every peer; every event carries (topic, payload)
and is answered through the Socket.IO ack:

* ``join``: enters the room, ack ``{"presence": false}``;
* ``ping`` / ``new_msg``: ack with the payload;
* ``publish``: emits ``msg`` with the payload to the room, ack ``{}``.

Run: ``uvicorn app:app --app-dir bench/peers/python_socketio --port PORT``.
"""

import socketio

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", transports=["websocket"])
app = socketio.ASGIApp(sio)


@sio.event
async def join(sid, topic, payload=None):
    await sio.enter_room(sid, str(topic))
    return {"presence": False}


@sio.event
async def ping(sid, topic, payload):
    return payload


@sio.on("new_msg")
async def new_msg(sid, topic, payload):
    return payload


@sio.event
async def publish(sid, topic, payload):
    await sio.emit("msg", payload, room=str(topic))
    return {}
