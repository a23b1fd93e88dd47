"""Detailed balance (Bengio et al. 2023, "GFlowNet Foundations").

For every transition s -> s' of a trajectory::

    delta(s, s') = log F(s) + log P_F(s' | s) - log F(s') - log P_B(s | s')

and for the exit transition at the terminal state x::

    delta(x) = log F(x) + log P_F(exit | x) - log R(x)

The loss is the mean of ``delta**2`` over all transitions in the batch (exit transitions
included).  Incomplete trajectories (no exit) contribute only their inner transitions.
"""

from __future__ import annotations

import torch

from gfn.estimators import GFlowNet
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, register_objective
from gfn.objectives.common import mean_or_zero


def db_residuals(log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor,
                 log_rewards: torch.Tensor, batch: TrajectoryBatch) -> torch.Tensor:
    """Residual of every transition, ordered by row; exit residuals sit on last rows.

    Rows that are the last state of an incomplete trajectory are dropped.
    """
    is_last = batch.is_last
    next_flow = torch.roll(log_flow, -1)
    next_pb = torch.roll(log_pb, -1)
    log_r_rows = torch.zeros_like(log_flow).index_copy(0, batch.last_rows, log_rewards.to(log_flow.dtype))
    target = torch.where(is_last, log_r_rows, next_flow + next_pb)
    delta = log_flow + log_pf - target
    if batch.is_complete is not None and not bool(batch.is_complete.all()):
        drop = torch.zeros_like(is_last)
        drop[batch.last_rows[~batch.is_complete]] = True
        delta = delta[~drop]
    return delta


@register_objective("db")
class DetailedBalance(Objective):
    """Detailed balance with a learned state flow log F(s); mean over transitions."""

    needs_flow = True

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Mean squared DB residual over all transitions of the batch."""
        s = model.evaluate(batch, pf=True, pb=True, flow=True)
        return mean_or_zero(db_residuals(s.log_pf, s.log_pb, s.log_flow, self.log_rewards(batch), batch).pow(2))
