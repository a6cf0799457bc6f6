"""Consensus benchmark: seed 002's learning curves (Figs. 4-6) and warm-start study (Fig. 7).

Each variant (an algorithm and ablation switches, named by the grammar below) is trained with
rlto.train for several seeds on one problem. Every run's metrics.csv gives a curve of the test
gap (percent) against simulator calls and against training wall seconds; on a common log-spaced
grid each seed's curve is read step-wise (the last evaluation at or before the grid value, NaN
before its first evaluation), and the median and interquartile band over seeds are plotted. Then
seed 0's final policy of each variant warm-starts the TO solver on the test set (Fig. 7:
iterations from the policy's rollout vs from the problem's default start: zero controls, or its
initial_controls).

Variant names are those of `rlto compare` (rlto.compare.GRAMMAR, which also gives this script
its curves and plots): an algorithm, then any of these suffix tokens (each at most once, where
the algorithm's config has the field):

    pddp | plal | ...    base algorithm, sobolev="none" where it has a Sobolev term
    +s                   sobolev="stochastic"       +fs   sobolev="full"
    +m                   shooting="multiple" (plal) +bcl  penalty="bcl" (plal)
    -c                   constrained=False (control bounds only in the policy's tanh)
    +best                warm_start="best" (pddp)

e.g. pddp, pddp+s, plal, plal+s, plal+s+m, plal+s-c, plal+s+bcl, plal+fs+m-c, ppo.

Runs go to <out>/runs/consensus-<problem>/<variant>/seed<k> (deleted first: every benchmark is
fresh). Writes <out>/consensus_<problem>.json (settings, machine, every curve, summaries),
consensus_<problem>.md (table), consensus_<problem>.png (curves) and warmstart_<problem>.png.

    python benchmarks/consensus.py --problem lqr --variants pddp,plal,plal+s,plal+s+m,plal+s-c \\
        --seeds 3 --seconds 20
    python benchmarks/consensus.py --quick --out /tmp/b          # smoke test (about a minute)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import rlto  # noqa: E402
from rlto.cli import _override as parse_override  # noqa: E402
from rlto.compare import (  # noqa: E402  the grammar, curves and plots rlto compare shares
    GRAMMAR,
    QUICK_OPTIONS,
    THRESHOLDS,
    WITHIN_NOTE,
    Variant,
    add_curves,
    fmt,
    jsonable,
    machine,
    markdown_table,
    parse_variants,
    precision_record,
    precision_text,
    pyplot,
    quartiles_text,
    read_curve,
    run_options,
    run_record,
    selection_note,
    summarize_runs,
    within_text,
    write_curves_plot,
    write_precision_plot,
)
from rlto.evaluate import evaluate, test_params, warm_start_study  # noqa: E402
from rlto.problem import ProblemError  # noqa: E402
from rlto.training import algorithm_config  # noqa: E402

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
    parser.add_argument("--select-best", type=int, default=0, metavar="V",
                        help="each run deploys its iterate of lowest mean cost on V validation "
                             "draws (rlto.train's select_best; default 0: the latest iterate)")
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
    if args.seeds < 1 or args.test_size < 1 or args.grid_points < 2 or args.select_best < 0:
        parser.error("--seeds and --test-size must be positive, --grid-points at least 2, "
                     "--select-best non-negative")
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be positive")
    if not args.seconds > 0:
        parser.error("--seconds must be positive (inf for no time limit)")
    args.common = {**(QUICK_OPTIONS if args.quick else {}), **dict(args.options)}
    args.seconds_budget = None if math.isinf(args.seconds) else args.seconds
    return args


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
                      test_size=args.test_size, progress=False, select_best=args.select_best,
                      **options)


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
        record = run_record(seed, os.fspath(path), read_curve(path), result.report)
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


# ---------------------------------------------------------------------------------------------
# Outputs.


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """One row of strings per variant: the columns of the markdown and console tables."""
    rows = []
    for name, v in result["variants"].items():
        if not v["runs"]:
            rows.append([name, "failed"] + ["-"] * (len(TABLE_HEADER) - 2))
            continue
        reach = [fmt(c, 3) if c is not None else "not reached"
                 for c in (v["sim_calls_to_gap"][f"{t:g}"] for t in THRESHOLDS)]
        w = v.get("warm_start")
        fig7 = "-" if w is None else (f"{w['iterations_policy_median']:g} / "
                                      f"{w['iterations_zero_median']:g}, "
                                      f"max {w['iterations_policy_max']}")
        failed = f" ({len(v['errors'])} failed)" if v["errors"] else ""
        rows.append([name + failed, quartiles_text(v["final_gap"]),
                     within_text(v), precision_text(v), *reach, f"{v['wall_seconds_median']:.1f}",
                     fig7])
    return rows


TABLE_HEADER = ["variant", "final gap % median [IQR]", "within 1% of J* % median [IQR]",
                "precision m median [IQR]", "sim calls to 1%", "sim calls to 10%", "wall s",
                "Fig. 7: median it. policy / default start, max policy"]


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
        "mean policy cost over mean J*). " + selection_note(s) + WITHIN_NOTE
        + "Sim calls to X%: median over seeds of the simulator "
        "calls at the first evaluation with gap <= X% ('not reached' if any seed never got "
        "there). Wall s: median training wall seconds (steps only, not evaluations"
        + ("; JIT compilation excluded by a warm-up iteration" if s["warmup"]
           else "; includes JIT compilation of the first run") + "). "
        "Precision: the median over test instances of the final task-space distance "
        "||p - p*|| (m; '-' without a task space), median and IQR over seeds (seed 002's Fig. 2). "
        "Fig. 7: TO iterations on the test set from seed 0's policy rollout vs the problem's "
        "default start (zero controls, or its initial_controls).",
        "",
        *markdown_table(TABLE_HEADER, table_rows(result)),
    ]
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
             "| variant | n | it. policy | it. default | cost policy | cost default | fewer it. "
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


def write_warmstart_plot(path: Path, result: Mapping[str, Any]) -> None:
    """Box plots of TO iterations from seed 0's policy vs from the problem's default start."""
    plt = pyplot()
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
              labels=["warm start: seed 0's policy rollout", "default start"], fontsize=8,
              loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.set_title(f"{result['settings']['problem']}: warm-starting TO (seed 002, Fig. 7)")
    ax.grid(True, axis="y", alpha=0.3)
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
            "select_best": args.select_best,
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
