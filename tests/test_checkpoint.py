"""Checkpoints: bit-exact resume, atomic writes, clear errors (never a half-loaded model), SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import gfn
from gfn.checkpoint import (CheckpointError, CheckpointManager, build_checkpoint, capture_rng_state,
                            find_checkpoint, load_checkpoint, restore_checkpoint, restore_rng_state,
                            save_checkpoint)
from gfn.cli import main as gfn_main
from gfn.envs import HyperGrid
from gfn.objectives import get_objective

from conftest import REPO

# replay (per-rank buffer state), epsilon exploration (RNG), periodic evaluation (RNG isolation),
# periodic checkpoints and a stateful metrics hook are all exercised
COMMON = ["train", "--env", "hypergrid", "--height", "6", "--hidden", "32", "--batch-size", "8",
          "--replay-capacity", "40", "--epsilon", "0.1", "--eval-every", "30", "--log-every", "7",
          "--checkpoint-every", "20", "--no-progress"]


def final_state(run_dir):
    return load_checkpoint(find_checkpoint(str(run_dir)))


def test_resume_is_bit_exact(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert gfn_main(COMMON + ["--iterations", "100", "--out", str(straight)]) == 0
    assert gfn_main(COMMON + ["--iterations", "50", "--out", str(split)]) == 0
    assert gfn_main(["train", "--resume", str(split), "--iterations", "100", "--no-progress"]) == 0
    a, b = final_state(straight), final_state(split)
    assert a["iteration"] == b["iteration"] == 100
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert torch.equal(a["rank_states"][0]["rng"]["torch_cpu"], b["rank_states"][0]["rng"]["torch_cpu"])
    ma = json.loads((straight / "metrics.json").read_text())
    mb = json.loads((split / "metrics.json").read_text())
    for k in ("loss", "log_z", "tv_exact", "n_samples", "top100_log_reward", "modes_found"):
        assert ma[k] == mb[k], k  # the metrics hook state was checkpointed too
    # only the newest `keep_checkpoints` periodic files remain; `latest` names the final one
    files = sorted(p.name for p in (split / "checkpoints").glob("step_*.pt"))
    assert files == ["step_00000080.pt", "step_00000100.pt"]
    assert (split / "checkpoints" / "latest").read_text() == "step_00000100.pt"
    assert "resumed from" in (split / "log.txt").read_text()


def small_trainer(height=6, hidden=32, seed=0, replay=0):
    gfn.seed_everything(seed)
    env = HyperGrid(2, height)
    obj = get_objective("tb")
    model = obj.build_model(env, hidden=hidden, n_layers=2)
    return gfn.Trainer(env, model, obj, gfn.TrainerConfig(batch_size=8, replay_capacity=replay))


def snapshot(trainer):
    return ({k: v.clone() for k, v in trainer.model.state_dict().items()},
            json.dumps(str(trainer.optimizer.state_dict())), trainer.iteration, torch.get_rng_state().clone())


def assert_unchanged(trainer, snap):
    params, opt, it, rng = snap
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, params[k]), f"{k} was modified by a failed load"
    assert json.dumps(str(trainer.optimizer.state_dict())) == opt
    assert trainer.iteration == it
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.fixture
def saved(tmp_path):
    t = small_trainer(replay=20)
    t.train(3)
    path = str(tmp_path / "ck.pt")
    save_checkpoint(path, build_checkpoint(t, config={"hidden": 32, "lr": 1e-3}))
    return path, t


def test_checkpoint_loads_weights_only_and_round_trips(saved):
    path, t = saved
    raw = torch.load(path, weights_only=True)  # no pickled code anywhere
    assert raw["format"] == "gfn-checkpoint" and raw["iteration"] == 3
    fresh = small_trainer(seed=5, replay=20)
    restore_checkpoint(load_checkpoint(path), fresh, config={"hidden": 32, "lr": 1e-3})
    assert fresh.iteration == 3 and len(fresh.replay) == len(t.replay)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, fresh.model.state_dict()[k])
    # both continue identically from the restored RNG state
    rng = capture_rng_state()
    losses = t.train(2)
    restore_rng_state(rng)
    assert fresh.train(2) == losses


def test_truncated_checkpoint_is_a_clear_error(saved):
    path, _ = saved
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_flipped_tensor_byte_fails_the_checksum(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["model"]))
    payload["model"][key].view(-1)[0] += 1e-3  # silent corruption that torch.load would accept
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"model": {}}, p)
    with pytest.raises(CheckpointError, match="not a gfn checkpoint"):
        load_checkpoint(str(p))
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        find_checkpoint(str(tmp_path))


def test_mismatched_model_is_rejected_and_nothing_is_loaded(saved):
    path, _ = saved
    # height 8: the first layer's shape differs but every later layer matches, so a plain
    # load_state_dict would copy those and then fail: a half-loaded model
    other = small_trainer(height=8, seed=1, replay=20)
    other.train(1)
    snap = snapshot(other)
    with pytest.raises(CheckpointError) as e:
        restore_checkpoint(load_checkpoint(path), other, config={"hidden": 32, "lr": 1e-3})
    msg = str(e.value)
    assert "trunk.0.weight" in msg and "nothing was loaded" in msg
    assert_unchanged(other, snap)


def test_config_and_world_size_mismatch(saved):
    path, _ = saved
    t = small_trainer(replay=20)
    snap = snapshot(t)
    payload = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="'lr' is 0.001 in the checkpoint but 0.01 now"):
        restore_checkpoint(payload, t, config={"hidden": 32, "lr": 1e-2})
    with pytest.raises(CheckpointError, match="written by 1 process"):
        restore_checkpoint(payload, t, config={"hidden": 32, "lr": 1e-3}, world_size=2)
    no_replay = small_trainer(replay=0)
    with pytest.raises(CheckpointError, match="replay buffer but this run has none"):
        restore_checkpoint(payload, no_replay)
    assert_unchanged(t, snap)


def test_failure_during_load_rolls_back(saved, monkeypatch):
    path, _ = saved
    t = small_trainer(replay=20)
    t.train(1)
    snap = snapshot(t)

    real = t.optimizer.load_state_dict
    calls = []

    def broken_once(d):  # fails while loading the checkpoint (after the model was loaded)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk gone")
        return real(d)
    monkeypatch.setattr(t.optimizer, "load_state_dict", broken_once)
    with pytest.raises(CheckpointError, match="left unchanged"):
        restore_checkpoint(load_checkpoint(path), t)
    monkeypatch.undo()
    assert_unchanged(t, snap)


def test_write_is_atomic(tmp_path, monkeypatch, saved):
    path, t = saved
    before = open(path, "rb").read()

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("killed mid-write")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, build_checkpoint(t))
    monkeypatch.undo()
    assert open(path, "rb").read() == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left
    mgr = CheckpointManager(str(tmp_path / "run"), keep=1)
    mgr.save(build_checkpoint(t))
    assert find_checkpoint(str(tmp_path / "run")).endswith("step_00000003.pt")


def test_resume_with_different_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    assert gfn_main(COMMON + ["--iterations", "5", "--out", str(out)]) == 0
    capsys.readouterr()
    assert gfn_main(["train", "--resume", str(out), "--iterations", "10", "--lr", "0.01", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "setting 'lr' is 0.001 in the checkpoint but 0.01 now" in err and "nothing was loaded" in err


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "gfn", "train", "--env", "hypergrid", "--height", "6", "--hidden", "32",
           "--iterations", "1000000", "--checkpoint-every", "0", "--log-every", "5", "--no-progress",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        log = out / "log.txt"
        while time.time() < deadline:  # wait until training is under way
            if log.exists() and "step=" in log.read_text():
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
        else:
            pytest.fail("training did not start")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 128 + signal.SIGTERM, proc.stdout.read().decode()
    ck = load_checkpoint(find_checkpoint(str(out)))
    assert ck["iteration"] >= 5
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True
    assert "stopped by signal" in (out / "log.txt").read_text()
    # and the run continues from it
    it = ck["iteration"]
    assert gfn_main(["train", "--resume", str(out), "--iterations", str(it + 3), "--no-progress"]) == 0
    assert load_checkpoint(find_checkpoint(str(out)))["iteration"] == it + 3


# ---------------------------------------------------------------------------- confinement, temp files (issue 16)
def test_latest_cannot_point_outside_the_checkpoint_folder(tmp_path, saved):
    path, t = saved
    run = tmp_path / "run"
    CheckpointManager(str(run)).save(build_checkpoint(t))
    other = tmp_path / "other_run" / "checkpoints"
    other.mkdir(parents=True)
    save_checkpoint(str(other / "step_00000009.pt"), build_checkpoint(t))
    for name in ("../../other_run/checkpoints/step_00000009.pt", str(other / "step_00000009.pt"), "latest"):
        (run / "checkpoints" / "latest").write_text(name)
        with pytest.raises(CheckpointError, match="latest"):
            find_checkpoint(str(run))


def test_temporary_files_are_not_opened_through_symlinks(tmp_path, saved):
    path, t = saved
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    d = tmp_path / "run" / "checkpoints"
    d.mkdir(parents=True)
    for name in (f".step_00000003.pt.tmp{os.getpid()}", f".latest.tmp{os.getpid()}"):
        os.symlink(victim, d / name)  # the names the old writer used
    CheckpointManager(str(tmp_path / "run")).save(build_checkpoint(t))
    assert victim.read_text() == "precious"
    assert (d / "latest").read_text() == "step_00000003.pt"


def test_stale_temporary_files_are_removed_on_the_next_start(tmp_path, capsys):
    out = tmp_path / "r"
    assert gfn_main(COMMON + ["--iterations", "4", "--out", str(out)]) == 0
    stale = out / "checkpoints" / ".step_00000008.pt.tmpab12cd"
    stale.write_bytes(b"half a checkpoint")
    assert gfn_main(["train", "--resume", str(out), "--iterations", "6", "--no-progress"]) == 0
    assert not stale.exists()


def _resave_raw(path, payload):
    from gfn.checkpoint import checksum
    payload["checksum"] = checksum(payload)  # a well-formed file with a valid checksum
    torch.save(payload, path)


@pytest.mark.parametrize("damage", ["meta", "trainer", "hooks", "config", "rank_states", "model", "optimizer"])
def test_malformed_parts_raise_the_checkpoint_error(saved, damage):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    if damage in ("trainer", "hooks"):
        payload["rank_states"][0][damage] = [1, 2]
    else:
        payload[damage] = "oops" if damage != "config" else [1, 2]
    _resave_raw(path, payload)
    t = small_trainer(replay=20)
    snap = snapshot(t)
    with pytest.raises(CheckpointError):
        restore_checkpoint(load_checkpoint(path), t, config={"hidden": 32, "lr": 1e-3})
    assert_unchanged(t, snap)


# ---------------------------------------------------------------------------- divergence (issue 16)
def test_non_finite_checkpoints_are_never_written_nor_loaded(tmp_path, saved):
    path, t = saved
    with torch.no_grad():
        next(t.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(str(tmp_path / "nan.pt"), build_checkpoint(t))
    assert not (tmp_path / "nan.pt").exists()
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["model"]))
    payload["model"][key].view(-1)[0] = float("inf")
    _resave_raw(path, payload)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(path)


def test_divergence_stops_with_one_clear_message(tmp_path, capsys):
    out = tmp_path / "r"
    # an absurd log Z learning rate: log Z leaves float32 range after one Adam step
    rc = gfn_main(COMMON + ["--iterations", "50", "--lr-log-z", "1e39", "--checkpoint-every", "1", "--out", str(out)])
    assert rc == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in " ".join(err) and len(err) <= 2
    assert "diverged at iteration" in err[0] and "--lr-log-z" in " ".join(err)
    for p in (out / "checkpoints").glob("step_*.pt"):
        load_checkpoint(str(p))  # every checkpoint that exists is finite and loads
