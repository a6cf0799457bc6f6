"""PDDP: projected DDP (seed 002, Sec. III, Alg. 1).

    for k = 1..M:
        sample N problems beta_i                                (fresh each iteration)
        U0 <- Rollout(pi_theta)                                 warm start from the policy
        U  <- argmin_U R(U)                                     batched box-FDDP (rlto.solve)
        D  <- the last `aggregate` iterations' (x, u, K)        1: this iteration's alone
        theta <- argmin_theta d(theta, D) [+ Sobolev term]      Adam mini-batches, eq. 7 (eq. 8)

The Sobolev term matches the policy's Jacobian to the TO feedback gains K_t, fully (eq. 8) or
stochastically along random control directions (one VJP per sample). With
control_weights="authority" eq. 7 weighs each control's error by how far that control moves the
state (||d f / d u_j||^2), so that a robot's light wrist joints are fitted as finely as they
matter.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlto import losses
from rlto.algorithms.common import (
    LearningConfig,
    control_authority,
    finite_warm_start,
    fit_policy,
    gain_matching_loss,
    init_optimizer,
    new_policy,
    solve_from_each,
    supervised_rows,
    usable_solves,
)
from rlto.evaluate import policy_rollout
from rlto.nets import Policy, set_normalization, with_steps
from rlto.problem import Problem, ProblemError

BEST_MARGIN = 0.01
"""warm_start="best": the zero-control solve replaces the policy-warm-started one only where its
cost is more than 1% lower (see lower_cost: near-ties keep the policy's mode)."""


@dataclasses.dataclass(frozen=True)
class PddpConfig(LearningConfig):
    """Hyperparameters of PDDP (the shared ones: see LearningConfig)."""

    warm_start: str = "policy"
    """TO warm start: "policy" (the policy's rollout, Alg. 1 line 2), "zero" (the problem's default
    start: zero controls, or its Problem.initial_controls), or "best":
    solve from both and keep each instance's lower cost (twice the TO work; escapes the local
    minima a poor policy leads TO into, e.g. the pendulum's extra swings)."""
    aggregate: int = 1
    """Iterations of TO data the supervised step fits (a ring buffer, as DAgger aggregates): 1 is
    Alg. 1 (this iteration's solves only). More smooths the regression target between
    iterations, at `aggregate` times the Adam steps per epoch (lower `epochs` to keep the cost).
    With few problems per iteration it is what makes TO calls go far: on lqr (3 seeds)
    n_problems=8 with aggregate=4 reached PPO's final gap after 1.6e4 simulator calls, against
    9.5e4 with aggregate=1 (benchmarks/results/efficiency_lqr.md)."""
    control_weights: str = "uniform"
    """Weights of the controls in eq. 7: "uniform", ||u - pi||^2 (the paper); "authority", each
    control's squared error times ||d f / d u_j||^2 at the TO sample (normalised, see
    `control_authority`): how far a unit of that control moves the state in one step. For
    controls of unequal authority (a robot's wrist against its shoulder), where uniform weights
    let the low-inertia joints drift. Costs one control Jacobian per sample (counted as a
    simulator call). Measured on ur5 (seed 0): regressing offline onto 256 TO solutions for 40
    epochs, 726% test gap against 2656% uniform; but in the README's 5-minute PDDP run it did
    not help (after 14 iterations 680% and 11.9 mm against 571% and 7.0 mm)."""

    def __post_init__(self):
        super().__post_init__()
        self._check_choice("warm_start", ("policy", "zero", "best"))
        self._check_choice("control_weights", ("uniform", "authority"))
        if int(self.aggregate) < 1:
            raise ProblemError(f"aggregate must be a positive integer, got {self.aggregate}.")


class PddpState(NamedTuple):
    """Everything a resumed run needs (a pytree; saved whole in checkpoints)."""

    policy: Policy
    opt_state: optax.OptState
    key: jax.Array
    iteration: jax.Array  # () int: outer iterations done
    sim_calls: jax.Array  # () int: dynamics calls (forward + derivative) spent in training
    to_iterations: jax.Array  # () int: DDP iterations summed over instances
    data: dict  # the supervised data, aggregate x N x T rows: x, u, K, params, w (0: no sample)


def init(problem: Problem, config: PddpConfig, key: jax.Array) -> PddpState:
    """A fresh policy and optimizer, and an empty data buffer (all weights zero)."""
    policy_key, key = jax.random.split(key)
    policy = new_policy(problem, config, policy_key)
    opt_state = init_optimizer(policy, config)
    zero = jnp.asarray(0, dtype=jnp.int64)
    n, T = config.n_problems, problem.horizon
    empty = problem.sample(jax.random.key(0), n)  # shapes of beta only; never learned from
    empty = jax.tree.map(lambda a: jnp.zeros_like(jnp.asarray(a)), empty)
    authority = np.zeros((n, T, problem.nu)) if config.control_weights == "authority" else None
    rows = supervised_rows(problem, policy, np.zeros((n, T + 1, problem.nx)),
                           np.zeros((n, T, problem.nu)), empty, np.zeros(n, dtype=bool),
                           K=np.zeros((n, T, problem.nu, problem.nx)), control_weights=authority)
    data = jax.tree.map(lambda a: jnp.concatenate([a] * config.aggregate), rows)
    return PddpState(policy, opt_state, key, zero, zero, zero, data)


def supervised_loss(policy: Policy, batch: dict, key: jax.Array, config: PddpConfig):
    """Eq. 7 (+ weight x eq. 8 or its stochastic form) on one mini-batch: scalar, parts."""
    regression = losses.regression_loss(policy, batch["x"], batch["u"], batch["params"],
                                        batch["w"], batch.get("control_weights"))
    gains = gain_matching_loss(policy, batch, key, config)
    return regression + config.sobolev_weight * gains, (regression, gains)


def step(problem: Problem, config: PddpConfig, state: PddpState) -> tuple[PddpState, dict]:
    """One outer iteration of Alg. 1; returns the new state and this iteration's numbers."""
    key, sample_key, fit_key = jax.random.split(state.key, 3)
    params = problem.sample(sample_key, config.n_problems)
    rollout_calls = 0
    inits = [None]
    if config.warm_start in ("policy", "best"):
        rollout_xs, rollout_us, _ = policy_rollout(problem, state.policy, params)
        policy_us = finite_warm_start(rollout_xs, rollout_us)
        rollout_calls = config.n_problems * problem.horizon
        inits = [policy_us] if config.warm_start == "policy" else [policy_us, None]
    result, to_calls, to_iterations = solve_from_each(problem, params, inits, config,
                                                       margin=BEST_MARGIN)
    policy = state.policy
    usable = usable_solves(result)
    if int(state.iteration) == 0:
        # Normalise the inputs over the states the policy will be trained on, once, before any
        # weight update (the sampler's x0 alone under-represents e.g. swing-up velocities).
        ok_params = {k: np.asarray(v)[usable] for k, v in params.items()}
        policy = set_normalization(policy, result.xs[usable, : problem.horizon],
                                   with_steps(ok_params, int(usable.sum()), problem.horizon))
    authority, authority_calls = None, 0
    if config.control_weights == "authority":
        authority = control_authority(problem, result.xs, result.us, params, usable)
        authority_calls = config.n_problems * problem.horizon  # one f_u per sample
    rows = supervised_rows(problem, policy, result.xs, result.us, params, usable, K=result.K,
                           control_weights=authority)
    slot = int(state.iteration) % config.aggregate  # ring buffer: overwrite the oldest rows
    data = jax.tree.map(
        lambda buffer, new: jax.lax.dynamic_update_slice_in_dim(
            buffer, new.astype(buffer.dtype), slot * new.shape[0], axis=0),
        state.data, rows)
    policy, opt_state, (regression, gains) = fit_policy(
        policy, state.opt_state, data, fit_key, supervised_loss, config
    )
    calls = to_calls + rollout_calls + authority_calls
    new_state = PddpState(
        policy=policy,
        opt_state=opt_state,
        key=key,
        iteration=state.iteration + 1,
        sim_calls=state.sim_calls + calls,
        to_iterations=state.to_iterations + to_iterations,
        data=data,
    )
    info = {
        "regression_loss": float(regression),
        "sobolev_loss": float(gains),
        "to_converged": float(result.converged.mean()),
        "to_cost": float(np.nanmean(result.cost)),
        "to_iterations_mean": float(result.iterations.mean()),
    }
    return new_state, info
