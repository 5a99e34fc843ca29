"""alamp's memory between queries, shared by every host adapter.

alamp compares each pool row's certainty under the current model with the one under the
previous model. No host library passes the previous value to its query strategy, so the
adapters keep it here, in :class:`AlampMemory`, keyed by a *row key*: an int64 that names the
same sample across queries even when the host reorders or shrinks its pool.

Row keys, per host (the adapters choose; this module only stores and looks up)
-------------------------------------------------------------------------------
* explicit ids, when the caller passes them (modAL ``pool_ids=``), else
* an index the host keeps stable: the row of ``X`` (scikit-activeml), of ``dataset``
  (small-text), the oracle index of a bound ``ActiveLearningDataset`` (baal), else
* the row's content: :func:`row_fingerprints`, a 64-bit hash of the row's bytes (modAL
  without ids; scikit-activeml when ``candidates`` are samples, not indices), else
* positional keys (:meth:`AlampMemory.positional_keys`, baal without a dataset): the pool is
  assumed to have lost exactly the rows this strategy ranked first last time, in that order,
  with the remaining rows keeping their relative order, which is what ``np.delete`` on the
  returned indices and baal's labelling both do.

What is remembered
------------------
After each query the memory holds, for every row of *that* pool, its margin and top class;
nothing else survives. So a row that was absent from the last query (a row appended since, a
row outside last query's candidates, a row the host subsampled away) has no previous certainty.
Such a row gets the *margin fallback* (same rule as :class:`alamp_fast.al.strategies.Alamp`):

* if no row of the pool has a previous certainty (the first query), the ranking is margin
  sampling's: the utility is ``-margin``;
* otherwise a row without one is scored as if the previous model had been fully certain,
  ``prev = 1.0``: ``(1 - m) / (1 + m)``, which orders those rows as margin sampling does.

alamp-div's pseudo-class is the previous top class, or the current one for such rows.

Rows with equal keys (two identical rows under content keys) share one entry: a deterministic
model gave them the same margin before, so nothing is lost.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import alamp_fast as af
from alamp_fast._parallel import twins
from alamp_fast.al.strategies import NEW_ROW_PREV_CERTAINTY, alamp_ranking

__all__ = ["AlampMemory", "NEW_ROW_PREV_CERTAINTY", "as_row_ids", "row_fingerprints"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always")
def _mix64(x):
    # splitmix64 finaliser: a bijection of uint64 whose output bits all depend on every input bit
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


# serial and parallel builds (alamp_fast._parallel): a parallel region costs more than it
# gives on the 1e4-row pools adapters usually see (11.5 ms against ~0.1 ms serial)
@twins()
def _fingerprint_kernel(words, out):
    n, w = words.shape
    for i in prange(n):
        # a sum of independently mixed (word, column) pairs: no carried dependency between
        # words, so the loop pipelines; the column salt makes swapped words hash differently
        h = np.uint64(w)
        for j in range(w):
            h += _mix64(np.uint64(words[i, j]) + _GOLDEN * np.uint64(j + 1))
        out[i] = _mix64(h)


@njit(cache=True)
def _match_in_order(stored, queries, out):
    """Positions of ``queries`` in ``stored`` if they are a subsequence of it, in order.

    That is the pool after ``np.delete`` of some rows: one sequential pass instead of a hash
    lookup per row (1e6 rows: ~3 ms against ~100 ms). Returns False on the first key that is
    not found in order (a new or reordered row); ``out`` is then garbage.
    """
    i = 0
    n = stored.shape[0]
    for j in range(queries.shape[0]):
        q = queries[j]
        while i < n and stored[i] != q:
            i += 1
        if i == n:
            return False
        out[j] = i
        i += 1
    return True


@njit(cache=True)
def _build_table(keys, n_slots):
    """Open-addressing table of positions into ``keys``; the first of equal keys is kept."""
    mask = np.uint64(n_slots - 1)
    slots = np.full(n_slots, -1, dtype=np.int64)
    for i in range(keys.shape[0]):
        h = _mix64(np.uint64(keys[i])) & mask
        while True:
            s = slots[h]
            if s == -1:
                slots[h] = i
                break
            if keys[s] == keys[i]:
                break
            h = (h + np.uint64(1)) & mask
    return slots


@twins()
def _probe_table(slots, keys, queries, out):
    mask = np.uint64(slots.shape[0] - 1)
    for j in prange(queries.shape[0]):
        q = queries[j]
        h = _mix64(np.uint64(q)) & mask
        while True:
            s = slots[h]
            if s == -1 or keys[s] == q:
                out[j] = s
                break
            h = (h + np.uint64(1)) & mask


def row_fingerprints(X) -> np.ndarray:
    """A 64-bit hash of each row's bytes, as int64 row keys.

    Equal rows (same dtype, same bytes) get equal keys; distinct rows collide with probability
    about ``2**-64`` per pair. Costs one read of ``X``.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Numeric (bool, integer, float or complex) samples; a pandas DataFrame of numbers works.

    Returns
    -------
    (n_samples,) int64

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.5, 1.0], [2.0, 3.0], [0.5, 1.0]])
    >>> k = row_fingerprints(X)
    >>> bool(k[0] == k[2]), bool(k[0] == k[1])
    (True, False)
    """
    if hasattr(X, "tocsr") or hasattr(X, "nnz"):
        raise TypeError(
            "cannot fingerprint the rows of a sparse matrix; pass explicit row ids "
            "(pool_ids=) instead"
        )
    A = np.asarray(X)
    if A.dtype.kind not in "biufc":
        raise TypeError(
            f"cannot fingerprint rows of dtype {A.dtype}; pass explicit row ids (pool_ids=)"
        )
    if A.ndim < 1:
        raise ValueError(f"X must have one row per sample, got a scalar of shape {A.shape}")
    n = A.shape[0]
    A = np.ascontiguousarray(A.reshape(n, int(np.prod(A.shape[1:], dtype=np.int64))))
    row_bytes = A.shape[1] * A.dtype.itemsize
    # widest unsigned word that divides the row: fewest kernel iterations
    word = next(w for w in (8, 4, 2, 1) if row_bytes % w == 0)
    words = A.view(np.uint8).reshape(n, row_bytes).view(np.dtype(f"u{word}"))
    out = np.empty(n, dtype=np.uint64)
    if n:
        _fingerprint_kernel(words, out, work=words.size)
    return out.view(np.int64)


def as_row_ids(ids, n_rows: int, name: str = "pool_ids") -> np.ndarray:
    """Caller-given row ids as int64: 1-D, one per pool row, integers, no duplicates."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(
            f"{name} must have shape ({n_rows},) (one id per pool row), got {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds {int(arr.max())}, larger than the int64 range")
    arr = arr.astype(np.int64, copy=False)
    if arr.size < 2:
        return arr
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi < 4 * arr.size + 1024:
        # row-index-like ids: an O(n) count instead of an O(n log n) sort
        counts = np.bincount(arr)
        if counts.max() > 1:
            raise ValueError(f"{name} holds duplicated id {int(np.argmax(counts > 1))}")
        return arr
    s = np.sort(arr)
    dup = np.flatnonzero(s[1:] == s[:-1])
    if dup.size:
        raise ValueError(f"{name} holds duplicated id {int(s[dup[0]])}")
    return arr


class AlampMemory:
    """Previous margin and top class per row key, and the alamp ranking built on them.

    One instance per adapter object. Every query replaces the memory with the rows of that
    query's pool (see the module docstring for the rule and the margin fallback). The memory is
    only changed after the selection succeeded, so a query that raises leaves it as it was.

    Examples
    --------
    >>> import numpy as np
    >>> mem = AlampMemory()
    >>> p0 = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    >>> mem.query(p0, 1, keys=np.array([10, 11, 12]))[0].tolist()   # first query: margin
    [1]
    >>> p1 = np.array([[0.6, 0.4], [0.8, 0.2]])                       # key 11 was labeled
    >>> mem.query(p1, 1, keys=np.array([10, 12]))[0].tolist()        # key 10: 0.8 -> 0.2
    [0]
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every previous query."""
        self.iteration = 0
        self.keys = np.empty(0, dtype=np.int64)  # in the last pool's row order
        self.prev_margin = np.empty(0, dtype=np.float64)
        self.prev_top_class = np.empty(0, dtype=np.int64)
        self.last_order = np.empty(0, dtype=np.int64)  # rows returned last time, best first
        self._index = None

    # -- looking rows up ------------------------------------------------------------------

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Position of each key in ``self.keys``, -1 where absent."""
        stored = self.keys
        if keys.shape == stored.shape and np.array_equal(keys, stored):
            return np.arange(keys.shape[0])  # same rows in the same order: the common case
        if stored.size == 0 or keys.size == 0:
            return np.full(keys.shape[0], -1, dtype=np.int64)
        out = np.empty(keys.shape[0], dtype=np.int64)
        if keys.shape[0] <= stored.shape[0] and _match_in_order(stored, keys, out):
            return out
        if self._index is None:
            lo, hi = int(stored.min()), int(stored.max())
            if lo >= 0 and hi < 2 * stored.size + 1024:
                # small non-negative keys (row indices): a direct table, no hashing
                table = np.full(hi + 1, -1, dtype=np.int64)
                table[stored[::-1]] = np.arange(stored.size - 1, -1, -1)  # first one wins
                self._index = ("dense", table)
            else:
                n_slots = 1 << max(4, int(2 * stored.size - 1).bit_length())
                self._index = ("hash", _build_table(stored, n_slots))
        kind, table = self._index
        if kind == "dense":
            inside = (keys >= 0) & (keys < table.shape[0])
            return np.where(inside, table[np.where(inside, keys, 0)], -1)
        # ~100 ns of random probes per row: parallel pays off from far fewer rows than a scan
        _probe_table(table, stored, keys, out, work=16 * keys.shape[0])
        return out

    def recall(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """Previous margin (NaN: none) and previous top class (-1: none) for each key."""
        keys = np.asarray(keys, dtype=np.int64)
        pos = self._positions(keys)
        known = pos >= 0
        prev = np.full(keys.shape[0], np.nan)
        prev_top = np.full(keys.shape[0], -1, dtype=np.int64)
        prev[known] = self.prev_margin[pos[known]]
        prev_top[known] = self.prev_top_class[pos[known]]
        return prev, prev_top

    def positional_keys(self, n_rows: int) -> np.ndarray:
        """Keys for a host that names rows only by position and deletes the rows it labels.

        Same size as last time: the same rows. ``k`` rows fewer, with ``k`` at most the number
        of rows returned last time: the first ``k`` returned rows were removed, the others kept
        their order. Anything else raises ``ValueError``: pass ids instead.
        """
        n_prev = self.keys.shape[0]
        if self.iteration == 0:
            return np.arange(n_rows, dtype=np.int64)
        if n_rows == n_prev:
            return self.keys
        removed = n_prev - n_rows
        if 0 < removed <= self.last_order.shape[0]:
            keep = np.ones(n_prev, dtype=bool)
            keep[self.last_order[:removed]] = False
            return self.keys[keep]
        raise ValueError(
            f"the pool has {n_rows} rows; the last query had {n_prev} and returned "
            f"{self.last_order.shape[0]}, so the rows cannot be matched by position (only "
            "removing the first returned rows is understood): give the adapter stable row ids"
        )

    # -- the alamp ranking ----------------------------------------------------------------

    def utility(self, margin, top_class, keys) -> tuple[np.ndarray, np.ndarray]:
        """alamp utility (higher = queried first) and pseudo-class, without changing the memory.

        ``-margin`` when no key has a previous margin, else the alamp score with the margin
        fallback for the keys that have none.
        """
        prev, prev_top = self.recall(keys)
        scores, largest, pseudo_class = alamp_ranking(margin, top_class, prev, prev_top)
        # one "higher first" utility for every host: -margin orders as margin sampling
        return (scores if largest else -scores), pseudo_class

    def query(self, probs, budget, keys, *, exclude=None, diverse=False):
        """Rank the pool by alamp (or alamp-div), pick ``budget`` rows, then remember the pool.

        Parameters
        ----------
        probs : (n_rows, n_classes) array
            The current model's class probabilities (or decision values) for the pool.
        budget : int
            Rows to pick among those not in ``exclude``.
        keys : (n_rows,) int64
            Row keys (see the module docstring).
        exclude : int indices or boolean mask, optional
            Rows that must not be picked (already labeled); still remembered.
        diverse : bool
            alamp-div: Algorithm 1 (:func:`alamp_fast.diversify`) over the pseudo-class.

        Returns
        -------
        picks : (budget,) int64 row positions, best first
        utility : (n_rows,) the utility the picks were ranked by (higher first)
        """
        probs = np.asarray(probs)
        margin, top_class = af.top2_margin(probs)
        keys = np.asarray(keys, dtype=np.int64)
        if keys.shape != margin.shape:
            raise ValueError(f"keys has shape {keys.shape} but the pool has {margin.shape[0]} rows")
        utility, pseudo_class = self.utility(margin, top_class, keys)
        if diverse:
            picks = af.diversify(utility, pseudo_class, budget, exclude=exclude)
        else:
            picks = af.select_top(utility, budget, exclude=exclude)
        self.keys = keys.copy()
        self.prev_margin = margin.astype(np.float64)
        self.prev_top_class = top_class
        self.last_order = picks
        self._index = None
        self.iteration += 1
        return picks, utility

    # -- persistence ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The memory as numpy arrays: ``iteration``, ``keys``, ``prev_margin``,
        ``prev_top_class`` (all in the last pool's row order) and ``last_order``."""
        return {
            "iteration": np.asarray(self.iteration, dtype=np.int64),
            "keys": self.keys.copy(),
            "prev_margin": self.prev_margin.copy(),
            "prev_top_class": self.prev_top_class.copy(),
            "last_order": self.last_order.copy(),
        }

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict` (arrays are copied and checked)."""
        missing = {"iteration", "keys", "prev_margin", "prev_top_class", "last_order"} - set(state)
        if missing:
            raise ValueError(f"alamp state is missing keys {sorted(missing)}")
        keys = np.asarray(state["keys"])
        prev = np.asarray(state["prev_margin"])
        prev_top = np.asarray(state["prev_top_class"])
        order = np.asarray(state["last_order"])
        if keys.ndim != 1 or prev.shape != keys.shape or prev_top.shape != keys.shape:
            raise ValueError(
                f"keys {keys.shape}, prev_margin {prev.shape} and prev_top_class "
                f"{prev_top.shape} must be 1-D arrays of one length"
            )
        if any(a.dtype.kind not in "iu" for a in (keys, prev_top, order)):
            raise TypeError("keys, prev_top_class and last_order must be integer arrays")
        if prev.dtype.kind != "f" or not np.all(np.isfinite(prev)) or np.any(prev < 0):
            raise ValueError("prev_margin must be finite, non-negative floats")
        if order.ndim != 1 or (order.size and (order.min() < 0 or order.max() >= keys.size)):
            raise ValueError(f"last_order must index the {keys.size} remembered rows")
        self.iteration = int(np.asarray(state["iteration"]))
        self.keys = keys.astype(np.int64)
        self.prev_margin = prev.astype(np.float64)
        self.prev_top_class = prev_top.astype(np.int64)
        self.last_order = order.astype(np.int64)
        self._index = None
