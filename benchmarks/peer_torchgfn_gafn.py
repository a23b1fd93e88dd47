"""torchgfn's GAFN hypergrid example, driven with a mode counter: the peer row of the GAFN grid.

torchgfn's ``tutorials/examples/train_hypergrid_gafn.py`` trains TB with GAFN's RND bonus
(``TBGAFN``; ``--use_edge_ri``: the authors' per-edge form with a state flow on the shared trunk)
on ``HyperGrid(reward_fn_str="sparse")``, the GAFN paper's grid (our ``GAFNGridReward``).  It
reports an L1 distance but no modes, so this script imports that example module from a torchgfn
source tree and runs its components for a set number of iterations, counting the distinct modes
(cells with every coordinate in {1, H-2}, not all 1) among the training samples, as
``benchmarks/exploration.py`` does.  The example's settings are kept (batch 16, lr 1e-3, log Z lr
0.1, RND lr 1e-3, MLP 2 x 256 LeakyReLU, P_B and flow on the P_F trunk); ``--rnd-scale`` is the
bonus weight (the GAFN authors use 0.005 for height 64) and ``--no-gafn`` trains plain TB.

Runs in an interpreter where torchgfn imports as ``gfn`` (not ours), e.g. a virtualenv with
``--system-site-packages`` and ``pip install --no-deps`` of a torchgfn checkout::

    ~/.cache/gfn-peers/tgfnenv/bin/python benchmarks/peer_torchgfn_gafn.py \\
        --example ~/.cache/gfn-peers/torchgfn-src/tutorials/examples/train_hypergrid_gafn.py \\
        --ndim 2 --height 64 --iterations 4000 --seeds 1 2 3 --out benchmarks/results/exploration_gafn_grid/torchgfn_gafn_2d_h64

Writes ``<out>.json`` with a curve per seed (``samples``, ``modes_found``), like exploration.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import time


def load_example(path: str):
    """Import torchgfn's example script as a module (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location("torchgfn_gafn_example", os.path.expanduser(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_seed(ex, seed: int, a) -> dict:
    """One seed of the example's training loop; the modes-found curve every ``--record-every`` iterations."""
    import torch
    torch.set_num_threads(1)
    ex.set_seed(seed)
    env = ex.HyperGrid(ndim=a.ndim, height=a.height, reward_fn_str="sparse", device="cpu")
    pre = ex.KHotPreprocessor(height=env.height, ndim=env.ndim)
    module_pf = ex.MLP(input_dim=pre.output_dim, output_dim=env.n_actions, activation_fn="leaky_relu")
    module_pb = ex.MLP(input_dim=pre.output_dim, output_dim=env.n_actions - 1, trunk=module_pf.trunk)
    pf = ex.DiscretePolicyEstimator(module_pf, env.n_actions, preprocessor=pre, is_backward=False)
    pb = ex.DiscretePolicyEstimator(module_pb, env.n_actions, preprocessor=pre, is_backward=True)
    rnd = ex.RND(state_dim=pre.output_dim, preprocessor=pre, reward_scale=a.rnd_scale, loss_scale=1.0,
                 hidden_dim=256, s_latent_dim=128)
    flow = ex.ScalarEstimator(module=ex.MLP(input_dim=pre.output_dim, output_dim=1, trunk=module_pf.trunk),
                              preprocessor=pre)
    if a.no_gafn:
        gfn = ex.TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0)
    else:
        gfn = ex.TBGAFN(pf=pf, pb=pb, init_logZ=0.0, rnd=rnd, use_edge_ri=True, flow_estimator=flow)
    sampler = ex.Sampler(estimator=pf)
    opt = torch.optim.Adam(gfn.pf_pb_parameters(), lr=1e-3)
    opt.add_param_group({"params": gfn.logz_parameters(), "lr": 0.1})
    if not a.no_gafn:
        opt.add_param_group({"params": gfn.rnd_parameters(), "lr": 1e-3})
        opt.add_param_group({"params": gfn.flow_parameters(), "lr": 1e-3})
    modes = {m for m in itertools.product((1, a.height - 2), repeat=a.ndim)} - {(1,) * a.ndim}
    found, curve = set(), []
    t0, c0 = time.time(), time.process_time()
    for it in range(1, a.iterations + 1):
        traj = sampler.sample_trajectories(env, n=16, save_logprobs=True, save_estimator_outputs=False)
        found.update(x for x in map(tuple, traj.terminating_states.tensor.tolist()) if x in modes)
        opt.zero_grad()
        loss = gfn.loss(env, traj, recalculate_all_logprobs=False)
        loss.backward()
        opt.step()
        if it % a.record_every == 0:
            curve.append({"iteration": it, "samples": 16 * it, "modes_found": len(found)})
    method = "torchgfn_tb" if a.no_gafn else "torchgfn_gafn"
    print(f"{method} seed {seed}: {len(found)} of {len(modes)} modes after {16 * a.iterations} samples "
          f"({time.time() - t0:.0f} s)", flush=True)
    return {"method": method, "seed": seed, "curve": curve, "modes_found": len(found), "n_modes": len(modes),
            "seconds": time.time() - t0, "cpu_seconds": time.process_time() - c0}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--example", required=True, help="path of torchgfn's tutorials/examples/train_hypergrid_gafn.py")
    p.add_argument("--ndim", type=int, default=2)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--iterations", type=int, default=4000)
    p.add_argument("--rnd-scale", type=float, default=0.005)
    p.add_argument("--no-gafn", action="store_true", help="plain TB (the same model without RND and flow)")
    p.add_argument("--record-every", type=int, default=250)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    ex = load_example(a.example)
    runs = [run_seed(ex, s, a) for s in a.seeds]
    found = [r["modes_found"] for r in runs]
    report = {"setting": {k: v for k, v in vars(a).items() if k != "out"}, "samples_per_method": 16 * a.iterations,
              "summary": {runs[0]["method"]: {"modes_found": found, "mean": sum(found) / len(found)}}, "runs": runs}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report["summary"]))
    return report


if __name__ == "__main__":
    main()
