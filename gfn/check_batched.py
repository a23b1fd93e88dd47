"""Conformance checks that batched environment calls equal one-by-one calls, and that
``featurize`` produces what the model expects.

Batch bugs (a mask computed from the first row for the whole batch, a step that writes at the
position of the first state, a reward normalised over the batch, features whose width depends on
the batch) are invisible on a batch of identical states.  So the states compared here are
*distinct* states drawn along random trajectories, in a random order, and every method is also
called on a shuffled copy of the batch, which must give the same rows shuffled the same way.
Each kind of difference is reported once, naming a state.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from gfn.check_base import CheckReport, _fmt, _guard, _rows_same
from gfn.env import ContinuousEnv, DiscreteEnv, Env
from gfn.states import batch_index, batch_len

#: number of distinct states compared one by one
N_COMPARED = 16


def distinct_states(env: Env, states, k: int, gen: torch.Generator):
    """Up to ``k`` distinct states of ``states`` in random order (initial states last-resort only)."""
    n = batch_len(states)
    perm = torch.randperm(n, generator=gen).to(env.device)
    if torch.is_tensor(states):
        flat = states.reshape(n, -1)[perm]
        _, inv = torch.unique(flat, dim=0, return_inverse=True)
        first = torch.full((int(inv.max()) + 1,), n, dtype=torch.long, device=inv.device)
        first = first.scatter_reduce(0, inv, torch.arange(n, device=inv.device), reduce="amin")
        idx = perm[first.sort().values]  # first occurrence of each distinct row, in shuffled order
    else:
        idx = perm
    sub = batch_index(states, idx)
    initial = env.is_initial(sub)
    order = torch.cat([(~initial).nonzero().squeeze(1), initial.nonzero().squeeze(1)[:1]])
    return batch_index(sub, order[:k])


def _pick(mask: torch.Tensor, gen: torch.Generator, exclude_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniformly random allowed column per row, and which rows have one."""
    m = mask.clone()
    if exclude_last:
        m[:, -1] = False
    u = torch.rand(m.shape, generator=gen).to(m.device).masked_fill(~m, -1.0)
    return u.argmax(-1), m.any(-1)


class _Once:
    """Adds at most one violation per kind (the first state found)."""

    def __init__(self, r: CheckReport):
        self.r, self.kinds = r, set()

    def add(self, kind: str, msg: str) -> None:
        if kind not in self.kinds:
            self.kinds.add(kind)
            self.r.add(msg)


def _rows_differ(a, b) -> Optional[torch.Tensor]:
    """Per-row inequality of two results (tensors compared with NaN == NaN), None if incomparable."""
    if torch.is_tensor(a) and torch.is_tensor(b):
        if a.shape != b.shape:
            return torch.ones(a.shape[0] if a.dim() else 1, dtype=torch.bool)
        if a.is_floating_point():
            same = torch.isclose(a, b, atol=1e-5, equal_nan=True)
        else:
            same = a == b
        return ~same.reshape(a.shape[0], -1).all(-1)
    same = _rows_same(a, b)
    return None if same is None else ~same


def _compare(once: _Once, r: CheckReport, kind: str, states, rows: torch.Tensor, fn: Callable,
             args: tuple, describe: Callable[[int], str], gen: torch.Generator) -> None:
    """``fn(batch_index(states, rows), *args)`` vs each row alone and vs a shuffled batch."""
    if rows.numel() == 0:
        return
    sub = batch_index(states, rows)
    whole = _guard(r, f"{kind} on a batch of distinct states", fn, sub, *args)
    if whole is None:
        return
    for j in range(rows.numel()):
        r.checks_run += 1
        one_args = tuple(a[j:j + 1] for a in args)
        alone = _guard(r, f"{kind} on one state", fn, batch_index(sub, torch.tensor([j], device=rows.device)), *one_args)
        if alone is None:
            return
        diff = _rows_differ(alone, batch_index(whole, torch.tensor([j], device=rows.device)))
        if diff is not None and bool(diff.any()):
            once.add(kind, f"{describe(j)} differs when computed alone vs in a batch of distinct states "
                           f"(alone {_short(alone, 0)}, in the batch {_short(whole, j)}): a batched method "
                           "must treat every row on its own")
            return
    perm = torch.randperm(rows.numel(), generator=gen).to(rows.device)
    shuffled = _guard(r, f"{kind} on a shuffled batch", fn, batch_index(sub, perm), *(a[perm] for a in args))
    r.checks_run += 1
    if shuffled is not None:
        diff = _rows_differ(shuffled, batch_index(whole, perm))
        if diff is not None and bool(diff.any()):
            j = int(perm[int(diff.nonzero()[0, 0])])
            once.add(kind, f"{describe(j)} changes when the batch is shuffled: a batched method must not "
                           "depend on the order of the rows")


def _short(x, i: int) -> str:
    if torch.is_tensor(x):
        if x.dim() == 0 or i >= x.shape[0]:
            return f"shape {tuple(x.shape)}"
        v = x[i]
        return str(v.tolist()) if v.numel() <= 12 else f"a vector of {v.numel()} values"
    return _fmt(x, i)


def check_features(env: Env, r: CheckReport, states) -> None:
    """``featurize`` returns ``(N, env.feature_dim)`` finite values in torch's default dtype (what
    the model's input layer is built for); graph features (non-tensors) are left to their model."""
    x = _guard(r, "featurize", env.featurize, states)
    if x is None or not torch.is_tensor(x):
        return
    width = _guard(r, "feature_dim", lambda: env.feature_dim)
    if width is None:
        return
    n = batch_len(states)
    r.checks_run += 1
    if x.dim() != 2 or x.shape != (n, width):
        r.add(f"featurize returned shape {tuple(x.shape)} for {n} states, but the model's input layer is built "
              f"for (N, feature_dim) = ({n}, {width}): make featurize return one row of feature_dim values per "
              "state (or fix feature_dim)")
        return
    r.checks_run += 1
    if x.dtype != torch.get_default_dtype():
        r.add(f"featurize returned {x.dtype}, but the model's layers are {torch.get_default_dtype()} "
              "(torch's default dtype): convert the features, e.g. .float()")
        return
    r.checks_run += 1
    bad = ~torch.isfinite(x).all(-1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        r.add(f"featurize returned non-finite values for state {_fmt(states, i)}")


def check_batched_discrete(env: DiscreteEnv, r: CheckReport, visited, gen: torch.Generator,
                           k: int = N_COMPARED) -> None:
    """Masks, step, backward_step, log_reward and featurize on distinct visited states: batched ==
    one by one == shuffled."""
    sub = distinct_states(env, visited, k, gen)
    m = batch_len(sub)
    once = _Once(r)
    allrows = torch.arange(m, device=env.device)
    check_features(env, r, sub)
    for name, fn in (("forward_mask", env.forward_mask), ("backward_mask", env.backward_mask)):
        _compare(once, r, name, sub, allrows, fn, (),
                 lambda j, name=name: f"{name} of state {_fmt(sub, j)}", gen)
    _compare(once, r, "featurize", sub, allrows, env.featurize, (),
             lambda j: f"featurize of state {_fmt(sub, j)}", gen)
    fm, bm = env.forward_mask(sub), env.backward_mask(sub)
    ex = fm[:, env.exit_action]
    rows = ex.nonzero().squeeze(1)
    _compare(once, r, "log_reward", sub, rows, env.log_reward, (),
             lambda j: f"log_reward of state {_fmt(sub, int(rows[j]))}", gen)
    a, ok = _pick(fm, gen, exclude_last=True)
    rows_f = ok.nonzero().squeeze(1)
    acts = a[rows_f]
    _compare(once, r, "step", sub, rows_f, env.step, (acts,),
             lambda j: f"step of state {_fmt(sub, int(rows_f[j]))} with action {int(acts[j])}", gen)
    b, okb = _pick(bm, gen)
    rows_b = okb.nonzero().squeeze(1)
    bacts = b[rows_b]
    _compare(once, r, "backward_step", sub, rows_b, env.backward_step, (bacts,),
             lambda j: f"backward_step of state {_fmt(sub, int(rows_b[j]))} with backward action {int(bacts[j])}",
             gen)


def check_batched_continuous(env: ContinuousEnv, r: CheckReport, visited, gen: torch.Generator,
                             sample_actions: Callable, k: int = N_COMPARED) -> None:
    """Masks, log_reward, featurize and step (with actions from ``sample_actions(states)``) on
    distinct visited states: batched == one by one == shuffled."""
    sub = distinct_states(env, visited, k, gen)
    m = batch_len(sub)
    once = _Once(r)
    allrows = torch.arange(m, device=env.device)
    check_features(env, r, sub)
    for name, fn in (("forward_mask", env.forward_mask), ("backward_mask", env.backward_mask),
                     ("featurize", env.featurize)):
        _compare(once, r, name, sub, allrows, fn, (),
                 lambda j, name=name: f"{name} of state {_fmt(sub, j)}", gen)
    fm = env.forward_mask(sub)
    rows = fm[:, 1].nonzero().squeeze(1)
    _compare(once, r, "log_reward", sub, rows, env.log_reward, (),
             lambda j: f"log_reward of state {_fmt(sub, int(rows[j]))}", gen)
    acts = _guard(r, "random_actions (the forward policy family)", sample_actions, sub)
    if acts is None or not torch.is_tensor(acts) or acts.shape[:1] != (m,):
        return
    go = (~env.is_exit(acts) & fm[:, 0]).nonzero().squeeze(1)
    moves = acts[go]
    _compare(once, r, "step", sub, go, env.step, (moves,),
             lambda j: f"step of state {_fmt(sub, int(go[j]))} with action {moves[j].tolist()}", gen)
