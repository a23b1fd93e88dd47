"""Multi-TF TFBind8: 8-mers scored by two or three transcription factors' PBM tables.

Objective ``i`` of a sequence is its min-max normalised E-score under TF ``i`` (over all 65,536
8-mers), clamped below at ``floor``; SIX6 comes from ``tfbind8/`` and the others from ``tf8mers/``
of the data root (plain or gzipped tables; the copy shipped with the library by default, see
:func:`gfn.envs.sequences.data.data_file`).
The MDP and reference data are those of :class:`gfn.envs.sequences.TFBind8`, so the task is
exactly enumerable: exact Pareto front and per-preference targets.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import torch

from gfn.env import EnvError
from gfn.envs.sequences.data import data_file, full_code, open_text
from gfn.envs.sequences.tfbind8 import ALPHABET, TABLE, TFBind8
from gfn.preferences import MultiObjectiveReward

#: the twelve extra tables shipped in ``tf8mers/`` (with SIX6 from ``tfbind8/``)
TRANSCRIPTION_FACTORS = ("SIX6", "ARX", "CRX", "EGR2", "FOXC1", "HOXD13", "KLF1", "NR2E3", "PAX6", "PITX2",
                         "POU3F4", "VSX1", "WT1")
DEFAULT_TFS = ("SIX6", "PAX6")


def tf_table_path(data_dir: Optional[str], tf: str) -> Path:
    """Path of the PBM table of transcription factor ``tf`` under the data root."""
    tf = tf.upper()
    if tf not in TRANSCRIPTION_FACTORS:
        raise EnvError(f"unknown transcription factor {tf!r}; known: {', '.join(TRANSCRIPTION_FACTORS)}")
    rel = TABLE if tf == "SIX6" else f"tf8mers/{tf}_REF_R1_8mers.tsv.gz"
    return data_file(data_dir, rel, "TFBind8Multi")


def _codes(words: Sequence[str]) -> torch.Tensor:
    lut = torch.full((256,), -1, dtype=torch.long)
    for i, ch in enumerate(ALPHABET):
        lut[ord(ch)] = i
    raw = torch.tensor([list(w.encode("ascii")) for w in words], dtype=torch.long)
    tok = lut[raw]
    if bool((tok < 0).any()) or raw.shape[1] != 8:
        raise EnvError("PBM table holds a word that is not an 8-mer over ACGT")
    return full_code(tok, 4)


@lru_cache(maxsize=16)
def load_tf_escores(path: str) -> torch.Tensor:
    """E-scores of all 65,536 8-mers from a PBM table (plain or ``.gz``), float64 by base-4 code."""
    with open_text(path) as f:
        header = f.readline()
        if "E-score" not in header:
            raise EnvError(f"{path}: expected a header with an 'E-score' column, got {header.strip()!r}")
        rows = [ln.split("\t") for ln in f if ln.strip()]
    fwd, rev = _codes([r[0] for r in rows]), _codes([r[1] for r in rows])
    val = torch.tensor([float(r[2]) for r in rows], dtype=torch.float64)
    e = torch.full((4 ** 8,), float("nan"), dtype=torch.float64)
    e[fwd] = val
    e[rev] = val
    if bool(torch.isnan(e).any()):
        raise EnvError(f"{path}: {int(torch.isnan(e).sum())} of 65,536 8-mers have no E-score")
    return e


class TFMultiReward(MultiObjectiveReward):
    """``[B, k]`` log of the normalised E-scores of full 8-mers (table lookup)."""

    def __init__(self, tables: torch.Tensor, names: Sequence[str]):
        if tables.dim() != 2 or tables.shape[1] != 4 ** 8 or tables.shape[0] != len(names):
            raise EnvError(f"need one 65,536-entry table per objective, got {tuple(tables.shape)} for {list(names)}")
        self.log_tables = tables.log().float().t().contiguous()  # [65536, k]
        self.objective_names = tuple(names)

    def log_rewards(self, states: torch.Tensor) -> torch.Tensor:
        """Lookup by base-4 code; loud error for sequences that are not full length."""
        if bool((states < 0).any()):
            i = int((states < 0).any(1).nonzero()[0, 0])
            raise EnvError(f"TFMultiReward: reward asked for an incomplete sequence {states[i].tolist()} (batch position {i})")
        return self.log_tables.to(states.device)[full_code(states, 4)]


class TFBind8Multi(TFBind8):
    """TFBind8's MDP with the E-scores of ``tfs`` (2 or 3 transcription factors) as objectives."""

    def __init__(self, tfs: Sequence[str] | str = DEFAULT_TFS, data_dir: Optional[str] = None, mdp: str = "append",
                 floor: float = 1e-3, device: str | torch.device = "cpu"):
        names = [t.strip().upper() for t in (tfs.split(",") if isinstance(tfs, str) else tfs)]
        if not 2 <= len(names) <= 3 or len(set(names)) != len(names):
            raise EnvError(f"TFBind8Multi needs 2 or 3 distinct transcription factors, got {names}")
        if not 0 < floor < 1:
            raise EnvError(f"floor must be in (0, 1), got {floor}")
        super().__init__(data_dir=data_dir, mdp=mdp, device=device)
        cols = []
        for tf in names:
            e = load_tf_escores(str(tf_table_path(data_dir, tf)))
            cols.append(((e - e.min()) / (e.max() - e.min())).clamp(min=floor))
        self.reward = TFMultiReward(torch.stack(cols), names)
        self.log_reward_table = None  # the single-objective table of TFBind8 does not apply
