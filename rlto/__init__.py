"""rlto: fast, precise neural control policies from trajectory optimization and policy learning.

Public surface (see DESIGN.md): Problem, make, problem_names, solve, Result, Status, ExtraCost,
train, load_policy, evaluate.
"""

import os

import jax

# Trajectory optimization needs float64: DDP's Riccati recursion loses the last digits of a
# converged solve in float32, and the tests compare costs with crocoddyl to 1e-6.
jax.config.update("jax_enable_x64", True)
# A solver compiles in seconds per (problem, batch size); keep compiled programs on disk so that
# the next process (CLI call, test run) reuses them. RLTO_JAX_CACHE="" turns this off.
_default_cache = os.path.join(os.path.expanduser("~"), ".cache", "rlto")
_cache_dir = os.environ.get("RLTO_JAX_CACHE", _default_cache)
if _cache_dir and jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", _cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

from rlto.evaluate import evaluate  # noqa: E402
from rlto.problem import Ellipse, Problem, ProblemError, make, problem_names  # noqa: E402
from rlto.solver import ExtraCost, Result, Status, solve  # noqa: E402
from rlto.training import load_policy, train  # noqa: E402

__all__ = [
    "Ellipse",
    "ExtraCost",
    "Problem",
    "ProblemError",
    "Result",
    "Status",
    "evaluate",
    "load_policy",
    "make",
    "problem_names",
    "solve",
    "train",
]
