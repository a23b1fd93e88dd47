"""PhyloGFN parsimony on a full DS alignment within a CPU budget, next to Biopython's NNI search.

    python benchmarks/phylo_parsimony.py --dataset DS1 --objective fldb --cpu-budget-s 1200 \
        --local-search 8,2 --seed 0 --out benchmarks/results/phylo_parsimony_DS1.json

Trains until the process has used ``--cpu-budget-s`` seconds of CPU time (``time.process_time``,
fair on a shared machine; wall time is reported too), tracking the best Fitch score of every
tree evaluated (on-policy samples and local-search candidates).  Then draws ``--eval-samples``
fresh trees (best / mean parsimony, log Z estimates) and correlates the importance-sampled
log p-hat(T) (``--eval-k`` backward trajectories) with log R(T) on ``--eval-corr`` of them.
The Biopython reference comes from benchmarks/phylo_biopython.py's JSON (``--biopython``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import write_json  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="DS1")
    p.add_argument("--taxa", type=int, default=0)
    p.add_argument("--data-dir", default="")
    p.add_argument("--objective", default="fldb")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epsilon", type=float, default=0.0)
    p.add_argument("--alpha", type=float, default=4.0, help="reward temperature: R = exp((C - M) / alpha)")
    p.add_argument("--cost-bias", action="store_true", help="P_F logits get -s * (mutations a merge adds) / alpha")
    p.add_argument("--local-search", default="", help="K,I (empty: off)")
    p.add_argument("--nni", type=int, default=0,
                   help="refine every sampled tree by NNI hill climbing (at most this many moves; 0: off) and "
                        "train on the refined trees too (gfn.local_search.TerminalSearch)")
    p.add_argument("--ls-accept", default="deterministic", choices=("deterministic", "mh", "barker"))
    p.add_argument("--cpu-budget-s", type=float, default=600.0)
    p.add_argument("--max-iterations", type=int, default=10 ** 9)
    p.add_argument("--trace-every", type=int, default=10, help="iterations between best-so-far records")
    p.add_argument("--eval-samples", type=int, default=256)
    p.add_argument("--eval-corr", type=int, default=64)
    p.add_argument("--eval-k", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--biopython", default="", help="phylo_biopython.py JSON (default: results/phylo_biopython_<DS>.json)")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    from gfn.envs.phylo import PhyloTree
    from gfn.envs.phylo.nni import nni_refine
    from gfn.local_search import LocalSearch, TerminalSearch
    from gfn.metrics.estimated import forward_log_weights, log_prob_estimate, log_z_from_log_weights, pearson
    from gfn.objectives import get_objective
    from gfn.trainer import Trainer, TrainerConfig
    from gfn.utils import seed_everything

    seed_everything(args.seed)
    env = PhyloTree(args.dataset, taxa=args.taxa, alpha=args.alpha, data_dir=args.data_dir)
    obj = get_objective(args.objective)
    model = obj.build_model(env, hidden=args.hidden, n_layers=2, uniform_pb=True, cost_bias=args.cost_bias)
    best = {"parsimony": math.inf, "tree": "", "n_trees": 0}

    def see(states, log_rewards=None) -> None:
        m = env.parsimony(states)
        i = int(m.argmin())
        best["n_trees"] += len(states)
        if float(m[i]) < best["parsimony"]:
            best["parsimony"], best["tree"] = float(m[i]), states.newick(i, env.alignment.names)

    hooks = []
    if args.local_search:
        k, n_it = (int(v) for v in args.local_search.split(","))
        hooks.append(LocalSearch(k, n_it, accept=args.ls_accept, on_candidates=see))
    search = None
    if args.nni:
        search = TerminalSearch(nni_refine(args.nni), on_candidates=see)
        hooks.append(search)
    trainer = Trainer(env, model, obj, TrainerConfig(batch_size=args.batch_size, lr=args.lr, lr_log_z=args.lr_log_z,
                                                     epsilon=args.epsilon, grad_clip=10.0), batch_hooks=hooks)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trace = []
    it = 0
    while time.process_time() - cpu0 < args.cpu_budget_s and it < args.max_iterations:
        info = trainer.train_step()
        it += 1
        see(info.batch.terminal_states)  # the sampled trees (and any refined ones the hooks added)
        if it % args.trace_every == 0:
            trace.append({"iteration": it, "cpu_s": round(time.process_time() - cpu0, 1),
                          "best_parsimony": best["parsimony"], "loss": info.loss})
            print(trace[-1], flush=True)
    cpu_train, wall_train = time.process_time() - cpu0, time.perf_counter() - wall0

    model.eval()
    gen = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        x, log_r, log_w = forward_log_weights(env, model, args.eval_samples, generator=gen)
        pars = env.parsimony(x)
        sub = x.index(torch.arange(min(args.eval_corr, len(x))))
        logp = log_prob_estimate(env, model, sub, k=args.eval_k, generator=gen)
    report = {"dataset": args.dataset, "taxa": env.n, "C": env.C, "alpha": env.alpha, "args": vars(args),
              "iterations": it, "cpu_s": cpu_train, "wall_s": wall_train, "trees_evaluated": best["n_trees"],
              "nni_neighbours_scored": search.n_reward_calls if search is not None else 0,
              "best_parsimony_seen": best["parsimony"], "best_tree_seen": best["tree"],
              "eval_best_parsimony": float(pars.min()), "eval_mean_parsimony": float(pars.mean()),
              "pearson_logp_logr": pearson(logp, log_r[:len(sub)]), "greedy_parsimony": env.greedy_parsimony(),
              **log_z_from_log_weights(log_w), "trace": trace}
    bio = args.biopython or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                         f"phylo_biopython_{args.dataset}.json")
    if os.path.exists(bio):
        with open(bio) as f:
            b = json.load(f)
        if b.get("taxa") == env.n:
            report["biopython_nni"] = {"score": b["biopython_score"], "wall_s": b["wall_s"]}
    print({k: v for k, v in report.items() if k not in ("trace", "best_tree_seen", "args")})
    if args.out:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
