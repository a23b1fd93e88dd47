"""Training quality of every objective on HyperGrid (exact tv), through the shared example.

Runs ``examples/train_hypergrid.py`` once per objective (separate processes, one thread each)
and collects the ``metrics.json`` of every run into one JSON report.

    python benchmarks/objectives_hypergrid.py --out benchmarks/results/objectives_hypergrid.json
    python benchmarks/objectives_hypergrid.py --ndim 4 --height 8 --objectives db subtb \
        --iterations 2000 --jobs 2

Everything after ``--`` is passed to the example unchanged (e.g. ``-- --batch-size 64``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from report import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "train_hypergrid.py")
DEFAULT_OBJECTIVES = ["tb", "db", "subtb", "fm", "fldb", "flsubtb", "modified_db", "vargrad", "maxent", "qm"]
KEYS = ("tv_exact", "jsd_exact", "kl_exact", "log_z", "log_z_true", "modes_found", "wall_s", "ms_per_iter")


def run_one(objective: str, args, extra: list, root: str) -> dict:
    """Train one objective; returns its metrics (or the error)."""
    out = os.path.join(root, f"{objective}-s{args.seed}")
    cmd = [sys.executable, EXAMPLE, "--ndim", str(args.ndim), "--height", str(args.height),
           "--objective", objective, "--iterations", str(args.iterations), "--seed", str(args.seed),
           "--no-progress", "--out", out, "--overwrite", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"objective": objective, "error": proc.stderr[-2000:]}
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    r = {"objective": objective, "iterations": args.iterations, "seed": args.seed,
         "env": f"hypergrid {args.ndim}D h{args.height}"}
    r.update({k: m.get(k) for k in KEYS})
    print(json.dumps(r), flush=True)
    return r


def main(argv=None) -> list:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objectives", nargs="+", default=DEFAULT_OBJECTIVES)
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="objectives trained in parallel")
    p.add_argument("--runs-dir", default="", help="where run directories go (default: a temp dir)")
    p.add_argument("--out", default="", help="write the JSON report here")
    args = p.parse_args(argv)
    root = args.runs_dir or tempfile.mkdtemp(prefix="objectives_hypergrid-")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda o: run_one(o, args, extra, root), args.objectives))
    if args.out:
        write_json(args.out, rows, indent=2)
    return rows


if __name__ == "__main__":
    main()
