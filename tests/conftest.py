"""Test-session hooks shared by every test module."""

import csv
import gc
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlto


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. One process runs the whole suite;
    without this it keeps every program any module compiled (about 6 GB of them by test_solver)
    and XLA's CPU compiler has crashed there (segfault or abort inside a compile), on a suite
    whose modules all pass alone. Recompiling what a later module needs again costs little:
    rlto's on-disk compilation cache serves it."""
    yield
    jax.clear_caches()
    gc.collect()


def _leaves(tree) -> list[np.ndarray]:
    """Every leaf (weights, normalisation, and any non-array field) as an array."""
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _metrics(result) -> list[dict[str, str]]:
    with open(Path(result.out) / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def assert_same_run():
    """check(a, b, columns): two rlto.train results have the same policy weights, bit for bit,
    and the same metrics.csv values in `columns` at every iteration."""

    def check(a, b, columns):
        for leaf_a, leaf_b in zip(_leaves(a.policy), _leaves(b.policy), strict=True):
            np.testing.assert_array_equal(leaf_a, leaf_b)
        rows_a, rows_b = _metrics(a), _metrics(b)
        for key in columns:
            assert [r[key] for r in rows_a] == [r[key] for r in rows_b], key

    return check


@pytest.fixture
def assert_resume_is_exact(tmp_path, assert_same_run):
    """check(problem, algo, iterations, columns, **options): a run of `iterations` equals one
    stopped after iterations - 1 and resumed from its checkpoint (assert_same_run); returns the
    resumed run's result."""

    def check(problem, algo, iterations, columns, **options):
        options = {"test_size": 8, "progress": False, **options}
        straight = rlto.train(problem, algo=algo, iterations=iterations,
                              out=tmp_path / "straight", **options)
        rlto.train(problem, algo=algo, iterations=iterations - 1, out=tmp_path / "resumed",
                   **options)
        resumed = rlto.train(problem, algo=algo, iterations=iterations,
                             out=tmp_path / "resumed", **options)
        assert_same_run(straight, resumed, columns)
        return resumed

    return check


@pytest.fixture(scope="session")
def exploding():
    """make(horizon=10): a scalar system multiplied by 1e60 per step, x_t = 1e60^t from x0 = 1,
    running cost x_t^2 + u^2, so the cost of step t = 3 (1e360) is the first number that
    overflows, and x_6 the first state."""

    def sample(key, n):
        return {"x0": jnp.ones((n, 1))}

    def make(horizon=10):
        return rlto.Problem(name="exploding", nx=1, nu=1, horizon=horizon, dt=1.0,
                            dynamics=lambda x, u, t, p: 1e60 * x + u,
                            running_cost=lambda x, u, t, p: x @ x + u @ u,
                            terminal_cost=lambda x, p: x @ x, u_lower=-1.0, u_upper=1.0,
                            sample=sample)

    return make


@pytest.fixture
def record_starts(monkeypatch):
    """record(module) -> list: module.solve_from_each, patched to run as before and append
    each call's (params, inits) to the returned list (which warm starts an algorithm's TO
    step was given)."""

    def record(module):
        seen = []
        original = module.solve_from_each

        def recording(problem, params, inits, config, margin=0.0):
            seen.append((params, inits))
            return original(problem, params, inits, config, margin)

        monkeypatch.setattr(module, "solve_from_each", recording)
        return seen

    return record
