"""Annotation rounds over a real pool, with crash-safe, resumable state.

Simulation (:mod:`alamp_fast.protocol`) answers "which strategy is best"; this module is the
other half, a team labeling a real unlabeled pool: each round, :meth:`Project.select` trains the
classifier on the labels received so far and writes the next batch to annotate;
:meth:`Project.label` takes the annotations back; :meth:`Project.status` reports progress.
The same operations are the ``alamp-fast init / select / label / status`` commands
(:mod:`alamp_fast.workflow_cli`); ``docs/workflow.md`` is the user guide.

The project directory
---------------------
``state.npz``
    The whole state, one file: the project id, settings, class names, the pool reference
    (path, row count, sha256 of the features, the file's signature when the hash last matched,
    where the sample ids come from), the sample ids, every label
    received (sample row, class, round, time, relabel flag), every batch selected (rows,
    scores, margins, predicted classes), the strategy's state (alamp's previous margin and top
    class per pool row, via :meth:`~alamp_fast.strategies.Strategy.state_dict`) and the history
    of rounds and ingests. A numpy ``.npz`` without pickles; the JSON part is the ``meta`` entry.
``batches/round-NNN.csv``
    The batch of round NNN, derived from ``state.npz`` (rewritten by ``select`` if missing).
``project.json``
    The project's identity (its id, creation time, pool): a ``state.npz`` whose id differs,
    another project's copied in, is refused (:class:`ForeignStateError`).
``lock``
    Who holds the project (pid, host, command, start time) while an operation runs.

Crash safety
------------
Every write goes to a temporary file in the same directory (created ``O_EXCL | O_NOFOLLOW``:
never through a planted symlink), is fsynced, renamed over the target (atomic on POSIX) and
the directory is fsynced. The state is a *single* file, so a
commit is a single rename: a crash at any point leaves the old state or the new one, never a
mix. The batch CSV is written after the state commit and is a pure function of the state; if a
crash loses it, the next ``select`` writes it again, whatever its options (``--budget`` of
the same size, ``--allow-partial``): a round without any label is never followed by another,
so every round is delivered once. :meth:`Project.export_round` rewrites any round's CSV. Labels are idempotent: ingesting a file twice, e.g. again after a crash,
adds nothing the second time. A process killed at any point can therefore be resumed by
re-running the command it was running.

For the fault-injection tests, ``ALAMP_FAST_FAULT=<point>`` (one of :data:`FAULT_POINTS`) makes
the process abort with ``os._exit(FAULT_EXIT_CODE)`` at that point: no ``finally`` block, no
flush, as if it were killed.

Two processes on one project are refused: each operation takes an exclusive ``flock`` on the
project directory (deleting the ``lock`` file lets nobody in) and writes its pid to ``lock``.
The kernel drops the lock when its process dies, so a record left by a killed process is
stale: the next operation takes it over, with a note, and :meth:`Project.status` reports and
clears it.

The pool file is read once per round, block by block, after its size was checked against its
``.npy`` header (a truncated file fails with one line, never a wrong row or a SIGBUS), and
normalised while read. On a Dask cluster, a round whose workers are lost is retried
(:data:`CLUSTER_ATTEMPTS`), else :class:`ClusterError` with nothing written.

Reproducibility
---------------
With the same labels, a project makes the picks of :func:`alamp_fast.protocol.simulate` with
the same ``seed`` and ``runs=1``: the first round is ``simulate``'s random initial batch
(``init`` rows), later rounds train ``make_classifier(classifier, random_state=...)`` on the
labeled rows in the order they were selected and ask the strategy, whose state is restored
from the previous round. Differences: ``cost_sensitive=None`` ("auto") looks at the imbalance
of the labels received so far (the pool's true labels are unknown), and while fewer than two
classes are labeled a round draws a random batch (``simulate`` refuses such an initial batch).

Pools that grow
---------------
Rows may be *appended* to the pool file between rounds: the first ``n`` rows must be unchanged
(same ids, same features: sha256), the new rows get ids from the same source. A new row has no
previous margin, so alamp uses the *margin fallback* of :mod:`alamp_fast.strategies` for it:
its previous certainty is taken as 1.0 (fully certain), its score is ``(1 - m) / (1 + m)``,
which ranks new rows among themselves exactly as margin sampling does. Removing, reordering or
editing rows is refused (:class:`PoolChangedError`).

On a Dask cluster
-----------------
``select(scheduler="tcp://host:8786")`` (``alamp-fast select --scheduler``) computes the pool
probabilities and runs the strategy on that cluster, as ``simulate`` does (see
:mod:`alamp_fast.protocol`): the pool features are sent to the workers as row chunks, the
classifier is fitted here on the labeled rows and shipped once, and the batch is the one
``select`` makes without a scheduler. Only the batch's scores, margins and predicted classes
come back, besides the candidates and alamp's state.
"""

from __future__ import annotations

import array
import contextlib
import contextvars
import csv
import datetime
import glob
import hashlib
import io
import json
import os
import socket
import time
import uuid
import warnings
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alamp_fast._dispatch import array_library

__all__ = [
    "FAULT_ENV",
    "FAULT_EXIT_CODE",
    "FAULT_POINTS",
    "Batch",
    "LabelReport",
    "ClusterError",
    "ForeignStateError",
    "OptionError",
    "PoolChangedError",
    "Project",
    "ProjectLockedError",
]

#: Format of ``state.npz`` (bumped on incompatible changes).
FORMAT_VERSION = 1
STATE_FILE = "state.npz"
LOCK_FILE = "lock"
#: The project's identity (id, creation time, pool), beside the state it must match.
IDENTITY_FILE = "project.json"
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

#: Columns of a batch CSV, in order. ``label`` is left empty for the annotators to fill.
BATCH_COLUMNS = ("rank", "id", "score", "margin", "predicted", "label")

_LABEL_DTYPES = {
    "row": np.int64,
    "cls": np.int64,
    "round": np.int64,
    "time": np.float64,
    "relabel": np.bool_,
}
_BATCH_DTYPES = {
    "round": np.int64,
    "row": np.int64,
    "score": np.float64,
    "margin": np.float64,
    "pred": np.int64,
}


class ProjectLockedError(RuntimeError):
    """Another process is working on the project."""


class PoolChangedError(ValueError):
    """The pool file no longer matches the one the project recorded."""


class OptionError(ValueError):
    """A bad value of an option (the command line's exit status 2), found before any work."""


class ForeignStateError(ValueError):
    """The project's ``state.npz`` belongs to another project (copied or swapped in)."""


#: Set by the command-line interface: messages then name options as flags (``--budget 5``)
#: instead of keyword arguments (``budget=5``).
CLI_MESSAGES = contextvars.ContextVar("alamp_fast_workflow_cli", default=False)

# keyword -> flag, for the few whose names differ beyond "_" -> "-"
_FLAGS = {"pool": "--pool", "out": "--out", "classes": "--classes"}


def _opt(name: str, value=None) -> str:
    """An option as the caller wrote it: ``--allow-partial`` / ``--budget 5`` from the CLI,
    ``allow_partial=True (--allow-partial)`` / ``budget=5 (--budget 5)`` from Python."""
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    if value is not None and value is not True:
        flag = f"{flag} {value}"
    if CLI_MESSAGES.get():
        return flag
    return f"{name} ({flag})" if value is None else f"{name}={value!r} ({flag})"


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


# ------------------------------------------------------------------------------ atomic files


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


# ------------------------------------------------------------------------------ the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


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


# ------------------------------------------------------------------------------ the pool


_POOL_BLOCK_BYTES = 64 << 20  # a pool is read, hashed and normalised this much at a time


@dataclass
class _PoolData:
    """A pool file as read: float32 C-ordered features and the sha256 of their bytes."""

    X: np.ndarray
    sha_first: str  # of the first ``hash_rows`` rows (the rows the project already had)
    sha_all: str  # of every row


def _missing_pool(path: str, option: str, moved: bool):
    parent = os.path.dirname(path) or "."
    hint = ""
    if os.path.isdir(parent):
        import difflib

        near = difflib.get_close_matches(os.path.basename(path), os.listdir(parent), n=1)
        if near:
            hint = f" (did you mean {os.path.join(parent, near[0])}?)"
    elif parent:
        hint = f" (its directory {parent} does not exist either)"
    if moved and not hint:
        hint = f" (moved? give its new path with {_opt('pool')})"
    return FileNotFoundError(f"{option} {path} does not exist{hint}")


def _npy_header(f, path: str):
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            shape, fortran, dtype = fmt._read_array_header(f, version)
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{path} is not a valid .npy file ({exc})") from None
    return shape, fortran, np.dtype(dtype), f.tell()


def _readinto_exact(f, view: memoryview, path: str, expected: int) -> None:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise ValueError(
                f"{path} was truncated while being read (shorter than the {expected} bytes its "
                "header announces); nothing was changed: restore the file and retry"
            )
        got += n


def _load_pool(
    path: str,
    *,
    normalize: bool = False,
    hash_rows: int | None = None,
    option: str = "pool file",
    moved: bool = True,
    known_sha: str | None = None,
) -> _PoolData:
    """Read a pool file once: float32 features, row-normalised if asked, and their sha256.

    A ``.npy`` file is opened read-only, its size checked against its header before a byte of
    data is used (a truncated or still-growing file fails with one line, not a wrong last row),
    and its rows are read block by block into memory owned by this process, hashed (raw
    float32 bytes, as recorded at ``init``) and L2-normalised in place. The file is not
    memory-mapped: a mapping of a file truncated while in use ends the process with SIGBUS,
    and the normalised copy would cost the memory anyway. ``.npz`` pools (zip archives) are
    read with :func:`alamp_fast.datasets.load_features`; a damaged archive fails with one line.
    """
    from alamp_fast.datasets import l2_normalize

    if not os.path.exists(path):
        raise _missing_pool(path, option, moved)
    if os.path.isdir(path):
        raise ValueError(f"{option} {path} is a directory, not a .npy or .npz file")
    if not path.endswith((".npz", ".npy")):
        raise ValueError(f"{option} {path} must be a .npz or .npy file")
    if path.endswith(".npy"):
        with open(path, "rb", buffering=0) as f:
            shape, fortran, dtype, offset = _npy_header(f, path)
            if dtype.hasobject or dtype.kind not in "fiu" or dtype.fields is not None:
                raise ValueError(f"{path} holds {dtype} values, not numeric features")
            if len(shape) != 2:
                raise ValueError(f"{path}: pool features must be 2-D (rows x features), got "
                                 f"shape {shape}")
            n, d = int(shape[0]), int(shape[1])
            if n == 0 or d == 0:
                raise ValueError(f"{path}: the pool has no {'rows' if n == 0 else 'features'}")
            nbytes = n * d * dtype.itemsize
            size = os.fstat(f.fileno()).st_size
            if size < offset + nbytes:
                raise ValueError(
                    f"{path} is truncated: its header announces {n} x {d} {dtype} values "
                    f"({offset + nbytes} bytes) but the file has {size} bytes (copied "
                    "incompletely, or still being written?)"
                )
            X = np.empty((n, d), dtype=np.float32)
            if fortran:
                raw = np.empty((d, n), dtype=dtype)
                _readinto_exact(f, memoryview(raw).cast("B"), path, offset + nbytes)
                X[...] = raw.T
                del raw
                blocks = None
            else:
                blocks = f
            step = max(1, _POOL_BLOCK_BYTES // max(1, d * 4))
            cut = [hash_rows] if hash_rows and hash_rows < n else []
            bounds = sorted({0, n, *range(0, n, step), *cut})
            h = hashlib.sha256()
            sha_first = None
            for a, z in zip(bounds[:-1], bounds[1:], strict=True):
                if a == hash_rows:
                    sha_first = h.hexdigest()
                part = X[a:z]
                if blocks is not None:
                    if dtype == np.float32 and dtype.isnative:
                        _readinto_exact(f, memoryview(part).cast("B"), path, offset + nbytes)
                    else:
                        raw = np.empty((z - a, d), dtype=dtype)
                        _readinto_exact(f, memoryview(raw).cast("B"), path, offset + nbytes)
                        part[...] = raw
                if known_sha is None:
                    h.update(part)
                if normalize:
                    l2_normalize(part, out=part)  # in place: no block-sized temporary
            if known_sha is not None:  # the same file as verified before (see Project._pool)
                return _PoolData(X, known_sha, known_sha)
            sha_all = h.hexdigest()
            return _PoolData(X, sha_all if sha_first is None else sha_first, sha_all)
    import zipfile

    from alamp_fast.datasets import load_features

    try:
        X = load_features(path, require_labels=False)[0]
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zlib.error) as exc:
        raise ValueError(f"{path} is not a readable .npz pool ({type(exc).__name__}: {exc})") from None
    if X.ndim != 2:
        raise ValueError(f"{path}: pool features must be 2-D (rows x features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{path}: the pool has no rows")
    X = np.ascontiguousarray(X, dtype=np.float32)
    k = X.shape[0] if hash_rows is None else hash_rows
    h = _features_sha256(X, k)
    sha_first = h.hexdigest()
    if X.shape[0] > k:
        h.update(np.ascontiguousarray(X[k:]))
    if normalize:
        X = l2_normalize(X)
    return _PoolData(X, sha_first, h.hexdigest())


def _file_signature(path: str, option: str = "pool file") -> dict | None:
    """What identifies the file's current content cheaply, or None within 2 s of a write."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _missing_pool(path, option, True) from None
    if time.time() - st.st_mtime < 2.0:
        return None
    return {
        "size": st.st_size,
        "ino": st.st_ino,
        "dev": st.st_dev,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def _read_features(path: str) -> np.ndarray:
    """Float32 (n, d) features of a pool file (the formats of :mod:`alamp_fast.datasets`)."""
    return _load_pool(path).X


def _read_ids(source: dict, pool_path: str, n_rows: int) -> np.ndarray:
    """The sample ids of the pool rows, as a str array, from ``source`` (see :meth:`Project.init`)."""
    kind = source["kind"]
    if kind == "rows":
        return np.arange(n_rows).astype(str)
    if kind == "key":
        with np.load(pool_path, allow_pickle=False) as data:
            if source["column"] not in data.files:
                raise ValueError(
                    f"{pool_path} has no array {source['column']!r} for the sample "
                    f"ids (it has {sorted(data.files)})"
                )
            ids = np.asarray(data[source["column"]]).astype(str)
        where = f"{pool_path}[{source['column']!r}]"
    else:
        path = source["path"]
        if not os.path.exists(path):
            raise FileNotFoundError(f"ids file {path} does not exist")
        if path.lower().endswith(".csv"):
            ids = np.asarray(_read_csv_column(path, source["column"]), dtype=str)
        else:
            with open(path, encoding="utf-8-sig") as f:
                lines = [line.strip() for line in f.read().splitlines()]
            while lines and not lines[-1]:
                lines.pop()
            ids = np.asarray(lines, dtype=str)
        where = path
    ids = np.char.strip(ids.reshape(-1))
    if ids.shape[0] != n_rows:
        raise ValueError(f"{where} holds {ids.shape[0]} sample ids but the pool has {n_rows} rows")
    empty = np.flatnonzero(ids == "")
    if empty.size:
        raise ValueError(f"{where}: the sample id of row {int(empty[0])} is empty")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        dup = str(uniq[counts > 1][0])
        raise ValueError(f"{where}: sample id {dup!r} appears {int(counts[counts > 1][0])} times")
    return ids


def _pool_ids(source: dict, pool_path: str, n_rows: int, known: np.ndarray) -> np.ndarray:
    """The ids of a pool of ``n_rows`` rows whose first ones the state knows (``known``).

    Row-number ids (``kind == "rows"``) cannot change: the known ones are taken from the state
    and only appended rows get new ones (writing a million of them took 0.24 s a round).
    """
    if source["kind"] == "rows" and known.shape[0] <= n_rows:
        if known.shape[0] == n_rows:
            return known
        return np.concatenate([known, np.arange(known.shape[0], n_rows).astype(str)])
    return _read_ids(source, pool_path, n_rows)


def _read_csv_column(path: str, column: str) -> list[str]:
    header, rows = _read_csv(path)
    col = _find_column(header, column, path)
    return [row[col] if col < len(row) else "" for _, row in rows]


def _read_csv(path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of the non-blank rows; a UTF-8 BOM is skipped."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path} is not a valid CSV file: {exc}") from None
    numbered = [(i + 1, [c.strip() for c in cells]) for i, cells in enumerate(lines)]
    numbered = [(n, cells) for n, cells in numbered if any(cells)]
    if not numbered:
        raise ValueError(f"{path} is empty")
    (_, header), rows = numbered[0], numbered[1:]
    return header, rows


def _find_column(header: list[str], name: str, path: str) -> int:
    wanted = name.strip().lower()
    for i, h in enumerate(header):
        if h.lower() == wanted:
            return i
    raise ValueError(f"{path} has no {name!r} column (its header is {','.join(header)!r})")


def _features_sha256(X: np.ndarray, n_rows: int):
    """sha256 of the float32 bytes of the first ``n_rows`` rows (more rows can be added later)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X[:n_rows]))
    return h


def _check_classes(classes) -> list[str]:
    if isinstance(classes, str) or not isinstance(classes, Iterable):
        raise TypeError(f"classes must be a sequence of class names, got {classes!r}")
    names = [str(c).strip() for c in classes]
    if len(names) < 2:
        raise ValueError(f"a project needs at least 2 classes, got {names}")
    if "" in names:
        raise ValueError(f"class names must be non-empty, got {names}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"class name {name!r} is listed twice")
        seen.add(name)
    return names


# ------------------------------------------------------------------------------ the state


@dataclass
class _State:
    """Everything a project knows; serialised as one ``.npz`` (no pickles)."""

    meta: dict
    ids: np.ndarray
    labels: dict[str, np.ndarray]
    batches: dict[str, np.ndarray]
    strategy: dict[str, np.ndarray]

    def to_bytes(self) -> bytes:
        arrays = {"meta": np.array(json.dumps(self.meta)), "ids": self.ids}
        arrays.update({f"label.{k}": v for k, v in self.labels.items()})
        arrays.update({f"batch.{k}": v for k, v in self.batches.items()})
        arrays.update({f"strategy.{k}": v for k, v in self.strategy.items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def read(cls, directory: Path) -> _State:
        path = directory / STATE_FILE
        if not path.exists():
            hint = (
                " (a previous init was interrupted: run init again)"
                if (directory / LOCK_FILE).exists()
                else ""
            )
            raise FileNotFoundError(
                f"no alamp-fast project at {directory}: {STATE_FILE} is "
                f"missing{hint}; create one with init"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta")))
        except Exception as exc:  # zip, npy and JSON errors: any of them means "unreadable"
            raise ValueError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format {meta.get('format')!r}; this alamp_fast "
                f"reads format {FORMAT_VERSION}"
            )

        def part(prefix):
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        st = cls(meta, arrays["ids"], part("label."), part("batch."), part("strategy."))
        _check_identity(directory, st)
        return st

    # --- derived views

    @property
    def n_rounds(self) -> int:
        return len(self.meta["rounds"])

    @property
    def n_pool(self) -> int:
        return int(self.ids.shape[0])

    def current_labels(self, n_pool: int | None = None) -> np.ndarray:
        """Class code per pool row, -1 where unlabeled; the latest label of a row wins."""
        y = np.full(self.n_pool if n_pool is None else n_pool, -1, dtype=np.int64)
        rows = self.labels["row"]
        if rows.size:
            # the last event per row: first occurrence in the reversed log
            _, first_rev = np.unique(rows[::-1], return_index=True)
            last = rows.size - 1 - first_rev
            y[rows[last]] = self.labels["cls"][last]
        return y

    def batch_rows(self, round_no: int) -> np.ndarray:
        return self.batches["row"][self.batches["round"] == round_no]

    def training_rows(self, y: np.ndarray) -> np.ndarray:
        """Labeled rows in selection order (round, then rank); rows never selected last."""
        selected = self.batches["row"]
        _, first = np.unique(selected, return_index=True)
        in_order = selected[np.sort(first)]
        in_order = in_order[y[in_order] >= 0]
        extra = np.setdiff1d(np.flatnonzero(y >= 0), in_order)
        return np.concatenate([in_order, extra]).astype(np.int64)

    def append(self, table: str, **columns) -> None:
        target = self.labels if table == "labels" else self.batches
        dtypes = _LABEL_DTYPES if table == "labels" else _BATCH_DTYPES
        for key, dtype in dtypes.items():
            target[key] = np.concatenate([target[key], np.asarray(columns[key], dtype=dtype)])


def _empty_tables(dtypes: dict) -> dict[str, np.ndarray]:
    return {k: np.empty(0, dtype=d) for k, d in dtypes.items()}


# ------------------------------------------------------------------------------ identity


def _read_identity(directory: Path) -> dict | None:
    """``<project>/project.json``, or None when it is missing (older projects)."""
    path = directory / IDENTITY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path} is unreadable ({exc.strerror})") from None
    with open(fd, "rb", closefd=True) as f:
        raw = f.read(1 << 20)
    try:
        ident = json.loads(raw.decode())
        if not isinstance(ident, dict) or not isinstance(ident.get("project_id"), str):
            raise ValueError("no project_id")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a project identity file ({exc}); if it was damaged, remove it "
            "and the project rewrites it from its state"
        ) from None
    return ident


def _identity_record(st: _State) -> dict:
    pool = st.meta["pool"]
    return {
        "project_id": st.meta["project_id"],
        "created": st.meta.get("created"),
        "pool": {"path": pool["path"], "sha256": pool["sha256"], "n_rows": pool["n_rows"]},
    }


def _describe_identity(ident: dict) -> str:
    pool = ident.get("pool") or {}
    return (
        f"project id {ident.get('project_id') or 'none'}, created {ident.get('created')}, "
        f"pool {pool.get('path')}"
    )


def _check_identity(directory: Path, st: _State) -> None:
    """Refuse a state whose project id is not the one ``project.json`` records."""
    ident = _read_identity(directory)
    if ident is None:
        return  # an older project, or a crash before the file was written: written at commit
    if st.meta.get("project_id") != ident["project_id"]:
        theirs = {
            "project_id": st.meta.get("project_id"),
            "created": st.meta.get("created"),
            "pool": st.meta.get("pool"),
        }
        raise ForeignStateError(
            f"{directory / STATE_FILE} is the state of another project "
            f"({_describe_identity(theirs)}), not of the project at {directory} "
            f"({_describe_identity(ident)}); put this project's own {STATE_FILE} back (or open "
            "the other project's directory); nothing was changed"
        )


def _ensure_identity(directory: Path, st: _State) -> None:
    """Write ``project.json`` after a commit if it is missing (new and older projects)."""
    if _read_identity(directory) is None:
        _atomic_write(directory / IDENTITY_FILE, json.dumps(_identity_record(st)).encode())


# ------------------------------------------------------------------------------ public results


@dataclass(frozen=True)
class Batch:
    """One round's batch, best first (what ``batches/round-NNN.csv`` holds).

    ``scores`` is the strategy's ranking value per sample (margin: the margin, lowest first;
    entropy / least_confidence: that measure, highest first; alamp / alamp-div: the alamp score
    ``(prev - cur) / (prev + cur)``, highest first, or the margin at alamp's first query;
    coreset: the distance to the nearest labeled or earlier pick; NaN for random picks and for
    the first coreset pick with nothing labeled). ``margins`` and ``predicted`` are the current
    model's top-2 margin and top class (NaN / None when there is no model yet).
    """

    round: int
    kind: str
    ids: list[str]
    rows: np.ndarray
    scores: np.ndarray
    margins: np.ndarray
    predicted: list[str | None]
    path: Path
    reissued: bool = False

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class LabelReport:
    """What :meth:`Project.label` did: counts of records by outcome."""

    new: int
    relabeled: int
    unchanged: int
    blank: int
    unrequested: int
    pending: int
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ the project


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _run_seed(seed: int) -> int:
    # simulate()'s seed of run 0: a project with seed s reproduces simulate(seed=s, runs=1).
    from alamp_fast.al.results import derive_seed

    return derive_seed(seed, 0)


def _make_strategy(settings: dict):
    from alamp_fast.al.results import derive_seed
    from alamp_fast.strategies import get_strategy

    name = settings["strategy"]
    seed = derive_seed(settings["seed"], 0, zlib.crc32(name.encode()))
    try:
        return get_strategy(name, seed=seed, **settings["strategy_kwargs"])
    except TypeError as exc:
        kwargs = settings["strategy_kwargs"]
        if CLI_MESSAGES.get() and set(kwargs) == {"certainty"}:  # the one the CLI passes
            raise ValueError(
                f"--certainty {kwargs['certainty']} does not apply to strategy {name!r} "
                "(only alamp and alamp-div take a certainty measure)"
            ) from None
        raise ValueError(f"strategy_kwargs {kwargs} do not fit strategy {name!r}: {exc}") from None
    except ValueError as exc:
        kwargs = settings["strategy_kwargs"]
        if CLI_MESSAGES.get() and "certainty" in kwargs:
            raise ValueError(f"--certainty {kwargs['certainty']}: {exc}") from None
        raise


class Project:
    """An annotation project: a pool, the labels received, the strategy's memory, the rounds.

    Create one with :meth:`init`, reopen it with :meth:`open`. Every method re-reads the state
    from disk and every change is committed atomically under the project lock, so several
    :class:`Project` objects (or processes, one at a time) may work on the same directory.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> d = tempfile.mkdtemp()
    >>> X = np.concatenate([rng.normal(0, 1, (40, 5)), rng.normal(3, 1, (40, 5))])
    >>> np.save(os.path.join(d, "pool.npy"), X.astype(np.float32))
    >>> truth = ["cat"] * 40 + ["dog"] * 40                 # the annotators' answers
    >>> proj = Project.init(os.path.join(d, "proj"), os.path.join(d, "pool.npy"),
    ...                     classes=["cat", "dog"], strategy="alamp", budget=10,
    ...                     classifier="logreg")
    >>> for _ in range(3):
    ...     batch = proj.select()                           # writes batches/round-NNN.csv
    ...     _ = proj.label({i: truth[int(i)] for i in batch.ids})
    >>> s = proj.status(cv=0)
    >>> s["rounds"], s["n_labeled"], sum(s["class_counts"].values())
    (3, 30, 30)
    """

    def __init__(self, path: Path, state: _State, pool: str | None = None):
        self.path = path
        self._state = state
        self._pool_override = None if pool is None else os.path.abspath(os.fspath(pool))
        self.notes: list[str] = []

    def __repr__(self) -> str:
        s = self._state.meta["settings"]
        return (
            f"Project({str(self.path)!r}, strategy={s['strategy']!r}, "
            f"rounds={self._state.n_rounds}, labeled={int((self.labels_array() >= 0).sum())})"
        )

    # --- creation

    @classmethod
    def init(
        cls,
        path,
        pool,
        *,
        classes=None,
        ids=None,
        id_column: str | None = None,
        strategy: str = "alamp",
        budget: int = 100,
        init: int | None = None,
        classifier: str = "linear-svc",
        cost_sensitive: bool | None = None,
        seed: int = 0,
        normalize: bool = True,
        strategy_kwargs: dict | None = None,
    ) -> Project:
        """Create a project directory over a pool of features.

        Parameters
        ----------
        path : str or PathLike
            The project directory (created; must not hold a project already).
        pool : str or PathLike
            Pool features: ``.npz`` (quantized ``Xq``/``scale``/``zero_point``, or ``X``) or
            ``.npy``; labels in the file, if any, are ignored. The project stores its absolute
            path and the sha256 of its features.
        classes : sequence of str, optional
            The class names annotators may use. Default: the ``classes`` array of an ``.npz``
            pool.
        ids : str or PathLike, optional
            A file of sample ids, one per pool row: text (one per line) or ``.csv`` (column
            ``id_column``, default ``"id"``). Without it, ``id_column`` names an array of the
            ``.npz`` pool (e.g. ``"paths"``), and without either the ids are the row numbers
            ``"0"``, ``"1"``, ...
        id_column : str, optional
            See ``ids``.
        strategy : str
            A name of :data:`alamp_fast.strategies.STRATEGIES`.
        budget : int
            Samples per round.
        init : int, optional
            Size of the first, random batch (default: ``budget``).
        classifier : str
            A name of :data:`alamp_fast.protocol.CLASSIFIERS`.
        cost_sensitive : bool, optional
            ``class_weight="balanced"``; None: on when the labels so far have ir >= 0.1.
        seed : int
            The project's seed (see the module docstring: it matches ``simulate``'s).
        normalize : bool
            L2-normalise the pool rows (as ``alamp-fast simulate`` does).
        strategy_kwargs : dict, optional
            Passed to :func:`~alamp_fast.strategies.get_strategy` (e.g. ``certainty``);
            JSON values only.

        Returns
        -------
        Project
        """
        from alamp_fast.protocol import CLASSIFIERS
        from alamp_fast.strategies import canonical_name

        _check_fault_env()
        path = Path(os.path.abspath(os.fspath(path)))
        pool = os.path.abspath(os.fspath(pool))
        budget = _check_positive_int("budget", budget)
        init = budget if init is None else _check_positive_int("init", init)
        if (
            isinstance(seed, (bool, np.bool_))
            or not isinstance(seed, (int, np.integer))
            or seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not isinstance(classifier, str) or classifier not in CLASSIFIERS:
            raise ValueError(
                f"unknown classifier {classifier!r}; choose from "
                f"{', '.join(CLASSIFIERS)} (a project stores its classifier by name)"
            )
        if cost_sensitive is not None and not isinstance(cost_sensitive, (bool, np.bool_)):
            raise TypeError(f"cost_sensitive must be True, False or None, got {cost_sensitive!r}")
        strategy_kwargs = dict(strategy_kwargs or {})
        try:
            json.dumps(strategy_kwargs)
        except TypeError:
            raise ValueError(
                f"strategy_kwargs must hold JSON values (a project stores them), "
                f"got {strategy_kwargs!r}"
            ) from None
        settings = {
            "strategy": canonical_name(strategy),
            "strategy_kwargs": strategy_kwargs,
            "budget": budget,
            "init": init,
            "classifier": classifier,
            "cost_sensitive": None if cost_sensitive is None else bool(cost_sensitive),
            "seed": int(seed),
            "normalize": bool(normalize),
        }
        strat = _make_strategy(settings)

        signature = _file_signature(pool) if os.path.isfile(pool) else None  # before the read
        pool_data = _load_pool(pool, option=_opt("pool"), moved=False)
        X = pool_data.X
        if ids is not None:
            ids_source = {
                "kind": "file",
                "path": os.path.abspath(os.fspath(ids)),
                "column": id_column or "id",
            }
        elif id_column is not None:
            if not pool.endswith(".npz"):
                raise ValueError(
                    f"{_opt('id_column', id_column)} without an ids file names an array "
                    f"of an .npz pool, but {pool} is not one"
                )
            ids_source = {"kind": "key", "column": id_column}
        else:
            ids_source = {"kind": "rows"}
        sample_ids = _read_ids(ids_source, pool, X.shape[0])
        if classes is None:
            if pool.endswith(".npz"):
                with np.load(pool, allow_pickle=False) as data:
                    if "classes" in data.files:
                        classes = data["classes"].tolist()
            if classes is None:
                raise ValueError(
                    f"no class names: pass {_opt('classes')}; {pool} has no 'classes' array"
                )
        classes = _check_classes(classes)

        if (path / STATE_FILE).exists():
            raise ValueError(
                f"{path} is already an alamp-fast project; open it (or remove it to start over)"
            )
        path.mkdir(parents=True, exist_ok=True)
        with _ProjectLock(path, "init") as lock:
            _fault("init:locked")
            if (path / STATE_FILE).exists():  # created by a process that held the lock before us
                raise ValueError(f"{path} is already an alamp-fast project")
            _remove_stale_temps(path)
            with contextlib.suppress(FileNotFoundError):  # left by an interrupted init
                (path / IDENTITY_FILE).unlink()
            (path / BATCH_DIR).mkdir(exist_ok=True)
            meta = {
                "format": FORMAT_VERSION,
                "generation": 0,
                "project_id": uuid.uuid4().hex,
                "created": _now_iso(),
                "settings": settings,
                "classes": classes,
                "pool": {
                    "path": pool,
                    "n_rows": int(X.shape[0]),
                    "n_features": int(X.shape[1]),
                    "sha256": pool_data.sha_all,
                    "ids": ids_source,
                    **({"signature": signature} if signature else {}),
                },
                "rounds": [],
                "ingests": [],
            }
            state = _State(
                meta,
                sample_ids,
                _empty_tables(_LABEL_DTYPES),
                _empty_tables(_BATCH_DTYPES),
                strat.state_dict(),
            )
            _fsync_dir(path)
            _commit(path, state, "init")
            _fsync_dir(path.parent)
            project = cls(path, state)
            note = lock.stale_note()
            if note:
                project.notes.append(note)
        return project

    @classmethod
    def open(cls, path, *, pool=None) -> Project:
        """Open an existing project.

        Parameters
        ----------
        path : str or PathLike
            The project directory.
        pool : str or PathLike, optional
            A new location of the pool file (after a move); it must hold the same features.
            The next :meth:`select` records it.
        """
        _check_fault_env()
        path = Path(os.path.abspath(os.fspath(path)))
        return cls(path, _State.read(path), pool)

    # --- reading

    def _reload(self) -> _State:
        self._state = _State.read(self.path)
        return self._state

    @property
    def classes(self) -> list[str]:
        """The class names, in code order."""
        return list(self._state.meta["classes"])

    @property
    def settings(self) -> dict:
        """Strategy, budget, classifier and the other settings of :meth:`init`."""
        return dict(self._state.meta["settings"])

    @property
    def rounds(self) -> int:
        """Number of rounds selected so far."""
        return self._state.n_rounds

    def labels_array(self) -> np.ndarray:
        """Class code per pool row (as of the last select), -1 where unlabeled."""
        return self._state.current_labels()

    def labels(self) -> list[dict]:
        """Every label received, in order: id, label, round, time (UTC ISO), relabel."""
        st = self._state
        classes = st.meta["classes"]
        return [
            {
                "id": str(st.ids[r]),
                "label": classes[c],
                "round": int(k),
                "time": datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(),
                "relabel": bool(x),
            }
            for r, c, k, t, x in zip(
                st.labels["row"].tolist(),
                st.labels["cls"].tolist(),
                st.labels["round"].tolist(),
                st.labels["time"].tolist(),
                st.labels["relabel"].tolist(),
                strict=True,
            )
        ]

    def batch(self, round_no: int) -> Batch:
        """The batch of round ``round_no`` (1-based)."""
        st = self._state
        if not 1 <= round_no <= st.n_rounds:
            raise ValueError(
                f"round {round_no} does not exist; the project has {st.n_rounds} round(s)"
            )
        return _batch_from_state(self.path, st, round_no)

    # --- the lock

    def _lock(self, command: str) -> _ProjectLock:
        _check_fault_env()
        return _ProjectLock(self.path, command)

    def _enter(self, lock: _ProjectLock) -> _State:
        # A fresh copy from disk: an operation edits it and publishes it (self._state) only
        # once committed, so a failed operation leaves this object as it was.
        note = lock.stale_note()
        self.notes = [note] if note else []
        _remove_stale_temps(self.path)
        return _State.read(self.path)

    # --- the pool

    def _pool(
        self, st: _State, normalize: bool = False, features: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, dict]:
        """Features and ids of the pool file, checked against the state; the updated pool meta.

        The file is read once (:func:`_load_pool`), and normalised while read if
        ``normalize``. Rows appended since the state was written are accepted (their count is
        in the returned meta's ``n_rows``); any other change raises :class:`PoolChangedError`.

        The sha256 of the features is computed at ``init`` and checked while the file is read;
        it is not computed again while the file's signature (size, inode, mtime and ctime in
        ns) is the one recorded when it last matched: then a round that needs no features
        (``features=False``: the random ones) reads none, and the others skip the hashing.
        A signature is only recorded for a file last modified more than 2 s before it was
        taken, so a write in the same clock tick cannot go unseen.
        """
        meta = dict(st.meta["pool"])
        path = self._pool_override or meta["path"]
        n_old = meta["n_rows"]
        option = "--pool" if (self._pool_override and CLI_MESSAGES.get()) else "pool file"
        sig = _file_signature(path, option)
        trusted = sig is not None and sig == meta.get("signature")
        if trusted and not features:
            ids = _pool_ids(meta["ids"], path, n_old, st.ids)
            if not np.array_equal(ids, st.ids):
                trusted = False  # an ids file that changed: the full check below says how
            else:
                meta.update(path=path)
                return None, ids, meta
        data = _load_pool(
            path, normalize=normalize, hash_rows=n_old, option=option,
            known_sha=meta["sha256"] if trusted else None,
        )
        X = data.X
        if X.shape[1] != meta["n_features"]:
            raise PoolChangedError(
                f"the pool file {path} changed: its rows have {X.shape[1]} "
                f"features, the project's had {meta['n_features']}"
            )
        if X.shape[0] < n_old:
            raise PoolChangedError(
                f"the pool file {path} changed: it has {X.shape[0]} rows, the "
                f"project's had {n_old} (rows may be appended, not removed)"
            )
        ids = _pool_ids(meta["ids"], path, X.shape[0], st.ids)
        differ = np.flatnonzero(ids[:n_old] != st.ids)
        if differ.size:
            r = int(differ[0])
            raise PoolChangedError(
                f"the pool file {path} changed: the sample id of row {r} is {str(ids[r])!r}, the "
                f"project's was {str(st.ids[r])!r} (rows may be appended, not reordered or renamed)"
            )
        if data.sha_first != meta["sha256"]:
            raise PoolChangedError(
                f"the pool file {path} changed: the features of its first {n_old} rows differ "
                f"from the ones the project recorded (sha256 {data.sha_first[:12]}... instead "
                f"of {meta['sha256'][:12]}...); restore the file or start a new project"
            )
        meta.update(path=path, n_rows=int(X.shape[0]), sha256=data.sha_all)
        if sig is not None:
            meta["signature"] = sig
        else:
            meta.pop("signature", None)
        return X, ids, meta

    def check_pool(self) -> None:
        """Read the pool file and check it against the project (raises as :meth:`select`)."""
        self._pool(self._reload())

    # --- export

    def label_table(self) -> dict[str, np.ndarray]:
        """Every labeled sample: ``id``, ``label`` (current), ``round``, ``score``.

        ``round`` is the last round whose batch held the sample (0: labeled without being
        asked for), ``score`` the strategy's acquisition score of the sample in that round
        (NaN for random picks and unrequested labels). Rows are in pool order.
        """
        st = self._reload()
        y = st.current_labels()
        rows = np.flatnonzero(y >= 0)
        round_of = np.zeros(st.n_pool, dtype=np.int64)
        score_of = np.full(st.n_pool, np.nan)
        b = st.batches
        order = np.argsort(b["round"], kind="stable")  # later rounds overwrite earlier ones
        round_of[b["row"][order]] = b["round"][order]
        score_of[b["row"][order]] = b["score"][order]
        classes = np.asarray(st.meta["classes"], dtype=str)
        return {
            "id": st.ids[rows].astype(str),
            "label": classes[y[rows]],
            "round": round_of[rows],
            "score": score_of[rows],
        }

    def export_labels(self, out, *, format: str | None = None) -> int:
        """Write every label received to ``out`` (see :meth:`label_table`); returns the count.

        ``format`` is ``csv`` (text cells escaped as in batch CSVs), ``parquet`` (needs
        ``pyarrow``) or ``npz``; default: ``out``'s suffix. Written atomically.
        """
        out = Path(os.path.abspath(os.fspath(out)))
        fmt = (format or out.suffix.lstrip(".")).lower()
        if fmt not in ("csv", "parquet", "npz"):
            raise OptionError(
                f"{_opt('format', format or fmt)}: choose csv, parquet or npz"
                + ("" if format else f" (from the suffix of {out.name})")
            )
        if out.is_dir():
            raise OptionError(f"{_opt('out', out)} is a directory; give a file name")
        t = self.label_table()
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(("id", "label", "round", "score"))
            for sid, lab, r, sc in zip(
                t["id"].tolist(), t["label"].tolist(), t["round"].tolist(), t["score"].tolist(),
                strict=True,
            ):
                w.writerow((_csv_escape(sid), _csv_escape(lab), r, _fmt(sc)))
            data = buf.getvalue().encode("utf-8")
        elif fmt == "npz":
            bio = io.BytesIO()
            np.savez(bio, **t)
            data = bio.getvalue()
        else:
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise OptionError(
                    f"{_opt('format', 'parquet')} needs pyarrow: pip install pyarrow"
                ) from None
            sink = pa.BufferOutputStream()
            pq.write_table(pa.table({k: pa.array(v.tolist()) for k, v in t.items()}), sink)
            data = sink.getvalue().to_pybytes()
        _remove_stale_copies(out)
        _atomic_write(out, data)
        return int(t["id"].size)

    # --- select

    def select(
        self,
        *,
        budget: int | None = None,
        allow_partial: bool = False,
        out=None,
        scheduler: str | None = None,
        chunk_rows: int | None = None,
    ) -> Batch:
        """Train on the labels so far, pick the next batch, record the round, write its CSV.

        Parameters
        ----------
        budget : int, optional
            Batch size of this round (default: the project's ``budget``; ``init`` for the
            first round).
        allow_partial : bool
            Start a new round although the last batch is not fully labeled; its unlabeled
            samples return to the pool. Without it, a last batch with *no* label yet is
            returned again (``reissued=True``, its CSV rewritten if missing: the resume path
            after a crash), and one partly labeled raises ValueError.
        out : str or PathLike, optional
            Also write the batch CSV there.
        scheduler : str, optional
            Address of a Dask scheduler (``tcp://host:8786``): the pool probabilities and the
            strategy run on its workers (module docstring), with the same batch. Checked
            before the project is touched: an unreachable scheduler raises ValueError.
        chunk_rows : int, optional
            Pool rows per chunk on the cluster (needs ``scheduler``); default: equal chunks
            of at most 64 MiB of features plus probabilities.

        Returns
        -------
        Batch
        """
        import alamp_fast as af
        from alamp_fast.imbalance import IMBALANCED_IR, imbalance_ratio
        from alamp_fast.strategies import Strategy

        # alamp_fast.protocol (scikit-learn: seconds of start-up) only where a round needs it

        if chunk_rows is not None:
            if scheduler is None:
                raise OptionError(
                    f"{_opt('chunk_rows', chunk_rows)} only applies with {_opt('scheduler')}"
                )
            from alamp_fast.protocol import _check_int

            try:
                chunk_rows = _check_int("chunk_rows", chunk_rows, 1)
            except (TypeError, ValueError) as exc:
                raise OptionError(str(exc)) from None
        if budget is not None:
            try:
                budget = _check_positive_int("budget", budget)
            except (TypeError, ValueError) as exc:
                raise OptionError(str(exc)) from None
        # connected before the lock: a wrong address fails at once, whatever the round
        try:
            if scheduler is None:
                cluster = contextlib.nullcontext()
            else:
                from alamp_fast.protocol import _connect

                cluster = _connect(scheduler)
        except ValueError as exc:
            raise OptionError(str(exc)) from None
        if out is not None:
            out = Path(os.path.abspath(os.fspath(out)))
            if out.is_dir():
                raise OptionError(f"{_opt('out', out)} is a directory; give a file name")
        with cluster as client, self._lock("select") as lock:
            _fault("select:locked")
            st = self._enter(lock)
            if out is not None:
                _remove_stale_copies(out)
            settings = st.meta["settings"]
            last = st.n_rounds
            if last:
                rows = st.batch_rows(last)
                pending = rows[st.current_labels()[rows] < 0]
                if pending.size == rows.size:
                    # Not one label since round `last` was made: whatever the options, that
                    # round is delivered (again), never followed by another. A crash after
                    # its commit, before or after its CSV, is resumed by re-running the same
                    # command (with --budget N or --allow-partial too); a new round now would
                    # train on the same labels and skip one the annotators never saw.
                    if budget is None or int(budget) == rows.size:
                        self._state = st
                        return self._reissue(st, last, out)
                    raise ValueError(
                        f"round {last}: {pending.size} of {rows.size} samples have no label yet, "
                        f"and a round is not followed by another before it has a label; label "
                        f"its batch ({BATCH_DIR}/{_batch_name(last)}; "
                        f"{_opt('budget', budget)} would be the size of the next round)"
                    )
                if pending.size and not allow_partial:
                    raise ValueError(
                        f"round {last}: {pending.size} of {rows.size} samples have no label yet "
                        f"(e.g. {', '.join(repr(str(i)) for i in st.ids[pending[:3]])}); label "
                        f"them, or select with {_opt('allow_partial', True)} to start "
                        f"round {last + 1} without them"
                    )
            # a random round (nothing or one class labeled) needs no feature at all
            y_now = st.current_labels()
            needs_model = np.unique(y_now[y_now >= 0]).size >= 2
            X, ids, pool_meta = self._pool(
                st, normalize=settings["normalize"], features=needs_model
            )
            n_grown = pool_meta["n_rows"] - st.n_pool
            st.ids = ids
            st.meta["pool"] = pool_meta
            n_pool = pool_meta["n_rows"]
            classes = st.meta["classes"]
            n_classes = len(classes)
            y = st.current_labels(n_pool)
            labeled = st.training_rows(y)
            n_unlabeled = n_pool - labeled.size
            round_no = last + 1
            n_seen = np.unique(y[labeled]).size
            if labeled.size == 0:
                kind, b = "initial", settings["init"]
            else:
                kind = "random" if n_seen < 2 else "strategy"
                b = settings["budget"]
            if budget is not None:
                b = _check_positive_int("budget", budget)
            if n_unlabeled == 0:
                raise ValueError(f"all {n_pool} pool samples are labeled; nothing to select")
            if b > n_unlabeled:
                raise ValueError(
                    f"budget b={b} exceeds the {n_unlabeled} unlabeled samples of "
                    f"the pool; pass a smaller {_opt('budget')}"
                )

            run_seed = _run_seed(settings["seed"])
            strategy: Strategy = _make_strategy(settings)
            strategy.load_state_dict(st.strategy)
            nan = np.full(b, np.nan)
            scores, margins, pred = nan, nan.copy(), np.full(b, -1, dtype=np.int64)
            cost_sensitive = None
            if kind == "initial":
                # simulate()'s initial batch, draw for draw
                rng = np.random.default_rng(run_seed)
                picks = rng.choice(n_pool, size=b, replace=False).astype(np.int64)
            elif kind == "random":
                rng = np.random.default_rng([run_seed, round_no])
                picks = rng.choice(np.flatnonzero(y < 0), size=b, replace=False).astype(np.int64)
            else:
                from alamp_fast.protocol import (
                    _scatter_rows,
                    make_classifier,
                    pool_probs,
                    pool_top2_margin,
                )

                cost_sensitive = settings["cost_sensitive"]
                if cost_sensitive is None:
                    counts = np.bincount(y[labeled], minlength=n_classes)
                    cost_sensitive = imbalance_ratio(counts) >= IMBALANCED_IR
                # rows normalised while read: the classifier does not normalise them again
                # (as simulate() on unit rows)
                clf = make_classifier(
                    settings["classifier"],
                    cost_sensitive=cost_sensitive,
                    random_state=run_seed,
                    prenormalized=bool(settings["normalize"]),
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    clf.fit(X[labeled], y[labeled])

                def query(strategy):
                    if client is None and (strategy.accepts_margin or not strategy.needs_probs):
                        # the fused path (as simulate's): one scoring pass gives the margins
                        # and top classes, never the (n_pool, n_classes) probability matrix
                        margin_all, top_all = pool_top2_margin(clf, X, n_classes)
                        fused = (
                            {"margin": margin_all, "top_class": top_all}
                            if strategy.accepts_margin
                            else {}
                        )
                        res = strategy.query_result(None, b, labeled=labeled, features=X, **fused)
                        picks = np.asarray(res, dtype=np.int64)
                        ranking = res.scores if strategy.name in _RANKED else None
                        return (picks, *_batch_rows(picks, margin_all, top_all, ranking))
                    # the pool, or its row chunks on the cluster's workers
                    X_work = (
                        X if client is None else _scatter_rows(client, X, chunk_rows, n_classes)
                    )
                    probs = pool_probs(clf, X_work, n_classes)
                    res = strategy.query_result(
                        probs if strategy.needs_probs else None,
                        b,
                        labeled=labeled,
                        features=X_work,
                    )
                    picks = np.asarray(res, dtype=np.int64)
                    # the strategy's own values, computed once by its query
                    ranking = res.scores if strategy.name in _RANKED else None
                    if res.margin is not None and res.top_class is not None:
                        margin_all, top_all = res.margin, res.top_class
                    else:
                        margin_all, top_all = af.top2_margin(probs)
                    return (picks, *_batch_rows(picks, margin_all, top_all, ranking))

                if client is None:
                    picks, margins, pred, ranked = query(strategy)
                else:
                    strategy, (picks, margins, pred, ranked) = _retry_on_cluster(
                        client, settings, st.strategy, query
                    )
                margins = np.asarray(margins, dtype=np.float64)
                pred = np.asarray(pred, dtype=np.int64)
                if ranked is not None:
                    scores = np.asarray(ranked, dtype=np.float64)
                elif strategy.name == "coreset":
                    scores = _kcenter_distances(X, labeled, picks)
            # the pool's features are done with: freed before the state is serialised, so the
            # round's peak memory is the pool plus the scoring, not the pool plus the state
            X = None
            _fault("select:queried")
            _check_picks(picks, b, y)

            st.append(
                "batches",
                round=np.full(b, round_no),
                row=picks,
                score=scores,
                margin=margins,
                pred=pred,
            )
            st.strategy = strategy.state_dict()
            st.meta["rounds"].append(
                {
                    "round": round_no,
                    "time": _now_iso(),
                    "kind": kind,
                    "strategy": settings["strategy"] if kind == "strategy" else "random",
                    "size": int(b),
                    "n_labeled": int(labeled.size),
                    "n_pool": int(n_pool),
                    "new_rows": int(n_grown),
                    "cost_sensitive": None if cost_sensitive is None else bool(cost_sensitive),
                    "file": f"{BATCH_DIR}/{_batch_name(round_no)}",
                    "discarded_pending": int((y[st.batch_rows(last)] < 0).sum()) if last else 0,
                }
            )
            _commit(self.path, st, "select")
            self._state = st
            batch = _batch_from_state(self.path, st, round_no)
            _write_batch_csv(batch, st, fault="select:csv")
            if out is not None:
                _write_batch_csv(batch, st, path=Path(os.fspath(out)))
            _fault("select:done")
        return batch

    def _reissue(self, st: _State, round_no: int, out) -> Batch:
        batch = _batch_from_state(self.path, st, round_no, reissued=True)
        if not batch.path.exists():
            _write_batch_csv(batch, st)
        if out is not None:
            _write_batch_csv(batch, st, path=Path(os.fspath(out)))
        return batch

    def export_label_studio(self, round_no: int, out) -> Batch:
        """Write round ``round_no``'s batch as Label Studio tasks (JSON), for its import.

        One task per sample, in rank order: ``data`` holds ``sample_id`` (the project's id;
        point your labeling config's media at it), ``rank`` and ``round``; one prediction per
        task carries the sample's acquisition score as ``score`` (so Label Studio's "order by
        prediction score" serves the batch: descending for alamp / alamp-div, entropy and
        least confidence, ascending for margin / margin-div, as the ``score`` column of the
        batch CSV; none for random picks) and the strategy's name as ``model_version``, with no
        pre-annotation (``result`` empty). Label Studio's JSON export of the annotated tasks is
        read back by :meth:`label`.
        """
        round_no = _check_positive_int("round", round_no)
        st = self._reload()
        if round_no > st.n_rounds:
            raise OptionError(
                f"{_opt('round', round_no)}: no such round; the project has {st.n_rounds} round(s)"
            )
        batch = _batch_from_state(self.path, st, round_no)
        info = st.meta["rounds"][round_no - 1]
        version = info.get("strategy") or st.meta["settings"]["strategy"]
        tasks = []
        for rank, (sid, score) in enumerate(zip(batch.ids, batch.scores.tolist(), strict=True), 1):
            pred = {"model_version": version, "result": []}
            if not np.isnan(score):
                pred["score"] = float(score)
            tasks.append(
                {"data": {"sample_id": sid, "rank": rank, "round": round_no},
                 "predictions": [pred]}
            )
        out = Path(os.path.abspath(os.fspath(out)))
        if out.is_dir():
            raise OptionError(f"{_opt('out', out)} is a directory; give a file name")
        _remove_stale_copies(out)
        _atomic_write(out, json.dumps(tasks, indent=1).encode("utf-8"))
        return batch

    def export_round(self, round_no: int, out=None) -> Batch:
        """Write the batch CSV of round ``round_no`` again, from the state.

        The CSV of a round is a pure function of the state, so this rewrites, byte for byte,
        what :meth:`select` wrote (``batches/round-NNN.csv``, or ``out``), e.g. after it was
        deleted or edited by hand. It does not start or change any round.
        """
        round_no = _check_positive_int("round", round_no)
        with self._lock("export") as lock:
            st = self._enter(lock)
            if round_no > st.n_rounds:
                raise OptionError(
                    f"{_opt('round', round_no)}: no such round; the project has "
                    f"{st.n_rounds} round(s)"
                )
            self._state = st
            batch = _batch_from_state(self.path, st, round_no)
            target = batch.path if out is None else Path(os.path.abspath(os.fspath(out)))
            if out is not None:
                _remove_stale_copies(target)
            _write_batch_csv(batch, st, path=target)
        return batch

    # --- label

    def label(
        self,
        source,
        *,
        relabel: bool = False,
        allow_unrequested: bool = False,
        id_column: str = "id",
        label_column: str = "label",
    ) -> LabelReport:
        """Ingest annotations.

        Parameters
        ----------
        source : str, PathLike, mapping or iterable of pairs
            A CSV file with a header holding ``id_column`` and ``label_column`` (other columns
            are ignored, a UTF-8 BOM is skipped; a batch CSV with its ``label`` column filled in
            works as is), or ``{id: label}``, or ``(id, label)`` pairs. Rows with an empty
            label are skipped (a partial batch is fine).
        relabel : bool
            Replace the label of samples labeled before with a different class. Without it,
            such records raise ValueError. A record repeating a sample's current label is
            always accepted and changes nothing (ingesting a file twice is harmless).
        allow_unrequested : bool
            Accept labels for pool samples no batch asked for (e.g. labels you already had).
        id_column, label_column : str
            CSV column names (matched case-insensitively).

        Returns
        -------
        LabelReport

        Raises
        ------
        ValueError
            Unknown ids, unknown class names, an id given twice, an empty file, relabels
            without ``relabel``, unrequested ids without ``allow_unrequested``. Nothing is
            ingested then: the state is left untouched.
        """
        records, origin = _read_records(source, id_column, label_column)
        with self._lock("label") as lock, contextlib.closing(records):
            _fault("label:locked")
            st = self._enter(lock)
            if records.note:
                self.notes.append(records.note)
            classes = st.meta["classes"]
            code_of = {c: i for i, c in enumerate(classes)}
            row_of = {s: i for i, s in enumerate(st.ids.tolist())}
            y = st.current_labels()
            requested = np.zeros(st.n_pool, dtype=bool)
            requested[st.batches["row"]] = True

            # One pass over the records, streamed (a CSV is never held in memory): what is
            # kept per record is its row, class and position, 24 bytes.
            problems = _Problems(origin)
            rows_buf, cls_buf, pos_buf = array.array("q"), array.array("q"), array.array("q")
            blank = n_records = 0
            for sid, lab, pos in records:
                n_records += 1
                if lab == "":
                    blank += 1
                    continue
                row, cls = row_of.get(sid), code_of.get(lab)
                if row is None:
                    problems.add("unknown_id", f"{sid!r} ({records.where(pos)})")
                if cls is None:
                    problems.add("unknown_class", f"{lab!r} ({records.where(pos)})")
                if row is not None and cls is not None:
                    rows_buf.append(row)
                    cls_buf.append(cls)
                    pos_buf.append(pos)
            if n_records == 0:
                raise ValueError(records.empty_message)
            if n_records == blank:
                raise ValueError(
                    f"{origin} holds no labels ({blank} row(s), every {label_column!r} cell empty)"
                )
            rows = np.frombuffer(rows_buf, dtype=np.int64)
            cls = np.frombuffer(cls_buf, dtype=np.int64)
            pos = np.frombuffer(pos_buf, dtype=np.int64)
            uniq, first, counts = np.unique(rows, return_index=True, return_counts=True)
            if (counts > 1).any():
                for r in uniq[counts > 1][np.argsort(first[counts > 1], kind="stable")]:
                    wheres = ", ".join(records.where(int(q)) for q in pos[rows == r])
                    problems.add("duplicate", f"{str(st.ids[r])!r} ({wheres})")
            new_rows = new_cls = np.empty(0, dtype=np.int64)
            is_relabel = np.empty(0, dtype=bool)
            n_unchanged = n_unrequested = 0
            if not problems:
                changed = y[rows] != cls
                n_unchanged = int((~changed).sum())
                unrequested = changed & ~requested[rows]
                n_unrequested = int(unrequested.sum())
                if n_unrequested and not allow_unrequested:
                    for q in np.flatnonzero(unrequested)[:_Problems.SHOWN]:
                        problems.add(
                            "unrequested", f"{str(st.ids[rows[q]])!r} ({records.where(int(pos[q]))})"
                        )
                    problems.extra("unrequested", n_unrequested - min(n_unrequested, _Problems.SHOWN))
                relabeled = changed & (y[rows] >= 0)
                if relabeled.any() and not relabel:
                    for q in np.flatnonzero(relabeled)[:_Problems.SHOWN]:
                        problems.add(
                            "relabel",
                            f"{str(st.ids[rows[q]])!r} ({records.where(int(pos[q]))}: "
                            f"{classes[cls[q]]}, labeled {classes[y[rows[q]]]} before)",
                        )
                    n_rel = int(relabeled.sum())
                    problems.extra("relabel", n_rel - min(n_rel, _Problems.SHOWN))
                new_rows, new_cls, is_relabel = rows[changed], cls[changed], relabeled[changed]
            problems.raise_if_any(classes, st.ids)

            n_relabeled = int(is_relabel.sum())
            n_new = int(new_rows.size) - n_relabeled
            if new_rows.size:
                _fault("label:validated")
                st.append(
                    "labels",
                    row=new_rows,
                    cls=new_cls,
                    round=np.full(new_rows.size, st.n_rounds),
                    time=np.full(new_rows.size, time.time()),
                    relabel=is_relabel,
                )
                st.meta["ingests"].append(
                    {
                        "time": _now_iso(),
                        "source": origin,
                        "round": st.n_rounds,
                        "new": n_new,
                        "relabeled": n_relabeled,
                        "unchanged": n_unchanged,
                        "blank": blank,
                        "unrequested": n_unrequested,
                    }
                )
                _commit(self.path, st, "label")
            self._state = st  # committed, or unchanged when every record was already known
            pending = 0
            if st.n_rounds:
                rows = st.batch_rows(st.n_rounds)
                pending = int((st.current_labels()[rows] < 0).sum())
        return LabelReport(
            new=n_new,
            relabeled=n_relabeled,
            unchanged=n_unchanged,
            blank=blank,
            unrequested=n_unrequested,
            pending=pending,
            notes=list(self.notes),
        )

    # --- status

    def status(self, *, cv: int = 5) -> dict:
        """Rounds, counts per class, ir, and an accuracy estimate by cross-validation.

        Parameters
        ----------
        cv : int
            Folds of the stratified cross-validation over the labeled samples (fewer when the
            largest class has fewer labels); 0 skips it. The estimate is optimistic or
            pessimistic in ways random sampling would not be: active learning picks hard
            samples, so treat it as a trend, not a test score.

        Returns
        -------
        dict
            JSON-ready: ``rounds``, ``history``, ``ingests``, ``n_pool``, ``n_labeled``,
            ``pending`` (ids of the last batch without a label), ``class_counts``, ``ir``,
            ``cv`` (``accuracy``, ``accuracy_std``, ``balanced_accuracy``, ``folds``,
            ``n_labels``; None when not computed) and ``cv_note`` (why not), ``settings``,
            ``pool``, ``lock`` (None, or the holder's pid, host, command and start time with
            ``stale``: False while its holder runs; True when the holder died holding it,
            and then ``cleared``: whether this call removed the record, see
            :meth:`_lock_status`).
        """
        from alamp_fast.imbalance import imbalance_ratio

        st = self._reload()
        classes = st.meta["classes"]
        y = st.current_labels()
        labeled = st.training_rows(y)
        counts = np.bincount(y[labeled], minlength=len(classes))
        pending: list[str] = []
        if st.n_rounds:
            rows = st.batch_rows(st.n_rounds)
            pending = st.ids[rows[y[rows] < 0]].tolist()
        cv_result, cv_note = None, None
        if cv:
            cv_result, cv_note = self._cross_validate(st, y, labeled, int(cv))
        holder = self._lock_status()
        return {
            "project": str(self.path),
            "settings": dict(st.meta["settings"]),
            "classes": list(classes),
            "pool": dict(st.meta["pool"]),
            "rounds": st.n_rounds,
            "history": list(st.meta["rounds"]),
            "ingests": list(st.meta["ingests"]),
            "n_pool": st.n_pool,
            "n_labeled": int(labeled.size),
            "n_label_events": int(st.labels["row"].size),
            "pending": pending,
            "class_counts": dict(zip(classes, counts.tolist(), strict=True)),
            "ir": imbalance_ratio(counts) if labeled.size else None,
            "cv": cv_result,
            "cv_note": cv_note,
            "lock": holder,
        }

    def _lock_status(self) -> dict | None:
        """The lock record with ``stale``; a stale one (its holder died) is cleared here.

        A record is stale when nobody holds the lock: the kernel released it when its holder
        died. Clearing it (and the holder's temp files) takes the lock for an instant, so it
        never disturbs a running operation; on a read-only project it is only reported.
        """
        info = _read_lock_info(self.path)
        if not info:
            return None
        try:
            fd = _ProjectLock.try_lock(self.path)
        except OSError:
            return {**info, "stale": None, "cleared": False}
        if fd is None:
            return {**info, "stale": False, "cleared": False}
        try:
            info = _read_lock_info(self.path)  # as of now, under the lock
            if not info:
                return None
            cleared = False
            with contextlib.suppress(OSError):
                _write_lock_info(self.path, b"")
                _remove_stale_temps(self.path)
                cleared = True
            return {**info, "stale": True, "alive": _holder_alive(info), "cleared": cleared}
        finally:
            _ProjectLock.release(fd)

    def _cross_validate(self, st, y, labeled, folds):
        from sklearn.model_selection import StratifiedKFold, cross_validate

        from alamp_fast.datasets import l2_normalize
        from alamp_fast.imbalance import imbalance_ratio
        from alamp_fast.protocol import IMBALANCED_IR, make_classifier

        settings = st.meta["settings"]
        yl = y[labeled]
        counts = np.bincount(yl, minlength=len(st.meta["classes"]))
        if (counts > 0).sum() < 2:
            return None, "needs labels of at least 2 classes"
        k = min(folds, int(counts.max()))
        if k < 2:
            return None, "needs a class with at least 2 labels"
        try:
            X, _, _ = self._pool(st)
        except (PoolChangedError, FileNotFoundError, ValueError) as exc:
            return None, f"pool unavailable: {exc}"
        X = X[labeled]
        if settings["normalize"]:
            X = l2_normalize(X)
        cost_sensitive = settings["cost_sensitive"]
        if cost_sensitive is None:
            cost_sensitive = imbalance_ratio(counts) >= IMBALANCED_IR
        run_seed = _run_seed(settings["seed"])
        clf = make_classifier(
            settings["classifier"], cost_sensitive=cost_sensitive, random_state=run_seed
        )
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=run_seed)
        try:
            with warnings.catch_warnings():
                # a class with fewer labels than folds: sklearn warns, the estimate is still fine
                warnings.simplefilter("ignore", UserWarning)
                res = cross_validate(
                    clf,
                    X,
                    yl,
                    cv=splitter,
                    scoring=("accuracy", "balanced_accuracy"),
                    error_score="raise",
                )
        except ValueError as exc:
            return None, f"cross-validation failed: {exc}"
        acc = res["test_accuracy"]
        return {
            "accuracy": float(acc.mean()),
            "accuracy_std": float(acc.std()),
            "balanced_accuracy": float(res["test_balanced_accuracy"].mean()),
            "folds": k,
            "n_labels": int(labeled.size),
        }, None


# ------------------------------------------------------------------------------ helpers


def _commit(directory: Path, st: _State, op: str) -> None:
    st.meta["generation"] += 1
    st.meta.setdefault("project_id", uuid.uuid4().hex)  # projects made before ids existed
    _atomic_write(directory / STATE_FILE, st.to_bytes(), fault=f"{op}:state")
    _fault(f"{op}:committed")
    _ensure_identity(directory, st)


def _check_picks(picks: np.ndarray, b: int, y: np.ndarray) -> None:
    # The batch is committed for good; a wrong one would silently corrupt every later round.
    if picks.shape != (b,) or np.unique(picks).size != b or (y[picks] >= 0).any():
        raise RuntimeError(
            f"internal error: the selection {picks[:10].tolist()} is not {b} "
            "distinct unlabeled rows"
        )


# Strategies whose batch CSV carries their ranking value (QueryResult.scores) as the score.
_RANKED = ("margin", "margin-div", "entropy", "least_confidence", "alamp", "alamp-div")

#: Attempts of a round's work on a Dask cluster that loses workers (see _retry_on_cluster).
CLUSTER_ATTEMPTS = 3


class ClusterError(RuntimeError):
    """The Dask cluster failed a round's work on every attempt; nothing was written."""


def _cluster_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the cluster failing (a lost worker or connection), not our code."""
    import asyncio
    import concurrent.futures

    if isinstance(exc, (OSError, TimeoutError, asyncio.CancelledError,
                        concurrent.futures.CancelledError)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"KilledWorker", "FutureCancelledError", "CommClosedError",
                         "CancelledError", "StreamClosedError"})


def _retry_on_cluster(client, settings: dict, state: dict, query):
    """``(strategy, query(strategy))``, retried when the cluster loses a worker.

    Each attempt starts from a fresh strategy with the committed state and scatters the
    pool again (chunks scattered to a worker that died are gone for good, Dask cannot
    recompute them), so a retried round is the round an undisturbed cluster makes. After
    :data:`CLUSTER_ATTEMPTS` failures the round ends with :class:`ClusterError`, before
    anything is written.
    """
    last = None
    for attempt in range(CLUSTER_ATTEMPTS):
        strategy = _make_strategy(settings)
        strategy.load_state_dict(state)
        try:
            return strategy, query(strategy)
        except Exception as exc:
            if not _cluster_failure(exc):
                raise
            last = exc
            if attempt + 1 < CLUSTER_ATTEMPTS:
                with contextlib.suppress(Exception):  # a restarted worker, if any comes back
                    client.wait_for_workers(1, timeout=30)
    text = " ".join(str(last).split()) or "no details"
    raise ClusterError(
        f"the Dask cluster failed during select {CLUSTER_ATTEMPTS} times "
        f"({type(last).__name__}: {text}); nothing was written, the project is as it was "
        "(re-run select when the cluster is healthy)"
    ) from last


def _batch_rows(rows: np.ndarray, *values) -> list:
    """``v[rows]`` of every array of ``values`` as numpy (None for None).

    Dask arrays are computed together, in one pass over the pool, and only those rows come
    back.
    """
    picked = [None if v is None else v[rows] for v in values]
    if any(array_library(v) == "dask" for v in picked):
        import dask

        picked = list(dask.compute(*picked))
    return picked


def _kcenter_distances(X: np.ndarray, labeled: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """For each pick, its distance to the nearest labeled row or earlier pick (k-center's gain)."""
    from scipy.spatial.distance import cdist

    centres = np.concatenate([labeled, picks])
    d = cdist(X[picks].astype(np.float64), X[centres].astype(np.float64))
    out = np.full(picks.size, np.nan)
    for j in range(picks.size):
        allowed = d[j, : labeled.size + j]
        if allowed.size:
            out[j] = allowed.min()
    return out


def _batch_name(round_no: int) -> str:
    return f"round-{round_no:03d}.csv"


def _batch_from_state(directory: Path, st: _State, round_no: int, reissued=False) -> Batch:
    mask = st.batches["round"] == round_no
    rows = st.batches["row"][mask]
    classes = st.meta["classes"]
    return Batch(
        round=round_no,
        kind=st.meta["rounds"][round_no - 1]["kind"],
        ids=st.ids[rows].tolist(),
        rows=rows,
        scores=st.batches["score"][mask],
        margins=st.batches["margin"][mask],
        predicted=[classes[p] if p >= 0 else None for p in st.batches["pred"][mask].tolist()],
        path=directory / BATCH_DIR / _batch_name(round_no),
        reissued=reissued,
    )


def _fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6g}"


def _write_batch_csv(
    batch: Batch, st: _State, fault: str | None = None, path: Path | None = None
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BATCH_COLUMNS)
    for rank, (sid, s, m, p) in enumerate(
        zip(batch.ids, batch.scores, batch.margins, batch.predicted, strict=True), start=1
    ):
        w.writerow([rank, _csv_escape(sid), _fmt(s), _fmt(m), _csv_escape(p or ""), ""])
    target = batch.path if path is None else path
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, buf.getvalue().encode("utf-8"), fault=fault)


# Cells a spreadsheet would run as a formula start with one of these (OWASP, "CSV
# injection"); a cell starting with the escape character itself is escaped too, so that
# reading back is lossless.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def _csv_escape(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs: a leading ``= + - @ TAB CR '`` gets a ``'``."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_unescape(text: str) -> str:
    """The inverse of :func:`_csv_escape` (a cell the annotators typed is returned as is)."""
    return text[1:] if text[:1] == "'" and text[1:2] != "" and text[1:].startswith(
        _FORMULA_START
    ) else text


class _Records:
    """Labels to ingest, one ``(id, label, position)`` at a time: a CSV file is streamed.

    Opening it checks the header at once (before the project lock); the rows are read while
    iterating. ``where(position)`` names a record in messages (``line 12``, ``record 3``).
    """

    def __init__(self, source, id_column: str, label_column: str):
        self.note = None
        self._file = None
        if isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".json"):
            self._open_label_studio(os.fspath(source), id_column, label_column)
        elif isinstance(source, (str, os.PathLike)):
            self._open_csv(os.fspath(source), id_column, label_column)
        else:
            self.origin = "labels"
            self.empty_message = "no label records given"
            self._iter = self._pairs(source)
            self._kind = "record"

    # --- CSV

    def _open_csv(self, path: str, id_column: str, label_column: str) -> None:
        self.origin = os.path.basename(path)
        self._kind = "line"
        self.empty_message = f"{path} has a header but no rows"
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory, not a CSV file of labels")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        try:
            f = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        self._file = f
        try:
            delimiter = self._delimiter(f, path)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = None
            for cells in self._rows(reader, path):
                if any(c.strip() for c in cells):
                    header = [c.strip() for c in cells]
                    break
            if header is None:
                raise ValueError(f"{path} is empty")
            self._id_col = _find_column(header, id_column, path)
            self._label_col = _find_column(header, label_column, path)
        except BaseException:
            self.close()
            raise
        self._path, self._id_column = path, id_column
        self._iter = self._csv_records(reader)

    def _delimiter(self, f, path: str) -> str:
        """``,``; or ``;`` / TAB for a file whose header has no comma but one of those (as a
        spreadsheet saves "CSV" in locales with a decimal comma)."""
        try:
            for line in f:
                if line.strip():
                    break
            else:
                return ","
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        if "," not in line:
            for sep, name in ((";", "semicolon"), ("\t", "tab")):
                if sep in line:
                    self.note = f"{path} was read as {name}-separated (its header has no comma)"
                    return sep
        return ","

    def _rows(self, reader, path: str):
        try:
            yield from reader
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except csv.Error as exc:
            raise ValueError(f"{path} is not a valid CSV file: {exc}") from None

    def _csv_records(self, reader):
        id_col, label_col = self._id_col, self._label_col
        for cells in self._rows(reader, self._path):
            sid = cells[id_col].strip() if id_col < len(cells) else ""
            lab = cells[label_col].strip() if label_col < len(cells) else ""
            if sid == "" and lab == "":
                continue  # a blank row, or one without id and label
            line = reader.line_num
            if sid == "" and lab != "":
                raise ValueError(
                    f"{self._path} line {line}: label {lab!r} has an empty {self._id_column!r}"
                )
            yield _csv_unescape(sid), _csv_unescape(lab), line

    # --- Label Studio's JSON export

    def _open_label_studio(self, path: str, id_column: str, label_column: str) -> None:
        """Tasks of Label Studio's "JSON" export (or "JSON_MIN"): ``(sample id, label)`` each.

        The sample id is the task's ``data.sample_id`` (as :meth:`Project.export_label_studio`
        writes it), else ``data[id_column]``; the label is the first choice of the task's
        latest annotation that was not cancelled (none: the task is skipped as blank).
        JSON_MIN rows hold the data fields and ``label_column`` (the control's name) flat.
        """
        self.origin = os.path.basename(path)
        self._kind = "task"
        self.empty_message = f"{path} holds no tasks"
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory, not a Label Studio export")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        try:
            with open(path, encoding="utf-8-sig") as f:
                tasks = json.load(f)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        if isinstance(tasks, dict):
            tasks = [tasks]
        if not isinstance(tasks, list):
            raise ValueError(f"{path}: a Label Studio export is a list of tasks")
        records = []
        for i, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise ValueError(f"{path} task {i}: not a JSON object")
            full = isinstance(task.get("data"), dict)
            data = task["data"] if full else task
            sid = data.get("sample_id")
            if sid is None and (full or id_column != "id"):  # JSON_MIN's "id": the task's
                sid = data.get(id_column)
            if sid is None:
                raise ValueError(
                    f"{path} task {i}: no 'sample_id' in its data (its keys are "
                    f"{', '.join(sorted(map(str, data)))})"
                )
            lab = self._ls_label(task, label_column) if full else data.get(label_column, "")
            if isinstance(lab, list):
                lab = lab[0] if lab else ""
            if isinstance(lab, dict):  # JSON_MIN of a taxonomy / nested choice
                lab = next(iter(lab.values()), "")
            if not isinstance(lab, str):
                raise ValueError(f"{path} task {i}: the label {lab!r} is not a class name")
            records.append((str(sid).strip(), lab.strip(), i))
        self._iter = iter(records)

    @staticmethod
    def _ls_label(task: dict, label_column: str) -> str:
        annotations = [
            a for a in task.get("annotations") or []
            if isinstance(a, dict) and not a.get("was_cancelled")
        ]
        # the latest annotation wins (Label Studio lists them in creation order)
        for ann in reversed(annotations):
            for res in ann.get("result") or []:
                value = res.get("value") if isinstance(res, dict) else None
                if not isinstance(value, dict):
                    continue
                if res.get("from_name") not in (None, label_column) and len(ann["result"]) > 1:
                    continue
                choices = value.get("choices") or value.get("labels") or value.get("taxonomy")
                if choices:
                    first = choices[0]
                    return first[-1] if isinstance(first, list) else first
        return ""

    # --- Python records

    @staticmethod
    def _pairs(source):
        items = source.items() if isinstance(source, Mapping) else source
        for i, item in enumerate(items):
            try:
                if isinstance(item, (str, bytes)):  # "12" would unpack into id "1", label "2"
                    raise TypeError
                sid, lab = item
            except (TypeError, ValueError):
                raise TypeError(f"label records must be (id, label) pairs, got {item!r}") from None
            if isinstance(sid, (bool, np.bool_)) or not isinstance(sid, (str, int, np.integer)):
                raise TypeError(f"a sample id must be a str or int, got {sid!r}")
            if lab is None:
                lab = ""
            if not isinstance(lab, str):
                raise TypeError(f"a label must be a class name (str), got {lab!r} for id {sid!r}")
            yield str(sid).strip(), lab.strip(), i

    # ---

    def __iter__(self):
        return self._iter

    def where(self, pos: int) -> str:
        return f"{self._kind} {pos}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _read_records(source, id_column: str, label_column: str):
    """The records of ``source`` (:class:`_Records`, streamed) and a name for messages.

    Python records (a mapping or pairs) are checked for their types at once, before the
    project is locked.
    """
    records = _Records(source, id_column, label_column)
    if records._kind == "record":
        records._iter = iter(list(records._iter))
    return records, records.origin


class _Problems:
    """Collects every validation problem of one ingest, raised as one ValueError line."""

    # kind -> (what, how to get past it)
    _TEXT = {
        "unknown_id": ("ids not in the project's pool", None),
        "unknown_class": ("unknown class names", None),
        "duplicate": ("ids given more than once", None),
        "unrequested": (
            "ids no batch asked for",
            ("pass", "allow_unrequested", "to add them"),
        ),
        "relabel": (
            "ids already labeled with another class",
            ("pass", "relabel", "to replace their labels"),
        ),
    }

    SHOWN = 5  # examples per kind in the message

    def __init__(self, origin: str):
        self.origin = origin
        self.items: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        # only the first few texts are kept: a huge file of bad ids stays cheap
        shown = self.items.setdefault(kind, [])
        if len(shown) < self.SHOWN:
            shown.append(text)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def extra(self, kind: str, n: int) -> None:
        """``n`` more problems of ``kind`` than were added (counted, not shown)."""
        if n > 0:
            self.counts[kind] = self.counts.get(kind, 0) + n

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, classes: list[str], ids: np.ndarray) -> None:
        if not self.items:
            return
        parts = []
        for kind, texts in self.items.items():
            what, hint = self._TEXT[kind]
            total = self.counts[kind]
            more = f" and {total - len(texts)} more" if total > len(texts) else ""
            part = f"{what} ({total}): {', '.join(texts)}{more}"
            if kind == "unknown_class":
                part += f" (the classes are {', '.join(classes)})"
            if kind == "unknown_id":
                part += f" (pool ids look like {', '.join(repr(s) for s in ids[:3].tolist())})"
            if hint:
                verb, option, purpose = hint
                part += f"; {verb} {_opt(option, True)} {purpose}"
            parts.append(part)
        raise ValueError(f"{self.origin}: " + "; ".join(parts) + "; nothing was ingested")
