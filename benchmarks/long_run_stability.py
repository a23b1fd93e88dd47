"""Does training stay at its optimum when it continues?  The README defaults for 3000 iterations.

Runs ``examples/train_hypergrid.py`` (hypergrid 2-D h8, TB, batch 16, lr 1e-3, lr_log_z 0.1, the
README defaults) for 3000 iterations, seeds 0-2, evaluating the exact tv every 50 iterations, and
reads the tv curve back from each run's ``log.txt``.  Acceptance (issue 16): the final tv is at
most 0.005, and once tv has gone below 0.005 it is never more than 2x its running minimum.

Each variant is one optimiser setting: ``amsgrad`` (the default) and ``adam`` (``--no-amsgrad``,
plain Adam, the default before: its second moment decays as the loss goes to 0, the steps grow
back and the runs leave the optimum near iteration 1500).  Writes JSON and a PNG of the curves.

    python benchmarks/long_run_stability.py                    # both variants, about 2 minutes
    python benchmarks/long_run_stability.py --variants amsgrad --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from report import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"amsgrad": [], "adam": ["--no-amsgrad"]}
THRESHOLD, MAX_RISE = 0.005, 2.0


def tv_curve(log_txt: str) -> list[tuple[int, float]]:
    """(iteration, tv_exact) of every evaluation in a run's log.txt (first line per step)."""
    curve: dict[int, float] = {}
    for line in open(log_txt):
        m = re.match(r"\S+ step=(\d+) (\{.*\})$", line.strip())
        if m:
            d = json.loads(m.group(2))
            if "tv_exact" in d:
                curve.setdefault(int(m.group(1)), float(d["tv_exact"]))
    return sorted(curve.items())


def stability(tvs: list[float], threshold: float = THRESHOLD) -> dict:
    """First index below ``threshold`` and the largest tv / running-minimum ratio after it."""
    first = next((i for i, v in enumerate(tvs) if v < threshold), None)
    worst = None
    if first is not None:
        run_min, worst = tvs[first], 1.0
        for v in tvs[first:]:
            run_min = min(run_min, v)
            worst = max(worst, v / run_min)
    return {"first_below": first, "max_rise_over_running_min": worst}


def run_one(variant: str, seed: int, iterations: int, eval_every: int, workdir: str) -> dict:
    """Train one seed with the README defaults (plus the variant's flags); returns its curve."""
    out = os.path.join(workdir, f"{variant}-seed{seed}")
    cmd = [sys.executable, os.path.join(ROOT, "examples", "train_hypergrid.py"), "--iterations", str(iterations),
           "--eval-every", str(eval_every), "--seed", str(seed), "--out", out, "--no-progress",
           "--checkpoint-every", "0", *VARIANTS[variant]]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    curve = tv_curve(os.path.join(out, "log.txt"))
    tvs = [v for _, v in curve]
    st = stability(tvs)
    first = st["first_below"]
    return {"variant": variant, "seed": seed, "command": " ".join(cmd[1:]).replace(out, "<out>"),
            "seconds": round(time.perf_counter() - t0, 1), "iterations": [i for i, _ in curve], "tv_exact": tvs,
            "final_tv": tvs[-1], "min_tv": min(tvs), "tv_at_1000": dict(curve).get(1000),
            "first_below_iteration": None if first is None else curve[first][0],
            "max_rise_over_running_min": st["max_rise_over_running_min"],
            "passes": tvs[-1] <= THRESHOLD and st["max_rise_over_running_min"] is not None
            and st["max_rise_over_running_min"] <= MAX_RISE}


def plot(runs: list[dict], path: str) -> None:
    """tv curves on a log scale, one colour per seed, one line style per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    styles = {"amsgrad": "-", "adam": "--"}
    for r in runs:
        ax.plot(r["iterations"], r["tv_exact"], styles.get(r["variant"], ":"), color=f"C{r['seed']}",
                label=f"{r['variant']} seed {r['seed']}")
    ax.axhline(THRESHOLD, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("tv_exact")
    ax.set_title("hypergrid 2-D h8, TB, README defaults (solid: AMSGrad, dashed: plain Adam)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default="amsgrad,adam", help="comma-separated: amsgrad, adam")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "long_run_stability.json"))
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for variant in variants:
            for seed in [int(s) for s in args.seeds.split(",")]:
                r = run_one(variant, seed, args.iterations, args.eval_every, work)
                runs.append(r)
                print(f"{variant:8s} seed {seed}: tv@1000 {r['tv_at_1000']:.2e}  final {r['final_tv']:.2e}  "
                      f"min {r['min_tv']:.2e}  max rise {r['max_rise_over_running_min'] or float('nan'):.2f}  "
                      f"{'PASS' if r['passes'] else 'FAIL'}  ({r['seconds']} s)", flush=True)
    summary = {v: {"all_pass": all(r["passes"] for r in runs if r["variant"] == v),
                   "final_tv": [r["final_tv"] for r in runs if r["variant"] == v],
                   "max_rise": [r["max_rise_over_running_min"] for r in runs if r["variant"] == v]}
               for v in variants}
    report = {"setting": "hypergrid ndim=2 height=8, objective tb, README defaults, CPU, OMP_NUM_THREADS=1",
              "acceptance": f"final tv <= {THRESHOLD}; after first tv < {THRESHOLD}, tv <= {MAX_RISE} x running min",
              "summary": summary, "runs": runs}
    write_json(args.out, report)
    plot(runs, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps(summary))
    return report


if __name__ == "__main__":
    main()
