"""HyperGrid (Bengio et al. 2021): walk on a ``height^ndim`` grid, exit anywhere.

State: integer coordinates ``[N, ndim]`` in ``[0, height)``.  Forward action ``i < ndim``
increments coordinate ``i``; action ``ndim`` is exit.  Backward action ``i`` decrements
coordinate ``i``.  Reward (original paper), with ``u = |x / (height - 1) - 0.5|`` per axis::

    R(x) = R0 + R1 * prod_i [0.25 < u_i <= 0.5] + R2 * prod_i [0.3 < u_i < 0.4]

Exploration benchmarks use three more families (``HyperGrid(reward=...)``):
:class:`SparseHyperGridReward` (1 on the corner-band modes, ``eps`` elsewhere),
:class:`DeceptiveHyperGridReward` (a slope towards s_0 that lures the sampler away from them) and
:class:`GAFNGridReward` (the sparse grid of the GAFN paper: 1 on ``{1, height-2}^ndim`` except
``(1, ..., 1)``, ``eps`` elsewhere).
"""

from __future__ import annotations

import torch

from gfn.env import DiscreteEnv, Reward


class HyperGridReward(Reward):
    """The R0/R1/R2 corner reward of the original GFlowNet paper."""

    def __init__(self, height: int, R0: float = 0.1, R1: float = 0.5, R2: float = 2.0):
        if min(R0, R1, R2) < 0:
            raise ValueError(f"HyperGrid rewards must be >= 0, got R0={R0}, R1={R1}, R2={R2}")
        self.height, self.R0, self.R1, self.R2 = height, R0, R1, R2

    def reward(self, states: torch.Tensor) -> torch.Tensor:
        """R(x) for integer grid coordinates."""
        u = (states.double() / (self.height - 1) - 0.5).abs()
        outer = ((u > 0.25) & (u <= 0.5)).all(-1)
        inner = ((u > 0.3) & (u < 0.4)).all(-1)
        r = self.R0 + self.R1 * outer.double() + self.R2 * inner.double()
        return r.float()

    @property
    def max_reward(self) -> float:
        """Largest reward (attained on the modes)."""
        return self.R0 + self.R1 + self.R2


class SparseHyperGridReward(Reward):
    """Sparse family (exploration benchmarks): ``R(x) = 1`` where every coordinate lies in the
    mode band ``lo < u_i < hi`` (``u_i = |x_i / (height - 1) - 0.5|``; default the original R2
    band 0.3-0.4), else ``eps``.  The modes are the band cells near the ``2^ndim`` corners."""

    def __init__(self, height: int, eps: float = 1e-4, lo: float = 0.3, hi: float = 0.4):
        if not eps >= 0 or not 0 <= lo < hi <= 0.5:
            raise ValueError(f"SparseHyperGridReward needs eps >= 0 and 0 <= lo < hi <= 0.5, got eps={eps}, lo={lo}, hi={hi}")
        self.height, self.eps, self.lo, self.hi = height, eps, lo, hi

    def reward(self, states: torch.Tensor) -> torch.Tensor:
        """1 on the mode cells, eps elsewhere."""
        u = (states.double() / (self.height - 1) - 0.5).abs()
        tol = 1e-9  # a cell on a band edge (u = 0.3 at height 16 is 0.30000000000000004) stays out
        mode = ((u > self.lo + tol) & (u < self.hi - tol)).all(-1)
        return torch.where(mode, 1.0, self.eps).float()


class GAFNGridReward(Reward):
    """The sparse grid of GAFN (Pan et al. 2023, "Generative Augmented Flow Networks"; its
    authors' ``func_corners``, generalised to ``ndim`` axes as in torchgfn's ``SparseReward``)::

        R(x) = 1  if every x_i is 1 or height - 2 and x != (1, ..., 1),   else eps

    so there are ``2^ndim - 1`` modes, one cell each, all far from s_0 (on 2-D: (H-2, H-2),
    (1, H-2), (H-2, 1)).  The authors use R = 0 off the modes (``1e-8`` inside their log)."""

    def __init__(self, height: int, eps: float = 1e-8):
        if height < 4:
            raise ValueError(f"GAFNGridReward needs height >= 4 (modes at 1 and height-2 must differ), got {height}")
        if not eps >= 0:
            raise ValueError(f"GAFNGridReward needs eps >= 0, got eps={eps}")
        self.height, self.eps = height, eps

    def reward(self, states: torch.Tensor) -> torch.Tensor:
        """1 on the mode cells, eps elsewhere."""
        lo, hi = states == 1, states == self.height - 2
        mode = (lo | hi).all(-1) & ~lo.all(-1)
        return torch.where(mode, 1.0, self.eps).float()


class DeceptiveHyperGridReward(Reward):
    """Deceptive family: a reward slope that falls away from s_0 lures the sampler back towards
    the origin, while the modes lie in the corner bands::

        m(x) = prod_i [0.3 < u_i < 0.4]
        R(x) = eps + (1 - m(x)) * lure * (1 - sum_i x_i / (ndim (height - 1))) + R_mode * m(x)

    so every mode has the reward ``eps + R_mode`` and the best non-mode cell is s_0."""

    def __init__(self, height: int, eps: float = 1e-4, lure: float = 0.3, R_mode: float = 1.0):
        if min(eps, lure, R_mode) < 0:
            raise ValueError(f"DeceptiveHyperGridReward needs eps, lure, R_mode >= 0, got {eps}, {lure}, {R_mode}")
        self.height, self.eps, self.lure, self.R_mode = height, eps, lure, R_mode

    def reward(self, states: torch.Tensor) -> torch.Tensor:
        """Slope towards s_0 plus the corner modes."""
        x = states.double()
        u = (x / (self.height - 1) - 0.5).abs()
        mode = ((u > 0.3 + 1e-9) & (u < 0.4 - 1e-9)).all(-1).double()  # band edges stay out (rounding)
        slope = 1 - x.sum(-1) / (states.shape[-1] * (self.height - 1))
        return (self.eps + (1 - mode) * self.lure * slope + self.R_mode * mode).float()


class HyperGrid(DiscreteEnv):
    """The ``ndim``-dimensional hypergrid of side ``height`` with an exit action."""

    state_dtype = torch.long
    #: every cell is a terminal object, so log R is meaningful at every state (forward-looking objectives)
    provides_intermediate_rewards = True

    def __init__(self, ndim: int = 2, height: int = 8, R0: float = 0.1, R1: float = 0.5, R2: float = 2.0,
                 reward: Reward | None = None, device: str | torch.device = "cpu"):
        if ndim < 1 or height < 2:
            raise ValueError(f"HyperGrid needs ndim >= 1 and height >= 2, got ndim={ndim}, height={height}")
        super().__init__(n_actions=ndim + 1, n_backward_actions=ndim,
                         reward=reward or HyperGridReward(height, R0, R1, R2), device=device)
        self.ndim, self.height = ndim, height
        self.state_shape = (ndim,)
        self._powers = (height ** torch.arange(ndim - 1, -1, -1, device=self.device)).long()
        self._offsets = (torch.arange(ndim, device=self.device) * height).long()

    # contract ------------------------------------------------------------------
    def initial_states(self, n: int) -> torch.Tensor:
        """``n`` copies of the origin."""
        return torch.zeros(n, self.ndim, dtype=torch.long, device=self.device)

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Increment the chosen coordinate."""
        return states.scatter_add(1, actions.unsqueeze(1), torch.ones_like(states[:, :1]))

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Decrement the chosen coordinate."""
        return states.scatter_add(1, actions.unsqueeze(1), -torch.ones_like(states[:, :1]))

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Increment allowed below the upper edge; exit always allowed."""
        ok = states < self.height - 1
        return torch.cat([ok, torch.ones_like(ok[:, :1])], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Decrement allowed above zero."""
        return states > 0

    # optional ------------------------------------------------------------------
    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        """K-hot encoding: one one-hot block of size ``height`` per coordinate."""
        # scatter instead of F.one_hot: one_hot range-checks its input with host syncs
        cols = states + self._offsets
        out = torch.zeros(states.shape[0], self.ndim * self.height, device=states.device)
        return out.scatter_(1, cols, 1.0)

    @property
    def feature_dim(self) -> int:
        return self.ndim * self.height

    @property
    def n_states(self) -> int:
        """Number of grid cells (all are terminal)."""
        return self.height ** self.ndim

    def enumerate_states(self) -> torch.Tensor:
        """All cells, in the order of :meth:`state_index`."""
        idx = torch.arange(self.n_states, device=self.device)
        return (idx.unsqueeze(1) // self._powers) % self.height

    def state_index(self, states: torch.Tensor) -> torch.Tensor:
        """Row-major index of each cell."""
        return (states * self._powers).sum(-1)

    def mode_mask(self) -> torch.Tensor:
        """Boolean over :meth:`enumerate_states`: cells with the maximal reward."""
        lr = self.log_reward(self.enumerate_states())
        return lr >= lr.max() - 1e-6
