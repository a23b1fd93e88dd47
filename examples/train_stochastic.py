"""Train a GFlowNet on a sticky (stochastic) HyperGrid and report the exact tv to R/Z.

    python examples/train_stochastic.py --objective stochastic_db --seed 0 --out runs/sticky
    python examples/train_stochastic.py --objective stochastic_db --objective-arg dynamics=exact
    python examples/train_stochastic.py --objective db      # ignores the dynamics: biased

The environment is ``StickyActions(HyperGrid(ndim, height), alpha)`` (docs/stochastic.md): with
probability ``--alpha`` a non-exit action is replaced by a uniformly random move (``--rule
pan2023``: only off the upper edges, as in Pan et al. 2023; ``--rule allowed``: everywhere,
among the allowed moves).  ``stochastic_db`` learns the transition probabilities with a dynamics
model (``--objective-arg dynamics=learned``, the default) or reads them from the environment
(``dynamics=exact``).  The metrics (``tv_exact``, ``jsd_exact``, ``kl_exact``) are those of the
policy's terminal distribution *under the sticky dynamics* (``gfn.metrics.stochastic``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gfn.config import RunConfig, parse_config
from gfn.envs import HyperGrid
from gfn.envs.stochastic import StickyActions
from gfn.metrics.stochastic import stochastic_exact_metrics
from gfn.runner import run


@dataclass
class StochasticConfig(RunConfig):
    """Shared flags (with the sticky-grid budget as defaults) plus the environment's parameters."""

    objective: str = field(default="stochastic_db", metadata={"help": "objective name (see `gfn objectives`)"})
    iterations: int = field(default=3000, metadata={"help": "training iterations"})
    batch_size: int = field(default=64, metadata={"help": "trajectories per iteration"})
    hidden: int = field(default=128, metadata={"help": "hidden width of the MLPs"})
    ndim: int = field(default=2, metadata={"help": "grid dimensions"})
    height: int = field(default=8, metadata={"help": "grid side"})
    alpha: float = field(default=0.25, metadata={"help": "probability that an action is replaced by a random move"})
    rule: str = field(default="pan2023", metadata={"help": "where actions stick: pan2023 (off the upper edges) or allowed"})


def main(argv=None) -> dict:
    cfg = parse_config(StochasticConfig, argv, description=__doc__.split("\n")[0])
    env = StickyActions(HyperGrid(cfg.ndim, cfg.height, device=cfg.device), alpha=cfg.alpha, rule=cfg.rule)

    def metrics_fn(trainer) -> dict:
        return stochastic_exact_metrics(env, trainer.model)

    result = run(cfg, env, metrics_fn, name="stochastic")
    print({k: result.get(k) for k in ("tv_exact", "jsd_exact", "log_z", "wall_s")})
    return result


if __name__ == "__main__":
    main()
