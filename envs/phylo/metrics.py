"""Evaluation helpers for phylogenetic trees: building forests from nested tuples, sample
statistics (best / mean parsimony), the correlation of log p-hat with log R, and conversion
of Biopython trees.  Kept out of the environment class (evaluation only, not hot paths)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from gfn.envs.phylo.forest import Forest


def merge_actions(env, tree, bins: Optional[dict] = None) -> list:
    """Forward actions that build ``tree`` (nested 2-tuples of taxon indices) in post-order.

    ``bins`` maps a subtree (tuple) to its ``(b1, b2)`` branch-length bins (likelihood envs;
    default 0)."""
    actions = []

    def rec(t) -> int:  # returns the slot (smallest taxon) of the subtree
        if isinstance(t, int):
            if not 0 <= t < env.n:
                raise ValueError(f"taxon {t} out of range [0, {env.n})")
            return t
        if len(t) != 2:
            raise ValueError(f"trees must be binary: {t}")
        sa, sb = rec(t[0]), rec(t[1])
        a, c = min(sa, sb), max(sa, sb)
        b1, b2 = (bins or {}).get(t, (0, 0))
        if sb < sa:
            b1, b2 = b2, b1
        actions.append(int(env.pair_of[a, c]) * env.K * env.K + b1 * env.K + b2)
        return a

    rec(tree)
    return actions


def build_forest(env, tree, bins: Optional[dict] = None) -> Forest:
    """The state reached by building ``tree`` (see :func:`merge_actions`); checks every move."""
    s = env.initial_states(1)
    for act in merge_actions(env, tree, bins):
        s = env.apply(s, torch.tensor([act], device=env.device))
    return s


def parsimony_stats(env, states: Forest) -> dict:
    """Best and mean Fitch parsimony of complete trees."""
    m = env.parsimony(states)
    return {"best_parsimony": float(m.min()), "mean_parsimony": float(m.mean())}


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation (NaN when a side is constant)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    den = x.norm() * y.norm()
    return float((x * y).sum() / den) if float(den) > 0 else float("nan")


def biopython_to_nested(clade, names: Sequence[str]):
    """Nested tuples of taxon indices from a Biopython clade; multifurcations are resolved by
    joining children left to right (Biopython's Fitch scorer does the same)."""
    index = {nm: i for i, nm in enumerate(names)}
    if clade.is_terminal():
        return index[clade.name]
    kids = [biopython_to_nested(c, names) for c in clade.clades]
    t = kids[0]
    for k in kids[1:]:
        t = (t, k)
    return t
