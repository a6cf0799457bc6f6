"""Oracles for rlto.nets (the policy class) and rlto.losses (eqs. 7, 8, 13, stochastic Sobolev).

Each check compares with an independent computation: a hand-written forward pass, a Python loop,
finite differences, a Monte Carlo average, or a round trip through the disk.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rlto
from rlto import losses, nets


def target_problem(u_lower=(-2.0, -1.0), u_upper=(2.0, 1.0)) -> rlto.Problem:
    """A 2-D point that should reach a sampled target: params = {"x0" (n,2), "target" (n,2)}."""

    def dynamics(x, u, t, params):
        return x + 0.1 * u

    def running_cost(x, u, t, params):
        return 0.5 * jnp.sum((x - params["target"]) ** 2) + 0.05 * jnp.sum(u**2)

    def terminal_cost(x, params):
        return 5.0 * jnp.sum((x - params["target"]) ** 2)

    def sample(key, n):
        k1, k2 = jax.random.split(key)
        return {
            "x0": jax.random.uniform(k1, (n, 2), jnp.float64, -1.0, 1.0),
            "target": jax.random.uniform(k2, (n, 2), jnp.float64, 2.0, 4.0),
        }

    return rlto.Problem(
        name="reach",
        nx=2,
        nu=2,
        horizon=10,
        dt=0.1,
        dynamics=dynamics,
        running_cost=running_cost,
        terminal_cost=terminal_cost,
        u_lower=u_lower,
        u_upper=u_upper,
        sample=sample,
    )


@pytest.fixture(scope="module")
def reach():
    return target_problem()


@pytest.fixture(scope="module")
def policy(reach):
    return nets.make_policy(reach, jax.random.key(0), hidden=(16, 16))


def manual_forward(policy, y):
    """The MLP by hand from the layers' arrays, before squashing: y (d,) -> z (nu,)."""
    h = (np.asarray(y) - np.asarray(policy.in_mean)) / np.asarray(policy.in_scale)
    for i, layer in enumerate(policy.layers):
        h = np.asarray(layer.weight) @ h + np.asarray(layer.bias)
        if i < len(policy.layers) - 1:
            h = np.maximum(h, 0.0)
    return h


# ---------------------------------------------------------------------------------------------
# Policy


def test_make_policy_reads_problem(reach, policy):
    assert (policy.nx, policy.nu, policy.hidden) == (2, 2, (16, 16))
    assert policy.param_keys == ("target",) and policy.param_shapes == ((2,),)
    assert policy.input_size == 4
    assert policy.u_lower == (-2.0, -1.0) and policy.u_upper == (2.0, 1.0)
    for leaf in jax.tree.leaves(policy):
        assert leaf.dtype == jnp.float64
    x = jnp.array([0.1, -0.2])
    assert policy(x, {"x0": x, "target": jnp.array([3.0, 3.0])}).dtype == jnp.float64
    # Default normalisation: mean/std of the sampler's x0 and target.
    draws = reach.sample(jax.random.split(jax.random.key(0))[1], nets.NORMALIZATION_DRAWS)
    y = np.concatenate([draws["x0"], draws["target"]], axis=1)
    np.testing.assert_allclose(policy.in_mean, y.mean(0), rtol=1e-12)
    np.testing.assert_allclose(policy.in_scale, y.std(0), rtol=1e-12)


def test_fit_normalization_floors_constant_coordinates():
    y = np.stack([np.linspace(-1, 1, 11), np.zeros(11), np.full(11, 5.0)], axis=1)
    mean, scale = nets.fit_normalization(y)
    np.testing.assert_allclose(mean, [0.0, 0.0, 5.0], atol=1e-15)
    np.testing.assert_allclose(scale, [y[:, 0].std(), 1.0, 5.0])


def test_output_is_the_squashed_mlp(policy):
    key = jax.random.key(3)
    y = jax.random.normal(key, (4,)) * 3
    z = manual_forward(policy, y)
    lo, hi = np.array(policy.u_lower), np.array(policy.u_upper)
    expected = lo + (hi - lo) * (np.tanh(z) + 1) / 2
    got = policy(y[:2], {"target": y[2:]})
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)


def test_bounds_hold_exactly_at_saturation(policy):
    lo, hi = np.array(policy.u_lower), np.array(policy.u_upper)
    xs = jax.random.normal(jax.random.key(1), (200, 2)) * 1e8
    targets = jax.random.normal(jax.random.key(2), (200, 2)) * 1e8
    us = np.asarray(jax.vmap(policy)(xs, {"target": targets}))
    assert np.all(us >= lo) and np.all(us <= hi)
    assert np.any(us == lo) and np.any(us == hi)  # saturated, and exactly on the bound


def test_linear_output_where_unbounded():
    problem = target_problem(u_lower=(-1.0, -np.inf), u_upper=(1.0, np.inf))
    pol = nets.make_policy(problem, jax.random.key(0), hidden=(8,))
    y = jnp.array([0.3, -0.7, 2.5, 3.1])
    z = manual_forward(pol, y)
    u = pol(y[:2], {"target": y[2:]})
    assert u[0] == pytest.approx(math.tanh(z[0]), abs=1e-14)
    assert u[1] == pytest.approx(z[1], abs=1e-13)
    # Unbounded: far inputs give outputs far beyond any box.
    big = jax.vmap(pol)(jnp.array([[1e6, 1e6], [-1e6, -1e6]]), {"target": jnp.zeros((2, 2))})
    assert np.max(np.abs(big[:, 1])) > 1e3 and np.all(np.abs(big[:, 0]) <= 1.0)


def test_one_sided_bound_is_respected():
    pol = nets.Policy(1, 2, (8,), (0.0, -np.inf), (np.inf, 1.0), key=jax.random.key(0))
    us = jax.vmap(pol)(jnp.linspace(-1e4, 1e4, 101)[:, None])
    assert np.all(us[:, 0] >= 0.0) and np.all(us[:, 1] <= 1.0)


def test_conditioning_on_target_changes_output(policy):
    x = jnp.array([0.2, 0.4])
    u1 = policy(x, {"x0": x, "target": jnp.array([2.5, 3.0])})
    u2 = policy(x, {"x0": x, "target": jnp.array([3.5, 2.0])})
    assert np.max(np.abs(u1 - u2)) > 1e-3
    with pytest.raises(KeyError, match="target"):
        policy(x, {"x0": x})
    with pytest.raises(ValueError, match="vmap"):
        policy(jnp.zeros((3, 2)), {"target": jnp.zeros((3, 2))})


def test_vmap_and_batched_apply_equal_loop(reach, policy):
    params = reach.sample(jax.random.key(5), 7)
    xs = params["x0"]
    one = eqx.filter_jit(policy)
    loop = np.stack([one(xs[i], {k: v[i] for k, v in params.items()}) for i in range(7)])
    np.testing.assert_allclose(jax.vmap(policy)(xs, params), loop, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(jax.jit(jax.vmap(policy))(xs, params), loop, rtol=1e-13)
    np.testing.assert_allclose(nets.apply_policy(policy, xs, params), loop, rtol=1e-14)
    # Trajectories (n, T, nx) with per-instance targets (n, 2): repeated over T.
    traj = jax.random.normal(jax.random.key(6), (7, 3, 2))
    out = nets.apply_policy(policy, traj, params)
    assert out.shape == (7, 3, 2)
    target = {"target": params["target"][4]}
    np.testing.assert_allclose(out[4, 2], policy(traj[4, 2], target), rtol=1e-14)


def test_normalization_is_an_input_shift_and_scale(policy):
    mean = jnp.array([0.5, -1.0, 3.0, 2.0])
    scale = jnp.array([2.0, 0.5, 1.5, 4.0])
    shifted = policy.with_normalization(mean, scale)
    plain = policy.with_normalization(jnp.zeros(4), jnp.ones(4))
    e = jnp.array([0.3, -0.1, 0.7, 0.2])
    y = mean + scale * e
    np.testing.assert_allclose(
        shifted(y[:2], {"target": y[2:]}), plain(e[:2], {"target": e[2:]}), rtol=1e-14
    )
    np.testing.assert_allclose(
        shifted(mean[:2], {"target": mean[2:]}),
        plain.with_normalization(jnp.zeros(4), scale)(jnp.zeros(2), {"target": jnp.zeros(2)}),
        rtol=1e-14,
    )
    with pytest.raises(ValueError, match="shape"):
        policy.with_normalization(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match="positive"):
        policy.with_normalization(jnp.zeros(4), jnp.zeros(4))


def test_set_normalization_from_trajectories(reach, policy):
    params = reach.sample(jax.random.key(7), 5)
    xs = 3.0 + 2.0 * jax.random.normal(jax.random.key(8), (5, 6, 2))
    renorm = nets.set_normalization(policy, xs, params)
    y = np.concatenate([np.asarray(xs), np.repeat(np.asarray(params["target"])[:, None], 6, 1)], 2)
    np.testing.assert_allclose(renorm.in_mean, y.reshape(-1, 4).mean(0), rtol=1e-12)
    np.testing.assert_allclose(renorm.in_scale, y.reshape(-1, 4).std(0), rtol=1e-12)
    # Weights untouched.
    for a, b in zip(renorm.layers, policy.layers, strict=True):
        assert a.weight is b.weight


def test_normalization_is_not_trained(reach, policy):
    params = reach.sample(jax.random.key(9), 16)
    us = jnp.ones((16, 2)) * 0.3

    grads = eqx.filter_grad(losses.regression_loss)(policy, params["x0"], us, params)
    assert np.all(np.asarray(grads.in_mean) == 0) and np.all(np.asarray(grads.in_scale) == 0)
    assert np.any(np.asarray(grads.layers[0].weight) != 0)
    trained, _ = eqx.partition(policy, nets.trainable(policy))
    assert trained.in_mean is None and trained.in_scale is None
    n_weights = sum(x.size for x in jax.tree.leaves(trained))
    assert n_weights == (4 * 16 + 16) + (16 * 16 + 16) + (16 * 2 + 2)


def test_save_load_round_trip(tmp_path, reach, policy):
    pol = policy.with_normalization(jnp.array([0.1, 0.2, 3.0, 3.0]), jnp.array([1, 2, 3, 4.0]))
    nets.save_policy(tmp_path / "run", pol)
    with open(tmp_path / "run" / nets.POLICY_JSON) as f:
        arch = json.load(f)
    assert arch["param_keys"] == ["target"] and arch["param_shapes"] == [[2]]
    assert arch["hidden"] == [16, 16] and arch["u_upper"] == [2.0, 1.0]
    loaded = nets.load_policy(tmp_path / "run")
    assert jax.tree.structure(loaded) == jax.tree.structure(pol)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(pol), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    params = reach.sample(jax.random.key(10), 9)
    np.testing.assert_array_equal(
        jax.vmap(loaded)(params["x0"], params), jax.vmap(pol)(params["x0"], params)
    )


def test_save_load_unbounded_unconditioned(tmp_path):
    pol = nets.Policy(3, 2, (5, 7), (-np.inf, -1.0), (np.inf, 4.0), key=jax.random.key(4))
    nets.save_policy(tmp_path, pol)
    with open(tmp_path / nets.POLICY_JSON) as f:
        arch = json.load(f)
    assert arch["u_lower"] == [None, -1.0] and arch["u_upper"] == [None, 4.0]
    loaded = nets.load_policy(str(tmp_path))
    assert loaded.u_lower == pol.u_lower and loaded.u_upper == pol.u_upper
    xs = jax.random.normal(jax.random.key(5), (4, 3)) * 10
    np.testing.assert_array_equal(jax.vmap(loaded)(xs), jax.vmap(pol)(xs))
    os.remove(tmp_path / nets.POLICY_LEAVES)
    with pytest.raises(FileNotFoundError, match="save_policy"):
        nets.load_policy(tmp_path)


def test_time_varying_policy_reads_the_step(reach):
    pol = nets.make_policy(reach, jax.random.key(2), hidden=(8,), time_input=True)
    assert pol.param_keys == ("target", nets.TIME_KEY) and pol.input_size == 5
    # The default normalisation spreads the draws' steps over 0..T-1.
    assert float(pol.in_mean[-1]) == pytest.approx((reach.horizon - 1) / 2, rel=1e-2)
    n, T = 3, reach.horizon
    params = reach.sample(jax.random.key(20), n)
    xs = jax.random.normal(jax.random.key(21), (n, T, 2))
    batched = nets.apply_policy(pol, xs, nets.with_steps(params, n, T))
    for i in range(n):
        one = {k: v[i] for k, v in params.items()}
        for t in (0, 4, T - 1):
            np.testing.assert_allclose(batched[i, t], pol(xs[i, t], nets.at_step(one, t)),
                                       rtol=1e-12)
    one = {k: v[0] for k, v in params.items()}
    assert not np.allclose(pol(xs[0, 0], nets.at_step(one, 0)), pol(xs[0, 0], nets.at_step(one, 9)))
    with pytest.raises(KeyError, match="time-varying"):
        pol(xs[0, 0], one)


def test_sampler_may_not_use_the_time_key():
    base = target_problem()

    def sample(key, n):
        return {**base.sample(key, n), "t": jnp.zeros(n)}

    clash = dataclasses.replace(base, sample=sample)
    with pytest.raises(KeyError, match="reserves"):
        nets.make_policy(clash, jax.random.key(0))


def test_angles_enter_as_cos_and_sin():
    pendulum = rlto.make("pendulum")
    assert pendulum.angles == (0,)
    pol = nets.make_policy(pendulum, jax.random.key(3), hidden=(8,))
    assert pol.angles == (0,) and pol.input_size == 3
    x = jnp.array([0.7, -1.3])
    np.testing.assert_allclose(pol.state_features(x), [-1.3, np.cos(0.7), np.sin(0.7)])
    # q and q + 2 pi k are the same input, hence the same control.
    for k in (-2, 1, 3):
        shifted = x + jnp.array([2 * np.pi * k, 0.0])
        np.testing.assert_allclose(pol(shifted, {}), pol(x, {}), rtol=1e-10)
    with pytest.raises(rlto.ProblemError, match="angles must be distinct"):
        dataclasses.replace(pendulum, angles=(2,))


def test_float32_time_varying_policy_round_trip_and_sobolev(tmp_path):
    pendulum = rlto.make("pendulum")
    pol = nets.make_policy(pendulum, jax.random.key(4), hidden=(8, 8), time_input=True,
                           dtype=jnp.float32)
    nets.save_policy(tmp_path, pol)
    loaded = nets.load_policy(tmp_path)
    assert loaded.angles == (0,) and loaded.param_keys == (nets.TIME_KEY,)
    xs = jax.random.normal(jax.random.key(5), (6, 2))
    params = {nets.TIME_KEY: jnp.arange(6.0)}
    out = nets.apply_policy(loaded, xs, params)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, nets.apply_policy(pol, xs, params))
    # For nu = 1 the stochastic Sobolev term equals the full one (v = +-1), in float32 too.
    K = jax.random.normal(jax.random.key(6), (6, 1, 2))
    full = losses.sobolev_loss(pol, xs, K, params)
    stochastic = losses.stochastic_sobolev_loss(pol, xs, K, params, jax.random.key(7))
    assert float(stochastic) == pytest.approx(float(full), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Losses


def test_regression_loss(reach, policy):
    params = reach.sample(jax.random.key(11), 12)
    xs = params["x0"]
    us = jax.vmap(policy)(xs, params)
    assert losses.regression_loss(policy, xs, us, params) == pytest.approx(0.0, abs=1e-30)
    delta = jax.random.normal(jax.random.key(12), us.shape)
    expected = 0.5 * np.mean(np.sum(np.asarray(delta) ** 2, axis=1))
    got = losses.regression_loss(policy, xs, us + delta, params)
    assert got == pytest.approx(expected, rel=1e-12)
    # Weights scale each sample's term; the mean stays over all samples.
    w = np.linspace(0.0, 2.0, 12)
    weighted = 0.5 * np.mean(w * np.sum(np.asarray(delta) ** 2, axis=1))
    got = losses.regression_loss(policy, xs, us + delta, params, jnp.asarray(w))
    assert got == pytest.approx(weighted, rel=1e-12)
    # Control weights scale each control's squared error, per sample or for all samples.
    c = np.abs(np.asarray(jax.random.normal(jax.random.key(13), us.shape)))
    per_control = 0.5 * np.mean(w * np.sum(c * np.asarray(delta) ** 2, axis=1))
    got = losses.regression_loss(policy, xs, us + delta, params, jnp.asarray(w), jnp.asarray(c))
    assert got == pytest.approx(per_control, rel=1e-12)
    got = losses.regression_loss(policy, xs, us + delta, params, None, jnp.asarray(c[0]))
    assert got == pytest.approx(0.5 * np.mean(np.sum(c[0] * np.asarray(delta) ** 2, axis=1)),
                                rel=1e-12)


def test_sobolev_weights_select_samples(reach, policy):
    params = reach.sample(jax.random.key(13), 6)
    xs = params["x0"]
    K = jax.random.normal(jax.random.key(14), (6, policy.nu, policy.nx))
    w = jnp.asarray([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    keep = np.asarray(w, bool)
    sub = {k: v[keep] for k, v in params.items()}
    # Zero weights drop a sample: the weighted mean over 6 is the plain mean over 3, times 3/6.
    full = float(losses.sobolev_loss(policy, xs, K, params, w))
    kept = float(losses.sobolev_loss(policy, xs[keep], K[keep], sub))
    assert full == pytest.approx(0.5 * kept, rel=1e-10)
    key = jax.random.key(15)
    stochastic = float(losses.stochastic_sobolev_loss(policy, xs, K, params, key, w))
    unweighted_terms = [
        float(losses.stochastic_sobolev_loss(policy, xs, K, params, key, jnp.eye(6)[i]))
        for i in range(6)
    ]
    assert stochastic == pytest.approx(sum(float(w[i]) * unweighted_terms[i]
                                           for i in range(6)), rel=1e-10)


def finite_difference_jacobian(f, x, eps=1e-6):
    cols = [(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.shape[0])]
    return np.stack(cols, axis=-1)


def test_sobolev_loss_matches_finite_differences(reach, policy):
    params = reach.sample(jax.random.key(13), 5)
    xs = params["x0"]
    K = jax.random.normal(jax.random.key(14), (5, 2, 2))
    jacs = []
    pol = eqx.filter_jit(policy)
    for i in range(5):
        p_i = {k: v[i] for k, v in params.items()}
        jac = finite_difference_jacobian(lambda x, p_i=p_i: np.asarray(pol(x, p_i)), xs[i])
        jacs.append(jac)
    jacs = np.stack(jacs)
    np.testing.assert_allclose(losses.policy_jacobian(policy, xs, params), jacs, atol=1e-8)
    expected = 0.5 * np.mean(np.sum((np.asarray(K) - jacs) ** 2, axis=(1, 2)))
    assert losses.sobolev_loss(policy, xs, K, params) == pytest.approx(expected, rel=1e-7)


def test_stochastic_sobolev_is_unbiased(reach):
    # nu = 3 so that the projections really are random (for nu = 1, v = +-1 is exact).
    pol = nets.Policy(2, 3, (16,), -1.0, 1.0, ("target",), ((2,),), key=jax.random.key(0))
    params = reach.sample(jax.random.key(15), 4)
    xs = params["x0"]
    K = jax.random.normal(jax.random.key(16), (4, 3, 2))
    full = float(losses.sobolev_loss(pol, xs, K, params))
    keys = jax.random.split(jax.random.key(17), 4000)
    draws = np.asarray(
        jax.jit(jax.vmap(lambda k: losses.stochastic_sobolev_loss(pol, xs, K, params, k)))(keys)
    )
    se = draws.std() / math.sqrt(draws.size)
    assert abs(draws.mean() - full) < 3 * se
    assert draws.std() > 1e-3 * full  # random, not the full term in disguise


def test_stochastic_sobolev_uses_one_vjp_per_sample(reach):
    pol = nets.Policy(2, 3, (8,), -1.0, 1.0, ("target",), ((2,),), key=jax.random.key(1))
    params = reach.sample(jax.random.key(18), 6)
    K = jnp.zeros((6, 3, 2))

    def hidden_stacks(loss):
        """Shapes of per-sample stacks of hidden activations (6, *, 8) in loss's program."""
        text = str(jax.make_jaxpr(loss)(params["x0"]))
        shapes = set(re.findall(r"f64\[([0-9,]+)\]", text))
        return {s for s in shapes if s.startswith("6,") and s.count(",") >= 2 and "8" in s}

    key = jax.random.key(0)
    # One vjp per sample: hidden activations are (6, 8) only; the full Jacobian (forward mode)
    # pushes nx tangents through the net at once, a (6, 2, 8) stack.
    assert not hidden_stacks(lambda xs: losses.stochastic_sobolev_loss(pol, xs, K, params, key))
    assert hidden_stacks(lambda xs: losses.sobolev_loss(pol, xs, K, params))


def test_consensus_penalty_values_and_gradients():
    key = jax.random.key(19)
    k1, k2, k3 = jax.random.split(key, 3)
    us = jax.random.normal(k1, (5, 3))
    pis = jax.random.normal(k2, (5, 3))
    lam = jax.random.normal(k3, (5, 3))
    mu = jnp.array([0.5, 1.0, 2.0, 10.0, 0.1])
    d = np.asarray(us - pis)
    expected = np.sum(np.asarray(lam) * d, 1) + 0.5 * np.asarray(mu) * np.sum(d**2, 1)
    np.testing.assert_allclose(losses.consensus_penalty(us, pis, lam, mu), expected, rtol=1e-13)
    np.testing.assert_allclose(
        losses.consensus_penalty(us, pis, lam, 2.0),
        losses.consensus_penalty(us, pis, lam, jnp.full(5, 2.0)),
        rtol=1e-15,
    )
    total = jax.jit(lambda u, p: jnp.sum(losses.consensus_penalty(u, p, lam, mu)))
    g_u, g_pi = jax.grad(total, argnums=(0, 1))(us, pis)
    eps = 1e-6
    for arg, grad in ((0, g_u), (1, g_pi)):
        fd = np.zeros((5, 3))
        for i in range(5):
            for j in range(3):
                e = jnp.zeros((5, 3)).at[i, j].set(eps)
                plus = (us + e, pis) if arg == 0 else (us, pis + e)
                minus = (us - e, pis) if arg == 0 else (us, pis - e)
                fd[i, j] = (total(*plus) - total(*minus)) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(g_u, lam + mu[:, None] * (us - pis), rtol=1e-13)


def test_adam_fits_linear_feedback():
    problem = target_problem(u_lower=(-np.inf, -np.inf), u_upper=(np.inf, np.inf))
    pol = nets.make_policy(problem, jax.random.key(20), hidden=(32, 32), param_keys=())
    gain = jnp.array([[-1.5, 0.4], [0.2, -0.8]])
    xs = jax.random.uniform(jax.random.key(21), (256, 2), jnp.float64, -1.0, 1.0)
    us = xs @ gain.T
    trained, static = eqx.partition(pol, nets.trainable(pol))
    opt = optax.adam(3e-3)

    def loss(params):
        return losses.regression_loss(eqx.combine(params, static), xs, us, None)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(loss)(params)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=1500)
        return params

    before = float(loss(trained))
    after = float(loss(train(trained)))
    assert after < before / 100, (before, after)


def test_sobolev_gain_cap_weighs_large_gains_relative(reach, policy):
    """With sobolev_gain_cap c, a sample's gain error counts times min(1, c^2 / ||K||_F^2): a
    gain c times larger than the cap weighs like its relative error at norm c; gains under the
    cap keep the paper's term; a cap that is not positive is a clear error."""
    from rlto.algorithms.common import LearningConfig, gain_matching_loss

    params = reach.sample(jax.random.key(16), 4)
    xs = params["x0"]
    K = jax.random.normal(jax.random.key(17), (4, policy.nu, policy.nx))
    K = K * jnp.asarray([1.0, 10.0, 100.0, 0.1])[:, None, None]
    norms = np.linalg.norm(np.asarray(K), axis=(1, 2))
    batch = {"x": xs, "K": K, "params": params}
    cap = float(np.sort(norms)[1]) * 1.5  # above two of the gains, below the other two
    key = jax.random.key(0)
    for mode, term in (("full", lambda w: losses.sobolev_loss(policy, xs, K, params, w)),
                       ("stochastic", lambda w: losses.stochastic_sobolev_loss(
                           policy, xs, K, params, key, w))):
        capped = LearningConfig(sobolev=mode, sobolev_gain_cap=cap)
        expected = term(jnp.asarray(np.minimum(1.0, cap**2 / norms**2)))
        got = gain_matching_loss(policy, batch, key, capped)
        assert float(got) == pytest.approx(float(expected), rel=1e-10)
        assert float(got) < float(term(None)) * 0.5  # the large gains were weighed down
        loose = LearningConfig(sobolev=mode, sobolev_gain_cap=float(norms.max()) * 1.01)
        assert float(gain_matching_loss(policy, batch, key, loose)) == pytest.approx(
            float(term(None)), rel=1e-12)
    with pytest.raises(rlto.ProblemError, match="sobolev_gain_cap must be positive"):
        LearningConfig(sobolev_gain_cap=0.0)


def test_task_input_is_the_offset_from_the_target_and_survives_save_load(tmp_path):
    arm = rlto.make("double_pendulum")
    pol = nets.make_policy(arm, jax.random.key(6), hidden=(8,), time_input=True, task_input=True)
    k = np.size(arm.target({}))
    assert pol.task_size == k and pol.input_size == arm.nx + len(arm.angles) + k + 1
    params = arm.sample(jax.random.key(7), 5)
    one = nets.at_step({kk: v[2] for kk, v in params.items()}, 3)
    x = params["x0"][2]
    y = pol.input(x, one)
    start = arm.nx + len(arm.angles)
    np.testing.assert_allclose(y[start : start + k], arm.position(x, one) - arm.target(one),
                               rtol=0, atol=1e-14)
    # The batched inputs are the single-instance ones.
    steps = nets.with_steps(params, 5, arm.horizon)
    xs = jnp.broadcast_to(params["x0"][:, None], (5, arm.horizon, arm.nx))
    np.testing.assert_allclose(nets.policy_inputs(pol, xs, steps)[2, 3], y, rtol=0, atol=1e-14)
    nets.save_policy(tmp_path, pol)
    loaded = nets.load_policy(tmp_path)  # the JSON names the built-in problem: no Problem needed
    assert loaded.task_size == k and loaded.task_problem == pol.task_problem
    np.testing.assert_array_equal(loaded(x, one), pol(x, one))


def test_task_input_needs_position_and_target_and_rebuilds_custom_problems(tmp_path):
    bare = target_problem()
    with pytest.raises(rlto.ProblemError, match="position"):
        nets.make_policy(bare, jax.random.key(0), task_input=True)
    reach = dataclasses.replace(bare, position=lambda x, params: x,
                                target=lambda params: params["target"])
    with pytest.raises(rlto.ProblemError, match="param_keys"):
        nets.make_policy(reach, jax.random.key(0), param_keys=(), task_input=True)
    pol = nets.make_policy(reach, jax.random.key(0), hidden=(8,), task_input=True)
    params = reach.sample(jax.random.key(1), 4)
    y = jax.vmap(pol.input)(params["x0"], params)
    np.testing.assert_allclose(y[:, 2:4], params["x0"] - params["target"], rtol=0, atol=1e-14)
    nets.save_policy(tmp_path, pol)
    with pytest.raises(rlto.ProblemError, match="problem="):
        nets.load_policy(tmp_path)  # "reach" is not a built-in problem
    with pytest.raises(rlto.ProblemError, match="trained on"):
        nets.load_policy(tmp_path, problem=rlto.make("double_pendulum"))  # nx 4, not 2
    loaded = nets.load_policy(tmp_path, problem=reach)
    np.testing.assert_array_equal(jax.vmap(loaded)(params["x0"], params),
                                  jax.vmap(pol)(params["x0"], params))


def test_leaky_relu_keeps_a_gradient_where_a_relu_layer_is_dead(reach):
    """A ReLU layer whose units are all off at a state gives d pi/dx = 0 there and no gradient of
    the Sobolev term to any weight before it (the trap a double_pendulum fit falls into at the
    upright state, where u* = 0 but the gains are large); leaky_relu keeps both. And the
    config's activation reaches the policy, an unknown one is a clear error."""
    from rlto.algorithms.common import LearningConfig, new_policy

    params = reach.sample(jax.random.key(3), 4)
    xs = params["x0"]
    K = jnp.ones((4, reach.nu, reach.nx))
    norms = {}
    for name in ("relu", "leaky_relu"):
        policy = new_policy(reach, LearningConfig(hidden=(8, 8), activation=name, time_input=False,
                                                  policy_dtype="float64"), jax.random.key(0))
        assert policy.activation == name
        # Turn the second hidden layer off for every input: bias far below any pre-activation.
        policy = eqx.tree_at(lambda p: p.layers[1].bias, policy,
                             jnp.full_like(policy.layers[1].bias, -1e3))
        jac = losses.policy_jacobian(policy, xs, params)
        grads = eqx.filter_grad(lambda p: losses.sobolev_loss(p, xs, K, params))(policy)
        norms[name] = (float(jnp.abs(jac).max()), float(jnp.abs(grads.layers[0].weight).max()))
    assert norms["relu"] == (0.0, 0.0)
    assert norms["leaky_relu"][0] > 0.0 and norms["leaky_relu"][1] > 0.0
    with pytest.raises(rlto.ProblemError, match="activation must be one of"):
        LearningConfig(activation="sigmoid")
