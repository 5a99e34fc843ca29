"""modAL query strategies backed by alamp_fast.

A modAL query strategy is called as ``strategy(learner, X_pool, n_instances=1, **kwargs)`` by
``ActiveLearner.query(X_pool, n_instances=..., **kwargs)`` and returns ``(indices, scores)``
(row indices into ``X_pool``, best first, and a per-pick score). The functions and classes
here have that signature and can replace modAL's own:

=====================================  ==================================================
modAL                                  alamp_fast
=====================================  ==================================================
``modAL.uncertainty.margin_sampling``  :func:`margin_sampling`
(no k-center strategy in modAL)        :func:`coreset_sampling`
(none)                                 :class:`Alamp`, ``Alamp(diverse=True)`` (alamp-div)
=====================================  ==================================================

Rows of ``X_pool`` and the alamp state
--------------------------------------
modAL passes only ``X_pool``, and the usual loop removes the queried rows from it
(``X_pool = np.delete(X_pool, idx, axis=0)``), so a row's position changes between queries.
:class:`Alamp` therefore names a row by ``pool_ids[i]`` when the query passes
``pool_ids=`` (forwarded by ``learner.query(X_pool, pool_ids=ids)``), and otherwise by a
64-bit hash of the row's bytes (:func:`~alamp_fast.integrations._state.row_fingerprints`).
Either way rows may be removed, reordered, subsampled or appended freely; a row that was not in
the previous query's pool gets the margin fallback (see ``docs/integrations.md``). Sparse or
non-numeric ``X_pool`` needs ``pool_ids``.

modAL's ``ActiveLearner.query`` calls the strategy a second time when the first call raises
(a bare ``except:``); :class:`Alamp` changes its state only after a successful selection, so
the retry sees the same state and raises the same error.
"""

from __future__ import annotations

import numpy as np

import alamp_fast as af
from alamp_fast.integrations._state import AlampMemory, as_row_ids, row_fingerprints

__all__ = ["Alamp", "coreset_sampling", "margin_sampling"]


def _pool_probs(classifier, X_pool, predict_proba_kwargs) -> np.ndarray:
    return np.asarray(classifier.predict_proba(X_pool, **predict_proba_kwargs))


def margin_sampling(classifier, X_pool, n_instances: int = 1, **predict_proba_kwargs):
    """Smallest top-2 margin first; a drop-in for ``modAL.uncertainty.margin_sampling``.

    Parameters
    ----------
    classifier : modAL learner or any object with ``predict_proba``
    X_pool : array-like of shape (n_pool, ...)
    n_instances : int
        Rows to return.
    **predict_proba_kwargs
        Passed to ``classifier.predict_proba``.

    Returns
    -------
    indices : (n_instances,) int64
        Rows of ``X_pool``, smallest margin first; equal margins go to the lower row (modAL's
        ``multi_argmin`` leaves their order to ``np.argpartition``).
    margins : (n_instances,)
        Their margins, as modAL returns.

    Examples
    --------
    >>> import numpy as np
    >>> class Fixed:
    ...     def predict_proba(self, X):
    ...         return np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]])
    >>> idx, m = margin_sampling(Fixed(), np.zeros((3, 2)), n_instances=2)
    >>> idx.tolist(), np.round(m, 2).tolist()
    ([1, 2], [0.1, 0.4])
    """
    margin = af.margin(_pool_probs(classifier, X_pool, predict_proba_kwargs))
    picks = af.select_top(margin, n_instances, largest=False)
    return picks, margin[picks]


def coreset_sampling(classifier, X_pool, n_instances: int = 1, *, X_labeled=None):
    """k-center greedy core-set (Sener & Savarese) on the raw features of ``X_pool``.

    The centres are the labeled samples: ``X_labeled`` if given, else the learner's
    ``X_training`` (modAL's ``ActiveLearner`` keeps its training set there). With no labeled
    samples the first pick is row 0 (:func:`alamp_fast.kcenter_greedy`).

    Parameters
    ----------
    classifier : modAL learner
        Only its ``X_training`` is used, when ``X_labeled`` is None.
    X_pool : array-like of shape (n_pool, n_features), numeric
    n_instances : int
    X_labeled : array-like of shape (n_labeled, n_features), optional

    Returns
    -------
    indices : (n_instances,) int64
        Rows of ``X_pool`` in the order chosen.
    None
        In place of scores: k-center has no per-row score to return.

    Examples
    --------
    >>> import numpy as np
    >>> X_pool = np.array([[1.0], [5.0], [10.0]])
    >>> coreset_sampling(None, X_pool, 2, X_labeled=np.array([[0.0]]))[0].tolist()
    [2, 1]
    """
    pool = np.asarray(X_pool)
    if X_labeled is None:
        X_labeled = getattr(classifier, "X_training", None)
    if X_labeled is None or len(X_labeled) == 0:
        return af.kcenter_greedy(pool, np.empty(0, dtype=np.int64), n_instances), None
    labeled = np.asarray(X_labeled)
    if labeled.ndim != pool.ndim or labeled.shape[1:] != pool.shape[1:]:
        raise ValueError(
            f"X_labeled has shape {labeled.shape} but X_pool has {pool.shape}: the features "
            "must match"
        )
    features = np.concatenate([pool, labeled.astype(pool.dtype, copy=False)])
    centres = np.arange(pool.shape[0], features.shape[0])
    return af.kcenter_greedy(features, centres, n_instances), None


class Alamp:
    """alamp (or alamp-div) as a stateful modAL query strategy.

    Use one instance per learner: ``ActiveLearner(estimator, query_strategy=Alamp())``.
    The first query ranks by margin (no previous margins yet); later queries rank by the alamp
    score of each row against its margin at the previous query.

    Parameters
    ----------
    diverse : bool
        alamp-div: Algorithm 1 of the paper over the previous prediction.

    Examples
    --------
    >>> import numpy as np
    >>> class Model:
    ...     probs = None
    ...     def predict_proba(self, X):
    ...         return self.probs[X[:, 0].astype(int)]
    >>> model, strategy = Model(), Alamp()
    >>> X_pool = np.arange(3.0)[:, None]       # row content = sample number
    >>> model.probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    >>> idx, _ = strategy(model, X_pool, 1); idx.tolist()
    [1]
    >>> X_pool = np.delete(X_pool, idx, axis=0)  # modAL's usual loop
    >>> model.probs = np.array([[0.6, 0.4], [0.55, 0.45], [0.8, 0.2]])
    >>> idx, _ = strategy(model, X_pool, 1); idx.tolist()   # sample 0: margin 0.8 -> 0.2
    [0]
    """

    def __init__(self, *, diverse: bool = False) -> None:
        self.diverse = bool(diverse)
        self.memory = AlampMemory()

    def __call__(
        self, classifier, X_pool, n_instances: int = 1, *, pool_ids=None, **predict_proba_kwargs
    ):
        """Pick ``n_instances`` rows of ``X_pool``.

        Parameters
        ----------
        classifier : modAL learner or any object with ``predict_proba``
        X_pool : array-like of shape (n_pool, ...)
        n_instances : int
        pool_ids : (n_pool,) distinct integers, optional
            A stable id per row; without it rows are identified by their content.
        **predict_proba_kwargs
            Passed to ``classifier.predict_proba``.

        Returns
        -------
        indices : (n_instances,) int64
            Rows of ``X_pool``, best first.
        utilities : (n_instances,)
            Their alamp scores (``-margin`` at the first query).
        """
        probs = _pool_probs(classifier, X_pool, predict_proba_kwargs)
        if pool_ids is None:
            keys = row_fingerprints(X_pool)
        else:
            keys = as_row_ids(pool_ids, probs.shape[0])
        if keys.shape[0] != probs.shape[0]:
            raise ValueError(
                f"predict_proba gave {probs.shape[0]} rows for a pool of {keys.shape[0]}"
            )
        picks, utility = self.memory.query(probs, n_instances, keys, diverse=self.diverse)
        return picks, utility[picks]

    def state_dict(self) -> dict[str, np.ndarray]:
        """The alamp memory (see :meth:`AlampMemory.state_dict`)."""
        return self.memory.state_dict()

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict`."""
        self.memory.load_state_dict(state)

    def reset(self) -> None:
        """Forget previous queries (the next one ranks by margin)."""
        self.memory.reset()

    def __repr__(self) -> str:
        return f"Alamp(diverse={self.diverse}, iteration={self.memory.iteration})"
