"""OC-GFN on the TF-binding family: reward-free pre-training, then fine-tuning on a held-out TF.

Pre-training (once, seed 0) uses no reward at all: targets are uniform random 8-mers over ACGT, so
it does not depend on any transcription factor.  Each arm then trains for the same number of
samples on the held-out TF's reward (the TFBind8 transform ``R = 10 max(r, 1e-3)^3``):

* ``scratch``   : TB with a plain MLP policy (same width), from random weights;
* ``oc_frozen`` : TB on :class:`gfn.outcome.MarginalPolicy` (learned outcome predictor, pre-trained
                  outcome-conditioned network frozen);
* ``oc_tuned``  : the same with the outcome-conditioned network fine-tuned as well.

Modes of the held-out TF: its 328 highest-reward 8-mers (the size of SIX6's reference list);
``modes_found`` counts the distinct modes among all samples so far.  Writes
``benchmarks/results/outcome_pretrain.json`` and ``.png``.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/outcome_pretrain.py --tf PAX6 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import copy
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


def train_tb(env, policy, log_table, mode_codes, n_samples, batch, lr, lr_z, epsilon, gen):
    """TB on the task reward; returns the modes-found curve [(samples, modes)] and the CPU seconds."""
    params = [p for n, p in policy.named_parameters() if p.requires_grad and n != "log_z"]
    opt = torch.optim.Adam([{"params": params, "lr": lr}, {"params": [policy.log_z], "lr": lr_z}], amsgrad=True)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tf", default="PAX6", help="held-out transcription factor (any of tf8mers/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--pretrain-iters", type=int, default=3000)
    ap.add_argument("--pretrain-batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-z", type=float, default=0.05)
    ap.add_argument("--epsilon", type=float, default=0.05)
    ap.add_argument("--arms", nargs="+", default=["scratch", "oc_frozen", "oc_tuned"])
    ap.add_argument("--out", default=str(RESULTS / "outcome_pretrain"))
    args = ap.parse_args()

    env = SequenceEnv(4, 8, mdp="append", alphabet="ACGT")
    log_table = tfbind8_log_rewards(load_escores(str(tf_table_path(None, args.tf))))
    mode_codes = torch.topk(log_table, 328).indices

    # ---- reward-free pre-training (seed 0), budget reported separately
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    oc = OutcomePolicy(env, hidden=args.hidden)
    opt = torch.optim.Adam(oc.parameters(), lr=1e-3)
    t0 = time.process_time()
    for _ in range(args.pretrain_iters):
        pretrain_step(env, oc, opt, args.pretrain_batch, epsilon=0.05, generator=g)
    pre_cpu = time.process_time() - t0
    with torch.no_grad():
        ys = sample_outcomes(env, 4096, torch.Generator().manual_seed(123))
        success = float(success_log_prob(env, oc, ys).exp().mean())
    print(f"pre-training: {args.pretrain_iters} x {args.pretrain_batch} trajectories, {pre_cpu:.0f} CPU-s, "
          f"mean P(x=y|y) on 4096 random outcomes {success:.4f}", flush=True)

    runs = {}
    for arm in args.arms:
        for seed in args.seeds:
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            if arm == "scratch":
                pol = PlainPolicy(env, args.hidden)
            else:
                pol = MarginalPolicy(copy.deepcopy(oc), hidden=args.hidden, finetune_policy=(arm == "oc_tuned"))
            curve, cpu = train_tb(env, pol, log_table, mode_codes, args.samples, args.batch, args.lr, args.lr_z,
                                  args.epsilon, gen)
            runs.setdefault(arm, {})[seed] = {"curve": curve, "cpu_s": cpu, "modes_found": curve[-1][1]}
            print(f"{arm} seed {seed}: {curve[-1][1]} modes in {curve[-1][0]} samples ({cpu:.0f} CPU-s)", flush=True)

    summary = {arm: sum(r["modes_found"] for r in v.values()) / len(v) for arm, v in runs.items()}
    out = {"task": f"TFBind8 reward on {args.tf} (R = 10 max(r,1e-3)^3), modes = top 328 8-mers",
           "args": vars(args),
           "pretraining": {"iterations": args.pretrain_iters, "batch": args.pretrain_batch,
                           "trajectories": args.pretrain_iters * args.pretrain_batch, "cpu_s": pre_cpu,
                           "reward_calls": 0, "mean_success_prob": success},
           "mean_modes_found": summary, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1))
    print("mean modes found:", summary)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm, v in runs.items():
            xs = [c[0] for c in next(iter(v.values()))["curve"]]
            ys_ = torch.tensor([[c[1] for c in r["curve"]] for r in v.values()], dtype=torch.float).mean(0)
            ax.plot(xs, ys_, label=f"{arm} (mean of {len(v)} seeds)")
        ax.set_xlabel("samples after pre-training")
        ax.set_ylabel(f"modes found (of 328, {args.tf})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out + ".png", dpi=120)
    except ImportError:
        print("matplotlib missing: no PNG")


if __name__ == "__main__":
    main()
