"""The classifiers of the SVM scheme, by name, and how one scores a pool (full or fused).

What :func:`alamp_fast.al.protocol.simulate` and the annotation workflow fit at every
iteration, and the two ways the pool is scored for a strategy: :func:`pool_probs` (the
``(n_pool, n_classes)`` probabilities, global class columns; lazily per chunk for a dask pool)
and :func:`pool_top2_margin` (the fused path: top-2 margins and top classes, no matrix).

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
(the default of :func:`~alamp_fast.al.protocol.simulate`) turns it on for imbalanced pools:
when ``imbalance`` is given or the pool's own class counts have ``ir >= 0.1``. Any
scikit-learn-compatible estimator object is accepted too (cloned for every fit;
``class_weight`` is only touched when ``cost_sensitive=True``).
"""

from __future__ import annotations

import warnings

import numpy as np

from alamp_fast._backend import array_library

__all__ = [
    "CLASSIFIERS",
    "SoftmaxLinearSVC",
    "make_classifier",
    "pool_probs",
    "pool_top2_margin",
]

#: Classifier names accepted by :func:`make_classifier` and ``--classifier``.
CLASSIFIERS = ("linear-svc", "logreg", "svc", "paper", "af-svm", "af-svm-cv")


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
        from alamp_fast.al.datasets import l2_normalize

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
            # filled in place: np.concatenate of a broadcast block took 4x the GEMM itself
            padded = np.empty((n + pad, Z.shape[1]), dtype=Z.dtype)
            padded[:n] = Z
            padded[n:] = Z[-1]
            Z = padded
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
