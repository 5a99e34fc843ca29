"""Choosing ``C`` on the labeled set: the grid, stratified folds, the pick rule."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from alamp_fast._validate import is_int

#: The default grid: ``Cs=5`` means ``np.logspace(-2, 2, 5)`` = 0.01, 0.1, 1, 10, 100.
DEFAULT_CS = 5


def make_cs(Cs) -> np.ndarray:
    """The grid of ``C`` values from an int (that many points of ``logspace(-2, 2)``) or a list.

    Examples
    --------
    >>> make_cs(5).tolist()
    [0.01, 0.1, 1.0, 10.0, 100.0]
    >>> make_cs([1, 10]).tolist()
    [1.0, 10.0]
    """
    if is_int(Cs):
        if Cs < 1:
            raise ValueError(f"Cs={Cs} must be a positive number of grid points or a list of C")
        return np.logspace(-2, 2, int(Cs))
    try:
        grid = np.asarray(Cs, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Cs must be an int or a sequence of floats, got {Cs!r}") from exc
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError(f"Cs must hold finite positive values, got {Cs!r}")
    return grid


def stratified_folds(y, n_folds: int = 5, random_state=0) -> np.ndarray:
    """Fold of every labeled sample, ``-1`` for samples that always stay in training.

    Stratified like scikit-learn's ``StratifiedKFold``: the samples of each class are
    shuffled (``random_state``) and dealt round-robin over the folds, one counter running on
    across the classes, so each fold holds out about ``1 / n_folds`` of every class. A class
    with a single labeled sample (common at low budgets) is never held out: it stays in every
    fold's training set, so no fold trains without it. Every other class keeps at least one
    training sample in every fold. Fewer than ``n_folds`` folds are made when fewer samples
    can be held out; when not even 2 can be made, all entries are ``-1``.

    Parameters
    ----------
    y : array of shape (n_samples,)
        Labels.
    n_folds : int, >= 2
    random_state : int, RandomState or None

    Returns
    -------
    folds : (n_samples,) int64
        Values in ``-1 .. n_splits - 1``.

    Examples
    --------
    >>> stratified_folds([0, 0, 0, 1, 1, 2], n_folds=3, random_state=0).tolist()
    [2, 1, 0, 0, 1, -1]
    """
    if not is_int(n_folds) or n_folds < 2:
        raise ValueError(f"n_folds={n_folds!r} must be an int >= 2")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    rng = check_random_state(random_state)
    _, y_enc, counts = np.unique(y, return_inverse=True, return_counts=True)
    folds = np.full(y.shape[0], -1, dtype=np.int64)
    n_splits = min(int(n_folds), int(counts[counts >= 2].sum()))
    if n_splits < 2:
        return folds
    position = 0
    for k in np.flatnonzero(counts >= 2):
        members = rng.permutation(np.flatnonzero(y_enc == k))
        folds[members] = (position + np.arange(members.size)) % n_splits
        position += members.size
    return folds


def pick_c(Cs: np.ndarray, scores: np.ndarray) -> int:
    """Index of the best mean score; ties go to the smallest C (the stronger regulariser)."""
    mean = scores.mean(axis=1)
    best = np.flatnonzero(mean == mean.max())
    return int(best[np.argmin(Cs[best])])


def fallback_c(Cs: np.ndarray) -> int:
    """Index of the grid's middle value (geometric), used when no folds can be made."""
    return int(np.argsort(Cs)[(Cs.size - 1) // 2])


def top2_margin_chunked(estimator, X, chunk_size: int = 65536):
    """``af.top2_margin`` of ``estimator.predict_proba(X)``, streamed over row chunks.

    Only one chunk's probabilities exist at a time, so a pool larger than memory can be an
    ``np.memmap``. Estimators of this package use their fused, device-side path
    (:meth:`alamp_fast.svm.SVC.predict_top2_margin`); any other classifier with
    ``predict_proba`` works too.

    Returns
    -------
    margin : (n_samples,) float
    top_class : (n_samples,) int64, column index into ``estimator.classes_``

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=1000).fit(X, y)
    >>> m, top = top2_margin_chunked(clf, X, chunk_size=40)
    >>> m.shape, int(top[0])
    ((150,), 0)
    """
    from alamp_fast.uncertainty import top2_margin

    if hasattr(estimator, "predict_top2_margin"):
        return estimator.predict_top2_margin(X, chunk_size=chunk_size)
    if not is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive int")
    n = X.shape[0]
    margins, tops = [], []
    for start in range(0, n, chunk_size):
        m, top = top2_margin(np.asarray(estimator.predict_proba(X[start : start + chunk_size])))
        margins.append(m)
        tops.append(top)
    if not margins:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    return np.concatenate(margins), np.concatenate(tops)
