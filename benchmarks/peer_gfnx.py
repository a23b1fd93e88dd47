"""Time one cell with gfnx (JAX), run by compare_peers.py in its own interpreter.

gfnx 0.0.1 pins ``numpy==1.26.4``, so it lives in a virtualenv of its own; this script imports
neither torch nor this library::

    python -m venv ~/.cache/gfn-peers/gfnxenv
    ~/.cache/gfn-peers/gfnxenv/bin/pip install gfnx==0.0.1 "jax[cpu]" equinox optax
    ~/.cache/gfn-peers/gfnxenv/bin/python benchmarks/peer_gfnx.py \
        --cell '{"env": "hypergrid", "env_kwargs": {"ndim": 2, "height": 8}}' --batch-size 16

The gfnx wheel ships environments and rollout helpers but no training loop, so the TB step is
written here with the same settings as ``peer_torchgfn.py``: P_F / P_B MLP heads on a shared
trunk of two 256-unit ReLU layers, scalar log Z, Adam (lr 1e-3 networks, 0.1 log Z) after
global gradient-norm clipping at 1.0, on-policy sampling.  One ``jax.jit``-compiled step
samples a batch of complete trajectories with gfnx's ``forward_rollout`` (a ``lax.scan`` over
``env.step``) and takes a TB gradient step with the log-probabilities recomputed from the
visited observations.  Compilation (the first call) is timed apart (``compile_s``); the
warm-up iterations follow it and the timed iterations are each closed by
``jax.block_until_ready``.  XLA runs on one CPU core, like the torch peers run on one thread:
the process pins itself to the first allowed core (``GFN_GFNX_NO_PIN=1`` turns that off).

Cells: ``hypergrid`` (one-hot coordinates, reward R0=0.1, R1=0.5, R2=2), ``bitseq`` (gfnx's
non-autoregressive ``BitseqEnvironment`` = ``mdp="fill"``; ``seq_size`` bits in words of
``word_size`` bits, log R = -Hamming distance to the nearest of ``n_modes`` modes, which needs
``seq_size`` to be a multiple of 8), ``ising`` (L x L spins, periodic nearest-neighbour
couplings J, gfnx's ``IsingEnvironment`` which has no exit action).  Prints one JSON record.
"""

from __future__ import annotations

import os

# one CPU thread, set before jax is imported (XLA reads these at start-up).  With jax 0.6.2 the
# flags alone still let XLA's CPU client run matmuls on every core (CPU time ~2x wall time on
# two cores), so the process is also pinned to one core, which is what makes it one thread's worth.
XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_FLAGS).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
CPU_AFFINITY = None
if hasattr(os, "sched_setaffinity") and os.environ.get("GFN_GFNX_NO_PIN", "") in ("", "0"):
    CPU_AFFINITY = [min(os.sched_getaffinity(0))]
    os.sched_setaffinity(0, CPU_AFFINITY)

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from peer_cli import cell_parser  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

HIDDEN, N_LAYERS = 256, 2
LR, LR_LOG_Z, CLIP = 1e-3, 0.1, 1.0


class Unsupported(ValueError):
    """A cell gfnx cannot run like the other libraries (main prints it and exits with status 2)."""


def make_cell(env_name: str, kw: dict, seed: int):
    """Return ``(env, env_params, encode)`` for one cell; ``encode`` maps gfnx observations to MLP inputs."""
    import gfnx
    key = jax.random.PRNGKey(seed)
    if env_name == "hypergrid":
        reward = gfnx.GeneralHypergridRewardModule(R0=0.1, R1=0.5, R2=2.0)
        env = gfnx.HypergridEnvironment(reward, dim=int(kw["ndim"]), side=int(kw["height"]))
        encode = lambda obs: obs  # noqa: E731  (gfnx's observation is already the K-hot coordinates)
        return env, env.init(key), encode
    if env_name == "bitseq":
        mdp = kw.get("mdp", "fill")
        if mdp != "fill":
            raise Unsupported(f"bitseq mdp={mdp!r} is not available: gfnx's BitseqEnvironment is the "
                              "non-autoregressive ('fill') MDP only; use --mdp fill")
        n, k = int(kw["seq_size"]), int(kw["word_size"])
        if k < 1 or n % k:
            raise Unsupported(f"bitseq needs word_size to divide seq_size, got word_size={k}, seq_size={n}")
        if n % 8:
            raise Unsupported(f"bitseq seq_size={n}: gfnx's BitseqRewardModule builds modes from 8-bit "
                              "blocks, so seq_size must be a multiple of 8")
        # reward_exponent=n turns gfnx's -dist/n into log R = -Hamming distance (as gfn's BitSequence)
        reward = gfnx.BitseqRewardModule(sentence_len=n, k=k, mode_set_size=int(kw["n_modes"]),
                                         reward_exponent=float(n))
        env = gfnx.BitseqEnvironment(reward, n=n, k=k)
        n_tok = env.nchar + 1  # the word values and the [PAD] token (= nchar) of an unfilled slot

        def encode(obs):
            # drop the constant BOS column, one-hot each slot over {words, PAD}
            return jax.nn.one_hot(obs[..., 1:], n_tok, dtype=jnp.float32).reshape(*obs.shape[:-1], -1)
        return env, env.init(key), encode
    if env_name == "ising":
        from gfnx.reward.ising import IsingRewardParams
        from gfnx.utils import get_true_ising_J
        L, J = int(kw["L"]), float(kw["J"])
        env = gfnx.IsingEnvironment(gfnx.IsingRewardModule(), dim=L * L)
        params = env.init(key)
        # periodic nearest-neighbour couplings (gfnx's torus adjacency) scaled by J
        params = params.replace(reward_params=IsingRewardParams(J=get_true_ising_J(L, J).astype(jnp.float32)))
        encode = lambda obs: obs.astype(jnp.float32)  # noqa: E731  (spins in {-1 unset, 0, 1}, as torchgfn)
        return env, params, encode
    raise Unsupported(f"unknown env {env_name!r} (hypergrid, bitseq, ising)")


def build_model(key, d_in: int, n_fwd: int, n_bwd: int):
    """The P_F / P_B MLP with a shared trunk (equinox), sized like torchgfn's ``MLP(..., 256, 2)``."""
    import equinox as eqx

    class PolicyMLP(eqx.Module):
        """Shared ReLU trunk, a forward-logits head and a backward-logits head."""
        trunk: list
        head_f: eqx.nn.Linear
        head_b: eqx.nn.Linear

        def __init__(self, key):
            ks = jax.random.split(key, N_LAYERS + 2)
            dims = [d_in] + [HIDDEN] * N_LAYERS
            self.trunk = [eqx.nn.Linear(dims[i], dims[i + 1], key=ks[i]) for i in range(N_LAYERS)]
            self.head_f = eqx.nn.Linear(HIDDEN, n_fwd, key=ks[-2])
            self.head_b = eqx.nn.Linear(HIDDEN, n_bwd, key=ks[-1])

        def __call__(self, x):
            """Logits ``(forward [..., n_fwd], backward [..., n_bwd])`` for a batch ``x [..., d_in]``."""
            for lin in self.trunk:
                x = jax.nn.relu(x @ lin.weight.T + lin.bias)
            return x @ self.head_f.weight.T + self.head_f.bias, x @ self.head_b.weight.T + self.head_b.bias

    return PolicyMLP(key)


def setup(env_name: str, kw: dict, seed: int, batch_size: int):
    """Return ``(step, state, n_params)``: a jitted TB step ``state -> (state, loss)`` and its initial state."""
    import equinox as eqx
    import optax
    from gfnx.utils import forward_rollout, forward_trajectory_log_probs

    env, env_params, encode = make_cell(env_name, kw, seed)
    obs0, _ = env.reset(1, env_params)
    d_in = int(encode(obs0).shape[-1])
    n_fwd, n_bwd = env.action_space.n, env.backward_action_space.n
    key, k_net = jax.random.split(jax.random.PRNGKey(seed + 1))
    net = build_model(k_net, d_in, n_fwd, n_bwd)
    params, static = eqx.partition(net, eqx.is_array)
    trainable = {"net": params, "log_z": jnp.zeros((), jnp.float32)}
    labels = {"net": jax.tree.map(lambda _: "net", params), "log_z": "log_z"}
    opt = optax.chain(optax.clip_by_global_norm(CLIP),
                      optax.multi_transform({"net": optax.adam(LR), "log_z": optax.adam(LR_LOG_Z)}, labels))
    n_params = sum(int(x.size) for x in jax.tree.leaves(trainable))

    def policy_fn(rng, obs, net_params):
        fwd, _ = eqx.combine(net_params, static)(encode(obs))
        return fwd, {}

    def loss_fn(tr, traj, log_reward):
        # recompute P_F and P_B logits of every visited observation in one batched call
        fwd, bwd = eqx.combine(tr["net"], static)(encode(traj.obs))
        traj = traj.replace(info={"forward_logits": fwd, "backward_logits": bwd})
        log_pf, log_pb = forward_trajectory_log_probs(env, traj, env_params)
        return jnp.mean((tr["log_z"] + log_pf - log_pb - log_reward) ** 2)

    def step(state):
        tr, opt_state, rng = state
        rng, k_roll = jax.random.split(rng)
        # on-policy rollout with the current (frozen) policy: lax.scan over env.step
        traj, info = forward_rollout(k_roll, batch_size, policy_fn, jax.lax.stop_gradient(tr["net"]), env, env_params)
        loss, grads = jax.value_and_grad(loss_fn)(tr, traj, info["log_gfn_reward"])
        updates, opt_state = opt.update(grads, opt_state, tr)
        return (optax.apply_updates(tr, updates), opt_state, rng), loss

    state = (trainable, opt.init(trainable), key)
    return jax.jit(step, donate_argnums=(0,)), state, n_params


def main(argv=None) -> dict:
    """Command-line entry point: time one cell, print its JSON record."""
    p = cell_parser(__doc__)
    p.add_argument("--log-every", type=int, default=0, help="print loss / log Z every N timed iterations (stderr)")
    a = p.parse_args(argv)
    if "torch" in sys.modules:
        raise SystemExit("peer_gfnx: torch was imported; run this script in gfnx's own interpreter")
    cell = json.loads(a.cell)
    import gfnx
    try:
        step, state, n_params = setup(cell["env"], cell["env_kwargs"], a.seed, a.batch_size)
    except Unsupported as e:
        print(f"peer_gfnx: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    t0 = time.perf_counter()
    state, loss = jax.block_until_ready(step(state))  # first call: trace + compile + one step
    compile_s = time.perf_counter() - t0
    for _ in range(max(a.warmup - 1, 0)):
        state, loss = jax.block_until_ready(step(state))
    times, cpu, losses = [], [], []
    for i in range(a.iterations):
        c0, t0 = time.process_time(), time.perf_counter()
        state, loss = jax.block_until_ready(step(state))
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        if a.log_every:
            losses.append(float(loss))
            if (i + 1) % a.log_every == 0:
                print(f"it {i + 1} loss {statistics.fmean(losses[-a.log_every:]):.4f} "
                      f"log_z {float(state[0]['log_z']):.4f}", file=sys.stderr, flush=True)
    rec = {"library": "gfnx", "gfnx_version": getattr(gfnx, "__version__", "0.0.1"), "jax_version": jax.__version__,
           "env": cell["env"], "env_kwargs": cell["env_kwargs"], "batch_size": a.batch_size,
           "iterations": a.iterations, "warmup": a.warmup, "ms_per_iter": statistics.median(times),
           "ms_mean": statistics.fmean(times), "cpu_ms_per_iter": statistics.median(cpu),
           "compile_s": compile_s, "n_params": n_params, "log_z": float(state[0]["log_z"]),
           "loss": float(loss), "threads": 1, "cpu_affinity": CPU_AFFINITY, "xla_flags": os.environ["XLA_FLAGS"],
           "jax_platforms": os.environ.get("JAX_PLATFORMS")}
    print(json.dumps(rec), flush=True)
    return rec


if __name__ == "__main__":
    main()
