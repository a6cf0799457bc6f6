"""Command-line interface: `rlto problems`, `solve`, `train`, `eval`, `compare` and `bench`.

Each subcommand is a pair (add its arguments to a parser, run it on the parsed arguments and
return an exit code), listed in COMMANDS; `main` dispatches. Library errors that are the user's
to fix (an unknown problem name, bad options) print their message and exit 2, without traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK = 0
EXIT_USAGE = 2


# ---------------------------------------------------------------------------------------------
# Entry point.


def main(argv: list[str] | None = None) -> int:
    """Run the `rlto` command line with argv (default sys.argv[1:]); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for results that record it
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from rlto.problem import ProblemError

    try:
        return args.run(args)
    except ProblemError as err:
        print(f"rlto {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="rlto",
        description="Trajectory optimization and policy learning for families of OCPs.",
        epilog="Run `rlto COMMAND --help` for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


# ---------------------------------------------------------------------------------------------
# rlto problems


def add_problems_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rlto problems`."""
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of the problems instead of a table")


def run_problems(args: argparse.Namespace) -> int:
    """List the built-in problems: name, nx, nu, T, dt, control bounds, description."""
    import rlto

    rows = []
    with _spinner(not args.json) as status:
        for name in rlto.problem_names():
            status(f"building {name} (rlto.make checks every function once)")
            rows.append(problem_row(rlto.make(name)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Built-in problems (rlto.make(name))")
    for column in ("name", "nx", "nu", "T", "dt", "bounds", "description"):
        justify = "right" if column in ("nx", "nu", "T", "dt") else "left"
        table.add_column(column, justify=justify, no_wrap=column != "description")
    for row in rows:
        table.add_row(row["name"], str(row["nx"]), str(row["nu"]), str(row["horizon"]),
                      f"{row['dt']:g}", row["bounds"], row["description"])
    Console().print(table)
    return EXIT_OK


def problem_row(problem) -> dict:
    """One problem's dimensions, bounds and description, as plain JSON-able values."""
    return {
        "name": problem.name,
        "nx": problem.nx,
        "nu": problem.nu,
        "horizon": problem.horizon,
        "dt": float(problem.dt),
        "bounds": format_bounds(problem.u_lower, problem.u_upper),
        "constraints": problem.constraints is not None,
        "obstacles": len(problem.obstacles),
        "description": problem.description,
    }


def format_bounds(lower: np.ndarray, upper: np.ndarray) -> str:
    """Control bounds in a few characters: "none", "±2", "[0, 1]", or one entry per control."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if not (np.isfinite(lower).any() or np.isfinite(upper).any()):
        return "none"
    pairs = [_format_interval(lo, hi) for lo, hi in zip(lower, upper, strict=True)]
    if len(set(pairs)) == 1:
        return pairs[0]
    return " ".join(pairs)


def _format_interval(lo: float, hi: float) -> str:
    if np.isfinite(lo) and lo == -hi:
        return f"±{hi:g}"
    return f"[{lo:g}, {hi:g}]"


# ---------------------------------------------------------------------------------------------
# rlto solve


def add_solve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rlto solve`."""
    parser.add_argument("name", help="built-in problem name (see `rlto problems`)")
    parser.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append",
                        type=_override, default=[],
                        help="replace a field of the problem's config, e.g. --set horizon=50 "
                             "--set obstacles=constraint; VALUE is read as JSON when it parses "
                             "(numbers, true/false, lists), else as a string; repeatable")
    parser.add_argument("--n", type=_positive_int, default=256,
                        help="number of instances sampled and solved in one batch (default 256)")
    parser.add_argument("--seed", type=int, default=0,
                        help="instances are problem.sample(jax.random.key(SEED), N); --init random "
                             "draws from fold_in(key, 1) (default 0)")
    parser.add_argument("--init", choices=("zero", "random"), default="zero",
                        help="warm start: the problem's default controls (zero, or its "
                             "initial_controls: a reach to the IK pose on ur5), or controls "
                             "uniform within the bounds (within ±1 where a bound is infinite) "
                             "(default zero)")
    parser.add_argument("--max-iter", type=_positive_int, default=200,
                        help="DDP iterations per instance at most (default 200)")
    parser.add_argument("--tol", type=float, default=1e-6,
                        help="convergence tolerance on the expected improvement (default 1e-6)")
    parser.add_argument("--warmup", action="store_true",
                        help="solve once before the timed solve, so that the reported time "
                             "excludes JIT compilation (the batch is solved twice)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for result.json and plots "
                             "(default runs/solve-NAME-seedSEED)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as JSON only, without progress display")


def run_solve(args: argparse.Namespace) -> int:
    """Sample n instances, solve them in one batched call, print a summary, write files."""
    import jax

    from rlto.plots import plot_cost_histogram, plot_trajectories

    problem = make_problem(args.name, dict(args.overrides))
    out = args.out if args.out is not None else Path("runs") / f"solve-{args.name}-seed{args.seed}"
    key = jax.random.key(args.seed)
    params = problem.sample(key, args.n)  # the same instances as problem.sample(key(seed), n)
    random_init = args.init == "random"
    init = initial_controls(problem, jax.random.fold_in(key, 1), args.n) if random_init else None
    result, timing = _timed_solve(problem, params, init, args)

    summary = solve_summary(result, timing, out)
    out.mkdir(parents=True, exist_ok=True)
    with _spinner(not args.json) as status:
        status(f"writing plots to {out}")
        plot_trajectories(problem, result, out / "trajectories.png", params=params)
        plot_cost_histogram(result, out / "costs.png")
    record = {"summary": summary, "statuses": status_messages(result),
              "config": solve_config(problem, args), "files": ["trajectories.png", "costs.png"]}
    (out / "result.json").write_text(json.dumps(to_jsonable(record), indent=2) + "\n")

    if args.json:
        print(json.dumps(to_jsonable(summary), indent=2))
    else:
        print_solve_summary(problem, summary, status_messages(result), args)
    return EXIT_OK


def to_jsonable(value: Any) -> Any:
    """Strict JSON data (rlto.runs.to_jsonable, imported lazily to keep `--help` fast)."""
    from rlto.runs import to_jsonable as convert

    return convert(value)


def make_problem(name: str, overrides: dict):
    """rlto.make(name, **overrides); the factories reject unknown fields, listing the valid ones."""
    import rlto

    return rlto.make(name, **overrides)


def initial_controls(problem, key, n: int):
    """Random controls (n, T, nu), uniform within the bounds, within ±1 where a bound is inf.

    A one-sided bound keeps the interval at least 1 wide: (-inf, 0.5] draws from [-1, 0.5] and
    [2, inf) from [2, 3].
    """
    import jax
    import jax.numpy as jnp

    lower, upper = np.asarray(problem.u_lower), np.asarray(problem.u_upper)
    upper_or_one = np.where(np.isfinite(upper), upper, 1.0)
    lower_or_minus_one = np.where(np.isfinite(lower), lower, -1.0)
    lo = np.where(np.isfinite(lower), lower, np.minimum(-1.0, upper_or_one - 1.0))
    hi = np.where(np.isfinite(upper), upper, np.maximum(1.0, lower_or_minus_one + 1.0))
    shape = (n, problem.horizon, problem.nu)
    return jax.random.uniform(key, shape, jnp.float64, minval=lo, maxval=hi)


def _timed_solve(problem, params, init, args):
    """Solve (optionally after a warm-up solve), showing a spinner; return (result, timing)."""
    import rlto

    def call():
        return rlto.solve(problem, params, init=init, max_iter=args.max_iter, tol=args.tol)

    timing = {}
    with _spinner(not args.json) as status:
        if args.warmup:
            status(f"warm-up solve of {args.n} {problem.name} instances (includes JIT compile)")
            start = time.perf_counter()
            call()
            timing["warmup_wall_seconds"] = time.perf_counter() - start
            status(f"timed solve of {args.n} {problem.name} instances (compiled)")
        else:
            status(f"compiling and solving {args.n} {problem.name} instances")
        start = time.perf_counter()
        result = call()
        timing["wall_seconds"] = time.perf_counter() - start
    timing["includes_compile"] = not args.warmup
    return result, timing


class _spinner:
    """Context manager: a rich spinner with elapsed time on stderr when stderr is a terminal,
    plain status lines on stderr when it is not (logs, pipes), nothing when disabled (--json).

    Entering returns a function status(text) that changes the spinner's text.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress = None

    def __enter__(self) -> Callable[[str], None]:
        if not self.enabled:
            return lambda text: None
        if not sys.stderr.isatty():
            return lambda text: print(f"{text} ...", file=sys.stderr, flush=True)
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=Console(stderr=True),
                                 transient=True)
        self.progress.start()
        task = self.progress.add_task("", total=None)
        return lambda text: self.progress.update(task, description=text)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def solve_summary(result, timing: dict, out: Path) -> dict:
    """Result.summary() plus the wall time measured here and the output directory."""
    summary = dict(result.summary())
    summary.update(timing)
    summary["out"] = str(out)
    return summary


def status_messages(result) -> dict:
    """Status name -> {count, message} for every status that occurred."""
    from rlto.solver.result import Status

    codes = np.asarray(result.status)
    return {
        s.name.lower(): {"count": int(np.sum(codes == s)), "message": s.message}
        for s in Status
        if np.any(codes == s)
    }


def solve_config(problem, args: argparse.Namespace) -> dict:
    """The resolved configuration of a `rlto solve` run, for result.json."""
    config = problem.config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return {
        "problem": problem.name,
        "overrides": dict(args.overrides),
        "problem_config": config,
        "n": args.n,
        "seed": args.seed,
        "init": args.init,
        "max_iter": args.max_iter,
        "tol": args.tol,
        "warmup": args.warmup,
    }


def print_solve_summary(problem, summary: dict, statuses: dict, args) -> None:
    """A rich table of the summary, then one line per non-converged status with its advice."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    n = summary["n"]
    converged = summary["status_counts"].get("converged", 0)
    table = Table(title=f"rlto solve {problem.name}: {n} instances, seed {args.seed}, "
                        f"init {args.init}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("converged", f"{summary['converged_share']:.1%} ({converged}/{n})")
    table.add_row("iterations", f"median {summary['iterations_median']:g}, "
                                f"max {summary['iterations_max']} (max_iter {args.max_iter})")
    table.add_row("cost", _cost_line(summary))
    table.add_row("time", _time_line(summary))
    if summary.get("instances_per_second"):
        what = "includes JIT compilation" if summary["includes_compile"] else "compiled"
        table.add_row("throughput", f"{summary['instances_per_second']:.1f} instances/s "
                                    f"(n / solver seconds, {what})")
    table.add_row("output", f"{summary['out']}/ (result.json, trajectories.png, costs.png)")
    console.print(table)
    for name, entry in statuses.items():
        if name != "converged":
            console.print(f"[red]{entry['count']} {name}[/red]: {entry['message']}")


def _cost_line(summary: dict) -> str:
    """Cost statistics (over the finite costs, saying how many were not, when some were not)."""
    n, nonfinite = summary["n"], summary["cost_nonfinite"]
    if nonfinite == n:
        return f"all {n} costs are NaN/inf"
    stats = {k: summary[f"cost_{k}"] for k in ("mean", "median", "min", "max")}
    suffix = f" over the {n - nonfinite} finite ({nonfinite} NaN/inf)" if nonfinite else ""
    return ("mean {mean:.6g}, median {median:.6g}, min {min:.6g}, max {max:.6g}".format(**stats)
            + suffix)


def _time_line(summary: dict) -> str:
    """Wall time of the solve call as measured here, saying whether it includes compilation."""
    wall = f"{summary['wall_seconds']:.2f} s wall"
    if summary["includes_compile"]:
        return wall + ", includes JIT compilation (--warmup times a compiled solve)"
    return wall + f", compiled (the warm-up solve took {summary['warmup_wall_seconds']:.2f} s)"


# ---------------------------------------------------------------------------------------------
# Helpers.


def _override(text: str) -> tuple[str, Any]:
    """FIELD=VALUE -> (FIELD, VALUE): VALUE as JSON when it parses (lists become tuples)."""
    field, sep, raw = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return field.strip(), value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# rlto train / rlto eval.


SELECT_BEST_HELP = (
    "deploy the iterate whose rollouts cost least on V validation draws, scored after every "
    "iteration (V x horizon simulator calls each, counted); default 0: the latest iterate")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rlto train`."""
    parser.add_argument("name", help="built-in problem name (see `rlto problems`)")
    parser.add_argument("--algo", default="pddp", help="policy-learning algorithm (default pddp)")
    parser.add_argument("--seed", type=int, default=0, help="fixes every random number (default 0)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="training wall-time budget (default 60 when neither --iterations "
                             "nor --budget-calls is given)")
    parser.add_argument("--iterations", type=_positive_int, default=None,
                        help="outer iterations at most")
    parser.add_argument("--budget-calls", type=_positive_int, default=None,
                        help="simulator calls at most (the iteration that crosses it completes)")
    parser.add_argument("--option", "-o", dest="options", metavar="FIELD=VALUE", action="append",
                        type=_override, default=[],
                        help="a field of the algorithm's config, e.g. -o sobolev=full; repeatable")
    parser.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append",
                        type=_override, default=[], help="a field of the problem's config")
    parser.add_argument("--test-size", type=_positive_int, default=100,
                        help="test-set size M (default 100)")
    parser.add_argument("--select-best", type=int, default=0, metavar="V",
                        help=SELECT_BEST_HELP)
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default runs/train-NAME-ALGO-seedSEED); an existing "
                             "one with a checkpoint is resumed")
    parser.add_argument("--json", action="store_true", help="print the final evaluation as JSON")


def run_train(args: argparse.Namespace) -> int:
    """Train, resumably, then print the test-set evaluation."""
    import rlto

    problem = make_problem(args.name, dict(args.overrides))
    unbudgeted = args.seconds is None and args.iterations is None and args.budget_calls is None
    seconds = 60.0 if unbudgeted else args.seconds
    out = args.out or Path("runs") / f"train-{args.name}-{args.algo}-seed{args.seed}"
    run = rlto.train(problem, algo=args.algo, seed=args.seed, seconds=seconds,
                     iterations=args.iterations, max_sim_calls=args.budget_calls, out=out,
                     test_size=args.test_size, select_best=args.select_best,
                     progress=not args.json, **dict(args.options))
    if args.json:
        print(json.dumps(to_jsonable(run.evaluation), indent=2))
    else:
        print(f"{run.iterations} iterations; run directory {run.out}")
        _print_evaluation(run.evaluation)
    return EXIT_OK


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rlto eval`."""
    parser.add_argument("run_dir", metavar="RUN", type=Path,
                        help="a run directory written by `rlto train`")
    parser.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    parser.add_argument("--warmstart", action="store_true",
                        help="also solve the test set warm-started by the policy and from the "
                             "problem's default start (seed 002, Figs. 6 and 7); writes "
                             "RUN/warmstart.json, warmstart_iterations.png, policy_vs_to.png")
    parser.add_argument("--max-iter", type=_positive_int, default=200,
                        help="DDP iterations per solve of --warmstart (default 200)")
    parser.add_argument("--test-size", type=_positive_int, default=None, metavar="M",
                        help="evaluate on M draws from the test seed instead of the run's "
                             "test set (default: its test_size; other sizes are other draws): "
                             "where a few instances fail, a larger set gives a surer gap (J* "
                             "of the new draws is solved once, then cached)")


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate a run's policy on its problem's test set."""
    import rlto
    from rlto.evaluate import test_params
    from rlto.problem import ProblemError, remake

    config_path = args.run_dir / "config.json"
    if not config_path.exists():
        raise ProblemError(f"{args.run_dir} has no config.json; pass a directory of `rlto train`.")
    config = json.loads(config_path.read_text())
    problem = remake(config["problem"], config.get("problem_config"))
    policy = rlto.load_policy(args.run_dir)
    params = test_params(problem, m=args.test_size or config.get("test_size", 100))
    report = rlto.evaluate(problem, policy, params)
    summary = report.summary()
    if args.warmstart:
        summary.update(_warm_start_figures(problem, policy, params, args.run_dir, args.max_iter))
    if args.json:
        print(json.dumps(to_jsonable(summary), indent=2))
    else:
        _print_evaluation(summary)
    return EXIT_OK


def _warm_start_figures(problem, policy, params, run_dir: Path, max_iter: int) -> dict:
    """Seed 002's Figs. 7 and 6 for a run: TO of the test set from the policy's rollout and from
    the problem's default start (zero controls or its initial_controls); the iteration counts'
    box plots, and one instance's policy rollout and two TO solutions (the instance whose two TO
    costs differ most: the policy's warm start changed the local minimum, as in the paper).
    Writes warmstart.json; returns its summary numbers."""
    import numpy as np

    from rlto import plots
    from rlto.evaluate import warm_start_numbers, warm_start_pair

    tol = 1e-6
    rollout, from_policy, from_zero = warm_start_pair(problem, policy, params, tol, max_iter)
    numbers = warm_start_numbers(rollout[2], from_policy, from_zero, tol, max_iter)
    default = "zero controls" if problem.initial_controls is None else "its initial_controls"
    (run_dir / "warmstart.json").write_text(json.dumps(to_jsonable(numbers), indent=2))
    plots.plot_cost_distributions(
        {"TO from the policy": from_policy.iterations,
         f"TO from {default}": from_zero.iterations},
        run_dir / "warmstart_iterations.png", ylabel="TO iterations",
        title=f"{problem.name}: warm-starting TO with the policy (seed 002, Fig. 7)")
    spread = np.abs(from_policy.cost - from_zero.cost) / np.maximum(np.abs(from_zero.cost), 1e-12)
    i = int(np.argmax(np.where(np.isfinite(spread), spread, -1.0)))
    plots.plot_policy_and_to(
        problem, {k: np.asarray(v)[i] for k, v in params.items()},
        {"policy rollout": (rollout[0][i], rollout[1][i]),
         "TO warm-started by the policy": (from_policy.xs[i], from_policy.us[i]),
         f"TO from {default}": (from_zero.xs[i], from_zero.us[i])},
        run_dir / "policy_vs_to.png")
    return {f"warmstart_{k}": numbers[k] for k in (
        "iterations_policy_median", "iterations_policy_max", "iterations_zero_median",
        "iterations_zero_max", "cost_policy_mean", "cost_zero_mean", "share_fewer_iterations")}


def _print_evaluation(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"test-set evaluation: {summary.get('problem', '')}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    Console().print(table)


# ---------------------------------------------------------------------------------------------
# rlto bench


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rlto bench`."""
    parser.add_argument("study", choices=["warmstart"],
                        help="warmstart: CACTO's table, TO from the policy vs random and ICS")
    add_train_arguments(parser)
    for action in parser._actions:  # the training options, with this command's defaults
        if action.dest == "algo":
            action.default, action.help = "cacto", "algorithm to train (default cacto)"
        if action.dest == "out":
            action.help = ("output directory (default runs/bench-STUDY-NAME-ALGO-seedSEED); the "
                           "training run goes to OUT/train and resumes from its checkpoint")
    parser.add_argument("--run", dest="policy_run", type=Path, default=None,
                        help="use this trained run's policy instead of training one")
    parser.add_argument("--max-iter", type=_positive_int, default=200,
                        help="TO iterations per solve in the study (default 200)")


def run_bench(args: argparse.Namespace) -> int:
    """Train (or load) a policy, then compare TO warm starts on the problem's hard region (its
    test set where it has none); write warmstart.{json,md} and PNGs of costs and paths."""
    import jax

    import rlto
    from rlto import plots
    from rlto.evaluate import (
        hard_region,
        test_params,
        warm_start_comparison,
        warm_start_solutions,
    )

    problem = make_problem(args.name, dict(args.overrides))
    out = args.out or Path("runs") / f"bench-{args.study}-{args.name}-{args.algo}-seed{args.seed}"
    if args.policy_run is not None:
        policy, source = rlto.load_policy(args.policy_run), str(args.policy_run)
    else:
        seconds = 60.0 if args.seconds is None and args.iterations is None else args.seconds
        run = rlto.train(problem, algo=args.algo, seed=args.seed, seconds=seconds,
                         iterations=args.iterations, out=out / "train",
                         test_size=args.test_size, progress=not args.json,
                         **dict(args.options))
        policy, source = run.policy, run.out
    params = hard_region(problem)
    region = "hard region"
    if params is None:
        params, region = test_params(problem, m=args.test_size), "test set"
    solutions = warm_start_solutions(problem, policy, params, jax.random.key(args.seed + 1),
                                     max_iter=args.max_iter)
    table = {"problem": problem.name, "instances": region, "policy": source,
             "algo": args.algo, "seed": args.seed, **warm_start_comparison(solutions)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "warmstart.json").write_text(json.dumps(to_jsonable(table), indent=2))
    (out / "warmstart.md").write_text(warm_start_markdown(table))
    plots.plot_cost_distributions(
        {name: solutions[name].cost for name in solutions}, out / "warmstart_costs.png",
        title=f"{problem.name}, {region}: TO cost by warm start")
    for name, result in solutions.items():
        plots.plot_trajectories(problem, result, out / f"warmstart_paths_{name}.png",
                                params=params)
    if args.json:
        print(json.dumps(to_jsonable({k: v for k, v in table.items()
                                      if not isinstance(v, list)}), indent=2))
    else:
        print(warm_start_markdown(table))
        print(f"written to {out}")
    return EXIT_OK


def warm_start_markdown(table: dict) -> str:
    """CACTO's table as markdown: the share of instances where TO from the policy is strictly
    lower (lower or equal) than from random values, random controls and the ICS guess, where it
    reaches the lowest cost of all, and the mean costs (rlto.evaluate.WARM_STARTS)."""
    others = [("random", "random"), ("random_controls", "random controls"), ("ics", "ICS")]

    def pct(key):
        return f"{100 * table[key]:.1f}%"

    head = " | ".join(f"policy < (<=) {label}" for _, label in others)
    shares = " | ".join(f"{pct(f'share_lower_than_{name}')} "
                        f"({pct(f'share_lower_equal_than_{name}')})" for name, _ in others)
    costs = " | ".join(f"{table[f'cost_{name}_mean']:.4g}" for name in ("policy", *dict(others)))
    return "\n".join([
        f"## {table['problem']}: TO warm starts on the {table['instances']} (n = {table['n']})",
        "",
        f"| {head} | policy at best | mean cost policy "
        f"| {' | '.join(label for _, label in others)} |",
        "|" + "---|" * (2 * len(others) + 2),
        f"| {shares} | {pct('share_best')} | {costs} |",
        "",
    ])


# ---------------------------------------------------------------------------------------------
# rlto compare


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rlto compare`."""
    from rlto.compare import GRAMMAR, QUICK_OPTIONS

    parser.epilog = GRAMMAR + "."
    parser.add_argument("name", help="built-in problem name (see `rlto problems`)")
    parser.add_argument("--algos", default="plal+s,pddp+s,pods,dpl,ppo,sac",
                        help="comma-separated variants (default %(default)s)")
    parser.add_argument("--seeds", type=_positive_int, default=3,
                        help="seeds 0..SEEDS-1 per variant (default 3)")
    parser.add_argument("--budget-calls", type=_positive_int, default=None,
                        help="simulator calls per run at most (the iteration that crosses it "
                             "completes); the comparison's fair budget")
    parser.add_argument("--seconds", type=float, default=None,
                        help="training wall seconds per run at most (default 60 when neither "
                             "--budget-calls nor --iterations is given)")
    parser.add_argument("--iterations", type=_positive_int, default=None,
                        help="outer iterations per run at most")
    parser.add_argument("--jobs", type=_positive_int, default=None,
                        help="runs in parallel processes (default: half the CPUs)")
    parser.add_argument("--option", "-o", dest="options", metavar="FIELD=VALUE", action="append",
                        type=_override, default=[],
                        help="an algorithm config field, for every variant whose algorithm has "
                             "it, e.g. -o n_problems=32; repeatable")
    parser.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append",
                        type=_override, default=[], help="a field of the problem's config")
    parser.add_argument("--test-size", type=_positive_int, default=100,
                        help="test-set size M (default 100)")
    parser.add_argument("--select-best", type=int, default=0, metavar="V",
                        help=SELECT_BEST_HELP)
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="train one iteration before each run so that JIT compilation is "
                             "not in its wall seconds (default on)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny networks and batches "
                             f"({', '.join(f'{k}={v}' for k, v in QUICK_OPTIONS.items())}, -o "
                             "overrides them), test size 8, no warm-up")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default runs/compare-NAME)")
    parser.add_argument("--json", action="store_true",
                        help="print the per-variant summaries as JSON")


def run_compare(args: argparse.Namespace) -> int:
    """Train every variant for every seed under one budget; write compare_NAME.{json,md,png}
    and compare_precision_NAME.png; print the table. Exit 1 when some run failed."""
    from rlto import compare

    unbudgeted = args.seconds is None and args.iterations is None and args.budget_calls is None
    common = {**(compare.QUICK_OPTIONS if args.quick else {}), **dict(args.options)}
    if args.quick:
        compare.check_common_options(compare.parse_variants(args.algos), dict(args.options))
    out = args.out or Path("runs") / f"compare-{args.name}"
    result = compare.compare(
        args.name, args.algos, seeds=args.seeds, seconds=60.0 if unbudgeted else args.seconds,
        iterations=args.iterations, max_sim_calls=args.budget_calls, options=common,
        overrides=dict(args.overrides), out=out, test_size=8 if args.quick else args.test_size,
        jobs=args.jobs, warmup=args.warmup and not args.quick, progress=not args.json,
        select_best=args.select_best,
        command_line=shlex.join(["rlto", *args.argv]),
    )
    if args.json:
        keys = ("final_gap", "final_sim_calls_median", "wall_seconds_median", "sim_calls_to_gap",
                "errors")
        print(json.dumps(compare.jsonable({n: {k: v.get(k) for k in keys}
                                           for n, v in result["variants"].items()}), indent=2))
    else:
        print(compare.markdown(result))
        print(f"written to {out}: compare_{result['settings']['problem']}.json, .md, .png, "
              f"compare_precision_{result['settings']['problem']}.png; runs in {out / 'runs'}")
    return 1 if any(v["errors"] for v in result["variants"].values()) else EXIT_OK


# name -> (add_arguments(parser), run(args) -> exit code, one-line help).
COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "problems": (add_problems_arguments, run_problems, "list the built-in problems"),
    "solve": (add_solve_arguments, run_solve,
              "sample instances of a problem, solve them in one batched DDP call, "
              "print a summary and write result.json and plots"),
    "train": (add_train_arguments, run_train,
              "train a policy (resumable run directory: config, metrics, checkpoints, plots)"),
    "eval": (add_eval_arguments, run_eval, "evaluate a trained policy on its test set"),
    "compare": (add_compare_arguments, run_compare,
                "train several algorithms for several seeds under one budget; sample-efficiency "
                "and precision plots and a table"),
    "bench": (add_bench_arguments, run_bench,
              "studies of a trained policy; warmstart: CACTO's table of TO warm starts"),
}
