"""TB against the VI objectives (reverse KL, forward KL), on-policy and off-policy, on HyperGrid
and the DAG posterior: exact JSD curves (Malkin et al. 2023, "GFlowNets and variational inference").

    python benchmarks/vi_vs_tb.py --out benchmarks/results/vi_vs_tb.json

Every cell (environment x objective x mode x seed) trains in this process, one after the other,
with the library's Trainer, and evaluates the exact JSD between the learned terminal distribution
and the target every ``--eval-every`` iterations.  ``on``: trajectories from P_F; ``off``:
epsilon-uniform exploration (``--epsilon``), importance weighted by the VI objectives (TB needs no
correction).  ``reverse_kl`` uses the local (leave-one-out) baseline.  TB starts log Z at the
importance-sampled estimate of the untrained policy on the DAG (as ``examples/train_dag.py``
does).  Writes the curves and a summary (final JSD, mean and min over seeds, wall time) to JSON,
and a PNG of the curves next to it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

from report import write_json

import gfn
from gfn.envs import HyperGrid
from gfn.envs.dag import DAGEnv
from gfn.envs.dag.metrics import DAGMetrics
from gfn.metrics import exact_metrics
from gfn.metrics.estimated import log_z_estimates
from gfn.objectives import get_objective
from gfn.objectives.vi import BehaviourRecorder

OBJECTIVE_ARGS = {"tb": {}, "reverse_kl": {"baseline": "local"}, "forward_kl": {}, "rws": {}}


def make_env(name: str, args):
    """The environment of a cell and a function model -> exact JSD."""
    if name == "hypergrid":
        env = HyperGrid(args.ndim, args.height)
        return env, lambda model: exact_metrics(env, model)["jsd_exact"]
    env = DAGEnv(args.dag_nodes, args.dag_edges, args.dag_samples, n_heldout=0, data_seed=args.data_seed)
    metrics = DAGMetrics(env)
    return env, lambda model: metrics(model)["jsd_exact"]


def run_cell(env_name: str, objective: str, mode: str, seed: int, args) -> dict:
    """Train one cell; returns its JSD curve and timings."""
    env, jsd_fn = make_env(env_name, args)
    gfn.seed_everything(seed)
    obj = get_objective(objective, **OBJECTIVE_ARGS.get(objective, {}))
    model = obj.build_model(env, hidden=args.hidden)
    if obj.needs_log_z and env_name == "dag":
        with torch.no_grad():
            model.log_z.value.fill_(float(log_z_estimates(env, model, n=1000)["log_z_iw"]))
    iterations = args.iterations_hypergrid if env_name == "hypergrid" else args.iterations_dag
    cfg = gfn.TrainerConfig(batch_size=args.batch_size, lr=args.lr, lr_log_z=args.lr_log_z,
                            epsilon=args.epsilon if mode == "off" else 0.0)
    trainer = gfn.Trainer(env, model, obj, cfg, batch_hooks=[BehaviourRecorder()])
    curve, train_s = [[0, jsd_fn(model)]], 0.0
    while trainer.iteration < iterations:
        n = min(args.eval_every, iterations - trainer.iteration)
        t0 = time.perf_counter()
        trainer.train(n)
        train_s += time.perf_counter() - t0
        curve.append([trainer.iteration, jsd_fn(model)])
    r = {"env": env_name, "objective": objective, "mode": mode, "seed": seed, "iterations": iterations,
         "batch_size": args.batch_size, "final_jsd": curve[-1][1], "train_s": train_s, "curve": curve}
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "curve"}, flush=True)
    return r


def summarise(runs: list) -> list:
    """Mean / min / max of the final JSD over seeds, per (env, objective, mode)."""
    cells = {}
    for r in runs:
        cells.setdefault((r["env"], r["objective"], r["mode"]), []).append(r["final_jsd"])
    out = []
    for (e, o, m), v in sorted(cells.items()):
        out.append({"env": e, "objective": o, "mode": m, "n_seeds": len(v), "final_jsd_mean": sum(v) / len(v),
                    "final_jsd_min": min(v), "final_jsd_max": max(v)})
    return out


def verdict(summary: list) -> list:
    """Whether off-policy TB ends below off-policy reverse KL, per environment (the paper's finding)."""
    lines = []
    for env in sorted({s["env"] for s in summary}):
        get = {(s["objective"], s["mode"]): s["final_jsd_mean"] for s in summary if s["env"] == env}
        if ("tb", "off") in get and ("reverse_kl", "off") in get:
            tb, rkl = get[("tb", "off")], get[("reverse_kl", "off")]
            lines.append(f"{env}: off-policy TB JSD {tb:.4f} vs off-policy reverse KL {rkl:.4f}: "
                         + ("TB better" if tb < rkl else "TB NOT better"))
    return lines


def plot(runs: list, path: str) -> None:
    """One panel per (env, mode): mean JSD over seeds against iterations, one line per objective."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    envs = sorted({r["env"] for r in runs})
    modes = sorted({r["mode"] for r in runs})
    fig, axes = plt.subplots(len(envs), len(modes), figsize=(5 * len(modes), 3.6 * len(envs)), squeeze=False)
    for i, e in enumerate(envs):
        for j, m in enumerate(modes):
            ax = axes[i][j]
            for o in OBJECTIVE_ARGS:
                cs = [r["curve"] for r in runs if (r["env"], r["mode"], r["objective"]) == (e, m, o)]
                if not cs:
                    continue
                xs = [p[0] for p in cs[0]]
                ys = [sum(c[k][1] for c in cs) / len(cs) for k in range(len(xs))]
                ax.plot(xs, [max(y, 1e-5) for y in ys], label=o)
            ax.set_yscale("log")
            ax.set_title(f"{e}, {m}-policy")
            ax.set_xlabel("iteration")
            ax.set_ylabel("exact JSD")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", nargs="+", default=["hypergrid", "dag"], choices=["hypergrid", "dag"])
    p.add_argument("--objectives", nargs="+", default=["tb", "reverse_kl", "forward_kl"], choices=list(OBJECTIVE_ARGS))
    p.add_argument("--modes", nargs="+", default=["on", "off"], choices=["on", "off"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--dag-nodes", type=int, default=4)
    p.add_argument("--dag-edges", type=float, default=4.0)
    p.add_argument("--dag-samples", type=int, default=100)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--iterations-hypergrid", type=int, default=2000)
    p.add_argument("--iterations-dag", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epsilon", type=float, default=0.5, help="epsilon-uniform exploration of the off-policy mode")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vi_vs_tb.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = [run_cell(e, o, m, s, args) for e in args.envs for m in args.modes for o in args.objectives
            for s in args.seeds]
    summary = summarise(runs)
    report = {"config": vars(args), "command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
              "total_s": time.perf_counter() - t0, "summary": summary, "verdict": verdict(summary), "runs": runs}
    write_json(args.out, report)
    plot(runs, os.path.splitext(args.out)[0] + ".png")
    for line in report["verdict"]:
        print(line)
    return report


if __name__ == "__main__":
    main()
