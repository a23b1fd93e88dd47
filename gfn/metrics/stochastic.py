"""Exact metrics for stochastic environments with known dynamics.

In a stochastic environment (:class:`gfn.env.StochasticDiscreteEnv`) the probability of
an edge s -> s' is not the policy's action probability but
``P(s' | s) = sum_a P_F(a | s) P(move(s, s') | s, a)``: the environment's transition
probabilities enter the push-forward.  :func:`stochastic_terminal_distribution` computes the
exact terminal distribution of a policy with it; :func:`stochastic_exact_metrics` compares it
with ``R / Z`` (the target does not depend on the dynamics).
"""

from __future__ import annotations

from typing import Optional

import torch

from gfn.metrics.exact import jsd, kl, log_partition, push_forward, reachable_mask, target_distribution, tv
from gfn.states import batch_index, batch_len


def _require_known_dynamics(env) -> None:
    if not getattr(env, "is_stochastic", False):
        raise ValueError(f"{type(env).__name__} is deterministic: use gfn.metrics.exact")
    if not env.is_enumerable:
        raise ValueError(f"{type(env).__name__} is not enumerable: exact metrics are unavailable")
    if not env.knows_dynamics:
        raise ValueError(f"{type(env).__name__} does not implement move_log_probs(): exact metrics "
                         "need the transition probabilities")


def move_probabilities(env, states, action_probs: torch.Tensor) -> torch.Tensor:
    """``P(move m | s) = sum_a P_F(a | s) P(m | s, a)`` for each state, ``[N, n_actions - 1]``
    (float64); ``action_probs`` ``[N, n_actions]`` are P_F including exit."""
    n = batch_len(states)
    out = torch.zeros(n, env.n_actions - 1, dtype=torch.float64, device=action_probs.device)
    for a in range(env.n_actions - 1):  # a loop over action kinds, batched over all states
        acts = torch.full((n,), a, dtype=torch.long, device=action_probs.device)
        out += action_probs[:, a:a + 1].double() * env.move_log_probs(states, acts).double().exp()
    return out


@torch.no_grad()
def stochastic_terminal_distribution(env, model, cond: Optional[torch.Tensor] = None,
                                     reachable: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Probability that the model's P_F, run in the stochastic ``env``, ends at each state of
    ``env.enumerate_states()`` (float64; 0 at unreachable states).

    ``P(reach s') = [s' = s_0] + sum_{s -> s'} P(reach s) P(s' | s)`` with
    ``P(s' | s) = sum_a P_F(a | s) P(move | s, a)``, iterated to its fixed point on the DAG;
    the result is ``P(reach x) * P_F(exit | x)``."""
    _require_known_dynamics(env)
    states = env.enumerate_states()
    m = batch_len(states)
    if reachable is None:
        reachable = reachable_mask(env, states)
    live = reachable.nonzero().squeeze(1)
    live_states = batch_index(states, live)
    c = None if cond is None else cond.reshape(1, -1).expand(live.numel(), -1)
    probs = torch.softmax(model.pf_dist(live_states, c).log_probs.double(), dim=-1)
    move_p = move_probabilities(env, live_states, probs)
    return push_forward(env, m, live, live_states, move_p, probs[:, env.exit_action])


def stochastic_exact_metrics(env, model, cond: Optional[torch.Tensor] = None, tempering: float = 1.0) -> dict:
    """``tv_exact``, ``jsd_exact``, ``kl_exact`` (target || model) and ``log_z_true`` of a policy
    in a stochastic enumerable environment with known dynamics."""
    reachable = reachable_mask(env)
    p = stochastic_terminal_distribution(env, model, cond, reachable=reachable)
    q = target_distribution(env, tempering, reachable)
    return {"tv_exact": tv(p, q), "jsd_exact": jsd(p, q), "kl_exact": kl(q, p),
            "log_z_true": log_partition(env, tempering, reachable)}
