"""Same total batch, one process vs N gloo processes: final exact tv on HyperGrid, per seed.

    python benchmarks/distributed_vs_single.py --seeds 0 1 2 3 4 --nproc 2 --out runs/dist_bench

Runs ``gfn train --env hypergrid`` with ``--batch-size B`` in one process and with
``--batch-size B/N`` in each of N processes (``torchrun --standalone``), and writes
``<out>/results.json`` with tv_exact, log_z_error, ranks_in_sync and wall time of every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def train(args, seed: int, nproc: int, out: str) -> dict:
    """One run; returns its metrics.json."""
    flags = ["train", "--env", "hypergrid", "--ndim", str(args.ndim), "--height", str(args.height),
             "--objective", args.objective, "--iterations", str(args.iterations), "--seed", str(seed),
             "--batch-size", str(args.batch_size // nproc), "--no-progress", "--out", out, "--overwrite"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "gfn", *flags]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "gfn", *flags]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def main() -> None:
    """Run every seed in one process and in --nproc processes; write results.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16, help="total trajectories per iteration")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--objective", default="tb")
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--out", default="runs/dist_bench")
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        for nproc in (1, args.nproc):
            m = train(args, seed, nproc, os.path.join(args.out, f"np{nproc}-seed{seed}"))
            row = {"seed": seed, "nproc": nproc, "batch_per_rank": args.batch_size // nproc,
                   "tv_exact": m["tv_exact"], "log_z_error": m["log_z_error"], "wall_s": m["wall_s"],
                   "ranks_in_sync": m.get("ranks_in_sync", 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for nproc in (1, args.nproc):
        tvs = [r["tv_exact"] for r in rows if r["nproc"] == nproc]
        summary[f"nproc{nproc}"] = {"tv_mean": statistics.mean(tvs),
                                    "tv_std": statistics.stdev(tvs) if len(tvs) > 1 else 0.0}
    result = {"config": vars(args), "runs": rows, "summary": summary}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
