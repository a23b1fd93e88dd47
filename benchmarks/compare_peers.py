"""gfn vs torchgfn (and gfnx when importable), side by side, on the cells of issue 4.

Every measurement is a fresh process (one thread); for each cell and repeat the libraries
alternate order (gfn first on even repeats, the peer first on odd ones) so slow drifts of a
shared machine hit both.  The ratio reported per cell is ``median(gfn) / median(torchgfn)``
over the repeats, each repeat being the median of ``--iterations`` timed iterations.

    python benchmarks/compare_peers.py --matrix --repeats 3 --out benchmarks/results/peers.json
    python benchmarks/compare_peers.py --env hypergrid --ndim 2 --height 8 --batch-size 16 64

torchgfn's package is also named ``gfn``: install it into its own folder (see
``peer_torchgfn.py``) and pass ``--torchgfn-path`` (default: ``$GFN_TORCHGFN_PATH`` or
``~/.cache/gfn-peers/torchgfn``).  gfnx (JAX) is timed by ``peer_gfnx.py``, which runs in an
interpreter of its own (gfnx 0.0.1 pins ``numpy==1.26.4``; see that script to set it up) passed
as ``--gfnx-python`` (default: ``$GFN_GFNX_PYTHON`` or ``~/.cache/gfn-peers/gfnxenv/bin/python``);
when that interpreter is missing or cannot import ``jax`` and ``gfnx``, gfnx is skipped cleanly
and the issue's gfnx numbers are compared through ``gfn_ms_at_issue_scale`` (our ratio to
torchgfn times the issue's torchgfn time).  gfnx has no append-MDP bit sequence, so gfnx is not run on the ``bitseq ... append`` cells.

New environments (issue 24), gfn against torchgfn, time per training iteration (no evaluation)::

    python benchmarks/compare_peers.py --env diffusion --repeats 3 --iterations 20 --warmup 3
    python benchmarks/compare_peers.py --env dag --repeats 3 --iterations 30 --warmup 5
    python benchmarks/compare_peers.py --env diffusion dag --out benchmarks/results/peers_new_envs.json

* ``diffusion``: 25GMM, TB, T = 100, B = 300, the PIS network (harmonics 64, hidden 64, 2 joint
  layers); ours is ``diffusion_speed.py``'s worker with the trainer's default log P_F path,
  torchgfn's is its ``DiffusionSampling`` (``peer_torchgfn_diffusion.py --time-only``, log-probs
  saved during sampling, as its tutorial).
* ``dag``: 5 nodes, BGe (uniform prior) on the data of our ``DAGEnv(data_seed=0)`` (100 samples of
  an ER graph with 5 expected edges), batch 32, epsilon 1.0 (the start of both schedules).  Ours:
  TB with a uniform P_B, the protocol of ``dag_vs_torchgfn.py ours``; torchgfn's: its
  BayesianStructure example unchanged (GNN-v2, TB, replay buffer; ``peer_torchgfn_dag.py``).

The same alternation as above, and per row: medians of CPU and wall ms per iteration, the ratio
of CPU medians, the median over repeats of the paired (back-to-back) CPU and wall ratios, and the
1-minute load average at the start of every run.  On the ``dag`` row gfnx runs too when its
interpreter imports it (``peer_gfnx_dag.py``: gfnx's ``DAGEnvironment`` and BGe score on the same
data, ``peer_gfnx.py``'s TB step with a learned P_B head and no epsilon, since gfnx 0.0.1 ships no
DAG training script).  Phylogenetic trees (gfnx's ``PhyloTreeEnvironment``) and multi-objective
environments have no row (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from speed import ISSUE_NUMBERS, MATRIX_BATCH_SIZES, MATRIX_ENVS, add_cell_args, cell_name, conditions  # noqa: E402


def _run_json(cmd: list[str], env: dict, timeout: float) -> dict | None:
    """Run a worker and return the last JSON line it printed (None on failure)."""
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"# timeout: {' '.join(cmd)}", file=sys.stderr)
        return None
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"# failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def _base_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    return env


def gfn_cmd(env_name: str, kw: dict, b: int, a) -> list[str]:
    """Command line timing gfn on one cell (benchmarks/speed.py)."""
    cmd = [sys.executable, os.path.join(HERE, "speed.py"), "--env", env_name, "--batch-size", str(b),
           "--iterations", str(a.iterations), "--warmup", str(a.warmup), "--seed", str(a.seed)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def peer_cmd(script: str, env_name: str, kw: dict, b: int, a, python: str | None = None) -> list[str]:
    """Command line timing a peer library on one cell (with ``python``, default this interpreter)."""
    return [python or sys.executable, os.path.join(HERE, script), "--cell", json.dumps({"env": env_name, "env_kwargs": kw}),
            "--batch-size", str(b), "--iterations", str(a.iterations), "--warmup", str(a.warmup), "--seed", str(a.seed)]


def torchgfn_available(path: str) -> bool:
    """Whether torchgfn is installed in ``path`` (its own folder; see peer_torchgfn.py)."""
    return os.path.isdir(os.path.join(path, "gfn", "gym"))


def default_gfnx_python() -> str:
    """``$GFN_GFNX_PYTHON``, else the interpreter of the virtualenv that peer_gfnx.py's docstring sets up."""
    return os.environ.get("GFN_GFNX_PYTHON") or os.path.expanduser("~/.cache/gfn-peers/gfnxenv/bin/python")


def gfnx_available(python: str | None, timeout: float = 30.0) -> bool:
    """Whether the interpreter ``python`` exists and imports ``jax`` and ``gfnx`` (for ``peer_gfnx.py``).

    gfnx 0.0.1 pins numpy==1.26.4, so it lives in an environment of its own whose interpreter is
    given here; without one gfnx is skipped and the issue's gfnx numbers are compared through
    the ``gfn ms at issue scale`` column instead."""
    if not python or not os.path.isfile(python) or not os.access(python, os.X_OK):
        return False
    if not os.path.exists(os.path.join(HERE, "peer_gfnx.py")):
        return False
    try:
        out = subprocess.run([python, "-c", "import jax, gfnx"], env=_base_env(), capture_output=True,
                             timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def compare_cell(env_name: str, kw: dict, b: int, a, tg_path: str | None, gfnx_python: str | None) -> dict:
    """Alternate gfn and the peers ``a.repeats`` times on one cell; summarise (gfnx when ``gfnx_python``)."""
    base = _base_env()
    tg_env = dict(base, PYTHONPATH=tg_path) if tg_path else None
    runs = {"gfn": [], "torchgfn": [], "gfnx": []}
    for r in range(a.repeats):
        jobs = [("gfn", gfn_cmd(env_name, kw, b, a), base)]
        if tg_env is not None:
            jobs.append(("torchgfn", peer_cmd("peer_torchgfn.py", env_name, kw, b, a), tg_env))
        if gfnx_python and not (env_name == "bitseq" and kw.get("mdp", "fill") != "fill"):  # gfnx: fill MDP only
            jobs.append(("gfnx", peer_cmd("peer_gfnx.py", env_name, kw, b, a, python=gfnx_python), base))
        if r % 2 == 1:
            jobs.reverse()
        for lib, cmd, env in jobs:
            rec = _run_json(cmd, env, a.timeout)
            if rec is not None:
                runs[lib].append(rec)
    name = cell_name(env_name, kw)
    out = {"cell": name, "env": env_name, "env_kwargs": kw, "batch_size": b, "repeats": a.repeats,
           "iterations": a.iterations, "warmup": a.warmup}
    for lib, recs in runs.items():
        if recs:
            ms = [x["ms_per_iter"] for x in recs]
            out[f"{lib}_ms"] = statistics.median(ms)
            out[f"{lib}_ms_runs"] = [round(x, 3) for x in ms]
            out[f"{lib}_n_params"] = recs[0].get("n_params")
            if all("cpu_ms_per_iter" in x for x in recs):
                out[f"{lib}_cpu_ms"] = statistics.median([x["cpu_ms_per_iter"] for x in recs])
                out[f"{lib}_cpu_ms_runs"] = [round(x["cpu_ms_per_iter"], 3) for x in recs]
    if runs["gfn"]:
        out["gfn_phases_ms"] = {k: statistics.median([x["phases_ms"][k] for x in runs["gfn"]])
                                for k in runs["gfn"][0]["phases_ms"]}
    if "gfn_ms" in out and "torchgfn_ms" in out:
        out["ratio_gfn_torchgfn"] = out["gfn_ms"] / out["torchgfn_ms"]
        if len(runs["gfn"]) == len(runs["torchgfn"]):
            # each repeat ran the two libraries back to back: the median of these paired ratios is
            # less sensitive than the ratio of medians to slow load changes on a shared machine
            out["paired_ratio_gfn_torchgfn"] = statistics.median(
                g["ms_per_iter"] / t["ms_per_iter"] for g, t in zip(runs["gfn"], runs["torchgfn"]))
    if "gfn_cpu_ms" in out and "torchgfn_cpu_ms" in out:
        out["cpu_ratio_gfn_torchgfn"] = out["gfn_cpu_ms"] / out["torchgfn_cpu_ms"]
    if "gfn_ms" in out and "gfnx_ms" in out:
        out["ratio_gfn_gfnx"] = out["gfn_ms"] / out["gfnx_ms"]
        if len(runs["gfn"]) == len(runs["gfnx"]):  # paired like torchgfn: same repeat, back to back
            out["paired_ratio_gfn_gfnx"] = statistics.median(
                g["ms_per_iter"] / x["ms_per_iter"] for g, x in zip(runs["gfn"], runs["gfnx"]))
            if all("cpu_ms_per_iter" in r for r in runs["gfn"] + runs["gfnx"]):
                out["paired_cpu_ratio_gfn_gfnx"] = statistics.median(
                    g["cpu_ms_per_iter"] / x["cpu_ms_per_iter"] for g, x in zip(runs["gfn"], runs["gfnx"]))
    if "gfn_cpu_ms" in out and "gfnx_cpu_ms" in out:
        out["cpu_ratio_gfn_gfnx"] = out["gfn_cpu_ms"] / out["gfnx_cpu_ms"]
    out["loadavg_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    quoted = ISSUE_NUMBERS.get(name, {}).get(b)
    if quoted is not None:
        out["issue_torchgfn_ms"], out["issue_gfnx_ms"] = quoted
        if "ratio_gfn_torchgfn" in out:
            # this machine is not the issue's: carry our ratio over to the issue's torchgfn time
            out["gfn_ms_at_issue_scale"] = out["ratio_gfn_torchgfn"] * quoted[0]
            out["gfn_le_best_quoted"] = out["gfn_ms_at_issue_scale"] <= min(quoted)
    out["conditions"] = conditions()
    return out


NEW_ENVS = ("diffusion", "dag")
DAG_NODES = 5


def _export_dag_data(path: str, data_seed: int = 0) -> None:
    """Our 5-node DAG environment's observations (both libraries score this data with BGe)."""
    import numpy as np
    from gfn.envs.dag import DAGEnv

    env = DAGEnv(DAG_NODES, 5.0, 100, 100, score="bge", prior="uniform", data_seed=data_seed)
    np.savez(path, data=env.data.numpy())


def gfn_dag_worker(data_path: str, a) -> dict:
    """Time our DAG TB iteration (``dag_vs_torchgfn.py ours`` protocol, epsilon 1.0) in this process."""
    import numpy as np
    import torch
    from gfn import Trainer
    from gfn.config import parse_config
    from gfn.envs.dag import DAGEnv
    from gfn.runner import build_objective_and_model, trainer_config
    from gfn.utils import seed_everything
    from speed import time_trainer

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
    from train_dag import DAGConfig

    torch.set_num_threads(1)
    env = DAGEnv(data=torch.from_numpy(np.load(data_path, allow_pickle=False)["data"]), score="bge", prior="uniform")
    cfg = parse_config(DAGConfig, ["--objective", "tb", "--uniform-pb", "--batch-size", str(a.dag_batch_size),
                                   "--lr", "1e-3", "--lr-log-z", "0.1", "--epsilon", "1.0", "--seed", str(a.seed)])
    seed_everything(cfg.seed)
    objective, model = build_objective_and_model(cfg, env)
    trainer = Trainer(env, model, objective, trainer_config(cfg))
    rec = time_trainer(trainer, a.iterations, a.warmup)
    rec["n_params"] = sum(p.numel() for p in model.parameters())
    return rec


def new_env_jobs(env_name: str, a, tg_path: str | None, data_path: str | None,
                 gfnx_python: str | None = None) -> list:
    """``(library, command, environment)`` of one repeat on a new-environment row."""
    base = _base_env()
    tg_env = dict(base, PYTHONPATH=tg_path) if tg_path else None
    it = ["--iterations", str(a.iterations), "--warmup", str(a.warmup), "--seed", str(a.seed)]
    if env_name == "diffusion":
        from gfn.envs.diffusion import DiffusionConfig
        variant = "keep" if DiffusionConfig().keep_log_pf else "rescore"
        size = ["--steps", "100", "--batch-size", "300"]
        jobs = [("gfn", [sys.executable, os.path.join(HERE, "diffusion_speed.py"), "--worker", variant,
                         "--target", "gmm25", "--objective", "tb", *size, *it], base)]
        if tg_env is not None:
            jobs.append(("torchgfn", [sys.executable, os.path.join(HERE, "peer_torchgfn_diffusion.py"), "--side",
                                      "torchgfn", "--time-only", *size, *it], tg_env))
        return jobs
    if env_name == "dag":
        jobs = [("gfn", [sys.executable, os.path.abspath(__file__), "--worker", "dag", "--dag-data", data_path,
                         "--dag-batch-size", str(a.dag_batch_size), *it], base)]
        if tg_env is not None:
            jobs.append(("torchgfn", [sys.executable, os.path.join(HERE, "peer_torchgfn_dag.py"), "--data", data_path,
                                      "--batch-size", str(a.dag_batch_size), *it], tg_env))
        if gfnx_python:
            jobs.append(("gfnx", [gfnx_python, os.path.join(HERE, "peer_gfnx_dag.py"), "--data", data_path,
                                  "--batch-size", str(a.dag_batch_size), *it], base))
        return jobs
    raise ValueError(f"unknown new environment {env_name!r}; choose from {NEW_ENVS}")


def compare_new_env(env_name: str, a, tg_path: str | None, data_path: str | None,
                    gfnx_python: str | None = None) -> dict:
    """Alternate gfn and the peers ``a.repeats`` times on one new-environment row; summarise."""
    runs = {"gfn": [], "torchgfn": [], "gfnx": []}
    loads = []
    for r in range(a.repeats):
        jobs = new_env_jobs(env_name, a, tg_path, data_path, gfnx_python)
        if r % 2 == 1:
            jobs.reverse()
        for lib, cmd, env in jobs:
            loads.append(os.getloadavg()[0])
            rec = _run_json(cmd, env, a.timeout)
            if rec is not None:
                rec["repeat"] = r
                runs[lib].append(rec)
    out = {"cell": env_name, "repeats": a.repeats, "iterations": a.iterations, "warmup": a.warmup,
           "batch_size": 300 if env_name == "diffusion" else a.dag_batch_size,
           "loadavg_1min_at_starts": [round(x, 2) for x in loads]}
    for lib, recs in runs.items():
        if recs:
            out[f"{lib}_runs"] = recs
            out[f"{lib}_ms"] = statistics.median(x["ms_per_iter"] for x in recs)
            out[f"{lib}_cpu_ms"] = statistics.median(x["cpu_ms_per_iter"] for x in recs)
    if runs["gfn"] and runs["torchgfn"]:
        out["cpu_ratio_gfn_torchgfn"] = out["gfn_cpu_ms"] / out["torchgfn_cpu_ms"]
        out["ratio_gfn_torchgfn"] = out["gfn_ms"] / out["torchgfn_ms"]
        pairs = [(g, t) for g in runs["gfn"] for t in runs["torchgfn"] if g["repeat"] == t["repeat"]]
        out["paired_cpu_ratio_gfn_torchgfn"] = statistics.median(g["cpu_ms_per_iter"] / t["cpu_ms_per_iter"]
                                                                 for g, t in pairs)
        out["paired_ratio_gfn_torchgfn"] = statistics.median(g["ms_per_iter"] / t["ms_per_iter"] for g, t in pairs)
        out["paired_cpu_ratios"] = [round(g["cpu_ms_per_iter"] / t["cpu_ms_per_iter"], 3) for g, t in pairs]
    if runs["gfn"] and runs["gfnx"]:
        out["cpu_ratio_gfn_gfnx"] = out["gfn_cpu_ms"] / out["gfnx_cpu_ms"]
        pairs = [(g, x) for g in runs["gfn"] for x in runs["gfnx"] if g["repeat"] == x["repeat"]]
        out["paired_cpu_ratio_gfn_gfnx"] = statistics.median(g["cpu_ms_per_iter"] / x["cpu_ms_per_iter"]
                                                             for g, x in pairs)
        out["paired_ratio_gfn_gfnx"] = statistics.median(g["ms_per_iter"] / x["ms_per_iter"] for g, x in pairs)
    out["conditions"] = conditions()
    return out


def new_env_table(rows: list[dict]) -> str:
    """README table of the new-environment rows (CPU time first: the machine is shared)."""
    lines = ["| env | B | gfn CPU ms | torchgfn CPU ms | gfn/torchgfn CPU | paired CPU (min-max) | gfn ms | "
             "torchgfn ms | paired wall | gfnx CPU ms | gfn/gfnx paired CPU | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(k, fmt="{:.1f}"):
            return fmt.format(r[k]) if k in r else "–"
        pr = r.get("paired_cpu_ratios") or []
        span = f" ({min(pr):.2f}-{max(pr):.2f})" if pr else ""
        ld = r["loadavg_1min_at_starts"]
        lines.append(f"| {r['cell']} | {r['batch_size']} | {f('gfn_cpu_ms')} | {f('torchgfn_cpu_ms')} | "
                     f"{f('cpu_ratio_gfn_torchgfn', '{:.2f}')} | {f('paired_cpu_ratio_gfn_torchgfn', '{:.2f}')}{span} | "
                     f"{f('gfn_ms')} | {f('torchgfn_ms')} | {f('paired_ratio_gfn_torchgfn', '{:.2f}')} | "
                     f"{f('gfnx_cpu_ms')} | {f('paired_cpu_ratio_gfn_gfnx', '{:.2f}')} | "
                     f"{min(ld):.1f}-{max(ld):.1f} |")
    return "\n".join(lines)


def new_env_main(argv) -> list[dict]:
    """``--env diffusion`` / ``--env dag`` (see the module docstring); ``--worker dag`` times ours."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", nargs="+", choices=NEW_ENVS, default=list(NEW_ENVS))
    p.add_argument("--worker", choices=["dag"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--dag-data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dag-batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per worker process")
    p.add_argument("--torchgfn-path", default=os.environ.get("GFN_TORCHGFN_PATH", os.path.expanduser("~/.cache/gfn-peers/torchgfn")))
    p.add_argument("--no-torchgfn", action="store_true")
    p.add_argument("--gfnx-python", default=default_gfnx_python(),
                   help="gfnx's interpreter (dag row only: peer_gfnx_dag.py); skipped when it cannot import gfnx")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.worker == "dag":
        print(json.dumps(gfn_dag_worker(a.dag_data, a)), flush=True)
        return []
    tg_path = None
    if not a.no_torchgfn:
        if torchgfn_available(a.torchgfn_path):
            tg_path = a.torchgfn_path
        else:
            print(f"# torchgfn not found in {a.torchgfn_path}: skipped", file=sys.stderr)
    gfnx_python = a.gfnx_python if gfnx_available(a.gfnx_python) else None
    import tempfile
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "dag5.npz")
        _export_dag_data(data_path)
        for env_name in a.env:
            row = compare_new_env(env_name, a, tg_path, data_path, gfnx_python)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("_runs")}), flush=True)
            rows.append(row)
    table = new_env_table(rows)
    print(table)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"rows": rows, "table": table, "argv": list(argv)}, f, indent=1)
    return rows


def _wants_new_env(argv) -> bool:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env", nargs="+", default=None)
    pre.add_argument("--worker", default=None)
    known, _ = pre.parse_known_args(argv)
    return known.worker is not None or bool(known.env and set(known.env) <= set(NEW_ENVS))


def markdown_table(rows: list[dict]) -> str:
    """The README table: one line per cell (wall-time medians; CPU-time ratio alongside; gfnx when timed)."""
    with_gfnx = any("gfnx_ms" in r for r in rows)  # measured gfnx columns only when gfnx ran
    lines = ["| cell | B | gfn ms | torchgfn ms | gfn/torchgfn (wall) | paired | gfn/torchgfn (CPU) "
             "| gfn ms at issue scale | torchgfn / gfnx ms (issue) |" + (" gfnx ms | gfn/gfnx (wall) |" if with_gfnx else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if with_gfnx else "")]
    for r in rows:
        def f(k, fmt="{:.1f}"):
            return fmt.format(r[k]) if k in r else "–"
        quoted = f"{f('issue_torchgfn_ms', '{:g}')} / {f('issue_gfnx_ms', '{:g}')}"
        lines.append(f"| {r['cell']} | {r['batch_size']} | {f('gfn_ms')} | {f('torchgfn_ms')} | "
                     f"{f('ratio_gfn_torchgfn', '{:.2f}')} | {f('paired_ratio_gfn_torchgfn', '{:.2f}')} | "
                     f"{f('cpu_ratio_gfn_torchgfn', '{:.2f}')} | "
                     f"{f('gfn_ms_at_issue_scale')} | {quoted} |"
                     + (f" {f('gfnx_ms')} | {f('ratio_gfn_gfnx', '{:.2f}')} |" if with_gfnx else ""))
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if _wants_new_env(argv):
        return new_env_main(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cell_args(p)
    p.add_argument("--matrix", action="store_true", help="all cells of issue 4 (unregistered envs skipped)")
    p.add_argument("--matrix-batch-sizes", type=int, nargs="+", default=list(MATRIX_BATCH_SIZES),
                   help="batch sizes of the --matrix cells")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per worker process")
    p.add_argument("--torchgfn-path", default=os.environ.get("GFN_TORCHGFN_PATH", os.path.expanduser("~/.cache/gfn-peers/torchgfn")))
    p.add_argument("--no-torchgfn", action="store_true")
    p.add_argument("--gfnx-python", default=default_gfnx_python(),
                   help="interpreter of gfnx's own environment (default: $GFN_GFNX_PYTHON or "
                        "~/.cache/gfn-peers/gfnxenv/bin/python); gfnx is skipped without it")
    p.add_argument("--out", default=None, help="write the records (and the markdown table) here")
    a = p.parse_args(argv)

    from speed import env_kwargs_from_args
    from gfn.envs import list_envs
    if a.matrix:
        cells = [(e, kw, b) for e, kw in MATRIX_ENVS for b in a.matrix_batch_sizes]
    else:
        cells = [(a.env, env_kwargs_from_args(a), b) for b in a.batch_size]
    missing = sorted({e for e, _, _ in cells if e not in list_envs()})
    if missing:
        print(f"# skipping environments not registered in gfn.envs: {', '.join(missing)}", file=sys.stderr)
    cells = [c for c in cells if c[0] not in missing]
    tg_path = None
    if not a.no_torchgfn:
        if torchgfn_available(a.torchgfn_path):
            tg_path = a.torchgfn_path
        else:
            print(f"# torchgfn not found in {a.torchgfn_path}: skipped (see peer_torchgfn.py to install it)", file=sys.stderr)
    gfnx_python = a.gfnx_python if gfnx_available(a.gfnx_python) else None
    if gfnx_python is None:
        print(f"# gfnx skipped (no interpreter importing jax and gfnx at --gfnx-python={a.gfnx_python!r}; "
              "see peer_gfnx.py): the issue's gfnx numbers are shown instead", file=sys.stderr)
    rows = []
    for env_name, kw, b in cells:
        row = compare_cell(env_name, kw, b, a, tg_path, gfnx_python)
        print(json.dumps(row), flush=True)
        rows.append(row)
    table = markdown_table(rows)
    print(table)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"rows": rows, "table": table}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
