"""NNI hill climbing on parsimony trees (envs/phylo/nni.py) and the TerminalSearch hook:
batched Fitch against the environment's own scores, the neighbourhood against a brute-force
Robinson-Foulds search, and the climb's local optimality."""

from __future__ import annotations

import itertools

import pytest
import torch

from gfn.envs.phylo import PhyloTree, load_alignment
from gfn.envs.phylo.nni import fitch_scores, nni_hill_climb, nni_neighbours, nni_refine, to_forest, tree_arrays
from gfn.local_search import TerminalSearch

SEQS = ["ACGTAC-TAAGT", "ACGTTCGTANCA", "AGGTTC-AAAGT", "TCGAACGTA?TT", "ACCTAAGTGAGA", "GCGTAC-TCACA",
        "ACGAAC-TCAGT", "TCGTACGTAAGA"]


def toy_env(tmp_path, n=7, **kw):
    path = tmp_path / "toy.fasta"
    path.write_text("".join(f">t{i}\n{s}\n" for i, s in enumerate(SEQS[:n])))
    return PhyloTree(alignment=load_alignment(path=str(path)), C=0.0, **kw)


def random_trees(env, k, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = env.initial_states(k)
    for _ in range(env.n - 1):
        mask = env.forward_mask(s)[:, :-1].float()
        s = env.step(s, torch.multinomial(mask, 1, generator=gen).squeeze(1))
    return s


def splits(kids, root, n):
    """Non-trivial splits of the unrooted tree, each as the frozenset of taxa on the side without taxon 0."""
    kids = kids.tolist()
    out = set()

    def below(v):
        if v < n:
            return frozenset([v])
        s = below(kids[v][0]) | below(kids[v][1])
        if 1 < len(s) < n - 1:
            out.add(s if 0 not in s else frozenset(range(n)) - s)
        return s

    below(int(root))
    return frozenset(out)


def test_fitch_and_round_trip_match_the_environment(tmp_path):
    env = toy_env(tmp_path)
    s = random_trees(env, 20)
    kids, root = tree_arrays(s)
    assert torch.equal(fitch_scores(kids, root, env.leaf_data, env.weights), env.parsimony(s).double())
    assert to_forest(env, kids, root).equal(s)


def test_neighbourhood_is_exactly_the_rf2_trees(tmp_path):
    """On 6 taxa the NNI neighbours of an unrooted tree are the trees at Robinson-Foulds distance 2."""
    env = toy_env(tmp_path, n=6)
    n = env.n
    every = env.enumerate_states()
    every = every.index((every.n_roots() == 1).nonzero().squeeze(1))
    ek, er = tree_arrays(every)
    topologies = {splits(ek[i], er[i], n) for i in range(len(every))}
    assert len(topologies) == 105  # (2n - 5)!! unrooted trees on 6 taxa
    s = random_trees(env, 12, seed=1)
    kids, root = tree_arrays(s)
    cand, valid = nni_neighbours(kids, root, n)
    assert valid.sum(1).tolist() == [2 * (n - 3)] * len(s)
    for b in range(len(s)):
        mine = splits(kids[b], root[b], n)
        got = [splits(cand[b, m], root[b], n) for m in valid[b].nonzero().squeeze(1).tolist()]
        assert len(set(got)) == len(got) == 2 * (n - 3)
        want = {t for t in topologies if len(mine - t) == 1}
        assert set(got) == want


def test_neighbour_scores_equal_rebuilt_states(tmp_path):
    env = toy_env(tmp_path, n=8)
    s = random_trees(env, 6, seed=2)
    kids, root = tree_arrays(s)
    cand, valid = nni_neighbours(kids, root, env.n)
    B, M = valid.shape
    flat = cand.reshape(B * M, *cand.shape[2:])[valid.reshape(-1)]
    r = root.repeat_interleave(M)[valid.reshape(-1)]
    rebuilt = to_forest(env, flat, r)
    assert torch.equal(fitch_scores(flat, r, env.leaf_data, env.weights), env.parsimony(rebuilt).double())


def test_hill_climb_reaches_an_nni_local_optimum(tmp_path):
    env = toy_env(tmp_path, n=8)
    s = random_trees(env, 10, seed=3)
    before = env.parsimony(s).double()
    out, score, n_scored = nni_hill_climb(env, s, max_rounds=50)
    assert n_scored > 0
    assert torch.equal(env.parsimony(out).double(), score)
    assert bool((score <= before).all()) and bool((score < before).any())
    kids, root = tree_arrays(out)
    cand, valid = nni_neighbours(kids, root, env.n)
    B, M = valid.shape
    ns = fitch_scores(cand.reshape(B * M, *cand.shape[2:]), root.repeat_interleave(M), env.leaf_data,
                      env.weights).view(B, M)
    assert bool((ns[valid].view(B, -1) >= score[:, None]).all())


def test_hill_climb_round_limit_and_errors(tmp_path):
    env = toy_env(tmp_path, n=8)
    s = random_trees(env, 4, seed=4)
    one, _, _ = nni_hill_climb(env, s, max_rounds=1)
    (k0, r0), (k1, r1) = tree_arrays(s), tree_arrays(one)
    # one round: at most one NNI per tree, i.e. the unrooted trees differ by at most one split
    moved = 0
    for b in range(len(s)):
        diff = len(splits(k0[b], r0[b], env.n) - splits(k1[b], r1[b], env.n))
        assert diff <= 1
        moved += diff
    assert moved > 0
    with pytest.raises(ValueError, match="complete trees"):
        tree_arrays(env.initial_states(2))
    with pytest.raises(ValueError, match="max_rounds"):
        nni_refine(0)


def test_hill_climb_refuses_the_likelihood_reward(tmp_path):
    path = tmp_path / "toy.fasta"
    path.write_text("".join(f">t{i}\n{s}\n" for i, s in enumerate(SEQS[:5])))
    env = PhyloTree(alignment=load_alignment(path=str(path), gap_as_state=False), reward_kind="likelihood", n_bins=2)
    with pytest.raises(ValueError, match="parsimony"):
        nni_hill_climb(env, env.initial_states(1))


def test_terminal_search_hook_trains_on_refined_trees(tmp_path):
    from gfn.objectives import get_objective
    from gfn.trainer import Trainer, TrainerConfig
    from gfn.utils import seed_everything

    seed_everything(0)
    env = toy_env(tmp_path, n=8)
    obj = get_objective("tb")
    model = obj.build_model(env, hidden=32, n_layers=1, uniform_pb=True)
    seen = []
    hook = TerminalSearch(nni_refine(20), on_candidates=lambda x, lr: seen.append(lr))
    trainer = Trainer(env, model, obj, TrainerConfig(batch_size=8, lr=1e-3), batch_hooks=[hook])
    info = trainer.train_step()
    batch = info.batch
    assert batch.batch_size == 16
    sampled, refined = batch.log_rewards[:8], batch.log_rewards[8:]
    assert bool((refined >= sampled).all())
    assert torch.equal(refined, seen[0])
    assert torch.equal(env.checked_log_reward(batch.terminal_states), batch.log_rewards)
    assert hook.n_reward_calls > 0 and batch.info["search_reward_calls"] == hook.n_reward_calls
    assert torch.isfinite(torch.tensor(info.loss))
    with pytest.raises(ValueError, match="train_on"):
        TerminalSearch(nni_refine(1), train_on="all")
