"""RNA-binding (FLEXS L14_RNA1/2/3): length-14 RNA strings scored by ViennaRNA duplex energies.

``f(x) = E_duplex(target, x) / (E_duplex(revcomp(target), target) * 14 / len(target))`` (both
energies negative, so ``f > 0`` for binders); ``R(x) = scale * max(f, 1e-3)^8`` with ``scale``
chosen so that R = 10 at the largest ``f`` we measured for that target (:data:`F_MAX`).
Energies come from the ``viennarna`` package (pinned: :data:`VIENNARNA_VERSION`); they shift
slightly between versions.  Modes: RNA1 uses ``rna/L14_RNA1_modes.txt`` (336 strings); RNA2 and
RNA3 have no published mode file, so a sample counts as a mode when ``f(x) >= MODE_F_FRACTION *
F_MAX[target]`` (see docs/sequences.md for how the fraction was chosen).

Targets: the three 100-nt target RNAs of the FLEXS RNA-binding landscape registry.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import torch
from gfn.envs.sequences.base import SequenceEnv
from gfn.envs.sequences.data import data_file, full_code, read_sequences

from gfn.env import EnvError, Reward

ALPHABET = "ACGU"
LENGTH = 14
VIENNARNA_VERSION = "2.7.0"
MAX_REWARD = 10.0
EXPONENT = 8.0
F_MIN = 1e-3

TARGETS = {
    "L14_RNA1": "GAACGAGGCACAUUCCGGCUCGCCCGGCCCAUGUGAGCAUGGGCCGGACC"
                "CCGUCCGCGCGGGGCCCCCGCGCGGACGGGGGCGAGCCGGAAUGUGCCUC",
    "L14_RNA2": "GAGGCACAUUCCGGCUCGCCCCCGUCCGCGCGGGGGCCCCGCGCGGACGG"
                "GGUCCGGCCCGCGCGGGGCCCCCGCGCGGGAGCCGGAAUGUGCCUCGUUC",
    "L14_RNA3": "CCGGUGAUACUGUUAGUGGUCACGGUGCAUUUAUAGCGCUAAAGUACAGU"
                "CUUCCCCUGUUGAACGGCGCCAUUGCAUACAGGGCCAGCCGCGUAACGCC",
}

#: largest f measured per target with viennarna 2.7.0: max over the RNA1 reference modes (RNA1),
#: 20,000 uniform random strings and greedy single-site hill climbing from the best 200 of them
#: (``estimate_f_max(target, seed=0)``); R = 10 at this value.
F_MAX = {"L14_RNA1": 1.0545394628439608, "L14_RNA2": 1.0147455208498493, "L14_RNA3": 1.1164855552610655}

#: RNA2/RNA3: a sample is a mode when f >= MODE_F_FRACTION * F_MAX.  On RNA1 this rule keeps 147
#: of the 336 reference modes (their median f is 0.73 * F_MAX; the smallest 0.59 * F_MAX).
MODE_F_FRACTION = 0.75

RNA1_MODES = "rna/L14_RNA1_modes.txt"


def _rna():
    try:
        import RNA
    except ImportError as e:
        raise ImportError(f"the RNA-binding task needs ViennaRNA: pip install viennarna=={VIENNARNA_VERSION}") from e
    return RNA


def reverse_complement(seq: str) -> str:
    """Watson-Crick reverse complement of an RNA string."""
    comp = {"A": "U", "U": "A", "G": "C", "C": "G"}
    return "".join(comp[c] for c in reversed(seq))


class DuplexScore:
    """f(x) for one target, with a cache and evaluation counters (evaluations per second)."""

    def __init__(self, target: str):
        RNA = _rna()
        self._duplexfold = RNA.duplexfold
        self.target = target
        self.norm = RNA.duplexfold(reverse_complement(target), target).energy * LENGTH / len(target)
        self.cache: dict = {}
        self.n_evals = 0
        self.eval_seconds = 0.0

    def __call__(self, strings: Sequence[str]) -> list[float]:
        """f of each string (computed once per distinct string)."""
        todo = [s for s in dict.fromkeys(strings) if s not in self.cache]
        if todo:
            t0 = time.perf_counter()
            for s in todo:
                self.cache[s] = self._duplexfold(self.target, s).energy / self.norm
            self.eval_seconds += time.perf_counter() - t0
            self.n_evals += len(todo)
        return [self.cache[s] for s in strings]

    @property
    def evals_per_second(self) -> float:
        """ViennaRNA evaluations per second so far."""
        return self.n_evals / self.eval_seconds if self.eval_seconds > 0 else float("nan")


class RNABindingReward(Reward):
    """``log R = log 10 + 8 * (log max(f, 1e-3) - log f_max)``."""

    def __init__(self, score: DuplexScore, f_max: float):
        if not f_max > 0:
            raise EnvError(f"RNABindingReward needs f_max > 0, got {f_max}")
        self.score, self.f_max = score, float(f_max)

    def f(self, states: torch.Tensor) -> torch.Tensor:
        """Normalised binding score f of full-length states."""
        if (states < 0).any():
            raise EnvError("RNABindingReward: reward asked for an incomplete sequence")
        strings = ["".join(ALPHABET[t] for t in row) for row in states.tolist()]
        return torch.tensor(self.score(strings), dtype=torch.float64, device=states.device)

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        """log R of each state."""
        f = self.f(states).clamp(min=F_MIN)
        return (math.log(MAX_REWARD) + EXPONENT * (f.log() - math.log(self.f_max))).float()


class RNABinding(SequenceEnv):
    """RNA-binding task over ACGU, length 14, target ``L14_RNA1``/``L14_RNA2``/``L14_RNA3``."""

    def __init__(self, target: str = "L14_RNA1", data_dir: Optional[str] = None, mdp: str = "append",
                 f_max: Optional[float] = None, device: str | torch.device = "cpu"):
        if target not in TARGETS:
            raise EnvError(f"unknown RNA-binding target {target!r}; choose one of {', '.join(TARGETS)}")
        self.target_name = target
        self.score = DuplexScore(TARGETS[target])
        self.f_max = float(F_MAX[target] if f_max is None else f_max)
        super().__init__(4, LENGTH, LENGTH, mdp=mdp, reward=RNABindingReward(self.score, self.f_max),
                         alphabet=ALPHABET, device=device)
        if target == "L14_RNA1":
            modes = read_sequences(data_file(data_dir, RNA1_MODES, "RNA-binding L14_RNA1"), ALPHABET, LENGTH)
            self.mode_states = self.from_strings(modes)
            self.mode_log_reward_threshold = None
        else:
            self.mode_states = None
            thr = MODE_F_FRACTION * self.f_max
            self.mode_log_reward_threshold = math.log(MAX_REWARD) + EXPONENT * math.log(thr / self.f_max)

    def mode_codes(self) -> Optional[torch.Tensor]:
        """Base-4 codes of the reference modes (RNA1 only)."""
        return None if self.mode_states is None else full_code(self.mode_states, 4)


def estimate_f_max(target: str, n_random: int = 20_000, n_starts: int = 200, seed: int = 0,
                   extra: Sequence[str] = ()) -> tuple[float, str]:
    """Largest f found by random search plus greedy single-site hill climbing (used for F_MAX)."""
    import random
    rng = random.Random(seed)
    score = DuplexScore(TARGETS[target])
    pool = ["".join(rng.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(n_random)] + list(extra)
    fs = score(pool)
    starts = [s for _, s in sorted(zip(fs, pool), reverse=True)[:n_starts]]
    best_f, best = max(zip(fs, pool))
    for s in starts:
        cur, fc = s, score([s])[0]
        while True:
            nbrs = [cur[:i] + c + cur[i + 1:] for i in range(LENGTH) for c in ALPHABET if c != cur[i]]
            fn = score(nbrs)
            j = max(range(len(nbrs)), key=fn.__getitem__)
            if fn[j] <= fc:
                break
            cur, fc = nbrs[j], fn[j]
        if fc > best_f:
            best_f, best = fc, cur
    return best_f, best
