"""Packaging: every package folder is declared, and the namespaces resolve."""

import re

from conftest import REPO


def declared_packages():
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r"^packages\s*=\s*\[(.*?)\]", text, re.M | re.S)
    return {s.strip().strip('"') for s in m.group(1).split(",") if s.strip()}


def test_every_package_folder_is_declared():
    mapping = {"gfn": "gfn", "envs": "gfn.envs", "objectives": "gfn.objectives"}
    found = set()
    for folder, ns in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([ns, *rel.parts]) if rel.parts else ns)
    missing = found - declared_packages()
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_namespaces_import():
    import gfn.envs
    import gfn.objectives
    assert "hypergrid" in gfn.envs.list_envs()
    assert {"tb", "db"} <= set(gfn.objectives.list_objectives())


# ---------------------------------------------------------------- issue 16: extras, name, data, wheel
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402

import pytest  # noqa: E402

from gfn.install_check import DIST_NAME, check_installation, foreign_owners  # noqa: E402


def _project():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_triton_only_in_the_kernels_extra():
    extras = _project()["project"]["optional-dependencies"]
    assert any(r.startswith("triton") for r in extras["kernels"])
    for name, reqs in extras.items():
        if name != "kernels":
            assert not any(r.lower().startswith("triton") for r in reqs), f"extra {name!r} pulls Triton"
    assert 'pip install -e ".[all,kernels]"' in (REPO / "README.md").read_text()


def test_distribution_name_is_ours_and_the_import_name_stays_gfn():
    project = _project()
    assert project["project"]["name"] == DIST_NAME == "gfnkit"      # PyPI's "gfn" is another project
    assert project["project"]["scripts"]["gfn"] == "gfn.cli:main"
    readme = (REPO / "README.md").read_text()
    assert "torchgfn and this library cannot share one environment" in readme and "`gfnkit`" in readme


def test_every_data_file_is_package_data():
    tool = _project()["tool"]["setuptools"]
    assert "gfn.envs.data" in tool["packages"]
    patterns = tool["package-data"]["gfn.envs.data"]
    root = REPO / "envs" / "data"
    files = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    assert len(files) >= 29
    for f in files:
        assert any(f.relative_to(root).match(pat) for pat in patterns), f"{f} would not be in the wheel"


def _fake_dist(root, name, version, summary, record=True):
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n")
    if record:
        (info / "RECORD").write_text(f"gfn/__init__.py,,\ngfn/gflownet/base.py,,\n{info.name}/METADATA,,\n")
    else:
        (info / "top_level.txt").write_text("gfn\n")


def test_import_refuses_a_gfn_package_shared_with_another_distribution(tmp_path):
    _fake_dist(tmp_path / "tg", "torchgfn", "2.4.1", "A torch implementation of GFlowNets")
    _fake_dist(tmp_path / "pypi", "gfn", "2.7.3", "an unrelated project", record=False)
    _fake_dist(tmp_path / "old", "gfn", "0.1.0", "Generative Flow Networks in PyTorch: batched environments, "
               "packed trajectories, a registry of objectives and one generic trainer.", record=False)
    _fake_dist(tmp_path / "ours", "gfnkit", "0.1.0", "ours")
    with pytest.raises(ImportError, match=r"also installed by torchgfn 2\.4\.1.*cannot share one environment"):
        check_installation([str(tmp_path / "tg")])
    assert foreign_owners([str(tmp_path / "pypi")]) == ["gfn 2.7.3"]
    assert foreign_owners([str(tmp_path / "old"), str(tmp_path / "ours")]) == []   # our own, old and new names
    # end to end: `import gfn` itself fails, with the message, when torchgfn is on the path
    code = "import gfn; print('imported')"
    bad = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(tmp_path / "tg")})
    assert bad.returncode != 0 and "ImportError" in bad.stderr and "torchgfn 2.4.1" in bad.stderr, bad.stderr
    ok = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "imported" in ok.stdout, ok.stderr


def test_wheel_carries_the_data_and_the_metadata(tmp_path):
    """Build the wheel from a copy of the sources (no network: the installed setuptools)."""
    pytest.importorskip("setuptools")  # not in every fresh venv (Python >= 3.12); .ci/wheel_smoke builds it anyway
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("gfn", "envs", "objectives"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                          "-w", str(tmp_path / "dist")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("gfnkit-")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = {n for n in names if n.startswith("gfn/envs/data/")}
    expected = {"gfn/envs/data/" + p.relative_to(src / "envs" / "data").as_posix()
                for p in (src / "envs" / "data").rglob("*") if p.is_file()}
    assert expected <= data and "gfn/envs/data/PROVENANCE.md" in data
    assert "gfn/envs/data/tfbind8/SIX6_REF_R1_8mers.tsv.gz" in data and "gfn/envs/data/phylo/DS1.fasta.gz" in data
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    triton = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist: triton")]
    assert triton and all('extra == "kernels"' in ln for ln in triton)
    assert sum(zipfile.ZipFile(wheel).getinfo(n).file_size for n in data) < 12_000_000
