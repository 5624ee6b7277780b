"""hornbeam_channels.testing.ChannelKit: handlers run in-process the way the
server runs them, and the assertions fail with messages that say why."""

import asyncio
from unittest.mock import ANY

import pytest

import hornbeam_channels as hc
from hornbeam_channels import broadcast, broadcast_from, channel, on_connect, push
from hornbeam_channels.testing import (ChannelClosed, ChannelKit, ConnectRefused, InvalidReturnValue,
                                       JoinRefused, PatternError, Reply)
from hornbeam_presence import Presence

left = []  # (topic, assigns) of every on_leave run


@pytest.fixture
def chat():
    """A room channel with sync and async handlers of every return form."""
    left.clear()
    room = channel("room:*")

    @on_connect
    def connect(params, connect_info):
        if params.get("token") == "bad":
            return ("error", "bad token")
        return ("ok", {"user": params.get("token"), "peer": connect_info["peer"]["address"]})

    @room.on_join
    def join(topic, topic_params, params, socket):
        if params.get("refuse"):
            return ("error", {"reason": "go away"})
        if params.get("crash"):
            raise KeyError("join exploded")
        name = params.get("name", socket.assigns.get("user"))
        socket = socket.assign("name", name)
        if params.get("track", True):
            Presence(topic).track(socket, f"user:{name}", {"name": name, "status": "online"})
        broadcast(topic, "joined", {"name": name})
        return ("ok", {"room": topic_params["room_id"], "params": dict(socket.params)}, socket)

    @room.on("say")
    async def say(payload, socket):
        await asyncio.sleep(0)
        broadcast_from(socket, "said", {"name": socket.assigns["name"], "body": payload["body"]})
        return ("reply", {"sent": True}, socket)

    @room.on("count")
    def count(payload, socket):
        n = socket.assigns.get("n", 0) + payload.get("by", 1)
        return ("reply", {"n": n}, socket.assign("n", n))

    @room.on("ping_me")
    def ping_me(payload, socket):
        push(socket, "pong", {"to": socket.assigns["name"]})
        return None

    @room.on("fail")
    def fail(payload, socket):
        return ("reply", ("error", {"why": "nope"}), socket)

    @room.on("away")
    async def away(payload, socket):
        await Presence(socket.topic).update_async(socket, f"user:{socket.assigns['name']}",
                                                  {"name": socket.assigns["name"], "status": "away"})
        return ("noreply", socket)

    @room.on("who_async")
    async def who_async(payload, socket):
        p = Presence(socket.topic)
        key = f"user:{socket.assigns['name']}"
        await p.untrack_async(socket, key)
        await p.track_async(socket, key, {"again": True})
        return ("reply", {"list": await p.list_async(), "me": await p.get_async(key)}, socket)

    @room.on("blocking_in_async")
    async def blocking_in_async(payload, socket):
        return ("reply", {"list": Presence(socket.topic).list()}, socket)

    @room.on("hide")
    def hide(payload, socket):
        Presence(socket.topic).untrack(socket, f"user:{socket.assigns['name']}")
        return ("reply", {}, socket)

    @room.on("track_twice")
    def track_twice(payload, socket):
        try:
            Presence(socket.topic).track(socket, f"user:{socket.assigns['name']}", {})
        except ValueError as e:
            return ("reply", {"error": str(e)}, socket)
        return ("reply", {"error": None}, socket)

    @room.on("who")
    def who(payload, socket):
        p = Presence(socket.topic)
        return ("reply", {"list": p.list(), "me": p.get(f"user:{socket.assigns['name']}"),
                          "nobody": p.get("user:nobody")}, socket)

    @room.on("quit")
    def quit(payload, socket):
        return ("stop", "bye", socket)

    @room.on("boom")
    def boom(payload, socket):
        raise ZeroDivisionError("boom")

    @room.on("junk")
    def junk(payload, socket):
        return "yes please"

    @room.on_leave
    def leave(topic, socket):
        left.append((topic, dict(socket.assigns)))

    with ChannelKit() as kit:
        yield kit


def joined(kit, name="ana", topic="room:lobby", **payload):
    conn = kit.connect({"token": name})
    reply, sock = conn.join(topic, {"name": name, **payload})
    return conn, reply, sock


# ---------------------------------------------------------------------------
# connect
# ---------------------------------------------------------------------------


def test_connect_runs_on_connect_and_its_assigns_seed_every_channel(chat):
    conn = chat.connect({"token": "ana"}, {"peer": {"address": "10.0.0.9", "port": 1}})
    assert conn.assigns == {"user": "ana", "peer": "10.0.0.9"}
    _, sock = conn.join("room:lobby", {"track": False})
    assert sock.assigns == {"user": "ana", "peer": "10.0.0.9", "name": "ana"}


def test_connect_refused_carries_the_reason_as_the_server_normalises_it(chat):
    with pytest.raises(ConnectRefused) as e:
        chat.connect({"token": "bad"})
    assert e.value.reason == {"reason": "bad token"}


def test_connect_without_on_connect_handler_accepts_with_empty_assigns():
    channel("room:*")
    with ChannelKit() as kit:
        assert kit.connect({"x": "1"}).assigns == {}


# ---------------------------------------------------------------------------
# join
# ---------------------------------------------------------------------------


def test_join_routes_the_topic_and_returns_reply_and_socket(chat):
    conn = chat.connect({"token": "ana", "vsn": "2.0.0"})
    reply, sock = conn.join("room:lobby", {"name": "ana"})
    assert reply == {"room": "lobby", "params": {"token": "ana", "vsn": "2.0.0"}}
    assert sock.topic == "room:lobby" and sock.pattern == "room:*"
    assert sock.topic_params == {"room_id": "lobby"}
    assert sock.assigns["name"] == "ana"


def test_join_error_raises_join_refused_with_the_reason(chat):
    with pytest.raises(JoinRefused) as e:
        chat.connect({"token": "ana"}).join("room:lobby", {"refuse": True})
    assert e.value.reason == {"reason": "go away"} and e.value.topic == "room:lobby"


@pytest.mark.parametrize("topic", ["lobby", "room:a:b", "room:", "room:" + "x" * 300])
def test_join_of_a_topic_no_channel_matches_is_unmatched_topic(chat, topic):
    with pytest.raises(JoinRefused) as e:
        chat.connect().join(topic)
    assert e.value.reason == {"reason": "unmatched topic"}


def test_join_crash_propagates_and_leaves_nothing_behind(chat):
    conn = chat.connect({"token": "ana"})
    with pytest.raises(KeyError, match="join exploded"):
        conn.join("room:lobby", {"crash": True})
    assert chat.presence_list("room:lobby") == {}


def test_refused_join_untracks_what_the_handler_tracked():
    room = channel("room:*")

    @room.on_join
    def join(topic, topic_params, params, socket):
        Presence(topic).track(socket, "k", {})
        return ("error", "no")

    with ChannelKit() as kit:
        with pytest.raises(JoinRefused):
            kit.connect().join("room:1")
        assert kit.presence_list("room:1") == {}


def test_bad_pattern_is_refused_when_the_kit_starts_like_the_server():
    channel("room:{x}:{x}")
    with pytest.raises(PatternError, match="more than once"):
        ChannelKit()


def test_second_join_of_a_topic_replaces_the_first_channel(chat):
    conn, _, first = joined(chat)
    _, second = conn.join("room:lobby", {"name": "ana2", "track": False})
    assert first.closed == "duplicate_join"
    first.assert_push("phx_close", {})
    assert ("room:lobby", {"user": "ana", "peer": "127.0.0.1", "name": "ana"}) in left
    assert second.push("count")


def test_channel_modules_are_imported_like_channel_module_options(tmp_path, monkeypatch):
    (tmp_path / "kit_mod_room.py").write_text(
        "from hornbeam_channels import channel\n"
        "r = channel('mod:*')\n"
        "@r.on_join\n"
        "def j(topic, tp, params, socket):\n"
        "    return ('ok', {'hi': tp['mod_id']})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with ChannelKit("kit_mod_room") as kit:
        assert kit.connect().join("mod:7")[0] == {"hi": "7"}


# ---------------------------------------------------------------------------
# events and replies
# ---------------------------------------------------------------------------


def test_push_runs_a_sync_handler_and_assigns_persist_between_events(chat):
    _, _, sock = joined(chat)
    assert sock.assert_reply(sock.push("count"), "ok", {"n": 1}) == {"n": 1}
    assert sock.assert_reply(sock.push("count", {"by": 5})) == {"n": 6}
    assert sock.assigns["n"] == 6


def test_push_runs_an_async_handler(chat):
    conn_a, _, ana = joined(chat, "ana")
    _, _, bob = joined(chat, "bob")
    ana.assert_reply(ana.push("say", {"body": "hi"}), "ok", {"sent": True})
    bob.assert_push("said", {"name": "ana", "body": "hi"})
    ana.refute_push("said")  # broadcast_from skips the sender
    ana.assert_broadcast("said", {"name": "ana", "body": "hi"})


def test_async_handlers_run_from_inside_a_running_event_loop(chat):
    async def scenario():
        _, _, sock = joined(chat)
        return sock.assert_reply(sock.push("say", {"body": "x"}))

    assert asyncio.run(scenario()) == {"sent": True}


def test_error_reply_and_assert_reply_failure_messages(chat):
    _, _, sock = joined(chat)
    ref = sock.push("fail")
    assert sock.assert_reply(ref, "error", {"why": "nope"}) == {"why": "nope"}
    with pytest.raises(AssertionError, match=r"expected a ok reply to 'fail'; got a error reply \{'why': 'nope'\}"):
        sock.assert_reply(ref, "ok")
    noreply = sock.push("ping_me")
    with pytest.raises(AssertionError, match="did not reply"):
        sock.assert_reply(noreply)
    sock.refute_reply(noreply)
    with pytest.raises(AssertionError, match="unexpected error reply"):
        sock.refute_reply(ref)
    with pytest.raises(AssertionError, match="no push with ref '99'"):
        sock.assert_reply("99")


def test_reply_gives_the_answer_without_asserting(chat):
    _, _, sock = joined(chat)
    assert sock.reply(sock.push("fail")) == Reply("error", {"why": "nope"})
    assert sock.reply(sock.push("ping_me")) is None
    with pytest.raises(KeyError, match="no push with ref 'x'"):
        sock.reply("x")


def test_event_without_a_handler_gets_the_servers_error_reply(chat):
    _, _, sock = joined(chat)
    sock.assert_reply(sock.push("nope"), "error", {"reason": "unhandled event"})
    assert sock.closed is None


def test_push_payload_must_be_json(chat):
    _, _, sock = joined(chat)
    with pytest.raises(TypeError, match="not JSON-compatible"):
        sock.push("count", {"by": object()})


def test_emit_arguments_are_checked_like_the_worker_checks_them(chat):
    joined(chat)
    with pytest.raises(TypeError, match="event must be a str, not int"):
        broadcast("room:lobby", 7, {})
    with pytest.raises(TypeError, match="is not JSON-compatible"):
        broadcast("room:lobby", "x", {"s": {1, 2}})
    with pytest.raises(TypeError, match="payload must be a dict"):
        broadcast("room:lobby", "x", [1])


def test_invalid_return_value_raises_with_the_runtimes_message(chat):
    _, _, sock = joined(chat)
    with pytest.raises(InvalidReturnValue, match=r"junk returned an invalid value: 'yes please'; expected"):
        sock.push("junk")
    assert sock.closed is None  # the server answers an error and the channel lives on


# ---------------------------------------------------------------------------
# pushes and broadcasts
# ---------------------------------------------------------------------------


def test_push_reaches_only_the_pushing_channels_client(chat):
    _, _, ana = joined(chat, "ana")
    _, _, bob = joined(chat, "bob")
    ana.push("ping_me")
    assert ana.assert_push("pong") == {"to": "ana"}
    bob.refute_push("pong")


def test_assert_push_consumes_what_it_matched(chat):
    _, _, sock = joined(chat)
    sock.push("ping_me")
    sock.push("ping_me")
    sock.assert_push("pong", {"to": "ana"})
    sock.assert_push("pong", {"to": "ana"})
    with pytest.raises(AssertionError) as e:
        sock.assert_push("pong")
    assert "expected a push 'pong'; the client received (not asserted yet):" in str(e.value)
    assert "'presence_state'" in str(e.value)


def test_assert_push_failure_lists_what_the_client_received(chat):
    _, _, sock = joined(chat)
    sock.push("ping_me")
    with pytest.raises(AssertionError) as e:
        sock.assert_push("pong", {"to": "bob"})
    assert "expected a push 'pong' with {'to': 'bob'}" in str(e.value)
    assert "'pong' {'to': 'ana'}" in str(e.value)


def test_broadcast_during_join_is_seen_by_the_joiner_but_not_delivered_to_it(chat):
    _, _, ana = joined(chat, "ana")
    ana.assert_broadcast("joined", {"name": "ana"})
    ana.refute_push("joined")  # not subscribed until its join is answered
    _, _, bob = joined(chat, "bob")
    ana.assert_push("joined", {"name": "bob"})
    chat.assert_broadcast("room:lobby", "joined", {"name": "ana"})
    chat.assert_broadcast("room:lobby", "joined", {"name": "bob"})
    chat.refute_broadcast("room:lobby", "joined")
    with pytest.raises(AssertionError, match="on 'room:other'; broadcasts: nothing"):
        chat.assert_broadcast("room:other", "joined")


def test_emits_outside_an_open_kit_are_not_in_a_worker():
    channel("room:*")
    kit = ChannelKit()
    broadcast("room:1", "x", {})
    kit.close()
    with pytest.raises(RuntimeError, match="not running inside a hornbeam worker"):
        broadcast("room:1", "x", {})


# ---------------------------------------------------------------------------
# leave, stop, crash
# ---------------------------------------------------------------------------


def test_leave_runs_on_leave_and_closes_the_channel(chat):
    _, _, sock = joined(chat)
    sock.push("count")
    sock.leave()
    assert left == [("room:lobby", {"user": "ana", "peer": "127.0.0.1", "name": "ana", "n": 1})]
    assert sock.closed == "leave"
    sock.assert_push("phx_close", {})
    with pytest.raises(ChannelClosed, match="closed \\(leave\\)"):
        sock.push("count")


def test_stop_closes_the_channel_without_a_reply(chat):
    _, _, sock = joined(chat)
    ref = sock.push("quit")
    sock.refute_reply(ref)
    with pytest.raises(AssertionError, match="stopped the channel"):
        sock.assert_reply(ref)
    assert sock.closed == "stop" and len(left) == 1
    sock.assert_push("phx_close")


def test_handler_exception_propagates_after_the_channel_crashed(chat):
    _, _, sock = joined(chat)
    _, _, bob = joined(chat, "bob")
    with pytest.raises(ZeroDivisionError, match="boom"):
        sock.push("boom")
    assert sock.closed == "crashed"
    sock.assert_push("phx_error", {"reason": "channel_crash"})
    assert [t for t, _ in left] == ["room:lobby"]
    bob.assert_push("presence_diff", {"joins": {}, "leaves": {"user:ana": {"metas": [ANY]}}})


def test_connection_close_ends_every_channel(chat):
    conn = chat.connect({"token": "ana"})
    conn.join("room:a", {"track": False})
    conn.join("room:b", {"track": False})
    conn.close()
    assert sorted(t for t, _ in left) == ["room:a", "room:b"]


def test_kit_close_ends_open_channels(chat):
    _, _, sock = joined(chat)
    chat.close()
    assert sock.closed == "disconnect" and len(left) == 1
    with pytest.raises(RuntimeError, match="closed"):
        chat.connect()


# ---------------------------------------------------------------------------
# presence
# ---------------------------------------------------------------------------


def meta(**fields):
    return {"phx_ref": ANY, **fields}


def test_presence_state_after_join_has_the_servers_shape(chat):
    _, _, ana = joined(chat, "ana")
    state = ana.assert_push("presence_state")
    assert state == {"user:ana": {"metas": [meta(name="ana", status="online")]}}
    ref = state["user:ana"]["metas"][0]["phx_ref"]
    assert isinstance(ref, str) and len(ref) == 11
    assert list(state["user:ana"]["metas"][0]) == ["phx_ref", "name", "status"]


def test_presence_list_and_get_from_handlers_and_from_the_test(chat):
    _, _, ana = joined(chat, "ana")
    joined(chat, "bob")
    listed = ana.assert_reply(ana.push("who"))
    assert listed["list"] == {"user:ana": {"metas": [meta(name="ana", status="online")]},
                              "user:bob": {"metas": [meta(name="bob", status="online")]}}
    assert list(listed["list"]) == ["user:ana", "user:bob"]
    assert listed["me"] == {"metas": [meta(name="ana", status="online")]}
    assert listed["nobody"] is None
    assert Presence("room:lobby").list() == listed["list"] == chat.presence_list("room:lobby")
    assert Presence("room:lobby").get("user:bob") == chat.presence_get("room:lobby", "user:bob")


def test_presence_update_sends_a_diff_with_phx_ref_prev(chat):
    _, _, ana = joined(chat, "ana")
    _, _, bob = joined(chat, "bob")
    old = chat.presence_get("room:lobby", "user:ana")["metas"][0]
    ana.push("away")
    diff = bob.assert_push("presence_diff", {"joins": {"user:ana": {"metas": [ANY]}},
                                             "leaves": {"user:ana": {"metas": [old]}}})
    new = diff["joins"]["user:ana"]["metas"][0]
    assert new == {"phx_ref": ANY, "phx_ref_prev": old["phx_ref"], "name": "ana", "status": "away"}
    assert list(new)[:2] == ["phx_ref", "phx_ref_prev"] and new["phx_ref"] != old["phx_ref"]
    assert chat.presence_get("room:lobby", "user:ana") == {"metas": [new]}


def test_presence_untrack_and_leave_send_leaves(chat):
    _, _, ana = joined(chat, "ana")
    _, _, bob = joined(chat, "bob")
    ana.push("hide")
    bob.assert_push("presence_diff", {"joins": {}, "leaves": {"user:ana": {"metas": [meta(name="ana", status="online")]}}})
    assert chat.presence_get("room:lobby", "user:ana") is None
    bob.leave()
    ana.assert_push("presence_diff", {"joins": {}, "leaves": {"user:bob": {"metas": [ANY]}}})
    assert chat.presence_list("room:lobby") == {}


def test_async_presence_forms_in_async_handlers(chat):
    _, _, ana = joined(chat, "ana")
    got = ana.assert_reply(ana.push("who_async"))
    assert got == {"list": {"user:ana": {"metas": [meta(again=True)]}}, "me": {"metas": [meta(again=True)]}}


def test_blocking_presence_form_in_an_async_handler_is_refused_as_on_the_server(chat):
    _, _, ana = joined(chat, "ana")
    with pytest.raises(RuntimeError, match="would block the event loop.*list_async"):
        ana.push("blocking_in_async")


def test_sync_handlers_run_off_the_loop_even_from_an_async_test(chat):
    async def scenario():
        _, _, ana = joined(chat, "ana")  # on_join calls the blocking Presence.track
        return ana.assert_reply(ana.push("who"))["me"]

    assert asyncio.run(scenario()) == {"metas": [meta(name="ana", status="online")]}


def test_sync_handler_hooks_wrap_def_handlers_not_async_ones(chat):
    import contextlib

    import hornbeam_runtime as rt

    seen = []

    @contextlib.contextmanager
    def hook(kind, handler):
        seen.append((kind, handler.__name__))
        yield

    rt.add_sync_handler_hook(hook)
    try:
        _, _, ana = joined(chat, "ana")
        ana.push("count")
        ana.push("say", {"body": "x"})
    finally:
        rt.remove_sync_handler_hook(hook)
    assert seen == [("connect", "connect"), ("join", "join"), ("event", "count")]


def test_tracking_a_key_twice_is_the_servers_value_error(chat):
    _, _, ana = joined(chat, "ana")
    assert ana.assert_reply(ana.push("track_twice")) == {
        "error": "key user:ana is already tracked on room:lobby by this channel (use update to change its meta)"}


def test_same_key_from_two_channels_has_two_metas_oldest_first(chat):
    joined(chat, "ana")
    joined(chat, "ana", topic="room:lobby")
    metas = chat.presence_get("room:lobby", "user:ana")["metas"]
    assert len(metas) == 2 and metas[0]["phx_ref"] != metas[1]["phx_ref"]


def test_presence_from_the_test_with_a_channels_socket(chat):
    _, _, ana = joined(chat, "ana", track=False)
    Presence("room:lobby").track(ana.socket, "device:1", {"phx_ref": "forged", "kind": "phone"})
    assert chat.presence_list("room:lobby") == {"device:1": {"metas": [meta(kind="phone")]}}
    with pytest.raises(ValueError, match="key device:2 is not tracked on room:lobby by this channel"):
        Presence("room:lobby").untrack(ana.socket, "device:2")
    ana.leave()
    with pytest.raises(ValueError, match="does not belong to a live channel"):
        Presence("room:lobby").track(ana.socket, "device:3", {})


def test_on_leave_may_still_use_presence_as_on_the_server():
    room = channel("room:*")

    @room.on_join
    def join(topic, topic_params, params, socket):
        Presence(topic).track(socket, "k", {})
        return ("ok", {}, socket)

    @room.on_leave
    def leave(topic, socket):
        Presence(topic).untrack(socket, "k")
        Presence(topic).track(socket, "last", {"words": True})

    with ChannelKit() as kit:
        _, a = kit.connect().join("room:1")
        _, b = kit.connect().join("room:1")
        a.leave()
        b.assert_push("presence_diff", {"joins": {}, "leaves": {"k": {"metas": [ANY]}}})
        b.assert_push("presence_diff", {"joins": {"last": {"metas": [meta(words=True)]}}, "leaves": {}})
        b.assert_push("presence_diff", {"joins": {}, "leaves": {"last": {"metas": [ANY]}}})
        assert list(kit.presence_list("room:1")) == ["k"]  # b's own


def test_presence_refs_repeat_from_run_to_run():
    def refs():
        room = channel("r:*")

        @room.on_join
        def j(topic, tp, params, socket):
            Presence(topic).track(socket, "k", {})
            return ("ok", {}, socket)

        with ChannelKit() as kit:
            kit.connect().join("r:1")
            return kit.presence_list("r:1")

    first = refs()
    hc._reset()
    assert refs() == first


# ---------------------------------------------------------------------------
# the channel_kit fixture (hornbeam_channels.pytest_plugin)
# ---------------------------------------------------------------------------

opened_by_fixture = []


def test_channel_kit_fixture_opens_kits_that_import_modules(channel_kit, tmp_path, monkeypatch):
    (tmp_path / "kit_fixture_mod.py").write_text(
        "from hornbeam_channels import channel\n"
        "r = channel('fx:*')\n"
        "@r.on_join\n"
        "def j(topic, tp, params, socket):\n"
        "    return ('ok', {'id': tp['fx_id']})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    kit = channel_kit("kit_fixture_mod")
    opened_by_fixture.append(kit)
    assert kit.connect().join("fx:1")[0] == {"id": "1"}
    assert hc._test_backend is not None


def test_channel_kit_fixture_closed_its_kits_after_the_test():
    assert opened_by_fixture and opened_by_fixture[0]._closed
    assert hc._test_backend is None


def test_bytes_payloads_travel_as_binary_frames_in_the_kit(tmp_path, monkeypatch):
    """A bytes push reaches the handler as bytes; bytes replies, pushes and
    broadcasts come back as bytes, as binary frames do on the server."""
    (tmp_path / "kit_bytes.py").write_text(
        "from hornbeam_channels import channel, push, broadcast\n"
        "room = channel('bin:*')\n"
        "@room.on_join\n"
        "def join(topic, topic_params, params, socket):\n"
        "    return ('ok', {}, socket)\n"
        "@room.on('echo')\n"
        "def echo(payload, socket):\n"
        "    assert isinstance(payload, bytes)\n"
        "    push(socket, 'pushed', payload + b'!')\n"
        "    broadcast(socket.topic, 'all', payload[::-1])\n"
        "    return ('reply', payload.upper(), socket)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from hornbeam_channels.testing import ChannelKit
    with ChannelKit("kit_bytes") as kit:
        _, sock = kit.connect().join("bin:1")
        ref = sock.push("echo", b"abc")
        sock.assert_reply(ref, "ok", b"ABC")
        sock.assert_push("pushed", b"abc!")
        kit.assert_broadcast("bin:1", "all", b"cba")
