"""Forward + backward time of every objective's loss, one thread, JSON out.

Two parts:

* ``core``: the loss computation alone on synthetic packed batches (random per-row log P_F,
  log P_B, log F that require grad; B trajectories of T states each) — TB's segment sums, DB
  residuals, SubTB in every weighting (closed form, one Toeplitz product).  This isolates the
  objective from the network; the issue's target is SubTB at B=4096, T=256 <= 100 ms.
* ``model``: every registered objective end to end on HyperGrid (model evaluation of all rows,
  parent enumeration for FM/QM, the loss, and its backward), on a sampled batch.

    python benchmarks/objectives_speed.py --out benchmarks/results/objectives_speed.json
    python benchmarks/objectives_speed.py --quick          # small sizes only (seconds)

Times are the median (and min) over ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from gfn.envs import HyperGrid  # noqa: E402
from gfn.objectives import get_objective, list_objectives  # noqa: E402
from gfn.objectives.db import db_residuals  # noqa: E402
from gfn.objectives.subtb import WEIGHTINGS, node_potentials, subtb_from_potentials  # noqa: E402
from gfn.ops import lengths_to_ptr, segment_sum  # noqa: E402
from gfn.sampler import Sampler  # noqa: E402
from gfn.trajectories import TrajectoryBatch  # noqa: E402
from gfn.utils import seed_everything  # noqa: E402
from report import write_json  # noqa: E402

CORE_SIZES = [(64, 16), (1024, 64), (4096, 64), (1024, 256), (4096, 256)]
QUICK_CORE_SIZES = [(64, 16), (512, 64)]


def timed(fn, repeats: int) -> dict:
    """Median/min wall time in ms of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(1000.0 * (time.perf_counter() - t0))
    return {"ms_median": round(statistics.median(ts), 3), "ms_min": round(min(ts), 3)}


def synthetic_batch(B: int, T: int, seed: int = 0):
    """B complete trajectories of T states each, with random differentiable per-row scores."""
    g = torch.Generator().manual_seed(seed)
    ptr = lengths_to_ptr(torch.full((B,), T))
    n = B * T
    batch = TrajectoryBatch(states=torch.zeros(n, 1), ptr=ptr, actions=torch.zeros(n, dtype=torch.long),
                            bwd_actions=torch.zeros(n, dtype=torch.long), log_rewards=torch.randn(B, generator=g),
                            is_complete=torch.ones(B, dtype=torch.bool))
    pf = torch.randn(n, generator=g).requires_grad_()
    pb = torch.randn(n, generator=g)
    pb[ptr[:-1]] = 0.0
    pb.requires_grad_()
    fl = torch.randn(n, generator=g).requires_grad_()
    log_z = torch.zeros((), requires_grad=True)
    return batch, pf, pb, fl, log_z


def core_losses(batch, pf, pb, fl, log_z) -> dict:
    """name -> closure computing loss forward + backward from the synthetic scores."""
    log_r = batch.log_rewards

    def tb():
        ((log_z + segment_sum(pf - pb, batch.ptr) - log_r) ** 2).mean().backward()

    def db():
        db_residuals(pf, pb, fl, log_r, batch).pow(2).mean().backward()

    def subtb(weighting, lam=0.9):
        def f():
            a, n = node_potentials(batch, pf, pb, fl, log_r)
            subtb_from_potentials(a, n, lam, weighting).backward()
        return f

    out = {"tb": tb, "db": db}
    for w in WEIGHTINGS:
        out[f"subtb[{w}]"] = subtb(w)
    out["subtb[geometric_within,lambda=1]"] = subtb("geometric_within", 1.0)
    return out


def bench_core(sizes, repeats: int) -> list:
    """Timings of the loss cores on synthetic batches."""
    rows = []
    for B, T in sizes:
        tensors = synthetic_batch(B, T)
        for name, fn in core_losses(*tensors).items():
            r = {"part": "core", "loss": name, "B": B, "T": T}
            r.update(timed(fn, repeats))
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


def bench_models(batch_size: int, ndim: int, height: int, hidden: int, repeats: int) -> list:
    """End-to-end loss forward + backward of every registered objective on a HyperGrid batch."""
    rows = []
    env = HyperGrid(ndim=ndim, height=height)
    for name in list_objectives():
        seed_everything(0)
        obj = get_objective(name)
        model = obj.build_model(env, hidden=hidden, n_layers=2)
        batch = Sampler(env, model).sample(batch_size, generator=torch.Generator().manual_seed(0))

        def fn():
            model.zero_grad(set_to_none=True)
            obj.loss(model, batch).backward()

        r = {"part": "model", "loss": name, "env": f"hypergrid {ndim}D h{height}", "B": batch_size,
             "rows": batch.n_rows, "hidden": hidden}
        r.update(timed(fn, repeats))
        rows.append(r)
        print(json.dumps(r), flush=True)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes only")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--model-batch-size", type=int, default=256)
    p.add_argument("--ndim", type=int, default=4)
    p.add_argument("--height", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--out", default="", help="write the JSON report here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sizes = QUICK_CORE_SIZES if args.quick else CORE_SIZES
    report = {"torch": torch.__version__, "platform": platform.platform(), "threads": torch.get_num_threads(),
              "core": bench_core(sizes, args.repeats),
              "model": bench_models(64 if args.quick else args.model_batch_size, args.ndim, args.height,
                                    64 if args.quick else args.hidden, args.repeats)}
    if args.out:
        write_json(args.out, report, indent=2)
    return report


if __name__ == "__main__":
    main()
