"""Small helpers shared by the objectives in this package (argument coercion, per-row rewards)."""

from __future__ import annotations

import math

import torch

from gfn.env import Env, EnvError
from gfn.objectives.base import floor_log_reward
from gfn.states import States


def as_bool(value, name: str) -> bool:
    """Accept a bool or the strings true/false/1/0/yes/no (``--objective-arg key=value`` passes strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "y", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "n", "off"):
        return False
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


def as_float(value, name: str, *, positive: bool = False, min_value: float | None = None) -> float:
    """Parse a finite float (strings allowed), optionally > 0 or >= ``min_value``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and x <= 0:
        raise ValueError(f"{name} must be > 0, got {x}")
    if min_value is not None and x < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {x}")
    return x


def as_int(value, name: str, *, min_value: int = 1) -> int:
    """Parse an integer >= ``min_value`` (strings allowed)."""
    try:
        x = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if x < min_value or (isinstance(value, float) and value != x):
        raise ValueError(f"{name} must be an integer >= {min_value}, got {value!r}")
    return x


def state_log_rewards(env: Env, states: States, floor: float, who: str) -> torch.Tensor:
    """Floored log R of *intermediate* states; raises if ``env`` does not declare that it provides them."""
    if not getattr(env, "provides_intermediate_rewards", False):
        raise EnvError(
            f"{who} needs log R of intermediate states, but {type(env).__name__} does not provide them "
            f"(set `provides_intermediate_rewards = True` on the environment only if log_reward is "
            f"meaningful for every state)")
    with torch.no_grad():
        return floor_log_reward(env.checked_log_reward(states), floor)


def mean_or_zero(x: torch.Tensor) -> torch.Tensor:
    """``x.mean()``, or a zero still attached to ``x``'s graph when ``x`` is empty (a batch with no
    equations, e.g. single-state pieces of sliced trajectories): never the nan of an empty mean."""
    return x.mean() if x.numel() > 0 else x.sum() * 0.0
