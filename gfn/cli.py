"""The ``gfn`` command line.

    gfn train --env hypergrid --ndim 2 --height 8 --objective subtb --iterations 2000
    gfn train --config runs/hypergrid-.../config.json --out runs/again   # reproduce a run
    gfn train --resume runs/hypergrid-...  --iterations 4000             # continue it exactly
    gfn sample --run runs/hypergrid-... -n 1000 --out samples.csv        # draw from a trained run
    gfn envs                        # registered environments and their parameters
    gfn objectives                  # registered objectives and their parameters
    gfn check-env mymodule:MyEnv    # conformance suite on your own environment

User errors (bad values, files, directories, checkpoints) print one line and a hint, exit status 2;
``--debug`` shows the traceback instead.  An environment given as ``module:Class`` or
``file.py:Class`` is user code: it is imported only when named on the command line (``--env``),
never because a config file or a resumed run names it, unless ``--trust-code`` is given.

``gfn train`` uses the same configuration system as the example scripts (:mod:`gfn.config`):
the shared :class:`~gfn.config.RunConfig` flags plus one flag per constructor parameter of
the chosen environment (``--ndim``, ``--height``, ...), all settable from a YAML/JSON file.
Distributed: ``torchrun --nproc_per_node N -m gfn train ...`` (or ``--no-python gfn train``).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from typing import Optional, Sequence

import torch

from gfn.config import ConfigError, load_config_file, parse_config, resume_defaults
from gfn.envspec import (TrainConfig, build_env, check_env_source, env_factory, env_parameters,  # noqa: F401
                         is_user_code, load_target, run_name, train_config_class)
from gfn.states import batch_index

#: exact metrics are computed for enumerable environments up to this many states
EXACT_METRICS_MAX_STATES = 2_000_000


# ---------------------------------------------------------------------------- generic metrics
class SampleTracker:
    """Trainer hook over on-policy samples: the k best *distinct* objects (tensor states; other
    state types are ranked by reward alone) and, for enumerable envs with ``mode_mask()``, the
    modes hit so far.  Checkpointed with the run (state_dict / load_state_dict)."""

    def __init__(self, env, top_k: int = 100, mode_mask: Optional[torch.Tensor] = None):
        self.env, self.top_k = env, int(top_k)
        self.top = torch.empty(0, dtype=torch.float64)  # log-rewards of the best objects
        self.top_states: Optional[torch.Tensor] = None
        self.n_seen = 0
        self.hit = None if mode_mask is None else torch.zeros_like(mode_mask, dtype=torch.bool)
        self.mode_mask = mode_mask

    def __call__(self, trainer, iteration, info) -> None:
        n_fresh = trainer.n_samples - self.n_seen  # fresh trajectories come first in the batch
        self.n_seen = trainer.n_samples
        if n_fresh <= 0:
            return
        batch = info.batch
        idx = torch.arange(n_fresh, device=batch.ptr.device)
        lr = batch.log_rewards[:n_fresh].detach().double().cpu()
        states = batch_index(batch.terminal_states, idx)
        if torch.is_tensor(states):
            states = states.detach().cpu()
            all_states = states if self.top_states is None else torch.cat([self.top_states, states])
            all_lr = torch.cat([self.top, lr])
            uniq, inv = torch.unique(all_states, dim=0, return_inverse=True)
            best = torch.full((uniq.shape[0],), float("-inf"), dtype=torch.float64).scatter_reduce(
                0, inv, all_lr, reduce="amax")
            keep = torch.topk(best, min(self.top_k, best.numel())).indices
            self.top, self.top_states = best[keep], uniq[keep]
        else:
            both = torch.cat([self.top, lr])
            self.top = torch.topk(both, min(self.top_k, both.numel())).values
        if self.hit is not None:
            self.hit[self.env.state_index(states).to(self.hit.device)] = True

    def metrics(self) -> dict:
        """top-k mean log-reward, best log-reward, modes found."""
        out = {}
        if self.top.numel():
            out[f"top{self.top_k}_log_reward"] = float(self.top.mean())
            out["max_log_reward"] = float(self.top.max())
        if self.hit is not None:
            out["modes_found"] = int((self.hit & self.mode_mask).sum())
            out["n_modes"] = int(self.mode_mask.sum())
        return out

    def state_dict(self) -> dict:
        """Tensors and counters, for checkpoints."""
        return {"top": self.top, "top_states": self.top_states, "n_seen": self.n_seen, "hit": self.hit}

    def load_state_dict(self, d: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.top, self.top_states, self.n_seen, self.hit = d["top"], d["top_states"], int(d["n_seen"]), d["hit"]


def exact_metrics_available(env) -> bool:
    """Enumerable discrete env small enough for exact metrics at every evaluation."""
    from gfn.env import DiscreteEnv
    if not isinstance(env, DiscreteEnv) or not env.is_enumerable:
        return False
    n = getattr(env, "n_states", None)
    return n is None or int(n) <= EXACT_METRICS_MAX_STATES


def make_metrics(env, top_k: int = 100, estimated: bool = True):
    """``(tracker hook, metrics_fn, images_fn)`` for any environment.  ``estimated``: add the
    sampling-based metrics of :class:`gfn.metrics.estimated.EstimatedMetrics` (log Z bounds, ESS,
    log p-hat vs log R correlation; they need a model usable without a conditioning vector);
    ``metrics_fn.hooks`` are trainer hooks the run needs for them (checkpointed state)."""
    from gfn import metrics
    from gfn.metrics.estimated import EstimatedMetrics
    from gfn.runner import log_z_value
    exact = exact_metrics_available(env)
    mode_mask = None
    if exact and callable(getattr(env, "mode_mask", None)):
        mode_mask = env.mode_mask()
    tracker = SampleTracker(env, top_k, mode_mask)
    est = EstimatedMetrics(env, top_k=top_k, target_sampler="auto" if exact else None) if estimated else None

    def metrics_fn(trainer) -> dict:
        m = tracker.metrics()
        if est is not None:
            m.update(est(trainer))
        if exact:
            m.update(metrics.exact_metrics(env, trainer.model))
            log_z = log_z_value(trainer.model, trainer.objective)
            m["log_z_error"] = abs(log_z - m["log_z_true"])
        return m

    # a test set drawn at the first evaluation must survive a resume: checkpointed by this hook
    metrics_fn.hooks = [est.hook] if est is not None and est.target_sampler is None else []
    return tracker, metrics_fn, grid_images_fn(env) if exact else None


def grid_images_fn(env):
    """Heat maps of the learned and the target distribution (titled, one colour bar) for
    enumerable envs whose states are 2-D integer points."""
    from gfn import metrics
    from gfn.run_logging import comparison_image
    states = env.enumerate_states()
    if not (torch.is_tensor(states) and states.dim() == 2 and states.shape[1] == 2
            and not states.is_floating_point() and int(states.min()) >= 0 and int(states.max()) < 512):
        return None
    xy = states.long().cpu()
    h, w = int(xy[:, 0].max()) + 1, int(xy[:, 1].max()) + 1

    def images_fn(trainer) -> dict:
        p = metrics.exact_terminal_distribution(env, trainer.model).cpu()
        q = metrics.target_distribution(env).cpu()
        grids = []
        for v in (p, q):
            g = torch.zeros(h, w, dtype=torch.float64)
            g[xy[:, 0], xy[:, 1]] = v.double()
            grids.append(g.numpy())
        return {"distribution/learned_vs_target": comparison_image(grids[0], grids[1], scale=max(2, 128 // max(h, w)))}

    return images_fn


# ---------------------------------------------------------------------------- commands
def _peek(argv: Sequence[str], flag: str) -> Optional[str]:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def cmd_train(argv: Sequence[str]) -> int:
    """``gfn train``: train any registered environment; prints the final metrics as JSON."""
    argv = list(argv)
    trust_code = "--trust-code" in argv
    argv = [a for a in argv if a != "--trust-code"]
    env_name = _peek(argv, "--env")
    if env_name is None:
        cfg_file, resume = _peek(argv, "--config"), _peek(argv, "--resume")
        if resume and not os.path.exists(resume):
            raise ConfigError(f"--resume {resume}: no such run directory or checkpoint file")
        if cfg_file:
            env_name = load_config_file(cfg_file).get("env")
            check_env_source(env_name, f"config file {cfg_file}", trust_code)
        elif resume:
            env_name = resume_defaults(resume).get("env")
            check_env_source(env_name, f"the run configuration of --resume {resume}", trust_code)
    if env_name is not None and not isinstance(env_name, str):
        raise ConfigError(f"env must be a string, got {env_name!r}")
    if not env_name:
        if "-h" in argv or "--help" in argv:
            parse_config(TrainConfig, argv, description=cmd_train.__doc__)
        import gfn.envs as envs
        print(f"gfn train: choose an environment with --env NAME ({', '.join(envs.list_envs())}); "
              "`gfn train --env NAME --help` lists its flags (--trust-code: allow --config/--resume to name "
              "module:Class code)", file=sys.stderr)
        return 2
    if env_name == "diffusion":  # fixed-length continuous trajectories: the dedicated trainer (#19)
        from gfn.envs.diffusion.cli import main as diffusion_main
        rest = [a for i, a in enumerate(argv) if a not in ("--env", "--env=diffusion")
                and not (a == "diffusion" and i > 0 and argv[i - 1] == "--env")]
        rest = [a for a in rest if a != "--debug"]
        try:
            diffusion_main(rest, prog="gfn train --env diffusion")
        except ValueError as e:  # bad target name, option or value: one line (--debug: traceback)
            raise ConfigError(str(e)) from e
        return 0
    cls = train_config_class(env_name)
    cfg = parse_config(cls, argv, description=f"Train a GFlowNet on the {env_name!r} environment.",
                       exit_on_error=False)
    cfg.env = env_name
    env = build_env(cfg)
    from gfn.preferences import PREF_MODES
    tracker, metrics_fn, images_fn = make_metrics(env, cfg.top_k,
                                                  estimated=getattr(cfg, "condition", "none") not in PREF_MODES)
    from gfn.runner import run
    result = run(cfg, env, metrics_fn, hooks=[tracker, *metrics_fn.hooks], images_fn=images_fn,
                 name=run_name(env_name))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float, str))}, indent=2))
    return 0


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].replace("``", "") if doc.strip() else ""


def _signature_text(factory, skip=("self",)) -> str:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return ""
    parts = []
    for p in sig.parameters.values():
        if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        parts.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts)


def cmd_envs(argv: Sequence[str]) -> int:
    """``gfn envs``: registered environments, what they are, and their parameters."""
    import gfn.envs as envs
    for name in envs.list_envs():
        f = env_factory(name)
        print(f"{name:12s} {_first_line(f)}")
        print(f"{'':12s}   {getattr(f, '__name__', '')}({_signature_text(f)})")
    return 0


def cmd_objectives(argv: Sequence[str]) -> int:
    """``gfn objectives``: registered objectives and their keyword arguments (--objective-arg)."""
    from gfn.objectives import list_objectives, objective_class
    for name in list_objectives():
        cls = objective_class(name)
        print(f"{name:14s} {_first_line(cls)}")
        sig = _signature_text(cls)
        if sig:
            print(f"{'':14s}   --objective-arg: {sig}")
    return 0


def cmd_check_env(argv: Sequence[str]) -> int:
    """``gfn check-env TARGET``: run gfn.check_env on an environment; exit 1 on violations."""
    import argparse
    from gfn.check import check_env
    from gfn.config import _parse_kv
    p = argparse.ArgumentParser(prog="gfn check-env", description=cmd_check_env.__doc__)
    p.add_argument("target", help="module:Class, path/to/file.py:Class, or a registered env name")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="constructor argument (repeatable)")
    p.add_argument("--n-trajectories", type=int, default=64, help="random trajectories to walk")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    ns = p.parse_args(argv)
    factory = load_target(ns.target)
    env = factory(**_parse_kv(ns.arg)) if callable(factory) else factory
    report = check_env(env, n_trajectories=ns.n_trajectories, seed=ns.seed)
    print(report)
    return 0 if report.ok else 1


def cmd_sample(argv: Sequence[str]) -> int:
    """``gfn sample --run DIR -n N --out FILE.csv``: draw N objects from a trained run's policy."""
    import argparse
    from gfn.load import load_run, write_samples_csv
    p = argparse.ArgumentParser(prog="gfn sample", description=cmd_sample.__doc__)
    p.add_argument("--run", required=True, help="run directory of `gfn train` (or one of its checkpoint files)")
    p.add_argument("-n", "--n", type=int, default=1000, help="objects to draw (default 1000)")
    p.add_argument("--out", required=True, help="CSV file to write (one row per object)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same samples)")
    p.add_argument("--batch-size", type=int, default=1000, help="objects drawn per call")
    p.add_argument("--beta", type=float, default=None, help="inverse temperature of a conditional (--condition) model")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--trust-code", action="store_true", help="import the run's module:Class environment")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    ns = p.parse_args(argv)
    if ns.n < 1 or ns.batch_size < 1:
        raise ConfigError(f"-n and --batch-size must be >= 1; got {ns.n} and {ns.batch_size}")
    if os.path.isdir(ns.out) or (os.path.exists(ns.out) and not ns.overwrite):
        raise ConfigError(f"--out {ns.out} already exists", hint="choose another file, or pass --overwrite")
    if not os.path.exists(ns.run):
        raise ConfigError(f"--run {ns.run}: no such run directory or checkpoint file")
    loaded = load_run(ns.run, device=ns.device, trust_code=ns.trust_code)
    n = write_samples_csv(loaded, ns.out, ns.n, seed=ns.seed, batch_size=ns.batch_size, beta=ns.beta)
    print(f"wrote {n} samples of {ns.run} (iteration {loaded.iteration}) to {ns.out}")
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "envs": cmd_envs, "objectives": cmd_objectives,
            "check-env": cmd_check_env}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``gfn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--debug":  # `gfn --debug train ...` is `gfn train ... --debug`
        argv = argv[1:] + ["--debug"]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [__doc__.strip().splitlines()[0], "", "commands:"]
        lines += [f"  {name:12s} {_first_line(fn).split(': ', 1)[-1]}" for name, fn in COMMANDS.items()]
        if argv and argv[0] not in ("-h", "--help"):
            print(f"gfn: unknown command {argv[0]!r}\n", file=sys.stderr)
        print("\n".join(lines), file=sys.stdout if not argv or argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    from gfn.checkpoint import CheckpointError
    from gfn.trainer import TrainingDiverged
    debug = "--debug" in argv
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (ConfigError, CheckpointError, TrainingDiverged) as e:  # user-facing conditions, not bugs
        if debug:
            raise
        message = " ".join(str(e).split()) if not isinstance(e, CheckpointError) else str(e)
        print(f"gfn {argv[0]}: error: {message}", file=sys.stderr)
        hint = getattr(e, "hint", "")
        if hint:
            print(f"  hint: {hint}", file=sys.stderr)
        return 1 if isinstance(e, TrainingDiverged) else 2


if __name__ == "__main__":
    sys.exit(main())
