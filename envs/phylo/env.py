"""PhyloGFN's forest-merge environment: build a rooted binary tree over ``n`` taxa by merges.

s_0 is the forest of ``n`` single taxa; a forward action merges the trees in slots ``a < c``
under a new node (and, for the likelihood reward, picks a branch-length bin for each of the
two new edges); after ``n - 1`` merges one tree is left and exit is the only action.  A
backward action names a slot whose tree is not a single taxon and splits its root.  States
are canonical :class:`~gfn.envs.phylo.forest.Forest` batches, so a tree reached by different
merge orders is one state (P_B matters: a forest with ``k`` non-trivial trees has ``k``
parents).

Actions: ``pair * K**2 + b1 * K + b2`` for the pair index of ``(a, c)`` (row-major over
``a < c``) and bins ``b1`` (edge to the left subtree, which holds ``a``) and ``b2``; the last
action is exit.  ``K = 1`` for parsimony.  With the likelihood reward the final merge joins
the last two trees by *one* edge (an unrooted tree: ``2n - 3`` edges), so ``b2`` must be 0
there and is stored as ``-1`` (zero length).

Per node the state caches Fitch sets (bit masks over the alphabet, one per site pattern) or
Felsenstein partial likelihoods (rescaled to max 1 per pattern, the log factors kept in
``score``), computed on merge from the two children in O(patterns), batched over the forest
batch; rewards read these caches (see :mod:`gfn.envs.phylo.rewards`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from gfn.env import DiscreteEnv, EnvError, Reward
from gfn.envs.phylo.data import PARSIMONY_C, Alignment, load_alignment
from gfn.envs.phylo.forest import Forest


def jc69(lengths: torch.Tensor) -> torch.Tensor:
    """JC69 transition matrices ``P(t)`` [..., 4, 4] for branch lengths ``t`` (expected substitutions)."""
    e = torch.exp(-4.0 * lengths / 3.0)
    same, diff = 0.25 + 0.75 * e, 0.25 - 0.25 * e
    eye = torch.eye(4, dtype=lengths.dtype, device=lengths.device)
    return diff[..., None, None] + (same - diff)[..., None, None] * eye


def exponential_bins(n_bins: int, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-mass bins of the Exp(rate) branch-length prior: the median of each bin and its
    log mass (``-log K``); the sum over bins of mass x f(median) approximates E[f(t)]."""
    q = (torch.arange(n_bins, dtype=torch.float64) + 0.5) / n_bins
    return -torch.log1p(-q) / rate, torch.full((n_bins,), -math.log(n_bins), dtype=torch.float64)


class PhyloTree(DiscreteEnv):
    """Forest-merge MDP over the taxa of an alignment (see module docstring).

    ``reward``: ``"parsimony"`` (R = exp((C - M(T)) / alpha), Fitch score M on site patterns,
    gaps a fifth state as in gfnx) or ``"likelihood"`` (JC69 likelihood x prior: uniform over
    rooted topologies, Exp(``branch_rate``) branch lengths discretised into ``n_bins``
    equal-mass bins; gaps are missing data).  ``taxa > 0`` keeps the first ``taxa`` sequences.
    ``C`` defaults to gfnx's per-dataset value with all taxa and, on a subset, to the Fitch
    score of the greedy tree (so log R is near 0 at good trees).
    """

    def __init__(self, dataset: str = "DS1", taxa: int = 0, reward_kind: str = "parsimony",
                 alpha: float = 4.0, C: float = float("nan"), n_bins: int = 8, branch_rate: float = 10.0,
                 gap_as_state: bool = True, data_dir: str = "", alignment: Optional[Alignment] = None,
                 reward: Optional[Reward] = None, device: str | torch.device = "cpu"):
        if reward_kind not in ("parsimony", "likelihood"):
            raise ValueError(f"reward_kind must be 'parsimony' or 'likelihood', got {reward_kind!r}")
        likelihood = reward_kind == "likelihood"
        if alignment is None:
            alignment = load_alignment(dataset, taxa, gap_as_state and not likelihood, data_dir or None)
        if likelihood and alignment.n_states != 4:
            raise ValueError("the likelihood reward needs a 4-state alignment (gaps as missing data)")
        n = alignment.n_taxa
        if n < 2:
            raise ValueError(f"need at least 2 taxa, got {n}")
        K = int(n_bins) if likelihood else 1
        if K < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n, self.K, self.likelihood = n, K, likelihood
        self.n_pairs = n * (n - 1) // 2
        super().__init__(n_actions=self.n_pairs * K * K + 1, n_backward_actions=n, device=device)
        dev = self.device
        self.alignment, self.dataset = alignment, dataset
        self.weights = alignment.weights.to(dev)
        self.n_patterns = alignment.codes.shape[1]
        self.provides_intermediate_rewards = not likelihood  # partial parsimony for FL-DB
        a, c = torch.triu_indices(n, n, 1, device=dev)
        self.pair_a, self.pair_c = a, c
        self.pair_of = torch.full((n, n), -1, dtype=torch.long, device=dev)
        self.pair_of[a, c] = torch.arange(self.n_pairs, device=dev)
        codes = alignment.codes.to(dev)
        if likelihood:
            bits = 1 << torch.arange(4, device=dev)
            self.leaf_data = ((codes.long().unsqueeze(-1) & bits) > 0).float()  # [n, P, 4]
            lengths, log_mass = exponential_bins(K, branch_rate)
            self.bin_lengths, self.bin_log_mass = lengths.to(dev), log_mass.to(dev)
            mats = jc69(self.bin_lengths)
            # extra last matrix: the identity, for the zero-length second edge of the final merge
            self.bin_mats = torch.cat([mats, torch.eye(4, dtype=torch.float64, device=dev)[None]]).float()
        else:
            self.leaf_data = codes  # [n, P] uint8
            # merge costs between single taxa: the pairwise cache of s_0
            self.leaf_costs = ((codes[:, None] & codes[None]) == 0).float() @ self.weights.float()
        self.alpha = float(alpha)
        if reward is None:
            from gfn.envs.phylo.rewards import LikelihoodReward, ParsimonyReward
            if likelihood:
                reward = LikelihoodReward(self, branch_rate)
            else:
                if math.isnan(C):
                    C = PARSIMONY_C[dataset] if (not taxa and dataset in PARSIMONY_C) else float(self.greedy_parsimony())
                reward = ParsimonyReward(self, float(C), self.alpha)
        self.reward = reward
        self.C = getattr(reward, "C", float("nan"))

    # ------------------------------------------------------------------ helpers
    def _node_data(self, states: Forest, rows: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """Cached data of node ids ``nodes`` (taxa or internal) in forests ``rows``."""
        n = self.n
        out = states.data[rows, (nodes - n).clamp(min=0)]
        leaf = (nodes < n).nonzero().squeeze(1)
        out[leaf] = self.leaf_data[nodes[leaf]]
        return out

    def merge_data(self, left: torch.Tensor, right: torch.Tensor, m1: Optional[torch.Tensor] = None,
                   m2: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Data and score of a new node from its children's data: Fitch (intersection if not
        empty, else union plus one weighted mutation) or pruning through the edges' JC69 matrices."""
        if not self.likelihood:
            both = left & right
            empty = both == 0
            data = torch.where(empty, left | right, both)
            return data, (empty.double() * self.weights).sum(-1)
        x = torch.bmm(left, m1.transpose(1, 2)) * torch.bmm(right, m2.transpose(1, 2))  # L[p,s] = sum_t P[s,t] L_child[p,t]
        scale = x.amax(-1, keepdim=True)
        return x / scale, (scale.squeeze(-1).double().log() * self.weights).sum(-1)

    # ------------------------------------------------------------------ contract
    def initial_states(self, k: int) -> Forest:
        """``k`` forests of single taxa."""
        n, dev = self.n, self.device
        data = torch.zeros(k, n - 1, *self.leaf_data.shape[1:], dtype=self.leaf_data.dtype, device=dev)
        return Forest(roots=torch.arange(n, device=dev).repeat(k, 1),
                      children=torch.full((k, n - 1, 2), -1, dtype=torch.long, device=dev),
                      bins=torch.full((k, n - 1, 2), -1, dtype=torch.long, device=dev),
                      data=data, score=torch.zeros(k, n - 1, dtype=torch.float64, device=dev),
                      costs=(torch.zeros(k, 0, 0, device=dev) if self.likelihood
                             else self.leaf_costs.repeat(k, 1, 1)))

    def decode(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward action codes -> slots ``a < c`` and bins ``b1, b2``."""
        K2 = self.K * self.K
        pair = actions // K2
        return self.pair_a[pair], self.pair_c[pair], (actions % K2) // self.K, actions % self.K

    def step(self, states: Forest, actions: torch.Tensor) -> Forest:
        """Merge the trees in slots ``a < c``; the new node is keyed by ``c``."""
        a, c, b1, b2 = self.decode(actions)
        rows = torch.arange(len(states), device=self.device)
        final = states.n_roots() == 2
        left, right = states.roots[rows, a], states.roots[rows, c]
        ld, rd = self._node_data(states, rows, left), self._node_data(states, rows, right)
        b2 = torch.where(final, torch.full_like(b2, -1), b2)
        if self.likelihood:
            data, score = self.merge_data(ld, rd, self.bin_mats[b1], self.bin_mats[b2])
        else:
            data, score = self.merge_data(ld, rd)
        out = states.merged(rows, a, c, left, right, data, score)
        out.bins[rows, c - 1] = torch.stack([b1, b2], 1)
        if not self.likelihood:
            self._update_costs(out, rows, a, data)
            self._set_costs(out, rows, c, torch.zeros_like(out.costs[:, 0]))
        return out

    def _root_codes(self, states: Forest, rows: torch.Tensor) -> torch.Tensor:
        """[B, n, P] Fitch sets of each slot's root (255 in empty slots: never disjoint)."""
        B, n = len(states), self.n
        flat_rows = rows.repeat_interleave(n)
        codes = self._node_data(states, flat_rows, states.roots.reshape(-1).clamp(min=0)).reshape(B, n, -1)
        codes[states.roots < 0] = 255
        return codes

    def _set_costs(self, states: Forest, rows: torch.Tensor, slot: torch.Tensor, row: torch.Tensor) -> None:
        """Write ``row`` [B, n] as row and column ``slot`` of the pairwise cost cache (in place)."""
        states.costs[rows, slot] = row
        states.costs[rows, :, slot] = row

    def _update_costs(self, states: Forest, rows: torch.Tensor, slot: torch.Tensor, codes: torch.Tensor) -> None:
        """Recompute the costs of the root in ``slot`` (Fitch sets ``codes`` [B, P]) against every slot."""
        disjoint = (self._root_codes(states, rows) & codes.unsqueeze(1)) == 0  # [B, n, P]
        row = disjoint.float() @ self.weights.float()  # float32 is exact for these integer counts
        row = torch.where(states.roots >= 0, row, torch.zeros_like(row))
        row[rows, slot] = 0.0
        self._set_costs(states, rows, slot, row)

    def backward_step(self, states: Forest, actions: torch.Tensor) -> Forest:
        """Split the root of the tree in slot ``actions``: its right subtree goes back to the
        slot of its smallest taxon (the node's key)."""
        rows = torch.arange(len(states), device=self.device)
        key = states.roots[rows, actions] - self.n
        kids = states.children[rows, key]
        out = states.clone()
        out.roots[rows, actions] = kids[:, 0]
        out.roots[rows, key + 1] = kids[:, 1]
        out.children[rows, key] = -1
        out.bins[rows, key] = -1
        out.data[rows, key] = 0
        out.score[rows, key] = 0
        if not self.likelihood:
            self._update_costs(out, rows, actions, self._node_data(out, rows, kids[:, 0]))
            self._update_costs(out, rows, key + 1, self._node_data(out, rows, kids[:, 1]))
        return out

    def forward_mask(self, states: Forest) -> torch.Tensor:
        """Pairs of occupied slots (with any bins; ``b2 = 0`` at the final merge); exit at one tree."""
        occ = states.roots >= 0
        ok = occ[:, self.pair_a] & occ[:, self.pair_c]  # [B, pairs]
        n_roots = occ.sum(-1)
        if self.K > 1:
            bins_ok = torch.ones(len(states), self.K, self.K, dtype=torch.bool, device=self.device)
            bins_ok[:, :, 1:] = (n_roots != 2).view(-1, 1, 1)
            ok = (ok[:, :, None, None] & bins_ok[:, None]).reshape(len(states), -1)
        return torch.cat([ok, (n_roots == 1).unsqueeze(1)], 1)

    def backward_mask(self, states: Forest) -> torch.Tensor:
        """Slots whose tree has an internal root."""
        return states.roots >= self.n

    def backward_action(self, states: Forest, actions: torch.Tensor) -> torch.Tensor:
        """The merge of slots ``a < c`` is undone by splitting slot ``a``."""
        return self.pair_a[actions // (self.K * self.K)]

    def forward_action(self, states: Forest, actions: torch.Tensor) -> torch.Tensor:
        """Splitting slot ``a`` (of the child ``states``) undoes the merge of ``a`` with the root's key."""
        rows = torch.arange(len(states), device=self.device)
        key = states.roots[rows, actions] - self.n
        bins = states.bins[rows, key].clamp(min=0)
        return self.pair_of[actions, key + 1] * self.K * self.K + bins[:, 0] * self.K + bins[:, 1]

    def is_initial(self, states: Forest) -> torch.Tensor:
        """No merge done yet."""
        return states.n_merges() == 0

    # ------------------------------------------------------------------ quantities of forests
    def parsimony(self, states: Forest) -> torch.Tensor:
        """Fitch parsimony of each forest (sum over its trees; weighted over site patterns) [B]."""
        if self.likelihood:
            raise EnvError("parsimony() needs the parsimony environment (reward_kind='parsimony')")
        return states.score.sum(-1)

    def log_likelihood(self, states: Forest) -> torch.Tensor:
        """JC69 log-likelihood of each complete tree (float64) [B]."""
        if not self.likelihood:
            raise EnvError("log_likelihood() needs reward_kind='likelihood'")
        if bool((states.n_roots() != 1).any()):
            i = int((states.n_roots() != 1).nonzero()[0, 0])
            raise EnvError(f"log_likelihood is defined on complete trees; forest {states.describe(i)} "
                           f"(batch position {i}) has {int(states.n_roots()[i])} trees")
        # the root of a complete tree is the node in slot 0
        rows = torch.arange(len(states), device=self.device)
        root = states.data[rows, states.roots[:, 0] - self.n].double()
        site = torch.log(root.mean(-1))  # stationary frequencies 1/4
        return states.score.sum(-1) + (site * self.weights).sum(-1)

    def greedy_parsimony(self) -> float:
        """Fitch score of the tree built by always merging the pair that adds the fewest
        mutations (ties: lowest pair index); a deterministic reference and default offset C."""
        s = self.initial_states(1)
        for _ in range(self.n - 1):
            mask = self.forward_mask(s)[0, :-1]
            acts = mask.nonzero().squeeze(1)
            children = self.step(s.index(torch.zeros(acts.numel(), dtype=torch.long, device=self.device)), acts)
            best = int(torch.argmin(children.score.sum(-1)))
            s = children.index(torch.tensor([best], device=self.device))
        return float(s.score.sum())

    # ------------------------------------------------------------------ exact enumeration
    def forest_keys(self, states: Forest) -> torch.Tensor:
        """An int64 code of each forest's structure (children, and bins when ``K > 1``)."""
        n, K = self.n, self.K
        digits = [(states.children.flatten(1) + 1, 2 * n)]
        if K > 1:
            digits.append((states.bins.flatten(1) + 1, K + 1))
        bits = sum(d.shape[1] * math.log2(base) for d, base in digits)
        if bits > 62:
            raise EnvError(f"PhyloTree with {n} taxa and {K} bins is too large to enumerate "
                           f"(keys need {bits:.0f} bits; at most 8 taxa with parsimony)")
        key = torch.zeros(len(states), dtype=torch.long, device=self.device)
        for d, base in digits:
            for j in range(d.shape[1]):  # over key digits (a fixed, small number), not states
                key = key * base + d[:, j]
        return key

    def enumerate_states(self) -> Forest:
        """All forests reachable from s_0, sorted by :meth:`forest_keys` (cached)."""
        if getattr(self, "_enum", None) is None:
            layer = self.initial_states(1)
            self.forest_keys(layer)  # raises early when too large
            layers = [layer]
            for _ in range(self.n - 1):
                rows, acts = self.forward_mask(layer)[:, :-1].nonzero(as_tuple=True)
                children = self.step(layer.index(rows), acts)
                keys = self.forest_keys(children)
                uniq, inv = torch.unique(keys, return_inverse=True)
                first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long, device=self.device)
                first = first.scatter_reduce(0, inv, torch.arange(keys.numel(), device=self.device), "amin")
                layer = children.index(first)
                layers.append(layer)
            states = Forest.cat(layers)
            keys = self.forest_keys(states)
            order = keys.argsort()
            self._enum, self._enum_keys = states.index(order), keys[order]
        return self._enum

    def state_index(self, states: Forest) -> torch.Tensor:
        """Position of each forest in :meth:`enumerate_states`."""
        self.enumerate_states()
        keys = self.forest_keys(states)
        idx = torch.searchsorted(self._enum_keys, keys).clamp(max=self._enum_keys.numel() - 1)
        if not bool((self._enum_keys[idx] == keys).all()):
            raise EnvError("state_index: a forest is not among enumerate_states()")
        return idx

    @property
    def is_enumerable(self) -> bool:
        """Exact metrics are available up to 8 taxa (parsimony) or small likelihood trees."""
        n, K = self.n, self.K
        return 2 * (n - 1) * (math.log2(2 * n) + (math.log2(K + 1) if K > 1 else 0.0)) <= 62

    # ------------------------------------------------------------------ policy features
    def merge_costs(self, states: Forest) -> torch.Tensor:
        """[B, pairs] Fitch mutations each merge would add (weighted count of patterns whose
        root sets are disjoint; 0 where a slot is empty), read from the forest's pairwise cache
        (``Forest.costs``, updated on every merge and split).  Parsimony reward only."""
        if self.likelihood:
            raise ValueError("merge_costs needs the parsimony reward (Fitch sets)")
        return states.costs[:, self.pair_a, self.pair_c]

    def merge_costs_direct(self, states: Forest) -> torch.Tensor:
        """:meth:`merge_costs` recomputed from the roots' Fitch sets, without the cache
        (O(pairs x patterns) per forest; a reference for tests and for forests built by hand)."""
        if self.likelihood:
            raise ValueError("merge_costs needs the parsimony reward (Fitch sets)")
        codes = self._root_codes(states, torch.arange(len(states), device=self.device))
        disjoint = (codes[:, self.pair_a] & codes[:, self.pair_c]) == 0  # [B, pairs, P]
        return disjoint.float() @ self.weights.float()

    def featurize(self, states: Forest) -> torch.Tensor:
        """Per-slot root data, flattened to [B, n * P] (Fitch codes as floats; 0 = empty slot) or
        [B, n * P * 4] (partials); :class:`~gfn.envs.phylo.policy.RootSetEncoder` unflattens it."""
        B, n = len(states), self.n
        rows = torch.arange(B, device=self.device).repeat_interleave(n)
        nodes = states.roots.reshape(-1)
        x = self._node_data(states, rows, nodes.clamp(min=0))
        x[nodes < 0] = 0
        return x.reshape(B, -1).float()

    @property
    def feature_dim(self) -> int:
        """n slots x P patterns (x 4 partials with the likelihood reward)."""
        return self.n * self.n_patterns * (4 if self.likelihood else 1)

    def build_gflownet(self, flow: bool = False, **kw):
        """Pair-scoring set-encoder GFlowNet (see :mod:`gfn.envs.phylo.policy`)."""
        from gfn.envs.phylo.policy import build_phylo_gflownet
        return build_phylo_gflownet(self, flow=flow, **kw)
