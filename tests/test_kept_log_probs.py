"""Reusing the sampling pass's log P_F (``keep_log_probs``) is exact on on-policy batches.

float64 throughout: the kept log-probabilities and the TB gradients equal the recomputed ones to
round-off, and the trainer falls back to recomputation whenever the batch is not on-policy
(replayed trajectories, exploration noise, temperature).
"""

import pytest
import torch

import gfn
from gfn.envs import HyperGrid
from gfn.objectives import get_objective


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _model(env, seed=3):
    torch.manual_seed(seed)
    return gfn.build_gflownet(env, hidden=32)


def test_kept_equal_recomputed_float64_values_and_gradients(float64):
    env = HyperGrid(3, 4)
    model = _model(env)
    assert next(model.parameters()).dtype == torch.float64
    torch.manual_seed(11)
    kept = gfn.Sampler(env, model).sample(32, keep_log_probs=True)
    assert kept.log_pf.dtype == torch.float64 and kept.log_pf.requires_grad
    recomputed = kept.with_(log_pf=None)
    lp_re = model.evaluate(recomputed).log_pf
    torch.testing.assert_close(kept.log_pf, lp_re, rtol=0, atol=1e-12)
    params = [p for p in model.parameters() if p.requires_grad]
    tb = get_objective("tb")
    l1, l2 = tb.loss(model, kept), tb.loss(model, recomputed)
    torch.testing.assert_close(l1, l2, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(l1, params, allow_unused=True)
    g2 = torch.autograd.grad(l2, params, allow_unused=True)
    n_nonzero = 0
    for a, b in zip(g1, g2):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        n_nonzero += int(a.abs().sum() > 0)
    assert n_nonzero >= 4  # the trunk and the P_F head really receive gradient


def test_perturbed_kept_log_probs_change_the_loss(float64):
    """The loss really reads the kept tensor (so the equality above is not vacuous)."""
    env = HyperGrid(2, 4)
    model = _model(env)
    kept = gfn.Sampler(env, model).sample(8, keep_log_probs=True)
    tb = get_objective("tb")
    shifted = kept.with_(log_pf=kept.log_pf + 0.5)
    assert not torch.isclose(tb.loss(model, kept), tb.loss(model, shifted))


def _trainer(env, model, **cfg):
    return gfn.Trainer(env, model, get_objective("tb"), gfn.TrainerConfig(batch_size=8, **cfg))


def test_trainer_keeps_only_on_policy(float64):
    env = HyperGrid(2, 4)
    on = _trainer(env, _model(env), keep_log_probs=True)
    assert on.sample_batch().log_pf.requires_grad
    # exploration noise or a temperature: the sampling policy is not P_F, so recompute (no error)
    for kw in ({"epsilon": 0.1}, {"temperature": 2.0}):
        tr = _trainer(env, _model(env), keep_log_probs=True, **kw)
        assert tr.sample_batch().log_pf is None
        tr.train_step()
    # replayed trajectories were not sampled by this pass: the mixed batch recomputes
    rp = _trainer(env, _model(env), keep_log_probs=True, replay_capacity=64, replay_fraction=0.5)
    rp.train_step()  # fills the buffer
    batch = rp.sample_batch()
    assert batch.log_pf is None and batch.batch_size == 8


def test_training_with_kept_log_probs_matches_recomputation(float64):
    """Same seed, same updates: a few TB steps give the same parameters either way."""
    env = HyperGrid(2, 4)
    results = []
    for keep in (False, True):
        model = _model(env, seed=7)
        tr = _trainer(env, model, keep_log_probs=keep)
        torch.manual_seed(0)
        for _ in range(3):
            tr.train_step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-10)
