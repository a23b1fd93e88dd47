"""Synthetic data for structure learning: a random linear-Gaussian Bayesian network on an
Erdos-Renyi DAG (the setting of Deleu et al. 2022), sampled ancestrally."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class LinearGaussianNetwork:
    """A linear-Gaussian Bayesian network: ``x_j = sum_i W[i, j] x_i + N(0, noise_var)``."""

    #: adjacency [d, d], ``adjacency[i, j] = 1`` for the edge i -> j
    adjacency: torch.Tensor
    #: edge weights [d, d] (zero off the graph)
    weights: torch.Tensor
    #: variance of the additive Gaussian noise of every node
    noise_var: float
    #: a topological order of the nodes
    order: torch.Tensor

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` ancestral samples [n, d] (float64)."""
        d = self.adjacency.shape[0]
        noise = torch.randn(n, d, dtype=torch.float64, generator=generator) * math.sqrt(self.noise_var)
        x = torch.zeros(n, d, dtype=torch.float64)
        w = self.weights.double()
        for j in self.order.tolist():  # d steps: each node needs its parents' values first
            x[:, j] = x @ w[:, j] + noise[:, j]
        return x


def erdos_renyi_dag(d: int, n_edges: float, generator: Optional[torch.Generator] = None) -> tuple:
    """A random DAG: a random node order, each of the d(d-1)/2 forward pairs an edge with
    probability ``p = n_edges / (d (d - 1) / 2)`` (so ``n_edges`` edges on average).
    Returns (adjacency [d, d] long, order [d])."""
    if d < 2:
        raise ValueError(f"erdos_renyi_dag needs d >= 2 nodes, got {d}")
    pairs = d * (d - 1) / 2
    if not 0 <= n_edges <= pairs:
        raise ValueError(f"n_edges must lie in [0, {pairs:g}] for d={d}, got {n_edges}")
    p = n_edges / pairs
    upper = torch.triu(torch.rand(d, d, generator=generator) < p, diagonal=1)
    order = torch.randperm(d, generator=generator)
    adj = torch.zeros(d, d, dtype=torch.long)
    adj[order.unsqueeze(1), order.unsqueeze(0)] = upper.long()  # edge order[a] -> order[b] for a < b
    return adj, order


def random_linear_gaussian(d: int, n_edges: float, weight_scale: float = 1.0, noise_var: float = 0.1,
                           generator: Optional[torch.Generator] = None) -> LinearGaussianNetwork:
    """An Erdos-Renyi DAG with weights ``N(0, weight_scale^2)`` and noise variance ``noise_var``."""
    if weight_scale <= 0 or noise_var <= 0:
        raise ValueError(f"need weight_scale > 0 and noise_var > 0, got {weight_scale}, {noise_var}")
    adj, order = erdos_renyi_dag(d, n_edges, generator)
    w = torch.randn(d, d, dtype=torch.float64, generator=generator) * weight_scale * adj.double()
    return LinearGaussianNetwork(adj, w, float(noise_var), order)
