"""pytest setup for the pure-Python layer (priv/python) — no worker needed."""

import asyncio
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "priv", "python"))
sys.path.insert(0, os.path.join(ROOT, "test", "python", "fixtures"))

import hornbeam_channels as hc  # noqa: E402
import hornbeam_runtime as rt  # noqa: E402

# the kit's fixtures (channel_kit, hornbeam_server), tested by test_testing_*.py
pytest_plugins = ["hornbeam_channels.pytest_plugin"]


@pytest.fixture(autouse=True)
def clean_registry():
    hc._reset()
    for name in [m for m in sys.modules if m.startswith("fx_")]:
        del sys.modules[name]
    yield
    hc._reset()


class Runtime:
    """Drives hornbeam_runtime like the worker does, collecting results and logs."""

    def __init__(self, monkeypatch):
        self.results = {}
        self.logs = []
        monkeypatch.setattr(rt, "sink", self._sink)
        monkeypatch.setattr(rt, "log", lambda level, msg: self.logs.append((level, msg)))
        self.progress = []
        monkeypatch.setattr(rt, "progress", lambda state, call_id: self.progress.append((state, call_id)))
        self.next_id = 1

    def _sink(self, call_id, result):
        assert call_id not in self.results, "a call got two results"
        self.results[call_id] = result

    def init(self, *modules, app=None, **config):
        return rt.init({"app": app.encode() if app else "undefined",
                        "channel_modules": [m.encode() for m in modules],
                        "pythonpath": [], "worker_id": 1, **config})

    def call(self, kind, args, timeout=5.0):
        return self.wait(self.start(kind, args), timeout)

    def start(self, kind, args):
        """Dispatch a call as the worker's reader thread does (off the loop)."""
        call_id = self.next_id
        self.next_id += 1
        rt.dispatch(call_id, kind, args)
        return call_id

    def wait(self, call_id, timeout=5.0):
        """Run the loop until the call has its result."""
        async def wait():
            while call_id not in self.results:
                await asyncio.sleep(0.001)

        rt.loop.run_until_complete(asyncio.wait_for(wait(), timeout))
        return self.results[call_id]


@pytest.fixture
def runtime(monkeypatch):
    r = Runtime(monkeypatch)
    yield r
    if rt.pool is not None:
        rt.pool.shutdown()
        rt.pool = None
    if rt.loop is not None and not rt.loop.is_closed():
        rt.loop.close()
    asyncio.set_event_loop(None)


def sock(assigns=b"{}", topic=b"room:1", channel=b"token"):
    return {"id": b"conn-1", "topic": topic, "join_ref": b'"1"', "assigns": assigns,
            "params": b'{"token":"t"}', "channel": channel}


def join_args(payload=b"{}", pattern=b"room:*", topic=b"room:1"):
    return {"pattern": pattern, "topic": topic, "topic_params": {b"id": b"1"},
            "payload": payload, "socket": sock()}


def event_args(event, payload=b"{}", assigns=b"{}"):
    return {"pattern": b"room:*", "event": event.encode(), "payload": payload,
            "socket": sock(assigns)}
