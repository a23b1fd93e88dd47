"""Packed trajectories: all transitions of a batch stored contiguously with CSR offsets.

Layout.  Trajectory ``b`` visits states ``s_0, ..., s_n = x`` and then exits.  Its states
occupy rows ``ptr[b]:ptr[b+1]`` of :attr:`TrajectoryBatch.states`, so it has ``n + 1`` rows.
Row ``k`` also stores

* ``actions[k]``: the forward action taken *at* ``states[k]`` (the exit action at ``x``);
* ``bwd_actions[k]``: the backward action at ``states[k]`` that leads to its predecessor
  (meaningless, and never used, at the first row of a trajectory).

So per-trajectory sums (log P_F(tau), log P_B(tau)) are segment sums over one ``ptr``, and
per-transition quantities (DB residuals) are rows ``k`` and ``k + 1`` of the same segment.
A trajectory need not start at s_0 (``starts_at_initial`` False) or end with exit
(``is_complete`` False) — forward-looking objectives and local search use such pieces.  Both
flags are ``None`` when every trajectory of the batch is whole in that respect (what the sampler
produces from s_0), so objectives that need whole trajectories can check them without a host
sync on the hot path (:meth:`TrajectoryBatch.require_whole`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from gfn.ops import ptr_to_lengths, segment_ids
from gfn.states import States, batch_cat, batch_index, batch_len


@dataclass
class TrajectoryBatch:
    """A batch of trajectories packed row-contiguously (see module docstring)."""

    states: States
    ptr: torch.Tensor
    actions: torch.Tensor
    bwd_actions: torch.Tensor
    log_rewards: torch.Tensor
    #: per-trajectory conditioning (e.g. inverse temperature), shape [B, c] or None
    cond: Optional[torch.Tensor] = None
    #: log P_F of each row's forward action, kept from sampling (differentiable only when
    #: sampled with ``keep_log_probs=True``); None when the objective must recompute it
    log_pf: Optional[torch.Tensor] = None
    #: whether each trajectory ends with the exit action at a terminal state (None: all do)
    is_complete: Optional[torch.Tensor] = None
    #: whether each trajectory's first state is s_0 (None: all are)
    starts_at_initial: Optional[torch.Tensor] = None
    #: free-form per-batch information (e.g. local-search acceptance rate)
    info: dict = field(default_factory=dict)

    # ------------------------------------------------------------ derived layout
    @property
    def batch_size(self) -> int:
        """Number of trajectories B."""
        return self.ptr.numel() - 1

    @property
    def n_rows(self) -> int:
        """Total number of packed states N."""
        return int(self.actions.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        """Number of states of each trajectory (= number of transitions incl. exit)."""
        return ptr_to_lengths(self.ptr)

    @property
    def traj_ids(self) -> torch.Tensor:
        """Trajectory index of every row."""
        return segment_ids(self.ptr, self.n_rows)

    @property
    def first_rows(self) -> torch.Tensor:
        """Row index of each trajectory's first state."""
        return self.ptr[:-1]

    @property
    def last_rows(self) -> torch.Tensor:
        """Row index of each trajectory's last state (the terminal state x)."""
        return self.ptr[1:] - 1

    @property
    def is_first(self) -> torch.Tensor:
        """Boolean [N]: row is the first state of its trajectory."""
        m = torch.zeros(self.n_rows, dtype=torch.bool, device=self.ptr.device)
        m[self.first_rows] = True
        return m

    @property
    def is_last(self) -> torch.Tensor:
        """Boolean [N]: row is the last state of its trajectory."""
        m = torch.zeros(self.n_rows, dtype=torch.bool, device=self.ptr.device)
        m[self.last_rows] = True
        return m

    @property
    def terminal_states(self) -> States:
        """The last state of every trajectory."""
        return batch_index(self.states, self.last_rows)

    @property
    def initial_states(self) -> States:
        """The first state of every trajectory."""
        return batch_index(self.states, self.first_rows)

    def cond_per_row(self) -> Optional[torch.Tensor]:
        """Conditioning repeated for every row (or None)."""
        if self.cond is None:
            return None
        return torch.repeat_interleave(self.cond, self.lengths, dim=0, output_size=self.n_rows)

    # ------------------------------------------------------------ manipulation
    def select(self, traj_idx: torch.Tensor) -> "TrajectoryBatch":
        """Sub-batch of the trajectories ``traj_idx`` (long tensor), repacked."""
        lengths = self.lengths[traj_idx]
        new_ptr = torch.zeros(lengths.numel() + 1, dtype=torch.long, device=self.ptr.device)
        torch.cumsum(lengths, 0, out=new_ptr[1:])
        n = int(new_ptr[-1])
        starts = torch.repeat_interleave(self.ptr[:-1][traj_idx] - new_ptr[:-1], lengths, output_size=n)
        rows = torch.arange(n, device=self.ptr.device) + starts
        return TrajectoryBatch(
            states=batch_index(self.states, rows), ptr=new_ptr, actions=self.actions[rows],
            bwd_actions=self.bwd_actions[rows], log_rewards=self.log_rewards[traj_idx],
            cond=None if self.cond is None else self.cond[traj_idx],
            log_pf=None if self.log_pf is None else self.log_pf[rows],
            is_complete=None if self.is_complete is None else self.is_complete[traj_idx],
            starts_at_initial=None if self.starts_at_initial is None else self.starts_at_initial[traj_idx],
            info=dict(self.info),
        )

    @staticmethod
    def cat(batches: list["TrajectoryBatch"]) -> "TrajectoryBatch":
        """Concatenate several batches (trajectory order preserved)."""
        if len(batches) == 1:
            return batches[0]
        ptrs, total = [], 0
        for b in batches:
            ptrs.append(b.ptr[1:] + total)
            total += b.n_rows
        ptr = torch.cat([batches[0].ptr[:1]] + ptrs)

        def opt(name):  # kept log-probs are a cache: dropped unless every part has them
            vals = [getattr(b, name) for b in batches]
            if any(v is None for v in vals):
                return None
            return torch.cat(vals)

        conds = [b.cond for b in batches]
        if any(c is None for c in conds) and not all(c is None for c in conds):
            raise ValueError("TrajectoryBatch.cat: some batches have a conditioning tensor and some do not")

        def flags(name):  # None means "all True": fill such parts instead of dropping the others' flags
            vals = [getattr(b, name) for b in batches]
            if all(v is None for v in vals):
                return None
            return torch.cat([torch.ones(b.batch_size, dtype=torch.bool, device=b.ptr.device) if v is None else v
                              for b, v in zip(batches, vals)])

        return TrajectoryBatch(
            states=batch_cat([b.states for b in batches]), ptr=ptr,
            actions=torch.cat([b.actions for b in batches]),
            bwd_actions=torch.cat([b.bwd_actions for b in batches]),
            log_rewards=torch.cat([b.log_rewards for b in batches]),
            cond=None if conds[0] is None else torch.cat(conds), log_pf=opt("log_pf"),
            is_complete=flags("is_complete"), starts_at_initial=flags("starts_at_initial"),
            info={k: v for b in batches for k, v in b.info.items()},
        )

    def require_whole(self, who: str, complete: bool = True, initial: bool = True) -> None:
        """Raise ``ValueError`` if some trajectory does not end with exit (``complete``) or does not
        start at s_0 (``initial``): for objectives such as TB whose equation only holds for whole
        trajectories.  Costs nothing when the flags are None (every sampled batch)."""
        checks = ((complete, self.is_complete, "do not end with the exit action"),
                  (initial, self.starts_at_initial, "do not start at s_0"))
        for wanted, flags, what in checks:
            if wanted and flags is not None and not bool(flags.all()):
                n = int((~flags).sum())
                raise ValueError(f"{who} needs whole trajectories, but {n} of the {self.batch_size} in this batch {what} "
                                 "(train on such pieces with db, subtb, fldb or flsubtb)")

    def with_(self, **changes) -> "TrajectoryBatch":
        """Copy with some fields replaced."""
        return replace(self, **changes)

    def __len__(self) -> int:
        return self.batch_size

    def __repr__(self) -> str:
        return (f"TrajectoryBatch(B={self.batch_size}, rows={self.n_rows}, "
                f"mean_len={self.n_rows / max(self.batch_size, 1):.2f}, cond={'yes' if self.cond is not None else 'no'})")


def pack_steps(step_positions: list[torch.Tensor], step_states: list[States],
               step_actions: list[torch.Tensor], step_bwd: list[torch.Tensor],
               step_extra: Optional[list[torch.Tensor]] = None):
    """Reorder step-major records into trajectory-contiguous rows.

    ``step_positions[t]`` holds the destination row of every record made at step ``t``.
    Returns packed (states, actions, bwd_actions, extra).
    """
    pos = torch.cat(step_positions)
    inv = torch.empty_like(pos)
    inv[pos] = torch.arange(pos.numel(), device=pos.device)
    states = batch_index(batch_cat(step_states), inv)
    actions = torch.cat(step_actions)[inv]
    bwd = torch.cat(step_bwd)[inv]
    extra = torch.cat(step_extra)[inv] if step_extra else None
    return states, actions, bwd, extra


def batch_len_check(states: States, n: int, what: str) -> None:
    """Raise if a state batch does not have ``n`` entries."""
    if batch_len(states) != n:
        raise ValueError(f"{what}: expected {n} states, got {batch_len(states)}")
