"""Dedicated trainer for diffusion samplers (fixed-length continuous trajectories, issue #19).

The generic trainer handles variable-length trajectories of packed states; here every trajectory
has exactly T steps, so a batch is a dense ``(B, T + 1, d)`` tensor and one iteration is: a rollout
(T batched steps; under ``torch.no_grad`` for the off-policy objectives), one network pass over all
``B * T`` states to score it, the loss, one Adam step.  ``pis`` instead back-propagates through the
reparametrised rollout.

Protocol options follow Sendera et al. 2024 (GFNOrg/gfn-diffusion):

* ``exploration``: extra forward standard deviation during sampling, decayed linearly to 0 at
  ``exploration_decay`` iterations (authors: 5000 of 25,000; default here ``min(5000,
  iterations // 2)``); log P_F is always evaluated without it.
* ``local_search``: even iterations train on forward trajectories whose terminal states go into a
  rank-prioritised buffer; odd iterations train TB on backward (Brownian-bridge) trajectories from
  samples of a second buffer that is refilled every ``ls_cycle`` iterations with the accepted
  post-burn-in proposals of ``ls_steps`` MALA steps started from buffer samples
  (:mod:`gfn.envs.diffusion.local_search`).
* ``keep_log_pf``: forward (on-policy) iterations take log P_F, with its graph, from the rollout
  itself (one network pass and one backward, as the authors' ``get_trajectory_fwd``) instead of
  re-scoring the sampled states in one batched pass (``False``); the two draw the same samples and
  give the same losses and gradients (float64, tests/test_diffusion_keep.py; in float32 they differ
  by rounding), and keeping is ~10 % less CPU time at 25GMM T = 100, B = 300, so it is the default.
  Backward (local-search) iterations always re-score.
* learning rates: policy ``lr`` 1e-3, log Z ``lr_log_z`` 1e-1 (TB / VarGrad), the flow head
  ``lr_flow`` 1e-2 (DB / SubTB / FL-SubTB) and a learned backward kernel's head ``lr_back``
  (default ``lr``, the authors' ``--lr_back 1e-3``).  A learned backward kernel is trained by the
  same loss (its log P_B enters TB / VarGrad / DB / SubTB; gradient through ``log_pb``).

:meth:`DiffusionTrainer.evaluate` gives ``log_z_elbo``, ``log_z_iw``, ``ess`` from forward samples
(:func:`gfn.metrics.estimated.log_z_from_log_weights`), ``log_z_eubo`` from backward trajectories of
exact target samples, the ``delta_log_z*`` against the true log Z, and ``w2`` (squared, POT).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, asdict
from typing import Optional

import torch

from gfn.metrics.estimated import log_z_from_log_weights
from gfn.objectives import diffusion as obj

from .env import DiffusionEnv
from .local_search import RankBuffer, mala
from .policy import DiffusionPolicy
from .sampler import rollout, sample_backward, score_path


@dataclass
class DiffusionConfig:
    """Training options (see the module docstring)."""

    objective: str = "tb"
    iterations: int = 1000
    batch_size: int = 300
    lr: float = 1e-3
    lr_log_z: Optional[float] = None  # 1e-1 for tb/vargrad/pis; 1e-2 for db/subtb/fl-subtb
    lr_flow: float = 1e-2
    lr_back: Optional[float] = None
    exploration: float = 0.0
    exploration_decay: Optional[int] = None
    local_search: bool = False
    ls_cycle: int = 100
    ls_steps: int = 200
    ls_burn_in: int = 100
    ls_step_size: float = 0.1
    ls_target_accept: float = 0.574
    buffer_size: int = 600_000
    rank_weight: float = 0.01
    subtb_lambda: float = 2.0
    seed: int = 0
    keep_log_pf: bool = True  # forward iterations: log P_F from the rollout's own pass (False: rescore)

    def check(self) -> None:
        if self.objective not in obj.OBJECTIVES:
            raise ValueError(f"unknown diffusion objective {self.objective!r}; choose one of {obj.OBJECTIVES}")
        for k in ("iterations", "batch_size", "ls_cycle", "ls_steps", "buffer_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)!r}")
        if self.exploration < 0:
            raise ValueError(f"exploration must be >= 0, got {self.exploration!r}")
        if self.local_search and self.objective not in ("tb", "vargrad"):
            raise ValueError("local search trains TB on backward trajectories: use objective tb or vargrad")
        if self.local_search and self.ls_burn_in >= self.ls_steps:
            raise ValueError("ls_burn_in must be smaller than ls_steps")


class DiffusionTrainer:
    """Owns the env, policy, optimiser, buffers and generator of one run (one seed repeats it)."""

    def __init__(self, env: DiffusionEnv, policy: DiffusionPolicy, config: DiffusionConfig):
        config.check()
        if config.objective in ("db", "subtb", "fl-subtb") and not policy.has_flow:
            raise ValueError(f"objective {config.objective!r} needs a policy built with flow=True")
        self.env, self.policy, self.cfg = env, policy, config
        lr_z = config.lr_log_z
        if lr_z is None:
            lr_z = 1e-2 if config.objective in ("db", "subtb", "fl-subtb") else 1e-1
        self.opt = torch.optim.Adam(policy.param_groups(config.lr, lr_z, config.lr_flow, config.lr_back), lr=config.lr)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.coef = obj.subtb_coefficients(env.steps, config.subtb_lambda) \
            if config.objective in ("subtb", "fl-subtb") else None
        if config.local_search:
            self.buffer = RankBuffer(config.buffer_size, config.rank_weight)
            self.buffer_ls = RankBuffer(config.buffer_size, config.rank_weight)
        self.iteration = 0
        self.last_ls: dict = {}

    # ------------------------------------------------------------------------------------------
    def exploration_std(self, it: int) -> float:
        """Extra forward std at iteration ``it`` (linear decay to 0)."""
        e = self.cfg.exploration
        if e <= 0:
            return 0.0
        decay = self.cfg.exploration_decay
        if decay is None:
            decay = max(1, min(5000, self.cfg.iterations // 2))
        return e * max(0.0, 1.0 - it / decay)

    def _forward_loss(self, it: int):
        env, pol, cfg = self.env, self.policy, self.cfg
        if cfg.objective == "pis":
            out = rollout(env, pol, cfg.batch_size, self.gen, grad=True)
            return obj.pis_loss(out["log_pf"], out["log_pb"], out["log_r"], env.dim), out
        if cfg.keep_log_pf:  # exact: these are forward trajectories of the current parameters
            out = rollout(env, pol, cfg.batch_size, self.gen, exploration=self.exploration_std(it), keep=True)
            return self._loss(out["log_pf"], out["log_pb"], out["log_r"], out["xs"], out["emb"]), out
        out = rollout(env, pol, cfg.batch_size, self.gen, exploration=self.exploration_std(it))
        emb = pol.time_embeddings()
        log_pf, log_pb = score_path(env, pol, out["xs"], emb, out.get("grad_log_r"))
        return self._loss(log_pf, log_pb, out["log_r"], out["xs"], emb), out

    def _loss(self, log_pf, log_pb, log_r, xs, emb):
        o = self.cfg.objective
        if o == "tb":
            return obj.tb_loss(log_pf, log_pb, log_r, self.policy.log_z)
        if o == "vargrad":
            return obj.vargrad_loss(log_pf, log_pb, log_r)
        log_f = obj.flows(self.env, self.policy, xs, log_r, emb, forward_looking=(o == "fl-subtb"))
        if o == "db":
            return obj.db_loss(log_pf, log_pb, log_f)
        return obj.subtb_loss(log_pf, log_pb, log_f, self.coef)

    def _backward_loss(self, it: int):
        cfg = self.cfg
        if it % cfg.ls_cycle < 2 or len(self.buffer_ls) == 0:
            x0, _ = self.buffer.sample(cfg.batch_size, self.gen)
            res = mala(x0, self.env.log_reward, cfg.ls_steps, cfg.ls_step_size, cfg.ls_target_accept,
                       generator=self.gen, collect_after=cfg.ls_burn_in)
            if res.collected_x is not None and res.collected_x.shape[0] > 0:
                self.buffer_ls.add(res.collected_x, res.collected_log_r)
            else:
                self.buffer_ls.add(res.x, res.log_r)
            self.last_ls = {"ls_accept_rate": res.accept_rate, "ls_step_size": res.step_size}
        x, log_r = self.buffer_ls.sample(cfg.batch_size, self.gen)
        xs = sample_backward(self.env, self.policy, x.to(self.policy.log_z.dtype), self.gen)
        emb = self.policy.time_embeddings()
        log_pf, log_pb = score_path(self.env, self.policy, xs, emb)
        return self._loss(log_pf, log_pb, self.env.log_reward(xs[:, -1]).detach(), xs, emb)

    def step(self) -> float:
        """One training iteration; returns the loss."""
        it = self.iteration
        self.opt.zero_grad(set_to_none=True)
        if self.cfg.local_search and it % 2 == 1 and len(self.buffer) > 0:
            loss = self._backward_loss(it)
        else:
            loss, out = self._forward_loss(it)
            if self.cfg.local_search:
                self.buffer.add(out["xs"][:, -1].detach(), out["log_r"].detach())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite diffusion loss at iteration {it}: {float(loss)}")
        loss.backward()
        self.opt.step()
        self.iteration += 1
        return float(loss.detach())

    def train(self, iterations: Optional[int] = None, callback=None) -> list:
        """Run ``iterations`` steps (default the config's); ``callback(trainer, it, loss)`` after each."""
        losses = []
        for _ in range(self.cfg.iterations if iterations is None else iterations):
            losses.append(self.step())
            if callback is not None:
                callback(self, self.iteration, losses[-1])
        return losses

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` terminal samples of the trained forward policy (no exploration)."""
        return rollout(self.env, self.policy, n, generator or self.gen)["xs"][:, -1]

    def evaluate(self, n: int = 2000, generator: Optional[torch.Generator] = None, w2: bool = True) -> dict:
        """Estimated metrics of docs/diffusion.md from ``n`` forward samples (and ``n`` exact target
        samples for EUBO and W2 when the target has a sampler)."""
        g = generator if generator is not None else torch.Generator().manual_seed(self.cfg.seed + 10_007)
        env, pol = self.env, self.policy
        with torch.no_grad():
            out = rollout(env, pol, n, g)
        log_w = out["log_r"] + out["log_pb"].sum(-1) - out["log_pf"].sum(-1)
        m = log_z_from_log_weights(log_w)
        m["log_z_learned"] = float(pol.log_z.detach())
        true = env.log_z
        m["log_z_true"] = true
        m["delta_log_z"] = abs(m["log_z_elbo"] - true) if true is not None else None
        m["delta_log_z_iw"] = abs(m["log_z_iw"] - true) if true is not None else None
        m["log_z_eubo"] = m["delta_log_z_eubo"] = m["w2"] = None
        exact = None
        if env.target is not None:
            try:
                exact = env.target.sample(n, generator=g)
            except NotImplementedError:
                exact = None
        if exact is not None:
            exact = exact.to(out["xs"].dtype)
            with torch.no_grad():
                xs = sample_backward(env, pol, exact, g)
                log_pf, log_pb = score_path(env, pol, xs)
            eubo = float((env.log_reward(exact) + log_pb.sum(-1) - log_pf.sum(-1)).double().mean())
            m["log_z_eubo"] = eubo
            m["delta_log_z_eubo"] = abs(eubo - true) if true is not None else None
            if w2:
                from gfn.metrics.samples import w2_squared
                m["w2"] = w2_squared(out["xs"][:, -1], exact)
        m["samples"] = out["xs"][:, -1]
        m["exact_samples"] = exact
        return m

    def config_dict(self) -> dict:
        return asdict(self.cfg)
