"""Locating and reading benchmark data files, and the table-lookup reward of TFBind8 and QM9str.

The data root (the folder holding ``tfbind8/``, ``qm9str/``, ``rna/``, ``tf8mers/``, ``phylo/``)
is resolved as: the explicit ``data_dir`` argument (``--data-dir``), else the environment
variable ``GFN_DATA_DIR``, else the copy shipped with the library (package ``gfn.envs.data``,
every file gzipped).  :func:`data_file` returns the path of a file under that root, accepting a
plain or a gzipped copy (``name`` or ``name.gz``), and :func:`open_text` opens either
transparently, so readers never care which one they got.  A missing file raises
:class:`FileNotFoundError` naming the file and how to point the library at it.

Readers check what they read (:func:`check_values`, :func:`check_duplicates`,
:func:`read_sequences`): non-finite or out-of-range values, conflicting duplicate keys and
malformed lines are refused with an error naming the file and the line.  Only plain text is
read (never pickles).
"""

from __future__ import annotations

import gzip
import io
import os
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import torch

from gfn.env import EnvError, Reward

DATA_ENV_VAR = "GFN_DATA_DIR"
#: the package that holds the shipped copy of the data
PACKAGED_DATA = "gfn.envs.data"


class DataError(EnvError):
    """A data file holds a value or line the task cannot use (the message names file and line)."""


def packaged_data_dir() -> Path:
    """Folder of the data shipped with the library (gzipped tables and ``PROVENANCE.md``)."""
    root = resources.files(PACKAGED_DATA)
    path = Path(str(root))
    if not path.is_dir():  # e.g. imported from a zip archive: no real folder to hand out
        raise FileNotFoundError(f"the packaged data ({PACKAGED_DATA}) is not a folder on disk ({root}); "
                                f"set {DATA_ENV_VAR} or pass data_dir=... to a copy of the data")
    return path


def resolve_data_dir(data_dir: Optional[str] = None) -> tuple[Path, str]:
    """The data root and where it came from: ``data_dir`` > ``$GFN_DATA_DIR`` > packaged copy."""
    if data_dir:
        return Path(data_dir), "data_dir / --data-dir"
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env), f"${DATA_ENV_VAR}"
    return packaged_data_dir(), "the data shipped with the library"


def data_file(data_dir: Optional[str], relpath: str, task: str) -> Path:
    """Path of ``relpath`` under the data root (``data_dir`` > ``$GFN_DATA_DIR`` > packaged copy).

    The file may be stored plain or gzipped: ``relpath``, ``relpath + '.gz'`` and (for a
    ``.gz`` relpath) the plain name are tried in that order; open the result with
    :func:`open_text`.  Raises :class:`FileNotFoundError` naming the file when none exists.
    """
    root, source = resolve_data_dir(data_dir)
    candidates = [relpath, relpath + ".gz"]
    if relpath.endswith(".gz"):
        candidates.append(relpath[:-3])
    for rel in candidates:
        path = root / rel
        if path.is_file():
            return path
    top = relpath.split("/")[0]
    raise FileNotFoundError(
        f"{task}: data file not found: {root / relpath} (or {relpath}.gz; data root {str(root)!r} from {source}); "
        f"pass data_dir=... / --data-dir or set {DATA_ENV_VAR} to the folder that contains {top}/, "
        f"or unset them to use the data shipped with the library")


def open_text(path) -> io.TextIOBase:
    """Open a data file for reading as UTF-8 text, gunzipping it when it is gzipped."""
    path = Path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_lines(path) -> list[str]:
    """Non-empty stripped lines of a (plain or gzipped) text file."""
    with open_text(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


def read_sequences(path, alphabet: str, length: int) -> list[str]:
    """Strings of one file, one per non-empty line, each exactly ``length`` letters of ``alphabet``.

    A short or long line, a foreign letter or a string listed twice raises :class:`DataError`
    naming the file and line (a short line would otherwise become a different, shorter object).
    """
    allowed = set(alphabet)
    seen: dict[str, int] = {}
    out = []
    with open_text(path) as f:
        for lineno, raw in enumerate(f, 1):
            s = raw.strip()
            if not s:
                continue
            if len(s) != length:
                raise DataError(f"{path}, line {lineno}: {s!r} has {len(s)} letters, expected {length}")
            bad = set(s) - allowed
            if bad:
                raise DataError(f"{path}, line {lineno}: {s!r} has letter(s) {''.join(sorted(bad))!r} "
                                f"outside the alphabet {alphabet}")
            if s in seen:
                raise DataError(f"{path}, line {lineno}: {s!r} is listed twice (first on line {seen[s]})")
            seen[s] = lineno
            out.append(s)
    if not out:
        raise DataError(f"{path}: no sequences in the file")
    return out


def check_values(values: torch.Tensor, line_numbers: Sequence[int], path, what: str,
                 low: float, high: float) -> None:
    """Refuse non-finite values or values outside ``[low, high]``, naming file, line and value."""
    bad = ~torch.isfinite(values) | (values < low) | (values > high)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        v = float(values[i])
        why = "is not finite" if not torch.isfinite(values[i]) else f"is outside the plausible range [{low}, {high}]"
        raise DataError(f"{path}, line {line_numbers[i]}: {what} {v!r} {why}")


def check_duplicates(keys: torch.Tensor, values: torch.Tensor, line_numbers: Sequence[int], path,
                     describe=str) -> None:
    """Refuse a key given twice with different values (same value twice is accepted), naming both lines."""
    order = torch.argsort(keys, stable=True)
    k, v = keys[order], values[order]
    clash = (k[1:] == k[:-1]) & (v[1:] != v[:-1])
    if bool(clash.any()):
        j = int(clash.nonzero()[0, 0])
        a, b = int(order[j]), int(order[j + 1])
        raise DataError(f"{path}, line {line_numbers[b]}: {describe(int(k[j]))} has value {float(v[j + 1])!r} "
                        f"but line {line_numbers[a]} gives it {float(v[j])!r} (conflicting duplicates)")


def full_code(states: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Base-``vocab_size`` integer of full sequences (first token most significant)."""
    L = states.shape[1]
    pw = vocab_size ** torch.arange(L - 1, -1, -1, device=states.device, dtype=torch.long)
    return (states * pw).sum(-1)


class LookupReward(Reward):
    """log R read from a table indexed by the base-V code of a full-length sequence."""

    def __init__(self, log_table: torch.Tensor, vocab_size: int, length: int):
        if log_table.numel() != vocab_size ** length:
            raise EnvError(f"reward table has {log_table.numel()} entries, expected {vocab_size}^{length}")
        self.log_table, self.V, self.L = log_table, vocab_size, length

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        """Table lookup; loud error for sequences that are not full length."""
        if (states < 0).any():
            i = int((states < 0).any(1).nonzero()[0, 0])
            raise EnvError(f"{type(self).__name__}: reward asked for an incomplete sequence {states[i].tolist()} "
                           f"(batch position {i}); rewards are defined on length-{self.L} sequences")
        table = self.log_table.to(states.device)
        return table[full_code(states, self.V)].float()
