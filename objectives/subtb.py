"""Sub-trajectory balance SubTB(lambda) (Madan et al. 2023), O(B*T) memory, no loops over lengths.

A trajectory ``s_0 -> ... -> s_n = x -(exit)->`` has ``m + 1`` nodes: its states ``s_0..s_n``
and, when it is complete, the node reached by the exit action, whose log-flow is ``log R(x)``.
With per-node *potentials*::

    a_k = log F(s_k) - sum_{t<k} log P_F(s_{t+1} | s_t) + sum_{t<=k} log P_B(s_{t-1} | s_t)

the residual of the sub-trajectory ``s_i -> ... -> s_j`` is simply ``delta_ij = a_i - a_j``
(the exit transition contributes its log P_F and no log P_B).  The weighted sum over all
pairs ``i < j`` then needs only closed-form square terms and one product with the constant
Toeplitz matrix ``K[j, i] = lambda^(j - i)`` (``j > i``)::

    sum_{i<j} w_{j-i} (a_i - a_j)^2 = sum_i a_i^2 (G(i) + G(m - i)) - 2 sum_i a_i (A K)_i,
    G(n) = sum_{d=1..n} lambda^d,

so memory is O(B * T) and the only super-linear work is the product ``A K`` (dense up to 64
node slots, blockwise beyond: see :func:`neg2_toeplitz_product`).  Per-trajectory potentials
are centred (a detached shift, which leaves every delta unchanged) so the expansion does not
cancel catastrophically in float32.

Weightings (``w_d = lambda^d`` for the geometric ones, ``w_d = 1`` for the equal ones):

* ``geometric_within`` (default): ``sum w delta^2 / sum w`` within each trajectory, then the mean
  over trajectories;
* ``geometric``: ``sum w delta^2 / sum w`` over all sub-trajectories of the batch at once
  (long trajectories weigh more);
* ``equal_within`` / ``equal``: the same with ``lambda = 1`` (plain means of ``delta^2``);
* ``per_length``: torchgfn's historical ``"geometric"`` (the weighting of the commit that added
  SubTB there, used by papers run on it): the mean of ``delta^2`` over all sub-trajectories of
  ``l`` transitions in the batch, for each ``l = 1..T`` (T: the longest trajectory of the batch,
  exit included), combined with weights ``lambda^(l-1) (1 - lambda) / (1 - lambda^T)`` (``1/T``
  at ``lambda = 1``).  Note that this is *not* this library's ``geometric``: here every length
  gets its weight whatever the number of its sub-trajectories, and the weight of a length does
  not decay with ``lambda^l`` relative to the others in the same way.  Its per-length sums are
  evaluated in float64 from prefix sums and the diagonal sums of ``A^T A`` (``O(B T + T^2)``
  memory).

``lambda > 1`` is legal (it favours long sub-trajectories; large ``lambda^T`` is evaluated in
float64, and an error is raised beyond float64 range); ``lambda = 1`` is handled without any
``(1 - lambda^n) / (1 - lambda)`` division.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from gfn.estimators import GFlowNet
from gfn.trajectories import TrajectoryBatch
from gfn.objectives.base import Objective, register_objective
from gfn.objectives.common import as_bool, as_float

WEIGHTINGS = ("geometric_within", "geometric", "equal", "equal_within", "per_length")

# lambda^(T) beyond exp(_F32_LOG_MAX) is evaluated in float64; beyond exp(_F64_LOG_MAX) we refuse
_F32_LOG_MAX = 60.0
_F64_LOG_MAX = 600.0


def row_positions(batch: TrajectoryBatch, width: int) -> torch.Tensor:
    """Flat index ``b * width + k`` of row ``k`` of trajectory ``b`` in a ``[B, width]`` matrix."""
    offsets = torch.arange(batch.batch_size, device=batch.ptr.device) * width - batch.ptr[:-1]
    return torch.repeat_interleave(offsets, batch.lengths, output_size=batch.n_rows) + \
        torch.arange(batch.n_rows, device=batch.ptr.device)


def node_potentials(batch: TrajectoryBatch, log_pf: torch.Tensor, log_pb: torch.Tensor,
                    log_flow: torch.Tensor, log_r_exit: torch.Tensor,
                    first_log_flow: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Potentials ``a_k`` of every node as a ``[B, Lmax + 1]`` matrix, and the node counts ``n_nodes``
    (entries at ``k >= n_nodes[b]`` are padding, not zeros: use them only through :func:`subtb_from_potentials`).

    ``log_pf``/``log_pb``/``log_flow`` are per row (``log_pb`` is 0 at first rows, as
    :meth:`GFlowNet.evaluate` returns it); ``log_r_exit`` [B] is the log-flow of the exit node
    of complete trajectories; ``first_log_flow`` [B] optionally replaces log F at the first row
    (e.g. log Z).  Incomplete trajectories have no exit node and ignore their last log P_F.

    Uses ``a_k = (log F_k + log P_F_k) + sum_{t<=k} (log P_B_t - log P_F_t)``: two padded rows
    and one cumulative sum per trajectory (never a global cumsum over the packed rows).
    """
    B = batch.batch_size
    lengths = batch.lengths
    width = int(lengths.max()) + 1
    dev = log_flow.device
    dtype = log_flow.dtype
    complete = batch.is_complete if batch.is_complete is not None else torch.ones(B, dtype=torch.bool, device=dev)
    n_nodes = lengths + complete.long()
    log_pf = log_pf.to(dtype)
    if not bool(complete.all()):
        # the action recorded at the last state of an incomplete trajectory is not part of it
        cut = batch.last_rows[~complete]
        log_pf = log_pf.index_fill(0, cut, 0.0)
    if first_log_flow is not None:
        log_flow = log_flow.index_copy(0, batch.first_rows, first_log_flow.to(dtype))
    flat = row_positions(batch, width)
    done = complete.nonzero().squeeze(1)
    exit_pos = done * width + lengths[done]
    v = torch.zeros(B * width, dtype=dtype, device=dev).index_copy(
        0, torch.cat([flat, exit_pos]), torch.cat([log_flow + log_pf, log_r_exit.to(dtype)[done]]))
    d = torch.zeros(B * width, dtype=dtype, device=dev).index_copy(0, flat, log_pb.to(dtype) - log_pf)
    return v.view(B, width) + torch.cumsum(d.view(B, width), 1), n_nodes


_TABLE_CACHE: dict = {}

#: the product with K is evaluated densely up to this many node slots, blockwise beyond
DENSE_MAX = 64
#: block size of the blockwise product
BLOCK = 32


def _cached(key, make):
    t = _TABLE_CACHE.get(key)
    if t is None:
        if len(_TABLE_CACHE) > 64:
            _TABLE_CACHE.clear()
        t = _TABLE_CACHE[key] = make()
    return t


def _toeplitz64(lam: float, m: int, scale: float = 1.0) -> torch.Tensor:
    """``scale * lam^(j - i)`` at ``[j, i]`` for ``j > i``, else 0 (float64)."""
    idx = torch.arange(m, dtype=torch.float64)
    d = idx.unsqueeze(1) - idx.unsqueeze(0)
    lam64 = torch.tensor(lam, dtype=torch.float64)
    return torch.where(d > 0, scale * lam64 ** d.clamp(min=0), torch.zeros((), dtype=torch.float64))


def _weight_tables(lam: float, m: int, dtype: torch.dtype, device: torch.device):
    """``G(n) = sum_{d=1..n} lam^d`` as a row, the length-``m`` windows of the reversed, zero-padded
    ``G`` (window ``m - n_b`` holds ``G(n_b - 1 - i)`` at ``i``) and ``H(n) = sum_{k<=n} G(k)`` (total
    weight of n + 1 nodes).  The windows are an ``[m + 1, m]`` *view* of 2m numbers (float64, or
    ``dtype`` when it is float64): no table here grows with m^2."""
    def make():
        powers = torch.tensor(lam, dtype=torch.float64) ** torch.arange(m, dtype=torch.float64)
        g = torch.cumsum(powers, 0) - 1.0
        g_rev = torch.cat([g.flip(0), torch.zeros(m, dtype=torch.float64)]).to(device)
        return g.to(dtype=dtype, device=device).unsqueeze(0), g_rev, torch.cumsum(g, 0).to(dtype=dtype, device=device)
    g_row, g_rev, h = _cached(("weights", lam, m, dtype, str(device)), make)
    return g_row, g_rev.unfold(0, m, 1), h


def neg2_toeplitz_product(a: torch.Tensor, lam: float, block: Optional[int] = BLOCK) -> torch.Tensor:
    """``-2 (A K)_i = -2 sum_{j>i} lam^(j - i) a_j`` for every row of ``a`` [B, M].

    Up to :data:`DENSE_MAX` columns (or with ``block=None``) this is one dense product with the
    Toeplitz matrix.  Beyond, the same product is evaluated blockwise: dense within blocks of
    ``block`` columns, and the off-diagonal blocks, which have rank one
    (``lam^(j - i) = lam^(j - s) lam^(s - i)``), through per-block discounted sums and a small
    Toeplitz product over blocks — the same numbers with ``block / M`` of the work.
    """
    B, M = a.shape
    dev, dtype = a.device, a.dtype
    if block is None or M <= max(DENSE_MAX, 2 * block):
        k = _cached(("dense", lam, M, dtype, str(dev)), lambda: _toeplitz64(lam, M, -2.0).to(dtype=dtype, device=dev))
        return a @ k
    L = block
    nc = -(-M // L)

    def make():
        lam64 = torch.tensor(lam, dtype=torch.float64)
        kk = torch.arange(L, dtype=torch.float64)
        c = torch.arange(nc, dtype=torch.float64)
        dc = c.unsqueeze(1) - c.unsqueeze(0)          # c' - c at [c', c]
        k_blocks = torch.where(dc > 0, -2.0 * lam64 ** ((dc - 1).clamp(min=0) * L), torch.zeros((), dtype=torch.float64))
        return tuple(x.to(dtype=dtype, device=dev) for x in
                     (_toeplitz64(lam, L, -2.0), lam64 ** kk, lam64 ** (L - kk), k_blocks))
    k_in, to_start, from_end, k_blocks = _cached(("blocked", lam, M, L, dtype, str(dev)), make)
    ab = torch.nn.functional.pad(a, (0, nc * L - M)).view(B, nc, L)
    within = ab @ k_in                                  # pairs inside a block
    block_sums = ab @ to_start                          # [B, nc]: sum_j lam^(j - start) a_j
    later = block_sums @ k_blocks                       # [B, nc]: -2 sum over later blocks, discounted to the block end
    return (within + later.unsqueeze(-1) * from_end).view(B, nc * L)[:, :M]


def use_pair_kernel(a: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the per-trajectory pair sums go to the Triton SubTB kernel (CUDA tensors in a float
    dtype the kernel takes, Triton importable, ``GFN_TRITON`` not 0); the closed form otherwise."""
    if not a.is_cuda or dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    from gfn import kernels
    return kernels.enabled() and kernels.available()


def packed_pair_sums(a: torch.Tensor, valid: torch.Tensor, n_nodes: torch.Tensor, lam: float) -> torch.Tensor:
    """``sum_{i<j} lam^(j-i) (a_i - a_j)^2`` per row of padded ``a`` [B, M], through
    :func:`gfn.ops.subtb_pair_sum` on the packed valid entries (the Triton kernel on CUDA; the
    padded reference elsewhere, which is what the tests compare the closed form with)."""
    from gfn import ops
    packed = a[valid]  # row-major: each trajectory's nodes stay contiguous and in order
    return ops.subtb_pair_sum(packed, ops.lengths_to_ptr(n_nodes.clamp(min=0)), lam)


def per_length_subtb(a: torch.Tensor, n_nodes: torch.Tensor, lam: float) -> torch.Tensor:
    """torchgfn's historical ``"geometric"`` SubTB (``weighting="per_length"``): for each
    sub-trajectory length l = 1..T the mean of ``(a_i - a_{i+l})^2`` over the batch, weighted by
    ``lambda^(l-1) (1 - lambda) / (1 - lambda^T)``.  ``a`` [B, M] padded potentials."""
    out_dtype = a.dtype
    B, M = a.shape
    T = int(n_nodes.max()) - 1 if B > 0 else 0
    if T < 1:
        return a.sum() * 0.0
    log_span = (T - 1) * abs(math.log(lam))
    if log_span > _F64_LOG_MAX:
        raise ValueError(f"SubTB per_length weights lambda^T = {lam}^{T} leave float64; use a lambda closer to 1")
    dev = a.device
    valid = torch.arange(M, device=dev).unsqueeze(0) < n_nodes.unsqueeze(1)
    a = a.double()
    a = torch.where(valid, a - a[:, :1].detach(), torch.zeros((), dtype=a.dtype, device=dev))
    lengths = torch.arange(1, T + 1, device=dev)                               # l = 1..T
    # squares: sum over pairs (i, i + l) of a_i^2 + a_{i+l}^2 from per-trajectory prefix sums
    prefix = torch.nn.functional.pad(torch.cumsum(a * a, 1), (1, 0))           # P(k) = sum_{i<k} a_i^2
    n = n_nodes.unsqueeze(1)
    lo = (n - lengths.unsqueeze(0)).clamp(min=0)                               # pairs start at i < n - l
    first = prefix.gather(1, lo)
    second = prefix.gather(1, n.expand(B, T)) - prefix.gather(1, torch.minimum(lengths.unsqueeze(0), n))
    squares = (first + second).sum(0)
    # cross terms: sum_b sum_i a_i a_{i+l} = the l-th superdiagonal sum of A^T A (padding is 0)
    gram = a[:, :T + 1].T @ a[:, :T + 1]
    idx = torch.arange(T + 1, device=dev)
    lag = idx.unsqueeze(0) - idx.unsqueeze(1)                                  # j - i at [i, j]
    upper = lag > 0
    cross = torch.zeros(T + 1, dtype=a.dtype, device=dev).index_add(0, lag[upper], gram[upper])[1:]
    counts = lo.sum(0).to(a.dtype)                                             # sub-trajectories of length l
    per_length = (squares - 2.0 * cross) / counts
    lam64 = torch.tensor(float(lam), dtype=torch.float64, device=dev)
    if lam == 1.0:
        weights = torch.full((T,), 1.0 / T, dtype=torch.float64, device=dev)
    else:
        weights = lam64 ** (lengths - 1).double() * (1 - lam64) / (1 - lam64 ** T)
    return (per_length * weights).sum().to(out_dtype)


def subtb_from_potentials(a: torch.Tensor, n_nodes: torch.Tensor, lamda: float,
                          weighting: str = "geometric_within") -> torch.Tensor:
    """SubTB loss from padded potentials ``a`` [B, M] (entries past ``n_nodes`` are ignored), in closed form."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown SubTB weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    lam = 1.0 if weighting.startswith("equal") else float(lamda)
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"SubTB lambda must be finite and > 0, got {lamda}")
    if weighting == "per_length":
        return per_length_subtb(a, n_nodes, lam)
    B, M = a.shape
    out_dtype = a.dtype
    log_span = (M - 1) * math.log(lam) if lam > 1 else 0.0
    if log_span > _F64_LOG_MAX:
        raise ValueError(f"SubTB weights lambda^T = {lam}^{M - 1} overflow float64; use a smaller lambda "
                         f"or shorter trajectories")
    dtype = torch.float64 if (log_span > _F32_LOG_MAX or a.dtype == torch.float64) else a.dtype
    a = a.to(dtype)
    g_row, g_windows, h = _weight_tables(lam, M, dtype, a.device)
    valid = torch.arange(M, device=a.device).unsqueeze(0) < n_nodes.unsqueeze(1)
    # centre each trajectory on its first node (a detached shift: every delta_ij is unchanged,
    # and a_k - a_0 are residuals themselves, so the expansion below does not cancel in float32)
    a = torch.where(valid, a - a[:, :1].detach(), torch.zeros((), dtype=dtype, device=a.device))
    if use_pair_kernel(a, dtype):
        per_traj = packed_pair_sums(a, valid, n_nodes, lam)  # Triton on CUDA: pairs streamed, O(1) memory
    else:
        # coefficient of a_i^2: sum_{j<i} w_{i-j} + sum_{i<j<n} w_{j-i} = G(i) + G(n - 1 - i)
        coef = g_windows.index_select(0, (M - n_nodes).clamp(min=0)).to(dtype) + g_row
        if lam == 1.0:
            # exclusive suffix sums replace the all-ones Toeplitz product
            cross = -2.0 * (torch.flip(torch.cumsum(torch.flip(a, [1]), 1), [1]) - a)
        else:
            cross = neg2_toeplitz_product(a, lam)               # -2 sum_{j>i} w_{j-i} a_j
        per_traj = (a * torch.addcmul(cross, a, coef)).sum(1)   # sum_{i<j} w_{j-i} (a_i - a_j)^2
    weight = h[(n_nodes - 1).clamp(min=0)]                   # sum_{i<j} w_{j-i}
    if weighting.endswith("_within"):
        has = weight > 0
        if not bool(has.any()):
            return a.sum() * 0.0
        loss = (per_traj[has] / weight[has]).mean()
    else:
        total = weight.sum()
        loss = per_traj.sum() / total if bool(total > 0) else a.sum() * 0.0
    return loss.to(out_dtype)


@register_objective("subtb")
class SubTrajectoryBalance(Objective):
    """SubTB(lambda) over all sub-trajectories, weighted as in :data:`WEIGHTINGS`."""

    needs_flow = True

    def __init__(self, lamda: float = 0.9, weighting: str = "geometric_within", use_log_z: bool = False,
                 **kw):
        super().__init__(**kw)
        self.lamda = as_float(lamda, "lamda", positive=True)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown SubTB weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        self.weighting = weighting
        self.use_log_z = as_bool(use_log_z, "use_log_z")
        self.needs_log_z = self.use_log_z

    def intermediate_log_rewards(self, model: GFlowNet, batch: TrajectoryBatch) -> Optional[torch.Tensor]:
        """Per-row log R(s) added to the flow head (forward-looking subclasses); None for plain SubTB."""
        return None

    def potentials(self, model: GFlowNet, batch: TrajectoryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded node potentials ``a`` [B, Lmax + 1] and node counts [B] (one batched evaluation)."""
        log_r_rows = self.intermediate_log_rewards(model, batch)
        s = model.evaluate(batch, pf=True, pb=True, flow=True)
        log_flow = s.log_flow
        if log_r_rows is None:
            log_r_exit = self.log_rewards(batch)
        else:
            log_r_rows = log_r_rows.to(log_flow.dtype)
            log_flow = log_flow + log_r_rows
            log_r_exit = log_r_rows[batch.last_rows]
        first = None
        if self.use_log_z:
            log_z = model.log_z(batch.batch_size, batch.cond).to(log_flow.dtype)
            starts = model.env.is_initial(batch.initial_states)
            first = torch.where(starts, log_z, log_flow[batch.first_rows])
        return node_potentials(batch, s.log_pf, s.log_pb, log_flow, log_r_exit, first)

    def loss(self, model: GFlowNet, batch: TrajectoryBatch) -> torch.Tensor:
        """Weighted mean of squared sub-trajectory residuals."""
        a, n_nodes = self.potentials(model, batch)
        return subtb_from_potentials(a, n_nodes, self.lamda, self.weighting)
