"""Oracle tests of rlto.solve: closed-form LQR, envelope-theorem sensitivities, batched vs loop,
a reference NLP solver for constraints, per-instance statuses and input errors."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import rlto
from rlto import ExtraCost, ProblemError, Status
from rlto.solver.boxqp import solve_box_qp

DT = 0.1
A = np.array([[1, 0, DT, 0], [0, 1, 0, DT], [0, 0, 1, 0], [0, 0, 0, 1.0]])
B = np.array([[0, 0], [0, 0], [DT, 0], [0, DT]])
Q = np.diag([1.0, 2.0, 0.1, 0.1])
R = 0.1 * np.eye(2)
QF = 10 * np.eye(4)
T_LQR = 30


def point_mass(u_max: float, horizon: int = T_LQR) -> rlto.Problem:
    """A 2-D point mass with quadratic cost: the LQ problem of the tests."""
    return rlto.Problem(
        name="point_mass",
        nx=4,
        nu=2,
        horizon=horizon,
        dt=DT,
        dynamics=lambda x, u, t, p: A @ x + B @ u,
        running_cost=lambda x, u, t, p: 0.5 * x @ Q @ x + 0.5 * u @ R @ u,
        terminal_cost=lambda x, p: 0.5 * x @ QF @ x,
        u_lower=-u_max,
        u_upper=u_max,
        sample=lambda key, n: {"x0": jax.random.uniform(key, (n, 4), minval=-2.0, maxval=2.0)},
    )


def pendulum_like() -> rlto.Problem:
    """A small nonlinear problem (torque-limited pendulum, short horizon)."""

    def dynamics(x, u, t, p):
        v = x[1] + 0.05 * (u[0] - 9.81 * jnp.sin(x[0]))
        return jnp.array([x[0] + 0.05 * v, v])

    def running(x, u, t, p):
        return 0.05 * (1.0 - jnp.cos(x[0] - jnp.pi) + 0.05 * x[1] ** 2 + 0.01 * u[0] ** 2)

    def terminal(x, p):
        return 5.0 * (1.0 - jnp.cos(x[0] - jnp.pi)) + 0.5 * x[1] ** 2

    def sample(key, n):
        return {
            "x0": jax.random.uniform(
                key, (n, 2), minval=jnp.array([2.0, -1.0]), maxval=jnp.array([3.0, 1.0])
            )
        }

    return rlto.Problem(
        name="pendulum_like",
        nx=2,
        nu=1,
        horizon=40,
        dt=0.05,
        dynamics=dynamics,
        running_cost=running,
        terminal_cost=terminal,
        u_lower=-4.0,
        u_upper=4.0,
        sample=sample,
    )


@pytest.fixture(scope="module")
def lqr_free():
    return point_mass(np.inf)


@pytest.fixture(scope="module")
def lqr_box():
    return point_mass(1.0)


@pytest.fixture(scope="module")
def pendulum():
    return pendulum_like()


def test_unconstrained_lqr_equals_riccati():
    """The built-in `lqr` without its box: costs, controls, gains and V_x are Riccati's."""
    from rlto.problems.lqr import riccati

    problem = rlto.make("lqr", u_max=np.inf)
    params = problem.sample(jax.random.key(0), 6)
    result = rlto.solve(problem, params, tol=1e-10)
    gains, values = riccati(problem.config)
    x0 = np.asarray(params["x0"])
    expected_cost = 0.5 * np.einsum("ni,ij,nj->n", x0, values[0], x0)
    assert result.converged.all()
    np.testing.assert_allclose(result.cost, expected_cost, rtol=1e-10)
    # Optimal controls are the Riccati feedback along the optimal states.
    u_riccati = np.einsum("tij,ntj->nti", gains, result.xs[:, :-1])
    np.testing.assert_allclose(result.us, u_riccati, atol=1e-7)
    np.testing.assert_allclose(result.K, np.broadcast_to(gains, result.K.shape), atol=1e-6)
    # Value gradient V_x = P_t x_t along the trajectory.
    np.testing.assert_allclose(
        result.Vx, np.einsum("tij,ntj->nti", values, result.xs), rtol=1e-6, atol=1e-8
    )
    assert result.gap.max() < 1e-12


def test_infeasible_warm_start_is_accepted(lqr_free):
    """Multiple shooting: arbitrary, dynamically inconsistent states still reach the optimum."""
    params = lqr_free.sample(jax.random.key(1), 4)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(4, T_LQR + 1, 4))
    us = rng.normal(size=(4, T_LQR, 2))
    result = rlto.solve(lqr_free, params, init=(xs, us), tol=1e-10)
    reference = rlto.solve(lqr_free, params, tol=1e-10)
    assert result.converged.all()
    assert result.gap.max() < 1e-9
    np.testing.assert_allclose(result.cost, reference.cost, rtol=1e-9)


def _central_differences(problem, x0, eps):
    """Solve at x0 and x0 +- eps e_i in one batch; return the result and a slicer."""
    nx = x0.shape[0]
    shifted = [x0] + [x0 + sign * eps * np.eye(nx)[i] for i in range(nx) for sign in (1, -1)]
    result = rlto.solve(problem, {"x0": jnp.asarray(np.array(shifted))}, tol=1e-12, max_iter=500)
    assert result.converged.all()
    return result, lambda a: (a[1::2] - a[2::2]) / (2 * eps)


def test_value_gradient_equals_finite_differences(pendulum):
    """Envelope theorem: dJ*/dx0 = Vx_0 at a local optimum, whatever the dynamics."""
    x0 = np.asarray(pendulum.sample(jax.random.key(3), 1)["x0"][0])
    result, central = _central_differences(pendulum, x0, 1e-5)
    np.testing.assert_allclose(result.Vx[0, 0], central(result.cost), rtol=1e-4, atol=1e-6)


def test_step_improvement_is_the_exact_tail_decrease_on_lq(lqr_free):
    """On an LQ problem the DDP model is exact: at any trajectory, the per-step expected
    improvement summed from t to T-1 is the tail's cost minus the optimal cost-to-go from x_t
    (the tail subproblem solved on its own), and it is zero along a converged solve."""
    from rlto.solver import ddp

    params = {"x0": jnp.asarray(lqr_free.sample(jax.random.key(5), 1)["x0"])}
    one = {"x0": params["x0"][0]}
    us = jax.random.normal(jax.random.key(6), (T_LQR, 2))
    xs = lqr_free.rollout(us, one)
    fns = ddp._make_fns(lqr_free, None)
    opts = ddp.SolverOptions()
    lam, mu = jnp.zeros((T_LQR, 1)), jnp.asarray(10.0)
    state = ddp._initial_state(fns, opts, xs, us, one, None, lam, mu, True, True)
    improvement = np.asarray(ddp._final_gains(fns, opts, state, one, None, lam, mu)[4])
    assert improvement.shape == (T_LQR,) and np.all(improvement >= -1e-12)
    tail = np.cumsum(improvement[::-1])[::-1]
    steps = np.arange(T_LQR)
    running = np.asarray(jax.vmap(lqr_free.running_cost, in_axes=(0, 0, 0, None))(
        xs[:-1], us, steps, one))
    terminal = float(lqr_free.terminal_cost(xs[-1], one))
    for t in (0, 11, T_LQR - 1):
        tail_problem = point_mass(np.inf, horizon=T_LQR - t)
        optimum = rlto.solve(tail_problem, {"x0": xs[t][None]}, tol=1e-12)
        tail_cost = running[t:].sum() + terminal
        np.testing.assert_allclose(tail[t], tail_cost - optimum.cost[0], rtol=1e-7)
        assert np.all(np.abs(optimum.step_improvement) < 1e-10)


def test_gains_equal_optimal_control_sensitivity():
    """With linear dynamics the DDP expansion is exact: K_0 = du0*/dx0, even for a
    non-quadratic cost (Gauss-Newton drops only the dynamics' curvature)."""
    problem = rlto.Problem(
        name="point_mass_logcosh",
        nx=4,
        nu=2,
        horizon=20,
        dt=DT,
        dynamics=lambda x, u, t, p: A @ x + B @ u,
        running_cost=lambda x, u, t, p: jnp.sum(jnp.log(jnp.cosh(2.0 * x))) + 0.1 * u @ u,
        terminal_cost=lambda x, p: 5.0 * jnp.sum(jnp.log(jnp.cosh(x))),
        u_lower=-np.inf,
        u_upper=np.inf,
        sample=lambda key, n: {"x0": jax.random.uniform(key, (n, 4), minval=-1.0, maxval=1.0)},
    )
    x0 = np.asarray(problem.sample(jax.random.key(3), 1)["x0"][0])
    result, central = _central_differences(problem, x0, 1e-5)
    np.testing.assert_allclose(result.Vx[0, 0], central(result.cost), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.K[0, 0], central(result.us[:, 0]).T, rtol=1e-4, atol=1e-6)


def test_returned_gains_are_finite_where_quu_is_indefinite():
    """The final gains pass regularizes like the iterations do (it once returned NaN gains
    on pendulum swing-ups whose last Quu was not positive definite)."""
    problem = rlto.make("pendulum")
    result = rlto.solve(problem, problem.sample(jax.random.key(3), 16))
    assert result.converged.all()
    for array in (result.K, result.k, result.Vx, result.Vxx):
        assert np.isfinite(array).all()


def test_batched_equals_per_instance_loop(pendulum):
    params = pendulum.sample(jax.random.key(4), 3)
    batched = rlto.solve(pendulum, params)
    for i in range(3):
        one = rlto.solve(pendulum, {k: v[i : i + 1] for k, v in params.items()})
        assert one.iterations[0] == batched.iterations[i]
        assert one.status[0] == batched.status[i]
        np.testing.assert_allclose(one.us[0], batched.us[i], atol=1e-10)
        np.testing.assert_allclose(one.cost[0], batched.cost[i], rtol=1e-12)


def test_parallel_line_search_takes_the_sequential_steps(pendulum, lqr_box):
    """All step lengths tried at once (the GPU default) take the step that backtracking takes,
    and count every rollout: (iterations + 1) T forward calls become (10 iterations + 1) T."""
    from rlto.solver.ddp import SolverOptions

    for problem in (pendulum, lqr_box):
        params = problem.sample(jax.random.key(11), 6)
        one_by_one = rlto.solve(problem, params, options=SolverOptions(parallel_line_search=False))
        at_once = rlto.solve(problem, params, options=SolverOptions(parallel_line_search=True))
        np.testing.assert_array_equal(at_once.iterations, one_by_one.iterations)
        np.testing.assert_array_equal(at_once.status, one_by_one.status)
        np.testing.assert_allclose(at_once.us, one_by_one.us, rtol=0, atol=1e-12)
        np.testing.assert_allclose(at_once.K, one_by_one.K, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(at_once.derivative_calls, one_by_one.derivative_calls)
        np.testing.assert_array_equal(at_once.forward_calls,
                                      (10 * at_once.iterations + 1) * problem.horizon)
        assert (one_by_one.forward_calls < at_once.forward_calls).all()


def test_box_bounds_hold_and_improve_on_clipped_lqr(lqr_box, lqr_free):
    params = lqr_box.sample(jax.random.key(5), 8)
    result = rlto.solve(lqr_box, params, tol=1e-10, max_iter=300)
    assert result.converged.all()
    assert np.abs(result.us).max() <= 1.0 + 1e-12
    assert (np.abs(result.us) > 1.0 - 1e-9).any(), "the test needs active bounds"

    # Reference: the same convex QP solved by SciPy's bounded L-BFGS over the controls.
    def controls_cost(flat, x0):
        us = flat.reshape(T_LQR, 2)
        return lqr_box.trajectory_cost(lqr_box.rollout(us, {"x0": x0}), us, {"x0": x0})

    value_and_grad = jax.jit(jax.value_and_grad(controls_cost))
    for i in range(2):
        x0 = params["x0"][i]
        ref = scipy.optimize.minimize(
            lambda f, x0=x0: tuple(np.asarray(a) for a in value_and_grad(f, x0)),
            np.zeros(2 * T_LQR),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-1, 1)] * (2 * T_LQR),
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000},
        )
        np.testing.assert_allclose(result.cost[i], ref.fun, rtol=1e-8)


def box_qp_by_enumeration(H, q, lb, ub):
    """The box QP's minimiser by trying every active set (each variable at its lower bound, its
    upper bound or free) and keeping the feasible point that satisfies the KKT signs."""
    n = len(q)
    for pattern in itertools.product((-1, 0, 1), repeat=n):
        at = np.array(pattern)
        x = np.where(at < 0, lb, np.where(at > 0, ub, 0.0))
        free = at == 0
        if free.any():
            rhs = -(q[free] + H[np.ix_(free, ~free)] @ x[~free])
            x[free] = np.linalg.solve(H[np.ix_(free, free)], rhs)
        g = H @ x + q
        inside = np.all(x >= lb - 1e-12) & np.all(x <= ub + 1e-12)
        signs = np.all(g[at < 0] >= -1e-9) & np.all(g[at > 0] <= 1e-9)
        if inside and signs:
            return x
    raise AssertionError("no KKT point")


@pytest.mark.parametrize("seed", range(6))
def test_box_qp_equals_active_set_enumeration(seed):
    """Interior minimisers (the fast path without projected-Newton iterations) and active bounds
    alike, from a warm start outside the box."""
    rng = np.random.default_rng(seed)
    n = 4
    root = rng.normal(size=(n, n))
    H = root @ root.T + 0.1 * np.eye(n)
    q = rng.normal(size=n) * (0.3 if seed < 2 else 3.0)
    lb, ub = -np.ones(n), np.ones(n)
    x, free, L, ok = solve_box_qp(jnp.asarray(H), jnp.asarray(q), jnp.asarray(lb),
                                  jnp.asarray(ub), jnp.full(n, 5.0), tol=1e-12)
    expected = box_qp_by_enumeration(H, q, lb, ub)
    assert bool(ok)
    np.testing.assert_allclose(x, expected, atol=1e-10)
    np.testing.assert_array_equal(free, (expected > lb + 1e-9) & (expected < ub - 1e-9))
    Hf = H[np.ix_(free, free)]
    np.testing.assert_allclose(np.asarray(L)[np.ix_(free, free)], np.linalg.cholesky(Hf),
                               atol=1e-10)


def test_extra_cost_equals_built_in_cost(lqr_free):
    """An ExtraCost term (per-instance data in params, shared data) equals writing it in."""
    params = dict(lqr_free.sample(jax.random.key(6), 3))
    params["u_ref"] = jax.random.normal(jax.random.key(7), (3, T_LQR, 2))
    weight = jnp.asarray(2.0)

    def extra_running(x, u, t, p, shared):
        return 0.5 * shared * jnp.sum((u - p["u_ref"][t]) ** 2)

    def extra_terminal(x, p, shared):
        return shared * x[0] ** 2

    extra = ExtraCost(running=extra_running, terminal=extra_terminal, shared=weight)
    with_extra = rlto.solve(lqr_free, params, extra_cost=extra, tol=1e-10)

    written_in = rlto.Problem(
        name="point_mass_extra",
        nx=4,
        nu=2,
        horizon=T_LQR,
        dt=DT,
        dynamics=lqr_free.dynamics,
        running_cost=lambda x, u, t, p: (
            lqr_free.running_cost(x, u, t, p) + 0.5 * 2.0 * jnp.sum((u - p["u_ref"][t]) ** 2)
        ),
        terminal_cost=lambda x, p: lqr_free.terminal_cost(x, p) + 2.0 * x[0] ** 2,
        u_lower=-np.inf,
        u_upper=np.inf,
        sample=lambda key, n: {**lqr_free.sample(key, n), "u_ref": jnp.zeros((n, T_LQR, 2))},
    )
    reference = rlto.solve(written_in, params, tol=1e-10)
    np.testing.assert_allclose(with_extra.total_cost, reference.cost, rtol=1e-10)
    np.testing.assert_allclose(with_extra.us, reference.us, atol=1e-8)
    # `cost` is the problem's own cost of the solution, without the extra terms.
    own = jax.vmap(lqr_free.trajectory_cost)(with_extra.xs, with_extra.us, params)
    np.testing.assert_allclose(with_extra.cost, own, rtol=1e-12)

    # Supplied derivatives replace autodiff when linearising: the exact ones give the same
    # solve; a wrong Hessian (a tenth of the true one) is used too, and changes the iterations.
    def exact_derivatives(x, u, t, p, shared):
        g = jnp.concatenate([jnp.zeros(4), shared * (u - p["u_ref"][t])])
        return g, jnp.diag(jnp.concatenate([jnp.zeros(4), jnp.full(2, shared)]))

    def wrong_derivatives(x, u, t, p, shared):
        g, H = exact_derivatives(x, u, t, p, shared)
        return g, 0.1 * H

    supplied = rlto.solve(lqr_free, params, tol=1e-10, extra_cost=ExtraCost(
        extra_running, extra_terminal, weight, running_derivatives=exact_derivatives))
    np.testing.assert_allclose(supplied.us, with_extra.us, atol=1e-10)
    np.testing.assert_array_equal(supplied.iterations, with_extra.iterations)
    wrong = rlto.solve(lqr_free, params, tol=1e-10, max_iter=1, extra_cost=ExtraCost(
        extra_running, extra_terminal, weight, running_derivatives=wrong_derivatives))
    assert np.abs(np.asarray(wrong.us - with_extra.us)).max() > 1e-3
    with pytest.raises(ProblemError, match="give `running` too"):
        rlto.solve(lqr_free, params, extra_cost=ExtraCost(running_derivatives=exact_derivatives))


def test_path_constraints_match_reference_nlp():
    """Augmented Lagrangian: state bound x <= 1 on a 1-D integrator driven towards 2."""
    T = 15

    def running(x, u, t, p):
        return (x[0] - 2.0) ** 2 + 0.1 * u[0] ** 2

    problem = rlto.Problem(
        name="capped",
        nx=1,
        nu=1,
        horizon=T,
        dt=1.0,
        dynamics=lambda x, u, t, p: x + 0.5 * u,
        running_cost=running,
        terminal_cost=lambda x, p: (x[0] - 2.0) ** 2,
        u_lower=-1.0,
        u_upper=1.0,
        constraints=lambda x, u, t, p: jnp.array([x[0] + 0.5 * u[0] - 1.0]),  # next state <= 1
        sample=lambda key, n: {"x0": jax.random.uniform(key, (n, 1), minval=-1.0, maxval=0.5)},
    )
    params = problem.sample(jax.random.key(8), 3)
    result = rlto.solve(problem, params, tol=1e-10, constraint_tol=1e-7)
    assert result.converged.all(), result.messages
    assert result.constraint_violation.max() <= 1e-7
    assert result.xs.max() <= 1.0 + 1e-7
    for i in range(3):
        x0 = float(params["x0"][i, 0])

        def states(us, x0=x0):
            return x0 + 0.5 * np.cumsum(us)

        def cost(us, x0=x0):
            xs = np.concatenate([[x0], states(us)])
            return np.sum((xs[:-1] - 2) ** 2 + 0.1 * us**2) + (xs[-1] - 2) ** 2

        ref = scipy.optimize.minimize(
            cost,
            np.zeros(T),
            method="SLSQP",
            bounds=[(-1, 1)] * T,
            constraints={"type": "ineq", "fun": lambda us, x0=x0: 1.0 - states(us)},
            options={"ftol": 1e-14, "maxiter": 1000},
        )
        np.testing.assert_allclose(result.cost[i], ref.fun, rtol=1e-5)


def test_one_failing_instance_does_not_stop_the_batch():
    """NaN dynamics on one instance: that one reports NON_FINITE, the others converge."""

    def dynamics(x, u, t, p):
        return x + 0.1 * u + 0.01 * jnp.log(x)  # NaN for x < 0

    problem = rlto.Problem(
        name="log_system",
        nx=1,
        nu=1,
        horizon=10,
        dt=0.1,
        dynamics=dynamics,
        running_cost=lambda x, u, t, p: (x[0] - 2.0) ** 2 + u[0] ** 2,
        terminal_cost=lambda x, p: (x[0] - 2.0) ** 2,
        u_lower=-1.0,
        u_upper=1.0,
        sample=lambda key, n: {"x0": jax.random.uniform(key, (n, 1), minval=1.0, maxval=2.0)},
    )
    params = {"x0": jnp.array([[1.5], [-1.0], [1.2]])}
    result = rlto.solve(problem, params)
    assert list(result.status) == [Status.CONVERGED, Status.NON_FINITE, Status.CONVERGED]
    assert "NaN" in result.messages[1]
    assert np.isfinite(result.cost[[0, 2]]).all()


def test_max_iterations_status_says_what_to_do(pendulum):
    params = pendulum.sample(jax.random.key(9), 2)
    result = rlto.solve(pendulum, params, max_iter=1)
    assert (result.status == Status.MAX_ITERATIONS).all()
    assert (result.iterations == 1).all()
    assert "raise max_iter" in result.messages[0]
    assert not result.converged.any()


def test_sim_calls_are_counted(pendulum):
    params = pendulum.sample(jax.random.key(10), 2)
    result = rlto.solve(pendulum, params)
    T = pendulum.horizon
    # One derivative pass per iteration plus the final gains; at least one rollout each.
    np.testing.assert_array_equal(result.derivative_calls, (result.iterations + 1) * T)
    assert (result.forward_calls >= (result.iterations + 1) * T).all()
    np.testing.assert_array_equal(result.sim_calls, result.forward_calls + result.derivative_calls)


def test_bad_inputs_raise_clear_errors(lqr_free):
    params = lqr_free.sample(jax.random.key(11), 2)
    with pytest.raises(ProblemError, match=r"x0'\] has shape \(4,\), expected \(n, 4\)"):
        rlto.solve(lqr_free, {"x0": params["x0"][0]})
    with pytest.raises(ProblemError, match="init us has shape"):
        rlto.solve(lqr_free, params, init=np.zeros((2, T_LQR, 3)))
    with pytest.raises(ProblemError, match="init xs has shape"):
        rlto.solve(lqr_free, params, init=(np.zeros((2, T_LQR, 4)), np.zeros((2, T_LQR, 2))))
    with pytest.raises(ProblemError, match="NaN"):
        rlto.solve(lqr_free, params, init=np.full((2, T_LQR, 2), np.nan))
    with pytest.raises(ProblemError, match="NaN or inf"):
        rlto.solve(lqr_free, {"x0": params["x0"].at[0, 0].set(np.nan)})
    with pytest.raises(ProblemError, match="max_iter must be a positive integer"):
        rlto.solve(lqr_free, params, max_iter=0)
    with pytest.raises(ProblemError, match="tol must be positive"):
        rlto.solve(lqr_free, params, tol=-1.0)
    with pytest.raises(ProblemError, match="rlto.ExtraCost"):
        rlto.solve(lqr_free, params, extra_cost=lambda x: x)


def test_problem_initial_controls_are_the_default_start(lqr_box):
    """init=None starts from Problem.initial_controls (clipped to the box): the same solve as
    passing those controls, and not the zero-control solve; a wrong shape is a clear error."""
    T = lqr_box.horizon

    def push(params):  # 0.3 along the first force axis, 2.0 (clipped to 1) along the second
        return jnp.broadcast_to(jnp.array([0.3, 2.0]) * jnp.sign(params["x0"][0]), (T, 2))

    guessed = dataclasses.replace(lqr_box, initial_controls=push)
    params = guessed.sample(jax.random.key(5), 3)
    controls = np.asarray(jax.vmap(push)(params))
    by_default = rlto.solve(guessed, params, max_iter=3)
    explicit = rlto.solve(guessed, params, init=np.clip(controls, -1.0, 1.0), max_iter=3)
    zero = rlto.solve(guessed, params, init=np.zeros((3, T, 2)), max_iter=3)
    np.testing.assert_array_equal(by_default.us, explicit.us)
    np.testing.assert_array_equal(by_default.iterations, explicit.iterations)
    assert not np.allclose(by_default.us, zero.us)
    with pytest.raises(ProblemError, match=r"initial_controls\(params\) returned shape"):
        dataclasses.replace(lqr_box, initial_controls=lambda params: jnp.zeros((T, 3)))
