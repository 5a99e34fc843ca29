"""The paper's active-learning protocol, simulated with the labels of a fully labeled pool.

One *run*: draw a random initial batch of ``init`` pool rows; train the classifier on the
labeled rows and evaluate it on the test split; then ``iterations`` times: compute the
classifier's probabilities over the pool, ask the strategy for ``step`` more rows, label
them (reveal ``y``), retrain, evaluate. ``runs`` runs use different seeds; within a run every
strategy starts from the same initial batch. The paper's setting is ``init=200``,
``step=200``, ``iterations=15``.

Per iteration each run records: the labeled count, test accuracy and balanced accuracy,
per-class labeled counts and their imbalance ratio ``ir = std / mean``, and the wall time
of the fit, of the predictions (test set and pool probabilities) and of the query.

Classifiers
-----------
By name (:data:`~alamp_fast.al.classifiers.CLASSIFIERS`, ``linear-svc`` by default) or any
scikit-learn-compatible estimator: see :mod:`alamp_fast.al.classifiers`, which holds them and
the two ways a fitted one scores the pool; their names are re-exported here.

On a Dask cluster
-----------------
``simulate(..., scheduler="tcp://host:8786")`` (``alamp-fast simulate --scheduler``) sends the
pool features to the cluster's workers once, as row chunks (``chunk_rows``), and keeps them
there for the whole call. Every iteration the fitted classifier travels to the workers once,
each chunk's probabilities are computed where the chunk lives (:func:`pool_probs` of a dask
array) and the strategy selects on them through the dask implementations of the kernels; only
candidates (and alamp's per-row state) come back. Fits and test predictions stay on this
machine (they only see the labeled rows and the test split). The picks are those of the run
without a scheduler; see ``docs/distributed.md``.
"""

from __future__ import annotations

import numpy as np

from alamp_fast.al.classifiers import (
    CLASSIFIERS,
    SoftmaxLinearSVC,
    _decision_matrix,  # noqa: F401  (importable from here, as before the classifiers moved)
    _softmax,  # noqa: F401
    make_classifier,
    pool_probs,
    pool_top2_margin,
)
from alamp_fast.al.imbalance import IMBALANCED_IR
from alamp_fast.al.loop import (
    PoolView,
    check_int,
    check_picks,
    open_checkpoint,
    prepare_protocol,
    run_protocol,
    warm_up,
)
from alamp_fast.al.results import (
    RunRecord,
    SimulationResult,
    derive_seed,
    strategy_seed,
)
from alamp_fast.al.strategies import Strategy, canonical_name, get_strategy

__all__ = [
    "CLASSIFIERS",
    "IMBALANCED_IR",
    "RunRecord",
    "SimulationResult",
    "SoftmaxLinearSVC",
    "derive_seed",
    "make_classifier",
    "pool_probs",
    "pool_top2_margin",
    "simulate",
]


#: The strategies :func:`simulate` compares when given none.
DEFAULT_STRATEGIES = ("random", "margin", "entropy", "coreset", "alamp", "alamp-div")


def _connect(address: str):
    """A ``distributed.Client`` on the scheduler at ``address``; failures are one-line ValueErrors.

    Waits at most dask's ``distributed.comm.timeouts.connect`` (30 s by default; e.g.
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"scheduler must be an address like 'tcp://host:8786', got {address!r}")
    import dask
    import distributed  # noqa: F401  (registers the distributed.* config read below)
    from dask.utils import parse_timedelta

    from alamp_fast.distributed.client import get_client

    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
    try:
        return get_client(address, timeout=timeout)
    except ValueError as exc:
        # get_client names the address when it cannot connect; a malformed one fails earlier,
        # in distributed's parser, with a message that does not
        msg = str(exc) if repr(address) in str(exc) else f"bad scheduler address {address!r}: {exc}"
        raise ValueError(" ".join(msg.split())) from exc


def _scatter_rows(client, X: np.ndarray, chunk_rows: int | None, n_classes: int):
    """``X`` as a dask array of row chunks that live on the workers (sent once, straight to them).

    ``chunk_rows`` rows a chunk (the last one shorter), or by default at most 64 MiB of
    features and their float64 probabilities a chunk, in chunks of equal size: with no short
    last chunk, a BLAS that rounds small matrix products differently (docs/distributed.md,
    "Same picks") treats every chunk as it treats the whole pool.
    """
    import dask.array as da

    from alamp_fast.outofcore import DEFAULT_BLOCK_BYTES

    n, d = X.shape
    if chunk_rows is None:
        most = max(1, DEFAULT_BLOCK_BYTES // (d * X.itemsize + 8 * n_classes))
        n_chunks = max(1, -(-n // most))
        sizes = [n // n_chunks + (i < n % n_chunks) for i in range(n_chunks)]
    else:
        sizes = [min(chunk_rows, n - a) for a in range(0, n, chunk_rows)]
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    parts = client.scatter([X[a : a + k] for a, k in zip(starts, sizes, strict=True)])
    return da.concatenate(
        [
            da.from_delayed(part, shape=(k, d), dtype=X.dtype)
            for part, k in zip(parts, sizes, strict=True)
        ]
    )


def _unit_rows(X: np.ndarray) -> bool:
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    return bool(np.all(np.abs(norms - 1.0) < 1e-4))


_check_int = check_int  # the name the workflow imports
_check_picks = check_picks


def simulate(
    X_train,
    y_train=None,
    X_test=None,
    y_test=None,
    *,
    strategies=DEFAULT_STRATEGIES,
    classifier="linear-svc",
    init: int = 200,
    step: int = 200,
    iterations: int = 15,
    runs: int = 3,
    seed: int = 0,
    targets=(),
    imbalance: float | None = None,
    cost_sensitive: bool | None = None,
    strategy_kwargs: dict | None = None,
    progress=False,
    scheduler: str | None = None,
    chunk_rows: int | None = None,
    scheme: str = "svm",
    probs_dtype="float32",
    checkpoint=None,
    resume: bool = False,
    **ft_kwargs,
) -> SimulationResult:
    """Run the active-learning protocol for several strategies and runs.

    Parameters
    ----------
    X_train, y_train : arrays (n_pool, n_features), (n_pool,)
        The pool and its (hidden until queried) labels. A :class:`~alamp_fast.al.datasets.Dataset`
        may be passed as ``X_train`` alone.
    X_test, y_test : arrays
        The evaluation split (labels must be classes of the pool).
    strategies : sequence of str or Strategy
        Names (:data:`alamp_fast.al.strategies.STRATEGIES`) or strategy objects (reset at the
        start of every run).
    classifier : str or estimator
        See the module docstring.
    init, step, iterations : int
        Initial random batch, samples per query, number of queries.
    runs : int
        Repetitions; run ``r`` uses seeds derived from ``(seed, r)``.
    seed : int
        Base seed: the whole result is a function of it (timings aside).
    targets : sequence of float
        Accuracies for ``samples_to_target`` in the summary.
    imbalance : float, optional
        Subsample the pool to this ir first (:func:`~alamp_fast.al.imbalance.induce_imbalance`,
        with ``seed``; the same pool for every run); the test split is kept whole.
    cost_sensitive : bool, optional
        ``class_weight="balanced"``; None: on for imbalanced pools (ir >= 0.1).
    strategy_kwargs : dict, optional
        ``{name: {kwarg: value}}`` passed to :func:`~alamp_fast.al.strategies.get_strategy`.
    progress : bool or "auto"
        Show a progress bar with an ETA over runs x strategies x iterations (tqdm); "auto":
        only when standard error is a terminal.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``): the pool probabilities and the
        acquisition run on its workers (module docstring); the picks, and so every result
        but the timings, are those of the run without one. With a scheduler, ``predict_s``
        only covers the test predictions and building the lazy pool probabilities, which
        are computed inside ``query_s``; strategy objects passed in ``strategies`` receive
        row-chunked dask arrays as ``probs`` and ``features``. Default: this process, numpy.
    chunk_rows : int, optional
        Pool rows per chunk on the cluster (needs ``scheduler``); default: equal chunks of
        at most 64 MiB of features plus probabilities.
    scheme : {"svm", "ft"}
        ``"svm"`` (default): the classifier above on fixed features. ``"ft"``: the paper's
        fine-tuning scheme, a ResNet-18 fine-tuned on *images* ``(n, H, W, 3)`` at every
        iteration (:func:`alamp_fast.finetune.scheme.simulate_ft`, needs torch); the default
        strategies become :data:`~alamp_fast.finetune.scheme.FT_STRATEGIES` (with ``badge``),
        ``classifier``, ``cost_sensitive``, ``scheduler`` and ``chunk_rows`` do not apply
        (thresholding replaces cost-sensitivity: ``threshold=``).
    probs_dtype : "float32" (default) or "float64"
        Dtype of the pool probability matrix given to the strategies that read it (entropy,
        least confidence, alamp with another certainty). The margin family (margin,
        margin-div, random-div, alamp, alamp-div) never gets that matrix: it gets the top-2
        margins and top classes from the classifier's fused ``predict_top2_margin`` (or one
        pass over its probabilities), in the precision the classifier computes them.
    checkpoint : path, optional
        A directory where every finished (strategy, run) is written atomically as it
        completes (:class:`~alamp_fast.al.loop.Checkpoint`); an interrupted call leaves its
        finished runs there. Refused if it already holds runs, unless ``resume``.
    resume : bool
        Continue from the runs in ``checkpoint`` (written by the same call: same
        configuration and data, else refused): they are loaded, not rerun, and the final
        result is that of an uninterrupted call (timings aside).
    **ft_kwargs
        With ``scheme="ft"``: ``weights``, ``config``, ``small_input``, ``width``,
        ``threshold`` of :func:`~alamp_fast.finetune.scheme.simulate_ft`.

    Returns
    -------
    SimulationResult

    Examples
    --------
    >>> from alamp_fast.al.datasets import load_digits
    >>> res = simulate(load_digits(), strategies=["random", "margin"], init=20, step=20,
    ...                iterations=2, runs=1)
    >>> res.summary()["margin"]["labeled"]
    [20, 40, 60]
    """
    if scheme not in ("svm", "ft"):
        raise ValueError(f"scheme must be 'svm' or 'ft', got {scheme!r}")
    if scheme == "ft":
        unused = [
            name
            for name, used in (
                ("classifier", classifier != "linear-svc"),
                ("cost_sensitive", cost_sensitive is not None),
                ("scheduler", scheduler is not None),
                ("chunk_rows", chunk_rows is not None),
            )
            if used
        ]
        if unused:
            raise ValueError(f"{', '.join(unused)} do not apply to scheme='ft'")
        from alamp_fast.finetune.scheme import FT_STRATEGIES, simulate_ft

        return simulate_ft(
            X_train,
            y_train,
            X_test,
            y_test,
            strategies=FT_STRATEGIES if strategies is DEFAULT_STRATEGIES else strategies,
            init=init,
            step=step,
            iterations=iterations,
            runs=runs,
            seed=seed,
            targets=targets,
            imbalance=imbalance,
            strategy_kwargs=strategy_kwargs,
            progress=progress,
            checkpoint=checkpoint,
            resume=resume,
            **ft_kwargs,
        )
    if ft_kwargs:
        raise TypeError(f"simulate() got unexpected keyword arguments {sorted(ft_kwargs)}")
    if y_train is None and hasattr(X_train, "X_train"):
        ds = X_train
        X_train, y_train, X_test, y_test = ds.X_train, ds.y_train, ds.X_test, ds.y_test
        dataset_info = ds.describe()
    else:
        dataset_info = {"name": "arrays"}
    if y_train is None or X_test is None or y_test is None:
        raise ValueError("simulate needs X_train, y_train, X_test and y_test (or a Dataset)")
    X_train = np.asarray(X_train)
    X_test = np.asarray(X_test)
    y_train = np.asarray(y_train)
    y_test = np.asarray(y_test)
    if X_train.ndim != 2 or X_test.ndim != 2 or X_train.shape[1] != X_test.shape[1]:
        raise ValueError(
            f"X_train {X_train.shape} and X_test {X_test.shape} must be 2-D with equal widths"
        )
    if y_train.shape != (X_train.shape[0],) or y_test.shape != (X_test.shape[0],):
        raise ValueError(
            f"label shapes {y_train.shape}, {y_test.shape} do not match "
            f"{X_train.shape[0]} and {X_test.shape[0]} rows"
        )
    probs_dtype = np.dtype(probs_dtype)
    if probs_dtype not in (np.float32, np.float64):
        raise ValueError(f"probs_dtype must be float32 or float64, got {probs_dtype}")
    if chunk_rows is not None:
        if scheduler is None:
            raise ValueError(f"chunk_rows={chunk_rows!r} only applies with a scheduler")
        chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    setup = prepare_protocol(
        y_train,
        y_test,
        strategies=strategies,
        canonical=canonical_name,
        strategy_type=Strategy,
        init=init,
        step=step,
        iterations=iterations,
        runs=runs,
        seed=seed,
        targets=targets,
        imbalance=imbalance,
        strategy_kwargs=strategy_kwargs,
    )
    names, n_classes = setup.names, setup.n_classes
    X_pool = np.ascontiguousarray(X_train[setup.pool_rows])
    if cost_sensitive is None:
        cost_sensitive = imbalance is not None or setup.pool_ir >= IMBALANCED_IR
    prenormalized = _unit_rows(X_pool) and _unit_rows(X_test)

    config = {
        "strategies": names,
        "classifier": classifier if isinstance(classifier, str) else repr(classifier),
        "cost_sensitive": bool(cost_sensitive),
        "init": setup.init,
        "step": setup.step,
        "iterations": setup.iterations,
        "runs": setup.runs,
        "seed": setup.seed,
        "targets": list(setup.targets),
        "imbalance": imbalance,
        "probs_dtype": probs_dtype.name,
        "strategy_kwargs": {
            k: {kk: repr(vv) if callable(vv) else vv for kk, vv in v.items()}
            for k, v in setup.strategy_kwargs.items()
        },
    }
    dataset_info = {
        **dataset_info,
        "n_pool": int(X_pool.shape[0]),
        "n_test": int(X_test.shape[0]),
        "n_classes": int(n_classes),
        "pool_ir": setup.pool_ir,
        "pool_class_counts": setup.pool_counts.tolist(),
    }
    ckpt = open_checkpoint(
        checkpoint, config=config, dataset=dataset_info,
        arrays=(X_pool, setup.y_pool, X_test, setup.y_eval), resume=resume,
    )

    warm_up(names, setup.objects, setup.strategy_kwargs, get_strategy, n_classes, X_pool)
    for dtype in {probs_dtype, np.dtype(np.float64)} - {np.dtype(np.float64)}:
        # the full-probability strategies see float32 matrices: compile those variants too
        _warm_probs(names, setup, n_classes, dtype)
    client = None if scheduler is None else _connect(scheduler)
    try:
        # what the pool probabilities and the strategies see: the pool, or its chunks on the
        # cluster (sent once for every run and strategy)
        X_work = X_pool if client is None else _scatter_rows(client, X_pool, chunk_rows, n_classes)
        scheme = _SVMScheme(
            X_pool, X_work, X_test, classifier, bool(cost_sensitive), prenormalized, n_classes,
            probs_dtype,
        )

        def make_strategy(key, run):
            return get_strategy(
                key, seed=strategy_seed(setup.seed, run, key), **setup.strategy_kwargs.get(key, {})
            )

        records, total_s = run_protocol(
            setup, scheme, make_strategy, progress=progress, checkpoint=ckpt
        )
    finally:
        if client is not None:
            client.close()
    return SimulationResult(
        config=config,
        dataset=dataset_info,
        strategies=names,
        records=records,
        total_s=total_s,
        pool_rows=setup.pool_rows,
    )


def _warm_probs(names, setup, n_classes, dtype) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((64, n_classes)).astype(dtype)
    for key in names:
        if key in setup.objects or key not in ("entropy", "least_confidence"):
            continue
        get_strategy(key, seed=0).query(probs, 2, labeled=np.arange(2))


class _SVMScheme:
    """The SVM scheme for :func:`~alamp_fast.al.loop.run_protocol`: a classifier on fixed
    features, the fused margin path for the strategies that accept it."""

    def __init__(
        self, X_pool, X_work, X_test, classifier, cost_sensitive, prenormalized, n_classes,
        probs_dtype,
    ):
        self.X_pool, self.X_work, self.X_test = X_pool, X_work, X_test
        self.classifier, self.cost_sensitive = classifier, cost_sensitive
        self.prenormalized, self.n_classes, self.probs_dtype = (
            prenormalized,
            n_classes,
            probs_dtype,
        )
        self.local = X_work is X_pool

    def new_classifier(self, run_seed, iteration):
        return make_classifier(
            self.classifier,
            cost_sensitive=self.cost_sensitive,
            random_state=run_seed,
            prenormalized=self.prenormalized,
        )

    def pool_view(self, clf, strategy) -> PoolView:
        if not strategy.needs_probs:
            return PoolView(features=self.X_work)
        if self.local and strategy.accepts_margin:
            margin, top = pool_top2_margin(clf, self.X_pool, self.n_classes)
            return PoolView(margin=margin, top_class=top, features=self.X_work)
        # on a cluster the margins are computed chunk by chunk where the rows live; the
        # margin family reads float64 probabilities there, as the fused path computes them
        dtype = np.float64 if strategy.accepts_margin else self.probs_dtype
        probs = pool_probs(clf, self.X_work, self.n_classes, dtype)
        return PoolView(probs=probs, features=self.X_work)
