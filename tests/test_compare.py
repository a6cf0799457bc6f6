"""rlto.compare and `rlto compare`: the variant grammar over every algorithm, the step-wise curves
and their median/IQR over seeds (against hand-computed numbers), and comparisons end to end
(in this process and in worker processes, which must give the same numbers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rlto import compare
from rlto.cli import main as cli_main
from rlto.problem import ProblemError


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
    ("pods+so", "pods", {"sobolev": "none", "order": "second"}),
    ("ppo", "ppo", {}),
    ("sac", "sac", {}),
    ("cacto", "cacto", {"sobolev": "none"}),
    ("cacto-sl", "cacto-sl", {"sobolev": "none"}),
])
def test_variant_names_map_to_algorithm_options(name, algo, options):
    variant = compare.parse_variant(name)
    assert (variant.name, variant.algo, variant.option_dict) == (name, algo, options)
    hash(variant)  # frozen: usable as a key


@pytest.mark.parametrize("name", ["ppx", "ppo+s", "sac-c", "plal+x", "pddp+m", "pddp+bcl",
                                  "plal+s+fs", "plal+best", "plal+s+s", "plal s", "+s", "PLAL",
                                  "pddp+so"])
def test_bad_variant_names_are_rejected_with_the_grammar(name):
    with pytest.raises(ProblemError, match="variant is BASE"):
        compare.parse_variant(name)


def test_variant_lists_and_common_options():
    names = [v.name for v in compare.parse_variants("pddp, plal+s,plal+s+m")]
    assert names == ["pddp", "plal+s", "plal+s+m"]
    with pytest.raises(ProblemError, match="twice"):
        compare.parse_variants("pddp,pddp")
    variant = compare.parse_variant("plal+s")
    assert compare.run_options(variant, {"epochs": 3, "sobolev": "stochastic"}) == {
        "epochs": 3, "sobolev": "stochastic"}
    with pytest.raises(ProblemError, match="conflicts"):
        compare.run_options(variant, {"sobolev": "full"})


def test_step_interpolation_reads_the_last_evaluation_at_or_before():
    got = compare.step_interpolate([10, 20, 40], [5.0, 3.0, 1.0], [5, 10, 15, 20, 30, 40, 100])
    np.testing.assert_array_equal(got, [np.nan, 5, 5, 3, 3, 1, np.nan])


def test_gap_axis_ignores_a_diverged_seeds_spike():
    """One evaluation at 1e100 % among 99 ordinary ones: the axis top is 10x the 95th
    percentile of the medians, the bottom half the lowest median (or threshold)."""
    ordinary = np.linspace(2.0, 200.0, 99)
    curve = {"median": [*ordinary[:50], 1e100, *ordinary[50:]]}
    result = {"variants": {"a": {"aggregate": {"sim_calls": curve}},
                           "b": {"runs": []}}}  # b: no median curve (every seed failed)
    bottom, top = compare.gap_axis_limits(result, "sim_calls")
    assert top == pytest.approx(10 * np.percentile([*ordinary, 1e100], 95))
    assert top < 1e4 and bottom == pytest.approx(0.5)
    assert compare.gap_axis_limits({"variants": {"b": {"runs": []}}}, "sim_calls") is None


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
    out = compare.variant_curves(curves, "sim_calls", grid)
    nan = np.nan
    np.testing.assert_array_equal(out["grid"], grid)
    np.testing.assert_allclose(out["median"], [nan, nan, 8, 6, 4, 2, nan])
    np.testing.assert_allclose(out["q25"], [nan, nan, 7, 5, 3, 1.5, nan])
    np.testing.assert_allclose(out["q75"], [nan, nan, 9, 8, 7, 6, nan])


def test_crossings_grid_and_quartiles():
    assert compare.first_reach([1, 2, 3], [20.0, 5.0, 0.5], 10.0) == 2.0
    assert compare.first_reach([1, 2, 3], [20.0, 5.0, 0.5], 0.1) is None
    assert compare.median_reach([100.0, 300.0]) == 200.0
    assert compare.median_reach([100.0, None]) is None
    assert compare.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "q25": 2.0,
                                                            "q75": 4.0}
    grid = compare.log_grid([np.array([10.0, 100.0]), np.array([0.0, 1000.0])], points=4)
    np.testing.assert_allclose(grid, [10, 10 ** (5 / 3), 10 ** (7 / 3), 1000])
    assert grid[0] == 10 and grid[-1] == 1000  # zero (not on a log axis) is left out
    assert compare.log_grid([np.array([5.0])]).tolist() == [5.0]
    assert compare.jsonable({"a": (np.float64(np.nan), np.int64(3), np.inf)}) == {
        "a": [None, 3, None]}


def test_within_column_reads_new_and_old_summaries():
    runs = [{"final_gap": g, "final_sim_calls": 1.0, "wall_seconds": 1.0,
             "sim_calls_to_gap": {"1": None, "10": None}, "final_within_1_percent": w}
            for g, w in ((5.0, 40.0), (7.0, 60.0), (9.0, 90.0))]
    summary = compare.summarize_runs(runs)
    assert summary["within_1_percent"] == {"median": 60.0, "q25": 50.0, "q75": 75.0}
    assert compare.within_text(summary) == "60 [50, 75]"
    del runs[1]["final_within_1_percent"]  # a run recorded before the measure existed
    assert compare.within_text(compare.summarize_runs(runs)) == "-"


def test_precision_column_over_seeds():
    """The precision column: quartiles over seeds of each run's final precision, "-" where a
    run has none (no task space: None; or recorded before the measure)."""
    runs = [{"final_gap": 1.0, "final_sim_calls": 1.0, "wall_seconds": 1.0,
             "sim_calls_to_gap": {"1": None, "10": None}, "final_precision": p}
            for p in (0.004, 0.006, 0.012)]
    summary = compare.summarize_runs(runs)
    expected = {"median": 0.006, "q25": 0.005, "q75": 0.009}
    assert summary["final_precision"] == pytest.approx(expected)
    assert compare.precision_text(summary) == "0.006 [0.005, 0.009]"
    runs[0]["final_precision"] = None
    assert compare.precision_text(compare.summarize_runs(runs)) == "-"


def _run(calls, gaps):
    return {"final_gap": gaps[-1], "final_sim_calls": calls[-1],
            "curve": {"sim_calls": list(calls), "test_gap": list(gaps)}}


def test_efficiency_against_a_baseline_by_hand():
    """Seed 002's comparison: the calls a variant needs for a model-free baseline's final gap,
    and the baseline's best gap within 10x the variant's calls, worked out by hand."""
    ppo = [_run([1e4, 1e5, 1e6], [50.0, 8.0, 2.0]),    # reaches its median 3% only at 1e6
           _run([1e4, 1e5, 1e6], [40.0, 3.0, 3.0]),    # at 1e5
           _run([1e4, 1e5, 1e6], [30.0, 10.0, 4.0])]   # never: counts its 1e6
    reach = compare.baseline_reach(ppo)
    assert reach == {"gap": 3.0, "calls": 1e6}
    pddp = [_run([2e3, 2e4, 5e4], [90.0, 2.5, 0.1]),   # first <= 3% at 2e4
            _run([2e3, 2e4, 5e4], [90.0, 5.0, 0.2])]   # at 5e4
    row = compare.efficiency_against(ppo, pddp)
    assert row["calls"] == 3.5e4 and row["ratio"] == pytest.approx(1e6 / 3.5e4)
    # PPO's best over its 1e6 calls: 2, 3, 4 -> 3; PDDP's within 1e5: 0.1, 0.2 -> 0.15.
    assert row["baseline_best"] == 3.0 and row["baseline_final_calls"] == 1e6
    assert row["best_within"] == pytest.approx(0.15)
    # A variant that never gets there, nor evaluates within a tenth of PPO's calls.
    slow = [_run([2e5, 1e6], [50.0, 20.0])]
    assert compare.efficiency_against(ppo, slow)["ratio"] is None
    assert compare.efficiency_against(ppo, slow)["best_within"] is None
    assert compare.best_gap_within(slow, 1e6) == 20.0
    variants = {"ppo": {"algo": "ppo", "runs": ppo}, "pddp+s": {"algo": "pddp", "runs": pddp},
                "sac": {"algo": "sac", "runs": []}}
    table = compare.efficiency_table(variants)
    assert [(r["baseline"], r["variant"]) for r in table] == [("ppo", "pddp+s")]
    lines = compare.efficiency_lines(table)
    assert lines[-1] == "| pddp+s | ppo | 3 | 1e+06 | 3.5e+04 | 28.6x | 3 (1e+06) | 0.15 |"
    assert compare.efficiency_table({"pddp+s": variants["pddp+s"]}) == []


def test_common_options_go_to_the_algorithms_that_have_them():
    pddp, ppo = compare.parse_variants("pddp,ppo")
    common = {"hidden": (16, 16), "epochs": 2, "n_steps": 32}
    assert compare.run_options(pddp, common, only_known=True) == {
        "hidden": (16, 16), "epochs": 2, "sobolev": "none"}
    assert compare.run_options(ppo, common, only_known=True) == {
        "hidden": (16, 16), "n_steps": 32}
    compare.check_common_options([pddp, ppo], common)
    with pytest.raises(ProblemError, match="none of the compared algorithms"):
        compare.check_common_options([pddp, ppo], {"epochz": 2})


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


TINY = {"n_problems": 8, "epochs": 1, "batch_size": 16, "hidden": (16, 16), "to_max_iter": 30,
        "n_steps": 32, "n_epochs": 2}
"""Options of a seconds-long run of PDDP and of PPO on lqr with T = 20."""
PDDP_TINY = {k: v for k, v in TINY.items() if k not in ("n_steps", "n_epochs")}


def test_compare_end_to_end_with_a_baseline(tmp_path):
    """pddp and ppo, two seeds each, in this process: JSON, table and both plots; the
    sim-call budget stops each run at the iteration that crosses it."""
    result = compare.compare("lqr", "pddp,ppo", seeds=2, max_sim_calls=100, options=TINY,
                             overrides={"horizon": 20}, out=tmp_path, test_size=8, jobs=1,
                             warmup=False, progress=False)
    for name in ("compare_lqr.json", "compare_lqr.md", "compare_lqr.png",
                 "compare_precision_lqr.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "compare_lqr.json").read_text())
    assert list(saved["variants"]) == ["pddp", "ppo"]
    assert saved["settings"]["max_sim_calls"] == 100
    for name, entry in saved["variants"].items():
        assert entry["errors"] == [], entry["errors"]
        assert [r["seed"] for r in entry["runs"]] == [0, 1]
        for run in entry["runs"]:
            # The run stops after the iteration that crosses 100 calls (PDDP: its first; PPO
            # with 32 env steps per iteration: its fourth).
            calls = run["curve"]["sim_calls"]
            assert calls[-1] >= 100 and all(c < 100 for c in calls[:-1]), calls
            assert run["iterations"] == {"pddp": 1, "ppo": 4}[name]
            assert all(_finite(run[k]) for k in ("final_gap", "final_sim_calls",
                                                  "wall_seconds"))
            assert Path(run["run_dir"]) == tmp_path / "runs" / name / f"seed{run['seed']}"
        assert len(entry["precision"]["relative_gap"]) == 8
        assert all(_finite(v) for v in entry["precision"]["relative_gap"])
        # The share within 1% of J* is seed 0's per-instance gaps counted, summarised over seeds.
        relative = np.array(entry["precision"]["relative_gap"])
        assert entry["runs"][0]["final_within_1_percent"] == pytest.approx(
            100.0 * np.mean(relative <= 0.01))
        assert entry["within_1_percent"] == compare.quartiles(
            [r["final_within_1_percent"] for r in entry["runs"]])
    assert "n_steps" not in saved["variants"]["pddp"]["options"]
    assert saved["variants"]["ppo"]["options"] == {"hidden": [16, 16], "batch_size": 16,
                                                   "n_steps": 32, "n_epochs": 2}
    table = (tmp_path / "compare_lqr.md").read_text()
    assert table.startswith("# Comparison on lqr") and "| ppo |" in table
    assert result["variants"]["pddp"]["runs"][0]["final_gap"] == pytest.approx(
        saved["variants"]["pddp"]["runs"][0]["final_gap"])


def test_worker_processes_give_the_numbers_of_this_process(tmp_path, monkeypatch):
    """Two runs in a pool of two spawned processes (with a warm-up iteration each) give the
    same curves as the same runs in this process: a seed fixes every number wherever it runs."""
    # The workers compile without the on-disk JAX cache: this test is about their numbers, and
    # it keeps two processes from writing the same cache entries at once.
    monkeypatch.setenv("RLTO_JAX_CACHE", "")
    kwargs = dict(seeds=2, iterations=2, options=PDDP_TINY, overrides={"horizon": 20}, test_size=8,
                  progress=False)
    pooled = compare.compare("lqr", "pddp", out=tmp_path / "pool", jobs=2, warmup=True,
                             **kwargs)
    local = compare.compare("lqr", "pddp", out=tmp_path / "local", jobs=1, warmup=False,
                            **kwargs)
    for a, b in zip(pooled["variants"]["pddp"]["runs"], local["variants"]["pddp"]["runs"],
                    strict=True):
        assert a["seed"] == b["seed"]
        for key in ("iteration", "sim_calls", "test_gap"):
            assert a["curve"][key] == b["curve"][key], key
    assert not list((tmp_path / "pool" / "runs" / "pddp").glob("*warmup*"))


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path):
    """One run raising (here: seed 1's run directory is a file, which rmtree leaves and
    makedirs refuses) is an error entry; the other seed's numbers and the outputs are still
    written."""
    blocker = tmp_path / "runs" / "pddp"
    blocker.mkdir(parents=True)
    (blocker / "seed1").write_text("a file where the run directory should be")
    result = compare.compare("lqr", "pddp", seeds=2, iterations=1, options=PDDP_TINY,
                             overrides={"horizon": 20}, out=tmp_path, test_size=8, jobs=1,
                             warmup=False, progress=False, select_best=4)
    entry = result["variants"]["pddp"]
    assert [r["seed"] for r in entry["runs"]] == [0]
    assert [e["seed"] for e in entry["errors"]] == [1]
    page = (tmp_path / "compare_lqr.md").read_text()
    assert "seed 1" in page and "on 4 validation draws" in page
    # select_best reached the run: its config and its validation rollouts' calls.
    run = tmp_path / "runs" / "pddp" / "seed0"
    assert json.loads((run / "config.json").read_text())["select_best"] == 4
    assert "validation_cost" in (run / "metrics.csv").read_text().splitlines()[0]


def test_compare_rejects_bad_requests_before_training(tmp_path):
    with pytest.raises(ProblemError, match="needs a budget"):
        compare.compare("lqr", "pddp", out=tmp_path)
    with pytest.raises(ProblemError, match="unknown variant"):
        compare.compare("lqr", "pddp,ppx", iterations=1, out=tmp_path)
    with pytest.raises(ProblemError, match="policy_dtype must be one of"):
        compare.compare("lqr", "pddp", iterations=1, out=tmp_path,
                        options={"policy_dtype": "float16"})
    with pytest.raises(ProblemError, match="select_best must be a non-negative"):
        compare.compare("lqr", "pddp", iterations=1, out=tmp_path, select_best=-4)
    assert not (tmp_path / "runs").exists()


def test_cli_compare_usage_errors_exit_2(tmp_path, capsys):
    assert cli_main(["compare", "lqr", "--algos", "pddp,ppx", "--iterations", "1",
                     "--out", str(tmp_path)]) == 2
    assert "unknown variant 'ppx'" in capsys.readouterr().err
    assert cli_main(["compare", "lqr", "--algos", "pddp", "-o", "epochz=1", "--iterations",
                     "1", "--out", str(tmp_path)]) == 2
    assert "epochz" in capsys.readouterr().err
