"""Inverted pendulum swing-up: `pendulum` (benchmarks.md 1.1; fixed by the project's spec).

A point mass m at the end of a massless rod of length l, torque u at the pivot. State
x = (q, v): q = 0 hangs down, q = pi is upright. Continuous dynamics

    a = (u - m g l sin q) / (m l^2)

integrated by semi-implicit Euler, exactly as crocoddyl's IntegratedActionModelEuler does (so a
native pinocchio/crocoddyl model can reproduce this problem to machine precision):

    v+ = v + dt a,   q+ = q + dt v+

Tip p(q) = (l sin q, -l cos q), target p* = (0, l) (upright). Costs (the paper's form):

    running  = dt * (w_pos/2 ||p - p*||^2 + w_u/2 u^2 + w_vel/2 v^2)
    terminal = w_pos_terminal/2 ||p - p*||^2 + w_vel_terminal/2 v^2

Numbers: m = l = 1, g = 9.81, dt = 0.05, T = 100 (5 s), |u| <= 3 N m. The bound is below
m g l = 9.81 N m, the torque that holds the pendulum horizontal, so from hanging down the pendulum
cannot be lifted directly: it must pump energy over a few swings (the bound is active for most of
the swing-up), and 5 s leave time for that (the linearised period at the bottom is 2 s). Weights
w_pos = 1, w_u = 0.1, w_vel = 0.1, w_pos_terminal = 100, w_vel_terminal = 10: the terminal terms
dominate so that the optimum ends upright and at rest, the running terms make it get there early.
Initial states: q uniform in [-pi, pi], v uniform in [-1, 1] rad/s.

This is the nonconvex problem of the set: from hanging down, a zero-control warm start leaves the
solver in a local minimum below the target; an energy-pumping warm start avoids it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem, nearest_turn, register
from rlto.problems import resolve_config


@dataclasses.dataclass(frozen=True)
class PendulumConfig:
    """Settings of `pendulum`."""

    m: float = 1.0
    """Point mass at the tip (kg)."""
    l: float = 1.0
    """Rod length (m), massless rod."""
    g: float = 9.81
    """Gravity (m/s^2)."""
    dt: float = 0.05
    """Time step (s) of the semi-implicit Euler step."""
    horizon: int = 100
    """T: 5 s at dt = 0.05, room for about two pumping swings."""
    u_max: float = 3.0
    """Torque bound |u| <= u_max (N m), below m g l = 9.81 so the swing-up needs pumping."""
    w_pos: float = 1.0
    """Running weight of ||p - p*||^2 / 2 (times dt)."""
    w_u: float = 0.1
    """Running weight of u^2 / 2 (times dt)."""
    w_vel: float = 0.1
    """Running weight of v^2 / 2 (times dt)."""
    w_pos_terminal: float = 100.0
    """Terminal weight of ||p - p*||^2 / 2."""
    w_vel_terminal: float = 10.0
    """Terminal weight of v^2 / 2."""
    q_range: tuple[float, float] = (-float(np.pi), float(np.pi))
    """Initial angle uniform in this interval (rad); 0 hangs down."""
    v_range: tuple[float, float] = (-1.0, 1.0)
    """Initial angular velocity uniform in this interval (rad/s)."""


def acceleration(q: jax.Array, u: jax.Array, config: PendulumConfig) -> jax.Array:
    """a = (u - m g l sin q) / (m l^2): scalars -> scalar."""
    c = config
    return (u - c.m * c.g * c.l * jnp.sin(q)) / (c.m * c.l**2)


def step(x: jax.Array, u: jax.Array, config: PendulumConfig) -> jax.Array:
    """Semi-implicit Euler: x (2,) = (q, v), u (1,) -> (2,); v+ = v + dt a, q+ = q + dt v+."""
    q, v = x
    v_next = v + config.dt * acceleration(q, u[0], config)
    return jnp.stack([q + config.dt * v_next, v_next])


def tip(x: jax.Array, config: PendulumConfig) -> jax.Array:
    """Tip position p = (l sin q, -l cos q): x (2,) -> (2,)."""
    return config.l * jnp.stack([jnp.sin(x[0]), -jnp.cos(x[0])])


def upright(config: PendulumConfig) -> jax.Array:
    """Target p* = (0, l): -> (2,)."""
    return jnp.array([0.0, config.l])


def energy(x: jax.Array, config: PendulumConfig) -> jax.Array:
    """Mechanical energy m l^2 v^2 / 2 - m g l cos q: x (2,) -> scalar (0 J at rest horizontal)."""
    c = config
    return 0.5 * c.m * c.l**2 * x[1] ** 2 - c.m * c.g * c.l * jnp.cos(x[0])


def energy_pumping_controls(x0: jax.Array, config: PendulumConfig, gain: float = 5.0,
                            catch: float = 0.95) -> jax.Array:
    """A swing-up by hand, x0 (2,) -> controls (T, 1): pump towards the upright's energy
    E* = m g l with u = k (E* - E) sign(v); once near the top (cos q < -catch) hold it with a PD
    law on the angle to upright. Clipped to |u| <= u_max. Only a start for J*'s TO: from zero
    controls DDP ends short of upright on most initial states. With the defaults 95 of the 100
    test states end upright and at rest (mean cost 4.15; TO from there 3.43)."""
    c = config
    inertia = c.m * c.l**2

    def control(x):
        q, v = x
        to_upright = jnp.mod(q, 2 * jnp.pi) - jnp.pi  # angle past upright, in [-pi, pi)
        hold = -inertia * (30.0 * to_upright + 8.0 * v)
        push = gain * (c.m * c.g * c.l - energy(x, c)) * jnp.where(v >= 0, 1.0, -1.0)
        return jnp.clip(jnp.where(jnp.cos(q) < -catch, hold, push), -c.u_max, c.u_max)

    def advance(x, _):
        u = control(x)[None]
        return step(x, u, c), u

    _, us = jax.lax.scan(advance, jnp.asarray(x0), None, length=c.horizon)
    return us


def make_pendulum(config: PendulumConfig = PendulumConfig(), **overrides) -> Problem:
    """The pendulum swing-up; overrides replace config fields, e.g. make_pendulum(u_max=5.0)."""
    config = resolve_config("pendulum", config, overrides)
    c = config

    def dynamics(x, u, t, params):
        return step(x, u, c)

    def running_cost(x, u, t, params):
        d = tip(x, c) - upright(c)
        return c.dt * 0.5 * (c.w_pos * (d @ d) + c.w_u * (u @ u) + c.w_vel * x[1] ** 2)

    def terminal_cost(x, params):
        d = tip(x, c) - upright(c)
        return 0.5 * (c.w_pos_terminal * (d @ d) + c.w_vel_terminal * x[1] ** 2)

    def sample(key, n):
        kq, kv = jax.random.split(key)
        q = jax.random.uniform(kq, (n,), jnp.float64, *c.q_range)
        v = jax.random.uniform(kv, (n,), jnp.float64, *c.v_range)
        return {"x0": jnp.stack([q, v], axis=1)}

    return Problem(
        name="pendulum",
        nx=2,
        nu=1,
        horizon=c.horizon,
        dt=c.dt,
        dynamics=dynamics,
        running_cost=running_cost,
        terminal_cost=terminal_cost,
        u_lower=[-c.u_max],
        u_upper=[c.u_max],
        sample=sample,
        description="pendulum swing-up to upright, |u|<=3 < mgl (needs pumping), T=100, dt=0.05",
        position=lambda x, params: tip(x, c),
        target=lambda params: upright(c),
        angles=(0,),
        heuristic_controls=lambda params: energy_pumping_controls(params["x0"], c),
        goal_state=lambda params: jnp.stack([nearest_turn(jnp.pi, params["x0"][0]),
                                             jnp.zeros_like(params["x0"][1])]),
        config=c,
    )


register(
    "pendulum",
    make_pendulum,
    "pendulum swing-up to upright, |u|<=3 < mgl (needs pumping), T=100, dt=0.05",
)
