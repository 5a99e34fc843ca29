"""Sharded k-center greedy: running minima stay on the workers, one argmax reduction per step.

Each chunk takes its steps lazily, as the in-memory loop does (:func:`alamp_fast.coreset._lazy_run`):
its candidates sit in a max-heap of their stale running minima (upper bounds), and a step
brings only the chunk's top rows up to date against the centers chosen since, until the top
stays first; that row and its exact distance are the chunk's answer. A step then measures a
few rows per chunk instead of every row, with the same exact distances
(:func:`alamp_fast.coreset._row_sqdist`) and so the same picks as the in-memory function.
A chunk's state is four numbers per row (bound, centers folded in, heap key and row) and the
centers chosen so far.
"""

from __future__ import annotations

import dask
import numpy as np

from alamp_fast import outofcore as _ooc
from alamp_fast._validate import as_float_array, as_index_array, check_budget, check_finite
from alamp_fast.coreset import _lazy_heap, _lazy_top, _nearest_d2, kcenter_greedy
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


def _answer(X: np.ndarray, state, start: int):
    """The chunk's state with its answer appended: ``(best, global row, features of row)``
    of the heap's top, whose bound the last update made exact; ``(-1, -1, None)`` when the
    chunk has no candidate left."""
    _, _, key, row, size, _ = state
    if size == 0:
        return (*state, -1.0, -1, None)
    return (*state, float(key[0]), start + int(row[0]), X[row[0]])


def _kc_init(X: np.ndarray, L, local_labeled: np.ndarray, start: int):
    """A chunk's state ``(min_d2, seen, key, row, size, centers)`` and its answer (see
    :func:`_answer`); labeled rows carry -1 and stay out of the heap."""
    n = X.shape[0]
    if L is None:
        min_d2 = np.full(n, np.inf)
    else:
        with _KERNEL_LOCK:
            min_d2 = _nearest_d2(X, L)
    min_d2[local_labeled] = -1.0
    seen = np.zeros(n, dtype=np.int64)
    key = np.empty(n)
    row = np.empty(n, dtype=np.int64)
    size = int(_lazy_heap(min_d2, seen, key, row))
    # no center chosen yet: every bound is exact, the top is the chunk's answer
    return _answer(X, (min_d2, seen, key, row, size, np.empty((0, X.shape[1]))), start)


def _kc_step(X: np.ndarray, state, center: np.ndarray, local_pick: int, start: int):
    """The next state: the new center joins the chunk's centers, the last pick (when it is
    this chunk's answer, the top of its heap) leaves the heap, and the top is brought up to
    date.

    New arrays, not updates in place: a task rerun after a worker loss must find its input
    unchanged.
    """
    min_d2, seen, key, row = (a.copy() for a in state[:4])
    size = state[4]
    C = np.concatenate([state[5], np.asarray(center, dtype=np.float64)[None, :]])
    if local_pick >= 0:
        if size == 0 or row[0] != local_pick:  # (cannot happen: the pick is this answer)
            raise AssertionError("k-center: the pick is not the chunk's top")
        min_d2[local_pick] = -1.0
        size -= 1
        # the last entry takes the top's place; bringing the top up to date sifts it down,
        # which restores the heap order
        key[0], row[0] = key[size], row[size]
    if size:
        with _KERNEL_LOCK:
            _lazy_top(X, min_d2, seen, key, row, size, C, C.shape[0])
    return _answer(X, (min_d2, seen, key, row, size, C), start)


def _summary(state):
    """What the client needs of a chunk's state: its answer."""
    return state[6:]


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
