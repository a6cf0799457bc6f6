"""Result of a batched solve, with a per-instance status that says what happened and what to do."""

from __future__ import annotations

import dataclasses
import enum

import numpy as np


class Status(enum.IntEnum):
    """Why the solver stopped on one instance."""

    CONVERGED = 0
    MAX_ITERATIONS = 1
    NON_FINITE = 2
    REGULARIZATION_LIMIT = 3
    CONSTRAINTS_VIOLATED = 4

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.CONVERGED: "converged: the trajectory is feasible and the expected improvement is "
    "below tol.",
    Status.MAX_ITERATIONS: "stopped at max_iter before convergence; raise max_iter, or warm-start "
    "from a better guess (init=(xs, us) of a previous solve or a policy rollout).",
    Status.NON_FINITE: "the dynamics or costs returned NaN/inf along the trajectory (even after "
    "regularization); check the model for singularities, or start from a smaller/saner init.",
    Status.REGULARIZATION_LIMIT: "no descent step found even at the maximum regularization "
    "(line search failed); the problem may be badly scaled or non-smooth: rescale the costs, "
    "or lower tol.",
    Status.CONSTRAINTS_VIOLATED: "the path constraints are still violated after the "
    "augmented-Lagrangian outer iterations; raise al_iters, or start from a feasible guess.",
}


@dataclasses.dataclass(frozen=True)
class Result:
    """Solutions of n OCP instances. All arrays are NumPy, float64, leading dimension n."""

    xs: np.ndarray
    """States (n, T+1, nx)."""
    us: np.ndarray
    """Controls (n, T, nu)."""
    K: np.ndarray
    """Feedback gains (n, T, nu, nx): u = us + k + K (x - xs) is the local controller; rows of
    controls at a bound are zero."""
    k: np.ndarray
    """Feed-forward step of the last backward pass (n, T, nu); near zero at convergence."""
    Vx: np.ndarray
    """Value gradient along the trajectory (n, T+1, nx)."""
    Vxx: np.ndarray
    """Value Hessian along the trajectory (n, T+1, nx, nx)."""
    step_improvement: np.ndarray
    """Expected cost decrease of a full DDP step, per time step (n, T): the terms of the
    stopping test's sum. Its sum from t to T-1 is the tail's; where that is below tol, the
    trajectory from x_t on is (locally) optimal and Vx[:, t] is the value gradient there
    (on a feasible trajectory; see gap)."""
    cost: np.ndarray
    """Problem cost of (xs, us) without extra or augmented-Lagrangian terms (n,)."""
    total_cost: np.ndarray
    """Cost including the extra cost terms that were passed (n,)."""
    iterations: np.ndarray
    """DDP iterations, summed over augmented-Lagrangian outer iterations (n,) int."""
    converged: np.ndarray
    """True where status is CONVERGED (n,) bool."""
    status: np.ndarray
    """Status code per instance (n,) int; see Status and `messages`."""
    gap: np.ndarray
    """Largest dynamics defect max_t |f(x_t, u_t) - x_{t+1}| (and |x_0 - x0|) (n,)."""
    constraint_violation: np.ndarray
    """Largest path-constraint violation max(g, 0) (n,); zeros without constraints."""
    forward_calls: np.ndarray
    """Dynamics evaluations spent on this instance (n,) int."""
    derivative_calls: np.ndarray
    """Dynamics Jacobian evaluations spent on this instance (n,) int."""
    seconds: float
    """Wall time of the whole batched solve."""

    @property
    def n(self) -> int:
        return int(self.cost.shape[0])

    @property
    def sim_calls(self) -> np.ndarray:
        """Forward plus derivative dynamics calls (n,), as benchmarks.md counts them."""
        return self.forward_calls + self.derivative_calls

    @property
    def messages(self) -> list[str]:
        """One sentence per instance: what happened and what to try."""
        return [Status(int(s)).message for s in self.status]

    def summary(self) -> dict:
        """Aggregate numbers for printing or JSON."""
        codes = {s.name.lower(): int(np.sum(self.status == s)) for s in Status}
        # Statistics over the finite costs: one diverged instance must not hide the rest.
        finite = self.cost[np.isfinite(self.cost)]

        def stat(fn):
            return float(fn(finite)) if finite.size else float("nan")

        return {
            "n": self.n,
            "converged_share": float(np.mean(self.converged)),
            "status_counts": codes,
            "iterations_median": float(np.median(self.iterations)),
            "iterations_max": int(np.max(self.iterations)),
            "cost_mean": stat(np.mean),
            "cost_median": stat(np.median),
            "cost_min": stat(np.min),
            "cost_max": stat(np.max),
            "cost_nonfinite": int(self.n - finite.size),
            "sim_calls": int(np.sum(self.sim_calls)),
            "seconds": float(self.seconds),
            "instances_per_second": float(self.n / self.seconds) if self.seconds > 0 else None,
        }
