"""Run machinery against bad or hostile input (issue 16): code is loaded only when the command line
asks for it, config values are type- and range-checked where they enter, user errors are one line
(tracebacks with --debug), nothing is written before a run is accepted, run directories are locked
and never silently overwritten, trained runs can be loaded and sampled."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from gfn.cli import main as gfn_main
from gfn.config import ConfigError, RunConfig, parse_config

from conftest import REPO

TINY = ["--env", "hypergrid", "--height", "4", "--hidden", "16", "--batch-size", "4", "--no-progress"]


def train(out, *extra, iterations=3):
    return gfn_main(["train", *TINY, "--iterations", str(iterations), "--out", str(out), *extra])


def error_lines(capsys) -> list:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


PLANTED = '''
import pathlib
pathlib.Path(__file__).with_name("EXECUTED").write_text("ran")
from gfn.envs import HyperGrid as Planted
'''


# ---------------------------------------------------------------------------- 1: no code from files
def test_resume_never_imports_code_named_by_the_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run) == 0
    (run / "helper_env.py").write_text(PLANTED)
    cfg = json.loads((run / "config.json").read_text())
    cfg["env"] = f"{run / 'helper_env.py'}:Planted"
    (run / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert gfn_main(["train", "--resume", str(run), "--iterations", "5", "--no-progress"]) == 2
    assert not (run / "EXECUTED").exists()
    assert "--trust-code" in capsys.readouterr().err


def test_config_file_cannot_name_code_without_trust_code(tmp_path, capsys):
    (tmp_path / "helper_env.py").write_text(PLANTED)
    f = tmp_path / "run.yaml"
    f.write_text(f"env: {tmp_path / 'helper_env.py'}:Planted\nheight: 4\nhidden: 16\nbatch_size: 4\n"
                 "iterations: 2\nprogress: false\n")
    assert gfn_main(["train", "--config", str(f), "--out", str(tmp_path / "a")]) == 2
    assert not (tmp_path / "EXECUTED").exists() and not (tmp_path / "a").exists()
    assert "--trust-code" in capsys.readouterr().err
    # the explicit flag (or --env on the command line) loads it
    assert gfn_main(["train", "--config", str(f), "--out", str(tmp_path / "b"), "--trust-code"]) == 0
    assert (tmp_path / "EXECUTED").exists()
    # registered names in a file stay fine without the flag
    f.write_text("env: hypergrid\nheight: 4\nhidden: 16\nbatch_size: 4\niterations: 2\nprogress: false\n")
    assert gfn_main(["train", "--config", str(f), "--out", str(tmp_path / "c")]) == 0


# ---------------------------------------------------------------------------- 3: types
@pytest.mark.parametrize("line,key,expected", [
    ('shared_trunk: "false"', "shared_trunk", "bool"),
    ("batch_size: true", "batch_size", "int"),
    ("iterations: 2.7", "iterations", "int"),
    ("lr: '0.1'", "lr", "float"),
    ("objective: 3", "objective", "str"),
    ("objective_args: [1, 2]", "objective_args", "dict"),
])
def test_config_values_are_type_checked(tmp_path, capsys, line, key, expected):
    f = tmp_path / "run.yaml"
    f.write_text(line + "\n")
    with pytest.raises(SystemExit):
        parse_config(RunConfig, ["--config", str(f)])
    msg = " ".join(error_lines(capsys))
    assert key in msg and expected in msg
    with pytest.raises(ConfigError, match=key):
        RunConfig(**{key: __import__("yaml").safe_load(line)[key]})


def test_yaml_exponent_numbers_are_floats(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("lr: 1e-3\nlr_log_z: 5E-2\nepsilon: 0\n")
    cfg = parse_config(RunConfig, ["--config", str(f)])
    assert cfg.lr == 1e-3 and cfg.lr_log_z == 0.05 and cfg.epsilon == 0.0 and isinstance(cfg.epsilon, float)


# ---------------------------------------------------------------------------- 4: ranges
@pytest.mark.parametrize("flags,key", [
    (["--lr", "-0.001"], "lr"), (["--lr", "0"], "lr"), (["--lr", "nan"], "lr"), (["--lr-log-z", "0"], "lr_log_z"),
    (["--iterations", "-1"], "iterations"), (["--batch-size", "0"], "batch_size"), (["--hidden", "0"], "hidden"),
    (["--epsilon", "1.5"], "epsilon"), (["--epsilon", "-0.1"], "epsilon"), (["--temperature", "0"], "temperature"),
    (["--replay-fraction", "1.2"], "replay_fraction"), (["--grad-clip", "inf"], "grad_clip"),
    (["--replay-policy", "top"], "replay_capacity"), (["--keep-checkpoints", "0"], "keep_checkpoints"),
])
def test_out_of_range_values_are_refused(tmp_path, capsys, flags, key):
    assert gfn_main(["train", *TINY, "--iterations", "2", "--out", str(tmp_path / "r"), *flags]) == 2
    lines = error_lines(capsys)
    assert key in lines[0] and len(lines) <= 2
    assert not (tmp_path / "r").exists()


def test_valid_edge_values_are_accepted():
    cfg = RunConfig(iterations=0, epsilon=1.0, replay_fraction=0.0, grad_clip=0.0, replay_capacity=10,
                    replay_policy="top")
    assert cfg.epsilon == 1.0
    with pytest.raises(ConfigError, match="lr"):
        RunConfig(lr=-1e-3)


# ---------------------------------------------------------------------------- 6: one-line errors
@pytest.mark.parametrize("flags,needle", [
    (["--objective", "nope"], "subtb"),  # lists the valid objectives
    (["--objective", "subtb", "--objective-arg", "lamdba=0.9"], "lamda"),  # lists the valid keys
    (["--height", "1"], "height"),  # the environment refuses its parameters
    (["--config", "/nonexistent/run.yaml"], "not found"),
])
def test_user_errors_are_one_line(tmp_path, capsys, flags, needle):
    assert gfn_main(["train", *TINY, "--iterations", "2", "--out", str(tmp_path / "r"), *flags]) == 2
    lines = error_lines(capsys)
    assert 1 <= len(lines) <= 2 and needle in " ".join(lines), lines
    assert not (tmp_path / "r").exists()


def test_malformed_config_missing_resume_and_file_as_out(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\n")
    assert gfn_main(["train", *TINY, "--config", str(bad)]) == 2
    assert "bad.yaml" in " ".join(error_lines(capsys))
    assert gfn_main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    msg = " ".join(error_lines(capsys))
    assert "nowhere" in msg and "choose an environment" not in msg
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert train(afile) == 2
    assert "not a directory" in " ".join(error_lines(capsys))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(tmp_path, capsys):
    assert train(tmp_path / "r", "--device", "cuda") == 2
    assert "CUDA" in " ".join(error_lines(capsys))


def test_lambda_is_an_alias_of_lamda(tmp_path):
    cfg = parse_config(RunConfig, ["--objective", "subtb", "--objective-arg", "lambda=0.5"])
    assert cfg.objective_args == {"lamda": 0.5}


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError, match="nope"):
        gfn_main(["train", *TINY, "--objective", "nope", "--debug", "--out", str(tmp_path / "r")])


# ---------------------------------------------------------------------------- 11: nothing written early
def test_refused_resume_writes_nothing(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert train(run) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert gfn_main(["train", "--resume", str(run), "--iterations", "5", "--lr", "0.5", "--no-progress"]) == 2
    assert "'lr'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # the plain resume still works, and --config with --resume writes into the resumed run
    monkeypatch.chdir(tmp_path)
    assert gfn_main(["train", "--config", str(run / "config.json"), "--resume", str(run), "--iterations", "5"]) == 0
    assert not (tmp_path / "runs").exists()
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 5


# ---------------------------------------------------------------------------- 12: run directories
def test_non_empty_out_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "r"
    assert train(out) == 0
    first = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert train(out, "--seed", "1") == 2
    msg = " ".join(error_lines(capsys))
    assert "--overwrite" in msg and "--resume" in msg
    assert (out / "metrics.json").read_text() == first
    assert train(out, "--seed", "1", "--overwrite", iterations=2) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_00000002.pt"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["seed"] == 1 and saved["overwrite"] is False  # a reproduction does not overwrite


def test_a_locked_run_directory_is_refused(tmp_path, capsys):
    from gfn.rundir import RunDirLock
    out = tmp_path / "r"
    out.mkdir()
    with RunDirLock(str(out)):
        assert train(out) == 2
        assert "in use" in " ".join(error_lines(capsys))
        assert gfn_main(["train", "--resume", str(out)]) == 2
    assert train(out) == 0  # released


# ---------------------------------------------------------------------------- 14: load and sample
def test_load_run_and_sample_command(tmp_path, capsys):
    import gfn
    from gfn.metrics import exact_metrics
    run = tmp_path / "run"
    assert train(run, "--seed", "2", iterations=30) == 0
    capsys.readouterr()
    env, model = gfn.load_run(str(run))
    saved = json.loads((run / "metrics.json").read_text())
    assert exact_metrics(env, model)["tv_exact"] == pytest.approx(saved["tv_exact"], abs=1e-12)
    out = tmp_path / "samples.csv"
    assert gfn_main(["sample", "--run", str(run), "-n", "300", "--out", str(out), "--seed", "0"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 300 and set(rows[0]) == {"s0", "s1", "log_reward"}
    states = torch.tensor([[int(r["s0"]), int(r["s1"])] for r in rows])
    assert ((states >= 0) & (states < 4)).all()
    lr = torch.tensor([float(r["log_reward"]) for r in rows], dtype=torch.float64)
    assert torch.allclose(lr, env.log_reward(states).double(), atol=1e-6)
    # the same seed draws the same objects; an existing file is not overwritten silently
    assert gfn_main(["sample", "--run", str(run), "-n", "300", "--out", str(out), "--seed", "0"]) == 2
    again = tmp_path / "again.csv"
    assert gfn_main(["sample", "--run", str(run), "-n", "300", "--out", str(again), "--seed", "0"]) == 0
    assert again.read_text() == out.read_text()


# ---------------------------------------------------------------------------- 15: sibling modules
def test_check_env_file_imports_its_sibling_modules(tmp_path, capsys):
    pkg = tmp_path / "myproject"
    pkg.mkdir()
    (pkg / "grid_base_helpers.py").write_text("from gfn.envs import HyperGrid as Base\n")
    (pkg / "my_env.py").write_text("from grid_base_helpers import Base\n\nclass MyGrid(Base):\n"
                                   "    '''A hypergrid under another name.'''\n")
    r = subprocess.run([sys.executable, "-m", "gfn", "check-env", f"{pkg / 'my_env.py'}:MyGrid",
                        "--arg", "height=3"], capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    assert "all" in r.stdout
