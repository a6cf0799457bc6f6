"""The command line (`rlto problems`, `rlto solve`) and the plot functions."""

import contextlib
import io
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto
from rlto import cli, plots


def _png_ok(path):
    """A non-empty PNG file."""
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_subcommand_has_help(capsys):
    for argv in (["--help"], *([name, "--help"] for name in cli.COMMANDS)):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 0
        assert "usage: rlto" in capsys.readouterr().out


def test_python_dash_m_entry():
    done = subprocess.run([sys.executable, "-m", "rlto", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert "solve" in done.stdout and "problems" in done.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: rlto" in capsys.readouterr().err


def test_problems_json_lists_every_builtin(capsys):
    assert cli.main(["problems", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == rlto.problem_names()
    assert {"pendulum", "lqr", "single_integrator"} <= {row["name"] for row in rows}
    for row in rows:
        problem = rlto.make(row["name"])
        assert (row["nx"], row["nu"], row["horizon"]) == (problem.nx, problem.nu, problem.horizon)
        assert row["description"]


def test_problems_table(capsys):
    assert cli.main(["problems"]) == 0
    out = capsys.readouterr().out
    for name in rlto.problem_names():
        assert name in out


def test_unknown_problem_exits_2_with_hint(capsys):
    assert cli.main(["solve", "pendulun", "--n", "2"]) == 2
    captured = capsys.readouterr()
    assert "unknown problem 'pendulun'" in captured.err
    assert "Did you mean 'pendulum'" in captured.err
    assert "Traceback" not in captured.err


def test_bad_option_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["solve", "lqr", "--n", "0"])
    assert exit_info.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_set_parses_json_values():
    assert cli._override("horizon=50") == ("horizon", 50)
    assert cli._override("obstacles=constraint") == ("obstacles", "constraint")
    assert cli._override("target=[-7, 1.5]") == ("target", (-7, 1.5))


def test_set_unknown_field_exits_2_listing_fields(capsys):
    assert cli.main(["solve", "lqr", "--n", "2", "--set", "horizn=10"]) == 2
    err = capsys.readouterr().err
    assert "unknown option(s) ['horizn']" in err and "horizon" in err


def test_format_bounds():
    inf = np.inf
    assert cli.format_bounds([-inf, -inf], [inf, inf]) == "none"
    assert cli.format_bounds([-2.0], [2.0]) == "±2"
    assert cli.format_bounds([0.0, 0.0], [1.0, 1.0]) == "[0, 1]"
    assert cli.format_bounds([-1.0, 0.0], [1.0, inf]) == "±1 [0, inf]"


def _mixed_bounds_problem():
    """A tiny Problem with a two-sided, a one-sided and an unbounded control."""
    return rlto.Problem(
        name="mixed", nx=1, nu=3, horizon=5, dt=0.1,
        dynamics=lambda x, u, t, p: x + 0.1 * u.sum(),
        running_cost=lambda x, u, t, p: u @ u,
        terminal_cost=lambda x, p: x @ x,
        u_lower=[-3.0, 2.0, -np.inf], u_upper=[-2.5, np.inf, np.inf],
        sample=lambda key, n: {"x0": jax.random.normal(key, (n, 1))},
    )


def test_random_init_within_bounds_and_seeded():
    problem = _mixed_bounds_problem()
    us = np.asarray(cli.initial_controls(problem, jax.random.key(3), 50))
    assert us.shape == (50, 5, 3)
    assert np.all((us[..., 0] >= -3.0) & (us[..., 0] <= -2.5))
    assert np.all((us[..., 1] >= 2.0) & (us[..., 1] <= 3.0))
    assert np.all((us[..., 2] >= -1.0) & (us[..., 2] <= 1.0))
    again = np.asarray(cli.initial_controls(problem, jax.random.key(3), 50))
    np.testing.assert_array_equal(us, again)


def test_cost_line_reports_nonfinite_costs():
    from rlto.solver.result import Result

    n = 3
    zeros = np.zeros(n)
    result = Result(
        xs=np.zeros((n, 2, 1)), us=np.zeros((n, 1, 1)), K=np.zeros((n, 1, 1, 1)),
        k=np.zeros((n, 1, 1)), Vx=np.zeros((n, 2, 1)), Vxx=np.zeros((n, 2, 1, 1)),
        step_improvement=np.zeros((n, 1)),
        cost=np.array([1.0, np.nan, 2.0]), total_cost=zeros, iterations=np.ones(n, int),
        converged=np.array([True, False, True]), status=np.array([0, 2, 0]), gap=zeros,
        constraint_violation=zeros, forward_calls=np.ones(n, int),
        derivative_calls=np.ones(n, int), seconds=1.0,
    )
    summary = result.summary()
    assert summary["cost_nonfinite"] == 1
    line = cli._cost_line(summary)
    assert line == "mean 1.5, median 1.5, min 1, max 2 over the 2 finite (1 NaN/inf)"


def test_to_jsonable_is_strict_json():
    value = {"a": np.array([1.0, np.inf]), "b": (np.float64(np.nan), np.int64(2)), "c": None}
    text = json.dumps(cli.to_jsonable(value), allow_nan=False)
    assert json.loads(text) == {"a": [1.0, "inf"], "b": ["nan", 2], "c": None}


@pytest.fixture(scope="module")
def lqr_run(tmp_path_factory):
    """One `rlto solve lqr --json` run (each CLI solve compiles afresh, so the tests share it)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["solve", "lqr", "--n", "4", "--max-iter", "20", "--set", "horizon=20", "--json",
            "--out", str(out)]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(argv)
    return code, stdout.getvalue(), out


def test_solve_json_prints_summary(lqr_run):
    code, printed, _ = lqr_run
    assert code == 0
    summary = json.loads(printed)
    assert summary["n"] == 4
    assert 0.0 <= summary["converged_share"] <= 1.0
    assert sum(summary["status_counts"].values()) == 4
    for key in ("iterations_median", "iterations_max", "cost_mean", "cost_median", "seconds",
                "wall_seconds", "instances_per_second"):
        assert key in summary


def test_solve_writes_result_json_and_plots(lqr_run):
    _, _, out = lqr_run
    record = json.loads((out / "result.json").read_text())
    assert record["config"]["problem"] == "lqr"
    assert record["config"]["n"] == 4 and record["config"]["max_iter"] == 20
    assert record["config"]["init"] == "zero" and record["config"]["seed"] == 0
    assert record["config"]["overrides"] == {"horizon": 20}
    assert record["config"]["problem_config"]["horizon"] == 20
    assert record["summary"]["n"] == 4
    assert record["files"] == ["trajectories.png", "costs.png"]
    for name in record["files"]:
        assert _png_ok(out / name), name


def test_solve_table(lqr_run, capsys):
    _, _, out = lqr_run
    summary = json.loads((out / "result.json").read_text())["summary"]
    statuses = {"max_iterations": {"count": 1, "message": "stopped at max_iter"}}
    args = cli.build_parser().parse_args(["solve", "lqr", "--n", "4"])
    cli.print_solve_summary(rlto.make("lqr"), summary, statuses, args)
    text = capsys.readouterr().out
    for word in ("converged", "iterations", "cost", "time", "1 max_iterations", "stopped at"):
        assert word in text


def _zero_control_arrays(problem, n):
    """Params, and rollouts of zero controls as stand-ins for solved trajectories."""
    params = problem.sample(jax.random.key(0), n)
    us = jnp.zeros((n, problem.horizon, problem.nu))
    xs = jax.vmap(problem.rollout)(us, params)
    converged = np.arange(n) % 3 != 0
    return params, {"xs": np.asarray(xs), "us": np.asarray(us), "converged": converged}


@pytest.mark.parametrize("name", ["single_integrator", "pendulum"])
def test_plot_trajectories_writes_png(tmp_path, name):
    problem = rlto.make(name)
    params, arrays = _zero_control_arrays(problem, 6)
    path = tmp_path / f"{name}.png"
    fig = plots.plot_trajectories(problem, arrays, path, params=params, max_paths=4)
    assert _png_ok(path)
    assert fig.axes
    # Without params the position panels are left out, but the plot still works.
    plots.plot_trajectories(problem, (arrays["xs"], arrays["us"]), tmp_path / "bare.png")
    assert _png_ok(tmp_path / "bare.png")


def test_plot_task_paths_draws_the_positions(tmp_path):
    """Fig. 1's paths are p(x_t) of the instances drawn; the title's median final distance is
    over all of them; a problem without task space is a clear error."""
    problem = rlto.make("single_integrator")
    params, arrays = _zero_control_arrays(problem, 5)
    fig = plots.plot_task_paths(problem, arrays["xs"], params, arrays["converged"],
                                tmp_path / "paths.png", max_paths=5)
    assert _png_ok(tmp_path / "paths.png")
    position = jax.vmap(jax.vmap(problem.position, in_axes=(0, None)))
    expected = np.asarray(position(jnp.asarray(arrays["xs"]), params))
    drawn = [np.asarray(line.get_xydata()) for line in fig.axes[0].lines]
    assert len(drawn) == 5
    for path in drawn:  # each drawn path is one instance's p(x_t)
        assert any(np.allclose(path, e) for e in expected)
    target = np.asarray(jax.vmap(problem.target)(params))
    final = np.linalg.norm(expected[:, -1] - target, axis=-1)
    assert f"{np.median(final):.3g} m" in fig.texts[0].get_text()
    # Diverged rollouts (NaN) rank as the farthest, as Report.precision ranks them: with three
    # of five diverged the median is inf, where ignoring them would report a finite distance.
    diverged = np.array(arrays["xs"], dtype=np.float64)
    diverged[:3, -1] = np.nan
    fig = plots.plot_task_paths(problem, diverged, params, arrays["converged"], max_paths=5)
    assert "median final distance inf m" in fig.texts[0].get_text()
    oned = rlto.make("oned")
    with pytest.raises(ValueError, match="no task space"):
        plots.plot_task_paths(oned, np.zeros((1, oned.horizon + 1, 1)), oned.sample(
            jax.random.key(0), 1))


@pytest.mark.parametrize("name", ["single_integrator", "oned"])
def test_plot_policy_and_to_one_row_per_trajectory(tmp_path, name):
    """Fig. 6: a row per trajectory, titled with its cost (the problem's trajectory cost)."""
    problem = rlto.make(name)
    params, arrays = _zero_control_arrays(problem, 2)
    one = {k: np.asarray(v)[0] for k, v in params.items()}
    rows = {"a": (arrays["xs"][0], arrays["us"][0]), "b": (arrays["xs"][1], arrays["us"][1])}
    fig = plots.plot_policy_and_to(problem, one, rows, tmp_path / "fig6.png")
    assert _png_ok(tmp_path / "fig6.png")
    titles = [ax.get_title() for ax in fig.axes]
    cost = float(problem.trajectory_cost(arrays["xs"][0], arrays["us"][0], one))
    assert f"a: cost {cost:.5g}" in titles[0]
    assert titles[1] == "a: controls" and titles[3] == "b: controls"


def test_plot_cost_histogram_writes_png(tmp_path):
    arrays = {"cost": np.array([1.0, 2.0, 50.0, np.inf]), "iterations": np.array([3, 4, 9, 20]),
              "converged": np.array([True, True, True, False])}
    path = tmp_path / "costs.png"
    plots.plot_cost_histogram(arrays, path)
    assert _png_ok(path)


def test_train_then_eval(tmp_path):
    """`rlto train` writes a resumable run; `rlto eval` re-scores its policy identically."""
    out = tmp_path / "run"
    argv = ["train", "lqr", "--iterations", "1", "-o", "n_problems=8", "-o", "hidden=[16,16]",
            "-o", "epochs=2", "--set", "horizon=20", "--test-size", "8", "--json",
            "--select-best", "4", "--out", str(out)]
    outputs = []
    for command in (argv, ["eval", str(out), "--json"]):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert cli.main(command) == 0
        outputs.append(json.loads(stdout.getvalue()))
    trained, evaluated = outputs
    assert trained["n"] == 8
    assert evaluated["gap_percent"] == pytest.approx(trained["gap_percent"], rel=1e-12)
    assert (out / "checkpoints" / "ckpt.eqx").exists()
    assert json.loads((out / "config.json").read_text())["select_best"] == 4
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):  # another test-set size: other draws, same policy
        assert cli.main(["eval", str(out), "--json", "--test-size", "12"]) == 0
    larger = json.loads(stdout.getvalue())
    assert larger["n"] == 12 and larger["gap_percent"] != trained["gap_percent"]
    assert cli.main(["eval", str(tmp_path / "missing")]) == 2
    # --warmstart: Figs. 6 and 7 (TO of the test set from the policy and from zero controls).
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["eval", str(out), "--json", "--warmstart", "--max-iter", "50"]) == 0
    printed = json.loads(stdout.getvalue())
    study = json.loads((out / "warmstart.json").read_text())
    assert printed["warmstart_iterations_policy_max"] == max(study["iterations_policy"])
    assert printed["warmstart_iterations_zero_median"] == np.median(study["iterations_zero"])
    assert printed["gap_percent"] == pytest.approx(trained["gap_percent"], rel=1e-12)
    for name in ("warmstart_iterations.png", "policy_vs_to.png"):
        assert _png_ok(out / name), name
