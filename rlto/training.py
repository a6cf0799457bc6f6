"""`train`: run a policy-learning algorithm on a problem, with a run directory.

The run directory holds config.json (resolved configuration), metrics.csv (one row per outer
iteration: sim calls, wall time, losses, test gap), checkpoints/ (the whole algorithm state, so a
killed run resumes where its last checkpoint was), policy/ (the latest policy, `load_policy`),
evaluation.json, learning_curve.png, rollouts.png and, for problems with a task space (position
and target), paths.png (the policy's paths p(x_t) on the test set, seed 002's Fig. 1).
`rlto eval RUN --warmstart` adds seed 002's Figs. 6 and 7.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

import jax
import numpy as np

from rlto import plots
from rlto.algorithms import ALGORITHMS
from rlto.evaluate import Report, evaluate, optimum_costs, policy_rollout, test_params
from rlto.nets import Policy, save_policy
from rlto.nets import load_policy as _load_policy_dir
from rlto.problem import Problem, ProblemError
from rlto.runs import RunDir, to_jsonable

METRIC_COLUMNS = (
    "iteration", "sim_calls", "to_iterations", "wall_seconds", "test_gap", "test_policy_cost",
    "test_optimum_cost", "test_precision",
)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What `train` returns."""

    out: str
    """The run directory."""
    policy: Policy
    """The final policy."""
    iterations: int
    """Outer iterations done (including those before a resume)."""
    evaluation: dict
    """Final test-set evaluation (Report.summary())."""
    report: Report
    """The same evaluation per test instance (costs, optimum, violations, task-space error)."""


def algorithm_config(algo: str, options: dict):
    """The algorithm module and its config with `options` applied; clear errors for bad names."""
    if algo not in ALGORITHMS:
        raise ProblemError(f"unknown algorithm {algo!r}; known: {', '.join(sorted(ALGORITHMS))}.")
    module, config_type = ALGORITHMS[algo]
    fields = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ProblemError(
            f"{algo}: unknown option(s) {unknown}; options are {', '.join(sorted(fields))}."
        )
    return module, config_type(**options)


def train(
    problem: Problem,
    algo: str = "pddp",
    seed: int = 0,
    seconds: float | None = None,
    iterations: int | None = None,
    max_sim_calls: int | None = None,
    out: str | os.PathLike = "runs/train",
    test_size: int = 100,
    progress: bool = True,
    **options,
) -> TrainResult:
    """Train a policy on `problem` with algorithm `algo` until `seconds` of training wall time,
    `iterations` outer iterations or `max_sim_calls` simulator calls, whichever comes first (at
    least one must be given; the iteration that crosses max_sim_calls completes).

    options: fields of the algorithm's config (e.g. sobolev="full" for PDDP).
    A run directory that already has a checkpoint is resumed from it (same config required).
    """
    if seconds is None and iterations is None and max_sim_calls is None:
        raise ProblemError("train needs a budget: seconds=..., iterations=... or "
                           "max_sim_calls=... (any combination).")
    module, config = algorithm_config(algo, options)
    run = RunDir(out, columns=METRIC_COLUMNS)
    resolved = {
        "problem": problem.name,
        "problem_config": problem.config,
        "algo": algo,
        "algo_config": config,
        "seed": seed,
        "test_size": test_size,
    }
    if os.path.exists(run.config_path) and run.checkpoint_info() is not None:
        previous = run.read_config()
        if previous != json.loads(json.dumps(to_jsonable(resolved))):
            raise ProblemError(
                f"{out} holds a run with another configuration; use a new --out directory."
            )
    run.write_config(resolved)

    with _progress(progress, f"{algo} on {problem.name}", iterations) as bar:
        bar.describe("first instances and policy (includes compiling)")
        state = module.init(problem, config, jax.random.key(seed))
        wall = 0.0
        loaded = run.load_checkpoint((state, np.float64(0.0)))
        if loaded is not None:
            (state, wall), _ = loaded
            wall = float(wall)
        if hasattr(module, "attach"):
            # State that has no fixed-shape pytree form (SB3's model and replay buffer) lives in
            # files of the run directory, written by each step; restore those of the checkpoint.
            state = module.attach(problem, config, state, run.path)

        test = test_params(problem, m=test_size)
        bar.describe(f"J* of the {test_size} test instances (solved once, then cached)")
        optimum = optimum_costs(problem, test)
        bar.describe("first iteration (includes compiling)")
        report = None
        while (
            (iterations is None or int(state.iteration) < iterations)
            and (seconds is None or wall < seconds)
            and (max_sim_calls is None or int(state.sim_calls) < max_sim_calls)
        ):
            start = time.perf_counter()
            state, info = module.step(problem, config, state)
            wall += time.perf_counter() - start
            report = evaluate(problem, state.policy, test, optimum=optimum)
            row = {
                "iteration": int(state.iteration),
                "sim_calls": int(state.sim_calls),
                "to_iterations": int(state.to_iterations),
                "wall_seconds": wall,
                "test_gap": report.gap_percent,
                "test_policy_cost": report.mean_policy_cost,
                "test_optimum_cost": report.mean_optimum_cost,
                "test_precision": report.precision,
                **info,
            }
            run.log(row)
            run.save_checkpoint((state, np.float64(wall)), int(state.iteration))
            bar.advance(f"it {row['iteration']}  sim calls {row['sim_calls']:.3g}  "
                        f"gap {row['test_gap']:.3g}%")

    save_policy(os.path.join(run.path, "policy"), state.policy)
    if report is None:  # no iteration ran (a resumed run whose budget was already spent)
        report = evaluate(problem, state.policy, test, optimum=optimum)
    summary = report.summary()
    with open(os.path.join(run.path, "evaluation.json"), "w") as f:
        json.dump(to_jsonable(summary), f, indent=2)
    run.plot_learning_curve(x_key="sim_calls", y_keys=("test_gap",))
    xs, us, _ = policy_rollout(problem, state.policy, test)
    plots.plot_trajectories(problem, (xs, us, report.near_optimal),
                            os.path.join(run.path, "rollouts.png"),
                            params=test, ok_label="within 1% of J*")
    if problem.position is not None and problem.target is not None:  # seed 002's Fig. 1
        plots.plot_task_paths(problem, xs, test, report.near_optimal,
                              os.path.join(run.path, "paths.png"), ok_label="within 1% of J*")
    return TrainResult(os.fspath(run.path), state.policy, int(state.iteration), summary, report)


class _Bar:
    """What `_progress` yields: describe(text) relabels the current step, advance(text) also
    counts an iteration. Both do nothing when the bar is disabled."""

    def __init__(self, bar=None, task=None):
        self._bar, self._task = bar, task

    def describe(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def advance(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=description)


@contextlib.contextmanager
def _progress(enabled: bool, title: str, total: int | None):
    """A rich progress bar (iterations known) or spinner, labelled with what is being done
    (the set-up steps, slow on robots, included); yields a _Bar."""
    if not enabled:
        yield _Bar()
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn(f"{title}: {{task.description}}"), BarColumn(),
                  TimeElapsedColumn()) as bar:
        yield _Bar(bar, bar.add_task("starting", total=total))


def load_policy(run_dir: str | os.PathLike, problem: Problem | None = None) -> Policy:
    """The policy of a training run directory (or of a directory written by save_policy).

    problem: needed only for a task-input policy of a problem that is not built in
    (rlto.nets.load_policy)."""
    inner = os.path.join(run_dir, "policy")
    return _load_policy_dir(inner if os.path.isdir(inner) else run_dir, problem=problem)
