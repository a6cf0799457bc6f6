"""UR5 end-effector reaching: `ur5` (benchmarks.md 1.1; seed 002's headline task).

Robot: the UR5 arm of example-robot-data (ur_description/urdf/ur5_robot.urdf), fixed base,
six revolute joints, loaded by rlto.robots (checked against Pinocchio to 1e-9). State
x = (q, v) (12,), control u = joint torques (6,), bounded by the URDF's effort limits
|tau| <= (150, 150, 150, 28, 28, 28) N m. Semi-implicit Euler at dt = 0.01 s (crocoddyl's
IntegratedActionModelEuler, the anchor of benchmarks.md: UR5 reach, dt = 0.01, T = 100),
T = 100 (1 s):

    v+ = v + dt qdd(q, v, tau),   q+ = q + dt v+

Task: the origin of frame "tool0" (the flange), p(q), to a target p* in the world frame. Cost of
the paper's form, only joint velocities in the state term:

    running  = dt * (w_pos/2 ||p - p*||^2 + w_u/2 ||tau||^2 + w_vel/2 ||v||^2)
    terminal = w_pos_terminal/2 ||p - p*||^2 + w_vel_terminal/2 ||v||^2

Numbers (chosen here; the paper gives none): w_pos = 10, w_u = 1e-3, w_vel = 0.1,
w_pos_terminal = 1e4, w_vel_terminal = 10. Why: holding the arm against gravity takes up to
about 60 N m at the shoulder (16 N m at home), so the torque term costs O(1) over 1 s at
w_u = 1e-3 and does not compete with reaching; a 1 cm terminal miss costs 0.5 at
w_pos_terminal = 1e4, so the optimum ends millimetres from the target (checked in
tests/test_robots.py); w_vel_terminal asks it to arrive nearly at rest.

beta = (x0, target). Initial joints q0 = q_home + U(-0.5, 0.5)^6 rad around the "home" pose
q_home = (0, -pi/2, pi/2, -pi/2, -pi/2, 0) (flange at (0.49, 0.11, 0.43) m), v0 = U(-0.5, 0.5)^6
rad/s; target uniform in the box x in [0.3, 0.6], y in [-0.15, 0.35], z in [0.2, 0.5] m in front
of the robot, all within 0.3-0.8 m of the shoulder (the UR5 reaches 0.85 m), so reachable.
Solves without a warm start begin from a reach (Problem.initial_controls): the joints that put
the flange on the target by damped-least-squares IK from q0, a quintic in time from (q0, v0) to
them at rest within reach_time, and the torques that make the Euler step follow it exactly
(Robot.path_torques), clipped to the limits. DDP from there converges in about 6 iterations to
smooth motions (joint speeds about 1 rad/s, within the URDF's 3.15 rad/s limit). From gravity
compensation g(q0), the previous start, it settles in far worse optima: on 32 instances mean
cost 3.55 against 0.41, the shoulder and elbow swinging 2-3 rad at up to 5.6 rad/s, motions no
policy learned to follow (measured by a `/tmp` script). reach_time barely matters
(0.4-1.0 s give the same optima). No joint position limits enter the OCP (the URDF's are
+-2 pi, +-pi for the elbow); all joints are angles for the policy's input.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem, register
from rlto.problems import resolve_config
from rlto.robots import load_robot

HOME = (0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0)
"""UR5 'home' joint angles (rad): elbow up, flange pointing down, in front of the base."""


@dataclasses.dataclass(frozen=True)
class UR5Config:
    """Settings of `ur5`."""

    urdf: str = "ur5"
    """rlto.robots.load_robot argument: the example-robot-data UR5, or a path to a UR5 URDF."""
    frame: str = "tool0"
    """End-effector frame whose origin is p(q)."""
    dt: float = 0.01
    """Time step (s) of the semi-implicit Euler step."""
    horizon: int = 100
    """T: 1 s at dt = 0.01."""
    w_pos: float = 10.0
    """Running weight of ||p - p*||^2 / 2 (times dt)."""
    w_u: float = 1e-3
    """Running weight of ||tau||^2 / 2 (times dt)."""
    w_vel: float = 0.1
    """Running weight of ||v||^2 / 2 (times dt)."""
    w_pos_terminal: float = 1e4
    """Terminal weight of ||p - p*||^2 / 2: a 1 cm miss costs 0.5."""
    w_vel_terminal: float = 10.0
    """Terminal weight of ||v||^2 / 2."""
    q_home: tuple[float, ...] = HOME
    """Centre of the initial joint angles (rad)."""
    q_spread: float = 0.5
    """Initial joint angles uniform in q_home +- q_spread (rad)."""
    v_spread: float = 0.5
    """Initial joint velocities uniform in +- v_spread (rad/s)."""
    target_low: tuple[float, float, float] = (0.3, -0.15, 0.2)
    """Lower corner of the target box (m, world frame)."""
    target_high: tuple[float, float, float] = (0.6, 0.35, 0.5)
    """Upper corner of the target box (m, world frame)."""
    reach_time: float = 0.5
    """Duration (s) of the default start's joint motion from q0 to the IK solution."""


def make_ur5(config: UR5Config = UR5Config(), **overrides) -> Problem:
    """UR5 reaching a sampled target; overrides replace config fields, e.g. horizon=50."""
    c = resolve_config("ur5", config, overrides)
    robot = load_robot(c.urdf)
    robot.frame_position(jnp.zeros(robot.nv), c.frame)  # an unknown frame raises here
    nv = robot.nv

    def position(x, params):
        return robot.frame_position(x[:nv], c.frame)

    def dynamics(x, u, t, params):
        return robot.step(x, u, c.dt)

    def dynamics_jacobians(x, u, t, params):
        return robot.step_jacobians(x, u, c.dt)

    def running_cost(x, u, t, params):
        d = position(x, params) - params["target"]
        v = x[nv:]
        return c.dt * 0.5 * (c.w_pos * (d @ d) + c.w_u * (u @ u) + c.w_vel * (v @ v))

    def terminal_cost(x, params):
        d = position(x, params) - params["target"]
        v = x[nv:]
        return 0.5 * (c.w_pos_terminal * (d @ d) + c.w_vel_terminal * (v @ v))

    def sample(key, n):
        kq, kv, kt = jax.random.split(key, 3)
        q = jnp.asarray(c.q_home) + jax.random.uniform(
            kq, (n, nv), jnp.float64, -c.q_spread, c.q_spread
        )
        v = jax.random.uniform(kv, (n, nv), jnp.float64, -c.v_spread, c.v_spread)
        target = jax.random.uniform(
            kt, (n, 3), jnp.float64, jnp.asarray(c.target_low), jnp.asarray(c.target_high)
        )
        return {"x0": jnp.concatenate([q, v], axis=1), "target": target}

    def reach(params):
        """The default start (T, nv): torques that follow a quintic joint path from (q0, v0) to
        the IK solution for the target, arriving at rest at reach_time and held there."""
        q0, v0 = params["x0"][:nv], params["x0"][nv:]
        q_goal = robot.inverse_kinematics(q0, c.frame, params["target"])
        s = jnp.clip(jnp.arange(c.horizon + 1) * c.dt / c.reach_time, 0.0, 1.0)[:, None]
        # q(s) = q0 + w s + a3 s^3 + a4 s^4 + a5 s^5 on s in [0, 1]: q'(0) = w = v0 reach_time,
        # q''(0) = 0, and q(1) = q_goal with q'(1) = q''(1) = 0.
        d, w = q_goal - q0, v0 * c.reach_time
        a3, a4, a5 = 10 * d - 6 * w, -15 * d + 8 * w, 6 * d - 3 * w
        qs = q0 + w * s + a3 * s**3 + a4 * s**4 + a5 * s**5
        return robot.path_torques(qs, v0, c.dt)

    limit = np.asarray(robot.effort_limit, dtype=np.float64)
    description = "UR5 (URDF) flange to a sampled target, URDF torque limits, T=100, dt=0.01"
    return Problem(
        name="ur5",
        nx=2 * nv,
        nu=nv,
        horizon=c.horizon,
        dt=c.dt,
        dynamics=dynamics,
        running_cost=running_cost,
        terminal_cost=terminal_cost,
        u_lower=-limit,
        u_upper=limit,
        sample=sample,
        description=description,
        position=position,
        target=lambda params: params["target"],
        angles=tuple(range(nv)),
        initial_controls=reach,
        dynamics_jacobians=dynamics_jacobians,
        config=c,
    )


register(
    "ur5",
    make_ur5,
    "UR5 (URDF) flange to a sampled target, URDF torque limits |tau|<=(150,150,150,28,28,28)",
)
