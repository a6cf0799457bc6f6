"""Fully actuated double pendulum swing-up: `double_pendulum` (benchmarks.md 1.1).

Also home of `PlanarChain`, the rigid-body dynamics of a planar serial chain of revolute joints
that manipulator3 shares.

Model: two massless rods with point masses at their ends (m1 at the elbow, m2 at the tip), a
torque at each joint. State x = (q1, q2, v1, v2): q1 is the first link's angle from hanging down,
q2 the second link's angle relative to the first; q = (pi, 0) is upright. Tip

    p(q) = (l1 sin q1 + l2 sin(q1+q2), -l1 cos q1 - l2 cos(q1+q2)),   target p* = (0, l1 + l2).

Dynamics M(q) qdd + C(q, qd) qd + G(q) = tau: M = sum_i m_i J_i^T J_i (+ I_i for rods) with J_i
the planar geometric Jacobian of mass i, and C qd + G = sum_i J_i^T m_i (a_i - g) with a_i the
centripetal acceleration of mass i at qdd = 0 (Newton-Euler; no autodiff, so the solver's
derivatives stay cheap). For point masses this is the textbook closed form (checked in tests,
with C qd also against the Christoffel symbols of M by autodiff):

    M11 = (m1 + m2) l1^2 + m2 l2^2 + 2 m2 l1 l2 cos q2,   M12 = m2 l2^2 + m2 l1 l2 cos q2,
    M22 = m2 l2^2.

Semi-implicit Euler as the pendulum (crocoddyl's IntegratedActionModelEuler), in `substeps`
sub-steps of h = dt / substeps per control step (tau held): v+ = v + h qdd(q, v, tau),
q+ = q + h v+. The method is symplectic only for separable Hamiltonians, and the double
pendulum's mass matrix depends on q2: with one step of 0.05 s, 2 of the 100 test states (tau = 0)
gained energy until the state overflowed within 5 s; with 4 sub-steps none did (|v| <= 15 rad/s).

Costs of the paper's form, as the pendulum, with v the joint velocities:

    running  = dt * (w_pos/2 ||p - p*||^2 + w_u/2 ||tau||^2 + w_vel/2 ||v||^2)
    terminal = w_pos_terminal/2 ||p - p*||^2 + w_vel_terminal/2 ||v||^2

Numbers: m1 = m2 = 1 kg, l1 = l2 = 1 m, g = 9.81; dt = 0.05, T = 100 (5 s); |tau1| <= 20 N m,
|tau2| <= 10 N m. Holding the arm horizontal takes (m1 l1 + m2 (l1 + l2)) g = 29.4 N m at the
shoulder and m2 l2 g = 9.8 N m at the elbow, so the shoulder bound is active and a swing-up from
hanging needs a pumping swing, while 5 s (the slow mode's period hanging is 2.6 s) leave time for
it. Running weights as the pendulum, w_pos = 1, w_u = 0.1, w_vel = 0.1; terminal weights ten times
the pendulum's, w_pos_terminal = 1000, w_vel_terminal = 100: the two-link swing-up accumulates a
larger running cost, and with the pendulum's 100/10 the best solutions from 16 sampled states
ended 2-12 cm from upright, with 1000/100 within 2 cm. The cost sees the tip only, so an upright
tip with a slightly bent elbow is as good as a straight arm. Initial states: q1, q2 uniform in
[-pi, pi], v1, v2 uniform in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem, nearest_turn, register
from rlto.problems import resolve_config


@dataclasses.dataclass(frozen=True)
class PlanarChain:
    """A planar serial chain of revolute joints (joint angles relative, link i's absolute angle
    is q_1 + ... + q_i); links are rigid bodies with mass on the link's axis."""

    lengths: tuple[float, ...]
    """Link lengths l_i (m): joint i+1 (or the tip) sits l_i from joint i."""
    masses: tuple[float, ...]
    """Link masses m_i (kg)."""
    com: tuple[float, ...]
    """Distance of link i's centre of mass from joint i (m): l_i for a point mass at the end,
    l_i / 2 for a rod."""
    inertia: tuple[float, ...]
    """Rotational inertia of link i about its centre of mass (kg m^2): 0 for a point mass."""
    gravity: tuple[float, float] = (0.0, 0.0)
    """Gravity acceleration vector in the plane (m/s^2), e.g. (0, -9.81)."""
    base: tuple[float, float] = (0.0, 0.0)
    """Position of the first joint (m)."""
    angle_offset: float = 0.0
    """Direction of a link at zero absolute angle: (cos, sin) of it; -pi/2 points down."""


# Compiled per chain (a frozen, hashable dataclass): one XLA program per function instead of
# dozens of op-by-op compilations when called outside jit (problem validation, tests); inside
# an outer jit these inline as usual.
_jit_chain = functools.partial(jax.jit, static_argnames="chain")


@_jit_chain
def link_directions(q: jax.Array, chain: PlanarChain) -> jax.Array:
    """Unit vector along each link: q (n,) -> (n, 2)."""
    phi = jnp.cumsum(q)
    if chain.angle_offset == -np.pi / 2:  # exact zeros at q = 0 and pi for the pendulums
        return jnp.stack([jnp.sin(phi), -jnp.cos(phi)], axis=1)
    phi = phi + chain.angle_offset
    return jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=1)


@_jit_chain
def joint_positions(q: jax.Array, chain: PlanarChain) -> jax.Array:
    """Base, joints and tip: q (n,) -> (n+1, 2); the last row is the end effector."""
    base = jnp.asarray(chain.base, q.dtype)
    steps = jnp.asarray(chain.lengths, q.dtype)[:, None] * link_directions(q, chain)
    return jnp.concatenate([base[None], base + jnp.cumsum(steps, axis=0)])


@_jit_chain
def com_positions(q: jax.Array, chain: PlanarChain) -> jax.Array:
    """Centre of mass of each link: q (n,) -> (n, 2)."""
    joints = joint_positions(q, chain)[:-1]
    return joints + jnp.asarray(chain.com, q.dtype)[:, None] * link_directions(q, chain)


@_jit_chain
def com_jacobians(q: jax.Array, chain: PlanarChain) -> jax.Array:
    """Jacobians of the links' centres of mass: q (n,) -> (n, 2, n), [i, :, k] = dc_i / dq_k.

    Planar revolute joints: column k is the vector from joint k to c_i turned by +90 degrees,
    for k <= i, and zero for k > i.
    """
    n = q.shape[0]
    r = com_positions(q, chain)[:, None, :] - joint_positions(q, chain)[None, :-1, :]  # (i, k, 2)
    lower = jnp.tril(jnp.ones((n, n), q.dtype))
    turned = jnp.stack([-r[..., 1], r[..., 0]], axis=-1) * lower[..., None]
    return jnp.transpose(turned, (0, 2, 1))


@_jit_chain
def mass_matrix(q: jax.Array, chain: PlanarChain) -> jax.Array:
    """M(q) = sum_i m_i J_i^T J_i + I_i w_i w_i^T: q (n,) -> (n, n), symmetric positive definite.

    J_i (2, n) is the Jacobian of link i's centre of mass (`com_jacobians`), w_i = (1, .., 1, 0,
    .., 0) (i ones) the map from joint velocities to link i's angular velocity.
    """
    n = q.shape[0]
    jac = com_jacobians(q, chain)  # (n, 2, n)
    w = jnp.tril(jnp.ones((n, n), q.dtype))  # row i: ones up to joint i
    masses = jnp.asarray(chain.masses, q.dtype)
    inertia = jnp.asarray(chain.inertia, q.dtype)
    translational = jnp.einsum("i,iak,ial->kl", masses, jac, jac)
    rotational = jnp.einsum("i,ik,il->kl", inertia, w, w)
    return translational + rotational


@_jit_chain
def potential_energy(q: jax.Array, chain: PlanarChain) -> jax.Array:
    """V(q) = -sum_i m_i g . c_i(q): q (n,) -> scalar."""
    heights = com_positions(q, chain) @ jnp.asarray(chain.gravity, q.dtype)
    return -jnp.sum(jnp.asarray(chain.masses, q.dtype) * heights)


@_jit_chain
def kinetic_energy(q: jax.Array, qd: jax.Array, chain: PlanarChain) -> jax.Array:
    """qd' M(q) qd / 2: q, qd (n,) -> scalar."""
    return 0.5 * qd @ mass_matrix(q, chain) @ qd


@_jit_chain
def bias_forces(q: jax.Array, qd: jax.Array, chain: PlanarChain) -> jax.Array:
    """C(q, qd) qd + G(q) = sum_i J_i' m_i (a_i - g): q, qd (n,) -> (n,).

    a_i = (dJ_i/dt) qd is the acceleration of link i's centre of mass when qdd = 0. In the plane
    it is purely centripetal, a_i = -(sum_{k<i} l_k w_k^2 d_k + com_i w_i^2 d_i) with w = cumsum(qd)
    the links' angular velocities and d_k their directions, and the links' rotational inertia adds
    no bias (no gyroscopic term in 2-D). Equal to the Christoffel form of M (checked in tests).
    """
    omega2 = jnp.cumsum(qd) ** 2
    d = link_directions(q, chain)
    full = jnp.asarray(chain.lengths, q.dtype)[:, None] * omega2[:, None] * d  # (n, 2)
    com = jnp.asarray(chain.com, q.dtype)
    acc = -(jnp.cumsum(full, axis=0) - full + com[:, None] * omega2[:, None] * d)
    jac = com_jacobians(q, chain)
    masses = jnp.asarray(chain.masses, q.dtype)
    return jnp.einsum("i,iak,ia->k", masses, jac, acc - jnp.asarray(chain.gravity, q.dtype))


@_jit_chain
def forward_dynamics(q: jax.Array, qd: jax.Array, tau: jax.Array, chain: PlanarChain) -> jax.Array:
    """qdd = M(q)^-1 (tau - C(q, qd) qd - G(q)): q, qd, tau (n,) -> (n,)."""
    return jnp.linalg.solve(mass_matrix(q, chain), tau - bias_forces(q, qd, chain))


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DoublePendulumConfig:
    """Settings of `double_pendulum` (point masses at the link ends, massless rods)."""

    m1: float = 1.0
    """Point mass at the elbow (kg)."""
    m2: float = 1.0
    """Point mass at the tip (kg)."""
    l1: float = 1.0
    """First link length (m)."""
    l2: float = 1.0
    """Second link length (m)."""
    g: float = 9.81
    """Gravity (m/s^2), along -y."""
    dt: float = 0.05
    """Control time step (s)."""
    substeps: int = 4
    """Semi-implicit Euler sub-steps per control step (see the module docstring: one step of
    0.05 s lets a passive rollout blow up)."""
    horizon: int = 100
    """T: 5 s at dt = 0.05."""
    u_max: tuple[float, float] = (20.0, 10.0)
    """Torque bounds |tau_j| <= u_max[j] (N m): shoulder below the 29.4 N m holding torque."""
    w_pos: float = 1.0
    """Running weight of ||p - p*||^2 / 2 (times dt)."""
    w_u: float = 0.1
    """Running weight of ||tau||^2 / 2 (times dt)."""
    w_vel: float = 0.1
    """Running weight of ||v||^2 / 2 (times dt)."""
    w_pos_terminal: float = 1000.0
    """Terminal weight of ||p - p*||^2 / 2 (10x the pendulum's, see the module docstring)."""
    w_vel_terminal: float = 100.0
    """Terminal weight of ||v||^2 / 2 (10x the pendulum's)."""
    q_range: tuple[float, float] = (-float(np.pi), float(np.pi))
    """Initial joint angles uniform in this interval (rad), each joint."""
    v_range: tuple[float, float] = (-1.0, 1.0)
    """Initial joint velocities uniform in this interval (rad/s), each joint."""


def chain_of(config: DoublePendulumConfig) -> PlanarChain:
    """The double pendulum as a PlanarChain: point masses at the link ends, hanging along -y."""
    return PlanarChain(
        lengths=(config.l1, config.l2),
        masses=(config.m1, config.m2),
        com=(config.l1, config.l2),
        inertia=(0.0, 0.0),
        gravity=(0.0, -config.g),
        angle_offset=-np.pi / 2,
    )


def upright_state(x0: jax.Array) -> jax.Array:
    """The upright state at rest nearest to x0 (4,): q = (pi, 0) up to whole turns, v = 0."""
    q = nearest_turn(jnp.array([jnp.pi, 0.0]), x0[:2])
    return jnp.concatenate([q, jnp.zeros_like(x0[2:])])


def make_double_pendulum(config: DoublePendulumConfig = DoublePendulumConfig(), **overrides):
    """The double pendulum swing-up; overrides replace config fields."""
    config = resolve_config("double_pendulum", config, overrides)
    c = config
    chain = chain_of(c)
    target = jnp.array([0.0, c.l1 + c.l2])

    def tip(x):
        return joint_positions(x[:2], chain)[-1]

    h = c.dt / c.substeps

    def substep(_, carry):
        # The chain computes in the state's precision, and so must the torque: the loop's carry
        # may not change type (a float32 closed-loop rollout stays float32).
        x, u = carry
        q, v = x[:2], x[2:]
        v = v + h * forward_dynamics(q, v, u.astype(x.dtype), chain)
        return jnp.concatenate([q + h * v, v]), u

    def dynamics(x, u, t, params):
        # A rolled loop: with the sub-steps unrolled, rlto.solve on 256 instances never returned
        # (XLA's CPU runtime idle in a futex wait; 128 instances, or one sub-step, were fine).
        # One body function per problem, so that eager calls reuse its compiled loop.
        return jax.lax.fori_loop(0, c.substeps, substep, (x, u))[0]

    def running_cost(x, u, t, params):
        d = tip(x) - target
        v = x[2:]
        return c.dt * 0.5 * (c.w_pos * (d @ d) + c.w_u * (u @ u) + c.w_vel * (v @ v))

    def terminal_cost(x, params):
        d = tip(x) - target
        v = x[2:]
        return 0.5 * (c.w_pos_terminal * (d @ d) + c.w_vel_terminal * (v @ v))

    def sample(key, n):
        kq, kv = jax.random.split(key)
        q = jax.random.uniform(kq, (n, 2), jnp.float64, *c.q_range)
        v = jax.random.uniform(kv, (n, 2), jnp.float64, *c.v_range)
        return {"x0": jnp.concatenate([q, v], axis=1)}

    u_max = np.asarray(c.u_max, dtype=np.float64)
    return Problem(
        name="double_pendulum",
        nx=4,
        nu=2,
        horizon=c.horizon,
        dt=c.dt,
        dynamics=dynamics,
        running_cost=running_cost,
        terminal_cost=terminal_cost,
        u_lower=-u_max,
        u_upper=u_max,
        sample=sample,
        description="fully actuated double pendulum swing-up, |tau|<=(20,10), T=100, dt=0.05",
        position=lambda x, params: tip(x),
        target=lambda params: target,
        angles=(0, 1),
        goal_state=lambda params: upright_state(params["x0"]),
        config=c,
    )


register(
    "double_pendulum",
    make_double_pendulum,
    "fully actuated double pendulum swing-up, |tau|<=(20,10), T=100, dt=0.05",
)
