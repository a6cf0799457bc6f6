"""CACTO: continuous actor-critic with trajectory optimization (Grandesso et al., RAL 2023;
seed 000), CACTO-SL (Sobolev learning of the value, L4DC 2024) and CACTO-BIC's biased
initial-state sampling.

    for k = 1..K (one `step` each):
        sample E initial states x0 (uniformly over the state space, or, with biased sampling,
            the E most uncertain of bias_candidates x E uniform candidates) and start times t0
        warm start: zero controls (k = 1), then the actor's rollout from (x0, t0)
        episodes <- TO solves of the E problems (batched box-FDDP)     exploration in state space
        buffer  <- (x_t, t, N-step partial cost-to-go, x_{t+N}, Vx_t)   TD(N) transitions
        k = 1: pre-train the actor on the TO controls (regression)
        repeat U times, on mini-batches of B transitions:
            critic: min (V(x_t, t) - [c_{t:t+N} + V'(x_{t+N}, t+N)])^2
                        [+ w ||dV/dx - Vx||^2 on the converged episodes' transitions (SL)]
            actor:  min Q(x, pi(x, t), t) = l(x, pi, t) + V(f(x, pi, t), t + 1)  (model-based DPG;
                    actor_lookahead = H > 1: H steps of l through the model, then V)
            target: V' <- tau V + (1 - tau) V'

The critic is an MLP of (state features, conditioning params, t) with two outputs: the value
(normalised by a scale fixed on the first loop) and the log-variance of its TD residual, the
"std-critic" whose prediction ranks candidates for biased sampling. Variable horizon (CACTO's
start-time sampling): an episode starting at t0 is solved as the full-horizon problem whose
dynamics hold x still before t0 (`delayed_start`), so episodes of every length share one batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlto import losses
from rlto.algorithms.common import (
    LearningConfig,
    delayed_start,
    finite_warm_start,
    fit_policy,
    init_optimizer,
    new_policy,
    solve_from_each,
    usable_solves,
)
from rlto.evaluate import policy_rollout
from rlto.nets import TIME_KEY, Policy, set_normalization, trainable
from rlto.problem import Problem, ProblemError


@dataclasses.dataclass(frozen=True)
class CactoConfig(LearningConfig):
    """Hyperparameters of CACTO. Defaults follow CACTO's public configuration (conf_*.py of
    the authors' code) where it fits a batched, JIT-compiled loop: learning rates 1e-3 (actor)
    and 5e-4 (critic), TD(T/4), two hidden layers of 256, mini-batches of 128.

    Fields shared with PDDP/PLAL (LearningConfig) mean: n_problems = TO episodes per loop;
    epochs, batch_size, learning_rate, sobolev = the first loop's actor pre-training (and
    learning_rate the actor's rate afterwards); hidden = the actor's widths."""

    n_problems: int = 200
    """E: TO episodes per loop (the original's EP_UPDATE)."""
    epochs: int = 20
    """Passes of the first loop's actor pre-training over the TO controls."""
    sobolev: str = "none"
    """Gain matching in the actor's pre-training (see LearningConfig); CACTO has none."""
    to_max_iter: int = 15
    """DDP iterations per episode. An episode only has to supply critic targets better than
    the actor's own rollout, and it is warm-started by an actor that improves every loop.
    Measured on double_integrator (2 seeds, 10 loops), capping at 15 instead of 100 cut the
    training time from 3.9 to 2.3 min with the same quality: 90.6% of hard-region states below
    random values, against 87.1%. The car needs more: its jerk-controlled episodes are far
    from converged after 15 iterations, and the critic learns the cost of those unfinished
    trajectories (seed 0, 10 loops: 57% below random values and a mean hard-region TO cost of
    -3.4 with 15; 73% and -22.7 with 50; 73% and -23.7 with 100), so run it with 50."""
    updates_per_iteration: int = 2000
    """U: critic and actor gradient steps per loop (the original grows it from 1000 to 16000
    over its 6 loops; measured on single_integrator, 2000 per loop of 200 episodes reaches its
    plateau in about 10 loops)."""
    update_batch_size: int = 128
    """B: transitions per critic/actor gradient step."""
    critic_learning_rate: float = 5e-4
    """Adam step size of the critic."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the critic MLP."""
    critic_activation: str = "elu"
    """Critic activation; smooth ones give the actor a useful dV/dx ("elu", "tanh", "gelu")."""
    td_steps: int = 0
    """N of TD(N); 0 means T // 4, the original's choice."""
    target_update_rate: float = 5e-3
    """tau of the soft target-critic update per gradient step."""
    buffer_size: int = 2**17
    """Replay buffer capacity in transitions (oldest overwritten first)."""
    random_start_share: float = 0.5
    """Share of the episodes whose start step t0 is uniform in 0..T-1 (CACTO's variable
    horizon, so that the critic sees states at every t); the others start at t = 0. The
    original draws every t0 at random, which leaves few transitions near t = 0 (an episode from
    t0 covers t0..T-1), exactly where the warm starts are used; 1.0 reproduces it."""
    value_gradient_weight: float = 0.0
    """CACTO-SL: weight of ||dV/dx - Vx||^2 (Vx from the DDP backward pass), in the critic's
    normalised units; 0 is plain CACTO."""
    value_gradient_from: str = "converged"
    """Transitions whose Vx the SL term learns: "converged", those of episodes whose TO
    converged, or "all". Vx is the gradient of the returned trajectory's cost-to-go under the
    solver's feedback gains; it is the value function's gradient only at a (local) optimum
    (envelope theorem). After 15 iterations (the default to_max_iter) 13-16% of the first
    loop's episodes have converged on double_integrator and manipulator3 (mean cost 77 on the
    first, against 26 after 100 iterations). Measured (README, CACTO benchmark): learning the
    unconverged episodes' Vx ("all") makes CACTO-SL far worse than CACTO on both problems
    (manipulator3 after 4000 episodes: mean hard-region TO cost 76 against -21); "converged"
    needs a fifth of CACTO's episodes on single_integrator (3 seeds), is level with it on
    double_integrator and at -12 on manipulator3."""
    initial_states: str = "uniform"
    """"uniform" over the sampler, or "biased" (CACTO-BIC): from bias_candidates x E uniform
    draws keep the E where the std-critic predicts the largest TD residual."""
    bias_candidates: int = 4
    """Candidates per episode drawn for biased sampling."""
    actor_lookahead: int = 1
    """H: steps of the actor's own rollout through the model before the critic's value in the
    actor's objective, Q = sum of H running costs + V(x_{t+H}); 1 is CACTO's l + V(f). More
    steps let the actor see the model's costs directly where the critic is still coarse, at H
    forward and backward passes of actor and dynamics per update. Measured on the car (3 seeds,
    10 loops, to_max_iter=50): H = 5 leaves the median share of hard-region states below random
    values at 77.7% ([75.9, 77.7] against [73.2, 84.8]) and the mean TO cost at -28.4 (-29.3),
    with less spread over seeds and 1.8x the training time; its rollouts from the pocket between
    the obstacles still drive through them, since 0.25 s of lookahead does not reach them."""

    def __post_init__(self):
        super().__post_init__()
        self._check_choice("initial_states", ("uniform", "biased"))
        self._check_choice("value_gradient_from", ("all", "converged"))
        for name in ("updates_per_iteration", "update_batch_size", "buffer_size",
                     "bias_candidates", "actor_lookahead"):
            if int(getattr(self, name)) < 1:
                raise ProblemError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.td_steps < 0:
            raise ProblemError(f"td_steps must be >= 0 (0: T // 4), got {self.td_steps}.")
        if not 0.0 < self.target_update_rate <= 1.0:
            raise ProblemError(
                f"target_update_rate must be in (0, 1], got {self.target_update_rate}."
            )
        if not 0.0 <= self.random_start_share <= 1.0:
            raise ProblemError(
                f"random_start_share must be in [0, 1], got {self.random_start_share}."
            )
        if self.value_gradient_weight < 0:
            raise ProblemError(
                f"value_gradient_weight must be >= 0, got {self.value_gradient_weight}."
            )
        widths = tuple(self.critic_hidden) if isinstance(self.critic_hidden, tuple | list) else ()
        if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ProblemError(
                f"critic_hidden must be a tuple of positive widths, got {self.critic_hidden!r}."
            )
        object.__setattr__(self, "critic_hidden", widths)


@dataclasses.dataclass(frozen=True)
class CactoSlConfig(CactoConfig):
    """CACTO-SL: CACTO whose critic also matches the TO value gradient (Sobolev learning)."""

    value_gradient_weight: float = 1.0
    """Weight of ||dV/dx - Vx||^2 in normalised units (see CactoConfig). Measured (README):
    1 needs a fifth of CACTO's episodes on single_integrator, where 0.1 leaves two of three
    seeds stuck; on manipulator3 0.1 ends below CACTO (mean hard-region TO cost -24.0 against
    -21.1 after 4000 episodes), where 1 ends at -12. Not a matter of the targets' size: their
    mean square in these units is 4-20 on single_integrator and 3-4 on manipulator3, so
    dividing the term by it would raise the manipulator's weight, not lower it."""


class CactoState(NamedTuple):
    """Everything a resumed run needs (a pytree; saved whole in checkpoints)."""

    policy: Policy  # the actor pi(x, beta, t)
    critic: Policy  # (value, log-variance of the TD residual), unbounded outputs
    target_critic: Policy
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    value_offset: jax.Array  # () V = offset + scale * critic output 0
    value_scale: jax.Array  # ()
    buffer: dict  # replay buffer, see new_buffer
    key: jax.Array
    iteration: jax.Array  # () int: loops done
    sim_calls: jax.Array  # () int: dynamics calls (forward + derivative)
    to_iterations: jax.Array  # () int: DDP iterations summed over episodes
    episodes: jax.Array  # () int: TO episodes solved


def td_steps(problem: Problem, config: CactoConfig) -> int:
    """N of TD(N): config.td_steps, or T // 4 (at least 1)."""
    return int(config.td_steps) or max(1, problem.horizon // 4)


# ---------------------------------------------------------------------------------------------
# Networks.


def new_critic(problem: Problem, actor: Policy, config: CactoConfig, key: jax.Array) -> Policy:
    """A critic with the actor's inputs (state features, params, t) and 2 unbounded outputs."""
    return Policy(
        problem.nx, 2, config.critic_hidden, -math.inf, math.inf, actor.param_keys,
        actor.param_shapes, key=key, activation=config.critic_activation,
        in_mean=actor.in_mean, in_scale=actor.in_scale, dtype=actor.dtype, angles=actor.angles,
    )


def value(critic: Policy, offset, scale, x, params) -> jax.Array:
    """V(x, params) for one instance (params with TIME_KEY): scalar."""
    return offset + scale * critic(x, params)[0]


def q_value(problem: Problem, actor: Policy, critic: Policy, offset, scale, x, params, t,
            lookahead: int = 1):
    """Q(x, pi(x, t), t): the actor's H-step cost through the model plus the critic's value
    there, sum_{s=t}^{t+H-1} l(x_s, pi(x_s, s), s) + V(x_{t+H}, t + H), with V(., T) = l_T and
    steps past T dropped. H = `lookahead`; H = 1 is CACTO's l(x, u, t) + V(f(x, u, t), t + 1).
    One instance: params = the problem's parameters (no time key); t: scalar step."""
    horizon = problem.horizon

    def advance(carry, i):
        x_s, cost = carry
        s = t + i
        live = s < horizon
        u = actor(x_s, {**params, TIME_KEY: s})
        x_next = problem.dynamics(x_s, u, s, params)
        cost = cost + jnp.where(live, problem.running_cost(x_s, u, s, params), 0.0)
        return (jnp.where(live, x_next, x_s), cost), None

    zero = jnp.zeros((), jnp.result_type(x.dtype, float))
    (x_end, cost), _ = jax.lax.scan(advance, (x, zero), jnp.arange(lookahead))
    t_end = jnp.minimum(t + lookahead, horizon)
    v_end = value(critic, offset, scale, x_end, {**params, TIME_KEY: t_end})
    return cost + jnp.where(t_end >= horizon, problem.terminal_cost(x_end, params), v_end)


def critic_loss(critic: Policy, target: Policy, offset, scale, batch: dict, config):
    """Mean squared TD(N) error in normalised units [+ SL term] + the std-critic's Gaussian NLL
    of the residual. batch: dict of (B, ...) arrays from the buffer. Returns (loss, parts)."""

    def one(x, params, t, partial, x_boot, t_boot, bootstrap, vx, converged):
        v_boot = value(target, offset, scale, x_boot, {**params, TIME_KEY: t_boot})
        y = partial + jnp.where(bootstrap, jax.lax.stop_gradient(v_boot), 0.0)
        out, grad_x = critic(x, {**params, TIME_KEY: t}), None
        if config.value_gradient_weight > 0:
            grad_x = jax.grad(lambda x_: critic(x_, {**params, TIME_KEY: t})[0])(x)
        residual = (y - offset) / scale - out[0]
        log_var = out[1]
        nll = 0.5 * (jnp.exp(-log_var) * jax.lax.stop_gradient(residual) ** 2 + log_var)
        sobolev = 0.0
        if grad_x is not None:
            # dV/dx = scale * d out/dx; compare in units of the state's spread.
            x_spread = _state_spread(critic)
            sobolev = jnp.sum(((grad_x - vx / scale) * x_spread) ** 2)
            if config.value_gradient_from == "converged":
                sobolev = jnp.where(converged, sobolev, 0.0)
        return residual**2, sobolev, nll

    b = batch
    td, sobolev, nll = jax.vmap(one)(b["x"], b["params"], b["t"], b["partial"], b["x_boot"],
                                     b["t_boot"], b["bootstrap"], b["Vx"], b["converged"])
    td, sobolev, nll = td.mean(), jnp.mean(sobolev), nll.mean()
    return td + config.value_gradient_weight * sobolev + nll, (td, sobolev, nll)


def _state_spread(critic: Policy) -> jax.Array:
    """(nx,) typical size of each state coordinate: the input normalisation's scale of the
    non-angle coordinates (the first inputs, in order), 1 for an angle (input (cos, sin))."""
    rest = np.setdiff1d(np.arange(critic.nx), np.asarray(critic.angles, dtype=int))
    spread = jnp.ones(critic.nx, critic.dtype)
    return spread.at[rest].set(jax.lax.stop_gradient(critic.in_scale[: rest.size]))


def actor_loss(actor: Policy, problem: Problem, critic: Policy, offset, scale, batch: dict,
               lookahead: int = 1):
    """Mean Q(x, pi(x, t), t) (H = lookahead steps) over the batch, in the critic's normalised
    units."""
    q = jax.vmap(
        lambda x, p, t: q_value(problem, actor, critic, offset, scale, x, p, t, lookahead)
    )(batch["x"], batch["params"], batch["t"])
    return jnp.mean(q) / scale


def soft_update(target: Policy, source: Policy, tau: float) -> Policy:
    """target <- tau source + (1 - tau) target on the weights (normalisation copied)."""
    mix = jax.tree.map(lambda a, b: tau * b + (1 - tau) * a, eqx.filter(target, trainable(target)),
                       eqx.filter(source, trainable(source)))
    frozen = eqx.filter(source, trainable(source), inverse=True)
    return eqx.combine(mix, frozen)


@eqx.filter_jit
def train_networks(problem: Problem, config: CactoConfig, actor, critic, target, actor_opt,
                   critic_opt, offset, scale, buffer: dict, key: jax.Array):
    """U critic + actor + target steps on mini-batches drawn uniformly from the buffer.
    Returns the networks, optimizer states and the mean loss parts (td, sobolev, nll, q)."""
    actor_optimizer = optax.adam(config.learning_rate)
    critic_optimizer = optax.adam(config.critic_learning_rate)
    actor_w, actor_frozen = eqx.partition(actor, trainable(actor))
    critic_w, critic_frozen = eqx.partition(critic, trainable(critic))
    data = {k: v for k, v in buffer.items() if k not in ("size", "next")}

    def update(carry, step_key):
        actor_w, critic_w, target, actor_opt, critic_opt = carry
        index = jax.random.randint(step_key, (config.update_batch_size,), 0, buffer["size"])
        batch = jax.tree.map(lambda a: a[index], data)

        def c_loss(w):
            return critic_loss(eqx.combine(w, critic_frozen), target, offset, scale, batch, config)

        (_, parts), grads = jax.value_and_grad(c_loss, has_aux=True)(critic_w)
        updates, critic_opt = critic_optimizer.update(grads, critic_opt, critic_w)
        critic_w = optax.apply_updates(critic_w, updates)
        critic_now = eqx.combine(critic_w, critic_frozen)

        def a_loss(w):
            return actor_loss(eqx.combine(w, actor_frozen), problem, critic_now, offset, scale,
                              batch, config.actor_lookahead)

        q, grads = jax.value_and_grad(a_loss)(actor_w)
        updates, actor_opt = actor_optimizer.update(grads, actor_opt, actor_w)
        actor_w = optax.apply_updates(actor_w, updates)
        target = soft_update(target, critic_now, config.target_update_rate)
        return (actor_w, critic_w, target, actor_opt, critic_opt), jnp.stack([*parts, q])

    carry = (actor_w, critic_w, target, actor_opt, critic_opt)
    keys = jax.random.split(key, config.updates_per_iteration)
    (actor_w, critic_w, target, actor_opt, critic_opt), parts = jax.lax.scan(update, carry, keys)
    return (eqx.combine(actor_w, actor_frozen), eqx.combine(critic_w, critic_frozen), target,
            actor_opt, critic_opt, parts.mean(axis=0))


# ---------------------------------------------------------------------------------------------
# Replay buffer (fixed capacity, so that checkpoints have fixed shapes).


def new_buffer(problem: Problem, capacity: int) -> dict:
    """Empty buffer of `capacity` TD(N) transitions: x, x_boot, Vx (C, nx); t, t_boot, partial,
    bootstrap, converged (C,; whether the episode's TO converged); params: the problem's
    parameters {k: (C, ...)}; size and next (int)."""
    reference = problem.sample(jax.random.key(0), 1)
    zeros = functools.partial(np.zeros, dtype=np.float64)
    return {
        "x": zeros((capacity, problem.nx)),
        "t": zeros(capacity),
        "params": {k: zeros((capacity, *np.shape(v)[1:])) for k, v in reference.items()},
        "partial": zeros(capacity),
        "x_boot": zeros((capacity, problem.nx)),
        "t_boot": zeros(capacity),
        "bootstrap": np.zeros(capacity, dtype=bool),
        "Vx": zeros((capacity, problem.nx)),
        "converged": np.zeros(capacity, dtype=bool),
        "size": np.asarray(0, dtype=np.int64),
        "next": np.asarray(0, dtype=np.int64),
    }


def add_transitions(buffer: dict, transitions: dict) -> dict:
    """The buffer with m transitions (dict of (m, ...) arrays, keys as the buffer's) written at
    its next slots, overwriting the oldest when full."""
    capacity = buffer["x"].shape[0]
    m = transitions["x"].shape[0]
    if m > capacity:  # keep the most recent transitions only
        transitions = jax.tree.map(lambda a: a[-capacity:], transitions)
        m = capacity
    slots = (int(buffer["next"]) + np.arange(m)) % capacity

    def write(store, new):
        store = np.array(store, copy=True)
        store[slots] = np.asarray(new)
        return store

    out = {k: jax.tree.map(write, buffer[k], transitions[k]) for k in transitions}
    out["size"] = np.asarray(min(capacity, int(buffer["size"]) + m), dtype=np.int64)
    out["next"] = np.asarray((int(buffer["next"]) + m) % capacity, dtype=np.int64)
    return out


def episode_transitions(problem: Problem, result, params: dict, t0: np.ndarray,
                        n_steps: int) -> dict:
    """The TD(N) transitions of solved episodes: steps t0 <= t < T of the usable solves.

    result: solves of `delayed_start(problem)` (xs (E, T+1, nx), us, Vx); params: (E, ...) with
    the problem's keys; t0 (E,) start steps. Returns dict of (m, ...) arrays (buffer keys)."""
    T = problem.horizon
    xs, us = np.asarray(result.xs), np.asarray(result.us)
    steps = np.arange(T)
    costs = jax.vmap(jax.vmap(problem.running_cost, in_axes=(0, 0, 0, None)),
                     in_axes=(0, 0, None, 0))(xs[:, :T], us, steps, params)
    terminal = jax.vmap(problem.terminal_cost)(xs[:, T], params)
    # Steps before t0 belong to no episode: their cost is zero in the window sums.
    costs = jnp.where(steps[None] >= t0[:, None], costs, 0.0)
    partial, boot_step, bootstrap = (np.asarray(a) for a in
                                     losses.td_n_targets(costs, terminal, n_steps))
    keep = (steps[None] >= t0[:, None]) & usable_solves(result)[:, None]  # (E, T)
    episode, t = np.nonzero(keep)
    return {
        "x": xs[episode, t],
        "t": t.astype(np.float64),
        "params": {k: np.asarray(v)[episode] for k, v in params.items()},
        "partial": partial[episode, t],
        "x_boot": xs[episode, boot_step[episode, t]],
        "t_boot": boot_step[episode, t].astype(np.float64),
        "bootstrap": bootstrap[episode, t],
        "Vx": np.asarray(result.Vx)[episode, t],
        "converged": np.asarray(result.converged)[episode],
    }


# ---------------------------------------------------------------------------------------------
# The loop.


def init(problem: Problem, config: CactoConfig, key: jax.Array) -> CactoState:
    """Fresh actor, critic (and its target copy), optimizers and an empty buffer."""
    actor_key, critic_key, key = jax.random.split(key, 3)
    actor = new_policy(problem, config, actor_key)
    critic = new_critic(problem, actor, config, critic_key)
    critic_opt = optax.adam(config.critic_learning_rate).init(eqx.filter(critic, trainable(critic)))
    zero = jnp.asarray(0, dtype=jnp.int64)
    zero_f, one_f = jnp.asarray(0.0, jnp.float64), jnp.asarray(1.0, jnp.float64)
    return CactoState(actor, critic, critic, init_optimizer(actor, config), critic_opt,
                      zero_f, one_f, new_buffer(problem, config.buffer_size), key, zero,
                      zero, zero, zero)


def uncertainty(critic: Policy, params: dict, t: np.ndarray) -> np.ndarray:
    """(n,) predicted log-variance of the critic's TD residual at (x0, t) of each candidate."""
    x0 = jnp.asarray(params["x0"])
    p = {**{k: jnp.asarray(v) for k, v in params.items()}, TIME_KEY: jnp.asarray(t)}
    return np.asarray(jax.vmap(lambda x, q: critic(x, q)[1])(x0, p))


def sample_episodes(problem: Problem, config: CactoConfig, state: CactoState, key: jax.Array):
    """E episodes' problem parameters (E, ...) and start steps t0 (E,) int."""
    E, T = config.n_problems, problem.horizon
    biased = config.initial_states == "biased" and int(state.iteration) > 0
    m = E * config.bias_candidates if biased else E
    param_key, time_key = jax.random.split(key)
    params = {k: np.asarray(v) for k, v in problem.sample(param_key, m).items()}
    start_key, share_key = jax.random.split(time_key)
    random_t0 = np.asarray(jax.random.randint(start_key, (m,), 0, T))
    random_start = np.asarray(jax.random.uniform(share_key, (m,))) < config.random_start_share
    t0 = np.where(random_start, random_t0, 0)
    if biased:
        keep = np.argsort(-uncertainty(state.critic, params, t0))[:E]
        params, t0 = {k: v[keep] for k, v in params.items()}, t0[keep]
    return params, t0


def step(problem: Problem, config: CactoConfig, state: CactoState) -> tuple[CactoState, dict]:
    """One CACTO loop: E TO episodes, buffer update, U actor-critic steps."""
    key, episode_key, fit_key, update_key = jax.random.split(state.key, 4)
    first = int(state.iteration) == 0
    T = problem.horizon
    params, t0 = sample_episodes(problem, config, state, episode_key)
    delayed = delayed_start(problem)
    episode_params = {**params, "t0": t0.astype(np.float64)}
    rollout_calls, init = 0, None
    if not first:
        rollout_xs, rollout_us, _ = policy_rollout(delayed, state.policy, episode_params)
        init = finite_warm_start(rollout_xs, rollout_us)
        rollout_calls = int((T - t0).sum())
    result, to_calls, to_iterations = solve_from_each(delayed, episode_params, [init], config)
    transitions = episode_transitions(problem, result, params, t0, td_steps(problem, config))

    actor, critic, target = state.policy, state.critic, state.target_critic
    actor_opt, offset, scale = state.actor_opt, state.value_offset, state.value_scale
    if first and transitions["x"].shape[0] > 0:
        # Normalise inputs and values over the first episodes, then pre-train the actor on the
        # TO controls (the slides' supervised first iteration).
        ok = usable_solves(result)
        ok_x = result.xs[ok, :T]
        ok_params = {k: np.repeat(v[ok][:, None], T, axis=1) for k, v in params.items()}
        ok_params[TIME_KEY] = np.broadcast_to(np.arange(T, dtype=np.float64), ok_x.shape[:2])
        actor = set_normalization(actor, ok_x, ok_params)
        critic = target = critic.with_normalization(actor.in_mean, actor.in_scale)
        values = transitions["partial"]
        # Strong float64 scalars: a weakly typed one would compile a second, numerically
        # different train_networks after a resume (whose checkpoint holds strong types).
        offset = jnp.asarray(np.mean(values), dtype=jnp.float64)
        scale = jnp.asarray(max(float(np.std(values)), 1e-8), dtype=jnp.float64)
        pretrain = _pretraining_data(result, params, t0, ok, T)
        actor, actor_opt, _ = fit_policy(actor, actor_opt, pretrain, fit_key, _pretrain_loss,
                                         config)
    buffer = add_transitions(state.buffer, transitions)
    info = {"episodes": int(t0.shape[0]), "usable_episodes": int(usable_solves(result).sum()),
            "converged_episodes": int(np.sum(result.converged))}
    update_calls = 0
    if int(buffer["size"]) > 0:
        device_buffer = jax.tree.map(jnp.asarray, buffer)
        actor, critic, target, actor_opt, critic_opt, parts = train_networks(
            problem, config, actor, critic, target, actor_opt, state.critic_opt, offset, scale,
            device_buffer, update_key,
        )
        td, sobolev, nll, q = (float(v) for v in parts)
        info.update(critic_td=td, critic_sobolev=sobolev, critic_nll=nll, actor_q=q)
        # Each actor step evaluates the dynamics and differentiates through them at B points,
        # H times along its lookahead.
        update_calls = (2 * config.actor_lookahead * config.updates_per_iteration
                        * config.update_batch_size)
    else:
        critic_opt = state.critic_opt
    new_state = CactoState(
        policy=actor, critic=critic, target_critic=target, actor_opt=actor_opt,
        critic_opt=critic_opt, value_offset=offset, value_scale=scale, buffer=buffer, key=key,
        iteration=state.iteration + 1,
        sim_calls=state.sim_calls + to_calls + rollout_calls + update_calls,
        to_iterations=state.to_iterations + to_iterations,
        episodes=state.episodes + t0.shape[0],
    )
    return new_state, info


def _pretraining_data(result, params: dict, t0: np.ndarray, ok: np.ndarray, T: int) -> dict:
    """(x_t, params, t) -> u_t pairs of the usable episodes' steps t >= t0."""
    keep = (np.arange(T)[None] >= t0[:, None]) & ok[:, None]
    episode, t = np.nonzero(keep)
    batch_params = {k: jnp.asarray(np.asarray(v)[episode]) for k, v in params.items()}
    batch_params[TIME_KEY] = jnp.asarray(t, dtype=jnp.float64)
    return {"x": jnp.asarray(result.xs[episode, t]), "u": jnp.asarray(result.us[episode, t]),
            "params": batch_params}


def _pretrain_loss(policy: Policy, batch: dict, key: jax.Array, config):
    regression = losses.regression_loss(policy, batch["x"], batch["u"], batch["params"])
    return regression, (regression,)
