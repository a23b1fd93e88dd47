"""Triton segment kernels vs the PyTorch reference ops (values and gradients).

Runs on CPU under the Triton interpreter (``TRITON_INTERPRET=1``, set here before Triton is
imported, only when there is no GPU) and compiled on CUDA when a GPU is present; skipped when
Triton is not installed.
"""

import os

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":  # Triton reads it when the kernels are first imported (lazily, below); on a GPU compile them
    os.environ.setdefault("TRITON_INTERPRET", "1")

from gfn import kernels, ops  # noqa: E402
pytestmark = [
    pytest.mark.skipif(not kernels.available(), reason="triton is not importable"),
    pytest.mark.skipif(DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
                       reason="no GPU and TRITON_INTERPRET is not 1"),
    # the interpreter evaluates log(0) = -inf of empty segments with NumPy, which warns
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]


def _layout(lengths):
    return ops.lengths_to_ptr(torch.tensor(lengths, device=DEVICE))


# lengths chosen to cover: empty segments, length 1, a segment longer than one block (16),
# and several blocks of the pair kernel
LENGTHS = [3, 0, 1, 5, 17, 2, 40, 0]


def _data(seed=0, masked=True):
    g = torch.Generator().manual_seed(seed)
    ptr = _layout(LENGTHS)
    n = int(ptr[-1])
    x = (torch.randn(n, generator=g) * 3).to(DEVICE)
    if masked:  # some -inf entries, never a whole segment
        drop = torch.rand(n, generator=g).to(DEVICE) < 0.25
        drop[ptr[:-1][torch.tensor(LENGTHS, device=DEVICE) > 0]] = False
        x = x.masked_fill(drop, float("-inf"))
    return x, ptr


def test_logsumexp_values_and_grad_match_reference():
    x, ptr = _data()
    x1 = x.clone().requires_grad_(True)
    x2 = x.detach().cpu().clone().requires_grad_(True)  # CPU tensors always take the PyTorch path
    got = kernels.segment_logsumexp(x1, ptr)
    ref = ops.segment_logsumexp(x2, ptr.cpu())
    assert torch.equal(torch.isneginf(got).cpu(), torch.isneginf(ref))  # the empty segments
    fin = torch.isfinite(ref)
    torch.testing.assert_close(got.cpu()[fin], ref[fin], rtol=1e-5, atol=1e-5)
    w = torch.randn(got.shape)
    (got.cpu()[fin] * w[fin]).sum().backward()
    (ref[fin] * w[fin]).sum().backward()
    torch.testing.assert_close(x1.grad.cpu(), x2.grad, rtol=1e-5, atol=1e-6)


def test_log_softmax_values_and_grad_match_reference():
    x, ptr = _data(1)
    x1 = x.clone().requires_grad_(True)
    x2 = x.detach().cpu().clone().requires_grad_(True)
    got = kernels.segment_log_softmax(x1, ptr)
    ref = ops.segment_log_softmax(x2, ptr.cpu())
    assert torch.equal(torch.isneginf(got).cpu(), torch.isneginf(ref))
    fin = torch.isfinite(ref)
    torch.testing.assert_close(got.cpu()[fin], ref[fin], rtol=1e-5, atol=1e-5)
    w = torch.randn(got.shape)
    (got.cpu()[fin] * w[fin]).sum().backward()
    (ref[fin] * w[fin]).sum().backward()
    torch.testing.assert_close(x1.grad.cpu(), x2.grad, rtol=1e-5, atol=1e-5)
    # normalised: each non-empty segment's probabilities sum to one
    sums = ops.segment_sum(got.detach().cpu().exp(), ptr.cpu())
    nonempty = torch.tensor(LENGTHS) > 0
    torch.testing.assert_close(sums[nonempty], torch.ones(int(nonempty.sum())))


def test_logsumexp_extreme_values_are_stable():
    ptr = _layout([3, 2])
    x = torch.tensor([1000.0, 1000.0, -1000.0, -1e4, -1e4 - 1], device=DEVICE)
    got = kernels.segment_logsumexp(x, ptr).cpu()
    ref = ops.segment_logsumexp(x.cpu().double(), ptr.cpu()).float()
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("lamda", [0.9, 1.0, 1.3])
def test_subtb_pair_sum_values_and_grad_match_reference(lamda):
    x, ptr = _data(2, masked=False)
    a1 = x.clone().requires_grad_(True)
    a2 = x.detach().cpu().double().requires_grad_(True)
    got = kernels.subtb_pair_sum(a1, ptr, lamda)
    ref = ops.subtb_pair_sum(a2, ptr.cpu(), lamda)
    torch.testing.assert_close(got.cpu().double(), ref, rtol=2e-5, atol=1e-4)
    w = torch.randn(got.shape, dtype=torch.float64)
    (got.cpu().double() * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a1.grad.cpu().double(), a2.grad, rtol=2e-5, atol=1e-4)


def test_subtb_pair_sum_brute_force():
    a = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    ptr = torch.tensor([0, 4])
    lam = 0.7
    want = sum(lam ** (j - i) * (a[i] - a[j]) ** 2 for i in range(4) for j in range(i + 1, 4))
    torch.testing.assert_close(ops.subtb_pair_sum(a, ptr, lam), want.reshape(1))
    torch.testing.assert_close(kernels.subtb_pair_sum(a.float().to(DEVICE), ptr.to(DEVICE), lam).cpu().double(),
                               want.reshape(1), rtol=1e-5, atol=1e-5)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="1-D"):
        kernels.segment_logsumexp(torch.zeros(3, 2, device=DEVICE), _layout([3]))
    with pytest.raises(ValueError, match="long"):
        kernels.segment_log_softmax(torch.zeros(3, device=DEVICE), torch.tensor([0, 3], dtype=torch.int32, device=DEVICE))
    with pytest.raises(ValueError, match="lamda"):
        kernels.subtb_pair_sum(torch.zeros(3, device=DEVICE), _layout([3]), 0.0)


def test_layout_is_validated_and_a_strided_ptr_is_read_correctly():
    x = torch.randn(6, device=DEVICE)
    for bad in ([0, 2, 1000], [1, 3, 6], [0, 4, 2, 6], [0, 2, 5]):
        ptr = torch.tensor(bad, device=DEVICE)
        for f in (kernels.segment_logsumexp, kernels.segment_log_softmax):
            with pytest.raises(ValueError, match="segment layout of 6 rows"):
                f(x, ptr)
        with pytest.raises(ValueError, match="segment layout of 6 rows"):
            kernels.subtb_pair_sum(x, ptr, 0.9)
    strided = torch.tensor([0, 99, 2, 99, 6, 99], device=DEVICE)[::2]
    assert not strided.is_contiguous()
    dense = strided.contiguous()
    torch.testing.assert_close(kernels.segment_logsumexp(x, strided), ops.segment_logsumexp(x, dense))
    torch.testing.assert_close(kernels.segment_log_softmax(x, strided), ops.segment_log_softmax(x, dense))
    torch.testing.assert_close(kernels.subtb_pair_sum(x, strided, 0.9), ops.subtb_pair_sum(x, dense, 0.9))


def test_plus_infinity_gives_plus_infinity():
    x = torch.tensor([1.0, float("inf"), 0.0, 2.0], device=DEVICE)
    ptr = _layout([2, 2])
    got = kernels.segment_logsumexp(x, ptr).cpu()
    assert got[0] == float("inf") and torch.isfinite(got[1])
    torch.testing.assert_close(got, ops.segment_logsumexp(x.cpu(), ptr.cpu()))


@pytest.mark.parametrize("which", ["lse", "log_softmax", "pairs"])
def test_second_derivatives_raise_instead_of_vanishing(which):
    x = torch.randn(5, device=DEVICE, requires_grad=True)
    ptr = _layout([3, 2])
    f = {"lse": kernels.segment_logsumexp, "log_softmax": kernels.segment_log_softmax,
         "pairs": lambda v, p: kernels.subtb_pair_sum(v, p, 0.9)}[which]
    (g,) = torch.autograd.grad(f(x, ptr).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        g.pow(2).sum().backward()
    (g1,) = torch.autograd.grad(f(x, ptr).sum(), x)  # plain first-order use is unchanged
    assert not g1.requires_grad


def test_pair_sum_overflow_is_refused_before_the_kernel(monkeypatch):
    monkeypatch.setattr(ops, "_triton", lambda t: True)  # route as on CUDA
    a = torch.randn(130, device=DEVICE)
    with pytest.raises(ValueError, match="overflows torch.float32"):
        ops.subtb_pair_sum(a, _layout([130]), 2.0)
