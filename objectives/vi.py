"""Variational-inference objectives for GFlowNets (Malkin et al. 2023, "GFlowNets and variational
inference"), usable on every discrete environment.

A GFlowNet is a hierarchical variational model: P_F(tau) approximates the target
P*(tau) = P_B(tau | x) R(x) / Z.  With ``f(tau) = log P_F(tau) - log P_B(tau | x) - log R(x)``:

* ``reverse_kl`` minimises KL(P_F || P*) = E_{P_F}[f] + log Z.  Its gradient in P_F's parameters
  is the score-function (REINFORCE) estimator ``E[(f - b) grad log P_F(tau)]``, with a baseline
  ``b``: ``none`` (0), ``local`` (leave-one-out mean of f over the batch, unbiased) or ``global``
  (a moving average of f over past batches).  P_B, if learned, gets the pathwise gradient
  ``-E[grad log P_B]``.  On-policy, the expected gradient equals half the expected gradient of
  TB's squared residual in P_F's parameters, whatever log Z is (Malkin et al., Prop. 1).
* ``forward_kl`` (wake-sleep): P_F minimises KL(P* || P_F) with self-normalised importance
  weights ``w ~ R(x) P_B(tau | x) / q(tau)`` over the batch (the wake-phase update of the
  inference model); P_B maximises ``log P_B`` on the sampled trajectories (the wake-phase update
  of the generative model).
* ``rws`` (reweighted wake-sleep): both P_F and P_B take the self-normalised weights.

Sampling modes.  The trainer's options give them: on-policy (no exploration, no replay),
off-policy (``epsilon`` / ``temperature`` exploration) and replay (``replay_capacity``).  With
exploration, the behaviour policy q differs from P_F: when the batch carries the exploration
settings (the :class:`BehaviourRecorder` batch hook puts them in ``batch.info``), trajectories
sampled with exploration are importance weighted by ``P_F(tau) / q(tau)`` (``reverse_kl``, the
P_B update of ``forward_kl``) or use q in place of P_F in the weights (``forward_kl``, ``rws``).
Replayed trajectories come from a buffer whose distribution is unknown: they are used as if
sampled from P_F (no correction).  Without the hook every trajectory is treated as on-policy.

The loss value is the estimate of the divergence up to log Z (the gradient is the surrogate's).
:class:`GradientVariance` is a trainer hook that logs the variance of the per-trajectory gradient.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from gfn.env import DiscreteEnv, EnvError
from gfn.estimators import GFlowNet
from gfn.ops import segment_sum
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, register_objective
from gfn.objectives.common import as_bool, as_float

BASELINES = ("none", "local", "global")


class BehaviourRecorder:
    """Batch hook ``(trainer, batch) -> batch`` that records the exploration of the fresh
    trajectories in ``batch.info["behaviour"]`` (temperature, epsilon, number of fresh
    trajectories; replayed ones follow them), so the VI objectives can importance weight them."""

    def __init__(self):
        self._last: Optional[int] = None

    def __call__(self, trainer, batch: TrajectoryBatch) -> TrajectoryBatch:
        c = trainer.config
        # the trainer counts fresh samples; the first batch of a run has no replayed part
        n_fresh = batch.batch_size if self._last is None else trainer.n_samples - self._last
        self._last = trainer.n_samples
        batch.info["behaviour"] = {"temperature": float(c.temperature), "epsilon": float(c.epsilon),
                                   "n_fresh": max(0, min(int(n_fresh), batch.batch_size))}
        return batch


def behaviour_log_prob(model: GFlowNet, batch: TrajectoryBatch, temperature: float, epsilon: float) -> torch.Tensor:
    """Per row: log q(a | s) of the action taken under the exploration policy
    ``q = (1 - epsilon) softmax(logits / temperature) + epsilon uniform(allowed)``."""
    env = model.env
    if not isinstance(env, DiscreteEnv) or not env.transitions_are_actions:
        raise EnvError("importance weighting for exploration needs a discrete environment whose actions are its "
                       f"transitions; {type(env).__name__} is not one (train it on-policy)")
    with torch.no_grad():
        dist = model.pf_dist(batch.states, batch.cond_per_row())
        logits = dist.logits.double() / temperature
        log_soft = torch.log_softmax(logits, -1).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        if epsilon <= 0:
            return log_soft
        log_unif = -dist.mask.sum(-1).double().log()
        return torch.logaddexp(math.log1p(-epsilon) + log_soft, math.log(epsilon) + log_unif)


class _VIObjective(Objective):
    """Shared pieces: per-trajectory log P_F, log P_B, log R and the behaviour log-probability."""

    def __init__(self, importance: bool = True, **kw):
        super().__init__(**kw)
        self.importance = as_bool(importance, "importance")
        self.log_z_running = float("nan")  # moving estimate of log Z from the batches (for logging)

    def terms(self, model: GFlowNet, batch: TrajectoryBatch):
        """(log P_F(tau), log P_B(tau | x), log R(x), log q(tau) or None), per trajectory."""
        batch.require_whole(self.name or type(self).__name__)
        scores = model.evaluate(batch, pf=True, pb=True)
        log_pf = segment_sum(scores.log_pf, batch.ptr)
        log_pb = segment_sum(scores.log_pb, batch.ptr)
        log_r = self.log_rewards(batch).to(log_pf.dtype)
        log_q = None
        info = batch.info.get("behaviour")
        if self.importance and info is not None and (info["epsilon"] > 0 or info["temperature"] != 1.0):
            rows_q = behaviour_log_prob(model, batch, info["temperature"], info["epsilon"])
            log_q = segment_sum(rows_q, batch.ptr).to(log_pf.dtype)
            replayed = torch.arange(batch.batch_size, device=log_q.device) >= info["n_fresh"]
            log_q = torch.where(replayed, log_pf.detach(), log_q)  # replay: used as if on-policy
        return log_pf, log_pb, log_r, log_q

    def _track_log_z(self, log_w: torch.Tensor) -> None:
        est = float(torch.logsumexp(log_w, 0) - math.log(log_w.numel()))
        self.log_z_running = est if math.isnan(self.log_z_running) else 0.9 * self.log_z_running + 0.1 * est

    @torch.no_grad()
    def log_z_estimate(self, model: GFlowNet, cond: Optional[torch.Tensor] = None) -> float:
        """Moving average of the batches' importance-sampling estimates of log Z (NaN before training)."""
        return self.log_z_running

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Surrogate whose gradient is the objective's, with the divergence estimate as its value."""
        return self.surrogate(model, batch, update=True).mean()

    def surrogate(self, model: GFlowNet, batch: TrajectoryBatch, update: bool = False) -> torch.Tensor:
        """Per-trajectory terms whose batch mean is the loss; ``update`` advances running state."""
        raise NotImplementedError


@register_objective("reverse_kl")
class ReverseKL(_VIObjective):
    """KL(P_F || P_B R / Z) by the score-function gradient with a baseline (none | local | global)."""

    def __init__(self, baseline: str = "local", global_decay: float = 0.9, importance: bool = True, **kw):
        super().__init__(importance=importance, **kw)
        if baseline not in BASELINES:
            raise ValueError(f"reverse_kl baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
        self.baseline = baseline
        self.global_decay = as_float(global_decay, "global_decay", min_value=0.0)
        if self.global_decay >= 1:
            raise ValueError(f"global_decay must be < 1, got {self.global_decay}")
        self.global_value = float("nan")

    def surrogate(self, model: GFlowNet, batch: TrajectoryBatch, update: bool = False) -> torch.Tensor:
        """``w (f - b) log P_F(tau) - w log P_B(tau | x)`` per trajectory (w: importance weights,
        detached), shifted so that its mean is the batch estimate of E[f]."""
        log_pf, log_pb, log_r, log_q = self.terms(model, batch)
        f = (log_pf - log_pb - log_r).detach()
        w = torch.ones_like(f) if log_q is None else (log_pf.detach() - log_q).exp()
        n = f.numel()
        if self.baseline == "local" and n > 1:
            b = ((w * f).sum() - w * f) / (n - 1)  # leave-one-out: independent of trajectory i
        elif self.baseline == "global" and not math.isnan(self.global_value):
            b = torch.full_like(f, self.global_value)
        else:
            b = torch.zeros_like(f)
        if update:
            mean_f = float((w * f).mean())
            self.global_value = mean_f if math.isnan(self.global_value) else \
                self.global_decay * self.global_value + (1 - self.global_decay) * mean_f
            self._track_log_z(-f + (0 if log_q is None else log_pf.detach() - log_q))
        surr = w * (f - b) * log_pf - w * log_pb
        return surr - surr.detach() + w * f


def _snis(log_w: torch.Tensor) -> torch.Tensor:
    """Self-normalised importance weights (sum to 1 over the batch)."""
    return torch.softmax(log_w.detach(), 0)


@register_objective("forward_kl")
class ForwardKL(_VIObjective):
    """Wake-sleep: P_F by forward KL(P* || P_F) with self-normalised importance weights,
    P_B by maximum likelihood on the sampled trajectories."""

    def surrogate(self, model: GFlowNet, batch: TrajectoryBatch, update: bool = False) -> torch.Tensor:
        """``-B wbar log P_F(tau) - w_q log P_B(tau | x)`` per trajectory, valued ``B wbar (log R + log P_B - log P_F)``."""
        log_pf, log_pb, log_r, log_q = self.terms(model, batch)
        q = log_pf.detach() if log_q is None else log_q
        log_w = log_r + log_pb.detach() - q
        wbar = _snis(log_w) * log_w.numel()
        w_q = torch.ones_like(q) if log_q is None else (log_pf.detach() - log_q).exp()
        if update:
            self._track_log_z(log_w.detach())
        surr = -wbar * log_pf - w_q * log_pb
        value = wbar * (log_r + log_pb - log_pf).detach()
        return surr - surr.detach() + value


@register_objective("rws")
class ReweightedWakeSleep(_VIObjective):
    """Reweighted wake-sleep: P_F and P_B both maximise their log-likelihood of the sampled
    trajectories weighted by self-normalised importance weights ``R P_B / q``."""

    def surrogate(self, model: GFlowNet, batch: TrajectoryBatch, update: bool = False) -> torch.Tensor:
        """``-B wbar (log P_F(tau) + log P_B(tau | x))`` per trajectory."""
        log_pf, log_pb, log_r, log_q = self.terms(model, batch)
        q = log_pf.detach() if log_q is None else log_q
        log_w = log_r + log_pb.detach() - q
        wbar = _snis(log_w) * log_w.numel()
        if update:
            self._track_log_z(log_w.detach())
        surr = -wbar * (log_pf + log_pb)
        value = wbar * (log_r + log_pb - log_pf).detach()
        return surr - surr.detach() + value


class GradientVariance:
    """Trainer hook: every ``every`` iterations, the variance of the per-trajectory gradient of
    the objective (mean over parameters of the variance across ``groups`` disjoint sub-batches,
    times the sub-batch size), and the squared norm of the mean gradient.  Written to
    ``batch.info`` (so the runner logs ``train/grad_variance``) and kept in :attr:`history`."""

    def __init__(self, every: int = 100, groups: int = 4):
        if every < 1 or groups < 2:
            raise ValueError(f"GradientVariance needs every >= 1 and groups >= 2, got {every}, {groups}")
        self.every, self.groups = every, groups
        self.history: list[dict] = []

    def measure(self, model: GFlowNet, objective, batch: TrajectoryBatch) -> dict:
        """The gradient variance of ``objective`` on ``batch`` (parameters' gradients untouched)."""
        params = [p for p in model.parameters() if p.requires_grad]
        size = batch.batch_size // self.groups
        if size < 1:
            raise ValueError(f"GradientVariance: batch of {batch.batch_size} cannot be split into {self.groups} groups")
        grads = []
        for g in range(self.groups):  # a handful of backward passes (diagnostic, not the hot path)
            sub = batch.select(torch.arange(g * size, (g + 1) * size, device=batch.ptr.device))
            sub.info = dict(batch.info)
            if "behaviour" in sub.info:  # the groups re-slice the fresh / replayed split
                info = dict(sub.info["behaviour"])
                info["n_fresh"] = max(0, min(size, info["n_fresh"] - g * size))
                sub.info["behaviour"] = info
            fn = getattr(objective, "surrogate", None)
            loss = fn(model, sub, update=False).mean() if fn is not None else objective.loss(model, sub)
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            grads.append(torch.cat([(torch.zeros_like(p) if x is None else x).flatten() for p, x in zip(params, gs)]))
        G = torch.stack(grads).double()
        return {"grad_variance": float(G.var(0).mean() * size), "grad_mean_sq_norm": float(G.mean(0).pow(2).sum())}

    def __call__(self, trainer, iteration: int, info) -> None:
        if iteration % self.every:
            return
        m = self.measure(trainer.model, trainer.objective, info.batch)
        info.batch.info.update(m)
        self.history.append({"iteration": iteration, **m})
