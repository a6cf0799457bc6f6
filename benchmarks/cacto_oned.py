"""CACTO's 1-D example (seed 000): the learned value function against the true one, and TO
from a naive guess against TO warm-started by the actor.

The true value V*(x, t) of `oned` comes from backward dynamic programming on a fine state grid
(controls on a grid, linear interpolation of V between states). Writes <out>/cacto_oned.png
(V(x, t) learned vs true at a few t; TO paths from zero controls and from the actor's rollout)
and cacto_oned.json (the curves, the minimisers, the TO costs against V*).

    python benchmarks/cacto_oned.py --loops 6
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import rlto  # noqa: E402
from rlto.algorithms import cacto  # noqa: E402
from rlto.evaluate import policy_rollout  # noqa: E402
from rlto.nets import TIME_KEY  # noqa: E402


def oned_dynamic_programming(problem, x_grid: np.ndarray, u_grid: np.ndarray) -> np.ndarray:
    """V*(x, t) of an `oned` problem: (T+1, len(x_grid)), by backward DP over u_grid.

    V*(x, T) = P(x); V*(x, t) = min_u w_u u^2 + P(x) + V*(a x + b u, t + 1), with V*(., t + 1)
    interpolated linearly on x_grid (x_grid must cover where the dynamics go)."""
    c = problem.config
    state_cost = np.array([float(problem.terminal_cost(np.array([x]), {})) for x in x_grid])
    values = [state_cost]
    x_next = c.a * x_grid[:, None] + c.b * u_grid[None, :]
    for _ in range(problem.horizon):
        q = c.w_u * u_grid[None] ** 2 + state_cost[:, None] + np.interp(x_next, x_grid,
                                                                          values[-1])
        values.append(q.min(axis=1))
    return np.array(values[::-1])


def learned_value(state: cacto.CactoState, xs: np.ndarray, t: float) -> np.ndarray:
    """The critic's V(x, t) at states xs (m,)."""
    return np.asarray(jax.vmap(lambda x: cacto.value(
        state.critic, state.value_offset, state.value_scale, x, {TIME_KEY: t}))(xs[:, None]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    problem = rlto.make("oned", horizon=args.horizon)
    x_grid = np.linspace(-2.2, 2.2, 2201)
    true = oned_dynamic_programming(problem, x_grid, np.linspace(-1, 1, 401))
    config = cacto.CactoConfig(n_problems=64, hidden=(64, 64), critic_hidden=(128, 128),
                               epochs=5, value_gradient_weight=1.0)
    state = cacto.init(problem, config, jax.random.key(args.seed))
    for _ in range(args.loops):
        state, _ = cacto.step(problem, config, state)

    grid = np.linspace(-2, 2, 401)
    T = problem.horizon
    times = sorted({0, T // 2, T - 5, T - 2} & set(range(T)))
    curves = {t: (learned_value(state, grid, float(t)), np.interp(grid, x_grid, true[t]))
              for t in times}
    starts = {"x0": np.linspace(-2, 2, 21)[:, None]}
    _, actor_us, _ = policy_rollout(problem, state.policy, starts)
    naive = rlto.solve(problem, starts)
    warm = rlto.solve(problem, starts, init=actor_us)
    optimum = np.interp(starts["x0"][:, 0], x_grid, true[0])

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax_v, ax_naive, ax_warm = fig.subplots(1, 3)
    for t, (learned, exact) in curves.items():
        line, = ax_v.plot(grid, learned, label=f"learned, t={t}")
        ax_v.plot(grid, exact, "--", color=line.get_color(), label=f"DP, t={t}")
    ax_v.set(xlabel="x", ylabel="V(x, t)", title="value function: critic vs dynamic programming")
    ax_v.legend(fontsize=7)
    for ax, result, name in ((ax_naive, naive, "zero controls"), (ax_warm, warm, "actor")):
        excess = result.cost - optimum
        for xs, e in zip(result.xs, excess, strict=True):
            ax.plot(np.arange(T + 1), xs[:, 0], color="tab:red" if e > 1e-3 * abs(
                optimum).max() else "tab:blue", lw=1)
        ax.set(xlabel="t", ylabel="x", title=f"TO from {name}: "
               f"{np.mean(excess <= 1e-3 * np.abs(optimum)):.0%} at the DP optimum")
    FigureCanvasAgg(fig)
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "cacto_oned.png", dpi=120)
    summary = {
        "loops": args.loops, "seed": args.seed, "horizon": T,
        "minimiser": {str(t): {"learned": float(grid[np.argmin(lv)]),
                               "dp": float(grid[np.argmin(tv)]),
                               "rmse": float(np.sqrt(np.mean((lv - tv) ** 2)))}
                      for t, (lv, tv) in curves.items()},
        "to_cost_excess_naive": (naive.cost - optimum).tolist(),
        "to_cost_excess_actor": (warm.cost - optimum).tolist(),
    }
    (args.out / "cacto_oned.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["minimiser"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
