"""The fast paths give the same results as the plain ones: sampler packing, static sampler,
evaluate's P_B path, functional MLP forward, gradient clipping, fused Adam, torch.compile."""

import os
import sys

import pytest
import torch

import gfn
from gfn import metrics
from gfn.envs import HyperGrid
from gfn.estimators import MLP, DiscretePolicy, mlp
from gfn.objectives import get_objective
from gfn.static import StaticSampler, compile_model
from gfn.trainer import clip_grad_norm

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


def _check_batch(env, batch):
    """Every row follows the dynamics; exit only at the last row; P_B actions undo the step."""
    ptr = batch.ptr.tolist()
    assert ptr[0] == 0 and ptr[-1] == batch.n_rows
    for b in range(batch.batch_size):
        a, e = ptr[b], ptr[b + 1]
        assert torch.equal(batch.states[a], env.initial_states(1)[0])
        assert int(batch.actions[e - 1]) == env.exit_action
        if e - a > 1:
            assert not env.is_exit(batch.actions[a:e - 1]).any()
            torch.testing.assert_close(env.step(batch.states[a:e - 1], batch.actions[a:e - 1]), batch.states[a + 1:e])
            torch.testing.assert_close(env.backward_action(batch.states[a:e - 1], batch.actions[a:e - 1]),
                                       batch.bwd_actions[a + 1:e])
    torch.testing.assert_close(batch.log_rewards, env.log_reward(batch.terminal_states))


@pytest.mark.parametrize("kind", ["sampler", "static"])
def test_sampled_batches_follow_the_dynamics(kind):
    env = HyperGrid(ndim=2, height=4)
    model = gfn.build_gflownet(env, hidden=16)
    sampler = gfn.Sampler(env, model) if kind == "sampler" else StaticSampler(env, model, max_len=6)
    _check_batch(env, sampler.sample(64))


def test_static_and_compacting_samplers_draw_the_exact_distribution():
    torch.manual_seed(1)
    env = HyperGrid(ndim=2, height=3)
    model = gfn.build_gflownet(env, hidden=16)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)  # a policy far from uniform
    exact = metrics.exact_terminal_distribution(env, model).double()
    n = 20000
    for sampler in (gfn.Sampler(env, model), StaticSampler(env, model, max_len=4)):
        batch = sampler.sample(n)
        emp = metrics.empirical_distribution(env.state_index(batch.terminal_states), env.n_states).double()
        assert metrics.tv(emp, exact) < 0.02


def test_static_sampler_rejects_too_short_max_len():
    env = HyperGrid(ndim=2, height=8)
    model = gfn.build_gflownet(env, hidden=8)
    with torch.no_grad():
        model.pf.head.bias.copy_(torch.tensor([5.0, 5.0, -20.0]))  # almost never exits early
    with pytest.raises(gfn.EnvError, match="max_len"):
        StaticSampler(env, model, max_len=2).sample(8)
    with pytest.raises(ValueError, match="safe_action"):
        StaticSampler(env, model, max_len=2, safe_action=env.exit_action)


@pytest.mark.parametrize("mdp", ["append", "prepend_append", "fill"])
def test_static_sampler_on_sequences_whose_full_states_accept_no_move(mdp):
    """Frozen rows are stepped from s_0: append-only sequences (no move at a full state) work and
    give the same exact distribution as the compacting sampler."""
    torch.manual_seed(0)
    env = _bitseq(mdp)
    model = gfn.build_gflownet(env, hidden=16)
    for a in range(env.n_actions - 1):
        batch = StaticSampler(env, model, max_len=4, safe_action=a).sample(32)
        assert batch.ptr[-1] == batch.n_rows and bool((batch.lengths == 5).all())
        torch.testing.assert_close(batch.log_rewards, env.log_reward(batch.terminal_states))
    if env.is_enumerable:
        exact = metrics.exact_terminal_distribution(env, model).double()
        batch = StaticSampler(env, model, max_len=4).sample(8000)
        emp = metrics.empirical_distribution(env.state_index(batch.terminal_states), env.n_states).double()
        assert metrics.tv(emp, exact) < 0.06


def test_static_sampler_refuses_replay_and_a_safe_action_not_allowed_at_s0():
    env = HyperGrid(ndim=2, height=4)
    model = gfn.build_gflownet(env, hidden=8)
    obj = get_objective("tb")
    trainer = gfn.Trainer(env, model, obj, gfn.TrainerConfig(batch_size=4, replay_capacity=16, replay_fraction=0.5))
    trainer.sampler = StaticSampler(env, model, max_len=6)
    trainer.train(1)
    with pytest.raises(NotImplementedError, match="forward only"):
        trainer.train(1)

    class NoRightAtStart(HyperGrid):
        def forward_mask(self, states):
            m = super().forward_mask(states)
            m[:, 0] &= states.sum(1) > 0
            return m
    env2 = NoRightAtStart(ndim=2, height=4)
    with pytest.raises(ValueError, match="not allowed at s_0.*allowed non-exit actions there: \\[1\\]"):
        StaticSampler(env2, gfn.build_gflownet(env2, hidden=8), max_len=6)


class _PlainPolicy(DiscretePolicy):
    """A subclass: GFlowNet.evaluate takes its generic (gather / scatter) P_B path."""


def _bitseq(mdp):
    from gfn.envs import BitSequence
    return BitSequence(word_size=1, seq_len=4, n_modes=2, mdp=mdp)


def test_transitions_are_actions_only_where_no_two_actions_reach_one_state():
    assert HyperGrid(ndim=2, height=3).transitions_are_actions
    assert _bitseq("fill").transitions_are_actions and _bitseq("append").transitions_are_actions
    assert not _bitseq("prepend_append").transitions_are_actions  # append c == prepend c at c^k


@pytest.mark.parametrize("make_env", [lambda: HyperGrid(ndim=3, height=5), lambda: _bitseq("fill"),
                                      lambda: _bitseq("append")], ids=["hypergrid", "fill", "append"])
def test_evaluate_fast_pb_path_matches_generic_path(make_env):
    env = make_env()
    assert env.transitions_are_actions
    fast = gfn.build_gflownet(env, hidden=32)
    slow = gfn.build_gflownet(env, hidden=32)
    slow.load_state_dict(fast.state_dict())
    slow.pb = _PlainPolicy(env, slow.pb.head, backward=True)
    batch = gfn.Sampler(env, fast).sample(40)
    s1, s2 = fast.evaluate(batch), slow.evaluate(batch)
    torch.testing.assert_close(s1.log_pb, s2.log_pb)
    torch.testing.assert_close(s1.log_pf, s2.log_pf)
    assert (s1.log_pb[batch.first_rows] == 0).all()
    (s1.log_pb.sum() + s1.log_pf.sum()).backward()
    (s2.log_pb.sum() + s2.log_pf.sum()).backward()
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
            assert torch.isfinite(p.grad).all()


def test_functional_mlp_matches_sequential_and_keeps_hooks():
    m = mlp(6, 3, hidden=16, n_layers=2)
    assert isinstance(m, MLP) and isinstance(m, torch.nn.Sequential)
    x = torch.randn(5, 6)
    torch.testing.assert_close(m(x), torch.nn.Sequential(*m)(x))
    seen = []
    handle = m[0].register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    m(x)
    handle.remove()
    assert seen == [torch.Size([5, 16])]
    assert list(m.state_dict()) == list(torch.nn.Sequential(*m).state_dict())


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn_like(p) * 5
        q.grad = p.grad.clone()
    n1 = clip_grad_norm(a, 1.0)
    n2 = torch.nn.utils.clip_grad_norm_(b, 1.0)
    torch.testing.assert_close(n1, n2)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)


def _trainer(seed, **kw):
    gfn.seed_everything(seed)
    env = HyperGrid(ndim=2, height=5)
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=32)
    return gfn.Trainer(env, model, objective, gfn.TrainerConfig(batch_size=8, grad_clip=1.0), **kw)


def test_same_seed_same_run_and_fused_adam_matches_plain_adam():
    t1 = _trainer(0)  # the global RNG drives sampling: build and run one trainer at a time
    assert t1.optimizer.defaults.get("fused")
    l1 = [t1.train_step().loss for _ in range(5)]
    t2 = _trainer(0)
    l2 = [t2.train_step().loss for _ in range(5)]
    assert l1 == l2
    t3 = _trainer(0)
    t3.optimizer = torch.optim.Adam(t3.optimizer.param_groups)  # the unfused implementation
    l3 = [t3.train_step().loss for _ in range(5)]
    torch.testing.assert_close(torch.tensor(l1), torch.tensor(l3), rtol=1e-4, atol=1e-5)


def test_static_sampler_and_compiled_model_train():
    t = _trainer(0)
    t.sampler = StaticSampler(t.env, t.model, max_len=2 * 4)
    losses = [t.train_step().loss for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    t = _trainer(0)
    ref = [t.train_step().loss for _ in range(2)]
    t = _trainer(0)
    compile_model(t.model, backend="eager")
    got = [t.train_step().loss for _ in range(2)]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref))


def test_speed_benchmark_cli_prints_a_record():
    import speed
    (rec,) = speed.main(["--env", "hypergrid", "--ndim", "2", "--height", "4", "--batch-size", "4",
                         "--iterations", "3", "--warmup", "1"])
    assert rec["ms_per_iter"] > 0 and rec["n_params"] > 0
    assert set(rec["phases_ms"]) == {"sample", "loss", "backward", "optimizer"}
