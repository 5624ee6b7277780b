"""A plain Python ``websockets`` server speaking the benchmark's JSON protocol.

Same application logic as every peer (bench/README.md):

* ``{"type": "join", "topic": T, "ref": n}``: joins T, reply ``{"presence": false}``;
* ``{"type": "ping" | "new_msg", "ref": n, "payload": P}``: reply with P;
* ``{"type": "publish", "topic": T, "ref": n, "payload": P}``: sends
  ``{"type": "msg", "topic": T, "payload": P}`` to every connection joined to T
  (``websockets.broadcast``: encoded once), then a reply;
* ``{"type": "heartbeat"}``: nothing.

Usage: ``python server.py PORT [HOST]`` (uses uvloop when installed).
"""

import asyncio
import json
import sys

from websockets.asyncio.server import broadcast, serve

rooms: dict = {}


def reply(ref, payload):
    return json.dumps({"type": "reply", "ref": ref, "status": "ok", "payload": payload})


async def handler(ws):
    joined = []
    try:
        async for text in ws:
            try:
                msg = json.loads(text)
            except ValueError:
                continue
            kind = msg.get("type")
            ref = msg.get("ref")
            if kind == "join":
                topic = str(msg.get("topic"))
                rooms.setdefault(topic, set()).add(ws)
                joined.append(topic)
                await ws.send(reply(ref, {"presence": False}))
            elif kind in ("ping", "new_msg"):
                await ws.send(reply(ref, msg.get("payload")))
            elif kind == "publish":
                topic = str(msg.get("topic"))
                out = json.dumps({"type": "msg", "topic": topic, "payload": msg.get("payload")})
                broadcast(rooms.get(topic, ()), out)
                await ws.send(reply(ref, {}))
    except Exception:  # a connection's end, whatever the reason
        pass
    finally:
        for topic in joined:
            members = rooms.get(topic)
            if members is not None:
                members.discard(ws)
                if not members:
                    del rooms[topic]


async def main(port: int, host: str) -> None:
    async with serve(handler, host, port, compression=None, max_size=1 << 20, backlog=1024) as server:
        print(f"websockets ready on {host}:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    try:
        import uvloop

        uvloop.run(main(port, host))
    except ImportError:
        asyncio.run(main(port, host))
