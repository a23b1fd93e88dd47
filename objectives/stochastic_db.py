"""Stochastic detailed balance (Pan et al. 2023, "Stochastic Generative Flow Networks").

In a stochastic environment the policy chooses an action ``a`` at ``s`` and the environment
moves to ``s'`` with probability ``P(s' | s, a)``.  Detailed balance then holds between the
state flow and a backward policy over (parent, action) pairs::

    log F(s) + log P_F(a | s) + log P(s' | s, a) = log F(s') + log P_B(s, a | s')

and at the terminal state ``log F(x) + log P_F(exit | x) = log R(x)``.  ``P_B(s, a | s')`` is
factored as ``P_B(s | s') P_B(a | s', s)``: the model's ordinary backward policy picks the
parent, a second head (:class:`BackwardActionHead`) the action chosen there.

``P(s' | s, a)`` comes from the environment (``dynamics="exact"``, when it implements
``move_log_probs``) or from a :class:`DynamicsModel` fitted by maximum likelihood on the sampled
transitions (``dynamics="learned"``, the paper's method); its negative log-likelihood is added to
the loss with weight ``dynamics_weight`` and the balance residuals use it without gradient.
Plain TB/DB on a stochastic environment ignore ``P(s' | s, a)`` and are biased (docs/stochastic.md).
"""

from __future__ import annotations

import torch
from torch import nn

from gfn.env import EnvError
from gfn.estimators import GFlowNet, mlp
from gfn.objectives.base import Objective, register_objective
from gfn.objectives.common import as_float, as_int, mean_or_zero
from gfn.states import batch_index
from gfn.trajectories import TrajectoryBatch

DYNAMICS = ("learned", "exact")


def _one_hot(idx: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(idx.shape[0], n, dtype=like.dtype, device=like.device).scatter_(1, idx.unsqueeze(1), 1.0)


class DynamicsModel(nn.Module):
    """Learned ``P(move | s, a)``: an MLP of the state's features and the one-hot action, a
    categorical over the moves allowed at ``s``."""

    def __init__(self, env, hidden: int = 256, n_layers: int = 2):
        super().__init__()
        self.env = env
        self.n_moves = env.n_actions - 1
        self.net = mlp(env.feature_dim + self.n_moves, self.n_moves, hidden, n_layers)

    def log_probs(self, states, actions: torch.Tensor) -> torch.Tensor:
        """``log P(move | s, a)`` for non-exit ``actions``, ``[N, n_moves]`` (-inf at forbidden moves)."""
        x = self.env.featurize(states)
        logits = self.net(torch.cat([x, _one_hot(actions, self.n_moves, x)], dim=-1))
        allowed = self.env.forward_mask(states)[:, :-1]
        return torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)


class BackwardActionHead(nn.Module):
    """``P_B(a | s', s)``: which action was chosen at the parent ``s`` (reached from ``s'`` by the
    backward action ``b``), a categorical over the actions allowed at ``s``."""

    def __init__(self, env, hidden: int = 256, n_layers: int = 2):
        super().__init__()
        self.env = env
        self.n_moves = env.n_actions - 1
        self.n_back = env.n_backward_actions
        self.net = mlp(env.feature_dim + self.n_back, self.n_moves, hidden, n_layers)

    def log_prob(self, children, bwd_actions: torch.Tensor, parents, actions: torch.Tensor) -> torch.Tensor:
        """``log P_B(actions | children, bwd_actions)`` per transition."""
        x = self.env.featurize(children)
        logits = self.net(torch.cat([x, _one_hot(bwd_actions, self.n_back, x)], dim=-1))
        allowed = self.env.forward_mask(parents)[:, :-1]
        lp = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        return lp.gather(1, actions.unsqueeze(1)).squeeze(1)


class StochasticHeads(nn.Module):
    """The extra estimators of stochastic DB, attached to a :class:`GFlowNet` as ``model.stochastic``."""

    def __init__(self, env, hidden: int = 256, n_layers: int = 2, learned_dynamics: bool = True):
        super().__init__()
        self.pb_action = BackwardActionHead(env, hidden, n_layers)
        self.dynamics = DynamicsModel(env, hidden, n_layers) if learned_dynamics else None


@register_objective("stochastic_db")
class StochasticDB(Objective):
    """Stochastic detailed balance with exact or learned transition probabilities."""

    needs_flow = True

    def __init__(self, dynamics: str = "learned", dynamics_weight: float = 1.0, head_hidden: int = 256,
                 head_layers: int = 2, **kw):
        super().__init__(**kw)
        if dynamics not in DYNAMICS:
            raise ValueError(f"stochastic_db: dynamics must be one of {', '.join(DYNAMICS)}, got {dynamics!r}")
        self.dynamics = dynamics
        self.dynamics_weight = as_float(dynamics_weight, "dynamics_weight", min_value=0.0)
        self.head_hidden = as_int(head_hidden, "head_hidden")
        self.head_layers = as_int(head_layers, "head_layers")

    def _check_env(self, env) -> None:
        if not getattr(env, "is_stochastic", False):
            raise EnvError(f"stochastic_db needs a stochastic environment (is_stochastic); {type(env).__name__} "
                           "is deterministic: use db")
        if self.dynamics == "exact" and not env.knows_dynamics:
            raise EnvError(f"stochastic_db: dynamics='exact' needs {type(env).__name__}.move_log_probs(); "
                           "use dynamics='learned'")

    def build_model(self, env, **kwargs) -> GFlowNet:
        """The default GFlowNet with a flow head plus :class:`StochasticHeads` as ``model.stochastic``."""
        self._check_env(env)
        model = super().build_model(env, **kwargs)
        model.stochastic = StochasticHeads(env, self.head_hidden, self.head_layers,
                                           learned_dynamics=self.dynamics == "learned")
        return model

    def residuals(self, model: GFlowNet, batch: TrajectoryBatch):
        """(balance residuals of every transition incl. exit, dynamics NLL per inner transition)."""
        env = model.env
        self._check_env(env)
        heads = getattr(model, "stochastic", None)
        if heads is None:
            raise ValueError("stochastic_db needs the model built by get_objective('stochastic_db').build_model(env)")
        s = model.evaluate(batch, pf=True, pb=True, flow=True)
        is_last = batch.is_last
        inner = (~is_last).nonzero().squeeze(1)
        nxt = inner + 1
        parents, children = batch_index(batch.states, inner), batch_index(batch.states, nxt)
        acts = batch.actions[inner]
        with torch.no_grad():
            moves = env.move_between(parents, children)
        if bool((moves < 0).any()):
            raise EnvError(f"stochastic_db: {int((moves < 0).sum())} sampled transitions are not moves of "
                           f"{type(env).__name__} (move_between found none)")
        if self.dynamics == "exact":
            log_dyn = env.move_log_probs(parents, acts).gather(1, moves.unsqueeze(1)).squeeze(1).to(s.log_pf.dtype)
            nll = log_dyn.new_zeros(0)
        else:
            lp = heads.dynamics.log_probs(parents, acts).gather(1, moves.unsqueeze(1)).squeeze(1)
            nll = -lp
            log_dyn = lp.detach()
        log_pb_a = heads.pb_action.log_prob(children, batch.bwd_actions[nxt], parents, acts)
        delta_inner = (s.log_flow[inner] + s.log_pf[inner] + log_dyn
                       - s.log_flow[nxt] - s.log_pb[nxt] - log_pb_a)
        last = batch.last_rows
        if batch.is_complete is not None:
            last = last[batch.is_complete]
            log_r = self.log_rewards(batch)[batch.is_complete]
        else:
            log_r = self.log_rewards(batch)
        delta_exit = s.log_flow[last] + s.log_pf[last] - log_r.to(s.log_flow.dtype)
        return torch.cat([delta_inner, delta_exit]), nll

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Mean squared stochastic-DB residual plus ``dynamics_weight`` times the dynamics NLL."""
        delta, nll = self.residuals(model, batch)
        loss = mean_or_zero(delta.pow(2))
        if nll.numel() > 0 and self.dynamics_weight > 0:
            loss = loss + self.dynamics_weight * nll.mean()
        return loss
