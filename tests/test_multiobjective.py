"""Multi-objective GFlowNets: vector rewards, scalarisation, preferences, wiring, tasks."""

import math

import pytest
import torch

from gfn.config import RunConfig
from gfn.env import EnvError
from gfn.envs.multiobjective import BraninCurrin, NGrams, branin, currin
from gfn.metrics import multiobjective as mm
from gfn.preference_flags import apply_preference_flags
from gfn.preferences import (Dirichlet, MultiObjectiveReward, PreferenceSampler, PreferenceScalarization,
                             checked_log_rewards, preference_grid, scalarize, scalarize_cond)


# ---------------------------------------------------------------- scalarisation against hand-computed values
def test_weighted_sum_and_tchebycheff_by_hand():
    r = torch.tensor([[0.5, 0.2], [0.1, 0.8]], dtype=torch.float64)
    w = torch.tensor([[0.3, 0.7], [0.5, 0.5]], dtype=torch.float64)
    ws = scalarize(r.log(), w, "weighted_sum").exp()
    assert torch.allclose(ws, torch.tensor([0.3 * 0.5 + 0.7 * 0.2, 0.05 + 0.4], dtype=torch.float64))
    tch = scalarize(r.log(), w, "tchebycheff").exp()
    assert torch.allclose(tch, torch.tensor([min(0.15, 0.14), min(0.05, 0.4)], dtype=torch.float64))


def test_scalarize_corner_preference_and_beta():
    r = torch.tensor([[0.5, 0.2]], dtype=torch.float64)
    corner = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    # a zero weight removes the objective in both scalarisations
    assert math.isclose(float(scalarize(r.log(), corner, "weighted_sum").exp()), 0.5)
    assert math.isclose(float(scalarize(r.log(), corner, "tchebycheff").exp()), 0.5)
    cond = torch.tensor([[0.3, 0.7, 2.5]], dtype=torch.float64)
    got = scalarize_cond(r.log(), cond, "weighted_sum", with_beta=True)
    assert math.isclose(float(got), 2.5 * math.log(0.29), rel_tol=1e-12)
    got = scalarize_cond(r.log(), cond[:, :2], "tchebycheff", with_beta=False, beta=3.0)
    assert math.isclose(float(got), 3.0 * math.log(0.14), rel_tol=1e-12)


def test_scalarize_errors():
    lr = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="sum to 1"):
        scalarize(lr, torch.tensor([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=">= 0"):
        scalarize(lr, torch.tensor([[1.5, -0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="scalarization"):
        scalarize(lr, torch.full((2, 2), 0.5), "product")
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        scalarize_cond(lr, torch.full((2, 2), 0.5), with_beta=True)
    with pytest.raises(ValueError, match="beta > 0"):
        scalarize_cond(lr, torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 1.0]]), with_beta=True)


# ---------------------------------------------------------------- preference distributions
def test_preference_grid():
    g = preference_grid(2, 10)
    assert g.shape == (11, 2)
    assert torch.allclose(g[:, 0], torch.arange(11) / 10.0)
    g3 = preference_grid(3, 4)
    assert g3.shape == (15, 3)  # C(4 + 2, 2)
    assert torch.allclose(g3.sum(1), torch.ones(15))
    assert len({tuple(r) for r in g3.tolist()}) == 15
    with pytest.raises(ValueError):
        preference_grid(1, 4)


def test_dirichlet_moments_and_sampler_width():
    torch.manual_seed(0)
    w = Dirichlet(3, alpha=2.0).sample(20000).double()
    assert torch.allclose(w.sum(1), torch.ones(20000, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(w.mean(0), torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01)
    var = (1 / 3) * (2 / 3) / (3 * 2.0 + 1)  # Dirichlet(alpha 1_k): a_i (a0 - a_i) / (a0^2 (a0 + 1))
    assert torch.allclose(w.var(0), torch.full((3,), var, dtype=torch.float64), atol=0.003)
    with pytest.raises(ValueError):
        Dirichlet(2, alpha=0.0)
    s = PreferenceSampler(2, beta_dist="uniform:1,3")
    c = s(5)
    assert c.shape == (5, 3) and bool(((c[:, 2] >= 1) & (c[:, 2] <= 3)).all())
    assert PreferenceSampler(2)(4).shape == (4, 2)


# ---------------------------------------------------------------- the reward contract
class _BadReward(MultiObjectiveReward):
    objective_names = ("a", "b")

    def __init__(self, out):
        self.out = out

    def log_rewards(self, states):
        return self.out


def test_checked_log_rewards_errors():
    env = BraninCurrin(4)
    s = env.enumerate_states()[:3]
    env.reward = _BadReward(torch.zeros(3))
    with pytest.raises(EnvError, match=r"shape \(3, 2\)"):
        checked_log_rewards(env, s)
    env.reward = _BadReward(torch.tensor([[0.0, float("nan")]] * 3))
    with pytest.raises(EnvError, match="'b' is nan"):
        checked_log_rewards(env, s)
    from gfn.envs import HyperGrid
    with pytest.raises(EnvError, match="no multi-objective reward"):
        checked_log_rewards(HyperGrid(2, 4), s)


def test_branin_currin_values_and_scalar_contract():
    # the classic minimisers of Branin (value 0.397887) on its domain
    a = torch.tensor([-math.pi, math.pi, 9.42478], dtype=torch.float64)
    b = torch.tensor([12.275, 2.275, 2.475], dtype=torch.float64)
    assert torch.allclose(branin(a, b), torch.full((3,), 0.397887, dtype=torch.float64), atol=1e-5)
    # Currin at (0.5, 0.5): (1 - e^-1) * (287.5 + 475 + 1046 + 60) / (12.5 + 125 + 2 + 20)
    want = (1 - math.exp(-1)) * 1868.5 / 159.5
    assert math.isclose(float(currin(torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))), want, rel_tol=1e-9)
    env = BraninCurrin(32)
    s = env.enumerate_states()
    vec = checked_log_rewards(env, s).double()
    # the scalar log_reward of the sampler is the equal-weight weighted sum
    assert torch.allclose(env.checked_log_reward(s).double(), torch.log(vec.exp().mean(1)), atol=1e-5)


def test_ngrams_counts():
    env = NGrams(("AB", "CD"), alphabet="ABCD", max_len=6)
    s = env.from_strings(["ABABCD", "CDCDCD", "AAAAAA"])
    assert env.reward.counts(s).tolist() == [[2, 1], [0, 3], [0, 0]]
    with pytest.raises(EnvError, match="outside the alphabet"):
        NGrams(("AX", "CD"))


# ---------------------------------------------------------------- exact targets
def test_exact_preference_targets_sum_to_one_and_match_brute_force():
    env = NGrams(("AB", "CD"), alphabet="ABCD", max_len=3, min_len=1)
    grid = preference_grid(2, 4)
    t = mm.exact_preference_targets(env, grid, "tchebycheff", beta=2.0)
    assert torch.allclose(t.sum(1), torch.ones(grid.shape[0], dtype=torch.float64), atol=1e-12)
    # brute force for one preference: python over every terminal string
    states = env.enumerate_states()
    term = env.forward_mask(states)[:, -1]
    w = grid[1].double().tolist()
    counts = env.reward.counts(states[term]).double()
    r = (counts / torch.tensor([2.0, 2.0], dtype=torch.float64)).clamp(min=1e-3)
    vals = [min(wi * ri for wi, ri in zip(w, row) if wi > 0) ** 2 for row in r.tolist()]
    q = torch.tensor(vals, dtype=torch.float64) / sum(vals)
    assert torch.allclose(t[1][term], q, atol=1e-6)
    assert float(t[1][~term].sum()) == 0.0
    lz = mm.exact_log_partitions(env, grid[1:2], "tchebycheff", beta=2.0)
    assert math.isclose(float(lz), math.log(sum(vals)), rel_tol=1e-5)


def test_exact_pareto_front_branin_currin_brute_force():
    env = BraninCurrin(8)
    r, _ = mm.enumerated_objectives(env)
    front = mm.exact_pareto_front(env)
    brute = [p for p in r.tolist() if not any(all(q_ >= p_ for q_, p_ in zip(q, p)) and q != p for q in r.tolist())]
    assert sorted(map(tuple, front.tolist())) == sorted(set(map(tuple, brute)))


# ---------------------------------------------------------------- wiring (--condition pref)
def _trainer(env, condition="pref", **kw):
    from gfn.runner import build_objective_and_model, trainer_config
    from gfn.trainer import Trainer
    cfg = RunConfig(condition=condition, batch_size=8, hidden=32, n_layers=1, **kw)
    obj, model = build_objective_and_model(cfg, env)
    tr = Trainer(env, model, obj, trainer_config(cfg))
    return cfg, tr


def test_apply_preference_flags_rewrites_rewards_and_restores():
    torch.manual_seed(0)
    env = BraninCurrin(6)
    cfg, tr = _trainer(env, "pref+beta", beta_dist="uniform:1,2", scalarization="tchebycheff")
    ext = apply_preference_flags(cfg, tr)
    assert tr.model.cond_dim == 3 and tr.model.log_z.cond_dim == 3
    batch = tr.sample_batch()
    vec = checked_log_rewards(env, batch.terminal_states).double()
    w, beta = batch.cond[:, :2].double(), batch.cond[:, 2].double()
    want = beta * scalarize(vec, w, "tchebycheff")
    assert torch.allclose(batch.log_rewards.double(), want, atol=1e-5)
    info = tr.train_step()
    # after the step the sampler's scalar rewards are back (for logs and metrics)
    assert torch.allclose(info.batch.log_rewards, env.checked_log_reward(info.batch.terminal_states))
    m = ext.metrics(tr)
    assert "tv_exact_w0.3_0.7_beta1" in m and 0 <= m["tv_exact_pref_mean"] <= 1
    assert ext.conds.shape == (11, 3)


def test_apply_preference_flags_errors():
    from gfn.envs import HyperGrid
    cfg, tr = _trainer(HyperGrid(2, 4))
    with pytest.raises(ValueError, match="vector rewards"):
        apply_preference_flags(cfg, tr)
    cfg, tr = _trainer(BraninCurrin(4), local_search=[2, 1])
    with pytest.raises(ValueError, match="local-search"):
        apply_preference_flags(cfg, tr)
    cfg, tr = _trainer(BraninCurrin(4))
    cfg.objective = "fldb"
    from gfn.objectives import get_objective
    tr.objective = get_objective("fldb")
    with pytest.raises(ValueError, match="forward-looking"):
        apply_preference_flags(cfg, tr)
    with pytest.raises(ValueError, match="scalarization"):
        PreferenceScalarization("product")


def test_run_with_condition_pref_is_deterministic(tmp_path):
    from gfn.runner import run
    out = []
    for i in range(2):
        cfg = RunConfig(condition="pref", iterations=6, batch_size=8, hidden=32, n_layers=1, progress=False,
                        out=str(tmp_path / f"r{i}"), eval_pref_steps=2, checkpoint_every=0)
        out.append(run(cfg, BraninCurrin(5), name="moo"))
    assert out[0]["loss"] == out[1]["loss"]
    assert out[0]["tv_exact_pref_mean"] == out[1]["tv_exact_pref_mean"]
    assert "tv_exact_w0.5_0.5" in out[0]


def test_tfbind8_multi_objectives_and_exact_targets(data_dir):
    from gfn.envs.multiobjective import TFBind8Multi
    env = TFBind8Multi(("SIX6", "PAX6", "KLF1"), data_dir=str(data_dir))
    r, term = mm.enumerated_objectives(env)
    assert int(term.sum()) == 4 ** 8 and r.shape[1] == 3
    assert float(r[term].min()) == pytest.approx(1e-3) and float(r[term].max()) == pytest.approx(1.0)
    # SIX6 column is TFBind8's normalised E-score: R_SIX6^3 * 10 is TFBind8's reward (above the floor)
    from gfn.envs.sequences import TFBind8
    single = TFBind8(data_dir=str(data_dir))
    x = env.from_strings(["ACGTACGT", "TTTTAAAA", "GGGGCCCC"])
    six6 = checked_log_rewards(env, x)[:, 0].double()
    assert torch.allclose(single.log_reward(x).double(), math.log(10) + 3 * six6, atol=1e-4)
    t = mm.exact_preference_targets(env, preference_grid(3, 2))
    assert torch.allclose(t.sum(1), torch.ones(6, dtype=torch.float64), atol=1e-9)
    with pytest.raises(EnvError, match="unknown transcription factor"):
        TFBind8Multi(("SIX6", "XYZ"), data_dir=str(data_dir))
    with pytest.raises(EnvError, match="2 or 3 distinct"):
        TFBind8Multi(("SIX6",), data_dir=str(data_dir))


def test_molecule_objectives():
    pytest.importorskip("rdkit")
    from gfn.envs.molecules import MoleculeEnv
    from gfn.envs.multiobjective import MoleculeMOReward
    from gfn.envs.molecules.metrics import random_policy_terminals
    env = MoleculeEnv(max_atoms=6, reward=MoleculeMOReward())
    s = random_policy_terminals(env, 8, generator=torch.Generator().manual_seed(0))
    props = env.reward.props.properties(s)
    r = checked_log_rewards(env, s).double().exp()
    for row, p in zip(r.tolist(), props):
        assert row[0] == pytest.approx(max(p["qed"], 1e-3), rel=1e-6)
        assert row[1] == pytest.approx(max((10 - p["sa"]) / 9, 1e-3), rel=1e-6)
        assert row[2] == pytest.approx(max(math.exp(-((p["mw"] - 350) / 100) ** 2), 1e-3), rel=1e-6)
    base = MoleculeMOReward(scalar="qed_sa", exponent=4.0)
    assert torch.allclose(base.log_reward(s).double(), 4 * (r[:, 0] * r[:, 1]).clamp(min=1e-3).log(), atol=1e-5)
