"""rlto.robots against Pinocchio (the oracle): dynamics, derivatives, kinematics, limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto.problems.ur5 import HOME
from rlto.robots import RobotError, load_robot

pin = pytest.importorskip("pinocchio")

ROBOTS = ["ur5", "double_pendulum"]


@pytest.fixture(scope="module", params=ROBOTS)
def pair(request):
    """(rlto Robot, pinocchio Model, Data) of the same URDF."""
    robot = load_robot(request.param)
    model = pin.buildModelFromUrdf(robot.urdf_path)
    return robot, model, model.createData()


def random_states(robot, n, seed=0):
    """n random (q, v, tau) (n, nv) each; torques within the URDF limits (5 N m without one)."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(-np.pi, np.pi, (n, robot.nv))
    v = rng.uniform(-2.0, 2.0, (n, robot.nv))
    limit = np.where(np.isfinite(robot.effort_limit), robot.effort_limit, 5.0)
    tau = rng.uniform(-1.0, 1.0, (n, robot.nv)) * limit
    return q, v, tau


def test_structure_and_limits_match_pinocchio(pair):
    robot, model, _ = pair
    assert robot.nv == model.nv == model.nq
    assert robot.joint_names == tuple(model.names)[1:]
    effort = np.asarray(model.effortLimit)
    np.testing.assert_array_equal(robot.effort_limit, np.where(effort > 0, effort, np.inf))
    if robot.name == "ur5":
        np.testing.assert_array_equal(robot.effort_limit, [150, 150, 150, 28, 28, 28])
        np.testing.assert_array_equal(robot.velocity_limit, model.velocityLimit)
        np.testing.assert_array_equal(robot.lower, model.lowerPositionLimit)
        np.testing.assert_array_equal(robot.upper, model.upperPositionLimit)


def test_forward_dynamics_matches_pin_aba(pair):
    robot, model, data = pair
    q, v, tau = random_states(robot, 8)
    fd = jax.jit(jax.vmap(robot.forward_dynamics))(q, v, tau)
    aba = jax.jit(jax.vmap(robot.aba))(q, v, tau)
    for i in range(len(q)):
        expected = pin.aba(model, data, q[i], v[i], tau[i])
        np.testing.assert_allclose(fd[i], expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(aba[i], expected, rtol=0, atol=1e-9)


def test_inverse_dynamics_and_mass_matrix_match_pinocchio(pair):
    robot, model, data = pair
    q, v, a = random_states(robot, 4, seed=1)
    for i in range(len(q)):
        np.testing.assert_allclose(
            robot.inverse_dynamics(q[i], v[i], a[i]), pin.rnea(model, data, q[i], v[i], a[i]),
            rtol=0, atol=1e-9,
        )
        upper = np.triu(pin.crba(model, data, q[i]))  # pinocchio fills the upper triangle
        np.testing.assert_allclose(
            robot.mass_matrix(q[i]), upper + np.triu(upper, 1).T, rtol=0, atol=1e-12
        )


def test_derivatives_match_compute_aba_derivatives(pair):
    """Both ways to the derivatives of forward dynamics, jacfwd through its custom JVP and the
    closed form `forward_dynamics_derivatives`, against Pinocchio's."""
    robot, model, data = pair
    q, v, tau = random_states(robot, 4, seed=2)
    jac = jax.jit(jax.vmap(jax.jacfwd(robot.forward_dynamics, argnums=(0, 1, 2))))(q, v, tau)
    qdd, *closed_form = jax.jit(jax.vmap(robot.forward_dynamics_derivatives))(q, v, tau)
    for i in range(len(q)):
        np.testing.assert_allclose(qdd[i], pin.aba(model, data, q[i], v[i], tau[i]), rtol=0,
                                   atol=1e-9)
        pin.computeABADerivatives(model, data, q[i], v[i], tau[i])
        for theirs, by_jvp, ours in zip((data.ddq_dq, data.ddq_dv, data.Minv), jac, closed_form,
                                        strict=True):
            scale = max(1.0, np.abs(theirs).max())
            np.testing.assert_allclose(by_jvp[i], theirs, rtol=0, atol=1e-8 * scale)
            np.testing.assert_allclose(ours[i], theirs, rtol=0, atol=1e-8 * scale)


TREE_URDF = """<robot name="tree"><link name="base"/>
<link name="trunk"><inertial><origin xyz="0.1 -0.05 0.3" rpy="0.2 0.1 -0.3"/><mass value="2.5"/>
  <inertia ixx="0.04" ixy="0.003" ixz="-0.002" iyy="0.05" iyz="0.001" izz="0.03"/></inertial></link>
<link name="left"><inertial><origin xyz="0.2 0.01 -0.02"/><mass value="1.2"/>
  <inertia ixx="0.01" ixy="0" ixz="0.001" iyy="0.02" iyz="0" izz="0.015"/></inertial></link>
<link name="left_tip"><inertial><origin xyz="0 0 0.05"/><mass value="0.3"/>
  <inertia ixx="0.001" ixy="0" ixz="0" iyy="0.001" iyz="0" izz="0.002"/></inertial></link>
<link name="right"><inertial><origin xyz="-0.1 0.15 0.0" rpy="0.5 0 0"/><mass value="0.9"/>
  <inertia ixx="0.008" ixy="-0.001" ixz="0" iyy="0.006" iyz="0.0005" izz="0.01"/></inertial></link>
<link name="slider"><inertial><origin xyz="0.05 0 0"/><mass value="0.4"/>
  <inertia ixx="0.002" ixy="0" ixz="0" iyy="0.003" iyz="0" izz="0.002"/></inertial></link>
<link name="hand"><inertial><origin xyz="0 0.04 0.02"/><mass value="0.5"/>
  <inertia ixx="0.002" ixy="0.0002" ixz="0" iyy="0.001" iyz="0" izz="0.002"/></inertial></link>
<joint name="j_trunk" type="revolute"><parent link="base"/><child link="trunk"/>
  <origin xyz="0 0 0.1"/><axis xyz="0 0 1"/>
  <limit effort="50" velocity="3" lower="-3" upper="3"/></joint>
<joint name="j_left" type="revolute"><parent link="trunk"/><child link="left"/>
  <origin xyz="0.1 0.2 0.5" rpy="0.3 -0.2 0.1"/><axis xyz="0.6 0 0.8"/>
  <limit effort="10" velocity="3" lower="-3" upper="3"/></joint>
<joint name="j_left_tip" type="fixed"><parent link="left"/><child link="left_tip"/>
  <origin xyz="0.4 0 0" rpy="0 0.4 0"/></joint>
<joint name="j_right" type="revolute"><parent link="trunk"/><child link="right"/>
  <origin xyz="-0.1 -0.2 0.5" rpy="-0.1 0.2 0.7"/><axis xyz="1 0 0"/>
  <limit effort="20" velocity="3" lower="-2" upper="2"/></joint>
<joint name="j_slider" type="prismatic"><parent link="right"/><child link="slider"/>
  <origin xyz="0 0.3 0"/><axis xyz="0 0.6 -0.8"/>
  <limit effort="30" velocity="1" lower="-0.2" upper="0.2"/></joint>
<joint name="j_hand" type="revolute"><parent link="slider"/><child link="hand"/>
  <origin xyz="0.1 0 0.05" rpy="0 0 0.5"/><axis xyz="0 1 0"/>
  <limit effort="5" velocity="3" lower="-2" upper="2"/></joint>
</robot>"""
"""A branching tree (trunk with two arms, one through a prismatic joint), oblique axes, rotated
inertias and a fixed joint: what the UR5 and double pendulum chains leave untested."""


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    path = tmp_path_factory.mktemp("tree") / "tree.urdf"
    path.write_text(TREE_URDF)
    robot = load_robot(str(path))
    model = pin.buildModelFromUrdf(str(path))
    return robot, model, model.createData()


def test_tree_dynamics_and_derivatives_match_pinocchio(tree):
    robot, model, data = tree
    assert robot.parents == (-1, 0, 0, 2, 3)
    test_forward_dynamics_matches_pin_aba(tree)
    test_inverse_dynamics_and_mass_matrix_match_pinocchio(tree)
    test_derivatives_match_compute_aba_derivatives(tree)
    test_newton_euler_derivatives_match_compute_rnea_derivatives(tree)
    test_step_jacobians_equal_autodiff_of_step(tree)


def test_newton_euler_derivatives_match_compute_rnea_derivatives(pair):
    """The analytic derivatives of inverse dynamics against Pinocchio's and against reverse-mode
    autodiff of our own Newton-Euler (a third, independent derivation)."""
    robot, model, data = pair
    q, v, a = random_states(robot, 4, seed=11)
    derivatives = jax.jit(jax.vmap(robot.inverse_dynamics_derivatives))(q, v, a)
    autodiff = jax.jit(jax.vmap(jax.jacrev(robot.inverse_dynamics, argnums=(0, 1))))(q, v, a)
    for i in range(len(q)):
        pin.computeRNEADerivatives(model, data, q[i], v[i], a[i])
        expected = (pin.rnea(model, data, q[i], v[i], a[i]), data.dtau_dq, data.dtau_dv)
        for ours, theirs in zip(derivatives, expected, strict=True):
            scale = max(1.0, np.abs(theirs).max())
            np.testing.assert_allclose(ours[i], theirs, rtol=0, atol=1e-9 * scale)
        for ours, theirs in zip(derivatives[1:], autodiff, strict=True):
            scale = max(1.0, np.abs(theirs[i]).max())
            np.testing.assert_allclose(ours[i], theirs[i], rtol=0, atol=1e-12 * scale)


def test_reverse_mode_equals_forward_mode():
    """The custom JVP transposes: jacrev (what jax.grad uses) equals jacfwd."""
    robot = load_robot("ur5")
    q, v, tau = (jnp.asarray(a[0]) for a in random_states(robot, 1, seed=3))
    fwd = jax.jacfwd(robot.forward_dynamics, argnums=(0, 1, 2))(q, v, tau)
    rev = jax.jacrev(robot.forward_dynamics, argnums=(0, 1, 2))(q, v, tau)
    for a, b in zip(fwd, rev, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-10)


def test_frame_placements_match_pinocchio(pair):
    robot, model, data = pair
    q, _, _ = random_states(robot, 3, seed=4)
    names = [f.name for f in model.frames if f.name != "universe"]
    assert set(names) <= set(robot.frame_names)
    for qi in q:
        pin.forwardKinematics(model, data, qi)
        pin.updateFramePlacements(model, data)
        for name in names:
            placement = data.oMf[model.getFrameId(name)]
            rot, pos = robot.frame_placement(jnp.asarray(qi), name)
            np.testing.assert_allclose(pos, placement.translation, rtol=0, atol=1e-9)
            np.testing.assert_allclose(rot, placement.rotation, rtol=0, atol=1e-9)


def test_step_is_semi_implicit_euler_and_batches():
    robot = load_robot("ur5")
    q, v, tau = random_states(robot, 5, seed=5)
    x = np.concatenate([q, v], axis=1)
    dt = 0.01
    batched = jax.jit(jax.vmap(robot.step, in_axes=(0, 0, None)))(x, tau, dt)
    for i in range(len(x)):
        v_next = v[i] + dt * np.asarray(robot.forward_dynamics(q[i], v[i], tau[i]))
        np.testing.assert_allclose(batched[i], np.concatenate([q[i] + dt * v_next, v_next]),
                                   rtol=0, atol=1e-12)
    fx, fu = jax.jacfwd(robot.step, argnums=(0, 1))(jnp.asarray(x[0]), jnp.asarray(tau[0]), dt)
    assert fx.shape == (12, 12) and fu.shape == (12, 6)
    eps = 1e-6  # central differences: truncation ~ eps^2 |f'''|
    e = np.zeros(12)
    e[3] = eps
    fd = (robot.step(x[0] + e, tau[0], dt) - robot.step(x[0] - e, tau[0], dt)) / (2 * eps)
    np.testing.assert_allclose(fx[:, 3], fd, rtol=0, atol=1e-7)


def test_step_jacobians_equal_autodiff_of_step(pair):
    """The closed-form step Jacobians (what DDP linearises ur5 with) against jacfwd of `step`,
    on every robot, batched."""
    robot, _, _ = pair
    q, v, tau = random_states(robot, 3, seed=12)
    x = np.concatenate([q, v], axis=1)
    dt = 0.01
    x_next, fx, fu = jax.jit(jax.vmap(robot.step_jacobians, in_axes=(0, 0, None)))(x, tau, dt)
    step = jax.vmap(robot.step, in_axes=(0, 0, None))
    autodiff = jax.vmap(jax.jacfwd(robot.step, argnums=(0, 1)), in_axes=(0, 0, None))
    np.testing.assert_allclose(x_next, step(x, tau, dt), rtol=0, atol=1e-12)
    for ours, theirs in zip((fx, fu), autodiff(x, tau, dt), strict=True):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * np.abs(theirs).max())


def test_float32_inputs_compute_in_float32_and_match_float64(pair):
    """float32 in, float32 through: no float64 operation in the step, its Jacobians and its
    VJP (a stray float64 constant would promote the whole computation and lose the speed),
    and the values agree with float64 to float32's precision; integers become float64."""
    robot, _, _ = pair
    q, v, tau = random_states(robot, 4, seed=9)
    x = np.concatenate([q, v], axis=1)[0]
    x32, tau32 = jnp.asarray(x, jnp.float32), jnp.asarray(tau[0], jnp.float32)

    def step(x, u):
        return robot.step(x, u, 0.01)

    def placement(q):
        return robot.frame_placement(q, robot.frame_names[-1])

    traced = [jax.make_jaxpr(step)(x32, tau32),
              jax.make_jaxpr(lambda x, u: robot.step_jacobians(x, u, 0.01))(x32, tau32),
              jax.make_jaxpr(jax.jacfwd(step, argnums=(0, 1)))(x32, tau32),
              jax.make_jaxpr(lambda x, u: jax.vjp(step, x, u)[1](x))(x32, tau32),
              jax.make_jaxpr(placement)(x32[:robot.nv])]
    for jaxpr in traced:
        assert "f64" not in str(jaxpr)
    for f, args in ((robot.forward_dynamics, (q[1], v[1], tau[1])),
                    (robot.inverse_dynamics, (q[2], v[2], tau[2] / 10)),
                    (robot.mass_matrix, (q[3],)),
                    (step, (x, tau[0]))):
        wide = np.asarray(f(*(jnp.asarray(a) for a in args)))
        narrow = f(*(jnp.asarray(a, jnp.float32) for a in args))
        assert narrow.dtype == jnp.float32
        np.testing.assert_allclose(narrow, wide, rtol=2e-4, atol=2e-4 * np.max(np.abs(wide)))
    fx64 = jax.jacfwd(step)(jnp.asarray(x), jnp.asarray(tau[0]))
    fx32 = jax.jacfwd(step)(x32, tau32)
    np.testing.assert_allclose(fx32, fx64, rtol=0, atol=1e-3 * np.max(np.abs(fx64)))
    assert robot.forward_dynamics(np.zeros(robot.nv, int), np.zeros(robot.nv, int),
                                  np.zeros(robot.nv, int)).dtype == jnp.float64


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(RobotError, match="no URDF file"):
        load_robot(str(tmp_path / "missing.urdf"))
    bad = tmp_path / "floating.urdf"
    bad.write_text(
        '<robot name="f"><link name="a"/><link name="b"/>'
        '<joint name="j" type="floating"><parent link="a"/><child link="b"/></joint></robot>'
    )
    with pytest.raises(RobotError, match="floating"):
        load_robot(str(bad))
    broken = tmp_path / "broken.urdf"
    broken.write_text("<robot")
    with pytest.raises(RobotError, match="not a valid"):
        load_robot(str(broken))


def test_call_errors_are_clear():
    robot = load_robot("ur5")
    with pytest.raises(RobotError, match="no frame named 'tool'.*tool0"):
        robot.frame_position(jnp.zeros(6), "tool")
    with pytest.raises(RobotError, match=r"q has shape \(5,\), expected \(6,\)"):
        robot.forward_dynamics(jnp.zeros(5), jnp.zeros(6), jnp.zeros(6))
    with pytest.raises(RobotError, match=r"x has shape \(2, 12\).*vmap"):
        robot.step(jnp.zeros((2, 12)), jnp.zeros(6), 0.01)


# ---------------------------------------------------------------------------------------------
# The `ur5` problem built on it.


def test_ur5_problem_is_built_from_the_urdf():
    problem = rlto.make("ur5")
    robot = load_robot("ur5")
    assert (problem.nx, problem.nu, problem.horizon, problem.dt) == (12, 6, 100, 0.01)
    np.testing.assert_array_equal(problem.u_upper, robot.effort_limit)
    np.testing.assert_array_equal(problem.u_lower, -robot.effort_limit)
    params = problem.sample(jax.random.key(0), 64)
    c = problem.config
    assert params["x0"].shape == (64, 12) and params["target"].shape == (64, 3)
    assert np.all(np.abs(params["x0"][:, :6] - np.asarray(c.q_home)) <= c.q_spread)
    assert np.all((params["target"] >= np.asarray(c.target_low))
                  & (params["target"] <= np.asarray(c.target_high)))
    # Reachable: every target within the arm's 0.85 m reach of the shoulder joint.
    shoulder = np.asarray(robot.frame_position(jnp.zeros(6), "shoulder_lift_joint"))
    assert np.linalg.norm(params["target"] - shoulder, axis=1).max() < 0.85
    one = jax.tree.map(lambda a: a[0], params)
    x, u = one["x0"], jnp.ones(6)
    np.testing.assert_allclose(problem.dynamics(x, u, 0, one), robot.step(x, u, 0.01), atol=1e-15)
    d = robot.frame_position(x[:6], "tool0") - one["target"]
    expected = 0.01 * 0.5 * (c.w_pos * d @ d + c.w_u * 6.0 + c.w_vel * x[6:] @ x[6:])
    np.testing.assert_allclose(problem.running_cost(x, u, 0, one), expected, rtol=1e-12)


def test_inverse_kinematics_reaches_pinocchio_positions():
    """IK from a nearby pose puts the flange where Pinocchio's kinematics of a random pose put
    it (a reachable target by construction), to 1e-9 m; from a pose already there it stays."""
    robot = load_robot("ur5")
    model = pin.buildModelFromUrdf(robot.urdf_path)
    data = model.createData()
    frame = model.getFrameId("tool0")
    rng = np.random.default_rng(4)
    q_true = np.asarray(HOME) + rng.uniform(-0.6, 0.6, (5, 6))
    q0 = q_true + rng.uniform(-0.3, 0.3, (5, 6))
    targets = []
    for q in q_true:
        pin.framesForwardKinematics(model, data, q)
        targets.append(data.oMf[frame].translation.copy())
    targets = np.asarray(targets)
    ik = jax.jit(jax.vmap(lambda q, p: robot.inverse_kinematics(q, "tool0", p)))
    q_ik = np.asarray(ik(q0, targets))
    for q, target in zip(q_ik, targets, strict=True):
        pin.framesForwardKinematics(model, data, q)
        np.testing.assert_allclose(data.oMf[frame].translation, target, rtol=0, atol=1e-9)
    assert np.abs(q_ik - q0).max() < 1.0  # stays near the start, not a far-away IK branch
    np.testing.assert_allclose(ik(q_true, targets), q_true, rtol=0, atol=1e-12)


def test_path_torques_make_the_euler_step_follow_the_path(pair):
    """Stepping with path_torques(qs, v0) reproduces the joint path qs (forward dynamics
    inverting inverse dynamics, two separate code paths); a malformed path is a clear error."""
    robot, _, _ = pair
    rng = np.random.default_rng(5)
    horizon, dt = 30, 0.01
    t = np.arange(horizon + 1)[:, None] * dt
    qs = rng.uniform(-1, 1, robot.nv) + 0.5 * np.sin(3 * t + rng.uniform(0, 6, robot.nv))
    v0 = rng.uniform(-1.0, 1.0, robot.nv)
    taus = robot.path_torques(qs, v0, dt)
    assert taus.shape == (horizon, robot.nv)
    x = jnp.concatenate([jnp.asarray(qs[0]), jnp.asarray(v0)])
    for k in range(horizon):
        x = robot.step(x, taus[k], dt)
        np.testing.assert_allclose(x[: robot.nv], qs[k + 1], rtol=0, atol=1e-9)
    with pytest.raises(RobotError, match=r"qs must have shape \(T\+1, "):
        robot.path_torques(qs[:, :1], v0, dt)


def test_ur5_default_start_reaches_the_target_at_rest():
    """ur5's initial_controls, the default start of every solve, move the flange onto the
    target (Pinocchio's kinematics of the rolled-out final pose) and stop there, wherever
    they stay within the torque limits; rlto.solve's default start is exactly them."""
    problem = rlto.make("ur5")
    robot = load_robot("ur5")
    model = pin.buildModelFromUrdf(robot.urdf_path)
    data = model.createData()
    frame = model.getFrameId("tool0")
    params = problem.sample(jax.random.key(2), 6)
    from rlto.solver.ddp import default_controls
    starts = np.asarray(default_controls(problem, params, 6))
    guesses = np.asarray(jax.jit(jax.vmap(problem.initial_controls))(params))
    rollout = jax.jit(problem.rollout)

    followed = 0
    for i in range(6):
        one = {key: value[i] for key, value in params.items()}
        us = guesses[i]
        clipped = np.clip(us, problem.u_lower, problem.u_upper)
        np.testing.assert_allclose(starts[i], clipped, atol=1e-9)
        if np.any(np.abs(us) > problem.u_upper):
            continue  # clipped: the path is not followed exactly
        followed += 1
        x = rollout(jnp.asarray(us), one)[-1]
        pin.framesForwardKinematics(model, data, np.asarray(x[:6]))
        np.testing.assert_allclose(data.oMf[frame].translation, one["target"], atol=1e-8)
        np.testing.assert_allclose(x[6:], 0.0, atol=1e-8)
    assert followed >= 3


@pytest.mark.slow  # about 70 s, mostly compiling the solver for the UR5 model
def test_ur5_solve_reaches_the_target():
    """TO from the default start (a reach to the IK pose) converges and ends within 2 mm of the
    target, nearly at rest: with w_pos_terminal = 1e4 a 2 mm miss costs 0.02, small against the
    optimum's cost of about 0.4, so a converged solution has no reason to stop farther away. Its
    joints stay within the URDF's velocity limits, which the OCP does not impose: the start
    leads to smooth optima, not the swings DDP settled in from gravity compensation."""
    problem = rlto.make("ur5")
    params = problem.sample(jax.random.key(1), 4)
    result = rlto.solve(problem, params)
    assert bool(np.all(result.converged)), result.status
    final = jax.vmap(problem.position)(result.xs[:, -1], params)
    error = np.linalg.norm(final - params["target"], axis=1)
    assert error.max() < 2e-3, error
    assert np.abs(result.xs[:, -1, 6:]).max() < 0.1
    assert np.all(np.abs(result.us) <= problem.u_upper + 1e-9)
    assert np.all(np.abs(result.xs[..., 6:]) < load_robot("ur5").velocity_limit)


def test_dynamics_benchmark_smoke(tmp_path):
    """benchmarks/dynamics.py runs, writes its three files, and its columns agree."""
    import json

    from benchmarks import dynamics

    assert dynamics.main(["--quick", "--no-adam", "--sizes", "1,8", "--repeats", "1",
                          "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "dynamics.json").read_text())
    assert [row["n"] for row in result["rows"]] == [1, 8]
    for row in result["rows"]:
        assert set(row["max_abs_difference"]) == {"rlto_fd vs pin_fd", "rlto_deriv vs pin_deriv",
                                                  "rlto_jacfwd_deriv vs pin_deriv"}
        assert max(row["max_abs_difference"].values()) < 1e-8
    assert (tmp_path / "dynamics.md").read_text().startswith("# Batched dynamics throughput")
    assert (tmp_path / "dynamics.png").stat().st_size > 0


def point_mass_double_pendulum_urdf(m1, m2, l1, l2) -> str:
    """The analytic `double_pendulum` as a URDF: point masses at the link ends (zero rotational
    inertia), hanging along -z at q = 0, joint axes -y so that the tip moves in the x-z plane as
    p = (l1 sin q1 + l2 sin(q1 + q2), -l1 cos q1 - l2 cos(q1 + q2))."""
    def link(name, mass, length):
        return (f'<link name="{name}"><inertial><origin xyz="0 0 {-length}"/>'
                f'<mass value="{mass}"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/>'
                "</inertial></link>")

    def joint(name, parent, child, kind, z):
        return (f'<joint name="{name}" type="{kind}"><parent link="{parent}"/>'
                f'<child link="{child}"/><origin xyz="0 0 {z}"/><axis xyz="0 -1 0"/></joint>')

    return ('<robot name="point_double_pendulum"><link name="base"/>'
            + link("link1", m1, l1) + link("link2", m2, l2) + '<link name="tip"/>'
            + joint("j1", "base", "link1", "revolute", 0.0)
            + joint("j2", "link1", "link2", "revolute", -l1)
            + joint("tip_joint", "link2", "tip", "fixed", -l2) + "</robot>")


def test_urdf_double_pendulum_matches_the_analytic_model(tmp_path):
    """A second oracle, independent of Pinocchio: the closed-form double pendulum."""
    from rlto.problems import double_pendulum as dp

    config = dp.DoublePendulumConfig(m1=1.3, m2=0.7, l1=0.9, l2=1.1)
    path = tmp_path / "point_double_pendulum.urdf"
    path.write_text(point_mass_double_pendulum_urdf(config.m1, config.m2, config.l1, config.l2))
    robot = load_robot(str(path), gravity=(0.0, 0.0, -config.g))
    chain = dp.chain_of(config)
    q, v, tau = random_states(robot, 5, seed=6)
    for i in range(len(q)):
        np.testing.assert_allclose(
            robot.forward_dynamics(q[i], v[i], tau[i]),
            dp.forward_dynamics(jnp.asarray(q[i]), jnp.asarray(v[i]), jnp.asarray(tau[i]), chain),
            rtol=0, atol=1e-9,
        )
        tip = np.asarray(robot.frame_position(q[i], "tip"))
        np.testing.assert_allclose(tip[[0, 2]], dp.joint_positions(jnp.asarray(q[i]), chain)[-1],
                                   rtol=0, atol=1e-12)
        assert abs(float(tip[1])) < 1e-15
