"""Plots fan-out p99 latency against subscriber count from a bench/run.py
results file: ``plot.py RESULTS.json OUT.png`` (run with bench/.venv's Python)."""

import json
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    data = json.load(open(src))
    series = {}
    for row in data["results"]:
        res = row["result"]
        if row["scenario"] != "fanout" or res.get("status") != "ok":
            continue
        p99 = res.get("figures", {}).get("latency", {}).get("p99_ms")
        if p99 is None:
            continue
        series.setdefault(row["server"], []).append((int(row["size"]), p99))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for server, points in sorted(series.items()):
        points.sort()
        xs, ys = zip(*points)
        style = "-o" if server.startswith("hornbeam") else "--s"
        ax.plot(xs, ys, style, label=server, linewidth=2 if server.startswith("hornbeam") else 1.2)
    sizes = sorted({x for pts in series.values() for x, _ in pts})
    if len(sizes) > 1:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{x:,}" for x in sizes])
    ax.axhline(100, color="grey", linestyle=":", linewidth=1)
    ax.text(ax.get_xlim()[0], 100, " 100 ms target", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("subscribers on one topic")
    ax.set_ylabel("publish → receive latency, p99 (ms)")
    ax.set_yscale("log")
    ax.set_title(f"Fan-out p99 latency ({data['meta']['date']}, {data['meta']['profile']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
