"""Typed run configuration shared by every example script and the ``gfn`` command line.

A run is described by a dataclass (:class:`RunConfig` or a subclass adding environment
flags).  Values come from, in increasing priority: the dataclass defaults, a YAML/JSON file
given with ``--config FILE``, and explicit command-line flags (``--batch-size 64``).
Every field gets a ``--kebab-case`` flag; booleans get ``--flag`` / ``--no-flag``.
``--objective-arg key=value`` (repeatable) passes keyword arguments to the objective.
The resolved configuration is written to ``<out>/config.json`` so that
``--config <out>/config.json`` reproduces a run.

Values are checked where they enter: each must have its field's type (``batch_size: true`` or
``iterations: 2.7`` is an error naming the key, the value and the type; YAML numbers such as
``1e-3`` are read as floats) and lie in its range (``lr > 0``, ``0 <= epsilon <= 1``, ...).
Problems raise :class:`ConfigError`, which command lines print as one line plus a hint
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Type, TypeVar

from gfn.errors import ConfigError  # defined below the run machinery (gfn.rundir raises it too)

T = TypeVar("T", bound="RunConfig")


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
    amsgrad: bool = field(default=True, metadata={"help": "Adam with AMSGrad: steps keep shrinking as the loss goes to 0 (plain Adam's grow back and long runs drift away from the optimum)"})
    eval_every: int = field(default=0, metadata={"help": "evaluate metrics every N iterations (0: only at the end)"})
    log_every: int = field(default=10, metadata={"help": "log scalars every N iterations"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    condition: str = field(default="none", metadata={"help": "temperature conditioning: none | logit (Logit-GFN) | layer (beta embedding input) | logit+layer (both); preference conditioning for vector rewards: pref (w ~ Dirichlet) | pref+beta (w and beta)", "choices": ("none", "logit", "layer", "logit+layer", "pref", "pref+beta")})
    logit_scale: str = field(default="auto", metadata={"help": "Logit-GFN scale g(beta): action (one positive scale per action) | scalar (one positive scale) | auto (action when the action set is fixed, else scalar) | paper (the authors' unconstrained scale MLP, logits clipped to +-20)", "choices": ("auto", "action", "scalar", "paper")})
    layer_embed_at: str = field(default="input", metadata={"help": "layer conditioning: beta embedding at the network input | at the scorer input, after the state encoder (scorer: the paper's layout)", "choices": ("input", "scorer")})
    lr_log_z_cond: float = field(default=0.0, metadata={"help": "learning rate of the conditional log Z(beta) network under --condition (0: --lr-log-z; the authors use 1e-2)"})
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
    exploration: str = field(default="none", metadata={"help": "none | thompson:K[,p][,prior=BETA][,logz=head] (TS-GFN: K policy heads, bootstrap probability p, default 0.5; the authors' randomized priors of scale BETA and per-head log Z; docs/exploration.md)"})
    intrinsic: str = field(default="none", metadata={"help": "none | rnd:eta[,edge|state|flow] (GAFN random-network-distillation bonus of weight eta, default edge-based; flow: the GAFN authors' TB form with a learned state flow; docs/exploration.md)"})
    overwrite: bool = field(default=False, metadata={"help": "replace the run files of a non-empty --out (default: refuse it)"})
    checkpoint_every: int = field(default=1000, metadata={"help": "write a checkpoint every N iterations (0: only the final one)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many periodic checkpoints to keep"})
    resume: str = field(default="", metadata={"help": "run directory (or checkpoint file) to continue exactly; its config.json is the default config"})
    config: str = field(default="", metadata={"help": "YAML or JSON file setting any field; flags override it"})

    def __post_init__(self):
        check_config(self)


#: (field, test, what the value must be); checked by :func:`check_config` on every RunConfig
_RANGES = (
    ("iterations", lambda v: v >= 0, ">= 0"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("lr", lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    ("lr_log_z", lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    ("hidden", lambda v: v >= 1, ">= 1"),
    ("n_layers", lambda v: v >= 0, ">= 0"),
    ("temperature", lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    ("epsilon", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    ("replay_capacity", lambda v: v >= 0, ">= 0"),
    ("replay_fraction", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    ("grad_clip", math.isfinite, "finite (<= 0 turns clipping off)"),
    ("eval_every", lambda v: v >= 0, ">= 0"),
    ("log_every", lambda v: v >= 0, ">= 0"),
    ("checkpoint_every", lambda v: v >= 0, ">= 0"),
    ("keep_checkpoints", lambda v: v >= 1, ">= 1"),
    ("seed", lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)"),
    ("top_k", lambda v: v >= 1, ">= 1"),
)

_TYPE_NAMES = {bool: "bool (true/false)", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
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


def _yaml_loader():
    """PyYAML's safe loader, reading numbers the YAML 1.2 way: ``1e-3`` is a float (YAML 1.1 needs a
    dot and would hand the string "1e-3" to a float field)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return Loader


class _FileNotFound(ConfigError, FileNotFoundError):
    """A config file that does not exist (still a FileNotFoundError for callers that catch that)."""


def load_config_file(path: str) -> dict:
    """Read a YAML or JSON configuration file into a dict (:class:`ConfigError` when it is missing
    or malformed)."""
    if not os.path.exists(path):
        raise _FileNotFound(f"config file not found: {path}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} is not a file")
    with open(path) as f:
        text = f.read()
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            import yaml
            data = yaml.load(text, Loader=_yaml_loader())  # safe loader: plain values only
    except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
        detail = " ".join(str(e).split())
        raise ConfigError(f"config file {path} is malformed: {detail}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping of field names to values")
    return data


def _is_list_type(tp) -> bool:
    return tp in (list, tuple) or typing.get_origin(tp) in (list, tuple)


def _allows_none(tp) -> bool:
    return type(None) in typing.get_args(tp)


def check_value(owner: str, name: str, value: Any, tp) -> Any:
    """``value`` as field ``name`` of type ``tp`` stores it (int -> float for float fields, tuple or
    comma-separated string -> list); :class:`ConfigError` naming key, value and type otherwise."""
    if value is None and _allows_none(tp):
        return None
    base = _base_type(tp)
    expected = _TYPE_NAMES.get(list if _is_list_type(base) else base, getattr(base, "__name__", str(base)))
    ok = True
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif base is str:
        ok = isinstance(value, str)
    elif _is_list_type(base):
        if isinstance(value, str):
            value = [_auto_value(x.strip()) for x in value.split(",") if x.strip()]
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    elif base is dict:
        ok = isinstance(value, dict)
    if not ok:
        raise ConfigError(f"config value {name}={value!r} ({type(value).__name__}) of {owner} is not a valid "
                          f"{expected}", hint=f"set {name} to a {expected}" + (
                              "; quote-free true/false in YAML" if base is bool else ""))
    return value


def check_config(cfg: "RunConfig") -> None:
    """Type-check every field of ``cfg`` (coercing int -> float and tuples -> lists in place) and
    check the ranges of the shared fields; raises :class:`ConfigError`."""
    hints = typing.get_type_hints(type(cfg))
    owner = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        value = check_value(owner, f.name, getattr(cfg, f.name), hints[f.name])
        object.__setattr__(cfg, f.name, value)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{f.name} (--{f.name.replace('_', '-')}) must be one of {', '.join(choices)}; "
                              f"got {value!r}")
    for name, ok, what in _RANGES:
        v = getattr(cfg, name, None)
        if v is not None and not ok(v):
            raise ConfigError(f"{name} (--{name.replace('_', '-')}) must be {what}; got {v!r}")
    if cfg.replay_capacity == 0 and cfg.replay_policy != "fifo":
        raise ConfigError(f"replay_policy {cfg.replay_policy!r} needs a replay buffer; set replay_capacity "
                          "(--replay-capacity N) > 0")


def check_device(device: str) -> None:
    """A device string torch understands and this machine has (``cuda`` needs CUDA)."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {device!r} is not a torch device ({e})", hint="use --device cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine", hint="use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_objective(cfg: "RunConfig") -> None:
    """The objective is registered and takes every ``objective_args`` key (``lambda`` is accepted
    as an alias of ``lamda``, renamed in place); raises :class:`ConfigError`."""
    from gfn.objectives import list_objectives, objective_class
    if cfg.objective not in list_objectives():
        raise ConfigError(f"unknown objective {cfg.objective!r}; registered: {', '.join(list_objectives())}",
                          hint="`gfn objectives` lists them with their --objective-arg keys")
    valid = _keyword_parameters(objective_class(cfg.objective))
    args = dict(cfg.objective_args)
    if "lambda" in args and "lambda" not in valid and "lamda" in valid:
        if "lamda" in args:
            raise ConfigError("objective_args has both 'lambda' and 'lamda' (the same parameter)")
        args["lamda"] = args.pop("lambda")
    unknown = sorted(set(args) - set(valid)) if valid is not None else []
    if unknown:
        raise ConfigError(f"objective {cfg.objective!r} has no argument(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(valid) or '(none)'}", hint="`gfn objectives` lists every objective's arguments")
    from gfn.objectives import get_objective
    try:
        get_objective(cfg.objective, **args)  # the objective checks its values (cheap: no model)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"objective {cfg.objective!r} refuses its arguments: {' '.join(str(e).split())}",
                          hint="`gfn objectives` lists every objective's arguments") from e
    cfg.objective_args = args


def _keyword_parameters(cls) -> Optional[list]:
    """Keyword parameters of ``cls.__init__``, following ``**kwargs`` up the base classes
    (None when some ``__init__`` takes arbitrary keywords all the way up)."""
    names: list = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return names
        params = inspect.signature(init).parameters
        names += [n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and n not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names
    return None


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
    p.add_argument("--debug", action="store_true", help="show the traceback of errors (default: one line)")
    return p


def config_from_dict(cls: Type[T], data: dict) -> T:
    """Build a config from a dict, rejecting unknown keys and values of the wrong type or range
    with a :class:`ConfigError` naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config field(s) for {cls.__name__}: {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    return cls(**data)  # __post_init__ type- and range-checks every value


def user_error_exit(parser_prog: str, e: Exception) -> None:
    """Print ``e`` as one line (plus its hint) and exit with status 2."""
    hint = getattr(e, "hint", "")
    sys.stderr.write(f"{parser_prog}: error: {e}\n" + (f"  hint: {hint}\n" if hint else ""))
    raise SystemExit(2)


def parse_config(cls: Type[T] = RunConfig, argv: Optional[Sequence[str]] = None,
                 description: Optional[str] = None, exit_on_error: bool = True) -> T:
    """Parse the command line (and an optional ``--config`` file) into a checked ``cls`` instance.

    A bad value, file, device, objective or output directory exits with one line (status 2), or
    raises :class:`ConfigError` when ``--debug`` is given or ``exit_on_error`` is False."""
    parser = build_parser(cls, description)
    ns = parser.parse_args(argv)
    debug = ns.__dict__.pop("debug", False)
    try:
        cfg = _resolve(cls, ns)
    except ConfigError as e:
        if debug or not exit_on_error:
            raise
        user_error_exit(parser.prog, e)
    from gfn.distributed import bind_local_gpu
    bind_local_gpu(cfg.device)  # under torchrun, "cuda" is this rank's GPU before any env is built
    return cfg


def _resolve(cls: Type[T], ns: argparse.Namespace) -> T:
    data: dict = {}
    resume = getattr(ns, "resume", None)
    if resume and not os.path.exists(resume):
        raise ConfigError(f"--resume {resume}: no such run directory or checkpoint file")
    if ns.config:
        data.update(load_config_file(ns.config))
        data["config"] = ns.config
        if resume:  # a resumed run writes into its own directory, whatever the file says
            data["out"] = resume_defaults(resume)["out"]
    elif resume:
        data.update(resume_defaults(resume))
    for k, v in vars(ns).items():
        if v is None:
            continue
        if k == "objective_args":
            merged = dict(data.get("objective_args") or {})
            try:
                merged.update(_parse_kv(v))
            except argparse.ArgumentTypeError as e:
                raise ConfigError(str(e)) from e
            v = merged
        data[k] = v
    cfg = config_from_dict(cls, data)
    check_objective(cfg)
    check_device(cfg.device)
    if cfg.out and int(os.environ.get("RANK", "0")) == 0:
        from gfn.rundir import check_output_dir
        check_output_dir(cfg.out, resume=bool(getattr(cfg, "resume", "")), overwrite=cfg.overwrite)
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
    data.pop("overwrite", None)
    data["out"] = run_dir
    return data
