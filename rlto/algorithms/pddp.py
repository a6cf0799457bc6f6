"""PDDP: projected DDP (seed 002, Sec. III, Alg. 1).

    for k = 1..M:
        [k > K: only the G closed-loop steps at the end]       closed_loop_only_after = K > 0
        sample N problems beta_i                                (fresh each iteration)
        [H of them: the costliest policy rollouts of P draws]  hard_problems > 0
        U0 <- Rollout(pi_theta)                                 warm start from the policy
        U  <- argmin_U R(U)                                     batched box-FDDP (rlto.solve)
        [D_pi <- TO from states the rollouts visit, x_pi(t0)    dagger > 0: DAgger's labels]
        D  <- the last `aggregate` iterations' (x, u, K)        1: this iteration's alone
        theta <- argmin_theta d(theta, D) [+ Sobolev term]      Adam mini-batches, eq. 7 (eq. 8)
        [repeat G times: theta <- theta - Adam(grad_theta      policy_gradient_steps = G > 0
            1/B sum_j J(pi_theta; beta_j)), B fresh draws]     through the simulator

The Sobolev term matches the policy's Jacobian to the TO feedback gains K_t, fully (eq. 8) or
stochastically along random control directions (one VJP per sample). With
control_weights="authority" eq. 7 weighs each control's error by how far that control moves the
state (||d f / d u_j||^2), so that a robot's light wrist joints are fitted as finely as they
matter. With `dagger` > 0 the TO is also DAgger's expert (Ross et al. 2011): it labels states
the policy's own rollouts reach, not only the TO trajectories' states.

With `policy_gradient_steps` > 0 each iteration ends with first-order steps on the quantity
the test gap measures, the closed-loop cost of the policy's own rollouts, differentiated
through the simulator (an analytic policy gradient, as PODS differentiates action sequences).
The regression fits TO's controls, but what it cannot fit (on ur5 the light wrist joints' last
few hundredths of a N m) leaves a closed-loop error no regression loss sees; the gradient of
J(pi) sees exactly that. From scratch the same gradient diverges on ur5 (a random policy's
rollouts overflow), so TO supervision gives the start and the steps polish it.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlto import losses
from rlto.algorithms.common import (
    LearningConfig,
    closed_loop_optimizer,
    closed_loop_step,
    compiled_sampler,
    control_authority,
    delayed_start,
    finite_warm_start,
    fit_policy,
    gain_matching_loss,
    init_optimizer,
    new_policy,
    solve_from_each,
    supervised_rows,
    usable_solves,
)
from rlto.evaluate import goal_guess, policy_rollout
from rlto.nets import Policy, set_normalization, trainable, with_steps
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
    goal_guess: bool = False
    """Also solve each instance from the goal guess (`rlto.evaluate.goal_guess`: x0, then every
    state at the problem's goal_state, a multiple-shooting start) and keep the lowest cost of
    all warm starts (the first start wins near-ties, see lower_cost). Needs a problem with a
    goal_state. False: Alg. 1's starts alone. Where the rollout of zero controls or of a poor
    policy falls away from the goal (the double pendulum), DDP from it ends in costly local
    minima: on that problem's test set 29.6 on average from zero controls and 12.2 from the
    goal guess, against J* 7.48."""
    first_epochs: int = 0
    """Epochs of the first iteration's fit (0: `epochs`, as every later one). A long first fit
    on one batch of good TO solutions gives the next iterations' TO a policy that already does
    the task: on double_pendulum one iteration of 128 goal-guess solutions fitted for 300
    epochs swings the median test instance up (2.7 mm), where 15 minutes of iterations with 10
    epochs each did not."""
    aggregate: int = 1
    """Iterations of TO data the supervised step fits (a ring buffer, as DAgger aggregates): 1 is
    Alg. 1 (this iteration's solves only). More smooths the regression target between
    iterations, at `aggregate` times the Adam steps per epoch (lower `epochs` to keep the cost).
    The empty slots of the first iterations count in each epoch, so those fits make more Adam
    steps on fewer solves; fitting the filled slots alone was faster but cost 1.3-1.5x more
    simulator calls on lqr (benchmarks/results/efficiency_lqr_filled).
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

    dagger: int = 0
    """States of the policy's own rollouts relabelled by TO each iteration (DAgger, with TO as
    the expert): x_pi(t0) at a random step t0 in 1..T-1 of a random one of this iteration's
    rollouts, solved over the remaining T - t0 steps (`delayed_start`) warm-started by the rest
    of that rollout (and, with warm_start="best", from zero controls too), and fitted beside the
    fresh solves. Alg. 1 fits TO trajectories only, so where the policy drifts off them it has
    seen no optimal control but the gains' first-order extrapolation. 0: Alg. 1. Measured
    (3 seeds, n_problems=8, aggregate=4), it did not pay for its TO calls: lqr 0.065% after 3e5
    calls with dagger=8 against 0.042% without; pendulum 508% [435, 836] after 3e6 against 152%
    [81, 246] (315% against 131% with warm_start="best"), its rollouts arriving upright late,
    after extra swings. Our reading, not tested: TO warm-started by a continuation that swings
    once too often keeps that swing (a local minimum), and the relabels teach it."""

    hard_problems: int = 0
    """Of the n_problems solved per iteration, how many are the costliest policy rollouts among
    `hard_pool` extra draws (the rest are uniform draws, as Alg. 1). Screening costs one
    rollout (T simulator calls) per draw, far less than a TO solve, and puts the TO where the
    policy fails: a swing-up rollout that misses the catch costs 40 times J*, a good one about
    J*. 0: Alg. 1's sampler alone. Measured on pendulum (3 seeds, 3e6 calls, n_problems=8,
    aggregate=4, warm_start="best", 20 epochs, learning_rate_half_life=1e4), it did not help:
    final gap 90% [78, 234] with hard_problems=4 of a pool of 64, 219% [181, 221] with 2,
    against 83.5% [56, 125] with 0; 51% of the test instances within 1% of J* against 61%."""
    hard_pool: int = 64
    """Draws screened by their policy rollout's cost per iteration, with hard_problems > 0."""

    policy_gradient_steps: int = 0
    """G: Adam steps per iteration, after the supervised fit, on the mean closed-loop cost
    1/B sum_j J(pi; beta_j) of B fresh draws, differentiated through the simulator
    (`closed_loop_step`; 2 B T simulator calls each, 4 B T with a diverged rollout). 0: Alg.
    1. Measured on ur5 (3 seeds, 5 minutes, the README's command with closed_loop_only_after=3
    and G=20, without task_input): test gap 8.65% [8.52, 9.29] and 1.45 mm, against 510%
    [440, 596] and 6.4 mm without the steps; on pendulum the same steps from a trained policy
    raise its gap (the swing-up's cost is not smooth in the policy)."""
    policy_gradient_batch: int = 128
    """B: fresh problem draws per closed-loop step."""
    policy_gradient_learning_rate: float = 3e-4
    """Adam step size of the closed-loop steps (their own Adam state)."""
    policy_gradient_half_life: float = float("inf")
    """Closed-loop steps over which their step size halves (counted over the run); inf: a
    constant step."""
    policy_gradient_dtype: str = "float64"
    """Precision of the closed-loop steps' simulation, "float64" or "float32" (evaluation and TO
    stay float64). float32 halves the vector width of the rollout and its backward pass; on
    ur5 (128 instances, the trained policy of the README's run) a gradient took 0.14 s
    against 0.20 s, with a cosine of 1 - 3e-10 to the float64 gradient. The problem's
    functions must keep float32 inputs float32 for the speed (rlto.robots does); where they
    promote, the step computes in float64 anyway. Of the built-ins, ur5 and oned run in float32
    throughout; the others' dynamics do too (except lqr's), while their costs promote."""
    policy_gradient_after: int = 1
    """Outer iterations of Alg. 1 alone before the closed-loop steps start (the first policy has
    seen no TO data, and its rollouts may diverge)."""
    closed_loop_only_after: int = 0
    """Outer iterations after which PDDP stops solving TO and fitting it: every later iteration
    is the policy_gradient_steps alone (the regression no longer pulls the policy back to TO
    controls it cannot represent exactly). 0: never, every iteration solves TO. On ur5 (seed 0,
    5 minutes, G=20, with a first version of the steps, 0.52 s each against 0.21 s now) 3 gave a
    test gap of 19%, 5 gave 22%, and 0 (TO and fit every iteration, then the steps) 60%."""

    def __post_init__(self):
        super().__post_init__()
        self._check_choice("warm_start", ("policy", "zero", "best"))
        if not 0 <= int(self.hard_problems) <= self.n_problems:
            raise ProblemError(f"hard_problems must be in [0, n_problems], got "
                               f"{self.hard_problems} with n_problems={self.n_problems}.")
        if self.hard_problems and int(self.hard_pool) < self.hard_problems:
            raise ProblemError(f"hard_pool must be at least hard_problems ({self.hard_problems}),"
                               f" got {self.hard_pool}.")
        if int(self.first_epochs) < 0:
            raise ProblemError(f"first_epochs must be a non-negative integer (0: epochs), got "
                               f"{self.first_epochs}.")
        if int(self.dagger) < 0:
            raise ProblemError(f"dagger must be a non-negative integer, got {self.dagger}.")
        self._check_choice("control_weights", ("uniform", "authority"))
        self._check_choice("policy_gradient_dtype", ("float64", "float32"))
        if int(self.aggregate) < 1:
            raise ProblemError(f"aggregate must be a positive integer, got {self.aggregate}.")
        if int(self.policy_gradient_steps) < 0 or int(self.policy_gradient_after) < 0:
            raise ProblemError("policy_gradient_steps and policy_gradient_after must be "
                               f"non-negative integers, got {self.policy_gradient_steps} and "
                               f"{self.policy_gradient_after}.")
        if int(self.closed_loop_only_after) < 0 or (
                self.closed_loop_only_after and not self.policy_gradient_steps):
            raise ProblemError("closed_loop_only_after must be a non-negative integer, and "
                               "needs policy_gradient_steps > 0 (the only work left after it); "
                               f"got {self.closed_loop_only_after} with policy_gradient_steps="
                               f"{self.policy_gradient_steps}.")
        if (int(self.policy_gradient_batch) < 1 or not self.policy_gradient_learning_rate > 0
                or not self.policy_gradient_half_life > 0):
            raise ProblemError("policy_gradient_batch must be a positive integer and "
                               "policy_gradient_learning_rate and policy_gradient_half_life "
                               f"positive, got {self.policy_gradient_batch}, "
                               f"{self.policy_gradient_learning_rate} and "
                               f"{self.policy_gradient_half_life}.")


class PddpState(NamedTuple):
    """Everything a resumed run needs (a pytree; saved whole in checkpoints)."""

    policy: Policy
    opt_state: optax.OptState
    key: jax.Array
    iteration: jax.Array  # () int: outer iterations done
    sim_calls: jax.Array  # () int: dynamics calls (forward + derivative) spent in training
    to_iterations: jax.Array  # () int: DDP iterations summed over instances
    data: dict  # the supervised data, aggregate x N x T rows: x, u, K, params, w (0: no sample)
    closed_loop_opt_state: optax.OptState  # Adam state of the policy_gradient_steps


def init(problem: Problem, config: PddpConfig, key: jax.Array) -> PddpState:
    """A fresh policy and optimizer, and an empty data buffer (all weights zero)."""
    policy_key, key = jax.random.split(key)
    policy = new_policy(problem, config, policy_key)
    opt_state = init_optimizer(policy, config)
    zero = jnp.asarray(0, dtype=jnp.int64)
    n, T = config.n_problems + config.dagger, problem.horizon
    empty = problem.sample(jax.random.key(0), n)  # shapes of beta only; never learned from
    empty = jax.tree.map(lambda a: jnp.zeros_like(jnp.asarray(a)), empty)
    authority = np.zeros((n, T, problem.nu)) if config.control_weights == "authority" else None
    rows = supervised_rows(problem, policy, np.zeros((n, T + 1, problem.nx)),
                           np.zeros((n, T, problem.nu)), empty, np.zeros(n, dtype=bool),
                           K=np.zeros((n, T, problem.nu, problem.nx)), control_weights=authority)
    data = jax.tree.map(lambda a: jnp.concatenate([a] * config.aggregate), rows)
    closed_loop_opt_state = closed_loop_optimizer(
        config.policy_gradient_learning_rate, config.policy_gradient_half_life).init(
        eqx.filter(policy, trainable(policy)))
    return PddpState(policy, opt_state, key, zero, zero, zero, data, closed_loop_opt_state)


def supervised_loss(policy: Policy, batch: dict, key: jax.Array, config: PddpConfig):
    """Eq. 7 (+ weight x eq. 8 or its stochastic form) on one mini-batch: scalar, parts."""
    regression = losses.regression_loss(policy, batch["x"], batch["u"], batch["params"],
                                        batch["w"], batch.get("control_weights"))
    gains = gain_matching_loss(policy, batch, key, config)
    return regression + config.sobolev_weight * gains, (regression, gains)


def step(problem: Problem, config: PddpConfig, state: PddpState) -> tuple[PddpState, dict]:
    """One outer iteration of Alg. 1; returns the new state and this iteration's numbers."""
    if config.closed_loop_only_after and int(state.iteration) >= config.closed_loop_only_after:
        return closed_loop_only_step(problem, config, state)
    key, sample_key, fit_key = jax.random.split(state.key, 3)
    params = problem.sample(sample_key, config.n_problems)
    rollout_calls = 0
    if config.hard_problems:
        key, pool_key = jax.random.split(key)  # only here: 0 keeps Alg. 1's streams
        params = with_hard_problems(problem, state.policy, config, params, pool_key)
        rollout_calls = config.hard_pool * problem.horizon
    inits = [None]
    if config.warm_start in ("policy", "best") or config.dagger:
        rollout_xs, rollout_us, _ = policy_rollout(problem, state.policy, params)
        policy_us = finite_warm_start(rollout_xs, rollout_us)
        rollout_calls += config.n_problems * problem.horizon
    if config.warm_start in ("policy", "best"):
        inits = [policy_us] if config.warm_start == "policy" else [policy_us, None]
    if config.goal_guess:
        inits = [*inits, goal_guess(problem, params)]
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
    if config.dagger:
        key, dagger_key = jax.random.split(key)  # only here: dagger=0 keeps Alg. 1's streams
        relabelled, calls, iterations = relabel_policy_states(
            problem, policy, config, np.asarray(rollout_xs), policy_us, params, dagger_key)
        rows = jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)]), rows,
                            relabelled)
        to_calls, to_iterations = to_calls + calls, to_iterations + iterations
    slot = int(state.iteration) % config.aggregate  # ring buffer: overwrite the oldest rows
    data = jax.tree.map(
        lambda buffer, new: jax.lax.dynamic_update_slice_in_dim(
            buffer, new.astype(buffer.dtype), slot * new.shape[0], axis=0),
        state.data, rows)
    fit_config = config
    if config.first_epochs and int(state.iteration) == 0:
        fit_config = dataclasses.replace(config, epochs=config.first_epochs)
    policy, opt_state, (regression, gains) = fit_policy(
        policy, state.opt_state, data, fit_key, supervised_loss, fit_config
    )
    calls = to_calls + rollout_calls + authority_calls
    info = {}
    closed_loop_opt_state = state.closed_loop_opt_state
    if config.policy_gradient_steps and int(state.iteration) >= config.policy_gradient_after:
        key, gradient_key = jax.random.split(key)  # only here: 0 steps keep Alg. 1's streams
        policy, closed_loop_opt_state, closed_loop_calls, info = improve_closed_loop(
            problem, policy, closed_loop_opt_state, config, gradient_key)
        calls += closed_loop_calls
    new_state = PddpState(
        policy=policy,
        opt_state=opt_state,
        key=key,
        iteration=state.iteration + 1,
        sim_calls=state.sim_calls + calls,
        to_iterations=state.to_iterations + to_iterations,
        data=data,
        closed_loop_opt_state=closed_loop_opt_state,
    )
    info = {
        **info,
        "regression_loss": float(regression),
        "sobolev_loss": float(gains),
        "to_converged": float(result.converged.mean()),
        "to_cost": float(np.nanmean(result.cost)),
        "to_iterations_mean": float(result.iterations.mean()),
    }
    return new_state, info


def closed_loop_only_step(problem: Problem, config: PddpConfig,
                          state: PddpState) -> tuple[PddpState, dict]:
    """An outer iteration after config.closed_loop_only_after: the closed-loop steps alone (no
    TO, no regression; the supervised data is kept as it is)."""
    key, gradient_key = jax.random.split(state.key)
    policy, closed_loop_opt_state, calls, info = improve_closed_loop(
        problem, state.policy, state.closed_loop_opt_state, config, gradient_key)
    return state._replace(policy=policy, key=key, iteration=state.iteration + 1,
                          sim_calls=state.sim_calls + calls,
                          closed_loop_opt_state=closed_loop_opt_state), info


def improve_closed_loop(problem: Problem, policy: Policy, opt_state, config: PddpConfig,
                        key: jax.Array) -> tuple[Policy, optax.OptState, int, dict]:
    """config.policy_gradient_steps closed-loop steps (`closed_loop_step`), each on
    config.policy_gradient_batch fresh draws. Returns the policy, the Adam state, the steps'
    simulator calls (2 B T per step, 4 B T for a step with a diverged rollout) and info: the
    last step's mean closed-loop cost and share of finite rollouts."""
    cost, finite, calls = np.nan, np.nan, 0
    sample = compiled_sampler(problem)
    for draw_key in jax.random.split(key, config.policy_gradient_steps):
        params = sample(draw_key, config.policy_gradient_batch)
        policy, opt_state, cost, finite, step_calls = closed_loop_step(
            problem, policy, opt_state, params, config.policy_gradient_learning_rate,
            config.policy_gradient_half_life, config.policy_gradient_dtype)
        calls += int(step_calls)
    return policy, opt_state, calls, {"closed_loop_cost": float(cost),
                                      "closed_loop_finite": float(finite)}


def with_hard_problems(problem: Problem, policy: Policy, config: PddpConfig, params: dict,
                       key: jax.Array) -> dict:
    """params (n_problems, ...) with their last `hard_problems` instances replaced by the
    costliest of `hard_pool` fresh draws under the policy's closed-loop rollout (a diverged
    rollout counts as the costliest)."""
    pool = problem.sample(key, config.hard_pool)
    _, _, cost = policy_rollout(problem, policy, pool)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    hardest = np.argsort(-cost, kind="stable")[: config.hard_problems]
    keep = config.n_problems - config.hard_problems
    return {k: np.concatenate([np.asarray(v)[:keep], np.asarray(pool[k])[hardest]])
            for k, v in params.items()}


def relabel_policy_states(problem: Problem, policy: Policy, config: PddpConfig, rollout_xs,
                          rollout_us, params: dict, key: jax.Array) -> tuple[dict, int, int]:
    """DAgger's expert step: TO from `config.dagger` states the policy's rollouts visit.

    rollout_xs (n, T+1, nx) and rollout_us (n, T, nu): the policy's rollouts of this iteration's
    problems params (n, ...). Each relabelled state is x_pi(t0) of a random rollout at a random
    step t0 in 1..T-1; the problem from there over the remaining T - t0 steps is solved as
    `delayed_start` (x held until t0) from the warm starts of config.warm_start, "policy" being
    that rollout's own controls from t0 on: the policy's continuation. Returns the supervised
    rows (dagger x T, weight 0 before t0 and for unusable solves or diverged rollouts), simulator
    calls and TO iterations."""
    n, T = rollout_us.shape[:2]
    pick_key, step_key = jax.random.split(key)
    which = np.asarray(jax.random.randint(pick_key, (config.dagger,), 0, n))
    t0 = np.asarray(jax.random.randint(step_key, (config.dagger,), 1, T))
    starts = rollout_xs[which, t0]  # (m, nx)
    finite = np.isfinite(starts).all(axis=1)
    relabel = {k: np.asarray(v)[which] for k, v in params.items()}
    relabel["x0"] = np.where(finite[:, None], starts, relabel["x0"])
    relabel["t0"] = t0.astype(np.float64)
    continuation = np.where(np.arange(T)[None, :, None] >= t0[:, None, None],
                            rollout_us[which], 0.0)
    inits = {"policy": [continuation], "zero": [None], "best": [continuation, None]}
    result, calls, iterations = solve_from_each(delayed_start(problem), relabel,
                                                inits[config.warm_start], config,
                                                margin=BEST_MARGIN)
    usable = usable_solves(result) & finite
    authority = None
    if config.control_weights == "authority":
        authority = control_authority(problem, result.xs, result.us, relabel, usable)
        calls += config.dagger * T
    rows = supervised_rows(problem, policy, result.xs, result.us, relabel, usable, K=result.K,
                           control_weights=authority, first_step=t0)
    return rows, calls, iterations
