"""Sharded Algorithm 1 (:func:`~alamp_fast.diversify`): per-chunk, per-class candidates, merged."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from alamp_fast import outofcore as _ooc
from alamp_fast._validate import as_labels, check_budget
from alamp_fast.distributed._chunks import (
    _KERNEL_LOCK,
    _as_dask,
    _bounds,
    _exclusion,
    _reduce,
    _to_host,
)


def _chunk_classes(scores, pseudo_class, start: int, local_ex, b: int, largest: bool):
    with _KERNEL_LOCK:
        gidx, key, keep = _ooc.block_keys(_to_host(scores), start, local_ex, largest)
        pc = _to_host(pseudo_class).astype(np.int64)
        return _ooc.class_candidates(gidx, key, pc if keep is None else pc[keep], b)


def _diversify(scores, pseudo_class, b, *, exclude=None, largest=True):
    """``alamp_fast.diversify`` (Algorithm 1) of row-chunked dask arrays: numpy indices."""
    s = _as_dask(scores, "scores", 1)
    _ooc._as_scores(np.empty(0, s.dtype))
    n = s.shape[0]
    if not isinstance(pseudo_class, da.Array):
        pseudo_class = np.asarray(pseudo_class)
    if pseudo_class.ndim != 1:
        raise ValueError(f"pseudo_class must be 1-D, got shape {pseudo_class.shape}")
    if pseudo_class.shape[0] != n:
        raise ValueError(f"pseudo_class has {pseudo_class.shape[0]} entries but scores have {n}")
    as_labels(np.empty(0, pseudo_class.dtype), "pseudo_class", 0)  # the core's dtype check
    pc = _as_dask(pseudo_class, "pseudo_class", 1, like=s)
    if pc.chunks != s.chunks:
        pc = pc.rechunk(s.chunks)
    ex = _exclusion(exclude, n)
    b = check_budget(b, n - ex.size, "candidates left after exclude")
    chunk_task = dask.delayed(_chunk_classes, pure=True)
    parts = [
        chunk_task(sb, pb, start, _ooc.split_exclude(ex, start, stop), b, bool(largest))
        for sb, pb, (start, stop) in zip(
            s.to_delayed().ravel(), pc.to_delayed().ravel(), _bounds(s), strict=True
        )
    ]
    return _reduce(parts, _ooc.merge_classes, _ooc.finish_classes, b)
