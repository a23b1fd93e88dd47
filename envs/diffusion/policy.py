"""Time-embedded forward policy for diffusion samplers (Sendera et al. 2024's PIS architecture).

Layout follows GFNOrg/gfn-diffusion's ``--pis_architectures`` (read there, not copied):
harmonic time features ``[sin(c t + phi), cos(c t + phi)]`` with ``c = linspace(0.1, 100,
harmonics)`` and a learned phase ``phi`` go through ``Linear-GELU-Linear`` to the time embedding;
the state goes through one linear layer; the joint MLP ``GELU, joint_layers x (Linear, GELU),
Linear`` acts on their sum and its zero-initialised last layer outputs the drift ``f`` (and, with
``learn_variance``, a log-variance ``tanh(.) * log_var_range``).  With ``langevin`` the drift is
``NN1(x, t) + NN2(t) * clip(grad log R(x), +-lgv_clip)`` (``NN2``: its own harmonic features and
``lgv_layers`` layers, zero-initialised, scalar unless ``lgv_per_dim``).  The network output is
clipped to ``+-clip``.  ``log_z`` is a scalar parameter (its own learning rate in the trainer);
with ``flow=True`` a second joint MLP gives the per-step log-flow for DB / SubTB / FL-SubTB.
With ``learn_backward`` (the authors' ``--learn_pb``) a third zero-initialised joint MLP on the same
state and time embeddings outputs the backward kernel's corrections ``1 + pb_scale_range *
tanh(.)`` to its mean shift and variance (:meth:`backward_correction`; 1 at initialisation, so the
learned kernel starts as the fixed one).

The time embeddings of all T + 1 times are computed once per call of :meth:`time_embeddings`, and
:meth:`drift` accepts states at mixed steps, so a whole ``(B, T, d)`` tensor of trajectory states
is scored in one network pass.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def _zero_last(seq: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(seq[-1].weight)
    nn.init.zeros_(seq[-1].bias)
    return seq


def _joint(hidden: int, layers: int, out: int) -> nn.Sequential:
    mods = [nn.GELU()]
    for _ in range(layers):
        mods += [nn.Linear(hidden, hidden), nn.GELU()]
    return _zero_last(nn.Sequential(*mods, nn.Linear(hidden, out)))


class _Harmonic(nn.Module):
    """``[sin(c t + phi), cos(c t + phi)]`` at the T + 1 grid times (learned phase ``phi``)."""

    def __init__(self, steps: int, harmonics: int):
        super().__init__()
        self.register_buffer("coeff", torch.linspace(0.1, 100.0, harmonics)[None, :], persistent=False)
        self.register_buffer("times", torch.arange(steps + 1, dtype=torch.float32)[:, None] / steps,
                             persistent=False)
        self.phase = nn.Parameter(torch.randn(1, harmonics))

    def forward(self) -> torch.Tensor:
        arg = self.times * self.coeff + self.phase
        return torch.cat([torch.sin(arg), torch.cos(arg)], -1)


class DiffusionPolicy(nn.Module):
    """Forward drift / log-variance network with optional Langevin term and learned log-flow."""

    def __init__(self, dim: int, steps: int, hidden: int = 64, harmonics: int = 64, joint_layers: int = 2,
                 langevin: bool = False, learn_variance: bool = False, log_var_range: float = 4.0,
                 clip: float = 1e4, lgv_clip: float = 1e2, lgv_layers: int = 3, lgv_per_dim: bool = False,
                 flow: bool = False, learn_backward: bool = False, pb_scale_range: float = 0.1):
        super().__init__()
        if hidden < 1 or harmonics < 1 or joint_layers < 0:
            raise ValueError("hidden and harmonics must be >= 1 and joint_layers >= 0")
        self.dim, self.steps = int(dim), int(steps)
        self.langevin, self.learn_variance = bool(langevin), bool(learn_variance)
        self.log_var_range, self.clip, self.lgv_clip = float(log_var_range), float(clip), float(lgv_clip)
        self.t_feat = _Harmonic(steps, harmonics)
        self.t_model = nn.Sequential(nn.Linear(2 * harmonics, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.s_model = nn.Linear(dim, hidden)
        self.joint = _joint(hidden, joint_layers, 2 * dim if learn_variance else dim)
        if langevin:
            self.lgv_feat = _Harmonic(steps, hidden)
            mods = [nn.Linear(2 * hidden, hidden)]
            for _ in range(lgv_layers - 1):
                mods += [nn.GELU(), nn.Linear(hidden, hidden)]
            self.lgv_model = _zero_last(nn.Sequential(*mods, nn.GELU(), nn.Linear(hidden, dim if lgv_per_dim else 1)))
        if not 0.0 < pb_scale_range < 1.0:
            raise ValueError(f"pb_scale_range must be in (0, 1) (variance scale 1 +- range), got {pb_scale_range!r}")
        self.learn_backward, self.pb_scale_range = bool(learn_backward), float(pb_scale_range)
        if learn_backward:
            self.back_joint = _joint(hidden, joint_layers, 2 * dim)
        self.has_flow = bool(flow)
        if flow:
            self.flow_s = nn.Linear(dim, hidden)
            self.flow_joint = _joint(hidden, joint_layers, 1)
        self.log_z = nn.Parameter(torch.zeros(()))

    def time_embeddings(self) -> dict:
        """Embeddings for every ``t_i`` (i = 0..T), computed once per iteration."""
        emb = {"t": self.t_model(self.t_feat())}
        if self.langevin:
            emb["lgv"] = self.lgv_model(self.lgv_feat())
        return emb

    def drift(self, x: torch.Tensor, step, emb: dict,
              grad_log_r: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, log_var)`` at states ``x (..., d)`` and step indices ``step`` (an int, or an index
        tensor of ``x``'s leading shape); ``log_var`` is 0 unless the variance is learned."""
        h = self.joint(self.s_model(x) + emb["t"][step])
        f = h[..., : self.dim]
        if self.langevin:
            if grad_log_r is None:
                raise ValueError("the Langevin parametrisation needs grad log R(x)")
            f = f + emb["lgv"][step] * grad_log_r.clamp(-self.lgv_clip, self.lgv_clip)
        f = f.clamp(-self.clip, self.clip)
        if self.learn_variance:
            log_var = torch.tanh(h[..., self.dim:].clamp(-self.clip, self.clip)) * self.log_var_range
        else:
            log_var = torch.zeros_like(f)
        return f, log_var

    def backward_correction(self, x: torch.Tensor, step, emb: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean_scale, var_scale)`` of the learned backward kernel from state ``x = x_{i+1}`` at
        step index ``step = i + 1``, each ``1 + pb_scale_range * tanh(.)`` (needs ``learn_backward``)."""
        if not self.learn_backward:
            raise ValueError("this policy was built without a backward head (learn_backward=False)")
        h = torch.tanh(self.back_joint(self.s_model(x) + emb["t"][step])) * self.pb_scale_range
        return 1.0 + h[..., : self.dim], 1.0 + h[..., self.dim:]

    def log_flow(self, x: torch.Tensor, step, emb: dict) -> torch.Tensor:
        """Learned log-flow ``(...,)`` at states ``x`` and steps ``step`` (needs ``flow=True``)."""
        if not self.has_flow:
            raise ValueError("this policy was built without a flow head (flow=False)")
        return self.flow_joint(self.flow_s(x) + emb["t"][step]).squeeze(-1)

    def param_groups(self, lr: float, lr_log_z: float, lr_flow: Optional[float] = None,
                     lr_back: Optional[float] = None) -> list:
        """Adam parameter groups: the policy at ``lr``, log Z at ``lr_log_z``, the flow head at
        ``lr_flow`` (default ``lr_log_z``), the backward head at ``lr_back`` (default ``lr``), as in
        Sendera et al.'s optimiser."""
        flow = [p for n, p in self.named_parameters() if n.startswith("flow_")]
        back = [p for n, p in self.named_parameters() if n.startswith("back_")]
        rest = [p for n, p in self.named_parameters()
                if not n.startswith(("flow_", "back_")) and n != "log_z"]
        groups = [{"params": rest, "lr": lr}, {"params": [self.log_z], "lr": lr_log_z}]
        if flow:
            groups.append({"params": flow, "lr": lr_log_z if lr_flow is None else lr_flow})
        if back:
            groups.append({"params": back, "lr": lr if lr_back is None else lr_back})
        return groups
