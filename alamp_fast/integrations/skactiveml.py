"""scikit-activeml query strategies backed by alamp_fast.

The classes follow scikit-activeml's pool conventions: ``X`` holds every sample, ``y`` their
labels with ``missing_label`` (default ``np.nan``) for the unlabeled ones, and
``query(X, y, ..., candidates=None, batch_size=1, return_utilities=False)`` returns indices
into ``X`` (or into ``candidates`` when those are samples), best first, and on request the
utilities, shape ``(batch_size, n_samples)``, where row ``i`` holds the utilities that pick
``i`` was chosen from (earlier picks and labeled samples are NaN):

=====================================================  ===================================
scikit-activeml                                        alamp_fast
=====================================================  ===================================
``UncertaintySampling(method="margin_sampling")``      :class:`MarginSampling`
``CoreSet()``                                          :class:`CoreSet`
(none)                                                 :class:`Alamp` (``diverse=True``:
                                                       alamp-div)
=====================================================  ===================================

Rows and the alamp state
------------------------
In scikit-activeml ``X`` keeps every sample in place and labels arrive in ``y``, so
:class:`Alamp` names a candidate by its row in ``X``. ``X`` may grow (appended rows have no
previous margin); if it has fewer rows than at the previous query the rows cannot be matched
and ``query`` raises ``ValueError`` (call :meth:`Alamp.reset`). When ``candidates`` are
samples rather than indices, they are named by their content
(:func:`~alamp_fast.integrations._state.row_fingerprints`).

Ties are broken by the lower index, where scikit-activeml breaks them at random.
"""

from __future__ import annotations

import numpy as np
from skactiveml.base import SingleAnnotatorPoolQueryStrategy
from skactiveml.utils import MISSING_LABEL, labeled_indices
from sklearn.base import clone
from sklearn.metrics import pairwise_distances_argmin_min

import alamp_fast as af
from alamp_fast.integrations._state import AlampMemory, row_fingerprints

__all__ = ["Alamp", "CoreSet", "MarginSampling"]


def _batch_utilities(utility, picks, n_rows, mapping):
    """scikit-activeml's utilities: (batch, n_rows), row i with picks[:i] and non-candidates NaN."""
    base = np.full(n_rows, np.nan)
    if mapping is None:
        base[:] = utility
    else:
        base[mapping] = utility
    out = np.repeat(base[None, :], picks.shape[0], axis=0)
    for i in range(1, picks.shape[0]):
        out[i:, picks[i - 1]] = np.nan
    return out


class _ProbaQueryStrategy(SingleAnnotatorPoolQueryStrategy):
    """Shared ``query`` of the strategies that rank the candidates by ``clf.predict_proba``."""

    def query(
        self,
        X,
        y,
        clf,
        fit_clf=True,
        sample_weight=None,
        candidates=None,
        batch_size=1,
        return_utilities=False,
    ):
        """Pick ``batch_size`` candidates to label.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Every sample, labeled and unlabeled.
        y : array-like of shape (n_samples,)
            Labels, ``self.missing_label`` for the unlabeled samples.
        clf : classifier with ``predict_proba`` (and ``fit`` when ``fit_clf``)
        fit_clf : bool
            Fit a clone of ``clf`` on ``(X, y)`` first, as scikit-activeml's strategies do.
        sample_weight : array-like of shape (n_samples,), optional
            Passed to ``fit``.
        candidates : None, indices (n_candidates,) or samples (n_candidates, n_features)
            None: the unlabeled samples of ``X``.
        batch_size : int
        return_utilities : bool

        Returns
        -------
        query_indices : (batch_size,) int64
            Into ``X``, or into ``candidates`` when they are samples; best first.
        utilities : (batch_size, n_samples or n_candidates) float64
            Only when ``return_utilities``: higher is better, NaN for labeled samples and
            earlier picks.
        """
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True
        )
        X_cand, mapping = self._transform_candidates(candidates, X, y)
        if not hasattr(clf, "predict_proba"):
            raise TypeError(f"clf must have predict_proba, got {type(clf).__name__}")
        if fit_clf:
            fit_args = (X, y) if sample_weight is None else (X, y, sample_weight)
            clf = clone(clf).fit(*fit_args)
        probs = np.asarray(clf.predict_proba(X_cand))
        picks, utility = self._select(probs, batch_size, X, X_cand, mapping)
        query_indices = picks if mapping is None else np.asarray(mapping)[picks]
        if not return_utilities:
            return query_indices
        n_rows = X_cand.shape[0] if mapping is None else X.shape[0]
        return query_indices, _batch_utilities(utility, query_indices, n_rows, mapping)


class MarginSampling(_ProbaQueryStrategy):
    """Smallest top-2 margin first; ``UncertaintySampling(method="margin_sampling")``.

    Utilities are scikit-activeml's ``1 - margin``; the ranking uses the margin itself.

    Parameters
    ----------
    missing_label : scalar, str, np.nan or None
        The value marking an unlabeled sample in ``y``.
    random_state : int, RandomState or None
        Kept for the scikit-activeml interface; the selection is deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skactiveml.classifier import SklearnClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 2)); y = np.full(40, np.nan); y[:6] = [0, 1, 2] * 2
    >>> clf = SklearnClassifier(LogisticRegression(), classes=[0, 1, 2])
    >>> idx = MarginSampling().query(X, y, clf, batch_size=3)
    >>> len(idx), bool((idx >= 6).all())
    (3, True)
    """

    def __init__(self, missing_label=MISSING_LABEL, random_state=None):
        super().__init__(missing_label=missing_label, random_state=random_state)

    def _select(self, probs, batch_size, X, X_cand, mapping):
        margin = af.margin(probs)
        picks = af.select_top(margin, batch_size, largest=False)
        return picks, 1.0 - margin.astype(np.float64)


class Alamp(_ProbaQueryStrategy):
    """alamp (or alamp-div) over the candidates, remembering margins between queries.

    Utilities are the alamp scores (``-margin`` at the first query, see ``docs/integrations.md``).
    Use one instance for one active-learning run; its state is ``memory_``.

    Parameters
    ----------
    diverse : bool
        alamp-div: Algorithm 1 of the paper over the previous prediction.
    missing_label : scalar, str, np.nan or None
    random_state : int, RandomState or None
        Kept for the scikit-activeml interface; the selection is deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> class Fixed:                      # a classifier whose predictions we choose
    ...     probs = None
    ...     def predict_proba(self, X):
    ...         return self.probs[X[:, 0].astype(int)]
    >>> X = np.arange(4.0)[:, None]; y = np.array([0, np.nan, np.nan, np.nan])
    >>> clf, qs = Fixed(), Alamp()
    >>> clf.probs = np.array([[1, 0], [0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    >>> qs.query(X, y, clf, fit_clf=False).tolist()     # first query: smallest margin
    [2]
    >>> y[2] = 1
    >>> clf.probs = np.array([[1, 0], [0.6, 0.4], [0.5, 0.5], [0.75, 0.25]])
    >>> qs.query(X, y, clf, fit_clf=False).tolist()     # row 1: margin 0.8 -> 0.2
    [1]
    """

    def __init__(self, diverse=False, missing_label=MISSING_LABEL, random_state=None):
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.diverse = diverse

    def _select(self, probs, batch_size, X, X_cand, mapping):
        if not hasattr(self, "memory_"):
            self.memory_ = AlampMemory()
        n_rows = getattr(self, "n_rows_", 0)
        if mapping is None:
            keys = row_fingerprints(X_cand)
        else:
            if X.shape[0] < n_rows:
                raise ValueError(
                    f"X has {X.shape[0]} rows but had {n_rows} at the previous query: alamp "
                    "names candidates by their row in X, so X may only grow; call reset()"
                )
            keys = np.asarray(mapping, dtype=np.int64)
        picks, utility = self.memory_.query(probs, batch_size, keys, diverse=bool(self.diverse))
        self.n_rows_ = max(n_rows, X.shape[0])
        return picks, utility.astype(np.float64)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The alamp memory (see :meth:`AlampMemory.state_dict`) and ``n_rows``."""
        memory = getattr(self, "memory_", None) or AlampMemory()
        return {**memory.state_dict(), "n_rows": np.asarray(getattr(self, "n_rows_", 0))}

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict`."""
        if "n_rows" not in state:
            raise ValueError("alamp state is missing key 'n_rows'")
        memory = AlampMemory()
        memory.load_state_dict(state)
        self.memory_ = memory
        self.n_rows_ = int(np.asarray(state["n_rows"]))

    def reset(self) -> None:
        """Forget previous queries (the next one ranks by margin)."""
        for fitted in ("memory_", "n_rows_"):
            if hasattr(self, fitted):
                delattr(self, fitted)


class CoreSet(SingleAnnotatorPoolQueryStrategy):
    """k-center greedy core-set; a drop-in for scikit-activeml's ``CoreSet()`` (Euclidean).

    The labeled samples of ``(X, y)`` are the centres. Utilities (on request) are each
    candidate's Euclidean distance to its nearest centre-or-earlier-pick, as scikit-activeml's.

    Parameters
    ----------
    missing_label : scalar, str, np.nan or None
    random_state : int, RandomState or None
        Kept for the scikit-activeml interface; the selection is deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [5.0], [10.0]]); y = np.array([0, np.nan, np.nan, np.nan])
    >>> CoreSet().query(X, y, batch_size=2).tolist()
    [3, 2]
    """

    def __init__(self, missing_label=MISSING_LABEL, random_state=None):
        super().__init__(missing_label=missing_label, random_state=random_state)

    def query(self, X, y, candidates=None, batch_size=1, return_utilities=False):
        """Pick ``batch_size`` candidates by k-center greedy.

        Parameters and returns as :meth:`MarginSampling.query`, without a classifier.
        """
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True
        )
        X_cand, mapping = self._transform_candidates(candidates, X, y)
        labeled = labeled_indices(y, missing_label=self.missing_label_)
        if candidates is None:
            # the candidates are exactly the unlabeled rows: run on X in place, no copy
            query_indices = af.kcenter_greedy(X, labeled, batch_size)
            if not return_utilities:
                return query_indices
            cols = np.setdiff1d(np.arange(X.shape[0]), labeled)
            cand_X, n_cols, pick_pos = X[cols], X.shape[0], np.searchsorted(cols, query_indices)
        else:
            features = np.concatenate([X_cand, X[labeled]])
            centres = np.arange(X_cand.shape[0], features.shape[0])
            pick_pos = af.kcenter_greedy(features, centres, batch_size)
            query_indices = pick_pos if mapping is None else np.asarray(mapping)[pick_pos]
            if not return_utilities:
                return query_indices
            cand_X = X_cand
            cols = np.arange(X_cand.shape[0]) if mapping is None else np.asarray(mapping)
            n_cols = X_cand.shape[0] if mapping is None else X.shape[0]
        return query_indices, _kcenter_utilities(cand_X, X[labeled], pick_pos, cols, n_cols)


def _kcenter_utilities(cand_X, centres_X, pick_pos, cols, n_cols):
    """Per pick, every candidate's distance to its nearest centre-or-earlier-pick (columns
    ``cols`` of ``n_cols``; NaN elsewhere and at earlier picks). Inf when there are no centres."""
    if centres_X.shape[0]:
        _, dist = pairwise_distances_argmin_min(cand_X, centres_X)
    else:
        dist = np.full(cand_X.shape[0], np.inf)
    out = np.full((pick_pos.shape[0], n_cols), np.nan)
    for i, pos in enumerate(pick_pos):
        out[i, cols] = dist
        out[i, cols[pick_pos[:i]]] = np.nan
        dist = np.minimum(dist, np.linalg.norm(cand_X - cand_X[pos], axis=1))
    return out
