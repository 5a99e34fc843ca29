"""status: rounds, counts per class, ir, the lock's holder, the cross-validated accuracy."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from alamp_fast.workflow.errors import PoolChangedError
from alamp_fast.workflow.lock import _holder_alive, _ProjectLock, _read_lock_info, _write_lock_info
from alamp_fast.workflow.pool import checked_pool
from alamp_fast.workflow.select import _run_seed
from alamp_fast.workflow.storage import _remove_stale_temps


def status(proj, *, cv: int = 5) -> dict:
    """:meth:`Project.status <alamp_fast.workflow.Project.status>` of the project ``proj``."""
    from alamp_fast.al.imbalance import imbalance_ratio

    st = proj._reload()
    classes = st.meta["classes"]
    y = st.current_labels()
    labeled = st.training_rows(y)
    counts = np.bincount(y[labeled], minlength=len(classes))
    pending: list[str] = []
    if st.n_rounds:
        rows = st.batch_rows(st.n_rounds)
        pending = st.ids[rows[y[rows] < 0]].tolist()
    cv_result, cv_note = None, None
    if cv:
        cv_result, cv_note = _cross_validate(st, y, labeled, int(cv), proj._pool_override)
    holder = lock_status(proj.path)
    return {
        "project": str(proj.path),
        "settings": dict(st.meta["settings"]),
        "classes": list(classes),
        "pool": dict(st.meta["pool"]),
        "rounds": st.n_rounds,
        "history": list(st.meta["rounds"]),
        "ingests": list(st.meta["ingests"]),
        "n_pool": st.n_pool,
        "n_labeled": int(labeled.size),
        "n_label_events": int(st.labels["row"].size),
        "pending": pending,
        "class_counts": dict(zip(classes, counts.tolist(), strict=True)),
        "ir": imbalance_ratio(counts) if labeled.size else None,
        "cv": cv_result,
        "cv_note": cv_note,
        "lock": holder,
    }


def lock_status(directory: Path) -> dict | None:
    """The lock record with ``stale``; a stale one (its holder died) is cleared here.

    A record is stale when nobody holds the lock: the kernel released it when its holder
    died. Clearing it (and the holder's temp files) takes the lock for an instant, so it
    never disturbs a running operation; on a read-only project it is only reported.
    """
    info = _read_lock_info(directory)
    if not info:
        return None
    try:
        fd = _ProjectLock.try_lock(directory)
    except OSError:
        return {**info, "stale": None, "cleared": False}
    if fd is None:
        return {**info, "stale": False, "cleared": False}
    try:
        info = _read_lock_info(directory)  # as of now, under the lock
        if not info:
            return None
        cleared = False
        with contextlib.suppress(OSError):
            _write_lock_info(directory, b"")
            _remove_stale_temps(directory)
            cleared = True
        return {**info, "stale": True, "alive": _holder_alive(info), "cleared": cleared}
    finally:
        _ProjectLock.release(fd)


def _cross_validate(st, y, labeled, folds, override=None):
    from sklearn.model_selection import StratifiedKFold, cross_validate

    from alamp_fast.al.datasets import l2_normalize
    from alamp_fast.al.imbalance import IMBALANCED_IR, imbalance_ratio
    from alamp_fast.al.protocol import make_classifier  # as select's (a wrapper set there)

    settings = st.meta["settings"]
    yl = y[labeled]
    counts = np.bincount(yl, minlength=len(st.meta["classes"]))
    if (counts > 0).sum() < 2:
        return None, "needs labels of at least 2 classes"
    k = min(folds, int(counts.max()))
    if k < 2:
        return None, "needs a class with at least 2 labels"
    try:
        X, _, _ = checked_pool(st, override)
    except (PoolChangedError, FileNotFoundError, ValueError) as exc:
        return None, f"pool unavailable: {exc}"
    X = X[labeled]
    if settings["normalize"]:
        X = l2_normalize(X)
    cost_sensitive = settings["cost_sensitive"]
    if cost_sensitive is None:
        cost_sensitive = imbalance_ratio(counts) >= IMBALANCED_IR
    run_seed = _run_seed(settings["seed"])
    clf = make_classifier(
        settings["classifier"], cost_sensitive=cost_sensitive, random_state=run_seed
    )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=run_seed)
    try:
        with warnings.catch_warnings():
            # a class with fewer labels than folds: sklearn warns, the estimate is still fine
            warnings.simplefilter("ignore", UserWarning)
            res = cross_validate(
                clf,
                X,
                yl,
                cv=splitter,
                scoring=("accuracy", "balanced_accuracy"),
                error_score="raise",
            )
    except ValueError as exc:
        return None, f"cross-validation failed: {exc}"
    acc = res["test_accuracy"]
    return {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "balanced_accuracy": float(res["test_balanced_accuracy"].mean()),
        "folds": k,
        "n_labels": int(labeled.size),
    }, None
