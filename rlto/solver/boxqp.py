"""Box-constrained QP by projected Newton (Bertsekas 1982; Tassa et al. 2014, as in BoxDDP).

    minimize 0.5 x^T H x + q^T x   subject to   lb <= x <= ub

Single instance, small dimension (the number of controls); vmapped by the DDP backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

_ALPHAS = 0.5 ** jnp.arange(10)
_ARMIJO = 0.1


def free_set(x: jax.Array, g: jax.Array, lb: jax.Array, ub: jax.Array) -> jax.Array:
    """Components not held at a bound by the gradient: x (n,), g (n,) -> (n,) bool."""
    clamped = ((x <= lb) & (g > 0)) | ((x >= ub) & (g < 0))
    return ~clamped


def free_cholesky(H: jax.Array, free: jax.Array) -> jax.Array:
    """Cholesky factor of H restricted to the free set, identity on clamped rows/cols.

    H (n, n), free (n,) -> L (n, n); NaN entries when H_ff is not positive definite.
    """
    both = free[:, None] & free[None, :]
    return jnp.linalg.cholesky(jnp.where(both, H, jnp.eye(H.shape[0], dtype=H.dtype)))


def solve_box_qp(H, q, lb, ub, x_init, max_iter: int = 100, tol: float = 1e-5):
    """Projected-Newton box QP.

    H (n, n) symmetric, q (n,), lb/ub (n,) (may be +-inf), x_init (n,) warm start.
    Returns (x (n,), free (n,) bool at the solution, L (n, n) Cholesky of H_ff, ok bool: H_ff
    positive definite at every step).
    """

    def objective(x):
        return 0.5 * x @ H @ x + q @ x

    def body(carry):
        x, it, _, ok = carry
        g = q + H @ x
        free = free_set(x, g, lb, ub)
        L = free_cholesky(H, free)
        g_free = jnp.where(free, g, 0.0)
        dx = jnp.where(free, -cho_solve((L, True), g_free), 0.0)
        candidates = jnp.clip(x + _ALPHAS[:, None] * dx, lb, ub)
        decrease = objective(x) - jax.vmap(objective)(candidates)
        accepted = decrease >= _ARMIJO * ((x - candidates) @ g)
        first = jnp.argmax(accepted)
        step_ok = jnp.any(accepted) & jnp.all(jnp.isfinite(L))
        x_new = jnp.where(step_ok, candidates[first], x)
        done = (jnp.max(jnp.abs(g_free)) <= tol) | ~step_ok
        return x_new, it + 1, done, ok & jnp.all(jnp.isfinite(L))

    def cond(carry):
        _, it, done, ok = carry
        return (it < max_iter) & ~done & ok

    x0 = jnp.clip(x_init, lb, ub)
    x, _, _, ok = jax.lax.while_loop(cond, body, (x0, 0, False, True))
    g = q + H @ x
    free = free_set(x, g, lb, ub)
    L = free_cholesky(H, free)
    return x, free, L, ok & jnp.all(jnp.isfinite(L))
