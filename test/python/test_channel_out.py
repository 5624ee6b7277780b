"""Intercepts (@room.intercept) and server messages (subscribe, send,
@room.on_info) of a Python channel, end to end: bin/hornbeam run with
test/python/fixtures/fx_channel_out.py, a stdlib Phoenix V2 client on real
sockets. Skipped when the build is missing (the fixture says why)."""

import os

import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SLOW = 30.0  # a loaded 2-core machine: generous waits, nothing timed


@pytest.fixture
def server(hornbeam_server):
    return hornbeam_server("fx_channel_out:app", channel_modules=["fx_channel_out"], pythonpath=[FIXTURES])


def joined(server, topic, role="guest"):
    client = server.connect({}, timeout=SLOW)
    assert client.join(topic, {"role": role})["status"] == "ok"
    client.expect(topic, "presence_state")
    return client


def call(client, topic, event, payload):
    reply = client.reply(client.push(topic, event, payload))
    assert reply["status"] == "ok", reply
    return reply["response"]


def test_intercept_filters_out_one_subscriber_and_rewrites_for_another(server):
    with joined(server, "sec:a", "admin") as admin, joined(server, "sec:a") as guest:
        call(admin, "sec:a", "broadcast", {"event": "secret", "payload": {"code": 42}})
        call(admin, "sec:a", "broadcast", {"event": "plain", "payload": {"n": 1}})
        m = admin.receive()
        assert (m.event, m.payload) == ("secret", {"code": 42, "seen_by": "admin"})
        assert m.join_ref is not None  # a push of the channel, not the broadcast frame
        m = admin.receive()
        assert (m.event, m.payload, m.join_ref) == ("plain", {"n": 1}, None)
        # the guest's first message after joining is the plain one: the secret never came
        m = guest.receive()
        assert (m.event, m.payload) == ("plain", {"n": 1})


def test_intercepted_and_plain_broadcasts_keep_their_order(server):
    with joined(server, "sec:o", "admin") as admin:
        sent = [(event, n) for n in range(15) for event in ("plain", "secret", "counted")]
        for event, n in sent:
            call(admin, "sec:o", "broadcast", {"event": event, "payload": {"n": n}})
        got = []
        while len(got) < len(sent):
            m = admin.receive()
            if m.event != "before_count":
                got.append((m.event, m.payload["n"]))
        assert got == sent


def test_intercept_handler_pushes_go_first_and_its_assigns_stay(server):
    with joined(server, "sec:c") as a, joined(server, "sec:c") as b:
        call(a, "sec:c", "broadcast", {"event": "counted", "payload": {}})
        call(a, "sec:c", "broadcast", {"event": "tallied", "payload": {}})
        for client in (a, b):
            assert [client.receive()[3:] for _ in range(4)] == [
                ("before_count", {"n": 1}), ("counted", {"count": 1}),
                ("before_count", {"n": 2}), ("tallied", {"count": 2})]
        assert call(a, "sec:c", "seen", {})["seen"] == 2


def test_broadcast_from_excludes_the_sender_of_an_intercepted_event(server):
    with joined(server, "sec:f", "admin") as a, joined(server, "sec:f", "admin") as b:
        call(a, "sec:f", "broadcast_from", {"event": "secret", "payload": {"x": 1}})
        assert b.expect("sec:f", "secret") == {"x": 1, "seen_by": "admin"}
        call(a, "sec:f", "broadcast", {"event": "plain", "payload": {}})
        assert a.receive().event == "plain"  # not the secret first


def test_subscribed_topic_reaches_on_info_and_not_the_client(server):
    with joined(server, "sec:m") as a:
        call(a, "sec:m", "subscribe", {"topic": "user:7"})
        call(a, "sec:m", "broadcast_to", {"topic": "user:7", "event": "note", "payload": {"t": "hi"}})
        m = a.receive()
        assert (m.topic, m.event, m.payload) == (
            "sec:m", "relayed", {"topic": "user:7", "event": "note", "payload": {"t": "hi"}})
        call(a, "sec:m", "unsubscribe", {"topic": "user:7"})
        call(a, "sec:m", "broadcast_to", {"topic": "user:7", "event": "note", "payload": {}})
        call(a, "sec:m", "broadcast", {"event": "plain", "payload": {}})
        assert a.receive().event == "plain"  # nothing relayed after unsubscribe
        assert call(a, "sec:m", "seen", {})["infos"] == 1


def test_send_reaches_on_info_after_the_reply(server):
    with joined(server, "sec:s") as a:
        ref = a.push("sec:s", "send", {"message": ["any", {"json": 1}]})
        m = a.receive()
        assert (m.ref, m.event) == (ref, "phx_reply")
        assert a.expect("sec:s", "told") == {"message": ["any", {"json": 1}]}
        assert call(a, "sec:s", "seen", {})["infos"] == 1
        a.push("sec:s", "send", {"message": {"stop": True}})
        assert a.expect("sec:s", "phx_close") == {}
