"""Sample efficiency against the model-free baselines (seed 002, Figs. 2-3), across comparisons.

Model-free learners need orders of magnitude more simulator calls than the TO-supervised ones,
and run far slower per call (SAC: 50-100 calls a second here), so one `rlto compare` budget
cannot suit both: the TO-supervised runs would stop long before the baselines converge, or the
baselines would be cut off early. This script merges the results of several `rlto compare`
runs on one problem (each variant from exactly one of them, each with its own budget) and
writes, for every (model-free baseline, other variant) pair, the calls the variant needs to
reach the baseline's final gap and their ratio, and the variant's best gap within a tenth of
the baseline's calls against the baseline's best (rlto.compare.efficiency_table), next to
every variant's own table row and the curves of all of them on common axes.

    rlto compare lqr --algos pddp+s,plal+s --seeds 3 --budget-calls 1000000 --out /tmp/lqr_mb
    rlto compare lqr --algos ppo --seeds 3 --budget-calls 1000000 --jobs 1 --out /tmp/lqr_ppo
    rlto compare lqr --algos pddp+s --seeds 3 --budget-calls 300000 -o n_problems=8 \\
        --out /tmp/lqr_n8
    python benchmarks/efficiency.py /tmp/lqr_mb/compare_lqr.json /tmp/lqr_ppo/compare_lqr.json \\
        /tmp/lqr_n8/compare_lqr.json:n8 --out benchmarks/results

writes <out>/efficiency_<problem>.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from rlto.compare import (  # noqa: E402
    TABLE_HEADER,
    WITHIN_NOTE,
    add_curves,
    budget_text,
    efficiency_lines,
    efficiency_table,
    jsonable,
    markdown_table,
    table_rows,
    write_curves_plot,
)
from rlto.problem import ProblemError  # noqa: E402


def merge(results: Sequence[Mapping[str, Any]], sources: Sequence[str],
          grid_points: int = 120, suffixes: Sequence[str] | None = None) -> dict[str, Any]:
    """One result dict from several `rlto compare` results on the same problem: every variant
    with its source's settings under "source"; common curve grids recomputed. suffixes, one per
    result ("" for none): appended to its variants' names, so that the same variant under
    other options (e.g. -o n_problems=8) can sit beside itself. Raises ProblemError for
    different problems or a variant name found in two results."""
    problems = {r["settings"]["problem"] for r in results}
    if len(problems) != 1:
        raise ProblemError(f"the results are on different problems {sorted(problems)}; merge "
                           "the comparisons of one problem at a time.")
    variants: dict[str, dict] = {}
    suffixes = suffixes or [""] * len(results)
    for result, source, suffix in zip(results, sources, suffixes, strict=True):
        for base, entry in result["variants"].items():
            name = f"{base} {suffix}" if suffix else base
            if name in variants:
                raise ProblemError(f"variant {name!r} is in {variants[name]['source']['file']} "
                                   f"and in {source}: give each variant from one comparison, or "
                                   "tell them apart with FILE:SUFFIX.")
            settings = result["settings"]
            variants[name] = {**entry, "source": {
                "file": source, "command_line": settings.get("command_line", ""),
                "budget": budget_text(settings), "seeds": settings["seeds"],
                "options": settings.get("common_options") or {},
                "machine": result.get("machine", {})}}
    seeds = sorted({v["source"]["seeds"] for v in variants.values()})
    merged = {
        "settings": {"problem": problems.pop(), "seeds": "-".join(str(s) for s in seeds),
                     "sources": list(sources)},
        "variants": variants,
    }
    merged["grids"] = add_curves(merged["variants"], grid_points)
    merged["efficiency"] = efficiency_table(merged["variants"])
    return merged


def markdown(merged: Mapping[str, Any], command: str) -> str:
    """The merged comparison: where each variant comes from, their table, the ratios."""
    problem = merged["settings"]["problem"]
    lines = [f"# Sample efficiency against the model-free baselines on {problem}", "",
             f"Command: `{command}`. Each variant comes from one `rlto compare` run, with that "
             "run's budget (whichever of its limits ended first) and machine:", ""]
    for name, v in merged["variants"].items():
        s = v["source"]
        machine = s["machine"]
        where = (f"{machine.get('cpu_count', '?')} CPUs, JAX on {machine.get('jax_device', '?')}"
                 f", {machine.get('date', '?')}")
        options = f"options {s['options']}; " if s["options"] else ""
        lines.append(f"- {name}: {s['seeds']} seeds, budget {s['budget']}; {options}{where}; "
                     f"`{s['command_line'] or s['file']}`")
    lines += ["", "Final gap: median and interquartile range over seeds of the last test gap "
              "(percent). " + WITHIN_NOTE, "", *markdown_table(TABLE_HEADER, table_rows(merged))]
    efficiency = efficiency_lines(merged["efficiency"])
    lines += ["", *(efficiency or ["No model-free baseline with runs among the variants."])]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", metavar="FILE[:SUFFIX]",
                        help="compare_<problem>.json files of rlto compare; a suffix is appended "
                             "to that file's variant names (e.g. FILE:n8)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="output directory (default: benchmarks/results)")
    parser.add_argument("--grid-points", type=int, default=120,
                        help="points of the common log grid of the curves (default: 120)")
    args = parser.parse_args(argv)
    files = [f.rpartition(":")[0] if ":" in f else f for f in args.results]
    suffixes = [f.rpartition(":")[2] if ":" in f else "" for f in args.results]
    try:
        results = [json.loads(Path(f).read_text()) for f in files]
        merged = merge(results, files, args.grid_points, suffixes)
    except (OSError, json.JSONDecodeError, KeyError, ProblemError) as err:
        print(f"efficiency.py: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"efficiency_{merged['settings']['problem']}"
    command = shlex.join(["benchmarks/efficiency.py", *(sys.argv[1:] if argv is None else argv)])
    (out / f"{stem}.json").write_text(json.dumps(jsonable(merged), indent=1, allow_nan=False)
                                      + "\n")
    text = markdown(merged, command)
    (out / f"{stem}.md").write_text(text)
    write_curves_plot(out / f"{stem}.png", merged)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
