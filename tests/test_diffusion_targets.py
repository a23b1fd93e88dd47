"""Diffusion targets: log Z against quadrature / closed forms, exact samplers against the densities."""

import math

import pytest
import torch

from gfn.envs.diffusion.targets import (EnergyTarget, FunnelTarget, make_target, manywell_log_z1)


def _log_integral_2d(fn, lo, hi, n):
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    xx = torch.cartesian_prod(g, g)
    h = (hi - lo) / (n - 1)
    return float(torch.logsumexp(fn(xx), 0) + 2 * math.log(h))


@pytest.mark.parametrize("name,lim", [("gmm9", 10.0), ("gmm25", 15.0), ("gmm40", 48.0)])
def test_gmm_log_z_quadrature(name, lim):
    t = make_target(name)
    assert t.dim == 2 and t.log_z == 0.0
    assert abs(_log_integral_2d(t.log_reward, -lim, lim, 601) - t.log_z) < 2e-3


def test_gmm_definitions():
    t25 = make_target("gmm25")
    assert t25.means.shape == (25, 2) and set(t25.means[:, 0].tolist()) == {-10.0, -5.0, 0.0, 5.0, 10.0}
    assert t25.std**2 == pytest.approx(0.3)
    t40 = make_target("gmm40")
    assert t40.means.shape == (40, 2) and t40.means.abs().max() <= 40
    assert torch.equal(t40.means, make_target("gmm40").means)  # fixed seed
    assert not torch.equal(t40.means, make_target("gmm40", seed=1).means)


def test_manywell_log_z():
    # 1-D constant: the authors' value, and an independent trapezoid integral
    assert math.exp(manywell_log_z1()) == pytest.approx(11784.50927, rel=1e-8)
    a = torch.linspace(-5, 5, 200001, dtype=torch.float64)
    ref = torch.logsumexp(-a**4 + 6 * a**2 + 0.5 * a, 0) + math.log(10 / 200000)
    assert manywell_log_z1() == pytest.approx(float(ref), abs=1e-8)
    t2 = make_target("manywell", dim=2)
    assert abs(_log_integral_2d(t2.log_reward, -7, 7, 1401) - t2.log_z) < 1e-6
    assert make_target("manywell", dim=8).log_z == pytest.approx(4 * t2.log_z)


def test_funnel_log_z_2d_quadrature_and_mc():
    t = FunnelTarget(dim=2, x0_var=1.0)  # narrow enough for a grid
    assert abs(_log_integral_2d(t.log_reward, -12, 12, 2401)) < 2e-3
    # d = 10: E_q[R/q] = Z = 1 with q = the exact sampler, i.e. log R(x) - log q(x) = 0 pointwise
    f = make_target("funnel")
    x = f.sample(1000, torch.Generator().manual_seed(0)).double()
    x0 = x[:, 0]
    log_q = (torch.distributions.Normal(0.0, 3.0).log_prob(x0)
             + torch.distributions.Normal(0.0, torch.exp(0.5 * x0)).log_prob(x[:, 1:].T).sum(0))
    assert torch.allclose(f.log_reward(x), log_q, atol=1e-8)


def test_float32_and_gradients():
    for name in ("gmm9", "gmm25", "gmm40", "funnel", "manywell"):
        t = make_target(name)
        x = t.sample(64, torch.Generator().manual_seed(1)).requires_grad_(True)
        lr = t.log_reward(x)
        assert lr.dtype == torch.float32 and lr.shape == (64,) and torch.isfinite(lr).all()
        (g,) = torch.autograd.grad(lr.sum(), x)
        assert torch.isfinite(g).all()
        assert torch.allclose(t.log_reward(x.detach().double()).float(), lr.detach(), rtol=1e-4, atol=1e-3)


def _chi2_2d(target, samples, lo, hi, bins):
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    sub = 8
    fine = torch.linspace(lo, hi, bins * sub + 1, dtype=torch.float64)
    c = 0.5 * (fine[1:] + fine[:-1])
    pts = torch.cartesian_prod(c, c)
    w = torch.exp(target.log_reward(pts) - target.log_z) * ((hi - lo) / (bins * sub)) ** 2
    p = w.view(bins, sub, bins, sub).sum((1, 3)).flatten()
    ix = torch.bucketize(samples[:, 0].double(), edges[1:-1])
    iy = torch.bucketize(samples[:, 1].double(), edges[1:-1])
    counts = torch.bincount(ix * bins + iy, minlength=bins * bins).double()
    expected = p / p.sum() * samples.shape[0]
    keep = expected > 5
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum())


@pytest.mark.parametrize("name,lo,hi", [("gmm25", -12.0, 12.0), ("manywell", -4.0, 4.0), ("gmm9", -7.0, 7.0)])
def test_exact_samplers_histogram(name, lo, hi):
    t = make_target(name, dim=2) if name == "manywell" else make_target(name)
    x = t.sample(40000, torch.Generator().manual_seed(2))
    stat, dof = _chi2_2d(t, x, lo, hi, 48)
    # chi-square with `dof` cells: mean dof, std sqrt(2 dof); 5 std is far beyond chance
    assert stat < dof + 5 * math.sqrt(2 * dof), (stat, dof)


def test_sampler_moments_funnel_and_manywell():
    g = torch.Generator().manual_seed(3)
    f = make_target("funnel", x0_var=4.0)
    x = f.sample(200000, g).double()
    assert x[:, 0].var().item() == pytest.approx(4.0, rel=0.03)
    # E[x_1^2] = E[exp(x_0)] = exp(var/2)
    assert (x[:, 1] ** 2).mean().item() == pytest.approx(math.exp(2.0), rel=0.08)
    m = make_target("manywell", dim=4)
    y = m.sample(100000, g).double()
    assert y[:, 1].var().item() == pytest.approx(1.0, rel=0.03)
    a = torch.linspace(-5, 5, 100001, dtype=torch.float64)
    p = torch.softmax(-a**4 + 6 * a**2 + 0.5 * a, 0)
    assert y[:, 0].mean().item() == pytest.approx(float((p * a).sum()), abs=0.03)
    assert y[:, 2].mean().item() == pytest.approx(float((p * a).sum()), abs=0.03)


def test_samplers_seeded():
    for name in ("gmm25", "funnel", "manywell"):
        t = make_target(name)
        assert torch.equal(t.sample(10, torch.Generator().manual_seed(5)), t.sample(10, torch.Generator().manual_seed(5)))


def test_energy_target_and_errors():
    t = EnergyTarget(lambda x: 0.5 * (x**2).sum(1), dim=3, log_z=1.5 * math.log(2 * math.pi))
    x = torch.randn(7, 3)
    assert torch.allclose(t.log_reward(x), -0.5 * (x**2).sum(1))
    with pytest.raises(NotImplementedError):
        t.sample(3)
    with pytest.raises(ValueError, match="shape"):
        t.log_reward(torch.randn(4, 2))
    with pytest.raises(ValueError, match="energy must return"):
        EnergyTarget(lambda x: x, dim=2).log_reward(torch.randn(3, 2))
    with pytest.raises(ValueError, match="unknown target"):
        make_target("gmm7")
    with pytest.raises(ValueError, match="even"):
        make_target("manywell", dim=5)
    with pytest.raises(ValueError, match="2-dimensional"):
        make_target("gmm25", dim=3)
    with pytest.raises(ValueError, match="unknown options"):
        make_target("funnel", foo=1)
    with pytest.raises(ValueError, match="x0_var"):
        make_target("funnel", x0_var=-1.0)
