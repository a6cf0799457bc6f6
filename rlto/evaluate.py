"""Evaluation of control policies: test sets, the optimum cache, rollouts, metrics, warm starts.

The metrics of shared/reference/benchmarks.md section 2, for any policy: a pure JAX callable
`policy(x (nx,), params) -> u (nu,)` on one instance (vmappable), a plain function or an
Equinox module.

    params = test_params(problem)                     # M = 100 draws from TEST_SEED
    xs, us, cost = policy_rollout(problem, policy, params)
    J_star = optimum_costs(problem, params)           # lowest TO cost ever found, cached on disk
    J_star, us_star = optimum_solutions(problem, params)   # and the controls that reach it
    report = evaluate(problem, policy)                # gap, precision, violations, ...
    rich.print(report.table()); json.dumps(report.to_dict())
    warm_start_study(problem, policy, params)         # seed 002's Fig. 7: TO iterations

Arrays returned are NumPy, float64, leading dimension n (as in rlto.Result).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from rlto.nets import at_step
from rlto.problem import Problem, ProblemError
from rlto.solver import Result, solve
from rlto.solver.ddp import default_controls

TEST_SEED = 2_000_003
"""Seed of every test set: `problem.sample(jax.random.key(TEST_SEED), m)`.

Training runs draw their parameters from keys derived from their own small seeds (0, 1, 2, ...);
none may use this number, so that no policy is ever scored on instances it was trained on."""

_CACHE_ENV = "RLTO_OPTIMUM_CACHE"
_CACHE_VERSION = 2  # 2: neighbour restarts (J* of version 1 was twice too high on pendulum)
# Relative agreement asked of a cache entry's stored cost and the cost of its stored controls
# recomputed now: a mismatch means the problem's functions changed under the same name/config.
_CACHE_RTOL = 1e-6

Policy = Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]


# ---------------------------------------------------------------------------------------------
# Test sets and closed-loop rollouts.


def test_params(problem: Problem, m: int = 100, seed: int = TEST_SEED) -> dict[str, np.ndarray]:
    """The test set: m parameter draws from `seed` (TEST_SEED), as NumPy float64 arrays (m, ...).

    The same (problem, m, seed) always gives the same draws, so the optimum cache finds them.
    """
    if int(m) < 1:
        raise ProblemError(f"m must be a positive integer, got {m}.")
    drawn = problem.sample(jax.random.key(int(seed)), int(m))
    return {k: np.asarray(v, dtype=np.float64) for k, v in drawn.items()}


test_params.__test__ = False  # not a test, for pytest modules that import it


# Incremented each time the batched rollout is traced (i.e. compiled anew); read by the tests.
_trace_count = 0


def _rollout_one(problem: Problem, policy: Policy, params, dtype=jnp.float64):
    """Closed-loop rollout of one instance: xs (T+1, nx), us (T, nu), cost, violation, error,
    clipped share. Reverse mode through it (`closed_loop_cost`) recomputes each step's
    linearisation on the way back (jax.checkpoint) instead of keeping all T, as
    Problem.rollout does; values and forward passes are unaffected.

    dtype: the precision of the simulation. The states, controls, bounds and params are held
    in it; problem functions that compute in a wider type (a float64 constant promotes) still
    run, at that type's speed, and their states are rounded back."""
    lower = jnp.asarray(problem.u_lower, dtype)
    upper = jnp.asarray(problem.u_upper, dtype)
    params = as_dtype(params, dtype)
    x0 = jnp.asarray(params["x0"], dtype=dtype)

    def step(x, t):
        raw = jnp.asarray(policy(x, at_step(params, t)))
        if raw.shape == () and problem.nu == 1:
            raw = raw.reshape(1)
        if raw.shape != (problem.nu,):
            raise ProblemError(
                f"{problem.name}: policy(x, params) returned shape {raw.shape}, expected "
                f"({problem.nu},) (one control per instance; the rollout vmaps over instances)."
            )
        raw = raw.astype(x.dtype)
        u = jnp.clip(raw, lower, upper)
        x_next = problem.dynamics(x, u, t, params).astype(dtype)
        return x_next, (x_next, u, jnp.mean((raw != u).astype(x.dtype)))

    _, (xs, us, clipped) = jax.lax.scan(jax.checkpoint(step), x0, jnp.arange(problem.horizon))
    xs = jnp.concatenate([x0[None], xs])
    cost = problem.trajectory_cost(xs, us, params)
    return (
        xs,
        us,
        cost,
        _violation_one(problem, xs, us, params),
        _final_error_one(problem, xs, params),
        jnp.mean(clipped),
    )


def as_dtype(params, dtype):
    """params with every floating-point array cast to dtype (integer keys such as a time step
    are kept)."""
    return {k: jnp.asarray(v, dtype) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)
            else v for k, v in params.items()}


def closed_loop_cost(problem: Problem, policy: Policy, params, dtype=jnp.float64) -> jax.Array:
    """J(pi; beta) of one instance (params unbatched): the cost of the policy's closed-loop
    rollout, as `policy_rollout` computes it (controls clipped to the bounds), as a traced
    function that jax.grad differentiates through the simulator with respect to the policy's
    weights (reverse mode: one dynamics VJP per step on the way back). Not compiled here.
    dtype: the simulation's precision (`_rollout_one`); float32 for a faster gradient.

    Each step is rematerialised on the way back (jax.checkpoint): kept, the linearisations of
    all T steps (on ur5 the dynamics' 12 x 18 Jacobian per state) are more memory traffic than
    computing each again: a closed-loop step on ur5 (128 instances) takes 0.21 s instead of 0.39."""
    return _rollout_one(problem, policy, params, dtype)[2]


def _violation_one(problem: Problem, xs, us, params):
    """max over t of max(g, 0) for one trajectory; 0 without path constraints."""
    if problem.constraints is None:
        return jnp.zeros((), dtype=xs.dtype)
    g = jax.vmap(problem.constraints, in_axes=(0, 0, 0, None))(
        xs[:-1], us, jnp.arange(problem.horizon), params
    )
    return jnp.max(jnp.maximum(g, 0.0))


def _final_error_one(problem: Problem, xs, params):
    """||position(x_T) - target|| for one trajectory; NaN where the problem has no task space."""
    if problem.position is None or problem.target is None:
        return jnp.full((), jnp.nan, dtype=xs.dtype)
    return jnp.linalg.norm(problem.position(xs[-1], params) - problem.target(params))


@eqx.filter_jit
def _rollout_batch(problem: Problem, policy: Policy, params):
    # The Problem (hashed by identity) and the policy's non-array parts are static: one compiled
    # program per (problem, policy structure, batch shape). The policy's arrays (an Equinox
    # module's weights) are traced arguments, so new weights reuse the compiled program.
    global _trace_count
    _trace_count += 1
    return jax.vmap(lambda p: _rollout_one(problem, policy, p))(params)


def _as_params(problem: Problem, params) -> dict[str, jax.Array]:
    problem.check_params(params)
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}


def _rollout_all(problem: Problem, policy: Policy, params) -> tuple[np.ndarray, ...]:
    out = _rollout_batch(problem, policy, _as_params(problem, params))
    return tuple(np.asarray(a) for a in out)


def policy_rollout(
    problem: Problem, policy: Policy, params
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-loop rollouts of `policy` from each instance's x0.

    u_t = clip(policy(x_t, params_t), u_lower, u_upper): the policy need not respect the bounds;
    params_t is the instance's params with the step t under rlto.nets.TIME_KEY.
    Compiled once per (problem, policy structure, n): an Equinox module is a traced argument, so
    a policy whose weights change every training iteration does not recompile; a plain function
    is static (a new function object compiles anew).
    Returns xs (n, T+1, nx), us (n, T, nu) (clipped, as applied) and cost (n,), where
    cost[i] == problem.trajectory_cost(xs[i], us[i], params_i).
    """
    xs, us, cost, *_ = _rollout_all(problem, policy, params)
    return xs, us, cost


# ---------------------------------------------------------------------------------------------
# Optimum costs J*, cached on disk.


def default_cache_dir() -> str | None:
    """Where optimum_costs keeps J* when given no cache_dir: $RLTO_OPTIMUM_CACHE, or
    ~/.cache/rlto-optimum; None (no cache) when that variable is set to the empty string."""
    value = os.environ.get(_CACHE_ENV)
    if value is None:
        return os.path.join(os.path.expanduser("~"), ".cache", "rlto-optimum")
    return value or None


def cache_path(problem: Problem, params, cache_dir: str | os.PathLike) -> str:
    """The npz file holding J* of (problem, params): named by the problem and a hash of its
    name, sizes, bounds, `repr(problem.config)` and the parameter values."""
    digest = hashlib.sha256()
    for part in (
        problem.name,
        repr(problem.config),
        f"{problem.nx},{problem.nu},{problem.horizon},{problem.dt!r}",
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    for bound in (problem.u_lower, problem.u_upper):
        digest.update(np.ascontiguousarray(bound, dtype=np.float64).tobytes())
    for start in ("initial_controls", "heuristic_controls"):  # J* found before such a start
        if getattr(problem, start) is not None:                 # existed was higher: a new key
            digest.update(start.encode())                       # drops those entries
    for key in sorted(params):
        value = np.ascontiguousarray(params[key], dtype=np.float64)
        digest.update(f"{key}{value.shape}".encode())
        digest.update(value.tobytes())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", problem.name) or "problem"
    return os.path.join(os.fspath(cache_dir), f"{name}-{digest.hexdigest()[:20]}.npz")


def _controls_batch_impl(problem: Problem, us, params):
    xs = jax.vmap(problem.rollout)(us, params)
    cost = jax.vmap(problem.trajectory_cost)(xs, us, params)
    violation = jax.vmap(lambda x, u, p: _violation_one(problem, x, u, p))(xs, us, params)
    return cost, violation


_controls_batch = eqx.filter_jit(_controls_batch_impl)


def _controls_cost(problem: Problem, us, params) -> tuple[np.ndarray, np.ndarray]:
    """Cost and path-constraint violation of the open-loop rollouts of controls us (n, T, nu)
    (clipped to the bounds): what these controls really achieve, whatever the solver reported."""
    us = jnp.clip(jnp.asarray(us, dtype=jnp.float64), problem.u_lower, problem.u_upper)
    cost, violation = _controls_batch(problem, us, params)
    return np.asarray(cost), np.asarray(violation)


def _better(cost, violation, best_cost, best_violation, constraint_tol) -> np.ndarray:
    """Where (cost, violation) beats the best so far: feasible beats infeasible; among feasible
    ones the lower cost wins, among infeasible ones the lower violation. NaN never wins."""
    feasible = violation <= constraint_tol
    best_feasible = best_violation <= constraint_tol
    with np.errstate(invalid="ignore"):
        return np.isfinite(cost) & (
            (feasible & ~best_feasible)
            | (feasible & best_feasible & ~(cost >= best_cost))
            | (~feasible & ~best_feasible & ~(violation >= best_violation))
        )


def _load_entry(path: str, n: int, problem: Problem) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            entry = {k: np.asarray(data[k]) for k in ("cost", "us", "violation", "version")}
    except (OSError, KeyError, ValueError, EOFError):
        return None
    if (
        int(entry["version"]) != _CACHE_VERSION
        or entry["cost"].shape != (n,)
        or entry["us"].shape != (n, problem.horizon, problem.nu)
    ):
        return None
    return entry


def _save_entry(path: str, entry: Mapping[str, np.ndarray]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, version=np.asarray(_CACHE_VERSION), **entry)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)


def _random_controls(problem: Problem, key, n: int) -> np.ndarray:
    """Controls (n, T, nu), i.i.d. per step: uniform in the box where both bounds are finite,
    standard normal (then clipped to the finite bound, if any) elsewhere."""
    lower, upper = problem.u_lower, problem.u_upper
    shape = (n, problem.horizon, problem.nu)
    k1, k2 = jax.random.split(key)
    unit = np.asarray(jax.random.uniform(k1, shape, dtype=jnp.float64))
    normal = np.asarray(jax.random.normal(k2, shape, dtype=jnp.float64))
    boxed = np.isfinite(lower) & np.isfinite(upper)
    lo, hi = np.where(boxed, lower, 0.0), np.where(boxed, upper, 0.0)
    return np.clip(np.where(boxed, lo + unit * (hi - lo), normal), lower, upper)


def optimum_costs(problem: Problem, params, cache_dir: str | os.PathLike | None = None,
                  **search) -> np.ndarray:
    """J* per instance (n,): the lowest cost the TO solver has found from any warm start. The
    search, its cache and its keyword arguments: `optimum_solutions`, which also returns the
    controls that reach J*."""
    return optimum_solutions(problem, params, cache_dir, **search)[0]


def optimum_solutions(
    problem: Problem,
    params,
    cache_dir: str | os.PathLike | None = None,
    extra_inits: Iterable[Any] = (),
    max_iter: int = 500,
    tol: float = 1e-9,
    n_random: int = 2,
    seed: int = 0,
    constraint_tol: float = 1e-6,
    neighbours: int = 8,
    sweeps: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """J* per instance and the controls that reach it: (cost (n,), us (n, T, nu)), the lowest
    cost the TO solver has found from any warm start (`optimum_costs`: the costs alone).

    First time for (problem, params): rlto.solve from zero controls (or the problem's
    initial_controls), from `n_random` random control sequences within the bounds (seeded by
    `seed`), from every init in `extra_inits` (controls us (n, T, nu) or a pair (xs, us), e.g. a
    policy rollout), from the problem's heuristic_controls and its goal guess (`goal_guess`),
    where it has them; then up to `sweeps`
    passes of neighbour restarts (`neighbour_restarts`): each instance solved again from the
    closed-loop rollout, from its own x0, of the local controllers of its `neighbours` nearest
    instances' best solutions, until a pass improves none. On `pendulum`'s test set zero and
    random starts end short of upright on most instances (mean J* 7.56); the restarts alone
    carry the swing-ups that made it to their neighbours (3.71; a cluster of instances that all
    ended in one wrong swing pattern stays there), TO from the energy-pumping heuristic reaches
    3.43, and so do both (`benchmarks/optimum.py`). Each solution is scored
    by the cost of the open-loop rollout of its controls (never the solver's report of a
    trajectory that might still have defects); a solution whose path constraints are violated
    by more than `constraint_tol` only counts where no feasible one was found.
    The best costs and their controls are kept in cache_dir (default: default_cache_dir(); ""
    for none), keyed by cache_path(problem, params). Later calls return them without solving,
    except for the `extra_inits` given, which lower an entry where they do better: J* is the
    lowest cost ever found. A cached entry whose controls no longer give their cost (the
    problem's functions changed under the same name and config) is discarded with a warning.
    max_iter, tol: passed to rlto.solve. sweeps=0 skips the neighbour restarts.
    """
    if int(neighbours) < 0 or int(sweeps) < 0:
        raise ProblemError(f"neighbours and sweeps must be non-negative integers, got "
                           f"{neighbours} and {sweeps}.")
    n = problem.check_params(params)
    params = _as_params(problem, params)
    if cache_dir is None:
        cache_dir = default_cache_dir()
    path = cache_path(problem, params, cache_dir) if cache_dir else None
    entry = _checked_entry(path, n, problem, params) if path else None

    inits: list[Any] = list(extra_inits)
    fresh = entry is None
    if fresh:
        keys = jax.random.split(jax.random.key(int(seed)), max(int(n_random), 1))
        randoms = [_random_controls(problem, keys[i], n) for i in range(int(n_random))]
        inits = [None, *randoms, *inits]
        if problem.heuristic_controls is not None:
            inits.append(np.asarray(_heuristic_batch(problem, params)))
        if problem.goal_state is not None:
            inits.append(goal_guess(problem, params))
        entry = {
            "cost": np.full(n, np.inf),
            "us": np.zeros((n, problem.horizon, problem.nu)),
            "violation": np.full(n, np.inf),
        }
    elif not inits:
        return entry["cost"].copy(), entry["us"].copy()

    local = {  # the best solutions' local controllers, for the neighbour restarts
        "xs": np.zeros((n, problem.horizon + 1, problem.nx)),
        "us": np.zeros((n, problem.horizon, problem.nu)),
        "K": np.zeros((n, problem.horizon, problem.nu, problem.nx)),
    }

    def absorb(result: Result) -> np.ndarray:
        us = np.clip(np.asarray(result.us, dtype=np.float64), problem.u_lower, problem.u_upper)
        cost, violation = _controls_cost(problem, us, params)
        better = _better(cost, violation, entry["cost"], entry["violation"], constraint_tol)
        for name, value in (("cost", cost), ("us", us), ("violation", violation)):
            entry[name] = np.where(_rows(better, value), value, entry[name])
        for name, value in (("xs", result.xs), ("us", result.us), ("K", result.K)):
            local[name] = np.where(_rows(better, value), value, local[name])
        return better

    improved = np.zeros(n, dtype=bool)
    for init in inits:
        improved |= absorb(solve(problem, params, init=init, max_iter=max_iter, tol=tol))
    if fresh:
        for _ in range(int(sweeps)):
            previous = entry["cost"].copy()
            for init in neighbour_restarts(problem, params, local, int(neighbours)):
                improved |= absorb(solve(problem, params, init=init, max_iter=max_iter, tol=tol))
            # A pass ends the sweeps unless it lowered some J* by more than round-off.
            with np.errstate(invalid="ignore"):
                gain = previous - entry["cost"] > 1e-9 * np.maximum(np.abs(previous), 1.0)
            if not gain.any():
                break
    if path and improved.any():
        # Merge with what another process may have written meanwhile, then replace atomically.
        latest = _checked_entry(path, n, problem, params, warn=False)
        if latest is not None:
            keep = _better(
                latest["cost"],
                latest["violation"],
                entry["cost"],
                entry["violation"],
                constraint_tol,
            )
            for name in ("cost", "us", "violation"):
                entry[name] = np.where(_rows(keep, entry[name]), latest[name], entry[name])
        _save_entry(path, {k: entry[k] for k in ("cost", "us", "violation")})
    return entry["cost"].copy(), entry["us"].copy()


def goal_guess(problem: Problem, params) -> tuple[np.ndarray, np.ndarray]:
    """The goal guess warm start of n instances: states (n, T+1, nx), x0 then every knot at
    the instance's goal state problem.goal_state(params), and the default controls (n, T, nu)
    (zero, or the problem's initial_controls). An infeasible guess: the solver closes its gaps
    (multiple shooting) while it linearises around the goal, where a rollout of zero controls
    falls away from it. On `double_pendulum`'s test set, 200 DDP iterations from it reach a mean
    cost of 12.2 where zero controls reach 29.6 (J* 7.48), and lower J* on 11% of the instances.
    Raises ProblemError for a problem without goal_state."""
    if problem.goal_state is None:
        raise ProblemError(f"problem {problem.name!r} has no goal_state, so it has no goal "
                           "guess; give its Problem a goal_state(params) -> x* (nx,).")
    n = problem.check_params(params)
    params = _as_params(problem, params)
    goal = np.asarray(_goal_batch(problem, params), dtype=np.float64)
    xs = np.repeat(goal[:, None], problem.horizon + 1, axis=1)
    xs[:, 0] = np.asarray(params["x0"])
    return xs, np.asarray(default_controls(problem, params, n))


@eqx.filter_jit
def _goal_batch(problem: Problem, params) -> jax.Array:
    """problem.goal_state for each instance: -> (n, nx)."""
    return jax.vmap(problem.goal_state)(params)


@eqx.filter_jit
def _heuristic_batch(problem: Problem, params) -> jax.Array:
    """problem.heuristic_controls for each instance: -> (n, T, nu)."""
    return jax.vmap(problem.heuristic_controls)(params)


def _rows(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """mask (n,) shaped to broadcast over the rows of like (n, ...)."""
    return mask.reshape((-1,) + (1,) * (np.ndim(like) - 1))


def neighbour_features(problem: Problem, params) -> np.ndarray:
    """What makes two instances near (n, d): every parameter flattened, the angles of x0
    (Problem.angles) as (cos, sin) so that -pi and pi are neighbours, each column scaled to unit
    standard deviation over the set (constant columns dropped)."""
    columns = []
    for key in sorted(params):
        value = np.asarray(params[key], dtype=np.float64)
        value = value.reshape(value.shape[0], -1)
        if key == "x0" and problem.angles:
            angles = value[:, list(problem.angles)]
            rest = np.delete(value, list(problem.angles), axis=1)
            value = np.concatenate([np.cos(angles), np.sin(angles), rest], axis=1)
        columns.append(value)
    features = np.concatenate(columns, axis=1)
    scale = features.std(axis=0)
    keep = scale > 1e-12
    return features[:, keep] / scale[keep]


def neighbour_restarts(problem: Problem, params, local: Mapping[str, np.ndarray],
                       neighbours: int) -> Iterator[np.ndarray]:
    """Warm starts that carry solutions from instance to instance: for k = 1..neighbours, the
    controls (n, T, nu) of each instance's closed-loop rollout, from its own x0 and with its own
    parameters, of the local controller u = clip(u_j + K_j (x - x_j)) of its k-th nearest
    instance j (`neighbour_features`; angle differences wrapped to (-pi, pi]).

    local: the solutions to carry, "xs" (n, T+1, nx), "us" (n, T, nu) and "K" (n, T, nu, nx).
    Each restart reads `local` when it is drawn, so a caller that updates it with what the
    previous restart found passes that on at once (`pendulum`, 4 passes without the heuristic:
    mean J* 3.71 against 3.92 with all restarts drawn before any solve). A rollout that leaves
    the finite numbers keeps j's own controls from there on.
    """
    n = jax.tree.leaves(params)[0].shape[0]
    k = min(int(neighbours), n - 1)
    if k < 1:
        return
    features = neighbour_features(problem, params)
    distance = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    order = np.argsort(distance, axis=1, kind="stable")[:, :k]
    params = _as_params(problem, params)
    for column in range(k):
        j = order[:, column]
        us = _tracking_rollout(problem, jnp.asarray(local["xs"][j]), jnp.asarray(local["us"][j]),
                               jnp.asarray(local["K"][j]), params)
        yield np.asarray(us)


@eqx.filter_jit
def _tracking_rollout(problem: Problem, xs_ref, us_ref, K_ref, params):
    """Controls (n, T, nu) of u_t = clip(us_ref_t + K_ref_t (x_t - xs_ref_t)) rolled out from
    params["x0"]: xs_ref (n, T+1, nx), us_ref (n, T, nu), K_ref (n, T, nu, nx)."""
    angles = np.asarray(problem.angles, dtype=int)

    def one(x_ref, u_ref, gains, p):
        def step(x, inputs):
            t, x_t, u_t, gain_t = inputs
            dx = x - x_t
            if angles.size:
                dx = dx.at[angles].set(jnp.mod(dx[angles] + jnp.pi, 2 * jnp.pi) - jnp.pi)
            u = jnp.clip(u_t + gain_t @ dx, problem.u_lower, problem.u_upper)
            u = jnp.where(jnp.isfinite(u), u, u_t)
            return problem.dynamics(x, u, t, p), u

        steps = jnp.arange(problem.horizon)
        _, us = jax.lax.scan(step, jnp.asarray(p["x0"]), (steps, x_ref[:-1], u_ref, gains))
        return us

    return jax.vmap(one)(xs_ref, us_ref, K_ref, params)


def _checked_entry(
    path: str, n: int, problem: Problem, params, warn: bool = True
) -> dict[str, np.ndarray] | None:
    """The cache entry at path, or None when absent, unreadable or stale (its controls no longer
    give its costs)."""
    entry = _load_entry(path, n, problem)
    if entry is None:
        return None
    cost, _ = _controls_cost(problem, entry["us"], params)
    stored = entry["cost"]
    finite = np.isfinite(stored)
    if not np.allclose(cost[finite], stored[finite], rtol=_CACHE_RTOL, atol=1e-12):
        if not warn:
            return None
        warnings.warn(
            f"{problem.name}: the cached optimum in {path} does not match the problem any more "
            "(its controls now give other costs); recomputing it. Give a changed problem a new "
            "name or config.",
            stacklevel=3,
        )
        return None
    return entry


# ---------------------------------------------------------------------------------------------
# The report.


def nan_as_inf(values: np.ndarray) -> np.ndarray:
    """NaN (a diverged rollout's cost or error) replaced by +inf, for order statistics."""
    return np.where(np.isnan(values), np.inf, values)


def _json_number(value) -> float | int | None:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclasses.dataclass(frozen=True)
class Report:
    """Metrics of a policy on a test set (benchmarks.md section 2). Arrays are (n,) NumPy."""

    problem: str
    """Problem name."""
    policy_cost: np.ndarray
    """J_pi: cost of the closed-loop rollout (controls clipped to the bounds) per instance."""
    optimum_cost: np.ndarray
    """J*: the lowest TO cost found per instance (optimum_costs)."""
    final_error: np.ndarray | None
    """||position(x_T) - target|| per instance; None where the problem has no task space."""
    constraint_violation: np.ndarray
    """max over t of max(g, 0) along the rollout per instance; zeros without path constraints.
    (Control bounds are never violated: the rollout clips the policy's output.)"""
    clipped_share: np.ndarray
    """Share of the policy's control entries that fell outside the bounds and were clipped."""

    @property
    def n(self) -> int:
        return int(self.policy_cost.shape[0])

    @property
    def mean_policy_cost(self) -> float:
        """Mean J_pi (inf or NaN when a rollout diverged: nothing is dropped)."""
        return float(np.mean(self.policy_cost))

    @property
    def mean_optimum_cost(self) -> float:
        return float(np.mean(self.optimum_cost))

    @property
    def gap_percent(self) -> float:
        """(mean J_pi - mean J*) / |mean J*| * 100."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(
                (np.float64(self.mean_policy_cost) - self.mean_optimum_cost)
                / abs(np.float64(self.mean_optimum_cost))
                * 100.0
            )

    @property
    def instance_gaps_percent(self) -> np.ndarray:
        """(J_pi - J*) / |J*| * 100 per instance (n,): the mean-based gap hides whether a few
        failed rollouts or a small excess everywhere make it (on `pendulum`, 2 swing-ups out of
        100 that miss the catch cost about 40x J* each and make a 100% gap alone)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.policy_cost - self.optimum_cost) / np.abs(self.optimum_cost) * 100.0

    @property
    def median_gap_percent(self) -> float:
        """Median over instances of the per-instance gap (percent); a diverged rollout (NaN
        cost) ranks as the worst, so the median stays finite while fewer than half diverge."""
        return float(np.median(nan_as_inf(self.instance_gaps_percent)))

    @property
    def near_optimal(self) -> np.ndarray:
        """(n,) bool: the policy cost is within 1% of J* (J_pi <= J* + 0.01 |J*|)."""
        return self.policy_cost <= self.optimum_cost + 0.01 * np.abs(self.optimum_cost)

    @property
    def within_1_percent(self) -> float:
        """Share of instances whose policy cost is within 1% of J* (`near_optimal`)."""
        return float(np.mean(self.near_optimal))

    @property
    def precision(self) -> float:
        """Median final task-space error (a diverged rollout's error ranks as the worst); NaN where
        the problem has no task space."""
        if self.final_error is None:
            return float("nan")
        return float(np.median(nan_as_inf(self.final_error)))  # diverged: the worst

    @property
    def max_violation(self) -> float:
        """Largest path-constraint violation over the test set."""
        return float(np.max(self.constraint_violation))

    @property
    def nonfinite(self) -> int:
        """Instances whose rollout cost is NaN or inf (a diverging policy)."""
        return int(np.sum(~np.isfinite(self.policy_cost)))

    def summary(self) -> dict[str, float | int | str]:
        """The summary numbers (floats may be NaN/inf; to_dict makes them JSON-safe)."""
        return {
            "problem": self.problem,
            "n": self.n,
            "policy_cost_mean": self.mean_policy_cost,
            "optimum_cost_mean": self.mean_optimum_cost,
            "gap_percent": self.gap_percent,
            "median_gap_percent": self.median_gap_percent,
            "within_1_percent": self.within_1_percent,
            "precision": self.precision,
            "max_violation": self.max_violation,
            "clipped_share": float(np.mean(self.clipped_share)),
            "nonfinite": self.nonfinite,
        }

    def to_dict(self, per_instance: bool = True) -> dict[str, Any]:
        """Strict-JSON-safe dict (NaN/inf become None): the summary, plus the per-instance
        arrays as lists under "instances" when per_instance."""
        out: dict[str, Any] = {k: _json_number(v) for k, v in self.summary().items()}
        if per_instance:
            arrays = {
                "policy_cost": self.policy_cost,
                "optimum_cost": self.optimum_cost,
                "final_error": self.final_error,
                "constraint_violation": self.constraint_violation,
                "clipped_share": self.clipped_share,
            }
            out["instances"] = {
                k: None if v is None else [_json_number(float(a)) for a in v]
                for k, v in arrays.items()
            }
        return out

    def table(self):
        """A rich Table of the summary (print it with rich.print or a Console)."""
        from rich.table import Table

        table = Table(title=f"{self.problem}: policy on {self.n} test instances")
        table.add_column("metric")
        table.add_column("value", justify="right")
        rows = [
            ("mean policy cost J_pi", f"{self.mean_policy_cost:.6g}"),
            ("mean optimum cost J*", f"{self.mean_optimum_cost:.6g}"),
            ("gap (%)", f"{self.gap_percent:.3g}"),
            ("median per-instance gap (%)", f"{self.median_gap_percent:.3g}"),
            ("instances within 1% of J*", f"{self.within_1_percent:.0%}"),
            (
                "precision (median final error)",
                "n/a" if self.final_error is None else f"{self.precision:.3g}",
            ),
            ("max constraint violation", f"{self.max_violation:.3g}"),
            ("clipped controls (share)", f"{np.mean(self.clipped_share):.1%}"),
        ]
        if self.nonfinite:
            rows.append(("diverged rollouts (NaN/inf cost)", str(self.nonfinite)))
        for name, value in rows:
            table.add_row(name, value)
        return table


def evaluate(
    problem: Problem,
    policy: Policy,
    params=None,
    optimum: np.ndarray | None = None,
    cache_dir: str | os.PathLike | None = None,
    refine: bool | None = None,
    **optimum_options,
) -> Report:
    """Score `policy` on `params` (default: test_params(problem), M = 100 from TEST_SEED).

    optimum: J* per instance (n,); None computes or reads it with optimum_costs(problem, params,
        cache_dir, **optimum_options).
    refine: solve again from the policy's rollout and lower J* with what that finds: always
        (True), never (False), or None (default) only when the rollout beats the cached J* on
        some instance (so that J* is never above a cost the policy itself achieved). Ignored
        when `optimum` is given.
    """
    if params is None:
        params = test_params(problem)
    _, us, cost, violation, error, clipped = _rollout_all(problem, policy, params)
    if optimum is None:
        optimum = optimum_costs(problem, params, cache_dir=cache_dir, **optimum_options)
        beaten = (cost < optimum - 1e-9 * np.abs(optimum)) & (violation <= 1e-6)
        if refine or (refine is None and beaten.any()):
            optimum = optimum_costs(
                problem, params, cache_dir=cache_dir, extra_inits=[us], **optimum_options
            )
    optimum = np.asarray(optimum, dtype=np.float64)
    if optimum.shape != cost.shape:
        raise ProblemError(
            f"optimum has shape {optimum.shape}, expected {cost.shape} (one J* per instance)."
        )
    has_task = problem.position is not None and problem.target is not None
    return Report(
        problem=problem.name,
        policy_cost=cost,
        optimum_cost=optimum,
        final_error=error if has_task else None,
        constraint_violation=violation,
        clipped_share=clipped,
    )


# ---------------------------------------------------------------------------------------------
# Warm-start study.


def warm_start_study(
    problem: Problem,
    policy: Policy,
    params=None,
    tol: float = 1e-6,
    max_iter: int = 200,
) -> dict[str, Any]:
    """TO iterations (and final cost) from the policy's rollout vs from zero controls (seed 002,
    Fig. 7), on `params` (default: the test set).

    The policy init is the rollout's controls: the solver rolls them out from x0 again, which
    gives the rollout's own states, and knows the guess is dynamically feasible (an (xs, us)
    pair is treated as possibly infeasible).
    Returns a JSON-ready dict: per instance (lists) iterations_policy / _zero, cost_policy /
    _zero, converged_policy / _zero, sim_calls_policy / _zero, rollout_cost; and summaries
    iterations_{policy,zero}_{median,max}, cost_{policy,zero}_mean, share_fewer_iterations,
    share_lower_cost, n, tol, max_iter.
    """
    if params is None:
        params = test_params(problem)
    (_, _, rollout_cost), from_policy, from_zero = warm_start_pair(
        problem, policy, params, tol=tol, max_iter=max_iter
    )
    return warm_start_numbers(rollout_cost, from_policy, from_zero, tol, max_iter)


def finite_prefix(problem: Problem, params, us, cost) -> np.ndarray:
    """A policy rollout's controls us (n, T, nu) and costs cost (n,) of the instances params
    (policy_rollout's second and third outputs) -> controls (n, T, nu) for a TO warm start:
    each instance keeps the longest prefix of its controls after which zero controls give a
    finite trajectory cost, and zeros from there on.

    Where the rollout's cost is finite that is all of it. Where it diverged (NaN controls, or a
    policy that drives e.g. the manipulator's explicit Euler integration to overflow with
    bounded torques), cutting at the first non-finite control or state is not enough: the state
    just before it is already so fast that zero torque from there overflows too. The solver
    rightly refuses a non-finite guess and stops on a non-finite cost, so this is the most of
    the policy's proposal that TO can start from. All zeros is the last resort."""
    us = np.asarray(us, dtype=np.float64)
    T = us.shape[1]
    cut = np.full(us.shape[0], T)
    diverged = np.nonzero(~np.isfinite(np.asarray(cost)))[0]
    if diverged.size:
        steps = jnp.arange(T)

        def cost_with_zeros_from(u, instance, zeros_from):
            u = jnp.where((steps < zeros_from)[:, None], u, 0.0)
            return problem.trajectory_cost(problem.rollout(u, instance), u, instance)

        instances = jax.tree.map(lambda a: jnp.asarray(a)[diverged], dict(params))
        every_cut = jax.jit(jax.vmap(jax.vmap(cost_with_zeros_from, (None, None, 0)),
                                     (0, 0, None)))(us[diverged], instances, steps)
        finite = np.isfinite(np.asarray(every_cut))  # (d, T): cut at t = 0 .. T-1
        cut[diverged] = np.where(finite.any(axis=1), T - 1 - np.argmax(finite[:, ::-1], axis=1),
                                 0)
    return np.where((np.arange(T)[None] < cut[:, None])[:, :, None], us, 0.0)


def warm_start_pair(
    problem: Problem, policy: Policy, params, tol: float = 1e-6, max_iter: int = 200
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Result, Result]:
    """The policy's rollout (xs, us, cost) of `params`, and the TO solutions warm-started by its
    controls and from the problem's default start, `init=None` (zero controls or its
    initial_controls; seed 002's Figs. 6 and 7)."""
    rollout = policy_rollout(problem, policy, params)
    from_policy = solve(problem, params, init=finite_prefix(problem, params, *rollout[1:]),
                        max_iter=max_iter, tol=tol)
    from_zero = solve(problem, params, init=None, max_iter=max_iter, tol=tol)
    return rollout, from_policy, from_zero


def warm_start_numbers(rollout_cost, from_policy: Result, from_zero: Result, tol: float,
                       max_iter: int) -> dict[str, Any]:
    """warm_start_study's dict from a warm_start_pair's rollout costs and solutions."""

    def floats(a: Sequence[Any]) -> list:
        return [_json_number(float(v)) for v in a]

    it_p, it_z = np.asarray(from_policy.iterations), np.asarray(from_zero.iterations)
    scale = np.maximum(np.abs(from_zero.cost), 1.0)
    return {
        "n": int(it_p.shape[0]),
        "tol": float(tol),
        "max_iter": int(max_iter),
        "iterations_policy": [int(v) for v in it_p],
        "iterations_zero": [int(v) for v in it_z],
        "cost_policy": floats(from_policy.cost),
        "cost_zero": floats(from_zero.cost),
        "converged_policy": [bool(v) for v in from_policy.converged],
        "converged_zero": [bool(v) for v in from_zero.converged],
        "sim_calls_policy": [int(v) for v in from_policy.sim_calls],
        "sim_calls_zero": [int(v) for v in from_zero.sim_calls],
        "rollout_cost": floats(rollout_cost),
        "iterations_policy_median": float(np.median(it_p)),
        "iterations_policy_max": int(np.max(it_p)),
        "iterations_zero_median": float(np.median(it_z)),
        "iterations_zero_max": int(np.max(it_z)),
        "cost_policy_mean": _json_number(float(np.mean(from_policy.cost))),
        "cost_zero_mean": _json_number(float(np.mean(from_zero.cost))),
        "share_fewer_iterations": float(np.mean(it_p < it_z)),
        "share_lower_cost": float(np.mean(from_policy.cost < from_zero.cost - 1e-9 * scale)),
    }


WARM_STARTS = ("policy", "random", "random_controls", "ics")
"""The warm starts of CACTO's table (seed 000: "random values" and "initial conditions (ICS)
for states, zero for other variables"), plus one more:
- policy: the policy's rollout (states and controls);
- random: random values for every decision variable: states drawn i.i.d. per knot from the
  problem's initial-state distribution (knot 0 is x0) and controls uniform in the box; the
  solver starts from this infeasible guess and closes its gaps (multiple shooting), as the
  original's simultaneous TO (IPOPT) does;
- random_controls: random controls, rolled out from x0 (a feasible single-shooting guess, and a
  stronger start than random states for a DDP solver);
- ics: every state x0, zero controls."""


def _random_states(problem: Problem, key, x0: np.ndarray) -> np.ndarray:
    """States (n, T+1, nx): knot 0 is x0 (n, nx), the others i.i.d. draws of the problem's
    initial state, `problem.sample(key, n * T)["x0"]`."""
    n, T = x0.shape[0], problem.horizon
    drawn = np.asarray(problem.sample(key, n * T)["x0"], dtype=np.float64)
    return np.concatenate([x0[:, None], drawn.reshape(n, T, problem.nx)], axis=1)


def warm_start_solutions(
    problem: Problem, policy: Policy, params, key: jax.Array, tol: float = 1e-6,
    max_iter: int = 200,
) -> dict[str, Result]:
    """TO of the instances `params` from each of WARM_STARTS: name -> Result.

    key draws the random states and controls (see _random_states, _random_controls); the two
    random warm starts share their controls; the policy's are `finite_prefix` of its
    rollout's."""
    problem.check_params(params)
    n, T = np.shape(params["x0"])[0], problem.horizon
    us = finite_prefix(problem, params, *policy_rollout(problem, policy, params)[1:])
    x0 = np.asarray(params["x0"], dtype=np.float64)
    key_controls, key_states = jax.random.split(key)
    random_us = _random_controls(problem, key_controls, n)
    inits = {
        "policy": us,
        "random": (_random_states(problem, key_states, x0), random_us),
        "random_controls": random_us,
        "ics": (np.repeat(x0[:, None], T + 1, axis=1), np.zeros((n, T, problem.nu))),
    }
    return {name: solve(problem, params, init=inits[name], max_iter=max_iter, tol=tol)
            for name in WARM_STARTS}


def warm_start_comparison(solutions: Mapping[str, Result], equal_rtol: float = 1e-5
                          ) -> dict[str, Any]:
    """CACTO's table (seed 000) from `warm_start_solutions`: the share of instances where TO
    warm-started by the policy ends strictly lower, and lower or equal, than from each other
    warm start present (random, random_controls, ics). Costs within
    equal_rtol * max(|c|, 1) count as equal.

    Returns a JSON-ready dict: per instance cost_<name> (lists), cost_<name>_{mean,std,median}
    (None when any instance's cost is not finite), cost_<name>_nonfinite (their count),
    share_{lower,lower_equal}_than_<name> for each other name, share_best (the policy's warm
    start reaches the lowest cost of all warm starts, within the same tolerance; a strict share
    is at most share_best minus the instances where that other start reaches it too), and n.
    """
    costs = {name: np.asarray(solutions[name].cost) for name in WARM_STARTS
             if name in solutions}
    out: dict[str, Any] = {"n": int(costs["policy"].shape[0])}
    for name, cost in costs.items():
        out[f"cost_{name}"] = [_json_number(float(c)) for c in cost]
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: reported as None
            out[f"cost_{name}_mean"] = _json_number(float(np.mean(cost)))
            out[f"cost_{name}_std"] = _json_number(float(np.std(cost)))
            out[f"cost_{name}_median"] = _json_number(float(np.median(cost)))
        out[f"cost_{name}_nonfinite"] = int(np.sum(~np.isfinite(cost)))
    mine = costs["policy"]
    for other in (name for name in costs if name != "policy"):
        theirs = costs[other]
        slack = equal_rtol * np.maximum(np.maximum(np.abs(mine), np.abs(theirs)), 1.0)
        out[f"share_lower_than_{other}"] = float(np.mean(mine < theirs - slack))
        out[f"share_lower_equal_than_{other}"] = float(np.mean(mine <= theirs + slack))
    best = np.min(np.stack(list(costs.values())), axis=0)
    slack = equal_rtol * np.maximum(np.maximum(np.abs(mine), np.abs(best)), 1.0)
    out["share_best"] = float(np.mean(mine <= best + slack))
    return out


def hard_region(problem: Problem) -> dict[str, np.ndarray] | None:
    """CACTO's hard-region instances of a built-in CACTO problem ({"x0": (m, nx)}), or None
    for a problem that has none."""
    from rlto.problems import car, integrators, manipulator3

    makers = {"single_integrator": integrators.hard_region,
              "double_integrator": integrators.hard_region, "car": car.hard_region,
              "manipulator3": manipulator3.hard_region}
    if problem.name not in makers:
        return None
    return {"x0": np.asarray(makers[problem.name](problem.config), dtype=np.float64)}
