"""Estimated metrics against the exact ones (the numbers behind tests/test_estimated_metrics.py); JSON out.

    python benchmarks/estimated_metrics.py --out benchmarks/results/estimated_metrics.json

HyperGrid 2D h8 and Ising 3x3 (J = 0.44), each with an untrained model and one trained with TB
for 300 iterations of 64 trajectories (MLP 2 x 64, lr 3e-3, lr log Z 0.1, seed 0), as in the tests:

* mean absolute error of ``log_prob_estimate`` (k = 64) against the exact log p_T(x) over 200
  exact target samples (and k = 4096 on the first 20 objects);
* ``log_z_iw`` for n = 10 ... 10,000 forward samples (one generator, seed 4) against the
  enumerated log Z;
* n = 10,000: ``log_z_elbo``, ``log_z_iw`` (with standard errors), ``log_z_eubo`` from 10,000
  exact target samples, and whether ``elbo <= iw <= log Z <= eubo`` holds exactly and within
  3 standard errors (the bounds hold in expectation; one estimate may cross log Z by noise).

Box (delta 0.25, TB 100 iterations of 128, MLP 2 x 64): the integral of exp(log p-hat) over the
box (k = 16, 40 x 40 midpoints) and the JSD between its 10 x 10 cell masses and the histogram of
40,000 samples of the same model.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import write_json  # noqa: E402

from gfn.envs import Box, HyperGrid, Ising  # noqa: E402
from gfn.estimators import build_gflownet  # noqa: E402
from gfn.metrics import continuous as cm  # noqa: E402
from gfn.metrics import estimated as est  # noqa: E402
from gfn.metrics import exact_terminal_distribution, jsd, log_partition  # noqa: E402
from gfn.objectives import get_objective  # noqa: E402
from gfn.sampler import Sampler  # noqa: E402
from gfn.trainer import Trainer, TrainerConfig  # noqa: E402


def train(env, iterations: int, seed: int = 0, batch_size: int = 64, lr: float = 3e-3, builder=None):
    """A model trained with TB (``iterations = 0``: untrained), in eval mode."""
    torch.manual_seed(seed)
    model = builder() if builder is not None else build_gflownet(env, hidden=64)
    trainer = Trainer(env, model, get_objective("tb"), TrainerConfig(batch_size=batch_size, lr=lr, lr_log_z=0.1))
    for _ in range(iterations):
        trainer.train_step()
    model.eval()
    return model


def discrete_case(env, model) -> dict:
    """log p-hat error, IW convergence, and the bound order at n = 10,000."""
    sampler = est.exact_target_sampler(env)
    log_z = log_partition(env)
    x = sampler(200, torch.Generator().manual_seed(1))
    exact = exact_terminal_distribution(env, model)[env.state_index(x)].log()
    got = est.log_prob_estimate(env, model, x, k=64, generator=torch.Generator().manual_seed(2))
    big = est.log_prob_estimate(env, model, x[:20], k=4096, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    iw = {n: est.log_z_estimates(env, model, n, generator=g)["log_z_iw"] for n in (10, 100, 1000, 10_000)}
    m = est.log_z_estimates(env, model, 10_000, generator=torch.Generator().manual_seed(5))
    lw = est.backward_log_weights(env, model, sampler(10_000, torch.Generator().manual_seed(6)),
                                  generator=torch.Generator().manual_seed(7))
    eubo, eubo_se = float(lw.mean()), float(lw.std()) / math.sqrt(lw.numel())
    return {
        "log_z_true": log_z,
        "mae_log_p_k64_200_objects": float((got - exact).abs().mean()),
        "max_abs_error_log_p_k64": float((got - exact).abs().max()),
        "mae_log_p_k4096_20_objects": float((big - exact[:20]).abs().mean()),
        "log_z_iw_by_n": {str(n): v for n, v in iw.items()},
        "abs_error_log_z_iw_by_n": {str(n): abs(v - log_z) for n, v in iw.items()},
        "n10000": {**{k: m[k] for k in ("log_z_elbo", "log_z_elbo_se", "log_z_iw", "log_z_iw_se", "ess")},
                   "log_z_eubo": eubo, "log_z_eubo_se": eubo_se},
        "order_exact": bool(m["log_z_elbo"] <= m["log_z_iw"] <= log_z <= eubo),
        "order_within_3se": bool(m["log_z_elbo"] <= m["log_z_iw"] <= log_z + 3 * m["log_z_iw_se"]
                                 and eubo >= log_z - 3 * eubo_se),
    }


def box_case() -> dict:
    """Integral and cell masses of the importance-sampled density of a briefly trained Box sampler."""
    env = Box(delta=0.25)
    model = train(env, 100, batch_size=128, lr=1e-3, builder=lambda: env.build_gflownet(hidden=64, n_layers=2))
    bounds = [(0.0, 1.0), (0.0, 1.0)]
    with torch.no_grad():
        x = Sampler(env, model).sample(40_000).terminal_states
    bins, sub = 10, 4
    pts, vol = cm._subgrid_points(bounds, bins, sub)
    lp = est.log_prob_estimate(env, model, pts.float(), k=16, generator=torch.Generator().manual_seed(1))
    q = cm.target_grid_mass(lambda _: lp, bounds, bins, sub).flatten()
    p = cm.histogram(x, bounds, bins).flatten()
    # the same comparison between two independent halves of the samples: the finite-sample floor
    half = cm.histogram(x[:20_000], bounds, bins).flatten(), cm.histogram(x[20_000:], bounds, bins).flatten()
    return {"log_integral_of_density": float(torch.logsumexp(lp, 0)) + math.log(vol),
            "jsd_density_cells_vs_histogram": jsd(p, q), "jsd_histogram_half_vs_half": jsd(*half),
            "grid": f"{bins}x{bins} cells, {sub}x{sub} midpoints per cell, k=16", "n_samples": 40_000,
            "tolerance": {"abs_log_integral": 0.05, "jsd": 0.01}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/estimated_metrics.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    report = {"setup": "TB, 300 x 64 trajectories, MLP 2 x 64, lr 3e-3, seed 0 (trained); same init untrained",
              "cases": {}}
    for name, env in (("hypergrid_2d_h8", HyperGrid(2, 8)), ("ising_3x3", Ising(3))):
        for label, iters in (("untrained", 0), ("trained", 300)):
            report["cases"][f"{name}_{label}"] = discrete_case(env, train(env, iters))
            print(name, label, {k: v for k, v in report["cases"][f"{name}_{label}"].items()
                                if k.startswith(("mae", "order"))})
    report["box"] = box_case()
    print("box", report["box"])
    report["wall_s"] = time.perf_counter() - t0
    write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
