"""The environment zoo, installed as ``gfn.envs``.

``make_env(name, **kwargs)`` builds a registered environment; ``register_env`` adds one.
"""

from __future__ import annotations

from typing import Callable, Dict

from gfn.envs.hypergrid import HyperGrid, HyperGridReward

_ENVS: Dict[str, Callable] = {}


def register_env(name: str, factory: Callable | None = None):
    """Register an environment factory (usable as a decorator)."""

    def deco(f):
        if name in _ENVS and _ENVS[name] is not f:
            raise ValueError(f"environment name {name!r} is already registered")
        _ENVS[name] = f
        return f

    return deco(factory) if factory is not None else deco


def make_env(name: str, **kwargs):
    """Instantiate a registered environment by name."""
    if name not in _ENVS:
        raise KeyError(f"unknown environment {name!r}; registered: {', '.join(sorted(_ENVS))}")
    return _ENVS[name](**kwargs)


def list_envs() -> list[str]:
    """Names of registered environments."""
    return sorted(_ENVS)


def env_factory(name: str) -> Callable:
    """The class or factory registered under ``name`` (for introspecting its parameters)."""
    if name not in _ENVS:
        raise KeyError(f"unknown environment {name!r}; registered: {', '.join(sorted(_ENVS))}")
    return _ENVS[name]


register_env("hypergrid", HyperGrid)

__all__ = ["HyperGrid", "HyperGridReward", "register_env", "make_env", "list_envs", "env_factory",
           "BitSequence", "TFBind8", "QM9Str", "RNABinding", "SequenceEnv", "Box", "BoxReward", "Line",
           "GaussianMixtureReward", "Ising", "IsingEnergy", "BinaryEBM", "MoleculeEnv"]

# sequence zoo (issue 5)
from gfn.envs.sequences import BitSequence, QM9Str, RNABinding, SequenceEnv, TFBind8  # noqa: E402
register_env("bitseq", BitSequence)
register_env("tfbind8", TFBind8)
register_env("qm9str", QM9Str)
register_env("rna", RNABinding)

# continuous and energy-based environments (issue 7)
from gfn.envs.box import Box, BoxReward  # noqa: E402
from gfn.envs.line import Line, GaussianMixtureReward  # noqa: E402
from gfn.envs.ising import BinaryEBM, Ising, IsingEnergy  # noqa: E402
register_env("box", Box)
register_env("line", Line)
register_env("ising", Ising)
from gfn.envs.molecules import MoleculeEnv  # noqa: E402  (RDKit is imported lazily, only for rewards)
register_env("molecules", MoleculeEnv)

# Bayesian structure learning (issue 21)
from gfn.envs.dag import DAGEnv  # noqa: E402
register_env("dag", DAGEnv)
__all__ += ["DAGEnv"]

# phylogenetic trees (issue 22)
from gfn.envs.phylo import PhyloTree, PhyloTreeContinuous  # noqa: E402
register_env("phylo", PhyloTree)
register_env("phylo_continuous", PhyloTreeContinuous)
__all__ += ["PhyloTree", "PhyloTreeContinuous"]

# multi-objective tasks (issue 20)
from gfn.envs.multiobjective import BraninCurrin, NGrams, TFBind8Multi  # noqa: E402
register_env("branin_currin", BraninCurrin)
register_env("tfbind8_multi", TFBind8Multi)
register_env("ngrams", NGrams)
__all__ += ["BraninCurrin", "TFBind8Multi", "NGrams"]
