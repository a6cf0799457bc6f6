"""CACTO benchmark: seed 000's warm-start table, CACTO-SL's episode savings, wall time.

For each problem, variant and seed, CACTO's loop runs `--loops` times; every `--eval-every`
loops (and after the last) the actor warm-starts TO on the problem's hard region, against TO from
random controls and from the initial-condition guess (rlto.evaluate.warm_start_solutions). The
training wall time (JIT compilation included, the evaluations excluded) and the TO episodes are
recorded at each evaluation.

Variants: `cacto`, `cacto-sl` (Sobolev learning of the value), and the suffix `+bic` (biased
initial states from the std-critic), e.g. cacto+bic, cacto-sl+bic. The RL baselines `ddpg`,
`ppo`, `sac` and `td3` (stable-baselines3 through `rlto.train`) train for `--rl-seconds` each and
are evaluated once at the end: seed 000's "CACTO vs DDPG vs PPO" comparison of TO warm-started by
each policy (mean cost and its std over seeds).

Writes <out>/cacto_<problem>.json (settings, machine, every evaluation), cacto_<problem>.png
(hard-region mean TO cost from the actor's warm start and the share strictly below random, vs
TO episodes; median and interquartile band over seeds), cacto_policies_<problem>.png (TO cost
from each variant's final policy, mean and std over runs) and cacto.md (the table over every
cacto_<problem>.json in <out>, with the published figures and the 10x wall-time targets).

    python benchmarks/cacto.py --problems single_integrator --variants cacto,cacto-sl --seeds 5
    python benchmarks/cacto.py --problems single_integrator --variants cacto,ddpg,ppo --seeds 5
    python benchmarks/cacto.py --quick --out /tmp/b                  # smoke test (a minute)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import math
import multiprocessing
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import rlto  # noqa: E402
from benchmarks import machine_info  # noqa: E402
from rlto.algorithms import baselines, cacto  # noqa: E402
from rlto.cli import _override as parse_override  # noqa: E402
from rlto.evaluate import hard_region, warm_start_comparison, warm_start_solutions  # noqa: E402
from rlto.problem import ProblemError  # noqa: E402

PUBLISHED = {  # seed 000's table: strictly lower than random / than ICS (percent)
    "single_integrator": (99.1, 92.0),
    "double_integrator": (99.9, 92.0),
    "car": (100.0, 92.9),
    "manipulator3": (87.5, 100.0),
}
"""CACTO's published shares (seed 000)."""
PUBLISHED_MINUTES = {"single_integrator": 23.0, "double_integrator": 23.0, "car": 224.0,
                     "manipulator3": 335.0}
"""CACTO-BIC's published single-core CPU training times (arXiv 2602.19699; 'point mass' for
both integrators); the target is a tenth of each."""


RL_VARIANTS = tuple(baselines.CONFIGS)
"""The stable-baselines3 algorithms that can join the comparison."""
WARM_STARTS = (("random", "random"), ("random_controls", "random controls"), ("ics", "ICS"))
"""The warm starts the actor's is compared with (rlto.evaluate.WARM_STARTS): key, label."""


def variant_config(name: str, options: dict) -> cacto.CactoConfig:
    """The config of a variant name (cacto | cacto-sl, optional +bic) with options applied."""
    base, _, suffix = name.partition("+")
    if base not in ("cacto", "cacto-sl") or suffix not in ("", "bic"):
        raise ProblemError(f"unknown variant {name!r}; use cacto or cacto-sl, optionally +bic, "
                           f"or one of {', '.join(RL_VARIANTS)}.")
    config_type = cacto.CactoSlConfig if base == "cacto-sl" else cacto.CactoConfig
    extra = {"initial_states": "biased"} if suffix == "bic" else {}
    return config_type(**{**extra, **options})


def run_one(problem, config: cacto.CactoConfig, seed: int, loops: int, eval_every: int,
            instances: dict, max_iter: int) -> list[dict]:
    """One training run; a list of evaluations (loop, episodes, sim calls, wall, table)."""
    state = cacto.init(problem, config, jax.random.key(seed))
    wall, evaluations = 0.0, []
    for loop in range(1, loops + 1):
        start = time.perf_counter()
        state, info = cacto.step(problem, config, state)
        jax.block_until_ready(state.policy)
        wall += time.perf_counter() - start
        if loop % eval_every == 0 or loop == loops:
            solutions = warm_start_solutions(problem, state.policy, instances,
                                             jax.random.key(10_000 + seed), max_iter=max_iter)
            table = warm_start_comparison(solutions)
            evaluations.append({
                "loop": loop, "episodes": int(state.episodes), "sim_calls": int(state.sim_calls),
                "wall_seconds": wall, **{k: v for k, v in table.items()},
                **{f"info_{k}": v for k, v in info.items()},
            })
            print(f"  loop {loop}: episodes {int(state.episodes)}, {wall:.0f} s, "
                  f"{progress_line(table)}", flush=True)
    return evaluations


class Job(NamedTuple):
    """One training run and its evaluations (picklable, for a process pool)."""

    problem: str
    overrides: dict
    variant: str
    seed: int
    options: dict
    rl_options: dict
    loops: int
    eval_every: int
    max_iter: int
    rl_seconds: float


def run_job(job: Job) -> list[dict]:
    """The evaluations of one run (CACTO variant or RL baseline)."""
    problem = rlto.make(job.problem, **job.overrides)
    instances = hard_region(problem)
    print(f"{job.problem} {job.variant} seed {job.seed}", flush=True)
    if job.variant in RL_VARIANTS:
        return run_rl(problem, job.variant, job.seed, job.rl_seconds, instances, job.max_iter,
                      job.rl_options)
    return run_one(problem, variant_config(job.variant, job.options), job.seed, job.loops,
                   job.eval_every, instances, job.max_iter)


def job_key(job: Job) -> str:
    """A job as canonical JSON: a saved run is reused only for an identical job."""
    return json.dumps(job._asdict(), sort_keys=True, default=_jsonable)


def run_jobs(jobs: list[Job], processes: int, saved: Path) -> list[list[dict] | None]:
    """Every job's evaluations, in order (None for a job that raised: its traceback is printed
    and the others go on), here for processes == 1, else in a pool of spawned processes (fork
    would copy JAX's threads). One CACTO or RL run keeps about one core busy, so two processes
    on a 2-core machine halve the time without changing wall seconds much.

    Each finished run is written to saved/<problem>_<variant>_<seed>.json as it completes, and
    a run already saved there for the identical job is read instead of run again, so a killed
    benchmark resumes with its finished runs kept (delete a saved run to measure it again
    after a change of the code)."""
    saved.mkdir(parents=True, exist_ok=True)
    paths = [saved / f"{job.problem}_{job.variant}_{job.seed}.json" for job in jobs]
    runs: list[list[dict] | None] = [None] * len(jobs)
    todo = []
    for i, (job, path) in enumerate(zip(jobs, paths, strict=True)):
        saved_run = json.loads(path.read_text()) if path.exists() else None
        if saved_run is not None and saved_run["job"] == job_key(job):
            runs[i] = saved_run["evaluations"]
            print(f"{job.problem} {job.variant} seed {job.seed}: read from {path}", flush=True)
        else:
            todo.append(i)

    def finish(i: int, evaluations: list[dict] | None, error: BaseException | None) -> None:
        job = jobs[i]
        if error is not None:
            print(f"{job.problem} {job.variant} seed {job.seed} FAILED:", flush=True)
            traceback.print_exception(error)
            return
        runs[i] = evaluations
        paths[i].write_text(json.dumps({"job": job_key(job), "evaluations": evaluations},
                                       default=_jsonable))

    if processes <= 1:
        for i in todo:
            try:
                evaluations = run_job(jobs[i])
            except Exception as error:  # noqa: BLE001 - reported, the other runs go on
                finish(i, None, error)
            else:
                finish(i, evaluations, None)
        return runs
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = {pool.submit(run_job, jobs[i]): i for i in todo}
        for outcome in concurrent.futures.as_completed(futures):
            error = outcome.exception()
            finish(futures[outcome], None if error else outcome.result(), error)
    return runs


def mean_cost_text(table: dict) -> str:
    """The hard-region mean TO cost from the policy, or how many instances have no finite one."""
    if table["cost_policy_mean"] is None:
        return f"not finite on {table.get('cost_policy_nonfinite', '?')} of {table['n']}"
    return f"{table['cost_policy_mean']:.4g}"


def number(value: float | None) -> float:
    """A JSON number as a float: None (a non-finite value, or a key not measured) is NaN."""
    return math.nan if value is None else float(value)


def finite_mean_std(values) -> tuple[float, float, int]:
    """Mean and std over seeds of the finite values (JSON None counts as not finite), NaN
    when there are none, and how many were not finite. A diverged run's mean can be 1e268,
    whose square overflows in the std: inf, without a warning."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return math.nan, math.nan, values.size
    with np.errstate(over="ignore"):
        return float(finite.mean()), float(finite.std()), values.size - finite.size


def progress_line(table: dict) -> str:
    shares = ", ".join(f"< {label} {table[f'share_lower_than_{key}']:.1%}"
                       for key, label in WARM_STARTS)
    return f"{shares}, mean cost {mean_cost_text(table)}"


def run_rl(problem, algo: str, seed: int, seconds: float, instances: dict, max_iter: int,
           options: dict) -> list[dict]:
    """One RL baseline run of `seconds` training wall time; one evaluation, at the end (the
    run directory is temporary; episodes counts env steps / T)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = rlto.train(problem, algo, seed=seed, seconds=seconds, out=tmp, test_size=8,
                            progress=False, **options)
        metrics = np.genfromtxt(Path(tmp) / "metrics.csv", delimiter=",", names=True)
        last = metrics[-1] if metrics.ndim else metrics
        solutions = warm_start_solutions(problem, result.policy, instances,
                                         jax.random.key(10_000 + seed), max_iter=max_iter)
    table = warm_start_comparison(solutions)
    sim_calls = int(last["sim_calls"])
    print(f"  {algo}: {sim_calls} env steps, {float(last['wall_seconds']):.0f} s, "
          f"{progress_line(table)}", flush=True)
    return [{"loop": result.iterations, "episodes": sim_calls // problem.horizon,
             "sim_calls": sim_calls, "wall_seconds": float(last["wall_seconds"]), **table}]


def band(runs: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(episodes, median, q25, q75) of `key` over seeds at each evaluation index (runs share the
    schedule, so the i-th evaluations line up)."""
    n = min(len(r) for r in runs)
    episodes = np.array([np.median([r[i]["episodes"] for r in runs]) for i in range(n)])
    values = np.array([[r[i][key] for r in runs] for i in range(n)], dtype=float)
    return (episodes, np.median(values, 1), np.percentile(values, 25, 1),
            np.percentile(values, 75, 1))


def plot_problem(problem_name: str, results: dict[str, list[list[dict]]], path: Path) -> None:
    """Mean TO cost from the actor's warm start and share below random, vs episodes."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_cost, ax_share = fig.subplots(1, 2)
    for variant, runs in results.items():
        if variant in RL_VARIANTS:  # no TO episodes: shown by plot_policies
            continue
        for ax, key in ((ax_cost, "cost_policy_mean"), (ax_share, "share_lower_than_random")):
            x, median, lo, hi = band(runs, key)
            scale = 100.0 if key.startswith("share") else 1.0
            ax.plot(x, scale * median, marker="o", label=variant)
            ax.fill_between(x, scale * lo, scale * hi, alpha=0.2)
    first = next(iter(results.values()))[0][-1]
    ax_cost.axhline(number(first["cost_random_mean"]), color="gray", ls="--",
                    label="TO from random")
    if "cost_random_controls_mean" in first:
        ax_cost.axhline(number(first["cost_random_controls_mean"]), color="gray", ls="-.",
                        label="TO from random controls")
    ax_cost.axhline(number(first["cost_ics_mean"]), color="black", ls=":", label="TO from ICS")
    ax_cost.set(xlabel="TO episodes", ylabel="hard-region mean TO cost",
                title="TO warm-started by the actor")
    ax_share.set(xlabel="TO episodes", ylabel="% strictly below TO from random", ylim=(0, 100))
    if problem_name in PUBLISHED:
        ax_share.axhline(PUBLISHED[problem_name][0], color="gray", ls="--", label="published")
    for ax in (ax_cost, ax_share):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"CACTO on {problem_name}: median and IQR over seeds")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)


def episodes_to_reach(runs: list[list[dict]], cost: float) -> float:
    """Median episodes of the first evaluation whose median hard-region cost is <= cost."""
    x, median, _, _ = band(runs, "cost_policy_mean")
    hit = np.nonzero(median <= cost)[0]
    return float(x[hit[0]]) if hit.size else float("nan")


def legacy_keys(evaluation: dict) -> dict:
    """An evaluation measured before random values joined the warm starts (when "random"
    meant random controls rolled out) with its keys renamed to today's meaning."""
    if "cost_random_controls_mean" in evaluation or "cost_random_mean" not in evaluation:
        return evaluation
    return {k.replace("random", "random_controls") if "random" in k else k: v
            for k, v in evaluation.items()}


def median_percent(final: list[dict], key: str) -> str:
    if key not in final[0]:
        return "-"
    return f"{100 * np.median([f[key] for f in final]):.1f}"


def plot_policies(problem_name: str, results: dict[str, list[list[dict]]], path: Path) -> None:
    """Seed 000's "CACTO, DDPG, PPO" figure: hard-region TO cost warm-started by each
    variant's final policy (mean and std over runs) beside the random, random-controls and ICS
    warm starts, and the share where each policy's TO reaches the best of all warm starts."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_cost, ax_best = fig.subplots(1, 2)
    final = {v: [r[-1] for r in runs] for v, runs in results.items()}
    first = next(iter(final.values()))
    names = [*final, *(label for key, label in WARM_STARTS if f"cost_{key}_mean" in first[0])]
    means, stds = [], []
    for costs in [[f["cost_policy_mean"] for f in evaluations] for evaluations in final.values()
                  ] + [[f[f"cost_{key}_mean"] for f in first] for key, _ in WARM_STARTS
                       if f"cost_{key}_mean" in first[0]]:
        # A run whose mean is not finite (None) is left out of its bar: the table counts it.
        mean, std, _ = finite_mean_std(costs)
        means.append(mean)
        stds.append(std)
    colors = ["C0"] * len(final) + ["gray"] * (len(names) - len(final))
    means, stds = np.array(means), np.array(stds)
    # A policy whose rollouts diverged can leave TO at 1e200 and up: its bar is drawn off the
    # scale of the others, with its value written on it.
    off_scale = np.abs(means) > 1e4
    ax_cost.bar(names, np.where(off_scale, np.nan, means), yerr=np.where(off_scale, 0, stds),
                color=colors, capsize=4)
    if off_scale.any():
        low, high = ax_cost.get_ylim()
        for i in np.nonzero(off_scale)[0]:
            ax_cost.bar(names[i], high, color=colors[i], hatch="//")
            ax_cost.text(i, high, f"{means[i]:.2g}\noff scale", ha="center", va="top",
                         fontsize=8)
        ax_cost.set_ylim(low, high)
    ax_cost.set(ylabel="hard-region mean TO cost", title="TO warm-started by each policy "
                "(mean, std over runs)")
    ax_cost.tick_params(axis="x", rotation=30)
    if "share_best" in first[0]:
        shares = [100 * np.mean([f["share_best"] for f in final[v]]) for v in final]
        ax_best.bar(list(final), shares, color="C0")
        ax_best.set(ylabel="% of instances", ylim=(0, 100),
                    title="policy's TO reaches the best of all warm starts")
    for ax in (ax_cost, ax_best):
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{problem_name}: TO warm starts from trained policies")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)


def markdown(out: Path) -> str:
    """The table over every cacto_<problem>.json in `out` (final evaluation, median over
    seeds), each problem with the machine and command that produced it."""
    lines = [
        "# CACTO: TO warm-started by the actor on the hard region",
        "",
        "Shares: instances where TO from the actor ends strictly lower (lower or equal) than "
        "from random values (random states and controls, seed 000's column), from random "
        "controls rolled out, and from the ICS guess; median over seeds [min, max]. Cost: mean "
        "hard-region TO cost from the actor, mean (std) over seeds; the other warm starts' "
        "costs are seed 0's. Wall: training time with JIT compilation, evaluations excluded; "
        "target: a tenth of CACTO-BIC's published single-core time. RL baselines (ddpg, ppo, "
        "...) train for a fixed wall time; their episodes are env steps / T. At best: the "
        "actor's TO reaches the lowest cost of all four warm starts; a strict share cannot "
        "exceed it minus the ties.",
        "",
        "| problem | variant | seeds | episodes | < random % | < random controls % | < ICS % "
        "| at best % | published (<rand, <ICS) | TO cost actor | random | random controls | ICS "
        "| wall min | target min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for path in sorted(out.glob("cacto_*.json")):
        if path.name == "cacto_oned.json":
            continue
        data = json.loads(path.read_text())
        problem_name, settings = path.stem.removeprefix("cacto_"), data["settings"]
        results = data["results"]
        for variant, runs in results.items():
            final = [legacy_keys(r[-1]) for r in runs]

            def share(key, final=final):
                if key not in final[0]:  # measured before this warm start existed
                    return "-"
                v = 100 * np.array([f[key] for f in final])
                low_equal = 100 * np.median([f[key.replace("lower", "lower_equal")]
                                             for f in final])
                return f"{np.median(v):.1f} ({low_equal:.1f}) [{v.min():.1f}, {v.max():.1f}]"

            mean, std, not_finite = finite_mean_std([f["cost_policy_mean"] for f in final])
            cost_text = "-" if math.isnan(mean) else f"{mean:.4g} ({std:.3g})"
            if not_finite:
                cost_text += f", {not_finite} runs not finite"
            published = PUBLISHED.get(problem_name, ("-", "-"))
            target = PUBLISHED_MINUTES.get(problem_name)
            lines.append(
                f"| {problem_name} | {variant} | {len(runs)} | {final[0]['episodes']} "
                + "".join(f"| {share(f'share_lower_than_{key}')} " for key, _ in WARM_STARTS)
                + f"| {median_percent(final, 'share_best')} "
                + f"| {published[0]}, {published[1]} | {cost_text} "
                + "".join(f"| {number(final[0].get(f'cost_{key}_mean')):.4g} "
                          for key, _ in WARM_STARTS)
                + f"| {np.median([f['wall_seconds'] for f in final]) / 60:.2f} "
                f"| {'-' if target is None else f'{target / 10:.1f}'} |"
            )
        machine = settings["machine"]
        notes.append(f"- {problem_name}: {settings['date']}, {machine['processor']} "
                     f"({machine['cpu_count']} CPUs), JAX on {machine['jax_device']}; "
                     f"`{settings['command']}`"
                     + (f"; {settings['note']}" if "note" in settings else ""))
        if "cacto" in results and "cacto-sl" in results:
            reference = band(results["cacto"], "cost_policy_mean")[1][-1]
            plain = episodes_to_reach(results["cacto"], reference)
            sl = episodes_to_reach(results["cacto-sl"], reference)
            notes.append(f"- {problem_name}: episodes to reach plain CACTO's final median cost "
                         f"{reference:.4g}: cacto {plain:.0f}, cacto-sl {sl:.0f} "
                         f"(ratio {plain / sl:.2f})")
    return "\n".join(lines + ["", *notes]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="single_integrator",
                        help="comma-separated CACTO problems (with a hard region)")
    parser.add_argument("--variants", default="cacto,cacto-sl")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=10, help="CACTO loops per run")
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=200, help="TO iterations per solve")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs in parallel processes (default 1: wall seconds measured on "
                             "a machine with nothing else running)")
    parser.add_argument("--rl-seconds", type=float, default=300.0,
                        help="training wall seconds of each RL baseline run (default 300)")
    parser.add_argument("-o", "--option", dest="options", action="append", default=[],
                        type=parse_override, metavar="FIELD=VALUE",
                        help="CactoConfig field for every variant, repeatable")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        type=parse_override, metavar="FIELD=VALUE", help="problem config field")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: short horizon, 2 seeds, 2 loops, tiny networks")
    args = parser.parse_args(argv)
    options, overrides = dict(args.options), dict(args.overrides)
    rl_options = {}
    if args.quick:
        args.seeds, args.loops, args.eval_every, args.rl_seconds = 2, 2, 1, 3.0
        options = {"n_problems": 16, "updates_per_iteration": 50, "hidden": (16, 16),
                   "critic_hidden": (16, 16), **options}
        rl_options = {"hidden": (16, 16)}
        overrides = {"horizon": 20, **overrides}
    settings = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info.machine(),
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/cacto.py",
                                                      *(argv if argv is not None
                                                        else sys.argv[1:])]),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "overrides": overrides, "seeds": args.seeds, "loops": args.loops,
        "rl_seconds": args.rl_seconds, "jobs": args.jobs,
        "configs": {v: dataclasses.asdict(variant_config(v, options))
                    for v in args.variants.split(",") if v not in RL_VARIANTS},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for problem_name in args.problems.split(","):
        if hard_region(rlto.make(problem_name, **overrides)) is None:
            raise ProblemError(f"{problem_name} has no hard region; use one of {list(PUBLISHED)}.")
        variants = args.variants.split(",")
        for variant in variants:
            if variant not in RL_VARIANTS:
                variant_config(variant, options)  # bad names fail before any run
        jobs = [Job(problem_name, overrides, variant, seed, options, rl_options, args.loops,
                    args.eval_every, args.max_iter, args.rl_seconds)
                for variant in variants for seed in range(args.seeds)]
        runs = run_jobs(jobs, args.jobs, args.out / "runs")
        failed += [f"{job.problem} {job.variant} seed {job.seed}"
                   for job, run in zip(jobs, runs, strict=True) if run is None]
        results = {variant: [run for job, run in zip(jobs, runs, strict=True)
                             if job.variant == variant and run is not None]
                   for variant in variants}
        results = {variant: variant_runs for variant, variant_runs in results.items()
                   if variant_runs}
        if not results:
            continue
        (args.out / f"cacto_{problem_name}.json").write_text(json.dumps(
            {"settings": settings, "results": results}, indent=2, default=_jsonable))
        plot_problem(problem_name, results, args.out / f"cacto_{problem_name}.png")
        plot_policies(problem_name, results, args.out / f"cacto_policies_{problem_name}.png")
    table = markdown(args.out)
    (args.out / "cacto.md").write_text(table)
    print(table)
    if failed:
        print(f"{len(failed)} runs failed (left out above; tracebacks printed): "
              f"{'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _jsonable(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
