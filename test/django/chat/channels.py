# chat/channels.py
from http.cookies import SimpleCookie
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user

from chat.models import Message
from hornbeam_channels import broadcast, channel, on_connect

SessionStore = import_module(settings.SESSION_ENGINE).SessionStore


@on_connect
def authenticate(params, connect_info):
    """scope["user"] of Django Channels' AuthMiddlewareStack: the session cookie → the user."""
    cookies = SimpleCookie(connect_info["headers"].get("cookie", ""))
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    user = get_user(SimpleNamespace(session=SessionStore(morsel.value if morsel else None)))
    if not user.is_authenticated:
        return ("ok", {"user_id": None})  # or ("error", "login required"): refused with 403
    return ("ok", {"user_id": user.pk, "username": user.get_username()})


room = channel("room:*")


@room.on_join
def join(topic, topic_params, params, socket):
    if socket.assigns["user_id"] is None:
        return ("error", {"reason": "login required"})
    return ("ok", {"messages": Message.objects.filter(room=topic).count()}, socket)


@room.on("new_msg")
def new_msg(payload, socket):
    msg = Message.objects.create(room=socket.topic, author_id=socket.assigns["user_id"],
                                 body=str(payload.get("body", "")))
    broadcast(socket.topic, "new_msg", {"id": msg.pk, "username": socket.assigns["username"],
                                        "body": msg.body})
    return ("reply", {"id": msg.pk}, socket)
