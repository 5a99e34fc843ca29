"""Acquisition strategies: the paper's acquisition functions as small stateful objects.

Every strategy has one method, :meth:`Strategy.query`, which takes the current model's
class probabilities over the *pool* (one row per pool sample, labeled rows included) and
returns the pool rows to label next, best first. Rows already labeled are passed as
``labeled`` and never returned. A strategy holds whatever it needs between iterations; for
alamp that is the previous iteration's certainty (the margin by default) and top class of
every pool row: two ``(n_pool,)`` arrays, never the probability matrix.

State is explicit and serialisable: :meth:`Strategy.state_dict` returns a dict of numpy
arrays and :meth:`Strategy.load_state_dict` restores it, so a round can be resumed in another
process (annotation rounds) or kept by an adapter for another AL library.

Pool rows and the alamp state
-----------------------------
The state is indexed by pool row. The rules, in order:

* the same rows in the same order as last time: row ``i`` is compared with its own previous
  certainty;
* more rows than last time: the extra rows are taken as *appended* to the pool and have no
  previous certainty;
* fewer rows, or rows reordered: call :meth:`Alamp.remap` first with, for each new row, its
  old row index (``-1`` for a row that is new); a shorter pool without ``remap`` is an error.

A row with no previous certainty (every row at the first iteration, appended rows later) is
handled by the *margin fallback*:

* if no row has a previous certainty, the ranking is the certainty ordering itself (lowest
  margin first), so alamp's first pick is exactly margin sampling's pick;
* otherwise a row without one is scored as if the previous model had been fully certain
  about it, ``prev = 1.0`` (the largest possible margin or confidence on probabilities):
  its score ``(1 - m) / (1 + m)`` decreases with its current margin ``m``, so those rows are
  ranked among themselves exactly as margin sampling ranks them, and they compete with the
  other rows as "moved from full certainty to ``m``".

In the state, a missing previous certainty is ``NaN`` and a missing previous top class is
``-1``.

Query results and the fused margin path
---------------------------------------
:meth:`Strategy.query` returns the picks (an int64 array, as always);
:meth:`Strategy.query_result` returns a :class:`QueryResult`: the picks plus what the strategy
computed on the way (the ranking scores, the top-2 margins and the top classes of every pool
row), so a caller that also needs them (a status record, a CSV score column) does not score
the pool again. Strategies whose ranking only reads the top-2 margin and the top class
(``margin``, ``margin-div``, ``random-div``, ``alamp`` and ``alamp-div`` with the margin
certainty; :attr:`Strategy.accepts_margin`) also take them precomputed, as ``margin=`` and
``top_class=`` instead of ``probs``: a loop can then get them from a classifier's fused
``predict_top2_margin`` without ever building the ``(n_pool, n_classes)`` matrix.

Array libraries
---------------
``probs``, ``margin`` and ``features`` are used in the caller's array library: numpy, torch
(CPU or CUDA), CuPy, or dask; the kernels (:mod:`alamp_fast`) dispatch on them and return
arrays of the same library. Only lists and other array-likes are converted with
``np.asarray``. alamp keeps its per-row state in numpy (it is stored and serialised), copied
from the device once per query.

Pools on a Dask cluster
-----------------------
``probs`` (and ``features``, for coreset) may be row-chunked ``dask.array`` arrays, as
:func:`alamp_fast.al.protocol.simulate` and the annotation workflow pass them with a scheduler.
The ``(n_pool, n_classes)`` matrix is then never gathered: the kernels score it chunk by chunk
where it lives and the selection (:func:`alamp_fast.select_top`, :func:`alamp_fast.diversify`,
:func:`alamp_fast.kcenter_greedy`) reduces per-chunk candidates to the same indices as on
numpy. alamp keeps its state in numpy as always: the workers score the pool and send back
its certainties and top classes (16 bytes a row for float64 probabilities) in one pass, and
alamp ranks them here, with the core functions on numpy.

This module is longer than the package's usual 500 lines on purpose: it is the one place a
strategy's contract lives (the base class, its input helpers, and the six strategies that
share them), and the better half of it is this contract's text and :class:`Alamp`'s state
rules; split up, every strategy file would import the same private helpers back.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import alamp_fast as af
from alamp_fast._backend import array_library
from alamp_fast._validate import is_int as _is_int

__all__ = [
    "ALIASES",
    "NEW_ROW_PREV_CERTAINTY",
    "QueryResult",
    "alamp_ranking",
    "STRATEGIES",
    "Alamp",
    "CoreSet",
    "EntropySampling",
    "LeastConfidenceSampling",
    "MarginSampling",
    "RandomSampling",
    "Strategy",
    "canonical_name",
    "get_strategy",
]

#: Canonical strategy names, in the order tables and plots use.
STRATEGIES = (
    "random",
    "margin",
    "entropy",
    "least_confidence",
    "coreset",
    "alamp",
    "alamp-div",
    "random-div",
    "margin-div",
)

#: Other spellings accepted by :func:`get_strategy` (the paper writes rand-div / marg-div).
ALIASES = {
    "rand-div": "random-div",
    "marg-div": "margin-div",
    "least-confidence": "least_confidence",
    "lc": "least_confidence",
    "kcenter": "coreset",
    "k-center": "coreset",
}

#: Previous certainty assumed for a pool row that has none (the margin fallback, see above).
NEW_ROW_PREV_CERTAINTY = 1.0


def _as_labeled(labeled) -> np.ndarray | None:
    if labeled is None:
        return None
    labeled = _to_numpy(labeled)
    if labeled.size == 0:
        return None
    if labeled.ndim != 1:
        raise ValueError(f"labeled must be 1-D row indices, got shape {labeled.shape}")
    if not np.issubdtype(labeled.dtype, np.integer):
        raise TypeError(f"labeled must hold integer row indices, got dtype {labeled.dtype}")
    return labeled.astype(np.int64, copy=False)


def _is_dask(x) -> bool:
    return array_library(x) == "dask"


def _keep_library(x):
    """``x`` itself if it is an array of a library the kernels take (numpy, torch, CuPy,
    dask), else ``np.asarray(x)`` (lists, memmaps stay numpy)."""
    return x if array_library(x) not in (None, "numpy") or isinstance(x, np.ndarray) else (
        np.asarray(x)
    )


def _to_numpy(x) -> np.ndarray:
    """A host numpy copy-free view (numpy, torch CPU) or copy (CuPy, torch CUDA) of ``x``."""
    kind = array_library(x)
    if kind == "cupy":
        return x.get()
    if kind in ("torch", "torch-cuda"):
        from alamp_fast._dispatch import _torch_to_numpy

        return _torch_to_numpy(x.detach().cpu())
    return np.asarray(x)


def _as_probs(probs, name: str):
    if probs is None:
        raise ValueError(f"strategy {name!r} needs the pool's class probabilities (probs=None)")
    probs = _keep_library(probs)  # a dask pool stays on its workers, a GPU one on its device
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (n_pool, n_classes), got shape {probs.shape}")
    return probs


def _margin_inputs(probs, margin, top_class, name: str):
    """``(margin, top_class)`` given precomputed, else one ``top2_margin`` pass over ``probs``."""
    if margin is None and top_class is None:
        return af.top2_margin(_as_probs(probs, name))
    if margin is None or top_class is None:
        raise ValueError(f"strategy {name!r}: pass margin= and top_class= together")
    margin, top_class = _keep_library(margin), _keep_library(top_class)
    if margin.ndim != 1 or tuple(top_class.shape) != tuple(margin.shape):
        raise ValueError(
            f"margin {tuple(margin.shape)} and top_class {tuple(top_class.shape)} must be 1-D "
            "arrays of the same length (one value per pool row)"
        )
    return margin, top_class


@dataclass
class QueryResult:
    """What a query picked and what it computed on the way (see the module docstring).

    Attributes
    ----------
    picks : int64 array (budget,)
        Pool rows to label, best first (numpy, or the array library of the inputs).
    scores : array (n_pool,) or None
        The ranking score of every pool row (alamp score, margin, entropy, ...); None where
        the strategy ranks without one (coreset).
    largest : bool
        Whether higher ``scores`` rank first.
    margin, top_class : arrays (n_pool,) or None
        Top-2 margin and top class of every pool row, where the strategy computed them.
    """

    picks: Any
    scores: Any = None
    largest: bool = True
    margin: Any = None
    top_class: Any = None

    def __array__(self, dtype=None, copy=None):  # np.asarray(result) is the picks
        return _to_numpy(self.picks).astype(dtype or np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.picks)


class Strategy:
    """Base class: one acquisition function and the state it keeps between iterations.

    Subclasses set ``name`` and implement :meth:`_select`. ``needs_probs`` and
    ``needs_features`` tell a loop what to compute before calling :meth:`query`.
    """

    name = "strategy"
    needs_probs = True
    needs_features = False
    #: The ranking reads only the top-2 margin and the top class: ``margin=``/``top_class=``
    #: may replace ``probs`` (the fused path; see the module docstring).
    accepts_margin = False

    def __init__(self) -> None:
        self.iteration = 0

    def query(
        self, probs, budget: int, *, labeled=None, features=None, margin=None, top_class=None
    ) -> np.ndarray:
        """Pick ``budget`` pool rows to label, best first, and advance the state.

        Parameters
        ----------
        probs : array of shape (n_pool, n_classes) or None
            The current model's class probabilities (or decision values, for the margin
            family) over every pool row, labeled rows included; numpy, or a row-chunked
            ``dask.array`` (see the module docstring). ``None`` is accepted by strategies
            with ``needs_probs = False``.
        budget : int
            Number of rows to return, ``0 <= budget <= n_pool - len(labeled)``.
        labeled : array of int, optional
            Pool rows already labeled: never returned (k-center also uses them as centres).
        features : array of shape (n_pool, n_features), optional
            Needed by strategies with ``needs_features = True`` (coreset); ``random`` reads
            the pool size from it when ``probs`` is None. numpy or row-chunked dask.
        margin, top_class : arrays of shape (n_pool,), optional
            Top-2 margin and top class of every pool row, in place of ``probs``, for
            strategies with ``accepts_margin`` (e.g. from a classifier's
            ``predict_top2_margin``).

        Returns
        -------
        ndarray of int64, shape (budget,)
            Pool row indices, best first (a torch/CuPy array for torch/CuPy inputs).
        """
        return self.query_result(
            probs, budget, labeled=labeled, features=features, margin=margin, top_class=top_class
        ).picks

    def query_result(
        self, probs, budget: int, *, labeled=None, features=None, margin=None, top_class=None
    ) -> QueryResult:
        """:meth:`query`, returning a :class:`QueryResult` (picks, scores, margins, classes)."""
        if (margin is not None or top_class is not None) and not self.accepts_margin:
            raise ValueError(
                f"strategy {self.name!r} needs probs, not precomputed margins (accepts_margin "
                "is False)"
            )
        fused = {"margin": margin, "top_class": top_class} if self.accepts_margin else {}
        result = self._select(probs, budget, _as_labeled(labeled), features, **fused)
        if not isinstance(result, QueryResult):  # subclasses written for the old interface
            result = QueryResult(picks=result)
        self.iteration += 1
        return result

    def _select(self, probs, budget, labeled, features, **fused) -> QueryResult:
        raise NotImplementedError  # pragma: no cover

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state between iterations as a dict of numpy arrays (see :meth:`load_state_dict`)."""
        return {"iteration": np.asarray(self.iteration, dtype=np.int64)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state returned by :meth:`state_dict` (arrays are copied)."""
        missing = set(self.state_dict()) - set(state)
        if missing:
            raise ValueError(f"{self.name} state is missing keys {sorted(missing)}")
        self.iteration = _scalar_int(state["iteration"], "iteration")

    def reset(self) -> None:
        """Forget everything learned from previous queries (as a fresh object)."""
        self.iteration = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, iteration={self.iteration})"


def _scalar_int(value, key: str) -> int:
    arr = np.asarray(value)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"state[{key!r}] must be an integer scalar, got {value!r}")
    return int(arr)


def _name_seed(name: str) -> int:
    # A stable per-name salt, so adding a strategy to a run does not change another's draws.
    return zlib.crc32(name.encode())


class RandomSampling(Strategy):
    """Uniformly random rows (``random``), or random scores diversified (``random-div``).

    Draws are a function of ``(seed, iteration)`` alone, so the state is two integers and a
    resumed object draws what an uninterrupted one would have drawn.

    Parameters
    ----------
    diverse : bool
        Apply the paper's diversification (Algorithm 1, :func:`alamp_fast.diversify`) to random
        scores, with the *current* prediction (top class of ``probs``) as pseudo-class.
    seed : int, optional
        Non-negative integer; ``None`` draws one from the OS (kept in the state).

    Examples
    --------
    >>> import numpy as np
    >>> s = RandomSampling(seed=0)
    >>> picks = s.query(None, 3, labeled=[0, 1], features=np.zeros((10, 2)))
    >>> len(picks), bool(np.isin(picks, [0, 1]).any())
    (3, False)
    """

    def __init__(self, *, diverse: bool = False, seed: int | None = None) -> None:
        super().__init__()
        self.diverse = bool(diverse)
        self.name = "random-div" if self.diverse else "random"
        self.needs_probs = self.diverse
        self.accepts_margin = self.diverse
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = int(seed)

    def _scores(self, n_pool: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _name_seed(self.name), self.iteration])
        return rng.random(n_pool)

    def _select(self, probs, budget, labeled, features, margin=None, top_class=None):
        if self.diverse:
            margin, pseudo_class = _margin_inputs(probs, margin, top_class, self.name)
            scores = self._scores(pseudo_class.shape[0])
            picks = af.diversify(scores, pseudo_class, budget, exclude=labeled)
            return QueryResult(picks, scores, True, margin, pseudo_class)
        if probs is not None:
            n_pool = probs.shape[0] if hasattr(probs, "shape") else np.shape(probs)[0]
        elif features is not None:
            n_pool = features.shape[0] if hasattr(features, "shape") else np.shape(features)[0]
        else:
            raise ValueError("random needs probs or features to know the pool size")
        scores = self._scores(n_pool)
        return QueryResult(af.select_top(scores, budget, exclude=labeled), scores, True)

    def state_dict(self):
        state = super().state_dict()
        state["seed"] = np.asarray(self.seed, dtype=np.int64)
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.seed = _scalar_int(state["seed"], "seed")


class MarginSampling(Strategy):
    """Smallest top-2 margin first (``margin``), or diversified (``margin-div``).

    Parameters
    ----------
    diverse : bool
        Apply Algorithm 1 with the *current* prediction (top class of ``probs``) as
        pseudo-class.

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.6, 0.4], [0.5, 0.5]])
    >>> MarginSampling().query(probs, 2, labeled=[3]).tolist()
    [1, 2]
    """

    def __init__(self, *, diverse: bool = False) -> None:
        super().__init__()
        self.diverse = bool(diverse)
        self.name = "margin-div" if self.diverse else "margin"

    accepts_margin = True

    def _select(self, probs, budget, labeled, features, margin=None, top_class=None):
        margin, top_class = _margin_inputs(probs, margin, top_class, self.name)
        if self.diverse:
            picks = af.diversify(margin, top_class, budget, exclude=labeled, largest=False)
        else:
            picks = af.select_top(margin, budget, exclude=labeled, largest=False)
        return QueryResult(picks, margin, False, margin, top_class)


class EntropySampling(Strategy):
    """Largest predictive entropy first (``entropy``).

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0]])
    >>> EntropySampling().query(probs, 1).tolist()
    [1]
    """

    name = "entropy"

    def _select(self, probs, budget, labeled, features):
        scores = af.entropy(_as_probs(probs, self.name))
        return QueryResult(af.select_top(scores, budget, exclude=labeled), scores, True)


class LeastConfidenceSampling(Strategy):
    """Smallest top probability first (``least_confidence``).

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]])
    >>> LeastConfidenceSampling().query(probs, 2).tolist()
    [1, 2]
    """

    name = "least_confidence"

    def _select(self, probs, budget, labeled, features):
        scores = af.least_confidence(_as_probs(probs, self.name))
        return QueryResult(af.select_top(scores, budget, exclude=labeled), scores, True)


class CoreSet(Strategy):
    """Greedy k-center on the features (``coreset``; Sener & Savarese), labeled rows as centres.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [10.0], [4.0]])
    >>> CoreSet().query(None, 2, labeled=[0], features=X).tolist()
    [2, 3]
    """

    name = "coreset"
    needs_probs = False
    needs_features = True

    def _select(self, probs, budget, labeled, features):
        if features is None:
            raise ValueError("coreset needs the pool features (features=None)")
        if labeled is None:
            labeled = np.empty(0, dtype=np.int64)
        features = _keep_library(features)
        if isinstance(features, np.ndarray):
            # nearest-labeled distances kept between this run's queries (same picks)
            if getattr(self, "_kc_state", None) is None:
                self._kc_state = af.KCenterState()
            return QueryResult(
                af.kcenter_greedy(features, labeled, budget, state=self._kc_state)
            )
        return QueryResult(af.kcenter_greedy(features, labeled, budget))

    def reset(self) -> None:
        super().reset()
        self._kc_state = None


def _confidence(probs: np.ndarray) -> np.ndarray:
    return 1 - af.least_confidence(probs)


def _neg_entropy(probs: np.ndarray) -> np.ndarray:
    # log(C) - H(p) >= 0 for rows that sum to 1; clip the rounding below zero that a
    # near-uniform row can produce, since alamp_score rejects negative certainties.
    h = af.entropy(probs)
    return np.maximum(np.log(probs.shape[1]).astype(h.dtype) - h, 0)


_CERTAINTIES: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "margin": None,  # computed with the top class in one top2_margin pass
    "confidence": _confidence,
    "neg_entropy": _neg_entropy,
}


def alamp_ranking(cur, top_class, prev, prev_top):
    """The alamp ranking of a pool from its current and previous certainty.

    Parameters
    ----------
    cur : (n,) current certainty (margin by default); top_class : (n,) current prediction
    prev : (n,) previous certainty, NaN for rows with none; prev_top : (n,) previous top class,
        -1 for rows with none

    Returns
    -------
    scores, largest, pseudo_class
        With no previous value at all (first iteration): the certainty itself, ``largest=False``
        (margin sampling). Otherwise the alamp score, rows without a previous value scored as if
        it were :data:`NEW_ROW_PREV_CERTAINTY` (ordered among themselves as margin sampling
        would), ``largest=True``; the pseudo-class is the previous top class, or the current
        one for rows without a previous value. Shared by :class:`Alamp` and the adapters of
        :mod:`alamp_fast.integrations`.
    """
    has_prev = ~np.isnan(prev)
    if not has_prev.any():
        return cur, False, top_class
    filled = np.where(has_prev, prev, NEW_ROW_PREV_CERTAINTY).astype(cur.dtype)
    pseudo_class = np.where(prev_top >= 0, prev_top, top_class)
    return af.alamp_score(filled, cur), True, pseudo_class


class Alamp(Strategy):
    """The paper's alamp: largest relative drop of certainty since the previous iteration.

    Each query scores every pool row with ``(prev - cur) / (prev + cur)``
    (:func:`alamp_fast.alamp_score`), where ``cur`` is the row's certainty under the current
    model and ``prev`` the one under the previous model, and returns the highest scores. The
    state is ``prev_margin`` (the certainty, whatever the measure) and ``prev_top_class`` per
    pool row; see the module docstring for rows without a previous value (margin fallback).

    ``alamp-div`` applies Algorithm 1 (:func:`alamp_fast.diversify`) with the *previous*
    iteration's top class as pseudo-class (the current top class for rows that have none).

    Parameters
    ----------
    diverse : bool
        ``alamp-div`` when true.
    certainty : {"margin", "confidence", "neg_entropy"} or callable
        The certainty measure compared across iterations (non-negative, higher = more
        certain): top-2 margin (default), top probability, or ``log(C) - entropy``; a callable
        ``probs -> (n_pool,)`` array of non-negative values is accepted too.

    Examples
    --------
    >>> import numpy as np
    >>> s = Alamp()
    >>> p0 = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    >>> s.query(p0, 1).tolist()          # first iteration: margin ordering
    [1]
    >>> p1 = np.array([[0.6, 0.4], [0.55, 0.45], [0.8, 0.2]])
    >>> s.query(p1, 1, labeled=[1]).tolist()   # row 0: margin 0.8 -> 0.2, the largest drop
    [0]
    """

    def __init__(self, *, diverse: bool = False, certainty="margin") -> None:
        super().__init__()
        self.diverse = bool(diverse)
        self.name = "alamp-div" if self.diverse else "alamp"
        if callable(certainty):
            self._certainty_fn = certainty
        elif certainty in _CERTAINTIES:
            self._certainty_fn = _CERTAINTIES[certainty]
        else:
            raise ValueError(
                f"certainty={certainty!r} is not one of {sorted(_CERTAINTIES)} or a callable"
            )
        self.certainty = certainty
        self.accepts_margin = self._certainty_fn is None
        self.prev_margin: np.ndarray | None = None
        self.prev_top_class: np.ndarray | None = None

    def _aligned_state(self, n_pool: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        if self.prev_margin is None:
            return np.full(n_pool, np.nan, dtype=dtype), np.full(n_pool, -1, dtype=np.int64)
        n_prev = self.prev_margin.shape[0]
        if n_pool < n_prev:
            raise ValueError(
                f"the pool has {n_pool} rows but the alamp state has {n_prev}: call "
                "remap(old_rows) to say which old row each new row is"
            )
        prev = np.full(n_pool, np.nan, dtype=dtype)
        prev[:n_prev] = self.prev_margin
        prev_top = np.full(n_pool, -1, dtype=np.int64)
        prev_top[:n_prev] = self.prev_top_class
        return prev, prev_top

    def scores(self, probs) -> tuple[np.ndarray, bool, np.ndarray]:
        """The ranking a query would use, without changing the state.

        Returns
        -------
        scores : ndarray (n_pool,)
            alamp scores, or the certainty itself when no row has a previous value.
        largest : bool
            Whether higher scores rank first (False only in the certainty fallback).
        pseudo_class : ndarray of int64 (n_pool,)
            The pseudo-class alamp-div diversifies over.
        """
        cur, top_class, _ = self._current(probs)
        return self._rank(cur, top_class)

    def _current(self, probs, margin=None, top_class=None):
        """Certainty and top class per row, as numpy (the state keeps them), and the margin
        in the caller's array library."""
        if margin is not None or top_class is not None or self._certainty_fn is None:
            margin, top_class = _margin_inputs(probs, margin, top_class, self.name)
            cur = margin
        else:
            probs = _as_probs(probs, self.name)
            margin, top_class = af.top2_margin(probs)
            cur = self._certainty_fn(probs)
        n_pool = top_class.shape[0]
        if _is_dask(top_class):
            import dask

            # One pass over the pool on its workers, and 16 bytes a row back: the state needs
            # them here anyway. Ranking them here too, rather than on the workers, spares
            # sending the previous state (8-16 bytes a row) back out in the task graph.
            cur, top_class = dask.compute(cur, top_class)
            margin = cur if self._certainty_fn is None else margin
        cur = _to_numpy(cur)
        if cur.shape != (n_pool,):
            raise ValueError(f"certainty returned shape {cur.shape}, expected ({n_pool},)")
        return cur, _to_numpy(top_class).astype(np.int64, copy=False), margin

    def _rank(self, cur, top_class):
        prev, prev_top = self._aligned_state(cur.shape[0], cur.dtype)
        return alamp_ranking(cur, top_class, prev, prev_top)

    def _select(self, probs, budget, labeled, features, margin=None, top_class=None):
        cur, top, margin = self._current(probs, margin, top_class)
        scores, largest, pseudo_class = self._rank(cur, top)
        if self.diverse:
            picks = af.diversify(scores, pseudo_class, budget, exclude=labeled, largest=largest)
        else:
            picks = af.select_top(scores, budget, exclude=labeled, largest=largest)
        # Only now, after the selection succeeded: a failed query leaves the state untouched.
        self.prev_margin = np.array(cur, copy=True)
        self.prev_top_class = np.array(top, dtype=np.int64, copy=True)
        return QueryResult(picks, scores, largest, margin, top)

    def remap(self, old_rows) -> None:
        """Re-index the state after the pool was reordered, shrunk or grown.

        Parameters
        ----------
        old_rows : array of int, shape (n_new_pool,)
            For each row of the new pool, its row in the old pool, or ``-1`` if it is new
            (it then has no previous certainty: margin fallback).

        Examples
        --------
        >>> import numpy as np
        >>> s = Alamp()
        >>> _ = s.query(np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]]), 1)
        >>> s.remap([2, -1, 0])     # old row 1 left the pool, a new row came in second
        >>> np.round(s.state_dict()["prev_margin"], 2).tolist()
        [0.4, nan, 0.8]
        """
        old_rows = np.asarray(old_rows)
        if old_rows.ndim != 1 or not np.issubdtype(old_rows.dtype, np.integer):
            raise ValueError(
                f"old_rows must be 1-D integers, got {old_rows.dtype} {old_rows.shape}"
            )
        if self.prev_margin is None:
            return
        n_prev = self.prev_margin.shape[0]
        bad = (old_rows < -1) | (old_rows >= n_prev)
        if bad.any():
            raise ValueError(
                f"old_rows[{int(np.flatnonzero(bad)[0])}]={int(old_rows[bad][0])} is outside "
                f"-1..{n_prev - 1}"
            )
        kept = old_rows[old_rows >= 0]
        if np.unique(kept).size != kept.size:
            raise ValueError("old_rows maps two new rows to the same old row")
        known = old_rows >= 0
        prev = np.full(old_rows.shape[0], np.nan, dtype=self.prev_margin.dtype)
        prev[known] = self.prev_margin[old_rows[known]]
        prev_top = np.full(old_rows.shape[0], -1, dtype=np.int64)
        prev_top[known] = self.prev_top_class[old_rows[known]]
        self.prev_margin, self.prev_top_class = prev, prev_top

    def state_dict(self):
        """``iteration``, ``prev_margin`` (NaN: none) and ``prev_top_class`` (-1: none).

        Before the first query the two arrays have length 0.
        """
        state = super().state_dict()
        if self.prev_margin is None:
            state["prev_margin"] = np.empty(0, dtype=np.float64)
            state["prev_top_class"] = np.empty(0, dtype=np.int64)
        else:
            state["prev_margin"] = self.prev_margin.copy()
            state["prev_top_class"] = self.prev_top_class.copy()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        prev = np.asarray(state["prev_margin"])
        prev_top = np.asarray(state["prev_top_class"])
        if prev.ndim != 1 or prev_top.shape != prev.shape:
            raise ValueError(
                f"prev_margin {prev.shape} and prev_top_class {prev_top.shape} must be 1-D "
                "arrays of the same length"
            )
        if not np.issubdtype(prev.dtype, np.floating):
            raise ValueError(f"prev_margin must be floating point, got {prev.dtype}")
        if not np.issubdtype(prev_top.dtype, np.integer):
            raise ValueError(f"prev_top_class must be integers, got {prev_top.dtype}")
        missing = np.isnan(prev)
        if not np.array_equal(missing, prev_top < 0):
            raise ValueError(
                "prev_margin is NaN exactly where prev_top_class is -1, and not elsewhere"
            )
        if np.isinf(prev).any() or (prev[~missing] < 0).any():
            raise ValueError("prev_margin must be finite and non-negative (NaN for none)")
        if prev.size == 0:
            self.prev_margin = self.prev_top_class = None
        else:
            self.prev_margin = prev.copy()
            self.prev_top_class = prev_top.astype(np.int64, copy=True)

    def reset(self):
        super().reset()
        self.prev_margin = self.prev_top_class = None


_FACTORIES: dict[str, Callable[..., Strategy]] = {
    "random": lambda **kw: RandomSampling(**kw),
    "random-div": lambda **kw: RandomSampling(diverse=True, **kw),
    "margin": lambda **kw: MarginSampling(**kw),
    "margin-div": lambda **kw: MarginSampling(diverse=True, **kw),
    "entropy": lambda **kw: EntropySampling(**kw),
    "least_confidence": lambda **kw: LeastConfidenceSampling(**kw),
    "coreset": lambda **kw: CoreSet(**kw),
    "alamp": lambda **kw: Alamp(**kw),
    "alamp-div": lambda **kw: Alamp(diverse=True, **kw),
}
_USES_SEED = {"random", "random-div"}


def canonical_name(name: str) -> str:
    """The canonical spelling of a strategy name (``rand-div`` -> ``random-div``).

    Raises
    ------
    ValueError
        If ``name`` is not a known strategy or alias.
    """
    if not isinstance(name, str):
        raise TypeError(f"strategy name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _FACTORIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return key


def get_strategy(name: str, *, seed: int | None = None, **kwargs) -> Strategy:
    """Build a fresh strategy by name.

    Parameters
    ----------
    name : str
        One of :data:`STRATEGIES` (or an alias in :data:`ALIASES`).
    seed : int, optional
        Used by ``random`` and ``random-div``; ignored by the deterministic strategies.
    **kwargs
        Passed to the strategy class (e.g. ``certainty="confidence"`` for alamp).

    Examples
    --------
    >>> get_strategy("alamp-div")
    Alamp(name='alamp-div', iteration=0)
    >>> get_strategy("rand-div", seed=3).name
    'random-div'
    """
    key = canonical_name(name)
    if key in _USES_SEED:
        kwargs["seed"] = seed
    return _FACTORIES[key](**kwargs)
