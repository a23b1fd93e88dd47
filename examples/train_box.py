"""Train a GFlowNet on the 2-D Box (continuous corners reward) and report grid divergences.

    python examples/train_box.py --delta 0.25 --objective tb --seed 0 --out runs/box

The defaults are the acceptance budget: TB, delta 0.25, 3000 iterations of 128 trajectories
(batch-size x iterations = 384,000 trajectories).  Evaluation draws ``--n-eval`` terminal
states from the trained P_F (no exploration) and writes ``<out>/metrics.json`` with
``jsd_grid`` and ``tv_grid`` (histogram vs exact target on a ``--bins`` x ``--bins`` grid),
their floor for the same number of exact target samples (``*_reference``), ``w1`` / ``w2``
(pot, 2,000 points of each), ``log_z_true`` / ``log_z_error``, and the density plot
``<out>/density.png`` (samples | target), and the estimated metrics of docs/metrics.md
(``log_z_elbo``, ``log_z_iw``, ``ess``, ``log_z_eubo``, ``delta_log_z_*``, correlation of the
importance-sampled log density with log R).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from gfn.metrics import continuous as cm
from gfn.config import RunConfig, parse_config
from gfn.envs import Box
from gfn.metrics.estimated import EstimatedMetrics
from gfn.runner import run

BOUNDS = [(0.0, 1.0), (0.0, 1.0)]


@dataclass
class BoxConfig(RunConfig):
    """Shared flags (with the Box budget as defaults) plus the Box parameters."""

    iterations: int = field(default=3000, metadata={"help": "training iterations"})
    batch_size: int = field(default=128, metadata={"help": "trajectories per iteration"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the networks"})
    hidden: int = field(default=128, metadata={"help": "hidden width of the MLPs"})
    n_layers: int = field(default=3, metadata={"help": "hidden layers of the MLPs"})
    delta: float = field(default=0.25, metadata={"help": "step length (first move: radius <= delta)"})
    R0: float = field(default=0.1, metadata={"help": "base reward"})
    R1: float = field(default=0.5, metadata={"help": "outer-corner bonus"})
    R2: float = field(default=2.0, metadata={"help": "inner-ring bonus"})
    n_components: int = field(default=2, metadata={"help": "Beta mixture components of the arc moves"})
    n_components_s0: int = field(default=4, metadata={"help": "Beta mixture components of the first move"})
    min_concentration: float = field(default=0.5, metadata={"help": "lower bound of the Beta concentrations"})
    max_concentration: float = field(default=50.0, metadata={"help": "upper bound of the Beta concentrations"})
    n_eval: int = field(default=100_000, metadata={"help": "terminal states sampled for the final metrics"})
    bins: int = field(default=cm.DEFAULT_BINS, metadata={"help": "grid cells per axis of jsd_grid / tv_grid"})


def sample_terminal(trainer, n: int, chunk: int = 20_000) -> torch.Tensor:
    """``n`` terminal states from the current P_F, in chunks."""
    parts = []
    for start in range(0, n, chunk):
        parts.append(trainer.sampler.sample(min(chunk, n - start)).terminal_states)
    return torch.cat(parts)


def make_metrics(env: Box, cfg: BoxConfig):
    """Grid divergences (+ their exact-sample floor), W1/W2, log Z error; saves the density plot."""
    log_density = lambda x: env.reward.log_reward(x.to(torch.float32)).double()  # noqa: E731
    ref = cm.reference_divergences(log_density, BOUNDS, cfg.n_eval, cfg.bins, seed=cfg.seed)
    log_z_true = cm.log_integral(log_density, BOUNDS, cfg.bins)
    state = {}
    # log Z bounds, ESS, log p-hat (a density) vs log R; EUBO from exact target samples of the grid
    target = lambda n, g=None: cm.sample_grid_density(log_density, BOUNDS, n, cfg.bins, generator=g).float()  # noqa: E731
    estimated = EstimatedMetrics(env, target_sampler=target, log_z_true=log_z_true, seed=cfg.seed)

    def metrics_fn(trainer) -> dict:
        x = sample_terminal(trainer, cfg.n_eval)
        state["x"] = x
        m = estimated(trainer)
        m.update(cm.grid_divergences(x, log_density, BOUNDS, cfg.bins))
        m.update(ref)
        target = cm.sample_grid_density(log_density, BOUNDS, 2000, cfg.bins,
                                        generator=torch.Generator().manual_seed(cfg.seed + 1))
        m["w1"] = cm.wasserstein(x[:2000], target, p=1)
        m["w2"] = cm.wasserstein(x[:2000], target, p=2)
        log_z = float(trainer.model.log_z.value.detach())
        m.update({"log_z_true": log_z_true, "log_z_error": abs(log_z - log_z_true), "n_eval": cfg.n_eval,
                  "bins": cfg.bins})
        return m

    def images_fn(trainer) -> dict:
        x = state.get("x")
        if x is None:
            x = sample_terminal(trainer, 20_000)
        path = os.path.join(cfg.out, "density.png") if cfg.out else None
        return {"density/samples_vs_target": cm.density_plot(x, log_density, BOUNDS, cfg.bins, path=path,
                                                             title=f"Box delta={env.delta}")}

    return metrics_fn, images_fn


def main(argv=None) -> dict:
    cfg = parse_config(BoxConfig, argv, description=__doc__.split("\n")[0] + " Default budget (the acceptance "
                       "setting): TB, delta 0.25, seed 0, 3000 iterations x 128 trajectories.")
    env = Box(cfg.delta, cfg.R0, cfg.R1, cfg.R2, n_components=cfg.n_components,
              n_components_s0=cfg.n_components_s0, min_concentration=cfg.min_concentration,
              max_concentration=cfg.max_concentration, device=cfg.device)
    metrics_fn, images_fn = make_metrics(env, cfg)
    result = run(cfg, env, metrics_fn, images_fn=images_fn, name="box")
    print({k: result.get(k) for k in ("jsd_grid", "jsd_grid_reference", "tv_grid", "w1", "log_z", "log_z_true",
                                      "wall_s")})
    return result


if __name__ == "__main__":
    main()
