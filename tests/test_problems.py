"""Oracles for the built-in problems: shapes, closed forms, Jacobians, and well-posedness.

Every check compares with an independent computation (hand-written formulas, NumPy, finite
differences, a second route to the same quantity), so that a wrong implementation fails.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto.problems import car, double_pendulum, integrators, lqr, manipulator3, obstacles, oned
from rlto.problems import pendulum as pendulum_module

NAMES = rlto.problem_names()
EXPECTED = {
    "lqr",
    "pendulum",
    "double_pendulum",
    "oned",
    "single_integrator",
    "double_integrator",
    "car",
    "manipulator3",
}


def first(params):
    """Instance 0 of a batch of params."""
    return {k: jnp.asarray(v)[0] for k, v in params.items()}


def random_controls(problem, key, n):
    """Controls (n, nu) uniform in the bounds (in [-1, 1] where unbounded)."""
    lo = np.where(np.isfinite(problem.u_lower), problem.u_lower, -1.0)
    hi = np.where(np.isfinite(problem.u_upper), problem.u_upper, 1.0)
    return jax.random.uniform(key, (n, problem.nu), jnp.float64, lo, hi)


# ---------------------------------------------------------------------------------------------
# Registry, shapes and conventions.


def test_all_builtins_registered():
    assert EXPECTED <= set(NAMES)
    descriptions = rlto.problem.problem_descriptions()
    assert all(descriptions[name] for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_builtin_constructs_and_samples(name):
    problem = rlto.make(name)
    assert problem.name == name
    params = problem.sample(jax.random.key(3), 7)
    assert params["x0"].shape == (7, problem.nx)
    for value in params.values():
        assert value.dtype == jnp.float64
        assert value.shape[0] == 7
    assert problem.check_params(params) == 7
    one = first(params)
    u = random_controls(problem, jax.random.key(4), 1)[0]
    assert problem.dynamics(one["x0"], u, 0, one).shape == (problem.nx,)
    assert problem.running_cost(one["x0"], u, 0, one).shape == ()
    assert problem.terminal_cost(one["x0"], one).shape == ()
    # Batched (vmap) equals the per-instance loop.
    us = random_controls(problem, jax.random.key(5), 7)
    dynamics = jax.jit(problem.dynamics)
    batched = jax.vmap(dynamics, in_axes=(0, 0, None, 0))(params["x0"], us, 0, params)
    for i in range(7):
        pi = {k: v[i] for k, v in params.items()}
        np.testing.assert_allclose(batched[i], dynamics(pi["x0"], us[i], 0, pi), rtol=1e-12)
    # Same seed, same numbers; another seed, other numbers.
    np.testing.assert_array_equal(params["x0"], problem.sample(jax.random.key(3), 7)["x0"])
    assert not np.allclose(params["x0"], problem.sample(jax.random.key(9), 7)["x0"])
    # The resolved config is recorded and overrides replace its fields.
    assert dataclasses.is_dataclass(problem.config)
    assert rlto.make(name, horizon=7).horizon == 7
    if problem.position is not None:
        assert problem.position(one["x0"], one).shape == problem.target(one).shape


@pytest.mark.parametrize("name", NAMES)
def test_config_fields_documented(name):
    """Every field of the problem's config dataclass has a docstring (DESIGN.md style)."""
    config_type = type(rlto.make(name).config)
    documented = set()
    for cls in config_type.__mro__:
        if not dataclasses.is_dataclass(cls):
            continue
        body = ast.parse(inspect.getsource(cls)).body[0].body
        for node, after in zip(body, body[1:], strict=False):
            is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            if isinstance(node, ast.AnnAssign) and is_doc:
                documented.add(node.target.id)
    missing = [f.name for f in dataclasses.fields(config_type) if f.name not in documented]
    assert not missing, f"{config_type.__name__} fields without a docstring: {missing}"


def test_unknown_option_is_explained():
    with pytest.raises(rlto.ProblemError, match="unknown option.*mass.*fields m, l, g"):
        rlto.make("pendulum", mass=2.0)
    with pytest.raises(rlto.ProblemError, match="'cost'.*'constraint'"):
        rlto.make("car", obstacles="penalty")


def test_unknown_name_suggests_close_one():
    with pytest.raises(rlto.ProblemError, match="Did you mean 'pendulum'"):
        rlto.make("pendulm")


# ---------------------------------------------------------------------------------------------
# Validation of user problems: bad input raises ProblemError with a useful message.


def _custom(**changes):
    base = dict(
        name="custom",
        nx=2,
        nu=1,
        horizon=5,
        dt=0.1,
        dynamics=lambda x, u, t, p: x + 0.1 * jnp.concatenate([x[1:], u]),
        running_cost=lambda x, u, t, p: x @ x + u @ u,
        terminal_cost=lambda x, p: x @ x,
        u_lower=-1.0,
        u_upper=1.0,
        sample=lambda key, n: {"x0": jax.random.normal(key, (n, 2))},
    )
    base.update(changes)
    return rlto.Problem(**base)


def test_custom_problem_valid():
    problem = _custom()
    assert problem.nc == 0 and problem.has_bounds
    np.testing.assert_array_equal(problem.u_lower, [-1.0])


def test_bounds_reversed():
    with pytest.raises(rlto.ProblemError, match="u_lower > u_upper.*swap"):
        _custom(u_lower=1.0, u_upper=-1.0)


def test_dynamics_wrong_shape():
    with pytest.raises(rlto.ProblemError, match=r"dynamics.*shape \(3,\).*expected \(2,\)"):
        _custom(dynamics=lambda x, u, t, p: jnp.concatenate([x, u]))


def test_dynamics_nan_at_sampled_state():
    with pytest.raises(rlto.ProblemError, match="dynamics.*not finite"):
        _custom(dynamics=lambda x, u, t, p: x / 0.0 * 0.0)


def test_sampler_missing_x0():
    with pytest.raises(rlto.ProblemError, match="x0"):
        _custom(sample=lambda key, n: {"state": jnp.zeros((n, 2))})


def test_sampler_wrong_shape():
    with pytest.raises(rlto.ProblemError, match=r"x0.*\(3, 3\).*nx=2"):
        _custom(sample=lambda key, n: {"x0": jnp.zeros((n, 3))})


def test_dynamics_jacobians_checked_against_autodiff():
    """A closed-form linearisation is used where given, and one that is wrong (here df/du ten
    times too large) or badly shaped is refused at construction."""
    a = np.array([[1.0, 0.1], [0.0, 1.0]])
    b = np.array([[0.0], [0.1]])

    def right(x, u, t, p):
        return x + 0.1 * jnp.concatenate([x[1:], u]), jnp.asarray(a), jnp.asarray(b)

    problem = _custom(dynamics_jacobians=right)
    x, u = jnp.array([0.3, -0.2]), jnp.array([0.5])
    f, fx, fu = problem.linearized_dynamics(x, u, 0, {})
    np.testing.assert_allclose(fx, a)
    np.testing.assert_allclose(fu, b)
    np.testing.assert_allclose(f, problem.dynamics(x, u, 0, {}))
    _, gx, gu = _custom().linearized_dynamics(x, u, 0, {})  # the autodiff fallback
    np.testing.assert_allclose(gx, a, atol=1e-15)
    np.testing.assert_allclose(gu, b, atol=1e-15)
    with pytest.raises(rlto.ProblemError, match=r"dynamics_jacobians.*df/du differs by 0\.9"):
        _custom(dynamics_jacobians=lambda x, u, t, p: (*right(x, u, t, p)[:2], 10 * b))
    with pytest.raises(rlto.ProblemError, match=r"df/dx of shape \(2,\), expected \(2, 2\)"):
        _custom(dynamics_jacobians=lambda x, u, t, p: (x, x, b))
    with pytest.raises(rlto.ProblemError, match="must return a tuple"):
        _custom(dynamics_jacobians=lambda x, u, t, p: x)


def test_params_wrong_shape_in_check():
    problem = _custom()
    with pytest.raises(rlto.ProblemError, match="x0.*expected"):
        problem.check_params({"x0": jnp.zeros(2)})


# ---------------------------------------------------------------------------------------------
# Jacobians against central finite differences.


def _fd_jacobian(f, z, h=1e-6):
    z = np.asarray(z, dtype=np.float64)
    cols = []
    for i in range(z.size):
        e = np.zeros_like(z)
        e[i] = h
        cols.append((np.asarray(f(z + e)) - np.asarray(f(z - e))) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("name", NAMES)
def test_dynamics_jacobian_matches_finite_differences(name):
    """jacfwd/grad of dynamics and costs, and Problem.linearized_dynamics (ur5's closed form),
    equal central differences (float64, rtol 1e-6)."""
    problem = rlto.make(name)
    params = problem.sample(jax.random.key(11), 3)
    us = random_controls(problem, jax.random.key(12), 3)
    f = jax.jit(lambda x, u, p: problem.dynamics(x, u, 0, p))
    l = jax.jit(lambda x, u, p: problem.running_cost(x, u, 0, p))
    lt = jax.jit(problem.terminal_cost)
    f_x, f_u = jax.jit(jax.jacfwd(f, argnums=0)), jax.jit(jax.jacfwd(f, argnums=1))
    linearized = jax.jit(lambda x, u, p: problem.linearized_dynamics(x, u, 0, p))
    l_x, lt_x = jax.jit(jax.grad(l)), jax.jit(jax.grad(lt))
    for i in range(3):
        p = {k: v[i] for k, v in params.items()}
        x, u = p["x0"], us[i]
        checks = [
            (f_x(x, u, p), _fd_jacobian(lambda z: f(z, u, p), x), 1e-8),  # noqa: B023
            (f_u(x, u, p), _fd_jacobian(lambda z: f(x, z, p), u), 1e-8),  # noqa: B023
            (linearized(x, u, p)[1], _fd_jacobian(lambda z: f(z, u, p), x), 1e-8),  # noqa: B023
            (linearized(x, u, p)[2], _fd_jacobian(lambda z: f(x, z, p), u), 1e-8),  # noqa: B023
            (l_x(x, u, p), _fd_jacobian(lambda z: l(z, u, p), x), 1e-7),  # noqa: B023
            (lt_x(x, p), _fd_jacobian(lambda z: lt(z, p), x), 1e-7),  # noqa: B023
        ]
        for analytic, numeric, atol in checks:
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=atol)


# ---------------------------------------------------------------------------------------------
# Pendulum.


def test_pendulum_step_is_semi_implicit_euler():
    problem = rlto.make("pendulum")
    m, l, g, dt = 1.0, 1.0, 9.81, 0.05
    q, v, u = 0.7, -1.3, 2.1
    a = (u - m * g * l * math.sin(q)) / (m * l**2)
    v_next = v + dt * a
    q_next = q + dt * v_next
    np.testing.assert_allclose(
        problem.dynamics(jnp.array([q, v]), jnp.array([u]), 0, {}), [q_next, v_next], rtol=1e-14
    )


def test_pendulum_costs_match_formula():
    problem = rlto.make("pendulum")
    q, v, u = 2.5, 0.4, -1.5
    tip = np.array([math.sin(q), -math.cos(q)])
    d2 = np.sum((tip - np.array([0.0, 1.0])) ** 2)
    running = 0.05 * (0.5 * 1.0 * d2 + 0.5 * 0.1 * u**2 + 0.5 * 0.1 * v**2)
    terminal = 0.5 * 100.0 * d2 + 0.5 * 10.0 * v**2
    x = jnp.array([q, v])
    np.testing.assert_allclose(problem.running_cost(x, jnp.array([u]), 0, {}), running, rtol=1e-14)
    np.testing.assert_allclose(problem.terminal_cost(x, {}), terminal, rtol=1e-14)
    # Upright at rest costs nothing; the bound is below m g l (swing-up needs pumping).
    assert float(problem.terminal_cost(jnp.array([math.pi, 0.0]), {})) < 1e-25
    assert problem.u_upper[0] < 1.0 * 9.81 * 1.0


def test_pendulum_equilibria_and_energy():
    problem = rlto.make("pendulum")
    zero = jnp.zeros(1)
    np.testing.assert_allclose(problem.dynamics(jnp.zeros(2), zero, 0, {}), [0.0, 0.0], atol=0)
    np.testing.assert_allclose(
        problem.dynamics(jnp.array([math.pi, 0.0]), zero, 0, {}), [math.pi, 0.0], atol=1e-14
    )
    # With u = 0 and a small step the energy is conserved (semi-implicit Euler: O(dt) wobble).
    config = dataclasses.replace(problem.config, dt=1e-3)

    def step(x, _):
        x = pendulum_module.step(x, zero, config)
        return x, pendulum_module.energy(x, config)

    _, energies = jax.lax.scan(step, jnp.array([2.0, 0.5]), length=2000)
    energies = np.asarray(energies)
    assert np.ptp(energies) > 0  # the state moved
    assert np.ptp(energies) < 1e-2 * abs(energies[0])
    # A torque along the velocity adds energy at the rate u v.
    x = jnp.array([1.0, 1.0])
    e1 = pendulum_module.energy(pendulum_module.step(x, jnp.array([1.0]), config), config)
    e0 = pendulum_module.energy(pendulum_module.step(x, zero, config), config)
    np.testing.assert_allclose((e1 - e0) / config.dt, 1.0, rtol=1e-2)


def test_pendulum_sampler_ranges():
    params = rlto.make("pendulum").sample(jax.random.key(0), 512)["x0"]
    assert np.all(np.abs(params[:, 0]) <= math.pi) and np.all(np.abs(params[:, 1]) <= 1.0)
    assert params[:, 0].min() < -2.5 and params[:, 0].max() > 2.5  # covers hanging and upright


# ---------------------------------------------------------------------------------------------
# Double pendulum and the planar chain.


def _double_pendulum_closed_form(q, v, tau, m1=1.0, m2=1.0, l1=1.0, l2=1.0, g=9.81):
    c2, s2 = math.cos(q[1]), math.sin(q[1])
    mass = np.array(
        [
            [(m1 + m2) * l1**2 + m2 * l2**2 + 2 * m2 * l1 * l2 * c2, m2 * (l2**2 + l1 * l2 * c2)],
            [m2 * (l2**2 + l1 * l2 * c2), m2 * l2**2],
        ]
    )
    h = np.array(
        [
            -m2 * l1 * l2 * s2 * (2 * v[0] * v[1] + v[1] ** 2)
            + (m1 + m2) * g * l1 * math.sin(q[0])
            + m2 * g * l2 * math.sin(q[0] + q[1]),
            m2 * l1 * l2 * s2 * v[0] ** 2 + m2 * g * l2 * math.sin(q[0] + q[1]),
        ]
    )
    return mass, np.linalg.solve(mass, tau - h)


def test_double_pendulum_mass_matrix_closed_form():
    config = double_pendulum.DoublePendulumConfig(m1=1.3, m2=0.7, l1=0.9, l2=1.2)
    chain = double_pendulum.chain_of(config)
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.uniform(-np.pi, np.pi, 2)
        v = rng.uniform(-2, 2, 2)
        tau = rng.uniform(-5, 5, 2)
        mass = np.asarray(double_pendulum.mass_matrix(jnp.asarray(q), chain))
        expected_mass, expected_qdd = _double_pendulum_closed_form(q, v, tau, 1.3, 0.7, 0.9, 1.2)
        np.testing.assert_allclose(mass, mass.T, atol=1e-14)
        assert np.linalg.eigvalsh(mass).min() > 0
        np.testing.assert_allclose(mass, expected_mass, rtol=1e-12)
        qdd = double_pendulum.forward_dynamics(*map(jnp.asarray, (q, v, tau)), chain)
        np.testing.assert_allclose(qdd, expected_qdd, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("which", ["double_pendulum", "manipulator3"])
def test_chain_bias_forces_equal_christoffel_form(which):
    """Newton-Euler C qd + G equals the Christoffel symbols of M plus grad V (autodiff)."""
    module = double_pendulum if which == "double_pendulum" else manipulator3
    config = rlto.make(which).config
    chain = module.chain_of(config)
    mass = functools.partial(double_pendulum.mass_matrix, chain=chain)
    rng = np.random.default_rng(2)
    n = len(chain.lengths)
    for _ in range(3):
        q, qd = jnp.asarray(rng.uniform(-3, 3, n)), jnp.asarray(rng.uniform(-2, 2, n))
        dm = jax.jacfwd(mass)(q)  # dm[k, j, i] = dM_kj / dq_i
        christoffel = jnp.einsum("kji,i,j->k", dm, qd, qd) - 0.5 * jnp.einsum(
            "ijk,i,j->k", dm, qd, qd
        )
        gravity = jax.grad(double_pendulum.potential_energy)(q, chain)
        np.testing.assert_allclose(
            double_pendulum.bias_forces(q, qd, chain), christoffel + gravity, rtol=1e-10, atol=1e-9
        )


def test_double_pendulum_step_equilibria_and_tip():
    single = rlto.make("double_pendulum", substeps=1)
    x = jnp.array([0.3, -0.8, 0.5, 1.1])
    tau = jnp.array([3.0, -2.0])
    _, qdd = _double_pendulum_closed_form(np.asarray(x[:2]), np.asarray(x[2:]), np.asarray(tau))
    v_next = np.asarray(x[2:]) + 0.05 * qdd
    expected = np.concatenate([np.asarray(x[:2]) + 0.05 * v_next, v_next])
    np.testing.assert_allclose(single.dynamics(x, tau, 0, {}), expected, rtol=1e-12)
    # The default step is 4 semi-implicit Euler sub-steps of dt / 4 with the torque held.
    problem = rlto.make("double_pendulum")
    quarter = rlto.make("double_pendulum", substeps=1, dt=0.0125)
    y = x
    for _ in range(4):
        y = quarter.dynamics(y, tau, 0, {})
    np.testing.assert_allclose(problem.dynamics(x, tau, 0, {}), y, rtol=1e-12)
    zero = jnp.zeros(2)
    for rest in ([0.0, 0.0, 0.0, 0.0], [math.pi, 0.0, 0.0, 0.0]):
        np.testing.assert_allclose(problem.dynamics(jnp.array(rest), zero, 0, {}), rest, atol=1e-13)
    np.testing.assert_allclose(
        problem.position(jnp.array([math.pi, 0.0, 0.0, 0.0]), {}), problem.target({}), atol=1e-14
    )
    tip = problem.position(x, {})
    q1, q2 = 0.3, -0.5
    np.testing.assert_allclose(
        tip, [math.sin(q1) + math.sin(q2), -math.cos(q1) - math.cos(q2)], rtol=1e-14
    )
    assert np.all(problem.u_upper < np.array([29.43, np.inf])) and np.all(problem.u_upper > 0)


def test_double_pendulum_passive_rollouts_stay_bounded():
    # With one 0.05 s Euler step, 2 of these 100 states gained energy until they overflowed.
    problem = rlto.make("double_pendulum")
    params = problem.sample(jax.random.key(2_000_003), 100)
    zeros = jnp.zeros((problem.horizon, problem.nu))
    xs = np.asarray(jax.vmap(problem.rollout, in_axes=(None, 0))(zeros, params))
    assert np.isfinite(xs).all() and np.abs(xs[..., 2:]).max() < 30.0


def test_double_pendulum_energy_conserved_without_torque():
    config = double_pendulum.DoublePendulumConfig(dt=1e-3)
    problem = double_pendulum.make_double_pendulum(config)
    chain = double_pendulum.chain_of(config)

    def energy(x):
        return double_pendulum.kinetic_energy(
            x[:2], x[2:], chain
        ) + double_pendulum.potential_energy(x[:2], chain)

    def step(x, _):
        x = problem.dynamics(x, jnp.zeros(2), 0, {})
        return x, energy(x)

    _, energies = jax.lax.scan(step, jnp.array([1.0, 0.5, 0.0, 0.0]), length=1000)
    energies = np.asarray(energies)
    assert np.ptp(energies) < 0.02 * np.abs(energies).max()


@pytest.mark.parametrize("name", ["double_pendulum", "manipulator3"])
def test_planar_chain_steps_keep_float32_and_match_float64(name):
    # The closed-loop policy gradient simulates in float32 (PddpConfig.policy_gradient_dtype);
    # a float64 constant in the chain's dynamics made the double pendulum's sub-step loop
    # change its carry's type, and the step raised.
    problem = rlto.make(name)
    params = problem.sample(jax.random.key(4), 3)
    u = 0.5 * np.asarray(problem.u_upper) * np.array([1.0, -0.7, 0.3][: problem.nu])
    for x in np.asarray(params["x0"]):
        narrow = jnp.asarray(x, jnp.float32), jnp.asarray(u, jnp.float32)
        assert "f64" not in str(jax.make_jaxpr(lambda x, u: problem.dynamics(x, u, 0, {}))(
            *narrow))
        stepped = problem.dynamics(*narrow, 0, {})
        assert stepped.dtype == jnp.float32
        wide = np.asarray(problem.dynamics(jnp.asarray(x), jnp.asarray(u), 0, {}))
        np.testing.assert_allclose(stepped, wide, rtol=1e-5, atol=1e-5 * np.abs(wide).max())


# ---------------------------------------------------------------------------------------------
# Manipulator.


def test_manipulator_stays_put_and_kinetic_energy_two_ways():
    problem = rlto.make("manipulator3")
    config = problem.config
    chain = manipulator3.chain_of(config)
    x = jnp.array([0.4, -1.1, 2.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(problem.dynamics(x, jnp.zeros(3), 0, {}), x)
    rng = np.random.default_rng(1)
    for _ in range(3):
        q = rng.uniform(-np.pi, np.pi, 3)
        qd = rng.uniform(-1, 1, 3)
        kinetic = float(double_pendulum.kinetic_energy(jnp.asarray(q), jnp.asarray(qd), chain))
        # Second way: link COM velocities by finite differences of hand-written kinematics.
        h = 1e-6

        def coms(q):
            phi = np.cumsum(q)
            joints = np.array(config.base) + np.concatenate(
                [[[0.0, 0.0]], np.cumsum(10.0 * np.stack([np.cos(phi), np.sin(phi)], 1), 0)]
            )
            return joints[:-1] + 5.0 * np.stack([np.cos(phi), np.sin(phi)], 1)

        v = (coms(q + h * qd) - coms(q - h * qd)) / (2 * h)
        omega = np.cumsum(qd)
        expected = 0.5 * 0.5 * np.sum(v**2) + 0.5 * (50.0 / 3.0) * np.sum(omega**2)
        np.testing.assert_allclose(kinetic, expected, rtol=1e-8)
    # End effector by hand.
    q = np.array([0.4, -1.1, 2.0])
    phi = np.cumsum(q)
    ee = np.array([-7.0, 0.0]) + 10.0 * np.array([np.cos(phi).sum(), np.sin(phi).sum()])
    np.testing.assert_allclose(problem.position(x, {}), ee, rtol=1e-14)


def test_manipulator_explicit_euler_and_torque_response():
    problem = rlto.make("manipulator3")
    chain = manipulator3.chain_of(problem.config)
    x = jnp.array([0.4, -1.1, 2.0, 0.3, -0.2, 0.1])
    tau = jnp.array([50.0, -20.0, 10.0])
    qdd = double_pendulum.forward_dynamics(x[:3], x[3:], tau, chain)
    mass = double_pendulum.mass_matrix(x[:3], chain)
    expected = jnp.concatenate([x[:3] + 0.05 * x[3:], x[3:] + 0.05 * qdd])
    np.testing.assert_allclose(problem.dynamics(x, tau, 0, {}), expected, rtol=1e-14)
    # From rest, the first acceleration is M^-1 tau (no gravity, no Coriolis at zero velocity).
    rest = x.at[3:].set(0.0)
    step = problem.dynamics(rest, tau, 0, {})
    np.testing.assert_allclose(step[3:] / 0.05, np.linalg.solve(mass, tau), rtol=1e-10)
    # Power balance: d/dt KE = tau . qd (no gravity) along the continuous dynamics.
    qd = x[3:]
    ke_dot = jax.jvp(
        lambda q, v: double_pendulum.kinetic_energy(q, v, chain), (x[:3], qd), (qd, qdd)
    )[1]
    np.testing.assert_allclose(ke_dot, tau @ qd, rtol=1e-10)


def test_manipulator_mirrored_inverse_kinematics():
    problem = rlto.make("manipulator3")
    q = manipulator3.inverse_kinematics(np.array([[-20.0, 0.0], [5.0, 12.0]]))
    mirrored = q + np.stack([q[:, 1], -2 * q[:, 1], q[:, 1]], axis=1)
    for joints in (q, mirrored):
        x = jnp.concatenate([jnp.asarray(joints), jnp.zeros((2, 3))], axis=1)
        ee = jax.vmap(lambda x: problem.position(x, {}))(x)
        np.testing.assert_allclose(ee, [[-20.0, 0.0], [5.0, 12.0]], atol=1e-9)


def test_manipulator_hard_region_inverse_kinematics():
    config = manipulator3.Manipulator3Config()
    states = manipulator3.hard_region(config)
    xs, ys = np.meshgrid(np.linspace(-7, 23, 16), np.linspace(-15, 15, 16), indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    kept = grid[np.hypot(grid[:, 0] + 7.0, grid[:, 1]) <= 30.0]
    assert states.shape == (len(kept), 6) and 100 < len(kept) < 256
    problem = rlto.make("manipulator3")
    ee = jax.vmap(lambda x: problem.position(x, {}))(jnp.asarray(states))
    np.testing.assert_allclose(ee, kept, atol=1e-9)
    assert np.all(np.abs(states[:, :3]) <= np.pi) and np.all(states[:, 3:] == 0)


# ---------------------------------------------------------------------------------------------
# CACTO's point systems, oned, obstacles.


def test_integrator_and_car_steps_match_formulas():
    dt = 0.05
    single = rlto.make("single_integrator")
    x, u = jnp.array([1.0, -2.0]), jnp.array([3.0, -6.0])
    np.testing.assert_allclose(single.dynamics(x, u, 0, {}), [1.0 + dt * 3, -2.0 - dt * 6])
    double = rlto.make("double_integrator")
    x, u = jnp.array([1.0, -2.0, 0.5, -1.5]), jnp.array([2.0, -1.0])
    np.testing.assert_allclose(
        double.dynamics(x, u, 0, {}),
        [1.0 + dt * 0.5, -2.0 - dt * 1.5, 0.5 + dt * 2.0, -1.5 - dt * 1.0],
        rtol=1e-15,
    )
    vehicle = rlto.make("car")
    px, py, th, v, a = 1.0, 2.0, 0.7, 3.0, -1.0
    omega, jerk = 1.5, 0.5
    expected = [
        px + dt * v * math.cos(th) + dt**2 * a * math.cos(th) / 2,
        py + dt * v * math.sin(th) + dt**2 * a * math.sin(th) / 2,
        th + dt * omega,
        v + dt * a,
        a + dt * jerk,
    ]
    got = vehicle.dynamics(jnp.array([px, py, th, v, a]), jnp.array([omega, jerk]), 0, {})
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    np.testing.assert_array_equal(single.u_upper, [6, 6])
    np.testing.assert_array_equal(double.u_upper, [2, 2])
    np.testing.assert_array_equal(vehicle.u_upper, [2, 1])
    assert (single.horizon, double.horizon, vehicle.horizon) == (100, 200, 200)


def test_cacto_cost_matches_formula():
    problem = rlto.make("single_integrator")
    p, u = np.array([4.0, 7.5]), np.array([1.0, -2.0])
    dx, dy = p - np.array([-7.0, 0.0])
    s = (
        math.sqrt(dx**2 + 0.1)
        - math.sqrt(0.1)
        - 0.1
        + math.sqrt(dy**2 + 0.1)
        - math.sqrt(0.1)
        - 0.1
    )
    peak = math.log1p(math.exp(-5 * s)) / 5
    pens = 0.0
    for (xc, yc), (a, b) in [((-2, 0), (6, 10)), ((3, 4), (12, 4)), ((3, -4), (12, 4))]:
        e = (p[0] - xc) ** 2 / (a / 2) ** 2 + (p[1] - yc) ** 2 / (b / 2) ** 2
        pens += math.log1p(math.exp(50 * (1 - e))) / 50
    expected = 1e-5 * (100 * (dx**2 + dy**2) - 5e5 * peak + 5e6 * pens + 10 * (u @ u))
    got = problem.running_cost(jnp.asarray(p), jnp.asarray(u), 0, {})
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # Terminal: the same position terms without the control term.
    np.testing.assert_allclose(
        problem.terminal_cost(jnp.asarray(p), {}), expected - 1e-5 * 10 * (u @ u), rtol=1e-12
    )
    # A target in params replaces the default.
    moved = {"target": jnp.array([4.0, 7.5])}
    assert problem.running_cost(jnp.asarray(p), jnp.zeros(2), 0, moved) < 0


def test_obstacle_terms():
    ellipse = obstacles.CACTO_OBSTACLES[0]
    centre = jnp.asarray(ellipse.center)
    far = jnp.array([30.0, 30.0])
    edge = centre + jnp.array([ellipse.axes[0] / 2, 0.0])
    np.testing.assert_allclose(obstacles.ellipse_penalty(centre, ellipse, 50.0), 1.0, rtol=1e-12)
    assert obstacles.ellipse_penalty(far, ellipse, 50.0) < 1e-100
    np.testing.assert_allclose(obstacles.ellipse_penalty(edge, ellipse), math.log(2) / 50)
    # Scaled by w_ob * 1e-5 = 50 per step at the centre: large against the distance cost there.
    problem = rlto.make("single_integrator")
    at_centre = problem.running_cost(centre, jnp.zeros(2), 0, {})
    nearby = problem.running_cost(centre + jnp.array([-3.5, 0.0]), jnp.zeros(2), 0, {})
    assert at_centre > 49.0 and at_centre - nearby > 45.0
    # Constraint sign: > 0 inside, = 0 on the boundary, < 0 outside.
    assert obstacles.ellipse_constraint(centre, ellipse) == 1.0
    assert abs(obstacles.ellipse_constraint(edge, ellipse)) < 1e-15
    assert obstacles.ellipse_constraint(far, ellipse) < 0
    # The peak is largest at the target, softplus(0.2 a2) / a2.
    target = jnp.array([-7.0, 0.0])
    np.testing.assert_allclose(
        obstacles.peak(target, target, 5.0), math.log1p(math.exp(1.0)) / 5, rtol=1e-14
    )
    assert obstacles.peak(target + 1.0, target, 5.0) < 0.5 * obstacles.peak(target, target, 5.0)


@pytest.mark.parametrize("name", ["single_integrator", "double_integrator", "car", "manipulator3"])
def test_constraint_variant(name):
    with_cost = rlto.make(name)
    with_constraints = rlto.make(name, obstacles="constraint")
    assert with_cost.constraints is None and with_constraints.nc == 3
    assert len(with_constraints.obstacles) == 3
    params = with_cost.sample(jax.random.key(2), 64)["x0"]
    u = jnp.zeros(with_cost.nu)
    for x in params[:16]:
        p = with_cost.position(x, {})
        g = with_constraints.constraints(x, u, 0, {})
        e = [obstacles.ellipse_value(p, ell) for ell in obstacles.CACTO_OBSTACLES]
        np.testing.assert_allclose(g, 1.0 - np.asarray(e), rtol=1e-12)
        penalty = (
            1e-5
            * with_cost.config.w_ob
            * obstacles.obstacle_penalties(p, obstacles.CACTO_OBSTACLES, 50.0)
        )
        np.testing.assert_allclose(
            with_cost.running_cost(x, u, 0, {}) - with_constraints.running_cost(x, u, 0, {}),
            penalty,
            rtol=1e-9,
            atol=1e-12,
        )


@pytest.mark.parametrize(
    "module, name, nx",
    [
        (integrators, "single_integrator", 2),
        (integrators, "double_integrator", 4),
        (car, "car", 5),
    ],
)
def test_hard_region_grid(module, name, nx):
    states = module.hard_region(rlto.make(name).config)
    expected = []
    for x in np.linspace(0, 15, 16):
        for y in np.linspace(-5, 5, 11):
            inside = any(
                (x - xc) ** 2 / (a / 2) ** 2 + (y - yc) ** 2 / (b / 2) ** 2 <= 1
                for (xc, yc), (a, b) in [((-2, 0), (6, 10)), ((3, 4), (12, 4)), ((3, -4), (12, 4))]
            )
            if not inside:
                expected.append((x, y))
    assert states.shape == (len(expected), nx) and 50 < len(expected) < 176
    np.testing.assert_array_equal(states[:, :2], np.array(expected))
    np.testing.assert_array_equal(states[:, 2:], 0.0)


def test_oned_polynomial_and_step():
    problem = rlto.make("oned")
    for root in (1.9, 1.0, 0.6, -0.5, -1.2, -2.1):
        assert abs(float(problem.terminal_cost(jnp.array([root]), {}))) < 1e-12
    x = 0.3
    poly = (x - 1.9) * (x - 1) * (x - 0.6) * (x + 0.5) * (x + 1.2) * (x + 2.1)
    np.testing.assert_allclose(problem.terminal_cost(jnp.array([x]), {}), poly, rtol=1e-14)
    np.testing.assert_allclose(
        problem.running_cost(jnp.array([x]), jnp.array([0.7]), 0, {}), poly + 0.15 * 0.49
    )
    np.testing.assert_allclose(problem.dynamics(jnp.array([x]), jnp.array([0.7]), 0, {}), [0.31])
    # Several local minima: the derivative changes sign five times on [-2.1, 1.9].
    grid = jnp.linspace(-2.1, 1.9, 4001)
    values = np.asarray(jax.vmap(lambda z: oned.polynomial(z, oned.OnedConfig().roots))(grid))
    minima = np.flatnonzero((values[1:-1] < values[:-2]) & (values[1:-1] < values[2:]))
    assert len(minima) == 3


# ---------------------------------------------------------------------------------------------
# LQR.


def test_lqr_matrices_match_dynamics_and_cost():
    problem = rlto.make("lqr")
    a, b, q, r, qf = lqr.matrices(problem.config)
    np.testing.assert_array_equal(a[:2, 2:], 0.1 * np.eye(2))
    np.testing.assert_allclose(b[:2], 0.005 * np.eye(2))
    rng = np.random.default_rng(0)
    x, u = rng.normal(size=4), rng.normal(size=2)
    got = problem.dynamics(jnp.asarray(x), jnp.asarray(u), 0, {})
    np.testing.assert_allclose(got, a @ x + b @ u)
    np.testing.assert_allclose(
        problem.running_cost(jnp.asarray(x), jnp.asarray(u), 0, {}),
        0.5 * x @ q @ x + 0.5 * u @ r @ u,
    )
    np.testing.assert_allclose(problem.terminal_cost(jnp.asarray(x), {}), 0.5 * x @ qf @ x)
    unbounded = rlto.make("lqr", u_max=float("inf"))
    assert not unbounded.has_bounds and problem.has_bounds


def test_lqr_box_active_for_at_least_30_percent():
    problem = rlto.make("lqr")
    gains, _ = lqr.riccati(problem.config)
    a, b, *_ = lqr.matrices(problem.config)
    x = np.asarray(problem.sample(jax.random.key(0), 256)["x0"])
    active = np.zeros(len(x), dtype=bool)
    for k in gains:
        u = x @ k.T
        active |= (np.abs(u) > problem.config.u_max).any(axis=1)
        x = x @ a.T + u @ b.T
    share = active.mean()
    assert share >= 0.3, f"box active for only {share:.0%} of initial states"
    assert np.abs(x).max() < 0.1  # and the unconstrained policy does reach the origin


# ---------------------------------------------------------------------------------------------
# Well-posedness: the TO optimum reaches the target (needs rlto.solve).


def _final_distance(problem, xs):
    ends = jax.vmap(lambda x: problem.position(x, {}))(jnp.asarray(xs[:, -1]))
    return np.linalg.norm(np.asarray(ends) - np.asarray(problem.target({})), axis=1)


def test_lqr_riccati_rollout_cost_is_the_closed_form_value():
    """The problem's cost of the Riccati closed loop equals x0' P0 x0 / 2 (no solver needed)."""
    problem = rlto.make("lqr", u_max=float("inf"))
    gains, values = lqr.riccati(problem.config)
    p0 = values[0]
    a, b, *_ = lqr.matrices(problem.config)
    x0 = np.asarray(problem.sample(jax.random.key(1), 4)["x0"])
    for x in x0:
        xs, us = [x], []
        for k in gains:
            us.append(k @ xs[-1])
            xs.append(a @ xs[-1] + b @ us[-1])
        cost = problem.trajectory_cost(jnp.asarray(np.array(xs)), jnp.asarray(np.array(us)), {})
        np.testing.assert_allclose(cost, 0.5 * x @ p0 @ x, rtol=1e-10)


def test_lqr_well_posed():
    """The boxed optimum saturates for many states and still ends at the origin, at rest."""
    problem = rlto.make("lqr")
    params = problem.sample(jax.random.key(1), 16)
    result = rlto.solve(problem, params)
    assert result.converged.all()
    assert np.all(np.abs(result.us) <= 1.0 + 1e-9)
    assert (np.abs(result.us) > 1.0 - 1e-6).any(axis=(1, 2)).mean() >= 0.3
    assert np.all(_final_distance(problem, result.xs) < 0.05)
    assert np.all(np.abs(result.xs[:, -1, 2:]) < 0.05)


def _pumping_controls(problem, x0, gain=5.0):
    """Energy-pumping warm start rolled out: u = u_max tanh(gain (mgl - E) sign(v)) -> (n, T, 1)."""
    config = problem.config
    top = config.m * config.g * config.l

    def one(x0):
        def step(x, t):
            sign = jnp.where(x[1] >= 0, 1.0, -1.0)
            e = pendulum_module.energy(x, config)
            u = jnp.atleast_1d(config.u_max * jnp.tanh(gain * (top - e) * sign))
            return problem.dynamics(x, u, t, {}), u

        return jax.lax.scan(step, x0, jnp.arange(problem.horizon))[1]

    return jax.vmap(one)(x0)


def _best_of(problem, params, inits, max_iter=200):
    best = None
    for init in inits:
        result = rlto.solve(problem, params, init=init, max_iter=max_iter)
        if best is None:
            best = {"cost": result.cost, "xs": result.xs}
        else:
            better = result.cost < best["cost"]
            best = {
                "cost": np.where(better, result.cost, best["cost"]),
                "xs": np.where(better[:, None, None], result.xs, best["xs"]),
            }
    return best


def test_pendulum_well_posed():
    """From hanging at rest and 15 sampled states, the best of several warm starts ends upright
    and at rest (from hanging, zero controls are a stationary point: pumping is needed)."""
    problem = rlto.make("pendulum")
    n = 16
    params = problem.sample(jax.random.key(1), n)
    params["x0"] = params["x0"].at[0].set(0.0)
    inits = [None, _pumping_controls(problem, params["x0"])]
    inits += [
        jax.random.uniform(jax.random.key(10 + i), (n, problem.horizon, 1), jnp.float64, -3, 3)
        for i in range(3)
    ]
    best = _best_of(problem, params, inits)
    distance = _final_distance(problem, best["xs"])
    assert np.all(distance < 0.03), distance
    assert np.all(np.abs(best["xs"][:, -1, 1]) < 0.1)


def _detour(problem, x0, side):
    """Warm start (xs, us) whose positions go around the obstacles (above: side=1, below: -1)."""
    horizon, dt = problem.horizon, problem.dt
    xs_all, us_all = [], []
    for x in np.asarray(x0):
        way = np.array([x[:2], [11.0, 8.0 * side], [-7.0, 8.0 * side], [-7.0, 0.0]])
        seg = np.linalg.norm(np.diff(way, axis=0), axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        s = np.linspace(0.0, cum[-1], int(0.8 * horizon) + 1)
        pos = np.stack([np.interp(s, cum, way[:, 0]), np.interp(s, cum, way[:, 1])], axis=1)
        pos = np.concatenate([pos, np.repeat(pos[-1:], horizon - len(s) + 1, axis=0)])
        step = np.diff(pos, axis=0) / dt
        xs = np.zeros((horizon + 1, problem.nx))
        xs[:, :2] = pos
        us = np.zeros((horizon, problem.nu))
        if problem.name == "single_integrator":
            us = step
        elif problem.name == "double_integrator":
            xs[:-1, 2:] = step
        elif problem.name == "car":
            xs[:-1, 2] = np.arctan2(step[:, 1], step[:, 0])
            xs[:-1, 3] = np.linalg.norm(step, axis=1)
            xs[-1, 2:] = xs[-2, 2:]
        xs[0] = x
        xs_all.append(xs)
        us_all.append(np.clip(us, problem.u_lower, problem.u_upper))
    return jnp.asarray(np.stack(xs_all)), jnp.asarray(np.stack(us_all))


# CACTO's own test starts (init_states_sim of its configs), at rest.
CACTO_STARTS = [(2, 0), (10, 0), (10, -10), (10, 10), (-10, 10), (-10, -10), (12, 2), (12, -2)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, tolerance, max_iter",
    [("single_integrator", 0.05, 200), ("double_integrator", 0.05, 300), ("car", 0.5, 500)],
)
def test_cacto_point_tasks_well_posed(name, tolerance, max_iter):
    """From CACTO's test starts, the best of zero and two detour warm starts reaches (-7, 0)."""
    problem = rlto.make(name)
    x0 = np.zeros((len(CACTO_STARTS), problem.nx))
    x0[:, :2] = CACTO_STARTS
    params = {"x0": jnp.asarray(x0)}
    inits = [None, _detour(problem, x0, 1), _detour(problem, x0, -1)]
    best = _best_of(problem, params, inits, max_iter=max_iter)
    distance = _final_distance(problem, best["xs"])
    assert np.all(distance < tolerance), distance


def _chain_pumping_controls(problem, x0, gain=1.0):
    """Energy pumping on every joint of the double pendulum, rolled out -> (n, T, 2)."""
    chain = double_pendulum.chain_of(problem.config)
    top = double_pendulum.potential_energy(jnp.array([math.pi, 0.0]), chain)

    def one(x0):
        def step(x, t):
            q, v = x[:2], x[2:]
            energy = double_pendulum.kinetic_energy(q, v, chain) + double_pendulum.potential_energy(
                q, chain
            )
            sign = jnp.where(v >= 0, 1.0, -1.0)
            u = problem.u_upper * jnp.tanh(gain * (top - energy) * sign)
            return problem.dynamics(x, u, t, {}), u

        return jax.lax.scan(step, x0, jnp.arange(problem.horizon))[1]

    return jax.vmap(one)(x0)


@pytest.mark.slow
def test_double_pendulum_well_posed():
    """From 16 sampled states, the best of several warm starts brings the tip upright."""
    problem = rlto.make("double_pendulum")
    n = 16
    params = problem.sample(jax.random.key(1), n)
    inits = [None, _chain_pumping_controls(problem, params["x0"])]
    inits += [
        jax.random.uniform(jax.random.key(10 + i), (n, problem.horizon, 2), jnp.float64, -1, 1)
        * problem.u_upper
        for i in range(3)
    ]
    best = _best_of(problem, params, inits, max_iter=300)
    distance = _final_distance(problem, best["xs"])
    assert np.all(distance < 0.05), distance
    assert np.all(np.abs(best["xs"][:, -1, 2:]) < 0.5)


def _joint_interpolation(problem, x0, mirrored):
    """Warm start (xs, us): joints move linearly (shortest way round) from x0 to an inverse
    kinematics solution of the target within 80% of the horizon; zero torques."""
    q_target = manipulator3.inverse_kinematics(np.array([problem.config.target]))[0]
    if mirrored:  # the other elbow (equal links): (q1 + q2, -q2, q3 + q2)
        q_target = q_target + np.array([q_target[1], -2 * q_target[1], q_target[1]])
    s = np.clip(np.linspace(0.0, 1.25, problem.horizon + 1), 0.0, 1.0)[None, :, None]
    x0 = np.asarray(x0)
    delta = np.angle(np.exp(1j * (q_target[None] - x0[:, :3])))[:, None, :]
    xs = np.zeros((len(x0), problem.horizon + 1, 6))
    xs[:, :, :3] = x0[:, None, :3] + s * delta
    xs[:, 0] = x0
    return jnp.asarray(xs), jnp.zeros((len(x0), problem.horizon, 3))


@pytest.mark.slow
def test_manipulator3_well_posed():
    """From hard-region and sampled states, the best of zero, random and joint-interpolation
    warm starts reaches the end-effector target and nearly stops."""
    problem = rlto.make("manipulator3")
    hard = manipulator3.hard_region(problem.config)
    x0 = np.concatenate(
        [
            hard[np.linspace(0, len(hard) - 1, 4).astype(int)],
            np.asarray(problem.sample(jax.random.key(0), 4)["x0"]),
        ]
    )
    params = {"x0": jnp.asarray(x0)}
    inits = [
        None,
        jax.random.uniform(jax.random.key(3), (8, problem.horizon, 3), jnp.float64, -200, 200),
        _joint_interpolation(problem, x0, mirrored=False),
        _joint_interpolation(problem, x0, mirrored=True),
    ]
    best = _best_of(problem, params, inits, max_iter=300)
    distance = _final_distance(problem, best["xs"])
    assert np.all(distance < 0.05), distance
    assert np.all(np.linalg.norm(best["xs"][:, -1, 3:], axis=1) < 1.0)


@pytest.mark.parametrize("name", ["pendulum", "double_pendulum", "car", "manipulator3"])
def test_angle_coordinates_are_periodic(name):
    """What Problem.angles claims: shifting an angle by 2 pi shifts the next state by 2 pi in
    that coordinate only and leaves the costs unchanged (so (cos, sin) features lose nothing)."""
    problem = rlto.make(name)
    assert problem.angles
    params = {k: np.asarray(v)[0] for k, v in problem.sample(jax.random.key(5), 1).items()}
    x = np.asarray(params["x0"])
    u = 0.3 * np.asarray(problem.u_upper) * np.linspace(-1, 1, problem.nu)
    for i in problem.angles:
        shift = np.zeros(problem.nx)
        shift[i] = 2 * np.pi
        np.testing.assert_allclose(problem.dynamics(x + shift, u, 3, params) - shift,
                                   problem.dynamics(x, u, 3, params), atol=1e-9)
        np.testing.assert_allclose(problem.running_cost(x + shift, u, 3, params),
                                   problem.running_cost(x, u, 3, params), rtol=1e-9)
        np.testing.assert_allclose(problem.terminal_cost(x + shift, params),
                                   problem.terminal_cost(x, params), rtol=1e-9)
