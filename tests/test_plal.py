"""PLAL: the consensus penalty's derivatives, every variant end to end, progress on lqr,
convergence to the Riccati policy where the box is inactive, and the ADMM start."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
import rlto.nets
from rlto import ProblemError
from rlto.algorithms import plal
from rlto.algorithms.common import new_policy
from rlto.nets import make_policy
from rlto.problems import lqr as lqr_problem

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


def test_gauss_newton_derivatives_of_the_penalty(lqr):
    """The gradient is exact; the Hessian equals the exact one for a ReLU network with linear
    outputs, and for any network where w = lambda + mu (u - pi(x)) vanishes (the term it leaves
    out is w times pi's curvature)."""
    params = {"lam": jax.random.normal(jax.random.key(1), (lqr.horizon, 2)), "mu": 3.0}
    x = jnp.array([0.3, -0.2, 0.1, 0.4])
    relu_linear = rlto.nets.Policy(4, 2, hidden=(8, 8), key=jax.random.key(2))
    tanh_bounded = make_policy(lqr, jax.random.key(0), hidden=(8, 8), activation="tanh")
    u_with_zero_w = tanh_bounded(x, rlto.nets.at_step({}, 5)) - params["lam"][5] / 3.0

    def derivatives(policy, u):
        """(Gauss-Newton gradient, Hessian), (exact gradient, Hessian) at (x, u)."""
        def penalty(z):
            return plal.single_shooting_penalty(z[:4], z[4:], 5, params, policy)

        z = jnp.concatenate([x, u])
        return (plal.single_shooting_penalty_derivatives(x, u, 5, params, policy),
                (jax.grad(penalty)(z), jax.hessian(penalty)(z)))

    for policy, u in [(relu_linear, jnp.array([0.2, -0.5])), (tanh_bounded, u_with_zero_w)]:
        (g, H), (g_exact, H_exact) = derivatives(policy, u)
        np.testing.assert_allclose(g, g_exact, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(H, H_exact, rtol=1e-9, atol=1e-10)
    # Elsewhere the bounded tanh policy's curvature makes them differ (so the check above bites).
    (g, H), (g_exact, H_exact) = derivatives(tanh_bounded, jnp.array([0.9, -0.9]))
    np.testing.assert_allclose(g, g_exact, rtol=1e-9, atol=1e-12)
    assert np.abs(np.asarray(H - H_exact)).max() > 1e-6


def test_gauss_newton_oc_step_solves_like_the_exact_one(lqr):
    """PLAL with oc_hessian="gauss_newton" reaches the same OC solutions (to the solver's
    tolerance) from the same state as the exact Hessian."""
    results = {}
    for hessian in ("exact", "gauss_newton"):
        config = plal.PlalConfig(**TINY, oc_hessian=hessian)
        state = plal.init(lqr, config, jax.random.key(0))
        new, info = plal.step(lqr, config, state)
        results[hessian] = (np.asarray(new.us), info["to_cost"])
    np.testing.assert_allclose(results["gauss_newton"][0], results["exact"][0], atol=1e-3)
    assert results["gauss_newton"][1] == pytest.approx(results["exact"][1], rel=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        dict(sobolev="none"),
        dict(sobolev="full"),
        dict(sobolev="stochastic", shooting="multiple"),
        dict(constrained=False),
        dict(penalty="bcl", mu=0.1),
        dict(refresh=3, shooting="multiple"),
    ],
    ids=["plain", "full-sobolev", "multiple-shooting", "minus-C", "bcl", "refresh"],
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
    config = plal.PlalConfig(**TINY, penalty="bcl", mu=1.0, mu_scale="absolute")
    state = plal.init(lqr, config, jax.random.key(0))
    state = state._replace(eta=jnp.full_like(state.eta, 1e-12))
    new, _ = plal.step(lqr, config, state)
    np.testing.assert_allclose(np.asarray(new.mu), 10.0)
    np.testing.assert_array_equal(np.asarray(new.lam), 0.0)


def test_projected_multipliers_keep_targets_in_the_box():
    """lambda is clipped exactly where u + lambda/mu leaves [lo, hi], and left alone elsewhere
    (infinite bounds included)."""
    mu = np.array([2.0, 0.5])
    us = np.array([[[0.9, 0.0]], [[-1.0, 5.0]]])  # (N=2, T=1, nu=2)
    lam = np.array([[[0.4, -1.0]], [[-3.0, 7.0]]])
    lo, hi = np.array([-1.0, -np.inf]), np.array([1.0, np.inf])
    projected = np.asarray(plal.project_multipliers(lam, us, mu, lo, hi))
    # targets before: (1.1, -0.5) and (-7, 19); the first control's box is [-1, 1]
    np.testing.assert_allclose(projected, [[[0.2, -1.0]], [[0.0, 7.0]]])
    targets = us + projected / mu[:, None, None]
    np.testing.assert_allclose(targets[..., 0], [[1.0], [-1.0]])
    # A margin of 0.25 widens [-1, 1] to [-1.5, 1.5]: 1.1 stays, -7 stops at -1.5.
    widened = np.asarray(plal.project_multipliers(lam, us, mu, lo, hi, margin=0.25))
    np.testing.assert_allclose(widened, [[[0.4, -1.0]], [[-0.25, 7.0]]])


def test_dual_steps_push_targets_out_of_the_box_unless_projected(lqr):
    """Where the box is active, tanh never reaches the bound, so the plain dual step moves the
    target u + lambda/mu beyond it; the projected one keeps every target in the box."""
    targets = {}
    for project in (False, True):
        config = plal.PlalConfig(**TINY, project_multipliers=project, target_margin=0.0)
        state = plal.init(lqr, config, jax.random.key(0))
        for _ in range(2):
            state, _ = plal.step(lqr, config, state)
        targets[project] = np.asarray(state.us + state.lam / state.mu[:, None, None])
    assert np.abs(targets[False]).max() > 1.0 + 1e-3  # lqr's box is |u| <= 1
    assert np.abs(targets[True]).max() <= 1.0 + 1e-12


def test_refresh_replaces_k_instances_and_leaves_the_rest(lqr):
    """refresh=k redraws exactly k instances: they enter as at init (their OC iterate is the TO
    solution from the policy's rollout or zeros, zero multipliers, the initial mu); every other
    instance keeps its iterate and multipliers bit for bit."""
    config = plal.PlalConfig(**TINY, refresh=3, penalty="bcl", mu=0.5, mu_scale="absolute")
    state, _ = plal.step(lqr, config, plal.init(lqr, config, jax.random.key(0)))
    new = plal.refresh(lqr, config, state, jax.random.key(7))
    changed = np.any(np.asarray(new.params["x0"]) != np.asarray(state.params["x0"]), axis=1)
    assert changed.sum() == 3
    kept = ~changed
    for field in ("xs", "us", "lam", "gamma", "mu", "eta", "policy_xs"):
        np.testing.assert_array_equal(np.asarray(getattr(new, field))[kept],
                                      np.asarray(getattr(state, field))[kept])
    np.testing.assert_array_equal(np.asarray(new.lam)[changed], 0.0)
    np.testing.assert_array_equal(np.asarray(new.mu)[changed], 0.5)
    fresh = {k: np.asarray(v)[changed] for k, v in new.params.items()}
    xs, us, mu, calls, _ = plal.first_iterate(lqr, state.policy, fresh, config)
    np.testing.assert_array_equal(np.asarray(mu), 0.5)
    np.testing.assert_allclose(np.asarray(new.us)[changed], np.asarray(us), atol=1e-12)
    np.testing.assert_allclose(np.asarray(new.xs)[changed][:, 0], fresh["x0"])
    assert int(new.sim_calls) == int(state.sim_calls) + calls
    with pytest.raises(ProblemError, match="refresh must be in"):
        plal.PlalConfig(n_problems=8, refresh=8)


def test_curvature_scaled_mu_is_the_closed_form_control_curvature():
    """On the unconstrained LQR, Q_uu(t) = R + B' P(t+1) B with Riccati's P: mu_scale=
    "curvature" gives each instance mu times the mean of its diagonal over t, whatever x0."""
    free = rlto.make("lqr", horizon=20, u_max=float("inf"))
    _, b, _, r, _ = lqr_problem.matrices(free.config)
    _, values = lqr_problem.riccati(free.config)
    closed_form = np.mean([np.diag(r + b.T @ p @ b).mean() for p in values[1:]])
    assert not np.isclose(closed_form, np.diag(r).mean(), rtol=1e-3)  # V_xx matters here
    config = plal.PlalConfig(**{**TINY, "mu": 2.0, "mu_scale": "curvature"})
    params = free.sample(jax.random.key(3), 4)
    policy = new_policy(free, config, jax.random.key(4))
    xs, us, mu, calls, _ = plal.first_iterate(free, policy, params, config)
    np.testing.assert_allclose(np.asarray(mu), 2.0 * closed_form, rtol=1e-8)
    absolute = plal.PlalConfig(**{**TINY, "mu": 2.0, "mu_scale": "absolute"})
    _, _, mu_abs, calls_abs, _ = plal.first_iterate(free, policy, params, absolute)
    np.testing.assert_array_equal(np.asarray(mu_abs), 2.0)
    assert calls == calls_abs + 4 * free.horizon  # f_u at every point is counted
    with pytest.raises(ProblemError, match="use init=\"solve\""):
        plal.PlalConfig(init="rollout")  # the default scale needs a TO solution


def test_bad_plal_options():
    with pytest.raises(ProblemError, match="shooting must be one of"):
        plal.PlalConfig(shooting="double")
    with pytest.raises(ProblemError, match="mu must be positive"):
        plal.PlalConfig(mu=0.0)


def test_plal_on_lqr_learns_the_riccati_policy_where_the_box_is_inactive(tmp_path):
    # Bounds |u| <= 1: where the unconstrained optimum from (x, t) never reaches the box, it is
    # also the constrained optimum, and its control is the Riccati feedback K_t x.
    problem = rlto.make("lqr")
    config = problem.config
    run = rlto.train(problem, algo="plal", seed=0, iterations=10, out=tmp_path, test_size=8,
                     progress=False, n_problems=64, epochs=30, hidden=(64, 64),
                     to_max_iter=50, sobolev="stochastic")
    gains, _ = lqr_problem.riccati(config)
    a, b, *_ = lqr_problem.matrices(config)
    x0s = np.asarray(problem.sample(jax.random.key(77), 400)["x0"])
    states, steps = [], []
    for x0 in x0s:
        xs, inside = [x0], True
        for t in range(config.horizon):
            u = gains[t] @ xs[-1]
            inside &= bool(np.all(np.abs(u) < 0.9))
            xs.append(a @ xs[-1] + b @ u)
        if inside:  # the whole unconstrained optimum stays inside the box
            states += xs[:-1:4]
            steps += list(range(0, config.horizon, 4))
    assert len(states) >= 50
    states, steps = np.array(states), np.array(steps, dtype=float)
    riccati_u = np.einsum("nij,nj->ni", gains[steps.astype(int)], states)
    params = {rlto.nets.TIME_KEY: steps}
    learned = np.asarray(rlto.nets.apply_policy(run.policy, states, params))
    untrained = new_policy(problem, plal.PlalConfig(hidden=(64, 64)), jax.random.key(0))
    initial = np.asarray(rlto.nets.apply_policy(untrained, states, params))
    error = np.abs(learned - riccati_u).max(axis=1)
    assert np.median(error) < 0.03, np.median(error)  # 0.014-0.018 measured; |u| to 0.9
    assert np.median(error) < 0.2 * np.median(np.abs(initial - riccati_u).max(axis=1))


def test_init_solve_starts_admm_from_to_solutions(lqr):
    key = jax.random.key(4)
    states = {how: plal.init(lqr, plal.PlalConfig(init=how, mu_scale="absolute", **TINY), key)
              for how in ("rollout", "solve")}
    params = states["rollout"].params

    def costs(state):
        return np.array([float(lqr.trajectory_cost(state.xs[i], state.us[i],
                                                   {k: v[i] for k, v in params.items()}))
                         for i in range(TINY["n_problems"])])

    rollout, solved = costs(states["rollout"]), costs(states["solve"])
    assert np.all(solved <= rollout + 1e-9) and solved.mean() < 0.5 * rollout.mean()
    assert int(states["solve"].sim_calls) > int(states["rollout"].sim_calls)
    assert int(states["solve"].to_iterations) > 0 == int(states["rollout"].to_iterations)


def test_goal_guess_is_one_more_start_of_the_first_oc_iterate(lqr, record_starts):
    """goal_guess=True: the first OC iterate is solved from the rollout, zero controls and the
    goal guess, and each instance keeps the lowest cost of the three (never above the two-start
    iterate's); refused with init="rollout" and on a problem without goal_state."""
    from rlto.evaluate import goal_guess

    pendulum = rlto.make("pendulum")
    seen = record_starts(plal)
    key = jax.random.key(5)
    states = {guess: plal.init(pendulum, plal.PlalConfig(**TINY, goal_guess=guess), key)
              for guess in (False, True)}
    params, inits = seen[1]
    assert len(seen[0][1]) == 2 and len(inits) == 3 and inits[1] is None
    for got, expected in zip(inits[2], goal_guess(pendulum, params), strict=True):
        np.testing.assert_array_equal(got, expected)

    def costs(state):
        return np.array([float(pendulum.trajectory_cost(
            state.xs[i], state.us[i], {k: v[i] for k, v in state.params.items()}))
            for i in range(TINY["n_problems"])])

    assert np.all(costs(states[True]) <= costs(states[False]) + 1e-9)
    with pytest.raises(ProblemError, match="init=\"solve\""):
        plal.PlalConfig(goal_guess=True, init="rollout", mu_scale="absolute")
    with pytest.raises(ProblemError, match="goal_state"):
        plal.init(lqr, plal.PlalConfig(**TINY, goal_guess=True), key)
