"""Typed run configuration shared by every example script and the ``gfn`` command line.

A run is described by a dataclass (:class:`RunConfig` or a subclass adding environment
flags).  Values come from, in increasing priority: the dataclass defaults, a YAML/JSON file
given with ``--config FILE``, and explicit command-line flags (``--batch-size 64``).
Every field gets a ``--kebab-case`` flag; booleans get ``--flag`` / ``--no-flag``.
``--objective-arg key=value`` (repeatable) passes keyword arguments to the objective.
The resolved configuration is written to ``<out>/config.json`` so that
``--config <out>/config.json`` reproduces a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Type, TypeVar

T = TypeVar("T", bound="RunConfig")


class ConfigError(ValueError):
    """A user-facing configuration problem (bad value, missing file, unusable output directory):
    the command line prints it as one line plus its ``hint``, without a traceback."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


@dataclass
class RunConfig:
    """Flags shared by every example: objective, optimisation, model size, exploration, output."""

    objective: str = field(default="tb", metadata={"help": "objective name (see `gfn objectives`)"})
    objective_args: dict = field(default_factory=dict, metadata={"help": "objective keyword args, --objective-arg key=value (repeatable)"})
    iterations: int = field(default=1000, metadata={"help": "training iterations"})
    batch_size: int = field(default=16, metadata={"help": "trajectories per iteration"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the networks"})
    lr_log_z: float = field(default=0.1, metadata={"help": "learning rate of log Z"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed, same CPU run)"})
    out: str = field(default="", metadata={"help": "output directory (default: runs/<name>-<time>)"})
    hidden: int = field(default=256, metadata={"help": "hidden width of the MLPs"})
    n_layers: int = field(default=2, metadata={"help": "hidden layers of the MLPs"})
    shared_trunk: bool = field(default=True, metadata={"help": "P_F, P_B and log F share one trunk"})
    uniform_pb: bool = field(default=False, metadata={"help": "fixed uniform backward policy"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (exploration only)"})
    epsilon: float = field(default=0.0, metadata={"help": "epsilon-uniform exploration"})
    replay_capacity: int = field(default=0, metadata={"help": "replay buffer size (0: off)"})
    replay_fraction: float = field(default=0.5, metadata={"help": "fraction of each batch replayed"})
    replay_policy: str = field(default="fifo", metadata={"help": "replay buffer: fifo | top (highest rewards kept) | prioritized (half from the top 10%%, as in the papers)", "choices": ("fifo", "top", "prioritized")})
    replay_extra: bool = field(default=False, metadata={"help": "replayed trajectories come on top of --batch-size fresh ones (the papers' online + offline batches) instead of replacing part of them"})
    grad_clip: float = field(default=10.0, metadata={"help": "gradient norm clip (<= 0: off)"})
    eval_every: int = field(default=0, metadata={"help": "evaluate metrics every N iterations (0: only at the end)"})
    log_every: int = field(default=10, metadata={"help": "log scalars every N iterations"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    condition: str = field(default="none", metadata={"help": "temperature conditioning: none | logit (Logit-GFN) | layer (beta embedding input) | logit+layer (both); preference conditioning for vector rewards: pref (w ~ Dirichlet) | pref+beta (w and beta)", "choices": ("none", "logit", "layer", "logit+layer", "pref", "pref+beta")})
    logit_scale: str = field(default="auto", metadata={"help": "Logit-GFN scale g(beta): action (one positive scale per action) | scalar (one scale, the paper's form) | auto (action when the action set is fixed, else scalar)", "choices": ("auto", "action", "scalar")})
    beta_dist: str = field(default="uniform:1,3", metadata={"help": "beta distribution for --condition: uniform:a,b | loguniform:a,b | expuniform:a,b | normal:mean,std[,low,high] | constant:b | anneal:start,end,steps[,linear|cosine|geometric]"})
    eval_betas: list = field(default_factory=list, metadata={"help": "betas at which exact metrics tv_exact_beta<b> are written (enumerable envs)"})
    pref_alpha: float = field(default=1.0, metadata={"help": "--condition pref: training preferences w ~ Dirichlet(alpha)"})
    pref_beta: float = field(default=1.0, metadata={"help": "--condition pref: the fixed beta of R(x|w)^beta"})
    scalarization: str = field(default="weighted_sum", metadata={"help": "--condition pref: weighted_sum (sum_i w_i R_i) | tchebycheff (min_i w_i R_i)", "choices": ("weighted_sum", "tchebycheff")})
    eval_pref_steps: int = field(default=10, metadata={"help": "--condition pref: exact metrics at the simplex lattice of step 1/N (11 preferences for 2 objectives)"})
    local_search: list = field(default_factory=list, metadata={"help": "local search K,I: backtrack K steps, I refinements per batch (empty: off)"})
    ls_accept: str = field(default="mh", metadata={"help": "local-search acceptance: mh (Metropolis-Hastings) | barker (alpha/(1+alpha), the authors' stochastic filter) | deterministic (R(x') > R(x))", "choices": ("mh", "barker", "deterministic")})
    local_search_protocol: str = field(default="library", metadata={"help": "library (local search refines each batch, one gradient step) | paper (the authors' rounds: --ls-calls-per-round reward calls, --ls-steps-per-batch steps on them and on a prioritised replay batch of --batch-size)", "choices": ("library", "paper")})
    ls_calls_per_round: int = field(default=32, metadata={"help": "paper protocol: reward calls per round n = M fresh samples + M*I candidates (a multiple of I+1)"})
    ls_steps_per_batch: int = field(default=3, metadata={"help": "paper protocol: gradient steps on each online and each replay batch"})
    ls_train_on: str = field(default="all", metadata={"help": "paper protocol: train on all evaluated objects (all) | samples + final chain (both) | final chain (refined)", "choices": ("all", "both", "refined")})
    checkpoint_every: int = field(default=1000, metadata={"help": "write a checkpoint every N iterations (0: only the final one)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many periodic checkpoints to keep"})
    resume: str = field(default="", metadata={"help": "run directory (or checkpoint file) to continue exactly; its config.json is the default config"})
    config: str = field(default="", metadata={"help": "YAML or JSON file setting any field; flags override it"})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def _parse_kv(items: Sequence[str]) -> dict:
    out = {}
    for it in items:
        if "=" not in it:
            raise argparse.ArgumentTypeError(f"--objective-arg expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip().replace("-", "_")] = _auto_value(v.strip())
    return out


def _auto_value(v: str) -> Any:
    """Interpret a command-line value as bool, int, float, or keep it a string."""
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def load_config_file(path: str) -> dict:
    """Read a YAML or JSON configuration file into a dict."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must contain a mapping of field names to values")
    return data


def build_parser(cls: Type[RunConfig], description: Optional[str] = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per dataclass field (defaults shown in --help)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_ = f.metadata.get("help", "")
        if f.name == "objective_args":
            p.add_argument("--objective-arg", dest="objective_args", action="append", default=None,
                           metavar="KEY=VALUE", help=help_)
        elif tp is bool:
            p.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{help_} (default: {default})")
        elif tp in (int, float, str):
            p.add_argument(_flag(f.name), dest=f.name, type=tp, default=None, help=f"{help_} (default: {default!r})",
                           choices=f.metadata.get("choices"))
        elif tp in (list, tuple) or typing.get_origin(tp) in (list, tuple):
            p.add_argument(_flag(f.name), dest=f.name, type=str, default=None,
                           help=f"{help_}, comma-separated (default: {default!r})")
        elif tp is dict:
            p.add_argument(_flag(f.name), dest=f.name, type=json.loads, default=None, help=f"{help_} (JSON)")
        else:
            raise TypeError(f"unsupported config field type {tp} for {f.name}")
    return p


def config_from_dict(cls: Type[T], data: dict) -> T:
    """Build a config from a dict, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) for {cls.__name__}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in data.items():
        tp = _base_type(hints[k])
        if (tp in (list, tuple) or typing.get_origin(tp) in (list, tuple)) and isinstance(v, str):
            v = [_auto_value(x.strip()) for x in v.split(",") if x.strip()]
        elif tp is float and isinstance(v, int):
            v = float(v)
        kw[k] = v
    return cls(**kw)


def parse_config(cls: Type[T] = RunConfig, argv: Optional[Sequence[str]] = None,
                 description: Optional[str] = None) -> T:
    """Parse the command line (and an optional ``--config`` file) into a ``cls`` instance."""
    parser = build_parser(cls, description)
    ns = parser.parse_args(argv)
    data: dict = {}
    if ns.config:
        data.update(load_config_file(ns.config))
        data["config"] = ns.config
    elif getattr(ns, "resume", None):
        data.update(resume_defaults(ns.resume))
    for k, v in vars(ns).items():
        if v is None:
            continue
        if k == "objective_args":
            merged = dict(data.get("objective_args") or {})
            merged.update(_parse_kv(v))
            v = merged
        data[k] = v
    try:
        cfg = config_from_dict(cls, data)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
        raise
    from gfn.distributed import bind_local_gpu
    bind_local_gpu(cfg.device)  # under torchrun, "cuda" is this rank's GPU before any env is built
    return cfg


def config_to_dict(cfg: RunConfig) -> dict:
    """JSON-serialisable dict of a config."""
    return dataclasses.asdict(cfg)


def resume_defaults(resume: str) -> dict:
    """Settings of the run that ``--resume PATH`` continues: its ``config.json`` (if present),
    with ``out`` pointing at that run directory.  Explicit flags still override them."""
    from gfn.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, run_dir_of
    run_dir = run_dir_of(resume) if os.path.isfile(resume) else resume
    path = os.path.join(run_dir, "config.json")
    if os.path.isfile(path):
        data = load_config_file(path)
    else:  # a checkpoint moved without its run directory still carries its configuration
        try:
            data = dict(load_checkpoint(find_checkpoint(resume)).get("config") or {})
        except CheckpointError:
            data = {}  # the run itself reports the missing or broken checkpoint
        data.pop("resume", None)
    data.pop("config", None)
    data["out"] = run_dir
    return data
