"""pytest fixtures for hornbeam channel handlers. Enable with
``pytest_plugins = ["hornbeam_channels.pytest_plugin"]`` in your top-level
``conftest.py`` (or ``pytest -p hornbeam_channels.pytest_plugin``).

* ``channel_kit``: a factory of in-memory kits, ``channel_kit("chat")``
  (:class:`hornbeam_channels.testing.ChannelKit`), closed after the test.
* ``hornbeam_server``: a factory that boots the real server,
  ``hornbeam_server("chat:app", channel_modules=["chat"])``
  (:class:`hornbeam_channels.testing.LiveServer`: ``bin/hornbeam run`` on a
  free port), stopped after the test. The test is skipped when the build or
  Erlang is missing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from hornbeam_channels.testing import ChannelKit, LiveServer, missing_build


@pytest.fixture
def channel_kit() -> Iterator[Callable[..., ChannelKit]]:
    kits: List[ChannelKit] = []

    def open_kit(*channel_modules: str) -> ChannelKit:
        kit = ChannelKit(*channel_modules)
        kits.append(kit)
        return kit

    yield open_kit
    for kit in reversed(kits):
        kit.close()


@pytest.fixture
def hornbeam_server() -> Iterator[Callable[..., LiveServer]]:
    servers: List[LiveServer] = []

    def start(app: str, **options: Any) -> LiveServer:
        why = missing_build()
        if why is not None:
            pytest.skip(why)
        server = LiveServer(app, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
