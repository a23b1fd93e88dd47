"""Trajectory balance (Malkin et al. 2022).

For a complete trajectory tau = (s_0 -> ... -> x -> exit)::

    delta(tau) = log Z + sum_t log P_F(s_{t+1} | s_t) + log P_F(exit | x) - log R(x) - sum_t log P_B(s_t | s_{t+1})

and the loss is the batch mean of ``delta**2``.  log Z is learned (the trainer gives it its own
learning rate) and may be conditional.
"""

from __future__ import annotations

import torch

from gfn.estimators import GFlowNet
from gfn.ops import segment_sum
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, register_objective


def trajectory_log_ratio(model: GFlowNet, batch: TrajectoryBatch, pb: bool = True) -> torch.Tensor:
    """Per trajectory ``sum log P_F - sum log P_B`` (one batched evaluation, segment sums)."""
    scores = model.evaluate(batch, pf=True, pb=pb)
    per_row = scores.log_pf - scores.log_pb if pb else scores.log_pf
    return segment_sum(per_row, batch.ptr)


@register_objective("tb")
class TrajectoryBalance(Objective):
    """Trajectory balance: (log Z + log P_F(tau) - log R(x) - log P_B(tau | x))^2, batch mean."""

    needs_log_z = True

    def residuals(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """delta(tau) for every trajectory (raises on pieces that are not whole trajectories)."""
        batch.require_whole(self.name or type(self).__name__)
        log_z = model.log_z(batch.batch_size, batch.cond)
        return log_z + trajectory_log_ratio(model, batch) - self.log_rewards(batch)

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Mean squared TB residual."""
        return self.residuals(model, batch).pow(2).mean()
