"""Diffusion samplers (issue #19, part A): kernels against closed forms, path log-ratios against a
float64 hand-written reference, objectives against brute force, seeds, error paths, and a short
training run that must reduce delta log Z."""

from __future__ import annotations

import math

import pytest
import torch

from gfn.envs.diffusion import (DiffusionConfig, DiffusionEnv, DiffusionPolicy, DiffusionTrainer, EnergyTarget,
                                build, make_target, rollout, score_path)
from gfn.objectives import diffusion as obj


def _gauss_target(mu=1.5, std=0.7, dim=1):
    def energy(x):
        return (0.5 * ((x - mu) / std) ** 2).sum(-1) + dim * (math.log(std) + 0.5 * math.log(2 * math.pi))

    def sampler(n, generator=None):
        return mu + std * torch.randn(n, dim, generator=generator)

    return EnergyTarget(energy, dim, log_z=0.0, sampler=sampler, name="gauss")


def _env(T=5, d=2, sigma=1.3, target=None):
    target = target or _gauss_target(dim=d)
    return DiffusionEnv(target.log_reward, d, T, sigma, log_z=target.log_z, target=target)


def _norm_lp(x, m, v):
    v = torch.as_tensor(v, dtype=torch.float64)
    return -0.5 * (x - m) ** 2 / v - 0.5 * torch.log(2 * math.pi * v)


def test_bridge_log_pb_matches_closed_form_float64():
    T, d, sigma = 6, 3, 1.7
    env = _env(T, d, sigma)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(4, T + 1, d, generator=g, dtype=torch.float64)
    xs[:, 0] = 0
    lp = env.log_pb_steps(xs)
    ref = torch.zeros(4, T, dtype=torch.float64)
    for i in range(1, T):
        ti, tn = i / T, (i + 1) / T
        ref[:, i] = _norm_lp(xs[:, i], xs[:, i + 1] * ti / tn, sigma ** 2 * (1 / T) * ti / tn).sum(-1)
    assert lp.dtype == torch.float64
    torch.testing.assert_close(lp, ref, rtol=1e-12, atol=1e-12)


def test_backward_samples_have_bridge_marginals():
    T, sigma = 8, 1.3
    env = _env(T, 1, sigma)
    xT = torch.full((40000, 1), 2.0, dtype=torch.float64)
    xs = env.sample_backward(xT, torch.Generator().manual_seed(1))
    assert xs.shape == (40000, T + 1, 1) and bool((xs[:, 0] == 0).all()) and bool((xs[:, -1] == 2).all())
    t = torch.arange(T + 1, dtype=torch.float64) / T
    mean, var = xs[..., 0].mean(0), xs[..., 0].var(0)
    torch.testing.assert_close(mean, 2.0 * t, atol=0.03, rtol=0)
    torch.testing.assert_close(var, sigma ** 2 * t * (1 - t), atol=0.03, rtol=0)


def test_zero_drift_path_ratio_is_gaussian_terminal_density():
    """f = 0, g = 1: log P_F(tau) - log P_B(tau | x) = log N(x_T; 0, sigma^2 I) exactly."""
    T, d, sigma = 7, 2, 2.2
    env = _env(T, d, sigma)
    torch.manual_seed(0)
    pol = DiffusionPolicy(d, T, hidden=8, harmonics=4).double()  # zero-initialised last layer
    out = rollout(env, pol, 64, torch.Generator().manual_seed(2))
    ratio = out["log_pf"].sum(-1) - out["log_pb"].sum(-1)
    xT = out["xs"][:, -1]
    torch.testing.assert_close(ratio, _norm_lp(xT, 0.0, sigma ** 2).sum(-1), rtol=1e-10, atol=1e-10)


def test_path_log_ratio_matches_float64_reference_with_learned_variance():
    T, d, sigma = 5, 2, 1.1
    env = _env(T, d, sigma)
    torch.manual_seed(3)
    pol = DiffusionPolicy(d, T, hidden=8, harmonics=4, learn_variance=True).double()
    for p in pol.joint[-1].parameters():
        torch.nn.init.normal_(p, std=0.5)
    out = rollout(env, pol, 16, torch.Generator().manual_seed(4))
    xs = out["xs"]
    emb = pol.time_embeddings()
    ref_pf = torch.zeros(16, T, dtype=torch.float64)
    for i in range(T):  # hand-written: one step at a time, explicit Gaussian formula
        h = pol.joint(pol.s_model(xs[:, i]) + emb["t"][i])
        f, lv = h[:, :d], torch.tanh(h[:, d:]) * 4.0
        var = sigma ** 2 * (1 / T) * torch.exp(lv)
        ref_pf[:, i] = _norm_lp(xs[:, i + 1], xs[:, i] + f / T, var).sum(-1)
    lpf, lpb = score_path(env, pol, xs, emb)
    torch.testing.assert_close(out["log_pf"], ref_pf.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lpf.detach(), ref_pf.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lpb, out["log_pb"], rtol=1e-12, atol=1e-12)


def test_exploration_changes_samples_not_the_scored_policy():
    env = _env(6, 2, 1.0)
    torch.manual_seed(0)
    pol = DiffusionPolicy(2, 6, hidden=8, harmonics=4).double()
    a = rollout(env, pol, 2000, torch.Generator().manual_seed(5), exploration=0.0)
    b = rollout(env, pol, 2000, torch.Generator().manual_seed(5), exploration=1.0)
    assert b["xs"][:, -1].var() > a["xs"][:, -1].var() * 1.5
    lpf, _ = score_path(env, pol, b["xs"])
    torch.testing.assert_close(b["log_pf"], lpf.detach(), rtol=1e-10, atol=1e-10)


def test_langevin_drift_uses_clipped_score():
    env = _env(4, 2, 1.0)
    torch.manual_seed(0)
    pol = DiffusionPolicy(2, 4, hidden=8, harmonics=4, langevin=True, lgv_clip=0.5).double()
    torch.nn.init.constant_(pol.lgv_model[-1].bias, 2.0)
    x = torch.randn(5, 2, dtype=torch.float64) * 3
    emb = pol.time_embeddings()
    g = env.grad_log_reward(x)
    f, _ = pol.drift(x, 1, emb, g)
    torch.testing.assert_close(f, 2.0 * g.clamp(-0.5, 0.5), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="grad log R"):
        pol.drift(x, 1, emb, None)


def test_subtb_and_db_match_brute_force():
    g = torch.Generator().manual_seed(7)
    B, T = 3, 5
    lpf, lpb = torch.randn(B, T, generator=g, dtype=torch.float64), torch.randn(B, T, generator=g, dtype=torch.float64)
    lf = torch.randn(B, T + 1, generator=g, dtype=torch.float64)
    lam = 2.0
    coef = obj.subtb_coefficients(T, lam, torch.float64)
    num, den = torch.zeros(B, dtype=torch.float64), 0.0
    for i in range(T + 1):
        for j in range(i + 1, T + 1):
            w = lam ** (j - i)
            den += w
            num += w * (lf[:, i] + (lpf[:, i:j] - lpb[:, i:j]).sum(-1) - lf[:, j]) ** 2
    torch.testing.assert_close(obj.subtb_loss(lpf, lpb, lf, coef), (num / den).mean())
    db = sum(0.5 * (lf[:, i] + lpf[:, i] - lf[:, i + 1] - lpb[:, i]) ** 2 for i in range(T)).mean()
    torch.testing.assert_close(obj.db_loss(lpf, lpb, lf), db)
    lr = torch.randn(B, generator=g, dtype=torch.float64)
    r = lpf.sum(-1) - lpb.sum(-1) - lr
    torch.testing.assert_close(obj.tb_loss(lpf, lpb, lr, 0.3), (0.5 * (0.3 + r) ** 2).mean())
    torch.testing.assert_close(obj.vargrad_loss(lpf, lpb, lr), (0.5 * (r - r.mean()) ** 2).mean())


def test_forward_looking_flows_add_partial_energy():
    env = _env(4, 2, 1.0)
    torch.manual_seed(0)
    pol = DiffusionPolicy(2, 4, hidden=8, harmonics=4, flow=True).double()  # zero-init flow head
    out = rollout(env, pol, 3, torch.Generator().manual_seed(0))
    emb = pol.time_embeddings()
    lf = obj.flows(env, pol, out["xs"], out["log_r"], emb, forward_looking=True)
    t = 2 / 4
    x = out["xs"][:, 2]
    ref = (1 - t) * _norm_lp(x, 0.0, t).sum(-1) + t * env.log_reward(x)
    torch.testing.assert_close(lf[:, 2], ref)
    torch.testing.assert_close(lf[:, -1], out["log_r"])
    assert bool((lf[:, 0] == 0).all())


def test_same_seed_repeats_exactly_and_shapes():
    def run():
        tr = build("gmm25", steps=5, hidden=16, harmonics=8,
                   config=DiffusionConfig(objective="tb", batch_size=16, exploration=0.3, seed=3, iterations=4))
        return tr.train(), tr
    (l1, t1), (l2, _) = run(), run()
    assert l1 == l2
    s = t1.sample(7)
    assert s.shape == (7, 2)
    m = t1.evaluate(64)
    assert m["samples"].shape == (64, 2) and m["exact_samples"].shape == (64, 2)
    for k in ("log_z_elbo", "log_z_iw", "ess", "delta_log_z", "log_z_eubo", "w2"):
        assert math.isfinite(m[k])
    assert m["log_z_elbo"] <= m["log_z_iw"] + 1e-9


@pytest.mark.parametrize("objective", ["vargrad", "db", "subtb", "fl-subtb", "pis"])
def test_every_objective_trains_a_step(objective):
    tr = build("gmm9", steps=4, hidden=16, harmonics=8, config=DiffusionConfig(objective=objective, batch_size=8))
    loss = tr.train(2)
    assert all(math.isfinite(v) for v in loss)


def test_local_search_alternates_and_fills_buffers():
    tr = build(_gauss_target(dim=2), steps=4, hidden=16, harmonics=8,
               config=DiffusionConfig(objective="tb", batch_size=8, local_search=True, ls_steps=10,
                                      ls_burn_in=4, ls_cycle=3))
    tr.train(4)
    assert len(tr.buffer) == 16 and len(tr.buffer_ls) > 0
    assert 0.0 <= tr.last_ls["ls_accept_rate"] <= 1.0


def test_error_paths():
    with pytest.raises(ValueError, match="unknown target"):
        build("nope")
    with pytest.raises(ValueError, match="steps"):
        DiffusionEnv(lambda x: -x.sum(-1), 2, steps=0)
    with pytest.raises(ValueError, match="objective"):
        build("gmm9", config=DiffusionConfig(objective="fm"))
    with pytest.raises(ValueError, match="flow=True"):
        env = _env(3, 2)
        DiffusionTrainer(env, DiffusionPolicy(2, 3, hidden=8, harmonics=4), DiffusionConfig(objective="db"))
    nan_target = EnergyTarget(lambda x: x.sum(-1) * float("nan"), 2)
    tr = build(nan_target, steps=3, hidden=8, harmonics=4, config=DiffusionConfig(batch_size=4))
    with pytest.raises(FloatingPointError, match="NaN"):
        tr.step()
    with pytest.raises(ValueError, match="shape"):
        score_path(_env(3, 2), DiffusionPolicy(2, 3, hidden=8, harmonics=4), torch.zeros(2, 5, 2))


def test_short_training_reduces_delta_log_z():
    target = _gauss_target(mu=1.5, std=0.5, dim=1)
    tr = build(target, steps=8, sigma=1.0, hidden=32, harmonics=16,
               config=DiffusionConfig(objective="tb", batch_size=128, seed=0, lr=3e-3))
    before = tr.evaluate(2000, w2=False)["delta_log_z"]
    tr.train(250)
    after = tr.evaluate(2000, w2=False)
    assert before > 0.5
    assert after["delta_log_z"] < 0.25 * before and after["delta_log_z"] < 0.1
    assert abs(after["log_z_iw"]) < 0.05


def test_gfn_train_env_diffusion_writes_the_json_interface(tmp_path):
    from gfn.cli import main

    out = tmp_path / "r.json"
    rc = main(["train", "--env", "diffusion", "--target", "gmm9", "--steps", "3", "--iterations", "3",
               "--batch-size", "8", "--eval-samples", "50", "--seed", "2", "--exploration", "0.2",
               "--learn-variance", "--json-out", str(out), "--out", str(tmp_path / "run")])
    assert rc == 0
    import json
    d = json.loads(out.read_text())
    for k in ("delta_log_z", "delta_log_z_iw", "delta_log_z_eubo", "w2", "ess", "log_z_elbo", "log_z_iw",
              "iterations", "batch_size", "steps", "cpu_seconds", "wall_seconds", "ms_per_iteration",
              "exploration", "local_search", "langevin", "learn_variance", "objective"):
        assert k in d
    assert d["iterations"] == 3 and d["learn_variance"] is True and d["exploration"] == 0.2
    assert (tmp_path / "run" / "density.png").exists()


def test_gfn_train_env_diffusion_bad_target_is_one_line(capsys):
    from gfn.cli import main

    assert main(["train", "--env", "diffusion", "--target", "nope", "--iterations", "2"]) != 0
    err = capsys.readouterr().err
    assert "unknown target 'nope'" in err and "Traceback" not in err


def test_langevin_rollout_scores_match_rescoring():
    env = _env(5, 2, 1.0)
    torch.manual_seed(1)
    pol = DiffusionPolicy(2, 5, hidden=8, harmonics=4, langevin=True).double()
    torch.nn.init.normal_(pol.lgv_model[-1].bias, std=1.0)
    out = rollout(env, pol, 32, torch.Generator().manual_seed(3), exploration=0.5)
    a, _ = score_path(env, pol, out["xs"], None, out["grad_log_r"])
    b, _ = score_path(env, pol, out["xs"])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(out["log_pf"], b.detach())
