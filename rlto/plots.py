"""Plots of solved trajectories and solver statistics, as matplotlib Figures (Agg, no windows).

Every function takes NumPy arrays (or a Result, whose fields are NumPy arrays), saves a PNG when
given a path, and returns the Figure. Figures are built without pyplot on their own Agg canvas:
nothing is kept in a global figure registry, nothing is shown, and the process's matplotlib
backend (a notebook's, say) is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse as EllipsePatch

from rlto.evaluate import nan_as_inf

CONVERGED_COLOR = "tab:blue"
FAILED_COLOR = "tab:red"
_DPI = 120


def plot_trajectories(
    problem,
    result_or_arrays: Any,
    path: str | os.PathLike | None = None,
    params: Mapping[str, Any] | None = None,
    max_paths: int = 40,
    ok_label: str = "converged",
) -> Figure:
    """Plot solved trajectories of a batch: an obstacle map, or states and controls over time.

    problem: the rlto.Problem that was solved.
    result_or_arrays: a Result, or a mapping / tuple with xs (n, T+1, nx), us (n, T, nu) and
        optionally converged (n,) bool (all True when absent).
    path: where to save the PNG (None: do not save).
    params: the instances' parameters (dict of arrays, leading dim n), needed for the task-space
        position p(x, params) and target p*(params); without them those panels are left out.
    max_paths: at most this many instances are drawn; failed instances are preferred, up to half.
    ok_label: what the per-instance flag means, for the title and legend (e.g. policy rollouts
        flag "within 1% of J*" rather than solver convergence).

    Problems with obstacles and a 2-D position get a map (obstacles, targets, paths p(x_t));
    every other problem gets a grid of each state and control against time t*dt, with dashed
    control bounds and, when the problem has a position and target, the error ||p - p*||.
    """
    xs, us, converged = _trajectory_arrays(result_or_arrays)
    index = _pick_instances(converged, max_paths)
    positions = _positions(problem, xs[index], _take(params, index))
    targets = _targets(problem, _take(params, index))
    if problem.obstacles and positions is not None and positions.shape[-1] == 2:
        fig = _map_figure(problem, positions, targets, converged[index], ok_label)
    else:
        errors = None
        if positions is not None and targets is not None:
            errors = np.linalg.norm(positions - targets[:, None, :], axis=-1)
        fig = _time_series_figure(
            problem, xs[index], us[index], converged[index], errors, ok_label
        )
    fig.suptitle(_title(problem, converged, index.size, ok_label))
    _save(fig, path)
    return fig


def plot_cost_histogram(result_or_arrays: Any, path: str | os.PathLike | None = None) -> Figure:
    """Two panels: histogram of final costs and of iteration counts, split by converged or not.

    result_or_arrays: a Result, or a mapping with cost (n,), iterations (n,) and optionally
        converged (n,) bool. Non-finite costs are counted in the title and left out of the bins.
    """
    cost = np.asarray(_field(result_or_arrays, "cost"), dtype=float)
    iterations = np.asarray(_field(result_or_arrays, "iterations"))
    converged = _converged_or_true(_field(result_or_arrays, "converged", None), cost.shape[0])
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_cost, ax_iter = fig.subplots(1, 2)
    _cost_panel(ax_cost, cost, converged)
    _iteration_panel(ax_iter, iterations, converged)
    fig.suptitle(f"{cost.shape[0]} instances, {converged.mean():.1%} converged")
    _save(fig, path)
    return fig


def plot_cost_distributions(costs: Mapping[str, Any], path: str | os.PathLike | None = None,
                            title: str = "", ylabel: str = "final TO cost") -> Figure:
    """Box plots (with every instance as a dot) of final costs per method: costs maps a label to
    (n,) costs, e.g. TO from each warm start (or, with ylabel, any per-instance number such as
    TO iterations). Non-finite values are left out and counted."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    labels = list(costs)
    values = [np.asarray(costs[k], dtype=float) for k in labels]
    finite = [v[np.isfinite(v)] for v in values]
    ax.boxplot(finite, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for i, v in enumerate(finite, start=1):
        ax.plot(i + rng.uniform(-0.15, 0.15, v.size), v, ".", alpha=0.4, color=CONVERGED_COLOR)
    dropped = sum(int(v.size - f.size) for v, f in zip(values, finite, strict=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f" ({dropped} non-finite left out)" if dropped else ""))
    _save(fig, path)
    return fig


# ---------------------------------------------------------------------------------------------
# Inputs.


def _field(obj: Any, name: str, default: Any = KeyError) -> Any:
    """obj.name or obj[name]; default when given and absent."""
    if isinstance(obj, Mapping):
        if name in obj:
            return obj[name]
    elif hasattr(obj, name):
        return getattr(obj, name)
    if default is KeyError:
        raise KeyError(f"expected a Result or a mapping with {name!r}")
    return default


def _trajectory_arrays(obj: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs (n,T+1,nx), us (n,T,nu), converged (n,)) from a Result, mapping or (xs, us) tuple."""
    if isinstance(obj, tuple | list):
        xs, us = obj[:2]
        converged = obj[2] if len(obj) > 2 else None
    else:
        xs, us = _field(obj, "xs"), _field(obj, "us")
        converged = _field(obj, "converged", None)
    xs, us = np.asarray(xs, dtype=float), np.asarray(us, dtype=float)
    if xs.ndim != 3 or us.ndim != 3 or xs.shape[0] != us.shape[0]:
        raise ValueError(
            f"expected xs (n, T+1, nx) and us (n, T, nu); got {xs.shape} and {us.shape}. "
            "For one instance add a leading axis: xs[None]."
        )
    return xs, us, _converged_or_true(converged, xs.shape[0])


def _converged_or_true(converged: Any, n: int) -> np.ndarray:
    if converged is None:
        return np.ones(n, dtype=bool)
    return np.asarray(converged, dtype=bool).reshape(n)


def _pick_instances(converged: np.ndarray, max_paths: int) -> np.ndarray:
    """Indices of at most max_paths instances: failed ones first (up to half), then converged."""
    failed = np.flatnonzero(~converged)
    ok = np.flatnonzero(converged)
    n_failed = min(failed.size, max(max_paths // 2, max_paths - ok.size))
    chosen = np.concatenate([failed[:n_failed], ok[: max_paths - n_failed]])
    return np.sort(chosen)


def _take(params: Mapping[str, Any] | None, index: np.ndarray) -> dict | None:
    if params is None:
        return None
    return {key: np.asarray(value)[index] for key, value in params.items()}


def _positions(problem, xs: np.ndarray, params: dict | None) -> np.ndarray | None:
    """Task-space positions p(x_t) (m, T+1, d), or None without position or params."""
    if problem.position is None or params is None:
        return None
    per_state = jax.vmap(problem.position, in_axes=(0, None))
    return np.asarray(jax.jit(jax.vmap(per_state))(xs, params))


def _targets(problem, params: dict | None) -> np.ndarray | None:
    """Targets p*(params) (m, d), or None without target or params."""
    if problem.target is None or params is None:
        return None
    return np.asarray(jax.jit(jax.vmap(problem.target))(params))


def _title(problem, converged: np.ndarray, shown: int, ok_label: str = "converged") -> str:
    return (
        f"{problem.name}: {shown} of {converged.size} instances shown, "
        f"{converged.mean():.1%} {ok_label}"
    )


def _save(fig: Figure, path: str | os.PathLike | None) -> None:
    """Attach an Agg canvas (so the Figure renders anywhere) and write the PNG when path is set."""
    FigureCanvasAgg(fig)
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=_DPI)


def _color(ok: bool) -> str:
    return CONVERGED_COLOR if ok else FAILED_COLOR


def _status_legend(ax, converged: np.ndarray, extra: list | None = None,
                   ok_label: str = "converged") -> None:
    handles = [Line2D([], [], color=CONVERGED_COLOR, label=ok_label)]
    if not converged.all():
        handles.append(Line2D([], [], color=FAILED_COLOR, label=f"not {ok_label}"))
    ax.legend(handles=handles + (extra or []), loc="best", fontsize="small")


# ---------------------------------------------------------------------------------------------
# Obstacle map.


def _map_figure(problem, positions, targets, converged, ok_label="converged") -> Figure:
    """Obstacles (ellipses), start points, targets and the paths p(x_t) in the plane."""
    fig = Figure(figsize=(7, 6.5), layout="constrained")
    ax = fig.subplots()
    for obstacle in problem.obstacles:
        ax.add_patch(
            EllipsePatch(obstacle.center, obstacle.axes[0], obstacle.axes[1],
                         facecolor="0.75", edgecolor="0.35", zorder=1)
        )
    for path_xy, ok in zip(positions, converged, strict=True):
        ax.plot(path_xy[:, 0], path_xy[:, 1], color=_color(ok), lw=1.0, alpha=0.7, zorder=2)
    ax.scatter(positions[:, 0, 0], positions[:, 0, 1], s=12, color="k", zorder=3)
    extra = [Line2D([], [], color="k", marker="o", ls="", ms=4, label="start")]
    if targets is not None:
        unique = np.unique(np.round(targets, 9), axis=0)
        ax.scatter(unique[:, 0], unique[:, 1], marker="*", s=160, color="gold",
                   edgecolor="k", zorder=4)
        extra.append(Line2D([], [], color="gold", marker="*", ls="", ms=12, mec="k",
                            label="target"))
    extra.append(EllipsePatch((0, 0), 1, 1, facecolor="0.75", edgecolor="0.35", label="obstacle"))
    _status_legend(ax, converged, extra, ok_label)
    ax.set_xlim(*_limits(positions[..., 0], converged, targets, problem.obstacles, 0))
    ax.set_ylim(*_limits(positions[..., 1], converged, targets, problem.obstacles, 1))
    ax.set_aspect("equal")
    ax.set_xlabel("p[0] (m)")
    ax.set_ylabel("p[1] (m)")
    ax.grid(alpha=0.3)
    return fig


def _limits(values, converged, targets, obstacles, axis: int) -> tuple[float, float]:
    """Axis limits that show the paths, targets and obstacles, with a 5% margin.

    Diverged instances (far outside what the converged ones, targets and obstacles span) are
    left off-scale rather than squashing the rest; see `_robust_range`.
    """
    fixed = []
    if targets is not None:
        fixed.append(targets[:, axis])
    for obstacle in obstacles:
        c, half = obstacle.center[axis], obstacle.axes[axis] / 2
        fixed.append(np.array([c - half, c + half]))
    return _robust_range(values, converged, fixed, margin=0.05)


def _robust_range(values, converged, fixed=(), margin: float = 0.05) -> tuple[float, float]:
    """(lo, hi) of the finite values, unless failed instances reach far beyond the rest.

    values (m, ...) per instance. The reference range is that of the converged instances and the
    `fixed` points (all instances when none converged); it is widened to every instance's range
    when that is at most 3x wider, else kept, so that one diverged instance does not hide the
    others.
    """
    values = np.asarray(values, dtype=float)
    reference = values[converged] if converged.any() else values
    everything = [values.ravel(), *fixed]
    reference_points = [reference.ravel(), *fixed]
    lo, hi = _finite_min_max(np.concatenate(reference_points))
    all_lo, all_hi = _finite_min_max(np.concatenate(everything))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if all_hi - all_lo <= 3 * span:
        lo, hi = all_lo, all_hi
        span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - margin * span, hi + margin * span


def _finite_min_max(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return -1.0, 1.0
    return float(finite.min()), float(finite.max())


# ---------------------------------------------------------------------------------------------
# Time series.


def _time_series_figure(problem, xs, us, converged, errors, ok_label="converged") -> Figure:
    """One panel per state, per control and (when given) for the task-space error."""
    nx, nu = xs.shape[-1], us.shape[-1]
    panels = nx + nu + (errors is not None)
    ncols = 2 if panels <= 4 else 3 if panels <= 9 else 4
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    t_states = problem.dt * np.arange(xs.shape[1])
    t_controls = problem.dt * np.arange(us.shape[1])
    for i in range(nx):
        _lines(axes[i], t_states, xs[..., i], converged)
        _robust_ylim(axes[i], xs[..., i], converged)
        axes[i].set_title(f"state x[{i}]", fontsize="medium")
    for j in range(nu):
        ax = axes[nx + j]
        lower, upper = problem.u_lower[j], problem.u_upper[j]
        _lines(ax, t_controls, us[..., j], converged, step=True)
        _bounds(ax, lower, upper)
        _robust_ylim(ax, us[..., j], converged, [b for b in (lower, upper) if np.isfinite(b)])
        ax.set_title(f"control u[{j}]", fontsize="medium")
    if errors is not None:
        ax = axes[nx + nu]
        _lines(ax, t_states, errors, converged)
        _error_scale(ax, errors, converged)
        ax.set_title("task-space error ||p - p*||", fontsize="medium")
    for ax in axes[panels:]:
        ax.set_visible(False)
    for ax in axes[:panels]:
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
    _status_legend(axes[0], converged, ok_label=ok_label)
    return fig


def _lines(ax, t, values, converged, step: bool = False) -> None:
    """One line per instance, coloured by converged; failed instances drawn on top."""
    order = np.argsort(~converged, kind="stable")
    for k in order:
        style = {"color": _color(converged[k]), "lw": 0.9, "alpha": 0.6}
        if step:
            ax.step(t, values[k], where="post", **style)
        else:
            ax.plot(t, values[k], **style)


def _robust_ylim(ax, values, converged, fixed=()) -> None:
    """Keep diverged or non-finite instances from squashing the y-axis (see _robust_range)."""
    if converged.all() and np.isfinite(values).all():
        return
    ax.set_ylim(*_robust_range(values, converged, [np.asarray(fixed, dtype=float)]))


def _error_scale(ax, errors, converged) -> None:
    """Log scale when the errors span more than 3 decades; limits robust to diverged instances."""
    reference = errors[converged] if converged.any() else errors
    positive = reference[np.isfinite(reference) & (reference > 0)]
    if positive.size and positive.max() / positive.min() > 1e3:
        ax.set_yscale("log")
        if not (converged.all() and np.isfinite(errors).all()):
            ax.set_ylim(positive.min() / 2, positive.max() * 2)
    else:
        _robust_ylim(ax, errors, converged)


def _bounds(ax, lower: float, upper: float) -> None:
    """Dashed horizontal lines at the finite control bounds."""
    for bound in (lower, upper):
        if np.isfinite(bound):
            ax.axhline(bound, color="k", ls="--", lw=1.0, alpha=0.8)


# ---------------------------------------------------------------------------------------------
# Histograms.


def _cost_panel(ax, cost: np.ndarray, converged: np.ndarray) -> None:
    """Histogram of finite costs, stacked by converged; log bins when they span decades."""
    finite = np.isfinite(cost)
    values = cost[finite]
    title = "final cost"
    if (~finite).any():
        title += f" ({int((~finite).sum())} non-finite left out)"
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("cost")
    ax.set_ylabel("instances")
    if values.size == 0:
        return
    lo, hi = values.min(), values.max()
    if lo > 0 and hi / lo > 100:
        bins = np.geomspace(lo, hi, 31)
        ax.set_xscale("log")
    else:
        half = 0.01 * abs(lo) or 0.5
        bins = 30 if hi > lo else np.array([lo - half, hi + half])
    _stacked(ax, [cost[finite & converged], cost[finite & ~converged]], bins)


def _iteration_panel(ax, iterations: np.ndarray, converged: np.ndarray) -> None:
    """Histogram of iteration counts with integer-aligned bins, stacked by converged."""
    lo, hi = int(iterations.min()), int(iterations.max())
    step = max(1, -(-(hi - lo + 1) // 40))
    bins = np.arange(lo, hi + step + 1, step) - 0.5
    _stacked(ax, [iterations[converged], iterations[~converged]], bins)
    ax.set_title("iterations", fontsize="medium")
    ax.set_xlabel("DDP iterations")
    ax.set_ylabel("instances")


def _stacked(ax, groups: list[np.ndarray], bins) -> None:
    """A stacked histogram of converged / not-converged values, with a legend."""
    labels = ["converged", "not converged"]
    colors = [CONVERGED_COLOR, FAILED_COLOR]
    keep = [i for i, g in enumerate(groups) if g.size]
    ax.hist([groups[i] for i in keep], bins=bins, stacked=True,
            color=[colors[i] for i in keep], label=[labels[i] for i in keep],
            edgecolor="white", linewidth=0.5)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------------------------------------
# Task-space paths and the policy against TO (seed 002, Figs. 1 and 6).


def plot_task_paths(
    problem,
    xs: Any,
    params: Mapping[str, Any],
    flags: Any = None,
    path: str | os.PathLike | None = None,
    max_paths: int = 12,
    ok_label: str = "converged",
) -> Figure:
    """Task-space paths p(x_t) of a few instances with their starts and targets (seed 002's
    Fig. 1: a policy rollout reaching precisely), next to the distance ||p - p*|| over time.

    problem: an rlto.Problem with `position` and `target`.
    xs: (n, T+1, nx) states; params: the instances' parameters (leading dim n).
    flags: (n,) bool per instance (e.g. within 1% of J*), drawn blue / red; None: all True.
    max_paths: at most this many instances are drawn; flagged-False ones are preferred, up to
        half. The title gives the median final distance over all n, a diverged rollout's (NaN)
        ranking as the farthest, as in `Report.precision`.
    """
    if problem.position is None or problem.target is None:
        raise ValueError(f"{problem.name} has no task space (position and target); "
                         "plot_trajectories shows its states instead.")
    xs = np.asarray(xs, dtype=np.float64)
    flags = _converged_or_true(flags, xs.shape[0])
    index = _pick_instances(flags, max_paths)
    chosen = _take(params, index)
    positions = _positions(problem, xs[index], chosen)
    targets = _targets(problem, chosen)
    all_final = np.linalg.norm(
        _positions(problem, xs[:, -1:], params)[:, 0] - _targets(problem, params), axis=-1
    )
    errors = np.linalg.norm(positions - targets[:, None, :], axis=-1)
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    path_ax = _path_axes(fig, 1, 2, 1, positions.shape[-1])
    _draw_paths(path_ax, positions, targets, flags[index])
    _status_legend(path_ax, flags[index], [
        Line2D([], [], color="k", marker="o", ls="", ms=4, label="start"),
        Line2D([], [], color="gold", marker="*", ls="", ms=12, mec="k", label="target"),
    ], ok_label)
    error_ax = fig.add_subplot(1, 2, 2)
    _lines(error_ax, problem.dt * np.arange(xs.shape[1]), errors, flags[index])
    _error_scale(error_ax, errors, flags[index])
    error_ax.set_xlabel("time (s)")
    error_ax.set_ylabel("||p - p*|| (m)")
    error_ax.grid(alpha=0.3)
    fig.suptitle(f"{problem.name}: {index.size} of {flags.size} instances shown, "
                 f"{flags.mean():.1%} {ok_label}, median final distance "
                 f"{np.median(nan_as_inf(all_final)):.3g} m")
    _save(fig, path)
    return fig


def plot_policy_and_to(
    problem,
    params: Mapping[str, Any],
    trajectories: Mapping[str, tuple[Any, Any]],
    path: str | os.PathLike | None = None,
) -> Figure:
    """One instance, one row per trajectory (seed 002's Fig. 6: the policy's rollout, TO
    warm-started by it, TO from zero controls): left the task-space path p(x_t) with the target
    (the states over time when the problem has no task space), right the controls with their
    bounds. Each row's title gives its cost and final distance to the target.

    params: one instance's parameters (no leading batch dim).
    trajectories: label -> (xs (T+1, nx), us (T, nu)), drawn top to bottom in this order.
    """
    params = {key: np.asarray(value) for key, value in params.items()}
    one = {key: value[None] for key, value in params.items()}  # a batch of one, for p and p*
    rows = len(trajectories)
    fig = Figure(figsize=(12, 3.6 * rows + 0.4), layout="constrained")
    t_states = problem.dt * np.arange(problem.horizon + 1)
    t_controls = problem.dt * np.arange(problem.horizon)
    task_space = problem.position is not None and problem.target is not None
    target = _targets(problem, one) if task_space else None
    for row, (label, (xs, us)) in enumerate(trajectories.items()):
        xs = np.asarray(xs, dtype=np.float64)
        us = np.asarray(us, dtype=np.float64)
        cost = float(problem.trajectory_cost(xs, us, params))
        title = f"{label}: cost {cost:.5g}"
        if task_space:
            positions = _positions(problem, xs[None], one)
            left = _path_axes(fig, rows, 2, 2 * row + 1, positions.shape[-1])
            _draw_paths(left, positions, target, np.ones(1, dtype=bool))
            title += f", final distance {np.linalg.norm(positions[0, -1] - target[0]):.3g} m"
        else:
            left = fig.add_subplot(rows, 2, 2 * row + 1)
            for i in range(xs.shape[-1]):
                left.plot(t_states, xs[:, i], lw=1.2, label=f"x[{i}]")
            left.set_xlabel("time (s)")
            left.legend(fontsize="small", ncols=2)
            left.grid(alpha=0.3)
        left.set_title(title, fontsize="medium")
        right = fig.add_subplot(rows, 2, 2 * row + 2)
        for j in range(us.shape[-1]):
            right.step(t_controls, us[:, j], where="post", lw=1.2, label=f"u[{j}]")
        for lower, upper in zip(problem.u_lower, problem.u_upper, strict=True):
            _bounds(right, lower, upper)
        right.set_xlabel("time (s)")
        right.set_title(f"{label}: controls", fontsize="medium")
        right.legend(fontsize="small", ncols=min(us.shape[-1], 3))
        right.grid(alpha=0.3)
    _save(fig, path)
    return fig


def _path_axes(fig: Figure, rows: int, cols: int, index: int, dim: int):
    """A 3-D axes for 3-D task spaces, a plane otherwise."""
    if dim == 3:
        ax = fig.add_subplot(rows, cols, index, projection="3d")
        ax.set_zlabel("p[2] (m)")
    else:
        ax = fig.add_subplot(rows, cols, index)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    ax.set_xlabel("p[0] (m)")
    ax.set_ylabel("p[1] (m)")
    return ax


def _draw_paths(ax, positions: np.ndarray, targets: np.ndarray, flags: np.ndarray) -> None:
    """Paths (m, T+1, d), their starts (black dots) and targets (gold stars), in 2-D or 3-D."""
    dims = positions.shape[-1]
    for path_xyz, ok in zip(positions, flags, strict=True):
        ax.plot(*(path_xyz[:, i] for i in range(dims)), color=_color(ok), lw=1.2, alpha=0.8)
    ax.scatter(*(positions[:, 0, i] for i in range(dims)), s=14, color="k")
    unique = np.unique(np.round(targets, 9), axis=0)
    ax.scatter(*(unique[:, i] for i in range(dims)), marker="*", s=160, color="gold",
               edgecolor="k")
