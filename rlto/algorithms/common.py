"""Pieces shared by the algorithms: the supervised step (Adam mini-batches over TO samples),
the Sobolev gain-matching term, and the `-C` ablation's problem without control bounds."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import rlto
from rlto import losses
from rlto.evaluate import closed_loop_cost, neighbour_restarts
from rlto.nets import ACTIVATIONS, Policy, broadcast_params, make_policy, trainable, with_steps
from rlto.problem import Problem, ProblemError
from rlto.solver import Result, Status

SOBOLEV_MODES = ("none", "full", "stochastic")

HOLD_CONTROL_WEIGHT = 1e-6
"""Running cost w ||u||^2 of the steps before an episode's start time t0 (`delayed_start`): the
state does not move there, so the weight only keeps the solver's Quu positive definite."""


@dataclasses.dataclass(frozen=True)
class LearningConfig:
    """Hyperparameters every TO-supervised algorithm shares (its own config extends this)."""

    n_problems: int = 64
    """N: problems sampled and solved per iteration (PLAL: the fixed sampled set)."""
    epochs: int = 10
    """Passes over each iteration's TO data in the supervised step."""
    batch_size: int = 256
    """Mini-batch size (state-control pairs) of Adam."""
    learning_rate: float = 1e-3
    """Adam step size (at the start, see learning_rate_half_life)."""
    learning_rate_half_life: float = float("inf")
    """Adam steps over which the step size halves, counted over the whole run; inf keeps it
    constant (the paper). A decaying step quiets the iteration-to-iteration jitter of the fit
    that, on unstable targets, decides whether a rollout is caught upright or falls."""
    min_learning_rate: float = 1e-5
    """Floor of the decaying step size."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy MLP (seed 002: two layers of 256)."""
    activation: str = "relu"
    """Hidden activation, a key of rlto.nets.ACTIVATIONS ("relu": seed 002). A ReLU layer can go
    dead on a whole region of states, and there no gradient reaches its weights again (see
    rlto.nets.ACTIVATIONS for the case measured on double_pendulum)."""
    time_input: bool = True
    """Give the policy the time step: pi(x, beta, t). The optimum of a finite-horizon problem
    depends on the time to go (on `pendulum` it times its arrival upright to the horizon), which
    a stationary policy cannot match; False trains seed 002's stationary pi(x, beta)."""
    task_input: bool = False
    """Also give the policy the task-space offset p(x) - p*(beta) (Problem.position minus
    Problem.target; ur5: the flange's vector to its target), which it would otherwise have to
    learn as forward kinematics. Needs a problem with both."""
    policy_dtype: str = "float32"
    """Floating type of the policy's weights: "float32" (about 4x faster learning steps on a CPU
    than float64, and precise enough for gaps of 1e-3) or "float64"."""
    sobolev: str = "stochastic"
    """Gain matching: "none", "full" (eq. 8) or "stochastic" (one random direction per sample)."""
    sobolev_weight: float = 1e-3
    """Weight of the Sobolev term relative to the control-matching term."""
    sobolev_gain_cap: float = float("inf")
    """Samples whose TO gain ||K||_F exceeds this cap enter the Sobolev term with weight
    (cap / ||K||_F)^2: their gain error then counts relative to their gain, as if the gain had
    norm cap. inf: the paper's term. A stiff terminal cost gives gains orders of magnitude above
    the rest in the last few steps (ur5: ||K|| up to 8000 against about 150 mid-horizon, 96% of
    sum ||K||^2 in the last 10 of 100 steps), which otherwise swamp the fit of everything else."""
    constrained: bool = True
    """Control bounds in the TO step; False is the paper's `-C` ablation (bounds only in tanh)."""
    to_max_iter: int = 100
    """DDP iterations per solve."""
    to_tol: float = 1e-6
    """DDP convergence threshold (expected decrease)."""
    neighbour_restarts: int = 0
    """After the TO step's own starts, solve each instance again from the closed-loop rollouts,
    from its own x0, of the local controllers u_j + K_j (x - x_j) of its this many nearest
    instances' solutions (`rlto.evaluate.neighbour_restarts`, one pass), keeping the lower cost:
    a swing-up that one instance found travels to its neighbours. 0: off (the paper)."""

    def __post_init__(self):
        self._check_choice("sobolev", SOBOLEV_MODES)
        if not self.sobolev_gain_cap > 0:
            raise ProblemError(
                "sobolev_gain_cap must be positive (inf for no cap); got "
                f"{self.sobolev_gain_cap!r}."
            )
        self._check_choice("policy_dtype", ("float32", "float64"))
        self._check_choice("activation", tuple(ACTIVATIONS))
        widths = self.hidden if isinstance(self.hidden, tuple | list) else None
        if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ProblemError(
                f"hidden must be a tuple of positive layer widths, e.g. (256, 256); got "
                f"{self.hidden!r}."
            )
        object.__setattr__(self, "hidden", tuple(widths))  # hashable: the config is jit-static
        if not (self.learning_rate_half_life > 0 and self.learning_rate > 0):
            raise ProblemError("learning_rate and learning_rate_half_life must be positive, got "
                               f"{self.learning_rate} and {self.learning_rate_half_life}.")
        for name in ("n_problems", "epochs", "batch_size", "to_max_iter"):
            if int(getattr(self, name)) < 1:
                raise ProblemError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if int(self.neighbour_restarts) < 0:
            raise ProblemError("neighbour_restarts must be a non-negative integer, got "
                               f"{self.neighbour_restarts}.")

    def _check_choice(self, name: str, allowed: tuple[str, ...]) -> None:
        if getattr(self, name) not in allowed:
            raise ProblemError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")


@eqx.filter_jit
def fit_policy(policy: Policy, opt_state, data: dict, key: jax.Array, loss_fn: Callable, config):
    """`config.epochs` of shuffled Adam mini-batches of `config.batch_size` over data.

    data: dict of arrays with leading dimension m (nested dicts allowed).
    loss_fn(policy, batch, key, config) -> (scalar, tuple of scalar parts); a module-level
    function, so that it is static and hashable (no recompilation between iterations).
    Returns the policy, optimizer state and the last epoch's mean parts (array).
    """
    optimizer = policy_optimizer(config)
    weights, frozen = eqx.partition(policy, trainable(policy))
    m = jax.tree.leaves(data)[0].shape[0]
    size = min(config.batch_size, m)
    batches = max(1, m // size)

    def minibatch(carry, inputs):
        weights, opt_state = carry
        index, step_key = inputs
        batch = jax.tree.map(lambda a: a[index], data)

        def loss(w):
            return loss_fn(eqx.combine(w, frozen), batch, step_key, config)

        (_, parts), grads = jax.value_and_grad(loss, has_aux=True)(weights)
        updates, opt_state = optimizer.update(grads, opt_state, weights)
        return (optax.apply_updates(weights, updates), opt_state), jnp.stack(parts)

    def epoch(carry, epoch_key):
        order_key, step_key = jax.random.split(epoch_key)
        order = jax.random.permutation(order_key, m)[: batches * size].reshape(batches, size)
        carry, parts = jax.lax.scan(minibatch, carry, (order, jax.random.split(step_key, batches)))
        return carry, parts.mean(axis=0)

    (weights, opt_state), parts = jax.lax.scan(
        epoch, (weights, opt_state), jax.random.split(key, config.epochs)
    )
    return eqx.combine(weights, frozen), opt_state, parts[-1]


def closed_loop_optimizer(learning_rate: float,
                          half_life: float = math.inf) -> optax.GradientTransformation:
    """Adam for the first-order steps on the closed-loop cost (`closed_loop_step`); its own
    state, apart from the regression's: the two objectives' gradients differ in scale. The step
    size halves every `half_life` steps (inf: constant); the count is in the state."""
    return halving_adam(learning_rate, half_life)


@functools.lru_cache(maxsize=64)
def compiled_sampler(problem: Problem):
    """problem.sample(key, n) compiled (n static; Problems hash by identity), its arrays
    float64: drawn eagerly, one op at a time, 128 ur5 instances took 12 ms, a tenth of a
    float32 closed-loop step."""

    def sample(key, n):
        return {k: jnp.asarray(v, jnp.float64) for k, v in problem.sample(key, n).items()}

    return jax.jit(sample, static_argnums=1)


def closed_loop_gradient(problem: Problem, policy: Policy, params: dict,
                         dtype: str = "float64"):
    """The gradient of the mean closed-loop cost 1/B sum_i J(pi; beta_i) over the instances
    params (B, ...) with respect to the policy's trainable weights, by reverse mode through the
    differentiable simulator: the rollout (B T simulator calls) and one dynamics VJP per step on
    the way back (B T more).

    Instances whose rollout is not finite (an unstable policy on a chaotic system) are left out
    of the mean, so that one diverged rollout cannot poison the step. The backward pass through
    an overflowed rollout puts NaN into every weight's gradient even multiplied by a zero
    weight, so then the gradient is taken again on a batch where those instances are swapped
    for a finite one, weighted 0 (2 B T calls more). Should the gradient itself overflow, it
    is zero and every instance is reported not finite (the step is skipped).
    dtype: the simulation's precision ("float64" or "float32", see `closed_loop_cost`).
    Returns (gradient: a pytree like the weights; costs (B,); finite (B,) bool; simulator
    calls, 2 B T or 4 B T)."""
    weights, frozen = eqx.partition(policy, trainable(policy))

    def costs_of(w, instances):
        return jax.vmap(lambda one: closed_loop_cost(problem, eqx.combine(w, frozen), one,
                                                     jnp.dtype(dtype)))(instances)

    costs, pullback = jax.vjp(lambda w: costs_of(w, params), weights)
    finite = jnp.isfinite(costs)
    share = (finite / jnp.maximum(jnp.sum(finite), 1)).astype(costs.dtype)
    all_finite = jnp.all(finite)

    def without_diverged(share):
        index = jnp.where(finite, jnp.arange(finite.shape[0]), jnp.argmax(finite))
        safe = jax.tree.map(lambda a: a[index], params)
        return jax.grad(lambda w: jnp.sum(share * costs_of(w, safe)))(weights)

    grad = jax.lax.cond(all_finite, lambda share: pullback(share)[0], without_diverged, share)
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)]))
    grad = jax.tree.map(lambda g: jnp.where(ok, g, 0.0), grad)
    calls = jnp.where(all_finite, 2, 4) * finite.shape[0] * problem.horizon
    return grad, costs, finite & ok, calls


@eqx.filter_jit
def closed_loop_step(problem: Problem, policy: Policy, opt_state, params: dict,
                     learning_rate: float, half_life: float = math.inf, dtype: str = "float64"):
    """One Adam step along `closed_loop_gradient` on the instances params (B, ...), of
    `closed_loop_optimizer(learning_rate, half_life)`, simulating in dtype; with no finite
    instance the policy and optimizer state are returned unchanged.
    Returns (policy, opt_state, mean cost of the finite instances, their share, simulator
    calls)."""
    grad, costs, finite, calls = closed_loop_gradient(problem, policy, params, dtype)
    weights, frozen = eqx.partition(policy, trainable(policy))
    optimizer = closed_loop_optimizer(learning_rate, half_life)
    updates, new_opt_state = optimizer.update(grad, opt_state, weights)
    any_finite = jnp.any(finite)
    weights = jax.tree.map(lambda w, u: jnp.where(any_finite, w + u, w), weights, updates)
    opt_state = jax.tree.map(lambda new, old: jnp.where(any_finite, new, old), new_opt_state,
                             opt_state)
    mean_cost = jnp.sum(jnp.where(finite, costs, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
    return eqx.combine(weights, frozen), opt_state, mean_cost, jnp.mean(finite), calls


def with_penalty_params(problem: Problem, params: dict, **penalty) -> dict:
    """params (the problem's beta, N instances) plus an algorithm's penalty parameters for the OC
    step's ExtraCost (multipliers, targets, ...). A penalty name that is also a parameter of the
    problem would silently replace it (DPL's consensus target once overwrote ur5's reach
    target): ProblemError instead."""
    clash = sorted(set(penalty) & set(params))
    if clash:
        raise ProblemError(
            f"{problem.name}: parameter(s) {clash} share names with the algorithm's penalty "
            f"parameters {sorted(penalty)}; rename them in the problem's sampler.")
    return {**params, **penalty}


def new_policy(problem: Problem, config: LearningConfig, key: jax.Array) -> Policy:
    """The paper's policy class for `problem` with the config's width, activation, time input
    and dtype."""
    return make_policy(problem, key, hidden=config.hidden, time_input=config.time_input,
                       task_input=config.task_input, activation=config.activation,
                       dtype=config.policy_dtype)


def policy_optimizer(config) -> optax.GradientTransformation:
    """Adam with config.learning_rate, halving every config.learning_rate_half_life steps (the
    count lives in the optimizer state, so it runs on across iterations and resumes)."""
    return halving_adam(config.learning_rate, config.learning_rate_half_life,
                        floor=min(config.min_learning_rate, config.learning_rate))


def halving_adam(learning_rate: float, half_life: float,
                 floor: float | None = None) -> optax.GradientTransformation:
    """Adam whose step size starts at learning_rate and halves every half_life steps, never
    below floor (None: no floor); inf half_life: plain Adam at learning_rate."""
    if not math.isfinite(half_life):
        return optax.adam(learning_rate)
    return optax.adam(optax.exponential_decay(learning_rate, half_life, 0.5, end_value=floor))


def init_optimizer(policy: Policy, config):
    """Adam state for the policy's weights (normalisation excluded)."""
    return policy_optimizer(config).init(eqx.filter(policy, trainable(policy)))


def gain_matching_loss(policy: Policy, batch: dict, key: jax.Array, config) -> jax.Array:
    """The Sobolev term selected by config.sobolev on one mini-batch (zero for "none"):
    "full" matches d pi/dx to the TO gains K (eq. 8), "stochastic" matches them along one
    random control direction per sample (one VJP). batch["w"] (m,), where present, weights the
    samples."""
    weights = batch.get("w")
    if config.sobolev != "none" and math.isfinite(config.sobolev_gain_cap):
        squared_norm = jnp.sum(jnp.asarray(batch["K"]) ** 2, axis=(-2, -1))
        relative = jnp.minimum(1.0, config.sobolev_gain_cap**2 / jnp.maximum(squared_norm, 1e-300))
        weights = relative if weights is None else weights * relative
    if config.sobolev == "full":
        return losses.sobolev_loss(policy, batch["x"], batch["K"], batch["params"], weights)
    if config.sobolev == "stochastic":
        return losses.stochastic_sobolev_loss(
            policy, batch["x"], batch["K"], batch["params"], key, weights
        )
    return jnp.zeros(())


@functools.lru_cache(maxsize=32)
def without_bounds(problem: Problem) -> Problem:
    """The `-C` ablation's problem: the same OCP with the control bounds dropped from TO (the
    bounds then live only in the policy's tanh). Cached: one object, one compiled solver."""
    return dataclasses.replace(problem, u_lower=-jnp.inf, u_upper=jnp.inf)


def to_problem(problem: Problem, constrained: bool) -> Problem:
    """The problem the TO step solves: with its bounds, or without them (`-C`)."""
    return problem if constrained else without_bounds(problem)


def lower_cost(results: list, margin: float = 0.0) -> Result:
    """Per instance, the solve with the lowest finite cost among `results` (same instances):
    a Result whose arrays are picked instance by instance (status, sim calls, all of it).

    A later result replaces an earlier one only where its cost is lower by more than
    margin * |cost|: with results[0] from the policy's warm start, near-ties (e.g. the mirrored
    swing-ups of a pendulum hanging at rest) keep the policy's choice, so that the regression
    targets do not switch between modes whose average is no solution at all."""
    best = results[0]
    for other in results[1:]:
        cost, other_cost = np.asarray(best.cost), np.asarray(other.cost)
        # ~(a >= b) is also true where the current best is NaN.
        take = np.isfinite(other_cost) & ~(other_cost >= cost - margin * np.abs(cost))

        def pick(a, b, take=take):
            if not isinstance(a, np.ndarray | jax.Array) or np.ndim(a) == 0:
                return a
            mask = take.reshape((-1,) + (1,) * (np.ndim(a) - 1))
            return np.where(mask, np.asarray(b), np.asarray(a))

        best = dataclasses.replace(best, **{
            f.name: pick(getattr(best, f.name), getattr(other, f.name))
            for f in dataclasses.fields(best)
        })
    return best


def usable_solves(result: Result) -> np.ndarray:
    """(n,) bool: the solves worth learning from: everything finite, and stopped by convergence
    or the iteration limit. A solve that hit the regularisation limit from a diverged warm start
    can report a finite cost of 1e90, which would swamp a regression loss."""
    finite = np.isfinite(result.cost) & np.isfinite(result.us).all(axis=(1, 2))
    finite &= np.isfinite(result.xs).all(axis=(1, 2)) & np.isfinite(result.K).all(axis=(1, 2, 3))
    stopped_well = np.isin(result.status, [int(Status.CONVERGED), int(Status.MAX_ITERATIONS)])
    return finite & stopped_well


def supervised_rows(problem: Problem, policy: Policy, xs, us, params, usable, K=None,
                    control_weights=None, first_step=None) -> dict:
    """State-control pairs of n trajectories (xs (n, T+1, nx), us (n, T, nu)) as N x T rows of a
    supervised step: dict of (N T, ...) arrays x, u, params (with each row's step t), w, K when
    gains K (n, T, nu, nx) are given, and control_weights when those (n, T, nu) are given (see
    `control_authority`). Weight w = 1 for the usable instances' rows and 0 (with zeroed entries)
    for the others, and for the steps before an instance's first_step (n,) when given (solves
    of `delayed_start`): a fixed row count keeps the supervised step's compiled program from one
    iteration to the next."""
    n, T = us.shape[:2]
    keep = np.broadcast_to(np.asarray(usable)[:, None], (n, T))
    if first_step is not None:
        keep = keep & (np.arange(T)[None] >= np.asarray(first_step)[:, None])
    keep = keep[..., None]
    beta = broadcast_params(policy, with_steps(params, n, T), (n, T))
    rows = {
        "x": jnp.asarray(np.where(keep, xs[:, :T], 0.0).reshape(n * T, problem.nx)),
        "u": jnp.asarray(np.where(keep, us, 0.0).reshape(n * T, problem.nu)),
        "params": {k: jnp.asarray(v).reshape((n * T,) + v.shape[2:]) for k, v in beta.items()},
        "w": jnp.asarray(keep[..., 0].astype(np.float64).reshape(n * T)),
    }
    if K is not None:
        rows["K"] = jnp.asarray(np.where(keep[..., None], K, 0.0).reshape(
            n * T, problem.nu, problem.nx))
    if control_weights is not None:
        rows["control_weights"] = jnp.asarray(
            np.where(keep, control_weights, 0.0).reshape(n * T, problem.nu))
    return rows


def control_authority(problem: Problem, xs, us, params, usable) -> np.ndarray:
    """How far each control moves the state in one step along n trajectories: the squared norm
    of each column of the dynamics' control Jacobian, ||d f / d u_j (x_t, u_t)||^2, as weights
    of a regression that fits every control as finely as the state change its error makes.

    xs (n, T+1, nx), us (n, T, nu), usable (n,) bool -> (n, T, nu), zero for the instances not
    usable, scaled by one number to mean 1 over the usable ones (the loss keeps eq. 7's
    magnitude). Why: controls of very different authority share one squared error in eq. 7. On
    ur5 the weight of the wrist's last joint is 10^3-10^4 times the shoulder's and elbow's, so
    torque errors it cannot afford (0.01 N m: about 1 rad/s^2) are invisible beside theirs, and
    the policy arrives with the wrist still turning. (The full metric ||f_u (u - pi)||^2, which also
    weighs the coupling between joints, measured worse on ur5: 2133% gap against 726% for
    these weights after the same offline fit, 2656% unweighted.)"""
    usable = np.asarray(usable, dtype=bool)
    safe_xs = np.where(usable[:, None, None], np.asarray(xs), 0.0)
    safe_us = np.where(usable[:, None, None], np.asarray(us), 0.0)
    fu = np.asarray(_compiled_control_effects(problem)(jnp.asarray(safe_xs),
                                                        jnp.asarray(safe_us), params))
    authority = np.sum(fu**2, axis=-2)
    authority = np.where(usable[:, None, None] & np.isfinite(authority), authority, 0.0)
    scale = np.mean(authority[usable]) if usable.any() else 0.0
    return authority / scale if scale > 0 else authority


@functools.lru_cache(maxsize=32)
def _compiled_control_effects(problem: Problem):
    """control_authority's Jacobians f_u (n, T, nx, nu), compiled once per problem."""
    steps = jnp.arange(problem.horizon)

    def one(xs, us, params):
        def jac(x, u, t, params):
            return problem.linearized_dynamics(x, u, t, params)[2]

        return jax.vmap(jac, in_axes=(0, 0, 0, None))(xs[:-1], us, steps, params)

    return jax.jit(jax.vmap(one))


def finite_warm_start(xs: np.ndarray, us: np.ndarray) -> np.ndarray:
    """A policy rollout's controls (n, T, nu) as a TO warm start, with zero controls for the
    instances whose rollout diverged (any non-finite state xs (n, T+1, nx) or control): an
    untrained policy can drive e.g. the double pendulum's integration to overflow, and the
    solver rightly refuses a non-finite guess."""
    xs, us = np.asarray(xs), np.asarray(us)
    diverged = ~(np.isfinite(xs).all(axis=(1, 2)) & np.isfinite(us).all(axis=(1, 2)))
    return np.where(diverged[:, None, None], 0.0, us)


GAP_TOL = 1e-6
"""Largest dynamics defect of a solve that counts as a trajectory (`closed_gaps_only`)."""


def closed_gaps_only(result: Result) -> Result:
    """result with cost inf where its dynamics defects exceed GAP_TOL."""
    open_gaps = ~(np.asarray(result.gap) <= GAP_TOL)
    if not open_gaps.any():
        return result
    return dataclasses.replace(result, cost=np.where(open_gaps, np.inf, np.asarray(result.cost)))


def solve_from_each(problem: Problem, params, inits: list, config: LearningConfig,
                    margin: float = 0.0) -> tuple[Result, int, int]:
    """The TO step from several warm starts (controls (n, T, nu), None for the default start,
    or a pair (xs, us) such as the goal guess), keeping each instance's lower cost
    (`lower_cost`, in the order given). A solve from an infeasible pair that stopped with its
    gaps still open (`GAP_TOL`) counts as infinitely costly: its cost is not that of a
    trajectory, and its controls do not reach its states.

    Then `config.neighbour_restarts` more solves, from the neighbours' local controllers.
    Returns (result, simulator calls, TO iterations), the counts summed over every solve (and
    the restarts' rollouts)."""
    solved = to_problem(problem, config.constrained)

    def solve(init):
        return rlto.solve(solved, params, init=init, max_iter=config.to_max_iter,
                          tol=config.to_tol)

    results = [closed_gaps_only(solve(init)) for init in inits]
    calls = sum(int(r.sim_calls.sum()) for r in results)
    iterations = sum(int(r.iterations.sum()) for r in results)
    best = lower_cost(results, margin)
    local = {"xs": best.xs, "us": best.us, "K": best.K}
    for init in neighbour_restarts(solved, params, local, config.neighbour_restarts):
        restart = solve(init)
        calls += int(restart.sim_calls.sum()) + init.shape[0] * problem.horizon
        iterations += int(restart.iterations.sum())
        best = lower_cost([best, restart], margin)
        local.update(xs=best.xs, us=best.us, K=best.K)  # the next restart carries this one
    return best, calls, iterations


@functools.lru_cache(maxsize=32)
def delayed_start(problem: Problem) -> Problem:
    """The problem whose episode starts at params["t0"]: before t0 the state is held
    (x_{t+1} = x_t) and only HOLD_CONTROL_WEIGHT ||u||^2 is paid; from t0 on it is `problem`.
    Its optimum from t0 is the original's optimum over the remaining T - t0 steps. Cached: one
    object, one compiled solver."""

    def dynamics(x, u, t, params):
        return jnp.where(t >= params["t0"], problem.dynamics(x, u, t, params), x)

    def running_cost(x, u, t, params):
        hold = HOLD_CONTROL_WEIGHT * jnp.sum(u**2)
        return jnp.where(t >= params["t0"], problem.running_cost(x, u, t, params), hold)

    def sample(key, n):
        return {**problem.sample(key, n), "t0": jnp.zeros(n)}

    # dynamics_jacobians=None: the solver differentiates the wrapped dynamics by autodiff.
    return dataclasses.replace(problem, dynamics=dynamics, running_cost=running_cost,
                               sample=sample, dynamics_jacobians=None)
