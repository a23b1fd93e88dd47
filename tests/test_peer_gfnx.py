"""The gfnx peer runner (benchmarks/peer_gfnx.py) and compare_peers's gfnx detection.

gfnx lives in an interpreter of its own (``$GFN_GFNX_PYTHON``, else ``~/.cache/gfn-peers/gfnxenv/bin/python``);
the runner test skips cleanly when none imports jax and gfnx (as on CI).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
_spec = importlib.util.spec_from_file_location("compare_peers", os.path.join(BENCH, "compare_peers.py"))
compare_peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_peers)


@functools.lru_cache(maxsize=None)
def _gfnx_python() -> str | None:
    """The gfnx interpreter to test with (compare_peers' default), or None."""
    cand = compare_peers.default_gfnx_python()
    return cand if compare_peers.gfnx_available(cand) else None


def test_gfnx_unavailable_for_missing_interpreter(tmp_path):
    """A path that does not exist (or no path) is never reported as a usable gfnx interpreter."""
    assert compare_peers.gfnx_available(str(tmp_path / "no-such-python")) is False
    assert compare_peers.gfnx_available(None) is False
    assert compare_peers.gfnx_available("") is False


def test_gfnx_unavailable_when_import_fails(tmp_path):
    """An interpreter that cannot import jax and gfnx is reported unavailable."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    assert compare_peers.gfnx_available(str(fake)) is False


def test_peer_cmd_uses_given_interpreter():
    """The gfnx job runs peer_gfnx.py with the gfnx interpreter, the others with this one."""
    class A:
        iterations, warmup, seed = 3, 1, 0
    cmd = compare_peers.peer_cmd("peer_gfnx.py", "hypergrid", {"ndim": 2, "height": 8}, 16, A, python="/x/python")
    assert cmd[0] == "/x/python" and cmd[1].endswith("peer_gfnx.py")
    assert compare_peers.peer_cmd("peer_torchgfn.py", "hypergrid", {}, 16, A)[0] == sys.executable


def test_peer_gfnx_runs_hypergrid():
    """peer_gfnx.py times hypergrid 2D h8 at B=16 and prints one JSON record like the other peers."""
    python = _gfnx_python()
    if python is None:
        pytest.skip("no interpreter with jax and gfnx (set GFN_GFNX_PYTHON; see benchmarks/peer_gfnx.py)")
    cell = {"env": "hypergrid", "env_kwargs": {"ndim": 2, "height": 8}}
    out = subprocess.run([python, os.path.join(BENCH, "peer_gfnx.py"), "--cell", json.dumps(cell),
                          "--batch-size", "16", "--iterations", "3", "--warmup", "1"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["library"] == "gfnx" and rec["env"] == "hypergrid" and rec["env_kwargs"] == cell["env_kwargs"]
    assert (rec["batch_size"], rec["iterations"], rec["warmup"], rec["threads"]) == (16, 3, 1, 1)
    assert rec["ms_per_iter"] > 0 and rec["cpu_ms_per_iter"] > 0 and rec["compile_s"] > 0
    # K-hot 16 -> 256 -> 256 -> heads 3 (P_F) + 2 (P_B), plus log Z: torchgfn's count
    assert rec["n_params"] == 71430
    # three Adam steps at lr 0.1 move log Z off 0 (by at most ~0.3)
    assert 0.0 < abs(rec["log_z"]) < 0.5


def test_peer_gfnx_rejects_append_bitseq():
    """gfnx has no append-MDP bit sequence: the runner says so and exits with status 2."""
    python = _gfnx_python()
    if python is None:
        pytest.skip("no interpreter with jax and gfnx (set GFN_GFNX_PYTHON; see benchmarks/peer_gfnx.py)")
    cell = {"env": "bitseq", "env_kwargs": {"word_size": 1, "seq_size": 8, "n_modes": 2, "mdp": "append"}}
    out = subprocess.run([python, os.path.join(BENCH, "peer_gfnx.py"), "--cell", json.dumps(cell),
                          "--batch-size", "16"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "fill" in out.stderr and not out.stdout.strip()
