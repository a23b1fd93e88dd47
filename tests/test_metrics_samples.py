"""Sample distances: exact W2^2 against known optimal matchings and the Gaussian closed form."""

import math

import pytest
import torch

from gfn.metrics.samples import energy_distance, w2_squared


def test_w2_known_matching():
    # a permutation of the same points, shifted by (1, 2): optimal plan is the translation
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64)
    y = x[torch.randperm(50, generator=g)] + torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert w2_squared(x, y) == pytest.approx(5.0, abs=1e-9)
    assert w2_squared(x, x[torch.randperm(50, generator=g)]) == pytest.approx(0.0, abs=1e-12)
    # two points each: crossing is never optimal
    a = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    b = torch.tensor([[11.0, 0.0], [1.0, 0.0]])
    assert w2_squared(a, b) == pytest.approx(1.0)


def test_w2_gaussians_closed_form():
    # W2^2(N(m1, s1^2 I), N(m2, s2^2 I)) = |m1 - m2|^2 + d (s1 - s2)^2; large n, loose tolerance
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    y = 2.0 * torch.randn(1500, 2, generator=g, dtype=torch.float64) + torch.tensor([3.0, 0.0], dtype=torch.float64)
    exact = 9.0 + 2 * 1.0
    assert w2_squared(x, y) == pytest.approx(exact, rel=0.08)


def test_energy_distance_and_errors():
    x = torch.zeros(3, 1)
    y = torch.ones(4, 1)
    assert energy_distance(x, y) == pytest.approx(2.0)
    assert energy_distance(x, x) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="dimension"):
        w2_squared(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="non-finite"):
        w2_squared(torch.tensor([[math.nan, 0.0]]), torch.zeros(1, 2))
