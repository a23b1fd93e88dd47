"""Nearest-neighbour interchange (NNI) hill climbing on complete parsimony trees, batched.

A local-search kernel in the space of terminal objects (trees), for
:class:`gfn.local_search.TerminalSearch`: every tree of a batch moves to its best NNI neighbour
while that lowers the Fitch score, all trees and all neighbours scored at once.  The refined
trees are returned as canonical :class:`~gfn.envs.phylo.forest.Forest` states, so the GFlowNet
can learn from them (backward trajectories sampled with P_B).

Representation: ``kids [B, 2n - 1, 2]``, node ids as in :class:`Forest` (taxa ``0 .. n-1``,
internal nodes ``n ..``; leaves hold ``-1``), plus the root id ``[B]``.  Fitch parsimony does
not depend on the root, so the NNIs are those of the unrooted tree: for an internal edge
``v - p`` below a non-root parent ``p``, swap either child of ``v`` with ``v``'s sibling; for the
root edge (both children of the root internal), swap the first child of one with either child
of the other.  That is ``2 (n - 3)`` neighbours per tree, the unrooted NNI neighbourhood.
"""

from __future__ import annotations

import torch

from gfn.envs.phylo.forest import Forest


def tree_arrays(states: Forest) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kids [B, 2n-1, 2], root [B])`` of complete trees (one root each)."""
    if bool((states.n_roots() != 1).any()):
        raise ValueError("NNI needs complete trees (one root per forest)")
    B, n = len(states), states.n_taxa
    leaves = torch.full((B, n, 2), -1, dtype=torch.long, device=states.device)
    return torch.cat([leaves, states.children], 1), states.roots[:, 0].clone()


def _parents(kids: torch.Tensor) -> torch.Tensor:
    """Parent of every node [B, N] (-1 at the root)."""
    B, N, _ = kids.shape
    par = torch.full((B, N + 1), -1, dtype=torch.long, device=kids.device)
    src = torch.arange(N, device=kids.device).view(1, N, 1).expand(B, N, 2)
    idx = torch.where(kids >= 0, kids, torch.full_like(kids, N))  # leaves' -1 children go to a dump column
    par.scatter_(1, idx.reshape(B, -1), src.reshape(B, -1))
    return par[:, :N]


def _post_order(kids: torch.Tensor, root: torch.Tensor, n: int) -> torch.Tensor:
    """Internal node ids [B, n-1] ordered by decreasing depth (children before parents)."""
    B, N, _ = kids.shape
    par = _parents(kids)
    rows = torch.arange(B, device=kids.device)
    depth = torch.zeros(B, N, dtype=torch.long, device=kids.device)
    for _ in range(n - 1):  # depth <= n - 1; a fixed number of batched passes
        p = par.clamp(min=0)
        depth = torch.where(par >= 0, depth.gather(1, p) + 1, torch.zeros_like(depth))
    depth[rows, root] = 0
    internal = depth[:, n:]
    return n + torch.argsort(-internal, dim=1, stable=True)


def fitch_scores(kids: torch.Tensor, root: torch.Tensor, leaf_codes: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """Weighted Fitch parsimony of each tree [B] (float64); ``leaf_codes [n, P]`` uint8 bit sets."""
    B, N, _ = kids.shape
    n = leaf_codes.shape[0]
    order = _post_order(kids, root, n)
    data = torch.zeros(B, N, leaf_codes.shape[1], dtype=leaf_codes.dtype, device=kids.device)
    data[:, :n] = leaf_codes
    rows = torch.arange(B, device=kids.device)
    score = torch.zeros(B, dtype=torch.float64, device=kids.device)
    w = weights.double()
    for t in range(n - 1):  # n - 1 merges, each batched over all trees
        v = order[:, t]
        left, right = data[rows, kids[rows, v, 0]], data[rows, kids[rows, v, 1]]
        both = left & right
        empty = both == 0
        data[rows, v] = torch.where(empty, left | right, both)
        score += empty.double() @ w
    return score


def nni_neighbours(kids: torch.Tensor, root: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All NNI neighbours: ``(kids [B, M, 2n-1, 2], valid [B, M])`` with ``M = 2 (n - 1)``
    candidate slots per tree (one per internal node and child), ``2 (n - 3)`` of them valid."""
    B, N, _ = kids.shape
    dev = kids.device
    par = _parents(kids)
    v = torch.arange(n, N, device=dev).repeat_interleave(2).expand(B, -1)  # [B, M]
    j = torch.arange(2, device=dev).repeat(N - n).expand(B, -1)
    rows = torch.arange(B, device=dev)[:, None].expand_as(v)
    p = par.gather(1, v)
    is_root = v == root[:, None]
    p_is_root = (p >= 0) & (p.clamp(min=0) == root[:, None])
    # ordinary edge v - p (p not the root): swap child j of v with v's sibling
    pc = p.clamp(min=0)
    side_v = (kids[rows, pc, 1] == v).long()
    u1, j1 = v, j
    u2, j2 = pc, 1 - side_v
    valid = ~is_root & ~p_is_root
    # the root edge: swap child 0 of the root's first child with child j of its second child
    r0, r1 = kids[rows, root[:, None].expand_as(v), 0], kids[rows, root[:, None].expand_as(v), 1]
    root_ok = (r0 >= n) & (r1 >= n)
    u1 = torch.where(is_root, r0, u1)
    j1 = torch.where(is_root, torch.zeros_like(j1), j1)
    u2 = torch.where(is_root, r1, u2)
    j2 = torch.where(is_root, j, j2)
    valid = valid | (is_root & root_ok)
    out = kids[:, None].expand(B, v.shape[1], N, 2).clone()
    b_i = torch.arange(B, device=dev)[:, None].expand_as(v)
    m_i = torch.arange(v.shape[1], device=dev)[None].expand_as(v)
    a = out[b_i, m_i, u1.clamp(min=0), j1]
    c = out[b_i, m_i, u2.clamp(min=0), j2]
    out[b_i, m_i, u1.clamp(min=0), j1] = torch.where(valid, c, a)
    out[b_i, m_i, u2.clamp(min=0), j2] = torch.where(valid, a, c)
    return out, valid


def nni_hill_climb(env, states: Forest, max_rounds: int = 100) -> tuple[Forest, torch.Tensor, int]:
    """Move every tree to its best NNI neighbour while that lowers its Fitch score (steepest
    descent, at most ``max_rounds`` moves); returns (refined canonical states, their Fitch
    scores [B], neighbours scored).  Trees that are already NNI-optimal come back unchanged."""
    if getattr(env, "likelihood", True):
        raise ValueError("NNI hill climbing scores Fitch parsimony: it needs the parsimony PhyloTree")
    n = env.n
    kids, root = tree_arrays(states)
    score = env.parsimony(states).double()
    active = torch.ones(len(states), dtype=torch.bool, device=kids.device)
    n_scored = 0
    for _ in range(max_rounds):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        cand, valid = nni_neighbours(kids[idx], root[idx], n)
        B, M = valid.shape
        s = fitch_scores(cand.reshape(B * M, *cand.shape[2:]), root[idx].repeat_interleave(M),
                         env.leaf_data, env.weights).view(B, M)
        n_scored += int(valid.sum())
        s = torch.where(valid, s, torch.full_like(s, float("inf")))
        best, arg = s.min(1)
        better = best < score[idx] - 0.5  # scores are integer-weighted counts
        moved = idx[better]
        kids[moved] = cand[better, arg[better]]
        score[moved] = best[better]
        active[idx[~better]] = False
    return to_forest(env, kids, root), score, n_scored


def to_forest(env, kids: torch.Tensor, root: torch.Tensor) -> Forest:
    """Canonical states of trees given as ``kids`` / ``root`` (built merge by merge with
    ``env.step``, so every cache of the state is the environment's own)."""
    n = env.n
    B = kids.shape[0]
    order = _post_order(kids, root, n)
    rows = torch.arange(B, device=kids.device)
    low = torch.arange(kids.shape[1], device=kids.device).repeat(B, 1)  # smallest taxon below each node
    s = env.initial_states(B)
    for t in range(n - 1):
        v = order[:, t]
        a, c = low[rows, kids[rows, v, 0]], low[rows, kids[rows, v, 1]]
        lo, hi = torch.minimum(a, c), torch.maximum(a, c)
        low[rows, v] = lo
        s = env.step(s, env.pair_of[lo, hi] * env.K * env.K)
    return s


def nni_refine(max_rounds: int = 100):
    """A ``refine(env, states) -> (states, n_scored)`` for :class:`gfn.local_search.TerminalSearch`."""
    if max_rounds < 1:
        raise ValueError(f"NNI refinement needs max_rounds >= 1, got {max_rounds}")

    def refine(env, states: Forest):
        out, _, n_scored = nni_hill_climb(env, states, max_rounds)
        return out, n_scored

    return refine
