"""Box-constrained QP by projected Newton (Bertsekas 1982; Tassa et al. 2014, as in BoxDDP).

    minimize 0.5 x^T H x + q^T x   subject to   lb <= x <= ub

Single instance, small dimension (the number of controls); vmapped by the DDP backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve as _lapack_cho_solve

_ALPHAS = 0.5 ** jnp.arange(10)
_ARMIJO = 0.1
# Up to this size, factorizations are unrolled into element-wise arithmetic: under vmap that is
# one vectorized op per entry, whereas XLA on CPU runs batched LAPACK calls one matrix at a time
# (measured: 13x slower for 256 pendulums, nu = 1).
_UNROLL_MAX = 8


def cholesky(H: jax.Array) -> jax.Array:
    """Lower Cholesky factor of a small SPD matrix: (n, n) -> (n, n); NaN if not SPD."""
    n = H.shape[0]
    if n > _UNROLL_MAX:
        return jnp.linalg.cholesky(H)
    L = [[jnp.zeros((), H.dtype)] * n for _ in range(n)]
    for j in range(n):
        diag = H[j, j] - sum((L[j][k] ** 2 for k in range(j)), jnp.zeros((), H.dtype))
        # sqrt of a negative pivot is NaN, which marks the matrix as not positive definite.
        L[j][j] = jnp.sqrt(jnp.where(diag > 0, diag, jnp.nan))
        for i in range(j + 1, n):
            off = H[i, j] - sum((L[i][k] * L[j][k] for k in range(j)), jnp.zeros((), H.dtype))
            L[i][j] = off / L[j][j]
    return jnp.stack([jnp.stack(row) for row in L])


def cho_solve(L: jax.Array, b: jax.Array) -> jax.Array:
    """Solve (L L^T) x = b: L (n, n) lower, b (n,) or (n, m) -> same shape as b."""
    n = L.shape[0]
    if n > _UNROLL_MAX:
        return _lapack_cho_solve((L, True), b)
    y = []
    for i in range(n):
        y.append((b[i] - sum((L[i, k] * y[k] for k in range(i)), jnp.zeros_like(b[i]))) / L[i, i])
    x = [None] * n
    for i in reversed(range(n)):
        rest = sum((L[k, i] * x[k] for k in range(i + 1, n)), jnp.zeros_like(b[i]))
        x[i] = (y[i] - rest) / L[i, i]
    return jnp.stack(x)


def free_set(x: jax.Array, g: jax.Array, lb: jax.Array, ub: jax.Array) -> jax.Array:
    """Components not held at a bound by the gradient: x (n,), g (n,) -> (n,) bool."""
    clamped = ((x <= lb) & (g > 0)) | ((x >= ub) & (g < 0))
    return ~clamped


def free_cholesky(H: jax.Array, free: jax.Array) -> jax.Array:
    """Cholesky factor of H restricted to the free set, identity on clamped rows/cols.

    H (n, n), free (n,) -> L (n, n); NaN entries when H_ff is not positive definite.
    """
    both = free[:, None] & free[None, :]
    return cholesky(jnp.where(both, H, jnp.eye(H.shape[0], dtype=H.dtype)))


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
        dx = jnp.where(free, -cho_solve(L, g_free), 0.0)
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

    # Where the unconstrained minimiser lies strictly inside the box it is the solution, and the
    # projected-Newton loop (at least two factorizations and a line search) is skipped: in DDP's
    # backward pass most steps have no active bound, and under vmap the loop runs while any
    # instance of the batch still iterates.
    L_all = cholesky(H)
    newton = -cho_solve(L_all, q)
    interior = jnp.all((newton > lb) & (newton < ub)) & jnp.all(jnp.isfinite(L_all))
    x0 = jnp.where(interior, newton, jnp.clip(x_init, lb, ub))
    x, _, _, ok = jax.lax.while_loop(cond, body, (x0, 0, interior, True))
    g = q + H @ x
    free = free_set(x, g, lb, ub)
    L = free_cholesky(H, free)  # all free, so L_all again, where interior
    return x, free, L, ok & jnp.all(jnp.isfinite(L))
