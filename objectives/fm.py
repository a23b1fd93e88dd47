"""Flow matching (Bengio et al. 2021), on the P_F logits read as log edge flows.

The forward policy's raw logits are log edge flows ``log F(s, a)`` (so the policy is their
softmax).  Every visited non-initial state ``s'`` gives one equation, in-flow = out-flow::

    log sum_{(s, a) -> s'} F(s, a)   =   log sum_{a allowed at s'} F(s', a)      (exit included)

where the parents ``(s, a)`` are enumerated by the environment (batched, see
:mod:`gfn.parents`) and the in-flow is one segment log-sum-exp.  The node reached by exit
from ``x`` has in-flow ``F(x, exit)`` and out-flow ``R(x)``::

    log F(x, exit)  =  log R(x)

``reward_matching="terminal"`` (default) writes this equation for the terminal state of every
complete trajectory; ``"all"`` writes it for every visited state where exit is allowed (more
signal; calls ``env.log_reward`` on those states).

Epsilon smoothing: both sides become ``log(epsilon + flow)`` (``logaddexp(log flow, log epsilon)``)
so tiny flows do not produce huge gradients; ``epsilon = 0`` disables it.  Exact flows still
give loss 0.  The loss is the mean of the squared differences over all equations.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from gfn.env import DiscreteEnv
from gfn.estimators import GFlowNet
from gfn.ops import segment_logsumexp
from gfn.parents import ParentEdges, enumerate_parents
from gfn.states import batch_cat, batch_index
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, floor_log_reward, register_objective
from gfn.objectives.common import as_float, mean_or_zero

REWARD_MATCHING = ("terminal", "all")


def smooth(log_x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``log(epsilon + exp(log_x))`` (identity for epsilon = 0)."""
    if epsilon <= 0:
        return log_x
    return torch.logaddexp(log_x, torch.full_like(log_x, math.log(epsilon)))


def flow_nodes(model: GFlowNet, batch: TrajectoryBatch) -> tuple[torch.Tensor, ParentEdges]:
    """Rows of ``batch`` holding non-initial states, and all parent edges of those states."""
    env = model.env
    if not isinstance(env, DiscreteEnv):
        raise TypeError(f"flow-matching objectives need a DiscreteEnv, got {type(env).__name__}")
    node_rows = (~env.is_initial(batch.states)).nonzero().squeeze(1)
    return node_rows, enumerate_parents(env, batch_index(batch.states, node_rows))


def terminal_equations(model: GFlowNet, batch: TrajectoryBatch, mode: str, floor: float,
                       exit_allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose exit edge is matched to the reward, and their floored log R."""
    if mode == "terminal":
        done = batch.is_complete if batch.is_complete is not None else torch.ones(
            batch.batch_size, dtype=torch.bool, device=batch.ptr.device)
        return batch.last_rows[done], floor_log_reward(batch.log_rewards[done], floor)
    rows = exit_allowed.nonzero().squeeze(1)
    with torch.no_grad():
        lr = model.env.checked_log_reward(batch_index(batch.states, rows))
    return rows, floor_log_reward(lr, floor)


@register_objective("fm")
class FlowMatching(Objective):
    """Flow matching on log edge flows = P_F logits; parents enumerated in one batch."""

    uses_pb = False

    def __init__(self, epsilon: float = 1e-6, reward_matching: str = "terminal", **kw):
        super().__init__(**kw)
        self.epsilon = as_float(epsilon, "epsilon", min_value=0.0)
        if reward_matching not in REWARD_MATCHING:
            raise ValueError(f"reward_matching must be one of {REWARD_MATCHING}, got {reward_matching!r}")
        self.reward_matching = reward_matching

    def equations(self, model: GFlowNet, batch: TrajectoryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log in-flows and log out-flows (unsmoothed) of every equation, concatenated."""
        env = model.env
        node_rows, parents = flow_nodes(model, batch)
        n = batch.n_rows
        states = batch_cat([batch.states, parents.states]) if parents.n_edges else batch.states
        cond = batch.cond_per_row()
        if cond is not None:
            cond = torch.cat([cond, cond[node_rows][parents.child]])
        dist = model.pf(model.encode(states, cond), states)
        if not hasattr(dist, "logits"):
            raise TypeError("flow matching reads the P_F logits as log edge flows; the policy must return a "
                            "MaskedCategorical")
        logits = dist.logits                      # -inf where masked
        row_logits, parent_logits = logits[:n], logits[n:]
        out_flow = torch.logsumexp(row_logits[node_rows], dim=-1)
        edge = parent_logits.gather(1, parents.actions.unsqueeze(1)).squeeze(1)
        in_flow = segment_logsumexp(edge, parents.ptr)
        rows, log_r = terminal_equations(model, batch, self.reward_matching, self.log_reward_floor,
                                         dist.mask[:n, env.exit_action])
        exit_flow = row_logits[rows, env.exit_action]
        return torch.cat([in_flow, exit_flow]), torch.cat([out_flow, log_r.to(out_flow.dtype)])

    def build_model(self, env, **kwargs) -> GFlowNet:
        """Default model without a learned P_B (flow matching never uses P_B)."""
        kwargs["uniform_pb"] = True
        return super().build_model(env, **kwargs)

    @torch.no_grad()
    def log_z_estimate(self, model: GFlowNet, cond: Optional[torch.Tensor] = None) -> float:
        """log Z = log out-flow of s_0 = logsumexp of the edge flows at s_0."""
        s0 = model.env.initial_states(1)
        return float(torch.logsumexp(model.pf_dist(s0, cond).logits[0], 0))

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Mean squared difference of smoothed log in-flow and log out-flow."""
        lhs, rhs = self.equations(model, batch)
        return mean_or_zero((smooth(lhs, self.epsilon) - smooth(rhs, self.epsilon)).pow(2))
