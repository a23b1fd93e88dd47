"""Local search GFlowNets (Kim et al. 2024): refine sampled objects by back-and-forth walks.

One round, on the ``M`` trajectories the trainer just sampled with P_F (the current objects x),
is repeated ``I`` times:

1. **backtrack**: walk back from x with P_B; the state ``s`` reached after ``K`` steps (or s_0,
   if the walk gets there first) is where the reconstruction starts.  The walk is continued to
   s_0, so the prefix ``s_0 -> s`` is a P_B-sampled path too and training sees *full*
   trajectories (never a partial one scored as if it started at s_0);
2. **reconstruct**: walk forward from ``s`` with P_F until exit, giving a candidate x';
3. **accept** x' with the deterministic filter ``R(x') > R(x)`` or with Metropolis–Hastings::

       alpha = R(x') P_B(tau'_K | x') P_F(tau_K | s) / (R(x) P_B(tau_K | x) P_F(tau'_K | s))

   where ``tau_K`` is the path s -> x just walked back along and ``tau'_K`` the new path s -> x'
   (both P_F terms include the exit).  The reverse move must be possible: walking back from x'
   stops after K steps or at s_0, so it returns to ``s`` only if ``tau'_K`` has exactly K steps
   or ``s`` is s_0 and ``tau'_K`` has at most K; otherwise alpha = 0.  With this ratio the chain
   on x leaves ``R(x)/Z`` (``R^beta`` when conditioned on beta) invariant for any fixed P_F, P_B.

The batch the trainer then learns from is the sampled trajectories plus the refined ones
(``train_on="both"``, as in the paper) or only the refined ones.  Each trajectory is spliced
from packed rows: the prefix rows of the backward walk and the rows of the reconstruction.
The fraction of accepted proposals is ``batch.info["ls_acceptance_rate"]``.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from gfn.ops import lengths_to_ptr, segment_sum
from gfn.sampler import Sampler
from gfn.states import batch_cat, batch_index
from gfn.trajectories import TrajectoryBatch

#: acceptance rule: (log_r_old, log_r_new, log_pf_old, log_pb_old, log_pf_new, log_pb_new,
#: reverse_possible, generator) -> bool accept [M]
AcceptFn = Callable[..., torch.Tensor]


def mh_log_ratio(log_r_old: torch.Tensor, log_r_new: torch.Tensor, log_pf_old: torch.Tensor,
                 log_pb_old: torch.Tensor, log_pf_new: torch.Tensor, log_pb_new: torch.Tensor) -> torch.Tensor:
    """log alpha = [log R(x') + log P_B(tau'|x') + log P_F(tau|s)] - [log R(x) + log P_B(tau|x) + log P_F(tau'|s)].

    ``-inf`` rewards (invalid objects) give ``-inf`` (new invalid) or ``+inf`` (old invalid).
    """
    d_r = log_r_new - log_r_old
    d_r = torch.where(torch.isnan(d_r), torch.zeros_like(d_r), d_r)  # both invalid: compare proposals only
    return d_r + (log_pb_new - log_pb_old) + (log_pf_old - log_pf_new)


def accept_mh(log_r_old, log_r_new, log_pf_old, log_pb_old, log_pf_new, log_pb_new, reverse_possible,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Metropolis–Hastings acceptance with the correct proposal ratio (:func:`mh_log_ratio`)."""
    log_alpha = mh_log_ratio(log_r_old, log_r_new, log_pf_old, log_pb_old, log_pf_new, log_pb_new)
    u = torch.rand(log_alpha.shape, generator=generator, dtype=torch.float64, device=log_alpha.device)
    return (torch.log(u) < log_alpha.double()) & reverse_possible


def accept_greedy(log_r_old, log_r_new, *args, **kwargs) -> torch.Tensor:
    """Deterministic filter: accept iff R(x') > R(x)."""
    return log_r_new > log_r_old


ACCEPT_RULES = {"mh": accept_mh, "deterministic": accept_greedy}


def splice(prefix: TrajectoryBatch, keep: torch.Tensor, suffix: TrajectoryBatch) -> TrajectoryBatch:
    """Trajectory b = the first ``keep[b]`` rows of ``prefix`` trajectory b, then all rows of
    ``suffix`` trajectory b (whose first state must be row ``keep[b]`` of the prefix trajectory:
    its backward action is copied from there so the joined trajectory is consistent)."""
    if prefix.batch_size != suffix.batch_size or keep.shape != (prefix.batch_size,):
        raise ValueError(f"splice: {prefix.batch_size} prefixes, {suffix.batch_size} suffixes, keep {tuple(keep.shape)}")
    if bool((keep < 0).any()) or bool((keep >= prefix.lengths).any()):
        raise ValueError("splice: keep must lie in [0, prefix length) (the junction state is a prefix row)")
    device = prefix.ptr.device
    b = prefix.batch_size
    lengths = keep + suffix.lengths
    ptr = lengths_to_ptr(lengths)
    n = int(ptr[-1])
    tid = torch.repeat_interleave(torch.arange(b, device=device), lengths, output_size=n)
    pos = torch.arange(n, device=device) - ptr[:-1][tid]
    from_prefix = pos < keep[tid]
    src = torch.where(from_prefix, prefix.ptr[:-1][tid] + pos, prefix.n_rows + suffix.ptr[:-1][tid] + pos - keep[tid])
    states = batch_index(batch_cat([prefix.states, suffix.states]), src)
    actions = torch.cat([prefix.actions, suffix.actions])[src]
    bwd = torch.cat([prefix.bwd_actions, suffix.bwd_actions])[src]
    joined = keep > 0
    bwd[(ptr[:-1] + keep)[joined]] = prefix.bwd_actions[(prefix.ptr[:-1] + keep)[joined]]
    return TrajectoryBatch(states=states, ptr=ptr, actions=actions, bwd_actions=bwd,
                           log_rewards=suffix.log_rewards,
                           cond=suffix.cond if suffix.cond is not None else prefix.cond,
                           is_complete=suffix.is_complete, starts_at_initial=prefix.starts_at_initial)


def _row_positions(batch: TrajectoryBatch) -> torch.Tensor:
    """Position of every row within its trajectory (0 at s_0)."""
    return torch.arange(batch.n_rows, device=batch.ptr.device) - batch.ptr[:-1][batch.traj_ids]


class LocalSearch:
    """Batch hook ``(trainer, batch) -> batch`` running ``iterations`` rounds of K-step local search.

    ``accept`` is ``"mh"`` (Metropolis–Hastings, default), ``"deterministic"`` (R(x') > R(x)) or
    a callable with the signature of :func:`accept_mh`.  ``tempered``: the target is
    ``R^beta`` with beta from ``batch.cond`` (set when the run is temperature-conditioned;
    the batch's own log-rewards must still be untempered, i.e. this hook runs before
    :class:`gfn.conditioning.RewardTempering`).  ``on_candidates(states, log_rewards)``, if
    given, sees every proposed object x' (each one a reward evaluation), accepted or not.
    """

    def __init__(self, k: int, iterations: int = 1, accept: Union[str, AcceptFn] = "mh",
                 train_on: str = "both", tempered: bool = False, generator: Optional[torch.Generator] = None,
                 on_candidates: Optional[Callable] = None):
        if k < 1 or iterations < 1:
            raise ValueError(f"local search needs K >= 1 and I >= 1, got K={k}, I={iterations}")
        if isinstance(accept, str):
            if accept not in ACCEPT_RULES:
                raise ValueError(f"unknown local-search acceptance {accept!r}; choose one of {sorted(ACCEPT_RULES)}")
            accept = ACCEPT_RULES[accept]
        if train_on not in ("both", "refined"):
            raise ValueError(f"train_on must be 'both' or 'refined', got {train_on!r}")
        self.k, self.iterations, self.accept, self.train_on = int(k), int(iterations), accept, train_on
        self.tempered = tempered
        self.generator = generator
        self.on_candidates = on_candidates
        self.n_proposals = 0
        self.n_accepted = 0
        self.n_reward_calls = 0  # candidate objects whose reward local search evaluated

    def state_dict(self) -> dict:
        """The run's counters (saved with checkpoints, so a resumed run reports the whole run)."""
        return {"n_proposals": self.n_proposals, "n_accepted": self.n_accepted, "n_reward_calls": self.n_reward_calls}

    def load_state_dict(self, state: dict) -> None:
        """Restore the counters of :meth:`state_dict`."""
        self.n_proposals, self.n_accepted = int(state["n_proposals"]), int(state["n_accepted"])
        self.n_reward_calls = int(state["n_reward_calls"])

    @property
    def acceptance_rate(self) -> float:
        """Fraction of all proposals so far that were accepted."""
        return self.n_accepted / max(self.n_proposals, 1)

    def _target(self, log_r: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        if not self.tempered:
            return log_r
        from gfn.conditioning import temper
        return temper(log_r, cond)

    # ------------------------------------------------------------------ one move
    @torch.no_grad()
    def step(self, sampler: Sampler, x, log_r: torch.Tensor, cond: Optional[torch.Tensor] = None):
        """One backtrack-reconstruct-accept move from the objects ``x``.

        Returns (the full trajectories of the chain after the move, accepted mask [M]).
        """
        env, model = sampler.env, sampler.model
        old = sampler.sample_backward(x, cond=cond, generator=self.generator, log_rewards=log_r)
        n_trans = old.lengths - 1  # non-exit transitions s_0 -> x
        k_eff = n_trans.clamp(max=self.k)
        keep = n_trans - k_eff  # rows before s; s is row `keep` of the trajectory
        s = batch_index(old.states, old.ptr[:-1] + keep)
        tail = sampler.sample(old.batch_size, cond=cond, initial_states=s, generator=self.generator)
        new = splice(old, keep, tail)
        self.n_reward_calls += old.batch_size
        if self.on_candidates is not None:
            self.on_candidates(tail.terminal_states, tail.log_rewards)

        both = TrajectoryBatch.cat([old, new])
        scores = model.evaluate(both, pf=True, pb=True)
        pos = _row_positions(both)
        s_pos = torch.cat([keep, keep])[both.traj_ids]
        log_pf = segment_sum(torch.where(pos >= s_pos, scores.log_pf, torch.zeros_like(scores.log_pf)), both.ptr)
        log_pb = segment_sum(torch.where(pos > s_pos, scores.log_pb, torch.zeros_like(scores.log_pb)), both.ptr)
        m = old.batch_size
        new_trans = tail.lengths - 1
        reverse_possible = (new_trans == self.k) | ((new_trans < self.k) & env.is_initial(s))
        log_r_new = tail.log_rewards
        accepted = self.accept(self._target(log_r, cond), self._target(log_r_new, cond),
                               log_pf[:m], log_pb[:m], log_pf[m:], log_pb[m:], reverse_possible,
                               generator=self.generator)
        pick = torch.where(accepted, torch.arange(m, device=accepted.device) + m, torch.arange(m, device=accepted.device))
        current = both.select(pick)
        current.info = {}
        self.n_proposals += m
        self.n_accepted += int(accepted.sum())
        return current, accepted

    def search(self, sampler: Sampler, batch: TrajectoryBatch) -> tuple[TrajectoryBatch, float]:
        """Run ``iterations`` moves from the terminal states of ``batch``; returns the final full
        trajectories and the acceptance rate of this round."""
        x, log_r, cond = batch.terminal_states, batch.log_rewards, batch.cond
        current, n_acc = batch, 0
        for _ in range(self.iterations):
            current, accepted = self.step(sampler, x, log_r, cond)
            x, log_r = current.terminal_states, current.log_rewards
            n_acc += int(accepted.sum())
        return current, n_acc / (self.iterations * batch.batch_size)

    def __call__(self, trainer, batch: TrajectoryBatch) -> TrajectoryBatch:
        refined, rate = self.search(trainer.sampler, batch)
        out = refined if self.train_on == "refined" else TrajectoryBatch.cat([batch.with_(log_pf=None), refined])
        out.info = dict(batch.info)
        out.info["ls_acceptance_rate"] = rate
        out.info["ls_reward_calls"] = self.n_reward_calls
        return out


def parse_local_search(spec) -> Optional[tuple[int, int]]:
    """``"K,I"`` (or ``[K, I]``) -> (K, I); empty -> None."""
    if spec is None or spec == "" or spec == [] or spec == ():
        return None
    if isinstance(spec, str):
        parts = [p for p in spec.replace(" ", "").split(",") if p]
    else:
        parts = list(spec)
    def integer(p):  # "3", 3 or 3.0; not 2.5, True or "x"
        if isinstance(p, bool):
            raise ValueError
        v = float(p)
        if not v.is_integer():
            raise ValueError
        return int(v)
    try:
        k, i = (integer(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"--local-search expects K,I (two positive integers), got {spec!r}") from None
    if k < 1 or i < 1:
        raise ValueError(f"--local-search expects K,I >= 1, got {spec!r}")
    return k, i


def local_search_from_config(cfg, tempered: bool = False) -> Optional[LocalSearch]:
    """A :class:`LocalSearch` hook for ``cfg.local_search`` (``K,I``) and ``cfg.ls_accept``; None when off."""
    ki = parse_local_search(getattr(cfg, "local_search", None))
    if ki is None:
        return None
    return LocalSearch(ki[0], ki[1], accept=getattr(cfg, "ls_accept", "mh") or "mh", tempered=tempered)
