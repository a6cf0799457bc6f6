"""CACTO's one-dimensional toy problem: `oned` (benchmarks.md 1.2).

    x+ = 0.8 x + 0.1 u,   |u| <= 1,   T = 50
    running  = 0.15 u^2 + P(x),   terminal = P(x_T)
    P(x) = (x - 1.9)(x - 1)(x - 0.6)(x + 0.5)(x + 1.2)(x + 2.1)

P is a sixth-degree polynomial with the six real roots 1.9, 1, 0.6, -0.5, -1.2, -2.1 and three
wells (local minima) between them: x = -1.810 (P = -5.82, the global one), x = 0.013
(P = -1.44) and x = 1.627 (P = -3.94), separated by maxima at x = -0.894 (P = 1.15) and
x = 0.814 (P = 0.33); so the value function has several local minima and gradient-based TO can
stop in the wrong well. The costs are per step (the problem is discrete
time; `dt` = 1 only labels time axes), unscaled (`poly_scale` = 1), and the terminal cost repeats
the state term P. The dynamics contract towards x = u/2, so the reachable steady states are
|x| <= 0.5: far wells can only be visited on the way, which is what makes the problem a test of
the critic. Initial states x0 uniform in [-2, 2].

No time in the state: every OCP runs the fixed horizon from t0 = 0 (CACTO's variable start time
belongs to the CACTO algorithm).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rlto.problem import Problem, register
from rlto.problems import resolve_config


@dataclasses.dataclass(frozen=True)
class OnedConfig:
    """Settings of `oned`."""

    a: float = 0.8
    """Contraction of the state per step: x+ = a x + b u."""
    b: float = 0.1
    """Control gain per step."""
    horizon: int = 50
    """T: 50 steps (the state forgets its start within about 20 steps, 0.8^20 ~ 0.01)."""
    dt: float = 1.0
    """Label of one step for time axes; the dynamics are discrete."""
    u_max: float = 1.0
    """Control bound |u| <= u_max."""
    w_u: float = 0.15
    """Weight of u^2 in the running cost."""
    roots: tuple[float, ...] = (1.9, 1.0, 0.6, -0.5, -1.2, -2.1)
    """Roots of the state cost polynomial P(x) = prod_i (x - root_i)."""
    poly_scale: float = 1.0
    """Multiplier of P in the running and terminal costs."""
    x_range: tuple[float, float] = (-2.0, 2.0)
    """Initial states uniform in this interval."""


def polynomial(x: jax.Array, roots: tuple[float, ...]) -> jax.Array:
    """P(x) = prod_i (x - root_i): scalar -> scalar."""
    out = jnp.ones_like(x)
    for root in roots:
        out = out * (x - root)
    return out


def make_oned(config: OnedConfig = OnedConfig(), **overrides) -> Problem:
    """CACTO's 1-D problem; overrides replace config fields."""
    config = resolve_config("oned", config, overrides)
    c = config

    def dynamics(x, u, t, params):
        return c.a * x + c.b * u

    def running_cost(x, u, t, params):
        return c.w_u * u[0] ** 2 + c.poly_scale * polynomial(x[0], c.roots)

    def terminal_cost(x, params):
        return c.poly_scale * polynomial(x[0], c.roots)

    def sample(key, n):
        return {"x0": jax.random.uniform(key, (n, 1), jnp.float64, *c.x_range)}

    return Problem(
        name="oned",
        nx=1,
        nu=1,
        horizon=c.horizon,
        dt=c.dt,
        dynamics=dynamics,
        running_cost=running_cost,
        terminal_cost=terminal_cost,
        u_lower=[-c.u_max],
        u_upper=[c.u_max],
        sample=sample,
        description="CACTO 1-D toy: x+=0.8x+0.1u, sixth-degree cost with several local minima",
        config=c,
    )


register(
    "oned",
    make_oned,
    "CACTO 1-D toy: x+=0.8x+0.1u, |u|<=1, sixth-degree state cost with several local minima",
)
