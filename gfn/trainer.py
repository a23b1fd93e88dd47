"""The one generic training loop: sample -> loss -> optimiser step, with hooks.

Extension points (used by conditioning, local search, logging, checkpointing):

* ``cond_fn(n) -> Tensor [n, c]``: draws a conditioning vector per trajectory;
* ``batch_hooks``: callables ``(trainer, batch) -> batch`` applied after sampling
  (e.g. reward tempering, local search);
* ``hooks``: callables ``(trainer, iteration, info)`` called after every step
  (metrics, logging, checkpoints);
* ``grad_hooks``: callables ``(trainer)`` called after ``loss.backward()`` and before
  gradient clipping (e.g. the all-reduce of :mod:`gfn.distributed`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from gfn.check_base import add_check_env_hint
from gfn.estimators import GFlowNet
from gfn.replay import make_replay
from gfn.sampler import Exploration, Sampler
from gfn.trajectories import TrajectoryBatch


@dataclass
class TrainerConfig:
    """Hyper-parameters of the generic loop."""

    batch_size: int = 16
    lr: float = 1e-3
    lr_log_z: float = 0.1
    grad_clip: Optional[float] = 10.0
    temperature: float = 1.0
    epsilon: float = 0.0
    replay_capacity: int = 0
    replay_fraction: float = 0.5
    replay_prioritized: bool = False  # shorthand for replay_policy="top"
    #: "fifo", "top" (keep the highest rewards) or "prioritized" (half from the top 10%, papers)
    replay_policy: str = "fifo"
    #: True: every batch has ``batch_size`` fresh trajectories and the replayed ones come on top
    #: (``replay_fraction`` of the whole batch, as the papers' online + offline batches);
    #: False: the replayed ones replace part of the ``batch_size``
    replay_extra: bool = False
    keep_log_probs: bool = False
    weight_decay: float = 0.0
    #: Adam with AMSGrad (see :func:`make_optimizer`); False gives plain Adam
    amsgrad: bool = True


def make_optimizer(model: GFlowNet, lr: float, lr_log_z: float, weight_decay: float = 0.0,
                   amsgrad: bool = True) -> torch.optim.Optimizer:
    """Adam with a separate learning rate for the log Z parameters.

    ``amsgrad`` (default) divides by the running *maximum* of Adam's second-moment estimate.
    With plain Adam, once a GFlowNet fits its target the gradients shrink, the second moment
    decays with them and every step grows back to about ``lr`` per weight however small the
    loss is: the run leaves its optimum again (hypergrid 2-D h8, TB, README settings: tv 0.0008
    at 1200 iterations, 0.045 at 1600, loss 3e-5 -> 2e-2).  With the maximum the steps keep
    shrinking with the gradients (benchmarks/long_run_stability.py)."""
    log_z_ids = {id(p) for p in model.log_z.parameters()}
    rest = [p for p in model.parameters() if id(p) not in log_z_ids and p.requires_grad]
    groups = [{"params": rest, "lr": lr, "name": "model"}]
    if log_z_ids:
        groups.append({"params": list(model.log_z.parameters()), "lr": lr_log_z, "name": "log_z"})
    try:  # the fused kernel (CPU and CUDA) is one op per step instead of ~8 per parameter
        return torch.optim.Adam(groups, weight_decay=weight_decay, amsgrad=amsgrad, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(groups, weight_decay=weight_decay, amsgrad=amsgrad)


def clip_grad_norm(params: list, max_norm: float) -> torch.Tensor:
    """Scale gradients in place so their global L2 norm is at most ``max_norm`` (like
    :func:`torch.nn.utils.clip_grad_norm_`, without its per-call overhead); returns the norm."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp_(max=1.0))
    return total


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss or non-finite parameters at ``iteration``."""

    hint = "lower --lr or --lr-log-z (or keep --grad-clip on) and start again, or --resume the last good checkpoint"

    def __init__(self, iteration: int, what: str):
        super().__init__(f"training diverged at iteration {iteration}: {what}")
        self.iteration = iteration


@dataclass
class StepInfo:
    """What one training iteration produced."""

    loss: float
    batch: TrajectoryBatch
    timings: dict = field(default_factory=dict)


class Trainer:
    """Generic sampler-trainer loop for any env, model and objective."""

    def __init__(self, env, model: GFlowNet, objective, config: Optional[TrainerConfig] = None,
                 cond_fn: Optional[Callable[[int], torch.Tensor]] = None,
                 batch_hooks: Optional[list] = None, hooks: Optional[list] = None,
                 sampler: Optional[Sampler] = None, optimizer: Optional[torch.optim.Optimizer] = None):
        self.env = env
        self.model = model
        self.objective = objective
        self.config = config or TrainerConfig()
        self.sampler = sampler or Sampler(env, model)
        self.optimizer = optimizer or make_optimizer(model, self.config.lr, self.config.lr_log_z, self.config.weight_decay,
                                                     self.config.amsgrad)
        self.cond_fn = cond_fn
        self.batch_hooks = list(batch_hooks or [])
        self.hooks = list(hooks or [])
        self.grad_hooks: list = []  # (trainer) -> None, after backward, before clipping
        c = self.config
        policy = "top" if c.replay_prioritized and c.replay_policy == "fifo" else c.replay_policy
        self.replay = make_replay(policy, c.replay_capacity) if c.replay_capacity > 0 else None
        self.iteration = 0
        self.n_samples = 0  # terminal objects sampled on-policy so far
        #: optional ``(trainer) -> TrajectoryBatch`` that replaces the sampling and replay of
        #: :meth:`sample_batch` (it counts ``n_samples`` itself), e.g. the local-search rounds
        #: of :class:`gfn.local_search.PaperRounds`; the batch hooks still run on its batches
        self.batch_source: Optional[Callable] = None

    # ------------------------------------------------------------------ one iteration
    def rebuild_optimizer(self) -> None:
        """A fresh optimiser over the model's current parameters (after a head was added or
        replaced, e.g. by Thompson-sampling ensembles or GAFN's flow head)."""
        c = self.config
        self.optimizer = make_optimizer(self.model, c.lr, c.lr_log_z, c.weight_decay, c.amsgrad)
        self._clip_model = None  # the clipper's cached parameter list is stale

    def sample_batch(self) -> TrajectoryBatch:
        """On-policy trajectories, plus backward-sampled replays when a buffer is used."""
        if self.batch_source is not None:
            batch = self.batch_source(self)
            for hook in self.batch_hooks:
                batch = hook(self, batch)
            return batch
        c = self.config
        n = c.batch_size
        replaying = self.replay is not None and len(self.replay) > 0
        if c.replay_extra:
            if not 0 <= c.replay_fraction < 1:
                raise ValueError(f"replay_extra needs 0 <= replay_fraction < 1, got {c.replay_fraction}")
            n_replay = int(round(n * c.replay_fraction / (1 - c.replay_fraction))) if replaying else 0
            n = n + n_replay
        else:
            n_replay = int(round(n * c.replay_fraction)) if replaying else 0
        n_fresh = n - n_replay
        cond = self.cond_fn(n) if self.cond_fn is not None else None
        exploration = Exploration(c.temperature, c.epsilon)
        # kept log-probs are exact only on-policy: no replayed rows, no noise, no temperature
        keep = c.keep_log_probs and n_replay == 0 and exploration.temperature == 1.0 and exploration.epsilon <= 0
        batch = self.sampler.sample(n_fresh, cond=None if cond is None else cond[:n_fresh],
                                    exploration=exploration, keep_log_probs=keep)
        self.n_samples += n_fresh
        if self.replay is not None:
            fresh_terminal = batch.terminal_states
            if n_replay > 0:
                states, log_r = self.replay.sample(n_replay)  # stored rewards: not evaluated again
                replayed = self.sampler.sample_backward(states, cond=None if cond is None else cond[n_fresh:],
                                                        log_rewards=log_r)
                if batch.log_pf is not None:
                    batch = batch.with_(log_pf=None)
                batch = TrajectoryBatch.cat([batch, replayed])
            self.replay.add(fresh_terminal, batch.log_rewards[:n_fresh])
        for hook in self.batch_hooks:
            batch = hook(self, batch)
        return batch

    def train_step(self) -> StepInfo:
        """Sample, compute the loss, back-propagate and step the optimiser."""
        t0 = time.perf_counter()
        if not self.model.training:  # .train() walks every sub-module: skip it when already set
            self.model.train()
        try:
            batch = self.sample_batch()
            t1 = time.perf_counter()
            loss = self.objective.loss(self.model, batch)
        except Exception as e:  # errors the environment caused point to `gfn check-env`
            add_check_env_hint(e, self.env)
            raise
        loss_value = float(loss.detach())  # the one host sync of the step
        if not math.isfinite(loss_value):
            raise TrainingDiverged(self.iteration + 1, f"the loss is {loss_value}")
        t2 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for hook in self.grad_hooks:
            hook(self)
        if self.config.grad_clip is not None:
            if getattr(self, "_clip_model", None) is not self.model:
                self._clip_model, self._clip_params = self.model, list(self.model.parameters())
            clip_grad_norm(self._clip_params, self.config.grad_clip)
        t3 = time.perf_counter()
        self.optimizer.step()
        t4 = time.perf_counter()
        self.iteration += 1
        info = StepInfo(loss_value, batch,
                        {"sample": t1 - t0, "loss": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3})
        for hook in self.hooks:
            hook(self, self.iteration, info)
        return info

    def train(self, iterations: int, progress: bool = False) -> list[float]:
        """Run ``iterations`` steps; returns the loss history."""
        losses = []
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=iterations, desc="train", dynamic_ncols=True)
        for _ in range(iterations):
            info = self.train_step()
            losses.append(info.loss)
            if bar is not None:
                bar.update(1)
                if self.iteration % 10 == 0:
                    bar.set_postfix(loss=f"{info.loss:.4f}")
        if bar is not None:
            bar.close()
        return losses

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict:
        """Everything needed to continue training exactly (model, optimiser, RNG, replay, counters)."""
        d = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
             "iteration": self.iteration, "n_samples": self.n_samples,
             "rng_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            d["rng_cuda"] = torch.cuda.get_rng_state_all()
        if self.replay is not None:
            d["replay"] = self.replay.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.iteration = int(d["iteration"])
        self.n_samples = int(d.get("n_samples", 0))
        torch.set_rng_state(d["rng_cpu"])
        if "rng_cuda" in d and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(d["rng_cuda"])
        if self.replay is not None and "replay" in d:
            self.replay.load_state_dict(d["replay"])
