"""The plumbing of one training run that the runner delegates to: process group, resume,
periodic/final checkpoints, graceful stop on SIGTERM, cross-rank reduction, RNG isolation."""

from __future__ import annotations

import contextlib
from typing import Optional

from gfn import distributed
from gfn.checkpoint import (CheckpointManager, GracefulStop, build_checkpoint, capture_rng_state,
                            find_checkpoint, load_checkpoint, non_finite_entries, rank_state,
                            remove_stale_temp_files, restore_checkpoint, restore_rng_state)
from gfn.config import RunConfig, config_to_dict
from gfn.rundir import RunDirLock, check_output_dir, clear_run_files
from gfn.trainer import TrainingDiverged


class RunSession:
    """Distributed context, checkpointing and stop handling for :func:`gfn.runner.run`."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.dist = distributed.setup(cfg.device)
        self.resume_path: Optional[str] = None
        self.payload: Optional[dict] = None
        self.resumed = bool(getattr(cfg, "resume", ""))  # continuing from a checkpoint
        if self.resumed:
            self.resume_path = find_checkpoint(cfg.resume)
            self.payload = load_checkpoint(self.resume_path)  # every rank reads the same file
        self.manager: Optional[CheckpointManager] = None
        self.stop = GracefulStop()
        self.last_saved = -1
        self.runner_state: dict = dict((self.payload or {}).get("runner") or {})
        self.lock: Optional[RunDirLock] = None

    # ------------------------------------------------------------------ set-up
    @property
    def is_main(self) -> bool:
        """True on the rank that writes files."""
        return self.dist.is_main

    def attach(self, trainer) -> None:
        """Data-parallel wiring, then (when resuming) the validated restore of every state."""
        distributed.attach(self.dist, trainer, self.cfg.seed)
        keep = getattr(self.cfg, "keep_checkpoints", 2)
        if self.payload is not None:
            restore_checkpoint(self.payload, trainer, rank=self.dist.rank, config=self.config_dict(),
                               world_size=self.dist.world_size, path=self.resume_path)
            self.last_saved = trainer.iteration
            self.payload = None  # free the memory
            self.manager = CheckpointManager(self.cfg.out, keep, adopt_up_to=trainer.iteration)
        else:
            self.manager = CheckpointManager(self.cfg.out, keep)

    def open_run_dir(self) -> None:
        """Called once the run is accepted (configuration checked, checkpoint validated and
        restored): lock the run directory, clear an earlier run's files on ``--overwrite`` and
        remove temporary files of interrupted writes.  Only the main rank writes."""
        if not self.is_main:
            return
        out = self.cfg.out
        check_output_dir(out, resume=self.resumed, overwrite=getattr(self.cfg, "overwrite", False))
        self.lock = RunDirLock(out).acquire()
        try:  # again under the lock: another run may have written in between
            check_output_dir(out, resume=self.resumed, overwrite=getattr(self.cfg, "overwrite", False),
                             check_lock=False)
        except BaseException:
            self.lock.release()
            raise
        if getattr(self.cfg, "overwrite", False) and not self.resumed:
            clear_run_files(out)
        remove_stale_temp_files(out)

    def config_dict(self) -> dict:
        """The configuration as stored in checkpoints and config.json (``resume`` cleared)."""
        d = config_to_dict(self.cfg)
        if "resume" in d:
            d["resume"] = ""
        if "overwrite" in d:
            d["overwrite"] = False  # repeating a run from its config.json never replaces files silently
        return d

    @property
    def purge_step(self) -> Optional[int]:
        """TensorBoard purge step: on resume, events logged after the checkpoint are dropped."""
        return self.last_saved + 1 if self.last_saved >= 0 else None

    # ------------------------------------------------------------------ during training
    def checkpoint_due(self, iteration: int) -> bool:
        """Whether a periodic checkpoint is due after ``iteration``."""
        every = getattr(self.cfg, "checkpoint_every", 0)
        return every > 0 and iteration % every == 0 and iteration != self.last_saved

    def save(self, trainer, runner_state: dict) -> Optional[str]:
        """Collective: gather every rank's state; rank 0 writes the checkpoint.  Returns its path.
        Non-finite parameters or optimizer state raise :class:`TrainingDiverged` instead (every
        rank holds the same parameters, so every rank raises)."""
        bad = non_finite_entries({"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict()})
        if bad:
            raise TrainingDiverged(trainer.iteration, f"non-finite values in {', '.join(bad[:3])}"
                                   + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
        states = distributed.gather_to_main(self.dist, rank_state(trainer))
        self.last_saved = trainer.iteration
        if not self.is_main:
            return None
        payload = build_checkpoint(trainer, config=self.config_dict(), runner=runner_state, rank_states=states)
        return self.manager.save(payload)

    def watch_signals(self) -> None:
        """From now on SIGTERM (or a first Ctrl-C) asks the loop to checkpoint and stop."""
        self.stop.__enter__()

    def stop_requested(self) -> bool:
        """Collective: True on every rank once any rank received SIGTERM/SIGINT."""
        return distributed.any_rank(self.dist, self.stop.requested)

    def reduce(self, values: dict) -> dict:
        """Average numeric values over ranks."""
        return distributed.reduce_mean(self.dist, values)

    @contextlib.contextmanager
    def isolated_rng(self):
        """Run a block (evaluation) without moving the training RNG streams."""
        state = capture_rng_state()
        try:
            yield
        finally:
            restore_rng_state(state)

    def close(self, barrier: bool = False) -> None:
        """Restore signal handlers and leave the process group (``barrier``: after a normal
        finish, wait for every rank first)."""
        self.stop.restore()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        distributed.cleanup(self.dist, barrier=barrier)


def exit_code(signum: int) -> int:
    """Shell convention for a process ended by signal ``signum``."""
    return 128 + int(signum)
