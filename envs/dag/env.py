"""DAG-GFlowNet environment (Deleu et al. 2022): build a DAG one edge at a time, stop anywhere.

State (long tensor ``[N, 2 d^2]``): the adjacency matrix (``A[i, j] = 1`` for the edge i -> j)
followed by its transitive closure (``C[i, j] = 1`` when j is reachable from i by a non-empty
path), both flattened row-major.  Forward action ``i * d + j`` adds the edge i -> j; action
``d^2`` is exit, allowed in every state (every DAG is an object).  Backward action ``i * d + j``
removes the edge i -> j.

Acyclicity mask.  Adding i -> j closes a cycle exactly when i is reachable from j, so the mask
is ``not A[i, j] and i != j and not C[j, i]``.  The closure is updated incrementally when an edge
is added (everything that reaches i, or is i, now reaches j and everything j reaches: one outer
product per state, batched).  Removing an edge may break many paths, so ``backward_step``
recomputes the closure from the adjacency by repeated squaring (log2 d batched matmuls).

Reward: ``log R(G) = log p(G) + log p(D | G)`` with a modular prior and a decomposable score
(:mod:`gfn.envs.dag.scores`), minus its value for the empty graph (a log Bayes factor: it keeps log R
above the objectives' log-reward floor of -100 and leaves the posterior unchanged).  For ``d <= cache_limit`` every local score is precomputed into
a table indexed by (node, parent bitmask), so ``log_reward`` is one gather.  Exact enumeration
(:meth:`DAGEnv.enumerate_states`) is available for ``d <= 5`` (29,281 DAGs).
"""

from __future__ import annotations

from typing import Optional

import torch

from gfn.env import DiscreteEnv, EnvError, Reward
from gfn.envs.dag.data import LinearGaussianNetwork, random_linear_gaussian
from gfn.envs.dag.scores import Prior, Score, make_prior, make_score

#: largest number of nodes for which the environment enumerates every DAG (d = 6: 3.8 million)
MAX_ENUMERABLE_NODES = 5


class DAGReward(Reward):
    """``log R(G) = log prior(G) + score(G) - offset`` for graphs given as DAG-environment states.

    The offset is the value for the empty graph, so log R is a log Bayes factor against it (the
    posterior is unchanged).  Log marginal likelihoods are large negative numbers (about -300 for
    100 samples of 5 variables) and would otherwise sit below the objectives' log-reward floor
    (``gfn.objectives.LOG_REWARD_FLOOR = -100``), which would flatten the reward."""

    def __init__(self, score: Score, prior: Prior, cache_limit: int = 12):
        if score.d != prior.d:
            raise ValueError(f"score has {score.d} variables but prior has {prior.d}")
        self.score, self.prior, self.d = score, prior, score.d
        self.table: Optional[torch.Tensor] = None
        if self.d <= cache_limit:
            self.table = self._local_table()
        self.offset = 0.0
        empty = torch.zeros(1, 2 * self.d * self.d, dtype=torch.long)
        self.offset = float(self.log_reward64(empty)[0])  # log R is relative to the empty graph

    def _local_table(self) -> torch.Tensor:
        """[d, 2^d] float64: local score + prior term of node j for every parent bitmask."""
        d = self.d
        codes = torch.arange(2 ** d)
        masks = ((codes.unsqueeze(1) >> torch.arange(d)) & 1).bool()          # [2^d, d]
        tgt = torch.arange(d).repeat_interleave(2 ** d)
        pa = masks.repeat(d, 1)
        ok = ~pa.gather(1, tgt.unsqueeze(1)).squeeze(1)                       # j is not its own parent
        table = torch.full((d * 2 ** d,), float("nan"), dtype=torch.float64)
        table[ok] = self.score.local(tgt[ok], pa[ok]).cpu()
        table = table.reshape(d, 2 ** d)
        f = self.prior.log_prior_per_count()
        return table + f[masks.sum(-1).clamp(max=d - 1)].unsqueeze(0)

    def adjacency(self, states: torch.Tensor) -> torch.Tensor:
        """[N, d, d] adjacency matrices of states."""
        return states[:, : self.d * self.d].reshape(-1, self.d, self.d)

    def log_reward64(self, states: torch.Tensor) -> torch.Tensor:
        """log R in float64 (exact metrics and tests): ``log p(G) + log p(D | G)`` minus the same
        for the empty graph (:attr:`offset`)."""
        adj = self.adjacency(states)
        if self.table is not None:
            weights = (1 << torch.arange(self.d, device=states.device))
            codes = (adj * weights.unsqueeze(1)).sum(1)                        # parent bitmask of each node
            table = self.table.to(states.device)
            return table.gather(1, codes.T).sum(0) - self.offset
        return self.prior.total(adj) + self.score.total(adj) - self.offset

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        """log R(G) (float32, like the other environments' rewards)."""
        return self.log_reward64(states).float()

    def delta(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Change of log R when the edge of each (non-exit) action is added: computed from the
        target node's two local scores only (modularity), float64."""
        adj = self.adjacency(states)
        src, tgt = actions // self.d, actions % self.d
        f = self.prior.log_prior_per_count().to(states.device)
        k = adj.sum(1).gather(1, tgt.unsqueeze(1)).squeeze(1)                 # in-degree of the target
        return self.score.delta(adj, src, tgt) + f[k + 1] - f[k]


def transitive_closure(adjacency: torch.Tensor) -> torch.Tensor:
    """Batched transitive closure [N, d, d] (long) of adjacency matrices [N, d, d]: ``C[i, j] = 1``
    when a non-empty path i -> ... -> j exists.  Repeated squaring of (A or I)."""
    d = adjacency.shape[-1]
    eye = torch.eye(d, dtype=torch.bool, device=adjacency.device)
    reach = adjacency.bool() | eye
    steps = 1
    while steps < d:  # reach covers paths of length <= steps; squaring doubles it
        r = reach.double()
        reach = torch.bmm(r, r) > 0
        steps *= 2
    # the non-empty-path closure: i reaches itself only through a cycle (never, in a DAG)
    strict = torch.bmm(adjacency.double(), reach.double()) > 0
    return strict.long()


class DAGEnv(DiscreteEnv):
    """Directed acyclic graphs on ``d`` nodes, grown one edge at a time; every state is terminal."""

    state_dtype = torch.long
    #: every DAG is an object, so log R is meaningful at every state (modified DB, FL objectives)
    provides_intermediate_rewards = True

    def __init__(self, n_nodes: int = 5, n_edges: float = 5.0, n_samples: int = 100, n_heldout: int = 100,
                 score: str = "bge", prior: str = "uniform", data_seed: int = 0,
                 data: Optional[torch.Tensor] = None, heldout: Optional[torch.Tensor] = None,
                 score_args: Optional[dict] = None, prior_args: Optional[dict] = None,
                 noise_var: float = 0.1, cache_limit: int = 12, device: str | torch.device = "cpu"):
        """Synthetic data from a random linear-Gaussian network (``data_seed``) unless ``data``
        [n, d] is given (then ``n_nodes`` is read from it and there is no true graph)."""
        self.network: Optional[LinearGaussianNetwork] = None
        if data is None:
            if n_samples < 1:
                raise ValueError(f"n_samples must be >= 1, got {n_samples}")
            g = torch.Generator().manual_seed(int(data_seed))
            self.network = random_linear_gaussian(int(n_nodes), float(n_edges), noise_var=noise_var, generator=g)
            data = self.network.sample(int(n_samples), g)
            heldout = self.network.sample(int(n_heldout), g) if n_heldout > 0 else None
        elif not torch.is_tensor(data) or data.dim() != 2:
            raise ValueError("data must be a 2-D tensor [n_samples, n_nodes]")
        d = int(data.shape[1])
        if d < 2:
            raise ValueError(f"a DAG environment needs at least 2 nodes, got {d}")
        self.d, self.data, self.heldout = d, data.double(), None if heldout is None else heldout.double()
        self.score_name, self.prior_name = score, prior
        self.score_args, self.prior_args = dict(score_args or {}), dict(prior_args or {})
        score_obj = make_score(score, self.data, **self.score_args)
        prior_obj = make_prior(prior, d, **self.prior_args)
        super().__init__(n_actions=d * d + 1, n_backward_actions=d * d,
                         reward=DAGReward(score_obj, prior_obj, cache_limit), device=device)
        self.state_shape = (2 * d * d,)
        self._eye = torch.eye(d, dtype=torch.bool, device=self.device)
        self._bits = (torch.ones(d * d, dtype=torch.long) << torch.arange(d * d)).to(self.device)
        self._all: Optional[tuple] = None

    # ------------------------------------------------------------------ helpers
    @property
    def true_graph(self) -> Optional[torch.Tensor]:
        """Adjacency [d, d] of the network that generated the data (None for user data)."""
        return None if self.network is None else self.network.adjacency.to(self.device)

    def adjacency(self, states: torch.Tensor) -> torch.Tensor:
        """[N, d, d] adjacency matrices."""
        return states[:, : self.d * self.d].reshape(-1, self.d, self.d)

    def closure(self, states: torch.Tensor) -> torch.Tensor:
        """[N, d, d] transitive closures carried by the states."""
        return states[:, self.d * self.d:].reshape(-1, self.d, self.d)

    def from_adjacency(self, adjacency: torch.Tensor) -> torch.Tensor:
        """States for adjacency matrices [N, d, d] (raises if one has a cycle)."""
        adjacency = adjacency.long().to(self.device)
        closure = transitive_closure(adjacency)
        if bool(closure.diagonal(dim1=-2, dim2=-1).any()):
            i = int(closure.diagonal(dim1=-2, dim2=-1).any(-1).nonzero()[0, 0])
            raise EnvError(f"DAGEnv.from_adjacency: graph {i} has a cycle")
        return torch.cat([adjacency.flatten(1), closure.flatten(1)], dim=1)

    def codes(self, states: torch.Tensor) -> torch.Tensor:
        """Integer code of each graph: bit ``i * d + j`` set for the edge i -> j (d <= 7)."""
        if self.d * self.d > 62:
            raise ValueError(f"graph codes need d^2 <= 62 bits, d = {self.d}")
        return (states[:, : self.d * self.d] * self._bits).sum(-1)

    # ------------------------------------------------------------------ contract
    def initial_states(self, n: int) -> torch.Tensor:
        """``n`` empty graphs."""
        return torch.zeros(n, 2 * self.d * self.d, dtype=torch.long, device=self.device)

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Add the edge ``i -> j`` (action ``i d + j``) and update the closure incrementally."""
        d = self.d
        src, tgt = actions // d, actions % d
        rows = torch.arange(states.shape[0], device=states.device)
        adj = self.adjacency(states).clone()
        adj[rows, src, tgt] = 1
        reach = self.closure(states).bool() | self._eye                     # reflexive closure
        into_src = reach[rows, :, src]                                        # [N, d]: u reaches i (or u = i)
        from_tgt = reach[rows, tgt, :]                                        # [N, d]: j reaches v (or v = j)
        closure = self.closure(states).bool() | (into_src.unsqueeze(2) & from_tgt.unsqueeze(1))
        return torch.cat([adj.flatten(1), closure.long().flatten(1)], dim=1)

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Remove the edge ``i -> j`` and recompute the closure."""
        adj = states[:, : self.d * self.d].scatter(1, actions.unsqueeze(1), 0)
        adj = adj.reshape(-1, self.d, self.d)
        return torch.cat([adj.flatten(1), transitive_closure(adj).flatten(1)], dim=1)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Edge i -> j allowed if absent, i != j and i not reachable from j; exit always allowed."""
        adj = self.adjacency(states).bool()
        back = self.closure(states).bool().transpose(1, 2)                   # back[i, j] = j reaches i
        ok = ~(adj | back | self._eye)
        return torch.cat([ok.flatten(1), torch.ones_like(ok[:, :1, 0])], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Any present edge can be removed."""
        return states[:, : self.d * self.d].bool()

    # ------------------------------------------------------------------ optional
    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        """Adjacency and closure as floats [N, 2 d^2]."""
        return states.float()

    @property
    def feature_dim(self) -> int:
        return 2 * self.d * self.d

    @property
    def is_enumerable(self) -> bool:
        """Exact metrics for ``d <= 5``."""
        return self.d <= MAX_ENUMERABLE_NODES

    def enumerate_states(self) -> torch.Tensor:
        """Every DAG on d <= 5 nodes, ordered by :meth:`codes` (the order of :meth:`state_index`)."""
        return self._enumeration()[0]

    def state_index(self, states: torch.Tensor) -> torch.Tensor:
        """Position of each graph in :meth:`enumerate_states`."""
        all_states, codes = self._enumeration()
        c = self.codes(states)
        idx = torch.searchsorted(codes, c).clamp(max=codes.numel() - 1)
        if not bool((codes[idx] == c).all()):
            raise EnvError("DAGEnv.state_index: a state is not a DAG of this environment")
        return idx

    def _enumeration(self) -> tuple:
        if self.d > MAX_ENUMERABLE_NODES:
            raise ValueError(f"DAGEnv enumerates DAGs only for d <= {MAX_ENUMERABLE_NODES} nodes, got d = {self.d}")
        if self._all is None:
            from gfn.envs.dag.exact import enumerate_dags
            states = enumerate_dags(self)
            self._all = (states, self.codes(states))
        return self._all
