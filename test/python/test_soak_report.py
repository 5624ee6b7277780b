"""The soak's recovery figures and verdicts (bench/soak_report.py) on hand-made timelines."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import soak_report as sr  # noqa: E402


def bucket(t, a=None, b=None):
    return {"t_ms": t, "nodes": [a or {}, b or {}]}


def healthy(sent=5, cross=4):
    return {"sent": sent, "ok": sent, "cross_in": cross, "cross_expected": cross}


def steady_timeline(start, end, **over):
    """Every 100 ms bucket healthy on both nodes, with first-ok/first-cross times 20 ms in."""
    out = []
    for t in range(start, end, 100):
        a = dict(healthy(), first_ok_ms=t + 20, first_cross_in_ms=t + 20)
        b = dict(healthy(), first_ok_ms=t + 20, first_cross_in_ms=t + 20)
        a.update(over.get("a", {}).get(t, {}))
        b.update(over.get("b", {}).get(t, {}))
        out.append(bucket(t, a, b))
    return out


def test_a_fault_that_disturbs_nothing_recovers_at_once():
    tl = steady_timeline(0, 5000)
    rec = sr.recovery(tl, 2, {"t_ms": 1000, "node_index": 0}, 5000)
    assert rec["first_ok_ms"] == 20
    assert rec["clean_after_ms"] == 20
    assert rec["first_cross_ms"] == 20
    assert rec["cross_steady_after_ms"] == 0


def test_a_lost_reply_keeps_the_window_unclean_until_a_whole_clean_second():
    tl = steady_timeline(0, 5000, a={1200: {"ok": 4, "lost": 1}})
    rec = sr.recovery(tl, 2, {"t_ms": 1000, "node_index": 0}, 5000)
    assert rec["clean_after_ms"] == 320  # clean from 1300 on, answered at 1320
    assert [n["lost"] for n in rec["window"]] == [1, 0]


def test_a_node_that_never_serves_again_is_reported_as_never():
    tl = steady_timeline(0, 1000) + [bucket(t, {"sent": 3, "interrupted": 3, "drops": 2}, healthy())
                                      for t in range(1000, 4000, 100)]
    rec = sr.recovery(tl, 2, {"t_ms": 1000, "node_index": 0}, 4000)
    assert rec["first_ok_ms"] is None
    assert rec["clean_after_ms"] is None
    assert [n["drops"] for n in rec["window"]] == [60, 0]


def test_broadcasts_that_stop_crossing_in_one_direction_count_as_not_recovered():
    tl = steady_timeline(0, 4000, b={t: {"cross_in": 0, "first_cross_in_ms": None} for t in range(1000, 4000, 100)})
    for row in tl:
        row["nodes"][1] = {k: v for k, v in row["nodes"][1].items() if v is not None}
    rec = sr.recovery(tl, 2, {"t_ms": 1000, "node_index": 0}, 4000)
    assert rec["first_ok_ms"] == 20
    assert rec["first_cross_ms"] is None
    assert rec["cross_steady_after_ms"] is None


def test_drops_in_the_faults_own_bucket_count_in_its_window():
    tl = steady_timeline(0, 3000, a={1000: {"drops": 7}})
    assert sr.window_totals(tl, 2, 1050, 3000)[0]["drops"] == 7


def result(lost=0, joined=20, converged=True, rss_end=110_000):
    figures = {"replies_lost": lost, "echoes_lost": 0, "replies_wrong": 0, "replies_ok": 100,
               "replies_error": 0, "replies_interrupted": 0, "requests_sent": 100 + lost,
               "joined_at_end": joined, "client_presence": {"converged": True, "after_ms": 0}}
    return {"loadgen": {"figures": figures, "params": {"users": 20}},
            "faults": [], "presence": {"converged": converged, "summary": "x"},
            "nodes": [{"label": "a", "rss_start_kib": 100_000, "rss_end_kib": rss_end}]}


def test_every_verdict_is_met_by_a_clean_run_and_each_failure_shows():
    assert all(v["ok"] for v in sr.verdicts(result(), 25))
    for bad in (result(lost=1), result(joined=19), result(converged=False), result(rss_end=130_000)):
        failed = [v["claim"] for v in sr.verdicts(bad, 25) if not v["ok"]]
        assert len(failed) == 1, failed


def test_the_coarse_timeline_sums_counts_and_keeps_the_earliest_first_times():
    tl = steady_timeline(0, 2000)
    c = sr.coarse(tl, 1000)
    assert [r["t_ms"] for r in c] == [0, 1000]
    assert c[1]["nodes"][0]["sent"] == 50
    assert c[1]["nodes"][0]["first_ok_ms"] == 1020


def test_failures_after_a_clean_second_mean_not_recovered_until_the_last_one():
    tl = steady_timeline(0, 5000, a={1200: {"ok": 4, "lost": 1}, 2500: {"ok": 4, "lost": 1}})
    assert sr.clean_after_ms(tl, 0, 1000, 5000) == 1620  # clean from 2600 on, answered at 2620
    tl = steady_timeline(0, 5000, a={4500: {"ok": 4, "lost": 1}})
    assert sr.clean_after_ms(tl, 0, 1000, 5000) is None  # the last second is not clean
