"""Vectorised trajectory sampling, forward with P_F and backward with P_B.

Only active trajectories are advanced: after each step the finished ones are dropped
from the working batch (compaction), and at the end the step-major records are reordered
into the packed :class:`~gfn.trajectories.TrajectoryBatch` layout in one gather.
Sampling runs under ``torch.inference_mode()`` by default; the objective then recomputes
all log-probabilities in one batched call.  ``keep_log_probs=True`` instead keeps the
differentiable log P_F of every step (saves the recompute for on-policy training).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from gfn.distributions import invalid_action_error
from gfn.env import DiscreteEnv, Env, EnvError
from gfn.estimators import GFlowNet
from gfn.ops import lengths_to_ptr
from gfn.states import States, batch_cat, batch_index, batch_len
from gfn.trajectories import TrajectoryBatch, pack_steps


@dataclass
class Exploration:
    """How actions are drawn during sampling; never affects training log-probs."""

    temperature: float = 1.0
    epsilon: float = 0.0


class Sampler:
    """Samples packed trajectories from a :class:`GFlowNet` in an :class:`Env`.

    Sampled actions come from distributions built on the env's own masks, so they are valid by
    construction and each step calls ``env.step`` directly.  ``validate=True`` re-checks every
    sampled move with ``env.apply`` (recomputing the masks): a debugging aid for custom policies.
    """

    def __init__(self, env: Env, model: GFlowNet, max_steps: int = 10_000, validate: bool = False):
        self.env = env
        self.model = model
        self.max_steps = max_steps
        self.validate = validate

    def _step(self, states: States, actions: torch.Tensor, backward: bool) -> States:
        if self.validate and hasattr(self.env, "apply"):
            return self.env.apply(states, actions, backward=backward)
        return self.env.backward_step(states, actions) if backward else self.env.step(states, actions)

    # ------------------------------------------------------------------ forward
    def sample(self, n: int, cond: Optional[torch.Tensor] = None, exploration: Optional[Exploration] = None,
               keep_log_probs: bool = False, generator: Optional[torch.Generator] = None,
               initial_states: Optional[States] = None) -> TrajectoryBatch:
        """Sample ``n`` complete trajectories with P_F (from s_0, or from ``initial_states``)."""
        exp = exploration or Exploration()
        env, model = self.env, self.model
        ctx = contextlib.nullcontext() if keep_log_probs else torch.inference_mode()
        if keep_log_probs and (exp.temperature != 1.0 or exp.epsilon > 0):
            raise ValueError("keep_log_probs=True is on-policy only: it cannot be combined with exploration")
        with ctx:
            states = env.initial_states(n) if initial_states is None else initial_states
            if batch_len(states) != n:
                raise EnvError(f"expected {n} initial states, got {batch_len(states)}")
            env.validate_states(states, "initial states")
            device = env.device
            idx = torch.arange(n, device=device)
            t = 0
            rec_idx, rec_t, rec_states, rec_actions, rec_bwd, rec_lp = [], [], [], [], [], []
            bwd_prev = None  # placeholder at the first row, shaped like the actions (see below)
            exit_index = env.exit_action if type(env).is_exit is DiscreteEnv.is_exit else None
            rec_ok = []  # per step: False at rows with no valid action (checked once, after the loop)
            while True:
                c = None if cond is None else cond[idx]
                dist = model.pf_dist(states, c)
                actions, ok = _draw(dist, exp, generator)
                if bwd_prev is None:  # continuous actions are vectors, discrete ones indices
                    bwd_prev = torch.zeros_like(actions)
                rec_idx.append(idx)
                rec_t.append(t)
                rec_states.append(states)
                rec_actions.append(actions)
                rec_bwd.append(bwd_prev)
                if keep_log_probs:
                    rec_lp.append(env.transition_log_prob(dist, states, actions))
                going = actions != exit_index if exit_index is not None else ~env.is_exit(actions)
                if ok is not None:  # rows without a valid action stop here (never take a forbidden one)
                    going = going & ok
                    rec_ok.append(ok)
                keep = going.nonzero().squeeze(1)  # the one host sync of a step
                if keep.numel() == 0:
                    break
                t += 1
                if t > self.max_steps:
                    raise RuntimeError(f"trajectories exceeded max_steps={self.max_steps}; does the env ever allow exit?")
                if keep.numel() == idx.numel():  # nobody exited: no compaction (3 gathers saved)
                    moving, acts = states, actions
                else:
                    moving = batch_index(states, keep)
                    acts = actions[keep]
                    idx = idx[keep]
                if env.is_stochastic:  # the env turns each chosen action into the move it makes
                    acts = env.sample_moves(moving, acts, generator)
                states = self._step(moving, acts, backward=False)
                bwd_prev = env.backward_action(moving, acts)
            if rec_ok:
                _raise_if_invalid(model, rec_ok, rec_states, rec_idx, cond, backward=False)
            traj = torch.cat(rec_idx)
            lengths = torch.bincount(traj, minlength=n)
            ptr = lengths_to_ptr(lengths)
            # a trajectory's records were made in step order, so a stable sort by trajectory
            # index is the packed order (one op, instead of one position tensor per step)
            order = torch.sort(traj, stable=True).indices
            packed_states, actions, bwd, lp = _gather_steps(order, rec_states, rec_actions, rec_bwd,
                                                            rec_lp if keep_log_probs else None)
            # every trajectory ends with exit (flag None); it starts at s_0 unless the caller chose
            starts = None if initial_states is None else env.is_initial(initial_states)
            batch = TrajectoryBatch(states=packed_states, ptr=ptr, actions=actions, bwd_actions=bwd,
                                    log_rewards=torch.empty(0), cond=cond, log_pf=lp, starts_at_initial=starts)
        with torch.inference_mode():
            batch.log_rewards = env.checked_log_reward(batch.terminal_states)
        return _outside_inference(batch)

    # ------------------------------------------------------------------ backward
    def sample_backward(self, terminal_states: States, cond: Optional[torch.Tensor] = None,
                        exploration: Optional[Exploration] = None,
                        generator: Optional[torch.Generator] = None,
                        log_rewards: Optional[torch.Tensor] = None) -> TrajectoryBatch:
        """Sample trajectories ending at the given terminal states by walking back with P_B.

        The result is laid out forward (s_0 first, x last, exit at x) exactly like
        :meth:`sample`, so every objective can score it.  ``log_rewards``: the states' log R when
        already known (the reward is then not evaluated again).
        """
        exp = exploration or Exploration()
        env, model = self.env, self.model
        if env.is_stochastic:  # a walk back finds the moves, not the actions the policy chose
            raise EnvError(f"sample_backward: {type(env).__name__} is stochastic; backward sampling (replay, "
                           "local search) is not defined for stochastic environments")
        n = batch_len(terminal_states)
        env.validate_states(terminal_states, "terminal states")
        device = env.device
        with torch.inference_mode():
            if hasattr(env, "exit_action"):
                exit_allowed = env.forward_mask(terminal_states)[:, env.exit_action]
                if not exit_allowed.all():
                    i = int((~exit_allowed).nonzero()[0, 0])
                    raise EnvError(f"sample_backward: state at position {i} is not terminal (exit not allowed)")
                exit_actions = torch.full((n,), env.exit_action, dtype=torch.long, device=device)
            else:
                exit_actions = env.exit_actions(n)
            states = terminal_states
            idx = torch.arange(n, device=device)
            k = 0
            rec_idx, rec_k, rec_states, rec_fwd, rec_bwd = [], [], [], [], []
            fwd_next = exit_actions
            while True:
                initial = env.is_initial(states)
                c = None if cond is None else cond[idx]
                bwd = torch.zeros(idx.shape[0], *_action_tail(fwd_next), dtype=fwd_next.dtype, device=device)
                go = (~initial).nonzero().squeeze(1)
                if go.numel() > 0:
                    sub = batch_index(states, go)
                    dist = model.pb_dist(sub, None if c is None else c[go])
                    a, ok = _draw(dist, exp, generator)
                    if ok is not None and not bool(ok.all()):  # backward walks are not the hot path
                        _raise_if_invalid(model, [ok], [sub], [idx[go]], cond, backward=True)
                    bwd[go] = a
                rec_idx.append(idx)
                rec_k.append(k)
                rec_states.append(states)
                rec_fwd.append(fwd_next)
                rec_bwd.append(bwd)
                if go.numel() == 0:
                    break
                k += 1
                if k > self.max_steps:
                    raise RuntimeError(f"backward trajectories exceeded max_steps={self.max_steps}")
                moving = batch_index(states, go)
                acts = bwd[go]
                states = self._step(moving, acts, backward=True)
                fwd_next = env.forward_action(moving, acts)
                idx = idx[go]
            lengths = torch.bincount(torch.cat(rec_idx), minlength=n)
            ptr = lengths_to_ptr(lengths)
            # record made k steps back from x goes to row ptr[b+1] - 1 - k
            positions = [ptr[i + 1] - 1 - kk for i, kk in zip(rec_idx, rec_k)]
            packed_states, actions, bwd_actions, _ = pack_steps(positions, rec_states, rec_fwd, rec_bwd)
            if log_rewards is None:
                log_rewards = env.checked_log_reward(terminal_states)
            elif log_rewards.shape != (n,):
                raise ValueError(f"sample_backward: log_rewards must have shape ({n},), got {tuple(log_rewards.shape)}")
            batch = TrajectoryBatch(states=packed_states, ptr=ptr, actions=actions, bwd_actions=bwd_actions,
                                    log_rewards=log_rewards, cond=cond)
        return _outside_inference(batch)


def _draw(dist, exp: Exploration, generator) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Actions from ``dist`` and, when the distribution can flag them without a host sync
    (``sample_checked``), a mask that is False at rows without a valid action; else ``None``
    (such a distribution checks itself)."""
    checked = getattr(dist, "sample_checked", None)
    if checked is not None:
        return checked(exp.temperature, exp.epsilon, generator)
    return dist.sample(exp.temperature, exp.epsilon, generator), None


def _raise_if_invalid(model: GFlowNet, rec_ok: list, rec_states: list, rec_idx: list,
                      cond: Optional[torch.Tensor], backward: bool) -> None:
    """One host sync per sampling call; on failure, rebuild the first offending step's
    distribution to say whether the state allows no action or the logits are not finite."""
    ok = torch.cat(rec_ok)
    if bool(ok.all()):
        return
    for good, states, idx in zip(rec_ok, rec_states, rec_idx):
        if not bool(good.all()):
            row = (~good).nonzero()[:1, 0]
            one = batch_index(states, row)
            c = None if cond is None else cond[idx[row]]
            with torch.inference_mode():
                dist = model.pb_dist(one, c) if backward else model.pf_dist(one, c)
            t = int(idx[row[0]])
            state = one.tolist()[0] if torch.is_tensor(one) else one
            raise invalid_action_error(dist, torch.ones(1, dtype=torch.bool), where=f"trajectory {t}, state {state}",
                                       backward=backward, n_affected=int((~ok).sum()))


def _gather_steps(order: torch.Tensor, states: list, actions: list, bwd: list, extra: Optional[list] = None):
    """Concatenate step-major records and reorder them by ``order`` (packed row -> record)."""
    packed = batch_index(batch_cat(states), order)
    return (packed, torch.cat(actions)[order], torch.cat(bwd)[order],
            torch.cat(extra)[order] if extra else None)


def _action_tail(actions: torch.Tensor) -> tuple:
    return tuple(actions.shape[1:])


def _outside_inference(batch: TrajectoryBatch) -> TrajectoryBatch:
    """Clone inference-mode tensors so autograd can use them as inputs later."""
    def c(x):
        return x.clone() if torch.is_tensor(x) and x.is_inference() else x
    states = batch.states
    if torch.is_tensor(states):
        states = c(states)
    elif hasattr(states, "clone"):
        states = states.clone()
    return TrajectoryBatch(states=states, ptr=c(batch.ptr), actions=c(batch.actions), bwd_actions=c(batch.bwd_actions),
                           log_rewards=c(batch.log_rewards), cond=c(batch.cond), log_pf=batch.log_pf,
                           is_complete=c(batch.is_complete), starts_at_initial=c(batch.starts_at_initial),
                           info=batch.info)
