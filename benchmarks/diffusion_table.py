"""Sendera et al. 2024, Table 1: diffusion-sampler rows on 25GMM, Funnel and Manywell-8.

Runs ``examples/train_diffusion.py`` once per (target, row, seed), ``--jobs`` processes at a time, and
writes ``benchmarks/results/diffusion_table.json`` (every run's metrics and budget, plus mean +-
std per cell) and ``benchmarks/results/diffusion_table.md`` (our numbers beside the paper's).
The paper's numbers are mean +- std of Delta log Z over 5 runs at 25,000 iterations of batch 300,
T = 100 (Table 1; Manywell-8 from Table C.3); ours are at the budget given on the command line.

    # a stated CPU budget
    python benchmarks/diffusion_table.py --targets gmm25 --rows tb,tb-expl,tb-expl-ls \
        --iterations 1500 --seeds 0,1,2
    # the authors' full protocol (25k iterations, batch 300, T = 100, seeds 0-4, all rows)
    python benchmarks/diffusion_table.py --protocol paper
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "train_diffusion.py")

# row name -> (label, flags of examples/train_diffusion.py); exploration factors as in the
# authors' commands (0.2 without LS, 0.1 with LS)
ROWS = {
    "tb": ("TB", ["--objective", "tb"]),
    "tb-expl": ("TB + Expl.", ["--objective", "tb", "--exploration", "0.2"]),
    "vargrad-expl": ("VarGrad + Expl.", ["--objective", "vargrad", "--exploration", "0.2"]),
    "fl-subtb": ("FL-SubTB", ["--objective", "fl-subtb"]),
    "fl-subtb-lp": ("FL-SubTB + LP", ["--objective", "fl-subtb", "--langevin"]),
    "tb-expl-ls": ("TB + Expl. + LS", ["--objective", "tb", "--exploration", "0.1", "--local-search"]),
    "tb-expl-lp": ("TB + Expl. + LP", ["--objective", "tb", "--exploration", "0.2", "--langevin"]),
}

TARGETS = {"gmm25": ("25GMM", []), "funnel": ("Funnel", []), "manywell": ("Manywell-8", ["--dim", "8"])}

# Published Delta log Z (mean, std) of Sendera et al. 2024; None where the issue gives no anchor.
PAPER = {
    ("gmm25", "tb"): (1.176, 0.109),
    ("gmm25", "tb-expl"): (0.560, 0.302),
    ("gmm25", "fl-subtb-lp"): (0.209, 0.025),
    ("gmm25", "tb-expl-ls"): (0.171, 0.013),
    ("funnel", "tb"): (0.690, 0.018),
    ("manywell", "tb"): (0.95, None),
}

METRICS = ("delta_log_z", "delta_log_z_iw", "delta_log_z_eubo", "w2", "ess")


def _mean_std(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def run_one(target, row, seed, args, tmp):
    """Run one training in a child process (OMP_NUM_THREADS=1); return its JSON record."""
    out = os.path.join(tmp, f"{target}_{row}_s{seed}.json")
    cmd = [sys.executable, EXAMPLE, "--target", target, *TARGETS[target][1], *ROWS[row][1],
           "--steps", str(args.steps), "--iterations", str(args.iterations),
           "--batch-size", str(args.batch_size), "--eval-samples", str(args.eval_samples),
           "--seed", str(seed), "--json-out", out]
    if args.eval_every:
        cmd += ["--eval-every", str(args.eval_every)]
    if args.exploration_decay is not None and "--exploration" in ROWS[row][1]:
        cmd += ["--exploration-decay", str(args.exploration_decay)]
    if args.reuse and os.path.exists(out):
        with open(out) as f:
            rec = json.load(f)
        if all(rec.get(k) == v for k, v in (("iterations", args.iterations), ("batch_size", args.batch_size),
                                             ("steps", args.steps), ("eval_samples", args.eval_samples))):
            rec["command"] = " ".join(cmd[1:])
            return rec
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(out) as f:
        rec = json.load(f)
    rec["command"] = " ".join(cmd[1:])
    rec["process_wall_seconds"] = time.perf_counter() - t0
    return rec


def fmt(m, s):
    return "" if m is None else f"{m:.3f} +- {s:.3f}" if s is not None else f"{m:.3f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=["budget", "paper"], default="budget",
                   help="paper: 25k iterations, batch 300, T = 100, seeds 0-4, all rows and targets")
    p.add_argument("--targets", default="gmm25,funnel,manywell")
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=0,
                   help="also evaluate every N iterations (each run's JSON keeps the history)")
    p.add_argument("--exploration-decay", type=int, default=None,
                   help="iterations until exploration reaches 0 (authors' --exploration_wd: 5000; default "
                        "min(5000, iterations / 2))")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs in parallel (one thread each); keep <= the number of cores")
    p.add_argument("--out", default=os.path.join(HERE, "results", "diffusion_table"))
    p.add_argument("--reuse", action="store_true",
                   help="reuse a finished run's JSON in OUT_runs/ when its budget matches")
    args = p.parse_args(argv)
    if args.protocol == "paper":
        args.iterations, args.batch_size, args.steps, args.seeds = 25000, 300, 100, "0,1,2,3,4"
        args.exploration_decay = 5000
        args.targets, args.rows = ",".join(TARGETS), ",".join(ROWS)
    targets, rows = args.targets.split(","), args.rows.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    for t in targets:
        if t not in TARGETS:
            raise SystemExit(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    for r in rows:
        if r not in ROWS:
            raise SystemExit(f"unknown row {r!r}; choose from {', '.join(ROWS)}")
    tmp = args.out + "_runs"
    os.makedirs(tmp, exist_ok=True)
    keys = [(t, r, s) for t in targets for r in rows for s in seeds]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {k: pool.submit(run_one, k[0], k[1], k[2], args, tmp) for k in keys}
        for (t, r, s), fut in futures.items():
            rec = fut.result()
            print(json.dumps({"target": t, "row": r, "seed": s,
                              **{k: rec.get(k) for k in METRICS + ("cpu_seconds",)}}), flush=True)
    runs, cells = [], {}
    for t in targets:
        for r in rows:
            recs = [futures[(t, r, s)].result() for s in seeds]
            for s, rec in zip(seeds, recs):
                runs.append({"target": t, "row": r, "seed": s, **{k: v for k, v in rec.items() if k != "history"}})
            cell = {k: _mean_std([x.get(k) for x in recs]) for k in METRICS + ("cpu_seconds",)}
            cell["paper_delta_log_z"] = PAPER.get((t, r))
            cells[f"{t}/{r}"] = cell
    budget = {"iterations": args.iterations, "batch_size": args.batch_size, "steps": args.steps,
              "seeds": seeds, "eval_samples": args.eval_samples, "eval_every": args.eval_every,
              "jobs": args.jobs, "exploration_decay": args.exploration_decay, "protocol": args.protocol}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"budget": budget, "cells": cells, "runs": runs}, f, indent=1)
    lines = [f"Budget: {args.iterations} iterations x batch {args.batch_size}, T = {args.steps}, seeds "
             f"{seeds}; paper: 25,000 x 300, 5 seeds. Mean +- std over seeds.", "",
             "| target | row | Delta log Z (ours) | Delta log Z (paper) | Delta log Z IW | W2^2 | CPU s/run |",
             "|---|---|---|---|---|---|---|"]
    for t in targets:
        for r in rows:
            c = cells[f"{t}/{r}"]
            pap = c["paper_delta_log_z"]
            lines.append(f"| {TARGETS[t][0]} | {ROWS[r][0]} | {fmt(*c['delta_log_z'])} | "
                         f"{fmt(*pap) if pap else 'n/a'} | {fmt(*c['delta_log_z_iw'])} | {fmt(*c['w2'])} | "
                         f"{c['cpu_seconds'][0]:.0f} |")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
