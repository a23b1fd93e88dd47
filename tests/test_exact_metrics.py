"""Exact terminal distribution vs brute-force trajectory enumeration; metric formulas."""

import math

import torch

import gfn
from gfn import metrics
from gfn.envs import HyperGrid


def brute_force_terminal_distribution(env, model):
    """Enumerate every trajectory by depth-first search and add up its probability."""
    probs = torch.zeros(env.n_states, dtype=torch.float64)

    def visit(state, p):
        st = state.unsqueeze(0)
        lp = model.pf_dist(st).log_probs.double()[0]
        mask = env.forward_mask(st)[0]
        for a in range(env.n_actions):
            if not mask[a]:
                continue
            pa = p * math.exp(float(lp[a]))
            if a == env.exit_action:
                probs[int(env.state_index(st))] += pa
            else:
                visit(env.step(st, torch.tensor([a]))[0], pa)

    with torch.no_grad():
        visit(env.initial_states(1)[0], 1.0)
    return probs


def test_exact_distribution_equals_brute_force_3x3():
    env = HyperGrid(2, 3)
    torch.manual_seed(3)
    model = gfn.build_gflownet(env, hidden=32)
    with torch.no_grad():  # make the policy far from uniform
        for p in model.parameters():
            p.mul_(4.0)
    exact = metrics.exact_terminal_distribution(env, model)
    brute = brute_force_terminal_distribution(env, model)
    # float32 policy outputs: batched vs one-state evaluation round differently (~1e-7)
    torch.testing.assert_close(exact, brute, rtol=1e-5, atol=1e-7)
    assert abs(float(exact.sum()) - 1.0) < 1e-9


def test_exact_distribution_matches_sampling_3d():
    """The push-forward agrees with Monte-Carlo sampling of the same policy."""
    env = HyperGrid(3, 3)
    model = gfn.build_gflownet(env, hidden=16)
    exact = metrics.exact_terminal_distribution(env, model)
    batch = gfn.Sampler(env, model).sample(40000)
    emp = metrics.empirical_distribution(env.state_index(batch.terminal_states), env.n_states)
    assert metrics.tv(exact, emp) < 0.03


def test_target_and_log_partition():
    env = HyperGrid(2, 8)
    states = env.enumerate_states()
    r = env.log_reward(states).double().exp()
    torch.testing.assert_close(metrics.target_distribution(env), r / r.sum())
    assert abs(metrics.log_partition(env) - math.log(float(r.sum()))) < 1e-9
    assert int(env.mode_mask().sum()) == 4


def test_divergences():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert abs(metrics.tv(p, q) - 0.5) < 1e-12
    assert abs(metrics.kl(p, q) - math.log(2)) < 1e-12
    assert metrics.kl(q, p) == float("inf")
    m = (p + q) / 2
    expected = 0.5 * (0.5 * math.log(0.5 / 0.375) * 2) + 0.5 * (0.25 * math.log(0.25 / 0.375) * 2 + 0.5 * math.log(2))
    assert abs(metrics.jsd(p, q) - expected) < 1e-12
    assert metrics.jsd(p, p) == 0.0 and metrics.tv(p, p) == 0.0
    assert metrics.jsd(torch.tensor([1.0, 0]), torch.tensor([0, 1.0])) == math.log(2)
    del m


def test_modes_found_and_spearman():
    mask = torch.tensor([True, False, True, False])
    assert metrics.modes_found(torch.tensor([0, 0, 1, 3]), mask) == 1
    assert metrics.modes_found(torch.tensor([2, 0]), mask) == 2
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert abs(metrics.spearman(x, x * 10) - 1) < 1e-12
    assert abs(metrics.spearman(x, -x) + 1) < 1e-12


def test_differentiable_terminal_distribution_has_exact_gradients():
    """Gradients through the push-forward match finite differences (float64, tabular policy)."""
    from gfn.distributions import MaskedCategorical
    env = HyperGrid(2, 3)
    states = env.enumerate_states()

    class Table:
        def __init__(self, t):
            self.t = t

        def pf_dist(self, s, cond=None):
            return MaskedCategorical(self.t[env.state_index(s)], env.forward_mask(s))

    torch.manual_seed(0)
    table = torch.randn(len(states), env.n_actions, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(len(states), dtype=torch.float64)

    def f(t):
        return (metrics.differentiable_terminal_distribution(env, Table(t)) * weights).sum()

    assert torch.autograd.gradcheck(f, (table,))
    p = metrics.differentiable_terminal_distribution(env, Table(table))
    assert p.requires_grad and abs(float(p.sum().detach()) - 1.0) < 1e-12
    assert not metrics.exact_terminal_distribution(env, Table(table)).requires_grad
