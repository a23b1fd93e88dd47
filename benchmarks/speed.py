"""Per-iteration training time of gfn (TB, on-policy, log-probs recomputed in the loss).

One cell = (environment, batch size).  The model is the one torchgfn's library benchmark
uses: P_F and P_B MLPs with 2 hidden layers of 256 sharing their trunk, a scalar log Z,
Adam with lr 1e-3 (log Z: 0.1) and gradient-norm clipping at 1.0.  One thread.

    python benchmarks/speed.py --env hypergrid --ndim 4 --height 16 --batch-size 64 \
        --iterations 100 --warmup 20
    python benchmarks/speed.py --matrix --out benchmarks/results/speed.json

Prints one JSON object per cell: ``ms_per_iter`` (median wall time over the timed
iterations), ``ms_mean``, ``ms_p10``/``ms_p90``, ``cpu_ms_per_iter`` (median process CPU time:
less sensitive to other jobs on a shared machine) and ``phases_ms`` (median per phase: sample /
loss / backward / optimizer, as measured inside :meth:`gfn.Trainer.train_step`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

#: the cells of issue 4 (torchgfn's tb_hypergrid_small / medium, tb_bitseq_small, tb_ising_6x6)
MATRIX_ENVS = [
    ("hypergrid", {"ndim": 2, "height": 8}),
    ("hypergrid", {"ndim": 4, "height": 16}),
    ("bitseq", {"word_size": 1, "seq_size": 8, "n_modes": 2, "mdp": "fill"}),
    # torchgfn 2.4.1's BitSequence is append-only: the like-for-like cell for the side-by-side ratio
    ("bitseq", {"word_size": 1, "seq_size": 8, "n_modes": 2, "mdp": "append"}),
    ("ising", {"L": 6, "J": 0.44}),
]
MATRIX_BATCH_SIZES = (16, 64, 256)

#: ms/iteration quoted in issue 4 (one core, median of 100): (torchgfn 2.4.1, gfnx) per B
ISSUE_NUMBERS = {
    "hypergrid 2D h8": {16: (23, 7.1), 64: (31, 16), 256: (64, 59)},
    "hypergrid 4D h16": {16: (54, 21), 64: (77, 67), 256: (180, 299)},
    "bitseq w1 l8 m2": {16: (18, 5.2), 64: (29, 10), 256: (62, 34)},
    "ising 6x6": {16: (71, 20), 64: (131, 55), 256: (358, 239)},
}


def cell_name(env_name: str, kw: dict) -> str:
    """Human-readable cell label, the same keys as :data:`ISSUE_NUMBERS`."""
    if env_name == "hypergrid":
        return f"hypergrid {kw['ndim']}D h{kw['height']}"
    if env_name == "bitseq":
        name = f"bitseq w{kw['word_size']} l{kw['seq_size']} m{kw['n_modes']}"
        return name if kw.get("mdp", "fill") == "fill" else f"{name} {kw['mdp']}"
    if env_name == "ising":
        return f"ising {kw['L']}x{kw['L']}"
    return env_name


def make_env(env_name: str, kw: dict, seed: int):
    """Build a registered environment (bitseq / ising only once their modules are registered)."""
    from gfn.envs import list_envs, make_env as _make
    if env_name not in list_envs():
        raise KeyError(f"environment {env_name!r} is not registered in gfn.envs (registered: {', '.join(list_envs())})")
    if env_name == "bitseq":  # torchgfn's names -> gfn.envs.BitSequence's; non-autoregressive ("fill") by default
        kw = {"word_size": kw["word_size"], "seq_len": kw["seq_size"], "n_modes": kw["n_modes"],
              "mdp": kw.get("mdp", "fill"), "mode_seed": seed}
    try:
        return _make(env_name, **kw)
    except TypeError as e:
        raise TypeError(f"gfn.envs.make_env({env_name!r}, **{kw}) failed: {e}") from e


def build_trainer(env_name: str, kw: dict, batch_size: int, seed: int, compile_model: bool = False,
                  fast: bool = True, keep_log_probs: bool = False):
    """A :class:`gfn.Trainer` set up like torchgfn's TB benchmark for one cell."""
    import gfn
    from gfn.objectives import get_objective
    gfn.seed_everything(seed)
    env = make_env(env_name, kw, seed)
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=256, n_layers=2, shared_trunk=True)
    cfg = gfn.TrainerConfig(batch_size=batch_size, lr=1e-3, lr_log_z=0.1, grad_clip=1.0,
                            keep_log_probs=keep_log_probs)
    sampler = gfn.Sampler(env, model, validate=not fast)
    trainer = gfn.Trainer(env, model, objective, cfg, sampler=sampler)
    if compile_model:
        from gfn.static import compile_model as _compile
        _compile(model)
    return trainer


def time_trainer(trainer, iterations: int, warmup: int) -> dict:
    """Median per-iteration and per-phase times (ms) of ``trainer.train_step``."""
    for _ in range(warmup):
        trainer.train_step()
    log_z0 = float(trainer.model.log_z.value.detach())
    totals, cpu, phases = [], [], {"sample": [], "loss": [], "backward": [], "optimizer": []}
    rows = 0
    for _ in range(iterations):
        c0, t0 = time.process_time(), time.perf_counter()
        info = trainer.train_step()
        totals.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        rows += info.batch.n_rows
        for k in phases:
            phases[k].append(info.timings.get(k, 0.0) * 1e3)
    q = statistics.quantiles(totals, n=10) if len(totals) >= 2 else [totals[0]] * 9
    return {
        "ms_per_iter": statistics.median(totals), "ms_mean": statistics.fmean(totals),
        "ms_p10": q[0], "ms_p90": q[-1], "cpu_ms_per_iter": statistics.median(cpu),
        "phases_ms": {k: statistics.median(v) for k, v in phases.items()},
        "mean_rows": rows / max(iterations, 1),
        "log_z_moved": float(trainer.model.log_z.value.detach()) != log_z0,
    }


def conditions() -> dict:
    """Machine conditions recorded with each result."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "loadavg_1m": round(load[0], 2)}


def run_cell(env_name: str, kw: dict, batch_size: int, iterations: int, warmup: int, seed: int = 0,
             compile_model: bool = False, fast: bool = True, keep_log_probs: bool = False) -> dict:
    """Time one cell and return its JSON record."""
    trainer = build_trainer(env_name, kw, batch_size, seed, compile_model, fast, keep_log_probs)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    res = time_trainer(trainer, iterations, warmup)
    name = cell_name(env_name, kw)
    peer = ISSUE_NUMBERS.get(name, {}).get(batch_size)
    rec = {"library": "gfn", "env": env_name, "cell": name, "env_kwargs": kw, "batch_size": batch_size,
           "iterations": iterations, "warmup": warmup, "n_params": n_params, "compile": compile_model,
           "keep_log_probs": keep_log_probs, **res}
    if peer is not None:
        rec["issue_torchgfn_ms"], rec["issue_gfnx_ms"] = peer
    rec["conditions"] = conditions()
    return rec


def env_kwargs_from_args(a) -> dict:
    """Environment keyword arguments for ``--env``."""
    if a.env == "hypergrid":
        return {"ndim": a.ndim, "height": a.height}
    if a.env == "bitseq":
        return {"word_size": a.word_size, "seq_size": a.seq_size, "n_modes": a.n_modes, "mdp": a.mdp}
    if a.env == "ising":
        return {"L": a.L, "J": a.J}
    raise ValueError(f"unknown --env {a.env!r}")


def add_cell_args(p: argparse.ArgumentParser) -> None:
    """The flags that select a benchmark cell (environment, its parameters, batch sizes)."""
    p.add_argument("--env", default="hypergrid", choices=["hypergrid", "bitseq", "ising"])
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--word-size", type=int, default=1)
    p.add_argument("--seq-size", type=int, default=8)
    p.add_argument("--n-modes", type=int, default=2)
    p.add_argument("--mdp", default="fill", choices=["fill", "append"],
                   help="bitseq MDP: fill (non-autoregressive, as the issue and gfnx) or append (as torchgfn 2.4.1)")
    p.add_argument("--L", type=int, default=6)
    p.add_argument("--J", type=float, default=0.44)
    p.add_argument("--batch-size", type=int, nargs="+", default=[16])


def main(argv=None) -> list[dict]:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cell_args(p)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="torch.compile the MLPs (gfn.compile)")
    p.add_argument("--validate", action="store_true", help="validated env steps (slower; off like torchgfn's debug=False)")
    p.add_argument("--keep-log-probs", action="store_true",
                   help="reuse the sampling pass's log P_F in the loss (TrainerConfig.keep_log_probs)")
    p.add_argument("--matrix", action="store_true", help="run every cell of issue 4 (skips unregistered envs)")
    p.add_argument("--out", default=None, help="also write all records to this JSON file")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.matrix:
        from gfn.envs import list_envs
        cells = [(e, kw, b) for e, kw in MATRIX_ENVS for b in MATRIX_BATCH_SIZES]
        missing = sorted({e for e, _, _ in cells if e not in list_envs()})
        if missing:
            print(json.dumps({"skipped_envs": missing, "reason": "not registered in gfn.envs"}), file=sys.stderr)
        cells = [c for c in cells if c[0] not in missing]
    else:
        cells = [(a.env, env_kwargs_from_args(a), b) for b in a.batch_size]
    records = []
    for env_name, kw, b in cells:
        rec = run_cell(env_name, kw, b, a.iterations, a.warmup, a.seed, a.compile, fast=not a.validate,
                       keep_log_probs=a.keep_log_probs)
        print(json.dumps(rec), flush=True)
        records.append(rec)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(records, f, indent=1)
    return records


if __name__ == "__main__":
    main()
