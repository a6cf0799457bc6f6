"""Crocoddyl as the reference solver: the oracle for optimal costs and the anchor for speed.

Tests and benchmarks use this module; the library core never imports it (crocoddyl and pinocchio
are only needed here). Three kinds of crocoddyl action models solve a Problem's instances:

- ``models="jax"``: `JaxActionModel`, a Python action model over the Problem's own JAX functions
  (any Problem). Exact derivatives; one jitted call per calc and per calcDiff.
- ``models="numpy"``: hand-written NumPy action models with hand-derived derivatives, the fair
  "Python action model" anchor for speed (``pendulum``, ``double_integrator``).
- ``models="native"``: crocoddyl's own C++ models over a Pinocchio model (``pendulum``, built
  in code; ``ur5``, from the same URDF as the problem): the fastest crocoddyl can be.

`solve_crocoddyl` solves n instances one after another with `crocoddyl.SolverBoxFDDP`.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import crocoddyl
import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Problem
from rlto.solver.ddp import default_controls

MODEL_KINDS = ("jax", "numpy", "native")
"""Values of the ``models`` argument of `crocoddyl_problem` and `solve_crocoddyl`."""

DEFAULT_TH_STOP = 1e-9
"""Default stopping threshold of `solve_crocoddyl`: crocoddyl's |d1 + d2/2| (expected decrease of
the cost at a full step). SolverBoxFDDP's own default is 5e-5; 1e-9 converges to ~1e-9 in cost."""


# ---------------------------------------------------------------------------------------------
# JAX-backed Python action model (any Problem).


class _JaxFunctions:
    """The jitted, packed evaluations of one Problem that `JaxActionModel` calls.

    Each returns one flat float64 vector so that a calc or calcDiff costs one dispatch and one
    device-to-host conversion. Time step t and the instance's params are traced arguments, so
    the functions compile once per Problem (and shapes of params), not per instance or node.
    """

    def __init__(self, problem: Problem):
        nx, nu = problem.nx, problem.nu

        def running_calc(x, u, t, params):
            xnext = problem.dynamics(x, u, t, params)
            cost = problem.running_cost(x, u, t, params)
            return jnp.concatenate([xnext, jnp.reshape(cost, (1,))])

        def running_diff(x, u, t, params):
            _, Fx, Fu = problem.linearized_dynamics(x, u, t, params)

            def cost_z(z):
                return problem.running_cost(z[:nx], z[nx:], t, params)

            z = jnp.concatenate([x, u])
            grad = jax.grad(cost_z)(z)
            hess = jax.hessian(cost_z)(z)
            return jnp.concatenate(
                [
                    Fx.ravel(),
                    Fu.ravel(),
                    grad,
                    hess[:nx, :nx].ravel(),
                    hess[nx:, nx:].ravel(),
                    hess[:nx, nx:].ravel(),
                ]
            )

        def terminal_calc(x, params):
            return jnp.reshape(problem.terminal_cost(x, params), (1,))

        def terminal_diff(x, params):
            grad = jax.grad(problem.terminal_cost)(x, params)
            hess = jax.hessian(problem.terminal_cost)(x, params)
            return jnp.concatenate([grad, hess.ravel()])

        self.running_calc = jax.jit(running_calc)
        self.running_diff = jax.jit(running_diff)
        self.terminal_calc = jax.jit(terminal_calc)
        self.terminal_diff = jax.jit(terminal_diff)
        # Offsets into running_diff's packed output.
        sizes = [nx * nx, nx * nu, nx + nu, nx * nx, nu * nu, nx * nu]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()


_JAX_FUNCTIONS: weakref.WeakKeyDictionary[Problem, _JaxFunctions] = weakref.WeakKeyDictionary()


def _jax_functions(problem: Problem) -> _JaxFunctions:
    fns = _JAX_FUNCTIONS.get(problem)
    if fns is None:
        fns = _JAX_FUNCTIONS[problem] = _JaxFunctions(problem)
    return fns


class JaxActionModel(crocoddyl.ActionModelAbstract):
    """A crocoddyl action model over a Problem's JAX functions, for one instance and one step.

    Running node (``t`` an integer): ``calc`` gives xnext = dynamics(x, u, t, params) and cost =
    running_cost(x, u, t, params); ``calcDiff`` gives Fx, Fu (forward-mode Jacobians) and the
    exact gradient and Hessian blocks Lx, Lu, Lxx, Luu, Lxu of the running cost.
    Terminal node (``t=None``): cost = terminal_cost(x, params), Lx, Lxx; xnext = x. It keeps
    nu = problem.nu (crocoddyl then calls ``calc(data, x)`` without u, as for its own models).

    Control bounds come from problem.u_lower/u_upper; crocoddyl enables them
    (``has_control_limits``) when at least one lower and one upper bound are finite.
    """

    def __init__(self, problem: Problem, params_one: Mapping[str, Any], t: int | None):
        crocoddyl.ActionModelAbstract.__init__(self, crocoddyl.StateVector(problem.nx), problem.nu)
        self.problem = problem
        self.t = t
        self.terminal = t is None
        self._fns = _jax_functions(problem)
        self._params = {k: jnp.asarray(v) for k, v in params_one.items()}
        self._t = None if t is None else int(t)  # a Python int dispatches faster than an array
        self._nx = problem.nx
        if not self.terminal:
            self.u_lb = np.asarray(problem.u_lower, dtype=np.float64)
            self.u_ub = np.asarray(problem.u_upper, dtype=np.float64)

    def createData(self):
        data = crocoddyl.ActionDataAbstract(self)
        if self.terminal:
            _put(data.Fx, np.eye(self._nx).ravel(), (self._nx, self._nx))  # xnext = x
        return data

    def calc(self, data, x, u=None):
        nx = self._nx
        if u is None or self.terminal:
            out = np.asarray(self._fns.terminal_calc(x, self._params))
            data.xnext[:] = x
            data.cost = float(out[0])
            return
        out = np.asarray(self._fns.running_calc(x, u, self._t, self._params))
        data.xnext[:] = out[:nx]
        data.cost = float(out[nx])

    def calcDiff(self, data, x, u=None):
        nx, nu = self._nx, self.nu
        if u is None or self.terminal:
            out = np.asarray(self._fns.terminal_diff(x, self._params))
            data.Lx[:] = out[:nx]
            _put(data.Lxx, out[nx:], (nx, nx))
            return
        out = np.asarray(self._fns.running_diff(x, u, self._t, self._params))
        o = self._fns.offsets
        # Row-major blocks; eigenpy shows (nx, 1) blocks as 1-D arrays, hence the reshapes.
        _put(data.Fx, out[o[0] : o[1]], (nx, nx))
        _put(data.Fu, out[o[1] : o[2]], (nx, nu))
        data.Lx[:] = out[o[2] : o[2] + nx]
        data.Lu[:] = out[o[2] + nx : o[3]]
        _put(data.Lxx, out[o[3] : o[4]], (nx, nx))
        _put(data.Luu, out[o[4] : o[5]], (nu, nu))
        _put(data.Lxu, out[o[5] : o[6]], (nx, nu))


def _put(view: np.ndarray, flat: np.ndarray, shape: tuple[int, int]) -> None:
    """Write a row-major flattened (rows, cols) block into a crocoddyl data matrix in place."""
    view[...] = flat.reshape(shape).reshape(view.shape)


def _jax_models(problem: Problem, params_one: Mapping[str, Any]):
    running = [JaxActionModel(problem, params_one, t) for t in range(problem.horizon)]
    return running, JaxActionModel(problem, params_one, None)


# ---------------------------------------------------------------------------------------------
# Hand-written NumPy action models: the fair "Python action model" speed anchor.


class _PendulumModel(crocoddyl.ActionModelAbstract):
    """Pendulum (rlto/problems/pendulum.py) in NumPy with hand-derived derivatives.

    a = (u - m g l sin q) / (m l^2); v+ = v + dt a; q+ = q + dt v+.
    ||p - p*||^2 = (l sin q)^2 + (l cos q + l)^2 = 2 l^2 (1 + cos q), with p* = (0, l).
    running = dt (w_pos l^2 (1 + cos q) + w_u u^2 / 2 + w_vel v^2 / 2);
    terminal = w_pos_terminal l^2 (1 + cos q) + w_vel_terminal v^2 / 2.
    """

    def __init__(self, config, terminal: bool):
        crocoddyl.ActionModelAbstract.__init__(self, crocoddyl.StateVector(2), 1)
        c = config
        self.terminal = terminal
        self.dt = float(c.dt)
        self.inv_ml2 = 1.0 / (float(c.m) * float(c.l) ** 2)
        self.g_over_l = float(c.g) / float(c.l)
        self.l2 = float(c.l) ** 2
        self.w_pos = float(c.w_pos_terminal if terminal else c.w_pos)
        self.w_vel = float(c.w_vel_terminal if terminal else c.w_vel)
        self.w_u = float(c.w_u)
        if not terminal:
            self.u_lb = np.array([-float(c.u_max)])
            self.u_ub = np.array([float(c.u_max)])

    def calc(self, data, x, u=None):
        q, v = float(x[0]), float(x[1])
        pos = self.w_pos * self.l2 * (1.0 + math.cos(q))
        if u is None or self.terminal:
            data.xnext[:] = x
            data.cost = pos + 0.5 * self.w_vel * v * v
            return
        dt, uu = self.dt, float(u[0])
        v_next = v + dt * (uu * self.inv_ml2 - self.g_over_l * math.sin(q))
        data.xnext[0] = q + dt * v_next
        data.xnext[1] = v_next
        data.cost = dt * (pos + 0.5 * self.w_u * uu * uu + 0.5 * self.w_vel * v * v)

    def calcDiff(self, data, x, u=None):
        q, v = float(x[0]), float(x[1])
        s, c = math.sin(q), math.cos(q)
        if u is None or self.terminal:
            data.Lx[0] = -self.w_pos * self.l2 * s
            data.Lx[1] = self.w_vel * v
            data.Lxx[0, 0] = -self.w_pos * self.l2 * c
            data.Lxx[1, 1] = self.w_vel
            return
        dt = self.dt
        dvq = -dt * self.g_over_l * c
        data.Fx[0, 0] = 1.0 + dt * dvq
        data.Fx[1, 0] = dvq
        data.Lx[0] = -dt * self.w_pos * self.l2 * s
        data.Lx[1] = dt * self.w_vel * v
        data.Lu[0] = dt * self.w_u * float(u[0])
        data.Lxx[0, 0] = -dt * self.w_pos * self.l2 * c

    def createData(self):
        data = crocoddyl.ActionDataAbstract(self)
        if not self.terminal:  # constant blocks, set once
            dt = self.dt
            data.Fx[0, 1] = dt
            data.Fx[1, 1] = 1.0
            Fu = data.Fu.reshape(2)  # eigenpy shows an (nx, 1) block as a 1-D array
            Fu[0] = dt * dt * self.inv_ml2
            Fu[1] = dt * self.inv_ml2
            data.Luu[0, 0] = dt * self.w_u
            data.Lxx[1, 1] = dt * self.w_vel
        return data


def _pendulum_numpy(problem: Problem, params_one: Mapping[str, Any]):
    running = _PendulumModel(problem.config, terminal=False)
    return [running] * problem.horizon, _PendulumModel(problem.config, terminal=True)


def _softplus(z: float) -> float:
    """log(1 + exp(z)), stable for large |z| (the form jax.nn.softplus uses)."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _sigmoid(z: float) -> float:
    """1 / (1 + exp(-z)) = d softplus / dz, stable for large |z|."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class _DoubleIntegratorModel(crocoddyl.ActionModelAbstract):
    """CACTO's double integrator (rlto/problems/integrators.py, obstacles.py) in NumPy with
    hand-derived derivatives. State (px, py, vx, vy), control (ax, ay), explicit Euler
    p+ = p + dt v, v+ = v + dt u (constant Fx, Fu). With d = p - p*:

    position(p) = w_d |d|^2 - w_peak peak(p) + w_ob sum_i pen_i(p);   running = c (position +
    w_u |u|^2), terminal = c position (no velocity term for this problem).

    peak = softplus(-a2 S) / a2, S = sum_j s_j, s_j = r_j - sqrt(0.1) - 0.1,
    r_j = sqrt(d_j^2 + 0.1):
      grad = -sigma(-a2 S) g, g_j = d_j / r_j;
      Hess = a2 sigma (1 - sigma) g g' - sigma(-a2 S) diag(0.1 / r_j^3).
    pen_i = softplus(a (1 - e_i)) / a, e_i = sum_j (p_j - c_ij)^2 / h_ij^2 (h = half axes):
      grad = -sigma(a (1 - e)) grad e,  grad e_j = 2 (p_j - c_ij) / h_ij^2;
      Hess = a sigma (1 - sigma) grad e grad e' - sigma(a (1 - e)) diag(2 / h_ij^2).
    """

    def __init__(self, config, target, terminal: bool):
        crocoddyl.ActionModelAbstract.__init__(self, crocoddyl.StateVector(4), 2)
        c = config
        if c.obstacles != "cost":
            raise ValueError(
                "the numpy double_integrator model covers obstacles='cost' only (softplus "
                "penalties); the 'constraint' variant has path constraints. Use models='jax'."
            )
        if c.w_v != 0.0:
            raise ValueError("the numpy double_integrator model assumes w_v = 0 (no velocity "
                             "term, as integrators.py builds it).")
        self.terminal = terminal
        self.dt = float(c.dt)
        self.scale = float(c.cost_scale)
        self.w_d, self.w_peak, self.w_ob, self.w_u = (
            float(c.w_d), float(c.w_peak), float(c.w_ob), float(c.w_u)
        )
        self.a2 = float(c.peak_sharpness)
        self.a = float(c.obstacle_sharpness)
        self.target = (float(target[0]), float(target[1]))
        self.ellipses = [
            (float(e.center[0]), float(e.center[1]), 1.0 / (0.5 * e.axes[0]) ** 2,
             1.0 / (0.5 * e.axes[1]) ** 2)
            for e in c.ellipses
        ]
        self.sqrt01 = math.sqrt(0.1)
        if not terminal:
            self.u_lb = np.full(2, -float(c.u_max))
            self.u_ub = np.full(2, float(c.u_max))

    def _position_cost(self, px: float, py: float) -> float:
        dx, dy = px - self.target[0], py - self.target[1]
        total = self.w_d * (dx * dx + dy * dy)
        s = math.sqrt(dx * dx + 0.1) + math.sqrt(dy * dy + 0.1) - 2.0 * (self.sqrt01 + 0.1)
        total -= self.w_peak * _softplus(-self.a2 * s) / self.a2
        pen = 0.0
        for xc, yc, ix, iy in self.ellipses:
            e = (px - xc) ** 2 * ix + (py - yc) ** 2 * iy
            pen += _softplus(self.a * (1.0 - e))
        return total + self.w_ob * pen / self.a

    def _position_derivatives(self, px: float, py: float):
        """Gradient (gx, gy) and Hessian (hxx, hxy, hyy) of the unscaled position cost."""
        dx, dy = px - self.target[0], py - self.target[1]
        gx, gy = 2.0 * self.w_d * dx, 2.0 * self.w_d * dy
        hxx = hyy = 2.0 * self.w_d
        hxy = 0.0
        rx, ry = math.sqrt(dx * dx + 0.1), math.sqrt(dy * dy + 0.1)
        s = rx + ry - 2.0 * (self.sqrt01 + 0.1)
        sig = _sigmoid(-self.a2 * s)
        jx, jy = dx / rx, dy / ry
        curv = self.a2 * sig * (1.0 - sig)
        # minus w_peak times peak's derivatives
        wp = self.w_peak
        gx += wp * sig * jx
        gy += wp * sig * jy
        hxx -= wp * (curv * jx * jx - sig * 0.1 / rx**3)
        hyy -= wp * (curv * jy * jy - sig * 0.1 / ry**3)
        hxy -= wp * curv * jx * jy
        for xc, yc, ix, iy in self.ellipses:
            e = (px - xc) ** 2 * ix + (py - yc) ** 2 * iy
            sig = _sigmoid(self.a * (1.0 - e))
            ex, ey = 2.0 * (px - xc) * ix, 2.0 * (py - yc) * iy
            curv = self.a * sig * (1.0 - sig)
            wo = self.w_ob
            gx -= wo * sig * ex
            gy -= wo * sig * ey
            hxx += wo * (curv * ex * ex - sig * 2.0 * ix)
            hyy += wo * (curv * ey * ey - sig * 2.0 * iy)
            hxy += wo * curv * ex * ey
        return gx, gy, hxx, hxy, hyy

    def calc(self, data, x, u=None):
        px, py, vx, vy = float(x[0]), float(x[1]), float(x[2]), float(x[3])
        cost = self._position_cost(px, py)
        if u is None or self.terminal:
            data.xnext[:] = x
            data.cost = self.scale * cost
            return
        ux, uy, dt = float(u[0]), float(u[1]), self.dt
        xnext = data.xnext
        xnext[0] = px + dt * vx
        xnext[1] = py + dt * vy
        xnext[2] = vx + dt * ux
        xnext[3] = vy + dt * uy
        data.cost = self.scale * (cost + self.w_u * (ux * ux + uy * uy))

    def calcDiff(self, data, x, u=None):
        gx, gy, hxx, hxy, hyy = self._position_derivatives(float(x[0]), float(x[1]))
        c = self.scale
        Lx, Lxx = data.Lx, data.Lxx
        Lx[0], Lx[1] = c * gx, c * gy
        Lxx[0, 0], Lxx[0, 1], Lxx[1, 0], Lxx[1, 1] = c * hxx, c * hxy, c * hxy, c * hyy
        if u is None or self.terminal:
            return
        Lu = data.Lu
        Lu[0] = 2.0 * c * self.w_u * float(u[0])
        Lu[1] = 2.0 * c * self.w_u * float(u[1])

    def createData(self):
        data = crocoddyl.ActionDataAbstract(self)
        if not self.terminal:  # constant blocks, set once
            dt = self.dt
            data.Fx[:, :] = np.block([[np.eye(2), dt * np.eye(2)], [np.zeros((2, 2)), np.eye(2)]])
            data.Fu[:, :] = np.vstack([np.zeros((2, 2)), dt * np.eye(2)])
            data.Luu[:, :] = 2.0 * self.scale * self.w_u * np.eye(2)
        return data


def _double_integrator_numpy(problem: Problem, params_one: Mapping[str, Any]):
    c = problem.config
    target = np.asarray(params_one.get("target", c.target), dtype=np.float64)
    running = _DoubleIntegratorModel(c, target, terminal=False)
    return [running] * problem.horizon, _DoubleIntegratorModel(c, target, terminal=True)


_NUMPY_BUILDERS: dict[str, Callable] = {
    "pendulum": _pendulum_numpy,
    "double_integrator": _double_integrator_numpy,
}


# ---------------------------------------------------------------------------------------------
# Native crocoddyl pendulum over a Pinocchio model.


def pendulum_pinocchio_model(config):
    """A Pinocchio model of the pendulum: one revolute joint about x, a point mass m at distance
    l, gravity g along -z, no friction, effort limit u_max, and a frame "tip" at the mass.

    With a rotation about x, the tip at (0, 0, -l) in the joint frame lies at
    (0, l sin q, -l cos q): q = 0 hangs down and (y, z) is the problem's p = (l sin q, -l cos q).
    """
    import pinocchio as pin

    m, l, g = float(config.m), float(config.l), float(config.g)
    model = pin.Model()
    model.name = "pendulum"
    joint = model.addJoint(0, pin.JointModelRX(), pin.SE3.Identity(), "hinge")
    tip = np.array([0.0, 0.0, -l])
    model.appendBodyToJoint(joint, pin.Inertia(m, tip, np.zeros((3, 3))), pin.SE3.Identity())
    model.addFrame(
        pin.Frame("tip", joint, 0, pin.SE3(np.eye(3), tip), pin.FrameType.OP_FRAME)
    )
    model.gravity.linear = np.array([0.0, 0.0, -g])
    model.effortLimit = np.array([float(config.u_max)])
    model.damping = np.zeros(1)
    model.friction = np.zeros(1)
    model.armature = np.zeros(1)
    return model


def _native_reaching(problem: Problem, model, frame: str, target: np.ndarray):
    """Crocoddyl's C++ models of a reaching problem over a Pinocchio model: free forward
    dynamics (ABA) with crocoddyl's Euler step (semi-implicit, as rlto's problems), and the cost
    form that `pendulum` and `ur5` share (their configs' w_pos, w_vel, w_u, w_pos_terminal,
    w_vel_terminal, dt): running dt (w_pos/2 ||p - p*||^2 + w_vel/2 ||v||^2 + w_u/2 ||u||^2),
    terminal w_pos_terminal/2 ||p - p*||^2 + w_vel_terminal/2 ||v||^2, with p the origin of
    `frame` and p* = target (3,) in the world; the problem's control bounds.

    Returns (running models, one per step; terminal model)."""
    c = problem.config
    state = crocoddyl.StateMultibody(model)
    actuation = crocoddyl.ActuationModelFull(state)
    nu = actuation.nu
    frame_id = model.getFrameId(frame)

    def costs(w_pos, w_vel, with_control):
        total = crocoddyl.CostModelSum(state, nu)
        reach = crocoddyl.ResidualModelFrameTranslation(state, frame_id, target, nu)
        total.addCost("reach", crocoddyl.CostModelResidual(state, reach), float(w_pos))
        velocity_weights = np.r_[np.zeros(state.nq), np.full(state.nv, float(w_vel))]
        velocity = crocoddyl.CostModelResidual(
            state,
            crocoddyl.ActivationModelWeightedQuad(velocity_weights),
            crocoddyl.ResidualModelState(state, np.zeros(state.nx), nu),
        )
        total.addCost("velocity", velocity, 1.0)
        if with_control:
            control = crocoddyl.CostModelResidual(state, crocoddyl.ResidualModelControl(state, nu))
            total.addCost("control", control, float(c.w_u))
        return total

    def integrated(w_pos, w_vel, dt, with_control):
        dam = crocoddyl.DifferentialActionModelFreeFwdDynamics(
            state, actuation, costs(w_pos, w_vel, with_control)
        )
        iam = crocoddyl.IntegratedActionModelEuler(dam, dt)
        iam.u_lb = np.asarray(problem.u_lower, dtype=np.float64)
        iam.u_ub = np.asarray(problem.u_upper, dtype=np.float64)
        return iam

    running = integrated(c.w_pos, c.w_vel, float(c.dt), True)
    terminal = integrated(c.w_pos_terminal, c.w_vel_terminal, 0.0, False)
    return [running] * problem.horizon, terminal


def _pendulum_native(problem: Problem, params_one: Mapping[str, Any]):
    c = problem.config
    target = np.array([0.0, 0.0, float(c.l)])  # p* = (0, l) in the (y, z) plane
    return _native_reaching(problem, pendulum_pinocchio_model(c), "tip", target)


def _ur5_native(problem: Problem, params_one: Mapping[str, Any]):
    """`ur5` over Pinocchio's model of the same URDF, to this instance's target."""
    import pinocchio as pin

    from rlto.robots import load_robot

    c = problem.config
    model = pin.buildModelFromUrdf(load_robot(c.urdf).urdf_path)
    return _native_reaching(problem, model, c.frame,
                            np.asarray(params_one["target"], dtype=np.float64))


_NATIVE_BUILDERS: dict[str, Callable] = {"pendulum": _pendulum_native, "ur5": _ur5_native}


# ---------------------------------------------------------------------------------------------
# Problems and solves.


def available_models(problem: Problem) -> list[str]:
    """The model kinds that `crocoddyl_problem` can build for this problem."""
    kinds = ["jax"]
    if problem.name in _NUMPY_BUILDERS:
        kinds.append("numpy")
    if problem.name in _NATIVE_BUILDERS:
        kinds.append("native")
    return kinds


def _models(problem: Problem, params_one: Mapping[str, Any], models: str):
    if models == "jax":
        return _jax_models(problem, params_one)
    builders = {"numpy": _NUMPY_BUILDERS, "native": _NATIVE_BUILDERS}.get(models)
    if builders is None:
        raise ValueError(f"models must be one of {MODEL_KINDS}, got {models!r}.")
    if problem.name not in builders:
        raise ValueError(
            f"no {models!r} crocoddyl model for problem {problem.name!r}; those exist for "
            f"{sorted(builders)}. Use models='jax', which works for every Problem."
        )
    return builders[problem.name](problem, params_one)


def crocoddyl_problem(
    problem: Problem, params_one: Mapping[str, Any], models: str = "jax"
) -> crocoddyl.ShootingProblem:
    """A crocoddyl ShootingProblem for one instance.

    params_one: dict of one instance's arrays (no leading n), x0 from params_one["x0"].
    models: "jax" (any Problem without path constraints), "numpy" or "native" (see the module
    docstring). Raises ValueError for a problem with path constraints.
    """
    if problem.constraints is not None:
        raise ValueError(
            f"{problem.name} has path constraints, which SolverBoxFDDP cannot enforce (it handles "
            "control bounds only); compare such problems with rlto.solve alone, or build the "
            "penalty variant (e.g. obstacles='cost')."
        )
    running, terminal = _models(problem, params_one, models)
    x0 = np.asarray(params_one["x0"], dtype=np.float64)
    shooting = crocoddyl.ShootingProblem(x0, running, terminal)
    return shooting


def _instance(params: Mapping[str, Any], i: int) -> dict:
    return {k: np.asarray(v)[i] for k, v in params.items()}


def solve_crocoddyl(
    problem: Problem,
    params: Mapping[str, Any],
    init=None,
    max_iter: int = 200,
    th_stop: float = DEFAULT_TH_STOP,
    models: str = "jax",
    progress: Callable[[int], None] | None = None,
    is_feasible: bool = False,
) -> dict:
    """Solve n instances one after another with crocoddyl's SolverBoxFDDP.

    params: batch dict (leading dimension n), as from problem.sample(key, n).
    init: None (as rlto.solve: the problem's initial_controls or zeros; states = rollout),
    controls (n, T, nu), or a tuple (xs, us) with xs (n, T+1, nx) and us (n, T, nu).
    is_feasible: passed to crocoddyl's solve. False (crocoddyl's default) makes the first
    iterations use unconstrained gains (no box-QP) until a full step (alpha = 1) is accepted, even
    when the init is a rollout; True uses the box-QP from the first iteration (only meaningful
    when the init is dynamically consistent, e.g. controls rolled out here).
    progress: optional callback, called with the number of instances solved so far.

    Returns a dict of NumPy arrays: xs (n, T+1, nx), us (n, T, nu), cost (n,) (crocoddyl's total
    cost of (xs, us)), iterations (n,) (iterations run: steps tried, counting the one that
    converged), converged (n,) bool (solve returned True), stop (n,) (the last stopping
    criterion), instance_seconds (n,) (wall time of each solve, including building its solver and
    the rollout of the init; excludes building the action models), and floats seconds (their sum:
    the n solves one after another), setup_seconds (building the action models and shooting
    problems) and the strings models and solver.
    """
    n = problem.check_params(params)
    T, nx, nu = problem.horizon, problem.nx, problem.nu
    xs_init = us_init = None
    if init is None:  # the same start as rlto.solve(init=None): comparisons stay fair
        batch = {k: jnp.asarray(v) for k, v in params.items()}
        us_init = np.asarray(default_controls(problem, batch, n), dtype=np.float64)
    elif isinstance(init, tuple):
        xs_init, us_init = (np.asarray(a, dtype=np.float64) for a in init)
        if xs_init.shape != (n, T + 1, nx):
            raise ValueError(f"init xs has shape {xs_init.shape}, expected {(n, T + 1, nx)}.")
    else:
        us_init = np.asarray(init, dtype=np.float64)
    if us_init.shape != (n, T, nu):
        raise ValueError(f"init controls have shape {us_init.shape}, expected {(n, T, nu)}.")

    out_xs = np.zeros((n, T + 1, nx))
    out_us = np.zeros((n, T, nu))
    cost = np.zeros(n)
    iterations = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    stop = np.zeros(n)
    instance_seconds = np.zeros(n)
    setup = 0.0
    for i in range(n):
        start = time.perf_counter()
        shooting = crocoddyl_problem(problem, _instance(params, i), models)
        setup += time.perf_counter() - start

        start = time.perf_counter()
        us0 = list(us_init[i])
        xs0 = shooting.rollout(us0) if xs_init is None else list(xs_init[i])
        solver = crocoddyl.SolverBoxFDDP(shooting)
        solver.th_stop = th_stop
        ok = solver.solve(xs0, us0, max_iter, is_feasible)
        instance_seconds[i] = time.perf_counter() - start

        out_xs[i] = np.asarray(solver.xs)
        out_us[i] = np.asarray(solver.us)
        cost[i] = solver.cost
        converged[i] = ok
        # crocoddyl's iter is the 0-based index of the last iteration (== max_iter when the loop
        # ran out), so iterations run = iter + 1 unless the loop ended at max_iter.
        iterations[i] = min(solver.iter + 1, max_iter)
        stop[i] = solver.stop
        if progress is not None:
            progress(i + 1)
    return {
        "xs": out_xs,
        "us": out_us,
        "cost": cost,
        "iterations": iterations,
        "converged": converged,
        "stop": stop,
        "seconds": float(instance_seconds.sum()),
        "instance_seconds": instance_seconds,
        "setup_seconds": setup,
        "models": models,
        "solver": "crocoddyl.SolverBoxFDDP",
    }
