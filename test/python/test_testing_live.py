"""The hornbeam_server fixture boots the real server (bin/hornbeam run) on a
free port; a stdlib WebSocket client talks Phoenix V2 to it; and the kit's
answers agree with the server's for the same handler module. Skipped when
the build is missing (the fixture says why)."""

import os
import socket

import pytest

import hornbeam_channels.pytest_plugin as plugin
from hornbeam_channels.testing import (ChannelKit, HandshakeError, LiveServer, LiveServerError, PhoenixClient,
                                       missing_build)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SLOW = 30.0  # a loaded 2-core machine: generous waits, nothing timed


@pytest.fixture
def room_server(hornbeam_server):
    return hornbeam_server("kit_live_room:app", channel_modules=["kit_live_room"], pythonpath=[FIXTURES])


def test_fixture_serves_on_a_free_port_and_answers_http(room_server):
    assert room_server.port > 0 and room_server.url == f"http://127.0.0.1:{room_server.port}"
    with socket.create_connection(("127.0.0.1", room_server.port), timeout=SLOW) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"kit ok")


def test_stdlib_client_joins_pushes_and_gets_broadcasts_and_presence(room_server):
    with room_server.connect({"token": "ana"}, timeout=SLOW) as ana, \
            room_server.connect({"token": "bob"}, timeout=SLOW) as bob:
        assert ana.join("room:lobby") == {"status": "ok", "response": {"room": "lobby"}}
        state = ana.expect("room:lobby", "presence_state")
        assert list(state) == ["user:ana"] and state["user:ana"]["metas"][0]["status"] == "online"
        assert bob.join("room:lobby")["status"] == "ok"
        diff = ana.expect("room:lobby", "presence_diff")
        assert list(diff["joins"]) == ["user:bob"] and diff["leaves"] == {}
        ref = ana.push("room:lobby", "say", {"body": "hi"})
        assert ana.reply(ref) == {"status": "ok", "response": {"sent": True}}
        assert bob.expect("room:lobby", "said") == {"user": "ana", "body": "hi"}
        assert ana.leave("room:lobby")["status"] == "ok"
        # bob may first get the diff of its own join (diffs are throttled per
        # presence_diff_interval, so it can go out after bob subscribed)
        diff = bob.expect("room:lobby", "presence_diff")
        while not diff["leaves"]:
            diff = bob.expect("room:lobby", "presence_diff")
        assert list(diff["leaves"]) == ["user:ana"]


def test_on_connect_refusal_is_a_403_handshake(room_server):
    with pytest.raises(HandshakeError) as e:
        room_server.connect({"token": "bad"})
    assert e.value.status == 403


def test_kit_and_server_answer_the_same(room_server):
    """Same module, same client steps: the kit's replies, pushes and
    presence shapes equal the real server's (phx_refs aside)."""
    def refs_out(value):
        if isinstance(value, dict):
            return {k: ("REF" if k.startswith("phx_ref") else refs_out(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [refs_out(v) for v in value]
        return value

    with room_server.connect({"token": "ana"}, timeout=SLOW) as ana, \
            room_server.connect({"token": "bob"}, timeout=SLOW) as bob:
        live_join = ana.join("room:lobby")["response"]
        live_state = ana.expect("room:lobby", "presence_state")
        bob.join("room:lobby")
        live_diff = ana.expect("room:lobby", "presence_diff")
        live_reply = ana.reply(ana.push("room:lobby", "say", {"body": "hi"}))
        live_said = bob.expect("room:lobby", "said")
        live_unknown = ana.reply(ana.push("room:lobby", "nope", {}))

    with ChannelKit("kit_live_room") as kit:
        reply, k_ana = kit.connect({"token": "ana"}).join("room:lobby")
        k_state = k_ana.assert_push("presence_state")
        _, k_bob = kit.connect({"token": "bob"}).join("room:lobby")
        k_diff = k_ana.assert_push("presence_diff")
        ref = k_ana.push("say", {"body": "hi"})
        k_reply = {"status": "ok", "response": k_ana.assert_reply(ref, "ok")}
        k_said = k_bob.assert_push("said")
        k_unknown = {"status": "error", "response": k_ana.assert_reply(k_ana.push("nope"), "error")}

    assert reply == live_join
    assert refs_out(k_state) == refs_out(live_state)
    assert refs_out(k_diff) == refs_out(live_diff)
    assert (k_reply, k_said, k_unknown) == (live_reply, live_said, live_unknown)


def test_stop_frees_the_port(hornbeam_server):
    server = hornbeam_server("kit_live_room:app", channel_modules=["kit_live_room"], pythonpath=[FIXTURES])
    port = server.port
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=SLOW).close()


def test_a_server_that_cannot_start_raises_with_its_output(tmp_path):
    if missing_build():
        pytest.skip(missing_build())
    (tmp_path / "kit_broken_mod.py").write_text("import does_not_exist_kit\napp = None\n")
    server = LiveServer("kit_broken_mod:app", pythonpath=[str(tmp_path)], start_timeout=SLOW * 2)
    with pytest.raises(LiveServerError) as e:
        server.start()
    assert "exited with status" in str(e.value) and "does_not_exist_kit" in str(e.value)


def test_missing_build_names_what_is_missing(tmp_path):
    assert "no bin/hornbeam" in missing_build(tmp_path)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "hornbeam").write_text("")
    assert "make build" in missing_build(tmp_path)


def test_fixture_skips_cleanly_without_a_build(hornbeam_server, monkeypatch):
    monkeypatch.setattr(plugin, "missing_build", lambda: "the hornbeam build is missing (test)")
    with pytest.raises(pytest.skip.Exception, match="build is missing"):
        hornbeam_server("kit_live_room:app")


def test_phoenix_client_reports_what_came_instead_on_timeout(room_server):
    with room_server.connect({"token": "ana"}, timeout=SLOW) as ana:
        ana.join("room:lobby")
        with pytest.raises(TimeoutError, match="waited for 'never' on 'room:lobby'; received presence_state"):
            ana.expect("room:lobby", "never", timeout=0.5)


def test_phoenix_client_needs_a_ws_url():
    with pytest.raises(ValueError, match="ws:// URL"):
        PhoenixClient.connect("http://127.0.0.1:1/ws")
