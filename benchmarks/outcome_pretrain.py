"""OC-GFN on the TF-binding family: reward-free pre-training, then fine-tuning on held-out TFs.

Pre-training (once, seed 0) uses no reward at all: targets are uniform random 8-mers over ACGT, so
it does not depend on any transcription factor.  Each arm then trains for the same number of
samples on a held-out TF's reward (the TFBind8 transform ``R = 10 max(r, 1e-3)^3``); every sample
costs one reward call and nothing else calls the reward:

* ``scratch``   : TB with a plain MLP policy (same width), from random weights;
* ``oc_frozen`` : TB on :class:`gfn.outcome.MarginalPolicy` (learned outcome predictor, pre-trained
                  outcome-conditioned network frozen);
* ``oc_tuned``  : the same with the outcome-conditioned network fine-tuned as well (its learning
                  rate is ``lr * oc_lr_scale``);
* ``oc_untrained``: ablation, ``oc_tuned`` on a freshly initialised outcome-conditioned network
                  (same architecture, predictor and optimiser; no pre-training), to separate what
                  pre-training contributes from what the architecture does.

Equal tuning budget: with ``--tune-tf`` every arm runs the same grid (``--lr`` x ``--batch`` x
``--epsilon``, and ``--oc-lr-scale`` for ``oc_tuned`` / ``oc_untrained``) on that TF, and each arm's best setting (mean
modes found) is then run on the held-out TFs.  Modes of a TF: its 328 highest-reward 8-mers (the
size of SIX6's reference list); ``modes_found`` counts the distinct modes among all samples so far.
Writes ``<out>.json`` and ``<out>.png``.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/outcome_pretrain.py --tf PAX6 FOXC1 --tune-tf SIX6 \
        --lr 1e-3 3e-3 1e-2 --batch 16 32 --oc-lr-scale 1 0.1 --pretrain-iters 6000 --pretrain-cosine
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import time
from pathlib import Path

import torch
from torch import nn

from gfn.envs.multiobjective.tfbind8_multi import tf_table_path
from gfn.envs.sequences.base import SequenceEnv
from gfn.envs.sequences.data import full_code
from gfn.envs.sequences.tfbind8 import load_escores, tfbind8_log_rewards
from gfn.outcome import MarginalPolicy, OutcomePolicy, pretrain_step, sample_outcomes, sample_sequences, success_log_prob

RESULTS = Path(__file__).resolve().parent / "results"
N_MODES = 328
ARMS = ("scratch", "oc_frozen", "oc_tuned", "oc_untrained")


class PlainPolicy(nn.Module):
    """Scratch baseline: MLP on the one-hot state, masked log-softmax, scalar log Z."""

    def __init__(self, env, hidden: int):
        super().__init__()
        self.env = env
        self.net = nn.Sequential(nn.Linear(env.feature_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(), nn.Linear(hidden, env.n_actions))
        self.log_z = nn.Parameter(torch.zeros(()))

    def forward(self, states):
        logits = self.net(self.env.featurize(states)).masked_fill(~self.env.forward_mask(states), float("-inf"))
        return logits.log_softmax(-1)


def train_tb(env, policy, log_table, mode_codes, n_samples, batch, lr, lr_z, epsilon, gen, oc_lr_scale=1.0):
    """TB on the task reward; returns the modes-found curve [(samples, modes)] and the CPU seconds."""
    oc_params = [p for n, p in policy.named_parameters() if p.requires_grad and n.startswith("oc.")]
    params = [p for n, p in policy.named_parameters() if p.requires_grad and n != "log_z" and not n.startswith("oc.")]
    groups = [{"params": params, "lr": lr}, {"params": [policy.log_z], "lr": lr_z}]
    if oc_params:
        groups.append({"params": oc_params, "lr": lr * oc_lr_scale})
    opt = torch.optim.Adam(groups, amsgrad=True)
    hit = torch.zeros(log_table.numel(), dtype=torch.bool)
    is_mode = torch.zeros(log_table.numel(), dtype=torch.bool)
    is_mode[mode_codes] = True
    curve, seen, t0 = [], 0, time.process_time()
    L = env.max_len
    while seen < n_samples:
        n = min(batch, n_samples - seen)
        s, st, ac = sample_sequences(env, policy, n, epsilon, gen)
        codes = full_code(s, 4)
        hit[codes] = True
        seen += n
        curve.append((seen, int((hit & is_mode).sum())))
        lp = policy(st.reshape(L * n, -1)).gather(1, ac.reshape(-1, 1)).view(L, n).sum(0)
        log_r = log_table[codes].float()
        loss = (policy.log_z + lp - log_r).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return curve, time.process_time() - t0


def load_task(tf):
    """Log-reward table of one TF and the codes of its top-``N_MODES`` 8-mers."""
    log_table = tfbind8_log_rewards(load_escores(str(tf_table_path(None, tf))))
    return log_table, torch.topk(log_table, N_MODES).indices


def run_arm(env, oc, arm, cfg, tf_task, seed, args):
    """One (arm, setting, seed) fine-tuning run; returns its record."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if arm == "scratch":
        pol = PlainPolicy(env, args.hidden)
    elif arm == "oc_untrained":
        pol = MarginalPolicy(OutcomePolicy(env, hidden=args.hidden), hidden=args.hidden, finetune_policy=True,
                             amortisation=args.amortisation)
    else:
        pol = MarginalPolicy(copy.deepcopy(oc), hidden=args.hidden, finetune_policy=(arm == "oc_tuned"),
                             amortisation=args.amortisation)
    curve, cpu = train_tb(env, pol, *tf_task, args.samples, cfg["batch"], cfg["lr"], args.lr_z, cfg["epsilon"], gen,
                          cfg.get("oc_lr_scale", 1.0))
    return {"curve": curve, "cpu_s": cpu, "modes_found": curve[-1][1]}


def arm_grid(arm, args):
    """The settings an arm is tuned over (the same grid for every arm, plus the OC learning-rate scale)."""
    scales = args.oc_lr_scale if arm in ("oc_tuned", "oc_untrained") else [1.0]
    return [{"lr": lr, "batch": b, "epsilon": e, "oc_lr_scale": sc}
            for lr, b, e, sc in itertools.product(args.lr, args.batch, args.epsilon, scales)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tf", nargs="+", default=["PAX6"], help="held-out transcription factors (any of tf8mers/)")
    ap.add_argument("--tune-tf", default=None, help="TF on which every arm's grid is tuned (not among --tf)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--batch", type=int, nargs="+", default=[32])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--pretrain-iters", type=int, default=3000)
    ap.add_argument("--pretrain-batch", type=int, default=128)
    ap.add_argument("--pretrain-lr", type=float, default=1e-3)
    ap.add_argument("--pretrain-cosine", action="store_true",
                    help="cosine-anneal the pre-training learning rate to 2%% of --pretrain-lr")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-3])
    ap.add_argument("--lr-z", type=float, default=0.05)
    ap.add_argument("--epsilon", type=float, nargs="+", default=[0.05])
    ap.add_argument("--oc-lr-scale", type=float, nargs="+", default=[1.0],
                    help="learning-rate factor of the outcome-conditioned network in oc_tuned")
    ap.add_argument("--amortisation", default="mixture", choices=["mixture", "mean_field"])
    ap.add_argument("--arms", nargs="+", default=["scratch", "oc_frozen", "oc_tuned"], choices=ARMS)
    ap.add_argument("--out", default=str(RESULTS / "outcome_pretrain"))
    args = ap.parse_args()
    if args.tune_tf in args.tf:
        ap.error("--tune-tf must not be one of the held-out --tf")
    grids = {arm: arm_grid(arm, args) for arm in args.arms}
    if args.tune_tf is None and any(len(g) > 1 for g in grids.values()):
        ap.error("several settings per arm need --tune-tf (tuning on a held-out TF would leak)")

    env = SequenceEnv(4, 8, mdp="append", alphabet="ACGT")

    # ---- reward-free pre-training (seed 0), budget reported separately
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    oc = OutcomePolicy(env, hidden=args.hidden)
    opt = torch.optim.Adam(oc.parameters(), lr=args.pretrain_lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.pretrain_iters, eta_min=0.02 * args.pretrain_lr)
             if args.pretrain_cosine else None)
    t0 = time.process_time()
    for _ in range(args.pretrain_iters):
        pretrain_step(env, oc, opt, args.pretrain_batch, epsilon=0.05, generator=g)
        if sched is not None:
            sched.step()
    pre_cpu = time.process_time() - t0
    with torch.no_grad():
        ys = sample_outcomes(env, 4096, torch.Generator().manual_seed(123))
        succ = success_log_prob(env, oc, ys).exp()
    print(f"pre-training: {args.pretrain_iters} x {args.pretrain_batch} trajectories, {pre_cpu:.0f} CPU-s, "
          f"P(x=y|y) on 4096 random outcomes: mean {float(succ.mean()):.4f} min {float(succ.min()):.4f}", flush=True)

    # ---- equal tuning budget on the tuning TF
    tuning, picked = {}, {arm: grid[0] for arm, grid in grids.items()}
    if args.tune_tf is not None:
        task = load_task(args.tune_tf)
        for arm, grid in grids.items():
            scores = []
            for cfg in grid:
                recs = [run_arm(env, oc, arm, cfg, task, s, args) for s in args.seeds]
                mean = sum(r["modes_found"] for r in recs) / len(recs)
                scores.append(mean)
                tuning.setdefault(arm, []).append({**cfg, "modes_found": [r["modes_found"] for r in recs],
                                                   "mean": mean, "cpu_s": sum(r["cpu_s"] for r in recs)})
                print(f"tune {args.tune_tf} {arm} {cfg}: mean {mean:.1f}", flush=True)
            picked[arm] = grid[max(range(len(grid)), key=scores.__getitem__)]
        print("picked:", picked, flush=True)

    # ---- held-out TFs
    runs, summary = {}, {}
    for tf in args.tf:
        task = load_task(tf)
        for arm in args.arms:
            for seed in args.seeds:
                rec = run_arm(env, oc, arm, picked[arm], task, seed, args)
                runs.setdefault(tf, {}).setdefault(arm, {})[seed] = rec
                print(f"{tf} {arm} seed {seed}: {rec['modes_found']} modes in {rec['curve'][-1][0]} samples "
                      f"({rec['cpu_s']:.0f} CPU-s)", flush=True)
            v = runs[tf][arm]
            summary.setdefault(tf, {})[arm] = sum(r["modes_found"] for r in v.values()) / len(v)
    out = {"task": f"TFBind8 reward (R = 10 max(r,1e-3)^3) on held-out TFs, modes = top {N_MODES} 8-mers",
           "args": vars(args),
           "pretraining": {"iterations": args.pretrain_iters, "batch": args.pretrain_batch,
                           "trajectories": args.pretrain_iters * args.pretrain_batch, "cpu_s": pre_cpu,
                           "reward_calls": 0, "mean_success_prob": float(succ.mean()),
                           "min_success_prob": float(succ.min())},
           "tuning": {"tf": args.tune_tf, "grid": tuning, "picked": picked},
           "mean_modes_found": summary, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1))
    print("mean modes found:", summary)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(args.tf), figsize=(6 * len(args.tf), 4), squeeze=False)
        for ax, tf in zip(axes[0], args.tf):
            for arm, v in runs[tf].items():
                xs = [c[0] for c in next(iter(v.values()))["curve"]]
                ys_ = torch.tensor([[c[1] for c in r["curve"]] for r in v.values()], dtype=torch.float).mean(0)
                ax.plot(xs, ys_, label=f"{arm} (mean of {len(v)} seeds)")
            ax.set_xlabel("samples after pre-training")
            ax.set_ylabel(f"modes found (of {N_MODES}, {tf})")
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.out + ".png", dpi=120)
    except ImportError:
        print("matplotlib missing: no PNG")


if __name__ == "__main__":
    main()
