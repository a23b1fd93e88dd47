"""Local search for diffusion samplers: parallel MALA chains and a rank-prioritised replay buffer.

Protocol of Sendera et al. 2024 (GFNOrg/gfn-diffusion, ``energy_sampling/train.py``, ``langevin.py``,
``buffer.py``) for TB + Expl. + LS, to be wired identically by the trainer:

- local search every ``ls_cycle = 100`` training iterations, on the current forward samples;
- ``max_iter_ls = 200`` MALA steps per search, of which the first ``burn_in = 100`` are burn-in;
- initial Langevin step ``ld_step = 0.1`` for the synthetic targets (script default 0.001), adapted
  (``--ld_schedule``) every 5 steps by x(1 +- 0.01) towards acceptance ``0.574``;
- proposal x' = x + eta grad log R(x) + sqrt(2 eta) z, accepted with the Metropolis-Hastings ratio
  including the asymmetric Langevin proposal densities;
- replay buffer of ``buffer_size = 600000`` (= 300 * 1000 * 2) samples, FIFO eviction (oldest first),
  rank prioritisation with weight 1 / (rank_weight * N + rank), ``rank_weight = 0.01``, rank 0 = best
  log reward; training alternates between forward trajectories from the policy and backward
  trajectories from buffer samples (``--both_ways``).

In the authors' code the samples accepted after burn-in are what goes to the buffer; :func:`mala`
returns the final chain states and, with ``collect_after``, the accepted proposals after that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = ["MalaResult", "mala", "RankBuffer", "PAPER_LS_PROTOCOL"]

PAPER_LS_PROTOCOL = {
    "ls_cycle": 100,
    "max_iter_ls": 200,
    "burn_in": 100,
    "ld_step": 0.1,
    "target_acceptance_rate": 0.574,
    "adapt_every": 5,
    "adapt_factor": 0.01,
    "buffer_size": 600_000,
    "rank_weight": 0.01,
}


@dataclass
class MalaResult:
    """Final chain states ``x`` [B, d], their log rewards ``log_r`` [B], the adapted ``step_size``,
    the overall ``accept_rate``, and (if requested) the accepted proposals after burn-in."""

    x: Tensor
    log_r: Tensor
    step_size: float
    accept_rate: float
    collected_x: Tensor | None = None
    collected_log_r: Tensor | None = None


def _value_and_grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        lr = fn(x)
        (g,) = torch.autograd.grad(lr.sum(), x)
    return lr.detach(), g.detach()


def mala(x: Tensor, log_reward_fn: Callable[[Tensor], Tensor], n_steps: int, step_size: float,
         target_accept: float | None = 0.574, generator: torch.Generator | None = None,
         adapt_every: int = 5, adapt_factor: float = 0.01, collect_after: int | None = None) -> MalaResult:
    """Run ``x.shape[0]`` parallel Metropolis-adjusted Langevin chains for ``n_steps`` steps.

    Proposal x' = x + eta grad log R(x) + sqrt(2 eta) z; acceptance
    min(1, R(x') q(x | x') / (R(x) q(x' | x))) with q the Gaussian Langevin kernel. Every
    ``adapt_every`` steps the step size is multiplied by (1 + adapt_factor) if the acceptance over
    those steps exceeded ``target_accept`` and by (1 - adapt_factor) otherwise (the authors'
    schedule); ``target_accept=None`` keeps it fixed. ``collect_after=k`` also returns every
    accepted proposal of the steps after step k (the authors' buffer input).
    """
    if x.dim() != 2:
        raise ValueError(f"mala: x must be [B, d], got shape {tuple(x.shape)}")
    if n_steps < 0 or not step_size > 0:
        raise ValueError(f"mala: need n_steps >= 0 and step_size > 0, got {n_steps}, {step_size}")
    if target_accept is not None and not 0 < target_accept < 1:
        raise ValueError(f"mala: target_accept must be in (0, 1), got {target_accept}")
    eta = float(step_size)
    x = x.detach().clone()
    log_r, g = _value_and_grad(log_reward_fn, x)
    n_acc_win = n_prop_win = 0
    n_acc = 0
    cx, clr = [], []
    for i in range(n_steps):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        mean_f = x + eta * g
        y = mean_f + math.sqrt(2 * eta) * noise
        log_r_y, g_y = _value_and_grad(log_reward_fn, y)
        log_q_fwd = -((y - mean_f) ** 2).sum(1) / (4 * eta)
        log_q_bwd = -((x - y - eta * g_y) ** 2).sum(1) / (4 * eta)
        log_a = (log_r_y - log_r) + log_q_bwd - log_q_fwd
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype).to(x.device)
        acc = torch.log(u) < log_a.clamp(max=0.0)
        acc = acc & torch.isfinite(log_r_y)
        x = torch.where(acc.unsqueeze(1), y, x)
        log_r = torch.where(acc, log_r_y, log_r)
        g = torch.where(acc.unsqueeze(1), g_y, g)
        k = int(acc.sum())
        n_acc += k
        n_acc_win += k
        n_prop_win += x.shape[0]
        if collect_after is not None and i > collect_after:
            cx.append(y[acc])
            clr.append(log_r_y[acc])
        if target_accept is not None and (i + 1) % adapt_every == 0:
            rate = n_acc_win / n_prop_win
            eta = eta * (1 + adapt_factor) if rate > target_accept else eta * (1 - adapt_factor)
            n_acc_win = n_prop_win = 0
    rate = n_acc / max(1, n_steps * x.shape[0])
    res = MalaResult(x, log_r, eta, rate)
    if collect_after is not None:
        res.collected_x = torch.cat(cx) if cx else x.new_zeros(0, x.shape[1])
        res.collected_log_r = torch.cat(clr) if clr else log_r.new_zeros(0)
    return res


class RankBuffer:
    """Replay buffer of (x, log_r) with rank-based prioritised sampling and FIFO eviction.

    With N stored items ranked by log reward (rank 0 = highest), item k is drawn with probability
    proportional to 1 / (rank_weight * N + rank_k), with replacement (Sendera et al.'s buffer).
    When more than ``capacity`` items are stored the oldest are dropped.
    """

    def __init__(self, capacity: int, rank_weight: float = 0.01):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"RankBuffer: capacity must be a positive int, got {capacity!r}")
        if not rank_weight > 0:
            raise ValueError(f"RankBuffer: rank_weight must be > 0, got {rank_weight!r}")
        self.capacity, self.rank_weight = capacity, float(rank_weight)
        self.x: Tensor | None = None
        self.log_r: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.log_r is None else int(self.log_r.shape[0])

    def add(self, x: Tensor, log_r: Tensor) -> None:
        """Append a batch x [B, d], log_r [B] (detached); evict the oldest beyond capacity."""
        if x.dim() != 2 or log_r.shape != (x.shape[0],):
            raise ValueError(f"RankBuffer.add: need x [B, d] and log_r [B], got {tuple(x.shape)}, {tuple(log_r.shape)}")
        x, log_r = x.detach(), log_r.detach()
        if self.x is None:
            self.x, self.log_r = x.clone(), log_r.clone()
        else:
            if x.shape[1] != self.x.shape[1]:
                raise ValueError(f"RankBuffer.add: dim {x.shape[1]} != stored dim {self.x.shape[1]}")
            self.x, self.log_r = torch.cat([self.x, x]), torch.cat([self.log_r, log_r])
        if len(self) > self.capacity:
            self.x, self.log_r = self.x[-self.capacity:], self.log_r[-self.capacity:]

    def probabilities(self) -> Tensor:
        """Sampling probability of each stored item, in storage order (float64)."""
        if self.log_r is None:
            raise ValueError("RankBuffer is empty")
        n = len(self)
        order = torch.argsort(self.log_r, descending=True, stable=True)
        ranks = torch.empty(n, dtype=torch.float64)
        ranks[order] = torch.arange(n, dtype=torch.float64)
        w = 1.0 / (self.rank_weight * n + ranks)
        return w / w.sum()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw n items with replacement by rank priority; returns (x [n, d], log_r [n])."""
        if len(self) == 0:
            raise ValueError("RankBuffer.sample: buffer is empty")
        idx = torch.multinomial(self.probabilities(), n, replacement=True, generator=generator)
        idx = idx.to(self.log_r.device)
        return self.x[idx], self.log_r[idx]
