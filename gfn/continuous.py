"""Continuous action distributions and policies.

Every distribution here has the two methods the sampler uses, ``sample(temperature,
epsilon, generator)`` and ``log_prob(actions)``, like :class:`gfn.distributions.MaskedCategorical`.
Building blocks:

* :class:`BetaMixture`: mixture of K products of D Betas on the unit cube (bounded actions);
* :class:`GaussianMixture`: mixture of K diagonal Gaussians in R^D (unbounded actions);
* :class:`TransformedDist`: a base distribution pushed through a bijection (e.g. polar or
  arc coordinates); ``log_prob`` adds the change-of-variable term ``log |det du/da|``;
* :class:`Deterministic`: a point mass (e.g. the only backward move to s_0);
* :class:`RowSwitch`: different distributions on different rows of one batch;
* :class:`WithExit`: the exit action as part of the same distribution: P(exit) and
  ``(1 - P(exit)) * density`` of the continuing actions; exit rows are all ``-inf``
  (the :class:`gfn.env.ContinuousEnv` sentinel).

Log-densities are with respect to the reference measure that the environment documents for
each kind of move; forward and backward policies of one environment must use matching
measures so that trajectory ratios (TB, DB) are well defined.

Exploration (``temperature``, ``epsilon``) only changes how actions are drawn; ``log_prob``
always reports the unmodified policy.  All sampling takes an optional ``torch.Generator``
(Beta variates use a batched Marsaglia-Tsang sampler so that the generator is honoured).

Policies: an :class:`ActionFamily` turns raw head outputs at a batch of states into a
distribution; :class:`ContinuousPolicy` wraps a head (learned) or no head (fixed) around a
family; :func:`gfn.estimators.build_gflownet` (``gfn.build_gflownet``) builds the default MLP
GFlowNet of a continuous env from them.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from gfn.distributions import gumbel_like

NEG_INF = float("-inf")
#: unit-interval variates are kept in [U_EPS, 1 - U_EPS] so log-densities stay finite
U_EPS = 1e-6


# ---------------------------------------------------------------------------- helpers
def bounded_positive(raw: torch.Tensor, lo: float, hi: float, at_zero: float = 1.0) -> torch.Tensor:
    """Smoothly map reals to ``[lo, hi]`` in log space, with ``raw = 0`` mapping to ``at_zero``."""
    if not (0 < lo < at_zero < hi):
        raise ValueError(f"bounded_positive needs 0 < lo < at_zero < hi, got lo={lo}, at_zero={at_zero}, hi={hi}")
    llo, lhi = math.log(lo), math.log(hi)
    frac = (math.log(at_zero) - llo) / (lhi - llo)
    shift = math.log(frac / (1 - frac))
    return torch.exp(llo + (lhi - llo) * torch.sigmoid(raw + shift))


def split_last(x: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Split the last dimension into consecutive chunks, checking the total."""
    if x.shape[-1] != sum(sizes):
        raise ValueError(f"expected {sum(sizes)} parameters in the last dimension, got {x.shape[-1]}")
    return list(torch.split(x, list(sizes), dim=-1))


def _explore_rows(n: int, epsilon: float, device, generator) -> Optional[torch.Tensor]:
    if epsilon <= 0.0:
        return None
    return torch.rand(n, device=device, generator=generator) < epsilon


def _choose_component(logits: torch.Tensor, temperature: float, explore: Optional[torch.Tensor],
                      generator) -> torch.Tensor:
    scores = logits if temperature == 1.0 else logits / temperature
    if explore is not None:
        scores = torch.where(explore.unsqueeze(1), torch.zeros_like(scores), scores)
    return torch.argmax(scores + gumbel_like(scores, generator), dim=-1)


def sample_log_gamma(alpha: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """log of Gamma(alpha, 1) variates (batched Marsaglia-Tsang; alpha < 1 via the
    ``Gamma(a) = Gamma(a + 1) * U^(1/a)`` boost).  Works in log space, so tiny variates are fine."""
    alpha = alpha.detach()
    boost = alpha < 1
    a = torch.where(boost, alpha + 1, alpha)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    flat_d, flat_c = d.reshape(-1), c.reshape(-1)
    log_v = torch.empty_like(flat_d)
    todo = torch.arange(flat_d.numel(), device=alpha.device)
    for _ in range(1000):
        if todo.numel() == 0:
            break
        dd, cc = flat_d[todo], flat_c[todo]
        x = torch.randn(todo.shape, dtype=alpha.dtype, device=alpha.device, generator=generator)
        u = torch.rand(todo.shape, dtype=alpha.dtype, device=alpha.device, generator=generator)
        v = (1 + cc * x) ** 3
        ok = v > 0
        lv = torch.log(v.clamp(min=1e-30))
        ok &= torch.log(u.clamp(min=1e-30)) < 0.5 * x * x + dd - dd * v + dd * lv
        log_v[todo[ok]] = lv[ok]
        todo = todo[~ok]
    else:  # acceptance is > 95% per round; reaching this means NaN parameters
        raise FloatingPointError("Gamma sampler did not converge (are the concentrations finite?)")
    out = torch.log(d) + log_v.reshape(alpha.shape)
    if bool(boost.any()):
        u = torch.rand(alpha.shape, dtype=alpha.dtype, device=alpha.device, generator=generator)
        out = torch.where(boost, out + torch.log(u.clamp(min=1e-30)) / alpha, out)
    return out


def sample_beta(a: torch.Tensor, b: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Beta(a, b) variates (via two log-Gamma variates), clamped to ``[U_EPS, 1 - U_EPS]``."""
    u = torch.sigmoid(sample_log_gamma(a, generator) - sample_log_gamma(b, generator))
    return u.clamp(U_EPS, 1 - U_EPS)


def beta_log_density(u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise log Beta(u; a, b) density."""
    return ((a - 1) * torch.log(u) + (b - 1) * torch.log1p(-u)
            + torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b))


# ---------------------------------------------------------------------------- base mixtures
class _Mixture:
    """Shared layout of the K-component mixtures below: ``logits`` [N, K] and two per-component
    parameter tensors [N, K, D]; ``K * (1 + 2D)`` raw network outputs per row."""

    @staticmethod
    def n_params(n_components: int, dim: int) -> int:
        """Number of raw parameters :meth:`from_raw` expects per row."""
        return n_components * (1 + 2 * dim)

    @staticmethod
    def _check_shapes(name: str, logits: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, names: str) -> None:
        if p1.dim() != 3 or p1.shape != p2.shape or logits.shape != p1.shape[:2]:
            raise ValueError(f"{name}: logits [N,K], {names} [N,K,D] expected, got {tuple(logits.shape)}, "
                             f"{tuple(p1.shape)}, {tuple(p2.shape)}")

    def _draw_components(self, p1: torch.Tensor, p2: torch.Tensor, temperature: float, epsilon: float,
                         generator) -> tuple:
        """One component per row (Gumbel-max on tempered logits; uniform on epsilon-exploration
        rows): its two parameter vectors [N, D] and the exploration mask (None without epsilon)."""
        n = self.logits.shape[0]
        explore = _explore_rows(n, epsilon, self.logits.device, generator)
        k = _choose_component(self.logits, temperature, explore, generator)
        rows = torch.arange(n, device=k.device)
        return p1[rows, k], p2[rows, k], explore


class BetaMixture(_Mixture):
    """Mixture of K products of D independent Betas on (0, 1)^D.

    ``logits`` [N, K] are the unnormalised mixture weights; ``alpha`` and ``beta`` [N, K, D]
    the concentrations.  Sampling: temperature T divides the logits and takes the
    concentrations to the power 1/T (T > 1 flattens towards uniform); with probability
    ``epsilon`` a row is drawn uniformly on the cube instead.
    """

    def __init__(self, logits: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor):
        self._check_shapes("BetaMixture", logits, alpha, beta, "alpha/beta")
        self.logits, self.alpha, self.beta = logits, alpha, beta

    @classmethod
    def from_raw(cls, raw: torch.Tensor, n_components: int, dim: int, min_concentration: float = 0.5,
                 max_concentration: float = 50.0) -> "BetaMixture":
        """Mixture from raw network outputs [N, K * (1 + 2D)]; zeros give the uniform distribution."""
        k, d = n_components, dim
        logits, ra, rb = split_last(raw, [k, k * d, k * d])
        shape = (raw.shape[0], k, d)
        a = bounded_positive(ra.reshape(shape), min_concentration, max_concentration)
        b = bounded_positive(rb.reshape(shape), min_concentration, max_concentration)
        return cls(logits, a, b)

    @classmethod
    def uniform(cls, n: int, dim: int, device=None, dtype=torch.float32) -> "BetaMixture":
        """The uniform distribution on (0, 1)^dim for ``n`` rows (a fixed policy)."""
        ones = torch.ones(n, 1, dim, device=device, dtype=dtype)
        return cls(torch.zeros(n, 1, device=device, dtype=dtype), ones, ones)

    @property
    def dim(self) -> int:
        """Dimension D of a variate."""
        return int(self.alpha.shape[-1])

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        """log-density of ``u`` [N, D] (clamped into the open cube)."""
        u = u.clamp(U_EPS, 1 - U_EPS).unsqueeze(1)
        comp = beta_log_density(u, self.alpha, self.beta).sum(-1)
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + comp, dim=-1)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Variates [N, D]."""
        with torch.no_grad():
            a, b, explore = self._draw_components(self.alpha, self.beta, temperature, epsilon, generator)
            if temperature != 1.0:
                a, b = a ** (1.0 / temperature), b ** (1.0 / temperature)
            if explore is not None:
                a = torch.where(explore.unsqueeze(1), torch.ones_like(a), a)
                b = torch.where(explore.unsqueeze(1), torch.ones_like(b), b)
            return sample_beta(a, b, generator)


class GaussianMixture(_Mixture):
    """Mixture of K diagonal Gaussians in R^D.

    ``logits`` [N, K], ``mean`` and ``std`` [N, K, D].  Sampling: temperature T divides the
    logits and multiplies the standard deviations by sqrt(T); with probability ``epsilon`` a
    row picks its component uniformly and doubles its standard deviation.
    """

    #: standard-deviation factor of epsilon-exploration rows
    explore_scale: float = 2.0

    def __init__(self, logits: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        self._check_shapes("GaussianMixture", logits, mean, std, "mean/std")
        self.logits, self.mean, self.std = logits, mean, std

    @classmethod
    def from_raw(cls, raw: torch.Tensor, n_components: int, dim: int, mean_offset: torch.Tensor | float = 0.0,
                 mean_scale: float = 1.0, min_std: float = 0.05, max_std: float = 5.0,
                 std_at_zero: float = 1.0) -> "GaussianMixture":
        """Mixture from raw outputs [N, K * (1 + 2D)]: ``mean = mean_offset + mean_scale * raw``,
        std in ``[min_std, max_std]`` (``std_at_zero`` for raw 0)."""
        k, d = n_components, dim
        logits, rm, rs = split_last(raw, [k, k * d, k * d])
        shape = (raw.shape[0], k, d)
        off = mean_offset.reshape(-1, 1, d) if torch.is_tensor(mean_offset) else mean_offset
        mean = off + mean_scale * rm.reshape(shape)
        std = bounded_positive(rs.reshape(shape), min_std, max_std, std_at_zero)
        return cls(logits, mean, std)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log-density of ``x`` [N, D]."""
        z = (x.unsqueeze(1) - self.mean) / self.std
        comp = (-0.5 * z * z - torch.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + comp, dim=-1)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Variates [N, D]."""
        with torch.no_grad():
            mean, std, explore = self._draw_components(self.mean, self.std, temperature, epsilon, generator)
            if temperature != 1.0:
                std = std * math.sqrt(temperature)
            if explore is not None:
                std = torch.where(explore.unsqueeze(1), std * self.explore_scale, std)
            noise = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
            return mean + std * noise


# ---------------------------------------------------------------------------- composition
class TransformedDist:
    """A base distribution over u pushed through a bijection ``a = transform(u)``.

    ``transform`` provides ``forward(u) -> a`` and ``inverse(a) -> (u, log|det du/da|)``;
    the log-density of ``a`` is ``base.log_prob(u) + log|det du/da|`` (change of variables).
    """

    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log-density of ``actions`` in the transformed coordinates."""
        u, log_det = self.transform.inverse(actions)
        return self.base.log_prob(u) + log_det

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Transformed base variates."""
        with torch.no_grad():
            return self.transform.forward(self.base.sample(temperature, epsilon, generator))


class Deterministic:
    """Point mass at ``value`` [N, D]: ``log_prob`` is 0 at the value (within a tolerance that
    absorbs float rounding) and ``-inf`` elsewhere."""

    def __init__(self, value: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-4):
        self.value, self.atol, self.rtol = value, atol, rtol

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """0 where ``actions`` equals the value, else ``-inf``."""
        close = torch.isclose(actions, self.value.to(actions.dtype), atol=self.atol, rtol=self.rtol).all(-1)
        return torch.zeros(actions.shape[0], dtype=actions.dtype, device=actions.device).masked_fill(~close, NEG_INF)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The value itself (exploration does not apply)."""
        return self.value.detach().clone()


class RowSwitch:
    """Rows where ``select`` is True follow ``dist_true``, the others ``dist_false``; each
    sub-distribution covers only its own rows (in batch order)."""

    def __init__(self, select: torch.Tensor, dist_true, dist_false, action_dim: int):
        self.select = select
        self.rows_true = select.nonzero().squeeze(1)
        self.rows_false = (~select).nonzero().squeeze(1)
        self.dist_true, self.dist_false, self.action_dim = dist_true, dist_false, action_dim

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Each row's log-density under its own distribution."""
        parts = []
        for rows, dist in ((self.rows_true, self.dist_true), (self.rows_false, self.dist_false)):
            if rows.numel() > 0:
                parts.append((rows, dist.log_prob(actions[rows])))
        dtype = parts[0][1].dtype if parts else actions.dtype
        out = torch.zeros(actions.shape[0], dtype=dtype, device=actions.device)
        for rows, lp in parts:
            out = out.index_copy(0, rows, lp)
        return out

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Each row drawn from its own distribution."""
        parts = [(rows, dist.sample(temperature, epsilon, generator))
                 for rows, dist in ((self.rows_true, self.dist_true), (self.rows_false, self.dist_false))
                 if rows.numel() > 0]
        dtype = parts[0][1].dtype if parts else torch.float32
        out = torch.empty(self.select.shape[0], self.action_dim, dtype=dtype, device=self.select.device)
        for rows, a in parts:
            out[rows] = a.to(dtype)
        return out


class WithExit:
    """Continuous actions plus the exit action in one distribution.

    ``mask`` [N, 2] says whether continuing / exiting is allowed (True = allowed);
    ``exit_logit`` [N] scores exit against continuing where both are allowed.  Then
    ``P(exit) = sigmoid(exit_logit)`` and a continuing action ``a`` has log-density
    ``log(1 - P(exit)) + base.log_prob(a)``.  Exit actions are rows of ``-inf``.
    """

    def __init__(self, base, exit_logit: Optional[torch.Tensor], mask: torch.Tensor, action_dim: int):
        if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[1] != 2:
            raise ValueError(f"WithExit: mask must be a bool tensor [N, 2] (continue, exit), got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        if not bool(mask.any(-1).all()):
            i = int((~mask.any(-1)).nonzero()[0, 0])
            raise ValueError(f"WithExit: row {i} allows neither continuing nor exiting")
        self.base, self.mask, self.action_dim = base, mask, action_dim
        if exit_logit is None:
            exit_logit = torch.zeros(mask.shape[0], device=mask.device)
        two = torch.stack([torch.zeros_like(exit_logit), exit_logit], dim=-1)
        self.logits = two.masked_fill(~mask, NEG_INF)
        self.log_p = torch.log_softmax(self.logits, dim=-1)  # [N, 2]: log P(continue), log P(exit)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log P(exit) at exit rows, log P(continue) + log-density elsewhere."""
        is_exit = torch.isneginf(actions).all(-1)
        safe = torch.where(torch.isfinite(actions), actions, torch.zeros_like(actions))
        cont = self.log_p[:, 0] + self.base.log_prob(safe)
        return torch.where(is_exit, self.log_p[:, 1], cont)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Exit rows are ``-inf``; the others are drawn from the base distribution."""
        with torch.no_grad():
            n = self.mask.shape[0]
            scores = self.logits if temperature == 1.0 else self.logits / temperature
            explore = _explore_rows(n, epsilon, self.mask.device, generator)
            if explore is not None:
                uniform = torch.zeros_like(scores).masked_fill(~self.mask, NEG_INF)
                scores = torch.where(explore.unsqueeze(1), uniform, scores)
            choice = torch.argmax(scores + gumbel_like(scores, generator), dim=-1)
            actions = self.base.sample(temperature, epsilon, generator)
            return actions.masked_fill((choice == 1).unsqueeze(1), NEG_INF)

    @property
    def exit_prob(self) -> torch.Tensor:
        """P(exit) of each row."""
        return self.log_p[:, 1].exp()


# ---------------------------------------------------------------------------- policies
class ActionFamily:
    """Maps raw head outputs at a batch of states (None for a fixed policy) to an action
    distribution; ``n_params`` raw outputs per state (0 for a fixed policy)."""

    n_params: int = 0

    def __call__(self, params: Optional[torch.Tensor], states: torch.Tensor):
        raise NotImplementedError


class ContinuousPolicy(nn.Module):
    """P_F or P_B over continuous actions: ``family(head(h), states)``; with ``head=None`` the
    policy is fixed (the family gets ``None`` and ignores ``h``)."""

    def __init__(self, family: ActionFamily, head: Optional[nn.Module] = None):
        super().__init__()
        if head is None and family.n_params != 0:
            raise ValueError(f"{type(family).__name__} needs {family.n_params} parameters per state: give it a head")
        self.family = family
        self.head = head

    def forward(self, h: torch.Tensor, states: torch.Tensor):
        """Action distribution at ``states`` given their encodings ``h``."""
        return self.family(self.head(h) if self.head is not None else None, states)
