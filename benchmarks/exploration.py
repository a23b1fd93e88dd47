"""Exploration on a sparse HyperGrid: modes found against samples for TB, TS-GFN and GAFN.

Sparse HyperGrid (``SparseHyperGridReward``: R = 1 on the corner-band cells, ``eps``
elsewhere), ``--ndim`` x ``--height``.  Every method trains TB with the same model (shared
2 x ``hidden`` trunk, learned P_B), batch, learning rate and number of iterations, so every
method draws the same number of on-policy samples; a mode is found when a training sample lands
on it.  Methods: ``tb``; ``ts`` (TS-GFN: ``--heads`` P_F heads, bootstrap probability ``--p``,
optionally the authors' randomized priors ``--prior-scale`` and per-head log Z ``--head-log-z``,
``gfn.exploration``); ``gafn`` (RND intrinsic reward ``--eta``, ``gfn.intrinsic``; ``--intrinsic-mode``
edge (default), state, or flow: the GAFN authors' TB form with a learned state flow).
``--reward gafn`` uses the GAFN paper's grid (``GAFNGridReward``) instead.
Writes ``<out>.json`` (curves per seed, means) and ``<out>.png``.

    python benchmarks/exploration.py --seeds 1 2 3 --ndim 4 --height 16
    python benchmarks/exploration.py --seeds 1 2 3 --ndim 4 --height 8 --out benchmarks/results/exploration_sparse_hypergrid_4d_h8
    python benchmarks/exploration.py --reward gafn --eps 1e-8 --ndim 2 --height 64 --hidden 256 \
        --methods gafn --rnd-protocol paper --eta 0.005 --intrinsic-mode flow --iterations 4000
"""

from __future__ import annotations

import argparse
import json
import time

from report import write_json

METHODS = ("tb", "ts", "gafn")


def train_one(method: str, seed: int, args) -> dict:
    """One method, one seed: distinct modes found after every ``--record-every`` iterations."""
    import torch
    torch.set_num_threads(1)
    from gfn import Trainer, TrainerConfig, seed_everything
    from gfn.envs.hypergrid import GAFNGridReward, HyperGrid, SparseHyperGridReward
    from gfn.exploration import install_thompson
    from gfn.intrinsic import install_intrinsic
    from gfn.objectives import get_objective

    seed_everything(seed)
    reward = (GAFNGridReward(args.height, eps=args.eps) if args.reward == "gafn"
              else SparseHyperGridReward(args.height, eps=args.eps))
    env = HyperGrid(args.ndim, args.height, reward=reward)
    modes = env.mode_mask()
    objective = get_objective(args.objective)
    model = objective.build_model(env, hidden=args.hidden, n_layers=2)
    trainer = Trainer(env, model, objective, TrainerConfig(batch_size=args.batch_size, lr=args.lr,
                                                            lr_log_z=args.lr_log_z,
                                                            epsilon=args.epsilon_of[method]))
    if method == "ts":
        install_thompson(trainer, args.heads, args.p, prior_scale=args.prior_scale, head_log_z=args.head_log_z)
    elif method == "gafn":
        from gfn.intrinsic import PAPER_RND
        install_intrinsic(trainer, args.eta, args.intrinsic_mode,
                          **(PAPER_RND if args.rnd_protocol == "paper" else {}))
    seen = torch.zeros_like(modes)
    curve = []

    def hook(tr, it, info):
        seen[env.state_index(info.batch.terminal_states)] = True
        if it % args.record_every == 0:
            curve.append({"iteration": it, "samples": tr.n_samples, "modes_found": int((seen & modes).sum())})

    trainer.hooks.append(hook)
    t0, c0 = time.time(), time.process_time()
    trainer.train(args.iterations)
    print(f"{method} seed {seed}: {curve[-1]['modes_found']} of {int(modes.sum())} modes "
          f"after {curve[-1]['samples']} samples ({time.time() - t0:.0f} s)", flush=True)
    return {"method": method, "seed": seed, "curve": curve, "modes_found": curve[-1]["modes_found"],
            "n_modes": int(modes.sum()), "seconds": time.time() - t0,
            "cpu_seconds": time.process_time() - c0, "epsilon": args.epsilon_of[method]}


def parse_epsilon(values: list, methods) -> dict:
    """``["0.05"]`` -> that epsilon for every method; ``["tb=0.05", ...]`` -> per method (else 0)."""
    if len(values) == 1 and "=" not in values[0]:
        eps = {m: float(values[0]) for m in methods}
    else:
        eps = {m: 0.0 for m in methods}
        for v in values:
            name, sep, val = v.partition("=")
            if not sep or name not in METHODS:
                raise SystemExit(f"--epsilon takes one number or METHOD=VALUE pairs (methods {METHODS}), got {v!r}")
            eps[name] = float(val)
    if any(not 0.0 <= e <= 1.0 for e in eps.values()):
        raise SystemExit(f"--epsilon values must lie in [0, 1], got {eps}")
    return eps


def plot(report: dict, path: str) -> None:
    """Mean modes found against samples, one line per method (shaded: min-max over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in report["setting"]["methods"]:
        runs = [r for r in report["runs"] if r["method"] == method]
        xs = [c["samples"] for c in runs[0]["curve"]]
        ys = [[c["modes_found"] for c in r["curve"]] for r in runs]
        mean = [sum(col) / len(col) for col in zip(*ys)]
        ax.plot(xs, mean, label=f"{method} (mean of {len(runs)} seeds)")
        ax.fill_between(xs, [min(col) for col in zip(*ys)], [max(col) for col in zip(*ys)], alpha=0.2)
    ax.axhline(runs[0]["n_modes"], color="gray", ls=":", lw=1)
    s = report["setting"]
    family = "GAFN grid" if s.get("reward") == "gafn" else "sparse HyperGrid"
    ax.set_title(f"{family} {s['ndim']}D h{s['height']}, eps={s['eps']}")
    ax.set_xlabel("on-policy samples")
    ax.set_ylabel("distinct modes found")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def merge(paths: list, out: str) -> dict:
    """Join reports, ``PATH`` (all its methods) or ``PATH:METHOD`` (one of them), into one; each
    method keeps the settings it was run with under ``settings``."""
    picks = []
    for q in paths:
        path, _, only = q.rpartition(":") if q.rsplit(":", 1)[-1] in METHODS else (q, "", "")
        r = json.load(open(path))
        methods = [only] if only else r["setting"]["methods"]
        if only and only not in r["setting"]["methods"]:
            raise SystemExit(f"--merge: {path} has no method {only}")
        picks.append((q, r, methods))
    budgets = {(tuple(r["setting"]["seeds"]), r["samples_per_method"], r["setting"]["ndim"],
                r["setting"]["height"], r["setting"]["eps"], r["setting"].get("reward", "sparse"))
               for _, r, _ in picks}
    if len(budgets) != 1:
        raise SystemExit(f"--merge needs the same seeds, samples, grid and eps in every report, got {budgets}")
    runs, summary, settings = [], {}, {}
    for q, r, methods in picks:
        for m in methods:
            if m in summary:
                raise SystemExit(f"--merge: method {m} appears twice ({q})")
            summary[m], settings[m] = r["summary"][m], dict(r["setting"], source=q)
            runs += [x for x in r["runs"] if x["method"] == m]
    setting = dict(picks[0][1]["setting"], methods=list(summary))
    report = {"setting": setting, "settings": settings, "samples_per_method": picks[0][1]["samples_per_method"],
              "summary": summary, "runs": runs}
    write_json(out + ".json", report)
    plot(report, out + ".png")
    print(json.dumps(summary, indent=1))
    return report


def main(argv=None) -> dict:
    """Run every method and seed (or ``--merge`` earlier reports), write JSON and PNG; returns the report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ndim", type=int, default=4)
    p.add_argument("--height", type=int, default=16)
    p.add_argument("--reward", default="sparse", choices=("sparse", "gafn"),
                   help="sparse: SparseHyperGridReward (corner-band modes); gafn: GAFNGridReward (the GAFN "
                        "paper's grid, modes on {1, height-2}^ndim except (1, ..., 1))")
    p.add_argument("--eps", type=float, default=1e-4)
    p.add_argument("--objective", default="tb")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--p", type=float, default=0.5)
    p.add_argument("--prior-scale", type=float, default=0.0,
                   help="TS-GFN randomized-prior scale (frozen random trunk and heads added to the logits, "
                        "as in the authors' code; 0: none)")
    p.add_argument("--head-log-z", action="store_true",
                   help="TS-GFN: one log Z per head (the authors' code) instead of a shared one")
    p.add_argument("--eta", type=float, default=1.0)
    p.add_argument("--intrinsic-mode", default="edge", choices=("edge", "state", "flow"))
    p.add_argument("--rnd-protocol", default="ours", choices=("ours", "paper"),
                   help="paper: the GAFN authors' RND (2 x 256 LeakyReLU, 128 outputs, bonus = L2 norm of "
                        "the error; their bonus scale 0.1 is --eta 0.1)")
    p.add_argument("--epsilon", nargs="+", default=["0"],
                   help="epsilon-uniform exploration of the sampler: one value for every method, "
                        "or METHOD=VALUE pairs (e.g. tb=0.05 ts=0 gafn=0; unnamed methods get 0)")
    p.add_argument("--record-every", type=int, default=25)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--out", default="benchmarks/results/exploration_sparse_hypergrid_4d_h16")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="build the report from earlier runs of this script (one method each, e.g. each "
                        "with its tuned settings) instead of training; same seeds and budget required")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    args.epsilon_of = parse_epsilon(args.epsilon, args.methods)
    runs = [train_one(m, s, args) for s in args.seeds for m in args.methods]
    summary = {}
    for m in args.methods:
        found = [r["modes_found"] for r in runs if r["method"] == m]
        summary[m] = {"modes_found": found, "mean": sum(found) / len(found)}
    report = {"setting": {k: v for k, v in vars(args).items() if k not in ("out", "epsilon")},
              "samples_per_method": args.iterations * args.batch_size, "summary": summary, "runs": runs}
    write_json(args.out + ".json", report)
    plot(report, args.out + ".png")
    print(json.dumps(summary, indent=1))
    return report


if __name__ == "__main__":
    main()
