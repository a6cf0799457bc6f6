"""rlto: fast, precise neural control policies from trajectory optimization and policy learning.

Public surface (see DESIGN.md): Problem, make, problem_names, solve, Result, Status, ExtraCost.
"""

import jax

# Trajectory optimization needs float64: DDP's Riccati recursion loses the last digits of a
# converged solve in float32, and the tests compare costs with crocoddyl to 1e-6.
jax.config.update("jax_enable_x64", True)

from rlto.problem import Ellipse, Problem, ProblemError, make, problem_names  # noqa: E402
from rlto.solver import ExtraCost, Result, Status, solve  # noqa: E402

__all__ = [
    "Ellipse",
    "ExtraCost",
    "Problem",
    "ProblemError",
    "Result",
    "Status",
    "make",
    "problem_names",
    "solve",
]
