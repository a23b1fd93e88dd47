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


class WalledGrid(HyperGrid):
    """A 4x4 grid whose last column is walled off: nothing moves into x = 3, yet
    ``enumerate_states`` (inherited) still lists those cells.  ``dead_end``: the walled cells
    allow no action at all (their log-softmax is NaN); otherwise they allow exit only."""

    def __init__(self, dead_end: bool):
        super().__init__(2, 4)
        self.dead_end = dead_end

    def forward_mask(self, states):
        m = super().forward_mask(states).clone()
        m[:, 0] &= states[:, 0] < 2
        walled = states[:, 0] == 3
        m[walled] = False
        if not self.dead_end:
            m[walled, self.exit_action] = True
        return m


def _trained_like(env):
    torch.manual_seed(1)
    model = gfn.build_gflownet(env, hidden=16)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def test_exact_metrics_leave_out_states_unreachable_from_s0():
    import pytest
    for dead_end in (True, False):
        env = WalledGrid(dead_end)
        model = _trained_like(env)
        reach = metrics.reachable_mask(env, warn=False)
        states = env.enumerate_states()
        assert reach.tolist() == (states[:, 0] < 3).tolist()
        with pytest.warns(UserWarning, match="lists 4 of 16 states that no trajectory from s_0 reaches"):
            m = metrics.exact_metrics(env, model)
        assert all(math.isfinite(v) for v in m.values()), m  # NaN on the old code (0 * NaN at the walls)
        p = metrics.exact_terminal_distribution(env, model, reachable=reach)
        torch.testing.assert_close(p, brute_force_terminal_distribution(env, model), rtol=1e-5, atol=1e-7)
        # the target and log Z are over the reachable objects only (brute force, float64)
        log_r = env.log_reward(states).double()
        log_z = float(torch.logsumexp(log_r[reach], 0))
        assert abs(m["log_z_true"] - log_z) < 1e-12
        q = metrics.target_distribution(env, reachable=reach)
        assert float(q[~reach].abs().sum()) == 0.0
        torch.testing.assert_close(q[reach], (log_r[reach] - log_z).exp())
        assert abs(m["tv_exact"] - 0.5 * float((p - q).abs().sum())) < 1e-12


def test_check_env_reports_unreachable_enumerated_states():
    report = gfn.check_env(WalledGrid(dead_end=False))
    assert any("4 of 16 states that no trajectory from s_0 reaches, e.g. [3, 0]" in v for v in report.violations), report
    assert gfn.check_env(HyperGrid(2, 4)).ok


def test_non_finite_metrics_are_logged_and_warned_not_dropped(tmp_path):
    import json

    import pytest

    from gfn.run_logging import RunLogger
    log = RunLogger(str(tmp_path))
    with pytest.warns(RuntimeWarning, match="eval/tv_exact is nan at step 5"):
        log.scalars({"tv_exact": float("nan"), "log_z": 1.5}, 5, prefix="eval/")
    log.scalars({"tv_exact": float("inf")}, 6, prefix="eval/")  # warned once per name
    log.close()
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert sum(line.startswith("warning: eval/tv_exact is nan") for line in lines) == 1
    rows = [json.loads(line.split(" ", 2)[2]) for line in lines if " step=" in line]
    assert rows == [{"tv_exact": "nan", "log_z": 1.5}, {"tv_exact": "inf"}]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(tmp_path))
    ea.Reload()
    vals = [e.value for e in ea.Scalars("eval/tv_exact")]
    assert math.isnan(vals[0]) and vals[1] == float("inf")
