"""CACTO's point masses: `single_integrator` and `double_integrator` (benchmarks.md 1.2).

single_integrator: x = p = (px, py), u = velocity, |u_j| <= 6, explicit Euler

    p+ = p + dt u

double_integrator: x = (px, py, vx, vy), u = acceleration, |u_j| <= 2, explicit Euler

    p+ = p + dt v,   v+ = v + dt u

dt = 0.05. Cost: CACTO's shared cost (see rlto.problems.obstacles) on p with target (-7, 0) and the
three ellipses, weights w_d = 100, w_peak = 5e5 (a2 = 5), w_ob = 5e6 (a = 50), w_u = 10, all scaled
by 1e-5 and not multiplied by dt; no terminal velocity term (CACTO's w_v = 0 here).

Horizons: T = 100 (5 s) for the single integrator: at 6 m/s per axis the farthest starts need
about 4 s, going around E1 (22 m of x-travel from (15, 15)) or out of the pocket behind the
obstacles (about 24 m of x-travel from (1, -2)); a slow test checks that the optimum reaches the
target from CACTO's test starts. T = 200 (10 s) for the double integrator: |u| <= 2 m/s^2 needs
time to stop an initial |v| <= 6 m/s. (One version of CACTO's conf_single_integrator.py has
NSTEPS = 200; benchmarks.md fixes 100, kept here.)

Initial states: p uniform in [-15, 15]^2, v uniform in [-6, 6]^2 (double integrator). CACTO also
samples a start time t0 and appends time to the state so that episodes have variable length; here
the state has no time and every OCP runs the fixed horizon from t0 = 0. Variable-horizon episodes
belong to the CACTO algorithm (its own issue), not to the problem.

`hard_region(config)`: CACTO's 16 x 11 grid x in [0, 15], y in [-5, 5] behind the obstacles, zero
velocity, points inside an obstacle dropped.
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
class SingleIntegratorConfig(CactoCostConfig):
    """Settings of `single_integrator` (cost fields: see CactoCostConfig)."""

    dt: float = 0.05
    """Time step (s) of the explicit Euler step."""
    horizon: int = 100
    """T: 5 s, enough to reach the target from any start at |u| <= 6 m/s."""
    u_max: float = 6.0
    """Velocity bound |u_j| <= u_max (m/s)."""
    p_range: float = 15.0
    """Initial positions uniform in [-p_range, p_range]^2 (m)."""


@dataclasses.dataclass(frozen=True)
class DoubleIntegratorConfig(CactoCostConfig):
    """Settings of `double_integrator` (cost fields: see CactoCostConfig)."""

    dt: float = 0.05
    """Time step (s) of the explicit Euler step."""
    horizon: int = 200
    """T: 10 s, time to stop an initial |v| <= 6 m/s at 2 m/s^2 and reach the target."""
    u_max: float = 2.0
    """Acceleration bound |u_j| <= u_max (m/s^2)."""
    p_range: float = 15.0
    """Initial positions uniform in [-p_range, p_range]^2 (m)."""
    v_range: float = 6.0
    """Initial velocities uniform in [-v_range, v_range]^2 (m/s)."""


def single_integrator_step(x: jax.Array, u: jax.Array, dt: float) -> jax.Array:
    """p+ = p + dt u: x (2,), u (2,) -> (2,)."""
    return x + dt * u


def double_integrator_step(x: jax.Array, u: jax.Array, dt: float) -> jax.Array:
    """Explicit Euler p+ = p + dt v, v+ = v + dt u: x (4,) = (p, v), u (2,) -> (4,)."""
    p, v = x[:2], x[2:]
    return jnp.concatenate([p + dt * v, v + dt * u])


def make_single_integrator(
    config: SingleIntegratorConfig = SingleIntegratorConfig(), **overrides
) -> Problem:
    """CACTO's single integrator; overrides replace config fields, e.g. obstacles="constraint"."""
    config = resolve_config("single_integrator", config, overrides)
    r = config.p_range
    return build_cacto_problem(
        name="single_integrator",
        config=config,
        nx=2,
        nu=2,
        horizon=config.horizon,
        dt=config.dt,
        dynamics=lambda x, u, t, params: single_integrator_step(x, u, config.dt),
        position=lambda x: x[:2],
        u_max=(config.u_max, config.u_max),
        sample=uniform_sampler([-r, -r], [r, r]),
        description="CACTO point mass with velocity control around 3 elliptic obstacles to (-7,0)",
    )


def make_double_integrator(
    config: DoubleIntegratorConfig = DoubleIntegratorConfig(), **overrides
) -> Problem:
    """CACTO's double integrator; overrides replace config fields, e.g. obstacles="constraint"."""
    config = resolve_config("double_integrator", config, overrides)
    r, v = config.p_range, config.v_range
    return build_cacto_problem(
        name="double_integrator",
        config=config,
        nx=4,
        nu=2,
        horizon=config.horizon,
        dt=config.dt,
        dynamics=lambda x, u, t, params: double_integrator_step(x, u, config.dt),
        position=lambda x: x[:2],
        u_max=(config.u_max, config.u_max),
        sample=uniform_sampler([-r, -r, -v, -v], [r, r, v, v]),
        description="CACTO point mass with acceleration control around 3 obstacles to (-7,0)",
    )


def hard_region(
    config: SingleIntegratorConfig | DoubleIntegratorConfig = SingleIntegratorConfig(),
) -> np.ndarray:
    """CACTO's hard-region initial states: grid positions outside the obstacles -> (m, nx).

    Positions from `position_grid()`, those inside an ellipse of `config` dropped; velocities
    zero. nx = 2 for a SingleIntegratorConfig, 4 for a DoubleIntegratorConfig (pass
    problem.config).
    """
    return grid_states(config.ellipses, nx=4 if isinstance(config, DoubleIntegratorConfig) else 2)


register(
    "single_integrator",
    make_single_integrator,
    "CACTO point mass, velocity control |u|<=6, 3 elliptic obstacles, target (-7,0), T=100",
)
register(
    "double_integrator",
    make_double_integrator,
    "CACTO point mass, acceleration control |u|<=2, 3 elliptic obstacles, target (-7,0), T=200",
)
