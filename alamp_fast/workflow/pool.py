"""The pool file: header checks, block-by-block reading, hashing, normalising, ids, the check."""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from dataclasses import dataclass

import numpy as np

from alamp_fast.workflow.csvfmt import _read_csv_column
from alamp_fast.workflow.errors import CLI_MESSAGES, PoolChangedError, _opt

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
    progress=None,
) -> _PoolData:
    """Read a pool file once: float32 features, row-normalised if asked, and their sha256.

    A ``.npy`` file is opened read-only, its size checked against its header before a byte of
    data is used (a truncated or still-growing file fails with one line, not a wrong last row),
    and its rows are read block by block into memory owned by this process, hashed (raw
    float32 bytes, as recorded at ``init``) and L2-normalised in place. The file is not
    memory-mapped: a mapping of a file truncated while in use ends the process with SIGBUS,
    and the normalised copy would cost the memory anyway. ``.npz`` pools (zip archives) are
    read with :func:`alamp_fast.al.datasets.load_features`; a damaged archive fails with one line.

    ``progress``: None, or ``progress("read", rows_done, n_rows)``, called after each block
    (once, at the end, for an ``.npz`` pool).
    """
    from alamp_fast.al.datasets import l2_normalize

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
                if progress is not None:
                    progress("read", z, n)
            if known_sha is not None:  # the same file as verified before (see checked_pool)
                return _PoolData(X, known_sha, known_sha)
            sha_all = h.hexdigest()
            return _PoolData(X, sha_all if sha_first is None else sha_first, sha_all)
    import zipfile

    from alamp_fast.al.datasets import load_features

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
    if progress is not None:
        progress("read", X.shape[0], X.shape[0])
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
    """Float32 (n, d) features of a pool file (the formats of :mod:`alamp_fast.al.datasets`)."""
    return _load_pool(path).X


def _features_sha256(X: np.ndarray, n_rows: int):
    """sha256 of the float32 bytes of the first ``n_rows`` rows (more rows can be added later)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X[:n_rows]))
    return h


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


def checked_pool(
    st, override: str | None = None, normalize: bool = False, features: bool = True,
    progress=None,
) -> tuple[np.ndarray | None, np.ndarray, dict]:
    """Features and ids of the pool file, checked against the state ``st``; the updated pool meta.

    ``override``: a new location of the pool file (``Project.open(pool=...)``). The file is
    read once (:func:`_load_pool`, ``progress`` as there), and normalised while read if
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
    path = override or meta["path"]
    n_old = meta["n_rows"]
    option = "--pool" if (override and CLI_MESSAGES.get()) else "pool file"
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
        known_sha=meta["sha256"] if trusted else None, progress=progress,
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
