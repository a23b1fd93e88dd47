"""Outcome-conditioned GFlowNet on bit sequences: reward-free pre-training, then fine-tuning.

1. Pre-train ``P_F(. | s, y)`` with the indicator reward ``R(x | y) = 1[x == y]`` on uniform random
   targets (no task reward); report the exact mean ``P(x = y | y)`` over all outcomes.
2. Fine-tune :class:`gfn.outcome.MarginalPolicy` with trajectory balance on a task reward (the
   Hamming-to-modes reward of :class:`gfn.envs.BitSequence`, append MDP) and report the exact tv
   between the fine-tuned terminal distribution and R/Z (all 2^L sequences are enumerated).

    python examples/train_outcome.py --seq-len 8 --pretrain-iters 1000 --iterations 1000 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from gfn.envs.sequences.bitseq import BitSequence
from gfn.outcome import MarginalPolicy, OutcomePolicy, pretrain_step, rollout, success_log_prob


def exact_terminal_log_probs(env, policy, xs):
    """log P^T(x) of every complete sequence (tree MDP: the product along its unique path)."""
    L, n = env.max_len, xs.shape[0]
    pos = torch.arange(L)
    states = torch.stack([torch.where(pos < t, xs, torch.full_like(xs, -1)) for t in range(L)])
    lp = policy(states.reshape(L * n, -1)).gather(1, xs.t().reshape(-1, 1)).view(L, n)
    return lp.sum(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=8)
    ap.add_argument("--n-modes", type=int, default=4)
    ap.add_argument("--pretrain-iters", type=int, default=1000)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epsilon", type=float, default=0.05)
    ap.add_argument("--finetune-policy", action="store_true", help="also train the outcome-conditioned network")
    ap.add_argument("--amortisation", default="mixture", choices=["mixture", "mean_field"],
                    help="how MarginalPolicy sums over outcomes (see gfn.outcome.MarginalPolicy)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    env = BitSequence(word_size=1, seq_len=args.seq_len, n_modes=args.n_modes, mdp="append")
    xs = torch.tensor(list(itertools.product(range(2), repeat=args.seq_len)))

    oc = OutcomePolicy(env, hidden=args.hidden)
    opt = torch.optim.Adam(oc.parameters(), lr=args.lr)
    t0 = time.process_time()
    for it in range(1, args.pretrain_iters + 1):
        out = pretrain_step(env, oc, opt, args.batch_size, epsilon=args.epsilon, generator=gen)
        if it % max(1, args.pretrain_iters // 5) == 0:
            with torch.no_grad():
                succ = success_log_prob(env, oc, xs).exp().mean()
            print(f"pretrain {it}: loss {out['loss']:.3f}  exact mean P(x=y|y) {succ:.4f}")
    print(f"pre-training CPU seconds {time.process_time() - t0:.1f} (no reward calls)")

    model = MarginalPolicy(oc, hidden=args.hidden, finetune_policy=args.finetune_policy,
                           amortisation=args.amortisation)
    params = [p for n, p in model.named_parameters() if p.requires_grad and n != "log_z"]
    opt = torch.optim.Adam([{"params": params, "lr": args.lr}, {"params": [model.log_z], "lr": 0.05}])
    log_r_all = env.log_reward(xs)
    target = (log_r_all - log_r_all.logsumexp(0)).exp()
    for it in range(1, args.iterations + 1):
        # the fine-tuned policy ignores the outcome argument of rollout: wrap it as P_F(. | s, y)
        x, states, actions = rollout(env, lambda s, _y: model(s), xs[:args.batch_size].new_zeros(
            args.batch_size, args.seq_len), args.epsilon, gen)
        L, n = actions.shape
        lp = model(states.reshape(L * n, -1)).gather(1, actions.reshape(-1, 1)).view(L, n).sum(0)
        loss = (model.log_z + lp - env.log_reward(x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % max(1, args.iterations // 5) == 0:
            with torch.no_grad():
                p = exact_terminal_log_probs(env, model, xs).exp()
            print(f"finetune {it}: loss {loss.item():.3f}  tv_exact {0.5 * (p - target).abs().sum():.4f}")


if __name__ == "__main__":
    main()
