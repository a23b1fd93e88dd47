"""Metrics.  Names say what they compute; all logs are natural logs.

Exact metrics need an enumerable environment (``env.enumerate_states()`` and
``env.state_index()``): :func:`exact_terminal_distribution` pushes probability mass forward
through the state DAG under the current P_F, batched over all states and edges.  Enumerated
states that no trajectory from s_0 reaches (:func:`reachable_mask`) are not objects of the
GFlowNet: the policy is never evaluated there, and the target and log Z leave them out (with a
warning, since ``enumerate_states`` should not list them; ``check_env`` reports them).
"""

from __future__ import annotations

import warnings
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


def reachable_mask(env: DiscreteEnv, states=None, warn: bool = True) -> torch.Tensor:
    """True at the states of ``env.enumerate_states()`` that some trajectory from s_0 reaches.

    A breadth-first walk, batched over each frontier (one ``step`` call per depth), that only
    ever evaluates masks and steps at reachable states.  With ``warn``, unreachable states are
    reported with a :class:`UserWarning` (they should not be enumerated)."""
    if states is None:
        states = env.enumerate_states()
    m = batch_len(states)
    seen = torch.zeros(m, dtype=torch.bool, device=env.device)
    frontier = env.state_index(env.initial_states(1)).reshape(1).to(env.device)
    seen[frontier] = True
    for _ in range(m):
        if frontier.numel() == 0:
            break
        here = batch_index(states, frontier)
        rows, acts = env.forward_mask(here)[:, :env.exit_action].nonzero(as_tuple=True)
        if rows.numel() == 0:
            break
        kids = env.state_index(env.step(batch_index(here, rows), acts)).unique()
        if bool(((kids < 0) | (kids >= m)).any()):
            raise ValueError(f"{type(env).__name__}: a forward step leaves enumerate_states() "
                             "(run gfn.check_env on the environment)")
        frontier = kids[~seen[kids]]
        seen[frontier] = True
    n_out = m - int(seen.sum())
    if warn and n_out:
        i = int((~seen).nonzero()[0, 0])
        example = batch_index(states, torch.tensor([i], device=env.device))
        example = example.tolist()[0] if torch.is_tensor(example) else f"#{i}"
        warnings.warn(f"{type(env).__name__}.enumerate_states() lists {n_out} of {m} states that no trajectory "
                      f"from s_0 reaches (e.g. {example}); exact metrics leave them out", stacklevel=2)
    return seen


def object_mask(env: DiscreteEnv, states=None, reachable: Optional[torch.Tensor] = None) -> torch.Tensor:
    """True at the enumerated states that are objects: reachable from s_0, with exit allowed."""
    if states is None:
        states = env.enumerate_states()
    if reachable is None:
        reachable = reachable_mask(env, states)
    return terminal_mask(env, states) & reachable


def target_distribution(env: DiscreteEnv, tempering: float = 1.0,
                        reachable: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Exact target ``R(x)^beta / Z`` over ``env.enumerate_states()`` (0 at non-terminal and
    unreachable states; ``reachable``: a precomputed :func:`reachable_mask`)."""
    states = env.enumerate_states()
    objects = object_mask(env, states, reachable)
    lr = env.checked_log_reward(states).double() * tempering
    lr = torch.where(objects, lr, torch.full_like(lr, float("-inf")))
    return torch.softmax(lr, 0)


def log_partition(env: DiscreteEnv, tempering: float = 1.0, reachable: Optional[torch.Tensor] = None) -> float:
    """Exact ``log Z = log sum_x R(x)^beta`` over the terminal states reachable from s_0."""
    states = env.enumerate_states()
    lr = env.checked_log_reward(states).double() * tempering
    lr = lr[object_mask(env, states, reachable)]
    return float(torch.logsumexp(lr, 0))


@torch.no_grad()
def exact_terminal_distribution(env: DiscreteEnv, model, cond: Optional[torch.Tensor] = None,
                                chunk: int = 65536, reachable: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Probability that the model's P_F terminates at each state of ``env.enumerate_states()``.

    ``P(reach s') = [s' = s_0] + sum_{(s, a) -> s'} P(reach s) P_F(a | s)`` is iterated to its
    fixed point (exact on a DAG after depth + 1 sweeps, each a batched scatter over all edges);
    the result is ``P(reach x) * P_F(exit | x)``.  ``cond`` is one conditioning vector used
    for every state.  Computed in float64, without gradients
    (:func:`differentiable_terminal_distribution` keeps them).  0 at unreachable states.
    """
    return differentiable_terminal_distribution(env, model, cond, chunk, reachable)


def differentiable_terminal_distribution(env: DiscreteEnv, model, cond: Optional[torch.Tensor] = None,
                                         chunk: int = 65536, reachable: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`exact_terminal_distribution` with autograd through P_F (e.g. to fit a policy to
    an exact target on a small environment, as ``benchmarks/logit_expressivity.py`` does)."""
    if not env.is_enumerable:
        raise ValueError(f"{type(env).__name__} is not enumerable: exact metrics are unavailable")
    states = env.enumerate_states()
    m = batch_len(states)
    if reachable is None:
        reachable = reachable_mask(env, states)
    # the policy is evaluated at reachable states only: elsewhere its masks and features may be
    # meaningless, and a NaN there would spread through 0 * NaN to every state
    live = reachable.nonzero().squeeze(1)
    live_states = batch_index(states, live)
    logps = []
    for start in range(0, live.numel(), chunk):
        idx = torch.arange(start, min(start + chunk, live.numel()), device=env.device)
        sub = batch_index(live_states, idx)
        c = None if cond is None else cond.reshape(1, -1).expand(idx.numel(), -1)
        # renormalise in float64 so every row sums to 1 to double precision
        logps.append(torch.log_softmax(model.pf_dist(sub, c).log_probs.double(), dim=-1))
    logp = torch.cat(logps)  # [M_live, A]
    return push_forward(env, m, live, live_states, logp.exp(), logp[:, env.exit_action].exp())


def push_forward(env: DiscreteEnv, m: int, live: torch.Tensor, live_states, move_p: torch.Tensor,
                 exit_p: torch.Tensor) -> torch.Tensor:
    """Terminal distribution over the ``m`` enumerated states from per-state move probabilities.

    ``live`` indexes the reachable states (``live_states`` are those states), ``move_p[i, a]`` is
    the probability of moving along non-exit action ``a`` from ``live[i]`` and ``exit_p[i]`` of
    exiting there.  ``P(reach s') = [s' = s_0] + sum_{(s, a) -> s'} P(reach s) move_p[s, a]`` is
    iterated to its fixed point (exact on a DAG after depth + 1 sweeps, each a batched scatter
    over all edges); the result is ``P(reach x) * exit_p[x]`` (0 at unreachable states).
    """
    mask = env.forward_mask(live_states)
    src_l, dst_l, w_l = [], [], []
    for a in range(env.n_actions - 1):
        rows = mask[:, a].nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        acts = torch.full((rows.numel(),), a, dtype=torch.long, device=env.device)
        children = env.step(batch_index(live_states, rows), acts)
        src_l.append(live[rows])
        dst_l.append(env.state_index(children))
        w_l.append(move_p[rows, a])
    start = torch.zeros(m, dtype=torch.float64, device=env.device)
    start[env.state_index(env.initial_states(1))] = 1.0
    reach = start.clone()
    if src_l:
        src, dst, w = torch.cat(src_l), torch.cat(dst_l), torch.cat(w_l)
        for _ in range(m + 1):
            new = start.index_add(0, dst, reach[src] * w)
            if torch.equal(new, reach):
                break
            reach = new
        else:
            raise RuntimeError("state graph is not a DAG reachable from s_0 (no fixed point)")
    p_exit = torch.zeros(m, dtype=exit_p.dtype, device=env.device).index_put((live,), exit_p)
    return reach * p_exit


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
    reachable = reachable_mask(env)  # one walk for the three quantities
    p = exact_terminal_distribution(env, model, cond, reachable=reachable)
    q = target_distribution(env, tempering, reachable)
    return {"tv_exact": tv(p, q), "jsd_exact": jsd(p, q), "kl_exact": kl(q, p),
            "log_z_true": log_partition(env, tempering, reachable)}
