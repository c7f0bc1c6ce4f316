"""Training checkpoints: written atomically, read as data only, cleaned up, saved on Ctrl-C.

A leaf module (it imports only :mod:`lctools.hashing`).  Used by
:func:`lctools.ensemble.train_ensemble`; :class:`TrainingInterrupted` is also exported as
``lctools.cache.TrainingInterrupted``.

- :func:`save_atomic` writes ``path`` through a temporary file ``.<name>.<pid>.tmp`` and
  ``os.replace``, so a killed process never leaves a half-written checkpoint in use;
  :func:`remove_orphans` deletes the temporary files of processes that died mid-write.
- :func:`load_checkpoint` reads with ``torch.load(weights_only=True)``: only tensors and
  plain containers are unpickled, so a crafted file cannot run code; the run's fingerprint
  is then compared, and a checkpoint of another run is refused.
- :func:`deferred_interrupt` holds back Ctrl-C (SIGINT) while a training step runs, so the
  loop can stop at a step boundary, save, and raise :class:`TrainingInterrupted`; a second
  Ctrl-C interrupts at once.

Example
-------
>>> import tempfile, pathlib, torch
>>> p = pathlib.Path(tempfile.mkdtemp()) / "run.pt"
>>> save_atomic({"fingerprint": "abc", "x": torch.zeros(2)}, p)
>>> load_checkpoint(p, "abc")["x"].tolist()
[0.0, 0.0]
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

__all__ = ["TrainingInterrupted", "CheckpointWarning", "save_atomic", "load_checkpoint", "remove_orphans",
           "deferred_interrupt", "ORPHAN_AGE"]

# a temporary file whose writer cannot be checked (another host) is an orphan after this many seconds
ORPHAN_AGE = 24 * 3600.0


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read, belongs to another run, or could not be written."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C) at ``step`` of ``total`` steps.

    Attributes
    ----------
    step
        The number of updates done; with ``checkpoint`` set, the state after that step
        is saved there (or, after a second Ctrl-C mid-step, the state of the last save).
    total
        The number of updates asked for.
    checkpoint
        The checkpoint file, or ``None`` when the run had none (progress is lost).
    """

    def __init__(self, step: int, total: int, checkpoint: Optional[os.PathLike] = None):
        self.step, self.total, self.checkpoint = int(step), int(total), checkpoint
        resume = "run again to resume" if checkpoint is not None else "no checkpoint was kept"
        super().__init__(f"interrupted at step {self.step} of {self.total}; {resume}")

    def __str__(self) -> str:
        return self.args[0]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours
        return True
    return True


_PID = re.compile(r"\.(\d+)\.tmp$")


def remove_orphans(folder: Path, pattern: str = ".*.tmp", pid: Optional[re.Pattern] = None) -> int:
    """Delete temporary files (or folders) matching ``pattern`` in ``folder`` whose writer is
    gone: its process id (group 1 of the regular expression ``pid``; by default the ``<pid>``
    of ``.<name>.<pid>.tmp``) is not running on this host, or the entry is older than
    ``ORPHAN_AGE``.  Returns the number deleted; errors are ignored.  The results cache
    cleans its ``.tmp-<pid>-...`` folders with it too.

    Example
    -------
    >>> import tempfile, pathlib
    >>> remove_orphans(pathlib.Path(tempfile.mkdtemp()))
    0
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    pid = _PID if pid is None else pid
    for p in folder.glob(pattern):
        try:
            m = pid.search(p.name)
            dead = m is not None and not _pid_alive(int(m.group(1)))
            if dead or time.time() - p.stat().st_mtime > ORPHAN_AGE:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def save_atomic(obj, path: os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temporary file, then ``os.replace``).
    Raises ``OSError`` when the folder cannot be written (callers decide whether to warn).

    Example
    -------
    >>> import tempfile, pathlib, torch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.pt"
    >>> save_atomic({"w": torch.ones(1)}, p); p.exists()
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent, f".{path.name}.*.tmp")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: os.PathLike, fingerprint: str) -> Optional[dict]:
    """The checkpoint at ``path`` if it exists, unpickles as data only
    (``weights_only=True``: tensors, numbers, strings and containers) and belongs to the run
    ``fingerprint``; else ``None``, with a :class:`CheckpointWarning` when a file is there but
    unusable (unreadable, holding anything but data, or of another run).

    Example
    -------
    >>> import tempfile, pathlib
    >>> load_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "missing.pt", "abc") is None
    True
    """
    path = Path(path)
    remove_orphans(path.parent, f".{path.name}.*.tmp")
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, or a pickle that is not plain data: never run it
        warnings.warn(f"checkpoint {path} could not be read as data ({type(exc).__name__}); starting afresh.",
                      CheckpointWarning, stacklevel=2)
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        warnings.warn(f"checkpoint {path} belongs to another run; starting afresh.", CheckpointWarning,
                      stacklevel=2)
        return None
    return state


class _Interrupt:
    requested = False


@contextmanager
def deferred_interrupt(enabled: bool = True):
    """Within the block, a first Ctrl-C (SIGINT) only sets ``flag.requested`` (the loop checks it
    at step boundaries); a second one raises ``KeyboardInterrupt`` at once.  Outside the main
    thread, or with ``enabled=False``, nothing is deferred; a process that ignores SIGINT (a
    background job, a worker process) keeps ignoring it.  The previous handler is restored
    on exit.  Yields the flag.

    Example
    -------
    >>> with deferred_interrupt() as flag:
    ...     pass
    >>> flag.requested
    False
    """
    flag = _Interrupt()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not allowed here (e.g. an embedded interpreter)
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
