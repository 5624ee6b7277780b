"""ASGI entry point of the Django Channels peer: ``daphne djpeer.asgi:application``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djpeer.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from djpeer.consumers import RoomConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "websocket": URLRouter([path("ws", RoomConsumer.as_asgi())]),
})
