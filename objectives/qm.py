"""Quantile matching (Zhang et al. 2023, "Distributional GFlowNets with Quantile Flows").

A :class:`gfn.quantile.QuantileGFlowNet` predicts quantiles ``theta_tau(s, a)`` of log edge
flows.  Every visited non-initial state ``s'`` (and the node reached by exit from each
terminal ``x``) gives flow-matching equations between quantiles:

* in-flow at level ``beta_i`` (one level shared by all parents of the node)::

      I_i(s') = log sum_{(s, a) -> s'} exp theta_{beta_i}(s, a)

* out-flow at level ``beta~_j`` (levels drawn independently of the in-levels)::

      O_j(s') = log sum_{a allowed at s'} exp theta_{beta~_j}(s', a)       (exit included)

  and for the exit node of ``x``: ``I_i = theta_{beta_i}(x, exit)``, ``O_j = log R(x)`` at every level.

The loss of a node is ``(1 / N') sum_j sum_i rho_{beta_i}(O_j - I_i)`` with the quantile-Huber
loss ``rho`` (kappa = 1), averaged over nodes.  Defaults ``N = N' = 8`` levels.  The sampling
policy is the softmax of ``logsumexp`` over ``n_samples`` quantile samples, optionally under a
risk distortion (``risk`` = neutral, cvar, wang, cpw, pow; ``risk_param`` its eta), see
:mod:`gfn.quantile`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from gfn.estimators import GFlowNet
from gfn.ops import segment_logsumexp
from gfn.quantile import QuantileGFlowNet, build_quantile_gflownet, check_risk, quantile_huber
from gfn.states import batch_cat, batch_index
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, register_objective
from gfn.objectives.common import as_float, as_int
from gfn.objectives.fm import flow_nodes


@register_objective("qm")
class QuantileMatching(Objective):
    """Quantile matching of log in-/out-flows with a quantile-Huber loss; builds its own model."""

    uses_pb = False

    def __init__(self, n_quantiles: int = 8, n_out_quantiles: Optional[int] = None, kappa: float = 1.0,
                 n_samples: int = 8, risk: str = "neutral", risk_param: Optional[float] = None,
                 n_cos: int = 64, **kw):
        super().__init__(**kw)
        self.n_quantiles = as_int(n_quantiles, "n_quantiles")
        self.n_out_quantiles = (self.n_quantiles if n_out_quantiles is None
                                else as_int(n_out_quantiles, "n_out_quantiles"))
        self.kappa = as_float(kappa, "kappa", positive=True)
        self.n_samples = as_int(n_samples, "n_samples")
        self.risk = risk
        self.risk_param = check_risk(risk, None if risk_param is None else as_float(risk_param, "risk_param"))
        self.n_cos = as_int(n_cos, "n_cos")

    def build_model(self, env, hidden: int = 256, n_layers: int = 2, cond_dim: int = 0, **ignored) -> QuantileGFlowNet:
        """IQN quantile model (``shared_trunk``/``uniform_pb`` are ignored: P_B is unused and uniform)."""
        return build_quantile_gflownet(env, hidden=hidden, n_layers=n_layers, cond_dim=cond_dim,
                                       n_samples=self.n_samples, risk=self.risk, risk_param=self.risk_param,
                                       n_cos=self.n_cos)

    @torch.no_grad()
    def log_z_estimate(self, model: GFlowNet, cond: Optional[torch.Tensor] = None) -> float:
        """log Z ~ log E[out-flow of s_0]: log-mean-exp of the out-flow quantiles on a midpoint grid."""
        s0 = model.env.initial_states(1)
        k = self.n_quantiles
        taus = ((torch.arange(k, device=model.env.device, dtype=torch.float32) + 0.5) / k).unsqueeze(0)
        q = model.quantiles(s0, taus, cond)[0]                                   # [K, A]
        q = q.masked_fill(~model.env.forward_mask(s0)[0].unsqueeze(0), float("-inf"))
        return float(torch.logsumexp(torch.logsumexp(q, dim=-1), 0) - math.log(k))

    def sample_levels(self, model: GFlowNet, batch: TrajectoryBatch):
        """Uniform levels: in-levels of state nodes, out-levels of state nodes, in-levels of exit nodes."""
        n_nodes = int((~model.env.is_initial(batch.states)).sum())
        n_term = int(batch.is_complete.sum()) if batch.is_complete is not None else batch.batch_size
        dev = batch.ptr.device
        return (torch.rand(n_nodes, self.n_quantiles, device=dev),
                torch.rand(n_nodes, self.n_out_quantiles, device=dev),
                torch.rand(n_term, self.n_quantiles, device=dev))

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Quantile-matching loss at freshly drawn levels."""
        return self.loss_at_levels(model, batch, *self.sample_levels(model, batch))

    def loss_at_levels(self, model: GFlowNet, batch: TrajectoryBatch, in_levels: torch.Tensor,
                       out_levels: torch.Tensor, exit_levels: torch.Tensor) -> torch.Tensor:
        """The loss at given levels (for tests and custom level schedules)."""
        if not hasattr(model, "quantiles"):
            raise TypeError("qm needs a quantile model (QuantileGFlowNet); build it with objective.build_model(env)")
        env = model.env
        node_rows, parents = flow_nodes(model, batch)
        done = batch.is_complete if batch.is_complete is not None else torch.ones(
            batch.batch_size, dtype=torch.bool, device=batch.ptr.device)
        term_rows = batch.last_rows[done]
        n_nodes, n_edges, n_term = node_rows.numel(), parents.n_edges, term_rows.numel()
        if in_levels.shape[0] != n_nodes or out_levels.shape[0] != n_nodes or exit_levels.shape[0] != n_term:
            raise ValueError(f"levels for {n_nodes} state nodes and {n_term} exit nodes expected, got "
                             f"{tuple(in_levels.shape)}, {tuple(out_levels.shape)}, {tuple(exit_levels.shape)}")
        if n_nodes + n_term == 0:  # no equations (e.g. single-state pieces): zero, attached to the model
            return next(model.parameters()).sum() * 0.0
        n_in, n_out = in_levels.shape[1], out_levels.shape[1]
        node_states = batch_index(batch.states, node_rows)
        term_states = batch_index(batch.states, term_rows)
        cond = batch.cond_per_row()
        cond_node = None if cond is None else cond[node_rows]
        cond_term = None if cond is None else cond[term_rows]
        cond_edge = None if cond is None else cond_node[parents.child]
        edge_levels = in_levels[parents.child]
        parts = [(node_states, out_levels, cond_node), (parents.states, edge_levels, cond_edge),
                 (term_states, exit_levels, cond_term)]
        if n_in == n_out:
            # one trunk + head pass over every state that needs quantiles
            parts = [p for p in parts if p[1].shape[0] > 0]
            states = batch_cat([p[0] for p in parts])
            taus = torch.cat([p[1] for p in parts])
            c = None if cond is None else torch.cat([p[2] for p in parts])
            q = model.quantiles(states, taus, c)
            q_node, q_edge, q_term = torch.split(q, [n_nodes, n_edges, n_term])
        else:
            q_node = model.quantiles(node_states, out_levels, cond_node)
            q_edge = (model.quantiles(parents.states, edge_levels, cond_edge) if n_edges
                      else out_levels.new_zeros(0, n_in, env.n_actions))
            q_term = model.quantiles(term_states, exit_levels, cond_term)
        mask = env.forward_mask(node_states)
        out_flow = torch.logsumexp(q_node.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)     # [n, N']
        edge = q_edge.gather(2, parents.actions.view(-1, 1, 1).expand(-1, n_in, 1)).squeeze(2)         # [P, N]
        in_flow = segment_logsumexp(edge, parents.ptr)                                                # [n, N]
        u = out_flow.unsqueeze(1) - in_flow.unsqueeze(2)                                               # [n, N, N']
        node_loss = quantile_huber(u, in_levels.to(u.dtype).unsqueeze(2), self.kappa).sum(1).mean(1)
        log_r = self.log_rewards(batch)[done].to(q_term.dtype)
        u_exit = log_r.unsqueeze(1) - q_term[:, :, env.exit_action]                                     # [n_term, N]
        exit_loss = quantile_huber(u_exit, exit_levels.to(u_exit.dtype), self.kappa).sum(1)
        return torch.cat([node_loss, exit_loss]).mean()
