"""No forbidden action is ever drawn: a state without an allowed action (environment bug) or a
policy without finite scores for its allowed actions (divergence) raises a clear error."""

import pytest
import torch

import gfn
from gfn.distributions import InvalidActionError, MaskedCategorical
from gfn.envs import HyperGrid
from gfn.sampler import Exploration
from gfn.static import StaticSampler

INF = float("inf")


def test_masked_categorical_refuses_rows_without_a_finite_allowed_logit():
    # the case of issue 16 item 7: the only allowed action has logit -inf; argmax used to return 0
    d = MaskedCategorical(torch.tensor([[0.0, 0.0, -INF]]), torch.tensor([[False, False, True]]))
    with pytest.raises(InvalidActionError, match="not finite.*diverged"):
        d.sample()
    with pytest.raises(InvalidActionError, match="no forward action is allowed.*environment bug"):
        MaskedCategorical(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool)).sample()
    for bad in (float("nan"), INF):  # NaN or +inf among the allowed logits: divergence
        with pytest.raises(InvalidActionError, match="not finite"):
            MaskedCategorical(torch.tensor([[0.0, bad, 0.0]]), torch.tensor([[True, True, False]])).sample()


def test_sample_checked_flags_only_the_bad_rows_and_keeps_good_rows_exact():
    logits = torch.tensor([[0.0, 1.0, -INF], [0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0], [2.0, -1.0, 0.5]])
    mask = torch.tensor([[False, False, True], [False, False, False], [True, True, True], [True, False, True]])
    d = MaskedCategorical(logits, mask)
    actions, ok = d.sample_checked()
    assert ok.tolist() == [False, False, False, True] and mask[3, actions[3]]
    # epsilon-uniform rows ignore the logits: only the row with no allowed action is left bad
    actions, ok = d.sample_checked(epsilon=1.0)
    assert ok.tolist() == [True, False, True, True]
    assert mask[[0, 2, 3], actions[[0, 2, 3]]].all()
    # the valid row still samples its exact distribution (Gumbel-max unchanged)
    big = MaskedCategorical(logits[3:].expand(20000, 3), mask[3:].expand(20000, 3))
    actions, ok = big.sample_checked()
    assert ok.all()
    freq = torch.bincount(actions, minlength=3).double() / 20000
    torch.testing.assert_close(freq, torch.softmax(logits[3].masked_fill(~mask[3], -INF).double(), 0), atol=0.015, rtol=0)


@pytest.mark.parametrize("temperature,epsilon", [(0.0, 0.0), (-1.0, 0.0), (INF, 0.0), (float("nan"), 0.0), (1.0, 1.5)])
def test_exploration_settings_that_break_masking_are_refused(temperature, epsilon):
    # temperature 0 turned -inf / 0 into NaN scores, which argmax prefers: a forbidden action
    env = HyperGrid(2, 4)
    model = gfn.build_gflownet(env, hidden=8)
    with pytest.raises(ValueError, match="temperature|epsilon"):
        gfn.Sampler(env, model).sample(4, exploration=Exploration(temperature, epsilon))
    with pytest.raises(ValueError, match="temperature|epsilon"):
        StaticSampler(env, model, max_len=6).sample(4, exploration=Exploration(temperature, epsilon))


class DeadEnd(HyperGrid):
    """A buggy grid: the cell (1, 1) allows no forward action at all (not even exit)."""

    def forward_mask(self, states):
        m = super().forward_mask(states)
        return m & ~(states == 1).all(-1, keepdim=True)


def _strict(env):
    """Make ``env.step`` / ``env.backward_step`` fail the test on any forbidden action."""
    step, back = env.step, env.backward_step

    def checked_step(states, actions):
        assert env.forward_mask(states).gather(1, actions[:, None]).all(), "forbidden forward action taken"
        return step(states, actions)

    def checked_back(states, actions):
        assert env.backward_mask(states).gather(1, actions[:, None]).all(), "forbidden backward action taken"
        return back(states, actions)
    env.step, env.backward_step = checked_step, checked_back
    return env


def test_sampler_reports_a_state_without_allowed_action_as_an_environment_bug():
    env = _strict(DeadEnd(2, 4))
    model = gfn.build_gflownet(env, hidden=8)
    with pytest.raises(InvalidActionError, match=r"no forward action is allowed at trajectory \d+, state \[1, 1\].*environment bug"):
        gfn.Sampler(env, model).sample(64)
    with pytest.raises(InvalidActionError, match=r"state \[1, 1\].*environment bug"):
        StaticSampler(env, model, max_len=6).sample(64)


def _diverged(env, head: str):
    model = gfn.build_gflownet(env, hidden=8)
    with torch.no_grad():
        for p in getattr(model, head).parameters():
            p.fill_(float("nan"))
    return model


def test_sampler_reports_non_finite_logits_as_divergence():
    env = _strict(HyperGrid(2, 4))
    model = _diverged(env, "pf")
    with pytest.raises(InvalidActionError, match="not finite.*diverged"):
        gfn.Sampler(env, model).sample(8)
    with pytest.raises(InvalidActionError, match="not finite.*diverged"):
        StaticSampler(env, model, max_len=6).sample(8)
    back = _diverged(env, "pb")
    with pytest.raises(InvalidActionError, match="backward actions .* not finite"):
        gfn.Sampler(env, back).sample_backward(torch.tensor([[3, 3], [2, 1]]))
