"""PhyloGFN with continuous branch lengths: each merge also draws the lengths of its two new edges.

:class:`PhyloTreeContinuous` is a :class:`~gfn.env.ContinuousEnv` over the same canonical
forests as :class:`~gfn.envs.phylo.env.PhyloTree` (slots, node keys, cached Felsenstein
partials), stored as :class:`LengthForest` (a :class:`~gfn.envs.phylo.forest.Forest` plus the
float64 length of every edge).  A forward action is the float vector ``(pair, t1, t2)``: the
pair index of slots ``a < c`` (row-major, an exact small integer), the length of the edge to
the left subtree (the one holding ``a``) and of the edge to the right one.  The final merge
joins the last two trees by ONE edge, so ``t2 = 0`` there (an unrooted tree has ``2n - 3``
lengths).  Exit (a row of ``-inf``) is the only action at a complete tree and is forbidden
before.  A backward action splits the root of slot ``a``; it is written as the forward vector
of the merge it undoes (``backward_action`` is the identity), since the lengths are read from
the state: the backward move is discrete (no density over lengths).

Reference measure: counting measure over pairs times Lebesgue measure on the ``2n - 3``
lengths.  P_F's log-density of a merge is ``log P(pair) + log p(t1) + log p(t2)`` (no t2 term
at the final merge); P_B is a probability over splittable slots.  The reward is a density in
the same lengths::

    log R(T, t) = log P(D | T, t) + log P(T) + sum_e [log rate - rate t_e]

(JC69 likelihood, ``P(T) = 1 / (2n - 3)!!`` over rooted topologies, Exp(rate) lengths), so, as
for the binned version, ``Z = sum_T int R dt`` is the marginal likelihood under a uniform prior
over unrooted topologies, and TB's balance ``Z P_F(tau) = R(x) P_B(tau | x)`` holds between
densities.

Policy (:func:`build_continuous_phylo_gflownet`): the root-set encoder and pair head of
:mod:`gfn.envs.phylo.policy`, plus a length head conditioned on the chosen pair: an MLP of
``[f_ac, h_a, h_c]`` (``f_ac`` the pair head's hidden vector) gives a K-component log-normal
mixture for t1 and the same MLP of ``[f_ac, h_c, h_a]`` the mixture for t2 (a
:class:`~gfn.continuous.GaussianMixture` over ``log t`` pushed through ``exp`` with
:class:`~gfn.continuous.TransformedDist`; the exit is handled by
:class:`~gfn.continuous.WithExit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import nn

from gfn.continuous import GaussianMixture, TransformedDist, WithExit, bounded_positive, split_last
from gfn.distributions import MaskedCategorical
from gfn.env import ContinuousEnv, EnvError, Reward
from gfn.envs.phylo.env import PhyloTree, jc69
from gfn.envs.phylo.forest import Forest
from gfn.envs.phylo.policy import PairPolicy, RootFlow, RootSetEncoder
from gfn.envs.phylo.rewards import log_double_factorial_odd
from gfn.estimators import GFlowNet, LogZ, mlp

#: log-space centre and half-width of the mean of each log-normal component (t in ~[1e-5, 10])
LOG_T_CENTRE, LOG_T_HALF_WIDTH = math.log(0.05), 6.5
#: bounds of the log-normal components' standard deviations (in log t)
MIN_STD, MAX_STD = 0.03, 3.0


@dataclass
class LengthForest(Forest):
    """A :class:`Forest` with ``lengths[b, c - 1] = (t_left, t_right)`` (float64) for the edges
    under node ``c`` (0 where the node or the edge is absent; ``bins`` stay -1)."""

    lengths: torch.Tensor = None  # [B, n-1, 2] float64

    def _map(self, fn) -> "LengthForest":
        return LengthForest(*(fn(getattr(self, f.name)) for f in fields(self)))

    def rows_equal(self, other: "Forest") -> torch.Tensor:
        """Structure and edge lengths equal (lengths up to 1e-6 relative, float32 actions)."""
        same = super().rows_equal(other)
        return same & torch.isclose(self.lengths, other.lengths, rtol=1e-6, atol=1e-12).flatten(1).all(-1)

    def newick(self, i: int, names=None, lengths=None) -> str:
        """Newick string of forest ``i`` with its branch lengths."""
        n = self.n_taxa
        ch, ln = self.children[i].tolist(), self.lengths[i].tolist()
        roots = [r for r in self.roots[i].tolist() if r >= 0]

        def rec(node: int) -> str:
            if node < n:
                return str(names[node]) if names is not None else str(node)
            (left, right), (t1, t2) = ch[node - n], ln[node - n]
            last = len(roots) == 1 and node == roots[0]
            return f"({rec(left)}:{t1:.6g},{rec(right)}{'' if last else f':{t2:.6g}'})"

        return " ".join(rec(r) + ";" for r in roots)

    def describe(self, i: int) -> str:
        """Short text of forest ``i`` for error messages."""
        return self.newick(i)


class ContinuousLikelihoodReward(Reward):
    """``log R = log P(D | T, t) + log P(T) + sum_e log Exp(t_e; rate)`` on complete trees
    (float64 in :meth:`log_joint`), ``-inf`` on unfinished forests."""

    def __init__(self, env: "PhyloTreeContinuous", branch_rate: float = 10.0):
        if not branch_rate > 0:
            raise ValueError(f"branch_rate must be > 0, got {branch_rate}")
        self.env, self.branch_rate = env, float(branch_rate)
        self.log_topology_prior = -log_double_factorial_odd(2 * env.n - 3)

    def log_prior(self, states: LengthForest) -> torch.Tensor:
        """log P(T) + sum over the ``2n - 3`` edges of the Exp log-density [B] (complete trees)."""
        edges = self.env.edge_mask(states)
        lp = math.log(self.branch_rate) - self.branch_rate * states.lengths
        return torch.where(edges, lp, torch.zeros_like(lp)).flatten(1).sum(-1) + self.log_topology_prior

    def log_joint(self, states: LengthForest) -> torch.Tensor:
        """log P(D, T, t) [B] float64."""
        return self.env.log_likelihood(states) + self.log_prior(states)

    def log_reward(self, states: LengthForest) -> torch.Tensor:
        """log P(D, T, t) (float32) of complete trees, ``-inf`` elsewhere."""
        done = states.n_roots() == 1
        out = torch.full((len(states),), float("-inf"), dtype=torch.float64, device=states.device)
        idx = done.nonzero().squeeze(1)
        return out.index_copy(0, idx, self.log_joint(states.index(idx))).float()


class PhyloTreeContinuous(ContinuousEnv):
    """Forest-merge MDP with continuous branch lengths (module docstring).

    Same data arguments as :class:`PhyloTree` (the likelihood reward; gaps are missing data);
    ``n_components``: log-normal components per edge length in the default policy.
    """

    action_dim = 3

    def __init__(self, dataset: str = "DS1", taxa: int = 0, branch_rate: float = 10.0, n_components: int = 4,
                 data_dir: str = "", alignment=None, reward: Optional[Reward] = None,
                 device: str | torch.device = "cpu"):
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        # the binned env (one bin) supplies the data, the canonical storage and the pruning
        self.base = PhyloTree(dataset, taxa, reward_kind="likelihood", n_bins=1, branch_rate=branch_rate,
                              data_dir=data_dir, alignment=alignment, device=device)
        b = self.base
        super().__init__(device=b.device)
        self.n, self.n_pairs, self.alignment, self.dataset = b.n, b.n_pairs, b.alignment, dataset
        self.pair_a, self.pair_c, self.pair_of = b.pair_a, b.pair_c, b.pair_of
        self.n_patterns, self.likelihood, self.K = b.n_patterns, True, 1
        self.n_components = int(n_components)
        self.reward = reward if reward is not None else ContinuousLikelihoodReward(self, branch_rate)
        self.branch_rate = float(branch_rate)

    # ------------------------------------------------------------------ contract
    def initial_states(self, k: int) -> LengthForest:
        """``k`` forests of single taxa (no lengths)."""
        f = self.base.initial_states(k)
        z = torch.zeros(k, self.n - 1, 2, dtype=torch.float64, device=self.device)
        return LengthForest(*(getattr(f, x.name) for x in fields(Forest)), lengths=z)

    def decode(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Action vectors -> slots ``a < c`` and lengths ``t1, t2`` (float64)."""
        pair = actions[:, 0].round().long().clamp(0, self.n_pairs - 1)
        return self.pair_a[pair], self.pair_c[pair], actions[:, 1].double(), actions[:, 2].double()

    def step(self, states: LengthForest, actions: torch.Tensor) -> LengthForest:
        """Merge slots ``a < c`` through edges of lengths ``t1, t2`` (``t2 := 0`` at the final merge)."""
        b = self.base
        a, c, t1, t2 = self.decode(actions)
        rows = torch.arange(len(states), device=self.device)
        t2 = torch.where(states.n_roots() == 2, torch.zeros_like(t2), t2)
        left, right = states.roots[rows, a], states.roots[rows, c]
        ld, rd = b._node_data(states, rows, left), b._node_data(states, rows, right)
        data, score = b.merge_data(ld, rd, jc69(t1).float(), jc69(t2).float())
        out = states.merged(rows, a, c, left, right, data, score)
        out.lengths[rows, c - 1] = torch.stack([t1, t2], 1)
        return out

    def backward_step(self, states: LengthForest, actions: torch.Tensor) -> LengthForest:
        """Split the root of slot ``a`` (the left slot of the merge that ``actions`` names)."""
        a = self.pair_a[actions[:, 0].round().long().clamp(0, self.n_pairs - 1)]
        rows = torch.arange(len(states), device=self.device)
        key = states.roots[rows, a] - self.n
        out = self.base.backward_step(states, a)
        out.lengths[rows, key] = 0.0
        return out

    def forward_mask(self, states: LengthForest) -> torch.Tensor:
        """(merge, exit): merge with at least two trees, exit at one."""
        k = states.n_roots()
        return torch.stack([k >= 2, k == 1], -1)

    def backward_mask(self, states: LengthForest) -> torch.Tensor:
        """[N, 1]: some merge has been done."""
        return (states.n_merges() > 0).unsqueeze(-1)

    def is_initial(self, states: LengthForest) -> torch.Tensor:
        """No merge done yet."""
        return states.n_merges() == 0

    def merge_vector(self, states: LengthForest, slots: torch.Tensor) -> torch.Tensor:
        """The forward action (pair, t1, t2) [N, 3] of the merge at the root of ``slots``."""
        rows = torch.arange(len(states), device=self.device)
        key = states.roots[rows, slots] - self.n
        pair = self.pair_of[slots, (key + 1).clamp(min=0)]
        return torch.cat([pair.unsqueeze(1).float(), states.lengths[rows, key.clamp(min=0)].float()], 1)

    def forward_action(self, states: LengthForest, actions: torch.Tensor) -> torch.Tensor:
        """The merge that a split of ``states`` (the child) undoes, lengths read from the state."""
        return self.merge_vector(states, self.pair_a[actions[:, 0].round().long().clamp(0, self.n_pairs - 1)])

    def check_actions(self, states: LengthForest, actions: torch.Tensor, backward: bool = False) -> None:
        """Raise :class:`EnvError` for pairs that are not two trees, or lengths that are not > 0."""
        p = actions[:, 0]
        ok = (p == p.round()) & (p >= 0) & (p < self.n_pairs)
        pair = p.round().long().clamp(0, self.n_pairs - 1)
        a, c = self.pair_a[pair], self.pair_c[pair]
        rows = torch.arange(len(states), device=self.device)
        if backward:
            ok &= states.roots[rows, a] >= self.n
            ok &= torch.where(ok, states.roots[rows, a] - self.n + 1 == c, ok)
            what = "backward action (pair of slot a and the key of its root)"
        else:
            ok &= (states.roots[rows, a] >= 0) & (states.roots[rows, c] >= 0)
            final = states.n_roots() == 2
            ok &= (actions[:, 1] > 0) & torch.where(final, actions[:, 2] == 0, actions[:, 2] > 0)
            what = "action (pair of two trees, lengths > 0, t2 = 0 at the final merge)"
        if not bool(ok.all()):
            i = int((~ok).nonzero()[0, 0])
            raise EnvError(f"PhyloTreeContinuous: invalid {what} {actions[i].tolist()} in forest "
                           f"{states.describe(i)} at batch position {i}")

    # ------------------------------------------------------------------ quantities
    def edge_mask(self, states: LengthForest) -> torch.Tensor:
        """[B, n-1, 2] edges that exist: two under every node but the root of a complete tree, which
        has one (its right edge is the absent half of the last edge)."""
        edges = (states.children >= 0).clone()
        rows = (states.n_roots() == 1).nonzero().squeeze(1)
        edges[rows, (states.roots[rows, 0] - self.n).clamp(min=0), 1] = False
        return edges

    def log_likelihood(self, states: LengthForest) -> torch.Tensor:
        """JC69 log-likelihood of complete trees [B] (float64)."""
        return self.base.log_likelihood(states)

    def featurize(self, states: LengthForest) -> torch.Tensor:
        """Per-slot root partial likelihoods (see :meth:`PhyloTree.featurize`)."""
        return self.base.featurize(states)

    @property
    def feature_dim(self) -> int:
        """n slots x P patterns x 4 partials."""
        return self.base.feature_dim

    # ------------------------------------------------------------------ policies
    def forward_family(self) -> "MergeFamily":
        """Parameter-free P_F family (uniform pair, log-normal lengths): ``random_actions``."""
        return MergeFamily(self)

    def backward_family(self, fixed: bool = False) -> "SplitFamily":
        """Uniform P_B over splittable slots (PhyloGFN's); ``fixed`` is accepted for the contract."""
        return SplitFamily(self)

    def build_gflownet(self, flow: bool = False, **kw):
        """Root-set encoder, pair head and pair-conditioned length head (module docstring)."""
        return build_continuous_phylo_gflownet(self, flow=flow, **kw)


# ---------------------------------------------------------------------------- distributions
class ExpTransform:
    """``u in R -> t = exp(u)`` (per coordinate); ``log |du/dt| = -log t``."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Lengths from log-lengths."""
        return torch.exp(u)

    def inverse(self, t: torch.Tensor):
        """(log t, log |du/dt| summed over coordinates)."""
        lt = torch.log(t)
        return lt, -lt.sum(-1)


def length_dist(raw: torch.Tensor, n_components: int) -> TransformedDist:
    """Log-normal mixture over one length from raw outputs [N, 3K] (logits, means, stds):
    means ``LOG_T_CENTRE + W tanh(raw / W)``, stds in [MIN_STD, MAX_STD] (1 at raw 0)."""
    logits, rm, rs = split_last(raw, [n_components] * 3)
    mean = LOG_T_CENTRE + LOG_T_HALF_WIDTH * torch.tanh(rm / LOG_T_HALF_WIDTH)
    std = bounded_positive(rs, MIN_STD, MAX_STD, 1.0)
    return TransformedDist(GaussianMixture(logits, mean.unsqueeze(-1), std.unsqueeze(-1)), ExpTransform())


class MergeDist:
    """P_F at forests with >= 2 trees: pair categorical, then the two lengths from a head that
    sees the chosen pair (``length_params(rows, pairs) -> (raw1, raw2)``).  Rows with fewer
    than two trees get a placeholder action (WithExit replaces it by exit) and log-prob 0."""

    def __init__(self, env: PhyloTreeContinuous, states: LengthForest, pair_logits: torch.Tensor, length_params):
        self.env, self.length_params = env, length_params
        occ = states.roots >= 0
        self.n_roots = occ.sum(-1)
        self.rows = (self.n_roots >= 2).nonzero().squeeze(1)
        mask = (occ[:, env.pair_a] & occ[:, env.pair_c])[self.rows]
        self.pairs = MaskedCategorical(pair_logits[self.rows], mask)
        self.final = self.n_roots[self.rows] == 2
        self.N = len(states)

    def _lengths(self, pairs: torch.Tensor):
        raw1, raw2 = self.length_params(self.rows, pairs)
        k = self.env.n_components
        return length_dist(raw1, k), length_dist(raw2, k)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Actions [N, 3] (float32)."""
        out = torch.zeros(self.N, 3, device=self.env.device)
        out[:, 1:] = 1.0
        if self.rows.numel() == 0:
            return out
        with torch.no_grad():
            pairs = self.pairs.sample(temperature, epsilon, generator)
            d1, d2 = self._lengths(pairs)
            t1 = d1.sample(temperature, epsilon, generator)[:, 0]
            t2 = d2.sample(temperature, epsilon, generator)[:, 0]
            # lengths that underflow/overflow in float32 would have no finite density
            t1, t2 = t1.clamp(1e-30, 1e30), torch.where(self.final, torch.zeros_like(t2), t2.clamp(1e-30, 1e30))
            out[self.rows] = torch.stack([pairs.float(), t1.float(), t2.float()], 1)
        return out

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log P(pair) + log p(t1) + log p(t2) (no t2 term at the final merge); 0 at other rows."""
        out = torch.zeros(self.N, device=actions.device)
        if self.rows.numel() == 0:
            return out
        act = actions[self.rows]
        pairs = act[:, 0].round().long().clamp(0, self.env.n_pairs - 1)
        d1, d2 = self._lengths(pairs)
        t1 = act[:, 1:2].clamp(min=1e-30)
        t2 = torch.where(self.final.unsqueeze(1), torch.ones_like(act[:, 2:3]), act[:, 2:3].clamp(min=1e-30))
        lp = self.pairs.log_prob(pairs) + d1.log_prob(t1) + torch.where(self.final, 0.0, d2.log_prob(t2))
        return out.index_copy(0, self.rows, lp.to(out.dtype))


class SplitDist:
    """P_B: a categorical over splittable slots (uniform when ``logits`` is None); samples are the
    forward vectors of the merges they undo (:meth:`PhyloTreeContinuous.merge_vector`)."""

    def __init__(self, env: PhyloTreeContinuous, states: LengthForest, logits: Optional[torch.Tensor] = None):
        self.env, self.states = env, states
        mask = states.roots >= env.n
        self.cat = MaskedCategorical(torch.zeros(mask.shape, device=mask.device) if logits is None else logits, mask)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Backward actions [N, 3]."""
        return self.env.merge_vector(self.states, self.cat.sample(temperature, epsilon, generator))

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log P(split slot a)."""
        slot = self.env.pair_a[actions[:, 0].round().long().clamp(0, self.env.n_pairs - 1)]
        return self.cat.log_prob(slot)


class MergeFamily:
    """Parameter-free P_F (uniform pairs, each length log-normal(LOG_T_CENTRE, 1)) with exit; used by
    ``random_actions`` and the contract checks."""

    n_params = 0

    def __init__(self, env: PhyloTreeContinuous):
        self.env = env

    def __call__(self, params, states: LengthForest) -> WithExit:
        """The fixed distribution at ``states`` (``params`` is ignored)."""
        env = self.env
        zeros = torch.zeros(len(states), env.n_pairs, device=env.device)

        def length_params(rows, pairs):
            z = torch.zeros(rows.numel(), 3 * env.n_components, device=env.device)
            return z, z

        return WithExit(MergeDist(env, states, zeros, length_params), None, env.forward_mask(states), 3)


class SplitFamily:
    """Uniform P_B over splittable slots (no parameters)."""

    n_params = 0

    def __init__(self, env: PhyloTreeContinuous):
        self.env = env

    def __call__(self, params, states: LengthForest) -> SplitDist:
        """Uniform split distribution at ``states``."""
        return SplitDist(self.env, states)


# ---------------------------------------------------------------------------- policies
class MergeLengthPolicy(nn.Module):
    """P_F: :class:`~gfn.envs.phylo.policy.PairPolicy`'s pair logits plus a length head on
    ``[f_ac, h_a, h_c]`` (see module docstring)."""

    def __init__(self, env: PhyloTreeContinuous, hidden: int = 128, pair_hidden: int = 64):
        super().__init__()
        self.env = env
        self.pairs = PairPolicy(env.base, hidden, pair_hidden)
        self.lengths = mlp(pair_hidden + 2 * hidden, 3 * env.n_components, pair_hidden, 2)

    def forward(self, h: torch.Tensor, states: LengthForest) -> WithExit:
        """Distribution over (pair, t1, t2) and exit."""
        env, pp = self.env, self.pairs
        occ = states.roots >= 0
        logits = pp.logits(h, states)[:, :-1]
        w = occ.unsqueeze(-1).to(h.dtype)
        ctx = pp.v((h * w).sum(1) / w.sum(1).clamp(min=1.0))

        def length_params(rows, pairs):
            ha, hc = h[rows, env.pair_a[pairs]], h[rows, env.pair_c[pairs]]
            f = torch.relu(pp.u(ha) + pp.u(hc) + ctx[rows])
            return self.lengths(torch.cat([f, ha, hc], -1)), self.lengths(torch.cat([f, hc, ha], -1))

        return WithExit(MergeDist(env, states, logits, length_params), None, env.forward_mask(states), 3)


class SplitPolicy(nn.Module):
    """P_B over splittable slots: uniform (``learned=False``, PhyloGFN) or one logit per slot."""

    def __init__(self, env: PhyloTreeContinuous, hidden: int = 128, learned: bool = False):
        super().__init__()
        self.env = env
        self.head = nn.Linear(hidden, 1) if learned else None

    def forward(self, h: torch.Tensor, states: LengthForest) -> SplitDist:
        """Categorical over the slots to split."""
        return SplitDist(self.env, states, None if self.head is None else self.head(h).squeeze(-1))


def build_continuous_phylo_gflownet(env: PhyloTreeContinuous, hidden: int = 128, n_layers: int = 2,
                                    uniform_pb: bool = True, flow: bool = False, cond_dim: int = 0,
                                    log_z_init: float = 0.0, pair_hidden: int = 64, **_ignored):
    """GFlowNet: :class:`~gfn.envs.phylo.policy.RootSetEncoder` trunk, :class:`MergeLengthPolicy`
    P_F, uniform or learned :class:`SplitPolicy` P_B, optional
    :class:`~gfn.envs.phylo.policy.RootFlow`; no conditioning."""
    if cond_dim:
        raise ValueError("PhyloTreeContinuous policies do not support conditioning (cond_dim must be 0)")
    trunk = RootSetEncoder(env.base, hidden, n_layers)
    pf = MergeLengthPolicy(env, hidden, pair_hidden)
    pb = SplitPolicy(env, hidden, learned=not uniform_pb)
    fl = RootFlow(hidden) if flow else None
    return GFlowNet(env, pf, pb, trunk=trunk, flow=fl, log_z=LogZ(log_z_init))
