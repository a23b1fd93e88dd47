"""Segment operations over CSR offsets (pure PyTorch).

A *segment layout* is a 1-D long tensor ``ptr`` of length ``S + 1`` with ``ptr[0] == 0``
and non-decreasing entries: segment ``s`` covers rows ``ptr[s]:ptr[s+1]`` of the data.
Packed trajectories (one segment per trajectory) and variable action sets (one segment
per state) both use this layout.  These reductions are differentiable and run on any
device.  On CUDA tensors, :func:`segment_logsumexp`, :func:`segment_log_softmax` and
:func:`subtb_pair_sum` dispatch to the fused Triton kernels of :mod:`gfn.kernels` when Triton
imports (set ``GFN_TRITON=0`` to force the PyTorch path); same signatures, same results.

We use ``torch.segment_reduce`` on offsets (measured fastest here) and never a global
cumulative sum in fp32, which loses precision on long packed batches.
"""

from __future__ import annotations

import math

import torch

from gfn.layout import check_layout  # noqa: F401  (part of this module's API)

__all__ = [
    "lengths_to_ptr",
    "ptr_to_lengths",
    "segment_ids",
    "check_layout",
    "segment_sum",
    "segment_max",
    "segment_logsumexp",
    "segment_log_softmax",
    "segment_softmax",
    "subtb_pair_sum",
]


def _triton(x: torch.Tensor) -> bool:
    """Route to gfn.kernels? Only CUDA tensors ever import Triton."""
    if not x.is_cuda:
        return False
    from gfn import kernels
    return kernels.supports(x)


def lengths_to_ptr(lengths: torch.Tensor) -> torch.Tensor:
    """CSR offsets ``[0, l0, l0+l1, ...]`` from segment lengths."""
    ptr = torch.zeros(lengths.numel() + 1, dtype=torch.long, device=lengths.device)
    torch.cumsum(lengths.to(torch.long), 0, out=ptr[1:])
    return ptr


def ptr_to_lengths(ptr: torch.Tensor) -> torch.Tensor:
    """Segment lengths from CSR offsets."""
    return ptr[1:] - ptr[:-1]


def segment_ids(ptr: torch.Tensor, total: int | None = None) -> torch.Tensor:
    """For each row, the index of the segment that contains it (a 'batch vector')."""
    lengths = ptr_to_lengths(ptr)
    ids = torch.arange(lengths.numel(), device=ptr.device)
    return torch.repeat_interleave(ids, lengths, output_size=total)


def _check(x: torch.Tensor, ptr: torch.Tensor) -> None:
    if x.dim() == 0:
        raise ValueError("segment ops need at least a 1-D tensor")
    check_layout(ptr, x.shape[0])


def _sum(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    return torch.segment_reduce(x, "sum", offsets=ptr, axis=0, unsafe=True)


def _max(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    return torch.segment_reduce(x, "max", offsets=ptr, axis=0, unsafe=True, initial=float("-inf"))


def _logsumexp(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    lengths = ptr_to_lengths(ptr)
    m = _max(x.detach(), ptr)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    shifted = x - torch.repeat_interleave(m, lengths, dim=0, output_size=x.shape[0])
    return _sum(shifted.exp(), ptr).log() + m


def segment_sum(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Sum of rows of ``x`` within each segment (empty segments give 0)."""
    _check(x, ptr)
    return _sum(x, ptr)


def segment_max(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Maximum within each segment (empty segments give -inf)."""
    _check(x, ptr)
    return _max(x, ptr)


def segment_logsumexp(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Numerically stable log-sum-exp within each segment (empty or all -inf segments give -inf)."""
    if _triton(x):  # the kernel validates the layout itself
        from gfn import kernels
        return kernels.segment_logsumexp(x, ptr)
    _check(x, ptr)
    return _logsumexp(x, ptr)


def segment_log_softmax(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Log-softmax of ``x`` normalised within each segment (same shape as ``x``)."""
    if _triton(x):  # the kernel validates the layout itself
        from gfn import kernels
        return kernels.segment_log_softmax(x, ptr)
    _check(x, ptr)
    lse = _logsumexp(x, ptr)
    return x - torch.repeat_interleave(lse, ptr_to_lengths(ptr), dim=0, output_size=x.shape[0])


def segment_softmax(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Softmax of ``x`` normalised within each segment."""
    return segment_log_softmax(x, ptr).exp()


def subtb_pair_sum(a: torch.Tensor, ptr: torch.Tensor, lamda: float) -> torch.Tensor:
    """Per segment ``sum_{i<j} lamda^(j-i) (a_i - a_j)^2`` over 1-D values ``a`` (e.g. SubTB(lambda)
    node potentials, whose differences are the sub-trajectory residuals).

    This reference pads to ``[S, Lmax]`` and forms the ``[S, Lmax, Lmax]`` pair matrix in the
    dtype of ``a`` (``lamda^(j-i)`` in float64 before the cast); the Triton kernel used on CUDA
    streams the pairs without that memory.
    """
    _check(a, ptr)
    if a.dim() != 1:
        raise ValueError(f"subtb_pair_sum takes 1-D values, got shape {tuple(a.shape)}")
    if not lamda > 0:
        raise ValueError(f"lamda must be > 0, got {lamda}")
    lengths = ptr_to_lengths(ptr)
    n_seg = lengths.numel()
    width = int(lengths.max()) if n_seg > 0 else 0
    # before the dispatch: the kernel would turn the overflow into nan just the same
    if lamda > 1 and a.is_floating_point() and (width - 1) * math.log(lamda) > math.log(torch.finfo(a.dtype).max):
        raise ValueError(f"subtb_pair_sum: lamda^(width - 1) = {lamda}^{width - 1} overflows {a.dtype}; "
                         f"pass float64 values or use a smaller lamda")
    if _triton(a):
        from gfn import kernels
        return kernels.subtb_pair_sum(a, ptr, lamda)
    if width == 0:
        return torch.zeros(n_seg, dtype=a.dtype, device=a.device)
    pos = torch.arange(a.shape[0], device=a.device) - torch.repeat_interleave(ptr[:-1], lengths, output_size=a.shape[0])
    flat = segment_ids(ptr, a.shape[0]) * width + pos
    padded = torch.zeros(n_seg * width, dtype=a.dtype, device=a.device).index_copy(0, flat, a).view(n_seg, width)
    valid = torch.zeros(n_seg * width, dtype=torch.bool, device=a.device).index_fill(0, flat, True).view(n_seg, width)
    k = torch.arange(width, device=a.device)
    gap = k.unsqueeze(0) - k.unsqueeze(1)  # [i, j] -> j - i
    w = torch.where(gap > 0, torch.tensor(float(lamda), dtype=torch.float64, device=a.device) ** gap.clamp(min=0), 0.0).to(a.dtype)
    diff = padded.unsqueeze(2) - padded.unsqueeze(1)  # [s, i, j] -> a_i - a_j
    pair_ok = valid.unsqueeze(2) & valid.unsqueeze(1)
    # weights of padded pairs never enter the product (a large lamda^gap must not turn 0 into nan)
    return torch.where(pair_ok, diff.pow(2) * w, torch.zeros((), dtype=a.dtype, device=a.device)).sum((1, 2))
