"""A batch of phylogenetic forests over ``n`` taxa, stored canonically.

Slots and node keys make a forest's storage depend only on the forest, not on the order of
the merges that built it:

* a tree lives in the *slot* of its smallest taxon; ``roots[b, a]`` is the root node of the
  tree in slot ``a`` (``-1``: no tree has ``a`` as its smallest taxon);
* an internal node joins two subtrees with smallest taxa ``a < c``; every taxon ``c >= 1`` is
  the larger minimum of at most one node, so the node is *keyed* by ``c`` and stored in row
  ``c - 1`` (node id ``n + c - 1``; taxa are node ids ``0 .. n-1``);
* ``children[b, c - 1] = (left, right)`` (left holds the smaller taxon), ``bins`` the
  branch-length bins of those two edges, ``data`` the per-pattern Fitch sets or partial
  likelihoods of the node and ``score`` its own contribution (mutations, or log scale factors);
* ``costs[b, a, c]`` (parsimony only; ``[B, 0, 0]`` with the likelihood reward): the mutations
  that merging the roots of slots ``a`` and ``c`` would add (0 where a slot is empty), kept up
  to date on every merge and split so that the policy's merge-cost feature costs nothing.

Absent nodes hold ``-1`` (structure) and zeros (data, score).  ``data`` and ``score`` are
functions of the structure, cached so that a merge costs O(patterns) (O(n x patterns) with
the pairwise ``costs``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch


@dataclass
class Forest:
    """Batch of canonical forests (see module docstring); implements gfn's ``StateBatch``."""

    roots: torch.Tensor     # [B, n] long
    children: torch.Tensor  # [B, n-1, 2] long
    bins: torch.Tensor      # [B, n-1, 2] long
    data: torch.Tensor      # [B, n-1, P] uint8 Fitch sets or [B, n-1, P, S] float partials
    score: torch.Tensor     # [B, n-1] float64
    costs: torch.Tensor     # [B, n, n] float32 pairwise merge costs (parsimony) or [B, 0, 0]

    def __len__(self) -> int:
        return self.roots.shape[0]

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.roots.device

    @property
    def n_taxa(self) -> int:
        """Number of taxa (slots)."""
        return self.roots.shape[1]

    def _map(self, fn) -> "Forest":
        return Forest(*(fn(getattr(self, f.name)) for f in fields(self)))

    def index(self, idx: torch.Tensor) -> "Forest":
        """Sub-batch selected by a long or bool index."""
        return self._map(lambda t: t[idx])

    @classmethod
    def cat(cls, batches: Sequence["Forest"]) -> "Forest":
        """Concatenate batches."""
        return cls(*(torch.cat([getattr(b, f.name) for b in batches]) for f in fields(cls)))

    def clone(self) -> "Forest":
        """Deep copy."""
        return self._map(torch.clone)

    def merged(self, rows: torch.Tensor, a: torch.Tensor, c: torch.Tensor, left: torch.Tensor,
               right: torch.Tensor, data: torch.Tensor, score: torch.Tensor) -> "Forest":
        """A copy in which the trees ``left`` (slot ``a``) and ``right`` (slot ``c > a``) of rows
        ``rows`` hang under a new internal node keyed ``c - 1`` with ``data``/``score``; the new
        root takes slot ``a`` and slot ``c`` empties (the canonical merge of every forest env).
        Subclass fields (bins, lengths, costs) are the caller's to set on the copy."""
        key = c - 1
        out = self.clone()
        out.children[rows, key] = torch.stack([left, right], 1)
        out.data[rows, key] = data
        out.score[rows, key] = score
        out.roots[rows, a] = self.n_taxa + key
        out.roots[rows, c] = -1
        return out

    def to(self, device) -> "Forest":
        """Copy to ``device``."""
        return self._map(lambda t: t.to(device))

    def detach(self) -> "Forest":
        """Tensors without autograd history (there is none; kept for the protocol)."""
        return self._map(torch.Tensor.detach)

    def with_(self, **changes) -> "Forest":
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def n_roots(self) -> torch.Tensor:
        """Number of trees in each forest [B]."""
        return (self.roots >= 0).sum(-1)

    def n_merges(self) -> torch.Tensor:
        """Number of internal nodes in each forest [B]."""
        return (self.children[..., 0] >= 0).sum(-1)

    def rows_equal(self, other: "Forest") -> torch.Tensor:
        """Per-forest equality of the structure (roots, children, bins) [B]."""
        same = (self.roots == other.roots).all(-1)
        same &= (self.children == other.children).flatten(1).all(-1)
        return same & (self.bins == other.bins).flatten(1).all(-1)

    def equal(self, other: "Forest") -> bool:
        """True when both batches hold the same forests in the same order."""
        return len(self) == len(other) and bool(self.rows_equal(other).all())

    def newick(self, i: int, names: Sequence[str] | None = None, lengths: Sequence[float] | None = None) -> str:
        """Newick string of forest ``i`` (trees separated by spaces; branch lengths when given)."""
        n = self.n_taxa
        ch, bn = self.children[i].tolist(), self.bins[i].tolist()

        def rec(node: int) -> str:
            if node < n:
                return str(names[node]) if names is not None else str(node)
            (left, right), (b1, b2) = ch[node - n], bn[node - n]
            parts = [rec(left), rec(right)]
            if lengths is not None:
                parts = [f"{parts[0]}:{lengths[b1]:.6g}", f"{parts[1]}:{lengths[b2]:.6g}" if b2 >= 0 else parts[1]]
            return f"({parts[0]},{parts[1]})"

        return " ".join(rec(r) + ";" for r in self.roots[i].tolist() if r >= 0)

    def describe(self, i: int) -> str:
        """Short text of forest ``i`` for error messages."""
        return self.newick(i)
