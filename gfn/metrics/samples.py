"""Sample-based distances between two point clouds in R^d: squared 2-Wasserstein (exact, POT)
and the energy distance; used to compare a sampler's output with exact target samples."""

from __future__ import annotations

import torch
from torch import Tensor

from gfn.metrics.continuous import wasserstein

__all__ = ["w2_squared", "energy_distance"]


def _as_2d(x, name: str) -> Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(1)
    if t.dim() != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [n, d] array, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains non-finite values")
    return t


def w2_squared(x, y) -> float:
    """Squared 2-Wasserstein distance between the uniform empirical measures on x [n, d] and
    y [m, d], on all points: exact optimal transport with squared Euclidean cost (POT's
    ``ot.emd2`` through :func:`gfn.metrics.continuous.wasserstein`; ImportError if POT is missing).
    This is the ``w2`` of Sendera et al. 2024 (2,000 model samples against 2,000 exact ones)."""
    a, b = _as_2d(x, "x"), _as_2d(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    return wasserstein(a, b, p=2, max_points=max(a.shape[0], b.shape[0])) ** 2


def energy_distance(x, y) -> float:
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic) between samples x and y."""
    a, b = _as_2d(x, "x"), _as_2d(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())
