"""The typed public API (py.typed, mypy --strict): a typed user module that
uses hornbeam_channels, hornbeam_presence and the test kit checks clean,
and the same calls with wrong types are caught."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("mypy")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOOD = '''
from typing import Any, Mapping
from hornbeam_channels import ConnectResult, EventResult, JoinResult, Socket, broadcast, channel, on_connect
from hornbeam_channels.testing import ChannelKit
from hornbeam_presence import Presence

room = channel("room:*")

@on_connect
def connect(params: Mapping[str, Any], connect_info: Mapping[str, Any]) -> ConnectResult:
    return ("ok", {"user": params.get("token")})

@room.on_join
def join(topic: str, topic_params: Mapping[str, str], params: Mapping[str, Any],
         socket: Socket) -> JoinResult:
    if not params:
        return ("error", "params required")
    Presence(topic).track(socket, "k", {"a": 1})
    return ("ok", {}, socket.assign("user", params.get("user")))

@room.on("msg")
async def msg(payload: Mapping[str, Any], socket: Socket) -> EventResult:
    broadcast(socket.topic, "msg", dict(payload))
    here = await Presence(socket.topic).get_async("k")
    if here is None:
        return ("reply", ("error", {"reason": "gone"}), socket)
    return ("noreply", socket)

from hornbeam_channels import Broadcast, InfoResult, OutResult, push, send, subscribe, unsubscribe

@room.intercept("msg", "other")
def out(payload: Mapping[str, Any], socket: Socket) -> OutResult:
    if socket.assigns.get("muted"):
        return ("noreply", socket)
    return ("push", {**payload, "seen": True}, socket)

@room.on_info
async def info(message: Any, socket: Socket) -> InfoResult:
    if isinstance(message, Broadcast):
        push(socket, "b", {"event": message.event, "topic": message.topic})
        unsubscribe(socket, message.topic)
        return None
    subscribe(socket, "user:1")
    send(socket, {"again": [1, 2]})
    return ("stop", "done", socket) if message == "stop" else ("noreply", socket)

def check() -> None:
    with ChannelKit() as kit:
        reply, sock = kit.connect({"token": "t"}).join("room:1")
        ref: str = sock.push("msg", {"x": 1})
        response: dict[str, Any] = sock.assert_reply(ref, "ok")
        everyone: dict[str, Any] = kit.presence_list("room:1")
        sock.send({"hi": 1})
        subscribed: list[str] = sock.subscriptions
        print(reply, response, everyone, sock.assigns["user"], subscribed)
'''

BAD = '''
from hornbeam_channels import JoinResult, Socket, broadcast
from hornbeam_channels.testing import ChannelKit
from hornbeam_presence import Presence

def wrong(socket: Socket) -> JoinResult:
    broadcast(socket.topic, 42, {})
    Presence(socket.topic).track(socket, "k", ["not", "a", "mapping"])
    ChannelKit().connect({}).join(7)
    socket.assign("k", 1).topic.no_such_method()
    return ("okay", {}, socket)
'''


def test_typed_usage_checks_clean_and_wrong_types_are_caught(tmp_path):
    (tmp_path / "typed_good.py").write_text(GOOD)
    (tmp_path / "typed_bad.py").write_text(BAD)
    env = {**os.environ, "MYPYPATH": os.path.join(ROOT, "priv", "python")}
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                          "--cache-dir", str(tmp_path / ".mypy_cache"), "typed_good.py", "typed_bad.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in run.stdout.splitlines() if ": error:" in line]
    # nothing from typed_good.py, nor from the hornbeam modules it imports
    assert not [line for line in lines if not line.startswith("typed_bad.py")], run.stdout
    bad_lines = sorted({int(line.split(":")[1]) for line in lines if line.startswith("typed_bad.py")})
    assert bad_lines == [7, 8, 9, 10, 11], run.stdout
