"""Shared pieces of the conformance suite: the report, state comparison and formatting helpers.

:mod:`gfn.check` (discrete environments), :mod:`gfn.check_continuous` and
:mod:`gfn.check_batched` build on these; keeping them here lets those modules import each
other only downwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from gfn.env import Env
from gfn.states import batch_len


@dataclass
class CheckReport:
    """Result of :func:`check_env`: a list of violations in plain words."""

    env_name: str
    violations: list = field(default_factory=list)
    checks_run: int = 0

    @property
    def ok(self) -> bool:
        """True when no violation was found."""
        return not self.violations

    def add(self, msg: str) -> None:
        """Record a violation (each distinct message once)."""
        if msg not in self.violations:
            self.violations.append(msg)

    def __str__(self) -> str:
        if self.ok:
            return f"check_env({self.env_name}): all {self.checks_run} checks passed"
        lines = [f"check_env({self.env_name}): {len(self.violations)} problem(s):"]
        lines += [f"  - {v}" for v in self.violations]
        return "\n".join(lines)


def _same(a, b) -> bool:
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.shape == b.shape and bool(torch.equal(a, b) if not a.is_floating_point() else torch.allclose(a, b, atol=1e-5))
    if hasattr(a, "equal"):
        return bool(a.equal(b))
    return a == b


def _rows_equal(a, b) -> torch.Tensor:
    if a.is_floating_point():
        return torch.isclose(a, b, atol=1e-5).reshape(a.shape[0], -1).all(-1)
    return (a == b).reshape(a.shape[0], -1).all(-1)


def _fmt(states, i) -> str:
    if torch.is_tensor(states):
        return str(states[i].tolist())
    return states.describe(i) if hasattr(states, "describe") else f"#{i}"


def _rows_same(a, b) -> Optional[torch.Tensor]:
    """Per-state equality of two batches: tensors, or state batches with ``rows_equal`` (graphs);
    None when the batch type cannot be compared."""
    if torch.is_tensor(a) and torch.is_tensor(b):
        return _rows_equal(a, b)
    if hasattr(a, "rows_equal"):
        return a.rows_equal(b)
    return None


def _guard(report: CheckReport, what: str, fn, *args):
    report.checks_run += 1
    try:
        return fn(*args)
    except Exception as e:
        report.add(f"{what} raised {type(e).__name__}: {e}")
        return None


def _initial_states(env: Env, r: CheckReport, n: int):
    """``env.initial_states(n)`` checked for count and shape; None (with a violation) if broken."""
    s0 = _guard(r, "initial_states(n)", env.initial_states, n)
    if s0 is None:
        return None
    r.checks_run += 1
    if batch_len(s0) != n:
        r.add(f"initial_states({n}) returned {batch_len(s0)} states")
        return None
    _guard(r, "validating initial states", env.validate_states, s0, "initial states")
    return s0


#: messages of errors that features not fitting the model raise inside torch
_FEATURE_ERRORS = ("mat1 and mat2 shapes cannot be multiplied", "must have the same dtype", "expected scalar type")


def check_env_command(env: Env) -> str:
    """The ``gfn check-env`` command line that checks ``env``'s class."""
    import inspect
    cls = type(env)
    if cls.__module__ in (None, "__main__"):
        try:
            return f"gfn check-env {inspect.getfile(cls)}:{cls.__qualname__}"
        except (TypeError, OSError):
            return "gfn check-env path/to/file.py:YourEnv"
    return f"gfn check-env {cls.__module__}:{cls.__qualname__}"


def caused_by_env(exc: BaseException, env: Env) -> bool:
    """Whether an error raised during training comes from the environment: an :class:`EnvError`,
    an error raised inside a method of ``env`` or of its reward object, or a torch error of
    features that do not fit the model's input layer."""
    from gfn.env import EnvError
    if isinstance(exc, EnvError):
        return True
    owners = (env, getattr(env, "reward", None))
    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if obj is not None and any(obj is o for o in owners):
            return True
        tb = tb.tb_next
    return any(m in str(exc) for m in _FEATURE_ERRORS)


def add_check_env_hint(exc: BaseException, env: Env) -> None:
    """Append a hint to run ``gfn check-env`` to the message of an error the environment caused
    (in place, so the error keeps its type and traceback); other errors are left alone."""
    if not isinstance(exc, Exception) or not caused_by_env(exc, env):
        return
    hint = (f"hint: this error comes from the environment (or features that do not fit the model): "
            f"`{check_env_command(env)}` (gfn.check_env(env) in Python) checks its contract and names what is wrong")
    if exc.args and isinstance(exc.args[0], str):
        if "gfn check-env" not in exc.args[0]:
            exc.args = (f"{exc.args[0]}\n  {hint}",) + tuple(exc.args[1:])
    elif hasattr(exc, "add_note"):
        exc.add_note(hint)
