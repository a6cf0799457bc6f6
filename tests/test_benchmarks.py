"""Smoke tests of the benchmark scripts: each runs end to end on a tiny budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
