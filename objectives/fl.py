"""Forward-looking objectives FL-DB and FL-SubTB (Pan et al. 2023), and trajectory slicing.

The state flow is factored through the intermediate reward, ``F(s) = F~(s) R(s)``: the flow
head predicts ``log F~(s)`` and the objectives use ``log F(s) = log F~(s) + log R(s)``.  The
node reached by exit from ``x`` has ``log F~ = 0``, i.e. log-flow ``log R(x)``.  So FL-DB is DB
and FL-SubTB is SubTB with these flows; e.g. for a transition ``s -> s'``::

    log F~(s) + log R(s) + log P_F(s' | s) = log F~(s') + log R(s') + log P_B(s | s')

and for exit at ``x``: ``log F~(x) + log P_F(exit | x) = 0``.

Every term is local, so they train on *incomplete* trajectories (``is_complete`` False: no
exit equation) and on pieces that do not start at s_0; :func:`slice_trajectories` makes such
pieces.  They need ``log R`` of intermediate states: the environment must declare
``provides_intermediate_rewards = True`` (an :class:`~gfn.env.EnvError` is raised otherwise).
"""

from __future__ import annotations

from typing import Optional

import torch

from gfn.estimators import GFlowNet
from gfn.ops import lengths_to_ptr
from gfn.states import batch_index
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, register_objective
from gfn.objectives.common import as_bool, mean_or_zero, state_log_rewards
from gfn.objectives.db import db_residuals
from gfn.objectives.subtb import SubTrajectoryBalance


@torch.no_grad()
def fl_log_z_estimate(objective: Objective, model: GFlowNet, cond: Optional[torch.Tensor] = None) -> float:
    """log Z = log F(s_0) = log F~(s_0) + log R(s_0)."""
    s0 = model.env.initial_states(1)
    log_r = state_log_rewards(model.env, s0, objective.log_reward_floor, objective.name)
    return float(model.log_flow(s0, cond)[0] + log_r[0])


def slice_trajectories(batch: TrajectoryBatch, starts: torch.Tensor, lengths: torch.Tensor) -> TrajectoryBatch:
    """Keep rows ``starts[b] : starts[b] + lengths[b]`` of every trajectory ``b`` (``lengths >= 1``).

    A piece is complete only if its trajectory was and the piece reaches its last row; it starts
    at s_0 only if its trajectory did and the piece starts at its first row.
    """
    full = batch.lengths
    starts, lengths = starts.to(full.device).long(), lengths.to(full.device).long()
    if starts.shape != full.shape or lengths.shape != full.shape:
        raise ValueError(f"starts and lengths need shape ({batch.batch_size},)")
    if bool((lengths < 1).any()) or bool((starts < 0).any()) or bool((starts + lengths > full).any()):
        raise ValueError("every slice must be non-empty and lie inside its trajectory")
    ptr = lengths_to_ptr(lengths)
    n = int(ptr[-1])
    rows = torch.repeat_interleave(batch.ptr[:-1] + starts - ptr[:-1], lengths, output_size=n) + \
        torch.arange(n, device=full.device)
    complete = torch.ones_like(full, dtype=torch.bool) if batch.is_complete is None else batch.is_complete
    return TrajectoryBatch(
        states=batch_index(batch.states, rows), ptr=ptr, actions=batch.actions[rows],
        bwd_actions=batch.bwd_actions[rows], log_rewards=batch.log_rewards, cond=batch.cond,
        log_pf=None if batch.log_pf is None else batch.log_pf[rows],
        is_complete=complete & (starts + lengths == full),
        starts_at_initial=(starts == 0) if batch.starts_at_initial is None else batch.starts_at_initial & (starts == 0),
        info=dict(batch.info))


@register_objective("fldb")
class ForwardLookingDB(Objective):
    """Detailed balance with ``log F(s) = log F~(s) + log R(s)``; works on incomplete trajectories."""

    needs_flow = True

    def log_z_estimate(self, model: GFlowNet, cond: Optional[torch.Tensor] = None) -> float:
        """log F~(s_0) + log R(s_0)."""
        return fl_log_z_estimate(self, model, cond)

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Mean squared FL-DB residual over all transitions in the batch."""
        log_r = state_log_rewards(model.env, batch.states, self.log_reward_floor, "fldb")
        s = model.evaluate(batch, pf=True, pb=True, flow=True)
        log_r = log_r.to(s.log_flow.dtype)
        delta = db_residuals(s.log_pf, s.log_pb, s.log_flow + log_r, log_r[batch.last_rows], batch)
        return mean_or_zero(delta.pow(2))


@register_objective("flsubtb")
class ForwardLookingSubTB(SubTrajectoryBalance):
    """SubTB(lambda) with ``log F(s) = log F~(s) + log R(s)``; works on incomplete trajectories."""

    def __init__(self, lamda: float = 0.9, weighting: str = "geometric_within", **kw):
        if as_bool(kw.pop("use_log_z", False), "use_log_z"):
            raise ValueError("flsubtb learns log F~(s_0); use_log_z is not available")
        super().__init__(lamda=lamda, weighting=weighting, use_log_z=False, **kw)

    def log_z_estimate(self, model: GFlowNet, cond: Optional[torch.Tensor] = None) -> float:
        """log F~(s_0) + log R(s_0)."""
        return fl_log_z_estimate(self, model, cond)

    def intermediate_log_rewards(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Floored log R(s) of every row (raises if the env does not provide them)."""
        return state_log_rewards(model.env, batch.states, self.log_reward_floor, "flsubtb")
