"""hornbeam_channels.client against the real server (bin/hornbeam run with
HORNBEAM_API_KEY or --api-key-file): broadcasts reach a joined WebSocket
client, presence answers Phoenix's shape, and every failure is a clear
exception. Skipped when the build is missing (the fixture says why)."""

import os
import socket

import pytest

from hornbeam_channels.client import BadRequest, Client, ClientError, Unauthorized, Unreachable

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SLOW = 30.0  # a loaded 2-core machine: generous waits, nothing timed
KEY = "client-test-key-0123456789"


@pytest.fixture
def api_server(hornbeam_server):
    return hornbeam_server("kit_live_room:app", channel_modules=["kit_live_room"], pythonpath=[FIXTURES],
                           env={"HORNBEAM_API_KEY": KEY})


def test_broadcast_reaches_a_joined_client_and_presence_lists_it(api_server):
    client = Client(api_server.url, KEY, timeout=SLOW)
    with api_server.connect({"token": "ana"}, timeout=SLOW) as ana:
        assert ana.join("room:lobby")["status"] == "ok"
        ana.expect("room:lobby", "presence_state")
        client.broadcast("room:lobby", "news", {"body": "from cron", "n": 1})
        assert ana.expect("room:lobby", "news") == {"body": "from cron", "n": 1}
        presences = client.presence("room:lobby")
        assert list(presences) == ["user:ana"]
        assert presences["user:ana"]["metas"][0]["status"] == "online"
    assert client.presence("room:empty") == {}


def test_wrong_key_raises_unauthorized_and_delivers_nothing(api_server):
    with api_server.connect({"token": "ana"}, timeout=SLOW) as ana:
        assert ana.join("room:lobby")["status"] == "ok"
        ana.expect("room:lobby", "presence_state")
        with pytest.raises(Unauthorized) as caught:
            Client(api_server.url, "not-the-key", timeout=SLOW).broadcast("room:lobby", "news", {"x": 1})
        assert caught.value.status == 401
        with pytest.raises(TimeoutError):
            ana.expect("room:lobby", "news", timeout=1.0)
    assert "not-the-key" not in api_server.text() and KEY not in api_server.text()


def test_bad_arguments_raise_bad_request_with_the_servers_message(api_server):
    client = Client(api_server.url, KEY, timeout=SLOW)
    with pytest.raises(BadRequest) as caught:
        client.broadcast("", "news", {})
    assert caught.value.status == 400 and "topic" in caught.value.message
    with pytest.raises(TypeError):
        client.broadcast("room:lobby", "news", [1, 2])  # type: ignore[arg-type]


def test_a_server_without_a_key_has_no_api(hornbeam_server):
    server = hornbeam_server("kit_live_room:app", channel_modules=["kit_live_room"], pythonpath=[FIXTURES],
                             env={"HORNBEAM_API_KEY": ""})
    with server.connect({"token": "ana"}, timeout=SLOW) as ana:
        assert ana.join("room:lobby")["status"] == "ok"
        ana.expect("room:lobby", "presence_state")
        # the path is the app's again (this one answers every path with 200 "kit ok")
        with pytest.raises(ClientError) as caught:
            Client(server.url, KEY, timeout=SLOW).broadcast("room:lobby", "news", {})
        assert caught.value.status == 200 and "API key" in caught.value.message
        with pytest.raises(TimeoutError):
            ana.expect("room:lobby", "news", timeout=1.0)


def test_key_from_a_file(hornbeam_server, tmp_path):
    key_file = tmp_path / "api_key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    server = hornbeam_server("kit_live_room:app", channel_modules=["kit_live_room"], pythonpath=[FIXTURES],
                             args=["--api-key-file", str(key_file)], env={"HORNBEAM_API_KEY": ""})
    assert Client(server.url, KEY, timeout=SLOW).presence("room:lobby") == {}


def test_unreachable_server_and_timeout_raise_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unreachable):
        Client(f"http://127.0.0.1:{port}", KEY, timeout=SLOW).presence("room:lobby")
    # a server that accepts and never answers: the timeout ends the call
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(Unreachable):
            Client(f"http://127.0.0.1:{silent.getsockname()[1]}", KEY, timeout=0.5).presence("room:lobby")


def test_client_checks_its_arguments_and_hides_the_key():
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1", "")
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1", KEY, timeout=0)
    assert KEY not in repr(Client("http://127.0.0.1:1", KEY))
