"""``--condition pref|pref+beta`` on a trainer (run machinery): :func:`apply_preference_flags`
installs preference conditioning from :mod:`gfn.preferences` and returns the
:class:`PreferenceExtensions` whose metrics come from :mod:`gfn.metrics.multiobjective` (which
itself builds on :mod:`gfn.preferences`, so these two live above both)."""

from __future__ import annotations

import math

import torch

from gfn.beta import Constant, parse_beta_dist
from gfn.estimators import LogZ
from gfn.preferences import (PREF_MODES, SCALARIZATIONS, PreferenceLogZ, PreferenceSampler, PreferenceScalarization,
                             eval_conditions, is_multi_objective, with_default_preference)


class PreferenceExtensions:
    """What ``--condition pref|pref+beta`` installed; :meth:`metrics` writes the exact
    per-preference tv (``tv_exact_<pref>``, ``tv_exact_pref_mean``) on enumerable envs."""

    def __init__(self, mode: str, sampler: PreferenceSampler, hook: PreferenceScalarization, conds: torch.Tensor):
        self.mode, self.sampler, self.hook, self.conds = mode, sampler, hook, conds
        self.local_search = None
        self.eval_betas: list = []

    @property
    def active(self) -> bool:
        """Whether :meth:`metrics` adds anything (exact metrics need an enumerable env)."""
        return self.conds.numel() > 0

    def metrics(self, trainer) -> dict:
        """Exact per-preference tv (and log Z error of log Z(w, beta)) on enumerable envs."""
        if not getattr(trainer.env, "is_enumerable", False):
            return {}
        from gfn.metrics.multiobjective import exact_preference_metrics
        return exact_preference_metrics(trainer.env, trainer.model, self.conds, self.hook.method,
                                        self.hook.with_beta, self.hook.beta)


def apply_preference_flags(cfg, trainer) -> PreferenceExtensions:
    """Install ``--condition pref`` (``w ~ Dirichlet(--pref-alpha)``, fixed ``--pref-beta``) or
    ``pref+beta`` (beta ~ ``--beta-dist`` as well) on a trainer whose env has vector rewards.

    An unconditional model is rebuilt by the objective with the conditioning vector as extra
    input and a conditional log Z(w, beta); the optimiser follows.  Call before restoring a checkpoint.
    """
    from gfn.conditioning import check_objective_supports_tempering
    from gfn.trainer import make_optimizer
    mode = (getattr(cfg, "condition", "") or "").lower()
    if mode not in PREF_MODES:
        raise ValueError(f"apply_preference_flags handles --condition {'|'.join(PREF_MODES)}, got {mode!r}")
    env = trainer.env
    if not is_multi_objective(env):
        raise ValueError(f"--condition {mode} needs an environment with vector rewards (a MultiObjectiveReward); "
                         f"{type(env).__name__} has {type(getattr(env, 'reward', None)).__name__}")
    if getattr(cfg, "local_search", None):
        raise ValueError(f"--local-search is not available with --condition {mode} (its acceptance test "
                         "reads the scalar reward, not the preference-conditioned one)")
    k = env.reward.n_objectives
    with_beta = mode == "pref+beta"
    beta_dist = parse_beta_dist(getattr(cfg, "beta_dist", "uniform:1,3") or "uniform:1,3") if with_beta else None
    check_objective_supports_tempering(trainer.objective, beta_dist if with_beta else Constant(1.0))
    sampler = PreferenceSampler(k, float(getattr(cfg, "pref_alpha", 1.0)), beta_dist, getattr(cfg, "device", "cpu"))
    method = getattr(cfg, "scalarization", "weighted_sum") or "weighted_sum"
    pref_beta = float(getattr(cfg, "pref_beta", 1.0))
    if method not in SCALARIZATIONS:
        raise ValueError(f"--scalarization must be one of {SCALARIZATIONS}, got {method!r}")
    if not (pref_beta > 0 and math.isfinite(pref_beta)):
        raise ValueError(f"--pref-beta must be finite and > 0, got {pref_beta}")
    # the env's scalar reward (what the sampler records, replay stores and generic metrics read)
    # becomes the run's reward at the centre preference, where the model's default condition is
    env.reward.scalarization, env.reward.default_preference, env.reward.default_beta = method, None, pref_beta
    centre = torch.tensor([1.0 / k] * k + ([pref_beta] if with_beta else []))
    if trainer.model.cond_dim == 0:
        model = trainer.objective.build_model(env, hidden=cfg.hidden, n_layers=cfg.n_layers, shared_trunk=cfg.shared_trunk,
                                              uniform_pb=cfg.uniform_pb, cond_dim=sampler.cond_dim)
        if type(model.log_z) is LogZ and model.log_z.cond_dim == sampler.cond_dim:
            model.log_z = PreferenceLogZ(centre)
        model = with_default_preference(model, centre).to(cfg.device)
        trainer.model = model
        trainer.sampler.model = model
        c = trainer.config
        trainer.optimizer = make_optimizer(model, c.lr, c.lr_log_z, c.weight_decay, c.amsgrad)
    elif trainer.model.cond_dim != sampler.cond_dim:
        raise ValueError(f"the model takes conditioning vectors of width {trainer.model.cond_dim}; --condition {mode} "
                         f"with {k} objectives needs {sampler.cond_dim}")
    if trainer.cond_fn is None:
        trainer.cond_fn = sampler.bind(trainer)
    hook = PreferenceScalarization(method, with_beta, pref_beta)
    if any(getattr(h, "KEY", None) == PreferenceScalarization.KEY for h in trainer.batch_hooks):
        raise ValueError("the trainer already rewrites its rewards (a tempering or scalarisation hook is installed)")
    trainer.batch_hooks.append(hook)
    trainer.hooks.insert(0, hook.restore)
    betas = [float(b) for b in (getattr(cfg, "eval_betas", None) or [])] or [hook.beta]
    conds = eval_conditions(k, int(getattr(cfg, "eval_pref_steps", 10)), with_beta, betas)
    return PreferenceExtensions(mode, sampler, hook, conds.to(getattr(cfg, "device", "cpu")))
