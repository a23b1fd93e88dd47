"""Pareto metrics against brute-force references: hypervolume (2-D, 3-D), Pareto mask, IGD, R2, PC-entropy."""

import itertools
import math

import pytest
import torch

from gfn.metrics import multiobjective as mm


def brute_force_hypervolume(points: torch.Tensor, ref: torch.Tensor) -> float:
    """Union of the boxes [ref, p] by cell decomposition: every cell of the grid made by all
    coordinates counts when its upper corner is dominated by some point."""
    p = points.double()
    p = p[(p > ref).all(1)]
    if p.shape[0] == 0:
        return 0.0
    axes = [torch.unique(torch.cat([ref[i:i + 1], p[:, i]])) for i in range(p.shape[1])]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        upper = torch.tensor([float(a[j + 1]) for a, j in zip(axes, cell)], dtype=torch.float64)
        if bool((p >= upper).all(1).any()):
            total += math.prod(float(a[j + 1] - a[j]) for a, j in zip(axes, cell))
    return total


@pytest.mark.parametrize("k,n", [(2, 1), (2, 7), (2, 40), (3, 1), (3, 6), (3, 25)])
def test_hypervolume_matches_brute_force(k, n):
    g = torch.Generator().manual_seed(10 * k + n)
    pts = torch.rand(n, k, generator=g, dtype=torch.float64)
    ref = torch.full((k,), 0.1, dtype=torch.float64)  # some points fall below ref in some objective
    want = brute_force_hypervolume(pts, ref)
    assert mm.hypervolume_own(pts, ref) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert mm.hypervolume(pts, ref) == pytest.approx(want, rel=1e-10, abs=1e-15)


def test_hypervolume_by_hand_and_duplicates():
    pts = torch.tensor([[1.0, 2.0], [2.0, 1.0], [2.0, 1.0], [0.5, 0.5]])
    assert mm.hypervolume_own(pts, [0, 0]) == pytest.approx(3.0)  # 2 + 2 - 1
    cube = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.5, 0.5]])
    assert mm.hypervolume_own(cube, [0, 0, 0]) == pytest.approx(1.0 + 2 * 0.25 - 0.25)
    assert mm.hypervolume_own(torch.tensor([[-1.0, 3.0]]), [0, 0]) == 0.0
    with pytest.raises(ValueError, match="k <= 3"):
        mm.hypervolume_own(torch.rand(3, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="coordinates"):
        mm.hypervolume(torch.rand(3, 2), torch.zeros(3))


def test_hypervolume_moocore_agrees_with_own():
    pytest.importorskip("moocore")
    pts = torch.rand(200, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert mm.hypervolume(pts, torch.zeros(3), backend="moocore") == pytest.approx(mm.hypervolume_own(pts, torch.zeros(3)), rel=1e-10)


@pytest.mark.parametrize("k", [2, 3])
def test_pareto_mask_matches_brute_force(k):
    g = torch.Generator().manual_seed(k)
    pts = torch.randint(0, 6, (300, k), generator=g).double()  # many ties and duplicates
    mask = mm.pareto_mask(pts, chunk=37)
    a, b = pts.unsqueeze(1), pts.unsqueeze(0)
    dominated = ((a >= b).all(-1) & (a > b).any(-1)).any(0)
    assert torch.equal(mask, ~dominated)


def test_igd_r2_pc_entropy_by_hand():
    front = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    pts = torch.tensor([[1.0, 0.0], [0.4, 0.5]])
    # distances from each front point to the nearest sample: 0, 0.1, sqrt(0.16 + 0) = 0.4
    assert mm.igd(pts, front) == pytest.approx((0.0 + 0.1 + math.hypot(0.4, 0.5)) / 3)
    assert mm.igd(front, front) == 0.0
    w = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    z = torch.tensor([1.0, 1.0])
    # w=(.5,.5): min over samples of max(.5*0, .5*1)=.5 and max(.5*.6, .5*.5)=.3 -> .3; w=(1,0): min(0, .6) = 0
    assert mm.r2_indicator(pts, w, z) == pytest.approx((0.3 + 0.0) / 2)
    assert mm.pc_entropy(pts, front) == pytest.approx(math.log(2))
    assert mm.pc_entropy(torch.tensor([[1.0, 0.0]] * 3), front) == 0.0


def test_topk_diversity_hamming():
    x = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 1, 1], [5, 5, 5]])
    scores = torch.tensor([3.0, 2.0, 1.0, -1.0])
    # top 3: pairwise Hamming 2, 3, 1 -> mean 2
    assert mm.topk_diversity(x, scores, k=3) == pytest.approx(2.0)
    assert mm.topk_diversity(x, scores, k=1) == 0.0
