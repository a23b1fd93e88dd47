"""Decomposable marginal-likelihood scores of a DAG given data, and modular structure priors.

Every score here is *modular*: ``log p(D | G) = sum_j local(j, Pa_G(j))``, so adding the edge
``i -> j`` changes only node ``j``'s term (:meth:`Score.delta`).  Local scores are batched: they
take a batch of target nodes and a batch of parent masks and compute every determinant with one
``torch.linalg.slogdet`` call.  A parent subset is selected inside a fixed ``d x d`` matrix by
replacing the unselected rows and columns with those of the identity, which leaves the
determinant of the selected block unchanged.  All score arithmetic is float64.

* :class:`BGeScore`: the Bayesian Gaussian equivalent score (Geiger & Heckerman 1994, in the
  corrected form of Kuipers, Moffa & Heckerman 2014), with a normal-Wishart prior.
* :class:`LinearGaussianScore`: a linear-Gaussian model ``x_j = w^T x_Pa + e``,
  ``w ~ N(mean, prior_scale^2 I)``, ``e ~ N(0, obs_scale^2)``, with ``w`` integrated out.
* priors: :class:`UniformPrior`, :class:`ErdosRenyiPrior`, :class:`EdgePrior`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch


def masked_logdet(mat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log det of the sub-matrices ``mat[mask, mask]`` for a batch of boolean masks [N, d]
    (0 for an empty mask); ``mat`` is one [d, d] matrix or a batch [N, d, d]."""
    d = mask.shape[-1]
    eye = torch.eye(d, dtype=mat.dtype, device=mat.device)
    both = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    sub = torch.where(both, mat, eye)
    sign, logdet = torch.linalg.slogdet(sub)
    if bool((sign <= 0).any()):
        raise ValueError("masked_logdet: a selected sub-matrix is not positive definite")
    return logdet


def parent_masks(adjacency: torch.Tensor) -> torch.Tensor:
    """Parent masks [N, d, d] (row j = parents of node j) of adjacency matrices [N, d, d]
    with ``adjacency[n, i, j] = 1`` for the edge ``i -> j``."""
    return adjacency.transpose(-1, -2).bool()


class Score:
    """A decomposable score: ``local(targets, parents)`` plus the batched totals built on it."""

    #: number of variables
    d: int

    def local(self, targets: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        """float64 local score of each target node [N] given its parent mask [N, d]."""
        raise NotImplementedError

    def total(self, adjacency: torch.Tensor) -> torch.Tensor:
        """Sum of local scores of adjacency matrices [N, d, d]: log p(D | G), float64 [N]."""
        n, d = adjacency.shape[0], self.d
        pa = parent_masks(adjacency).reshape(n * d, d)
        targets = torch.arange(d, device=adjacency.device).repeat(n)
        return self.local(targets, pa).reshape(n, d).sum(-1)

    def delta(self, adjacency: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Change of :meth:`total` when the edge ``source -> target`` is added to each graph:
        ``local(target, Pa + source) - local(target, Pa)`` (two local scores, not two totals)."""
        pa = parent_masks(adjacency)[torch.arange(adjacency.shape[0], device=adjacency.device), target]
        if bool(pa.gather(1, source.unsqueeze(1)).any()):
            raise ValueError("Score.delta: the edge is already in the graph")
        grown = pa.scatter(1, source.unsqueeze(1), True)
        return self.local(target, grown) - self.local(target, pa)

    def _check_targets(self, targets: torch.Tensor, parents: torch.Tensor) -> None:
        if parents.shape != (targets.shape[0], self.d):
            raise ValueError(f"{type(self).__name__}: parents must have shape ({targets.shape[0]}, {self.d}), "
                             f"got {tuple(parents.shape)}")
        if bool(parents.gather(1, targets.unsqueeze(1)).any()):
            raise ValueError(f"{type(self).__name__}: a node cannot be its own parent")


def _as_data(data: torch.Tensor, who: str) -> torch.Tensor:
    if not torch.is_tensor(data) or data.dim() != 2 or data.shape[0] < 1 or data.shape[1] < 1:
        shape = tuple(data.shape) if torch.is_tensor(data) else type(data).__name__
        raise ValueError(f"{who}: data must be a 2-D tensor [n_samples, n_variables], got {shape}")
    data = data.double()
    if not torch.isfinite(data).all():
        raise ValueError(f"{who}: data contains NaN or inf")
    return data


class BGeScore(Score):
    """BGe marginal likelihood with normal-Wishart hyper-parameters ``alpha_mu`` (> 0) and
    ``alpha_w`` (> d - 1; default d + 2) and prior mean ``mean_obs`` (default 0).  Score
    equivalent: Markov-equivalent DAGs get the same total."""

    def __init__(self, data: torch.Tensor, alpha_mu: float = 1.0, alpha_w: Optional[float] = None,
                 mean_obs: Optional[torch.Tensor] = None):
        data = _as_data(data, "BGeScore")
        n, d = data.shape
        alpha_w = float(d + 2) if alpha_w is None else float(alpha_w)
        if alpha_mu <= 0 or alpha_w <= d - 1:
            raise ValueError(f"BGeScore needs alpha_mu > 0 and alpha_w > d - 1 = {d - 1}, got {alpha_mu}, {alpha_w}")
        mean_obs = torch.zeros(d, dtype=torch.float64) if mean_obs is None else mean_obs.double().reshape(d)
        self.d, self.n, self.alpha_mu, self.alpha_w = d, n, float(alpha_mu), alpha_w
        # t > 0 requires alpha_w > d + 1; the usual choice alpha_w = d + 2 gives t = alpha_mu / (alpha_mu + 1)
        t = alpha_mu * (alpha_w - d - 1) / (alpha_mu + 1)
        if t <= 0:
            raise ValueError(f"BGeScore needs alpha_w > d + 1 = {d + 1} (T = t I with t > 0), got {alpha_w}")
        self.t = t
        mean = data.mean(0)
        centred = data - mean
        diff = (mean_obs.to(data.device) - mean).unsqueeze(1)
        self.R = (t * torch.eye(d, dtype=torch.float64, device=data.device) + centred.T @ centred
                  + (n * alpha_mu / (n + alpha_mu)) * (diff @ diff.T))
        k = torch.arange(d + 1, dtype=torch.float64)
        # the part of the local score that depends only on the number of parents k
        self.log_gamma_term = (0.5 * (math.log(alpha_mu) - math.log(n + alpha_mu))
                               + torch.lgamma(0.5 * (n + alpha_w - d + k + 1))
                               - torch.lgamma(0.5 * (alpha_w - d + k + 1))
                               - 0.5 * n * math.log(math.pi)
                               + 0.5 * (alpha_w - d + 2 * k + 1) * math.log(t)).to(data.device)

    def local(self, targets: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        """BGe local score of each target given its parents (batched, float64)."""
        self._check_targets(targets, parents)
        parents = parents.bool()
        k = parents.sum(-1)
        family = parents.scatter(1, targets.unsqueeze(1), True)
        a = self.n + self.alpha_w - self.d + k.double()
        return (self.log_gamma_term[k] + 0.5 * a * masked_logdet(self.R, parents)
                - 0.5 * (a + 1) * masked_logdet(self.R, family))


class LinearGaussianScore(Score):
    """Marginal likelihood of a linear-Gaussian model without intercept: each column given its
    parents is ``N(X_Pa mean, obs_scale^2 I + prior_scale^2 X_Pa X_Pa^T)`` (weights integrated
    out; Woodbury and the determinant lemma keep every matrix d x d)."""

    def __init__(self, data: torch.Tensor, prior_mean: float = 0.0, prior_scale: float = 1.0,
                 obs_scale: float = math.sqrt(0.1)):
        data = _as_data(data, "LinearGaussianScore")
        if prior_scale <= 0 or obs_scale <= 0:
            raise ValueError(f"LinearGaussianScore needs prior_scale > 0 and obs_scale > 0, got {prior_scale}, {obs_scale}")
        self.n, self.d = data.shape
        self.prior_mean, self.prior_scale, self.obs_scale = float(prior_mean), float(prior_scale), float(obs_scale)
        self.gram = data.T @ data  # [d, d]: every quantity below is read from it

    def local(self, targets: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        """Log marginal likelihood of each target column given its parents (batched, float64)."""
        self._check_targets(targets, parents)
        m = parents.double()
        s2, o2, mu, n, d = self.prior_scale ** 2, self.obs_scale ** 2, self.prior_mean, self.n, self.d
        G = self.gram
        gm = G * (m.unsqueeze(-1) * m.unsqueeze(-2))                 # X_Pa^T X_Pa, zero-padded
        g = G[:, targets].T * m                                       # X_Pa^T y
        yy = G[targets, targets]
        gm1 = (gm @ m.unsqueeze(-1)).squeeze(-1)                      # X_Pa^T X_Pa 1
        b = g - mu * gm1                                              # X_Pa^T r, r = y - X_Pa mean
        rr = yy - 2 * mu * (g * m).sum(-1) + mu * mu * (gm1 * m).sum(-1)
        ratio = o2 / s2
        A = gm + ratio * torch.eye(d, dtype=torch.float64, device=G.device)
        logdet_sigma = n * math.log(o2) + torch.linalg.slogdet(A)[1] - d * math.log(ratio)
        quad = (rr - (b * torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1)).sum(-1)) / o2
        return -0.5 * (n * math.log(2 * math.pi) + logdet_sigma + quad)


SCORES = {"bge": BGeScore, "lingauss": LinearGaussianScore}


def make_score(name: str, data: torch.Tensor, **kwargs) -> Score:
    """Score by name: ``bge`` or ``lingauss``."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")
    return SCORES[name](data, **kwargs)


# ---------------------------------------------------------------------------------- priors
class Prior:
    """A modular structure prior: ``log p(G) = sum_j f(|Pa(j)|)`` (unnormalised)."""

    def __init__(self, d: int):
        self.d = d

    def log_prior_per_count(self) -> torch.Tensor:
        """``f(k)`` for k = 0..d-1 parents, float64 [d]."""
        raise NotImplementedError

    def total(self, adjacency: torch.Tensor) -> torch.Tensor:
        """log p(G) of adjacency matrices [N, d, d], float64 [N]."""
        counts = adjacency.long().sum(-2)  # in-degrees [N, d]
        return self.log_prior_per_count().to(adjacency.device)[counts].sum(-1)


class UniformPrior(Prior):
    """Every DAG equally likely."""

    def log_prior_per_count(self) -> torch.Tensor:
        return torch.zeros(self.d, dtype=torch.float64)


class ErdosRenyiPrior(Prior):
    """Each of the d(d-1)/2 possible edges (of an ordering) present with probability
    ``p = expected_edges / (d (d - 1) / 2)``: ``f(k) = k log p + (d - 1 - k) log(1 - p)``."""

    def __init__(self, d: int, expected_edges: Optional[float] = None):
        super().__init__(d)
        expected_edges = float(d) if expected_edges is None else float(expected_edges)
        self.p = expected_edges / (d * (d - 1) / 2) if d > 1 else 0.5
        if not 0 < self.p < 1:
            raise ValueError(f"ErdosRenyiPrior: expected_edges={expected_edges} gives edge probability {self.p}, "
                             "which must lie in (0, 1)")

    def log_prior_per_count(self) -> torch.Tensor:
        k = torch.arange(self.d, dtype=torch.float64)
        return k * math.log(self.p) + (self.d - 1 - k) * math.log1p(-self.p)


class EdgePrior(Prior):
    """``p(G) proportional to beta^(number of edges)`` (beta < 1 favours sparse graphs)."""

    def __init__(self, d: int, beta: float = 1.0):
        super().__init__(d)
        if beta <= 0:
            raise ValueError(f"EdgePrior needs beta > 0, got {beta}")
        self.beta = float(beta)

    def log_prior_per_count(self) -> torch.Tensor:
        return torch.arange(self.d, dtype=torch.float64) * math.log(self.beta)


PRIORS = {"uniform": UniformPrior, "erdos_renyi": ErdosRenyiPrior, "edge": EdgePrior}


def make_prior(name: str, d: int, **kwargs) -> Prior:
    """Prior by name: ``uniform``, ``erdos_renyi`` (expected_edges) or ``edge`` (beta)."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}")
    return PRIORS[name](d, **kwargs)
