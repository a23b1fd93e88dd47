"""Diffusion-sampler environment over (x, t) in R^d x {0, dt, ..., 1} (issue #19).

A trajectory is the dense tensor ``xs`` of shape ``(B, T + 1, d)`` with ``xs[:, 0] = 0`` and
time ``t_i = i / T``.  Step ``i`` (``t_i -> t_{i+1}``) has the forward kernel
``N(c_i x_i + f dt, s_i^2 g I)`` (``f``, ``g`` from the policy, ``g = 1`` unless the forward
variance is learned) and, for ``i >= 1``, the fixed backward kernel ``N(a_i x_{i+1}, v_i I)``; the
step into ``x_0`` is deterministic (log-probability 0).  The terminal log-reward is the target's
``log R(x_T) = -E(x_T)``.  Two reference processes fix ``(c, s, a, v)``:

* ``backward="bridge"`` (default, Sendera et al. 2024): Brownian motion from ``x_0 = 0``:
  ``c_i = 1``, ``s_i^2 = sigma^2 dt``; the backward kernel is the discretised Brownian bridge
  pinned at 0: ``a_i = t_i / t_{i+1}``, ``v_i = sigma^2 dt t_i / t_{i+1}``.
* ``backward="vp"`` (variance-preserving, the noising process of DDS, Vargas et al. 2023):
  ``a_i = sqrt(alpha_i)``, ``v_i = sigma^2 (1 - alpha_i)`` with
  ``alpha_i = exp(-dt beta(1 - t_{i+1/2}))`` and ``beta`` linear from ``beta_min`` (data end,
  t = 1) to ``beta_max`` (noise end, t = 0), as the VP SDE of Song et al. 2021; the forward
  reference is its reversal: step 0 draws ``x_1 ~ N(f dt, sigma^2 g I)`` (the prior
  ``N(0, sigma^2 I)`` at zero output), later steps ``c_i = sqrt(alpha_i)``,
  ``s_i^2 = sigma^2 (1 - alpha_i)``.

With zero network output either forward reference has ``N(0, sigma^2 t I)`` (bridge) or
``N(0, sigma^2 I)`` (VP) marginals and its backward kernel is the exact time reversal, so
``log P_F(tau) - log P_B(tau | x_T) = log N(x_T; 0, sigma^2 I)`` (tests/test_diffusion*.py).
A learned backward kernel (``DiffusionPolicy(learn_backward=True)``, the authors' ``--learn_pb``)
scales the backward mean shift ``(a_i - 1) x_{i+1}`` and the variance ``v_i`` by factors in
``1 +- pb_scale_range`` (:meth:`DiffusionEnv.log_pb_steps`).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis of the diagonal-Gaussian log-density (``log_std`` broadcasts)."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(-1)


class DiffusionEnv:
    """Fixed-length continuous GFlowNet over (x, t): kernels, backward sampling, log-rewards.

    ``log_reward``: callable ``(B, d) -> (B,)`` (differentiable, ``-E(x)``); ``steps``: T >= 1;
    ``sigma``: the diffusion scale (Sendera et al.'s ``sqrt(t_scale)``); ``log_z``: the true log
    partition function if known; ``target``: the target object (for exact samples), optional;
    ``backward``: the reference process, ``"bridge"`` or ``"vp"`` (``beta_min``/``beta_max``: the
    VP noise schedule).
    """

    BACKWARDS = ("bridge", "vp")

    def __init__(self, log_reward: Callable[[torch.Tensor], torch.Tensor], dim: int, steps: int = 100,
                 sigma: float = 1.0, log_z: Optional[float] = None, target=None, backward: str = "bridge",
                 beta_min: float = 0.1, beta_max: float = 20.0):
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
        if backward not in self.BACKWARDS:
            raise ValueError(f"backward must be one of {self.BACKWARDS}, got {backward!r}")
        if not (0 < beta_min <= beta_max and math.isfinite(beta_max)):
            raise ValueError(f"need 0 < beta_min <= beta_max < inf, got {beta_min!r}, {beta_max!r}")
        self.backward = backward
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.log_reward_fn = log_reward
        self.dim, self.steps, self.sigma = int(dim), int(steps), float(sigma)
        self.dt = 1.0 / self.steps
        self.log_z = log_z
        self.target = target

    def times(self, dtype=torch.float32) -> torch.Tensor:
        """``(T + 1,)`` tensor of ``t_i = i / T``."""
        return torch.arange(self.steps + 1, dtype=dtype) * self.dt

    def log_reward(self, x: torch.Tensor) -> torch.Tensor:
        """``log R(x)`` with a clear error on NaN (the energy returned NaN)."""
        out = self.log_reward_fn(x)
        if out.shape != x.shape[:-1]:
            raise ValueError(f"log_reward must return shape {tuple(x.shape[:-1])}, got {tuple(out.shape)}")
        if bool(torch.isnan(out).any()):
            raise FloatingPointError("the target's log-reward (-energy) returned NaN")
        return out

    def grad_log_reward(self, x: torch.Tensor) -> torch.Tensor:
        """``grad_x log R(x)`` (detached), one autograd call for the whole batch."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_reward(xg).sum(), xg)
        return torch.nan_to_num(g)

    # kernels -------------------------------------------------------------------------------
    def vp_schedule(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha, 1 - alpha)``, each ``(T,)`` float64, with ``alpha_i = exp(-dt beta(1 - t_{i+1/2}))``
        (the exact integral of the linear ``beta`` over step i)."""
        t_mid = (torch.arange(self.steps, dtype=torch.float64) + 0.5) * self.dt
        beta = self.beta_min + (self.beta_max - self.beta_min) * (1.0 - t_mid)
        return torch.exp(-self.dt * beta), -torch.expm1(-self.dt * beta)

    def forward_params(self, dtype=torch.float32):
        """Per-step (i = 0..T-1) reference forward coefficients: ``mean = c_i x_i + f dt`` and
        base ``log s_i`` (the policy's ``0.5 log g`` is added to it)."""
        T = self.steps
        if self.backward == "bridge":
            c = torch.ones(T, dtype=torch.float64)
            log_s = torch.full((T,), math.log(self.sigma * math.sqrt(self.dt)), dtype=torch.float64)
        else:
            alpha, one_minus = self.vp_schedule()
            c = torch.sqrt(alpha)
            c[0] = 1.0  # x_0 = 0: the first step is N(f dt, sigma^2 g), the prior at zero output
            log_s = 0.5 * torch.log(self.sigma ** 2 * one_minus)
            log_s[0] = math.log(self.sigma)
        return c.to(dtype), log_s.to(dtype)

    def bridge_params(self, dtype=torch.float32):
        """Per-step (i = 0..T-1) backward coefficients: ``mean = x_{i+1} * a_i``, ``log_std_i``
        (the Brownian bridge, or the VP noising kernel with ``backward="vp"``; entry 0 unused)."""
        if self.backward == "bridge":
            t = self.times(torch.float64)
            a = t[:-1] / t[1:]
            var = self.sigma ** 2 * self.dt * a
        else:
            alpha, one_minus = self.vp_schedule()
            a = torch.sqrt(alpha)
            var = self.sigma ** 2 * one_minus
        log_std = 0.5 * torch.log(var.clamp_min(1e-300))
        return a.to(dtype), log_std.to(dtype)

    def backward_mean_std(self, x_next: torch.Tensor, a: torch.Tensor, log_std: torch.Tensor,
                          mean_scale: Optional[torch.Tensor] = None, var_scale: Optional[torch.Tensor] = None):
        """Backward-kernel mean and log-std at ``x_next`` from coefficients ``a``/``log_std``
        (broadcast against ``x_next``); a learned kernel scales the mean shift ``(a - 1) x_next`` by
        ``mean_scale`` and the variance by ``var_scale`` (the authors' ``--learn_pb``)."""
        if mean_scale is None:
            mean = x_next * a
        else:
            mean = x_next + (a - 1.0) * x_next * mean_scale
        if var_scale is not None:
            log_std = log_std + 0.5 * torch.log(var_scale)
        return mean, log_std

    def log_pb_steps(self, xs: torch.Tensor, mean_scale: Optional[torch.Tensor] = None,
                     var_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T)`` backward log-probabilities of the steps of trajectories ``xs (B, T+1, d)``;
        step 0 (into the fixed ``x_0``) is 0.  ``mean_scale``/``var_scale`` (``(B, T-1, d)``, for
        steps 1..T-1) come from a learned backward policy."""
        a, log_std = self.bridge_params(xs.dtype)
        a, log_std = a[1:].to(xs.device)[None, :, None], log_std[1:].to(xs.device)[None, :, None]
        mean, log_std = self.backward_mean_std(xs[:, 2:], a, log_std, mean_scale, var_scale)
        lp = gaussian_log_prob(xs[:, 1:-1], mean, log_std)
        return torch.cat([lp.new_zeros(lp.shape[0], 1), lp], 1)

    def sample_backward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None,
                        correction: Optional[Callable] = None) -> torch.Tensor:
        """Trajectories ``(n, T+1, d)`` ending at ``x (n, d)``, drawn from the backward kernel (the
        Brownian bridge or the VP noising process); ``correction(x_next, i + 1) -> (mean_scale,
        var_scale)`` makes it a learned kernel (samples detached)."""
        n, d = x.shape
        a, log_std = self.bridge_params(x.dtype)
        a, log_std = a.to(x.device), log_std.to(x.device)
        xs = x.new_empty(n, self.steps + 1, d)
        xs[:, -1] = x
        eps = torch.randn(n, self.steps, d, generator=generator, dtype=x.dtype, device=x.device)
        for i in range(self.steps - 1, 0, -1):
            scales = correction(xs[:, i + 1], i + 1) if correction is not None else (None, None)
            mean, ls = self.backward_mean_std(xs[:, i + 1], a[i], log_std[i], *scales)
            xs[:, i] = (mean + torch.exp(ls) * eps[:, i]).detach()
        xs[:, 0] = 0.0
        return xs

    def prior_log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Log-density of the zero-output forward reference's marginal at time ``t > 0``:
        ``N(0, sigma^2 t I)`` (bridge) or ``N(0, sigma^2 I)`` (VP, stationary)."""
        if self.backward == "vp":
            t = torch.ones_like(t)
        log_std = 0.5 * torch.log(self.sigma ** 2 * t)
        return gaussian_log_prob(x, torch.zeros_like(x), log_std[..., None].expand_as(x))
