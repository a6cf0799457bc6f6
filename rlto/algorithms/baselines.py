"""Model-free baselines: stable-baselines3's PPO, SAC, DDPG and TD3 as rlto algorithms.

Seed 002 compares its model-based algorithms with PPO and SAC "provided by [29]" (SB3). Here
each runs on the problem's Gymnasium environment (rlto.envs.RltoEnv) and plugs into rlto.train,
so its run directory, metrics and test-set evaluation are those of every other algorithm:

    for k = 1..M:
        model.learn(N environment steps)         SB3, chunk by chunk (learn(..., reset=False))
        pi_theta <- deterministic actor of model  converted to an rlto Policy (identical outputs)
        sim_calls += N                            one dynamics call per env step, no derivatives

N is one PPO rollout (n_steps x n_envs, `rollouts_per_iteration` of them) or
`episodes_per_iteration` episodes of T steps for the off-policy methods. The metrics log
carries SB3's training statistics and `diverged_episodes`, the episodes so far whose simulation
overflowed (see `BaselineConfig.reward_clip`).

The policy. The env's observation is the rlto Policy's raw input y (state features, conditioning
parameters, and the step t with `time_input`); a fixed affine normalisation (y - mean) / scale
from NORMALIZATION_DRAWS sampler draws (rlto.nets.make_policy's) is applied by a wrapper before
SB3 sees it and stored as the Policy's in_mean / in_scale. The SB3 actor is an MLP of the
config's widths and activation, as rlto's, so its layers copy over:
- SAC, TD3, DDPG: deterministic action a = tanh(z), control u = center + half a: exactly the
  rlto Policy's tanh squash onto [center - half, center + half] (the problem's box, or the env's
  finite action range where a bound is infinite, see rlto.envs);
- PPO: deterministic action = the Gaussian mean z, clipped by SB3 to [-1, 1], u = center +
  half clip(z): the rlto Policy gets the linear output center + half z (infinite bounds), and the
  clip is the one that rlto's rollouts apply to the problem's bounds. So the two agree as
  controllers wherever the problem is boxed; PPO's raw policy(x) may leave the box.

Checkpoints. SB3's model, replay buffer, environments mid-episode and the global RNG states
(Python, NumPy, torch: SB3 draws from them) have no fixed-shape pytree form, so the state holds
them in a mutable `Session` (a static field, not saved by RunDir) and each `step` writes them to
`<run>/sb3/iter-<k>/` (model.zip, replay_buffer.npz, runtime.pkl) through a temporary folder
renamed into place, before rlto.train saves the pytree checkpoint of iteration k. `attach`
(called by rlto.train after loading the checkpoint) restores the files of exactly the
checkpoint's iteration and deletes any other: a run killed at any point resumes with nothing
lost and reproduces an uninterrupted run exactly (the tests check it). A state is only valid as
the latest of its session: `step` advances the SB3 model in place.

Hyperparameters. Every SB3 field of a config defaults to None: the problem's entry of
PROBLEM_DEFAULTS if it has one, else SB3_DEFAULTS (SB3's own constructor defaults, as seed 002
used SB3's implementations; `resolved_hyperparameters` gives the values, written to
`<run>/sb3/hyperparameters.json`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pickle
import random
import shutil
from typing import Any, ClassVar

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from rlto.envs import RltoEnv, observation_keys
from rlto.nets import TIME_KEY, Policy, make_policy
from rlto.problem import Problem, ProblemError
from rlto.runs import CheckpointError

SB3_DEFAULTS: dict[str, dict[str, Any]] = {
    # Constructor defaults of stable-baselines3 2.x (the tests compare them with the installed
    # version) and its MlpPolicy's network (PPO: 64-64 tanh; SAC: 256-256 ReLU; TD3 and DDPG:
    # 400-300 ReLU, the TD3 paper's).
    "ppo": dict(learning_rate=3e-4, n_steps=2048, batch_size=64, n_epochs=10, gamma=0.99,
                gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
                use_sde=False, sde_sample_freq=-1, n_envs=1, hidden=(64, 64),
                activation="tanh"),
    "sac": dict(learning_rate=3e-4, buffer_size=1_000_000, learning_starts=100, batch_size=256,
                tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto",
                hidden=(256, 256), activation="relu"),
    "td3": dict(learning_rate=1e-3, buffer_size=1_000_000, learning_starts=100, batch_size=256,
                tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, policy_delay=2,
                target_policy_noise=0.2, target_noise_clip=0.5, action_noise_std=0.1,
                hidden=(400, 300), activation="relu"),
    "ddpg": dict(learning_rate=1e-3, buffer_size=1_000_000, learning_starts=100, batch_size=256,
                 tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, action_noise_std=0.1,
                 hidden=(400, 300), activation="relu"),
}
"""SB3's defaults, except action_noise_std: SB3 adds no exploration noise to TD3/DDPG unless
given one; 0.1 is the Gaussian noise of SB3's documented TD3/DDPG examples and of
rl-baselines3-zoo's Pendulum entries."""

PROBLEM_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # rl-baselines3-zoo's tuned entries for Gymnasium's pendulum swing-up (hyperparams/*.yml:
    # Pendulum-v1 for PPO and SAC, Pendulum-v0 for TD3 and DDPG), the closest task the zoo has
    # to rlto's `pendulum` (torque-limited swing-up, dt = 0.05). Left out: the zoo's gamma of
    # 0.9 (PPO) and 0.98 (DDPG): Pendulum-v1 has no terminal cost, while here the terminal cost
    # at T = 100 carries most of the optimum's cost, and 0.9^100 ~ 3e-5 would hide it; and
    # DDPG's train_freq of one episode with as many gradient steps as env steps, the same count
    # of updates as SB3's one per step.
    ("ppo", "pendulum"): dict(n_envs=4, n_steps=1024, gae_lambda=0.95, n_epochs=10,
                              ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True,
                              sde_sample_freq=4),
    ("sac", "pendulum"): dict(learning_rate=1e-3),
    ("td3", "pendulum"): dict(action_noise_std=0.1, learning_starts=1000),
    ("ddpg", "pendulum"): dict(buffer_size=200_000, learning_starts=10_000, action_noise_std=0.1,
                               learning_rate=1e-3, hidden=(400, 300)),
}
"""(algorithm, problem name) -> values replacing SB3_DEFAULTS where the config leaves None."""

TORCH_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "softplus": "Softplus"}
"""rlto.nets activation name -> torch.nn class name with the same function (torch's defaults:
ELU alpha 1, Softplus beta 1, as jax.nn's)."""

DIVERGED_OBSERVATION = 1e6
"""A state whose normalised observation has a coordinate beyond +-this (a million standard
deviations of the sampled states) ends the episode SB3 learns from as diverged: the
networks' activations stay far from float32's overflow."""

SB3_FOLDER = "sb3"
"""Subfolder of the run directory with the SB3 files of each checkpointed iteration."""


# ---------------------------------------------------------------------------------------------
# Configs.


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Fields every SB3 baseline shares. None: the per-problem default (see the module)."""

    ALGO: ClassVar[str] = ""

    hidden: tuple[int, ...] | None = None
    """Hidden layer widths of the actor (and critic) MLP; None: PPO (64, 64), SAC (256, 256),
    TD3/DDPG (400, 300) (SB3's MlpPolicy defaults)."""
    activation: str | None = None
    """Hidden activation: "relu", "tanh", "elu" or "softplus"; None: PPO tanh, others ReLU
    (SB3's)."""
    learning_rate: float | None = None
    """Adam step size; None: PPO/SAC 3e-4, TD3/DDPG 1e-3 (SB3), 1e-3 for all on pendulum (zoo)."""
    gamma: float | None = None
    """Discount factor; None: 0.99 (SB3)."""
    batch_size: int | None = None
    """Mini-batch size; None: PPO 64, others 256 (SB3)."""
    reward_scale: float | None = None
    """Factor on the rewards SB3 learns from (rlto's metrics and evaluation use the true cost);
    None: `default_reward_scale`, the reciprocal of a typical step's cost. rl-baselines3-zoo
    normalises rewards (VecNormalize) for most tasks; a fixed factor does the same job while
    keeping the learning targets stationary and the resume exact. Raw costs here reach 1e4 per
    episode on lqr (Qf = 100), which stalled SAC's critic in a 90 s trial."""
    reward_clip: float | None = None
    """Lower bound R on one step's scaled reward (the learning signal only; rlto's metrics use
    the true cost), and a diverged episode (rlto.envs: the simulation overflowed) ends with
    -R for each step it had left. None: 10 T. With rewards of order one per step, ordinary
    steps of the built-in problems stay above -3 T (zero and uniformly random actions, the
    terminal step included), so the bound leaves them alone; ur5 at full torque spins up
    to 1e3 rad/s (step costs of 1e4 T) and then overflows, which put NaN into SAC's and PPO's
    networks within the first minutes."""
    time_input: bool = True
    """Observe the step t (0..T) and end episodes at the horizon as terminal (no bootstrapping
    past the terminal cost): the optimum of a finite-horizon problem depends on the time to go,
    as for the TO-based algorithms' default `time_input`. False: a stationary policy, and the
    horizon is a truncation that SB3 bootstraps through (Gymnasium's TimeLimit convention)."""
    action_scale: float | None = None
    """Scale of the controls with an infinite bound (rlto.envs.action_map); None: estimated
    from TO solutions (rlto.envs.estimate_action_scale). Unused for boxed controls."""
    torch_threads: int = 1
    """torch.set_num_threads for training: one thread gives the same numbers on every machine,
    and small MLPs do not gain from more on a CPU."""

    def __post_init__(self):
        if self.hidden is not None:
            widths = self.hidden if isinstance(self.hidden, tuple | list) else None
            if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
                raise ProblemError(
                    f"hidden must be a tuple of positive layer widths, e.g. (256, 256); got "
                    f"{self.hidden!r}."
                )
            object.__setattr__(self, "hidden", tuple(widths))
        if self.activation is not None and self.activation not in TORCH_ACTIVATIONS:
            raise ProblemError(
                f"activation must be one of {sorted(TORCH_ACTIVATIONS)}, got {self.activation!r}."
            )
        if self.reward_clip is not None and not (math.isfinite(self.reward_clip)
                                                 and self.reward_clip > 0):
            raise ProblemError(
                f"reward_clip must be a positive number (a bound on one step's scaled cost), "
                f"got {self.reward_clip!r}."
            )
        if int(self.torch_threads) < 1:
            raise ProblemError(f"torch_threads must be >= 1, got {self.torch_threads}.")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_per_iteration", "n_steps", "n_epochs", "n_envs",
                                "buffer_size")) and value is not None and int(value) < 1:
                raise ProblemError(f"{f.name} must be a positive integer, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class PpoConfig(BaselineConfig):
    """PPO (Schulman et al. 2017) through SB3; fields after the shared ones are PPO's."""

    ALGO: ClassVar[str] = "ppo"

    n_envs: int | None = None
    """Environment copies stepped together; None: 1 (SB3), 4 on pendulum (zoo)."""
    n_steps: int | None = None
    """Steps per environment per rollout; None: 2048 (SB3), 1024 on pendulum (zoo)."""
    n_epochs: int | None = None
    """Passes over each rollout; None: 10."""
    gae_lambda: float | None = None
    """GAE lambda; None: 0.95."""
    clip_range: float | None = None
    """PPO's ratio clip; None: 0.2."""
    ent_coef: float | None = None
    """Entropy bonus weight; None: 0.0."""
    vf_coef: float | None = None
    """Value loss weight; None: 0.5."""
    max_grad_norm: float | None = None
    """Gradient norm clip; None: 0.5."""
    use_sde: bool | None = None
    """Generalised state-dependent exploration; None: False (SB3), True on pendulum (zoo)."""
    sde_sample_freq: int | None = None
    """Steps between gSDE noise draws (-1: once per rollout); None: -1 (SB3), 4 on pendulum."""
    rollouts_per_iteration: int = 1
    """Rollouts (each n_steps x n_envs env steps, then n_epochs of updates) per rlto iteration,
    i.e. between test-set evaluations and checkpoints."""


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(BaselineConfig):
    """Fields SAC, TD3 and DDPG share (one environment, replay buffer)."""

    buffer_size: int | None = None
    """Replay buffer capacity; None: 1e6 (SB3), 2e5 for DDPG on pendulum (zoo)."""
    learning_starts: int | None = None
    """Env steps of uniformly random actions before learning; None: 100 (SB3); on pendulum
    TD3 1000, DDPG 10000 (zoo)."""
    tau: float | None = None
    """Soft update rate of the target networks; None: 0.005."""
    train_freq: int | None = None
    """Env steps between updates; None: 1."""
    gradient_steps: int | None = None
    """Gradient steps per update; None: 1."""
    episodes_per_iteration: int = 10
    """Episodes (of T env steps) per rlto iteration, i.e. between test-set evaluations and
    checkpoints (rlto's granularity, no SB3 setting)."""


@dataclasses.dataclass(frozen=True)
class SacConfig(OffPolicyConfig):
    """SAC (Haarnoja et al. 2018) through SB3."""

    ALGO: ClassVar[str] = "sac"

    ent_coef: float | str | None = None
    """Entropy weight, a number or "auto" (learned, optionally "auto_0.1" for its start);
    None: "auto"."""


@dataclasses.dataclass(frozen=True)
class Td3Config(OffPolicyConfig):
    """TD3 (Fujimoto et al. 2018) through SB3."""

    ALGO: ClassVar[str] = "td3"

    action_noise_std: float | None = None
    """Std of the Gaussian exploration noise on actions in [-1, 1]; None: 0.1 (SB3 docs, zoo)."""
    policy_delay: int | None = None
    """Critic updates per actor update; None: 2."""
    target_policy_noise: float | None = None
    """Std of the target policy smoothing noise; None: 0.2."""
    target_noise_clip: float | None = None
    """Clip of the target smoothing noise; None: 0.5."""


@dataclasses.dataclass(frozen=True)
class DdpgConfig(OffPolicyConfig):
    """DDPG (Lillicrap et al. 2016) through SB3 (TD3 without its three tricks)."""

    ALGO: ClassVar[str] = "ddpg"

    action_noise_std: float | None = None
    """Std of the Gaussian exploration noise on actions in [-1, 1]; None: 0.1 (SB3 docs, zoo)."""


CONFIGS = {c.ALGO: c for c in (PpoConfig, SacConfig, Td3Config, DdpgConfig)}
"""Algorithm name -> config class."""


def resolved_hyperparameters(problem: Problem, config: BaselineConfig) -> dict[str, Any]:
    """Every None field of `config` replaced: by PROBLEM_DEFAULTS for (algo, problem.name), else
    SB3_DEFAULTS[algo]. Returns a dict of all fields."""
    algo = config.ALGO
    table = {**SB3_DEFAULTS[algo], **PROBLEM_DEFAULTS.get((algo, problem.name), {})}
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values[f.name] = table.get(f.name) if value is None else value
    return values


# ---------------------------------------------------------------------------------------------
# Environments as SB3 sees them.


class ScaledEnv(gym.Wrapper):
    """What SB3 sees of an RltoEnv: observations (y - mean) / scale (float32, the rlto Policy's
    normalisation) and rewards times reward_scale (learning targets of order one), bounded
    below by -reward_clip. A diverged step gets -reward_clip for it and for each step left to
    the horizon, so that diverging is never cheaper than any clipped episode; diverged are the
    steps whose simulation overflowed (reward -inf) and those whose normalised observation
    leaves +-DIVERGED_OBSERVATION (then SB3 sees the last observation instead)."""

    def __init__(self, env: gym.Env, mean: np.ndarray, scale: np.ndarray, reward_scale: float,
                 reward_clip: float):
        super().__init__(env)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.reward_scale = float(reward_scale)
        self.reward_clip = float(reward_clip)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, self.mean.shape, np.float32)

    def observation(self, observation):
        return ((np.asarray(observation, np.float64) - self.mean) / self.scale).astype(np.float32)

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self.observation(observation), info

    def step(self, action):
        before = self.env.unwrapped.observe()
        observation, reward, terminated, truncated, info = self.env.step(action)
        observation = self.observation(observation)
        if not info["diverged"] and np.max(np.abs(observation)) > DIVERGED_OBSERVATION:
            self.env.unwrapped.end_diverged()
            info = {**info, "diverged": True}
            observation, terminated, truncated = self.observation(before), True, False
        if info["diverged"]:
            steps_left = self.env.unwrapped.problem.horizon - info["t"] + 1
            reward = -self.reward_clip * steps_left
        else:
            reward = max(self.reward_scale * reward, -self.reward_clip)
        return observation, reward, terminated, truncated, info


def make_env(problem: Problem, time_input: bool, mean: np.ndarray, scale: np.ndarray,
             action_scale: np.ndarray, reward_scale: float, reward_clip: float) -> gym.Env:
    """The environment a baseline trains on (see the module docstring); action_scale as in
    rlto.envs.action_map (the half-widths, given so that an unbounded problem's scale is
    estimated once, not once per copy)."""
    env = RltoEnv(problem, time_feature=time_input, terminal_at_horizon=time_input,
                  action_scale=action_scale)
    return ScaledEnv(env, mean, scale, reward_scale, reward_clip)


@functools.lru_cache(maxsize=32)
def _constant_control_costs(problem: Problem):
    """Jitted costs J (n,) of controls us (n, T, nu) from params, compiled once per Problem."""

    @jax.jit
    def costs(us, params):
        xs = jax.vmap(problem.rollout)(us, params)
        return jax.vmap(problem.trajectory_cost)(xs, us, params)

    return costs


def default_reward_scale(problem: Problem, env: RltoEnv, draws: int = 64) -> float:
    """T / mean |J| of the constant mid-range control (action 0) over `draws` sampled instances:
    the reciprocal of a typical step's cost, so that SB3's rewards are of order one."""
    params = problem.sample(jax.random.key(0), draws)
    us = jnp.broadcast_to(jnp.asarray(env.center), (draws, problem.horizon, problem.nu))
    costs = _constant_control_costs(problem)(us, params)
    typical = float(jnp.mean(jnp.abs(costs))) / problem.horizon
    return 1.0 / typical if np.isfinite(typical) and typical > 0 else 1.0


# ---------------------------------------------------------------------------------------------
# SB3 actor -> rlto Policy.


def actor_linears(model) -> list:
    """The torch Linear layers of the deterministic actor, input to output."""
    import torch

    name = type(model).__name__
    if name == "PPO":
        body = model.policy.mlp_extractor.policy_net
        modules = [*body, model.policy.action_net]
    elif name == "SAC":
        modules = [*model.policy.actor.latent_pi, model.policy.actor.mu]
    elif name in ("TD3", "DDPG"):
        modules = list(model.policy.actor.mu)
    else:
        raise ProblemError(f"no actor conversion for SB3 algorithm {name}.")
    return [m for m in modules if isinstance(m, torch.nn.Linear)]


def squashes(model) -> bool:
    """True when the deterministic action is tanh of the last layer (SAC, TD3, DDPG); False
    for PPO, whose action is the clipped Gaussian mean."""
    return type(model).__name__ != "PPO"


def policy_template(problem: Problem, env: RltoEnv, hidden, activation: str, time_input: bool,
                    key: jax.Array, squashed: bool) -> Policy:
    """An rlto Policy shaped like the SB3 actor, with the env's control range as bounds
    (squashed) or linear outputs (PPO), and make_policy's normalisation (float32)."""
    reference = make_policy(problem, key, hidden=hidden, time_input=time_input,
                            activation=activation, dtype="float32")
    keys = (*observation_keys(problem), *((TIME_KEY,) if time_input else ()))
    if keys != reference.param_keys:  # the env's observation must be the policy's input
        raise ProblemError(
            f"{problem.name}: environment observation keys {keys} differ from the policy's "
            f"{reference.param_keys}."
        )
    lower = env.center - env.half if squashed else -np.inf
    upper = env.center + env.half if squashed else np.inf
    return Policy(problem.nx, problem.nu, hidden, lower, upper, keys, reference.param_shapes,
                  key=key,
                  activation=activation, in_mean=reference.in_mean,
                  in_scale=reference.in_scale, dtype="float32", angles=problem.angles)


def to_policy(template: Policy, model, center: np.ndarray, half: np.ndarray) -> Policy:
    """The rlto Policy computing the SB3 model's deterministic control (see the module):
    template's structure and normalisation, the actor's weights."""
    linears = actor_linears(model)
    if len(linears) != len(template.layers):
        raise ProblemError(
            f"SB3 actor has {len(linears)} linear layers, the rlto policy {len(template.layers)}."
        )
    weights = [layer.weight.detach().cpu().numpy().astype(np.float64) for layer in linears]
    biases = [layer.bias.detach().cpu().numpy().astype(np.float64) for layer in linears]
    if not squashes(model):  # u = center + half z, linear output (the rollout clips)
        weights[-1] = half[:, None] * weights[-1]
        biases[-1] = center + half * biases[-1]
    dtype = template.dtype
    new_w = tuple(jnp.asarray(w, dtype) for w in weights)
    new_b = tuple(jnp.asarray(b, dtype) for b in biases)
    policy = eqx.tree_at(lambda p: tuple(layer.weight for layer in p.layers), template, new_w)
    return eqx.tree_at(lambda p: tuple(layer.bias for layer in p.layers), policy, new_b)


# ---------------------------------------------------------------------------------------------
# The SB3 session: model, environments and RNG states, saved to and restored from files.


# SB3 draws from NumPy's legacy global RNG (NormalActionNoise, replay sampling), so that is the
# state to save and restore.
def _global_rng_state() -> dict:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(),  # noqa: NPY002
            "torch": torch.get_rng_state()}


def _set_global_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])


class Session:
    """The mutable SB3 side of a baseline run (see the module docstring).

    model: the SB3 algorithm object; steps: env steps per rlto iteration; rng: the global RNG
    states (Python, NumPy, torch) as of the end of the last learn chunk, restored before the
    next, so that sessions sharing a process do not draw from each other's streams.
    folder: where iteration files go (None until `attach`: nothing is written).
    """

    def __init__(self, model, steps: int, torch_threads: int):
        self.model = model
        self.steps = int(steps)
        self.torch_threads = int(torch_threads)
        self.rng = _global_rng_state()
        self.folder: str | None = None

    def learn(self) -> dict:
        """One chunk of `steps` env steps; returns SB3's last training statistics."""
        import torch
        from stable_baselines3.common.logger import Logger

        torch.set_num_threads(self.torch_threads)
        _set_global_rng_state(self.rng)
        if not self.model._custom_logger:
            # SB3's default logger makes an empty /tmp/SB3-<time> folder at every learn call;
            # an in-memory one still collects the training statistics returned below.
            self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.model.learn(total_timesteps=self.steps, reset_num_timesteps=False,
                         log_interval=None, progress_bar=False)
        self.rng = _global_rng_state()
        stats = self.model.logger.name_to_value
        return {f"sb3_{k.split('/', 1)[1]}": float(v) for k, v in stats.items()
                if k.startswith("train/") and isinstance(v, int | float | np.number)}

    def envs(self) -> list[RltoEnv]:
        return [env.unwrapped for env in self.model.get_env().envs]

    def iteration_dir(self, iteration: int) -> str:
        return os.path.join(self.folder, f"iter-{iteration:06d}")

    def save(self, iteration: int) -> None:
        """Write the files of `iteration` (through a temporary folder renamed into place) and
        delete those older than the previous iteration, which the current checkpoint may
        still need until rlto.train replaces it."""
        if self.folder is None:
            return
        final = self.iteration_dir(iteration)
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self.model.save(os.path.join(tmp, "model.zip"))
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None:
            np.savez(os.path.join(tmp, "replay_buffer.npz"), **_buffer_arrays(buffer))
        runtime = {"rng": self.rng, "envs": [env.get_state() for env in self.envs()]}
        with open(os.path.join(tmp, "runtime.pkl"), "wb") as f:
            pickle.dump(runtime, f)
            f.flush()
            os.fsync(f.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        self.prune(keep=(iteration - 1, iteration))

    def restore(self, iteration: int) -> None:
        """Load the files of `iteration` into this session (model, buffer, envs, RNG)."""
        folder = self.iteration_dir(iteration)
        if not os.path.isdir(folder):
            raise CheckpointError(
                f"the checkpoint is at iteration {iteration} but {folder} is missing, so the SB3 "
                "model and replay buffer cannot be restored; delete the run directory to start "
                "afresh."
            )
        env = self.model.get_env()
        self.model = type(self.model).load(os.path.join(folder, "model.zip"), env=env,
                                           device="cpu", force_reset=False)
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None:
            with np.load(os.path.join(folder, "replay_buffer.npz")) as data:
                _restore_buffer(buffer, dict(data))
        with open(os.path.join(folder, "runtime.pkl"), "rb") as f:
            runtime = pickle.load(f)
        for env_state, rlto_env in zip(runtime["envs"], self.envs(), strict=True):
            rlto_env.set_state(env_state)
        self.rng = runtime["rng"]

    def prune(self, keep: tuple[int, ...]) -> None:
        """Delete the iteration folders (and temporary ones) not in `keep`."""
        if not os.path.isdir(self.folder):
            return
        wanted = {os.path.basename(self.iteration_dir(k)) for k in keep}
        for name in os.listdir(self.folder):
            if name.startswith("iter-") and name not in wanted:
                shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)


def _buffer_arrays(buffer) -> dict[str, np.ndarray]:
    """The filled part of an SB3 replay buffer's arrays, with its position and full flag."""
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: value[:filled] for name, value in vars(buffer).items()
              if isinstance(value, np.ndarray) and value.shape[:1] == (buffer.buffer_size,)}
    return {**arrays, "_pos": np.asarray(buffer.pos), "_full": np.asarray(buffer.full)}


def _restore_buffer(buffer, data: dict[str, np.ndarray]) -> None:
    buffer.pos, buffer.full = int(data.pop("_pos")), bool(data.pop("_full"))
    for name, value in data.items():
        getattr(buffer, name)[: len(value)] = value


# ---------------------------------------------------------------------------------------------
# The algorithm protocol.


class BaselineState(eqx.Module):
    """The pytree rlto.train checkpoints (counters and the converted policy) plus the session,
    a static field that RunDir does not save (see the module docstring)."""

    policy: Policy
    iteration: jax.Array  # () int: rlto iterations done
    sim_calls: jax.Array  # () int: environment steps (one dynamics call each)
    to_iterations: jax.Array  # () int: always 0, no trajectory optimization
    session: Session = eqx.field(static=True)


def _sb3_class(algo: str):
    import stable_baselines3

    return {"ppo": stable_baselines3.PPO, "sac": stable_baselines3.SAC,
            "td3": stable_baselines3.TD3, "ddpg": stable_baselines3.DDPG}[algo]


def _sb3_kwargs(algo: str, hp: dict, nu: int) -> dict:
    """SB3 constructor arguments from the resolved hyperparameters."""
    import torch
    from stable_baselines3.common.noise import NormalActionNoise

    activation = getattr(torch.nn, TORCH_ACTIVATIONS[hp["activation"]])
    hidden = list(hp["hidden"])
    net_arch = dict(pi=hidden, vf=hidden) if algo == "ppo" else dict(pi=hidden, qf=hidden)
    kwargs = dict(policy_kwargs=dict(net_arch=net_arch, activation_fn=activation))
    skip = {"hidden", "activation", "time_input", "torch_threads", "n_envs",
            "rollouts_per_iteration", "episodes_per_iteration", "action_noise_std",
            "action_scale", "reward_scale", "reward_clip"}
    kwargs.update({k: v for k, v in hp.items() if k not in skip})
    if "action_noise_std" in hp:
        kwargs["action_noise"] = NormalActionNoise(np.zeros(nu), hp["action_noise_std"] *
                                                   np.ones(nu))
    return kwargs


def init(problem: Problem, config: BaselineConfig, key: jax.Array) -> BaselineState:
    """A fresh SB3 model (seeded from key) on the problem's environment, and its policy."""
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv

    hp = resolved_hyperparameters(problem, config)
    torch.set_num_threads(int(config.torch_threads))
    seed_key, policy_key = jax.random.split(key)
    seed = int(jax.random.randint(seed_key, (), 0, 2**31 - 1))
    env = RltoEnv(problem, time_feature=config.time_input, action_scale=config.action_scale)
    squashed = config.ALGO != "ppo"
    template = policy_template(problem, env, hp["hidden"], hp["activation"], config.time_input,
                               policy_key, squashed)
    mean, scale = np.asarray(template.in_mean), np.asarray(template.in_scale)
    n_envs = hp.get("n_envs", 1)
    reward_scale = (default_reward_scale(problem, env) if config.reward_scale is None
                    else float(config.reward_scale))
    reward_clip = (10.0 * problem.horizon if config.reward_clip is None
                   else float(config.reward_clip))
    factory = functools.partial(make_env, problem, config.time_input, mean, scale, env.half,
                                reward_scale, reward_clip)
    vec_env = DummyVecEnv([factory] * n_envs)
    model = _sb3_class(config.ALGO)("MlpPolicy", vec_env, seed=seed, device="cpu", verbose=0,
                                    **_sb3_kwargs(config.ALGO, hp, problem.nu))
    if config.ALGO == "ppo":
        steps = hp["n_steps"] * n_envs * config.rollouts_per_iteration
    else:
        steps = config.episodes_per_iteration * problem.horizon
    session = Session(model, steps, config.torch_threads)
    zero = jnp.asarray(0, dtype=jnp.int64)
    policy = to_policy(template, model, env.center, env.half)
    return BaselineState(policy, zero, zero, zero, session)


def attach(problem: Problem, config: BaselineConfig, state: BaselineState,
           path: str | os.PathLike) -> BaselineState:
    """Bind the session to the run directory `path`: restore the SB3 files of the state's
    iteration (a resumed checkpoint), delete any others, write hyperparameters.json. Raises
    CheckpointError when the files are missing or disagree with the checkpointed policy."""
    session = state.session
    session.folder = os.path.join(os.fspath(path), SB3_FOLDER)
    os.makedirs(session.folder, exist_ok=True)
    iteration = int(state.iteration)
    session.prune(keep=(iteration,))
    if iteration > 0:
        session.restore(iteration)
        env = session.envs()[0]
        restored = to_policy(state.policy, session.model, env.center, env.half)
        same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                            eqx.filter(restored, eqx.is_array), eqx.filter(state.policy,
                                                                           eqx.is_array))
        if not all(jax.tree.leaves(same)):
            raise CheckpointError(
                f"{session.iteration_dir(iteration)} holds an SB3 actor that differs from the "
                "checkpointed policy; the run directory was changed outside rlto. Delete it to "
                "start afresh."
            )
    path = os.path.join(session.folder, "hyperparameters.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"algo": config.ALGO, "problem": problem.name,
                   **resolved_hyperparameters(problem, config)}, f, indent=2)
    os.replace(path + ".tmp", path)
    return state


def step(problem: Problem, config: BaselineConfig,
         state: BaselineState) -> tuple[BaselineState, dict]:
    """One rlto iteration: SB3 learns for one chunk of env steps, then the actor is converted.
    Advances the session in place (the old state is stale afterwards)."""
    session = state.session
    stats = session.learn()
    env = session.envs()[0]
    policy = to_policy(state.policy, session.model, env.center, env.half)
    iteration = int(state.iteration) + 1
    session.save(iteration)
    new_state = BaselineState(
        policy=policy,
        iteration=state.iteration + 1,
        sim_calls=jnp.asarray(session.model.num_timesteps, dtype=jnp.int64),
        to_iterations=state.to_iterations,
        session=session,
    )
    diverged = sum(env.diverged_episodes for env in session.envs())
    return new_state, {"env_steps": session.steps, "diverged_episodes": diverged, **stats}
