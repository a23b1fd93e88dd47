"""Alignments for the phylogenetic environment: FASTA reading, character encoding, site patterns.

An alignment is read as plain text (never pickles).  Each character becomes a bit mask over
the alphabet (Fitch sets): ``A C G T`` one bit each, ``N ?`` every nucleotide, and the gap
``-`` either a fifth state (gfnx's ``DNA_WITH_GAP`` encoding, the default for parsimony) or
missing data (every nucleotide; the usual choice for likelihoods).  Identical columns are
merged into *site patterns* with integer weights, which changes neither parsimony scores nor
likelihoods and shrinks DS1 from 1949 columns to 934 patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from gfn.env import EnvError

#: gfnx's per-dataset offsets C for the parsimony reward R = exp((C - M) / alpha), alpha = 4
PARSIMONY_C = {"DS1": 5800.0, "DS2": 8000.0, "DS3": 8800.0, "DS4": 3500.0, "DS5": 2300.0,
               "DS6": 2300.0, "DS7": 12500.0, "DS8": 2800.0}
#: published marginal log-likelihoods (PhyloGFN README, continuous branch lengths; MrBayes DS1 -7108.42)
PHYLOGFN_MLL = {"DS1": -7108.4, "DS2": -26367.7, "DS3": -33735.1, "DS4": -13329.9, "DS5": -8214.4,
                "DS6": -6724.2, "DS7": -37331.9, "DS8": -8650.5}

_NUC = {"A": 0b0001, "C": 0b0010, "G": 0b0100, "T": 0b1000, "U": 0b1000}


@dataclass
class Alignment:
    """Site patterns of an alignment: ``codes[taxon, pattern]`` bit masks and ``weights[pattern]``."""

    names: list
    codes: torch.Tensor      # [n_taxa, n_patterns] uint8 Fitch sets
    weights: torch.Tensor    # [n_patterns] float64 column counts
    n_states: int            # 4 (gap = missing) or 5 (gap = own state)
    n_sites: int             # columns of the original alignment

    @property
    def n_taxa(self) -> int:
        """Number of sequences."""
        return len(self.names)


def read_fasta(path) -> tuple[list, list]:
    """Names and sequences of a FASTA file, plain or gzipped (upper-cased; all sequences must have one length)."""
    from gfn.envs.sequences.data import open_text  # plain or gzipped (the packaged copy)
    names, seqs = [], []
    with open_text(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                names.append(line[1:].strip())
                seqs.append([])
            elif not seqs:
                raise EnvError(f"{path}: sequence data before the first '>' header")
            else:
                seqs[-1].append(line.upper())
    seqs = ["".join(s) for s in seqs]
    if not seqs:
        raise EnvError(f"{path}: no sequences found")
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise EnvError(f"{path}: sequences are not aligned (lengths {sorted(lengths)})")
    return names, seqs


def encode(seqs: list, gap_as_state: bool) -> torch.Tensor:
    """Bit-mask codes [n_taxa, n_sites] uint8 of aligned sequences (see module docstring)."""
    table = torch.zeros(256, dtype=torch.uint8)
    known = torch.zeros(256, dtype=torch.bool)
    for ch, bits in _NUC.items():
        table[ord(ch)], known[ord(ch)] = bits, True
    for ch in "N?":
        table[ord(ch)], known[ord(ch)] = 0b1111, True
    table[ord("-")], known[ord("-")] = (0b10000 if gap_as_state else 0b1111), True
    raw = torch.tensor([list(s.encode("ascii", errors="replace")) for s in seqs], dtype=torch.long)
    if not bool(known[raw].all()):
        bad = sorted({chr(int(c)) for c in raw[~known[raw]].unique()})
        raise EnvError(f"alignment holds characters outside ACGTU N ? -: {bad}")
    return table[raw]


def compress(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique columns of ``codes`` (in first-seen order is not needed: sorted) and their counts."""
    cols, counts = torch.unique(codes.t().contiguous(), dim=0, return_counts=True)
    return cols.t().contiguous(), counts.double()


def load_alignment(dataset: str = "DS1", taxa: int = 0, gap_as_state: bool = True,
                   data_dir: Optional[str] = None, path: Optional[str] = None) -> Alignment:
    """Site patterns of ``phylo/<dataset>.fasta`` under the data root (or of ``path``).

    ``taxa > 0`` keeps the first ``taxa`` sequences (a subset for exact metrics)."""
    if path is None:
        from gfn.envs.sequences.data import data_file
        path = data_file(data_dir, f"phylo/{dataset}.fasta", "phylo")
    names, seqs = read_fasta(path)
    if taxa:
        if not 2 <= taxa <= len(names):
            raise EnvError(f"taxa must be in [2, {len(names)}] for {path}, got {taxa}")
        names, seqs = names[:taxa], seqs[:taxa]
    codes, weights = compress(encode(seqs, gap_as_state))
    return Alignment(names, codes, weights, 5 if gap_as_state else 4, len(seqs[0]))
