"""SB3 baselines (PPO, SAC, TD3, DDPG) as rlto algorithms: SB3 defaults, actor conversion equal
to SB3's predict, tiny runs end to end through rlto.train, exact resume after a kill."""

import csv
import inspect
import json
import os
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import rlto
from rlto import ProblemError
from rlto.algorithms import ALGORITHMS, baselines
from rlto.envs import observation
from rlto.nets import apply_policy
from rlto.runs import CheckpointError

torch.set_num_threads(1)

ALGOS = ("ppo", "sac", "td3", "ddpg")
SMALL_NET = dict(hidden=(16, 16))
TINY = {
    "ppo": dict(n_steps=32, batch_size=16, n_epochs=2, **SMALL_NET),
    **{a: dict(episodes_per_iteration=1, learning_starts=8, batch_size=16, buffer_size=500,
               **SMALL_NET) for a in ("sac", "td3", "ddpg")},
}
"""Budgets of a second per iteration on lqr with T = 20."""


@pytest.fixture(scope="module")
def lqr():
    return rlto.make("lqr", horizon=20)


@pytest.fixture(scope="module")
def pendulum():
    return rlto.make("pendulum", horizon=30)


def _leaves(policy):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(policy, eqx.is_array))]


def test_sb3_defaults_are_the_installed_versions():
    import stable_baselines3 as sb3

    classes = {"ppo": sb3.PPO, "sac": sb3.SAC, "td3": sb3.TD3, "ddpg": sb3.DDPG}
    for algo, cls in classes.items():
        signature = inspect.signature(cls.__init__).parameters
        ours = {k: v for k, v in baselines.SB3_DEFAULTS[algo].items() if k in signature}
        assert ours == {k: signature[k].default for k in ours}, algo
        # Every SB3 field of the config has a default, and the names exist in SB3.
        config = ALGORITHMS[algo][1]
        rlto_only = {"hidden", "activation", "time_input", "torch_threads", "n_envs",
                     "reward_scale", "reward_clip",
                     "action_scale", "rollouts_per_iteration", "episodes_per_iteration",
                     "action_noise_std"}
        for field in {f.name for f in baselines.dataclasses.fields(config)} - rlto_only:
            assert field in signature and field in baselines.SB3_DEFAULTS[algo], (algo, field)


def test_per_problem_defaults_and_overrides(pendulum, lqr):
    hp = baselines.resolved_hyperparameters(pendulum, baselines.PpoConfig())
    assert (hp["n_envs"], hp["n_steps"], hp["use_sde"], hp["gamma"]) == (4, 1024, True, 0.99)
    hp = baselines.resolved_hyperparameters(pendulum, baselines.PpoConfig(n_steps=64))
    assert hp["n_steps"] == 64
    hp = baselines.resolved_hyperparameters(lqr, baselines.SacConfig())
    assert (hp["learning_rate"], hp["hidden"], hp["ent_coef"]) == (3e-4, (256, 256), "auto")


def _scale_last_layer(model, gain: float):
    """Multiply the actor's last layer by gain: a fresh SB3 actor's actions are all inside
    (-1, 1); large gains reach tanh's saturation and PPO's clip."""
    with torch.no_grad():
        last = baselines.actor_linears(model)[-1]
        last.weight.mul_(gain)
        last.bias.mul_(gain)


def _point_mass(u_lower, u_upper):
    """A 2-D point mass (velocity control) to a goal drawn per instance: conditioned policies."""
    dt = 0.1

    def sample(key, n):
        k_start, k_goal = jax.random.split(key)
        return {"x0": jax.random.uniform(k_start, (n, 2), minval=-1.0, maxval=1.0),
                "goal": jax.random.uniform(k_goal, (n, 2), minval=-1.0, maxval=1.0)}

    return rlto.Problem(
        name="point_mass", nx=2, nu=2, horizon=10, dt=dt,
        dynamics=lambda x, u, t, params: x + dt * u,
        running_cost=lambda x, u, t, params: jnp.sum((x - params["goal"]) ** 2) + 0.1 * u @ u,
        terminal_cost=lambda x, params: 10.0 * jnp.sum((x - params["goal"]) ** 2),
        u_lower=u_lower, u_upper=u_upper, sample=sample)


CONVERSION_CASES = [(a, "pendulum") for a in ALGOS] + [
    ("ppo", "asymmetric_box"),  # conditioned on a goal, off-centre bounds
    ("sac", "unbounded"),       # infinite bounds: the env's action scale
]


@pytest.mark.parametrize("algo,case", CONVERSION_CASES)
def test_converted_policy_equals_sb3_predict(algo, case, pendulum):
    if case == "pendulum":
        problem, options = pendulum, {}
    elif case == "asymmetric_box":
        problem, options = _point_mass([-1.0, -3.0], [2.0, 0.5]), {}
    else:
        problem, options = _point_mass(-np.inf, np.inf), {"action_scale": 2.5}
    config = ALGORITHMS[algo][1](**SMALL_NET, **options)
    state = baselines.init(problem, config, jax.random.key(0))
    model = state.session.model
    env = model.get_env().envs[0]
    rlto_env = env.unwrapped

    m = 64
    params = {k: np.asarray(v) for k, v in problem.sample(jax.random.key(1), m).items()}
    xs = params["x0"] + np.random.default_rng(0).normal(0, 1.0, (m, problem.nx))
    ts = np.arange(m) % problem.horizon
    obs = np.stack([env.observation(observation(problem, xs[i], {k: v[i] for k, v in
                                                                 params.items()}, ts[i], True)
                                    .astype(np.float32)) for i in range(m)])
    beta = {**params, "t": ts.astype(np.float64)}
    seen = []
    for gain in (1.0, 100.0):
        _scale_last_layer(model, gain)
        policy = baselines.to_policy(state.policy, model, rlto_env.center, rlto_env.half)
        actions, _ = model.predict(obs, deterministic=True)
        u_sb3 = np.stack([rlto_env.control(a) for a in actions])
        u_rlto = np.asarray(apply_policy(policy, jnp.asarray(xs), beta), dtype=np.float64)
        u_rlto = np.clip(u_rlto, problem.u_lower, problem.u_upper)  # as rlto's rollouts do
        np.testing.assert_allclose(u_rlto, u_sb3, rtol=1e-5, atol=1e-5 * rlto_env.half.max())
        seen.append(np.abs(actions))
    # Both regimes compared: inside, and saturated (tanh near +-1, PPO clipped).
    assert (np.concatenate(seen) < 0.9).any() and (np.concatenate(seen) > 0.99).any()


@pytest.mark.parametrize("algo", ALGOS)
def test_tiny_run_writes_the_run_directory(algo, lqr, tmp_path):
    run = rlto.train(lqr, algo=algo, seed=0, iterations=1, out=tmp_path, test_size=8,
                     progress=False, **TINY[algo])
    assert run.iterations == 1
    for name in ("config.json", "metrics.csv", "evaluation.json", "learning_curve.png",
                 "rollouts.png", "policy/policy.json", "checkpoints/ckpt.eqx",
                 "sb3/hyperparameters.json", "sb3/iter-000001/model.zip"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    steps = 32 if algo == "ppo" else lqr.horizon
    assert [(int(r["iteration"]), int(r["sim_calls"]), int(r["to_iterations"])) for r in rows] \
        == [(1, steps, 0)]
    assert np.isfinite(float(rows[0]["test_gap"]))
    assert json.load(open(tmp_path / "config.json"))["algo"] == algo
    hp = json.load(open(tmp_path / "sb3" / "hyperparameters.json"))
    assert hp["hidden"] == [16, 16] and hp["problem"] == "lqr"
    x = np.asarray(lqr.sample(jax.random.key(1), 1)["x0"][0])
    np.testing.assert_array_equal(rlto.load_policy(tmp_path)(x, {"t": 3.0}),
                                  run.policy(x, {"t": 3.0}))


class Killed(Exception):
    pass


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_run_killed_midway_resumes_exactly(algo, lqr, tmp_path, monkeypatch, assert_same_run):
    """PPO's rollouts of 32 steps stop mid-episode (T = 20): the envs' states matter; SAC's
    replay buffer and exploration RNG matter."""
    options = dict(seed=2, out=None, test_size=8, progress=False, **TINY[algo])
    straight = rlto.train(lqr, algo=algo, iterations=3, **{**options, "out": tmp_path / "a"})

    out = tmp_path / "b"
    rlto.train(lqr, algo=algo, iterations=2, **{**options, "out": out})
    # Killed in iteration 3 after its step wrote the SB3 files, before the checkpoint.
    save = rlto.runs.RunDir.save_checkpoint

    def save_or_die(self, state, step):
        if step == 3:
            raise Killed
        return save(self, state, step)

    monkeypatch.setattr(rlto.runs.RunDir, "save_checkpoint", save_or_die)
    with pytest.raises(Killed):
        rlto.train(lqr, algo=algo, iterations=3, **{**options, "out": out})
    assert (out / "sb3" / "iter-000003").is_dir()
    monkeypatch.setattr(rlto.runs.RunDir, "save_checkpoint", save)
    resumed = rlto.train(lqr, algo=algo, iterations=3, **{**options, "out": out})

    assert_same_run(straight, resumed, ("iteration", "sim_calls", "test_gap"))
    assert sorted(os.listdir(out / "sb3")) == ["hyperparameters.json", "iter-000002",
                                               "iter-000003"]

    shutil.rmtree(out / "sb3" / "iter-000003")
    with pytest.raises(CheckpointError, match="iter-000003 is missing"):
        rlto.train(lqr, algo=algo, iterations=4, **{**options, "out": out})


def test_bad_baseline_options_are_reported(lqr, tmp_path):
    with pytest.raises(ProblemError, match="activation must be one of"):
        baselines.SacConfig(activation="sigmoid")
    with pytest.raises(ProblemError, match="hidden must be a tuple"):
        baselines.Td3Config(hidden=(0,))
    with pytest.raises(ProblemError, match="n_steps must be a positive integer"):
        baselines.PpoConfig(n_steps=0)
    with pytest.raises(ProblemError, match="unknown option"):
        rlto.train(lqr, algo="sac", iterations=1, out=tmp_path, n_steps=8)


def test_same_seed_same_numbers_and_sessions_do_not_share_rng(lqr):
    """Two sessions interleaved in one process give the numbers each gives alone."""
    config = baselines.SacConfig(**TINY["sac"])

    def run(states):
        for _ in range(2):
            states = [baselines.step(lqr, config, s)[0] for s in states]
        return states

    alone = run([baselines.init(lqr, config, jax.random.key(7))])[0]
    together = run([baselines.init(lqr, config, jax.random.key(k)) for k in (7, 8)])
    for a, b in zip(_leaves(alone.policy), _leaves(together[0].policy), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(_leaves(together[0].policy), _leaves(together[1].policy), strict=True))
    assert int(alone.sim_calls) == 2 * lqr.horizon


def test_time_input_false_gives_a_stationary_policy(lqr):
    config = baselines.Td3Config(time_input=False, **SMALL_NET)
    state = baselines.init(lqr, config, jax.random.key(0))
    assert state.policy.param_keys == ()
    env = state.session.model.get_env().envs[0].unwrapped
    assert not env.time_feature and not env.terminal_at_horizon
    xs = jnp.asarray(lqr.sample(jax.random.key(0), 3)["x0"])
    assert apply_policy(state.policy, xs).shape == (3, 2)


def test_rewards_sb3_learns_from_are_scaled_costs(lqr):
    state = baselines.init(lqr, baselines.SacConfig(reward_scale=0.5, **SMALL_NET),
                           jax.random.key(0))
    env = state.session.model.get_env().envs[0]
    env.reset(seed=0)
    x = env.unwrapped.x.copy()
    _, reward, *_ = env.step(np.array([0.5, -0.5], dtype=np.float32))
    cost = float(lqr.running_cost(x, np.array([0.5, -0.5]), 0, {}))
    assert reward == pytest.approx(-0.5 * cost, rel=1e-12)
    # The default makes a typical step's reward of order one: T / mean J of action 0 (u = 0),
    # here from the LQR matrices in NumPy.
    from rlto.problems.lqr import matrices

    a, _, q, _, qf = matrices(lqr.config)
    x = np.asarray(lqr.sample(jax.random.key(0), 64)["x0"])
    costs = np.zeros(64)
    for _ in range(lqr.horizon):
        costs += 0.5 * np.einsum("ni,ij,nj->n", x, q, x)
        x = x @ a.T
    costs += 0.5 * np.einsum("ni,ij,nj->n", x, qf, x)
    default = baselines.default_reward_scale(lqr, env.unwrapped)
    assert default == pytest.approx(lqr.horizon / costs.mean(), rel=1e-9)


def test_learning_rewards_are_bounded_and_divergence_costs_every_step_left(exploding):
    problem = exploding(horizon=10)
    # Normalised observations kept tiny: the simulation itself overflows, at the cost of
    # step t = 3 (the env's 4th step).
    env = baselines.make_env(problem, False, np.zeros(1), np.full(1, 1e300), np.ones(1),
                             reward_scale=2.0, reward_clip=5.0)
    env.reset(seed=0)
    rewards = [env.step(np.zeros(1, np.float32))[1] for _ in range(3)]
    assert rewards == [-2.0, -5.0, -5.0]  # 2 x (1, 1e120, 1e240), bounded below by -5
    obs, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert info["diverged"] and terminated and not truncated
    assert reward == -5.0 * (10 - 4 + 1) and np.all(np.isfinite(obs))
    # With unit normalisation the first state, 1e60, is beyond DIVERGED_OBSERVATION: the
    # episode ends there, counted, and SB3 sees the last observation (x0 = 1).
    env = baselines.make_env(problem, False, np.zeros(1), np.ones(1), np.ones(1),
                             reward_scale=2.0, reward_clip=5.0)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert info["diverged"] and terminated and reward == -5.0 * 10
    np.testing.assert_array_equal(obs, [1.0])
    assert env.unwrapped.diverged_episodes == 1
    with pytest.raises(ProblemError, match="reward_clip"):
        baselines.SacConfig(reward_clip=0.0)


def test_a_baseline_on_a_diverging_problem_learns_and_counts_diverged_episodes(exploding):
    problem = exploding(horizon=5)
    state = baselines.init(problem, baselines.SacConfig(episodes_per_iteration=30, **SMALL_NET),
                           jax.random.key(0))
    for _ in range(2):  # 2 x 30 x 5 env steps, past learning_starts: SB3 takes gradient steps
        state, stats = baselines.step(problem, baselines.SacConfig(), state)
    # x_1 = 1e60 is beyond DIVERGED_OBSERVATION: every episode ends diverged at its first step.
    assert stats["diverged_episodes"] == 2 * 30 * 5 and stats["sb3_n_updates"] > 0
    assert all(np.all(np.isfinite(leaf)) for leaf in _leaves(state.policy))
