"""Temperature conditioning: beta distributions, reward tempering, Logit-GFN / layer models,
composition with tb, db and subtb, and the example-runner flags."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from gfn import Sampler, Trainer, TrainerConfig, build_gflownet, metrics, seed_everything
from gfn.conditioning import (Annealed, BetaSampler, ConditionalLogZ, Constant, ExpUniform, LayerConditionedGFlowNet,
                              LogitGFlowNet, LogUniform, NormalClipped, RewardTempering, Uniform,
                              apply_run_flags, beta_tag, build_conditional_model, exact_beta_metrics,
                              make_conditional, parse_betas, parse_beta_dist, temper)
from gfn.envs import HyperGrid
from gfn.estimators import GFlowNet
from gfn.objectives import get_objective

MODES = ("logit", "layer", "logit+layer")


# ------------------------------------------------------------------------ beta distributions
def test_uniform_default_is_one_to_three():
    b = parse_beta_dist("uniform").sample(20000, generator=torch.Generator().manual_seed(0))
    assert float(b.min()) >= 1.0 and float(b.max()) <= 3.0
    assert float(b.mean()) == pytest.approx(2.0, abs=0.02)


def test_loguniform_and_expuniform_are_named_correctly():
    g = torch.Generator().manual_seed(0)
    lu = LogUniform(1.0, 8.0).sample(40000, generator=g)
    # log beta uniform on [0, log 8]: median sqrt(8), mean of log beta = log(8)/2
    assert float(lu.log().mean()) == pytest.approx(math.log(8) / 2, abs=0.02)
    assert float((lu < math.sqrt(8)).double().mean()) == pytest.approx(0.5, abs=0.01)
    eu = ExpUniform(1.0, 3.0).sample(40000, generator=g)
    # exp(beta) uniform on [e, e^3]: median log((e + e^3) / 2), skewed to large beta
    med = math.log((math.e + math.e ** 3) / 2)
    assert float((eu < med).double().mean()) == pytest.approx(0.5, abs=0.01)
    assert float(eu.mean()) > 2.1 > float(LogUniform(1.0, 3.0).sample(40000, generator=g).mean())


def test_normal_clipped_and_constant():
    b = NormalClipped(2.0, 1.0, 1.0, 3.0).sample(10000, generator=torch.Generator().manual_seed(0))
    assert float(b.min()) == 1.0 and float(b.max()) == 3.0
    assert float(b.mean()) == pytest.approx(2.0, abs=0.05)
    assert torch.equal(Constant(2.5).sample(3), torch.full((3,), 2.5))


@pytest.mark.parametrize("kind,mid", [("linear", 2.0), ("cosine", 2.0), ("geometric", math.sqrt(3.0))])
def test_annealing_schedules(kind, mid):
    a = Annealed(1.0, 3.0, 100, kind)
    assert a.value(0) == pytest.approx(1.0) and a.value(100) == pytest.approx(3.0)
    assert a.value(50) == pytest.approx(mid) and a.value(10_000) == pytest.approx(3.0)
    assert Annealed(1.0, 3.0, 100, "cosine").value(10) < Annealed(1.0, 3.0, 100, "linear").value(10)


def test_parse_beta_dist_and_errors():
    assert isinstance(parse_beta_dist("uniform:0.5,4"), Uniform)
    assert isinstance(parse_beta_dist("normal:2,0.5"), NormalClipped)
    a = parse_beta_dist("anneal:1,4,200,geometric")
    assert isinstance(a, Annealed) and a.steps == 200 and a.kind == "geometric"
    for bad, msg in [("gaussian:1,2", "unknown beta distribution"), ("uniform:3,1", "a <= b"),
                     ("loguniform:0,2", "> 0"), ("uniform:1,2,3,4", "bad parameters"),
                     ("anneal:1,3,10,sigmoid", "kind")]:
        with pytest.raises(ValueError, match=msg):
            parse_beta_dist(bad)
    assert parse_betas("1,2.5") == [1.0, 2.5] and parse_betas([3]) == [3.0] and parse_betas("") == []
    with pytest.raises(ValueError, match="eval-betas"):
        parse_betas("1,-2")
    assert beta_tag(1.0) == "beta1" and beta_tag(2.5) == "beta2.5"


def test_beta_sampler_follows_the_trainer_iteration():
    class T:
        iteration = 0

    s = BetaSampler("anneal:1,3,10").bind(T)
    assert s(4).shape == (4, 1) and float(s(1)) == 1.0
    T.iteration = 5
    assert float(s(1)) == pytest.approx(2.0)


# ------------------------------------------------------------------------ tempering
def test_tempering_multiplies_log_rewards_and_restores_them():
    env = HyperGrid(2, 4)
    model = build_gflownet(env, hidden=16, n_layers=1)
    cond = torch.tensor([[1.0], [2.0], [3.0]])
    batch = Sampler(env, model).sample(3, cond=cond)
    raw = batch.log_rewards.clone()
    hook = RewardTempering()
    out = hook(None, batch)
    assert torch.allclose(out.log_rewards, raw * cond[:, 0])
    assert torch.equal(temper(torch.tensor([float("-inf")]), torch.ones(1, 1) * 2), torch.tensor([float("-inf")]))

    class Info:
        pass

    info = Info()
    info.batch = out
    hook.restore(None, 1, info)
    assert torch.equal(out.log_rewards, raw) and RewardTempering.KEY not in out.info
    with pytest.raises(ValueError, match="batch.cond"):
        hook(None, batch.with_(cond=None))
    with pytest.raises(ValueError, match="beta > 0"):
        temper(raw, torch.zeros(3, 1))


# ------------------------------------------------------------------------ models
def _models(env, objective="tb", **kw):
    torch.manual_seed(0)
    return {m: build_conditional_model(m, get_objective(objective), env, hidden=32, n_layers=2, **kw) for m in MODES}


def test_logit_scale_is_one_at_init_and_scales_logits_exactly():
    env = HyperGrid(2, 5)
    torch.manual_seed(0)
    base = build_gflownet(env, hidden=32, n_layers=2)
    ref = {k: v.clone() for k, v in base.state_dict().items()}
    model = make_conditional(base, "logit")
    assert isinstance(model, LogitGFlowNet) and model.cond_dim == 1
    states = env.enumerate_states()
    f = base.pf.head(base.trunk(env.featurize(states)))  # the unconditioned logits
    for beta in (0.5, 1.0, 3.0):  # g(beta) == beta at init: P_F = softmax(beta f)
        c = torch.full((len(states), 1), beta)
        assert torch.allclose(model.pf_dist(states, c).log_probs, torch.log_softmax(
            (beta * f).masked_fill(~env.forward_mask(states), float("-inf")), -1), atol=1e-6)
    with torch.no_grad():  # make the softplus 2.5 everywhere: g(beta) = 2.5 beta
        model.pf.scale.net[-1].bias.fill_(math.log(math.expm1(2.5)))
    c = torch.full((len(states), 1), 2.0)
    want = torch.log_softmax((5.0 * f).clamp(-50, 50).masked_fill(~env.forward_mask(states), float("-inf")), -1)
    assert torch.allclose(model.pf_dist(states, c).log_probs, want, atol=1e-5)
    assert all(torch.equal(ref[k], v) for k, v in base.state_dict().items() if k in ref)
    flat = make_conditional(build_gflownet(env, hidden=32, n_layers=2), "logit")
    flat.pf.scale.proportional = False  # the paper's form: g == 1 at init for every beta
    assert torch.allclose(flat.pf.scale(torch.tensor([[0.5], [3.0]])), torch.ones(2, 1))


def test_per_action_logit_scales_multiply_each_logit():
    env = HyperGrid(2, 5)
    torch.manual_seed(0)
    base = build_gflownet(env, hidden=32, n_layers=2)
    model = make_conditional(base, "logit", logit_scale="action")
    assert model.pf.scale.net[-1].out_features == env.n_actions
    assert model.pb.scale.net[-1].out_features == env.n_backward_actions
    states = env.enumerate_states()
    f = base.pf.head(base.trunk(env.featurize(states))).detach()
    with torch.no_grad():  # scales (1, 2, 3) per action at every beta (times beta = 1)
        model.pf.scale.net[-1].bias.copy_(torch.log(torch.expm1(torch.tensor([1.0, 2.0, 3.0]))))
    c = torch.ones(len(states), 1)
    want = torch.log_softmax((f * torch.tensor([1.0, 2.0, 3.0])).masked_fill(~env.forward_mask(states), float("-inf")), -1)
    assert torch.allclose(model.pf_dist(states, c).log_probs, want, atol=1e-5)
    with pytest.raises(ValueError, match="logit_scale"):
        make_conditional(build_gflownet(env, hidden=8, n_layers=1), "logit", logit_scale="row")


def test_logit_scale_stays_positive_so_the_policy_is_never_inverted():
    env = HyperGrid(2, 5)
    model = _models(env)["logit"]
    with torch.no_grad():
        model.pf.scale.net[-1].bias.fill_(-30.0)  # an unconstrained g would be negative here
    beta = torch.linspace(0.1, 10, 50).unsqueeze(1)
    g = model.pf.scale(beta)
    assert bool((g > 0).all())
    states = env.initial_states(1)
    with torch.no_grad():
        model.pf.scale.net[-1].bias.fill_(3.0)
    lp1 = model.pf_dist(states, torch.ones(1, 1)).log_probs
    base = model.pf.base.logits(model.encode(states, torch.ones(1, 1))[:, :-1], states)
    assert int(lp1.argmax()) == int(base.masked_fill(~env.forward_mask(states), -1e9).argmax())


def test_layer_model_sees_beta_and_logit_clip_bounds_logits():
    env = HyperGrid(2, 5)
    models = _models(env)
    s = env.initial_states(2)
    c = torch.tensor([[1.0], [3.0]])
    lay = models["layer"].pf_dist(s, c).log_probs
    assert isinstance(models["layer"], LayerConditionedGFlowNet) and not torch.allclose(lay[0], lay[1])
    m = models["logit"]
    with torch.no_grad():
        m.pf.scale.net[-1].bias.fill_(1e4)  # g huge: logits hit the clip
    lp = m.pf_dist(s, c).log_probs.detach()
    finite = lp[torch.isfinite(lp)]
    assert float(finite.max() - finite.min()) <= 100.0 + 1e-3


def test_default_beta_is_used_without_conditioning():
    env = HyperGrid(2, 4)
    for mode, m in _models(env).items():
        s = env.enumerate_states()
        one = torch.ones(len(s), 1)
        assert torch.allclose(m.pf_dist(s).log_probs, m.pf_dist(s, one).log_probs), mode
        assert isinstance(m.log_z, ConditionalLogZ)
        assert float(m.log_z.value.detach()) == pytest.approx(float(m.log_z(1, torch.ones(1, 1))[0].detach()))
    m = build_conditional_model("logit", get_objective("tb"), env, hidden=8, default_beta=None)
    with pytest.raises(ValueError, match="conditioning tensor"):
        m.pf_dist(env.initial_states(1))


def test_conversion_errors():
    env = HyperGrid(2, 4)

    class Custom(GFlowNet):
        def encode(self, states, cond=None):
            return super().encode(states, cond)

    base = build_gflownet(env, hidden=8)
    custom = Custom(env, base.pf, base.pb, trunk=base.trunk)
    with pytest.raises(TypeError, match="overrides encode"):
        make_conditional(custom, "logit")
    with pytest.raises(ValueError, match="unknown conditioning mode"):
        make_conditional(build_gflownet(env, hidden=8), "film")
    with pytest.raises(ValueError, match="unconditional"):
        make_conditional(build_gflownet(env, hidden=8, cond_dim=1), "layer")
    with pytest.raises(ValueError, match="intermediate states"):
        build_conditional_model("logit", get_objective("fldb"), env)


# ------------------------------------------------------------------------ objectives
@pytest.mark.parametrize("mode", MODES)
def test_conditional_tb_matches_per_trajectory_reference(mode):
    """TB with beta per trajectory == a one-trajectory-at-a-time float64 reference."""
    env = HyperGrid(2, 5)
    model = _models(env)[mode]
    cond = torch.tensor([[1.0], [1.7], [2.4], [3.0]])
    torch.manual_seed(1)
    batch = RewardTempering()(None, Sampler(env, model).sample(4, cond=cond))
    loss = get_objective("tb").loss(model, batch)
    ref = []
    for b in range(4):
        rows = torch.arange(int(batch.ptr[b]), int(batch.ptr[b + 1]))
        st, c = batch.states[rows], cond[b].expand(len(rows), 1)
        lpf = model.pf_dist(st, c).log_probs.gather(1, batch.actions[rows, None]).squeeze(1).double().sum()
        lpb = torch.zeros((), dtype=torch.float64)
        if len(rows) > 1:
            lpb = model.pb_dist(st[1:], c[1:]).log_probs.gather(1, batch.bwd_actions[rows[1:], None]).double().sum()
        log_r = cond[b, 0].double() * env.log_reward(st[-1:]).double()[0]
        ref.append((model.log_z(1, cond[b:b + 1]).double()[0] + lpf - log_r - lpb) ** 2)
    assert float(loss.detach()) == pytest.approx(float(torch.stack(ref).mean().detach()), rel=1e-5)


@pytest.mark.parametrize("objective", ["tb", "db", "subtb"])
def test_gradients_reach_the_conditioning_parameters(objective):
    env = HyperGrid(2, 4)
    for mode, model in _models(env, objective).items():
        cond = torch.rand(8, 1) * 2 + 1
        batch = RewardTempering()(None, Sampler(env, model).sample(8, cond=cond))
        loss = get_objective(objective).loss(model, batch)
        loss.backward()
        assert torch.isfinite(loss)
        if mode != "layer":
            assert model.pf.scale.net[0].weight.grad is not None and model.pf.scale.net[-1].weight.grad.abs().sum() > 0
        if mode != "logit":
            assert model.beta_embed.net[0].weight.grad.abs().sum() > 0
        if objective == "tb":
            assert model.log_z.net[0].weight.grad.abs().sum() > 0
        else:
            assert model.flow is not None


@pytest.mark.parametrize("objective", ["tb", "db", "subtb"])
def test_one_model_learns_several_temperatures(objective):
    """A small conditional model reaches the tempered targets at beta = 1 and beta = 3."""
    env = HyperGrid(2, 4)
    for mode in ("layer", "logit+layer"):
        seed_everything(0)
        obj = get_objective(objective)
        model = build_conditional_model(mode, obj, env, hidden=64, n_layers=2)
        sampler = BetaSampler("uniform:1,3")
        tr = Trainer(env, model, obj, TrainerConfig(batch_size=32, lr=3e-3), cond_fn=sampler,
                     batch_hooks=[RewardTempering()])
        before = exact_beta_metrics(env, model, [1, 3], log_z=False)
        tr.train(300)
        after = exact_beta_metrics(env, model, [1, 3], log_z=False)
        for b in ("beta1", "beta3"):
            assert after[f"tv_exact_{b}"] <= 0.1 < before[f"tv_exact_{b}"], (objective, mode, after)


def test_logit_gfn_cannot_fit_both_temperatures_at_s0():
    """Why pure Logit-GFN misses the tv floor on HyperGrid: P_T(s_0 | beta) = P_F(exit | s_0; beta)
    and, at s_0 = (0, 0) of the 4x4 grid, the right/up logits are equal by symmetry, so the
    exit-vs-move log-odds must be g(beta) * c for one constant c.  The targets need a ratio
    log-odds(3) / log-odds(1) below 1, while states with R = R0 need it above 1 — one positive
    scale g cannot do both (documented in docs/conditioning.md)."""
    env = HyperGrid(2, 4)

    def odds(beta):
        p = float(metrics.target_distribution(env, beta)[0])
        return math.log(2 * p / (1 - p))  # exit vs one of the two symmetric moves

    assert 0 < odds(3.0) / odds(1.0) < 1


# ------------------------------------------------------------------------ runner flags
def test_runner_flags_write_beta_metrics_and_acceptance(tmp_path):
    from examples.train_hypergrid import main
    out = tmp_path / "run"
    main(["--height", "4", "--iterations", "6", "--batch-size", "8", "--hidden", "16", "--no-progress",
          "--condition", "logit", "--beta-dist", "loguniform:1,3", "--eval-betas", "1,2.5",
          "--local-search", "2,1", "--checkpoint-every", "0", "--out", str(out), "--seed", "3"])
    m = json.loads((out / "metrics.json").read_text())
    for k in ("tv_exact_beta1", "tv_exact_beta2.5", "log_z_error_beta1", "ls_acceptance_rate", "tv_exact"):
        assert k in m, k
    assert 0.0 <= m["ls_acceptance_rate"] <= 1.0 and m["tv_exact"] == pytest.approx(m["tv_exact_beta1"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["condition"] == "logit" and cfg["local_search"] == [2, 1] and cfg["eval_betas"] == [1, 2.5]


def test_apply_run_flags_converts_a_given_trainer_and_is_deterministic():
    from gfn.config import RunConfig
    env = HyperGrid(2, 4)

    def run(seed):
        seed_everything(seed)
        obj = get_objective("db")
        tr = Trainer(env, obj.build_model(env, hidden=16, n_layers=1), obj, TrainerConfig(batch_size=8))
        cfg = RunConfig(condition="layer", beta_dist="uniform:1,2", local_search=[1, 1], eval_betas=[2])
        ext = apply_run_flags(cfg, tr)
        assert tr.model.cond_dim == 1 and tr.sampler.model is tr.model
        assert tr.model.beta_embed.net[0].weight in {p for g in tr.optimizer.param_groups for p in g["params"]}
        tr.train(3)
        return ext.metrics(tr)

    a, b = run(5), run(5)
    assert a == b and "tv_exact_beta2" in a and "log_z_error_beta2" not in a
    with pytest.raises(ValueError, match="--condition"):
        apply_run_flags(RunConfig(condition="film"), Trainer(env, build_gflownet(env, hidden=8), get_objective("tb")))


def test_eval_betas_without_conditioning_warns():
    from gfn.config import RunConfig
    env = HyperGrid(2, 4)

    def trainer():
        return Trainer(env, build_gflownet(env, hidden=8), get_objective("tb"))
    with pytest.warns(UserWarning, match="--condition none"):
        ext = apply_run_flags(RunConfig(eval_betas=[1, 2]), trainer())
    assert ext.eval_betas == [1.0, 2.0] and "tv_exact_beta2" in ext.metrics(trainer())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_run_flags(RunConfig(eval_betas=[1]), trainer())  # beta = 1 is the model's own target
        apply_run_flags(RunConfig(condition="logit", eval_betas=[1, 2]), trainer())


def test_beta_dist_keeps_parameter_positions_and_integer_steps():
    for bad, msg in [("normal:2,0.5,,3", "empty parameter"), ("anneal:1,3,,cosine", "empty parameter"),
                     ("anneal:1,3,10.9", "steps must be an integer"), ("uniform:a,3", "bad parameters")]:
        with pytest.raises(ValueError, match=msg):
            parse_beta_dist(bad)
    n = parse_beta_dist("normal:2,0.5,1,3")
    assert isinstance(n, NormalClipped) and "1,3" in repr(n)


def test_run_flags_temper_once_and_bind_the_callers_beta_sampler():
    from gfn.config import RunConfig
    env = HyperGrid(2, 4)
    obj = get_objective("tb")
    sampler = BetaSampler("anneal:1,3,10")
    tr = Trainer(env, obj.build_model(env, hidden=16, n_layers=1), obj, TrainerConfig(batch_size=4),
                 cond_fn=sampler, batch_hooks=[RewardTempering()])
    ext = apply_run_flags(RunConfig(condition="logit"), tr)
    assert sum(isinstance(h, RewardTempering) for h in tr.batch_hooks) == 1
    assert ext.sampler is sampler and sampler._trainer is tr  # the schedule follows the trainer (resume)
    tr.iteration = 5
    assert float(sampler(1)) == pytest.approx(2.0)
    batch = Sampler(env, build_gflownet(env, hidden=8)).sample(2, cond=torch.full((2, 1), 2.0))
    hook = RewardTempering()
    with pytest.raises(RuntimeError, match="already tempered"):
        hook(None, hook(None, batch))


@pytest.mark.parametrize("objective", ["db", "subtb"])
def test_logit_plus_layer_with_a_state_flow_and_no_shared_trunk_trains(objective):
    obj = get_objective(objective)
    env = HyperGrid(2, 4)
    base = obj.build_model(env, hidden=16, n_layers=1, shared_trunk=False)
    assert base.trunk is None
    model = make_conditional(base, "logit+layer")
    tr = Trainer(env, model, obj, TrainerConfig(batch_size=4), cond_fn=BetaSampler("uniform:1,3"),
                 batch_hooks=[RewardTempering()])
    losses = tr.train(2)
    assert all(math.isfinite(v) for v in losses)


# ------------------------------------------------------------------------ the authors' variants
def test_paper_logit_scale_is_unconstrained_and_clipped_at_20():
    from gfn.conditioning import PaperBetaScale
    env = HyperGrid(2, 5)
    torch.manual_seed(0)
    m = build_conditional_model("logit", get_objective("tb"), env, hidden=16, n_layers=1, logit_scale="paper")
    assert isinstance(m.pf.scale, PaperBetaScale) and isinstance(m.pb.scale, PaperBetaScale)
    assert m.pf.clip == 20.0 and m.pf.scale is not m.pb.scale
    s = env.initial_states(1)
    beta = torch.ones(1, 1)
    h = m.encode(s, beta)
    f = m.pf.base.logits(h[:, :-1], s)
    allowed = env.forward_mask(s)
    with torch.no_grad():  # g(beta) = -2 exactly: the policy is inverted (the library's g > 0 forbids this)
        for p in m.pf.scale.decoder.parameters():
            p.zero_()
        m.pf.scale.decoder[-1].bias.fill_(-2.0)
    lp = m.pf_dist(s, beta).log_probs
    expected = torch.log_softmax((-2.0 * f).clamp(-20, 20).masked_fill(~allowed, float("-inf")), -1)
    assert torch.allclose(lp[allowed], expected[allowed], atol=1e-5)
    assert int(lp.masked_fill(~allowed, -1e9).argmax()) == int(f.masked_fill(~allowed, 1e9).argmin())
    with torch.no_grad():
        m.pf.scale.decoder[-1].bias.fill_(1e4)  # huge g: logits clipped to +-20
    lp = m.pf_dist(s, beta).log_probs.detach()
    assert float(lp[allowed].max() - lp[allowed].min()) <= 40.0 + 1e-4


def test_layer_embedding_at_the_scorer_input_leaves_the_state_encoder_beta_free():
    env = HyperGrid(2, 5)
    torch.manual_seed(0)
    m = build_conditional_model("layer", get_objective("tb"), env, hidden=16, n_layers=2, layer_embed_at="scorer")
    assert m.embed_at == "scorer" and m.trunk[0].in_features == env.feature_dim
    assert m.trunk[m.split].in_features == 16 + m.beta_embed.dim
    s = env.enumerate_states()[:7]
    c1, c3 = torch.ones(7, 1), torch.full((7, 1), 3.0)
    assert not torch.allclose(m.pf_dist(s, c1).log_probs, m.pf_dist(s, c3).log_probs)
    enc = m.trunk[1](m.trunk[0](env.featurize(s)))  # the encoder: the layers before the split
    e = m.beta_embed(c3)
    expected = m.trunk[m.split + 1](m.trunk[m.split](torch.cat([enc, e], -1)))
    assert torch.allclose(m.encode(s, c3), expected, atol=1e-6)
    with pytest.raises(ValueError, match="two hidden layers"):
        build_conditional_model("layer", get_objective("tb"), env, hidden=8, n_layers=1, layer_embed_at="scorer")


def test_lr_log_z_cond_gives_log_z_beta_its_own_learning_rate():
    from gfn.config import RunConfig
    env = HyperGrid(2, 4)
    for value, expected in ((0.0, 0.1), (0.01, 0.01)):
        obj = get_objective("tb")
        tr = Trainer(env, obj.build_model(env, hidden=16, n_layers=2), obj, TrainerConfig(batch_size=4, lr_log_z=0.1))
        apply_run_flags(RunConfig(condition="layer", lr_log_z_cond=value, layer_embed_at="scorer", lr_log_z=0.1), tr)
        lrs = {g["name"]: g["lr"] for g in tr.optimizer.param_groups}
        assert lrs == {"model": 1e-3, "log_z": expected}
        assert {id(p) for p in tr.model.log_z.parameters()} == {id(p) for g in tr.optimizer.param_groups
                                                                if g["name"] == "log_z" for p in g["params"]}
        tr.train(2)


def test_logit_vs_layer_benchmark_paper_protocol_on_tfbind8(tmp_path, data_dir):
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import logit_vs_layer as bench
    report = bench.main(["--task", "tfbind8", "--protocol", "paper", "--modes", "logit", "--seeds", "0",
                         "--iterations", "4", "--eval-every", "4", "--hidden", "8", "--betas", "3",
                         "--data-dir", str(data_dir), "--out", str(tmp_path / "lvl")])
    s = report["setting"]
    assert (s["batch_size"], s["lr"], s["lr_log_z_cond"], s["epsilon"]) == (32, 1e-4, 1e-2, 0.01)
    for mode in ("logit",):  # one exact evaluation (87k states): a few seconds
        last = [r for r in report["runs"] if r["mode"] == mode][0]["curve"][-1]
        assert last["iteration"] == 4 and last["samples"] == 64  # two rounds: 32 sampled each
        assert 0 <= last["modes_found"] <= 328 and 0 <= last["tv_exact_beta3"] <= 1
    assert (tmp_path / "lvl.json").is_file() and (tmp_path / "lvl.png").is_file()


def test_hypergrid_example_uses_its_conditional_defaults_unless_told(tmp_path, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "train_hypergrid.py"
    spec = importlib.util.spec_from_file_location("_example_train_hypergrid_cond", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    spec.loader.exec_module(mod)
    assert mod.CONDITIONAL_DEFAULTS == {"iterations": 3000, "batch_size": 64}
    given = mod.given_fields(["--condition", "logit", "--iterations", "5"])
    assert {"condition", "iterations"} <= given and "batch_size" not in given
    common = ["--iterations", "2", "--height", "4", "--no-progress", "--hidden", "8"]

    def resolved(name, *flags):
        mod.main(list(flags) + common + ["--out", str(tmp_path / name)])
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        return cfg["iterations"], cfg["batch_size"]
    assert resolved("logit", "--condition", "logit") == (2, 64)          # batch: the conditional default
    assert resolved("layer", "--condition", "layer", "--batch-size", "8") == (2, 8)   # flags win
    assert resolved("plain") == (2, 16)                                   # unconditional: unchanged
