"""The gfn command line: train any registered env, list envs/objectives, check-env, config files."""

import json
import subprocess
import sys

import pytest

from gfn.cli import env_parameters, main, train_config_class
from gfn.config import parse_config
from gfn.envs import HyperGrid

from conftest import REPO

BROKEN_ENV = '''
import torch
from gfn.envs import HyperGrid

class WrongBackward(HyperGrid):
    """backward_step decrements the wrong axis: step then backward_step is not the identity."""
    def backward_step(self, states, actions):
        return states - torch.nn.functional.one_hot((actions + 1) % self.ndim, self.ndim)
'''


def test_envs_and_objectives_are_listed(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "hypergrid" in out and "HyperGrid(ndim=2, height=8" in out
    assert main(["objectives"]) == 0
    out = capsys.readouterr().out
    assert "tb " in out and "subtb" in out and "lamda=0.9" in out


def test_unknown_command_and_help(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main([]) == 0
    assert "check-env" in capsys.readouterr().out


def test_check_env_passes_and_fails(tmp_path, capsys):
    assert main(["check-env", "gfn.envs.hypergrid:HyperGrid", "--arg", "ndim=3", "--arg", "height=4"]) == 0
    assert "all" in capsys.readouterr().out
    mod = tmp_path / "broken_env.py"
    mod.write_text(BROKEN_ENV)
    assert main(["check-env", f"{mod}:WrongBackward"]) == 1
    out = capsys.readouterr().out
    assert "problem(s)" in out and "backward_step" in out
    assert main(["check-env", "hypergrid"]) == 0  # registered names work too


def test_env_constructor_parameters_become_flags():
    names = {n: (p, t) for n, p, t, _ in env_parameters(HyperGrid)}
    assert names["height"] == ("height", int) and names["R0"] == ("R0", float)
    assert "device" not in names and "reward" not in names  # shared flag / not expressible
    cls = train_config_class("hypergrid")
    cfg = parse_config(cls, ["--env", "hypergrid", "--height", "5", "--R2", "3"])
    assert cfg.height == 5 and cfg.R2 == 3.0 and cfg.ndim == 2


def test_clashing_env_parameter_gets_a_prefix():
    names = {n: p for n, p, _, _ in env_parameters(lambda temperature=1.0, seq_len=4: None)}
    assert names == {"env_temperature": "temperature", "seq_len": "seq_len"}


def test_train_and_reproduce_from_config_file(tmp_path, capsys):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("env: hypergrid\nheight: 5\nobjective: subtb\nobjective_args: {lamda: 0.9}\n"
                        "hidden: 16\niterations: 15\nbatch_size: 8\nprogress: false\n")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--config", str(run_yaml), "--out", str(a), "--seed", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((a / "config.json").read_text())
    assert saved["env"] == "hypergrid" and saved["height"] == 5 and saved["objective"] == "subtb"
    assert saved["seed"] == 3 and saved["resume"] == ""
    # the written config.json reproduces the run exactly
    assert main(["train", "--config", str(a / "config.json"), "--out", str(b)]) == 0
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    for k in ("loss", "log_z", "tv_exact", "n_samples"):
        assert ma[k] == mb[k] == printed[k]


def test_train_needs_an_env(capsys):
    assert main(["train", "--iterations", "3"]) == 2
    assert "--env NAME" in capsys.readouterr().err
    assert main(["train", "--env", "nope"]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err


def test_console_script_and_module_entry_points():
    r = subprocess.run(["gfn", "envs"], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 0 and "hypergrid" in r.stdout
    r = subprocess.run([sys.executable, "-m", "gfn", "train", "--env", "hypergrid", "--help"],
                       capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 0 and "--height" in r.stdout and "--objective" in r.stdout


def test_tutorial_env_passes_check_env(capsys):
    assert main(["check-env", str(REPO / "examples" / "custom_env.py") + ":Subsets"]) == 0
    assert "all" in capsys.readouterr().out


def test_sample_tracker_counts_distinct_objects_and_modes():
    import torch
    import gfn
    from gfn.cli import SampleTracker
    from gfn.objectives import get_objective
    env = HyperGrid(2, 4)
    tracker = SampleTracker(env, top_k=3, mode_mask=env.mode_mask())
    gfn.seed_everything(0)
    obj = get_objective("tb")
    trainer = gfn.Trainer(env, obj.build_model(env, hidden=8), obj, gfn.TrainerConfig(batch_size=64),
                          hooks=[tracker])
    trainer.train(2)
    seen = torch.unique(tracker.top_states, dim=0)
    assert seen.shape[0] == tracker.top.numel() == 3  # distinct objects, not repeated draws
    assert torch.equal(tracker.top, env.log_reward(tracker.top_states).double())
    m = tracker.metrics()
    assert m["n_modes"] == 4 and 1 <= m["modes_found"] <= 4
    assert m["max_log_reward"] == float(env.log_reward(env.enumerate_states()).max())
