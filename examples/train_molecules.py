"""Train a GFlowNet that builds molecules atom by atom, rewarded by RDKit's QED x normalised SA.

    python examples/train_molecules.py --out runs/molecules            # defaults: 9 CPU minutes of training
    python examples/train_molecules.py --reward qed --reward-exponent 8 --max-atoms 24 --iterations 500

Writes ``<out>/metrics.json`` (validity, uniqueness, top100_reward, top100_qed,
top100_diversity, random_top100_qed, n_above_threshold, ...), ``<out>/config.json``,
TensorBoard event files, ``<out>/top_molecules.png`` (grid of the best molecules) and
``<out>/top_molecules.csv``.  Top-k metrics are over all distinct molecules sampled during
training plus the final evaluation sample; validity and uniqueness are measured on
``--n-eval`` molecules sampled from the trained policy without exploration.  Every evaluation also
writes the estimated metrics of docs/metrics.md (``log_z_elbo``, ``log_z_iw``, ``ess``,
``pearson_log_p_log_r``, ``spearman_log_p_log_r``; 256 samples, k = 8 backward trajectories).
Needs ``pip install rdkit``.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field

import torch

from gfn.config import RunConfig, parse_config
from gfn.envs.molecules import MoleculeEnv, MoleculeReward
from gfn.envs.molecules.metrics import (MoleculeTracker, draw_molecules, random_policy_summary, uniqueness,
                                        validity)
from gfn.metrics.estimated import EstimatedMetrics
from gfn.runner import run
from gfn.sampler import Sampler


@dataclass
class MoleculeConfig(RunConfig):
    """Shared flags (with molecule defaults) plus the environment, reward and evaluation flags."""

    objective: str = field(default="vargrad", metadata={"help": "objective name (see `gfn objectives`)"})
    iterations: int = field(default=2000, metadata={"help": "training iterations (see also --time-budget-min)"})
    batch_size: int = field(default=64, metadata={"help": "trajectories per iteration"})
    hidden: int = field(default=64, metadata={"help": "GNN width"})
    n_layers: int = field(default=4, metadata={"help": "message-passing layers"})
    uniform_pb: bool = field(default=True, metadata={"help": "fixed uniform backward policy"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the GNN"})
    atoms: str = field(default="C,N,O,F,S", metadata={"help": "comma-separated element alphabet"})
    max_atoms: int = field(default=20, metadata={"help": "maximum heavy atoms per molecule"})
    min_ring_size: int = field(default=5, metadata={"help": "smallest ring that may close"})
    max_bond_order: int = field(default=3, metadata={"help": "1, 2 or 3"})
    hypervalent: bool = field(default=False, metadata={"help": "allow S(VI) and P(V)"})
    reward: str = field(default="qed_sa", metadata={"help": "qed_sa, qed, sa, logp or mw"})
    reward_exponent: float = field(default=32.0, metadata={"help": "beta in R(x)^beta"})
    top_k: int = field(default=100, metadata={"help": "k of the top-k metrics"})
    reward_threshold: float = field(default=0.7, metadata={"help": "count distinct molecules with score above this"})
    n_eval: int = field(default=1000, metadata={"help": "molecules sampled from the trained policy for validity/uniqueness"})
    random_samples: int = field(default=10000, metadata={"help": "molecules from the random policy for the baseline"})
    time_budget_min: float = field(default=9.0, metadata={"help": "stop training after this many CPU minutes (0: off)"})
    n_draw: int = field(default=16, metadata={"help": "molecules in the PNG grid"})


def build_env(cfg: MoleculeConfig) -> MoleculeEnv:
    """The molecule environment and reward described by ``cfg``."""
    atoms = cfg.atoms.split(",") if isinstance(cfg.atoms, str) else list(cfg.atoms)
    reward = MoleculeReward(cfg.reward, exponent=cfg.reward_exponent)
    return MoleculeEnv(atoms=[a.strip() for a in atoms], max_atoms=cfg.max_atoms, min_ring_size=cfg.min_ring_size,
                       max_bond_order=cfg.max_bond_order, hypervalent=cfg.hypervalent, reward=reward,
                       device=cfg.device)


def make_hooks(cfg: MoleculeConfig, env: MoleculeEnv):
    """Training hooks (collect sampled molecules, CPU-time budget), metrics and image functions."""
    tracker = MoleculeTracker()
    reward: MoleculeReward = env.reward
    t0 = time.process_time()
    final_cache: dict = {}
    # log Z bounds, ESS, log p-hat vs log R (test set: the first evaluation's molecules)
    estimated = EstimatedMetrics(env, n=256, k=8, n_test=100, top_k=cfg.top_k, target_sampler=None, seed=cfg.seed)

    def collect(trainer, iteration, info):
        tracker.add_props(reward.properties(info.batch.terminal_states))
        if cfg.time_budget_min > 0 and time.process_time() - t0 > 60.0 * cfg.time_budget_min:
            cfg.iterations = trainer.iteration  # ends the runner's loop after this step

    def metrics_fn(trainer) -> dict:
        final = trainer.iteration >= cfg.iterations
        m = {"train_cpu_s": time.process_time() - t0}  # CPU time so far (before this evaluation)
        if final:
            sampler = Sampler(env, trainer.model)
            states = []
            for start in range(0, cfg.n_eval, 256):
                states.append(sampler.sample(min(256, cfg.n_eval - start)).terminal_states)
            mols = [env.to_mols(s) for s in states]
            mols = [m_ for chunk in mols for m_ in chunk]
            from rdkit import Chem
            smiles = [None if m_ is None else Chem.MolToSmiles(m_) for m_ in mols]
            props = [None if m_ is None else reward.mol_props(m_) for m_ in mols]
            tracker.add_props(props)
            eval_scores = [p["score"] for p in props if p is not None]
            m.update({"validity": validity(mols), "uniqueness": uniqueness(smiles),
                      "eval_mean_reward": sum(eval_scores) / max(len(eval_scores), 1),
                      "eval_mean_qed": sum(p["qed"] for p in props if p is not None) / max(len(eval_scores), 1),
                      "eval_mean_atoms": sum(m_.GetNumAtoms() for m_ in mols if m_ is not None) / max(len(eval_scores), 1)})
            if cfg.random_samples > 0:
                m.update(random_policy_summary(env, reward, cfg.random_samples, cfg.top_k, seed=cfg.seed))
            final_cache["done"] = True
        m.update(tracker.summary(cfg.top_k, cfg.reward_threshold))
        m.update(estimated(trainer))
        return m

    def images_fn(trainer) -> dict:
        best = tracker.top(cfg.n_draw)
        if not best:
            return {}
        img = draw_molecules([p["smiles"] for p in best],
                             [f"R={p['score']:.3f} QED={p['qed']:.3f} SA={p['sa']:.2f}" for p in best])
        if final_cache.get("done"):
            from PIL import Image
            Image.fromarray(img).save(os.path.join(cfg.out, "top_molecules.png"))
            with open(os.path.join(cfg.out, "top_molecules.csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["smiles", "score", "qed", "sa", "logp", "mw"])
                for p in tracker.top(cfg.top_k):
                    w.writerow([p["smiles"], p["score"], p["qed"], p["sa"], p["logp"], p["mw"]])
        return {"molecules/top": img}

    return collect, metrics_fn, images_fn


def main(argv=None) -> dict:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = parse_config(MoleculeConfig, argv, description=__doc__.split("\n")[0])
    env = build_env(cfg)
    collect, metrics_fn, images_fn = make_hooks(cfg, env)
    result = run(cfg, env, metrics_fn, hooks=[collect], images_fn=images_fn, name="molecules")
    keys = ("validity", "uniqueness", "top100_reward", "top100_qed", "top100_diversity", "random_top100_qed",
            "n_above_threshold", "iterations", "wall_s", "train_cpu_s")
    print({k: result.get(k) for k in keys})
    return result


if __name__ == "__main__":
    main()
