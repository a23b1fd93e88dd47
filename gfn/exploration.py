"""Thompson-sampling exploration (TS-GFN, Rector-Brooks et al. 2023): an ensemble of P_F heads.

The forward policy becomes ``K`` heads on the shared trunk (:class:`EnsemblePolicy`).  Each
trajectory is rolled out by one head drawn uniformly at random (:class:`ThompsonSampler`:
the batch is split by head and each group sampled in one batched call), and each head is trained
only on a bootstrap resample of the batch: trajectory ``b`` enters head ``k``'s loss when
``mask[b, k]`` is 1, with ``mask ~ Bernoulli(p)`` drawn afresh for every batch
(:class:`ThompsonObjective`, which wraps any objective: the loss is the mean over heads of the
objective on that head's trajectories).  The trunk, P_B, flows and log Z are shared and learn
from every head's loss.  Without an active head (evaluation, exact metrics) the policy is the
per-state mixture ``(1/K) sum_k P_F^k(a | s)``.

``install_thompson(trainer, k, p)`` converts a trainer in place (``--exploration thompson:K``).

Two options follow the TS-GFN authors' code (``jarridrb/recursion_gfn``,
``ThompsonSamplingGraphTransformerGFN``): ``prior_scale=beta > 0`` adds a randomized prior
(Osband et al. 2018) to every head, ``logits_k(s) = head_k(h(s)) + beta * prior_k(s)`` with
``prior_k`` a frozen, randomly initialised copy of the trunk and head; ``head_log_z=True`` gives
every head its own log Z (:class:`HeadLogZ`; their ``logZ`` has one output per ensemble member).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Optional

import torch
from torch import nn

from gfn.distributions import MaskedCategorical
from gfn.estimators import DiscretePolicy, GFlowNet, _call
from gfn.sampler import Sampler
from gfn.states import States
from gfn.trajectories import TrajectoryBatch


def _reset(module: nn.Module) -> None:
    """Re-draw every parameter of ``module`` (a fresh initialisation)."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _fresh(module: nn.Module, frozen: bool = False) -> nn.Module:
    """A freshly initialised copy of ``module`` (without gradients when ``frozen``)."""
    m = copy.deepcopy(module)
    _reset(m)
    if frozen:
        m.requires_grad_(False)
    return m


class EnsemblePolicy(nn.Module):
    """``K`` forward-policy heads on a shared trunk; ``active`` selects the head that acts."""

    def __init__(self, base: DiscretePolicy, k: int, prior_scale: float = 0.0, trunk: Optional[nn.Module] = None):
        super().__init__()
        if not isinstance(base, DiscretePolicy) or base.backward:
            raise TypeError("Thompson sampling needs a discrete forward policy (DiscretePolicy) to copy into heads")
        if int(k) < 2:
            raise ValueError(f"an ensemble needs at least 2 heads, got {k}")
        if not prior_scale >= 0.0:
            raise ValueError(f"the randomized-prior scale must be >= 0, got {prior_scale}")
        self.env = base.env
        self.backward = False
        heads = [base.head]
        for _ in range(int(k) - 1):  # fresh initialisations: the ensemble's prior diversity
            heads.append(_fresh(base.head))
        self.heads = nn.ModuleList(heads)
        #: weight of the randomized prior added to every head's logits (0: none)
        self.prior_scale = float(prior_scale)
        if self.prior_scale > 0:  # frozen random functions, one per head, on a frozen random trunk
            self.prior_trunk = _fresh(trunk, frozen=True) if trunk is not None else None
            self.prior_heads = nn.ModuleList([_fresh(base.head, frozen=True) for _ in range(int(k))])
        #: index of the head that acts, or None for the mixture of all heads
        self.active: Optional[int] = None

    @property
    def k(self) -> int:
        """Number of heads."""
        return len(self.heads)

    def mask(self, states: States) -> torch.Tensor:
        """Allowed forward actions at ``states``."""
        return self.env.forward_mask(states)

    @contextlib.contextmanager
    def use(self, head: Optional[int]):
        """Let ``head`` act inside the ``with`` block (None: the mixture)."""
        old, self.active = self.active, head
        try:
            yield self
        finally:
            self.active = old

    def forward(self, h: torch.Tensor, states: States) -> MaskedCategorical:
        """The active head's distribution, or the mixture of all heads when none is active."""
        mask = self.mask(states)
        if self.active is not None:
            return MaskedCategorical(self.head_logits(self.active, h, states), mask)
        hp = self._prior_features(states)
        logps = torch.stack([torch.log_softmax(self.head_logits(j, h, states, hp).masked_fill(~mask, float("-inf")), -1)
                             for j in range(self.k)])
        mix = torch.logsumexp(logps, 0) - torch.log(torch.tensor(float(self.k)))
        return MaskedCategorical(mix.masked_fill(~mask, 0.0), mask)

    def _prior_features(self, states: States) -> Optional[torch.Tensor]:
        """The frozen prior trunk's encoding of ``states`` (None without a prior)."""
        if self.prior_scale == 0:
            return None
        with torch.no_grad():
            x = self.env.featurize(states)
            return _call(self.prior_trunk, x) if self.prior_trunk is not None else x

    def head_logits(self, j: int, h: torch.Tensor, states: States, hp: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits of head ``j``: ``head_j(h)``, plus ``prior_scale * prior_j`` with a randomized prior."""
        out = _call(self.heads[j], h)
        if self.prior_scale == 0:
            return out
        if hp is None:
            hp = self._prior_features(states)
        with torch.no_grad():
            prior = _call(self.prior_heads[j], hp)
        return out + self.prior_scale * prior


def ensemble_of(model: GFlowNet) -> EnsemblePolicy:
    """The model's :class:`EnsemblePolicy` (raises when it has none)."""
    if not isinstance(model.pf, EnsemblePolicy):
        raise ValueError("this model has no Thompson-sampling ensemble (use install_thompson or make_thompson)")
    return model.pf


class HeadLogZ(nn.Module):
    """One learned log Z per ensemble head; the active head's is used (their mean for the mixture)."""

    def __init__(self, ensemble: EnsemblePolicy, init: float = 0.0):
        super().__init__()
        self.cond_dim = 0
        self.values = nn.Parameter(torch.full((ensemble.k,), float(init)))
        self.__dict__["_ensemble"] = ensemble  # a reference, not a submodule (its parameters live in P_F)

    def forward(self, n: int, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log Z of the active head for ``n`` trajectories (mean over heads when none is active)."""
        j = self._ensemble.active
        v = self.values.mean() if j is None else self.values[j]
        return v.expand(n)


def make_thompson(model: GFlowNet, k: int, prior_scale: float = 0.0, head_log_z: bool = False) -> GFlowNet:
    """Replace the model's P_F by a ``k``-head :class:`EnsemblePolicy` (in place; returns the model);
    ``prior_scale > 0`` adds randomized priors, ``head_log_z`` gives each head its own log Z."""
    if (prior_scale > 0 or head_log_z) and model.cond_dim > 0:
        raise ValueError("randomized priors and per-head log Z are not supported for conditional models")
    if head_log_z and (model.log_z.cond_dim > 0 or not hasattr(model.log_z, "value")):
        raise ValueError("per-head log Z needs the model's scalar log Z")
    model.pf = EnsemblePolicy(model.pf, k, prior_scale=prior_scale, trunk=model.trunk)
    if head_log_z:
        model.log_z = HeadLogZ(model.pf, float(model.log_z.value.detach()))
    return model


def bootstrap_masks(n: int, k: int, p: float, generator: Optional[torch.Generator] = None,
                    device="cpu") -> torch.Tensor:
    """Boolean ``[n, k]``: trajectory ``b`` trains head ``k`` with probability ``p`` (independently)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"bootstrap probability must be in (0, 1], got {p}")
    return torch.rand(n, k, generator=generator, device=device) < p


class ThompsonSampler(Sampler):
    """A :class:`Sampler` that rolls out each trajectory with one head drawn uniformly at random."""

    #: head of each trajectory of the last :meth:`sample` call (for inspection and tests)
    last_heads: Optional[torch.Tensor] = None

    def sample(self, n: int, cond: Optional[torch.Tensor] = None, exploration=None, keep_log_probs: bool = False,
               generator: Optional[torch.Generator] = None, initial_states=None) -> TrajectoryBatch:
        """Sample ``n`` trajectories; trajectory ``b`` is rolled out by head ``heads[b]``."""
        ens = ensemble_of(self.model)
        heads = torch.randint(ens.k, (n,), generator=generator, device=self.env.device)
        parts, order = [], []
        for j in range(ens.k):  # one batched rollout per head
            idx = (heads == j).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            with ens.use(j):
                parts.append(super().sample(
                    idx.numel(), cond=None if cond is None else cond[idx], exploration=exploration,
                    keep_log_probs=keep_log_probs, generator=generator,
                    initial_states=None if initial_states is None else initial_states[idx]))
            order.append(idx)
        batch = TrajectoryBatch.cat(parts)
        batch = batch.select(torch.argsort(torch.cat(order)))  # back to the caller's order
        self.last_heads = heads
        batch.info["thompson_heads"] = heads
        return batch


class ThompsonObjective:
    """Wraps an objective: the mean over heads of the objective on each head's bootstrap sample."""

    def __init__(self, objective, p: float = 0.5, generator: Optional[torch.Generator] = None):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"bootstrap probability must be in (0, 1], got {p}")
        self.objective, self.p, self.generator = objective, float(p), generator
        #: bootstrap masks of the last batch (for inspection and tests)
        self.last_masks: Optional[torch.Tensor] = None

    def __getattr__(self, name):
        if name == "objective":
            raise AttributeError(name)
        return getattr(self.objective, name)

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """``(1/K') sum_k L(head k, trajectories with mask[:, k])`` over the K' heads with data."""
        ens = ensemble_of(model)
        masks = bootstrap_masks(batch.batch_size, ens.k, self.p, self.generator, batch.ptr.device)
        self.last_masks = masks
        keep_pf = batch.log_pf is not None and batch.log_pf.requires_grad
        if keep_pf:  # kept log-probs belong to the sampling head, not to every head
            batch = batch.with_(log_pf=None)
        losses = []
        for j in range(ens.k):
            idx = masks[:, j].nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            with ens.use(j):
                losses.append(self.objective.loss(model, batch.select(idx)))
        if not losses:  # no head drew a trajectory: a zero on the graph
            with ens.use(0):
                return self.objective.loss(model, batch) * 0.0
        return torch.stack(losses).mean()

    def __call__(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        return self.loss(model, batch)

    def __repr__(self) -> str:
        return f"ThompsonObjective({self.objective!r}, p={self.p})"


def install_thompson(trainer, k: int, p: float = 0.5, prior_scale: float = 0.0, head_log_z: bool = False) -> None:
    """Convert ``trainer`` to TS-GFN: ensemble P_F, head-per-trajectory sampling, bootstrap losses
    (``prior_scale``, ``head_log_z``: the authors' randomized priors and per-head log Z)."""
    if isinstance(trainer.model.pf, EnsemblePolicy):
        raise ValueError("the model already has a Thompson-sampling ensemble")
    make_thompson(trainer.model, k, prior_scale=prior_scale, head_log_z=head_log_z)
    s = trainer.sampler
    trainer.sampler = ThompsonSampler(s.env, trainer.model, max_steps=s.max_steps, validate=s.validate)
    trainer.objective = ThompsonObjective(trainer.objective, p)
    trainer.rebuild_optimizer()


def parse_exploration(spec: str) -> Optional[tuple[int, float, float, bool]]:
    """``"none"`` -> None; ``"thompson:K[,p][,prior=BETA][,logz=head|shared]"`` ->
    (K, p, prior scale, per-head log Z); p defaults to 0.5, no prior, shared log Z."""
    spec = (spec or "none").strip().lower()
    if spec == "none":
        return None
    name, _, args = spec.partition(":")
    usage = f"--exploration must be none or thompson:K[,p][,prior=BETA][,logz=head|shared], got {spec!r}"
    if name != "thompson" or not args:
        raise ValueError(usage)
    parts = args.split(",")
    plain = [q for q in parts if "=" not in q]
    opts = dict(q.split("=", 1) for q in parts if "=" in q)
    if len(plain) not in (1, 2) or parts[:len(plain)] != plain or set(opts) - {"prior", "logz"} \
            or len(opts) != len(parts) - len(plain) or opts.get("logz", "shared") not in ("head", "shared"):
        raise ValueError(usage)
    try:
        k = int(plain[0])
        p = float(plain[1]) if len(plain) > 1 else 0.5
        prior = float(opts.get("prior", 0.0))
    except ValueError:
        raise ValueError(f"--exploration thompson:K[,p] needs an integer K and numbers p, BETA, got {spec!r}") from None
    if k < 2 or not 0.0 < p <= 1.0 or not prior >= 0.0:
        raise ValueError(f"--exploration thompson:K[,p] needs K >= 2, 0 < p <= 1 and prior >= 0, got {spec!r}")
    return k, p, prior, opts.get("logz", "shared") == "head"


def apply_exploration_flags(cfg, trainer) -> None:
    """Install ``--exploration thompson:K[,p]`` and ``--intrinsic rnd:eta[,edge|state]`` on a trainer
    (before a checkpoint is restored: the ensemble heads are part of the model)."""
    from gfn.errors import ConfigError
    from gfn.intrinsic import install_intrinsic, parse_intrinsic
    try:
        ts = parse_exploration(getattr(cfg, "exploration", "none"))
        rnd = parse_intrinsic(getattr(cfg, "intrinsic", "none"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if ts is not None:
        if trainer.batch_source is not None:
            raise ConfigError("--exploration thompson cannot be combined with --local-search-protocol paper "
                              "(its rounds sample with the plain policy)")
        install_thompson(trainer, *ts)
    if rnd is not None:
        if getattr(cfg, "resume", ""):
            raise ConfigError("--intrinsic cannot be resumed: the RND predictor and its optimiser are not checkpointed")
        install_intrinsic(trainer, *rnd)
