"""Time one cell with torchgfn (run by compare_peers.py in its own process).

torchgfn's package is also called ``gfn``, so it cannot share a process with this library:
install it into its own folder and put that folder first on ``PYTHONPATH``::

    pip install --no-deps --target ~/.cache/gfn-peers/torchgfn torchgfn==2.4.1 tensordict \
        pyvers cloudpickle einops dill torch_geometric xxhash psutil linear-attention-transformer \
        local-attention hyper-connections linformer product-key-memory colt5-attention \
        axial-positional-embedding
    PYTHONPATH=~/.cache/gfn-peers/torchgfn python benchmarks/peer_torchgfn.py \
        --cell '{"env": "hypergrid", "env_kwargs": {"ndim": 2, "height": 8}}' --batch-size 16

(``--no-deps`` keeps the installed torch.)  The set-up follows the scenarios of torchgfn's
own ``benchmark/benchmark_libraries.py``: TB with P_F / P_B MLPs (2 x 256) sharing their
trunk, K-hot preprocessing on hypergrid, lr 1e-3 / log Z 0.1, on-policy, log-probs
recomputed in the loss, gradient clipping at 1.0.  Ising 6x6 (torchgfn's ``DiscreteEBM`` with
periodic nearest-neighbour couplings J = 0.44) is trained with TB like the others, as in the
issue's table: the script's own Ising runner uses flow matching, which in torchgfn 2.4.1 takes
seconds per iteration at B = 64 and is not what the issue quotes.  Prints one JSON record
like ``speed.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from peer_cli import cell_parser

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


def _ising_couplings(L: int, J: float) -> torch.Tensor:
    """Nearest-neighbour couplings on an L x L torus, scaled by J."""
    n = L * L
    idx = torch.arange(n).reshape(L, L)
    M = torch.zeros(n, n)
    for shift in ((0, 1), (1, 0)):
        nb = torch.roll(idx, shifts=(-shift[0], -shift[1]), dims=(0, 1))
        M[idx.flatten(), nb.flatten()] = 1.0
        M[nb.flatten(), idx.flatten()] = 1.0
    return J * M


def setup(env_name: str, kw: dict, seed: int):
    """Return ``(step_fn, model, log_z_fn)`` for one torchgfn cell."""
    from gfn.estimators import DiscretePolicyEstimator
    from gfn.gflownet import TBGFlowNet
    from gfn.samplers import Sampler
    from gfn.utils.common import set_seed
    from gfn.utils.modules import MLP

    set_seed(seed)
    if env_name == "hypergrid":
        from gfn.gym import HyperGrid
        from gfn.preprocessors import KHotPreprocessor
        env = HyperGrid(ndim=kw["ndim"], height=kw["height"], reward_fn_str="original",
                        reward_fn_kwargs={"R0": 0.1, "R1": 0.5, "R2": 2.0},
                        calculate_partition=False, store_all_states=False, debug=False)
        pre = KHotPreprocessor(height=env.height, ndim=env.ndim)
        d_in, extra = pre.output_dim, {"preprocessor": pre}
    elif env_name == "bitseq":
        from gfn.gym import BitSequence  # append-only in 2.4.1, whatever kw["mdp"] says (gfn's side only)
        H = torch.randint(0, 2, (kw["n_modes"], kw["seq_size"]), dtype=torch.long)
        env = BitSequence(kw["word_size"], kw["seq_size"], kw["n_modes"], H=H, debug=False)
        d_in, extra = env.words_per_seq, {}
    elif env_name == "ising":
        from gfn.gym import DiscreteEBM
        from gfn.gym.discrete_ebm import IsingModel
        env = DiscreteEBM(kw["L"] ** 2, alpha=1, energy=IsingModel(_ising_couplings(kw["L"], kw["J"])), debug=False)
        d_in, extra = env.ndim, {}
    else:
        raise ValueError(f"unknown env {env_name!r}")
    m_pf = MLP(d_in, env.n_actions, hidden_dim=256, n_hidden_layers=2)
    m_pb = MLP(d_in, env.n_actions - 1, hidden_dim=256, n_hidden_layers=2, trunk=m_pf.trunk)
    pf = DiscretePolicyEstimator(m_pf, env.n_actions, is_backward=False, **extra)
    pb = DiscretePolicyEstimator(m_pb, env.n_actions, is_backward=True, **extra)
    model = TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0)
    opt = torch.optim.Adam(model.pf_pb_parameters(), lr=1e-3)
    opt.add_param_group({"params": model.logz_parameters(), "lr": 0.1})
    sampler = Sampler(estimator=pf)

    def step(n):
        trajs = sampler.sample_trajectories(env, n=n, save_logprobs=False, save_estimator_outputs=False, epsilon=0.0)
        opt.zero_grad()
        loss = model.loss_from_trajectories(env, trajs, recalculate_all_logprobs=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step, model, lambda: float(model.logZ.detach())


def main(argv=None) -> dict:
    """Command-line entry point: time one cell, print its JSON record."""
    p = cell_parser(__doc__)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cell = json.loads(a.cell)
    import gfn
    if not hasattr(gfn, "gym") and not os.path.isdir(os.path.join(os.path.dirname(gfn.__file__), "gym")):
        raise SystemExit(f"'gfn' resolves to {gfn.__file__}, not torchgfn: put torchgfn's folder first on PYTHONPATH")
    step, model, log_z = setup(cell["env"], cell["env_kwargs"], a.seed)
    for _ in range(a.warmup):
        step(a.batch_size)
    times, cpu = [], []
    for _ in range(a.iterations):
        c0, t0 = time.process_time(), time.perf_counter()
        step(a.batch_size)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    rec = {"library": "torchgfn", "env": cell["env"], "env_kwargs": cell["env_kwargs"], "batch_size": a.batch_size,
           "iterations": a.iterations, "warmup": a.warmup, "ms_per_iter": statistics.median(times),
           "ms_mean": statistics.fmean(times), "cpu_ms_per_iter": statistics.median(cpu), "n_params": sum(p.numel() for p in model.parameters()),
           "log_z": log_z()}
    print(json.dumps(rec), flush=True)
    return rec


if __name__ == "__main__":
    main()
