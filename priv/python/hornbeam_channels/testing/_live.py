"""The real server for end-to-end tests: ``bin/hornbeam run`` on a free
port (``--bind 127.0.0.1:0``; the port is read from its start-up line),
stopped with SIGTERM (the graceful stop) and killed if it lingers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from ._wsclient import DEFAULT_TIMEOUT, PhoenixClient

#: The checkout this package lives in (priv/python/hornbeam_channels/testing/).
HORNBEAM_ROOT = Path(__file__).resolve().parents[4]

#: Seconds to wait for the start-up line (workers import the app first).
DEFAULT_START_TIMEOUT = 60.0
#: Seconds a graceful stop may take before the server is killed.
DEFAULT_STOP_TIMEOUT = 15.0

_SERVING = re.compile(r"serving .* on (http://(?:\[[^\]]+\]|[^:/\s]+):(\d+))")


class LiveServerError(Exception):
    """The server did not start; the message holds its output."""


def missing_build(root: Path = HORNBEAM_ROOT) -> Optional[str]:
    """Why the real server cannot run here (no build, no Erlang), or None."""
    if not (root / "bin" / "hornbeam").is_file():
        return f"no bin/hornbeam in {root}"
    for built in ("priv/hornbeam_nif.so", "priv/hornbeam_worker", "_build/default/lib/hornbeam/ebin/hornbeam.app"):
        if not (root / built).exists() and not (built.startswith("_build") and (root / "ebin").is_dir()):
            return f"the hornbeam build is missing ({built}); run `make build` in {root}"
    if shutil.which("erl") is None:
        return "erl (Erlang/OTP) is not installed; run `make bootstrap`"
    return None


class LiveServer:
    """``bin/hornbeam run APP`` in a child process.

    ``LiveServer("chat:app", channel_modules=["chat"], pythonpath=["."])``;
    :meth:`start` returns once it serves (its ``url``, ``ws_url`` and
    ``port`` are then set); :meth:`connect` opens a Phoenix client;
    :meth:`stop` stops it. ``output`` holds what it printed.
    """

    def __init__(self, app: str, *, channel_modules: Sequence[str] = (), pythonpath: Sequence[str] = (),
                 workers: int = 1, args: Sequence[str] = (), env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None, root: Path = HORNBEAM_ROOT,
                 start_timeout: float = DEFAULT_START_TIMEOUT, stop_timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        self.app = app
        self.command = [str(root / "bin" / "hornbeam"), "run", app, "--bind", "127.0.0.1:0",
                        "--workers", str(workers)]
        for m in channel_modules:
            self.command += ["--channel-module", m]
        for p in pythonpath:
            self.command += ["--pythonpath", os.path.abspath(p)]
        self.command += list(args)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.root = root
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.output: List[str] = []
        self.url = ""
        self.ws_url = ""
        self.port = 0
        self._proc: Optional["subprocess.Popen[str]"] = None
        self._ready = threading.Event()
        self._reader: Optional[threading.Thread] = None

    def start(self) -> "LiveServer":
        """Start and wait for the start-up line; LiveServerError with the
        server's output if it exits or stays silent."""
        why = missing_build(self.root)
        if why is not None:
            raise LiveServerError(why)
        # its own process group, so stop() reaches erl and its worker ports
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, env=self.env, cwd=self.cwd,
                                      start_new_session=True)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                code = self._proc.poll()
                self.stop()
                why = f"exited with status {code}" if code is not None else \
                    f"did not report serving within {self.start_timeout:.0f} s"
                raise LiveServerError(f"{' '.join(self.command)} {why}:\n{self.text()}")
        return self

    def _read_output(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.rstrip("\n"))
            m = _SERVING.search(line)
            if m and not self._ready.is_set():
                self.url, self.port = m.group(1), int(m.group(2))
                ws_path = "/ws"
                for i, arg in enumerate(self.command[:-1]):
                    if arg == "--ws-path":
                        ws_path = self.command[i + 1]
                self.ws_url = "ws" + self.url[len("http"):] + ws_path
                self._ready.set()

    def text(self) -> str:
        """What the server printed so far."""
        return "\n".join(self.output)

    def connect(self, params: Optional[Mapping[str, str]] = None,
                timeout: float = DEFAULT_TIMEOUT) -> PhoenixClient:
        """A Phoenix V2 client connected to this server."""
        if not self._ready.is_set():
            raise RuntimeError("the server is not running; call start() first")
        return PhoenixClient.connect(self.ws_url, params, timeout)

    def stop(self) -> None:
        """SIGTERM (graceful: lifespan shutdown, clients closed with 1001),
        then SIGKILL to the server's process group after ``stop_timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its group (erl, workers)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        self._ready.clear()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
