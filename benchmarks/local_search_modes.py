"""Local search GFlowNets vs TB on TFBind8 and QM9str: reference modes found per reward call.

For each task and seed, every method trains until it has spent the same number of reward
evaluations (``--budget``):

* ``tb+ls``: TB + local search; per round ``M`` samples plus ``M * I`` local-search candidates;
* ``tb-rounds``: TB with batch ``M * (1 + I)`` — the same reward calls *and* the same number of
  rounds (gradient steps) as ``tb+ls``: the extra calls buy fresh samples instead of local search;
* ``tb``: TB with batch ``M`` — the same reward calls spread over ``1 + I`` times more rounds.

Two counts of distinct reference modes are recorded against reward calls:

* ``evaluated``: every object whose reward was computed (samples and all LS candidates);
* ``trained``: only objects in the batches the model trained on (samples and the refined,
  accepted objects) — the stricter count.

``--protocol paper`` runs the authors' protocol instead (ls_gfn, :class:`gfn.local_search.PaperRounds`):
each round spends ``--calls-per-round`` (32) reward calls, ``tb+ls``: M = 32 / (I + 1) = 4 fresh
samples plus M * I = 28 candidates (K=3, their k=4; I=7; deterministic filter), all of them
trained on; ``tb``: 32 fresh samples; both then train on a prioritised replay batch of 32, with
``--steps-per-batch`` (3) gradient steps on each batch, lr 1e-4, lr log Z 1e-2, epsilon 0.01,
the prepend/append MDP.  ``evaluated`` counts every object whose reward was computed.

Writes ``<out>.json`` (curves per run, means over seeds, final counts) and ``<out>.png``.

    python benchmarks/local_search_modes.py --tasks tfbind8 qm9str --seeds 0 1 2 \
        --budget 32000 --data-dir ../shared/data --out benchmarks/results/local_search_modes
    python benchmarks/local_search_modes.py --protocol paper --tasks tfbind8 --seeds 1 2 3 \
        --budget 32000 --out benchmarks/results/local_search_modes_paper
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from gfn import Trainer, TrainerConfig, seed_everything
from gfn.envs.sequences import QM9Str, TFBind8
from gfn.envs.sequences.data import full_code
from gfn.local_search import LocalSearch, PaperRounds
from gfn.replay import RewardPrioritizedReplay
from gfn.objectives import get_objective
from report import write_json

#: backtracking steps per task (TFBind8: K = 6 of 8 tokens did best in a sweep on seed 0, see the report)
DEFAULT_K = {"tfbind8": 6, "qm9str": 2}
METHODS = ("tb", "tb-rounds", "tb+ls")
#: the authors' settings (ls_gfn: scripts/tfbind8.sh, exps/*/settings.yaml); K=3 is their k=4
PAPER_DEFAULTS = {"k": 3, "mdp": "prepend_append", "lr": 1e-4, "lr_log_z": 1e-2, "hidden": 128,
                  "epsilon": 0.01, "methods": ["tb", "tb+ls"]}
LIBRARY_DEFAULTS = {"mdp": None, "lr": 1e-3, "lr_log_z": 0.1, "hidden": 256, "epsilon": 0.0, "methods": list(METHODS)}


def make_env(task: str, data_dir: str | None, mdp: str | None = None):
    """The task environment; ``mdp`` None: the environment's default MDP (append for TFBind8,
    prepend/append for QM9str)."""
    kw = {} if mdp is None else {"mdp": mdp}
    return TFBind8(data_dir, **kw) if task == "tfbind8" else QM9Str(data_dir, **kw)


class ModeCounter:
    """Distinct reference modes among the objects shown to it, against reward calls."""

    def __init__(self, env):
        self.V = env.vocab_size
        self.is_mode = torch.zeros(self.V ** env.max_len, dtype=torch.bool)
        self.is_mode[env.mode_codes()] = True
        self.n_modes = int(self.is_mode.sum())
        self.seen = torch.zeros_like(self.is_mode)

    def add(self, states: torch.Tensor) -> None:
        """Mark objects as found."""
        self.seen[full_code(states, self.V)] = True

    @property
    def found(self) -> int:
        """Reference modes found so far."""
        return int((self.seen & self.is_mode).sum())


def run_one_paper(task: str, method: str, seed: int, args) -> dict:
    """The authors' protocol: whole rounds of ``--calls-per-round`` reward calls until the budget
    is spent; ``evaluated`` = modes among all evaluated objects (the replay buffer holds them all)."""
    torch.set_num_threads(1)
    env = make_env(task, args.data_dir, args.mdp)
    seed_everything(seed)
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=args.hidden, n_layers=args.n_layers)
    evaluated, trained = ModeCounter(env), ModeCounter(env)

    def on_trained(trainer, batch):
        trained.add(batch.terminal_states)
        return batch

    ls = None
    if method == "tb+ls":
        ls = LocalSearch(args.k if args.k > 0 else 3, args.ls_iterations, accept=args.accept)
    elif method != "tb":
        raise ValueError(f"--protocol paper compares tb and tb+ls, not {method!r}")
    rounds = PaperRounds(n_calls=args.calls_per_round, steps_per_batch=args.steps_per_batch,
                         replay_batch=args.replay_batch, local_search=ls, train_on=args.train_on)
    trainer = Trainer(env, model, objective, TrainerConfig(batch_size=args.replay_batch, lr=args.lr,
                                                           lr_log_z=args.lr_log_z, epsilon=args.epsilon),
                      batch_hooks=[on_trained])
    trainer.replay = RewardPrioritizedReplay(10 ** 7)
    trainer.batch_source = rounds
    curve = [{"reward_calls": 0, "evaluated": 0, "trained": 0}]
    next_point = args.record_every
    t0 = time.perf_counter()
    while rounds.n_reward_calls < args.budget:
        for _ in range(rounds.iterations_per_round):
            trainer.train_step()
        if rounds.n_reward_calls >= next_point or rounds.n_reward_calls >= args.budget:
            evaluated.add(trainer.replay.states)
            curve.append({"reward_calls": rounds.n_reward_calls, "evaluated": evaluated.found, "trained": trained.found})
            next_point += args.record_every
    out = {"task": task, "method": method, "seed": seed, "batch_size": rounds.m, "iterations": trainer.iteration,
           "rounds": rounds.n_rounds, "reward_calls": rounds.n_reward_calls,
           "modes_evaluated": evaluated.found, "modes_trained": trained.found, "n_modes": evaluated.n_modes,
           "wall_s": time.perf_counter() - t0, "curve": curve}
    if ls is not None:
        out["ls_acceptance_rate"] = ls.acceptance_rate
        out["k"], out["i"] = ls.k, ls.iterations
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}), flush=True)
    return out


def run_one(task: str, method: str, seed: int, args) -> dict:
    """Train one method on one task until the reward-call budget is spent; returns curves."""
    if args.protocol == "paper":
        return run_one_paper(task, method, seed, args)
    torch.set_num_threads(1)
    env = make_env(task, args.data_dir, args.mdp)
    seed_everything(seed)
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=args.hidden, n_layers=args.n_layers)
    evaluated, trained = ModeCounter(env), ModeCounter(env)
    calls = {"n": 0}

    def on_samples(trainer, batch):  # runs first: the M fresh on-policy samples
        evaluated.add(batch.terminal_states)
        calls["n"] += batch.batch_size
        return batch

    def on_candidates(states, log_r):
        evaluated.add(states)
        calls["n"] += states.shape[0]

    def on_trained(trainer, batch):  # runs last: what the objective sees
        trained.add(batch.terminal_states)
        return batch

    hooks = [on_samples]
    ls = None
    if method == "tb+ls":
        k = args.k if args.k > 0 else DEFAULT_K[task]
        ls = LocalSearch(k, args.ls_iterations, accept=args.accept, on_candidates=on_candidates)
        hooks.append(ls)
    hooks.append(on_trained)
    batch_size = args.batch_size * (1 + args.ls_iterations) if method == "tb-rounds" else args.batch_size
    trainer = Trainer(env, model, objective, TrainerConfig(batch_size=batch_size, lr=args.lr, lr_log_z=args.lr_log_z),
                      batch_hooks=hooks)
    curve = [{"reward_calls": 0, "evaluated": 0, "trained": 0}]
    next_point = args.record_every
    t0 = time.perf_counter()
    while calls["n"] < args.budget:
        trainer.train_step()
        if calls["n"] >= next_point or calls["n"] >= args.budget:
            curve.append({"reward_calls": calls["n"], "evaluated": evaluated.found, "trained": trained.found})
            next_point += args.record_every
    out = {"task": task, "method": method, "seed": seed, "batch_size": batch_size, "iterations": trainer.iteration,
           "reward_calls": calls["n"],
           "modes_evaluated": evaluated.found, "modes_trained": trained.found, "n_modes": evaluated.n_modes,
           "wall_s": time.perf_counter() - t0, "curve": curve}
    if ls is not None:
        out["ls_acceptance_rate"] = ls.acceptance_rate
        out["k"], out["i"] = ls.k, ls.iterations
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}), flush=True)
    return out


def _interp(curve: list[dict], key: str, x: int) -> float:
    """Modes found by reward call ``x`` (step function: last record at or before x)."""
    v = 0
    for c in curve:
        if c["reward_calls"] <= x:
            v = c[key]
    return float(v)


def summarise(runs: list[dict], budget: int, record_every: int) -> dict:
    """Mean modes over seeds on a common grid of reward calls, per task and method."""
    grid = list(range(0, budget + 1, record_every))
    out: dict = {}
    for r in runs:
        out.setdefault(r["task"], {}).setdefault(r["method"], []).append(r)
    summary: dict = {}
    for task, by_method in out.items():
        summary[task] = {}
        for method, rs in by_method.items():
            summary[task][method] = {
                "reward_calls": grid,
                "mean_evaluated": [sum(_interp(r["curve"], "evaluated", x) for r in rs) / len(rs) for x in grid],
                "mean_trained": [sum(_interp(r["curve"], "trained", x) for r in rs) / len(rs) for x in grid],
                "final_mean_evaluated": sum(r["modes_evaluated"] for r in rs) / len(rs),
                "final_mean_trained": sum(r["modes_trained"] for r in rs) / len(rs),
                "final_per_seed_evaluated": [r["modes_evaluated"] for r in rs],
                "final_per_seed_trained": [r["modes_trained"] for r in rs],
                "n_modes": rs[0]["n_modes"], "seeds": [r["seed"] for r in rs], "batch_size": rs[0]["batch_size"],
            }
        a = summary[task].get("tb+ls")
        for base in ("tb", "tb-rounds"):
            b = summary[task].get(base)
            if a is not None and b is not None:
                summary[task][f"ls_finds_more_modes_than_{base}"] = {
                    "evaluated": a["final_mean_evaluated"] > b["final_mean_evaluated"],
                    "trained": a["final_mean_trained"] > b["final_mean_trained"]}
    return summary


def plot(summary: dict, path: str, title: str) -> None:
    """Modes found vs reward calls, one panel per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(summary)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6))
    axes = [axes] if len(tasks) == 1 else axes
    for ax, task in zip(axes, tasks):
        for method, color in (("tb", "tab:blue"), ("tb-rounds", "tab:green"), ("tb+ls", "tab:red")):
            s = summary[task].get(method)
            if s is None:
                continue
            label = f"{method} (evaluated)" if method == "tb+ls" else f"{method} ({s['batch_size']} samples/round)"
            ax.plot(s["reward_calls"], s["mean_evaluated"], color=color, label=label)
            if method == "tb+ls":
                ax.plot(s["reward_calls"], s["mean_trained"], color=color, ls="--", label=f"{method} (trained on)")
        n = next(iter(v for v in summary[task].values() if isinstance(v, dict) and "n_modes" in v))["n_modes"]
        ax.set_title(f"{task} ({n} reference modes)")
        ax.set_xlabel("reward calls")
        ax.set_ylabel("modes found (mean over seeds)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["tfbind8", "qm9str"], choices=["tfbind8", "qm9str"])
    p.add_argument("--protocol", default="library", choices=["library", "paper"],
                   help="library: LS as a batch hook, one step per batch; paper: the authors' rounds (see above)")
    p.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                   help="default: all three (library), tb and tb+ls (paper)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=32000, help="reward calls per run")
    p.add_argument("--batch-size", type=int, default=16, help="M: trajectories sampled per iteration/round")
    p.add_argument("--k", type=int, default=None,
                   help="backtrack steps, non-exit (default: library 6 for TFBind8, 2 for QM9str; paper 3 = their k=4)")
    p.add_argument("--ls-iterations", type=int, default=7, help="I: local-search moves per round")
    p.add_argument("--mdp", default=None, choices=["append", "prepend_append"],
                   help="sequence MDP for every task (default: library each task's default; paper prepend_append)")
    p.add_argument("--accept", default="deterministic", choices=["deterministic", "mh", "barker"])
    p.add_argument("--calls-per-round", type=int, default=32, help="paper: reward calls per round n = M (I + 1)")
    p.add_argument("--steps-per-batch", type=int, default=3, help="paper: gradient steps per online / replay batch")
    p.add_argument("--replay-batch", type=int, default=32, help="paper: prioritised replay batch per round")
    p.add_argument("--train-on", default="all", choices=["all", "both", "refined"],
                   help="paper: all evaluated objects, samples + final chain, or the final chain")
    p.add_argument("--epsilon", type=float, default=None, help="exploration (default: library 0, paper 0.01)")
    p.add_argument("--lr", type=float, default=None, help="default: library 1e-3, paper 1e-4")
    p.add_argument("--lr-log-z", type=float, default=None, help="default: library 0.1, paper 1e-2")
    p.add_argument("--hidden", type=int, default=None, help="default: library 256, paper 128")
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--record-every", type=int, default=1000, help="curve resolution in reward calls")
    p.add_argument("--data-dir", default=os.environ.get("GFN_DATA_DIR") or "../shared/data")
    p.add_argument("--out", default="benchmarks/results/local_search_modes", help="writes <out>.json and <out>.png")
    args = p.parse_args(argv)
    defaults = PAPER_DEFAULTS if args.protocol == "paper" else LIBRARY_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.k is None:
        args.k = 0  # library: per task (DEFAULT_K)
    runs = [run_one(task, method, seed, args) for task in args.tasks for seed in args.seeds for method in args.methods]
    summary = summarise(runs, args.budget, args.record_every)
    report = {"setting": {k: v for k, v in vars(args).items() if k != "out"}, "summary": summary, "runs": runs}
    write_json(args.out + ".json", report)
    ks = ", ".join(f"{t} K={args.k or DEFAULT_K[t]}" for t in args.tasks)
    if args.protocol == "paper":
        plot(summary, args.out + ".png", f"authors' protocol: TB vs TB + LS ({ks}; I={args.ls_iterations}, {args.accept}),\n"
                                         f"{args.calls_per_round} calls/round, seeds {args.seeds}")
    else:
        plot(summary, args.out + ".png", f"TB vs TB + local search ({ks}; I={args.ls_iterations}, {args.accept}), "
                                         f"M={args.batch_size}, seeds {args.seeds}, equal reward calls")
    print(json.dumps({t: {m: ({k: v for k, v in s.items() if k.startswith("final")} if isinstance(s, dict) and "n_modes" in s else s)
                          for m, s in by.items()} for t, by in summary.items()}, indent=1))
    return report


if __name__ == "__main__":
    main()
