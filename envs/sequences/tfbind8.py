"""TFBind8: length-8 DNA sequences scored by the SIX6 PBM E-score table.

Reward of the local-search / logit-scaling papers: ``r(x)`` = min-max normalised E-score over
all 65,536 8-mers (``r`` in [0, 1]); ``R(x) = 10 * max(r, 1e-3)^3`` (so max R = 10).
Alphabet ``ACGT``.  Each table row gives the E-score of an 8-mer and of its reverse complement.
``modes.txt`` holds the 328 reference modes.  Enumerable: exact metrics are available.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import torch
from gfn.envs.sequences.base import SequenceEnv
from gfn.envs.sequences.data import (DataError, LookupReward, check_duplicates, check_values, data_file, full_code,
                                     open_text, read_sequences)


ALPHABET = "ACGT"
TABLE = "tfbind8/SIX6_REF_R1_8mers.tsv"
MODES = "tfbind8/modes.txt"
MAX_REWARD = 10.0
EXPONENT = 3.0
R_MIN = 1e-3


def _code(s: str) -> int:
    v = 0
    for ch in s:
        v = 4 * v + ALPHABET.index(ch)
    return v


def _decode(code: int) -> str:
    return "".join(ALPHABET[(code >> (2 * (7 - i))) & 3] for i in range(8))


#: PBM E-scores lie in [-0.5, 0.5] by definition (a rank statistic); anything else is a broken table
E_SCORE_RANGE = (-0.5, 0.5)


@lru_cache(maxsize=4)
def load_escores(path: str) -> torch.Tensor:
    """E-score of all 65,536 8-mers (float64, indexed by base-4 code with A,C,G,T = 0..3).

    Reads any PBM 8-mer table (plain or gzipped; columns 8-mer, reverse complement, E-score, ...).
    Malformed lines, foreign letters, non-finite or out-of-range E-scores, an 8-mer given two
    different E-scores and 8-mers left without a score raise :class:`DataError` naming the line.
    """
    codes, vals, lines = [], [], []
    with open_text(path) as f:
        header = f.readline()
        if "E-score" not in header:
            raise DataError(f"{path}: expected a header with an 'E-score' column, got {header.strip()!r}")
        for lineno, line in enumerate(f, 2):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 3:
                raise DataError(f"{path}, line {lineno}: expected at least 3 tab-separated columns "
                                f"(8-mer, reverse complement, E-score), got {len(parts)}: {line.strip()!r}")
            for kmer in parts[:2]:
                if len(kmer) != 8 or set(kmer) - set(ALPHABET):
                    raise DataError(f"{path}, line {lineno}: {kmer!r} is not an 8-mer over {ALPHABET}")
            try:
                val = float(parts[2])
            except ValueError:
                raise DataError(f"{path}, line {lineno}: E-score {parts[2]!r} is not a number") from None
            codes += [_code(parts[0]), _code(parts[1])]
            vals += [val, val]
            lines += [lineno, lineno]
    values = torch.tensor(vals, dtype=torch.float64)
    keys = torch.tensor(codes, dtype=torch.long)
    check_values(values, lines, path, "E-score", *E_SCORE_RANGE)
    check_duplicates(keys, values, lines, path, describe=lambda c: f"8-mer {_decode(c)}")
    e = torch.full((4 ** 8,), float("nan"), dtype=torch.float64)
    e[keys] = values
    if torch.isnan(e).any():
        missing = _decode(int(torch.isnan(e).nonzero()[0, 0]))
        raise DataError(f"{path}: {int(torch.isnan(e).sum())} of 65,536 8-mers have no E-score (e.g. {missing})")
    return e


def tfbind8_log_rewards(escores: torch.Tensor) -> torch.Tensor:
    """log R for all 8-mers from their E-scores (README transform, max R = 10)."""
    lo, hi = float(escores.min()), float(escores.max())
    if not hi > lo:
        raise DataError(f"all 8-mers have the same E-score {lo}: the table cannot define a reward")
    r = (escores - lo) / (hi - lo)
    return math.log(MAX_REWARD) + EXPONENT * r.clamp(min=R_MIN).log()


class TFBind8(SequenceEnv):
    """TFBind8 task: 8-mers over ACGT, table reward, 328 reference modes (default MDP: append)."""

    def __init__(self, data_dir: Optional[str] = None, mdp: str = "append", device: str | torch.device = "cpu"):
        table = tfbind8_log_rewards(load_escores(str(data_file(data_dir, TABLE, "TFBind8"))))
        modes = read_sequences(data_file(data_dir, MODES, "TFBind8"), ALPHABET, 8)
        super().__init__(4, 8, 8, mdp=mdp, reward=LookupReward(table, 4, 8), alphabet=ALPHABET, device=device)
        self.log_reward_table = table
        self.mode_states = self.from_strings(modes)

    def mode_codes(self) -> torch.Tensor:
        """Base-4 codes of the reference modes."""
        return full_code(self.mode_states, 4)
