"""CACTO and CACTO-SL: TD(N) targets, the actor's Q gradient, the delayed-start episodes, the
replay buffer, the critic's Sobolev term, the oned value function against dynamic programming,
and tiny runs end to end with exact resume."""

import csv
import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from benchmarks.cacto_oned import oned_dynamic_programming
from rlto import ProblemError
from rlto.algorithms import cacto, common
from rlto.evaluate import (
    finite_prefix,
    hard_region,
    warm_start_comparison,
    warm_start_pair,
    warm_start_solutions,
)
from rlto.losses import td_n_targets
from rlto.nets import TIME_KEY, trainable

TINY = dict(n_problems=8, epochs=2, batch_size=32, hidden=(16, 16), critic_hidden=(16, 16),
            updates_per_iteration=20, update_batch_size=16, buffer_size=512, to_max_iter=30)


def test_td_n_targets_match_a_hand_computed_episode():
    running = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])  # l_0..l_4, T = 5
    terminal = np.array([10.0])
    partial, boot_step, bootstrap = (np.asarray(a) for a in td_n_targets(running, terminal, 2))
    # t=0: l0+l1 then V(x_2); t=2: l2+l3 then V(x_4); t=3: l3+l4+lT (window reaches T).
    np.testing.assert_allclose(partial[0], [3.0, 5.0, 7.0, 19.0, 15.0])
    np.testing.assert_array_equal(boot_step[0], [2, 3, 4, 5, 5])
    np.testing.assert_array_equal(bootstrap[0], [True, True, True, False, False])
    # N >= T: Monte Carlo cost-to-go everywhere.
    partial, _, bootstrap = (np.asarray(a) for a in td_n_targets(running, terminal, 50))
    np.testing.assert_allclose(partial[0], [25.0, 24.0, 22.0, 19.0, 15.0])
    assert not bootstrap.any()
    with pytest.raises(ValueError, match="N >= 1"):
        td_n_targets(running, terminal, 0)


def _float64_networks(problem, seed=0):
    config = cacto.CactoConfig(hidden=(16, 16), critic_hidden=(16, 16), policy_dtype="float64")
    state = cacto.init(problem, config, jax.random.key(seed))
    return config, state.policy, state.critic


@pytest.mark.parametrize("lookahead", [1, 3])
def test_actor_gradient_equals_finite_differences_of_q(lookahead):
    problem = rlto.make("double_integrator")
    _, actor, critic = _float64_networks(problem)
    params = {k: np.asarray(v) for k, v in problem.sample(jax.random.key(1), 6).items()}
    batch = {"x": params["x0"], "params": params,
             "t": np.array([0.0, 5.0, 50.0, 100.0, 198.0, 199.0])}  # 199: V(., T) = l_T
    offset, scale = jnp.asarray(0.3), jnp.asarray(2.0)
    weights, frozen = eqx.partition(actor, trainable(actor))  # normalisation is frozen

    def loss(w):
        return cacto.actor_loss(eqx.combine(w, frozen), problem, critic, offset, scale, batch,
                                lookahead)

    grad = jax.grad(loss)(weights)
    direction = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape, a.dtype),
                             weights)
    eps = 1e-6
    plus = loss(jax.tree.map(lambda a, d: a + eps * d, weights, direction))
    minus = loss(jax.tree.map(lambda a, d: a - eps * d, weights, direction))
    numeric = (plus - minus) / (2 * eps)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad),
                                                  jax.tree.leaves(direction), strict=True))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    # And Q itself is H running costs of the actor's rollout + V there (l_T once the rollout
    # reaches T, running costs past T dropped), checked by hand at an early and a late step.
    p = {k: v[0] for k, v in params.items()}
    for t in (5.0, 198.0, 199.0):
        x, expected, s = params["x0"][0], 0.0, t
        while s < min(t + lookahead, problem.horizon):
            u = actor(x, {**p, TIME_KEY: s})
            expected += problem.running_cost(x, u, s, p)
            x, s = problem.dynamics(x, u, s, p), s + 1
        if s >= problem.horizon:
            expected += problem.terminal_cost(x, p)
        else:
            expected += cacto.value(critic, offset, scale, x, {**p, TIME_KEY: s})
        got = cacto.q_value(problem, actor, critic, offset, scale, params["x0"][0], p, t,
                            lookahead)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_delayed_start_solves_the_remaining_horizon():
    """An episode from t0 is the shorter problem: oned is time-invariant, so its optimum from
    (x0, t0) equals the optimum of the T - t0 step problem from x0."""
    problem = rlto.make("oned", horizon=12)
    x0 = np.array([[-1.5], [0.3], [1.8]])
    t0 = np.array([0.0, 4.0, 9.0])
    delayed = common.delayed_start(problem)
    result = rlto.solve(delayed, {"x0": x0, "t0": t0}, max_iter=200, tol=1e-10)
    for i in range(3):
        short = rlto.make("oned", horizon=12 - int(t0[i]))
        reference = rlto.solve(short, {"x0": x0[i : i + 1]}, max_iter=200, tol=1e-10)
        np.testing.assert_allclose(result.cost[i], reference.cost[0], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(result.xs[i, int(t0[i]):], reference.xs[0], atol=1e-5)
        np.testing.assert_allclose(result.xs[i, : int(t0[i]) + 1], x0[i][None].repeat(
            int(t0[i]) + 1, 0))  # held still until t0
    assert delayed is common.delayed_start(problem)  # cached: one compiled solver


def test_episode_transitions_hold_monte_carlo_cost_to_go_and_skip_steps_before_t0():
    problem = rlto.make("oned", horizon=10)
    params = {"x0": np.array([[-1.0], [1.5]])}
    t0 = np.array([0, 6])
    delayed = common.delayed_start(problem)
    result = rlto.solve(delayed, {**params, "t0": t0.astype(float)})
    tr = cacto.episode_transitions(problem, result, params, t0, n_steps=3)
    assert tr["x"].shape[0] == 10 + 4
    np.testing.assert_array_equal(tr["t"], [*range(10), 6, 7, 8, 9])
    # A window reaching T holds the whole remaining cost: compare with a by-hand sum.
    xs, us = result.xs[1], result.us[1]
    by_hand = sum(float(problem.running_cost(xs[t], us[t], t, {})) for t in range(7, 10))
    by_hand += float(problem.terminal_cost(xs[10], {}))
    row = np.nonzero((tr["t"] == 7) & (tr["params"]["x0"][:, 0] == 1.5))[0][0]
    np.testing.assert_allclose(tr["partial"][row], by_hand, rtol=1e-10)
    assert not tr["bootstrap"][row]
    row0 = 2  # episode 0, t = 2: bootstrapped from x_5
    assert tr["bootstrap"][row0] and tr["t_boot"][row0] == 5
    np.testing.assert_array_equal(tr["x_boot"][row0], result.xs[0, 5])
    np.testing.assert_array_equal(tr["Vx"][row0], result.Vx[0, 2])
    assert tr["converged"].all()
    # An episode stopped by the iteration limit keeps its transitions, flagged unconverged.
    capped = dataclasses.replace(result, status=np.array([0, 1]),
                                 converged=np.array([True, False]))
    flags = cacto.episode_transitions(problem, capped, params, t0, n_steps=3)["converged"]
    np.testing.assert_array_equal(flags, tr["params"]["x0"][:, 0] == -1.0)


def test_replay_buffer_wraps_around_and_keeps_the_newest():
    problem = rlto.make("oned")
    buffer = cacto.new_buffer(problem, capacity=5)

    def transitions(start, m):
        values = np.arange(start, start + m, dtype=float)
        return {"x": values[:, None], "t": values, "params": {"x0": values[:, None]},
                "partial": values, "x_boot": values[:, None], "t_boot": values,
                "bootstrap": np.ones(m, bool), "Vx": values[:, None],
                "converged": np.ones(m, bool)}

    buffer = cacto.add_transitions(buffer, transitions(0, 3))
    assert int(buffer["size"]) == 3 and int(buffer["next"]) == 3
    buffer = cacto.add_transitions(buffer, transitions(3, 4))  # 0..6 into 5 slots
    assert int(buffer["size"]) == 5 and int(buffer["next"]) == 2
    np.testing.assert_array_equal(buffer["partial"], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer["params"]["x0"][:, 0], [5, 6, 2, 3, 4])
    buffer = cacto.add_transitions(buffer, transitions(10, 8))  # more than the capacity
    assert sorted(buffer["t"]) == [13, 14, 15, 16, 17]


def test_critic_sobolev_term_measures_the_value_gradient_error():
    problem = rlto.make("double_integrator")
    config = cacto.CactoSlConfig(hidden=(16, 16), critic_hidden=(16, 16),
                                 policy_dtype="float64", value_gradient_weight=1.0)
    state = cacto.init(problem, config, jax.random.key(0))
    critic, offset, scale = state.critic, jnp.asarray(1.0), jnp.asarray(3.0)
    m = 5
    x = np.asarray(problem.sample(jax.random.key(3), m)["x0"])
    t = np.arange(m, dtype=float)
    grad_v = jax.vmap(jax.grad(lambda x_, t_: cacto.value(critic, offset, scale, x_,
                                                          {TIME_KEY: t_})))(x, t)
    delta = np.asarray(jax.random.normal(jax.random.key(4), x.shape))
    batch = {"x": x, "params": {"x0": x}, "t": t, "partial": np.zeros(m), "x_boot": x,
             "t_boot": t, "bootstrap": np.zeros(m, bool), "converged": np.ones(m, bool)}
    _, (_, exact, _) = cacto.critic_loss(critic, critic, offset, scale,
                                         {**batch, "Vx": np.asarray(grad_v)}, config)
    _, (_, off, _) = cacto.critic_loss(critic, critic, offset, scale,
                                       {**batch, "Vx": np.asarray(grad_v) + delta}, config)
    spread = np.asarray(critic.in_scale[: problem.nx])
    assert float(exact) < 1e-20
    squared_error = np.sum((delta / 3.0 * spread) ** 2, 1)
    np.testing.assert_allclose(off, np.mean(squared_error), rtol=1e-9)
    target = np.asarray(grad_v) + delta
    # By default (value_gradient_from="converged") Vx is learnt only from the transitions of
    # converged episodes; "all" learns every transition's.
    some = np.array([True, False, True, False, False])
    partly = {**batch, "Vx": target, "converged": some}
    _, (_, off_converged, _) = cacto.critic_loss(critic, critic, offset, scale, partly, config)
    np.testing.assert_allclose(off_converged, np.sum(squared_error[some]) / m, rtol=1e-9)
    every = dataclasses.replace(config, value_gradient_from="all")
    _, (_, off_all, _) = cacto.critic_loss(critic, critic, offset, scale, partly, every)
    np.testing.assert_allclose(off_all, np.mean(squared_error), rtol=1e-9)
    with pytest.raises(ProblemError, match="value_gradient_from"):
        cacto.CactoSlConfig(value_gradient_from="optimal")


def test_oned_value_function_minimiser_is_the_global_optimum():
    """On `oned` with T = 5 the wells compete: dynamic programming puts the best start in the
    deep left well (x ~ -1.97), 1.4 below the middle well at x ~ 0. The critic's V(x, 0)
    must put its minimiser there too."""
    problem = rlto.make("oned", horizon=5)
    x_grid = np.linspace(-2.2, 2.2, 2201)
    dp = oned_dynamic_programming(problem, x_grid, np.linspace(-1, 1, 201))[0]
    inside = np.abs(x_grid) <= 2.0
    best = x_grid[inside][np.argmin(dp[inside])]
    assert -2.0 <= best < -1.9
    config = cacto.CactoConfig(n_problems=64, updates_per_iteration=2000, hidden=(32, 32),
                               critic_hidden=(64, 64), epochs=5, target_update_rate=0.02)
    state = cacto.init(problem, config, jax.random.key(0))
    for _ in range(4):
        state, _ = cacto.step(problem, config, state)
    grid = np.linspace(-2, 2, 401)
    learned = np.asarray(jax.vmap(lambda x: cacto.value(
        state.critic, state.value_offset, state.value_scale, x, {TIME_KEY: 0.0}))(grid[:, None]))
    assert abs(grid[np.argmin(learned)] - best) < 0.1
    middle = np.interp(0.015, x_grid, dp)
    np.testing.assert_allclose(np.interp(0.015, grid, learned), middle, atol=0.5)


@pytest.mark.parametrize("algo,options", [
    ("cacto", {}),
    ("cacto-sl", {}),
    ("cacto", {"initial_states": "biased", "random_start_share": 1.0}),
    ("cacto", {"actor_lookahead": 3}),
])
def test_every_variant_runs_end_to_end(tmp_path, algo, options):
    problem = rlto.make("single_integrator", horizon=20)
    run = rlto.train(problem, algo=algo, seed=0, iterations=2, out=tmp_path, test_size=8,
                     progress=False, **TINY, **options)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    calls = [int(r["sim_calls"]) for r in rows]
    assert 0 < calls[0] < calls[1]
    assert np.isfinite(float(rows[-1]["critic_td"]))
    assert 0 <= int(rows[-1]["converged_episodes"]) <= int(rows[-1]["usable_episodes"])
    assert (tmp_path / "rollouts.png").stat().st_size > 0
    assert run.iterations == 2


def test_resume_after_kill_gives_identical_numbers(assert_resume_is_exact):
    problem = rlto.make("single_integrator", horizon=20)
    assert_resume_is_exact(problem, "cacto-sl", 3, ("critic_td",), seed=1, **TINY)


def test_bad_cacto_options():
    with pytest.raises(ProblemError, match="initial_states"):
        cacto.CactoConfig(initial_states="smart")
    with pytest.raises(ProblemError, match="random_start_share"):
        cacto.CactoConfig(random_start_share=1.5)
    with pytest.raises(ProblemError, match="critic_hidden"):
        cacto.CactoConfig(critic_hidden=(0,))
    with pytest.raises(ProblemError, match="target_update_rate"):
        cacto.CactoConfig(target_update_rate=0.0)
    with pytest.raises(ProblemError, match="actor_lookahead"):
        cacto.CactoConfig(actor_lookahead=0)


def test_cacto_benchmark_grammar_and_table(tmp_path):
    from benchmarks import cacto as bench

    assert bench.variant_config("cacto-sl+bic", {"n_problems": 4}).initial_states == "biased"
    assert isinstance(bench.variant_config("cacto-sl", {}), cacto.CactoSlConfig)
    with pytest.raises(ProblemError, match="unknown variant"):
        bench.variant_config("cacto+fast", {})
    evaluation = {"episodes": 8, "wall_seconds": 60.0, "cost_policy_mean": -2.0,
                  "cost_random_mean": 1.0, "cost_random_controls_mean": 0.25,
                  "cost_ics_mean": 0.5,
                  "share_lower_than_random": 0.75, "share_lower_equal_than_random": 1.0,
                  "share_lower_than_random_controls": 0.25,
                  "share_lower_equal_than_random_controls": 1.0,
                  "share_lower_than_ics": 0.5, "share_lower_equal_than_ics": 0.5}
    runs = [[{**evaluation, "share_lower_than_random": share}] for share in (0.5, 0.75, 1.0)]
    settings = {"date": "d", "command": "c", "machine": {"processor": "p", "cpu_count": 2,
                                                         "jax_device": "cpu"}}
    (tmp_path / "cacto_car.json").write_text(
        json.dumps({"settings": settings, "results": {"cacto": runs}}))
    table = bench.markdown(tmp_path)
    assert "| car | cacto | 3 | 8 | 75.0 (100.0) [50.0, 100.0] | 25.0 (100.0) [25.0, 25.0] " \
           "| 50.0 (50.0) [50.0, 50.0] | - | 100.0, 92.9 | -2 (0) | 1 | 0.25 | 0.5 | 1.00 " \
           "| 22.4 |" in table
    # measured when "random" meant random controls: shown in that column, random values "-"
    old = {k: v for k, v in evaluation.items() if "random_controls" not in k}
    (tmp_path / "cacto_car.json").write_text(
        json.dumps({"settings": settings, "results": {"cacto": [[old]]}}))
    assert "| - | 75.0 (100.0) [75.0, 75.0] | 50.0 (50.0) [50.0, 50.0] | - | 100.0, 92.9 " \
           "| -2 (0) | nan | 1 | 0.5 |" in bench.markdown(tmp_path)
    # a run whose TO cost is not finite on some instance (mean None): counted, not averaged
    runs[1][-1]["cost_policy_mean"], runs[1][-1]["cost_policy_nonfinite"] = None, 2
    (tmp_path / "cacto_car.json").write_text(
        json.dumps({"settings": settings, "results": {"cacto": runs}}))
    assert "| -2 (0), 1 runs not finite |" in bench.markdown(tmp_path)
    assert bench.progress_line({**runs[1][-1], "n": 9}).endswith("mean cost not finite on 2 of 9")


def test_cacto_benchmark_saves_each_run_and_survives_a_failed_one(tmp_path, monkeypatch, capsys):
    """run_jobs: a job that raises is reported and left out (None) while the others are saved
    as they finish; a second call reads the saved runs instead of running them again, and runs
    a job whose settings changed."""
    from benchmarks import cacto as bench

    calls = []

    def run_job(job):
        calls.append((job.variant, job.seed))
        if job.seed == 1:
            raise FloatingPointError("diverged")
        return [{"loop": job.loops, "seed": job.seed}]

    monkeypatch.setattr(bench, "run_job", run_job)
    jobs = [bench.Job("car", {}, "cacto", seed, {"hidden": (8, 8)}, {}, 2, 1, 10, 1.0)
            for seed in range(3)]
    runs = bench.run_jobs(jobs, 1, tmp_path / "runs")
    assert runs == [[{"loop": 2, "seed": 0}], None, [{"loop": 2, "seed": 2}]]
    assert "cacto seed 1 FAILED" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["car_cacto_0.json",
                                                                     "car_cacto_2.json"]
    calls.clear()
    jobs[2] = jobs[2]._replace(loops=3)
    runs = bench.run_jobs(jobs, 1, tmp_path / "runs")
    assert calls == [("cacto", 1), ("cacto", 2)]
    assert runs == [[{"loop": 2, "seed": 0}], None, [{"loop": 3, "seed": 2}]]


@pytest.mark.slow
def test_cacto_benchmark_quick_run_writes_its_outputs(tmp_path):
    from benchmarks import cacto as bench

    assert bench.main(["--quick", "--variants", "cacto,ddpg", "--out", str(tmp_path)]) == 0
    for name in ("cacto_single_integrator.json", "cacto_single_integrator.png", "cacto.md"):
        assert (tmp_path / name).stat().st_size > 0
    results = json.loads((tmp_path / "cacto_single_integrator.json").read_text())["results"]
    assert len(results["ddpg"]) == 2 and results["ddpg"][0][-1]["sim_calls"] > 0
    assert "| single_integrator | ddpg | 2 |" in (tmp_path / "cacto.md").read_text()


def test_warm_start_comparison_on_a_convex_problem_finds_only_ties():
    """lqr is convex: TO from every warm start reaches the same optimum, so the policy's warm
    start is never strictly lower and always lower-or-equal (CACTO's table, both columns)."""
    problem = rlto.make("lqr", horizon=20)
    policy = cacto.init(problem, cacto.CactoConfig(hidden=(8, 8), critic_hidden=(8, 8)),
                        jax.random.key(0)).policy
    params = {k: np.asarray(v) for k, v in problem.sample(jax.random.key(1), 12).items()}
    solutions = warm_start_solutions(problem, policy, params, jax.random.key(2), tol=1e-10)
    table = warm_start_comparison(solutions)
    for other in ("random", "random_controls", "ics"):
        assert table[f"share_lower_than_{other}"] == 0.0
        assert table[f"share_lower_equal_than_{other}"] == 1.0
        np.testing.assert_allclose(table["cost_policy"], table[f"cost_{other}"], rtol=1e-6)
    assert table["share_best"] == 1.0


def test_warm_starts_take_a_diverged_rollouts_finite_prefix():
    """A policy whose controls turn NaN (a diverged rollout) on one instance from step 5 on:
    neither warm-start study (CACTO's table, Fig. 7's pair) raises, and that instance's policy
    warm start is its first five controls followed by zeros, as if passed by hand; the other
    instances keep their rollout's controls."""
    problem = rlto.make("single_integrator", horizon=20)
    params = {k: np.asarray(v) for k, v in problem.sample(jax.random.key(1), 3).items()}
    x0_bad = jnp.asarray(params["x0"][1])

    def policy(x, p):
        bad = jnp.all(p["x0"] == x0_bad) & (p[TIME_KEY] >= 5)
        return jnp.where(bad, jnp.nan, jnp.full(2, 0.5))

    solutions = warm_start_solutions(problem, policy, params, jax.random.key(2), max_iter=5)
    expected = np.full((3, 20, 2), 0.5)
    expected[1, 5:] = 0.0
    by_hand = rlto.solve(problem, params, init=expected, max_iter=5, tol=1e-6)
    np.testing.assert_allclose(solutions["policy"].cost, by_hand.cost, rtol=1e-12)
    assert np.isfinite(solutions["policy"].cost).all()
    # Fig. 7's study takes the same warm start.
    _, from_policy, _ = warm_start_pair(problem, policy, params, tol=1e-6, max_iter=5)
    np.testing.assert_allclose(from_policy.cost, by_hand.cost, rtol=1e-12)


def open_loop_costs(problem, params, us) -> np.ndarray:
    """Trajectory costs (n,) of the controls us (n, T, nu) rolled out from params["x0"]."""
    us = jnp.asarray(us)
    xs = jax.vmap(problem.rollout)(us, params)
    return np.asarray(jax.vmap(problem.trajectory_cost)(xs, us, params))


def test_finite_prefix_keeps_the_longest_prefix_with_a_finite_cost():
    """single_integrator: instance 0 is finite throughout; instance 1 has a finite but enormous
    control at step 3 (its squared cost overflows), instance 2 NaN controls from step 6 on.
    Each keeps its controls before the first step that makes the cost non-finite, zeros after."""
    problem = rlto.make("single_integrator", horizon=10)
    params = {k: np.asarray(v) for k, v in problem.sample(jax.random.key(0), 3).items()}
    us = np.full((3, 10, 2), 0.5)
    us[1, 3] = 1e200
    us[2, 6:] = np.nan
    expected = np.full((3, 10, 2), 0.5)
    expected[1, 3:] = 0.0
    expected[2, 6:] = 0.0
    np.testing.assert_array_equal(
        finite_prefix(problem, params, us, open_loop_costs(problem, params, us)), expected)


def test_finite_prefix_of_a_manipulator_rollout_that_overflows_with_bounded_torques():
    """Full torque on every joint drives manipulator3's explicit Euler integration to overflow
    from some hard-region states, with every control finite. The warm start then has a finite
    cost, and it is the longest such prefix: one more step of the policy's controls (then
    zeros) would make it non-finite."""
    problem = rlto.make("manipulator3")
    params = {"x0": hard_region(problem)["x0"][::6]}
    n, T = len(params["x0"]), problem.horizon
    us = np.broadcast_to(np.asarray(problem.u_upper), (n, T, 3)).copy()
    us[:, :, 1] *= -1

    def costs(controls):
        return open_loop_costs(problem, params, controls)

    diverged = ~np.isfinite(costs(us))
    assert diverged.any() and not diverged.all()
    warm = finite_prefix(problem, params, us, costs(us))
    assert np.isfinite(costs(warm)).all()
    np.testing.assert_array_equal(warm[~diverged], us[~diverged])
    kept = (warm != 0).any(axis=2).sum(axis=1)  # steps of the policy's controls kept
    assert (kept[diverged] < T).all()
    one_more = warm.copy()
    for i in np.nonzero(diverged)[0]:
        one_more[i, kept[i]] = us[i, kept[i]]
    assert not np.isfinite(costs(one_more)[diverged]).any()


def test_warm_start_comparison_counts_non_finite_costs():
    """A policy warm start whose TO ended with a non-finite cost on one instance: its mean is
    None (JSON null), the count says which, and it is never counted as lower."""
    from types import SimpleNamespace

    costs = {"policy": [1.0, np.inf], "random": [2.0, 3.0], "ics": [0.5, 4.0]}
    table = warm_start_comparison({k: SimpleNamespace(cost=np.array(v)) for k, v in costs.items()})
    assert table["cost_policy_mean"] is None and table["cost_policy_nonfinite"] == 1
    assert table["cost_random_nonfinite"] == 0 and table["cost_random_mean"] == 2.5
    assert table["share_lower_than_random"] == 0.5 and table["share_lower_than_ics"] == 0.0


def test_warm_start_comparison_counts_by_hand():
    """Four instances: the policy wins, ties within 1e-5 relative, loses, and ties with one
    start while another is better."""
    from types import SimpleNamespace

    costs = {"policy": [1.0, 5.0, 3.0, -2.0], "random": [2.0, 5.0 + 1e-6, 1.0, -2.0],
             "random_controls": [4.0, 6.0, 2.0, -3.0], "ics": [1.5, 5.0, 9.0, 0.0]}
    table = warm_start_comparison({k: SimpleNamespace(cost=np.array(v)) for k, v in costs.items()})
    assert table["n"] == 4
    assert table["share_lower_than_random"] == 0.25
    assert table["share_lower_equal_than_random"] == 0.75
    assert table["share_lower_than_random_controls"] == 0.5
    assert table["share_lower_equal_than_random_controls"] == 0.5
    assert table["share_lower_than_ics"] == 0.75 and table["share_lower_equal_than_ics"] == 1.0
    assert table["share_best"] == 0.5  # instances 0 and 1
    assert table["cost_policy_mean"] == pytest.approx(1.75)


def test_random_values_warm_start_draws_states_from_the_initial_state_distribution():
    """Seed 000's "random values": knot 0 is x0, the other knots are independent draws of the
    problem's initial state (inside its sampling box, not a rollout)."""
    from rlto.evaluate import _random_states

    problem = rlto.make("double_integrator")
    x0 = np.asarray(problem.sample(jax.random.key(3), 5)["x0"])
    xs = _random_states(problem, jax.random.key(4), x0)
    assert xs.shape == (5, problem.horizon + 1, 4)
    np.testing.assert_array_equal(xs[:, 0], x0)
    later = xs[:, 1:].reshape(-1, 4)
    assert np.all(np.abs(later[:, :2]) <= 15) and np.all(np.abs(later[:, 2:]) <= 6)
    # spread over the box, not a trajectory: consecutive knots are far apart
    assert np.median(np.linalg.norm(np.diff(xs[:, 1:, :2], axis=1), axis=-1)) > 3.0
    assert np.abs(later[:, 0]).max() > 10 and np.abs(later[:, 2]).max() > 4


def test_bench_warmstart_command_trains_and_writes_the_study(tmp_path):
    from rlto.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "warmstart", "single_integrator", "--set", "horizon=20",
                 "--iterations", "1", "--test-size", "4", "--max-iter", "20", "--out", str(out),
                 "--json", *sum((["-o", f"{k}={v}"] for k, v in TINY.items()
                                 if k != "hidden" and k != "critic_hidden"), [])])
    assert code == 0
    table = json.loads((out / "warmstart.json").read_text())
    assert table["instances"] == "hard region" and table["n"] == len(table["cost_policy"]) > 100
    for other in ("random", "random_controls", "ics"):
        assert 0 <= table[f"share_lower_than_{other}"] <= table[f"share_lower_equal_than_{other}"]
    for name in ("warmstart.md", "warmstart_costs.png", "warmstart_paths_policy.png",
                 "train/metrics.csv"):
        assert (out / name).stat().st_size > 0
