"""Crash-safe files: the project directory's layout, atomic ``O_EXCL`` writes, fault points."""

from __future__ import annotations

import contextlib
import datetime
import glob
import os
from pathlib import Path

#: The whole state of a project, one file (:mod:`alamp_fast.workflow.state`).
STATE_FILE = "state.npz"
#: Who holds the project while an operation runs (:mod:`alamp_fast.workflow.lock`).
LOCK_FILE = "lock"
#: The project's identity (id, creation time, pool), beside the state it must match.
IDENTITY_FILE = "project.json"
#: The batch CSVs, ``round-NNN.csv``.
BATCH_DIR = "batches"


#: Environment variable naming the fault point at which to abort (tests only).
FAULT_ENV = "ALAMP_FAST_FAULT"


#: Exit status of a process aborted by :data:`FAULT_ENV`.
FAULT_EXIT_CODE = 86


#: Every point at which :data:`FAULT_ENV` can abort, in the order each operation reaches them.
#: ``*-tmp-written``: temp file fsynced, not yet renamed; ``*-renamed``: renamed, directory not
#: yet fsynced; ``*:committed``: the state is durable.
FAULT_POINTS = (
    "init:locked",
    "init:state-tmp-written",
    "init:state-renamed",
    "init:committed",
    "select:locked",
    "select:queried",
    "select:state-tmp-written",
    "select:state-renamed",
    "select:committed",
    "select:csv-tmp-written",
    "select:csv-renamed",
    "select:done",
    "label:locked",
    "label:validated",
    "label:state-tmp-written",
    "label:state-renamed",
    "label:committed",
)


def _check_fault_env() -> None:
    point = os.environ.get(FAULT_ENV)
    if point and point not in FAULT_POINTS:
        raise ValueError(
            f"{FAULT_ENV}={point!r} is not a fault point; choose from {', '.join(FAULT_POINTS)}"
        )


def _fault(point: str) -> None:
    # os._exit, not an exception: nothing may run after the "crash" (no finally, no flush).
    if os.environ.get(FAULT_ENV) == point:
        os.write(2, f"alamp-fast: fault injected at {point}\n".encode())
        os._exit(FAULT_EXIT_CODE)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory entry is; Windows cannot open directories.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _create_new(path: Path, mode: int = 0o644) -> int:
    """A new, empty file at ``path`` opened for writing, never through a symlink.

    ``O_CREAT | O_EXCL`` fails on anything already at ``path`` (a file left by a killed
    process with our pid, or a symlink planted there: ``O_EXCL`` does not follow it), and
    ``O_NOFOLLOW`` refuses a symlink in any case. Whatever is there is unlinked (a symlink is
    removed itself, never its target) and the creation retried once.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
    try:
        return os.open(path, flags, mode)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, mode)


def _atomic_write(path: Path, data: bytes, fault: str | None = None) -> None:
    """Write ``data`` to ``path``: temp file in the same directory, fsync, rename, fsync dir.

    The temp file is created with ``O_EXCL | O_NOFOLLOW`` (:func:`_create_new`), so nothing is
    written through a symlink planted at its name; the rename replaces a symlink at ``path``
    itself, never its target. On any error (a full disk included) the temp file is removed
    and ``path`` is left as it was.
    """
    tmp = _temp_path(path)
    try:
        fd = _create_new(tmp)
        with open(fd, "wb", closefd=True) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if fault:
            _fault(f"{fault}-tmp-written")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fault:
        _fault(f"{fault}-renamed")
    _fsync_dir(path.parent)


def _stale_temp(path: Path) -> bool:
    """Whether ``path`` (``.NAME.tmp-PID``) was left by a process that is no longer running."""
    pid = path.name.rsplit(".tmp-", 1)[-1]
    return not (pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)))


def _remove_stale_temps(directory: Path) -> None:
    # Left by a process killed between writing and renaming; only called under the lock.
    for d in (directory, directory / BATCH_DIR):
        if d.is_dir():
            for tmp in d.glob(".*.tmp-*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def _remove_stale_copies(out: Path) -> None:
    """Temp files of ``out`` (``.NAME.tmp-PID`` beside it) whose writer is no longer running.

    ``--out`` may point outside the project, where other processes may write too: only the
    temp files of ``out`` itself, left by dead pids, are removed.
    """
    parent = out.parent
    if parent.is_dir():
        for tmp in parent.glob(f".{glob.escape(out.name)}.tmp-*"):
            if _stale_temp(tmp):
                with contextlib.suppress(OSError):
                    tmp.unlink()
