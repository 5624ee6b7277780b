#!/usr/bin/env python3
"""Scaling across cores: the server on N cores, the load generator on the rest.

    python3 bench/scale.py                          # make bench-scale: N = 1, 2, 4, ... (< cores)
    python3 bench/scale.py --cores 1,2,4,8 --loadgen-cores 8
    python3 bench/scale.py --servers hornbeam-erlang,hornbeam-python,rust-fanout --repeat 3

For every N the server is started afresh with `taskset -c 0-(N-1)` (Hornbeam's
VM then runs N schedulers, the Rust servers N threads; hornbeam-python gets
`--workers N` unless HORNBEAM_PY_WORKERS is set) and the load generator runs
with `taskset` on the next cores (all the others, or --loadgen-cores of them).
Scenarios: fan-out (S subscribers, closed loop with a publisher --window) and
round trips (C clients). Writes bench/results/<date>-scale.json (every raw
figure) and <date>-scale.md (the figure per N and the speed-up over N = 1).

Uses run.py's server table and its start/stop/run logic. Standard library only.
See bench/README.md ("Scaling across cores").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: servers, run_one, machine, primary, pick_median)

DEFAULT_SERVERS = ["hornbeam-erlang", "rust-fanout"]
SCENARIOS = ("fanout", "roundtrip")


def default_cores(cpus: int) -> List[int]:
    """1, 2, 4, ... while at least one core is left for the load generator."""
    out, n = [], 1
    while n < cpus:
        out.append(n)
        n *= 2
    return out


def pins(n: int, cpus: int, loadgen_cores: Optional[int]) -> tuple[List[str], List[str]]:
    last = cpus - 1 if loadgen_cores is None else min(cpus - 1, n + loadgen_cores - 1)
    server = ["taskset", "-c", "0" if n == 1 else f"0-{n - 1}"]
    load = ["taskset", "-c", str(n) if last == n else f"{n}-{last}"]
    return server, load


def scenario_opts(scn: str, args: argparse.Namespace) -> List[str]:
    if scn == "fanout":
        return ["--subscribers", str(args.subscribers), "--messages", "1000000",
                "--duration-ms", str(args.duration_ms), "--window", str(args.window)]
    return ["--clients", str(args.clients), "--duration-ms", str(args.duration_ms), "--warmup-ms", "500"]


def markdown(meta: Dict[str, Any], rows: List[Dict[str, Any]]) -> str:
    m = meta["machine"]
    cores = meta["cores"]
    lines = [f"# Scaling {meta['date']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; OTP {m['otp']}, {m['rustc']}. "
             f"Load average at start: {', '.join('%.2f' % x for x in m['loadavg_at_start'])}; "
             f"at the end: {', '.join('%.2f' % x for x in meta['loadavg_at_end'])}.",
             f"Server on cores 0..N-1, load generator on {meta['loadgen']}. Fan-out: {meta['subscribers']} "
             f"subscribers, publisher window {meta['window']}; round trips: {meta['clients']} clients. "
             f"Runs per cell: {meta['repeat']} (median shown). Cell: figure per second (speed-up over N = 1; "
             "server CPU, 100 = one core).", ""]
    for scn in meta["scenarios"]:
        unit = "delivered/s" if scn == "fanout" else "replies/s"
        lines += [f"## {scn} ({unit})", "", "| server | " + " | ".join(f"N = {n}" for n in cores) + " |",
                  "|---|" + "---|" * len(cores)]
        for name in meta["servers"]:
            base: Optional[float] = None
            cells = []
            for n in cores:
                row = next((r for r in rows if r["scenario"] == scn and r["server"] == name and r["n"] == n), None)
                res = row["result"] if row else {}
                v = run.primary(scn, res) if row else None
                if v is None:
                    cells.append(res.get("status", "–") if row else "–")
                    continue
                base = v if n == cores[0] else base
                cpu = res.get("figures", {}).get("server_cpu_pct")
                speed = f"{v / base:.2f}×" if base else "–"
                cells.append(f"{v:,.0f} ({speed}; cpu {cpu:.0f})" if isinstance(cpu, (int, float))
                             else f"{v:,.0f} ({speed})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", help="comma list of server core counts (default: 1, 2, 4, ... below the CPU count)")
    ap.add_argument("--loadgen-cores", type=int, help="cores for the load generator (default: all the others)")
    ap.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="comma list; known: " + ", ".join(run.SERVERS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of " + ", ".join(SCENARIOS))
    ap.add_argument("--subscribers", type=int, default=5000, help="fan-out subscribers (default 5000)")
    ap.add_argument("--window", type=int, default=2, help="fan-out publisher window (default 2)")
    ap.add_argument("--clients", type=int, default=100, help="round-trip clients (default 100)")
    ap.add_argument("--duration-ms", type=int, default=3000, help="measured time per run (default 3000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell, median reported (default 1)")
    ap.add_argument("--out", help="directory for the results (default bench/results)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per load generator run")
    args = ap.parse_args(argv)

    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        ap.error("needs at least 2 CPUs: one for the server, one for the load generator")
    try:
        cores = [int(c) for c in args.cores.split(",")] if args.cores else default_cores(cpus)
    except ValueError:
        ap.error("--cores takes integers, e.g. --cores 1,2,4")
    bad = [n for n in cores if n < 1 or n >= cpus]
    if bad:
        ap.error(f"--cores: each N must leave a core for the load generator (1 <= N < {cpus}): {bad}")
    if args.loadgen_cores is not None and args.loadgen_cores < 1:
        ap.error("--loadgen-cores takes a positive integer")
    servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in servers if s not in run.SERVERS]
    if unknown:
        ap.error("unknown server(s): " + ", ".join(unknown))
    scenarios = [s for s in args.scenarios.split(",") if s]
    if any(s not in SCENARIOS for s in scenarios):
        ap.error("unknown scenario in " + args.scenarios + " (scale runs: " + ", ".join(SCENARIOS) + ")")
    if not run.LOADGEN.exists():
        print(f"scale.py: {run.LOADGEN} is missing: cargo build --release -p hornbeam_bench", file=sys.stderr)
        return 2
    available = []
    for name in servers:
        why = run.SERVERS[name].check()
        if why:
            print(f"scale.py: skipping {name}: {why}", file=sys.stderr)
        else:
            available.append(name)

    now = dt.datetime.now()
    out_dir = Path(args.out) if args.out else run.BENCH / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    loadgen = "all the other cores" if args.loadgen_cores is None else f"{args.loadgen_cores} core(s) after them"
    meta: Dict[str, Any] = {"date": now.isoformat(timespec="seconds"), "machine": run.machine(), "cores": cores,
                            "loadgen": loadgen, "servers": available, "scenarios": scenarios,
                            "subscribers": args.subscribers, "window": args.window, "clients": args.clients,
                            "duration_ms": args.duration_ms, "repeat": args.repeat}
    rows: List[Dict[str, Any]] = []
    t_start = time.time()
    py_workers_set = "HORNBEAM_PY_WORKERS" in os.environ
    for scn in scenarios:
        for n in cores:
            pin_server, pin_load = pins(n, cpus, args.loadgen_cores)
            if not py_workers_set:
                os.environ["HORNBEAM_PY_WORKERS"] = str(n)
            runs: Dict[str, List[Dict[str, Any]]] = {s: [] for s in available}
            for rnd in range(args.repeat):
                order = available[rnd % len(available):] + available[:rnd % len(available)] if available else []
                for name in order:
                    res = run.run_one(run.SERVERS[name], scn, scenario_opts(scn, args), pin_server, pin_load,
                                      f"scale-{scn}-{n}-{rnd}", args.timeout)
                    runs[name].append(res)
                    print(f"[{time.time() - t_start:6.0f}s] {scn:9} N={n:<3} {name:18} {res.get('status'):8} "
                          f"{run.cell(scn, res)}", file=sys.stderr, flush=True)
            for name in available:
                rows.append({"scenario": scn, "server": name, "n": n, "pin_server": pin_server,
                             "pin_load": pin_load, "result": run.pick_median(scn, runs[name]),
                             "runs": runs[name] if args.repeat > 1 else []})
    if not py_workers_set:
        os.environ.pop("HORNBEAM_PY_WORKERS", None)
    meta["loadavg_at_end"] = os.getloadavg()
    meta["elapsed_s"] = round(time.time() - t_start, 1)
    stem = f"{now.strftime('%Y-%m-%dT%H%M')}-scale"
    base, n = out_dir / stem, 2
    while base.with_suffix(".json").exists():  # two runs in one minute keep both
        base, n = out_dir / f"{stem}-{n}", n + 1
    base.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    md = markdown(meta, rows)
    base.with_suffix(".md").write_text(md)
    print(md)
    print(f"scale.py: wrote {base}.json and {base}.md in {meta['elapsed_s']}s", file=sys.stderr)
    failed = [r for r in rows if r["result"].get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
