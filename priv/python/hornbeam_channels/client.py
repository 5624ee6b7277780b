"""Publish to hornbeam channels from outside the server: a Celery task, a cron
job, another service. Standard library only, synchronous, one HTTP request per
call (no shared state, so one ``Client`` is safe to share between threads and
forked workers).

    from hornbeam_channels.client import Client

    client = Client("http://127.0.0.1:8000", api_key=os.environ["HORNBEAM_API_KEY"])
    client.broadcast("room:lobby", "new_msg", {"body": "from cron"})
    client.presence("room:lobby")   # {"user:ana": {"metas": [...]}, ...}
    client.disconnect("user:42")    # log user 42 out everywhere

The server must be started with an API key (``HORNBEAM_API_KEY`` or
``--api-key-file``); the calls are ``POST /hornbeam/api/broadcast``,
``/hornbeam/api/presence`` and ``/hornbeam/api/disconnect`` with
``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Mapping, Optional

__all__ = ["Client", "ClientError", "Unauthorized", "BadRequest", "Unreachable"]

DEFAULT_TIMEOUT = 10.0  # seconds for the whole request; a stuck server must not stall a Celery worker


class ClientError(Exception):
    """A call failed: ``status`` is the HTTP status (``None`` when no answer
    came back) and ``message`` the server's error text."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message if status is None else f"{status}: {message}")
        self.status = status
        self.message = message


class Unauthorized(ClientError):
    """401: the server's API key is not this one (or it has none: 404)."""


class BadRequest(ClientError):
    """400: the server refused the arguments (the message says which)."""


class Unreachable(ClientError):
    """No HTTP answer: connection refused, DNS failure, timeout."""


class Client:
    """``Client(url, api_key, timeout=10.0)``: ``url`` is the server's base URL
    (``http://host:port``, as ``bin/hornbeam run`` prints it)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not api_key:
            raise ValueError("api_key is empty")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"Client({self.url!r}, api_key='***', timeout={self.timeout!r})"

    def broadcast(self, topic: str, event: str, payload: Mapping[str, Any]) -> None:
        """Send ``event`` with ``payload`` (a JSON object) to every client of
        ``topic``, on every node of the cluster."""
        if not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a dict (a JSON object), not {type(payload).__name__}")
        self._post("broadcast", {"topic": topic, "event": event, "payload": dict(payload)})

    def presence(self, topic: str) -> Dict[str, Any]:
        """Everyone on ``topic``: ``{key: {"metas": [meta, ...]}}`` (Phoenix's shape)."""
        presences = self._post("presence", {"topic": topic}).get("presences")
        if not isinstance(presences, dict):
            raise ClientError("the server's answer has no presences")
        return presences

    def disconnect(self, socket_id: str) -> None:
        """Close every WebSocket whose ``on_connect`` returned ``socket_id``
        (``('ok', assigns, "user:42")``), on every node; their clients
        reconnect and ``on_connect`` decides again. No error when no socket
        has the id."""
        if not isinstance(socket_id, str):
            raise TypeError(f"socket_id must be a str, not {type(socket_id).__name__}")
        self._post("disconnect", {"id": socket_id})

    def _post(self, call: str, body: Mapping[str, Any]) -> Dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/hornbeam/api/{call}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _json_object(response.read(), response.status)
        except urllib.error.HTTPError as error:
            status = error.code
            message = _error_message(error.read())
            error.close()
            if status == 401:
                raise Unauthorized("wrong API key", status) from None
            if status == 400:
                raise BadRequest(message, status) from None
            if status == 404:
                raise ClientError("no API here: is the server started with an API key?", status) from None
            raise ClientError(message, status) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise Unreachable(f"cannot reach {self.url}: {reason}") from None


def _json_object(raw: bytes, status: int) -> Dict[str, Any]:
    # Without an API key the server has no API and its app answers the path.
    hint = "the server's answer is not the API's: is the server started with an API key?"
    try:
        value = json.loads(raw)
    except ValueError:
        raise ClientError(hint, status) from None
    if not isinstance(value, dict):
        raise ClientError(hint, status)
    return value


def _error_message(raw: bytes) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip() or "error"
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])
    return "error"
