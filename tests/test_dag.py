"""DAG environment (issue 21): acyclicity masks, enumeration, scores, priors and metrics."""

import math
import sys

import pytest
import torch

import gfn
from gfn.env import EnvError
from gfn.envs import make_env
from gfn.envs.dag import (BGeScore, DAGEnv, LinearGaussianScore, edge_marginals, exact_posterior,
                          transitive_closure)
from gfn.envs.dag.metrics import DAGMetrics, heldout_scorer, roc_auc, shd
from gfn.metrics import exact_terminal_distribution, target_distribution


def brute_force_cyclic(adj: torch.Tensor) -> torch.Tensor:
    """True where a graph [N, d, d] has a directed cycle: trace of sum_k A^k > 0."""
    a = adj.double()
    p = a.clone()
    total = torch.zeros_like(a)
    for _ in range(adj.shape[-1]):
        total = total + p
        p = p @ a
    return total.diagonal(dim1=-2, dim2=-1).sum(-1) > 0


def test_mask_never_allows_a_cycle_and_allows_every_acyclic_edge():
    """10^4 steps of random walks (100 walkers x 100 steps, adding and removing edges) on 6 nodes:
    the carried closure equals a recomputed one, and the mask is exactly the set of additions that
    keep the graph acyclic."""
    g = torch.Generator().manual_seed(0)
    d, n = 6, 100
    env = DAGEnv(data=torch.randn(20, d, generator=g, dtype=torch.float64))
    states = env.initial_states(n)
    one_edge = torch.eye(d * d, dtype=torch.long).reshape(d * d, d, d)   # graph with only edge i -> j
    for step in range(100):
        adj = env.adjacency(states)
        assert torch.equal(env.closure(states), transitive_closure(adj))
        assert not brute_force_cyclic(adj).any()
        # every candidate edge i -> j added to every graph: acyclic iff the mask allows it
        cand = adj.unsqueeze(1) + one_edge.unsqueeze(0)                      # [n, d^2, d, d]
        ok = (cand <= 1).all(-1).all(-1)                                      # edge not already there
        ok &= ~brute_force_cyclic(cand.reshape(-1, d, d).clamp(max=1)).reshape(n, d * d)
        mask = env.forward_mask(states)
        assert torch.equal(mask[:, :-1], ok), f"mask differs from brute force at step {step}"
        assert mask[:, -1].all()
        # move: remove an edge with probability 0.3 (when there is one), else add an allowed edge
        bmask = env.backward_mask(states)
        back = (torch.rand(n, generator=g) < 0.3) & bmask.any(-1)
        fwd_ok = mask[:, :-1].any(-1)
        fwd = ~back & fwd_ok
        if fwd.any():
            scores = torch.rand(int(fwd.sum()), d * d, generator=g).masked_fill(~mask[fwd, :-1], -1)
            states[fwd] = env.step(states[fwd], scores.argmax(-1))
        if back.any():
            scores = torch.rand(int(back.sum()), d * d, generator=g).masked_fill(~bmask[back], -1)
            states[back] = env.backward_step(states[back], scores.argmax(-1))


def test_adding_a_cycle_raises_and_cyclic_graphs_are_refused():
    env = DAGEnv(data=torch.randn(10, 3, dtype=torch.float64))
    s = env.step(env.initial_states(1), torch.tensor([0 * 3 + 1]))   # 0 -> 1
    s = env.step(s, torch.tensor([1 * 3 + 2]))                       # 1 -> 2
    with pytest.raises(EnvError, match="invalid action 6"):
        env.apply(s, torch.tensor([2 * 3 + 0]))                      # 2 -> 0 closes a cycle
    with pytest.raises(EnvError, match="cycle"):
        env.from_adjacency(torch.tensor([[[0, 1], [1, 0]]]))


@pytest.mark.parametrize("d,count", [(2, 3), (3, 25), (4, 543), (5, 29281)])
def test_enumeration_counts_dags(d, count):
    """OEIS A003024: 3, 25, 543, 29,281 labelled DAGs on 2..5 nodes."""
    env = DAGEnv(data=torch.randn(10, d, dtype=torch.float64))
    states = env.enumerate_states()
    assert states.shape[0] == count
    assert torch.unique(env.codes(states)).numel() == count
    assert torch.equal(env.state_index(states), torch.arange(count))
    assert not brute_force_cyclic(env.adjacency(states)).any()


def test_enumeration_beyond_five_nodes_raises():
    env = DAGEnv(data=torch.randn(10, 6, dtype=torch.float64))
    assert not env.is_enumerable
    with pytest.raises(ValueError, match="d <= 5"):
        env.enumerate_states()


@pytest.mark.parametrize("score", ["bge", "lingauss"])
def test_delta_scores_equal_full_score_differences(score):
    """Adding i -> j changes log R by the local delta (two local scores), in float64; the cached
    table, the direct total and the delta all agree."""
    g = torch.Generator().manual_seed(1)
    env = DAGEnv(n_nodes=6, n_edges=6, n_samples=50, score=score, prior="erdos_renyi", data_seed=3)
    direct = DAGEnv(data=env.data, score=score, prior="erdos_renyi", cache_limit=0)
    assert env.reward.table is not None and direct.reward.table is None
    states = env.initial_states(64)
    for _ in range(8):  # random DAGs with up to 8 edges
        mask = env.forward_mask(states)[:, :-1]
        a = torch.rand(64, 36, generator=g).masked_fill(~mask, -1).argmax(-1)
        states = env.step(states, a)
    mask = env.forward_mask(states)[:, :-1]
    a = torch.rand(64, 36, generator=g).masked_fill(~mask, -1).argmax(-1)
    children = env.step(states, a)
    full = env.reward.log_reward64(children) - env.reward.log_reward64(states)
    full_direct = direct.reward.log_reward64(children) - direct.reward.log_reward64(states)
    delta = env.reward.delta(states, a)
    assert full.dtype == torch.float64
    torch.testing.assert_close(delta, full, rtol=0, atol=1e-9)
    torch.testing.assert_close(full_direct, full, rtol=0, atol=1e-9)
    torch.testing.assert_close(direct.reward.log_reward64(states), env.reward.log_reward64(states), rtol=0, atol=1e-9)


def test_linear_gaussian_local_score_matches_multivariate_normal():
    """log N(y; X_Pa mean, obs^2 I + prior^2 X_Pa X_Pa^T) computed directly (n x n covariance)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    sc = LinearGaussianScore(x, prior_mean=0.3, prior_scale=0.7, obs_scale=0.5)
    for target, parents in [(0, []), (1, [0]), (3, [0, 2]), (2, [0, 1, 3])]:
        xp, y = x[:, parents], x[:, target]
        cov = 0.25 * torch.eye(12, dtype=torch.float64) + 0.49 * xp @ xp.T
        mean = xp @ torch.full((len(parents),), 0.3, dtype=torch.float64)
        ref = torch.distributions.MultivariateNormal(mean, cov).log_prob(y)
        m = torch.zeros(1, 4, dtype=torch.bool)
        m[0, parents] = True
        got = sc.local(torch.tensor([target]), m)[0]
        assert abs(float(got - ref)) < 1e-9


def test_bge_is_score_equivalent():
    """Markov-equivalent DAGs get the same BGe score; a v-structure does not."""
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x[:, 1] += 0.8 * x[:, 0]
    x[:, 2] += -0.5 * x[:, 1]
    env = DAGEnv(data=x, score="bge")
    chain = torch.tensor([[0, 1, 0], [0, 0, 1], [0, 0, 0]])        # 0 -> 1 -> 2
    rev = chain.T.contiguous()                                     # 2 -> 1 -> 0
    fork = torch.tensor([[0, 0, 0], [1, 0, 1], [0, 0, 0]])         # 0 <- 1 -> 2
    collider = torch.tensor([[0, 1, 0], [0, 0, 0], [0, 1, 0]])     # 0 -> 1 <- 2
    lr = env.reward.log_reward64(env.from_adjacency(torch.stack([chain, rev, fork, collider])))
    torch.testing.assert_close(lr[1], lr[0], rtol=0, atol=1e-9)
    torch.testing.assert_close(lr[2], lr[0], rtol=0, atol=1e-9)
    assert abs(float(lr[3] - lr[0])) > 1e-3


def test_priors():
    d = 4
    x = torch.randn(10, d, dtype=torch.float64)
    base = DAGEnv(data=x, prior="uniform")
    er = DAGEnv(data=x, prior="erdos_renyi", prior_args={"expected_edges": 2})
    edge = DAGEnv(data=x, prior="edge", prior_args={"beta": 0.5})
    states = base.enumerate_states()
    n_edges = base.adjacency(states).sum((1, 2)).double()
    diff_edge = edge.reward.log_reward64(states) - base.reward.log_reward64(states)
    torch.testing.assert_close(diff_edge, n_edges * math.log(0.5))
    p = 2 / 6
    diff_er = er.reward.log_reward64(states) - base.reward.log_reward64(states)
    # log R is relative to the empty graph (first in the enumeration): ER's (1 - p)^(d(d-1)) cancels there
    assert float(er.reward.log_reward64(states[:1])) == 0.0 and float(base.reward.log_reward64(states[:1])) == 0.0
    torch.testing.assert_close(diff_er, n_edges * (math.log(p) - math.log(1 - p)))
    with pytest.raises(ValueError, match="unknown prior"):
        DAGEnv(data=x, prior="flat")
    with pytest.raises(ValueError, match="unknown score"):
        DAGEnv(data=x, score="bic")


def test_synthetic_data_and_registry():
    env = make_env("dag", n_nodes=5, n_edges=5, n_samples=100, data_seed=0)
    again = make_env("dag", n_nodes=5, n_edges=5, n_samples=100, data_seed=0)
    assert torch.equal(env.data, again.data) and torch.equal(env.true_graph, again.true_graph)
    assert env.data.shape == (100, 5) and env.heldout.shape == (100, 5)
    assert not brute_force_cyclic(env.true_graph.unsqueeze(0)).any()
    # edges count follows the ER average: mean over seeds close to 5
    counts = [float(make_env("dag", n_nodes=5, n_edges=5, n_samples=2, data_seed=s).true_graph.sum()) for s in range(200)]
    assert abs(sum(counts) / len(counts) - 5) < 0.5


def test_check_env_and_exact_posterior():
    env = DAGEnv(n_nodes=3, n_edges=2, n_samples=30, data_seed=1)
    assert gfn.check_env(env).ok
    post = exact_posterior(env)
    torch.testing.assert_close(target_distribution(env), post)
    assert abs(float(post.sum()) - 1) < 1e-12
    marg = edge_marginals(env, post)
    assert marg.diagonal().abs().max() == 0 and (marg <= 1).all()


def test_shd_and_roc_auc():
    truth = torch.tensor([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    graphs = torch.stack([truth, truth.T, torch.zeros(3, 3, dtype=torch.long),
                          torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]])])
    assert shd(graphs, truth).tolist() == [0, 2, 2, 1]
    assert roc_auc(torch.tensor([0.9, 0.8, 0.1, 0.2]), torch.tensor([1, 1, 0, 0])) == 1.0
    assert roc_auc(torch.tensor([0.1, 0.8, 0.9, 0.2]), torch.tensor([1, 1, 0, 0])) == 0.25
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.5


def test_dag_metrics_exact_and_sampled():
    """Exact metrics of a model against the posterior; held-out log-likelihood is the predictive
    score(D + H) - score(D); for d > 5 the same keys come from samples."""
    gfn.seed_everything(0)
    env = DAGEnv(n_nodes=3, n_edges=2, n_samples=30, n_heldout=10, data_seed=1)
    from gfn.objectives import get_objective
    model = get_objective("tb").build_model(env, hidden=16)
    m = DAGMetrics(env)(model)
    p = exact_terminal_distribution(env, model)
    adj = env.adjacency(env.enumerate_states())
    sc = heldout_scorer(env)
    ref_ll = float((p * (sc.total(adj) - env.reward.score.total(adj))).sum()) / 10
    assert abs(m["heldout_log_lik"] - ref_ll) < 1e-9
    assert abs(m["expected_shd"] - float((p * shd(adj, env.true_graph).double()).sum())) < 1e-9
    assert 0 <= m["jsd_exact"] <= math.log(2) and 0 <= m["tv_exact"] <= 1
    big = DAGEnv(n_nodes=6, n_edges=4, n_samples=30, n_heldout=10, data_seed=1)
    mb = DAGMetrics(big, n_samples=50)(get_objective("tb").build_model(big, hidden=16))
    assert {"expected_shd", "expected_edges", "roc_auc", "heldout_log_lik"} <= set(mb)
    assert all(math.isfinite(v) for v in mb.values())


def test_train_dag_example_writes_the_metrics(tmp_path, monkeypatch):
    """The example wires the shared flags, the epsilon anneal, the lr decay, log Z init and the
    gradient-variance log; the same seed repeats the run exactly."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "train_dag.py")
    spec = importlib.util.spec_from_file_location("_example_train_dag", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    args = ["--n-nodes", "3", "--n-edges", "2", "--n-samples", "30", "--n-heldout", "10", "--iterations", "20",
            "--batch-size", "8", "--hidden", "16", "--epsilon", "1.0", "--epsilon-final", "0.1",
            "--lr-decay-at", "0.5", "--grad-var-every", "10", "--no-progress"]
    a = mod.main(args + ["--out", str(tmp_path / "a")])
    b = mod.main(args + ["--out", str(tmp_path / "b")])
    for k in ("jsd_exact", "tv_exact", "expected_shd", "expected_edges", "roc_auc", "heldout_log_lik"):
        assert k in a and math.isfinite(a[k])
    assert a["jsd_exact"] == b["jsd_exact"] and a["log_z"] == b["log_z"]
    sched = mod.EpsilonSchedule(1.0, 0.1, 10)
    assert sched.value(0) == 1.0 and abs(sched.value(5) - 0.55) < 1e-12 and abs(sched.value(50) - 0.1) < 1e-12
    with pytest.raises(SystemExit):
        mod.main(args + ["--out", str(tmp_path / "c"), "--score", "bic"])
