"""Train a GFlowNet on phylogenetic trees (PhyloGFN) over a DS1-DS8 alignment.

    python examples/train_phylo.py --dataset DS1 --taxa 7 --reward parsimony --objective tb \
        --iterations 2000 --batch-size 32 --seed 0 --data-dir ../shared/data --out runs/phylo7

``--reward parsimony``: R = exp((C - M(T)) / alpha) (Fitch score M; alpha 4, C per dataset as
in gfnx, or the greedy tree's score on a taxon subset); FL-DB (``--objective fldb``) uses the
partial parsimony of forests.  ``--reward likelihood``: JC69 likelihood x uniform topology
prior x discretised Exp(10) branch lengths (``--n-bins``), so log Z is the marginal likelihood;
``--branch-lengths continuous`` samples the lengths from a learned log-normal mixture instead
(:class:`~gfn.envs.phylo.continuous.PhyloTreeContinuous`, the Exp(10) density in the reward).
``--taxa k`` keeps the first k sequences (exact metrics up to 8 taxa).  Parsimony only:
``--cost-bias`` adds the merge's Fitch cost to P_F's logits; ``--nni N`` refines every sampled
tree by NNI hill climbing (up to N moves) and trains on the refined trees as well.

Writes ``<out>/metrics.json``: ``tv_exact`` etc. where enumerable; ``best_parsimony_seen``
(over every tree sampled in training) and ``best_parsimony`` / ``mean_parsimony`` of
``--eval-samples`` fresh samples; ``pearson_logp_logr`` (importance-sampled log p-hat(T), k =
``--eval-k``, against log R(T) on ``--eval-corr`` of them); ``log_z_iw`` / ``log_z_elbo`` /
``ess`` from the same samples (likelihood: next to ``reference_mll``, PhyloGFN's published value).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from gfn import metrics
from gfn.config import RunConfig, parse_config
from gfn.envs.phylo import PHYLOGFN_MLL, PhyloTree, PhyloTreeContinuous
from gfn.envs.phylo.nni import nni_refine
from gfn.local_search import TerminalSearch
from gfn.objectives import get_objective
from gfn.metrics.estimated import forward_log_weights, log_prob_estimate, log_z_from_log_weights, pearson
from gfn.runner import run


@dataclass
class PhyloConfig(RunConfig):
    """Shared flags plus the phylogenetic task."""

    dataset: str = field(default="DS1", metadata={"help": "alignment DS1..DS8"})
    taxa: int = field(default=0, metadata={"help": "keep the first k taxa (0: all)"})
    reward: str = field(default="parsimony", metadata={"help": "reward", "choices": ("parsimony", "likelihood")})
    alpha: float = field(default=4.0, metadata={"help": "parsimony temperature"})
    C: float = field(default=float("nan"), metadata={"help": "parsimony offset (default: gfnx's, or the greedy tree's score on subsets)"})
    n_bins: int = field(default=8, metadata={"help": "likelihood: branch-length bins (equal-mass bins of Exp(rate))"})
    branch_lengths: str = field(default="bins", metadata={"help": "likelihood: discretised (bins) or continuous branch lengths (log-normal mixture head)", "choices": ("bins", "continuous")})
    n_components: int = field(default=4, metadata={"help": "continuous branch lengths: log-normal components per edge"})
    branch_rate: float = field(default=10.0, metadata={"help": "likelihood: rate of the Exp branch-length prior"})
    data_dir: str = field(default="", metadata={"help": "data root holding phylo/ (default: $GFN_DATA_DIR)"})
    hidden: int = field(default=128, metadata={"help": "width of the root encoder"})
    uniform_pb: bool = field(default=True, metadata={"help": "uniform P_B over splittable roots (PhyloGFN)"})
    eval_samples: int = field(default=1000, metadata={"help": "fresh samples for parsimony and log Z estimates"})
    eval_corr: int = field(default=100, metadata={"help": "samples whose log p-hat is estimated (correlation)"})
    eval_k: int = field(default=32, metadata={"help": "backward trajectories per log p-hat estimate"})
    exact: bool = field(default=True, metadata={"help": "exact tv/jsd where enumerable (<= 8 taxa)"})
    cost_bias: bool = field(default=False, metadata={"help": "parsimony: P_F logits get -s * (mutations a merge adds) / alpha, s learned"})
    nni: int = field(default=0, metadata={"help": "parsimony: refine every sampled tree by NNI hill climbing (at most this many moves) and train on the refined trees too (0: off)"})


class BestSeen:
    """Trainer hook: the best reward, and its parsimony and tree, over every sampled tree."""

    def __init__(self, env: PhyloTree):
        self.env = env
        self.best_log_r, self.best_parsimony, self.best_tree = -math.inf, math.inf, ""

    def __call__(self, trainer, iteration, info) -> None:
        x = info.batch.terminal_states
        lr = info.batch.log_rewards
        i = int(lr.argmax())
        if float(lr[i]) > self.best_log_r:
            self.best_log_r = float(lr[i])
            self.best_tree = x.newick(i, self.env.alignment.names)
            if not self.env.likelihood:
                self.best_parsimony = float(self.env.parsimony(x)[i])

    def state_dict(self) -> dict:
        return {"best_log_r": self.best_log_r, "best_parsimony": self.best_parsimony, "best_tree": self.best_tree}

    def load_state_dict(self, d: dict) -> None:
        self.best_log_r, self.best_parsimony, self.best_tree = d["best_log_r"], d["best_parsimony"], d["best_tree"]


def make_metrics(env: PhyloTree, cfg: PhyloConfig, best: BestSeen):
    """Exact metrics (small), sample statistics, correlation and log Z estimates."""
    def metrics_fn(trainer) -> dict:
        model = trainer.model
        m = {}
        if cfg.exact and env.is_enumerable and env.n <= 8:
            m.update(metrics.exact_metrics(env, model))
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        x, log_r, log_w = forward_log_weights(env, model, cfg.eval_samples, generator=gen)
        m.update(log_z_from_log_weights(log_w))
        if env.likelihood:
            m["best_log_joint"] = float(log_r.max())
            m["mean_log_joint"] = float(log_r.mean())
            if not cfg.taxa:
                m["reference_mll"] = PHYLOGFN_MLL.get(cfg.dataset, float("nan"))
        else:
            p = env.parsimony(x)
            m.update(best_parsimony=float(p.min()), mean_parsimony=float(p.mean()),
                     best_parsimony_seen=min(best.best_parsimony, float(p.min())))
        if cfg.eval_corr > 0:
            sub = x.index(torch.arange(min(cfg.eval_corr, len(x))))
            logp = log_prob_estimate(env, model, sub, k=cfg.eval_k, generator=gen)
            m["pearson_logp_logr"] = pearson(logp, log_r[:len(sub)])
        m["best_log_reward_seen"] = best.best_log_r
        m["best_tree_seen"] = best.best_tree
        return m

    return metrics_fn


def main(argv=None) -> dict:
    cfg = parse_config(PhyloConfig, argv, description=__doc__.split("\n")[0])
    if cfg.branch_lengths == "continuous":
        if cfg.reward != "likelihood":
            raise SystemExit("--branch-lengths continuous needs --reward likelihood")
        env = PhyloTreeContinuous(cfg.dataset, taxa=cfg.taxa, branch_rate=cfg.branch_rate,
                                  n_components=cfg.n_components, data_dir=cfg.data_dir, device=cfg.device)
    else:
        env = PhyloTree(cfg.dataset, taxa=cfg.taxa, reward_kind=cfg.reward, alpha=cfg.alpha, C=cfg.C,
                        n_bins=cfg.n_bins, branch_rate=cfg.branch_rate, data_dir=cfg.data_dir, device=cfg.device)
    best = BestSeen(env)
    objective = model = None
    if cfg.cost_bias:
        if env.likelihood:
            raise SystemExit("--cost-bias needs --reward parsimony")
        objective = get_objective(cfg.objective, **dict(cfg.objective_args))
        model = objective.build_model(env, hidden=cfg.hidden, n_layers=cfg.n_layers, shared_trunk=cfg.shared_trunk,
                                      uniform_pb=cfg.uniform_pb, cost_bias=True).to(cfg.device)
    batch_hooks = []
    if cfg.nni:
        if env.likelihood:
            raise SystemExit("--nni needs --reward parsimony")
        batch_hooks.append(TerminalSearch(nni_refine(cfg.nni)))
    result = run(cfg, env, make_metrics(env, cfg, best), model=model, objective=objective, hooks=[best],
                 batch_hooks=batch_hooks, name=f"phylo-{cfg.dataset}")
    if int(os.environ.get("RANK", "0")) == 0:
        keys = ("tv_exact", "log_z_true", "best_parsimony_seen", "best_parsimony", "mean_parsimony", "pearson_logp_logr",
                "log_z", "log_z_iw", "log_z_elbo", "ess", "reference_mll", "wall_s")
        print({k: result[k] for k in keys if k in result})
    return result


if __name__ == "__main__":
    main()
