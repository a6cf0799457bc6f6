"""DPL: the OC step's penalties against their closed form (and in the solver), noise-injected
targets from the TO feedback law, the dual update and penalty growth, training on lqr, resume."""

import csv
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto import ExtraCost, ProblemError
from rlto.algorithms import dpl
from rlto.nets import apply_policy, with_steps

TINY = dict(n_problems=8, epochs=2, batch_size=64, hidden=(16, 16), to_max_iter=30,
            noise_samples=2)


@pytest.fixture(scope="module")
def lqr():
    return rlto.make("lqr", horizon=20)


def test_penalty_value_and_gradient_equal_the_closed_form():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(20, 2))
    params = {"consensus_target": jnp.asarray(target), "consensus_rho": 2.5}
    x, u = jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.normal(size=2))
    t = 7
    value = dpl.consensus_penalty(x, u, t, params, None)
    c = target[t]
    np.testing.assert_allclose(float(value), 0.5 * 2.5 * np.sum((np.asarray(u) - c) ** 2),
                               rtol=1e-12)
    gx, gu = jax.grad(dpl.consensus_penalty, argnums=(0, 1))(x, u, t, params, None)
    np.testing.assert_array_equal(np.asarray(gx), 0.0)  # the policy is a constant target
    np.testing.assert_allclose(np.asarray(gu), 2.5 * (np.asarray(u) - c), rtol=1e-12)


def test_linearized_penalty_value_and_gradient_equal_the_closed_form():
    rng = np.random.default_rng(3)
    T, nu, nx = 20, 2, 4
    params = {"consensus_target": jnp.asarray(rng.normal(size=(T, nu))), "consensus_rho": 1.5,
              "consensus_gain": jnp.asarray(rng.normal(size=(T, nu, nx))),
              "consensus_anchor": jnp.asarray(rng.normal(size=(T, nx)))}
    x, u, t = jnp.asarray(rng.normal(size=nx)), jnp.asarray(rng.normal(size=nu)), 11
    J = np.asarray(params["consensus_gain"][t])
    diff = (np.asarray(u) - np.asarray(params["consensus_target"][t])
            - J @ (np.asarray(x) - np.asarray(params["consensus_anchor"][t])))
    value = dpl.linearized_consensus_penalty(x, u, t, params, None)
    np.testing.assert_allclose(float(value), 0.75 * diff @ diff, rtol=1e-12)
    gx, gu = jax.grad(dpl.linearized_consensus_penalty, argnums=(0, 1))(x, u, t, params, None)
    np.testing.assert_allclose(np.asarray(gu), 1.5 * diff, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gx), -1.5 * J.T @ diff, rtol=1e-12)


def test_large_penalty_drives_controls_and_gains_to_the_target(lqr):
    """In the solver, rho -> inf makes the OC controls follow c (here feasible); the feedback
    gains K tend to 0 with the constant target, to the target's J with the linearized one."""
    params = lqr.sample(jax.random.key(0), 2)
    target = 0.3 * jnp.sin(jnp.arange(2 * 20 * 2.0).reshape(2, 20, 2))
    base = {**params, "consensus_target": target, "consensus_rho": jnp.full(2, 1e6)}
    constant = rlto.solve(lqr, base, extra_cost=ExtraCost(running=dpl.consensus_penalty),
                          max_iter=50)
    assert constant.converged.all()
    np.testing.assert_allclose(constant.us, np.asarray(target), atol=1e-3)
    assert np.abs(constant.K).max() < 1e-3
    # J small enough that the controls stay inside the box |u| <= 1 (K rows at a bound are 0).
    gain = 0.05 * jnp.ones((2, 20, 2, 4))
    linear = rlto.solve(lqr, {**base, "consensus_gain": gain,
                              "consensus_anchor": constant.xs[:, :20]},
                        extra_cost=ExtraCost(running=dpl.linearized_consensus_penalty),
                        init=(constant.xs, constant.us), max_iter=50)
    assert linear.converged.all() and np.abs(linear.us).max() < 0.95
    np.testing.assert_allclose(linear.K, np.asarray(gain), atol=1e-3)


def test_noise_injected_targets_follow_the_linear_feedback_law():
    rng = np.random.default_rng(1)
    n, T, nu, nx, S = 3, 5, 2, 4, 6
    us = rng.uniform(-0.5, 0.5, size=(n, T, nu))
    K = rng.normal(size=(n, T, nu, nx))
    eps = 0.1 * rng.normal(size=(S, n, T, nx))
    # Inactive box: target - u = K eps exactly, element by element.
    wide = np.asarray(dpl.noisy_targets(us, K, np.zeros_like(us), eps, -10.0, 10.0))
    np.testing.assert_allclose(wide - us, np.einsum("ntij,sntj->snti", K, eps), rtol=1e-12,
                               atol=1e-15)
    # The multiplier offset lambda/rho shifts every target.
    offset = rng.normal(size=us.shape)
    shifted = np.asarray(dpl.noisy_targets(us, K, offset, eps, -10.0, 10.0))
    np.testing.assert_allclose(shifted, wide + offset, rtol=1e-12)
    # Active box: clipped where u + K eps leaves it, unchanged elsewhere.
    lo, hi = np.array([-0.4, -0.3]), np.array([0.45, 0.35])
    tight = np.asarray(dpl.noisy_targets(us, K, np.zeros_like(us), eps, lo, hi))
    below, above = wide < lo, wide > hi
    assert below.any() and above.any() and (~below & ~above).any()
    np.testing.assert_array_equal(tight, np.clip(wide, lo, hi))
    np.testing.assert_allclose(tight[~below & ~above], wide[~below & ~above], rtol=0)
    np.testing.assert_array_equal(tight[below], np.broadcast_to(lo, wide.shape)[below])


def test_noise_keeps_the_unperturbed_samples_and_scales_per_state(lqr):
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(8, 20, 4)) * [1.0, 10.0, 0.1, 1.0])
    for scale in ("state_std", "absolute"):
        config = dpl.DplConfig(noise_samples=50, noise_std=0.2, noise_scale=scale)
        eps = np.asarray(dpl._noise(lqr, config, jax.random.key(0), xs, (8, 20)))
        assert eps.shape == (51, 8, 20, 4)
        np.testing.assert_array_equal(eps[0], 0.0)
        expected = 0.2 * (np.asarray(xs).reshape(-1, 4).std(axis=0) if scale == "state_std"
                          else np.ones(4))
        np.testing.assert_allclose(eps[1:].reshape(-1, 4).std(axis=0), expected, rtol=0.05)


def test_dual_update_and_penalty_growth(lqr):
    np.testing.assert_allclose(dpl.dual_update(np.ones(2), 3.0, np.array([0.5, 1.0]),
                                               np.array([0.25, -1.0])), [1.75, 7.0])
    config = dpl.DplConfig(**TINY, penalty="grow", rho=2.0, rho_factor=3.0, rho_max=5.0,
                           target="linearized")
    state = dpl.init(lqr, config, jax.random.key(0))
    state = state._replace(lam=0.1 * jax.random.normal(jax.random.key(1), state.lam.shape))
    new, info = dpl.step(lqr, config, state)
    beta = with_steps(new.params, 8, lqr.horizon)
    pi_us = apply_policy(new.policy, new.xs[:, : lqr.horizon], beta)
    np.testing.assert_allclose(np.asarray(new.lam),
                               np.asarray(state.lam + 2.0 * (new.us - pi_us)), rtol=1e-10)
    assert info["rho"] == 2.0 and float(new.rho) == 5.0  # 2 x 3 capped at rho_max
    gap = np.linalg.norm(np.asarray(new.us - pi_us), axis=-1).mean()
    assert info["consensus"] == pytest.approx(gap)
    assert int(new.sim_calls) > int(state.sim_calls) and int(new.iteration) == 1


def test_dpl_trains_on_lqr_with_falling_consensus(lqr, tmp_path):
    run = rlto.train(lqr, algo="dpl", seed=0, iterations=4, out=tmp_path, test_size=8,
                     progress=False, **{**TINY, "epochs": 10})
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 4 and run.iterations == 4
    for key in ("test_gap", "consensus", "to_cost", "regression_loss", "rho"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    consensus = [float(r["consensus"]) for r in rows]
    gaps = [float(r["test_gap"]) for r in rows]
    assert consensus[-1] < 0.8 * consensus[0], consensus
    assert gaps[-1] < gaps[0], gaps
    calls = [int(r["sim_calls"]) for r in rows]
    assert all(a < b for a, b in zip(calls, calls[1:], strict=False))


def test_resume_gives_the_same_weights(lqr, assert_resume_is_exact):
    assert_resume_is_exact(lqr, "dpl", 2, ("sim_calls", "consensus", "test_gap"), seed=2,
                           **TINY)


def test_bad_dpl_options():
    with pytest.raises(ProblemError, match="penalty must be one of"):
        dpl.DplConfig(penalty="bcl")
    with pytest.raises(ProblemError, match="rho must be positive"):
        dpl.DplConfig(rho=0.0)
    with pytest.raises(ProblemError, match="rho_factor must be at least 1"):
        dpl.DplConfig(penalty="grow", rho_factor=0.5)
    with pytest.raises(ProblemError, match="rho_max"):
        dpl.DplConfig(penalty="grow", rho=10.0, rho_max=1.0)
    with pytest.raises(ProblemError, match="noise_std must be"):
        dpl.DplConfig(noise_std=-0.1)
    with pytest.raises(ProblemError, match="noise_samples must be"):
        dpl.DplConfig(noise_samples=1.5)
    with pytest.raises(ProblemError, match="target must be one of"):
        dpl.DplConfig(target="affine")
    with pytest.raises(ProblemError, match="noise_scale must be one of"):
        dpl.DplConfig(noise_scale="relative")
    assert dpl.DplConfig().sobolev == "none"


def test_a_problem_parameter_named_like_a_penalty_one_is_kept_or_refused(tmp_path):
    """DPL's OC-step parameters once were called "target", and overwrote ur5's reach target
    (the run failed on its shape). A problem whose beta has a "target" now trains with DPL, and
    with_penalty_params refuses a name clash instead of replacing the problem's parameter."""
    from rlto.algorithms.common import with_penalty_params

    base = rlto.make("lqr", horizon=10)

    def sample(key, n):
        return {**base.sample(key, n), "target": jnp.zeros((n, base.nx))}

    def running_cost(x, u, t, params):
        return base.running_cost(x - params["target"], u, t, params)

    problem = dataclasses.replace(base, name="lqr_with_target", sample=sample,
                                  running_cost=running_cost)
    run = rlto.train(problem, algo="dpl", seed=0, iterations=1, out=tmp_path, test_size=4,
                     progress=False, **TINY)
    assert run.iterations == 1 and np.isfinite(run.evaluation["gap_percent"])
    with pytest.raises(ProblemError, match="share names"):
        with_penalty_params(problem, sample(jax.random.key(0), 2), target=jnp.zeros(2))
