"""Synthetic accessibility (SA) score from RDKit's ``Contrib/SA_Score`` (Ertl & Schuffenhauer 2009).

RDKit ships the scorer (``sascorer.py``) and its fragment-score table ``fpscores.pkl.gz``.
The table is a pickle, which we do not unpickle: :func:`read_fragment_scores` decodes it
with :mod:`pickletools` as plain data, accepting only the opcodes that build lists of ints
and floats (anything else is rejected), and hands the table to RDKit's scorer so that
``sascorer.readFragmentScores`` (which calls ``pickle.load``) never runs.
"""

from __future__ import annotations

import gzip
import math
import os
import pickletools
from typing import Optional

_ALLOWED = {"PROTO", "FRAME", "MARK", "LIST", "EMPTY_LIST", "APPEND", "APPENDS", "INT", "BININT", "BININT1",
            "BININT2", "LONG", "LONG1", "FLOAT", "BINFLOAT", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "STOP"}
_scorer = None
#: fragment contributions of RDKit's table lie in about [-3.2, 2.9]; anything far outside is a damaged file
SCORE_RANGE = (-10.0, 10.0)


def fragment_scores_path() -> str:
    """Location of RDKit's ``fpscores.pkl.gz``."""
    from rdkit.Chem import RDConfig
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "fpscores.pkl.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"RDKit's SA_Score fragment table is missing: {path} (reinstall rdkit from PyPI)")
    return path


def read_fragment_scores(path: Optional[str] = None) -> dict:
    """Fragment id -> score table, decoded from the gzip'd list-of-lists data without unpickling."""
    data = gzip.open(path or fragment_scores_path()).read()
    stack: list = []
    marks: list[int] = []
    result = None
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name not in _ALLOWED:
            raise ValueError(f"unexpected opcode {name} in the SA_Score fragment table; refusing to decode it")
        if name == "MARK":
            marks.append(len(stack))
        elif name == "LIST":
            m = marks.pop()
            items = stack[m:]
            del stack[m:]
            stack.append(items)
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "APPEND":
            v = stack.pop()
            stack[-1].append(v)
        elif name == "APPENDS":
            m = marks.pop()
            items = stack[m:]
            del stack[m:]
            stack[-1].extend(items)
        elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "FLOAT", "BINFLOAT"):
            stack.append(arg)
        elif name == "STOP":
            result = stack.pop()
    if not isinstance(result, list):
        raise ValueError("the SA_Score fragment table did not decode to a list")
    where = path or fragment_scores_path()
    table: dict = {}
    first_row: dict = {}
    for i, row in enumerate(result):
        if not isinstance(row, list) or len(row) < 2:
            raise ValueError(f"{where}, row {i}: expected [score, fragment ids...], got {row!r:.80}")
        score = float(row[0])
        if not math.isfinite(score) or not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
            raise ValueError(f"{where}, row {i}: fragment score {score!r} is "
                             f"{'not finite' if not math.isfinite(score) else f'outside the plausible range {SCORE_RANGE}'}")
        for frag in row[1:]:
            frag = int(frag)
            if frag in table and table[frag] != score:
                raise ValueError(f"{where}, row {i}: fragment {frag} has score {score} but row {first_row[frag]} "
                                 f"gives it {table[frag]} (conflicting duplicates)")
            table[frag] = score
            first_row.setdefault(frag, i)
    return table


def _get_scorer():
    global _scorer
    if _scorer is None:
        from rdkit.Contrib.SA_Score import sascorer  # RDKit's own implementation
        sascorer._fscores = read_fragment_scores()
        _scorer = sascorer
    return _scorer


def sa_score(mol) -> float:
    """SA score of an RDKit molecule: 1 (easy to make) .. 10 (hard)."""
    return float(_get_scorer().calculateScore(mol))
