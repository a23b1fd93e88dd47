"""Molecules with three objectives: QED, synthetic accessibility and molecular weight (RDKit).

Objectives of a molecule (each in [0, 1], clamped below at ``floor``; invalid graphs get the floor):
``qed`` (RDKit QED), ``sa`` ``(10 - SA) / 9`` and ``mw`` ``exp(-((MW - mw_target) / mw_width)^2)``,
the same scores as :class:`gfn.envs.molecules.MoleculeReward` (whose property cache is reused).
"""

from __future__ import annotations

import math

import torch

from gfn.envs.molecules.rewards import MoleculeReward, normalized_sa
from gfn.preferences import MultiObjectiveReward


class MoleculeMOReward(MultiObjectiveReward):
    """``[B, 3]`` log of (QED, normalised SA, MW score) of molecular graph states."""

    objective_names = ("qed", "sa", "mw")

    def __init__(self, floor: float = 1e-3, mw_target: float = 350.0, mw_width: float = 100.0,
                 scalar: str = "pref", exponent: float = 1.0):
        if not 0 < floor < 1:
            raise ValueError(f"floor must be in (0, 1), got {floor}")
        if scalar not in ("pref", "qed_sa") or not exponent > 0:
            raise ValueError(f"scalar must be 'pref' or 'qed_sa' and exponent > 0, got {scalar!r}, {exponent}")
        self.floor, self.mw_target, self.mw_width = float(floor), float(mw_target), float(mw_width)
        #: what the scalar log_reward is: the equal-weight scalarisation ("pref") or, for a
        #: single-objective baseline scored on the same three objectives, exponent * log(QED * SA)
        self.scalar, self.exponent = scalar, float(exponent)
        self.props = MoleculeReward(kind="qed", mw_target=mw_target, mw_width=mw_width)  # property cache

    def objectives(self, states) -> torch.Tensor:
        """``[B, 3]`` objective values (floor for invalid molecules)."""
        rows = []
        for p in self.props.properties(states):
            if p is None:
                rows.append((0.0, 0.0, 0.0))
            else:
                rows.append((p["qed"], normalized_sa(p["sa"]),
                             math.exp(-((p["mw"] - self.mw_target) / self.mw_width) ** 2)))
        dev = states.x.device if hasattr(states, "x") else "cpu"
        return torch.tensor(rows, dtype=torch.float64, device=dev).reshape(-1, 3).clamp(min=self.floor)

    def log_rewards(self, states) -> torch.Tensor:
        """``[B, 3]`` log objective values."""
        return self.objectives(states).log().float()

    def log_reward(self, states) -> torch.Tensor:
        """Scalar log R: equal-weight scalarisation, or ``exponent * log(QED * SA)`` (``scalar="qed_sa"``)."""
        if self.scalar == "pref":
            return super().log_reward(states)
        r = self.objectives(states)
        return (self.exponent * (r[:, 0] * r[:, 1]).clamp(min=self.floor).log()).float()
