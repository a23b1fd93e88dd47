"""Diffusion samplers in R^d: GFlowNets over (x, t) sampling unnormalised densities (issue #19).

* :mod:`.targets` -- benchmark targets (``make_target``: gmm9, gmm25, gmm40, funnel, manywell) and
  ``EnergyTarget`` for any differentiable energy.
* :mod:`.env` -- :class:`DiffusionEnv`: forward Gaussian kernels, the Brownian-bridge (default) or
  variance-preserving backward kernel.
* :mod:`.policy` -- :class:`DiffusionPolicy`: time-embedded drift (+ Langevin term, learned variance,
  log-flow head, learned backward mean/variance corrections).
* :mod:`.sampler` -- batched rollouts and path scoring.
* :mod:`.local_search` -- parallel MALA and the rank-prioritised buffer.
* :mod:`.trainer` -- :class:`DiffusionTrainer` (TB, VarGrad, DB, SubTB, FL-SubTB, PIS; exploration,
  local search; metrics).

:func:`build` assembles env + policy + trainer for a named target with the per-target defaults of
Sendera et al. 2024 (``sigma = sqrt(t_scale)``: t_scale 5 for the mixtures, 1 for funnel and manywell).
"""

from __future__ import annotations

import math
from typing import Optional

from .env import DiffusionEnv, gaussian_log_prob
from .policy import DiffusionPolicy
from .sampler import log_pb, rollout, sample_backward, score_path
from .targets import EnergyTarget, Target, make_target
from .trainer import DiffusionConfig, DiffusionTrainer

# authors' --t_scale per target (README commands and train.py default); sigma = sqrt(t_scale)
T_SCALE = {"gmm9": 5.0, "gmm25": 5.0, "gmm40": 5.0, "funnel": 1.0, "manywell": 1.0}


def default_sigma(target: Target) -> float:
    """The diffusion scale for a target: sqrt of the authors' t_scale (1 for unknown targets)."""
    return math.sqrt(T_SCALE.get(getattr(target, "name", ""), 1.0))


def build(target, steps: int = 100, sigma: Optional[float] = None, dim: Optional[int] = None,
          hidden: int = 64, harmonics: int = 64, joint_layers: int = 2, langevin: bool = False,
          learn_variance: bool = False, config: Optional[DiffusionConfig] = None, backward: str = "bridge",
          beta_min: float = 0.1, beta_max: float = 20.0, learn_backward: bool = False,
          pb_scale_range: float = 0.1) -> DiffusionTrainer:
    """Env, policy and trainer for ``target`` (a name for :func:`make_target` or a ``Target``).
    ``backward``: ``"bridge"`` or ``"vp"`` (:class:`DiffusionEnv`); ``learn_backward``: learned
    backward mean/variance corrections within ``1 +- pb_scale_range``.  The policy's parameters
    are initialised from ``config.seed``."""
    import torch

    if isinstance(target, str):
        target = make_target(target, dim)
    config = config or DiffusionConfig()
    sigma = default_sigma(target) if sigma is None else sigma
    env = DiffusionEnv(target.log_reward, target.dim, steps, sigma, log_z=target.log_z, target=target,
                       backward=backward, beta_min=beta_min, beta_max=beta_max)
    torch.manual_seed(config.seed)
    policy = DiffusionPolicy(target.dim, steps, hidden, harmonics, joint_layers, langevin=langevin,
                             learn_variance=learn_variance, learn_backward=learn_backward,
                             pb_scale_range=pb_scale_range, flow=config.objective in ("db", "subtb", "fl-subtb"))
    return DiffusionTrainer(env, policy, config)


__all__ = ["DiffusionEnv", "DiffusionPolicy", "DiffusionConfig", "DiffusionTrainer", "EnergyTarget", "Target",
           "make_target", "rollout", "score_path", "log_pb", "sample_backward", "gaussian_log_prob", "build", "default_sigma", "T_SCALE"]
