"""Stochastic environments: sticky-action transition probabilities, the sampler, exact metrics with
transition probabilities, check_env rules, and stochastic DB (reference residuals, exact target)."""

import math

import pytest
import torch

from gfn import Trainer, TrainerConfig, check_env
from gfn.env import EnvError, StochasticDiscreteEnv
from gfn.envs import HyperGrid
from gfn.envs.stochastic import StickyActions
from gfn.estimators import build_gflownet
from gfn.metrics.exact import exact_terminal_distribution, tv
from gfn.metrics.stochastic import stochastic_exact_metrics, stochastic_terminal_distribution
from gfn.objectives import get_objective
from gfn.sampler import Sampler


def _t(rows):
    return torch.tensor(rows, dtype=torch.long)


# ---------------------------------------------------------------- sticky transition probabilities
def test_sticky_probabilities_pan2023_rule():
    env = StickyActions(HyperGrid(2, 8), alpha=0.25)
    states = _t([[3, 2], [3, 2], [7, 2], [2, 7]])
    acts = _t([0, 1, 1, 0])
    p = env.move_log_probs(states, acts).exp()
    # interior: the chosen move keeps 1 - alpha + alpha / 2, the other gets alpha / 2
    assert torch.allclose(p[0], torch.tensor([0.875, 0.125], dtype=torch.float64))
    assert torch.allclose(p[1], torch.tensor([0.125, 0.875], dtype=torch.float64))
    # on an upper edge the authors' rule takes the chosen action
    assert torch.allclose(p[2], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(p[3], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.isinf(env.move_log_probs(_t([[1, 1]]), _t([2]))).all()  # exit makes no move


def test_sticky_probabilities_allowed_rule_at_edges():
    env = StickyActions(HyperGrid(3, 4), alpha=0.5, rule="allowed")
    p = env.move_log_probs(_t([[3, 0, 0], [1, 1, 1]]), _t([1, 2])).exp()
    assert torch.allclose(p[0], torch.tensor([0.0, 0.75, 0.25], dtype=torch.float64))
    assert torch.allclose(p[1], torch.tensor([1 / 6, 1 / 6, 0.5 + 1 / 6], dtype=torch.float64))


def test_sticky_sample_frequencies_match_probabilities():
    env = StickyActions(HyperGrid(3, 4), alpha=0.3)
    n = 40000
    states = _t([[1, 2, 0]]).expand(n, 3)
    acts = torch.full((n,), 1, dtype=torch.long)
    moves = env.sample_moves(states, acts, torch.Generator().manual_seed(1))
    freq = torch.bincount(moves, minlength=3).double() / n
    p = env.move_log_probs(states[:1], acts[:1]).exp()[0]
    assert torch.allclose(freq, p, atol=0.01)
    assert not bool(env.sample_moves(states, torch.full((n,), 3), None).ne(3).any())  # exit is never changed


def test_sticky_zero_alpha_is_the_base_env_and_bad_arguments():
    base = HyperGrid(2, 4)
    env = StickyActions(base, alpha=0.0)
    model = build_gflownet(env, hidden=16)
    p_stoch = stochastic_terminal_distribution(env, model)
    assert torch.allclose(p_stoch, exact_terminal_distribution(base, model).double(), atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        StickyActions(base, alpha=1.5)
    with pytest.raises(ValueError, match="rule"):
        StickyActions(base, rule="previous")
    with pytest.raises(ValueError, match="already stochastic"):
        StickyActions(env)


# ---------------------------------------------------------------- sampler and exact push-forward
def test_sampler_follows_sticky_dynamics_and_exact_distribution():
    env = StickyActions(HyperGrid(2, 4), alpha=0.5)
    model = build_gflownet(env, hidden=16)
    with torch.no_grad():  # a policy that prefers axis 0, so that stickiness shows
        model.pf.head.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    torch.manual_seed(3)
    batch = Sampler(env, model).sample(20000)
    # rows: the chosen action at s, the backward action of the realised move at the child
    first, nxt = ~batch.is_last, None
    inner = first.nonzero().squeeze(1)
    nxt = inner + 1
    realised = env.move_between(batch.states[inner], batch.states[nxt])
    assert torch.equal(batch.bwd_actions[nxt], realised)
    assert bool((batch.actions[inner] != realised).any())  # some actions were replaced
    emp = torch.bincount(env.state_index(batch.terminal_states), minlength=16).double() / 20000
    exact = stochastic_terminal_distribution(env, model)
    assert abs(float(exact.sum()) - 1.0) < 1e-9
    assert tv(emp, exact) < 0.03
    # ignoring the dynamics gives a different distribution
    assert tv(exact, exact_terminal_distribution(env.base, model).double()) > 0.02
    with pytest.raises(EnvError, match="stochastic"):
        Sampler(env, model).sample_backward(batch.terminal_states[:4])


# ---------------------------------------------------------------- check_env rules
class _BrokenSticky(StickyActions):
    """Samples from probabilities that disagree with move_log_probs (alpha 0.5 instead of 0.25)."""

    def sample_moves(self, states, actions, generator=None):
        a, self.alpha = self.alpha, 0.5
        try:
            return super().sample_moves(states, actions, generator)
        finally:
            self.alpha = a


class _ForbiddenMoves(StickyActions):
    def sample_moves(self, states, actions, generator=None):
        return torch.zeros_like(actions)  # move 0 even on the upper edge of axis 0


def test_check_env_stochastic_rules():
    assert check_env(StickyActions(HyperGrid(2, 6), 0.25)).ok
    assert check_env(StickyActions(HyperGrid(3, 3), 0.4, rule="allowed")).ok
    bad = check_env(_BrokenSticky(HyperGrid(2, 6), 0.25))
    assert any("disagrees with move_log_probs" in v for v in bad.violations), bad.violations
    bad = check_env(_ForbiddenMoves(HyperGrid(2, 3), 0.25), n_trajectories=128)
    assert any("does not allow" in v for v in bad.violations), bad.violations


# ---------------------------------------------------------------- stochastic DB
def _reference_residuals(env, model, batch):
    """Per-transition stochastic-DB residuals, one transition at a time in float64."""
    out_inner, out_exit = [], []
    heads = model.stochastic
    for b in range(batch.batch_size):
        lo, hi = int(batch.ptr[b]), int(batch.ptr[b + 1])
        for k in range(lo, hi):
            s = batch.states[k:k + 1]
            a = batch.actions[k:k + 1]
            lf = model.log_flow(s).double()
            lpf = model.pf_dist(s).log_probs.double()[0, a]
            if k == hi - 1:
                out_exit.append(lf + lpf - batch.log_rewards[b].double())
                continue
            s2 = batch.states[k + 1:k + 2]
            b2 = batch.bwd_actions[k + 1:k + 2]
            dyn = env.outcome_log_prob(s, a, s2).double()
            lpb = model.pb_dist(s2).log_probs.double()[0, b2]
            lpa = heads.pb_action.log_prob(s2, b2, s, a).double()
            out_inner.append(lf + lpf + dyn - model.log_flow(s2).double() - lpb - lpa)
    return torch.cat(out_inner), torch.cat(out_exit)


def test_stochastic_db_residuals_match_reference():
    env = StickyActions(HyperGrid(2, 4), alpha=0.25)
    obj = get_objective("stochastic_db", dynamics="exact", head_hidden=16)
    model = obj.build_model(env, hidden=16)
    batch = Sampler(env, model).sample(12)
    delta, nll = obj.residuals(model, batch)
    inner, exits = _reference_residuals(env, model, batch)
    n_inner = inner.numel()
    assert delta.numel() == n_inner + exits.numel() and nll.numel() == 0
    assert torch.allclose(delta[:n_inner].double(), inner, atol=1e-5)
    assert torch.allclose(delta[n_inner:].double(), exits, atol=1e-5)


def test_stochastic_db_learned_dynamics_loss_and_errors():
    env = StickyActions(HyperGrid(2, 4), alpha=0.25)
    obj = get_objective("stochastic_db", head_hidden=16)
    model = obj.build_model(env, hidden=16)
    batch = Sampler(env, model).sample(32)
    delta, nll = obj.residuals(model, batch)
    assert nll.numel() == batch.n_rows - batch.batch_size and bool((nll >= 0).all()) and bool((nll > 0).any())
    loss = obj.loss(model, batch)
    assert math.isclose(float(loss.detach()), float((delta.pow(2).mean() + nll.mean()).detach()), rel_tol=1e-5)
    loss.backward()
    assert model.stochastic.dynamics.net[0].weight.grad.abs().sum() > 0
    with pytest.raises(EnvError, match="deterministic"):
        obj.build_model(HyperGrid(2, 4))
    with pytest.raises(ValueError, match="dynamics"):
        get_objective("stochastic_db", dynamics="oracle")

    class _Unknown(StochasticDiscreteEnv, HyperGrid):
        def sample_moves(self, states, actions, generator=None):
            return actions
    with pytest.raises(EnvError, match="move_log_probs"):
        get_objective("stochastic_db", dynamics="exact").build_model(_Unknown(2, 4))


def test_stochastic_db_reaches_exact_target_where_db_is_biased():
    """Sticky 2-D grid of side 4, alpha 0.25: stochastic DB (exact dynamics) fits R/Z; DB does not."""
    env = StickyActions(HyperGrid(2, 4), alpha=0.25)
    tvs = {}
    for name, kw in (("stochastic_db", {"dynamics": "exact", "head_hidden": 32}), ("db", {})):
        torch.manual_seed(0)
        obj = get_objective(name, **kw)
        model = obj.build_model(env, hidden=32)
        Trainer(env, model, obj, TrainerConfig(batch_size=64, lr=3e-3)).train(300)
        tvs[name] = stochastic_exact_metrics(env, model)["tv_exact"]
    assert tvs["stochastic_db"] < 0.02, tvs
    assert tvs["db"] > 0.05, tvs
