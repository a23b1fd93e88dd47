"""Train a GFlowNet on a sequence task: bit sequences, TFBind8, QM9str or RNA-binding.

    python examples/train_sequences.py --task tfbind8 --objective tb --iterations 1000 \
        --batch-size 32 --seed 0 --data-dir ../shared/data --out runs/tfbind8

Tasks: ``bitseq`` (``--word-size``, ``--seq-len``, ``--n-modes``), ``tfbind8``, ``qm9str``,
``rna`` (``--rna-target L14_RNA1|L14_RNA2|L14_RNA3``, needs ``viennarna``).  ``--mdp``
chooses append / prepend_append / fill (default: the task's published MDP), ``--policy``
mlp / transformer / gru.  ``--data-dir`` defaults to the environment variable GFN_DATA_DIR, else
the data shipped with the library.
``--prioritized-replay`` turns on the papers' replay (half from the top 10% by reward; size
``--replay-capacity``, default 10,000); it is on by default for TFBind8 and QM9str, where it
finds the most modes, with the replayed trajectories on top of ``--batch-size`` fresh ones
(``--replay-extra``, the papers' online + offline batches), so ``n_samples`` is
``batch_size * iterations``.  These defaults reach (seed 0, docs/sequences.md):

    --task tfbind8 --batch-size 32 --iterations 1000   276 of 328 modes in 32,000 samples
    --task qm9str  --batch-size 32 --iterations 2000   739 of 805 modes in 64,000 samples

Writes ``<out>/metrics.json`` (modes_found, n_samples, top100_reward, top100_diversity,
unique_fraction, tv_exact where enumerable, and ``history``: the same at every evaluation),
the estimated metrics of docs/metrics.md (``log_z_elbo``, ``log_z_iw``, ``ess``, correlation of
log p-hat with log R; ``log_z_eubo`` where enumerable), ``<out>/config.json`` and TensorBoard logs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional

from gfn.envs.sequences import (
    BitSequence,
    QM9Str,
    RewardPrioritizedReplay,
    RNABinding,
    SequenceMetrics,
    TFBind8,
)
from gfn.envs.sequences.bitseq import tokens_to_bits
from gfn.objectives import get_objective

from gfn.config import RunConfig, parse_config
from gfn.metrics.estimated import EstimatedMetrics
from gfn.runner import run, trainer_config
from gfn.trainer import Trainer
from gfn.utils import seed_everything

TASKS = ("bitseq", "tfbind8", "qm9str", "rna")
DEFAULT_MDP = {"bitseq": "fill", "tfbind8": "append", "qm9str": "prepend_append", "rna": "append"}
#: tasks whose best documented recipe uses the prioritised replay (docs/sequences.md)
REPLAY_BY_DEFAULT = ("tfbind8", "qm9str")
DEFAULT_REPLAY_CAPACITY = 10_000


@dataclass
class SequenceConfig(RunConfig):
    """Shared flags plus the sequence-task parameters."""

    task: str = field(default="tfbind8", metadata={"help": "task", "choices": TASKS})
    data_dir: str = field(default="", metadata={"help": "data root holding tfbind8/, qm9str/, rna/ (default: $GFN_DATA_DIR, else the data shipped with the library)"})
    mdp: str = field(default="", metadata={"help": "append | prepend_append | fill (default: the task's)"})
    policy: str = field(default="mlp", metadata={"help": "policy network", "choices": ("mlp", "transformer", "gru")})
    word_size: int = field(default=1, metadata={"help": "bitseq: bits per token"})
    seq_len: int = field(default=8, metadata={"help": "bitseq: number of bits"})
    n_modes: int = field(default=2, metadata={"help": "bitseq: number of modes"})
    mode_threshold: int = field(default=0, metadata={"help": "bitseq: a mode is found within this many bits"})
    bitseq_temperature: float = field(default=1.0, metadata={"help": "bitseq: log R = -distance / temperature"})
    rna_target: str = field(default="L14_RNA1", metadata={"help": "rna: target", "choices": ("L14_RNA1", "L14_RNA2", "L14_RNA3")})
    exact: bool = field(default=True, metadata={"help": "exact tv/jsd where the task is enumerable"})
    prioritized_replay: Optional[bool] = field(default=None, metadata={"help": "reward-prioritised replay (default: on for tfbind8 and qm9str; --replay-capacity default 10000)"})
    replay_extra: Optional[bool] = field(default=None, metadata={"help": "replayed trajectories come on top of --batch-size fresh ones, the papers' online + offline batches (default: on for tfbind8 and qm9str)"})
    top_fraction: float = field(default=0.1, metadata={"help": "prioritised replay: size of the 'top' pool"})


def make_env(cfg: SequenceConfig):
    """The task environment."""
    data_dir = cfg.data_dir or os.environ.get("GFN_DATA_DIR") or None
    mdp = cfg.mdp or DEFAULT_MDP[cfg.task]
    if cfg.task == "bitseq":
        return BitSequence(cfg.word_size, cfg.seq_len, cfg.n_modes, mdp=mdp, temperature=cfg.bitseq_temperature,
                           mode_threshold=cfg.mode_threshold, device=cfg.device)
    if cfg.task == "tfbind8":
        return TFBind8(data_dir, mdp=mdp, device=cfg.device)
    if cfg.task == "qm9str":
        return QM9Str(data_dir, mdp=mdp, device=cfg.device)
    return RNABinding(cfg.rna_target, data_dir, mdp=mdp, device=cfg.device)


def make_metrics(cfg: SequenceConfig, env) -> tuple[SequenceMetrics, dict]:
    """Task metrics (and a dict of notes recorded in metrics.json)."""
    notes: dict = {}
    kw: dict = {"exact": cfg.exact and env.is_enumerable}
    if cfg.task == "bitseq":
        kw.update(mode_states=env.mode_states, mode_threshold=env.mode_threshold,
                  mode_distance_fn=env.mode_distances,
                  distance_fn=lambda s: (tokens_to_bits(s, env.word_size).unsqueeze(1)
                                         != tokens_to_bits(s, env.word_size).unsqueeze(0)).sum(-1).double())
        notes["diversity"] = "mean pairwise Hamming distance (bits)"
    elif cfg.task == "qm9str":
        kw["mode_states"] = env.mode_states
        try:
            from gfn.envs.sequences.qm9str import BlockMolecules
            mols = BlockMolecules(env.data_dir or os.environ.get("GFN_DATA_DIR"))
            kw["distance_fn"] = lambda s: mols.distance_matrix(env.to_strings(s))
            notes["diversity"] = "mean pairwise 1 - Tanimoto (Morgan r=2, 2048 bits)"
        except ImportError:
            notes["diversity"] = "mean pairwise Hamming distance (RDKit not installed)"
    elif cfg.task == "rna":
        kw.update(mode_states=env.mode_states, mode_log_reward_threshold=env.mode_log_reward_threshold)
        notes["diversity"] = "mean pairwise Hamming distance"
    else:
        kw["mode_states"] = env.mode_states
        notes["diversity"] = "mean pairwise Hamming distance"
    return SequenceMetrics(env, **kw), notes


def main(argv=None) -> dict:
    cfg = parse_config(SequenceConfig, argv, description=__doc__.split("\n")[0])
    if cfg.prioritized_replay is None:  # the task's best documented recipe
        cfg.prioritized_replay = cfg.task in REPLAY_BY_DEFAULT
    if cfg.replay_extra is None:
        cfg.replay_extra = cfg.task in REPLAY_BY_DEFAULT
    if cfg.prioritized_replay and cfg.replay_capacity <= 0:
        cfg.replay_capacity = DEFAULT_REPLAY_CAPACITY
    env = make_env(cfg)
    seed_everything(cfg.seed)  # model initialisation is part of the seeded run
    objective = get_objective(cfg.objective, **dict(cfg.objective_args))
    model_kw = dict(hidden=cfg.hidden, n_layers=cfg.n_layers, shared_trunk=cfg.shared_trunk, uniform_pb=cfg.uniform_pb)
    if cfg.policy != "mlp":  # goes to SequenceEnv.build_gflownet through the objective's builder
        model_kw["arch"] = cfg.policy
    model = objective.build_model(env, **model_kw).to(cfg.device)
    tracker, notes = make_metrics(cfg, env)
    history: list = []

    # log Z bounds, ESS, log p-hat vs log R; exact target samples where the task is enumerable
    estimated = EstimatedMetrics(env, target_sampler="auto" if env.is_enumerable else None, seed=cfg.seed)
    metric_evals = [0]  # rna: reward evaluations made by the estimated metrics, not by training

    def metrics_fn(trainer) -> dict:
        m = tracker.metrics_fn(trainer)
        n0 = env.score.n_evals if cfg.task == "rna" else 0
        m.update(estimated(trainer))
        if cfg.task == "rna":
            metric_evals[0] += env.score.n_evals - n0
            m["reward_evaluations"] = env.score.n_evals - metric_evals[0]
            m["reward_evaluations_metrics"] = metric_evals[0]
            m["evals_per_second"] = env.score.evals_per_second
        keep = ("modes_found", "n_samples", "top100_reward", "top100_diversity", "unique_fraction", "tv_exact")
        history.append({"iteration": trainer.iteration,
                        **{k: (None if isinstance(m.get(k), float) and not math.isfinite(m[k]) else m.get(k))
                           for k in keep if k in m}})
        m["history"] = list(history)
        m.update(notes)
        return m

    hooks = [tracker] if estimated.target_sampler is not None else [tracker, estimated.hook]  # test set survives resume
    trainer = Trainer(env, model, objective, trainer_config(cfg), hooks=hooks)
    if cfg.prioritized_replay:
        trainer.replay = RewardPrioritizedReplay(cfg.replay_capacity, top_fraction=cfg.top_fraction)
    result = run(cfg, env, metrics_fn, trainer=trainer, name=f"sequences-{cfg.task}")
    shown = ("modes_found", "n_samples", "top100_reward", "top100_diversity", "unique_fraction", "tv_exact", "wall_s")
    print({k: result[k] for k in shown if k in result})
    return result


if __name__ == "__main__":
    main()
