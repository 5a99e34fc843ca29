"""Out-of-core acquisition on one machine: pools far larger than RAM, in bounded memory.

Why one module of this size: every function is the blocked twin of one public kernel over the
same read-ahead block reader; the reader and the bound it proves below belong with them.

The functions here take the same arguments as their in-memory twins in :mod:`alamp_fast` and
return identical results (same values, same indices in the same order, same tie rule), but
walk the pool in blocks of ``block_rows`` rows, so a ``np.memmap`` pool of any size is scored
and a batch selected without loading it. No Dask is needed.

Memory bound
------------
Each call holds two blocks of its inputs (one read ahead while the other is processed), a
fixed working memory per block row and ``O(b)`` candidates. With ``R = block_rows`` and ``r``
the bytes of one row of the inputs (``C * 2`` for ``C`` float16 classes), the peak beyond the
arrays the caller passes or receives is

==============================================================  ============================
:func:`top2_margin`, :func:`entropy`, :func:`least_confidence`  ``R * (2 r + 16)`` + 4 MiB
:func:`alamp_score`                                             ``R * (2 r + 16)``
:func:`select_top`                                              ``R * (2 r + 48) + 32 * b``
:func:`diversify`                                               ``R * (2 r + 72) + 48 * b``
==============================================================  ============================

(the 4 MiB is the core kernels' float16 -> float32 widening; the per-row constants cover the
block's results, float64 keys, int64 indices and the core selections' temporaries, measured
at 37 and 63 bytes for the selections; a running candidate set holds at most ``2 b`` rows).
``block_rows=None`` sizes the block so that the ``R * (...)`` term is
:data:`DEFAULT_BLOCK_BYTES` (64 MiB), which keeps the per-block overhead (a Python loop
iteration, a kernel launch) negligible at GB/s. Arrays that are not file-backed memmaps are
sliced, not copied: one block view at a time.

The per-row *outputs* of the scoring functions, ``n * 4`` bytes (margins, scores) and
``n * 8`` (``top_class``), live in RAM unless ``out=`` passes arrays to fill, which may be
``np.memmap`` files themselves: then a pool of any size is scored in the bounds above. For
``1e8 x 100`` float16 probabilities (20 GB) the outputs are 1.2 GB in RAM.

A file-backed ``np.memmap`` (as made by ``np.memmap(...)`` or ``np.load(path,
mmap_mode="r")``; read-only or read-write, C order) is read with plain ``read`` calls into two
reused block buffers, so the pages of the file are never mapped into the process and never
count towards its resident memory. Any other array (an in-memory array, a slice of a memmap, a
copy-on-write ``mode="c"`` memmap) is sliced block by block; for a memmap view the pages it
touches then stay mapped until the kernel reclaims them (counted in RSS, but reclaimable page
cache, not allocated memory).

Why this module is not in :mod:`alamp_fast.distributed`
-------------------------------------------------------
Both rooms serve pools larger than memory, but this one needs only numpy and numba (the core
dependencies): importing ``alamp_fast.distributed.<anything>`` runs that package's
``__init__``, which imports dask, so a home there would make every out-of-core user install
the ``dask`` extra. The dependency runs the other way: each Dask chunk task runs this module's
per-block helpers (``block_keys``, ``top_candidates``, ``merge_top``, ...), so the two give
the same picks by construction.
"""

from __future__ import annotations

import mmap
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import alamp_fast as af
from alamp_fast._validate import (
    as_float_array,
    as_index_array,
    as_labels,
    check_budget,
    check_finite,
    is_int,
    out_dtype,
)

__all__ = [
    "top2_margin",
    "entropy",
    "least_confidence",
    "alamp_score",
    "select_top",
    "diversify",
    "DEFAULT_BLOCK_BYTES",
]

#: Bytes of input plus working memory per block when ``block_rows`` is None.
DEFAULT_BLOCK_BYTES = 64 << 20

# Working memory per block row beyond the inputs' own bytes. Scoring: the results (margin and
# top_class: 12 bytes). Selection, measured as peak RSS growth at 1e6-row blocks of float32
# scores (int64 pseudo-classes): select_top 37 bytes/row, diversify 63 (float64 keys, int64
# indices, the core selections' temporaries); rounded up.
_SCORE_ROW_BYTES = 16
_TOP_ROW_BYTES = 48
_DIVERSIFY_ROW_BYTES = 72


# --------------------------------------------------------------------------------------------
# reading a pool in row blocks


def file_source(pool) -> tuple[str, int] | None:
    """``(path, byte offset)`` when ``pool`` is a whole, C-ordered, shared file-backed memmap.

    Only then may its rows be read from the file instead of through the mapping: a slice has the
    parent's ``offset``, and a copy-on-write (``mode="c"``) map may hold changes the file lacks.
    """
    if not isinstance(pool, np.memmap) or not isinstance(pool.base, mmap.mmap):
        return None
    if pool.filename is None or pool.mode == "c" or not pool.flags.c_contiguous:
        return None
    return os.fspath(pool.filename), int(pool.offset)


def _read_into(f, path: str, offset: int, start: int, out: np.ndarray) -> None:
    row_bytes = out[0].nbytes if out.shape[0] else 0
    view = memoryview(out.reshape(-1).view(np.uint8))
    f.seek(offset + start * row_bytes)
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            raise ValueError(
                f"{path} ends before row {start + done // row_bytes} of the memmap; "
                "was the file truncated?"
            )
        done += got


def read_rows(path: str, offset: int, start: int, out: np.ndarray) -> None:
    """Fill ``out`` (``k`` rows, C order) with rows ``start:start+k`` of the array in a file."""
    with open(path, "rb", buffering=0) as f:
        _read_into(f, path, offset, start, out)


def row_bytes(*arrays) -> int:
    """Bytes one row takes in each of ``arrays``, summed."""
    return sum(int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize for a in arrays)


def block_rows_for(block_rows: int | None, bytes_per_row: int) -> int:
    """``block_rows`` checked, or the rows of :data:`DEFAULT_BLOCK_BYTES` at ``bytes_per_row``
    (the inputs' row plus the working memory a row of the block costs)."""
    if block_rows is None:
        return max(1, DEFAULT_BLOCK_BYTES // max(1, bytes_per_row))
    if not is_int(block_rows):
        raise TypeError(f"block_rows must be a positive integer, got {block_rows!r}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    return int(block_rows)


def _row_blocks(pool, block_rows: int):
    """Yield ``(start, block)`` over the rows of ``pool``.

    A file-backed memmap is read into two reused buffers, the next block by a background
    thread while the caller works on the current one (``readinto`` releases the GIL): a cold
    1 GB pool scored at 0.36-0.52 GB/s reading in turn, 0.86-0.89 GB/s reading ahead (2 shared
    cores). A block stays valid until the caller asks for the next. Anything else is sliced.
    """
    n = pool.shape[0]
    source = file_source(pool)
    if source is None:
        for start in range(0, n, block_rows):
            yield start, pool[start : start + block_rows]
        return
    path, offset = source
    bufs = [np.empty((min(block_rows, n),) + pool.shape[1:], dtype=pool.dtype) for _ in range(2)]

    def read(i: int, start: int) -> np.ndarray:
        block = bufs[i][: min(block_rows, n - start)]
        _read_into(f, path, offset, start, block)
        return block

    with open(path, "rb", buffering=0) as f, ThreadPoolExecutor(1) as reader:
        pending = reader.submit(read, 0, 0)
        for k, start in enumerate(range(0, n, block_rows)):
            block = pending.result()
            if start + block_rows < n:
                pending = reader.submit(read, (k + 1) % 2, start + block_rows)
            yield start, block


def _zip_blocks(arrays, block_rows: int):
    """Yield ``(start, [block of each array])`` over arrays with the same number of rows."""
    iters = [_row_blocks(a, block_rows) for a in arrays]
    for parts in zip(*iters, strict=True):
        yield parts[0][0], [p[1] for p in parts]


def located(exc: ValueError, start: int, stop: int) -> ValueError:
    """``exc`` with the pool rows of the block it came from, for a user who has no blocks."""
    return ValueError(f"pool rows {start}:{stop} (indices that follow count from {start}): {exc}")


def _as_pool(x, name: str, ndim: int):
    """``x`` as an array with ``ndim`` dims, without reading it (a memmap stays a memmap)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _outputs(out, n: int, dtypes: list[np.dtype], names: list[str]) -> list[np.ndarray]:
    """The caller's ``out`` arrays (checked) or new ones."""
    if out is None:
        return [np.empty(n, dtype=dt) for dt in dtypes]
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if len(outs) != len(dtypes):
        raise ValueError(
            f"out must hold {len(dtypes)} array(s) ({', '.join(names)}), got {len(outs)}"
        )
    for o, dt, nm in zip(outs, dtypes, names, strict=True):
        if not isinstance(o, np.ndarray) or o.shape != (n,) or o.dtype != dt:
            got = (o.shape, o.dtype) if isinstance(o, np.ndarray) else type(o).__name__
            raise ValueError(f"out for {nm} must be a ({n},) {dt} array, got {got}")
    return outs


# --------------------------------------------------------------------------------------------
# scoring


def _map_rows(kernel, probs, block_rows, out, names):
    P = _as_pool(probs, "probs", 2)
    # the core kernel on an empty slice checks dtype and n_classes, and gives the out dtypes
    empty = kernel(np.empty((0,) + P.shape[1:], dtype=P.dtype))
    empty = empty if isinstance(empty, tuple) else (empty,)
    n = P.shape[0]
    outs = _outputs(out, n, [e.dtype for e in empty], names)
    rows = block_rows_for(block_rows, 2 * row_bytes(P) + _SCORE_ROW_BYTES)
    for start, block in _row_blocks(P, rows):
        stop = start + block.shape[0]
        try:
            res = kernel(block)
        except ValueError as exc:
            raise located(exc, start, stop) from exc
        for o, r in zip(outs, res if isinstance(res, tuple) else (res,), strict=True):
            o[start:stop] = r
    return tuple(outs) if len(outs) > 1 else outs[0]


def top2_margin(probs, *, block_rows=None, out=None):
    """:func:`alamp_fast.top2_margin` over a pool read in blocks of rows.

    Parameters
    ----------
    probs : (n_samples, n_classes) float16/32/64 array, typically a ``np.memmap``
    block_rows : int, optional
        Rows per block; the working memory is ``block_rows * (2 * n_classes * itemsize + 16)``
        bytes plus 4 MiB (module docstring). Default: 64 MiB of working memory.
    out : (margin, top_class) arrays, optional
        ``(n_samples,)`` arrays to fill, of dtype float32 (float64 for float64 ``probs``) and
        int64; may be ``np.memmap`` files, so nothing of size ``n_samples`` is held in RAM.

    Returns
    -------
    margin, top_class : identical to ``alamp_fast.top2_margin(np.asarray(probs))``.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast import outofcore
    >>> P = np.random.default_rng(0).random((1000, 5), dtype=np.float32)
    >>> m, top = outofcore.top2_margin(P, block_rows=128)
    >>> bool((m == af.margin(P)).all())
    True
    """
    return _map_rows(af.top2_margin, probs, block_rows, out, ["margin", "top_class"])


def entropy(probs, *, block_rows=None, out=None):
    """:func:`alamp_fast.entropy` over a pool read in blocks of rows (see :func:`top2_margin`).

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast import outofcore
    >>> P = np.random.default_rng(0).random((1000, 5))
    >>> bool((outofcore.entropy(P, block_rows=300) == af.entropy(P)).all())
    True
    """
    return _map_rows(af.entropy, probs, block_rows, out, ["entropy"])


def least_confidence(probs, *, block_rows=None, out=None):
    """:func:`alamp_fast.least_confidence` over a pool read in blocks of rows.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast import outofcore
    >>> P = np.random.default_rng(0).random((1000, 5))
    >>> bool((outofcore.least_confidence(P, block_rows=300) == af.least_confidence(P)).all())
    True
    """
    return _map_rows(af.least_confidence, probs, block_rows, out, ["least_confidence"])


def alamp_score(prev_margin, margin, *, block_rows=None, out=None):
    """:func:`alamp_fast.alamp_score` over margins read in blocks (either may be a memmap).

    Parameters
    ----------
    prev_margin, margin : (n_samples,) float16/32/64 arrays, finite and >= 0
    block_rows : int, optional
        Rows per block; default: 64 MiB of working memory (module docstring).
    out : (n_samples,) array, optional
        Filled with the scores (float32, or float64 if either input is float64).

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast import outofcore
    >>> rng = np.random.default_rng(0)
    >>> prev, cur = rng.random(1000), rng.random(1000)
    >>> bool((outofcore.alamp_score(prev, cur, block_rows=64) == af.alamp_score(prev, cur)).all())
    True
    """
    prev = _as_pool(prev_margin, "prev_margin", 1)
    cur = _as_pool(margin, "margin", 1)
    if prev.shape != cur.shape:
        raise ValueError(f"prev_margin has {prev.shape[0]} samples but margin has {cur.shape[0]}")
    af.alamp_score(np.empty(0, prev.dtype), np.empty(0, cur.dtype))  # dtype checks
    (res,) = _outputs(out, prev.shape[0], [out_dtype(prev.dtype, cur.dtype)], ["alamp_score"])
    rows = block_rows_for(block_rows, 2 * row_bytes(prev, cur) + _SCORE_ROW_BYTES)
    for start, (p, c) in _zip_blocks([prev, cur], rows):
        stop = start + p.shape[0]
        try:
            res[start:stop] = af.alamp_score(p, c)
        except ValueError as exc:
            raise located(exc, start, stop) from exc
    return res


# --------------------------------------------------------------------------------------------
# selection: per-block candidates, merged exactly
#
# Both selections rank rows by (key, row index) with key = -score (largest) or score, a total
# order. A candidate set is a pair (gidx, key) sorted by gidx, so that "position in the set"
# orders ties exactly as "row index in the pool" does, and the core functions can run on it.
# The Dask implementation (alamp_fast.distributed's topk and diversify) uses the same helpers
# per chunk.


def split_exclude(ex_sorted: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows of sorted global indices ``ex_sorted`` inside ``[start, stop)``, made local."""
    lo, hi = np.searchsorted(ex_sorted, [start, stop])
    return ex_sorted[lo:hi] - start


def _as_scores(scores) -> np.ndarray:
    """Scores as the core selections see them (float or integer, converted to float64)."""
    return as_float_array(scores, "scores", 1, allow_int=True)


def block_keys(scores, start: int, local_ex: np.ndarray, largest: bool):
    """Global indices and sort keys of a block's candidates (excluded rows dropped).

    Keys are the core's: the scores in float64 (exact for float16/32), negated when
    ``largest``, so that smaller is better. Returns ``(gidx, key, keep)`` with ``keep`` the
    mask of kept rows, or None when none was excluded.
    """
    s = _as_scores(scores)
    try:
        check_finite(s, "scores")
    except ValueError as exc:
        raise located(exc, start, start + s.shape[0]) from exc
    key = s.astype(np.float64)
    if largest:
        np.negative(key, out=key)
    gidx = np.arange(start, start + key.shape[0], dtype=np.int64)
    if local_ex.size:
        keep = np.ones(key.shape[0], dtype=bool)
        keep[local_ex] = False
        return gidx[keep], key[keep], keep
    return gidx, key, None


def top_candidates(gidx: np.ndarray, key: np.ndarray, b: int):
    """The ``b`` best of a candidate set, still sorted by ``gidx``.

    Exact: the pool's best ``b`` under a total order are among any part's best ``b``.
    """
    if gidx.shape[0] <= b:
        return gidx, key
    pos = np.sort(af.select_top(key, b, largest=False))
    return gidx[pos], key[pos]


def merge_top(b: int, *parts):
    """Union of candidate sets ``(gidx, key)`` given in increasing row order, cut to ``b``."""
    gidx = np.concatenate([p[0] for p in parts])
    key = np.concatenate([p[1] for p in parts])
    return top_candidates(gidx, key, b)


def finish_top(b: int, cand) -> np.ndarray:
    """Global indices of the ``b`` best candidates, best first, ties to the lower index."""
    gidx, key = cand
    return gidx[af.select_top(key, b, largest=False)]


def class_candidates(gidx: np.ndarray, key: np.ndarray, pc: np.ndarray, b: int):
    """The rows of a candidate set that Algorithm 1 with budget ``b`` may take on the pool:
    those it takes on the set itself (at most ``b``), returned as ``(gidx, key, pc)`` sorted
    by ``gidx``.

    Exact: Algorithm 1 orders rows by (pass, key, index), where a row's pass is its rank within
    its pseudo-class. Suppose ``b`` rows of the set precede a row ``x`` in the set's order.
    In the pool, ``x``'s pass is no earlier, and each class's ``j``-th best row is at least as
    good as its ``j``-th best row in the set, so for every class at least as many rows precede
    ``x`` in the pool's order: ``x`` is not among the pool's first ``b`` either. Rows the pool
    takes keep their pass in any set holding them (the better rows of their class are taken
    too), so the final run on the gathered rows returns the same rows in the same order.
    """
    if gidx.shape[0] <= b:
        return gidx, key, pc
    pos = np.sort(af.diversify(key, pc, b, largest=False))
    return gidx[pos], key[pos], pc[pos]


def merge_classes(b: int, *parts):
    """Union of class candidate sets ``(gidx, key, pc)`` in increasing row order, pruned."""
    return class_candidates(*(np.concatenate([p[i] for p in parts]) for i in range(3)), b)


def finish_classes(b: int, cand) -> np.ndarray:
    """Algorithm 1 on the gathered candidates, as global indices in its order."""
    gidx, key, pc = cand
    return gidx[af.diversify(key, pc, b, largest=False)]


def select_top(scores, b, *, exclude=None, largest=True, block_rows=None):
    """:func:`alamp_fast.select_top` over scores read in blocks (e.g. a ``np.memmap``).

    Each block contributes its best ``b`` rows; they are merged into a running set of ``b``
    candidates, so memory is ``O(block_rows + b)``. The result is identical to
    ``alamp_fast.select_top(np.asarray(scores), b, ...)``, ties included.

    Parameters
    ----------
    scores : (n_samples,) float or integer array, finite
    b : int
    exclude : int indices or boolean mask, optional
        Global rows that must not be picked.
    largest : bool, default True
    block_rows : int, optional
        Rows per block; working memory ``block_rows * (2 * itemsize + 48)`` bytes. Default:
        64 MiB of it.

    Returns
    -------
    (b,) int64 indices, best first.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast import outofcore
    >>> s = np.random.default_rng(0).integers(0, 5, 1000)
    >>> got = outofcore.select_top(s, 10, exclude=[3, 4], block_rows=64)
    >>> bool((got == af.select_top(s, 10, exclude=[3, 4])).all())
    True
    """
    s = _as_pool(scores, "scores", 1)
    _as_scores(np.empty(0, s.dtype))  # dtype check before any reading
    n = s.shape[0]
    ex = np.sort(as_index_array(exclude, "exclude", n))
    b = check_budget(b, n - ex.size, "candidates left after exclude")
    cand = (np.empty(0, np.int64), np.empty(0, np.float64))
    rows = block_rows_for(block_rows, 2 * row_bytes(s) + _TOP_ROW_BYTES)
    for start, block in _row_blocks(s, rows):
        local_ex = split_exclude(ex, start, start + block.shape[0])
        gidx, key, _ = block_keys(block, start, local_ex, largest)
        cand = merge_top(b, cand, top_candidates(gidx, key, b))
    return finish_top(b, cand)


def diversify(scores, pseudo_class, b, *, exclude=None, largest=True, block_rows=None):
    """:func:`alamp_fast.diversify` (Algorithm 1) over a pool read in blocks.

    Each block keeps the rows Algorithm 1 takes on the block itself, which include every row
    of the block it takes on the pool (see :func:`class_candidates`); they are merged into a
    running set of at most ``b`` rows, so memory is ``O(block_rows + b)``. Identical to the
    in-memory call, ties included.

    Parameters
    ----------
    scores : (n_samples,) float or integer array, finite
    pseudo_class : (n_samples,) integer array (may be a ``np.memmap``)
    b : int
    exclude : int indices or boolean mask, optional
    largest : bool, default True
    block_rows : int, optional
        Rows per block; working memory ``block_rows * (2 * both itemsizes + 72)`` bytes.
        Default: 64 MiB of it.

    Returns
    -------
    (b,) int64 indices in Algorithm 1's order.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> from alamp_fast import outofcore
    >>> rng = np.random.default_rng(0)
    >>> s, pc = rng.random(1000), rng.integers(0, 7, 1000)
    >>> got = outofcore.diversify(s, pc, 20, block_rows=100)
    >>> bool((got == af.diversify(s, pc, 20)).all())
    True
    """
    s = _as_pool(scores, "scores", 1)
    pc = _as_pool(pseudo_class, "pseudo_class", 1)
    n = s.shape[0]
    _as_scores(np.empty(0, s.dtype))
    if pc.shape[0] != n:
        raise ValueError(f"pseudo_class has {pc.shape[0]} entries but scores have {n}")
    as_labels(np.empty(0, pc.dtype), "pseudo_class", 0)  # dtype check before any reading
    ex = np.sort(as_index_array(exclude, "exclude", n))
    b = check_budget(b, n - ex.size, "candidates left after exclude")
    cand = (np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))
    rows = block_rows_for(block_rows, 2 * row_bytes(s, pc) + _DIVERSIFY_ROW_BYTES)
    for start, (sb, pb) in _zip_blocks([s, pc], rows):
        local_ex = split_exclude(ex, start, start + sb.shape[0])
        gidx, key, keep = block_keys(sb, start, local_ex, largest)
        labels = pb.astype(np.int64)
        block_cand = class_candidates(gidx, key, labels if keep is None else labels[keep], b)
        cand = merge_classes(b, cand, block_cand)
    return finish_classes(b, cand)
