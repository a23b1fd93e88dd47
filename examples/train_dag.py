"""Train a GFlowNet to sample DAGs from a Bayesian posterior (DAG-GFlowNet, Deleu et al. 2022).

    python examples/train_dag.py --n-nodes 5 --n-edges 5 --n-samples 100 --score bge \
        --iterations 10000 --batch-size 32 --seed 0 --out runs/dag5

Data: ``--n-samples`` observations (and ``--n-heldout`` held-out ones) of a random linear-Gaussian
network on an Erdos-Renyi DAG drawn with ``--data-seed``.  Writes ``<out>/metrics.json`` with
``jsd_exact`` / ``tv_exact`` to the exact posterior (d <= 5), ``expected_shd``, ``expected_edges``,
``roc_auc`` (edge marginals vs the true graph; ``roc_auc_posterior`` is the exact posterior's),
``edge_marginal_mae`` and ``heldout_log_lik``.  Exploration can be annealed: ``--epsilon`` at the
start, ``--epsilon-final`` after ``--epsilon-anneal`` of the iterations (torchgfn's protocol:
1.0 -> 0.1 over the first half).  The VI objectives (``reverse_kl``, ``forward_kl``, ``rws``)
importance weight explored trajectories; ``--grad-var-every N`` logs the gradient variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gfn.config import RunConfig, parse_config
from gfn.envs.dag import DAGEnv
from gfn.envs.dag.metrics import DAGMetrics
from gfn.objectives.vi import BehaviourRecorder, GradientVariance
from gfn.runner import build_objective_and_model, run
from gfn.utils import seed_everything


@dataclass
class DAGConfig(RunConfig):
    """Shared flags (with the DAG-GFlowNet budget as defaults) plus the data and score."""

    iterations: int = field(default=10_000, metadata={"help": "training iterations"})
    batch_size: int = field(default=32, metadata={"help": "trajectories per iteration"})
    n_nodes: int = field(default=5, metadata={"help": "number of variables (exact metrics for <= 5)"})
    n_edges: float = field(default=5.0, metadata={"help": "expected number of edges of the true ER graph"})
    n_samples: int = field(default=100, metadata={"help": "observations used by the score"})
    n_heldout: int = field(default=100, metadata={"help": "held-out observations (heldout_log_lik)"})
    data_seed: int = field(default=0, metadata={"help": "seed of the true graph and the data"})
    score: str = field(default="bge", metadata={"help": "marginal likelihood: bge | lingauss", "choices": ("bge", "lingauss")})
    prior: str = field(default="uniform", metadata={"help": "structure prior: uniform | erdos_renyi | edge",
                                                    "choices": ("uniform", "erdos_renyi", "edge")})
    epsilon_final: float = field(default=-1.0, metadata={"help": "epsilon after the anneal (< 0: keep --epsilon fixed)"})
    epsilon_anneal: float = field(default=0.5, metadata={"help": "fraction of the iterations over which epsilon is annealed linearly"})
    lr_decay_at: float = field(default=-1.0, metadata={"help": "fraction of the iterations after which the "
                               "networks' learning rate is multiplied by --lr-decay (< 0: never)"})
    lr_decay: float = field(default=0.1, metadata={"help": "learning-rate factor applied at --lr-decay-at"})
    grad_var_every: int = field(default=0, metadata={"help": "log the gradient variance every N iterations (0: off)"})
    n_eval_samples: int = field(default=1000, metadata={"help": "sampled graphs for the metrics when d > 5"})
    log_z_init: str = field(default="auto", metadata={"help": "initial log Z of objectives that learn it: auto "
                            "(importance-sampled estimate from 1000 samples of the untrained policy) or a number"})


class EpsilonSchedule:
    """Trainer hook annealing ``trainer.config.epsilon`` linearly from ``start`` to ``end`` over
    ``steps`` iterations (then constant)."""

    def __init__(self, start: float, end: float, steps: int):
        if not (0 <= start <= 1 and 0 <= end <= 1):
            raise ValueError(f"epsilon must lie in [0, 1], got start={start}, end={end}")
        self.start, self.end, self.steps = start, end, max(int(steps), 1)

    def value(self, iteration: int) -> float:
        """epsilon for the batch sampled after ``iteration`` steps."""
        frac = min(iteration / self.steps, 1.0)
        return self.start + (self.end - self.start) * frac

    def __call__(self, trainer, iteration: int, info) -> None:
        trainer.config.epsilon = self.value(iteration)


class LRDecay:
    """Trainer hook multiplying the networks' learning rate (not log Z's) by ``factor`` once,
    after ``at`` iterations (torchgfn's DAG protocol: x0.1 at half of the iterations)."""

    def __init__(self, at: int, factor: float):
        if factor <= 0:
            raise ValueError(f"--lr-decay must be > 0, got {factor}")
        self.at, self.factor = int(at), float(factor)

    def __call__(self, trainer, iteration: int, info) -> None:
        if iteration == self.at:
            for group in trainer.optimizer.param_groups:
                if group.get("name") != "log_z":
                    group["lr"] *= self.factor


def initial_log_z(env: DAGEnv, model, spec: str) -> float:
    """log Z to start from.  log R is a log marginal likelihood (about -140 for 100 samples of 5
    variables), far from the usual init 0, which TB would otherwise spend thousands of steps of
    the log-Z learning rate reaching; ``auto`` starts from ``log_z_iw`` of the untrained policy."""
    if spec == "auto":
        from gfn.metrics.estimated import log_z_estimates
        return float(log_z_estimates(env, model, n=1000)["log_z_iw"])
    try:
        return float(spec)
    except ValueError:
        raise ValueError(f"--log-z-init must be 'auto' or a number, got {spec!r}") from None


def main(argv=None) -> dict:
    cfg = parse_config(DAGConfig, argv, description=__doc__.split("\n")[0])
    env = DAGEnv(cfg.n_nodes, cfg.n_edges, cfg.n_samples, cfg.n_heldout, score=cfg.score, prior=cfg.prior,
                 data_seed=cfg.data_seed, device=cfg.device)
    evaluate = DAGMetrics(env, cfg.n_eval_samples)
    hooks = []
    if cfg.epsilon_final >= 0:
        hooks.append(EpsilonSchedule(cfg.epsilon, cfg.epsilon_final, int(cfg.epsilon_anneal * cfg.iterations)))
    if cfg.lr_decay_at >= 0:
        hooks.append(LRDecay(int(cfg.lr_decay_at * cfg.iterations), cfg.lr_decay))
    if cfg.grad_var_every > 0:
        hooks.append(GradientVariance(cfg.grad_var_every))
    seed_everything(cfg.seed)  # the model is built here (to set log Z) rather than inside run()
    objective, model = build_objective_and_model(cfg, env)
    if objective.needs_log_z and model.log_z.cond_dim == 0:
        with torch.no_grad():
            model.log_z.value.fill_(initial_log_z(env, model, cfg.log_z_init))
    result = run(cfg, env, lambda trainer: evaluate(trainer.model), model=model, objective=objective, hooks=hooks,
                 batch_hooks=[BehaviourRecorder()], name=f"dag{cfg.n_nodes}")
    keys = ("jsd_exact", "tv_exact", "expected_shd", "expected_edges", "roc_auc", "roc_auc_posterior",
            "heldout_log_lik", "wall_s")
    print({k: result.get(k) for k in keys if k in result})
    return result


if __name__ == "__main__":
    main()
