"""Time one diffusion-sampler training iteration (25GMM, TB, T = 100, B = 300, PIS network) for the
two ways of getting log P_F on forward iterations: re-scoring the sampled states in one batched
pass (``rescore``: no-grad rollout, then 1 forward + 1 backward over all B * T states) and keeping
the rollout's own log P_F with its graph (``keep``: ``DiffusionConfig.keep_log_pf``, 1 forward +
1 backward, as GFNOrg/gfn-diffusion's ``get_trajectory_fwd``).

Each variant runs in a fresh process (so that the peak RSS is its own); the variants alternate
over ``--repeats`` and the JSON gives per-run CPU and wall ms per iteration, peak RSS (MiB) and
the 1-minute load average::

    nice -n 10 python benchmarks/diffusion_speed.py --iterations 30 --warmup 5 --repeats 3 \\
        --out benchmarks/results/diffusion_keep_speed.json

``--profile VARIANT`` prints torch.profiler's operator table for a few iterations instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("rescore", "keep")


def _trainer(variant: str, a):
    import torch
    from gfn.envs.diffusion import DiffusionConfig, build

    torch.set_num_threads(1)
    cfg = DiffusionConfig(objective=a.objective, batch_size=a.batch_size, iterations=a.warmup + a.iterations,
                          exploration=a.exploration, seed=a.seed, keep_log_pf=(variant == "keep"))
    return build(a.target, steps=a.steps, hidden=64, harmonics=64, joint_layers=2, langevin=a.langevin,
                 config=cfg)


def worker(variant: str, a) -> dict:
    """Time ``a.iterations`` steps after ``a.warmup`` in this process."""
    tr = _trainer(variant, a)
    tr.train(a.warmup)
    c0, w0 = time.process_time(), time.perf_counter()
    losses = tr.train(a.iterations)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"variant": variant, "cpu_ms_per_iter": 1000 * cpu / a.iterations,
            "ms_per_iter": 1000 * wall / a.iterations,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "last_loss": losses[-1], "loadavg_1min": os.getloadavg()[0]}


def profile(variant: str, a) -> None:
    """torch.profiler's CPU operator table over ``a.iterations`` steps."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    tr = _trainer(variant, a)
    tr.train(a.warmup)
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        tr.train(a.iterations)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="gmm25")
    p.add_argument("--objective", default="tb")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--exploration", type=float, default=0.0)
    p.add_argument("--langevin", action="store_true")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--profile", choices=VARIANTS, default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a)))
        return
    if a.profile:
        profile(a.profile, a)
        return
    base = ["--target", a.target, "--objective", a.objective, "--steps", str(a.steps), "--batch-size",
            str(a.batch_size), "--exploration", repr(a.exploration), "--iterations", str(a.iterations),
            "--warmup", str(a.warmup), "--seed", str(a.seed)] + (["--langevin"] if a.langevin else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    runs = {v: [] for v in VARIANTS}
    for r in range(a.repeats):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for v in order:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), *base, "--worker", v], env=env,
                                 capture_output=True, text=True, check=True)
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            runs[v].append(rec)
            print(json.dumps(rec), flush=True)
    summary = {v: {k: statistics.median(x[k] for x in runs[v])
                   for k in ("cpu_ms_per_iter", "ms_per_iter", "peak_rss_mib")} for v in VARIANTS}
    summary["paired_cpu_ratio_keep_over_rescore"] = statistics.median(
        k["cpu_ms_per_iter"] / r["cpu_ms_per_iter"] for k, r in zip(runs["keep"], runs["rescore"]))
    res = {"setting": {k: v for k, v in vars(a).items() if k not in ("worker", "profile", "out")},
           "runs": runs, "summary": summary}
    print(json.dumps(summary, indent=1))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
