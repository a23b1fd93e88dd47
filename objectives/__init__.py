"""Training objectives and their registry.

``get_objective(name, **kwargs)`` builds any registered objective; ``register_objective``
is the decorator that adds new ones.  Importing this package registers the built-ins.
"""

from gfn.objectives.base import (
    LOG_REWARD_FLOOR,
    Objective,
    floor_log_reward,
    get_objective,
    list_objectives,
    objective_class,
    register_objective,
)
from gfn.objectives.tb import TrajectoryBalance, trajectory_log_ratio
from gfn.objectives.db import DetailedBalance, db_residuals

__all__ = [
    "LOG_REWARD_FLOOR", "Objective", "floor_log_reward", "get_objective", "list_objectives",
    "objective_class", "register_objective", "TrajectoryBalance", "trajectory_log_ratio",
    "DetailedBalance", "db_residuals",
]

# objectives of issue 3 (importing registers them)
from gfn.objectives.subtb import SubTrajectoryBalance, node_potentials, subtb_from_potentials  # noqa: E402
from gfn.objectives.fm import FlowMatching  # noqa: E402
from gfn.objectives.fl import ForwardLookingDB, ForwardLookingSubTB, slice_trajectories  # noqa: E402
from gfn.objectives.qm import QuantileMatching  # noqa: E402
from gfn.objectives.modified_db import ModifiedDB  # noqa: E402
from gfn.objectives.tb_variants import MaxEntTB, VarGrad  # noqa: E402

__all__ += [
    "SubTrajectoryBalance", "node_potentials", "subtb_from_potentials", "FlowMatching", "ForwardLookingDB",
    "ForwardLookingSubTB", "slice_trajectories", "QuantileMatching", "ModifiedDB", "MaxEntTB", "VarGrad",
]

# variational-inference objectives (issue 21)
from gfn.objectives.vi import ForwardKL, ReverseKL, ReweightedWakeSleep  # noqa: E402
__all__ += ["ReverseKL", "ForwardKL", "ReweightedWakeSleep"]

# stochastic environments (issue 23)
from gfn.objectives.stochastic_db import StochasticDB  # noqa: E402
__all__ += ["StochasticDB"]
