"""Trajectory-balance variants: VarGrad (log Z from the batch) and MaxEnt TB (uniform P_B).

* ``vargrad`` (Richter et al. 2020; Zhang et al. 2023): with
  ``zeta(tau) = log R(x) + log P_B(tau | x) - log P_F(tau)``, every trajectory gives an estimate
  of log Z; the loss is the batch variance ``mean_b (zeta_b - mean zeta)^2`` (computed per
  conditioning value when the batch is conditional).  Centring with a detached mean gives the
  same gradient, since the deviations sum to zero.  No log Z parameter is trained; its value is
  set to the latest batch estimate so logs and ``metrics.json`` show it (unconditional models).
  ``uniform_pb=True`` scores P_B as uniform over allowed backward actions.
* :class:`AugmentedFlowTB` (not registered; ``--intrinsic rnd:eta,flow`` installs it): TB with
  GAFN's edge-based augmentation in its authors' form, each backward term
  ``log(P_B(s_t | s_{t+1}) + b(s_{t+1}) / F(s_{t+1}))`` with the per-state intrinsic bonus ``b``
  and a learned state flow ``F`` (the terminal bonus is already in the batch's log-rewards).
* ``maxent``: TB with P_B fixed to uniform over allowed backward actions (the uniform P_B is
  computed from the backward mask, so the model's P_B head is never used; its default model has
  none).
"""

from __future__ import annotations

import torch

from gfn.distributions import MaskedCategorical
from gfn.estimators import GFlowNet
from gfn.ops import segment_sum
from gfn.states import batch_index
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, register_objective
from gfn.env import DiscreteEnv
from gfn.objectives.common import as_bool
from gfn.objectives.tb import TrajectoryBalance


def uniform_log_pb(model: GFlowNet, batch: TrajectoryBatch, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """log P_B of every row's backward transition under the uniform P_B (0 at first rows), in ``dtype``."""
    env = model.env
    if not isinstance(env, DiscreteEnv):
        raise TypeError(f"a uniform P_B needs a finite backward action set; {type(env).__name__} is not a "
                        "DiscreteEnv (for continuous envs use tb with the env's fixed backward policy)")
    rows = (~batch.is_first).nonzero().squeeze(1)
    sub = batch_index(batch.states, rows)
    mask = env.backward_mask(sub)
    dist = MaskedCategorical(torch.zeros(mask.shape, dtype=dtype, device=mask.device), mask)
    lp = env.transition_log_prob(dist, sub, batch.bwd_actions[rows], backward=True)
    return torch.zeros(batch.n_rows, dtype=lp.dtype, device=lp.device).index_copy(0, rows, lp)


def log_ratio(model: GFlowNet, batch: TrajectoryBatch, uniform_pb: bool) -> torch.Tensor:
    """Per trajectory ``log P_F(tau) - log P_B(tau | x)`` (learned or uniform P_B)."""
    s = model.evaluate(batch, pf=True, pb=not uniform_pb)
    log_pb = uniform_log_pb(model, batch, s.log_pf.dtype) if uniform_pb else s.log_pb
    return segment_sum(s.log_pf - log_pb, batch.ptr)


@register_objective("vargrad")
class VarGrad(Objective):
    """Batch variance of the per-trajectory log Z estimates (no learned log Z)."""

    def __init__(self, uniform_pb: bool = False, **kw):
        super().__init__(**kw)
        self.uniform_pb = as_bool(uniform_pb, "uniform_pb")
        self.uses_pb = not self.uniform_pb

    def log_z_estimates(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """zeta_b = log R(x_b) - (log P_F(tau_b) - log P_B(tau_b | x_b))."""
        batch.require_whole(self.name)
        ratio = log_ratio(model, batch, self.uniform_pb)
        return self.log_rewards(batch).to(ratio.dtype) - ratio

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Mean squared deviation of zeta from its (per-condition) batch mean."""
        zeta = self.log_z_estimates(model, batch)
        if batch.cond is None:
            center = zeta.detach().mean().expand_as(zeta)
        else:
            _, group = torch.unique(batch.cond, dim=0, return_inverse=True)
            n_groups = int(group.max()) + 1
            sums = torch.zeros(n_groups, dtype=zeta.dtype, device=zeta.device).index_add(0, group, zeta.detach())
            counts = torch.bincount(group, minlength=n_groups).to(zeta.dtype)
            center = (sums / counts)[group]
        value = getattr(model.log_z, "value", None)
        if batch.cond is None and isinstance(value, torch.nn.Parameter):
            with torch.no_grad():
                value.copy_(center[0])
        return (zeta - center).pow(2).mean()


@register_objective("maxent")
class MaxEntTB(TrajectoryBalance):
    """Trajectory balance with P_B fixed to uniform over allowed backward actions."""

    uses_pb = False

    def residuals(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """TB residual with the uniform P_B."""
        batch.require_whole(self.name)
        log_z = model.log_z(batch.batch_size, batch.cond)
        return log_z + log_ratio(model, batch, uniform_pb=True) - self.log_rewards(batch)

    def build_model(self, env, **kwargs) -> GFlowNet:
        """Default model with a uniform (parameter-free) P_B."""
        kwargs["uniform_pb"] = True
        return super().build_model(env, **kwargs)


class AugmentedFlowTB(TrajectoryBalance):
    """TB with GAFN's augmented backward flows (Pan et al. 2023, their TB code)::

        delta = log Z + sum_t log P_F(s_{t+1} | s_t) - log(R(x) + b(x))
                - sum_{s_{t+1} != x} log(P_B(s_t | s_{t+1}) + b(s_{t+1}) / F(s_{t+1})) - log P_B(. | x)

    ``b`` is the per-row bonus the :class:`gfn.intrinsic.IntrinsicReward` hook writes into
    ``batch.info[KEY]`` (it also adds ``b(x)`` to the log-reward); F is the model's log-flow head,
    trained only through this loss.  A batch without the bonus is scored by plain TB."""

    needs_flow = True
    KEY = "intrinsic_row_bonus"

    def residuals(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        bonus = batch.info.get(self.KEY)
        if bonus is None:
            return super().residuals(model, batch)
        batch.require_whole("tb (GAFN flow augmentation)")
        if bonus.shape != (batch.n_rows,):
            raise ValueError(f"batch.info[{self.KEY!r}] has shape {tuple(bonus.shape)}, expected one bonus per "
                             f"row ({batch.n_rows}); was the batch split after the intrinsic-reward hook?")
        s = model.evaluate(batch, pf=True, pb=True, flow=True)
        augmented = torch.logaddexp(s.log_pb, torch.log(bonus.to(s.log_pb.dtype)) - s.log_flow)
        log_pb = torch.where(batch.is_first | batch.is_last, s.log_pb, augmented)
        log_z = model.log_z(batch.batch_size, batch.cond)
        return log_z + segment_sum(s.log_pf - log_pb, batch.ptr) - self.log_rewards(batch)
