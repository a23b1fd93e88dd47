"""Exact total variation of a PhyloGFN on a taxon subset (all 10,395 rooted trees of 7 taxa).

    python benchmarks/phylo_exact.py --taxa 7 --objective tb --iterations 4000 --batch-size 32 \
        --lr 1e-3 --lr-log-z 0.3 --epsilon 0.05 --seed 0 --out benchmarks/results/phylo_exact_DS1_7.json

Trains on the first ``--taxa`` sequences of the alignment with the parsimony reward (alpha 4,
C = the greedy tree's score) and writes the exact ``tv_exact`` (the model's terminal
distribution pushed through the DAG of all forests vs R / Z) every ``--eval-every`` iterations,
with the CPU seconds used.  ``--lr-decay-at N1,N2`` multiplies every learning rate by
``--lr-decay`` at those iterations.  Same seed, same numbers (one CPU thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import write_json  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="DS1")
    p.add_argument("--taxa", type=int, default=7)
    p.add_argument("--data-dir", default="")
    p.add_argument("--objective", default="tb")
    p.add_argument("--iterations", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=0.3)
    p.add_argument("--epsilon", type=float, default=0.05)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr-decay-at", default="", help="iterations (comma-separated) at which every learning rate is "
                   "multiplied by --lr-decay (empty: never)")
    p.add_argument("--lr-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    from gfn import metrics
    from gfn.envs.phylo import PhyloTree
    from gfn.objectives import get_objective
    from gfn.trainer import Trainer, TrainerConfig
    from gfn.utils import seed_everything

    seed_everything(args.seed)
    env = PhyloTree(args.dataset, taxa=args.taxa, data_dir=args.data_dir)
    obj = get_objective(args.objective)
    model = obj.build_model(env, hidden=args.hidden, n_layers=2, uniform_pb=True)
    trainer = Trainer(env, model, obj, TrainerConfig(batch_size=args.batch_size, lr=args.lr, lr_log_z=args.lr_log_z,
                                                     epsilon=args.epsilon, grad_clip=10.0))
    decay_at = {int(v) for v in args.lr_decay_at.split(",") if v.strip()}
    cpu0 = time.process_time()
    trace = []
    for it in range(1, args.iterations + 1):
        if it in decay_at:  # a step schedule: the lower rate averages out the TB gradient noise
            for group in trainer.optimizer.param_groups:
                group["lr"] *= args.lr_decay
        info = trainer.train_step()
        if it % args.eval_every == 0 or it == args.iterations:
            with torch.no_grad():
                m = metrics.exact_metrics(env, model)
            trace.append({"iteration": it, "tv_exact": m["tv_exact"], "jsd_exact": m["jsd_exact"],
                          "loss": info.loss, "cpu_s": round(time.process_time() - cpu0, 1)})
            print(trace[-1], flush=True)
    report = {"dataset": args.dataset, "taxa": env.n, "C": env.C, "alpha": env.alpha, "args": vars(args),
              "log_z_true": m["log_z_true"], "final_tv_exact": trace[-1]["tv_exact"], "trace": trace}
    if args.out:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
