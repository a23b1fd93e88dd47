"""Train a GFlowNet on the Ising model (L x L periodic lattice, one spin set per step).

    python examples/train_ising.py --L 3 --objective tb --seed 0 --out runs/ising3
    python examples/train_ising.py --L 6 --J 0.44 --out runs/ising6      # the benchmark setting

Target: p(x) proportional to exp(-E(x)) with E(x) = -J sum_i x_i (x_right + x_down) - h sum_i x_i.
Writes ``<out>/metrics.json`` with

* ``tv_exact`` / ``jsd_exact`` / ``kl_exact`` (exact terminal distribution of P_F over all 3^(L^2)
  partial states) when L^2 <= ``--max-exact-sites`` (default 9, i.e. up to 3x3);
* ``tv_empirical`` (histogram of ``--n-eval`` samples vs the exact target over the 2^(L^2)
  configurations) when L^2 <= 16;
* energy statistics of ``--n-eval`` samples: ``energy_mean`` / ``energy_std`` (per site),
  ``abs_m_mean``, ``m2_mean`` (magnetisation per site), and the exact ``energy_exact``,
  ``m2_exact``, ``log_z_true`` (transfer matrix), plus ``log_z_error``;
* the estimated metrics of every example (docs/metrics.md): ``log_z_elbo``, ``log_z_iw``, ``ess``,
  ``log_z_eubo`` (L^2 <= 16), ``delta_log_z_*``, ``pearson_log_p_log_r``, ``spearman_log_p_log_r``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gfn import metrics
from gfn.config import RunConfig, parse_config
from gfn.envs import Ising
from gfn.envs.ising import energy_stats, ising_exact_stats
from gfn.metrics.estimated import EstimatedMetrics, exact_target_sampler
from gfn.runner import run


@dataclass
class IsingConfig(RunConfig):
    """Shared flags (with the Ising budget as defaults) plus the lattice parameters."""

    iterations: int = field(default=2000, metadata={"help": "training iterations"})
    batch_size: int = field(default=64, metadata={"help": "trajectories per iteration"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the networks"})
    lr_log_z: float = field(default=0.1, metadata={"help": "learning rate of log Z"})
    L: int = field(default=6, metadata={"help": "lattice side (L x L spins, periodic)"})
    J: float = field(default=0.44, metadata={"help": "coupling (J > 0 ferromagnetic)"})
    h: float = field(default=0.0, metadata={"help": "external field"})
    n_eval: int = field(default=10_000, metadata={"help": "configurations sampled for the final metrics"})
    max_exact_sites: int = field(default=9, metadata={"help": "compute tv_exact when L^2 <= this (3^(L^2) states)"})


def make_metrics(env: Ising, cfg: IsingConfig):
    """Exact / empirical distances to the target and energy statistics of samples."""
    exact = ising_exact_stats(env.L, env.J, env.h) if env.L <= 12 else None
    target = None
    if env.n <= 16:
        target = torch.softmax(env.log_reward(env.enumerate_terminal_states()).double(), 0)
    # log Z bounds, ESS, log p-hat vs log R; exact target samples (hence log_z_eubo) up to 4x4
    estimated = EstimatedMetrics(env, target_sampler=exact_target_sampler(env) if env.n <= 16 else None,
                                 log_z_true=exact["log_z"] if exact is not None else None, seed=cfg.seed)

    def metrics_fn(trainer) -> dict:
        m = estimated(trainer)
        if env.n <= cfg.max_exact_sites:
            m.update(metrics.exact_metrics(env, trainer.model))
        parts = []
        for start in range(0, cfg.n_eval, 10_000):
            parts.append(trainer.sampler.sample(min(10_000, cfg.n_eval - start)).terminal_states)
        x = torch.cat(parts)
        m.update(energy_stats(env, x))
        if target is not None:
            p = metrics.empirical_distribution(env.terminal_index(x), target.numel())
            m["tv_empirical"] = metrics.tv(p, target)
        log_z = float(trainer.model.log_z.value.detach())
        if exact is not None:
            m.update({"energy_exact": exact["mean_energy"], "m2_exact": exact["mean_m2"],
                      "log_z_true": exact["log_z"], "log_z_error": abs(log_z - exact["log_z"])})
        m["n_eval"] = cfg.n_eval
        return m

    metrics_fn.hooks = [] if estimated.target_sampler is not None else [estimated.hook]  # test set survives resume
    return metrics_fn


def main(argv=None) -> dict:
    cfg = parse_config(IsingConfig, argv, description=__doc__.split("\n")[0])
    env = Ising(cfg.L, cfg.J, cfg.h, device=cfg.device)
    metrics_fn = make_metrics(env, cfg)
    result = run(cfg, env, metrics_fn, hooks=metrics_fn.hooks, name=f"ising{cfg.L}")
    keys = ("tv_exact", "tv_empirical", "energy_mean", "energy_exact", "m2_mean", "m2_exact", "log_z", "log_z_true",
            "wall_s")
    print({k: result.get(k) for k in keys if k in result})
    return result


if __name__ == "__main__":
    main()
