"""Objectives for diffusion samplers over fixed-length continuous trajectories (issue #19).

Every loss takes per-step tensors of a batch of B trajectories of T steps: ``log_pf``,
``log_pb`` ``(B, T)``, the terminal ``log_r`` ``(B,)`` and, for the flow-based losses, the
log-flows ``log_f`` ``(B, T + 1)`` with ``log_f[:, 0] = log Z`` and ``log_f[:, T] = log R``
(built by :func:`flows`).  Conventions follow Sendera et al. 2024 (GFNOrg/gfn-diffusion):

* ``tb``: ``0.5 * mean (log Z + sum log P_F - sum log P_B - log R)^2``.
* ``vargrad``: TB with log Z replaced by the batch mean of ``log R + sum log P_B - sum log P_F``
  (their ``tb-avg``).
* ``db``: ``0.5 * mean_B sum_i (log F_i + log P_F_i - log F_{i+1} - log P_B_i)^2``.
* ``subtb``: all sub-trajectories ``i < j`` weighted by ``lambda^(j - i)`` normalised over pairs
  (their ``cal_subtb_coef_matrix``, lambda = 2), mean over the batch.  With
  :func:`flows` ``(forward_looking=True)`` this is FL-SubTB with DGFS's partial energy.
* ``pis``: reverse KL by reparametrisation, ``mean (sum log P_F - sum log P_B - log R) / d``.
"""

from __future__ import annotations

import math

import torch

OBJECTIVES = ("tb", "vargrad", "subtb", "fl-subtb", "db", "pis")


def _log_ratio(log_pf: torch.Tensor, log_pb: torch.Tensor, log_r: torch.Tensor) -> torch.Tensor:
    return log_pf.sum(-1) - log_pb.sum(-1) - log_r


def tb_loss(log_pf, log_pb, log_r, log_z) -> torch.Tensor:
    """Trajectory balance (0.5 * mean squared residual)."""
    return 0.5 * (log_z + _log_ratio(log_pf, log_pb, log_r)).pow(2).mean()


def vargrad_loss(log_pf, log_pb, log_r) -> torch.Tensor:
    """VarGrad: TB with the batch estimate of log Z (gradient flows through the mean, as in the
    authors' ``tb-avg``)."""
    r = _log_ratio(log_pf, log_pb, log_r)
    return 0.5 * (r - r.mean()).pow(2).mean()


def pis_loss(log_pf, log_pb, log_r, dim: int) -> torch.Tensor:
    """Reverse KL (up to log Z) for a reparametrised rollout, divided by the dimension."""
    return _log_ratio(log_pf, log_pb, log_r).mean() / dim


def db_loss(log_pf, log_pb, log_f) -> torch.Tensor:
    """Detailed balance over every step, summed over steps, averaged over trajectories."""
    res = log_f[:, :-1] + log_pf - log_f[:, 1:] - log_pb
    return 0.5 * res.pow(2).sum(-1).mean()


def subtb_coefficients(steps: int, lamda: float = 2.0, dtype=torch.float32) -> torch.Tensor:
    """``(T+1, T+1)`` upper-triangular weights ``lambda^(j-i)`` over pairs ``i < j``, summing to 1."""
    if not lamda > 0:
        raise ValueError(f"subtb lambda must be > 0, got {lamda!r}")
    r = torch.arange(steps + 1, dtype=torch.float64)
    diff = r[None, :] - r[:, None]
    logw = torch.where(diff > 0, diff * math.log(lamda), torch.full_like(diff, -math.inf))
    return torch.exp(logw - torch.logsumexp(logw.reshape(-1), 0)).to(dtype)


def subtb_loss(log_pf, log_pb, log_f, coef: torch.Tensor) -> torch.Tensor:
    """Sub-trajectory balance: ``sum_{i<j} coef_ij (log F_i + sum_{i<=m<j} (log P_F - log P_B)_m
    - log F_j)^2``, mean over the batch; one ``(B, T+1, T+1)`` tensor, no loop."""
    c = torch.cat([log_pf.new_zeros(log_pf.shape[0], 1), (log_pf - log_pb).cumsum(-1)], 1)
    a = log_f - c
    res = a[:, :, None] - a[:, None, :]
    return (res.pow(2) * coef).sum((1, 2)).mean()


def flows(env, policy, xs: torch.Tensor, log_r: torch.Tensor, emb: dict, forward_looking: bool = False
          ) -> torch.Tensor:
    """``(B, T+1)`` log-flows: ``log Z`` at step 0, the flow head at steps 1..T-1 and ``log R``
    at T.  ``forward_looking`` adds DGFS's partial energy
    ``(1 - t) log N(x; 0, sigma^2 t I) + t log R(x)`` to the learned part (Sendera et al.'s
    ``--partial_energy``)."""
    B, T1, d = xs.shape
    T = T1 - 1
    inner = xs[:, 1:T].detach()
    steps = torch.arange(1, T, device=xs.device)[None, :].expand(B, T - 1)
    lf = policy.log_flow(inner, steps, emb)
    if forward_looking and T > 1:
        t = (torch.arange(1, T, dtype=xs.dtype, device=xs.device) / T)[None, :]
        with torch.no_grad():
            lr_inner = env.log_reward(inner.reshape(-1, d)).reshape(B, T - 1)
            lp = env.prior_log_prob(inner, t.expand(B, T - 1))
        lf = lf + (1 - t) * lp + t * lr_inner
    return torch.cat([policy.log_z.expand(B, 1), lf, log_r.detach()[:, None]], 1)
