"""Estimated metrics (gfn/metrics/estimated.py) against the exact ones on enumerable environments.

HyperGrid 2D h8 and Ising 3x3, each with an untrained model and one trained briefly with TB:
importance-sampled log p_T(x) against the exact terminal distribution, log Z estimators against
the enumerated log Z; a tree-shaped MDP where one backward trajectory is exact; conditional
models; a continuous density on Box checked against the histogram of its own samples.
"""

import math

import pytest
import torch

from gfn.envs import BitSequence, Box, HyperGrid, Ising
from gfn.estimators import build_gflownet
from gfn.metrics import continuous as cm
from gfn.metrics import exact_terminal_distribution, jsd, log_partition
from gfn.metrics import estimated as est
from gfn.objectives import get_objective
from gfn.objectives.tb import trajectory_log_ratio
from gfn.sampler import Sampler
from gfn.trainer import Trainer, TrainerConfig

CASES = ["hypergrid-untrained", "hypergrid-trained", "ising-untrained", "ising-trained"]


def _train(env, iterations: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_gflownet(env, hidden=64)
    trainer = Trainer(env, model, get_objective("tb"), TrainerConfig(batch_size=64, lr=3e-3, lr_log_z=0.1))
    for _ in range(iterations):
        trainer.train_step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def models():
    """(env, model) for every case; the trained models see 300 TB iterations of 64 trajectories."""
    out = {}
    for name, make in (("hypergrid", lambda: HyperGrid(2, 8)), ("ising", lambda: Ising(3))):
        env = make()
        out[f"{name}-untrained"] = (env, _train(env, 0))
        out[f"{name}-trained"] = (env, _train(env, 300))
    return out


def _exact_log_p(env, model, x):
    p = exact_terminal_distribution(env, model)
    return p[env.state_index(x)].log()


@pytest.mark.parametrize("case", CASES)
def test_log_prob_estimate_matches_exact(models, case):
    env, model = models[case]
    x = est.exact_target_sampler(env)(200, torch.Generator().manual_seed(1))
    exact = _exact_log_p(env, model, x)
    mae = float((est.log_prob_estimate(env, model, x, k=64, generator=torch.Generator().manual_seed(2))
                 - exact).abs().mean())
    if "-trained" in case:
        assert mae <= 0.05, mae
    else:  # untrained P_B is far from the posterior: k = 64 is not enough, many more samples are
        assert mae <= 0.2, mae
        few = x[:20]
        big = est.log_prob_estimate(env, model, few, k=4096, generator=torch.Generator().manual_seed(3))
        assert float((big - exact[:20]).abs().mean()) <= 0.02


@pytest.mark.parametrize("case", CASES)
def test_log_z_iw_converges(models, case):
    env, model = models[case]
    log_z = log_partition(env)
    g = torch.Generator().manual_seed(4)
    errors = [abs(est.log_z_estimates(env, model, n, generator=g)["log_z_iw"] - log_z) for n in (10, 100, 10_000)]
    assert errors[-1] <= 0.2 and errors[-1] <= max(errors[0], 0.01), errors
    if case.endswith("untrained"):
        assert errors[0] > 0.2 > errors[-1], errors


@pytest.mark.parametrize("case", CASES)
def test_log_z_bounds_order(models, case):
    """elbo <= iw always (Jensen on the sample); the bounds on log Z hold in expectation, so a
    single estimate may cross log Z by sampling noise: allowed up to 3 standard errors."""
    env, model = models[case]
    log_z = log_partition(env)
    m = est.log_z_estimates(env, model, 10_000, generator=torch.Generator().manual_seed(5))
    lw = est.backward_log_weights(env, model, est.exact_target_sampler(env)(10_000, torch.Generator().manual_seed(6)),
                                  generator=torch.Generator().manual_seed(7))
    eubo, eubo_se = float(lw.mean()), float(lw.std()) / 100.0
    assert m["log_z_elbo"] <= m["log_z_iw"]
    assert m["log_z_elbo"] <= log_z + 3 * m["log_z_elbo_se"]
    assert m["log_z_iw"] <= log_z + 3 * m["log_z_iw_se"]
    assert eubo >= log_z - 3 * eubo_se
    assert 0 < m["ess"] <= 1
    if case.endswith("untrained"):  # gaps far above the noise: the strict order
        assert m["log_z_elbo"] < m["log_z_iw"] < log_z < eubo


def test_tree_mdp_one_backward_trajectory_is_exact():
    """Append-only sequences: each object has one trajectory, so k = 1 gives log p_T(x) exactly."""
    torch.manual_seed(0)
    env = BitSequence(word_size=1, seq_len=4, mdp="append")
    model = build_gflownet(env, hidden=32)
    x = est.exact_target_sampler(env)(50, torch.Generator().manual_seed(0))
    torch.testing.assert_close(est.log_prob_estimate(env, model, x, k=1), _exact_log_p(env, model, x),
                               atol=1e-5, rtol=0)


def test_conditional_model():
    """A conditional model on the tree MDP: exact at every conditioning value, shared ([c]) or
    per object ([n, c]), and the conditioning changes the result."""
    torch.manual_seed(0)
    env = BitSequence(word_size=1, seq_len=4, mdp="append")
    model = build_gflownet(env, hidden=32, cond_dim=1)
    x = est.exact_target_sampler(env)(30, torch.Generator().manual_seed(0))
    results = []
    for beta in (0.5, 3.0):
        cond = torch.tensor([beta])
        exact = exact_terminal_distribution(env, model, cond)[env.state_index(x)].log()
        torch.testing.assert_close(est.log_prob_estimate(env, model, x, k=1, cond=cond), exact, atol=1e-5, rtol=0)
        per_object = est.log_prob_estimate(env, model, x, k=2, cond=cond.expand(30, 1))
        torch.testing.assert_close(per_object, exact, atol=1e-5, rtol=0)
        results.append(exact)
    assert float((results[0] - results[1]).abs().max()) > 0.05  # the conditioning matters
    mixed = torch.tensor([[0.5], [3.0]]).repeat(15, 1)
    got = est.log_prob_estimate(env, model, x, k=1, cond=mixed)
    want = torch.where(mixed[:, 0] == 0.5, results[0], results[1])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_scoring_matches_objective_scoring_and_cache_is_exact(monkeypatch):
    """The distinct-state cache gives the log-ratios that the objectives compute row by row; the
    table index and the sorted-key index agree bit for bit."""
    torch.manual_seed(0)
    env = HyperGrid(3, 5)
    model = build_gflownet(env, hidden=32)
    batch = Sampler(env, model).sample(300)
    torch.testing.assert_close(est.trajectory_log_ratios(model, batch),
                               trajectory_log_ratio(model, batch).detach(), atol=1e-5, rtol=0)
    x = batch.terminal_states
    table = est.log_prob_estimate(env, model, x, k=8, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(est._StateCache, "TABLE_MAX", 0)
    bisect = est.log_prob_estimate(env, model, x, k=8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(table, bisect)


def test_box_density_matches_histogram_of_own_samples():
    """Continuous: exp(log_prob_estimate) is a density of the sampler.  Its integral over the box
    is 1 and its cell masses match the histogram of 40,000 samples (JSD <= 0.01 on 10 x 10 cells)."""
    torch.manual_seed(0)
    env = Box(delta=0.25)
    model = build_gflownet(env, hidden=64, n_layers=2)
    trainer = Trainer(env, model, get_objective("tb"), TrainerConfig(batch_size=128, lr=1e-3))
    for _ in range(100):
        trainer.train_step()
    model.eval()
    bounds = [(0.0, 1.0), (0.0, 1.0)]
    with torch.no_grad():
        x = Sampler(env, model).sample(40_000).terminal_states
    g = torch.Generator().manual_seed(1)

    def log_density(pts):
        return est.log_prob_estimate(env, model, pts.float(), k=16, generator=g)

    bins, sub = 10, 4
    pts, vol = cm._subgrid_points(bounds, bins, sub)
    lp = log_density(pts)
    assert torch.isfinite(lp).all()
    log_integral = float(torch.logsumexp(lp, 0)) + math.log(vol)
    assert abs(log_integral) <= 0.05, log_integral
    q = cm.target_grid_mass(lambda _: lp, bounds, bins, sub).flatten()
    p = cm.histogram(x, bounds, bins).flatten()
    assert jsd(p, q) <= 0.01, jsd(p, q)


def test_estimated_metrics_function(models):
    env, model = models["hypergrid-trained"]
    fn = est.EstimatedMetrics(env, n=2000, k=16, n_test=200, top_k=10)
    first = fn.evaluate(model)
    x_test = fn.x_test
    second = fn.evaluate(model)
    assert fn.x_test is x_test  # the test set is drawn once
    for m in (first, second):
        assert m["estimate_n"] == 2000 and m["estimate_k"] == 16 and m["estimate_n_test"] == 200
        assert m["log_z_true"] == pytest.approx(log_partition(env))
        for name in ("elbo", "iw", "eubo"):
            assert m[f"delta_log_z_{name}"] == pytest.approx(m["log_z_true"] - m[f"log_z_{name}"])
            assert abs(m[f"delta_log_z_{name}"]) < 0.05
        # 3 reward levels: ties in log R cap Spearman below 1 for any continuous log p-hat
        assert m["pearson_log_p_log_r"] > 0.99 and m["spearman_log_p_log_r"] > 0.9
        # 10 best distinct cells: the 4 modes (R = 2.6) and 6 of the outer ring (R = 0.6)
        assert m["samples_top10_log_reward"] == pytest.approx((4 * math.log(2.6) + 6 * math.log(0.6)) / 10, abs=1e-5)
        assert 0 < m["samples_mean_reward"] <= 2.6


def test_estimated_metrics_without_sampler_uses_first_evaluation():
    torch.manual_seed(0)
    env = Ising(6)
    model = build_gflownet(env, hidden=32)
    fn = est.EstimatedMetrics(env, n=300, k=4, n_test=100)
    assert fn.target_sampler is None and fn.x_test is None
    m = fn.evaluate(model)
    assert fn.x_test.shape == (100, 36) and "log_z_eubo" not in m and "delta_log_z_iw" not in m
    assert all(math.isfinite(m[k]) for k in ("log_z_elbo", "log_z_iw", "ess", "pearson_log_p_log_r"))


def test_correlations_against_float64_reference():
    x = torch.tensor([1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0, -1.0])
    y = torch.tensor([0.5, 0.1, 0.9, 2.0, 1.0, 3.0, 3.0, float("-inf")])  # last pair is dropped
    xs, ys = x[:-1].double(), y[:-1].double()
    ref = float(((xs - xs.mean()) * (ys - ys.mean())).sum() / ((xs - xs.mean()).norm() * (ys - ys.mean()).norm()))
    assert est.pearson(x, y) == pytest.approx(ref, abs=1e-12)
    assert est.average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]
    rx, ry = torch.tensor([0, 1.5, 1.5, 3, 5, 5, 5]), torch.tensor([1, 0, 2, 4, 3, 5.5, 5.5])
    assert est.spearman_ties(x, y) == pytest.approx(est.pearson(rx, ry), abs=1e-12)
    assert math.isnan(est.pearson(torch.ones(5), torch.arange(5.0)))


def test_log_z_from_log_weights_reference():
    lw = torch.tensor([0.0, math.log(2.0), math.log(3.0), math.log(6.0)], dtype=torch.float64)
    m = est.log_z_from_log_weights(lw)
    assert m["log_z_iw"] == pytest.approx(math.log(3.0))
    assert m["log_z_elbo"] == pytest.approx(math.log(36.0) / 4)
    assert m["ess"] == pytest.approx(144 / 50 / 4)
    same = est.log_z_from_log_weights(torch.full((10,), 1.5, dtype=torch.float64))
    assert same["ess"] == pytest.approx(1.0) and same["log_z_iw_se"] == pytest.approx(0.0, abs=1e-7)
    with_invalid = est.log_z_from_log_weights(torch.tensor([0.0, float("-inf")], dtype=torch.float64))
    assert with_invalid["log_z_iw"] == pytest.approx(math.log(0.5)) and with_invalid["ess"] == pytest.approx(0.5)


def test_errors():
    env = HyperGrid(2, 4)
    model = build_gflownet(env, hidden=16)
    x = env.initial_states(3) + 1
    with pytest.raises(ValueError, match="k must be a positive integer"):
        est.log_prob_estimate(env, model, x, k=0)
    with pytest.raises(ValueError, match="cond must have shape"):
        est.log_prob_estimate(env, model, x, k=2, cond=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="NaN"):
        est.log_z_from_log_weights(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="at least one"):
        est.log_z_from_log_weights(torch.empty(0))
    with pytest.raises(TypeError, match="target_sampler"):
        est.EstimatedMetrics(env, target_sampler=3)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        est.EstimatedMetrics(env, n=0)


def test_test_set_hook_survives_a_resume():
    """Without a target sampler the test set comes from the first evaluation; the hook's state
    carries it into a resumed run, which then reports the same correlations."""
    torch.manual_seed(0)
    env = Ising(5)
    model = build_gflownet(env, hidden=16)
    first = est.EstimatedMetrics(env, n=200, k=4, n_test=50)
    torch.manual_seed(1)
    m1 = first.evaluate(model)
    state = first.hook.state_dict()
    assert state["x_test"].shape == (50, 25)
    resumed = est.EstimatedMetrics(env, n=200, k=4, n_test=50)
    resumed.hook.load_state_dict(state)
    torch.manual_seed(1)
    m2 = resumed.evaluate(model)
    assert torch.equal(resumed.x_test, first.x_test)
    assert m1 == m2
