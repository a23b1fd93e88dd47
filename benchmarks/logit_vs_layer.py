"""Temperature conditioning on HyperGrid: Logit-GFN vs layer conditioning (exact tv per beta).

One TB model per conditioning mode is trained with beta ~ U[1, 3] (rewards tempered to R^beta);
every ``--eval-every`` iterations the exact terminal distribution p_T(. | beta) is compared with
R^beta / Z_beta at each ``--betas`` value.  Writes a JSON report (curves per run, means over
seeds, the floor check "tv <= 0.05 at every beta") and a PNG of tv vs iterations.

    python benchmarks/logit_vs_layer.py --seeds 0 1 2 --iterations 3000 --batch-size 64 --jobs 2 \
        --out benchmarks/results/logit_vs_layer
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gfn import Trainer, TrainerConfig, seed_everything
from gfn.conditioning import BetaSampler, RewardTempering, build_conditional_model, exact_beta_metrics
from gfn.envs import HyperGrid
from gfn.objectives import get_objective
from report import write_json


def train_one(mode: str, seed: int, args) -> dict:
    """Train one conditional model; returns its tv curves."""
    torch.set_num_threads(1)
    seed_everything(seed)
    env = HyperGrid(args.ndim, args.height)
    objective = get_objective(args.objective)
    cond, _, scale = mode.partition(":")  # "logit:action" / "logit:scalar": the scale g(beta); none: the default
    model = build_conditional_model(cond, objective, env, hidden=args.hidden, n_layers=args.n_layers,
                                    logit_scale=scale or "auto")
    sampler = BetaSampler(args.beta_dist)
    trainer = Trainer(env, model, objective, TrainerConfig(batch_size=args.batch_size, lr=args.lr, lr_log_z=args.lr_log_z),
                      cond_fn=sampler, batch_hooks=[RewardTempering()])
    sampler.bind(trainer)
    curve, train_s = [], 0.0
    while trainer.iteration < args.iterations:
        t0 = time.perf_counter()
        trainer.train(min(args.eval_every, args.iterations - trainer.iteration))
        train_s += time.perf_counter() - t0
        m = exact_beta_metrics(env, model, args.betas)
        curve.append({"iteration": trainer.iteration, **{k: round(v, 5) for k, v in m.items()}})
        print(json.dumps({"mode": mode, "seed": seed, **curve[-1]}), flush=True)
    return {"mode": mode, "seed": seed, "curve": curve, "ms_per_iter": 1000.0 * train_s / args.iterations,
            "n_parameters": sum(p.numel() for p in model.parameters())}


def summarise(runs: list[dict], betas: list[float], floor: float) -> dict:
    """Mean tv over seeds at every evaluation, per mode, and the floor check at the end."""
    out: dict = {}
    for mode in dict.fromkeys(r["mode"] for r in runs):
        rs = [r for r in runs if r["mode"] == mode]
        its = [c["iteration"] for c in rs[0]["curve"]]
        mean = {f"beta{b:g}": [sum(r["curve"][i][f"tv_exact_beta{b:g}"] for r in rs) / len(rs) for i in range(len(its))]
                for b in betas}
        final = {k: v[-1] for k, v in mean.items()}
        out[mode] = {"iterations": its, "mean_tv": mean, "final_mean_tv": final,
                     "final_max_tv_over_seeds": {f"beta{b:g}": max(r["curve"][-1][f"tv_exact_beta{b:g}"] for r in rs)
                                                 for b in betas},
                     "floor_met_by_mean": all(v <= floor for v in final.values()),
                     "auc_mean_tv": sum(sum(v) for v in mean.values()) / (len(its) * len(betas)),
                     "ms_per_iter": sum(r["ms_per_iter"] for r in rs) / len(rs)}
    return out


def plot(summary: dict, betas: list[float], path: str, title: str) -> None:
    """tv vs iterations, one panel per beta, one line per mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(betas), figsize=(4.2 * len(betas), 3.4), sharey=True)
    axes = [axes] if len(betas) == 1 else axes
    for ax, b in zip(axes, betas):
        for mode, s in summary.items():
            ax.plot(s["iterations"], s["mean_tv"][f"beta{b:g}"], marker="o", ms=3, label=mode)
        ax.axhline(0.05, color="grey", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"beta = {b:g}")
        ax.set_xlabel("iteration")
    axes[0].set_ylabel("exact tv (mean over seeds)")
    axes[-1].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--modes", nargs="+", default=["logit:scalar", "logit:action", "layer", "logit+layer:scalar"],
                   help="logit:scalar (one scale: the paper's Logit-GFN), logit:action (one scale per action), "
                        "layer, logit+layer:scalar; without ':' the library default (per action on HyperGrid)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--objective", default="tb")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--beta-dist", default="uniform:1,3")
    p.add_argument("--betas", nargs="+", type=float, default=[1.0, 2.0, 3.0])
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--floor", type=float, default=0.05)
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (one thread each)")
    p.add_argument("--out", default="benchmarks/results/logit_vs_layer", help="writes <out>.json and <out>.png")
    args = p.parse_args(argv)
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(train_one, *zip(*[(m, s, args) for s in args.seeds for m in args.modes])))
    else:
        runs = [train_one(mode, seed, args) for seed in args.seeds for mode in args.modes]
    summary = summarise(runs, args.betas, args.floor)
    report = {"setting": {k: v for k, v in vars(args).items() if k != "out"},
              "env": f"hypergrid {args.ndim}D h{args.height}", "summary": summary, "runs": runs}
    write_json(args.out + ".json", report)
    plot(summary, args.betas, args.out + ".png",
         f"{report['env']}, {args.objective}, beta ~ {args.beta_dist}, batch {args.batch_size}, seeds {args.seeds}")
    print(json.dumps({m: {k: s[k] for k in ("final_mean_tv", "floor_met_by_mean", "auc_mean_tv", "ms_per_iter")}
                      for m, s in summary.items()}, indent=1))
    return report


if __name__ == "__main__":
    main()
