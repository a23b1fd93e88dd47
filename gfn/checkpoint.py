"""Checkpoints that resume bit-exactly, are written atomically and are validated before loading.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values, so it
loads with ``torch.load(weights_only=True)``:

* ``model`` and ``optimizer`` state dicts (identical on every rank, stored once);
* ``rank_states``: one entry per rank with the rest of :meth:`Trainer.state_dict` (iteration,
  sample count, replay buffer), the RNG states (torch CPU/CUDA, Python ``random``, NumPy) and
  the state of stateful hooks (any hook with ``state_dict``/``load_state_dict``);
* ``config`` (the run configuration), ``runner`` (logger step, wall time) and ``meta``;
* ``checksum``: a hash of everything above, so a flipped byte is caught, not loaded.

Files live in ``<run>/checkpoints/step_<iteration>.pt``; ``<run>/checkpoints/latest`` names
the newest (only a ``step_<n>.pt`` file of that folder is followed).  Each is written to a fresh
temporary file (``tempfile``, exclusive create, never through an existing name or link) in the
same folder, fsynced and renamed into place, so a crash mid-write never leaves a truncated
checkpoint under a checkpoint's name; the next run removes stale temporary files.  Model and
optimizer tensors must be finite: a diverged model is never written, nor loaded.

:func:`restore_checkpoint` validates *everything* (model keys, shapes and dtypes, optimizer
groups and state shapes, replay states, RNG states, hooks, world size, configuration) before it
touches the live objects, and rolls back if loading still fails, so a bad checkpoint never
leaves a half-loaded model.
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
import re
import signal
import tempfile
import threading
import time
from collections import OrderedDict
import warnings
from typing import Any, Iterable, Optional

import numpy as np
import torch

FORMAT = "gfn-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"

#: run-configuration fields that may differ between a checkpoint and the run resuming it
#: (everything else must match: a different learning rate or model size is a different run)
RESUME_MUTABLE_FIELDS = {"iterations", "out", "resume", "config", "progress", "log_every", "eval_every", "eval_betas",
                         "checkpoint_every", "keep_checkpoints", "device"}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, or does not match the run that tries to load it."""


# ---------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict:
    """RNG states of torch (CPU and CUDA), Python ``random`` and NumPy's global generator."""
    version, key, gauss = random.getstate()
    np_state = np.random.get_state()
    d = {"torch_cpu": torch.get_rng_state(),
         "python": {"version": int(version), "key": torch.tensor(key, dtype=torch.int64), "gauss": gauss},
         "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                   "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        d["torch_cuda"] = torch.cuda.get_rng_state_all()
    return d


def restore_rng_state(d: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(d["torch_cpu"])
    py = d["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["key"].tolist()), py["gauss"]))
    n = d["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "torch_cuda" in d and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(d["torch_cuda"])


# ---------------------------------------------------------------------------- capture
def stateful_hooks(trainer) -> dict:
    """Trainer hooks that carry state across a resume (those with state_dict/load_state_dict)."""
    out = {}
    for kind in ("hooks", "batch_hooks"):
        for i, h in enumerate(getattr(trainer, kind, []) or []):
            if callable(getattr(h, "state_dict", None)) and callable(getattr(h, "load_state_dict", None)):
                out[f"{kind}/{i}/{type(h).__name__}"] = h
    src = getattr(trainer, "batch_source", None)  # e.g. the local-search paper rounds
    if callable(getattr(src, "state_dict", None)) and callable(getattr(src, "load_state_dict", None)):
        out[f"batch_source/{type(src).__name__}"] = src
    return out


def _replay_is_savable(trainer) -> bool:
    r = getattr(trainer, "replay", None)
    return r is None or r.states is None or torch.is_tensor(r.states)


def trainer_state(trainer) -> tuple[dict, bool]:
    """``trainer.state_dict()``; a replay buffer of non-tensor states is left out (flag False)."""
    if _replay_is_savable(trainer):
        return trainer.state_dict(), True
    replay, trainer.replay = trainer.replay, None
    try:
        return trainer.state_dict(), False
    finally:
        trainer.replay = replay


def rank_state(trainer) -> dict:
    """The per-rank part of a checkpoint: trainer counters and replay, RNG states, hook states."""
    sd, replay_saved = trainer_state(trainer)
    rest = {k: v for k, v in sd.items() if k not in ("model", "optimizer")}
    return {"trainer": rest, "replay_saved": replay_saved, "rng": capture_rng_state(),
            "hooks": {k: h.state_dict() for k, h in stateful_hooks(trainer).items()}}


def build_checkpoint(trainer, config: Optional[dict] = None, runner: Optional[dict] = None,
                     rank_states: Optional[list] = None) -> dict:
    """The checkpoint payload of ``trainer`` (``rank_states``: one per rank; default: this process)."""
    sd, _ = trainer_state(trainer)
    if rank_states is None:
        rank_states = [rank_state(trainer)]
    objective = trainer.objective
    return {"format": FORMAT, "version": VERSION, "iteration": int(trainer.iteration),
            "world_size": len(rank_states), "model": sd["model"], "optimizer": sd["optimizer"],
            "rank_states": rank_states, "config": dict(config or {}), "runner": dict(runner or {}),
            "meta": {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": str(torch.__version__),
                     "model_class": type(trainer.model).__name__, "env_class": type(trainer.env).__name__,
                     "objective": getattr(objective, "name", "") or type(objective).__name__,
                     "optimizer_class": type(trainer.optimizer).__name__}}


# ---------------------------------------------------------------------------- checksum / leaves
# exact types: subclasses (numpy scalars, TorchVersion, defaultdict) need globals weights_only refuses
_LEAF_TYPES = (int, float, bool, str, type(None), torch.dtype, torch.device)
_DICT_TYPES = (dict, OrderedDict)


def _walk(obj, path: str, visit) -> None:
    if type(obj) in _DICT_TYPES:
        visit(path, "dict", len(obj))
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"checkpoint key {k!r} at {path or '/'} is not a str or int")
            _walk(obj[k], f"{path}/{k}", visit)
    elif type(obj) in (list, tuple):
        visit(path, type(obj).__name__, len(obj))
        for i, v in enumerate(obj):
            _walk(v, f"{path}/{i}", visit)
    elif type(obj) in (torch.Tensor, torch.nn.Parameter) or type(obj) in _LEAF_TYPES or isinstance(obj, (torch.dtype, torch.device)):
        visit(path, "leaf", obj)
    else:
        raise CheckpointError(f"checkpoint entry {path} has type {type(obj).__name__}, which "
                              "torch.load(weights_only=True) cannot read; store tensors or plain values")


def checksum(payload: dict) -> str:
    """BLAKE2b hash of every key, shape, dtype and byte of ``payload`` (except its checksum)."""
    h = hashlib.blake2b(digest_size=20)

    def visit(path, kind, value):
        h.update(f"{path}|{kind}|".encode())
        if kind != "leaf":
            h.update(str(value).encode())
        elif torch.is_tensor(value):
            t = value.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(value.shape)}".encode())
            if t.numel():
                h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.uint8 else t.numpy().tobytes())
        else:
            h.update(repr(value).encode())

    _walk({k: v for k, v in payload.items() if k != "checksum"}, "", visit)
    return h.hexdigest()


# ---------------------------------------------------------------------------- finiteness
def non_finite_entries(payload: dict) -> list[str]:
    """Names of the model and optimizer-state tensors of ``payload`` that hold NaN or +-inf."""
    bad = []
    model = payload.get("model")
    if isinstance(model, dict):
        bad += [f"model/{k}" for k, v in model.items()
                if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    opt = payload.get("optimizer")
    state = opt.get("state") if isinstance(opt, dict) else None
    if isinstance(state, dict):
        for pid, st in state.items():
            if isinstance(st, dict):
                bad += [f"optimizer/state/{pid}/{k}" for k, v in st.items()
                        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    return bad


# ---------------------------------------------------------------------------- files
TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"^\..+\.tmp[^/]*$")  # also the older ".step_<n>.pt.tmp<pid>" names
_STEP_RE = re.compile(r"step_\d+\.pt")


def is_checkpoint_file_name(name: str) -> bool:
    """A file name that the checkpoint folder's writer owns: ``step_<n>.pt``, ``latest``, or a
    temporary file of an interrupted write."""
    return bool(_STEP_RE.fullmatch(name)) or name == LATEST or bool(_TEMP_RE.match(name))


def _atomic_write(path: str, write) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    # mkstemp: an unpredictable name created with O_EXCL, so no existing file or link is followed
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TEMP_SUFFIX, dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
    try:  # make the rename durable
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def atomic_write_text(path: str, text: str) -> None:
    """Write a small text file (config.json, metrics.json) atomically, like a checkpoint."""
    _atomic_write(path, lambda f: f.write(text.encode()))


def remove_stale_temp_files(run_dir: str) -> list[str]:
    """Delete temporary files left in ``<run_dir>/checkpoints`` and ``run_dir`` by an interrupted
    write (call it while holding the run directory's lock); returns the removed paths."""
    removed = []
    for d, prefixes in ((checkpoint_dir(run_dir), ("",)), (run_dir, (".config.json.", ".metrics.json."))):
        if os.path.isdir(d):
            for n in os.listdir(d):
                p = os.path.join(d, n)
                if _TEMP_RE.match(n) and n.startswith(prefixes) and (os.path.isfile(p) or os.path.islink(p)):
                    os.remove(p)
                    removed.append(p)
    return removed


def save_checkpoint(path: str, payload: dict) -> str:
    """Write ``payload`` atomically with its checksum; returns ``path``.  A payload with non-finite
    model or optimizer tensors (a diverged run) is refused with :class:`CheckpointError`."""
    payload = dict(payload)
    bad = non_finite_entries(payload)
    if bad:
        raise CheckpointError(f"refusing to write {path}: non-finite values (NaN or inf) in {', '.join(bad[:5])}"
                              + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    payload["checksum"] = checksum(payload)  # also checks every leaf is weights_only-loadable
    _atomic_write(path, lambda f: torch.save(payload, f))
    return path


def load_checkpoint(path: str, map_location: Any = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` and verify its format and checksum."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, disallowed pickle content
        raise CheckpointError(f"checkpoint {path} is corrupted or not a gfn checkpoint "
                              f"(torch.load failed: {type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gfn checkpoint (no '{FORMAT}' format marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload.get('version')}; "
                              f"this gfn reads version {VERSION}")
    missing = [k for k in ("iteration", "model", "optimizer", "rank_states", "checksum") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    try:
        actual = checksum(payload)
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {path} is corrupted: {e}") from e
    if actual != payload["checksum"]:
        raise CheckpointError(f"checkpoint {path} is corrupted: checksum mismatch "
                              f"(stored {payload['checksum']}, computed {actual})")
    bad = non_finite_entries(payload)
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite values (NaN or inf) in {', '.join(bad[:5])}; "
                              "it comes from a diverged run and is not loaded")
    return payload


def checkpoint_dir(run_dir: str) -> str:
    """``<run_dir>/checkpoints``."""
    return os.path.join(run_dir, CHECKPOINT_DIR)


def list_checkpoints(run_dir: str) -> list[str]:
    """Periodic checkpoint files of a run, oldest first."""
    d = checkpoint_dir(run_dir)
    if not os.path.isdir(d):
        return []
    files = [f for f in os.listdir(d) if _STEP_RE.fullmatch(f)]
    return [os.path.join(d, f) for f in sorted(files, key=lambda f: int(f[5:-3]))]


def find_checkpoint(path: str) -> str:
    """The checkpoint file that ``--resume PATH`` means: a file, or a run directory's latest."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise CheckpointError(f"--resume {path}: no such file or run directory")
    d = checkpoint_dir(path) if os.path.isdir(checkpoint_dir(path)) else path
    latest = os.path.join(d, LATEST)
    if os.path.isfile(latest):
        with open(latest, errors="replace") as f:
            name = f.read(256).strip()
        if not _STEP_RE.fullmatch(name):
            raise CheckpointError(f"{latest} names {name!r}, which is not a step_<n>.pt file of that folder; "
                                  "pass the checkpoint file to --resume instead")
        target = os.path.join(d, name)
        if not os.path.isfile(target):
            raise CheckpointError(f"{latest} names {name}, which does not exist")
        if os.path.dirname(os.path.realpath(target)) != os.path.realpath(d):
            raise CheckpointError(f"{latest} names {name}, a link to a file outside {d}; "
                                  "pass the checkpoint file to --resume instead")
        return target
    found = list_checkpoints(os.path.dirname(d)) if os.path.basename(d) == CHECKPOINT_DIR else []
    if not found:
        raise CheckpointError(f"--resume {path}: no checkpoint found (expected {latest})")
    return found[-1]


def run_dir_of(checkpoint_path: str) -> str:
    """The run directory a checkpoint file belongs to."""
    d = os.path.dirname(os.path.abspath(checkpoint_path))
    return os.path.dirname(d) if os.path.basename(d) == CHECKPOINT_DIR else d


class CheckpointManager:
    """Writes ``step_<it>.pt`` files and the ``latest`` pointer of a run; keeps the newest ``keep``
    of the files it manages (its own, plus those it adopted when resuming)."""

    def __init__(self, run_dir: str, keep: int = 2, adopt_up_to: Optional[int] = None):
        self.dir = checkpoint_dir(run_dir)
        self.keep = max(int(keep), 1)
        self._managed: list[str] = []
        if adopt_up_to is not None:
            self._managed = [p for p in list_checkpoints(run_dir) if _step_of(p) <= adopt_up_to]

    def path(self, iteration: int) -> str:
        """File name of the checkpoint at ``iteration``."""
        return os.path.join(self.dir, f"step_{iteration:08d}.pt")

    def save(self, payload: dict) -> str:
        """Write the checkpoint, point ``latest`` at it and prune old ones; returns its path."""
        path = save_checkpoint(self.path(payload["iteration"]), payload)
        name = os.path.basename(path)
        _atomic_write(os.path.join(self.dir, LATEST), lambda f: f.write(name.encode()))
        self._managed = [p for p in self._managed if p != path] + [path]
        while len(self._managed) > self.keep:
            old = self._managed.pop(0)
            if os.path.exists(old):
                os.remove(old)
        return path


def _step_of(path: str) -> int:
    return int(os.path.basename(path)[5:-3])


# ---------------------------------------------------------------------------- validation
def _fail(path: str, problems: list[str]) -> None:
    if problems:
        head = f"cannot resume from {path}: it does not match this run ({len(problems)} problem(s)); nothing was loaded:"
        raise CheckpointError("\n  - ".join([head] + problems[:20]))


def _check_config(saved: dict, current: Optional[dict], problems: list[str]) -> None:
    if not saved or not current:
        return
    for k in sorted(set(saved) & set(current)):
        if k in RESUME_MUTABLE_FIELDS:
            continue
        a, b = saved[k], current[k]
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            a, b = list(a), list(b)
        if a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)):
            problems.append(f"setting {k!r} is {a!r} in the checkpoint but {b!r} now")


def _check_model(saved: dict, model: torch.nn.Module, problems: list[str]) -> None:
    live = model.state_dict()
    missing, extra = sorted(set(live) - set(saved)), sorted(set(saved) - set(live))
    if missing:
        problems.append(f"model parameters missing from the checkpoint: {', '.join(missing[:8])}")
    if extra:
        problems.append(f"checkpoint has parameters this model lacks: {', '.join(extra[:8])}")
    for k in sorted(set(live) & set(saved)):
        a, b = saved[k], live[k]
        if not torch.is_tensor(a):
            problems.append(f"model entry {k} is a {type(a).__name__}, not a tensor")
        elif a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"model entry {k}: checkpoint {tuple(a.shape)} {a.dtype}, model {tuple(b.shape)} {b.dtype}")


def _check_optimizer(saved: dict, optimizer: torch.optim.Optimizer, meta: dict, problems: list[str]) -> None:
    cls = meta.get("optimizer_class")
    if cls and cls != type(optimizer).__name__:
        problems.append(f"optimizer is {cls} in the checkpoint but {type(optimizer).__name__} now")
        return
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict):
        problems.append("optimizer state is malformed (no param_groups/state)")
        return
    live_groups = optimizer.param_groups
    if len(groups) != len(live_groups):
        problems.append(f"optimizer has {len(groups)} parameter group(s) in the checkpoint but {len(live_groups)} now")
        return
    params = {}
    for i, (g, lg) in enumerate(zip(groups, live_groups)):
        if len(g.get("params", [])) != len(lg["params"]):
            problems.append(f"optimizer group {i} has {len(g.get('params', []))} parameters in the checkpoint "
                            f"but {len(lg['params'])} now")
            return
        params.update(zip(g["params"], lg["params"]))
    for pid, st in saved["state"].items():
        if pid not in params:
            problems.append(f"optimizer state refers to unknown parameter {pid}")
            continue
        p = params[pid]
        for name, v in st.items():
            if torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape:
                problems.append(f"optimizer state {name} of parameter {pid}: shape {tuple(v.shape)}, "
                                f"parameter {tuple(p.shape)}")


def _check_rank_state(rs: Any, trainer, problems: list[str]) -> None:
    if not isinstance(rs, dict) or not {"trainer", "rng", "hooks"} <= set(rs):
        problems.append("per-rank state is malformed")
        return
    rng = rs["rng"]
    if not (isinstance(rng, dict) and torch.is_tensor(rng.get("torch_cpu")) and rng["torch_cpu"].dtype == torch.uint8
            and isinstance(rng.get("python"), dict) and isinstance(rng.get("numpy"), dict)):
        problems.append("RNG state is malformed")
    tr = rs["trainer"]
    if not isinstance(tr.get("iteration"), int):
        problems.append("trainer iteration is missing")
    replay = getattr(trainer, "replay", None)
    saved_replay = tr.get("replay")
    if saved_replay is not None and replay is None:
        problems.append("the checkpoint has a replay buffer but this run has none (replay_capacity 0)")
    elif saved_replay is not None:
        states, lr = saved_replay.get("states"), saved_replay.get("log_rewards")
        if states is not None:
            if not (torch.is_tensor(states) and torch.is_tensor(lr) and lr.dim() == 1 and lr.shape[0] == states.shape[0]):
                problems.append("replay buffer entries are malformed")
            else:
                try:
                    trainer.env.validate_states(states, "replayed states")
                except Exception as e:
                    problems.append(f"replay buffer does not fit this environment: {e}")
    live_hooks = stateful_hooks(trainer)
    if set(rs["hooks"]) != set(live_hooks):
        problems.append(f"stateful hooks differ: checkpoint {sorted(rs['hooks'])}, run {sorted(live_hooks)}")
    else:
        for k, h in live_hooks.items():
            live, saved = h.state_dict(), rs["hooks"][k]
            if isinstance(live, dict) and isinstance(saved, dict) and set(live) != set(saved):
                problems.append(f"hook {k}: state keys {sorted(saved)} in the checkpoint, {sorted(live)} now")


def _check_structure(payload: Any) -> list[str]:
    """The parts of a checkpoint have the container types the checks below read."""
    if not isinstance(payload, dict):
        return ["the checkpoint is not a mapping"]
    problems = []
    for key, kind in (("model", dict), ("optimizer", dict), ("rank_states", list), ("config", dict),
                      ("runner", dict), ("meta", dict)):
        if key in payload and not isinstance(payload[key], kind):
            problems.append(f"entry {key!r} is a {type(payload[key]).__name__}, not a {kind.__name__}")
    if isinstance(payload.get("rank_states"), list):
        for r, rs in enumerate(payload["rank_states"]):
            if not isinstance(rs, dict):
                problems.append(f"rank state {r} is a {type(rs).__name__}, not a dict")
                continue
            for key in ("trainer", "rng", "hooks"):
                if key not in rs:
                    problems.append(f"rank state {r} has no {key!r}")
                elif not isinstance(rs[key], dict):
                    problems.append(f"rank state {r} entry {key!r} is a {type(rs[key]).__name__}, not a dict")
    if not isinstance(payload.get("iteration"), int):
        problems.append("the iteration is not an int")
    return problems


def validate_checkpoint(payload: dict, trainer, config: Optional[dict] = None, world_size: int = 1,
                        path: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` listing every way ``payload`` does not fit this run (a
    malformed file included: never another exception type)."""
    _fail(path, _check_structure(payload))
    try:
        _validate(payload, trainer, config, world_size, path)
    except CheckpointError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        raise CheckpointError(f"cannot resume from {path}: it is malformed ({type(e).__name__}: {e}); "
                              "nothing was loaded") from e


def _validate(payload: dict, trainer, config: Optional[dict], world_size: int, path: str) -> None:
    problems: list[str] = []
    if payload.get("world_size", 1) != world_size or len(payload["rank_states"]) != world_size:
        problems.append(f"the checkpoint was written by {payload.get('world_size')} process(es) but this run "
                        f"has {world_size}; resume with the same number of processes")
    _check_config(payload.get("config") or {}, config, problems)
    _check_model(payload["model"], trainer.model, problems)
    _check_optimizer(payload["optimizer"], trainer.optimizer, payload.get("meta") or {}, problems)
    for r, rs in enumerate(payload["rank_states"]):
        _check_rank_state(rs, trainer, problems)
        if isinstance(rs, dict) and isinstance(rs.get("trainer"), dict) and rs["trainer"].get("iteration") != payload["iteration"]:
            problems.append(f"rank {r} is at iteration {rs['trainer'].get('iteration')}, not {payload['iteration']}")
    _fail(path, problems)


def restore_checkpoint(payload: dict, trainer, rank: int = 0, config: Optional[dict] = None,
                       world_size: int = 1, path: str = "checkpoint") -> None:
    """Validate ``payload`` against ``trainer`` and load it (model, optimizer, counters, replay,
    RNG states, stateful hooks).  Either everything is loaded or nothing is."""
    validate_checkpoint(payload, trainer, config, world_size, path)
    rs = payload["rank_states"][rank]
    state = dict(rs["trainer"], model=payload["model"], optimizer=payload["optimizer"])
    if not rs.get("replay_saved", True):
        warnings.warn("the checkpoint holds no replay buffer (its states are not tensors); it restarts empty")
    hooks = stateful_hooks(trainer)
    backup_sd = copy.deepcopy(trainer_state(trainer)[0])
    backup_hooks = {k: copy.deepcopy(h.state_dict()) for k, h in hooks.items()}
    backup_rng = capture_rng_state()
    try:
        trainer.load_state_dict(state)
        for k, h in hooks.items():
            h.load_state_dict(rs["hooks"][k])
        restore_rng_state(rs["rng"])
    except Exception as e:
        trainer.load_state_dict(backup_sd)
        for k, h in hooks.items():
            h.load_state_dict(backup_hooks[k])
        restore_rng_state(backup_rng)
        raise CheckpointError(f"loading {path} failed ({type(e).__name__}: {e}); the run was left unchanged") from e


# ---------------------------------------------------------------------------- signals
class GracefulStop:
    """Context manager turning SIGTERM (and a first Ctrl-C) into a flag the training loop polls,
    so the loop can finish its iteration, write a checkpoint and exit."""

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)):
        self.signals = tuple(signals)
        self.signum: Optional[int] = None
        self._old: dict = {}

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        if signum == signal.SIGINT:  # a second Ctrl-C interrupts at once
            signal.signal(signal.SIGINT, self._old.get(signal.SIGINT, signal.default_int_handler))

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous signal handlers back."""
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def __exit__(self, *exc) -> None:
        self.restore()
