"""replay_extra: the replayed trajectories come on top of batch_size fresh ones."""

from __future__ import annotations

import pytest

from gfn import Trainer, TrainerConfig
from gfn.envs import HyperGrid
from gfn.objectives import get_objective


@pytest.mark.parametrize("extra, fraction, fresh, total", [(True, 0.5, 8, 16), (True, 0.25, 8, 11), (False, 0.5, 4, 8)])
def test_replay_extra_keeps_batch_size_fresh_samples(count_reward_calls, extra, fraction, fresh, total):
    env = HyperGrid(2, 4)
    obj = get_objective("tb")
    trainer = Trainer(env, obj.build_model(env, hidden=8, n_layers=1), obj,
                      TrainerConfig(batch_size=8, replay_capacity=100, replay_fraction=fraction, replay_extra=extra))
    calls = count_reward_calls(env)
    first = trainer.train_step()
    assert first.batch.batch_size == 8 and trainer.n_samples == 8  # empty buffer: all fresh
    for _ in range(3):
        info = trainer.train_step()
        assert info.batch.batch_size == total
    assert trainer.n_samples == 8 + 3 * fresh
    assert sum(calls) == trainer.n_samples  # replayed objects reuse their stored rewards


def test_replay_extra_refuses_a_fraction_of_one():
    env = HyperGrid(2, 4)
    obj = get_objective("tb")
    trainer = Trainer(env, obj.build_model(env, hidden=8, n_layers=1), obj,
                      TrainerConfig(batch_size=8, replay_capacity=100, replay_fraction=1.0, replay_extra=True))
    with pytest.raises(ValueError, match="replay_fraction < 1"):
        trainer.train_step()
