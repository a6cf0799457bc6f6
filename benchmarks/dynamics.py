"""Batched rigid-body dynamics throughput on the UR5: rlto.robots vs adam-robotics vs Pinocchio.

For each batch size n, the same n random states (q, v, tau) (seed --seed; q, v uniform in
[-pi, pi] and [-2, 2], tau within the URDF torque limits) are evaluated, in one run, by

- rlto.robots (jit(vmap(...)) over the batch): forward dynamics `forward_dynamics`, its
  derivatives w.r.t. (q, v, tau) in closed form (`forward_dynamics_derivatives`, what the DDP
  solver calls through ur5's `Problem.dynamics_jacobians`) and by jacfwd through its custom
  JVP (what autodiff of a user's own dynamics built on `forward_dynamics` costs);
- adam-robotics' JAX backend, fixed base as qdd = M_jj^-1 (tau - h_j) from its floating-base
  mass matrix and bias force (base at rest), jit(vmap), and jacfwd of that (when adam imports);
- Pinocchio, one call per point in a Python loop: `pin.aba` and `pin.computeABADerivatives`
  (when pinocchio imports; on a GPU machine it may not, then those columns are skipped with a
  note).

Times are medians over --repeats calls after a warm-up call (the warm-up's extra time, mostly
compilation, is reported separately). Results are checked against each other (max |difference|)
so that a fast wrong answer shows. Writes <out>/dynamics.json (all numbers), dynamics.md
(tables) and dynamics.png (throughput vs n).

    python benchmarks/dynamics.py                       # full run (about a minute on CPU)
    python benchmarks/dynamics.py --quick --out /tmp/b  # smoke test (seconds)

The URDF comes from example-robot-data; elsewhere pass --urdf PATH (or set RLTO_ROBOTS_DIR).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import rlto  # noqa: E402, F401  (float64)
from benchmarks import machine_info  # noqa: E402
from rlto.robots import load_robot  # noqa: E402

COLUMNS = {
    "rlto_fd": "rlto forward dynamics",
    "rlto_deriv": "rlto derivatives (closed form)",
    "rlto_jacfwd_deriv": "rlto derivatives (jacfwd)",
    "adam_fd": "adam M^-1 (tau - h)",
    "adam_deriv": "adam derivatives (jacfwd)",
    "pin_fd": "Pinocchio aba, Python loop",
    "pin_deriv": "Pinocchio computeABADerivatives, Python loop",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None,
                        help="comma-separated batch sizes (default: 1,64,256,1024,4096)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per cell, the median is reported (default: 20)")
    parser.add_argument("--urdf", default="ur5", help="URDF path or rlto.robots short name")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random states")
    parser.add_argument("--no-adam", action="store_true", help="skip adam-robotics")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="output folder (default: benchmarks/results)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: sizes 1,64 and 3 repeats unless given")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = "1,64" if args.quick else "1,64,256,1024,4096"
    if args.repeats is None:
        args.repeats = 3 if args.quick else 20
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def states(robot, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n random (q, v, tau), each (n, nv), float64."""
    rng = np.random.default_rng(seed)
    limit = np.where(np.isfinite(robot.effort_limit), robot.effort_limit, 5.0)
    q = rng.uniform(-np.pi, np.pi, (n, robot.nv))
    v = rng.uniform(-2.0, 2.0, (n, robot.nv))
    return q, v, rng.uniform(-1.0, 1.0, (n, robot.nv)) * limit


def timed(call, repeats: int) -> tuple[float, float, object]:
    """(median seconds per call, extra seconds of the first call, last output)."""
    start = time.perf_counter()
    out = jax.block_until_ready(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return median, max(first - median, 0.0), out


def jax_functions(robot, adam: bool) -> tuple[dict, dict]:
    """Name -> single-instance f(q, v, tau), and name -> note for skipped columns."""
    fns = {"rlto_fd": robot.forward_dynamics}
    notes = {}
    if adam:
        try:
            fns["adam_fd"] = adam_forward_dynamics(robot)
        except Exception as err:  # adam absent or failing: report, do not fail the benchmark
            notes["adam"] = f"adam-robotics skipped: {err!r}"
    else:
        notes["adam"] = "adam-robotics skipped (--no-adam)"
    out = {}
    for name, fd in fns.items():
        out[name] = fd
        out[name.replace("_fd", "_deriv")] = jax.jacfwd(fd, argnums=(0, 1, 2))
    out["rlto_jacfwd_deriv"] = out["rlto_deriv"]
    out["rlto_deriv"] = lambda q, v, tau: robot.forward_dynamics_derivatives(q, v, tau)[1:]
    return out, notes


def adam_forward_dynamics(robot):
    """Fixed-base forward dynamics from adam's JAX backend: (q, v, tau) (nv,) -> qdd (nv,)."""
    from adam.jax import KinDynComputations

    gravity = jnp.array([*robot.gravity, 0.0, 0.0, 0.0])
    kin = KinDynComputations(robot.urdf_path, list(robot.joint_names), gravity=gravity)
    # jax 0.10.2: adam passes its factory's device to jnp constructors, which fails under vmap
    # ("'SingleDeviceSharding' has no 'spec'", DESIGN.md); no device means the default one.
    factory = getattr(kin.rbdalgos.math, "factory", None)
    if factory is not None and hasattr(factory, "_device"):
        factory._device = None
    base = jnp.eye(4)
    base_velocity = jnp.zeros(6)

    def fd(q, v, tau):
        mass = kin.mass_matrix(base, q)[6:, 6:]
        bias = kin.bias_force(base, q, base_velocity, v)[6:]
        return jnp.linalg.solve(mass, tau - bias)

    return fd


def run_jax(fns: dict, q, v, tau, repeats: int) -> dict:
    """Per column: seconds per batch, compile seconds, outputs (NumPy)."""
    out = {}
    args = tuple(jax.device_put(a) for a in (q, v, tau))
    for name, fn in fns.items():
        batched = jax.jit(jax.vmap(fn))
        seconds, compile_s, value = timed(lambda b=batched: b(*args), repeats)
        out[name] = {"seconds": seconds, "compile_seconds": compile_s,
                     "value": jax.tree.map(np.asarray, value)}
    return out


def run_pinocchio(pin, model, q, v, tau, repeats: int) -> dict:
    """aba and computeABADerivatives, one call per point in a Python loop."""
    data = model.createData()
    n = len(q)

    def fd():
        return np.stack([pin.aba(model, data, q[i], v[i], tau[i]).copy() for i in range(n)])

    def deriv():
        rows = []
        for i in range(n):
            pin.computeABADerivatives(model, data, q[i], v[i], tau[i])
            rows.append((data.ddq_dq.copy(), data.ddq_dv.copy(), data.Minv.copy()))
        return tuple(np.stack(parts) for parts in zip(*rows, strict=True))

    reps = max(1, min(repeats, int(2e4 // max(n, 1))))  # a few seconds at most per cell
    out = {}
    for name, call in (("pin_fd", fd), ("pin_deriv", deriv)):
        seconds, _, value = timed(call, reps)
        out[name] = {"seconds": seconds, "compile_seconds": 0.0, "value": value}
    return out


def max_difference(a, b) -> float:
    """max |a - b| over matching (tuples of) arrays."""
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    pairs = zip(a, b, strict=True)
    return float(max(np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in pairs))


def main(argv=None) -> int:
    args = parse_args(argv)
    robot = load_robot(args.urdf)
    fns, notes = jax_functions(robot, adam=not args.no_adam)
    try:
        import pinocchio as pin

        model = pin.buildModelFromUrdf(robot.urdf_path)
    except Exception as err:  # absent on some GPU machines: skip its columns, say so
        pin, model = None, None
        notes["pinocchio"] = f"Pinocchio columns skipped: {err!r}"
    rows = []
    for n in args.sizes:
        q, v, tau = states(robot, n, args.seed)
        cells = run_jax(fns, q, v, tau, args.repeats)
        if pin is not None:
            cells.update(run_pinocchio(pin, model, q, v, tau, args.repeats))
        reference = "pin" if pin is not None else "rlto"
        checks = {}
        for kind in ("fd", "deriv"):
            for name in COLUMNS:
                if name.endswith(kind) and name in cells and not name.startswith(reference):
                    checks[f"{name} vs {reference}_{kind}"] = max_difference(
                        cells[name]["value"], cells[f"{reference}_{kind}"]["value"]
                    )
        row = {"n": n, "max_abs_difference": checks}
        for name, cell in cells.items():
            row[name] = {"seconds": cell["seconds"], "compile_seconds": cell["compile_seconds"],
                         "points_per_second": n / cell["seconds"]}
        rows.append(row)
        print(f"n={n:5d} " + "  ".join(
            f"{name} {1e3 * cell['seconds']:.3f} ms" for name, cell in cells.items()
        ), flush=True)
    info = machine_info.machine()
    info["pinocchio"] = getattr(pin, "__version__", None) if pin is not None else None
    result = {"robot": robot.name, "urdf": robot.urdf_path, "nv": robot.nv,
              "repeats": args.repeats, "seed": args.seed, "machine": info, "notes": notes,
              "columns": {k: v for k, v in COLUMNS.items() if k in rows[0]}, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dynamics.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(out / "dynamics.md", result)
    write_plot(out / "dynamics.png", result)
    print(f"wrote {out / 'dynamics.json'}, dynamics.md, dynamics.png")
    return 0


def write_markdown(path: Path, result: dict) -> None:
    m = result["machine"]
    cols = list(result["columns"])
    lines = [
        f"# Batched dynamics throughput: {result['robot']} (nv={result['nv']})",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} CPUs, JAX {m['jax']} on "
        f"{m['jax_device']}, Pinocchio {m['pinocchio']}, load average at start "
        f"{m['load_average_start'][0]:.2f}. Median of {result['repeats']} calls after a warm-up; "
        "`benchmarks/dynamics.py`.",
        "",
        "Time per batch (ms); in brackets, thousands of points per second.",
        "",
        "| n | " + " | ".join(result["columns"][c] for c in cols) + " |",
        "| --- |" + " --- |" * len(cols),
    ]
    for row in result["rows"]:
        cells = [
            f"{1e3 * row[c]['seconds']:.3f} ({row[c]['points_per_second'] / 1e3:.0f}k)"
            if c in row else "n/a" for c in cols
        ]
        lines.append(f"| {row['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Agreement (max |difference| over the batch, largest over n):", ""]
    keys = sorted({k for row in result["rows"] for k in row["max_abs_difference"]})
    if not keys:
        lines.append("- no second implementation ran here to compare with")
    for key in keys:
        worst = max(row["max_abs_difference"].get(key, 0.0) for row in result["rows"])
        lines.append(f"- {key}: {worst:.1e}")
    compile_s = {c: max(row[c]["compile_seconds"] for row in result["rows"]) for c in cols
                 if c.startswith(("rlto", "adam"))}
    lines += ["", "First-call overhead (compilation), largest over n: "
              + ", ".join(f"{result['columns'][c]} {s:.1f} s" for c, s in compile_s.items())]
    for note in result["notes"].values():
        lines += ["", f"Note: {note}"]
    path.write_text("\n".join(lines) + "\n")


def write_plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, kind, title in ((axes[0], "fd", "forward dynamics"),
                            (axes[1], "deriv", "derivatives d qdd / d(q, v, tau)")):
        for col, label in result["columns"].items():
            if not col.endswith(kind):
                continue
            ns = [row["n"] for row in result["rows"] if col in row]
            ys = [row[col]["points_per_second"] for row in result["rows"] if col in row]
            ax.loglog(ns, ys, marker="o", label=label)
        ax.set_title(f"{result['robot']}: {title}")
        ax.set_xlabel("batch size n")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("points per second")
    m = result["machine"]
    fig.suptitle(f"{m['jax_device']}, {m['cpu_count']} CPUs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
