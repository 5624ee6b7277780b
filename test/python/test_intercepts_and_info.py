"""@room.intercept and @room.on_info: registration, the runtime's return
checks, and the test kit running them as the server does (for the server
itself see test_channel_out.py, which serves the same fixture module)."""

import pytest

import hornbeam_channels as hc
import hornbeam_runtime as rt
from hornbeam_channels import Broadcast, broadcast, channel, send
from hornbeam_channels.testing import ChannelClosed, ChannelKit, InvalidReturnValue


# --- registration --------------------------------------------------------------


def test_intercept_registers_one_handler_for_each_event_and_reports_them_at_init():
    room = channel("r:*")

    @room.intercept("a", "b")
    def out(payload, socket):
        return ("noreply", socket)

    assert room.out_handlers == {"a": out, "b": out} and room.intercepts == ["a", "b"]
    assert rt.info()["channels"] == [{"pattern": b"r:*", "events": [], "intercepts": [b"a", b"b"]}]


def test_intercept_and_on_info_refuse_what_cannot_work():
    room = channel("r:*")
    with pytest.raises(ValueError, match="at least one"):
        room.intercept()
    with pytest.raises(ValueError, match="reserved"):
        room.intercept("phx_reply")
    room.intercept("a")(lambda payload, socket: None)
    with pytest.raises(ValueError, match="already intercepts 'a'"):
        room.intercept("a")
    with pytest.raises(TypeError, match="2 positional"):
        room.intercept("b")(lambda payload: None)
    room.on_info(lambda message, socket: None)
    with pytest.raises(ValueError, match="already has an on_info"):
        room.on_info(lambda message, socket: None)


def test_send_and_subscribe_check_their_arguments_before_anything_leaves():
    with pytest.raises(TypeError, match="not JSON-compatible"):
        send(hc.Socket(), {"x": object()})
    with pytest.raises(TypeError, match="topic must be a non-empty str"):
        hc.subscribe(hc.Socket(), "")
    with pytest.raises(RuntimeError, match="not running inside a hornbeam worker"):
        hc.unsubscribe(hc.Socket(), "t")


# --- the runtime's return checks ------------------------------------------------


def _socket_wire(assigns=b"{}"):
    return {"id": b"c1", "topic": b"r:1", "join_ref": b"\"1\"", "assigns": assigns, "params": b"{}",
            "channel": b"tok"}


def _finish(kind, args):
    prepared = rt._prepare(kind, {"pattern": b"r:*", "socket": _socket_wire(), **args})
    fn, fn_args, finish, _ = prepared
    return rt._finish(fn, fn(*fn_args), finish)


def test_out_results_are_push_noreply_or_none_and_anything_else_is_invalid():
    room = channel("r:*")
    answers = {}

    @room.intercept("e")
    def out(payload, socket):
        return answers["e"](payload, socket)

    answers["e"] = lambda p, s: ("push", {"p": p}, s.assign("k", 1))
    assert _finish("out", {"event": b"e", "payload": b"[1]"}) == ("push", b'{"p":[1]}', b'{"k":1}')
    answers["e"] = lambda p, s: ("push", b"\x00raw", s)
    assert _finish("out", {"event": b"e", "payload": ("binary", b"x")})[:2] == ("push", ("binary", b"\x00raw"))
    answers["e"] = lambda p, s: ("noreply", s)
    assert _finish("out", {"event": b"e", "payload": b"{}"}) == ("noreply", b"{}")
    answers["e"] = lambda p, s: None
    assert _finish("out", {"event": b"e", "payload": b"{}"}) == ("noreply", b"{}")
    answers["e"] = lambda p, s: ("reply", {}, s)
    result = _finish("out", {"event": b"e", "payload": b"{}"})
    assert result[0] == "invalid" and b"expected ('push', payload, socket)" in result[1]
    assert rt._prepare("out", {"pattern": b"r:*", "event": b"other"})[0] == "no_handler"


def test_on_info_gets_broadcasts_as_broadcast_and_messages_decoded():
    room = channel("r:*")
    seen = []

    @room.on_info
    def info(message, socket):
        seen.append(message)
        return ("stop", "enough", socket) if message == "stop" else None

    assert _finish("info", {"broadcast": (b"user:1", b"note", b'{"a":1}')}) == ("noreply", b"{}")
    assert _finish("info", {"broadcast": (b"user:1", b"bin", ("binary", b"\x01"))}) == ("noreply", b"{}")
    assert _finish("info", {"message": b'"stop"'}) == ("stop", b'"enough"', b"{}")
    assert seen == [Broadcast("user:1", "note", {"a": 1}), Broadcast("user:1", "bin", b"\x01"), "stop"]


# --- the kit -------------------------------------------------------------------


def test_kit_runs_intercepts_per_subscriber_for_assert_push():
    with ChannelKit("fx_channel_out") as kit:
        _, admin = kit.connect().join("sec:a", {"role": "admin"})
        _, guest = kit.connect().join("sec:a")
        admin.assert_reply(admin.push("broadcast", {"event": "secret", "payload": {"code": 42}}))
        admin.assert_push("secret", {"code": 42, "seen_by": "admin"})
        guest.refute_push("secret")
        # the broadcast itself happened, as sent
        guest.assert_broadcast("secret", {"code": 42})
        kit.assert_broadcast("sec:a", "secret", {"code": 42})


def test_kit_keeps_the_order_pushes_first_and_the_assigns_of_intercepts():
    with ChannelKit("fx_channel_out") as kit:
        _, a = kit.connect().join("sec:c", {"role": "admin"})
        broadcast("sec:c", "plain", {"n": 1})      # from the test itself
        broadcast("sec:c", "counted", {"n": 2})
        broadcast("sec:c", "secret", {"n": 3})
        assert [(m.event, m.payload) for m in a.received if m.event != "presence_state"] == [
            ("plain", {"n": 1}), ("before_count", {"n": 1}), ("counted", {"n": 2, "count": 1}),
            ("secret", {"n": 3, "seen_by": "admin"})]
        assert a.assigns["seen"] == 1


def test_kit_broadcast_from_skips_the_sender_of_an_intercepted_event():
    with ChannelKit("fx_channel_out") as kit:
        _, a = kit.connect().join("sec:f", {"role": "admin"})
        _, b = kit.connect().join("sec:f", {"role": "admin"})
        a.push("broadcast_from", {"event": "secret", "payload": {"x": 1}})
        b.assert_push("secret", {"x": 1, "seen_by": "admin"})
        a.refute_push("secret")


def test_kit_subscribe_delivers_to_on_info_and_unsubscribe_stops_it():
    with ChannelKit("fx_channel_out") as kit:
        _, a = kit.connect().join("sec:m")
        a.push("subscribe", {"topic": "user:7"})
        assert a.subscriptions == ["user:7"]
        broadcast("user:7", "note", {"t": "hi"})
        a.assert_push("relayed", {"topic": "user:7", "event": "note", "payload": {"t": "hi"}})
        a.push("unsubscribe", {"topic": "user:7"})
        broadcast("user:7", "note", {})
        a.refute_push("relayed")
        assert a.assigns["infos"] == 1


def test_kit_send_runs_on_info_after_the_handler_with_its_assigns():
    with ChannelKit("fx_channel_out") as kit:
        _, a = kit.connect().join("sec:s")
        a.assert_reply(a.push("send", {"message": [1, "two"]}))
        a.assert_push("told", {"message": [1, "two"]})
        a.send({"from": "the test"})
        a.assert_push("told", {"message": {"from": "the test"}})
        assert a.assigns["infos"] == 2
        a.send({"stop": True})
        a.assert_push("phx_close")
        with pytest.raises(ChannelClosed):
            a.send("more")


def test_kit_intercept_exception_crashes_that_channel_and_invalid_returns_reach_the_test():
    room = channel("x:*")
    room.on_join(lambda topic, tp, params, socket: ("ok", {}, socket))

    @room.intercept("boom")
    def boom(payload, socket):
        raise RuntimeError("out exploded")

    @room.intercept("bad")
    def bad(payload, socket):
        return "nonsense"

    with ChannelKit() as kit:
        _, a = kit.connect().join("x:1")
        with pytest.raises(InvalidReturnValue, match="expected \\('push', payload, socket\\)"):
            broadcast("x:1", "bad", {})
        with pytest.raises(RuntimeError, match="out exploded"):
            broadcast("x:1", "boom", {})
        a.assert_push("phx_error", {"reason": "channel_crash"})
        assert a.closed == "crashed"
