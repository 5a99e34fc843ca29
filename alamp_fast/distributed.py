"""Exact acquisition over sharded pools on Dask.

The public kernels of :mod:`alamp_fast` accept ``dask.array`` inputs chunked by rows
(:mod:`alamp_fast._dispatch` routes them to :data:`IMPLS`); every chunk is processed where it
lives by the same numpy (or, for CuPy chunks on GPU workers, CuPy) kernels as a single-process
call, and every result is identical to the single-process call on the concatenated pool.

* Scoring (:func:`~alamp_fast.top2_margin`, :func:`~alamp_fast.margin`,
  :func:`~alamp_fast.entropy`, :func:`~alamp_fast.least_confidence`,
  :func:`~alamp_fast.alamp_score`) is rowwise: it returns lazy dask arrays with the row chunks
  of the input, so scoring and selection fuse into one pass over the pool on the workers.
* Selection (:func:`~alamp_fast.select_top`, :func:`~alamp_fast.diversify`) returns numpy
  int64 indices. Every chunk sends only its candidates, at most ``b`` rows: what the same
  selection takes on the chunk alone, which holds every row of the chunk it takes on the pool
  (proof in :func:`alamp_fast.outofcore.class_candidates`). Candidate sets are merged up a
  tree of fan-in 8 the same way, and the last merge runs the core function on the survivors,
  kept in row order so that ties still go to the lower global index.
* :func:`~alamp_fast.kcenter_greedy` keeps the feature chunks and each chunk's running
  nearest distance on the workers (needs a ``distributed`` client); per step each chunk
  reports its farthest row (distance, index and the row's features), the client takes the
  argmax and sends the winning row, the next center, with the next step's tasks.

``exclude`` and ``labeled`` are global row indices (or masks), numpy or dask. Selections run
on the current Dask scheduler: the ``distributed`` client made by :func:`get_client` (or any
default client), else dask's local threads. Worker loss is survived by Dask's lineage
(lost chunks, running minima and candidates are recomputed from the graph, every task being a
pure function of its inputs); a task that kills its workers repeatedly ends the call with
``distributed.KilledWorker``. No selection is returned from partial results.

A chunk's scores are copied to the host for the candidate step (4-8 bytes a row; the
``n_samples x n_classes`` scoring stays on the GPU), and k-center copies CuPy feature chunks to
the host once, where the numba step kernel runs.

See ``docs/distributed.md`` for the design, the bytes crossing the network and the scaling.
"""

from __future__ import annotations

import operator
import os
import threading

import dask
import dask.array as da
import numba
import numpy as np
from dask.array.utils import meta_from_array

from alamp_fast import outofcore as _ooc
from alamp_fast._validate import (
    as_float_array,
    as_index_array,
    as_labels,
    check_budget,
    check_finite,
    out_dtype,
)
from alamp_fast.alamp import alamp_score
from alamp_fast.coreset import _nearest_d2, _step, kcenter_greedy
from alamp_fast.uncertainty import entropy, least_confidence, margin, top2_margin

__all__ = ["IMPLS", "get_client", "add_scheduler_argument", "from_memmap"]

# numba's workqueue threading layer (its fallback when neither TBB nor OpenMP is installed)
# aborts the process when two threads launch parallel kernels at once, which dask's threaded
# scheduler would do; one launch at a time per process costs little, a launch already uses
# every core.
_KERNEL_LOCK = threading.Lock()

# candidate sets merged per task on the way up the reduction tree
_SPLIT_EVERY = 8


# --------------------------------------------------------------------------------------------
# connecting


def get_client(address: str | None = None, *, timeout: float = 30, **cluster_kwargs):
    """A ``distributed.Client`` on the scheduler at ``address``, or on a new local cluster.

    The client becomes Dask's default scheduler, so :mod:`alamp_fast` calls on dask arrays
    run there. Close it (``client.close()``, or use it as a context manager) when done; a local
    cluster started here closes with it.

    Parameters
    ----------
    address : str, optional
        ``tcp://host:port`` (or ``host:port``) of a running scheduler, as given to
        ``--scheduler``. None starts a ``LocalCluster`` of worker processes on this machine.
    timeout : float, default 30
        Seconds to wait for the scheduler.
    **cluster_kwargs
        Passed to ``LocalCluster`` when ``address`` is None (``n_workers``,
        ``threads_per_worker``, ``memory_limit``, ...). For a multi-GPU node pass
        a ``dask_cuda.LocalCUDACluster``'s address instead.

    Returns
    -------
    distributed.Client

    Raises
    ------
    ValueError
        The scheduler at ``address`` cannot be reached in ``timeout`` seconds.

    Examples
    --------
    >>> from alamp_fast.distributed import get_client
    >>> with get_client(n_workers=2, threads_per_worker=1) as client:  # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    2
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            "a Dask cluster needs the 'distributed' package: pip install 'alamp_fast[dask]'"
        ) from exc
    if address is None:
        cluster_kwargs.setdefault("processes", True)
        cluster_kwargs.setdefault("dashboard_address", None)
        return Client(timeout=timeout, **cluster_kwargs)
    if cluster_kwargs:
        raise TypeError(
            f"cluster options {sorted(cluster_kwargs)} only apply to a local cluster, "
            f"not to the scheduler at {address!r}"
        )
    try:
        return Client(address, timeout=timeout)
    except OSError as exc:
        raise ValueError(
            f"cannot reach the Dask scheduler at {address!r} within {timeout} s: {exc}"
        ) from exc


def add_scheduler_argument(parser) -> None:
    """Add ``--scheduler ADDRESS`` to an argparse parser (``args.scheduler``, None = local).

    A command that got one passes it to :func:`get_client` and hands dask arrays to the
    :mod:`alamp_fast` functions; without it, it runs on numpy on this machine.
    """
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run scoring and selection on the Dask cluster whose scheduler listens at ADDRESS "
        "(tcp://host:port); default: this machine, without Dask",
    )


# --------------------------------------------------------------------------------------------
# pools stored on disk


class _FileRows:
    """A C-ordered array in a file, read by row ranges; pickles as its path, not its data."""

    def __init__(self, path: str, offset: int, shape: tuple, dtype: np.dtype):
        self.path, self.offset = path, offset
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        start, stop, step = key[0].indices(self.shape[0])
        out = np.empty((max(0, stop - start),) + self.shape[1:], dtype=self.dtype)
        _ooc.read_rows(self.path, self.offset, start, out)
        return out[(slice(None, None, step),) + key[1:]]


def from_memmap(pool, chunk_rows: int | None = None):
    """A dask array over a file-backed ``np.memmap`` whose chunks the workers read themselves.

    ``da.from_array(memmap)`` would pickle the whole array into the graph; here a task only
    holds the file's path, so the workers (which must see the same path: one machine, or a
    shared filesystem) read their rows in parallel and only candidates cross the network.

    Parameters
    ----------
    pool : np.memmap
        A whole C-ordered memmap, e.g. ``np.load(path, mmap_mode="r")``.
    chunk_rows : int, optional
        Rows per chunk; default about 64 MiB of the pool per chunk.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast.distributed import from_memmap
    >>> path = os.path.join(tempfile.mkdtemp(), "pool.npy")
    >>> np.save(path, np.random.default_rng(0).random((1000, 4), dtype=np.float32))
    >>> P = from_memmap(np.load(path, mmap_mode="r"), chunk_rows=300)
    >>> P.chunks[0]
    (300, 300, 300, 100)
    >>> bool((af.margin(P).compute() == af.margin(np.load(path))).all())
    True
    """
    source = _ooc.file_source(pool)
    if source is None:
        raise TypeError(
            f"from_memmap needs a whole, C-ordered, file-backed np.memmap (not a slice or a "
            f"copy-on-write map), got {type(pool).__name__}; use dask.array.from_array for "
            "in-memory arrays"
        )
    rows = _ooc.block_rows_for(chunk_rows, _ooc.row_bytes(pool))
    path, offset = source
    reader = _FileRows(path, offset, tuple(pool.shape), pool.dtype)
    stat = os.stat(path)
    token = dask.base.tokenize(path, offset, pool.shape, pool.dtype.str, stat.st_mtime_ns, rows)
    return da.from_array(
        reader,
        chunks=(rows,) + tuple(pool.shape[1:]),
        name="alamp-pool-" + token,
        meta=np.empty((0,) * pool.ndim, dtype=pool.dtype),
    )


# --------------------------------------------------------------------------------------------
# inputs


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


# --------------------------------------------------------------------------------------------
# scoring: map_blocks over row chunks, lazily


def _rows_call(*blocks, kernel, block_info=None):
    """``kernel`` on one row chunk; a ValueError names the chunk's rows in the pool."""
    start, stop = block_info[0]["array-location"][0]
    try:
        with _KERNEL_LOCK:
            return kernel(*blocks)
    except ValueError as exc:
        raise _ooc.located(exc, start, stop) from exc


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


# --------------------------------------------------------------------------------------------
# selection: per-chunk candidates, reduced exactly up a tree


def _chunk_top(scores, start: int, local_ex: np.ndarray, b: int, largest: bool):
    with _KERNEL_LOCK:
        gidx, key, _ = _ooc.block_keys(_to_host(scores), start, local_ex, largest)
        return _ooc.top_candidates(gidx, key, b)


def _chunk_classes(scores, pseudo_class, start: int, local_ex, b: int, largest: bool):
    with _KERNEL_LOCK:
        gidx, key, keep = _ooc.block_keys(_to_host(scores), start, local_ex, largest)
        pc = _to_host(pseudo_class).astype(np.int64)
        return _ooc.class_candidates(gidx, key, pc if keep is None else pc[keep], b)


def _merge_top(b: int, *parts):
    with _KERNEL_LOCK:
        return _ooc.merge_top(b, *parts)


def _finish_top(b: int, cand):
    with _KERNEL_LOCK:
        return _ooc.finish_top(b, cand)


def _merge_classes(b: int, *parts):
    with _KERNEL_LOCK:
        return _ooc.merge_classes(b, *parts)


def _finish_classes(b: int, cand):
    with _KERNEL_LOCK:
        return _ooc.finish_classes(b, cand)


def _reduce(parts, merge, finish, b: int):
    """``finish(b, merge(b, ...))`` over candidate sets, fan-in :data:`_SPLIT_EVERY`, computed.

    Groups are consecutive chunks, so every merged set stays in increasing row order.
    """
    merge_task = dask.delayed(merge, pure=True)
    while len(parts) > 1:
        parts = [
            merge_task(b, *parts[i : i + _SPLIT_EVERY]) for i in range(0, len(parts), _SPLIT_EVERY)
        ]
    (result,) = dask.compute(dask.delayed(finish, pure=True)(b, parts[0]))
    return np.asarray(result, dtype=np.int64)


def _exclusion(exclude, n: int) -> np.ndarray:
    return np.sort(as_index_array(_local(exclude), "exclude", n))


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
    return _reduce(parts, _merge_top, _finish_top, b)


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
    return _reduce(parts, _merge_classes, _finish_classes, b)


# --------------------------------------------------------------------------------------------
# k-center greedy: running minima on the workers, one argmax reduction per step


def _current_client():
    """The default ``distributed`` client, or None (no cluster: run in this process)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


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


IMPLS = {
    "top2_margin": _top2_margin,
    "margin": _rowwise(margin, "margin"),
    "entropy": _rowwise(entropy, "entropy"),
    "least_confidence": _rowwise(least_confidence, "least_confidence"),
    "alamp_score": _alamp_score,
    "select_top": _select_top,
    "diversify": _diversify,
    "kcenter_greedy": _kcenter_greedy,
}
