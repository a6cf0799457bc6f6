"""PLAL: the consensus penalty's derivatives, every variant end to end, and progress on lqr."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto import ProblemError
from rlto.algorithms import plal
from rlto.nets import make_policy

TINY = dict(n_problems=8, epochs=2, batch_size=64, hidden=(16, 16), to_max_iter=30)


@pytest.fixture(scope="module")
def lqr():
    return rlto.make("lqr", horizon=20)


def _central(f, z, eps=1e-6):
    return np.array([(f(z + eps * e) - f(z - eps * e)) / (2 * eps) for e in np.eye(z.size)])


def test_single_shooting_penalty_derivatives_equal_finite_differences(lqr):
    """The OC step's penalty lambda'(u - pi(x)) + mu/2 ||u - pi(x)||^2, which DDP differentiates
    through the network: gradient and Hessian in (x, u) against central differences."""
    policy = make_policy(lqr, jax.random.key(0), hidden=(8, 8), activation="tanh")
    params = {"lam": jax.random.normal(jax.random.key(1), (lqr.horizon, 2)), "mu": 3.0}
    x0 = np.array([0.3, -0.2, 0.1, 0.4])
    u0 = np.array([0.2, -0.5])
    z0 = np.concatenate([x0, u0])

    def penalty(z):
        return plal.single_shooting_penalty(z[:4], z[4:], 5, params, policy)

    grad = np.asarray(jax.grad(penalty)(jnp.asarray(z0)))
    np.testing.assert_allclose(grad, _central(lambda z: float(penalty(z)), z0), rtol=1e-6,
                               atol=1e-8)
    hess = np.asarray(jax.hessian(penalty)(jnp.asarray(z0)))
    fd_hess = _central(lambda z: np.asarray(jax.grad(penalty)(jnp.asarray(z))), z0, eps=1e-5)
    np.testing.assert_allclose(hess, fd_hess, rtol=1e-5, atol=1e-7)
    # d/du equals the updated multiplier lambda + mu (u - pi(x)) (the dual update's value).
    pi = np.asarray(policy(jnp.asarray(x0), {}))
    np.testing.assert_allclose(grad[4:], params["lam"][5] + 3.0 * (u0 - pi), rtol=1e-10)


@pytest.mark.parametrize(
    "options",
    [
        dict(sobolev="none"),
        dict(sobolev="full"),
        dict(sobolev="stochastic", shooting="multiple"),
        dict(constrained=False),
        dict(penalty="bcl", mu=0.1),
    ],
    ids=["plain", "full-sobolev", "multiple-shooting", "minus-C", "bcl"],
)
def test_every_variant_runs_end_to_end(lqr, tmp_path, options):
    run = rlto.train(lqr, algo="plal", seed=0, iterations=2, out=tmp_path, test_size=8,
                     progress=False, **TINY, **options)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 2 and run.iterations == 2
    assert all(np.isfinite(float(r["test_gap"])) for r in rows)
    assert float(rows[-1]["consensus_violation"]) >= 0


def test_plal_reaches_consensus_and_lowers_the_gap(lqr, tmp_path):
    rlto.train(lqr, algo="plal", seed=0, iterations=6, out=tmp_path, test_size=8,
               progress=False, **{**TINY, "epochs": 20})
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    gaps = [float(r["test_gap"]) for r in rows]
    violations = [float(r["consensus_violation"]) for r in rows]
    assert gaps[-1] < 0.5 * gaps[0], gaps
    assert violations[-1] < violations[0], violations


def test_bcl_raises_mu_where_consensus_stalls(lqr):
    """With a tiny threshold, the first dual step fails the test: mu grows and lambda stays."""
    config = plal.PlalConfig(**TINY, penalty="bcl", mu=1.0)
    state = plal.init(lqr, config, jax.random.key(0))
    state = state._replace(eta=jnp.full_like(state.eta, 1e-12))
    new, _ = plal.step(lqr, config, state)
    np.testing.assert_allclose(np.asarray(new.mu), 10.0)
    np.testing.assert_array_equal(np.asarray(new.lam), 0.0)


def test_bad_plal_options():
    with pytest.raises(ProblemError, match="shooting must be one of"):
        plal.PlalConfig(shooting="double")
    with pytest.raises(ProblemError, match="mu must be positive"):
        plal.PlalConfig(mu=0.0)
