"""rlto.evaluate on the boxed `lqr`: rollouts equal the problem's cost, the Riccati feedback has a
small positive gap and the zero policy a large one, the optimum cache, warm starts.

One test set (n = 16) and one solver setting throughout, so each program compiles once."""

import dataclasses
import importlib
import json
import shutil
import types

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto.evaluate import (
    TEST_SEED,
    Report,
    evaluate,
    optimum_costs,
    optimum_solutions,
    policy_rollout,
    test_params,
    warm_start_study,
)
from rlto.problems.lqr import riccati

evaluate_module = importlib.import_module("rlto.evaluate")

N = 16
SOLVE = {"max_iter": 200, "tol": 1e-6}  # warm_start_study's defaults: one compiled solver


@pytest.fixture(scope="module")
def problem():
    return rlto.make("lqr")


@pytest.fixture(scope="module")
def params(problem):
    return test_params(problem, m=N)


@pytest.fixture(scope="module")
def riccati_policy(problem):
    gains, _ = riccati(problem.config)
    k0 = jnp.asarray(gains[0])
    return lambda x, params: k0 @ x


def unchanged_init(problem, init):
    """What a "solver" returns that stops where it starts: the init's controls (zero for
    None), with zero states and gains."""
    us = np.zeros((N, problem.horizon, 2)) if init is None else np.asarray(init)
    return types.SimpleNamespace(us=us, xs=np.zeros((N, problem.horizon + 1, 4)),
                                 K=np.zeros((N, problem.horizon, 2, 4)))


def zero_policy(x, params):
    return jnp.zeros(2)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("optimum")


@pytest.fixture(scope="module")
def optimum(problem, params, cache_dir):
    return optimum_costs(problem, params, cache_dir=cache_dir, **SOLVE)


def test_test_params_fixed_seed(problem, params):
    again = test_params(problem, m=N)
    np.testing.assert_array_equal(again["x0"], params["x0"])
    assert params["x0"].shape == (N, 4) and params["x0"].dtype == np.float64
    other = test_params(problem, m=N, seed=0)
    assert not np.allclose(other["x0"], params["x0"])
    assert TEST_SEED not in range(1000)  # far from the small seeds training runs use


def test_rollout_cost_is_trajectory_cost(problem, params, riccati_policy):
    xs, us, cost = policy_rollout(problem, riccati_policy, params)
    assert xs.shape == (N, problem.horizon + 1, 4) and us.shape == (N, problem.horizon, 2)
    np.testing.assert_array_equal(xs[:, 0], params["x0"])
    # The Riccati gain asks for more than the box: the rollout applies the clipped controls.
    assert np.max(np.abs(us)) == pytest.approx(1.0)
    for i in range(N):
        p = {k: v[i] for k, v in params.items()}
        assert cost[i] == pytest.approx(float(problem.trajectory_cost(xs[i], us[i], p)), rel=1e-12)
        np.testing.assert_allclose(xs[i], problem.rollout(us[i], p), atol=1e-12)


def test_riccati_policy_small_positive_gap(problem, params, riccati_policy, optimum, cache_dir):
    report = evaluate(problem, riccati_policy, params, cache_dir=cache_dir, **SOLVE)
    assert isinstance(report, Report)
    np.testing.assert_array_equal(report.optimum_cost, optimum)
    assert np.all(report.policy_cost >= report.optimum_cost - 1e-9)
    assert 0.0 < report.gap_percent < 5.0
    assert report.precision < 0.1
    assert report.max_violation == 0.0
    assert 0.0 < np.mean(report.clipped_share) < 1.0
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["gap_percent"] == pytest.approx(report.gap_percent)
    assert len(data["instances"]["policy_cost"]) == N
    assert report.table().row_count >= 5


def test_per_instance_gap_metrics_by_hand():
    """Mean gap, median per-instance gap and share within 1% on numbers checked by hand: one
    failed instance dominates the mean gap but not the median or the share."""
    report = Report(
        problem="hand", policy_cost=np.array([10.05, 20.0, 30.6, 400.0]),
        optimum_cost=np.array([10.0, 20.0, 30.0, 40.0]), final_error=None,
        constraint_violation=np.zeros(4), clipped_share=np.zeros(4),
    )
    np.testing.assert_allclose(report.instance_gaps_percent, [0.5, 0.0, 2.0, 900.0])
    assert report.gap_percent == pytest.approx((460.65 - 100.0) / 100.0 * 100.0)
    assert report.median_gap_percent == pytest.approx(1.25)
    assert report.within_1_percent == 0.5
    assert report.summary()["within_1_percent"] == 0.5
    # Diverged rollouts (NaN cost and error) rank as the worst instances in the medians.
    diverged = dataclasses.replace(
        report, policy_cost=np.array([10.05, np.nan, 30.6, np.nan, 50.0]),
        optimum_cost=np.array([10.0, 20.0, 30.0, 40.0, 40.0]),
        final_error=np.array([0.1, np.nan, 0.3, np.nan, 0.2]),
        constraint_violation=np.zeros(5), clipped_share=np.zeros(5))
    assert diverged.median_gap_percent == pytest.approx(25.0)  # median of 0.5, 2, 25, inf, inf
    assert diverged.precision == pytest.approx(0.3)
    assert np.isnan(diverged.gap_percent)  # the gap of the means drops nothing


def test_zero_policy_large_gap(problem, params, optimum):
    report = evaluate(problem, zero_policy, params, optimum=optimum)
    assert report.gap_percent > 100.0
    assert report.precision > 1.0
    assert np.all(report.clipped_share == 0.0)


def test_optimum_below_unconstrained_bound(problem, params, optimum):
    # The box only raises the cost: J* >= the unconstrained Riccati cost x0' P0 x0 / 2.
    _, values = riccati(problem.config)
    unconstrained = np.einsum("ni,ij,nj->n", params["x0"], values[0], params["x0"]) / 2
    assert np.all(optimum >= unconstrained - 1e-9)
    assert np.any(optimum > unconstrained * (1 + 1e-3))


def test_optimum_cache_hit_does_not_solve(problem, params, optimum, cache_dir, monkeypatch):
    def no_solve(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(evaluate_module, "solve", no_solve)
    again = optimum_costs(problem, params, cache_dir=cache_dir, **SOLVE)
    np.testing.assert_array_equal(again, optimum)


def test_better_extra_init_lowers_cache(problem, params, riccati_policy, tmp_path, monkeypatch):
    # A first "solver" that returns its init unchanged leaves J* at the cost of the inits.
    calls = []

    def lazy_solve(problem, params, init=None, **kwargs):
        calls.append(init)
        return unchanged_init(problem, init)

    monkeypatch.setattr(evaluate_module, "solve", lazy_solve)
    poor = optimum_costs(problem, params, cache_dir=tmp_path, n_random=1, sweeps=0, **SOLVE)
    assert len(calls) == 2  # zero controls, one random sequence
    monkeypatch.undo()

    _, us, rollout_cost = policy_rollout(problem, riccati_policy, params)
    np.testing.assert_array_less(rollout_cost, poor)
    better = optimum_costs(problem, params, cache_dir=tmp_path, extra_inits=[us], **SOLVE)
    assert np.all(better < poor)
    cached = optimum_costs(problem, params, cache_dir=tmp_path, **SOLVE)
    np.testing.assert_array_equal(cached, better)


def test_optimum_solutions_controls_reach_their_cost(problem, params, tmp_path):
    # The controls returned beside J*, rolled out open loop, cost exactly J*; with and without
    # a cache, and the cached call returns the same solutions.
    cost, us = optimum_solutions(problem, params, cache_dir=tmp_path, n_random=0, **SOLVE)
    assert us.shape == (len(cost), problem.horizon, problem.nu)

    def replay(us_one, params_one):
        return problem.trajectory_cost(problem.rollout(us_one, params_one), us_one, params_one)

    replayed = np.asarray(jax.vmap(replay)(jnp.asarray(us), params))
    np.testing.assert_allclose(replayed, cost, rtol=1e-12)
    again_cost, again_us = optimum_solutions(problem, params, cache_dir=tmp_path, **SOLVE)
    np.testing.assert_array_equal(again_us, us)
    np.testing.assert_array_equal(again_cost, cost)
    uncached, _ = optimum_solutions(problem, params, cache_dir="", n_random=0, **SOLVE)
    np.testing.assert_allclose(uncached, cost, rtol=1e-9)


def test_evaluate_refines_a_beaten_optimum(problem, params, riccati_policy, optimum, tmp_path):
    # A cache holding too high a J*: the policy beats it, so evaluate solves from its rollout.
    true = optimum_costs(problem, params, cache_dir=tmp_path, n_random=0, **SOLVE)
    path = evaluate_module.cache_path(problem, params, tmp_path)
    with np.load(path) as data:
        entry = {k: data[k] for k in ("cost", "us", "violation")}
    _, zero_us, zero_cost = policy_rollout(problem, zero_policy, params)
    entry["us"], entry["cost"] = zero_us, zero_cost
    evaluate_module._save_entry(path, entry)
    report = evaluate(problem, riccati_policy, params, cache_dir=tmp_path, **SOLVE)
    np.testing.assert_allclose(report.optimum_cost, true, rtol=1e-9)
    assert 0.0 < report.gap_percent < 5.0


def test_rollout_of_module_policy_does_not_recompile(problem, params):
    linear = eqx.nn.Linear(4, 2, use_bias=False, key=jax.random.key(0))
    linear = eqx.tree_at(lambda m: m.weight, linear, jnp.zeros((2, 4)))

    def apply(model, x, params):
        return model(x)

    policy = jax.tree_util.Partial(apply, linear)
    _, _, zero_cost = policy_rollout(problem, policy, params)
    _, _, expected = policy_rollout(problem, zero_policy, params)
    np.testing.assert_allclose(zero_cost, expected, rtol=1e-12)

    traces = evaluate_module._trace_count
    gains, _ = riccati(problem.config)
    trained = eqx.tree_at(lambda m: m.weight, linear, jnp.asarray(gains[0]))
    _, _, cost = policy_rollout(problem, jax.tree_util.Partial(apply, trained), params)
    assert evaluate_module._trace_count == traces
    assert np.mean(cost) < np.mean(zero_cost) / 10


def test_bad_policy_shape_is_explained(problem, params):
    with pytest.raises(rlto.ProblemError, match="expected \\(2,\\)"):
        policy_rollout(problem, lambda x, p: x, params)


def test_warm_start_from_optimal_feedback(problem, params, riccati_policy, optimum):
    study = warm_start_study(problem, riccati_policy, params, **SOLVE)
    json.dumps(study, allow_nan=False)
    it_policy, it_zero = np.array(study["iterations_policy"]), np.array(study["iterations_zero"])
    assert it_policy.shape == (N,)
    assert np.all(it_policy <= it_zero)
    assert study["iterations_policy_median"] < study["iterations_zero_median"]
    assert study["share_fewer_iterations"] > 0.5
    assert all(study["converged_policy"]) and all(study["converged_zero"])
    np.testing.assert_allclose(study["cost_policy"], study["cost_zero"], rtol=1e-6)
    np.testing.assert_allclose(study["cost_zero"], optimum, rtol=1e-9)
    assert np.sum(study["sim_calls_policy"]) < np.sum(study["sim_calls_zero"])


def test_stale_cache_entry_is_recomputed(
    problem, params, optimum, cache_dir, tmp_path, monkeypatch
):
    # Another problem under the same name and config (a user edited the dynamics) finds the
    # cache file of `lqr`, whose controls no longer give the stored costs: it must not use them.
    changed = rlto.Problem(
        name=problem.name,
        nx=4,
        nu=2,
        horizon=problem.horizon,
        dt=problem.dt,
        dynamics=lambda x, u, t, p: problem.dynamics(x, 2.0 * u, t, p),
        running_cost=problem.running_cost,
        terminal_cost=problem.terminal_cost,
        u_lower=problem.u_lower,
        u_upper=problem.u_upper,
        sample=problem.sample,
        config=problem.config,
    )
    path = evaluate_module.cache_path(changed, params, tmp_path)
    assert path == evaluate_module.cache_path(problem, params, tmp_path)
    shutil.copy(evaluate_module.cache_path(problem, params, cache_dir), path)

    monkeypatch.setattr(evaluate_module, "solve",
                        lambda problem, params, init=None, **kwargs: unchanged_init(problem, init))
    with pytest.warns(UserWarning, match="does not match the problem"):
        recomputed = optimum_costs(changed, params, cache_dir=tmp_path, n_random=0, sweeps=0,
                                   **SOLVE)
    _, _, zero_cost = policy_rollout(changed, zero_policy, params)
    np.testing.assert_allclose(recomputed, zero_cost, rtol=1e-12)
    assert np.all(recomputed > optimum)
