"""CACTO's shared cost terms and the builder of its obstacle problems (benchmarks.md 1.2).

CACTO's point-to-target tasks (single_integrator, double_integrator, car, manipulator3) share one
cost on a task-space position p (2,) with target p* and three elliptic obstacles, each given by
its centre (xc, yc) and full axis lengths (A, B):

    e_i(p)       = (px - xc)^2 / (A/2)^2 + (py - yc)^2 / (B/2)^2         (< 1 inside ellipse i)
    pen_i(p)     = log(1 + exp(a (1 - e_i(p)))) / a                       softplus, a = 50
    peak(p)      = log(1 + exp(-a2 (s(dx) + s(dy)))) / a2,   s(d) = sqrt(d^2+0.1) - sqrt(0.1) - 0.1
    running      = c * (w_d ||p - p*||^2 - w_peak peak(p) + w_ob sum_i pen_i(p) + w_u ||u||^2)
    terminal     = c * (w_d ||p - p*||^2 - w_peak peak(p) + w_ob sum_i pen_i(p) + w_v ||v||^2)

with c = 1e-5 the scale of CACTO's code (`scale_cost_fun`), applied here so that the weights keep
the numbers of the original. The running cost is per step and is NOT multiplied by dt, as in
CACTO's code (its reward is a per-step sum); the control term is in the running cost only; v is
the velocity part of the state where a problem penalises it (manipulator3: joint velocities).

`peak` is a smooth "valley" of depth about 0.2 (a2 = 5: 0.26) and width about 0.2 m around the
target: it rewards arriving exactly, where the quadratic distance term alone is flat. `pen_i` is
about 1 at the centre of an obstacle, 1/a*log 2 on its boundary and decays like exp(-a (e-1))
outside: at the centre it costs w_ob c = 50 per step (w_ob = 5e6; the car's 1e6: 10), far more
than anything it could save, so no optimum stays inside.

Constraint variant (`obstacles="constraint"` in every factory): the penalties leave the cost and
become path constraints g_i(x, u, t) = 1 - e_i(p(x)) <= 0 (feasible outside the ellipse), one per
obstacle, for the solver's constraint handling. They bind x_0..x_{T-1} (the states the running
nodes see), not x_T.

Everything here is smooth (softplus, sqrt(d^2 + 0.1)), so DDP gets finite first and second
derivatives everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import Ellipse, Problem, ProblemError

CACTO_OBSTACLES: tuple[Ellipse, ...] = (
    Ellipse(center=(-2.0, 0.0), axes=(6.0, 10.0)),
    Ellipse(center=(3.0, 4.0), axes=(12.0, 4.0)),
    Ellipse(center=(3.0, -4.0), axes=(12.0, 4.0)),
)
"""E1, E2, E3 of CACTO: centre and full axis lengths in metres."""


@dataclasses.dataclass(frozen=True)
class CactoCostConfig:
    """Cost settings shared by CACTO's problems; each problem's config extends this one."""

    w_d: float = 100.0
    """Weight of the squared distance ||p - p*||^2 to the target (before `cost_scale`)."""
    w_peak: float = 5e5
    """Weight of the target valley `peak(p)` (subtracted; before `cost_scale`)."""
    peak_sharpness: float = 5.0
    """a2: sharpness of the valley; CACTO uses 5 for the integrators and car, 50 for the arm."""
    w_ob: float = 5e6
    """Weight of each obstacle's softplus penalty (before `cost_scale`)."""
    obstacle_sharpness: float = 50.0
    """a: sharpness of the softplus obstacle penalty."""
    w_u: float = 10.0
    """Weight of ||u||^2 in the running cost (before `cost_scale`)."""
    w_v: float = 0.0
    """Weight of the terminal ||v||^2 on the problem's velocity part (before `cost_scale`)."""
    cost_scale: float = 1e-5
    """c: CACTO's `scale_cost_fun`, multiplying every cost term."""
    target: tuple[float, float] = (-7.0, 0.0)
    """Default target position p* (m); params["target"] (n, 2) overrides it when present."""
    ellipses: tuple[Ellipse, ...] = CACTO_OBSTACLES
    """The obstacles (centre, full axes)."""
    obstacles: str = "cost"
    """"cost": softplus penalties in the cost (CACTO); "constraint": g_i = 1 - e_i <= 0 instead."""


# ---------------------------------------------------------------------------------------------
# Cost terms: small pure functions on one position p (2,).


def ellipse_value(p: jax.Array, ellipse: Ellipse) -> jax.Array:
    """e(p) = (px-xc)^2/(A/2)^2 + (py-yc)^2/(B/2)^2: p (2,) -> scalar, < 1 inside the ellipse."""
    (xc, yc), (a, b) = ellipse.center, ellipse.axes
    return (p[0] - xc) ** 2 / (a / 2) ** 2 + (p[1] - yc) ** 2 / (b / 2) ** 2


def ellipse_penalty(p: jax.Array, ellipse: Ellipse, sharpness: float = 50.0) -> jax.Array:
    """Softplus obstacle penalty log(1 + exp(a (1 - e(p)))) / a: p (2,) -> scalar >= 0.

    About 1 at the centre, log(2)/a on the boundary, ~exp(-a (e - 1))/a outside.
    """
    return jax.nn.softplus(sharpness * (1.0 - ellipse_value(p, ellipse))) / sharpness


def ellipse_constraint(p: jax.Array, ellipse: Ellipse) -> jax.Array:
    """g(p) = 1 - e(p): p (2,) -> scalar, <= 0 outside the ellipse (feasible), > 0 inside."""
    return 1.0 - ellipse_value(p, ellipse)


def target_distance_sq(p: jax.Array, target: jax.Array) -> jax.Array:
    """||p - p*||^2: p (2,), target (2,) -> scalar."""
    d = p - target
    return d @ d


def peak(p: jax.Array, target: jax.Array, sharpness: float = 5.0) -> jax.Array:
    """CACTO's target valley (subtracted from the cost): p (2,), target (2,) -> scalar > 0.

    log(1 + exp(-a2 (s(dx) + s(dy)))) / a2 with s(d) = sqrt(d^2 + 0.1) - sqrt(0.1) - 0.1: a smooth
    bump of width ~0.2 m around the target (its maximum, at the target, is softplus(0.2 a2) / a2).
    """
    d = p - target
    s = jnp.sqrt(d**2 + 0.1) - jnp.sqrt(0.1) - 0.1
    return jax.nn.softplus(-sharpness * s.sum()) / sharpness


def obstacle_penalties(p: jax.Array, ellipses: tuple[Ellipse, ...], sharpness: float) -> jax.Array:
    """Sum of the softplus penalties of all ellipses: p (2,) -> scalar."""
    return sum((ellipse_penalty(p, e, sharpness) for e in ellipses), jnp.zeros(()))


def obstacle_constraints(p: jax.Array, ellipses: tuple[Ellipse, ...]) -> jax.Array:
    """g_i = 1 - e_i(p) for each ellipse: p (2,) -> (n_obstacles,), <= 0 outside all of them."""
    return jnp.stack([ellipse_constraint(p, e) for e in ellipses])


def inside_any(points: np.ndarray, ellipses: tuple[Ellipse, ...]) -> np.ndarray:
    """Mask of points (m, 2) lying inside or on some ellipse: -> (m,) bool (NumPy)."""
    points = np.asarray(points, dtype=np.float64)
    mask = np.zeros(points.shape[0], dtype=bool)
    for e in ellipses:
        (xc, yc), (a, b) = e.center, e.axes
        value = (points[:, 0] - xc) ** 2 / (a / 2) ** 2 + (points[:, 1] - yc) ** 2 / (b / 2) ** 2
        mask |= value <= 1.0
    return mask


def position_grid() -> np.ndarray:
    """CACTO's hard-region grid of positions for the integrators and the car: -> (176, 2).

    x in linspace(0, 15, 16), y in linspace(-5, 5, 11) (x-major order), before dropping the
    points inside obstacles.
    """
    xs, ys = np.meshgrid(np.linspace(0.0, 15.0, 16), np.linspace(-5.0, 5.0, 11), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def grid_states(ellipses: tuple[Ellipse, ...], nx: int) -> np.ndarray:
    """CACTO's hard-region initial states of a planar system -> (m, nx): the positions of
    `position_grid()` outside every ellipse, every other state coordinate zero (at rest)."""
    points = position_grid()
    points = points[~inside_any(points, ellipses)]
    states = np.zeros((points.shape[0], nx))
    states[:, :2] = points
    return states


# ---------------------------------------------------------------------------------------------
# Builder shared by the CACTO problems.


def _target(params, config: CactoCostConfig) -> jax.Array:
    if "target" in params:
        return jnp.asarray(params["target"], dtype=jnp.float64)
    return jnp.asarray(config.target, dtype=jnp.float64)


def build_cacto_problem(
    *,
    name: str,
    config: CactoCostConfig,
    nx: int,
    nu: int,
    horizon: int,
    dt: float,
    dynamics: Callable[..., jax.Array],
    position: Callable[[jax.Array], jax.Array],
    u_max: tuple[float, ...],
    sample: Callable[[jax.Array, int], dict],
    description: str,
    velocity: Callable[[jax.Array], jax.Array] | None = None,
    angles: tuple[int, ...] = (),
) -> Problem:
    """Assemble a CACTO Problem from its dynamics and position map and the shared cost above.

    position(x (nx,)) -> (2,) is the point the cost sees; velocity(x) -> (k,) is the part of the
    state penalised by the terminal w_v ||v||^2 (None: no such term). Bounds are |u_j| <= u_max[j].
    angles: the periodic state coordinates (Problem.angles), seen by policies as (cos, sin).
    """
    if config.obstacles not in ("cost", "constraint"):
        raise ProblemError(
            f"{name}: obstacles must be 'cost' (softplus penalties, CACTO) or 'constraint' "
            f"(g = 1 - e <= 0 path constraints); got {config.obstacles!r}."
        )
    as_cost = config.obstacles == "cost"
    c = config.cost_scale

    def position_terms(p, params):
        target = _target(params, config)
        cost = config.w_d * target_distance_sq(p, target)
        cost = cost - config.w_peak * peak(p, target, config.peak_sharpness)
        if as_cost:
            cost = cost + config.w_ob * obstacle_penalties(
                p, config.ellipses, config.obstacle_sharpness
            )
        return cost

    def running_cost(x, u, t, params):
        return c * (position_terms(position(x), params) + config.w_u * (u @ u))

    def terminal_cost(x, params):
        cost = position_terms(position(x), params)
        if velocity is not None and config.w_v != 0.0:
            v = velocity(x)
            cost = cost + config.w_v * (v @ v)
        return c * cost

    def constraints(x, u, t, params):
        return obstacle_constraints(position(x), config.ellipses)

    u_max_arr = np.asarray(u_max, dtype=np.float64)
    return Problem(
        name=name,
        nx=nx,
        nu=nu,
        horizon=horizon,
        dt=dt,
        dynamics=dynamics,
        running_cost=running_cost,
        terminal_cost=terminal_cost,
        u_lower=-u_max_arr,
        u_upper=u_max_arr,
        sample=sample,
        constraints=None if as_cost else constraints,
        description=description,
        position=lambda x, params: position(x),
        target=lambda params: _target(params, config),
        obstacles=tuple(config.ellipses),
        config=config,
        angles=angles,
    )


def uniform_sampler(low, high) -> Callable[[jax.Array, int], dict]:
    """Sampler of x0 uniform in the box [low, high] (each (nx,)): s(key, n) -> {"x0": (n, nx)}."""
    low = jnp.asarray(low, dtype=jnp.float64)
    high = jnp.asarray(high, dtype=jnp.float64)

    def sample(key: jax.Array, n: int) -> dict:
        x0 = jax.random.uniform(key, (n, low.shape[0]), jnp.float64, low, high)
        return {"x0": x0}

    return sample
