"""Django glue for the worker. Used by hornbeam_runtime; not a public API.

Two jobs, both only when the app uses Django:

* :func:`setup` runs ``django.setup()`` once per worker, before the app and
  the channel modules are imported, when ``DJANGO_SETTINGS_MODULE`` is set
  and Django is importable. A channel module that imports models then works
  even when it is imported before (or without) the project's ``asgi.py``.
* :func:`call_sync` runs a sync handler the way Django Channels'
  ``database_sync_to_async`` does: ``close_old_connections()`` before and
  after it, in the thread that runs it. Django keeps one connection per
  thread; this closes it once the handler is done (``CONN_MAX_AGE = 0``,
  Django's default) or when it is too old or broken, so a thread pool never
  holds a connection that no request is using.

"Uses Django" means: ``django.apps`` is imported and its registry is ready
(whoever called ``django.setup()``: this module, ``get_asgi_application()``
or the user). Handlers of apps without Django pay one dict lookup.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

#: ``django.db.close_old_connections`` once Django is ready (cached).
_close_old_connections: Optional[Callable[[], None]] = None


def settings_module() -> Optional[str]:
    """``DJANGO_SETTINGS_MODULE``, when set and not empty."""
    return os.environ.get("DJANGO_SETTINGS_MODULE") or None


def setup() -> bool:
    """``django.setup()`` when ``DJANGO_SETTINGS_MODULE`` is set and Django
    is importable; True when Django is ready afterwards. Errors of the
    settings module (ImportError, ImproperlyConfigured) propagate: the worker
    reports them as a start-up error naming the settings module."""
    if settings_module() is None:
        return False
    try:
        import django
        from django.apps import apps
    except ImportError:
        return False  # the variable is set but Django is not installed here
    if not apps.ready:
        django.setup()
    return ready()


def ready() -> bool:
    """True when Django's app registry is ready in this process."""
    return _closer() is not None


def _closer() -> Optional[Callable[[], None]]:
    """``close_old_connections`` once Django is ready, else None."""
    global _close_old_connections
    if _close_old_connections is None:
        django_apps = sys.modules.get("django.apps")
        if django_apps is None or not django_apps.apps.ready:
            return None
        from django.db import close_old_connections

        _close_old_connections = close_old_connections
    return _close_old_connections


def call_sync(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` between two ``close_old_connections()`` when Django is
    ready; plainly otherwise. Runs in the caller's thread (a pool thread)."""
    close = _closer()
    if close is None:
        return fn(*args)
    close()
    try:
        return fn(*args)
    finally:
        close()
