"""The one active-learning loop, for every training scheme, and its resumable checkpoints.

Why one module of this size: the loop and its checkpoints are one contract (a resumed run must
repeat the loop's exact order of draws and records).

A *scheme* says how a model is trained and how it scores the pool; the loop does the rest,
identically for the SVM scheme (:func:`alamp_fast.al.protocol.simulate`) and the fine-tuning
scheme (:func:`alamp_fast.finetune.scheme.simulate_ft`):

* for every run ``r``: the initial batch, ``init`` pool rows drawn with
  :func:`~alamp_fast.al.results.run_seed`, the same for every strategy;
* for every strategy: train on the labeled rows, evaluate on the test split (accuracy and
  balanced accuracy from ``np.bincount``), record the per-class labeled counts and their
  ``ir``; then ``iterations`` times: let the scheme score the pool (:class:`PoolView`), ask
  the strategy for ``step`` rows, check them, label them, retrain, evaluate;
* after every finished (strategy, run): hand the :class:`RunRecord` to the
  :class:`Checkpoint`, which writes it atomically, so an interrupted simulation resumes
  where it stopped, with the same final numbers.

The scheme object (duck-typed) provides::

    X_pool, X_test                     indexable by row (features, images, ...)
    new_classifier(run_seed, iteration) -> an unfitted classifier (fit, predict)
    pool_view(clf, strategy) -> PoolView   what the strategy reads, computed once

A classifier with ``warm_start=True`` (:class:`~alamp_fast.svm.SVCCV`, the ``af-svm-cv``
classifier, or a user's estimator with that parameter) is built once per (run, strategy) and
refitted at every iteration, so each fit starts from the previous one (:func:`keeps_warm`);
every other classifier is built afresh at every iteration.

``pool_view`` is where a scheme takes the fused path: a strategy with ``accepts_margin``
gets the pool's top-2 margins and top classes (e.g. from ``predict_top2_margin``), never the
``(n_pool, n_classes)`` probability matrix.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# make_progress: the package's one progress display (a bar with an ETA on a terminal only)
from alamp_fast._progress import make_progress
from alamp_fast._validate import check_int as _check_int
from alamp_fast.al.imbalance import imbalance_ratio, induce_imbalance
from alamp_fast.al.results import RECORD_ARRAYS, RunRecord, run_seed

__all__ = [
    "Checkpoint",
    "PoolView",
    "ProtocolSetup",
    "array_digest",
    "check_int",
    "check_picks",
    "make_progress",
    "prepare_protocol",
    "remove_checkpoint",
    "run_protocol",
    "eval_scores",
    "keeps_warm",
    "warm_up",
]


@dataclass
class PoolView:
    """What a strategy reads at one iteration: ``probs`` or the fused ``margin``/``top_class``,
    and ``features`` (all optional, in the scheme's array library)."""

    probs: Any = None
    margin: Any = None
    top_class: Any = None
    features: Any = None


def check_int(name: str, value, low: int) -> int:
    """``value`` as an int ``>= low``; a ValueError naming ``name`` otherwise (bools refused):
    :func:`alamp_fast._validate.check_int`, the package's one integer check."""
    return _check_int(value, name, low=low)


def check_picks(key, picks, step, n_pool, is_labeled) -> None:
    """A strategy's picks: ``step`` distinct, unlabeled rows of the pool (user strategies may
    be wrong; a wrong batch would silently corrupt the budgets)."""
    if picks.shape != (step,):
        raise ValueError(f"strategy {key!r} returned {picks.shape} picks, expected ({step},)")
    if picks.size and (picks.min() < 0 or picks.max() >= n_pool):
        raise ValueError(f"strategy {key!r} returned rows outside 0..{n_pool - 1}")
    if np.unique(picks).size != picks.size or is_labeled[picks].any():
        raise ValueError(f"strategy {key!r} returned a duplicate or already-labeled row")


def eval_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    """``(accuracy, balanced accuracy)`` of class codes, with ``np.bincount``.

    The balanced accuracy is scikit-learn's: the mean recall over the classes present in
    ``y_true`` (a predicted class absent from ``y_true`` does not count).

    Examples
    --------
    >>> eval_scores(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    (0.75, 0.8333333333333334)
    """
    hit = y_pred == y_true
    accuracy = float(np.mean(hit)) if hit.size else 0.0
    support = np.bincount(y_true, minlength=n_classes)
    correct = np.bincount(y_true[hit], minlength=n_classes)
    present = support > 0
    balanced = float(np.mean(correct[present] / support[present])) if present.any() else 0.0
    return accuracy, balanced


def array_digest(*arrays) -> str:
    """A CRC-32 over the shapes, dtypes and bytes of ``arrays`` (the data a checkpoint is of)."""
    crc = 0
    for a in arrays:
        a = np.ascontiguousarray(a)
        crc = zlib.crc32(f"{a.dtype.str}{a.shape}".encode(), crc)
        crc = zlib.crc32(memoryview(a.reshape(-1).view(np.uint8)), crc)
    return f"{crc:08x}"


@dataclass
class ProtocolSetup:
    """The checked protocol: strategies, label codes, the pool rows, budgets and seeds."""

    names: list[str]
    objects: dict
    strategy_kwargs: dict
    y_pool: np.ndarray
    y_eval: np.ndarray
    n_classes: int
    pool_rows: np.ndarray
    pool_counts: np.ndarray
    pool_ir: float
    init: int
    step: int
    iterations: int
    runs: int
    seed: int
    targets: tuple = ()
    extra: dict = field(default_factory=dict)


def prepare_protocol(
    y_train,
    y_test,
    *,
    strategies: Sequence,
    canonical: Callable[[str], str],
    strategy_type: type,
    init,
    step,
    iterations,
    runs,
    seed,
    targets=(),
    imbalance=None,
    strategy_kwargs=None,
) -> ProtocolSetup:
    """Check the protocol's arguments and derive the pool (shared by both schemes).

    Labels become codes ``0..C-1`` of the pool's sorted classes; test labels must be classes
    of the pool. ``imbalance`` subsamples the pool (:func:`induce_imbalance` with ``seed``).
    """
    init = check_int("init", init, 2)
    step = check_int("step", step, 1)
    iterations = check_int("iterations", iterations, 0)
    runs = check_int("runs", runs, 1)
    seed = check_int("seed", seed, 0)
    targets = tuple(float(t) for t in targets)
    for t in targets:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"target accuracy {t} is not in [0, 1]")
    names: list[str] = []
    objects: dict = {}
    for s in strategies:
        if isinstance(s, strategy_type):
            key = s.name
            objects[key] = s
        else:
            key = canonical(s)
        if key in names:
            raise ValueError(f"strategy {key!r} is listed twice")
        names.append(key)
    if not names:
        raise ValueError("no strategies given")
    kwargs = {}
    for key, value in (strategy_kwargs or {}).items():
        ckey = canonical(key)
        if ckey not in names:
            raise ValueError(f"strategy_kwargs for {key!r}, which is not among {names}")
        kwargs[ckey] = value

    classes, y_pool = np.unique(np.asarray(y_train), return_inverse=True)
    y_pool = y_pool.reshape(-1)
    y_test = np.asarray(y_test)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_eval = np.fromiter((lookup.get(c, -1) for c in y_test.tolist()), np.int64, y_test.size)
    if (y_eval < 0).any():
        raise ValueError(
            f"test labels {np.unique(y_test[y_eval < 0])[:5].tolist()} are not classes of the pool"
        )
    n_classes = classes.size
    if n_classes < 2:
        raise ValueError(f"the pool has {n_classes} class; need at least 2")
    pool_rows = np.arange(y_pool.size)
    if imbalance is not None:
        pool_rows = induce_imbalance(y_pool, imbalance, seed)
    y_pool = y_pool[pool_rows]
    pool_counts = np.bincount(y_pool, minlength=n_classes)
    n_pool = y_pool.size
    budget = init + iterations * step
    if budget > n_pool:
        raise ValueError(
            f"init + iterations * step = {init} + {iterations} * {step} = {budget} exceeds the "
            f"{n_pool} pool samples"
        )
    return ProtocolSetup(
        names=names,
        objects=objects,
        strategy_kwargs=kwargs,
        y_pool=y_pool.astype(np.int64, copy=False),
        y_eval=y_eval,
        n_classes=int(n_classes),
        pool_rows=pool_rows,
        pool_counts=pool_counts,
        pool_ir=imbalance_ratio(pool_counts),
        init=init,
        step=step,
        iterations=iterations,
        runs=runs,
        seed=seed,
        targets=targets,
    )


# ----------------------------------------------------------------------------- checkpoints


def open_checkpoint(path, *, config: dict, dataset: dict, arrays, resume: bool):
    """The :class:`Checkpoint` of one simulation at ``path`` (None: no checkpoint), identified
    by its configuration, its dataset description and a digest of its data ``arrays``."""
    if path is None:
        return None
    meta = {"config": config, "dataset": dataset, "data": array_digest(*arrays)}
    return Checkpoint(path, meta, resume=resume)


class Checkpoint:
    """Per-(strategy, run) records of one simulation in a directory, written atomically.

    ``meta`` (JSON-ready) identifies the simulation: configuration, data digest. A directory
    written under another ``meta`` is refused. Without ``resume`` a directory that already
    holds records is refused too (nothing is overwritten by accident); with it, the records
    are loaded and :func:`run_protocol` skips them.

    Files: ``meta.json`` and one ``S###-R###.npz`` per finished (strategy, run), each written
    to a temporary file in the directory, flushed to disk and renamed into place. Nothing is
    created before the first record is saved.
    """

    def __init__(self, path, meta: dict, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.meta = json.loads(json.dumps(meta, default=str))
        meta_file = self.path / "meta.json"
        if meta_file.exists():
            try:
                old = json.loads(meta_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"checkpoint {meta_file} is unreadable: {exc}") from None
            existing = sorted(self.path.glob("S*-R*.npz"))
            if not resume and existing:
                raise ValueError(
                    f"{self.path} holds {len(existing)} finished run(s) of an interrupted "
                    "simulation: resume it (--resume, resume=True) or delete that directory"
                )
            if resume and old != self.meta:
                diff = sorted(
                    k for k in set(old) | set(self.meta) if old.get(k) != self.meta.get(k)
                )
                raise ValueError(
                    f"{self.path} is the checkpoint of another simulation (differs in "
                    f"{', '.join(diff)}); use another output directory or delete it"
                )
        self._ready = False  # the directory is created with the first record, not before

    def _ensure(self) -> None:
        if not self._ready:
            self.path.mkdir(parents=True, exist_ok=True)
            meta = json.dumps(self.meta, indent=1, sort_keys=True).encode()
            _atomic_write(self.path / "meta.json", meta)
            self._ready = True

    def _file(self, index: int, run: int) -> Path:
        return self.path / f"S{index:03d}-R{run:03d}.npz"

    def load(self, names: Sequence[str]) -> dict[tuple[str, int], RunRecord]:
        """The finished records, ``{(strategy, run): RunRecord}``."""
        done = {}
        for i, name in enumerate(names):
            for file in sorted(self.path.glob(f"S{i:03d}-R*.npz")):
                try:
                    with np.load(file, allow_pickle=False) as z:
                        if str(z["strategy"]) != name:
                            raise ValueError(f"holds strategy {str(z['strategy'])!r}")
                        rec = RunRecord(
                            strategy=name,
                            run=int(z["run"]),
                            seed=int(z["seed"]),
                            **{k: z[k] for k in RECORD_ARRAYS},
                        )
                        wall = float(z["wall_s"])
                except (OSError, KeyError, ValueError) as exc:
                    raise ValueError(f"checkpoint file {file} is damaged: {exc}") from None
                rec.wall_s = wall
                done[(name, rec.run)] = rec
        return done

    def save(self, index: int, rec: RunRecord, wall_s: float) -> None:
        """Write one finished (strategy, run) record, atomically."""
        import io

        self._ensure()
        buf = io.BytesIO()
        np.savez(
            buf,
            strategy=np.str_(rec.strategy),
            run=np.int64(rec.run),
            seed=np.int64(rec.seed),
            wall_s=np.float64(wall_s),
            **{k: getattr(rec, k) for k in RECORD_ARRAYS},
        )
        _atomic_write(self._file(index, rec.run), buf.getvalue())

    def clear(self) -> None:
        """Remove the directory (after the final results were written)."""
        remove_checkpoint(self.path)


def remove_checkpoint(path) -> None:
    """Delete a checkpoint directory's files (``meta.json``, records, stray temporaries)."""
    path = Path(path)
    if not path.is_dir():
        return
    for file in path.iterdir():
        if file.name == "meta.json" or file.suffix in (".npz", ".tmp"):
            file.unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:  # something else lives there: leave it
        pass


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ----------------------------------------------------------------------------- the loop


def run_protocol(
    setup: ProtocolSetup,
    scheme,
    make_strategy: Callable[[str, int], Any],
    *,
    progress=False,
    desc: str = "simulate",
    checkpoint: Checkpoint | None = None,
) -> tuple[dict[str, list[RunRecord]], float]:
    """Run every (run, strategy) of ``setup`` with ``scheme``; returns ``(records, total_s)``.

    ``make_strategy(name, run)`` builds the strategy for one run (objects the user passed are
    reset instead). With a ``checkpoint``, finished (strategy, run) pairs found there are
    taken as they are and every newly finished one is saved before the next starts.
    ``total_s`` is the simulation time, that of checkpointed runs included.
    """
    names, n_pool = setup.names, setup.y_pool.size
    done = checkpoint.load(names) if checkpoint is not None else {}
    per_run = setup.iterations + 1
    total = setup.runs * len(names) * per_run
    bar = make_progress(progress, total, desc, initial=len(done) * per_run)
    records: dict[str, list[RunRecord]] = {k: [] for k in names}
    spent_before = sum(getattr(r, "wall_s", 0.0) for r in done.values())
    t_start = time.perf_counter()
    try:
        for run in range(setup.runs):
            rseed = run_seed(setup.seed, run)
            rng = np.random.default_rng(rseed)
            initial = rng.choice(n_pool, size=setup.init, replace=False).astype(np.int64)
            if np.unique(setup.y_pool[initial]).size < 2:
                raise ValueError(
                    f"run {run}: the initial batch of {setup.init} samples holds a single "
                    "class; use a larger init"
                )
            for index, key in enumerate(names):
                if (key, run) in done:
                    records[key].append(done[(key, run)])
                    continue
                if key in setup.objects:
                    strategy = setup.objects[key]
                    strategy.reset()
                else:
                    strategy = make_strategy(key, run)
                t0 = time.perf_counter()
                rec = _one_run(setup, scheme, strategy, key, run, rseed, initial, bar)
                if checkpoint is not None:
                    checkpoint.save(index, rec, time.perf_counter() - t0)
                records[key].append(rec)
    finally:
        if bar is not None:
            bar.close()
    return records, spent_before + time.perf_counter() - t_start


def _one_run(setup, scheme, strategy, key, run, rseed, initial, bar) -> RunRecord:
    n_pool, n_classes, step = setup.y_pool.size, setup.n_classes, setup.step
    y_pool = setup.y_pool
    is_labeled = np.zeros(n_pool, dtype=bool)
    is_labeled[initial] = True
    order = [initial]
    n_points = setup.iterations + 1
    rec = {
        k: np.zeros(n_points)
        for k in ("accuracy", "balanced_accuracy", "ir", "fit_s", "predict_s", "query_s")
    }
    labeled_counts = np.zeros(n_points, dtype=np.int64)
    class_counts = np.zeros((n_points, n_classes), dtype=np.int64)
    clf = None
    for it in range(n_points):
        labeled = np.concatenate(order)
        t0 = time.perf_counter()
        if clf is None or not keeps_warm(clf):
            # one estimator per (run, strategy) where it warm-starts from its previous fit
            clf = scheme.new_classifier(rseed, it)
        clf.fit(scheme.X_pool[labeled], y_pool[labeled])
        t1 = time.perf_counter()
        y_pred = np.asarray(clf.predict(scheme.X_test))
        rec["accuracy"][it], rec["balanced_accuracy"][it] = eval_scores(
            setup.y_eval, y_pred, n_classes
        )
        counts = np.bincount(y_pool[labeled], minlength=n_classes)
        class_counts[it] = counts
        labeled_counts[it] = labeled.size
        rec["ir"][it] = imbalance_ratio(counts)
        rec["fit_s"][it] = t1 - t0
        if it < setup.iterations:
            view = scheme.pool_view(clf, strategy)
            t3 = time.perf_counter()
            result = strategy.query_result(
                view.probs,
                step,
                labeled=labeled,
                features=view.features,
                margin=view.margin,
                top_class=view.top_class,
            )
            t4 = time.perf_counter()
            picks = _host_int64(result.picks)
            check_picks(key, picks, step, n_pool, is_labeled)
            is_labeled[picks] = True
            order.append(picks)
            rec["predict_s"][it] = t3 - t1
            rec["query_s"][it] = t4 - t3
        else:
            rec["predict_s"][it] = time.perf_counter() - t1
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"run {run} {key} n={labeled.size}", refresh=False)
    return RunRecord(
        strategy=key,
        run=run,
        seed=rseed,
        labeled=labeled_counts,
        class_counts=class_counts,
        order=np.concatenate(order),
        **rec,
    )


def keeps_warm(clf) -> bool:
    """Whether the loop refits ``clf`` in the next iteration instead of building a new one.

    True for an estimator whose ``warm_start`` parameter is True (scikit-learn's convention:
    :class:`~alamp_fast.svm.SVCCV` keeps its fold solutions and starts the next ``fit`` from
    them). Such a refit on the grown labeled set solves the same problems as a fresh
    estimator would; ``SVCCV`` keeps the folds of rows seen before, so its cross-validation
    folds differ from a fresh fit's, and only where two ``C`` score within noise of each
    other can its choice of ``C`` (and so the picks) differ from a cold run's.
    """
    flag = getattr(clf, "warm_start", False)
    return isinstance(flag, (bool, np.bool_)) and bool(flag)


def _host_int64(picks) -> np.ndarray:
    kind = type(picks).__module__.split(".")[0]
    if kind == "cupy":
        picks = picks.get()
    elif kind == "torch":
        picks = picks.detach().cpu().numpy()
    return np.asarray(picks, dtype=np.int64)


def warm_up(
    names, objects, strategy_kwargs, make, n_classes, features, probs_dtype=np.float64
) -> None:
    """Query every named strategy twice on a small slice (numba compiles on first use: without
    this the first query of a run would carry seconds of compilation in its query time).
    ``make(name, seed=0, **kwargs)`` builds a strategy; user objects are not touched."""
    n = min(features.shape[0], 64)
    if n < 4:
        return
    rng = np.random.default_rng(0)
    probs = rng.random((n, n_classes)).astype(probs_dtype)
    labeled = np.arange(2, dtype=np.int64)
    for key in names:
        if key in objects:
            continue
        strategy = make(key, seed=0, **strategy_kwargs.get(key, {}))
        for _ in range(2):  # the second query exercises alamp's stateful path
            strategy.query(probs, 2, labeled=labeled, features=features[:n])
