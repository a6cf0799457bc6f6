"""Run directory: resolved config, CSV metrics, atomic checkpoints, resume, learning curve.

    run = RunDir("runs/plal-pendulum-0")
    run.write_config({"algo": "plal", "options": options_dataclass, "seed": 0})
    restored = run.load_checkpoint(like=state)        # None on a fresh run
    state, step = restored if restored else (state, 0)
    for step in range(step, steps):
        ...
        run.log({"step": step, "sim_calls": calls, "test_gap": gap})
        if step % 10 == 0:
            run.save_checkpoint(state, step)
    run.plot_learning_curve("sim_calls", ("test_gap",))

Layout of a run directory:

    config.json            the resolved config (strict JSON; dataclasses as dicts)
    metrics.csv            one row per log() call; header = the union of the keys logged
    metrics.discarded.jsonl  rows logged after the checkpoint a run resumed from (kept, not lost)
    checkpoints/ckpt.eqx   the last checkpoint's leaves (equinox.tree_serialise_leaves)
    checkpoints/ckpt.json  its step, the number of metrics rows at save time, and a sha256 of
                           ckpt.eqx that ties the pair together
    learning_curve.png

Resume semantics: a checkpoint records how many metrics rows had been logged when it was saved;
`load_checkpoint` (resume=True) moves the rows logged after it to metrics.discarded.jsonl, so
that the resumed run re-logs those steps once: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import enum
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

_CKPT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint on disk cannot be trusted; the message says which files and what to do."""


# ---------------------------------------------------------------------------------------------
# JSON and CSV values.


def to_jsonable(obj: Any) -> Any:
    """`obj` as strict JSON data: dataclasses and mappings as dicts, sequences and arrays as
    lists, NumPy/JAX scalars as numbers, non-finite floats as the strings "nan", "inf", "-inf",
    enums by name, paths as strings, functions by qualified name, anything else by repr."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else repr(float(obj))
    if isinstance(obj, np.generic | np.ndarray | jax.Array):
        if jnp.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if callable(obj):
        module = getattr(obj, "__module__", None)
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if name:
            return f"{module}.{name}" if module else name
    return repr(obj)


def _csv_value(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        array = np.asarray(value)
        if array.size != 1:
            raise ValueError(f"metrics values must be scalars; got an array of shape {array.shape}")
        return array.item()
    return value


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# PRNG keys in checkpoints: typed keys are stored as their raw data.


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array | jax.ShapeDtypeStruct) and jnp.issubdtype(
        x.dtype, jax.dtypes.prng_key
    )


def _key_impl(x: Any):
    if isinstance(x, jax.Array):
        return jax.random.key_impl(x)
    return x.dtype._impl  # a ShapeDtypeStruct of keys, e.g. from eqx.filter_eval_shape


class RunDir:
    """A run directory (created if absent, reopened if present). See the module docstring.

    path: the directory.
    columns: metrics.csv columns to put first, in this order; keys logged later that are not
        among them are appended as new columns (the file is rewritten once per new key).
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] = ()):
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        self._initial_columns = [str(c) for c in columns]
        self._columns: list[str] = []
        self._rows = 0
        if os.path.exists(self.metrics_path):
            with open(self.metrics_path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                self._columns = list(header or [])
                self._rows = sum(1 for _ in reader)

    # Paths.
    @property
    def config_path(self) -> str:
        return os.path.join(self.path, "config.json")

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.path, "metrics.csv")

    @property
    def discarded_path(self) -> str:
        return os.path.join(self.path, "metrics.discarded.jsonl")

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.path, "checkpoints")

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.checkpoint_dir, "ckpt.eqx")

    @property
    def checkpoint_meta_path(self) -> str:
        return os.path.join(self.checkpoint_dir, "ckpt.json")

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    # Config.
    def write_config(self, config: Mapping[str, Any] | Any) -> str:
        """Write config.json (atomically): a dict or dataclass, through to_jsonable. Returns
        the path."""
        text = json.dumps(to_jsonable(config), indent=2, sort_keys=False, allow_nan=False)
        _atomic_write(self.config_path, (text + "\n").encode())
        return self.config_path

    def read_config(self) -> dict[str, Any]:
        with open(self.config_path) as f:
            return json.load(f)

    # Metrics.
    @property
    def num_rows(self) -> int:
        """Rows in metrics.csv."""
        return self._rows

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row to metrics.csv (scalars: numbers, strings, bools, 1-element arrays).

        The header is `columns` then the first row's keys; a later row with new keys extends
        the header (the file is rewritten atomically); missing keys are left empty (None)."""
        row = {str(k): _csv_value(v) for k, v in row.items()}
        new = [k for k in row if k not in self._columns]
        if not self._columns:
            extra = [k for k in row if k not in self._initial_columns]
            self._write_rows(self._initial_columns + extra, [row])
            self._rows = 1
            return
        if new:
            rows = self.read_metrics()
            rows.append(row)
            self._write_rows(self._columns + new, rows)
        else:
            with open(self.metrics_path, "a", newline="") as f:
                csv.DictWriter(f, self._columns).writerow(row)
        self._rows += 1

    def _write_rows(self, columns: list[str], rows: Sequence[Mapping[str, Any]]) -> None:
        tmp = f"{self.metrics_path}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        os.replace(tmp, self.metrics_path)
        self._columns = list(columns)
        self._rows = len(rows)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of metrics.csv as dicts; numbers parsed back (int, then float), empty cells
        None, "True"/"False" as bools."""
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path, newline="") as f:
            return [{k: _parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]

    def _truncate_metrics(self, keep: int) -> int:
        """Keep the first `keep` rows; append the others to metrics.discarded.jsonl. Returns how
        many rows were moved."""
        if self._rows <= keep:
            return 0
        rows = self.read_metrics()
        dropped = rows[keep:]
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with open(self.discarded_path, "a") as f:
            for r in dropped:
                f.write(json.dumps({"discarded_at": stamp, **to_jsonable(r)}) + "\n")
        self._write_rows(self._columns, rows[:keep])
        return len(dropped)

    # Checkpoints.
    def save_checkpoint(self, state: Any, step: int) -> str:
        """Save pytree `state` as of `step`, replacing the previous checkpoint atomically.

        state: any pytree of equinox modules, optax states, JAX arrays (typed PRNG keys
        included), NumPy arrays and Python scalars. Non-array leaves (activation functions,
        ...) are not saved: they come from the template given to load_checkpoint.
        Both files are written to *.tmp first, then moved into place, ckpt.eqx before
        ckpt.json; the sha256 in ckpt.json ties the pair, so an interruption at any point
        leaves either the previous checkpoint or the new one, never a mix. Returns the path.
        """
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        data = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)
        tmp_eqx = f"{self.checkpoint_path}.tmp"
        with open(tmp_eqx, "wb") as f:
            eqx.tree_serialise_leaves(f, data)
            f.flush()
            os.fsync(f.fileno())
        meta = {
            "format": _CKPT_FORMAT,
            "step": int(step),
            "metrics_rows": self._rows,
            "sha256": _sha256(tmp_eqx),
            "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        tmp_json = f"{self.checkpoint_meta_path}.tmp"
        with open(tmp_json, "w") as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_eqx, self.checkpoint_path)
        os.replace(tmp_json, self.checkpoint_meta_path)
        return self.checkpoint_path

    def checkpoint_info(self) -> dict[str, Any] | None:
        """The last complete checkpoint's metadata (step, metrics_rows, sha256, saved_at), or
        None when there is none. Completes a save that was interrupted between its two moves;
        raises CheckpointError when ckpt.eqx matches no metadata."""
        meta_path, tmp_meta = self.checkpoint_meta_path, f"{self.checkpoint_meta_path}.tmp"
        if not os.path.exists(self.checkpoint_path):
            if os.path.exists(meta_path):
                raise CheckpointError(
                    f"{meta_path} exists but {self.checkpoint_path} is missing; restore it or "
                    "delete the checkpoints folder to start afresh."
                )
            return None
        digest = _sha256(self.checkpoint_path)
        for candidate in (meta_path, tmp_meta):
            meta = _read_json(candidate)
            if meta is not None and meta.get("sha256") == digest:
                if candidate == tmp_meta:  # the save stopped after moving ckpt.eqx: finish it
                    os.replace(tmp_meta, meta_path)
                return meta
        raise CheckpointError(
            f"{self.checkpoint_path} matches neither {meta_path} nor a pending {tmp_meta} "
            "(sha256 differs): it was changed outside RunDir. Delete the checkpoints folder to "
            "start afresh."
        )

    def load_checkpoint(self, like: Any, resume: bool = True) -> tuple[Any, int] | None:
        """The last checkpoint as (state, step), or None when there is none.

        like: a template pytree of the same structure, shapes and dtypes (e.g. the freshly
            initialised state, or eqx.filter_eval_shape of its constructor); typed PRNG keys in
            it come back as typed keys of the same implementation.
        resume: the caller continues the run from here: rows logged after the checkpoint (or
            all rows, when there is no checkpoint) move from metrics.csv to
            metrics.discarded.jsonl. Pass False to only read.
        Stray *.tmp files of an interrupted save are ignored (the next save overwrites them).
        """
        meta = self.checkpoint_info()
        if meta is None:
            if resume:
                self._truncate_metrics(0)
            return None
        template = jax.tree.map(
            lambda x: jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x, like
        )
        with open(self.checkpoint_path, "rb") as f:
            data = eqx.tree_deserialise_leaves(f, template)
        state = jax.tree.map(
            lambda d, x: jax.random.wrap_key_data(d, impl=_key_impl(x)) if _is_key(x) else d,
            data,
            like,
        )
        if resume:
            self._truncate_metrics(int(meta["metrics_rows"]))
        return state, int(meta["step"])

    # Plots.
    def plot_learning_curve(
        self,
        x_key: str = "sim_calls",
        y_keys: Sequence[str] = ("test_gap",),
        path: str | os.PathLike | None = None,
    ) -> str:
        """Plot each y key against x_key from metrics.csv (one panel per key; log y where all
        its values are positive) into learning_curve.png (or `path`). Rows lacking a value are
        skipped per key; keys absent from every row are left out. Returns the PNG's path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = self.read_metrics()
        if isinstance(y_keys, str):
            y_keys = (y_keys,)
        present = [k for k in y_keys if any(_is_number(r.get(k)) for r in rows)]
        if not rows or not any(_is_number(r.get(x_key)) for r in rows) or not present:
            columns = sorted({k for r in rows for k in r})
            raise ValueError(
                f"{self.metrics_path}: nothing to plot for x={x_key!r}, y={list(y_keys)}; the "
                f"logged columns with values are {columns}."
            )
        fig = Figure(figsize=(4.5 * len(present), 3.5), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(present)))
        for ax, key in zip(axes, present, strict=True):
            points = [
                (r[x_key], r[key]) for r in rows if _is_number(r.get(x_key)) and _is_number(r[key])
            ]
            xs, ys = (np.asarray(v, dtype=float) for v in zip(*points, strict=True))
            ax.plot(xs, ys, marker="." if len(xs) < 50 else None)
            finite = ys[np.isfinite(ys)]
            if finite.size and np.all(finite > 0):
                ax.set_yscale("log")
            ax.set_xlabel(x_key)
            ax.set_ylabel(key)
            ax.grid(True, alpha=0.3)
        fig.suptitle(os.path.basename(os.path.normpath(self.path)))
        FigureCanvasAgg(fig)
        out = os.fspath(path) if path is not None else os.path.join(self.path, "learning_curve.png")
        fig.savefig(out, dpi=120)
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
