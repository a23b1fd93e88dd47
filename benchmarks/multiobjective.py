"""Multi-objective GFlowNets (MOGFN-PC): the acceptance runs of issue 20, one JSON per case.

    python benchmarks/multiobjective.py --case branin_currin      # TB, 32x32, exact tv over 11 preferences
    python benchmarks/multiobjective.py --case tfbind8_multi      # SIX6+PAX6, hypervolume of 1,000 pooled samples
    python benchmarks/multiobjective.py --case molecules          # QED/SA/MW MOGFN-PC vs single-objective QED x SA
    python benchmarks/multiobjective.py --case all

Each case runs ``examples/train_multiobjective.py`` with the flags listed in its JSON
(``benchmarks/results/multiobjective_<case>.json``, with the run's ``pareto.png`` copied next to it),
so every number can be reproduced with one command.  Budgets are iterations x batch size on CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from report import write_json  # noqa: E402

DATA = os.environ.get("GFN_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))

CASES = {
    "branin_currin": [
        ("mogfn_pc", ["--task", "branin_currin", "--objective", "tb", "--iterations", "2000", "--batch-size", "64",
                      "--pref-beta", "1", "--eval-every", "500", "--lr-log-z", "0.01"]),
        ("mogfn_pc_beta8", ["--task", "branin_currin", "--objective", "tb", "--iterations", "2000", "--batch-size",
                            "64", "--pref-beta", "8", "--eval-every", "500", "--lr-log-z", "0.01"]),
    ],
    # recursionpharma/gflownet's Branin-Currin grid script (MOGFN-PC authors): w ~ Dir(1.5), beta ~ Gamma(16, 1)
    # (here normal:16,4, its mean and std), batch 128, lr 1e-2 for every parameter, 3 x 64 MLP, uniform P_B,
    # 1% random actions; exact tv at beta = 16.  Their MDP also ends a trajectory at the grid's far edge.
    "branin_currin_authors": [
        ("mogfn_pc_authors", ["--task", "branin_currin", "--objective", "tb", "--iterations", "2000",
                              "--batch-size", "128", "--condition", "pref+beta", "--pref-alpha", "1.5",
                              "--beta-dist", "normal:16,4", "--pref-beta", "16", "--eval-betas", "16",
                              "--hidden", "64", "--n-layers", "3", "--uniform-pb", "--lr", "0.01",
                              "--lr-log-z", "0.01", "--epsilon", "0.01", "--eval-every", "500"]),
    ],
    "tfbind8_multi": [
        ("mogfn_pc", ["--task", "tfbind8_multi", "--tfs", "SIX6,PAX6", "--data-dir", DATA, "--objective", "tb",
                      "--iterations", "2000", "--batch-size", "64", "--pref-beta", "16", "--lr-log-z", "0.01",
                      "--n-eval", "1001"]),
        ("mogfn_pc_6000", ["--task", "tfbind8_multi", "--tfs", "SIX6,PAX6", "--data-dir", DATA, "--objective", "tb",
                           "--iterations", "6000", "--batch-size", "64", "--pref-beta", "16", "--lr-log-z", "0.01",
                           "--n-eval", "1001", "--eval-every", "2000"]),
    ],
    "molecules": [
        ("mogfn_pc", ["--task", "molecules_moo", "--objective", "tb", "--iterations", "300", "--batch-size", "32",
                      "--pref-beta", "16", "--hidden", "64", "--n-layers", "3", "--uniform-pb", "--lr-log-z", "0.01",
                      "--eval-pref-steps", "4", "--n-eval", "1000"]),
        ("single_qed_sa", ["--task", "molecules_moo", "--condition", "none", "--scalar-reward", "qed_sa",
                           "--objective", "tb", "--iterations", "300", "--batch-size", "32", "--pref-beta", "16",
                           "--hidden", "64", "--n-layers", "3", "--uniform-pb", "--eval-pref-steps", "4",
                           "--n-eval", "1000"]),
    ],
}


def _example():
    spec = importlib.util.spec_from_file_location("train_multiobjective", os.path.join(ROOT, "examples", "train_multiobjective.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def run_case(case: str, seed: int, out_root: str) -> dict:
    """Run every configuration of ``case``; returns the report."""
    ex = _example()
    tag = "" if seed == 0 else f"_s{seed}"  # seed 0 is the reference run; other seeds get their own files
    report = {"case": case, "seed": seed, "device": "cpu", "runs": {}}
    for name, flags in CASES[case]:
        out = os.path.join(out_root, f"{case}-{name}-s{seed}")
        argv = flags + ["--seed", str(seed), "--out", out, "--no-progress", "--checkpoint-every", "0"]
        if os.path.isdir(out):  # this script's own output folder from an earlier run
            shutil.rmtree(out)
        t0 = time.time()
        m = ex.main(argv)
        report["runs"][name] = {"command": "python examples/train_multiobjective.py " + " ".join(
            a if a != DATA else "../shared/data" for a in argv), "wall_s": time.time() - t0,
            "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float, str))}}
        png = os.path.join(out, "pareto.png")
        if os.path.isfile(png):
            dst = os.path.join(HERE, "results", f"multiobjective_{case}_{name}{tag}.png")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(png, dst)
    write_json(os.path.join(HERE, "results", f"multiobjective_{case}{tag}.json"), report)
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="all", choices=("all", *CASES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-root", default=os.path.join("runs", "multiobjective"))
    a = p.parse_args(argv)
    for case in (CASES if a.case == "all" else [a.case]):
        r = run_case(case, a.seed, a.out_root)
        print(case, {n: {k: v for k, v in run["metrics"].items() if k in (
            "tv_exact_pref_mean", "hypervolume_ratio", "validity", "top100_hypervolume")} for n, run in r["runs"].items()})


if __name__ == "__main__":
    main()
