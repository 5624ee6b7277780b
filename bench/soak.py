#!/usr/bin/env python3
"""Fault-injection soak on a 2-node Hornbeam cluster (`make soak`, `make soak-ci`).

Starts two real nodes (`bin/hornbeam run` with --name/--join) serving the
benchmark's Python channel module, runs the load generator's `soak`
scenario against both (native/hornbeam_bench: users chatting with presence,
reconnecting when dropped), injects faults on a schedule, and writes a JSON
and a Markdown report: replies lost for clients that stayed connected,
recovery time after each fault, RSS per node at start and end, presence
converged at the end. See bench/README.md ("Soak").

Faults (``--faults``, comma-separated ``KIND@FRACTION:NODE``, FRACTION of the
load duration, NODE ``a`` (the seed) or ``b`` (joined to a)):

* ``worker``: kill -9 of one hornbeam_worker OS process of the node;
* ``pubsub``: exit(whereis(hornbeam_pubsub), kill) inside the node;
* ``restart``: the node killed (``--restart-signal``, KILL by default) and
  started again the same way as at first.

Standard library only. Exit status 0 when every verdict is met, 1 when one
is not, 2 when the soak could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target" / "release" / "hornbeam_bench"
DEFAULT_FAULTS = "worker@0.25:a,pubsub@0.45:b,restart@0.65:a"


def now_ms() -> int:
    return int(time.time() * 1000)


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --- /proc -----------------------------------------------------------------------

def children_map() -> Dict[int, List[int]]:
    kids: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def tree(root: int) -> List[int]:
    kids, out, stack = children_map(), [], [root]
    while stack:
        pid = stack.pop()
        if pid in out or not Path(f"/proc/{pid}").exists():
            continue
        out.append(pid)
        stack.extend(kids.get(pid, []))
    return out


def group_alive(pgid: int) -> bool:
    """Whether a process of group pgid is still there (zombies included)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2:].split()[2]) == pgid:
            return True
    return False


def proc_state(pid: int) -> str:
    """'gone', or the state letter of /proc/<pid>/stat ('Z' for a zombie nobody reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return "state " + stat[stat.rfind(")") + 2:].split()[0]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_kib(root: int) -> int:
    total = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


# --- nodes -----------------------------------------------------------------------

_COOKIE_FROM_ENV: Optional[bool] = None


def cookie_from_env() -> bool:
    """Whether this build's CLI takes the cookie from HORNBEAM_COOKIE (and refuses --cookie,
    which would show it in `ps`), or still wants --cookie."""
    global _COOKIE_FROM_ENV
    if _COOKIE_FROM_ENV is None:
        out = subprocess.run([str(ROOT / "bin" / "hornbeam"), "run", "--help"], capture_output=True,
                             text=True, timeout=60).stdout
        _COOKIE_FROM_ENV = "--cookie-file" in out
    return _COOKIE_FROM_ENV


class Node:
    """One `bin/hornbeam run` node, in its own process group."""

    def __init__(self, label: str, index: int, args: argparse.Namespace, cookie: str, out: Path,
                 join: Optional["Node"] = None):
        self.label, self.index, self.cookie, self.join = label, index, cookie, join
        self.port = free_port()
        self.name = f"soak_{label}_{os.getpid()}@127.0.0.1"
        self.workers = args.workers
        self.log_path = out / f"node_{label}.log"
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.starts = 0

    def command(self) -> List[str]:
        cmd = [str(ROOT / "bin" / "hornbeam"), "run", "bench_app:app",
               "--pythonpath", str(ROOT / "bench" / "peers" / "hornbeam"), "--channel-module", "bench_app",
               "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
               "--name", self.name]
        if not cookie_from_env():
            cmd += ["--cookie", self.cookie]
        if self.join is not None:
            cmd += ["--join", self.join.name]
        return cmd

    def start(self, timeout: float = 90.0) -> bool:
        self.starts += 1
        with open(self.log_path, "a") as f:
            f.write(f"\n=== soak: start #{self.starts} at {now_ms()}: {' '.join(self.command())}\n")
            f.flush()
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env=dict(os.environ, HORNBEAM_COOKIE=self.cookie))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            if port_open(self.port):
                return True
            time.sleep(0.1)
        return False

    def kill(self, sig: int) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Workers left in the group go too, and the VM must be gone (its
        # port free) before the node is started again.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        poll("old node gone", lambda: not group_alive(pid) and not port_open(self.port), 30, 0.05)

    def rss_kib(self) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return None
        return rss_kib(self.proc.pid)

    def worker_pids(self) -> List[int]:
        if self.proc is None:
            return []
        return sorted(p for p in tree(self.proc.pid) if comm(p) == "hornbeam_worker")


class Ctl:
    """Runs bench/soak_ctl.erl in a short hidden node (hidden: it must not link the nodes)."""

    def __init__(self, cookie: str, out: Path):
        self.cookie, self.ebin, self.n = cookie, out / "ebin", 0
        self.ebin.mkdir(parents=True, exist_ok=True)
        subprocess.run(["erlc", "-o", str(self.ebin), str(ROOT / "bench" / "soak_ctl.erl")], check=True)
        self.lock = threading.Lock()

    def __call__(self, node: Node, *args: str, timeout: float = 30.0) -> str:
        with self.lock:
            self.n += 1
            me = f"soakctl_{os.getpid()}_{self.n}@127.0.0.1"
        cmd = ["erl", "-noshell", "-hidden", "-name", me, "-setcookie", self.cookie, "-pa", str(self.ebin),
               "-run", "soak_ctl", "main", node.name, *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            return r.stdout.strip() or f"error (exit {r.returncode}) {r.stderr.strip()[-200:]}"
        except subprocess.TimeoutExpired:
            return "error timeout"

    def peers(self, node: Node) -> List[str]:
        out = self(node, "nodes")
        return out.split()[1:] if out.startswith("ok") else []

    def whereis(self, node: Node, name: str) -> str:
        out = self(node, "whereis", name)
        return out[3:] if out.startswith("ok ") else out


def poll(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.5) -> Optional[int]:
    """ms until check() is true, or None after timeout."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if check():
                return int((time.time() - t0) * 1000)
        except Exception as e:  # a check that fails is "not yet"; say why in the log
            log(f"{what}: {e}")
        time.sleep(interval)
    return None


# --- faults ----------------------------------------------------------------------

def parse_faults(spec: str) -> List[Dict[str, Any]]:
    faults = []
    for item in filter(None, spec.split(",")):
        try:
            kind, rest = item.split("@")
            frac, node = rest.split(":")
            f = float(frac)
        except ValueError:
            raise SystemExit(f"soak: bad --faults item {item!r} (expected KIND@FRACTION:NODE)")
        if kind not in ("worker", "pubsub", "restart") or node not in ("a", "b") or not 0 < f < 1:
            raise SystemExit(f"soak: bad --faults item {item!r}: KIND worker|pubsub|restart, "
                             "0 < FRACTION < 1, NODE a|b")
        faults.append({"kind": kind, "fraction": f, "node": node})
    return sorted(faults, key=lambda x: x["fraction"])


class Watch(threading.Thread):
    """Follows what a fault did to the node, off the main loop: notes land in fault["notes"]."""

    def __init__(self, fault: Dict[str, Any], fn: Callable[[Dict[str, Any]], None]):
        super().__init__(daemon=True)
        self.fault, self.fn = fault, fn
        self.start()

    def run(self) -> None:
        try:
            self.fn(self.fault)
        except Exception as e:
            self.fault["notes"].append(f"watch failed: {e}")


def inject(fault: Dict[str, Any], node: Node, other: Node, ctl: Ctl, args: argparse.Namespace,
           watches: List[Watch]) -> None:
    fault.update({"t_ms": now_ms(), "node_index": node.index, "notes": []})
    kind = fault["kind"]
    if kind == "worker":
        pids = node.worker_pids()
        if not pids:
            fault["what"] = f"kill -9 of a Python worker on node {node.label}"
            fault["notes"].append("no hornbeam_worker process found")
            return
        os.kill(pids[0], signal.SIGKILL)
        fault["what"] = f"kill -9 of Python worker pid {pids[0]} on node {node.label}"
        fault["workers_before"] = pids

        def worker_back(f: Dict[str, Any]) -> None:
            time.sleep(1)
            f["notes"].append(f"workers before {pids}, 1 s after {node.worker_pids()}; "
                              f"pid {pids[0]} is {proc_state(pids[0])} 1 s after")
            ms = poll("workers", lambda: len([p for p in node.worker_pids() if p != pids[0]]) >= node.workers,
                      args.fault_watch_s)
            f["worker_replaced_ms"] = ms
            f["notes"].append(f"worker count back to {node.workers} after {soak_report.fmt_ms(ms)}")
        watches.append(Watch(fault, worker_back))
    elif kind == "pubsub":
        out = ctl(node, "kill", "hornbeam_pubsub")
        fault["what"] = f"hornbeam_pubsub killed on node {node.label}"
        words = out.split()
        old = words[1] if out.startswith("ok ") else None
        if len(words) == 3 and words[2].isdigit():
            fault["t_ms"] = int(words[2])  # the moment of the kill, not of the helper node's start
        fault["notes"].append(f"kill: {out}")

        def relay_back(f: Dict[str, Any]) -> None:
            ms = poll("relay", lambda: ctl.whereis(node, "hornbeam_pubsub") not in ("undefined", old),
                      args.fault_watch_s, interval=1.0)
            f["relay_back_ms"] = ms
            f["notes"].append(f"new relay process after {soak_report.fmt_ms(ms)}")
            listening = "accepting" if port_open(node.port) else "NOT accepting"
            f["notes"].append(f"listener {listening} {(now_ms() - f['t_ms']) / 1000:.0f} s after the kill")
        watches.append(Watch(fault, relay_back))
    else:
        sig = signal.SIGKILL if args.restart_signal == "KILL" else signal.SIGTERM
        fault["what"] = f"node {node.label} restarted (SIG{args.restart_signal})"
        node.kill(sig)
        down_ms = now_ms()
        ok = node.start()
        fault["serving_ms"] = now_ms() - fault["t_ms"] if ok else None
        fault["notes"].append(f"down {down_ms - fault['t_ms']} ms, listening again after "
                              f"{soak_report.fmt_ms(fault['serving_ms'])}")
        node.restarted = True  # type: ignore[attr-defined]

        def cluster_back(f: Dict[str, Any]) -> None:
            ms = poll("cluster", lambda: other.name in ctl.peers(node) and node.name in ctl.peers(other),
                      args.fault_watch_s, interval=1.0)
            f["cluster_reformed_ms"] = None if ms is None else ms + (f["serving_ms"] or 0)
            f["notes"].append("nodes see each other again after "
                              f"{soak_report.fmt_ms(f['cluster_reformed_ms'])}"
                              + ("" if ms is not None else f" (watched {args.fault_watch_s:g} s)"))
        watches.append(Watch(fault, cluster_back))


# --- presence at the end -----------------------------------------------------------

def check_presence(nodes: List[Node], ctl: Ctl, state: Dict[str, Any], out: Path,
                   timeout: float) -> Dict[str, Any]:
    rooms: Dict[str, List[str]] = state["rooms"]
    topics = out / "topics.txt"
    topics.write_text("".join(t + "\n" for t in rooms))
    result: Dict[str, Any] = {}

    def listed(node: Node) -> Optional[Dict[str, List[str]]]:
        text = ctl(node, "presence", str(topics), timeout=60)
        if text.startswith(("down", "error")):
            result.setdefault("errors", {})[node.label] = text[:300]
            return None
        got = {}
        for line in text.splitlines():
            topic, _, keys = line.partition("\t")
            got[topic] = [k for k in keys.split(",") if k]
        return got

    def mismatches() -> Dict[str, Dict[str, Any]]:
        bad: Dict[str, Dict[str, Any]] = {}
        for node in nodes:
            got = listed(node)
            if got is None:
                bad[node.label] = {"(node)": {"missing": "unreachable", "extra": ""}}
                continue
            for topic, want in rooms.items():
                have = set(got.get(topic, []))
                if have != set(want):
                    bad.setdefault(node.label, {})[topic] = {
                        "missing": sorted(set(want) - have)[:10], "extra": sorted(have - set(want))[:10]}
        return bad

    t0 = time.time()
    while True:
        bad = mismatches()
        if not bad or time.time() - t0 > timeout:
            break
        time.sleep(2)
    waited = int((time.time() - t0) * 1000)
    users = sum(len(v) for v in rooms.values())
    if not bad:
        result.update(converged=True, after_ms=waited,
                      summary=f"both nodes list exactly the {users:,} connected users of the {len(rooms)} rooms "
                              f"(checked {waited:,} ms after the clients settled)")
    else:
        per = {label: len(r) for label, r in bad.items()}
        result.update(converged=False, after_ms=waited, mismatches=bad,
                      summary="rooms whose presence list differs from the connected users after "
                              f"{waited:,} ms: " + ", ".join(f"node {k}: {v} of {len(rooms)}" for k, v in per.items()))
    return result


# --- the run -----------------------------------------------------------------------

def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine() -> str:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, load average at start {', '.join(f'{x:.2f}' for x in os.getloadavg())}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="load duration in minutes (default 10)")
    p.add_argument("--users", type=int, default=2000, help="simulated users (default 2000)")
    p.add_argument("--room-size", type=int, default=10, help="users per room (default 10)")
    p.add_argument("--interval-ms", type=int, default=5000, help="mean time between a user's messages")
    p.add_argument("--publish-pct", type=int, default=50, help="share of messages broadcast to the room")
    p.add_argument("--churn-permille", type=int, default=10,
                   help="per message, chance in 1/1000 that the user disconnects and comes back instead")
    p.add_argument("--call-timeout-ms", type=int, default=10000, help="a reply later than this is lost")
    p.add_argument("--ramp-s", type=float, default=10.0, help="users connect over this many seconds")
    p.add_argument("--workers", type=int, default=2, help="Python workers per node (default 2)")
    p.add_argument("--faults", default=DEFAULT_FAULTS, help=f"schedule (default {DEFAULT_FAULTS})")
    p.add_argument("--restart-signal", choices=("KILL", "TERM"), default="KILL")
    p.add_argument("--fault-watch-s", type=float, default=30.0,
                   help="how long the driver follows a fault's own signs of healing")
    p.add_argument("--presence-timeout-s", type=float, default=30.0,
                   help="how long the nodes' presence lists may take to match the connected users")
    p.add_argument("--rss-noise-pct", type=float, default=25.0, help="RSS growth counted as noise")
    p.add_argument("--out-dir", default=str(ROOT / "_build" / "soak"), help="where the report goes")
    p.add_argument("--tag", default="", help="added to the report's file name")
    args = p.parse_args(argv)
    faults = parse_faults(args.faults)
    if not LOADGEN.exists():
        log(f"{LOADGEN} is missing: cargo build --release -p hornbeam_bench")
        return 2

    started = dt.datetime.now().strftime("%Y-%m-%dT%H%M")
    out = Path(args.out_dir)
    run_dir = ROOT / "_build" / "soak" / f"{started}{args.tag}"  # logs, state, the full timeline
    run_dir.mkdir(parents=True, exist_ok=True)
    cookie = secrets.token_hex(16)
    ctl = Ctl(cookie, run_dir)
    a = Node("a", 0, args, cookie, run_dir)
    b = Node("b", 1, args, cookie, run_dir, join=a)
    nodes = [a, b]
    duration_ms = int(args.minutes * 60_000)
    loadgen: Optional["subprocess.Popen[str]"] = None
    try:
        for n in nodes:
            if not n.start():
                log(f"node {n.label} did not start; see {n.log_path}")
                return 2
        if poll("cluster", lambda: a.name in ctl.peers(b), 30, interval=1.0) is None:
            log("the nodes did not form a cluster; see the node logs")
            return 2
        log(f"cluster up: a={a.name} :{a.port}, b={b.name} :{b.port}")

        state_file = run_dir / "state.json"
        lg_cmd = [str(LOADGEN), "soak", "--urls", f"ws://127.0.0.1:{a.port},ws://127.0.0.1:{b.port}",
                  "--users", str(args.users), "--room-size", str(args.room_size),
                  "--duration-ms", str(duration_ms), "--ramp-ms", str(int(args.ramp_s * 1000)),
                  "--interval-ms", str(args.interval_ms), "--publish-pct", str(args.publish_pct),
                  "--churn-permille", str(args.churn_permille), "--call-timeout-ms", str(args.call_timeout_ms),
                  "--state-file", str(state_file), "--hold-max-ms", "300000"]
        events: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        lg_log = open(run_dir / "loadgen.log", "w")
        loadgen = subprocess.Popen(lg_cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        t_start = now_ms()

        def read_events() -> None:
            assert loadgen is not None and loadgen.stderr is not None
            for line in loadgen.stderr:
                lg_log.write(line)
                lg_log.flush()
                try:
                    ev = json.loads(line)
                    if isinstance(ev, dict) and "soak" in ev:
                        events.put(ev)
                except ValueError:
                    pass
        threading.Thread(target=read_events, daemon=True).start()
        stdout_box: List[str] = []
        threading.Thread(target=lambda: stdout_box.append(loadgen.stdout.read()), daemon=True).start()  # type: ignore[union-attr]

        for f in faults:
            f["due_ms"] = t_start + int(f["fraction"] * duration_ms)
        pending = list(faults)
        watches: List[Watch] = []
        rss_samples: List[Dict[str, Any]] = []
        rss_start: Dict[str, Optional[int]] = {}
        holding = False
        next_sample = 0
        while not holding:
            if loadgen.poll() is not None:
                log("the load generator ended early; see loadgen.log")
                return 2
            t = now_ms()
            if t >= next_sample:
                next_sample = t + 5000
                rss_samples.append({"t_ms": t, **{n.label: n.rss_kib() for n in nodes}})
            if pending and t >= pending[0]["due_ms"]:
                f = pending.pop(0)
                if not rss_start:
                    rss_start = {n.label: n.rss_kib() for n in nodes}
                node = a if f["node"] == "a" else b
                log(f"fault: {f['kind']} on node {node.label} at {(t - t_start) / 1000:.1f} s")
                inject(f, node, b if node is a else a, ctl, args, watches)
                f["at_s"] = (f["t_ms"] - t_start) / 1000
            try:
                ev = events.get(timeout=0.2)
            except queue.Empty:
                continue
            log(json.dumps(ev))
            if ev["soak"] == "ramped" and not rss_start:
                time.sleep(3)
                rss_start = {n.label: n.rss_kib() for n in nodes}
            elif ev["soak"] == "holding":
                holding = True
        for f in pending:
            f.update({"t_ms": f["due_ms"], "node_index": 0 if f["node"] == "a" else 1,
                      "what": f"{f['kind']} on node {f['node']}", "at_s": f["fraction"] * duration_ms / 1000,
                      "notes": ["not injected: the load ended first"]})

        state = json.loads(state_file.read_text())
        presence = check_presence(nodes, ctl, state, run_dir, args.presence_timeout_s)
        rss_end = {n.label: n.rss_kib() for n in nodes}
        for w in watches:
            w.join(timeout=args.fault_watch_s + 30)
        assert loadgen.stdin is not None
        loadgen.stdin.close()
        loadgen.wait(timeout=60)
        time.sleep(0.5)
        report = json.loads(stdout_box[0]) if stdout_box and stdout_box[0].strip() else None
        if report is None:
            log("the load generator printed no report; see loadgen.log")
            return 2
    finally:
        if loadgen is not None and loadgen.poll() is None:
            loadgen.kill()
        for n in nodes:
            n.kill(signal.SIGTERM)

    timeline = report["figures"].pop("timeline")
    result: Dict[str, Any] = {
        "started": started, "commit": git_commit(), "machine": machine(), "workers": args.workers,
        "duration_s": duration_ms / 1000, "argv": sys.argv[1:], "rss_noise_pct": args.rss_noise_pct,
        "nodes": [{"label": n.label, "name": n.name, "port": n.port, "log": str(n.log_path.relative_to(ROOT))
                   if n.log_path.is_relative_to(ROOT) else str(n.log_path),
                   "rss_start_kib": rss_start.get(n.label), "rss_end_kib": rss_end.get(n.label),
                   "restarted": getattr(n, "restarted", False)} for n in nodes],
        "faults": faults, "presence": presence, "rss_samples": rss_samples, "loadgen": report,
    }
    soak_report.analyse(result, timeline, args.rss_noise_pct)
    (run_dir / "timeline.json").write_text(json.dumps(timeline, separators=(",", ":")))
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{started}-soak{args.tag}"
    base.with_suffix(".json").write_text(json.dumps(result, separators=(",", ":")))
    base.with_suffix(".md").write_text(soak_report.markdown(result))
    print(soak_report.markdown(result))
    log(f"report: {base}.json and {base}.md")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
