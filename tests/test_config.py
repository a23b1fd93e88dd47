"""The shared config system: defaults < config file < command line."""

import json
from dataclasses import dataclass, field

import pytest

from gfn.config import RunConfig, parse_config


@dataclass
class Cfg(RunConfig):
    height: int = field(default=8, metadata={"help": "side"})


def test_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("batch_size: 64\nheight: 5\nobjective: subtb\nobjective_args: {lamda: 0.5}\n")
    cfg = parse_config(Cfg, ["--config", str(f), "--height", "6", "--objective-arg", "weighting=equal",
                             "--no-shared-trunk"])
    assert cfg.batch_size == 64 and cfg.height == 6 and cfg.objective == "subtb"
    assert cfg.objective_args == {"lamda": 0.5, "weighting": "equal"}
    assert cfg.shared_trunk is False and cfg.iterations == 1000
    j = tmp_path / "run.json"
    j.write_text(json.dumps({"lr": 0.01}))
    assert parse_config(Cfg, ["--config", str(j)]).lr == 0.01


def test_unknown_field_in_file_is_an_error(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("batchsize: 3\n")
    with pytest.raises(SystemExit):
        parse_config(Cfg, ["--config", str(f)])
    assert "unknown config field(s) for Cfg: batchsize" in capsys.readouterr().err


def test_missing_config_file(capsys):
    with pytest.raises(SystemExit):
        parse_config(Cfg, ["--config", "/nonexistent/run.yaml"])
    assert "config file not found: /nonexistent/run.yaml" in capsys.readouterr().err
