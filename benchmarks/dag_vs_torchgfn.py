"""DAG-GFlowNet side by side with torchgfn on the same data: 5 nodes, ER graph with 5 expected
edges, 100 samples, BGe, uniform prior, iterations of batch 32.

    python benchmarks/dag_vs_torchgfn.py export --out benchmarks/results/dag_vs_torchgfn
    PYTHONPATH=~/.cache/gfn-peers/torchgfn python benchmarks/dag_vs_torchgfn.py peer \
        --out benchmarks/results/dag_vs_torchgfn --iterations 10000 --eval-every 500
    python benchmarks/dag_vs_torchgfn.py ours --out benchmarks/results/dag_vs_torchgfn --iterations 10000

``export`` writes our environment's data (``DAGEnv(data_seed=0)``) and its exact posterior over all
29,281 DAGs (adjacency codes, bit ``i * d + j`` for the edge i -> j) to ``data.npz``.

``peer`` runs torchgfn's own example script (``tutorials/examples/train_bayesian_structure.py``,
its defaults: GNN-v2 policy, TB, replay buffer, epsilon 1.0 -> 0.1, lr x0.1 at half) unchanged,
with three substitutions made from outside: its scorer is torchgfn's ``BGeScore`` built on our data
(so both libraries score the same data with the same BGe hyper-parameters), its training loop's
``trange`` is wrapped so that every ``--eval-every`` iterations the exact terminal distribution of its
policy is computed with torchgfn's own ``posterior_exact`` (enumerating every state's action
probabilities and pushing the flow to the terminal states), and its final evaluation is skipped.
The JSD against *our* exact posterior is computed here, in float64, and appended to
``peer_s<seed>.json`` after each evaluation (so a partial run still gives a curve); evaluation time
is excluded from the training wall and CPU times.  The torchgfn package is also named ``gfn``, so
this mode must run in its own process with torchgfn first on the path (never import our ``gfn``).

``ours`` trains our TB with the protocol of ``docs/dag.md`` on the same data, evaluating the exact
JSD at the same iterations (``ours_s<seed>.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

D = 5


def _jsd(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats) between two distributions given as log-probabilities."""
    m = np.logaddexp(p_log, q_log) + math.log(0.5)
    p, q = np.exp(p_log), np.exp(q_log)
    kl_p = np.where(p > 0, p * (p_log - m), 0.0)
    kl_q = np.where(q > 0, q * (q_log - m), 0.0)
    return float(0.5 * (kl_p.sum() + kl_q.sum()))


def _write(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def export(args) -> None:
    """Our data and exact posterior (float64) to ``data.npz``."""
    import torch
    from gfn.envs.dag import DAGEnv
    from gfn.envs.dag.exact import exact_posterior

    env = DAGEnv(D, 5.0, 100, 100, score="bge", prior="uniform", data_seed=args.data_seed)
    states = env.enumerate_states()
    post = exact_posterior(env)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", data=env.data.numpy(), codes=env.codes(states).numpy(),
             log_post=torch.log(post).numpy(), true_graph=env.true_graph.numpy())
    print(f"wrote {out / 'data.npz'}: {len(states)} DAGs, data {tuple(env.data.shape)}")


def peer(args) -> None:
    """torchgfn's example on our data, with exact-JSD checkpoints (see the module docstring)."""
    import importlib.util

    import pandas as pd
    import torch
    import gfn as peer_gfn

    if "gfn-peers" not in (peer_gfn.__file__ or "") and "torchgfn" not in (peer_gfn.__file__ or ""):
        raise SystemExit(f"peer mode needs torchgfn first on PYTHONPATH; `gfn` is {peer_gfn.__file__}")
    from gfn.gym.helpers.bayesian_structure.jsd import posterior_exact
    from gfn.gym.helpers.bayesian_structure.priors import UniformPrior
    from gfn.gym.helpers.bayesian_structure.scores import BGeScore

    torch.set_num_threads(1)
    out = Path(args.out)
    npz = np.load(out / "data.npz", allow_pickle=False)
    ours = dict(zip(npz["codes"].tolist(), npz["log_post"].tolist()))
    names = [str(i) for i in range(D)]
    df = pd.DataFrame(npz["data"], columns=names)

    spec = importlib.util.spec_from_file_location("tgfn_example", _example_script(args))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    captured = {}

    def get_scorer(*_a, **_k):
        scorer = BGeScore(data=df, prior=UniformPrior())
        return scorer, df, None

    class Env(mod.BayesianStructure):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            captured["env"] = self

    class TB(mod.TBGFlowNet):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            captured["gfn"] = self

    curve = {"setting": vars(args), "torchgfn_script": str(args.script), "points": []}
    clock = {"wall": 0.0, "cpu": 0.0}

    def evaluate(it: int) -> None:
        env, gfl = captured["env"], captured["gfn"]
        t0 = time.perf_counter()
        with torch.no_grad():
            state_graph = posterior_exact(env, gfl.pf, names, batch_size=256)
        logq = {}
        for node in state_graph.nodes:
            g = state_graph.nodes[node]["graph"]
            code = sum(1 << (int(s) * D + int(t)) for s, t in g.edges)
            logq[code] = float(state_graph.nodes[node]["terminal_log_flow"])
        if set(logq) != set(ours):
            raise RuntimeError(f"torchgfn enumerated {len(logq)} DAGs, ours {len(ours)}; the sets differ")
        keys = sorted(ours)
        p = np.array([ours[k] for k in keys])
        q = np.array([logq[k] for k in keys])
        q = q - np.logaddexp.reduce(q)  # guard against round-off in its flow push
        point = {"iteration": it, "jsd_exact": _jsd(p, q), "tv_exact": 0.5 * float(np.abs(np.exp(p) - np.exp(q)).sum()),
                 "train_wall_s": clock["wall"], "train_cpu_s": clock["cpu"], "eval_wall_s": time.perf_counter() - t0}
        curve["points"].append(point)
        _write(out / f"peer_s{args.seed}.json", curve)
        print(json.dumps(point), flush=True)

    class Done(Exception):
        pass

    def trange(n, **_k):
        prefill = n - args.iterations  # torchgfn counts the buffer prefill as iterations
        w0, c0 = time.perf_counter(), time.process_time()
        for it in range(n):
            done = it - prefill
            if done > 0 and (done % args.eval_every == 0):
                clock["wall"] += time.perf_counter() - w0
                clock["cpu"] += time.process_time() - c0
                evaluate(done)
                w0, c0 = time.perf_counter(), time.process_time()
            yield it
        clock["wall"] += time.perf_counter() - w0
        clock["cpu"] += time.process_time() - c0
        evaluate(args.iterations)
        raise Done

    class Bar:
        """What the example's loop needs of tqdm's bar: iteration and ``set_postfix``."""

        def __init__(self, n):
            self.gen = trange(n)

        def __iter__(self):
            return self.gen

        def set_postfix(self, *_a, **_k):
            pass

    mod.get_scorer, mod.BayesianStructure, mod.TBGFlowNet = get_scorer, Env, TB
    mod.trange = lambda n, **_k: Bar(n)
    argv = ["--seed", str(args.seed), "--n_iterations", str(args.iterations), "--module", args.module]
    parser_args = _peer_args(mod, argv)
    try:
        mod.main(parser_args)
    except Done:
        pass
    print(f"done: {out / f'peer_s{args.seed}.json'}")


def _example_script(args) -> Path:
    """Path of torchgfn's example script: ``--script`` if given, else extracted from ``--torchgfn-git``."""
    if args.script:
        path = Path(args.script)
        if not path.is_file():
            raise SystemExit(f"--script {path} does not exist")
        return path
    git_dir = Path(args.torchgfn_git)
    if not git_dir.exists():
        raise SystemExit(f"no torchgfn checkout at {git_dir}: clone GFNOrg/torchgfn and pass --torchgfn-git "
                         "or --script")
    rel = "tutorials/examples/train_bayesian_structure.py"
    commit = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    path = Path.home() / ".cache" / "gfn-peers" / "torchgfn_examples" / commit / "train_bayesian_structure.py"
    if not path.is_file():
        text = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{rel}"], check=True,
                              capture_output=True, text=True).stdout
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    args.script = str(path)
    args.torchgfn_commit = commit
    return path


def _peer_args(mod, argv):
    """The example's own argument parser and defaults (its ``__main__`` block), applied to argv."""
    import ast
    import types

    src = Path(mod.__file__).read_text()
    tree = ast.parse(src)
    main_block = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
    body = [s for s in main_block.body if "parse_args" not in ast.unparse(s) and "main(args)" not in ast.unparse(s)
            and not isinstance(s, ast.If) and not isinstance(s, ast.Assert)]
    ns = dict(vars(mod))
    exec(compile(ast.Module(body=body, type_ignores=[]), mod.__file__, "exec"), ns)
    return ns["parser"].parse_args(argv)


def ours(args) -> None:
    """Our TB (docs/dag.md protocol) on the exported data, with exact JSD at the same iterations."""
    import torch
    from gfn.envs.dag import DAGEnv
    from gfn.envs.dag.metrics import DAGMetrics
    from gfn.runner import build_objective_and_model, run
    from gfn.utils import seed_everything

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from train_dag import DAGConfig, EpsilonSchedule, LRDecay, initial_log_z
    from gfn.config import parse_config

    torch.set_num_threads(1)
    out = Path(args.out)
    npz = np.load(out / "data.npz", allow_pickle=False)
    env = DAGEnv(data=torch.from_numpy(npz["data"]), score="bge", prior="uniform")
    codes = env.codes(env.enumerate_states()).numpy()
    if not np.array_equal(codes, npz["codes"]):
        raise RuntimeError("exported enumeration differs from this environment's")
    argv = ["--objective", "tb", "--uniform-pb", "--iterations", str(args.iterations), "--batch-size", "32",
            "--lr", "1e-3", "--lr-log-z", "0.1", "--epsilon", "1.0", "--seed", str(args.seed),
            "--eval-every", str(args.eval_every), "--out", str(out / f"ours_s{args.seed}"), "--overwrite"]
    cfg = parse_config(DAGConfig, argv)
    cfg.epsilon_final, cfg.epsilon_anneal, cfg.lr_decay_at, cfg.lr_decay = 0.1, 0.5, 0.5, 0.1
    metrics = DAGMetrics(env)
    hooks = [EpsilonSchedule(1.0, 0.1, int(0.5 * cfg.iterations)), LRDecay(int(0.5 * cfg.iterations), 0.1)]
    seed_everything(cfg.seed)
    objective, model = build_objective_and_model(cfg, env)
    with torch.no_grad():
        model.log_z.value.fill_(initial_log_z(env, model, "auto"))
    w0, c0 = time.perf_counter(), time.process_time()
    result = run(cfg, env, lambda trainer: metrics(trainer.model), model=model, objective=objective, hooks=hooks,
                 name="dag5_vs_torchgfn")
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    summary = {"setting": vars(args), "argv": argv, "final": {k: result.get(k) for k in ("jsd_exact", "tv_exact")},
               "wall_s_including_evals": wall, "cpu_s_including_evals": cpu, "result": result,
               "points": _curve_from_log(out / f"ours_s{args.seed}" / "log.txt")}
    _write(out / f"ours_s{args.seed}.json", summary)
    print(json.dumps(summary["final"]), wall, cpu)


def _curve_from_log(log: Path) -> list[dict]:
    """The evaluations our runner logged (``step=N {json}`` lines with ``jsd_exact``), one per iteration."""
    points: dict[int, dict] = {}
    for line in log.read_text().splitlines():
        m = re.search(r"step=(\d+) (\{.*\})\s*$", line)
        if m and '"jsd_exact"' in m.group(2):
            points[int(m.group(1))] = {"iteration": int(m.group(1)), **json.loads(m.group(2))}
    return list(points.values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("export", "peer", "ours"))
    ap.add_argument("--out", default="benchmarks/results/dag_vs_torchgfn")
    ap.add_argument("--iterations", type=int, default=10_000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--module", default="gnn_v2", choices=("gnn_v2", "gnn", "mlp"), help="torchgfn's policy")
    ap.add_argument("--script", default=None,
                    help="torchgfn's tutorials/examples/train_bayesian_structure.py (default: taken from "
                         "--torchgfn-git at its HEAD into ~/.cache/gfn-peers/torchgfn_examples/)")
    ap.add_argument("--torchgfn-git", default="/work/.mirror/GFNOrg+torchgfn/repo",
                    help="a git directory of torchgfn (a bare clone or snapshot) to take the example script from")
    args = ap.parse_args(argv)
    {"export": export, "peer": peer, "ours": ours}[args.mode](args)


if __name__ == "__main__":
    main()
