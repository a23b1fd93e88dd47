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
