"""What every sharded kernel shares: row-chunked inputs, the kernel lock, the candidate tree."""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np

from alamp_fast import outofcore as _ooc
from alamp_fast._validate import as_index_array

# numba's workqueue threading layer (its fallback when neither TBB nor OpenMP is installed)
# aborts the process when two threads launch parallel kernels at once, which dask's threaded
# scheduler would do; one launch at a time per process costs little, a launch already uses
# every core.
_KERNEL_LOCK = threading.Lock()

# candidate sets merged per task on the way up the reduction tree
_SPLIT_EVERY = 8


def _as_dask(x, name: str, ndim: int, like=None):
    """``x`` as a dask array with ``ndim`` dims, known row chunks and one column chunk.

    A numpy input gets the row chunks of ``like`` (or ~64 MiB chunks).
    """
    if not isinstance(x, da.Array):
        arr = np.asarray(x)
        if arr.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
        rows = (
            like.chunks[0]
            if like is not None and like.shape[0] == arr.shape[0]
            else _ooc.block_rows_for(None, _ooc.row_bytes(arr))
        )
        x = da.from_array(arr, chunks=(rows,) + arr.shape[1:])
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if any(np.isnan(c) for c in x.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    if ndim == 2 and x.numblocks[1] > 1:
        x = x.rechunk({1: -1})  # a row needs all its classes / features in one block
    return x


def _local(x):
    """Small index inputs (``exclude``, ``labeled``) as numpy; a dask one is computed."""
    return x.compute() if isinstance(x, da.Array) else x


def _to_host(x) -> np.ndarray:
    """A block as numpy: CuPy blocks are copied from the GPU."""
    return x.get() if type(x).__module__.split(".")[0] == "cupy" else np.asarray(x)


def _bounds(x) -> list[tuple[int, int]]:
    stops = np.cumsum(x.chunks[0], dtype=np.int64)
    starts = stops - np.asarray(x.chunks[0], dtype=np.int64)
    return [(int(a), int(z)) for a, z in zip(starts, stops, strict=True)]


def _rows_call(*blocks, kernel, block_info=None):
    """``kernel`` on one row chunk; a ValueError names the chunk's rows in the pool."""
    start, stop = block_info[0]["array-location"][0]
    try:
        with _KERNEL_LOCK:
            return kernel(*blocks)
    except ValueError as exc:
        raise _ooc.located(exc, start, stop) from exc


def _exclusion(exclude, n: int) -> np.ndarray:
    return np.sort(as_index_array(_local(exclude), "exclude", n))


def _locked(fn, *args):
    """``fn(*args)`` under :data:`_KERNEL_LOCK` (a task that runs a compiled kernel)."""
    with _KERNEL_LOCK:
        return fn(*args)


def _reduce(parts, merge, finish, b: int):
    """``finish(b, merge(b, ...))`` over candidate sets, fan-in :data:`_SPLIT_EVERY`, computed;
    each call a task under :data:`_KERNEL_LOCK`.

    Groups are consecutive chunks, so every merged set stays in increasing row order.
    """
    task = dask.delayed(_locked, pure=True)
    while len(parts) > 1:
        parts = [
            task(merge, b, *parts[i : i + _SPLIT_EVERY])
            for i in range(0, len(parts), _SPLIT_EVERY)
        ]
    (result,) = dask.compute(task(finish, b, parts[0]))
    return np.asarray(result, dtype=np.int64)
