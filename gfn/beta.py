"""Distributions of the inverse temperature beta for temperature-conditional GFlowNets.

:class:`Uniform` [1, 3] (the default), :class:`LogUniform` (log beta uniform),
:class:`ExpUniform` (exp beta uniform), :class:`NormalClipped`, :class:`Constant` and
:class:`Annealed` schedules; :func:`parse_beta_dist` reads the ``--beta-dist`` strings and
:class:`BetaSampler` is the trainer's ``cond_fn`` that draws one beta per trajectory;
:func:`beta_of` reads beta from a conditioning tensor and :func:`temper` tempers log-rewards with
it (used by conditioning and by local search, which both sit above this module).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

# ============================================================================ beta distributions
def beta_of(cond: torch.Tensor) -> torch.Tensor:
    """beta of each trajectory from a conditioning tensor ``[B, c]`` (column 0)."""
    if cond is None:
        raise ValueError("temperature conditioning needs batch.cond (beta per trajectory); none was given")
    if cond.dim() != 2 or cond.shape[1] < 1:
        raise ValueError(f"conditioning tensor must have shape [B, c>=1], got {tuple(cond.shape)}")
    return cond[:, 0]


def temper(log_rewards: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """log R_beta(x) = beta * log R(x) (``-inf`` stays ``-inf`` for beta > 0)."""
    beta = beta_of(cond).to(log_rewards.dtype)
    if not bool((beta > 0).all()):
        raise ValueError("reward tempering needs beta > 0")
    return beta * log_rewards


class BetaDistribution:
    """A distribution of inverse temperatures beta > 0; ``sample(n, iteration)`` returns ``[n]``."""

    def sample(self, n: int, iteration: int = 0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` draws of beta (``iteration`` matters only for annealing schedules)."""
        raise NotImplementedError

    def _u(self, n: int, generator) -> torch.Tensor:
        return torch.rand(n, generator=generator, dtype=torch.float64)


def _check_range(name: str, a: float, b: float, positive: bool = True) -> None:
    if not (math.isfinite(a) and math.isfinite(b)) or a > b:
        raise ValueError(f"{name}: need finite a <= b, got a={a}, b={b}")
    if positive and a <= 0:
        raise ValueError(f"{name}: beta must be > 0, got lower bound {a}")


class Uniform(BetaDistribution):
    """beta ~ U[a, b] (default [1, 3], the setting of the Logit-GFN paper)."""

    def __init__(self, a: float = 1.0, b: float = 3.0):
        _check_range("uniform", a, b)
        self.a, self.b = float(a), float(b)

    def sample(self, n, iteration=0, generator=None):
        return (self.a + (self.b - self.a) * self._u(n, generator)).float()

    def __repr__(self):
        return f"uniform:{self.a:g},{self.b:g}"


class LogUniform(BetaDistribution):
    """log beta ~ U[log a, log b]: every octave of beta is equally likely (correctly named; the
    authors' code calls this one "expuniform" and the next one "loguniform")."""

    def __init__(self, a: float = 1.0, b: float = 3.0):
        _check_range("loguniform", a, b)
        self.a, self.b = float(a), float(b)

    def sample(self, n, iteration=0, generator=None):
        la, lb = math.log(self.a), math.log(self.b)
        return torch.exp(la + (lb - la) * self._u(n, generator)).float()

    def __repr__(self):
        return f"loguniform:{self.a:g},{self.b:g}"


class ExpUniform(BetaDistribution):
    """exp(beta) ~ U[e^a, e^b]: mass skewed towards large beta (the inverse of :class:`LogUniform`)."""

    def __init__(self, a: float = 1.0, b: float = 3.0):
        _check_range("expuniform", a, b)
        self.a, self.b = float(a), float(b)

    def sample(self, n, iteration=0, generator=None):
        ea, eb = math.exp(self.a), math.exp(self.b)
        return torch.log(ea + (eb - ea) * self._u(n, generator)).float()

    def __repr__(self):
        return f"expuniform:{self.a:g},{self.b:g}"


class NormalClipped(BetaDistribution):
    """beta ~ N(mean, std^2) clipped to [low, high] (default mean +- 3 std, and > 0)."""

    def __init__(self, mean: float = 2.0, std: float = 0.5, low: Optional[float] = None, high: Optional[float] = None):
        if std < 0:
            raise ValueError(f"normal: std must be >= 0, got {std}")
        self.mean, self.std = float(mean), float(std)
        self.low = float(low) if low is not None else max(mean - 3 * std, 1e-3)
        self.high = float(high) if high is not None else mean + 3 * std
        _check_range("normal", self.low, self.high)

    def sample(self, n, iteration=0, generator=None):
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * z).clamp(self.low, self.high).float()

    def __repr__(self):
        return f"normal:{self.mean:g},{self.std:g},{self.low:g},{self.high:g}"


class Constant(BetaDistribution):
    """beta fixed to one value (e.g. train one temperature with a conditional model)."""

    def __init__(self, value: float = 1.0):
        _check_range("constant", value, value)
        self.value = float(value)

    def sample(self, n, iteration=0, generator=None):
        return torch.full((n,), self.value)

    def __repr__(self):
        return f"constant:{self.value:g}"


ANNEAL_KINDS = ("linear", "cosine", "geometric")


class Annealed(BetaDistribution):
    """Deterministic schedule beta(t) from ``start`` to ``end`` over ``steps`` iterations
    (``linear``, ``cosine`` or ``geometric`` interpolation), constant afterwards."""

    def __init__(self, start: float = 1.0, end: float = 3.0, steps: int = 1000, kind: str = "linear"):
        _check_range("anneal", min(start, end), max(start, end))
        if steps <= 0:
            raise ValueError(f"anneal: steps must be positive, got {steps}")
        if kind not in ANNEAL_KINDS:
            raise ValueError(f"anneal: kind must be one of {ANNEAL_KINDS}, got {kind!r}")
        self.start, self.end, self.steps, self.kind = float(start), float(end), int(steps), kind

    def value(self, iteration: int) -> float:
        """beta at training iteration ``iteration``."""
        f = min(max(iteration / self.steps, 0.0), 1.0)
        if self.kind == "cosine":
            f = 0.5 - 0.5 * math.cos(math.pi * f)
        if self.kind == "geometric":
            return self.start * (self.end / self.start) ** f
        return self.start + (self.end - self.start) * f

    def sample(self, n, iteration=0, generator=None):
        return torch.full((n,), self.value(iteration))

    def __repr__(self):
        return f"anneal:{self.start:g},{self.end:g},{self.steps},{self.kind}"


_DISTS = {"uniform": Uniform, "loguniform": LogUniform, "expuniform": ExpUniform,
          "normal": NormalClipped, "constant": Constant, "anneal": Annealed}


def parse_beta_dist(spec: str) -> BetaDistribution:
    """Build a beta distribution from ``name[:p1,p2,...]``, e.g. ``uniform:1,3``,
    ``loguniform:0.5,8``, ``normal:2,0.5[,low,high]``, ``constant:2``, ``anneal:1,3,1000,cosine``."""
    if isinstance(spec, BetaDistribution):
        return spec
    name, _, params = str(spec).strip().partition(":")
    name = name.strip().lower()
    if name not in _DISTS:
        raise ValueError(f"unknown beta distribution {name!r} in {spec!r}; known: {', '.join(_DISTS)}")
    parts = [p.strip() for p in params.split(",")] if params.strip() else []
    if any(p == "" for p in parts):  # an empty slot would shift every later parameter left
        raise ValueError(f"bad parameters for beta distribution {spec!r}: empty parameter")
    args: list = []
    for p in parts:
        try:
            args.append(float(p))
        except ValueError:
            args.append(p)
    if name == "anneal" and len(args) >= 3:
        if not (isinstance(args[2], float) and args[2].is_integer()):
            raise ValueError(f"bad parameters for beta distribution {spec!r}: steps must be an integer, got {parts[2]!r}")
        args[2] = int(args[2])
    try:
        return _DISTS[name](*args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad parameters for beta distribution {spec!r}: {e}") from None


class BetaSampler:
    """The trainer's ``cond_fn``: draws one beta per trajectory as a ``[n, 1]`` conditioning tensor.

    The schedule position is the bound trainer's iteration (:meth:`bind`), so a resumed run
    continues its annealing exactly; unbound, it counts its own calls.
    """

    def __init__(self, dist: BetaDistribution | str = "uniform:1,3", device: str | torch.device = "cpu",
                 generator: Optional[torch.Generator] = None):
        self.dist = parse_beta_dist(dist)
        self.device = torch.device(device)
        self.generator = generator
        self.calls = 0
        self._trainer = None

    @property
    def bound(self) -> bool:
        """Whether the schedule position comes from a trainer (:meth:`bind`)."""
        return self._trainer is not None

    def bind(self, trainer) -> "BetaSampler":
        """Read the schedule position from ``trainer.iteration``."""
        self._trainer = trainer
        return self

    def __call__(self, n: int) -> torch.Tensor:
        it = self._trainer.iteration if self._trainer is not None else self.calls
        self.calls += 1
        beta = self.dist.sample(n, it, self.generator)
        if not bool((beta > 0).all()):
            raise ValueError(f"{self.dist!r} produced a non-positive beta")
        return beta.to(self.device).unsqueeze(1)
