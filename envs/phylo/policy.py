"""Policies for :class:`~gfn.envs.phylo.env.PhyloTree`: a set encoder over the forest's roots
that scores every pair of roots.

* :class:`RootSetEncoder` (the trunk): one linear embedding of each root's per-pattern data
  (one-hot Fitch sets, or partial likelihoods), computed only for occupied slots, then
  ``n_layers`` deep-sets blocks ``h <- h + MLP([h, mean of h over the roots])``; out: [N, n, H].
* :class:`PairPolicy` (P_F): for slots ``a < c``, ``f = relu(U h_a + U h_c + V mean(h))``,
  logit ``w . f``; with branch-length bins, two more heads give the bins of the left and
  right edges from ``[f, h_a]`` and ``[f, h_c]`` (the logit of an action is the sum).
  With ``cost_bias`` (parsimony only) the logit of merging a and c also gets
  ``-s * dM(a, c) / alpha``, where dM is the weighted number of patterns whose Fitch sets of a
  and c are disjoint (the mutations that merge adds) and s a learned scale (initially 1): the
  policy starts as a soft greedy merger, the forward-looking prior of FL-DB made explicit.
* :class:`SlotPolicy` (learned P_B): one logit per slot; :class:`RootFlow`: log F from the pooled roots.
"""

from __future__ import annotations

import torch
from torch import nn

from gfn.distributions import MaskedCategorical
from gfn.estimators import GFlowNet, LogZ, UniformPolicy, mlp


def _occupied(states) -> torch.Tensor:
    return states.roots >= 0


def _mean_pool(h: torch.Tensor, occ: torch.Tensor) -> torch.Tensor:
    w = occ.unsqueeze(-1).to(h.dtype)
    return (h * w).sum(1) / w.sum(1).clamp(min=1.0)


def _unique_rows(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of a uint8 matrix [M, P] and the inverse map (``uniq[inv] == codes``).

    Rows are hashed as int64 words (8 bytes at a time) against fixed random multipliers and
    grouped by hash; the grouping is then checked row by row, and on a hash collision the exact
    (slower) ``torch.unique(dim=0)`` is used instead, so the result is always exact."""
    M, P = codes.shape
    words = torch.nn.functional.pad(codes, (0, (-P) % 8)).view(torch.int64)
    gen = torch.Generator(device="cpu").manual_seed(0x5EED)
    mult = torch.randint(-2 ** 62, 2 ** 62, (words.shape[1],), generator=gen).to(codes.device) | 1
    key = (words * mult).sum(-1)
    ukey, inv = torch.unique(key, return_inverse=True)
    first = torch.empty(ukey.numel(), dtype=torch.long, device=codes.device).scatter_(
        0, inv, torch.arange(M, device=codes.device))
    uniq = codes[first]
    if not bool((uniq[inv] == codes).all()):  # a collision: fall back to the exact sort
        return torch.unique(codes, dim=0, return_inverse=True)
    return uniq, inv


class RootSetEncoder(nn.Module):
    """Per-root embeddings from :meth:`PhyloTree.featurize` (see module docstring)."""

    def __init__(self, env, hidden: int = 128, n_layers: int = 2):
        super().__init__()
        self.likelihood = env.likelihood
        self.n_states = 4 if env.likelihood else env.alignment.n_states
        self.n_slots, self.n_patterns = env.n, env.n_patterns
        self.embed = nn.Linear(env.n_patterns * self.n_states, hidden)
        self.blocks = nn.ModuleList(mlp(2 * hidden, hidden, hidden, 1) for _ in range(n_layers))
        self.register_buffer("bits", 1 << torch.arange(self.n_states), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, n * P] codes or [N, n * P * 4] partials (``featurize``) -> [N, n, H]; empty slots stay 0."""
        N, n = x.shape[0], self.n_slots
        flat = x.reshape(N * n, self.n_patterns, -1) if self.likelihood else x.reshape(N * n, self.n_patterns)
        occ = (flat != 0).flatten(1).any(-1)
        idx = occ.nonzero().squeeze(1)
        sel = flat[idx]
        if self.likelihood:
            emb = torch.relu(self.embed(sel.flatten(1).float()))
        else:  # one-hot Fitch sets (a dense matmul beats an embedding-bag sum of the set bits on CPU)
            # a root recurs in many forests of a batch (every taxon, and a node in every later
            # state of its trajectory): embed each distinct Fitch-set row once (exact dedupe)
            uniq, inv = _unique_rows(sel.to(torch.uint8))
            feats = ((uniq.long().unsqueeze(-1) & self.bits) > 0).flatten(1).float()
            emb = torch.relu(self.embed(feats))[inv]
        h = torch.zeros(N * n, emb.shape[1], dtype=emb.dtype, device=emb.device).index_copy(0, idx, emb)
        h, occ = h.reshape(N, n, -1), occ.reshape(N, n)
        w = occ.unsqueeze(-1).to(h.dtype)
        for block in self.blocks:
            ctx = _mean_pool(h, occ).unsqueeze(1).expand_as(h)
            h = h + block(torch.cat([h, ctx], -1)) * w
        return h


class PairPolicy(nn.Module):
    """P_F over merges of two roots (and branch-length bins); see module docstring."""

    def __init__(self, env, hidden: int = 128, pair_hidden: int = 64, cost_bias: bool = False):
        super().__init__()
        if cost_bias and env.likelihood:
            raise ValueError("cost_bias needs the parsimony reward (Fitch sets)")
        self.env = env
        self.cost_scale = nn.Parameter(torch.ones(())) if cost_bias else None
        self.u = nn.Linear(hidden, pair_hidden)
        self.v = nn.Linear(hidden, pair_hidden, bias=False)
        self.out = nn.Linear(pair_hidden, 1)
        if env.K > 1:
            self.left_bins = mlp(pair_hidden + hidden, env.K, pair_hidden, 1)
            self.right_bins = mlp(pair_hidden + hidden, env.K, pair_hidden, 1)

    def logits(self, h: torch.Tensor, states) -> torch.Tensor:
        """Raw logits [N, n_actions] (exit: 0)."""
        env = self.env
        occ = _occupied(states)
        u = self.u(h)
        ctx = self.v(_mean_pool(h, occ)).unsqueeze(1)
        if env.K == 1:  # score only the pairs of occupied slots (the rest are masked): [N, pairs]
            rows, pair = (occ[:, env.pair_a] & occ[:, env.pair_c]).nonzero(as_tuple=True)
            f = torch.relu(u[rows, env.pair_a[pair]] + u[rows, env.pair_c[pair]] + ctx[rows, 0])
            val = self.out(f).squeeze(-1)
            if self.cost_scale is not None:
                val = val - self.cost_scale * env.merge_costs(states)[rows, pair].to(val.dtype) / env.alpha
            logit = torch.zeros(len(occ), env.n_pairs, dtype=val.dtype, device=val.device).index_put((rows, pair), val)
            return torch.cat([logit, torch.zeros_like(logit[:, :1])], 1)
        f = torch.relu(u[:, env.pair_a] + u[:, env.pair_c] + ctx)  # [N, pairs, d]
        logit = self.out(f).squeeze(-1)
        if env.K > 1:
            lb = self.left_bins(torch.cat([f, h[:, env.pair_a]], -1))
            rb = self.right_bins(torch.cat([f, h[:, env.pair_c]], -1))
            logit = (logit[..., None, None] + lb[..., :, None] + rb[..., None, :]).flatten(1)
        return torch.cat([logit, torch.zeros_like(logit[:, :1])], 1)

    def forward(self, h: torch.Tensor, states) -> MaskedCategorical:
        """Masked categorical over merges and exit."""
        return MaskedCategorical(self.logits(h, states), self.env.forward_mask(states))


class SlotPolicy(nn.Module):
    """Learned P_B: one logit per slot, masked to slots with an internal root."""

    def __init__(self, env, hidden: int = 128):
        super().__init__()
        self.env = env
        self.head = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, states) -> MaskedCategorical:
        """Masked categorical over the slots to split."""
        return MaskedCategorical(self.head(h).squeeze(-1), self.env.backward_mask(states))


class RootFlow(nn.Module):
    """log F(s) (or log F~ for FL objectives) from the mean and sum of the root embeddings."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = mlp(2 * hidden, 1, hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """[N, n, H] -> [N]."""
        occ = (h != 0).any(-1)
        n_roots = occ.sum(1, keepdim=True).to(h.dtype)
        pooled = _mean_pool(h, occ)
        return self.net(torch.cat([pooled, pooled * n_roots / h.shape[1]], -1)).squeeze(-1)


def build_phylo_gflownet(env, hidden: int = 128, n_layers: int = 2, uniform_pb: bool = True,
                         flow: bool = False, cond_dim: int = 0, log_z_init: float = 0.0,
                         pair_hidden: int = 64, cost_bias: bool = False, **_ignored) -> GFlowNet:
    """GFlowNet with :class:`RootSetEncoder` trunk, :class:`PairPolicy` P_F, uniform or
    :class:`SlotPolicy` P_B and a :class:`RootFlow` head when ``flow``; ``cost_bias`` adds the
    merge-cost term to P_F's logits (parsimony).  ``shared_trunk`` is
    ignored (the encoder is always shared); conditioning is not supported."""
    if cond_dim:
        raise ValueError("PhyloTree policies do not support conditioning (cond_dim must be 0)")
    trunk = RootSetEncoder(env, hidden, n_layers)
    pf = PairPolicy(env, hidden, pair_hidden, cost_bias)
    pb = UniformPolicy(env) if uniform_pb else SlotPolicy(env, hidden)
    fl = RootFlow(hidden) if flow else None
    return GFlowNet(env, pf, pb, trunk=trunk, flow=fl, log_z=LogZ(log_z_init))
