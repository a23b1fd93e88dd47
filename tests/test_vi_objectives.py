"""VI objectives (issue 21): reverse_kl / forward_kl / rws against exact expectations over every
trajectory of small environments (Malkin et al. 2023, Prop. 1), importance weighting of explored
trajectories, and the gradient-variance log."""

import math

import pytest
import torch

import gfn
from gfn.envs import HyperGrid
from gfn.envs.dag import DAGEnv
from gfn.estimators import build_gflownet
from gfn.objectives import get_objective
from gfn.objectives.vi import BehaviourRecorder, GradientVariance, behaviour_log_prob
from gfn.ops import lengths_to_ptr, segment_sum
from gfn.trajectories import TrajectoryBatch


def all_trajectories(env) -> TrajectoryBatch:
    """Every complete trajectory s_0 -> ... -> x -> exit of a small discrete env, packed."""
    done, frontier = [], [([env.initial_states(1)[0]], [])]
    while frontier:
        nxt = []
        for states, actions in frontier:
            s = states[-1].unsqueeze(0)
            done.append((states, actions + [env.exit_action]))
            mask = env.forward_mask(s)[0, :-1]
            for a in mask.nonzero().flatten().tolist():
                child = env.step(s, torch.tensor([a]))[0]
                nxt.append((states + [child], actions + [a]))
        frontier = nxt
    rows = torch.stack([s for states, _ in done for s in states])
    actions = torch.tensor([a for _, acts in done for a in acts])
    bwd = torch.tensor([b for _, acts in done for b in [0] + acts[:-1]])  # backward action = forward index
    ptr = lengths_to_ptr(torch.tensor([len(states) for states, _ in done]))
    batch = TrajectoryBatch(states=rows, ptr=ptr, actions=actions, bwd_actions=bwd, log_rewards=torch.empty(0))
    batch.log_rewards = env.checked_log_reward(batch.terminal_states)
    return batch


def small_envs():
    return [HyperGrid(2, 3), DAGEnv(n_nodes=3, n_edges=2, n_samples=20, data_seed=0)]


def make_model(env, seed=0):
    gfn.seed_everything(seed)
    model = build_gflownet(env, hidden=16, shared_trunk=False)
    with torch.no_grad():  # a non-trivial starting point: random, larger logits
        for p in model.parameters():
            p.mul_(3.0)
    return model


def grads(loss, params):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])


def exact_log_target(env, model, batch):
    """log P*(tau) = log P_B(tau | x) + log R(x) - log Z over the enumerated trajectories."""
    scores = model.evaluate(batch)
    log_pb = segment_sum(scores.log_pb, batch.ptr)
    x = batch.terminal_states
    _, first = torch.unique(x, dim=0, return_inverse=True)
    log_r = batch.log_rewards.double()
    uniq = torch.zeros(int(first.max()) + 1, dtype=torch.float64).scatter(0, first, log_r)
    log_z = torch.logsumexp(uniq, 0)
    return log_pb + log_r - log_z, segment_sum(scores.log_pf, batch.ptr)


@pytest.mark.parametrize("env", small_envs(), ids=["hypergrid", "dag3"])
def test_reverse_kl_gradient_is_tb_gradient_on_policy(env):
    """E_{P_F}[grad of reverse_kl's surrogate] = grad KL(P_F || P*) (all parameters), and in P_F's
    parameters it equals half the expected gradient of TB's squared residual, for any log Z."""
    model = make_model(env)
    batch = all_trajectories(env)
    pf_params = list(model.pf.parameters())
    params = [p for p in model.parameters() if p.requires_grad and p is not model.log_z.value]
    with torch.no_grad():
        p_tau = segment_sum(model.evaluate(batch).log_pf, batch.ptr).exp()
    assert abs(float(p_tau.sum()) - 1) < 1e-5  # the enumeration is complete
    log_target, log_pf = exact_log_target(env, model, batch)
    kl = (log_pf.exp() * (log_pf - log_target.float())).sum()
    ref = grads(kl, params)
    assert ref.norm() > 1e-2
    for baseline, b in (("none", None), ("global", 3.0)):
        rkl = get_objective("reverse_kl", baseline=baseline)
        if b is not None:
            rkl.global_value = b
        got = grads((p_tau * rkl.surrogate(model, batch)).sum(), params)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        model.log_z.value.fill_(1.7)
    tb = get_objective("tb")
    g_tb = grads(0.5 * (p_tau * tb.residuals(model, batch).pow(2)).sum(), pf_params)
    g_rkl = grads((p_tau * get_objective("reverse_kl", baseline="none").surrogate(model, batch)).sum(), pf_params)
    torch.testing.assert_close(g_rkl, g_tb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("env", small_envs(), ids=["hypergrid", "dag3"])
def test_importance_weights_make_explored_gradients_unbiased(env):
    """Trajectories drawn with epsilon-uniform and temperature exploration, importance weighted:
    E_q[surrogate gradient] equals the on-policy expectation."""
    model = make_model(env, seed=1)
    batch = all_trajectories(env)
    params = [p for p in model.parameters() if p.requires_grad and p is not model.log_z.value]
    rkl = get_objective("reverse_kl", baseline="none")
    with torch.no_grad():
        p_tau = segment_sum(model.evaluate(batch).log_pf, batch.ptr).exp()
        q_tau = segment_sum(behaviour_log_prob(model, batch, 1.5, 0.4), batch.ptr).exp()
    assert abs(float(q_tau.sum()) - 1) < 1e-9 and not torch.allclose(q_tau.float(), p_tau, atol=1e-3)
    on = grads((p_tau * rkl.surrogate(model, batch)).sum(), params)
    batch.info["behaviour"] = {"temperature": 1.5, "epsilon": 0.4, "n_fresh": batch.batch_size}
    off = grads((q_tau.float() * rkl.surrogate(model, batch)).sum(), params)
    torch.testing.assert_close(off, on, rtol=1e-4, atol=1e-5)
    # replayed trajectories (after n_fresh) are not re-weighted
    batch.info["behaviour"]["n_fresh"] = 0
    torch.testing.assert_close(rkl.surrogate(model, batch), rkl.surrogate(model, batch.with_(info={})))


def test_forward_kl_and_rws_estimate_the_forward_kl_gradients():
    """On-policy samples, self-normalised weights: forward_kl's and rws's P_F gradients approach
    -E_{P*}[grad log P_F] and forward_kl's P_B gradient -E_{P_F}[grad log P_B] (exact sums over every
    trajectory for the references).  rws's P_B gradient estimates -E_{P*}[grad log P_B], which is 0
    (sum_tau P_B(tau | x) grad log P_B(tau | x) = 0 for every x): it must be small."""
    env = DAGEnv(n_nodes=3, n_edges=2, n_samples=20, data_seed=0)
    gfn.seed_everything(2)
    model = build_gflownet(env, hidden=16, shared_trunk=False)
    pf, pb = list(model.pf.parameters()), list(model.pb.parameters())
    every = all_trajectories(env)
    log_target, log_pf = exact_log_target(env, model, every)
    log_pb = segment_sum(model.evaluate(every).log_pb, every.ptr)
    p_star, p_f = log_target.exp().float().detach(), log_pf.exp().detach()
    ref_pf = grads(-(p_star * log_pf).sum(), pf)
    ref_pb_f = grads(-(p_f * log_pb).sum(), pb)
    gfn.seed_everything(0)
    batch = gfn.Sampler(env, model).sample(20000)

    def close(a, b):
        cos = float(torch.dot(a, b) / (a.norm() * b.norm()))
        return cos > 0.99 and abs(float(a.norm() / b.norm()) - 1) < 0.06

    fkl, rws = get_objective("forward_kl"), get_objective("rws")
    assert close(grads(fkl.loss(model, batch), pf), ref_pf)
    assert close(grads(rws.loss(model, batch), pf), ref_pf)
    assert close(grads(fkl.loss(model, batch), pb), ref_pb_f)
    assert grads(rws.loss(model, batch), pb).norm() < 0.35 * ref_pb_f.norm()


def test_gradient_variance_log_and_baselines():
    """Where f = log P_F - log P_B - log R is far from 0 (log R is a log marginal likelihood of
    data here), the local baseline cuts the variance of the score-function gradient; the hook logs it."""
    env = DAGEnv(n_nodes=3, n_edges=2, n_samples=20, data_seed=0)
    model = make_model(env, seed=3)
    gfn.seed_everything(0)
    batch = gfn.Sampler(env, model).sample(64)
    hook = GradientVariance(every=1, groups=8)
    v_none = hook.measure(model, get_objective("reverse_kl", baseline="none"), batch)["grad_variance"]
    v_local = hook.measure(model, get_objective("reverse_kl", baseline="local"), batch)["grad_variance"]
    assert math.isfinite(v_none) and v_local < 0.5 * v_none
    trainer = gfn.Trainer(env, model, get_objective("reverse_kl"), gfn.TrainerConfig(batch_size=16, epsilon=0.1),
                          hooks=[GradientVariance(every=2, groups=4)], batch_hooks=[BehaviourRecorder()])
    trainer.train(4)
    hist = trainer.hooks[0].history
    assert [h["iteration"] for h in hist] == [2, 4] and all(h["grad_variance"] > 0 for h in hist)
    with pytest.raises(ValueError, match="groups"):
        GradientVariance(groups=1)


@pytest.mark.parametrize("name,mode", [("reverse_kl", "on"), ("reverse_kl", "off"), ("forward_kl", "replay"),
                                       ("rws", "off")])
def test_vi_objectives_train_hypergrid(name, mode):
    """The objectives lower the exact tv on a small grid: on-policy, with epsilon exploration
    (importance weighted), and with exploration plus replay."""
    from gfn.metrics import exact_metrics
    env = HyperGrid(2, 4)
    cfg = {"on": gfn.TrainerConfig(batch_size=32, lr=3e-3),
           "off": gfn.TrainerConfig(batch_size=32, lr=3e-3, epsilon=0.2),
           "replay": gfn.TrainerConfig(batch_size=32, lr=3e-3, epsilon=0.2, replay_capacity=200)}[mode]
    gfn.seed_everything(0)
    obj = get_objective(name)
    model = obj.build_model(env, hidden=32)
    before = exact_metrics(env, model)["tv_exact"]
    gfn.Trainer(env, model, obj, cfg, batch_hooks=[BehaviourRecorder()]).train(200)
    after = exact_metrics(env, model)["tv_exact"]
    assert after < 0.5 * before and after < 0.15, (before, after)
    assert math.isfinite(obj.log_z_estimate(model))


def test_bad_arguments():
    with pytest.raises(ValueError, match="baseline"):
        get_objective("reverse_kl", baseline="moving")
    with pytest.raises(ValueError, match="global_decay"):
        get_objective("reverse_kl", global_decay=1.0)
    with pytest.raises(ValueError, match="importance"):
        get_objective("rws", importance="maybe")
