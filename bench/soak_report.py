"""The soak's verdicts and its Markdown, from the load generator's report and
what the driver saw (bench/soak.py). Pure functions over plain data, so they
can be tested on their own (test/python/test_soak_report.py).

The load generator files every request under the 100 ms bucket of its *send*
time, per node; the driver knows when it injected each fault. A fault's
recovery figures, all in ms after the fault:

* ``first_ok_ms``: the first ok reply, on the faulted node, to a request
  sent after the fault ("first successful round trip");
* ``clean_after_ms`` ("recovered"): the first ok reply on that node after
  which every request sent there, until the window's end, got an ok reply,
  with no drop, failed connect or failed join (at least the window's last
  second must be clean); equal to ``first_ok_ms`` when the fault disturbed
  nothing;
* ``first_cross_ms``: the first broadcast copy that crossed nodes, in each
  direction, for a publish sent after the fault ("first broadcast"): the
  later of the two directions;
* ``cross_steady_after_ms``: from when on every 1 s window (counted from the
  fault) had each node receive at least 90 % of the cross-node copies
  expected (members joined at send time).

``None`` means "not within the window" (until the next fault or the end of
the load): the fault did not heal in time, and the verdict says so.

Run as a script, it recomputes a report from a run's files (after a change
to the figures here): ``python3 bench/soak_report.py RESULT.json
_build/soak/<run>/timeline.json`` rewrites RESULT.json and RESULT.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

Bucket = Dict[str, Any]
WINDOW_MS = 1000
CROSS_STEADY_RATIO = 0.9
BAD_KEYS = ("error", "wrong", "lost", "interrupted", "drops", "connect_failures", "join_failures")


def _node(row: Bucket, node: int) -> Dict[str, int]:
    nodes = row.get("nodes", [])
    return nodes[node] if node < len(nodes) else {}


def _rows(timeline: Sequence[Bucket], start: int, end: int) -> List[Bucket]:
    return [r for r in timeline if start <= r["t_ms"] < end]


def first_ok_ms(timeline: Sequence[Bucket], node: int, fault_ms: int, end_ms: int) -> Optional[int]:
    times = [_node(r, node).get("first_ok_ms") for r in _rows(timeline, fault_ms, end_ms)]
    done = [t for t in times if t is not None]
    return min(done) - fault_ms if done else None


def clean_after_ms(timeline: Sequence[Bucket], node: int, fault_ms: int, end_ms: int,
                   bucket_ms: int = 100) -> Optional[int]:
    """ms after the fault until the first ok reply after which, until the end of the window,
    every request sent on node got an ok reply (and nothing dropped or failed to connect or
    join); None when that is not at least the last second of the window."""
    first = fault_ms - fault_ms % bucket_ms
    clean_from = fault_ms
    sent_after = 0
    for r in _rows(timeline, first, end_ms):
        b = _node(r, node)
        if sum(b.get(k, 0) for k in BAD_KEYS) > 0 or b.get("ok", 0) < b.get("sent", 0):
            clean_from, sent_after = r["t_ms"] + bucket_ms, 0
        else:
            sent_after += b.get("sent", 0)
    if end_ms - clean_from < WINDOW_MS or sent_after == 0:
        return None
    # Recovered when the first of those requests was answered.
    since = max(clean_from, fault_ms)
    answered = first_ok_ms(timeline, node, since, end_ms)
    return None if answered is None else since + answered - fault_ms


def first_cross_ms(timeline: Sequence[Bucket], nodes: int, fault_ms: int, end_ms: int) -> Optional[int]:
    """The later, over receiving nodes, of the first cross-node copy of a publish sent after the fault."""
    firsts: List[int] = []
    for n in range(nodes):
        times = [_node(r, n).get("first_cross_in_ms") for r in _rows(timeline, fault_ms, end_ms)]
        got = [g for g in times if g is not None]
        if not got:
            return None
        firsts.append(min(got))
    return max(firsts) - fault_ms if firsts else None


def cross_steady_after_ms(timeline: Sequence[Bucket], nodes: int, fault_ms: int, end_ms: int) -> Optional[int]:
    """Start of the 1 s windows (counted from the fault) after the last one in which a node got
    fewer than 90 % of the cross-node copies expected; None when no window after it passed."""
    steady_from: Optional[int] = None
    t = fault_ms
    while t + WINDOW_MS <= end_ms:
        rows = _rows(timeline, t, t + WINDOW_MS)
        good = True
        for n in range(nodes):
            got = sum(_node(r, n).get("cross_in", 0) for r in rows)
            want = sum(_node(r, n).get("cross_expected", 0) for r in rows)
            if want == 0 or got < CROSS_STEADY_RATIO * want:
                good = False
        if not good:
            steady_from = None
        elif steady_from is None:
            steady_from = t
        t += WINDOW_MS
    return None if steady_from is None else steady_from - fault_ms


WINDOW_KEYS = ("sent", "ok", "error", "wrong", "lost", "interrupted", "drops", "connect_failures",
               "join_failures", "channel_errors", "echo_lost", "cross_in", "cross_expected")


def window_totals(timeline: Sequence[Bucket], nodes: int, start: int, end: int,
                  bucket_ms: int = 100) -> List[Dict[str, int]]:
    """Per node, sums from the bucket holding `start` (drops and errors filed by the time they
    happened may share the fault's bucket) to the one before `end`'s."""
    start, end = start - start % bucket_ms, end - end % bucket_ms
    out = [{k: 0 for k in WINDOW_KEYS} for _ in range(nodes)]
    for r in _rows(timeline, start, end):
        for n in range(nodes):
            b = _node(r, n)
            for k in WINDOW_KEYS:
                out[n][k] += b.get(k, 0)
    return out


def recovery(timeline: Sequence[Bucket], nodes: int, fault: Dict[str, Any], end_ms: int) -> Dict[str, Any]:
    """The recovery figures of one fault (see the module's docstring)."""
    f, node = fault["t_ms"], fault["node_index"]
    return {
        "first_ok_ms": first_ok_ms(timeline, node, f, end_ms),
        "clean_after_ms": clean_after_ms(timeline, node, f, end_ms),
        "first_cross_ms": first_cross_ms(timeline, nodes, f, end_ms),
        "cross_steady_after_ms": cross_steady_after_ms(timeline, nodes, f, end_ms),
        "window": window_totals(timeline, nodes, f, end_ms),
    }


def coarse(timeline: Sequence[Bucket], width_ms: int) -> List[Bucket]:
    """The timeline in wider buckets: counts summed, first-times the earliest, zeros left out."""
    rows: Dict[int, List[Dict[str, int]]] = {}
    for r in timeline:
        row = rows.setdefault(r["t_ms"] - r["t_ms"] % width_ms, [{} for _ in r["nodes"]])
        for acc, b in zip(row, r["nodes"]):
            for k, v in b.items():
                if not v:
                    continue
                if k.startswith("first_"):
                    acc[k] = min(acc.get(k, v), v)
                else:
                    acc[k] = acc.get(k, 0) + v
    return [{"t_ms": t, "nodes": row} for t, row in sorted(rows.items())]


def rss_growth_pct(start_kib: Optional[int], end_kib: Optional[int]) -> Optional[float]:
    if not start_kib or end_kib is None:
        return None
    return round(100.0 * (end_kib - start_kib) / start_kib, 1)


def verdicts(result: Dict[str, Any], rss_noise_pct: float) -> List[Dict[str, Any]]:
    """[{"claim", "measured", "ok"}] for the issue's four conditions, plus each fault's recovery."""
    lg = result["loadgen"]["figures"]
    out: List[Dict[str, Any]] = []
    lost, echo_lost, wrong = lg["replies_lost"], lg["echoes_lost"], lg["replies_wrong"]
    out.append({"claim": "replies lost for clients that stayed connected = 0",
                "measured": f"{lost} lost, {echo_lost} broadcast echoes lost, {wrong} wrong replies "
                            f"(of {lg['requests_sent']:,} sent; besides: {lg['replies_error']} error replies, "
                            f"{lg['replies_interrupted']} interrupted by a closed socket or channel)",
                "ok": lost == 0 and echo_lost == 0 and wrong == 0 and lg["replies_ok"] > 0})
    users, joined = result["loadgen"]["params"]["users"], lg["joined_at_end"]
    out.append({"claim": "every user connected and joined at the end (clients reconnect when dropped)",
                "measured": f"{joined:,} of {users:,}",
                "ok": joined == users})
    for fault in result["faults"]:
        rec = fault.get("recovery", {})
        healed = rec.get("clean_after_ms") is not None and rec.get("cross_steady_after_ms") is not None
        out.append({"claim": f"recovers after: {fault['what']}",
                    "measured": describe_recovery(rec),
                    "ok": healed})
    for node in result["nodes"]:
        g = rss_growth_pct(node.get("rss_start_kib"), node.get("rss_end_kib"))
        out.append({"claim": f"node {node['label']}: RSS growth within {rss_noise_pct:g} %",
                    "measured": f"{fmt_kib(node.get('rss_start_kib'))} → {fmt_kib(node.get('rss_end_kib'))}"
                                + (f" ({g:+.1f} %)" if g is not None else "")
                                + (" (restarted in between)" if node.get("restarted") else ""),
                    "ok": g is not None and g <= rss_noise_pct})
    pres = result.get("presence", {})
    out.append({"claim": "presence converged: each node lists the connected users of every room",
                "measured": pres.get("summary", "not checked"),
                "ok": bool(pres.get("converged"))})
    cv = lg.get("client_presence", {})
    out.append({"claim": "presence converged: every connected client's view holds its room's connected users",
                "measured": (f"after {cv.get('after_ms')} ms" if cv.get("converged")
                             else f"{cv.get('mismatched_views')} of {cv.get('joined')} views differ "
                                  f"after {cv.get('after_ms')} ms"),
                "ok": bool(cv.get("converged"))})
    return out


def fmt_ms(v: Optional[int]) -> str:
    return "never" if v is None else f"{v:,} ms"


def fmt_kib(v: Optional[int]) -> str:
    return "–" if v is None else f"{v / 1024:,.1f} MiB"


def describe_recovery(rec: Dict[str, Any]) -> str:
    return (f"first round trip {fmt_ms(rec.get('first_ok_ms'))}, recovered (all ok from then on) at "
            f"{fmt_ms(rec.get('clean_after_ms'))}; first cross-node broadcast "
            f"{fmt_ms(rec.get('first_cross_ms'))}, ≥90 % cross-node delivery from "
            f"{fmt_ms(rec.get('cross_steady_after_ms'))}")


def markdown(result: Dict[str, Any]) -> str:
    lg = result["loadgen"]
    fig, par = lg["figures"], lg["params"]
    lines = [f"# Soak {result['started']}", "",
             f"{par['users']:,} users in {par['rooms']:,} rooms of {par['room_size']} on "
             f"{len(result['nodes'])} nodes ({result['workers']} Python workers each), "
             f"{result['duration_s']:g} s of load (ramp {par['ramp_ms'] / 1000:g} s), a message per user every "
             f"{par['interval_ms'] / 1000:g} s ±50 % ({par['publish_pct']} % broadcast to the room), "
             f"{par['churn_permille'] / 10:g} % of messages replaced by a disconnect + reconnect; "
             f"call timeout {par['call_timeout_ms'] / 1000:g} s. Commit `{result.get('commit', '?')}`; "
             f"machine: {result['machine']}.", "",
             f"**Verdict: {'PASS' if result['passed'] else 'FAIL'}**", "",
             "| claim | measured | |", "|---|---|---|"]
    for v in result["verdicts"]:
        lines.append(f"| {v['claim']} | {v['measured']} | {'ok' if v['ok'] else '**not met**'} |")
    lines += ["", "## Faults", "",
              "Counts are for the time from the fault to the next one (or the end of the load), "
              "per node: " + " / ".join(n["label"] for n in result["nodes"]) + ".", "",
              "| at | fault | first round trip | recovered (all ok from then on) | first cross-node broadcast | ≥90 % cross-node from "
              "| lost | interrupted | errors | drops | what the driver saw |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in result["faults"]:
        rec, w = f.get("recovery", {}), f.get("recovery", {}).get("window", [])

        def per(key: str) -> str:
            return " / ".join(str(n.get(key, 0)) for n in w) or "–"
        lines.append(f"| {f['at_s']:.1f} s | {f['what']} | {fmt_ms(rec.get('first_ok_ms'))} | "
                     f"{fmt_ms(rec.get('clean_after_ms'))} | {fmt_ms(rec.get('first_cross_ms'))} | "
                     f"{fmt_ms(rec.get('cross_steady_after_ms'))} | {per('lost')} | "
                     f"{per('interrupted')} | {per('error')} | {per('drops')} | "
                     f"{'; '.join(f.get('notes', []))} |")
    lines += ["", "## Totals", "",
              f"Requests sent {fig['requests_sent']:,}: ok {fig['replies_ok']:,}, lost {fig['replies_lost']:,}, "
              f"error replies {fig['replies_error']:,}, wrong {fig['replies_wrong']:,}, interrupted by a closed "
              f"socket or channel {fig['replies_interrupted']:,}. Broadcast echoes lost {fig['echoes_lost']:,}. "
              f"Cross-node copies {fig['cross_node_delivered']:,} of {fig['cross_node_expected']:,} expected. "
              f"Users joined at the end: {fig['joined_at_end']:,}.", ""]
    reasons = fig.get("error_reasons") or {}
    if reasons:
        lines += ["Error reasons seen by clients: " + ", ".join(f"`{k}` ×{v}" for k, v in reasons.items()), ""]
    lines += ["| node | sent | ok | lost | interrupted | errors | drops | connect failures | join failures "
              "| p50 | p99 | RSS start | RSS end |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, node in enumerate(result["nodes"]):
        t = fig["per_node"][i]
        lat = fig["latency_per_node"][i]
        lines.append(f"| {node['label']} | {t['sent']:,} | {t['ok']:,} | {t['lost']} | {t['interrupted']} | "
                     f"{t['error']} | {t['drops']} | {t['connect_failures']} | {t['join_failures']} | "
                     f"{lat.get('p50_ms', '–')} ms | {lat.get('p99_ms', '–')} ms | "
                     f"{fmt_kib(node.get('rss_start_kib'))} | {fmt_kib(node.get('rss_end_kib'))} |")
    pres = result.get("presence", {})
    lines += ["", "## Presence at the end", "", pres.get("summary", "not checked"), ""]
    for label, rooms in (pres.get("mismatches") or {}).items():
        for topic, diff in list(rooms.items())[:5]:
            lines.append(f"* node {label}, `{topic}`: missing {diff['missing']}, extra {diff['extra']}")
    lines += ["", "Node logs: " + ", ".join(f"`{n['log']}`" for n in result["nodes"]), ""]
    return "\n".join(lines)


def analyse(result: Dict[str, Any], timeline: Sequence[Bucket], rss_noise_pct: float) -> None:
    """Fills in each fault's recovery, the verdicts and the 1 s timeline of `result`."""
    faults = result["faults"]
    end_ms = result["loadgen"]["figures"]["load_end_ms"]
    for i, f in enumerate(faults):
        f_end = faults[i + 1]["t_ms"] if i + 1 < len(faults) else end_ms
        f["recovery"] = recovery(timeline, len(result["nodes"]), f, f_end)
    result["verdicts"] = verdicts(result, rss_noise_pct)
    result["passed"] = all(v["ok"] for v in result["verdicts"])
    result["timeline_1s"] = coarse(timeline, 1000)


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        print("usage: soak_report.py RESULT.json TIMELINE.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    result = json.loads(path.read_text())
    analyse(result, json.loads(Path(argv[1]).read_text()), result.get("rss_noise_pct", 25.0))
    path.write_text(json.dumps(result, separators=(",", ":")))
    path.with_suffix(".md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
