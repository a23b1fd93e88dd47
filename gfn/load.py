"""Load a trained run for use: ``env, model = gfn.load_run("runs/hg")``, and draw samples from it
(``gfn sample --run DIR -n 1000 --out samples.csv``).

The environment and the model are rebuilt from the configuration stored in the checkpoint (the
same code path as ``gfn train``, conditioning included) and only the model weights are loaded:
the optimizer, replay buffer and metric hooks of the run are not needed to sample.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch

from gfn.checkpoint import CheckpointError, _check_model, _fail, find_checkpoint, load_checkpoint
from gfn.config import ConfigError, RunConfig, config_from_dict


@dataclass
class LoadedRun:
    """A trained run: its environment and model (``env, model = load_run(...)`` unpacks these two),
    plus the objective, the run configuration, the iteration and the checkpoint file it came from."""

    env: Any
    model: torch.nn.Module
    objective: Any
    config: dict
    iteration: int
    checkpoint: str

    def __iter__(self) -> Iterator:
        return iter((self.env, self.model))


def load_run(run: str, env=None, *, device: str = "cpu", trust_code: bool = False) -> LoadedRun:
    """The environment and model of a trained run (a run directory: its latest checkpoint; or a
    checkpoint file), in eval mode on ``device``.

    ``env``: the environment to use; needed for runs of the example scripts, whose configuration
    does not name a registered environment.  Runs of ``gfn train --env module:Class`` name user
    code, which is imported only with ``trust_code=True``."""
    from gfn.envspec import build_env, check_env_source, train_config_class
    from gfn.conditioning import apply_run_flags
    from gfn.runner import build_objective_and_model, trainer_config
    from gfn.trainer import Trainer
    path = find_checkpoint(run)
    payload = load_checkpoint(path)
    saved = dict(payload.get("config") or {})
    overrides = {"device": device, "resume": "", "out": "", "config": "", "progress": False}
    if env is None:
        name = saved.get("env")
        if not name:
            raise ConfigError(f"the run {run} does not name a registered environment (an example script's run)",
                              hint="pass the environment: load_run(run, env=MyEnv(...))")
        check_env_source(name, f"the run configuration of {run}", trust_code)
        cls = train_config_class(name)
        cfg = _config(cls, saved, overrides)
        env = build_env(cfg)
    else:
        cfg = _config(RunConfig, saved, overrides)
    objective, model = build_objective_and_model(cfg, env)
    trainer = Trainer(env, model, objective, trainer_config(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # evaluation-only flags (--eval-betas) warn about training
        if getattr(cfg, "condition", "none") in _pref_modes():
            from gfn.preference_flags import apply_preference_flags
            apply_preference_flags(cfg, trainer)
        else:
            apply_run_flags(cfg, trainer)  # --condition rebuilds the model as it was trained
    from gfn.exploration import make_thompson, parse_exploration
    thompson = parse_exploration(getattr(cfg, "exploration", "none"))
    if thompson is not None:  # --exploration thompson:K trained K policy heads
        make_thompson(trainer.model, thompson[0])
    from gfn.intrinsic import add_flow_head, parse_intrinsic
    intrinsic = parse_intrinsic(getattr(cfg, "intrinsic", "none"))
    if intrinsic is not None and intrinsic[1] == "flow":  # GAFN's flow form trained a log F head
        add_flow_head(trainer.model)
    model = trainer.model
    problems: list[str] = []
    _check_model(payload["model"], model, problems)
    _fail(path, problems)
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    return LoadedRun(env, model, objective, saved, int(payload["iteration"]), path)


def _pref_modes() -> tuple:
    try:
        from gfn.preferences import PREF_MODES
    except ImportError:
        return ()
    return tuple(PREF_MODES)


def _config(cls, saved: dict, overrides: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    data = {k: v for k, v in saved.items() if k in names}
    data.update({k: v for k, v in overrides.items() if k in names})
    try:
        return config_from_dict(cls, data)
    except ConfigError as e:
        raise CheckpointError(f"the configuration stored in the run is not valid here: {e}") from e


def sample_columns(env, states, log_rewards: torch.Tensor) -> dict:
    """Columns of a sample table: ``s0, s1, ...`` for tensor states of shape [n, d], ``x`` for
    other tensors (flattened, space-separated), ``object`` when the environment can write objects
    as text (``to_strings``, ``to_smiles``), and ``log_reward``."""
    cols: dict = {}
    if callable(getattr(env, "to_strings", None)):
        cols["object"] = list(env.to_strings(states))
    elif callable(getattr(env, "to_smiles", None)):
        cols["object"] = ["" if s is None else s for s in env.to_smiles(states)]
    if torch.is_tensor(states):
        t = states.detach().cpu()
        if t.dim() == 2:
            for j in range(t.shape[1]):
                cols[f"s{j}"] = t[:, j].tolist()
        elif "object" not in cols:
            cols["x"] = [" ".join(str(v) for v in row.reshape(-1).tolist()) for row in t]
    elif "object" not in cols:
        raise ValueError(f"cannot write states of type {type(states).__name__} as a table "
                         "(give the environment a to_strings(states) method)")
    cols["log_reward"] = log_rewards.detach().double().cpu().tolist()
    return cols


def sample(loaded: LoadedRun, n: int, *, seed: Optional[int] = 0, batch_size: int = 1000,
           beta: Optional[float] = None) -> list[tuple]:
    """Draw ``n`` objects from the run's forward policy (no exploration), ``batch_size`` at a time;
    returns ``[(terminal states, log rewards), ...]`` per call.  ``beta``: the condition of a
    conditional model (default: its own default beta)."""
    from gfn.sampler import Sampler
    env, model = loaded.env, loaded.model
    if seed is not None:
        from gfn.utils import seed_everything
        seed_everything(seed)
    if beta is not None and getattr(model, "cond_dim", 0) != 1:
        raise ConfigError("--beta applies to a temperature-conditioned run (--condition logit|layer) only")
    sampler = Sampler(env, model)
    out, left = [], int(n)
    with torch.no_grad():
        while left > 0:
            k = min(batch_size, left)
            cond = None
            if beta is not None:
                p = next(model.parameters())
                cond = torch.full((k, 1), float(beta), device=p.device, dtype=p.dtype)
            batch = sampler.sample(k, cond=cond)
            out.append((batch.terminal_states, batch.log_rewards))
            left -= k
    return out


def write_samples_csv(loaded: LoadedRun, path: str, n: int, *, seed: Optional[int] = 0, batch_size: int = 1000,
                      beta: Optional[float] = None) -> int:
    """Draw ``n`` objects (:func:`sample`) and write them as CSV, one row per object; returns n."""
    parts = sample(loaded, n, seed=seed, batch_size=batch_size, beta=beta)
    tables = [sample_columns(loaded.env, s, lr) for s, lr in parts]
    header = list(tables[0])
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=d)
    try:  # a fresh temporary file, renamed into place once complete
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for t in tables:
                w.writerows(zip(*(t[c] for c in header)))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
    return int(n)
