"""Policy-learning algorithms, one file each; `ALGORITHMS` maps a name to its module.

Each module provides a frozen dataclass config, `init(problem, config, key) -> state` (a pytree
with at least `policy`, `iteration`, `sim_calls`, `to_iterations`) and
`step(problem, config, state) -> (state, info dict)`: one outer iteration of its paper's loop.
Optionally `attach(problem, config, state, run_path) -> state`, which rlto.train calls after
loading a checkpoint, for state kept in files of the run directory (the SB3 baselines).
"""

from rlto.algorithms import baselines, cacto, dpl, pddp, plal, pods

ALGORITHMS = {
    "pddp": (pddp, pddp.PddpConfig),
    "plal": (plal, plal.PlalConfig),
    "dpl": (dpl, dpl.DplConfig),
    "pods": (pods, pods.PodsConfig),
    "cacto": (cacto, cacto.CactoConfig),
    "cacto-sl": (cacto, cacto.CactoSlConfig),
    "ppo": (baselines, baselines.PpoConfig),
    "sac": (baselines, baselines.SacConfig),
    "td3": (baselines, baselines.Td3Config),
    "ddpg": (baselines, baselines.DdpgConfig),
}
