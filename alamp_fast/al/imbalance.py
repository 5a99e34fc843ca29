"""Class imbalance: the ratio the paper reports, and pools subsampled to a target ratio.

The imbalance ratio of per-class counts is ``ir = std / mean`` (population standard
deviation, ``ddof=0``): 0 for a balanced set; the paper's imbalanced CIFAR-100 and Food-101
pools have ir of about 0.74-0.79.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMBALANCED_IR", "imbalance_ratio", "induce_imbalance"]

#: A pool whose class counts have at least this ir counts as imbalanced: the simulations turn
#: on the cost-sensitive classifier (SVM scheme) or thresholding (FT scheme) by default.
IMBALANCED_IR = 0.1

#: How close to the target ir :func:`induce_imbalance` must land.
IR_TOLERANCE = 0.01


def imbalance_ratio(counts) -> float:
    """``std / mean`` of per-class counts (population std).

    Parameters
    ----------
    counts : array-like of shape (n_classes,)
        Non-negative counts, one per class (zeros included: a class with no labeled sample
        counts as 0).

    Returns
    -------
    float

    Examples
    --------
    >>> imbalance_ratio([10, 10, 10])
    0.0
    >>> round(imbalance_ratio([1, 3]), 6)
    0.5
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"counts must be finite and non-negative, got {counts.tolist()[:10]}")
    mean = counts.mean()
    if mean == 0:
        raise ValueError("imbalance ratio is undefined when every count is zero")
    return float(counts.std() / mean)


def _decay_counts(avail_sorted: np.ndarray, t: float, min_count: int) -> np.ndarray:
    # Exponential long-tail profile: class of rank k keeps n_max * exp(-t k / (C - 1)),
    # never more than it has nor fewer than min_count.
    k = np.arange(avail_sorted.size) / max(avail_sorted.size - 1, 1)
    profile = np.round(avail_sorted[0] * np.exp(-t * k))
    return np.minimum(avail_sorted, np.maximum(profile, min_count)).astype(np.int64)


def _cap_counts(avail_sorted: np.ndarray, cap: float) -> np.ndarray:
    return np.minimum(avail_sorted, int(round(cap))).astype(np.int64)


def induce_imbalance(y, target_ir: float, seed: int = 0, *, min_count: int = 1) -> np.ndarray:
    """Indices of a subset of ``y`` whose per-class counts have ``ir`` within 0.01 of a target.

    Classes are ranked by their available count (ties in a random order from ``seed``).
    Above the pool's own ir, class ``k`` of ``C`` keeps ``n_max * exp(-t k / (C-1))`` samples
    (an exponential long tail, at least ``min_count``), with ``t`` found by search; below it,
    every class is capped at a common count. Which samples of a class are kept is drawn
    uniformly with ``seed``. Every class present in ``y`` stays present.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels (any hashable values).
    target_ir : float
        Target ``std / mean`` of the kept per-class counts.
    seed : int
        Seed of the class ranking and the sample draws.
    min_count : int
        Fewest samples a class keeps in the long-tail profile.

    Returns
    -------
    ndarray of int64
        Sorted row indices into ``y``.

    Raises
    ------
    ValueError
        If the target cannot be reached within 0.01 (the message gives the reachable range).

    Examples
    --------
    >>> y = np.repeat(np.arange(10), 100)
    >>> keep = induce_imbalance(y, 0.75, seed=0)
    >>> abs(imbalance_ratio(np.bincount(y[keep])) - 0.75) <= 0.01
    True
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array, got shape {y.shape}")
    target_ir = float(target_ir)
    if not np.isfinite(target_ir) or target_ir < 0:
        raise ValueError(f"target_ir must be a finite number >= 0, got {target_ir}")
    if int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count}")
    _, codes = np.unique(y, return_inverse=True)
    avail = np.bincount(codes)
    n_classes = avail.size
    rng = np.random.default_rng(seed)
    # Rank classes by available count, descending; ties in a seeded random order.
    order = np.lexsort((rng.permutation(n_classes), -avail))
    avail_sorted = avail[order].astype(np.float64)

    ir_pool = imbalance_ratio(avail_sorted)
    if target_ir <= ir_pool:
        candidates = np.unique(np.round(np.linspace(avail_sorted[-1], avail_sorted[0], 4097)))
        profiles = [_cap_counts(avail_sorted, cap) for cap in candidates]
    else:
        t_max = np.log(avail_sorted[0] / min_count + 1.0) * n_classes + 1.0
        # The last t sends every class but the first to min_count: the largest ir reachable.
        ts = np.concatenate([np.linspace(0.0, t_max, 4097), [1e6]])
        profiles = [_decay_counts(avail_sorted, t, min_count) for t in ts]
    irs = np.array([imbalance_ratio(c) for c in profiles])
    best = int(np.argmin(np.abs(irs - target_ir)))
    if abs(irs[best] - target_ir) > IR_TOLERANCE:
        if target_ir <= ir_pool:
            reach = f"[0, {ir_pool:.3f}] (pool ir {ir_pool:.3f})"
        else:
            reach = f"[0, {irs[-1]:.3f}] with min_count={min_count}"
        raise ValueError(
            f"target_ir={target_ir} cannot be reached within {IR_TOLERANCE} from "
            f"{n_classes} classes with counts {int(avail.min())}..{int(avail.max())}: "
            f"closest {irs[best]:.3f}, reachable range about {reach}"
        )
    counts_sorted = profiles[best]
    counts = np.empty(n_classes, dtype=np.int64)
    counts[order] = counts_sorted
    kept = [
        rng.choice(np.flatnonzero(codes == c), size=counts[c], replace=False)
        for c in range(n_classes)
    ]
    return np.sort(np.concatenate(kept)).astype(np.int64)
