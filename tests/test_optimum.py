"""J*'s search beyond the first starts (rlto.evaluate.optimum_costs): neighbour restarts, a
problem's heuristic controls and its goal guess, on `pendulum`, where DDP from zero controls
ends in local optima.

Oracles: a PD law that catches the pendulum at the top costs less than 1e-3 from a state just
past upright, so J* there must be at most that; DDP from zero controls stops at 2.53."""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto.problem import ProblemError
from rlto.problems.pendulum import energy_pumping_controls

evaluate_module = importlib.import_module("rlto.evaluate")

# Two initial states just before and just past upright; from zero controls DDP catches the
# first (J* = 0.132) but lets the second fall (2.53, against < 1e-3 for a PD catch).
CAUGHT = (2.7632505, 0.64858606)
DROPPED = (-3.09626779, -0.18909572)


@pytest.fixture(scope="module")
def pendulum():
    return rlto.make("pendulum")


def pd_catch_cost(problem, x0):
    """Cost of u = clip(-30 (q - q_up) - 8 v) from x0, q_up the nearest upright angle."""
    up = np.pi * (2 * np.round((x0[0] - np.pi) / (2 * np.pi)) + 1)
    x, cost = jnp.asarray(x0), 0.0
    for t in range(problem.horizon):
        u = jnp.clip(-30.0 * (x[0] - up) - 8.0 * x[1], -3.0, 3.0)[None]
        cost += float(problem.running_cost(x, u, t, {}))
        x = problem.dynamics(x, u, t, {})
    return cost + float(problem.terminal_cost(x, {}))


def test_neighbour_restarts_carry_a_catch_to_the_dropped_state(pendulum):
    plain = dataclasses.replace(pendulum, heuristic_controls=None, goal_state=None)
    params = {"x0": np.array([CAUGHT, DROPPED])}
    first = evaluate_module.optimum_costs(plain, params, cache_dir="", n_random=0, sweeps=0)
    oracle = pd_catch_cost(pendulum, np.array(DROPPED))
    assert oracle < 1e-3 and first[1] > 2.0  # the local optimum the restarts must leave
    restarted = evaluate_module.optimum_costs(plain, params, cache_dir="", n_random=0)
    assert restarted[1] <= oracle
    assert restarted[0] <= first[0] * (1 + 1e-9)  # a restart never raises J*


def test_neighbour_features_make_minus_pi_and_pi_neighbours(pendulum):
    x0 = np.array([[np.pi - 0.01, 0.0], [0.0, 0.0], [-np.pi + 0.01, 0.0], [0.5, 0.9]])
    features = evaluate_module.neighbour_features(pendulum, {"x0": x0})
    distance = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    assert distance[0].argmin() == 2 and distance[2].argmin() == 0


def test_energy_pumping_controls_swing_the_pendulum_up(pendulum):
    """The heuristic is a real swing-up: from hanging (at rest or slow) it ends upright and
    still under the torque bound, which no single push can do (u_max = 3 < m g l)."""
    config = pendulum.config
    for x0 in ([0.0, 0.0], [0.3, -0.5], [-1.0, 1.0]):
        us = energy_pumping_controls(jnp.asarray(x0), config)
        assert us.shape == (pendulum.horizon, 1)
        assert float(jnp.abs(us).max()) <= config.u_max
        xs = pendulum.rollout(us, {"x0": jnp.asarray(x0)})
        assert float(jnp.cos(xs[-1, 0])) < -0.999 and abs(float(xs[-1, 1])) < 0.05


def test_heuristic_controls_start_j_star(pendulum, monkeypatch):
    """optimum_costs solves once more from problem.heuristic_controls, and J* is at most what
    those controls cost by themselves."""
    params = {"x0": np.array([[0.8, 0.0], [0.0, 0.5]])}
    starts = []
    real_solve = evaluate_module.solve

    def recording_solve(problem, params, init=None, **kwargs):
        starts.append(init)
        return real_solve(problem, params, init=init, **kwargs)

    monkeypatch.setattr(evaluate_module, "solve", recording_solve)
    optimum = evaluate_module.optimum_costs(pendulum, params, cache_dir="", n_random=0, sweeps=0)
    heuristic = np.stack([energy_pumping_controls(jnp.asarray(x), pendulum.config)
                          for x in params["x0"]])
    assert len(starts) == 3 and starts[0] is None
    np.testing.assert_allclose(starts[1], heuristic, atol=1e-12)
    guess = evaluate_module.goal_guess(pendulum, params)  # the last start (goal_state)
    for got, expected in zip(starts[2], guess, strict=True):
        np.testing.assert_array_equal(got, expected)
    xs = jax.vmap(pendulum.rollout)(jnp.asarray(heuristic), {"x0": jnp.asarray(params["x0"])})
    own = jax.vmap(pendulum.trajectory_cost)(xs, jnp.asarray(heuristic),
                                             {"x0": jnp.asarray(params["x0"])})
    assert np.all(optimum <= np.asarray(own) * (1 + 1e-9))


def test_negative_sweeps_are_refused(pendulum):
    with pytest.raises(ProblemError, match="sweeps must be non-negative"):
        evaluate_module.optimum_costs(pendulum, {"x0": np.zeros((2, 2))}, cache_dir="", sweeps=-1)


def test_heuristic_controls_of_the_wrong_shape_are_refused(pendulum):
    with pytest.raises(ProblemError, match=r"heuristic_controls\(params\) returned shape"):
        dataclasses.replace(pendulum, heuristic_controls=lambda params: jnp.zeros((3, 1)))


def test_training_to_step_takes_neighbour_restarts(pendulum):
    """PDDP's and PLAL's TO step (solve_from_each) with neighbour_restarts=1: the dropped state
    gets the caught one's catch, and the counts include the restart and its rollout."""
    from rlto.algorithms.common import LearningConfig, solve_from_each

    params = {"x0": jnp.asarray([CAUGHT, DROPPED])}
    plain = LearningConfig(to_max_iter=100)
    first, first_calls, _ = solve_from_each(pendulum, params, [None], plain)
    config = LearningConfig(to_max_iter=100, neighbour_restarts=1)
    restarted, calls, _ = solve_from_each(pendulum, params, [None], config)
    assert first.cost[1] > 2.0
    assert restarted.cost[1] <= pd_catch_cost(pendulum, np.array(DROPPED))
    assert restarted.cost[0] <= first.cost[0] * (1 + 1e-9)
    assert calls > first_calls + 2 * pendulum.horizon
    with pytest.raises(ProblemError, match="neighbour_restarts must be"):
        LearningConfig(neighbour_restarts=-1)


def test_nearest_turn_is_the_goal_angle_nearest_to_the_given_one():
    from rlto.problem import nearest_turn

    got = np.asarray(nearest_turn(jnp.pi, jnp.array([0.1, -0.1, 7.0, -9.5])))
    np.testing.assert_allclose(got, [np.pi, -np.pi, 3 * np.pi, -3 * np.pi], atol=1e-12)
    np.testing.assert_allclose(np.asarray(nearest_turn(0.0, 6.0)), 2 * np.pi, atol=1e-12)


def test_goal_guess_catches_the_state_that_zero_controls_drop(pendulum):
    """The goal guess (x0, then every knot at the nearest upright state at rest) on the
    pendulum: its goal is at the task's target in task space, half a turn at most from x0; TO
    from it catches DROPPED (cost at most the PD catch's, gaps closed) where DDP from zero
    controls lets it fall, and PDDP's TO step with it keeps each instance's lower cost."""
    from rlto.algorithms.common import LearningConfig, closed_gaps_only, solve_from_each

    params = {"x0": jnp.asarray([CAUGHT, DROPPED])}
    xs, us = evaluate_module.goal_guess(pendulum, params)
    assert xs.shape == (2, pendulum.horizon + 1, 2) and us.shape == (2, pendulum.horizon, 1)
    np.testing.assert_array_equal(xs[:, 0], np.asarray(params["x0"]))
    assert np.all(xs[:, 1:] == xs[:, 1:2]) and np.all(xs[:, 1:, 1] == 0.0) and np.all(us == 0)
    assert np.all(np.abs(xs[:, 1, 0] - xs[:, 0, 0]) <= np.pi)
    for x in xs[:, 1]:
        np.testing.assert_allclose(pendulum.position(x, {}), pendulum.target({}), atol=1e-12)
    config = LearningConfig(to_max_iter=100)
    from_zero, _, _ = solve_from_each(pendulum, params, [None], config)
    from_goal, _, _ = solve_from_each(pendulum, params, [(xs, us)], config)
    both, _, _ = solve_from_each(pendulum, params, [None, (xs, us)], config)
    assert from_zero.cost[1] > 2.0
    assert from_goal.gap[1] <= 1e-6
    assert from_goal.cost[1] <= pd_catch_cost(pendulum, np.array(DROPPED))
    np.testing.assert_allclose(both.cost, np.minimum(from_zero.cost, from_goal.cost), rtol=1e-12)
    # A solve that stopped with its gaps open is no trajectory: it never wins.
    opened = dataclasses.replace(from_goal, gap=np.array([0.0, 0.5]))
    assert np.array_equal(np.isinf(closed_gaps_only(opened).cost), [False, True])
    with pytest.raises(ProblemError, match="goal_state"):
        evaluate_module.goal_guess(rlto.make("lqr"), {"x0": np.zeros((1, 4))})
