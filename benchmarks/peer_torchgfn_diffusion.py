"""25GMM diffusion sampler, TB, T = 100, batch 300: torchgfn's DiffusionSampling next to ours.

torchgfn's package is also called ``gfn``, so each side runs in its own process: this script's
``--side torchgfn`` mode (PYTHONPATH = ~/.cache/gfn-peers/torchgfn, see peer_torchgfn.py) trains
torchgfn's ``gmm25_prior`` target (same means, variance 0.3, log Z = 0) with its
``PinnedBrownianMotionForward/Backward`` estimators, ``DiffusionPISGradNetForward`` (harmonics
64, embeddings 64, hidden 64, 2 joint layers, zero-init last layer), TB with log Z lr 0.1 and
policy lr 1e-3, on-policy, as in its ``tutorials/examples/train_diffusion_sampler.py``;
``--side ours`` runs ``examples/train_diffusion.py`` with the same sizes, sigma, T, batch and
iterations.  Both report delta_log_z = |log Z - ELBO| from 2,000 forward trajectories scored by
the library's own log-probabilities, and ms/iteration.  Without ``--side`` both run in turn and
``benchmarks/results/diffusion_vs_torchgfn.json`` is written.  ``--side torchgfn --time-only
--warmup W`` only times ``--iterations`` training iterations after ``W`` untimed ones, without the
evaluation (what ``compare_peers.py --env diffusion`` runs)::

    python benchmarks/peer_torchgfn_diffusion.py --iterations 200

:func:`run_torchgfn_diffusion` (one torchgfn run in a child process, returns its record) is what
``compare_peers.py`` can call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_PATH = os.path.expanduser("~/.cache/gfn-peers/torchgfn")
SIGMA = math.sqrt(5.0)  # Sendera et al.'s t_scale = 5 for 25GMM


def _torchgfn_main(args) -> dict:
    """Train and evaluate inside a process whose ``gfn`` is torchgfn."""
    import torch
    from gfn.estimators import PinnedBrownianMotionBackward, PinnedBrownianMotionForward
    from gfn.gflownet import TBGFlowNet
    from gfn.gym.diffusion_sampling import DiffusionSampling
    from gfn.samplers import Sampler
    from gfn.utils.modules import DiffusionFixedBackwardModule, DiffusionPISGradNetForward

    torch.manual_seed(args.seed)
    env = DiffusionSampling("gmm25_prior", {}, num_discretization_steps=args.steps)
    pf_module = DiffusionPISGradNetForward(s_dim=env.dim, harmonics_dim=64, t_emb_dim=64, s_emb_dim=64,
                                           hidden_dim=64, joint_layers=2, zero_init=True)
    pf = PinnedBrownianMotionForward(s_dim=env.dim, pf_module=pf_module, sigma=SIGMA,
                                     num_discretization_steps=args.steps)
    pb = PinnedBrownianMotionBackward(s_dim=env.dim, pb_module=DiffusionFixedBackwardModule(s_dim=env.dim),
                                      sigma=SIGMA, num_discretization_steps=args.steps)
    gfn = TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0)
    sampler = Sampler(estimator=pf)
    opt = torch.optim.Adam(gfn.pf_pb_parameters(), lr=1e-3)
    opt.add_param_group({"params": gfn.logz_parameters(), "lr": 1e-1})

    def train_step():
        traj = sampler.sample_trajectories(env, n=args.batch_size, save_logprobs=True,
                                           save_estimator_outputs=False)
        opt.zero_grad()
        loss = gfn.loss(env, traj, recalculate_all_logprobs=False)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        train_step()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(args.iterations):
        train_step()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    timing = {"ms_per_iter": 1000 * wall / args.iterations, "cpu_ms_per_iter": 1000 * cpu / args.iterations,
              "warmup": args.warmup, "iterations": args.iterations}
    if args.time_only:
        return {"library": "torchgfn", "env": "diffusion", **timing}
    with torch.no_grad():
        traj = sampler.sample_trajectories(env, n=args.eval_samples, save_logprobs=True)
        scores = gfn.get_scores(traj, recalculate_all_logprobs=False)  # log P_F - log P_B - log R
    elbo = float(-scores.mean())
    return {"library": "torchgfn", "log_z_elbo": elbo, "delta_log_z": abs(0.0 - elbo),
            "ms_per_iteration": 1000 * wall / args.iterations,
            "cpu_ms_per_iteration": 1000 * cpu / args.iterations}


def run_torchgfn_diffusion(iterations: int, batch_size: int = 300, steps: int = 100, seed: int = 0,
                           eval_samples: int = 2000) -> dict:
    """Run torchgfn's 25GMM TB diffusion sampler in a child process; return its JSON record."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=PEER_PATH)
    cmd = [sys.executable, os.path.abspath(__file__), "--side", "torchgfn", "--iterations", str(iterations),
           "--batch-size", str(batch_size), "--steps", str(steps), "--seed", str(seed),
           "--eval-samples", str(eval_samples)]
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, cwd=HERE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(iterations: int, batch_size: int = 300, steps: int = 100, seed: int = 0,
             eval_samples: int = 2000) -> dict:
    """Run examples/train_diffusion.py (TB, 25GMM, same sizes) in a child process; return its record."""
    out = os.path.join(HERE, "results", f"_diffusion_vs_torchgfn_ours_s{seed}.json")
    cmd = [sys.executable, os.path.join(ROOT, "examples", "train_diffusion.py"), "--target", "gmm25",
           "--objective", "tb", "--steps", str(steps), "--iterations", str(iterations), "--batch-size",
           str(batch_size), "--sigma", repr(SIGMA), "--hidden", "64", "--harmonics", "64",
           "--joint-layers", "2", "--lr", "1e-3", "--lr-log-z", "0.1", "--seed", str(seed),
           "--eval-samples", str(eval_samples), "--json-out", out]
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL)
    with open(out) as f:
        rec = json.load(f)
    os.remove(out)
    return {"library": "gfnkit", **{k: rec.get(k) for k in ("log_z_elbo", "delta_log_z", "ms_per_iteration",
                                                              "cpu_ms_per_iteration", "w2")}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", choices=["ours", "torchgfn"], default=None)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=0, help="untimed iterations first (--side torchgfn)")
    p.add_argument("--time-only", action="store_true",
                   help="--side torchgfn: time --iterations after --warmup, no evaluation (compare_peers.py)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "diffusion_vs_torchgfn.json"))
    a = p.parse_args(argv)
    kw = dict(iterations=a.iterations, batch_size=a.batch_size, steps=a.steps, seed=a.seed,
              eval_samples=a.eval_samples)
    if a.side == "torchgfn":
        print(json.dumps(_torchgfn_main(a)))
        return
    if a.side == "ours":
        print(json.dumps(run_ours(**kw)))
        return
    ours, theirs = run_ours(**kw), run_torchgfn_diffusion(**kw)
    res = {"setting": {"target": "gmm25", "objective": "tb", "sigma": SIGMA, **kw,
                       "network": "harmonics 64, t/s embeddings 64, hidden 64, 2 joint layers, zero-init"},
           "ours": ours, "torchgfn": theirs,
           "speed_ratio_ours_over_theirs": ours["ms_per_iteration"] / theirs["ms_per_iteration"],
           "ours_no_worse_delta_log_z": ours["delta_log_z"] <= theirs["delta_log_z"]}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
