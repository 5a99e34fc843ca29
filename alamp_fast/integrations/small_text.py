"""small-text query strategies backed by alamp_fast.

small-text calls ``strategy.query(clf, dataset, indices_unlabeled, indices_labeled, y, n)``
(``PoolBasedActiveLearner.query`` does) and expects ``n`` indices into ``dataset``. The classes
here subclass small-text's ``QueryStrategy``:

===============================================  ============================================
small-text                                       alamp_fast
===============================================  ============================================
``BreakingTies()`` (margin)                      :class:`MarginSampling`
``GreedyCoreset(distance_metric, normalize)``    :class:`CoreSet` (same parameters)
(none)                                           :class:`Alamp`, ``Alamp(diverse=True)``
===============================================  ============================================

Returned indices are best first (small-text's ``np.argpartition`` leaves them unordered); ties
go to the lower index.

Rows and the alamp state
------------------------
In small-text ``dataset`` keeps every sample in place and the labeled/unlabeled split is given
by index arrays, so :class:`Alamp` names a row by its index in ``dataset``. The dataset may
grow (appended rows have no previous margin); if it has fewer rows than at the previous query,
``query`` raises ``ValueError`` (call :meth:`Alamp.reset`). Do not wrap :class:`Alamp` in
``SubsamplingQueryStrategy``: it hands the inner strategy a different subset, renumbered from 0,
at every query, so indices stop naming the same samples (wrap :class:`MarginSampling` instead).
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import normalize as l2_normalize
from small_text.query_strategies import EmbeddingBasedQueryStrategy, QueryStrategy

import alamp_fast as af
from alamp_fast.integrations._state import AlampMemory

__all__ = ["Alamp", "CoreSet", "MarginSampling"]


def _dataset_probs(clf, dataset) -> np.ndarray:
    return np.asarray(clf.predict_proba(dataset))


class MarginSampling(QueryStrategy):
    """Smallest top-2 margin first; a drop-in for small-text's ``BreakingTies``.

    After a query, ``scores_`` holds the margin of every dataset row, as ``BreakingTies``.

    Examples
    --------
    >>> import numpy as np
    >>> class Fixed:
    ...     def predict_proba(self, dataset):
    ...         return np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.5, 0.5]])
    >>> MarginSampling().query(Fixed(), None, np.array([0, 1, 2]), np.array([3]), None, n=2)
    array([1, 2])
    """

    def __init__(self):
        self.scores_ = None

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n=10):
        """``n`` indices of ``dataset`` among ``indices_unlabeled``, smallest margin first."""
        self._validate_query_input(indices_unlabeled, n)
        margin = af.margin(_dataset_probs(clf, dataset))
        self.scores_ = margin
        unlabeled = np.asarray(indices_unlabeled)
        return unlabeled[af.select_top(margin[unlabeled], n, largest=False)]

    def __str__(self):
        return "MarginSampling(alamp_fast)"


class Alamp(QueryStrategy):
    """alamp (or alamp-div), remembering every dataset row's margin between queries.

    The first query ranks by margin (no previous margins yet). After a query, ``scores_``
    holds the alamp utility of every dataset row (higher = queried first).

    Parameters
    ----------
    diverse : bool
        alamp-div: Algorithm 1 of the paper over the previous prediction.

    Examples
    --------
    >>> import numpy as np
    >>> class Fixed:
    ...     probs = None
    ...     def predict_proba(self, dataset):
    ...         return self.probs
    >>> clf, qs = Fixed(), Alamp()
    >>> clf.probs = np.array([[1.0, 0.0], [0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    >>> qs.query(clf, None, np.array([1, 2, 3]), np.array([0]), None, n=1)
    array([2])
    >>> clf.probs = np.array([[1.0, 0.0], [0.6, 0.4], [0.5, 0.5], [0.75, 0.25]])
    >>> qs.query(clf, None, np.array([1, 3]), np.array([0, 2]), None, n=1)  # 0.8 -> 0.2
    array([1])
    """

    def __init__(self, diverse=False):
        self.diverse = bool(diverse)
        self.memory = AlampMemory()
        self.n_rows = 0
        self.scores_ = None

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n=10):
        """``n`` indices of ``dataset`` among ``indices_unlabeled``, best first."""
        self._validate_query_input(indices_unlabeled, n)
        probs = _dataset_probs(clf, dataset)
        n_rows = probs.shape[0]
        if n_rows < self.n_rows:
            raise ValueError(
                f"the dataset has {n_rows} rows but had {self.n_rows} at the previous query: "
                "alamp names rows by their dataset index, so the dataset may only grow "
                "(SubsamplingQueryStrategy is not supported around Alamp); call reset()"
            )
        not_candidate = np.ones(n_rows, dtype=bool)
        not_candidate[np.asarray(indices_unlabeled)] = False
        picks, self.scores_ = self.memory.query(
            probs, n, np.arange(n_rows), exclude=not_candidate, diverse=self.diverse
        )
        self.n_rows = n_rows
        return picks

    def state_dict(self) -> dict[str, np.ndarray]:
        """The alamp memory (see :meth:`AlampMemory.state_dict`) and ``n_rows``."""
        return {**self.memory.state_dict(), "n_rows": np.asarray(self.n_rows)}

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict`."""
        if "n_rows" not in state:
            raise ValueError("alamp state is missing key 'n_rows'")
        self.memory.load_state_dict(state)
        self.n_rows = int(np.asarray(state["n_rows"]))

    def reset(self) -> None:
        """Forget previous queries (the next one ranks by margin)."""
        self.memory.reset()
        self.n_rows = 0

    def __str__(self):
        return f"Alamp(alamp_fast, diverse={self.diverse})"


class CoreSet(EmbeddingBasedQueryStrategy):
    """k-center greedy core-set over embeddings; a drop-in for small-text's ``GreedyCoreset``.

    Embeddings come from ``clf.embed`` or the ``embeddings=`` query argument, exactly as for
    ``GreedyCoreset`` (small-text's ``EmbeddingBasedQueryStrategy.query`` does that part); the
    labeled rows are the centres. ``distance_metric="cosine"`` ranks by the Euclidean distance
    between L2-normalised embeddings, which orders pairs exactly as the cosine (angular)
    distance does, so both metrics give small-text's picks.

    Parameters
    ----------
    distance_metric : {"euclidean", "cosine"}
    normalize : bool
        L2-normalise the embeddings first (small-text's default).

    Examples
    --------
    >>> import numpy as np
    >>> emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.1]])
    >>> qs = CoreSet()
    >>> qs.sample(None, None, np.array([0, 1, 2]), np.array([3]), None, 2, emb).tolist()
    [0, 1]
    """

    def __init__(self, distance_metric="euclidean", normalize=True):
        if distance_metric not in ("euclidean", "cosine"):
            raise ValueError(f"distance_metric={distance_metric!r}; choose 'euclidean' or 'cosine'")
        self.distance_metric = distance_metric
        self.normalize = bool(normalize)

    def sample(
        self,
        clf,
        dataset,
        indices_unlabeled,
        indices_labeled,
        y,
        n,
        embeddings,
        embeddings_proba=None,
    ):
        """``n`` rows of ``embeddings`` among ``indices_unlabeled``, in the order chosen."""
        emb = np.asarray(embeddings)
        if self.normalize or self.distance_metric == "cosine":
            emb = l2_normalize(emb, axis=1)
        unlabeled = np.asarray(indices_unlabeled)
        labeled = np.asarray(indices_labeled)
        # keep the unlabeled and labeled rows only, unlabeled first (small-text's layout)
        rows = np.concatenate([unlabeled, labeled])
        if rows.shape[0] != emb.shape[0] or not np.array_equal(rows, np.arange(rows.shape[0])):
            emb = emb[rows]
        centres = np.arange(unlabeled.shape[0], rows.shape[0])
        return unlabeled[af.kcenter_greedy(emb, centres, n)]

    def __str__(self):
        return (
            f"CoreSet(alamp_fast, distance_metric={self.distance_metric!r}, "
            f"normalize={self.normalize})"
        )
