"""A test kit for channel handlers: run them in-process, with no server.

    from hornbeam_channels.testing import ChannelKit

    def test_join_and_message():
        with ChannelKit("chat") as kit:              # imports chat.py
            conn = kit.connect({"token": "ana"})     # runs @on_connect
            reply, room = conn.join("room:lobby", {"username": "ana"})
            ref = room.push("new_msg", {"body": "hi"})
            room.assert_reply(ref, "ok", {"status": "ok"})
            room.assert_broadcast("new_msg", {"username": "ana", "body": "hi"})
            room.leave()                             # runs on_leave

Handlers run through the worker's own dispatch and return-value checks
(``hornbeam_runtime``), topics are routed like the server routes them, and
``Presence`` keeps the server's shapes. Their exceptions reach the test.

For end-to-end tests against the real server see :class:`LiveServer` and
the ``hornbeam_server`` fixture of ``hornbeam_channels.pytest_plugin``.
"""

from ._kit import (ANY_PAYLOAD, ChannelClosed, ChannelKit, ChannelSocket, ConnectRefused, Connection,
                   InvalidReturnValue, JoinRefused, Message, Reply)
from ._live import LiveServer, LiveServerError, missing_build
from ._router import PatternError
from ._wsclient import ChannelMessage, ConnectionClosed, HandshakeError, PhoenixClient

__all__ = ["ANY_PAYLOAD", "ChannelClosed", "ChannelKit", "ChannelMessage", "ChannelSocket", "ConnectRefused",
           "Connection", "ConnectionClosed", "HandshakeError", "InvalidReturnValue", "JoinRefused",
           "LiveServer", "LiveServerError", "Message", "PatternError", "PhoenixClient", "Reply",
           "missing_build"]
