"""Environments named on a command line or in a run's configuration: a registered name or user
code (``module:Class`` / ``file.py:Class``, imported only when asked), the configuration class
with one field per constructor parameter, and the environment built from a configuration.
Shared by the command line (:mod:`gfn.cli`) and :func:`gfn.load_run`."""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import importlib.util
import inspect
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from gfn.config import ConfigError, RunConfig

_SIMPLE = (bool, int, float, str)


@dataclass
class TrainConfig(RunConfig):
    """Shared flags plus the name of a registered environment."""

    env: str = field(default="", metadata={"help": "registered environment (see `gfn envs`)"})
    top_k: int = field(default=100, metadata={"help": "k of the top-k reward metric"})


# ---------------------------------------------------------------------------- env parameters
def env_factory(name: str):
    """The class or function registered under ``name`` in :mod:`gfn.envs`, or ``module:Name`` /
    ``path/to/file.py:Name`` for an environment that is not registered."""
    import gfn.envs as envs
    if ":" in name:
        return load_target(name)
    if name not in envs.list_envs():
        raise ConfigError(f"unknown environment {name!r}; registered: {', '.join(envs.list_envs())}",
                          hint="`gfn envs` lists them; your own class is --env path/file.py:Class")
    return envs.env_factory(name)


def is_user_code(env_name: str) -> bool:
    """True for ``module:Class`` / ``file.py:Class`` (code to import), False for registered names."""
    return ":" in str(env_name)


def check_env_source(env_name: str, source: str, trust_code: bool) -> None:
    """Refuse an environment that names user code when it comes from a file (``source``) rather
    than the command line, unless ``--trust-code`` was given."""
    if is_user_code(env_name) and not trust_code:
        raise ConfigError(f"{source} names the environment {env_name!r}, which is code to import; "
                          "gfn imports code only when the command line asks for it",
                          hint=f"pass --trust-code if you trust that code, or --env {env_name}")


def _simple_type(tp) -> Optional[type]:
    """bool/int/float/str, ``list`` for sequences of those, or None (not settable from flags)."""
    if tp in _SIMPLE:
        return tp
    if tp in (list, tuple):
        return list
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        for a in typing.get_args(tp):
            t = _simple_type(a)
            if t is not None:
                return t
        return None
    if origin in (list, tuple, collections.abc.Sequence):
        if all(a in _SIMPLE for a in typing.get_args(tp) if a is not Ellipsis):
            return list
    return None


def env_parameters(factory) -> list[tuple[str, str, type, Any]]:
    """``(field name, parameter name, type, default)`` for every constructor parameter that a
    flag can set.  ``device`` and ``seed`` come from the shared flags; names that clash with a
    shared flag get an ``env_`` prefix (``--env-temperature``)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    shared = {f.name for f in dataclasses.fields(TrainConfig)}
    out = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("device", "seed"):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        tp = _simple_type(hints.get(p.name, type(default) if default is not None else None))
        if tp is None:
            if p.default is inspect.Parameter.empty:
                raise SystemExit(f"gfn: parameter {p.name!r} of {getattr(factory, '__name__', factory)} has no "
                                 "default and a type a flag cannot express; construct it in Python instead")
            continue
        if isinstance(default, tuple):
            default = list(default)
        name = f"env_{p.name}" if p.name in shared else p.name
        out.append((name, p.name, tp, default))
    return out


def train_config_class(env_name: str) -> type:
    """A :class:`TrainConfig` subclass with one field per parameter of environment ``env_name``."""
    factory = env_factory(env_name)
    fields = []
    for name, pname, tp, default in env_parameters(factory):
        meta = {"help": f"{env_name} parameter {pname!r}"}
        ann = Optional[tp] if default is None else tp
        if isinstance(default, list):
            fields.append((name, ann, field(default_factory=lambda d=default: list(d), metadata=meta)))
        else:
            fields.append((name, ann, field(default=default, metadata=meta)))
    cls = dataclasses.make_dataclass(f"{run_name(env_name).capitalize()}TrainConfig", fields, bases=(TrainConfig,))
    cls.__doc__ = f"gfn train flags for the {env_name!r} environment."
    return cls


def run_name(env_name: str) -> str:
    """A file-name-safe name for runs of ``env_name`` (``pkg.mod:MyEnv`` -> ``myenv``)."""
    return re.sub(r"\W+", "_", env_name.rpartition(":")[2]).lower() or "env"


def build_env(cfg: TrainConfig):
    """Instantiate ``cfg.env`` with its parameters from ``cfg`` (plus device/seed if it takes them)."""
    factory = env_factory(cfg.env)
    kwargs = {pname: getattr(cfg, name) for name, pname, _, _ in env_parameters(factory)}
    params = inspect.signature(factory).parameters
    for shared in ("device", "seed"):
        if shared in params:
            kwargs[shared] = getattr(cfg, shared)
    missing = [k for k, v in kwargs.items() if v is None and params[k].default is inspect.Parameter.empty]
    if missing:
        raise ConfigError(f"environment {cfg.env!r} needs " + ", ".join(f"--{m.replace('_', '-')}" for m in missing))
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as e:  # the environment refuses its parameters (EnvError is a ValueError)
        detail = " ".join(str(e).split())
        raise ConfigError(f"invalid parameters for environment {cfg.env!r}: {detail}",
                          hint=f"`gfn train --env {cfg.env} --help` lists them with their defaults") from e


def load_target(spec: str):
    """``module:Name``, ``path/to/file.py:Name`` or a registered environment name."""
    if ":" not in spec:
        return env_factory(spec)
    mod_name, _, attr = spec.rpartition(":")
    if mod_name.endswith(".py") or os.sep in mod_name:
        if not os.path.isfile(mod_name):
            raise ConfigError(f"no such file {mod_name}")
        name = os.path.splitext(os.path.basename(mod_name))[0]
        folder = os.path.dirname(os.path.abspath(mod_name))
        if folder not in sys.path:  # the file imports its sibling modules, as `python file.py` would
            sys.path.insert(0, folder)
        spec_ = importlib.util.spec_from_file_location(name, mod_name)
        module = importlib.util.module_from_spec(spec_)
        sys.modules[name] = module
        spec_.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name and mod_name.startswith(e.name):
                raise ConfigError(f"no module named {mod_name!r} (from {spec!r})",
                                  hint="give a file instead: path/to/file.py:Class") from e
            raise
    if not hasattr(module, attr):
        raise ConfigError(f"module {mod_name} has no attribute {attr!r}")
    return getattr(module, attr)
