"""Opt-in fast paths for accelerators: a static-shape sampler and ``torch.compile``.

:class:`StaticSampler` advances *every* trajectory at every step for a fixed number of steps;
finished rows are frozen with ``torch.where`` instead of being dropped, so every tensor keeps
its shape, the loop body has no host synchronisation, and one step can be compiled with
``torch.compile(mode="reduce-overhead")`` (CUDA graphs on a GPU).  It returns the same packed
:class:`~gfn.trajectories.TrajectoryBatch` as :class:`gfn.Sampler` (same distribution, not the
same random stream).  Use it when launch latency dominates (GPU, small batches); on a CPU the
compacting :class:`gfn.Sampler` is faster at large batch because it skips finished rows.

Requirements: tensor states, a :class:`~gfn.env.DiscreteEnv`, a bound ``max_len`` on the number
of transitions before exit, and a ``safe_action`` that is allowed at s_0: frozen rows are stepped
from s_0 with it and the result is thrown away (so envs whose terminal states accept no move, such
as append-only sequences, work too).  Host syncs inside the env (e.g. ``F.one_hot``'s range
check) still prevent CUDA-graph capture.  Replay (``Trainer`` with ``replay_fraction > 0``)
needs backward sampling, which only :class:`gfn.Sampler` has.

:func:`compile_model` compiles the MLPs of a :class:`~gfn.GFlowNet` in place with
``torch.compile`` (``dynamic=True``: the compacting sampler changes batch sizes every step).

Status: tested on CPU (eager and ``torch.compile(backend="eager")``); the CUDA-graph
(``mode="reduce-overhead"``) path is untested, no GPU having been available when it was written.
"""

from __future__ import annotations

from typing import Optional

import torch

from gfn.env import DiscreteEnv, EnvError
from gfn.estimators import GFlowNet
from gfn.ops import lengths_to_ptr
from gfn.distributions import check_exploration
from gfn.sampler import Exploration, _draw, _outside_inference, _raise_if_invalid
from gfn.trajectories import TrajectoryBatch

__all__ = ["StaticSampler", "compile_model"]


class StaticSampler:
    """Fixed-shape forward sampler (see module docstring)."""

    def __init__(self, env: DiscreteEnv, model: GFlowNet, max_len: int, safe_action: int = 0,
                 check_every: Optional[int] = None, compile_step: bool = False, compile_kwargs: Optional[dict] = None):
        if not isinstance(env, DiscreteEnv):
            raise TypeError("StaticSampler needs a DiscreteEnv")
        if max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {max_len}")
        if not 0 <= safe_action < env.n_actions - 1:
            raise ValueError(f"safe_action must be a non-exit action in [0, {env.n_actions - 1}), got {safe_action}")
        s0 = env.initial_states(1)
        if not torch.is_tensor(s0):
            raise TypeError("StaticSampler needs tensor states")
        allowed = env.forward_mask(s0)[0]
        if not bool(allowed[safe_action]):
            ok = [a for a in allowed.nonzero().squeeze(1).tolist() if a != env.exit_action]
            raise ValueError(f"safe_action {safe_action} is not allowed at s_0 of {type(env).__name__}; "
                             f"allowed non-exit actions there: {ok}")
        self.env, self.model, self.max_len, self.safe_action = env, model, int(max_len), int(safe_action)
        self._s0 = s0
        # early exit costs one host sync per check: every step on CPU, never on accelerators
        self.check_every = (1 if env.device.type == "cpu" else 0) if check_every is None else int(check_every)
        self._step = self.step
        if compile_step:
            self._step = torch.compile(self.step, **(compile_kwargs or {"mode": "reduce-overhead"}))

    def step(self, states: torch.Tensor, done: torch.Tensor, temperature: float, epsilon: float):
        """One static step: returns (next states, next done, actions, backward actions at the next
        states, active-at-this-step mask, invalid mask).  No data-dependent shapes, no host sync.
        Active rows with no valid action (see :meth:`MaskedCategorical.sample_checked`) are
        frozen instead of stepped and flagged in ``invalid``; the rollout refuses them at the end."""
        env = self.env
        actions, ok = _draw(self.model.pf_dist(states), Exploration(temperature, epsilon), None)
        active = ~done
        # a distribution without sample_checked checks itself
        invalid = torch.zeros_like(done) if ok is None else active & ~ok
        stop = env.is_exit(actions) | done | invalid
        safe = torch.where(stop, torch.full_like(actions, self.safe_action), actions)
        keep = (~stop).view(-1, *([1] * (states.dim() - 1)))
        src = torch.where(keep, states, self._s0)  # stopped rows step from s_0, where safe_action is allowed
        moved = env.step(src, safe)
        nxt = torch.where(keep, moved, states)
        return nxt, stop, actions, env.backward_action(src, safe), active, invalid

    @torch.inference_mode()
    def _rollout(self, n: int, exp: Exploration):
        env = self.env
        states = env.initial_states(n)
        if not torch.is_tensor(states):
            raise TypeError("StaticSampler needs tensor states")
        env.validate_states(states, "initial states")
        done = torch.zeros(n, dtype=torch.bool, device=states.device)
        bwd = torch.zeros(n, dtype=torch.long, device=states.device)
        rec_s, rec_a, rec_b, rec_m, rec_ok = [], [], [], [], []
        for t in range(self.max_len + 1):
            nxt, done_next, actions, bwd_next, active, invalid = self._step(states, done, exp.temperature, exp.epsilon)
            rec_ok.append(~invalid)
            rec_s.append(states)
            rec_a.append(actions)
            rec_b.append(bwd)
            rec_m.append(active)
            states, done, bwd = nxt, done_next, bwd_next
            if self.check_every and (t + 1) % self.check_every == 0 and bool(done.all()):
                break
        _raise_if_invalid(self.model, rec_ok, rec_s, [torch.arange(n, device=states.device)] * len(rec_s),
                          None, backward=False)  # one host sync per call
        if not bool(done.all()):
            raise EnvError(f"StaticSampler: trajectories did not exit within max_len={self.max_len} transitions")
        return rec_s, rec_a, rec_b, rec_m

    def sample(self, n: int, cond: Optional[torch.Tensor] = None, exploration: Optional[Exploration] = None,
               keep_log_probs: bool = False, **unsupported) -> TrajectoryBatch:
        """``n`` complete trajectories from s_0, packed like :meth:`gfn.Sampler.sample` (so it can
        replace the sampler of a :class:`gfn.Trainer` without replay; conditioning and kept log-probs
        are not supported)."""
        if cond is not None or keep_log_probs or any(v is not None for v in unsupported.values()):
            raise NotImplementedError("StaticSampler supports unconditional sampling without kept log-probs only")
        exp = exploration or Exploration()
        check_exploration(exp.temperature, exp.epsilon)  # before any step (compiled steps included)
        rec_s, rec_a, rec_b, rec_m = self._rollout(n, exp)
        with torch.inference_mode():
            T = len(rec_m)
            active = torch.stack(rec_m, 1)  # [n, T]: row b, step t
            lengths = active.sum(1)
            ptr = lengths_to_ptr(lengths)
            # records of trajectory b at steps 0..len-1, in (b, t) order = the packed order
            flat = active.reshape(-1).nonzero().squeeze(1)

            def pack(xs):
                x = torch.stack(xs, 1)
                return x.reshape(n * T, *x.shape[2:])[flat]
            batch = TrajectoryBatch(states=pack(rec_s), ptr=ptr, actions=pack(rec_a), bwd_actions=pack(rec_b),
                                    log_rewards=torch.empty(0))
            batch.log_rewards = self.env.checked_log_reward(batch.terminal_states)
        return _outside_inference(batch)


    def sample_backward(self, *args, **kwargs):
        """Not available: backward sampling (replay, local search) needs :class:`gfn.Sampler`."""
        raise NotImplementedError("StaticSampler samples forward only; replay and local search walk back from "
                                  "stored objects with gfn.Sampler.sample_backward (use gfn.Sampler, or no replay)")


def compile_model(model: GFlowNet, **kwargs) -> GFlowNet:
    """Compile the trunk and the policy/flow heads of ``model`` in place with ``torch.compile``
    (default ``dynamic=True``); returns ``model``.  Parameters and state_dict are unchanged."""
    kwargs.setdefault("dynamic", True)
    if model.trunk is not None:
        model.trunk.compile(**kwargs)
    for name in ("pf", "pb"):
        head = getattr(getattr(model, name), "head", None)
        if isinstance(head, torch.nn.Module):
            head.compile(**kwargs)
    if model.flow is not None:
        model.flow.compile(**kwargs)
    return model
