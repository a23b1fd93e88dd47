"""Sequence tasks: rewards vs the data README, data-file errors, metrics, policies, replay, example."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest
import torch
from gfn.envs.sequences import (
    PAD,
    BitSequence,
    QM9Str,
    RewardPrioritizedReplay,
    SequenceEnv,
    SequenceMetrics,
    TFBind8,
    build_sequence_gflownet,
    pairwise_levenshtein,
)
from gfn.envs.sequences.data import data_file, open_text, packaged_data_dir
from gfn.envs.sequences.metrics import levenshtein
from gfn.objectives import get_objective

from gfn import check_env
from gfn.sampler import Sampler

#: data root: $GFN_DATA_DIR when set, else the copy shipped with the library (so these never skip)
DATA = Path(os.environ.get("GFN_DATA_DIR") or packaged_data_dir())


def _has(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------ TFBind8
def test_tfbind8_reward_matches_readme():
    env = TFBind8(str(DATA))
    table = env.log_reward_table
    assert table.numel() == 65536
    assert math.isclose(float(table.max().exp()), 10.0, rel_tol=1e-9)        # max R = 10
    # spot checks: R = 10 * max(r, 1e-3)^3 with r the min-max normalised E-score of the TSV
    with open_text(data_file(str(DATA), "tfbind8/SIX6_REF_R1_8mers.tsv", "test")) as f:
        rows = f.read().splitlines()[1:]
    e = {}
    for ln in rows:
        a, b, s = ln.split("\t")[:3]
        e[a] = e[b] = float(s)
    lo, hi = min(e.values()), max(e.values())
    for seq in random.Random(0).sample(sorted(e), 5) + ["AAAAAAAA"]:
        r = (e[seq] - lo) / (hi - lo)
        got = float(env.log_reward(env.from_strings([seq])).exp())
        assert math.isclose(got, 10 * max(r, 1e-3) ** 3, rel_tol=1e-5), seq
    assert env.mode_states.shape == (328, 8)
    r_modes = (env.log_reward(env.mode_states).double().exp() / 10) ** (1 / 3)
    assert float(r_modes.min()) >= 0.889                                      # README: r >= 0.889
    assert check_env(env).ok


def test_tfbind8_prepend_append_and_fill_share_reward():
    env_a, env_pa = TFBind8(str(DATA)), TFBind8(str(DATA), mdp="prepend_append")
    x = env_a.from_strings(["ACGTACGT", "TTTTGGGG"])
    assert torch.equal(env_a.log_reward(x), env_pa.log_reward(x))
    assert check_env(env_pa).ok


# ------------------------------------------------------------------ QM9str
def test_qm9str_reward_matches_readme():
    env = QM9Str(str(DATA))
    assert env.mdp.name == "prepend_append"
    table = env.log_reward_table
    assert table.numel() == 161051
    assert math.isclose(float(table.max().exp()), 100.0, rel_tol=1e-9)      # max R = 100
    with open_text(data_file(str(DATA), "qm9str/rewards.tsv.gz", "test")) as f:
        lines = f.read().splitlines()[1:]
    pmax = max(float(ln.split("\t")[1]) for ln in lines)
    for ln in random.Random(1).sample(lines, 5) + [lines[0]]:
        x, p = ln.split("\t")
        want = 100 * max(float(p), 1e-3) ** 5 / pmax ** 5
        got = float(env.log_reward(env.from_strings([x])).double().exp())
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-30), x
    # modes.txt = the top 805 strings by reward
    top = set(torch.topk(table, 805).indices.tolist())
    assert set(env.mode_codes().tolist()) == top
    assert check_env(env).ok


@pytest.mark.skipif(not _has("rdkit"), reason="rdkit not installed")
def test_qm9str_molecules_and_tanimoto_diversity():
    from gfn.envs.sequences.qm9str import BlockMolecules
    mols = BlockMolecules(str(DATA))
    assert mols.smiles("0") == "C"
    assert mols.smiles("00") == "CC"
    assert mols.smiles("01") == "CO"
    d = mols.distance_matrix(["00000", "00000", "77777"])
    assert float(d[0, 1]) == 0.0 and 0 < float(d[0, 2]) <= 1
    assert all(mols.molecule(s) is not None for s in ["a9876", "54321", "7a7a7"])


# ------------------------------------------------------------------ RNA
@pytest.mark.skipif(not _has("RNA"), reason="viennarna not installed")
def test_rna_reward_definition():
    import RNA
    from gfn.envs.sequences.rna import F_MAX, TARGETS, RNABinding, reverse_complement
    env = RNABinding("L14_RNA1", str(DATA))
    t = TARGETS["L14_RNA1"]
    seq = "GGGGGCCCCGCGCG"
    f = RNA.duplexfold(t, seq).energy / (RNA.duplexfold(reverse_complement(t), t).energy * 14 / 100)
    got = float(env.log_reward(env.from_strings([seq])).double().exp())
    assert math.isclose(got, 10 * (max(f, 1e-3) / F_MAX["L14_RNA1"]) ** 8, rel_tol=1e-4)
    assert env.mode_states.shape == (336, 14)
    assert env.score.n_evals == 1
    assert check_env(env, n_trajectories=16).ok
    for name in ("L14_RNA2", "L14_RNA3"):
        e2 = RNABinding(name, str(DATA))
        assert e2.mode_states is None and math.isfinite(e2.mode_log_reward_threshold)


# ------------------------------------------------------------------ data errors
def test_missing_data_file_is_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"tfbind8/SIX6_REF_R1_8mers\.tsv"):
        TFBind8(str(tmp_path))
    (tmp_path / "qm9str").mkdir()
    monkeypatch.setenv("GFN_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"qm9str/rewards\.tsv\.gz.*GFN_DATA_DIR"):
        QM9Str()


# ------------------------------------------------------------------ bit sequences
def test_bitseq_reward_and_modes():
    env = BitSequence(word_size=1, seq_len=8, n_modes=2, mdp="fill")
    assert env.n_actions == 17 and env.n_backward_actions == 8
    assert torch.equal(env.log_reward(env.mode_states), torch.zeros(2))
    x = env.mode_states.clone()
    x[:, 0] = 1 - x[:, 0]
    assert (env.log_reward(x) <= -1 + 1e-6).all() and (env.log_reward(x) >= -1 - 1e-6).any()
    big = BitSequence(word_size=8, seq_len=120, n_modes=60, mdp="append")
    assert big.mode_states.shape == (60, 15) and not big.is_enumerable
    assert check_env(big, n_trajectories=8).ok


# ------------------------------------------------------------------ metrics
def test_levenshtein_matches_reference():
    def ref(a, b):
        d = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            prev, d[0] = d[0], i
            for j, cb in enumerate(b, 1):
                prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (ca != cb))
        return d[len(b)]
    rng = random.Random(0)
    seqs = [[rng.randrange(3) for _ in range(rng.randint(0, 6))] for _ in range(12)]
    states = torch.full((12, 6), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        states[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    d = pairwise_levenshtein(states)
    for i in range(12):
        for j in range(12):
            assert int(d[i, j]) == ref(seqs[i], seqs[j])
    assert levenshtein(states[:1], states[1:2]).shape == (1,)


def test_sequence_metrics_counts():
    env = BitSequence(word_size=1, seq_len=4, n_modes=3, mdp="fill")
    m = SequenceMetrics(env, mode_states=env.mode_states, exact=False)
    m.add(env.mode_states[:1].repeat(3, 1), env.log_reward(env.mode_states[:1].repeat(3, 1)))
    other = torch.tensor([[0, 1, 0, 1]])
    m.add(other, env.log_reward(other))
    out = m.compute()
    assert out["n_samples"] == 4 and out["n_unique"] == 2 and out["unique_fraction"] == 0.5
    assert out["modes_found"] == 1 + int((env.mode_states == other).all(1).any())
    assert math.isclose(out["top100_diversity"], float((env.mode_states[0] != other[0]).sum()))
    # reward-threshold modes (no mode list)
    m2 = SequenceMetrics(env, mode_log_reward_threshold=-0.5, exact=False)
    m2.add(env.mode_states, env.log_reward(env.mode_states))
    assert m2.compute()["modes_found"] == 3


# ------------------------------------------------------------------ policies
@pytest.mark.parametrize("arch", ["mlp", "transformer", "gru"])
@pytest.mark.parametrize("objective", ["tb", "db"])
def test_policies_train_step(arch, objective):
    torch.manual_seed(0)
    env = SequenceEnv(3, 4, min_len=2, mdp="prepend_append", reward=_Len())
    obj = get_objective(objective)
    model = obj.build_model(env, hidden=16, n_layers=1, arch=arch)
    batch = Sampler(env, model).sample(8)
    loss = obj.loss(model, batch)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)


class _Len:
    def log_reward(self, states):
        return (states >= 0).sum(-1).float()


@torch.no_grad()
def test_transformer_ignores_empty_slots_content():
    """The encoding of a state depends only on its filled positions (empty ones are masked)."""
    torch.manual_seed(0)
    env = SequenceEnv(3, 4, min_len=0, mdp="append", reward=_Len())
    model = build_sequence_gflownet(env, arch="transformer", hidden=16, n_layers=1)
    s = torch.tensor([[0, 2, PAD, PAD], [PAD, PAD, PAD, PAD]])
    h = model.encode(s)
    assert h.shape == (2, 16) and torch.isfinite(h).all()


# ------------------------------------------------------------------ replay
def test_reward_prioritized_replay():
    buf = RewardPrioritizedReplay(capacity=50, top_fraction=0.1)
    states = torch.arange(100).reshape(100, 1)
    buf.add(states, states.squeeze(1).float())
    buf.add(states[:10], states[:10].squeeze(1).float())       # duplicates are not re-inserted
    assert len(buf) == 50
    assert set(range(90, 100)) <= set(buf.states.squeeze(1).tolist())   # the best survive eviction
    g = torch.Generator().manual_seed(0)
    _, lr = buf.sample(1000, generator=g)
    top_cut = torch.sort(buf.log_rewards, descending=True).values[4]
    frac_top = float((lr >= top_cut).double().mean())
    assert 0.45 < frac_top < 0.6


# ------------------------------------------------------------------ example
def test_example_writes_metrics(tmp_path, monkeypatch):
    import importlib.util
    import sys
    path = Path(__file__).resolve().parents[1] / "examples" / "train_sequences.py"
    spec = importlib.util.spec_from_file_location("_example_train_sequences", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    out = tmp_path / "run"
    res = mod.main(["--task", "bitseq", "--iterations", "10", "--batch-size", "8", "--no-progress",
                    "--out", str(out), "--hidden", "32", "--eval-every", "5"])
    m = json.loads((out / "metrics.json").read_text())
    for key in ("modes_found", "n_samples", "top100_reward", "top100_diversity", "unique_fraction", "tv_exact"):
        assert key in m, key
    assert m["n_samples"] == 80 and len(m["history"]) == 2
    assert res["tv_exact"] == m["tv_exact"]


def test_seeded_training_repeats_exactly():
    from gfn.trainer import Trainer, TrainerConfig
    from gfn.utils import seed_everything

    def train():
        seed_everything(3)
        env = SequenceEnv(3, 4, min_len=1, mdp="prepend_append", reward=_Len())
        obj = get_objective("tb")
        model = obj.build_model(env, hidden=16, n_layers=1)
        tr = Trainer(env, model, obj, TrainerConfig(batch_size=8, replay_capacity=20))
        tr.replay = RewardPrioritizedReplay(20)
        losses = [tr.train_step().loss for _ in range(6)]
        return losses, [p.detach().clone() for p in model.parameters()]

    (l1, p1), (l2, p2) = train(), train()
    assert l1 == l2 and all(torch.equal(a, b) for a, b in zip(p1, p2))
