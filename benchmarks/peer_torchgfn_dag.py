"""Time torchgfn's DAG-GFlowNet example (``tutorials/examples/train_bayesian_structure.py``) per
training iteration, on our data (run by ``compare_peers.py --env dag`` in its own process).

torchgfn's package is also called ``gfn``, so this runs with torchgfn first on ``PYTHONPATH``
and never imports our library.  The example script runs unchanged with its own defaults (GNN-v2
policy, TB, replay buffer, epsilon 1.0 -> 0.1, batch 32, lr 1e-4, log Z by SGD) except for three
substitutions made from outside, as in ``dag_vs_torchgfn.py``: its scorer is torchgfn's
``BGeScore`` (uniform prior) built on the data in ``--data`` (exported by ``compare_peers.py``
from our ``DAGEnv``), its ``--prefill`` is 1 (the buffer prefill iterations only sample and are
not training iterations), and its ``trange`` is replaced by a generator that times each loop
iteration after the prefill and ``--warmup`` iterations and stops after ``--iterations`` (so the
final evaluation never runs).  ``--debug`` keeps the example's ``debug=__debug__``; by default
the script is re-executed with ``python -O``, so torchgfn's environment skips its validity checks
(torchgfn's fastest setting, as ``peer_torchgfn.py`` uses ``debug=False``).  Prints one JSON line
like ``speed.py``::

    PYTHONPATH=~/.cache/gfn-peers/torchgfn python -O benchmarks/peer_torchgfn_dag.py \\
        --data /tmp/dag5.npz --iterations 20 --warmup 5
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCRIPT = os.environ.get("GFN_TORCHGFN_DAG_SCRIPT", "/tmp/torchgfn_dag/train_bayesian_structure.py")


class _Done(Exception):
    pass


def run(args) -> dict:
    """Run the example's ``main`` with the substitutions above; return the timing record."""
    import numpy as np
    import pandas as pd
    import torch
    import gfn as peer_gfn

    if "gfn-peers" not in (peer_gfn.__file__ or "") and "torchgfn" not in (peer_gfn.__file__ or ""):
        raise SystemExit(f"needs torchgfn first on PYTHONPATH; `gfn` is {peer_gfn.__file__}")
    from gfn.gym.helpers.bayesian_structure.priors import UniformPrior
    from gfn.gym.helpers.bayesian_structure.scores import BGeScore

    sys.path.insert(0, HERE)
    from dag_vs_torchgfn import _peer_args  # the example's own argument parser and defaults

    torch.set_num_threads(1)
    data = np.load(args.data, allow_pickle=False)["data"]
    df = pd.DataFrame(data, columns=[str(i) for i in range(data.shape[1])])
    spec = importlib.util.spec_from_file_location("tgfn_dag_example", args.script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    wall, cpu = [], []

    def timed(n):
        prefill = n - args.n_iterations  # the example counts the buffer prefill as loop iterations
        start = prefill + args.warmup
        stop = start + args.iterations
        w0 = c0 = None
        for it in range(n):
            if it > start and w0 is not None:
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
            if it == stop:
                raise _Done
            w0, c0 = time.perf_counter(), time.process_time()
            yield it
        raise RuntimeError("the example ended before the timed iterations")

    class Bar:
        def __init__(self, n):
            self.gen = timed(n)

        def __iter__(self):
            return self.gen

        def set_postfix(self, *_a, **_k):
            pass

    mod.get_scorer = lambda *_a, **_k: (BGeScore(data=df, prior=UniformPrior()), df, None)
    mod.trange = lambda n, **_k: Bar(n)
    argv = ["--seed", str(args.seed), "--n_iterations", str(args.n_iterations), "--module", args.module,
            "--prefill", "1", "--num_nodes", str(data.shape[1]), "--batch_size", str(args.batch_size),
            "--sampling_batch_size", str(args.batch_size)]
    try:
        mod.main(_peer_args(mod, argv))
    except _Done:
        pass
    ms = [1000 * w for w in wall]
    return {"library": "torchgfn", "env": "dag", "module": args.module, "batch_size": args.batch_size,
            "debug": bool(__debug__), "ms_per_iter": statistics.median(ms), "ms_mean": statistics.fmean(ms),
            "cpu_ms_per_iter": statistics.median(1000 * c for c in cpu), "iterations": len(ms),
            "warmup": args.warmup, "n_params": None}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help=".npz with a (n, d) 'data' array (compare_peers.py writes it)")
    p.add_argument("--script", default=DEFAULT_SCRIPT, help="torchgfn's train_bayesian_structure.py")
    p.add_argument("--module", default="gnn_v2", choices=("gnn_v2", "gnn", "mlp"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--n-iterations", type=int, default=10_000,
                   help="the example's --n_iterations (sets its epsilon and lr schedules)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="keep the example's debug=__debug__ checks (no -O)")
    a = p.parse_args(argv)
    if not a.debug and __debug__:  # re-run under -O: torchgfn's env then skips its checks
        os.execv(sys.executable, [sys.executable, "-O", os.path.abspath(__file__)] + sys.argv[1:])
    if not os.path.isfile(a.script):
        raise SystemExit(f"torchgfn's example not found at {a.script} (--script or $GFN_TORCHGFN_DAG_SCRIPT)")
    print(json.dumps(run(a)), flush=True)


if __name__ == "__main__":
    main()
