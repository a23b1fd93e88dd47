"""SubTB(lambda): the closed-form fast loss equals a slow all-pairs reference (values and gradients)."""

import math

import pytest
import torch

from gfn.objectives import get_objective
from gfn.objectives.subtb import WEIGHTINGS, neg2_toeplitz_product, node_potentials, subtb_from_potentials
from gfn.ops import lengths_to_ptr
from gfn.sampler import Sampler
from gfn.trajectories import TrajectoryBatch
from objective_helpers import HyperGrid64, with_length_one

LAMBDAS = [0.5, 0.9, 1.0, 1.5, 2.0]


def layout_batch(lengths, complete, log_rewards):
    """A TrajectoryBatch with only the layout filled in (states are dummies)."""
    lengths = torch.tensor(lengths)
    ptr = lengths_to_ptr(lengths)
    n = int(ptr[-1])
    return TrajectoryBatch(states=torch.zeros(n, 1), ptr=ptr, actions=torch.zeros(n, dtype=torch.long),
                           bwd_actions=torch.zeros(n, dtype=torch.long), log_rewards=log_rewards,
                           is_complete=torch.tensor(complete))


def slow_subtb(batch, log_pf, log_pb, log_flow, log_r, lam, weighting, first=None):
    """Every sub-trajectory i < j of every trajectory, one at a time, straight from the definition."""
    per_traj, total, total_w = [], 0.0, 0.0
    by_length: dict = {}  # per_length: every delta^2 of each sub-trajectory length, over the batch
    for b in range(batch.batch_size):
        r0, L = int(batch.ptr[b]), int(batch.lengths[b])
        n = L + int(batch.is_complete[b])

        def flow(k):
            if k == L:
                return log_r[b]                      # the node reached by exit
            if k == 0 and first is not None:
                return first[b]
            return log_flow[r0 + k]

        s, w = 0.0, 0.0
        for i in range(n):
            for j in range(i + 1, n):
                fwd = log_pf[r0 + i:r0 + j].sum()                        # P_F of steps i..j-1 (exit included)
                bwd = log_pb[r0 + i + 1:r0 + min(j, L - 1) + 1].sum()    # P_B of steps back from i+1..j
                delta = flow(i) + fwd - flow(j) - bwd
                wt = 1.0 if weighting.startswith("equal") else lam ** (j - i)
                s, w = s + wt * delta ** 2, w + wt
                by_length.setdefault(j - i, []).append(delta ** 2)
        if w > 0:
            per_traj.append(s / w)
        total, total_w = total + s, total_w + w
    if weighting == "per_length":  # torchgfn's historical "geometric", written out
        t_max = max(by_length)
        assert sorted(by_length) == list(range(1, t_max + 1))
        norm = sum(lam ** (l - 1) for l in range(1, t_max + 1))   # = (1 - lam^T) / (1 - lam)
        return sum(lam ** (l - 1) / norm * torch.stack(by_length[l]).mean() for l in range(1, t_max + 1))
    return torch.stack(per_traj).mean() if weighting.endswith("_within") else total / total_w


def random_rows(batch, dtype=torch.float64, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = batch.n_rows
    pf = (scale * torch.randn(n, generator=g, dtype=dtype)).requires_grad_()
    pb = scale * torch.randn(n, generator=g, dtype=dtype)
    pb[batch.first_rows] = 0.0
    pb.requires_grad_()
    fl = (scale * torch.randn(n, generator=g, dtype=dtype)).requires_grad_()
    lr = (scale * torch.randn(batch.batch_size, generator=g, dtype=dtype)).requires_grad_()
    return pf, pb, fl, lr


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("lam", LAMBDAS)
def test_fast_equals_slow_values_and_gradients(weighting, lam):
    # length-1 trajectories (complete: s0 -> exit; incomplete: a single node, no residual) included
    batch = layout_batch([1, 3, 5, 2, 6, 1, 4], [True, True, False, True, False, False, True], None)
    pf, pb, fl, lr = random_rows(batch)
    first = torch.randn(batch.batch_size, dtype=torch.float64, requires_grad=True)
    for use_first in (None, first):
        a, n_nodes = node_potentials(batch, pf, pb, fl, lr, use_first)
        fast = subtb_from_potentials(a, n_nodes, lam, weighting)
        slow = slow_subtb(batch, pf, pb, fl, lr, lam, weighting, use_first)
        assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-14), (float(fast), float(slow))
        inputs = [pf, pb, fl, lr] + ([first] if use_first is not None else [])
        g_fast = torch.autograd.grad(fast, inputs)
        g_slow = torch.autograd.grad(slow, inputs)
        for gf, gs in zip(g_fast, g_slow):
            assert torch.allclose(gf, gs, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("lam", LAMBDAS)
def test_packed_pair_kernel_path_equals_closed_form(monkeypatch, weighting, lam):
    """The route taken on CUDA (packed potentials -> gfn.ops.subtb_pair_sum, the Triton kernel
    there) gives the closed form's loss and gradients; forced on CPU, where ops uses its reference."""
    import gfn.objectives.subtb as subtb
    batch = layout_batch([1, 3, 5, 2, 6, 1, 4], [True, True, False, True, False, False, True], None)
    pf, pb, fl, lr = random_rows(batch)
    a, n_nodes = node_potentials(batch, pf, pb, fl, lr)
    closed = subtb_from_potentials(a, n_nodes, lam, weighting)
    monkeypatch.setattr(subtb, "use_pair_kernel", lambda a, dtype: True)
    packed = subtb_from_potentials(a, n_nodes, lam, weighting)
    assert torch.allclose(packed, closed, rtol=1e-10, atol=1e-14)
    g_packed = torch.autograd.grad(packed, [pf, pb, fl, lr], retain_graph=True)
    for gp, gc in zip(g_packed, torch.autograd.grad(closed, [pf, pb, fl, lr])):
        assert torch.allclose(gp, gc, rtol=1e-9, atol=1e-11)


def test_float32_with_large_offsets_matches_float64_reference():
    # potentials of size ~500 with small residuals: the centred expansion must not cancel
    batch = layout_batch([8, 12, 3], [True, True, True], None)
    pf, pb, fl, lr = random_rows(batch, scale=0.3, seed=1)
    with torch.no_grad():
        fl += 500.0
        lr += 500.0
    slow = slow_subtb(batch, pf, pb, fl, lr, 0.9, "geometric_within")
    a, n = node_potentials(batch, pf.float(), pb.float(), fl.float(), lr.float())
    fast = subtb_from_potentials(a, n, 0.9, "geometric_within")
    assert fast.dtype == torch.float32
    assert abs(float(fast.detach()) - float(slow.detach())) <= 1e-4 * float(slow.detach())


def test_large_lambda_long_trajectories_use_float64_and_stay_finite():
    # 3^100 ~ 5e47 does not fit in float32: float32 inputs must still give the float64 answer
    batch = layout_batch([100, 30, 1], [True, False, True], None)
    pf, pb, fl, lr = random_rows(batch, seed=2)
    a64, n = node_potentials(batch, pf, pb, fl, lr)
    a32, _ = node_potentials(batch, pf.float(), pb.float(), fl.float(), lr.float())
    for w in ("geometric_within", "geometric"):
        fast32 = subtb_from_potentials(a32, n, 3.0, w)
        fast64 = subtb_from_potentials(a64, n, 3.0, w)
        assert torch.isfinite(fast32) and abs(float(fast32.detach()) - float(fast64.detach())) <= 1e-5 * float(fast64.detach())
    # ... and the float64 path itself equals the all-pairs reference on a shorter batch
    short = layout_batch([40, 12], [True, False], None)
    pf, pb, fl, lr = random_rows(short, seed=4)
    a, n = node_potentials(short, pf, pb, fl, lr)
    slow = slow_subtb(short, pf, pb, fl, lr, 3.0, "geometric_within")
    assert torch.allclose(subtb_from_potentials(a, n, 3.0, "geometric_within"), slow, rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="overflow"):
        subtb_from_potentials(torch.zeros(1, 1200), torch.tensor([1200]), 2.0, "geometric")


@pytest.mark.parametrize("lam", [0.5, 0.9, 2.0])
def test_blockwise_toeplitz_product_equals_dense_product(lam):
    for m in (65, 100, 257):
        a = torch.randn(5, m, dtype=torch.float64)
        dense = neg2_toeplitz_product(a, lam, block=None)
        expect = -2.0 * torch.stack([sum(lam ** (j - i) * a[:, j] for j in range(i + 1, m)) if i < m - 1
                                     else torch.zeros(5, dtype=torch.float64) for i in range(m)], 1)
        assert torch.allclose(dense, expect, rtol=1e-12, atol=1e-12 * float(expect.abs().max()))
        assert torch.allclose(neg2_toeplitz_product(a, lam), dense, rtol=1e-12, atol=1e-12 * float(dense.abs().max()))


def test_long_trajectories_blockwise_path_matches_slow_reference():
    batch = layout_batch([70, 33, 1], [True, False, True], None)     # 71 node slots: blockwise product
    pf, pb, fl, lr = random_rows(batch, seed=5)
    a, n = node_potentials(batch, pf, pb, fl, lr)
    fast = subtb_from_potentials(a, n, 0.9, "geometric_within")
    slow = slow_subtb(batch, pf, pb, fl, lr, 0.9, "geometric_within")
    assert torch.allclose(fast, slow, rtol=1e-10, atol=0)
    for gf, gs in zip(torch.autograd.grad(fast, [pf, fl]), torch.autograd.grad(slow, [pf, fl])):
        assert torch.allclose(gf, gs, rtol=1e-8, atol=1e-12)


def test_lambda_one_has_no_division_and_equals_equal_weighting():
    batch = layout_batch([4, 1, 7], [True, True, True], None)
    pf, pb, fl, lr = random_rows(batch, seed=3)
    a, n = node_potentials(batch, pf, pb, fl, lr)
    for w_geo, w_eq in (("geometric_within", "equal_within"), ("geometric", "equal")):
        x = subtb_from_potentials(a, n, 1.0, w_geo)
        y = subtb_from_potentials(a, n, 0.3, w_eq)       # lambda is ignored by the equal weightings
        assert torch.isfinite(x) and torch.allclose(x, y)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="weighting"):
        get_objective("subtb", weighting="harmonic")
    with pytest.raises(ValueError, match="lamda"):
        get_objective("subtb", lamda=0.0)
    with pytest.raises(ValueError, match="lambda"):
        subtb_from_potentials(torch.zeros(2, 3), torch.tensor([3, 3]), -1.0)
    obj = get_objective("subtb", lamda="0.5", use_log_z="true")    # command-line strings are accepted
    assert obj.lamda == 0.5 and obj.use_log_z and obj.needs_log_z


def per_row_reference_terms(model, batch):
    """log P_F, log P_B, log F of every row, computed one state at a time (no packing, no batching)."""
    pf, pb, fl = [], [], []
    first = set(batch.first_rows.tolist())
    for r in range(batch.n_rows):
        s = batch.states[r:r + 1]
        pf.append(model.pf_dist(s).log_probs[0, batch.actions[r]])
        pb.append(torch.zeros((), dtype=torch.float64) if r in first
                  else model.pb_dist(s).log_probs[0, batch.bwd_actions[r]])
        fl.append(model.log_flow(s)[0])
    return torch.stack(pf), torch.stack(pb), torch.stack(fl)


@pytest.mark.parametrize("lam,weighting,use_log_z", [(0.9, "geometric_within", False), (2.0, "geometric", True),
                                                     (1.0, "equal_within", False), (0.5, "equal", True),
                                                     (0.9, "per_length", False), (1.0, "per_length", True)])
def test_objective_end_to_end_matches_reference_on_sampled_batch(lam, weighting, use_log_z):
    env = HyperGrid64(ndim=2, height=4)
    obj = get_objective("subtb", lamda=lam, weighting=weighting, use_log_z=use_log_z)
    torch.manual_seed(0)
    model = obj.build_model(env, hidden=16, n_layers=1).double()
    with torch.no_grad():
        model.log_z.value.fill_(0.7)
    batch = with_length_one(env, Sampler(env, model).sample(6, generator=torch.Generator().manual_seed(1)))
    assert int(batch.lengths.min()) >= 1
    loss = obj.loss(model, batch)
    pf, pb, fl = per_row_reference_terms(model, batch)
    log_r = batch.log_rewards.double()
    first = model.log_z.value.expand(batch.batch_size) if use_log_z else None
    ref = slow_subtb(batch, pf, pb, fl, log_r, lam, weighting, first)
    assert torch.allclose(loss, ref, rtol=1e-10, atol=0)
    params = [p for p in model.parameters()]
    g1 = torch.autograd.grad(loss, params, allow_unused=True)
    g2 = torch.autograd.grad(ref, params, allow_unused=True)
    for a, b in zip(g1, g2):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def test_constant_potentials_give_zero_loss():
    # a_k all equal means every sub-trajectory balances: the loss must be exactly 0 (up to rounding)
    a = torch.full((3, 6), 4.2)
    n = torch.tensor([6, 2, 4])
    a = torch.where(torch.arange(6) < n.unsqueeze(1), a, torch.zeros(()))
    for w in WEIGHTINGS:
        assert abs(float(subtb_from_potentials(a, n, 0.9, w))) < 1e-10
    assert math.isfinite(float(subtb_from_potentials(torch.zeros(2, 1), torch.tensor([1, 1]), 0.9)))


def test_pair_kernel_is_used_only_for_cuda_float_tensors():
    from gfn.objectives.subtb import use_pair_kernel
    assert not use_pair_kernel(torch.zeros(3), torch.float32)  # CPU: closed form
    if torch.cuda.is_available():
        assert not use_pair_kernel(torch.zeros(3, device="cuda"), torch.float64)


def test_weight_tables_stay_linear_in_the_trajectory_length():
    """float32 potentials of width M must not build (or cache) an [M, M] table."""
    from gfn.objectives import subtb as S
    S._TABLE_CACHE.clear()
    M = 3000
    a = torch.randn(2, M)
    loss = S.subtb_from_potentials(a, torch.tensor([M, 5]), 0.9)
    ref = S.subtb_from_potentials(a.double(), torch.tensor([M, 5]), 0.9)
    assert torch.isfinite(loss) and float(loss) == pytest.approx(float(ref), rel=1e-4)
    cached = sum(t.numel() for v in S._TABLE_CACHE.values() for t in (v if isinstance(v, tuple) else (v,)))
    assert cached < 20 * M, cached


def test_pair_sum_reference_padding_does_not_poison_short_segments():
    from gfn import ops
    a = torch.randn(23, dtype=torch.float64)
    ptr = torch.tensor([0, 20, 23])
    ref = ops.subtb_pair_sum(a, ptr, 2.0)
    # float32 holds 2^19: the short segment must come out finite and equal to the float64 value
    out = ops.subtb_pair_sum(a.float(), ptr, 2.0)
    assert torch.allclose(out.double(), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="overflows"):
        ops.subtb_pair_sum(a.half(), ptr, 2.0)  # 2^19 > float16's max


def test_per_length_is_torchgfns_historical_geometric_and_not_ours():
    """per_length weights each length's *mean*: a batch of one long and many short trajectories
    gives a different loss from the library's geometric (pooled over all sub-trajectories)."""
    batch = layout_batch([1, 1, 1, 1, 7], [True] * 5, None)
    pf, pb, fl, lr = random_rows(batch, seed=5)
    a, n = node_potentials(batch, pf, pb, fl, lr)
    ours = subtb_from_potentials(a, n, 0.9, "geometric")
    theirs = subtb_from_potentials(a, n, 0.9, "per_length")
    assert torch.allclose(theirs, slow_subtb(batch, pf, pb, fl, lr, 0.9, "per_length"), rtol=1e-12)
    assert not torch.allclose(ours, theirs, rtol=1e-3)
    # float32 input: the per-length sums are formed in float64
    a32 = a.detach().float() + 1e4
    assert torch.allclose(subtb_from_potentials(a32, n, 0.9, "per_length").double(),
                          subtb_from_potentials(a.detach() + 1e4, n, 0.9, "per_length"), rtol=1e-3)
