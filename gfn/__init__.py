"""gfn: Generative Flow Networks in PyTorch.

Core pieces: batched environments (:class:`Env`, :class:`DiscreteEnv`, :class:`ContinuousEnv`),
estimators (:class:`GFlowNet`), the vectorised :class:`Sampler`, packed
:class:`TrajectoryBatch`, segment ops (:mod:`gfn.ops`), the generic :class:`Trainer`,
metrics (:mod:`gfn.metrics`) and the conformance suite :func:`check_env`.
Environments live in :mod:`gfn.envs`, objectives in :mod:`gfn.objectives`.
The distribution is named ``gfnkit`` (what pip lists); the import name is ``gfn``.
"""

from gfn.install_check import check_installation as _check_installation

_check_installation()  # another distribution (e.g. torchgfn) installing `gfn` too: one clear error

from gfn.env import ContinuousEnv, DiscreteEnv, Env, EnvError, Reward
from gfn.distributions import MaskedCategorical
from gfn.estimators import DiscretePolicy, GFlowNet, LogZ, ScalarHead, UniformPolicy, build_gflownet, mlp
from gfn.trajectories import TrajectoryBatch
from gfn.sampler import Exploration, Sampler
from gfn.replay import ReplayBuffer, RewardPrioritizedReplay, make_replay
from gfn.trainer import Trainer, TrainerConfig, make_optimizer
from gfn.check import check_env, CheckReport
from gfn.utils import seed_everything

__version__ = "0.1.0"

__all__ = [
    "Env", "DiscreteEnv", "ContinuousEnv", "EnvError", "Reward", "MaskedCategorical",
    "DiscretePolicy", "UniformPolicy", "GFlowNet", "LogZ", "ScalarHead", "build_gflownet", "mlp",
    "TrajectoryBatch", "Sampler", "Exploration", "ReplayBuffer", "RewardPrioritizedReplay", "make_replay", "Trainer", "TrainerConfig",
    "make_optimizer", "check_env", "CheckReport", "seed_everything",
]


def __getattr__(name):
    """``gfn.load_run``: imported on first use (it pulls in the run machinery)."""
    if name == "load_run":
        from gfn.load import load_run
        return load_run
    raise AttributeError(f"module 'gfn' has no attribute {name!r}")
