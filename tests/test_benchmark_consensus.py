"""benchmarks/consensus.py: the variant grammar, the step-wise curves and their median/IQR over
seeds (against hand-computed numbers), and a --quick run end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from rlto.problem import ProblemError

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("consensus_benchmark",
                                                  ROOT / "benchmarks" / "consensus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


consensus = _load_benchmark()


@pytest.mark.parametrize(("name", "algo", "options"), [
    ("pddp", "pddp", {"sobolev": "none"}),
    ("pddp+s", "pddp", {"sobolev": "stochastic"}),
    ("pddp+fs-c", "pddp", {"sobolev": "full", "constrained": False}),
    ("plal", "plal", {"sobolev": "none"}),
    ("plal+s", "plal", {"sobolev": "stochastic"}),
    ("plal+s+m", "plal", {"sobolev": "stochastic", "shooting": "multiple"}),
    ("plal+s-c", "plal", {"sobolev": "stochastic", "constrained": False}),
    ("plal+s+bcl", "plal", {"sobolev": "stochastic", "penalty": "bcl"}),
    ("plal-c+m", "plal", {"sobolev": "none", "constrained": False, "shooting": "multiple"}),
    ("pddp+s+best", "pddp", {"sobolev": "stochastic", "warm_start": "best"}),
])
def test_variant_names_map_to_algorithm_options(name, algo, options):
    variant = consensus.parse_variant(name)
    assert (variant.name, variant.algo, variant.option_dict) == (name, algo, options)
    hash(variant)  # frozen: usable as a key


@pytest.mark.parametrize("name", ["ppo", "plal+x", "pddp+m", "pddp+bcl", "plal+s+fs", "plal+best",
                                  "plal+s+s", "plal s", "+s", "PLAL"])
def test_bad_variant_names_are_rejected_with_the_grammar(name):
    with pytest.raises(ProblemError, match="variant is BASE"):
        consensus.parse_variant(name)


def test_variant_lists_and_common_options():
    names = [v.name for v in consensus.parse_variants("pddp, plal+s,plal+s+m")]
    assert names == ["pddp", "plal+s", "plal+s+m"]
    with pytest.raises(ProblemError, match="twice"):
        consensus.parse_variants("pddp,pddp")
    variant = consensus.parse_variant("plal+s")
    assert consensus.run_options(variant, {"epochs": 3, "sobolev": "stochastic"}) == {
        "epochs": 3, "sobolev": "stochastic"}
    with pytest.raises(ProblemError, match="conflicts"):
        consensus.run_options(variant, {"sobolev": "full"})


def test_step_interpolation_reads_the_last_evaluation_at_or_before():
    got = consensus.step_interpolate([10, 20, 40], [5.0, 3.0, 1.0], [5, 10, 15, 20, 30, 40, 100])
    np.testing.assert_array_equal(got, [np.nan, 5, 5, 3, 3, 1, np.nan])


def test_median_and_iqr_over_seeds_by_hand():
    # Three seeds, evaluated at different sim-call counts.
    curves = [
        {"sim_calls": np.array([10.0, 20, 40]), "test_gap": np.array([8.0, 4, 1])},
        {"sim_calls": np.array([5.0, 30, 40]), "test_gap": np.array([6.0, 2, 2])},
        {"sim_calls": np.array([15.0, 50]), "test_gap": np.array([10.0, 10])},
    ]
    grid = np.array([5.0, 10, 15, 20, 30, 40, 50])
    # Step-wise: [nan 8 8 4 4 1 nan], [6 6 6 6 2 2 nan], [nan nan 10 10 10 10 10] (a curve ends
    # at its run's last evaluation); a statistic only where all three seeds have a value.
    # Columns {6,8,10}, {4,6,10}, {2,4,10}, {1,2,10}: median = the middle one, quartiles
    # halfway to the neighbours (NumPy's linear interpolation).
    out = consensus.variant_curves(curves, "sim_calls", grid)
    nan = np.nan
    np.testing.assert_array_equal(out["grid"], grid)
    np.testing.assert_allclose(out["median"], [nan, nan, 8, 6, 4, 2, nan])
    np.testing.assert_allclose(out["q25"], [nan, nan, 7, 5, 3, 1.5, nan])
    np.testing.assert_allclose(out["q75"], [nan, nan, 9, 8, 7, 6, nan])


def test_crossings_grid_and_quartiles():
    assert consensus.first_reach([1, 2, 3], [20.0, 5.0, 0.5], 10.0) == 2.0
    assert consensus.first_reach([1, 2, 3], [20.0, 5.0, 0.5], 0.1) is None
    assert consensus.median_reach([100.0, 300.0]) == 200.0
    assert consensus.median_reach([100.0, None]) is None
    assert consensus.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "q25": 2.0,
                                                            "q75": 4.0}
    grid = consensus.log_grid([np.array([10.0, 100.0]), np.array([0.0, 1000.0])], points=4)
    np.testing.assert_allclose(grid, [10, 10 ** (5 / 3), 10 ** (7 / 3), 1000])
    assert grid[0] == 10 and grid[-1] == 1000  # zero (not on a log axis) is left out
    assert consensus.log_grid([np.array([5.0])]).tolist() == [5.0]
    assert consensus.jsonable({"a": (np.float64(np.nan), np.int64(3), np.inf)}) == {
        "a": [None, 3, None]}


def test_bad_variant_exits_with_usage_error(tmp_path):
    assert consensus.main(["--quick", "--variants", "pddp,ppo", "--out", str(tmp_path)]) == 2
    assert consensus.main(["--quick", "--variants", "pddp", "-o", "shooting=multiple",
                           "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "runs").exists()


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def test_quick_benchmark_end_to_end(tmp_path):
    """--quick on lqr with two variants writes the JSON, table and the three plots."""
    code = consensus.main(["--quick", "--problem", "lqr", "--variants", "pddp,plal+s",
                           "--out", str(tmp_path)])
    assert code == 0
    for name in ("consensus_lqr.json", "consensus_lqr.md", "consensus_lqr.png",
                 "warmstart_lqr.png", "precision_lqr.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    result = json.loads((tmp_path / "consensus_lqr.json").read_text())
    assert {"settings", "machine", "variants", "grids"} <= set(result)
    assert result["settings"]["command_line"].startswith("benchmarks/consensus.py --quick")
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["date"]
    assert list(result["variants"]) == ["pddp", "plal+s"]
    for name, entry in result["variants"].items():
        assert entry["errors"] == [], entry["errors"]
        assert [r["seed"] for r in entry["runs"]] == [0, 1]
        for run in entry["runs"]:
            assert run["iterations"] == 2
            for key in ("final_gap", "final_sim_calls", "wall_seconds"):
                assert _finite(run[key]), (name, key, run[key])
            assert len(run["curve"]["sim_calls"]) == 2
            assert all(_finite(v) for v in run["curve"]["test_gap"])
            assert (Path(run["run_dir"]) / "metrics.csv").exists()
        assert Path(entry["runs"][0]["run_dir"]) == (
            tmp_path / "runs" / "consensus-lqr" / name / "seed0")
        assert all(_finite(entry["final_gap"][k]) for k in ("median", "q25", "q75"))
        assert set(entry["sim_calls_to_gap"]) == {"1", "10"}
        for x_key in ("sim_calls", "wall_seconds"):
            curve = entry["aggregate"][x_key]
            assert len(curve["grid"]) == len(curve["median"]) == len(result["grids"][x_key])
            # A median exactly where every seed has been evaluated and has not ended yet.
            grid = np.asarray(curve["grid"], dtype=float)
            first = max(r["curve"][x_key][0] for r in entry["runs"])
            last = min(r["curve"][x_key][-1] for r in entry["runs"])
            inside = (grid >= first) & (grid <= last)
            assert [_finite(v) for v in curve["median"]] == inside.tolist()
        warm = entry["warm_start"]
        for key in ("iterations_policy_median", "iterations_zero_median",
                    "iterations_policy_max", "cost_policy_mean", "cost_zero_mean"):
            assert _finite(warm[key]), (name, key)
        assert len(warm["iterations_policy"]) == result["settings"]["test_size"] == 8
        precision = entry["precision"]
        assert len(precision["relative_gap"]) == 8
        assert all(_finite(v) for v in precision["relative_gap"])
    table = (tmp_path / "consensus_lqr.md").read_text()
    assert table.startswith("# Consensus benchmark on lqr")
    assert "| pddp |" in table and "| plal+s |" in table
