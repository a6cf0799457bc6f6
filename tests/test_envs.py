"""rlto.envs: Gymnasium environments of Problems: check_env, returns equal to minus the trajectory
cost, options, action scaling, registration, clear errors."""

import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlto
from rlto import ProblemError
from rlto.envs import RltoEnv, action_map, env_id, estimate_action_scale, register_problems
from rlto.nets import at_step, make_policy

FAST_PROBLEMS = ("lqr", "pendulum")


@pytest.fixture(scope="module")
def pendulum():
    return rlto.make("pendulum", horizon=30)  # short episodes: quick tests, same dynamics


def point_mass(u_lower=-1.0, u_upper=1.0, horizon=30):
    """README's user-defined problem: a point mass to a goal drawn per instance."""
    dt = 0.05

    def dynamics(x, u, t, params):
        return jnp.concatenate([x[:2] + dt * x[2:], x[2:] + dt * u])

    def running_cost(x, u, t, params):
        return dt * (jnp.sum((x[:2] - params["goal"]) ** 2) + 0.1 * u @ u)

    def terminal_cost(x, params):
        return 100.0 * (jnp.sum((x[:2] - params["goal"]) ** 2) + x[2:] @ x[2:])

    def sample(key, n):
        k_start, k_goal = jax.random.split(key)
        start = jax.random.uniform(k_start, (n, 2), minval=-1.0, maxval=1.0)
        return {"x0": jnp.concatenate([start, jnp.zeros((n, 2))], axis=1),
                "goal": jax.random.uniform(k_goal, (n, 2), minval=-1.0, maxval=1.0)}

    return rlto.Problem(name="point_mass", nx=4, nu=2, horizon=horizon, dt=dt, dynamics=dynamics,
                        running_cost=running_cost, terminal_cost=terminal_cost,
                        u_lower=u_lower, u_upper=u_upper, sample=sample)


def _check_env_quietly(env, registered=True):
    """check_env, failing on any warning except the one about the (rightly) unbounded
    observation space. An unregistered env has no render modes to check."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=not registered)
    other = [str(w.message) for w in caught if "observation space m" not in str(w.message)]
    assert not other, other


@pytest.mark.parametrize("name", [
    n if n in FAST_PROBLEMS else pytest.param(n, marks=pytest.mark.slow)
    for n in rlto.problem_names()
])
def test_check_env_passes_for_builtin_problems(name):
    env = gym.make(env_id(name))
    _check_env_quietly(env.unwrapped)
    problem = env.unwrapped.problem
    assert env.action_space.shape == (problem.nu,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)


def test_check_env_passes_for_a_user_problem_with_time_and_unbounded_controls():
    env = RltoEnv(point_mass(-np.inf, np.inf), time_feature=True, terminal_at_horizon=True,
                  action_scale=2.0)
    _check_env_quietly(env, registered=False)
    assert env.observation_space.shape == (4 + 2 + 1,)  # state, goal, step


def _episode(env, us, options):
    """Play the controls us (T, nu) from reset(options); returns rewards, last flags, states."""
    obs, info = env.reset(seed=0, options=options)
    rewards, xs = [], [info["x"]]
    for u in us:
        obs, reward, terminated, truncated, info = env.step(env.action(u))
        rewards.append(reward)
        xs.append(info["x"])
    return np.array(rewards), (terminated, truncated), np.array(xs)


@pytest.mark.parametrize("name", FAST_PROBLEMS)
def test_episode_return_is_minus_the_trajectory_cost(name, pendulum):
    problem = pendulum if name == "pendulum" else rlto.make(name)
    env = RltoEnv(problem)
    params = {k: np.asarray(v[0]) for k, v in problem.sample(jax.random.key(5), 1).items()}
    rng = np.random.default_rng(0)
    us = rng.uniform(problem.u_lower, problem.u_upper, (problem.horizon, problem.nu))
    rewards, (terminated, truncated), xs = _episode(env, us, {"x0": params["x0"]})
    expected_xs = problem.rollout(jnp.asarray(us), params)
    cost = float(problem.trajectory_cost(expected_xs, jnp.asarray(us), params))
    np.testing.assert_allclose(xs, expected_xs, rtol=1e-12, atol=1e-12)
    assert rewards.sum() == pytest.approx(-cost, rel=1e-12)
    assert truncated and not terminated
    # Only the last reward carries the terminal cost.
    running = float(problem.running_cost(expected_xs[-2], jnp.asarray(us[-1]),
                                         problem.horizon - 1, params))
    terminal = float(problem.terminal_cost(expected_xs[-1], params))
    assert rewards[-1] == pytest.approx(-(running + terminal), rel=1e-12)


def test_closed_loop_return_equals_rlto_policy_rollout_cost(pendulum):
    """The env's return under an rlto Policy equals evaluate.policy_rollout's cost, and the
    observation (with the time feature) is exactly the policy's raw input."""
    from rlto.evaluate import policy_rollout, test_params

    policy = make_policy(pendulum, jax.random.key(1), hidden=(16,), time_input=True)
    params = test_params(pendulum, m=2)
    _, _, costs = policy_rollout(pendulum, policy, params)
    env = RltoEnv(pendulum, time_feature=True, terminal_at_horizon=True)
    control = jax.jit(lambda x, t, one: policy(x, at_step(one, t)))
    from_obs = jax.jit(lambda y: policy.forward(y))
    for i in range(2):
        one = {k: v[i] for k, v in params.items()}
        obs, info = env.reset(options={"x0": one["x0"]})
        total, done = 0.0, False
        while not done:
            u = np.asarray(control(info["x"], info["t"], one))
            np.testing.assert_allclose(np.asarray(from_obs(obs)), u, rtol=1e-5, atol=1e-5)
            obs, reward, terminated, truncated, info = env.step(env.action(u))
            total += reward
            done = terminated or truncated
        assert terminated and not truncated
        assert total == pytest.approx(-costs[i], rel=1e-9)


def test_reset_draws_from_the_sampler_and_options_fix_parameters():
    env = RltoEnv(point_mass())
    first, first_info = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    x0, goal = np.array([0.5, -0.5, 0.1, 0.2]), np.array([0.3, 0.4])
    obs, info = env.reset(seed=3, options={"x0": x0, "goal": goal})
    np.testing.assert_array_equal(info["x"], x0)
    assert info["t"] == 0
    np.testing.assert_allclose(obs, np.concatenate([x0, goal]), rtol=1e-6)
    obs, info = env.reset(seed=3, options={"goal": goal})  # x0 still drawn
    np.testing.assert_array_equal(info["x"], first_info["x"])
    np.testing.assert_array_equal(obs[:4], first[:4])
    np.testing.assert_allclose(obs[4:], goal, rtol=1e-6)


def test_angles_are_observed_as_cos_and_sin(pendulum):
    env = RltoEnv(pendulum)
    obs, _ = env.reset(options={"x0": [np.pi, 0.5]})
    np.testing.assert_allclose(obs, [0.5, -1.0, 0.0], atol=1e-7)  # (v, cos q, sin q)


def test_actions_map_to_the_box_and_are_clipped(pendulum):
    env = RltoEnv(pendulum)
    np.testing.assert_allclose(env.control([-1.0]), pendulum.u_lower)
    np.testing.assert_allclose(env.control([1.0]), pendulum.u_upper)
    np.testing.assert_allclose(env.control([0.5]), [1.5])  # |u| <= 3
    np.testing.assert_allclose(env.control([7.0]), pendulum.u_upper)  # clipped as rollouts do
    np.testing.assert_allclose(env.action(env.control([0.25])), [0.25])


def test_infinite_bounds_use_the_action_scale():
    center, half = action_map(point_mass(-np.inf, np.inf), action_scale=2.0)
    np.testing.assert_array_equal(center, [0, 0])
    np.testing.assert_array_equal(half, [2, 2])
    # One-sided: [lower, lower + 2 s] and [upper - 2 s, upper]; boxed ignores the scale.
    problem = point_mass([0.0, -1.0], [np.inf, 1.0])
    env = RltoEnv(problem, action_scale=[3.0, 5.0])
    np.testing.assert_allclose(env.control([-1.0, -1.0]), [0.0, -1.0])
    np.testing.assert_allclose(env.control([1.0, 1.0]), [6.0, 1.0])
    problem = point_mass([-1.0, -np.inf], [1.0, 0.0])
    np.testing.assert_allclose(RltoEnv(problem, action_scale=1.5).control([0.0, -1.0]),
                               [0.0, -3.0])
    with pytest.raises(ProblemError, match="action_scale must be a positive"):
        RltoEnv(point_mass(-np.inf, np.inf), action_scale=-1.0)


@pytest.mark.slow
def test_estimated_action_scale_covers_the_optimal_controls():
    problem = point_mass(-np.inf, np.inf)
    scale = estimate_action_scale(problem, draws=4)
    result = rlto.solve(problem, problem.sample(jax.random.key(0), 4))
    peak = np.abs(np.asarray(result.us)).reshape(-1, 2).max(axis=0)
    np.testing.assert_allclose(scale, 1.5 * peak, rtol=1e-9)


def test_registered_ids_and_problem_options():
    ids = register_problems()
    assert ids == register_problems()  # idempotent
    assert set(ids) == {env_id(n) for n in rlto.problem_names()}
    assert all(i in gym.registry for i in ids)
    env = gym.make("rlto/lqr-v0", problem_options={"horizon": 7})
    env.reset(seed=0)
    steps = 0
    while True:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            break
    assert steps == 7


def test_bad_input_gives_clear_errors(pendulum):
    with pytest.raises(ProblemError, match="Did you mean 'pendulum'"):
        RltoEnv("pendulm")
    env = RltoEnv(pendulum)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step([0.0])
    with pytest.raises(ProblemError, match=r"'x0' has shape \(3,\), expected \(2,\)"):
        env.reset(options={"x0": [0.0, 0.0, 0.0]})
    with pytest.raises(ProblemError, match="unknown reset option 'goal'"):
        env.reset(options={"goal": [0.0, 0.0]})
    with pytest.raises(ProblemError, match="not finite"):
        env.reset(options={"x0": [np.nan, 0.0]})
    with pytest.raises(ProblemError, match="only when the problem is given by name"):
        RltoEnv(pendulum, problem_options={"horizon": 3})
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action has shape \(2,\), expected \(1,\)"):
        env.step([0.0, 0.0])
    env = RltoEnv("lqr", problem_options={"horizon": 2})
    env.reset(seed=0)
    env.step([0.0, 0.0])
    env.step([0.0, 0.0])
    with pytest.raises(gym.error.ResetNeeded, match="horizon T=2"):
        env.step([0.0, 0.0])


def test_state_snapshot_restores_the_future(pendulum):
    env = RltoEnv(pendulum)
    env.reset(seed=1)
    env.step([0.3])
    snapshot = env.get_state()
    later = [env.step([0.1])[0] for _ in range(3)] + [env.reset()[0]]
    env.set_state(snapshot)
    again = [env.step([0.1])[0] for _ in range(3)] + [env.reset()[0]]
    np.testing.assert_array_equal(np.array(later), np.array(again))


def test_a_diverged_simulation_ends_the_episode_with_an_infinite_cost(exploding):
    env = RltoEnv(exploding())
    env.reset(seed=0)
    rewards = []
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step([0.0])
        rewards.append(reward)
        assert not (terminated or truncated or info["diverged"])
    np.testing.assert_allclose(rewards, [-1.0, -1e120, -1e240], rtol=1e-12)
    obs, reward, terminated, truncated, info = env.step([0.0])
    assert reward == -np.inf and terminated and not truncated and info["diverged"]
    # The observation is the last finite state's, at the step reached.
    assert info["t"] == 4 and info["x"][0] == pytest.approx(1e180, rel=1e-12)
    assert np.all(np.isfinite(obs)) and env.diverged_episodes == 1
    with pytest.raises(gym.error.ResetNeeded, match="diverged"):
        env.step([0.0])
    obs, info = env.reset()
    assert not info["diverged"] and env.step([0.0])[1] == pytest.approx(-1.0)
    # The count is part of the snapshot that checkpoints keep.
    restored = RltoEnv(exploding())
    restored.reset(seed=3)
    restored.set_state(env.get_state())
    assert restored.diverged_episodes == 1
