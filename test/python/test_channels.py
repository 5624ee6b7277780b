"""The public API: registration, Socket, side effects outside a worker."""

import pytest

import hornbeam_channels as hc
from hornbeam_channels import Socket, channel, on_connect


def test_channel_registers_and_is_introspectable():
    room = channel("room:*")

    @room.on_join
    def join(topic, topic_params, params, socket):
        return ("ok", {})

    @room.on("new_msg")
    async def new_msg(payload, socket):
        return None

    @room.on_leave
    def leave(topic, socket):
        pass

    assert hc.channels()["room:*"] is room
    assert room.join_handler is join
    assert room.leave_handler is leave
    assert room.events == ["new_msg"]
    assert room.event_handlers["new_msg"] is new_msg


def test_decorators_return_the_function():
    room = channel("room:*")

    def f(payload, socket):
        return None

    assert room.on("x")(f) is f


def test_registry_is_read_only():
    channel("a:*")
    with pytest.raises(TypeError):
        hc.channels()["b:*"] = None  # type: ignore[index]


def test_same_pattern_twice_is_an_error():
    channel("room:*")
    with pytest.raises(ValueError, match="already registered"):
        channel("room:*")


def test_two_handlers_for_one_event_is_an_error():
    room = channel("room:*")
    room.on("new_msg")(lambda payload, socket: None)
    with pytest.raises(ValueError, match="already handles 'new_msg'"):
        room.on("new_msg")(lambda payload, socket: None)


def test_two_join_or_leave_handlers_is_an_error():
    room = channel("room:*")
    room.on_join(lambda t, tp, p, s: None)
    with pytest.raises(ValueError, match="join handler"):
        room.on_join(lambda t, tp, p, s: None)
    room.on_leave(lambda t, s: None)
    with pytest.raises(ValueError, match="leave handler"):
        room.on_leave(lambda t, s: None)


def test_on_connect_twice_is_an_error():
    on_connect(lambda params, info: ("ok", {}))
    with pytest.raises(ValueError, match="on_connect is already registered"):
        on_connect(lambda params, info: ("ok", {}))


def test_handler_arity_is_checked_at_registration():
    room = channel("room:*")
    with pytest.raises(TypeError, match="must accept 4 positional arguments"):
        room.on_join(lambda topic, socket: None)
    with pytest.raises(TypeError, match="must accept 2 positional arguments"):
        room.on("x")(lambda payload: None)
    # *args and defaults are fine
    room.on("y")(lambda *args: None)
    room.on("z")(lambda payload, socket, extra=None: None)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_patterns(bad):
    with pytest.raises(ValueError):
        channel(bad)


def test_reserved_and_empty_event_names():
    room = channel("room:*")
    with pytest.raises(ValueError, match="reserved"):
        room.on("phx_join")
    with pytest.raises(ValueError):
        room.on("")


# ---------------------------------------------------------------------------
# Socket
# ---------------------------------------------------------------------------


def test_socket_is_immutable_and_assign_returns_a_new_socket():
    s = Socket(topic="room:1", assigns={"a": 1})
    s2 = s.assign("b", [1, 2, {"c": None}])
    assert dict(s.assigns) == {"a": 1}
    assert dict(s2.assigns) == {"a": 1, "b": [1, 2, {"c": None}]}
    assert s2.topic == "room:1"
    with pytest.raises(AttributeError, match="immutable"):
        s.topic = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        s.assigns["a"] = 2  # type: ignore[index]


def test_merge_assigns():
    s = Socket(assigns={"a": 1}).merge_assigns({"a": 2, "b": True})
    assert dict(s.assigns) == {"a": 2, "b": True}


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", float("nan"), {"k": (1, 2)}, {1: "x"},
                                   2**70])
def test_assign_rejects_non_json_values_naming_the_key(value):
    with pytest.raises(TypeError, match="'user'"):
        Socket().assign("user", value)


def test_assign_rejects_non_str_keys():
    with pytest.raises(TypeError, match="key must be a str"):
        Socket().assign(1, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Socket().merge_assigns({"ok": 1, 2: "bad"})


def test_socket_from_wire_decodes_lazily_and_echoes_unchanged_assigns():
    wire = {"id": b"conn-1", "topic": b"room:1", "join_ref": b'"3"',
            "assigns": b'{"z": 1, "a": [ ]}', "params": b'{"token":"t"}', "channel": b"tok"}
    s = Socket._from_wire(wire)
    assert s.id == "conn-1"
    assert s.topic == "room:1"
    assert s.join_ref == "3"
    assert dict(s.params) == {"token": "t"}
    # untouched assigns go back byte for byte, even after reading them
    assert s._assigns_payload() == b'{"z": 1, "a": [ ]}'
    assert dict(s.assigns) == {"z": 1, "a": []}
    s2 = s.assign("n", 1)
    assert s2._assigns_payload() == b'{"z":1,"a":[],"n":1}'
    assert s2._channel == b"tok"
    assert s2.join_ref == "3"


def test_socket_join_ref_forms():
    for raw, value in [(b"3", 3), (b"null", None), (b'"7"', "7")]:
        assert Socket._from_wire({"join_ref": raw}).join_ref == value


def test_socket_equality_and_repr():
    assert Socket(topic="t", assigns={"a": 1}) == Socket(topic="t", assigns={"a": 1})
    assert Socket(topic="t") != Socket(topic="u")
    assert "assigns={'a': 1}" in repr(Socket(assigns={"a": 1}))


# ---------------------------------------------------------------------------
# side effects outside a worker
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: hc.broadcast("room:1", "e", {}),
    lambda: hc.broadcast_from(Socket._from_wire({"channel": b"t"}), "e", {}),
    lambda: hc.push(Socket._from_wire({"channel": b"t"}), "e", {}),
    lambda: hc.call("echo", {}),
])
def test_side_effects_need_a_worker(call):
    with pytest.raises(RuntimeError, match="not running inside a hornbeam worker"):
        call()


def test_payload_must_be_a_dict():
    with pytest.raises(TypeError, match="payload must be a dict"):
        hc.broadcast("room:1", "e", [1])  # type: ignore[arg-type]


class FakeNative:
    def __init__(self):
        self.emits = []

    def emit(self, kind, *args, call_id=0):
        self.emits.append((kind, args, call_id))


def test_emits_carry_the_current_call_and_channel_token(monkeypatch):
    fake = FakeNative()
    monkeypatch.setattr(hc, "_hornbeam", fake)
    s = Socket._from_wire({"topic": b"room:1", "channel": b"tok"})
    token = hc.current_call.set(42)
    try:
        hc.broadcast("room:2", "a", {"x": 1})
        hc.broadcast_from(s, "b", {})
        hc.push(s, "c", {})
    finally:
        hc.current_call.reset(token)
    assert fake.emits == [("broadcast", ("room:2", "a", {"x": 1}), 42),
                          ("broadcast_from", (b"tok", "room:1", "b", {}), 42),
                          ("push", (b"tok", "c", {}), 42)]


def test_push_needs_a_socket_from_a_handler(monkeypatch):
    monkeypatch.setattr(hc, "_hornbeam", FakeNative())
    with pytest.raises(ValueError, match="does not belong to a channel"):
        hc.push(Socket(), "e", {})


def test_json_fallback_matches_worker_rules():
    assert hc.json_encode({"a": [1, 2.5, None, True, "é"], "t": (1, 2)}) == \
        '{"a":[1,2.5,null,true,"é"],"t":[1,2]}'.encode()
    for bad in [{1: 2}, {"s": {1}}, float("inf")]:
        with pytest.raises((TypeError, ValueError)):
            hc.json_encode(bad)
