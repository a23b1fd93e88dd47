"""Validation of CSR segment layouts (``ptr[B+1]`` offsets), shared by :mod:`gfn.ops` and the
optional Triton kernels of :mod:`gfn.kernels` that ops dispatches to (so the kernels need not
import ops)."""

from __future__ import annotations

import torch


def check_layout(ptr: torch.Tensor, n_rows: int) -> None:
    """Raise ``ValueError`` unless ``ptr`` is a segment layout of ``n_rows`` rows: 1-D long,
    ``ptr[0] == 0``, non-decreasing, ``ptr[-1] == n_rows`` (the kernels and ``segment_reduce``
    would otherwise read or write outside their buffers, or silently drop rows).

    On CPU the check is a few tiny ops; on an accelerator it is a device-side assert (no host
    sync), which fails the next synchronising call with the same message."""
    if ptr.dim() != 1 or ptr.dtype != torch.long:
        raise ValueError(f"ptr must be a 1-D long tensor, got shape {tuple(ptr.shape)} dtype {ptr.dtype}")
    if ptr.numel() == 0:
        raise ValueError("ptr must hold S + 1 >= 1 offsets, got an empty tensor")
    msg = f"ptr is not a segment layout of {n_rows} rows: it must start at 0, never decrease and end at {n_rows}"
    if ptr.device.type == "cpu":
        if int(ptr[0]) != 0 or int(ptr[-1]) != n_rows or (ptr.numel() > 1 and bool((ptr[1:] < ptr[:-1]).any())):
            raise ValueError(f"{msg}; got {ptr.tolist() if ptr.numel() <= 12 else ptr}")
    else:
        ok = (ptr[0] == 0) & (ptr[-1] == n_rows) & (ptr[1:] >= ptr[:-1]).all()
        torch._assert_async(ok, msg)
