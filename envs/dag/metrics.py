"""Evaluation of a DAG sampler (kept out of the environment class).

* exact (``d <= 5``): the model's terminal distribution over all DAGs
  (:func:`gfn.metrics.exact_terminal_distribution`) against the exact posterior: ``jsd_exact``,
  ``tv_exact``; every expectation below is then an exact sum instead of a sample mean;
* ``expected_shd``: E_G[SHD(G, G_true)], a reversed edge counting once;
* ``expected_edges``: E_G[number of edges];
* ``roc_auc``: ROC-AUC of the model's edge marginals P(i -> j) against the true graph's edges,
  and ``roc_auc_posterior`` of the exact posterior's marginals (the best a perfect sampler gets);
  ``edge_marginal_mae``: mean |P_model(i -> j) - P_posterior(i -> j)|;
* ``heldout_log_lik``: E_G[log p(D_heldout | G, D)], the posterior predictive of held-out data
  under the environment's score (a marginal likelihood, so it is ``score(D + D_heldout) - score(D)``),
  per held-out sample.
"""

from __future__ import annotations

from typing import Optional

import torch

from gfn.envs.dag.env import DAGEnv
from gfn.envs.dag.exact import edge_marginals
from gfn.envs.dag.scores import make_score
from gfn.metrics import exact_terminal_distribution, jsd, tv


def shd(adjacency: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Structural Hamming distance [N] of adjacency matrices [N, d, d] to ``truth`` [d, d]:
    missing, extra and reversed edges each count once."""
    diff = (adjacency.long() - truth.long().unsqueeze(0)).abs()
    diff = (diff + diff.transpose(1, 2)).clamp(max=1)  # a pair that differs in any direction
    return diff.sum((1, 2)) // 2


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney, ties count 1/2);
    NaN when one class is empty."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    pos, neg = scores[labels], scores[~labels]
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    greater = (pos.unsqueeze(1) > neg.unsqueeze(0)).double()
    ties = (pos.unsqueeze(1) == neg.unsqueeze(0)).double()
    return float((greater + 0.5 * ties).mean())


def off_diagonal(mat: torch.Tensor) -> torch.Tensor:
    """Off-diagonal entries of a [d, d] matrix (the possible edges)."""
    d = mat.shape[-1]
    return mat[~torch.eye(d, dtype=torch.bool, device=mat.device)]


def heldout_scorer(env: DAGEnv):
    """A score on training + held-out data (same kind and arguments as the environment's)."""
    if env.heldout is None:
        raise ValueError("this DAG environment has no held-out data")
    return make_score(env.score_name, torch.cat([env.data, env.heldout]), **env.score_args)


def heldout_log_lik(env: DAGEnv, adjacency: torch.Tensor, weights: Optional[torch.Tensor] = None,
                    scorer=None) -> float:
    """E_G[log p(D_heldout | G, D)] per held-out sample; ``weights`` are probabilities of the graphs
    (None: equally weighted samples).  ``scorer`` caches :func:`heldout_scorer`."""
    scorer = scorer or heldout_scorer(env)
    out, chunk = [], 4096
    for s in range(0, adjacency.shape[0], chunk):
        a = adjacency[s:s + chunk]
        out.append(scorer.total(a) - env.reward.score.total(a))
    ll = torch.cat(out)
    w = torch.full_like(ll, 1.0 / ll.numel()) if weights is None else weights.double()
    return float((w * ll).sum()) / env.heldout.shape[0]


def structure_metrics(env: DAGEnv, adjacency: torch.Tensor, weights: Optional[torch.Tensor] = None,
                      marginals: Optional[torch.Tensor] = None) -> dict:
    """expected_shd, expected_edges and roc_auc of graphs (weighted by probabilities, or samples)."""
    w = torch.full((adjacency.shape[0],), 1.0 / adjacency.shape[0], dtype=torch.float64) if weights is None \
        else weights.double()
    w = w.to(adjacency.device)
    if marginals is None:
        marginals = torch.einsum("n,nij->ij", w, adjacency.double())
    out = {"expected_edges": float((w * adjacency.sum((1, 2)).double()).sum())}
    truth = env.true_graph
    if truth is not None:
        out["expected_shd"] = float((w * shd(adjacency, truth).double()).sum())
        out["roc_auc"] = roc_auc(off_diagonal(marginals), off_diagonal(truth))
    return out


class DAGMetrics:
    """Callable ``(model) -> dict`` with every metric above; caches the exact posterior and the
    held-out scorer.  For ``d > 5`` the expectations are means over ``n_samples`` sampled graphs."""

    def __init__(self, env: DAGEnv, n_samples: int = 1000):
        self.env, self.n_samples = env, n_samples
        self.scorer = heldout_scorer(env) if env.heldout is not None else None
        self.posterior = self.post_marginals = None
        if env.is_enumerable:
            from gfn.envs.dag.exact import exact_posterior
            self.posterior = exact_posterior(env)
            self.post_marginals = edge_marginals(env, self.posterior)

    def __call__(self, model) -> dict:
        env = self.env
        if env.is_enumerable:
            p = exact_terminal_distribution(env, model)
            adj = env.adjacency(env.enumerate_states())
            m = {"jsd_exact": jsd(p, self.posterior), "tv_exact": tv(p, self.posterior)}
            marg = edge_marginals(env, p)
            m.update(structure_metrics(env, adj, p, marg))
            m["edge_marginal_mae"] = float(off_diagonal((marg - self.post_marginals).abs()).mean())
            if env.true_graph is not None:
                m["roc_auc_posterior"] = roc_auc(off_diagonal(self.post_marginals), off_diagonal(env.true_graph))
            if self.scorer is not None:
                m["heldout_log_lik"] = heldout_log_lik(env, adj, p, self.scorer)
            return m
        from gfn.sampler import Sampler
        adj = env.adjacency(Sampler(env, model).sample(self.n_samples).terminal_states)
        m = structure_metrics(env, adj)
        if self.scorer is not None:
            m["heldout_log_lik"] = heldout_log_lik(env, adj, None, self.scorer)
        return m
