"""Slow, literal transcriptions of the paper's equations and Algorithm 1.

Each function follows the definition as written, one row / one sample / one pass at a time,
with no partial selection, no bucketing and no running minimum, so it can serve as the oracle
the fast kernels in :mod:`alamp_fast` are compared with. They do no input checking.

dtype rules mirror the package contract: float16 is widened (exactly) to float32 before any
arithmetic, results are float32 for float16/32 input and float64 for float64 input.
"""

from __future__ import annotations

import numpy as np


def work_dtype(*arrays) -> np.dtype:
    """float64 if any input is float64, else float32 (float16 widens exactly to float32)."""
    if any(np.asarray(a).dtype == np.float64 for a in arrays):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _row_order(row: np.ndarray) -> np.ndarray:
    """Class indices of one row sorted by (value descending, class index ascending)."""
    return np.lexsort((np.arange(row.shape[0]), -row))


def top2_margin(probs):
    """``P(c1|x) - P(c2|x)`` and the argmax per row, by sorting each row.

    ``c1`` is the first class of the sorted row (largest value, lowest index among equal
    values), ``c2`` the second; the subtraction is done in the output dtype.
    """
    P = np.asarray(probs)
    dt = work_dtype(P)
    P = P.astype(dt)
    n = P.shape[0]
    margin = np.empty(n, dtype=dt)
    top = np.empty(n, dtype=np.int64)
    for i in range(n):
        row = P[i]
        order = _row_order(row)
        top[i] = order[0]
        margin[i] = row[order[0]] - row[order[1]]
    return margin, top


def margin(probs):
    return top2_margin(probs)[0]


def entropy(probs):
    """``-sum_c p_c log p_c`` per row with ``0 log 0 = 0``, in float64, cast to the output dtype."""
    P = np.asarray(probs)
    dt = work_dtype(P)
    out = np.empty(P.shape[0], dtype=np.float64)
    for i in range(P.shape[0]):
        s = 0.0
        for p in P[i].astype(np.float64).tolist():
            if p > 0.0:
                s -= p * np.log(p)
        out[i] = s
    return out.astype(dt)


def least_confidence(probs):
    """``1 - max_c P(c|x)`` per row, in the output dtype."""
    P = np.asarray(probs)
    dt = work_dtype(P)
    P = P.astype(dt)
    out = np.empty(P.shape[0], dtype=dt)
    for i in range(P.shape[0]):
        row = P[i]
        out[i] = dt.type(1) - row[_row_order(row)[0]]
    return out


def alamp_score(prev_margin, margin):
    """``(m_{k-1} - m_k) / (m_{k-1} + m_k)`` per sample, ``0`` where both margins are 0 (0/0)."""
    dt = work_dtype(prev_margin, margin)
    prev = np.asarray(prev_margin).astype(dt)
    cur = np.asarray(margin).astype(dt)
    out = np.empty(prev.shape[0], dtype=dt)
    with np.errstate(all="ignore"):
        for i in range(prev.shape[0]):
            p, c = prev[i], cur[i]
            out[i] = 0.0 if p + c == 0 else (p - c) / (p + c)
    return out


def ranked(scores, exclude=None, largest=True) -> list[int]:
    """All candidates (rows not in ``exclude``) by a full sort on (score desc, index).

    ``tolist()`` gives exact Python ints / floats, so integer scores above 2**53 keep their
    order; ``-0.0`` and ``0.0`` compare equal, as they do for any sort.
    """
    values = np.asarray(scores).tolist()
    ex = _as_set(exclude, len(values))
    cands = [i for i in range(len(values)) if i not in ex]
    if largest:
        return sorted(cands, key=lambda i: (-values[i], i))
    return sorted(cands, key=lambda i: (values[i], i))


def select_top(scores, b, exclude=None, largest=True) -> np.ndarray:
    return np.asarray(ranked(scores, exclude, largest)[:b], dtype=np.int64)


def diversify(scores, pseudo_class, b, exclude=None, largest=True) -> np.ndarray:
    """Algorithm 1 exactly as printed.

    Walk the sorted list in passes; in each pass take the first not-yet-taken sample of every
    pseudo-class not yet seen in this pass; stop as soon as ``b`` samples are taken.
    """
    order = ranked(scores, exclude, largest)
    pc = np.asarray(pseudo_class).tolist()
    selected: list[int] = []
    taken: set[int] = set()
    while len(selected) < b:
        seen_this_pass: set[int] = set()
        for i in order:
            if i in taken or pc[i] in seen_this_pass:
                continue
            selected.append(i)
            taken.add(i)
            seen_this_pass.add(pc[i])
            if len(selected) == b:
                break
    return np.asarray(selected, dtype=np.int64)


def alamp_query(memory: dict, probs, ids, budget, *, exclude=None, diverse=False):
    """One alamp (or alamp-div) query of a pool of sample ``ids``, with a dict memory.

    What every alamp adapter of :mod:`alamp_fast.integrations` must pick. ``memory`` maps a
    sample id to its ``(margin, top class)`` at the previous query and is replaced by this
    query's. Rows with no previous entry count as previously certain (margin 1.0) with their
    current top class; when no row has one (the first query) the utility is ``-margin``
    (margin sampling). ``exclude`` holds row positions that cannot be picked.
    """
    margin, top = top2_margin(probs)
    prev = [memory.get(int(i)) for i in ids]
    if all(p is None for p in prev):
        utility, pseudo = -margin, top
    else:
        filled = np.array([1.0 if p is None else p[0] for p in prev], dtype=margin.dtype)
        utility = alamp_score(filled, margin)
        pseudo = np.array([t if p is None else p[1] for p, t in zip(prev, top, strict=True)])
    if diverse:
        picks = diversify(utility, pseudo, budget, exclude=exclude)
    else:
        picks = select_top(utility, budget, exclude=exclude)
    memory.clear()
    memory.update({int(i): (float(m), int(t)) for i, m, t in zip(ids, margin, top, strict=True)})
    return picks


def kcenter_greedy(features, labeled, b) -> np.ndarray:
    """k-center greedy with every distance recomputed from scratch at every step, in float64.

    Step t: for every candidate, the squared Euclidean distance to its nearest point of
    ``labeled + chosen`` (``+inf`` when that set is empty); take the largest, lowest index among
    equal values. Squared distances order candidates exactly as distances do, and are exact for
    integer-valued features (so ties there are real ties).
    """
    X = np.asarray(features).astype(np.float64)
    n = X.shape[0]
    centers = sorted(_as_set(labeled, n))
    chosen: list[int] = []
    for _ in range(b):
        nearest = _nearest_sq_dist(X, centers)
        nearest[centers] = -np.inf  # labeled and chosen rows are not candidates
        pick = int(np.argmax(nearest))  # first maximum: the lowest index
        chosen.append(pick)
        centers.append(pick)
    return np.asarray(chosen, dtype=np.int64)


def badge(probs, embeddings, b, seed=None, exclude=()):
    """BADGE as written: g_i = (onehot(argmax p_i) - p_i) (x) h_i as rows of an (n, C*d)
    matrix, first center the largest ||g_i||, then per pick: recompute every squared distance
    to the newest center, keep the minimum, draw u and take the first row whose cumulative
    weight exceeds u * total (chosen and excluded rows weigh 0; total 0: lowest free row)."""
    P = np.asarray(probs).astype(np.float64)
    H = np.asarray(embeddings).astype(np.float64)
    n, C = P.shape
    G = ((np.eye(C)[P.argmax(axis=1)] - P)[:, :, None] * H[:, None, :]).reshape(n, -1)
    taken = np.zeros(n, dtype=bool)
    taken[np.asarray(exclude, dtype=np.int64)] = True
    rng = np.random.default_rng(seed)
    if b == 0:
        return np.empty(0, dtype=np.int64)
    norms = np.where(taken, -1.0, np.sum(G * G, axis=1))
    chosen = [int(np.argmax(norms))]
    taken[chosen[0]] = True
    d2 = np.full(n, np.inf)
    while len(chosen) < b:
        d2 = np.minimum(d2, np.sum((G - G[chosen[-1]]) ** 2, axis=1))
        d2[taken] = 0.0
        cum = np.cumsum(d2)
        u = rng.random()
        if cum[-1] > 0:
            pick = int(np.searchsorted(cum, u * cum[-1], side="right"))
        else:
            pick = int(np.flatnonzero(~taken)[0])
        chosen.append(pick)
        taken[pick] = True
    return np.asarray(chosen, dtype=np.int64)


def covering_radius(features, centers) -> float:
    """max over all rows of the Euclidean distance to the nearest of ``centers`` (float64)."""
    X = np.asarray(features).astype(np.float64)
    if X.shape[0] == 0:
        return 0.0
    return float(np.sqrt(_nearest_sq_dist(X, np.asarray(centers).tolist()).max()))


def _nearest_sq_dist(X: np.ndarray, centers: list[int]) -> np.ndarray:
    """min over ``centers`` of ``sum_j (x_j - c_j)^2`` for every row, by direct differences."""
    nearest = np.full(X.shape[0], np.inf)
    # a few centers at a time keeps the (n, k, d) difference array near a million elements
    k = max(1, (1 << 20) // max(1, X.size))
    for start in range(0, len(centers), k):
        C = X[centers[start : start + k]]
        diff = X[:, None, :] - C[None, :, :]
        nearest = np.minimum(nearest, (diff * diff).sum(axis=2).min(axis=1))
    return nearest


def _as_set(idx, n: int) -> set[int]:
    if idx is None:
        return set()
    arr = np.asarray(idx)
    if arr.dtype == bool:
        return set(np.flatnonzero(arr).tolist())
    return set(arr.astype(np.int64).tolist())
