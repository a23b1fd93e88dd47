"""Optional Triton kernels for segment operations (fused forward and backward).

Triton is imported lazily, on first use: ``import gfn`` never needs it.  :mod:`gfn.ops`
dispatches here only for CUDA tensors when :func:`available` is true (and the environment
variable ``GFN_TRITON`` is not ``0``); everywhere else the pure-PyTorch ops are used and are
the reference these kernels are tested against (on CPU with ``TRITON_INTERPRET=1``).

Functions (same signatures as their :mod:`gfn.ops` counterparts, 1-D float ``x``):

* :func:`segment_logsumexp(x, ptr) <segment_logsumexp>`
* :func:`segment_log_softmax(x, ptr) <segment_log_softmax>`
* :func:`subtb_pair_sum(a, ptr, lamda) <subtb_pair_sum>` — per segment
  ``sum_{i<j} lamda^(j-i) (a_i - a_j)^2``, the numerator of SubTB(lambda) on node potentials.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch

__all__ = ["available", "enabled", "segment_logsumexp", "segment_log_softmax", "subtb_pair_sum", "supports"]

_MOD = None
_ERR: Optional[BaseException] = None
_TRIED = False


def _module():
    """The kernel module (imports Triton the first time); raises ImportError if unavailable."""
    global _MOD, _ERR, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            from gfn.kernels import segment as mod
            _MOD = mod
        except Exception as e:  # ImportError, or a broken Triton install
            _ERR = e
    if _MOD is None:
        raise ImportError(f"gfn.kernels needs Triton, which could not be imported: {_ERR!r}")
    return _MOD


def available() -> bool:
    """True when Triton imports (kernels can run on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    try:
        _module()
        return True
    except ImportError:
        return False


def enabled() -> bool:
    """True unless the environment variable ``GFN_TRITON`` is ``0`` (a switch for A/B timings)."""
    return os.environ.get("GFN_TRITON", "1") != "0"


def supports(x: torch.Tensor) -> bool:
    """Whether :mod:`gfn.ops` should route ``x`` to these kernels (CUDA, 1-D, float, enabled)."""
    return (x.is_cuda and x.dim() == 1 and x.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and enabled() and available())


def _block(ptr: torch.Tensor, cap: int = 1024) -> int:
    """Block size: the longest segment rounded up to a power of two, in [16, cap] (one sync)."""
    if ptr.numel() <= 1:
        return 16
    longest = int((ptr[1:] - ptr[:-1]).max())
    return max(16, min(cap, 1 << max(0, longest - 1).bit_length()))


def _check(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Validate the layout (the kernels index raw memory with it); returns a contiguous ``ptr``."""
    from gfn.layout import check_layout
    if x.dim() != 1:
        raise ValueError(f"Triton segment kernels take 1-D x, got shape {tuple(x.shape)}")
    if ptr.device != x.device:
        raise ValueError(f"x is on {x.device} but ptr on {ptr.device}")
    check_layout(ptr, x.shape[0])
    return ptr.contiguous()


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on a kernel gradient, attached to ``sources`` so that differentiating it again
    (``create_graph=True`` and a second backward) raises instead of silently giving 0."""

    @staticmethod
    def forward(ctx, grad, *sources):
        return grad.clone()

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError("gfn.kernels: the Triton segment kernels are differentiable once; a second derivative "
                           "through them is not supported (neither is it by the PyTorch segment ops)")


def _first_order(grad: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
    """``grad``, made to raise on a second backward when the backward builds a graph."""
    if torch.is_grad_enabled() and any(s.requires_grad for s in sources):
        return _FirstOrderOnly.apply(grad, *sources)
    return grad


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, ptr):
        k = _module()
        x = x.contiguous()
        n_seg = ptr.numel() - 1
        out = torch.empty(n_seg, dtype=x.dtype, device=x.device)
        block = _block(ptr)
        if n_seg > 0:
            k._lse_fwd[(n_seg,)](x, ptr, out, BLOCK=block)
        ctx.save_for_backward(x, ptr, out)
        ctx.block = block
        return out

    @staticmethod
    def backward(ctx, g):
        x, ptr, lse = ctx.saved_tensors
        gx = torch.empty_like(x)
        if ptr.numel() > 1:
            _module()._lse_bwd[(ptr.numel() - 1,)](x, ptr, lse, g.detach().contiguous(), gx, BLOCK=ctx.block)
        return _first_order(gx, x, g), None


class _LogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, ptr):
        k = _module()
        x = x.contiguous()
        y = torch.empty_like(x)
        block = _block(ptr)
        if ptr.numel() > 1:
            k._log_softmax_fwd[(ptr.numel() - 1,)](x, ptr, y, BLOCK=block)
        ctx.save_for_backward(y, ptr)
        ctx.block = block
        return y

    @staticmethod
    def backward(ctx, g):
        y, ptr = ctx.saved_tensors
        gx = torch.empty_like(y)
        if ptr.numel() > 1:
            _module()._log_softmax_bwd[(ptr.numel() - 1,)](y, ptr, g.detach().contiguous(), gx, BLOCK=ctx.block)
        return _first_order(gx, y, g), None


class _PairSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, ptr, lamda):
        k = _module()
        a = a.contiguous()
        n_seg = ptr.numel() - 1
        out = torch.empty(n_seg, dtype=a.dtype, device=a.device)
        block = _block(ptr, cap=64)  # the pair loop holds a BLOCK x BLOCK tile
        log_lam = math.log(lamda)
        if n_seg > 0:
            k._pairs_fwd[(n_seg,)](a, ptr, out, log_lam, BLOCK=block)
        ctx.save_for_backward(a, ptr)
        ctx.block, ctx.log_lam = block, log_lam
        return out

    @staticmethod
    def backward(ctx, g):
        a, ptr = ctx.saved_tensors
        ga = torch.empty_like(a)
        if ptr.numel() > 1:
            _module()._pairs_bwd[(ptr.numel() - 1,)](a, ptr, g.detach().contiguous(), ga, ctx.log_lam, BLOCK=ctx.block)
        return _first_order(ga, a, g), None, None


def segment_logsumexp(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Fused segment log-sum-exp (Triton); differentiable."""
    ptr = _check(x, ptr)
    return _LogSumExp.apply(x, ptr)


def segment_log_softmax(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Fused segment log-softmax (Triton); differentiable."""
    ptr = _check(x, ptr)
    return _LogSoftmax.apply(x, ptr)


def subtb_pair_sum(a: torch.Tensor, ptr: torch.Tensor, lamda: float) -> torch.Tensor:
    """Per segment ``sum_{i<j} lamda^(j-i) (a_i - a_j)^2`` (Triton, O(1) extra memory); differentiable."""
    ptr = _check(a, ptr)
    if not lamda > 0:
        raise ValueError(f"lamda must be > 0, got {lamda}")
    return _PairSum.apply(a, ptr, float(lamda))
