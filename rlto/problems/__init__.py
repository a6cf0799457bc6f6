"""Built-in problems; each module registers its factory with rlto.problem.register.

lqr, pendulum, double_pendulum (seed 002's tasks) and oned, single_integrator,
double_integrator, car, manipulator3 (CACTO's systems); obstacles holds CACTO's shared cost terms.
"""

from __future__ import annotations

import dataclasses

from rlto.problem import ProblemError


def resolve_config(name: str, config, overrides: dict):
    """config with `overrides` replacing its fields; a ProblemError lists the valid fields."""
    fields = [f.name for f in dataclasses.fields(config)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ProblemError(
            f"{name}: unknown option(s) {unknown}; {type(config).__name__} has the fields "
            f"{', '.join(fields)}."
        )
    return dataclasses.replace(config, **overrides)


from rlto.problems import (  # noqa: E402, F401  (imported to register)
    car,
    double_pendulum,
    integrators,
    lqr,
    manipulator3,
    obstacles,
    oned,
    pendulum,
    ur5,
)
