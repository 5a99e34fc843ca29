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
By name (:data:`CLASSIFIERS`), each built fresh for every fit:

``linear-svc`` (default)
    :class:`SoftmaxLinearSVC`: scikit-learn's ``LinearSVC`` (squared hinge, one-vs-rest) on
    L2-normalised rows; probabilities are the softmax of the decision values divided by a
    temperature (0.3 by default; see the class). Fast, and the setting of the paper's SVM
    scheme.
``logreg``
    ``LogisticRegression`` (multinomial, lbfgs, ``C=100``) on L2-normalised rows; its own
    probabilities.
``svc``
    ``SVC(kernel="rbf", probability=True)`` (Platt scaling by internal 5-fold CV; slow).
``af-svm`` / ``af-svm-cv``
    ``alamp_fast.svm.SVC`` / ``SVCCV`` (linear kernel), imported when first used.

The *cost-sensitive* variant of each sets ``class_weight="balanced"``. ``cost_sensitive=None``
(default) turns it on for imbalanced pools: when ``imbalance`` is given or the pool's own
class counts have ``ir >= 0.1``. Any scikit-learn-compatible estimator object is accepted too
(cloned for every fit; ``class_weight`` is only touched when ``cost_sensitive=True``).

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

import time
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np

from alamp_fast._dispatch import array_library
from alamp_fast.imbalance import imbalance_ratio, induce_imbalance
from alamp_fast.strategies import Strategy, canonical_name, get_strategy

__all__ = [
    "CLASSIFIERS",
    "IMBALANCED_IR",
    "RunRecord",
    "SimulationResult",
    "SoftmaxLinearSVC",
    "derive_seed",
    "make_classifier",
    "pool_probs",
    "simulate",
]

#: Classifier names accepted by :func:`make_classifier` and ``--classifier``.
CLASSIFIERS = ("linear-svc", "logreg", "svc", "af-svm", "af-svm-cv")

#: A pool whose class counts have at least this ir gets the cost-sensitive classifier by default.
IMBALANCED_IR = 0.1

DEFAULT_STRATEGIES = ("random", "margin", "entropy", "coreset", "alamp", "alamp-div")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _decision_matrix(decision: np.ndarray) -> np.ndarray:
    # Binary scikit-learn classifiers return one column (the score of classes_[1]).
    decision = np.asarray(decision, dtype=np.float64)
    if decision.ndim == 1:
        decision = np.stack([-decision, decision], axis=1)
    return decision


try:  # scikit-learn is a dependency; the guard keeps `import alamp_fast` light if it is broken.
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # pragma: no cover
    BaseEstimator = ClassifierMixin = object


class SoftmaxLinearSVC(ClassifierMixin, BaseEstimator):
    """``LinearSVC`` on L2-normalised rows, with softmax probabilities.

    ``predict_proba`` is ``softmax(decision_function(X) / temperature)``, a fixed mapping
    (no calibration fold is possible with one or two labels per class at the first
    iterations). It is monotone in the decision values of a row, so ``predict`` and the top
    class are the SVM's. A squared-hinge SVM puts decision values near +1 for the true class
    and -1 for the others: a temperature of 1 leaves a 100-class posterior nearly flat, which
    hurts entropy sampling; a small one saturates margins to exactly 1. The default 0.3 was
    the best of 0.1 / 0.3 / 1 in one run on Caltech-101 (init 200, 5 x 200, cost-sensitive):
    mean accuracy of margin / alamp / entropy 82.2 / 81.9 / 79.2 % at 0.1, 83.2 / 82.5 /
    79.3 % at 0.3, 82.9 / 82.6 / 77.2 % at 1 (random 78.2 %).

    ``dual=True`` by default: on 3,200 x 1,024 features with 100 classes the dual solver fit
    in 7.7 s against 16.0 s for the primal one that ``dual="auto"`` picks there.

    Parameters
    ----------
    C : float
        Regularisation, as in ``LinearSVC``.
    temperature : float
        Softmax temperature applied to the decision values.
    class_weight : None, "balanced" or dict
        As in ``LinearSVC`` (``"balanced"`` is the cost-sensitive SVM).
    normalize : bool
        L2-normalise rows before fitting and predicting.
    dual : bool
        Passed to ``LinearSVC``.
    max_iter : int
        Passed to ``LinearSVC``.
    random_state : int, optional
        Passed to ``LinearSVC`` (its dual solver shuffles).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.1], [0.9, 0.0], [0.1, 1.0], [0.0, 0.8]])
    >>> clf = SoftmaxLinearSVC(random_state=0).fit(X, [0, 0, 1, 1])
    >>> clf.predict(X).tolist(), clf.predict_proba(X).shape
    ([0, 0, 1, 1], (4, 2))
    """

    def __init__(
        self,
        C: float = 1.0,
        temperature: float = 0.3,
        class_weight=None,
        normalize: bool = True,
        dual: bool = True,
        max_iter: int = 1000,
        random_state=None,
    ):
        self.C = C
        self.temperature = temperature
        self.class_weight = class_weight
        self.normalize = normalize
        self.dual = dual
        self.max_iter = max_iter
        self.random_state = random_state

    def _rows(self, X):
        from alamp_fast.datasets import l2_normalize

        return l2_normalize(X) if self.normalize else np.asarray(X, dtype=np.float32)

    def fit(self, X, y):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.svm import LinearSVC

        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self.svc_ = LinearSVC(
            C=self.C,
            class_weight=self.class_weight,
            dual=self.dual,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            # A few hundred labels in 1,024-d rarely converge to tol in max_iter; the
            # accuracy is what the protocol measures, the warning would flood the output.
            warnings.simplefilter("ignore", ConvergenceWarning)
            # 100 labels over 101 classes is the paper's low-budget regime, not regression.
            warnings.filterwarnings("ignore", "The number of unique classes is greater than 50%")
            self.svc_.fit(self._rows(X), y)
        self.classes_ = self.svc_.classes_
        # float32 weights: scoring a 50,000 x 1,024 pool for 100 classes took 0.21 s this
        # way against 1.9 s through LinearSVC.decision_function (float64 upcast of X);
        # largest difference 1e-6 in the decision values.
        self.coef32_ = np.ascontiguousarray(self.svc_.coef_.T, dtype=np.float32)
        self.intercept32_ = self.svc_.intercept_.astype(np.float32)
        return self

    def decision_function(self, X):
        d = self._rows(X) @ self.coef32_
        d += self.intercept32_
        return d[:, 0] if d.shape[1] == 1 else d

    def predict_proba(self, X):
        return _softmax(_decision_matrix(self.decision_function(X)) / self.temperature)

    def predict(self, X):
        # The argmax of predict_proba, so the top class a strategy sees is the prediction.
        return self.classes_[_decision_matrix(self.decision_function(X)).argmax(axis=1)]


def make_classifier(
    name, *, cost_sensitive: bool = False, random_state=None, prenormalized: bool = False
):
    """A fresh, unfitted classifier by name (see the module docstring), or a clone of ``name``.

    Parameters
    ----------
    name : str or estimator
        One of :data:`CLASSIFIERS`, or a scikit-learn-compatible estimator (cloned).
    cost_sensitive : bool
        ``class_weight="balanced"``.
    random_state : int, optional
        Seed for the classifiers that use one.
    prenormalized : bool
        The rows are already L2-normalised: ``linear-svc`` and ``logreg`` skip their own
        normalisation (0.18 s per pass over a 50,000 x 1,024 pool).

    Examples
    --------
    >>> make_classifier("linear-svc", cost_sensitive=True).class_weight
    'balanced'
    """
    class_weight = "balanced" if cost_sensitive else None
    if not isinstance(name, str):
        from sklearn.base import clone

        if not hasattr(name, "fit"):
            raise TypeError(f"classifier must be a name or an estimator with fit(), got {name!r}")
        est = clone(name)
        if cost_sensitive:
            if "class_weight" not in est.get_params():
                raise ValueError(f"{type(est).__name__} has no class_weight parameter")
            est.set_params(class_weight="balanced")
        return est
    if name == "linear-svc":
        return SoftmaxLinearSVC(
            class_weight=class_weight, random_state=random_state, normalize=not prenormalized
        )
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer

        # Unit-norm rows make scikit-learn's default C=1 a heavy penalty: 80 digits labels
        # scored 60.4% test accuracy at C=1, 87.6% at 10, 88.9% at 100, 88.7% at 1000.
        logreg = LogisticRegression(
            C=100.0, max_iter=1000, class_weight=class_weight, random_state=random_state
        )
        return logreg if prenormalized else make_pipeline(Normalizer(), logreg)
    if name == "svc":
        from sklearn.svm import SVC

        return SVC(probability=True, class_weight=class_weight, random_state=random_state)
    if name in ("af-svm", "af-svm-cv"):
        try:
            from alamp_fast import svm
        except ImportError as exc:
            raise ValueError(
                f"classifier {name!r} needs alamp_fast.svm, which failed to import: {exc}"
            ) from exc
        cls = getattr(svm, "SVCCV" if name == "af-svm-cv" else "SVC", None)
        if cls is None:
            raise ValueError(
                f"classifier {name!r}: alamp_fast.svm has no "
                f"{'SVCCV' if name == 'af-svm-cv' else 'SVC'}"
            )
        return cls(kernel="linear", class_weight=class_weight)
    raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")


def pool_probs(clf, X, n_classes: int):
    """Probabilities over all ``n_classes`` columns (zeros for classes not yet labeled).

    Columns are the global class codes, so a top class means the same class from one
    iteration to the next even when the labeled set gains a class (alamp-div relies on it).

    ``X`` may be a row-chunked ``dask.array``: the result is then a lazy float64 dask array
    with the same row chunks, each computed where its chunk of ``X`` lives, and ``clf``
    travels to the workers once (one key of the graph), not once per chunk.
    """
    if array_library(X) == "dask":
        return _dask_pool_probs(clf, X, n_classes)
    if hasattr(clf, "predict_proba"):
        p = clf.predict_proba(X)
    else:
        p = _softmax(_decision_matrix(clf.decision_function(X)))
    cols = np.asarray(clf.classes_, dtype=np.int64)
    if cols.size == n_classes and np.array_equal(cols, np.arange(n_classes)):
        return np.asarray(p, dtype=np.float64)
    out = np.zeros((X.shape[0], n_classes), dtype=np.float64)
    out[:, cols] = p
    return out


def _chunk_probs(X: np.ndarray, clf, n_classes: int) -> np.ndarray:
    if X.shape[0] == 0:  # scikit-learn refuses empty inputs
        return np.empty((0, n_classes), dtype=np.float64)
    return pool_probs(clf, X, n_classes)


def _dask_pool_probs(clf, X, n_classes: int):
    import dask

    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})  # the classifier needs whole rows
    return X.map_blocks(
        _chunk_probs,
        dask.delayed(clf),
        n_classes,
        chunks=(X.chunks[0], (n_classes,)),
        dtype=np.float64,
        meta=np.empty((0, n_classes), dtype=np.float64),
    )


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

    from alamp_fast.distributed import get_client

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


@dataclass
class RunRecord:
    """One strategy's trajectory in one run; every array has one entry per iteration."""

    strategy: str
    run: int
    seed: int
    labeled: np.ndarray
    accuracy: np.ndarray
    balanced_accuracy: np.ndarray
    ir: np.ndarray
    class_counts: np.ndarray
    fit_s: np.ndarray
    predict_s: np.ndarray
    query_s: np.ndarray
    #: Pool rows in the order they were labeled: the initial batch, then each query's picks
    #: (indices into the pool, i.e. into ``X_train[result.pool_rows]``).
    order: np.ndarray


@dataclass
class SimulationResult:
    """What :func:`simulate` returns: the configuration and every run's :class:`RunRecord`.

    ``records[name][run]`` is one trajectory; ``pool_rows`` are the rows of ``X_train`` that
    formed the pool (all of them unless ``imbalance`` subsampled it).
    """

    config: dict
    dataset: dict
    strategies: list[str]
    records: dict[str, list[RunRecord]]
    total_s: float = 0.0
    pool_rows: np.ndarray | None = field(default=None, repr=False)

    def summary(self, targets=None) -> dict[str, dict]:
        """Per-strategy summary metrics (JSON-ready).

        ``mean_accuracy`` is the mean over all iterations (initial batch included) of the
        run-averaged accuracy curve; ``gain_over_random`` its difference with random's (None
        without a random run); ``samples_to_target[t]`` the first labeled count at which the
        run-averaged accuracy reaches ``t`` (None if it never does).
        """
        targets = self.config.get("targets", ()) if targets is None else targets
        out: dict[str, dict] = {}
        for name in self.strategies:
            recs = self.records[name]
            acc = np.stack([r.accuracy for r in recs])
            bacc = np.stack([r.balanced_accuracy for r in recs])
            ir = np.stack([r.ir for r in recs])
            labeled = recs[0].labeled
            acc_mean = acc.mean(axis=0)
            s = {
                "labeled": labeled.tolist(),
                "accuracy_mean": acc_mean.tolist(),
                "accuracy_std": acc.std(axis=0).tolist(),
                "balanced_accuracy_mean": bacc.mean(axis=0).tolist(),
                "balanced_accuracy_std": bacc.std(axis=0).tolist(),
                "mean_accuracy": float(acc_mean.mean()),
                "mean_accuracy_std": float(acc.mean(axis=1).std()),
                "mean_balanced_accuracy": float(bacc.mean()),
                "final_accuracy": float(acc_mean[-1]),
                "ir_mean": ir.mean(axis=0).tolist(),
                "ir_std": ir.std(axis=0).tolist(),
                "class_counts_mean": np.stack([r.class_counts for r in recs]).mean(axis=0).tolist(),
                "fit_s_mean": np.stack([r.fit_s for r in recs]).mean(axis=0).tolist(),
                "predict_s_mean": np.stack([r.predict_s for r in recs]).mean(axis=0).tolist(),
                "query_s_mean": np.stack([r.query_s for r in recs]).mean(axis=0).tolist(),
                "samples_to_target": {
                    _target_key(t): _first_reach(labeled, acc_mean, t) for t in targets
                },
            }
            out[name] = s
        base = out.get("random")
        for s in out.values():
            s["gain_over_random"] = (
                None if base is None else s["mean_accuracy"] - base["mean_accuracy"]
            )
        return out

    def to_dict(self, *, include_runs: bool = True, include_order: bool = False) -> dict:
        """The whole result as JSON-ready Python objects (``results.json`` without versions)."""
        summary = self.summary()
        if include_runs:
            for name, s in summary.items():
                s["runs"] = [
                    {
                        "run": r.run,
                        "seed": r.seed,
                        "accuracy": r.accuracy.tolist(),
                        "balanced_accuracy": r.balanced_accuracy.tolist(),
                        "ir": r.ir.tolist(),
                        "fit_s": r.fit_s.tolist(),
                        "predict_s": r.predict_s.tolist(),
                        "query_s": r.query_s.tolist(),
                        **({"order": r.order.tolist()} if include_order else {}),
                    }
                    for r in self.records[name]
                ]
        return {
            "config": self.config,
            "dataset": self.dataset,
            "strategies": summary,
            "timing": {"total_s": self.total_s},
        }


def _unit_rows(X: np.ndarray) -> bool:
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    return bool(np.all(np.abs(norms - 1.0) < 1e-4))


def _target_key(t: float) -> str:
    return f"{float(t):g}"


def _first_reach(labeled: np.ndarray, curve: np.ndarray, target: float):
    hit = np.flatnonzero(curve >= target)
    return int(labeled[hit[0]]) if hit.size else None


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint32)[0])


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


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
    **ft_kwargs,
) -> SimulationResult:
    """Run the active-learning protocol for several strategies and runs.

    Parameters
    ----------
    X_train, y_train : arrays (n_pool, n_features), (n_pool,)
        The pool and its (hidden until queried) labels. A :class:`~alamp_fast.datasets.Dataset`
        may be passed as ``X_train`` alone.
    X_test, y_test : arrays
        The evaluation split (labels must be classes of the pool).
    strategies : sequence of str or Strategy
        Names (:data:`alamp_fast.strategies.STRATEGIES`) or strategy objects (reset at the
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
        Subsample the pool to this ir first (:func:`~alamp_fast.imbalance.induce_imbalance`,
        with ``seed``; the same pool for every run); the test split is kept whole.
    cost_sensitive : bool, optional
        ``class_weight="balanced"``; None: on for imbalanced pools (ir >= 0.1).
    strategy_kwargs : dict, optional
        ``{name: {kwarg: value}}`` passed to :func:`~alamp_fast.strategies.get_strategy`.
    progress : bool
        Show a tqdm progress bar over runs x strategies x iterations.
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
    **ft_kwargs
        With ``scheme="ft"``: ``weights``, ``config``, ``small_input``, ``width``,
        ``threshold`` of :func:`~alamp_fast.finetune.scheme.simulate_ft`.

    Returns
    -------
    SimulationResult

    Examples
    --------
    >>> from alamp_fast.datasets import load_digits
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
    init = _check_int("init", init, 2)
    step = _check_int("step", step, 1)
    iterations = _check_int("iterations", iterations, 0)
    runs = _check_int("runs", runs, 1)
    seed = _check_int("seed", seed, 0)
    targets = tuple(float(t) for t in targets)
    for t in targets:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"target accuracy {t} is not in [0, 1]")
    strategy_kwargs = dict(strategy_kwargs or {})
    if chunk_rows is not None:
        if scheduler is None:
            raise ValueError(f"chunk_rows={chunk_rows!r} only applies with a scheduler")
        chunk_rows = _check_int("chunk_rows", chunk_rows, 1)

    names: list[str] = []
    objects: dict[str, Strategy] = {}
    for s in strategies:
        if isinstance(s, Strategy):
            key = s.name
            objects[key] = s
        else:
            key = canonical_name(s)
        if key in names:
            raise ValueError(f"strategy {key!r} is listed twice")
        names.append(key)
    if not names:
        raise ValueError("no strategies given")
    for key in strategy_kwargs:
        if canonical_name(key) not in names:
            raise ValueError(f"strategy_kwargs for {key!r}, which is not among {names}")
    strategy_kwargs = {canonical_name(k): v for k, v in strategy_kwargs.items()}

    classes, y_pool = np.unique(y_train, return_inverse=True)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_eval = np.fromiter((lookup.get(c, -1) for c in y_test.tolist()), np.int64, y_test.size)
    if (y_eval < 0).any():
        raise ValueError(
            f"test labels {np.unique(y_test[y_eval < 0])[:5].tolist()} are not classes of the pool"
        )
    n_classes = classes.size
    if n_classes < 2:
        raise ValueError(f"the pool has {n_classes} class; need at least 2")

    pool_rows = np.arange(X_train.shape[0])
    if imbalance is not None:
        pool_rows = induce_imbalance(y_pool, imbalance, seed)
    X_pool = np.ascontiguousarray(X_train[pool_rows])
    y_pool = y_pool[pool_rows]
    pool_counts = np.bincount(y_pool, minlength=n_classes)
    pool_ir = imbalance_ratio(pool_counts)
    if cost_sensitive is None:
        cost_sensitive = imbalance is not None or pool_ir >= IMBALANCED_IR
    n_pool = X_pool.shape[0]
    prenormalized = _unit_rows(X_pool) and _unit_rows(X_test)
    budget = init + iterations * step
    if budget > n_pool:
        raise ValueError(
            f"init + iterations * step = {init} + {iterations} * {step} = {budget} exceeds the "
            f"{n_pool} pool samples"
        )

    config = {
        "strategies": names,
        "classifier": classifier if isinstance(classifier, str) else repr(classifier),
        "cost_sensitive": bool(cost_sensitive),
        "init": init,
        "step": step,
        "iterations": iterations,
        "runs": runs,
        "seed": seed,
        "targets": list(targets),
        "imbalance": imbalance,
        "strategy_kwargs": {
            k: {kk: repr(vv) if callable(vv) else vv for kk, vv in v.items()}
            for k, v in strategy_kwargs.items()
        },
    }
    dataset_info = {
        **dataset_info,
        "n_pool": int(n_pool),
        "n_test": int(X_test.shape[0]),
        "n_classes": int(n_classes),
        "pool_ir": pool_ir,
        "pool_class_counts": pool_counts.tolist(),
    }

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=runs * len(names) * (iterations + 1), unit="it", desc="simulate")

    _warm_up(names, objects, strategy_kwargs, X_pool, n_classes)
    records: dict[str, list[RunRecord]] = {k: [] for k in names}
    client = None if scheduler is None else _connect(scheduler)
    t_start = time.perf_counter()
    try:
        # what the pool probabilities and the strategies see: the pool, or its chunks on the
        # cluster (sent once for every run and strategy)
        X_work = X_pool if client is None else _scatter_rows(client, X_pool, chunk_rows, n_classes)
        for run in range(runs):
            run_seed = derive_seed(seed, run)
            rng = np.random.default_rng(run_seed)
            initial = rng.choice(n_pool, size=init, replace=False).astype(np.int64)
            if np.unique(y_pool[initial]).size < 2:
                raise ValueError(
                    f"run {run}: the initial batch of {init} samples holds a single class; "
                    "use a larger init"
                )
            for key in names:
                if key in objects:
                    strategy = objects[key]
                    strategy.reset()
                else:
                    strategy = get_strategy(
                        key,
                        seed=derive_seed(seed, run, zlib.crc32(key.encode())),
                        **strategy_kwargs.get(key, {}),
                    )
                records[key].append(
                    _one_run(
                        strategy,
                        key,
                        run,
                        run_seed,
                        initial,
                        X_pool,
                        X_work,
                        y_pool,
                        X_test,
                        y_eval,
                        n_classes,
                        classifier,
                        cost_sensitive,
                        prenormalized,
                        step,
                        iterations,
                        bar,
                    )
                )
    finally:
        if bar is not None:
            bar.close()
        if client is not None:
            client.close()
    return SimulationResult(
        config=config,
        dataset=dataset_info,
        strategies=names,
        records=records,
        total_s=time.perf_counter() - t_start,
        pool_rows=pool_rows,
    )


def _warm_up(names, objects, strategy_kwargs, X_pool, n_classes) -> None:
    """Query every named strategy once on a small slice, with the dtypes of the real calls.

    The kernels are compiled on first use (numba); without this the first query of a run
    would carry seconds of compilation into its recorded query time.
    """
    n = min(X_pool.shape[0], 64)
    if n < 4:
        return
    rng = np.random.default_rng(0)
    probs = rng.random((n, n_classes))
    labeled = np.arange(2, dtype=np.int64)
    for key in names:
        if key in objects:
            continue  # user objects: their state must not be touched
        strategy = get_strategy(key, seed=0, **strategy_kwargs.get(key, {}))
        for _ in range(2):  # the second query exercises alamp's stateful path
            strategy.query(probs, 2, labeled=labeled, features=X_pool[:n])


def _one_run(
    strategy,
    key,
    run,
    run_seed,
    initial,
    X_pool,
    X_work,
    y_pool,
    X_test,
    y_eval,
    n_classes,
    classifier,
    cost_sensitive,
    prenormalized,
    step,
    iterations,
    bar,
) -> RunRecord:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    n_pool = X_pool.shape[0]
    is_labeled = np.zeros(n_pool, dtype=bool)
    is_labeled[initial] = True
    order = [initial]
    n_points = iterations + 1
    rec = {
        k: np.zeros(n_points)
        for k in ("accuracy", "balanced_accuracy", "ir", "fit_s", "predict_s", "query_s")
    }
    labeled_counts = np.zeros(n_points, dtype=np.int64)
    class_counts = np.zeros((n_points, n_classes), dtype=np.int64)
    for it in range(n_points):
        labeled = np.concatenate(order)
        t0 = time.perf_counter()
        clf = make_classifier(
            classifier,
            cost_sensitive=cost_sensitive,
            random_state=run_seed,
            prenormalized=prenormalized,
        )
        clf.fit(X_pool[labeled], y_pool[labeled])
        t1 = time.perf_counter()
        y_pred = np.asarray(clf.predict(X_test))
        rec["accuracy"][it] = accuracy_score(y_eval, y_pred)
        with warnings.catch_warnings():
            # Early models may predict a class absent from the test split; the score is fine.
            warnings.simplefilter("ignore", UserWarning)
            rec["balanced_accuracy"][it] = balanced_accuracy_score(y_eval, y_pred)
        counts = np.bincount(y_pool[labeled], minlength=n_classes)
        class_counts[it] = counts
        labeled_counts[it] = labeled.size
        rec["ir"][it] = imbalance_ratio(counts)
        rec["fit_s"][it] = t1 - t0
        if it < iterations:
            probs = pool_probs(clf, X_work, n_classes) if strategy.needs_probs else None
            t3 = time.perf_counter()
            picks = strategy.query(probs, step, labeled=labeled, features=X_work)
            t4 = time.perf_counter()
            picks = np.asarray(picks, dtype=np.int64)
            _check_picks(key, picks, step, n_pool, is_labeled)
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
        seed=run_seed,
        labeled=labeled_counts,
        class_counts=class_counts,
        order=np.concatenate(order),
        **rec,
    )


def _check_picks(key, picks, step, n_pool, is_labeled) -> None:
    # Strategy objects may come from users; a wrong batch would silently corrupt the budgets.
    if picks.shape != (step,):
        raise ValueError(f"strategy {key!r} returned {picks.shape} picks, expected ({step},)")
    if picks.size and (picks.min() < 0 or picks.max() >= n_pool):
        raise ValueError(f"strategy {key!r} returned rows outside 0..{n_pool - 1}")
    if np.unique(picks).size != picks.size or is_labeled[picks].any():
        raise ValueError(f"strategy {key!r} returned a duplicate or already-labeled row")
