"""Train a GFlowNet on a sparse, GAFN or deceptive HyperGrid and count the modes it finds.

    python examples/train_exploration.py --reward sparse --exploration thompson:8 --seed 1
    python examples/train_exploration.py --reward sparse --intrinsic rnd:1.0          # GAFN
    python examples/train_exploration.py --reward deceptive --objective db
    python examples/train_exploration.py --reward gafn --ndim 2 --height 64 --eps 1e-8 --intrinsic rnd:0.005,flow

Reward families (docs/exploration.md): ``sparse`` (1 on the corner-band cells, ``--eps``
elsewhere), ``gafn`` (the GAFN paper's grid: 1 on ``{1, height-2}^ndim`` except
``(1, ..., 1)``, ``--eps`` elsewhere) and ``deceptive`` (a slope of height ``--lure`` falling away from s_0, plus the
corner-band modes at ``1 + eps``).  ``--exploration thompson:K[,p]`` trains K policy heads with
bootstrap probability p (TS-GFN); ``--intrinsic rnd:eta[,edge|state]`` adds GAFN's RND bonus to
the training rewards (both come with every objective); ``rnd:eta,flow`` is the GAFN authors' TB
form (the bonus of each intermediate state divided by a learned state flow, TB only).  Writes ``<out>/metrics.json`` with
``modes_found`` (distinct modes among the on-policy training samples), ``n_modes``,
``samples``, the exact ``tv_exact`` / ``jsd_exact`` / ``kl_exact`` of the policy (the mixture of
heads under Thompson sampling) and ``modes_curve`` (modes found every ``--record-every``
iterations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gfn import metrics
from gfn.config import RunConfig, parse_config
from gfn.envs.hypergrid import DeceptiveHyperGridReward, GAFNGridReward, HyperGrid, SparseHyperGridReward
from gfn.runner import run


@dataclass
class ExplorationConfig(RunConfig):
    """Shared flags (with the exploration budget as defaults) plus the grid and its reward family."""

    iterations: int = field(default=1000, metadata={"help": "training iterations"})
    hidden: int = field(default=128, metadata={"help": "hidden width of the MLPs"})
    ndim: int = field(default=4, metadata={"help": "grid dimensions"})
    height: int = field(default=8, metadata={"help": "grid side length"})
    reward: str = field(default="sparse", metadata={"help": "reward family", "choices": ("sparse", "gafn", "deceptive")})
    eps: float = field(default=1e-4, metadata={"help": "reward off the modes (sparse, gafn) / floor (deceptive)"})
    lure: float = field(default=0.3, metadata={"help": "deceptive: height of the slope towards s_0"})
    record_every: int = field(default=25, metadata={"help": "iterations between points of modes_curve"})


class ModesCurve:
    """Trainer hook: which cells the on-policy samples reached, and the modes-found curve."""

    def __init__(self, env: HyperGrid, every: int):
        self.env, self.every = env, every
        self.modes = env.mode_mask().cpu()
        self.seen = torch.zeros(env.n_states, dtype=torch.bool)
        self.curve: list = []

    def __call__(self, trainer, iteration, info) -> None:
        self.seen[self.env.state_index(info.batch.terminal_states).cpu()] = True
        if self.every and iteration % self.every == 0:
            self.curve.append([trainer.n_samples, self.found])

    @property
    def found(self) -> int:
        """Distinct modes sampled so far."""
        return int((self.seen & self.modes).sum())

    def state_dict(self) -> dict:
        return {"seen": self.seen.clone(), "curve": list(self.curve)}

    def load_state_dict(self, d: dict) -> None:
        self.seen, self.curve = d["seen"].clone(), list(d["curve"])


def main(argv=None) -> dict:
    cfg = parse_config(ExplorationConfig, argv, description=__doc__.split("\n")[0])
    if cfg.reward == "sparse":
        reward = SparseHyperGridReward(cfg.height, eps=cfg.eps)
    elif cfg.reward == "gafn":
        reward = GAFNGridReward(cfg.height, eps=cfg.eps)
    else:
        reward = DeceptiveHyperGridReward(cfg.height, eps=cfg.eps, lure=cfg.lure)
    env = HyperGrid(cfg.ndim, cfg.height, reward=reward, device=cfg.device)
    curve = ModesCurve(env, cfg.record_every)

    def metrics_fn(trainer) -> dict:
        m = metrics.exact_metrics(env, trainer.model)
        m.update({"modes_found": curve.found, "n_modes": int(curve.modes.sum()), "samples": trainer.n_samples,
                  "modes_curve": curve.curve})
        return m

    result = run(cfg, env, metrics_fn, hooks=[curve], name="exploration")
    print({k: result.get(k) for k in ("modes_found", "n_modes", "samples", "tv_exact", "wall_s")})
    return result


if __name__ == "__main__":
    main()
