"""Socket ids and hornbeam_channels.disconnect: on_connect names a socket
(``('ok', assigns, socket_id)``), handlers see it as ``socket.id``, and
``disconnect(socket_id)`` closes every connection with it. Run through the
test kit, which applies the same calls as the worker (the server side is
test/hornbeam_socket_id_SUITE.erl)."""

import asyncio
import threading

import pytest

import hornbeam_channels as hc
from hornbeam_channels import channel, disconnect, on_connect
from hornbeam_channels.testing import ChannelClosed, ChannelKit, InvalidReturnValue

left = []  # (topic, socket id) of every on_leave run


@pytest.fixture
def kit():
    left.clear()
    room = channel("room:*")

    @on_connect
    def connect(params, connect_info):
        user = params.get("user")
        if user == "bad":
            return ("ok", {}, 42)
        return ("ok", {"user": user}, f"user:{user}" if user else None)

    @room.on_join
    def join(topic, topic_params, params, socket):
        return ("ok", {"id": socket.id}, socket)

    @room.on("whoami")
    async def whoami(payload, socket):
        return ("reply", {"id": socket.id}, socket)

    @room.on("log_me_out")
    def log_me_out(payload, socket):
        disconnect(socket.id)
        return ("reply", {"bye": True}, socket)

    @room.on("log_out_async")
    async def log_out_async(payload, socket):
        await asyncio.sleep(0)
        disconnect(payload["id"])
        return None

    @room.on_leave
    def leave(topic, socket):
        left.append((topic, socket.id))

    with ChannelKit() as k:
        yield k


def test_on_connect_names_the_socket_and_handlers_see_it_as_socket_id(kit):
    conn = kit.connect({"user": "42"})
    assert conn.socket_id == "user:42"
    reply, sock = conn.join("room:a")
    assert reply == {"id": "user:42"}
    assert sock.socket.id == "user:42"
    assert sock.assert_reply(sock.push("whoami")) == {"id": "user:42"}


def test_a_socket_without_an_id_has_socket_id_none(kit):
    conn = kit.connect({})
    assert conn.socket_id is None
    reply, sock = conn.join("room:a")
    assert reply == {"id": None} and sock.socket.id is None


def test_a_socket_id_that_is_not_a_str_is_an_invalid_return_value(kit):
    with pytest.raises(InvalidReturnValue, match="socket id must be a non-empty str"):
        kit.connect({"user": "bad"})


def test_disconnect_closes_every_connection_with_the_id_and_runs_on_leave(kit):
    ana1, ana2, bob = kit.connect({"user": "ana"}), kit.connect({"user": "ana"}), kit.connect({"user": "bob"})
    _, a1 = ana1.join("room:a")
    _, a2 = ana2.join("room:b")
    _, b = bob.join("room:a")
    disconnect("user:ana")
    assert ana1.closed == ana2.closed == "disconnected"
    assert a1.closed == a2.closed == "disconnect"
    assert sorted(left) == [("room:a", "user:ana"), ("room:b", "user:ana")]
    assert bob.closed is None and b.closed is None
    with pytest.raises(ChannelClosed):
        ana1.join("room:c")
    # the client reconnects: its next on_connect decides
    _, again = kit.connect({"user": "ana"}).join("room:a")
    assert again.socket.id == "user:ana"


def test_disconnect_from_a_handler_closes_its_own_socket_after_the_handler_returns(kit):
    _, sock = kit.connect({"user": "ana"}).join("room:a")
    ref = sock.push("log_me_out")
    assert sock.closed == "disconnect"
    assert left == [("room:a", "user:ana")]
    assert sock.reply(ref) is not None  # the kit records it; the server closes first


def test_disconnect_from_an_async_handler_reaches_other_connections(kit):
    _, bob = kit.connect({"user": "bob"}).join("room:a")
    _, ana = kit.connect({"user": "ana"}).join("room:a")
    bob.push("log_out_async", {"id": "user:ana"})
    assert ana.closed == "disconnect" and bob.closed is None


def test_disconnect_of_an_id_nobody_has_does_nothing(kit):
    _, sock = kit.connect({"user": "ana"}).join("room:a")
    disconnect("user:nobody")
    assert sock.closed is None


def test_disconnect_from_another_thread(kit):
    conn = kit.connect({"user": "ana"})
    conn.join("room:a")
    t = threading.Thread(target=disconnect, args=("user:ana",))
    t.start()
    t.join()
    assert conn.closed == "disconnected"


@pytest.mark.parametrize("bad", ["", None, 42, "x" * 256, "é" * 128])
def test_disconnect_refuses_what_is_not_a_socket_id(kit, bad):
    with pytest.raises(ValueError, match="socket_id must be a non-empty str"):
        disconnect(bad)


def test_disconnect_outside_the_worker_and_the_kit_is_a_runtime_error():
    assert hc._test_backend is None
    with pytest.raises(RuntimeError, match="not running inside a hornbeam worker"):
        disconnect("user:1")
