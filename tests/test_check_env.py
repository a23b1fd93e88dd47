"""check_env passes HyperGrid and flags deliberately broken environments with specific messages."""

import pytest
import torch

import gfn
from gfn.envs import HyperGrid
from gfn.objectives import get_objective


def test_hypergrid_passes():
    for ndim, height in [(1, 5), (2, 8), (3, 4)]:
        report = gfn.check_env(HyperGrid(ndim, height))
        assert report.ok, str(report)
        assert report.checks_run > 50


class BackwardWrongAxis(HyperGrid):
    def backward_step(self, states, actions):
        return states - torch.nn.functional.one_hot((actions + 1) % self.ndim, self.ndim)


class InitialHasParents(HyperGrid):
    def backward_mask(self, states):
        m = states > 0
        m[:, 0] = True
        return m


class MaskAllowsOffGrid(HyperGrid):
    def forward_mask(self, states):
        m = super().forward_mask(states)
        m[:, :-1] = True  # lets a walker step past the upper edge
        return m


class NaNReward(HyperGrid):
    def log_reward(self, states):
        lr = super().log_reward(states)
        return torch.where(states.sum(-1) == 3, torch.full_like(lr, float("nan")), lr)


class NeverExits(HyperGrid):
    def forward_mask(self, states):
        m = super().forward_mask(states)
        m[:, -1] = False
        return m


class BatchDependentMask(HyperGrid):
    def forward_mask(self, states):
        m = super().forward_mask(states)
        if states.shape[0] == 1:
            m[:, 0] = False
        return m


class BackwardMaskTooPermissive(HyperGrid):
    def backward_mask(self, states):
        m = states > 0
        m[:, 0] |= states[:, 1] > 1  # claims a parent at x-1 even when x == 0
        return m


class BadIndex(HyperGrid):
    def state_index(self, states):
        return states.sum(-1)


class WrongMaskShape(HyperGrid):
    def forward_mask(self, states):
        return super().forward_mask(states)[:, :-1]


class SelfLoop(HyperGrid):
    def step(self, states, actions):
        out = super().step(states, actions)
        return torch.where((actions == 1).unsqueeze(1) & (states[:, :1] == 2), states, out)


BROKEN = [
    (BackwardWrongAxis, "backward_step does not invert step"),
    (InitialHasParents, "initial state .* has parents"),
    (MaskAllowsOffGrid, "not among enumerate_states.*leave the state space"),
    (NaNReward, "log_reward is nan"),
    (NeverExits, "allows no action at all|did not end within"),
    (BatchDependentMask, "differs? when computed alone vs in a batch"),
    (BackwardMaskTooPermissive, "parent returned by backward_step.*not among|backward walks did not reach"),
    (BadIndex, "state_index is not a bijection"),
    (WrongMaskShape, r"forward_mask must be a bool tensor of shape \(N, 3\)"),
    (SelfLoop, "self-loop"),
]


@pytest.mark.parametrize("cls,pattern", BROKEN, ids=[c.__name__ for c, _ in BROKEN])
def test_broken_env_is_flagged(cls, pattern):
    env = cls(2, 4)
    report = gfn.check_env(env, max_steps=50)
    assert not report.ok
    import re
    assert any(re.search(pattern, v) for v in report.violations), str(report)


def test_raise_on_failure():
    with pytest.raises(gfn.EnvError, match="backward_step does not invert step"):
        gfn.check_env(BackwardWrongAxis(2, 4), raise_on_failure=True)


# ---------------------------------------------------------------- batch bugs (issue 16, item 10)
class CountReward(gfn.Reward):
    """R(x) = 1 + number of ones."""

    def reward(self, states):
        return 1.0 + (states == 1).sum(-1).float()


class BitFlips(gfn.DiscreteEnv):
    """The README's environment: fill n bits left to right, exit when full (every trajectory has
    the same length, so every batch of the trajectory walk holds states of one length)."""

    state_dtype = torch.long

    def __init__(self, n=4):
        super().__init__(n_actions=3, n_backward_actions=2, reward=CountReward())
        self.n, self.state_shape = n, (n,)

    def initial_states(self, k):
        return torch.full((k, self.n), -1, dtype=torch.long)

    def step(self, states, actions):
        pos = (states >= 0).sum(-1, keepdim=True)
        return states.scatter(1, pos, actions.unsqueeze(1))

    def backward_step(self, states, actions):
        pos = (states >= 0).sum(-1, keepdim=True) - 1
        return states.scatter(1, pos, torch.full_like(pos, -1))

    def forward_mask(self, states):
        full = (states >= 0).all(-1, keepdim=True)
        return torch.cat([~full, ~full, full], dim=1)

    def backward_mask(self, states):
        n_set = (states >= 0).sum(-1)
        last = states.gather(1, (n_set - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return torch.stack([(n_set > 0) & (last == 0), (n_set > 0) & (last == 1)], dim=1)

    def featurize(self, states):
        return torch.nn.functional.one_hot(states + 1, 3).flatten(1).float()


class MaskFromFirstRow(BitFlips):
    """Bug: the whole batch gets the mask of its first state."""

    def forward_mask(self, states):
        full = (states[:1] >= 0).all(-1, keepdim=True).expand(states.shape[0], 1)
        return torch.cat([~full, ~full, full], dim=1)


class StepAtFirstRowPosition(BitFlips):
    """Bug: every state is written at the position of the first state of the batch."""

    def step(self, states, actions):
        pos = (states[:1] >= 0).sum(-1, keepdim=True).expand(states.shape[0], 1)
        return states.scatter(1, pos, actions.unsqueeze(1))


class RewardNormalisedOverBatch(BitFlips):
    """Bug: log R shifted by the batch's log-sum-exp (a 'normalisation' over the batch)."""

    def log_reward(self, states):
        lr = super().log_reward(states)
        return lr - torch.logsumexp(lr, 0) + 2.0


class FeaturesScaledByBatch(BitFlips):
    """Bug: features divided by the batch's number of written bits."""

    def featurize(self, states):
        return super().featurize(states) / (states >= 0).sum().clamp(min=1)


class FeatureWidthBug(BitFlips):
    """Bug: an extra 'unwritten' class makes featurize wider than feature_dim."""

    def featurize(self, states):
        return torch.nn.functional.one_hot(states + 1, 4).flatten(1).float()

    @property
    def feature_dim(self):
        return 3 * self.n


class FeatureDtypeBug(BitFlips):
    def featurize(self, states):
        return super().featurize(states).double()


BATCH_BUGS = [
    (MaskFromFirstRow, r"forward_mask of state .* differs when computed alone vs in a batch of distinct states"),
    (StepAtFirstRowPosition, r"step of state .* with action \d differs when computed alone vs in a batch"),
    (RewardNormalisedOverBatch, r"log_reward of state .* differs when computed alone vs in a batch"),
    (FeaturesScaledByBatch, r"featurize of state .* differs when computed alone vs in a batch"),
    (FeatureWidthBug, r"featurize returned shape \(\d+, 16\) .* built for \(N, feature_dim\) = \(\d+, 12\)"),
    (FeatureDtypeBug, r"featurize returned torch.float64, but the model's layers are torch.float32"),
]


def test_bitflips_from_the_readme_passes():
    report = gfn.check_env(BitFlips(4))
    assert report.ok, str(report)


@pytest.mark.parametrize("cls,pattern", BATCH_BUGS, ids=[c.__name__ for c, _ in BATCH_BUGS])
def test_batch_bugs_are_reported(cls, pattern):
    """Bugs invisible on copies of s_0 (and, with equal-length trajectories, to the walk itself)."""
    import re
    report = gfn.check_env(cls(4))
    assert any(re.search(pattern, v) for v in report.violations), str(report)


def test_order_dependent_method_is_caught_on_a_shuffled_batch():
    class SortedRewards(BitFlips):
        def log_reward(self, states):
            return super().log_reward(states).sort().values  # right values, wrong rows
    report = gfn.check_env(SortedRewards(4))
    assert any("log_reward of state" in v for v in report.violations), str(report)


def test_compared_states_are_distinct_and_not_only_initial():
    from gfn.check_batched import distinct_states
    env = BitFlips(4)
    s0 = env.initial_states(5)
    visited = torch.cat([s0, env.step(s0, torch.tensor([0, 1, 0, 1, 0])), env.from_strings(["01"]) if False else
                         torch.tensor([[0, 1, -1, -1], [0, 1, -1, -1], [1, 1, 0, 1]])])
    sub = distinct_states(env, visited, 16, torch.Generator().manual_seed(0))
    assert sub.shape[0] == 5                                         # s0, [0], [1], [0,1], [1,1,0,1]
    assert torch.unique(sub, dim=0).shape[0] == 5
    assert int(env.is_initial(sub).sum()) == 1 and bool(env.is_initial(sub[-1:]).all())  # s0 only once, last


# ---------------------------------------------------------------- training errors point to check-env
def _train_one_step(env, **kw):
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=16)
    gfn.Trainer(env, model, objective, gfn.TrainerConfig(batch_size=8), **kw).train(1)


def test_training_errors_from_the_environment_suggest_check_env():
    with pytest.raises(RuntimeError, match=r"mat1 and mat2[\s\S]*gfn check-env .*test_check_env:FeatureWidthBug"):
        _train_one_step(FeatureWidthBug(4))

    class StepCrashes(BitFlips):
        def step(self, states, actions):
            if (states >= 0).sum() > 3:
                raise IndexError("position out of range")
            return super().step(states, actions)
    with pytest.raises(IndexError, match=r"position out of range\n  hint: .*`gfn check-env .*StepCrashes`"):
        _train_one_step(StepCrashes(4))


def test_other_training_errors_get_no_check_env_hint():
    def broken_hook(trainer, batch):
        raise ValueError("hook failed")
    with pytest.raises(ValueError) as e:
        _train_one_step(BitFlips(4), batch_hooks=[broken_hook])
    assert str(e.value) == "hook failed"
