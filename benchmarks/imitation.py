"""How well can a policy imitate J*? The ceiling of TO imitation on a problem's test set.

Every TO-supervised algorithm (PDDP, PLAL, DPL, ...) regresses a policy onto TO solutions and is
scored by the closed-loop cost of that policy. This script removes everything but the fit: it
takes the test set's own best solutions (J*'s controls, `rlto.evaluate.optimum_solutions`), the
TO feedback gains K at that optimum, fits the paper's policy class to them (eq. 7, plus the
Sobolev term of eq. 8 or its stochastic form), and rolls the policy out in closed loop on those
same instances. No generalisation is asked for, so what gap remains is what the policy class,
the loss and the optimiser leave: the closed loop drifting off trajectories it was fitted on
(unstable optima), or a policy that cannot take a discontinuous optimal control's jump (two
neighbouring starts whose optima take different routes). An algorithm's test gap cannot be
expected below this one at the same width and loss.

After every `--epochs` epochs it reports the mean gap (mean policy cost over mean J*), the
median instance's gap, the share of instances within 1% and 10% of their J*, and the worst
instances (their x0, J* and policy cost). Writes <out>/imitation_<problem>.json, .md and .png
(gaps against epochs; each instance's policy cost against its J*).

    python benchmarks/imitation.py --problem pendulum                     # 512x512, 6 x 100 epochs
    python benchmarks/imitation.py --problem lqr --quick --out /tmp/b     # smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import rlto  # noqa: E402
from benchmarks import machine_info  # noqa: E402
from rlto.algorithms.common import fit_policy, init_optimizer, new_policy, supervised_rows  # noqa: E402
from rlto.algorithms.pddp import PddpConfig, supervised_loss  # noqa: E402
from rlto.evaluate import evaluate, nan_as_inf, optimum_solutions, test_params  # noqa: E402
from rlto.nets import set_normalization, with_steps  # noqa: E402

WORST = 5
"""Instances listed per evaluation, costliest relative to their J* first."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", default="pendulum", help="built-in problem")
    parser.add_argument("--m", type=int, default=100, help="test set size (default: 100)")
    parser.add_argument("--hidden", default="512,512", help="hidden widths (default: 512,512)")
    parser.add_argument("--activation", default="relu", help="hidden activation (default: relu)")
    parser.add_argument("--sobolev", default="full", choices=("none", "full", "stochastic"))
    parser.add_argument("--sobolev-weight", type=float, default=1e-3)
    parser.add_argument("--gain-cap", type=float, default=float("inf"),
                        help="sobolev_gain_cap: gains above this norm count relative to their "
                             "norm (default: inf, the paper's term)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs between evaluations")
    parser.add_argument("--evaluations", type=int, default=6)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--half-life", type=float, default=2e4,
                        help="Adam steps over which the step size halves (default: 2e4)")
    parser.add_argument("--seed", type=int, default=0, help="policy initialisation and batches")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 8 instances, 32x32, 2 evaluations of 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.m, args.hidden, args.epochs, args.evaluations = 8, "32,32", 2, 2
    return args


def optimal_data(problem, params) -> tuple[np.ndarray, object]:
    """J* (n,) and the TO solution at J*'s controls (a few DDP iterations from them, for the
    states and gains K; the controls barely move, they are the optimum)."""
    optimum, us = optimum_solutions(problem, params)
    solution = rlto.solve(problem, params, init=us, max_iter=5, tol=1e-12)
    return optimum, solution


def scores(problem, policy, params, optimum: np.ndarray) -> dict:
    """The closed-loop numbers of policy on the instances params against their J* (the
    metrics of `rlto.evaluate.evaluate`'s Report, J* given)."""
    report = evaluate(problem, policy, params, optimum=optimum)
    gaps = nan_as_inf(report.instance_gaps_percent)
    worst = np.argsort(-gaps, kind="stable")[:WORST]
    x0 = np.asarray(params["x0"])
    return {
        "mean_gap_percent": report.gap_percent,
        "median_instance_gap_percent": report.median_gap_percent,
        "within_1_percent": report.within_1_percent,
        "within_10_percent": float(np.mean(gaps <= 10.0)),
        # Report.precision: the median distance of x_T's position to the target (None without
        # a task space)
        "median_final_error": None if report.final_error is None else report.precision,
        "worst": [{"index": int(i), "x0": x0[i].tolist(), "optimum": float(optimum[i]),
                   "policy_cost": float(report.policy_cost[i])} for i in worst],
        "policy_cost": report.policy_cost.tolist(),
    }


def measure(args) -> dict:
    problem = rlto.make(args.problem)
    params = test_params(problem, m=args.m)
    n, T = args.m, problem.horizon
    start = time.perf_counter()
    optimum, solution = optimal_data(problem, params)
    print(f"{args.problem}: mean J* {optimum.mean():.6g} ({time.perf_counter() - start:.0f} s)",
          flush=True)
    hidden = tuple(int(w) for w in args.hidden.split(",") if w)
    config = PddpConfig(hidden=hidden, activation=args.activation, sobolev=args.sobolev,
                        sobolev_weight=args.sobolev_weight,
                        sobolev_gain_cap=args.gain_cap, epochs=args.epochs,
                        learning_rate=args.learning_rate,
                        learning_rate_half_life=args.half_life)
    init_key, key = jax.random.split(jax.random.key(args.seed))
    policy = new_policy(problem, config, init_key)
    policy = set_normalization(policy, solution.xs[:, :T], with_steps(params, n, T))
    opt_state = init_optimizer(policy, config)
    data = supervised_rows(problem, policy, solution.xs, solution.us, params,
                           np.ones(n, dtype=bool), K=solution.K)
    evaluations = []
    for k in range(1, args.evaluations + 1):
        key, fit_key = jax.random.split(key)
        start = time.perf_counter()
        policy, opt_state, parts = fit_policy(policy, opt_state, data, fit_key, supervised_loss,
                                              config)
        fit_seconds = time.perf_counter() - start
        row = {"epochs": k * args.epochs, "fit_seconds": fit_seconds,
               "regression_loss": float(parts[0]), "sobolev_loss": float(parts[1]),
               **scores(problem, policy, params, optimum)}
        evaluations.append(row)
        print(f"  epoch {row['epochs']:5d}: gap {row['mean_gap_percent']:8.3f}%  median "
              f"instance {row['median_instance_gap_percent']:7.3f}%  within 1% "
              f"{row['within_1_percent']:.2f}  within 10% {row['within_10_percent']:.2f}  "
              f"losses {row['regression_loss']:.3g} / {row['sobolev_loss']:.3g}"
              + ("" if row["median_final_error"] is None
                 else f"  median final error {row['median_final_error']:.3g} m"), flush=True)
    return {"problem": args.problem, "m": n, "optimum": optimum.tolist(),
            "config": {"hidden": list(hidden), "activation": args.activation,
                       "sobolev": args.sobolev,
                       "sobolev_weight": args.sobolev_weight,
                       "sobolev_gain_cap": args.gain_cap if np.isfinite(args.gain_cap) else None,
                       "epochs": args.epochs,
                       "learning_rate": args.learning_rate, "half_life": args.half_life,
                       "batch_size": config.batch_size, "seed": args.seed},
            "evaluations": evaluations}


def markdown(result: dict) -> str:
    info, config = result["machine"], result["config"]
    lines = [
        f"# Imitation ceiling on {result['problem']}: a policy fitted to the test set's own J*",
        "",
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, JAX {info['jax']} on "
        f"{info['jax_device']}; {info['date']}. Command: `{result['command']}`.",
        "",
        f"M = {result['m']} test instances, mean J* {np.mean(result['optimum']):.6g}. Policy "
        f"{config['hidden']} ({config.get('activation', 'relu')}; time input as the algorithms' "
        "default), Sobolev "
        f"{config['sobolev']} (weight {config['sobolev_weight']}, gain cap "
        f"{config.get('sobolev_gain_cap') or 'none'}), Adam {config['learning_rate']} "
        f"halving every {config['half_life']:g} steps, batches of {config['batch_size']}; fitted "
        "to the instances' optimal (x, u, K) and rolled out on the same instances. Gap: mean "
        "policy cost over mean J*; within X%: share of instances whose policy cost is within X% "
        "of their own J*.",
        "",
        "| epochs | gap % | median instance gap % | within 1% | within 10% | median final "
        "error m | regression loss | Sobolev loss | fit s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["evaluations"]:
        error = row.get("median_final_error")  # None without a task space (or from older runs)
        lines.append(f"| {row['epochs']} | {row['mean_gap_percent']:.3g} | "
                     f"{row['median_instance_gap_percent']:.3g} | {row['within_1_percent']:.2f} | "
                     f"{row['within_10_percent']:.2f} | "
                     f"{'-' if error is None else format(error, '.3g')} | "
                     f"{row['regression_loss']:.3g} | "
                     f"{row['sobolev_loss']:.3g} | {row['fit_seconds']:.0f} |")
    last = result["evaluations"][-1]
    lines += ["", "Costliest instances after the last fit (policy cost over J*):", "",
              "| instance | x0 | J* | policy cost | ratio |", "| --- | --- | --- | --- | --- |"]
    for entry in last["worst"]:
        x0 = ", ".join(f"{v:+.3f}" for v in entry["x0"])
        lines.append(f"| {entry['index']} | ({x0}) | {entry['optimum']:.4g} | "
                     f"{entry['policy_cost']:.4g} | "
                     f"{entry['policy_cost'] / entry['optimum']:.3g} |")
    lines += ["", f"All numbers: imitation_{result['problem']}.json; plot: "
              f"imitation_{result['problem']}.png.", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["evaluations"]
    epochs = [row["epochs"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [max(row["mean_gap_percent"], 1e-4) for row in rows], "o-",
              label="gap (mean cost / mean J*)")
    left.plot(epochs, [max(row["median_instance_gap_percent"], 1e-4) for row in rows], "s-",
              label="median instance")
    left.axhline(1.0, color="grey", lw=0.8, ls="--")
    left.set_yscale("log")
    left.set_xlabel("epochs")
    left.set_ylabel("gap to J* (%)")
    left.set_title(f"{result['problem']}: policy fitted to the test set's J*")
    left.legend(fontsize=8)
    optimum = np.asarray(result["optimum"])
    cost = np.asarray(rows[-1]["policy_cost"])
    right.scatter(optimum, cost, s=12)
    ends = [np.nanmin(optimum), np.nanmax(optimum)]
    right.plot(ends, ends, color="grey", lw=0.8)
    if np.all(optimum > 0) and np.all(cost > 0):
        right.set_xscale("log")
        right.set_yscale("log")
    right.set_xlabel("J* of the instance")
    right.set_ylabel(f"policy cost after {epochs[-1]} epochs")
    right.set_title("each instance (the line: equal)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = measure(args)
    result = {"command": "benchmarks/imitation.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "machine": machine_info.machine(), **result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"imitation_{args.problem}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
