"""hornbeam_asgi / hornbeam_wsgi and their wiring in hornbeam_runtime: scope
and environ building, request bodies in pieces, responses whole or
streamed, flow control, disconnects, lifespan modes, errors. No worker
needed: events and results are collected from the runtime's sinks."""

import asyncio
import json
import sys
import threading
import time

import pytest

import hornbeam_asgi as ha
import hornbeam_runtime as rt
import hornbeam_wsgi as hw


class Http:
    """Drives hornbeam_runtime like the worker does, for HTTP calls."""

    def __init__(self, monkeypatch):
        self.events = []
        self.results = {}
        self.logs = []
        self.lock = threading.Lock()
        monkeypatch.setattr(rt, "sink", self._sink)
        monkeypatch.setattr(rt, "http_event", self._event)
        monkeypatch.setattr(rt, "log", lambda level, msg: self.logs.append((level, msg)))
        self.next_id = 1

    def _sink(self, call_id, result):
        with self.lock:
            assert call_id not in self.results, "a call got two results"
            self.results[call_id] = result

    def _event(self, call_id, event):
        with self.lock:
            self.events.append((call_id, event))

    def init(self, app, worker_class="asgi", lifespan="auto", root_path=b""):
        result = rt.init({"app": app.encode(), "channel_modules": [], "pythonpath": [],
                          "worker_id": 1, "worker_class": worker_class, "lifespan": lifespan,
                          "root_path": root_path})
        assert result[0] == "init_ok", result
        return rt.startup()

    def run(self, coro, timeout=5.0):
        return rt.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def start(self, path=b"/echo", method=b"GET", body=b"", headers=(), query=b""):
        call_id = self.next_id
        self.next_id += 1
        args = {"method": method, "scheme": b"http", "path": path, "raw_path": path,
                "query": query, "http_version": b"1.1",
                "headers": [(b"host", b"example.test"), *headers], "body": body,
                "client": (b"10.0.0.7", 51000), "server": (b"127.0.0.1", 8000)}
        rt.loop.call_soon(rt.dispatch, call_id, "http", args)
        return call_id

    def wait(self, call_id, timeout=5.0):
        async def done():
            while call_id not in self.results:
                await asyncio.sleep(0.001)
        self.run(done(), timeout)
        return self.results[call_id]

    def request(self, *args, **kwargs):
        call_id = self.start(*args, **kwargs)
        result = self.wait(call_id)
        return result, [e for i, e in self.events if i == call_id]


@pytest.fixture
def http(monkeypatch):
    h = Http(monkeypatch)
    yield h
    if rt.pool is not None:
        rt.pool.shutdown()
        rt.pool = None
    if rt.loop is not None and not rt.loop.is_closed():
        if rt.http is not None:
            rt.loop.run_until_complete(rt.http.shutdown())
        pending = asyncio.all_tasks(rt.loop)
        for task in pending:
            task.cancel()
        rt.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        rt.loop.close()
    asyncio.set_event_loop(None)
    rt.http = None
    for name in [m for m in sys.modules if m.startswith(("asgi_", "wsgi_"))]:
        del sys.modules[name]


def body_of(result, events):
    """The response (status, headers dict, body, streamed?) from a result and events."""
    if result[0] == "response":
        _, status, headers, body = result
        return status, dict(headers), body, False
    assert result == "ok", result
    (tag, status, headers), *rest = events
    assert tag == "start"
    assert rest[-1][0] == "body" and rest[-1][2] is False
    assert all(e[0] == "body" for e in rest)
    return status, dict(headers), b"".join(e[1] for e in rest), True


# ---------------------------------------------------------------------------
# ASGI scope and request bodies
# ---------------------------------------------------------------------------


def test_scope_has_every_field(http):
    assert http.init("asgi_echo:app") is None
    result, events = http.request(b"/echo", method=b"POST", body=b"hi", query=b"a=1&b=%20",
                                  headers=[(b"x-thing", b"One")])
    status, headers, body, streamed = body_of(result, events)
    assert (status, streamed) == (200, False)
    info = json.loads(body)
    assert info["type"] == "http"
    assert info["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert (info["http_version"], info["method"], info["scheme"]) == ("1.1", "POST", "http")
    assert (info["path"], info["raw_path"], info["raw_path_is_bytes"]) == ("/echo", "/echo", True)
    assert (info["query_string"], info["query_is_bytes"]) == ("a=1&b=%20", True)
    assert info["root_path"] == ""
    assert info["headers"] == [["host", "example.test"], ["x-thing", "One"]]
    assert info["headers_are_bytes"] is True
    assert info["client"] == ["10.0.0.7", 51000] and info["server"] == ["127.0.0.1", 8000]
    assert info["state"] == {"started_by": "lifespan"}
    assert (info["body"], info["messages"]) == ("hi", 1)


def test_path_is_decoded_utf8_and_root_path_is_prefixed(http):
    http.init("asgi_echo:app", root_path=b"/api/")
    path = "/café x".encode("utf-8")
    result, events = http.request(path)
    info = json.loads(body_of(result, events)[2])
    assert info["path"] == "/api/café x"
    assert info["root_path"] == "/api"
    assert info["raw_path"] == "/api".encode().decode() + path.decode("latin-1")


def test_big_body_arrives_in_64k_pieces(http):
    http.init("asgi_echo:app")
    body = bytes(range(256)) * 1000  # 256000 bytes
    result, events = http.request(b"/body", method=b"POST", body=body)
    info = json.loads(body_of(result, events)[2])
    assert info == {"messages": 4, "length": 256000, "max_chunk": 65536,
                    "checksum": sum(body) % 65521}


def test_receive_after_the_body_waits_for_disconnect_or_completion(http):
    http.init("asgi_echo:app")
    call_id = http.start(b"/disconnect")

    async def until_started():
        while len([e for i, e in http.events if i == call_id]) < 2:
            await asyncio.sleep(0.001)
    http.run(until_started())
    assert call_id not in http.results  # parked in receive()
    rt.notify(call_id, "disconnect")
    assert http.wait(call_id) == "ok"


# ---------------------------------------------------------------------------
# ASGI responses
# ---------------------------------------------------------------------------


def test_streamed_response_events(http):
    http.init("asgi_echo:app")
    result, events = http.request(b"/stream")
    status, headers, body, streamed = body_of(result, events)
    assert (status, streamed) == (200, True)
    assert headers == {b"content-type": b"text/plain", b"X-Custom": b"yes"}
    assert body == b"part 0\npart 1\npart 2\n"


def test_response_completed_before_background_work_is_an_event(http):
    http.init("asgi_echo:app")
    result, events = http.request(b"/background")
    assert result == "ok"
    assert [e[0] for e in events] == ["response"]
    assert events[0][3] == b"done\n"


def test_exceptions_and_protocol_errors(http):
    http.init("asgi_echo:app")
    result, events = http.request(b"/raise")
    assert result == ("crash", b"RuntimeError: the app exploded")
    assert events == []
    assert any("Traceback" in m and "the app exploded" in m for _, m in http.logs)
    result, events = http.request(b"/raise-after-start")
    assert result[0] == "crash"
    assert [e[0] for e in events] == ["start", "body"]
    result, _ = http.request(b"/no-response")
    assert result == ("invalid", b"the ASGI app returned without starting a response")


@pytest.mark.parametrize("messages, error", [
    ([{"type": "http.response.body", "body": b"x"}], "before http.response.start"),
    ([{"type": "http.response.start", "status": 200}] * 2, "sent twice"),
    ([{"type": "http.response.start", "status": 99}], "200..599"),
    ([{"type": "http.response.start", "status": 200, "headers": [("a", "b")]}], "bytes"),
    ([{"type": "http.response.start", "status": 200},
      {"type": "http.response.body", "body": "text"}], "bytes"),
    ([{"type": "websocket.accept"}], "unexpected ASGI message"),
])
def test_bad_messages_are_crashes(http, monkeypatch, messages, error):
    async def app(scope, receive, send):
        for m in messages:
            await send(m)

    http.init("asgi_echo:app")
    monkeypatch.setattr(rt.http, "app", app)
    result, _ = http.request(b"/")
    assert result[0] == "crash" and error in result[1].decode(), result


def test_flow_control_waits_for_acks(http):
    http.init("asgi_echo:app")
    call_id = http.start(b"/big")

    async def settle():
        await asyncio.sleep(0.05)
    http.run(settle())
    sent = [e for i, e in http.events if i == call_id and e[0] == "body"]
    # one window's worth (1 MiB = 16 pieces of 64 KiB) went out, then send() waited
    assert len(sent) == ha.WINDOW_BYTES // 65536 + 1
    assert call_id not in http.results
    for n in range(1, 70):
        rt.notify(call_id, ("ack", n))
        http.run(asyncio.sleep(0))
    status, _, body, streamed = body_of(http.wait(call_id), [e for i, e in http.events if i == call_id])
    assert streamed and len(body) == 4 * 1024 * 1024


def test_disconnect_makes_send_a_no_op(http):
    http.init("asgi_echo:app")
    call_id = http.start(b"/big")
    http.run(asyncio.sleep(0.02))
    rt.notify(call_id, "disconnect")
    assert http.wait(call_id) == "ok"


def test_http_without_app_is_invalid(http):
    rt.init({"app": "undefined", "channel_modules": [], "pythonpath": [], "worker_id": 1,
             "worker_class": "asgi"})
    assert rt.startup() is None
    call_id = http.start(b"/")
    assert http.wait(call_id) == ("invalid", b"this worker has no HTTP app")


# ---------------------------------------------------------------------------
# lifespan
# ---------------------------------------------------------------------------


def test_lifespan_startup_failed_message(http):
    assert http.init("asgi_lifespan_fail:app") == ("startup_failed", b"database unreachable")


def test_lifespan_auto_tolerates_unsupported_apps(http):
    assert http.init("asgi_no_lifespan:app") is None
    assert any("unsupported" in m for _, m in http.logs)
    result, _ = http.request(b"/")
    assert result[0] == "response" and result[3] == b"no lifespan here\n"


def test_lifespan_on_requires_support(http):
    failed = http.init("asgi_no_lifespan:app", lifespan="on")
    assert failed == ("startup_failed", b"ValueError: unsupported scope type lifespan")


def test_lifespan_off_never_runs(http, tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("HB_TEST_LOG", str(log))
    assert http.init("asgi_lifespan_fail:app", lifespan="off") is None


def test_lifespan_shutdown_runs_then_the_loop_stops(http, tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("HB_TEST_LOG", str(log))
    http.init("asgi_echo:app")
    rt.loop.call_soon(rt.shutdown)
    rt.loop.run_forever()  # returns when shutdown stops the loop
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["startup", "shutdown"]


def test_init_rejects_bad_options_and_non_callables(http):
    def init(**extra):
        config = {"app": b"asgi_echo:app", "channel_modules": [], "pythonpath": [],
                  "worker_id": 1, "worker_class": "asgi"}
        config.update(extra)
        return rt.init(config)
    assert init(worker_class="uwsgi")[0] == "init_error"
    assert b"worker_class" in init(worker_class="uwsgi")[2]
    assert init(lifespan="sometimes")[0] == "init_error"
    assert init(app=b"asgi_echo:ROUTES") == (
        "app_error", b"asgi_echo:ROUTES", b"asgi_echo:ROUTES is a dict, not a callable ASGI/WSGI app")


def test_a_wsgi_looking_app_under_asgi_is_warned_about(http):
    http.init("wsgi_app:app")
    assert any("looks like a WSGI app" in m for level, m in http.logs if level == "warning")


# ---------------------------------------------------------------------------
# WSGI
# ---------------------------------------------------------------------------


def test_wsgi_environ(http):
    http.init("wsgi_app:app", worker_class="wsgi", root_path=b"/mount")
    result, events = http.request(
        b"/environ", method=b"POST", body=b"a=1", query=b"q=%C3%A9",
        headers=[(b"content-type", b"application/x-www-form-urlencoded"),
                 (b"content-length", b"3"), (b"accept", b"a"), (b"accept", b"b"),
                 (b"x_sneaky", b"dropped")])
    status, headers, body, streamed = body_of(result, events)
    assert (status, streamed) == (200, False)
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "POST"
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == ("/mount", "/environ", "q=%C3%A9")
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["SERVER_PROTOCOL"]) == ("127.0.0.1", "8000", "HTTP/1.1")
    assert env["REMOTE_ADDR"] == "10.0.0.7"
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("application/x-www-form-urlencoded", "3")
    assert env["http"] == {"HTTP_HOST": "example.test", "HTTP_ACCEPT": "a,b"}
    assert (env["body"], env["version"], env["multithread"]) == ("a=1", [1, 0], True)
    assert env["wsgi.url_scheme"] == "http"
    assert ("error", "wsgi.errors: a line for wsgi.errors") in http.logs


def test_wsgi_path_info_is_latin1_of_utf8(http):
    http.init("wsgi_app:app", worker_class="wsgi")
    env = hw.environ({"path": "/é".encode(), "headers": [], "body": b""}, "", None)
    assert env["PATH_INFO"] == "/é".encode().decode("latin-1")
    assert "CONTENT_LENGTH" not in env


def test_wsgi_streams_generators_and_closes_iterables(http, tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("HB_TEST_LOG", str(log))
    http.init("wsgi_app:app", worker_class="wsgi")
    result, events = http.request(b"/stream")
    status, headers, body, streamed = body_of(result, events)
    assert streamed and body == b"line 0\nline 1\nline 2\nline 3\n"
    assert headers == {b"Content-Type": b"text/plain"}
    result, events = http.request(b"/closing")
    assert body_of(result, events)[2] == b"one two"
    assert log.read_text().split()[0] == "closed"
    result, events = http.request(b"/write")
    assert body_of(result, events)[2:] == (b"written returned", True)


def test_wsgi_exc_info_and_exceptions(http):
    http.init("wsgi_app:app", worker_class="wsgi")
    result, _ = http.request(b"/exc-info")
    assert result[:2] == ("response", 500) and result[3] == b"recovered with exc_info\n"
    result, _ = http.request(b"/raise")
    assert result == ("crash", b"RuntimeError: the wsgi app exploded")
    assert any("Traceback" in m for _, m in http.logs)
    result, _ = http.request(b"/nope")
    assert result[:2] == ("response", 404)


def test_wsgi_start_response_twice_and_after_headers_sent():
    ex = hw.Exchange.__new__(hw.Exchange)
    hw.Exchange.__init__(ex, type("H", (), {"event": lambda *a: None})(), 1, {})
    ex.start_response("200 OK", [])
    with pytest.raises(AssertionError):
        ex.start_response("200 OK", [])
    ex._headers_sent = True
    try:
        raise KeyError("boom")
    except KeyError:
        with pytest.raises(KeyError):
            ex.start_response("500 Oops", [], sys.exc_info())
    with pytest.raises(ValueError):
        hw._status("20 OK")
    with pytest.raises(TypeError):
        hw._headers([("a", 1)])


def test_wsgi_flow_control_blocks_the_thread_until_acked():
    sent = []
    handler = type("H", (), {"event": lambda self, i, e: sent.append(e)})()
    ex = hw.Exchange(handler, 1, {})
    ex.start_response("200 OK", [])
    piece = b"x" * 65536
    done = threading.Event()

    def produce():
        for _ in range(20):
            ex._piece(piece)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(0.05)
    assert not done.is_set()
    assert len(sent) == 1 + hw.WINDOW_BYTES // 65536 + 1  # start + a window + one
    ex.notify(("ack", 20))
    t.join(2)
    assert done.is_set()
