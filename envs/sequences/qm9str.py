"""QM9str: strings of 5 blocks over 11 letters (``0123456789a``), built by prepend/append.

Reward of the papers: ``R(x) = scale * max(proxy, 1e-3)^5`` with ``scale`` such that max R = 100
(proxy from ``qm9str/rewards.tsv.gz``).  ``modes.txt``: the top 0.5% (805) strings.
Diversity uses molecules: each letter is a fragment (``blocks.json``: SMILES and two attachment
atoms); consecutive blocks are joined by a single bond from the right attachment of one to the
left attachment of the next.  1 - Tanimoto on Morgan fingerprints (radius 2, 2048 bits) via RDKit.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Optional, Sequence

import torch
from gfn.envs.sequences.base import SequenceEnv
from gfn.envs.sequences.data import (DataError, LookupReward, check_duplicates, check_values, data_file, full_code,
                                     open_text, read_sequences)

from gfn.env import EnvError

ALPHABET = "0123456789a"
LENGTH = 5
REWARDS = "qm9str/rewards.tsv.gz"
MODES = "qm9str/modes.txt"
BLOCKS = "qm9str/blocks.json"
MAX_REWARD = 100.0
EXPONENT = 5.0
PROXY_MIN = 1e-3


#: plausible range of the proxy (the table spans about -2.8 .. 17.4); values outside are a broken file
PROXY_RANGE = (-100.0, 100.0)


@lru_cache(maxsize=4)
def load_proxy(path: str) -> torch.Tensor:
    """Proxy score of all 161,051 strings (float64, indexed by base-11 code).

    Malformed lines, strings that are not 5 letters of ``0123456789a``, non-finite or
    out-of-range proxies, a string given two different proxies and strings left without a value
    raise :class:`DataError` naming the file and line.
    """
    xs, vals, lines = [], [], []
    letters = set(ALPHABET)
    with open_text(path) as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if header[:2] != ["x", "proxy"]:
            raise DataError(f"{path}: expected columns 'x' and 'proxy', got {header}")
        for lineno, line in enumerate(f, 2):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 2:
                raise DataError(f"{path}, line {lineno}: expected 2 tab-separated columns (x, proxy), got {line.strip()!r}")
            x = parts[0]
            if len(x) != LENGTH or set(x) - letters:
                raise DataError(f"{path}, line {lineno}: {x!r} is not a string of {LENGTH} letters over {ALPHABET}")
            try:
                vals.append(float(parts[1]))
            except ValueError:
                raise DataError(f"{path}, line {lineno}: proxy {parts[1]!r} is not a number") from None
            xs.append(x)
            lines.append(lineno)
    values = torch.tensor(vals, dtype=torch.float64)
    codes = torch.tensor([int(x, 11) for x in xs], dtype=torch.long)  # 0..9a is exactly base-11 notation
    check_values(values, lines, path, "proxy", *PROXY_RANGE)
    check_duplicates(codes, values, lines, path, describe=lambda c: f"string {_decode(c)!r}")
    proxy = torch.full((11 ** LENGTH,), float("nan"), dtype=torch.float64)
    proxy[codes] = values
    if torch.isnan(proxy).any():
        missing = _decode(int(torch.isnan(proxy).nonzero()[0, 0]))
        raise DataError(f"{path}: {int(torch.isnan(proxy).sum())} of {11 ** LENGTH} strings have no proxy value "
                        f"(e.g. {missing!r})")
    return proxy


def _decode(code: int) -> str:
    out = []
    for _ in range(LENGTH):
        code, d = divmod(code, 11)
        out.append(ALPHABET[d])
    return "".join(reversed(out))


def qm9str_log_rewards(proxy: torch.Tensor) -> torch.Tensor:
    """log R for all strings (README transform, max R = 100)."""
    p = proxy.clamp(min=PROXY_MIN)
    return math.log(MAX_REWARD) + EXPONENT * (p.log() - math.log(float(p.max())))


class QM9Str(SequenceEnv):
    """QM9str task: 5 blocks over 11 letters, table reward, 805 modes (default MDP: prepend_append)."""

    def __init__(self, data_dir: Optional[str] = None, mdp: str = "prepend_append",
                 device: str | torch.device = "cpu"):
        table = qm9str_log_rewards(load_proxy(str(data_file(data_dir, REWARDS, "QM9str"))))
        modes = read_sequences(data_file(data_dir, MODES, "QM9str"), ALPHABET, LENGTH)
        super().__init__(11, LENGTH, LENGTH, mdp=mdp, reward=LookupReward(table, 11, LENGTH),
                         alphabet=ALPHABET, device=device)
        self.data_dir = data_dir
        self.log_reward_table = table
        self.mode_states = self.from_strings(modes)

    def mode_codes(self) -> torch.Tensor:
        """Base-11 codes of the reference modes."""
        return full_code(self.mode_states, 11)


class BlockMolecules:
    """Turns QM9str strings into RDKit molecules and Morgan fingerprints (needs ``rdkit``)."""

    def __init__(self, data_dir: Optional[str] = None, radius: int = 2, n_bits: int = 2048):
        try:
            from rdkit import Chem, RDLogger
            from rdkit.Chem import rdFingerprintGenerator
        except ImportError as e:  # pragma: no cover - exercised only without rdkit
            raise ImportError("QM9str diversity needs RDKit: pip install rdkit") from e
        RDLogger.DisableLog("rdApp.*")
        self._Chem = Chem
        with open_text(data_file(data_dir, BLOCKS, "QM9str")) as f:
            spec = json.load(f)
        self.blocks = [Chem.MolFromSmiles(spec["block_smi"][str(i)]) for i in range(len(ALPHABET))]
        self.attach = [tuple(spec["block_r"][str(i)]) for i in range(len(ALPHABET))]
        if any(m is None for m in self.blocks):
            raise EnvError(f"{BLOCKS}: a block SMILES could not be parsed")
        self._gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
        self._cache: dict = {}

    def molecule(self, s: str):
        """The molecule of one string (None if RDKit rejects it)."""
        Chem = self._Chem
        mol = Chem.RWMol()
        prev_right = None
        for ch in s:
            b = ALPHABET.index(ch)
            offset = mol.GetNumAtoms()
            mol.InsertMol(self.blocks[b])
            left, right = self.attach[b]
            if prev_right is not None:
                mol.AddBond(prev_right, offset + left, Chem.BondType.SINGLE)
            prev_right = offset + right
        try:
            out = mol.GetMol()
            Chem.SanitizeMol(out)
            return out
        except Exception:
            return None

    def smiles(self, s: str) -> Optional[str]:
        """Canonical SMILES of one string."""
        m = self.molecule(s)
        return None if m is None else self._Chem.MolToSmiles(m)

    def fingerprint(self, s: str):
        """Morgan bit vector of one string (cached)."""
        if s not in self._cache:
            m = self.molecule(s)
            self._cache[s] = None if m is None else self._gen.GetFingerprint(m)
        return self._cache[s]

    def distance_matrix(self, strings: Sequence[str]) -> torch.Tensor:
        """Pairwise 1 - Tanimoto similarity (float64 [K, K]); rows of invalid molecules are NaN."""
        from rdkit import DataStructs
        fps = [self.fingerprint(s) for s in strings]
        k = len(fps)
        d = torch.full((k, k), float("nan"), dtype=torch.float64)
        for i, fp in enumerate(fps):
            if fp is None:
                continue
            others = [f for f in fps if f is not None]
            idx = [j for j, f in enumerate(fps) if f is not None]
            sims = DataStructs.BulkTanimotoSimilarity(fp, others)
            d[i, idx] = 1.0 - torch.tensor(sims, dtype=torch.float64)
        return d
