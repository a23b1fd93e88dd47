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


def _example(monkeypatch, name):
    import importlib.util
    import sys
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}_defaults", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_sequence_example_defaults_replay_on_top_for_tfbind8_only(tmp_path, monkeypatch, data_dir):
    import json
    mod = _example(monkeypatch, "train_sequences")
    common = ["--iterations", "3", "--batch-size", "8", "--no-progress", "--hidden", "16", "--no-exact",
              "--data-dir", str(data_dir)]
    res = mod.main(["--task", "tfbind8", "--out", str(tmp_path / "tf")] + common)
    cfg = json.loads((tmp_path / "tf" / "config.json").read_text())
    assert cfg["prioritized_replay"] and cfg["replay_extra"] and cfg["replay_capacity"] == 10_000
    assert res["n_samples"] == 24  # batch_size fresh samples every iteration, replay on top
    res = mod.main(["--task", "bitseq", "--out", str(tmp_path / "bs")] + common)
    cfg = json.loads((tmp_path / "bs" / "config.json").read_text())
    assert not cfg["prioritized_replay"] and not cfg["replay_extra"] and cfg["replay_capacity"] == 0
