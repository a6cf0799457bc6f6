"""How good is J*? The test set's optimum costs (rlto.evaluate.optimum_costs) found by each
part of the search, side by side on each problem's test set (M instances from TEST_SEED).

Every gap in the benchmarks is measured against J*, the lowest cost the TO solver found from
any warm start. A J* that is too high makes every policy look better than it is; this script
shows what each part of the search contributes:

- "first": zero controls (or the problem's initial_controls) and two random sequences;
- "heuristic": the same plus the problem's heuristic_controls (where it has them);
- "restarts": "first" plus the neighbour restarts (`neighbour_restarts`);
- "all": everything, what optimum_costs computes by default.

No cache is read or written. For each setting: mean J*, the instances whose J* is more than 1%
below the "first" one, and the wall time (JIT compilation included in the first setting of each
problem). Writes <out>/optimum.json, optimum.md and optimum.png (mean J* of each setting relative
to "first").

    python benchmarks/optimum.py                # pendulum, double_pendulum, lqr, ur5
    python benchmarks/optimum.py --problems lqr --m 8 --out /tmp/b    # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import rlto  # noqa: E402
from benchmarks import machine_info  # noqa: E402
from rlto.evaluate import optimum_costs, test_params  # noqa: E402

SETTINGS = {
    "first": {"heuristic": False, "sweeps": 0},
    "heuristic": {"heuristic": True, "sweeps": 0},
    "restarts": {"heuristic": False, "sweeps": None},
    "all": {"heuristic": True, "sweeps": None},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default="pendulum,double_pendulum,lqr,ur5",
                        help="comma-separated problem names (default: %(default)s)")
    parser.add_argument("--m", type=int, default=100, help="test set size (default: 100)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="output folder (default: benchmarks/results)")
    return parser.parse_args(argv)


def measure(problem_name: str, m: int) -> dict:
    """J* of the test set under each setting of SETTINGS: {setting: numbers}."""
    problem = rlto.make(problem_name)
    params = test_params(problem, m=m)
    rows, first = {}, None
    for name, setting in SETTINGS.items():
        if setting["heuristic"] and problem.heuristic_controls is None:
            continue  # the same search as its counterpart without
        searched = problem if setting["heuristic"] else dataclasses.replace(
            problem, heuristic_controls=None)
        sweeps = {} if setting["sweeps"] is None else {"sweeps": setting["sweeps"]}
        start = time.perf_counter()
        cost = optimum_costs(searched, params, cache_dir="", **sweeps)
        seconds = time.perf_counter() - start
        first = cost if first is None else first
        rows[name] = {
            "mean": float(np.mean(cost)),
            "median": float(np.median(cost)),
            "lowered_over_1_percent": int(np.sum(cost < first - 0.01 * np.abs(first))),
            "seconds": seconds,
            "cost": cost.tolist(),
        }
        print(f"{problem_name:16s} {name:9s} mean J* {rows[name]['mean']:.6g}  "
              f"lowered >1%: {rows[name]['lowered_over_1_percent']:3d}  {seconds:6.1f} s",
              flush=True)
    return rows


def markdown(result: dict) -> str:
    info = result["machine"]
    lines = [
        "# J* search: what each part finds",
        "",
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, JAX {info['jax']} on "
        f"{info['jax_device']}; {info['date']}. Command: `{result['command']}`.",
        "",
        f"Test sets of M = {result['m']} (TEST_SEED). first: zero controls (or the problem's "
        "initial_controls) and two random sequences; heuristic: plus the problem's "
        "heuristic_controls; restarts: first plus neighbour restarts; all: the default "
        "optimum_costs. Lowered: instances whose J* is more than 1% below first's. Seconds: "
        "wall time, compilation included in each problem's first row.",
        "",
        "| problem | setting | mean J* | vs first | median J* | lowered >1% | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for problem, rows in result["problems"].items():
        base = rows["first"]["mean"]
        for name, row in rows.items():
            lines.append(f"| {problem} | {name} | {row['mean']:.6g} | "
                         f"{row['mean'] / base:.3f} | {row['median']:.6g} | "
                         f"{row['lowered_over_1_percent']} | {row['seconds']:.1f} |")
    lines += ["", "All numbers, per instance: optimum.json; plot: optimum.png.", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(result["problems"])
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(problems), 3.6))
    width = 0.8 / len(SETTINGS)
    for k, name in enumerate(SETTINGS):
        xs, heights = [], []
        for i, problem in enumerate(problems):
            rows = result["problems"][problem]
            if name in rows:
                xs.append(i + (k - (len(SETTINGS) - 1) / 2) * width)
                heights.append(rows[name]["mean"] / rows["first"]["mean"])
        ax.bar(xs, heights, width, label=name)
    ax.set_xticks(range(len(problems)), problems)
    ax.set_ylabel("mean J* / mean J* of first starts")
    ax.set_title("J* found by each part of the search (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    names = [name for name in args.problems.split(",") if name]
    problems = {name: measure(name, args.m) for name in names}
    result = {"command": "benchmarks/optimum.py " + " ".join(sys.argv[1:] if argv is None
                                                             else argv),
              "m": args.m, "machine": machine_info.machine(), "problems": problems}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optimum.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "optimum.md").write_text(markdown(result))
    plot(result, out / "optimum.png")
    print(f"wrote {out / 'optimum.json'}, optimum.md, optimum.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
