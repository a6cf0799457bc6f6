"""J*'s search beyond the first starts (rlto.evaluate.optimum_costs): neighbour restarts and a
problem's heuristic controls, on `pendulum`, where DDP from zero controls ends in local optima.

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
    plain = dataclasses.replace(pendulum, heuristic_controls=None)
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
    assert len(starts) == 2 and starts[0] is None
    np.testing.assert_allclose(starts[1], heuristic, atol=1e-12)
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
