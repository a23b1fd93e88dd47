"""Diffusion samplers, issue #24: the rollout's kept log P_F (``rollout(keep=True)``,
``DiffusionConfig.keep_log_pf``) against re-scoring the sampled states in one batched pass, in
float64: same samples, same per-step log P_F, same losses and parameter gradients, with and
without exploration noise, learned variance, Langevin drift and the flow-based losses."""

from __future__ import annotations

import pytest
import torch

from gfn.envs.diffusion import DiffusionConfig, DiffusionPolicy, build, make_target, rollout, score_path
from gfn.envs.diffusion.env import DiffusionEnv
from gfn.objectives import diffusion as obj


def _setup(langevin=False, learn_variance=False, flow=False, T=6, seed=0):
    target = make_target("gmm9")
    env = DiffusionEnv(target.log_reward, target.dim, T, 1.5, log_z=target.log_z, target=target)
    torch.manual_seed(seed)
    pol = DiffusionPolicy(target.dim, T, hidden=16, harmonics=8, joint_layers=1, langevin=langevin,
                          learn_variance=learn_variance, flow=flow).double()
    with torch.no_grad():  # the last layers start at zero: give the drift, variance and flow some shape
        for p in pol.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0.0, 0.3)
        pol.log_z.fill_(0.7)
    return env, pol


def _grads(pol, loss):
    pol.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in pol.named_parameters() if p.grad is not None}


def _loss(name, env, pol, log_pf, log_pb, log_r, xs, emb):
    if name == "tb":
        return obj.tb_loss(log_pf, log_pb, log_r, pol.log_z)
    if name == "vargrad":
        return obj.vargrad_loss(log_pf, log_pb, log_r)
    log_f = obj.flows(env, pol, xs, log_r, emb, forward_looking=(name == "fl-subtb"))
    if name == "db":
        return obj.db_loss(log_pf, log_pb, log_f)
    return obj.subtb_loss(log_pf, log_pb, log_f, obj.subtb_coefficients(env.steps, 2.0, torch.float64))


@pytest.mark.parametrize("exploration", [0.0, 0.8])
@pytest.mark.parametrize("langevin,learn_variance", [(False, False), (False, True), (True, True)])
def test_kept_log_pf_and_tb_gradients_equal_rescored(exploration, langevin, learn_variance):
    env, pol = _setup(langevin, learn_variance)
    kept = rollout(env, pol, 64, torch.Generator().manual_seed(1), exploration=exploration, keep=True)
    plain = rollout(env, pol, 64, torch.Generator().manual_seed(1), exploration=exploration)
    assert torch.equal(kept["xs"], plain["xs"])  # the same samples, bit for bit
    assert kept["log_pf"].requires_grad and not plain["log_pf"].requires_grad
    assert not kept["xs"].requires_grad
    emb = pol.time_embeddings()
    lpf, lpb = score_path(env, pol, plain["xs"], emb, plain.get("grad_log_r"))
    torch.testing.assert_close(kept["log_pf"], lpf, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kept["log_pb"], lpb, rtol=0, atol=0)
    g_kept = _grads(pol, obj.tb_loss(kept["log_pf"], kept["log_pb"], kept["log_r"], pol.log_z))
    g_res = _grads(pol, obj.tb_loss(lpf, lpb, plain["log_r"], pol.log_z))
    assert g_kept.keys() == g_res.keys() and len(g_kept) > 4
    for n in g_kept:
        torch.testing.assert_close(g_kept[n], g_res[n], rtol=1e-10, atol=1e-12, msg=n)
    nonzero = {n for n in g_kept if g_kept[n].abs().max() > 0}
    assert {"joint.1.weight", "joint.3.weight", "s_model.weight", "t_feat.phase", "log_z"} <= nonzero


@pytest.mark.parametrize("objective", ["vargrad", "db", "subtb", "fl-subtb"])
def test_kept_log_pf_matches_rescoring_for_every_on_policy_loss(objective):
    env, pol = _setup(learn_variance=True, flow=objective in ("db", "subtb", "fl-subtb"))
    kept = rollout(env, pol, 32, torch.Generator().manual_seed(2), exploration=0.3, keep=True)
    plain = rollout(env, pol, 32, torch.Generator().manual_seed(2), exploration=0.3)
    emb = pol.time_embeddings()
    lpf, lpb = score_path(env, pol, plain["xs"], emb)
    l_kept = _loss(objective, env, pol, kept["log_pf"], kept["log_pb"], kept["log_r"], kept["xs"], kept["emb"])
    g_kept = _grads(pol, l_kept)
    l_res = _loss(objective, env, pol, lpf, lpb, plain["log_r"], plain["xs"], emb)
    g_res = _grads(pol, l_res)
    torch.testing.assert_close(l_kept, l_res, rtol=1e-12, atol=1e-12)
    for n in g_res:
        torch.testing.assert_close(g_kept[n], g_res[n], rtol=1e-10, atol=1e-12, msg=n)
    if objective != "vargrad":
        assert g_kept["flow_s.weight"].abs().max() > 0


def _trainer(keep, objective="tb", exploration=0.5, local_search=False):
    cfg = DiffusionConfig(objective=objective, batch_size=16, iterations=6, exploration=exploration, seed=4,
                          keep_log_pf=keep, local_search=local_search, ls_steps=8, ls_burn_in=3, ls_cycle=3,
                          lr=1e-2)
    tr = build("gmm9", steps=5, hidden=16, harmonics=8, joint_layers=1, learn_variance=True, config=cfg)
    tr.policy.double()  # in place: the optimiser keeps the same Parameter objects
    return tr


@pytest.mark.parametrize("local_search", [False, True])
def test_trainer_keep_log_pf_trains_the_same_parameters(local_search):
    a, b = _trainer(True, local_search=local_search), _trainer(False, local_search=local_search)
    la, lb = a.train(), b.train()
    for x, y in zip(la, lb):
        assert abs(x - y) <= 1e-9 * max(1.0, abs(y))
    for (n, p), q in zip(a.policy.named_parameters(), b.policy.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11, msg=n)
    moved = _trainer(True, local_search=local_search).policy.joint[-1].weight
    assert not torch.allclose(moved, a.policy.joint[-1].weight)  # training did change the policy


def test_keep_and_reparametrised_rollout_are_exclusive():
    env, pol = _setup()
    with pytest.raises(ValueError, match="exclusive"):
        rollout(env, pol, 4, keep=True, grad=True)
