"""C by cross-validation for any classifier: ours batched, any other cloned per fold.

It sits above both :mod:`alamp_fast.svm._cv` (folds, grids) and
:mod:`alamp_fast.svm._estimators` (the batched SVMs), so neither imports the other back.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from alamp_fast.svm._cv import DEFAULT_CS, fallback_c, make_cs, pick_c, stratified_folds
from alamp_fast.svm._estimators import SVC, SVCCV


@dataclass
class CVResult:
    """What :func:`cross_validate_C` found.

    Attributes
    ----------
    C_ : float
        The chosen ``C``: best mean held-out accuracy over the folds, ties to the smaller C.
    Cs_ : ndarray of shape (n_Cs,)
    cv_scores_ : ndarray of shape (n_Cs, n_folds)
        Held-out accuracy of every ``C`` on every fold (empty when no folds could be made).
    estimator_ : estimator
        Fitted on all the labeled data with ``C_`` (for :class:`alamp_fast.svm.SVC`, the
        fitted :class:`alamp_fast.svm.SVCCV`, which is that model).
    """

    C_: float
    Cs_: np.ndarray
    cv_scores_: np.ndarray
    estimator_: object



def cross_validate_C(
    estimator,
    X,
    y,
    *,
    Cs=DEFAULT_CS,
    cv: int = 5,
    random_state=0,
    sample_weight=None,
    param: str = "C",
) -> CVResult:
    """Choose ``C`` for any scikit-learn-compatible classifier by cross-validation.

    The folds are :func:`stratified_folds` (single-sample classes always in training) and the
    score is the held-out accuracy averaged over the folds; ties go to the smaller ``C``.

    An :class:`alamp_fast.svm.SVC` is handed to :class:`alamp_fast.svm.SVCCV` with its
    settings, which solves every class, ``C`` and fold as one batched problem. Any other
    estimator (``sklearn.svm.SVC``, ``thundersvm.SVC``, ``cuml.svm.SVC``...) is cloned
    and fitted once per ``C`` and fold, then refitted on all the data with the chosen ``C``;
    its own ``predict_proba`` (e.g. ``probability=True``) is what the acquisition then uses.

    Parameters
    ----------
    estimator : classifier with ``fit``, ``predict`` and a ``C`` parameter
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,)
    Cs : int or sequence of float
        The grid; an int ``k`` means ``np.logspace(-2, 2, k)``.
    cv : int
        Number of folds (fewer when fewer samples can be held out).
    random_state : int, RandomState or None
        Shuffling of the folds.
    sample_weight : array of shape (n_samples,), optional
        Passed to every ``fit``.
    param : str
        Name of the regularisation parameter of ``estimator``.

    Returns
    -------
    CVResult

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.svm import LinearSVC
    >>> X, y = load_iris(return_X_y=True)
    >>> res = cross_validate_C(LinearSVC(), X, y, Cs=[0.01, 1.0])
    >>> res.C_, res.cv_scores_.shape
    (1.0, (2, 5))
    """
    grid = make_cs(Cs)
    if isinstance(estimator, SVC):
        params = {k: v for k, v in estimator.get_params().items() if k != "C"}
        model = SVCCV(Cs=grid, **{**params, "cv": cv, "random_state": random_state})
        model.fit(X, y, sample_weight=sample_weight)
        return CVResult(model.C_, model.Cs_, model.cv_scores_, model)
    if param not in estimator.get_params():
        raise ValueError(f"{type(estimator).__name__} has no parameter {param!r} to tune")
    X = np.asarray(X) if not hasattr(X, "shape") else X
    y = np.asarray(y)
    folds = stratified_folds(y, cv, random_state)
    n_splits = int(folds.max()) + 1
    fit_kw = {}
    scores = np.zeros((grid.size, n_splits))
    for f in range(n_splits):
        train, test = folds != f, folds == f
        if sample_weight is not None:
            fit_kw = {"sample_weight": np.asarray(sample_weight)[train]}
        for j, C in enumerate(grid):
            model = clone(estimator).set_params(**{param: C}).fit(X[train], y[train], **fit_kw)
            scores[j, f] = np.mean(model.predict(X[test]) == y[test])
    if n_splits >= 2:
        best = pick_c(grid, scores)
    else:
        best = fallback_c(grid)
        warnings.warn(
            f"too few labeled samples for {cv}-fold cross-validation (every class has one "
            f"sample); using C={grid[best]:g} from the middle of the grid",
            stacklevel=2,
        )
    fit_kw = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)}
    model = clone(estimator).set_params(**{param: grid[best]}).fit(X, y, **fit_kw)
    return CVResult(float(grid[best]), grid, scores, model)
