"""Action distributions owned by policies.

An action distribution is what a policy returns for a batch of states.  The sampler only
needs two methods: ``sample(temperature, epsilon, generator)`` and ``log_prob(actions)``.
Exploration (temperature, epsilon-uniform mixing) changes *only* how actions are drawn;
``log_prob`` always reports the unmodified policy, so training never sees exploration noise.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

NEG_INF = float("-inf")
_NEG_INF_T = torch.tensor(NEG_INF)  # 0-dim: compared on any device without a copy


def gumbel_like(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Standard Gumbel noise with the shape of ``x``."""
    u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    # clamp away from 0 so -log(-log(u)) is finite
    u = u.clamp_(min=torch.finfo(x.dtype).tiny)
    return -torch.log(-torch.log(u))


class InvalidActionError(RuntimeError):
    """No action can be drawn at some state: the state allows no action (an environment bug),
    or the policy's scores for its allowed actions are not finite (the model diverged)."""


def check_exploration(temperature: float, epsilon: float) -> None:
    """Refuse a temperature that is not finite and positive or an epsilon outside [0, 1]: with
    them the scores of forbidden and allowed actions can no longer be told apart."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"sampling temperature must be finite and > 0, got {temperature}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")


def invalid_action_error(dist: "MaskedCategorical", invalid: torch.Tensor, where: str = "",
                         backward: bool = False, n_affected: Optional[int] = None) -> InvalidActionError:
    """The error for the first row flagged by :meth:`MaskedCategorical.sample_checked` (error path
    only: it reads values on the host).  ``where`` describes that row (e.g. its state)."""
    i = int(invalid.nonzero()[0, 0])
    kind = "backward" if backward else "forward"
    n_bad = int(invalid.sum()) if n_affected is None else n_affected
    at = f"at {where}" if where else f"at row {i}"
    if len(at) > 300:
        at = at[:300] + "...]"
    allowed = dist.mask[i]
    if not bool(allowed.any()):
        return InvalidActionError(
            f"no {kind} action is allowed {at} ({n_bad} state(s) affected): {kind}_mask is all False "
            f"at a state the sampler reached, which is an environment bug (run gfn.check_env / "
            f"`gfn check-env` on the environment)")
    vals = dist.logits[i][allowed]
    bad = vals[~torch.isfinite(vals)]
    example = float(bad[0]) if bad.numel() else float("nan")
    return InvalidActionError(
        f"the policy's scores of the allowed {kind} actions {at} are not finite (e.g. {example}; "
        f"{n_bad} state(s) affected), so no action can be drawn: the model has diverged (lower "
        f"--lr / --lr-log-z, keep --grad-clip on), or a custom policy gives -inf to every allowed action")


class MaskedCategorical:
    """Categorical distribution over masked logits (True in ``mask`` = allowed).

    ``logits`` are raw (unnormalised) scores of shape [N, A].  Sampling uses the Gumbel-max
    trick on ``logits / temperature``; with probability ``epsilon`` a row is instead drawn
    uniformly among its allowed actions.
    """

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor):
        if logits.shape != mask.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and mask {tuple(mask.shape)} differ in shape")
        self.mask = mask
        # one op (no ~mask temporary): this runs once per sampling step
        self.logits = torch.where(mask, logits, NEG_INF)
        self._log_probs: Optional[torch.Tensor] = None

    @property
    def log_probs(self) -> torch.Tensor:
        """Normalised log-probabilities of all actions [N, A] (-inf where masked)."""
        if self._log_probs is None:
            self._log_probs = torch.log_softmax(self.logits, dim=-1)
        return self._log_probs

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log-probability of the chosen actions under the *unexplored* policy."""
        return self.log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw one action per row (Gumbel-max), with optional temperature and epsilon-uniform.

        Raises :class:`InvalidActionError` when a row has no allowed action with a finite score
        (one host sync; :meth:`sample_checked` leaves the check to the caller)."""
        actions, best = self._gumbel_max(temperature, epsilon, generator)
        ok = torch.isfinite(best)  # here also +inf: a host sync is paid anyway
        if not bool(ok.all()):
            raise invalid_action_error(self, ~ok)
        return actions

    def sample_checked(self, temperature: float = 1.0, epsilon: float = 0.0,
                       generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`sample`, without a host sync: returns ``(actions, ok)`` where ``ok`` [N] is
        False at rows whose drawn action cannot be trusted: no allowed action has a score above
        -inf (nothing allowed, or all -inf), or a score is NaN.  The caller must refuse those
        rows.  (A +inf score still names an allowed action; the loss then shows the divergence.)"""
        actions, best = self._gumbel_max(temperature, epsilon, generator)
        return actions, torch.gt(best, _NEG_INF_T)  # NaN > -inf is False too: one cheap op per step

    def _gumbel_max(self, temperature: float, epsilon: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(argmax, max) of the Gumbel-perturbed scores of each row."""
        check_exploration(temperature, epsilon)
        scores = self.logits if temperature == 1.0 else self.logits / temperature
        if epsilon > 0.0:
            uniform = torch.zeros_like(scores).masked_fill(~self.mask, NEG_INF)
            explore = torch.rand(scores.shape[0], 1, device=scores.device, generator=generator) < epsilon
            scores = torch.where(explore, uniform, scores)
        # Gumbel-max with in-place noise: argmax(scores - log(-log u)), u ~ U[0, 1).  u = 0
        # gives noise -inf, which only removes that action, so no clamp is needed here.
        noise = torch.rand(scores.shape, dtype=scores.dtype, device=scores.device, generator=generator)
        best, actions = torch.max(scores - noise.log_().neg_().log_(), dim=-1)
        # masked entries are -inf, so a winner of -inf means the row had no allowed action with a
        # score above -inf and its index may be forbidden; NaN wins over everything in max
        return actions, best

    def entropy(self) -> torch.Tensor:
        """Entropy of each row."""
        lp = self.log_probs
        return -(lp.exp() * lp.masked_fill(~self.mask, 0.0)).sum(-1)
