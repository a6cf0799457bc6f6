"""CACTO's car: `car` (benchmarks.md 1.2).

State x = (px, py, theta, v, a): position, heading, speed along the heading, acceleration.
Control u = (omega, jerk), |omega| <= 2 rad/s, |jerk| <= 1 m/s^3. Explicit Euler with the
position's second-order term, dt = 0.05:

    px+    = px + dt v cos(theta) + dt^2 a cos(theta) / 2
    py+    = py + dt v sin(theta) + dt^2 a sin(theta) / 2
    theta+ = theta + dt omega
    v+     = v + dt a
    a+     = a + dt jerk

Cost: CACTO's shared cost (rlto.problems.obstacles) on p = (px, py), target (-7, 0), weights
w_d = 100, w_peak = 5e5 (a2 = 5), w_ob = 1e6 (a = 50; benchmarks.md's figure for the car, where
one version of CACTO's conf_car.py has 5e6), w_u = 10; all scaled by 1e-5 and not multiplied by
dt; no terminal velocity term.

T = 200 (10 s): with a jerk of at most 1 m/s^3 the car needs seconds to change its acceleration,
so the horizon is the longest of the point tasks. Initial states uniform: px, py in [-15, 15],
theta in [-pi, pi], v in [-10, 10], a in [-3, 3]. Stopping from the fastest of these starts takes
more than 8 s (v = 10 m/s, a = 3 m/s^2, braking builds up at 1 m/s^3), so from such starts the
optimum may pass by the target rather than rest on it; the cost still ranks the trajectories, and
the well-posedness checks start at rest (CACTO's own test states).

No time in the state: every OCP runs the fixed horizon from t0 = 0 (CACTO's variable start time
belongs to the CACTO algorithm). `hard_region(config)`: the 16 x 11 grid x in [0, 15],
y in [-5, 5], theta = v = a = 0, points inside an obstacle dropped.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem, register
from rlto.problems import resolve_config
from rlto.problems.obstacles import (
    CactoCostConfig,
    build_cacto_problem,
    grid_states,
    uniform_sampler,
)


@dataclasses.dataclass(frozen=True)
class CarConfig(CactoCostConfig):
    """Settings of `car` (cost fields: see CactoCostConfig)."""

    w_ob: float = 1e6
    """Weight of each obstacle's softplus penalty (benchmarks.md's value for the car)."""
    dt: float = 0.05
    """Time step (s) of the explicit Euler step."""
    horizon: int = 200
    """T: 10 s."""
    omega_max: float = 2.0
    """Turn-rate bound |omega| <= omega_max (rad/s)."""
    jerk_max: float = 1.0
    """Jerk bound |jerk| <= jerk_max (m/s^3)."""
    p_range: float = 15.0
    """Initial positions uniform in [-p_range, p_range]^2 (m)."""
    v_range: float = 10.0
    """Initial speed uniform in [-v_range, v_range] (m/s)."""
    a_range: float = 3.0
    """Initial acceleration uniform in [-a_range, a_range] (m/s^2)."""


def car_step(x: jax.Array, u: jax.Array, dt: float) -> jax.Array:
    """One explicit Euler step of the car: x (5,) = (px, py, theta, v, a), u (2,) -> (5,)."""
    px, py, theta, v, a = x
    omega, jerk = u
    travel = dt * v + 0.5 * dt**2 * a
    return jnp.stack(
        [
            px + travel * jnp.cos(theta),
            py + travel * jnp.sin(theta),
            theta + dt * omega,
            v + dt * a,
            a + dt * jerk,
        ]
    )


def make_car(config: CarConfig = CarConfig(), **overrides) -> Problem:
    """CACTO's car; overrides replace config fields, e.g. obstacles="constraint"."""
    config = resolve_config("car", config, overrides)
    r, v, a = config.p_range, config.v_range, config.a_range
    return build_cacto_problem(
        name="car",
        config=config,
        nx=5,
        nu=2,
        horizon=config.horizon,
        dt=config.dt,
        dynamics=lambda x, u, t, params: car_step(x, u, config.dt),
        position=lambda x: x[:2],
        u_max=(config.omega_max, config.jerk_max),
        sample=uniform_sampler([-r, -r, -np.pi, -v, -a], [r, r, np.pi, v, a]),
        description="CACTO car (turn rate, jerk) around 3 elliptic obstacles to (-7,0), T=200",
        angles=(2,),  # the heading: theta and theta + 2 pi are one state to a policy or critic
    )


def hard_region(config: CarConfig = CarConfig()) -> np.ndarray:
    """CACTO's hard-region initial states of the car -> (m, 5): grid positions at rest.

    Positions from `position_grid()`, those inside an ellipse of `config` dropped; theta, v, a = 0.
    """
    return grid_states(config.ellipses, nx=5)


register(
    "car",
    make_car,
    "CACTO car, controls (turn rate<=2, jerk<=1), 3 elliptic obstacles, target (-7,0), T=200",
)
