"""Temperature conditioning: Logit-GFN vs layer conditioning (exact tv per beta), HyperGrid or TFBind8.

One TB model per conditioning mode is trained with beta ~ U[1, 3] (rewards tempered to R^beta);
every ``--eval-every`` iterations the exact terminal distribution p_T(. | beta) is compared with
R^beta / Z_beta at each ``--betas`` value.  Writes a JSON report (curves per run, means over
seeds, the floor check "tv <= 0.05 at every beta") and a PNG of tv vs iterations.

``--protocol paper`` trains as the Logit-GFN authors' code does (logit-gfn, mode_seeking.yaml):
each round samples 32 objects (beta ~ U[1, 3], epsilon 0.01) and takes one gradient step on
them, then one on 32 objects from a reward-prioritised replay of everything sampled
(:class:`gfn.local_search.PaperRounds` without local search); lr 1e-4, log Z(beta) lr 1e-2,
``logit`` = the authors' unconstrained scale network with logits clipped to +-20
(``--logit-scale paper``), ``layer`` = the beta embedding after the state encoder
(``--layer-embed-at scorer``).  TFBind8 uses their prepend/append MDP, and the report also
counts reference modes among all sampled objects.  ``--iterations`` counts gradient steps
(two per round).

    python benchmarks/logit_vs_layer.py --seeds 0 1 2 --iterations 3000 --batch-size 64 --jobs 2 \
        --out benchmarks/results/logit_vs_layer
    python benchmarks/logit_vs_layer.py --task tfbind8 --protocol paper --seeds 0 1 2 --iterations 4000 \
        --out benchmarks/results/logit_vs_layer_tfbind8_paper
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from gfn import Trainer, TrainerConfig, seed_everything
from gfn.conditioning import BetaSampler, RewardTempering, build_conditional_model, exact_beta_metrics
from gfn.envs import HyperGrid
from gfn.local_search import PaperRounds
from gfn.objectives import get_objective
from gfn.replay import RewardPrioritizedReplay
from report import write_json


def make_env(args):
    """HyperGrid (``--ndim``, ``--height``) or TFBind8 (prepend/append MDP under the paper protocol)."""
    if args.task == "hypergrid":
        return HyperGrid(args.ndim, args.height)
    from gfn.envs.sequences import TFBind8
    return TFBind8(args.data_dir, mdp="prepend_append" if args.protocol == "paper" else "append")


def train_one(mode: str, seed: int, args) -> dict:
    """Train one conditional model; returns its tv curves (and modes found on TFBind8)."""
    torch.set_num_threads(1)
    seed_everything(seed)
    env = make_env(args)
    objective = get_objective(args.objective)
    cond, _, scale = mode.partition(":")  # "logit:action" / "logit:scalar": the scale g(beta); none: the default
    paper = args.protocol == "paper"
    if paper and not scale:
        scale = "paper"
    model = build_conditional_model(cond, objective, env, hidden=args.hidden, n_layers=args.n_layers,
                                    logit_scale=scale if cond != "layer" and scale else "auto",
                                    layer_embed_at="scorer" if paper and cond == "layer" else "input")
    sampler = BetaSampler(args.beta_dist)
    lr_log_z_cond = args.lr_log_z_cond or args.lr_log_z
    trainer = Trainer(env, model, objective,
                      TrainerConfig(batch_size=args.batch_size, lr=args.lr, lr_log_z=lr_log_z_cond, epsilon=args.epsilon),
                      cond_fn=sampler, batch_hooks=[RewardTempering()])
    sampler.bind(trainer)
    rounds = None
    if paper:
        rounds = PaperRounds(n_calls=args.batch_size, steps_per_batch=1, replay_batch=args.batch_size)
        trainer.replay = RewardPrioritizedReplay(10 ** 7)
        trainer.batch_source = rounds
    counter = None
    if args.task == "tfbind8":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from local_search_modes import ModeCounter
        counter = ModeCounter(env)
    curve, train_s = [], 0.0
    while trainer.iteration < args.iterations:
        t0 = time.perf_counter()
        trainer.train(min(args.eval_every, args.iterations - trainer.iteration))
        train_s += time.perf_counter() - t0
        m = exact_beta_metrics(env, model, args.betas)
        point = {"iteration": trainer.iteration, **{k: round(v, 5) for k, v in m.items()}}
        if counter is not None and trainer.replay is not None:
            counter.add(trainer.replay.states)  # every sampled object (the paper protocol keeps them all)
            point.update(modes_found=counter.found, samples=rounds.n_reward_calls if rounds else None)
        curve.append(point)
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
        if "modes_found" in rs[0]["curve"][-1]:
            out[mode]["final_modes_found"] = [r["curve"][-1]["modes_found"] for r in rs]
            out[mode]["final_mean_modes_found"] = sum(out[mode]["final_modes_found"]) / len(rs)
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
    p.add_argument("--task", default="hypergrid", choices=["hypergrid", "tfbind8"])
    p.add_argument("--protocol", default="library", choices=["library", "paper"],
                   help="paper: the authors' rounds, learning rates, scale network and layer layout (see above)")
    p.add_argument("--data-dir", default=os.environ.get("GFN_DATA_DIR") or "../shared/data")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--objective", default="tb")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 (library), 32 (paper)")
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3 (library), 1e-4 (paper)")
    p.add_argument("--lr-log-z", type=float, default=0.1)
    p.add_argument("--lr-log-z-cond", type=float, default=None, help="log Z(beta) lr (default: --lr-log-z; paper 1e-2)")
    p.add_argument("--epsilon", type=float, default=None, help="exploration (default: 0 library, 0.01 paper)")
    p.add_argument("--hidden", type=int, default=None, help="default: 256 (library), 128 (paper)")
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--beta-dist", default="uniform:1,3")
    p.add_argument("--betas", nargs="+", type=float, default=[1.0, 2.0, 3.0])
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--floor", type=float, default=0.05)
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (one thread each)")
    p.add_argument("--out", default="benchmarks/results/logit_vs_layer", help="writes <out>.json and <out>.png")
    args = p.parse_args(argv)
    paper = args.protocol == "paper"
    for key, lib, pap in (("batch_size", 64, 32), ("lr", 1e-3, 1e-4), ("lr_log_z_cond", 0.0, 1e-2),
                          ("epsilon", 0.0, 0.01), ("hidden", 256, 128)):
        if getattr(args, key) is None:
            setattr(args, key, pap if paper else lib)
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(train_one, *zip(*[(m, s, args) for s in args.seeds for m in args.modes])))
    else:
        runs = [train_one(mode, seed, args) for seed in args.seeds for mode in args.modes]
    summary = summarise(runs, args.betas, args.floor)
    report = {"setting": {k: v for k, v in vars(args).items() if k != "out"},
              "env": f"hypergrid {args.ndim}D h{args.height}" if args.task == "hypergrid" else
              f"tfbind8 ({'prepend_append' if paper else 'append'})", "summary": summary, "runs": runs}
    write_json(args.out + ".json", report)
    plot(summary, args.betas, args.out + ".png",
         f"{report['env']}, {args.objective}, beta ~ {args.beta_dist}, batch {args.batch_size}, "
         f"{args.protocol} protocol, seeds {args.seeds}")
    print(json.dumps({m: {k: s[k] for k in ("final_mean_tv", "floor_met_by_mean", "auc_mean_tv", "ms_per_iter",
                                          "final_mean_modes_found") if k in s}
                      for m, s in summary.items()}, indent=1))
    return report


if __name__ == "__main__":
    main()
