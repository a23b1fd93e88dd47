"""SubTB(lambda) against DB on HyperGrid at equal iterations (exact tv), over several settings.

Each setting (batch size, R0, iterations, SubTB options) trains ``db`` and ``subtb`` with the
same seeds and the same model (TB-style shared trunk, learned P_B, state-flow head), and records
the exact tv at a quarter, a half and all of the iterations.  Writes one JSON report with every
run and, per setting, the mean tv of each objective and which one is lower at each checkpoint.

    python benchmarks/subtb_vs_db.py --jobs 2 --out benchmarks/results/subtb_vs_db_4d_h8.json
    python benchmarks/subtb_vs_db.py --settings '[{"batch_size": 64, "R0": 0.001, "iterations": 2000}]'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from report import write_json

#: the settings of the recorded report: the default HyperGrid, then sparser rewards and larger batches
DEFAULT_SETTINGS = [
    {"batch_size": 16, "R0": 0.1, "iterations": 2000},
    {"batch_size": 64, "R0": 0.1, "iterations": 2000},
    {"batch_size": 16, "R0": 0.001, "iterations": 2000},
    {"batch_size": 64, "R0": 0.001, "iterations": 2000},
    {"batch_size": 256, "R0": 0.001, "iterations": 1000},
    {"batch_size": 64, "R0": 0.0001, "iterations": 2000},
]


def train_one(job: dict) -> dict:
    """Train one objective in one setting; returns its tv curve."""
    import torch
    torch.set_num_threads(1)
    from gfn import Trainer, TrainerConfig, metrics, seed_everything
    from gfn.envs import HyperGrid
    from gfn.objectives import get_objective
    seed_everything(job["seed"])
    env = HyperGrid(job["ndim"], job["height"], R0=job["R0"])
    objective = get_objective(job["objective"], **job["objective_kwargs"])
    model = objective.build_model(env, hidden=256, n_layers=2)
    trainer = Trainer(env, model, objective, TrainerConfig(batch_size=job["batch_size"], lr=job["lr"], lr_log_z=0.1))
    curve, t0 = [], time.perf_counter()
    its = job["iterations"]
    for stop in sorted({max(1, its // 4), max(1, its // 2), its}):
        trainer.train(stop - trainer.iteration)
        curve.append({"iteration": stop, "tv_exact": round(metrics.exact_metrics(env, model)["tv_exact"], 5)})
    return {**job, "curve": curve, "seconds": round(time.perf_counter() - t0, 1)}


def summarise(runs: list[dict]) -> list[dict]:
    """Mean tv per objective at each checkpoint, per setting, and which objective is lower."""
    out = []
    keys = []
    for r in runs:
        k = r["setting_index"]
        if k not in keys:
            keys.append(k)
    for k in keys:
        rs = [r for r in runs if r["setting_index"] == k]
        its = [c["iteration"] for c in rs[0]["curve"]]
        mean = {obj: [statistics.fmean(r["curve"][i]["tv_exact"] for r in rs if r["objective"] == obj)
                      for i in range(len(its))] for obj in ("db", "subtb")}
        out.append({"setting": rs[0]["setting"], "iterations": its, "mean_tv": mean,
                    "seeds": sorted({r["seed"] for r in rs}),
                    "subtb_lower": [s < d for s, d in zip(mean["subtb"], mean["db"])]})
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ndim", type=int, default=4)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--settings", default="", help="JSON list of settings (batch_size, R0, iterations, lr, subtb)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--lamda", type=float, default=0.9)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default="", help="write the JSON report here")
    args = p.parse_args(argv)
    settings = json.loads(args.settings) if args.settings else DEFAULT_SETTINGS
    jobs = []
    for k, st in enumerate(settings):
        for seed in args.seeds:
            for obj in ("db", "subtb"):
                kw = {"lamda": args.lamda, **st.get("subtb", {})} if obj == "subtb" else {}
                jobs.append({"setting_index": k, "setting": st, "objective": obj, "objective_kwargs": kw,
                             "seed": seed, "ndim": args.ndim, "height": args.height,
                             "batch_size": st.get("batch_size", 16), "R0": st.get("R0", 0.1),
                             "iterations": st.get("iterations", 2000), "lr": st.get("lr", 1e-3)})
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(train_one, jobs))
    else:
        runs = [train_one(j) for j in jobs]
    summary = summarise(runs)
    for s in summary:
        print(json.dumps(s), flush=True)
    report = {"env": f"hypergrid {args.ndim}D h{args.height}", "lamda": args.lamda, "seeds": args.seeds,
              "summary": summary, "runs": runs}
    if args.out:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
