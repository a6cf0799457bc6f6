"""Supervised losses of seed 002 (sections III-IV): regression, Sobolev, consensus penalty.

All functions are pure and batched. States xs have shape (m, nx), or any leading batch shape
(..., nx) such as TO trajectories (n, T, nx); the per-instance parameters `params` are a dict of
(m, ...) arrays, or (n, ...) against (n, T, nx), repeated over the trailing batch axes (see
`rlto.nets.broadcast_params`); only the policy's conditioning keys are read. Every mean is over
all samples (all leading axes).

    regression          eq. 7:  mean 1/2 ||u - pi(x)||^2 (optionally weighted per control)
    Sobolev             eq. 8:  mean 1/2 ||K - d pi/dx (x)||_F^2
    stochastic Sobolev  sec. III: mean nu/2 ||v'K - d(v'pi)/dx (x)||^2, v uniform on the sphere
    consensus penalty   eqs. 12-13: lam'(u - pi) + mu/2 ||u - pi||^2, per sample
    TD(N) targets       CACTO: N-step partial costs-to-go and where a critic must bootstrap

The consensus penalty is used twice by the augmented-Lagrangian algorithms: as an extra running
cost of the TO step (with pi(x) a fixed target, or the policy evaluated at the solver's x) and
as the learning step's loss (with u fixed and pi = pi_theta(x)).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from rlto.nets import Policy, apply_policy, broadcast_params

Params = Mapping[str, jax.Array] | None


def regression_loss(policy: Policy, xs: jax.Array, us: jax.Array, params: Params,
                    weights: jax.Array | None = None, control_weights: jax.Array | None = None
                    ) -> jax.Array:
    """Eq. 7 as a mean: xs (m, nx), us (m, nu), params dict of (m, ...) -> scalar.

    mean_i 1/2 ||us_i - pi(xs_i, params_i)||^2 (the paper's sum divided by the sample count).
    weights (m,), optional: each sample's term times w_i, still divided by the sample count
    (zero-weight rows, e.g. a replay buffer's empty slots, then only shrink the step).
    control_weights (m, nu) or (nu,), optional: each control's squared error times its weight,
    sum_j c_ij (u_ij - pi_j)^2 (e.g. by the authority of each control, `control_authority`).
    """
    us = jnp.asarray(us)
    _check_trailing(us, policy.nu, "us")
    squared = (us - apply_policy(policy, xs, params)) ** 2
    if control_weights is not None:
        squared = squared * jnp.asarray(control_weights)
    return 0.5 * _mean(jnp.sum(squared, axis=-1), weights)


def policy_jacobian(policy: Policy, xs: jax.Array, params: Params) -> jax.Array:
    """d pi / dx at each state: xs (m, nx), params (m, ...) -> (m, nu, nx) (forward mode, x only).

    The parameters are held fixed: no derivative with respect to the conditioning inputs.
    """
    flat_x, flat_p, batch = _flatten(policy, xs, params)
    jac = jax.vmap(jax.jacfwd(policy, argnums=0))(flat_x, flat_p)
    return jac.reshape(batch + (policy.nu, policy.nx))


def sobolev_loss(policy: Policy, xs: jax.Array, K: jax.Array, params: Params,
                 weights: jax.Array | None = None) -> jax.Array:
    """Eq. 8's term as a mean: xs (m, nx), K (m, nu, nx), params (m, ...) -> scalar.

    mean_i 1/2 ||K_i - d pi/dx (xs_i)||_F^2, with the full Jacobian (nx forward passes each);
    weights (m,) as in `regression_loss`.
    """
    K = jnp.asarray(K)
    jac = policy_jacobian(policy, xs, params)
    if K.shape != jac.shape:
        raise ValueError(f"K has shape {K.shape}, expected {jac.shape} (states' batch, nu, nx).")
    return 0.5 * _mean(jnp.sum((K - jac) ** 2, axis=(-2, -1)), weights)


def stochastic_sobolev_loss(
    policy: Policy, xs: jax.Array, K: jax.Array, params: Params, key: jax.Array,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Stochastic Sobolev term: xs (m, nx), K (m, nu, nx), params (m, ...), key -> scalar
    (weights (m,) as in `regression_loss`).

    mean_i nu/2 ||v_i'K_i - d(v_i'pi)/dx (xs_i)||^2 with one v_i uniform on the unit sphere of
    R^nu per sample, computed with ONE vector-Jacobian product per sample (no full Jacobian).

    Scaling: for M = K - d pi/dx, E_v[v v'] = I / nu, so E_v ||v'M||^2 = ||M||_F^2 / nu. The factor
    nu (absent from the paper's formula) makes the expectation over v EQUAL `sobolev_loss`, so the
    two are interchangeable with the same weight.
    """
    K = jnp.asarray(K)
    flat_x, flat_p, batch = _flatten(policy, xs, params)
    m = flat_x.shape[0]
    if K.shape != batch + (policy.nu, policy.nx):
        raise ValueError(
            f"K has shape {K.shape}, expected {batch + (policy.nu, policy.nx)} "
            "(states' batch, nu, nx)."
        )
    v = jax.random.normal(key, (m, policy.nu), dtype=flat_x.dtype)
    v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)

    def projected_residual(x, p, v_i, k_i):
        _, vjp = jax.vjp(lambda x_: policy(x_, p), x)
        (grad_v_pi,) = vjp(v_i)  # d(v'pi)/dx (nx,)
        return v_i @ k_i - grad_v_pi

    r = jax.vmap(projected_residual)(flat_x, flat_p, v, K.reshape(m, policy.nu, policy.nx))
    return 0.5 * policy.nu * _mean(jnp.sum(r**2, axis=-1).reshape(batch), weights)


def consensus_penalty(
    us: jax.Array, pi_us: jax.Array, lam: jax.Array, mu: jax.Array | float
) -> jax.Array:
    """Eq. 13's per-sample terms: us, pi_us, lam (m, nu), mu scalar or (m,) -> (m,).

    lam'(u - pi) + mu/2 ||u - pi||^2 for each sample; any leading shape (...) works, with mu
    broadcastable to it. Equal to mu/2 ||u - pi + lam/mu||^2 - ||lam||^2 / (2 mu) (eq. 15's form).
    Gradients: d/du = lam + mu (u - pi) = -d/dpi, whose value is also the dual update's new lam.
    """
    diff = jnp.asarray(us) - jnp.asarray(pi_us)
    return jnp.sum(jnp.asarray(lam) * diff, axis=-1) + 0.5 * jnp.asarray(mu) * jnp.sum(
        diff**2, axis=-1
    )


def td_n_targets(
    running: jax.Array, terminal: jax.Array, n_steps: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """TD(N) pieces of episodes' cost-to-go: running (E, T) costs l_t, terminal (E,) l_T.

    For each step t the N-step target is  y_t = sum_{k=t}^{min(t+N, T)-1} l_k + tail, with
    tail = V(x_{t+N}, t+N) when t + N < T (bootstrapped by a critic) and l_T otherwise (the
    episode's end is inside the window: Monte Carlo). Returns
      partial (E, T): the sum of the known costs (l_T included where the window reaches T),
      boot_step (E, T) int: t + N where the critic is needed, T otherwise,
      bootstrap (E, T) bool: t + N < T.
    """
    running = jnp.asarray(running)
    E, T = running.shape
    if n_steps < 1:
        raise ValueError(f"TD(N) needs N >= 1 steps, got {n_steps}.")
    cumulative = jnp.concatenate([jnp.zeros((E, 1), running.dtype), jnp.cumsum(running, 1)], 1)
    t = jnp.arange(T)
    end = jnp.minimum(t + n_steps, T)
    partial = cumulative[:, end] - cumulative[:, t]
    bootstrap = t + n_steps < T
    partial = partial + jnp.where(bootstrap, 0.0, jnp.asarray(terminal)[:, None])
    boot_step = jnp.broadcast_to(jnp.where(bootstrap, t + n_steps, T), (E, T))
    return partial, boot_step, jnp.broadcast_to(bootstrap, (E, T))


def _mean(terms: jax.Array, weights: jax.Array | None) -> jax.Array:
    """mean(w * terms) over all samples, or the plain mean without weights."""
    if weights is None:
        return jnp.mean(terms)
    return jnp.mean(jnp.asarray(weights, terms.dtype) * terms)


def _check_trailing(a: jax.Array, n: int, name: str) -> None:
    if a.ndim < 1 or a.shape[-1] != n:
        raise ValueError(f"{name} has shape {a.shape}, expected (..., {n}).")


def _flatten(policy: Policy, xs: jax.Array, params: Params):
    """xs (..., nx) -> (m, nx), conditioning params -> dict of (m, *shape), batch shape (...)."""
    xs = jnp.asarray(xs, policy.dtype)
    _check_trailing(xs, policy.nx, "xs")
    batch = xs.shape[:-1]
    m = xs.reshape(-1, policy.nx).shape[0]
    beta = broadcast_params(policy, params, batch)
    flat_p = {k: v.reshape((m, *v.shape[len(batch) :])) for k, v in beta.items()}
    return xs.reshape(m, policy.nx), flat_p, batch
