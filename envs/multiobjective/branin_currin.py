"""Branin-Currin on a ``height x height`` grid: the HyperGrid MDP with two rewards to maximise.

A cell ``(i, j)`` maps to ``u = (i, j) / (height - 1)`` in [0, 1]^2 and gets (MOGFN-PC's hypergrid
normalisation of the two classic test functions, Jain et al. 2023)::

    R_branin(u) = 1 - branin(15 u_1 - 5, 15 u_2) / 308.13     (308.13 = max of branin on the box)
    R_currin(u) = currin(u_1, u_2) / 13.77                      (13.77 = max of currin on the box)

    branin(a, b) = (b - 5.1 a^2 / (4 pi^2) + 5 a / pi - 6)^2 + 10 (1 - 1 / (8 pi)) cos(a) + 10
    currin(x, y) = (1 - exp(-1 / (2 y))) (2300 x^3 + 1900 x^2 + 2092 x + 60) / (100 x^3 + 500 x^2 + 4 x + 20)

Both are clamped below at ``floor`` (1e-3) so log R stays finite (the Branin corner is exactly 0).
All ``height^2`` cells are terminal: exactly enumerable (exact Pareto front and per-preference targets).
"""

from __future__ import annotations

import math

import torch

from gfn.envs.hypergrid import HyperGrid
from gfn.preferences import MultiObjectiveReward

BRANIN_MAX = 308.13
CURRIN_MAX = 13.77


def branin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Branin function on its usual domain a in [-5, 10], b in [0, 15]."""
    t1 = b - 5.1 / (4 * math.pi ** 2) * a ** 2 + 5 / math.pi * a - 6
    return t1 ** 2 + 10 * (1 - 1 / (8 * math.pi)) * torch.cos(a) + 10


def currin(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Currin exponential function on [0, 1]^2 (its y = 0 limit is taken as factor 1)."""
    factor = 1 - torch.exp(-1 / (2 * y.clamp(min=1e-12)))
    return factor * (2300 * x ** 3 + 1900 * x ** 2 + 2092 * x + 60) / (100 * x ** 3 + 500 * x ** 2 + 4 * x + 20)


class BraninCurrinReward(MultiObjectiveReward):
    """The two normalised objectives ``(branin, currin)`` of a grid cell, each in [floor, 1]."""

    objective_names = ("branin", "currin")

    def __init__(self, height: int = 32, floor: float = 1e-3):
        if height < 2 or not 0 < floor < 1:
            raise ValueError(f"need height >= 2 and 0 < floor < 1, got height={height}, floor={floor}")
        self.height, self.floor = int(height), float(floor)

    def objectives(self, states: torch.Tensor) -> torch.Tensor:
        """``[B, 2]`` objective values (not logs) of grid cells."""
        if states.dim() != 2 or states.shape[1] != 2:
            raise ValueError(f"Branin-Currin is 2-D: states must have shape [B, 2], got {tuple(states.shape)}")
        u = states.double() / (self.height - 1)
        rb = 1 - branin(15 * u[:, 0] - 5, 15 * u[:, 1]) / BRANIN_MAX
        rc = currin(u[:, 0], u[:, 1]) / CURRIN_MAX
        return torch.stack([rb, rc], 1).clamp(min=self.floor)

    def log_rewards(self, states: torch.Tensor) -> torch.Tensor:
        """``[B, 2]`` log objective values."""
        return self.objectives(states).log().float()


class BraninCurrin(HyperGrid):
    """The 2-D HyperGrid MDP (increment x, increment y, exit anywhere) with Branin-Currin rewards."""

    def __init__(self, height: int = 32, floor: float = 1e-3, device: str | torch.device = "cpu"):
        super().__init__(ndim=2, height=height, reward=BraninCurrinReward(height, floor), device=device)
