"""Batched, jit-compiled, constrained DDP: `solve(problem, params, init, ...) -> Result`."""

from rlto.solver.ddp import ExtraCost, solve
from rlto.solver.result import Result, Status

__all__ = ["ExtraCost", "Result", "Status", "solve"]
