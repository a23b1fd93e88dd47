"""Diffusion-sampler environment over (x, t) in R^d x {0, dt, ..., 1} (issue #19).

A trajectory is the dense tensor ``xs`` of shape ``(B, T + 1, d)`` with ``xs[:, 0] = 0`` and
time ``t_i = i / T``.  The forward kernel of step ``i`` (``t_i -> t_{i+1}``) is
``N(x_i + f dt, sigma^2 g dt I)`` (``f``, ``g`` from the policy, ``g = 1`` unless the forward
variance is learned); the fixed backward kernel is the discretised Brownian bridge pinned at
``x_0 = 0``: ``x_i | x_{i+1} ~ N(x_{i+1} t_i / t_{i+1}, sigma^2 dt t_i / t_{i+1} I)`` (the
step into ``x_0`` is deterministic, log-probability 0).  The terminal log-reward is the
target's ``log R(x_T) = -E(x_T)``.

With the zero drift and ``g = 1`` the forward process is Brownian motion with marginal
``N(0, sigma^2 t I)`` and the bridge is its exact time reversal, so
``log P_F(tau) - log P_B(tau | x_T) = log N(x_T; 0, sigma^2 I)`` (tests/test_diffusion.py).
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
    partition function if known; ``target``: the target object (for exact samples), optional.
    """

    def __init__(self, log_reward: Callable[[torch.Tensor], torch.Tensor], dim: int, steps: int = 100,
                 sigma: float = 1.0, log_z: Optional[float] = None, target=None):
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
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

    # backward kernel ------------------------------------------------------------------------
    def bridge_params(self, dtype=torch.float32):
        """Per-step (i = 0..T-1) bridge coefficients: ``mean = x_{i+1} * a_i``, ``log_std_i``."""
        t = self.times(torch.float64)
        a = t[:-1] / t[1:]
        var = self.sigma ** 2 * self.dt * a
        log_std = 0.5 * torch.log(var.clamp_min(1e-300))
        return a.to(dtype), log_std.to(dtype)

    def log_pb_steps(self, xs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` backward log-probabilities of the steps of trajectories ``xs (B, T+1, d)``;
        step 0 (into the fixed ``x_0``) is 0."""
        a, log_std = self.bridge_params(xs.dtype)
        a, log_std = a[1:].to(xs.device), log_std[1:].to(xs.device)
        mean = xs[:, 2:] * a[None, :, None]
        lp = gaussian_log_prob(xs[:, 1:-1], mean, log_std[None, :, None].expand_as(mean))
        return torch.cat([lp.new_zeros(lp.shape[0], 1), lp], 1)

    def sample_backward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Trajectories ``(n, T+1, d)`` ending at ``x (n, d)``, drawn from the Brownian bridge."""
        n, d = x.shape
        a, log_std = self.bridge_params(x.dtype)
        std = torch.exp(log_std)
        xs = x.new_empty(n, self.steps + 1, d)
        xs[:, -1] = x
        eps = torch.randn(n, self.steps, d, generator=generator, dtype=x.dtype, device=x.device)
        for i in range(self.steps - 1, 0, -1):
            xs[:, i] = xs[:, i + 1] * a[i] + std[i] * eps[:, i]
        xs[:, 0] = 0.0
        return xs

    def prior_log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log N(x; 0, sigma^2 t I)`` (the marginal of the zero-drift forward process), ``t > 0``."""
        log_std = 0.5 * torch.log(self.sigma ** 2 * t)
        return gaussian_log_prob(x, torch.zeros_like(x), log_std[..., None].expand_as(x))
