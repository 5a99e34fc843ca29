"""Batch selection from per-sample scores: top-b and the paper's diversified Algorithm 1.

Order rule shared by both functions (and by the GPU and distributed versions): candidates are
ranked by score (descending when ``largest=True``), ties broken by the lower row index. This is
the order ``np.lexsort((np.arange(n), -scores))`` gives, and it is total, so selections are
exactly reproducible across backends.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from alamp_fast._dispatch import dispatch
from alamp_fast._parallel import twins
from alamp_fast._validate import (
    as_float_array,
    as_index_array,
    as_labels,
    check_bool,
    check_budget,
    check_finite,
    reject_unsupported,
)

__all__ = ["select_top", "diversify"]


def _keys(scores, exclude, largest: bool):
    """Sort keys (smaller = better) and the excluded indices; validates the inputs.

    Float scores become float64 keys (exact for float16/32, order kept; negation is exact).
    Integer scores stay int64 keys, so values beyond 2**53 keep their order; ``~x`` reverses
    the order without the overflow ``-x`` has at the int64 minimum.
    """
    largest = check_bool(largest, "largest")
    reject_unsupported(scores, "scores")
    raw = np.asarray(scores)
    if raw.dtype.kind in "iu":
        if raw.ndim != 1:
            raise ValueError(f"scores must be 1-D, got shape {raw.shape}")
        if raw.dtype == np.uint64 and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
            raise ValueError(
                f"scores hold {int(raw.max())}, beyond the int64 range integer scores support"
            )
        key = raw.astype(np.int64)
        if largest:
            np.invert(key, out=key)
    else:
        s = as_float_array(raw, "scores", 1)
        check_finite(s, "scores")
        key = s.astype(np.float64)
        if largest:
            np.negative(key, out=key)
    ex = as_index_array(exclude, "exclude", key.shape[0])
    return key, ex


def _candidates(key: np.ndarray, ex: np.ndarray):
    """Keys of the rows not excluded, and their row indices (None when nothing is excluded)."""
    if ex.size == 0:
        return key, None
    keep = np.ones(key.shape[0], dtype=bool)
    keep[ex] = False
    cand = np.flatnonzero(keep)
    return key[cand], cand


def _best_b(key: np.ndarray, b: int) -> np.ndarray:
    """Indices of the b smallest keys, ordered by (key, index), without a full sort."""
    n = key.shape[0]
    if b == 0:
        return np.empty(0, dtype=np.int64)
    if b < n:
        kth = key[np.argpartition(key, b - 1)[b - 1]]
        less = np.flatnonzero(key < kth)
        # the boundary value may be shared by more rows than places left: lowest indices win
        tied = np.flatnonzero(key == kth)[: b - less.size]
        sel = np.concatenate([less, tied])
    else:
        sel = np.arange(n)
    order = np.lexsort((sel, key[sel]))
    return sel[order].astype(np.int64, copy=False)


@dispatch("select_top")
def select_top(scores, b, *, exclude=None, largest=True):
    """The ``b`` best-scored rows not in ``exclude``, best first.

    Parameters
    ----------
    scores : (n_samples,) float or integer array, finite
        Integer scores are compared as int64 (exact beyond 2**53).
    b : int
        Batch size, ``0 <= b <= n_samples - len(exclude)``.
    exclude : int indices or boolean mask, optional
        Rows that must not be picked (already labeled); no duplicates.
    largest : bool, default True
        Pick the largest scores (alamp, entropy); ``False`` picks the smallest (margin).

    Returns
    -------
    (b,) int64 row indices, best first; equal scores are ordered by the lower index.

    Uses ``np.argpartition`` (O(n)) and sorts only the ``b`` winners.

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> af.select_top(np.array([0.2, 0.9, 0.9, 0.1]), 2).tolist()
    [1, 2]
    >>> af.select_top(np.array([0.2, 0.9, 0.9, 0.1]), 2, largest=False, exclude=[3]).tolist()
    [0, 1]
    """
    key, ex = _keys(scores, exclude, largest)
    b = check_budget(b, key.shape[0] - ex.size, "candidates left after exclude")
    key, cand = _candidates(key, ex)
    # candidate positions keep the row order, so the index tie rule carries over
    sel = _best_b(key, b)
    return sel if cand is None else cand[sel]


@njit(cache=True)
def _bucket(codes, n_classes):
    """Counting sort of candidate positions by class code (stable: index order kept)."""
    counts = np.zeros(n_classes + 1, dtype=np.int64)
    for c in codes:
        counts[c + 1] += 1
    starts = np.cumsum(counts)
    fill = starts[:-1].copy()
    order = np.empty(codes.shape[0], dtype=np.int64)
    for pos in range(codes.shape[0]):
        c = codes[pos]
        order[fill[c]] = pos
        fill[c] += 1
    return order, starts


@twins()
def _class_heads(key, order, starts, depth, out_offsets, out_pos, out_rank):
    """For each class, its ``depth`` best members by (key, position), with their rank 0..r-1.

    ``order[starts[c]:starts[c+1]]`` are the class's positions in increasing order, so a stable
    sort by key breaks ties by position, as the global order does.
    """
    n_classes = starts.shape[0] - 1
    for c in prange(n_classes):
        seg = order[starts[c] : starts[c + 1]]
        m = seg.shape[0]
        r = min(m, depth)
        if r == 0:
            continue
        k = key[seg]
        if r < m:
            kth = np.partition(k.copy(), r - 1)[r - 1]
            pick = np.empty(r, dtype=np.int64)
            cnt = 0
            for q in range(m):
                if k[q] < kth:
                    pick[cnt] = q
                    cnt += 1
            for q in range(m):
                if cnt == r:
                    break
                if k[q] == kth:
                    pick[cnt] = q
                    cnt += 1
            pick.sort()  # back to position order so the stable sort below keeps the tie rule
            seg = seg[pick]
            k = k[pick]
        srt = np.argsort(k, kind="mergesort")
        o = out_offsets[c]
        for q in range(r):
            out_pos[o + q] = seg[srt[q]]
            out_rank[o + q] = q


def _pass_depth(counts: np.ndarray, b: int) -> int:
    """Fewest passes R of Algorithm 1 that fill the budget: min R with sum(min(counts, R)) >= b."""
    lo, hi = 1, int(counts.max())
    while lo < hi:
        mid = (lo + hi) // 2
        if int(np.minimum(counts, mid).sum()) >= b:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dispatch("diversify")
def diversify(scores, pseudo_class, b, *, exclude=None, largest=True):
    """Diversified selection: Algorithm 1 of the paper (alamp-div, and rand-div / marg-div).

    Walk the candidates in :func:`select_top` order in passes; each pass takes the first
    not-yet-taken sample of every pseudo-class, until ``b`` samples are taken. Pass ``r``
    therefore takes exactly the candidates whose rank within their pseudo-class is ``r``, in
    global order, which is how it is computed here: bucket by class, keep each class's best
    ``R`` members (``R`` = number of passes needed), order by (rank, score, index). Cost
    O(n + b log b) for bounded classes, O(n log n) at worst; no pass over the pool per round.

    Parameters
    ----------
    scores : (n_samples,) float or integer array, finite
    pseudo_class : (n_samples,) integer array
        The class each sample is attributed to (alamp-div: the prediction of the previous
        iteration; rand-div / marg-div: the current prediction). Any integers, also negative.
    b : int
        Batch size, ``0 <= b <= n_samples - len(exclude)``.
    exclude : int indices or boolean mask, optional
        Rows that must not be picked.
    largest : bool, default True
        Walk the scores from the largest (alamp) or from the smallest (margin).

    Returns
    -------
    (b,) int64 indices in Algorithm 1's order: pass 1 first (one per class, in score order),
    then pass 2, ...

    Examples
    --------
    >>> import numpy as np, alamp_fast as af
    >>> scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    >>> af.diversify(scores, np.array([0, 0, 1, 1, 0]), 4).tolist()
    [0, 2, 1, 3]
    """
    key, ex = _keys(scores, exclude, largest)
    n = key.shape[0]
    pc = as_labels(pseudo_class, "pseudo_class", n)
    b = check_budget(b, n - ex.size, "candidates left after exclude")
    if b == 0:
        return np.empty(0, dtype=np.int64)
    key, cand = _candidates(key, ex)
    if cand is not None:
        pc = pc[cand]
    lo, hi = int(pc.min()), int(pc.max())
    if lo >= 0 and hi < 4 * pc.shape[0] + 1024:
        codes, n_classes = pc, hi + 1  # dense labels: use them as bucket numbers directly
    else:
        uniq, codes = np.unique(pc, return_inverse=True)
        n_classes = uniq.shape[0]
    order, starts = _bucket(codes, n_classes)
    counts = np.diff(starts)
    depth = _pass_depth(counts, b)
    taken = np.minimum(counts, depth)
    offsets = np.concatenate([[0], np.cumsum(taken)[:-1]]).astype(np.int64)
    total = int(taken.sum())
    pos = np.empty(total, dtype=np.int64)
    rank = np.empty(total, dtype=np.int64)
    _class_heads(key, order, starts, depth, offsets, pos, rank, work=key.size)
    sel = pos[np.lexsort((pos, key[pos], rank))[:b]]
    return sel if cand is None else cand[sel]
