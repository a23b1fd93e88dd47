"""Command line of the diffusion samplers: ``examples/train_diffusion.py`` and ``gfn train --env diffusion``.

Trains a diffusion sampler (GFlowNet over (x, t)) on an unnormalised density and reports log Z metrics.

    python examples/train_diffusion.py --target gmm25 --steps 100 --objective tb --exploration 0.2 \
        --iterations 25000 --batch-size 300 --seed 0 --json-out runs/tb.json --out runs/tb

Objectives ``tb | vargrad | subtb | fl-subtb | db | pis``; ``--langevin`` (Langevin parametrisation),
``--learn-variance`` (learned forward variance), ``--backward vp`` (variance-preserving reference
process instead of the Brownian bridge), ``--learn-backward`` (learned backward mean/variance),
``--exploration F`` (extra forward std decaying to
0), ``--local-search`` (MALA + rank buffer, alternating backward trajectories).  The defaults of
every option are Sendera et al. 2024's (GFNOrg/gfn-diffusion); their full protocol is 25,000
iterations of batch 300 at T = 100.  Writes one JSON object (``--json-out``) with
``delta_log_z`` (|log Z - ELBO| from ``--eval-samples`` forward samples), ``delta_log_z_iw``,
``delta_log_z_eubo`` (null without an exact sampler), ``w2`` (squared, POT), ``ess``,
``log_z_elbo``, ``log_z_iw``, the budget (``cpu_seconds``, ``wall_seconds``,
``ms_per_iteration``) and all flags; ``--out DIR`` adds TensorBoard scalars and ``density.png``
(samples over the target's contours; the first two coordinates for d > 2).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def parse(argv=None, prog=None) -> argparse.Namespace:
    """Parse the flags (see the module docstring)."""
    p = argparse.ArgumentParser(prog=prog, description="Train a diffusion sampler (GFlowNet over (x, t)).")
    p.add_argument("--target", default="gmm25", help="gmm9 | gmm25 | gmm40 | funnel | manywell")
    p.add_argument("--dim", type=int, default=None, help="target dimension (funnel 10, manywell 8 by default)")
    p.add_argument("--steps", type=int, default=100, help="T, the number of diffusion steps")
    p.add_argument("--objective", default="tb", choices=["tb", "vargrad", "subtb", "fl-subtb", "db", "pis"])
    p.add_argument("--exploration", type=float, default=0.0, help="extra forward std (authors: 0.2 / 0.1 with LS)")
    p.add_argument("--exploration-decay", type=int, default=None,
                   help="iterations until exploration reaches 0 (default min(5000, iterations/2))")
    p.add_argument("--local-search", action="store_true")
    p.add_argument("--langevin", action="store_true")
    p.add_argument("--learn-variance", action="store_true")
    p.add_argument("--backward", default="bridge", choices=["bridge", "vp"],
                   help="reference backward process: Brownian bridge (default) or variance-preserving (DDS)")
    p.add_argument("--beta-min", type=float, default=0.1, help="VP noise schedule at the data end")
    p.add_argument("--beta-max", type=float, default=20.0, help="VP noise schedule at the noise end")
    p.add_argument("--learn-backward", action="store_true",
                   help="learned backward mean/variance corrections (authors' --learn_pb)")
    p.add_argument("--pb-scale-range", type=float, default=0.1)
    p.add_argument("--lr-back", type=float, default=None, help="backward head learning rate (default --lr)")
    p.add_argument("--rescore-log-pf", action="store_true",
                   help="forward iterations recompute log P_F in a second pass instead of keeping the rollout's "
                        "(DiffusionConfig.keep_log_pf=False; same loss, slower)")
    p.add_argument("--iterations", type=int, default=25000)
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=None, help="default 1e-1 (tb/vargrad/pis), 1e-2 (db/subtb)")
    p.add_argument("--lr-flow", type=float, default=1e-2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--harmonics", type=int, default=64)
    p.add_argument("--joint-layers", type=int, default=2)
    p.add_argument("--sigma", type=float, default=None, help="diffusion scale (default sqrt(t_scale) of the target)")
    p.add_argument("--subtb-lambda", type=float, default=2.0)
    p.add_argument("--ls-cycle", type=int, default=100)
    p.add_argument("--ls-steps", type=int, default=200)
    p.add_argument("--ls-burn-in", type=int, default=100)
    p.add_argument("--ls-step-size", type=float, default=0.1)
    p.add_argument("--buffer-size", type=int, default=600_000)
    p.add_argument("--rank-weight", type=float, default=0.01)
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=0, help="also evaluate every N iterations (0: only at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", default=None)
    p.add_argument("--out", default=None, help="folder for TensorBoard logs and density.png")
    return p.parse_args(argv)


def density_png(trainer, samples: torch.Tensor, path: str) -> None:
    """Samples (first two coordinates) over contours of the target's log-density."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = samples[:, :2].double()
    lo = torch.quantile(s, 0.005, 0).min().item() - 1.0
    hi = torch.quantile(s, 0.995, 0).max().item() + 1.0
    if trainer.env.target is not None and trainer.env.target.name.startswith("gmm"):
        lo, hi = -13.0, 13.0
    g = torch.linspace(lo, hi, 200, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.zeros(xx.numel(), trainer.env.dim, dtype=torch.float64)
    pts[:, 0], pts[:, 1] = xx.reshape(-1), yy.reshape(-1)
    with torch.no_grad():
        lr = trainer.env.log_reward(pts.to(torch.float32)).reshape(200, 200).double()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contour(xx.numpy(), yy.numpy(), lr.clamp_min(lr.max() - 30).numpy(), levels=30, cmap="viridis",
               linewidths=0.6)
    ax.scatter(s[:, 0].numpy(), s[:, 1].numpy(), s=2, c="red", alpha=0.5)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_title("samples over log R contours (x1, x2)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def main(argv=None, prog=None) -> dict:
    """Train, evaluate, write JSON / TensorBoard / density.png; returns the result dict."""
    args = parse(argv, prog)
    from gfn.envs.diffusion import DiffusionConfig, build

    cfg = DiffusionConfig(
        objective=args.objective, iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
        lr_log_z=args.lr_log_z, lr_flow=args.lr_flow, lr_back=args.lr_back, exploration=args.exploration,
        exploration_decay=args.exploration_decay, local_search=args.local_search, ls_cycle=args.ls_cycle,
        ls_steps=args.ls_steps, ls_burn_in=args.ls_burn_in, ls_step_size=args.ls_step_size,
        buffer_size=args.buffer_size, rank_weight=args.rank_weight, subtb_lambda=args.subtb_lambda,
        keep_log_pf=not args.rescore_log_pf, seed=args.seed)
    for k in ("eval_samples",):
        if getattr(args, k) < 2:
            raise SystemExit(f"--{k.replace('_', '-')} must be >= 2")
    torch.manual_seed(args.seed)
    trainer = build(args.target, steps=args.steps, sigma=args.sigma, dim=args.dim, hidden=args.hidden,
                    harmonics=args.harmonics, joint_layers=args.joint_layers, langevin=args.langevin,
                    learn_variance=args.learn_variance, config=cfg, backward=args.backward,
                    beta_min=args.beta_min, beta_max=args.beta_max, learn_backward=args.learn_backward,
                    pb_scale_range=args.pb_scale_range)
    writer = None
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(args.out)
        except ImportError:
            writer = None
    history = []

    def callback(tr, it, loss):
        if writer is not None and it % 10 == 0:
            writer.add_scalar("train/loss", loss, it)
        if args.eval_every and it % args.eval_every == 0 and it < args.iterations:
            m = tr.evaluate(args.eval_samples, w2=False)
            row = {"iteration": it, **{k: m[k] for k in ("log_z_elbo", "log_z_iw", "ess", "delta_log_z")}}
            history.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k != "iteration" and v is not None:
                        writer.add_scalar(f"eval/{k}", v, it)
            print(json.dumps(row), flush=True)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    trainer.train(callback=callback)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    m = trainer.evaluate(args.eval_samples)
    samples = m.pop("samples")
    m.pop("exact_samples")
    result = {**m, "target": args.target, "dim": trainer.env.dim, "sigma": trainer.env.sigma,
              "iterations": args.iterations, "batch_size": args.batch_size, "steps": args.steps,
              "cpu_seconds": cpu, "wall_seconds": wall, "ms_per_iteration": 1000 * wall / args.iterations,
              "cpu_ms_per_iteration": 1000 * cpu / args.iterations, "torch_threads": torch.get_num_threads(),
              "flags": {k: v for k, v in vars(args).items() if k not in ("json_out", "out")},
              "history": history}
    result.update({k: v for k, v in vars(args).items() if k not in ("json_out", "out")})
    if args.out:
        fig = density_png(trainer, samples, os.path.join(args.out, "density.png"))
        if writer is not None:
            writer.add_figure("density", fig, args.iterations)
            for k in ("log_z_elbo", "log_z_iw", "ess", "delta_log_z", "w2"):
                if result.get(k) is not None:
                    writer.add_scalar(f"eval/{k}", result[k], args.iterations)
            writer.close()
    if args.json_out:
        d = os.path.dirname(args.json_out)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("delta_log_z", "delta_log_z_iw", "delta_log_z_eubo", "w2", "ess",
                                              "log_z_elbo", "cpu_seconds", "ms_per_iteration")}))
    return result


