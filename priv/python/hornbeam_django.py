"""Django glue for the worker. Used by hornbeam_runtime; not a public API.

Two jobs, both only when the app uses Django:

* :func:`setup` runs ``django.setup()`` once per worker, before the app and
  the channel modules are imported, when ``DJANGO_SETTINGS_MODULE`` is set
  and Django is importable. A channel module that imports models then works
  even when it is imported before (or without) the project's ``asgi.py``.
* :func:`sync_handler_hook` wraps a sync handler the way Django Channels'
  ``database_sync_to_async`` does: ``close_old_connections()`` before and
  after it, in the thread that runs it. Django keeps one connection per
  thread; this closes it once the handler is done (``CONN_MAX_AGE = 0``,
  Django's default) or when it is too old or broken, so a thread pool never
  holds a connection that no request is using.

"Uses Django" means: ``django.apps`` is imported and its registry is ready
(whoever called ``django.setup()``: this module, ``get_asgi_application()``
or the user). The runtime installs the hook only then, so handlers of apps
without Django pay nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, ContextManager, Optional

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
        import django  # type: ignore[import-untyped, unused-ignore]
        from django.apps import apps  # type: ignore[import-untyped, unused-ignore]
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
        from django.db import close_old_connections  # type: ignore[import-untyped, unused-ignore]

        _close_old_connections = close_old_connections
    return _close_old_connections


class _ConnectionsClosed:
    """Context manager: ``close_old_connections()`` on entry and on exit."""

    __slots__ = ("_close",)

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def __enter__(self) -> None:
        self._close()

    def __exit__(self, *_exc: Any) -> None:
        self._close()


class _Nothing:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: Any) -> None:
        return None


_NOTHING = _Nothing()


def sync_handler_hook(kind: str, handler: Callable[..., Any]) -> ContextManager[None]:
    """The runtime's sync-handler hook (``hornbeam_runtime.add_sync_handler_hook``):
    entered on the pool thread just before a ``def`` handler runs and exited
    just after, it closes the thread's old DB connections on both sides, as
    ``database_sync_to_async`` does. Does nothing until Django is ready."""
    close = _closer()
    return _NOTHING if close is None else _ConnectionsClosed(close)
