"""GPU batch selection: top-b by exact radix select, and the bucketed Algorithm 1 (alamp-div).

Kernels: ``kernels/select.cu``. The order is :mod:`alamp_fast.selection`'s: score (descending
when ``largest``), then row index; results equal the CPU's exactly. Scores become unsigned
order keys (float32 bits for float16/32 scores, float64 bits for float64 scores, the int64
itself for integer scores, exact beyond 2**53 as on the CPU);
the pair (key, row) is unique, so "the b best" is "the b smallest composites":

* :func:`select_top`: radix select finds the b-th smallest composite (a histogram pass and a
  one-block pick per 8-bit digit, all on the device), one pass gathers the rows at or below
  it, and only those b are sorted.
* :func:`diversify`: one stable radix sort by (pseudo-class, key) gives every candidate its
  rank within its pseudo-class; Algorithm 1's pass ``r`` takes exactly the rank-``r``
  candidates in global order, so the batch is the first b by (rank, key, row) among the
  candidates of rank < R, R the number of passes needed. No pass over the pool per round.
"""

from __future__ import annotations

import numpy as np

from alamp_fast import _validate
from alamp_fast import selection as cpu_selection
from alamp_fast._validate import check_bool, check_budget, check_finite
from alamp_fast.cuda import _checks, _instantiations, _kernels
from alamp_fast.selection import _pass_depth

__all__ = ["select_top", "diversify"]

_BLOCK = 256
_HIST_BLOCK = 512
_DIGIT_BITS = 8


_SCORE_CTYPE = _instantiations.SCORE_CTYPE
_key_ctype = _instantiations.key_ctype


def name_expressions() -> list[str]:
    return _instantiations.select()


def radix_passes(key_bits: int, n: int, digit_bits: int = _DIGIT_BITS):
    """Digits of the composite (key, row), most significant first.

    Each is ``(in_hi, shift, width, mask_hi, mask_lo, last)``: ``width`` bits at ``shift`` of
    the key (``in_hi``) or of the row index, and the masks of the bits decided before it. The
    row part has just enough bits for ``n - 1``.

    Examples
    --------
    >>> [p[:3] for p in radix_passes(32, 1000)]
    [(1, 24, 8), (1, 16, 8), (1, 8, 8), (1, 0, 8), (0, 2, 8), (0, 0, 2)]
    """
    passes = []
    mask = {1: 0, 0: 0}
    row_bits = max(1, (max(n, 1) - 1).bit_length())
    for in_hi, bits in ((1, key_bits), (0, row_bits)):
        top = bits
        while top > 0:
            width = min(digit_bits, top)
            shift = top - width
            passes.append([in_hi, shift, width, mask[1], mask[0], False])
            mask[in_hi] |= ((1 << width) - 1) << shift
            top = shift
    passes[-1][-1] = True
    return [tuple(p) for p in passes]


def _scores(scores):
    """Scores as a device array the keys are made from: float16/32/64, or int64 for integer
    scores (exact beyond 2**53, as the CPU's int64 keys); uint64 beyond the int64 range raises
    the CPU's error."""
    import cupy

    if not _checks.is_device_array(scores):
        _validate.reject_unsupported(scores, "scores")
        raw = np.asarray(scores)
        if raw.dtype.kind in "iu" and raw.ndim == 1:
            _check_uint64(raw.dtype, int(raw.max()) if raw.size else 0, raw)
            return cupy.asarray(raw.astype(np.int64))
        return _checks.float_array(raw, "scores", 1, allow_int=True)
    if scores.dtype.kind in "iu" and scores.ndim == 1:
        top = int(scores.max()) if scores.size else 0
        _check_uint64(scores.dtype, top, scores)
        return cupy.ascontiguousarray(scores.astype(np.int64, copy=False))
    return _checks.float_array(scores, "scores", 1, allow_int=True)


def _check_uint64(dtype, top: int, scores) -> None:
    if np.dtype(dtype) == np.uint64 and top > np.iinfo(np.int64).max:
        # the CPU's check names the value; it only needs the maximum
        _checks.cpu_must_raise(cpu_selection._keys, np.array([top], dtype=np.uint64), None, True)


def _order_keys(s, largest: bool):
    """Order keys of the scores (smaller = better); raises the CPU's error on NaN/Inf."""
    import cupy

    n = s.shape[0]
    key_dtype = np.uint64 if s.dtype.itemsize == 8 else np.uint32
    keys = cupy.empty(n, dtype=key_dtype)
    if n == 0:
        return keys
    first_bad = _checks.first_bad_flags(1, n)
    kernel = _kernels.function(
        "select", f"make_keys<{_SCORE_CTYPE[s.dtype]}, {_key_ctype(s.dtype)}>"
    )
    kernel(
        (_kernels.grid_size(n, _BLOCK, kernel, _BLOCK),),
        (_BLOCK,),
        (s, np.int64(n), np.int32(bool(largest)), keys, first_bad),
    )
    if int(first_bad.get()[0]) < n:
        _checks.cpu_must_raise(check_finite, s.get(), "scores")
    return keys


def _radix_select(keys, b: int):
    """Rows of the b smallest composites (key, row), unordered, as int64."""
    import cupy

    n = keys.shape[0]
    kt = _key_ctype(keys.dtype)
    state = cupy.asarray(np.array([0, 0, b, 0, 0, 0], dtype=np.uint64))
    hist = cupy.zeros(1 << _DIGIT_BITS, dtype=np.uint32)
    hist_kernel = _kernels.function("select", f"radix_hist<{kt}>")
    pick_kernel = _kernels.function("select", "radix_pick")
    grid = _kernels.grid_size(n, _HIST_BLOCK, hist_kernel, _HIST_BLOCK)
    for in_hi, shift, width, mask_hi, mask_lo, last in radix_passes(keys.dtype.itemsize * 8, n):
        hist_kernel(
            (grid,),
            (_HIST_BLOCK,),
            (
                keys,
                np.int64(n),
                state,
                np.int32(in_hi),
                np.int32(shift),
                np.int32(width),
                np.uint64(mask_hi),
                np.uint32(mask_lo),
                hist,
            ),
        )
        pick_kernel(
            (1,),
            (_BLOCK,),
            (hist, state, np.int32(in_hi), np.int32(shift), np.int32(width), np.int32(last)),
        )
    out = cupy.empty(b, dtype=np.int64)
    count = cupy.zeros(1, dtype=np.uint64)
    collect = _kernels.function("select", f"radix_collect<{kt}>")
    grid = _kernels.grid_size(n, _BLOCK, collect, _BLOCK)
    collect((grid,), (_BLOCK,), (keys, np.int64(n), state, out, count))
    return out


def _stable_argsort(a, xp):
    # CuPy's argsort is always stable (and takes no kind); numpy's must be asked
    return xp.argsort(a, kind="stable") if xp is np else xp.argsort(a)


def sort_by_key_then_row(keys, rows, xp):
    """``rows`` ordered by (keys[rows], rows); rows are unique and < 2**32. ``xp``: numpy or
    cupy (the CPU tests run this same code on numpy)."""
    if keys.dtype == np.uint32:  # one 64-bit radix sort of the packed composite
        packed = (keys[rows].astype(np.uint64) << np.uint64(32)) | rows.astype(np.uint64)
        return (xp.sort(packed) & np.uint64(0xFFFFFFFF)).astype(np.int64)
    rows = xp.sort(rows)
    return rows[_stable_argsort(keys[rows], xp)]  # equal keys keep row order


def diversify_from_keys(keys, codes, counts, b: int, xp):
    """Algorithm 1 on order keys: the first b candidates by (rank in class, key, position).

    ``codes`` are bucket numbers in ``range(len(counts))``, ``counts`` their sizes. One stable
    sort by (class, key) ranks every candidate within its class; Algorithm 1's pass r takes the
    rank-r candidates in global order, and R passes suffice (R from :func:`_pass_depth`), so
    only candidates of rank < R are ordered.
    """
    m = keys.shape[0]
    counts_host = counts.get() if xp is not np else counts
    depth = _pass_depth(counts_host, b)
    if keys.dtype == np.uint32 and counts.shape[0] <= 1 << 32:
        packed = (codes.astype(np.uint64) << np.uint64(32)) | keys.astype(np.uint64)
        order = _stable_argsort(packed, xp)
    else:
        order = _stable_argsort(keys, xp)
        order = order[_stable_argsort(codes[order], xp)]
    starts = xp.cumsum(counts) - counts
    rank = xp.arange(m, dtype=np.int64) - starts[codes[order]]
    head = rank < depth
    pos, rank = order[head], rank[head]
    by_key = sort_by_key_then_row(keys, pos, xp)
    rank_of = xp.empty(m, dtype=np.int64)
    rank_of[pos] = rank
    return by_key[_stable_argsort(rank_of[by_key], xp)][:b]


def select_top(scores, b, *, exclude=None, largest=True):
    """GPU :func:`alamp_fast.select_top`: the b best rows, best first, as a CuPy int64 array.

    Examples
    --------
    >>> import cupy, alamp_fast.cuda as afc
    >>> afc.select_top(cupy.asarray([0.2, 0.9, 0.9, 0.1]), 2).get().tolist()
    [1, 2]
    """
    import cupy

    largest = check_bool(largest, "largest")
    s = _scores(scores)
    n = s.shape[0]
    keys = _order_keys(s, largest)
    ex = _checks.index_array(exclude, "exclude", n)
    b = check_budget(b, n - ex.size, "candidates left after exclude")
    if b == 0:
        return cupy.empty(0, dtype=np.int64)
    _checks.check_rows_fit(n, "select_top")
    if ex.size:
        # after every candidate in key order; b <= candidates, so never selected
        keys[ex] = keys.dtype.type(np.iinfo(keys.dtype).max)
    if b == n - ex.size:
        if ex.size:
            keep = cupy.ones(n, dtype=bool)
            keep[ex] = False
            rows = cupy.flatnonzero(keep)
        else:
            rows = cupy.arange(n, dtype=np.int64)
    else:
        rows = _radix_select(keys, b)
    return sort_by_key_then_row(keys, rows, cupy)


def diversify(scores, pseudo_class, b, *, exclude=None, largest=True):
    """GPU :func:`alamp_fast.diversify` (Algorithm 1), as a CuPy int64 array.

    Examples
    --------
    >>> import cupy, alamp_fast.cuda as afc
    >>> scores = cupy.asarray([0.9, 0.8, 0.7, 0.6, 0.5])
    >>> afc.diversify(scores, cupy.asarray([0, 0, 1, 1, 0]), 4).get().tolist()
    [0, 2, 1, 3]
    """
    import cupy

    largest = check_bool(largest, "largest")
    s = _scores(scores)
    n = s.shape[0]
    keys = _order_keys(s, largest)
    ex = _checks.index_array(exclude, "exclude", n)
    pc = _checks.labels(pseudo_class, "pseudo_class", n)
    b = check_budget(b, n - ex.size, "candidates left after exclude")
    if b == 0:
        return cupy.empty(0, dtype=np.int64)
    _checks.check_rows_fit(n, "diversify")
    if ex.size:
        keep = cupy.ones(n, dtype=bool)
        keep[ex] = False
        cand = cupy.flatnonzero(keep)
        keys, pc = keys[cand], pc[cand]
    else:
        cand = None
    m = keys.shape[0]
    lo, hi = (int(v) for v in cupy.stack([pc.min(), pc.max()]).get())
    if lo >= 0 and hi < 4 * m + 1024:
        codes, n_classes = pc, hi + 1  # dense labels are the bucket numbers
    else:
        uniq, codes = cupy.unique(pc, return_inverse=True)
        codes = codes.ravel()
        n_classes = int(uniq.shape[0])
    counts = cupy.bincount(codes, minlength=n_classes)
    sel = diversify_from_keys(keys, codes, counts, b, cupy)
    return sel if cand is None else cand[sel]
