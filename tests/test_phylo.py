"""Phylogenetic trees (PhyloGFN): Fitch scores and JC69 likelihoods against brute-force
references, canonical states and P_B, enumeration counts, contract and training wiring."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import gfn
from gfn.env import EnvError
from gfn.envs.phylo import PhyloTree, load_alignment, read_fasta
from gfn.envs.phylo.metrics import build_forest, merge_actions
from gfn.objectives import get_objective
from gfn.trainer import Trainer, TrainerConfig

SEQS = ["ACGTAC-TAA", "ACGTTCGTAN", "AGGTTC-AAA", "TCGAACGTA?", "ACCTAAGTGA", "GCGTAC-TCA"]


@pytest.fixture
def fasta(tmp_path):
    path = tmp_path / "toy.fasta"
    path.write_text("".join(f">t{i}\n{s[:5]}\n{s[5:]}\n" for i, s in enumerate(SEQS)))
    return path


def toy_env(fasta, reward_kind="parsimony", **kw):
    gap = reward_kind == "parsimony"
    return PhyloTree(alignment=load_alignment(path=str(fasta), gap_as_state=gap), reward_kind=reward_kind,
                     C=0.0 if reward_kind == "parsimony" else float("nan"), **kw)


def char_set(ch: str, gap_as_state: bool) -> set:
    if ch in "N?" or (ch == "-" and not gap_as_state):
        return set("ACGT")
    return {ch}


def fitch_reference(tree, seqs) -> int:
    """Per-site Fitch with Python sets on the raw columns (no patterns, no bit masks)."""
    total = 0
    for site in range(len(seqs[0])):
        def rec(t):
            if isinstance(t, int):
                return char_set(seqs[t][site], True), 0
            (a, ca), (b, cb) = rec(t[0]), rec(t[1])
            return (a & b, ca + cb) if a & b else (a | b, ca + cb + 1)
        total += rec(tree)[1]
    return total


def jc69_reference(tree, lengths, seqs) -> float:
    """Float64 Felsenstein pruning on raw columns; ``lengths[subtree]`` is the length above it."""
    def pmat(t):
        e = math.exp(-4.0 * t / 3.0)
        return np.full((4, 4), 0.25 - 0.25 * e) + np.eye(4) * e

    total = 0.0
    for site in range(len(seqs[0])):
        def rec(t):
            if isinstance(t, int):
                return np.array([float(c in char_set(seqs[t][site], False)) for c in "ACGT"])
            return (pmat(lengths[t[0]]) @ rec(t[0])) * (pmat(lengths[t[1]]) @ rec(t[1]))
        total += math.log(0.25 * rec(tree).sum())
    return total


TREES = [(((0, 1), (2, 3)), (4, 5)), (0, (1, (2, (3, (4, 5))))), ((5, 2), ((0, 4), (3, 1)))]


@pytest.mark.parametrize("tree", TREES)
def test_fitch_score_matches_per_site_reference(fasta, tree):
    env = toy_env(fasta)
    s = build_forest(env, tree)
    assert float(env.parsimony(s)[0]) == fitch_reference(tree, SEQS)
    assert float(env.log_reward(s)[0]) == pytest.approx(-fitch_reference(tree, SEQS) / 4.0)


def test_partial_parsimony_of_forests(fasta):
    """Intermediate energy: (C k / (n-1) - sum of the trees' scores) / alpha, 0 at s_0."""
    env = PhyloTree(alignment=load_alignment(path=str(fasta)), C=50.0)
    s0 = env.initial_states(1)
    assert float(env.log_reward(s0)[0]) == 0.0
    s = build_forest(env, (0, 1))
    s = env.step(s, torch.tensor(merge_actions(env, (3, 5))))
    m = fitch_reference((0, 1), SEQS) + fitch_reference((3, 5), SEQS)
    assert float(env.log_reward(s)[0]) == pytest.approx((50.0 * 2 / 5 - m) / 4.0)
    assert env.provides_intermediate_rewards


def test_alignment_patterns_and_errors(fasta, tmp_path):
    aln = load_alignment(path=str(fasta))
    assert aln.weights.sum() == len(SEQS[0]) and aln.n_states == 5
    names, seqs = read_fasta(fasta)
    assert names == [f"t{i}" for i in range(6)] and seqs == SEQS
    bad = tmp_path / "bad.fasta"
    bad.write_text(">a\nACG\n>b\nAC\n")
    with pytest.raises(EnvError, match="not aligned"):
        load_alignment(path=str(bad))
    bad.write_text(">a\nACX\n>b\nACG\n")
    with pytest.raises(EnvError, match="outside"):
        load_alignment(path=str(bad))
    with pytest.raises(FileNotFoundError, match="phylo/DS9.fasta"):
        load_alignment("DS9", data_dir=str(tmp_path))


def test_merge_orders_give_one_state_and_pb_inverts(fasta):
    """All merge orders of a tree reach the same canonical state; each backward split is the
    inverse of a forward merge, and the number of parents is the number of non-trivial trees."""
    env = toy_env(fasta)
    tree = TREES[0]
    ref = build_forest(env, tree)
    # the three cherries/joins of ((0,1),(2,3)) and (4,5) can be done in several orders
    a01, a23, a45 = (merge_actions(env, t)[0] for t in [(0, 1), (2, 3), (4, 5)])
    finals = [int(env.pair_of[0, 2]), int(env.pair_of[0, 4])]  # then join the cherries, then (4, 5)
    seen = set()
    for order in itertools.permutations([a01, a23, a45]):
        s = env.initial_states(1)
        for a in list(order) + finals:
            s = env.apply(s, torch.tensor([a]))
        assert s.equal(ref)
        seen.add(tuple(order))
    assert len(seen) == 6
    # walk back to s_0 with backward actions and replay forward with forward_action
    s, path = ref, []
    while not bool(env.is_initial(s)[0]):
        mask = env.backward_mask(s)[0]
        assert int(mask.sum()) == int((s.roots[0] >= env.n).sum())
        b = torch.tensor([int(mask.nonzero()[-1, 0])])
        parent = env.apply(s, b, backward=True)
        fwd = env.forward_action(s, b)
        assert env.step(parent, fwd).equal(s)
        assert torch.equal(env.backward_action(parent, fwd), b)
        path.append(s)
        s = parent
    assert len(path) == env.n - 1 and s.equal(env.initial_states(1))
    # P_B uniform: a forest with two cherries has two parents
    two = build_forest(env, (0, 1))
    two = env.step(two, torch.tensor(merge_actions(env, (2, 3))))
    assert int(env.backward_mask(two).sum()) == 2
    with pytest.raises(EnvError, match="invalid action"):
        env.apply(two, torch.tensor([merge_actions(env, (0, 1))[0]]))


def test_enumeration_counts_6_and_7_taxa(data_dir):
    """(2n-3)!! rooted topologies: 945 on 6 taxa, 10,395 on 7; all forests: Bessel numbers."""
    for n, n_trees, n_forests in [(6, 945, 2431), (7, 10395, 27007)]:
        env = PhyloTree("DS1", taxa=n, data_dir=data_dir)
        states = env.enumerate_states()
        assert len(states) == n_forests
        assert int(env.forward_mask(states)[:, -1].sum()) == n_trees
        assert torch.equal(env.state_index(states), torch.arange(n_forests))


def test_likelihood_matches_float64_pruning(fasta):
    env = toy_env(fasta, "likelihood", n_bins=4)
    tree = ((0, (1, 2)), (3, (4, 5)))
    bins = {(1, 2): (0, 3), (0, (1, 2)): (2, 1), (4, 5): (1, 2), (3, (4, 5)): (3, 0), tree: (2, 0)}
    s = build_forest(env, tree, bins)
    L = env.bin_lengths.tolist()
    lengths = {}
    for sub, (b1, b2) in bins.items():
        lengths[sub[0]], lengths[sub[1]] = L[b1], L[b2]
    lengths[(3, (4, 5))] = 0.0  # the final merge joins the two trees by one edge (b2 -> length 0)
    ref = jc69_reference(tree, lengths, SEQS)
    assert float(env.log_likelihood(s)[0]) == pytest.approx(ref, abs=1e-4)
    # log R adds the topology prior 1 / (2n-3)!! and one bin mass (1/K) per edge (2n-3 edges)
    log_prior = -math.log(9 * 7 * 5 * 3) - 9 * math.log(4)
    assert float(env.reward.log_joint(s)[0]) == pytest.approx(ref + log_prior, abs=1e-4)
    assert float(env.log_reward(env.initial_states(1))[0]) == -math.inf  # not an object
    with pytest.raises(EnvError, match="complete trees"):
        env.log_likelihood(env.initial_states(1))


def test_likelihood_partition_function_is_marginal(fasta):
    """Z = sum over rooted trees and bins of R equals the marginal likelihood computed from
    unrooted trees: every unrooted tree appears under 2n-3 rootings with the same likelihood."""
    aln = load_alignment(path=str(fasta), gap_as_state=False)
    aln.codes, aln.names = aln.codes[:4], aln.names[:4]
    env = PhyloTree(alignment=aln, reward_kind="likelihood", n_bins=2)
    states = env.enumerate_states()
    term = states.index(env.forward_mask(states)[:, -1].nonzero().squeeze(1))
    assert len(term) == 15 * 2 ** 5
    ll = env.log_likelihood(term)
    # brute force over the 3 unrooted 4-taxon topologies and 2^5 bin choices, uniform prior 1/3
    L = env.bin_lengths.tolist()
    logs = []
    for (a, b), (c, d) in [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]:
        for bb in itertools.product(range(2), repeat=5):
            lengths = {a: L[bb[0]], b: L[bb[1]], c: L[bb[2]], d: L[bb[3]], (a, b): L[bb[4]], (c, d): 0.0}
            logs.append(jc69_reference(((a, b), (c, d)), lengths, SEQS)
                        + math.log(1 / 3) + 5 * math.log(0.5))
    ref = torch.logsumexp(torch.tensor(logs, dtype=torch.float64), 0)
    log_z = torch.logsumexp(env.reward.log_joint(term), 0)
    assert float(log_z) == pytest.approx(float(ref), abs=1e-4)
    assert bool(torch.isfinite(ll).all())


def test_check_env_passes(fasta):
    aln = load_alignment(path=str(fasta), gap_as_state=False)
    aln.codes, aln.names = aln.codes[:4], aln.names[:4]  # 4 taxa: the enumeration checks stay small
    assert gfn.check_env(toy_env(fasta), n_trajectories=8).ok
    assert gfn.check_env(PhyloTree(alignment=aln, reward_kind="likelihood", n_bins=2), n_trajectories=8).ok


def test_errors(fasta, data_dir):
    with pytest.raises(ValueError, match="reward_kind"):
        toy_env(fasta, "bayes")
    with pytest.raises(EnvError, match="taxa"):
        PhyloTree("DS1", taxa=1, data_dir=data_dir)
    with pytest.raises(EnvError, match="too large to enumerate"):
        PhyloTree("DS1", data_dir=data_dir).enumerate_states()
    with pytest.raises(EnvError, match="likelihood"):
        toy_env(fasta).log_likelihood(toy_env(fasta).initial_states(1))


@pytest.mark.parametrize("name", ["tb", "db", "fldb", "subtb"])
def test_policy_trains_with_objectives(fasta, name):
    torch.manual_seed(0)
    env = toy_env(fasta)
    obj = get_objective(name)
    model = obj.build_model(env, hidden=32, n_layers=1, uniform_pb=(name == "tb"))
    tr = Trainer(env, model, obj, TrainerConfig(batch_size=8))
    losses = [tr.train_step().loss for _ in range(3)]
    assert all(math.isfinite(x) for x in losses)
    s = env.initial_states(2)
    p = model.pf_dist(s).log_probs.exp()
    assert torch.allclose(p.sum(-1), torch.ones(2)) and int((p > 0).sum(-1)[0]) == env.n_pairs


def test_example_script_small_subset(data_dir, tmp_path, monkeypatch):
    """examples/train_phylo.py end to end on 4 taxa: exact tv, parsimony, correlation, log Z."""
    import sys
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    import train_phylo
    res = train_phylo.main(["--dataset", "DS1", "--taxa", "4", "--iterations", "30", "--batch-size", "8",
                            "--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--no-progress",
                            "--eval-samples", "64", "--eval-corr", "16", "--eval-k", "4"])
    assert 0.0 <= res["tv_exact"] <= 1.0
    assert res["best_parsimony"] <= res["mean_parsimony"] and res["best_parsimony_seen"] <= res["best_parsimony"]
    assert math.isfinite(res["log_z_iw"]) and "pearson_logp_logr" in res
    assert (tmp_path / "run" / "metrics.json").exists()
    sys.modules.pop("train_phylo", None)


def test_merge_costs_and_cost_bias_policy(fasta):
    """merge_costs[b, pair] is the score a merge adds (checked by stepping every valid merge);
    with cost_bias and the learned logits zeroed, P_F is softmax(-cost / alpha) over merges."""
    env = toy_env(fasta, alpha=2.0)
    s = env.step(env.initial_states(3), torch.tensor([0, 4, 9]))
    cost = env.merge_costs(s)
    valid = env.forward_mask(s)[:, :-1]
    for b in range(3):
        acts = valid[b].nonzero().squeeze(1)
        children = env.step(s.index(torch.full((len(acts),), b)), acts)
        added = children.score.sum(-1) - s.score[b].sum()
        assert torch.allclose(cost[b, acts].double(), added.double())
    model = env.build_gflownet(hidden=16, cost_bias=True)
    torch.nn.init.zeros_(model.pf.out.weight)
    torch.nn.init.zeros_(model.pf.out.bias)
    with torch.no_grad():
        logits = model.pf_dist(s).logits
    for b in range(3):
        acts = valid[b].nonzero().squeeze(1)
        ref = torch.log_softmax(-cost[b, acts].double() / 2.0, 0)
        got = torch.log_softmax(logits[b, acts].double(), 0)
        assert torch.allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError, match="parsimony"):
        toy_env(fasta, reward_kind="likelihood", n_bins=2).build_gflownet(hidden=16, cost_bias=True)
