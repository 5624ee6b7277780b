"""The benchmark's application logic as a Channels consumer, on the bench's
JSON protocol (same as bench/peers/python_websockets/server.py): join →
group_add; ping/new_msg → reply; publish → group_send to the topic's group."""

import json

from channels.generic.websocket import AsyncWebsocketConsumer


def group_of(topic: str) -> str:
    # Group names allow letters, digits, '-', '_' and '.' only.
    return "t." + "".join(c if c.isalnum() or c in "-_." else "_" for c in topic)[:90]


def reply(ref, payload) -> str:
    return json.dumps({"type": "reply", "ref": ref, "status": "ok", "payload": payload})


class RoomConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.groups_joined = []
        await self.accept()

    async def disconnect(self, code):
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            msg = json.loads(text_data or "")
        except ValueError:
            return
        kind = msg.get("type")
        ref = msg.get("ref")
        if kind == "join":
            group = group_of(str(msg.get("topic")))
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
            await self.send(text_data=reply(ref, {"presence": False}))
        elif kind in ("ping", "new_msg"):
            await self.send(text_data=reply(ref, msg.get("payload")))
        elif kind == "publish":
            topic = str(msg.get("topic"))
            out = json.dumps({"type": "msg", "topic": topic, "payload": msg.get("payload")})
            await self.channel_layer.group_send(group_of(topic), {"type": "room.msg", "text": out})
            await self.send(text_data=reply(ref, {}))

    async def room_msg(self, event):
        await self.send(text_data=event["text"])
