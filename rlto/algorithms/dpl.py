"""DPL: deep policy learning by a quadratic-penalty consensus with noise injection (the DPL
baseline of seed 002, after Mordatch and Todorov's "combining the benefits of function
approximation and trajectory optimization").

On a fixed sampled set beta_1..N (as PLAL), with multipliers lambda and penalty rho:

    for k = 1..M:
        c     <- pi(xbar) - lambda/rho            at the previous iterate's states xbar, held fixed
        U     <- argmin_U  R(U) + sum_t rho/2 ||u_t - c_t||^2                    OC step
        theta <- argmin_theta  sum_t sum_eps 1/2 ||target(eps) - pi(x_t + eps)||^2  learning
                 target(eps) = clip(u_t + K_t eps + lambda_t/rho, u_lower, u_upper)
        lambda <- lambda + rho (u - pi(x))                                        dual update
        rho   <- min(rho_factor rho, rho_max)                                    ("grow" only)

It differs from PLAL's augmented Lagrangian in two places. The OC penalty treats the policy as a
constant target computed at the previous iterate's states (no derivative of the network in the
solver; like PLAL's multiple shooting, the ExtraCost involves pi only through data, so one
compiled solver program serves every iteration). The learning step replaces the Sobolev term by
noise injection: each TO sample (x_t, u_t, K_t) also yields `noise_samples` perturbed states
x_t + eps, whose targets come from the TO's local feedback law u_t + K_t eps (clipped to the
control box, which the policy's tanh cannot leave), so the policy learns the controller's
behaviour around the trajectory, not only on it.

Penalty: "fixed" rho, or "grow" (rho *= rho_factor each iteration, up to rho_max). Target:
"constant" (above), or "linearized": the target plus the policy's Jacobian at xbar times
(x - xbar), still fixed data, so that the penalized solve's gains K, which noise injection
regresses on, tend to the policy's own rather than to zero as rho grows (see DplConfig.target).
Measured on lqr (T = 50, default config otherwise, seed 0, 20 iterations, 100 test problems):
test gap 0.25% ("constant"), 0.18% ("linearized"), 0.22% (no noise, noise_samples=0; slower
start: 0.86% against 0.30% after two iterations); "grow" with a constant target diverged
(gap 100%), with a linearized one it crept from 0.21% (iteration 5) to 0.74%: once rho dwarfs
the problem's costs the OC step stops improving on the policy.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rlto
from rlto import ExtraCost, losses
from rlto.algorithms.common import (
    LearningConfig,
    finite_warm_start,
    fit_policy,
    gain_matching_loss,
    init_optimizer,
    new_policy,
    solve_from_each,
    to_problem,
    usable_solves,
    with_penalty_params,
)
from rlto.evaluate import policy_rollout
from rlto.nets import Policy, apply_policy, broadcast_params, set_normalization, with_steps
from rlto.problem import Problem, ProblemError


@dataclasses.dataclass(frozen=True)
class DplConfig(LearningConfig):
    """Hyperparameters of DPL (the shared ones: see LearningConfig; n_problems is the size of the
    sampled set, fixed for the whole run as in PLAL).

    sobolev defaults to "none" here: noise injection is DPL's way of matching the TO feedback
    gains (its targets off the trajectory are u + K eps), so the Sobolev term would count them
    twice; "full" or "stochastic" can still be added on the unperturbed samples' K."""

    sobolev: str = "none"
    """Gain matching on top of noise injection: "none" (DPL), "full" or "stochastic"."""
    rho: float = 1.0
    """Initial quadratic penalty rho of the consensus u = pi(x) in the OC step."""
    penalty: str = "fixed"
    """"fixed" rho, or "grow": rho *= rho_factor after every iteration, up to rho_max."""
    rho_factor: float = 2.0
    """"grow": factor applied to rho after each iteration (>= 1)."""
    rho_max: float = 1e3
    """"grow": upper limit of rho (>= rho)."""
    target: str = "constant"
    """The OC penalty's target at time t: "constant" c_t = pi(xbar_t) - lambda_t/rho (the DPL
    baseline), or "linearized": c_t + J_t (x - xbar_t) with J_t = d pi/dx (xbar_t), also held
    fixed. A constant target pins u without regard to x, so the penalized solve's feedback gains
    K shrink towards 0 as rho grows (rho + R against R in Quu), and noise injection then teaches
    the policy to ignore the state: on lqr "grow" drove the test gap from 0.46% to 100% in 20
    iterations. The linearized target's gains tend to the policy's own J instead."""
    noise_std: float = 0.1
    """Standard deviation of the injected state noise eps, in the units that noise_scale says."""
    noise_samples: int = 4
    """Perturbed copies x_t + eps of each TO sample in the learning step, besides the sample
    itself (0: no noise injection; the data then hold the N T unperturbed samples only)."""
    noise_scale: str = "state_std"
    """"state_std": eps_j ~ N(0, (noise_std s_j)^2) with s_j the spread of state coordinate j
    over this iteration's OC states (floored as the policy's input normalisation is, see
    rlto.nets.fit_normalization), so one noise_std suits states of any units; "absolute":
    eps ~ N(0, noise_std^2 I) in the state's own units."""

    def __post_init__(self):
        super().__post_init__()
        self._check_choice("penalty", ("fixed", "grow"))
        self._check_choice("noise_scale", ("state_std", "absolute"))
        self._check_choice("target", ("constant", "linearized"))
        if not self.rho > 0:
            raise ProblemError(f"rho must be positive, got {self.rho}; e.g. rho=1.0.")
        if self.penalty == "grow":
            if not self.rho_factor >= 1:
                raise ProblemError(f"rho_factor must be at least 1 (rho grows by it), got "
                                   f"{self.rho_factor}; e.g. rho_factor=2.0.")
            if not self.rho_max >= self.rho:
                raise ProblemError(f"rho_max ({self.rho_max}) must be at least rho ({self.rho}); "
                                   f"raise rho_max or lower rho.")
        if not (self.noise_std >= 0 and np.isfinite(self.noise_std)):
            raise ProblemError(f"noise_std must be a finite number >= 0, got {self.noise_std}; "
                               f"use noise_samples=0 to turn noise injection off.")
        if int(self.noise_samples) != self.noise_samples or self.noise_samples < 0:
            raise ProblemError(f"noise_samples must be an integer >= 0, got "
                               f"{self.noise_samples!r}.")


class DplState(NamedTuple):
    """Everything a resumed run needs (a pytree; saved whole in checkpoints)."""

    policy: Policy
    opt_state: optax.OptState
    key: jax.Array
    iteration: jax.Array  # () int
    sim_calls: jax.Array  # () int
    to_iterations: jax.Array  # () int
    params: dict  # the fixed sampled set beta, (N, ...) each
    xs: jax.Array  # (N, T+1, nx) OC states: xbar of the next OC step's penalty, and warm start
    us: jax.Array  # (N, T, nu) OC controls
    lam: jax.Array  # (N, T, nu) consensus multipliers
    rho: jax.Array  # () penalty of the next OC step


# ---------------------------------------------------------------------------------------------
# The OC step's extra costs (module-level functions: static, so no recompilation).


def consensus_penalty(x, u, t, params, shared):
    """rho/2 ||u - c_t||^2 with the constant target c_t = pi(xbar_t) - lambda_t/rho
    (params["consensus_target"] (T, nu), params["consensus_rho"] ()); x enters nowhere: the
    policy is held fixed."""
    diff = u - params["consensus_target"][t]
    return 0.5 * params["consensus_rho"] * diff @ diff


def linearized_consensus_penalty(x, u, t, params, shared):
    """rho/2 ||u - c_t - J_t (x - xbar_t)||^2: the constant target plus the policy's Jacobian
    J_t (params["consensus_gain"] (T, nu, nx)) at xbar_t (params["consensus_anchor"] (T, nx)),
    all held fixed."""
    anchor = params["consensus_anchor"][t]
    diff = u - params["consensus_target"][t] - params["consensus_gain"][t] @ (x - anchor)
    return 0.5 * params["consensus_rho"] * diff @ diff


def dual_update(lam: jax.Array, rho, us: jax.Array, pi_us: jax.Array) -> jax.Array:
    """lambda + rho (u - pi(x)): lam, us, pi_us (..., nu), rho scalar."""
    return lam + rho * (us - pi_us)


def noisy_targets(us, K, offset, eps, u_lower, u_upper):
    """Noise injection's regression targets clip(u + K eps + offset, u_lower, u_upper).

    us (..., nu), K (..., nu, nx), offset (..., nu) (lambda/rho), eps (S, ..., nx) -> (S, ..., nu);
    u + K eps is the TO's local feedback law (rlto.solve: u = us + k + K (x - xs), k ~ 0 at
    convergence) at the perturbed state x + eps."""
    feedback = jnp.einsum("...ij,s...j->s...i", K, eps)
    return jnp.clip(us + offset + feedback, jnp.asarray(u_lower), jnp.asarray(u_upper))


# ---------------------------------------------------------------------------------------------


def init(problem: Problem, config: DplConfig, key: jax.Array) -> DplState:
    """A fresh policy, the fixed sampled set, and the first OC iterate: the OCP solved without
    the penalty from the better of the initial policy's rollout and zero controls (as PLAL's
    init="solve"), so that the penalty iterations start from TO solutions."""
    policy_key, sample_key, key = jax.random.split(key, 3)
    policy = new_policy(problem, config, policy_key)
    params = {k: jnp.asarray(v) for k, v in problem.sample(sample_key, config.n_problems).items()}
    xs, us, _ = policy_rollout(problem, policy, params)
    us = finite_warm_start(xs, us)
    # Fallback states where a solve is unusable: the (finite) warm start's rollout.
    xs = np.asarray(jax.vmap(problem.rollout)(jnp.asarray(us), params))
    n, T = config.n_problems, problem.horizon
    best, calls, iterations = solve_from_each(problem, params, [us, None], config)
    usable = usable_solves(best)[:, None, None]
    xs, us = np.where(usable, best.xs, xs), np.where(usable, best.us, us)
    return DplState(
        policy=policy,
        opt_state=init_optimizer(policy, config),
        key=key,
        iteration=jnp.asarray(0, dtype=jnp.int64),
        sim_calls=jnp.asarray(2 * n * T + calls, dtype=jnp.int64),  # two rollouts, the solves
        to_iterations=jnp.asarray(iterations, dtype=jnp.int64),
        params=params,
        xs=jnp.asarray(xs),
        us=jnp.asarray(us),
        lam=jnp.zeros((n, T, problem.nu)),
        rho=jnp.asarray(float(config.rho)),
    )


def learning_loss(policy: Policy, batch: dict, key: jax.Array, config: DplConfig):
    """The learning step on one mini-batch: mean w/2 ||target - pi(x)||^2 over the unperturbed and
    noise-injected rows [+ Sobolev on the rows' K]; scalar, parts."""
    pred = apply_policy(policy, batch["x"], batch["params"])
    regression = 0.5 * jnp.mean(batch["w"] * jnp.sum((batch["target"] - pred) ** 2, axis=-1))
    gains = gain_matching_loss(policy, batch, key, config)
    return regression + config.sobolev_weight * gains, (regression, gains)


def _noise(problem: Problem, config: DplConfig, key: jax.Array, xs: jax.Array, shape):
    """eps (S+1, N, T, nx) with eps[0] = 0 (the unperturbed samples), scaled per noise_scale."""
    scale = jnp.full(problem.nx, config.noise_std)
    if config.noise_scale == "state_std":
        flat = xs.reshape(-1, problem.nx)
        std, magnitude = flat.std(axis=0), jnp.maximum(1.0, jnp.abs(flat.mean(axis=0)))
        scale = scale * jnp.where(std < 1e-3 * magnitude, magnitude, std)
    eps = scale * jax.random.normal(key, (config.noise_samples,) + tuple(shape) + (problem.nx,))
    return jnp.concatenate([jnp.zeros((1,) + eps.shape[1:]), eps])


def step(problem: Problem, config: DplConfig, state: DplState) -> tuple[DplState, dict]:
    """One outer iteration of DPL; returns the new state and this iteration's numbers."""
    key, noise_key, fit_key = jax.random.split(state.key, 3)
    beta, n, T = state.params, config.n_problems, problem.horizon
    beta_steps = with_steps(beta, n, T)  # beta with each state's time step, for pi(x, beta, t)
    rho = state.rho

    policy = state.policy
    if int(state.iteration) == 0:
        # Normalise the inputs over the first OC iterate's states, before the policy gives the
        # first penalty targets and before any weight update.
        policy = set_normalization(policy, state.xs[:, :T], beta_steps)

    # OC step: the penalty's target uses the policy at the previous iterate's states, fixed.
    target = apply_policy(policy, state.xs[:, :T], beta_steps) - state.lam / rho
    oc_params = with_penalty_params(problem, beta, consensus_target=target,
                                    consensus_rho=jnp.full(n, rho))
    penalty = consensus_penalty
    if config.target == "linearized":
        gain = losses.policy_jacobian(policy, state.xs[:, :T], beta_steps)
        oc_params = with_penalty_params(problem, oc_params,
                                        consensus_gain=gain.astype(jnp.float64),
                                        consensus_anchor=state.xs[:, :T])
        penalty = linearized_consensus_penalty
    result = rlto.solve(
        to_problem(problem, config.constrained), oc_params, init=(state.xs, state.us),
        max_iter=config.to_max_iter, tol=config.to_tol, extra_cost=ExtraCost(running=penalty),
    )
    # Finite is enough, as in PLAL: the OC steps start from the previous OC solution.
    ok = (np.isfinite(result.cost) & np.isfinite(result.us).all(axis=(1, 2))
          & np.isfinite(result.xs).all(axis=(1, 2)) & np.isfinite(result.K).all(axis=(1, 2, 3)))
    usable = jnp.asarray(ok)
    xs = jnp.where(usable[:, None, None], result.xs, state.xs)
    us = jnp.where(usable[:, None, None], result.us, state.us)
    K = jnp.where(usable[:, None, None, None], jnp.nan_to_num(jnp.asarray(result.K)), 0.0)

    # Learning step with noise injection: (S+1) N T rows, the unperturbed ones first.
    copies = config.noise_samples + 1
    eps = _noise(problem, config, noise_key, xs[:, :T], (n, T))
    targets = noisy_targets(us, K, state.lam / rho, eps, problem.u_lower, problem.u_upper)
    beta_t = broadcast_params(policy, beta_steps, (n, T))
    m = copies * n * T
    data = {
        "x": (xs[None, :, :T] + eps).reshape(m, problem.nx),
        "target": targets.reshape(m, problem.nu),
        "w": jnp.broadcast_to(usable[None, :, None].astype(jnp.float64), (copies, n, T))
        .reshape(-1),
        "K": jnp.broadcast_to(K, (copies,) + K.shape).reshape(m, problem.nu, problem.nx),
        "params": {k: jnp.broadcast_to(v, (copies,) + v.shape).reshape((m,) + v.shape[2:])
                   for k, v in beta_t.items()},
    }
    policy, opt_state, (regression, gains) = fit_policy(
        policy, state.opt_state, data, fit_key, learning_loss, config
    )

    # Dual update at the new OC states, and the penalty rule.
    pi_us = apply_policy(policy, xs[:, :T], beta_steps)
    lam = jnp.where(usable[:, None, None], dual_update(state.lam, rho, us, pi_us), state.lam)
    gap = jnp.linalg.norm(us - pi_us, axis=-1)  # (N, T)
    consensus = float(gap[usable].mean()) if ok.any() else float("nan")
    new_rho = rho
    if config.penalty == "grow":
        new_rho = jnp.minimum(rho * config.rho_factor, config.rho_max)

    new_state = state._replace(
        policy=policy, opt_state=opt_state, key=key, iteration=state.iteration + 1,
        sim_calls=state.sim_calls + int(result.sim_calls.sum()),
        to_iterations=state.to_iterations + int(result.iterations.sum()),
        xs=xs, us=us, lam=lam, rho=jnp.asarray(new_rho, dtype=state.rho.dtype),
    )
    info = {
        "consensus": consensus,
        "regression_loss": float(regression),
        "sobolev_loss": float(gains),
        "rho": float(rho),
        "to_converged": float(result.converged.mean()),
        "to_cost": float(np.nanmean(result.cost)),
        "to_iterations_mean": float(result.iterations.mean()),
    }
    return new_state, info
