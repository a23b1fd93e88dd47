"""Triton kernels over CSR segments (imported only through :mod:`gfn.kernels`, which checks Triton).

One program per segment walks its rows in blocks of ``BLOCK`` with per-lane running
maxima, so a segment may be any length and no padded copy is made.  Values are accumulated
in float32 whatever the input dtype.  Layout: ``x`` is 1-D and contiguous, ``ptr`` is int64
of length ``S + 1`` (see :mod:`gfn.ops`).

Kernels:

* ``_lse_fwd`` / ``_lse_bwd``: segment log-sum-exp and its gradient ``g_s * exp(x_i - lse_s)``;
* ``_log_softmax_fwd`` / ``_log_softmax_bwd``: ``y_i = x_i - lse_s`` and
  ``g_i - exp(y_i) * sum_{k in s} g_k``;
* ``_pairs_fwd`` / ``_pairs_bwd``: the SubTB(lambda) pair sum
  ``sum_{i<j in s} lambda^(j-i) (a_i - a_j)^2`` and its gradient
  ``2 g_s sum_{j != i} lambda^|j-i| (a_i - a_j)``.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _segment_lse(x_ptr, start, end, BLOCK: tl.constexpr):
    """log-sum-exp of x[start:end] in float32 (-inf for empty or all -inf segments)."""
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    acc = tl.zeros([BLOCK], tl.float32)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + idx, mask=idx < end, other=float("-inf")).to(tl.float32)
        new_m = tl.maximum(m, v)
        safe = tl.where(new_m == float("-inf"), 0.0, new_m)
        acc = acc * tl.exp(m - safe) + tl.exp(v - safe)
        m = new_m
    mx = tl.max(m, 0)
    mx_safe = tl.where(mx == float("-inf"), 0.0, mx)
    # lanes whose max is -inf hold acc == 0: give them scale 0 (not exp(0 - mx), which may overflow)
    scale = tl.where(m == float("-inf"), 0.0, tl.exp(m - mx_safe))
    total = tl.sum(acc * scale, 0)
    # a +inf entry makes the segment's log-sum-exp +inf (inf - inf above is nan)
    return tl.where(mx == float("inf"), float("inf"), tl.log(total) + mx_safe)


@triton.jit
def _lse_fwd(x_ptr, ptr_ptr, out_ptr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    lse = _segment_lse(x_ptr, start, end, BLOCK)
    tl.store(out_ptr + s, lse.to(out_ptr.dtype.element_ty))


@triton.jit
def _lse_bwd(x_ptr, ptr_ptr, lse_ptr, g_ptr, gx_ptr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    lse = tl.load(lse_ptr + s).to(tl.float32)
    g = tl.load(g_ptr + s).to(tl.float32)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        mask = idx < end
        v = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        tl.store(gx_ptr + idx, (g * tl.exp(v - lse)).to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _log_softmax_fwd(x_ptr, ptr_ptr, y_ptr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    lse = _segment_lse(x_ptr, start, end, BLOCK)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        mask = idx < end
        v = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + idx, (v - lse).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _log_softmax_bwd(y_ptr, ptr_ptr, g_ptr, gx_ptr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    acc = tl.zeros([BLOCK], tl.float32)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        acc += tl.load(g_ptr + idx, mask=idx < end, other=0.0).to(tl.float32)
    total = tl.sum(acc, 0)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        mask = idx < end
        y = tl.load(y_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        tl.store(gx_ptr + idx, (g - tl.exp(y) * total).to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pairs_fwd(a_ptr, ptr_ptr, out_ptr, log_lam, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    acc = tl.zeros([BLOCK, BLOCK], tl.float32)
    for i0 in range(start, end, BLOCK):
        ii = i0 + tl.arange(0, BLOCK)
        ai = tl.load(a_ptr + ii, mask=ii < end, other=0.0).to(tl.float32)
        for j0 in range(i0, end, BLOCK):
            jj = j0 + tl.arange(0, BLOCK)
            aj = tl.load(a_ptr + jj, mask=jj < end, other=0.0).to(tl.float32)
            d = (jj[None, :] - ii[:, None]).to(tl.float32)
            ok = (jj[None, :] > ii[:, None]) & (jj[None, :] < end) & (ii[:, None] < end)
            diff = ai[:, None] - aj[None, :]
            acc += tl.where(ok, tl.exp(d * log_lam) * diff * diff, 0.0)
    tl.store(out_ptr + s, tl.sum(tl.sum(acc, 1), 0).to(out_ptr.dtype.element_ty))


@triton.jit
def _pairs_bwd(a_ptr, ptr_ptr, g_ptr, ga_ptr, log_lam, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    g = tl.load(g_ptr + s).to(tl.float32)
    for i0 in range(start, end, BLOCK):
        ii = i0 + tl.arange(0, BLOCK)
        imask = ii < end
        ai = tl.load(a_ptr + ii, mask=imask, other=0.0).to(tl.float32)
        acc = tl.zeros([BLOCK], tl.float32)
        for j0 in range(start, end, BLOCK):
            jj = j0 + tl.arange(0, BLOCK)
            aj = tl.load(a_ptr + jj, mask=jj < end, other=0.0).to(tl.float32)
            d = tl.abs(jj[None, :] - ii[:, None]).to(tl.float32)
            ok = (jj[None, :] != ii[:, None]) & (jj[None, :] < end)
            acc += tl.sum(tl.where(ok, tl.exp(d * log_lam) * (ai[:, None] - aj[None, :]), 0.0), 1)
        tl.store(ga_ptr + ii, (2.0 * g * acc).to(ga_ptr.dtype.element_ty), mask=imask)
