"""Molecule rewards computed offline with RDKit alone: QED, SA score, logP, molecular weight.

Reward kinds (all in [0, 1] before the exponent):

* ``qed_sa`` (default): ``QED * (10 - SA) / 9`` — drug-likeness times normalised synthetic accessibility;
* ``qed``: QED;  ``sa``: ``(10 - SA) / 9``;
* ``logp``: ``exp(-((logP - logp_target) / logp_width)^2)``;
* ``mw``: ``exp(-((MW - mw_target) / mw_width)^2)``.

``log R = exponent * log(max(score, min_reward))``: the exponent (beta) sharpens the target
distribution towards high scores; the floor keeps log R finite.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import torch

from gfn.env import Reward

KINDS = ("qed_sa", "qed", "sa", "logp", "mw")


def normalized_sa(sa: float) -> float:
    """Map an SA score (1 easy .. 10 hard) to [0, 1] (1 = easiest)."""
    return (10.0 - sa) / 9.0


def mol_properties(mol, smiles: Optional[str] = None) -> dict:
    """QED, SA score, Crippen logP and molecular weight of an RDKit molecule, plus its SMILES."""
    from rdkit import Chem
    from rdkit.Chem import QED

    from gfn.envs.molecules.sascore import sa_score
    qp = QED.properties(mol)  # ALOGP (Crippen) and MW are among QED's descriptors: compute them once
    return {"smiles": smiles or Chem.MolToSmiles(mol), "qed": float(QED.qed(mol, qedProperties=qp)), "sa": sa_score(mol),
            "logp": float(qp.ALOGP), "mw": float(qp.MW)}


class MoleculeReward(Reward):
    """Reward on molecular graph states (see module docstring); caches properties by SMILES."""

    def __init__(self, kind: str = "qed_sa", exponent: float = 1.0, min_reward: float = 1e-4,
                 logp_target: float = 2.5, logp_width: float = 2.0, mw_target: float = 350.0,
                 mw_width: float = 100.0, cache_size: int = 500_000):
        if kind not in KINDS:
            raise ValueError(f"unknown molecule reward kind {kind!r}; choose from {', '.join(KINDS)}")
        if exponent <= 0 or not 0 < min_reward <= 1:
            raise ValueError(f"need exponent > 0 and 0 < min_reward <= 1, got {exponent}, {min_reward}")
        self.kind, self.exponent, self.min_reward = kind, float(exponent), float(min_reward)
        self.logp_target, self.logp_width = logp_target, logp_width
        self.mw_target, self.mw_width = mw_target, mw_width
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()

    def score(self, props: Optional[dict]) -> float:
        """Score in [0, 1] of one molecule's properties (0 for an invalid molecule)."""
        if props is None:
            return 0.0
        if self.kind == "qed_sa":
            return props["qed"] * normalized_sa(props["sa"])
        if self.kind == "qed":
            return props["qed"]
        if self.kind == "sa":
            return normalized_sa(props["sa"])
        if self.kind == "logp":
            return math.exp(-((props["logp"] - self.logp_target) / self.logp_width) ** 2)
        return math.exp(-((props["mw"] - self.mw_target) / self.mw_width) ** 2)

    def mol_props(self, mol) -> Optional[dict]:
        """Cached :func:`mol_properties` with the score added (None for invalid molecules)."""
        if mol is None:
            return None
        from rdkit import Chem
        key = Chem.MolToSmiles(mol)
        hit = self._cache.get(key)
        if hit is None:
            hit = mol_properties(mol, key)
            hit["score"] = self.score(hit)
            self._cache[key] = hit
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return hit

    def properties(self, states) -> list[Optional[dict]]:
        """Properties of every state (``None`` for empty or unsanitisable graphs)."""
        from gfn.envs.molecules.convert import graphs_to_mols
        return [self.mol_props(m) for m in graphs_to_mols(states)]

    def log_reward(self, states) -> torch.Tensor:
        """``exponent * log(max(score, min_reward))`` per state."""
        scores = [0.0 if p is None else p["score"] for p in self.properties(states)]
        s = torch.tensor(scores, dtype=torch.float32, device=states.device).clamp(min=self.min_reward)
        return self.exponent * s.log()
