"""N-grams: strings whose objectives are the counts of given n-grams (MOGFN-PC's synthetic task).

Objective ``i`` of a string ``x`` of length ``L`` is ``count_i(x) / (max_len - n_i + 1)``, the number of
(overlapping) occurrences of n-gram ``g_i`` divided by the most positions it could occupy, clamped
below at ``floor``.  Two n-grams that share letters compete for positions, so the objectives
trade off.  Strings are built by appending letters (any length ``min_len..max_len``); small
settings are exactly enumerable.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from gfn.env import EnvError
from gfn.envs.sequences.base import SequenceEnv
from gfn.preferences import MultiObjectiveReward


class NGramReward(MultiObjectiveReward):
    """``[B, k]`` log of the normalised counts of each n-gram (partial strings count what they hold)."""

    def __init__(self, ngrams: Sequence[Sequence[int]], max_len: int, names: Sequence[str], floor: float = 1e-3):
        if len(ngrams) < 2:
            raise EnvError(f"N-grams needs at least 2 n-grams, got {len(ngrams)}")
        if any(not 1 <= len(g) <= max_len for g in ngrams):
            raise EnvError(f"every n-gram must have 1..max_len={max_len} letters")
        self.ngrams = [torch.tensor(list(g), dtype=torch.long) for g in ngrams]
        self.max_len, self.floor = int(max_len), float(floor)
        self.objective_names = tuple(names)

    def counts(self, states: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` occurrence counts (windows containing padding never match)."""
        out = []
        for g in self.ngrams:
            n = g.numel()
            win = states.unfold(1, n, 1)  # [B, L - n + 1, n]
            out.append((win == g.to(states.device)).all(-1).sum(1))
        return torch.stack(out, 1)

    def log_rewards(self, states: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` log of ``max(count / positions, floor)``."""
        pos = torch.tensor([self.max_len - g.numel() + 1 for g in self.ngrams], dtype=torch.float64, device=states.device)
        return (self.counts(states).double() / pos).clamp(min=self.floor).log().float()


class NGrams(SequenceEnv):
    """Strings over ``alphabet`` of length ``min_len..max_len`` scored by n-gram counts (default:
    ``AB`` and ``CD`` over ``ABCD``, length 8: the front trades AB-pairs for CD-pairs)."""

    def __init__(self, ngrams: Sequence[str] | str = ("AB", "CD"), alphabet: str = "ABCD", max_len: int = 8,
                 min_len: Optional[int] = None, floor: float = 1e-3, device: str | torch.device = "cpu"):
        grams = [g.strip() for g in (ngrams.split(",") if isinstance(ngrams, str) else ngrams) if g.strip()]
        letters = list(alphabet)
        if len(set(letters)) != len(letters):
            raise EnvError(f"alphabet {alphabet!r} repeats a letter")
        bad = [g for g in grams if any(ch not in letters for ch in g)]
        if bad:
            raise EnvError(f"n-grams {bad} use letters outside the alphabet {alphabet!r}")
        if len(set(grams)) != len(grams):
            raise EnvError(f"n-grams must be distinct, got {grams}")
        reward = NGramReward([[letters.index(ch) for ch in g] for g in grams], max_len, grams, floor)
        super().__init__(len(letters), max_len, min_len=min_len, mdp="append", reward=reward, alphabet=letters,
                         device=device)
        self.ngrams = grams
