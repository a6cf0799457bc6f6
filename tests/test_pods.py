"""PODS: the action gradient through the simulator, both improvement orders (Newton is exact on
lqr, the first order lowers every pendulum instance within the box), the sim-call count, failed
instances, end-to-end runs and exact resume."""

import csv
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto import ProblemError
from rlto.algorithms import pods
from rlto.algorithms.common import supervised_rows
from rlto.problems import lqr as lqr_problem

TINY = dict(n_problems=8, epochs=2, batch_size=64, hidden=(16, 16))


@pytest.fixture(scope="module")
def lqr():
    return rlto.make("lqr", horizon=20)


@pytest.fixture(scope="module")
def pendulum():
    return rlto.make("pendulum", horizon=30)



def _random_actions(problem, n, key, spread=1.0):
    low, high = spread * problem.u_lower, spread * problem.u_upper
    return np.array(jax.random.uniform(key, (n, problem.horizon, problem.nu), jnp.float64,
                                         low, high))


def _states(problem, actions, params):
    return np.asarray(jax.vmap(problem.rollout)(jnp.asarray(actions), params))


def test_action_gradient_equals_central_differences(pendulum):
    params = pendulum.sample(jax.random.key(0), 3)
    actions = _random_actions(pendulum, 3, jax.random.key(1))
    grad = pods.cost_gradient(pendulum, actions, params)
    cost = jax.jit(jax.vmap(jax.vmap(functools.partial(pods.action_cost, pendulum),
                                     in_axes=(0, None)), in_axes=(0, 0)))
    eps, size = 1e-5, pendulum.horizon * pendulum.nu
    basis = np.eye(size).reshape(size, pendulum.horizon, pendulum.nu)
    plus = cost(actions[:, None] + eps * basis, params)
    minus = cost(actions[:, None] - eps * basis, params)
    fd = (np.asarray(plus) - np.asarray(minus)) / (2 * eps)
    # Rounding in J (~1e2) over 2 eps limits the differences to ~1e-9 absolute.
    np.testing.assert_allclose(grad.reshape(3, size), fd, rtol=1e-6, atol=1e-7)
    assert np.abs(grad).max() > 1e-3  # a real gradient, not zeros on both sides


def test_gauss_newton_model_is_the_exact_derivative_where_the_dynamics_are_linear():
    """The model's gradient is dJ/dA for any dynamics; its Hessian leaves out only the dynamics'
    curvature, so it is d2J/dA2 for linear dynamics under a non-quadratic cost, and differs
    from it on the pendulum."""
    lq = rlto.make("lqr", horizon=12)
    soft = dataclasses.replace(
        lq, name="lqr_logcosh",
        running_cost=lambda x, u, t, p: jnp.sum(jnp.log(jnp.cosh(2.0 * x))) + 0.1 * u @ u
        + 0.05 * jnp.sum(x[:2] * u),
        terminal_cost=lambda x, p: 5.0 * jnp.sum(jnp.log(jnp.cosh(x))))
    swing = rlto.make("pendulum", horizon=12)
    for problem, linear in ((soft, True), (swing, False)):
        params = problem.sample(jax.random.key(10), 1)
        actions = _random_actions(problem, 1, jax.random.key(11), spread=0.5)
        states = _states(problem, actions, params)
        one = {k: v[0] for k, v in params.items()}
        grad, hessian = jax.jit(functools.partial(pods.gauss_newton_model, problem))(
            jnp.asarray(actions[0]), jnp.asarray(states[0]), one)
        flat = jnp.asarray(actions[0]).reshape(-1)

        def cost(a, problem=problem, one=one, shape=actions.shape[1:]):
            return pods.action_cost(problem, a.reshape(shape), one)

        np.testing.assert_allclose(grad, jax.jit(jax.grad(cost))(flat), rtol=1e-10, atol=1e-12)
        exact = np.asarray(jax.jit(jax.hessian(cost))(flat))
        np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)
        if linear:
            np.testing.assert_allclose(hessian, exact, rtol=1e-9, atol=1e-10)
        else:
            assert np.abs(hessian - exact).max() > 1e-3 * np.abs(exact).max()


@pytest.mark.parametrize("hessian", ["gauss_newton", "exact"])
def test_second_order_step_reaches_the_lqr_optimum_in_one_step(hessian):
    problem = rlto.make("lqr", horizon=20, u_max=float("inf"))
    params = problem.sample(jax.random.key(2), 5)
    actions = np.asarray(jax.random.normal(jax.random.key(3), (5, 20, 2)))
    config = pods.PodsConfig(order="second", hessian=hessian, damping=1e-9, n_problems=5)
    result = pods.improve(problem, config, actions, _states(problem, actions, params), params)
    _, values = lqr_problem.riccati(problem.config)
    x0 = np.asarray(params["x0"])
    optimum = 0.5 * np.einsum("ni,ij,nj->n", x0, values[0], x0)
    np.testing.assert_allclose(result.cost, optimum, rtol=1e-8)
    assert np.all(result.cost_before > 2 * optimum)
    gains, _ = lqr_problem.riccati(problem.config)
    np.testing.assert_allclose(result.actions[:, 0], np.einsum("ij,nj->ni", gains[0], x0),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(result.states, _states(problem, result.actions, params),
                               rtol=1e-12, atol=1e-12)


def test_second_order_step_reaches_the_boxed_lqr_optimum_in_one_step(lqr):
    """J is quadratic in A, so the Newton model is exact and its box-constrained minimiser (the
    projected-Newton QP) is the constrained optimum that DDP finds."""
    params = lqr.sample(jax.random.key(8), 5)
    actions = _random_actions(lqr, 5, jax.random.key(9))
    config = pods.PodsConfig(order="second", damping=1e-9, n_problems=5)
    result = pods.improve(lqr, config, actions, _states(lqr, actions, params), params)
    optimum = rlto.solve(lqr, params, max_iter=100, tol=1e-10)
    assert np.mean(np.abs(optimum.us) >= 1 - 1e-9) > 0.1  # the box is active
    np.testing.assert_allclose(result.cost, optimum.cost, rtol=1e-7)
    np.testing.assert_allclose(result.actions, optimum.us, atol=1e-4)


@pytest.mark.parametrize("order", ["first", "second"])
def test_improvement_lowers_every_pendulum_cost_within_the_bounds(pendulum, order):
    n = 6
    params = pendulum.sample(jax.random.key(4), n)
    # Some actions start outside the box: they are projected before the first evaluation.
    actions = _random_actions(pendulum, n, jax.random.key(5), spread=1.2)
    config = pods.PodsConfig(order=order, n_problems=n, improvement_steps=2)
    clipped = np.clip(actions, pendulum.u_lower, pendulum.u_upper)
    result = pods.improve(pendulum, config, actions, _states(pendulum, clipped, params), params)
    before = np.asarray(jax.vmap(functools.partial(pods.action_cost, pendulum))(
        jnp.asarray(clipped), params))
    np.testing.assert_allclose(result.cost_before, before, rtol=1e-12)
    assert np.all(result.cost < result.cost_before), (result.cost, result.cost_before)
    assert np.all(result.actions >= pendulum.u_lower) and np.all(result.actions <= pendulum.u_upper)
    rolled = _states(pendulum, result.actions, params)
    np.testing.assert_allclose(result.states, rolled, rtol=1e-12, atol=1e-12)
    again = np.asarray(jax.vmap(functools.partial(pods.action_cost, pendulum))(
        jnp.asarray(result.actions), params))
    np.testing.assert_allclose(result.cost, again, rtol=1e-12)


def test_a_failed_instance_keeps_its_actions_and_gets_no_weight(pendulum):
    n = 4
    params = pendulum.sample(jax.random.key(6), n)
    actions = _random_actions(pendulum, n, jax.random.key(7))
    actions[2, 5] = np.nan
    config = pods.PodsConfig(n_problems=n)
    result = pods.improve(pendulum, config, actions, _states(pendulum, actions, params), params)
    usable = pods._usable(result)
    np.testing.assert_array_equal(usable, [True, True, False, True])
    assert np.all(result.cost[usable] < result.cost_before[usable])
    policy = pods.init(pendulum, config, jax.random.key(0)).policy
    rows = supervised_rows(pendulum, policy, result.states, result.actions, params, usable)
    w = np.asarray(rows["w"]).reshape(n, pendulum.horizon)
    np.testing.assert_array_equal(w, usable[:, None] * np.ones((1, pendulum.horizon)))
    assert np.all(np.isfinite(rows["x"])) and np.all(np.isfinite(rows["u"]))


@pytest.mark.parametrize("order, hessian", [("first", "exact"), ("second", "gauss_newton"),
                                            ("second", "exact")])
def test_sim_calls_follow_the_documented_count(lqr, order, hessian):
    config = pods.PodsConfig(order=order, hessian=hessian, improvement_steps=2,
                             line_search_steps=3, **TINY)
    state = pods.init(lqr, config, jax.random.key(0))
    state, info = pods.step(lqr, config, state)
    n, T, nu = 8, lqr.horizon, lqr.nu
    gradient = {"first": 2 * n * T, "gauss_newton": n * T, "exact": 2 * n * T + 2 * n * T * T * nu}
    per_improvement = gradient["first" if order == "first" else hessian] + 3 * n * T
    assert int(state.sim_calls) == n * T + 2 * per_improvement
    assert int(state.sim_calls) == pods.sim_calls_per_step(lqr, config)
    assert int(state.to_iterations) == 2 * n and int(state.iteration) == 1
    assert info["cost_after"] < info["cost_before"] and 0 < info["accepted"] <= 1
    assert all(isinstance(v, float) for v in info.values())


@pytest.mark.parametrize("order", ["first", "second"])
def test_tiny_pods_run_end_to_end(lqr, tmp_path, order):
    run = rlto.train(lqr, algo="pods", seed=0, iterations=2, out=tmp_path, test_size=8,
                     progress=False, order=order, **TINY)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 2 and run.iterations == 2
    for key in ("test_gap", "cost_before", "cost_after", "accepted", "regression_loss"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    assert all(float(r["cost_after"]) < float(r["cost_before"]) for r in rows)
    calls = [int(r["sim_calls"]) for r in rows]
    step_calls = pods.sim_calls_per_step(lqr, pods.PodsConfig(order=order, **TINY))
    assert calls == [step_calls, 2 * step_calls]


def test_resume_gives_identical_numbers(lqr, assert_resume_is_exact):
    resumed = assert_resume_is_exact(
        lqr, "pods", 2, ("sim_calls", "test_gap", "cost_after", "regression_loss"), seed=3,
        **TINY)
    assert resumed.iterations == 2


def test_bad_pods_options():
    with pytest.raises(ProblemError, match="order must be one of"):
        pods.PodsConfig(order="third")
    with pytest.raises(ProblemError, match="hessian must be one of"):
        pods.PodsConfig(hessian="bfgs")
    with pytest.raises(ProblemError, match="sobolev must be 'none'"):
        pods.PodsConfig(sobolev="full")
    with pytest.raises(ProblemError, match="step_size must be a positive"):
        pods.PodsConfig(step_size=0.0)
    with pytest.raises(ProblemError, match="damping must be positive"):
        pods.PodsConfig(damping=-1.0)
    with pytest.raises(ProblemError, match="line_search_steps must be a positive integer"):
        pods.PodsConfig(line_search_steps=0)
    with pytest.raises(ProblemError, match="improvement_steps must be a positive integer"):
        pods.PodsConfig(improvement_steps=0)
