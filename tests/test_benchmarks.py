"""Smoke tests of the benchmark scripts: each runs end to end on a tiny budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_solver_benchmark_quick(tmp_path):
    """benchmarks/solver.py --quick runs end to end and writes its JSON, table and plot."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "solver.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "solver.json").read_text())
    assert {"settings", "machine", "rows"} <= set(result)
    assert result["rows"], result
    row = result["rows"][0]
    for key in ("problem", "n", "rlto", "crocoddyl"):
        assert key in row
    for key in ("instances_per_second", "compile_seconds", "cost_mean", "converged_share"):
        assert key in row["rlto"]
    for entry in row["crocoddyl"].values():
        for key in ("instances_per_second", "cost_mean", "converged_share", "ratio"):
            assert key in entry
    assert (tmp_path / "solver.md").read_text().startswith("#")
    assert (tmp_path / "solver.png").stat().st_size > 0


def _comparison(problem: str, name: str, algo: str, curves) -> dict:
    """A minimal `rlto compare` result: one variant with a run per curve (calls, gaps)."""
    from rlto import compare

    runs = [compare.run_record(seed, f"runs/{name}/seed{seed}", {
        "iteration": np.arange(1.0, len(calls) + 1), "sim_calls": np.asarray(calls, float),
        "wall_seconds": np.arange(1.0, len(calls) + 1), "test_gap": np.asarray(gaps, float)})
        for seed, (calls, gaps) in enumerate(curves)]
    entry = {"algo": algo, "options": {}, "runs": runs, "errors": [],
             **compare.summarize_runs(runs)}
    return {"settings": {"problem": problem, "seeds": len(runs), "seconds": None,
                         "iterations": None, "max_sim_calls": curves[0][0][-1],
                         "command_line": f"rlto compare {problem} --algos {name}"},
            "machine": {"cpu_count": 2, "jax_device": "cpu:cpu", "date": "today"},
            "variants": {name: entry}}


def test_efficiency_benchmark_merges_comparisons(tmp_path):
    """benchmarks/efficiency.py merges comparisons with their own budgets into one table with
    the ratios of rlto.compare.efficiency_table, and refuses mixed problems or a variant twice."""
    ppo = _comparison("lqr", "ppo", "ppo", [([1e4, 1e5, 1e6], [50.0, 8.0, 2.0]),
                                            ([1e4, 1e5, 1e6], [40.0, 3.0, 3.0])])
    pddp = _comparison("lqr", "pddp+s", "pddp", [([2e3, 2e4], [90.0, 0.5])])
    files = []
    for name, result in (("ppo", ppo), ("pddp", pddp), ("other", {
            **pddp, "settings": {**pddp["settings"], "problem": "pendulum"}})):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(result))
    script = [sys.executable, str(ROOT / "benchmarks" / "efficiency.py")]
    proc = subprocess.run([*script, str(files[0]), str(files[1]), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    merged = json.loads((tmp_path / "efficiency_lqr.json").read_text())
    (row,) = merged["efficiency"]
    # PPO: median final gap 2.5%, first reached at 1e6 by one seed, never by the other (1e6).
    assert (row["baseline"], row["variant"], row["baseline_gap"]) == ("ppo", "pddp+s", 2.5)
    assert row["calls"] == 2e4 and row["ratio"] == 50.0
    assert "| pddp+s | ppo | 2.5 | 1e+06 | 2e+04 | 50x |" in (
        tmp_path / "efficiency_lqr.md").read_text()
    assert (tmp_path / "efficiency_lqr.png").stat().st_size > 0
    # The same variant twice, told apart by a suffix.
    proc = subprocess.run([*script, str(files[0]), str(files[1]), f"{files[1]}:n8",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((tmp_path / "efficiency_lqr.json").read_text())
    assert list(merged["variants"]) == ["ppo", "pddp+s", "pddp+s n8"]
    for bad in ([files[0], files[2]], [files[1], files[1]]):
        proc = subprocess.run([*script, *map(str, bad), "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 2 and "error" in proc.stderr, proc.stderr


def test_optimum_benchmark_smoke(tmp_path):
    """benchmarks/optimum.py on 6 pendulum instances: every setting's J*, the file triple, and
    the full search never above the first starts (it only adds starts)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "optimum.py"), "--problems", "pendulum",
         "--m", "6", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "optimum.json").read_text())["problems"]["pendulum"]
    assert set(rows) == {"first", "heuristic", "restarts", "all"}
    first = rows["first"]["cost"]
    for name in ("heuristic", "restarts", "all"):
        assert all(c <= f * (1 + 1e-9) for c, f in zip(rows[name]["cost"], first, strict=True))
    assert rows["all"]["mean"] < rows["first"]["mean"]  # some of 6 swing-ups end short
    assert "| pendulum | all |" in (tmp_path / "optimum.md").read_text()
    assert (tmp_path / "optimum.png").stat().st_size > 0


def test_imitation_benchmark_quick(tmp_path):
    """benchmarks/imitation.py --quick on lqr: the file triple, gaps computed from the policy
    costs it lists, and no closed-loop policy below the convex problem's J* (its global optimum;
    a J* or rollout cost computed on different instances or trajectories would break it)."""
    env = {**os.environ, "RLTO_OPTIMUM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "imitation.py"), "--problem", "lqr",
         "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "imitation_lqr.json").read_text())
    optimum = np.asarray(result["optimum"])
    assert [row["epochs"] for row in result["evaluations"]] == [2, 4]
    for row in result["evaluations"]:
        cost = np.asarray(row["policy_cost"])
        assert np.all(cost >= optimum * (1 - 1e-9))
        assert row["mean_gap_percent"] == pytest.approx(100 * (cost.mean() / optimum.mean() - 1))
        ratios = [w["policy_cost"] / w["optimum"] for w in row["worst"]]
        assert ratios == sorted(ratios, reverse=True)
        assert max(ratios) == pytest.approx(np.max(cost / optimum))
    assert (tmp_path / "imitation_lqr.md").read_text().startswith("# Imitation ceiling on lqr")
    assert (tmp_path / "imitation_lqr.png").stat().st_size > 0
