"""bench/run.py and bench/scale.py: sizes replaced on the command line, and the cores of each scaling run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import run  # noqa: E402
import scale  # noqa: E402


def test_core_counts_double_while_a_core_is_left_for_the_load_generator() -> None:
    assert scale.default_cores(2) == [1]
    assert scale.default_cores(3) == [1, 2]
    assert scale.default_cores(16) == [1, 2, 4, 8]


def test_server_takes_the_first_n_cores_and_the_load_generator_the_rest() -> None:
    assert scale.pins(1, 2, None) == (["taskset", "-c", "0"], ["taskset", "-c", "1"])
    assert scale.pins(4, 16, None) == (["taskset", "-c", "0-3"], ["taskset", "-c", "4-15"])


def test_loadgen_cores_bounds_the_load_generator_to_the_next_cores() -> None:
    assert scale.pins(2, 16, 8) == (["taskset", "-c", "0-1"], ["taskset", "-c", "2-9"])
    assert scale.pins(8, 16, 8) == (["taskset", "-c", "0-7"], ["taskset", "-c", "8-15"])
    assert scale.pins(12, 16, 8) == (["taskset", "-c", "0-11"], ["taskset", "-c", "12-15"])


def test_sizes_replace_the_profile_size_and_keep_its_other_options() -> None:
    cells = run.with_sizes(run.PROFILES["quick"]["fanout"], "fanout", ["1000", "5000"])
    assert [label for label, _ in cells] == ["1000", "5000"]
    _, opts = cells[1]
    assert opts[opts.index("--subscribers") + 1] == "5000"
    assert opts[opts.index("--duration-ms") + 1] == "3000"


def test_sizes_use_each_scenario_own_size_option() -> None:
    (_, opts), = run.with_sizes(run.PROFILES["quick"]["roundtrip"], "roundtrip", ["7"])
    assert opts[opts.index("--clients") + 1] == "7"
