"""Sendera et al. 2024 Fig. 3 and Manywell TB+LP checks for the diffusion samplers (issue #19).

    python benchmarks/diffusion_fig3.py fig3 --iterations 2000 --seeds 0 1 2
    python benchmarks/diffusion_fig3.py fig3 --langevin --iterations 10000 --eval-every 2500 --variants learned
    python benchmarks/diffusion_fig3.py manywell --iterations 2000 --seeds 0
    python benchmarks/diffusion_fig3.py timing

``fig3``: 25GMM, T = 10, TB, batch 300, fixed vs learned forward variance (paper: log Z-hat
-1.67 fixed vs -0.62 learned, true log Z = 0); writes ``results/diffusion_fig3.json``
(``--langevin``: both variances with the Langevin parametrisation, ``results/diffusion_fig3_lp.json``;
``--out-name`` overrides the file name, so variants can run as parallel processes).
``manywell``: Manywell d = 8, T = 100, TB + Langevin parametrisation (paper Table C.3: delta log Z
0.25); writes ``results/diffusion_manywell_tb_lp.json``.  ``timing``: ms / iteration of TB at
T = 100, B = 300 with the paper's network (64 wide, 64 harmonics, 2 joint layers), one thread;
writes ``results/diffusion_timing.json``.  Each run goes through examples/train_diffusion.py, so
every row also records CPU seconds and all flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))
import torch  # noqa: E402

from gfn.envs.diffusion.cli import main as train_main  # noqa: E402

KEYS = ("log_z_elbo", "log_z_iw", "delta_log_z", "delta_log_z_iw", "delta_log_z_eubo", "w2", "ess",
        "cpu_seconds", "wall_seconds", "history")


def _run(flags: list) -> dict:
    r = train_main(flags)
    return {k: r.get(k) for k in KEYS} | {"flags": flags}


def _summary(rows: list, key: str) -> dict:
    v = [r[key] for r in rows if r.get(key) is not None]
    return {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}


def fig3(args) -> dict:
    setting = "25GMM, T=10, TB" + (" + Langevin parametrisation" if args.langevin else "") + \
        ", batch 300, no exploration"
    out = {"setting": setting, "paper": {"fixed": -1.67, "learned": -0.62}, "eval_every": args.eval_every,
           "iterations": args.iterations, "batch_size": args.batch_size, "seeds": args.seeds, "runs": {}}
    for name, extra in (("learned", ["--learn-variance"]), ("fixed", [])):
        if name not in args.variants:
            continue
        rows = []
        for s in args.seeds:
            flags = ["--target", "gmm25", "--steps", "10", "--objective", "tb", "--iterations", str(args.iterations),
                     "--batch-size", str(args.batch_size), "--seed", str(s)] + extra
            if args.langevin:
                flags.append("--langevin")
            if args.eval_every:
                flags += ["--eval-every", str(args.eval_every)]
            rows.append(_run(flags))
            print(name, s, json.dumps({k: rows[-1][k] for k in ("log_z_elbo", "cpu_seconds")}), flush=True)
        out["runs"][name] = {"rows": rows, "log_z_elbo": _summary(rows, "log_z_elbo"),
                             "delta_log_z": _summary(rows, "delta_log_z")}
    return out


def manywell(args) -> dict:
    rows = []
    for s in args.seeds:
        flags = ["--target", "manywell", "--steps", "100", "--objective", "tb", "--langevin", "--iterations",
                 str(args.iterations), "--batch-size", str(args.batch_size), "--seed", str(s)]
        rows.append(_run(flags))
        print("manywell", s, json.dumps({k: rows[-1][k] for k in ("delta_log_z", "cpu_seconds")}), flush=True)
    return {"setting": "Manywell d=8, T=100, TB + Langevin parametrisation", "paper_delta_log_z": 0.25,
            "iterations": args.iterations, "batch_size": args.batch_size, "seeds": args.seeds, "rows": rows,
            "delta_log_z": _summary(rows, "delta_log_z")}


def timing(args) -> dict:
    from gfn.envs.diffusion import DiffusionConfig, build

    torch.set_num_threads(1)
    res = {}
    for name, kw, cfg in (("tb", {}, {}), ("tb_expl", {}, {"exploration": 0.2}),
                          ("tb_langevin", {"langevin": True}, {})):
        tr = build("gmm25", steps=100, config=DiffusionConfig(objective="tb", batch_size=300, **cfg), **kw)
        tr.train(3)
        c, w = time.process_time(), time.perf_counter()
        tr.train(args.iterations)
        res[name] = {"ms_per_iteration_wall": 1000 * (time.perf_counter() - w) / args.iterations,
                     "ms_per_iteration_cpu": 1000 * (time.process_time() - c) / args.iterations}
    return {"setting": "gmm25, T=100, B=300, hidden 64, harmonics 64, 2 joint layers, 1 thread",
            "iterations": args.iterations, "load_average": os.getloadavg(), **res}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["fig3", "manywell", "timing"])
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--langevin", action="store_true", help="fig3: Langevin parametrisation in both variants")
    p.add_argument("--eval-every", type=int, default=0, help="fig3: also evaluate every N iterations")
    p.add_argument("--out-name", default=None, help="results/<name>.json (default per command)")
    p.add_argument("--variants", nargs="+", default=["learned", "fixed"], choices=["learned", "fixed"],
                   help="fig3: which forward variances to run (several invocations merge into one JSON)")
    args = p.parse_args()
    res = {"fig3": fig3, "manywell": manywell, "timing": timing}[args.what](args)
    name = {"fig3": "diffusion_fig3_lp" if args.langevin else "diffusion_fig3", "manywell": "diffusion_manywell_tb_lp",
            "timing": "diffusion_timing"}[args.what]
    name = args.out_name or name
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", name + ".json")
    if args.what == "fig3" and os.path.exists(path):  # merge variants / seeds of earlier invocations
        with open(path) as f:
            old = json.load(f)
        if old.get("iterations") == res["iterations"] and old.get("batch_size") == res["batch_size"]:
            for k, v in old.get("runs", {}).items():
                res["runs"].setdefault(k, v)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k not in ("runs", "rows")}, indent=1))


if __name__ == "__main__":
    main()
