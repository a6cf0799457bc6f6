"""Consensus benchmark: seed 002's learning curves (Figs. 4-6) and warm-start study (Fig. 7).

Each variant (an algorithm and ablation switches, named by the grammar below) is trained with
rlto.train for several seeds on one problem. Every run's metrics.csv gives a curve of the test
gap (percent) against simulator calls and against training wall seconds; on a common log-spaced
grid each seed's curve is read step-wise (the last evaluation at or before the grid value, NaN
before its first evaluation), and the median and interquartile band over seeds are plotted. Then
seed 0's final policy of each variant warm-starts the TO solver on the test set (Fig. 7:
iterations from the policy's rollout vs from zero controls).

Variant names: a base algorithm, then any of these suffix tokens (each at most once):

    pddp | plal          base algorithm, sobolev="none"
    +s                   sobolev="stochastic"       +fs   sobolev="full"
    +m                   shooting="multiple" (plal) +bcl  penalty="bcl" (plal)
    -c                   constrained=False (control bounds only in the policy's tanh)

e.g. pddp, pddp+s, plal, plal+s, plal+s+m, plal+s-c, plal+s+bcl, plal+fs+m-c.

Runs go to <out>/runs/consensus-<problem>/<variant>/seed<k> (deleted first: every benchmark is
fresh). Writes <out>/consensus_<problem>.json (settings, machine, every curve, summaries),
consensus_<problem>.md (table), consensus_<problem>.png (curves) and warmstart_<problem>.png.

    python benchmarks/consensus.py --problem lqr --variants pddp,plal,plal+s,plal+s+m,plal+s-c \\
        --seeds 3 --seconds 20
    python benchmarks/consensus.py --quick --out /tmp/b          # smoke test (about a minute)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import re
import shlex
import shutil
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import rlto  # noqa: E402
from benchmarks import machine_info  # noqa: E402
from rlto.cli import _override as parse_override  # noqa: E402
from rlto.evaluate import evaluate, test_params, warm_start_study  # noqa: E402
from rlto.problem import ProblemError  # noqa: E402
from rlto.runs import RunDir  # noqa: E402
from rlto.training import algorithm_config  # noqa: E402

BASES = ("pddp", "plal")
TOKENS: dict[str, tuple[str, Any]] = {
    "+s": ("sobolev", "stochastic"),
    "+fs": ("sobolev", "full"),
    "+m": ("shooting", "multiple"),
    "-c": ("constrained", False),
    "+bcl": ("penalty", "bcl"),
    "+best": ("warm_start", "best"),
}
PLAL_ONLY = ("+m", "+bcl")
PDDP_ONLY = ("+best",)
GRAMMAR = (
    "a variant is BASE[TOKENS]: BASE is pddp or plal (sobolev='none'); tokens, each at most "
    "once: +s (sobolev='stochastic'), +fs (sobolev='full'), +m (shooting='multiple', plal "
    "only), -c (constrained=False), +bcl (penalty='bcl', plal only), +best (warm_start='best', "
    "pddp only); e.g. plal+s+m, pddp+s-c, pddp+s+best"
)
THRESHOLDS = (1.0, 10.0)
"""Gaps (percent) whose first crossing (in simulator calls) the table reports."""
QUICK_OPTIONS = {"n_problems": 8, "epochs": 1, "batch_size": 64, "hidden": (16, 16),
                 "to_max_iter": 30}
"""--quick: algorithm options of a smoke test (-o still overrides them)."""
CURVE_KEYS = ("iteration", "sim_calls", "wall_seconds", "test_gap")
X_AXES = {"sim_calls": "simulator calls", "wall_seconds": "training wall seconds"}


# ---------------------------------------------------------------------------------------------
# Variants.


@dataclasses.dataclass(frozen=True)
class Variant:
    """A benchmarked configuration: rlto.train(problem, algo, **dict(options))."""

    name: str
    """As given on the command line, e.g. "plal+s+m"."""
    algo: str
    """"pddp" or "plal"."""
    options: tuple[tuple[str, Any], ...]
    """(field, value) pairs of the algorithm's config that the name sets, in token order."""

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


def parse_variant(name: str) -> Variant:
    """The Variant of a name such as "plal+s-c"; ProblemError (listing the grammar) if bad."""
    match = re.fullmatch(r"([a-z]+)((?:[+-][a-z]+)*)", name.strip())
    if match is None or match.group(1) not in BASES:
        raise ProblemError(f"unknown variant {name!r}; {GRAMMAR}.")
    algo, suffix = match.group(1), match.group(2)
    options: dict[str, Any] = {"sobolev": "none"}
    seen: set[str] = set()
    for token in re.findall(r"[+-][a-z]+", suffix):
        if token not in TOKENS:
            raise ProblemError(f"variant {name!r}: unknown token {token!r}; {GRAMMAR}.")
        if token in PLAL_ONLY and algo != "plal":
            raise ProblemError(f"variant {name!r}: {token} applies to plal only; {GRAMMAR}.")
        if token in PDDP_ONLY and algo != "pddp":
            raise ProblemError(f"variant {name!r}: {token} applies to pddp only; {GRAMMAR}.")
        field, value = TOKENS[token]
        if field in seen:
            raise ProblemError(f"variant {name!r}: {field} set twice; {GRAMMAR}.")
        seen.add(field)
        options[field] = value
    return Variant(name.strip(), algo, tuple(options.items()))


def parse_variants(text: str) -> list[Variant]:
    """Comma-separated variant names -> Variants (duplicates are an error)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ProblemError(f"no variants given; {GRAMMAR}.")
    if len(set(names)) != len(names):
        raise ProblemError(f"variant listed twice in {text!r}.")
    return [parse_variant(n) for n in names]


def run_options(variant: Variant, common: Mapping[str, Any]) -> dict[str, Any]:
    """The variant's options plus the common ones (-o, --quick); a common option may not change
    a field that the variant's name sets."""
    own = variant.option_dict
    clash = sorted(k for k in common if k in own and common[k] != own[k])
    if clash:
        raise ProblemError(
            f"-o {', '.join(clash)} conflicts with variant {variant.name!r}, whose name sets "
            f"{', '.join(f'{k}={own[k]!r}' for k in clash)}; use the name tokens instead."
        )
    return {**common, **own}


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
    rows = RunDir(run_dir).read_metrics()
    return {k: np.array([np.nan if r.get(k) is None else float(r[k]) for r in rows])
            for k in CURVE_KEYS}


def variant_curves(curves: Sequence[Mapping[str, np.ndarray]], x_key: str,
                   grid: np.ndarray) -> dict[str, np.ndarray]:
    """Median/IQR over seeds of test_gap vs x_key on grid: grid, median, q25, q75 (G,)."""
    values = np.stack([step_interpolate(c[x_key], c["test_gap"], grid) for c in curves])
    return {"grid": grid, **aggregate(values)}


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Over seeds: final gap quartiles, median wall seconds and sim calls, crossings."""
    return {
        "final_gap": quartiles([r["final_gap"] for r in runs]),
        "final_sim_calls_median": float(np.median([r["final_sim_calls"] for r in runs])),
        "wall_seconds_median": float(np.median([r["wall_seconds"] for r in runs])),
        "sim_calls_to_gap": {f"{t:g}": median_reach([r["sim_calls_to_gap"][f"{t:g}"]
                                                      for r in runs]) for t in THRESHOLDS},
    }


def run_record(seed: int, run_dir: str, curve: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """One (variant, seed): final numbers, crossings and the curve's points."""
    return {
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


# ---------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=GRAMMAR + ".")
    parser.add_argument("--problem", default="lqr", help="built-in problem (default: lqr)")
    parser.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append",
                        type=parse_override, default=[], help="a field of the problem's config")
    parser.add_argument("--variants", default="pddp,plal,plal+s,plal+s+m,plal+s-c",
                        help="comma-separated variant names (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..SEEDS-1 (default: 3)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="training wall seconds per run; inf for none (default: 20)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="outer iterations per run at most (whichever budget ends first)")
    # parse_override is rlto.cli's FIELD=VALUE reader (VALUE as JSON when it parses), so -o
    # reads values exactly as `rlto train -o` does.
    parser.add_argument("--option", "-o", dest="options", metavar="FIELD=VALUE",
                        action="append", type=parse_override, default=[],
                        help="algorithm config field for every variant, e.g. -o n_problems=32 "
                             "(VALUE read as JSON when it parses); repeatable")
    parser.add_argument("--test-size", type=int, default=100,
                        help="test-set size M of training evaluations and Fig. 7 (default 100)")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="before the timed runs, train each variant for one iteration in a "
                             "scratch directory so that JIT compilation is not in their wall "
                             "seconds (default: on, off with --quick)")
    parser.add_argument("--grid-points", type=int, default=120,
                        help="points of the log-spaced curve grids (default 120)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="output directory (default: benchmarks/results)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 seeds, 2 iterations, test size 8, tiny networks and "
                             f"batches ({', '.join(f'{k}={v}' for k, v in QUICK_OPTIONS.items())})")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.iterations, args.test_size = 2, 2, 8
    if args.warmup is None:
        args.warmup = not args.quick
    if args.seeds < 1 or args.test_size < 1 or args.grid_points < 2:
        parser.error("--seeds and --test-size must be positive, --grid-points at least 2")
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be positive")
    if not args.seconds > 0:
        parser.error("--seconds must be positive (inf for no time limit)")
    args.common = {**(QUICK_OPTIONS if args.quick else {}), **dict(args.options)}
    args.seconds_budget = None if math.isinf(args.seconds) else args.seconds
    return args


def machine() -> dict[str, Any]:
    """Where and when the benchmark ran."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return {**machine_info.machine(), "date": now}


# ---------------------------------------------------------------------------------------------
# Running.


def run_dir(out: Path, problem: str, variant: Variant, seed: int | str) -> Path:
    """<out>/runs/consensus-<problem>/<variant>/seed<k> (or /<seed> for a named scratch dir)."""
    leaf = f"seed{seed}" if isinstance(seed, int) else seed
    return out / "runs" / f"consensus-{problem}" / variant.name / leaf


def train_fresh(problem, variant: Variant, seed: int, path: Path, args, options: dict,
                iterations: int | None = None):
    """rlto.train into path after deleting what was there."""
    if path.exists():
        shutil.rmtree(path)
    return rlto.train(problem, variant.algo, seed=seed, seconds=args.seconds_budget,
                      iterations=iterations or args.iterations, out=path,
                      test_size=args.test_size, progress=False, **options)


def warm_start_summary(study: Mapping[str, Any]) -> dict[str, Any]:
    """The summary numbers of warm_start_study and its per-instance iteration counts."""
    keys = ("n", "tol", "max_iter", "iterations_policy_median", "iterations_policy_max",
            "iterations_zero_median", "iterations_zero_max", "cost_policy_mean",
            "cost_zero_mean", "share_fewer_iterations", "share_lower_cost",
            "iterations_policy", "iterations_zero")
    return {k: study[k] for k in keys}


def record_error(entry: dict, seed: int | str, err: Exception, console: Console,
                 variant: Variant) -> None:
    """Keep a failed run's error and traceback in the variant's entry, and say so."""
    entry["errors"].append({"seed": seed, "error": repr(err),
                            "traceback": traceback.format_exc()})
    console.print(f"[red]{variant.name} seed {seed} failed: {err!r}[/red]")


def run_variant(problem, variant: Variant, args, console: Console) -> dict[str, Any]:
    """Train every seed of one variant, then its Fig. 7 study; a failing run is recorded (with
    its traceback) and the other runs go on."""
    out = Path(args.out)
    options = run_options(variant, args.common)
    entry: dict[str, Any] = {"algo": variant.algo, "options": options, "runs": [], "errors": []}
    if args.warmup:
        scratch = run_dir(out, problem.name, variant, "warmup")
        console.print(f"{variant.name}: warm-up iteration (JIT compilation)")
        try:
            train_fresh(problem, variant, 0, scratch, args, options, iterations=1)
        except Exception as err:  # the seeds would fail the same way: skip the variant
            record_error(entry, "warmup", err, console, variant)
            return entry
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    policy0 = None
    for seed in range(args.seeds):
        path = run_dir(out, problem.name, variant, seed)
        try:
            result = train_fresh(problem, variant, seed, path, args, options)
        except Exception as err:  # report it and go on with the other runs
            record_error(entry, seed, err, console, variant)
            continue
        record = run_record(seed, os.fspath(path), read_curve(path))
        entry["runs"].append(record)
        policy0 = result.policy if seed == 0 else policy0
        console.print(f"{variant.name} seed {seed}: {record['iterations']} iterations, "
                      f"gap {record['final_gap']:.3g}%, {record['final_sim_calls']:.3g} sim "
                      f"calls, {record['wall_seconds']:.1f} s")
    if entry["runs"]:
        entry.update(summarize_runs(entry["runs"]))
    if policy0 is not None:
        console.print(f"{variant.name}: warm-start study (seed 0's policy)")
        params = test_params(problem, m=args.test_size)
        study = warm_start_study(problem, policy0, params)
        entry["warm_start"] = warm_start_summary(study)
        entry["precision"] = precision_record(evaluate(problem, policy0, params))
    return entry


def precision_record(report) -> dict[str, Any]:
    """Per test instance: relative cost gap (J_pi - J*) / |J*| and final task-space error (None
    without a task space), for the precision figure (seed 002, Fig. 2)."""
    relative = (report.policy_cost - report.optimum_cost) / np.maximum(
        np.abs(report.optimum_cost), 1e-12)
    final = None if report.final_error is None else np.asarray(report.final_error).tolist()
    return {"relative_gap": np.asarray(relative).tolist(), "final_error": final}


def add_curves(variants: dict[str, dict], points: int) -> dict[str, list]:
    """Per variant, median/IQR curves on common grids (one per x axis); returns the grids."""
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


# ---------------------------------------------------------------------------------------------
# Outputs.


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """One row of strings per variant: the columns of the markdown and console tables."""
    rows = []
    for name, v in result["variants"].items():
        if not v["runs"]:
            rows.append([name, "failed"] + ["-"] * 4)
            continue
        g = v["final_gap"]
        reach = [fmt(c, 3) if c is not None else "not reached"
                 for c in (v["sim_calls_to_gap"][f"{t:g}"] for t in THRESHOLDS)]
        w = v.get("warm_start")
        fig7 = "-" if w is None else (f"{w['iterations_policy_median']:g} / "
                                      f"{w['iterations_zero_median']:g}, "
                                      f"max {w['iterations_policy_max']}")
        failed = f" ({len(v['errors'])} failed)" if v["errors"] else ""
        rows.append([name + failed, f"{fmt(g['median'])} [{fmt(g['q25'])}, {fmt(g['q75'])}]",
                     *reach, f"{v['wall_seconds_median']:.1f}", fig7])
    return rows


TABLE_HEADER = ["variant", "final gap % median [IQR]", "sim calls to 1%", "sim calls to 10%",
                "wall s", "Fig. 7: median it. policy / zero, max policy"]


def write_markdown(path: Path, result: Mapping[str, Any]) -> None:
    s, m = result["settings"], result["machine"]
    budget = ", ".join(b for b in (
        f"{s['seconds']:g} s" if s["seconds"] is not None else "",
        f"{s['iterations']} iterations" if s["iterations"] else "") if b)
    lines = [
        f"# Consensus benchmark on {s['problem']}: policy-learning variants",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} CPUs, {m['platform']}, JAX on "
        f"{m['jax_device']} (jax {m['jax']}); {m['date']}. Command: `{s['command_line']}`.",
        "",
        f"{s['seeds']} seeds per variant; budget per run: {budget} (whichever ends first); "
        f"test set M = {s['test_size']}; common options: {s['common_options'] or 'none'}. "
        "Final gap: median and interquartile range over seeds of the last test gap (percent, "
        "mean policy cost over mean J*). Sim calls to X%: median over seeds of the simulator "
        "calls at the first evaluation with gap <= X% ('not reached' if any seed never got "
        "there). Wall s: median training wall seconds (steps only, not evaluations"
        + ("; JIT compilation excluded by a warm-up iteration" if s["warmup"]
           else "; includes JIT compilation of the first run") + "). "
        "Fig. 7: TO iterations on the test set from seed 0's policy rollout vs zero controls.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    lines += warm_start_lines(result)
    errors = [(n, e) for n, v in result["variants"].items() for e in v["errors"]]
    if errors:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {n} seed {e['seed']}: `{e['error']}`" for n, e in errors]
    lines += ["", f"Curves: consensus_{s['problem']}.png; warm starts: "
                  f"warmstart_{s['problem']}.png; all numbers: consensus_{s['problem']}.json."]
    path.write_text("\n".join(lines) + "\n")


def warm_start_lines(result: Mapping[str, Any]) -> list[str]:
    """Markdown lines: the Fig. 7 numbers of every variant that has them."""
    studies = {n: v["warm_start"] for n, v in result["variants"].items() if "warm_start" in v}
    if not studies:
        return []
    lines = ["", "Fig. 7 in full (seed 0's policy; TO tol and max_iter as in the JSON): "
                 "iterations median / max, mean final cost, share of instances where the "
                 "policy's warm start needs fewer iterations / reaches a lower cost.", "",
             "| variant | n | it. policy | it. zero | cost policy | cost zero | fewer it. "
             "| lower cost |", "|---|---|---|---|---|---|---|---|"]
    for name, w in studies.items():
        lines.append(
            f"| {name} | {w['n']} | {w['iterations_policy_median']:g} / "
            f"{w['iterations_policy_max']} | {w['iterations_zero_median']:g} / "
            f"{w['iterations_zero_max']} | {fmt(w['cost_policy_mean'], 6)} "
            f"| {fmt(w['cost_zero_mean'], 6)} | {w['share_fewer_iterations']:.0%} "
            f"| {w['share_lower_cost']:.0%} |"
        )
    return lines


def _pyplot():
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
        axis.set_major_formatter(FuncFormatter(_power_label))
    axis.set_minor_formatter(NullFormatter())


def _power_label(x: float, _position=None) -> str:
    """5e4 -> "$5\\times10^{4}$", 1e5 -> "$10^{5}$", 0.5 -> "$0.5$", 200 -> "$200$"."""
    if not x > 0:
        return ""
    k = math.floor(math.log10(x) + 1e-9)
    mantissa = round(x / 10.0**k, 6)
    if -2 <= k <= 2:
        return f"${mantissa * 10.0**k:g}$"
    return f"$10^{{{k}}}$" if mantissa == 1 else f"${mantissa:g}\\times10^{{{k}}}$"


def write_curves_plot(path: Path, result: Mapping[str, Any]) -> None:
    """Two panels (sim calls, wall seconds): per variant median gap and IQR band (where every
    seed has a value) over thin per-seed curves, log-log."""
    plt = _pyplot()
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


def write_warmstart_plot(path: Path, result: Mapping[str, Any]) -> None:
    """Box plots of TO iterations from seed 0's policy vs from zero controls, per variant."""
    plt = _pyplot()
    studies = {n: v["warm_start"] for n, v in result["variants"].items() if "warm_start" in v}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(studies) + 2), 4.5))
    for i, w in enumerate(studies.values()):
        for offset, key, color in ((-0.2, "iterations_policy", "C0"),
                                   (0.2, "iterations_zero", "C1")):
            ax.boxplot([w[key]], positions=[i + offset], widths=0.35, patch_artist=True,
                       boxprops={"facecolor": color, "alpha": 0.5},
                       medianprops={"color": "k"})
    ax.set_xticks(range(len(studies)), list(studies))
    ax.set_xlim(-0.6, max(len(studies), 1) - 0.4)
    ax.set_ylabel("TO iterations to converge")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.5) for c in ("C0", "C1")],
              labels=["warm start: seed 0's policy rollout", "zero controls"], fontsize=8,
              loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.set_title(f"{result['settings']['problem']}: warm-starting TO (seed 002, Fig. 7)")
    ax.grid(True, axis="y", alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_precision_plot(path: Path, result: Mapping[str, Any]) -> None:
    """Box plots over the test set of seed 0's policy: relative cost gap to J* and final
    task-space error, per variant, log scales (seed 002, Fig. 2: precision)."""
    plt = _pyplot()
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


def print_summary(console: Console, result: Mapping[str, Any]) -> None:
    table = Table(title=f"consensus benchmark: {result['settings']['problem']}")
    for column in TABLE_HEADER:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in table_rows(result):
        table.add_row(*row)
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit code 0, 1 when some run failed, 2 for a usage error."""
    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        variants = parse_variants(args.variants)
        problem = rlto.make(args.problem, **dict(args.overrides))
        for variant in variants:  # fail on bad options before any training
            algorithm_config(variant.algo, run_options(variant, args.common))
    except ProblemError as err:
        console.print(f"consensus.py: error: {err}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["benchmarks/consensus.py", *(sys.argv[1:] if argv is None else argv)])
    result: dict[str, Any] = {
        "settings": {
            "command_line": command, "problem": problem.name,
            "problem_overrides": dict(args.overrides),
            "variants": [{"name": v.name, "algo": v.algo, "options": v.option_dict}
                         for v in variants],
            "seeds": args.seeds, "seconds": args.seconds_budget, "iterations": args.iterations,
            "test_size": args.test_size, "common_options": args.common, "warmup": args.warmup,
            "quick": args.quick, "thresholds_percent": list(THRESHOLDS), "out": str(out),
        },
        "machine": machine(),
        "variants": {},
    }
    for variant in variants:
        result["variants"][variant.name] = run_variant(problem, variant, args, console)
    result["grids"] = add_curves(result["variants"], args.grid_points)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    stem = f"consensus_{problem.name}"
    (out / f"{stem}.json").write_text(json.dumps(jsonable(result), indent=1,
                                                 allow_nan=False) + "\n")
    write_markdown(out / f"{stem}.md", result)
    write_curves_plot(out / f"{stem}.png", result)
    write_warmstart_plot(out / f"warmstart_{problem.name}.png", result)
    write_precision_plot(out / f"precision_{problem.name}.png", result)
    print_summary(Console(width=max(Console().width, 140)), result)
    console.print(f"wrote {out / stem}.json, .md, .png, warmstart_{problem.name}.png and "
                  f"precision_{problem.name}.png")
    return 1 if any(v["errors"] for v in result["variants"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
