"""gfn.ops segment reductions vs brute-force float64 loops; gradients; errors; CPU dispatch."""

import math
import sys

import pytest
import torch

from gfn import ops

LENGTHS = [2, 0, 1, 4, 3]


def _ptr(lengths=LENGTHS):
    return ops.lengths_to_ptr(torch.tensor(lengths))


def _segments(x, ptr):
    return [x[int(ptr[i]):int(ptr[i + 1])] for i in range(ptr.numel() - 1)]


def test_layout_helpers():
    ptr = _ptr()
    assert ptr.tolist() == [0, 2, 2, 3, 7, 10]
    assert ops.ptr_to_lengths(ptr).tolist() == LENGTHS
    assert ops.segment_ids(ptr).tolist() == [0, 0, 2, 3, 3, 3, 3, 4, 4, 4]


def test_reductions_match_loops():
    ptr = _ptr()
    x = torch.randn(10, dtype=torch.float64)
    x[4] = -math.inf  # a masked entry inside a segment
    segs = _segments(x, ptr)
    torch.testing.assert_close(ops.segment_sum(x.nan_to_num(neginf=0.0), ptr),
                               torch.stack([s.nan_to_num(neginf=0.0).sum() for s in segs]))
    want_max = torch.tensor([s.max().item() if len(s) else -math.inf for s in segs], dtype=torch.float64)
    torch.testing.assert_close(ops.segment_max(x, ptr), want_max)
    want_lse = torch.tensor([math.log(sum(math.exp(v) for v in s.tolist())) if len(s) else -math.inf for s in segs],
                            dtype=torch.float64)
    torch.testing.assert_close(ops.segment_logsumexp(x, ptr), want_lse)
    lsm = ops.segment_log_softmax(x, ptr)
    for s, (a, b) in zip(segs, zip(ptr[:-1].tolist(), ptr[1:].tolist())):
        if len(s):
            torch.testing.assert_close(lsm[a:b], torch.log_softmax(s, 0))
    torch.testing.assert_close(ops.segment_softmax(x, ptr), lsm.exp())


def test_logsumexp_is_stable_for_large_values():
    ptr = _ptr([2, 2])
    x = torch.tensor([1000.0, 1000.0, -1000.0, -1001.0])
    want = torch.tensor([1000.0 + math.log(2.0), -1000.0 + math.log1p(math.exp(-1.0))])
    torch.testing.assert_close(ops.segment_logsumexp(x, ptr), want)


def test_multidimensional_rows():
    ptr = _ptr([2, 3])
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(ops.segment_logsumexp(x, ptr),
                               torch.stack([torch.logsumexp(x[:2], 0), torch.logsumexp(x[2:], 0)]))


def test_gradients_by_gradcheck():
    ptr = torch.tensor([0, 2, 2, 5, 6])
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    full = torch.tensor([0, 2, 5, 6])  # an empty segment's log-sum-exp is -inf: no finite difference
    assert torch.autograd.gradcheck(lambda v: ops.segment_logsumexp(v, full), (x,))
    assert torch.autograd.gradcheck(lambda v: ops.segment_log_softmax(v, ptr), (x,))
    assert torch.autograd.gradcheck(lambda v: ops.segment_sum(v, ptr), (x,))
    assert torch.autograd.gradcheck(lambda v: ops.subtb_pair_sum(v, ptr, 0.8), (x,))


@pytest.mark.parametrize("lamda", [0.5, 1.0, 2.0])
def test_subtb_pair_sum_brute_force(lamda):
    ptr = _ptr()
    a = torch.randn(10, dtype=torch.float64)
    want = torch.tensor([sum(lamda ** (j - i) * (s[i] - s[j]) ** 2 for i in range(len(s)) for j in range(i + 1, len(s)))
                         for s in (seg.tolist() for seg in _segments(a, ptr))], dtype=torch.float64)
    torch.testing.assert_close(ops.subtb_pair_sum(a, ptr, lamda), want)


def test_errors_are_specific():
    with pytest.raises(ValueError, match="long"):
        ops.segment_sum(torch.zeros(3), torch.tensor([0, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match="1-D"):
        ops.segment_sum(torch.tensor(1.0), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="lamda"):
        ops.subtb_pair_sum(torch.zeros(3), torch.tensor([0, 3]), -1.0)
    with pytest.raises(ValueError, match="1-D values"):
        ops.subtb_pair_sum(torch.zeros(3, 2), torch.tensor([0, 3]), 0.5)


def test_cpu_tensors_never_import_triton():
    """The PyTorch path is used on CPU: the Triton kernel module is not even imported."""
    before = "gfn.kernels.segment" in sys.modules
    ptr = _ptr()
    x = torch.randn(10)
    ops.segment_logsumexp(x, ptr)
    ops.segment_log_softmax(x, ptr)
    ops.subtb_pair_sum(x, ptr, 0.9)
    assert ("gfn.kernels.segment" in sys.modules) == before
    from gfn import kernels
    assert not kernels.supports(x)


def test_segment_layout_is_validated():
    x = torch.ones(4)
    for bad in ([0, 2, 1000], [0, 2, 3], [1, 2, 4], [0, 3, 2, 4]):
        ptr = torch.tensor(bad)
        for f in (ops.segment_sum, ops.segment_max, ops.segment_logsumexp, ops.segment_log_softmax):
            with pytest.raises(ValueError, match="segment layout of 4 rows"):
                f(x, ptr)
        with pytest.raises(ValueError, match="segment layout of 4 rows"):
            ops.subtb_pair_sum(x, ptr, 0.9)
    with pytest.raises(ValueError, match="empty"):
        ops.segment_sum(x[:0], torch.tensor([], dtype=torch.long))
    assert ops.segment_sum(x[:0], torch.tensor([0])).shape == (0,)
    assert torch.equal(ops.segment_sum(x, torch.tensor([0, 0, 4, 4])), torch.tensor([0.0, 4.0, 0.0]))
