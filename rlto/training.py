"""`train`: run a policy-learning algorithm on a problem, with a run directory.

The run directory holds config.json (resolved configuration), metrics.csv (one row per outer
iteration: sim calls, wall time, losses, test gap), checkpoints/ (the whole algorithm state, so a
killed run resumes where its last checkpoint was), policy/ (the latest policy, `load_policy`),
evaluation.json, learning_curve.png, rollouts.png and, for problems with a task space (position
and target), paths.png (the policy's paths p(x_t) on the test set, seed 002's Fig. 1).
`rlto eval RUN --warmstart` adds seed 002's Figs. 6 and 7.

With select_best=V the run deploys, instead of its latest policy, the one whose closed-loop
rollouts cost least on V validation draws from the problem's sampler (fixed by the seed, apart
from the test set), scored after every iteration: on a swing-up the test gap of consecutive
iterates jumps between 9% and 225% (a few rollouts caught or missed), and a run would
otherwise end wherever its last iteration happened to land.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any, NamedTuple

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
SELECTION_COLUMNS = ("validation_cost", "selected_iteration", "latest_test_gap")
"""Extra metrics of a run with select_best: the latest iterate's mean validation cost, the
iteration of the deployed policy, and the latest iterate's own test gap (test_gap is the
deployed policy's)."""

VALIDATION_STREAM = 0x5E1EC7
"""Folded into the run's seed key to draw the validation set: a stream no algorithm uses."""


class Selection(NamedTuple):
    """The deployed policy of a run with select_best (a pytree; saved in checkpoints)."""

    policy: Policy
    cost: np.ndarray  # () float64: its mean closed-loop cost on the validation draws
    iteration: np.ndarray  # () int64: the iteration that produced it (0: none yet)
    sim_calls: np.ndarray  # () int64: simulator calls spent on validation rollouts so far


def check_select_best(select_best: int) -> None:
    """Raise a ProblemError unless select_best is a usable number of validation draws."""
    if int(select_best) < 0:
        raise ProblemError(f"select_best must be a non-negative number of validation draws "
                           f"(0: deploy the latest iterate), got {select_best}.")


def validation_params(problem: Problem, seed: int, size: int) -> dict:
    """The validation set of a run: `size` draws from problem.sample, fixed by the seed."""
    key = jax.random.fold_in(jax.random.key(seed), VALIDATION_STREAM)
    return {k: np.asarray(v) for k, v in problem.sample(key, int(size)).items()}


def validation_cost(problem: Problem, policy: Policy, params: dict) -> float:
    """Mean closed-loop cost of `policy` over the instances params (V, ...); inf when some
    rollout diverged (such a policy is never deployed)."""
    _, _, costs = policy_rollout(problem, policy, params)
    costs = np.asarray(costs, dtype=np.float64)
    return float(costs.mean()) if np.isfinite(costs).all() else float("inf")


def select(problem: Problem, selection: Selection, policy: Policy, iteration: int,
           params: dict) -> tuple[Selection, float]:
    """Score the latest iterate `policy` on the validation draws params (V T simulator calls)
    and keep it when it costs strictly less than the deployed one. Returns the selection and
    the iterate's validation cost."""
    cost = validation_cost(problem, policy, params)
    calls = selection.sim_calls + len(next(iter(params.values()))) * problem.horizon
    if cost < float(selection.cost):
        return Selection(policy, np.float64(cost), np.int64(iteration), calls), cost
    return selection._replace(sim_calls=calls), cost


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


def as_written(obj: Any) -> Any:
    """obj as config.json holds it (through to_jsonable and back from JSON), for comparisons."""
    return json.loads(json.dumps(to_jsonable(obj)))


def with_later_defaults(previous: dict, config) -> dict:
    """A run directory's resolved config with the algorithm options it predates filled in with
    their defaults: an option added to the config class since that run was written defaults to
    the behaviour from before it existed, so the run stays resumable (the options it did write
    must still match)."""
    written = previous.get("algo_config")
    if not isinstance(written, dict):
        return previous
    filled = dict(written)
    for field in dataclasses.fields(config):
        if field.name not in filled and field.default is not dataclasses.MISSING:
            filled[field.name] = as_written(field.default)
    return {**previous, "algo_config": filled}


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
    select_best: int = 0,
    **options,
) -> TrainResult:
    """Train a policy on `problem` with algorithm `algo` until `seconds` of training wall time,
    `iterations` outer iterations or `max_sim_calls` simulator calls, whichever comes first (at
    least one must be given; the iteration that crosses max_sim_calls completes).

    options: fields of the algorithm's config (e.g. sobolev="full" for PDDP).
    select_best: V > 0 deploys (returns, saves, evaluates) the iterate with the lowest mean
    closed-loop cost on V validation draws, scored after every iteration (V T simulator calls
    each, counted in sim_calls, and timed in the training wall seconds); 0 deploys the latest.
    A run directory that already has a checkpoint is resumed from it (same config required).
    """
    if seconds is None and iterations is None and max_sim_calls is None:
        raise ProblemError("train needs a budget: seconds=..., iterations=... or "
                           "max_sim_calls=... (any combination).")
    check_select_best(select_best)
    module, config = algorithm_config(algo, options)
    run = RunDir(out, columns=METRIC_COLUMNS + (SELECTION_COLUMNS if select_best else ()))
    resolved = {
        "problem": problem.name,
        "problem_config": problem.config,
        "algo": algo,
        "algo_config": config,
        "seed": seed,
        "test_size": test_size,
    }
    if select_best:  # only then: the configs of earlier runs stay resumable
        resolved["select_best"] = int(select_best)
    if os.path.exists(run.config_path) and run.checkpoint_info() is not None:
        previous = with_later_defaults(run.read_config(), config)
        if previous != as_written(resolved):
            raise ProblemError(
                f"{out} holds a run with another configuration; use a new --out directory."
            )
    run.write_config(resolved)

    with _progress(progress, f"{algo} on {problem.name}", iterations) as bar:
        bar.describe("first instances and policy (includes compiling)")
        state = module.init(problem, config, jax.random.key(seed))
        wall = 0.0
        selection = validation = None
        if select_best:
            validation = validation_params(problem, seed, select_best)
            selection = Selection(state.policy, np.float64(np.inf), np.int64(0), np.int64(0))
        loaded = run.load_checkpoint((state, np.float64(0.0), selection))
        if loaded is not None:
            (state, wall, selection), _ = loaded
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
            and (max_sim_calls is None or _sim_calls(state, selection) < max_sim_calls)
        ):
            start = time.perf_counter()
            state, info = module.step(problem, config, state)
            if selection is not None:
                selection, cost = select(problem, selection, state.policy,
                                         int(state.iteration), validation)
            wall += time.perf_counter() - start
            report = evaluate(problem, _deployed(state, selection), test, optimum=optimum)
            if selection is not None:
                latest = report if int(selection.iteration) == int(state.iteration) else (
                    evaluate(problem, state.policy, test, optimum=optimum))
                info = {**info, "validation_cost": cost,
                        "selected_iteration": int(selection.iteration),
                        "latest_test_gap": latest.gap_percent}
            row = {
                "iteration": int(state.iteration),
                "sim_calls": _sim_calls(state, selection),
                "to_iterations": int(state.to_iterations),
                "wall_seconds": wall,
                "test_gap": report.gap_percent,
                "test_policy_cost": report.mean_policy_cost,
                "test_optimum_cost": report.mean_optimum_cost,
                "test_precision": report.precision,
                **info,
            }
            run.log(row)
            run.save_checkpoint((state, np.float64(wall), selection), int(state.iteration))
            bar.advance(f"it {row['iteration']}  sim calls {row['sim_calls']:.3g}  "
                        f"gap {row['test_gap']:.3g}%")

    policy = _deployed(state, selection)
    save_policy(os.path.join(run.path, "policy"), policy)
    if report is None:  # no iteration ran (a resumed run whose budget was already spent)
        report = evaluate(problem, policy, test, optimum=optimum)
    summary = report.summary()
    with open(os.path.join(run.path, "evaluation.json"), "w") as f:
        json.dump(to_jsonable(summary), f, indent=2)
    run.plot_learning_curve(x_key="sim_calls", y_keys=("test_gap",))
    xs, us, _ = policy_rollout(problem, policy, test)
    plots.plot_trajectories(problem, (xs, us, report.near_optimal),
                            os.path.join(run.path, "rollouts.png"),
                            params=test, ok_label="within 1% of J*")
    if problem.position is not None and problem.target is not None:  # seed 002's Fig. 1
        plots.plot_task_paths(problem, xs, test, report.near_optimal,
                              os.path.join(run.path, "paths.png"), ok_label="within 1% of J*")
    return TrainResult(os.fspath(run.path), policy, int(state.iteration), summary, report)


def _deployed(state, selection: Selection | None) -> Policy:
    """The policy a run deploys: the selected one, or the latest iterate."""
    return state.policy if selection is None or int(selection.iteration) == 0 else selection.policy


def _sim_calls(state, selection: Selection | None) -> int:
    """Simulator calls of the run: the algorithm's, plus the validation rollouts'."""
    return int(state.sim_calls) + (0 if selection is None else int(selection.sim_calls))


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
