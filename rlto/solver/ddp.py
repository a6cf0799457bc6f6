"""Batched box-FDDP: feasibility-driven DDP with control bounds, many OCP instances at once.

One instance follows crocoddyl's SolverBoxFDDP (Mastalli et al. 2020, 2022), step for step
with `SolverOptions.crocoddyl()`; the defaults differ in two measured ways (see SolverOptions):

    repeat
        linearize dynamics, quadratize costs along (xs, us); gaps f_t = f(x_{t-1}, u_{t-1}) - x_t
        backward pass: Q-function, box-QP for k_t (bounds only once the trajectory is feasible),
                       K_t on the free controls; V_t from Q_t, shifted by V_xx f_t while gaps remain
        line search over alpha = 1, 1/2, ..., 1/512: nonlinear rollout closing the gaps by alpha,
                       accept on actual vs expected decrease (FDDP's model, negative steps allowed
                       while infeasible)
        regularization: /10 after a step > 1/2, *10 after a step <= 1/100 or a failed pass
    until feasible and |expected decrease| < tol

One iteration is written for one instance and vmapped over a set of slots; a work queue
(`_solve_queue`) refills a slot with the next unsolved instance as soon as its instance stops, so
finished instances neither change nor cost work. Nothing raises because one instance failed:
its `status` says what happened. Path constraints g <= 0 are handled by an augmented-Lagrangian
(PHR) outer loop around this solver; extra cost terms (`ExtraCost`) are added to the problem's.

Conventions: the local controller is u = us_t + k_t + K_t (x - xs_t) (crocoddyl stores -k, -K).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem, ProblemError
from rlto.solver.boxqp import cho_solve, solve_box_qp
from rlto.solver.result import Result, Status


@dataclasses.dataclass(frozen=True)
class ExtraCost:
    """Cost terms added to a Problem's for one solve (policy-learning algorithms use these).

    Functions must be pure JAX and keep their identity across calls to avoid recompiling.
    Per-instance data (multipliers, targets) go into `params` (leading dimension n); data shared
    by all instances (network weights) go into `shared`.
    """

    running: Callable[..., jax.Array] | None = None
    """r(x (nx,), u (nu,), t (), params, shared) -> scalar, added to running_cost."""
    terminal: Callable[..., jax.Array] | None = None
    """r_T(x (nx,), params, shared) -> scalar, added to terminal_cost."""
    shared: Any = None
    """Pytree passed unbatched to both functions."""
    running_derivatives: Callable[..., tuple[jax.Array, jax.Array]] | None = None
    """Optional d(x, u, t, params, shared) -> (gradient (nx+nu,), Hessian (nx+nu, nx+nu)) of
    `running` in z = (x, u), used when linearising instead of differentiating `running` twice:
    e.g. a Gauss-Newton Hessian of a penalty on a network's output, which costs a Jacobian
    rather than a forward-over-reverse sweep per input. Cost evaluations still call `running`."""


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """Step rules of the inner DDP; defaults are crocoddyl's BoxFDDP values."""

    max_iter: int = 200
    """Maximum DDP iterations per instance (per augmented-Lagrangian outer iteration)."""
    tol: float = 1e-6
    """Stop once feasible and |expected decrease of a full step| < tol (crocoddyl's th_stop)."""
    reg_init: float = 1e-9
    """Initial regularization added to Quu and Vxx diagonals."""
    reg_min: float = 1e-9
    """Lower limit of the regularization."""
    reg_max: float = 1e9
    """Upper limit; reaching it ends the instance with REGULARIZATION_LIMIT."""
    reg_factor: float = 10.0
    """Multiplier for increasing/decreasing the regularization."""
    step_decrease_reg: float = 0.5
    """Accepted step lengths above this decrease the regularization."""
    step_increase_reg: float = 0.01
    """Step lengths at or below this (or no accepted step) increase the regularization."""
    accept_ratio: float = 0.1
    """Armijo ratio: accept when actual decrease > accept_ratio * expected decrease."""
    accept_negative_ratio: float = 2.0
    """While infeasible, accept an increase up to this times a negative expected decrease."""
    grad_tol: float = 1e-12
    """Accept any step when the expected first-order decrease is below this."""
    slots: int | None = None
    """Instances iterated together; a slot whose instance finishes takes the next one. Fewer
    slots waste less work on finished instances, more vectorize better. None: all n on a GPU;
    on a CPU about 2 sqrt(n), which minimises (overhead + per-instance cost) x rounds for a
    per-round overhead ~30x the per-instance cost (measured on the pendulum)."""
    parallel_line_search: bool | None = None
    """Try all step lengths 1, 1/2, ..., 1/512 at once (one batched rollout) and take the first
    accepted, instead of one rollout after another until one is accepted: the same step, and
    every rollout is counted in forward_calls. Where rollouts are latency-bound (a GPU) the ten
    cost about one; on a CPU they cost ten. None: parallel on a GPU, sequential on a CPU."""
    zero_clamped_gradient: bool = False
    """crocoddyl's expected-improvement model, which drops Qu on clamped controls. Together with
    qp_tol=1e-5 this follows SolverBoxFDDP step for step (`SolverOptions.crocoddyl()`); the
    default keeps the term (see _backward)."""
    qp_max_iter: int = 100
    """Projected-Newton iterations of the box-QP per time step."""
    qp_tol: float = 1e-10
    """Box-QP stops when the free gradient's max-norm is below this. crocoddyl uses 1e-5, which
    leaves controls 1e-5 inside their bounds and costs 1e-6 relative on the box-LQR test."""

    @classmethod
    def crocoddyl(cls, **changes) -> SolverOptions:
        """The step rules of crocoddyl's SolverBoxFDDP, for side-by-side comparisons."""
        return cls(**{"zero_clamped_gradient": True, "qp_tol": 1e-5, **changes})


_ALPHAS = 0.5 ** np.arange(10)


class _Fns(NamedTuple):
    """The single-instance functions the inner solver differentiates (static under jit)."""

    dynamics: Callable
    linearized_dynamics: Callable  # Problem.linearized_dynamics: (f, df/dx, df/du)
    running: Callable  # (x, u, t, params, shared, lam_t, mu) -> total running cost
    differentiated: Callable  # the part of `running` that _linearize differentiates by autodiff
    extra_derivatives: Callable | None  # ExtraCost.running_derivatives: the rest's derivatives
    terminal: Callable  # (x, params, shared) -> total terminal cost
    lower: np.ndarray
    upper: np.ndarray
    horizon: int


class _State(NamedTuple):
    xs: jax.Array  # (T+1, nx)
    us: jax.Array  # (T, nu)
    cost: jax.Array  # () total cost (with extra and AL terms) at (xs, us), gaps included
    k: jax.Array  # (T, nu) last feed-forward, warm start of the box-QP
    reg: jax.Array  # ()
    feasible: jax.Array  # () bool: gaps are zero
    was_feasible: jax.Array  # () bool: feasible before the last accepted step
    iteration: jax.Array  # () int
    done: jax.Array  # () bool
    status: jax.Array  # () int
    forward_calls: jax.Array  # () int
    derivative_calls: jax.Array  # () int


# ---------------------------------------------------------------------------------------------
# Pieces of one iteration, single instance.


def _total_cost(fns: _Fns, xs, us, params, shared, lam, mu):
    """Cost of (xs, us) with extra and AL terms: scalar."""
    ts = jnp.arange(fns.horizon)
    running = jax.vmap(fns.running, in_axes=(0, 0, 0, None, None, 0, None))(
        xs[:-1], us, ts, params, shared, lam, mu
    )
    return running.sum() + fns.terminal(xs[-1], params, shared)


def _gradient_and_hessian(f, z):
    """f's gradient (d,) and Hessian (d, d) at z (d,), the gradient taken from the primal of the
    Hessian's forward-over-reverse pass instead of a reverse pass of its own."""

    def gradient(z):
        g = jax.grad(f)(z)
        return g, g

    H, g = jax.jacfwd(gradient, has_aux=True)(z)
    return g, H


def _linearize(fns: _Fns, xs, us, params, shared, lam, mu):
    """Derivatives along the trajectory, and the dynamics defects there (gaps: f_0 = x0 - xs_0,
    f_t+1 = f(xs_t, us_t) - xs_t+1, from the same dynamics evaluations).

    Returns (Fx (T, nx, nx), Fu (T, nx, nu), lx (T, nx), lu (T, nu), lxx (T, nx, nx),
    lux (T, nu, nx), luu (T, nu, nu), terminal gradient (nx,) and Hessian (nx, nx)), gaps
    (T+1, nx).
    """
    nx = xs.shape[-1]

    def point(x, u, t, lam_t):
        x_next, Fx, Fu = fns.linearized_dynamics(x, u, t, params)

        def cost_z(z):
            return fns.differentiated(z[:nx], z[nx:], t, params, shared, lam_t, mu)

        g, H = _gradient_and_hessian(cost_z, jnp.concatenate([x, u]))
        if fns.extra_derivatives is not None:
            g_extra, H_extra = fns.extra_derivatives(x, u, t, params, shared)
            g, H = g + g_extra, H + H_extra
        return x_next, (Fx, Fu, g[:nx], g[nx:], H[:nx, :nx], H[nx:, :nx], H[nx:, nx:])

    ts = jnp.arange(fns.horizon)
    x_next, (Fx, Fu, lx, lu, lxx, lux, luu) = jax.vmap(point)(xs[:-1], us, ts, lam)
    lx_T, lxx_T = _gradient_and_hessian(lambda x: fns.terminal(x, params, shared), xs[-1])
    gaps = jnp.concatenate([(params["x0"] - xs[0])[None], x_next - xs[1:]])
    return (Fx, Fu, lx, lu, lxx, lux, luu, lx_T, lxx_T), gaps


def _backward(fns: _Fns, opts: SolverOptions, derivs, us, k_prev, gaps, feasible, reg):
    """Riccati recursion with box-QP feed-forward (crocoddyl's BoxFDDP backward pass).

    Returns k (T, nu), K (T, nu, nx), Vx (T+1, nx), Vxx (T+1, nx, nx), Qu (T, nu), Quu k (T, nu),
    ok (bool: every Quu_ff was positive definite and V finite).

    Unlike crocoddyl, Qu keeps its clamped entries for the expected improvement: a step that moves
    a control onto its bound lowers the cost by about -Qu_c k_c, and dropping that term let the
    stopping test pass with controls 1e-5 short of their bounds (1e-6 relative cost on box-LQR).
    """
    Fx, Fu, lx, lu, lxx, lux, luu, lx_T, lxx_T = derivs
    nx = lx_T.shape[0]
    nu = us.shape[-1]
    gaps = jnp.where(feasible, 0.0, gaps)
    # Bounds enter the QP only once the trajectory is feasible; before, Newton steps are clamped
    # in the rollout (as crocoddyl does).
    lower = jnp.where(feasible, jnp.asarray(fns.lower), -jnp.inf)
    upper = jnp.where(feasible, jnp.asarray(fns.upper), jnp.inf)
    eye_x = jnp.eye(nx)

    Vxx_T = lxx_T + reg * eye_x
    Vx_T = lx_T + Vxx_T @ gaps[-1]

    def step(carry, inputs):
        Vx_next, Vxx_next = carry
        Fx_t, Fu_t, lx_t, lu_t, lxx_t, lux_t, luu_t, u_t, k_prev_t, gap_t = inputs
        Qx = lx_t + Fx_t.T @ Vx_next
        Qu = lu_t + Fu_t.T @ Vx_next
        FuT_Vxx = Fu_t.T @ Vxx_next
        Qxx = lxx_t + Fx_t.T @ Vxx_next @ Fx_t
        Qux = lux_t + FuT_Vxx @ Fx_t
        Quu = luu_t + FuT_Vxx @ Fu_t + reg * jnp.eye(nu)
        k, free, L, ok = solve_box_qp(
            Quu, Qu, lower - u_t, upper - u_t, k_prev_t, opts.qp_max_iter, opts.qp_tol
        )
        K = jnp.where(free[:, None], -cho_solve(L, jnp.where(free[:, None], Qux, 0.0)), 0.0)
        Qu_free = jnp.where(free, Qu, 0.0)
        Vx = Qx + K.T @ Qu_free
        Vxx = Qxx + Qux.T @ K
        Vxx = 0.5 * (Vxx + Vxx.T) + reg * eye_x
        Vx = Vx + Vxx @ gap_t
        ok = ok & jnp.all(jnp.isfinite(Vx)) & jnp.all(jnp.isfinite(Vxx))
        Qu_model = Qu_free if opts.zero_clamped_gradient else Qu
        return (Vx, Vxx), (k, K, Vx, Vxx, Qu_model, Quu @ k, ok)

    inputs = (Fx, Fu, lx, lu, lxx, lux, luu, us, k_prev, gaps[:-1])
    _, (k, K, Vx, Vxx, Qu, Quu_k, ok) = jax.lax.scan(step, (Vx_T, Vxx_T), inputs, reverse=True)
    Vx = jnp.concatenate([Vx, Vx_T[None]])
    Vxx = jnp.concatenate([Vxx, Vxx_T[None]])
    ok = jnp.all(ok) & jnp.all(jnp.isfinite(Vx_T))
    return k, K, Vx, Vxx, Qu, Quu_k, ok


def _all_finite(arrays) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(a)) for a in arrays]))


def _regularized_backward(
    fns: _Fns, opts: SolverOptions, derivs, us, k_prev, gaps, feasible, reg, finite
):
    """The backward pass, raising the regularization until every Quu is positive definite.

    Returns (reg used, _backward's outputs); the last output `ok` is False when even reg_max
    failed (or `finite` is False: non-finite derivatives are not retried).
    """

    def backward(reg):
        return _backward(fns, opts, derivs, us, k_prev, gaps, feasible, reg)

    def retry_cond(carry):
        reg, out = carry
        return ~out[-1] & (reg < opts.reg_max) & finite

    def retry_body(carry):
        reg, _ = carry
        reg = jnp.minimum(reg * opts.reg_factor, opts.reg_max)
        return reg, backward(reg)

    return jax.lax.while_loop(retry_cond, retry_body, (reg, backward(reg)))


def _forward(fns: _Fns, state: _State, k, K, gaps, alpha, params, shared, lam, mu):
    """Nonlinear rollout of step length alpha, closing a share alpha of each gap.

    Returns xs_try (T+1, nx), us_try (T, nu), cost_try (scalar).
    """
    gap_scale = jnp.where(state.feasible, 0.0, alpha - 1.0)
    x0 = params["x0"] + gap_scale * gaps[0]

    def step(x, inputs):
        t, x_ref, u_ref, k_t, K_t, gap_next, lam_t = inputs
        u = jnp.clip(u_ref + alpha * k_t + K_t @ (x - x_ref), fns.lower, fns.upper)
        cost = fns.running(x, u, t, params, shared, lam_t, mu)
        x_next = fns.dynamics(x, u, t, params) + gap_scale * gap_next
        return x_next, (x, u, cost)

    inputs = (jnp.arange(fns.horizon), state.xs[:-1], state.us, k, K, gaps[1:], lam)
    x_T, (xs, us, costs) = jax.lax.scan(step, x0, inputs)
    xs = jnp.concatenate([xs, x_T[None]])
    return xs, us, costs.sum() + fns.terminal(x_T, params, shared)


def _iterate(fns: _Fns, opts: SolverOptions, params, shared, lam, mu, state: _State) -> _State:
    """One BoxFDDP iteration on one instance."""
    T = fns.horizon
    derivs, gaps = _linearize(fns, state.xs, state.us, params, shared, lam, mu)
    finite = _all_finite(derivs) & jnp.isfinite(state.cost)

    reg, (k, K, Vx, Vxx, Qu, Quu_k, backward_ok) = _regularized_backward(
        fns, opts, derivs, state.us, state.k, gaps, state.feasible, state.reg, finite
    )

    # FDDP's expected-improvement model (crocoddyl's dg, dq, dv).
    infeasible = ~state.feasible
    gap_dot_Vx = jnp.sum(gaps * Vx)
    gap_Vxx_gap = jnp.einsum("ti,tij,tj->", gaps, Vxx, gaps)
    dg = -jnp.sum(Qu * k) - jnp.where(infeasible, gap_dot_Vx, 0.0)
    dq = -jnp.sum(k * Quu_k) + jnp.where(infeasible, gap_Vxx_gap, 0.0)

    def try_step(i):
        alpha = jnp.asarray(_ALPHAS)[i]
        xs_try, us_try, cost_try = _forward(fns, state, k, K, gaps, alpha, params, shared, lam, mu)
        dx = state.xs - xs_try
        dv = jnp.where(infeasible, -jnp.einsum("ti,tij,tj->", gaps, Vxx, dx), 0.0)
        d0, d1 = dg + dv, dq - 2.0 * dv
        expected = alpha * (d0 + 0.5 * alpha * d1)
        actual = state.cost - cost_try
        descent = (jnp.abs(d0) < opts.grad_tol) | (actual > opts.accept_ratio * expected)
        uphill = infeasible & (actual > opts.accept_negative_ratio * expected)
        accept = jnp.isfinite(cost_try) & jnp.where(expected >= 0, descent, uphill)
        return accept, xs_try, us_try, cost_try, jnp.abs(d0 + 0.5 * d1)

    parallel = opts.parallel_line_search
    if parallel is None:
        parallel = jax.default_backend() != "cpu"
    if parallel:
        every = jax.vmap(try_step)(jnp.arange(len(_ALPHAS)))
        accepted = jnp.any(every[0])
        # The first accepted step length, else the last tried (as the sequential search ends).
        index = jnp.where(accepted, jnp.argmax(every[0]), len(_ALPHAS) - 1)
        xs_try, us_try, cost_try, stop = (a[index] for a in every[1:])
        rollouts = len(_ALPHAS)
    else:

        def search_cond(carry):
            i, accepted = carry[0], carry[1]
            return (i < len(_ALPHAS)) & ~accepted

        def search_body(carry):
            i = carry[0]
            accept, xs_try, us_try, cost_try, stop = try_step(i)
            return i + 1, accept, xs_try, us_try, cost_try, stop

        init = (0, False, state.xs, state.us, state.cost, jnp.inf)
        tries, accepted, xs_try, us_try, cost_try, stop = jax.lax.while_loop(
            search_cond, search_body, init
        )
        index, rollouts = tries - 1, tries
    alpha = jnp.asarray(_ALPHAS)[index]

    take = accepted & backward_ok & finite
    feasible_after = state.feasible | (alpha == 1.0)
    was_feasible = jnp.where(take, state.feasible, state.was_feasible)
    reg = jnp.where(
        alpha > opts.step_decrease_reg, jnp.maximum(reg / opts.reg_factor, opts.reg_min), reg
    )
    reg = jnp.where(
        alpha <= opts.step_increase_reg, jnp.minimum(reg * opts.reg_factor, opts.reg_max), reg
    )
    iteration = state.iteration + 1
    # crocoddyl's test: the iterate before the last accepted step was feasible, and a full step
    # is expected to lower the cost by less than tol.
    converged = backward_ok & finite & was_feasible & (stop < opts.tol)
    status = jnp.select(
        [~finite, converged, ~backward_ok | (reg >= opts.reg_max), iteration >= opts.max_iter],
        [Status.NON_FINITE, Status.CONVERGED, Status.REGULARIZATION_LIMIT, Status.MAX_ITERATIONS],
        Status.MAX_ITERATIONS,
    )
    done = ~finite | converged | ~backward_ok | (reg >= opts.reg_max) | (iteration >= opts.max_iter)
    return _State(
        xs=jnp.where(take, xs_try, state.xs),
        us=jnp.where(take, us_try, state.us),
        cost=jnp.where(take, cost_try, state.cost),
        k=jnp.where(backward_ok, k, state.k),
        reg=reg,
        feasible=jnp.where(take, feasible_after, state.feasible),
        was_feasible=was_feasible,
        iteration=iteration,
        done=done,
        status=status,
        forward_calls=state.forward_calls + rollouts * T,
        derivative_calls=state.derivative_calls + T,
    )


def _initial_state(
    fns: _Fns, opts: SolverOptions, xs, us, params, shared, lam, mu, feasible, active
) -> _State:
    """Solver state of one instance before its first iteration.

    xs (T+1, nx), us (T, nu), lam (T, nc), mu (), feasible/active () bool; an inactive instance
    starts done and keeps its guess.
    """
    return _State(
        xs=xs,
        us=us,
        cost=_total_cost(fns, xs, us, params, shared, lam, mu),
        k=jnp.zeros_like(us),
        reg=jnp.asarray(opts.reg_init),
        feasible=jnp.asarray(feasible),
        was_feasible=jnp.asarray(feasible),
        iteration=jnp.asarray(0),
        done=~jnp.asarray(active),
        status=jnp.where(active, Status.MAX_ITERATIONS, Status.CONVERGED),
        forward_calls=jnp.where(active, fns.horizon, 0),
        derivative_calls=jnp.asarray(0),
    )


def _final_gains(fns: _Fns, opts: SolverOptions, state: _State, params, shared, lam, mu):
    """Gains and value derivatives at the returned trajectory (the loop's last backward pass was
    one step behind it): (k (T, nu), K (T, nu, nx), Vx (T+1, nx), Vxx (T+1, nx, nx)), the
    expected decrease of a full step per time step (T,), and the largest gap
    |f(x_t, u_t) - x_t+1| (incl. |x0 - xs_0|) there."""
    derivs, gaps = _linearize(fns, state.xs, state.us, params, shared, lam, mu)
    finite = _all_finite(derivs)
    _, (k, K, Vx, Vxx, Qu, Quu_k, _) = _regularized_backward(
        fns, opts, derivs, state.us, state.k, gaps, state.feasible, state.reg, finite
    )
    # The per-step terms of the stopping test's -(dg + dq / 2) on a feasible trajectory.
    improvement = -jnp.sum(Qu * k, axis=-1) - 0.5 * jnp.sum(k * Quu_k, axis=-1)
    return k, K, Vx, Vxx, improvement, jnp.max(jnp.abs(gaps))


def _default_slots(n: int) -> int:
    if jax.default_backend() != "cpu":
        return n
    return max(16, int(2 * np.sqrt(n)))


def _take(tree, index):
    return jax.tree.map(lambda a: a[index], tree)


def _in_chunks(batched: Callable, size: int, *args):
    """batched(*args) for args with leading dimension n, computed `size` instances at a time
    (the last chunk padded with copies of the last instance). On a CPU the derivatives of 256
    ur5 instances at once took 1.6x as long as in chunks of 32, whose intermediates stay in
    cache."""
    n = jax.tree.leaves(args)[0].shape[0]
    chunks = -(-n // size)
    if chunks == 1:
        return batched(*args)
    index = jnp.minimum(jnp.arange(chunks * size), n - 1).reshape(chunks, size)
    out = jax.lax.map(lambda rows: batched(*_take(args, rows)), index)
    return jax.tree.map(lambda a: a.reshape((chunks * size,) + a.shape[2:])[:n], out)


def _solve_queue(
    fns: _Fns, opts: SolverOptions, slots: int, states: _State, params, shared, lam, mu
) -> _State:
    """Iterate n instances to completion through `slots` working slots.

    A vmapped while-loop would iterate every instance until the slowest one finishes (pendulum:
    median 24 iterations, max 159). Instead `slots` instances are iterated together, and a slot
    whose instance is done is refilled with the next unsolved one, so the work follows the sum
    of the iteration counts rather than n times their maximum. states: batched _State (n, ...).
    """
    n = states.cost.shape[0]
    iterate = jax.vmap(
        lambda s, p, l, m: _iterate(fns, opts, p, shared, l, m, s), in_axes=(0, 0, 0, 0)
    )

    def body(carry):
        all_states, slot_index, live, next_index = carry
        current = _take(all_states, slot_index)
        stepped = iterate(current, _take(params, slot_index), lam[slot_index], mu[slot_index])
        step = live & ~current.done
        current = jax.tree.map(
            lambda new, old: jnp.where(step.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
            stepped,
            current,
        )
        # Dead slots hold the final state of their last instance: writing it again is harmless.
        all_states = jax.tree.map(lambda a, c: a.at[slot_index].set(c), all_states, current)
        finished = live & current.done
        candidate = next_index + jnp.cumsum(finished) - 1
        refill = finished & (candidate < n)
        slot_index = jnp.where(refill, candidate, slot_index)
        live = jnp.where(finished, refill, live)
        next_index = jnp.minimum(next_index + jnp.sum(finished), n)
        return all_states, slot_index, live, next_index

    slot_index = jnp.arange(slots)
    carry = (states, slot_index, jnp.ones(slots, dtype=bool), jnp.asarray(slots))
    states, *_ = jax.lax.while_loop(lambda c: jnp.any(c[2]), body, carry)
    return states


# ---------------------------------------------------------------------------------------------
# Batched, compiled entry point.


def _make_fns(problem: Problem, extra: ExtraCost | None, augmented_lagrangian=True) -> _Fns:
    """Problem costs plus extra terms, plus the PHR term of the path constraints if asked."""
    extra_running = extra.running if extra is not None else None
    extra_terminal = extra.terminal if extra is not None else None
    extra_derivatives = extra.running_derivatives if extra is not None else None
    constraints = problem.constraints if augmented_lagrangian else None

    def running(x, u, t, params, shared, lam_t, mu, with_extra=True):
        cost = problem.running_cost(x, u, t, params)
        if extra_running is not None and with_extra:
            cost = cost + extra_running(x, u, t, params, shared)
        if constraints is not None:
            # Powell-Hestenes-Rockafellar term for g <= 0.
            g = constraints(x, u, t, params)
            cost = cost + (jnp.sum(jnp.maximum(lam_t + mu * g, 0.0) ** 2) - jnp.sum(lam_t**2)) / (
                2.0 * mu
            )
        return cost

    def terminal(x, params, shared):
        cost = problem.terminal_cost(x, params)
        if extra_terminal is not None:
            cost = cost + extra_terminal(x, params, shared)
        return cost

    differentiated = (running if extra_derivatives is None
                      else functools.partial(running, with_extra=False))
    return _Fns(problem.dynamics, problem.linearized_dynamics, running, differentiated,
                extra_derivatives, terminal, problem.u_lower, problem.u_upper, problem.horizon)


@functools.lru_cache(maxsize=64)
def _compiled(problem: Problem, extra_running, extra_terminal, extra_derivatives,
              opts: SolverOptions):
    """The batched solve, jit-compiled, for one problem, extra-cost functions and options."""
    extra = ExtraCost(extra_running, extra_terminal, running_derivatives=extra_derivatives)
    fns = _make_fns(problem, extra)
    plain = _make_fns(problem, extra, augmented_lagrangian=False)
    init = jax.vmap(
        functools.partial(_initial_state, fns, opts), in_axes=(0, 0, 0, None, 0, 0, 0, 0)
    )
    gains = jax.vmap(functools.partial(_final_gains, fns, opts), in_axes=(0, 0, None, 0, 0))

    def run(xs, us, params, shared, lam, mu, feasible, active):
        n = xs.shape[0]
        slots = min(n, opts.slots or _default_slots(n))
        state = init(xs, us, params, shared, lam, mu, feasible, active)
        state = _solve_queue(fns, opts, slots, state, params, shared, lam, mu)
        k, K, Vx, Vxx, improvement, gap = _in_chunks(
            lambda s, p, l, m: gains(s, p, shared, l, m), slots, state, params, lam, mu
        )
        state = state._replace(derivative_calls=state.derivative_calls + fns.horizon)
        problem_cost = jax.vmap(problem.trajectory_cost)(state.xs, state.us, params)
        total = jax.vmap(_total_cost, in_axes=(None, 0, 0, 0, None, 0, 0))(
            plain, state.xs, state.us, params, shared, lam, mu
        )
        violation = _violation(problem, state.xs, state.us, params)
        return (
            state,
            k,
            K,
            Vx,
            Vxx,
            improvement,
            problem_cost,
            total,
            gap,
            violation,
        )

    return jax.jit(run)


def _constraint_values(problem: Problem, xs, us, params):
    """g along trajectories: xs (n, T+1, nx), us (n, T, nu) -> (n, T, nc)."""
    ts = jnp.arange(problem.horizon)
    per_step = jax.vmap(problem.constraints, in_axes=(0, 0, 0, None))
    return jax.vmap(per_step, in_axes=(0, 0, None, 0))(xs[:, :-1], us, ts, params)


def _violation(problem: Problem, xs, us, params):
    if problem.constraints is None:
        return jnp.zeros(xs.shape[0])
    g = _constraint_values(problem, xs, us, params)
    return jnp.max(jnp.maximum(g, 0.0), axis=(1, 2))


@functools.lru_cache(maxsize=64)
def _compiled_rollout(problem: Problem):
    return jax.jit(jax.vmap(problem.rollout))


@functools.lru_cache(maxsize=64)
def _compiled_constraints(problem: Problem):
    return jax.jit(functools.partial(_constraint_values, problem))


def solve(
    problem: Problem,
    params,
    init=None,
    max_iter: int = 200,
    tol: float = 1e-6,
    extra_cost: ExtraCost | None = None,
    al_iters: int = 20,
    constraint_tol: float = 1e-6,
    options: SolverOptions | None = None,
) -> Result:
    """Solve n instances of `problem` at once.

    problem: the OCP family. params: dict of arrays with leading dimension n (problem.sample).
    init: None (the problem's initial_controls, zero controls where it has none; clipped to the
        bounds), controls us (n, T, nu) (rolled out from x0),
        or a tuple (xs (n, T+1, nx), us (n, T, nu)); states need not be dynamically consistent.
    max_iter: DDP iterations per instance (per augmented-Lagrangian outer iteration).
    tol: convergence threshold on the expected cost decrease (crocoddyl's th_stop).
    extra_cost: terms added to the costs (see ExtraCost).
    al_iters, constraint_tol: augmented-Lagrangian outer iterations and the violation max(g, 0)
        accepted as feasible, used only when the problem has path constraints.
    options: step rules of the inner solver (SolverOptions); max_iter and tol override it.
    Returns a Result whose arrays have leading dimension n; never raises because of one instance.
    """
    start = time.perf_counter()
    opts = dataclasses.replace(options or SolverOptions(), max_iter=int(max_iter), tol=float(tol))
    _check_options(opts, al_iters, constraint_tol, extra_cost)
    n = problem.check_params(params)
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    xs, us, feasible = _initial_guess(problem, params, init, n)
    shared = extra_cost.shared if extra_cost is not None else None
    run = _compiled(
        problem,
        extra_cost.running if extra_cost is not None else None,
        extra_cost.terminal if extra_cost is not None else None,
        extra_cost.running_derivatives if extra_cost is not None else None,
        opts,
    )

    nc = problem.nc
    lam = jnp.zeros((n, problem.horizon, max(nc, 1)))
    mu = jnp.full((n,), 10.0)
    active = jnp.ones(n, dtype=bool)
    iterations = np.zeros(n, dtype=np.int64)
    forward_calls = np.zeros(n, dtype=np.int64)
    derivative_calls = np.zeros(n, dtype=np.int64)
    previous_violation = np.full(n, np.inf)
    outer = al_iters if nc else 1
    for _ in range(outer):
        state, k, K, Vx, Vxx, improvement, cost, total, gap, violation = run(
            xs, us, params, shared, lam, mu, feasible, active
        )
        iterations += np.asarray(state.iteration)
        forward_calls += np.asarray(state.forward_calls)
        derivative_calls += np.asarray(state.derivative_calls)
        xs, us, feasible = state.xs, state.us, state.feasible
        if not nc:
            break
        violation_np = np.asarray(violation)
        satisfied = violation_np <= constraint_tol
        inner_ok = np.asarray(state.status) == Status.CONVERGED
        active_np = ~(satisfied & inner_ok)
        if not active_np.any():
            break
        # Multiplier update (first-order) and penalty increase where progress stalled.
        g = _compiled_constraints(problem)(xs, us, params)
        lam = jnp.where(
            active_np[:, None, None], jnp.maximum(lam + mu[:, None, None] * g, 0.0), lam
        )
        stalled = violation_np > 0.25 * previous_violation
        mu = jnp.where(active_np & stalled, jnp.minimum(mu * 10.0, 1e8), mu)
        previous_violation = np.where(active_np, violation_np, previous_violation)
        active = jnp.asarray(active_np)

    status = np.asarray(state.status).copy()
    if nc:
        violated = (np.asarray(violation) > constraint_tol) & (status == Status.CONVERGED)
        status[violated] = Status.CONSTRAINTS_VIOLATED
    return Result(
        xs=np.asarray(xs),
        us=np.asarray(us),
        K=np.asarray(K),
        k=np.asarray(k),
        Vx=np.asarray(Vx),
        Vxx=np.asarray(Vxx),
        step_improvement=np.asarray(improvement),
        cost=np.asarray(cost),
        total_cost=np.asarray(total),
        iterations=iterations,
        converged=status == Status.CONVERGED,
        status=status,
        gap=np.asarray(gap),
        constraint_violation=np.asarray(violation),
        forward_calls=forward_calls,
        derivative_calls=derivative_calls,
        seconds=time.perf_counter() - start,
    )


def _check_options(opts: SolverOptions, al_iters, constraint_tol, extra_cost) -> None:
    if opts.max_iter < 1:
        raise ProblemError(f"max_iter must be a positive integer, got {opts.max_iter}.")
    if not opts.tol > 0:
        raise ProblemError(f"tol must be positive, got {opts.tol}.")
    if int(al_iters) < 1:
        raise ProblemError(f"al_iters must be a positive integer, got {al_iters}.")
    if not constraint_tol > 0:
        raise ProblemError(f"constraint_tol must be positive, got {constraint_tol}.")
    if extra_cost is not None and not isinstance(extra_cost, ExtraCost):
        raise ProblemError(
            f"extra_cost must be an rlto.ExtraCost(running=..., terminal=..., shared=...), got "
            f"{type(extra_cost).__name__}."
        )
    if extra_cost is not None and extra_cost.running_derivatives is not None \
            and extra_cost.running is None:
        raise ProblemError("ExtraCost.running_derivatives are the derivatives of `running`; "
                           "give `running` too (the solver evaluates costs with it).")


def _initial_guess(problem: Problem, params, init, n: int):
    """(xs (n, T+1, nx), us (n, T, nu), feasible (n,) bool) from the `init` argument."""
    T, nx, nu = problem.horizon, problem.nx, problem.nu
    if init is None:
        init = default_controls(problem, params, n)
    if isinstance(init, tuple | list):
        if len(init) != 2:
            raise ProblemError("init must be None, controls us (n, T, nu), or a tuple (xs, us).")
        xs, us = (jnp.asarray(a, dtype=jnp.float64) for a in init)
        _check_shape("init xs", xs.shape, (n, T + 1, nx))
        _check_shape("init us", us.shape, (n, T, nu))
        feasible = jnp.zeros(n, dtype=bool)
    else:
        us = jnp.asarray(init, dtype=jnp.float64)
        _check_shape("init us", us.shape, (n, T, nu))
        xs = None
        feasible = jnp.ones(n, dtype=bool)
    if not bool(jnp.all(jnp.isfinite(us))) or (
        xs is not None and not bool(jnp.all(jnp.isfinite(xs)))
    ):
        raise ProblemError("init contains NaN or inf; pass finite states and controls.")
    us = jnp.clip(us, problem.u_lower, problem.u_upper)
    if xs is None:
        # A rollout is dynamically consistent: start feasible, so the box-QP is used at once.
        xs = _compiled_rollout(problem)(us, params)
    return xs, us, feasible


def default_controls(problem: Problem, params, n: int) -> jax.Array:
    """The controls (n, T, nu) a solve starts from without a warm start: the problem's
    initial_controls(params) per instance, or zeros; clipped to the bounds."""
    if problem.initial_controls is None:
        us = jnp.zeros((n, problem.horizon, problem.nu))
    else:
        us = _compiled_initial_controls(problem)(params)
    return jnp.clip(us, problem.u_lower, problem.u_upper)


@functools.lru_cache(maxsize=64)
def _compiled_initial_controls(problem: Problem):
    return jax.jit(jax.vmap(problem.initial_controls))


def _check_shape(what: str, shape, expected) -> None:
    if tuple(shape) != tuple(expected):
        raise ProblemError(f"{what} has shape {tuple(shape)}, expected {tuple(expected)}.")
