"""Solver throughput: rlto's batched box-FDDP against crocoddyl's SolverBoxFDDP.

For each problem and batch size n, the same n instances (a prefix of one sample, seed --seed) are
solved from the same warm start (the problem's default controls: zero, or gravity compensation for
ur5; states = rollout) by

- rlto.solve on the whole batch at once (timed after a warm-up call that compiles; the first
  call's extra time is reported as compile time), and
- crocoddyl's SolverBoxFDDP, one instance after another, for each kind of action model:
  "numpy" (hand-written Python/NumPy models: the fair "Python action model" anchor), "native"
  (crocoddyl's C++ models over a Pinocchio model; pendulum and ur5) and "jax" (Python models
  calling the problem's JAX functions point by point: slow per-point dispatch, for reference).

Crocoddyl's time per instance does not depend on n, so each kind solves at most --croc-subset
(--jax-subset for the jax kind) of the instances once; the time for n instances is the sum over
the first min(n, subset) solves, scaled by n / min(n, subset) when it is a subset (the table
marks those cells with *). Both solvers stop on the same threshold: --tol is rlto's tol and
crocoddyl's th_stop (|d1 + d2/2|, the expected cost decrease of a full step). crocoddyl is told
that the rolled-out warm start is feasible (is_feasible=True), as rlto.solve treats it, so both
use the box-QP from the first iteration.

Writes <out>/solver.json (all numbers), solver.md (tables) and solver.png (throughput vs n);
--stem renames them.

    python benchmarks/solver.py                       # full run (minutes)
    python benchmarks/solver.py --problems ur5 --sizes 1,64,256 --kinds native,jax \
        --jax-subset 2 --stem solver_ur5              # UR5 against crocoddyl over Pinocchio
    python benchmarks/solver.py --quick --out /tmp/b  # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

import rlto  # noqa: E402
from benchmarks import machine_info  # noqa: E402
from rlto.solver.ddp import SolverOptions  # noqa: E402

KINDS = ("numpy", "native", "jax")
KIND_LABELS = {
    "numpy": "crocoddyl, NumPy model",
    "native": "crocoddyl, native (Pinocchio) model",
    "jax": "crocoddyl, JAX-backed Python model",
}
NO_MODEL_REASON = {
    ("double_integrator", "native"): "no native crocoddyl equivalent: CACTO's softplus obstacle "
    "and target-valley costs have no crocoddyl activation/residual",
    ("ur5", "numpy"): "no hand-written NumPy model: rigid-body dynamics and their derivatives "
    "by hand are what the native (Pinocchio) model is",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="pendulum,double_integrator",
                        help="comma-separated problem names (default: %(default)s)")
    parser.add_argument("--sizes", default="1,64,256,1024",
                        help="comma-separated batch sizes n (default: %(default)s)")
    parser.add_argument("--max-iter", type=int, default=200,
                        help="iteration limit of both solvers (default: %(default)s)")
    parser.add_argument("--tol", type=float, default=1e-6,
                        help="rlto tol = crocoddyl th_stop (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="crocoddyl model kinds to run (default: %(default)s)")
    parser.add_argument("--croc-subset", type=int, default=256,
                        help="most instances crocoddyl solves per numpy/native kind; larger n "
                        "are extrapolated per instance (default: %(default)s)")
    parser.add_argument("--jax-subset", type=int, default=16,
                        help="most instances crocoddyl solves with the slow JAX-backed model "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="output directory (default: benchmarks/results)")
    parser.add_argument("--stem", default="solver",
                        help="output file names STEM.json, .md, .png (default: %(default)s; e.g. "
                        "solver_ur5 for a run on ur5 alone)")
    parser.add_argument("--line-search", choices=("auto", "parallel", "sequential"),
                        default="auto",
                        help="rlto's line search (SolverOptions.parallel_line_search; auto: "
                        "parallel on a GPU, sequential on a CPU) (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: pendulum, n=2, 5 iterations, 2 crocoddyl instances")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.sizes, args.max_iter = "pendulum", "2", 5
        args.croc_subset = args.jax_subset = 2
    args.problems = [p for p in args.problems.split(",") if p]
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown --kinds {sorted(unknown)}; choose from {KINDS}")
    if min(args.sizes) < 1:
        parser.error("--sizes must be positive integers")
    return args


def machine() -> dict:
    """Machine, JAX backend and the crocoddyl and Pinocchio versions (None where not installed:
    with --kinds '' rlto runs alone, as on a GPU machine without them)."""
    versions = {}
    for name in ("crocoddyl", "pinocchio"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {**machine_info.machine(), "jax_backend": jax.default_backend(), **versions}


def prefix(params: dict, n: int) -> dict:
    return {k: v[:n] for k, v in params.items()}


def run_rlto(problem, params, args) -> dict:
    """Warm-up (compiling) call, then timed calls: the best of 3, or of fewer once they have
    taken 15 s (the machines are shared: the best of several is the least disturbed)."""
    parallel = {"auto": None, "parallel": True, "sequential": False}[args.line_search]
    options = SolverOptions(parallel_line_search=parallel)
    start = time.perf_counter()
    result = rlto.solve(problem, params, init=None, max_iter=args.max_iter, tol=args.tol,
                        options=options)
    first = time.perf_counter() - start
    times = []
    while len(times) < 3 and sum(times) < 15.0:
        start = time.perf_counter()
        result = rlto.solve(problem, params, init=None, max_iter=args.max_iter, tol=args.tol,
                            options=options)
        times.append(time.perf_counter() - start)
    n = result.n
    seconds = min(times)
    return {
        "seconds": seconds,
        "timed_calls": len(times),
        "instances_per_second": n / seconds,
        "compile_seconds": max(first - seconds, 0.0),
        "first_call_seconds": first,
        "cost_mean": float(np.mean(result.cost)),
        "converged_share": float(np.mean(result.converged)),
        "iterations_mean": float(np.mean(result.iterations)),
        "iterations_max": int(np.max(result.iterations)),
        "status_counts": result.summary()["status_counts"],
        "_cost": result.cost,
    }


def run_crocoddyl(problem, params, kind, count, args, progress) -> dict:
    from rlto import reference

    task = progress.add_task(f"{problem.name}: {KIND_LABELS[kind]}", total=count)
    out = reference.solve_crocoddyl(
        problem, prefix(params, count), init=None, max_iter=args.max_iter, th_stop=args.tol,
        models=kind, progress=lambda i: progress.update(task, completed=i), is_feasible=True,
    )
    progress.remove_task(task)
    return out


def crocoddyl_row(croc: dict, n: int, rlto_cost: np.ndarray, rlto_ips: float) -> dict:
    """Numbers for n instances from a crocoddyl run over the first k instances (k may be < n)."""
    k = min(n, croc["cost"].shape[0])
    per_instance = float(np.sum(croc["instance_seconds"][:k])) / k
    cost = croc["cost"][:k]
    same = np.abs(cost - rlto_cost[:k]) <= 1e-6 * np.maximum(1.0, np.abs(cost))
    ips = 1.0 / per_instance
    return {
        "instances_solved": k,
        "extrapolated": k < n,
        "seconds": per_instance * n,
        "seconds_per_instance": per_instance,
        "instances_per_second": ips,
        "ratio": rlto_ips / ips,
        "cost_mean": float(np.mean(cost)),
        "rlto_cost_mean_same_instances": float(np.mean(rlto_cost[:k])),
        "same_cost_share": float(np.mean(same)),
        "rlto_lower_share": float(np.mean(rlto_cost[:k] < cost - 1e-6 * np.maximum(1, abs(cost)))),
        "converged_share": float(np.mean(croc["converged"][:k])),
        "iterations_mean": float(np.mean(croc["iterations"][:k])),
        "iterations_max": int(np.max(croc["iterations"][:k])),
    }


def fmt(x: float) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}"


def write_markdown(path: Path, result: dict) -> None:
    s, m = result["settings"], result["machine"]
    kinds = s["kinds"]
    lines = [
        "# Solver throughput: rlto.solve vs crocoddyl SolverBoxFDDP",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} CPUs, JAX on {m['jax_device']} "
        f"(jax {m['jax']}, crocoddyl {m['crocoddyl']}, pinocchio {m['pinocchio']}); "
        f"load average {m['load_average_start'][0]:.1f} at start, "
        f"{m.get('load_average_end', [float('nan')])[0]:.1f} at end. "
        "Warm start: the problem's default controls (zero; ur5: a reach to the IK pose). "
        f"max_iter {s['max_iter']}, tol = th_stop = {s['tol']:g}; rlto's line search "
        f"{s.get('line_search', 'auto')} (auto: parallel on a GPU, sequential on a CPU). "
        "Same run, same instances.",
        "",
        "Throughput in instances solved per second; ratio = rlto / crocoddyl (> 1: rlto faster). "
        "rlto solves the batch at once (compile time of the first call listed apart); crocoddyl "
        "solves the instances one after another on one thread. "
        "`*`: crocoddyl timed on the first k instances and extrapolated per instance "
        f"(k = {s['croc_subset']}, {s['jax_subset']} for the JAX-backed model). "
        "Rows with n = 1 time one instance (the first), so they follow its iteration counts, "
        "which can be far from the mean (see the iterations column below).",
        "",
    ]
    header = ["problem", "n", "rlto inst/s", "rlto compile s"]
    for kind in kinds:
        header += [f"{kind} inst/s", f"ratio vs {kind}"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        cells = [row["problem"], str(row["n"]), fmt(row["rlto"]["instances_per_second"]),
                 fmt(row["rlto"]["compile_seconds"])]
        for kind in kinds:
            c = row["crocoddyl"].get(kind)
            if c is None:
                cells += ["n/a", "n/a"]
            else:
                star = "*" if c["extrapolated"] else ""
                cells += [fmt(c["instances_per_second"]) + star, f"{c['ratio']:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Solution quality on the same instances. crocoddyl's numbers are over the k instances it "
        "solved; 'rlto, same k' is rlto's mean cost over those k; 'same cost': share of them "
        "where both costs agree to 1e-6 (relative); 'rlto lower': share where rlto's cost is "
        "lower (another local minimum: the problems are nonconvex).",
        "",
        "| problem | n | solver | k | mean cost | rlto, same k | same cost | rlto lower "
        "| converged | iterations mean / max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        r = row["rlto"]
        lines.append(
            f"| {row['problem']} | {row['n']} | rlto.solve | {row['n']} | {r['cost_mean']:.6g} "
            f"| - | - | - | {100 * r['converged_share']:.0f}% "
            f"| {r['iterations_mean']:.1f} / {r['iterations_max']} |"
        )
        for kind in kinds:
            c = row["crocoddyl"].get(kind)
            if c is None:
                continue
            lines.append(
                f"| {row['problem']} | {row['n']} | crocoddyl {kind} | {c['instances_solved']} "
                f"| {c['cost_mean']:.6g} | {c['rlto_cost_mean_same_instances']:.6g} "
                f"| {100 * c['same_cost_share']:.0f}% | {100 * c['rlto_lower_share']:.0f}% "
                f"| {100 * c['converged_share']:.0f}% "
                f"| {c['iterations_mean']:.1f} / {c['iterations_max']} |"
            )
    notes = result.get("notes", [])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    path.write_text("\n".join(lines) + "\n")


def write_plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(row["problem"] for row in result["rows"]))
    fig, axes = plt.subplots(1, len(problems), figsize=(5.5 * len(problems), 4.2), squeeze=False)
    for ax, name in zip(axes[0], problems, strict=True):
        rows = [row for row in result["rows"] if row["problem"] == name]
        ns = [row["n"] for row in rows]
        ax.plot(ns, [row["rlto"]["instances_per_second"] for row in rows], "o-", lw=2,
                label="rlto.solve (batched)")
        for kind, style in zip(KINDS, ("s--", "^--", "v:"), strict=True):
            values = [row["crocoddyl"].get(kind, {}).get("instances_per_second") for row in rows]
            if any(v is not None for v in values):
                ax.plot(ns, [np.nan if v is None else v for v in values], style,
                        label=KIND_LABELS[kind])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("instances n")
        ax.set_ylabel("instances solved per second")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    info = machine()
    rows = []
    notes = [
        "The native crocoddyl models (pendulum, ur5) use crocoddyl's Gauss-Newton Hessian for the "
        "tip/flange position term (w J'J) where rlto and the Python models use the exact Hessian; "
        "their dynamics, costs and gradients are identical, but their iterates, iteration counts "
        "and sometimes their local minima differ.",
    ]
    n_max = max(args.sizes)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        stages = progress.add_task("benchmark", total=len(args.problems) * (len(args.sizes) + 1))
        for name in args.problems:
            problem = rlto.make(name)
            params = problem.sample(jax.random.key(args.seed), n_max)
            params = {k: np.asarray(v) for k, v in params.items()}
            if args.kinds:
                from rlto import reference  # needs crocoddyl; --kinds '' runs without it

                available = reference.available_models(problem)
            else:
                available = []
            croc = {}
            for kind in args.kinds:
                if kind not in available:
                    reason = NO_MODEL_REASON.get(
                        (name, kind), f"no {kind} crocoddyl model for {name}"
                    )
                    notes.append(f"{name}: {kind} n/a, {reason}.")
                    continue
                subset = args.jax_subset if kind == "jax" else args.croc_subset
                croc[kind] = run_crocoddyl(problem, params, kind, min(subset, n_max), args,
                                           progress)
            progress.advance(stages)
            for n in args.sizes:
                progress.update(stages, description=f"{name}: rlto.solve n={n}")
                r = run_rlto(problem, prefix(params, n), args)
                rlto_cost = r.pop("_cost")
                row = {"problem": name, "n": n, "rlto": r, "crocoddyl": {}}
                for kind, c in croc.items():
                    row["crocoddyl"][kind] = crocoddyl_row(c, n, rlto_cost,
                                                           r["instances_per_second"])
                rows.append(row)
                progress.advance(stages)
                summary = ", ".join(
                    f"{kind} {v['ratio']:.1f}x" for kind, v in row["crocoddyl"].items()
                )
                console.print(f"{name} n={n}: rlto {r['instances_per_second']:.1f} inst/s "
                              f"(compile {r['compile_seconds']:.1f} s); ratio {summary}")
    info["load_average_end"] = list(os.getloadavg())
    result = {
        "settings": {
            "problems": args.problems,
            "sizes": args.sizes,
            "max_iter": args.max_iter,
            "tol": args.tol,
            "line_search": args.line_search,
            "kinds": args.kinds,
            "croc_subset": args.croc_subset,
            "jax_subset": args.jax_subset,
            "seed": args.seed,
            "warm_start": "default controls (zero; ur5: a reach to the IK pose), states = rollout",
            "crocoddyl_is_feasible": True,
            "quick": args.quick,
        },
        "machine": info,
        "rows": rows,
        "notes": notes,
    }
    stem = args.stem
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(out / f"{stem}.md", result)
    write_plot(out / f"{stem}.png", result)
    print((out / f"{stem}.md").read_text())
    console.print(f"wrote {out / stem}.json, {stem}.md, {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
