"""Where handlers run: def handlers on the worker's thread pool (never the
loop's thread), async def handlers on the loop; the pool's bounded queue,
its queued/started reports, and the sync-handler hooks."""

import contextlib
import json
import threading
import time

import pytest

import hornbeam_channels as hc
import hornbeam_runtime as rt
from conftest import event_args
from hornbeam_pool import HandlerPool


@pytest.fixture
def room(runtime):
    assert runtime.init("fx_room", threads=2, max_queued_calls=1)[0] == "init_ok"
    return runtime


def reply(result):
    assert result[0] == "reply", result
    return json.loads(result[2])


def test_sync_handlers_run_on_a_pool_thread_with_no_event_loop(room):
    where = reply(room.call("event", event_args("where")))
    assert where["thread"].startswith("hornbeam-handler-")
    assert where["loop_running"] is False


def test_async_handlers_run_on_the_loop(room):
    where = reply(room.call("event", event_args("where_async")))
    assert where["thread"] == threading.current_thread().name  # the test drives the loop here
    assert where["loop_running"] is True


def test_sync_handlers_of_different_calls_overlap_up_to_the_pool_size(room):
    t0 = time.monotonic()
    ids = [room.start("event", event_args("sleep_sync", b'{"ms":400}')) for _ in range(2)]
    for call_id in ids:
        assert reply(room.wait(call_id)) == {"slept": 400}
    assert time.monotonic() - t0 < 0.79  # serially: 800 ms or more


def test_a_sleeping_sync_handler_does_not_delay_an_async_one(room):
    slow = room.start("event", event_args("sleep_sync", b'{"ms":1000}'))
    fast = room.call("event", event_args("async_reply", b'{"q":1}'))
    assert reply(fast)["async"] is True
    assert slow not in room.results
    room.wait(slow)


def test_a_full_queue_answers_overloaded_at_once_and_waits_are_reported(room):
    # 2 threads busy, 1 call may wait, the 4th is refused
    ids = [room.start("event", event_args("sleep_sync", b'{"ms":300}')) for _ in range(3)]
    refused = room.start("event", event_args("reply"))
    assert room.results.get(refused) == "overloaded"
    assert any("max_queued_calls" in m for level, m in room.logs if level == "warning")
    for call_id in ids:
        room.wait(call_id)
    assert room.progress == [("queued", ids[2]), ("started", ids[2])]


def test_calls_that_find_a_free_thread_send_no_progress_frames(room):
    room.call("event", event_args("reply"))
    room.call("event", event_args("reply"))
    assert room.progress == []


def test_blocking_forms_refuse_to_run_on_the_loop(room):
    errors = reply(room.call("event", event_args("blocking_forms_in_async")))
    assert set(errors) == {"call", "presence_list", "presence_track"}
    assert "await call_async('echo', ...)" in errors["call"]
    assert "list_async()" in errors["presence_list"]
    assert "track_async(...)" in errors["presence_track"]
    assert all("would block the event loop" in e for e in errors.values())


def test_sync_handler_hooks_wrap_sync_calls_on_their_thread(room):
    seen = []

    @contextlib.contextmanager
    def hook(kind, handler):
        seen.append(("enter", kind, handler.__name__, threading.current_thread().name))
        yield
        seen.append(("exit", kind))

    rt.add_sync_handler_hook(hook)
    try:
        reply(room.call("event", event_args("where")))
        reply(room.call("event", event_args("where_async")))  # not wrapped
    finally:
        rt.remove_sync_handler_hook(hook)
    assert [s[:3] for s in seen] == [("enter", "event", "where"), ("exit", "event")]
    assert seen[0][3].startswith("hornbeam-handler-")


def test_a_failing_hook_is_a_handler_crash(room):
    @contextlib.contextmanager
    def broken(kind, handler):
        raise RuntimeError("no database")
        yield  # pragma: no cover

    rt.add_sync_handler_hook(broken)
    try:
        result = room.call("event", event_args("reply"))
    finally:
        rt.remove_sync_handler_hook(broken)
    assert result == ("crash", b"handler fx_room.reply raised RuntimeError: no database")


def test_bad_pool_options_are_init_errors(runtime):
    tag, module, message, _ = runtime.init("fx_room", threads=0)
    assert (tag, module) == ("init_error", b"hornbeam_runtime")
    assert b"threads must be an integer >= 1" in message
    assert b"max_queued_calls" in runtime.init("fx_room", max_queued_calls=-1)[2]


def test_pool_runs_jobs_first_come_first_served():
    order = []
    gate = threading.Event()
    pool = HandlerPool(1, 10, on_queued=lambda i: None, on_started=lambda i: None,
                       log=lambda level, m: None)
    try:
        pool.submit(0, gate.wait)
        for i in range(1, 6):
            assert pool.submit(i, lambda i=i: order.append(i))
        assert pool.waiting == 5
        gate.set()
        deadline = time.monotonic() + 5
        while len(order) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert order == [1, 2, 3, 4, 5]
    finally:
        gate.set()
        pool.shutdown()


def test_pool_refuses_after_shutdown_and_with_a_zero_queue():
    pool = HandlerPool(1, 0, on_queued=lambda i: None, on_started=lambda i: None,
                       log=lambda level, m: None)
    gate = threading.Event()
    try:
        assert pool.submit(1, gate.wait)
        assert not pool.submit(2, lambda: None)  # no thread free, no waiting allowed
    finally:
        gate.set()
        pool.shutdown()
    assert not pool.submit(3, lambda: None)
    with pytest.raises(ValueError):
        HandlerPool(0, 1, on_queued=print, on_started=print, log=print)


def _wait_for(check, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_only_a_job_that_waits_longer_than_report_after_is_reported_queued():
    progress = []
    gate = threading.Event()
    pool = HandlerPool(1, 10, on_queued=lambda i: progress.append(("queued", i)),
                       on_started=lambda i: progress.append(("started", i)),
                       log=lambda level, m: None, report_after=0.05)
    try:
        # a short wait (well under report_after): no frames
        pool.submit(0, lambda: time.sleep(0.005))
        pool.submit(1, lambda: progress.append(("ran", 1)))
        _wait_for(lambda: ("ran", 1) in progress)
        assert progress == [("ran", 1)]
        progress.clear()
        # a long wait: queued while it waits, started when a thread takes it
        pool.submit(2, gate.wait)
        pool.submit(3, lambda: progress.append(("ran", 3)))
        _wait_for(lambda: ("queued", 3) in progress)
        assert progress == [("queued", 3)]
        gate.set()
        _wait_for(lambda: ("ran", 3) in progress)
        assert progress == [("queued", 3), ("started", 3), ("ran", 3)]
    finally:
        gate.set()
        pool.shutdown()
    with pytest.raises(ValueError):
        HandlerPool(1, 1, on_queued=print, on_started=print, log=print, report_after=0)


def test_current_call_is_set_on_the_pool_thread(room, monkeypatch):
    seen = {}
    ch = hc.channels()["room:*"]

    def probe(payload, socket):
        seen["call"] = hc.current_call.get()
        return None

    monkeypatch.setitem(ch.event_handlers, "probe", probe)
    call_id = room.start("event", event_args("probe"))
    room.wait(call_id)
    assert seen["call"] == call_id


def test_a_thread_holds_its_frames_during_a_burst_and_releases_them_before_waiting():
    holds = []
    gate = threading.Event()
    pool = HandlerPool(1, 10, on_queued=lambda i: None, on_started=lambda i: None,
                       log=lambda level, m: None, hold=holds.append)
    try:
        pool.submit(0, gate.wait)
        for i in range(1, 4):
            pool.submit(i, lambda: holds.append("job"))
        gate.set()
        deadline = time.monotonic() + 5
        while holds.count(False) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        # the thread found more jobs after the first: held for the rest of
        # the burst, released before it waits
        assert holds == [True, "job", "job", "job", False]
        holds.clear()
        pool.submit(9, lambda: holds.append("alone"))
        time.sleep(0.2)
        assert holds == ["alone"]  # a lone job: nothing held
    finally:
        gate.set()
        pool.shutdown()


def test_wsgi_requests_run_on_the_pool_inside_the_hooks(runtime):
    assert runtime.init(app="wsgi_app:app", worker_class=b"wsgi")[0] == "init_ok"
    seen = []

    @contextlib.contextmanager
    def hook(kind, handler):
        seen.append((kind, handler.__name__, threading.current_thread().name))
        yield

    rt.add_sync_handler_hook(hook)
    try:
        result = runtime.call("http", {"method": b"GET", "path": b"/nope", "headers": [], "body": b""})
    finally:
        rt.remove_sync_handler_hook(hook)
    assert result[:2] == ("response", 404)
    assert seen[0][:2] == ("http", "app") and seen[0][2].startswith("hornbeam-handler-")


def test_a_call_that_cannot_start_on_the_loop_still_gets_an_answer(room, monkeypatch):
    class Broken:
        threaded = False

        def handle(self, call_id, args):
            raise RuntimeError("no app today")

    monkeypatch.setattr(rt, "http", Broken())
    assert room.call("http", {}) == ("crash", b"RuntimeError: no app today")
    ids = [room.next_id, room.next_id + 1]
    room.next_id += 2
    rt.dispatch_batch([(ids[0], "http", {}), (ids[1], "event", event_args("async_reply"))])
    assert room.wait(ids[0]) == ("crash", b"RuntimeError: no app today")
    assert reply(room.wait(ids[1]))["async"] is True
