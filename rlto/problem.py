"""Problem: a family of optimal control problems (OCPs), and the registry of built-in ones.

A Problem is data plus pure, single-instance JAX functions (as in trajax and crocoddyl):

    x_{t+1} = dynamics(x_t, u_t, t, params)                  x (nx,), u (nu,), t integer step
    J = sum_{t<T} running_cost(x_t, u_t, t, params) + terminal_cost(x_T, params)
    u_lower <= u_t <= u_upper                                  (nu,) each, may be +-inf
    constraints(x_t, u_t, t, params) <= 0                      (nc,), optional path constraints

`params` is one instance's parameters beta: a dict of arrays, at least "x0" (nx,). The sampler
draws a batch: `sample(key, n)` returns the same dict with a leading dimension n.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = Mapping[str, jax.Array]


class ProblemError(ValueError):
    """A Problem (or its parameters) is ill-formed; the message says what and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Ellipse:
    """An elliptic obstacle in the plane, for CACTO's problems and their maps."""

    center: tuple[float, float]
    """Centre (x, y) in metres."""
    axes: tuple[float, float]
    """Full axis lengths (A along x, B along y) in metres."""


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A family of OCPs with a sampler of parameters. Validated on construction.

    Compared and hashed by identity, so that compiled solvers are cached per Problem object.
    """

    name: str
    """Short identifier, e.g. "pendulum"."""
    nx: int
    """State dimension."""
    nu: int
    """Control dimension."""
    horizon: int
    """Number of control steps T; trajectories have T+1 states."""
    dt: float
    """Time step in seconds (used for plots and time axes; the dynamics already include it)."""
    dynamics: Callable[..., jax.Array]
    """f(x (nx,), u (nu,), t (), params) -> x_next (nx,)."""
    running_cost: Callable[..., jax.Array]
    """l(x (nx,), u (nu,), t (), params) -> scalar."""
    terminal_cost: Callable[..., jax.Array]
    """lT(x (nx,), params) -> scalar."""
    u_lower: Any
    """Lower control bounds (nu,); -inf where unbounded."""
    u_upper: Any
    """Upper control bounds (nu,); +inf where unbounded."""
    sample: Callable[[jax.Array, int], dict]
    """s(key, n) -> params: dict of arrays with leading dimension n, at least "x0" (n, nx)."""
    constraints: Callable[..., jax.Array] | None = None
    """g(x (nx,), u (nu,), t (), params) -> (nc,), feasible where g <= 0; None for no constraint."""
    description: str = ""
    """One line for `rlto problems`."""
    position: Callable[..., jax.Array] | None = None
    """p(x (nx,), params) -> (2,) or (3,): task-space position, for plots and precision."""
    target: Callable[..., jax.Array] | None = None
    """p*(params) -> same shape as position: where the task wants p to end."""
    obstacles: tuple[Ellipse, ...] = ()
    """Obstacles to draw on maps (CACTO's problems)."""
    angles: tuple[int, ...] = ()
    """Indices of the state coordinates that are angles (2 pi-periodic, e.g. a pendulum's q):
    policies see them as (cos, sin), so that q and q + 2 pi are one input."""
    initial_controls: Callable[[dict], jax.Array] | None = None
    """u0(params) -> (T, nu): the controls a solve starts from when it is given no warm start
    (`rlto.solve(init=None)`, J*'s first start, PDDP's and Fig. 7's "zero" start). None: zero
    controls. DDP converges to a local optimum near its start, so a start in the right basin
    matters: ur5's is a reach to the inverse-kinematics pose of its target."""
    heuristic_controls: Callable[[dict], jax.Array] | None = None
    """u_h(params) -> (T, nu): the controls of a hand-made controller (pendulum: energy pumping,
    then a catch at the top), one more start for J* (`rlto.evaluate.optimum_costs`) and nothing
    else: no algorithm sees it. None: no such start."""
    goal_state: Callable[[dict], jax.Array] | None = None
    """x*(params) -> (nx,): the state the task ends in, for its instance (angles the nearest
    equivalent of the goal to x0's, so that the shortest way round is the guess). Used for the
    goal guess warm start (`rlto.evaluate.goal_guess`: x0, then every state at x*, a
    multiple-shooting start whose gaps the solver closes). None: the problem has no such
    state (e.g. ur5, whose goal is a position in task space)."""
    dynamics_jacobians: Callable[..., tuple] | None = None
    """(x (nx,), u (nu,), t (), params) -> (f (nx,), df/dx (nx, nx), df/du (nx, nu)): the
    dynamics with its Jacobians in closed form, where that is cheaper than forward-mode autodiff
    of `dynamics` (ur5: analytic Newton-Euler derivatives, 5x faster). The solver linearises
    with it (`linearized_dynamics`); gradients through rollouts still differentiate `dynamics`.
    Checked against autodiff at a sampled point on construction. None: autodiff."""
    config: Any = None
    """The factory's resolved settings (a frozen dataclass) for built-ins; written into run configs
    and read by reference models (e.g. crocoddyl's native pendulum)."""

    def __post_init__(self):
        object.__setattr__(self, "u_lower", _bound_array(self.u_lower, self.nu, "u_lower"))
        object.__setattr__(self, "u_upper", _bound_array(self.u_upper, self.nu, "u_upper"))
        _validate(self)

    @functools.cached_property
    def nc(self) -> int:
        """Number of path constraints (0 when there are none)."""
        if self.constraints is None:
            return 0
        params = _first(self._reference_params)
        x0 = jnp.asarray(params["x0"])
        return int(np.shape(self.constraints(x0, jnp.zeros(self.nu), 0, params))[0])

    @functools.cached_property
    def _reference_params(self) -> dict:
        """One draw of the sampler, whose keys and shapes every batch of params must match
        (drawn once: solve checks its params on every call)."""
        return self.sample(jax.random.key(0), 1)

    @property
    def has_bounds(self) -> bool:
        """True when at least one control bound is finite."""
        return bool(np.isfinite(self.u_lower).any() or np.isfinite(self.u_upper).any())

    def trajectory_cost(self, xs: jax.Array, us: jax.Array, params: Params) -> jax.Array:
        """Cost of one trajectory: xs (T+1, nx), us (T, nu) -> scalar."""
        ts = jnp.arange(self.horizon)
        running = jax.vmap(self.running_cost, in_axes=(0, 0, 0, None))(xs[:-1], us, ts, params)
        return running.sum() + self.terminal_cost(xs[-1], params)

    def rollout(self, us: jax.Array, params: Params) -> jax.Array:
        """States of the open-loop rollout: us (T, nu) -> xs (T+1, nx), from params["x0"].

        Reverse mode through it (PODS' action gradients) recomputes each step's linearisation
        on the way back (jax.checkpoint) instead of keeping all T: on ur5 the gradient of 256
        instances' costs takes 0.21 s instead of 0.53, and pendulum, double_pendulum and lqr
        are unchanged. Values, and forward mode, are unaffected."""

        @jax.checkpoint
        def step(x, tu):
            t, u = tu
            x_next = self.dynamics(x, u, t, params)
            return x_next, x_next

        x0 = jnp.asarray(params["x0"])
        _, xs = jax.lax.scan(step, x0, (jnp.arange(self.horizon), us))
        return jnp.concatenate([x0[None], xs])

    def linearized_dynamics(self, x: jax.Array, u: jax.Array, t, params: Params):
        """The dynamics and its Jacobians at one point: x (nx,), u (nu,) -> (f (nx,), df/dx
        (nx, nx), df/du (nx, nu)), from `dynamics_jacobians` where the problem has it, else by
        forward-mode autodiff of `dynamics`."""
        if self.dynamics_jacobians is not None:
            return self.dynamics_jacobians(x, u, t, params)
        return value_and_jacobians(lambda x, u: self.dynamics(x, u, t, params), x, u)

    def check_params(self, params: Params) -> int:
        """Check a batch of parameters against the sampler's conventions; return n.

        Raises ProblemError naming the offending entry and the expected shape.
        """
        if not isinstance(params, Mapping) or "x0" not in params:
            raise ProblemError(
                f"{self.name}: params must be a dict with at least 'x0' of shape (n, {self.nx}); "
                f"got {type(params).__name__}"
                + (f" with keys {sorted(params)}" if isinstance(params, Mapping) else "")
                + ". Draw them with problem.sample(key, n)."
            )
        x0 = np.shape(params["x0"])
        if len(x0) != 2 or x0[1] != self.nx:
            raise ProblemError(
                f"{self.name}: params['x0'] has shape {x0}, expected (n, {self.nx}). "
                "For one instance add a leading axis: x0[None]."
            )
        n = x0[0]
        reference = self._reference_params
        for key, value in params.items():
            shape = np.shape(value)
            if not shape or shape[0] != n:
                raise ProblemError(
                    f"{self.name}: params[{key!r}] has shape {shape}; every entry needs the "
                    f"leading dimension n={n} of params['x0']."
                )
            if key in reference and shape[1:] != np.shape(reference[key])[1:]:
                raise ProblemError(
                    f"{self.name}: params[{key!r}] has shape {shape}, expected "
                    f"(n, {', '.join(map(str, np.shape(reference[key])[1:]))})."
                )
            if not np.all(np.isfinite(np.asarray(value))):
                raise ProblemError(
                    f"{self.name}: params[{key!r}] contains NaN or inf; every parameter must be "
                    "finite."
                )
        missing = sorted(set(reference) - set(params))
        if missing:
            raise ProblemError(
                f"{self.name}: params lack {missing}, which the sampler provides and the "
                "functions read. Draw params with problem.sample(key, n)."
            )
        return int(n)


def value_and_jacobians(f: Callable, x: jax.Array, u: jax.Array):
    """f(x, u) and its Jacobians (df/dx, df/du) by forward mode, one pass for all three: x (nx,),
    u (nu,) -> y (m,), (m, nx), (m, nu). jax.jacfwd computes the same Jacobians but drops the
    value, which DDP's gaps need (one more dynamics evaluation per knot)."""
    nx, nu = x.shape[0], u.shape[0]
    basis = jnp.eye(nx + nu, dtype=x.dtype)
    tangents = (basis[:, :nx], basis[:, nx:])
    y, J = jax.vmap(lambda dx, du: jax.jvp(f, (x, u), (dx, du)), out_axes=(None, -1))(*tangents)
    return y, J[:, :nx], J[:, nx:]


def nearest_turn(goal: jax.Array, angle: jax.Array) -> jax.Array:
    """The angle equivalent to `goal` (mod 2 pi) nearest to `angle`: angle + the goal's offset
    from it wrapped to [-pi, pi). Elementwise."""
    return angle + jnp.mod(goal - angle + jnp.pi, 2 * jnp.pi) - jnp.pi


def _bound_array(value, nu: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(nu, float(arr))
    if arr.shape != (nu,):
        raise ProblemError(
            f"{name} has shape {arr.shape}, expected ({nu},) (one entry per control)."
        )
    if np.isnan(arr).any():
        raise ProblemError(f"{name} contains NaN; use -inf/+inf for an unbounded control.")
    return arr


def _first(params: Params) -> dict:
    return {k: jnp.asarray(v)[0] for k, v in params.items()}


def _validate(p: Problem) -> None:
    """Evaluate every function once on sampled parameters and check shapes and finiteness."""
    for field, value in (("nx", p.nx), ("nu", p.nu), ("horizon", p.horizon)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ProblemError(f"{p.name}: {field} must be a positive integer, got {value!r}.")
    if not np.isfinite(p.dt) or p.dt <= 0:
        raise ProblemError(f"{p.name}: dt must be a positive finite number, got {p.dt!r}.")
    bad = np.flatnonzero(p.u_lower > p.u_upper)
    if bad.size:
        raise ProblemError(
            f"{p.name}: control bounds have u_lower > u_upper at index {bad.tolist()} "
            f"({p.u_lower[bad].tolist()} > {p.u_upper[bad].tolist()}); swap them."
        )
    if np.isposinf(p.u_lower).any() or np.isneginf(p.u_upper).any():
        raise ProblemError(f"{p.name}: u_lower cannot be +inf and u_upper cannot be -inf.")

    angles = tuple(p.angles)
    if any(not isinstance(i, int | np.integer) or not 0 <= i < p.nx for i in angles) or len(
        set(angles)
    ) != len(angles):
        raise ProblemError(
            f"{p.name}: angles must be distinct state indices in [0, {p.nx}), got {angles!r}."
        )

    n = 3
    try:
        batch = p.sample(jax.random.key(0), n)
    except Exception as err:  # the user's sampler failed: say so, keep the cause
        raise ProblemError(f"{p.name}: sample(key, {n}) raised {err!r}.") from err
    if not isinstance(batch, Mapping) or "x0" not in batch:
        raise ProblemError(
            f"{p.name}: sample(key, n) must return a dict with at least 'x0' (n, {p.nx}); "
            f"got {type(batch).__name__}."
        )
    for key, value in batch.items():
        shape = np.shape(value)
        if not shape or shape[0] != n:
            raise ProblemError(
                f"{p.name}: sample(key, {n}) returned {key!r} with shape {shape}; every entry "
                f"needs leading dimension n={n}."
            )
    if np.shape(batch["x0"]) != (n, p.nx):
        raise ProblemError(
            f"{p.name}: sample(key, {n})['x0'] has shape {np.shape(batch['x0'])}, expected "
            f"({n}, {p.nx}) to match nx={p.nx}."
        )
    params = _first(batch)
    x = jnp.asarray(params["x0"], dtype=jnp.float64)
    # Mid-box controls where both bounds are finite, zero elsewhere.
    finite = np.isfinite(p.u_lower) & np.isfinite(p.u_upper)
    mid = 0.5 * (np.where(finite, p.u_lower, 0.0) + np.where(finite, p.u_upper, 0.0))
    u = jnp.asarray(mid)
    u = jnp.clip(u, p.u_lower, p.u_upper)
    checks = [
        ("dynamics(x, u, t, params)", lambda: p.dynamics(x, u, 0, params), (p.nx,)),
        ("running_cost(x, u, t, params)", lambda: p.running_cost(x, u, 0, params), ()),
        ("terminal_cost(x, params)", lambda: p.terminal_cost(x, params), ()),
    ]
    if p.constraints is not None:
        checks.append(
            ("constraints(x, u, t, params)", lambda: p.constraints(x, u, 0, params), None)
        )
    for name in ("initial_controls", "heuristic_controls"):
        controls = getattr(p, name)
        if controls is not None:
            checks.append((f"{name}(params)", functools.partial(controls, params),
                           (p.horizon, p.nu)))
    if p.goal_state is not None:
        checks.append(("goal_state(params)", functools.partial(p.goal_state, params), (p.nx,)))
    for what, call, expected in checks:
        try:
            # Compiled: eager op-by-op evaluation of autodiff-built dynamics takes seconds.
            out = jnp.asarray(jax.jit(call)())
        except Exception as err:
            raise ProblemError(
                f"{p.name}: {what} raised {err!r} with x of shape ({p.nx},) and u of shape "
                f"({p.nu},); check nx/nu against what the function indexes."
            ) from err
        if expected is None:
            if out.ndim != 1:
                raise ProblemError(
                    f"{p.name}: {what} returned shape {out.shape}, expected a 1-D vector (nc,)."
                )
        elif out.shape != expected:
            raise ProblemError(
                f"{p.name}: {what} returned shape {out.shape}, expected {expected}"
                + {(p.nx,): f" (nx={p.nx})", (): " (a scalar)"}.get(expected, "")
                + "."
            )
        if not bool(jnp.all(jnp.isfinite(out))):
            raise ProblemError(
                f"{p.name}: {what} is not finite (NaN or inf) at a sampled x0 and "
                f"u={np.asarray(u)}; check the formula for divisions by zero or overflow."
            )
    if p.dynamics_jacobians is not None:
        _check_dynamics_jacobians(p, x, u, params)


def _check_dynamics_jacobians(p: Problem, x, u, params) -> None:
    """dynamics_jacobians at (x, u) against `dynamics` and its forward-mode Jacobians: shapes,
    and agreement to 1e-6 relative to each output's scale."""
    what = "dynamics_jacobians(x, u, t, params)"
    try:
        given = jax.jit(lambda: p.dynamics_jacobians(x, u, 0, params))()
        expected = jax.jit(
            lambda: value_and_jacobians(lambda x, u: p.dynamics(x, u, 0, params), x, u))()
    except Exception as err:
        raise ProblemError(f"{p.name}: {what} raised {err!r}.") from err
    names = ("f", "df/dx", "df/du")
    shapes = ((p.nx,), (p.nx, p.nx), (p.nx, p.nu))
    if not isinstance(given, tuple | list) or len(given) != 3:
        raise ProblemError(
            f"{p.name}: {what} must return a tuple (f {shapes[0]}, df/dx {shapes[1]}, "
            f"df/du {shapes[2]}), got {type(given).__name__}.")
    for name, shape, ours in zip(names, shapes, given, strict=True):
        if np.shape(ours) != shape:
            raise ProblemError(f"{p.name}: {what} returned {name} of shape {np.shape(ours)}, "
                               f"expected {shape}.")
    for name, ours, autodiff in zip(names, given, expected, strict=True):
        ours, autodiff = np.asarray(ours), np.asarray(autodiff)
        error = float(np.max(np.abs(ours - autodiff), initial=0.0))
        scale = max(float(np.max(np.abs(autodiff), initial=0.0)), 1.0)
        if not error <= 1e-6 * scale:
            raise ProblemError(
                f"{p.name}: {what} disagrees with `dynamics` and its autodiff Jacobians at a "
                f"sampled x0: {name} differs by {error:.3g} (scale {scale:.3g}). It must compute "
                "the same function as dynamics and its exact derivatives.")


# ---------------------------------------------------------------------------------------------
# Registry of built-in problems.

_REGISTRY: dict[str, tuple[Callable[..., Problem], str]] = {}


def register(name: str, factory: Callable[..., Problem], description: str) -> None:
    """Make `factory(**options) -> Problem` available as `rlto.make(name, **options)`."""
    _REGISTRY[name] = (factory, description)


def problem_names() -> list[str]:
    """Names of the built-in problems, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def problem_descriptions() -> dict[str, str]:
    """Name -> one-line description of every built-in problem."""
    _load_builtins()
    return {name: _REGISTRY[name][1] for name in sorted(_REGISTRY)}


def make(name: str, **options) -> Problem:
    """A built-in problem by name, e.g. make("pendulum"); options go to its factory."""
    _load_builtins()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ProblemError(
            f"unknown problem {name!r}.{hint} Known problems: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[name][0](**options)


def config_fields(problem: Problem) -> dict:
    """The problem's resolved settings as JSON-ready fields (tuples as lists), {} if it has none:
    what `remake(problem.name, fields)` rebuilds a built-in problem from."""
    config = problem.config
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        return {}
    return json.loads(json.dumps(dataclasses.asdict(config)))


def remake(name: str, fields: dict | None) -> Problem:
    """The built-in problem `name` with settings `fields` as read back from JSON (lists become
    the tuples the configs hold), e.g. from a run's config.json or a saved policy."""
    return make(name, **{k: _as_tuples(v) for k, v in (fields or {}).items()})


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def _load_builtins() -> None:
    # Imported lazily so that problem.py stays importable by the problem files themselves.
    import rlto.problems  # noqa: F401
