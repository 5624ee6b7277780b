#!/usr/bin/env python3
"""Benchmark driver: every scenario against Hornbeam and every peer, in one run.

    python3 bench/run.py                      # the full run (make bench)
    python3 bench/run.py --profile quick      # under 5 minutes (make bench-quick)
    python3 bench/run.py --profile smoke      # seconds; hornbeam + the Rust peer (make bench-smoke)
    python3 bench/run.py --servers hornbeam-erlang,node-socketio --scenarios fanout

For each scenario and size it starts each server afresh (pinned to CPU 0 with
taskset), runs the load generator `hornbeam_bench` (pinned to CPU 1) against
it, stops it, and goes on to the next server, so servers alternate. It writes
bench/results/<date>.json (every raw figure) and <date>.md (tables, ratios
hornbeam/peer, the product's targets), plus a PNG of fan-out p99 latency
against subscriber count (matplotlib from bench/.venv).

Python standard library only. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
LOADGEN = ROOT / "target" / "release" / "hornbeam_bench"
RUST_SERVER = ROOT / "target" / "release" / "rust_fanout_server"
HB_EBIN = ROOT / "_build" / "default" / "lib" / "hornbeam" / "ebin"
PEER_EBIN = ROOT / "_build" / "bench_peers"
LOG_DIR = ROOT / "_build" / "bench_logs"

HORNBEAM = ("hornbeam-erlang", "hornbeam-python", "hornbeam-python-tuned")

SCENARIOS = ("fanout", "paced", "roundtrip", "idle", "presence", "blocking")
#: What every server runs; "blocking" only where the server says so.
COMMON_SCENARIOS = ("fanout", "paced", "roundtrip", "idle", "presence")
#: The load generator's scenario for each of ours ("blocking" is a round trip
#: of the `block` event, whose handler sleeps 5 ms in every peer).
#: "paced" is fan-out with an open-loop publisher at a fixed rate (issue 14:
#: 1,000 subscribers x 100 msg/s must keep up with p99 < 50 ms).
LOADGEN_SCENARIO = {"blocking": "roundtrip", "paced": "fanout"}
#: hornbeam-python-tuned: the best settings we measured for the blocking
#: scenario on one core (bench/README.md); HORNBEAM_PY_BEST replaces them.
BEST_SETTINGS = "--workers 2 --threads 32"


# --- servers ---------------------------------------------------------------------


class Server:
    """A server kind: how to check it can run, and how to start it on a port."""

    def __init__(self, name: str, proto: str, presence: bool, describe: str,
                 check: Callable[[], Optional[str]], command: Callable[[int], Tuple[List[str], Path]],
                 env: Optional[Dict[str, str]] = None, scenarios: Tuple[str, ...] = COMMON_SCENARIOS):
        self.name = name
        self.proto = proto
        self.presence = presence
        self.describe = describe
        self.check = check
        self.command = command
        self.env = env or {}
        self.scenarios = scenarios


def need(*paths: Path) -> Optional[str]:
    for p in paths:
        if not p.exists():
            return f"{p.relative_to(ROOT)} is missing"
    return None


def venv_bin(name: str) -> Path:
    return VENV / "bin" / name


def no_venv() -> Optional[str]:
    if not venv_bin("python").exists():
        return "bench/.venv is missing: run bash bench/setup.sh"
    return None


def compile_bench_channel() -> Optional[str]:
    missing = need(HB_EBIN / "hornbeam.app", ROOT / "priv" / "hornbeam_nif.so")
    if missing:
        return missing + " (run make build)"
    if not shutil.which("erlc"):
        return "erlc not found (Erlang/OTP is not installed)"
    PEER_EBIN.mkdir(parents=True, exist_ok=True)
    src = BENCH / "peers" / "hornbeam" / "bench_channel.erl"
    r = subprocess.run(["erlc", "-pa", str(HB_EBIN), "-o", str(PEER_EBIN), str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "erlc bench_channel.erl failed: " + (r.stderr or r.stdout).strip()[-500:]
    return None


def hornbeam_erlang_cmd(port: int, extra: str = "") -> Tuple[List[str], Path]:
    start = (
        "case hornbeam:start(none, #{bind => \"127.0.0.1:%d\", "
        "channels => [{<<\"room:*\">>, bench_channel}], max_connections => 100000%s}) of "
        "ok -> io:format(\"hornbeam-erlang ready (~p schedulers)~n\", "
        "[erlang:system_info(schedulers_online)]); "
        "E -> io:format(standard_error, \"cannot start: ~p~n\", [E]), halt(1) end." % (port, extra)
    )
    # the VM flags bin/hornbeam and the release use
    return (["erl", "-noshell", "-noinput", "+Bi", "+MHas", "aobf", "-pa", str(HB_EBIN), "-pa", str(PEER_EBIN),
             "-eval", start], ROOT)


def hornbeam_python_check() -> Optional[str]:
    missing = need(ROOT / "bin" / "hornbeam", ROOT / "priv" / "hornbeam_worker",
                   ROOT / "priv" / "python" / "hornbeam_channels" / "__init__.py", HB_EBIN / "hornbeam.app")
    if missing:
        return missing + " (the Python wiring is not built yet)"
    return None


def hornbeam_python_cmd(port: int) -> Tuple[List[str], Path]:
    # HORNBEAM_PYTHON_CMD overrides the whole command ({port} is substituted).
    custom = os.environ.get("HORNBEAM_PYTHON_CMD")
    if custom:
        return (["bash", "-c", "exec " + custom.replace("{port}", str(port))], ROOT)
    # max_connections as for hornbeam-erlang: the 16,384 default would make
    # the 19,500-connection idle run wait on a paused acceptor.
    cmd = [str(ROOT / "bin" / "hornbeam"), "run", "bench_app:app", "--max-connections", "100000",
           "--pythonpath", str(BENCH / "peers" / "hornbeam"), "--channel-module", "bench_app",
           "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    workers = os.environ.get("HORNBEAM_PY_WORKERS")
    if workers:
        cmd += ["--workers", workers]
    threads = os.environ.get("HORNBEAM_PY_THREADS")
    if threads:
        cmd += ["--threads", threads]
    return (cmd, ROOT)


def hornbeam_python_tuned_cmd(port: int) -> Tuple[List[str], Path]:
    cmd, cwd = hornbeam_python_cmd(port)
    best = os.environ.get("HORNBEAM_PY_BEST", BEST_SETTINGS).split()
    for flag, value in zip(best[::2], best[1::2]):
        if flag not in cmd:  # HORNBEAM_PY_WORKERS / _THREADS win
            cmd += [flag, value]
    return (cmd, cwd)


def daphne_cmd(port: int) -> Tuple[List[str], Path]:
    return ([str(venv_bin("daphne")), "-v", "0", "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=1024",
             "djpeer.asgi:application"], BENCH / "peers" / "django_channels")


def django_redis_check() -> Optional[str]:
    if no_venv():
        return no_venv()
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        return "redis-server not found (bench/setup.sh installs it with apt)"
    r = subprocess.run([str(venv_bin("python")), "-c", "import channels_redis"], capture_output=True)
    return None if r.returncode == 0 else "channels_redis is not in bench/.venv (run bash bench/setup.sh)"


def django_redis_cmd(port: int) -> Tuple[List[str], Path]:
    # Redis is started here, in the server's process group: it is pinned to
    # the same core, counted in the server's memory and stopped with it.
    rport = free_port()
    daphne = venv_bin("daphne")
    script = (
        f"redis-server --port {rport} --bind 127.0.0.1 --save '' --appendonly no --loglevel warning & "
        f"for i in $(seq 100); do redis-cli -p {rport} ping >/dev/null 2>&1 && break; sleep 0.05; done; "
        f"export DJPEER_REDIS_URL=redis://127.0.0.1:{rport}/0; "
        f"exec {daphne} -v 0 -e tcp:port={port}:interface=127.0.0.1:backlog=1024 djpeer.asgi:application"
    )
    return (["bash", "-c", script], BENCH / "peers" / "django_channels")


SERVERS: Dict[str, Server] = {s.name: s for s in [
    Server("hornbeam-erlang", "phoenix", True, "Hornbeam, Erlang channel bench/peers/hornbeam/bench_channel.erl",
           compile_bench_channel, hornbeam_erlang_cmd),
    # The same with metrics counting on (metrics_bind on an ephemeral port,
    # nobody scraping): run both in one --repeat run to see what counting costs.
    Server("hornbeam-erlang-metrics", "phoenix", True,
           "hornbeam-erlang with metrics_bind (counting on; the metrics port is not scraped)",
           compile_bench_channel,
           lambda port: hornbeam_erlang_cmd(port, ", metrics_bind => \"127.0.0.1:0\"")),
    Server("hornbeam-python", "phoenix", True, "Hornbeam, Python channel bench/peers/hornbeam/bench_app.py (bin/hornbeam run)",
           hornbeam_python_check, hornbeam_python_cmd, scenarios=COMMON_SCENARIOS + ("blocking",)),
    Server("hornbeam-python-tuned", "phoenix", True,
           f"hornbeam-python with {BEST_SETTINGS} (HORNBEAM_PY_BEST): the blocking scenario's best settings",
           hornbeam_python_check, hornbeam_python_tuned_cmd, scenarios=("blocking",)),
    Server("rust-fanout", "json", False, "tokio-tungstenite fan-out server (native/hornbeam_bench), the machine's ceiling",
           lambda: need(RUST_SERVER),
           lambda port: ([str(RUST_SERVER), "--bind", f"127.0.0.1:{port}"], ROOT)),
    Server("node-socketio", "socketio", False, "socket.io on Node (bench/peers/node/server.js)",
           lambda: (None if shutil.which("node") else "node not found")
           or need(BENCH / "peers" / "node" / "node_modules" / "socket.io"),
           lambda port: (["node", str(BENCH / "peers" / "node" / "server.js"), str(port)], ROOT)),
    Server("python-socketio", "socketio", False, "python-socketio on uvicorn (ASGI, uvloop)",
           no_venv,
           lambda port: ([str(venv_bin("uvicorn")), "app:app", "--host", "127.0.0.1", "--port", str(port),
                          "--log-level", "warning", "--no-access-log", "--backlog", "1024"],
                         BENCH / "peers" / "python_socketio")),
    Server("django-channels", "json", False, "Django Channels on daphne, in-memory channel layer",
           no_venv, daphne_cmd),
    Server("django-channels-sync", "json", False,
           "Django Channels on daphne, the same logic as a sync consumer (JsonWebsocketConsumer)",
           no_venv, daphne_cmd, env={"DJPEER_CONSUMER": "sync"}, scenarios=("blocking",)),
    Server("django-channels-redis", "json", False,
           "Django Channels on daphne, channels_redis layer and a Redis server on the same core",
           django_redis_check, django_redis_cmd),
    Server("python-websockets", "json", False, "plain Python websockets server (uvloop)",
           no_venv,
           lambda port: ([str(venv_bin("python")), str(BENCH / "peers" / "python_websockets" / "server.py"),
                          str(port)], ROOT)),
]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Running:
    def __init__(self, server: Server, proc: subprocess.Popen, port: int, log: Path):
        self.server, self.proc, self.port, self.log = server, proc, port, log

    def stop(self) -> None:
        """SIGTERM to the server's process group (it was started in its own session), then SIGKILL."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        # Whatever it left in its group (workers) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def start_server(server: Server, pin: List[str], tag: str) -> Tuple[Optional[Running], Optional[str]]:
    port = free_port()
    cmd, cwd = server.command(port)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{server.name}-{tag}.log"
    env = dict(os.environ, **server.env)
    with open(log, "w") as out:
        proc = subprocess.Popen(pin + cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    running = Running(server, proc, port, log)
    if not wait_port(port, proc, timeout=60):
        running.stop()
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        return None, f"did not start listening on {port}: " + " | ".join(tail)
    time.sleep(0.5)  # let it finish booting (workers, lifespan) before the load
    return running, None


# --- profiles --------------------------------------------------------------------

# Each scenario: a list of (label, size value, loadgen options).
PROFILES: Dict[str, Dict[str, Any]] = {
    "full": {
        "servers": list(SERVERS),
        "fanout": [(s, ["--subscribers", s, "--messages", "1000000", "--duration-ms", "10000"])
                   for s in ("1000", "5000", "10000")],
        "paced": [("1000", ["--subscribers", "1000", "--rate", "100", "--messages", "1000000",
                            "--duration-ms", "10000"])],
        "roundtrip": [(c, ["--clients", c, "--duration-ms", "6000", "--warmup-ms", "1000"])
                      for c in ("1", "100", "1000")],
        "idle": [(n, ["--conns", n, "--hold-ms", "15000", "--settle-ms", "3000", "--heartbeat-ms", "10000"])
                 for n in ("10000", "19500")],
        "presence": [(n, ["--clients", n, "--timeout-ms", "30000"]) for n in ("100", "1000", "2000")],
        "blocking": [("100", ["--clients", "100", "--event", "block", "--duration-ms", "6000", "--warmup-ms", "1000"])],
    },
    "quick": {
        "servers": list(SERVERS),
        "fanout": [("1000", ["--subscribers", "1000", "--messages", "1000000", "--duration-ms", "3000"])],
        "paced": [("1000", ["--subscribers", "1000", "--rate", "100", "--messages", "1000000",
                            "--duration-ms", "5000"])],
        "roundtrip": [("100", ["--clients", "100", "--duration-ms", "2500", "--warmup-ms", "500"])],
        "idle": [("2000", ["--conns", "2000", "--hold-ms", "3000", "--settle-ms", "1500"])],
        "presence": [("100", ["--clients", "100", "--timeout-ms", "10000"])],
        "blocking": [("100", ["--clients", "100", "--event", "block", "--duration-ms", "2500", "--warmup-ms", "500"])],
    },
    "smoke": {
        "servers": ["hornbeam-erlang", "hornbeam-python", "rust-fanout"],
        "fanout": [("50", ["--subscribers", "50", "--messages", "20", "--drain-ms", "2000"])],
        "paced": [("50", ["--subscribers", "50", "--rate", "20", "--messages", "1000", "--duration-ms", "800"])],
        "roundtrip": [("5", ["--clients", "5", "--duration-ms", "800", "--warmup-ms", "200"])],
        "idle": [("100", ["--conns", "100", "--hold-ms", "800", "--settle-ms", "300"])],
        "presence": [("10", ["--clients", "10", "--timeout-ms", "3000"])],
        "blocking": [("5", ["--clients", "5", "--event", "block", "--duration-ms", "800", "--warmup-ms", "200"])],
    },
}

# Servers that failed to start once are not tried again in the same run.
START_FAILED: Dict[str, str] = {}

SIZE_NAME = {"fanout": "subscribers", "paced": "subscribers (paced)", "roundtrip": "clients", "idle": "connections", "presence": "clients",
             "blocking": "clients"}
# The load generator option that carries a scenario's size (for --sizes).
SIZE_OPT = {"fanout": "--subscribers", "paced": "--subscribers", "roundtrip": "--clients", "idle": "--conns", "presence": "--clients",
            "blocking": "--clients"}


def with_sizes(cells: List[Tuple[str, List[str]]], scenario: str, sizes: List[str]) -> List[Tuple[str, List[str]]]:
    """The profile's first cell of a scenario, once per size in `sizes` (the other options kept)."""
    _, opts = cells[0]
    flag = SIZE_OPT[scenario]
    out = []
    for size in sizes:
        o = list(opts)
        o[o.index(flag) + 1] = size
        out.append((size, o))
    return out


# --- one run ---------------------------------------------------------------------


def run_one(server: Server, scenario: str, opts: List[str], pin_server: List[str], pin_load: List[str],
            tag: str, timeout: float) -> Dict[str, Any]:
    base = {"scenario": scenario, "server": server.name, "proto": server.proto}
    if scenario == "presence" and not server.presence:
        return dict(base, status="not_supported", error="this stack has no presence")
    if scenario not in server.scenarios:
        return dict(base, status="not_supported", error=f"{server.name} does not run {scenario}")
    if server.name in START_FAILED:
        return dict(base, status="skipped", error=START_FAILED[server.name])
    running, err = start_server(server, pin_server, tag)
    if running is None:
        # hornbeam-python is optional while its wiring is finished: unavailable → skipped.
        status = "skipped" if server.name.startswith("hornbeam-python") else "error"
        START_FAILED[server.name] = f"{server.name} could not start: {err}"
        return dict(base, status=status, error=START_FAILED[server.name])
    topic = "room:presence" if scenario == "presence" else "room:bench"
    cmd = pin_load + [str(LOADGEN), LOADGEN_SCENARIO.get(scenario, scenario), "--proto", server.proto, "--url", f"ws://127.0.0.1:{running.port}",
                      "--server", server.name, "--server-pid", str(running.proc.pid), "--topic", topic,
                      "--concurrency", "100"] + opts
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        line = next((l for l in reversed(r.stdout.splitlines()) if l.startswith("{")), None)
        if line is None:
            result = dict(base, status="error", error=f"load generator exited {r.returncode}: {r.stderr.strip()[-500:]}")
        else:
            result = json.loads(line)
    except subprocess.TimeoutExpired:
        result = dict(base, status="error", error=f"load generator timed out after {timeout:.0f}s")
    finally:
        alive = running.proc.poll() is None
        running.stop()
    if not alive:
        result["server_died"] = True
        result.setdefault("error", "the server exited during the run (see " + str(running.log.relative_to(ROOT)) + ")")
        if result.get("status") == "ok":
            result["status"] = "error"
    return result


def primary(scenario: str, result: Dict[str, Any]) -> Optional[float]:
    f = result.get("figures", {})
    if scenario == "paced":  # p99 publish->receive latency (lower is better)
        lat = f.get("latency")
        v = lat.get("p99_ms") if isinstance(lat, dict) else None
        return float(v) if isinstance(v, (int, float)) and result.get("status") == "ok" else None
    key = {"fanout": "delivered_per_s", "roundtrip": "replies_per_s", "idle": "server_kib_per_conn",
           "presence": "convergence_ms", "blocking": "replies_per_s"}[scenario]
    v = f.get(key)
    return float(v) if isinstance(v, (int, float)) and result.get("status") == "ok" else None


def pick_median(scenario: str, results: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in results if primary(scenario, r) is not None]
    if not ok:
        return results[-1]
    ok.sort(key=lambda r: primary(scenario, r))
    return ok[(len(ok) - 1) // 2]


# --- machine ---------------------------------------------------------------------


def sh(cmd: List[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> Dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    otp = sh(["erl", "-noshell", "-eval", "io:format(\"~s\", [erlang:system_info(otp_release)]), halt()."])
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1048576, 1),
        "kernel": platform.release(), "otp": otp, "python": platform.python_version(),
        "node": sh(["node", "--version"]), "rustc": sh(["rustc", "--version"]),
        "loadavg_at_start": os.getloadavg(),
        "fd_limit": sh(["bash", "-c", "ulimit -n"]),
    }


# --- report ----------------------------------------------------------------------


def fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    if isinstance(v, (int, float)):
        return f"{v:,.0f}" if abs(v) >= 100 or digits == 0 else f"{v:,.1f}"
    return str(v)


def cell(scenario: str, r: Optional[Dict[str, Any]]) -> str:
    if r is None:
        return ""
    st = r.get("status")
    if st == "not_supported":
        return "n/s"
    if st == "skipped":
        return "skipped"
    f = r.get("figures", {})
    lat = f.get("latency", {}) if isinstance(f.get("latency"), dict) else {}
    if st != "ok" and not f:
        return "error"
    bad = "" if st == "ok" else " ⚠"
    if scenario in ("fanout", "paced"):
        loss = f.get("delivery_ratio")
        loss_s = "" if loss == 1.0 else f", delivered {fmt(loss * 100 if loss is not None else None, 2)}%"
        return f"{fmt(f.get('delivered_per_s'))}/s, p50 {fmt(lat.get('p50_ms'), 1)} ms, p99 {fmt(lat.get('p99_ms'), 1)} ms{loss_s}{bad}"
    if scenario in ("roundtrip", "blocking"):
        return f"{fmt(f.get('replies_per_s'))}/s, p50 {fmt(lat.get('p50_ms'), 2)} ms, p99 {fmt(lat.get('p99_ms'), 2)} ms{bad}"
    if scenario == "idle":
        return (f"{fmt(f.get('server_kib_per_conn'), 1)} KiB/conn, {fmt(f.get('connections_per_s'))} conn/s, "
                f"{fmt(f.get('alive_at_end'))} open{bad}")
    if scenario == "presence":
        conv = f.get("convergence_ms")
        return (f"{fmt(conv, 0) + ' ms' if conv is not None else 'not converged'}, "
                f"{fmt(f.get('bytes_from_server'))} B{bad}")
    return st or ""


def find(results: List[Dict[str, Any]], scenario: str, size: str, server: str) -> Optional[Dict[str, Any]]:
    for r in results:
        if r["scenario"] == scenario and r["size"] == size and r["server"] == server:
            return r["result"]
    return None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


def targets(results: List[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    """(claim, measured, verdict) for each target the product claims."""
    out = []

    def prim(scn, size, server):
        r = find(results, scn, size, server)
        return primary(scn, r) if r else None

    def p99(scn, size, server):
        r = find(results, scn, size, server)
        return (r or {}).get("figures", {}).get("latency", {}).get("p99_ms") if r and r.get("status") == "ok" else None

    for hb in HORNBEAM:
        d = prim("fanout", "5000", hb)
        if d is None:
            continue
        sio, rust, lat = prim("fanout", "5000", "node-socketio"), prim("fanout", "5000", "rust-fanout"), p99("fanout", "5000", hb)
        r1, r2 = ratio(d, sio), ratio(d, rust)
        out.append((f"fan-out 5,000 subs ({hb}): ≥ 1.2× Socket.IO (Node) delivered/s",
                    f"{fmt(r1, 2)}×" if r1 else "no Socket.IO figure", verdict(r1, lambda x: x >= 1.2)))
        out.append((f"fan-out 5,000 subs ({hb}): ≥ 0.8× raw Rust ceiling",
                    f"{fmt(r2, 2)}×" if r2 else "no Rust figure", verdict(r2, lambda x: x >= 0.8)))
        out.append((f"fan-out 5,000 subs ({hb}): p99 < 100 ms", f"{fmt(lat, 1)} ms", verdict(lat, lambda x: x < 100)))
    # issue 14
    for hb in HORNBEAM:
        d, rust = prim("fanout", "5000", hb), prim("fanout", "5000", "rust-fanout")
        r = ratio(d, rust)
        if d is not None:
            out.append((f"fan-out 5,000 subs ({hb}): ≥ 0.5× the batched raw Rust server",
                        f"{fmt(r, 2)}×" if r else "no Rust figure", verdict(r, lambda x: x >= 0.5)))
        pr = find(results, "paced", "1000", hb)
        if pr is not None and pr.get("status") != "not_supported":
            f = pr.get("figures", {})
            lat = prim("paced", "1000", hb)
            kept = pr.get("status") == "ok" and f.get("lost") == 0 and f.get("delivery_ratio") == 1.0
            out.append((f"fan-out 1,000 subs × 100 msg/s ({hb}): nothing lost, p99 < 50 ms",
                        f"p99 {fmt(lat, 1)} ms, lost {fmt(f.get('lost'))}",
                        verdict(lat, lambda x: x < 50) if kept else "**not met**"))
    erl_rt, rust_rt = prim("roundtrip", "100", "hornbeam-erlang"), prim("roundtrip", "100", "rust-fanout")
    r_rt = ratio(erl_rt, rust_rt)
    if erl_rt is not None:
        out.append(("round trips, 100 clients (hornbeam-erlang): ≥ 0.6× the raw Rust server",
                    f"{fmt(r_rt, 2)}×" if r_rt else "no Rust figure", verdict(r_rt, lambda x: x >= 0.6)))
    py_rt, pyws = prim("roundtrip", "100", "hornbeam-python"), prim("roundtrip", "100", "python-websockets")
    r_pw = ratio(py_rt, pyws)
    if py_rt is not None:
        out.append(("round trips, 100 clients (hornbeam-python): ≥ 1× python websockets",
                    f"{fmt(r_pw, 2)}×" if r_pw else "no python-websockets figure", verdict(r_pw, lambda x: x >= 1)))
    for hb in HORNBEAM:
        kib = prim("idle", "10000", hb)
        if kib is not None:
            out.append((f"idle 10,000 connections ({hb}): ≤ 11 KiB server memory per connection",
                        f"{fmt(kib, 1)} KiB", verdict(kib, lambda x: x <= 11)))
    py = prim("roundtrip", "100", "hornbeam-python")
    r_sio, r_dj = ratio(py, prim("roundtrip", "100", "python-socketio")), ratio(py, prim("roundtrip", "100", "django-channels"))
    out.append(("Python round trips/s, 100 clients: ≥ 3× python-socketio",
                f"{fmt(r_sio, 2)}×" if r_sio else "hornbeam-python not measured" if py is None else "no peer figure",
                verdict(r_sio, lambda x: x >= 3)))
    out.append(("Python round trips/s, 100 clients: ≥ 10× Django Channels",
                f"{fmt(r_dj, 2)}×" if r_dj else "hornbeam-python not measured" if py is None else "no peer figure",
                verdict(r_dj, lambda x: x >= 10)))
    for hb in HORNBEAM:
        kib = prim("idle", "10000", hb)
        if kib is not None:
            out.append((f"idle 10,000 connections ({hb}): ≤ 15 KiB server memory per connection",
                        f"{fmt(kib, 1)} KiB", verdict(kib, lambda x: x <= 15)))
        pr = find(results, "presence", "2000", hb)
        if pr is not None:
            conv = primary("presence", pr)
            measured = f"{fmt(conv, 0)} ms" if conv is not None else pr.get("status", "?") + (": " + pr.get("error", "") if pr.get("error") else "")
            out.append((f"presence, 2,000 joiners ({hb}): every view complete within 2 s", measured,
                        verdict(conv, lambda x: x <= 2000)))
    return out


def verdict(v: Optional[float], ok: Callable[[float], bool]) -> str:
    if v is None:
        return "not measured"
    return "**met**" if ok(v) else "**not met**"


def markdown(meta: Dict[str, Any], results: List[Dict[str, Any]], plot: Optional[str]) -> str:
    m = meta["machine"]
    lines = [f"# Benchmark {meta['date']} ({meta['profile']})", ""]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
                 f"OTP {m['otp']}, Python {m['python']}, Node {m['node']}, {m['rustc']}. "
                 f"Load average at start: {', '.join('%.2f' % x for x in m['loadavg_at_start'])}.")
    lines.append(f"Pinning: server `{' '.join(meta['pin_server']) or 'none'}`, load generator "
                 f"`{' '.join(meta['pin_load']) or 'none'}`. Runs per cell: {meta['repeat']} (median shown). "
                 "n/s = not supported by that stack; ⚠ = the run reported an error (see the JSON).")
    if meta.get("window", 2) != 2:
        lines.append(f"Fan-out publisher window: {meta['window']} messages in flight (default 2).")
    lines.append("")
    skipped = meta.get("skipped", {})
    if skipped:
        lines.append("Skipped servers: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
        lines.append("")
    servers = meta["servers"]
    for scn in meta["scenarios"]:
        sizes = meta["sizes"][scn]
        if not sizes:
            continue
        lines += [f"## {scn}", "", "| server | " + " | ".join(f"{SIZE_NAME[scn]} {s}" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for srv in servers:
            if scn not in SERVERS[srv].scenarios:
                continue  # a variant for other scenarios only
            lines.append(f"| {srv} | " + " | ".join(cell(scn, find(results, scn, s, srv)) for s in sizes) + " |")
        lines.append("")
        # Ratios hornbeam / peer on the scenario's main figure.
        key = {"fanout": "delivered/s", "paced": "p99 latency (lower is better)", "roundtrip": "replies/s", "idle": "KiB per connection (lower is better)",
               "presence": "convergence time (lower is better)", "blocking": "replies/s"}[scn]
        rows = []
        for hb in HORNBEAM:
            if hb not in servers:
                continue
            for peer in servers:
                if peer in HORNBEAM:
                    continue
                cells = []
                for s in sizes:
                    a, b = find(results, scn, s, hb), find(results, scn, s, peer)
                    rt = ratio(primary(scn, a) if a else None, primary(scn, b) if b else None)
                    cells.append(f"{rt:.2f}×" if rt else "–")
                if any(c != "–" for c in cells):
                    rows.append(f"| {hb} / {peer} | " + " | ".join(cells) + " |")
        if rows:
            lines += [f"Ratio hornbeam / peer, {key}:", "", "| | " + " | ".join(sizes) + " |",
                      "|---|" + "---|" * len(sizes)] + rows + [""]
    lines += ["## Targets", "", "| claim | measured | verdict |", "|---|---|---|"]
    for claim, measured, v in targets(results):
        lines.append(f"| {claim} | {measured} | {v} |")
    lines.append("")
    if plot:
        lines += [f"![fan-out p99 latency vs subscribers]({plot})", ""]
    return "\n".join(lines)


def make_plot(json_path: Path, png_path: Path) -> Optional[str]:
    py = venv_bin("python")
    if not py.exists():
        return "bench/.venv is missing (run bash bench/setup.sh): no plot"
    r = subprocess.run([str(py), str(BENCH / "plot.py"), str(json_path), str(png_path)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return "plot failed: " + (r.stderr or r.stdout).strip()[-300:]
    return None


def update_readme(md_table: str) -> None:
    readme = BENCH / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    start, end = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        readme.write_text(before + start + "\n" + md_table.strip() + "\n" + end + after)


# --- main ------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--servers", help="comma list (default: the profile's); known: " + ", ".join(SERVERS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of " + ", ".join(SCENARIOS))
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell, server order rotated each round")
    ap.add_argument("--out", help="directory for the results (default bench/results; smoke: _build/bench_smoke)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and load generator with taskset")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per load generator run")
    ap.add_argument("--sizes", help="comma list of sizes replacing the profile's for every chosen scenario "
                                    "(subscribers, clients or connections), e.g. --sizes 1000,5000")
    ap.add_argument("--window", type=int, default=2,
                    help="fan-out publisher window: messages in flight before waiting for delivery (default 2; "
                         "a deeper window lets servers batch writes, see README)")
    args = ap.parse_args(argv)

    profile = dict(PROFILES[args.profile])
    if args.window < 1:
        ap.error("--window takes a positive integer")
    if args.sizes:
        sizes = [s for s in args.sizes.split(",") if s]
        if not sizes or not all(s.isdigit() and int(s) > 0 for s in sizes):
            ap.error("--sizes takes positive integers, e.g. --sizes 1000,5000")
        for scn in SCENARIOS:
            profile[scn] = with_sizes(profile[scn], scn, sizes)
    if args.window != 2:
        profile["fanout"] = [(label, opts + ["--window", str(args.window)]) for label, opts in profile["fanout"]]
    servers = args.servers.split(",") if args.servers else list(profile["servers"])
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        ap.error("unknown server(s): " + ", ".join(unknown))
    scenarios = [s for s in args.scenarios.split(",") if s]
    if any(s not in SCENARIOS for s in scenarios):
        ap.error("unknown scenario in " + args.scenarios)
    if not LOADGEN.exists():
        print(f"run.py: {LOADGEN.relative_to(ROOT)} is missing: cargo build --release -p hornbeam_bench",
              file=sys.stderr)
        return 2

    pin_server: List[str] = []
    pin_load: List[str] = []
    if not args.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        pin_server, pin_load = ["taskset", "-c", "0"], ["taskset", "-c", "1"]

    skipped: Dict[str, str] = {}
    available = []
    for name in servers:
        why = SERVERS[name].check()
        if why:
            skipped[name] = why
            print(f"run.py: skipping {name}: {why}", file=sys.stderr)
        else:
            available.append(name)

    now = dt.datetime.now()
    stamp = now.strftime("%Y-%m-%dT%H%M")
    out_dir = Path(args.out) if args.out else (ROOT / "_build" / "bench_smoke" if args.profile == "smoke"
                                               else BENCH / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    base = stamp if args.profile == "full" else f"{stamp}-{args.profile}"
    # Two runs in one minute must not overwrite each other.
    n = 2
    while (out_dir / f"{base}.json").exists():
        base = (stamp if args.profile == "full" else f"{stamp}-{args.profile}") + f"-{n}"
        n += 1
    meta = {"date": now.isoformat(timespec="seconds"), "profile": args.profile, "machine": machine(),
            "pin_server": pin_server, "pin_load": pin_load, "repeat": args.repeat, "window": args.window, "servers": servers,
            "scenarios": scenarios, "skipped": skipped,
            "sizes": {s: [label for label, _ in profile[s]] for s in scenarios},
            "servers_described": {n: SERVERS[n].describe for n in servers}}

    results: List[Dict[str, Any]] = []
    t_start = time.time()
    for scn in scenarios:
        for label, opts in profile[scn]:
            runs: Dict[str, List[Dict[str, Any]]] = {n: [] for n in available}
            for rnd in range(args.repeat):
                order = available[rnd % max(1, len(available)):] + available[:rnd % max(1, len(available))]
                for name in order:
                    t0 = time.time()
                    res = run_one(SERVERS[name], scn, opts, pin_server, pin_load, f"{scn}-{label}-{rnd}",
                                  args.timeout)
                    runs[name].append(res)
                    print(f"[{time.time() - t_start:6.0f}s] {scn:9} {SIZE_NAME[scn]}={label:<6} {name:18} "
                          f"{res.get('status'):13} {cell(scn, res)}  ({time.time() - t0:.0f}s)"
                          + (f"  {res.get('error')}" if res.get("status") not in ("ok",) and res.get("error") else ""),
                          file=sys.stderr, flush=True)
            for name in servers:
                if name in skipped:
                    res = {"scenario": scn, "server": name, "status": "skipped", "error": skipped[name]}
                    results.append({"scenario": scn, "size": label, "server": name, "result": res, "runs": []})
                    continue
                chosen = pick_median(scn, runs[name])
                results.append({"scenario": scn, "size": label, "server": name, "result": chosen,
                                "runs": runs[name] if args.repeat > 1 else []})
    meta["elapsed_s"] = round(time.time() - t_start, 1)

    json_path = out_dir / f"{base}.json"
    json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    png_path = out_dir / f"{base}-fanout-p99.png"
    plot_note = None
    plot_rel = None
    if "fanout" in scenarios and args.profile != "smoke":
        plot_note = make_plot(json_path, png_path)
        if plot_note is None:
            plot_rel = png_path.name
    md = markdown(meta, results, plot_rel)
    if plot_note:
        md += f"\n({plot_note})\n"
    md_path = out_dir / f"{base}.md"
    md_path.write_text(md)
    if args.profile == "full" and not args.servers and args.out is None:
        # The README lives one folder up from the results: point the plot there.
        body = md.split("\n", 2)[2] if md.count("\n") > 2 else md
        if plot_rel:
            body = body.replace(f"]({plot_rel})", f"](results/{plot_rel})")
        update_readme(f"From `results/{md_path.name}`:\n\n" + body)
    print(md)
    print(f"run.py: wrote {json_path} and {md_path} in {meta['elapsed_s']}s", file=sys.stderr)

    # For CI (smoke): fail when a Hornbeam run that could start did not work.
    failed = [r for r in results if r["server"] in HORNBEAM and r["result"].get("status") == "error"]
    if args.profile == "smoke" and failed:
        for r in failed:
            print(f"run.py: {r['server']} {r['scenario']}: {r['result'].get('error')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
