"""How well can logit scaling represent tempered targets at all?  (HyperGrid, exact, no sampling.)

Logit-GFN keeps the encoder free of beta: ``P_F(. | s; beta) = softmax(g(beta) * f(s))``.  This
script removes every source of error except that form: ``f`` is a free table (one logit vector
per state, as if the network were infinitely expressive), ``g(beta)`` a free positive value
per evaluation beta (one scalar, or one per action), and the exact terminal distribution is
optimised directly (Adam on ``sum_beta KL(R^beta / Z_beta || p_T(. | beta))``, computed exactly
by :func:`gfn.metrics.differentiable_terminal_distribution`).  The final tv per beta is a lower bound
(up to optimisation) on what any Logit-GFN of that form can reach, whatever its training.

    python benchmarks/logit_expressivity.py --out benchmarks/results/logit_expressivity.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gfn import metrics
from gfn.distributions import MaskedCategorical
from gfn.envs import HyperGrid
from report import write_json


class TabularScaledPolicy:
    """``P_F(. | s; beta_k) = softmax(softplus(u_k) * table[s])`` with ``u_k`` one value or one per action."""

    def __init__(self, env, n_betas: int, per_action: bool):
        self.env = env
        n = len(env.enumerate_states())
        self.table = torch.zeros(n, env.n_actions, dtype=torch.float64, requires_grad=True)
        inv1 = torch.log(torch.expm1(torch.ones((), dtype=torch.float64)))
        self.u = torch.full((n_betas, env.n_actions if per_action else 1), float(inv1), dtype=torch.float64,
                            requires_grad=True)
        self.k = 0  # which beta pf_dist answers for

    def parameters(self) -> list:
        return [self.table, self.u]

    def scales(self) -> torch.Tensor:
        return torch.nn.functional.softplus(self.u)

    def pf_dist(self, states, cond=None) -> MaskedCategorical:
        logits = self.table[self.env.state_index(states)] * self.scales()[self.k]
        return MaskedCategorical(logits, self.env.forward_mask(states))


def fit(env, betas: list[float], per_action: bool, steps: int, lr: float, seed: int) -> dict:
    """Optimise the tabular Logit-GFN; returns the final tv per beta and the learned scales."""
    torch.manual_seed(seed)
    pol = TabularScaledPolicy(env, len(betas), per_action)
    with torch.no_grad():
        pol.table.normal_(0.0, 0.1)
    targets = [metrics.target_distribution(env, tempering=b).double() for b in betas]
    opt = torch.optim.Adam(pol.parameters(), lr=lr)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = 0.0
        for k, t in enumerate(targets):
            pol.k = k
            p = metrics.differentiable_terminal_distribution(env, pol)
            loss = loss + (t * (t.clamp_min(1e-300).log() - p.clamp_min(1e-300).log())).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    tvs = {}
    with torch.no_grad():
        for k, (b, t) in enumerate(zip(betas, targets)):
            pol.k = k
            tvs[f"beta{b:g}"] = round(metrics.tv(metrics.exact_terminal_distribution(env, pol), t), 5)
    return {"scale": "action" if per_action else "scalar", "tv": tvs, "max_tv": max(tvs.values()),
            "final_kl_sum": float(loss.detach()), "scales": pol.scales().detach().tolist(),
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--betas", nargs="+", type=float, default=[1.0, 2.0, 3.0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="write the JSON report here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    env = HyperGrid(args.ndim, args.height)
    results = [fit(env, args.betas, per_action, args.steps, args.lr, args.seed) for per_action in (False, True)]
    report = {"env": f"hypergrid {args.ndim}D h{args.height}", "setting": vars(args), "results": results}
    for r in results:
        print(json.dumps({k: r[k] for k in ("scale", "tv", "max_tv", "seconds")}), flush=True)
    if args.out:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
