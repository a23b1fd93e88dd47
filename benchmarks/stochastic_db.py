"""Stochastic DB against plain DB and TB on the sticky HyperGrid (exact tv to R/Z).

Sticky HyperGrid 2-D, height 8, alpha 0.25 (Pan et al. 2023's rule: at states off the upper
edges a non-exit action is replaced with probability alpha by a uniformly random move), the
library's HyperGrid reward (R0=0.1, R1=0.5, R2=2).  Every objective gets the same model
(shared 2 x ``hidden`` trunk, learned P_B, flow head where needed), batch, learning rate and
iterations; the exact terminal distribution of the trained policy *with the sticky dynamics* is
compared to R/Z (:mod:`gfn.metrics.stochastic`).  ``stochastic_db`` is run with the learned
dynamics model (the paper's method) and with the exact transition probabilities.

    python benchmarks/stochastic_db.py --iterations 3000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time

from report import write_json

RUNS = {
    "stochastic_db_learned": ("stochastic_db", {"dynamics": "learned"}),
    "stochastic_db_exact": ("stochastic_db", {"dynamics": "exact"}),
    "db": ("db", {}),
    "tb": ("tb", {}),
}


def train_one(name: str, seed: int, args) -> dict:
    """Train one objective with one seed; returns its exact-tv curve."""
    import torch
    torch.set_num_threads(1)
    from gfn import Trainer, TrainerConfig, seed_everything
    from gfn.envs import HyperGrid
    from gfn.envs.stochastic import StickyActions
    from gfn.metrics.stochastic import stochastic_exact_metrics
    from gfn.objectives import get_objective

    seed_everything(seed)
    env = StickyActions(HyperGrid(args.ndim, args.height), alpha=args.alpha, rule=args.rule)
    obj_name, kw = RUNS[name]
    objective = get_objective(obj_name, **kw)
    model = objective.build_model(env, hidden=args.hidden, n_layers=2)
    trainer = Trainer(env, model, objective, TrainerConfig(batch_size=args.batch_size, lr=args.lr))
    curve, t0 = [], time.time()
    done = 0
    while done < args.iterations:
        k = min(args.eval_every, args.iterations - done)
        trainer.train(k)
        done += k
        m = stochastic_exact_metrics(env, model)
        curve.append({"iteration": done, "samples": done * args.batch_size, "tv_exact": m["tv_exact"],
                      "jsd_exact": m["jsd_exact"]})
        print(f"{name} seed {seed} it {done}: tv {m['tv_exact']:.4f}", flush=True)
    return {"name": name, "objective": obj_name, "kwargs": kw, "seed": seed, "curve": curve,
            "final_tv_exact": curve[-1]["tv_exact"], "seconds": time.time() - t0}


def main() -> None:
    """Run every objective and seed, write the JSON report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--alpha", type=float, default=0.25)
    p.add_argument("--rule", default="pan2023")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--out", default="benchmarks/results/stochastic_db.json")
    args = p.parse_args()
    results = [train_one(name, seed, args) for seed in args.seeds for name in args.runs]
    summary = {}
    for name in args.runs:
        tvs = [r["final_tv_exact"] for r in results if r["name"] == name]
        summary[name] = {"final_tv_exact": tvs, "mean": sum(tvs) / len(tvs)}
    report = {"setting": {k: v for k, v in vars(args).items() if k != "out"},
              "env": f"StickyActions(HyperGrid({args.ndim}, {args.height}), alpha={args.alpha}, rule={args.rule})",
              "summary": summary, "runs": results}
    write_json(args.out, report)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
