"""`rlto compare`: train several algorithms (and ablations) on one problem for several seeds and
measure them the same way: test gap against simulator calls and wall seconds, precision.

A variant is an algorithm name and ablation tokens (grammar below). Every (variant, seed) is one
rlto.train run in <out>/runs/<variant>/seed<k>, run in parallel processes where the machine has
cores to spare. Each run's metrics.csv gives a curve of the test gap (percent) against simulator
calls and training wall seconds; on a common log-spaced grid each seed's curve is read step-wise
(the last evaluation at or before the grid value, NaN before its first evaluation and after its
last), and the median and interquartile band over seeds are plotted (seed 002, Figs. 3-6).
Seed 0's final policy gives the precision plot: per test instance, the relative cost gap to J*
and the final task-space error (seed 002, Fig. 2).

    from rlto.compare import compare
    result = compare("lqr", ["plal+s", "pddp+s", "pods", "ppo"], seeds=3, max_sim_calls=10**6)

writes compare_lqr.json (settings, machine, every curve, summaries), compare_lqr.md (table),
compare_lqr.png (curves) and compare_precision_lqr.png under `out`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import math
import multiprocessing
import os
import platform
import re
import shutil
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlto.problem import ProblemError

TOKENS: dict[str, tuple[str, Any]] = {
    "+s": ("sobolev", "stochastic"),
    "+fs": ("sobolev", "full"),
    "+m": ("shooting", "multiple"),
    "-c": ("constrained", False),
    "+bcl": ("penalty", "bcl"),
    "+best": ("warm_start", "best"),
    "+so": ("order", "second"),
}
"""Ablation tokens of variant names: token -> (config field, value)."""
GRAMMAR = (
    "a variant is BASE[TOKENS]: BASE is an algorithm (pddp, plal, pods, dpl, cacto, ppo, sac, "
    "...; sobolev='none' where it has a Sobolev term); tokens, each at most once and only where "
    "the algorithm's config has the field: +s (sobolev='stochastic'), +fs (sobolev='full'), +m "
    "(shooting='multiple'), -c (constrained=False), +bcl (penalty='bcl'), +best "
    "(warm_start='best'), +so (order='second', PODS); e.g. plal+s+m, pddp+s-c, pddp+s+best, "
    "pods+so, ppo"
)
WITHIN_NOTE = (
    "Within 1% of J*: share of test instances whose final policy cost is within 1% of their J* "
    "(median [IQR] over seeds; a few failed rollouts can make a large gap while most instances "
    "are near-optimal). "
)
"""The tables' explanation of the within-1% column."""


def selection_note(settings: Mapping[str, Any]) -> str:
    """The tables' sentence on select_best, or "" for runs that deploy their latest iterate."""
    if not settings.get("select_best"):
        return ""
    return (f"Each run deploys its iterate of lowest mean cost on {settings['select_best']} "
            "validation draws (select_best; their rollouts are in the sim calls). ")


THRESHOLDS = (1.0, 10.0)
"""Gaps (percent) whose first crossing (in simulator calls) the tables report."""
CURVE_KEYS = ("iteration", "sim_calls", "wall_seconds", "test_gap")
X_AXES = {"sim_calls": "simulator calls", "wall_seconds": "training wall seconds"}
QUICK_OPTIONS = {"n_problems": 8, "epochs": 1, "batch_size": 64, "hidden": (16, 16),
                 "to_max_iter": 30}
"""Algorithm options of a smoke test (each applied to the algorithms whose config has it)."""


# ---------------------------------------------------------------------------------------------
# Variants.


@dataclasses.dataclass(frozen=True)
class Variant:
    """A compared configuration: rlto.train(problem, algo, **dict(options))."""

    name: str
    """As given on the command line, e.g. "plal+s+m"."""
    algo: str
    """An rlto.algorithms.ALGORITHMS name, e.g. "plal"."""
    options: tuple[tuple[str, Any], ...]
    """(field, value) pairs of the algorithm's config that the name sets, in token order."""

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


def config_fields(algo: str) -> set[str]:
    """The field names of algorithm `algo`'s config."""
    from rlto.algorithms import ALGORITHMS

    return {f.name for f in dataclasses.fields(ALGORITHMS[algo][1])}


def parse_variant(name: str) -> Variant:
    """The Variant of a name such as "plal+s-c"; ProblemError (with the grammar) if bad. The
    base is the longest algorithm name that the name starts with (so "cacto-sl" is CACTO-SL)."""
    from rlto.algorithms import ALGORITHMS

    name = name.strip()
    bases = sorted((a for a in ALGORITHMS if name.startswith(a)), key=len, reverse=True)
    suffix = name[len(bases[0]):] if bases else ""
    if not bases or not re.fullmatch(r"(?:[+-][a-z]+)*", suffix):
        raise ProblemError(f"unknown variant {name!r}; {GRAMMAR}.")
    algo = bases[0]
    fields = config_fields(algo)
    options: dict[str, Any] = {"sobolev": "none"} if "sobolev" in fields else {}
    seen: set[str] = set()
    for token in re.findall(r"[+-][a-z]+", suffix):
        if token not in TOKENS:
            raise ProblemError(f"variant {name!r}: unknown token {token!r}; {GRAMMAR}.")
        field, value = TOKENS[token]
        if field not in fields:
            raise ProblemError(f"variant {name!r}: {token} sets {field}, which {algo} does not "
                               f"have; {GRAMMAR}.")
        if field in seen:
            raise ProblemError(f"variant {name!r}: {field} set twice; {GRAMMAR}.")
        seen.add(field)
        options[field] = value
    return Variant(name, algo, tuple(options.items()))


def parse_variants(names: str | Sequence[str]) -> list[Variant]:
    """Comma-separated variant names (or a list of them) -> Variants; duplicates are an error."""
    text = names if isinstance(names, str) else ",".join(names)
    listed = [n.strip() for n in text.split(",") if n.strip()]
    if not listed:
        raise ProblemError(f"no variants given; {GRAMMAR}.")
    if len(set(listed)) != len(listed):
        raise ProblemError(f"variant listed twice in {text!r}.")
    return [parse_variant(n) for n in listed]


def run_options(variant: Variant, common: Mapping[str, Any],
                only_known: bool = False) -> dict[str, Any]:
    """The variant's options plus the common ones (-o); a common option may not change a field
    that the variant's name sets. only_known: drop the common options that the variant's
    algorithm does not have (comparisons across algorithms with different configs)."""
    own = variant.option_dict
    clash = sorted(k for k in common if k in own and common[k] != own[k])
    if clash:
        raise ProblemError(
            f"-o {', '.join(clash)} conflicts with variant {variant.name!r}, whose name sets "
            f"{', '.join(f'{k}={own[k]!r}' for k in clash)}; use the name tokens instead."
        )
    if only_known:
        fields = config_fields(variant.algo)
        common = {k: v for k, v in common.items() if k in fields}
    return {**common, **own}


def check_common_options(variants: Sequence[Variant], common: Mapping[str, Any]) -> None:
    """ProblemError for a common option that no compared algorithm has (a typo)."""
    fields = set().union(*(config_fields(v.algo) for v in variants))
    unknown = sorted(set(common) - fields)
    if unknown:
        raise ProblemError(f"option(s) {unknown} belong to none of the compared algorithms "
                           f"({', '.join(sorted({v.algo for v in variants}))}).")


# ---------------------------------------------------------------------------------------------
# Curves and aggregation (pure NumPy).


def step_interpolate(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Step-wise reading of a curve: y at the last x <= g for each g of grid, NaN where g is
    below x[0] or beyond x[-1] (the run ended there: its curve must not look like it went on).
    x (n,) non-decreasing, y (n,), grid (G,) -> (G,)."""
    x, y, grid = (np.asarray(a, dtype=np.float64) for a in (x, y, grid))
    if not y.size:
        return np.full(grid.shape, np.nan)
    index = np.searchsorted(x, grid, side="right") - 1
    out = y[np.clip(index, 0, None)]
    return np.where((index >= 0) & (grid <= x[-1]), out, np.nan)


def log_grid(curves: Sequence[np.ndarray], points: int = 120) -> np.ndarray:
    """A common log-spaced grid (G,) from the smallest positive x of any curve to the largest;
    curves: x arrays (n_i,). Empty when no curve has a positive x."""
    values = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in curves] or [[]])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return np.zeros(0)
    lo, hi = float(values.min()), float(values.max())
    return np.array([lo]) if hi <= lo else np.geomspace(lo, hi, points)


def aggregate(values: np.ndarray) -> dict[str, np.ndarray]:
    """Median and quartiles over seeds of values (S, G) -> median, q25, q75 (G,) each; a grid
    point where some seed has no value yet (NaN) gets NaN: a statistic over all seeds or none."""
    values = np.asarray(values, dtype=np.float64)
    complete = ~np.isnan(values).any(axis=0)
    filled = np.where(complete, values, 0.0)
    q25, median, q75 = np.percentile(filled, [25, 50, 75], axis=0)
    return {name: np.where(complete, q, np.nan)
            for name, q in (("median", median), ("q25", q25), ("q75", q75))}


def first_reach(x: np.ndarray, gap: np.ndarray, threshold: float) -> float | None:
    """x at the first evaluation with gap <= threshold (x (n,), gap (n,)); None if never."""
    hits = np.flatnonzero(np.asarray(gap, dtype=np.float64) <= threshold)
    return float(np.asarray(x)[hits[0]]) if hits.size else None


def quartiles(values: Sequence[float]) -> dict[str, float]:
    """median, q25, q75 of a list of numbers (over seeds)."""
    q25, median, q75 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75)}


def median_reach(per_seed: Sequence[float | None]) -> float | None:
    """Median over seeds of a crossing point; None when some seed never crossed."""
    if not per_seed or any(v is None for v in per_seed):
        return None
    return float(np.median(per_seed))


def read_curve(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """CURVE_KEYS columns of a run's metrics.csv, each (n_evaluations,) float64."""
    from rlto.runs import RunDir

    rows = RunDir(run_dir).read_metrics()
    return {k: np.array([np.nan if r.get(k) is None else float(r[k]) for r in rows])
            for k in CURVE_KEYS}


def variant_curves(curves: Sequence[Mapping[str, np.ndarray]], x_key: str,
                   grid: np.ndarray) -> dict[str, np.ndarray]:
    """Median/IQR over seeds of test_gap vs x_key on grid: grid, median, q25, q75 (G,)."""
    values = np.stack([step_interpolate(c[x_key], c["test_gap"], grid) for c in curves])
    return {"grid": grid, **aggregate(values)}


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Over seeds: final gap quartiles, median wall seconds and sim calls, crossings, and the
    quartiles of the share within 1% of J* and of the precision where every run has them
    (older JSON files, and problems without a task space, do not)."""
    within = [r.get("final_within_1_percent") for r in runs]
    precision = [r.get("final_precision") for r in runs]
    return {
        **({"within_1_percent": quartiles(within)} if None not in within else {}),
        **({"final_precision": quartiles(precision)} if None not in precision else {}),
        "final_gap": quartiles([r["final_gap"] for r in runs]),
        "final_sim_calls_median": float(np.median([r["final_sim_calls"] for r in runs])),
        "wall_seconds_median": float(np.median([r["wall_seconds"] for r in runs])),
        "sim_calls_to_gap": {f"{t:g}": median_reach([r["sim_calls_to_gap"][f"{t:g}"]
                                                      for r in runs]) for t in THRESHOLDS},
    }


def run_record(seed: int, run_dir: str, curve: Mapping[str, np.ndarray],
               report=None) -> dict[str, Any]:
    """One (variant, seed): final numbers, crossings and the curve's points; with the final
    evaluation `report`, also its share of instances within 1% of J*, median gap (percent) and
    precision (median final task-space distance; None without a task space)."""
    final = {} if report is None else {
        "final_within_1_percent": 100.0 * report.within_1_percent,
        "final_median_gap": report.median_gap_percent,
        "final_precision": None if math.isnan(report.precision) else report.precision,
    }
    return {
        **final,
        "seed": seed,
        "run_dir": run_dir,
        "iterations": int(curve["iteration"][-1]),
        "final_gap": float(curve["test_gap"][-1]),
        "final_sim_calls": float(curve["sim_calls"][-1]),
        "wall_seconds": float(curve["wall_seconds"][-1]),
        "sim_calls_to_gap": {f"{t:g}": first_reach(curve["sim_calls"], curve["test_gap"], t)
                             for t in THRESHOLDS},
        "curve": {k: v.tolist() for k, v in curve.items()},
    }


MODEL_FREE = ("ppo", "sac", "td3", "ddpg")
"""Algorithms that learn from rewards alone (the stable-baselines3 baselines): the references of
the sample-efficiency ratios (seed 002, Figs. 2-3)."""
BUDGET_FACTOR = 10.0
"""Fig. 2's margin: a variant's best gap within 1/BUDGET_FACTOR of a baseline's calls is set
against the baseline's best over all of them."""


def _curve(run: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A run record's (sim_calls, test_gap) arrays."""
    return (np.asarray(run["curve"]["sim_calls"], dtype=np.float64),
            np.asarray(run["curve"]["test_gap"], dtype=np.float64))


def baseline_reach(baseline_runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """A baseline's final gap and what it cost: gap = median over seeds of the final test gap
    (percent); calls = median over seeds of the simulator calls at the first evaluation with
    gap <= that median, a seed that never got there counting its whole run (its final calls,
    which favours the baseline)."""
    gap = float(np.median([r["final_gap"] for r in baseline_runs]))
    calls = []
    for run in baseline_runs:
        x, y = _curve(run)
        reached = first_reach(x, y, gap)
        calls.append(float(x[-1]) if reached is None else reached)
    return {"gap": gap, "calls": float(np.median(calls))}


def best_gap_within(runs: Sequence[Mapping[str, Any]], calls: float) -> float | None:
    """Median over seeds of the lowest test gap each run reached within its first `calls`
    simulator calls (a run that stopped earlier: over its whole run); None when some run had no
    evaluation by then."""
    best = []
    for run in runs:
        x, y = _curve(run)
        if not (x <= calls).any():
            return None
        best.append(float(np.nanmin(np.where(x <= calls, y, np.inf))))
    return float(np.median(best))


def efficiency_against(baseline_runs: Sequence[Mapping[str, Any]],
                       runs: Sequence[Mapping[str, Any]],
                       factor: float = BUDGET_FACTOR) -> dict[str, Any]:
    """How a variant's runs compare with a model-free baseline's (seed 002, Figs. 2-3).

    Efficiency (Fig. 3): baseline_gap and baseline_calls, the baseline's final gap and the calls
    it took (`baseline_reach`); calls, the median over the variant's seeds of the calls at its
    first evaluation with gap <= baseline_gap (None when some seed never got there); ratio =
    baseline_calls / calls (10: the same gap with 10x fewer simulator calls).
    Precision (Fig. 2): baseline_best, the median over seeds of the lowest gap the baseline
    reached in its whole run of baseline_final_calls (median); best_within, the variant's
    (`best_gap_within`) within baseline_final_calls / factor: below baseline_best, the variant
    reached a gap the baseline did not reach with `factor` times its budget."""
    reach = baseline_reach(baseline_runs)
    calls = median_reach([first_reach(*_curve(r), reach["gap"]) for r in runs])
    baseline_final = float(np.median([r["final_sim_calls"] for r in baseline_runs]))
    return {
        "baseline_gap": reach["gap"],
        "baseline_calls": reach["calls"],
        "calls": calls,
        "ratio": None if calls is None else reach["calls"] / max(calls, 1.0),
        "baseline_best": float(np.median([np.nanmin(_curve(r)[1]) for r in baseline_runs])),
        "baseline_final_calls": baseline_final,
        "factor": float(factor),
        "best_within": best_gap_within(runs, baseline_final / factor),
    }


def efficiency_table(variants: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`efficiency_against` for every (model-free variant, other variant) pair with runs: a list
    of dicts with the two names added ("baseline", "variant"); empty without both kinds."""
    baselines = [n for n, v in variants.items() if v["algo"] in MODEL_FREE and v["runs"]]
    others = [n for n, v in variants.items() if v["algo"] not in MODEL_FREE and v["runs"]]
    return [{"baseline": b, "variant": m,
             **efficiency_against(variants[b]["runs"], variants[m]["runs"])}
            for b in baselines for m in others]


EFFICIENCY_HEADER = ["variant", "baseline", "baseline final gap %", "baseline calls to it",
                     "variant calls to it", "ratio", "baseline best gap % (its calls)",
                     f"variant best gap % within 1/{BUDGET_FACTOR:g} of them"]


def efficiency_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The efficiency table as markdown lines (empty for no rows)."""
    if not rows:
        return []
    lines = [
        "Against the model-free baselines (seed 002, Figs. 2-3): the baseline's final gap "
        "(median over seeds) and the simulator calls it took (median over seeds of its first "
        "evaluation at or below it; a seed that never got there counts its whole run); the "
        "variant's calls to the same gap (median over seeds; 'not reached' if some seed never "
        "got there) and the ratio of the two (10: the baseline's gap with 10x fewer calls); "
        "the lowest gap the baseline reached in its whole run (median over seeds; its final "
        f"calls, median) and the variant's lowest gap within 1/{BUDGET_FACTOR:g} of those calls "
        "(median over seeds; '-': some seed had no evaluation by then): below the baseline's, "
        f"the variant reached a gap the baseline did not reach with {BUDGET_FACTOR:g}x its "
        "budget.",
        "",
    ]
    cells = [[r["variant"], r["baseline"], fmt(r["baseline_gap"]), fmt(r["baseline_calls"]),
              "not reached" if r["calls"] is None else fmt(r["calls"]),
              "-" if r["ratio"] is None else f"{r['ratio']:.3g}x",
              f"{fmt(r['baseline_best'])} ({fmt(r['baseline_final_calls'])})",
              fmt(r["best_within"])] for r in rows]
    return lines + markdown_table(EFFICIENCY_HEADER, cells)


def precision_record(report) -> dict[str, Any]:
    """Per test instance of an evaluation Report: relative cost gap (J_pi - J*) / |J*| and final
    task-space error (None without a task space), for the precision figure (seed 002, Fig. 2)."""
    relative = (report.policy_cost - report.optimum_cost) / np.maximum(
        np.abs(report.optimum_cost), 1e-12)
    final = None if report.final_error is None else np.asarray(report.final_error).tolist()
    return {"relative_gap": np.asarray(relative).tolist(), "final_error": final}


def add_curves(variants: dict[str, dict], points: int) -> dict[str, np.ndarray]:
    """Per variant entry with runs, median/IQR curves on common grids (one per x axis), stored
    as entry["aggregate"][x_key]; returns the grids."""
    grids = {}
    for x_key in X_AXES:
        xs = [np.asarray(r["curve"][x_key]) for v in variants.values() for r in v["runs"]]
        grid = log_grid(xs, points)
        grids[x_key] = grid
        for entry in variants.values():
            if entry["runs"]:
                curves = [{k: np.asarray(v) for k, v in r["curve"].items()}
                          for r in entry["runs"]]
                entry.setdefault("aggregate", {})[x_key] = variant_curves(curves, x_key, grid)
    return grids


def jsonable(value: Any) -> Any:
    """Strict JSON data: arrays/tuples as lists, NumPy scalars as numbers, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | list | tuple):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def machine() -> dict[str, Any]:
    """Where and when something ran: platform, CPUs, Python and JAX versions, JAX device, the
    load average at the start and the date."""
    import jax

    device = jax.devices()[0]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "load_average_start": list(os.getloadavg()),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------
# Running.


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One (variant, seed) training run, sent to a worker process (plain data: picklable)."""

    problem: str
    overrides: tuple[tuple[str, Any], ...]
    variant: Variant
    seed: int
    options: tuple[tuple[str, Any], ...]
    seconds: float | None
    iterations: int | None
    max_sim_calls: int | None
    test_size: int
    warmup: bool
    path: str
    select_best: int = 0


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train one run from scratch (deleting what `spec.path` held) and return its run_record,
    with seed 0's precision record; an exception comes back as {"error", "traceback"} so that
    one failing run never stops the others."""
    try:
        import rlto

        problem = rlto.make(spec.problem, **dict(spec.overrides))
        path = Path(spec.path)
        budget = {"seconds": spec.seconds, "iterations": spec.iterations,
                  "max_sim_calls": spec.max_sim_calls}
        if spec.warmup:
            # One iteration in a scratch directory compiles what the run will use, so that JIT
            # compilation is not in its wall seconds (SB3's PyTorch has none to exclude).
            scratch = path.with_name(path.name + "-warmup")
            shutil.rmtree(scratch, ignore_errors=True)
            rlto.train(problem, spec.variant.algo, seed=spec.seed, iterations=1, out=scratch,
                       test_size=spec.test_size, progress=False, **dict(spec.options))
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        result = rlto.train(problem, spec.variant.algo, seed=spec.seed, out=path,
                            test_size=spec.test_size, progress=False, **budget,
                            select_best=spec.select_best, **dict(spec.options))
        record = run_record(spec.seed, os.fspath(path), read_curve(path), result.report)
        if spec.seed == 0:
            record["precision"] = precision_record(result.report)
        return record
    except Exception as err:  # reported per run; the comparison goes on
        return {"seed": spec.seed, "error": repr(err), "traceback": traceback.format_exc()}


def default_jobs() -> int:
    """Parallel runs by default: half the CPUs (each JAX process uses several threads)."""
    return max(1, (os.cpu_count() or 2) // 2)


def compare(
    problem: str,
    variants: str | Sequence[str],
    seeds: int = 3,
    seconds: float | None = None,
    iterations: int | None = None,
    max_sim_calls: int | None = None,
    options: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    out: str | os.PathLike = "runs/compare",
    test_size: int = 100,
    jobs: int | None = None,
    warmup: bool = True,
    grid_points: int = 120,
    progress: bool = True,
    command_line: str = "",
    select_best: int = 0,
) -> dict[str, Any]:
    """Train every variant for seeds 0..seeds-1 on `problem` (a built-in name) under the same
    budget (seconds, iterations and/or max_sim_calls: whichever ends first), then write
    compare_<problem>.{json,md,png} and compare_precision_<problem>.png to `out`. Returns the
    result dict (as in the JSON). options: algorithm config fields applied to every variant whose
    algorithm has them; jobs: runs in parallel processes (default half the CPUs); select_best:
    validation draws of every run's policy selection (rlto.train; 0: the latest iterate)."""
    import rlto
    from rlto.training import algorithm_config, check_select_best

    if seconds is None and iterations is None and max_sim_calls is None:
        raise ProblemError("compare needs a budget: seconds, iterations or max_sim_calls.")
    if int(seeds) < 1:
        raise ProblemError(f"seeds must be a positive integer, got {seeds}.")
    check_select_best(select_best)  # before any run starts
    chosen = parse_variants(variants)
    common = dict(options or {})
    overrides = dict(overrides or {})
    check_common_options(chosen, common)
    resolved = {v.name: run_options(v, common, only_known=True) for v in chosen}
    for v in chosen:  # bad values fail here, before any training
        algorithm_config(v.algo, resolved[v.name])
    problem_name = rlto.make(problem, **overrides).name
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = default_jobs() if jobs is None else int(jobs)
    specs = [RunSpec(problem, tuple(overrides.items()), v, seed, tuple(resolved[v.name].items()),
                     seconds, iterations, max_sim_calls, test_size, warmup,
                     os.fspath(out / "runs" / v.name / f"seed{seed}"), int(select_best))
             for v in chosen for seed in range(int(seeds))]
    result: dict[str, Any] = {
        "settings": {
            "command_line": command_line, "problem": problem_name, "problem_overrides": overrides,
            "variants": [{"name": v.name, "algo": v.algo, "options": resolved[v.name]}
                         for v in chosen],
            "seeds": int(seeds), "seconds": seconds, "iterations": iterations,
            "max_sim_calls": max_sim_calls, "test_size": test_size, "common_options": common,
            "warmup": warmup, "jobs": jobs, "thresholds_percent": list(THRESHOLDS),
            "select_best": int(select_best),
            "out": os.fspath(out),
        },
        "machine": machine(),
        "variants": {v.name: {"algo": v.algo, "options": resolved[v.name], "runs": [],
                              "errors": []} for v in chosen},
    }
    for spec, record in zip(specs, _run_all(specs, jobs, progress), strict=True):
        entry = result["variants"][spec.variant.name]
        if "error" in record:
            entry["errors"].append(record)
            continue
        precision = record.pop("precision", None)
        if precision is not None:
            entry["precision"] = precision
        entry["runs"].append(record)
    for entry in result["variants"].values():
        entry["runs"].sort(key=lambda r: r["seed"])
        if entry["runs"]:
            entry.update(summarize_runs(entry["runs"]))
    result["grids"] = add_curves(result["variants"], grid_points)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    write_outputs(out, result)
    return result


def _run_all(specs: Sequence[RunSpec], jobs: int, progress: bool) -> list[dict[str, Any]]:
    """Records of all runs, in the order of specs: in this process for jobs == 1, else in a
    pool of `jobs` spawned processes (fork would copy JAX's threads); a progress bar counts
    finished runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    records: list[dict[str, Any] | None] = [None] * len(specs)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not progress, transient=False) as bar:
        task = bar.add_task(f"compare: {len(specs)} runs, {jobs} at a time", total=len(specs))
        if jobs <= 1:
            for i, spec in enumerate(specs):
                records[i] = run_one(spec)
                bar.advance(task)
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
                futures = {pool.submit(run_one, spec): i for i, spec in enumerate(specs)}
                for future in concurrent.futures.as_completed(futures):
                    records[futures[future]] = future.result()
                    bar.advance(task)
    return records


# ---------------------------------------------------------------------------------------------
# Outputs.


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


TABLE_HEADER = ["variant", "final gap % median [IQR]", "within 1% of J* % median [IQR]",
                "sim calls to 1%", "sim calls to 10%", "final sim calls", "wall s"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table's lines: header, separator, one line per row of cells."""
    return ["| " + " | ".join(cells) + " |" for cells in (header, ["---"] * len(header), *rows)]


def quartiles_text(q: Mapping[str, float]) -> str:
    """A `quartiles` summary as "median [q25, q75]", 3 significant digits each."""
    return f"{fmt(q['median'])} [{fmt(q['q25'])}, {fmt(q['q75'])}]"


def precision_text(summary: Mapping[str, Any]) -> str:
    """A variant's precision in metres, "median [q25, q75]" over seeds, or "-" where it has
    none (no task space, or runs that predate the measure)."""
    p = summary.get("final_precision")
    return "-" if p is None else quartiles_text(p)


def within_text(summary: Mapping[str, Any]) -> str:
    """A variant's share of test instances within 1% of J*: "median [q25, q75]" over seeds, or
    "-" where its runs predate the measure."""
    w = summary.get("within_1_percent")
    return "-" if w is None else f"{w['median']:.0f} [{w['q25']:.0f}, {w['q75']:.0f}]"


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """One row of strings per variant: the columns of TABLE_HEADER."""
    rows = []
    for name, v in result["variants"].items():
        failed = f" ({len(v['errors'])} failed)" if v["errors"] else ""
        if not v["runs"]:
            rows.append([name + failed, "failed"] + ["-"] * (len(TABLE_HEADER) - 2))
            continue
        reach = [fmt(c, 3) if c is not None else "not reached"
                 for c in (v["sim_calls_to_gap"][f"{t:g}"] for t in THRESHOLDS)]
        rows.append([name + failed, quartiles_text(v["final_gap"]),
                     within_text(v), *reach, fmt(v["final_sim_calls_median"]),
                     f"{v['wall_seconds_median']:.1f}"])
    return rows


def budget_text(settings: Mapping[str, Any]) -> str:
    """e.g. "20 s, 10^6 sim calls" (whichever ends first)."""
    parts = [f"{settings['seconds']:g} s" if settings.get("seconds") is not None else "",
             f"{settings['iterations']} iterations" if settings.get("iterations") else "",
             f"{settings['max_sim_calls']:g} sim calls" if settings.get("max_sim_calls") else ""]
    return ", ".join(p for p in parts if p)


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison as a markdown page: settings, table, failed runs."""
    s, m = result["settings"], result["machine"]
    lines = [
        f"# Comparison on {s['problem']}",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} CPUs, {m['platform']}, JAX on "
        f"{m['jax_device']} (jax {m['jax']}); {m['date']}. "
        + (f"Command: `{s['command_line']}`." if s["command_line"] else ""),
        "",
        f"{s['seeds']} seeds per variant, {s['jobs']} runs at a time; budget per run: "
        f"{budget_text(s)} (whichever ends first; the iteration that crosses the sim-call "
        f"budget completes); test set M = {s['test_size']}; common options: "
        f"{s['common_options'] or 'none'}. " + selection_note(s)
        + "Final gap: median and interquartile range over seeds "
        "of the last test gap (percent, mean policy cost over mean J*). " + WITHIN_NOTE
        + "Sim calls to X%: median "
        "over seeds of the simulator calls at the first evaluation with gap <= X% ('not "
        "reached' if some seed never got there). Wall s: median training wall seconds (steps "
        "only, not evaluations"
        + ("; JIT compilation excluded by a warm-up iteration" if s["warmup"]
           else "; includes JIT compilation") + ").",
        "",
        *markdown_table(TABLE_HEADER, table_rows(result)),
    ]
    efficiency = efficiency_lines(efficiency_table(result["variants"]))
    if efficiency:
        lines += ["", *efficiency]
    errors = [(n, e) for n, v in result["variants"].items() for e in v["errors"]]
    if errors:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {n} seed {e['seed']}: `{e['error']}`" for n, e in errors]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, result: Mapping[str, Any]) -> None:
    """compare_<problem>.json, .md, .png and compare_precision_<problem>.png in out."""
    import json

    stem = f"compare_{result['settings']['problem']}"
    (out / f"{stem}.json").write_text(json.dumps(jsonable(result), indent=1,
                                                 allow_nan=False) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    write_curves_plot(out / f"{stem}.png", result)
    write_precision_plot(out / f"compare_precision_{result['settings']['problem']}.png", result)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_ticks(axis, grid: np.ndarray) -> None:
    """Readable labels on a log axis over grid (G,): 1, 2, 5 x 10^k below three decades, the
    decades above; never the crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if grid.size and grid[-1] < 1e3 * grid[0]:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(power_label))
    axis.set_minor_formatter(NullFormatter())


def power_label(x: float, _position=None) -> str:
    """5e4 -> "$5\\times10^{4}$", 1e5 -> "$10^{5}$", 0.5 -> "$0.5$", 200 -> "$200$"."""
    if not x > 0:
        return ""
    k = math.floor(math.log10(x) + 1e-9)
    mantissa = round(x / 10.0**k, 6)
    if -2 <= k <= 2:
        return f"${mantissa * 10.0**k:g}$"
    return f"$10^{{{k}}}$" if mantissa == 1 else f"${mantissa:g}\\times10^{{{k}}}$"


def gap_axis_limits(result: Mapping[str, Any], x_key: str) -> tuple[float, float] | None:
    """(bottom, top) of a curves plot's gap axis: from half the lowest of the variants' median
    curves (or of the thresholds) to 10x their 95th percentile; None when no variant has a
    median curve. The top keeps the 1e100 % of a seed whose rollouts diverged for a few
    evaluations from squashing every other curve onto one line."""
    medians = [np.asarray(v["aggregate"][x_key]["median"], dtype=np.float64)
               for v in result["variants"].values() if x_key in v.get("aggregate", {})]
    values = np.concatenate(medians) if medians else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return None
    return (0.5 * min(values.min(), *THRESHOLDS), float(10 * np.percentile(values, 95)))


def write_curves_plot(path: Path, result: Mapping[str, Any]) -> None:
    """Two panels (sim calls, wall seconds): per variant median gap and IQR band (where every
    seed has a value) over thin per-seed curves, log-log."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (x_key, label) in zip(axes, X_AXES.items(), strict=True):
        for i, (name, v) in enumerate(result["variants"].items()):
            color = f"C{i}"
            for run in v["runs"]:  # each seed, thin: visible even where seeds do not overlap
                ax.plot(run["curve"][x_key], run["curve"]["test_gap"], color=color, lw=0.6,
                        alpha=0.35)
            curve = v.get("aggregate", {}).get(x_key)
            if curve is None:
                continue
            grid, med, q25, q75 = (np.asarray(curve[k], dtype=np.float64)
                                   for k in ("grid", "median", "q25", "q75"))
            ax.plot(grid, med, color=color, lw=2, label=f"{name} (n={len(v['runs'])})")
            ax.fill_between(grid, q25, q75, color=color, alpha=0.2, lw=0)
        for t in THRESHOLDS:
            ax.axhline(t, color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log", nonpositive="mask")
        limits = gap_axis_limits(result, x_key)
        if limits is not None and ax.get_ylim()[1] > limits[1]:
            ax.set_ylim(*limits)
            ax.text(0.99, 0.99, "higher values off the axis", transform=ax.transAxes,
                    ha="right", va="top", fontsize=7, color="0.4")
        _log_ticks(ax.xaxis, np.asarray(result["grids"][x_key], dtype=np.float64))
        ax.set_xlabel(label)
        ax.set_ylabel("test gap (%)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    s = result["settings"]
    fig.suptitle(f"{s['problem']}: median test gap and interquartile band over "
                 f"{s['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_precision_plot(path: Path, result: Mapping[str, Any]) -> None:
    """Box plots over the test set of seed 0's policy: relative cost gap to J* and final
    task-space error, per variant, log scales (seed 002, Fig. 2: precision)."""
    plt = pyplot()
    records = {n: v["precision"] for n, v in result["variants"].items() if "precision" in v}
    panels = [("relative_gap", "(J_pi - J*) / |J*| per test instance")]
    if any(r["final_error"] is not None for r in records.values()):
        panels.append(("final_error", "final task-space error ||p(x_T) - p*||"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1, 4.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        names = [n for n, r in records.items() if r[key] is not None]
        # Floors keep instances where the policy matches or beats J* on the log axis.
        data = [np.maximum(np.nan_to_num(np.asarray(records[n][key], dtype=float),
                                         nan=np.inf), 1e-8) for n in names]
        ax.boxplot([d[np.isfinite(d)] for d in data], whis=(5, 95), showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{result['settings']['problem']}: precision of seed 0's policy "
                 "(seed 002, Fig. 2; whiskers 5-95%, floor 1e-8)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
