"""hornbeam_django with a real Django (the test project in test/django,
SQLite): django.setup() before the channel modules, and the DB connection
of every sync handler closed after it, as Django Channels'
database_sync_to_async does."""

import gc
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import hornbeam_django

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT = os.path.join(ROOT, "test", "django")


@pytest.fixture(scope="module")
def django_db(tmp_path_factory):
    """Django set up on the test project with a fresh, migrated database."""
    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    os.environ["HORNBEAM_DJANGO_DB"] = str(db)
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    if PROJECT not in sys.path:
        sys.path.insert(0, PROJECT)
    from django.conf import settings

    if settings.configured:  # set up by an earlier module: point it at this database
        settings.DATABASES["default"]["NAME"] = str(db)
    assert hornbeam_django.setup() is True
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    connection.close()
    yield db
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)


def open_db_connections():
    """Django connection wrappers, across all threads, that hold an open DB connection."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    gc.collect()
    return [w for w in gc.get_objects()
            if isinstance(w, BaseDatabaseWrapper) and w.connection is not None]


def count_users():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.count()


def hooked(fn, *args):
    """fn(*args) inside the hook, as the runtime runs a sync handler on a pool thread."""
    with hornbeam_django.sync_handler_hook("event", fn):
        return fn(*args)


def in_thread(fn, *args):
    """Run fn in a new thread (no event loop there, as in a pool thread)."""
    out = {}
    t = threading.Thread(target=lambda: out.update(value=fn(*args)))
    t.start()
    t.join(30)
    return out["value"]


def test_setup_does_nothing_without_a_settings_module(monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    assert hornbeam_django.setup() is False


def test_setup_runs_django_setup_only_once(django_db, monkeypatch):
    import django

    def again():
        raise AssertionError("django.setup() ran twice")

    monkeypatch.setattr(django, "setup", again)
    assert hornbeam_django.setup() is True


def test_sync_handler_db_connection_is_closed_after_it(django_db):
    def handler():
        from django.db import connection

        count_users()
        return connection.connection is not None  # open while the handler runs

    assert open_db_connections() == []
    assert in_thread(hooked, handler) is True
    assert open_db_connections() == []


def test_without_the_wrapper_a_thread_keeps_its_connection(django_db):
    """The control: the ORM leaves the connection open in its thread, which is
    what the wrapper is for."""
    done = threading.Event()
    opened = threading.Event()

    def thread():
        count_users()
        opened.set()
        done.wait(30)

    t = threading.Thread(target=thread)
    t.start()
    try:
        assert opened.wait(30)
        assert len(open_db_connections()) == 1
    finally:
        done.set()
        t.join(30)


def test_handler_exception_still_closes_the_connection(django_db):
    def handler():
        count_users()
        raise ValueError("boom")

    def run():
        try:
            hooked(handler)
        except ValueError as e:
            return str(e)
        return None

    assert in_thread(run) == "boom"
    assert open_db_connections() == []


def test_connections_stay_flat_over_1000_handlers_on_a_thread_pool(django_db):
    from chat.models import Message
    from django.contrib.auth import get_user_model

    user = hooked(
        lambda: get_user_model().objects.create_user("pool", password="pw"))

    def handler(i):
        Message.objects.create(room="room:pool", author_id=user.pk, body=str(i))
        return count_users()

    counts = []
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, 1000, 100):
            list(pool.map(lambda i: hooked(handler, i), range(start, start + 100)))
            counts.append(len(open_db_connections()))
        assert counts == [0] * 10  # every pool thread is idle and holds none
    assert in_thread(hooked,
                     lambda: Message.objects.filter(room="room:pool").count()) == 1000


def run_python(code, **env):
    base = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    base["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "priv", "python"), PROJECT])
    return subprocess.run([sys.executable, "-c", code], env=dict(base, **env), cwd=PROJECT,
                          capture_output=True, text=True, timeout=120)


INIT = """
import hornbeam_runtime as rt
r = rt.init({"app": "undefined", "channel_modules": [b"chat.channels"], "pythonpath": []})
print(r[0], r[2].decode() if r[0] == "init_error" else sorted(c["pattern"] for c in r[1]["channels"]))
import hornbeam_django
print("hooked" if hornbeam_django.sync_handler_hook in rt._sync_hooks else "not hooked")
"""


def test_channel_module_importing_models_loads_without_the_app_and_hooks_the_handlers(django_db):
    r = run_python(INIT, DJANGO_SETTINGS_MODULE="mysite.settings", HORNBEAM_DJANGO_DB=str(django_db))
    assert r.stdout.split("\n")[:2] == ["init_ok [b'room:*']", "hooked"], r.stdout + r.stderr


def test_without_a_settings_module_the_same_import_fails_clearly(django_db):
    r = run_python(INIT, HORNBEAM_DJANGO_DB=str(django_db))
    assert r.stdout.startswith("init_error ImproperlyConfigured: Requested setting"), r.stdout + r.stderr


def test_broken_settings_module_is_a_start_error_naming_it():
    r = run_python("""
import hornbeam_runtime as rt
r = rt.init({"app": "undefined", "channel_modules": [], "pythonpath": []})
print(r[0], r[1].decode(), r[2].decode())
""", DJANGO_SETTINGS_MODULE="no_such_settings_xyz")
    assert r.stdout.strip() == ("init_error no_such_settings_xyz ModuleNotFoundError: "
                                "No module named 'no_such_settings_xyz'"), r.stdout + r.stderr


def test_readme_shows_the_channel_module_that_ci_runs():
    """README's "Coming from Django Channels" prints test/django/chat/channels.py,
    which test/hornbeam_django_SUITE.erl serves: the printed example is the tested one."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    start = readme.index("```python\n# chat/channels.py\n") + len("```python\n")
    block = readme[start:readme.index("```", start)]
    with open(os.path.join(PROJECT, "chat", "channels.py"), encoding="utf-8") as f:
        assert block == f.read()


def test_hook_does_nothing_in_a_process_without_django():
    r = run_python("""
import sys, hornbeam_django
with hornbeam_django.sync_handler_hook("event", print):
    pass
print(hornbeam_django.ready(), "django.db" in sys.modules)
""")
    assert r.stdout.strip() == "False False", r.stdout + r.stderr


def test_an_app_without_django_gets_no_hook():
    r = run_python("""
import hornbeam_runtime as rt
r = rt.init({"app": "undefined", "channel_modules": [], "pythonpath": []})
print(r[0], rt._sync_hooks)
""")
    assert r.stdout.strip() == "init_ok []", r.stdout + r.stderr
