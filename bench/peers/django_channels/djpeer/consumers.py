"""The benchmark's application logic as a Channels consumer, on the bench's
JSON protocol (same as bench/peers/python_websockets/server.py): join →
group_add; ping/new_msg → reply; publish → group_send to the topic's group. RoomConsumer is async (the django-channels
peers); SyncRoomConsumer is the same as a sync consumer, plus the ``block``
event (the django-channels-sync peer, bench/README.md)."""

import json
import time

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, JsonWebsocketConsumer


def group_of(topic: str) -> str:
    # Group names allow letters, digits, '-', '_' and '.' only.
    return "t." + "".join(c if c.isalnum() or c in "-_." else "_" for c in topic)[:90]


def reply_obj(ref, payload) -> dict:
    return {"type": "reply", "ref": ref, "status": "ok", "payload": payload}


def reply(ref, payload) -> str:
    return json.dumps(reply_obj(ref, payload))


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


#: How long the ``block`` handler blocks (the same in every peer).
BLOCK_SECONDS = 0.005


class SyncRoomConsumer(JsonWebsocketConsumer):
    """The same logic as a sync consumer (the django-channels-sync peer): what a
    Django team writes when its handlers call blocking code (the ORM, HTTP
    clients). Channels runs its handlers in a worker thread
    (database_sync_to_async); ``block`` sleeps 5 ms there, as in every peer."""

    def connect(self):
        self.groups_joined = []
        self.accept()

    def disconnect(self, code):
        for group in self.groups_joined:
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        ref = content.get("ref")
        if kind == "join":
            group = group_of(str(content.get("topic")))
            async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
            self.groups_joined.append(group)
            self.send_json(reply_obj(ref, {"presence": False}))
        elif kind in ("ping", "new_msg"):
            self.send_json(reply_obj(ref, content.get("payload")))
        elif kind == "block":
            time.sleep(BLOCK_SECONDS)
            self.send_json(reply_obj(ref, content.get("payload")))
        elif kind == "publish":
            topic = str(content.get("topic"))
            out = json.dumps({"type": "msg", "topic": topic, "payload": content.get("payload")})
            async_to_sync(self.channel_layer.group_send)(group_of(topic), {"type": "room.msg", "text": out})
            self.send_json(reply_obj(ref, {}))

    def room_msg(self, event):
        self.send(text_data=event["text"])

    @classmethod
    def decode_json(cls, text_data):
        try:
            return json.loads(text_data)
        except ValueError:
            return None
