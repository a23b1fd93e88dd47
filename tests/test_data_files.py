"""Data files: root resolution (data_dir > GFN_DATA_DIR > packaged copy), plain/gz reading, the
packaged copies against the originals, and loaders refusing damaged tables with file and line."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch
from gfn.envs.sequences import QM9Str, TFBind8
from gfn.envs.sequences.data import (DATA_ENV_VAR, DataError, data_file, open_text, packaged_data_dir, read_lines,
                                     resolve_data_dir)
from gfn.envs.sequences.rna import RNABinding
from gfn.envs.sequences.tfbind8 import load_escores

from conftest import REPO

PACKAGED = packaged_data_dir()
SHARED = REPO.parent / "shared" / "data"
TABLE = "tfbind8/SIX6_REF_R1_8mers.tsv"


def _lines(rel: str) -> list[str]:
    with open_text(data_file(str(PACKAGED), rel, "test")) as f:
        return f.read().splitlines()


def _root(tmp_path: Path, name: str, files: dict) -> Path:
    """A data root holding the packaged tfbind8 files, with ``files`` (relpath -> lines) written plain."""
    root = tmp_path / name
    (root / "tfbind8").mkdir(parents=True)
    for f in (PACKAGED / "tfbind8").iterdir():
        shutil.copy(f, root / "tfbind8" / f.name)
    for rel, lines in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        for stale in (root / (rel + ".gz"), root / rel):
            stale.unlink(missing_ok=True)
        (root / rel).write_text("\n".join(lines) + "\n")
    return root


# ------------------------------------------------------------------ where the data comes from
def test_packaged_copy_is_the_default_and_overrides_win(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    assert resolve_data_dir(None)[0] == PACKAGED
    assert PACKAGED == REPO / "envs" / "data" and (PACKAGED / "PROVENANCE.md").is_file()
    modes = _lines("tfbind8/modes.txt")
    assert TFBind8().mode_states.shape == (len(modes), 8) == (328, 8)
    # $GFN_DATA_DIR beats the packaged copy, an explicit data_dir beats both
    env_root = _root(tmp_path, "env", {"tfbind8/modes.txt": modes[:5]})
    arg_root = _root(tmp_path, "arg", {"tfbind8/modes.txt": modes[:7]})
    monkeypatch.setenv(DATA_ENV_VAR, str(env_root))
    assert resolve_data_dir(None) == (env_root, f"${DATA_ENV_VAR}")
    assert TFBind8().mode_states.shape == (5, 8)
    assert TFBind8(str(arg_root)).mode_states.shape == (7, 8)
    # an explicit root without the file is an error naming it, not a silent fallback
    with pytest.raises(FileNotFoundError, match=r"rna/L14_RNA1_modes\.txt.*data_dir"):
        data_file(str(arg_root), "rna/L14_RNA1_modes.txt", "RNA")


def test_open_text_reads_plain_and_gzip_alike(tmp_path):
    (tmp_path / "a.txt").write_text("x\n\n y \n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("x\n\n y \n")
    assert read_lines(tmp_path / "a.txt") == read_lines(tmp_path / "b.txt.gz") == ["x", "y"]
    assert data_file(str(tmp_path), "b.txt", "t") == tmp_path / "b.txt.gz"        # gz found for a plain name
    (tmp_path / "c.tsv").write_text("z\n")
    assert data_file(str(tmp_path), "c.tsv.gz", "t") == tmp_path / "c.tsv"        # plain found for a .gz name


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/data beside the repository to compare with")
def test_packaged_files_are_exact_copies_of_the_originals():
    originals = sorted(p for p in SHARED.rglob("*") if p.is_file() and p.name != "README.md")
    assert originals
    for orig in originals:
        rel = orig.relative_to(SHARED).as_posix()
        packed = PACKAGED / (rel if rel.endswith(".gz") else rel + ".gz")
        assert packed.is_file(), f"{rel} is not shipped"
        raw = gzip.decompress(orig.read_bytes()) if rel.endswith(".gz") else orig.read_bytes()
        assert gzip.decompress(packed.read_bytes()) == raw, rel
    shipped = {p.relative_to(PACKAGED).as_posix() for p in PACKAGED.rglob("*.gz")}
    assert len(shipped) == len(originals)
    provenance = (PACKAGED / "PROVENANCE.md").read_text()
    for folder in ("tfbind8", "tf8mers", "qm9str", "rna", "phylo"):
        assert f"`{folder}/`" in provenance
    assert "Apache-2.0" in provenance and "MIT" in provenance


# ------------------------------------------------------------------ damaged tables are refused
def _table_with(tmp_path, name, edit) -> Path:
    lines = _lines(TABLE)
    edit(lines)
    return _root(tmp_path, name, {"tfbind8/SIX6_REF_R1_8mers.tsv": lines})


def _set_escore(lines, i, value):
    parts = lines[i].split("\t")
    parts[2] = value
    lines[i] = "\t".join(parts)


@pytest.mark.parametrize("name,edit,pattern", [
    ("inf", lambda ls: _set_escore(ls, 10, "inf"), r"line 11: E-score inf is not finite"),
    ("nan", lambda ls: _set_escore(ls, 3, "nan"), r"line 4: E-score nan is not finite"),
    ("huge", lambda ls: _set_escore(ls, 20, "1e300"), r"line 21: E-score 1e\+300 is outside the plausible range"),
    ("text", lambda ls: _set_escore(ls, 5, "high"), r"line 6: E-score 'high' is not a number"),
    ("short", lambda ls: ls.__setitem__(7, ls[7].split("\t")[0]), r"line 8: expected at least 3 tab-separated"),
    ("letter", lambda ls: ls.__setitem__(9, "AAAAAAAX" + ls[9][8:]), r"line 10: 'AAAAAAAX' is not an 8-mer"),
    ("clash", lambda ls: ls.append(ls[1].split("\t")[0] + "\tCCCCCCCC\t0.1"), r"line 32898: 8-mer \w+ has value 0.1"
                                                                               r" but line 2 gives it"),
    ("missing", lambda ls: ls.pop(100), r"1 of 65,536 8-mers have no E-score|2 of 65,536"),
])
def test_tfbind8_table_damage_names_file_and_line(tmp_path, name, edit, pattern):
    root = _table_with(tmp_path, name, edit)
    with pytest.raises(DataError, match=pattern) as e:
        TFBind8(str(root))
    assert str(root / TABLE) in str(e.value)


def test_identical_duplicate_rows_are_accepted(tmp_path):
    root = _table_with(tmp_path, "dup", lambda ls: ls.append(ls[1]))
    assert torch.equal(load_escores(str(root / TABLE)), load_escores(str(data_file(None, TABLE, "t"))))


@pytest.mark.parametrize("bad,pattern", [
    ("ACGTACG", r"line 4: 'ACGTACG' has 7 letters, expected 8"),   # a short line used to become a wrong mode
    ("ACGTACGN", r"line 4: 'ACGTACGN' has letter\(s\) 'N' outside the alphabet ACGT"),
    (None, r"line 4: .* is listed twice \(first on line 1\)"),
])
def test_short_or_foreign_mode_lines_are_errors(tmp_path, bad, pattern):
    modes = _lines("tfbind8/modes.txt")[:10]
    modes.insert(3, modes[0] if bad is None else bad)
    root = _root(tmp_path, "modes", {"tfbind8/modes.txt": modes})
    with pytest.raises(DataError, match=pattern) as e:
        TFBind8(str(root))
    assert "modes.txt" in str(e.value)


def test_qm9str_and_rna_files_are_checked(tmp_path):
    rows = _lines("qm9str/rewards.tsv.gz")
    bad = list(rows)
    bad[6] = bad[6].split("\t")[0] + "\t-inf"
    root = _root(tmp_path, "q1", {"qm9str/rewards.tsv": bad})
    with pytest.raises(DataError, match=r"rewards\.tsv, line 7: proxy -inf is not finite"):
        QM9Str(str(root))
    clash = rows + [rows[2].split("\t")[0] + "\t99.0"]
    root = _root(tmp_path, "q2", {"qm9str/rewards.tsv": clash})
    with pytest.raises(DataError, match=rf"line {len(clash)}: string '\w+' has value 99.0 but line 3 gives it"):
        QM9Str(str(root))
    short = rows[:1] + [rows[1][:4] + rows[1][5:]] + rows[2:]
    root = _root(tmp_path, "q3", {"qm9str/rewards.tsv": short})
    with pytest.raises(DataError, match=r"line 2: '\w{4}' is not a string of 5 letters"):
        QM9Str(str(root))
    pytest.importorskip("RNA")
    modes = _lines("rna/L14_RNA1_modes.txt")
    root = _root(tmp_path, "r", {"rna/L14_RNA1_modes.txt": modes[:2] + [modes[2][:13]]})
    with pytest.raises(DataError, match=r"L14_RNA1_modes\.txt, line 3: .* has 13 letters, expected 14"):
        RNABinding("L14_RNA1", str(root))


@pytest.mark.parametrize("rows,pattern", [
    ([[1.5, 3, 4], [float("inf"), 5]], r"row 1: fragment score inf is not finite"),
    ([[1.5, 3, 4], [1e300, 5]], r"row 1: fragment score 1e\+300 is outside the plausible range"),
    ([[1.5, 3, 4], [-0.5, 6, 4]], r"row 1: fragment 4 has score -0.5 but row 0 gives it 1.5 \(conflicting"),
    ([[1.5, 3, 4], [2.0]], r"row 1: expected \[score, fragment ids...\]"),
])
def test_sa_score_fragment_table_is_checked(tmp_path, rows, pattern):
    """The molecules' SA-score table (decoded without unpickling) is checked like the other tables."""
    import pickle

    from gfn.envs.molecules.sascore import read_fragment_scores
    path = tmp_path / "fpscores.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(rows, protocol=2)))
    with pytest.raises(ValueError, match=pattern):
        read_fragment_scores(str(path))
    ok = tmp_path / "ok.pkl.gz"
    ok.write_bytes(gzip.compress(pickle.dumps([[1.5, 3, 4], [1.5, 4], [-0.5, 5]], protocol=2)))
    assert read_fragment_scores(str(ok)) == {3: 1.5, 4: 1.5, 5: -0.5}
