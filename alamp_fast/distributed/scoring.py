"""Sharded scoring: the rowwise kernels (margins, entropy, alamp) as lazy per-chunk tasks."""

from __future__ import annotations

import operator

import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array

from alamp_fast._validate import out_dtype
from alamp_fast.alamp import alamp_score
from alamp_fast.distributed._chunks import _as_dask, _rows_call
from alamp_fast.uncertainty import top2_margin


def _probs(probs, kernel):
    """``probs`` as a row-chunked dask array, and the core's outputs on an empty sample.

    Running the core kernel on zero rows of the same dtype and width checks the dtype and the
    number of classes exactly as the single-process call does, and gives the output dtypes.
    """
    P = _as_dask(probs, "probs", 2)
    empty = kernel(np.empty((0, P.shape[1]), dtype=P.dtype))
    return P, empty


def _rowwise(kernel, token: str):
    def impl(probs):
        P, empty = _probs(probs, kernel)
        return P.map_blocks(
            _rows_call,
            kernel=kernel,
            drop_axis=1,
            dtype=empty.dtype,
            meta=meta_from_array(P, ndim=1, dtype=empty.dtype),
            token=token,
        )

    impl.__name__ = token
    impl.__doc__ = f"``alamp_fast.{token}`` of a row-chunked dask array, lazily."
    return impl


def _top2_margin(probs):
    """``alamp_fast.top2_margin`` of a row-chunked dask array: two lazy dask arrays.

    One task per chunk computes both outputs; the two arrays pick them from it.
    """
    P, (m0, t0) = _probs(probs, top2_margin)
    pair = P.map_blocks(
        _rows_call,
        kernel=top2_margin,
        drop_axis=1,
        dtype=object,
        meta=np.empty((0,), dtype=object),
        token="top2_margin",
    )
    return tuple(
        pair.map_blocks(
            operator.itemgetter(i),
            dtype=e.dtype,
            meta=meta_from_array(P, ndim=1, dtype=e.dtype),
            token=name,
        )
        for i, (e, name) in enumerate(((m0, "margin"), (t0, "top_class")))
    )


def _alamp_score(prev_margin, margin):
    """``alamp_fast.alamp_score`` of row-chunked dask arrays (either may be numpy), lazily."""
    like = prev_margin if isinstance(prev_margin, da.Array) else margin
    prev = _as_dask(prev_margin, "prev_margin", 1, like=like)
    cur = _as_dask(margin, "margin", 1, like=like)
    if prev.shape != cur.shape:
        raise ValueError(f"prev_margin has {prev.shape[0]} samples but margin has {cur.shape[0]}")
    alamp_score(np.empty(0, prev.dtype), np.empty(0, cur.dtype))  # the core's dtype checks
    if cur.chunks != prev.chunks:
        cur = cur.rechunk(prev.chunks)
    dt = out_dtype(prev.dtype, cur.dtype)
    return da.map_blocks(
        _rows_call,
        prev,
        cur,
        kernel=alamp_score,
        dtype=dt,
        meta=meta_from_array(prev, ndim=1, dtype=dt),
        token="alamp_score",
    )
