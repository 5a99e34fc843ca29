"""Sharded top-k (:func:`~alamp_fast.select_top`): per-chunk candidates, merged exactly."""

from __future__ import annotations

import dask
import numpy as np

from alamp_fast import outofcore as _ooc
from alamp_fast._validate import check_budget
from alamp_fast.distributed._chunks import (
    _KERNEL_LOCK,
    _as_dask,
    _bounds,
    _exclusion,
    _reduce,
    _to_host,
)


def _chunk_top(scores, start: int, local_ex: np.ndarray, b: int, largest: bool):
    with _KERNEL_LOCK:
        gidx, key, _ = _ooc.block_keys(_to_host(scores), start, local_ex, largest)
        return _ooc.top_candidates(gidx, key, b)


def _select_top(scores, b, *, exclude=None, largest=True):
    """``alamp_fast.select_top`` of a row-chunked dask array: numpy int64 indices."""
    s = _as_dask(scores, "scores", 1)
    _ooc._as_scores(np.empty(0, s.dtype))  # the core's dtype check, before any work
    n = s.shape[0]
    ex = _exclusion(exclude, n)
    b = check_budget(b, n - ex.size, "candidates left after exclude")
    chunk_task = dask.delayed(_chunk_top, pure=True)
    parts = [
        chunk_task(block, start, _ooc.split_exclude(ex, start, stop), b, bool(largest))
        for block, (start, stop) in zip(s.to_delayed().ravel(), _bounds(s), strict=True)
    ]
    return _reduce(parts, _ooc.merge_top, _ooc.finish_top, b)
