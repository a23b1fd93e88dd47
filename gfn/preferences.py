"""Multi-objective GFlowNets conditioned on preferences (MOGFN-PC, Jain et al. 2023).

One GFlowNet samples from ``R(x | w, beta) = s_w(R_1(x), ..., R_k(x))^beta`` for every preference
``w`` on the simplex (and every beta, with ``pref+beta``).  Pieces (see ``docs/multiobjective.md``):

* **vector rewards**, an opt-in extension of the reward contract: a :class:`MultiObjectiveReward`
  names its ``k`` objectives and returns ``log_rewards(states) -> [B, k]`` (each ``R_i >= 0``).
  Its scalar ``log_reward`` (what the sampler and every unconditioned objective read) is the
  scalarisation at the equal-weight preference, so such an env still trains without conditioning.
  :func:`checked_log_rewards` checks shape, NaN and +inf.
* **scalarisation** in log space (:func:`scalarize`): ``weighted_sum`` ``sum_i w_i R_i`` or
  ``tchebycheff`` ``min_{i: w_i > 0} w_i R_i``, then ``beta`` (:func:`scalarize_cond` reads
  ``w`` and beta from a conditioning vector ``[w_1..w_k(, beta)]``).
* **preference distributions**: :class:`Dirichlet` (training) and :func:`preference_grid` (the
  fixed evaluation preferences: the simplex lattice with step ``1/steps``).
* :class:`PreferenceSampler` (the trainer's ``cond_fn``) and :class:`PreferenceScalarization`
  (the batch hook that rewrites ``batch.log_rewards``, the analogue of
  :class:`gfn.conditioning.RewardTempering`); :func:`gfn.preference_flags.apply_preference_flags` wires
  ``--condition pref`` / ``pref+beta`` into :func:`gfn.runner.run`.  The model is the standard
  one with the conditioning vector appended to its input and a conditional ``log Z(w, beta)``.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence

import torch

from gfn.beta import BetaDistribution, parse_beta_dist
from gfn.env import EnvError, Reward
from gfn.estimators import LogZ
from gfn.states import batch_len

#: ``--condition`` values handled here (the others are temperature conditioning)
PREF_MODES = ("pref", "pref+beta")
SCALARIZATIONS = ("weighted_sum", "tchebycheff")


# ============================================================================ vector rewards
class MultiObjectiveReward(Reward):
    """A reward with ``k`` named objectives: subclasses set ``objective_names`` and implement
    :meth:`log_rewards` ``-> [B, k]`` (natural log of each ``R_i(x) >= 0``).

    :meth:`log_reward` is the scalarised reward at ``default_preference`` (equal weights unless
    set), so the env keeps satisfying the scalar contract.
    """

    objective_names: tuple = ()
    #: how :meth:`log_reward` scalarises, at which preference (None: equal weights) and beta;
    #: :func:`gfn.preference_flags.apply_preference_flags` sets them to the run's scalarisation and ``--pref-beta``
    scalarization: str = "weighted_sum"
    default_preference: Optional[torch.Tensor] = None
    default_beta: float = 1.0

    @property
    def n_objectives(self) -> int:
        """Number of objectives k."""
        return len(self.objective_names)

    def log_rewards(self, states) -> torch.Tensor:
        """``[B, k]`` log R_i(x) of each state and objective."""
        raise NotImplementedError(f"{type(self).__name__} must implement log_rewards()")

    def log_reward(self, states) -> torch.Tensor:
        """Scalar log R(x): ``default_beta * log s_w(R(x))`` at the default preference (equal weights)."""
        lr = self.log_rewards(states)
        w = self.default_preference
        if w is None:
            w = torch.full((self.n_objectives,), 1.0 / self.n_objectives)
        return self.default_beta * scalarize(lr, w.to(lr.device, lr.dtype).expand_as(lr), self.scalarization)


def is_multi_objective(env) -> bool:
    """Whether ``env``'s reward object provides vector rewards."""
    return isinstance(getattr(env, "reward", None), MultiObjectiveReward)


def checked_log_rewards(env, states) -> torch.Tensor:
    """``env.reward.log_rewards(states)`` with checks: shape ``[N, k]``, no NaN, no +inf."""
    if not is_multi_objective(env):
        raise EnvError(f"{type(env).__name__} has no multi-objective reward (a MultiObjectiveReward with "
                       f"log_rewards -> [B, k]); got {type(getattr(env, 'reward', None)).__name__}")
    k = env.reward.n_objectives
    if k < 2:
        raise EnvError(f"{type(env.reward).__name__} names {k} objective(s); a multi-objective reward needs >= 2")
    lr = env.reward.log_rewards(states)
    n = batch_len(states)
    if not torch.is_tensor(lr) or lr.shape != (n, k):
        shape = tuple(lr.shape) if torch.is_tensor(lr) else type(lr).__name__
        raise EnvError(f"{type(env.reward).__name__}.log_rewards must return shape ({n}, {k}), got {shape}")
    bad = torch.isnan(lr) | (lr == float("inf"))
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        raise EnvError(f"{type(env.reward).__name__}: log reward of objective {env.reward.objective_names[j]!r} "
                       f"is {float(lr[i, j])} at batch position {i}; rewards must be finite and >= 0")
    return lr


# ============================================================================ scalarisation
def _check_prefs(prefs: torch.Tensor, k: int) -> None:
    if prefs.dim() != 2 or prefs.shape[1] != k:
        raise ValueError(f"preferences must have shape [B, {k}], got {tuple(prefs.shape)}")
    if bool((prefs < 0).any()) or not bool(torch.isfinite(prefs).all()):
        raise ValueError("preference weights must be finite and >= 0")
    if not bool(torch.allclose(prefs.sum(1).double(), torch.ones(prefs.shape[0], dtype=torch.float64, device=prefs.device),
                               atol=1e-4)):
        raise ValueError("each preference vector must sum to 1")


def scalarize(log_rewards: torch.Tensor, prefs: torch.Tensor, method: str = "weighted_sum") -> torch.Tensor:
    """log of the scalarised reward, ``[B]``, from ``log_rewards [B, k]`` and ``prefs [B, k]``.

    ``weighted_sum``: ``log sum_i w_i R_i``; ``tchebycheff``: ``log min_{i: w_i > 0} w_i R_i``
    (objectives with zero weight are ignored, so a corner preference is that one objective).
    """
    if method not in SCALARIZATIONS:
        raise ValueError(f"unknown scalarization {method!r}; choose one of {SCALARIZATIONS}")
    if log_rewards.dim() != 2:
        raise ValueError(f"log_rewards must have shape [B, k], got {tuple(log_rewards.shape)}")
    _check_prefs(prefs, log_rewards.shape[1])
    log_w = prefs.to(log_rewards.dtype).log()  # -inf where w_i = 0
    terms = log_w + log_rewards
    if method == "weighted_sum":
        return torch.logsumexp(terms, dim=1)
    terms = terms.masked_fill(prefs <= 0, float("inf"))  # ignore unweighted objectives
    return terms.min(dim=1).values


def split_cond(cond: torch.Tensor, k: int, with_beta: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(w [B, k], beta [B] or None)`` from a conditioning tensor ``[w_1..w_k(, beta)]``."""
    width = k + int(with_beta)
    if cond is None or cond.dim() != 2 or cond.shape[1] != width:
        got = None if cond is None else tuple(cond.shape)
        raise ValueError(f"preference conditioning needs a tensor [B, {width}] "
                         f"({'w_1..w_k, beta' if with_beta else 'w_1..w_k'}), got {got}")
    return cond[:, :k], (cond[:, k] if with_beta else None)


def scalarize_cond(log_rewards: torch.Tensor, cond: torch.Tensor, method: str = "weighted_sum",
                   with_beta: bool = False, beta: float = 1.0) -> torch.Tensor:
    """``beta * log s_w(R(x))`` with ``w`` (and beta when ``with_beta``) read from ``cond``;
    otherwise the fixed ``beta``."""
    w, b = split_cond(cond, log_rewards.shape[1], with_beta)
    b = torch.full_like(w[:, 0], float(beta)) if b is None else b
    if not bool((b > 0).all()):
        raise ValueError("preference scalarisation needs beta > 0")
    return b.to(log_rewards.dtype) * scalarize(log_rewards, w, method)


# ============================================================================ preference distributions
class Dirichlet:
    """Training preferences ``w ~ Dirichlet(alpha * 1_k)`` (alpha = 1: uniform on the simplex)."""

    def __init__(self, k: int, alpha: float = 1.0):
        if k < 2:
            raise ValueError(f"preferences need k >= 2 objectives, got {k}")
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"Dirichlet alpha must be finite and > 0, got {alpha}")
        self.k, self.alpha = int(k), float(alpha)

    def sample(self, n: int) -> torch.Tensor:
        """``[n, k]`` preference vectors (global torch RNG, so one seed repeats a run)."""
        g = torch._standard_gamma(torch.full((n, self.k), self.alpha, dtype=torch.float64))
        return (g / g.sum(1, keepdim=True)).float()

    def __repr__(self):
        return f"Dirichlet(k={self.k}, alpha={self.alpha:g})"


def preference_grid(k: int, steps: int = 10) -> torch.Tensor:
    """The simplex lattice ``{w : w_i in {0, 1/steps, ..., 1}, sum w = 1}`` as ``[P, k]``
    (k = 2, steps = 10: the 11 evaluation preferences (0, 1), (0.1, 0.9), ..., (1, 0))."""
    if k < 2 or steps < 1:
        raise ValueError(f"preference_grid needs k >= 2 and steps >= 1, got k={k}, steps={steps}")
    rows = [c for c in itertools.product(range(steps + 1), repeat=k - 1) if sum(c) <= steps]
    grid = torch.tensor([[steps - sum(c), *c] for c in rows], dtype=torch.float64) / steps
    return grid.flip(1).float()


def pref_tag(w: Sequence[float]) -> str:
    """Metric-name suffix of a preference: ``(0.3, 0.7) -> 'w0.3_0.7'``."""
    return "w" + "_".join(f"{float(v):.3g}" for v in w)


class PreferenceSampler:
    """The trainer's ``cond_fn``: ``[n, k]`` Dirichlet preferences, with a beta column from
    ``beta_dist`` appended when ``with_beta`` (``pref+beta``)."""

    def __init__(self, k: int, alpha: float = 1.0, beta_dist: BetaDistribution | str | None = None,
                 device: str | torch.device = "cpu"):
        self.prefs = Dirichlet(k, alpha)
        self.beta_dist = None if beta_dist is None else parse_beta_dist(beta_dist)
        self.device = torch.device(device)
        self.calls = 0
        self._trainer = None

    @property
    def with_beta(self) -> bool:
        """Whether a beta column is appended."""
        return self.beta_dist is not None

    @property
    def cond_dim(self) -> int:
        """Width of the conditioning vectors."""
        return self.prefs.k + int(self.with_beta)

    def bind(self, trainer) -> "PreferenceSampler":
        """Read beta schedules' position from ``trainer.iteration``."""
        self._trainer = trainer
        return self

    def __call__(self, n: int) -> torch.Tensor:
        it = self._trainer.iteration if self._trainer is not None else self.calls
        self.calls += 1
        w = self.prefs.sample(n)
        if self.beta_dist is not None:
            w = torch.cat([w, self.beta_dist.sample(n, it).reshape(n, 1).float()], dim=1)
        return w.to(self.device)


class PreferenceScalarization:
    """Batch hook ``(trainer, batch) -> batch``: ``batch.log_rewards = beta * log s_w(R(x))`` with
    ``w`` (and beta) from ``batch.cond``.  The vector rewards of the batch's objects are read once
    (``env.reward.log_rewards``, so replayed objects are scalarised at their new preference) and
    kept in ``batch.info["log_rewards_vector"]``; like reward tempering, the scalar rewards the
    sampler computed come back after the optimiser step (:meth:`restore`)."""

    KEY = "log_rewards_untempered"  # same key as gfn.conditioning.RewardTempering: one rewrite per batch
    VECTOR_KEY = "log_rewards_vector"

    def __init__(self, method: str = "weighted_sum", with_beta: bool = False, beta: float = 1.0):
        if method not in SCALARIZATIONS:
            raise ValueError(f"unknown scalarization {method!r}; choose one of {SCALARIZATIONS}")
        if not (beta > 0 and math.isfinite(beta)):
            raise ValueError(f"preference beta must be finite and > 0, got {beta}")
        self.method, self.with_beta, self.beta = method, bool(with_beta), float(beta)

    def __call__(self, trainer, batch):
        if self.KEY in batch.info:
            raise RuntimeError("PreferenceScalarization: this batch's rewards are already rewritten "
                               "(two scalarisation or tempering hooks?)")
        vec = checked_log_rewards(trainer.env, batch.terminal_states).to(batch.log_rewards.dtype)
        info = dict(batch.info)
        info[self.KEY] = batch.log_rewards
        info[self.VECTOR_KEY] = vec
        lr = scalarize_cond(vec, batch.cond, self.method, self.with_beta, self.beta)
        return batch.with_(log_rewards=lr.to(batch.log_rewards.dtype), info=info)

    def restore(self, trainer, iteration: int, step_info) -> None:
        """Trainer hook: the sampler's scalar log-rewards come back for logs and metrics."""
        batch = step_info.batch
        raw = batch.info.pop(self.KEY, None)
        batch.info.pop(self.VECTOR_KEY, None)
        if raw is not None:
            batch.log_rewards = raw


def eval_conditions(k: int, steps: int = 10, with_beta: bool = False, betas: Sequence[float] = (1.0,)) -> torch.Tensor:
    """Evaluation conditioning vectors: the preference grid (times each beta when ``with_beta``)."""
    grid = preference_grid(k, steps)
    if not with_beta:
        return grid
    return torch.cat([torch.cat([grid, torch.full((grid.shape[0], 1), float(b))], 1) for b in betas])


# ============================================================================ run flags
class PreferenceLogZ(LogZ):
    """log Z(w, beta): an MLP of the conditioning vector (as :class:`gfn.estimators.LogZ`), whose
    ``value`` (what logs show as ``log_z``) is log Z at the equal-weight preference (and default beta)."""

    def __init__(self, default_cond: torch.Tensor, init: float = 0.0, hidden: int = 64):
        super().__init__(init=init, cond_dim=int(default_cond.numel()), hidden=hidden)
        self.register_buffer("default_cond", default_cond.reshape(1, -1).float().clone())

    def forward(self, n: int, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log Z for ``n`` trajectories (at ``default_cond`` when ``cond`` is None)."""
        return super().forward(n, self.default_cond.expand(n, -1) if cond is None else cond)

    @property
    def value(self) -> torch.Tensor:
        """log Z at ``default_cond`` (a 0-d tensor)."""
        return self.forward(1)[0]


class DefaultPreference:
    """Mixin for a conditional GFlowNet: ``encode(states)`` without a conditioning vector uses
    ``default_cond`` (the centre preference), so code written for unconditional models (the generic
    metrics of ``gfn train``, sampling without ``cond``) sees the model at the env's scalar reward."""

    default_cond: torch.Tensor

    def encode(self, states, cond: Optional[torch.Tensor] = None):
        """The model's encoding, conditioned on ``default_cond`` when ``cond`` is None."""
        if cond is None:
            cond = self.default_cond.to(next(self.parameters()).device).expand(batch_len(states), -1)
        return super().encode(states, cond)


def with_default_preference(model, default_cond: torch.Tensor):
    """Give a conditional ``model`` a default condition, in place (its class gains :class:`DefaultPreference`)."""
    if not isinstance(model, DefaultPreference):
        model.__class__ = type(f"{type(model).__name__}WithDefaultPreference", (DefaultPreference, type(model)), {})
    model.register_buffer("default_cond", default_cond.reshape(1, -1).float().clone(), persistent=False)
    return model
