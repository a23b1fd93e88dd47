"""Exploration: Thompson-sampling ensembles (bootstrap masks, head selection, per-head losses),
RND intrinsic rewards (decay on visited states, the reward augmentation), sparse/deceptive grids."""

import math

import pytest
import torch

from gfn import Trainer, TrainerConfig
from gfn.envs.hypergrid import DeceptiveHyperGridReward, GAFNGridReward, HyperGrid, SparseHyperGridReward
from gfn.exploration import (EnsemblePolicy, HeadLogZ, ThompsonObjective, bootstrap_masks, install_thompson,
                             parse_exploration)
from gfn.intrinsic import RND, IntrinsicReward, install_intrinsic, parse_intrinsic
from gfn.objectives import get_objective
from gfn.sampler import Sampler


def _trainer(env, name="tb", batch_size=16, hidden=32):
    obj = get_objective(name)
    model = obj.build_model(env, hidden=hidden)
    return Trainer(env, model, obj, TrainerConfig(batch_size=batch_size))


# ---------------------------------------------------------------- bootstrap masks and heads
def test_bootstrap_masks_frequency_and_reproducibility():
    m = bootstrap_masks(20000, 4, 0.3, torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and m.shape == (20000, 4)
    assert torch.allclose(m.double().mean(0), torch.full((4,), 0.3, dtype=torch.float64), atol=0.015)
    assert torch.equal(m, bootstrap_masks(20000, 4, 0.3, torch.Generator().manual_seed(0)))
    assert bootstrap_masks(10, 3, 1.0).all()
    with pytest.raises(ValueError, match="bootstrap"):
        bootstrap_masks(4, 2, 0.0)


def _steered(env, k=3):
    """A TS trainer whose head j is pinned to one behaviour: 0 exits at s_0, 1 runs along axis 0
    to its edge, 2 along axis 1."""
    tr = _trainer(env, batch_size=600)
    install_thompson(tr, k, p=0.5)
    ens = tr.model.pf
    biases = [[-30.0, -30.0, 30.0], [30.0, -30.0, -30.0], [-30.0, 30.0, -30.0]]
    with torch.no_grad():
        for head, b in zip(ens.heads, biases):
            head.weight.zero_()
            head.bias.copy_(torch.tensor(b))
    return tr


def test_each_trajectory_is_rolled_out_by_its_drawn_head():
    env = HyperGrid(2, 5)
    tr = _steered(env)
    batch = tr.sampler.sample(600)
    heads = tr.sampler.last_heads
    assert torch.equal(batch.info["thompson_heads"], heads)
    counts = torch.bincount(heads, minlength=3).double() / 600
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.07)  # uniform draw
    x = batch.terminal_states
    assert bool((x[heads == 0] == 0).all())
    # along its axis to the edge (where the remaining moves and exit are equally likely)
    assert bool((x[heads == 1][:, 0] == 4).all()) and bool((x[heads == 2][:, 1] == 4).all())
    # the caller's order: trajectory b of the batch is the one head heads[b] produced
    assert batch.batch_size == 600 and batch.log_rewards.shape == (600,)


def test_mixture_policy_without_active_head():
    env = HyperGrid(2, 5)
    tr = _steered(env)
    ens = tr.model.pf
    s = env.initial_states(1)
    probs = tr.model.pf_dist(s).log_probs.exp()[0]
    per_head = []
    for j in range(3):
        with ens.use(j):
            per_head.append(tr.model.pf_dist(s).log_probs.exp()[0])
    assert torch.allclose(probs, torch.stack(per_head).mean(0), atol=1e-6)
    assert ens.active is None
    with pytest.raises(ValueError, match="at least 2"):
        EnsemblePolicy(get_objective("tb").build_model(env).pf, 1)


def test_each_head_trains_on_its_bootstrap_sample_only(monkeypatch):
    env = HyperGrid(2, 5)
    tr = _trainer(env, batch_size=8)
    install_thompson(tr, 3, p=0.4)
    obj = tr.objective
    assert isinstance(obj, ThompsonObjective) and obj.needs_log_z  # the wrapped objective's attributes
    batch = tr.sampler.sample(8)
    torch.manual_seed(5)
    loss = obj.loss(tr.model, batch)
    masks = obj.last_masks
    torch.manual_seed(5)
    assert torch.equal(bootstrap_masks(8, 3, 0.4), masks)
    ens, base = tr.model.pf, obj.objective
    ref = []
    for j in range(3):
        idx = masks[:, j].nonzero().squeeze(1)
        if idx.numel():
            with ens.use(j):
                ref.append(base.loss(tr.model, batch.select(idx)))
    assert math.isclose(float(loss.detach()), float(torch.stack(ref).mean().detach()), rel_tol=1e-6)
    # a head whose bootstrap sample is empty gets no gradient; the others do
    fixed = torch.tensor([[True, False, False]] * 4 + [[False, True, False]] * 4)
    monkeypatch.setattr("gfn.exploration.bootstrap_masks", lambda n, k, p, g=None, device="cpu": fixed)
    tr.model.zero_grad()
    obj.loss(tr.model, batch).backward()
    assert ens.heads[2].weight.grad is None or float(ens.heads[2].weight.grad.abs().sum()) == 0.0
    assert float(ens.heads[0].weight.grad.abs().sum()) > 0 and float(ens.heads[1].weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["tb", "db", "subtb"])
def test_thompson_and_rnd_compose_with_objectives(name):
    env = HyperGrid(2, 4)
    for install in (lambda t: install_thompson(t, 3), lambda t: install_intrinsic(t, 0.5, "edge")):
        torch.manual_seed(0)
        tr = _trainer(env, name=name, batch_size=8)
        install(tr)
        before = [p.detach().clone() for p in tr.model.parameters()]
        losses = tr.train(3)
        assert all(math.isfinite(v) for v in losses)
        assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))


def test_randomized_prior_adds_a_frozen_random_function_to_each_head():
    env = HyperGrid(2, 5)
    tr = _trainer(env, batch_size=8)
    install_thompson(tr, 3, p=0.5, prior_scale=2.0)
    ens, model = tr.model.pf, tr.model
    assert ens.prior_scale == 2.0 and len(ens.prior_heads) == 3
    states = env.enumerate_states()
    h = model.encode(states)
    x = env.featurize(states)
    for j in range(3):
        expect = ens.heads[j](h) + 2.0 * ens.prior_heads[j](ens.prior_trunk(x))
        with ens.use(j):
            got = model.pf_dist(states).log_probs
        ref = torch.log_softmax(expect.masked_fill(~env.forward_mask(states), float("-inf")), -1)
        assert torch.allclose(got[env.forward_mask(states)], ref[env.forward_mask(states)], atol=1e-5)
    # the prior functions differ between heads and from the trained trunk, and never learn
    p0 = ens.prior_heads[0](ens.prior_trunk(x))
    assert not torch.allclose(p0, ens.prior_heads[1](ens.prior_trunk(x)))
    frozen = [q.detach().clone() for q in list(ens.prior_heads.parameters()) + list(ens.prior_trunk.parameters())]
    ids = {id(q) for g in tr.optimizer.param_groups for q in g["params"]}
    assert not any(id(q) in ids for q in list(ens.prior_heads.parameters()) + list(ens.prior_trunk.parameters()))
    head0 = ens.heads[0].weight.detach().clone()
    tr.train(3)
    after = list(ens.prior_heads.parameters()) + list(ens.prior_trunk.parameters())
    assert all(torch.equal(a, b) for a, b in zip(frozen, after))
    assert not torch.equal(head0, ens.heads[0].weight)
    # no prior by default
    tr2 = _trainer(env)
    install_thompson(tr2, 2)
    assert tr2.model.pf.prior_scale == 0.0 and not hasattr(tr2.model.pf, "prior_heads")
    with pytest.raises(ValueError, match="prior"):
        EnsemblePolicy(get_objective("tb").build_model(env).pf, 2, prior_scale=-1.0)


def test_per_head_log_z_trains_each_head_against_its_own_log_z(monkeypatch):
    env = HyperGrid(2, 5)
    tr = _trainer(env, batch_size=8)
    with torch.no_grad():
        tr.model.log_z.value.fill_(0.7)
    install_thompson(tr, 3, p=0.5, head_log_z=True)
    lz, ens, obj = tr.model.log_z, tr.model.pf, tr.objective
    assert isinstance(lz, HeadLogZ) and torch.equal(lz.values.detach(), torch.full((3,), 0.7))
    with torch.no_grad():
        lz.values.copy_(torch.tensor([0.0, 1.0, 5.0]))
    assert any(lz.values is q for q in tr.optimizer.param_groups[-1]["params"])  # the log Z learning rate
    batch = tr.sampler.sample(8)
    fixed = torch.tensor([[True, False, False]] * 4 + [[False, True, False]] * 4)
    monkeypatch.setattr("gfn.exploration.bootstrap_masks", lambda n, k, p, g=None, device="cpu": fixed)
    loss = obj.loss(tr.model, batch)
    # float64 brute force: the TB residual of each trajectory with its head's P_F and that head's log Z
    expect = 0.0
    for j, rows in ((0, range(4)), (1, range(4, 8))):
        with ens.use(j):
            log_pf = tr.model.pf_dist(batch.states).log_probs.detach().double()
        sq = []
        for b in rows:
            lo, hi = int(batch.ptr[b]), int(batch.ptr[b + 1])
            s_pf = sum(float(log_pf[k, int(batch.actions[k])]) for k in range(lo, hi))
            pb = tr.model.pb_dist(batch.states[torch.arange(lo + 1, hi)]).log_probs.detach().double()
            s_pb = sum(float(pb[k - lo - 1, int(batch.bwd_actions[k])]) for k in range(lo + 1, hi))
            sq.append((float(lz.values[j]) + s_pf - float(batch.log_rewards[b]) - s_pb) ** 2)
        expect += sum(sq) / len(sq) / 2
    assert math.isclose(float(loss.detach()), expect, rel_tol=1e-4)
    tr.model.zero_grad()
    loss.backward()
    g = lz.values.grad
    assert float(g[0].abs()) > 0 and float(g[1].abs()) > 0 and float(g[2]) == 0.0  # head 2 drew nothing
    assert math.isclose(float(lz(4).mean()), 2.0, rel_tol=1e-6)  # mixture: the mean
    with ens.use(2):
        assert torch.equal(lz(2), torch.full((2,), 5.0))


def test_parse_flags():
    assert parse_exploration("none") is None and parse_exploration("thompson:8") == (8, 0.5, 0.0, False)
    assert parse_exploration("thompson:4,0.7") == (4, 0.7, 0.0, False)
    assert parse_exploration("thompson:4,0.3,prior=2.5,logz=head") == (4, 0.3, 2.5, True)
    assert parse_exploration("thompson:4,prior=1") == (4, 0.5, 1.0, False)
    for bad in ("thompson", "thompson:1", "thompson:4,0", "ucb:3", "thompson:x", "thompson:4,prior=-1",
                "thompson:4,logz=each", "thompson:4,scale=2", "thompson:prior=1,4", "thompson:4,0.5,0.5"):
        with pytest.raises(ValueError, match="exploration"):
            parse_exploration(bad)
    assert parse_intrinsic("none") is None and parse_intrinsic("rnd:0.5") == (0.5, "edge")
    assert parse_intrinsic("rnd:2,state") == (2.0, "state") and parse_intrinsic("rnd:0.1,flow") == (0.1, "flow")
    for bad in ("rnd", "rnd:0", "rnd:1,node", "icm:1", "rnd:x"):
        with pytest.raises(ValueError, match="intrinsic"):
            parse_intrinsic(bad)


# ---------------------------------------------------------------- RND intrinsic rewards
def test_rnd_reward_decays_on_visited_states():
    env = HyperGrid(2, 8)
    rnd = RND(env, hidden=64, out_dim=32, lr=1e-3)
    states = env.enumerate_states()
    visited = torch.arange(0, 64, 5)
    unvisited = torch.tensor([i for i in range(64) if i % 5])
    r0 = rnd.intrinsic_reward(states)
    assert bool((r0 > 0).all())
    for _ in range(300):
        rnd.update(states[visited])
    r1 = rnd.intrinsic_reward(states)
    assert float(r1[visited].mean()) < 0.1 * float(r0[visited].mean())
    assert float(r1[unvisited].mean()) > 3 * float(r1[visited].mean())  # novelty stays where not visited


def test_intrinsic_hook_augments_rewards_edge_and_state():
    env = HyperGrid(2, 5)
    model = get_objective("tb").build_model(env, hidden=16)
    batch = Sampler(env, model).sample(10)
    for mode in ("edge", "state"):
        rnd = RND(env, hidden=16, out_dim=8)
        hook = IntrinsicReward(rnd, eta=0.5, mode=mode)
        r = rnd.intrinsic_reward(batch.states)
        expect = []
        for b in range(10):
            lo, hi = int(batch.ptr[b]), int(batch.ptr[b + 1])
            bonus = r[lo + 1:hi].sum() if mode == "edge" else r[hi - 1]
            expect.append(math.log(math.exp(float(batch.log_rewards[b])) + 0.5 * float(bonus)))
        out = hook(None, batch)
        assert torch.allclose(out.log_rewards.double(), torch.tensor(expect, dtype=torch.float64), atol=1e-5)
        assert out.log_rewards is not batch.log_rewards  # the sampled batch (replay, metrics) keeps R
        assert float(rnd.intrinsic_reward(batch.states).mean()) < float(r.mean())  # the predictor stepped
    with pytest.raises(ValueError, match="mode"):
        IntrinsicReward(RND(env), 1.0, mode="node")


def test_gafn_flow_form_matches_a_float64_reference():
    """rnd:eta,flow: log(R + b(x)) and log(P_B + b(s') / F(s')) on the intermediate states, in float64."""
    from gfn.objectives.tb_variants import AugmentedFlowTB
    torch.manual_seed(0)
    env = HyperGrid(2, 5)
    tr = _trainer(env, batch_size=12, hidden=16)
    assert tr.model.flow is None
    install_intrinsic(tr, 0.3, "flow", hidden=16, out_dim=8)
    model, obj = tr.model, tr.objective
    assert isinstance(obj, AugmentedFlowTB) and model.flow is not None
    assert any(p is model.flow.module.weight for g in tr.optimizer.param_groups for p in g["params"])
    with torch.no_grad():
        model.log_z.value.fill_(0.4)
        model.flow.module.bias.fill_(-1.5)  # bonus / F of the same order as P_B
    batch = tr.sample_batch()
    bonus = batch.info[AugmentedFlowTB.KEY].double()
    assert bonus.shape == (batch.n_rows,) and bool((bonus > 0).all())
    log_r = env.log_reward(batch.terminal_states).double()
    assert torch.allclose(batch.log_rewards.double(), torch.log(log_r.exp() + bonus[batch.last_rows]), atol=1e-5)
    with torch.no_grad():
        h = model.encode(batch.states)
        pf = model.pf_dist(batch.states).log_probs.double()
        log_f = model.flow(h).double()
    expect = []
    for b in range(batch.batch_size):
        lo, hi = int(batch.ptr[b]), int(batch.ptr[b + 1])
        d = 0.4 + sum(float(pf[k, int(batch.actions[k])]) for k in range(lo, hi)) - float(batch.log_rewards[b])
        if hi - lo > 1:
            pb = model.pb_dist(batch.states[lo + 1:hi]).log_probs.detach().double()
            for k in range(lo + 1, hi):
                p = math.exp(float(pb[k - lo - 1, int(batch.bwd_actions[k])]))
                if k < hi - 1:  # intermediate state: its bonus over its flow joins P_B
                    p += float(bonus[k]) / math.exp(float(log_f[k]))
                d -= math.log(p)
        expect.append(d)
    res = obj.residuals(model, batch)
    assert torch.allclose(res.detach().double(), torch.tensor(expect, dtype=torch.float64), atol=1e-4)
    assert any(hi - lo > 2 for lo, hi in zip(batch.ptr[:-1].tolist(), batch.ptr[1:].tolist()))
    model.zero_grad()
    res.pow(2).mean().backward()
    assert float(model.flow.module.weight.grad.abs().sum()) > 0  # F is trained through the bonus
    # a batch that never met the hook is scored by plain TB
    plain = batch.with_(info={})
    assert torch.allclose(obj.residuals(model, plain), get_objective("tb").residuals(model, plain))


def test_gafn_flow_form_refuses_other_objectives_and_split_batches():
    env = HyperGrid(2, 5)
    for name in ("db", "subtb"):
        with pytest.raises(ValueError, match="flow"):
            install_intrinsic(_trainer(env, name), 0.1, "flow")
    tr = _trainer(env)
    install_thompson(tr, 2)
    with pytest.raises(ValueError, match="tb objective alone"):
        install_intrinsic(tr, 0.1, "flow")
    tr = _trainer(env, batch_size=6)
    install_intrinsic(tr, 0.1, "flow")
    batch = tr.sample_batch()
    with pytest.raises(ValueError, match="one bonus per row"):
        tr.objective.residuals(tr.model, batch.select(torch.tensor([0, 1])).with_(info=batch.info))


# ---------------------------------------------------------------- reward families
def test_gafn_grid_reward():
    env = HyperGrid(2, 8, reward=GAFNGridReward(8, eps=1e-3))
    r = env.log_reward(env.enumerate_states()).exp().reshape(8, 8)
    modes = {(1, 6), (6, 1), (6, 6)}  # the GAFN authors' three goals; (1, 1) is not one
    for i in range(8):
        for j in range(8):
            assert math.isclose(float(r[i, j]), 1.0 if (i, j) in modes else 1e-3, rel_tol=1e-5)
    env = HyperGrid(3, 6, reward=GAFNGridReward(6))
    found = {tuple(x) for x in env.enumerate_states()[env.mode_mask()].tolist()}
    assert found == {x for x in __import__("itertools").product((1, 4), repeat=3)} - {(1, 1, 1)}
    assert int(HyperGrid(4, 16, reward=GAFNGridReward(16)).mode_mask().sum()) == 15
    for bad in (dict(height=3), dict(height=8, eps=-1.0)):
        with pytest.raises(ValueError, match="GAFNGridReward"):
            GAFNGridReward(**bad)


def test_sparse_and_deceptive_rewards():
    env = HyperGrid(2, 8, reward=SparseHyperGridReward(8, eps=1e-3))
    r = env.log_reward(env.enumerate_states()).exp().reshape(8, 8)
    modes = {(1, 1), (1, 6), (6, 1), (6, 6)}
    for i in range(8):
        for j in range(8):
            assert math.isclose(float(r[i, j]), 1.0 if (i, j) in modes else 1e-3, rel_tol=1e-5)
    env = HyperGrid(2, 8, reward=DeceptiveHyperGridReward(8, eps=1e-4, lure=0.3, R_mode=1.0))
    r = env.log_reward(env.enumerate_states()).exp().reshape(8, 8)
    assert math.isclose(float(r[0, 0]), 0.3001, rel_tol=1e-4)
    assert math.isclose(float(r[7, 7]), 1e-4, rel_tol=1e-3)
    assert math.isclose(float(r[3, 4]), 1e-4 + 0.3 * (1 - 7 / 14), rel_tol=1e-4)
    assert int(env.mode_mask().sum()) == 4 and math.isclose(float(r[6, 6]), 1.0001, rel_tol=1e-5)
    with pytest.raises(ValueError):
        SparseHyperGridReward(8, lo=0.4, hi=0.3)


def test_band_edges_do_not_round_into_the_modes():
    assert int(HyperGrid(4, 16, reward=SparseHyperGridReward(16)).mode_mask().sum()) == 16
    assert int(HyperGrid(4, 16, reward=DeceptiveHyperGridReward(16)).mode_mask().sum()) == 16


def _example(name, monkeypatch):
    import importlib.util
    import os
    import sys
    path = os.path.join(os.path.dirname(__file__), "..", "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _twice_and_reload(mod, args, tmp_path, env):
    """Run the example twice with the same seed (the runs must repeat exactly), load the first run
    back with ``env`` and check its exact tv; returns (first result, loaded run)."""
    from gfn.load import load_run
    from gfn.metrics.exact import exact_metrics
    a = mod.main(args + ["--out", str(tmp_path / "a")])
    b = mod.main(args + ["--out", str(tmp_path / "b")])
    assert a["tv_exact"] == b["tv_exact"] and a["modes_curve"] == b["modes_curve"]
    loaded = load_run(str(tmp_path / "a"), env=env)
    assert math.isclose(exact_metrics(env, loaded.model)["tv_exact"], a["tv_exact"], rel_tol=1e-6)
    return a, loaded


def test_exploration_flags_through_the_runner(tmp_path, monkeypatch):
    """--exploration and --intrinsic reach the trainer; the same seed repeats the run; bad specs are refused."""
    from gfn.errors import ConfigError
    mod = _example("train_exploration", monkeypatch)
    args = ["--ndim", "2", "--height", "8", "--iterations", "12", "--batch-size", "8", "--hidden", "16",
            "--record-every", "4", "--exploration", "thompson:3,0.6", "--intrinsic", "rnd:0.5,state", "--no-progress"]
    # the trained ensemble loads back (as the mixture of its heads) for sampling
    a, loaded = _twice_and_reload(mod, args, tmp_path, HyperGrid(2, 8, reward=SparseHyperGridReward(8)))
    assert a["n_modes"] == 4 and a["samples"] == 96 and len(a["modes_curve"]) == 3
    cfg = (tmp_path / "a" / "config.json").read_text()
    assert '"exploration": "thompson:3,0.6"' in cfg and '"intrinsic": "rnd:0.5,state"' in cfg
    with pytest.raises(ConfigError, match="exploration"):
        mod.main(args[:-5] + ["--exploration", "thompson:1", "--out", str(tmp_path / "c")])
    assert isinstance(loaded.model.pf, EnsemblePolicy) and loaded.model.pf.k == 3


def test_gafn_grid_and_flow_form_through_the_example(tmp_path, monkeypatch):
    """--reward gafn with --intrinsic rnd:eta,flow trains, repeats with the seed and loads back (with its F head)."""
    mod = _example("train_exploration", monkeypatch)
    args = ["--reward", "gafn", "--ndim", "2", "--height", "8", "--iterations", "8", "--batch-size", "8",
            "--hidden", "16", "--record-every", "4", "--intrinsic", "rnd:0.005,flow", "--no-progress"]
    env = HyperGrid(2, 8, reward=GAFNGridReward(8, eps=1e-4))  # the example's default eps
    a, loaded = _twice_and_reload(mod, args, tmp_path, env)
    assert a["n_modes"] == 3 and loaded.model.flow is not None


def test_train_stochastic_example(tmp_path, monkeypatch):
    mod = _example("train_stochastic", monkeypatch)
    r = mod.main(["--height", "4", "--iterations", "5", "--batch-size", "8", "--hidden", "16", "--no-progress",
                  "--objective-arg", "dynamics=exact", "--out", str(tmp_path / "s")])
    assert 0.0 <= r["tv_exact"] <= 1.0 and math.isfinite(r["jsd_exact"])


# ---------------------------------------------------------------- GAFN authors' RND and the benchmark
def test_paper_rnd_scores_the_l2_norm_and_decays():
    from gfn.intrinsic import PAPER_RND
    env = HyperGrid(2, 8)
    rnd = RND(env, **PAPER_RND)
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in rnd.predictor.modules())
    assert rnd.out_dim == 128 and rnd.target[0].out_features == 256
    states = env.enumerate_states()
    x = env.featurize(states).float()
    ref = (rnd.predictor(x).double() - rnd.target(x).double()).pow(2).sum(-1).sqrt()
    r0 = rnd.intrinsic_reward(states)
    torch.testing.assert_close(r0.double(), ref, rtol=1e-5, atol=1e-6)
    mse = RND(env, hidden=256, out_dim=128, activation=torch.nn.LeakyReLU)
    mse.load_state_dict(rnd.state_dict())
    torch.testing.assert_close(mse.intrinsic_reward(states).double(), ref.pow(2) / 128, rtol=1e-4, atol=1e-7)
    for _ in range(200):
        rnd.update(states[:8])
    assert float(rnd.intrinsic_reward(states[:8]).mean()) < 0.3 * float(r0[:8].mean())
    with pytest.raises(ValueError, match="RND error"):
        RND(env, error="l1")


def _bench():
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import exploration as bench
    return bench


def test_exploration_benchmark_per_method_epsilon_and_merge(tmp_path):
    bench = _bench()
    common = ["--ndim", "2", "--height", "8", "--iterations", "4", "--batch-size", "4", "--hidden", "16",
              "--record-every", "2", "--seeds", "1", "2"]
    a = bench.main(common + ["--methods", "tb", "gafn", "--epsilon", "tb=0.25", "--rnd-protocol", "paper",
                             "--out", str(tmp_path / "a")])
    assert {(r["method"], r["epsilon"]) for r in a["runs"]} == {("tb", 0.25), ("gafn", 0.0)}
    assert all(r["curve"][-1]["samples"] == 16 for r in a["runs"])
    b = bench.main(common + ["--methods", "ts", "--heads", "2", "--out", str(tmp_path / "b")])
    m = bench.main(["--merge", str(tmp_path / "a.json") + ":tb", str(tmp_path / "b.json"),
                    "--out", str(tmp_path / "m")])
    assert list(m["summary"]) == ["tb", "ts"] and (tmp_path / "m.png").exists()
    assert m["summary"]["tb"] == a["summary"]["tb"] and m["summary"]["ts"] == b["summary"]["ts"]
    assert {r["method"] for r in m["runs"]} == {"tb", "ts"} and len(m["runs"]) == 4
    assert m["settings"]["tb"]["epsilon_of"]["tb"] == 0.25
    c = bench.main(common[:-2] + ["1", "--methods", "gafn", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="same seeds"):
        bench.main(["--merge", str(tmp_path / "a.json") + ":tb", str(tmp_path / "c.json"), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="twice"):
        bench.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "a.json") + ":tb", "--out", str(tmp_path / "x")])
    g = bench.main(common + ["--reward", "gafn", "--methods", "gafn", "--intrinsic-mode", "flow",
                             "--out", str(tmp_path / "g")])
    assert g["runs"][0]["n_modes"] == 3 and g["setting"]["reward"] == "gafn"
    with pytest.raises(SystemExit, match="same seeds, samples, grid"):  # another reward family
        bench.main(["--merge", str(tmp_path / "a.json") + ":tb", str(tmp_path / "g.json"), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="METHOD=VALUE"):
        bench.parse_epsilon(["db=0.1"], ["tb"])
    with pytest.raises(SystemExit, match=r"\[0, 1\]"):
        bench.parse_epsilon(["1.5"], ["tb"])
