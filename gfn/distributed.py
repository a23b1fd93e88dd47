"""Data-parallel training on ``torch.distributed`` (``torchrun --nproc_per_node N gfn train ...``).

Every rank runs the same :class:`~gfn.trainer.Trainer` on its own trajectories:

* the model starts identical everywhere (rank 0's parameters are broadcast), then each rank
  draws from its own seed stream (:func:`rank_seed`), so ranks sample different trajectories;
* after ``loss.backward()`` a gradient hook (:class:`GradAllReduce`) averages the gradients of
  all ranks in one all-reduce per dtype, *before* clipping and the optimizer step, so every rank
  applies the same update and the parameters stay bit-identical.  It works on ``.grad``, so
  :meth:`GFlowNet.evaluate` and every other model method stay usable (no DDP ``forward`` wrapper);
* scalars and metrics are averaged across ranks; rank 0 writes logs and checkpoints;
  replay buffers stay per rank (and are checkpointed per rank).

``gloo`` is used on CPU and ``nccl`` on CUDA.  With one process everything here is a no-op.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Where this process sits in the process group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    device: str = "cpu"
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that writes logs and checkpoints)."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Device on which collective tensors must live (CUDA for nccl)."""
        return torch.device(self.device if self.backend == "nccl" else "cpu")


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when launched as a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_device(device: str) -> str:
    """``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun, so each rank owns one GPU."""
    if torch.device(device).type == "cuda" and torch.device(device).index is None and launched_world_size() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def bind_local_gpu(device: str) -> None:
    """Under torchrun, make plain ``"cuda"`` mean this rank's GPU (``LOCAL_RANK``)."""
    dev = local_device(device)
    if dev != device and torch.cuda.is_available():
        torch.cuda.set_device(torch.device(dev))


def setup(device: str = "cpu", backend: str = "auto", timeout_s: float = 600.0) -> DistContext:
    """Join the process group described by torchrun's environment variables (idempotent;
    returns a single-process context when WORLD_SIZE is unset or 1)."""
    if not dist.is_available() or (launched_world_size() <= 1 and not dist.is_initialized()):
        return DistContext(device=device)
    bind_local_gpu(device)
    device = local_device(device)
    is_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        backend = "nccl" if is_cuda else "gloo"
    here = False
    if not dist.is_initialized():
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={launched_world_size()} but {var} is not set; launch with torchrun")
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        here = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=dist.get_backend(),
                       device=device, initialized_here=here)


def cleanup(ctx: DistContext, barrier: bool = False) -> None:
    """Leave the process group if :func:`setup` created it.  ``barrier`` (normal completion only:
    after an error the other ranks may never arrive): wait for every rank first, so no rank tears
    its connections down while another still uses them (seen as an abort at exit with gloo)."""
    if ctx.initialized_here and dist.is_initialized():
        if barrier and ctx.world_size > 1:
            dist.barrier()
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """An independent seed for ``rank`` derived from the run seed (rank streams never overlap)."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, dtype=np.uint64)[0] % (2**63))


class GradAllReduce:
    """Trainer gradient hook: replaces every ``.grad`` by its mean over ranks (sum / world size).

    Parameters without a gradient on some ranks count as zero there; a parameter without a
    gradient on every rank keeps ``grad = None`` (so the optimizer skips it, as it would alone).
    """

    def __init__(self, ctx: DistContext):
        self.ctx = ctx

    def __call__(self, trainer) -> None:
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        if not params or not self.ctx.enabled:
            return
        dev = self.ctx.comm_device
        by_dtype: dict = {}
        for i, p in enumerate(params):
            if p.grad is not None and p.grad.is_sparse:
                raise RuntimeError("GradAllReduce does not support sparse gradients")
            by_dtype.setdefault(p.dtype, []).append(i)
        order = sorted(by_dtype, key=str)
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)  # summed: ranks with a grad
        with torch.no_grad():
            flats = []
            for j, dt in enumerate(order):
                parts = [(params[i].grad if params[i].grad is not None else torch.zeros_like(params[i])).reshape(-1).to(dev)
                         for i in by_dtype[dt]]
                if j == 0:
                    parts.append(present.to(device=dev, dtype=dt))
                flats.append(torch.cat(parts))
            for f in flats:
                dist.all_reduce(f)
            anywhere = (flats[0][-len(params):] > 0).tolist()  # one device sync, not one per parameter
            for j, dt in enumerate(order):
                off = 0
                for i in by_dtype[dt]:
                    p = params[i]
                    g = flats[j][off:off + p.numel()].view_as(p).div_(self.ctx.world_size)
                    off += p.numel()
                    if not anywhere[i]:
                        p.grad = None
                    elif p.grad is None:
                        p.grad = g.to(p.device).clone()
                    else:
                        p.grad.copy_(g)


@torch.no_grad()
def broadcast_model(ctx: DistContext, model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not ctx.enabled:
        return
    for t in model.state_dict().values():
        if torch.is_tensor(t):
            buf = t.to(ctx.comm_device)
            dist.broadcast(buf, 0)
            if buf is not t:
                t.copy_(buf)


def attach(ctx: DistContext, trainer, seed: int) -> None:
    """Make ``trainer`` data-parallel: same start on all ranks, gradient averaging, per-rank RNG."""
    if not ctx.enabled:
        return
    from gfn.utils import seed_everything
    broadcast_model(ctx, trainer.model)
    hooks = getattr(trainer, "grad_hooks", None)
    if hooks is None:
        raise RuntimeError("this Trainer has no grad_hooks list; distributed training needs it")
    if not any(isinstance(h, GradAllReduce) for h in hooks):
        hooks.append(GradAllReduce(ctx))
    seed_everything(rank_seed(seed, ctx.rank))


def _keys_crc(keys: list[str]) -> float:
    return float(zlib.crc32("\x00".join(keys).encode()))


def reduce_mean(ctx: DistContext, values: dict) -> dict:
    """Average the numeric entries of ``values`` over ranks (every rank must pass the same keys)."""
    if not ctx.enabled:
        return values
    keys = sorted(k for k, v in values.items() if _is_number(v))
    t = torch.tensor([float(values[k]) for k in keys] + [_keys_crc(keys)], dtype=torch.float64,
                     device=ctx.comm_device)
    dist.all_reduce(t)
    if float(t[-1]) != _keys_crc(keys) * ctx.world_size:
        raise RuntimeError(f"ranks reported different metric names (rank {ctx.rank}: {keys})")
    out = dict(values)
    out.update({k: float(v) / ctx.world_size for k, v in zip(keys, t[:-1].tolist())})
    return out


def reduce_sum(ctx: DistContext, value: float) -> float:
    """Sum of a number over ranks."""
    if not ctx.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.comm_device)
    dist.all_reduce(t)
    return float(t[0])


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if ``flag`` is True on any rank (used to stop all ranks together)."""
    if not ctx.enabled:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], dtype=torch.int32, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0])


def gather_to_main(ctx: DistContext, obj: Any) -> Optional[list]:
    """Collect one state object (tensors and plain values) from every rank on rank 0
    (``None`` elsewhere).  Objects travel as ``torch.save`` bytes and are read back with
    ``weights_only=True``."""
    if not ctx.enabled:
        return [obj]
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8).to(ctx.comm_device)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=ctx.comm_device)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, size)
    n = int(max(int(s) for s in sizes))
    padded = torch.zeros(n, dtype=torch.uint8, device=ctx.comm_device)
    padded[:data.numel()] = data
    chunks = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(chunks, padded)
    if not ctx.is_main:
        return None
    return [torch.load(io.BytesIO(c[:int(s)].cpu().numpy().tobytes()), weights_only=True)
            for c, s in zip(chunks, sizes)]


def params_digest(model: torch.nn.Module) -> int:
    """A 63-bit hash of the exact bytes of every parameter and buffer."""
    h = hashlib.blake2b(digest_size=8)
    for k, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(k.encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def params_in_sync(ctx: DistContext, model: torch.nn.Module) -> bool:
    """True when every rank holds bit-identical parameters."""
    if not ctx.enabled:
        return True
    d = torch.tensor([params_digest(model)], dtype=torch.int64, device=ctx.comm_device)
    all_d = [torch.zeros_like(d) for _ in range(ctx.world_size)]
    dist.all_gather(all_d, d)
    return len({int(x) for x in all_d}) == 1


def _is_number(v) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return True
    return torch.is_tensor(v) and v.numel() == 1
