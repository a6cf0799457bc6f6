"""PODS: policy optimization via differentiable simulation (Mora et al., ICML 2021), a baseline.

    for k = 1..M:
        sample N problems beta_i                                (fresh each iteration)
        X, A <- Rollout(pi_theta)                               a_t = clip(pi(x_t)), A: N x T x nu
        repeat `improvement_steps` times:                       action improvement, per instance
            g <- dJ/dA                                          J(A) = sum l(x_t, a_t) + lT(x_T),
                                                                x_t re-simulated from x_0 (autodiff)
            first order:   d <- -s g_s / ||g_s||, g_s = s g     s: the action range per control
                           alpha <- step_size, step_size/2, ...
            second order:  d <- argmin g'd + d'Cd/2             C = |H| + damping I, H ~ d2J/dA2
                                 s.t. A + d in the box          (Gauss-Newton or exact; box QP)
                           alpha <- 1, 1/2, ...
            A <- clip(A + alpha d) for the longest alpha that lowers J (else A is kept)
        X' <- the states of the improved A
        theta <- argmin_theta 1/2 ||A' - pi(X')||^2             Adam mini-batches (fit_policy)

The paper improves the actions of a policy rollout through the differentiable simulator, either
along the normalised gradient of the return (PODS first order) or by a Newton step on it (PODS
second order), and regresses the policy onto the improved actions. Here both use a backtracking
line search and keep the actions in the control box (projected before a candidate is
evaluated), so an improvement never raises an instance's cost.

The first order leaves out of the norm the entries held at a bound by the gradient (the clip
would undo their share of the step). The second order builds the Hessian of J(A) on the
flattened sequence (T nu entries, small for the built-in problems), replaces its eigenvalues by
their absolute values and adds the damping (saddle-free Newton: C is positive definite, so d is
a descent direction), and solves the Newton model within the box by projected Newton
(rlto.solver.boxqp, as BoxDDP does per step): without active bounds that is (H + damping I) d =
-g on a convex instance (lqr), exact in one step. Clipping the unconstrained Newton step instead
stalls where the box is active (measured on lqr: a 180% test gap after 20 iterations, against
0.15% with the box QP). The Hessian is by default the Gauss-Newton one, the paper's: with the
state sensitivities S_t = dx_t/dA, propagated by S_t+1 = f_x S_t + f_u E_t from the T step
Jacobians (E_t picks a_t out of A),

    g = sum_t S_t' l_x + E_t' l_u + S_T' lT_x
    H = sum_t [S_t; E_t]' [[l_xx, l_xu], [l_ux, l_uu]] [S_t; E_t] + S_T' lT_xx S_T,

which drops only the dynamics' curvature (exact where the dynamics are linear) and costs one
Jacobian per step along the rollout, fewer simulator calls than the gradient;
`hessian="exact"` differentiates the gradient once per action entry instead (jax.hessian),
T nu gradients' worth of calls.

The regression has no feedback gains to match: `sobolev` must be "none" (its default here).
The TO fields of LearningConfig (to_max_iter, to_tol, constrained, sobolev_weight) are not read.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlto import losses
from rlto.algorithms.common import (
    LearningConfig,
    fit_policy,
    init_optimizer,
    new_policy,
    supervised_rows,
)
from rlto.evaluate import policy_rollout
from rlto.nets import Policy, set_normalization, with_steps
from rlto.problem import Problem, ProblemError
from rlto.solver.boxqp import solve_box_qp

BOX_QP_ITERATIONS = 50
"""Second order: projected-Newton iterations of the box-constrained Newton step (no dynamics
calls: the quadratic model is solved, not the simulator)."""
BOX_QP_TOL = 1e-9
"""Second order: the box QP stops when its free gradient is below this (max norm)."""


@dataclasses.dataclass(frozen=True)
class PodsConfig(LearningConfig):
    """Hyperparameters of PODS (the shared ones: see LearningConfig)."""

    sobolev: str = "none"
    """PODS regresses actions only (no feedback gains to match): must be "none"."""
    order: str = "first"
    """Action improvement: "first" (normalised gradient step, PODS first order) or "second"
    (damped Newton step on the exact Hessian, solved within the box: PODS second order)."""
    improvement_steps: int = 1
    """Improvements (gradient, step and line search) of each rollout's actions per iteration."""
    step_size: float = 0.5
    """First order: the line search's first step, as a fraction of the action range: the whole
    sequence moves by step_size in range units (Euclidean norm over its T nu entries). Controls
    with an infinite bound count a range of 1. The second order starts at the full Newton step."""
    line_search_steps: int = 10
    """Step lengths the backtracking line search tries (the first, then halvings); all are
    evaluated as one batch, and the longest that lowers the cost is taken."""
    hessian: str = "gauss_newton"
    """Second order: "gauss_newton" (from the step Jacobians along the rollout, fewer
    simulator calls than the gradient; the dynamics' curvature left out) or "exact"
    (jax.hessian of J(A): T nu more gradients). Measured on lqr (README): the Gauss-Newton
    second order reaches a 1% test gap after 5.8e4 calls, the first order after 6.0e6."""
    damping: float = 1e-3
    """Second order: added to the Hessian's absolute eigenvalues (Levenberg-Marquardt), in the
    cost's units per squared action unit; small gives the Newton step, large a short gradient
    step of length |g| / damping."""

    def __post_init__(self):
        super().__post_init__()
        if self.sobolev != "none":
            raise ProblemError(
                f"pods: sobolev must be 'none', got {self.sobolev!r}: PODS regresses the improved "
                "actions and has no feedback gains to match. Use pddp or plal for Sobolev training."
            )
        self._check_choice("order", ("first", "second"))
        self._check_choice("hessian", ("gauss_newton", "exact"))
        for name in ("improvement_steps", "line_search_steps"):
            if int(getattr(self, name)) < 1:
                raise ProblemError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if not (np.isfinite(self.step_size) and self.step_size > 0):
            raise ProblemError(
                f"step_size must be a positive finite fraction of the action range, got "
                f"{self.step_size} (e.g. 0.5)."
            )
        if not (np.isfinite(self.damping) and self.damping > 0):
            raise ProblemError(
                f"damping must be positive and finite, got {self.damping}: it keeps the Newton "
                "system solvable where the Hessian is singular (e.g. 1e-3; 1e-9 for a pure Newton "
                "step on a strictly convex problem)."
            )


class PodsState(NamedTuple):
    """Everything a resumed run needs (a pytree; saved whole in checkpoints)."""

    policy: Policy
    opt_state: optax.OptState
    key: jax.Array
    iteration: jax.Array  # () int: outer iterations done
    sim_calls: jax.Array  # () int: dynamics calls (forward + derivative), see sim_calls_per_step
    to_iterations: jax.Array  # () int: action improvements summed over instances


class Improvement(NamedTuple):
    """Result of `improve` on n instances (NumPy arrays)."""

    actions: np.ndarray  # (n, T, nu) improved actions, within the bounds
    states: np.ndarray  # (n, T+1, nx) their states from x0
    cost_before: np.ndarray  # (n,) J of the given actions
    cost: np.ndarray  # (n,) J of the improved actions (<= cost_before where finite)


def init(problem: Problem, config: PodsConfig, key: jax.Array) -> PodsState:
    """A fresh policy and optimizer."""
    policy_key, key = jax.random.split(key)
    policy = new_policy(problem, config, policy_key)
    opt_state = init_optimizer(policy, config)
    zero = jnp.asarray(0, dtype=jnp.int64)
    return PodsState(policy, opt_state, key, zero, zero, zero)


def sim_calls_per_step(problem: Problem, config: PodsConfig) -> int:
    """Dynamics calls of one outer iteration (a function of the config alone).

    With N = n_problems, T = horizon, S = improvement_steps, L = line_search_steps:
    the policy rollout costs N T; each improvement a gradient, 2 N T (the forward pass, and one
    derivative (VJP) call per step on the way back), plus L N T for the line search's candidates
    (the accepted candidate's states are kept: no re-simulation). The second order's
    Gauss-Newton model takes N T instead of the gradient's 2 N T: one Jacobian per step along
    the states it is given; its exact Hessian adds T nu gradients' worth to the gradient's
    (jax.hessian pushes one tangent per action entry through the gradient): 2 N T * T nu.
    """
    n, T = config.n_problems, problem.horizon
    if config.order == "second" and config.hessian == "gauss_newton":
        model = n * T
    else:
        model = 2 * n * T
        if config.order == "second":
            model += 2 * n * T * T * problem.nu
    per_improvement = model + config.line_search_steps * n * T
    return n * T + config.improvement_steps * per_improvement


def action_cost(problem: Problem, actions: jax.Array, params) -> jax.Array:
    """J(A) of one instance: actions (T, nu), params of one instance -> scalar, the states
    re-simulated from params["x0"] (differentiable)."""
    return problem.trajectory_cost(problem.rollout(actions, params), actions, params)


def cost_gradient(problem: Problem, actions, params) -> np.ndarray:
    """dJ/dA of n instances: actions (n, T, nu), params (n, ...) -> (n, T, nu)."""
    grad = jax.vmap(jax.grad(functools.partial(action_cost, problem)))
    return np.asarray(grad(jnp.asarray(actions, jnp.float64), params))


def gauss_newton_model(problem: Problem, actions, states, params):
    """Gradient and Gauss-Newton Hessian of J(A) for one instance from the step Jacobians:
    actions (T, nu), states (T+1, nx) (their rollout from x0), params of one instance ->
    g (T nu,), H (T nu, T nu) on the flattened sequence (see the module docstring)."""
    T, nu = actions.shape
    nx = states.shape[-1]
    steps = jnp.arange(T)
    _, fx, fu = jax.vmap(problem.linearized_dynamics, in_axes=(0, 0, 0, None))(
        states[:-1], actions, steps, params)

    def running(x, u, t):
        return problem.running_cost(x, u, t, params)

    lx, lu = jax.vmap(jax.grad(running, argnums=(0, 1)))(states[:-1], actions, steps)
    (lxx, lxu), (_, luu) = jax.vmap(jax.hessian(running, argnums=(0, 1)))(
        states[:-1], actions, steps)

    def terminal(x):
        return problem.terminal_cost(x, params)

    lx_T, lxx_T = jax.grad(terminal)(states[-1]), jax.hessian(terminal)(states[-1])

    def propagate(sensitivity, step):
        t, fx_t, fu_t = step
        # S_t has zero columns for a_t and later (causality): f_u E_t fills a_t's block.
        after = jax.lax.dynamic_update_slice(fx_t @ sensitivity, fu_t, (0, t * nu))
        return after, sensitivity

    sens_T, sens = jax.lax.scan(propagate, jnp.zeros((nx, T * nu), actions.dtype),
                                (steps, fx, fu))  # S_T (nx, T nu); S_0..S_T-1 (T, nx, T nu)
    # E_t' v places v in a_t's block, so the l_u and l_uu terms are the stacked l_u and the
    # block diagonal of the l_uu, and l_xu's term fills a_t's columns.
    grad = jnp.einsum("tia,ti->a", sens, lx) + lu.reshape(-1) + sens_T.T @ lx_T
    cross = jnp.einsum("tia,tik->atk", sens, lxu).reshape(T * nu, T * nu)
    control = (jnp.eye(T, dtype=luu.dtype)[:, None, :, None] * luu[:, :, None, :]).reshape(
        T * nu, T * nu)
    hessian = (jnp.einsum("tia,tij,tjb->ab", sens, lxx, sens) + cross + cross.T + control
               + sens_T.T @ lxx_T @ sens_T)
    return grad, hessian


def _action_scale(problem: Problem) -> np.ndarray:
    """(nu,) the range u_upper - u_lower of each control, 1 where a bound is infinite."""
    span = np.asarray(problem.u_upper) - np.asarray(problem.u_lower)
    return np.where(np.isfinite(span), span, 1.0)


def _improve_one(problem: Problem, config: PodsConfig, actions, states, params):
    """One improvement of one instance: (T, nu), (T+1, nx) -> the same, the cost before, after."""
    T, nu = actions.shape
    cost_fn = functools.partial(action_cost, problem)
    gauss_newton = config.order == "second" and config.hessian == "gauss_newton"
    if gauss_newton:
        # The model needs only the given states (the rollout of `actions`) and T Jacobians.
        cost = problem.trajectory_cost(states, actions, params)
        grad, hessian = gauss_newton_model(problem, actions, states, params)
        grad = grad.reshape(T, nu)
    else:
        cost, grad = jax.value_and_grad(cost_fn)(actions, params)
    if config.order == "first":
        scale = jnp.asarray(_action_scale(problem))
        # Entries at a bound that the gradient pushes outwards would be clipped back: leave them
        # out of the norm, so that the step length goes to the entries that can move.
        held = (((actions <= problem.u_lower) & (grad > 0))
                | ((actions >= problem.u_upper) & (grad < 0)))
        scaled = jnp.where(held, 0.0, grad * scale)
        norm = jnp.linalg.norm(scaled)
        safe = jnp.where(norm > 0, norm, 1.0)
        direction = jnp.where(norm > 0, -scale * scaled / safe, 0.0)
        lengths = config.step_size * 0.5 ** jnp.arange(config.line_search_steps)
    else:
        if not gauss_newton:
            hessian = jax.hessian(lambda a: cost_fn(a.reshape(T, nu), params))(
                actions.reshape(-1))
        values, vectors = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
        curvature = (vectors * (jnp.abs(values) + config.damping)) @ vectors.T
        # The Newton step within the box: min g'd + d'Cd/2 subject to a + d in the bounds, by
        # projected Newton (the clipped unconstrained step is poor where bounds are active).
        room_low = jnp.broadcast_to(jnp.asarray(problem.u_lower) - actions, (T, nu)).reshape(-1)
        room_high = jnp.broadcast_to(jnp.asarray(problem.u_upper) - actions, (T, nu)).reshape(-1)
        step, *_ = solve_box_qp(curvature, grad.reshape(-1), room_low, room_high,
                                jnp.zeros(T * nu, actions.dtype), max_iter=BOX_QP_ITERATIONS,
                                tol=BOX_QP_TOL)
        direction = step.reshape(T, nu)
        lengths = 0.5 ** jnp.arange(config.line_search_steps)
    candidates = jnp.clip(actions + lengths[:, None, None] * direction,
                          problem.u_lower, problem.u_upper)
    cand_states = jax.vmap(problem.rollout, in_axes=(0, None))(candidates, params)
    cand_costs = jax.vmap(problem.trajectory_cost, in_axes=(0, 0, None))(
        cand_states, candidates, params)
    lower = cand_costs < cost  # False where either is NaN: such an instance keeps its actions
    take = jnp.any(lower)
    k = jnp.argmax(lower)  # the longest step that lowers the cost
    return (jnp.where(take, candidates[k], actions), jnp.where(take, cand_states[k], states),
            cost, jnp.where(take, cand_costs[k], cost))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _improve_batch(problem: Problem, config: PodsConfig, actions, states, params):
    one = functools.partial(_improve_one, problem, config)
    cost_before = None
    for _ in range(config.improvement_steps):
        actions, states, before, cost = jax.vmap(one)(actions, states, params)
        cost_before = before if cost_before is None else cost_before
    return actions, states, cost_before, cost


def improve(problem: Problem, config: PodsConfig, actions, states, params) -> Improvement:
    """`config.improvement_steps` improvements of n instances' actions (n, T, nu), whose states
    (n, T+1, nx) from params["x0"] are given (kept where no step lowers the cost). Actions are
    clipped to the bounds first; the states must be those of the clipped actions (the
    Gauss-Newton model linearises along them instead of re-simulating). Costs
    `sim_calls_per_step` less the policy rollout."""
    actions = jnp.clip(jnp.asarray(actions, jnp.float64), problem.u_lower, problem.u_upper)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    out = _improve_batch(problem, config, actions, jnp.asarray(states, jnp.float64), params)
    return Improvement(*(np.asarray(a) for a in out))


def supervised_loss(policy: Policy, batch: dict, key: jax.Array, config: PodsConfig):
    """The weighted regression 1/2 ||a' - pi(x')||^2 on one mini-batch: scalar, parts."""
    regression = losses.regression_loss(policy, batch["x"], batch["u"], batch["params"],
                                        batch["w"])
    return regression, (regression,)


def _usable(result: Improvement) -> np.ndarray:
    """(n,) bool: instances whose improved trajectory and cost are all finite."""
    return (np.isfinite(result.cost) & np.isfinite(result.actions).all(axis=(1, 2))
            & np.isfinite(result.states).all(axis=(1, 2)))


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def step(problem: Problem, config: PodsConfig, state: PodsState) -> tuple[PodsState, dict]:
    """One outer iteration (see the module docstring); returns the new state and its numbers."""
    key, sample_key, fit_key = jax.random.split(state.key, 3)
    params = problem.sample(sample_key, config.n_problems)
    xs, us, _ = policy_rollout(problem, state.policy, params)
    result = improve(problem, config, us, xs, params)
    usable = _usable(result)
    policy = state.policy
    if int(state.iteration) == 0 and usable.any():
        # Normalise the inputs over the states the policy will be trained on, once, before any
        # weight update (as PDDP does).
        ok_params = {k: np.asarray(v)[usable] for k, v in params.items()}
        policy = set_normalization(policy, result.states[usable, : problem.horizon],
                                   with_steps(ok_params, int(usable.sum()), problem.horizon))
    rows = supervised_rows(problem, policy, result.states, result.actions, params, usable)
    policy, opt_state, (regression,) = fit_policy(
        policy, state.opt_state, rows, fit_key, supervised_loss, config
    )
    new_state = PodsState(
        policy=policy,
        opt_state=opt_state,
        key=key,
        iteration=state.iteration + 1,
        sim_calls=state.sim_calls + sim_calls_per_step(problem, config),
        to_iterations=state.to_iterations + config.improvement_steps * config.n_problems,
    )
    info = {
        "cost_before": _finite_mean(result.cost_before),
        "cost_after": _finite_mean(result.cost),
        "accepted": float(np.mean(result.cost < result.cost_before)),
        "regression_loss": float(regression),
    }
    return new_state, info
