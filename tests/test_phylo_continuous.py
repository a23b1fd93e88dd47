"""PhyloGFN with continuous branch lengths: likelihood and reward against a float64 pruning
reference, step/backward inverses and masks (the contract checks, written for forest states),
and the importance-sampled log Z of the sampler against brute-force quadrature of the marginal
likelihood (3 and 4 taxa), plus training wiring (TB, VarGrad) and the example flag."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gfn.env import EnvError
from gfn.envs.phylo import PhyloTreeContinuous, load_alignment
from gfn.metrics.estimated import forward_log_weights, log_z_from_log_weights
from gfn.objectives import get_objective
from gfn.sampler import Sampler
from gfn.trainer import Trainer, TrainerConfig

SEQS = ["ACGTAC-TAA", "ACGTTCGTAN", "AGGTTC-AAA", "TCGAACGTA?", "ACCTAAGTGA"]
RATE = 10.0


def make_env(tmp_path, n_taxa=5, seqs=SEQS, **kw):
    path = tmp_path / "toy.fasta"
    path.write_text("".join(f">t{i}\n{s}\n" for i, s in enumerate(seqs[:n_taxa])))
    return PhyloTreeContinuous(alignment=load_alignment(path=str(path), gap_as_state=False), branch_rate=RATE, **kw)


# ---------------------------------------------------------------------------- float64 references
def leaf_vector(ch: str) -> np.ndarray:
    """Partial likelihood of an observed character (gaps, N, ? are missing data)."""
    return np.ones(4) if ch in "-N?" else np.array([float(ch == c) for c in "ACGT"])


def pmat(t: float) -> np.ndarray:
    e = math.exp(-4.0 * t / 3.0)
    return np.full((4, 4), 0.25 - 0.25 * e) + np.eye(4) * e


def pruning(tree, lengths: dict, seqs) -> float:
    """Float64 pruning on raw columns; ``lengths[subtree]`` is the length of the edge above it."""
    total = 0.0
    for site in range(len(seqs[0])):
        def rec(t):
            if isinstance(t, int):
                return leaf_vector(seqs[t][site])
            return (pmat(lengths[t[0]]) @ rec(t[0])) * (pmat(lengths[t[1]]) @ rec(t[1]))
        total += math.log(0.25 * rec(tree).sum())
    return total


def jc_batch(t: np.ndarray) -> np.ndarray:
    """[M] lengths -> [M, 4, 4] JC69 matrices."""
    e = np.exp(-4.0 * t / 3.0)[:, None, None]
    return 0.25 - 0.25 * e + np.eye(4) * e


def quadrature_log_z(seqs, n_taxa: int, m: int) -> float:
    """log marginal likelihood, uniform prior over unrooted topologies, Exp(RATE) on each of the
    2n - 3 lengths: tensor-product Gauss-Laguerre (m nodes per length), float64."""
    x, w = np.polynomial.laguerre.laggauss(m)
    t, lw = x / RATE, np.log(w)  # int Exp(t; RATE) g(t) dt = int e^-x g(x / RATE) dx
    leaves = np.array([[leaf_vector(s[j]) for j in range(len(s))] for s in seqs[:n_taxa]])  # [n, S, 4]
    grids = np.meshgrid(*([np.arange(m)] * (2 * n_taxa - 3)), indexing="ij")
    idx = [g.reshape(-1) for g in grids]
    logw = sum(lw[i] for i in idx)
    P = [jc_batch(t[i]) for i in idx]  # one [M, 4, 4] per edge
    if n_taxa == 3:  # star tree, root at the centre: sum_x 1/4 prod_i P_x,y_i
        site = 0.25 * np.einsum("mxa,sa,mxb,sb,mxc,sc->ms", P[0], leaves[0], P[1], leaves[1], P[2], leaves[2])
        return float(np.logaddexp.reduce(logw + np.log(site).sum(-1)))
    assert n_taxa == 4
    out = []
    for (a, b), (c, d) in [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]:
        left = np.einsum("mxa,sa,mxb,sb->msx", P[0], leaves[a], P[1], leaves[b])
        right = np.einsum("mya,sa,myb,sb->msy", P[2], leaves[c], P[3], leaves[d])
        site = 0.25 * np.einsum("msx,mxy,msy->ms", left, P[4], right)
        out.append(logw + np.log(site).sum(-1))
    return float(np.logaddexp.reduce(np.concatenate(out))) - math.log(3)


def merge_action(env, a: int, c: int, t1: float, t2: float) -> torch.Tensor:
    return torch.tensor([[float(env.pair_of[a, c]), t1, t2]])


# ---------------------------------------------------------------------------- tests
def test_likelihood_and_reward_match_float64_pruning(tmp_path):
    env = make_env(tmp_path)
    tree = ((0, (1, 2)), (3, 4))
    # merges (slots a < c): (1,2) -> slot 1, (3,4) -> slot 3, (0,1) -> slot 0, final (0,3): one edge
    plan = [(1, 2, 0.031, 0.17), (3, 4, 0.42, 0.0065), (0, 1, 0.09, 0.23), (0, 3, 0.055, 0.0)]
    s = env.initial_states(1)
    for a, c, t1, t2 in plan:
        assert float(env.log_reward(s)[0]) == -math.inf  # unfinished forests are not objects
        s = env.apply(s, merge_action(env, a, c, t1, t2))
    f32 = lambda v: float(np.float32(v))  # noqa: E731  actions are float32
    lengths = {1: f32(0.031), 2: f32(0.17), 3: f32(0.42), 4: f32(0.0065), 0: f32(0.09), (1, 2): f32(0.23),
               (0, (1, 2)): f32(0.055), (3, 4): 0.0}
    ref = pruning(tree, lengths, SEQS)
    assert float(env.log_likelihood(s)[0]) == pytest.approx(ref, abs=2e-4)
    edges = [v for v in lengths.values() if v > 0]
    assert len(edges) == 2 * 5 - 3 and int(env.edge_mask(s).sum()) == 7
    log_prior = -math.log(7 * 5 * 3) + sum(math.log(RATE) - RATE * t for t in edges)
    assert float(env.reward.log_joint(s)[0]) == pytest.approx(ref + log_prior, abs=2e-4)
    assert float(env.log_reward(s)[0]) == pytest.approx(ref + log_prior, abs=2e-3)
    assert s.newick(0) == "((0:0.09,(1:0.031,2:0.17):0.23):0.055,(3:0.42,4:0.0065));"
    # a different merge order reaches the same state (canonical storage), with the same lengths
    s2 = env.initial_states(1)
    for a, c, t1, t2 in [plan[1], plan[0], plan[2], plan[3]]:
        s2 = env.step(s2, merge_action(env, a, c, t1, t2))
    assert s.equal(s2)


def test_invalid_actions_are_rejected(tmp_path):
    env = make_env(tmp_path)
    s = env.initial_states(1)
    with pytest.raises(EnvError, match="lengths > 0"):
        env.apply(s, merge_action(env, 0, 1, 0.0, 0.1))
    with pytest.raises(EnvError, match="lengths > 0"):
        env.apply(s, torch.tensor([[0.5, 0.1, 0.1]]))  # not a pair index
    s = env.step(s, merge_action(env, 0, 1, 0.1, 0.1))
    with pytest.raises(EnvError, match="pair of two trees"):
        env.apply(s, merge_action(env, 1, 2, 0.1, 0.1))  # slot 1 is empty now
    with pytest.raises(EnvError, match="backward"):
        env.apply(s, merge_action(env, 2, 3, 0.1, 0.1), backward=True)  # slot 2 holds a taxon
    for a, c in [(0, 2), (0, 3)]:
        s = env.step(s, merge_action(env, a, c, 0.1, 0.1))
    with pytest.raises(EnvError, match="t2 = 0 at the final merge"):
        env.apply(s, merge_action(env, 0, 4, 0.1, 0.1))
    with pytest.raises(EnvError, match="exit"):
        env.apply(env.step(s, merge_action(env, 0, 4, 0.1, 0.0)), env.exit_actions(1))
    with pytest.raises(ValueError, match="conditioning"):
        env.build_gflownet(hidden=8, cond_dim=2)


@pytest.mark.parametrize("n_taxa", [4, 5])
def test_contract_step_backward_masks(tmp_path, n_taxa):
    """check_env's continuous suite, written for forest states: sampled moves pass ``apply``,
    backward_step inverts step and step inverts backward_step, masks agree with the number of
    trees, log-densities are finite, batched == one by one, and backward walks reach s_0."""
    env = make_env(tmp_path, n_taxa)
    gen = torch.Generator().manual_seed(0)
    B = 16
    s = env.initial_states(B)
    assert bool(env.is_initial(s).all()) and not bool(env.backward_mask(s).any())
    visited = []
    for k in range(n_taxa - 1):
        fm = env.forward_mask(s)
        assert bool(fm[:, 0].all()) and not bool(fm[:, 1].any())
        a = env.random_actions(s, generator=gen)
        assert torch.isfinite(a).all() and bool((a[:, 1] > 0).all())
        assert bool((a[:, 2] == 0).all()) == (k == n_taxa - 2)
        lp = env.forward_family()(None, s).log_prob(a)
        assert torch.isfinite(lp).all()
        child = env.apply(s, a)
        assert child.n_roots().tolist() == [n_taxa - k - 1] * B and bool(env.backward_mask(child).all())
        # one by one == batched (data caches included)
        one = [env.step(s.index(torch.tensor([i])), a[i:i + 1]) for i in range(B)]
        joined = type(child).cat(one)
        assert joined.equal(child) and torch.allclose(joined.data, child.data)
        assert torch.equal(joined.score, child.score)
        # backward undoes the step, with the backward move of the step and with a sampled split
        back = env.apply(child, env.backward_action(s, a), backward=True)
        assert back.equal(s) and torch.allclose(back.data, s.data)
        assert torch.isfinite(env.backward_family()(None, child).log_prob(env.backward_action(s, a))).all()
        b = env.random_actions(child, generator=gen, backward=True)
        parents = env.apply(child, b, backward=True)
        redo = env.apply(parents, env.forward_action(child, b))
        assert redo.equal(child) and torch.allclose(redo.data, child.data, atol=1e-6)
        visited.append(child)
        s = child
    fm = env.forward_mask(s)
    assert bool(fm[:, 1].all()) and not bool(fm[:, 0].any())
    assert torch.isfinite(env.log_reward(s)).all()
    # exit is the only action at complete trees (WithExit puts the -inf row there)
    assert bool(env.is_exit(env.random_actions(s, generator=gen)).all())
    # backward walks with the fixed P_B reach s_0 in n - 1 steps
    cur = s
    for _ in range(n_taxa - 1):
        cur = env.apply(cur, env.random_actions(cur, generator=gen, backward=True), backward=True)
    assert cur.equal(env.initial_states(B)) and bool(env.is_initial(cur).all())


def test_policy_log_probs_match_sampling_and_balance(tmp_path):
    """The model's scores of sampled trajectories: P_F sums pair log-probs and two length
    densities per merge (one at the final merge); P_B is 1 / (number of splittable slots)."""
    torch.manual_seed(0)
    env = make_env(tmp_path, 4)
    model = env.build_gflownet(hidden=16)
    batch = Sampler(env, model).sample(64, generator=torch.Generator().manual_seed(1))
    sc = model.evaluate(batch)
    assert torch.isfinite(sc.log_pf).all() and torch.isfinite(sc.log_pb).all()
    n_split = (batch.states.roots >= env.n).sum(-1).float()
    expect = torch.where(batch.is_first, torch.zeros_like(n_split), -torch.log(n_split.clamp(min=1)))
    assert torch.allclose(sc.log_pb, expect)
    # exit rows: log P_F = 0 (the only action); t2 of the final merge is 0 and not scored
    ex = env.is_exit(batch.actions)
    assert torch.equal(sc.log_pf[ex], torch.zeros(int(ex.sum())))


@pytest.mark.parametrize("n_taxa,train", [(3, 0), (4, 300)])
def test_log_z_iw_matches_quadrature(tmp_path, n_taxa, train):
    """Z = sum over topologies of the integral over lengths of R: brute-force Gauss-Laguerre
    (converged: two orders agree) against the forward importance-sampling estimate ``log_z_iw``
    of an untrained (3 taxa) and a briefly trained (4 taxa, VarGrad) sampler, within 4 standard
    errors.  A missing Jacobian, length density or P_B term would be off by >= log 2."""
    seqs = ["ACGTACTAAG", "ACGTTCGTAA", "AGGTTCAAAG", "TCGAACGTAT"]
    m_lo, m_hi = (16, 24) if n_taxa == 3 else (8, 10)
    ref_lo, ref_hi = quadrature_log_z(seqs, n_taxa, m_lo), quadrature_log_z(seqs, n_taxa, m_hi)
    assert abs(ref_lo - ref_hi) < 1e-4
    torch.manual_seed(0)
    env = make_env(tmp_path, n_taxa, seqs)
    obj = get_objective("vargrad")
    model = obj.build_model(env, hidden=32, n_layers=1)
    if train:
        tr = Trainer(env, model, obj, TrainerConfig(batch_size=16, lr=3e-3))
        losses = [tr.train_step().loss for _ in range(train)]
        assert all(math.isfinite(x) for x in losses)
    _, _, lw = forward_log_weights(env, model, 3000, generator=torch.Generator().manual_seed(2))
    est = log_z_from_log_weights(lw)
    assert est["log_z_iw_se"] < 0.1, est
    assert abs(est["log_z_iw"] - ref_hi) < 4 * est["log_z_iw_se"] + 1e-3, (est, ref_hi)
    assert est["log_z_elbo"] < ref_hi - 0.2  # a lower bound (the gap is far above its se here)


@pytest.mark.parametrize("name", ["tb", "vargrad", "db"])
def test_trains_with_objectives(tmp_path, name):
    torch.manual_seed(0)
    env = make_env(tmp_path, 5)
    obj = get_objective(name)
    model = obj.build_model(env, hidden=16, n_layers=1, uniform_pb=(name != "db"))
    tr = Trainer(env, model, obj, TrainerConfig(batch_size=8))
    losses = [tr.train_step().loss for _ in range(3)]
    assert all(math.isfinite(x) for x in losses)


def test_example_script_continuous_flag(data_dir, tmp_path, monkeypatch):
    """examples/train_phylo.py --branch-lengths continuous end to end on 4 taxa."""
    import sys
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    import train_phylo
    res = train_phylo.main(["--dataset", "DS1", "--taxa", "4", "--reward", "likelihood", "--branch-lengths",
                            "continuous", "--objective", "vargrad", "--iterations", "5", "--batch-size", "8",
                            "--hidden", "16", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
                            "--no-progress", "--eval-samples", "64", "--eval-corr", "8", "--eval-k", "4"])
    assert math.isfinite(res["log_z_iw"]) and res["log_z_elbo"] <= res["log_z_iw"]
    assert "tv_exact" not in res and "pearson_logp_logr" in res
    assert (tmp_path / "run" / "metrics.json").exists()
    sys.modules.pop("train_phylo", None)
    with pytest.raises(SystemExit):
        train_phylo.main(["--taxa", "4", "--branch-lengths", "continuous", "--data-dir", str(data_dir),
                          "--out", str(tmp_path / "bad"), "--no-progress"])  # parsimony reward


def test_check_env_passes_on_forest_states(tmp_path):
    """gfn.check_env's continuous suite compares and reassembles non-tensor (forest) states."""
    import gfn

    report = gfn.check_env(make_env(tmp_path, n_taxa=4))
    assert report.ok, str(report)
    assert report.checks_run > 50
