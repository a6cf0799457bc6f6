"""CACTO's 3-joint planar arm: `manipulator3` (benchmarks.md 1.2).

Three revolute joints about z, base at (-7, 0), links of l = 10 m and 0.5 kg as rods with the
centre of mass mid-link and rotational inertia 50/3 kg m^2 about it: these are the numbers of
CACTO's URDF (planar_manipulator_3dof.urdf, izz = 16.667 at the COM; that is m l^2/3, what a
uniform rod has about its end, not the m l^2/12 = 4.17 about its centre, kept to match CACTO).
The joint axes are vertical, so the arm moves in a horizontal plane and gravity does no work:
no gravity term. State x = (q1, q2, q3, qd1, qd2, qd3), q relative joint angles, q = 0 stretched
along +x. End effector

    p(q) = base + l sum_i (cos phi_i, sin phi_i),   phi_i = q_1 + .. + q_i.

Dynamics M(q) qdd + C(q, qd) qd = tau, M from the links' COM Jacobians and inertias, C qd from the
Christoffel symbols of M (rlto.problems.double_pendulum.PlanarChain, autodiff). Explicit Euler, as
CACTO's 'E-Euler' integration scheme, dt = 0.05:

    q+ = q + dt qd,   qd+ = qd + dt qdd(q, qd, tau)

Torques |tau_j| <= 200 N m, T = 100 (5 s). Cost: CACTO's shared cost (rlto.problems.obstacles) on
the end effector with target (-20, 0) (params["target"] (n, 2) overrides it when given), weights
w_d = 100, w_peak = 5e5 with a2 = 50, w_ob = 5e6 (a = 50), w_u = 1, and the terminal
w_v ||qd||^2 with w_v = 1e4; all scaled by 1e-5 and not multiplied by dt. (CACTO's reward also
adds a constant 1e4/w_v to the terminal velocity term; a constant changes no optimum, dropped.)

Initial states uniform: q in [-pi, pi]^3, qd in [-pi/4, pi/4]^3. No time in the state: the OCP
runs the fixed horizon from t0 = 0 (variable start times belong to the CACTO algorithm).

`hard_region(config)`: a 16 x 16 grid of end-effector positions x in linspace(-7, 23),
y in linspace(-15, 15), those farther than 30 m (the reach) from the base dropped, mapped to joint
angles by inverse kinematics with the last link pointing away from the base and the elbow's
q2 >= 0; zero velocities.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem, register
from rlto.problems import resolve_config
from rlto.problems.double_pendulum import PlanarChain, forward_dynamics, joint_positions
from rlto.problems.obstacles import CactoCostConfig, build_cacto_problem, uniform_sampler


@dataclasses.dataclass(frozen=True)
class Manipulator3Config(CactoCostConfig):
    """Settings of `manipulator3` (cost fields: see CactoCostConfig)."""

    target: tuple[float, float] = (-20.0, 0.0)
    """Default end-effector target (m); params["target"] (n, 2) overrides it when present."""
    peak_sharpness: float = 50.0
    """a2: CACTO's arm uses a sharper valley than the point tasks."""
    w_u: float = 1.0
    """Weight of ||tau||^2 in the running cost (before `cost_scale`)."""
    w_v: float = 1e4
    """Weight of the terminal ||qd||^2 (before `cost_scale`)."""
    dt: float = 0.05
    """Time step (s) of the explicit Euler step."""
    horizon: int = 100
    """T: 5 s."""
    u_max: float = 200.0
    """Torque bound |tau_j| <= u_max (N m)."""
    base: tuple[float, float] = (-7.0, 0.0)
    """Position of the first joint (m)."""
    link_length: float = 10.0
    """Length of each of the three links (m)."""
    link_mass: float = 0.5
    """Mass of each link (kg), centre of mass mid-link."""
    link_inertia: float = 50.0 / 3.0
    """Rotational inertia of each link about its centre of mass (kg m^2), CACTO's URDF value."""
    q_range: float = float(np.pi)
    """Initial joint angles uniform in [-q_range, q_range] (rad)."""
    qd_range: float = float(np.pi / 4)
    """Initial joint velocities uniform in [-qd_range, qd_range] (rad/s)."""


def chain_of(config: Manipulator3Config) -> PlanarChain:
    """The arm as a PlanarChain: three rods in the horizontal plane (no gravity)."""
    n = 3
    return PlanarChain(
        lengths=(config.link_length,) * n,
        masses=(config.link_mass,) * n,
        com=(config.link_length / 2,) * n,
        inertia=(config.link_inertia,) * n,
        gravity=(0.0, 0.0),
        base=config.base,
        angle_offset=0.0,
    )


def make_manipulator3(config: Manipulator3Config = Manipulator3Config(), **overrides) -> Problem:
    """CACTO's planar arm; overrides replace config fields, e.g. obstacles="constraint"."""
    config = resolve_config("manipulator3", config, overrides)
    chain = chain_of(config)
    dt = config.dt

    def dynamics(x, u, t, params):
        q, qd = x[:3], x[3:]
        return jnp.concatenate([q + dt * qd, qd + dt * forward_dynamics(q, qd, u, chain)])

    qr, vr = config.q_range, config.qd_range
    return build_cacto_problem(
        name="manipulator3",
        config=config,
        nx=6,
        nu=3,
        horizon=config.horizon,
        dt=dt,
        dynamics=dynamics,
        position=lambda x: joint_positions(x[:3], chain)[-1],
        velocity=lambda x: x[3:],
        u_max=(config.u_max,) * 3,
        sample=uniform_sampler([-qr] * 3 + [-vr] * 3, [qr] * 3 + [vr] * 3),
        description="CACTO 3-link planar arm (horizontal, |tau|<=200), 3 obstacles, EE to (-20,0)",
        angles=(0, 1, 2),  # revolute joints: q and q + 2 pi are the same arm
    )


def inverse_kinematics(points: np.ndarray, config: Manipulator3Config = Manipulator3Config()):
    """Joint angles reaching each end-effector point: points (m, 2) -> q (m, 3) (NumPy).

    The last link points away from the base (along the base-to-point direction), the first two
    solve the two-link problem for the wrist with elbow angle q2 >= 0. Angles wrapped to
    [-pi, pi). Points must be within the reach 3 l of the base.
    """
    points = np.asarray(points, dtype=np.float64)
    length = config.link_length
    rel = points - np.asarray(config.base)
    psi = np.arctan2(rel[:, 1], rel[:, 0])
    wrist = rel - length * np.stack([np.cos(psi), np.sin(psi)], axis=1)
    d2 = np.sum(wrist**2, axis=1)
    cos_q2 = np.clip((d2 - 2 * length**2) / (2 * length**2), -1.0, 1.0)
    q2 = np.arccos(cos_q2)
    q1 = np.arctan2(wrist[:, 1], wrist[:, 0]) - np.arctan2(
        length * np.sin(q2), length + length * np.cos(q2)
    )
    q3 = psi - q1 - q2
    q = np.stack([q1, q2, q3], axis=1)
    return (q + np.pi) % (2 * np.pi) - np.pi


def hard_region(config: Manipulator3Config = Manipulator3Config()) -> np.ndarray:
    """CACTO's hard-region initial states of the arm -> (m, 6), zero velocities.

    End-effector grid x in linspace(-7, 23, 16), y in linspace(-15, 15, 16) (x-major), points
    farther than 30 m (3 link lengths) from the base dropped, joints by `inverse_kinematics`.
    """
    xs, ys = np.meshgrid(np.linspace(-7.0, 23.0, 16), np.linspace(-15.0, 15.0, 16), indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    reach = 3 * config.link_length
    points = points[np.linalg.norm(points - np.asarray(config.base), axis=1) <= reach]
    states = np.zeros((points.shape[0], 6))
    states[:, :3] = inverse_kinematics(points, config)
    return states


register(
    "manipulator3",
    make_manipulator3,
    "CACTO 3-link planar arm, |tau|<=200, 3 elliptic obstacles, end effector to (-20,0), T=100",
)
