"""The run directory: refuse an unusable ``--out`` before anything is written, lock it while a run
writes into it (a second run is refused), and clear an earlier run's files on ``--overwrite``."""

from __future__ import annotations

import glob
import os
from typing import Optional

from gfn.errors import ConfigError

LOCK_NAME = ".gfn.lock"
#: files a run writes at the top of its directory (plus ``checkpoints/``)
RUN_FILES = ("config.json", "metrics.json", "log.txt")
RUN_GLOBS = ("events.out.tfevents.*",)

try:
    import fcntl
except ImportError:  # Windows: an exclusive-create lock file instead of an advisory lock
    fcntl = None


def _contents(out: str) -> list[str]:
    return sorted(n for n in os.listdir(out) if n != LOCK_NAME) if os.path.isdir(out) else []


def check_output_dir(out: str, resume: bool = False, overwrite: bool = False, check_lock: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``out`` can receive a run: it is not a file, no other run
    holds its lock, and it is empty unless the run resumes (``--resume``) or replaces it
    (``--overwrite``).  Writes nothing."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file, not a directory", hint="choose a directory for the run")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"--out {out}: {parent} is a file, not a directory")
    holder = lock_holder(out) if check_lock else None
    if holder is not None:
        raise ConfigError(f"run directory {out} is in use by another run ({holder})",
                          hint="wait for it to finish, or choose another --out")
    names = _contents(out)
    if names and not resume and not overwrite:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError(f"--out {out} is not empty ({shown}); refusing to overwrite it",
                          hint=f"continue that run with --resume {out}, replace it with --overwrite, "
                               "or choose another --out")


def lock_holder(out: str) -> Optional[str]:
    """Who holds the lock of run directory ``out`` ("process <pid>"), or None when it is free."""
    path = os.path.join(out, LOCK_NAME)
    if not os.path.exists(path):
        return None
    if fcntl is None:
        return _read_pid(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(path) or "unknown process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            pid = f.read().strip()
    except OSError:
        return None
    return f"process {pid}" if pid else None


class RunDirLock:
    """Exclusive lock on a run directory (created if needed), held from :meth:`acquire` to
    :meth:`release` (or as a context manager).  An advisory ``flock`` on ``<out>/.gfn.lock``: the
    operating system drops it when the process dies, so a killed run never leaves a stale lock."""

    def __init__(self, out: str):
        self.out = out
        self.path = os.path.join(out, LOCK_NAME)
        self._fd: Optional[int] = None

    def acquire(self) -> "RunDirLock":
        """Take the lock; :class:`ConfigError` when another run holds it."""
        os.makedirs(self.out, exist_ok=True)
        if fcntl is None:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise ConfigError(f"run directory {self.out} is in use by another run "
                                  f"({_read_pid(self.path) or 'unknown process'})",
                                  hint=f"if no run is using it, delete {self.path}") from None
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise ConfigError(f"run directory {self.out} is in use by another run "
                                  f"({_read_pid(self.path) or 'unknown process'})",
                                  hint="wait for it to finish, or choose another --out") from None
            os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is None:
            os.close(fd)
            try:
                os.remove(self.path)
            except OSError:
                pass
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def clear_run_files(out: str) -> list[str]:
    """Remove the files an earlier run wrote into ``out`` (config, metrics, log, TensorBoard events,
    checkpoints); anything else is left alone.  Returns the removed paths."""
    from gfn.checkpoint import checkpoint_dir, is_checkpoint_file_name
    removed = []
    paths = [os.path.join(out, n) for n in RUN_FILES]
    for pattern in RUN_GLOBS:
        paths += glob.glob(os.path.join(glob.escape(out), pattern))
    ck = checkpoint_dir(out)
    if os.path.isdir(ck):
        paths += [os.path.join(ck, n) for n in os.listdir(ck) if is_checkpoint_file_name(n)]
    for p in paths:
        if os.path.isfile(p) or os.path.islink(p):
            os.remove(p)
            removed.append(p)
    if os.path.isdir(ck) and not os.listdir(ck):
        os.rmdir(ck)
    return removed
