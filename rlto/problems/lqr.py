"""Constrained LQR: `lqr`, a 2-D point mass with a box on the force (benchmarks.md 1.1).

State x = (px, py, vx, vy), control u = (ax, ay) (acceleration), exact zero-order-hold
discretisation of the double integrator with dt = 0.1:

    x+ = A x + B u,   A = [[I, dt I], [0, I]],   B = [[dt^2/2 I], [dt I]]

Cost 1/2 x'Qx + 1/2 u'Ru per step (not multiplied by dt: this is the discrete-time LQR whose
Riccati solution the tests compare with) and 1/2 x'Qf x at the end; target the origin.
Numbers: T = 50 (5 s), Q = I (position and velocity weight 1), R = I, Qf = 100 I, |u_j| <= 1.
Initial states: p uniform in [-2, 2]^2, v uniform in [-1, 1]^2.

Why the box is active: the unconstrained optimal feedback from these states asks for |u_j| > 1
at some step for about 77% of initial states (>= 30% required; the tests count it). Why the
horizon suffices: from the worst corner (|p| = 2, v = 1 m/s away from the target) the box still
lets each axis stop (1 s, 0.5 m) and return bang-bang (2 sqrt(2.5) = 3.2 s) within 5 s, and
Qf = 100 I makes the optimum use that time to end at the origin.

`make_lqr(u_max=float("inf"))` gives the unconstrained problem, whose optimum is the closed-form
finite-horizon Riccati solution; `matrices(config)` returns (A, B, Q, R, Qf) for it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem, register
from rlto.problems import resolve_config


@dataclasses.dataclass(frozen=True)
class LqrConfig:
    """Settings of `lqr`."""

    dt: float = 0.1
    """Time step (s) of the exact double-integrator discretisation."""
    horizon: int = 50
    """T: 5 s, enough for the boxed controls to bring every sampled state to the origin."""
    u_max: float = 1.0
    """Box |u_j| <= u_max (m/s^2); float("inf") gives the unconstrained LQR."""
    q_pos: float = 1.0
    """Q weight of each position coordinate."""
    q_vel: float = 1.0
    """Q weight of each velocity coordinate."""
    r: float = 1.0
    """R = r I."""
    qf: float = 100.0
    """Qf = qf I: terminal weight, large so that the optimum ends at the origin."""
    p_range: float = 2.0
    """Initial positions uniform in [-p_range, p_range]^2 (m)."""
    v_range: float = 1.0
    """Initial velocities uniform in [-v_range, v_range]^2 (m/s)."""


def matrices(config: LqrConfig = LqrConfig()) -> tuple[np.ndarray, ...]:
    """(A (4,4), B (4,2), Q (4,4), R (2,2), Qf (4,4)) as NumPy float64 arrays."""
    dt = config.dt
    eye, zero = np.eye(2), np.zeros((2, 2))
    a = np.block([[eye, dt * eye], [zero, eye]])
    b = np.vstack([0.5 * dt**2 * eye, dt * eye])
    q = np.diag([config.q_pos] * 2 + [config.q_vel] * 2)
    r = config.r * eye
    qf = config.qf * np.eye(4)
    return a, b, q, r, qf


def riccati(config: LqrConfig = LqrConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form optimum of the unconstrained problem (finite-horizon discrete Riccati).

    Returns gains K (T, nu, nx), optimal u_t = K_t x_t, and cost-to-go matrices P (T+1, nx, nx),
    optimal cost from x_t = x_t' P_t x_t / 2.
    """
    a, b, q, r, qf = matrices(config)
    p = qf
    gains, values = [], [p]
    for _ in range(config.horizon):
        k = -np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p = q + a.T @ p @ (a + b @ k)
        gains.append(k)
        values.append(p)
    return np.array(gains[::-1]), np.array(values[::-1])


def make_lqr(config: LqrConfig = LqrConfig(), **overrides) -> Problem:
    """The constrained LQR; make_lqr(u_max=float("inf")) is the unconstrained one."""
    config = resolve_config("lqr", config, overrides)
    a, b, q, r, qf = (jnp.asarray(m) for m in matrices(config))

    def dynamics(x, u, t, params):
        return a @ x + b @ u

    def running_cost(x, u, t, params):
        return 0.5 * (x @ q @ x) + 0.5 * (u @ r @ u)

    def terminal_cost(x, params):
        return 0.5 * (x @ qf @ x)

    low = jnp.array([-config.p_range] * 2 + [-config.v_range] * 2)

    def sample(key, n):
        return {"x0": jax.random.uniform(key, (n, 4), jnp.float64, low, -low)}

    return Problem(
        name="lqr",
        nx=4,
        nu=2,
        horizon=config.horizon,
        dt=config.dt,
        dynamics=dynamics,
        running_cost=running_cost,
        terminal_cost=terminal_cost,
        u_lower=[-config.u_max] * 2,
        u_upper=[config.u_max] * 2,
        sample=sample,
        description=f"2-D point mass to the origin, quadratic cost, |u|<={config.u_max:g}, T=50",
        position=lambda x, params: x[:2],
        target=lambda params: jnp.zeros(2),
        config=config,
    )


register(
    "lqr",
    make_lqr,
    "constrained LQR: 2-D point mass to the origin, quadratic cost, |u|<=1 (active), T=50",
)
