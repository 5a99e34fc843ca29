"""The project lock: an exclusive ``flock`` on the project directory and the holder's record."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from alamp_fast.workflow.errors import ProjectLockedError
from alamp_fast.workflow.storage import (
    _O_CLOEXEC,
    _O_DIRECTORY,
    _O_NOFOLLOW,
    LOCK_FILE,
    _create_new,
    _now_iso,
    _pid_alive,
    _temp_path,
)


def _describe_holder(info: dict) -> str:
    if not info:
        return "another process"
    return (
        f"pid {info.get('pid')} on {info.get('host')} (alamp-fast {info.get('command')}, "
        f"since {info.get('started')})"
    )


def _read_lock_info(directory: Path) -> dict:
    """The holder record of ``<project>/lock`` ({} when absent or empty); never follows a link."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError:
        return {}
    try:
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        info = json.loads(raw.decode()) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        info = {"pid": "?", "host": "?", "command": "?", "started": "?"}
    return info if isinstance(info, dict) else {}


def _write_lock_info(directory: Path, data: bytes) -> None:
    """Replace the holder record (no fsync: it only serves messages and ``status``)."""
    path = directory / LOCK_FILE
    tmp = _temp_path(path)
    try:
        fd = _create_new(tmp)
        with open(fd, "wb", closefd=True) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class _ProjectLock:
    """Exclusive ``flock`` on the project *directory*; ``<project>/lock`` records the holder.

    The lock is taken on the directory itself, not on a file in it: deleting ``lock`` (by
    accident, or a cleanup script) cannot let a second process in, as it could when the
    lock lived on that file's inode. The kernel releases a ``flock`` when its process dies,
    so a record naming a dead pid is stale by construction: the next operation takes it
    over (``self.stale`` describes it) and :meth:`Project.status` shows and clears it. The
    record is replaced by rename and read with ``O_NOFOLLOW``: a symlink planted at ``lock``
    is never written through.
    """

    def __init__(self, directory: Path, command: str):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.command = command
        self.fd: int | None = None
        self.stale: dict | None = None

    @staticmethod
    def try_lock(directory: Path) -> int | None:
        """A directory fd holding the lock, or None when another process holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            raise NotImplementedError(
                "project locking needs fcntl.flock (a POSIX system)"
            ) from None
        fd = os.open(directory, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def release(fd: int) -> None:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    #: Seconds a command waits for a lock held for an instant (``status`` clearing a stale
    #: record) before it reports the project in use.
    WAIT = 0.5

    def __enter__(self) -> _ProjectLock:
        deadline = time.monotonic() + self.WAIT
        fd = self.try_lock(self.directory)
        while fd is None and time.monotonic() < deadline:
            time.sleep(0.02)
            fd = self.try_lock(self.directory)
        if fd is None:
            raise ProjectLockedError(
                f"project {self.directory} is in use by "
                f"{_describe_holder(_read_lock_info(self.directory))}; "
                "wait for it to finish and retry"
            )
        try:
            previous = _read_lock_info(self.directory)
            if previous:
                self.stale = {**previous, "alive": _holder_alive(previous)}
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command,
                "started": _now_iso(),
            }
            _write_lock_info(self.directory, json.dumps(info).encode())
        except BaseException:
            self.release(fd)
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        try:
            with contextlib.suppress(OSError):  # e.g. a full disk: the record is advisory
                _write_lock_info(self.directory, b"")
        finally:
            self.release(self.fd)
            self.fd = None

    def stale_note(self) -> str | None:
        """A line about the stale lock taken over, or None."""
        if not self.stale:
            return None
        state = "still exists but holds no lock" if self.stale["alive"] else "is no longer running"
        return (
            f"took over the lock left by {_describe_holder(self.stale)}, which {state}; "
            "its unfinished work, if any, was discarded"
        )


def _holder_alive(info: dict) -> bool:
    pid = info.get("pid")
    return isinstance(pid, int) and info.get("host") == socket.gethostname() and _pid_alive(pid)
