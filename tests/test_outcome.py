"""Outcome-conditioned GFlowNets: indicator reward, reaching the outcome, the marginal vs brute force."""

import itertools
import math

import pytest
import torch

from gfn.envs.sequences.base import SequenceEnv
from gfn.outcome import (OutcomePolicy, log_flow, marginal_log_probs, outcome_log_reward, outcome_reward,
                         pretrain_step, success_log_prob)


def tiny_env():
    return SequenceEnv(2, 4, mdp="append")


def all_objects(env):
    return torch.tensor(list(itertools.product(range(env.vocab_size), repeat=env.max_len)))


def test_outcome_reward_is_indicator():
    env = tiny_env()
    xs = all_objects(env)
    x = xs.repeat_interleave(len(xs), 0)
    y = xs.repeat(len(xs), 1)
    r = outcome_reward(x, y)
    expect = torch.eye(len(xs)).flatten()
    assert torch.equal(r, expect)
    lr = outcome_log_reward(x, y)
    assert torch.equal(lr[expect == 1], torch.zeros(len(xs)))
    assert torch.isneginf(lr[expect == 0]).all()
    with pytest.raises(ValueError):
        outcome_reward(xs[:, :3], xs)


def test_non_tree_env_refused():
    from gfn.env import EnvError
    with pytest.raises(EnvError):
        OutcomePolicy(SequenceEnv(2, 4, mdp="prepend_append"))
    with pytest.raises(EnvError):
        OutcomePolicy(SequenceEnv(2, 4, min_len=2, mdp="append"))


def test_pretrained_policy_reaches_its_outcome():
    torch.manual_seed(0)
    env = tiny_env()
    policy = OutcomePolicy(env, hidden=64)
    ys = all_objects(env)
    before = success_log_prob(env, policy, ys).exp()
    assert before.mean() < 0.2                       # untrained: about 1/16
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        pretrain_step(env, policy, opt, 64, epsilon=0.1, generator=g)
    with torch.no_grad():
        after = success_log_prob(env, policy, ys).exp()
    assert after.min() > 0.9, after
    # the exact terminal distribution given y sums to 1 and puts its mass on y
    with torch.no_grad():
        x = ys.repeat_interleave(len(ys), 0)
        y = ys.repeat(len(ys), 1)
        from gfn.outcome import _prefix_path, trajectory_log_pf
        st, ac = _prefix_path(env, x)
        p = trajectory_log_pf(policy, st, ac, y).exp().view(len(ys), len(ys))  # [x, y]
    assert torch.allclose(p.sum(0), torch.ones(len(ys)), atol=1e-5)


def brute_force(env, policy, states, outcomes, log_r):
    """Float64 loops: P^T(a|s) = sum_y R F(s|y) P_F(a|s,y) / sum_y R F(s|y), one (s, y) at a time."""
    probs, margs = [], []
    for s in states:
        num = torch.zeros(env.n_actions, dtype=torch.float64)
        den = torch.zeros((), dtype=torch.float64)
        for y, lr in zip(outcomes, log_r):
            f = policy.log_partition(y[None])[0].exp()
            cur = env.initial_states(1)
            for t in range(int(env.lengths(s[None])[0])):
                f = f * policy(cur, y[None])[0, s[t]].exp()
                cur = env.step(cur, s[t:t + 1])
            pf = policy(s[None], y[None])[0].exp()
            num += lr.exp() * f * pf
            den += lr.exp() * f
        probs.append(num / den)
        margs.append(den.log())
    return torch.stack(probs), torch.stack(margs)


def test_marginal_matches_brute_force_float64():
    torch.manual_seed(1)
    env = tiny_env()
    policy = OutcomePolicy(env, hidden=16).double()
    ys = all_objects(env)
    log_r = torch.randn(len(ys), dtype=torch.float64)
    states = torch.tensor([[-1, -1, -1, -1], [1, -1, -1, -1], [0, 1, -1, -1], [1, 1, 0, -1], [0, 1, 1, 0]])
    with torch.no_grad():
        lp, lm = marginal_log_probs(env, policy, states, ys, log_r)
        ref_p, ref_m = brute_force(env, policy, states, ys, log_r)
        got = lp.exp().nan_to_num(0.0)
    assert torch.allclose(got, ref_p, atol=1e-12, rtol=1e-10)
    assert torch.allclose(lm, ref_m, atol=1e-12)
    # importance sampling with an explicit uniform proposal over the whole space is the same sum
    with torch.no_grad():
        lp2, lm2 = marginal_log_probs(env, policy, states, ys, log_r,
                                      log_q=torch.full((len(ys),), -math.log(len(ys)), dtype=torch.float64))
    assert torch.allclose(lm2, ref_m, atol=1e-12)
    # log F(s | y) at a complete object is log Z(y) + log P(x | y)
    with torch.no_grad():
        assert torch.allclose(log_flow(env, policy, ys, ys),
                              policy.log_partition(ys) + success_log_prob(env, policy, ys), atol=1e-12)
    with pytest.raises(ValueError):
        marginal_log_probs(env, policy, states, ys, log_r[:3])


def test_marginal_policy_with_one_hot_predictor_is_the_outcome_policy():
    """With a one-hot outcome predictor the amortised policy equals P_F(. | s, y); gradients reach only q."""
    from gfn.outcome import MarginalPolicy
    torch.manual_seed(2)
    env = tiny_env()
    oc = OutcomePolicy(env, hidden=16).double()
    mp = MarginalPolicy(oc, hidden=8).double()
    states = torch.tensor([[-1, -1, -1, -1], [1, 0, -1, -1], [0, 1, 1, 0]])
    # uniform start: q = 1/V everywhere
    assert torch.allclose(mp.outcome_probs(states), torch.full((3, 4, 2), 0.5, dtype=torch.float64))
    y = torch.tensor([1, 0, 1, 1])
    with torch.no_grad():
        mp.predictor[-1].bias.copy_((torch.nn.functional.one_hot(y, 2).double() * 80 - 40).flatten())
        assert torch.allclose(mp(states), oc(states, y.expand(3, -1)), atol=1e-12)
    mp(states)[:, :-1].logsumexp(-1)[0].backward()
    assert all(p.grad is None for p in oc.parameters())
    assert mp.predictor[0].weight.grad is not None


def test_example_runs_and_reports_exact_metrics():
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "examples" / "train_outcome.py"
    out = subprocess.run([sys.executable, str(script), "--seq-len", "4", "--pretrain-iters", "20", "--iterations", "10",
                          "--batch-size", "16"], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert out.returncode == 0, out.stderr
    assert "exact mean P(x=y|y)" in out.stdout and "tv_exact" in out.stdout


def test_mixture_amortisation_matches_float64_loop():
    """``mixture``: sum_v q(y_t=v|s) P_F(a|s, y^(v)), y^(v) = prefix of s, v at t, argmax q after t."""
    from gfn.outcome import MarginalPolicy
    torch.manual_seed(3)
    env = SequenceEnv(3, 4, mdp="append")
    oc = OutcomePolicy(env, hidden=16).double()
    mp = MarginalPolicy(oc, hidden=8).double()
    with torch.no_grad():
        mp.predictor[-1].bias.normal_()
        mp.predictor[-1].weight.normal_(std=0.3)
    states = torch.tensor([[-1, -1, -1, -1], [2, -1, -1, -1], [0, 1, -1, -1], [1, 1, 0, -1]])
    with torch.no_grad():
        got = mp(states).exp()
        q = mp.outcome_probs(states)
        for i, s in enumerate(states):
            t = int((s >= 0).sum())
            ref = torch.zeros(env.n_actions, dtype=torch.float64)
            for v in range(env.vocab_size):
                y = [int(s[j]) if j < t else (v if j == t else int(q[i, j].argmax())) for j in range(4)]
                ref += q[i, t, v] * oc(s[None], torch.tensor([y]))[0].exp()
            assert torch.allclose(got[i], ref, atol=1e-12)
    with pytest.raises(ValueError):
        MarginalPolicy(oc, amortisation="exact")


def test_uniform_predictor_gives_near_uniform_policy_after_pretraining():
    """A pre-trained OC-GFN under a uniform predictor samples every next token about equally often."""
    from gfn.outcome import MarginalPolicy
    torch.manual_seed(0)
    env = SequenceEnv(4, 3, mdp="append")
    oc = OutcomePolicy(env, hidden=64)
    opt = torch.optim.Adam(oc.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        pretrain_step(env, oc, opt, 64, epsilon=0.1, generator=g)
    states = torch.tensor([[-1, -1, -1], [2, -1, -1], [0, 3, -1]])
    with torch.no_grad():
        p = MarginalPolicy(oc, hidden=8)(states).exp()[:, :4]
    assert (p - 0.25).abs().max() < 0.05, p
