"""Sharded k-center greedy: running minima stay on the workers, one argmax reduction per step."""

from __future__ import annotations

import dask
import numba
import numpy as np

from alamp_fast import outofcore as _ooc
from alamp_fast._validate import as_float_array, as_index_array, check_budget, check_finite
from alamp_fast.coreset import _nearest_d2, _step, kcenter_greedy
from alamp_fast.distributed._chunks import _KERNEL_LOCK, _as_dask, _bounds, _local, _to_host
from alamp_fast.distributed.client import _current_client


def _host_features(block, start: int) -> np.ndarray:
    """A feature chunk as the core sees it: host, C order, finite, float16 widened."""
    X = as_float_array(_to_host(block), "features", 2)
    try:
        check_finite(X, "features")
    except ValueError as exc:
        raise _ooc.located(exc, start, start + X.shape[0]) from exc
    return X.astype(np.float32) if X.dtype == np.float16 else X


def _take_rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return X[rows]


def _assemble(n_rows: int, positions: list[np.ndarray], *parts) -> np.ndarray:
    """The labeled rows in the order of ``labeled``, from the chunks' pieces."""
    L = np.empty((n_rows, parts[0].shape[1]), dtype=parts[0].dtype)
    for pos, rows in zip(positions, parts, strict=True):
        L[pos] = rows
    return L


def _best_of(X: np.ndarray, min_d2: np.ndarray, start: int):
    """``(best, row, features of row)``: the chunk's largest running distance, its global row
    (lowest on ties) and that row's features, which become the next center if it wins;
    ``(-1, -1, None)`` when the chunk has no candidate left."""
    if min_d2.size == 0:
        return -1.0, -1, None
    i = int(np.argmax(min_d2))
    if min_d2[i] < 0:
        return -1.0, -1, None
    return float(min_d2[i]), start + i, X[i]


def _kc_init(X: np.ndarray, L, local_labeled: np.ndarray, start: int):
    """A chunk's state ``(min_d2, best, row, features of row)``; labeled rows carry -1."""
    if L is None:
        min_d2 = np.full(X.shape[0], np.inf)
    else:
        with _KERNEL_LOCK:
            min_d2 = _nearest_d2(X, L)
    min_d2[local_labeled] = -1.0
    return (min_d2, *_best_of(X, min_d2, start))


def _kc_step(X: np.ndarray, state, center: np.ndarray, local_pick: int, start: int):
    """The next state: mark the last pick, lower the running minima by the new center.

    A new array, not an update in place: a task rerun after a worker loss must find its input
    unchanged.
    """
    min_d2 = state[0].copy()
    if local_pick >= 0:
        min_d2[local_pick] = -1.0
    if X.shape[0] == 0:
        return min_d2, -1.0, -1, None
    n_sub = min(X.shape[0], 4 * numba.get_num_threads())
    sub_best = np.empty(n_sub)
    sub_arg = np.empty(n_sub, dtype=np.int64)
    with _KERNEL_LOCK:
        _step(X, center, min_d2, n_sub, sub_best, sub_arg, work=X.size)
    # sub-chunks cover increasing rows: the first holding the max has the lowest index
    j = int(np.argmax(sub_best))
    if sub_arg[j] < 0:
        return min_d2, -1.0, -1, None
    return min_d2, float(sub_best[j]), start + int(sub_arg[j]), X[sub_arg[j]]


def _summary(state):
    """What the client needs of a chunk's state: all but the running minima."""
    return state[1:]


def _gather_pick(client, states):
    """The global argmax: the row of the largest distance over the chunks, and its features.

    Chunks are in row order, so the first chunk holding the max has the lowest index among ties.
    """
    summaries = client.gather([client.submit(_summary, st) for st in states])
    best = np.array([s[0] for s in summaries])
    _, row, center = summaries[int(np.argmax(best))]
    return int(row), center


def _kcenter_greedy(features, labeled, b):
    """``alamp_fast.kcenter_greedy`` of a row-chunked dask array: numpy int64 indices.

    With a ``distributed`` client the feature chunks and running minima stay on the workers;
    without one the pool is computed into this process and the core function runs on it.
    """
    X = _as_dask(features, "features", 2)
    as_float_array(np.empty((0, X.shape[1]), X.dtype), "features", 2)  # the core's dtype check
    n = X.shape[0]
    lab = as_index_array(_local(labeled), "labeled", n)
    b = check_budget(b, n - lab.size, "unlabeled candidates")
    client = _current_client()
    if client is None:
        return _to_host(kcenter_greedy(X.compute(), lab, b)).astype(np.int64, copy=False)
    return _kcenter_on(client, X, lab, b)


def _kcenter_on(client, X, lab: np.ndarray, b: int) -> np.ndarray:
    """The greedy loop with a client: per step, one task per chunk lowers its running minima
    and reports its best row (16 bytes and one feature row); the client takes the argmax and
    sends the winning row, the next center, with the next step's tasks."""
    bounds = _bounds(X)
    chunks = client.compute(
        [
            dask.delayed(_host_features, pure=True)(block, start)
            for block, (start, _) in zip(X.to_delayed().ravel(), bounds, strict=True)
        ]
    )
    L = None
    if lab.size:
        # the labeled rows, gathered on a worker in the order of ``labeled`` (as the core's
        # X[labeled]); a task, not client data, so a lost copy is recomputed
        positions, pieces = [], []
        for fut, (start, stop) in zip(chunks, bounds, strict=True):
            pos = np.flatnonzero((lab >= start) & (lab < stop))
            if pos.size:
                positions.append(pos)
                pieces.append(client.submit(_take_rows, fut, lab[pos] - start))
        L = client.submit(_assemble, lab.size, positions, *pieces)
    lab_sorted = np.sort(lab)
    states = [
        client.submit(_kc_init, fut, L, _ooc.split_exclude(lab_sorted, start, stop), start)
        for fut, (start, stop) in zip(chunks, bounds, strict=True)
    ]
    chosen = np.empty(b, dtype=np.int64)
    # waits for every chunk, so bad features raise even when b == 0
    pick, center = _gather_pick(client, states)
    for step in range(b):
        chosen[step] = pick
        if step + 1 == b:
            break
        states = [
            client.submit(_kc_step, fut, st, center, pick - lo if lo <= pick < hi else -1, lo)
            for fut, st, (lo, hi) in zip(chunks, states, bounds, strict=True)
        ]
        pick, center = _gather_pick(client, states)
    return chosen
