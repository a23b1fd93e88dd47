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


class EnsemblePolicy(nn.Module):
    """``K`` forward-policy heads on a shared trunk; ``active`` selects the head that acts."""

    def __init__(self, base: DiscretePolicy, k: int):
        super().__init__()
        if not isinstance(base, DiscretePolicy) or base.backward:
            raise TypeError("Thompson sampling needs a discrete forward policy (DiscretePolicy) to copy into heads")
        if int(k) < 2:
            raise ValueError(f"an ensemble needs at least 2 heads, got {k}")
        self.env = base.env
        self.backward = False
        heads = [base.head]
        for _ in range(int(k) - 1):  # fresh initialisations: the ensemble's prior diversity
            h = copy.deepcopy(base.head)
            _reset(h)
            heads.append(h)
        self.heads = nn.ModuleList(heads)
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
            return MaskedCategorical(_call(self.heads[self.active], h), mask)
        logps = torch.stack([torch.log_softmax(_call(m, h).masked_fill(~mask, float("-inf")), -1) for m in self.heads])
        mix = torch.logsumexp(logps, 0) - torch.log(torch.tensor(float(self.k)))
        return MaskedCategorical(mix.masked_fill(~mask, 0.0), mask)


def ensemble_of(model: GFlowNet) -> EnsemblePolicy:
    """The model's :class:`EnsemblePolicy` (raises when it has none)."""
    if not isinstance(model.pf, EnsemblePolicy):
        raise ValueError("this model has no Thompson-sampling ensemble (use install_thompson or make_thompson)")
    return model.pf


def make_thompson(model: GFlowNet, k: int) -> GFlowNet:
    """Replace the model's P_F by a ``k``-head :class:`EnsemblePolicy` (in place; returns the model)."""
    model.pf = EnsemblePolicy(model.pf, k)
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


def install_thompson(trainer, k: int, p: float = 0.5) -> None:
    """Convert ``trainer`` to TS-GFN: ensemble P_F, head-per-trajectory sampling, bootstrap losses."""
    from gfn.trainer import make_optimizer
    if isinstance(trainer.model.pf, EnsemblePolicy):
        raise ValueError("the model already has a Thompson-sampling ensemble")
    make_thompson(trainer.model, k)
    s = trainer.sampler
    trainer.sampler = ThompsonSampler(s.env, trainer.model, max_steps=s.max_steps, validate=s.validate)
    trainer.objective = ThompsonObjective(trainer.objective, p)
    c = trainer.config
    trainer.optimizer = make_optimizer(trainer.model, c.lr, c.lr_log_z, c.weight_decay, c.amsgrad)
    trainer._clip_model = None  # the parameter list changed


def parse_exploration(spec: str) -> Optional[tuple[int, float]]:
    """``"none"`` -> None; ``"thompson:K"`` or ``"thompson:K,p"`` -> (K, p) (p defaults to 0.5)."""
    spec = (spec or "none").strip().lower()
    if spec == "none":
        return None
    name, _, args = spec.partition(":")
    if name != "thompson" or not args:
        raise ValueError(f"--exploration must be none or thompson:K[,p], got {spec!r}")
    parts = args.split(",")
    try:
        k = int(parts[0])
        p = float(parts[1]) if len(parts) > 1 else 0.5
    except ValueError:
        raise ValueError(f"--exploration thompson:K[,p] needs an integer K and a number p, got {spec!r}") from None
    if k < 2 or not 0.0 < p <= 1.0 or len(parts) > 2:
        raise ValueError(f"--exploration thompson:K[,p] needs K >= 2 and 0 < p <= 1, got {spec!r}")
    return k, p


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
