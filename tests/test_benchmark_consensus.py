"""benchmarks/consensus.py (rlto compare's grammar and curves, plus Fig. 7): usage errors and a
--quick run end to end; the grammar and curve statistics are tested in test_compare.py."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("consensus_benchmark",
                                                  ROOT / "benchmarks" / "consensus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


consensus = _load_benchmark()


def test_bad_variant_exits_with_usage_error(tmp_path):
    assert consensus.main(["--quick", "--variants", "pddp,ppx", "--out", str(tmp_path)]) == 2
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
            evaluation = json.loads((Path(run["run_dir"]) / "evaluation.json").read_text())
            assert run["final_precision"] == evaluation["precision"]
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
