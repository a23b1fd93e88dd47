"""Metrics.  Names say what they compute; all logs are natural logs.

Exact metrics need an enumerable environment (``env.enumerate_states()`` and
``env.state_index()``): :func:`exact_terminal_distribution` pushes probability mass forward
through the state DAG under the current P_F, batched over all states and edges.
"""

from __future__ import annotations

from typing import Optional

import torch

from gfn.env import DiscreteEnv, Env
from gfn.states import batch_index, batch_len


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total variation distance ``1/2 * sum_i |p_i - q_i|``."""
    return 0.5 * float((p.double() - q.double()).abs().sum())


def kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL divergence ``sum_i p_i log(p_i / q_i)`` (terms with p_i = 0 are 0; +inf if q_i = 0 < p_i)."""
    p, q = p.double(), q.double()
    nz = p > 0
    if bool((q[nz] == 0).any()):
        return float("inf")
    return float((p[nz] * (p[nz].log() - q[nz].log())).sum())


def jsd(p: torch.Tensor, q: torch.Tensor) -> float:
    """Jensen-Shannon divergence ``1/2 KL(p || m) + 1/2 KL(q || m)``, ``m = (p + q) / 2`` (nats, <= log 2)."""
    m = 0.5 * (p.double() + q.double())
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def empirical_distribution(indices: torch.Tensor, n: int) -> torch.Tensor:
    """Normalised histogram of state indices over ``n`` states."""
    counts = torch.bincount(indices.long().flatten(), minlength=n).double()
    return counts / counts.sum().clamp(min=1)


def terminal_mask(env: DiscreteEnv, states) -> torch.Tensor:
    """True where exit is allowed (the state can be a sampled object)."""
    return env.forward_mask(states)[:, env.exit_action]


def target_distribution(env: DiscreteEnv, tempering: float = 1.0) -> torch.Tensor:
    """Exact target ``R(x)^beta / Z`` over ``env.enumerate_states()`` (0 at non-terminal states)."""
    states = env.enumerate_states()
    lr = env.checked_log_reward(states).double() * tempering
    lr = torch.where(terminal_mask(env, states), lr, torch.full_like(lr, float("-inf")))
    return torch.softmax(lr, 0)


def log_partition(env: DiscreteEnv, tempering: float = 1.0) -> float:
    """Exact ``log Z = log sum_x R(x)^beta`` over terminal states."""
    states = env.enumerate_states()
    lr = env.checked_log_reward(states).double() * tempering
    lr = lr[terminal_mask(env, states)]
    return float(torch.logsumexp(lr, 0))


@torch.no_grad()
def exact_terminal_distribution(env: DiscreteEnv, model, cond: Optional[torch.Tensor] = None,
                                chunk: int = 65536) -> torch.Tensor:
    """Probability that the model's P_F terminates at each state of ``env.enumerate_states()``.

    ``P(reach s') = [s' = s_0] + sum_{(s, a) -> s'} P(reach s) P_F(a | s)`` is iterated to its
    fixed point (exact on a DAG after depth + 1 sweeps, each a batched scatter over all edges);
    the result is ``P(reach x) * P_F(exit | x)``.  ``cond`` is one conditioning vector used
    for every state.  Computed in float64, without gradients
    (:func:`differentiable_terminal_distribution` keeps them).
    """
    return differentiable_terminal_distribution(env, model, cond, chunk)


def differentiable_terminal_distribution(env: DiscreteEnv, model, cond: Optional[torch.Tensor] = None,
                                         chunk: int = 65536) -> torch.Tensor:
    """:func:`exact_terminal_distribution` with autograd through P_F (e.g. to fit a policy to
    an exact target on a small environment, as ``benchmarks/logit_expressivity.py`` does)."""
    if not env.is_enumerable:
        raise ValueError(f"{type(env).__name__} is not enumerable: exact metrics are unavailable")
    states = env.enumerate_states()
    m = batch_len(states)
    logps = []
    for start in range(0, m, chunk):
        idx = torch.arange(start, min(start + chunk, m), device=env.device)
        sub = batch_index(states, idx)
        c = None if cond is None else cond.reshape(1, -1).expand(idx.numel(), -1)
        # renormalise in float64 so every row sums to 1 to double precision
        logps.append(torch.log_softmax(model.pf_dist(sub, c).log_probs.double(), dim=-1))
    logp = torch.cat(logps)  # [M, A]
    mask = env.forward_mask(states)
    src_l, dst_l, w_l = [], [], []
    for a in range(env.n_actions - 1):
        rows = mask[:, a].nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        acts = torch.full((rows.numel(),), a, dtype=torch.long, device=env.device)
        children = env.step(batch_index(states, rows), acts)
        src_l.append(rows)
        dst_l.append(env.state_index(children))
        w_l.append(logp[rows, a].exp())
    src, dst, w = torch.cat(src_l), torch.cat(dst_l), torch.cat(w_l)
    s0 = env.state_index(env.initial_states(1))
    start = torch.zeros(m, dtype=torch.float64, device=env.device)
    start[s0] = 1.0
    reach = start.clone()
    for _ in range(m + 1):
        new = start.index_add(0, dst, reach[src] * w)
        if torch.equal(new, reach):
            break
        reach = new
    else:
        raise RuntimeError("state graph is not a DAG reachable from s_0 (no fixed point)")
    return reach * logp[:, env.exit_action].exp()


def modes_found(sampled_indices: torch.Tensor, mode_mask: torch.Tensor) -> int:
    """Number of distinct modes (``mode_mask`` True) among sampled state indices."""
    hit = torch.zeros_like(mode_mask)
    hit[sampled_indices.long()] = True
    return int((hit & mode_mask).sum())


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (Pearson correlation of ranks; ties broken by order)."""
    rx = x.double().argsort().argsort().double()
    ry = y.double().argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()).clamp(min=1e-12))


def exact_metrics(env: Env, model, cond: Optional[torch.Tensor] = None, tempering: float = 1.0) -> dict:
    """``tv_exact``, ``jsd_exact``, ``kl_exact`` (target || model), ``log_z_true`` for an enumerable env."""
    p = exact_terminal_distribution(env, model, cond)
    q = target_distribution(env, tempering)
    return {"tv_exact": tv(p, q), "jsd_exact": jsd(p, q), "kl_exact": kl(q, p),
            "log_z_true": log_partition(env, tempering)}
