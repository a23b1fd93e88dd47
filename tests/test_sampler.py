"""Sampler and packed-trajectory invariants."""

import torch

import gfn
from gfn import metrics
from gfn.envs import HyperGrid
from gfn.objectives import get_objective
from gfn.sampler import Exploration


def assert_consistent(env, batch):
    """Rows follow the dynamics: step(s_k, a_k) = s_{k+1}; backward_step(s_{k+1}, b_{k+1}) = s_k."""
    last = batch.is_last
    assert (batch.actions[last] == env.exit_action).all()
    assert (batch.actions[~last] != env.exit_action).all()
    inner = (~last).nonzero().squeeze(1)
    nxt = inner + 1
    torch.testing.assert_close(env.step(batch.states[inner], batch.actions[inner]), batch.states[nxt])
    torch.testing.assert_close(env.backward_step(batch.states[nxt], batch.bwd_actions[nxt]), batch.states[inner])
    assert env.is_initial(batch.initial_states).all()
    assert int(batch.lengths.sum()) == batch.n_rows


def test_forward_batch_layout():
    env = HyperGrid(3, 5)
    model = gfn.build_gflownet(env, hidden=32)
    batch = gfn.Sampler(env, model).sample(64)
    assert batch.batch_size == 64
    assert_consistent(env, batch)
    torch.testing.assert_close(batch.log_rewards, env.log_reward(batch.terminal_states))
    assert not batch.states.is_inference()  # usable by autograd afterwards


def test_backward_sampling_reaches_given_terminals():
    env = HyperGrid(2, 6)
    model = gfn.build_gflownet(env, hidden=32)
    terminals = torch.tensor([[5, 5], [0, 0], [3, 1], [0, 4]])
    batch = gfn.Sampler(env, model).sample_backward(terminals)
    assert_consistent(env, batch)
    torch.testing.assert_close(batch.terminal_states, terminals)
    assert batch.lengths.tolist() == [11, 1, 5, 5]


def test_backward_sampling_distribution_matches_pb():
    """On a 2x2 grid, the two paths to (1,1) are chosen with P_B's probabilities."""
    env = HyperGrid(2, 2)
    model = gfn.build_gflownet(env, hidden=8)
    x = torch.tensor([[1, 1]]).expand(20000, 2)
    batch = gfn.Sampler(env, model).sample_backward(x)
    # the row before x holds (1,0) or (0,1)
    prev = batch.states[batch.last_rows - 1]
    frac = float((prev[:, 0] == 1).float().mean())
    with torch.no_grad():
        p = model.pb_dist(torch.tensor([[1, 1]])).log_probs.exp()[0]
    # backward action 1 decrements y, leading to (1, 0)
    assert abs(frac - float(p[1])) < 0.015


def test_sampled_distribution_matches_exact():
    env = HyperGrid(2, 4)
    model = gfn.build_gflownet(env, hidden=16)
    batch = gfn.Sampler(env, model).sample(30000)
    emp = metrics.empirical_distribution(env.state_index(batch.terminal_states), env.n_states)
    assert metrics.tv(emp, metrics.exact_terminal_distribution(env, model)) < 0.02


def test_kept_log_probs_equal_recomputed_and_give_same_gradients():
    env = HyperGrid(2, 5)
    model = gfn.build_gflownet(env, hidden=16)
    torch.manual_seed(5)
    kept = gfn.Sampler(env, model).sample(16, keep_log_probs=True)
    assert kept.log_pf.requires_grad
    recomputed = kept.with_(log_pf=None)
    s1 = model.evaluate(kept)
    s2 = model.evaluate(recomputed)
    torch.testing.assert_close(s1.log_pf, s2.log_pf)
    tb = get_objective("tb")
    g1 = torch.autograd.grad(tb.loss(model, kept), list(model.trunk.parameters()))
    g2 = torch.autograd.grad(tb.loss(model, recomputed), list(model.trunk.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_exploration_changes_actions_not_log_probs():
    env = HyperGrid(2, 8)
    model = gfn.build_gflownet(env, hidden=16)
    s = gfn.Sampler(env, model)
    explored = s.sample(2000, exploration=Exploration(temperature=2.0, epsilon=0.5))
    plain = s.sample(2000)
    # exploration (eps-uniform) makes trajectories shorter on average here (exit is one of 3 actions)
    assert explored.n_rows != plain.n_rows
    # log-probs used for training are those of the unexplored policy
    with torch.no_grad():
        lp = model.evaluate(explored).log_pf
        direct = model.pf_dist(explored.states).log_probs.gather(1, explored.actions[:, None])[:, 0]
    torch.testing.assert_close(lp, direct)


def test_gumbel_sampling_frequencies():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).expand(40000, 4)
    mask = torch.tensor([[True, True, True, False]]).expand(40000, 4)
    d = gfn.MaskedCategorical(logits, mask)
    a = d.sample(generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(a, minlength=4).double() / a.numel()
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).double()
    assert freq[3] == 0
    assert (freq[:3] - expected).abs().max() < 0.01
    # temperature 2 flattens, epsilon=1 gives uniform over allowed actions
    u = d.sample(epsilon=1.0, generator=torch.Generator().manual_seed(1))
    fu = torch.bincount(u, minlength=4).double() / u.numel()
    assert (fu[:3] - 1 / 3).abs().max() < 0.01 and fu[3] == 0


def test_trajectory_batch_select_and_cat():
    env = HyperGrid(2, 5)
    model = gfn.build_gflownet(env, hidden=16)
    b = gfn.Sampler(env, model).sample(10)
    idx = torch.tensor([7, 2, 2, 0])
    sub = b.select(idx)
    assert sub.lengths.tolist() == b.lengths[idx].tolist()
    assert_consistent(env, sub)
    both = type(b).cat([b, sub])
    assert both.batch_size == 14
    assert_consistent(env, both)
    torch.testing.assert_close(both.terminal_states[10:], b.terminal_states[idx])


def test_replay_trainer_runs_and_buffer_evicts(count_reward_calls):
    env = HyperGrid(2, 4)
    gfn.seed_everything(0)
    obj = get_objective("tb")
    model = gfn.build_gflownet(env, hidden=16)
    tr = gfn.Trainer(env, model, obj, gfn.TrainerConfig(batch_size=8, replay_capacity=20))
    calls = count_reward_calls(env)
    tr.train(10)
    assert len(tr.replay) == 20
    # replayed objects reuse their stored rewards: only the 4 fresh samples of each full step are scored
    assert sum(calls) == 8 + 9 * 4
    buf = gfn.ReplayBuffer(3, prioritized=True)
    buf.add(torch.arange(5).reshape(5, 1), torch.tensor([0.0, 5.0, 1.0, 4.0, 3.0]))
    assert sorted(buf.log_rewards.tolist()) == [3.0, 4.0, 5.0]


def test_reward_prioritized_replay_is_a_trainer_option():
    """Half of each replayed batch comes from the top 10% by reward; duplicates are stored once."""
    env = HyperGrid(2, 8)
    gfn.seed_everything(0)
    model = gfn.build_gflownet(env, hidden=16)
    tr = gfn.Trainer(env, model, get_objective("tb"),
                     gfn.TrainerConfig(batch_size=8, replay_capacity=30, replay_policy="prioritized"))
    assert isinstance(tr.replay, gfn.RewardPrioritizedReplay)
    tr.train(10)
    assert len(tr.replay) <= 30
    assert torch.unique(tr.replay.states, dim=0).shape[0] == len(tr.replay)
    buf = gfn.make_replay("prioritized", 100)
    states = torch.arange(100).reshape(100, 1)
    buf.add(states, torch.arange(100).double())
    buf.add(states[:5], torch.zeros(5, dtype=torch.float64))  # duplicates are ignored
    assert len(buf) == 100
    s, lr = buf.sample(4000, generator=torch.Generator().manual_seed(0))
    top = (lr >= 90).double().mean()
    assert abs(float(top) - 0.5) < 0.03
    import pytest
    with pytest.raises(ValueError, match="unknown replay policy"):
        gfn.make_replay("lifo", 10)
