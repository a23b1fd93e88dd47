"""``check_env`` for continuous environments (called by :func:`gfn.check.check_env`).

Random moves come from the environment's policy families with all-zero parameters
(``env.random_actions``).  Checked, in plain words: mask shapes; the initial state has no
parent; sampled moves are accepted by the validated ``apply`` and respect the masks; the
backward move undoes every step and vice versa; forward and backward log-densities of the
sampled moves are finite; trajectories end within ``max_steps`` and backward walks reach s_0;
rewards are finite where exit is allowed; batched, one-by-one and shuffled masks, rewards,
features and steps agree on distinct visited states (:mod:`gfn.check_batched`); ``apply``
rejects the exit action.
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch

from gfn.check_base import CheckReport, _fmt, _guard, _initial_states, _rows_same, _same
from gfn.check_batched import check_batched_continuous
from gfn.env import ContinuousEnv
from gfn.states import batch_cat, batch_index, batch_len


def check_continuous(env: ContinuousEnv, r: CheckReport, n: int, max_steps: int,
                      gen: Optional[torch.Generator] = None) -> None:
    """Continuous envs: random moves from the policy families with all-zero parameters
    (``env.random_actions``) must be accepted by ``apply``, be inverted by the backward move,
    have finite forward and backward log-densities, and end (exit) within ``max_steps``."""
    gen = gen if gen is not None else torch.Generator(device="cpu").manual_seed(0)
    s0 = _initial_states(env, r, n)
    if s0 is None:
        return
    r.checks_run += 1
    if not bool(env.is_initial(s0).all()):
        r.add("the initial state has parents (is_initial is False)")
    bm0 = env.backward_mask(s0)
    r.checks_run += 1
    if bm0.dtype != torch.bool or bm0.shape != (n, 1):
        r.add(f"backward_mask must be a bool tensor of shape (N, 1), got {bm0.dtype} {tuple(bm0.shape)}")
        return
    if bm0.any():
        r.add(f"the initial state {_fmt(s0, 0)} has parents: its backward mask is True")
    if not hasattr(env, "random_actions"):
        return
    states, visited, terminal = s0, [], []
    for _ in range(max_steps):
        fm = env.forward_mask(states)
        r.checks_run += 1
        if fm.dtype != torch.bool or fm.shape != (batch_len(states), 2):
            r.add(f"forward_mask must be a bool tensor of shape (N, 2) (continue, exit), got {fm.dtype} {tuple(fm.shape)}")
            return
        if not fm.any(-1).all():
            i = int((~fm.any(-1)).nonzero()[0, 0])
            r.add(f"state {_fmt(states, i)} allows neither continuing nor exit: trajectories get stuck")
            return
        acts = _guard(r, "random_actions (the forward policy family)", _random_actions, env, states, gen, False)
        if acts is None:
            return
        r.checks_run += 1
        if acts.shape != (batch_len(states), env.action_dim):
            r.add(f"random_actions returned shape {tuple(acts.shape)}, expected (N, {env.action_dim})")
            return
        _check_policy_log_prob(env, r, states, acts, backward=False)
        ex = env.is_exit(acts)
        r.checks_run += 1
        if bool((ex & ~fm[:, 1]).any()):
            i = int((ex & ~fm[:, 1]).nonzero()[0, 0])
            r.add(f"the forward policy chose exit in state {_fmt(states, i)} where forward_mask forbids it")
        if bool((~ex & ~fm[:, 0]).any()):
            i = int((~ex & ~fm[:, 0]).nonzero()[0, 0])
            r.add(f"the forward policy moved from state {_fmt(states, i)} where forward_mask forbids continuing")
        if ex.any():
            done = batch_index(states, ex.nonzero().squeeze(1))
            terminal.append(done)
            lr = _guard(r, "log_reward", env.log_reward, done)
            r.checks_run += 1
            if lr is not None and (not torch.is_tensor(lr) or lr.shape != (batch_len(done),)):
                r.add(f"log_reward must return a tensor of shape (N,), got {getattr(lr, 'shape', type(lr))}")
            elif lr is not None and not torch.isfinite(lr).all():
                i = int((~torch.isfinite(lr)).nonzero()[0, 0])
                r.add(f"log_reward is {float(lr[i])} at {_fmt(done, i)}, a state where exit is allowed")
        go = (~ex).nonzero().squeeze(1)
        if go.numel() == 0:
            break
        parents, a = batch_index(states, go), acts[go]
        children = _guard(r, "apply (validated step) on an action sampled by the forward policy", env.apply, parents, a)
        if children is None:
            return
        _check_continuous_children(env, r, parents, a, children)
        again = env.step(parents, a)
        r.checks_run += 1
        if not _same(again, children):
            r.add("step is not deterministic/stateless: the same call returned different states")
        visited.append(children)
        states = children
    else:
        r.add(f"trajectories did not end within {max_steps} steps")
        return
    allv = batch_cat(visited) if visited else s0
    _check_continuous_backward(env, r, allv, gen)
    if terminal:
        _check_continuous_walks(env, r, batch_cat(terminal), max_steps, gen)
    check_batched_continuous(env, r, allv, gen, lambda st: _random_actions(env, st, gen, False))
    one = batch_index(allv, torch.tensor([0], device=env.device))
    r.checks_run += 1
    try:
        env.apply(one, env.exit_actions(1))
    except Exception:
        return
    r.add("apply() accepted the exit action as a move; exit must end the trajectory")


def _accepts_backward(env: ContinuousEnv) -> bool:
    """Whether ``env.random_actions`` takes ``backward`` (custom overrides may take only states)."""
    return "backward" in inspect.signature(env.random_actions).parameters


def _random_actions(env: ContinuousEnv, states, gen, backward: bool):
    params = inspect.signature(env.random_actions).parameters
    kw = {}
    if "generator" in params:
        kw["generator"] = gen
    if backward:
        kw["backward"] = True
    return env.random_actions(states, **kw)


def _check_policy_log_prob(env: ContinuousEnv, r: CheckReport, states, acts, backward: bool) -> None:
    """The zero-parameter policy family gives finite log-probabilities to the actions it sampled
    (skipped for environments that bring their own policies instead of action families)."""
    try:
        fam = env.backward_family(fixed=True) if backward else env.forward_family()
    except NotImplementedError:
        return
    params = torch.zeros(batch_len(states), fam.n_params, device=env.device) if fam.n_params else None
    lp = _guard(r, f"log_prob of the {'backward' if backward else 'forward'} policy", lambda: fam(params, states).log_prob(acts))
    r.checks_run += 1
    if lp is not None and (lp.shape != (batch_len(states),) or not torch.isfinite(lp).all()):
        bad = (~torch.isfinite(lp)).nonzero() if lp.shape == (batch_len(states),) else None
        i = int(bad[0, 0]) if bad is not None and bad.numel() else 0
        r.add(f"the {'backward' if backward else 'forward'} policy gives log-probability "
              f"{lp[i].item() if lp.numel() else lp} (shape {tuple(lp.shape)}) to action {acts[i].tolist()} it "
              f"sampled in state {_fmt(states, i)}; it must be finite")


def _check_continuous_children(env: ContinuousEnv, r: CheckReport, parents, a, children) -> None:
    try:
        env.validate_states(children, "states returned by step")
    except Exception as e:
        r.add(str(e))
        return
    r.checks_run += 1
    if bool(env.is_initial(children).any()):
        i = int(env.is_initial(children).nonzero()[0, 0])
        r.add(f"step from {_fmt(parents, i)} with action {a[i].tolist()} returned the initial state")
    bm = env.backward_mask(children)
    r.checks_run += 1
    if not bool(bm.all()):
        i = int((~bm.all(-1)).nonzero()[0, 0])
        r.add(f"state {_fmt(children, i)} reached by a step has no parent (backward mask False)")
    b = env.backward_action(parents, a)
    _check_policy_log_prob(env, r, children, b, backward=True)
    back = _guard(r, "apply (validated backward_step) on the move that undoes a step", env.apply, children, b, True)
    r.checks_run += 1
    same = _rows_same(back, parents) if back is not None else None
    if same is not None and not same.all():
        i = int((~same).nonzero()[0, 0])
        r.add(f"backward_step does not invert step (beyond 1e-5): {_fmt(parents, i)} --{a[i].tolist()}--> "
              f"{_fmt(children, i)} --backward {b[i].tolist()}--> {_fmt(back, i)}")


def _check_continuous_backward(env: ContinuousEnv, r: CheckReport, states, gen) -> None:
    """Moves drawn by the fixed backward policy lead to parents that can step forward again."""
    if not _accepts_backward(env):
        return
    b = _guard(r, "random_actions(backward=True) (the fixed backward policy)", _random_actions, env, states, gen, True)
    if b is None:
        return
    parents = _guard(r, "apply (validated backward_step) on a sampled backward action", env.apply, states, b, True)
    if parents is None:
        return
    fa = env.forward_action(states, b)
    fm = env.forward_mask(parents)
    r.checks_run += 1
    if not bool(fm[:, 0].all()):
        i = int((~fm[:, 0]).nonzero()[0, 0])
        r.add(f"backward move from {_fmt(states, i)} leads to {_fmt(parents, i)}, whose forward mask forbids continuing")
        return
    _check_policy_log_prob(env, r, parents, fa, backward=False)
    redo = _guard(r, "apply (validated step) after backward_step", env.apply, parents, fa)
    r.checks_run += 1
    same = _rows_same(redo, states) if redo is not None else None
    if same is not None and not same.all():
        i = int((~same).nonzero()[0, 0])
        r.add(f"step does not invert backward_step: {_fmt(states, i)} --backward {b[i].tolist()}--> "
              f"{_fmt(parents, i)} --{fa[i].tolist()}--> {_fmt(redo, i)}")


def _check_continuous_walks(env: ContinuousEnv, r: CheckReport, states, max_steps: int, gen) -> None:
    """Backward walks with the fixed backward policy from terminal states reach s_0."""
    if not _accepts_backward(env):
        return
    cur = states.clone()
    for _ in range(max_steps + 1):
        init = env.is_initial(cur)
        if init.all():
            break
        go = (~init).nonzero().squeeze(1)
        sub = batch_index(cur, go)
        b = _guard(r, "random_actions(backward=True) in a backward walk", _random_actions, env, sub, gen, True)
        if b is None:
            return
        stepped = _guard(r, "apply (validated backward_step) in a backward walk", env.apply, sub, b, True)
        if stepped is None:
            return
        if torch.is_tensor(cur):
            cur[go] = stepped
        else:  # container states (e.g. forests): reassemble the batch in its original order
            stay = init.nonzero().squeeze(1)
            order = torch.argsort(torch.cat([stay, go]))
            cur = batch_index(batch_cat([batch_index(cur, stay), stepped]), order)
    else:
        r.add(f"backward walks did not reach the initial state within {max_steps} steps")
        return
    r.checks_run += 1
    same = _rows_same(cur, env.initial_states(batch_len(cur)))
    if same is not None and not same.all():
        i = int((~same).nonzero()[0, 0])
        r.add(f"a backward walk ended at {_fmt(cur, i)}, which has no parent but is not the initial state")
