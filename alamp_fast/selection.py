"""Batch selection from per-sample scores: top-b and the paper's diversified Algorithm 1.

Order rule shared by both functions (and by the GPU and distributed versions): candidates are
ranked by score (descending when ``largest=True``), ties broken by the lower row index. This is
the order ``np.lexsort((np.arange(n), -scores))`` gives, and it is total, so selections are
exactly reproducible across backends.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alamp_fast._dispatch import dispatch
from alamp_fast._parallel import numpy_route
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
def _worse(key, a, b):
    """Candidate a ranks after candidate b: larger key, or equal key and larger position."""
    return key[a] > key[b] or (key[a] == key[b] and a > b)


@njit(cache=True)
def _sift_down(key, heap, o, i, size, item):
    """Place ``item`` at slot ``i`` of the max-heap ``heap[o:o+size]`` (max = worst)."""
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and _worse(key, heap[o + left + 1], heap[o + left]):
            child = left + 1
        if _worse(key, heap[o + child], item):
            heap[o + i] = heap[o + child]
            i = child
        else:
            break
    heap[o + i] = item


# Plain serial loops over a few flat arrays: they compile in well under a second (a
# np.partition / argsort-based version took 5-25 s of numba compilation on the first
# `alamp-fast simulate`), and one pass is as fast as a parallel region at the usual sizes.
@njit(cache=True)
def _class_heads(key, codes, caps, offsets, out_pos, out_rank):
    """For each class c, its ``caps[c]`` best positions by (key, position), best first, in
    ``out_pos[offsets[c]:offsets[c] + caps[c]]`` with their rank 0..caps[c]-1 in ``out_rank``.

    One pass in position order keeps a bounded max-heap (worst on top) per class, then each
    heap is sorted in place (heapsort): O(n log depth) time, no extra memory.
    """
    fill = np.zeros(caps.shape[0], dtype=np.int64)
    for p in range(key.shape[0]):
        c = codes[p]
        cap = caps[c]
        if cap == 0:
            continue
        o = offsets[c]
        f = fill[c]
        if f < cap:
            i = f  # sift up
            while i > 0:
                parent = (i - 1) >> 1
                q = out_pos[o + parent]
                if _worse(key, p, q):
                    out_pos[o + i] = q
                    i = parent
                else:
                    break
            out_pos[o + i] = p
            fill[c] = f + 1
        elif _worse(key, out_pos[o], p):  # better than the worst kept: replace it
            _sift_down(key, out_pos, o, 0, cap, p)
    for c in range(caps.shape[0]):
        cap = caps[c]
        o = offsets[c]
        for end in range(cap - 1, 0, -1):
            top = out_pos[o]
            _sift_down(key, out_pos, o, 0, end, out_pos[o + end])
            out_pos[o + end] = top
        for q in range(cap):
            out_rank[o + q] = q


def _class_heads_numpy(key, codes, depth):
    """The positions :func:`_class_heads` keeps (each class's best ``depth`` by (key,
    position)) and their rank within the class, by a sort of all candidates."""
    n = key.shape[0]
    order = np.lexsort((np.arange(n), key))  # best first, ties by position
    by_class = order[np.argsort(codes[order], kind="stable")]  # class by class, best first
    c = codes[by_class]
    first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])  # where each class's run starts
    rank = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    keep = rank < depth
    return by_class[keep], rank[keep]


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
    global order, which is how it is computed here: one pass keeps each class's best ``R``
    members in a bounded heap (``R`` = number of passes needed), then order by (rank, score,
    index). Cost O(n log R + b log b); no pass over the pool per round.

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
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    counts = np.bincount(codes, minlength=n_classes)
    depth = _pass_depth(counts, b)
    if numpy_route(key.shape[0]):
        # few candidates: a sort costs well under a millisecond and compiles nothing (the
        # heap's first build costs about 0.7 s of CPU)
        pos, rank = _class_heads_numpy(key, codes, depth)
    else:
        taken = np.minimum(counts, depth).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(taken)[:-1]]).astype(np.int64)
        total = int(taken.sum())
        pos = np.empty(total, dtype=np.int64)
        rank = np.empty(total, dtype=np.int64)
        _class_heads(np.ascontiguousarray(key), codes, taken, offsets, pos, rank)
    sel = pos[np.lexsort((pos, key[pos], rank))[:b]]
    return sel if cand is None else cand[sel]
