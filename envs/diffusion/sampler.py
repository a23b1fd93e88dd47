"""Forward rollouts and batched path scoring for diffusion samplers.

* :func:`rollout`: T sequential forward steps for a batch of B trajectories (the only Python loop
  is over the T steps).  ``grad=False`` runs under ``torch.no_grad`` (off-policy objectives
  re-score the path afterwards in one batched pass); ``grad=True`` keeps the reparametrised
  graph through the states (``pis``); ``keep=True`` keeps only log P_F's graph to the parameters
  (states detached, as :func:`score_path` sees them), so an on-policy loss needs no second network
  pass (one forward and one backward, as GFNOrg/gfn-diffusion's ``get_trajectory_fwd``); the
  samples are the same as with ``keep=False``.  ``exploration`` adds ``exploration`` extra
  standard deviation per step in quadrature (``std^2 + exploration^2``, as in Sendera et al.); the
  returned log P_F is always under the policy without the extra noise.
* :func:`score_path`: ``(log_pf (B, T), log_pb (B, T))`` of given trajectories ``(B, T+1, d)``
  with one network pass over all ``B * T`` states (and one more for a learned backward kernel).
* :func:`log_pb` and :func:`sample_backward`: the backward kernel of the env, with the policy's
  learned corrections when it has them.

Kernel coefficients come from the env (:meth:`DiffusionEnv.forward_params`,
:meth:`DiffusionEnv.bridge_params`), so the Brownian-bridge and VP reference processes share this code.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from .env import DiffusionEnv, gaussian_log_prob


def log_pb(env: DiffusionEnv, policy, xs: torch.Tensor, emb: Optional[dict] = None) -> torch.Tensor:
    """``(B, T)`` backward log-probabilities of ``xs (B, T+1, d)``: the env's fixed kernel, or the
    policy's learned one (one batched pass over ``x_2..x_T``; graph kept to the backward head)."""
    if not getattr(policy, "learn_backward", False):
        return env.log_pb_steps(xs)
    emb = policy.time_embeddings() if emb is None else emb
    B, T1, _ = xs.shape
    steps = torch.arange(2, T1, device=xs.device)[None, :].expand(B, T1 - 2)
    mean_scale, var_scale = policy.backward_correction(xs[:, 2:], steps, emb)
    return env.log_pb_steps(xs, mean_scale, var_scale)


def sample_backward(env: DiffusionEnv, policy, x: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Backward trajectories ``(n, T+1, d)`` ending at ``x``, from the env's kernel or the policy's
    learned one (no gradient; score them with :func:`score_path`)."""
    if not getattr(policy, "learn_backward", False):
        return env.sample_backward(x, generator)
    with torch.no_grad():
        emb = policy.time_embeddings()
        return env.sample_backward(x, generator, lambda xn, step: policy.backward_correction(xn, step, emb))


def rollout(env: DiffusionEnv, policy, n: int, generator: Optional[torch.Generator] = None,
            exploration: float = 0.0, grad: bool = False, keep: bool = False) -> dict:
    """Sample ``n`` forward trajectories; returns ``xs (n, T+1, d)``, ``log_pf``/``log_pb (n, T)``
    and ``log_r (n,)`` (and ``grad_log_r (n, T, d)`` for Langevin policies).  With ``keep`` the
    ``log_pf`` keeps its graph (detached states) and ``emb``, the time embeddings it used, is
    returned too."""
    if grad and keep:
        raise ValueError("rollout: grad=True (reparametrised states) and keep=True are exclusive")
    T, d = env.steps, env.dim
    dev = policy.log_z.device
    dtype = policy.log_z.dtype
    ctx = torch.enable_grad() if (grad or keep) else torch.no_grad()
    coef, base_log_std = env.forward_params(torch.float64)
    coef, base_log_std = coef.tolist(), base_log_std.tolist()
    with ctx:
        emb = policy.time_embeddings()
        eps = torch.randn(n, T, d, generator=generator, dtype=dtype, device=dev)
        x = torch.zeros(n, d, dtype=dtype, device=dev)
        xs, lpf, grads = [x], [], []
        extra = float(exploration) ** 2
        for i in range(T):
            g = env.grad_log_reward(x) if policy.langevin else None
            if g is not None:
                grads.append(g)
            f, log_var = policy.drift(x, i, emb, g)
            log_std = 0.5 * log_var + base_log_std[i]
            mean = x * coef[i] + f * env.dt
            if extra > 0:
                std_s = torch.sqrt(torch.exp(2 * log_std) + extra)
                x_new = mean.detach() + std_s.detach() * eps[:, i]
                lpf.append(gaussian_log_prob(x_new, mean, log_std))
            else:
                x_new = mean + torch.exp(log_std) * eps[:, i]
                if keep:
                    x_new = x_new.detach()
                if not grad:
                    lpf.append(gaussian_log_prob(x_new, mean, log_std))
                else:  # reparametrised: (x_new - mean) / std = eps exactly
                    lpf.append((-0.5 * eps[:, i] ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1))
            x = x_new
            xs.append(x)
        xs = torch.stack(xs, 1)
        lpb = log_pb(env, policy, xs, emb)
        log_r = env.log_reward(xs[:, -1])
    out = {"xs": xs, "log_pf": torch.stack(lpf, 1), "log_pb": lpb, "log_r": log_r}
    if keep:
        out["emb"] = emb
    if grads:  # grad log R at x_0..x_{T-1}, reused by score_path (no second gradient pass)
        out["grad_log_r"] = torch.stack(grads, 1)
    return out


def score_path(env: DiffusionEnv, policy, xs: torch.Tensor, emb: Optional[dict] = None,
               grad_log_r: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_pf, log_pb)``, each ``(B, T)``, of trajectories ``xs (B, T+1, d)`` (one network pass).
    ``grad_log_r`` (``(B, T, d)``, for Langevin policies) is computed if not given."""
    B, T1, d = xs.shape
    T = T1 - 1
    if T != env.steps or d != env.dim:
        raise ValueError(f"trajectories must have shape (B, {env.steps + 1}, {env.dim}), got {tuple(xs.shape)}")
    emb = policy.time_embeddings() if emb is None else emb
    x = xs[:, :-1].detach()
    steps = torch.arange(T, device=xs.device)[None, :].expand(B, T)
    if policy.langevin and grad_log_r is None:
        grad_log_r = env.grad_log_reward(x.reshape(B * T, d)).reshape(B, T, d)
    f, log_var = policy.drift(x, steps, emb, grad_log_r)
    coef, base_log_std = env.forward_params(xs.dtype)
    coef, base_log_std = coef.to(xs.device)[None, :, None], base_log_std.to(xs.device)[None, :, None]
    log_std = 0.5 * log_var + base_log_std
    mean = x * coef + f * env.dt
    log_pf = gaussian_log_prob(xs[:, 1:].detach(), mean, log_std)
    return log_pf, log_pb(env, policy, xs.detach(), emb)
