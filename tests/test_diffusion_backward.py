"""Diffusion samplers, issue #19 build item 1: the variance-preserving (VP) reference process and
the learned backward kernel (mean / variance corrections, the authors' ``--learn_pb``), against
float64 closed forms and hand-written references; sampling moments; gradients; trainer paths."""

from __future__ import annotations

import math

import pytest
import torch

from gfn.envs.diffusion import (DiffusionConfig, DiffusionEnv, DiffusionPolicy, EnergyTarget, build, log_pb,
                                rollout, sample_backward, score_path)
from gfn.objectives import diffusion as obj


def _gauss_target(mu=1.5, std=0.7, dim=1):
    def energy(x):
        return (0.5 * ((x - mu) / std) ** 2).sum(-1) + dim * (math.log(std) + 0.5 * math.log(2 * math.pi))

    return EnergyTarget(energy, dim, log_z=0.0, sampler=lambda n, generator=None: mu + std * torch.randn(
        n, dim, generator=generator), name="gauss")


def _env(T=5, d=2, sigma=1.3, backward="vp", **kw):
    t = _gauss_target(dim=d)
    return DiffusionEnv(t.log_reward, d, T, sigma, log_z=t.log_z, target=t, backward=backward, **kw)


def _norm_lp(x, m, v):
    v = torch.as_tensor(v, dtype=torch.float64)
    return -0.5 * (x - m) ** 2 / v - 0.5 * torch.log(2 * math.pi * v)


def _alphas(T, bmin, bmax):
    """Hand-written VP schedule: alpha_i = exp(-int beta over step i), beta linear in s = 1 - t."""
    out = []
    for i in range(T):
        s_hi, s_lo = 1 - i / T, 1 - (i + 1) / T  # noising time runs from s_lo to s_hi over step i
        integral = bmin * (s_hi - s_lo) + 0.5 * (bmax - bmin) * (s_hi ** 2 - s_lo ** 2)
        out.append(math.exp(-integral))
    return out


def test_vp_log_pb_matches_closed_form_float64():
    T, d, sigma, bmin, bmax = 6, 3, 1.7, 0.3, 9.0
    env = _env(T, d, sigma, beta_min=bmin, beta_max=bmax)
    al = _alphas(T, bmin, bmax)
    torch.testing.assert_close(env.vp_schedule()[0], torch.tensor(al, dtype=torch.float64), rtol=1e-13, atol=0)
    xs = torch.randn(4, T + 1, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xs[:, 0] = 0
    ref = torch.zeros(4, T, dtype=torch.float64)
    for i in range(1, T):
        ref[:, i] = _norm_lp(xs[:, i], math.sqrt(al[i]) * xs[:, i + 1], sigma ** 2 * (1 - al[i])).sum(-1)
    torch.testing.assert_close(env.log_pb_steps(xs), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("learn_variance", [False, True])
def test_vp_forward_kernels_match_hand_reference(learn_variance):
    T, d, sigma = 5, 2, 1.1
    env = _env(T, d, sigma)
    al = _alphas(T, 0.1, 20.0)
    torch.manual_seed(3)
    pol = DiffusionPolicy(d, T, hidden=8, harmonics=4, learn_variance=learn_variance).double()
    for p in pol.joint[-1].parameters():
        torch.nn.init.normal_(p, std=0.5)
    out = rollout(env, pol, 16, torch.Generator().manual_seed(4))
    xs, emb = out["xs"], pol.time_embeddings()
    ref = torch.zeros(16, T, dtype=torch.float64)
    for i in range(T):
        h = pol.joint(pol.s_model(xs[:, i]) + emb["t"][i])
        f = h[:, :d]
        g = torch.exp(torch.tanh(h[:, d:]) * 4.0) if learn_variance else 1.0
        c, v = (1.0, sigma ** 2) if i == 0 else (math.sqrt(al[i]), sigma ** 2 * (1 - al[i]))
        ref[:, i] = _norm_lp(xs[:, i + 1], c * xs[:, i] + f / T, v * g).sum(-1)
    lpf, lpb = score_path(env, pol, xs, emb)
    torch.testing.assert_close(out["log_pf"], ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lpf.detach(), ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lpb, out["log_pb"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backward", ["bridge", "vp"])
def test_zero_output_path_ratio_is_the_reference_terminal_density(backward):
    """f = 0, g = 1: the forward reference's backward kernel is its exact time reversal, so
    log P_F(tau) - log P_B(tau | x_T) = log N(x_T; 0, sigma^2 I), for the bridge and VP alike."""
    T, d, sigma = 7, 2, 2.2
    env = _env(T, d, sigma, backward)
    torch.manual_seed(0)
    pol = DiffusionPolicy(d, T, hidden=8, harmonics=4).double()
    out = rollout(env, pol, 64, torch.Generator().manual_seed(2))
    ratio = out["log_pf"].sum(-1) - out["log_pb"].sum(-1)
    torch.testing.assert_close(ratio, _norm_lp(out["xs"][:, -1], 0.0, sigma ** 2).sum(-1), rtol=1e-10, atol=1e-10)


def test_vp_backward_samples_and_zero_output_forward_have_the_reference_marginals():
    T, sigma, c = 8, 1.3, 2.0
    env = _env(T, 1, sigma, beta_min=0.5, beta_max=6.0)
    al = torch.tensor(_alphas(T, 0.5, 6.0), dtype=torch.float64)
    xs = env.sample_backward(torch.full((40000, 1), c, dtype=torch.float64), torch.Generator().manual_seed(1))
    assert bool((xs[:, 0] == 0).all()) and bool((xs[:, -1] == c).all())
    for i in range(1, T):
        prod = float(al[i:].prod())  # x_i | x_T: mean c sqrt(prod alpha), variance sigma^2 (1 - prod alpha)
        assert abs(float(xs[:, i, 0].mean()) - c * math.sqrt(prod)) < 0.03
        assert abs(float(xs[:, i, 0].var()) - sigma ** 2 * (1 - prod)) < 0.04
    pol = DiffusionPolicy(1, T, hidden=8, harmonics=4).double()
    fwd = rollout(env, pol, 40000, torch.Generator().manual_seed(2))["xs"][..., 0]
    torch.testing.assert_close(fwd[:, 1:].var(0), torch.full((T,), sigma ** 2, dtype=torch.float64), atol=0.06, rtol=0)


def _learned_policy(d, T, seed=5):
    torch.manual_seed(seed)
    pol = DiffusionPolicy(d, T, hidden=8, harmonics=4, learn_backward=True, pb_scale_range=0.3).double()
    return pol


@pytest.mark.parametrize("backward", ["bridge", "vp"])
def test_learned_backward_log_pb_matches_hand_reference(backward):
    T, d, sigma = 6, 2, 1.4
    env = _env(T, d, sigma, backward)
    pol = _learned_policy(d, T)
    xs = rollout(env, pol, 8, torch.Generator().manual_seed(1))["xs"]
    torch.testing.assert_close(log_pb(env, pol, xs), env.log_pb_steps(xs), rtol=1e-13, atol=1e-13)  # zero init
    for p in pol.back_joint[-1].parameters():
        torch.nn.init.normal_(p, std=1.0)
    emb = pol.time_embeddings()
    al = _alphas(T, 0.1, 20.0)
    ref = torch.zeros(8, T, dtype=torch.float64)
    for i in range(1, T):
        xn = xs[:, i + 1]
        h = torch.tanh(pol.back_joint(pol.s_model(xn) + emb["t"][i + 1])) * 0.3
        if backward == "bridge":  # the authors' form: x' - dt x' / t' (1 + r tanh), bridge var (1 + r tanh)
            mean = xn - (1 / T) * xn / ((i + 1) / T) * (1 + h[:, :d])
            var = sigma ** 2 * (1 / T) * i / (i + 1) * (1 + h[:, d:])
        else:
            mean = xn + (math.sqrt(al[i]) - 1) * xn * (1 + h[:, :d])
            var = sigma ** 2 * (1 - al[i]) * (1 + h[:, d:])
        ref[:, i] = _norm_lp(xs[:, i], mean, var).sum(-1)
    lp = log_pb(env, pol, xs, emb)
    torch.testing.assert_close(lp, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(score_path(env, pol, xs)[1], ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(rollout(env, pol, 8, torch.Generator().manual_seed(1))["log_pb"],
                               log_pb(env, pol, rollout(env, pol, 8, torch.Generator().manual_seed(1))["xs"]))
    (g,) = torch.autograd.grad(lp.sum(), pol.back_joint[-1].weight)
    assert g.abs().max() > 0


def test_learned_backward_sampling_moments_one_step():
    """T = 2: x_1 | x_2 is one learned Gaussian step; samples match its corrected mean and variance."""
    T, sigma = 2, 1.2
    env = _env(T, 1, sigma, "bridge")
    pol = _learned_policy(1, T, seed=2)
    with torch.no_grad():
        pol.back_joint[-1].bias.copy_(torch.tensor([1.0, -0.7], dtype=torch.float64))
    x2 = torch.full((50000, 1), 1.5, dtype=torch.float64)
    xs = sample_backward(env, pol, x2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ms, vs = pol.backward_correction(x2[:1], 2, pol.time_embeddings())
    mean = 1.5 - 0.5 * 1.5 * float(ms)
    var = sigma ** 2 * 0.5 * 0.5 * float(vs)
    assert abs(float(vs) - 1.0) > 0.05 and abs(float(ms) - 1.0) > 0.05  # the correction is not trivial
    assert abs(float(xs[:, 1, 0].mean()) - mean) < 0.01
    assert abs(float(xs[:, 1, 0].var()) / var - 1) < 0.03


def test_learned_backward_kept_and_rescored_tb_gradients_agree_float64():
    env = _env(5, 2, 1.3, "vp")
    torch.manual_seed(0)
    pol = DiffusionPolicy(2, 5, hidden=8, harmonics=4, learn_backward=True, learn_variance=True).double()
    with torch.no_grad():
        for p in pol.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0.0, 0.3)
    kept = rollout(env, pol, 32, torch.Generator().manual_seed(1), exploration=0.5, keep=True)
    plain = rollout(env, pol, 32, torch.Generator().manual_seed(1), exploration=0.5)
    lpf, lpb = score_path(env, pol, plain["xs"])
    grads = []
    for a, b, r in ((kept["log_pf"], kept["log_pb"], kept["log_r"]), (lpf, lpb, plain["log_r"])):
        pol.zero_grad(set_to_none=True)
        obj.tb_loss(a, b, r, pol.log_z).backward()
        grads.append({n: p.grad.clone() for n, p in pol.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "back_joint.3.weight" in grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-10, atol=1e-12, msg=n)


def test_prior_log_prob_is_the_reference_marginal():
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(_env(4, 2, 1.5, "vp").prior_log_prob(x, t), _norm_lp(x, 0, 1.5 ** 2).sum(-1))
    torch.testing.assert_close(_env(4, 2, 1.5, "bridge").prior_log_prob(x, t), _norm_lp(x, 0, 1.5 ** 2 * 0.3).sum(-1))


@pytest.mark.parametrize("objective,local_search", [("tb", True), ("fl-subtb", False), ("pis", False)])
def test_trainer_vp_and_learned_backward_run_and_repeat(objective, local_search):
    def run():
        cfg = DiffusionConfig(objective=objective, batch_size=8, local_search=local_search, ls_steps=6,
                              ls_burn_in=2, ls_cycle=3, seed=4, lr_back=5e-3)
        tr = build("gmm9", steps=4, hidden=16, harmonics=8, config=cfg, backward="vp", learn_backward=True)
        return tr, tr.train(4)
    (tr, l1), (_, l2) = run(), run()
    assert l1 == l2 and all(math.isfinite(v) for v in l1)
    assert [g["lr"] for g in tr.opt.param_groups][-1] == 5e-3
    assert tr.policy.back_joint[-1].weight.abs().max() > 0  # the backward head was trained
    m = tr.evaluate(64)
    assert math.isfinite(m["log_z_eubo"]) and m["log_z_elbo"] <= m["log_z_iw"] + 1e-9


def test_vp_short_training_reduces_delta_log_z():
    target = _gauss_target(mu=1.5, std=0.5, dim=1)
    tr = build(target, steps=8, sigma=1.0, hidden=32, harmonics=16, backward="vp",
               config=DiffusionConfig(objective="tb", batch_size=128, seed=0, lr=3e-3))
    before = tr.evaluate(2000, w2=False)["delta_log_z"]
    tr.train(250)
    after = tr.evaluate(2000, w2=False)
    assert before > 2.0 and after["delta_log_z"] < 0.05 * before  # measured: 5.26 -> 0.15


def test_error_paths():
    t = _gauss_target()
    with pytest.raises(ValueError, match="backward must be one of"):
        DiffusionEnv(t.log_reward, 1, 4, backward="ou")
    with pytest.raises(ValueError, match="beta_min"):
        DiffusionEnv(t.log_reward, 1, 4, backward="vp", beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="pb_scale_range"):
        DiffusionPolicy(1, 4, learn_backward=True, pb_scale_range=1.0)
    pol = DiffusionPolicy(1, 4, hidden=8, harmonics=4)
    with pytest.raises(ValueError, match="learn_backward=False"):
        pol.backward_correction(torch.zeros(2, 1), 1, pol.time_embeddings())


def test_cli_flags_reach_the_env_and_policy(tmp_path):
    from gfn.envs.diffusion.cli import main

    out = main(["--target", "gmm9", "--steps", "3", "--iterations", "2", "--batch-size", "8", "--eval-samples",
                "20", "--backward", "vp", "--beta-max", "8", "--learn-backward", "--pb-scale-range", "0.2",
                "--json-out", str(tmp_path / "r.json")])
    assert out["backward"] == "vp" and out["learn_backward"] is True and out["beta_max"] == 8.0
    assert math.isfinite(out["log_z_elbo"])
