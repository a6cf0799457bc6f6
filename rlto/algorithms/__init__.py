"""Policy-learning algorithms, one file each; `ALGORITHMS` maps a name to its module.

Each module provides a frozen dataclass config, `init(problem, config, key) -> state` (a pytree
with at least `policy`, `iteration`, `sim_calls`, `to_iterations`) and
`step(problem, config, state) -> (state, info dict)`: one outer iteration of its paper's loop.
"""

from rlto.algorithms import cacto, pddp, plal

ALGORITHMS = {
    "pddp": (pddp, pddp.PddpConfig),
    "plal": (plal, plal.PlalConfig),
    "cacto": (cacto, cacto.CactoConfig),
    "cacto-sl": (cacto, cacto.CactoSlConfig),
}
