"""Socket ids and disconnect on the real server (bin/hornbeam run): Python's
``disconnect`` from a handler and from a worker thread, and
``Client.disconnect`` over the HTTP API, close every socket with the id
(close code 4000) and only those; on_leave runs for their channels.
Skipped when the build is missing (the fixture says why)."""

import os

import pytest

from hornbeam_channels.client import Client
from hornbeam_channels.testing import ConnectionClosed

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SLOW = 30.0  # a loaded 2-core machine: generous waits, nothing timed
KEY = "socket-id-test-key-0123456789"


@pytest.fixture
def server(hornbeam_server):
    return hornbeam_server("socket_id_room:app", channel_modules=["socket_id_room"], pythonpath=[FIXTURES],
                           env={"HORNBEAM_API_KEY": KEY})


def joined(server, token):
    client = server.connect({"token": token} if token else {}, timeout=SLOW)
    reply = client.join("room:lobby")
    assert reply["status"] == "ok"
    return client, reply["response"]["id"]


def closed_with(client):
    with pytest.raises(ConnectionClosed) as caught:
        client.expect("room:lobby", "never", timeout=SLOW)
    return caught.value.code


def test_disconnect_from_handlers_and_the_api_closes_only_that_users_sockets(server):
    ana1, ana_id = joined(server, "ana")
    ana2, _ = joined(server, "ana")
    bob, bob_id = joined(server, "bob")
    anon, anon_id = joined(server, None)
    assert (ana_id, bob_id, anon_id) == ("user:ana", "user:bob", None)

    # from an async handler on bob's socket
    assert bob.reply(bob.push("room:lobby", "log_out", {"id": "user:ana"}))["status"] == "ok"
    assert closed_with(ana1) == 4000 and closed_with(ana2) == 4000
    assert sorted([bob.expect("room:lobby", "left")["id"], bob.expect("room:lobby", "left")["id"]]) == \
        ["user:ana", "user:ana"]  # on_leave ran for both channels

    # from a worker thread, later
    ana3, _ = joined(server, "ana")
    assert bob.reply(bob.push("room:lobby", "log_out_later", {"id": "user:ana"}))["status"] == "ok"
    assert closed_with(ana3) == 4000
    assert bob.expect("room:lobby", "left") == {"id": "user:ana"}

    # over the HTTP API (hornbeam_channels.client)
    ana4, _ = joined(server, "ana")
    Client(server.url, KEY, timeout=SLOW).disconnect("user:ana")
    assert closed_with(ana4) == 4000

    # bob and the socket without an id are still served
    for client in (bob, anon):
        assert client.reply(client.push("room:lobby", "log_out", {"id": "user:zed"}))["status"] == "ok"
    bob.close()
    anon.close()
