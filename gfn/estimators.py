"""Estimators: forward/backward policies, state flows, log Z, and the GFlowNet that holds them.

A :class:`GFlowNet` turns states into features (``env.featurize``), optionally appends a
conditioning vector, optionally runs a shared trunk, and hands the result ``h`` to its heads:

* ``pf`` / ``pb``: policies mapping ``(h, states)`` to an action distribution;
* ``flow``: a head mapping ``h`` to log F(s) (for DB / SubTB / FL objectives);
* ``log_z``: scalar or conditional log Z.

:meth:`GFlowNet.evaluate` scores every transition of a packed :class:`TrajectoryBatch` in
one batched call (one trunk pass over all rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn.modules import module as _nn_module

from gfn.continuous import ContinuousPolicy
from gfn.distributions import MaskedCategorical
from gfn.env import ContinuousEnv, DiscreteEnv, Env
from gfn.states import States, batch_index
from gfn.trajectories import TrajectoryBatch


def mlp(in_dim: int, out_dim: Optional[int], hidden: int = 256, n_layers: int = 2,
        activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """An MLP with ``n_layers`` hidden layers; ``out_dim=None`` ends at the last hidden layer
    (a trunk), otherwise a final linear layer maps to ``out_dim``."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_layers):
        layers += [nn.Linear(d, hidden), activation()]
        d = hidden
    if out_dim is not None:
        layers.append(nn.Linear(d, out_dim))
    return MLP(*layers)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def _global_hooks() -> bool:
    return bool(_nn_module._global_forward_hooks or _nn_module._global_forward_pre_hooks
                or _nn_module._global_backward_hooks or _nn_module._global_backward_pre_hooks)


def _call(m: nn.Module, *args):
    """``m(*args)`` without ``nn.Module.__call__``'s overhead when nothing needs it (no hooks,
    not compiled); the sampler calls the estimators once per step."""
    if m._compiled_call_impl is None and not _hooked(m) and not _global_hooks():
        return m.forward(*args)
    return m(*args)


class MLP(nn.Sequential):
    """``nn.Sequential`` (same parameters and state_dict) whose forward calls ``nn.Linear`` and
    ``nn.ReLU`` children functionally: the per-module call overhead is a large share of a
    sampling step at small batch.  Any other child, or any hook, takes the ordinary path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers in order."""
        if _global_hooks():
            return super().forward(x)
        for m in self._modules.values():
            t = type(m)
            if t is nn.Linear and not _hooked(m):
                p = m._parameters  # plain dict lookups: Module.__getattr__ is slow
                x = nn.functional.linear(x, p["weight"], p["bias"])
            elif t is nn.ReLU and not _hooked(m):
                x = torch.relu_(x) if m.inplace else torch.relu(x)
            else:
                x = m(x)
        return x


class DiscretePolicy(nn.Module):
    """P_F or P_B over a discrete action set: masked categorical on ``head(h)``."""

    def __init__(self, env: DiscreteEnv, head: nn.Module, backward: bool = False):
        super().__init__()
        self.env = env
        self.head = head
        self.backward = backward

    @property
    def n_out(self) -> int:
        """Number of logits."""
        return self.env.n_backward_actions if self.backward else self.env.n_actions

    def mask(self, states: States) -> torch.Tensor:
        """Allowed actions at ``states``."""
        return self.env.backward_mask(states) if self.backward else self.env.forward_mask(states)

    def logits(self, h: torch.Tensor, states: States) -> torch.Tensor:
        """Raw logits (before masking); wrappers such as logit scaling override this."""
        return _call(self.head, h)

    def forward(self, h: torch.Tensor, states: States) -> MaskedCategorical:
        """Action distribution at ``states`` given their encodings ``h``."""
        return MaskedCategorical(self.logits(h, states), self.mask(states))


class UniformPolicy(nn.Module):
    """Uniform distribution over allowed actions (the usual fixed P_B)."""

    def __init__(self, env: DiscreteEnv, backward: bool = True):
        super().__init__()
        self.env = env
        self.backward = backward

    def forward(self, h, states: States) -> MaskedCategorical:
        """Uniform masked categorical at ``states`` (``h`` is ignored)."""
        mask = self.env.backward_mask(states) if self.backward else self.env.forward_mask(states)
        return MaskedCategorical(torch.zeros(mask.shape, device=mask.device), mask)


class ScalarHead(nn.Module):
    """A head producing one scalar per state (e.g. log F(s))."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Scalar output per row."""
        return self.module(h).squeeze(-1)


class LogZ(nn.Module):
    """log Z: a learned scalar, or a small network of the conditioning vector."""

    def __init__(self, init: float = 0.0, cond_dim: int = 0, hidden: int = 64):
        super().__init__()
        self.cond_dim = cond_dim
        if cond_dim > 0:
            self.net = mlp(cond_dim, 1, hidden=hidden, n_layers=2)
            with torch.no_grad():
                self.net[-1].bias.fill_(init)
        else:
            self.value = nn.Parameter(torch.tensor(float(init)))

    def forward(self, n: int, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log Z for ``n`` trajectories (conditioned on ``cond`` [n, c] when conditional)."""
        if self.cond_dim > 0:
            if cond is None:
                raise ValueError("conditional LogZ needs a conditioning tensor")
            return self.net(cond).squeeze(-1)
        return self.value.expand(n)


@dataclass
class Scores:
    """Per-row quantities of a packed batch: log P_F of the action taken at each row,
    log P_B of the step back to the predecessor (0 at the first row), and log F(s)."""

    log_pf: Optional[torch.Tensor]
    log_pb: Optional[torch.Tensor]
    log_flow: Optional[torch.Tensor]


class GFlowNet(nn.Module):
    """Holds the estimators and scores trajectories in one batched pass."""

    def __init__(self, env: Env, pf: nn.Module, pb: nn.Module, trunk: Optional[nn.Module] = None,
                 flow: Optional[nn.Module] = None, log_z: Optional[LogZ] = None, cond_dim: int = 0):
        super().__init__()
        self.env = env
        self.trunk = trunk
        self.pf = pf
        self.pb = pb
        self.flow = flow
        self.log_z = log_z if log_z is not None else LogZ(cond_dim=0)
        self.cond_dim = cond_dim

    # ------------------------------------------------------------ encoding and heads
    def encode(self, states: States, cond: Optional[torch.Tensor] = None):
        """Features of ``states`` (plus conditioning) passed through the shared trunk."""
        x = self.env.featurize(states)
        if self.cond_dim > 0:
            if cond is None:
                raise ValueError("this GFlowNet is conditional: pass a conditioning tensor")
            x = torch.cat([x, cond.to(x.dtype)], dim=-1)
        return _call(self.trunk, x) if self.trunk is not None else x

    def pf_dist(self, states: States, cond: Optional[torch.Tensor] = None, h=None):
        """Forward action distribution at ``states``."""
        return _call(self.pf, self.encode(states, cond) if h is None else h, states)

    def pb_dist(self, states: States, cond: Optional[torch.Tensor] = None, h=None):
        """Backward action distribution at ``states`` (which must not be initial)."""
        if h is None and type(self.pb) is UniformPolicy:  # ignores h: skip the trunk
            return self.pb(None, states)
        return _call(self.pb, self.encode(states, cond) if h is None else h, states)

    def log_flow(self, states: States, cond: Optional[torch.Tensor] = None, h=None) -> torch.Tensor:
        """log F(s) from the flow head."""
        if self.flow is None:
            raise ValueError("this GFlowNet has no state-flow head; build it with flow=True")
        return self.flow(self.encode(states, cond) if h is None else h)

    # ------------------------------------------------------------ batched scoring
    def evaluate(self, batch: TrajectoryBatch, pf: bool = True, pb: bool = True,
                 flow: bool = False) -> Scores:
        """Score every row of ``batch`` with one trunk pass.

        Returns log P_F of ``batch.actions`` at every row (unless the batch carries
        differentiable log-probs kept from sampling), log P_B of ``batch.bwd_actions`` at
        every non-first row (0 at first rows), and log F at every row when ``flow``.
        """
        env = self.env
        use_kept = batch.log_pf is not None and batch.log_pf.requires_grad
        h = self.encode(batch.states, batch.cond_per_row())
        log_pf = log_pb = log_flow = None
        if pf:
            if use_kept:
                log_pf = batch.log_pf
            else:
                dist = self.pf(h, batch.states)
                log_pf = env.transition_log_prob(dist, batch.states, batch.actions, backward=False)
        if pb and type(self.pb) is DiscretePolicy and torch.is_tensor(h) \
                and env.transitions_are_actions:
            # fast path: score every row (no gather/scatter of h), then zero the first rows.
            # Their mask is opened so no row is all -inf (which would give NaN gradients).
            first = batch.is_first
            mask = self.pb.mask(batch.states) | first.unsqueeze(1)
            dist = MaskedCategorical(self.pb.logits(h, batch.states), mask)
            log_pb = dist.log_prob(batch.bwd_actions.masked_fill(first, 0)).masked_fill(first, 0.0)
        elif pb:
            rows = (~batch.is_first).nonzero().squeeze(1)
            sub_states = batch_index(batch.states, rows)
            dist = self.pb(batch_index(h, rows) if torch.is_tensor(h) else h.index(rows), sub_states)
            lp = env.transition_log_prob(dist, sub_states, batch.bwd_actions[rows], backward=True)
            log_pb = torch.zeros(batch.n_rows, dtype=lp.dtype, device=lp.device).index_copy(0, rows, lp)
        if flow:
            log_flow = self.flow(h) if self.flow is not None else self.log_flow(batch.states)
        return Scores(log_pf, log_pb, log_flow)


def build_gflownet(env: Env, hidden: int = 256, n_layers: int = 2, shared_trunk: bool = True,
                   uniform_pb: bool = False, flow: bool = False, cond_dim: int = 0,
                   log_z_init: float = 0.0) -> GFlowNet:
    """Default MLP GFlowNet for a discrete or continuous environment.

    With ``shared_trunk`` one MLP trunk feeds linear P_F / P_B / log F heads (the layout of
    torchgfn's benchmarks); otherwise each estimator gets its own MLP.  Continuous envs get
    :func:`build_continuous_gflownet` (policies from their action families).
    """
    if isinstance(env, ContinuousEnv):
        return build_continuous_gflownet(env, hidden=hidden, n_layers=n_layers, shared_trunk=shared_trunk,
                                         uniform_pb=uniform_pb, flow=flow, cond_dim=cond_dim, log_z_init=log_z_init)
    if not isinstance(env, DiscreteEnv):
        raise TypeError(f"build_gflownet needs a DiscreteEnv or ContinuousEnv, got {type(env).__name__}; "
                        "other envs provide their own build_gflownet")
    d_in = env.feature_dim + cond_dim
    if shared_trunk:
        trunk = mlp(d_in, None, hidden, n_layers)
        pf = DiscretePolicy(env, nn.Linear(hidden, env.n_actions))
        pb = UniformPolicy(env) if uniform_pb else DiscretePolicy(env, nn.Linear(hidden, env.n_backward_actions), backward=True)
        fl = ScalarHead(nn.Linear(hidden, 1)) if flow else None
    else:
        trunk = None
        pf = DiscretePolicy(env, mlp(d_in, env.n_actions, hidden, n_layers))
        pb = UniformPolicy(env) if uniform_pb else DiscretePolicy(env, mlp(d_in, env.n_backward_actions, hidden, n_layers), backward=True)
        fl = ScalarHead(mlp(d_in, 1, hidden, n_layers)) if flow else None
    return GFlowNet(env, pf, pb, trunk=trunk, flow=fl, log_z=LogZ(log_z_init, cond_dim=cond_dim), cond_dim=cond_dim)


def build_continuous_gflownet(env, hidden: int = 256, n_layers: int = 2, shared_trunk: bool = True,
                              uniform_pb: bool = False, flow: bool = False, cond_dim: int = 0,
                              log_z_init: float = 0.0):
    """Default MLP GFlowNet for a :class:`gfn.env.ContinuousEnv`.

    P_F uses ``env.forward_family()``; P_B uses ``env.backward_family(fixed=uniform_pb)``
    (the environment's fixed backward policy when ``uniform_pb``).  Layout as in
    :func:`build_gflownet`: one shared trunk with linear heads, or one MLP each.
    """
    pf_family = env.forward_family()
    pb_family = env.backward_family(fixed=uniform_pb)
    d_in = env.feature_dim + cond_dim

    def head(n_out: int):
        if n_out == 0:
            return None
        return nn.Linear(hidden, n_out) if shared_trunk else mlp(d_in, n_out, hidden, n_layers)

    trunk = mlp(d_in, None, hidden, n_layers) if shared_trunk else None
    pf = ContinuousPolicy(pf_family, head(pf_family.n_params))
    pb = ContinuousPolicy(pb_family, head(pb_family.n_params))
    fl = ScalarHead(head(1)) if flow else None
    return GFlowNet(env, pf, pb, trunk=trunk, flow=fl, log_z=LogZ(log_z_init, cond_dim=cond_dim), cond_dim=cond_dim)
