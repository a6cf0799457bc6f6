"""Neural policies: the paper's policy class pi_theta, input normalisation, save and load.

Seed 002, section II: an MLP with two hidden layers of 256 ReLU units whose last layer is
squashed by tanh into the control box [u_min, u_max]. Here, per control j,

    z = W_L relu(... relu(W_1 ((y - mean) / scale) + b_1) ...) + b_L     y = (x, beta)  (d,)
    u_j = lo_j + (hi_j - lo_j) (tanh(z_j) + 1) / 2     both bounds finite (clipped to the box)
    u_j = lo_j + softplus(z_j)   or   hi_j - softplus(-z_j)    one bound finite
    u_j = z_j                                                 both bounds infinite (linear)

The network input y is the state x (nx,), with each angle coordinate (Problem.angles) replaced
by its cos and sin, then (with `make_policy(task_input=True)`) the task-space offset
p(x) - p*(beta) of Problem.position and Problem.target, then the flattened conditioning
parameters (e.g. a target), in the order of `param_keys`. The offset is a function of x and beta
that the network could learn, but on a robot it is the forward kinematics, which a small MLP
learns only roughly, and the reaching precision rests on it. A time-varying policy
pi(x, beta, t) has the reserved key TIME_KEY ("t", the step index 0..T-1, shape ()) among its
param_keys: the optimal control of a finite-horizon problem depends on the time to go, so a
stationary policy cannot match it near the horizon (on `pendulum` the optimum times its arrival
upright to the end). Rollouts and datasets always pass params[TIME_KEY] (`at_step`,
`with_steps`); a stationary policy ignores it.
`mean` and `scale` (d,) are stored arrays but not
trained: `__call__` stops their gradient, and `trainable(policy)` is the filter spec that leaves
them out of an optimiser's state:

    params, static = eqx.partition(policy, trainable(policy))
    loss = lambda p: regression_loss(eqx.combine(p, static), xs, us, beta)

`policy(x, params) -> u` evaluates ONE instance (vmappable); `apply_policy(policy, xs, params)`
evaluates a batch with any leading shape, broadcasting per-instance parameters over time.
`save_policy(dir, policy)` writes `policy.json` (architecture) and `policy.eqx` (equinox leaves);
`load_policy(dir)` rebuilds the skeleton from the JSON alone, so no Problem is needed, except
for a task-input policy, whose JSON names the built-in problem (and its settings) whose
position and target it evaluates; pass `problem=` for one that is not built in.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from rlto.problem import ProblemError, config_fields, remake

TIME_KEY = "t"
"""Reserved parameter key of the time step index t (float, shape ()) given to time-varying
policies; a problem's sampler must not use it."""
POLICY_JSON = "policy.json"
"""Architecture file written by `save_policy`."""
POLICY_LEAVES = "policy.eqx"
"""Weights file (equinox `tree_serialise_leaves`) written by `save_policy`."""
NORMALIZATION_DRAWS = 1024
"""Number of sampler draws from which `make_policy` computes the default normalisation."""
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "leaky_relu": jax.nn.leaky_relu,
}
"""Hidden-layer activations by name (the name is what the JSON stores). "relu" is seed 002's;
"leaky_relu" (slope 0.01 below zero) is what makes double_pendulum learnable: fitted to the test
set's own optimal trajectories (benchmarks/imitation.py, 512x512, full Sobolev), a ReLU policy
turns its whole second layer off at the upright state, where u* = 0 but the TO gains are ~70, so
its Jacobian there is exactly zero and the Sobolev term's gradient never reaches the weights
again: the gain error stays at 100% of ||K||^2 for every step after t = 50, and no rollout stays
up (gap 5 x 10^4 % after 600 epochs). With leaky_relu the gains are fitted and the policy's median
instance comes within 3% of J* after 300-400 epochs."""
_FORMAT = "rlto.policy"
_VERSION = 1


class Policy(eqx.Module):
    """pi_theta(x, beta) -> u: an MLP with bounded outputs and frozen input normalisation.

    Build one with `make_policy(problem, key)`; the constructor is for a known architecture
    (it is what `load_policy` calls). Trainable leaves: the weights and biases of `layers`.
    """

    layers: tuple[eqx.nn.Linear, ...]
    """Linear layers d -> hidden[0] -> ... -> hidden[-1] -> nu."""
    in_mean: jax.Array
    """(d,) subtracted from the input y = (x, flattened params); not trained."""
    in_scale: jax.Array
    """(d,) positive divisor of the centred input; not trained."""
    nx: int = eqx.field(static=True)
    """State dimension."""
    nu: int = eqx.field(static=True)
    """Control dimension."""
    hidden: tuple[int, ...] = eqx.field(static=True)
    """Widths of the hidden layers."""
    activation: str = eqx.field(static=True)
    """Hidden activation, a key of ACTIVATIONS."""
    u_lower: tuple[float, ...] = eqx.field(static=True)
    """(nu,) lower control bounds, -inf where unbounded."""
    u_upper: tuple[float, ...] = eqx.field(static=True)
    """(nu,) upper control bounds, +inf where unbounded."""
    param_keys: tuple[str, ...] = eqx.field(static=True)
    """Names of the conditioning parameters appended to x, in input order (never "x0")."""
    param_shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    """One instance's shape of each conditioning parameter, e.g. ((2,),) for a 2-D target."""
    dtype: str = eqx.field(static=True)
    """Floating dtype name of weights and outputs ("float64" by default)."""
    angles: tuple[int, ...] = eqx.field(static=True)
    """State indices that are angles: the input has (cos, sin) of each instead (Problem.angles)."""
    task_size: int = eqx.field(static=True)
    """k, the size of the task-space offset in the input (0: no task input)."""
    task_offset: Callable | None = eqx.field(static=True)
    """(x (nx,), conditioning params) -> (k,), p(x) - p*(beta); None without task input."""
    task_problem: tuple[str, str] = eqx.field(static=True)
    """(problem name, JSON of its config fields) from which `load_policy` rebuilds task_offset;
    ("", "") without task input."""

    def __init__(
        self,
        nx: int,
        nu: int,
        hidden: Sequence[int] = (256, 256),
        u_lower: Any = -math.inf,
        u_upper: Any = math.inf,
        param_keys: Sequence[str] = (),
        param_shapes: Sequence[Sequence[int]] = (),
        *,
        key: jax.Array,
        activation: str = "relu",
        in_mean: Any = None,
        in_scale: Any = None,
        dtype: Any = jnp.float64,
        angles: Sequence[int] = (),
        task_offset: Callable | None = None,
        task_size: int = 0,
        task_problem: tuple[str, str] = ("", ""),
    ):
        """A freshly initialised policy. Bounds are scalars or (nu,); mean/scale default 0/1.

        task_offset, task_size, task_problem: the task-space input (see `make_policy`)."""
        self.nx, self.nu = int(nx), int(nu)
        self.hidden = tuple(int(h) for h in hidden)
        if self.nx < 1 or self.nu < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"Policy needs nx, nu and hidden widths >= 1; got nx={nx}, nu={nu}, "
                f"hidden={tuple(hidden)}."
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}."
            )
        self.activation = activation
        self.u_lower = _bounds(u_lower, self.nu, "u_lower")
        self.u_upper = _bounds(u_upper, self.nu, "u_upper")
        for j, (lo, hi) in enumerate(zip(self.u_lower, self.u_upper, strict=True)):
            if not lo < hi or lo == math.inf or hi == -math.inf:
                raise ValueError(
                    f"control {j}: need u_lower < u_upper with u_lower < +inf and u_upper > -inf;"
                    f" got [{lo}, {hi}]."
                )
        self.param_keys = tuple(str(k) for k in param_keys)
        self.param_shapes = tuple(tuple(int(s) for s in shape) for shape in param_shapes)
        if len(self.param_keys) != len(self.param_shapes):
            raise ValueError(
                f"param_keys {self.param_keys} and param_shapes {self.param_shapes} must have "
                "the same length (one shape per key)."
            )
        if "x0" in self.param_keys or len(set(self.param_keys)) != len(self.param_keys):
            raise ValueError(
                f"param_keys {self.param_keys} must be distinct and exclude 'x0' (the state "
                "x is always the first input)."
            )
        self.angles = tuple(int(i) for i in angles)
        if any(not 0 <= i < self.nx for i in self.angles) or len(set(self.angles)) != len(
            self.angles
        ):
            raise ValueError(f"angles must be distinct indices in [0, {self.nx}), got {angles}.")
        self.task_size = int(task_size)
        if (task_offset is None) != (self.task_size == 0) or self.task_size < 0:
            raise ValueError(
                f"a task input needs both task_offset and task_size >= 1, and no task input "
                f"neither; got task_offset={task_offset!r}, task_size={task_size}."
            )
        self.task_offset = task_offset
        self.task_problem = (str(task_problem[0]), str(task_problem[1]))
        self.dtype = jnp.dtype(dtype).name
        d = self.input_size
        sizes = (d, *self.hidden, self.nu)
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(a, b, dtype=self.dtype, key=k)
            for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        mean = np.zeros(d) if in_mean is None else in_mean
        scale = np.ones(d) if in_scale is None else in_scale
        self.in_mean, self.in_scale = _normalization_arrays(mean, scale, d, self.dtype)

    @property
    def input_size(self) -> int:
        """d = nx + one per angle (cos and sin replace it) + task offset + conditioning params."""
        params_size = sum(math.prod(s) for s in self.param_shapes)
        return self.nx + len(self.angles) + self.task_size + params_size

    def state_features(self, xs: jax.Array) -> jax.Array:
        """The state part of the input: xs (..., nx) -> (..., nx + len(angles)), the non-angle
        coordinates in order, then cos and sin of each angle."""
        if not self.angles:
            return xs
        index = np.asarray(self.angles)
        rest = np.setdiff1d(np.arange(self.nx), index)
        q = xs[..., index]
        return jnp.concatenate([xs[..., rest], jnp.cos(q), jnp.sin(q)], axis=-1)

    def __call__(self, x: jax.Array, params: Mapping[str, jax.Array] | None = None) -> jax.Array:
        """u (nu,) for one instance: x (nx,), params one instance's dict (other keys ignored)."""
        return self.forward(self.input(x, params))

    def input(self, x: jax.Array, params: Mapping[str, jax.Array] | None = None) -> jax.Array:
        """The raw (unnormalised) network input y (d,) = (state features of x, flattened
        params[param_keys])."""
        x = jnp.asarray(x, self.dtype)
        if x.shape != (self.nx,):
            raise ValueError(
                f"policy expects one state x of shape ({self.nx},), got {x.shape}; for a batch "
                "use jax.vmap(policy) or rlto.nets.apply_policy."
            )
        if not self.param_keys and self.task_offset is None:
            return self.state_features(x)
        beta = {}
        for k, shape in zip(self.param_keys, self.param_shapes, strict=True):
            if params is None or k not in params:
                have = "None" if params is None else sorted(params)
                if k == TIME_KEY:
                    raise KeyError(
                        f"this policy is time-varying: it needs the time step t (0..T-1) as "
                        f"params[{TIME_KEY!r}]; call policy(x, rlto.nets.at_step(params, t)). "
                        f"params has {have}."
                    )
                raise KeyError(
                    f"policy is conditioned on params[{k!r}] of shape {shape}; params has {have}."
                )
            value = jnp.asarray(params[k], self.dtype)
            if value.shape != shape:
                raise ValueError(
                    f"params[{k!r}] has shape {value.shape}; the policy takes one instance's "
                    f"{shape}. For a batch use jax.vmap(policy) or rlto.nets.apply_policy."
                )
            beta[k] = value
        parts = [self.state_features(x)]
        if self.task_offset is not None:
            parts.append(self.task_features(x, beta))
        parts += [beta[k].reshape(-1) for k in self.param_keys]
        return jnp.concatenate(parts)

    def task_features(self, xs: jax.Array, beta: Mapping[str, jax.Array]) -> jax.Array:
        """The task part of the input: p(x) - p*(beta) (..., k) for states xs (..., nx) and the
        conditioning params beta already broadcast to (..., *shape) (`broadcast_params`)."""
        batch = xs.shape[:-1]
        flat_x = xs.reshape(-1, self.nx)
        m = flat_x.shape[0]
        flat_beta = {k: v.reshape((m, *v.shape[len(batch) :])) for k, v in beta.items()}
        offset = jax.vmap(self.task_offset)(flat_x, flat_beta)
        return jnp.asarray(offset, self.dtype).reshape(batch + (self.task_size,))

    def forward(self, y: jax.Array) -> jax.Array:
        """u (nu,) from the raw input y (d,): normalise, MLP, squash into the bounds."""
        mean = jax.lax.stop_gradient(self.in_mean)
        scale = jax.lax.stop_gradient(self.in_scale)
        h = (y - mean) / scale
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            h = act(layer(h))
        return self.squash(self.layers[-1](h))

    def squash(self, z: jax.Array) -> jax.Array:
        """Map the last layer's output z (nu,) into the control set, per control (see module)."""
        lo = np.asarray(self.u_lower)
        hi = np.asarray(self.u_upper)
        lo_f, hi_f = np.isfinite(lo), np.isfinite(hi)
        both = lo_f & hi_f
        lo0 = np.where(lo_f, lo, 0.0).astype(self.dtype)
        hi0 = np.where(hi_f, hi, 0.0).astype(self.dtype)
        # The clip only removes the last-ulp rounding of lo + (hi - lo) at tanh saturation.
        boxed = jnp.clip(lo0 + (hi0 - lo0) * 0.5 * (jnp.tanh(z) + 1.0), lo0, hi0)
        below = lo0 + jax.nn.softplus(z)
        above = hi0 - jax.nn.softplus(-z)
        return jnp.where(both, boxed, jnp.where(lo_f, below, jnp.where(hi_f, above, z)))

    def with_normalization(self, mean: Any, scale: Any) -> Policy:
        """The same policy with input normalisation mean (d,) and scale (d,) (positive)."""
        mean, scale = _normalization_arrays(mean, scale, self.input_size, self.dtype)
        return eqx.tree_at(lambda p: (p.in_mean, p.in_scale), self, (mean, scale))

    def architecture(self) -> dict:
        """The JSON-ready description from which `load_policy` rebuilds the skeleton."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "nx": self.nx,
            "nu": self.nu,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "u_lower": [None if math.isinf(v) else v for v in self.u_lower],
            "u_upper": [None if math.isinf(v) else v for v in self.u_upper],
            "param_keys": list(self.param_keys),
            "param_shapes": [list(s) for s in self.param_shapes],
            "dtype": self.dtype,
            "angles": list(self.angles),
            "task_size": self.task_size,
            "task_problem": list(self.task_problem),
        }


def make_policy(
    problem,
    key: jax.Array,
    hidden: Sequence[int] = (256, 256),
    normalization: tuple[Any, Any] | None = None,
    *,
    param_keys: Sequence[str] | None = None,
    time_input: bool = False,
    task_input: bool = False,
    activation: str = "relu",
    dtype: Any = jnp.float64,
) -> Policy:
    """A fresh policy for `problem` (bounds, nx, nu, conditioning parameters from its sampler).

    param_keys: parameters to condition on; None takes every sampled entry except "x0", sorted.
    time_input: also condition on the time step (TIME_KEY, appended last): pi(x, beta, t).
    task_input: also give it the task-space offset p(x) - p*(beta) (Problem.position minus
    Problem.target, which may read only the param_keys), e.g. ur5's flange-to-target vector.
    normalization: (mean (d,), scale (d,)), or None to compute it from NORMALIZATION_DRAWS draws
    of `problem.sample` (see `fit_normalization`: the x part from the initial states).
    """
    init_key, sample_key = jax.random.split(key)
    reference = problem.sample(sample_key, NORMALIZATION_DRAWS if normalization is None else 1)
    if TIME_KEY in reference:
        raise KeyError(
            f"{problem.name}: the sampler returns the key {TIME_KEY!r}, which rlto reserves for "
            "the time step given to policies; rename that parameter."
        )
    if param_keys is None:
        param_keys = sorted(k for k in reference if k != "x0")
    missing = [k for k in param_keys if k not in reference]
    if missing:
        raise KeyError(f"{problem.name}: the sampler provides {sorted(reference)}, not {missing}.")
    shapes = [np.shape(reference[k])[1:] for k in param_keys]
    if time_input:
        param_keys, shapes = [*param_keys, TIME_KEY], [*shapes, ()]
        # Spread the draws' times evenly over 0..T-1 so the default normalisation covers them.
        m = np.shape(reference["x0"])[0]
        reference = {**reference, TIME_KEY: np.arange(m) % problem.horizon}
    task = task_input_fields(problem, param_keys, reference) if task_input else {}
    policy = Policy(
        problem.nx,
        problem.nu,
        hidden,
        problem.u_lower,
        problem.u_upper,
        param_keys,
        shapes,
        key=init_key,
        activation=activation,
        dtype=dtype,
        angles=problem.angles,
        **task,
    )
    if normalization is None:
        normalization = fit_normalization(
            policy_inputs(policy, jnp.asarray(reference["x0"]), reference)
        )
    return policy.with_normalization(*normalization)


def task_offset_function(problem) -> Callable:
    """(x (nx,), params) -> p(x) - p*(params): the task-space offset of `problem` (which needs
    Problem.position and Problem.target)."""
    if problem.position is None or problem.target is None:
        raise ProblemError(
            f"{problem.name}: a task input needs Problem.position and Problem.target (the "
            "task-space point and where it should end); this problem lacks "
            f"{'position' if problem.position is None else 'target'}. Use task_input=False."
        )
    position, target = problem.position, problem.target

    def offset(x, params):
        return jnp.ravel(position(x, params) - target(params))

    return offset


def task_input_fields(problem, param_keys: Sequence[str], reference: Mapping) -> dict:
    """Policy's task_offset, task_size and task_problem for `problem`; checks on one sampled
    instance that the offset needs no parameter outside param_keys."""
    offset = task_offset_function(problem)
    x0 = jnp.asarray(reference["x0"][0])
    beta = {k: jnp.asarray(reference[k][0]) for k in param_keys if k != TIME_KEY}
    try:
        shape = jax.eval_shape(offset, x0, beta).shape
    except KeyError as err:
        raise ProblemError(
            f"{problem.name}: its position or target reads params[{err.args[0]!r}], which the "
            f"policy is not conditioned on (param_keys={tuple(param_keys)}); add it to param_keys."
        ) from None
    spec = (problem.name, json.dumps(config_fields(problem), sort_keys=True))
    return {"task_offset": offset, "task_size": math.prod(shape), "task_problem": spec}


def fit_normalization(inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean (d,), scale (d,)) of raw inputs (m, d), or of any (..., d).

    scale is the standard deviation, except for a coordinate that (almost) does not vary:
    std < 1e-3 max(1, |mean|). Dividing by a near-zero spread would turn states that later leave
    the sampled set (e.g. a velocity that is always 0 at x0) into huge inputs; such a coordinate
    gets scale max(1, |mean|), its own magnitude.
    """
    y = np.asarray(inputs, dtype=np.float64).reshape(-1, np.shape(inputs)[-1])
    if not np.all(np.isfinite(y)):
        raise ValueError("fit_normalization: inputs contain NaN or inf.")
    mean = y.mean(axis=0)
    std = y.std(axis=0)
    magnitude = np.maximum(1.0, np.abs(mean))
    scale = np.where(std < 1e-3 * magnitude, magnitude, std)
    return jnp.asarray(mean), jnp.asarray(scale)


def set_normalization(
    policy: Policy, xs: jax.Array, params: Mapping[str, jax.Array] | None = None
) -> Policy:
    """The policy renormalised from states xs (..., nx), e.g. TO trajectories (n, T+1, nx).

    params: batched parameters (see `policy_inputs`); needed when the policy is conditioned.
    """
    return policy.with_normalization(*fit_normalization(policy_inputs(policy, xs, params)))


def trainable(policy: Policy) -> Policy:
    """Filter spec (a pytree of bools like `policy`): True on the weights and biases only.

    Use with eqx.partition / eqx.filter so that optimisers never see the normalisation arrays.
    """
    spec = jax.tree.map(eqx.is_inexact_array, policy)
    return eqx.tree_at(lambda p: (p.in_mean, p.in_scale), spec, replace=(False, False))


def broadcast_params(
    policy: Policy, params: Mapping[str, jax.Array] | None, batch_shape: tuple[int, ...]
) -> dict[str, jax.Array]:
    """The conditioning parameters broadcast to (*batch_shape, *shape) each.

    Each params[k] has shape (*lead, *shape) with `lead` a prefix of batch_shape: e.g. a target
    (n, 2) against states (n, T, nx) is repeated over the T axis. Other keys are dropped.
    """
    out = {}
    for k, shape in zip(policy.param_keys, policy.param_shapes, strict=True):
        if params is None or k not in params:
            have = "None" if params is None else sorted(params)
            raise KeyError(f"policy is conditioned on params[{k!r}]; params has {have}.")
        value = jnp.asarray(params[k], policy.dtype)
        lead = value.shape[: value.ndim - len(shape)]
        if value.shape[len(lead) :] != shape or lead != tuple(batch_shape[: len(lead)]):
            raise ValueError(
                f"params[{k!r}] has shape {value.shape}; expected (*lead, {shape}) with lead a "
                f"prefix of the states' batch shape {tuple(batch_shape)}."
            )
        value = value.reshape(lead + (1,) * (len(batch_shape) - len(lead)) + shape)
        out[k] = jnp.broadcast_to(value, tuple(batch_shape) + shape)
    return out


def at_step(params: Mapping[str, jax.Array], t) -> dict[str, jax.Array]:
    """One instance's params with the time step t added under TIME_KEY (what rollouts pass)."""
    return {**params, TIME_KEY: jnp.asarray(t, dtype=jnp.float64)}


def with_steps(params: Mapping[str, jax.Array], n: int, horizon: int) -> dict[str, jax.Array]:
    """Batched params (n, ...) with TIME_KEY (n, horizon) = 0..horizon-1 per instance, for the
    policy on trajectories xs[:, :horizon] (n, horizon, nx)."""
    steps = jnp.broadcast_to(jnp.arange(horizon, dtype=jnp.float64), (n, horizon))
    return {**params, TIME_KEY: steps}


def policy_inputs(
    policy: Policy, xs: jax.Array, params: Mapping[str, jax.Array] | None = None
) -> jax.Array:
    """Raw network inputs (..., d) for states xs (..., nx) and batched params (broadcast)."""
    xs = jnp.asarray(xs, policy.dtype)
    batch = xs.shape[:-1]
    beta = broadcast_params(policy, params, batch)
    parts = [policy.state_features(xs)]
    if policy.task_offset is not None:
        parts.append(policy.task_features(xs, beta))
    parts += [beta[k].reshape(batch + (-1,)) for k in policy.param_keys]
    return jnp.concatenate(parts, axis=-1)


def apply_policy(
    policy: Policy, xs: jax.Array, params: Mapping[str, jax.Array] | None = None
) -> jax.Array:
    """Controls (..., nu) for states xs (..., nx); params broadcast as in `broadcast_params`."""
    y = policy_inputs(policy, xs, params)
    flat = jax.vmap(policy.forward)(y.reshape(-1, y.shape[-1]))
    return flat.reshape(y.shape[:-1] + (policy.nu,))


def save_policy(path_dir: str | os.PathLike, policy: Policy) -> None:
    """Write `policy.json` (architecture) and `policy.eqx` (leaves) into path_dir (created)."""
    os.makedirs(path_dir, exist_ok=True)
    with open(os.path.join(path_dir, POLICY_JSON), "w") as f:
        json.dump(policy.architecture(), f, indent=2)
        f.write("\n")
    eqx.tree_serialise_leaves(os.path.join(path_dir, POLICY_LEAVES), policy)


def load_policy(path_dir: str | os.PathLike, problem=None) -> Policy:
    """The policy saved by `save_policy` in path_dir, exactly.

    problem: only for a task-input policy of a problem that is not built in (the JSON names a
    built-in problem and its settings, and load_policy rebuilds it), the Problem whose position
    and target the policy evaluates."""
    json_path = os.path.join(path_dir, POLICY_JSON)
    leaves_path = os.path.join(path_dir, POLICY_LEAVES)
    for path in (json_path, leaves_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no {os.path.basename(path)} in {os.fspath(path_dir)!r}; expected a directory "
                "written by rlto.nets.save_policy (a run directory or its checkpoint)."
            )
    with open(json_path) as f:
        arch = json.load(f)
    if arch.get("format") != _FORMAT or arch.get("version") != _VERSION:
        raise ValueError(
            f"{json_path} is not an {_FORMAT} version {_VERSION} file "
            f"(format={arch.get('format')!r}, version={arch.get('version')!r})."
        )
    task = {}
    if arch.get("task_size", 0):
        name, fields = arch["task_problem"]
        if problem is None:
            try:
                problem = remake(name, json.loads(fields))
            except ProblemError as err:
                raise ProblemError(
                    f"{json_path}: the policy takes the task-space offset of problem {name!r}, "
                    f"which could not be rebuilt ({err}); pass load_policy(..., problem=...)."
                ) from None
        offset = task_offset_function(problem)
        beta = {k: jnp.zeros(shape) for k, shape in zip(arch["param_keys"], arch["param_shapes"],
                                                        strict=True)}
        size = math.prod(jax.eval_shape(offset, jnp.zeros(arch["nx"]), beta).shape)
        if problem.nx != arch["nx"] or size != arch["task_size"]:
            raise ProblemError(
                f"{json_path}: the policy takes a state of size {arch['nx']} and a task offset "
                f"of size {arch['task_size']}; problem {problem.name!r} has nx={problem.nx} and "
                f"an offset of size {size}. Pass the problem the policy was trained on."
            )
        task = {"task_offset": offset, "task_size": arch["task_size"],
                "task_problem": (name, fields)}
    skeleton = Policy(
        arch["nx"],
        arch["nu"],
        arch["hidden"],
        [-math.inf if v is None else v for v in arch["u_lower"]],
        [math.inf if v is None else v for v in arch["u_upper"]],
        arch["param_keys"],
        arch["param_shapes"],
        key=jax.random.key(0),
        activation=arch["activation"],
        dtype=arch["dtype"],
        angles=arch.get("angles", ()),
        **task,
    )
    return eqx.tree_deserialise_leaves(leaves_path, skeleton)


def _bounds(value: Any, nu: int, name: str) -> tuple[float, ...]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(nu, float(arr))
    if arr.shape != (nu,) or np.isnan(arr).any():
        raise ValueError(f"{name} must be a scalar or ({nu},) without NaN; got {arr.tolist()}.")
    return tuple(float(v) for v in arr)


def _normalization_arrays(mean: Any, scale: Any, d: int, dtype: str):
    mean = jnp.asarray(mean, dtype)
    scale = jnp.asarray(scale, dtype)
    if mean.shape != (d,) or scale.shape != (d,):
        raise ValueError(
            f"normalization mean and scale must have shape ({d},) (the input size nx + "
            f"conditioning params); got {mean.shape} and {scale.shape}."
        )
    if not isinstance(mean, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(mean))):
        raise ValueError("normalization mean must be finite.")
    if not isinstance(scale, jax.core.Tracer) and not bool(
        jnp.all(jnp.isfinite(scale) & (scale > 0))
    ):
        raise ValueError("normalization scale must be positive and finite.")
    return mean, scale
