"""baal heuristics backed by alamp_fast.

baal's ``ActiveLearningLoop.step`` calls ``heuristic.get_ranks(predictions)`` on the
predictions for the pool (``[n_pool, n_classes]``, or ``[n_pool, n_classes, n_iterations]``
for MC sampling, or a generator of such batches) and labels the first ``query_size`` rows of
the returned ranking. The heuristics here subclass baal's ``AbstractHeuristic``:

==========================  =========================================================
baal                        alamp_fast
==========================  =========================================================
``heuristics.Margin()``     :class:`Margin`
(none)                      :class:`Alamp`, ``Alamp(diverse=True)`` (alamp-div)
==========================  =========================================================

Predictions are reduced as baal's ``Margin`` does: the mean over the last axis when there are
MC iterations, then baal's ``to_prob`` (softmax when the values are not probabilities).

With ``query_size`` given, ``get_ranks`` returns only the best ``query_size`` rows, in
O(n_pool) instead of a full O(n_pool log n_pool) sort; ``ActiveLearningLoop`` uses no more.
Without it, the whole pool is ranked, as baal's heuristics do. Ties go to the lower row.

Rows and the alamp state
------------------------
baal's pool is the unlabelled part of the ``ActiveLearningDataset``, in dataset order; it loses
the rows that get labelled. :class:`Alamp` names a pool row

* by its index in the dataset, when built with ``dataset=active_set`` (recommended): labelling
  anything between queries, ``label_randomly`` included, is then fine. The predictions must
  cover the whole pool: ``ActiveLearningLoop(max_sample=...)`` draws a random subset it does
  not pass to the heuristic, and raises ``ValueError`` here;
* otherwise by position: the pool must be the previous one minus the first ``k`` rows of the
  last ranking (what the loop's ``label(to_label[:query_size])`` does). Any other change of
  size raises ``ValueError``; a same-size pool is taken as the same rows.
"""

from __future__ import annotations

import types

import numpy as np
from baal.active.heuristics import AbstractHeuristic
from baal.utils.array_utils import to_prob

import alamp_fast as af
from alamp_fast._validate import is_int
from alamp_fast.integrations._state import AlampMemory

__all__ = ["Alamp", "Margin"]


def _pool_probs(predictions) -> np.ndarray:
    """baal predictions -> (n_pool, n_classes) probabilities, as baal's Margin reduces them."""
    if isinstance(predictions, types.GeneratorType):
        batches = [_pool_probs(p) for p in predictions]
        if not batches:
            raise ValueError("the predictions generator is empty: nothing to rank")
        return np.concatenate(batches)
    if isinstance(predictions, (list, tuple)):
        if len(predictions) != 1:
            raise ValueError(
                f"expected one prediction array, got {len(predictions)} (multi-output models "
                "need baal's CombineHeuristics)"
            )
        predictions = predictions[0]
    if hasattr(predictions, "detach"):  # torch tensor
        predictions = predictions.detach().cpu().numpy()
    probs = np.asarray(predictions)
    if probs.ndim == 3:
        probs = probs.mean(-1)  # MC iterations, last axis
    if probs.ndim != 2:
        raise ValueError(
            "predictions must be [n_pool, n_classes] or [n_pool, n_classes, n_iterations], "
            f"got shape {probs.shape}"
        )
    return to_prob(probs)


def _budget(query_size, n_pool: int) -> int:
    return n_pool if query_size is None else min(query_size, n_pool)


def _check_query_size(query_size):
    if query_size is not None and (
        not is_int(query_size) or query_size < 1
    ):
        raise ValueError(f"query_size must be a positive integer or None, got {query_size!r}")
    return None if query_size is None else int(query_size)


class Margin(AbstractHeuristic):
    """Smallest top-2 margin first; a drop-in for ``baal.active.heuristics.Margin``.

    Parameters
    ----------
    query_size : int, optional
        Rank only the best ``query_size`` rows (set it to the loop's ``query_size``).

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]])
    >>> Margin()(probs).tolist()
    [1, 2, 0]
    >>> Margin(query_size=1)(probs).tolist()
    [1]
    """

    def __init__(self, query_size=None):
        super().__init__(reverse=False)
        self.query_size = _check_query_size(query_size)

    def compute_score(self, predictions, target_predictions=None):
        """The top-2 margin of every pool row (lower = more uncertain)."""
        return af.margin(_pool_probs(predictions))

    def get_ranks(self, predictions, target_predictions=None):
        """Pool rows by increasing margin (only the best ``query_size``, if set), and margins."""
        margin = self.compute_score(predictions)
        ranks = af.select_top(margin, _budget(self.query_size, margin.shape[0]), largest=False)
        return ranks, margin


class Alamp(AbstractHeuristic):
    """alamp (or alamp-div) as a baal heuristic; remembers the margins between steps.

    The first call ranks by margin (no previous margins yet); later calls rank by the alamp
    score of each pool row against its margin at the previous call. Use one instance per loop.

    Parameters
    ----------
    diverse : bool
        alamp-div: Algorithm 1 of the paper over the previous prediction.
    dataset : baal ``ActiveLearningDataset``, optional
        Names pool rows by their dataset index (see the module docstring); recommended.
    query_size : int, optional
        Rank only the best ``query_size`` rows.

    Examples
    --------
    >>> import numpy as np
    >>> h = Alamp()
    >>> h(np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])).tolist()   # margin order
    [1, 2, 0]
    >>> # the loop labelled pool row 1; rows 0 and 2 remain, in order
    >>> h(np.array([[0.6, 0.4], [0.8, 0.2]])).tolist()   # row 0: margin 0.8 -> 0.2
    [0, 1]
    """

    def __init__(self, diverse=False, dataset=None, query_size=None):
        super().__init__(reverse=True)
        self.diverse = bool(diverse)
        self.dataset = dataset
        self.query_size = _check_query_size(query_size)
        self.memory = AlampMemory()

    def _keys(self, n_pool: int) -> np.ndarray:
        if self.dataset is None:
            return self.memory.positional_keys(n_pool)
        keys = np.flatnonzero(~np.asarray(self.dataset.labelled, dtype=bool))
        if keys.shape[0] != n_pool:
            raise ValueError(
                f"got predictions for {n_pool} rows but the dataset's pool has {keys.shape[0]}: "
                "alamp needs the whole pool in dataset order (ActiveLearningLoop's max_sample "
                "subsamples it without telling the heuristic)"
            )
        return keys

    def compute_score(self, predictions, target_predictions=None):
        """alamp utility of every pool row (higher = queried first), without updating the state.

        ``-margin`` while there are no previous margins.
        """
        probs = _pool_probs(predictions)
        margin, top_class = af.top2_margin(probs)
        return self.memory.utility(margin, top_class, self._keys(probs.shape[0]))[0]

    def get_ranks(self, predictions, target_predictions=None):
        """Rank the pool (the best ``query_size`` rows, if set) and remember its margins.

        Returns
        -------
        ranks : int64 pool rows, best first
        utility : (n_pool,) the alamp utility of every pool row
        """
        probs = _pool_probs(predictions)
        keys = self._keys(probs.shape[0])
        return self.memory.query(
            probs, _budget(self.query_size, probs.shape[0]), keys, diverse=self.diverse
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """The alamp memory (see :meth:`AlampMemory.state_dict`)."""
        return self.memory.state_dict()

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict`."""
        self.memory.load_state_dict(state)

    def reset(self) -> None:
        """Forget previous steps (the next one ranks by margin)."""
        self.memory.reset()
