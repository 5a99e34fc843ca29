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
    scikit-learn's RBF ``SVC`` (libsvm, ``C=1``) with Platt probabilities fitted on 5-fold
    held-out decision values, as ``CalibratedClassifierCV(SVC(), ensemble=False)``
    (``alamp_fast.svm.SVCCV(Cs=[1.0], kernel="rbf", loss="hinge", calibration="platt")``;
    ``SVC(probability=True)`` is deprecated since scikit-learn 1.9).
``paper``
    The paper's SVM: the same model with ``C`` chosen by 5-fold cross-validation on the
    labeled set over ``0.01 .. 100`` (``SVCCV(kernel="rbf", loss="hinge",
    calibration="platt")``; see ``docs/svm.md``).
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

import warnings

import numpy as np

from alamp_fast._dispatch import array_library
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
from alamp_fast.imbalance import IMBALANCED_IR
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
    "pool_top2_margin",
    "simulate",
]

#: Classifier names accepted by :func:`make_classifier` and ``--classifier``.
CLASSIFIERS = ("linear-svc", "logreg", "svc", "paper", "af-svm", "af-svm-cv")


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
        Z = self._rows(X)
        n = Z.shape[0]
        # A BLAS may round a small GEMM differently from a large one (OpenBLAS: below about
        # 1e6 multiply-adds), so a row's value would depend on the rows scored with it (a
        # Dask chunk, a short last block). Small inputs are padded up to 2**22 multiply-adds:
        # every row then takes the large-GEMM path, whose value is the row's own.
        pad = -(-(1 << 22) // max(1, Z.shape[1] * self.coef32_.shape[1])) - n
        if n and pad > 0:
            Z = np.concatenate([Z, np.broadcast_to(Z[-1:], (pad, Z.shape[1]))])
        d = (Z @ self.coef32_)[:n]
        d += self.intercept32_
        return d[:, 0] if d.shape[1] == 1 else d

    def predict_proba(self, X):
        X = X if hasattr(X, "shape") else np.asarray(X)
        out = None
        for a, p in self._proba_chunks(X):
            if out is None:
                out = np.empty((X.shape[0], p.shape[1]), dtype=np.float64)
            out[a : a + p.shape[0]] = p
        if out is None:  # no rows
            return _softmax(_decision_matrix(self.decision_function(X)) / self.temperature)
        return out

    def _proba_chunks(self, X, chunk_rows: int | None = None):
        """``(start, float64 probabilities of rows start:start+k)``, chunk by chunk.

        Decision values, softmax and (with ``normalize``) the rows' normalisation are computed
        row chunk by row chunk, so no ``(n, C)`` float64 temporary, no float32 decision matrix
        and no normalised copy of ``X`` is ever whole (on all rows at once, a 1e6-row,
        100-class pool took float32 decision values, their float64 copy and two more float64
        ``(n, C)`` temporaries beside the result: 2.8 GB by their sizes). Every value is bitwise the one of the whole-array computation: each row
        is scored on the large-GEMM path (:meth:`decision_function`), and the softmax and the
        normalisation reduce over a row's own values only.
        """
        X = X if hasattr(X, "shape") else np.asarray(X)
        n = X.shape[0]
        n_cols = self.coef32_.shape[1]
        cols = 2 if n_cols == 1 else n_cols
        # 8 MiB of float64 probabilities per chunk: the softmax temporaries stay small (a few
        # chunks of them are alive at once) and each chunk is still a large GEMM
        step = chunk_rows or max(1, (8 << 20) // (8 * cols))
        for a in range(0, n, step):
            d = self.decision_function(X[a : a + step])
            yield a, _softmax(_decision_matrix(d) / self.temperature)

    def predict_top2_margin(self, X, chunk_size=None):
        """``af.top2_margin(self.predict_proba(X))`` (bitwise) without the probability matrix.

        Returns ``(margin float64, top_class int64)``; ``top_class`` indexes ``classes_``.
        """
        import alamp_fast as af

        n = X.shape[0]
        margin = np.empty(n, dtype=np.float64)
        top = np.empty(n, dtype=np.int64)
        for a, p in self._proba_chunks(X, chunk_size):
            m, t = af.top2_margin(p)
            margin[a : a + p.shape[0]] = m
            top[a : a + p.shape[0]] = t
        return margin, top

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
    if name in ("svc", "paper"):
        from alamp_fast.svm import SVCCV

        # libsvm's C-SVC with Platt probabilities on held-out folds, the supported
        # replacement of SVC(probability=True); "svc" keeps scikit-learn's default C=1
        return SVCCV(
            Cs=[1.0] if name == "svc" else 5,
            kernel="rbf",
            loss="hinge",
            calibration="platt",
            class_weight=class_weight,
            tol=1e-3,  # libsvm's stopping tolerance, scikit-learn's SVC default
            random_state=random_state,
        )
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


def pool_probs(clf, X, n_classes: int, dtype=np.float64):
    """Probabilities over all ``n_classes`` columns (zeros for classes not yet labeled).

    Columns are the global class codes, so a top class means the same class from one
    iteration to the next even when the labeled set gains a class (alamp-div relies on it).
    ``dtype``: of the result (float64 by default; :func:`simulate` asks for float32). For
    :class:`SoftmaxLinearSVC` a float32 result is filled chunk by chunk, without a float64
    ``(n, C)`` matrix on the way.

    ``X`` may be a row-chunked ``dask.array``: the result is then a lazy dask array with the
    same row chunks, each computed where its chunk of ``X`` lives, and ``clf`` travels to
    the workers once (one key of the graph), not once per chunk.
    """
    dtype = np.dtype(dtype)
    if array_library(X) == "dask":
        return _dask_pool_probs(clf, X, n_classes, dtype)
    cols = np.asarray(clf.classes_, dtype=np.int64)
    full = cols.size == n_classes and np.array_equal(cols, np.arange(n_classes))
    if isinstance(clf, SoftmaxLinearSVC) and dtype != np.float64:
        out = np.zeros((X.shape[0], n_classes), dtype=dtype)
        for a, p in clf._proba_chunks(X):
            if full:
                out[a : a + p.shape[0]] = p
            else:
                out[a : a + p.shape[0], cols] = p
        return out
    if hasattr(clf, "predict_proba"):
        p = clf.predict_proba(X)
    else:
        p = _softmax(_decision_matrix(clf.decision_function(X)))
    if full:
        return np.asarray(p, dtype=dtype)
    out = np.zeros((X.shape[0], n_classes), dtype=dtype)
    out[:, cols] = p
    return out


def pool_top2_margin(clf, X, n_classes: int):
    """Top-2 margin and top class (a global class code) of every row: the fused path.

    Uses the classifier's ``predict_top2_margin`` where it has one (:class:`SoftmaxLinearSVC`,
    :class:`alamp_fast.svm.SVC`), else ``top2_margin`` of :func:`pool_probs`. The margins are
    those of ``af.top2_margin(pool_probs(clf, X, n_classes))``: classes without a label have
    probability 0 and never reach the top two of a row whose fitted columns hold two or more.
    """
    import alamp_fast as af

    cols = np.asarray(clf.classes_, dtype=np.int64)
    if hasattr(clf, "predict_top2_margin") and cols.size >= 2:
        margin, top = clf.predict_top2_margin(X)
        top = np.asarray(top, dtype=np.int64)
        if not (cols.size == n_classes and np.array_equal(cols, np.arange(n_classes))):
            top = cols[top]
        return np.asarray(margin), top
    margin, top = af.top2_margin(pool_probs(clf, X, n_classes))
    return margin, np.asarray(top, dtype=np.int64)


def _chunk_probs(X: np.ndarray, clf, n_classes: int, dtype=np.float64) -> np.ndarray:
    if X.shape[0] == 0:  # scikit-learn refuses empty inputs
        return np.empty((0, n_classes), dtype=dtype)
    return pool_probs(clf, X, n_classes, dtype)


def _dask_pool_probs(clf, X, n_classes: int, dtype=np.float64):
    import dask

    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})  # the classifier needs whole rows
    return X.map_blocks(
        _chunk_probs,
        dask.delayed(clf),
        n_classes,
        dtype,
        chunks=(X.chunks[0], (n_classes,)),
        dtype=dtype,
        meta=np.empty((0, n_classes), dtype=dtype),
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
