"""ASGI entry point of the Django Channels peers: ``daphne djpeer.asgi:application``.
``DJPEER_CONSUMER=sync`` serves the sync consumer (the django-channels-sync peer)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djpeer.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from djpeer.consumers import RoomConsumer, SyncRoomConsumer  # noqa: E402

consumer = SyncRoomConsumer if os.environ.get("DJPEER_CONSUMER") == "sync" else RoomConsumer
application = ProtocolTypeRouter({
    "websocket": URLRouter([path("ws", consumer.as_asgi())]),
})
