"""Time gfnx's ``DAGEnvironment`` (5 nodes, BGe, uniform prior, on our data) with the TB step of
``peer_gfnx.py``, in gfnx's own interpreter (see that script for the virtualenv)::

    ~/.cache/gfn-peers/gfnxenv/bin/python benchmarks/peer_gfnx_dag.py --data /tmp/dag5.npz \\
        --batch-size 32 --iterations 20 --warmup 3

gfnx 0.0.1 ships the environment and its BGe score but no training script for it, so the step is
``peer_gfnx.py``'s (P_F / P_B heads on a shared 2 x 256 ReLU trunk, Adam, on-policy TB, one
``jax.jit`` program per iteration); the observation is the flattened adjacency matrix.  Prints
one JSON record like ``peer_gfnx.py``.
"""

from __future__ import annotations

import json
import sys

import peer_gfnx  # noqa: E402  (sets XLA flags and pins the process before jax is imported)


def main(argv=None) -> None:
    import argparse

    import jax.numpy as jnp
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help=".npz with a (n, d) 'data' array (compare_peers.py writes it)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    data = jnp.asarray(np.load(a.data, allow_pickle=False)["data"], dtype=jnp.float32)
    plain_make_cell = peer_gfnx.make_cell

    def make_cell(env_name, kw, seed):
        if env_name != "dag":
            return plain_make_cell(env_name, kw, seed)
        import gfnx
        import jax
        from gfnx.reward import BGeScore, UniformDAGPrior

        d = int(data.shape[1])
        reward = gfnx.DAGRewardModule(prior=UniformDAGPrior(d), likelihood=BGeScore(data))
        env = gfnx.DAGEnvironment(reward, num_variables=d)
        encode = lambda obs: obs.astype(jnp.float32).reshape(*obs.shape[:-2], -1)  # noqa: E731
        return env, env.init(jax.random.PRNGKey(seed)), encode

    peer_gfnx.make_cell = make_cell
    cell = json.dumps({"env": "dag", "env_kwargs": {"n_nodes": int(data.shape[1])}})
    peer_gfnx.main(["--cell", cell, "--batch-size", str(a.batch_size), "--iterations", str(a.iterations),
                    "--warmup", str(a.warmup), "--seed", str(a.seed)])


if __name__ == "__main__":
    sys.exit(main())
