"""Gymnasium environments for rlto Problems (built-in and user-defined), for SB3 and for users.

    env = rlto.envs.RltoEnv(rlto.make("pendulum"))      # or RltoEnv("pendulum"), or, after
    env = gymnasium.make("rlto/pendulum-v0")             # `import rlto.envs`, by registered id
    obs, info = env.reset(seed=0, options={"x0": [3.1, 0.0]})   # options fix any parameter

One episode is one instance of the Problem's OCP:
- `reset` draws the parameters beta with `problem.sample` (keyed from the env's seeded
  np_random); `options` replaces entries, e.g. {"x0": (nx,)} or a target {"goal": (2,)};
- `step(a)` maps the action a in [-1, 1]^nu affinely to the control u (see below), applies
  x+ = dynamics(x, u, t, beta) and returns reward = -running_cost(x, u, t, beta);
- after T = problem.horizon steps the episode ends (truncated=True, or terminated=True with
  `terminal_at_horizon`) and the last reward also carries -terminal_cost(x_T, beta).
So the return of an episode is exactly minus the Problem's trajectory cost J of its controls
(the tests check it against `Problem.trajectory_cost`).
When a step's state or cost is not finite (the simulation diverged: ur5 driven at full torque
spins up until its explicit integrator overflows), J is infinite: the episode ends there with
terminated=True, reward -inf, the last finite state's observation and info["diverged"] True
(`diverged_episodes` counts them). Learners that need finite rewards bound them
(rlto.algorithms.baselines does).

Observation (float32 Box, unbounded): the network input of rlto.nets.Policy, in its order: the
non-angle state coordinates, (cos q, sin q) of each angle in `problem.angles`, then every sampled
parameter except "x0" (sorted by name, flattened), then the step t (0..T) with `time_feature`.
An rlto Policy with these param_keys therefore maps an observation to a control by
`policy.forward(obs)`. The exact float64 state is in info["x"], the step in info["t"].

Actions: the Box [-1, 1]^nu, mapped per control j by u_j = center_j + half_j a_j (clipped to
[-1, 1] first, as rlto rollouts clip the controls). With both bounds finite, center and half are
the box's midpoint and half-width, so [-1, 1] covers [u_lower, u_upper] exactly. Where a bound
is infinite there is no box to scale to; the env then needs a finite scale s_j:
    unbounded:        u = s a               (covers [-s, s])
    only u_lower:     u = u_lower + s (a + 1)   (covers [u_lower, u_lower + 2 s])
    only u_upper:     u = u_upper - s (1 - a)
`action_scale` gives s (scalar or (nu,)); by default it is estimated from trajectory
optimization (`estimate_action_scale`): ACTION_SCALE_MARGIN times the largest |u_j| (beyond the
finite bound, halved, for a one-sided control) of the TO optima of ACTION_SCALE_DRAWS sampled
instances. The optimum is what a policy must be able to output, and the margin leaves room for
the larger controls of instances not drawn; a physical limit, when the user knows one, is the
better choice, so pass it as action_scale. Built-in problems all have finite bounds.

Registration: importing this module registers `rlto/<name>-v0` for every built-in problem
(idempotently); `gymnasium.make("rlto/lqr-v0", problem_options={"horizon": 20})` passes
options to `rlto.make`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from rlto.nets import TIME_KEY
from rlto.problem import Problem, ProblemError, make, problem_names

ACTION_SCALE_DRAWS = 16
"""Instances solved by `estimate_action_scale`."""
ACTION_SCALE_MARGIN = 1.5
"""Factor between the largest TO control and the estimated action scale."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Observations saturate at +-this (they are float32; the state is float64)."""
ENV_PREFIX = "rlto/"
"""Namespace of the registered ids: `rlto/<problem name>-v0`."""


def env_id(name: str) -> str:
    """The registered Gymnasium id of a built-in problem: "lqr" -> "rlto/lqr-v0"."""
    return f"{ENV_PREFIX}{name}-v0"


# ---------------------------------------------------------------------------------------------
# Compiled single-instance functions, one set per Problem object (Problems hash by identity).


@functools.lru_cache(maxsize=64)
def _compiled(problem: Problem):
    """(step, sample) jitted for one instance: compiled once per Problem and shapes, so that
    episodes and steps never recompile (t is a traced integer, not a constant)."""

    def step(x, u, t, params):
        x_next = problem.dynamics(x, u, t, params)
        return x_next, problem.running_cost(x, u, t, params), problem.terminal_cost(x_next, params)

    def sample(key):
        return {k: v[0] for k, v in problem.sample(key, 1).items()}

    return jax.jit(step), jax.jit(sample)


@functools.lru_cache(maxsize=64)
def _param_shapes(problem: Problem) -> dict[str, tuple[int, ...]]:
    """One instance's shape of each sampled parameter, e.g. {"x0": (nx,), "goal": (2,)}."""
    drawn = _compiled(problem)[1](jax.random.key(0))
    return {k: tuple(np.shape(v)) for k, v in drawn.items()}


# ---------------------------------------------------------------------------------------------
# Action scaling.


def estimate_action_scale(problem: Problem, draws: int = ACTION_SCALE_DRAWS, seed: int = 0,
                          margin: float = ACTION_SCALE_MARGIN) -> np.ndarray:
    """A finite action scale s (nu,) for the controls with an infinite bound (see the module
    docstring): margin x the largest TO control, from `draws` instances solved with rlto.solve.

    Controls whose bounds are both finite get their half-width. Raises ProblemError when no
    solve is finite (then pass action_scale yourself).
    """
    from rlto.solver import solve  # the solver is only needed for unbounded problems

    params = problem.sample(jax.random.key(seed), draws)
    result = solve(problem, params)
    us = np.asarray(result.us)[np.isfinite(np.asarray(result.cost))]
    lo, hi = problem.u_lower, problem.u_upper
    if us.size == 0:
        raise ProblemError(
            f"{problem.name}: no finite TO solution among {draws} draws to estimate the action "
            "scale of the unbounded controls; pass action_scale=... (the control magnitude a "
            "policy should reach) to RltoEnv."
        )
    lo_f, hi_f = np.isfinite(lo), np.isfinite(hi)
    above_lower = us - np.where(lo_f, lo, 0.0)
    below_upper = np.where(hi_f, hi, 0.0) - us
    reach = np.where(lo_f, above_lower, np.where(hi_f, below_upper, np.abs(us)))
    reach = reach.reshape(-1, problem.nu).max(axis=0)
    one_sided = lo_f != hi_f
    scale = margin * np.where(one_sided, reach / 2, reach)
    scale = np.where(scale > 0, scale, 1.0)  # a control the optimum never uses: unit scale
    return np.where(lo_f & hi_f, (hi - lo) / 2, scale)


def action_map(problem: Problem, action_scale: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(center (nu,), half (nu,)) with u = center + half * a for a in [-1, 1]^nu.

    action_scale: scalar or (nu,) scale s of the controls with an infinite bound (ignored for
    boxed controls); None estimates it with `estimate_action_scale` when needed.
    """
    lo, hi = np.asarray(problem.u_lower), np.asarray(problem.u_upper)
    lo_f, hi_f = np.isfinite(lo), np.isfinite(hi)
    if (lo_f & hi_f).all():
        return (lo + hi) / 2, (hi - lo) / 2
    if action_scale is None:
        scale = estimate_action_scale(problem)
    else:
        scale = np.broadcast_to(np.asarray(action_scale, dtype=np.float64), (problem.nu,))
    if np.shape(scale) != (problem.nu,) or not np.all(np.isfinite(scale) & (scale > 0)):
        raise ProblemError(
            f"{problem.name}: action_scale must be a positive finite scalar or ({problem.nu},) "
            f"array; got {action_scale!r}."
        )
    lo0, hi0 = np.where(lo_f, lo, 0.0), np.where(hi_f, hi, 0.0)
    center = np.select([lo_f & hi_f, lo_f, hi_f], [(lo0 + hi0) / 2, lo0 + scale, hi0 - scale], 0.0)
    half = np.where(lo_f & hi_f, (hi0 - lo0) / 2, scale)
    return center, half


# ---------------------------------------------------------------------------------------------
# Observations.


def observation_keys(problem: Problem) -> tuple[str, ...]:
    """The sampled parameters that the observation carries after the state: every key of the
    sampler except "x0", sorted (rlto.nets.make_policy's default param_keys)."""
    keys = sorted(k for k in _param_shapes(problem) if k != "x0")
    if TIME_KEY in keys:
        raise ProblemError(
            f"{problem.name}: the sampler returns the key {TIME_KEY!r}, which rlto reserves for "
            "the time step; rename that parameter."
        )
    return tuple(keys)


def observation(problem: Problem, x: np.ndarray, params: Mapping[str, np.ndarray], t: int,
                time_feature: bool) -> np.ndarray:
    """The observation (d,) float64 of state x (nx,) at step t (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    angles = np.asarray(problem.angles, dtype=int)
    rest = np.setdiff1d(np.arange(problem.nx), angles)
    parts = [x[rest], np.cos(x[angles]), np.sin(x[angles])]
    parts += [np.asarray(params[k], dtype=np.float64).reshape(-1) for k in
              observation_keys(problem)]
    if time_feature:
        parts.append(np.array([float(t)]))
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------
# The environment.


class RltoEnv(gym.Env):
    """One instance of a Problem's OCP per episode (see the module docstring).

    problem: a Problem, or a built-in problem's name (built with `rlto.make(name,
        **problem_options)`).
    time_feature: append the step t to the observation (the optimum of a finite-horizon problem
        depends on the time to go).
    terminal_at_horizon: end episodes with terminated=True instead of truncated=True. The horizon
        is part of the OCP: with time_feature, the state at T is terminal (its cost is in the
        last reward), so a learner must not bootstrap a value past it.
    action_scale: the scale of controls with an infinite bound (see `action_map`).
    """

    metadata = {"render_modes": []}

    def __init__(self, problem: Problem | str, *, problem_options: Mapping[str, Any] | None = None,
                 time_feature: bool = False, terminal_at_horizon: bool = False,
                 action_scale: Any = None):
        if isinstance(problem, str):
            problem = make(problem, **dict(problem_options or {}))
        elif problem_options:
            raise ProblemError(
                "problem_options apply only when the problem is given by name; build the "
                "Problem with those options instead (rlto.make(name, **options))."
            )
        if not isinstance(problem, Problem):
            raise ProblemError(
                f"RltoEnv needs an rlto.Problem or a built-in problem name, got "
                f"{type(problem).__name__}."
            )
        self.problem = problem
        self.time_feature = bool(time_feature)
        self.terminal_at_horizon = bool(terminal_at_horizon)
        self.center, self.half = action_map(problem, action_scale)
        self._step_fn, self._sample_fn = _compiled(problem)
        self._param_shapes = _param_shapes(problem)
        size = observation(problem, np.zeros(problem.nx), {k: np.zeros(s) for k, s in
                                                           self._param_shapes.items()},
                           0, self.time_feature).size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (problem.nu,), np.float32)
        self.x: np.ndarray | None = None
        self.t = 0
        self.params: dict[str, np.ndarray] | None = None
        self.diverged = False
        self.diverged_episodes = 0

    # Mapping between actions and controls.
    def control(self, action) -> np.ndarray:
        """u (nu,) float64 of an action (nu,) in [-1, 1] (clipped into it first)."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.problem.nu,):
            raise ValueError(
                f"{self.problem.name}: action has shape {a.shape}, expected ({self.problem.nu},) "
                "in [-1, 1]."
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.problem.name}: action {a} is not finite.")
        return self.center + self.half * np.clip(a, -1.0, 1.0)

    def action(self, u) -> np.ndarray:
        """The action (nu,) float64 that `control` maps to u (nu,): (u - center) / half."""
        return (np.asarray(u, dtype=np.float64) - self.center) / self.half

    def observe(self) -> np.ndarray:
        """The observation (float32) of the current state and step."""
        # A finite state beyond float32's range (a spinning-up robot) saturates rather than
        # turning into inf.
        return np.clip(observation(self.problem, self.x, self.params, self.t, self.time_feature),
                       -FLOAT32_MAX, FLOAT32_MAX).astype(np.float32)

    def _info(self) -> dict:
        return {"x": self.x.copy(), "t": self.t, "diverged": self.diverged}

    # Gymnasium API.
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        """Draw beta from problem.sample (keyed by the env's np_random); options replace
        entries of it, e.g. {"x0": (nx,)}. Returns (observation, info)."""
        super().reset(seed=seed)
        key = jax.random.key(int(self.np_random.integers(0, 2**63 - 1)))
        params = {k: np.asarray(v, dtype=np.float64) for k, v in self._sample_fn(key).items()}
        params.update(self._checked_options(options))
        self.params, self.t, self.diverged = params, 0, False
        self.x = params["x0"].copy()
        return self.observe(), self._info()

    def _checked_options(self, options: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise ProblemError(
                f"{self.problem.name}: reset options must be a dict of parameters, e.g. "
                f"{{'x0': ...}}; got {type(options).__name__}."
            )
        fixed = {}
        for key, value in options.items():
            if key not in self._param_shapes:
                raise ProblemError(
                    f"{self.problem.name}: unknown reset option {key!r}; the parameters are "
                    f"{sorted(self._param_shapes)}."
                )
            value = np.asarray(value, dtype=np.float64)
            if value.shape != self._param_shapes[key]:
                raise ProblemError(
                    f"{self.problem.name}: reset option {key!r} has shape {value.shape}, "
                    f"expected {self._param_shapes[key]} (one instance)."
                )
            if not np.all(np.isfinite(value)):
                raise ProblemError(f"{self.problem.name}: reset option {key!r} is not finite.")
            fixed[key] = value
        return fixed

    def step(self, action):
        """Apply the control of `action`; returns (obs, reward, terminated, truncated, info)."""
        if self.x is None:
            raise gym.error.ResetNeeded("call reset() before step().")
        if self.t >= self.problem.horizon:
            raise gym.error.ResetNeeded(
                f"the episode ended at the horizon T={self.problem.horizon}; call reset()."
            )
        if self.diverged:
            raise gym.error.ResetNeeded("the simulation diverged in this episode; call reset().")
        u = self.control(action)
        x_next, running, terminal = self._step_fn(self.x, u, self.t, self.params)
        x_next = np.asarray(x_next, dtype=np.float64)
        self.t += 1
        end = self.t == self.problem.horizon
        reward = -float(running) - (float(terminal) if end else 0.0)
        if not (np.all(np.isfinite(x_next)) and np.isfinite(reward)):
            # The explicit integrator overflowed (e.g. ur5 spun up by full torques): the
            # trajectory cost is infinite. The episode ends here on the last finite state.
            self.end_diverged()
            return self.observe(), -np.inf, True, False, self._info()
        self.x = x_next
        terminated = end and self.terminal_at_horizon
        truncated = end and not self.terminal_at_horizon
        return self.observe(), reward, terminated, truncated, self._info()

    def end_diverged(self) -> None:
        """Mark the current episode as diverged (counted; `step` refuses until `reset`).
        `step` calls it on an overflow; a learner that bounds the state may call it too."""
        self.diverged = True
        self.diverged_episodes += 1

    # Snapshots, for checkpoints of learners that run mid-episode (rlto.algorithms.baselines).
    def get_state(self) -> dict:
        """Everything that determines the env's future: the episode (x, t, beta) and the state
        of np_random. Picklable; `set_state` restores it."""
        return {
            "x": None if self.x is None else self.x.copy(),
            "t": self.t,
            "params": None if self.params is None else {k: v.copy() for k, v in
                                                        self.params.items()},
            "np_random": self.np_random.bit_generator.state,
            "diverged": self.diverged,
            "diverged_episodes": self.diverged_episodes,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore a snapshot of `get_state`."""
        self.x, self.t, self.params = state["x"], int(state["t"]), state["params"]
        self.np_random.bit_generator.state = state["np_random"]
        self.diverged = bool(state.get("diverged", False))
        self.diverged_episodes = int(state.get("diverged_episodes", 0))


# ---------------------------------------------------------------------------------------------
# Registration.


def register_problems() -> list[str]:
    """Register `rlto/<name>-v0` for every built-in problem not yet registered; returns the ids
    of all built-ins. Called on import; calling it again is harmless."""
    ids = []
    for name in problem_names():
        ident = env_id(name)
        if ident not in gym.registry:
            gym.register(id=ident, entry_point="rlto.envs:RltoEnv", kwargs={"problem": name})
        ids.append(ident)
    return ids


register_problems()
