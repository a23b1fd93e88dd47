"""``check_env``: a conformance suite for any environment.

It walks random trajectories (uniform over allowed actions, batched) and checks, in plain
words, the invariants every objective relies on:

* the initial state has no parents, and every other visited state has at least one;
* masks have the right shape and dtype, and every non-terminal state has an allowed action;
* ``backward_step(step(s, a), b(a)) == s`` for every sampled move (step/backward_step inverse);
* the backward mask at a child allows the move back (masks consistent with step), and every
  allowed backward action leads to a parent whose forward mask allows the move forward;
* the batched methods equal their one-by-one application on distinct states drawn along
  the trajectories, also in a shuffled batch, and are deterministic (:mod:`gfn.check_batched`);
* ``featurize`` returns ``(N, feature_dim)`` finite values in the model's dtype;
* ``log_reward`` is finite wherever exit is allowed; exit is last, is the only exiting action
  and is reachable (trajectories end);
* for enumerable envs, ``state_index`` is a bijection on ``enumerate_states()``, and every
  enumerated state is reachable from s_0.

Continuous environments are checked with ``env.random_actions(states)`` if they provide it.
"""

from __future__ import annotations

import torch

from gfn.check_base import CheckReport, _fmt, _guard, _initial_states, _rows_equal, _rows_same, _same
from gfn.check_batched import check_batched_discrete
from gfn.check_continuous import check_continuous
from gfn.env import ContinuousEnv, DiscreteEnv, Env
from gfn.states import batch_cat, batch_index, batch_len

__all__ = ["check_env", "CheckReport"]


def _check_state_violations(env, r: CheckReport, states) -> None:
    """Environment-specific invariants (e.g. valence in molecule graphs) via ``env.state_violations``."""
    hook = getattr(env, "state_violations", None)
    if hook is None:
        return
    found = _guard(r, "state_violations", hook, states)
    for msg in found or []:
        r.add(f"invalid state: {msg}")


def check_env(env: Env, n_trajectories: int = 64, max_steps: int = 1000, seed: int = 0,
              raise_on_failure: bool = False) -> CheckReport:
    """Run the conformance suite on ``env``; returns a :class:`CheckReport` (or raises)."""
    report = CheckReport(type(env).__name__)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    try:
        if isinstance(env, DiscreteEnv):
            _check_discrete(env, report, n_trajectories, max_steps, gen)
        elif isinstance(env, ContinuousEnv):
            check_continuous(env, report, n_trajectories, max_steps, gen)
        else:
            report.add("environment is neither a DiscreteEnv nor a ContinuousEnv subclass")
    except Exception as e:  # a crash is itself a violation; report it rather than hide it
        report.add(f"the suite stopped because the environment raised {type(e).__name__}: {e}")
    if raise_on_failure and not report.ok:
        from gfn.env import EnvError
        raise EnvError(str(report))
    return report


def _check_discrete(env: DiscreteEnv, r: CheckReport, n: int, max_steps: int, gen: torch.Generator) -> None:
    s0 = _initial_states(env, r, n)
    if s0 is None:
        return
    bm0 = env.backward_mask(s0)
    r.checks_run += 1
    if bm0.dtype != torch.bool or bm0.shape != (n, env.n_backward_actions):
        r.add(f"backward_mask must be a bool tensor of shape (N, {env.n_backward_actions}), got "
              f"{bm0.dtype} {tuple(bm0.shape)}")
        return
    if bm0.any():
        r.add(f"the initial state {_fmt(s0, 0)} has parents: its backward mask allows "
              f"{bm0[0].nonzero().flatten().tolist()}")
    r.checks_run += 1
    if not bool(env.is_initial(s0).all()):
        r.add("is_initial() is False for the initial state")

    states, visited = s0, [s0]
    for t in range(max_steps + 1):
        m = env.forward_mask(states)
        r.checks_run += 1
        if m.dtype != torch.bool or m.shape != (batch_len(states), env.n_actions):
            r.add(f"forward_mask must be a bool tensor of shape (N, {env.n_actions}) with exit last, got "
                  f"{m.dtype} {tuple(m.shape)}")
            return
        dead = ~m.any(-1)
        if dead.any():
            i = int(dead.nonzero()[0, 0])
            r.add(f"state {_fmt(states, i)} allows no action at all (not even exit): trajectories get stuck")
            return
        if t == max_steps:
            r.add(f"trajectories did not end within {max_steps} steps: is exit ever allowed?")
            return
        # uniform random allowed action
        u = torch.rand(m.shape, generator=gen).to(env.device).masked_fill(~m, -1.0)
        a = u.argmax(-1)
        r.checks_run += 1
        ex = env.is_exit(a)
        if not torch.equal(ex, a == env.exit_action):
            r.add("is_exit() disagrees with 'action == n_actions - 1' (exit must be the last action)")
        exit_rows = ex.nonzero().squeeze(1)
        if exit_rows.numel() > 0:
            _check_rewards(env, r, batch_index(states, exit_rows))
        go = (~ex).nonzero().squeeze(1)
        if go.numel() == 0:
            break
        parents, acts = batch_index(states, go), a[go]
        children = _guard(r, "step", env.step, parents, acts)
        if children is None:
            return
        _check_children(env, r, parents, acts, children)
        visited.append(children)
        states = children
    allv = batch_cat(visited)
    _check_state_violations(env, r, allv)
    check_batched_discrete(env, r, allv, gen)
    _check_backward_closure(env, r, allv)
    _check_backward_walks(env, r, allv, max_steps, gen)
    _check_exit_rejected(env, r, allv)
    if env.is_enumerable:
        if _check_enumeration(env, r):
            _check_in_enumeration(env, r, allv, "a state reached by forward steps")
            _check_all_enumerated_reachable(env, r)
    if env.is_stochastic:
        check_stochastic(env, r, allv, gen)


def _check_rewards(env: DiscreteEnv, r: CheckReport, terminal) -> None:
    lr = _guard(r, "log_reward", env.log_reward, terminal)
    if lr is None:
        return
    r.checks_run += 1
    if not torch.is_tensor(lr) or lr.shape != (batch_len(terminal),):
        r.add(f"log_reward must return a tensor of shape (N,), got "
              f"{tuple(lr.shape) if torch.is_tensor(lr) else type(lr).__name__}")
        return
    bad = ~torch.isfinite(lr)
    if bad.any() and not getattr(env, "allows_invalid_objects", False):
        i = int(bad.nonzero()[0, 0])
        r.add(f"log_reward is {float(lr[i])} at state {_fmt(terminal, i)} where exit is allowed; "
              "it must be finite (set allows_invalid_objects=True if -inf marks invalid objects)")


def _check_children(env: DiscreteEnv, r: CheckReport, parents, acts, children) -> None:
    r.checks_run += 1
    if batch_len(children) != batch_len(parents):
        r.add(f"step returned {batch_len(children)} states for {batch_len(parents)} inputs")
        return
    try:
        env.validate_states(children, "states returned by step")
    except Exception as e:
        r.add(str(e))
        return
    r.checks_run += 1
    loops = _rows_same(children, parents)
    if loops is not None and bool(loops.any()):
        i = int(loops.nonzero()[0, 0])
        r.add(f"step with action {int(acts[i])} from {_fmt(parents, i)} returned the same state (self-loop)")
    b = env.backward_action(parents, acts)
    bm = env.backward_mask(children)
    r.checks_run += 1
    ok = bm.gather(1, b.unsqueeze(1)).squeeze(1)
    if not ok.all():
        i = int((~ok).nonzero()[0, 0])
        r.add(f"masks disagree with step: action {int(acts[i])} leads from {_fmt(parents, i)} to "
              f"{_fmt(children, i)}, whose backward mask forbids the way back (backward action {int(b[i])})")
    back = _guard(r, "backward_step", env.backward_step, children, b)
    if back is None:
        return
    r.checks_run += 1
    same = _rows_same(back, parents)
    if same is not None:
        if not same.all():
            i = int((~same).nonzero()[0, 0])
            r.add(f"backward_step does not invert step: {_fmt(parents, i)} --action {int(acts[i])}--> "
                  f"{_fmt(children, i)} --backward {int(b[i])}--> {_fmt(back, i)}")
    r.checks_run += 1
    if not bool(env.is_initial(children).logical_not().all()):
        i = int(env.is_initial(children).nonzero()[0, 0])
        r.add(f"state {_fmt(children, i)} reached by a step has no parents (backward mask all False)")
    again = _guard(r, "step (repeated)", env.step, parents, acts)
    r.checks_run += 1
    if again is not None and not _same(again, children):
        r.add("step is not deterministic/stateless: the same call returned different states")


def _check_backward_closure(env: DiscreteEnv, r: CheckReport, states) -> None:
    """Every allowed backward action leads to a parent that can step forward to the state."""
    bm = env.backward_mask(states)
    rows, acts = bm.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return
    kids = batch_index(states, rows)
    parents = _guard(r, "backward_step on allowed backward actions", env.backward_step, kids, acts)
    if parents is None:
        return
    fa = env.forward_action(kids, acts)
    fm = env.forward_mask(parents)
    r.checks_run += 1
    ok = fm.gather(1, fa.unsqueeze(1)).squeeze(1)
    if not ok.all():
        i = int((~ok).nonzero()[0, 0])
        r.add(f"masks disagree with backward_step: backward action {int(acts[i])} leads from "
              f"{_fmt(kids, i)} to {_fmt(parents, i)}, whose forward mask forbids forward action {int(fa[i])}")
        return
    if env.is_enumerable and not _check_in_enumeration(env, r, parents, "a parent returned by backward_step"):
        return
    redo = _guard(r, "step after backward_step", env.step, parents, fa)
    r.checks_run += 1
    same = _rows_same(redo, kids) if redo is not None else None
    if same is not None:
        if not same.all():
            i = int((~same).nonzero()[0, 0])
            r.add(f"step does not invert backward_step: {_fmt(kids, i)} --backward {int(acts[i])}--> "
                  f"{_fmt(parents, i)} --action {int(fa[i])}--> {_fmt(redo, i)}")


def _check_exit_rejected(env: DiscreteEnv, r: CheckReport, states) -> None:
    one = batch_index(states, torch.tensor([0], device=env.device))
    r.checks_run += 1
    try:
        env.apply(one, torch.tensor([env.exit_action], device=env.device))
    except Exception:
        return
    r.add("apply() accepted the exit action as a move; exit must end the trajectory")


def _check_enumeration(env: DiscreteEnv, r: CheckReport) -> bool:
    states = _guard(r, "enumerate_states", env.enumerate_states)
    if states is None:
        return False
    idx = _guard(r, "state_index", env.state_index, states)
    if idx is None:
        return False
    m = batch_len(states)
    r.checks_run += 1
    if not torch.equal(idx.sort().values, torch.arange(m, device=idx.device)):
        r.add(f"state_index is not a bijection from enumerate_states() onto 0..{m - 1}")
        return False
    r.checks_run += 1
    if not torch.equal(idx, torch.arange(m, device=idx.device)):
        r.add("state_index(enumerate_states()) must be 0, 1, ..., M-1 in order")
        return False
    return _check_in_enumeration(env, r, env.initial_states(1), "the initial state")


def _check_all_enumerated_reachable(env: DiscreteEnv, r: CheckReport) -> None:
    """enumerate_states() lists only states some trajectory from s_0 reaches (exact metrics
    leave the others out; listing them hides a mask or enumeration bug)."""
    import warnings

    from gfn.metrics.exact import reachable_mask
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below instead
        seen = _guard(r, "reachability walk from s_0", reachable_mask, env, None, False)
    if seen is None or bool(seen.all()):
        return
    states = env.enumerate_states()
    i = int((~seen).nonzero()[0, 0])
    r.add(f"enumerate_states() lists {int((~seen).sum())} of {seen.numel()} states that no trajectory "
          f"from s_0 reaches, e.g. {_fmt(states, i)}: list only reachable states (exact metrics "
          "leave the others out), or fix the masks that should lead there")


def _check_in_enumeration(env: DiscreteEnv, r: CheckReport, states, what: str) -> bool:
    """Every state must be one of enumerate_states() (catches moves off the state space)."""
    r.checks_run += 1
    all_states = env.enumerate_states()
    m = batch_len(all_states)
    idx = env.state_index(states)
    bad = (idx < 0) | (idx >= m)
    if not bad.any() and torch.is_tensor(states):
        bad = ~_rows_equal(batch_index(all_states, idx), states)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        r.add(f"{what}, {_fmt(states, i)}, is not among enumerate_states(): a mask lets "
              "trajectories leave the state space")
        return False
    return True


def _check_backward_walks(env: DiscreteEnv, r: CheckReport, states, max_steps: int, gen) -> None:
    """Random backward walks from every visited state reach exactly s_0."""
    s0 = env.initial_states(1)
    cur = states
    for _ in range(max_steps + 1):
        bm = env.backward_mask(cur)
        init = ~bm.any(-1)
        if init.all():
            break
        go = (~init).nonzero().squeeze(1)
        u = torch.rand(bm.shape, generator=gen).to(env.device).masked_fill(~bm, -1.0)
        a = u.argmax(-1)
        stepped = _guard(r, "backward_step in a backward walk", env.backward_step, batch_index(cur, go), a[go])
        if stepped is None:
            return
        if not torch.is_tensor(cur):
            # container states (graphs): reassemble the batch in its original order
            stay = init.nonzero().squeeze(1)
            order = torch.argsort(torch.cat([stay, go]))
            cur = batch_index(batch_cat([batch_index(cur, stay), stepped]), order)
            continue
        cur = cur.clone()
        cur[go] = stepped
    else:
        r.add(f"backward walks did not reach the initial state within {max_steps} steps: "
              "a backward mask allows moves that never end")
        return
    r.checks_run += 1
    if torch.is_tensor(cur):
        same = _rows_equal(cur, s0.expand_as(cur))
        if not same.all():
            i = int((~same).nonzero()[0, 0])
            r.add(f"a backward walk ended at {_fmt(cur, i)}, which has no parents but is not the initial state")
    elif hasattr(cur, "rows_equal"):
        same = cur.rows_equal(env.initial_states(batch_len(cur)))
        if not same.all():
            i = int((~same).nonzero()[0, 0])
            r.add(f"a backward walk ended at {_fmt(cur, i)}, which has no parents but is not the initial state")


def check_stochastic(env: DiscreteEnv, r: CheckReport, states, gen: torch.Generator,
                     n_draws: int = 2000, max_states: int = 8) -> None:
    """Rules of the stochastic contract (:class:`gfn.env.StochasticDiscreteEnv`) on visited states:
    ``sample_moves`` returns allowed moves (long, one per row) and repeats under the same generator
    state; ``move_between`` recovers every move from its child; with known dynamics,
    ``move_log_probs`` is a normalised distribution over the allowed moves that the frequencies of
    ``n_draws`` calls to ``sample_moves`` match (at up to ``max_states`` states)."""
    mask = env.forward_mask(states)[:, :env.exit_action]
    rows = mask.any(-1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return
    states, mask = batch_index(states, rows), mask[rows]
    n = rows.numel()
    u = torch.rand(mask.shape, generator=gen).to(env.device).masked_fill(~mask, -1.0)
    acts = u.argmax(-1)
    r.checks_run += 1
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    moves = _guard(r, "sample_moves", env.sample_moves, states, acts, torch.Generator().manual_seed(seed))
    if moves is None:
        return
    if not torch.is_tensor(moves) or moves.dtype != torch.long or moves.shape != (n,):
        r.add(f"sample_moves must return a long tensor of shape ({n},), got "
              f"{getattr(moves, 'dtype', type(moves).__name__)} {tuple(getattr(moves, 'shape', ()))}")
        return
    bad = (moves < 0) | (moves >= env.exit_action)
    if not bad.any():
        bad = ~mask.gather(1, moves.unsqueeze(1)).squeeze(1)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        r.add(f"sample_moves returned move {int(moves[i])} for action {int(acts[i])} in state {_fmt(states, i)}, "
              f"which the forward mask does not allow (allowed: {mask[i].nonzero().flatten().tolist()})")
        return
    r.checks_run += 1
    again = env.sample_moves(states, acts, torch.Generator().manual_seed(seed))
    if not torch.equal(again, moves):
        r.add("sample_moves is not reproducible: the same generator state gave different moves")
    r.checks_run += 1
    back = _guard(r, "move_between", env.move_between, states, env.step(states, moves))
    if back is not None and not torch.equal(back, moves):
        i = int((back != moves).nonzero()[0, 0])
        r.add(f"move_between returned {int(back[i])} for move {int(moves[i])} from state {_fmt(states, i)}")
    if not env.knows_dynamics:
        return
    r.checks_run += 1
    lp = _guard(r, "move_log_probs", env.move_log_probs, states, acts)
    if lp is None:
        return
    if lp.shape != mask.shape or torch.isnan(lp).any() or (lp == float("inf")).any():
        r.add(f"move_log_probs must return finite-or--inf values of shape {tuple(mask.shape)}, got {tuple(lp.shape)}")
        return
    if bool((lp[~mask] > float("-inf")).any()):
        i = int(((lp > float("-inf")) & ~mask).any(-1).nonzero()[0, 0])
        r.add(f"move_log_probs gives a forbidden move positive probability in state {_fmt(states, i)}")
    total = torch.logsumexp(lp.double(), -1)
    if not torch.allclose(total, torch.zeros_like(total), atol=1e-5):
        i = int((total.abs() > 1e-5).nonzero()[0, 0])
        r.add(f"move_log_probs does not sum to 1 over the moves (state {_fmt(states, i)}: "
              f"sum {float(total[i].exp()):.6f})")
        return
    r.checks_run += 1
    k = min(n, max_states)
    sub = batch_index(states, torch.arange(k, device=env.device))
    rep = batch_index(sub, torch.arange(k, device=env.device).repeat_interleave(n_draws))
    drawn = env.sample_moves(rep, acts[:k].repeat_interleave(n_draws), gen).reshape(k, n_draws)
    freq = torch.zeros(k, mask.shape[1], dtype=torch.float64).scatter_add_(
        1, drawn.cpu(), torch.ones(k, n_draws, dtype=torch.float64)) / n_draws
    p = lp[:k].double().exp().cpu()
    tol = 5 * (p * (1 - p) / n_draws).sqrt() + 1e-3
    off = (freq - p).abs() > tol
    if off.any():
        i, j = (int(x) for x in off.nonzero()[0])
        r.add(f"sample_moves disagrees with move_log_probs in state {_fmt(states, i)}, action {int(acts[i])}: "
              f"move {j} drawn with frequency {float(freq[i, j]):.3f}, probability {float(p[i, j]):.3f}")
