"""rlto.reference: crocoddyl's action models over our problems equal the problems' JAX functions."""

from __future__ import annotations

import crocoddyl
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto import reference as ref

FIELDS = ("xnext", "cost", "Fx", "Fu", "Lx", "Lu", "Lxx", "Luu", "Lxu")
TERMINAL_FIELDS = ("xnext", "cost", "Lx", "Lxx")


def _one(params, i=0) -> dict:
    return {k: np.asarray(v)[i] for k, v in params.items()}


def _evaluate(model, x, u=None) -> dict:
    """calc + calcDiff of a crocoddyl model (u=None: terminal), fields as 2-D/1-D NumPy arrays."""
    data = model.createData()
    if u is None:
        model.calc(data, x)
        model.calcDiff(data, x)
    else:
        model.calc(data, x, u)
        model.calcDiff(data, x, u)
    nx, nu = x.shape[0], model.nu
    shapes = {"Fx": (nx, nx), "Fu": (nx, nu), "Lxx": (nx, nx), "Luu": (nu, nu), "Lxu": (nx, nu)}
    out = {}
    for f in FIELDS:
        value = np.array(getattr(data, f), dtype=np.float64)
        out[f] = value.reshape(shapes[f]) if f in shapes else value  # eigenpy squeezes (n, 1)
    return out


def _jax_reference(problem, params, x, u, t) -> dict:
    """The same quantities straight from the problem's functions (u=None: terminal), jitted."""
    fns = _reference_functions(problem)
    if u is None:
        return {k: np.asarray(v) for k, v in fns["terminal"](x, params).items()}
    return {k: np.asarray(v) for k, v in fns["running"](x, u, t, params).items()}


_REFERENCE_CACHE: dict = {}


def _reference_functions(problem) -> dict:
    if problem in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[problem]
    l, lT, f = problem.running_cost, problem.terminal_cost, problem.dynamics

    def running(x, u, t, params):
        return {
            "xnext": f(x, u, t, params),
            "cost": l(x, u, t, params),
            "Fx": jax.jacobian(f, 0)(x, u, t, params),
            "Fu": jax.jacobian(f, 1)(x, u, t, params),
            "Lx": jax.grad(l, 0)(x, u, t, params),
            "Lu": jax.grad(l, 1)(x, u, t, params),
            "Lxx": jax.hessian(l, 0)(x, u, t, params),
            "Luu": jax.hessian(l, 1)(x, u, t, params),
            "Lxu": jax.jacobian(jax.grad(l, 0), 1)(x, u, t, params),
        }

    def terminal(x, params):
        return {
            "xnext": x,
            "cost": lT(x, params),
            "Lx": jax.grad(lT)(x, params),
            "Lxx": jax.hessian(lT)(x, params),
        }

    fns = {"running": jax.jit(running), "terminal": jax.jit(terminal)}
    _REFERENCE_CACHE[problem] = fns
    return fns


def _assert_close(got: dict, want: dict, fields, rtol: float, what: str) -> None:
    for f in fields:
        a, b = np.asarray(got[f]), np.asarray(want[f])
        scale = max(1.0, float(np.max(np.abs(b))))
        err = float(np.max(np.abs(a - b))) / scale
        assert err < rtol, f"{what}: {f} differs by {err:.2e} (relative)\n{a}\nvs\n{b}"


def _random_points(problem, rng, count):
    """(x, u, t) triples: random states, controls inside and outside the box, random steps."""
    points = []
    scale = np.ones(problem.nx)
    if problem.name == "double_integrator":
        scale = np.array([15.0, 15.0, 6.0, 6.0])
    for k in range(count):
        x = rng.uniform(-1, 1, problem.nx) * scale * (np.pi if problem.name == "pendulum" else 1)
        if problem.name == "double_integrator" and k % 3 == 0:  # near the target's valley
            x[:2] = np.array([-7.0, 0.0]) + 0.3 * rng.normal(size=2)
        if problem.name == "double_integrator" and k % 3 == 1:  # near obstacle E1's boundary
            x[:2] = np.array([-2.0 + 3.0 * rng.uniform(-1.1, 1.1), 5.0 * rng.uniform(-1, 1)])
        u = rng.uniform(-1.5, 1.5, problem.nu) * np.where(
            np.isfinite(problem.u_upper), problem.u_upper, 1.0
        )
        points.append((x, u, int(rng.integers(problem.horizon))))
    return points


@pytest.mark.parametrize("name", ["pendulum", "double_integrator", "lqr"])
def test_jax_action_model_equals_jax_functions(name):
    problem = rlto.make(name)
    params = _one(problem.sample(jax.random.key(3), 1))
    rng = np.random.default_rng(0)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    for x, u, t in _random_points(problem, rng, 6):
        running = ref.JaxActionModel(problem, params, t)
        got = _evaluate(running, x, u)
        want = _jax_reference(problem, jparams, jnp.asarray(x), jnp.asarray(u), t)
        _assert_close(got, want, FIELDS, 1e-12, f"{name} running t={t}")
        terminal = ref.JaxActionModel(problem, params, None)
        got = _evaluate(terminal, x)
        want = _jax_reference(problem, jparams, jnp.asarray(x), None, None)
        _assert_close(got, want, TERMINAL_FIELDS, 1e-12, f"{name} terminal")
    model = ref.JaxActionModel(problem, params, 0)
    np.testing.assert_array_equal(model.u_lb, problem.u_lower)
    np.testing.assert_array_equal(model.u_ub, problem.u_upper)
    assert model.has_control_limits == problem.has_bounds


@pytest.mark.parametrize("name", ["pendulum", "double_integrator"])
def test_numpy_models_equal_jax_functions(name):
    problem = rlto.make(name)
    params = _one(problem.sample(jax.random.key(4), 1))
    running, terminal = ref._models(problem, params, "numpy")
    rng = np.random.default_rng(1)
    for x, u, t in _random_points(problem, rng, 30):
        jax_run = ref.JaxActionModel(problem, params, t)
        _assert_close(_evaluate(running[t], x, u), _evaluate(jax_run, x, u), FIELDS, 1e-10,
                      f"{name} numpy running")
        jax_term = ref.JaxActionModel(problem, params, None)
        _assert_close(_evaluate(terminal, x), _evaluate(jax_term, x), TERMINAL_FIELDS, 1e-10,
                      f"{name} numpy terminal")
    np.testing.assert_array_equal(running[0].u_lb, problem.u_lower)
    np.testing.assert_array_equal(running[0].u_ub, problem.u_upper)


def test_native_pendulum_equals_jax_pendulum():
    """Crocoddyl's own pinocchio pendulum: same one-step dynamics, costs and first derivatives.

    Its Hessians differ by design: crocoddyl's residual costs use the Gauss-Newton Hessian
    w J'J of the tip-translation term (w_pos l^2 on q), where the JAX problem has the exact one,
    w_pos l^2 cos q; the velocity and control terms are quadratic, so those entries agree.
    """
    import pinocchio as pin

    problem = rlto.make("pendulum")
    c = problem.config
    params = {"x0": np.zeros(2)}
    running, terminal = ref._models(problem, params, "native")
    rng = np.random.default_rng(2)
    first_order = ("xnext", "cost", "Fx", "Fu", "Lx", "Lu", "Luu", "Lxu")
    for x, u, _ in _random_points(problem, rng, 20):
        got = _evaluate(running[0], x, u)
        want = _evaluate(ref.JaxActionModel(problem, params, 0), x, u)
        _assert_close(got, want, first_order, 1e-10, "native running")
        np.testing.assert_allclose(got["Lxx"], np.diag([c.dt * c.w_pos * c.l**2, c.dt * c.w_vel]),
                                   rtol=1e-12, atol=1e-14)
        got = _evaluate(terminal, x)
        want = _evaluate(ref.JaxActionModel(problem, params, None), x)
        _assert_close(got, want, ("xnext", "cost", "Lx"), 1e-10, "native terminal")
        np.testing.assert_allclose(
            got["Lxx"], np.diag([c.w_pos_terminal * c.l**2, c.w_vel_terminal]), rtol=1e-12
        )
    # Orientation: q = 0 hangs down; the tip frame at (0, l sin q, -l cos q) is the problem's p.
    model = ref.pendulum_pinocchio_model(c)
    data = model.createData()
    for q in (0.0, 0.7, -2.0, np.pi):
        pin.framesForwardKinematics(model, data, np.array([q]))
        tip = data.oMf[model.getFrameId("tip")].translation
        p = np.asarray(problem.position(jnp.array([q, 0.0]), {}))
        np.testing.assert_allclose(tip, [0.0, p[0], p[1]], atol=1e-14)
    assert running[0].has_control_limits
    np.testing.assert_array_equal(running[0].u_ub, [c.u_max])


def test_native_ur5_equals_jax_ur5():
    """Crocoddyl's C++ UR5 over Pinocchio's model of the same URDF: one-step dynamics (ABA and
    its derivatives), costs and first derivatives equal the JAX problem's; the Hessian in q
    differs by design (Gauss-Newton J'J of the reach term), the rest of it agrees."""
    problem = rlto.make("ur5")
    c = problem.config
    params = _one(problem.sample(jax.random.key(5), 1))
    running, terminal = ref._models(problem, params, "native")
    rng = np.random.default_rng(3)
    first_order = ("xnext", "cost", "Fx", "Fu", "Lx", "Lu", "Luu", "Lxu")
    nv = problem.nu
    for _ in range(5):
        x = np.r_[np.asarray(c.q_home) + rng.uniform(-0.5, 0.5, nv), rng.uniform(-1, 1, nv)]
        u = rng.uniform(-1, 1, nv) * problem.u_upper
        got = _evaluate(running[0], x, u)
        want = _evaluate(ref.JaxActionModel(problem, params, 0), x, u)
        _assert_close(got, want, first_order, 1e-9, "native ur5 running")
        np.testing.assert_allclose(got["Lxx"][nv:, nv:], c.dt * c.w_vel * np.eye(nv),
                                   rtol=1e-12, atol=1e-14)
        got = _evaluate(terminal, x)
        want = _evaluate(ref.JaxActionModel(problem, params, None), x)
        _assert_close(got, want, ("xnext", "cost", "Lx"), 1e-9, "native ur5 terminal")
    np.testing.assert_array_equal(running[0].u_ub, problem.u_upper)
    assert "native" in ref.available_models(problem)


def test_solve_crocoddyl_pendulum_converges_and_reports_its_cost():
    problem = rlto.make("pendulum")
    params = problem.sample(jax.random.key(0), 2)
    out = ref.solve_crocoddyl(problem, params, max_iter=200, th_stop=1e-9, models="jax")
    T = problem.horizon
    assert out["xs"].shape == (2, T + 1, 2) and out["us"].shape == (2, T, 1)
    assert out["converged"].all(), out
    assert (out["iterations"] >= 1).all() and (out["iterations"] <= 200).all()
    assert out["seconds"] > 0
    assert np.all(np.abs(out["us"]) <= problem.config.u_max + 1e-12)
    for i in range(2):
        one = _one(params, i)
        cost = float(problem.trajectory_cost(out["xs"][i], out["us"][i], one))
        np.testing.assert_allclose(out["cost"][i], cost, rtol=1e-12)
        rollout = np.asarray(problem.rollout(jnp.asarray(out["us"][i]), one))
        np.testing.assert_allclose(out["xs"][i], rollout, atol=1e-10)
    # The hand-written NumPy model takes the very same path (same iterations and costs).
    fast = ref.solve_crocoddyl(problem, params, max_iter=200, th_stop=1e-9, models="numpy")
    np.testing.assert_array_equal(fast["iterations"], out["iterations"])
    np.testing.assert_allclose(fast["cost"], out["cost"], rtol=1e-10)


def test_solve_crocoddyl_init_forms_and_errors():
    problem = rlto.make("pendulum")
    params = problem.sample(jax.random.key(1), 2)
    base = ref.solve_crocoddyl(problem, params, max_iter=5, models="numpy")
    zeros = np.zeros((2, problem.horizon, 1))
    as_us = ref.solve_crocoddyl(problem, params, init=zeros, max_iter=5, models="numpy")
    np.testing.assert_allclose(as_us["cost"], base["cost"], rtol=1e-14)
    # Warm start from the previous solution: already converged or nearly so.
    warm = ref.solve_crocoddyl(problem, params, init=(base["xs"], base["us"]), max_iter=5,
                               models="numpy")
    assert np.all(warm["cost"] <= base["cost"] + 1e-9)
    with pytest.raises(ValueError, match="expected"):
        ref.solve_crocoddyl(problem, params, init=zeros[:, :3], models="numpy")
    with pytest.raises(ValueError, match="models must be one of"):
        ref.solve_crocoddyl(problem, params, models="torch")
    with pytest.raises(ValueError, match="no 'native' crocoddyl model"):
        ref.crocoddyl_problem(rlto.make("lqr"), _one(rlto.make("lqr").sample(jax.random.key(0), 1)),
                              models="native")
    with pytest.raises(ValueError, match="path constraints"):
        constrained = rlto.make("double_integrator", obstacles="constraint")
        ref.crocoddyl_problem(constrained, _one(constrained.sample(jax.random.key(0), 1)))
    assert ref.available_models(problem) == ["jax", "numpy", "native"]
    assert isinstance(ref.crocoddyl_problem(problem, _one(params), "native"),
                      crocoddyl.ShootingProblem)
