"""select: one round, from its kind to its committed batch (the pool scored in one call)."""

from __future__ import annotations

import contextlib
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from alamp_fast._backend import array_library
from alamp_fast.workflow import pool as _pool
from alamp_fast.workflow.cluster import _retry_on_cluster
from alamp_fast.workflow.errors import CLI_MESSAGES, OptionError, _check_positive_int, _opt
from alamp_fast.workflow.export import Batch, _batch_from_state, _batch_name, _write_batch_csv
from alamp_fast.workflow.pool import checked_pool
from alamp_fast.workflow.state import _commit
from alamp_fast.workflow.storage import BATCH_DIR, _fault, _now_iso, _remove_stale_copies


def _run_seed(seed: int) -> int:
    # simulate()'s seed of run 0: a project with seed s reproduces simulate(seed=s, runs=1).
    from alamp_fast.al.results import derive_seed

    return derive_seed(seed, 0)


def _make_strategy(settings: dict):
    from alamp_fast.al.results import derive_seed
    from alamp_fast.al.strategies import get_strategy

    name = settings["strategy"]
    seed = derive_seed(settings["seed"], 0, zlib.crc32(name.encode()))
    try:
        return get_strategy(name, seed=seed, **settings["strategy_kwargs"])
    except TypeError as exc:
        kwargs = settings["strategy_kwargs"]
        if CLI_MESSAGES.get() and set(kwargs) == {"certainty"}:  # the one the CLI passes
            raise ValueError(
                f"--certainty {kwargs['certainty']} does not apply to strategy {name!r} "
                "(only alamp and alamp-div take a certainty measure)"
            ) from None
        raise ValueError(f"strategy_kwargs {kwargs} do not fit strategy {name!r}: {exc}") from None
    except ValueError as exc:
        kwargs = settings["strategy_kwargs"]
        if CLI_MESSAGES.get() and "certainty" in kwargs:
            raise ValueError(f"--certainty {kwargs['certainty']}: {exc}") from None
        raise


# Strategies whose batch CSV carries their ranking value (QueryResult.scores) as the score.
_RANKED = ("margin", "margin-div", "entropy", "least_confidence", "alamp", "alamp-div")


def _fresh_strategy(settings: dict, state: dict):
    """The project's strategy with the state it committed (its memory of earlier rounds)."""
    strategy = _make_strategy(settings)
    strategy.load_state_dict(state)
    return strategy


def _score_step(clf, X) -> int:
    """Rows per scoring chunk with progress: the classifier's own chunk (8 MiB of float64
    probabilities) or the pool's read block (64 MiB of features), the smaller."""
    n_cols = max(2, np.asarray(clf.classes_).size)
    own = max(1, (8 << 20) // (8 * n_cols))
    block = max(1, _pool._POOL_BLOCK_BYTES // max(1, X.shape[1] * X.itemsize))
    return min(own, block)


def _chunked(clf, progress) -> bool:
    # a classifier that scores row chunk by row chunk (SoftmaxLinearSVC, the default's) is
    # walked through its chunks here when progress is wanted; the values are its own
    return progress is not None and hasattr(clf, "_proba_chunks")


def _score_pool(clf, X: np.ndarray, n_classes: int, progress=None):
    """Top-2 margin and top class of every pool row (the fused path): one scoring pass.

    :func:`~alamp_fast.al.classifiers.pool_top2_margin`, one call of the classifier. With
    ``progress``, a classifier that scores chunk by chunk (``_proba_chunks``) is walked
    through its chunks here, still one call, ``progress("score", rows_done, n_rows)`` after
    each, with the values of its ``predict_top2_margin`` bit for bit (each row's values are
    its own, whatever rows it is scored with); any other classifier reports at the end.
    """
    import alamp_fast as af
    from alamp_fast.al import protocol

    n = X.shape[0]
    cols = np.asarray(clf.classes_, dtype=np.int64)
    if not (_chunked(clf, progress) and hasattr(clf, "predict_top2_margin") and cols.size >= 2):
        margin, top = protocol.pool_top2_margin(clf, X, n_classes)
        if progress is not None:
            progress("score", n, n)
        return margin, top
    margin = np.empty(n, dtype=np.float64)
    top = np.empty(n, dtype=np.int64)
    for a, p in clf._proba_chunks(X, _score_step(clf, X)):
        m, t = af.top2_margin(p)
        margin[a : a + p.shape[0]] = m
        top[a : a + p.shape[0]] = t
        progress("score", a + p.shape[0], n)
    if not (cols.size == n_classes and np.array_equal(cols, np.arange(n_classes))):
        top = cols[top]  # global class codes, as pool_top2_margin returns them
    return margin, top


def _pool_probs(clf, X: np.ndarray, n_classes: int, progress=None) -> np.ndarray:
    """:func:`~alamp_fast.al.classifiers.pool_probs` of a local pool (float64), for the
    strategies that need the probability matrix; progress as in :func:`_score_pool`."""
    from alamp_fast.al import protocol

    n = X.shape[0]
    if not _chunked(clf, progress):
        probs = protocol.pool_probs(clf, X, n_classes)
        if progress is not None:
            progress("score", n, n)
        return probs
    cols = np.asarray(clf.classes_, dtype=np.int64)
    full = cols.size == n_classes and np.array_equal(cols, np.arange(n_classes))
    probs = np.zeros((n, n_classes), dtype=np.float64)
    for a, p in clf._proba_chunks(X, _score_step(clf, X)):
        if full:
            probs[a : a + p.shape[0]] = p
        else:
            probs[a : a + p.shape[0], cols] = p
        progress("score", a + p.shape[0], n)
    return probs


def _check_picks(picks: np.ndarray, b: int, y: np.ndarray) -> None:
    # The batch is committed for good; a wrong one would silently corrupt every later round.
    if picks.shape != (b,) or np.unique(picks).size != b or (y[picks] >= 0).any():
        raise RuntimeError(
            f"internal error: the selection {picks[:10].tolist()} is not {b} "
            "distinct unlabeled rows"
        )


def _batch_rows(rows: np.ndarray, *values) -> list:
    """``v[rows]`` of every array of ``values`` as numpy (None for None).

    Dask arrays are computed together, in one pass over the pool, and only those rows come
    back.
    """
    picked = [None if v is None else v[rows] for v in values]
    if any(array_library(v) == "dask" for v in picked):
        import dask

        picked = list(dask.compute(*picked))
    return picked


def _kcenter_distances(X: np.ndarray, labeled: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """For each pick, its distance to the nearest labeled row or earlier pick (k-center's gain)."""
    from scipy.spatial.distance import cdist

    centres = np.concatenate([labeled, picks])
    d = cdist(X[picks].astype(np.float64), X[centres].astype(np.float64))
    out = np.full(picks.size, np.nan)
    for j in range(picks.size):
        allowed = d[j, : labeled.size + j]
        if allowed.size:
            out[j] = allowed.min()
    return out


def select_round(
    proj,
    *,
    budget: int | None = None,
    allow_partial: bool = False,
    out=None,
    scheduler: str | None = None,
    chunk_rows: int | None = None,
    progress=None,
):
    """:meth:`Project.select <alamp_fast.workflow.Project.select>` on the project ``proj``."""
    import alamp_fast as af
    from alamp_fast.al.imbalance import IMBALANCED_IR, imbalance_ratio
    from alamp_fast.al.strategies import Strategy

    # alamp_fast.al.protocol (scikit-learn: seconds of start-up) only where a round needs it

    if chunk_rows is not None:
        if scheduler is None:
            raise OptionError(
                f"{_opt('chunk_rows', chunk_rows)} only applies with {_opt('scheduler')}"
            )
        from alamp_fast.al.loop import check_int

        try:
            chunk_rows = check_int("chunk_rows", chunk_rows, 1)
        except (TypeError, ValueError) as exc:
            raise OptionError(str(exc)) from None
    if budget is not None:
        try:
            budget = _check_positive_int("budget", budget)
        except (TypeError, ValueError) as exc:
            raise OptionError(str(exc)) from None
    # connected before the lock: a wrong address fails at once, whatever the round
    try:
        if scheduler is None:
            cluster = contextlib.nullcontext()
        else:
            from alamp_fast.al.protocol import _connect

            cluster = _connect(scheduler)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    if out is not None:
        out = Path(os.path.abspath(os.fspath(out)))
        if out.is_dir():
            raise OptionError(f"{_opt('out', out)} is a directory; give a file name")
    with cluster as client, proj._lock("select") as lock:
        _fault("select:locked")
        st = proj._enter(lock)
        if out is not None:
            _remove_stale_copies(out)
        settings = st.meta["settings"]
        last = st.n_rounds
        if last:
            rows = st.batch_rows(last)
            pending = rows[st.current_labels()[rows] < 0]
            if pending.size == rows.size:
                # Not one label since round `last` was made: whatever the options, that
                # round is delivered (again), never followed by another. A crash after
                # its commit, before or after its CSV, is resumed by re-running the same
                # command (with --budget N or --allow-partial too); a new round now would
                # train on the same labels and skip one the annotators never saw.
                if budget is None or int(budget) == rows.size:
                    proj._state = st
                    return _reissue(proj.path, st, last, out)
                raise ValueError(
                    f"round {last}: {pending.size} of {rows.size} samples have no label yet, "
                    f"and a round is not followed by another before it has a label; label "
                    f"its batch ({BATCH_DIR}/{_batch_name(last)}; "
                    f"{_opt('budget', budget)} would be the size of the next round)"
                )
            if pending.size and not allow_partial:
                raise ValueError(
                    f"round {last}: {pending.size} of {rows.size} samples have no label yet "
                    f"(e.g. {', '.join(repr(str(i)) for i in st.ids[pending[:3]])}); label "
                    f"them, or select with {_opt('allow_partial', True)} to start "
                    f"round {last + 1} without them"
                )
        # a random round (nothing or one class labeled) needs no feature at all
        y_now = st.current_labels()
        needs_model = np.unique(y_now[y_now >= 0]).size >= 2
        X, ids, pool_meta = checked_pool(
            st, proj._pool_override, normalize=settings["normalize"], features=needs_model,
            progress=progress,
        )
        n_grown = pool_meta["n_rows"] - st.n_pool
        st.ids = ids
        st.meta["pool"] = pool_meta
        n_pool = pool_meta["n_rows"]
        classes = st.meta["classes"]
        n_classes = len(classes)
        y = st.current_labels(n_pool)
        labeled = st.training_rows(y)
        n_unlabeled = n_pool - labeled.size
        round_no = last + 1
        n_seen = np.unique(y[labeled]).size
        if labeled.size == 0:
            kind, b = "initial", settings["init"]
        else:
            kind = "random" if n_seen < 2 else "strategy"
            b = settings["budget"]
        if budget is not None:
            b = _check_positive_int("budget", budget)
        if n_unlabeled == 0:
            raise ValueError(f"all {n_pool} pool samples are labeled; nothing to select")
        if b > n_unlabeled:
            raise ValueError(
                f"budget b={b} exceeds the {n_unlabeled} unlabeled samples of "
                f"the pool; pass a smaller {_opt('budget')}"
            )

        run_seed = _run_seed(settings["seed"])
        strategy: Strategy = _fresh_strategy(settings, st.strategy)
        nan = np.full(b, np.nan)
        scores, margins, pred = nan, nan.copy(), np.full(b, -1, dtype=np.int64)
        cost_sensitive = None
        if kind == "initial":
            # simulate()'s initial batch, draw for draw
            rng = np.random.default_rng(run_seed)
            picks = rng.choice(n_pool, size=b, replace=False).astype(np.int64)
        elif kind == "random":
            rng = np.random.default_rng([run_seed, round_no])
            picks = rng.choice(np.flatnonzero(y < 0), size=b, replace=False).astype(np.int64)
        else:
            # through alamp_fast.al.protocol (the former alamp_fast.protocol, the same module
            # object): a wrapper set there, as on simulate's classifiers, sees this round's
            from alamp_fast.al.protocol import _scatter_rows, make_classifier, pool_probs

            cost_sensitive = settings["cost_sensitive"]
            if cost_sensitive is None:
                counts = np.bincount(y[labeled], minlength=n_classes)
                cost_sensitive = imbalance_ratio(counts) >= IMBALANCED_IR
            # rows normalised while read: the classifier does not normalise them again
            # (as simulate() on unit rows)
            clf = make_classifier(
                settings["classifier"],
                cost_sensitive=cost_sensitive,
                random_state=run_seed,
                prenormalized=bool(settings["normalize"]),
            )
            if progress is not None:
                progress("fit", 0, int(labeled.size))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                clf.fit(X[labeled], y[labeled])
            if progress is not None:
                progress("fit", int(labeled.size), int(labeled.size))

            def query(strategy):
                if client is None and (strategy.accepts_margin or not strategy.needs_probs):
                    # the fused path (as simulate's): one scoring pass gives the margins
                    # and top classes, never the (n_pool, n_classes) probability matrix
                    margin_all, top_all = _score_pool(clf, X, n_classes, progress)
                    fused = (
                        {"margin": margin_all, "top_class": top_all}
                        if strategy.accepts_margin
                        else {}
                    )
                    res = strategy.query_result(None, b, labeled=labeled, features=X, **fused)
                    picks = np.asarray(res, dtype=np.int64)
                    ranking = res.scores if strategy.name in _RANKED else None
                    return (picks, *_batch_rows(picks, margin_all, top_all, ranking))
                # the pool, or its row chunks on the cluster's workers
                X_work = (
                    X if client is None else _scatter_rows(client, X, chunk_rows, n_classes)
                )
                probs = (
                    _pool_probs(clf, X, n_classes, progress)
                    if client is None
                    else pool_probs(clf, X_work, n_classes)
                )
                res = strategy.query_result(
                    probs if strategy.needs_probs else None,
                    b,
                    labeled=labeled,
                    features=X_work,
                )
                picks = np.asarray(res, dtype=np.int64)
                # the strategy's own values, computed once by its query
                ranking = res.scores if strategy.name in _RANKED else None
                if res.margin is not None and res.top_class is not None:
                    margin_all, top_all = res.margin, res.top_class
                else:
                    margin_all, top_all = af.top2_margin(probs)
                return (picks, *_batch_rows(picks, margin_all, top_all, ranking))

            if client is None:
                picks, margins, pred, ranked = query(strategy)
            else:
                strategy, (picks, margins, pred, ranked) = _retry_on_cluster(
                    client, lambda: _fresh_strategy(settings, st.strategy), query
                )
            margins = np.asarray(margins, dtype=np.float64)
            pred = np.asarray(pred, dtype=np.int64)
            if ranked is not None:
                scores = np.asarray(ranked, dtype=np.float64)
            elif strategy.name == "coreset":
                scores = _kcenter_distances(X, labeled, picks)
        # the pool's features are done with: freed before the state is serialised, so the
        # round's peak memory is the pool plus the scoring, not the pool plus the state
        X = None
        _fault("select:queried")
        _check_picks(picks, b, y)

        st.append(
            "batches",
            round=np.full(b, round_no),
            row=picks,
            score=scores,
            margin=margins,
            pred=pred,
        )
        st.strategy = strategy.state_dict()
        st.meta["rounds"].append(
            {
                "round": round_no,
                "time": _now_iso(),
                "kind": kind,
                "strategy": settings["strategy"] if kind == "strategy" else "random",
                "size": int(b),
                "n_labeled": int(labeled.size),
                "n_pool": int(n_pool),
                "new_rows": int(n_grown),
                "cost_sensitive": None if cost_sensitive is None else bool(cost_sensitive),
                "file": f"{BATCH_DIR}/{_batch_name(round_no)}",
                "discarded_pending": int((y[st.batch_rows(last)] < 0).sum()) if last else 0,
            }
        )
        _commit(proj.path, st, "select")
        proj._state = st
        batch = _batch_from_state(proj.path, st, round_no)
        _write_batch_csv(batch, st, fault="select:csv")
        if out is not None:
            _write_batch_csv(batch, st, path=Path(os.fspath(out)))
        _fault("select:done")
    return batch


def _reissue(directory: Path, st, round_no: int, out) -> Batch:
    batch = _batch_from_state(directory, st, round_no, reissued=True)
    if not batch.path.exists():
        _write_batch_csv(batch, st)
    if out is not None:
        _write_batch_csv(batch, st, path=Path(os.fspath(out)))
    return batch
