"""rlto.train with PDDP: tiny-budget runs end to end, run-directory artifacts, exact resume."""

import csv
import dataclasses
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto import ProblemError
from rlto.algorithms import pddp
from rlto.algorithms.common import (
    closed_loop_gradient,
    closed_loop_optimizer,
    closed_loop_step,
    compiled_sampler,
    control_authority,
    lower_cost,
)
from rlto.evaluate import as_dtype, closed_loop_cost, policy_rollout
from rlto.nets import make_policy, trainable

TINY = dict(n_problems=8, epochs=2, batch_size=64, hidden=(16, 16), to_max_iter=30)


@pytest.fixture(scope="module")
def lqr():
    return rlto.make("lqr", horizon=20)



@pytest.mark.parametrize("sobolev", ["none", "full", "stochastic"])
def test_tiny_pddp_run_writes_its_artifacts(lqr, tmp_path, sobolev):
    out = tmp_path / sobolev
    run = rlto.train(lqr, algo="pddp", seed=0, iterations=2, out=out, test_size=8,
                     progress=False, sobolev=sobolev, **TINY)
    assert run.iterations == 2
    for name in ("config.json", "metrics.csv", "evaluation.json", "learning_curve.png",
                 "rollouts.png", "policy/policy.json", "checkpoints/ckpt.eqx"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    calls = [int(r["sim_calls"]) for r in rows]
    assert 0 < calls[0] < calls[1]
    config = json.load(open(out / "config.json"))
    assert config["algo_config"]["sobolev"] == sobolev
    loaded = rlto.load_policy(out)
    x = np.asarray(lqr.sample(jax.random.key(1), 1)["x0"][0])
    np.testing.assert_array_equal(loaded(x, {"t": 3.0}), run.policy(x, {"t": 3.0}))


def test_pddp_lowers_the_gap_on_lqr(lqr, tmp_path):
    run = rlto.train(lqr, algo="pddp", seed=0, iterations=6, out=tmp_path, test_size=8,
                     progress=False, **{**TINY, "epochs": 20})
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    gaps = [float(r["test_gap"]) for r in rows]
    assert gaps[-1] < 0.5 * gaps[0], gaps
    assert run.evaluation["gap_percent"] == pytest.approx(gaps[-1])
    assert run.report.n == 8 and run.report.gap_percent == pytest.approx(gaps[-1])


def test_resume_after_kill_gives_identical_numbers(lqr, assert_resume_is_exact):
    assert_resume_is_exact(lqr, "pddp", 3, ("sim_calls", "test_gap"), seed=3, **TINY)


def test_task_input_run_resumes_exactly_and_reloads_from_its_directory(lqr,
                                                                      assert_resume_is_exact):
    run = assert_resume_is_exact(lqr, "pddp", 2, ("sim_calls", "test_gap"), seed=4,
                                 task_input=True, policy_gradient_steps=2, **TINY)
    assert run.policy.task_size == 2  # lqr's p(x) - p* is the 2-D position
    loaded = rlto.load_policy(run.out)  # rebuilds lqr with horizon 20 from policy.json
    params = lqr.sample(jax.random.key(1), 3)
    steps = {**params, "t": jnp.full(3, 5.0)}
    np.testing.assert_array_equal(jax.vmap(loaded)(params["x0"], steps),
                                  jax.vmap(run.policy)(params["x0"], steps))


def test_bad_training_options_are_reported(lqr, tmp_path):
    with pytest.raises(ProblemError, match="unknown algorithm 'ppdp'"):
        rlto.train(lqr, algo="ppdp", iterations=1, out=tmp_path)
    with pytest.raises(ProblemError, match="unknown option"):
        rlto.train(lqr, algo="pddp", iterations=1, out=tmp_path, sobolew="full")
    with pytest.raises(ProblemError, match="sobolev must be one of"):
        pddp.PddpConfig(sobolev="partial")
    with pytest.raises(ProblemError, match="tuple of positive layer widths"):
        pddp.PddpConfig(hidden=256)
    with pytest.raises(ProblemError, match="policy_dtype must be one of"):
        pddp.PddpConfig(policy_dtype="float16")
    with pytest.raises(ProblemError, match="needs a budget"):
        rlto.train(lqr, algo="pddp", out=tmp_path)


def test_resume_refuses_a_different_configuration(lqr, tmp_path):
    rlto.train(lqr, algo="pddp", seed=0, iterations=1, out=tmp_path, test_size=8,
               progress=False, **TINY)
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt.eqx")
    with pytest.raises(ProblemError, match="another configuration"):
        rlto.train(lqr, algo="pddp", seed=1, iterations=2, out=tmp_path, test_size=8,
                   progress=False, **TINY)


def test_resume_accepts_a_run_written_before_an_option_existed(lqr, tmp_path):
    """A run directory whose config predates an option (here `activation`, removed from the
    written file) resumes when the option is at its default, which is the behaviour from before
    it existed, and continues to the same numbers as an uninterrupted run; a run whose option
    was not the default is refused once that option is missing."""
    def predating_activation(out):
        config_file = out / "config.json"
        written = json.loads(config_file.read_text())
        del written["algo_config"]["activation"]
        config_file.write_text(json.dumps(written))

    options = dict(seed=0, out=tmp_path / "old", test_size=8, progress=False, **TINY)
    rlto.train(lqr, algo="pddp", iterations=1, **options)
    predating_activation(tmp_path / "old")
    resumed = rlto.train(lqr, algo="pddp", iterations=2, **options)
    straight = rlto.train(lqr, algo="pddp", iterations=2,
                          **{**options, "out": tmp_path / "straight"})
    assert resumed.iterations == straight.iterations == 2
    np.testing.assert_array_equal(resumed.report.policy_cost, straight.report.policy_cost)

    leaky = {**options, "out": tmp_path / "leaky", "activation": "leaky_relu"}
    rlto.train(lqr, algo="pddp", iterations=1, **leaky)
    predating_activation(tmp_path / "leaky")
    with pytest.raises(ProblemError, match="another configuration"):
        rlto.train(lqr, algo="pddp", iterations=2, **leaky)


def test_lower_cost_picks_per_instance_with_a_margin(lqr):
    params = lqr.sample(jax.random.key(5), 6)
    rough = rlto.solve(lqr, params, max_iter=1)
    fine = rlto.solve(lqr, params, max_iter=50)
    assert np.all(fine.cost < rough.cost)
    picked = lower_cost([rough, fine])
    np.testing.assert_array_equal(picked.cost, fine.cost)
    np.testing.assert_array_equal(picked.us, fine.us)
    np.testing.assert_array_equal(picked.iterations, fine.iterations)
    # Within the margin the first result is kept, instance by instance.
    rel = (rough.cost - fine.cost) / rough.cost
    margin = float(np.median(rel))
    kept = lower_cost([rough, fine], margin=margin)
    np.testing.assert_array_equal(kept.cost, np.where(rel > margin, fine.cost, rough.cost))
    # A NaN instance is replaced by a finite one, never the other way round.
    broken = dataclasses.replace(fine, cost=np.where(np.arange(6) == 2, np.nan, fine.cost))
    mixed = lower_cost([broken, rough])
    assert mixed.cost[2] == rough.cost[2] and np.all(np.isfinite(mixed.cost))
    np.testing.assert_array_equal(lower_cost([rough, broken]).cost[2], rough.cost[2])


def test_best_warm_start_never_trains_on_a_costlier_solve(lqr, tmp_path):
    runs = {}
    for warm in ("policy", "best"):
        rlto.train(lqr, algo="pddp", seed=2, iterations=1, out=tmp_path / warm, test_size=8,
                   progress=False, warm_start=warm, **TINY)
        runs[warm] = next(csv.DictReader(open(tmp_path / warm / "metrics.csv")))
    # Same seed: same policy, same sampled problems; "best" also solves from zero controls.
    assert float(runs["best"]["to_cost"]) <= float(runs["policy"]["to_cost"]) + 1e-12
    assert int(runs["best"]["sim_calls"]) > int(runs["policy"]["sim_calls"])


def test_aggregate_keeps_the_last_iterations_data(lqr):
    config = pddp.PddpConfig(**{**TINY, "aggregate": 2})
    state = pddp.init(lqr, config, jax.random.key(4))
    rows = config.n_problems * lqr.horizon
    assert state.data["x"].shape == (2 * rows, lqr.nx)
    assert float(state.data["w"].sum()) == 0.0  # empty buffer: nothing to learn from yet
    states = [state]
    for _ in range(3):
        states.append(pddp.step(lqr, config, states[-1])[0])
    first, second, third = (s.data for s in states[1:])
    # Iteration 1 fills slot 0 and leaves slot 1 empty; iteration 2 fills slot 1; iteration 3
    # overwrites the oldest (slot 0) and keeps iteration 2's rows.
    assert float(first["w"][:rows].sum()) == rows and float(first["w"][rows:].sum()) == 0.0
    np.testing.assert_array_equal(second["x"][:rows], first["x"][:rows])
    np.testing.assert_array_equal(third["x"][rows:], second["x"][rows:])
    assert not np.array_equal(third["x"][:rows], second["x"][:rows])
    # The stored controls are the TO solution of the stored states' instances: lqr is linear,
    # so re-simulating the stored controls from each stored initial state gives the states.
    xs = np.asarray(third["x"][:rows]).reshape(config.n_problems, lqr.horizon, lqr.nx)
    us = np.asarray(third["u"][:rows]).reshape(config.n_problems, lqr.horizon, lqr.nu)
    params = {"x0": jax.numpy.asarray(xs[:, 0])}
    rolled = np.asarray(jax.vmap(lqr.rollout)(jax.numpy.asarray(us), params))
    np.testing.assert_allclose(rolled[:, : lqr.horizon], xs, rtol=1e-10, atol=1e-12)


def test_dagger_labels_policy_states_with_the_remaining_horizon_optimum(lqr):
    """PDDP's DAgger rows: each relabelled instance starts where the policy's rollout is at t0,
    its rows before t0 weigh nothing, and its controls from t0 on are the optimum of the same
    problem over the remaining T - t0 steps, solved directly (lqr's costs do not depend on t, so
    that is make("lqr", horizon=T - t0) from the rollout's state)."""
    config = pddp.PddpConfig(**{**TINY, "dagger": 2, "to_tol": 1e-12, "to_max_iter": 200})
    state = pddp.init(lqr, config, jax.random.key(5))
    T, rows = lqr.horizon, (config.n_problems + config.dagger) * lqr.horizon
    assert state.data["x"].shape == (rows, lqr.nx)
    params = lqr.sample(jax.random.key(6), config.n_problems)
    xs, us, _ = policy_rollout(lqr, state.policy, params)
    relabelled, calls, iterations = pddp.relabel_policy_states(
        lqr, state.policy, config, np.asarray(xs), np.asarray(us), params, jax.random.key(7))
    assert calls > 0 and iterations > 0
    w = np.asarray(relabelled["w"]).reshape(config.dagger, T)
    t0 = np.argmax(w > 0, axis=1)  # the first weighted step of each instance
    assert np.all(t0 >= 1) and np.all(w[np.arange(T)[None] < t0[:, None]] == 0)
    assert np.all(w[np.arange(T)[None] >= t0[:, None]] == 1)
    x = np.asarray(relabelled["x"]).reshape(config.dagger, T, lqr.nx)
    u = np.asarray(relabelled["u"]).reshape(config.dagger, T, lqr.nu)
    rollout_states = np.asarray(xs).reshape(-1, lqr.nx)
    for i, start in enumerate(t0):
        # The start state is one the policy's rollouts visit at step t0.
        hits = np.flatnonzero(np.all(np.isclose(rollout_states, x[i, start]), axis=1))
        assert np.any(hits % (T + 1) == start)
        shorter = rlto.make("lqr", horizon=T - int(start))
        direct = rlto.solve(shorter, {"x0": x[i, start][None]}, max_iter=200, tol=1e-12)
        np.testing.assert_allclose(u[i, start:], direct.us[0], atol=1e-6)


def test_goal_guess_is_one_more_start_of_the_to_step(lqr, record_starts):
    """goal_guess=True: PDDP's TO step also starts from the goal guess of this iteration's
    instances (after the policy's rollout and zero controls); a problem without goal_state is
    refused with a message naming it."""
    from rlto.evaluate import goal_guess

    pendulum = rlto.make("pendulum")
    seen = record_starts(pddp)
    config = pddp.PddpConfig(**{**TINY, "warm_start": "best", "goal_guess": True})
    pddp.step(pendulum, config, pddp.init(pendulum, config, jax.random.key(18)))
    params, inits = seen[0]
    assert len(inits) == 3 and inits[1] is None
    for got, expected in zip(inits[2], goal_guess(pendulum, params), strict=True):
        np.testing.assert_array_equal(got, expected)
    config = pddp.PddpConfig(**TINY, goal_guess=True)
    with pytest.raises(ProblemError, match="goal_state"):
        pddp.step(lqr, config, pddp.init(lqr, config, jax.random.key(18)))


def test_first_epochs_lengthen_only_the_first_fit(lqr):
    """first_epochs=E: the first iteration takes E epochs of Adam steps (E times one epoch's
    mini-batches), every later one `epochs`; counted by Adam's own step counter."""

    def adam_steps(state):
        counts = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state.opt_state)
                  if "count" in jax.tree_util.keystr(path)]
        return int(np.max(np.asarray(counts[0])))

    steps = {}
    for first in (0, 3):
        config = pddp.PddpConfig(**{**TINY, "epochs": 1, "first_epochs": first})
        one, _ = pddp.step(lqr, config, pddp.init(lqr, config, jax.random.key(19)))
        two, _ = pddp.step(lqr, config, one)
        steps[first] = (adam_steps(one), adam_steps(two))
    per_epoch = steps[0][0]
    assert per_epoch > 0 and steps[0][1] == 2 * per_epoch
    assert steps[3] == (3 * per_epoch, 4 * per_epoch)
    with pytest.raises(ProblemError, match="first_epochs"):
        pddp.PddpConfig(first_epochs=-1)


def test_hard_problems_are_the_costliest_rollouts_of_the_pool(lqr):
    config = pddp.PddpConfig(**{**TINY, "hard_problems": 3, "hard_pool": 16})
    policy = pddp.init(lqr, config, jax.random.key(8)).policy
    uniform = lqr.sample(jax.random.key(9), config.n_problems)
    params = pddp.with_hard_problems(lqr, policy, config, uniform, jax.random.key(10))
    keep = config.n_problems - config.hard_problems
    np.testing.assert_array_equal(params["x0"][:keep], np.asarray(uniform["x0"])[:keep])
    pool = lqr.sample(jax.random.key(10), config.hard_pool)  # the same draws
    pool_cost = np.sort(policy_rollout(lqr, policy, pool)[2])
    hard_cost = np.sort(policy_rollout(lqr, policy, {"x0": params["x0"][keep:]})[2])
    np.testing.assert_allclose(hard_cost, pool_cost[-config.hard_problems:], rtol=1e-12)
    with pytest.raises(ProblemError, match="hard_problems"):
        pddp.PddpConfig(n_problems=4, hard_problems=5)


def test_sim_call_budget_stops_at_the_iteration_that_crosses_it(lqr, tmp_path):
    one = rlto.train(lqr, algo="pddp", seed=0, max_sim_calls=1, out=tmp_path / "one",
                     test_size=8, progress=False, **TINY)
    assert one.iterations == 1
    calls = [int(r["sim_calls"]) for r in csv.DictReader(open(tmp_path / "one" / "metrics.csv"))]
    # One call more than the first iteration spent needs exactly a second iteration.
    two = rlto.train(lqr, algo="pddp", seed=0, max_sim_calls=calls[0] + 1,
                     out=tmp_path / "two", test_size=8, progress=False, **TINY)
    assert two.iterations == 2
    with pytest.raises(ProblemError, match="max_sim_calls"):
        rlto.train(lqr, algo="pddp", out=tmp_path / "none")


def test_control_authority_against_finite_differences():
    """control_authority: ||d f / d u_j||^2 at each sample (central differences of the dynamics,
    an independent path from the Jacobian), scaled to mean 1 over the usable instances, zero for
    the others. On the double pendulum the lighter outer link's torque moves the state more."""
    problem = rlto.make("double_pendulum")
    params = problem.sample(jax.random.key(2), 3)
    us = 0.3 * np.asarray(jax.random.normal(jax.random.key(3), (3, problem.horizon, problem.nu)))
    xs = np.asarray(jax.vmap(problem.rollout)(jax.numpy.asarray(us), params))
    usable = np.array([True, False, True])
    got = control_authority(problem, xs, us, params, usable)
    assert got.shape == (3, problem.horizon, problem.nu)
    assert np.all(got[1] == 0.0)
    h = 1e-6
    raw = np.zeros((3, problem.horizon, problem.nu))
    for i in (0, 2):
        p = {k: v[i] for k, v in params.items()}
        for t in range(problem.horizon):
            for j in range(problem.nu):
                step = h * np.eye(problem.nu)[j]
                diff = (problem.dynamics(xs[i, t], us[i, t] + step, t, p)
                        - problem.dynamics(xs[i, t], us[i, t] - step, t, p)) / (2 * h)
                raw[i, t, j] = float(np.sum(np.asarray(diff) ** 2))
    expected = raw / raw[usable].mean()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    assert got[usable].mean() == pytest.approx(1.0)
    assert np.median(got[usable][..., 1] / got[usable][..., 0]) > 1.0


def test_authority_weights_enter_pddp_and_cost_one_call_per_sample(lqr, tmp_path):
    """control_weights="authority": a tiny run trains, the data carries the weights (lqr is
    linear: f_u = B, equal columns, so every weight is 1), and each iteration's sim calls grow
    by one Jacobian per sample (the first iteration's solves are the same as uniform's)."""
    calls = {}
    for weights in ("uniform", "authority"):
        out = tmp_path / weights
        rlto.train(lqr, algo="pddp", seed=0, iterations=1, out=out, test_size=8,
                   progress=False, control_weights=weights, **TINY)
        calls[weights] = int(next(csv.DictReader(open(out / "metrics.csv")))["sim_calls"])
    assert calls["authority"] - calls["uniform"] == TINY["n_problems"] * lqr.horizon
    config = pddp.PddpConfig(**TINY, control_weights="authority")
    state, _ = pddp.step(lqr, config, pddp.init(lqr, config, jax.random.key(5)))
    used = np.asarray(state.data["w"]) > 0
    np.testing.assert_allclose(np.asarray(state.data["control_weights"])[used], 1.0, rtol=1e-9)
    with pytest.raises(ProblemError, match="control_weights"):
        pddp.PddpConfig(control_weights="torque")


def test_closed_loop_gradient_against_finite_differences_and_without_diverged_rollouts(lqr):
    """closed_loop_gradient: its directional derivative along a random direction in weight
    space equals central differences of the mean closed-loop cost (computed by policy_rollout,
    not differentiated); an instance whose rollout overflows is left out of the mean (the
    gradient equals that of the finite instances alone) and reported not finite."""
    config = pddp.PddpConfig(**{**TINY, "policy_dtype": "float64"})
    policy = pddp.init(lqr, config, jax.random.key(11)).policy
    params = {"x0": jnp.asarray(lqr.sample(jax.random.key(12), 4)["x0"])}
    grad, costs, finite, calls = closed_loop_gradient(lqr, policy, params)
    assert np.all(np.asarray(finite)) and int(calls) == 2 * 4 * lqr.horizon
    np.testing.assert_allclose(costs, policy_rollout(lqr, policy, params)[2], rtol=1e-12)
    weights, frozen = eqx.partition(policy, trainable(policy))
    leaves, treedef = jax.tree.flatten(weights)
    keys = jax.random.split(jax.random.key(13), len(leaves))
    direction = jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype)
                                             for k, a in zip(keys, leaves, strict=True)])

    def mean_cost(scale):
        moved = jax.tree.map(lambda w, d: w + scale * d, weights, direction)
        return float(np.mean(policy_rollout(lqr, eqx.combine(moved, frozen), params)[2]))

    h = 1e-5
    expected = (mean_cost(h) - mean_cost(-h)) / (2 * h)
    got = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grad),
                                                     jax.tree.leaves(direction), strict=True))
    assert got == pytest.approx(expected, rel=1e-5)

    diverged = {"x0": jnp.concatenate([params["x0"], jnp.full((1, lqr.nx), 1e300)])}
    grad_with, _, finite_with, calls = closed_loop_gradient(lqr, policy, diverged)
    np.testing.assert_array_equal(finite_with, [True] * 4 + [False])
    assert int(calls) == 4 * 5 * lqr.horizon  # the gradient pass is redone without it
    for a, b in zip(jax.tree.leaves(grad_with), jax.tree.leaves(grad), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


def test_float32_closed_loop_gradient_matches_float64_on_ur5():
    """policy_gradient_dtype="float32": on ur5 (rlto.robots keeps float32 inputs float32) the
    closed-loop cost computes without a float64 operation, and its costs and gradient agree
    with float64's to float32's precision."""
    ur5 = rlto.make("ur5", horizon=10)
    policy = make_policy(ur5, jax.random.key(21), hidden=(16, 16), task_input=True,
                         dtype=jnp.float32)
    params = compiled_sampler(ur5)(jax.random.key(22), 8)
    one = as_dtype(jax.tree.map(lambda a: a[0], params), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda p: closed_loop_cost(ur5, policy, p, jnp.float32))(one)
    # One float64 scalar is allowed: the time step, which this policy does not read.
    wide = [line for line in str(jaxpr).splitlines() if "f64" in line]
    assert len(wide) == 1 and "convert_element_type" in wide[0], wide
    weights, frozen = eqx.partition(policy, trainable(policy))

    @eqx.filter_jit
    def costs_and_gradient(weights, dtype):
        def mean_cost(w):
            costs = jax.vmap(lambda p: closed_loop_cost(ur5, eqx.combine(w, frozen), p,
                                                        jnp.dtype(dtype)))(params)
            return jnp.mean(costs), costs
        return jax.grad(mean_cost, has_aux=True)(weights)

    grad64, costs64 = costs_and_gradient(weights, "float64")
    grad32, costs32 = costs_and_gradient(weights, "float32")
    assert costs32.dtype == jnp.float32 and np.all(np.isfinite(costs64))
    np.testing.assert_allclose(costs32, costs64, rtol=1e-5)
    a, b = (np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in jax.tree.leaves(grad)])
            for grad in (grad64, grad32))
    assert np.linalg.norm(a - b) < 1e-4 * np.linalg.norm(a)
    with pytest.raises(ProblemError, match="policy_gradient_dtype"):
        pddp.PddpConfig(policy_gradient_dtype="float16")


def test_policy_gradient_steps_lower_the_closed_loop_cost_and_count_their_calls(lqr, tmp_path):
    """PDDP with policy_gradient_steps: from the second iteration on (policy_gradient_after=1)
    each iteration costs exactly G * 2 B T simulator calls more than Alg. 1, and on a fixed
    batch the closed-loop steps lower its mean closed-loop cost."""
    steps, batch = 3, 16
    calls = {}
    for g in (0, steps):
        out = tmp_path / f"g{g}"
        rlto.train(lqr, algo="pddp", seed=0, iterations=2, out=out, test_size=8,
                   progress=False, policy_gradient_steps=g, policy_gradient_batch=batch,
                   **TINY)
        calls[g] = [int(r["sim_calls"]) for r in csv.DictReader(open(out / "metrics.csv"))]
    assert calls[steps][0] == calls[0][0]  # the first iteration is Alg. 1's alone
    assert calls[steps][1] - calls[0][1] == steps * 2 * batch * lqr.horizon
    config = pddp.PddpConfig(**TINY, policy_gradient_steps=1)
    state, _ = pddp.step(lqr, config, pddp.init(lqr, config, jax.random.key(14)))
    params = {"x0": jnp.asarray(lqr.sample(jax.random.key(15), batch)["x0"])}
    policy, opt_state = state.policy, state.closed_loop_opt_state
    before = np.mean(policy_rollout(lqr, policy, params)[2])
    for _ in range(10):
        policy, opt_state, _, share, _ = closed_loop_step(lqr, policy, opt_state, params, 1e-3)
        assert float(share) == 1.0
    assert np.mean(policy_rollout(lqr, policy, params)[2]) < 0.9 * before
    with pytest.raises(ProblemError, match="policy_gradient_batch"):
        pddp.PddpConfig(policy_gradient_batch=0)


def test_resume_with_policy_gradient_steps_gives_identical_numbers(lqr, assert_resume_is_exact):
    assert_resume_is_exact(lqr, "pddp", 3, ("sim_calls", "test_gap"), seed=4,
                           policy_gradient_steps=2, policy_gradient_batch=8,
                           policy_gradient_half_life=3.0, **TINY)


def test_closed_loop_step_size_halves_every_half_life():
    """For a constant gradient Adam's bias-corrected step is exactly the step size, so the
    k-th update is -lr 0.5^(k / half_life)."""
    optimizer = closed_loop_optimizer(1e-3, half_life=10.0)
    weights = {"w": jnp.zeros(3)}
    state = optimizer.init(weights)
    for k in range(25):
        updates, state = optimizer.update({"w": jnp.array([2.0, -0.5, 1e-3])}, state, weights)
        expected = 1e-3 * 0.5 ** (k / 10) * np.array([-1.0, 1.0, -1.0])
        np.testing.assert_allclose(updates["w"], expected, rtol=1e-4)
    with pytest.raises(ProblemError, match="policy_gradient_half_life"):
        pddp.PddpConfig(policy_gradient_half_life=0.0)


def test_closed_loop_only_after_stops_the_to_and_the_regression(lqr):
    """After closed_loop_only_after iterations an iteration solves no TO and keeps the
    supervised data: it costs exactly the G closed-loop steps' 2 B T calls each (here
    simulated in float32)."""
    config = pddp.PddpConfig(**TINY, policy_gradient_steps=2, policy_gradient_batch=8,
                             closed_loop_only_after=1, policy_gradient_dtype="float32")
    first, _ = pddp.step(lqr, config, pddp.init(lqr, config, jax.random.key(16)))
    second, info = pddp.step(lqr, config, first)
    assert int(second.iteration) == 2
    assert int(second.to_iterations) == int(first.to_iterations)
    assert int(second.sim_calls) - int(first.sim_calls) == 2 * 2 * 8 * lqr.horizon
    np.testing.assert_array_equal(second.data["x"], first.data["x"])
    moved = [np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(
        jax.tree.leaves(eqx.filter(second.policy, trainable(second.policy))),
        jax.tree.leaves(eqx.filter(first.policy, trainable(first.policy))), strict=True)]
    assert all(moved)
    assert info["closed_loop_finite"] == 1.0 and np.isfinite(info["closed_loop_cost"])
    with pytest.raises(ProblemError, match="closed_loop_only_after"):
        pddp.PddpConfig(closed_loop_only_after=3)


def test_select_best_deploys_the_iterate_cheapest_on_the_validation_draws(lqr, tmp_path):
    from rlto.training import validation_cost, validation_params

    run = rlto.train(lqr, algo="pddp", seed=2, iterations=4, out=tmp_path, test_size=8,
                     progress=False, select_best=16, **TINY)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    costs = [float(r["validation_cost"]) for r in rows]
    chosen = int(np.argmin(costs)) + 1  # the first iterate at the lowest cost
    assert [int(r["selected_iteration"]) for r in rows][-1] == chosen
    assert [int(r["selected_iteration"]) for r in rows] == [
        int(np.argmin(costs[:k + 1])) + 1 for k in range(len(costs))]
    # The deployed policy is that iterate: its validation cost, and its saved copy.
    validation = validation_params(lqr, 2, 16)
    assert validation_cost(lqr, run.policy, validation) == pytest.approx(costs[chosen - 1])
    loaded = rlto.load_policy(tmp_path)
    x = np.asarray(validation["x0"][0])
    np.testing.assert_array_equal(loaded(x, {"t": 1.0}), run.policy(x, {"t": 1.0}))
    # test_gap is the deployed policy's; latest_test_gap the iterate's own.
    gaps = [float(r["test_gap"]) for r in rows]
    latest = [float(r["latest_test_gap"]) for r in rows]
    assert gaps[-1] == pytest.approx(latest[chosen - 1])
    assert run.evaluation["gap_percent"] == pytest.approx(gaps[-1])
    # The validation rollouts are counted: V T calls per iteration on top of the algorithm's.
    plain = rlto.train(lqr, algo="pddp", seed=2, iterations=4, out=tmp_path / "plain",
                       test_size=8, progress=False, **TINY)
    plain_calls = [int(r["sim_calls"]) for r in csv.DictReader(open(tmp_path / "plain" /
                                                                    "metrics.csv"))]
    assert [int(r["sim_calls"]) for r in rows] == [
        c + (k + 1) * 16 * lqr.horizon for k, c in enumerate(plain_calls)]
    assert plain.iterations == 4 and latest[-1] == pytest.approx(plain.evaluation["gap_percent"])
    assert validation_params(lqr, 2, 16)["x0"].shape == (16, lqr.nx)
    assert not np.allclose(validation_params(lqr, 3, 16)["x0"], validation["x0"])
    with pytest.raises(ProblemError, match="select_best"):
        rlto.train(lqr, algo="pddp", iterations=1, out=tmp_path / "bad", select_best=-1)


def test_resume_with_select_best_gives_identical_numbers(lqr, assert_resume_is_exact):
    run = assert_resume_is_exact(lqr, "pddp", 3, ("sim_calls", "test_gap", "validation_cost",
                                                  "selected_iteration"),
                                 seed=5, select_best=8, **TINY)
    assert run.iterations == 3
