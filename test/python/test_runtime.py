"""hornbeam_runtime: init, dispatch of every call kind and return form,
sync and async handlers, error paths."""

import asyncio
import json
import threading

import pytest

import hornbeam_channels as hc
import hornbeam_runtime as rt
from conftest import event_args, join_args, sock


# ---------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------


def test_init_reports_channels_and_on_connect(runtime):
    tag, info = runtime.init("fx_room", "fx_connect")
    assert tag == "init_ok"
    patterns = {c["pattern"]: c["events"] for c in info["channels"]}
    assert set(patterns) == {b"room:*", b"async:*"}
    assert b"reply" in patterns[b"room:*"]
    assert info["on_connect"] is True


def test_init_without_on_connect(runtime):
    assert runtime.init("fx_room")[1]["on_connect"] is False


def test_init_error_names_module_and_message(runtime):
    tag, module, message, trace = runtime.init("fx_room", "fx_broken")
    assert tag == "init_error"
    assert module == b"fx_broken"
    assert message == b"ModuleNotFoundError: No module named 'does_not_exist_xyz'"
    assert b"Traceback" in trace and b"fx_broken.py" in trace


def test_init_missing_module(runtime):
    _, module, message, _ = runtime.init("no_such_module_here")
    assert (module, message) == (b"no_such_module_here",
                                 b"ModuleNotFoundError: No module named 'no_such_module_here'")


def test_init_loads_app_attr(runtime):
    assert runtime.init("fx_room", app="fx_room:room")[0] == "init_ok"
    assert rt.app is hc.channels()["room:*"]


def served(app, *modules):
    """init as the worker sends it (with a worker_class)."""
    return rt.init({"app": app.encode(), "channel_modules": [m.encode() for m in modules],
                    "pythonpath": [], "worker_id": 1, "worker_class": "asgi",
                    "lifespan": "auto", "root_path": b""})


def test_module_with_channels_and_no_app_is_served_channels_only(runtime):
    tag, info = served("fx_room:app")
    assert tag == "init_ok"
    assert info["http"] is False
    assert {c["pattern"] for c in info["channels"]} == {b"room:*", b"async:*"}
    assert rt.http is None


def test_channels_of_another_module_make_a_missing_app_channels_only(runtime):
    tag, info = served("fx_connect:app", "fx_room")
    assert tag == "init_ok" and info["http"] is False


def test_module_with_neither_app_nor_channels_is_an_app_error(runtime):
    assert served("fx_connect:nope") == (
        "app_error", b"fx_connect:nope",
        b"module 'fx_connect' has no attribute 'nope' and no channels are registered: "
        b"nothing to serve")


def test_app_that_is_not_callable_is_an_app_error(runtime):
    assert served("asgi_echo:ROUTES", "fx_room") == (
        "app_error", b"asgi_echo:ROUTES", b"asgi_echo:ROUTES is a dict, not a callable ASGI/WSGI app")


def test_a_callable_app_serves_http(runtime):
    tag, info = served("asgi_echo:app")
    assert tag == "init_ok" and info["http"] is True


def test_import_traceback_leaves_out_importlib_and_runtime_frames(runtime):
    _, _, _, trace = runtime.init("fx_broken")
    assert b"fx_broken.py" in trace
    assert b"importlib" not in trace and b"hornbeam_runtime" not in trace
    assert trace.count(b"ModuleNotFoundError") == 1


def test_a_module_that_is_not_there_has_no_traceback(runtime):
    assert runtime.init("no_such_module_here")[3] == b""


# ---------------------------------------------------------------------------
# join
# ---------------------------------------------------------------------------


@pytest.fixture
def room(runtime):
    assert runtime.init("fx_room", "fx_connect")[0] == "init_ok"
    return runtime


def join(room, payload):
    return room.call("join", join_args(json.dumps(payload).encode()))


def test_join_ok_with_socket(room):
    assert join(room, {"mode": "ok", "user": "bob"}) == \
        ("ok", b'{"topic":"room:1","topic_params":{"id":"1"}}', b'{"user":"bob"}')


def test_join_ok_without_socket_keeps_assigns(room):
    assert join(room, {"mode": "ok_no_socket"}) == ("ok", b'{"short":true}', b"{}")


def test_join_error(room):
    assert join(room, {"mode": "error"}) == ("error", b'{"reason":"unauthorized"}')
    assert join(room, {"mode": "error_str"}) == ("error", b'{"reason":"unauthorized"}')


def test_join_crash_is_logged_with_traceback(room):
    assert join(room, {"mode": "crash"}) == \
        ("crash", b"handler fx_room.join raised ValueError: join exploded")
    level, msg = room.logs[-1]
    assert level == "error" and "fx_room.join" in msg and "Traceback" in msg


def test_join_invalid(room):
    tag, msg = join(room, {"mode": "invalid"})
    assert tag == "invalid"
    assert msg.startswith(b"handler fx_room.join returned an invalid value: 'yes please'")
    assert room.logs[-1][0] == "error"


def test_join_async_handler(room):
    assert room.call("join", join_args(pattern=b"async:*", topic=b"async:1")) == \
        ("ok", b'{"async_join":{"id":"1"}}', b'{"joined":true}')


def test_join_no_handler(room):
    tag, _ = room.call("join", join_args(pattern=b"nope:*"))
    assert tag == "no_handler"


def test_socket_fields_reach_the_handler(room):
    _, resp, _ = join(room, {"mode": "socket_info"})
    assert json.loads(resp) == {"id": "conn-1", "topic": "room:1", "join_ref": "1",
                                "params": {"token": "t"}, "assigns": {}}


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------


def test_event_return_forms(room):
    assert room.call("event", event_args("reply", b'{"a":1}', b'{"n":2}')) == \
        ("reply", "ok", b'{"got":{"a":1},"n":3}', b'{"n":3}')
    assert room.call("event", event_args("reply_no_socket", assigns=b'{"k": 1}')) == \
        ("reply", "ok", b'{"x":1}', b'{"k": 1}')
    assert room.call("event", event_args("reply_error")) == ("reply", "error", b'{"why":"nope"}', b"{}")
    assert room.call("event", event_args("noreply")) == ("noreply", b'{"seen":true}')
    assert room.call("event", event_args("none", assigns=b'{"k":1}')) == ("noreply", b'{"k":1}')
    assert room.call("event", event_args("stop")) == ("stop", b'"normal"', b'{"stopping":true}')


def test_event_errors(room):
    assert room.call("event", event_args("crash")) == \
        ("crash", b"handler fx_room.crash raised ZeroDivisionError: division by zero")
    tag, msg = room.call("event", event_args("invalid"))
    assert tag == "invalid" and b"fx_room.invalid returned an invalid value: 42" in msg
    tag, msg = room.call("event", event_args("bad_json"))
    assert tag == "invalid" and b"set" in msg
    assert room.call("event", event_args("nope"))[0] == "no_handler"


def test_async_events(room):
    assert room.call("event", event_args("async_reply", b'{"q":1}')) == \
        ("reply", "ok", b'{"async":true,"got":{"q":1}}', b"{}")
    assert room.call("event", event_args("async_crash")) == \
        ("crash", b"handler fx_room.async_crash raised KeyError: 'async exploded'")


def test_async_events_overlap(room):
    ids = []
    for _ in range(3):
        ids.append(room.next_id)
        room.next_id += 1
        rt.loop.call_soon(rt.dispatch, ids[-1], "event", event_args("sleep_async", b'{"ms":200}'))

    async def all_done():
        while not all(i in room.results for i in ids):
            await asyncio.sleep(0.005)

    t0 = rt.loop.time()
    rt.loop.run_until_complete(asyncio.wait_for(all_done(), 5))
    assert rt.loop.time() - t0 < 0.5
    assert all(room.results[i][0] == "reply" for i in ids)


@pytest.mark.parametrize("value,expected", [
    (("reply", {"a": 1}), ("reply", "ok", b'{"a":1}', b"{}")),
    (("reply", ("ok", {"a": 1})), ("reply", "ok", b'{"a":1}', b"{}")),
    (("reply", "error"), ("reply", "error", b"{}", b"{}")),
    (("reply", None), ("reply", "ok", b"{}", b"{}")),
    (None, ("noreply", b"{}")),
])
def test_event_result_normalisation(value, expected):
    socket = hc.Socket._from_wire(sock())
    assert rt._event_result(value, socket) == expected


@pytest.mark.parametrize("value", [
    42, "reply", ("reply",), ("reply", {}, "not a socket"), ("noreply",), ("noreply", None),
    ("stop", "x"), ("reply", [1, 2]), ("what", 1, 2), ["reply", {}],
])
def test_invalid_event_results(value):
    socket = hc.Socket._from_wire(sock())
    with pytest.raises(rt.Invalid):
        rt._event_result(value, socket)


@pytest.mark.parametrize("value", [("ok",), ("ok", {}, None), ("error",), "ok", None, ("ok", [1])])
def test_invalid_join_results(value):
    with pytest.raises(rt.Invalid):
        rt._join_result(value, hc.Socket._from_wire(sock()))


# ---------------------------------------------------------------------------
# leave / connect / unknown kinds
# ---------------------------------------------------------------------------


def test_leave(room):
    leave = {"pattern": b"room:*", "topic": b"room:1", "reason": b"leave", "socket": sock()}
    assert room.call("leave", leave) == "ok"
    crash = dict(leave, socket=sock(b'{"crash_on_leave":true}'))
    assert room.call("leave", crash) == ("crash", b"handler fx_room.leave raised RuntimeError: leave exploded")
    assert room.call("leave", dict(leave, pattern=b"async:*")) == "ok"


def test_connect(room):
    def connect(params):
        return room.call("connect", {"params": json.dumps(params).encode(),
                                     "connect_info": b'{"peer":"127.0.0.1"}'})

    assert connect({"token": "good"}) == ("ok", b'{"user_id":7,"peer":"127.0.0.1"}')
    assert connect({"token": "bad"}) == ("error", b'{"reason":"bad token"}')
    assert connect({"token": "crash"})[0] == "crash"
    assert connect({"token": "invalid"})[0] == "invalid"


def test_connect_may_name_the_socket_id(room):
    def connect(params):
        return room.call("connect", {"params": json.dumps(params).encode(), "connect_info": b"{}"})

    assert connect({"token": "user", "user": "42"}) == ("ok", b'{"user_id":"42"}', b"user:42")
    assert connect({"token": "no_id"}) == ("ok", b'{"user_id":9}', None)
    tag, message = connect({"token": "bad_id"})
    assert tag == "invalid" and b"socket id must be a non-empty str" in message


def test_connect_without_handler(runtime):
    runtime.init("fx_room")
    assert runtime.call("connect", {"params": b"{}", "connect_info": b"{}"}) == "no_handler"


def test_unknown_kind(room):
    assert room.call("frobnicate", {}) == ("invalid", b"unknown call kind 'frobnicate'")


def test_current_call_is_set_for_sync_and_async_handlers(runtime):
    seen = {}
    ch = hc.channel("ctx:*")

    @ch.on("sync")
    def sync(payload, socket):
        seen["sync"] = hc.current_call.get()

    @ch.on("async")
    async def async_(payload, socket):
        await asyncio.sleep(0)
        seen["async"] = hc.current_call.get()

    runtime.init()
    args = {"pattern": b"ctx:*", "payload": b"{}", "socket": sock()}
    runtime.call("event", dict(args, event=b"sync"))
    runtime.call("event", dict(args, event=b"async"))
    assert seen == {"sync": 1, "async": 2}
    assert hc.current_call.get() == 0


def test_base_exceptions_do_not_escape(runtime):
    ch = hc.channel("exit:*")

    @ch.on("sys_exit")
    def sys_exit(payload, socket):
        raise SystemExit(3)

    @ch.on("async_exit")
    async def async_exit(payload, socket):
        raise SystemExit(4)

    runtime.init()
    args = {"pattern": b"exit:*", "payload": b"{}", "socket": sock()}
    assert runtime.call("event", dict(args, event=b"sys_exit"))[0] == "crash"
    assert runtime.call("event", dict(args, event=b"async_exit"))[0] == "crash"


def test_resolve_completes_futures_on_their_loop_from_another_thread(runtime):
    runtime.init()
    ok, err, done = rt.loop.create_future(), rt.loop.create_future(), rt.loop.create_future()
    done.cancel()
    # the worker's reader thread calls resolve
    resolver = threading.Thread(target=lambda: (rt.resolve(ok, True, {"a": 1}),
                                                rt.resolve(err, False, "nope"),
                                                rt.resolve(done, True, 1)))  # already done: ignored
    resolver.start()
    resolver.join()
    rt.loop.run_until_complete(asyncio.wait([ok, err], timeout=5))
    assert ok.result() == {"a": 1}
    with pytest.raises(hc.ErlangError, match="nope"):
        err.result()


def test_binary_payload_arrives_as_bytes_and_bytes_reply_goes_back_tagged(room):
    # Erlang sends a binary frame's payload as {binary, Bytes}: ('binary', b) here
    assert room.call("event", event_args("bytes_reply", ("binary", b"ab\x00"))) == \
        ("reply", "ok", ("binary", b"\x00ba"), b"{}")
    # JSON text is still decoded to a dict
    assert room.call("event", event_args("bytes_reply", b'{"a":1}')) == \
        ("reply", "error", b'{"reason":"dict"}', b"{}")
