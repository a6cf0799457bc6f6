"""rlto.runs.RunDir: config round-trip, metrics append/read, checkpoint round-trip (equinox MLP,
optax adam state, PRNG key), resume without lost or duplicated rows, interrupted saves, plot."""

import dataclasses
import json
import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rlto.runs as runs
from rlto.problems.lqr import LqrConfig
from rlto.runs import CheckpointError, RunDir


@dataclasses.dataclass(frozen=True)
class Options:
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    clip: float = float("inf")


def make_state(seed: int):
    key = jax.random.key(seed)
    model = eqx.nn.MLP(4, 2, 16, 2, key=key)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    return {
        "model": model,
        "opt_state": opt_state,
        "key": jax.random.fold_in(key, 7),
        "legacy_key": jax.random.PRNGKey(seed),
        "buffer": np.arange(6.0).reshape(2, 3) + seed,
        "sim_calls": 1000 + seed,
        "best": 0.5 + seed,
    }


@eqx.filter_jit
def _adam_step(model, opt_state, key):
    grads = eqx.filter_grad(lambda m: jnp.sum(m(jnp.ones(4)) ** 2))(model)
    updates, opt_state = optax.adam(1e-3).update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state, jax.random.split(key)[0]


def train_step(state):
    """One adam step on a dummy loss: changes the model, optimizer state and key."""
    model, opt_state, key = _adam_step(state["model"], state["opt_state"], state["key"])
    return {**state, "model": model, "opt_state": opt_state, "key": key}


def assert_same_leaves(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        if isinstance(x, np.ndarray | jax.Array):
            assert type(x) is type(y) and x.dtype == y.dtype
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert x == y or x is y


def test_config_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    config = {
        "algo": "plal",
        "seed": 0,
        "options": Options(),
        "problem": LqrConfig(u_max=float("inf")),
        "weights": np.array([1.0, 2.0]),
        "scale": np.float32(0.5),
        "out": tmp_path / "run",
    }
    run.write_config(config)
    text = (tmp_path / "run" / "config.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    read = run.read_config()
    assert read["options"] == {"lr": 1e-3, "hidden": [64, 64], "clip": "inf"}
    assert read["problem"]["u_max"] == "inf" and read["problem"]["horizon"] == 50
    assert read["weights"] == [1.0, 2.0] and read["scale"] == 0.5
    assert read["out"] == str(tmp_path / "run")
    assert RunDir(tmp_path / "run").read_config() == read


def test_metrics_append_and_new_columns(tmp_path):
    run = RunDir(tmp_path, columns=("step", "sim_calls"))
    run.log({"step": 0, "sim_calls": 10, "loss": np.float64(1.5)})
    run.log({"step": 1, "sim_calls": 20, "loss": jnp.asarray(0.25)})
    run.log({"step": 2, "sim_calls": 30, "loss": 0.125, "test_gap": 12.5, "note": "eval"})
    run.log({"sim_calls": 40, "step": 3, "converged": True})
    rows = run.read_metrics()
    assert rows == [
        {
            "step": 0,
            "sim_calls": 10,
            "loss": 1.5,
            "test_gap": None,
            "note": None,
            "converged": None,
        },
        {
            "step": 1,
            "sim_calls": 20,
            "loss": 0.25,
            "test_gap": None,
            "note": None,
            "converged": None,
        },
        {
            "step": 2,
            "sim_calls": 30,
            "loss": 0.125,
            "test_gap": 12.5,
            "note": "eval",
            "converged": None,
        },
        {
            "step": 3,
            "sim_calls": 40,
            "loss": None,
            "test_gap": None,
            "note": None,
            "converged": True,
        },
    ]
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "step,sim_calls,loss,test_gap,note,converged"
    # Reopening continues the same file.
    again = RunDir(tmp_path)
    assert again.num_rows == 4
    again.log({"step": 4, "sim_calls": 50})
    assert [r["step"] for r in again.read_metrics()] == [0, 1, 2, 3, 4]
    # Floats round-trip exactly.
    value = 0.1 + 0.2
    again.log({"step": 5, "loss": value})
    assert again.read_metrics()[-1]["loss"] == value
    with pytest.raises(ValueError, match="scalars"):
        again.log({"step": 6, "loss": np.ones(3)})


def test_checkpoint_round_trip(tmp_path):
    run = RunDir(tmp_path)
    state = train_step(make_state(0))
    run.save_checkpoint(state, step=42)
    loaded, step = RunDir(tmp_path).load_checkpoint(like=make_state(1))
    assert step == 42
    assert_same_leaves(loaded, state)
    # The loaded state trains on exactly like the saved one.
    assert_same_leaves(train_step(loaded), train_step(state))
    # A shape-only template (eqx.filter_eval_shape) works too.
    shapes = eqx.filter_eval_shape(make_state, 1)
    shapes = {**shapes, "buffer": np.zeros((2, 3)), "sim_calls": 0, "best": 0.0}
    loaded, _ = run.load_checkpoint(like=shapes, resume=False)
    assert_same_leaves(loaded, state)


def test_no_checkpoint_returns_none(tmp_path):
    assert RunDir(tmp_path).load_checkpoint(like=make_state(0)) is None


def test_resume_truncates_rows_after_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    state = make_state(0)
    for step in range(5):
        state = train_step(state)
        run.log({"step": step, "sim_calls": 100 * step})
        if step == 2:
            run.save_checkpoint(state, step)
    # The process dies after logging steps 3 and 4; a new one resumes.
    resumed = RunDir(tmp_path)
    restored, saved_step = resumed.load_checkpoint(like=make_state(0))
    assert saved_step == 2
    assert [r["step"] for r in resumed.read_metrics()] == [0, 1, 2]
    for step in range(saved_step + 1, 5):
        restored = train_step(restored)
        resumed.log({"step": step, "sim_calls": 100 * step})
    assert [r["step"] for r in resumed.read_metrics()] == [0, 1, 2, 3, 4]
    assert_same_leaves(restored, state)  # same numbers as the uninterrupted run
    discarded = [json.loads(line) for line in (tmp_path / "metrics.discarded.jsonl").open()]
    assert [r["step"] for r in discarded] == [3, 4]
    # Reading without resuming leaves metrics alone.
    RunDir(tmp_path).load_checkpoint(like=make_state(0), resume=False)
    assert len(RunDir(tmp_path).read_metrics()) == 5


def test_interrupted_save_keeps_last_good_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    good = make_state(0)
    run.save_checkpoint(good, step=10)
    # A save that died while writing: stray, half-written temporary files.
    ckpt = tmp_path / "checkpoints"
    (ckpt / "ckpt.eqx.tmp").write_bytes(b"\x93NUMPY half a file")
    (ckpt / "ckpt.json.tmp").write_text('{"step": 11, "sha256": "00"')
    loaded, step = RunDir(tmp_path).load_checkpoint(like=make_state(1))
    assert step == 10
    assert_same_leaves(loaded, good)
    # The next save overwrites the strays.
    newer = train_step(good)
    run.save_checkpoint(newer, step=11)
    loaded, step = run.load_checkpoint(like=good)
    assert step == 11 and not any(p.suffix == ".tmp" for p in ckpt.iterdir())
    assert_same_leaves(loaded, newer)


def test_save_interrupted_between_moves_is_completed(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    run.save_checkpoint(make_state(0), step=1)
    newer = train_step(make_state(0))
    real_replace = os.replace

    def die_before_metadata(src, dst):
        if str(dst).endswith("ckpt.json"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(runs.os, "replace", die_before_metadata)
    with pytest.raises(KeyboardInterrupt):
        run.save_checkpoint(newer, step=2)
    monkeypatch.undo()
    loaded, step = RunDir(tmp_path).load_checkpoint(like=make_state(0))
    assert step == 2
    assert_same_leaves(loaded, newer)


def test_tampered_checkpoint_is_refused(tmp_path):
    run = RunDir(tmp_path)
    run.save_checkpoint(make_state(0), step=1)
    path = tmp_path / "checkpoints" / "ckpt.eqx"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="sha256"):
        run.load_checkpoint(like=make_state(0))


def test_learning_curve_png(tmp_path):
    run = RunDir(tmp_path)
    for i in range(20):
        row = {"step": i, "sim_calls": 1000 * (i + 1), "test_gap": 100.0 * math.exp(-0.2 * i)}
        if i % 5 == 0:
            row["loss"] = -1.0 + 0.1 * i  # negative values: a linear axis
        run.log(row)
    path = run.plot_learning_curve("sim_calls", ("test_gap", "loss", "absent"))
    assert path == os.path.join(str(tmp_path), "learning_curve.png")
    data = open(path, "rb").read()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
    with pytest.raises(ValueError, match="logged columns"):
        run.plot_learning_curve("sim_calls", ("absent",))
