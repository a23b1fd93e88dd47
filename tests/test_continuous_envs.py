"""Box and Line: check_env, forward/backward consistency of fixed policies, sampling and
scoring through the generic sampler/objectives, move validation, continuous metrics."""

from __future__ import annotations

import math

import pytest
import torch

from gfn import EnvError, Sampler, check_env
from gfn.metrics import continuous as cm
from gfn.continuous import ContinuousPolicy
from gfn.estimators import build_continuous_gflownet
from gfn.envs import Box, Line, make_env
from gfn.objectives import get_objective
from gfn.ops import segment_sum


def _fixed_model(env, seed=0):
    """P_F = the zero-parameter family (head zeroed), P_B = the env's fixed backward policy."""
    torch.manual_seed(seed)
    m = build_continuous_gflownet(env, hidden=16, n_layers=1, uniform_pb=True)
    for p in m.pf.head.parameters():
        torch.nn.init.zeros_(p)
    return m


def _log_ratio(model, batch):
    with torch.no_grad():
        s = model.evaluate(batch)
    return segment_sum(s.log_pf - s.log_pb, batch.ptr), s


@pytest.mark.parametrize("env", [Box(), Box(delta=0.1), Line(), Line(n_steps=1)], ids=["box", "box-0.1", "line", "line-1"])
def test_check_env_passes(env):
    report = check_env(env, n_trajectories=48)
    assert report.ok, str(report)


class _NoInverseBox(Box):
    def backward_step(self, states, actions):
        return (states - 0.5 * actions).clamp(0, 1)


class _NeverEndingLine(Line):
    def forward_mask(self, states):
        m = super().forward_mask(states)
        return torch.stack([torch.ones_like(m[:, 0]), torch.zeros_like(m[:, 1])], -1)

    def check_actions(self, states, actions, backward=False):
        pass


def test_check_env_finds_broken_continuous_envs():
    report = check_env(_NoInverseBox(), n_trajectories=16)
    assert not report.ok and any("does not invert" in v for v in report.violations), str(report)
    report = check_env(_NeverEndingLine(n_steps=2), n_trajectories=8, max_steps=20)
    assert not report.ok and any("did not end" in v for v in report.violations), str(report)


def test_registered_names():
    assert isinstance(make_env("box", delta=0.2), Box)
    assert isinstance(make_env("line"), Line)


def test_line_fixed_policy_ratio_is_the_exact_marginal():
    """P_F: N(0, 1) increments; P_B: the Brownian bridge -> P_F(tau) / P_B(tau | x) = N(x; 0, n)
    exactly, for forward- and backward-sampled trajectories alike."""
    env = Line(n_steps=4, bridge_std=1.0)
    model = _fixed_model(env)
    sampler = Sampler(env, model)
    fwd = sampler.sample(256, generator=torch.Generator().manual_seed(0))
    x = fwd.terminal_states
    bwd = sampler.sample_backward(x, generator=torch.Generator().manual_seed(1))
    exact = torch.distributions.Normal(0.0, 2.0).log_prob(x[:, 0])
    for batch in (fwd, bwd):
        lr, s = _log_ratio(model, batch)
        assert torch.isfinite(s.log_pf).all() and torch.isfinite(s.log_pb).all()
        assert torch.allclose(lr, exact, atol=1e-4)
    assert torch.allclose(bwd.terminal_states, x)
    assert torch.allclose(bwd.initial_states, env.initial_states(256))


def test_box_fixed_policy_forward_backward_consistency():
    """E_{x ~ U[0,1]^2, tau ~ P_B(.|x)} [P_F(tau) / P_B(tau|x)] = integral of the terminal density = 1:
    the change-of-variable terms of the first move and the arc moves match on both sides."""
    env = Box()
    model = _fixed_model(env)
    sampler = Sampler(env, model)
    g = torch.Generator().manual_seed(0)
    n = 20_000
    x = torch.rand(n, 2, generator=g)
    batch = sampler.sample_backward(x, generator=g)
    lr, s = _log_ratio(model, batch)
    assert torch.isfinite(lr).all()
    w = lr.double().exp()
    se = float(w.std()) / math.sqrt(n)
    assert abs(float(w.mean()) - 1.0) < max(4 * se, 0.02), (float(w.mean()), se)


@pytest.mark.parametrize("env", [Box(), Line()], ids=["box", "line"])
def test_kept_log_probs_equal_recomputed_and_are_finite(env):
    torch.manual_seed(0)
    model = get_objective("tb").build_model(env, hidden=32, n_layers=2)
    assert isinstance(model.pf, ContinuousPolicy)
    sampler = Sampler(env, model)
    batch = sampler.sample(64, keep_log_probs=True)
    s = model.evaluate(batch.with_(log_pf=batch.log_pf.detach()))
    assert torch.allclose(batch.log_pf.detach(), s.log_pf, atol=1e-5)
    assert torch.isfinite(s.log_pf).all() and torch.isfinite(s.log_pb).all()
    # exit rows are exactly the last rows
    assert torch.equal(env.is_exit(batch.actions), batch.is_last)
    back = sampler.sample_backward(batch.terminal_states)
    s2 = model.evaluate(back)
    assert torch.isfinite(s2.log_pf).all() and torch.isfinite(s2.log_pb).all()


@pytest.mark.parametrize("objective", ["tb", "db"])
@pytest.mark.parametrize("env", [Box(), Line()], ids=["box", "line"])
def test_objectives_train_a_few_steps(env, objective):
    from gfn import Trainer, TrainerConfig
    torch.manual_seed(0)
    obj = get_objective(objective)
    model = obj.build_model(env, hidden=32, n_layers=2)
    trainer = Trainer(env, model, obj, TrainerConfig(batch_size=32, replay_capacity=64, replay_fraction=0.25))
    losses = trainer.train(4)
    assert all(math.isfinite(v) for v in losses)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_same_seed_same_run():
    env = Box()

    def once():
        torch.manual_seed(3)
        model = get_objective("tb").build_model(env, hidden=16, n_layers=1)
        return Sampler(env, model).sample(32).terminal_states

    assert torch.equal(once(), once())


def test_box_geometry():
    env = Box(delta=0.25)
    s = torch.tensor([[0.0, 0.0], [0.1, 0.1], [0.9, 0.9], [0.5, 0.2]])
    assert env.forward_mask(s).tolist() == [[True, False], [True, True], [False, True], [True, True]]
    assert env.near_origin(s).tolist() == [False, True, False, False]
    lo, hi = env.backward_arc(s[3:])
    assert float(lo) == pytest.approx(0.0) and float(hi) == pytest.approx(math.asin(0.8), abs=1e-6)


def test_box_rejects_invalid_moves():
    env = Box(delta=0.25)
    s = torch.tensor([[0.5, 0.5]])
    with pytest.raises(EnvError, match="length 0.25"):
        env.apply(s, torch.tensor([[0.1, 0.0]]))
    with pytest.raises(EnvError, match="invalid action"):
        env.apply(torch.tensor([[0.9, 0.5]]), torch.tensor([[0.25, 0.0]]))  # leaves the box
    with pytest.raises(EnvError, match="invalid backward action"):
        env.apply(torch.tensor([[0.1, 0.1]]), torch.tensor([[0.25, 0.0]]), backward=True)  # must go to s_0
    with pytest.raises(EnvError, match="exit"):
        env.apply(s, env.exit_actions(1))
    with pytest.raises(EnvError, match="shape"):
        env.apply(s, torch.zeros(1, 3))
    # the only way back from |s| < delta is s_0
    assert torch.equal(env.apply(torch.tensor([[0.1, 0.1]]), torch.tensor([[0.1, 0.1]]), backward=True),
                       torch.zeros(1, 2))


def test_line_rejects_invalid_moves():
    env = Line(n_steps=2)
    with pytest.raises(EnvError, match="t > 0"):
        env.apply(env.initial_states(1), torch.tensor([[0.5]]), backward=True)
    with pytest.raises(EnvError, match="t < 2"):
        env.apply(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5]]))
    with pytest.raises(EnvError, match="s_0"):
        env.apply(torch.tensor([[1.0, 1.0]]), torch.tensor([[0.5]]), backward=True)
    with pytest.raises(ValueError, match="sigmas"):
        Line(mus=(1.0, 2.0), sigmas=(1.0,))


def test_line_reward_is_the_normalised_mixture():
    env = Line(mus=(-1.0, 2.0), sigmas=(0.5, 1.0), weights=(1.0, 3.0))
    x = torch.linspace(-8, 10, 36001, dtype=torch.float64)
    dens = env.reward.log_density(x).exp()
    assert float(dens.sum() * (x[1] - x[0])) == pytest.approx(1.0, abs=1e-6)
    y = env.reward.sample(50_000, generator=torch.Generator().manual_seed(0))
    assert float(y.mean()) == pytest.approx(0.25 * -1 + 0.75 * 2, abs=0.03)


# ---------------------------------------------------------------------------- metrics
def _box_log_density(x):
    return Box().reward.log_reward(x.float()).double()


def test_box_target_grid_mass_is_exact():
    q = cm.target_grid_mass(_box_log_density, [(0, 1), (0, 1)], bins=50)
    z = 0.1 + 0.5 * 4 * 0.25 ** 2 + 2.0 * 4 * 0.1 ** 2
    assert float(q.sum()) == pytest.approx(1.0)
    # cell [0.80, 0.82]^2 is in an inner ring: (R0 + R1 + R2) * area / Z; cell [0.5, 0.52]^2: R0 * area / Z
    assert float(q[40, 40]) == pytest.approx(2.6 * 0.02 ** 2 / z, rel=1e-6)
    assert float(q[25, 25]) == pytest.approx(0.1 * 0.02 ** 2 / z, rel=1e-6)
    # cell [0.24, 0.26] x [0.1, 0.12] straddles the outer-square border at 0.25: half R0 + R1, half R0
    assert float(q[12, 5]) == pytest.approx((0.1 + 0.5 * 0.5) * 0.02 ** 2 / z, rel=1e-6)
    assert cm.log_integral(_box_log_density, [(0, 1), (0, 1)]) == pytest.approx(math.log(z), rel=1e-6)


def test_grid_divergences_of_exact_samples_shrink_with_n():
    b = [(0, 1), (0, 1)]
    small = cm.reference_divergences(_box_log_density, b, 5_000)["jsd_grid_reference"]
    large = cm.reference_divergences(_box_log_density, b, 200_000)["jsd_grid_reference"]
    assert large < 0.005 < small
    wrong = cm.grid_divergences(torch.rand(200_000, 2, generator=torch.Generator().manual_seed(0)), _box_log_density, b)
    assert wrong["jsd_grid"] > 0.05 and wrong["tv_grid"] > 0.2


def test_wasserstein():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, generator=g, dtype=torch.float64)
    assert cm.wasserstein(x, x + 0.3) == pytest.approx(0.3, abs=1e-9)
    assert cm.wasserstein(x, x + 0.3, p=2) == pytest.approx(0.3, abs=1e-9)
    y = torch.randn(800, 2, generator=g, dtype=torch.float64)
    assert cm.wasserstein(y, y + torch.tensor([0.3, 0.4], dtype=torch.float64)) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="p = 1 or 2"):
        cm.wasserstein(x, x, p=3)
    with pytest.raises(ValueError, match="dimensions"):
        cm.wasserstein(x, y)


def test_density_plot_writes_png(tmp_path):
    x = cm.sample_grid_density(_box_log_density, [(0, 1), (0, 1)], 2000, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "density.png"
    img = cm.density_plot(x, _box_log_density, [(0, 1), (0, 1)], path=str(path))
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype.name == "uint8"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script,args,keys", [
    ("train_box.py", ["--n-eval", "3000", "--batch-size", "16", "--hidden", "32"], ["jsd_grid", "tv_grid", "w1"]),
    ("train_line.py", ["--n-eval", "2000", "--batch-size", "16", "--hidden", "32"], ["w1", "w2", "jsd_grid"]),
    ("train_ising.py", ["--L", "2", "--n-eval", "500", "--batch-size", "16", "--hidden", "32"],
     ["tv_exact", "energy_mean", "energy_exact"]),
])
def test_examples_write_metrics(tmp_path, script, args, keys):
    import importlib.util
    import json
    import pathlib
    import sys
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / script
    name = f"_example_{script[:-3]}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    mod.main(["--iterations", "3", "--no-progress", "--out", str(tmp_path), *args])
    m = json.loads((tmp_path / "metrics.json").read_text())
    for k in keys:
        assert isinstance(m[k], float) and math.isfinite(m[k]), (k, m.get(k))
    if script == "train_box.py":
        assert (tmp_path / "density.png").exists()
