"""Train a preference-conditioned multi-objective GFlowNet (MOGFN-PC) on one of four tasks.

    python examples/train_multiobjective.py --task branin_currin --out runs/bc          # 32x32 grid, exact metrics
    python examples/train_multiobjective.py --task tfbind8_multi --tfs SIX6,PAX6 --pref-beta 16 --data-dir ../shared/data
    python examples/train_multiobjective.py --task ngrams --ngrams AB,CD --max-len 8
    python examples/train_multiobjective.py --task molecules_moo --pref-beta 16 --hidden 64 --n-layers 4
    python examples/train_multiobjective.py --task molecules_moo --condition none --scalar-reward qed_sa   # baseline

One model samples from R(x | w) = s_w(R_1(x), ..., R_k(x))^beta for every preference w
(``--condition pref``: w ~ Dirichlet(--pref-alpha), fixed --pref-beta; ``pref+beta``: beta ~ --beta-dist too;
``--scalarization weighted_sum|tchebycheff``).  At the end (and every --eval-every iterations) it
samples --n-eval objects pooled over the evaluation preferences (the simplex lattice of step
1/--eval-pref-steps) and writes to ``<out>/metrics.json``: ``hypervolume`` (reference point 0),
``hypervolume_ratio``/``igd``/``pc_entropy``/``r2`` against the exact Pareto front on enumerable tasks,
``top<k>_diversity_pref_mean`` and, for enumerable tasks, the exact per-preference ``tv_exact_<w>`` and
``tv_exact_pref_mean``.  Molecules add ``validity`` and ``top100_hypervolume`` (the 100 distinct
valid molecules of the lowest Pareto ranks).  ``<out>/pareto.png`` (also in TensorBoard) shows the
samples over the true front.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from gfn.config import RunConfig, parse_config
from gfn.metrics import multiobjective as mm
from gfn.preferences import checked_log_rewards, eval_conditions, is_multi_objective, preference_grid, scalarize
from gfn.runner import run

TASKS = ("branin_currin", "tfbind8_multi", "ngrams", "molecules_moo")


@dataclass
class MOConfig(RunConfig):
    """Shared flags (preference conditioning on by default) plus the task flags."""

    condition: str = field(default="pref", metadata={"help": "pref | pref+beta | none (train on the scalar reward)", "choices": ("none", "pref", "pref+beta")})
    iterations: int = field(default=2000, metadata={"help": "training iterations"})
    batch_size: int = field(default=64, metadata={"help": "trajectories per iteration"})
    task: str = field(default="branin_currin", metadata={"help": "|".join(TASKS), "choices": TASKS})
    height: int = field(default=32, metadata={"help": "branin_currin: grid side"})
    tfs: str = field(default="SIX6,PAX6", metadata={"help": "tfbind8_multi: 2 or 3 transcription factors"})
    data_dir: str = field(default="", metadata={"help": "data root holding tfbind8/ and tf8mers/ (or $GFN_DATA_DIR)"})
    ngrams: str = field(default="AB,CD", metadata={"help": "ngrams: comma-separated n-grams"})
    alphabet: str = field(default="ABCD", metadata={"help": "ngrams: letters"})
    max_len: int = field(default=8, metadata={"help": "ngrams: string length"})
    max_atoms: int = field(default=16, metadata={"help": "molecules_moo: maximum heavy atoms"})
    mw_target: float = field(default=250.0, metadata={"help": "molecules_moo: MW objective exp(-((MW - target) / 100)^2)"})
    scalar_reward: str = field(default="pref", metadata={"help": "molecules_moo with --condition none: pref (equal weights) | qed_sa (QED x SA ^ --pref-beta, the single-objective baseline)", "choices": ("pref", "qed_sa")})
    n_eval: int = field(default=1000, metadata={"help": "objects sampled for the sample metrics, pooled over evaluation preferences"})
    top_k: int = field(default=10, metadata={"help": "k of the per-preference top-k diversity"})


def build_env(cfg: MOConfig):
    """The task's environment (vector rewards)."""
    from gfn.envs import multiobjective as mo
    if cfg.task == "branin_currin":
        return mo.BraninCurrin(cfg.height, device=cfg.device)
    if cfg.task == "tfbind8_multi":
        return mo.TFBind8Multi(cfg.tfs, data_dir=cfg.data_dir or None, device=cfg.device)
    if cfg.task == "ngrams":
        return mo.NGrams(cfg.ngrams, alphabet=cfg.alphabet, max_len=cfg.max_len, device=cfg.device)
    from gfn.envs.molecules import MoleculeEnv
    reward = mo.MoleculeMOReward(mw_target=cfg.mw_target, scalar=cfg.scalar_reward, exponent=cfg.pref_beta)
    return MoleculeEnv(max_atoms=cfg.max_atoms, reward=reward, device=cfg.device)


def top_by_pareto_rank(points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` points taken front by front (non-dominated sorting; ties by objective sum)."""
    left = torch.arange(points.shape[0])
    out = []
    while left.numel() and sum(o.numel() for o in out) < k:
        mask = mm.pareto_mask(points[left])
        layer = left[mask]
        out.append(layer[torch.argsort(points[layer].sum(1), descending=True)])
        left = left[~mask]
    return torch.cat(out)[:k] if out else left[:0]


def make_metrics(env, cfg: MOConfig):
    """``metrics_fn`` and ``images_fn`` for :func:`gfn.runner.run`."""
    if not is_multi_objective(env):
        raise ValueError(f"{type(env).__name__} has no vector rewards")
    k = env.reward.n_objectives
    names = env.reward.objective_names
    conditional = cfg.condition in ("pref", "pref+beta")
    grid = preference_grid(k, cfg.eval_pref_steps)
    conds = eval_conditions(k, cfg.eval_pref_steps, cfg.condition == "pref+beta", [cfg.pref_beta])
    front = mm.exact_pareto_front(env) if env.is_enumerable else None
    ref = torch.zeros(k, dtype=torch.float64)
    molecules = cfg.task == "molecules_moo"
    state: dict = {}

    def sample(trainer):
        n_per = math.ceil(cfg.n_eval / conds.shape[0])
        cond = conds.repeat_interleave(n_per, 0).to(cfg.device) if conditional else None
        batch = trainer.sampler.sample(cond.shape[0] if conditional else cfg.n_eval, cond=cond)
        states = batch.terminal_states
        pref_id = torch.arange(conds.shape[0]).repeat_interleave(n_per) if conditional else None
        return states, checked_log_rewards(env, states).double().cpu(), pref_id

    def metrics_fn(trainer) -> dict:
        states, log_r, pref_id = sample(trainer)
        y = log_r.exp()
        m = mm.moo_sample_metrics(y, front, ref, prefs=grid.double())
        if front is not None:
            m["hypervolume_front"] = mm.hypervolume(front, ref)
        if pref_id is not None and torch.is_tensor(states):
            divs = []
            for j in range(conds.shape[0]):
                rows = (pref_id == j).nonzero().squeeze(1)
                s = scalarize(log_r[rows], grid[j].double().expand(rows.numel(), -1), cfg.scalarization)
                divs.append(mm.topk_diversity(states[rows].cpu(), s, cfg.top_k))
            m[f"top{cfg.top_k}_diversity_pref_mean"] = sum(divs) / len(divs)
        if molecules:
            from gfn.envs.molecules.metrics import tanimoto_diversity
            smiles = env.to_smiles(states)
            valid = torch.tensor([s_ is not None for s_ in smiles])
            m["validity"] = float(valid.double().mean())
            first = {}
            for i, s_ in enumerate(smiles):
                if s_ is not None and s_ not in first:
                    first[s_] = i
            idx = torch.tensor(sorted(first.values()), dtype=torch.long)
            m["n_distinct_valid"] = int(idx.numel())
            top = idx[top_by_pareto_rank(y[idx], 100)]
            m["top100_hypervolume"] = mm.hypervolume(y[top], ref)
            for i, nm in enumerate(names):
                m[f"top100_mean_{nm}"] = float(y[top, i].mean())
            m["top100_diversity"] = tanimoto_diversity([smiles[int(i)] for i in top])
        state["y"], state["pref_id"] = y, pref_id
        return m

    def images_fn(trainer) -> dict:
        if "y" not in state:
            metrics_fn(trainer)
        y, pid = state["y"], state["pref_id"]
        colors = None if pid is None else conds[pid, 0]
        path = os.path.join(cfg.out, "pareto.png") if cfg.out and trainer.iteration >= cfg.iterations else None
        img = mm.pareto_plot(y[:, :2], None if front is None else mm.pareto_front(front[:, :2]), names[:2], colors,
                             path=path, title=f"{cfg.task}, iteration {trainer.iteration}")
        return {"pareto/samples_vs_front": img}

    return metrics_fn, images_fn


def main(argv=None) -> dict:
    cfg = parse_config(MOConfig, argv, description=__doc__.split("\n")[0])
    env = build_env(cfg)
    metrics_fn, images_fn = make_metrics(env, cfg)
    result = run(cfg, env, metrics_fn, images_fn=images_fn, name=f"moo-{cfg.task}")
    keys = ("tv_exact_pref_mean", "hypervolume", "hypervolume_ratio", "igd", "pc_entropy", "r2", "validity",
            "top100_hypervolume", "wall_s")
    print({k: result.get(k) for k in keys if k in result})
    return result


if __name__ == "__main__":
    main()
