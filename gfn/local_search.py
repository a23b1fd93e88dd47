"""Local search GFlowNets (Kim et al. 2024): refine sampled objects by back-and-forth walks.

One round, on the ``M`` trajectories the trainer just sampled with P_F (the current objects x),
is repeated ``I`` times:

1. **backtrack**: walk back from x with P_B; the state ``s`` reached after ``K`` steps (or s_0,
   if the walk gets there first) is where the reconstruction starts.  The walk is continued to
   s_0, so the prefix ``s_0 -> s`` is a P_B-sampled path too and training sees *full*
   trajectories (never a partial one scored as if it started at s_0);
2. **reconstruct**: walk forward from ``s`` with P_F until exit, giving a candidate x';
3. **accept** x' with the deterministic filter ``R(x') > R(x)``, with Metropolis–Hastings
   (probability ``min(1, alpha)``) or with Barker's rule (probability ``alpha / (1 + alpha)``,
   the stochastic filter of the authors' code), where::

       alpha = R(x') P_B(tau'_K | x') P_F(tau_K | s) / (R(x) P_B(tau_K | x) P_F(tau'_K | s))

   where ``tau_K`` is the path s -> x just walked back along and ``tau'_K`` the new path s -> x'
   (both P_F terms include the exit).  The reverse move must be possible: walking back from x'
   stops after K steps or at s_0, so it returns to ``s`` only if ``tau'_K`` has exactly K steps
   or ``s`` is s_0 and ``tau'_K`` has at most K; otherwise alpha = 0.  With this ratio the chain
   on x leaves ``R(x)/Z`` (``R^beta`` when conditioned on beta) invariant for any fixed P_F, P_B,
   under both MH and Barker (each satisfies detailed balance with the same alpha).

**What K counts.** K is the number of *non-exit* backward steps: on the append MDP of a
fixed-length task, K=3 deletes the last three tokens and the reconstruction writes three new
ones, so x' differs from x in at most its last three positions.  The authors' code (ls_gfn)
counts the step out of the terminal ("stopped") state as one of its k, so their ``k=4`` is our
``K=3`` (and ``K=6`` here is their ``k=7``).

**Two training protocols.**  The batch hook :class:`LocalSearch` (``--local-search K,I``) refines
the trainer's batch in place of nothing else: each iteration samples ``batch_size`` objects,
spends ``batch_size * I`` more reward calls on candidates and takes one gradient step.
:class:`PaperRounds` (``--local-search-protocol paper``) is the authors' protocol: a round
spends exactly ``n`` reward calls, ``M = n / (I + 1)`` fresh samples plus ``M * I`` candidates,
trains ``steps_per_batch`` gradient steps on all of them (accepted or not, by default), adds
every evaluated object to a reward-prioritised replay buffer, then trains ``steps_per_batch``
steps on a batch drawn from that buffer (half from the top 10% by reward, trajectories
re-sampled with P_B).  Without local search the same rounds are the authors' TB baseline
(``n`` fresh samples per round).

The batch the hook then learns from is the sampled trajectories plus the refined ones
(``train_on="both"``) or only the refined ones.  Each trajectory is spliced
from packed rows: the prefix rows of the backward walk and the rows of the reconstruction.
The fraction of accepted proposals is ``batch.info["ls_acceptance_rate"]``.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from gfn.ops import lengths_to_ptr, segment_sum
from gfn.sampler import Exploration, Sampler
from gfn.states import batch_cat, batch_index, batch_len
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


def accept_barker(log_r_old, log_r_new, log_pf_old, log_pb_old, log_pf_new, log_pb_new, reverse_possible,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Barker's rule: accept with probability ``alpha / (1 + alpha)`` = sigmoid(log alpha), the
    authors' stochastic filter (a Bernoulli with logits log alpha); same alpha as :func:`accept_mh`."""
    log_alpha = mh_log_ratio(log_r_old, log_r_new, log_pf_old, log_pb_old, log_pf_new, log_pb_new)
    u = torch.rand(log_alpha.shape, generator=generator, dtype=torch.float64, device=log_alpha.device)
    return (u < torch.sigmoid(log_alpha.double())) & reverse_possible


def accept_greedy(log_r_old, log_r_new, *args, **kwargs) -> torch.Tensor:
    """Deterministic filter: accept iff R(x') > R(x)."""
    return log_r_new > log_r_old


ACCEPT_RULES = {"mh": accept_mh, "barker": accept_barker, "deterministic": accept_greedy}


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

    ``accept`` is ``"mh"`` (Metropolis–Hastings, default), ``"barker"`` (alpha / (1 + alpha)),
    ``"deterministic"`` (R(x') > R(x)) or a callable with the signature of :func:`accept_mh`.  ``tempered``: the target is
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
        from gfn.beta import temper
        return temper(log_r, cond)

    # ------------------------------------------------------------------ one move
    def step(self, sampler: Sampler, x, log_r: torch.Tensor, cond: Optional[torch.Tensor] = None):
        """One backtrack-reconstruct-accept move from the objects ``x``.

        Returns (the full trajectories of the chain after the move, accepted mask [M]).
        """
        current, accepted, _ = self.move(sampler, x, log_r, cond)
        return current, accepted

    @torch.no_grad()
    def move(self, sampler: Sampler, x, log_r: torch.Tensor, cond: Optional[torch.Tensor] = None):
        """:meth:`step` that also returns the candidates: (chain after the move, accepted [M],
        the M proposed full trajectories, accepted or not)."""
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
        new.info = {}
        self.n_proposals += m
        self.n_accepted += int(accepted.sum())
        return current, accepted, new

    def search(self, sampler: Sampler, batch: TrajectoryBatch) -> tuple[TrajectoryBatch, float]:
        """Run ``iterations`` moves from the terminal states of ``batch``; returns the final full
        trajectories and the acceptance rate of this round."""
        current, _, rate = self.search_all(sampler, batch)
        return current, rate

    def search_all(self, sampler: Sampler, batch: TrajectoryBatch) -> tuple[TrajectoryBatch, TrajectoryBatch, float]:
        """:meth:`search` that also returns every candidate it evaluated (``iterations * M``
        full trajectories, move by move): (final chain, candidates, acceptance rate)."""
        x, log_r, cond = batch.terminal_states, batch.log_rewards, batch.cond
        current, n_acc, candidates = batch, 0, []
        for _ in range(self.iterations):
            current, accepted, new = self.move(sampler, x, log_r, cond)
            candidates.append(new)
            x, log_r = current.terminal_states, current.log_rewards
            n_acc += int(accepted.sum())
        return current, TrajectoryBatch.cat(candidates), n_acc / (self.iterations * batch.batch_size)

    def __call__(self, trainer, batch: TrajectoryBatch) -> TrajectoryBatch:
        refined, rate = self.search(trainer.sampler, batch)
        out = refined if self.train_on == "refined" else TrajectoryBatch.cat([batch.with_(log_pf=None), refined])
        out.info = dict(batch.info)
        out.info["ls_acceptance_rate"] = rate
        out.info["ls_reward_calls"] = self.n_reward_calls
        return out


class TerminalSearch:
    """Batch hook ``(trainer, batch) -> batch`` that refines the sampled objects with a
    domain-specific search in the space of terminal objects (for trees: NNI hill climbing,
    :func:`gfn.envs.phylo.nni.nni_hill_climb`), then trains on trajectories to the refined objects
    sampled backward with P_B, next to the sampled ones (``train_on="both"``) or alone
    (``"refined"``).

    ``refine(env, states) -> (refined states, n_reward_calls)`` must return terminal states of
    the same batch size.  Unlike :class:`LocalSearch` the move is not a Markov chain with a known
    proposal ratio: it is a greedy improvement, so the trained-on objects are biased towards high
    reward (as with a reward-prioritised replay buffer).  ``on_candidates(states, log_rewards)``
    sees the refined objects.  ``n_reward_calls`` counts the objects ``refine`` scored."""

    def __init__(self, refine: Callable, train_on: str = "both", on_candidates: Optional[Callable] = None):
        if train_on not in ("both", "refined"):
            raise ValueError(f"train_on must be 'both' or 'refined', got {train_on!r}")
        self.refine, self.train_on, self.on_candidates = refine, train_on, on_candidates
        self.n_reward_calls = 0

    def state_dict(self) -> dict:
        """The reward-call counter (saved with checkpoints)."""
        return {"n_reward_calls": self.n_reward_calls}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.n_reward_calls = int(state["n_reward_calls"])

    def __call__(self, trainer, batch: TrajectoryBatch) -> TrajectoryBatch:
        with torch.no_grad():
            x, calls = self.refine(trainer.env, batch.terminal_states)
        if batch_len(x) != batch.batch_size:
            raise ValueError(f"TerminalSearch: refine returned {batch_len(x)} objects for {batch.batch_size}")
        self.n_reward_calls += int(calls)
        refined = trainer.sampler.sample_backward(x, cond=batch.cond)
        if self.on_candidates is not None:
            self.on_candidates(refined.terminal_states, refined.log_rewards)
        improved = float((refined.log_rewards > batch.log_rewards).float().mean())
        out = refined if self.train_on == "refined" else TrajectoryBatch.cat([batch.with_(log_pf=None), refined])
        out.info = dict(batch.info)
        out.info["search_improved_fraction"] = improved
        out.info["search_reward_calls"] = self.n_reward_calls
        return out


#: what a paper-protocol round trains on besides the replay batch: every evaluated object
#: (fresh samples and all candidates, accepted or not: the authors' code), the fresh samples
#: and the final chain ("both"), or only the final chain ("refined")
PAPER_TRAIN_ON = ("all", "both", "refined")


class PaperRounds:
    """The local-search GFlowNet authors' training rounds, as a :attr:`gfn.Trainer.batch_source`.

    One round spends exactly ``n_calls`` reward evaluations: ``M = n_calls / (I + 1)`` fresh
    samples (with the trainer's exploration) and, when ``local_search`` is given, ``M * I``
    local-search candidates.  The trainer takes ``steps_per_batch`` gradient steps on that online
    batch (``train_on``, see :data:`PAPER_TRAIN_ON`), then ``steps_per_batch`` steps on
    ``replay_batch`` objects drawn from ``trainer.replay`` (a reward-prioritised buffer that
    receives every evaluated object), their trajectories re-sampled with P_B.  One round is
    therefore ``2 * steps_per_batch`` trainer iterations.  Without ``local_search`` the rounds
    are the authors' TB baseline (``n_calls`` fresh samples).

    ``n_reward_calls`` counts the reward evaluations of all rounds (replayed objects reuse
    their stored rewards).  Checkpoints keep the counters and the position in the round; a
    run resumed mid-round starts a new round (the cached batches are not saved).
    """

    def __init__(self, n_calls: int = 32, steps_per_batch: int = 3, replay_batch: int = 32,
                 local_search: Optional[LocalSearch] = None, train_on: str = "all"):
        i = local_search.iterations if local_search is not None else 0
        if n_calls < 1 or n_calls % (i + 1) != 0:
            raise ValueError(f"the paper protocol splits n = {n_calls} reward calls per round into M fresh samples and "
                             f"M * I = M * {i} candidates: n must be a positive multiple of I + 1 = {i + 1}")
        if steps_per_batch < 1 or replay_batch < 0:
            raise ValueError(f"need steps_per_batch >= 1 and replay_batch >= 0, got {steps_per_batch}, {replay_batch}")
        if train_on not in PAPER_TRAIN_ON:
            raise ValueError(f"train_on must be one of {PAPER_TRAIN_ON}, got {train_on!r}")
        self.n_calls, self.steps_per_batch, self.replay_batch = int(n_calls), int(steps_per_batch), int(replay_batch)
        self.local_search, self.train_on = local_search, train_on
        self.m = self.n_calls // (i + 1)
        self.phase = 0  # trainer iterations done in the current round
        self.n_rounds = 0
        self.n_reward_calls = 0
        self._online: Optional[TrajectoryBatch] = None
        self._offline: Optional[TrajectoryBatch] = None

    @property
    def iterations_per_round(self) -> int:
        """Trainer iterations (gradient steps) per round."""
        return 2 * self.steps_per_batch if self.replay_batch > 0 else self.steps_per_batch

    def state_dict(self) -> dict:
        """Counters and position in the round (saved with checkpoints)."""
        d = {"phase": self.phase, "n_rounds": self.n_rounds, "n_reward_calls": self.n_reward_calls}
        if self.local_search is not None:
            d["local_search"] = self.local_search.state_dict()
        return d

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the next batch starts a new round (cached batches are not saved)."""
        self.n_rounds, self.n_reward_calls = int(state["n_rounds"]), int(state["n_reward_calls"])
        if self.local_search is not None and "local_search" in state:
            self.local_search.load_state_dict(state["local_search"])
        self.phase = 0

    def online_batch(self, trainer) -> TrajectoryBatch:
        """Sample M objects, run local search on them, store everything evaluated in the replay
        buffer; returns the batch to train on (untempered rewards)."""
        c = trainer.config
        cond = trainer.cond_fn(self.m) if trainer.cond_fn is not None else None
        fresh = trainer.sampler.sample(self.m, cond=cond, exploration=Exploration(c.temperature, c.epsilon))
        fresh = fresh.with_(log_pf=None)
        trainer.n_samples += self.m
        calls, info = self.m, {}
        evaluated, batch = fresh, fresh
        if self.local_search is not None:
            final, candidates, rate = self.local_search.search_all(trainer.sampler, fresh)
            calls += candidates.batch_size
            evaluated = TrajectoryBatch.cat([fresh, candidates])
            batch = {"all": evaluated, "both": TrajectoryBatch.cat([fresh, final]), "refined": final}[self.train_on]
            info = {"ls_acceptance_rate": rate, "ls_reward_calls": self.local_search.n_reward_calls}
        self.n_reward_calls += calls
        if trainer.replay is not None:
            trainer.replay.add(evaluated.terminal_states, evaluated.log_rewards)
        batch.info = {**info, "paper_round_reward_calls": calls}
        return batch

    def offline_batch(self, trainer) -> TrajectoryBatch:
        """``replay_batch`` objects from the replay buffer, trajectories re-sampled with P_B."""
        cond = trainer.cond_fn(self.replay_batch) if trainer.cond_fn is not None else None
        states, log_r = trainer.replay.sample(self.replay_batch)
        batch = trainer.sampler.sample_backward(states, cond=cond, log_rewards=log_r)
        batch.info = {}
        return batch

    def __call__(self, trainer) -> TrajectoryBatch:
        if self.replay_batch > 0 and trainer.replay is None:
            raise ValueError("the paper protocol trains on a replay batch every round: give the trainer a replay buffer "
                             "(e.g. gfn.replay.RewardPrioritizedReplay) or set replay_batch=0")
        s = self.steps_per_batch
        if self.phase == 0:
            self._online = self.online_batch(trainer)
            self.n_rounds += 1
        elif self.phase == s:
            self._offline = self.offline_batch(trainer)
        batch = self._online if self.phase < s else self._offline
        self.phase = (self.phase + 1) % self.iterations_per_round
        return batch


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


LOCAL_SEARCH_PROTOCOLS = ("library", "paper")


def paper_rounds_from_config(cfg, local_search: Optional[LocalSearch]) -> Optional[PaperRounds]:
    """:class:`PaperRounds` when ``cfg.local_search_protocol`` is ``paper`` (``--ls-calls-per-round``,
    ``--ls-steps-per-batch``, ``--ls-train-on``; the replay batch is ``--batch-size``); None otherwise."""
    protocol = getattr(cfg, "local_search_protocol", "library") or "library"
    if protocol not in LOCAL_SEARCH_PROTOCOLS:
        raise ValueError(f"--local-search-protocol must be one of {LOCAL_SEARCH_PROTOCOLS}, got {protocol!r}")
    if protocol == "library":
        return None
    return PaperRounds(n_calls=int(getattr(cfg, "ls_calls_per_round", 32)),
                       steps_per_batch=int(getattr(cfg, "ls_steps_per_batch", 3)),
                       replay_batch=int(cfg.batch_size), local_search=local_search,
                       train_on=getattr(cfg, "ls_train_on", "all") or "all")
